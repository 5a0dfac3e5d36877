"""ERP inventory: products, warehouses, stock moves on exact registers,
moving-average cost, reversals; bad input, permissions and other tenants.
Every test that moves stock ends by checking the inventory invariants
(erp_support.assert_inventory_invariants)."""

import json

import pytest
from bson import ObjectId

from conftest import check_problem, signup, user_session
from erp_support import (all_moves, assert_inventory_invariants, call, make_product,
                         make_warehouse, money, move, move_ok, receive, stock)


@pytest.fixture
def owner(stack):
    """A fresh tenant per test: its rate limits are its own."""
    return signup(stack)


@pytest.fixture(scope="module")
def other(stack):
    return signup(stack)


@pytest.fixture
def pw(stack, owner):
    """A fresh product and warehouse of the owner's tenant."""
    return make_product(stack, owner), make_warehouse(stack, owner)


# ---------------------------------------------------------------------------
# products and warehouses
# ---------------------------------------------------------------------------

def test_a_product_gets_its_defaults_and_its_sku_is_unique(stack, owner):
    p = make_product(stack, owner, sku="BOLT-1")
    assert (p["uom"], p["uom_scale"], p["tax_rate_bp"], p["active"]) == ("pcs", 0, 0, True)
    assert p["price"] == money(1999)
    r = call(stack, owner, "POST", "/v1/erp/products", json={"sku": "BOLT-1", "name": "Again",
                                                             "price": money(1)})
    check_problem(r, 409, "conflict")
    r = call(stack, owner, "GET", "/v1/erp/products", params={"sku": "BOLT-1"})
    assert [x["id"] for x in r.json()["items"]] == [p["id"]]


@pytest.mark.parametrize("field,value", [
    ("price", money(-1)), ("price", {"amount": 1.5, "currency": "EUR"}), ("price", money(1, "eur")),
    ("uom_scale", 7), ("uom_scale", 1.5), ("tax_rate_bp", -1), ("tax_rate_bp", 10001),
    ("sku", ""), ("sku", "x" * 65), ("name", None), ("colour", "red"),
])
def test_a_bad_product_is_422_naming_the_field_and_nothing_is_stored(stack, owner, field, value):
    body = {"sku": "BAD-1", "name": "Bad", "price": money(100)}
    if value is None:
        body.pop(field)
    else:
        body[field] = value
    r = call(stack, owner, "POST", "/v1/erp/products", json=body)
    problem = check_problem(r, 422)
    assert field in [e["field"] for e in problem["errors"]], problem
    r = call(stack, owner, "GET", "/v1/erp/products", params={"sku": "BAD-1"})
    assert r.json()["items"] == []


def test_a_products_unit_scale_and_currency_stay(stack, owner):
    p = make_product(stack, owner, uom="kg", uom_scale=3)
    r = call(stack, owner, "PATCH", f"/v1/erp/products/{p['id']}", json={"uom_scale": 2})
    check_problem(r, 422)
    r = call(stack, owner, "PATCH", f"/v1/erp/products/{p['id']}", json={"price": money(500, "USD")})
    check_problem(r, 422)
    r = call(stack, owner, "PATCH", f"/v1/erp/products/{p['id']}", json={"price": money(2500)})
    assert r.status_code == 200 and r.json()["price"] == money(2500), r.text


def test_deleting_a_product_or_warehouse_deactivates_it(stack, owner):
    p, w = make_product(stack, owner), make_warehouse(stack, owner)
    assert call(stack, owner, "DELETE", f"/v1/erp/products/{p['id']}").status_code == 204
    assert call(stack, owner, "GET", f"/v1/erp/products/{p['id']}").json()["active"] is False
    assert call(stack, owner, "DELETE", f"/v1/erp/warehouses/{w['id']}").status_code == 204
    w2 = call(stack, owner, "GET", f"/v1/erp/warehouses/{w['id']}").json()
    assert w2["active"] is False and w2["allow_negative"] is False
    # an inactive warehouse takes no moves
    r = move(stack, owner, kind="receipt", product_id=make_product(stack, owner)["id"],
             warehouse_id=w["id"], quantity=1, unit_cost=money(1))
    check_problem(r, 422)


