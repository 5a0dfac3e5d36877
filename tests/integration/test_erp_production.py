"""ERP production: bills of materials (versions, loops refused, multi-level
explosion with hand-worked quantities) and work orders (plan, release,
complete in parts at moving-average cost plus labour, cancel); bad input,
roles and other tenants; the inventory invariants after each test."""

import pytest
import requests

from conftest import check_problem, signup, user_session
from erp_support import (assert_inventory_invariants, call, make_product, make_warehouse, money,
                         receive, stock)


@pytest.fixture
def owner(stack):
    return signup(stack)


def bom(stack, acct, product, components, **fields):
    body = {"product_id": product["id"],
            "components": [{"product_id": p["id"], "quantity": q} for p, q in components]}
    body.update(fields)
    r = call(stack, acct, "POST", "/v1/erp/boms", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def explosion(stack, acct, b, quantity=None):
    params = {"quantity": quantity} if quantity is not None else {}
    return call(stack, acct, "GET", f"/v1/erp/boms/{b['id']}/explosion", params=params)


def plan(stack, acct, product, warehouse, quantity):
    return call(stack, acct, "POST", "/v1/erp/work-orders", json={
        "product_id": product["id"], "warehouse_id": warehouse["id"], "quantity": quantity})


def act(stack, acct, wo, action, **body):
    return call(stack, acct, "POST", f"/v1/erp/work-orders/{wo['id']}/{action}",
                json=body if body else None)


@pytest.fixture
def furniture(stack, owner):
    """A table is a top, four legs and sixteen screws; a top is 12.5 kg of
    wood and 0.150 l of glue; four legs are 6 kg of wood and 8 screws."""
    p = {name: make_product(stack, owner, sku=f"{name}-{owner.tenant_id[-6:]}", **kw)
         for name, kw in (("TABLE", {}), ("TOP", {}), ("LEG", {}), ("SCREW", {}),
                          ("WOOD", {"uom": "kg", "uom_scale": 3}),
                          ("GLUE", {"uom": "l", "uom_scale": 3}))}
    boms = {
        "TOP": bom(stack, owner, p["TOP"], [(p["WOOD"], 12500), (p["GLUE"], 150)]),
        "LEG": bom(stack, owner, p["LEG"], [(p["WOOD"], 6000), (p["SCREW"], 8)], quantity=4),
        "TABLE": bom(stack, owner, p["TABLE"], [(p["TOP"], 1), (p["LEG"], 4), (p["SCREW"], 16)],
                     labour_cost=money(3000)),
    }
    return p, boms


def sku(p):
    return p["sku"]


def test_a_multi_level_explosion_has_hand_worked_quantities(stack, owner, furniture):
    p, boms = furniture
    r = explosion(stack, owner, boms["TABLE"], 3)
    assert r.status_code == 200, r.text
    got = r.json()
    # 3 tables: 3 tops (37.5 kg wood, 0.450 l glue), 12 legs (three batches of
    # four: 18 kg wood, 24 screws), 48 screws
    assert [(c["sku"], c["quantity"]) for c in got["components"]] == [
        (sku(p["TOP"]), 3), (sku(p["LEG"]), 12), (sku(p["SCREW"]), 48)]
    top, leg, screw = got["components"]
    assert [(c["sku"], c["quantity"]) for c in top["components"]] == [
        (sku(p["WOOD"]), 37500), (sku(p["GLUE"]), 450)]
    assert [(c["sku"], c["quantity"]) for c in leg["components"]] == [
        (sku(p["WOOD"]), 18000), (sku(p["SCREW"]), 24)]
    assert screw["components"] == []
    assert sorted((m["sku"], m["quantity"]) for m in got["materials"]) == sorted([
        (sku(p["WOOD"]), 55500), (sku(p["GLUE"]), 450), (sku(p["SCREW"]), 72)])
    # the bill's own quantity by default
    assert [c["quantity"] for c in explosion(stack, owner, boms["TABLE"]).json()["components"]] == [1, 4, 16]
    # legs come in fours of 6 kg: three legs would need 4.5 kg exactly, one leg
    # 1.5 kg, but an odd screw count does not divide: 8 x 3 / 4 = 6 - fine; a
    # peg batch of 3 from 1 kg cannot make 1 peg in whole grams
    peg = make_product(stack, owner)
    pegs = bom(stack, owner, peg, [(p["WOOD"], 1000)], quantity=3)
    bad = explosion(stack, owner, pegs, 1)
    assert sku(p["WOOD"]) in check_problem(bad, 422)["errors"][0]["message"]
    assert explosion(stack, owner, pegs, 6).json()["materials"] == [
        {"product_id": p["WOOD"]["id"], "sku": sku(p["WOOD"]), "quantity": 2000}]
    for q in ("0", "-1", "1.5", "x"):
        check_problem(explosion(stack, owner, pegs, q), 422)


def test_bills_are_versions_and_the_product_names_its_active_one(stack, owner, furniture):
    p, boms = furniture
    first = boms["TOP"]
    assert first["revision"] == 1 and first["active"] is True and first["quantity"] == 1
    assert first["labour_cost"] == money(0)
    second = bom(stack, owner, p["TOP"], [(p["WOOD"], 12000), (p["GLUE"], 150)])
    assert second["revision"] == 2 and second["active"] is True
    got = call(stack, owner, "GET", f"/v1/erp/products/{p['TOP']['id']}").json()
    assert got["bom_id"] == second["id"]
    r = call(stack, owner, "POST", f"/v1/erp/boms/{first['id'].upper()}/activate")
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    assert call(stack, owner, "GET", f"/v1/erp/products/{p['TOP']['id']}").json()["bom_id"] == first["id"]
    listed = call(stack, owner, "GET", "/v1/erp/boms", params={"product_id": p["TOP"]["id"]}).json()
    assert sorted(b["revision"] for b in listed["items"]) == [1, 2]
    # never changed
    assert call(stack, owner, "PATCH", f"/v1/erp/boms/{first['id']}", json={"note": "x"}).status_code in (404, 405)


def test_a_bill_that_loops_is_refused_naming_the_loop(stack, owner, furniture):
    p, boms = furniture
    # wood made of tables: TABLE -> TOP -> WOOD -> TABLE
    r = call(stack, owner, "POST", "/v1/erp/boms", json={
        "product_id": p["WOOD"]["id"], "components": [{"product_id": p["TABLE"]["id"], "quantity": 1}]})
    msg = check_problem(r, 422)["errors"][0]["message"]
    assert f"{sku(p['WOOD'])} -> {sku(p['TABLE'])} -> {sku(p['TOP'])} -> {sku(p['WOOD'])}" in msg, msg
    self_made = call(stack, owner, "POST", "/v1/erp/boms", json={
        "product_id": p["GLUE"]["id"], "components": [{"product_id": p["GLUE"]["id"], "quantity": 1}]})
    assert check_problem(self_made, 422)["errors"][0]["field"] == "components[0]"
    assert call(stack, owner, "GET", "/v1/erp/boms", params={"product_id": p["WOOD"]["id"]}).json()["items"] == []
    # an older version that would loop cannot be activated either
    a, b = make_product(stack, owner), make_product(stack, owner)
    old_b = bom(stack, owner, b, [(a, 1)])
    bom(stack, owner, b, [(p["SCREW"], 1)])  # b no longer needs a
    bom(stack, owner, a, [(b, 1)])  # a needs b: fine now
    check_problem(call(stack, owner, "POST", f"/v1/erp/boms/{old_b['id']}/activate"), 422)


@pytest.mark.parametrize("components,field", [
    ([], "components"),
    ([{"product_id": "nope", "quantity": 1}], "components[0]"),
    ([{"quantity": 1}], "components[0]"),
    ([{"product_id": "WOOD", "quantity": 0}], "components[0]"),
    ([{"product_id": "WOOD", "quantity": 1.5}], "components[0]"),
    ([{"product_id": "WOOD", "quantity": "3"}], "components[0]"),
    ([{"product_id": "WOOD", "quantity": 1}, {"product_id": "WOOD", "quantity": 2}], "components[1]"),
    ([{"product_id": "WOOD", "quantity": 1, "extra": True}], "components[0]"),
])
def test_a_bad_bill_is_422_naming_the_field(stack, owner, furniture, components, field):
    p, _ = furniture
    for c in components:
        if c.get("product_id") == "WOOD":
            c["product_id"] = p["WOOD"]["id"]
    r = call(stack, owner, "POST", "/v1/erp/boms", json={"product_id": p["GLUE"]["id"],
                                                         "components": components})
    assert field in [e["field"] for e in check_problem(r, 422)["errors"]]
    assert call(stack, owner, "GET", "/v1/erp/boms", params={"product_id": p["GLUE"]["id"]}).json()["items"] == []


def test_bill_fields_other_than_components_are_checked(stack, owner, furniture):
    p, _ = furniture
    comp = [{"product_id": p["WOOD"]["id"], "quantity": 1}]
    for extra, field in (({"quantity": 0}, "quantity"), ({"quantity": 2.5}, "quantity"),
                         ({"labour_cost": money(10, "USD")}, "labour_cost"),
                         ({"labour_cost": money(-1)}, "labour_cost")):
        r = call(stack, owner, "POST", "/v1/erp/boms",
                 json=dict({"product_id": p["GLUE"]["id"], "components": comp}, **extra))
        assert field in [e["field"] for e in check_problem(r, 422)["errors"]], (extra, r.text)
    other = signup(stack)
    theirs = make_product(stack, other)
    r = call(stack, owner, "POST", "/v1/erp/boms", json={
        "product_id": p["GLUE"]["id"], "components": [{"product_id": theirs["id"], "quantity": 1}]})
    assert check_problem(r, 422)["errors"][0]["field"] == "components[0]"


def stocked(stack, owner, p, w):
    """Unit costs are per whole unit: wood at 20.00 per kg (2 per gram),
    glue at 100.00 per litre (10 per ml), screws at 5, tops at 300.00 and
    legs at 40.00 each."""
    receive(stack, owner, p["WOOD"], w, 100000, 2000)    # 100 kg -> 200000
    receive(stack, owner, p["GLUE"], w, 1000, 10000)     # 1 l -> 10000
    receive(stack, owner, p["SCREW"], w, 100, 5)         # 500
    receive(stack, owner, p["TOP"], w, 3, 30000)
    receive(stack, owner, p["LEG"], w, 12, 4000)


def test_a_work_order_plans_releases_and_completes_in_parts_at_cost_plus_labour(stack, owner, furniture):
    p, boms = furniture
    w = make_warehouse(stack, owner)
    short = plan(stack, owner, p["TABLE"], w, 3)
    body = check_problem(short, 409, "insufficient-stock")
    assert sorted(e["field"] for e in body["errors"]) == ["components[0]", "components[1]", "components[2]"]
    stocked(stack, owner, p, w)
    r = plan(stack, owner, p["TABLE"], w, 3)
    assert r.status_code == 201, r.text
    wo = r.json()
    assert wo["status"] == "planned" and wo["bom_id"] == boms["TABLE"]["id"]
    assert [(c["product_id"], c["quantity"], c["consumed"]) for c in wo["components"]] == [
        (p["TOP"]["id"], 3, 0), (p["LEG"]["id"], 12, 0), (p["SCREW"]["id"], 48, 0)]
    assert wo["labour_cost"] == money(9000) and wo["made"] == 0
    assert stock(stack, owner, p["LEG"], w)["reserved"] == 0  # planning reserves nothing
    check_problem(act(stack, owner, wo, "complete", quantity=1), 409)  # not released

    r = act(stack, owner, wo, "release")
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    assert [stock(stack, owner, p[n], w)["reserved"] for n in ("TOP", "LEG", "SCREW")] == [3, 12, 48]

    # one table: a top (30000), four legs (16000), 16 screws (80), labour 3000
    r = act(stack, owner, wo, "complete", quantity=1)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["made"] == 1 and done["status"] == "released"
    assert done["completions"][0]["cost"] == money(30000 + 16000 + 80 + 3000)
    t = stock(stack, owner, p["TABLE"], w)
    assert (t["on_hand"], t["available"], t["value"]) == (1, 1, money(49080))
    legs = stock(stack, owner, p["LEG"], w)
    assert (legs["on_hand"], legs["reserved"], legs["available"]) == (8, 8, 0)
    over = act(stack, owner, wo, "complete", quantity=3)
    assert "2 remains" in check_problem(over, 409)["errors"][0]["message"]
    r = act(stack, owner, wo, "complete", quantity=2)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    t = stock(stack, owner, p["TABLE"], w)
    assert (t["on_hand"], t["value"]) == (3, money(3 * 49080))
    assert r.json()["cost"] == money(3 * 49080)
    for n in ("TOP", "LEG", "SCREW"):
        assert stock(stack, owner, p[n], w)["reserved"] == 0
    # the ledger moved components into finished goods and applied the labour
    tb = call(stack, owner, "GET", "/v1/erp/reports/trial-balance").json()
    exp = [a for a in tb["accounts"] if a["code"] == "6000"]
    assert exp and exp[0]["credit"] - exp[0]["debit"] == 9000, tb
    check_problem(act(stack, owner, wo, "cancel"), 409)
    assert_inventory_invariants(stack, owner)


def test_labour_of_parts_adds_up_exactly(stack, owner, furniture):
    p, _ = furniture
    w = make_warehouse(stack, owner)
    stocked(stack, owner, p, w)
    pot = make_product(stack, owner)
    bom(stack, owner, pot, [(p["GLUE"], 30)], labour_cost=money(100), quantity=3)
    wo = plan(stack, owner, pot, w, 3).json()  # 30 ml of glue, labour 100
    assert wo["labour_cost"] == money(100)
    assert act(stack, owner, wo, "release").status_code == 200
    # one pot at a time: 10 ml of glue (100) and the labour of made-after
    # minus made-before, each rounded half to even: 33, 67 - 33, 100 - 67
    got = []
    for _ in range(3):
        r = act(stack, owner, wo, "complete", quantity=1)
        assert r.status_code == 200, r.text
        got.append((r.json()["completions"][-1]["labour"]["amount"],
                    r.json()["completions"][-1]["cost"]["amount"]))
    assert got == [(33, 133), (34, 134), (33, 133)]
    assert r.json()["cost"] == money(400) and r.json()["status"] == "completed"
    check_problem(act(stack, owner, wo, "complete", quantity=1), 409)
    # a part that would need part of a millilitre: 10 ml make 3 drops
    drop = make_product(stack, owner)
    bom(stack, owner, drop, [(p["GLUE"], 10)], quantity=3)
    other = plan(stack, owner, drop, w, 3).json()
    assert act(stack, owner, other, "release").status_code == 200
    bad = act(stack, owner, other, "complete", quantity=1)
    assert check_problem(bad, 422)["errors"][0]["field"] == "quantity"
    assert act(stack, owner, other, "complete", quantity=3).status_code == 200
    assert_inventory_invariants(stack, owner)


def test_cancel_releases_what_is_still_reserved(stack, owner, furniture):
    p, _ = furniture
    w = make_warehouse(stack, owner)
    stocked(stack, owner, p, w)
    wo = plan(stack, owner, p["TABLE"], w, 2).json()
    assert act(stack, owner, wo, "release").status_code == 200
    assert act(stack, owner, wo, "complete", quantity=1).status_code == 200
    r = act(stack, owner, wo, "cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    for n, left in (("TOP", 2), ("LEG", 8), ("SCREW", 84)):
        s = stock(stack, owner, p[n], w)
        assert (s["on_hand"], s["reserved"], s["available"]) == (left, 0, left), (n, s)
    assert stock(stack, owner, p["TABLE"], w)["on_hand"] == 1  # what was made stays
    check_problem(act(stack, owner, wo, "cancel"), 409)
    check_problem(act(stack, owner, wo, "release"), 409)
    planned = plan(stack, owner, p["TABLE"], w, 1).json()
    r = act(stack, owner, planned, "cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert_inventory_invariants(stack, owner)


def test_bad_work_orders_are_refused_and_nothing_is_stored(stack, owner, furniture):
    p, _ = furniture
    w = make_warehouse(stack, owner)
    stocked(stack, owner, p, w)
    no_bill = make_product(stack, owner)
    assert "product_id" in [e["field"] for e in check_problem(plan(stack, owner, no_bill, w, 1), 422)["errors"]]
    for q in (0, -1, 1.5, "2", None):
        r = call(stack, owner, "POST", "/v1/erp/work-orders", json={
            "product_id": p["TABLE"]["id"], "warehouse_id": w["id"], "quantity": q})
        assert "quantity" in [e["field"] for e in check_problem(r, 422)["errors"]], q
    # legs come in fours from 6 kg: two legs need 3 kg, one leg 1.5 kg - whole
    # grams; 8 screws per four legs: one leg needs 2 screws. A peg batch of 3
    # from 1 kg of wood cannot make 1 peg in whole grams.
    peg = make_product(stack, owner)
    bom(stack, owner, peg, [(p["WOOD"], 1000)], quantity=3)
    assert check_problem(plan(stack, owner, peg, w, 1), 422)["errors"][0]["field"] == "quantity"
    assert call(stack, owner, "GET", "/v1/erp/work-orders").json()["items"] == []
    wo = plan(stack, owner, p["TABLE"], w, 1).json()
    for body in ({}, {"quantity": 0}, {"quantity": 1.5}, {"quantity": 1, "x": 1}, {"quantity": "1"}):
        check_problem(call(stack, owner, "POST", f"/v1/erp/work-orders/{wo['id']}/complete",
                           json=body), (400, 409, 422))
    check_problem(call(stack, owner, "PATCH", f"/v1/erp/work-orders/{wo['id']}", json={"quantity": 5}), 422)
    assert_inventory_invariants(stack, owner)


def test_production_roles_and_other_tenants(stack, owner, furniture):
    p, boms = furniture
    w = make_warehouse(stack, owner)
    stocked(stack, owner, p, w)
    keeper = user_session(stack, owner, ["warehouse"])
    wo = plan(stack, keeper, p["TABLE"], w, 1)
    assert wo.status_code == 201, wo.text
    wo = wo.json()
    manager = user_session(stack, owner, ["manager"])
    assert call(stack, manager, "GET", f"/v1/erp/work-orders/{wo['id']}").status_code == 200
    assert explosion(stack, manager, boms["TABLE"]).status_code == 200
    check_problem(act(stack, manager, wo, "release"), 403)
    check_problem(plan(stack, manager, p["TABLE"], w, 1), 403)
    sales = user_session(stack, owner, ["sales"])
    check_problem(call(stack, sales, "GET", "/v1/erp/work-orders"), 403)
    check_problem(call(stack, sales, "GET", "/v1/erp/boms"), 403)
    other = signup(stack)
    for spelled in (wo["id"], wo["id"].upper()):
        check_problem(call(stack, other, "GET", f"/v1/erp/work-orders/{spelled}"), 404)
        check_problem(act(stack, other, {"id": spelled}, "release"), 404)
        check_problem(act(stack, other, {"id": spelled}, "cancel"), 404)
    check_problem(call(stack, other, "GET", f"/v1/erp/boms/{boms['TABLE']['id']}/explosion"), 404)
    check_problem(call(stack, other, "POST", f"/v1/erp/boms/{boms['TABLE']['id']}/activate"), 404)
    theirs = make_warehouse(stack, other)
    r = plan(stack, other, p["TABLE"], theirs, 1)  # our product in their work order
    check_problem(r, 422)
    assert act(stack, keeper, wo, "release").status_code == 200
    assert act(stack, keeper, wo, "complete", quantity=1).status_code == 200
    assert_inventory_invariants(stack, owner)


def test_work_order_events_reach_the_production_topic_and_not_sales(stack, owner, furniture):
    from test_events_live import auth, events, no_event, until_type, ws_open
    p, _ = furniture
    w = make_warehouse(stack, owner)
    stocked(stack, owner, p, w)
    manager = user_session(stack, owner, ["manager"])
    sales = user_session(stack, owner, ["sales"])
    with ws_open(stack) as ws, ws_open(stack) as rep:
        auth(ws, manager, topics=["erp.production"])
        until_type(ws, "subscribed")
        auth(rep, sales, topics=["erp.production"])
        err = until_type(rep, "error")[-1]
        assert err["code"] == "forbidden-topics" and err["topics"] == ["erp.production"], err
        wo = plan(stack, owner, p["TABLE"], w, 2).json()
        assert act(stack, owner, wo, "release").status_code == 200
        assert act(stack, owner, wo, "complete", quantity=1).status_code == 200
        assert act(stack, owner, wo, "complete", quantity=1).status_code == 200
        got = [(e["event"], e["entity_id"]) for e in events(ws, 5)]
        assert got == [("erp.work_order.created", wo["id"]), ("erp.work_order.released", wo["id"]),
                       ("erp.work_order.produced", wo["id"]), ("erp.work_order.produced", wo["id"]),
                       ("erp.work_order.completed", wo["id"])], got
        no_event(ws)
        no_event(rep)
