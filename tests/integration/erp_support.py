"""Helpers of the ERP tests: products, warehouses and moves made through the
API, and the inventory invariants every ERP test ends by asserting."""

import secrets

import requests

from conftest import HTTP_TIMEOUT_S


def call(target, acct, method, path, **kw):
    return requests.request(method, target.base_url + path, headers=acct.headers,
                            timeout=kw.pop("timeout", HTTP_TIMEOUT_S), **kw)


def money(amount, currency="EUR"):
    return {"amount": amount, "currency": currency}


def make_product(target, acct, **fields):
    body = {"sku": f"SKU-{secrets.token_hex(4)}", "name": "Widget", "price": money(1999)}
    body.update(fields)
    r = call(target, acct, "POST", "/v1/erp/products", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def make_warehouse(target, acct, **fields):
    body = {"code": f"W{secrets.token_hex(3)}", "name": "Main warehouse"}
    body.update(fields)
    r = call(target, acct, "POST", "/v1/erp/warehouses", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def move(target, acct, **body):
    return call(target, acct, "POST", "/v1/erp/stock/moves", json=body)


def move_ok(target, acct, **body):
    r = move(target, acct, **body)
    assert r.status_code == 201, r.text
    return r.json()


def receive(target, acct, product, warehouse, quantity, unit_cost, currency="EUR"):
    return move_ok(target, acct, kind="receipt", product_id=product["id"],
                   warehouse_id=warehouse["id"], quantity=quantity,
                   unit_cost=money(unit_cost, currency))


def stock(target, acct, product, warehouse):
    r = call(target, acct, "GET", "/v1/erp/stock",
             params={"product_id": product["id"], "warehouse_id": warehouse["id"]})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) <= 1, items
    if not items:
        return {"on_hand": 0, "reserved": 0, "available": 0, "value": money(0)}
    return items[0]


def all_moves(target, acct, **params):
    return all_pages(target, acct, "/v1/erp/stock/moves", **params)


def all_pages(target, acct, path, **params):
    out, cursor = [], None
    for _ in range(1000):
        q = dict(params, limit=200)
        if cursor:
            q["cursor"] = cursor
        r = call(target, acct, "GET", path, params=q)
        assert r.status_code == 200, r.text
        out += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return out
    raise AssertionError("too many pages")


def assert_erp_checks(target, acct):
    """GET /v1/erp/checks: every invariant holds."""
    r = call(target, acct, "GET", "/v1/erp/checks")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True and all(c["ok"] for c in body["checks"]), body
    assert {c["name"] for c in body["checks"]} == {
        "ledger_balanced", "stock_folds_movements", "inventory_matches_ledger",
        "no_negative_available"}, body
    return body


def fold_work_orders(work_orders, add):
    """Adds what work orders did to the stock through add(product,
    warehouse, quantity, value): each completion consumed its components
    at their cost and brought the product in at that cost plus labour.
    Returns what released ones still hold reserved, by (product, warehouse)."""
    reserved = {}
    for wo in work_orders:
        w = wo["warehouse_id"]
        for done in wo["completions"]:
            for c in done["components"]:
                add(c["product_id"], w, -c["quantity"], -c["cost"]["amount"])
            add(wo["product_id"], w, done["quantity"], done["cost"]["amount"])
        if wo["status"] == "released":
            for c in wo["components"]:
                key = (c["product_id"], w)
                reserved[key] = reserved.get(key, 0) + c["quantity"] - c["consumed"]
    return reserved


def assert_inventory_invariants(target, acct):
    """Every stock balance of the tenant equals the fold of its moves and
    shipments (quantity and value), available = on_hand - reserved, and no available
    is below zero in a warehouse that does not allow it; and the server's
    own checks agree (ledger balanced, stock = inventory account)."""
    assert_erp_checks(target, acct)
    moves = all_moves(target, acct)
    expected = {}

    def add(p, w, q, v):
        e = expected.setdefault((p, w), [0, 0])
        e[0] += q
        e[1] += v

    for m in moves:
        p, w, q, v = m["product_id"], m["warehouse_id"], m["quantity"], m["value"]["amount"]
        sign = -1 if m.get("reverses") else 1
        if m["kind"] == "receipt":
            add(p, w, sign * q, v)
        elif m["kind"] == "write_off":
            add(p, w, -sign * q, v)
        elif m["kind"] == "adjustment":
            add(p, w, sign * q, v)
        elif m["kind"] == "transfer":
            add(p, w, -sign * q, v)
            add(p, m["to_warehouse_id"], sign * q, -v)
    # shipments take stock out of their order's warehouse at its cost
    orders = {}
    for sh in all_pages(target, acct, "/v1/erp/shipments"):
        if sh["order_id"] not in orders:
            orders[sh["order_id"]] = call(target, acct, "GET", f"/v1/erp/orders/{sh['order_id']}").json()
        w = orders[sh["order_id"]]["warehouse_id"]
        for line in sh["lines"]:
            add(line["product_id"], w, -line["quantity"], -line["cost"]["amount"])
    # work orders: each completion consumed its components at their cost and
    # brought the product in at that cost plus labour; what a released one
    # has not consumed is still reserved
    reserved = fold_work_orders(all_pages(target, acct, "/v1/erp/work-orders"), add)
    warehouses = {}
    r = call(target, acct, "GET", "/v1/erp/warehouses", params={"limit": 200})
    for wh in r.json()["items"]:
        warehouses[wh["id"]] = wh
    for (p, w), (q, v) in expected.items():
        r = call(target, acct, "GET", "/v1/erp/stock", params={"product_id": p, "warehouse_id": w})
        assert r.status_code == 200, r.text
        item = r.json()["items"][0]
        assert item["on_hand"] == q, (p, w, item, q)
        assert item["value"]["amount"] == v, (p, w, item, v)
        assert item["available"] == item["on_hand"] - item["reserved"], item
        assert item["reserved"] >= reserved.get((p, w), 0), (item, reserved.get((p, w)))
        if w in warehouses and not warehouses[w]["allow_negative"]:
            assert item["available"] >= 0, item
