"""The CRM bcg report (GET /v1/crm/reports/bcg; the rules are in the
comment at the top of modules/crm/report_bcg.c): per product or client
group, revenue in the period and in the period of the same length right
before it, growth, relative share against the largest OTHER item, and the
quadrant - star, cash_cow, question_mark, dog - over small data sets whose
numbers are worked out by hand below; borders of both thresholds, the new
item (nothing before) and the gone one (nothing now), ties, currencies,
bad input, permissions and tenant isolation.

Client groups count won deals, imported with a past closed_at. Products
count invoiced sales order lines, dated by their invoice's created_at,
which is the time of the test: those periods are cut from the invoices'
own timestamps, so they hold however slowly the server runs."""

import secrets
from datetime import datetime, timedelta, timezone

import requests

from conftest import HTTP_TIMEOUT_S, check_problem, signup, user_session
from erp_support import call, make_product, make_warehouse, receive

# the period: ten days from noon on 2026-03-01; the period before it: the
# ten days before that
FROM = "2026-03-01T12:00:00Z"
TO = "2026-03-11T12:00:00Z"
PREV_FROM = "2026-02-19T12:00:00Z"


def ok(r, status=200):
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:800]}"
    return r.json()


def eur(amount):
    return {"amount": amount, "currency": "EUR"}


def money(amount, currency="EUR"):
    return {"amount": amount, "currency": currency}


def post(target, acct, path, body):
    """target: the session's stack or a server of its own (TrellisProcess)."""
    return requests.post(target.url(path), headers=acct.headers, json=body, timeout=HTTP_TIMEOUT_S)


def get(target, acct, path, params=None):
    return requests.get(target.url(path), headers=acct.headers, params=params, timeout=HTTP_TIMEOUT_S)


def bcg(target, acct, group_by, frm=FROM, to=TO, currency="EUR"):
    return ok(get(target, acct, "/v1/crm/reports/bcg",
                  {"from": frm, "to": to, "currency": currency, "group_by": group_by}))


def field_errors(body):
    return {e["field"] for e in body.get("errors", [])}


def rows(report, id_field):
    return [(i[id_field], i["revenue"]["amount"], i["previous_revenue"]["amount"], i["growth"],
             i["relative_share"], i["bcg"]) for i in report["items"]]


def new_group(target, acct, name, rule=None):
    return ok(post(target, acct, "/v1/crm/groups", {"name": name, "rule": rule or {"type": "static"}}), 201)


def new_client(target, acct, name, groups=(), kind="company", **extra):
    body = {"name": name, "kind": kind, "group_ids": [g["id"] for g in groups]}
    body.update(extra)
    return ok(post(target, acct, "/v1/crm/clients", body), 201)


def won(target, acct, client, amount, closed_at, currency="EUR", **extra):
    body = {"client_id": client["id"], "title": f"Won {secrets.token_hex(3)}",
            "amount": money(amount, currency), "status": "won", "closed_at": closed_at}
    body.update(extra)
    return ok(post(target, acct, "/v1/crm/deals", body), 201)


def lost(target, acct, client, amount, closed_at):
    body = {"client_id": client["id"], "title": "Lost", "amount": eur(amount), "status": "lost",
            "closed_at": closed_at, "lost_reason": "price"}
    return ok(post(target, acct, "/v1/crm/deals", body), 201)


def ms(ts):
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------
# client groups
# ---------------------------------------------------------------------------