def test_a_warehouse_code_is_unique_in_the_tenant_only(stack, owner, other):
    make_warehouse(stack, owner, code="MAIN")
    r = call(stack, owner, "POST", "/v1/erp/warehouses", json={"code": "MAIN", "name": "Twice"})
    check_problem(r, 409, "conflict")
    make_warehouse(stack, other, code="MAIN")


# ---------------------------------------------------------------------------
# receipts, write-offs, moving average
# ---------------------------------------------------------------------------

def test_a_receipt_values_the_quantity_in_its_unit_exactly(stack, owner):
    # 1.250 kg at 19.99 a kg = 24.9875 -> 24.99 (half to even: .75 of a cent rounds up);
    # 0.500 kg at 10.01 a kg = 5.005 -> 5.00 (exactly half: to the even cent)
    p, w = make_product(stack, owner, uom="kg", uom_scale=3), make_warehouse(stack, owner)
    a = receive(stack, owner, p, w, 1250, 1999)
    assert a["value"] == money(2499) and a["on_hand_after"] == 1250, a
    b = receive(stack, owner, p, w, 500, 1001)
    assert b["value"] == money(500) and b["on_hand_after"] == 1750, b
    s = stock(stack, owner, p, w)
    assert (s["on_hand"], s["reserved"], s["available"], s["value"]) == (1750, 0, 1750, money(2999))
    assert_inventory_invariants(stack, owner)


def test_stock_leaves_at_the_moving_average_rounded_half_to_even(stack, owner, pw):
    p, w = pw
    receive(stack, owner, p, w, 2, 101)
    receive(stack, owner, p, w, 1, 100)  # 3 worth 302
    values = []
    for _ in range(3):
        m = move_ok(stack, owner, kind="write_off", product_id=p["id"], warehouse_id=w["id"],
                    quantity=1, reason="broken")
        values.append(m["value"]["amount"])
    # 302/3 = 100.67 -> 101; then 201/2 = 100.5 -> 100 (even); then all that is left: 101
    assert values == [-101, -100, -101], values
    assert stock(stack, owner, p, w)["value"] == money(0)
    assert_inventory_invariants(stack, owner)


def test_writing_off_more_than_available_is_409_with_what_is_there_and_changes_nothing(stack, owner, pw):
    p, w = pw
    receive(stack, owner, p, w, 5, 100)
    before = all_moves(stack, owner, product_id=p["id"])
    r = move(stack, owner, kind="write_off", product_id=p["id"], warehouse_id=w["id"], quantity=6,
             reason="lost")
    problem = check_problem(r, 409, "insufficient-stock")
    assert problem["available"] == 5, problem
    assert stock(stack, owner, p, w)["on_hand"] == 5
    assert all_moves(stack, owner, product_id=p["id"]) == before
    assert_inventory_invariants(stack, owner)


def test_a_warehouse_that_allows_negative_stock_goes_below_zero(stack, owner):
    p, w = make_product(stack, owner), make_warehouse(stack, owner, allow_negative=True)
    m = move_ok(stack, owner, kind="write_off", product_id=p["id"], warehouse_id=w["id"],
                quantity=4, reason="sold before it was booked in")
    assert m["on_hand_after"] == -4 and m["value"] == money(0), m
    assert stock(stack, owner, p, w)["available"] == -4
    assert_inventory_invariants(stack, owner)


