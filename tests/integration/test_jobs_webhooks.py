"""The task queue through its first user, webhook deliveries: retries with
backoff, dead letters, the jobs API, a worker killed mid-job.  Every test
runs its own server (short backoff, private addresses allowed for the local
receiver) on its own database, with the session's FerretDB and Redis."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import HTTP_TIMEOUT_S, create_user, sanitizer_hits, signup

WAIT_S = 20.0


class Receiver:
    """A local HTTP endpoint: answers each POST with the next status of
    `plan` (the last one repeats), optionally after `delay` seconds, and
    records what it got."""

    def __init__(self, plan=(200,), delay=0.0):
        self.plan, self.delay = list(plan), delay
        self.calls = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    n = len(receiver.calls)
                    receiver.calls.append({"headers": dict(self.headers), "body": body,
                                           "at": time.monotonic()})
                    status = receiver.plan[min(n, len(receiver.plan) - 1)]
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait_calls(self, n, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.calls) >= n:
                    return list(self.calls)
            time.sleep(0.05)
        pytest.fail(f"the receiver got {len(self.calls)} calls, expected {n}")

    def close(self):
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


PRODUCT_DEFAULT = object()


def start_server(trellis, db=None, **overrides):
    """A server whose retries are scaled down. The webhooks queue has a
    schedule of its own (webhook_max_attempts, webhook_backoff_max_ms:
    about three days by default); here it follows the job settings a test
    gives unless the test names it - PRODUCT_DEFAULT leaves the product's."""
    settings = dict(webhook_allow_private=1, job_backoff_ms=100, job_backoff_max_ms=400,
                    job_max_attempts=3, job_visibility_ms=1500)
    settings.update(overrides)
    settings.setdefault("webhook_max_attempts", settings["job_max_attempts"])
    settings.setdefault("webhook_backoff_max_ms", settings["job_backoff_max_ms"])
    settings = {k: v for k, v in settings.items() if v is not PRODUCT_DEFAULT}
    env = trellis.env(db=db, **settings)
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0 and not sanitizer_hits(run.output), run
    proc = trellis.start("serve", env=env)
    proc.wait_ready()
    return proc, env


class Api:
    def __init__(self, proc):
        self.base_url = proc.url("").rstrip("/")

    def post(self, acct, path, body):
        return requests.post(self.base_url + path, json=body, headers=acct.headers, timeout=HTTP_TIMEOUT_S)

    def get(self, acct, path, **kw):
        return requests.get(self.base_url + path, headers=acct.headers, timeout=HTTP_TIMEOUT_S, **kw)


def hook(api, owner, url, topics=("admin.users",)):
    r = api.post(owner, "/v1/webhooks", {"url": url, "topics": list(topics)})
    assert r.status_code == 201, r.text
    return r.json()