def test_client_groups_hand_worked_with_all_four_quadrants(stack):
    acct = signup(stack)
    star, cow, qm, new, gone, empty = (new_group(stack, acct, n) for n in (
        "Star", "Cow", "Question", "New", "Gone", "Empty"))
    people = new_group(stack, acct, "People", {"type": "filter", "kind": "person"})
    a = new_client(stack, acct, "a", [star])
    b = new_client(stack, acct, "b", [star, qm])  # in two groups: counts in both
    q = new_client(stack, acct, "q", [qm])
    c = new_client(stack, acct, "c", [cow])
    d = new_client(stack, acct, "d", kind="person")  # in People by its rule
    n = new_client(stack, acct, "n", [new])
    x = new_client(stack, acct, "x", [gone])
    u = new_client(stack, acct, "u")  # in no group
    # a: now 500 at `from` itself + 200 a millisecond before `to` = 700;
    #    before: 999 at the previous period's first instant + 1 a millisecond
    #    before `from` = 1000
    won(stack, acct, a, 500, FROM)
    won(stack, acct, a, 200, "2026-03-11T11:59:59.999Z")
    won(stack, acct, a, 999, PREV_FROM)
    won(stack, acct, a, 1, "2026-03-01T11:59:59.999Z")
    # not counted: at `to`, before the previous period, in USD, lost
    won(stack, acct, a, 5000, TO)
    won(stack, acct, a, 5000, "2026-02-19T11:59:59.999Z")
    won(stack, acct, a, 5000, "2026-03-05T00:00:00Z", currency="USD")
    lost(stack, acct, a, 5000, "2026-03-05T00:00:00Z")
    won(stack, acct, b, 500, "2026-03-02T00:00:00Z")
    won(stack, acct, q, 100, "2026-03-03T00:00:00Z")
    won(stack, acct, q, 500, "2026-02-25T00:00:00Z")
    won(stack, acct, c, 1200, "2026-03-04T00:00:00Z")
    won(stack, acct, c, 1100, "2026-02-20T00:00:00Z")
    won(stack, acct, d, 300, "2026-03-10T00:00:00Z")
    won(stack, acct, d, 400, "2026-02-28T00:00:00Z")
    won(stack, acct, n, 100, "2026-03-06T00:00:00Z")
    won(stack, acct, x, 50, "2026-02-21T00:00:00Z")
    won(stack, acct, u, 9, "2026-03-07T00:00:00Z")
    won(stack, acct, u, 7, "2026-02-22T00:00:00Z")

    r = bcg(stack, acct, "client_group")
    assert (r["group_by"], r["currency"]) == ("client_group", "EUR")
    assert (r["from"], r["to"]) == ("2026-03-01T12:00:00.000Z", "2026-03-11T12:00:00.000Z")
    assert (r["previous_from"], r["previous_to"]) == ("2026-02-19T12:00:00.000Z", "2026-03-01T12:00:00.000Z")
    assert r["thresholds"] == {"growth": "0.1000", "relative_share": "1.0000"}
    # every client once: now 700 + 500 + 100 + 1200 + 300 + 100 + 0 + 9 = 2909,
    # before 1000 + 0 + 500 + 1100 + 400 + 0 + 50 + 7 = 3057
    assert r["total"] == eur(2909) and r["previous_total"] == eur(3057)
    assert r["ungrouped"] == {"revenue": eur(9), "previous_revenue": eur(7)}
    # Star (a + b): 1200, before 1000: growth 200/1000 = 0.2 (high); tied for
    #   the lead with Cow, so its largest other is 1200: share 1 (high) -> star
    # Cow (c): 1200, before 1100: growth 100/1100 = 0.0909 (low), share 1 -> cash cow
    # Question (b + q): 600, before 500: growth 0.2, share 600/1200 = 0.5 -> question mark
    # People (d): 300, before 400: growth -0.25, share 0.25 -> dog
    # New (n): 100, before 0: growth null (high), share 100/1200 = 0.0833 -> question mark
    # Gone (x): 0, before 50: growth -1, share 0 -> dog
    # Empty: no revenue in either period: not listed
    first, second = sorted([(star["id"], "Star"), (cow["id"], "Cow")])
    expected = {
        star["id"]: (star["id"], 1200, 1000, "0.2000", "1.0000", "star"),
        cow["id"]: (cow["id"], 1200, 1100, "0.0909", "1.0000", "cash_cow"),
    }
    assert rows(r, "group_id") == [
        expected[first[0]], expected[second[0]],
        (qm["id"], 600, 500, "0.2000", "0.5000", "question_mark"),
        (people["id"], 300, 400, "-0.2500", "0.2500", "dog"),
        (new["id"], 100, 0, None, "0.0833", "question_mark"),
        (gone["id"], 0, 50, "-1.0000", "0.0000", "dog"),
    ]
    assert [i["name"] for i in r["items"]] == [first[1], second[1], "Question", "People", "New", "Gone"]
    assert empty["id"] not in {i["group_id"] for i in r["items"]}

    # the USD report sees only the USD deal: Star alone, new, no other item
    r = bcg(stack, acct, "client_group", currency="USD")
    assert r["total"] == money(5000, "USD") and r["previous_total"] == money(0, "USD")
    assert rows(r, "group_id") == [(star["id"], 5000, 0, None, None, "star")]


