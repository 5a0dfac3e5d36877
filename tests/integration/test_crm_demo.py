"""`trellis-demo seed --tenant SLUG < password`: a demo tenant for newcomers.

The tool (tools/demo, built beside the server binary; TRELLIS_DEMO_BIN
overrides it) runs against the session stack's own database, so the session
server (stack.base_url) serves the seeded tenant; its users log in over HTTP
and the CRM API must read the seeded records like its own: 2,000 leads paged
by a manager, only their own for a sales user, the default pipeline, 500
clients with contacts and legal entities, deals in every stage and status
with a consistent stage history, interactions of the five kinds, tasks
(done, overdue, due later, with reminders queued), claims and campaigns.
The ERP's part is made through the ERP's own code, so the ERP must agree
with itself afterwards: every check of GET /v1/erp/checks ok, the ledger's
chain verified, the trial balance balanced, the stock's value equal to the
inventory account and to the fold of its moves and shipments; 200 sales
orders of the seeded clients (many from their won deals) in every status,
invoices numbered without a gap, payments never beyond an order's total.
Failure modes: the slug taken (exit 2, nothing changed), a bad password or
slug (exit 2, nothing created), the database away (exit 1), no or another
command (exit 2); `trellis demo seed` is no command of the server's."""

import datetime
import re
import secrets

import pytest
import requests
from bson import ObjectId

from conftest import (DB_NAME, TrellisLauncher, free_port, login, login_request,
                      sanitizer_hits, unique_slug)
from crm_support import CLIENTS, DEALS, DEFAULT_STAGES, LEADS
from erp_support import assert_erp_checks, fold_work_orders

USAGE_ERROR = 2
UNAVAILABLE = 1
ROLES = ["owner", "admin", "manager", "sales", "sales", "sales", "warehouse", "accountant",
         "employee"]
LOGINS = ["owner", "admin", "manager", "sales1", "sales2", "sales3", "warehouse", "accountant",
          "employee"]
SALES = ["sales1", "sales2", "sales3"]
INTERACTION_KINDS = ["meeting", "call_in", "call_out", "sms", "email"]
# every collection the seed writes, for cleaning up and counting
SEEDED = ["users", "pipelines", "campaigns", "crm_groups", "leads", "clients", "contacts",
          "counterparties", "deals", "interactions", "tasks", "claims",
          "erp_products", "erp_warehouses", "erp_stock_moves", "erp_stock_slots",
          "erp_accounts", "erp_orders", "erp_invoices", "erp_payments", "erp_shipments",
          "erp_suppliers", "erp_purchase_orders", "bpm_definitions", "bpm_instances", "bpm_tasks",
          "bpm_history", "bpm_waits"]
ORDER_STATUSES = {"draft", "confirmed", "shipped", "invoiced", "paid", "completed", "cancelled"}
DEMO_ORDERS = 200
SEED_TIMEOUT_S = 180


def seed(stack, launcher, slug, stdin, env=None, extra=(), command=("seed",)):
    """Run `trellis-demo seed --tenant slug` (no --tenant for None) on the
    session's database with `stdin` (str) as standard input, through the
    launcher: a sanitizer report fails the test here and again in the
    `trellis` fixture, as for the server's own commands."""
    env = env or launcher.env(db=DB_NAME)
    args = list(command) + (["--tenant", slug] if slug else []) + list(extra)
    run = launcher.run(*args, env=env, binary=stack.demo_bin, stdin=stdin.encode(),
                       timeout=SEED_TIMEOUT_S)
    hits = sanitizer_hits(run.output)
    assert not hits, f"sanitizer report from the seed: {hits}\n{run!r}"
    return run


def email_of(slug, who):
    return f"{who}@{slug}.example"


def all_pages(stack, account, path, **params):
    """Every item of a list endpoint, 200 at a time, following next_cursor."""
    items, cursor = [], None
    for _ in range(1000):
        q = dict(params, limit=200)
        if cursor:
            q["cursor"] = cursor
        r = stack.get(path, headers=account.headers, params=q, timeout=60)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items
    raise AssertionError(f"{path} did not end after 1000 pages")


def first(stack, account, path, **params):
    r = stack.get(path, headers=account.headers, params=dict(params, limit=1), timeout=60)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
    items = r.json()["items"]
    return items[0] if items else None


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def tenant_doc(stack, slug):
    return stack.mongo["tenants"].find_one({"slug": slug})


