"""Redis Cluster (redis_mode = cluster) behind the loop's client and live
events: a 3-master cluster of its own (tests/redis/cluster.sh) and a server
pointed at its first master; FerretDB is the session stack's.

- events of tenants whose slots live on different masters reach their
  WebSocket clients (sharded channels, one per slot, SPUBLISHed by the
  publish script in the tenant's slot);
- a slot migrated to another master while events flow: every event still
  reaches the client, in order, without a gap - the client may be told to
  reconnect and resume (1012) while its slot's channel moves, never
  silently left behind;
- a MOVED (the server's slot map is stale) is followed: the event is
  published directly, not left to the outbox relay.

Self-contained: it does not use the TRELLIS_IT_REDIS_CLUSTER mode of the
shared fixture (that one runs the other suites against a cluster)."""
import json
import os
import random
import shutil
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

from conftest import HTTP_TIMEOUT_S, REPO_ROOT, sanitizer_hits, signup

CLUSTER_SH = os.path.join(REPO_ROOT, "tests", "redis", "cluster.sh")
LEADS = "/v1/crm/leads"
TOPIC = "crm.leads"
RECV_S = 10.0
C_RESTART = 1012  # pub/sub lost: reconnect and resume
C_TRY_LATER = 1013  # pub/sub not (yet) subscribed: reconnect shortly
NO_RATE_LIMITS = dict(rate_limit_rps=100000, rate_limit_burst=200000,
                      rate_limit_user_rps=100000, rate_limit_user_burst=200000)


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports():
    """Three ports whose cluster bus ports (+10000) are free too."""
    ports = []
    while len(ports) < 3:
        p = random.randrange(20000, 30000)
        if p not in ports and port_free(p) and port_free(p + 10000):
            ports.append(p)
    return ports