def test_client_group_borders_of_both_thresholds(stack):
    """Exactly 10% growth is high growth, 9% low; a minor unit under the
    leader's revenue is a low share (exactly the leader's, a tie, is high:
    see the test above); a leader barely ahead has a share just above 1."""
    acct = signup(stack)
    lead, even, under, exact, short = (new_group(stack, acct, n) for n in (
        "Lead", "Even", "Under", "Exact", "Short"))
    for group, now, before in ((lead, 1001, 1000), (even, 1000, 3), (under, 999, 3),
                               (exact, 110, 100), (short, 109, 100)):
        client = new_client(stack, acct, group["name"], [group])
        won(stack, acct, client, now, "2026-03-05T00:00:00Z")
        won(stack, acct, client, before, "2026-02-25T00:00:00Z")
    r = bcg(stack, acct, "client_group")
    # Lead 1001 vs the largest other, Even's 1000: 1.001 -> "1.0010"; growth
    #   1/1000 = 0.001 (low) -> cash cow
    # Even 1000 vs 1001: 0.999 (low); growth 997/3 = 332.3333 -> question mark
    # Under 999 vs 1001 = 0.998 -> question mark
    # Exact: growth 10/100 = 0.1 exactly (high); share 110/1001 -> question mark
    # Short: growth 9/100 = 0.09 (low) -> dog
    assert rows(r, "group_id") == [
        (lead["id"], 1001, 1000, "0.0010", "1.0010", "cash_cow"),
        (even["id"], 1000, 3, "332.3333", "0.9990", "question_mark"),
        (under["id"], 999, 3, "332.0000", "0.9980", "question_mark"),
        (exact["id"], 110, 100, "0.1000", "0.1099", "question_mark"),
        (short["id"], 109, 100, "0.0900", "0.1089", "dog"),
    ]


def test_thresholds_are_configuration(trellis):
    """crm_bcg_growth_high_bp and crm_bcg_share_high_bp move the borders: at
    0% growth and a share of 0.5 the same data fall in other quadrants."""
    env = trellis.env(crm_bcg_growth_high_bp=0, crm_bcg_share_high_bp=5000)
    assert trellis.run("migrate", env=env).returncode == 0
    proc = trellis.start("serve", env=env)
    proc.wait_ready()
    acct = signup(proc)
    big, flat, half, less = (new_group(proc, acct, n) for n in ("Big", "Flat", "Half", "Less"))
    for group, now, before in ((big, 1000, 2000), (flat, 500, 500), (half, 500, 600),
                               (less, 499, 400)):
        client = new_client(proc, acct, group["name"], [group])
        won(proc, acct, client, now, "2026-03-05T00:00:00Z")
        won(proc, acct, client, before, "2026-02-25T00:00:00Z")
    r = bcg(proc, acct, "client_group")
    assert r["thresholds"] == {"growth": "0.0000", "relative_share": "0.5000"}
    # Big: -0.5 (low), 1000/500 = 2 (high) -> cash cow
    # Flat: 0 growth is high at 0%; 500/1000 = 0.5 is high at 0.5 -> star
    # Half: -1/6 (low), 0.5 (high) -> cash cow
    # Less: 99/400 (high), 0.499 (low) -> question mark
    # Flat and Half tie at 500: by group id
    tied = sorted([(flat["id"], "0.0000", "0.5000", "star"), (half["id"], "-0.1667", "0.5000", "cash_cow")])
    assert [(i["group_id"], i["growth"], i["relative_share"], i["bcg"]) for i in r["items"]] == [
        (big["id"], "-0.5000", "2.0000", "cash_cow"), *tied,
        (less["id"], "0.2475", "0.4990", "question_mark"),
    ]
    assert trellis.run("config-example", env=env).stdout.count("crm_bcg_growth_high_bp") >= 1