def test_adjustments_either_way_at_the_average(stack, owner, pw):
    p, w = pw
    receive(stack, owner, p, w, 4, 250)  # 4 worth 1000, 250 each
    up = move_ok(stack, owner, kind="adjustment", product_id=p["id"], warehouse_id=w["id"],
                 quantity=2, reason="found in the back")
    assert up["value"] == money(500) and up["on_hand_after"] == 6, up
    down = move_ok(stack, owner, kind="adjustment", product_id=p["id"], warehouse_id=w["id"],
                   quantity=-3, reason="count")
    assert down["value"] == money(-750) and down["on_hand_after"] == 3, down
    assert_inventory_invariants(stack, owner)


def test_a_transfer_moves_quantity_and_value_between_warehouses(stack, owner):
    p = make_product(stack, owner)
    a, b = make_warehouse(stack, owner), make_warehouse(stack, owner)
    receive(stack, owner, p, a, 3, 100)
    receive(stack, owner, p, a, 1, 104)  # 4 worth 404
    t = move_ok(stack, owner, kind="transfer", product_id=p["id"], warehouse_id=a["id"],
                to_warehouse_id=b["id"], quantity=2, reference="T-1")
    assert (t["value"], t["on_hand_after"], t["to_on_hand_after"]) == (money(-202), 2, 2), t
    assert stock(stack, owner, p, a)["value"] == money(202)
    assert stock(stack, owner, p, b)["value"] == money(202)
    r = move(stack, owner, kind="transfer", product_id=p["id"], warehouse_id=a["id"],
             to_warehouse_id=b["id"], quantity=3)
    assert check_problem(r, 409, "insufficient-stock")["available"] == 2
    r = call(stack, owner, "GET", "/v1/erp/stock", params={"product_id": p["id"]})
    assert sorted((i["warehouse_id"], i["on_hand"]) for i in r.json()["items"]) == \
        sorted([(a["id"], 2), (b["id"], 2)])
    assert_inventory_invariants(stack, owner)


# ---------------------------------------------------------------------------
# reversals and immutability
# ---------------------------------------------------------------------------

def test_a_reversal_puts_stock_and_value_back_once(stack, owner, pw):
    p, w = pw
    receive(stack, owner, p, w, 3, 100)
    off = move_ok(stack, owner, kind="write_off", product_id=p["id"], warehouse_id=w["id"],
                  quantity=2, reason="damaged")
    r = call(stack, owner, "POST", f"/v1/erp/stock/moves/{off['id'].upper()}/reverse")
    assert r.status_code == 201, r.text
    rev = r.json()
    assert rev["reverses"] == off["id"] and rev["value"] == money(200) and rev["on_hand_after"] == 3
    assert r.headers["Location"].endswith(rev["id"])
    again = call(stack, owner, "POST", f"/v1/erp/stock/moves/{off['id']}/reverse")
    assert rev["id"] in check_problem(again, 409, "conflict")["detail"]
    check_problem(call(stack, owner, "POST", f"/v1/erp/stock/moves/{rev['id']}/reverse"), 409)
    assert stock(stack, owner, p, w)["on_hand"] == 3
    assert_inventory_invariants(stack, owner)


def test_reversing_a_receipt_whose_stock_is_gone_is_409(stack, owner, pw):
    p, w = pw
    rec = receive(stack, owner, p, w, 2, 100)
    move_ok(stack, owner, kind="write_off", product_id=p["id"], warehouse_id=w["id"], quantity=1,
            reason="x")
    r = call(stack, owner, "POST", f"/v1/erp/stock/moves/{rec['id']}/reverse")
    assert check_problem(r, 409, "insufficient-stock")["available"] == 1
    assert stock(stack, owner, p, w)["on_hand"] == 1
    assert_inventory_invariants(stack, owner)


def test_reversing_a_transfer_brings_it_back(stack, owner):
    p = make_product(stack, owner)
    a, b = make_warehouse(stack, owner), make_warehouse(stack, owner)
    receive(stack, owner, p, a, 5, 10)
    t = move_ok(stack, owner, kind="transfer", product_id=p["id"], warehouse_id=a["id"],
                to_warehouse_id=b["id"], quantity=5)
    r = call(stack, owner, "POST", f"/v1/erp/stock/moves/{t['id']}/reverse")
    assert r.status_code == 201, r.text
    assert stock(stack, owner, p, a)["on_hand"] == 5 and stock(stack, owner, p, b)["on_hand"] == 0
    assert_inventory_invariants(stack, owner)


