"""Ordered webhooks and deliveries under faults.

An endpoint made with `"ordered": true` gets its events one at a time in
event order: a later event is not attempted while an earlier one to the
same endpoint is pending or retrying, in any process (a job lane in Redis,
server/events/jobs.c).  The fault tests stop the receiver, kill a server
with SIGKILL mid-delivery and restart Redis, and check that every event
arrives, with the webhook-id of its failed attempts, and that the delivery
log holds one record per attempt.

Real processes throughout: the ASan server, the session's FerretDB, and
Redis (the session's, or a private one for the restart).  Backoff is scaled
down so that an outage "of an hour" lasts seconds: job_backoff_ms=100 to
job_backoff_max_ms=400 with enough attempts to outlast the outage."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import HTTP_TIMEOUT_S, create_user, signup
from test_events_faults import private_redis  # noqa: F401
from test_jobs_webhooks import Api, patch, start_server

WAIT_S = 60.0
# enough attempts for the outages below at these backoffs (each wait is
# 50..400 ms): the receiver's "hour" down is a few seconds here
PATIENT = dict(job_backoff_ms=100, job_backoff_max_ms=400, job_max_attempts=60)


class Receiver:
    """A local endpoint whose answer to each POST is decided by `answer`
    (call index, webhook-id) -> (status, hold seconds).  It records every
    call with its webhook-id, event and the moments it began and ended."""

    def __init__(self, answer=lambda n, msg: (200, 0.0)):
        self.answer = answer
        self.calls = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends a hold early
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                began = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                msg = self.headers.get("webhook-id")
                with receiver.lock:
                    n = len(receiver.calls)
                    status, hold = receiver.answer(n, msg)
                    call = {"n": n, "msg": msg, "event": json.loads(body), "status": status,
                            "began": began, "ended": None}
                    receiver.calls.append(call)
                if hold:
                    receiver.release.wait(hold)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender died meanwhile
                with receiver.lock:
                    call["ended"] = time.monotonic()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return [dict(c) for c in self.calls]

    def delivered(self):
        """The calls answered 2xx, in the order they came."""
        return [c for c in self.snapshot() if 200 <= c["status"] < 300]

    def wait(self, what, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what(self.snapshot()):
                return self.snapshot()
            time.sleep(0.05)
        pytest.fail(f"the receiver's calls never satisfied {what.__name__}: "
                    f"{[(c['n'], c['msg'], c['event']['id'], c['status']) for c in self.snapshot()]}")

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*a, **kw):
        r = Receiver(*a, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def evid(event_id):
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def make_hook(api, owner, url, **extra):
    r = api.post(owner, "/v1/webhooks", {"url": url, "topics": ["admin.users"], **extra})
    assert r.status_code == 201, r.text
    return r.json()


def make_users(api, owner, n, prefix):
    return [create_user(api, owner, ["sales"], name=f"{prefix} {i}")["id"] for i in range(n)]


def first_deliveries(calls):
    """Event id -> its first 2xx call, in the order those came."""
    seen = {}
    for c in calls:
        if 200 <= c["status"] < 300 and c["event"]["id"] not in seen:
            seen[c["event"]["id"]] = c
    return seen


def assert_in_event_order_one_at_a_time(calls):
    """Every event was delivered, the first deliveries came in event order,
    and no attempt began before the one before it had its answer."""
    firsts = list(first_deliveries(calls))
    assert firsts == sorted(firsts, key=evid), f"delivered out of event order: {firsts}"
    attempted = [c["event"]["id"] for c in calls]
    # an event is attempted only once every earlier one is delivered
    for i, c in enumerate(calls):
        earlier = {e for e in attempted if evid(e) < evid(c["event"]["id"])}
        done_before = {d["event"]["id"] for d in calls[:i] if 200 <= d["status"] < 300}
        assert earlier <= done_before, (
            f"call {i} ({c['event']['id']}) began while {sorted(earlier - done_before)} "
            f"were not delivered")
    for prev, nxt in zip(calls, calls[1:]):
        assert prev["ended"] is not None and nxt["began"] >= prev["ended"] - 0.005, (
            f"call {nxt['n']} began before call {prev['n']} was answered")


def log_of(api, acct, wh_id):
    r = api.get(acct, f"/v1/webhooks/{wh_id}/deliveries?limit=200")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def wait_log(api, acct, wh_id, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = log_of(api, acct, wh_id)
        if what(items):
            return items
        time.sleep(0.1)
    pytest.fail(f"the delivery log never satisfied {what.__name__}: {log_of(api, acct, wh_id)}")


def assert_one_record_per_attempt(items):
    keys = [(d["chain_id"], d["attempt"]) for d in items]
    assert len(keys) == len(set(keys)), f"an attempt was logged twice: {sorted(keys)}"


# ---------------------------------------------------------------------------
# the option itself
# ---------------------------------------------------------------------------

def test_ordered_is_false_by_default_true_on_request_and_changed_by_patch(trellis):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    plain = make_hook(api, owner, "https://example.com/plain")
    assert plain["ordered"] is False
    ordered = make_hook(api, owner, "https://example.com/ordered", ordered=True)
    assert ordered["ordered"] is True and "secret" in ordered
    assert api.get(owner, f"/v1/webhooks/{ordered['id']}").json()["ordered"] is True
    r = patch(api, owner, f"/v1/webhooks/{plain['id']}", {"ordered": True})
    assert r.status_code == 200 and r.json()["ordered"] is True, r.text
    r = patch(api, owner, f"/v1/webhooks/{plain['id']}", {"ordered": False})
    assert r.status_code == 200 and r.json()["ordered"] is False, r.text
    spec = requests.get(api.base_url + "/v1/openapi.json", timeout=HTTP_TIMEOUT_S).json()
    webhook_schemas = {name: s for name, s in spec["components"]["schemas"].items()
                       if {"url", "topics"} <= set(s.get("properties", {}))}
    assert webhook_schemas, sorted(spec["components"]["schemas"])
    for name, schema in webhook_schemas.items():
        assert schema["properties"].get("ordered", {}).get("type") == "boolean", (name, schema)


@pytest.mark.parametrize("value", ["yes", 1, None, [True], {"on": True}])
def test_ordered_not_a_boolean_is_422_naming_the_field(trellis, value):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    r = api.post(owner, "/v1/webhooks",
                 {"url": "https://example.com/x", "topics": ["admin.users"], "ordered": value})
    assert r.status_code == 422, r.text
    assert "ordered" in [e["field"] for e in r.json()["errors"]], r.text
    wh = make_hook(api, owner, "https://example.com/x")
    r = patch(api, owner, f"/v1/webhooks/{wh['id']}", {"ordered": value})
    assert r.status_code == 422, r.text
    assert "ordered" in [e["field"] for e in r.json()["errors"]], r.text
    assert api.get(owner, f"/v1/webhooks/{wh['id']}").json()["ordered"] is False


def test_another_tenant_cannot_read_or_patch_an_ordered_webhook(trellis):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    wh = make_hook(api, owner, "https://example.com/x", ordered=True)
    other = signup(api)
    assert api.get(other, f"/v1/webhooks/{wh['id']}").status_code == 404
    assert api.get(other, f"/v1/webhooks/{wh['id']}/deliveries").status_code == 404
    r = patch(api, other, f"/v1/webhooks/{wh['id']}", {"ordered": False})
    assert r.status_code == 404, r.text
    assert api.get(owner, f"/v1/webhooks/{wh['id']}").json()["ordered"] is True


# ---------------------------------------------------------------------------
# a receiver down for a while
# ---------------------------------------------------------------------------

def test_a_receiver_down_for_a_while_then_back_gets_every_event_with_its_webhook_id(
        trellis, receiver):
    """The receivers answer 503 for about four seconds (the scaled "hour";
    with PATIENT backoff a delivery is attempted several times meanwhile),
    then 200.  Both get every event, each delivered with the webhook-id its
    failed attempts had; the ordered one attempts nothing but the first
    event while it is down and then gets them all in event order."""
    down = {"on": True}

    def answer(n, msg):
        return (503 if down["on"] else 200), 0.0

    proc, _ = start_server(trellis, **PATIENT)
    api = Api(proc)
    owner = signup(api)
    plain_rec, ordered_rec = receiver(answer), receiver(answer)
    plain = make_hook(api, owner, plain_rec.url)
    ordered = make_hook(api, owner, ordered_rec.url, ordered=True)
    users = make_users(api, owner, 5, "Outage")

    def failed_often(calls):
        return len(calls) >= 4

    ordered_rec.wait(failed_often)
    plain_rec.wait(failed_often)
    time.sleep(3.0)
    # while down, the ordered endpoint saw only the first event's retries
    first_event = ordered_rec.snapshot()[0]["event"]["id"]
    assert {c["event"]["id"] for c in ordered_rec.snapshot()} == {first_event}
    down["on"] = False

    def all_delivered(calls):
        return len(first_deliveries(calls)) >= len(users)

    for rec in (plain_rec, ordered_rec):
        calls = rec.wait(all_delivered)
        firsts = first_deliveries(calls)
        assert sorted(e["event"]["data"]["id"] for e in firsts.values()) == sorted(users)
        for c in calls:  # every attempt of an event went with the same webhook-id
            assert c["msg"] == firsts[c["event"]["id"]]["msg"], c
        assert any(c["status"] == 503 for c in calls)
    assert_in_event_order_one_at_a_time(ordered_rec.snapshot())
    for wh in (plain, ordered):
        items = wait_log(api, owner, wh["id"],
                         lambda items: sum(d["status"] == "delivered" for d in items) >= 5)
        assert_one_record_per_attempt(items)
        assert all(d["status"] in ("pending", "delivered") for d in items), items


def test_an_unordered_endpoint_is_not_held_back_by_a_failing_event(trellis, receiver):
    """Without ordered (today's behaviour), the later events are delivered
    while the first one waits for its retry (5 to 10 s away)."""
    first = {"msg": None}

    def answer(n, msg):
        if first["msg"] is None:
            first["msg"] = msg
        return (503 if msg == first["msg"] and n == 0 else 200), 0.0

    proc, _ = start_server(trellis, job_backoff_ms=10000, job_backoff_max_ms=10000,
                           job_max_attempts=3)
    api = Api(proc)
    owner = signup(api)
    rec = receiver(answer)
    make_hook(api, owner, rec.url)
    users = make_users(api, owner, 3, "Free")

    def two_delivered(calls):
        return len(first_deliveries(calls)) >= 2

    calls = rec.wait(two_delivered)
    assert calls[0]["status"] == 503, calls
    assert calls[0]["event"]["id"] not in first_deliveries(calls), "the retry came too soon"

    def all_delivered(calls):
        return len(first_deliveries(calls)) >= 3

    calls = rec.wait(all_delivered)
    assert sorted(c["event"]["data"]["id"] for c in first_deliveries(calls).values()) == \
        sorted(users)


# ---------------------------------------------------------------------------
# kill -9 mid-delivery
# ---------------------------------------------------------------------------

def test_a_server_killed_mid_delivery_the_event_arrives_and_each_attempt_is_logged_once(
        trellis, receiver):
    """The receiver holds the first request open; the server is killed
    with SIGKILL meanwhile.  Another process takes the job over after the
    visibility timeout: the event arrives again with the same webhook-id,
    the event after it (ordered endpoint) only after it, and the log has
    one record per attempt."""
    db = trellis.fresh_db("whkill")
    rec = receiver(lambda n, msg: (200, 30.0 if n == 0 else 0.0))
    # visibility above the hold before the kill: no thread of the doomed
    # process takes the job over while it is still alive
    slow_claim = dict(PATIENT, job_visibility_ms=4000)
    a, _ = start_server(trellis, db=db, **slow_claim)
    api = Api(a)
    owner = signup(api)
    wh = make_hook(api, owner, rec.url, ordered=True)
    users = make_users(api, owner, 2, "Killed")

    def held(calls):
        return len(calls) >= 1

    rec.wait(held)
    time.sleep(0.3)
    assert len(rec.snapshot()) == 1, "the second event went while the first was in flight"
    a.kill()
    assert a.wait_exit(10) is not None, "kill -9 did not end the server"
    rec.release.set()
    b, _ = start_server(trellis, db=db, **slow_claim)
    api = Api(b)

    def both_delivered(calls):
        return len(first_deliveries(calls)) >= 2

    calls = rec.wait(both_delivered)
    firsts = first_deliveries(calls)
    assert [c["event"]["data"]["id"] for c in firsts.values()] == users
    killed = calls[0]
    again = [c for c in calls[1:] if c["event"]["id"] == killed["event"]["id"]]
    assert again and again[0]["msg"] == killed["msg"], calls
    items = wait_log(api, owner, wh["id"],
                     lambda items: sum(d["status"] == "delivered" for d in items) >= 2)
    time.sleep(1.0)
    items = log_of(api, owner, wh["id"])
    assert_one_record_per_attempt(items)
    assert sorted(d["event_id"] for d in items if d["status"] == "delivered") == sorted(firsts)


def test_an_attempt_run_twice_is_logged_once(trellis, receiver):
    """The first request is held past job_visibility_ms, so another worker
    takes the job over and makes the same attempt again, which the receiver
    answers at once.  Both runs end and want to log attempt 1; the log
    keeps one record of it (its id is derived from chain and attempt)."""
    rec = receiver(lambda n, msg: (200, 3.0 if n == 0 else 0.0))
    proc, _ = start_server(trellis, job_visibility_ms=1000, **PATIENT)
    api = Api(proc)
    owner = signup(api)
    wh = make_hook(api, owner, rec.url)
    make_users(api, owner, 1, "Twice")

    def twice(calls):
        return len(calls) >= 2 and all(c["ended"] for c in calls[:2])

    calls = rec.wait(twice)
    assert calls[0]["msg"] == calls[1]["msg"], calls
    time.sleep(1.5)  # the slow run logs (or does not) after its answer
    items = log_of(api, owner, wh["id"])
    assert_one_record_per_attempt(items)
    assert [(d["attempt"], d["status"]) for d in items] == [(1, "delivered")], items


# ---------------------------------------------------------------------------
# Redis restarted while deliveries go on
# ---------------------------------------------------------------------------

def test_redis_restarted_during_deliveries_loses_no_event(trellis, receiver, private_redis):
    """Deliveries are under way (each takes 0.2 s) when Redis stops for two
    seconds; after it returns every event reaches both endpoints, the
    ordered one in event order, and more events made afterwards too."""
    rds = private_redis()
    rec_plain = receiver(lambda n, msg: (200, 0.2))
    rec_ordered = receiver(lambda n, msg: (200, 0.2))
    proc, _ = start_server(trellis, redis_url=rds.url, **PATIENT)
    api = Api(proc)
    owner = signup(api)
    make_hook(api, owner, rec_plain.url)
    make_hook(api, owner, rec_ordered.url, ordered=True)
    users = make_users(api, owner, 6, "Before")

    def started(calls):
        return len(calls) >= 1

    rec_ordered.wait(started)
    rds.stop()
    time.sleep(2.0)
    rds.start()
    proc.wait_ready(60)
    users += make_users(api, owner, 3, "After")

    def all_there(calls):
        return len(first_deliveries(calls)) >= len(users)

    for rec in (rec_plain, rec_ordered):
        calls = rec.wait(all_there)
        got = sorted(c["event"]["data"]["id"] for c in first_deliveries(calls).values())
        assert got == sorted(users)
    assert_in_event_order_one_at_a_time(rec_ordered.snapshot())


# ---------------------------------------------------------------------------
# order across processes
# ---------------------------------------------------------------------------

def test_ordered_across_three_processes_later_events_wait_for_a_failing_early_one(
        trellis, receiver):
    """Three server processes share the database and Redis, each with job
    threads.  The receiver fails the first event's first three attempts;
    the later events (made through different processes) arrive only after
    it is delivered, one at a time, in event order."""
    db = trellis.fresh_db("whorder")
    fails = {"left": 3, "msg": None}

    def answer(n, msg):
        if fails["msg"] is None:
            fails["msg"] = msg
        if msg == fails["msg"] and fails["left"] > 0:
            fails["left"] -= 1
            return 500, 0.1
        return 200, 0.1

    rec = receiver(answer)
    procs = [start_server(trellis, db=db, **PATIENT)[0] for _ in range(3)]
    apis = [Api(p) for p in procs]
    owner = signup(apis[0])
    make_hook(apis[0], owner, rec.url, ordered=True)
    users = []
    for i in range(9):
        users += make_users(apis[i % 3], owner, 1, f"Proc{i % 3}")

    def all_delivered(calls):
        return len(first_deliveries(calls)) >= len(users)

    calls = rec.wait(all_delivered)
    time.sleep(1.0)
    calls = rec.snapshot()
    assert [c["status"] for c in calls[:4]] == [500, 500, 500, 200], calls
    assert len({c["event"]["id"] for c in calls[:4]}) == 1
    firsts = first_deliveries(calls)
    assert [c["event"]["data"]["id"] for c in firsts.values()] == users
    assert_in_event_order_one_at_a_time(calls)
    assert len(calls) == 3 + len(users), "an event was delivered twice without a fault"