def test_many_clients_are_placed_in_their_groups_once(stack):
    """More clients with revenue than the report reads one by one (40):
    it reads all clients instead, with the same answer. 45 clients in
    Many, every third also in Thirds, and three people (in People by its
    rule, one of them also in Many); client i won i now and 1 before."""
    acct = signup(stack)
    many, thirds = new_group(stack, acct, "Many"), new_group(stack, acct, "Thirds")
    people = new_group(stack, acct, "People", {"type": "filter", "kind": "person"})
    for i in range(1, 46):
        groups = [many, many, thirds] if i % 3 == 0 else [many]  # named twice: counted once
        kind = "person" if i in (1, 2) else "company"
        client = new_client(stack, acct, f"c{i}", groups[:1] if i == 2 else groups if i > 2 else [], kind=kind)
        won(stack, acct, client, i, "2026-03-05T00:00:00Z")
        won(stack, acct, client, 1, "2026-02-25T00:00:00Z")
    person = new_client(stack, acct, "p", kind="person")
    won(stack, acct, person, 1000, "2026-03-05T00:00:00Z")
    r = bcg(stack, acct, "client_group")
    # Many: clients 2..45: 45*46/2 - 1 = 1034 now, 44 before
    # People: clients 1, 2 and p: 1 + 2 + 1000 = 1003 now, 2 before
    # Thirds: 3 + 6 + ... + 45 = 3 * 120 = 360 now, 15 before
    # no client is in no group; every client once in the totals
    assert r["total"] == eur(1035 + 1000) and r["previous_total"] == eur(45)
    assert r["ungrouped"] == {"revenue": eur(0), "previous_revenue": eur(0)}
    assert [(i["group_id"], i["revenue"]["amount"], i["previous_revenue"]["amount"]) for i in r["items"]] == [
        (many["id"], 1034, 44), (people["id"], 1003, 2), (thirds["id"], 360, 15)]


def test_group_ids_spelled_in_any_case_name_the_same_group(stack):
    acct = signup(stack)
    group = new_group(stack, acct, "Cased")
    gid = group["id"]
    mixed = "".join(ch.upper() if n % 2 else ch for n, ch in enumerate(gid))
    for n, spelled in enumerate((gid, gid.upper(), mixed)):
        client = ok(post(stack, acct, "/v1/crm/clients",
                         {"name": f"c{n}", "kind": "company", "group_ids": [spelled]}), 201)
        won(stack, acct, client, 10 ** n, "2026-03-05T00:00:00Z")
    r = bcg(stack, acct, "client_group")
    assert rows(r, "group_id") == [(gid, 111, 0, None, None, "star")]
    assert r["ungrouped"]["revenue"] == eur(0)


def test_client_groups_with_no_revenue_is_empty(stack):
    acct = signup(stack)
    new_group(stack, acct, "Quiet")
    r = bcg(stack, acct, "client_group")
    assert r["items"] == [] and r["total"] == eur(0) and r["previous_total"] == eur(0)
    assert r["ungrouped"] == {"revenue": eur(0), "previous_revenue": eur(0)}