def test_moves_are_never_changed_or_deleted(stack, owner, pw):
    p, w = pw
    rec = receive(stack, owner, p, w, 1, 1)
    for method in ("PATCH", "DELETE", "PUT"):
        r = call(stack, owner, method, f"/v1/erp/stock/moves/{rec['id']}", json={"quantity": 9})
        check_problem(r, 405)
        assert "GET" in r.headers["Allow"]
    assert call(stack, owner, "GET", f"/v1/erp/stock/moves/{rec['id']}").json()["quantity"] == 1


def test_one_idempotency_key_makes_one_move(stack, owner, pw):
    p, w = pw
    body = {"kind": "receipt", "product_id": p["id"], "warehouse_id": w["id"], "quantity": 7,
            "unit_cost": money(3)}
    h = dict(owner.headers, **{"Idempotency-Key": "receipt-7"})
    import requests
    first = requests.post(stack.base_url + "/v1/erp/stock/moves", json=body, headers=h, timeout=10)
    second = requests.post(stack.base_url + "/v1/erp/stock/moves", json=body, headers=h, timeout=10)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert stock(stack, owner, p, w)["on_hand"] == 7
    assert_inventory_invariants(stack, owner)


# ---------------------------------------------------------------------------
# bad input: 422, nothing written
# ---------------------------------------------------------------------------

BAD_MOVES = [
    ({"quantity": 1.5}, "quantity"),
    ({"quantity": "3"}, "quantity"),
    ({"quantity": 0}, "quantity"),
    ({"quantity": -2}, "quantity"),
    ({"unit_cost": None}, "unit_cost"),
    ({"unit_cost": money(100, "USD")}, "unit_cost"),
    ({"unit_cost": money(-1)}, "unit_cost"),
    ({"kind": "gift"}, "kind"),
    ({"product_id": "0" * 24}, "product_id"),
    ({"product_id": "not-an-id"}, "product_id"),
    ({"warehouse_id": None}, "warehouse_id"),
    ({"to_warehouse_id": "SAME"}, "to_warehouse_id"),
    ({"extra": 1}, "extra"),
]


@pytest.mark.parametrize("change,field", BAD_MOVES)
def test_a_bad_receipt_is_422_naming_the_field_and_moves_nothing(stack, owner, pw, change, field):
    p, w = pw
    body = {"kind": "receipt", "product_id": p["id"], "warehouse_id": w["id"], "quantity": 2,
            "unit_cost": money(100)}
    for k, v in change.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = w["id"] if v == "SAME" else v
    r = move(stack, owner, **body)
    problem = check_problem(r, 422)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert all_moves(stack, owner, product_id=p["id"]) == []
    assert stock(stack, owner, p, w)["on_hand"] == 0


@pytest.mark.parametrize("body,field", [
    ({"kind": "write_off", "quantity": 1}, "reason"),
    ({"kind": "write_off", "quantity": 1, "reason": "x", "unit_cost": money(1)}, "unit_cost"),
    ({"kind": "transfer", "quantity": 1}, "to_warehouse_id"),
    ({"kind": "adjustment", "quantity": 0}, "quantity"),
])
def test_rules_between_fields_are_422(stack, owner, pw, body, field):
    p, w = pw
    r = move(stack, owner, product_id=p["id"], warehouse_id=w["id"], **body)
    assert field in [e["field"] for e in check_problem(r, 422)["errors"]]


