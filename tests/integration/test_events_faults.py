"""Live events under faults: several server processes on one database and
Redis, resume after a disconnect, a server killed between its write and the
publish (the outbox relay), Redis restarted under load, a client too slow to
read, tenant and role isolation, stream retention, revocation across
processes.

Black-box: the real server binary (ASan build), FerretDB and Redis.  Extra
server processes are started through the `trellis` launcher; the tests that
pause or restart Redis give their processes a private redis-server so that
the session's server is not disturbed."""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import redis as redis_lib
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import (REDIS_CLUSTER, HTTP_TIMEOUT_S, create_user, free_port, login, port_open,
                      sanitizer_hits, signup, stop_process, tail, user_session)

WS_PATH = "/v1/ws"
OPEN_TIMEOUT_S = 10.0
RECV_S = 10.0
TOPIC = "admin.users"

C_RESTART = 1012       # pub/sub to Redis lost: reconnect and resume
C_INTERNAL = 1011      # events could not be read: reconnect and resume
C_REVOKED = 4001
C_TOO_SLOW = 4009

# for the processes these tests start: no rate limit gets in the way of a
# test that writes hundreds of events
NO_RATE_LIMITS = dict(rate_limit_rps=100000, rate_limit_burst=200000,
                      rate_limit_user_rps=100000, rate_limit_user_burst=200000)


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

def migrated_env(trellis, **overrides):
    env = trellis.env(**overrides)
    run = trellis.run("migrate", env=env)
    assert not sanitizer_hits(run.output), run
    assert run.returncode == 0, run
    return env


def start_server(trellis, env):
    server = trellis.start("serve", env=env)
    server.wait_ready()
    return server


def stop_clean(server):
    """SIGTERM; the process exits 0 and its log has no sanitizer report."""
    server.signal(signal.SIGTERM)
    code = server.wait_exit(20)
    assert code == 0, f"exit {code} after SIGTERM:\n{server.output_tail()}"
    hits = sanitizer_hits(server.output())
    assert not hits, f"sanitizer report {hits} in the server log:\n{server.output_tail(120)}"


class PrivateRedis:
    """A redis-server of one test (append-only, like the stack's)."""

    def __init__(self, stack):
        self.bin = stack.redis_bin
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=stack.tmpdir)
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout=20.0):
        assert self.proc is None or self.proc.poll() is not None, "redis already running"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.bin, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                 "--appendonly", "yes", "--save", "", "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.proc.returncode}:\n{tail(self.log_path)}")
            try:
                with self.client(timeout=1) as probe:
                    if probe.ping():
                        return
            except redis_lib.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis did not answer within {timeout}s:\n{tail(self.log_path)}")

    def stop(self):
        stop_process(self.proc, timeout=15)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not port_open(self.port), "private redis still listening after stop"

    def client(self, timeout=5):
        return redis_lib.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                               socket_timeout=timeout, socket_connect_timeout=timeout)


@pytest.fixture
def private_redis(stack):
    if REDIS_CLUSTER:
        pytest.skip("starts and stops a single Redis of its own")
    started = []

    def make():
        r = PrivateRedis(stack)
        r.start()
        started.append(r)
        return r

    yield make
    for r in started:
        stop_process(r.proc, timeout=10)