def test_awkward_amounts_add_up_exactly(stack):
    """Sums past 2^53, where a double can no longer hold every integer
    (10^16 + 1 is not one), and thirds."""
    acct = signup(stack)
    big, third = new_group(stack, acct, "Big"), new_group(stack, acct, "Third")
    cb, ct = new_client(stack, acct, "cb", [big]), new_client(stack, acct, "ct", [third])
    for _ in range(10):
        won(stack, acct, cb, 10**15, "2026-03-05T00:00:00Z")
    won(stack, acct, cb, 1, "2026-03-06T00:00:00Z")
    for _ in range(3):
        won(stack, acct, cb, 10**15, "2026-02-25T00:00:00Z")
    won(stack, acct, ct, 1, "2026-03-05T00:00:00Z")
    won(stack, acct, ct, 3, "2026-02-25T00:00:00Z")
    r = bcg(stack, acct, "client_group")
    # Big: now 10^16 + 1, before 3 x 10^15: growth (7 x 10^15 + 1) / (3 x 10^15)
    #   = 2.3333...; against Third's 1: share 10^16 + 1 -> star
    # Third: 1 vs 3: -2/3 -> "-0.6667"; 1 / (10^16 + 1) -> "0.0000" -> dog
    assert r["total"] == eur(10**16 + 2) and r["previous_total"] == eur(3 * 10**15 + 3)
    assert rows(r, "group_id") == [
        (big["id"], 10**16 + 1, 3 * 10**15, "2.3333", f"{10**16 + 1}.0000", "star"),
        (third["id"], 1, 3, "-0.6667", "0.0000", "dog"),
    ]


# ---------------------------------------------------------------------------
# products
# ---------------------------------------------------------------------------

def line(product, quantity, price, currency="EUR"):
    return {"product_id": product["id"], "quantity": quantity, "unit_price": money(price, currency)}


def invoiced_order(target, acct, warehouse, lines, currency="EUR", **fields):
    """An order confirmed and invoiced; returns the invoice."""
    body = {"warehouse_id": warehouse["id"], "currency": currency, "lines": lines}
    body.update(fields)
    order = ok(call(target, acct, "POST", "/v1/erp/orders", json=body), 201)
    ok(call(target, acct, "POST", f"/v1/erp/orders/{order['id']}/confirm"))
    return ok(call(target, acct, "POST", f"/v1/erp/orders/{order['id']}/invoice"), 201)


def stocked_products(target, acct, names):
    w = make_warehouse(target, acct)
    products = {}
    for name in names:
        products[name] = make_product(target, acct, name=name.title())
        receive(target, acct, products[name], w, 100, 1)
    return w, products


def periods_around(before_invoices, now_invoice):
    """from = the invoice of the period; the period before it, as long,
    reaches back to the earliest invoice before it."""
    start = ms(now_invoice["created_at"])
    length = start - min(ms(i["created_at"]) for i in before_invoices)
    assert max(ms(i["created_at"]) for i in before_invoices) < start
    return iso(start), iso(start + length)


