"""WebSocket push, protocol slice: the upgrade on /v1/ws, the auth handshake
(ready, bad tokens, ended sessions, the auth timeout), subscribe/unsubscribe
with per-role topic permissions, ping/pong, bad and oversized messages, and
the server closing sockets on logout, deactivation and shutdown.

Event delivery and resume are not tested here.  Every socket is a
`websockets` (13.1) sync client; a close is identified by the close frame the
server sent (code None means the TCP connection ended without one)."""

import json
import signal
import socket
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from conftest import (HTTP_TIMEOUT_S, login, random_secret, sanitizer_hits, signup,
                      user_session)

WS_PATH = "/v1/ws"
OPEN_TIMEOUT_S = 10.0        # handshake (generous: loaded 2-core box, ASan build)
CLOSE_TIMEOUT_S = 2.0        # client-side wait for the closing handshake
RECV_TIMEOUT_S = 10.0        # any reply frame
CLOSE_WAIT_S = 10.0          # the server closes a connection it means to close
AUTH_TIMEOUT_DEFAULT_S = 10  # contract: the auth frame must come within 10 s
SHORT_AUTH_TIMEOUT_S = 2     # TRELLIS_WS_AUTH_TIMEOUT of the dedicated server
REVOKE_CLOSE_S = 2.0         # "~1 s" after logout / deactivation, with slack for the box
FRAME_LIMIT = 64 * 1024

C_GOING_AWAY = 1001
C_TOO_BIG = 1009
C_REVOKED = 4001
C_AUTH_TIMEOUT = 4008
C_BAD_MESSAGE = 4400

ALL_TOPICS = ["admin.users", "crm.leads", "crm.deals", "crm.clients", "crm.tasks", "crm.claims",
              "erp.orders", "erp.stock", "erp.invoices", "erp.shipments", "bpm.tasks"]
ACCOUNT_MAX_AGE_S = 600      # re-login cached accounts before their access tokens expire


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def ws_url(target, path=WS_PATH):
    return f"ws://127.0.0.1:{target.port}{path}"


def open_ws(target, path=WS_PATH, **kw):
    kw.setdefault("open_timeout", OPEN_TIMEOUT_S)
    kw.setdefault("close_timeout", CLOSE_TIMEOUT_S)
    kw.setdefault("compression", None)
    kw.setdefault("max_size", 4 * 1024 * 1024)
    return connect(ws_url(target, path), **kw)


def send_json(ws, obj):
    ws.send(json.dumps(obj))


def describe_close(exc):
    if exc.rcvd is None:
        return "TCP closed without a close frame"
    return f"close frame {exc.rcvd.code} {exc.rcvd.reason!r}"


def decode(raw):
    if isinstance(raw, bytes):
        return ("binary", raw[:200])
    try:
        return json.loads(raw)
    except ValueError:
        return ("not-json", raw[:200])


def recv_json(ws, timeout=RECV_TIMEOUT_S, what="a frame"):
    """The next frame, which must be a text frame holding one JSON object."""
    try:
        raw = ws.recv(timeout=timeout)
    except TimeoutError:
        pytest.fail(f"no frame within {timeout}s while waiting for {what}")
    except ConnectionClosed as e:
        pytest.fail(f"connection closed ({describe_close(e)}) while waiting for {what}")
    assert isinstance(raw, str), f"expected a text frame, got binary {raw[:200]!r}"
    obj = json.loads(raw)
    assert isinstance(obj, dict), f"frame is not a JSON object: {raw[:300]!r}"
    return obj


def expect_close(ws, within=CLOSE_WAIT_S):
    """Read until the server closes. Returns (frames before the close, close
    code or None when no close frame came, seconds waited)."""
    frames = []
    t0 = time.monotonic()
    while True:
        remaining = within - (time.monotonic() - t0)
        if remaining <= 0:
            pytest.fail(f"connection still open {within}s later; frames meanwhile: {frames}")
        try:
            raw = ws.recv(timeout=remaining)
        except TimeoutError:
            pytest.fail(f"connection still open {within}s later; frames meanwhile: {frames}")
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else None
            return frames, code, time.monotonic() - t0
        frames.append(decode(raw))


