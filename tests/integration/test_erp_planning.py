"""ERP reorder planning: reorder rules per product and warehouse, runs that
draft purchase orders for whatever fell below its point (one per supplier,
with lines worked out by hand below), never twice for one shortfall - not
by a second run, not by runs at once over three processes - and again once
a draft is cancelled or the stock drops after a receipt; the daily job that
drafts without being asked, the erp.purchasing.suggested event; bad input,
roles and other tenants. Tests that move stock end with the inventory
invariants."""

import threading
import time

import pytest
import requests

from conftest import check_problem, signup, user_session
from erp_support import (assert_inventory_invariants, call, make_product, make_warehouse, money,
                         move_ok, receive, stock)
from test_erp_purchasing import make_supplier, receive_po
from test_exact_writes import Trio, race, spellings, statuses, trio  # noqa: F401 (fixture)


@pytest.fixture
def owner(stack):
    return signup(stack)


def make_rule(target, acct, product, warehouse, supplier, point, quantity, cost, currency="EUR"):
    r = call(target, acct, "POST", "/v1/erp/reorder-rules", json={
        "product_id": product["id"], "warehouse_id": warehouse["id"],
        "supplier_id": supplier["id"], "reorder_point": point, "reorder_quantity": quantity,
        "unit_cost": money(cost, currency)})
    assert r.status_code == 201, r.text
    return r.json()