def remove_tenant(stack, tenant_id):
    """Deletes a seeded tenant's records and queued reminders, so the rest
    of the session does not page through them."""
    for coll in SEEDED:
        stack.mongo[coll].delete_many({"tenant_id": tenant_id})
    stack.mongo["tenants"].delete_many({"_id": tenant_id})
    key = f"q:{{{DB_NAME}:crm.reminders:0}}:delayed"
    for member in stack.redis.zrange(key, 0, -1):
        text = member.decode() if isinstance(member, bytes) else member
        if str(tenant_id) in text:
            stack.redis.zrem(key, member)


class Demo:
    def __init__(self, slug, password, run, tenant_id):
        self.slug = slug
        self.password = password
        self.run = run
        self.tenant_id = tenant_id
        self._accounts = {}

    def account(self, stack, who):
        """A logged-in session of the demo user `who` (owner, sales1, ...)."""
        if who not in self._accounts:
            self._accounts[who] = login(stack, self.slug, email_of(self.slug, who), self.password)
        return self._accounts[who]


@pytest.fixture(scope="module")
def demo(stack):
    """One demo tenant seeded for the module (seeding takes seconds)."""
    launcher = TrellisLauncher(stack)
    slug = unique_slug("demo")
    password = "demo-" + secrets.token_urlsafe(12)
    tenant = None
    try:
        run = seed(stack, launcher, slug, password + "\n")
        assert run.returncode == 0, run
        tenant = tenant_doc(stack, slug)
        assert tenant is not None, f"no tenant {slug} after the seed: {run!r}"
        yield Demo(slug, password, run, tenant["_id"])
    finally:
        if tenant is not None:
            remove_tenant(stack, tenant["_id"])
        launcher.close()


@pytest.fixture(scope="module")
def manager(stack, demo):
    return demo.account(stack, "manager")


@pytest.fixture(scope="module")
def leads(stack, manager):
    return all_pages(stack, manager, LEADS)


@pytest.fixture(scope="module")
def deals(stack, manager):
    return all_pages(stack, manager, DEALS)


@pytest.fixture(scope="module")
def orders(stack, manager):
    return all_pages(stack, manager, "/v1/erp/orders")


# ---------------------------------------------------------------------------
# what the command says
# ---------------------------------------------------------------------------

def test_seed_prints_every_login_and_the_time_but_never_the_password(demo):
    out = demo.run.stdout
    for who in LOGINS:
        assert email_of(demo.slug, who) in out, f"login {who} not printed: {demo.run!r}"
    assert demo.password not in out + demo.run.stderr
    assert re.search(r"in \d+\.\d+ s", out), f"no seed time printed: {out!r}"


def test_every_built_in_role_has_a_user_who_can_log_in(stack, demo):
    for who, role in zip(LOGINS, ROLES):
        account = demo.account(stack, who)
        r = stack.get("/v1/me", headers=account.headers)
        assert r.status_code == 200, r.text
        me = r.json()
        assert me["user"]["roles"] == [role], me["user"]
        assert me["tenant"]["slug"] == demo.slug
        assert me["tenant"]["name"] == "Demo Company"


def test_a_wrong_password_does_not_log_a_demo_user_in(stack, demo):
    r = login_request(stack, demo.slug, email_of(demo.slug, "owner"), demo.password + "x")
    assert r.status_code == 401, r.text


# ---------------------------------------------------------------------------
# leads
# ---------------------------------------------------------------------------

def test_manager_pages_through_2000_leads(leads):
    assert len(leads) == 2000
    assert len({lead["id"] for lead in leads}) == 2000, "a lead appeared on two pages"
    created = [lead["created_at"] for lead in leads]
    assert created == sorted(created, reverse=True), "not newest first"