def dead_jobs(api, acct):
    r = api.get(acct, "/v1/jobs?state=dead")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def wait_dead(api, acct, n, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = dead_jobs(api, acct)
        if len(items) >= n:
            return items
        time.sleep(0.1)
    pytest.fail(f"expected {n} dead jobs, have {dead_jobs(api, acct)}")


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return -1


def test_delivery_is_signed_and_carries_the_event(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver()
    wh = hook(api, owner, rec.url)
    assert wh["secret"].startswith("whsec_") and "url" in wh and wh["topics"] == ["admin.users"]
    user = create_user(api, owner, ["sales"], name="Hooked")
    call = rec.wait_calls(1)[0]
    event = json.loads(call["body"])
    assert event["event"] == "system.user.created" and event["data"]["id"] == user["id"]
    assert event["topic"] == "admin.users" and "-" in event["id"]
    t, v1 = [p.split("=", 1)[1] for p in call["headers"]["X-Trellis-Signature"].split(",")]
    expect = hmac.new(wh["secret"].encode(), t.encode() + b"." + call["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expect)
    assert len(call["headers"]["X-Trellis-Delivery"]) == 32
    # the secret is never shown again
    listed = api.get(owner, "/v1/webhooks").json()["items"]
    assert [w["id"] for w in listed] == [wh["id"]] and "secret" not in listed[0]


def test_a_job_failing_twice_then_succeeding_runs_three_times_and_is_done(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver(plan=(500, 503, 200))
    hook(api, owner, rec.url)
    create_user(api, owner, ["sales"])
    calls = rec.wait_calls(3)
    time.sleep(1.5)  # nothing more comes: it is done
    assert len(rec.calls) == 3
    ids = {c["headers"]["X-Trellis-Delivery"] for c in calls}
    assert len(ids) == 1, "a retry is the same delivery"
    gaps = [b["at"] - a["at"] for a, b in zip(calls, calls[1:])]
    assert all(g >= 0.04 for g in gaps), gaps  # backoff, not a tight loop
    assert dead_jobs(api, owner) == []


def test_a_webhook_outlasts_the_job_attempts_by_default_and_is_delivered_when_the_receiver_returns(trellis, receiver):
    """job_max_attempts is 3 here, but a webhook retries on its own schedule
    (120 attempts, waits up to an hour: about 3.4 days), so a receiver
    down for seven attempts still gets the event, under one webhook-id.
    The waits are scaled down (webhook_backoff_max_ms=300)."""
    proc, _ = start_server(trellis, webhook_max_attempts=PRODUCT_DEFAULT, webhook_backoff_max_ms=300)
    api = Api(proc)
    owner = signup(api)
    rec = receiver(plan=(503,) * 7 + (200,))
    hook(api, owner, rec.url)
    create_user(api, owner, ["sales"])
    calls = rec.wait_calls(8, timeout=40)
    time.sleep(1.0)
    assert len(rec.calls) == 8, "delivered once it answered 200, then nothing more"
    assert len({c["headers"]["webhook-id"] for c in calls}) == 1
    assert dead_jobs(api, owner) == []


def test_a_job_that_always_fails_is_dead_lettered_and_can_be_retried(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver(plan=(500,))
    wh = hook(api, owner, rec.url)
    create_user(api, owner, ["sales"])
    dead = wait_dead(api, owner, 1)
    assert len(rec.calls) == 3  # job_max_attempts
    job = dead[0]
    assert job["queue"] == "webhooks" and job["state"] == "dead" and job["attempts"] == 3
    assert "500" in job["last_error"]
    # /metrics: this process ran it twice more before giving up, and Redis holds one dead job
    deadline = time.monotonic() + 5
    while True:
        text = requests.get(api.base_url + "/metrics", timeout=HTTP_TIMEOUT_S).text
        if metric(text, 'trellis_jobs{queue="webhooks",state="dead"}') >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert metric(text, 'trellis_jobs{queue="webhooks",state="dead"}') == 1, text
    assert metric(text, 'trellis_job_runs_total{queue="webhooks",outcome="retried"}') == 2, text
    assert metric(text, 'trellis_job_runs_total{queue="webhooks",outcome="dead"}') == 1, text
    assert metric(text, 'trellis_events_published_total{path="direct"}') >= 1, text
    # another tenant sees none of it and cannot retry it
    other = signup(api)
    assert dead_jobs(api, other) == []
    r = api.post(other, f"/v1/jobs/{job['id']}/retry", {})
    assert r.status_code == 404, r.text
    # a sales user may not see the tenant's jobs
    # retry: the receiver now accepts
    rec.plan = [200]
    r = api.post(owner, f"/v1/jobs/{job['id']}/retry", {})
    assert r.status_code == 202, r.text
    assert r.json() == {"id": job["id"], "queue": "webhooks", "state": "queued"}
    calls = rec.wait_calls(4)
    assert calls[3]["body"] == calls[0]["body"], "the same event, nothing of the retry in it"
    assert dead_jobs(api, owner) == []
    # the retried round is in the delivery log beside the first three attempts
    deadline = time.monotonic() + 10
    while True:
        log = api.get(owner, f"/v1/webhooks/{wh['id']}/deliveries?limit=50").json()["items"]
        if len(log) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # attempts 1 and 2 failed with a retry to come (pending), 3 was the last; then the round
    assert sorted(d["status"] for d in log) == ["delivered", "failed", "pending", "pending"], log
    r = api.post(owner, f"/v1/jobs/{job['id']}/retry", {})
    assert r.status_code == 404, r.text


def test_jobs_api_bad_input(trellis):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    r = api.get(owner, "/v1/jobs")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "state", r.text
    r = api.get(owner, "/v1/jobs?state=running")
    assert r.status_code == 422, r.text
    for bad in ("nope", "0" * 32, "../x"):
        r = api.post(owner, f"/v1/jobs/{bad}/retry", {})
        assert r.status_code == 404, (bad, r.text)


def test_webhook_bad_input_and_permissions(trellis):
    proc, _ = start_server(trellis, webhook_allow_private=0)
    api = Api(proc)
    owner = signup(api)
    for body, field in [({"topics": ["admin.users"]}, "url"),
                        ({"url": "ftp://example.com/x", "topics": ["admin.users"]}, "url"),
                        ({"url": "http://127.0.0.1:9/x", "topics": ["admin.users"]}, "url"),
                        ({"url": "http://10.1.2.3/x", "topics": ["admin.users"]}, "url"),
                        ({"url": "https://example.com/x", "topics": []}, "topics"),
                        ({"url": "https://example.com/x", "topics": ["nope"]}, "topics"),
                        ({"url": "https://example.com/x", "topics": "admin.users"}, "topics"),
                        ({"url": "https://example.com/x", "topics": ["admin.users"], "x": 1}, "x")]:
        r = api.post(owner, "/v1/webhooks", body)
        assert r.status_code == 422, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    assert api.get(owner, "/v1/webhooks").json()["items"] == []
    from conftest import user_session
    manager = user_session(api, owner, ["manager"])
    r = api.post(manager, "/v1/webhooks", {"url": "https://example.com/x", "topics": ["crm.leads"]})
    assert r.status_code == 403, r.text
    assert api.get(manager, "/v1/jobs?state=dead").status_code == 403
    wh = hook(api, owner, "https://example.com/x")
    other = signup(api)
    assert api.get(other, f"/v1/webhooks/{wh['id']}").status_code == 404
    r = requests.delete(api.base_url + f"/v1/webhooks/{wh['id']}", headers=other.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 404
    assert api.get(owner, f"/v1/webhooks/{wh['id']}").status_code == 200


def test_a_worker_killed_mid_job_has_its_job_finished_by_another(trellis, receiver):
    db = trellis.fresh_db("jobs")
    # A: the API and a worker; its delivery hangs long enough to be killed
    a, _ = start_server(trellis, db=db)
    api = Api(a)
    owner = signup(api)
    rec = receiver(plan=(200,), delay=3.0)
    hook(api, owner, rec.url)
    create_user(api, owner, ["sales"])
    rec.wait_calls(1)
    a.kill()  # mid-delivery: never acknowledged
    rec.delay = 0.0
    # B: a worker-only process picks it up after the visibility timeout
    b, _ = start_server(trellis, db=db, roles="worker")
    calls = rec.wait_calls(2, timeout=WAIT_S)
    assert calls[0]["headers"]["X-Trellis-Delivery"] == calls[1]["headers"]["X-Trellis-Delivery"]
    time.sleep(2.5)
    assert len(rec.calls) == 2, "done once finished: not delivered again"
    # a worker-only process does not serve the API
    r = requests.get(b.url("/v1/me"), headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 503, r.text


def test_a_delivery_due_while_the_database_is_down_is_retried_not_dropped(trellis, stack, receiver):
    # The first attempt fails at the receiver; the retry comes while the
    # database is down and cannot read the webhook. That once counted as
    # "webhook gone" and finished the job: the event was never delivered.
    proc, _ = start_server(trellis, job_backoff_ms=6000, job_backoff_max_ms=6000, job_max_attempts=8)
    api = Api(proc)
    owner = signup(api)
    rec = receiver(plan=(500, 200))
    hook(api, owner, rec.url)
    create_user(api, owner, ["sales"])
    rec.wait_calls(1)
    stack.stop_ferretdb()
    try:
        time.sleep(7.0)  # past the retry's backoff (3 to 6 s): it runs against no database
    finally:
        stack.start_ferretdb()
    stack.wait_ready(60)
    proc.wait_ready(60)  # this process too sees the database again (slower under TSan)
    first = rec.calls[0]["headers"]["X-Trellis-Delivery"]
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        with rec.lock:
            again = [c for c in rec.calls[1:] if c["headers"]["X-Trellis-Delivery"] == first]
        if again:
            break
        time.sleep(0.1)
    assert again, f"the failed delivery {first} never came again: {len(rec.calls)} calls"
    assert dead_jobs(api, owner) == []


def patch(api, acct, path, body, **headers):
    return requests.patch(api.base_url + path, json=body, headers={**acct.headers, **headers},
                          timeout=HTTP_TIMEOUT_S)


def test_a_paused_webhook_gets_nothing_and_a_resumed_one_gets_what_follows(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver()
    wh = hook(api, owner, rec.url)
    r = patch(api, owner, f"/v1/webhooks/{wh['id']}", {"active": False})
    assert r.status_code == 200 and r.json()["active"] is False and "secret" not in r.json(), r.text
    create_user(api, owner, ["sales"], name="Unheard")
    time.sleep(1.5)
    assert rec.calls == [], "a paused webhook got a delivery"
    r = patch(api, owner, f"/v1/webhooks/{wh['id']}", {"active": True}, **{"If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    heard = create_user(api, owner, ["sales"], name="Heard")
    event = json.loads(rec.wait_calls(1)[0]["body"])
    assert event["data"]["id"] == heard["id"]


def test_changing_a_webhook_is_checked_like_creating_one(trellis):
    proc, _ = start_server(trellis, webhook_allow_private=0)
    api = Api(proc)
    owner = signup(api)
    wh = hook(api, owner, "https://example.com/x")
    path = f"/v1/webhooks/{wh['id']}"
    for body, field in [({"url": "ftp://example.com/x"}, "url"),
                        ({"url": "http://10.1.2.3/x"}, "url"),
                        ({"topics": ["nope"]}, "topics"),
                        ({"topics": []}, "topics"),
                        ({"active": "no"}, "active"),
                        ({"secret": "whsec_mine"}, "secret")]:
        r = patch(api, owner, path, body)
        assert r.status_code == 422, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    r = patch(api, owner, path, {"topics": ["crm.leads", "crm.leads"]})
    assert r.status_code == 200 and r.json()["topics"] == ["crm.leads"], r.text
    assert patch(api, owner, path, {"active": False}, **{"If-Match": '"1"'}).status_code == 412
    from conftest import user_session
    manager = user_session(api, owner, ["manager"])
    assert patch(api, manager, path, {"active": False}).status_code == 403
    other = signup(api)
    assert patch(api, other, path, {"active": False}).status_code == 404
    stored = api.get(owner, path).json()
    assert stored["active"] is True and stored["version"] == 2 and "secret" not in stored
