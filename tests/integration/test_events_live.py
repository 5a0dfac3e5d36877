"""Live events over /v1/ws: delivery of admin.users events, their shape,
resume after a disconnect, resync, tenant isolation.  Black-box: the real
server, FerretDB and Redis of the session stack."""

import json
import time

import requests
from websockets.sync.client import connect

from conftest import HTTP_TIMEOUT_S, create_user, signup, user_session

RECV_S = 10.0


def ws_open(stack):
    return connect(stack.base_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10,
                   close_timeout=2, max_size=2 ** 22)


def recv(ws, timeout=RECV_S):
    return json.loads(ws.recv(timeout=timeout))


def auth(ws, acct, **extra):
    frame = {"type": "auth", "token": acct.access_token}
    frame.update(extra)
    ws.send(json.dumps(frame))
    ready = recv(ws)
    assert ready["type"] == "ready", ready
    return ready


def until_type(ws, kind, timeout=RECV_S):
    """Frames up to and including the first of `kind`."""
    frames, deadline = [], time.monotonic() + timeout
    while True:
        f = recv(ws, max(deadline - time.monotonic(), 0.05))
        frames.append(f)
        if f["type"] == kind:
            return frames


def events(ws, n, timeout=RECV_S):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n:
        f = recv(ws, max(deadline - time.monotonic(), 0.05))
        if f["type"] == "event":
            got.append(f)
    return got


def no_event(ws, wait=1.0):
    """No event frame arrives within `wait` seconds (a ping's pong ends it)."""
    time.sleep(wait)
    ws.send(json.dumps({"type": "ping"}))
    frames = until_type(ws, "pong")
    assert [f for f in frames if f["type"] == "event"] == [], frames


def rename(stack, owner, user_id, name):
    r = requests.patch(f"{stack.base_url}/v1/users/{user_id}", json={"name": name},
                       headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text
    return r.json()


def test_user_created_reaches_a_subscribed_owner_with_the_resource(stack):
    owner = signup(stack)
    with ws_open(stack) as ws:
        auth(ws, owner, topics=["admin.users"])
        until_type(ws, "subscribed")
        user = create_user(stack, owner, ["sales"], name="Sam Sales")
        ev = events(ws, 1)[0]
        assert ev["topic"] == "admin.users" and ev["event"] == "system.user.created", ev
        assert ev["entity_id"] == user["id"], ev
        assert ev["data"] == user, (ev["data"], user)
        assert ev["actor"] == owner.user_id
        assert isinstance(ev["id"], str) and "-" in ev["id"]
        assert ev["ts"].endswith("Z")


def test_resume_gets_exactly_the_missed_events_in_order(stack):
    owner = signup(stack)
    user = create_user(stack, owner, ["sales"])
    with ws_open(stack) as ws:
        auth(ws, owner, topics=["admin.users"])
        until_type(ws, "subscribed")
        rename(stack, owner, user["id"], "before")
        last = events(ws, 1)[0]["id"]
    for i in range(50):
        rename(stack, owner, user["id"], f"n{i}")
    with ws_open(stack) as ws:
        auth(ws, owner, topics=["admin.users"], resume_from=last)
        got = events(ws, 50)
        assert [e["data"]["name"] for e in got] == [f"n{i}" for i in range(50)]
        ids = [e["id"] for e in got]
        assert len(set(ids)) == 50
        no_event(ws)
        rename(stack, owner, user["id"], "live")  # then live, no gap
        assert events(ws, 1)[0]["data"]["name"] == "live"


def test_resume_from_an_unknown_id_is_told_to_resync(stack):
    owner = signup(stack)
    with ws_open(stack) as ws:
        auth(ws, owner, topics=["admin.users"], resume_from="99999999999999-0")
        frames = until_type(ws, "resync_required")
        assert frames[-1]["reason"]


def test_another_tenant_never_sees_the_event(stack):
    a, b = signup(stack), signup(stack)
    with ws_open(stack) as wa, ws_open(stack) as wb:
        auth(wa, a, topics=["admin.users"])
        auth(wb, b, topics=["admin.users"])
        until_type(wa, "subscribed")
        until_type(wb, "subscribed")
        create_user(stack, a, ["sales"])
        assert events(wa, 1)[0]["event"] == "system.user.created"
        no_event(wb)