def test_leads_spread_over_statuses_channels_campaigns_and_a_year(leads):
    statuses = {lead["status"] for lead in leads}
    assert statuses == {"new", "contacted", "qualified", "converted", "lost"}
    assert {lead["source"]["channel"] for lead in leads} >= {"web", "ads", "event", "referral"}
    assert len({lead["source"]["campaign_id"] for lead in leads} - {None}) == 3
    for lead in leads:
        assert lead.get("email") or lead.get("phone"), lead
        if lead["status"] == "lost":
            assert lead.get("lost_reason"), lead
        if lead["status"] == "converted":
            assert lead["client_id"] and lead["contact_id"] and lead["converted_at"], lead
        assert "_phone_n" not in lead, "a hidden field is shown"
        assert lead["version"] == 1
    oldest = parse_time(leads[-1]["created_at"])
    newest = parse_time(leads[0]["created_at"])
    assert newest <= now()
    assert (now() - oldest).days >= 300, f"the oldest lead is from {oldest}"
    months = {lead["created_at"][:7] for lead in leads}
    assert len(months) >= 12, months


def test_sales_users_see_only_their_own_leads(stack, demo, leads):
    total = 0
    for who in SALES:
        account = demo.account(stack, who)
        own = all_pages(stack, account, LEADS)
        assert 0 < len(own) < 2000, f"{who} sees {len(own)} leads"
        assert {lead["owner_id"] for lead in own} == {account.user_id}
        total += len(own)
    assert total <= len(leads)


def test_duplicates_point_to_an_open_lead_with_the_same_email_or_phone(leads):
    by_id = {lead["id"]: lead for lead in leads}
    duplicates = [lead for lead in leads if lead["duplicate_of"]]
    assert duplicates, "no duplicate leads"
    for lead in duplicates:
        original = by_id[lead["duplicate_of"]]
        assert original["status"] in ("new", "contacted", "qualified")
        assert original["created_at"] < lead["created_at"]
        assert (lead.get("email") and lead["email"] == original.get("email")) or \
            (lead.get("phone") and lead["phone"] == original.get("phone"))


# ---------------------------------------------------------------------------
# pipeline, deals
# ---------------------------------------------------------------------------

def test_the_default_pipeline_is_listed_once(stack, manager):
    items = all_pages(stack, manager, "/v1/crm/pipelines")
    defaults = [p for p in items if p["is_default"]]
    assert len(defaults) == 1, items
    assert defaults[0]["name"] == "Sales"
    assert [s["key"] for s in defaults[0]["stages"]] == DEFAULT_STAGES


def test_deals_span_every_status_and_the_open_ones_several_stages(deals):
    assert len(deals) >= 300
    assert {d["status"] for d in deals} == {"open", "won", "lost"}
    assert len({d["stage"] for d in deals if d["status"] == "open"}) >= 4
    for d in deals:
        assert d["amount"]["currency"] == "EUR" and d["amount"]["amount"] > 0, d
        if d["status"] == "open":
            assert "closed_at" not in d and "lost_reason" not in d, d
        else:
            assert parse_time(d["closed_at"]) <= now(), d
        if d["status"] == "lost":
            assert d["lost_reason"], d
        if d["status"] == "won":
            assert d["stage"] == DEFAULT_STAGES[-1], d


def test_stage_history_leads_to_the_current_stage(deals, manager):
    for d in deals:
        history = d["stage_history"]
        assert history[0]["stage"] == "new" and history[0]["from"] is None, d
        assert history[0]["at"] == d["created_at"], d
        assert history[-1]["stage"] == d["stage"], d
        for before, after in zip(history, history[1:]):
            assert after["from"] == before["stage"], d
            assert after["at"] >= before["at"], d
        if d["status"] != "open":
            assert history[-1]["at"] <= d["closed_at"], d
        assert {h["by"] for h in history} == {d["owner_id"]}, d


def test_deals_refer_to_the_pipeline_and_existing_clients(stack, manager, deals):
    pipeline = [p for p in all_pages(stack, manager, "/v1/crm/pipelines") if p["is_default"]][0]
    client_ids = {c["id"] for c in all_pages(stack, manager, CLIENTS)}
    for d in deals:
        assert d["pipeline_id"] == pipeline["id"]
        assert d["client_id"] in client_ids


def test_sales_users_see_only_their_own_deals(stack, demo):
    account = demo.account(stack, "sales2")
    own = all_pages(stack, account, DEALS)
    assert own and {d["owner_id"] for d in own} == {account.user_id}


# ---------------------------------------------------------------------------
# clients, contacts, counterparties
# ---------------------------------------------------------------------------