def test_products_hand_worked_with_all_four_quadrants(stack):
    acct = signup(stack)
    w, p = stocked_products(stack, acct, ["star", "cow", "question", "dog", "new", "gone"])
    # two invoices before (the period before reaches back to the first),
    # one now (the period starts at it)
    # (dog sold in both: 1 x 100 + 2 x 100)
    before = [invoiced_order(stack, acct, w, [
        line(p["star"], 1, 700), line(p["cow"], 1, 819), line(p["question"], 1, 300),
        line(p["dog"], 1, 100)]),
        invoiced_order(stack, acct, w, [line(p["dog"], 2, 100), line(p["gone"], 1, 70)])]
    now = [invoiced_order(stack, acct, w, [
        line(p["star"], 3, 300), line(p["cow"], 1, 900), line(p["question"], 1, 330),
        line(p["dog"], 1, 299), line(p["new"], 1, 7)])]
    # not counted: confirmed but never invoiced, and invoiced in USD
    order = ok(call(stack, acct, "POST", "/v1/erp/orders", json={
        "warehouse_id": w["id"], "currency": "EUR", "lines": [line(p["star"], 1, 5000)]}), 201)
    ok(call(stack, acct, "POST", f"/v1/erp/orders/{order['id']}/confirm"))
    dollar = make_product(stack, acct, name="Dollar", price=money(1, "USD"))
    receive(stack, acct, dollar, w, 1, 1, currency="USD")
    usd = invoiced_order(stack, acct, w, [line(dollar, 1, 5000, "USD")], currency="USD")
    frm, to = periods_around(before, now[0])

    r = bcg(stack, acct, "product", frm, to)
    assert r["group_by"] == "product" and "ungrouped" not in r
    # nets (quantity x price): now star 900, cow 900, question 330, dog 299,
    # new 7, gone 0 = 2436; before star 700, cow 819, question 300, dog 300,
    # gone 70 = 2189
    assert r["total"] == eur(2436) and r["previous_total"] == eur(2189)
    # star: 200/700 = 0.2857 (high); tied with cow for the lead: share 1 -> star
    # cow: 81/819 = 0.0989 (low); share 1 -> cash cow
    # question: 30/300 = 0.1 exactly (high); 330/900 = 0.3667 -> question mark
    # dog: -1/300 = -0.0033; 299/900 = 0.3322 -> dog
    # new: null (high); 7/900 = 0.0078 -> question mark
    # gone: -1; 0 -> dog
    first, second = sorted([p["star"]["id"], p["cow"]["id"]])
    expected = {p["star"]["id"]: (p["star"]["id"], 900, 700, "0.2857", "1.0000", "star"),
                p["cow"]["id"]: (p["cow"]["id"], 900, 819, "0.0989", "1.0000", "cash_cow")}
    assert rows(r, "product_id") == [
        expected[first], expected[second],
        (p["question"]["id"], 330, 300, "0.1000", "0.3667", "question_mark"),
        (p["dog"]["id"], 299, 300, "-0.0033", "0.3322", "dog"),
        (p["new"]["id"], 7, 0, None, "0.0078", "question_mark"),
        (p["gone"]["id"], 0, 70, "-1.0000", "0.0000", "dog"),
    ]
    names = {p[k]["id"]: p[k]["name"] for k in p}
    assert [i["name"] for i in r["items"]] == [names[i["product_id"]] for i in r["items"]]

    # USD, over a day from the same start (the period before holds nothing)
    r = bcg(stack, acct, "product", frm, iso(ms(frm) + timedelta(days=1)), currency="USD")
    assert usd["total"]["currency"] == "USD"
    assert rows(r, "product_id") == [(dollar["id"], 5000, 0, None, None, "star")]
    # a period that ends where the current one begins holds the earlier
    # invoice only, now: every product sold then, nothing before
    r = bcg(stack, acct, "product", before[0]["created_at"], frm)
    assert r["total"] == eur(2189) and r["previous_total"] == eur(0)
    assert all(i["growth"] is None for i in r["items"])


def test_products_with_no_sales_is_empty(stack):
    acct = signup(stack)
    r = bcg(stack, acct, "product")
    assert r["items"] == [] and r["total"] == eur(0)


# ---------------------------------------------------------------------------
# bad input, permissions, own records, tenants
# ---------------------------------------------------------------------------

