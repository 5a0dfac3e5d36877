"""ERP stock exact across processes: three server processes on one
database and one Redis, writing off one product's stock at once with its
ids spelled every way the API accepts."""

import requests
from bson import ObjectId

from conftest import check_problem, signup
from erp_support import assert_inventory_invariants, make_product, make_warehouse, receive, stock
from test_exact_writes import race, spellings, statuses, trio  # noqa: F401 (fixture)


class At:
    """One of the trio's processes as a target of the erp_support helpers."""

    def __init__(self, proc):
        self.base_url = proc.url("").rstrip("/")


def test_200_write_offs_of_one_against_100_in_stock_exactly_100_land(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    product, warehouse = make_product(at[0], owner), make_warehouse(at[1], owner)
    receive(at[2], owner, product, warehouse, 100, 37)
    pids, wids = spellings(product["id"]), spellings(warehouse["id"])

    def write_off(i):
        body = {"kind": "write_off", "product_id": pids[i % 3], "warehouse_id": wids[(i // 3) % 3],
                "quantity": 1, "reason": f"racer {i}"}
        return lambda: requests.post(trio.url(i, "/v1/erp/stock/moves"), json=body,
                                     headers=owner.headers, timeout=120)

    got = race([write_off(i) for i in range(200)])
    codes = statuses(got)
    assert codes.count(201) == 100, codes
    assert codes.count(409) == 100, codes
    for r in got:
        if r.status_code == 409:
            check_problem(r, 409, "insufficient-stock")
    s = stock(at[0], owner, product, warehouse)
    assert (s["on_hand"], s["available"], s["value"]["amount"]) == (0, 0, 0), s
    # every cost came from the state it left: they add up to the receipt exactly
    assert sum(-r.json()["value"]["amount"] for r in got if r.status_code == 201) == 3700
    key = f"erp.stock/{product['id']}/{warehouse['id']}"
    rows = list(trio.mongo["register_moves"].find({"tenant_id": ObjectId(owner.tenant_id), "key": key}))
    assert len(rows) == 101, len(rows)
    assert all(row["a"].get("available", 0) >= 0 for row in rows)
    assert sorted(row["seq"] for row in rows) == list(range(1, 102))
    assert_inventory_invariants(at[1], owner)


def test_sixty_entries_at_once_over_three_processes_chain_without_gap_or_fork(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    today = __import__("datetime").date.today().isoformat()

    def post(i):
        body = {"date": today, "memo": f"racer {i}", "currency": "EUR",
                "lines": [{"account_code": "1100", "debit": 100 + i},
                          {"account_code": "3000", "credit": 100 + i}]}
        return lambda: requests.post(trio.url(i, "/v1/erp/journal"), json=body,
                                     headers=owner.headers, timeout=120)

    got = race([post(i) for i in range(60)])
    assert statuses(got) == [201] * 60, statuses(got)
    entries = [r.json() for r in got]
    assert sorted(e["seq"] for e in entries) == list(range(1, 61))
    by_seq = {e["seq"]: e for e in entries}
    for seq in range(2, 61):  # one chain: each follows the hash of the one before
        assert by_seq[seq]["prev_hash"] == by_seq[seq - 1]["hash"], seq
    v = requests.get(trio.url(1, "/v1/erp/ledger/verify"), headers=owner.headers, timeout=60).json()
    assert v == {"ok": True, "entries": 60, "head": by_seq[60]["hash"]}, v
    tb = requests.get(trio.url(2, "/v1/erp/reports/trial-balance"), headers=owner.headers,
                      timeout=60).json()
    assert tb["total_debit"] == tb["total_credit"] == sum(100 + i for i in range(60))


def test_one_entry_reversed_by_thirty_requests_at_once_is_reversed_once(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    today = __import__("datetime").date.today().isoformat()
    r = requests.post(trio.url(0, "/v1/erp/journal"), headers=owner.headers, timeout=30, json={
        "date": today, "memo": "to reverse", "currency": "EUR",
        "lines": [{"account_code": "6000", "debit": 5}, {"account_code": "1000", "credit": 5}]})
    assert r.status_code == 201, r.text
    names = spellings(r.json()["id"])
    got = race([lambda i=i: requests.post(trio.url(i, f"/v1/erp/journal/{names[i % 3]}/reverse"),
                                          headers=owner.headers, timeout=120) for i in range(30)])
    codes = statuses(got)
    assert codes.count(201) == 1 and codes.count(409) == 29, codes
    v = requests.get(trio.url(1, "/v1/erp/ledger/verify"), headers=owner.headers, timeout=60).json()
    assert v["ok"] is True and v["entries"] == 2, v


def test_fifty_orders_confirmed_at_once_reserve_only_what_the_stock_allows(trio):
    """Each order wants 1 of A and 2 of B; A has 30, B has 40: 20 orders
    fit, the other 30 are refused and reserve nothing."""
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    w = make_warehouse(at[0], owner)
    a, b = make_product(at[1], owner), make_product(at[2], owner)
    receive(at[0], owner, a, w, 30, 10)
    receive(at[1], owner, b, w, 40, 10)
    ids = []
    for i in range(50):
        r = requests.post(trio.url(i, "/v1/erp/orders"), headers=owner.headers, timeout=30, json={
            "warehouse_id": w["id"], "currency": "EUR",
            "lines": [{"product_id": a["id"], "quantity": 1, "unit_price": {"amount": 100, "currency": "EUR"}},
                      {"product_id": b["id"], "quantity": 2, "unit_price": {"amount": 100, "currency": "EUR"}}]})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    got = race([lambda i=i: requests.post(
        trio.url(i, f"/v1/erp/orders/{spellings(ids[i])[i % 3]}/confirm"), headers=owner.headers,
        timeout=120) for i in range(50)])
    codes = statuses(got)
    assert codes.count(200) == 20 and codes.count(409) == 30, codes
    for r in got:
        if r.status_code == 409:
            check_problem(r, 409, "insufficient-stock")
    sa, sb = stock(at[0], owner, a, w), stock(at[0], owner, b, w)
    assert (sa["reserved"], sa["available"]) == (20, 10), sa
    assert (sb["reserved"], sb["available"]) == (40, 0), sb
    statuses_now = [requests.get(trio.url(0, f"/v1/erp/orders/{oid}"), headers=owner.headers,
                                 timeout=30).json()["status"] for oid in ids]
    assert statuses_now.count("confirmed") == 20 and statuses_now.count("draft") == 30
    assert_inventory_invariants(at[2], owner)


def _confirmed_orders(trio, at, owner, n):
    w = make_warehouse(at[0], owner)
    p = make_product(at[1], owner)
    receive(at[2], owner, p, w, n, 10)
    ids = []
    for i in range(n):
        r = requests.post(trio.url(i, "/v1/erp/orders"), headers=owner.headers, timeout=30, json={
            "warehouse_id": w["id"], "currency": "EUR",
            "lines": [{"product_id": p["id"], "quantity": 1, "unit_price": {"amount": 500, "currency": "EUR"}}]})
        assert r.status_code == 201, r.text
        c = requests.post(trio.url(i, f"/v1/erp/orders/{r.json()['id']}/confirm"),
                          headers=owner.headers, timeout=30)
        assert c.status_code == 200, c.text
        ids.append(r.json()["id"])
    return ids


def test_fifty_invoices_at_once_are_numbered_without_gap_or_duplicate(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    ids = _confirmed_orders(trio, at, owner, 50)
    got = race([lambda i=i: requests.post(
        trio.url(i, f"/v1/erp/orders/{spellings(ids[i])[i % 3]}/invoice"), headers=owner.headers,
        timeout=120) for i in range(50)])
    assert statuses(got) == [201] * 50, statuses(got)
    year = __import__("datetime").date.today().year
    numbers = sorted(r.json()["number"] for r in got)
    assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, 51)], numbers
    assert_inventory_invariants(at[1], owner)


def test_one_payment_sent_twenty_times_at_once_is_one_payment(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    [oid] = _confirmed_orders(trio, at, owner, 1)
    assert requests.post(trio.url(0, f"/v1/erp/orders/{oid}/invoice"), headers=owner.headers,
                         timeout=30).status_code == 201
    names = spellings(oid)
    headers = dict(owner.headers, **{"Idempotency-Key": "the-one-payment"})
    got = race([lambda i=i: requests.post(
        trio.url(i, f"/v1/erp/orders/{names[i % 3]}/payments"), headers=headers, timeout=120,
        json={"amount": {"amount": 500, "currency": "EUR"}, "method": "card"}) for i in range(20)])
    codes = statuses(got)
    # one is made; the others answer with it, or 409 while it is still being made
    assert set(codes) <= {201, 409} and codes.count(201) >= 1, codes
    assert len({r.json()["id"] for r in got if r.status_code == 201}) == 1
    pays = requests.get(trio.url(1, "/v1/erp/payments"), headers=owner.headers, timeout=30).json()
    assert len(pays["items"]) == 1, pays
    order = requests.get(trio.url(2, f"/v1/erp/orders/{oid}"), headers=owner.headers, timeout=30).json()
    assert order["status"] == "paid"
    import time
    time.sleep(0.5)  # published once the response is out
    stream = trio.trellis.stack.redis.xrange(f"t:{{{owner.tenant_id}}}:events")
    paid = [f for _, f in stream if '"event":"erp.order.paid"' in f.get("b", "")]
    assert len(paid) == 1, [f for _, f in stream][:3]
    assert_inventory_invariants(at[0], owner)


def test_twenty_shipments_of_one_against_ten_ordered_ship_exactly_ten(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    w = make_warehouse(at[0], owner)
    p = make_product(at[1], owner)
    receive(at[2], owner, p, w, 12, 50)
    r = requests.post(trio.url(0, "/v1/erp/orders"), headers=owner.headers, timeout=30, json={
        "warehouse_id": w["id"], "currency": "EUR",
        "lines": [{"product_id": p["id"], "quantity": 10, "unit_price": {"amount": 90, "currency": "EUR"}}]})
    oid = r.json()["id"]
    assert requests.post(trio.url(1, f"/v1/erp/orders/{oid}/confirm"), headers=owner.headers,
                         timeout=30).status_code == 200
    names, pids = spellings(oid), spellings(p["id"])
    got = race([lambda i=i: requests.post(
        trio.url(i, f"/v1/erp/orders/{names[i % 3]}/shipments"), headers=owner.headers, timeout=120,
        json={"lines": [{"product_id": pids[(i // 3) % 3], "quantity": 1}]}) for i in range(20)])
    codes = statuses(got)
    assert codes.count(201) == 10 and codes.count(409) == 10, codes
    s = stock(at[0], owner, p, w)
    assert (s["on_hand"], s["reserved"], s["available"]) == (2, 0, 2), s
    order = requests.get(trio.url(2, f"/v1/erp/orders/{oid}"), headers=owner.headers, timeout=30).json()
    assert order["lines"][0]["shipped"] == 10 and order["status"] == "shipped", order
    assert_inventory_invariants(at[1], owner)


def test_twenty_receipts_of_one_against_ten_ordered_receive_exactly_ten(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    product, warehouse = make_product(at[0], owner), make_warehouse(at[1], owner)
    supplier = requests.post(trio.url(2, "/v1/erp/suppliers"), headers=owner.headers, timeout=30,
                             json={"name": "Racing Parts"}).json()
    po = requests.post(trio.url(0, "/v1/erp/purchase-orders"), headers=owner.headers, timeout=30,
                       json={"supplier_id": supplier["id"], "warehouse_id": warehouse["id"],
                             "currency": "EUR", "lines": [{"product_id": product["id"],
                                                           "quantity": 10,
                                                           "unit_cost": {"amount": 40,
                                                                         "currency": "EUR"}}]})
    assert po.status_code == 201, po.text
    po = po.json()
    pos, pids = spellings(po["id"]), spellings(product["id"])

    def receipt(i):
        body = {"lines": [{"product_id": pids[(i // 3) % 3], "quantity": 1}]}
        return lambda: requests.post(trio.url(i, f"/v1/erp/purchase-orders/{pos[i % 3]}/receive"),
                                     json=body, headers=owner.headers, timeout=120)

    got = race([receipt(i) for i in range(20)])
    codes = statuses(got)
    assert codes.count(201) == 10 and codes.count(409) == 10, codes
    s = stock(at[1], owner, product, warehouse)
    assert (s["on_hand"], s["available"], s["value"]["amount"]) == (10, 10, 400), s
    stored = requests.get(trio.url(2, f"/v1/erp/purchase-orders/{po['id']}"), headers=owner.headers,
                          timeout=30).json()
    assert stored["status"] == "received" and stored["lines"][0]["received"] == 10, stored
    tb = requests.get(trio.url(0, "/v1/erp/reports/trial-balance"), headers=owner.headers,
                      timeout=30).json()
    payables = [a for a in tb["accounts"] if a["code"] == "2000"]
    assert payables and payables[0]["credit"] == 400, tb
    assert_inventory_invariants(at[2], owner)


def test_work_orders_released_at_once_reserve_only_what_the_stock_allows(trio):
    at = [At(p) for p in trio.procs]
    owner = signup(at[0])
    warehouse = make_warehouse(at[0], owner)
    table, leg = make_product(at[1], owner), make_product(at[2], owner)
    r = requests.post(trio.url(0, "/v1/erp/boms"), headers=owner.headers, timeout=30,
                      json={"product_id": table["id"], "components": [{"product_id": leg["id"], "quantity": 4}]})
    assert r.status_code == 201, r.text
    receive(at[1], owner, leg, warehouse, 10, 100)
    wos = []
    for i in range(6):  # each plans fine: planning reserves nothing
        r = requests.post(trio.url(i, "/v1/erp/work-orders"), headers=owner.headers, timeout=30,
                          json={"product_id": table["id"], "warehouse_id": warehouse["id"], "quantity": 1})
        assert r.status_code == 201, r.text
        wos.append(r.json())
    ids = [spellings(w["id"])[i % 3] for i, w in enumerate(wos)]
    got = race([lambda i=i: requests.post(trio.url(i, f"/v1/erp/work-orders/{ids[i]}/release"),
                                          headers=owner.headers, timeout=120) for i in range(6)])
    codes = statuses(got)
    assert codes.count(200) == 2 and codes.count(409) == 4, codes
    s = stock(at[2], owner, leg, warehouse)
    assert (s["reserved"], s["available"]) == (8, 2), s
    released = [w for w, r in zip(wos, got) if r.status_code == 200]

    # ten completions of one table against the one planned, at once
    wo = released[0]
    got = race([lambda i=i: requests.post(trio.url(i, f"/v1/erp/work-orders/{wo['id']}/complete"),
                                          json={"quantity": 1}, headers=owner.headers, timeout=120)
                for i in range(10)])
    codes = statuses(got)
    assert codes.count(200) == 1 and codes.count(409) == 9, codes
    made = stock(at[0], owner, table, warehouse)
    assert (made["on_hand"], made["value"]["amount"]) == (1, 400), made
    s = stock(at[1], owner, leg, warehouse)
    assert (s["on_hand"], s["reserved"], s["available"]) == (6, 4, 2), s
    assert_inventory_invariants(at[2], owner)