def test_500_clients_companies_and_persons_with_owners(stack, manager):
    clients = all_pages(stack, manager, CLIENTS)
    assert len(clients) == 500
    assert {c["kind"] for c in clients} == {"company", "person"}
    assert len({c.get("owner_id") for c in clients} - {None}) == 3
    assert any(c["group_ids"] for c in clients), "no client in a group"


def test_some_clients_have_counterparties_and_contacts(stack, manager):
    companies = all_pages(stack, manager, CLIENTS, kind="company")[:20]
    with_counterparties = with_contacts = 0
    for c in companies:
        cps = all_pages(stack, manager, f"{CLIENTS}/{c['id']}/counterparties")
        contacts = all_pages(stack, manager, f"{CLIENTS}/{c['id']}/contacts")
        with_counterparties += bool(cps)
        with_contacts += bool(contacts)
        for cp in cps:
            assert cp["legal_name"].startswith(c["name"]) and cp["tax_id"], cp
    assert with_counterparties > 0 and with_contacts > 0


def test_a_converted_leads_client_contact_and_timeline(stack, manager, leads):
    lead = next(lead for lead in leads if lead["status"] == "converted" and lead.get("deal_id"))
    r = stack.get(f"{CLIENTS}/{lead['client_id']}", headers=manager.headers)
    assert r.status_code == 200, r.text
    assert r.json()["lead_id"] == lead["id"]
    r = stack.get(f"{CLIENTS}/{lead['client_id']}/contacts/{lead['contact_id']}",
                  headers=manager.headers)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == lead["name"]
    r = stack.get(f"{DEALS}/{lead['deal_id']}", headers=manager.headers)
    assert r.status_code == 200 and r.json()["lead_id"] == lead["id"], r.text
    r = stack.get(f"{CLIENTS}/{lead['client_id']}/timeline", headers=manager.headers)
    assert r.status_code == 200, r.text
    assert any(e["type"] == "deal" for e in r.json()["items"])


# ---------------------------------------------------------------------------
# interactions, tasks, claims, campaigns
# ---------------------------------------------------------------------------

def test_interactions_of_all_five_kinds(stack, manager):
    for kind in INTERACTION_KINDS:
        item = first(stack, manager, "/v1/crm/interactions", kind=kind)
        assert item is not None, f"no {kind} interaction"
        assert item["summary"] and item["user_id"]
        assert item.get("client_id") or item.get("deal_id") or item.get("lead_id")


def test_tasks_done_overdue_and_due_later_with_reminders_queued(stack, demo, manager):
    tasks = all_pages(stack, manager, "/v1/crm/tasks")
    assert len(tasks) >= 200
    done = [t for t in tasks if t["done"]]
    later = [t for t in tasks if not t["done"] and parse_time(t["due_at"]) > now()]
    overdue = [t for t in tasks if not t["done"] and parse_time(t["due_at"]) <= now()]
    assert done and later and overdue
    for t in tasks:
        assert len(t["related"]) == 1 and t["assignee_id"], t
    key = f"q:{{{DB_NAME}:crm.reminders:0}}:delayed"
    queued = set()
    for member in stack.redis.zrange(key, 0, -1):
        text = member.decode() if isinstance(member, bytes) else member
        if str(demo.tenant_id) in text:
            queued.add(re.search(r'"task_id":"([0-9a-f]{24})"', text).group(1))
    # only open tasks due later have reminders (a task that fell due since
    # the seed may still have one); the job may have taken a few already
    recent = now() - datetime.timedelta(minutes=10)
    assert queued <= {t["id"] for t in tasks if not t["done"] and parse_time(t["due_at"]) > recent}
    assert len(queued) >= len(later) - 5, f"{len(queued)} reminders for {len(later)} tasks"


def test_claims_with_statuses_and_campaigns_with_costs(stack, manager):
    claims = all_pages(stack, manager, "/v1/crm/claims")
    assert len(claims) >= 30
    assert {c["status"] for c in claims} == {"open", "in_progress", "resolved", "rejected"}
    campaigns = all_pages(stack, manager, "/v1/crm/campaigns")
    assert len(campaigns) == 3
    for c in campaigns:
        assert c["cost"]["currency"] == "EUR" and c["cost"]["amount"] > 0
        assert c["starts_at"] < c["ends_at"]


# ---------------------------------------------------------------------------
# the ERP
# ---------------------------------------------------------------------------