def test_bad_input_is_422_naming_the_field(stack):
    acct = signup(stack)

    def bad(params, fields):
        body = check_problem(stack.get("/v1/crm/reports/bcg", headers=acct.headers, params=params), 422)
        assert field_errors(body) == fields, body

    good = {"from": FROM, "to": TO, "currency": "EUR", "group_by": "product"}
    bad({}, {"from", "to", "currency", "group_by"})
    bad({k: v for k, v in good.items() if k != "group_by"}, {"group_by"})
    bad(dict(good, group_by="region"), {"group_by"})
    bad(dict(good, group_by="PRODUCT"), {"group_by"})
    bad({k: v for k, v in good.items() if k != "currency"}, {"currency"})
    bad(dict(good, currency="eur"), {"currency"})
    bad(dict(good, currency="EURO"), {"currency"})
    bad(dict(good, **{"from": "yesterday"}), {"from"})
    bad(dict(good, to="2026-02-30T00:00:00Z"), {"to"})
    bad(dict(good, to=FROM), {"to"})
    bad(dict(good, **{"from": TO, "to": FROM}), {"to"})
    # at most 120 calendar months
    bad(dict(good, **{"from": "2016-01-01T00:00:00Z", "to": "2026-01-01T00:00:01Z"}), {"to"})
    ok(stack.get("/v1/crm/reports/bcg", headers=acct.headers,
                 params=dict(good, **{"from": "2016-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"})))
    # the period before must not start before 1900
    bad(dict(good, **{"from": "1900-06-01T00:00:00Z", "to": "1901-01-01T00:00:00Z"}), {"from"})
    # a parameter the report does not read
    check_problem(stack.get("/v1/crm/reports/bcg", headers=acct.headers, params=dict(good, region="x")), 400, "unknown-parameter")


def test_roles_without_crm_reports_read_get_403(stack):
    owner = signup(stack)
    params = {"from": FROM, "to": TO, "currency": "EUR", "group_by": "client_group"}
    for role in ("sales", "warehouse", "employee"):
        who = user_session(stack, owner, [role])
        check_problem(stack.get("/v1/crm/reports/bcg", headers=who.headers, params=params), 403)
    for role in ("manager", "accountant"):
        who = user_session(stack, owner, [role])
        for by in ("client_group", "product"):
            ok(stack.get("/v1/crm/reports/bcg", headers=who.headers, params=dict(params, group_by=by)))
    check_problem(requests.get(stack.url("/v1/crm/reports/bcg"), params=params, timeout=30), 401)


def test_own_readers_count_only_their_deals_and_orders(stack):
    owner = signup(stack)
    role = f"bcg-own-{secrets.token_hex(3)}"
    ok(stack.post("/v1/roles", headers=owner.headers,
                  json={"name": role, "permissions": ["crm.reports.read:own"]}), 201)
    me = user_session(stack, owner, [role])
    group = new_group(stack, owner, "Shared")
    client = new_client(stack, owner, "Shared client", [group])
    # mine: 70 now, 50 before; the owner's: 30 now, 1000 before
    won(stack, owner, client, 70, "2026-03-05T00:00:00Z", owner_id=me.user_id)
    won(stack, owner, client, 50, "2026-02-25T00:00:00Z", owner_id=me.user_id)
    won(stack, owner, client, 30, "2026-03-05T00:00:00Z")
    won(stack, owner, client, 1000, "2026-02-25T00:00:00Z")
    r = bcg(stack, me, "client_group")
    assert r["total"] == eur(70) and r["previous_total"] == eur(50)
    assert rows(r, "group_id") == [(group["id"], 70, 50, "0.4000", None, "star")]
    r = bcg(stack, owner, "client_group")
    assert rows(r, "group_id") == [(group["id"], 100, 1050, "-0.9048", None, "cash_cow")]

    w, p = stocked_products(stack, owner, ["mine", "theirs"])
    invoices = [invoiced_order(stack, owner, w, [line(p["mine"], 1, 40)], owner_id=me.user_id),
                invoiced_order(stack, owner, w, [line(p["theirs"], 1, 60)])]
    start = min(ms(i["created_at"]) for i in invoices)
    end = max(ms(i["created_at"]) for i in invoices) + timedelta(milliseconds=1)
    r = bcg(stack, me, "product", iso(start), iso(end))
    assert rows(r, "product_id") == [(p["mine"]["id"], 40, 0, None, None, "star")]
    r = bcg(stack, owner, "product", iso(start), iso(end))
    assert [i["product_id"] for i in r["items"]] == [p["theirs"]["id"], p["mine"]["id"]]


