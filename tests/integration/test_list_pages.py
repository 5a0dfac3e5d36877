"""Lists that stay fast however many records a tenant has: a list in
created_at order pages through list buckets (about 64 records each, read by
equality), so these tests cross bucket boundaries, filter rarely enough
that a page runs out of its bucket budget, and write one tenant from several
threads and processes. Every record must be listed exactly once, in
creation order."""

import threading
import time

import pytest
import requests

from conftest import HTTP_TIMEOUT_S, check_problem, sanitizer_hits, signup

LEADS = "/v1/crm/leads"
BUCKET = 64
N = 150  # three buckets


def call(method, url, **kw):
    """A request; a 429 is waited out (these tests send many quickly)."""
    kw.setdefault("timeout", HTTP_TIMEOUT_S)
    for _ in range(50):
        r = requests.request(method, url, **kw)
        if r.status_code != 429:
            return r
        time.sleep(float(r.headers.get("Retry-After", "1")))
    return r


def post_leads(base_url, acct, n, prefix):
    """n leads, in order; a 429 is waited out (the tests post quickly)."""
    made = []
    for i in range(n):
        r = call("POST", base_url + LEADS, headers=acct.headers,
                 json={"name": f"{prefix} {i}", "email": f"{prefix.lower()}-{i}@example.com"})
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    return made


def walk(base_url, acct, limit, max_pages=100, **params):
    items, pages, cursor = [], [], None
    for _ in range(max_pages):
        p = dict(params, limit=limit)
        if cursor:
            p["cursor"] = cursor
        r = call("GET", base_url + LEADS, headers=acct.headers, params=p)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(len(body["items"]))
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items, pages
    pytest.fail("more pages than expected")


@pytest.fixture(scope="module")
def many(stack):
    acct = signup(stack)
    return acct, post_leads(stack.base_url, acct, N, "Page")


def test_newest_first_across_buckets_lists_every_lead_once(stack, many):
    acct, made = many
    items, pages = walk(stack.base_url, acct, 50)
    assert [i["id"] for i in items] == list(reversed(made))
    assert pages == [50, 50, 50]


def test_oldest_first_across_buckets_lists_every_lead_once(stack, many):
    acct, made = many
    items, pages = walk(stack.base_url, acct, 40, sort="created_at")
    assert [i["id"] for i in items] == made
    assert pages == [40, 40, 40, 30]


def test_pages_of_one_and_of_two_hundred(stack, many):
    acct, made = many
    items, _ = walk(stack.base_url, acct, 200)
    assert [i["id"] for i in items] == list(reversed(made))
    items, pages = walk(stack.base_url, acct, 1, max_pages=N + 1)
    assert [i["id"] for i in items] == list(reversed(made)) and set(pages) == {1}


def test_a_cursor_of_another_sort_or_list_is_400(stack, many):
    acct, _ = many
    r = call("GET", stack.base_url + LEADS, headers=acct.headers, params={"limit": 10})
    cursor = r.json()["next_cursor"]
    for params in ({"cursor": cursor, "sort": "created_at"}, {"cursor": cursor, "sort": "name"},
                   {"cursor": cursor, "email": "page-1@example.com"}):
        r = call("GET", stack.base_url + LEADS, headers=acct.headers, params=params)
        check_problem(r, 400, "malformed-request")


def test_another_tenants_pages_hold_none_of_these(stack, many):
    acct, made = many
    other = signup(stack)
    theirs = post_leads(stack.base_url, other, 3, "Theirs")
    items, _ = walk(stack.base_url, other, 50)
    assert [i["id"] for i in items] == list(reversed(theirs))
    mine, _ = walk(stack.base_url, acct, 200)
    assert not set(theirs) & {i["id"] for i in mine}