class Cluster:
    def __init__(self):
        self.ports = cluster_ports()
        self.dir = tempfile.mkdtemp(prefix="trellis-rcl-")
        run = subprocess.run([CLUSTER_SH, "start", self.dir, *map(str, self.ports)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        self.nodes = {p: redis_lib.Redis(host="127.0.0.1", port=p, decode_responses=True,
                                         socket_timeout=5) for p in self.ports}
        self.ids = {p: c.execute_command("CLUSTER", "MYID") for p, c in self.nodes.items()}

    def stop(self):
        for c in self.nodes.values():
            c.close()
        subprocess.run([CLUSTER_SH, "stop", self.dir], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def slot(self, key):
        return self.nodes[self.ports[0]].execute_command("CLUSTER", "KEYSLOT", key)

    def owner(self, slot):
        for lo, hi, master, *_ in self.nodes[self.ports[0]].execute_command("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return int(master[1])
        raise AssertionError(f"slot {slot} has no owner")

    def migrate(self, slot, dst):
        """Moves a slot and its keys to master dst, as redis-cli --cluster
        reshard does: IMPORTING/MIGRATING, MIGRATE the keys, then every
        node learns the new owner."""
        src = self.owner(slot)
        s, d = self.nodes[src], self.nodes[dst]
        d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.ids[src])
        s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.ids[dst])
        while True:
            keys = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            s.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys)
        for c in (d, s, *[self.nodes[p] for p in self.ports if p not in (src, dst)]):
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", self.ids[dst])


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.stop()


@pytest.fixture
def server(trellis, cluster):
    env = trellis.env(redis_url=f"redis://127.0.0.1:{cluster.ports[0]}/0", redis_mode="cluster",
                      **NO_RATE_LIMITS)
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0 and not sanitizer_hits(run.output), run
    s = trellis.start("serve", env=env)
    s.wait_ready()
    yield s
    s.signal(15)
    code = s.wait_exit(20)
    assert code == 0, s.output_tail()
    hits = sanitizer_hits(s.output())
    assert not hits, f"sanitizer report {hits}:\n{s.output_tail(120)}"


def stream_slot(cluster, acct):
    return cluster.slot(f"t:{{{acct.tenant_id}}}:events")


def tenant_on(target, cluster, port, tries=40):
    """A new tenant whose keys live on master `port`."""
    for _ in range(tries):
        acct = signup(target)
        if cluster.owner(stream_slot(cluster, acct)) == port:
            return acct
    pytest.fail(f"no tenant landed on {port} in {tries} signups")


def ws_open(target):
    return connect(f"ws://127.0.0.1:{target.port}/v1/ws", open_timeout=10, close_timeout=2,
                   compression=None)


def recv(ws, timeout=RECV_S):
    return json.loads(ws.recv(timeout=timeout))


def subscribe(target, acct, resume_from=None, within=RECV_S):
    """An authenticated client on TOPIC (resuming after resume_from): the
    socket and the frames up to "subscribed". While the server's own
    subscriptions are being restored it answers "unavailable" (1013):
    then it tries again, for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        ws = ws_open(target)
        frame = {"type": "auth", "token": acct.access_token, "topics": [TOPIC]}
        if resume_from:
            frame["resume_from"] = resume_from
        ws.send(json.dumps(frame))
        frames = []
        try:
            while True:
                f = recv(ws)
                frames.append(f)
                if f["type"] == "subscribed":
                    return ws, frames
                if f["type"] == "error" and f.get("code") == "unavailable":
                    continue  # the close (1013) follows
                assert f["type"] in ("ready", "resync_required", "event"), frames
        except ConnectionClosed as e:
            ws.close()
            assert e.rcvd and e.rcvd.code in (C_TRY_LATER, C_RESTART), (e, frames)
            assert time.monotonic() < deadline, f"no subscription within {within}s: {frames}"
            time.sleep(0.1)


def add_lead(target, acct, name):
    r = requests.post(target.url(LEADS), headers=acct.headers, timeout=HTTP_TIMEOUT_S,
                      json={"name": name, "email": f"{name}@example.com"})
    assert r.status_code == 201, r.text
    return r.json()


def lead_names(frames):
    return [f["data"]["name"] for f in frames if f["type"] == "event"
            and f["event"] == "crm.lead.created"]


def metric(target, name, labels=""):
    text = requests.get(target.url("/metrics"), timeout=HTTP_TIMEOUT_S).text
    for line in text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.split()[-1])
    return 0.0


def test_events_of_tenants_on_every_master_reach_their_clients(server, cluster):
    tenants = [tenant_on(server, cluster, p) for p in cluster.ports]
    clients = [subscribe(server, t)[0] for t in tenants]
    try:
        for i, t in enumerate(tenants):
            add_lead(server, t, f"lead-{i}")
        for i, ws in enumerate(clients):
            got = []
            while not got:
                got = lead_names([recv(ws)])
            assert got == [f"lead-{i}"]  # its own tenant's, nobody else's
    finally:
        for ws in clients:
            ws.close()


def test_moved_is_followed_and_the_event_published_directly(server, cluster):
    acct = tenant_on(server, cluster, cluster.ports[1])
    slot = stream_slot(cluster, acct)
    ws, frames = subscribe(server, acct)
    add_lead(server, acct, "before")
    before = None
    while before is None:
        f = recv(ws)
        if lead_names([f]) == ["before"]:
            before = f["id"]
    direct = metric(server, "trellis_events_published_total", '{path="direct"}')
    relayed = metric(server, "trellis_events_published_total", '{path="relay"}')
    cluster.migrate(slot, cluster.ports[2])
    # at once, while the server's map still names the old owner (it reads
    # the map again 100 ms after the slot's channel left): MOVED
    add_lead(server, acct, "after")
    names, deadline = [], time.monotonic() + RECV_S
    try:
        while "after" not in names and time.monotonic() < deadline:
            try:
                names += lead_names([recv(ws, deadline - time.monotonic())])
            except ConnectionClosed as e:
                assert e.rcvd and e.rcvd.code == C_RESTART, e  # announced
                ws, frames = subscribe(server, acct, resume_from=before)
                names += lead_names(frames)
        assert names == ["after"]
    finally:
        ws.close()
    assert f"redis: slot {slot} moved to 127.0.0.1:{cluster.ports[2]}" in server.output()
    assert metric(server, "trellis_events_published_total", '{path="direct"}') == direct + 1
    assert metric(server, "trellis_events_published_total", '{path="relay"}') == relayed
    assert cluster.owner(slot) == cluster.ports[2]


def test_slot_migrated_while_events_flow_loses_no_event(server, cluster):
    acct = tenant_on(server, cluster, cluster.ports[0])
    slot = stream_slot(cluster, acct)
    total = 60
    want = [f"flow-{i:03d}" for i in range(total)]
    errors = []

    def writer():
        try:
            for i, name in enumerate(want):
                add_lead(server, acct, name)
                if i == total // 3:
                    cluster.migrate(slot, cluster.ports[1])
                if i == 2 * total // 3:
                    cluster.migrate(slot, cluster.ports[2])
                time.sleep(0.02)
        except Exception as e:  # reported by the main thread
            errors.append(e)

    ws, frames = subscribe(server, acct)
    got, last_id, reconnects = lead_names(frames), None, 0
    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while len(got) < total and time.monotonic() < deadline:
            try:
                f = recv(ws, deadline - time.monotonic())
            except ConnectionClosed as e:
                # announced: pub/sub lost while the slot's channel moved
                assert e.rcvd and e.rcvd.code == C_RESTART, e
                reconnects += 1
                ws, frames = subscribe(server, acct, resume_from=last_id)
                for fr in frames:
                    assert fr["type"] != "resync_required", frames  # the stream kept it all
                    if fr["type"] == "event":
                        last_id = fr["id"]
                got += lead_names(frames)
                continue
            if f["type"] == "event":
                last_id = f["id"]
                got += lead_names([f])
    finally:
        t.join(60)
        ws.close()
    assert not errors, errors
    assert got == want, f"{len(got)} of {total}; reconnects {reconnects}"
    assert cluster.owner(slot) == cluster.ports[2]
