"""ERP work killed halfway: a process killed (SIGKILL) between two register
writes of an order's confirmation or shipment. The other processes' settle
job leaves the order wholly done or wholly undone, and the inventory
invariants hold. The doomed process pauses after each register write
(debug_step_delay_ms), so the kill lands between two of them."""

import threading
import time

import pytest
import requests
from bson import ObjectId

from conftest import check_problem, signup
from erp_support import (assert_inventory_invariants, call, make_product, make_warehouse, money,
                         receive, stock)
from test_exact_writes import Trio, race, spellings, statuses
from test_lifecycle import assert_invalid_configuration

SETTLE_AFTER_MS = 2500
WITHIN_S = SETTLE_AFTER_MS / 1000 + 20  # the job runs once due; a worker may be busy


@pytest.fixture
def trio(trellis):
    t = Trio(trellis, erp_settle_after_ms=SETTLE_AFTER_MS, erp_checks_every_ms=1000)
    yield t
    t.check_logs()


class At:
    def __init__(self, proc):
        self.base_url = proc.url("").rstrip("/")


def line(product, quantity, price=1000):
    return {"product_id": product["id"], "quantity": quantity, "unit_price": money(price)}


def order_of(at, owner, order):
    r = call(at, owner, "GET", f"/v1/erp/orders/{order['id']}")
    assert r.status_code == 200, r.text
    return r.json()


def in_background(call_):
    """Runs a request that is killed mid-way; its answer never comes."""
    def run():
        try:
            call_()
        except requests.RequestException:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_for(what, check, within=20):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def setup_stock(at, owner, products=2, quantity=10, cost=250):
    w = make_warehouse(at, owner)
    ps = [make_product(at, owner) for _ in range(products)]
    for p in ps:
        receive(at, owner, p, w, quantity, cost)
    return w, ps