def buckets_of(stack, acct):
    """bucket number -> the ids of the tenant's leads stored in it."""
    out = {}
    for d in stack.mongo.leads.find({"tenant_id": acct.tenant_oid}):
        tid, n = d["_b"].split(":")
        assert tid == acct.tenant_id
        out.setdefault(int(n), []).append(str(d["_id"]))
    return out


def test_one_writer_fills_buckets_of_64_in_order(stack, many):
    acct, made = many
    buckets = buckets_of(stack, acct)
    assert sorted(buckets) == [0, 1, 2]
    assert [len(buckets[n]) for n in (0, 1, 2)] == [64, 64, N - 128]
    assert set(buckets[0]) == set(made[:64])
    assert set(buckets[1]) == set(made[64:128])


def test_concurrent_creates_are_listed_once_in_bounded_buckets(stack):
    acct = signup(stack)
    made, errors = [], []

    def worker(k):
        try:
            made.extend(post_leads(stack.base_url, acct, 25, f"Conc{k}"))
        except AssertionError as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    buckets = buckets_of(stack, acct)
    # one process: 64 of its own per bucket, give or take the threads racing
    assert max(len(v) for v in buckets.values()) <= 64 + 8, {k: len(v) for k, v in buckets.items()}
    items, _ = walk(stack.base_url, acct, 50)
    assert sorted(i["id"] for i in items) == sorted(made)
    assert len(items) == 200


def test_three_processes_writing_one_tenant_list_every_lead_once(stack, trellis):
    env = trellis.env(rate_limit_user_rps=100000, rate_limit_user_burst=100000,
                      rate_limit_rps=100000, rate_limit_burst=100000)
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0, run
    db = env["TRELLIS_MONGO_URI"].rsplit("/", 1)[1]
    procs = []
    for _ in range(3):
        p = trellis.start("serve", env=trellis.env(db=db, **{
            "rate_limit_user_rps": 100000, "rate_limit_user_burst": 100000,
            "rate_limit_rps": 100000, "rate_limit_burst": 100000}))
        p.wait_ready()
        procs.append(p)
    acct = signup(procs[0])
    made = {0: [], 1: [], 2: []}
    for i in range(150):
        k = (i // 10) % 3  # runs of ten through each process in turn
        made[k] += post_leads(procs[k].base_url, acct, 1, f"P{k}-{i}")
    items, _ = walk(procs[1].base_url, acct, 50)
    listed = [i["id"] for i in items]
    assert sorted(listed) == sorted(made[0] + made[1] + made[2])
    for k in range(3):  # each process's leads keep their order, newest first
        assert [i for i in listed if i in made[k]] == list(reversed(made[k]))
    mdb = trellis.db(db)
    sizes = {}
    for d in mdb.leads.find({"tenant_id": acct.tenant_oid}):
        sizes[d["_b"]] = sizes.get(d["_b"], 0) + 1
    assert max(sizes.values()) <= 3 * 64, sizes
    for p in procs:
        hits = sanitizer_hits(p.output())
        assert not hits, hits


def test_a_rare_filter_answers_short_pages_that_still_reach_every_match(stack, trellis):
    env = trellis.env(list_scan_buckets=1, rate_limit_user_rps=100000, rate_limit_user_burst=100000,
                      rate_limit_rps=100000, rate_limit_burst=100000)
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0, run
    proc = trellis.start("serve", env=env)
    proc.wait_ready()
    acct = signup(proc)
    made = post_leads(proc.base_url, acct, N, "Rare")
    lost = [made[5], made[100], made[140]]
    for lead_id in lost:
        r = requests.patch(proc.base_url + f"{LEADS}/{lead_id}", headers=acct.headers,
                           json={"status": "lost", "lost_reason": "no budget"}, timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text
    items, pages = walk(proc.base_url, acct, 50, status="lost")
    assert [i["id"] for i in items] == list(reversed(lost))
    # one bucket per page: the three buckets answer 1, 1 and 1 lost lead
    assert pages == [1, 1, 1], pages
    hits = sanitizer_hits(proc.output())
    assert not hits, hits
