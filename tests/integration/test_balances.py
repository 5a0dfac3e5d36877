"""Balances (/v1/balances/{key}): a tenant's running balances on the
platform's registers. Movements are immutable and gapless per balance, carry
the balance after them, never take it below zero, are posted once per
operation id, and are corrected only by reversing movements - across
several server processes at once."""

import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import HTTP_TIMEOUT_S, check_problem, sanitizer_hits, signup, user_session
from test_exact_writes import NO_RATE_LIMITS, Trio


def key():
    return f"credits-{secrets.token_hex(4)}"


def move(target, who, k, amount, op=None, **extra):
    """POST a movement; a 429 (these tests post quickly) is waited out."""
    body = {"amount": amount, "operation_id": op or secrets.token_hex(8)}
    body.update(extra)
    for _ in range(50):
        r = requests.post(f"{target.base_url}/v1/balances/{k}/movements", json=body,
                          headers=who.headers, timeout=60)
        if r.status_code != 429:
            return r
        time.sleep(float(r.headers.get("Retry-After", "1")))
    return r


def get(target, who, path):
    return requests.get(target.base_url + path, headers=who.headers, timeout=HTTP_TIMEOUT_S)


def walk(target, who, k, limit=50):
    items, cursor = [], None
    for _ in range(1000):
        params = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = requests.get(f"{target.base_url}/v1/balances/{k}/movements", params=params,
                         headers=who.headers, timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return items
    pytest.fail("too many pages")


def test_a_movement_is_201_with_the_balance_after_it(stack, account):
    k = key()
    r = move(stack, account, k, 100, op="first", memo="opening credit")
    assert r.status_code == 201, r.text
    m = r.json()
    assert {k2: m[k2] for k2 in ("key", "seq", "amount", "balance", "operation_id", "memo", "reverses")} == {
        "key": k, "seq": 1, "amount": 100, "balance": 100, "operation_id": "first",
        "memo": "opening credit", "reverses": None}
    assert m["at"].endswith("Z")
    assert get(stack, account, f"/v1/balances/{k}").json() == {"key": k, "balance": 100, "seq": 1}
    assert get(stack, account, f"/v1/balances/{k}/movements/1").json() == m


def test_an_unused_balance_is_zero(stack, account):
    assert get(stack, account, f"/v1/balances/{key()}").json()["balance"] == 0


def test_below_zero_is_409_with_the_balance_and_writes_nothing(stack, account):
    k = key()
    assert move(stack, account, k, 100).status_code == 201
    r = move(stack, account, k, -150)
    body = check_problem(r, 409, "insufficient-balance")
    assert body["balance"] == 100
    assert get(stack, account, f"/v1/balances/{k}").json() == {"key": k, "balance": 100, "seq": 1}
    assert move(stack, account, k, -100).json()["balance"] == 0


def test_the_same_operation_is_posted_once(stack, account):
    k = key()
    first = move(stack, account, k, 40, op="op-1")
    assert first.status_code == 201
    again = move(stack, account, k, 40, op="op-1")
    assert again.status_code == 200 and again.json() == first.json()
    check_problem(move(stack, account, k, 41, op="op-1"), 409, "conflict")
    check_problem(move(stack, account, key(), 40, op="op-1"), 409, "conflict")
    assert get(stack, account, f"/v1/balances/{k}").json()["seq"] == 1


def test_a_reversal_is_posted_once_and_cannot_itself_be_reversed(stack, account):
    k = key()
    move(stack, account, k, 70)
    r = requests.post(f"{stack.base_url}/v1/balances/{k}/movements/1/reverse", headers=account.headers,
                      timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 201, r.text
    assert (r.json()["seq"], r.json()["amount"], r.json()["balance"], r.json()["reverses"]) == (2, -70, 0, 1)
    again = requests.post(f"{stack.base_url}/v1/balances/{k}/movements/1/reverse", headers=account.headers,
                          timeout=HTTP_TIMEOUT_S)
    assert again.status_code == 200 and again.json() == r.json()
    check_problem(requests.post(f"{stack.base_url}/v1/balances/{k}/movements/2/reverse",
                                headers=account.headers, timeout=HTTP_TIMEOUT_S), 422)
    check_problem(requests.post(f"{stack.base_url}/v1/balances/{k}/movements/9/reverse",
                                headers=account.headers, timeout=HTTP_TIMEOUT_S), 404)


def test_a_reversal_below_zero_is_refused(stack, account):
    k = key()
    move(stack, account, k, 50)
    move(stack, account, k, -30)
    r = requests.post(f"{stack.base_url}/v1/balances/{k}/movements/1/reverse", headers=account.headers,
                      timeout=HTTP_TIMEOUT_S)
    assert check_problem(r, 409, "insufficient-balance")["balance"] == 20


@pytest.mark.parametrize("body,field", [
    ({"amount": 0, "operation_id": "x"}, "amount"),
    ({"amount": 1.5, "operation_id": "x"}, "amount"),
    ({"amount": "5", "operation_id": "x"}, "amount"),
    ({"amount": 10 ** 16, "operation_id": "x"}, "amount"),
    ({"operation_id": "x"}, "amount"),
    ({"amount": 5}, "operation_id"),
    ({"amount": 5, "operation_id": ""}, "operation_id"),
    ({"amount": 5, "operation_id": "x" * 101}, "operation_id"),
    ({"amount": 5, "operation_id": "a\nb"}, "operation_id"),
    ({"amount": 5, "operation_id": "x", "memo": 3}, "memo"),
    ({"amount": 5, "operation_id": "x", "balance": 99}, "balance"),
])
def test_bad_movements_are_422_and_change_nothing(stack, account, body, field):
    k = key()
    r = requests.post(f"{stack.base_url}/v1/balances/{k}/movements", json=body, headers=account.headers,
                      timeout=HTTP_TIMEOUT_S)
    body = check_problem(r, 422)
    assert field in {e["field"] for e in body["errors"]}
    assert get(stack, account, f"/v1/balances/{k}").json()["seq"] == 0


@pytest.mark.parametrize("bad", ["UPPER", "a" * 101, "a*star", "a+plus"])
def test_a_key_no_balance_can_have_is_404(stack, account, bad):
    # the router itself refuses some characters in a path (400)
    check_problem(get(stack, account, f"/v1/balances/{bad}"), (400, 404))
    check_problem(requests.post(f"{stack.base_url}/v1/balances/{bad}/movements",
                                json={"amount": 1, "operation_id": "x"}, headers=account.headers,
                                timeout=HTTP_TIMEOUT_S), (400, 404))
    assert stack.mongo["register_moves"].count_documents({"tenant_id": account.tenant_oid}) == 0


def test_balances_need_their_permissions(stack, account):
    k = key()
    move(stack, account, k, 5)
    sales = user_session(stack, account, ["sales"])
    check_problem(get(stack, sales, f"/v1/balances/{k}"), 403, "forbidden")
    check_problem(move(stack, sales, k, 5), 403, "forbidden")
    r = stack.post("/v1/roles", headers=account.headers,
                   json={"name": f"reader-{secrets.token_hex(3)}", "permissions": ["system.balances.read"]})
    assert r.status_code == 201, r.text
    reader = user_session(stack, account, [r.json()["name"]])
    assert get(stack, reader, f"/v1/balances/{k}").json()["balance"] == 5
    check_problem(move(stack, reader, k, 5), 403, "forbidden")
    assert get(stack, account, f"/v1/balances/{k}").json()["balance"] == 5


def test_another_tenants_balance_of_the_same_key_is_its_own(stack, account):
    k = key()
    move(stack, account, k, 500, op="shared-op")
    other = signup(stack)
    assert get(stack, other, f"/v1/balances/{k}").json() == {"key": k, "balance": 0, "seq": 0}
    check_problem(get(stack, other, f"/v1/balances/{k}/movements/1"), 404)
    assert get(stack, other, f"/v1/balances/{k}/movements").json()["items"] == []
    r = move(stack, other, k, -1, op="shared-op")  # its own op ids, its own floor
    check_problem(r, 409, "insufficient-balance")
    assert move(stack, other, k, 7, op="shared-op").status_code == 201
    assert get(stack, account, f"/v1/balances/{k}").json()["balance"] == 500


def test_movements_page_newest_first_across_snapshots(stack, account):
    k = key()
    for i in range(1, 131):  # two snapshots (64 and 128) and a partial bucket
        r = move(stack, account, k, i)
        assert r.status_code == 201, r.text
    items = walk(stack, account, k)
    assert [m["seq"] for m in items] == list(range(130, 0, -1))
    assert items[0]["balance"] == 130 * 131 // 2
    assert stack.mongo["register_snaps"].count_documents({"key": f"balances/{k}", "below": {"$in": [64, 128]}}) == 2
    r = requests.get(f"{stack.base_url}/v1/balances/{k}/movements", params={"cursor": "x"},
                     headers=account.headers, timeout=HTTP_TIMEOUT_S)
    check_problem(r, 400)


# ---------------------------------------------------------------------------
# three processes at once
# ---------------------------------------------------------------------------

@pytest.fixture
def trio(trellis):
    t = Trio(trellis)
    yield t
    t.check_logs()


def test_a_thousand_concurrent_movements_over_three_processes_never_go_below_zero(trio):
    owner = signup(trio.procs[0])
    k = key()
    rng = random.Random(7)
    plan = [(i, rng.choice([10, 10, 25, -15, -20, -40])) for i in range(1000)]

    def post(item):
        i, amount = item
        proc = trio.procs[i % 3]
        r = move(proc, owner, k, amount, op=f"op-{i}")
        return i, amount, r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(post, plan))
    statuses = {code for _, _, code, _ in results}
    assert statuses <= {201, 409}, statuses
    refused = [(i, body) for i, _, code, body in results if code == 409]
    for i, body in refused:
        assert body["type"].endswith("/insufficient-balance") and body["balance"] >= 0, body
    accepted = {f"op-{i}": amount for i, amount, code, _ in results if code == 201}
    assert len(accepted) + len(refused) == 1000
    assert refused, "the plan was meant to hit the floor"

    state = get(trio.procs[1], owner, f"/v1/balances/{k}").json()
    assert state["seq"] == len(accepted)
    assert state["balance"] == sum(accepted.values())
    items = walk(trio.procs[2], owner, k, limit=200)
    assert [m["seq"] for m in items] == list(range(len(accepted), 0, -1))
    running = 0
    for m in reversed(items):  # every sequence: the balance after it, never below zero
        assert m["operation_id"] in accepted and m["amount"] == accepted[m["operation_id"]]
        running += m["amount"]
        assert m["balance"] == running and running >= 0, m
    assert {m["operation_id"] for m in items} == set(accepted)


def test_one_operation_posted_at_once_through_three_processes_is_one_movement(trio):
    owner = signup(trio.procs[0])
    k = key()
    barrier = threading.Barrier(12)
    out = []

    def post(i):
        barrier.wait()
        out.append(move(trio.procs[i % 3], owner, k, 33, op="the-one"))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(r.status_code for r in out)
    assert codes.count(201) == 1 and codes.count(200) == 11, codes
    assert len({r.json()["seq"] for r in out}) == 1
    assert get(trio.procs[2], owner, f"/v1/balances/{k}").json() == {"key": k, "balance": 33, "seq": 1}
