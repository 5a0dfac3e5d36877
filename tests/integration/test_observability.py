"""GET /v1/observability: a tenant admin's numbers move when things happen
(webhook attempts, queued and dead jobs, WebSocket connections, events on
the stream), only owners and admins may read them, and a tenant's numbers
never include another's.  Each test runs its own server on its own
database (webhooks may reach the local receivers; WebSocket numbers are
reported every 200 ms), with the session's FerretDB and Redis."""

import json
import time

import pytest
import requests
from websockets.sync.client import connect

from conftest import HTTP_TIMEOUT_S, check_problem, create_user, free_port, signup, user_session
from test_jobs_webhooks import Api, hook, receiver, start_server  # noqa: F401 (fixture)

WAIT_S = 30.0
NON_ADMIN_ROLES = ["manager", "sales", "warehouse", "accountant", "employee"]


def observe(api, acct, query=""):
    r = api.get(acct, "/v1/observability" + query)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(api, acct, what, predicate, timeout=WAIT_S):
    """Polls the caller's numbers until predicate holds; returns them."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = observe(api, acct)
        if predicate(last):
            return last
        time.sleep(0.1)
    pytest.fail(f"{what} never happened; last answer: {json.dumps(last, indent=1)}")


def endpoint(numbers, hook_id):
    found = [e for e in numbers["webhooks"]["endpoints"] if e["id"] == hook_id]
    assert len(found) == 1, numbers["webhooks"]
    return found[0]


def server(trellis, **overrides):
    settings = dict(ws_report_ms=200)
    settings.update(overrides)
    proc, _ = start_server(trellis, **settings)
    return proc, Api(proc)


def open_ws(proc, acct, topics=("admin.users",)):
    ws = connect(f"ws://127.0.0.1:{proc.port}/v1/ws", open_timeout=10, close_timeout=5,
                 compression=None)
    ws.send(json.dumps({"type": "auth", "token": acct.access_token, "topics": list(topics)}))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frame = json.loads(ws.recv(timeout=10))
        if frame.get("type") == "subscribed":
            return ws
        assert frame.get("type") in ("ready",), frame
    pytest.fail("the WebSocket was never subscribed")


def test_a_fresh_tenant_has_every_section_and_nothing_in_it(trellis):
    proc, api = server(trellis)
    owner = signup(api)
    n = observe(api, owner)
    assert n["tenant_id"] == owner.tenant_id
    assert n["window"]["hours"] == 24 and n["window"]["from"] < n["generated_at"]
    assert n["webhooks"] == {"attempts_read": 0, "complete": True, "endpoints": []}
    jobs = n["jobs"]
    assert (jobs["ready"], jobs["delayed"], jobs["depth"], jobs["dead"], jobs["exact"]) == (0, 0, 0, 0, True)
    assert [q["queue"] for q in jobs["queues"]].count("webhooks") == 1
    ws = n["websocket"]
    assert ws["scope"] == "cluster" and ws["connections"] == 0 and ws["lag_max_ms"] is None
    assert ws["report_every_ms"] == 200
    ev = n["events"]
    assert ev["max_len"] == 100000 and ev["max_age_s"] == 86400 and ev["trimmed"] is False
    assert ev["entries"] == (0 if ev["newest_id"] is None else ev["entries"])


def test_a_failing_receiver_lowers_the_success_rate_and_its_job_waits_then_dies(trellis, receiver):
    # a long backoff keeps the failed job in the delayed set long enough to be seen
    proc, api = server(trellis, job_backoff_ms=3000, job_backoff_max_ms=3000, job_max_attempts=2)
    owner = signup(api)
    good, bad = receiver(plan=(200,)), receiver(plan=(500,))
    good_hook = hook(api, owner, good.url)
    bad_hook = hook(api, owner, bad.url)
    create_user(api, owner, ["sales"])
    good.wait_calls(1)
    bad.wait_calls(1)
    n = wait_for(api, owner, "the failed delivery waiting for its retry",
                 lambda n: n["jobs"]["delayed"] == 1)
    assert n["jobs"]["depth"] == n["jobs"]["ready"] + 1 and n["jobs"]["dead"] == 0
    n = wait_for(api, owner, "the failed delivery dead-lettered", lambda n: n["jobs"]["dead"] == 1)
    assert n["jobs"]["delayed"] == 0 and n["jobs"]["ready"] == 0 and n["jobs"]["exact"] is True
    assert len(bad.calls) == 2

    ok = endpoint(n, good_hook["id"])
    assert ok["url"] == good.url and ok["active"] is True and ok["failing_since"] is None
    assert ok["attempts"] == {"delivered": 1, "pending": 0, "failed": 0, "skipped": 0}
    assert ok["success_rate"] == 1.0
    assert 0 <= ok["lag_ms"]["p50"] <= ok["lag_ms"]["p99"] <= ok["lag_ms"]["max"] < 30000
    assert ok["last_success_at"] is not None and ok["last_failure_at"] is None

    failing = endpoint(n, bad_hook["id"])
    assert failing["attempts"] == {"delivered": 0, "pending": 1, "failed": 1, "skipped": 0}
    assert failing["success_rate"] == 0.0 and failing["lag_ms"] is None
    assert failing["failing_since"] is not None and failing["last_failure_at"] >= failing["failing_since"]
    assert failing["last_success_at"] is None
    assert n["webhooks"]["attempts_read"] == 3 and n["webhooks"]["complete"] is True

    # a success after failures moves the rate between the two
    bad.plan = [200]
    create_user(api, owner, ["sales"])
    bad.wait_calls(3)
    # the attempt is logged first and the endpoint's health written just
    # after it: wait for both
    n = wait_for(api, owner, "the second delivery logged and the endpoint healthy again",
                 lambda n: endpoint(n, bad_hook["id"])["attempts"]["delivered"] == 1
                 and endpoint(n, bad_hook["id"])["failing_since"] is None)
    failing = endpoint(n, bad_hook["id"])
    assert failing["success_rate"] == pytest.approx(1 / 3)
    assert failing["failing_since"] is None and failing["last_success_at"] > failing["last_failure_at"]


def test_an_ordered_endpoints_deliveries_waiting_behind_its_head_are_counted(trellis, receiver):
    """Deliveries of an ordered webhook wait in its lane while the first
    retries: queued_in_order counts them (the head included); an unordered
    endpoint shows null."""
    proc, api = server(trellis, job_backoff_ms=500, job_backoff_max_ms=500, job_max_attempts=100)
    owner = signup(api)
    down, plain = receiver(plan=(503,)), receiver(plan=(200,))
    r = api.post(owner, "/v1/webhooks", {"url": down.url, "topics": ["admin.users"], "ordered": True})
    assert r.status_code == 201, r.text
    ordered = r.json()
    unordered = hook(api, owner, plain.url)
    for i in range(3):
        create_user(api, owner, ["sales"], name=f"Queued {i}")
    n = wait_for(api, owner, "three deliveries in the lane",
                 lambda n: endpoint(n, ordered["id"])["queued_in_order"] == 3)
    assert endpoint(n, unordered["id"])["queued_in_order"] is None
    assert {json.loads(c["body"])["data"]["name"] for c in down.calls} == {"Queued 0"}, "only the head went out"
    down.plan = [200]
    wait_for(api, owner, "the lane drained", lambda n: endpoint(n, ordered["id"])["queued_in_order"] == 0)
    assert [json.loads(c["body"])["data"]["name"] for c in down.calls][-3:] == ["Queued 0", "Queued 1", "Queued 2"]


def test_queued_jobs_are_counted_per_tenant(trellis):
    # no job threads: every delivery job stays in the queue's stream
    proc, api = server(trellis, job_workers=0)
    a, b = signup(api), signup(api)
    hook(api, a, "http://127.0.0.1:9/a")
    hook(api, b, "http://127.0.0.1:9/b")
    for _ in range(3):
        create_user(api, a, ["sales"])
    create_user(api, b, ["sales"])
    na = wait_for(api, a, "three of a's jobs queued", lambda n: n["jobs"]["ready"] >= 3)
    nb = wait_for(api, b, "one of b's jobs queued", lambda n: n["jobs"]["ready"] >= 1)
    time.sleep(0.5)
    na, nb = observe(api, a), observe(api, b)
    assert (na["jobs"]["ready"], na["jobs"]["depth"], na["jobs"]["delayed"]) == (3, 3, 0), na["jobs"]
    assert (nb["jobs"]["ready"], nb["jobs"]["depth"]) == (1, 1), nb["jobs"]
    assert na["jobs"]["exact"] and nb["jobs"]["exact"]
    # nobody attempted anything yet
    assert endpoint(na, na["webhooks"]["endpoints"][0]["id"])["attempts"]["delivered"] == 0
    # a tenant without webhooks has no jobs either
    c = signup(api)
    assert observe(api, c)["jobs"]["depth"] == 0


def test_a_websocket_connection_raises_the_count_of_its_tenant_only(trellis):
    proc, api = server(trellis)
    a, b = signup(api), signup(api)
    ws = open_ws(proc, a)
    try:
        n = wait_for(api, a, "a's connection reported", lambda n: n["websocket"]["connections"] == 1)
        assert n["websocket"]["processes"] == 1
        assert observe(api, b)["websocket"]["connections"] == 0
        # an event delivered live gives a lag
        create_user(api, a, ["sales"])
        frame = json.loads(ws.recv(timeout=10))
        assert frame["type"] == "event" and frame["event"] == "system.user.created", frame
        n = wait_for(api, a, "a's delivery lag reported", lambda n: n["websocket"]["lag_max_ms"] is not None)
        assert 0 <= n["websocket"]["lag_max_ms"] < 10000
        second = open_ws(proc, a)
        wait_for(api, a, "a's second connection", lambda n: n["websocket"]["connections"] == 2)
        second.close()
        wait_for(api, a, "a's second connection gone", lambda n: n["websocket"]["connections"] == 1)
    finally:
        ws.close()
    wait_for(api, a, "a's connections gone", lambda n: n["websocket"]["connections"] == 0)
    assert observe(api, b)["websocket"]["connections"] == 0


def test_events_raise_the_streams_newest_id(trellis):
    proc, api = server(trellis, events_max_len=500)
    owner = signup(api)
    before = observe(api, owner)["events"]
    create_user(api, owner, ["sales"])
    after = wait_for(api, owner, "the event on the stream",
                     lambda n: n["events"]["newest_id"] not in (None, before["newest_id"]))["events"]
    assert after["entries"] == before["entries"] + 1
    assert after["oldest_id"] is not None and after["oldest_age_s"] >= 0 and after["oldest_at"]
    assert after["max_len"] == 500
    if before["newest_id"] is not None:
        ms = lambda i: tuple(int(x) for x in i.split("-"))  # noqa: E731
        assert ms(after["newest_id"]) > ms(before["newest_id"])
    # the other tenant's stream did not move
    other = signup(api)
    assert observe(api, other)["events"]["newest_id"] != after["newest_id"]


def test_only_owners_and_admins_may_read_it(trellis):
    proc, api = server(trellis)
    owner = signup(api)
    admin = user_session(api, owner, ["admin"])
    assert api.get(admin, "/v1/observability").status_code == 200
    for role in NON_ADMIN_ROLES:
        r = api.get(user_session(api, owner, [role]), "/v1/observability")
        check_problem(r, 403, "forbidden")
    r = requests.get(api.base_url + "/v1/observability", timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 401
    # a custom role may be granted it
    r = api.post(owner, "/v1/roles", {"name": "ops-watch", "permissions": ["system.observability.read"]})
    assert r.status_code == 201, r.text
    assert api.get(user_session(api, owner, ["ops-watch"]), "/v1/observability").status_code == 200
    roles = {x["name"]: x["permissions"] for x in api.get(owner, "/v1/roles").json()["items"]}
    assert "system.observability.read" in roles["owner"] and "system.observability.read" in roles["admin"]
    for role in NON_ADMIN_ROLES:
        assert "system.observability.read" not in roles[role], role


def test_another_tenants_numbers_never_include_this_tenants(trellis, receiver):
    proc, api = server(trellis, job_backoff_ms=50, job_backoff_max_ms=100, job_max_attempts=2)
    a, b = signup(api), signup(api)
    bad = receiver(plan=(500,))
    hook(api, a, bad.url)
    create_user(api, a, ["sales"])
    wait_for(api, a, "a's dead job", lambda n: n["jobs"]["dead"] == 1)
    ws = open_ws(proc, a)
    try:
        wait_for(api, a, "a's connection", lambda n: n["websocket"]["connections"] == 1)
        nb = observe(api, b)
        assert nb["tenant_id"] == b.tenant_id
        assert nb["webhooks"]["endpoints"] == [] and nb["webhooks"]["attempts_read"] == 0
        assert (nb["jobs"]["dead"], nb["jobs"]["depth"]) == (0, 0)
        assert nb["websocket"]["connections"] == 0
        assert nb["events"]["newest_id"] != observe(api, a)["events"]["newest_id"]
    finally:
        ws.close()


def test_bad_query_parameters_are_refused(trellis):
    proc, api = server(trellis)
    owner = signup(api)
    for query in ("?window_hours=0", "?window_hours=169", "?window_hours=abc", "?window_hours=-1",
                  "?window_hours=", "?window_hours=1.5", "?window_hours=%2B5",
                  "?window_hours=%205", "?window_hours=0024"):
        r = api.get(owner, "/v1/observability" + query)
        check_problem(r, 422)
        assert [e["field"] for e in r.json()["errors"]] == ["window_hours"], (query, r.text)
    check_problem(api.get(owner, "/v1/observability?window=24"), 400, "unknown-parameter")


def test_the_window_bounds_what_is_counted(trellis, receiver):
    proc, api = server(trellis)
    owner = signup(api)
    good = receiver(plan=(200,))
    wh = hook(api, owner, good.url)
    create_user(api, owner, ["sales"])
    good.wait_calls(1)
    n = wait_for(api, owner, "the attempt logged",
                 lambda n: endpoint(n, wh["id"])["attempts"]["delivered"] == 1)
    one = observe(api, owner, "?window_hours=1")
    assert one["window"]["hours"] == 1 and endpoint(one, wh["id"])["attempts"]["delivered"] == 1
    week = observe(api, owner, "?window_hours=168")
    assert week["window"]["hours"] == 168 and week["window"]["from"] < n["window"]["from"]


def test_the_openapi_document_describes_the_answer(trellis, receiver):
    import jsonschema
    proc, api = server(trellis)
    owner = signup(api)
    good = receiver(plan=(200,))
    wh = hook(api, owner, good.url)
    create_user(api, owner, ["sales"])
    n = wait_for(api, owner, "the attempt logged",
                 lambda n: endpoint(n, wh["id"])["attempts"]["delivered"] == 1)
    doc = requests.get(api.base_url + "/v1/openapi.json", timeout=HTTP_TIMEOUT_S).json()
    op = doc["paths"]["/v1/observability"]["get"]
    schema_ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref == "#/components/schemas/Observability"
    assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == {"window_hours"}
    assert "422" in op["responses"] and "403" in op["responses"]
    schema = doc["components"]["schemas"]["Observability"]
    jsonschema.Draft202012Validator(schema).validate(n)
    jsonschema.Draft202012Validator(schema).validate(observe(api, signup(api)))


def test_connections_on_two_processes_are_counted_together_and_a_dead_ones_drop_out(trellis):
    proc, env = start_server(trellis, ws_report_ms=200)
    api = Api(proc)
    second_env = dict(env)
    second_env["TRELLIS_PORT"] = str(free_port())
    second = trellis.start("serve", env=second_env)
    second.wait_ready()
    a = signup(api)
    here, there = open_ws(proc, a), open_ws(second, a)
    try:
        n = wait_for(api, a, "both processes' connections",
                     lambda n: n["websocket"]["connections"] == 2)
        assert n["websocket"]["processes"] == 2
        # either process answers for the whole cluster
        r = requests.get(second.url("/v1/observability"), headers=a.headers, timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200 and r.json()["websocket"]["connections"] == 2, r.text
        # a process killed without a goodbye drops out once its report is stale
        second.kill()
        n = wait_for(api, a, "the dead process's report ignored",
                     lambda n: n["websocket"]["connections"] == 1)
        assert n["websocket"]["processes"] == 1
    finally:
        here.close()
        try:
            there.close()
        except Exception:
            pass


def test_a_queue_longer_than_the_scan_limit_is_counted_that_far_and_says_so(trellis):
    # no job threads: the deliveries stay queued; the limit's minimum is 100
    proc, api = server(trellis, job_workers=0, observability_scan_max=100)
    a, b = signup(api), signup(api)
    hook(api, a, "http://127.0.0.1:9/a", topics=("crm.leads",))
    for i in range(101):
        r = api.post(a, "/v1/crm/leads", {"name": f"Lead {i}", "email": f"lead{i}@example.com"})
        assert r.status_code == 201, r.text
    n = wait_for(api, a, "a's jobs queued past the limit", lambda n: n["jobs"]["exact"] is False)
    queues = {q["queue"]: q for q in n["jobs"]["queues"]}
    assert (queues["webhooks"]["ready"], queues["webhooks"]["exact"]) == (100, False), n["jobs"]
    # (other modules' queues may hold jobs of the same events: each is read that far at most)
    assert all(q["ready"] + q["delayed"] <= 100 for q in queues.values()), n["jobs"]
    assert n["jobs"]["depth"] == sum(q["ready"] + q["delayed"] for q in queues.values())
    # b's count reads the same shared queue: none of it is b's, and it says it did not read all
    nb = observe(api, b)
    hooks_b = {q["queue"]: q for q in nb["jobs"]["queues"]}["webhooks"]
    assert (hooks_b["ready"], hooks_b["exact"], nb["jobs"]["exact"]) == (0, False, False), nb["jobs"]