def test_malformed_json_is_400_and_the_server_keeps_serving(stack, owner):
    import requests
    r = requests.post(stack.base_url + "/v1/erp/stock/moves", data=b'{"kind": "receipt",',
                      headers=dict(owner.headers, **{"Content-Type": "application/json"}), timeout=10)
    check_problem(r, 400)
    assert call(stack, owner, "GET", "/v1/erp/stock").status_code == 200
    check_problem(call(stack, owner, "GET", "/v1/erp/stock", params={"product_id": "nope"}), 422)
    assert call(stack, owner, "GET", "/v1/erp/products").status_code == 200


# ---------------------------------------------------------------------------
# who may do what, and other tenants
# ---------------------------------------------------------------------------

def test_roles_take_effect(stack, owner, pw):
    p, w = pw
    receive(stack, owner, p, w, 10, 5)
    keeper = user_session(stack, owner, ["warehouse"])
    manager = user_session(stack, owner, ["manager"])
    sales = user_session(stack, owner, ["sales"])
    off = dict(kind="write_off", product_id=p["id"], warehouse_id=w["id"], quantity=1, reason="x")
    assert move(stack, keeper, **off).status_code == 201
    check_problem(call(stack, keeper, "POST", "/v1/erp/products",
                       json={"sku": "K-1", "name": "k", "price": money(1)}), 403)
    assert call(stack, manager, "GET", "/v1/erp/stock", params={"product_id": p["id"]}).status_code == 200
    check_problem(move(stack, manager, **off), 403)
    check_problem(call(stack, sales, "GET", "/v1/erp/products"), 403)
    check_problem(move(stack, sales, **off), 403)
    assert stock(stack, owner, p, w)["on_hand"] == 9
    assert_inventory_invariants(stack, owner)


def test_another_tenant_cannot_see_or_move_the_stock(stack, owner, other, pw):
    p, w = pw
    rec = receive(stack, owner, p, w, 3, 7)
    for path in (f"/v1/erp/products/{p['id']}", f"/v1/erp/warehouses/{w['id']}",
                 f"/v1/erp/stock/moves/{rec['id']}"):
        check_problem(call(stack, other, "GET", path), 404)
    check_problem(call(stack, other, "POST", f"/v1/erp/stock/moves/{rec['id']}/reverse"), 404)
    check_problem(call(stack, other, "PATCH", f"/v1/erp/products/{p['id']}", json={"name": "mine"}), 404)
    r = call(stack, other, "GET", "/v1/erp/stock", params={"product_id": p["id"]})
    assert r.status_code == 200 and r.json()["items"] == []
    theirs = make_warehouse(stack, other)
    r = move(stack, other, kind="write_off", product_id=p["id"], warehouse_id=theirs["id"],
             quantity=1, reason="steal")
    assert "product_id" in [e["field"] for e in check_problem(r, 422)["errors"]]
    assert stock(stack, owner, p, w)["on_hand"] == 3
    assert call(stack, owner, "GET", f"/v1/erp/products/{p['id']}").json()["name"] == "Widget"


# ---------------------------------------------------------------------------
# live
# ---------------------------------------------------------------------------

def test_a_move_is_pushed_to_a_subscribed_warehouse_user(stack, owner, pw):
    from test_events_live import auth, events, ws_open, until_type
    p, w = pw
    keeper = user_session(stack, owner, ["warehouse"])
    with ws_open(stack) as ws:
        auth(ws, keeper, topics=["erp.stock"])
        until_type(ws, "subscribed")
        rec = receive(stack, owner, p, w, 2, 50)
        ev = events(ws, 1)[0]
        assert (ev["topic"], ev["event"], ev["entity_id"]) == ("erp.stock", "erp.stock.moved", rec["id"])
        assert ev["data"]["on_hand_after"] == 2


def test_movements_in_the_database_never_show_negative_available(stack, owner, pw):
    p, w = pw
    receive(stack, owner, p, w, 1, 1)
    move(stack, owner, kind="write_off", product_id=p["id"], warehouse_id=w["id"], quantity=2,
         reason="too many")
    key = f"erp.stock/{p['id']}/{w['id']}"
    rows = list(stack.mongo["register_moves"].find({"tenant_id": ObjectId(owner.tenant_id),
                                                     "key": key}))
    assert rows and all(r["a"].get("available", 0) >= 0 for r in rows), json.dumps(rows, default=str)


