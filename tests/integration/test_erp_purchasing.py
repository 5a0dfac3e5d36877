"""ERP purchasing: suppliers, purchase orders, receipts in part or whole as
stock receipts (inventory against payables); bad input, roles and other
tenants. Tests that receive stock end by checking the inventory invariants."""

import pytest
import requests

from conftest import check_problem, signup, user_session
from erp_support import (assert_inventory_invariants, call, make_product, make_warehouse, money,
                         stock)


@pytest.fixture
def owner(stack):
    return signup(stack)


def make_supplier(stack, acct, **fields):
    body = {"name": "Parts GmbH", "email": "sales@parts.example"}
    body.update(fields)
    r = call(stack, acct, "POST", "/v1/erp/suppliers", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def make_po(stack, acct, supplier, warehouse, lines, currency="EUR"):
    r = call(stack, acct, "POST", "/v1/erp/purchase-orders", json={
        "supplier_id": supplier["id"], "warehouse_id": warehouse["id"], "currency": currency,
        "lines": lines})
    assert r.status_code == 201, r.text
    return r.json()


def receive_po(stack, acct, po, lines, key=None):
    h = dict(acct.headers)
    if key:
        h["Idempotency-Key"] = key
    return requests.post(f"{stack.base_url}/v1/erp/purchase-orders/{po['id']}/receive",
                         json={"lines": lines}, headers=h, timeout=30)


def test_a_purchase_order_is_received_in_parts_at_its_costs(stack, owner):
    s, w = make_supplier(stack, owner), make_warehouse(stack, owner)
    bolts = make_product(stack, owner)
    flour = make_product(stack, owner, uom="kg", uom_scale=3)
    po = make_po(stack, owner, s, w, [
        {"product_id": bolts["id"], "quantity": 10, "unit_cost": money(25)},
        {"product_id": flour["id"], "quantity": 2500, "unit_cost": money(199)}])  # 2.5 kg at 1.99
    assert po["status"] == "open" and po["total"] == money(250 + 498)  # 497.5 -> 498 (even)
    r = receive_po(stack, owner, po, [{"product_id": bolts["id"], "quantity": 4}])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["purchase_order"]["status"] == "partially_received"
    [mv] = body["moves"]
    assert (mv["kind"], mv["quantity"], mv["value"], mv["unit_cost"]) == ("receipt", 4, money(100), money(25))
    entry = call(stack, owner, "GET", f"/v1/erp/journal/{mv['id']}").json()
    assert [(l["account_code"], l["debit"], l["credit"]) for l in entry["lines"]] == [
        ("1300", 100, 0), ("2000", 0, 100)]
    over = receive_po(stack, owner, po, [{"product_id": bolts["id"], "quantity": 7}])
    assert "6 remains" in check_problem(over, 409, "conflict")["errors"][0]["message"]
    r = receive_po(stack, owner, po, [{"product_id": bolts["id"], "quantity": 6},
                                      {"product_id": flour["id"], "quantity": 2500}])
    assert r.status_code == 201 and r.json()["purchase_order"]["status"] == "received", r.text
    assert stock(stack, owner, bolts, w)["on_hand"] == 10
    assert stock(stack, owner, flour, w)["value"] == money(498)
    check_problem(receive_po(stack, owner, po, [{"product_id": bolts["id"], "quantity": 1}]), 409)
    check_problem(call(stack, owner, "PATCH", f"/v1/erp/purchase-orders/{po['id']}",
                       json={"lines": []}), 409)
    assert_inventory_invariants(stack, owner)


def test_a_retried_receipt_receives_once(stack, owner):
    s, w, p = make_supplier(stack, owner), make_warehouse(stack, owner), make_product(stack, owner)
    po = make_po(stack, owner, s, w, [{"product_id": p["id"], "quantity": 5, "unit_cost": money(10)}])
    a = receive_po(stack, owner, po, [{"product_id": p["id"], "quantity": 2}], key="rcv-1")
    b = receive_po(stack, owner, po, [{"product_id": p["id"], "quantity": 2}], key="rcv-1")
    assert a.status_code == b.status_code == 201 and a.json()["id"] == b.json()["id"]
    assert stock(stack, owner, p, w)["on_hand"] == 2
    assert_inventory_invariants(stack, owner)


@pytest.mark.parametrize("line,field", [
    ({"quantity": 0}, "lines[0]"), ({"quantity": 1.5}, "lines[0]"),
    ({"unit_cost": money(10, "USD")}, "lines[0]"), ({"unit_cost": money(-1)}, "lines[0]"),
    ({"product_id": "0" * 24}, "lines[0]"), ({"colour": "red"}, "lines[0]"),
])
def test_a_bad_purchase_order_is_422(stack, owner, line, field):
    s, w, p = make_supplier(stack, owner), make_warehouse(stack, owner), make_product(stack, owner)
    body = {"product_id": p["id"], "quantity": 5, "unit_cost": money(10)}
    body.update(line)
    r = call(stack, owner, "POST", "/v1/erp/purchase-orders", json={
        "supplier_id": s["id"], "warehouse_id": w["id"], "currency": "EUR", "lines": [body]})
    assert field in [e["field"] for e in check_problem(r, 422)["errors"]]
    assert call(stack, owner, "GET", "/v1/erp/purchase-orders").json()["items"] == []


def test_purchasing_roles_and_other_tenants(stack, owner):
    s, w, p = make_supplier(stack, owner), make_warehouse(stack, owner), make_product(stack, owner)
    po = make_po(stack, owner, s, w, [{"product_id": p["id"], "quantity": 5, "unit_cost": money(10)}])
    accountant = user_session(stack, owner, ["accountant"])
    keeper = user_session(stack, owner, ["warehouse"])
    assert call(stack, accountant, "GET", f"/v1/erp/purchase-orders/{po['id']}").status_code == 200
    check_problem(receive_po(stack, accountant, po, [{"product_id": p["id"], "quantity": 1}]), 403)
    check_problem(call(stack, keeper, "GET", "/v1/erp/suppliers"), 403)
    other = signup(stack)
    check_problem(call(stack, other, "GET", f"/v1/erp/purchase-orders/{po['id']}"), 404)
    check_problem(receive_po(stack, other, po, [{"product_id": p["id"], "quantity": 1}]), 404)
    assert call(stack, owner, "DELETE", f"/v1/erp/suppliers/{s['id']}").status_code == 204
    assert call(stack, owner, "GET", f"/v1/erp/suppliers/{s['id']}").json()["active"] is False
    assert stock(stack, owner, p, w)["on_hand"] == 0


def test_a_purchase_order_names_each_product_once_in_its_currency(stack, owner):
    s, w, p = make_supplier(stack, owner), make_warehouse(stack, owner), make_product(stack, owner)
    dollars = make_product(stack, owner, price=money(100, "USD"))
    for lines in ([{"product_id": dollars["id"], "quantity": 1, "unit_cost": money(10)}],
                  [{"product_id": p["id"], "quantity": 1, "unit_cost": money(10)},
                   {"product_id": p["id"], "quantity": 2, "unit_cost": money(10)}]):
        r = call(stack, owner, "POST", "/v1/erp/purchase-orders", json={
            "supplier_id": s["id"], "warehouse_id": w["id"], "currency": "EUR", "lines": lines})
        check_problem(r, 422)
