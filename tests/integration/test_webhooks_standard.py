"""Webhooks to the Standard Webhooks spec: headers verified by the reference
library, secret rotation with a signing overlap, the per-attempt delivery
log, replays of one delivery and since an event id, pause and automatic
disabling.  Each test runs its own server with a local receiver (see
test_jobs_webhooks.py)."""

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import HTTP_TIMEOUT_S, create_user, signup, user_session
from test_jobs_webhooks import Api, hook, patch, receiver, start_server  # noqa: F401

WAIT_S = 20.0


def post(api, acct, path, body=None):
    return requests.post(api.base_url + path, json=body if body is not None else {},
                         headers=acct.headers, timeout=HTTP_TIMEOUT_S)


def deliveries(api, acct, wh_id, query=""):
    r = api.get(acct, f"/v1/webhooks/{wh_id}/deliveries{query}")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def wait_log(api, acct, wh_id, n, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = deliveries(api, acct, wh_id, "?limit=200")
        if len(items) >= n:
            return items
        time.sleep(0.1)
    pytest.fail(f"expected {n} logged attempts, have {deliveries(api, acct, wh_id)}")


def verify(secret, call):
    return Webhook(secret).verify(call["body"], call["headers"])


def test_deliveries_carry_standard_webhooks_headers_the_reference_library_verifies(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver()
    wh = hook(api, owner, rec.url)
    assert wh["secret"].startswith("whsec_")
    assert len(base64.b64decode(wh["secret"][6:])) == 24
    user = create_user(api, owner, ["sales"])
    call = rec.wait_calls(1)[0]
    payload = verify(wh["secret"], call)
    assert payload["data"]["id"] == user["id"] and payload["event"] == "system.user.created"
    h = call["headers"]
    assert h["webhook-id"].startswith("msg_") and h["webhook-signature"].startswith("v1,")
    assert abs(int(h["webhook-timestamp"]) - time.time()) < 60
    # the deprecated headers are still sent
    assert len(h["X-Trellis-Delivery"]) == 32 and h["X-Trellis-Signature"].startswith("t=")
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + base64.b64encode(b"x" * 24).decode(), call)


def legacy_macs(call):
    """The deprecated X-Trellis-Signature: t=<time>, then one v1= per secret."""
    parts = call["headers"]["X-Trellis-Signature"].split(",")
    assert parts[0].startswith("t=") and all(p.startswith("v1=") for p in parts[1:])
    return parts[0][2:], [p[3:] for p in parts[1:]]


def legacy_mac(secret, t, call):
    return hmac.new(secret.encode(), t.encode() + b"." + call["body"], hashlib.sha256).hexdigest()


def test_rotation_signs_with_the_new_and_the_old_secret_then_only_the_new(trellis, receiver):
    proc, _ = start_server(trellis, webhook_secret_overlap_ms=3000)
    api = Api(proc)
    owner = signup(api)
    rec = receiver()
    wh = hook(api, owner, rec.url)
    r = post(api, owner, f"/v1/webhooks/{wh['id']}/rotate-secret")
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new.startswith("whsec_") and new != wh["secret"] and r.json()["id"] == wh["id"]
    assert "secret" not in api.get(owner, f"/v1/webhooks/{wh['id']}").json()
    create_user(api, owner, ["sales"])
    call = rec.wait_calls(1)[0]
    assert len(call["headers"]["webhook-signature"].split(" ")) == 2
    verify(new, call)
    verify(wh["secret"], call)
    t, macs = legacy_macs(call)  # the deprecated header overlaps too
    assert macs == [legacy_mac(new, t, call), legacy_mac(wh["secret"], t, call)]
    time.sleep(3.5)  # past the overlap
    create_user(api, owner, ["sales"])
    call = rec.wait_calls(2)[1]
    assert len(call["headers"]["webhook-signature"].split(" ")) == 1
    verify(new, call)
    t, macs = legacy_macs(call)
    assert macs == [legacy_mac(new, t, call)]
    with pytest.raises(WebhookVerificationError):
        verify(wh["secret"], call)


def test_the_log_records_every_attempt_of_a_receiver_failing_twice_then_succeeding(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver(plan=(500, 503, 200))
    wh = hook(api, owner, rec.url)
    create_user(api, owner, ["sales"])
    calls = rec.wait_calls(3)
    assert len({c["headers"]["webhook-id"] for c in calls}) == 1, "retries keep the webhook-id"
    log = wait_log(api, owner, wh["id"], 3)
    assert [d["attempt"] for d in log] == [3, 2, 1], "newest first"
    assert [d["status"] for d in log] == ["delivered", "pending", "pending"]
    assert [d["response_code"] for d in log] == [200, 503, 500]
    event_id = json.loads(calls[0]["body"])["id"]
    for d in log:
        assert d["event_id"] == event_id and d["message_id"] == calls[0]["headers"]["webhook-id"]
        assert d["chain_id"] == calls[0]["headers"]["X-Trellis-Delivery"]
        assert d["duration_ms"] >= 0 and d["attempted_at"].endswith("Z")
    assert log[0]["error"] is None and log[0]["next_attempt_at"] is None
    assert "503" in log[1]["error"] and log[1]["next_attempt_at"] > log[1]["attempted_at"]
    # paged
    page = api.get(owner, f"/v1/webhooks/{wh['id']}/deliveries?limit=1").json()
    assert len(page["items"]) <= 1 and page["next_cursor"]


def test_a_delivery_that_ran_out_of_attempts_is_logged_failed(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver(plan=(500,))
    wh = hook(api, owner, rec.url)
    create_user(api, owner, ["sales"])
    log = wait_log(api, owner, wh["id"], 3)
    assert log[0]["status"] == "failed" and log[0]["next_attempt_at"] is None


def test_replaying_a_delivery_sends_the_same_event_with_the_same_webhook_id(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver()
    wh = hook(api, owner, rec.url)
    create_user(api, owner, ["sales"])
    first = rec.wait_calls(1)[0]
    did = wait_log(api, owner, wh["id"], 1)[0]["id"]
    r = post(api, owner, f"/v1/webhooks/{wh['id']}/deliveries/{did}/replay")
    assert r.status_code == 202, r.text
    again = rec.wait_calls(2)[1]
    assert again["body"] == first["body"]
    assert again["headers"]["webhook-id"] == first["headers"]["webhook-id"]
    assert again["headers"]["X-Trellis-Delivery"] == r.json()["chain_id"], "a new chain"
    verify(wh["secret"], again)
    log = wait_log(api, owner, wh["id"], 2)
    assert log[0]["chain_id"] == r.json()["chain_id"] and log[0]["attempt"] == 1


def test_replay_since_an_event_id_sends_every_later_event_of_the_topics(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver()
    wh = hook(api, owner, rec.url)
    for i in range(3):
        create_user(api, owner, ["sales"], name=f"User {i}")
    calls = rec.wait_calls(3)
    ids = sorted((json.loads(c["body"])["id"] for c in calls),
                 key=lambda s: tuple(int(p) for p in s.split("-")))
    r = post(api, owner, f"/v1/webhooks/{wh['id']}/replay", {"since": ids[0]})
    assert r.status_code == 202, r.text
    assert r.json()["replayed"] >= 2 and r.json()["has_more"] is False
    more = rec.wait_calls(5)[3:]
    assert sorted(json.loads(c["body"])["id"] for c in more) == sorted(ids[1:])
    by_event = {json.loads(c["body"])["id"]: c["headers"]["webhook-id"] for c in calls}
    for c in more:
        assert c["headers"]["webhook-id"] == by_event[json.loads(c["body"])["id"]]
        verify(wh["secret"], c)
    time.sleep(1.0)
    assert len(rec.calls) == 5


def test_replay_since_bad_or_expired_ids(trellis, receiver):
    """The feed's rule (GET /v1/changes): an id before what retention kept,
    or later than the tenant's newest event, is 410 resync-required;
    from the start of a stream nothing was trimmed from, all of it."""
    proc, _ = start_server(trellis, events_max_len=100, rate_limit_user_rps=100000,
                           rate_limit_user_burst=200000, rate_limit_rps=100000, rate_limit_burst=200000)
    api = Api(proc)
    owner = signup(api)
    rec = receiver()
    wh = hook(api, owner, rec.url)
    create_user(api, owner, ["sales"])
    first = json.loads(rec.wait_calls(1)[0]["body"])["id"]
    path = f"/v1/webhooks/{wh['id']}/replay"
    r = post(api, owner, path, {"since": "0-0"})  # nothing trimmed yet: everything
    assert r.status_code == 202 and r.json()["replayed"] >= 1, r.text
    rec.wait_calls(2)
    for body in ({}, {"since": "nope"}, {"since": 5}, {"since": "1-0", "x": 1}, {"since": "-1"}):
        r = post(api, owner, path, body)
        assert r.status_code in (400, 422), (body, r.text)
    r = post(api, owner, path, {"since": f"{int(time.time() * 1000) + 60000}-0"})
    assert r.status_code == 410 and r.json()["type"].endswith("/resync-required"), r.text
    for i in range(130):  # past the stream's 100 entries
        r = post(api, owner, "/v1/crm/leads", {"name": f"Lead {i}", "email": f"l{i}-{time.time_ns()}@example.com"})
        assert r.status_code == 201, r.text
    for since in (first, "1-0"):
        r = post(api, owner, path, {"since": since})
        assert r.status_code == 410, r.text
        assert r.json()["type"].endswith("/resync-required")
    time.sleep(0.5)
    assert len(rec.calls) == 2, "a refused replay sends nothing"


def test_a_paused_webhook_logs_events_as_skipped_and_resuming_sends_only_later_ones(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver()
    wh = hook(api, owner, rec.url)
    assert patch(api, owner, f"/v1/webhooks/{wh['id']}", {"active": False}).status_code == 200
    create_user(api, owner, ["sales"], name="Unheard")
    log = wait_log(api, owner, wh["id"], 1)
    assert log[0]["status"] == "skipped" and log[0]["response_code"] is None
    assert rec.calls == []
    assert patch(api, owner, f"/v1/webhooks/{wh['id']}", {"active": True}).status_code == 200
    heard = create_user(api, owner, ["sales"], name="Heard")
    event = json.loads(rec.wait_calls(1)[0]["body"])
    assert event["data"]["id"] == heard["id"]
    time.sleep(1.0)
    assert len(rec.calls) == 1, "what was skipped is not sent on resume"


def test_a_webhook_failing_for_the_configured_period_is_disabled_with_an_event(trellis, receiver):
    proc, _ = start_server(trellis, webhook_disable_after_ms=1500)
    api = Api(proc)
    owner = signup(api)
    failing = receiver(plan=(500,))
    watcher = receiver()
    wh = hook(api, owner, failing.url)
    hook(api, owner, watcher.url, topics=("admin.webhooks",))
    create_user(api, owner, ["sales"])
    failing.wait_calls(1)
    deadline = time.monotonic() + 5
    while api.get(owner, f"/v1/webhooks/{wh['id']}").json().get("failing_since") is None:
        assert time.monotonic() < deadline, "failing_since never set"
        time.sleep(0.1)
    time.sleep(1.8)
    create_user(api, owner, ["sales"])
    deadline = time.monotonic() + WAIT_S
    while api.get(owner, f"/v1/webhooks/{wh['id']}").json()["active"]:
        assert time.monotonic() < deadline, "never disabled"
        time.sleep(0.1)
    stored = api.get(owner, f"/v1/webhooks/{wh['id']}").json()
    assert stored["disabled_at"] is not None
    events = [json.loads(c["body"]) for c in watcher.wait_calls(1)]
    assert [e["event"] for e in events] == ["system.webhook.disabled"]
    assert events[0]["entity_id"] == wh["id"] and events[0]["topic"] == "admin.webhooks"
    # resuming clears the failure marks
    r = patch(api, owner, f"/v1/webhooks/{wh['id']}", {"active": True})
    assert r.status_code == 200 and r.json()["disabled_at"] is None, r.text
    assert r.json()["failing_since"] is None


def test_unknown_and_foreign_ids_are_404_and_roles_without_webhooks_are_403(trellis, receiver):
    proc, _ = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    rec = receiver()
    wh = hook(api, owner, rec.url)
    other_wh = hook(api, owner, rec.url)
    create_user(api, owner, ["sales"])
    did = wait_log(api, owner, wh["id"], 1)[0]["id"]
    missing = "0" * 24
    for method, path, body in [
            ("GET", f"/v1/webhooks/{missing}/deliveries", None),
            ("POST", f"/v1/webhooks/{missing}/rotate-secret", {}),
            ("POST", f"/v1/webhooks/{missing}/replay", {"since": "1-0"}),
            ("POST", f"/v1/webhooks/{missing}/deliveries/{did}/replay", {}),
            ("POST", f"/v1/webhooks/{wh['id']}/deliveries/{missing}/replay", {}),
            ("POST", f"/v1/webhooks/{other_wh['id']}/deliveries/{did}/replay", {}),
            ("POST", f"/v1/webhooks/nope/deliveries/{did}/replay", {})]:
        r = requests.request(method, api.base_url + path, json=body, headers=owner.headers,
                             timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 404, (path, r.text)
    stranger = signup(api)
    manager = user_session(api, owner, ["manager"])
    for acct, code in ((stranger, 404), (manager, 403)):
        for method, path, body in [
                ("GET", f"/v1/webhooks/{wh['id']}/deliveries", None),
                ("POST", f"/v1/webhooks/{wh['id']}/rotate-secret", {}),
                ("POST", f"/v1/webhooks/{wh['id']}/replay", {"since": "1-0"}),
                ("POST", f"/v1/webhooks/{wh['id']}/deliveries/{did}/replay", {})]:
            r = requests.request(method, api.base_url + path, json=body, headers=acct.headers,
                                 timeout=HTTP_TIMEOUT_S)
            assert r.status_code == code, (code, path, r.text)
    time.sleep(0.5)
    ids = [c["headers"]["webhook-id"] for c in rec.calls]
    assert len(ids) == len(set(ids)), "nothing was replayed"