def still_open(ws):
    """Ping/pong round trip on an authenticated socket: True if it answers."""
    send_json(ws, {"type": "ping"})
    frame = recv_json(ws, what="pong")
    assert frame.get("type") == "pong", f"expected pong, got {frame}"
    return True


def exchange(ws, message, timeout=RECV_TIMEOUT_S):
    """Send `message` and then a ping; return the frames that came before the
    pong (the server answers a connection's frames in order)."""
    send_json(ws, message)
    return flush(ws, timeout, what=f"the pong after {message}")


def flush(ws, timeout=RECV_TIMEOUT_S, what="the pong"):
    """Send a ping; return the frames that came before its pong."""
    send_json(ws, {"type": "ping"})
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        frame = recv_json(ws, timeout=max(deadline - time.monotonic(), 0.1),
                          what=f"{what} (so far {frames})")
        if frame.get("type") == "pong":
            return frames
        frames.append(frame)


def auth_frame(token, **extra):
    frame = {"type": "auth", "token": token}
    frame.update(extra)
    return frame


def authenticate(ws, acct, **extra):
    """Send the auth frame; return the ready frame."""
    send_json(ws, auth_frame(acct.access_token, **extra))
    ready = recv_json(ws, what="ready")
    assert ready.get("type") == "ready", f"expected a ready frame after a good auth, got {ready}"
    return ready


class authed:
    """`with authed(target, acct) as ws:` an open socket past the ready frame."""

    def __init__(self, target, acct, **extra):
        self.target, self.acct, self.extra = target, acct, extra

    def __enter__(self):
        self.ws = open_ws(self.target)
        try:
            self.ready = authenticate(self.ws, self.acct, **self.extra)
        except BaseException:
            self.ws.close()
            raise
        return self.ws

    def __exit__(self, *exc):
        self.ws.close()
        return False


def of_type(frames, kind):
    return [f for f in frames if isinstance(f, dict) and f.get("type") == kind]


def split_subscribe_reply(frames):
    """(subscribed topics or None when no subscribed frame, forbidden topics
    or None when no forbidden-topics error); anything else fails."""
    subscribed = of_type(frames, "subscribed")
    errors = of_type(frames, "error")
    other = [f for f in frames if f not in subscribed and f not in errors]
    assert not other, f"unexpected frames in the reply to subscribe: {other}"
    assert len(subscribed) <= 1 and len(errors) <= 1, f"more than one subscribed/error frame: {frames}"
    sub = None
    if subscribed:
        sub = subscribed[0].get("topics")
        assert isinstance(sub, list), f"subscribed frame without a topics list: {subscribed[0]}"
    forb = None
    if errors:
        err = errors[0]
        assert err.get("code") == "forbidden-topics", f"expected error code forbidden-topics: {err}"
        forb = err.get("topics")
        assert isinstance(forb, list), f"forbidden-topics error without a topics list: {err}"
    return sub, forb


def expired_token(stack, acct):
    now = int(time.time())
    return stack.sign(stack.claims(acct.tenant_id, acct.user_id, acct.session_id,
                                   iat=now - 3600, exp=now - 1800))