def run(target, acct):
    r = call(target, acct, "POST", "/v1/erp/planning/run", timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def drafts(target, acct):
    r = call(target, acct, "GET", "/v1/erp/purchase-orders", params={"status": "draft"})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def lines_of(po):
    return sorted((l["product_id"], l["quantity"], l["unit_cost"]["amount"], l["received"])
                  for l in po["lines"])


def po_act(target, acct, po, action):
    return call(target, acct, "POST", f"/v1/erp/purchase-orders/{po['id']}/{action}")


class World:
    """Two suppliers, one warehouse, and products short by amounts worked
    out by hand:

    bolts  available 3, point 10, lots of 20            -> short 7: 20 at 1.50
    nuts   available 0, point 5,  lots of 4             -> short 5: 2 lots, 8 at 0.99
    flour  kg (scale 3), nothing, point 2 kg, lots 1.5 kg -> short 2000: 3000 (3 kg) at 2.50/kg
    gears  available 10, point 10                       -> not short (at the point)
    washers nothing, point 5, a hand-made purchase order of 6 open -> not short

    acme (bolts, nuts, washers): 20 x 150 + 8 x 99 = 3000 + 792 = 3792
    mills (flour): 3000 x 250 / 1000 = 750"""

    def __init__(self, target, acct):
        self.w = make_warehouse(target, acct)
        self.acme = make_supplier(target, acct, name="Acme Fasteners")
        self.mills = make_supplier(target, acct, name="Mills Ltd")
        self.bolts, self.nuts = make_product(target, acct), make_product(target, acct)
        self.flour = make_product(target, acct, uom="kg", uom_scale=3)
        self.gears, self.washers = make_product(target, acct), make_product(target, acct)
        receive(target, acct, self.bolts, self.w, 3, 140)
        receive(target, acct, self.gears, self.w, 10, 500)
        self.hand = call(target, acct, "POST", "/v1/erp/purchase-orders", json={
            "supplier_id": self.acme["id"], "warehouse_id": self.w["id"], "currency": "EUR",
            "lines": [{"product_id": self.washers["id"], "quantity": 6,
                       "unit_cost": money(7)}]}).json()
        self.rules = {
            "bolts": make_rule(target, acct, self.bolts, self.w, self.acme, 10, 20, 150),
            "nuts": make_rule(target, acct, self.nuts, self.w, self.acme, 5, 4, 99),
            "flour": make_rule(target, acct, self.flour, self.w, self.mills, 2000, 1500, 250),
            "gears": make_rule(target, acct, self.gears, self.w, self.mills, 10, 5, 480),
            "washers": make_rule(target, acct, self.washers, self.w, self.acme, 5, 10, 7),
        }

    def check_drafts(self, made):
        by_supplier = {po["supplier_id"]: po for po in made}
        assert set(by_supplier) == {self.acme["id"], self.mills["id"]}, made
        acme, mills = by_supplier[self.acme["id"]], by_supplier[self.mills["id"]]
        for po in (acme, mills):
            assert (po["status"], po["warehouse_id"], po["currency"]) == ("draft", self.w["id"], "EUR")
        assert lines_of(acme) == sorted([(self.bolts["id"], 20, 150, 0), (self.nuts["id"], 8, 99, 0)])
        assert acme["total"] == money(3792)
        assert lines_of(mills) == [(self.flour["id"], 3000, 250, 0)]
        assert mills["total"] == money(750)
        return acme, mills


def test_rules_below_their_point_make_one_draft_per_supplier_with_the_lines_worked_by_hand(stack, owner):
    world = World(stack, owner)
    body = run(stack, owner)
    acme, mills = world.check_drafts(body["drafts"])
    short = {s["rule_id"]: s for s in body["short"]}
    assert set(short) == {world.rules[k]["id"] for k in ("bolts", "nuts", "flour")}
    bolts = short[world.rules["bolts"]["id"]]
    assert (bolts["available"], bolts["on_order"], bolts["reorder_point"], bolts["ordered"],
            bolts["purchase_order_id"], bolts["skipped"]) == (3, 0, 10, 20, acme["id"], None)
    assert short[world.rules["flour"]["id"]]["purchase_order_id"] == mills["id"]
    assert {po["id"] for po in drafts(stack, owner)} == {acme["id"], mills["id"]}
    # the hand-made order is untouched and still open
    hand = call(stack, owner, "GET", f"/v1/erp/purchase-orders/{world.hand['id']}").json()
    assert hand["status"] == "open" and hand["version"] == 1
    assert_inventory_invariants(stack, owner)


def test_running_again_drafts_nothing_new(stack, owner):
    world = World(stack, owner)
    first = run(stack, owner)
    world.check_drafts(first["drafts"])
    again = run(stack, owner)
    assert again == {"drafts": [], "short": []}, again
    assert len(drafts(stack, owner)) == 2
    assert_inventory_invariants(stack, owner)


def test_a_received_order_and_stock_dropping_again_make_a_new_draft(stack, owner):
    w, s, p = make_warehouse(stack, owner), make_supplier(stack, owner), make_product(stack, owner)
    make_rule(stack, owner, p, w, s, 10, 12, 300)
    [draft] = run(stack, owner)["drafts"]
    assert lines_of(draft) == [(p["id"], 12, 300, 0)]
    # a draft is not received before it is approved
    check_problem(receive_po(stack, owner, draft, [{"product_id": p["id"], "quantity": 12}]), 409)
    approved = po_act(stack, owner, draft, "approve")
    assert approved.status_code == 200 and approved.json()["status"] == "open", approved.text
    assert run(stack, owner)["drafts"] == []  # open: still on order
    r = receive_po(stack, owner, draft, [{"product_id": p["id"], "quantity": 5}])
    assert r.status_code == 201, r.text
    assert run(stack, owner)["drafts"] == []  # 5 in stock + 7 on order
    r = receive_po(stack, owner, draft, [{"product_id": p["id"], "quantity": 7}])
    assert r.status_code == 201 and r.json()["purchase_order"]["status"] == "received", r.text
    assert stock(stack, owner, p, w)["available"] == 12
    assert run(stack, owner)["drafts"] == []  # 12 >= 10
    move_ok(stack, owner, kind="write_off", product_id=p["id"], warehouse_id=w["id"], quantity=3,
            reason="damaged")
    body = run(stack, owner)  # 9 < 10: short by 1, one lot of 12
    [again] = body["drafts"]
    assert again["id"] != draft["id"] and lines_of(again) == [(p["id"], 12, 300, 0)]
    assert [(x["available"], x["on_order"], x["ordered"]) for x in body["short"]] == [(9, 0, 12)]
    assert_inventory_invariants(stack, owner)


def test_a_cancelled_draft_lets_the_next_run_draft_again(stack, owner):
    w, s, p = make_warehouse(stack, owner), make_supplier(stack, owner), make_product(stack, owner)
    make_rule(stack, owner, p, w, s, 1, 1, 10)
    [draft] = run(stack, owner)["drafts"]
    cancelled = po_act(stack, owner, draft, "cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    check_problem(po_act(stack, owner, draft, "approve"), 409)
    check_problem(po_act(stack, owner, draft, "cancel"), 409)
    check_problem(call(stack, owner, "PATCH", f"/v1/erp/purchase-orders/{draft['id']}",
                       json={"lines": []}), 409)
    [again] = run(stack, owner)["drafts"]
    assert again["id"] != draft["id"] and lines_of(again) == [(p["id"], 1, 10, 0)]
    assert run(stack, owner)["drafts"] == []
    assert_inventory_invariants(stack, owner)


def test_a_draft_changes_like_an_open_order_and_a_hand_made_one_is_not_a_draft(stack, owner):
    w, s, p = make_warehouse(stack, owner), make_supplier(stack, owner), make_product(stack, owner)
    make_rule(stack, owner, p, w, s, 5, 5, 10)
    [draft] = run(stack, owner)["drafts"]
    r = call(stack, owner, "PATCH", f"/v1/erp/purchase-orders/{draft['id']}", json={
        "lines": [{"product_id": p["id"], "quantity": 3, "unit_cost": money(11)}]})
    assert r.status_code == 200 and r.json()["status"] == "draft", r.text
    assert r.json()["total"] == money(33)
    # 3 on order, point 5: short again by 2, one lot of 5
    [more] = run(stack, owner)["drafts"]
    assert lines_of(more) == [(p["id"], 5, 10, 0)]
    hand = call(stack, owner, "POST", "/v1/erp/purchase-orders", json={
        "supplier_id": s["id"], "warehouse_id": w["id"], "currency": "EUR",
        "lines": [{"product_id": p["id"], "quantity": 1, "unit_cost": money(10)}]}).json()
    assert hand["status"] == "open"
    check_problem(po_act(stack, owner, hand, "approve"), 409)
    check_problem(po_act(stack, owner, hand, "cancel"), 409)
    assert_inventory_invariants(stack, owner)


def test_inactive_products_warehouses_and_suppliers_are_reported_and_not_drafted(stack, owner):
    w, s, p = make_warehouse(stack, owner), make_supplier(stack, owner), make_product(stack, owner)
    rule = make_rule(stack, owner, p, w, s, 5, 5, 10)
    assert call(stack, owner, "DELETE", f"/v1/erp/suppliers/{s['id']}").status_code == 204
    body = run(stack, owner)
    assert body["drafts"] == []
    assert [(x["rule_id"], x["ordered"], x["purchase_order_id"], x["skipped"]) for x in body["short"]] == [
        (rule["id"], 0, None, "the supplier is inactive")]
    other = make_supplier(stack, owner)
    r = call(stack, owner, "PATCH", f"/v1/erp/reorder-rules/{rule['id']}",
             json={"supplier_id": other["id"]})
    assert r.status_code == 200, r.text
    [draft] = run(stack, owner)["drafts"]
    assert draft["supplier_id"] == other["id"]
    assert_inventory_invariants(stack, owner)


# ---------------------------------------------------------------------------
# exact across processes
# ---------------------------------------------------------------------------

class At:
    """One of the trio's processes as a target of the helpers."""

    def __init__(self, proc):
        self.base_url = proc.url("").rstrip("/")


def test_runs_at_once_over_three_processes_make_one_draft(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    w, s = make_warehouse(at[0], owner), make_supplier(at[1], owner)
    products = [make_product(at[i % 3], owner) for i in range(3)]
    for i, p in enumerate(products):
        make_rule(at[i % 3], owner, p, w, s, 10 + i, 7, 100 + i)

    def planning(i):
        return lambda: requests.post(trio.url(i, "/v1/erp/planning/run"), headers=owner.headers,
                                     timeout=120)

    got = race([planning(i) for i in range(12)])
    assert statuses(got) == [200] * 12, [r.text if hasattr(r, "text") else r for r in got]
    made = [po for r in got for po in r.json()["drafts"]]
    assert len(made) == 1, made
    [draft] = drafts(at[2], owner)
    assert draft["id"] == made[0]["id"]
    assert lines_of(draft) == sorted((p["id"], 14, 100 + i, 0) for i, p in enumerate(products))
    assert run(at[1], owner)["drafts"] == []
    # exactly one event's mark for it, and the record holds no plan left over
    tid = owner.tenant_oid
    assert trio.mongo.once_marks.count_documents(
        {"tenant_id": tid, "_id": {"$regex": "erp.purchasing.suggested"}}) == 1
    assert trio.mongo.erp_planning.find_one({"tenant_id": tid}).get("plan") is None
    assert_inventory_invariants(at[0], owner)


def test_a_run_killed_after_its_plan_is_finished_by_the_next_run_once(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    w, s, p = make_warehouse(at[0], owner), make_supplier(at[1], owner), make_product(at[2], owner)
    make_rule(at[0], owner, p, w, s, 4, 4, 25)
    # a run that stops for 30 s right after writing its plan, and is killed there
    doomed, _ = trio.start(debug_step_delay_ms=30000)

    def doomed_run():
        try:
            requests.post(doomed.url("/v1/erp/planning/run"), headers=owner.headers, timeout=60)
        except requests.RequestException:
            pass  # killed: no answer comes
    threading.Thread(target=doomed_run, daemon=True).start()
    tid, plan = owner.tenant_oid, None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not plan:
        rec = trio.mongo.erp_planning.find_one({"tenant_id": tid}) or {}
        plan = rec.get("plan")
        time.sleep(0.05)
    assert plan, "the doomed run wrote no plan"
    doomed.kill()
    assert drafts(at[0], owner) == []  # planned, not stored
    # the next run, in another process, stores the plan's draft - and no other
    assert run(at[1], owner) == {"drafts": [], "short": []}
    [draft] = drafts(at[2], owner)
    assert draft["id"] == str(plan["drafts"][0]["id"])
    assert lines_of(draft) == [(p["id"], 4, 25, 0)]
    assert trio.mongo.erp_planning.find_one({"tenant_id": tid}).get("plan") is None
    assert trio.mongo.once_marks.count_documents(
        {"tenant_id": tid, "_id": {"$regex": "erp.purchasing.suggested"}}) == 1
    assert run(at[2], owner)["drafts"] == []
    assert_inventory_invariants(at[0], owner)


def test_the_daily_job_drafts_without_being_asked_and_keeps_one_chain(trellis):
    trio_ = Trio(trellis, erp_planning_every_ms=1000)
    try:
        at = [At(p) for p in trio_.procs]
        owner = signup(at[0])
        w, s = make_warehouse(at[0], owner), make_supplier(at[0], owner)
        products = [make_product(at[0], owner) for _ in range(6)]

        # rules created at once over three processes: each may start the chain
        def rule(i):
            body = {"product_id": products[i]["id"], "warehouse_id": w["id"],
                    "supplier_id": s["id"], "reorder_point": 3, "reorder_quantity": 3,
                    "unit_cost": money(50)}
            return lambda: requests.post(trio_.url(i, "/v1/erp/reorder-rules"), json=body,
                                         headers=owner.headers, timeout=60)

        assert statuses(race([rule(i) for i in range(6)])) == [201] * 6
        deadline, made = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            made = drafts(at[1], owner)
            if made and sum(len(po["lines"]) for po in made) == 6:
                break
            time.sleep(0.2)
        assert made, "no draft within 30 s"
        assert sum(len(po["lines"]) for po in made) == 6, made
        assert all(l["quantity"] == 3 for po in made for l in po["lines"])
        time.sleep(3)  # three more slots: nothing new, and one job waiting
        assert {po["id"] for po in drafts(at[2], owner)} == {po["id"] for po in made}
        key = f"q:{{{trio_.db}:erp.planning:0}}:delayed"
        waiting = []
        for _ in range(10):
            members = trellis.stack.redis.zrange(key, 0, -1)
            waiting.append(sum(1 for m in members if owner.tenant_id in (m if isinstance(m, str) else m.decode())))
            time.sleep(0.25)
        assert max(waiting) == 1, waiting
        rec = trio_.mongo.erp_planning.find_one({"tenant_id": owner.tenant_oid})
        assert rec["chain"]["at"] > time.time() * 1000 - 2000, rec  # due now or next
        # no rules left: the chain ends
        for r in call(at[0], owner, "GET", "/v1/erp/reorder-rules").json()["items"]:
            assert call(at[0], owner, "DELETE", f"/v1/erp/reorder-rules/{r['id']}").status_code == 204
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            rec = trio_.mongo.erp_planning.find_one({"tenant_id": owner.tenant_oid})
            if "chain" not in rec:
                break
            time.sleep(0.2)
        assert "chain" not in rec, rec
        assert_inventory_invariants(at[0], owner)
    finally:
        trio_.check_logs()


def test_a_draft_publishes_erp_purchasing_suggested_once(stack, owner):
    from test_events_live import auth, events, no_event, until_type, ws_open
    w, s, p = make_warehouse(stack, owner), make_supplier(stack, owner), make_product(stack, owner)
    make_rule(stack, owner, p, w, s, 2, 2, 10)
    accountant = user_session(stack, owner, ["accountant"])  # erp.purchasing.read
    with ws_open(stack) as ws:
        auth(ws, accountant, topics=["erp.purchasing"])
        until_type(ws, "subscribed")
        [draft] = run(stack, owner)["drafts"]
        ev = events(ws, 1)[0]
        assert (ev["topic"], ev["event"], ev["entity_id"]) == ("erp.purchasing", "erp.purchasing.suggested", draft["id"])
        assert ev["data"]["status"] == "draft" and lines_of(ev["data"]) == lines_of(draft)
        assert run(stack, owner)["drafts"] == []
        no_event(ws)
    assert_inventory_invariants(stack, owner)


# ---------------------------------------------------------------------------
# rules: bad input, duplicates, roles, other tenants
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("change,field", [
    ({"reorder_point": -1}, "reorder_point"),
    ({"reorder_quantity": 0}, "reorder_quantity"),
    ({"reorder_quantity": -3}, "reorder_quantity"),
    ({"reorder_point": 2.5}, "reorder_point"),
    ({"reorder_quantity": "4"}, "reorder_quantity"),
    ({"unit_cost": money(-1)}, "unit_cost"),
    ({"unit_cost": {"amount": 1.5, "currency": "EUR"}}, "unit_cost"),
    ({"unit_cost": money(10, "USD")}, "unit_cost"),
    ({"product_id": "0" * 24}, "product_id"),
    ({"supplier_id": "not-an-id"}, "supplier_id"),
    ({"warehouse_id": None}, "warehouse_id"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_rule_is_422_and_stores_nothing(stack, owner, change, field):
    w, s, p = make_warehouse(stack, owner), make_supplier(stack, owner), make_product(stack, owner)
    body = {"product_id": p["id"], "warehouse_id": w["id"], "supplier_id": s["id"],
            "reorder_point": 5, "reorder_quantity": 4, "unit_cost": money(10)}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    r = call(stack, owner, "POST", "/v1/erp/reorder-rules", json=body)
    assert field in [e["field"] for e in check_problem(r, 422)["errors"]], r.text
    assert call(stack, owner, "GET", "/v1/erp/reorder-rules").json()["items"] == []


def test_refs_of_another_tenant_are_422(stack, owner):
    other = signup(stack)
    w, s, p = make_warehouse(stack, owner), make_supplier(stack, owner), make_product(stack, owner)
    ow, os_, op = make_warehouse(stack, other), make_supplier(stack, other), make_product(stack, other)
    for field, value in (("product_id", op["id"]), ("warehouse_id", ow["id"].upper()),
                         ("supplier_id", os_["id"])):
        body = {"product_id": p["id"], "warehouse_id": w["id"], "supplier_id": s["id"],
                "reorder_point": 5, "reorder_quantity": 4, "unit_cost": money(10), field: value}
        r = call(stack, owner, "POST", "/v1/erp/reorder-rules", json=body)
        assert field in [e["field"] for e in check_problem(r, 422)["errors"]], r.text
    assert call(stack, owner, "GET", "/v1/erp/reorder-rules").json()["items"] == []


def test_one_rule_per_product_and_warehouse(stack, owner):
    w, s, p = make_warehouse(stack, owner), make_supplier(stack, owner), make_product(stack, owner)
    rule = make_rule(stack, owner, p, w, s, 5, 4, 10)
    r = call(stack, owner, "POST", "/v1/erp/reorder-rules", json={
        "product_id": p["id"].upper(), "warehouse_id": w["id"], "supplier_id": s["id"],
        "reorder_point": 1, "reorder_quantity": 1, "unit_cost": money(1)})
    check_problem(r, 409)
    # another warehouse is another rule; product and warehouse stay as set
    w2 = make_warehouse(stack, owner)
    make_rule(stack, owner, p, w2, s, 5, 4, 10)
    r = call(stack, owner, "PATCH", f"/v1/erp/reorder-rules/{rule['id']}", json={"warehouse_id": w2["id"]})
    assert r.status_code in (409, 422), r.text
    r = call(stack, owner, "PATCH", f"/v1/erp/reorder-rules/{rule['id']}",
             json={"reorder_point": 8, "unit_cost": money(12)})
    assert r.status_code == 200 and r.json()["reorder_point"] == 8, r.text
    check_problem(call(stack, owner, "PATCH", f"/v1/erp/reorder-rules/{rule['id']}",
                       json={"unit_cost": money(12, "GBP")}), 422)
    got = call(stack, owner, "GET", "/v1/erp/reorder-rules", params={"product_id": p["id"]}).json()
    assert len(got["items"]) == 2


@pytest.mark.parametrize("roles", [["warehouse"], ["sales"], ["accountant"], ["manager"]])
def test_only_purchasing_writers_change_rules_or_run_planning(stack, owner, roles):
    w, s, p = make_warehouse(stack, owner), make_supplier(stack, owner), make_product(stack, owner)
    rule = make_rule(stack, owner, p, w, s, 5, 4, 10)
    [draft] = run(stack, owner)["drafts"]
    user = user_session(stack, owner, roles)
    body = {"product_id": p["id"], "warehouse_id": make_warehouse(stack, owner)["id"],
            "supplier_id": s["id"], "reorder_point": 5, "reorder_quantity": 4, "unit_cost": money(10)}
    check_problem(call(stack, user, "POST", "/v1/erp/reorder-rules", json=body), 403)
    check_problem(call(stack, user, "PATCH", f"/v1/erp/reorder-rules/{rule['id']}",
                       json={"reorder_point": 1}), 403)
    check_problem(call(stack, user, "DELETE", f"/v1/erp/reorder-rules/{rule['id']}"), 403)
    check_problem(call(stack, user, "POST", "/v1/erp/planning/run"), 403)
    check_problem(po_act(stack, user, draft, "approve"), 403)
    check_problem(po_act(stack, user, draft, "cancel"), 403)
    reads = call(stack, user, "GET", f"/v1/erp/reorder-rules/{rule['id']}").status_code
    assert reads == (200 if roles == ["accountant"] else 403)
    assert call(stack, owner, "GET", f"/v1/erp/purchase-orders/{draft['id']}").json()["status"] == "draft"


def test_another_tenant_gets_404_for_rules_and_drafts_in_any_spelling(stack, owner):
    w, s, p = make_warehouse(stack, owner), make_supplier(stack, owner), make_product(stack, owner)
    rule = make_rule(stack, owner, p, w, s, 5, 4, 10)
    [draft] = run(stack, owner)["drafts"]
    other = signup(stack)
    for rid in spellings(rule["id"]):
        check_problem(call(stack, other, "GET", f"/v1/erp/reorder-rules/{rid}"), 404)
        check_problem(call(stack, other, "PATCH", f"/v1/erp/reorder-rules/{rid}",
                           json={"reorder_point": 1}), 404)
        check_problem(call(stack, other, "DELETE", f"/v1/erp/reorder-rules/{rid}"), 404)
    for pid in spellings(draft["id"]):
        for action in ("approve", "cancel"):
            check_problem(call(stack, other, "POST", f"/v1/erp/purchase-orders/{pid}/{action}"), 404)
    # the other tenant's run sees none of it
    assert run(stack, other) == {"drafts": [], "short": []}
    assert call(stack, other, "GET", "/v1/erp/reorder-rules").json()["items"] == []
    assert call(stack, owner, "GET", f"/v1/erp/reorder-rules/{rule['id'].upper()}").status_code == 200
    assert call(stack, owner, "GET", f"/v1/erp/purchase-orders/{draft['id']}").json()["status"] == "draft"