def test_the_erp_agrees_with_itself_after_the_seed(stack, demo):
    """Checks, the ledger's chain, the trial balance and the stock valuation."""
    accountant = demo.account(stack, "accountant")
    body = assert_erp_checks(stack, accountant)
    assert body["ok"] is True
    r = stack.get("/v1/erp/ledger/verify", headers=accountant.headers, timeout=60)
    assert r.status_code == 200, r.text
    verify = r.json()
    assert verify["ok"] is True and verify["entries"] > 500 and "broken_at" not in verify, verify
    assert f"{verify['entries']} journal entries, every ERP check ok" in demo.run.stdout
    r = stack.get("/v1/erp/reports/trial-balance", headers=accountant.headers, timeout=60)
    assert r.status_code == 200, r.text
    tb = r.json()
    assert tb["total_debit"] == tb["total_credit"] > 0, tb
    assert sum(a["debit"] for a in tb["accounts"]) == tb["total_debit"], tb
    used = {a["code"] for a in tb["accounts"] if a["debit"] or a["credit"]}
    assert used >= {"1100", "1200", "1300", "2000", "2100", "4000", "5000", "6000"}, tb
    r = stack.get("/v1/erp/reports/stock-valuation", headers=accountant.headers, timeout=60)
    assert r.status_code == 200, r.text
    totals = r.json()["totals"]
    assert [t["currency"] for t in totals] == ["EUR"], totals
    assert totals[0]["equal"] is True and totals[0]["stock"]["amount"] > 0, totals


def test_the_stock_is_the_fold_of_its_moves_and_shipments(stack, demo, orders):
    """What erp_support.assert_inventory_invariants checks, with a few
    requests for the seed's hundreds of orders: every pair's quantity and
    value are what its moves and its orders' shipments add up to."""
    owner = demo.account(stack, "owner")
    expected = {}

    def add(p, w, q, v):
        e = expected.setdefault((p, w), [0, 0])
        e[0] += q
        e[1] += v

    for m in all_pages(stack, owner, "/v1/erp/stock/moves"):
        p, w, q, v = m["product_id"], m["warehouse_id"], m["quantity"], m["value"]["amount"]
        assert "reverses" not in m, m
        if m["kind"] == "receipt":
            add(p, w, q, v)
        elif m["kind"] == "write_off":
            add(p, w, -q, v)
        elif m["kind"] == "transfer":
            add(p, w, -q, v)
            add(p, m["to_warehouse_id"], q, -v)
        else:
            raise AssertionError(f"the seed makes no {m['kind']}: {m}")
    warehouse_of = {o["id"]: o["warehouse_id"] for o in orders}
    for sh in all_pages(stack, owner, "/v1/erp/shipments"):
        for line in sh["lines"]:
            add(line["product_id"], warehouse_of[sh["order_id"]], -line["quantity"],
                -line["cost"]["amount"])
    work_orders = all_pages(stack, owner, "/v1/erp/work-orders")
    held = fold_work_orders(work_orders, add)
    r = stack.get("/v1/erp/stock", headers=owner.headers, timeout=60)
    assert r.status_code == 200, r.text
    stock = {(i["product_id"], i["warehouse_id"]): i for i in r.json()["items"]}
    assert set(stock) == set(expected)
    for pair, (q, v) in expected.items():
        item = stock[pair]
        assert (item["on_hand"], item["value"]["amount"]) == (q, v), (pair, item, q, v)
        assert item["available"] == item["on_hand"] - item["reserved"] >= 0, item
        assert item["reserved"] >= held.get(pair, 0), (item, held.get(pair))
    # the workstation kits: a bill of four parts, two planned, one made
    [kit_bill] = all_pages(stack, owner, "/v1/erp/boms")
    assert [c["quantity"] for c in kit_bill["components"]] == [1, 2, 1, 1]
    [wo] = work_orders
    assert (wo["status"], wo["quantity"], wo["made"]) == ("released", 2, 1), wo
    assert wo["product_id"] == kit_bill["product_id"] and wo["bom_id"] == kit_bill["id"]
    assert wo["completions"][0]["labour"] == {"amount": 1500, "currency": "EUR"}
    assert stock[(wo["product_id"], wo["warehouse_id"])]["on_hand"] == 1