def test_a_confirmation_killed_between_two_reservations_is_undone_then_confirms(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    w, (a, b) = setup_stock(at[0], owner)
    order = call(at[1], owner, "POST", "/v1/erp/orders", json={
        "warehouse_id": w["id"], "currency": "EUR", "lines": [line(a, 4), line(b, 6)]}).json()
    doomed, _ = trio.start(debug_step_delay_ms=30000)
    in_background(lambda: requests.post(doomed.url(f"/v1/erp/orders/{order['id']}/confirm"),
                                        headers=owner.headers, timeout=60))
    # the first line is reserved, the second not yet: kill it there
    wait_for("the first reservation", lambda: stock(at[2], owner, a, w)["reserved"] == 4)
    doomed.kill()
    assert stock(at[0], owner, b, w)["reserved"] == 0
    assert order_of(at[0], owner, order)["status"] == "confirming"
    # meanwhile nobody else confirms or cancels it
    check_problem(call(at[1], owner, "POST", f"/v1/erp/orders/{order['id'].upper()}/confirm"), 409)

    # the settle job: a draft again, nothing reserved
    wait_for("the order back to draft", lambda: order_of(at[2], owner, order)["status"] == "draft",
             within=WITHIN_S)
    wait_for("the reservation released", lambda: stock(at[0], owner, a, w)["reserved"] == 0,
             within=WITHIN_S)
    for p in (a, b):
        s = stock(at[1], owner, p, w)
        assert (s["on_hand"], s["reserved"], s["available"]) == (10, 0, 10), s
    assert_inventory_invariants(at[0], owner)

    # and it confirms whole afterwards; its own settle job keeps what it reserved
    r = call(at[2], owner, "POST", f"/v1/erp/orders/{order['id'].upper()}/confirm")
    assert r.status_code == 200 and r.json()["status"] == "confirmed", r.text
    time.sleep(SETTLE_AFTER_MS / 1000 + 3)
    assert order_of(at[0], owner, order)["status"] == "confirmed"
    assert [stock(at[1], owner, p, w)["reserved"] for p in (a, b)] == [4, 6]
    assert_inventory_invariants(at[1], owner)


def test_a_shipment_killed_between_two_lines_is_finished_once(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    w, (a, b) = setup_stock(at[0], owner, cost=300)
    order = call(at[1], owner, "POST", "/v1/erp/orders", json={
        "warehouse_id": w["id"], "currency": "EUR", "lines": [line(a, 3), line(b, 5)]}).json()
    r = call(at[2], owner, "POST", f"/v1/erp/orders/{order['id']}/confirm")
    assert r.status_code == 200, r.text
    doomed, _ = trio.start(debug_step_delay_ms=30000)
    body = {"lines": [{"product_id": a["id"].upper(), "quantity": 3},
                      {"product_id": b["id"], "quantity": 5}]}
    # no Idempotency-Key: nobody can ask again, the job alone finishes it
    in_background(lambda: requests.post(doomed.url(f"/v1/erp/orders/{order['id']}/shipments"),
                                        json=body, headers=owner.headers, timeout=60))
    wait_for("the first line leaving", lambda: stock(at[2], owner, a, w)["on_hand"] == 7)
    doomed.kill()
    s = stock(at[0], owner, b, w)
    assert (s["on_hand"], s["reserved"]) == (10, 5), s  # the second line has not left
    # the rest of the order is claimed by the dead shipment: nothing more ships
    more = requests.post(trio.url(1, f"/v1/erp/orders/{order['id']}/shipments"),
                         json={"lines": [{"product_id": b["id"], "quantity": 1}]},
                         headers=owner.headers, timeout=30)
    assert "0 remains" in check_problem(more, 409, "conflict")["errors"][0]["message"]

    def finished():
        o = order_of(at[1], owner, order)
        return o if o["status"] == "shipped" else None
    o = wait_for("the shipment finished", finished, within=WITHIN_S)
    assert [ln["shipped"] for ln in o["lines"]] == [3, 5]
    shipments = call(at[2], owner, "GET", "/v1/erp/shipments",
                     params={"order_id": order["id"]}).json()["items"]
    assert len(shipments) == 1, shipments
    assert shipments[0]["cost"] == money(3 * 300 + 5 * 300)
    for p, left in ((a, 7), (b, 5)):
        s = stock(at[0], owner, p, w)
        assert (s["on_hand"], s["reserved"], s["available"]) == (left, 0, left), s
    # cost of goods sold posted once
    tb = call(at[0], owner, "GET", "/v1/erp/reports/trial-balance").json()
    cogs = [x for x in tb["accounts"] if x["code"] == "5000"]
    assert cogs and cogs[0]["debit"] == 2400, tb
    time.sleep(SETTLE_AFTER_MS / 1000 + 2)  # the job once more would find nothing to do
    assert len(call(at[2], owner, "GET", "/v1/erp/shipments",
                    params={"order_id": order["id"]}).json()["items"]) == 1
    assert_inventory_invariants(at[1], owner)


def test_an_invoice_killed_after_taking_its_number_is_finished_without_a_gap(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    w, (a,) = setup_stock(at[0], owner, products=1)
    orders = []
    for i in range(2):
        o = call(at[i], owner, "POST", "/v1/erp/orders", json={
            "warehouse_id": w["id"], "currency": "EUR", "lines": [line(a, 1, 1000 + i)]}).json()
        assert call(at[2], owner, "POST", f"/v1/erp/orders/{o['id']}/confirm").status_code == 200
        orders.append(o)
    doomed, _ = trio.start(debug_step_delay_ms=30000)
    in_background(lambda: requests.post(doomed.url(f"/v1/erp/orders/{orders[0]['id']}/invoice"),
                                        headers=owner.headers, timeout=60))
    # the number is taken (a register movement), the invoice not yet written
    numbers = trio.mongo["register_moves"]
    wait_for("the number taken", lambda: numbers.count_documents(
        {"tenant_id": ObjectId(owner.tenant_id), "key": {"$regex": "^erp.invoice-numbers/"}}) == 1)
    doomed.kill()
    second = call(at[1], owner, "POST", f"/v1/erp/orders/{orders[1]['id'].upper()}/invoice")
    assert second.status_code == 201, second.text
    year = second.json()["number"].split("-")[1]
    assert second.json()["number"] == f"INV-{year}-000002"

    def invoiced():
        items = call(at[0], owner, "GET", "/v1/erp/invoices", params={"sort": "number"}).json()["items"]
        return items if len(items) == 2 else None
    items = wait_for("the first invoice written", invoiced, within=WITHIN_S)
    assert [(i["number"], i["order_id"]) for i in items] == [
        (f"INV-{year}-000001", orders[0]["id"]), (f"INV-{year}-000002", orders[1]["id"])]
    # the job writes the invoice, then the order
    first = wait_for("the order invoiced", lambda: (lambda o: o if o["status"] == "invoiced" else None)(
        order_of(at[2], owner, orders[0])), within=10)
    assert items[0]["total"] == first["total"] == money(1000), first
    assert first["status"] == "invoiced" and first["invoice_id"] == items[0]["id"], first
    # invoicing it again answers the same invoice
    again = call(at[2], owner, "POST", f"/v1/erp/orders/{orders[0]['id']}/invoice")
    check_problem(again, 409)
    tb = call(at[0], owner, "GET", "/v1/erp/reports/trial-balance").json()
    receivable = [x for x in tb["accounts"] if x["code"] == "1200"]
    assert receivable and receivable[0]["debit"] == sum(i["total"]["amount"] for i in items), tb
    assert_inventory_invariants(at[1], owner)


def test_a_work_order_completion_killed_between_components_is_finished_once(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    w, (a, b) = setup_stock(at[0], owner, cost=300)
    table = make_product(at[1], owner)
    r = call(at[1], owner, "POST", "/v1/erp/boms", json={
        "product_id": table["id"], "components": [{"product_id": a["id"], "quantity": 2},
                                                  {"product_id": b["id"], "quantity": 3}],
        "labour_cost": money(50)})
    assert r.status_code == 201, r.text
    wo = call(at[2], owner, "POST", "/v1/erp/work-orders", json={
        "product_id": table["id"], "warehouse_id": w["id"], "quantity": 2}).json()
    assert call(at[0], owner, "POST", f"/v1/erp/work-orders/{wo['id']}/release").status_code == 200
    doomed, _ = trio.start(debug_step_delay_ms=30000)
    in_background(lambda: requests.post(doomed.url(f"/v1/erp/work-orders/{wo['id']}/complete"),
                                        json={"quantity": 2}, headers=owner.headers, timeout=60))
    wait_for("the first component consumed", lambda: stock(at[2], owner, a, w)["on_hand"] == 6)
    doomed.kill()
    assert stock(at[0], owner, b, w)["on_hand"] == 10  # the second not yet
    check_problem(call(at[1], owner, "POST", f"/v1/erp/work-orders/{wo['id']}/complete",
                       json={"quantity": 1}), 409)  # all of it is claimed

    def finished():
        got = call(at[1], owner, "GET", f"/v1/erp/work-orders/{wo['id']}").json()
        return got if got["status"] == "completed" else None
    got = wait_for("the completion finished", finished, within=WITHIN_S)
    assert [c["cost"] for c in got["completions"]] == [money(4 * 300 + 6 * 300 + 100)]
    made = stock(at[2], owner, table, w)
    assert (made["on_hand"], made["value"]) == (2, money(3100)), made
    for p, left in ((a, 6), (b, 4)):
        s = stock(at[0], owner, p, w)
        assert (s["on_hand"], s["reserved"], s["available"]) == (left, 0, left), s
    assert_inventory_invariants(at[1], owner)


def test_confirmations_racing_over_processes_leave_no_reservation_behind(trio):
    """Their settle jobs run after the race: the ones that lost had
    released already, the one that won keeps what it holds."""
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    w, (a,) = setup_stock(at[0], owner, products=1, quantity=5)
    orders = [call(at[i % 3], owner, "POST", "/v1/erp/orders", json={
        "warehouse_id": w["id"], "currency": "EUR", "lines": [line(a, 2)]}).json() for i in range(6)]
    ids = [spellings(o["id"])[i % 3] for i, o in enumerate(orders)]
    got = race([lambda i=i: requests.post(trio.url(i, f"/v1/erp/orders/{ids[i]}/confirm"),
                                          headers=owner.headers, timeout=120) for i in range(6)])
    codes = statuses(got)
    assert codes.count(200) == 2 and codes.count(409) == 4, codes
    time.sleep(SETTLE_AFTER_MS / 1000 + 3)
    s = stock(at[0], owner, a, w)
    assert (s["reserved"], s["available"]) == (4, 1), s
    assert_inventory_invariants(at[2], owner)


def test_the_fault_delays_are_refused_in_production(stack, trellis):
    for key in ("debug_step_delay_ms", "debug_effects_delay_ms", "debug_claim_delay_ms"):
        env = trellis.env(env="production", jwt_secret="p" * 40, **{key: 5})
        assert_invalid_configuration(trellis.run("serve", env=env, timeout=20), key, "production")


def invariant_gauges(trio, tenant):
    """trellis_erp_invariant_ok of a tenant from every process's /metrics:
    {check: [value per process that checked it]}."""
    out = {}
    for p in trio.procs:
        text = requests.get(p.url("/metrics"), timeout=10).text
        for ln in text.splitlines():
            prefix = f'trellis_erp_invariant_ok{{tenant="{tenant}",check="'
            if ln.startswith(prefix):
                check = ln[len(prefix):].split('"', 1)[0]
                out.setdefault(check, []).append(int(ln.rsplit(" ", 1)[1]))
    return out


CHECKS = {"ledger_balanced", "stock_folds_movements", "inventory_matches_ledger",
          "no_negative_available"}


def test_the_invariants_are_checked_after_writes_and_a_violation_shows_per_tenant(trio):
    at = [At(p) for p in trio.procs]
    owner, other = signup(at[0]), signup(at[1])
    w, (a, b) = setup_stock(at[0], owner)  # receipts: stock and money changed
    setup_stock(at[1], other, products=1)
    for tenant in (owner.tenant_id, other.tenant_id):
        got = wait_for(f"the checks of {tenant} in /metrics",
                       lambda t=tenant: (lambda g: g if set(g) == CHECKS else None)(
                           invariant_gauges(trio, t)), within=WITHIN_S)
        assert all(v == [1] * len(v) for v in got.values()), got

    # a stored movement edited behind the ERP's back
    key = f"erp.stock/{a['id']}/{w['id']}"
    moves = trio.mongo["register_moves"]
    row = moves.find_one({"tenant_id": ObjectId(owner.tenant_id), "key": key, "seq": 1})
    moves.update_one({"_id": row["_id"]}, {"$inc": {"d.on_hand": 1}})
    time.sleep(1.2)  # past erp_checks_every_ms: the next write checks again
    receive(at[2], owner, b, w, 1, 250)
    receive(at[2], other, make_product(at[2], other), make_warehouse(at[2], other), 1, 5)

    def violated():
        g = invariant_gauges(trio, owner.tenant_id)
        return g if 0 in g.get("stock_folds_movements", []) else None
    got = wait_for("the violation in /metrics", violated, within=WITHIN_S + 10)
    assert all(min(v) == 1 for k, v in got.items() if k != "stock_folds_movements"), got
    assert set(invariant_gauges(trio, other.tenant_id)) == CHECKS
    assert all(min(v) == 1 for v in invariant_gauges(trio, other.tenant_id).values())
    body = call(at[0], owner, "GET", "/v1/erp/checks").json()
    assert [c["name"] for c in body["checks"] if not c["ok"]] == ["stock_folds_movements"], body