def metric(target, name, labels=""):
    """A sample of /metrics (0 when absent)."""
    r = requests.get(target.base_url + "/metrics", timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text[:300]
    m = re.search(r"^" + re.escape(name + labels) + r" (\S+)$", r.text, re.M)
    return float(m.group(1)) if m else 0.0


# ---------------------------------------------------------------------------
# HTTP writes that produce events
# ---------------------------------------------------------------------------

def patch_user(target, acct, uid, body, timeout=HTTP_TIMEOUT_S):
    return requests.patch(f"{target.base_url}/v1/users/{uid}", json=body, headers=acct.headers,
                          timeout=timeout)


def rename(target, acct, uid, name):
    """PATCH the user's name (waiting out a 429); returns the user."""
    deadline = time.monotonic() + 30
    while True:
        r = patch_user(target, acct, uid, {"name": name})
        if r.status_code == 429 and time.monotonic() < deadline:
            time.sleep(min(float(r.headers.get("Retry-After", "1") or 1), 1.0))
            continue
        assert r.status_code == 200, f"PATCH name={name!r}: {r.status_code} {r.text[:300]}"
        return r.json()


# ---------------------------------------------------------------------------
# WebSocket clients
# ---------------------------------------------------------------------------

def ws_url(target):
    return f"ws://127.0.0.1:{target.port}{WS_PATH}"


def ws_open(target, **kw):
    kw.setdefault("open_timeout", OPEN_TIMEOUT_S)
    kw.setdefault("close_timeout", 2)
    kw.setdefault("compression", None)
    kw.setdefault("max_size", 2 ** 23)
    return connect(ws_url(target), **kw)


def recv(ws, timeout=RECV_S, what="a frame"):
    try:
        raw = ws.recv(timeout=timeout)
    except TimeoutError:
        pytest.fail(f"no frame within {timeout:.1f}s while waiting for {what}")
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        pytest.fail(f"connection closed ({code}) while waiting for {what}")
    return json.loads(raw)


def auth(ws, acct, **extra):
    frame = {"type": "auth", "token": acct.access_token}
    frame.update(extra)
    ws.send(json.dumps(frame))
    ready = recv(ws, what="ready")
    assert ready.get("type") == "ready", f"expected ready, got {ready}"
    return ready


def subscribed(ws, acct, topics=(TOPIC,), **extra):
    """Auth with topics; returns (ready, frames up to and including subscribed)."""
    ready = auth(ws, acct, topics=list(topics), **extra)
    frames = []
    while True:
        f = recv(ws, what="subscribed")
        frames.append(f)
        if f["type"] == "subscribed":
            assert sorted(f["topics"]) == sorted(topics), frames
            return ready, frames
        assert f["type"] in ("resync_required",), f"unexpected frame before subscribed: {frames}"


def flush(ws, timeout=RECV_S):
    """Ping; the frames that came before the pong."""
    ws.send(json.dumps({"type": "ping"}))
    frames, deadline = [], time.monotonic() + timeout
    while True:
        f = recv(ws, max(deadline - time.monotonic(), 0.05), what=f"pong (so far {frames})")
        if f["type"] == "pong":
            return frames
        frames.append(f)


def events(ws, n, timeout=RECV_S, stamp=False):
    """The next n event frames (other frames must be subscribed/pong only).
    With stamp=True, (frame, arrival monotonic time) pairs."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"only {len(got)} of {n} events within {timeout}s: "
                        f"{[e[0] if stamp else e for e in got][-3:]}")
        f = recv(ws, remaining, what=f"event {len(got) + 1} of {n}")
        if f["type"] == "event":
            got.append((f, time.monotonic()) if stamp else f)
        else:
            assert f["type"] in ("subscribed", "pong"), f"unexpected frame among events: {f}"
    return got


def no_event(ws, wait=1.0):
    time.sleep(wait)
    frames = flush(ws)
    evs = [f for f in frames if f["type"] == "event"]
    assert evs == [], f"unexpected events: {evs}"
    return frames


def evid(s):
    ms, seq = s.split("-")
    return int(ms), int(seq)


def assert_increasing(ids, who="client"):
    keys = [evid(i) for i in ids]
    for a, b, ia, ib in zip(keys, keys[1:], ids, ids[1:]):
        assert a < b, f"{who}: event ids not strictly increasing: {ia} then {ib}"


def close_code(exc):
    return exc.rcvd.code if exc.rcvd is not None else None


def expect_close(ws, within):
    """Frames until the server closes; (frames, close code or None, seconds)."""
    frames, t0 = [], time.monotonic()
    while True:
        remaining = within - (time.monotonic() - t0)
        if remaining <= 0:
            pytest.fail(f"connection still open {within}s later; frames: {frames}")
        try:
            raw = ws.recv(timeout=remaining)
        except TimeoutError:
            pytest.fail(f"connection still open {within}s later; frames: {frames}")
        except ConnectionClosed as e:
            return frames, close_code(e), time.monotonic() - t0
        frames.append(json.loads(raw))


# ---------------------------------------------------------------------------
# 1. two processes on one database and Redis
# ---------------------------------------------------------------------------

def test_change_through_one_process_reaches_a_client_of_the_other(stack, trellis):
    db = trellis.fresh_db("ev2p")
    a = start_server(trellis, migrated_env(trellis, db=db))
    b = start_server(trellis, trellis.env(db=db))
    owner = signup(a)
    user = create_user(a, owner, ["sales"], name="Before")
    with ws_open(b) as on_b, ws_open(a) as on_a:
        subscribed(on_b, owner)
        subscribed(on_a, owner)
        for i in range(3):
            rename(a, owner, user["id"], f"via-a-{i}")
            t_resp = time.monotonic()
            ev, t_got = events(on_b, 1, timeout=5, stamp=True)[0]
            assert ev["event"] == "system.user.updated" and ev["entity_id"] == user["id"], ev
            assert ev["data"]["name"] == f"via-a-{i}", ev
            assert t_got - t_resp <= 2.0, f"event reached process B {t_got - t_resp:.2f}s after the response"
        # and the other way round: a change through B reaches a client of A
        rename(b, owner, user["id"], "via-b")
        t_resp = time.monotonic()
        on_a_got = events(on_a, 4, timeout=5, stamp=True)
        assert [e["data"]["name"] for e, _ in on_a_got] == ["via-a-0", "via-a-1", "via-a-2", "via-b"]
        ev, t_got = on_a_got[-1]
        assert t_got - t_resp <= 2.0, f"event reached process A {t_got - t_resp:.2f}s after the response"
        # every event exactly once on each side
        assert [e["data"]["name"] for e in events(on_b, 1, timeout=5)] == ["via-b"]
        no_event(on_a, 0.5)
        no_event(on_b, 0.1)
    stop_clean(a)
    stop_clean(b)


# ---------------------------------------------------------------------------
# 2. resume
# ---------------------------------------------------------------------------

def _offline_changes(stack, owner, uid, n, prefix):
    """A subscribed client notes the last id, disconnects; n changes happen."""
    with ws_open(stack) as ws:
        subscribed(ws, owner)
        rename(stack, owner, uid, f"{prefix}-before")
        last = events(ws, 1)[0]
        assert last["data"]["name"] == f"{prefix}-before", last
    for i in range(n):
        rename(stack, owner, uid, f"{prefix}{i}")
    return last["id"]


def _writer(stack, owner, uid, names, errors):
    def run():
        try:
            for name in names:
                rename(stack, owner, uid, name)
        except BaseException as e:  # reported by the test
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_resume_gets_the_missed_events_once_in_order_then_live_without_a_gap(stack):
    owner = signup(stack)
    uid = create_user(stack, owner, ["sales"])["id"]
    last = _offline_changes(stack, owner, uid, 50, "r")
    live = [f"r{i}" for i in range(50, 70)]
    errors = []
    with ws_open(stack) as ws:
        # live changes go on while the client is catching up
        writer = _writer(stack, owner, uid, live, errors)
        ready, _ = subscribed(ws, owner, resume_from=last)
        assert ready["last_event_id"] is not None and evid(ready["last_event_id"]) > evid(last), ready
        got = events(ws, 70, timeout=30)
        writer.join(30)
        assert not errors, errors
        names = [e["data"]["name"] for e in got]
        assert names == [f"r{i}" for i in range(70)], names
        ids = [e["id"] for e in got]
        assert evid(ids[0]) > evid(last)
        assert_increasing(ids)
        no_event(ws, 0.5)  # no duplicates after the end
        rename(stack, owner, uid, "after")
        assert [e["data"]["name"] for e in events(ws, 1)] == ["after"]


def test_resume_with_topics_in_a_later_subscribe_catches_up_from_resume_from(stack):
    owner = signup(stack)
    uid = create_user(stack, owner, ["sales"])["id"]
    last = _offline_changes(stack, owner, uid, 50, "s")
    with ws_open(stack) as ws:
        auth(ws, owner, resume_from=last)  # no topics yet
        # changes between ready and the first subscribe are not lost either
        for i in range(50, 55):
            rename(stack, owner, uid, f"s{i}")
        frames = flush(ws)
        assert [f for f in frames if f["type"] == "event"] == [], f"events before any subscribe: {frames}"
        ws.send(json.dumps({"type": "subscribe", "topics": [TOPIC]}))
        got = events(ws, 55, timeout=30)
        names = [e["data"]["name"] for e in got]
        assert names == [f"s{i}" for i in range(55)], names
        assert_increasing([e["id"] for e in got])
        assert evid(got[0]["id"]) > evid(last)
        no_event(ws, 0.5)
        rename(stack, owner, uid, "s-live")
        assert [e["data"]["name"] for e in events(ws, 1)] == ["s-live"]


# ---------------------------------------------------------------------------
# 3. kill -9 between the acknowledged write and its publish
# ---------------------------------------------------------------------------

BIG_PERMISSIONS = [p + suffix for p in (
    "crm.leads.read", "crm.leads.write", "crm.clients.read", "crm.clients.write", "crm.deals.read",
    "crm.deals.write", "crm.interactions.read", "crm.interactions.write", "crm.tasks.read",
    "crm.tasks.write", "crm.campaigns.read", "crm.campaigns.write", "crm.claims.read",
    "crm.claims.write", "erp.products.read", "erp.products.write", "erp.stock.read",
    "erp.stock.write", "erp.orders.read", "erp.orders.write", "erp.invoices.read",
    "erp.invoices.write", "erp.payments.read", "erp.payments.write", "system.tags.read")
    for suffix in ("", ":own")]


def test_event_of_a_write_acknowledged_before_a_kill_9_is_relayed_once(stack, trellis, private_redis):
    rds = private_redis()
    db = trellis.fresh_db("evkill")
    env_a = migrated_env(trellis, db=db, redis_url=rds.url, session_cache_ms=10000, **NO_RATE_LIMITS)
    a = start_server(trellis, env_a)
    owner = signup(a)
    r = requests.post(a.url("/v1/roles"), headers=owner.headers, timeout=HTTP_TIMEOUT_S,
                      json={"name": "auditors", "permissions": ["crm.leads.read"]})
    assert r.status_code == 201, r.text
    with ws_open(a) as ws:
        subscribed(ws, owner)
        r = requests.patch(a.url("/v1/roles/auditors"), headers=owner.headers, timeout=HTTP_TIMEOUT_S,
                           json={"permissions": ["crm.leads.read", "crm.deals.read"]})
        assert r.status_code == 200, r.text
        last = events(ws, 1)[0]
        assert last["event"] == "system.role.updated", last
    outbox = trellis.db(db)["outbox"]
    deadline = time.monotonic() + 10
    while outbox.count_documents({}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox.count_documents({}) == 0, "published events stayed in the outbox"

    # Redis refuses writes for a while (CLIENT PAUSE WRITE): the request's
    # own checks only read (a cached session and leased rate-limit tokens,
    # warmed up here: then the gate is a plain EXISTS), but the publish
    # after the response (a Lua script) cannot run.  The write is a role
    # change: PATCH /v1/users/{id} also rewrites the user's sessions in
    # Redis (a script) inside the request, which the pause holds for the
    # whole dependency timeout (~1 s, "sessions ... not refreshed").
    r = requests.get(a.url("/v1/roles"), headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text
    ctl = rds.client()
    stream = f"t:{{{owner.tenant_id}}}:events"
    want = ["crm.leads.read", "system.tags.read"]
    ctl.execute_command("CLIENT", "PAUSE", "4000", "WRITE")
    try:
        t0 = time.monotonic()
        r = requests.patch(a.url("/v1/roles/auditors"), headers=owner.headers, timeout=HTTP_TIMEOUT_S,
                           json={"permissions": want})
        took = time.monotonic() - t0
        a.proc.send_signal(signal.SIGKILL)
        assert a.wait_exit(10) is not None, "kill -9 did not end the server"
        assert r.status_code == 200, f"the write was not acknowledged: {r.status_code} {r.text[:300]}"
        assert took < 0.8, f"PATCH took {took:.2f}s with Redis refusing writes"
        # the write and its outbox record are there; the stream has no event
        assert outbox.count_documents({}) == 1, list(outbox.find({}))
        assert ctl.xrange(stream, min="(" + last["id"]) == [], "the event was published before the kill"
    finally:
        ctl.execute_command("CLIENT", "UNPAUSE")
    time.sleep(0.3)
    assert ctl.xrange(stream, min="(" + last["id"]) == [], \
        "the killed process's publish ran after all (the test would not exercise the relay)"

    b = start_server(trellis, trellis.env(db=db, redis_url=rds.url, outbox_grace_ms=300,
                                          **NO_RATE_LIMITS))
    with ws_open(b) as ws:
        subscribed(ws, owner, resume_from=last["id"])
        got = events(ws, 1, timeout=10)[0]
        assert got["event"] == "system.role.updated" and got["entity_id"] == "auditors", got
        assert got["data"]["permissions"] == want, got
        assert evid(got["id"]) > evid(last["id"])
        no_event(ws, 1.5)  # once: the relay does not publish it again
    # a client resuming after the fact gets it once as well
    with ws_open(b) as ws:
        subscribed(ws, owner, resume_from=last["id"])
        assert [e["id"] for e in events(ws, 1)] == [got["id"]]
        no_event(ws, 0.5)
    deadline = time.monotonic() + 5
    while outbox.count_documents({}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox.count_documents({}) == 0, f"outbox not empty after the relay: {list(outbox.find({}))}"
    assert len(ctl.xrange(stream, min="(" + last["id"])) == 1
    assert metric(b, "trellis_events_published_total", '{path="relay"}') == 1
    ctl.close()
    stop_clean(b)


# ---------------------------------------------------------------------------
# 4. Redis restarted while clients are connected and writes go on
# ---------------------------------------------------------------------------

class Follower(threading.Thread):
    """A client that stays subscribed: on every close it reconnects with
    resume_from its last event id, retrying until it is ready again."""

    def __init__(self, target, acct):
        super().__init__(daemon=True)
        self.target, self.acct = target, acct
        self.events = []        # event frames, as received
        self.closes = []        # close codes (None: no close frame)
        self.problems = []      # resync_required frames, unexpected errors
        self.readies = 0
        self.last = None
        self.first_ready = threading.Event()
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                ws = ws_open(self.target, open_timeout=5)
            except Exception as e:  # the server refuses or is busy: retry
                self.closes.append(("connect", repr(e)[:100]))
                time.sleep(0.2)
                continue
            try:
                frame = {"type": "auth", "token": self.acct.access_token, "topics": [TOPIC]}
                if self.last:
                    frame["resume_from"] = self.last
                ws.send(json.dumps(frame))
                while not self.halt.is_set():
                    try:
                        raw = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    f = json.loads(raw)
                    if f["type"] == "event":
                        self.events.append(f)
                        self.last = f["id"]
                    elif f["type"] == "ready":
                        self.readies += 1
                        self.first_ready.set()
                    elif f["type"] == "resync_required":
                        self.problems.append(f)
                    elif f["type"] == "error" and f.get("code") not in ("unavailable",):
                        self.problems.append(f)
            except ConnectionClosed as e:
                self.closes.append(close_code(e))
                time.sleep(0.1)
            except Exception as e:
                self.problems.append(repr(e))
                time.sleep(0.1)
            finally:
                ws.close()

    def names(self):
        return [e["data"]["name"] for e in list(self.events)]


def test_redis_restart_under_writes_every_client_gets_every_acknowledged_event_once(
        stack, trellis, private_redis):
    rds = private_redis()
    server = start_server(trellis, migrated_env(trellis, redis_url=rds.url, outbox_grace_ms=500,
                                                **NO_RATE_LIMITS))
    owner = signup(server)
    uid = create_user(server, owner, ["sales"])["id"]
    followers = [Follower(server, owner) for _ in range(3)]
    for f in followers:
        f.start()
    for f in followers:
        assert f.first_ready.wait(10), "a client did not get ready"
    time.sleep(0.3)  # subscribed

    acked, attempted, statuses = [], [], {}
    stop_writing = threading.Event()

    def write():
        i = 0
        while not stop_writing.is_set():
            name = f"w{i}"
            i += 1
            attempted.append(name)
            try:
                r = patch_user(server, owner, uid, {"name": name}, timeout=5)
            except requests.RequestException as e:
                statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
                time.sleep(0.05)
                continue
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                acked.append(name)
            else:
                time.sleep(0.05)

    writer = threading.Thread(target=write, daemon=True)
    try:
        writer.start()
        time.sleep(1.5)
        before_stop = len(acked)
        rds.stop()
        time.sleep(2.0)
        rds.start()
        restarted = time.monotonic()
        # writes succeed again once the server has reconnected
        while time.monotonic() - restarted < 15 and len(acked) < before_stop + 20:
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop_writing.set()
        writer.join(10)
    assert before_stop >= 5, f"too few writes before the restart: {statuses}"
    assert len(acked) >= before_stop + 20, f"writes did not resume after Redis came back: {statuses}"
    assert statuses.get(503, 0) >= 1, f"no write was refused while Redis was down: {statuses}"
    assert set(statuses) <= {200, 503}, f"unexpected answers: {statuses}"

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(set(acked) <= set(f.names()) for f in followers):
        time.sleep(0.2)
    for f in followers:
        f.halt.set()
    for f in followers:
        f.join(10)
    for n, f in enumerate(followers):
        who = f"client {n}"
        names = f.names()
        missing = [x for x in acked if x not in set(names)]
        assert not missing, f"{who} is missing {len(missing)} acknowledged events: {missing[:10]}; closes {f.closes}"
        dups = sorted({x for x in names if names.count(x) > 1})
        assert not dups, f"{who} got events more than once: {dups[:10]}"
        ids = [e["id"] for e in f.events]
        assert_increasing(ids, who)
        assert set(names) <= set(attempted), f"{who}: events of writes nobody made: {set(names) - set(attempted)}"
        assert not f.problems, f"{who}: {f.problems[:5]}"
        codes = [c for c in f.closes if not isinstance(c, tuple)]
        assert codes, f"{who} was never disconnected: {f.closes}"
        assert codes[0] in (C_RESTART, C_INTERNAL), f"{who}: first close code {codes[0]}, all {f.closes}"
        assert f.readies >= 2, f"{who} did not get ready again: {f.readies}"
    stop_clean(server)


# ---------------------------------------------------------------------------
# 5. a client too slow to read
# ---------------------------------------------------------------------------

class RawWs:
    """A WebSocket client over a plain socket with a small receive buffer,
    so that a client that stops reading fills the kernel's buffers."""

    def __init__(self, target, rcvbuf=4096):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", target.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed during the handshake: {self.buf!r}"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.close_code = None
        self.eof = False

    def send_json(self, obj):
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _frame(self):
        """One frame from the buffer: (opcode, payload) or None if incomplete."""
        b = self.buf
        if len(b) < 2:
            return None
        n, off = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, off = int.from_bytes(b[2:4], "big"), 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, off = int.from_bytes(b[2:10], "big"), 10
        if len(b) < off + n:
            return None
        self.buf = b[off + n:]
        return b[0] & 0x0F, b[off:off + n]

    def recv(self, timeout):
        """The next text frame as JSON; None once the connection ended (see
        close_code / eof)."""
        deadline = time.monotonic() + timeout
        while True:
            fr = self._frame()
            if fr is not None:
                op, payload = fr
                if op == 0x8:
                    self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                    return None
                if op == 0x1:
                    return json.loads(payload)
                continue
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame in time")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.eof = True
            self.buf += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def test_slow_reader_is_closed_4009_while_a_normal_reader_keeps_up_and_it_can_resume(stack, trellis):
    server = start_server(trellis, migrated_env(trellis, ws_send_queue=16, **NO_RATE_LIMITS))
    owner = signup(server)
    r = requests.post(server.url("/v1/roles"), headers=owner.headers, timeout=HTTP_TIMEOUT_S,
                      json={"name": "bulk", "permissions": BIG_PERMISSIONS})
    assert r.status_code == 201, r.text

    fast = ws_open(server)
    slow = RawWs(server)
    try:
        subscribed(fast, owner)
        slow.send_json({"type": "auth", "token": owner.access_token, "topics": [TOPIC]})
        assert slow.recv(10)["type"] == "ready"
        assert slow.recv(10)["type"] == "subscribed"

        # the fast client reads everything, stamping arrival times
        got, fast_err = [], []

        def read_fast():
            try:
                while True:
                    f = json.loads(fast.recv(timeout=30))
                    if f["type"] == "event":
                        got.append((f, time.monotonic()))
            except ConnectionClosed as e:
                fast_err.append(("closed", close_code(e)))
            except TimeoutError:
                pass
            except Exception as e:
                fast_err.append(repr(e))

        reader = threading.Thread(target=read_fast, daemon=True)
        reader.start()

        # big events (a role with 50 permissions, changed over and over)
        # until the server gives up on the client that does not read
        answered = {}
        slow_closed_at = None
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 25:
            perms = BIG_PERMISSIONS[i % len(BIG_PERMISSIONS):] + BIG_PERMISSIONS[:i % len(BIG_PERMISSIONS)]
            perms = perms * 4  # 200 permissions: an event of ~6 KB
            r = requests.patch(server.url("/v1/roles/bulk"), headers=owner.headers,
                               timeout=HTTP_TIMEOUT_S, json={"permissions": perms})
            assert r.status_code == 200, r.text[:300]
            answered[r.json()["version"]] = time.monotonic()
            i += 1
            if slow_closed_at is None and i % 10 == 0 and \
                    metric(server, "trellis_ws_slow_closed_total") >= 1:
                slow_closed_at = i
            if slow_closed_at is not None and i >= slow_closed_at + 10:
                break
        assert slow_closed_at is not None, f"the client that does not read was not closed after {i} events"

        # the slow client now reads: what was buffered, then the close
        slow_events = []
        while True:
            try:
                f = slow.recv(10)
            except TimeoutError:
                pytest.fail(f"slow client: neither a close nor EOF; {len(slow_events)} events read")
            if f is None:
                break
            if f["type"] == "event":
                slow_events.append(f)
        assert slow.close_code == C_TOO_SLOW, \
            f"slow client: close code {slow.close_code} (eof={slow.eof}) after {len(slow_events)} events"
        assert len(slow_events) < i, "the slow client was closed yet got every event"

        # the fast client got every event, in order, each soon after its response
        deadline = time.monotonic() + 10
        while len(got) < i and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not fast_err, fast_err
        versions = [e["data"]["version"] for e, _ in got]
        assert sorted(versions) == sorted(answered), \
            f"fast client: {len(versions)} events for {len(answered)} writes"
        assert versions == sorted(versions)
        assert_increasing([e["id"] for e, _ in got], "fast client")
        lags = {e["data"]["version"]: t - answered[e["data"]["version"]] for e, t in got}
        worst = max(lags.values())
        assert worst <= 2.0, f"fast client got an event {worst:.2f}s after its response"

        # the slow client resumes from the last event it got
        all_ids = [e["id"] for e, _ in got]
        after = all_ids[all_ids.index(slow_events[-1]["id"]) + 1:] if slow_events else all_ids
        resume = {"resume_from": slow_events[-1]["id"]} if slow_events else {}
        with ws_open(server) as again:
            subscribed(again, owner, **resume)
            caught = events(again, len(after), timeout=20)
            assert [e["id"] for e in caught] == after
            no_event(again, 0.5)
    finally:
        slow.close()
        fast.close()
    assert server.alive(), server.output_tail()
    stop_clean(server)


# ---------------------------------------------------------------------------
# 6. isolation: tenants, and roles that may not read admin.users
# ---------------------------------------------------------------------------

def test_a_tenant_never_receives_another_tenants_events(stack):
    a, b = signup(stack), signup(stack)
    ua = create_user(stack, a, ["sales"])["id"]
    ub = create_user(stack, b, ["sales"])["id"]
    with ws_open(stack) as wa, ws_open(stack) as wb:
        subscribed(wa, a)
        subscribed(wb, b)
        for i in range(5):
            rename(stack, a, ua, f"a{i}")
        assert [e["data"]["name"] for e in events(wa, 5)] == [f"a{i}" for i in range(5)]
        no_event(wb, 1.0)
        rename(stack, b, ub, "b-own")
        got = events(wb, 1)[0]
        assert got["data"]["name"] == "b-own" and got["entity_id"] == ub, got
        no_event(wa, 0.3)
        no_event(wb, 0.1)


@pytest.mark.parametrize("role", ["manager", "sales"])
def test_a_role_without_admin_rights_gets_no_admin_users_events(stack, role):
    owner = signup(stack)
    acct = user_session(stack, owner, [role])
    with ws_open(stack) as wo, ws_open(stack) as wr:
        subscribed(wo, owner)
        auth(wr, acct, topics=[TOPIC, "crm.leads"])
        frames = flush(wr)
        subs = [f for f in frames if f["type"] == "subscribed"]
        errs = [f for f in frames if f["type"] == "error"]
        assert subs and subs[0]["topics"] == ["crm.leads"], frames
        assert errs and errs[0].get("code") == "forbidden-topics" and errs[0].get("topics") == [TOPIC], frames
        # asking again in a subscribe frame does not help
        wr.send(json.dumps({"type": "subscribe", "topics": [TOPIC]}))
        frames = flush(wr)
        assert [f.get("topics") for f in frames if f["type"] == "subscribed"] in ([[]], []), frames
        assert any(f["type"] == "error" and f.get("topics") == [TOPIC] for f in frames), frames
        # admin.users changes, including ones about this very user
        uid = create_user(stack, owner, ["employee"])["id"]
        rename(stack, owner, uid, "renamed")
        rename(stack, owner, acct.user_id, "me-renamed")
        got = events(wo, 3)
        assert [e["event"] for e in got] == ["system.user.created", "system.user.updated",
                                             "system.user.updated"], got
        no_event(wr, 0.5)


# ---------------------------------------------------------------------------
# 7. retention
# ---------------------------------------------------------------------------

def test_resume_from_a_trimmed_id_is_told_to_resync_and_then_gets_live_events(stack, trellis):
    server = start_server(trellis, migrated_env(trellis, events_max_len=100, **NO_RATE_LIMITS))
    owner = signup(server)
    with ws_open(server) as ws:
        subscribed(ws, owner)
        users = [create_user(server, owner, ["sales"])["id"] for _ in range(4)]
        # MAXLEN ~ 100 trims approximately (whole stream nodes): ~400
        # events leave the first ones well behind the retention limit
        names = [f"e{i}" for i in range(396)]
        errors = []
        writers = [_writer(server, owner, users[k], names[k::4], errors) for k in range(4)]
        got = events(ws, 4 + len(names), timeout=60)
        for w in writers:
            w.join(30)
        assert not errors, errors
    ids = [e["id"] for e in got]
    assert_increasing(ids)
    first = ids[0]
    # precondition: retention did drop the first events (MAXLEN is approximate)
    stream = f"t:{{{owner.tenant_id}}}:events"
    kept = stack.redis.xlen(stream)
    assert kept < 250, f"the stream still holds {kept} of {len(ids)} events (events_max_len=100)"
    assert stack.redis.xrange(stream, min=first, max=first) == [], "the first event was not trimmed"

    # a resume point still held gets exactly what followed it
    with ws_open(server) as ws:
        _, frames = subscribed(ws, owner, resume_from=ids[-5])
        assert not [f for f in frames if f["type"] == "resync_required"], frames
        assert [e["id"] for e in events(ws, 4)] == ids[-4:]
        no_event(ws, 0.3)

    # resuming from the very first id: those events are gone -> resync_required
    with ws_open(server) as ws:
        ready = auth(ws, owner, topics=[TOPIC], resume_from=first)
        assert ready["last_event_id"] == ids[-1], (ready, ids[-1])
        time.sleep(1.0)  # whatever the server replays arrives meanwhile
        frames = flush(ws)
        resync = [f for f in frames if f["type"] == "resync_required"]
        replayed = [f for f in frames if f["type"] == "event"]
        assert resync, (
            f"no resync_required for resume_from={first} (trimmed; the stream keeps the last {kept} "
            f"of {len(ids)} events): the client got {[f['type'] for f in frames if f['type'] != 'event']} "
            f"and {len(replayed)} replayed events starting at "
            f"{replayed[0]['id'] + ' ' + str(replayed[0]['data'].get('name')) if replayed else None}, "
            f"so the {len(ids) - 1 - len(replayed)} events in between were skipped without notice")
        assert isinstance(resync[0].get("reason"), str) and resync[0]["reason"], resync[0]
        assert not replayed, f"old events after resync_required: {len(replayed)}"
        rename(server, owner, users[0], "after-resync")
        ev = events(ws, 1)[0]
        assert ev["data"]["name"] == "after-resync", ev
        assert evid(ev["id"]) > evid(ids[-1])
        no_event(ws, 0.3)
    stop_clean(server)


# ---------------------------------------------------------------------------
# 8. revocation across processes
# ---------------------------------------------------------------------------

def test_logout_through_one_process_closes_the_sessions_socket_on_another_4001(stack, trellis):
    db = trellis.fresh_db("evrev")
    a = start_server(trellis, migrated_env(trellis, db=db))
    b = start_server(trellis, trellis.env(db=db))
    owner = signup(a)
    second = login(a, owner.slug, owner.email)
    with ws_open(b) as kept, ws_open(b) as ws:
        subscribed(kept, owner)
        subscribed(ws, second)
        r = requests.post(a.url("/v1/auth/logout"), headers=second.headers, timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 204, r.text
        frames, code, waited = expect_close(ws, within=5)
        assert code == C_REVOKED, f"expected close 4001 on process B after logout on A, got {code}; {frames}"
        assert waited <= 1.5, f"closed {waited:.2f}s after the logout"
        assert flush(kept) == [], "the other session's socket was disturbed"
    stop_clean(a)
    stop_clean(b)