def test_sales_orders_in_every_status_priced_by_the_erp(orders):
    assert len(orders) == DEMO_ORDERS
    statuses = {}
    for o in orders:
        statuses[o["status"]] = statuses.get(o["status"], 0) + 1
        assert o["currency"] == "EUR" and 1 <= len(o["lines"]) <= 4, o
        assert o["total"]["amount"] == o["net"]["amount"] + o["tax"]["amount"] > 0, o
        assert o["net"]["amount"] == sum(line["net"]["amount"] for line in o["lines"]), o
    assert set(statuses) == ORDER_STATUSES, statuses
    assert statuses["completed"] >= DEMO_ORDERS // 2, statuses


def test_orders_are_the_seeded_clients_and_many_come_from_won_deals(stack, manager, orders,
                                                                     deals):
    clients = {c["id"]: c for c in all_pages(stack, manager, CLIENTS)}
    deals_by_id = {d["id"]: d for d in deals}
    from_deals = 0
    for o in orders:
        client = clients[o["client_id"]]
        assert o.get("owner_id") == client.get("owner_id"), (o, client)
        if o.get("deal_id"):
            deal = deals_by_id[o["deal_id"]]
            assert deal["status"] == "won" and deal["client_id"] == o["client_id"], (o, deal)
            from_deals += 1
    assert from_deals >= DEMO_ORDERS // 3 and DEMO_ORDERS - from_deals >= DEMO_ORDERS // 10
    assert len({o["client_id"] for o in orders}) >= DEMO_ORDERS // 2


def test_invoices_without_gaps_and_payments_within_totals(stack, manager, orders):
    invoices = all_pages(stack, manager, "/v1/erp/invoices")
    assert len(invoices) == sum(1 for o in orders if o.get("invoice_id"))
    numbers = {}
    for inv in invoices:
        m = re.fullmatch(r"INV-(\d{4})-(\d{6})", inv["number"])
        assert m, inv
        numbers.setdefault(m.group(1), []).append(int(m.group(2)))
    for year, ns in numbers.items():
        assert sorted(ns) == list(range(1, len(ns) + 1)), (year, sorted(ns))
    assert {i["status"] for i in invoices} >= {"open", "partially_paid", "paid"}
    paid = {}
    for p in all_pages(stack, manager, "/v1/erp/payments"):
        paid[p["order_id"]] = paid.get(p["order_id"], 0) + p["amount"]["amount"]
    assert {p for p in paid} <= {o["id"] for o in orders if o.get("invoice_id")}
    for o in orders:
        total = o["total"]["amount"]
        assert paid.get(o["id"], 0) <= total, o
        if o["status"] in ("paid", "completed"):
            assert paid[o["id"]] == total, o
        if o["status"] in ("shipped", "completed"):
            assert all(line["shipped"] == line["quantity"] for line in o["lines"]), o
        if o["status"] in ("draft", "cancelled"):
            assert all(line["shipped"] == 0 for line in o["lines"]), o


def test_products_warehouses_suppliers_and_purchases(stack, demo, manager):
    products = all_pages(stack, manager, "/v1/erp/products")
    # the 24 it trades in, and the workstation kit it assembles
    assert len(products) == 25 and len({p["sku"] for p in products}) == 25
    assert [p["sku"] for p in products if p.get("bom_id")] == ["WS-KIT"]
    assert {p["uom_scale"] for p in products} >= {0, 1, 3}
    assert len(all_pages(stack, manager, "/v1/erp/warehouses")) == 2
    accountant = demo.account(stack, "accountant")
    assert len(all_pages(stack, accountant, "/v1/erp/suppliers")) == 4
    pos = all_pages(stack, accountant, "/v1/erp/purchase-orders")
    assert len(pos) >= 50 and {p["status"] for p in pos} >= {"received", "open"}, pos[:3]