def test_another_tenants_data_is_never_counted(stack):
    mine, theirs = signup(stack), signup(stack)
    for acct, amount in ((mine, 100), (theirs, 900)):
        group = new_group(stack, acct, "Same name")
        client = new_client(stack, acct, "Same client", [group])
        won(stack, acct, client, amount, "2026-03-05T00:00:00Z")
    w, p = stocked_products(stack, theirs, ["theirs"])
    inv = invoiced_order(stack, theirs, w, [line(p["theirs"], 1, 500)])
    at = ms(inv["created_at"])
    frm, to = iso(at), iso(at + timedelta(milliseconds=1))

    r = bcg(stack, mine, "client_group")
    assert r["total"] == eur(100) and [i["revenue"] for i in r["items"]] == [eur(100)]
    assert bcg(stack, mine, "product", frm, to)["items"] == []
    r = bcg(stack, theirs, "client_group")
    assert r["total"] == eur(900) and [i["revenue"] for i in r["items"]] == [eur(900)]
    assert rows(bcg(stack, theirs, "product", frm, to), "product_id") == [
        (p["theirs"]["id"], 500, 0, None, None, "star")]
    # their group's id named in my client is refused, not counted
    their_group = ok(stack.get("/v1/crm/groups", headers=theirs.headers))["items"][0]
    r = post(stack, mine, "/v1/crm/clients", {"name": "x", "kind": "company", "group_ids": [their_group["id"]]})
    errors = field_errors(check_problem(r, 422))
    assert errors and errors <= {"group_ids", "group_ids[0]"}, r.text
    assert bcg(stack, mine, "client_group")["total"] == eur(100)


def test_answers_match_the_served_openapi_schema(stack):
    """GET /v1/openapi.json describes the answer as components/schemas/BcgReport;
    real answers of both kinds, with null growth and share, validate against it."""
    import jsonschema

    doc = ok(requests.get(stack.url("/v1/openapi.json"), timeout=HTTP_TIMEOUT_S))
    op = doc["paths"]["/v1/crm/reports/bcg"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BcgReport"}
    names = {p["name"]: p for p in op["parameters"]}
    assert {"from", "to", "currency", "group_by"} <= set(names)
    assert names["group_by"]["schema"].get("enum") == ["product", "client_group"]
    validator = jsonschema.Draft202012Validator(doc["components"]["schemas"]["BcgReport"])

    acct = signup(stack)
    group = new_group(stack, acct, "G")
    client = new_client(stack, acct, "c", [group])
    won(stack, acct, client, 5, "2026-03-05T00:00:00Z")
    new_client(stack, acct, "alone")
    answer = bcg(stack, acct, "client_group")
    assert answer["items"][0]["growth"] is None and answer["items"][0]["relative_share"] is None
    validator.validate(answer)

    w, p = stocked_products(stack, acct, ["only"])
    inv = invoiced_order(stack, acct, w, [line(p["only"], 1, 9)])
    at = ms(inv["created_at"])
    answer = bcg(stack, acct, "product", iso(at), iso(at + timedelta(milliseconds=1)))
    assert len(answer["items"]) == 1
    validator.validate(answer)
    validator.validate(bcg(stack, acct, "product"))  # empty
    # and the schema is not a blank check: a wrong answer fails it
    broken = dict(answer, items=[dict(answer["items"][0], bcg="cow")])
    assert not validator.is_valid(broken)
