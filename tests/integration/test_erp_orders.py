"""ERP sales orders: exact line amounts (hand-worked below), the client from
a won deal, confirm reserving every line or none, cancel releasing; bad
input, roles and other tenants. Tests that reserve stock end by checking
the inventory invariants."""

import pytest

from conftest import check_problem, signup, user_session
from erp_support import (assert_inventory_invariants, call, make_product, make_warehouse, money,
                         receive, stock)


@pytest.fixture
def owner(stack):
    return signup(stack)


def line(product, quantity, price, discount_bp=None, currency="EUR"):
    out = {"product_id": product["id"], "quantity": quantity, "unit_price": money(price, currency)}
    if discount_bp is not None:
        out["discount_bp"] = discount_bp
    return out


def make_order(stack, acct, warehouse, lines, **fields):
    body = {"warehouse_id": warehouse["id"], "currency": "EUR", "lines": lines}
    body.update(fields)
    r = call(stack, acct, "POST", "/v1/erp/orders", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def act(stack, acct, order, action):
    return call(stack, acct, "POST", f"/v1/erp/orders/{order['id']}/{action}")


def test_line_amounts_are_exact_and_rounded_half_to_even_per_line(stack, owner):
    w = make_warehouse(stack, owner)
    vat20 = make_product(stack, owner, tax_rate_bp=2000)
    kg7 = make_product(stack, owner, uom="kg", uom_scale=3, tax_rate_bp=700)
    odd = make_product(stack, owner, tax_rate_bp=1950)
    untaxed, untaxed2 = make_product(stack, owner), make_product(stack, owner)
    order = make_order(stack, owner, w, [
        # 3 x 9.99 less 12.5% = 26.22375 -> 26.22; 20% tax = 5.244 -> 5.24
        line(vat20, 3, 999, 1250),
        # 1.250 kg x 19.99 = 24.9875 -> 24.99; 7% = 1.7493 -> 1.75
        line(kg7, 1250, 1999),
        # 0.10 x 19.5% = 0.0195 -> 0.02
        line(odd, 1, 10),
        # 0.05 less 50% = 0.025 -> 0.02 (half: to even); 0.07 less 50% = 0.035 -> 0.04
        line(untaxed, 1, 5, 5000),
        line(untaxed2, 1, 7, 5000),
    ])
    got = [(l["net"]["amount"], l["tax"]["amount"], l["total"]["amount"]) for l in order["lines"]]
    assert got == [(2622, 524, 3146), (2499, 175, 2674), (10, 2, 12), (2, 0, 2), (4, 0, 4)], got
    assert order["net"] == money(2622 + 2499 + 10 + 2 + 4)
    assert order["tax"] == money(524 + 175 + 2)
    assert order["total"] == money(3146 + 2674 + 12 + 2 + 4)
    assert order["status"] == "draft" and order["owner_id"] == owner.user_id


@pytest.mark.parametrize("bad,field", [
    ({"quantity": 1.5}, "lines[0].quantity"),
    ({"quantity": 0}, "lines[0].quantity"),
    ({"unit_price": money(100, "USD")}, "lines[0].unit_price"),
    ({"unit_price": money(-1)}, "lines[0].unit_price"),
    ({"unit_price": {"amount": 1.25, "currency": "EUR"}}, "lines[0].unit_price"),
    ({"discount_bp": 10001}, "lines[0].discount_bp"),
    ({"product_id": "0" * 24}, "lines[0].product_id"),
    ({"colour": "red"}, "lines[0].colour"),
])
def test_a_bad_line_is_422_naming_it_and_nothing_is_stored(stack, owner, bad, field):
    w, p = make_warehouse(stack, owner), make_product(stack, owner)
    l = line(p, 2, 100)
    l.update(bad)
    r = call(stack, owner, "POST", "/v1/erp/orders",
             json={"warehouse_id": w["id"], "currency": "EUR", "lines": [l]})
    assert field in [e["field"] for e in check_problem(r, 422)["errors"]]
    assert call(stack, owner, "GET", "/v1/erp/orders").json()["items"] == []


@pytest.mark.parametrize("body,field", [
    ({"lines": []}, "lines"), ({"lines": "x"}, "lines"), ({"currency": "euro"}, "currency"),
    ({"warehouse_id": None}, "warehouse_id"), ({"status": "paid"}, "status"),
])
def test_bad_order_fields_are_422(stack, owner, body, field):
    w, p = make_warehouse(stack, owner), make_product(stack, owner)
    full = {"warehouse_id": w["id"], "currency": "EUR", "lines": [line(p, 1, 1)]}
    for k, v in body.items():
        if v is None:
            full.pop(k)
        else:
            full[k] = v
    r = call(stack, owner, "POST", "/v1/erp/orders", json=full)
    assert field in [e["field"] for e in check_problem(r, 422)["errors"]]


def test_an_order_for_a_deal_takes_the_deals_client(stack, owner):
    client = call(stack, owner, "POST", "/v1/crm/clients", json={"name": "Acme", "kind": "company"}).json()
    deal = call(stack, owner, "POST", "/v1/crm/deals", json={"client_id": client["id"], "title": "Big"}).json()
    w, p = make_warehouse(stack, owner), make_product(stack, owner)
    r = call(stack, owner, "POST", "/v1/erp/orders", json={
        "warehouse_id": w["id"], "currency": "EUR", "lines": [line(p, 1, 100)], "deal_id": deal["id"]})
    assert [e["field"] for e in check_problem(r, 422)["errors"]] == ["deal_id"]  # still open
    assert "open" in r.json()["errors"][0]["message"]
    assert call(stack, owner, "GET", "/v1/erp/orders").json()["items"] == []
    assert call(stack, owner, "POST", f"/v1/crm/deals/{deal['id']}/won").status_code == 200
    order = make_order(stack, owner, w, [line(p, 1, 100)], deal_id=deal["id"].upper())
    assert order["client_id"] == client["id"] and order["deal_id"] == deal["id"]
    other = call(stack, owner, "POST", "/v1/crm/clients", json={"name": "Other", "kind": "company"}).json()
    r = call(stack, owner, "POST", "/v1/erp/orders", json={
        "warehouse_id": w["id"], "currency": "EUR", "lines": [line(p, 1, 100)],
        "deal_id": deal["id"], "client_id": other["id"]})
    assert "client_id" in [e["field"] for e in check_problem(r, 422)["errors"]]


def test_confirm_reserves_every_line_or_none(stack, owner):
    w = make_warehouse(stack, owner)
    a, b = make_product(stack, owner), make_product(stack, owner)
    receive(stack, owner, a, w, 10, 100)
    receive(stack, owner, b, w, 1, 100)
    order = make_order(stack, owner, w, [line(a, 4, 150), line(b, 2, 150)])
    r = act(stack, owner, order, "confirm")
    problem = check_problem(r, 409, "insufficient-stock")
    assert [e["field"] for e in problem["errors"]] == ["lines[1]"], problem
    assert "1 available" in problem["errors"][0]["message"]
    assert (stock(stack, owner, a, w)["reserved"], stock(stack, owner, a, w)["available"]) == (0, 10)
    assert call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()["status"] == "draft"
    receive(stack, owner, b, w, 1, 100)
    r = act(stack, owner, order, "confirm")
    assert r.status_code == 200 and r.json()["status"] == "confirmed", r.text
    sa, sb = stock(stack, owner, a, w), stock(stack, owner, b, w)
    assert (sa["on_hand"], sa["reserved"], sa["available"]) == (10, 4, 6)
    assert (sb["on_hand"], sb["reserved"], sb["available"]) == (2, 2, 0)
    check_problem(act(stack, owner, order, "confirm"), 409, "conflict")
    # reserved stock cannot be written off
    r = call(stack, owner, "POST", "/v1/erp/stock/moves", json={
        "kind": "write_off", "product_id": b["id"], "warehouse_id": w["id"], "quantity": 1, "reason": "x"})
    assert check_problem(r, 409, "insufficient-stock")["available"] == 0
    assert_inventory_invariants(stack, owner)


def test_cancel_releases_what_was_reserved_once(stack, owner):
    w, p = make_warehouse(stack, owner), make_product(stack, owner)
    receive(stack, owner, p, w, 5, 100)
    order = make_order(stack, owner, w, [line(p, 5, 120)])
    assert act(stack, owner, order, "confirm").status_code == 200
    assert stock(stack, owner, p, w)["available"] == 0
    r = act(stack, owner, order, "cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    s = stock(stack, owner, p, w)
    assert (s["reserved"], s["available"]) == (0, 5)
    check_problem(act(stack, owner, order, "cancel"), 409, "conflict")
    check_problem(act(stack, owner, order, "confirm"), 409, "conflict")
    draft = make_order(stack, owner, w, [line(p, 1, 1)])
    assert act(stack, owner, draft, "cancel").json()["status"] == "cancelled"
    assert_inventory_invariants(stack, owner)


def test_only_a_draft_changes_and_is_priced_again(stack, owner):
    w, p = make_warehouse(stack, owner), make_product(stack, owner, tax_rate_bp=1000)
    receive(stack, owner, p, w, 5, 100)
    order = make_order(stack, owner, w, [line(p, 1, 100)])
    r = call(stack, owner, "PATCH", f"/v1/erp/orders/{order['id']}", json={"lines": [line(p, 3, 100)]})
    assert r.status_code == 200 and r.json()["total"] == money(330), r.text
    assert act(stack, owner, order, "confirm").status_code == 200
    r = call(stack, owner, "PATCH", f"/v1/erp/orders/{order['id']}", json={"lines": [line(p, 1, 100)]})
    check_problem(r, 409, "conflict")
    check_problem(call(stack, owner, "PATCH", f"/v1/erp/orders/{order['id']}",
                       json={"status": "paid"}), 422)
    assert stock(stack, owner, p, w)["reserved"] == 3
    assert_inventory_invariants(stack, owner)


def test_roles_and_other_tenants(stack, owner):
    w, p = make_warehouse(stack, owner), make_product(stack, owner)
    order = make_order(stack, owner, w, [line(p, 1, 100)])
    keeper = user_session(stack, owner, ["warehouse"])
    sales = user_session(stack, owner, ["sales"])
    assert call(stack, keeper, "GET", f"/v1/erp/orders/{order['id']}").status_code == 200
    check_problem(act(stack, keeper, order, "confirm"), 403)
    check_problem(call(stack, sales, "GET", "/v1/erp/orders"), 403)
    other = signup(stack)
    check_problem(call(stack, other, "GET", f"/v1/erp/orders/{order['id']}"), 404)
    check_problem(act(stack, other, order, "confirm"), 404)
    check_problem(act(stack, other, order, "cancel"), 404)
    theirs = make_warehouse(stack, other)
    r = call(stack, other, "POST", "/v1/erp/orders", json={
        "warehouse_id": theirs["id"], "currency": "EUR", "lines": [line(p, 1, 100)]})
    assert "lines[0].product_id" in [e["field"] for e in check_problem(r, 422)["errors"]]
    assert call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()["status"] == "draft"


# ---------------------------------------------------------------------------
# invoices and payments
# ---------------------------------------------------------------------------

def confirmed_order(stack, acct, total_qty=2, price=1000, tax_bp=2000):
    w, p = make_warehouse(stack, acct), make_product(stack, acct, tax_rate_bp=tax_bp)
    receive(stack, acct, p, w, total_qty, 400)
    order = make_order(stack, acct, w, [line(p, total_qty, price)])
    assert act(stack, acct, order, "confirm").status_code == 200
    return order


def pay(stack, acct, order, amount, method="bank", key=None):
    import requests
    h = dict(acct.headers)
    if key:
        h["Idempotency-Key"] = key
    return requests.post(f"{stack.base_url}/v1/erp/orders/{order['id']}/payments", headers=h,
                         json={"amount": money(amount), "method": method}, timeout=30)


def test_an_invoice_is_numbered_and_posts_receivables_against_sales_and_tax(stack, owner):
    order = confirmed_order(stack, owner)  # 2 x 10.00 + 20% = 24.00
    r = act(stack, owner, order, "invoice")
    assert r.status_code == 201, r.text
    inv = r.json()
    year = __import__("datetime").date.today().year
    assert inv["number"] == f"INV-{year}-000001" and inv["total"] == money(2400)
    assert inv["status"] == "open" and inv["paid"] == money(0) and inv["order_id"] == order["id"]
    assert call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()["status"] == "invoiced"
    entry = call(stack, owner, "GET", f"/v1/erp/journal/{inv['id']}").json()
    assert [(l["account_code"], l["debit"], l["credit"]) for l in entry["lines"]] == [
        ("1200", 2400, 0), ("4000", 0, 2000), ("2100", 0, 400)]
    check_problem(act(stack, owner, order, "invoice"), 409, "conflict")
    second = confirmed_order(stack, owner)
    assert act(stack, owner, second, "invoice").json()["number"] == f"INV-{year}-000002"
    draft = make_order(stack, owner, make_warehouse(stack, owner), [line(make_product(stack, owner), 1, 1)])
    check_problem(act(stack, owner, draft, "invoice"), 409, "conflict")
    assert_inventory_invariants(stack, owner)


def test_partial_payments_then_paid_once_and_never_more(stack, owner):
    order = confirmed_order(stack, owner)
    check_problem(pay(stack, owner, order, 100), 409, "conflict")  # not invoiced yet
    inv = act(stack, owner, order, "invoice").json()
    first = pay(stack, owner, order, 1000, method="cash")
    assert first.status_code == 201 and first.json()["open_after"] == money(1400), first.text
    got = call(stack, owner, "GET", f"/v1/erp/invoices/{inv['id']}").json()
    assert (got["status"], got["paid"]) == ("partially_paid", money(1000))
    over = pay(stack, owner, order, 1401)
    assert check_problem(over, 409, "overpayment")["open"] == 1400
    last = pay(stack, owner, order, 1400)
    assert last.status_code == 201 and last.json()["open_after"] == money(0)
    assert call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()["status"] == "paid"
    got = call(stack, owner, "GET", f"/v1/erp/invoices/{inv['id']}").json()
    assert (got["status"], got["paid"]) == ("paid", money(2400))
    check_problem(pay(stack, owner, order, 1), 409, "conflict")
    cash = call(stack, owner, "GET", f"/v1/erp/journal/{first.json()['id']}").json()
    assert [(l["account_code"], l["debit"], l["credit"]) for l in cash["lines"]] == [
        ("1000", 1000, 0), ("1200", 0, 1000)]
    tb = call(stack, owner, "GET", "/v1/erp/reports/trial-balance").json()
    rows = {a["code"]: a["debit"] - a["credit"] for a in tb["accounts"]}
    assert rows.get("1200", 0) == 0 and rows["1000"] == 1000 and rows["1100"] == 1400
    assert_inventory_invariants(stack, owner)


@pytest.mark.parametrize("body,field", [
    ({"amount": money(10, "USD"), "method": "bank"}, "amount"),
    ({"amount": {"amount": 1.5, "currency": "EUR"}, "method": "bank"}, "amount"),
    ({"amount": money(0), "method": "bank"}, "amount"),
    ({"amount": money(10), "method": "barter"}, "method"),
    ({"amount": money(10)}, "method"),
    ({"amount": money(10), "method": "bank", "tip": 1}, "tip"),
])
def test_a_bad_payment_is_422_and_changes_nothing(stack, owner, body, field):
    order = confirmed_order(stack, owner)
    act(stack, owner, order, "invoice")
    r = call(stack, owner, "POST", f"/v1/erp/orders/{order['id']}/payments", json=body)
    assert field in [e["field"] for e in check_problem(r, 422)["errors"]]
    assert call(stack, owner, "GET", "/v1/erp/payments").json()["items"] == []


def test_order_paid_is_pushed_live_once(stack, owner):
    from test_events_live import auth, events, no_event, until_type, ws_open
    order = confirmed_order(stack, owner)
    act(stack, owner, order, "invoice")
    accountant = user_session(stack, owner, ["accountant"])
    with ws_open(stack) as ws:
        auth(ws, accountant, topics=["erp.orders"])
        until_type(ws, "subscribed")
        assert pay(stack, accountant, order, 2400, key="pay-all").status_code == 201
        ev = events(ws, 1)[0]
        assert (ev["event"], ev["entity_id"], ev["data"]["status"]) == ("erp.order.paid", order["id"], "paid")
        assert pay(stack, accountant, order, 2400, key="pay-all").status_code == 201  # a replay
        no_event(ws)


def test_an_order_given_free_of_charge_is_paid_by_its_invoice(stack, owner):
    """A line discounted 100 %: the order totals 0, which no payment (at
    least 1) could close - its invoice pays it, erp.order.paid goes out
    once, and shipping it all completes it."""
    from test_events_live import auth, events, no_event, until_type, ws_open
    w, p = make_warehouse(stack, owner), make_product(stack, owner, tax_rate_bp=2000)
    receive(stack, owner, p, w, 2, 400)
    order = make_order(stack, owner, w, [line(p, 2, 1000, discount_bp=10000)])
    assert order["total"] == money(0)
    assert act(stack, owner, order, "confirm").status_code == 200
    with ws_open(stack) as ws:
        auth(ws, owner, topics=["erp.orders"])
        until_type(ws, "subscribed")
        inv = act(stack, owner, order, "invoice")
        assert inv.status_code == 201, inv.text
        assert (inv.json()["status"], inv.json()["total"]) == ("paid", money(0))
        ev = events(ws, 1)[0]
        assert (ev["event"], ev["entity_id"], ev["data"]["status"]) == ("erp.order.paid", order["id"], "paid")
        check_problem(pay(stack, owner, order, 1), 409)
        no_event(ws)
    got = call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()
    assert got["status"] == "paid" and got["invoice_id"] == inv.json()["id"]
    r = ship(stack, owner, order, [{"product_id": p["id"], "quantity": 2}])
    assert r.status_code == 201, r.text
    assert call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()["status"] == "completed"
    assert_inventory_invariants(stack, owner)


def test_billing_roles_and_other_tenants(stack, owner):
    order = confirmed_order(stack, owner)
    keeper = user_session(stack, owner, ["warehouse"])
    check_problem(act(stack, keeper, order, "invoice"), 403)
    accountant = user_session(stack, owner, ["accountant"])
    inv = act(stack, accountant, order, "invoice")
    assert inv.status_code == 201, inv.text
    check_problem(pay(stack, keeper, order, 1), 403)
    other = signup(stack)
    check_problem(pay(stack, other, order, 1), 404)
    check_problem(call(stack, other, "GET", f"/v1/erp/invoices/{inv.json()['id']}"), 404)
    assert pay(stack, accountant, order, 2400).status_code == 201



def test_an_own_permission_does_not_reach_invoices_which_have_no_owner(stack, owner):
    """A custom role holding erp.invoices.read:own: invoices have no owner,
    so none is its own - the list is empty and each invoice 404, while a
    full holder sees them."""
    order = confirmed_order(stack, owner)
    inv = act(stack, owner, order, "invoice")
    assert inv.status_code == 201, inv.text
    r = call(stack, owner, "POST", "/v1/roles",
             json={"name": "own-invoices", "permissions": ["erp.invoices.read:own",
                                                            "erp.payments.read:own"]})
    assert r.status_code == 201, r.text
    mine = user_session(stack, owner, ["own-invoices"])
    got = call(stack, mine, "GET", "/v1/erp/invoices")
    assert got.status_code == 200 and got.json()["items"] == [], got.text
    check_problem(call(stack, mine, "GET", f"/v1/erp/invoices/{inv.json()['id']}"), 404)
    check_problem(call(stack, mine, "GET", f"/v1/erp/invoices/{inv.json()['id'].upper()}"), 404)
    assert call(stack, mine, "GET", "/v1/erp/payments").json()["items"] == []
    assert [i["id"] for i in call(stack, owner, "GET", "/v1/erp/invoices").json()["items"]] == [
        inv.json()["id"]]

# ---------------------------------------------------------------------------
# shipments
# ---------------------------------------------------------------------------

def ship(stack, acct, order, lines, key=None):
    import requests
    h = dict(acct.headers)
    if key:
        h["Idempotency-Key"] = key
    return requests.post(f"{stack.base_url}/v1/erp/orders/{order['id']}/shipments", headers=h,
                         json={"lines": lines}, timeout=30)


def test_partial_shipments_consume_reservations_at_average_cost(stack, owner):
    w, p = make_warehouse(stack, owner), make_product(stack, owner)
    receive(stack, owner, p, w, 2, 101)
    receive(stack, owner, p, w, 1, 100)  # 3 worth 302
    order = make_order(stack, owner, w, [line(p, 3, 500)])
    check_problem(ship(stack, owner, order, [{"product_id": p["id"], "quantity": 1}]), 409)  # draft
    assert act(stack, owner, order, "confirm").status_code == 200
    first = ship(stack, owner, order, [{"product_id": p["id"], "quantity": 1}])
    assert first.status_code == 201, first.text
    assert first.json()["cost"] == money(101)  # 302 / 3 = 100.67 -> 101
    s = stock(stack, owner, p, w)
    assert (s["on_hand"], s["reserved"], s["available"], s["value"]) == (2, 2, 0, money(201))
    over = ship(stack, owner, order, [{"product_id": p["id"], "quantity": 3}])
    assert "2 remains" in check_problem(over, 409, "conflict")["errors"][0]["message"]
    check_problem(act(stack, owner, order, "cancel"), 409, "conflict")  # part has shipped
    rest = ship(stack, owner, order, [{"product_id": p["id"], "quantity": 2}])
    assert rest.status_code == 201 and rest.json()["cost"] == money(201), rest.text
    got = call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()
    assert got["status"] == "shipped" and got["lines"][0]["shipped"] == 3
    cogs = call(stack, owner, "GET", f"/v1/erp/journal/{first.json()['id']}").json()
    assert [(l["account_code"], l["debit"], l["credit"]) for l in cogs["lines"]] == [
        ("5000", 101, 0), ("1300", 0, 101)]
    # invoiced and paid after shipping: completed
    inv = act(stack, owner, order, "invoice")
    assert inv.status_code == 201, inv.text
    assert pay(stack, owner, order, 1500).status_code == 201
    assert call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()["status"] == "completed"
    assert_inventory_invariants(stack, owner)


def test_a_retried_shipment_ships_once(stack, owner):
    order = confirmed_order(stack, owner, total_qty=4)
    product_id = order["lines"][0]["product_id"]
    a = ship(stack, owner, order, [{"product_id": product_id, "quantity": 1}], key="ship-1")
    b = ship(stack, owner, order, [{"product_id": product_id, "quantity": 1}], key="ship-1")
    assert a.status_code == b.status_code == 201 and a.json()["id"] == b.json()["id"]
    got = call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()
    assert got["lines"][0]["shipped"] == 1
    assert len(call(stack, owner, "GET", "/v1/erp/shipments").json()["items"]) == 1
    assert_inventory_invariants(stack, owner)


@pytest.mark.parametrize("lines,field", [
    ([{"product_id": "0" * 24, "quantity": 1}], "lines[0]"),
    ([{"quantity": 1}], "lines[0]"),
    ("x", "lines"),
    ([], "lines"),
])
def test_a_bad_shipment_is_422_and_ships_nothing(stack, owner, lines, field):
    order = confirmed_order(stack, owner, total_qty=2)
    product_id = order["lines"][0]["product_id"]
    if lines and isinstance(lines, list) and "product_id" not in lines[0]:
        pass
    for bad in ([{"product_id": product_id, "quantity": 1.5}], [{"product_id": product_id, "quantity": 0}]):
        assert "lines[0]" in [e["field"] for e in check_problem(ship(stack, owner, order, bad), 422)["errors"]]
    r = ship(stack, owner, order, lines)
    assert field in [e["field"] for e in check_problem(r, 422)["errors"]]
    assert call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()["lines"][0]["shipped"] == 0
    keeper = user_session(stack, owner, ["warehouse"])
    assert ship(stack, keeper, order, [{"product_id": product_id, "quantity": 1}]).status_code == 201
    other = signup(stack)
    check_problem(ship(stack, other, order, [{"product_id": product_id, "quantity": 1}]), 404)
    assert_inventory_invariants(stack, owner)


# ---------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------

def test_stock_valuation_equals_the_inventory_account(stack, owner):
    w = make_warehouse(stack, owner)
    a, b = make_product(stack, owner), make_product(stack, owner)
    receive(stack, owner, a, w, 3, 101)
    receive(stack, owner, b, w, 2, 50)
    order = make_order(stack, owner, w, [line(a, 1, 300)])
    assert act(stack, owner, order, "confirm").status_code == 200
    assert ship(stack, owner, order, [{"product_id": a["id"], "quantity": 1}]).status_code == 201
    r = call(stack, owner, "GET", "/v1/erp/reports/stock-valuation")
    assert r.status_code == 200, r.text
    body = r.json()
    values = {i["product_id"]: (i["on_hand"], i["value"]["amount"]) for i in body["items"]}
    assert values == {a["id"]: (2, 202), b["id"]: (2, 100)}, values
    assert body["totals"] == [{"currency": "EUR", "stock": money(302), "inventory_account": money(302),
                               "equal": True}]
    assert_inventory_invariants(stack, owner)


def test_receivables_age_by_days_past_due(stack, owner):
    import datetime
    first = confirmed_order(stack, owner)   # 24.00 open
    inv1 = act(stack, owner, first, "invoice").json()
    second = confirmed_order(stack, owner)
    inv2 = act(stack, owner, second, "invoice").json()
    assert pay(stack, owner, second, 400).status_code == 201  # 20.00 open
    due = datetime.datetime.strptime(inv1["due_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    now = call(stack, owner, "GET", "/v1/erp/reports/ar-aging").json()
    assert now["buckets"] == {"current": 4400, "1_30": 0, "31_60": 0, "61_90": 0, "90_plus": 0}
    assert now["total"] == money(4400)
    later = (due + datetime.timedelta(days=45)).strftime("%Y-%m-%d")
    aged = call(stack, owner, "GET", "/v1/erp/reports/ar-aging", params={"at": later}).json()
    assert aged["buckets"]["31_60"] == 4400, aged
    assert {i["number"]: i["open"]["amount"] for i in aged["invoices"]} == {
        inv1["number"]: 2400, inv2["number"]: 2000}
    check_problem(call(stack, owner, "GET", "/v1/erp/reports/ar-aging", params={"at": "soon"}), 422)
    keeper = user_session(stack, owner, ["warehouse"])
    check_problem(call(stack, keeper, "GET", "/v1/erp/reports/ar-aging"), 403)


def test_lines_name_each_product_once_in_the_orders_currency(stack, owner):
    w = make_warehouse(stack, owner)
    p = make_product(stack, owner)
    dollars = make_product(stack, owner, price=money(100, "USD"))
    r = call(stack, owner, "POST", "/v1/erp/orders", json={
        "warehouse_id": w["id"], "currency": "EUR", "lines": [line(dollars, 1, 100)]})
    assert "lines[0].product_id" in [e["field"] for e in check_problem(r, 422)["errors"]]
    r = call(stack, owner, "POST", "/v1/erp/orders", json={
        "warehouse_id": w["id"], "currency": "EUR", "lines": [line(p, 1, 100), line(p, 2, 100)]})
    assert "lines[1].product_id" in [e["field"] for e in check_problem(r, 422)["errors"]]


def test_a_cancelled_order_neither_ships_nor_invoices(stack, owner):
    order = confirmed_order(stack, owner)
    product_id = order["lines"][0]["product_id"]
    assert act(stack, owner, order, "cancel").status_code == 200
    check_problem(ship(stack, owner, order, [{"product_id": product_id, "quantity": 1}]), 409)
    check_problem(act(stack, owner, order, "invoice"), 409)
    assert call(stack, owner, "GET", f"/v1/erp/orders/{order['id']}").json()["lines"][0]["shipped"] == 0
    assert_inventory_invariants(stack, owner)