def test_the_company_has_a_department_tree_and_an_employee_per_user(stack, demo, manager):
    chart = stack.get("/v1/erp/org-chart", headers=manager.headers, timeout=60)
    assert chart.status_code == 200, chart.text

    def walk(nodes, depth=0):
        for n in nodes:
            yield depth, n
            yield from walk(n["children"], depth + 1)
    tree = [(depth, n["name"], (n["head"] or {}).get("name")) for depth, n in walk(chart.json()["departments"])]
    assert sorted(tree) == sorted([
        (0, "Management", "Helen Carter"), (1, "Sales", "Maria Lopez"),
        (1, "Finance", "Anna Kowalski"), (1, "Operations", "Adam Novak"),
        (2, "Warehouse", "Walter Hughes")]), tree
    employees = all_pages(stack, manager, "/v1/erp/employees")
    users = all_pages(stack, demo.account(stack, "owner"), "/v1/users")
    assert sorted(e["user_id"] for e in employees) == sorted(u["id"] for u in users)
    # the requester's head of department: a rep's is the sales head, the
    # sales head's the managing director
    by_user = {e["user_id"]: e for e in employees}
    sam = next(e for e in employees if e["name"] == "Sam Patel")
    r = stack.get("/v1/erp/employees/head-of", params={"user_id": sam["user_id"]},
                  headers=manager.headers, timeout=30)
    assert r.status_code == 200 and by_user[r.json()["user_id"]]["name"] == "Maria Lopez", r.text
    maria = next(e for e in employees if e["name"] == "Maria Lopez")
    r = stack.get("/v1/erp/employees/head-of", params={"user_id": maria["user_id"]},
                  headers=manager.headers, timeout=30)
    assert r.status_code == 200 and by_user[r.json()["user_id"]]["name"] == "Helen Carter", r.text

# ---------------------------------------------------------------------------
# failure modes
# ---------------------------------------------------------------------------

def test_a_second_seed_with_the_same_slug_exits_2_and_changes_nothing(stack, trellis, demo):
    before = {coll: stack.mongo[coll].count_documents({"tenant_id": demo.tenant_id})
              for coll in SEEDED}
    run = seed(stack, trellis, demo.slug, "another-password-1\n")
    assert run.returncode == USAGE_ERROR, run
    assert "exists" in run.stderr, run
    assert run.stdout == ""
    assert stack.mongo["tenants"].count_documents({"slug": demo.slug}) == 1
    after = {coll: stack.mongo[coll].count_documents({"tenant_id": demo.tenant_id})
             for coll in SEEDED}
    assert after == before
    # the first password still works, the second never did
    assert login_request(stack, demo.slug, email_of(demo.slug, "owner"),
                         "another-password-1").status_code == 401
    login(stack, demo.slug, email_of(demo.slug, "owner"), demo.password)


@pytest.mark.parametrize("stdin", ["short-pw\n", "", "\n", "ten chars\x01ok\n"],
                         ids=["short", "no-input", "empty-line", "control-character"])
def test_a_bad_password_exits_2_and_creates_nothing(stack, trellis, stdin):
    slug = unique_slug("demo")
    run = seed(stack, trellis, slug, stdin)
    assert run.returncode == USAGE_ERROR, run
    assert "password" in run.stderr, run
    assert tenant_doc(stack, slug) is None
    assert stack.mongo["users"].count_documents({"email": email_of(slug, "owner")}) == 0


@pytest.mark.parametrize("slug", [None, "x", "Upper-Case", "has space", "a" * 41],
                         ids=["missing", "too-short", "upper-case", "space", "too-long"])
def test_a_bad_slug_exits_2_and_creates_nothing(stack, trellis, slug):
    before = stack.mongo["tenants"].count_documents({})
    run = seed(stack, trellis, slug, "long-enough-password\n")
    assert run.returncode == USAGE_ERROR, run
    assert "usage" in run.stderr or "--tenant" in run.stderr, run
    assert stack.mongo["tenants"].count_documents({}) == before


def test_unknown_options_exit_2_and_create_nothing(stack, trellis):
    slug = unique_slug("demo")
    run = seed(stack, trellis, slug, "long-enough-password\n", extra=["--force"])
    assert run.returncode == USAGE_ERROR, run
    assert "--force" in run.stderr, run
    assert tenant_doc(stack, slug) is None


@pytest.mark.parametrize("command", [(), ("sow",)], ids=["no-command", "unknown-command"])
def test_no_command_or_another_exits_2_with_the_usage(stack, trellis, command):
    slug = unique_slug("demo")
    run = seed(stack, trellis, slug if command else None, "long-enough-password\n",
               command=command)
    assert run.returncode == USAGE_ERROR, run
    assert "usage: trellis-demo seed --tenant SLUG" in run.stderr, run
    if command:
        assert "unknown command: sow" in run.stderr, run
    assert run.stdout == ""
    assert tenant_doc(stack, slug) is None