# ---------------------------------------------------------------------------
# the ledger follows the stock
# ---------------------------------------------------------------------------

def entry_lines(stack, acct, entry_id):
    r = call(stack, acct, "GET", f"/v1/erp/journal/{entry_id}")
    assert r.status_code == 200, r.text
    return [(l["account_code"], l["debit"], l["credit"]) for l in r.json()["lines"]]


def test_moves_post_their_value_to_the_ledger_once(stack, owner, pw):
    p, w = pw
    rec = receive(stack, owner, p, w, 4, 250)
    assert entry_lines(stack, owner, rec["id"]) == [("1300", 1000, 0), ("2000", 0, 1000)]
    off = move_ok(stack, owner, kind="write_off", product_id=p["id"], warehouse_id=w["id"],
                  quantity=1, reason="dropped")
    assert entry_lines(stack, owner, off["id"]) == [("6000", 250, 0), ("1300", 0, 250)]
    up = move_ok(stack, owner, kind="adjustment", product_id=p["id"], warehouse_id=w["id"],
                 quantity=1)
    assert entry_lines(stack, owner, up["id"]) == [("1300", 250, 0), ("6000", 0, 250)]
    rev = call(stack, owner, "POST", f"/v1/erp/stock/moves/{off['id']}/reverse").json()
    assert entry_lines(stack, owner, rev["id"]) == [("1300", 250, 0), ("6000", 0, 250)]
    other = make_warehouse(stack, owner)
    t = move_ok(stack, owner, kind="transfer", product_id=p["id"], warehouse_id=w["id"],
                to_warehouse_id=other["id"], quantity=2)
    check_problem(call(stack, owner, "GET", f"/v1/erp/journal/{t['id']}"), 404)  # stays in 1300
    tb = call(stack, owner, "GET", "/v1/erp/reports/trial-balance").json()
    rows = {a["code"]: a["debit"] - a["credit"] for a in tb["accounts"]}
    # 1000 received, 250 written off, 250 found, the write-off reversed: 1250
    assert rows["1300"] == 1250 and tb["total_debit"] == tb["total_credit"], tb
    assert_inventory_invariants(stack, owner)


def test_the_checks_notice_a_movement_edited_in_the_database(stack, owner, pw):
    p, w = pw
    receive(stack, owner, p, w, 3, 10)
    move_ok(stack, owner, kind="write_off", product_id=p["id"], warehouse_id=w["id"], quantity=1,
            reason="x")
    key = f"erp.stock/{p['id']}/{w['id']}"
    moves = stack.mongo["register_moves"]
    row = moves.find_one({"tenant_id": ObjectId(owner.tenant_id), "key": key, "seq": 2})
    moves.update_one({"_id": row["_id"]}, {"$set": {"d.on_hand": -2}})
    body = call(stack, owner, "GET", "/v1/erp/checks").json()
    bad = {c["name"]: c for c in body["checks"] if not c["ok"]}
    assert body["ok"] is False and set(bad) == {"stock_folds_movements"}, body
    assert key in bad["stock_folds_movements"]["detail"]
    moves.update_one({"_id": row["_id"]}, {"$set": {"d.on_hand": -1}})
    assert call(stack, owner, "GET", "/v1/erp/checks").json()["ok"] is True


def test_checks_need_the_ledger_permission(stack, owner):
    keeper = user_session(stack, owner, ["warehouse"])
    check_problem(call(stack, keeper, "GET", "/v1/erp/checks"), 403)
    accountant = user_session(stack, owner, ["accountant"])
    assert call(stack, accountant, "GET", "/v1/erp/checks").json()["ok"] is True