def logout(target, acct):
    r = requests.post(target.base_url + "/v1/auth/logout", headers=acct.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 204, f"logout: {r.status_code} {r.text[:300]}"


def migrated_env(trellis, **overrides):
    env = trellis.env(**overrides)
    run = trellis.run("migrate", env=env)
    assert not sanitizer_hits(run.output), run
    assert run.returncode == 0, run
    return env


# ---------------------------------------------------------------------------
# accounts (logins cost an Argon2 hash each: cache them per module)
# ---------------------------------------------------------------------------

class Accounts:
    def __init__(self, stack):
        self.stack = stack
        self.owner_acct = None
        self.cache = {}

    def _fresh(self, acct, made):
        if time.monotonic() - made < ACCOUNT_MAX_AGE_S:
            return acct, made
        return login(self.stack, acct.slug, acct.email, acct.password), time.monotonic()

    def owner(self):
        if self.owner_acct is None:
            self.owner_acct = (signup(self.stack), time.monotonic())
        self.owner_acct = self._fresh(*self.owner_acct)
        return self.owner_acct[0]

    def role(self, role):
        if role == "owner":
            return self.owner()
        if role not in self.cache:
            self.cache[role] = (user_session(self.stack, self.owner(), [role]), time.monotonic())
        self.cache[role] = self._fresh(*self.cache[role])
        return self.cache[role][0]


@pytest.fixture(scope="module")
def accounts(stack):
    return Accounts(stack)


@pytest.fixture
def owner(accounts):
    return accounts.owner()


@pytest.fixture
def sales(accounts):
    return accounts.role("sales")


# ---------------------------------------------------------------------------
# the upgrade
# ---------------------------------------------------------------------------

def test_upgrade_on_v1_ws_is_accepted(stack):
    ws = open_ws(stack)
    try:
        assert ws.response.status_code == 101, ws.response
    finally:
        ws.close()


@pytest.mark.parametrize("path", ["/v1/wss", "/v1/ws/extra", "/ws", "/v1/nope", "/v1/tags"])
def test_upgrade_on_another_path_is_refused_with_4xx(stack, path):
    try:
        ws = open_ws(stack, path)
    except InvalidStatus as e:
        status = e.response.status_code
        assert 400 <= status < 500, f"upgrade on {path} answered {status}, expected 4xx"
        return
    except (InvalidHandshake, EOFError, OSError) as e:
        pytest.fail(f"upgrade on {path}: expected an HTTP 4xx response, got {e!r} ({e.__cause__!r})")
    ws.close()
    pytest.fail(f"upgrade on {path} was accepted as a WebSocket")


def test_upgrade_offering_permessage_deflate_still_works(stack, owner):
    ws = open_ws(stack, compression="deflate")
    try:
        authenticate(ws, owner)
        assert still_open(ws)
    finally:
        ws.close()


# ---------------------------------------------------------------------------
# auth
# ---------------------------------------------------------------------------

def test_good_auth_gets_ready_with_user_tenant_and_null_last_event_id(stack, owner):
    ws = open_ws(stack)
    try:
        ready = authenticate(ws, owner)
    finally:
        ws.close()
    assert ready["user_id"] == owner.user_id, ready
    assert ready["tenant_id"] == owner.tenant_id, ready
    assert "last_event_id" in ready and ready["last_event_id"] is None, ready


def test_ready_of_a_sales_user_names_that_user(stack, sales):
    ws = open_ws(stack)
    try:
        ready = authenticate(ws, sales)
    finally:
        ws.close()
    assert ready["user_id"] == sales.user_id and ready["tenant_id"] == sales.tenant_id, ready


def test_auth_without_topics_sends_nothing_after_ready(stack, owner):
    with authed(stack, owner) as ws:
        send_json(ws, {"type": "ping"})
        frame = recv_json(ws, what="pong")
        assert frame.get("type") == "pong", f"expected only pong after ready, got {frame}"


def test_auth_with_topics_is_followed_by_subscribed(stack, owner):
    with authed(stack, owner, topics=["crm.leads", "erp.orders"]) as ws:
        frames = flush(ws)  # what followed ready
    sub, forb = split_subscribe_reply(frames)
    assert sub is not None and sorted(sub) == ["crm.leads", "erp.orders"], frames
    assert not forb, frames


def test_auth_with_a_forbidden_topic_subscribes_the_rest_and_lists_it(stack, sales):
    with authed(stack, sales, topics=["crm.leads", "admin.users"]) as ws:
        frames = flush(ws)
    sub, forb = split_subscribe_reply(frames)
    assert sub == ["crm.leads"], f"expected subscribed [crm.leads]: {frames}"
    assert forb == ["admin.users"], f"expected forbidden-topics [admin.users]: {frames}"


@pytest.mark.parametrize("kind", ["garbage", "expired", "other-key", "unknown-session"])
def test_bad_token_at_auth_is_closed_4001(stack, owner, kind):
    if kind == "garbage":
        token = "not-a-jwt." + random_secret(20)
    elif kind == "expired":
        token = expired_token(stack, owner)
    elif kind == "other-key":
        token = stack.sign(stack.claims(owner.tenant_id, owner.user_id, owner.session_id),
                           key=random_secret(48))
    else:
        token = stack.principal(tenant_id=owner.tenant_id, create_session=False).token
    ws = open_ws(stack)
    try:
        send_json(ws, auth_frame(token))
        frames, code, _ = expect_close(ws)
    finally:
        ws.close()
    assert not of_type(frames, "ready"), f"ready sent for a {kind} token: {frames}"
    assert code == C_REVOKED, f"{kind} token: expected close 4001, got {code}; frames {frames}"


@pytest.mark.parametrize("variant", ["missing", "number", "null", "empty"])
def test_auth_without_a_usable_token_is_closed_without_ready(stack, variant):
    frame = {"type": "auth"}
    if variant != "missing":
        frame["token"] = {"number": 12345, "null": None, "empty": ""}[variant]
    ws = open_ws(stack)
    try:
        send_json(ws, frame)
        frames, code, _ = expect_close(ws)
    finally:
        ws.close()
    assert not of_type(frames, "ready"), frames
    assert code in (C_REVOKED, C_BAD_MESSAGE), f"token {variant}: expected close 4001 or 4400, got {code}"


def test_token_of_a_logged_out_session_is_closed_4001_at_auth(stack, owner):
    acct = login(stack, owner.slug, owner.email)
    logout(stack, acct)
    ws = open_ws(stack)
    try:
        send_json(ws, auth_frame(acct.access_token))
        frames, code, _ = expect_close(ws)
    finally:
        ws.close()
    assert not of_type(frames, "ready"), frames
    assert code == C_REVOKED, f"expected close 4001, got {code}; frames {frames}"


def test_token_of_a_deactivated_user_is_closed_4001_at_auth(stack, owner):
    acct = user_session(stack, owner, ["sales"])
    r = stack.delete(f"/v1/users/{acct.user_id}", headers=owner.headers)
    assert r.status_code == 204, r.text
    ws = open_ws(stack)
    try:
        send_json(ws, auth_frame(acct.access_token))
        frames, code, _ = expect_close(ws)
    finally:
        ws.close()
    assert not of_type(frames, "ready"), frames
    assert code == C_REVOKED, f"expected close 4001, got {code}; frames {frames}"


@pytest.mark.parametrize("first", [{"type": "ping"}, {"type": "subscribe", "topics": ["crm.leads"]},
                                   {"type": "unknown-thing"}])
def test_first_frame_other_than_auth_gets_auth_required_then_4001(stack, first):
    ws = open_ws(stack)
    try:
        send_json(ws, first)
        frames, code, _ = expect_close(ws)
    finally:
        ws.close()
    errors = of_type(frames, "error")
    assert [e.get("code") for e in errors] == ["auth-required"], f"frames before close: {frames}"
    assert not of_type(frames, "pong") and not of_type(frames, "subscribed"), frames
    assert code == C_REVOKED, f"expected close 4001, got {code}"


def test_non_json_first_frame_gets_bad_message_then_4400(stack):
    ws = open_ws(stack)
    try:
        ws.send("this is not json")
        frames, code, _ = expect_close(ws)
    finally:
        ws.close()
    assert [e.get("code") for e in of_type(frames, "error")] == ["bad-message"], frames
    assert code == C_BAD_MESSAGE, f"expected close 4400, got {code}"


def test_no_auth_frame_closes_4008_after_the_default_10_seconds(stack):
    ws = open_ws(stack)
    try:
        frames, code, waited = expect_close(ws, within=AUTH_TIMEOUT_DEFAULT_S + 6)
    finally:
        ws.close()
    assert code == C_AUTH_TIMEOUT, f"expected close 4008, got {code} after {waited:.1f}s; frames {frames}"
    assert waited >= AUTH_TIMEOUT_DEFAULT_S - 1, f"closed after only {waited:.1f}s (< 10 s allowed for auth)"


def test_no_auth_frame_closes_4008_after_the_configured_timeout(stack, trellis):
    server = trellis.start("serve", env=migrated_env(trellis, ws_auth_timeout=SHORT_AUTH_TIMEOUT_S))
    try:
        server.wait_ready()
        ws = open_ws(server)
        try:
            frames, code, waited = expect_close(ws, within=SHORT_AUTH_TIMEOUT_S + 6)
        finally:
            ws.close()
        assert code == C_AUTH_TIMEOUT, f"expected close 4008, got {code} after {waited:.1f}s; frames {frames}"
        assert waited >= SHORT_AUTH_TIMEOUT_S - 1, f"closed after only {waited:.1f}s"
        assert server.alive(), server.output_tail()
    finally:
        server.kill()


# ---------------------------------------------------------------------------
# messages after auth
# ---------------------------------------------------------------------------

def test_ping_gets_pong(stack, owner):
    with authed(stack, owner) as ws:
        send_json(ws, {"type": "ping"})
        assert recv_json(ws, what="pong").get("type") == "pong"


WS_RATE_BURST = 40  # default ws_rate_burst: frames a client may send at once


def test_a_burst_of_pings_gets_a_pong_each_and_nothing_else(stack, owner):
    # within the per-connection frame budget every ping is answered, in order
    with authed(stack, owner) as ws:
        n = WS_RATE_BURST - 5  # the auth frame spent one token
        for _ in range(n):
            send_json(ws, {"type": "ping"})
        got = [recv_json(ws, what=f"pong {i + 1} of {n}") for i in range(n)]
        assert [f.get("type") for f in got] == ["pong"] * n, [f for f in got if f.get("type") != "pong"]
        # and nothing beyond: the next reply is to the next request
        frames = exchange(ws, {"type": "subscribe", "topics": ["crm.leads"]})
        assert [f.get("type") for f in frames] == ["subscribed"], frames


def test_frames_past_the_rate_limit_are_dropped_with_one_error_and_the_socket_stays(stack, owner):
    with authed(stack, owner) as ws:
        for _ in range(200):
            send_json(ws, {"type": "ping"})
        types = []
        deadline = time.monotonic() + RECV_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                f = decode(ws.recv(timeout=1.0))
            except TimeoutError:
                break
            types.append(f.get("type") if f.get("type") != "error" else "error:" + str(f.get("code")))
        pongs = types.count("pong")
        assert WS_RATE_BURST - 1 <= pongs < 200, types
        assert types.count("error:rate-limited") == 1, types
        # the budget refills: after a pause the client is served again
        time.sleep(1.5)
        send_json(ws, {"type": "ping"})
        assert recv_json(ws, what="a pong after the pause").get("type") == "pong"
        assert still_open(ws)


def test_protocol_level_ping_gets_pong(stack, owner):
    with authed(stack, owner) as ws:
        pong = ws.ping(b"hello")
        assert pong.wait(RECV_TIMEOUT_S), "no WebSocket pong to a WebSocket ping"
        assert still_open(ws)


def test_unknown_type_gets_unknown_type_error_and_stays_open(stack, owner):
    with authed(stack, owner) as ws:
        send_json(ws, {"type": "frobnicate"})
        err = recv_json(ws, what="the unknown-type error")
        assert err.get("type") == "error" and err.get("code") == "unknown-type", err
        assert isinstance(err.get("message"), str) and err["message"], err
        assert still_open(ws)


@pytest.mark.parametrize("payload", ["this is not json", "{\"type\": \"ping\"", "[1, 2]", "42",
                                     "\"ping\"", "null"])
def test_non_object_frame_after_auth_gets_bad_message_then_4400(stack, owner, payload):
    with authed(stack, owner) as ws:
        ws.send(payload)
        frames, code, _ = expect_close(ws)
    errors = of_type(frames, "error")
    assert [e.get("code") for e in errors] == ["bad-message"], f"frames before close: {frames}"
    assert isinstance(errors[0].get("message"), str), errors[0]
    assert code == C_BAD_MESSAGE, f"{payload!r}: expected close 4400, got {code}"


def test_frame_over_64_kib_is_closed_1009_or_4400(stack, owner):
    big = '{"type": "ping"' + " " * (FRAME_LIMIT + 4096) + "}"
    with authed(stack, owner) as ws:
        ws.send(big)
        frames, code, _ = expect_close(ws)
    assert not of_type(frames, "pong"), f"an oversized frame was answered: {frames}"
    assert code in (C_TOO_BIG, C_BAD_MESSAGE), f"expected close 1009 or 4400, got {code}"


def test_message_over_64_kib_in_fragments_is_closed_1009_or_4400(stack, owner):
    body = '{"type": "ping"' + " " * (FRAME_LIMIT + 4096) + "}"
    chunks = [body[i:i + 16384] for i in range(0, len(body), 16384)]
    with authed(stack, owner) as ws:
        try:
            ws.send(chunks)
        except ConnectionClosed as e:
            # the server may close as soon as the message outgrows the
            # limit, while the client is still sending the rest
            frames, code = [], e.rcvd.code if e.rcvd is not None else None
        else:
            frames, code, _ = expect_close(ws)
    assert not of_type(frames, "pong"), f"an oversized message was answered: {frames}"
    assert code in (C_TOO_BIG, C_BAD_MESSAGE), f"expected close 1009 or 4400, got {code}"


def test_frame_just_under_64_kib_is_accepted(stack, owner):
    body = '{"type": "ping"' + " " * (FRAME_LIMIT - 1024) + "}"
    with authed(stack, owner) as ws:
        ws.send(body)
        frame = recv_json(ws, what="pong to a 63 KiB ping")
        assert frame.get("type") == "pong", frame


def test_message_in_fragments_is_answered_once_whole(stack, owner):
    with authed(stack, owner) as ws:
        ws.send(['{"type"', ': "pi', 'ng"}'])
        frame = recv_json(ws, what="pong to a fragmented ping")
        assert frame.get("type") == "pong", frame
        assert still_open(ws)


# ---------------------------------------------------------------------------
# subscribe / unsubscribe
# ---------------------------------------------------------------------------

def test_subscribe_allowed_topics_gets_subscribed_with_them(stack, owner):
    with authed(stack, owner) as ws:
        frames = exchange(ws, {"type": "subscribe", "topics": ["crm.leads", "bpm.tasks"]})
    sub, forb = split_subscribe_reply(frames)
    assert sub is not None and sorted(sub) == ["bpm.tasks", "crm.leads"], frames
    assert not forb, frames


def test_owner_may_subscribe_every_known_topic(stack, owner):
    with authed(stack, owner) as ws:
        frames = exchange(ws, {"type": "subscribe", "topics": ALL_TOPICS})
    sub, forb = split_subscribe_reply(frames)
    assert sub is not None and sorted(sub) == sorted(ALL_TOPICS), frames
    assert not forb, f"owner refused {forb}"


def test_unknown_topic_is_listed_in_forbidden_topics(stack, owner):
    with authed(stack, owner) as ws:
        frames = exchange(ws, {"type": "subscribe", "topics": ["nope.x"]})
    sub, forb = split_subscribe_reply(frames)
    assert forb == ["nope.x"], frames
    assert not sub, f"an unknown topic was subscribed: {frames}"


def test_mixed_subscribe_sends_both_subscribed_and_forbidden_topics(stack, owner):
    with authed(stack, owner) as ws:
        frames = exchange(ws, {"type": "subscribe", "topics": ["crm.leads", "nope.x"]})
    sub, forb = split_subscribe_reply(frames)
    assert sub == ["crm.leads"], frames
    assert forb == ["nope.x"], frames


# (role, topic, may subscribe).  admin.users (user, role and API key changes)
# is for owners and admins: it needs the users, roles and API keys read
# permissions, which a manager lacks.  crm.*, erp.* and bpm.tasks follow
# <topic>.read (or its :own form).
TOPIC_MATRIX = [
    ("admin", "admin.users", True),
    ("manager", "admin.users", False),
    ("sales", "admin.users", False),
    ("employee", "admin.users", False),
    ("sales", "crm.leads", True),
    ("sales", "crm.deals", True),
    ("sales", "crm.clients", True),
    ("sales", "crm.tasks", True),
    ("sales", "crm.claims", True),
    ("employee", "crm.leads", False),
    ("employee", "crm.clients", True),
    ("manager", "crm.claims", True),
    ("sales", "erp.orders", False),
    ("manager", "erp.orders", True),
    ("warehouse", "erp.stock", True),
    ("warehouse", "erp.invoices", False),
    ("accountant", "erp.invoices", True),
    ("employee", "erp.shipments", False),
    ("employee", "bpm.tasks", True),
    ("sales", "bpm.tasks", True),
]


@pytest.mark.parametrize("role,topic,allowed", TOPIC_MATRIX,
                         ids=[f"{r}-{t}-{'ok' if a else 'forbidden'}" for r, t, a in TOPIC_MATRIX])
def test_topic_permission_by_role(stack, accounts, role, topic, allowed):
    acct = accounts.role(role)
    with authed(stack, acct) as ws:
        frames = exchange(ws, {"type": "subscribe", "topics": [topic]})
    sub, forb = split_subscribe_reply(frames)
    if allowed:
        assert sub == [topic], f"{role} should be subscribed to {topic}: {frames}"
        assert not forb, f"{role} refused {topic}: {frames}"
    else:
        assert forb == [topic], f"{role} should get forbidden-topics [{topic}]: {frames}"
        assert not sub, f"{role} was subscribed to {topic}: {frames}"


def test_unsubscribe_gets_unsubscribed_with_the_topics(stack, owner):
    with authed(stack, owner) as ws:
        exchange(ws, {"type": "subscribe", "topics": ["crm.leads", "crm.deals"]})
        frames = exchange(ws, {"type": "unsubscribe", "topics": ["crm.leads"]})
    assert len(frames) == 1 and frames[0].get("type") == "unsubscribed", frames
    assert frames[0].get("topics") == ["crm.leads"], frames


def test_subscribe_again_after_unsubscribe_is_allowed(stack, owner):
    with authed(stack, owner) as ws:
        exchange(ws, {"type": "subscribe", "topics": ["crm.deals"]})
        exchange(ws, {"type": "unsubscribe", "topics": ["crm.deals"]})
        frames = exchange(ws, {"type": "subscribe", "topics": ["crm.deals"]})
    sub, forb = split_subscribe_reply(frames)
    assert sub == ["crm.deals"] and not forb, frames


# ---------------------------------------------------------------------------
# the server closing sockets: logout, deactivation, shutdown
# ---------------------------------------------------------------------------

def test_logout_closes_the_sessions_socket_4001_within_about_a_second(stack, owner):
    acct = login(stack, owner.slug, owner.email)
    with authed(stack, acct) as ws:
        logout(stack, acct)
        frames, code, waited = expect_close(ws, within=CLOSE_WAIT_S)
    assert code == C_REVOKED, f"expected close 4001 after logout, got {code}; frames {frames}"
    assert waited <= REVOKE_CLOSE_S, f"closed {waited:.2f}s after logout (expected ~1 s)"


def test_logout_closes_every_socket_of_the_session(stack, owner):
    acct = login(stack, owner.slug, owner.email)
    with authed(stack, acct) as ws1, authed(stack, acct) as ws2:
        logout(stack, acct)
        codes = [expect_close(ws1)[1], expect_close(ws2)[1]]
    assert codes == [C_REVOKED, C_REVOKED], f"close codes of the session's two sockets: {codes}"


def test_logout_leaves_another_users_socket_open(stack, owner):
    acct = user_session(stack, owner, ["sales"])
    with authed(stack, owner) as other, authed(stack, acct) as ws:
        logout(stack, acct)
        _, code, _ = expect_close(ws)
        assert code == C_REVOKED, code
        assert still_open(other)


def test_logout_leaves_another_session_of_the_same_user_open(stack, owner):
    first = login(stack, owner.slug, owner.email)
    second = login(stack, owner.slug, owner.email)
    assert first.session_id != second.session_id
    with authed(stack, second) as kept, authed(stack, first) as ws:
        logout(stack, first)
        _, code, _ = expect_close(ws)
        assert code == C_REVOKED, code
        assert still_open(kept)


def test_deactivating_the_user_closes_their_socket_4001_within_about_a_second(stack, owner):
    acct = user_session(stack, owner, ["sales"])
    with authed(stack, acct) as ws:
        r = stack.delete(f"/v1/users/{acct.user_id}", headers=owner.headers)
        assert r.status_code == 204, r.text
        frames, code, waited = expect_close(ws, within=CLOSE_WAIT_S)
    assert code == C_REVOKED, f"expected close 4001 after deactivation, got {code}; frames {frames}"
    assert waited <= REVOKE_CLOSE_S, f"closed {waited:.2f}s after deactivation (expected ~1 s)"


def test_deactivating_a_user_leaves_other_users_sockets_open(stack, owner):
    acct = user_session(stack, owner, ["sales"])
    other_tenant = signup(stack)
    with authed(stack, owner) as same_tenant, authed(stack, other_tenant) as foreign, \
            authed(stack, acct) as ws:
        r = stack.delete(f"/v1/users/{acct.user_id}", headers=owner.headers)
        assert r.status_code == 204, r.text
        _, code, _ = expect_close(ws)
        assert code == C_REVOKED, code
        assert still_open(same_tenant)
        assert still_open(foreign)


def test_logout_after_the_client_dropped_its_socket_is_harmless(stack, owner):
    acct = login(stack, owner.slug, owner.email)
    ws = open_ws(stack)
    authenticate(ws, acct)
    ws.socket.shutdown(socket.SHUT_RDWR)  # no closing handshake
    ws.socket.close()
    time.sleep(0.5)
    logout(stack, acct)
    with authed(stack, owner) as again:
        assert still_open(again)


def test_client_close_is_answered_with_a_close_frame(stack, owner):
    ws = open_ws(stack)
    authenticate(ws, owner)
    ws.close()
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None, "server did not answer the client's close frame"
    assert rcvd.code == 1000, f"server answered close 1000 with {rcvd.code}"


def test_sigterm_closes_open_sockets_with_1001(stack, trellis):
    server = trellis.start("serve", env=migrated_env(trellis))
    try:
        server.wait_ready()
        acct = signup(server)
        ws = open_ws(server)
        try:
            authenticate(ws, acct)
            server.signal(signal.SIGTERM)
            frames, code, waited = expect_close(ws, within=15)
        finally:
            ws.close()
        assert code == C_GOING_AWAY, f"expected close 1001 on shutdown, got {code} after {waited:.1f}s"
    finally:
        server.kill()


def test_server_with_an_open_socket_exits_0_after_sigterm(stack, trellis):
    server = trellis.start("serve", env=migrated_env(trellis))
    try:
        server.wait_ready()
        acct = signup(server)
        ws = open_ws(server)
        try:
            authenticate(ws, acct)
            server.signal(signal.SIGTERM)
            code = server.wait_exit(20)
        finally:
            ws.close()
        assert code == 0, f"exit {code} after SIGTERM with an open WebSocket:\n{server.output_tail()}"
        assert not sanitizer_hits(server.output()), server.output_tail()
    finally:
        server.kill()