def test_the_server_has_no_demo_seed_command(stack, trellis):
    slug = unique_slug("demo")
    run = trellis.run("demo", "seed", "--tenant", slug, env=trellis.env(db=DB_NAME))
    assert run.returncode == USAGE_ERROR, run
    assert "trellis: unknown command: demo seed" in run.stderr, run
    assert tenant_doc(stack, slug) is None


def test_the_database_away_exits_1_and_says_so(stack, trellis):
    env = trellis.env(db=DB_NAME)
    env["TRELLIS_MONGO_URI"] = f"mongodb://127.0.0.1:{free_port()}/{DB_NAME}"
    slug = unique_slug("demo")
    run = seed(stack, trellis, slug, "long-enough-password\n", env=env)
    assert run.returncode == UNAVAILABLE, run
    assert "database" in run.stderr, run
    assert tenant_doc(stack, slug) is None


def test_redis_away_exits_1_and_keeps_nothing(stack, trellis):
    """The ERP's stock moves queue their settling in Redis: without it the
    first receipt is refused, and the CRM's records written before go too."""
    env = trellis.env(db=DB_NAME)
    env["TRELLIS_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    slug = unique_slug("demo")
    run = seed(stack, trellis, slug, "long-enough-password\n", env=env)
    assert run.returncode == UNAVAILABLE, run
    assert "the ERP answered POST /v1/erp/purchase-orders/{id}/receive" in run.stderr, run
    assert "nothing was kept" in run.stderr and run.stdout == "", run
    assert tenant_doc(stack, slug) is None
    assert stack.mongo["users"].count_documents({"email": email_of(slug, "owner")}) == 0


def test_seeded_records_belong_to_the_tenant_only(stack, demo):
    """Every record the seed wrote carries the tenant's id; references to
    users point at this tenant's users."""
    users = {u["_id"] for u in stack.mongo["users"].find({"tenant_id": demo.tenant_id})}
    assert len(users) == 9
    for coll, field in (("leads", "owner_id"), ("deals", "owner_id"), ("tasks", "assignee_id"),
                        ("claims", "assignee_id"), ("interactions", "user_id")):
        owners = stack.mongo[coll].distinct(field, {"tenant_id": demo.tenant_id})
        assert owners and set(owners) <= users, (coll, owners)
    tenant = stack.mongo["tenants"].find_one({"_id": demo.tenant_id})
    assert tenant["tenant_id"] == demo.tenant_id and tenant["version"] == 1
    assert isinstance(demo.tenant_id, ObjectId)


# ---------------------------------------------------------------------------
# the BPM sample
# ---------------------------------------------------------------------------

def test_fulfil_a_won_deal_waits_for_the_latest_won_deals_owners_approval(stack, demo, manager, deals):
    r = requests.get(stack.base_url + "/v1/bpm/definitions/fulfilment", headers=manager.headers, timeout=30)
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["name"], d["version"]) == ("Fulfil a won deal", 1)
    approve = [n for n in d["nodes"] if n["id"] == "approve"][0]
    assert approve["due_in"] == "PT4H" and approve["assignee"] == {"field": "owner_id"}
    r = requests.get(stack.base_url + "/v1/bpm/instances", params={"definition_key": "fulfilment"},
                     headers=manager.headers, timeout=30)
    assert r.status_code == 200, r.text
    insts = r.json()["items"]
    won = sorted((x for x in deals if x["status"] == "won"), key=lambda x: x["closed_at"], reverse=True)[:3]
    assert sorted(i["subject"]["id"] for i in insts) == sorted(x["id"] for x in won)
    assert all(i["status"] == "running" and i["active_nodes"] == ["approve"] for i in insts)
    owners = {x["id"]: x["owner_id"] for x in won}
    r = requests.get(stack.base_url + "/v1/bpm/tasks", params={"status": "open", "limit": 100},
                     headers=manager.headers, timeout=30)
    tasks = [t for t in r.json()["items"] if t["name"] == "Approve the order"]
    assert sorted((t["subject"]["id"], t["assignee_id"]) for t in tasks) == sorted(owners.items())
    assert all(t["due_at"] for t in tasks)
