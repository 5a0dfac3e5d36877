"""Job queues and sessions on a Redis Cluster (TRELLIS_IT_REDIS_CLUSTER=1,
`make test-redis-cluster`): each queue is spread over job_partitions (4 in
a cluster) keys with hash tags of their own, which land on different
masters, and the worker threads' client (server/data/kv.c) follows the
slot map to each. Skipped on a single Redis."""
import json
import secrets
import time

import pytest
import redis as redis_lib
from conftest import DB_NAME, REDIS_CLUSTER, login_request, signup, token_claims

pytestmark = pytest.mark.skipif(not REDIS_CLUSTER, reason="needs TRELLIS_IT_REDIS_CLUSTER=1")

QUEUE = "crm.reminders"
PARTITIONS = 4
WAIT_S = 20.0


def partition(n, suffix=""):
    return f"q:{{{DB_NAME}:{QUEUE}:{n}}}{suffix}"


def master_of(stack, key):
    return stack.redis.get_node_from_key(key).name


def test_a_queues_partitions_live_on_several_masters(stack):
    masters = {master_of(stack, partition(n)) for n in range(PARTITIONS)}
    assert len(masters) > 1, masters
    # a partition's keys share its slot, so its scripts may use them together
    for n in range(PARTITIONS):
        slots = {stack.redis.keyslot(partition(n, s)) for s in ("", ":delayed", ":dead", ":lane:x")}
        assert len(slots) == 1, (n, slots)


def test_jobs_on_every_partition_are_run(stack):
    tenant = "0" * 24
    for n in range(PARTITIONS):
        # not a reminder: its run just finishes it
        for k in range(3):
            stack.redis.xadd(partition(n), {"id": secrets.token_hex(16), "tenant": tenant, "attempt": "0",
                                            "payload": json.dumps({"note": f"partition {n}, job {k}"})})
        member = f"{secrets.token_hex(16)}\n{tenant}\n0\n" + json.dumps({"note": "delayed"})
        stack.redis.zadd(partition(n, ":delayed"), {member: int(time.time() * 1000) - 1})
    deadline = time.monotonic() + WAIT_S
    left = None
    while time.monotonic() < deadline:
        left = {n: (stack.redis.xlen(partition(n)), stack.redis.zcard(partition(n, ":delayed")))
                for n in range(PARTITIONS)}
        if all(v == (0, 0) for v in left.values()):
            break
        time.sleep(0.1)
    assert all(v == (0, 0) for v in left.values()), f"left (stream, delayed) per partition: {left}"
    for n in range(PARTITIONS):
        assert stack.redis.xpending(partition(n), "workers")["pending"] == 0


def add_jobs(stack, n, count, note):
    for k in range(count):
        stack.redis.xadd(partition(n), {"id": secrets.token_hex(16), "tenant": "0" * 24, "attempt": "0",
                                        "payload": json.dumps({"note": f"{note} {k}"})})


def wait_run(stack, n):
    deadline = time.monotonic() + WAIT_S
    while stack.redis.xlen(partition(n)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack.redis.xlen(partition(n)) == 0, f"partition {n}: jobs left unrun"
    assert stack.redis.xpending(partition(n), "workers")["pending"] == 0


def move_slot(nodes, ids, slot, src, dst):
    """Hands slot from master src to dst the way a reshard does: dst
    imports, src migrates, the keys move (a stream keeps its consumer
    group), then every master learns the new owner. Commands for the slot
    get ASK while it moves and MOVED after."""
    nodes[dst].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
    nodes[src].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
    while keys := nodes[src].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 50):
        nodes[src].execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys)
        time.sleep(0.2)  # the workers meet the slot half moved (ASK)
    for c in nodes.values():
        c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[dst])


def test_jobs_keep_running_when_a_partitions_slot_moves_to_another_master(stack):
    nodes = {p: redis_lib.Redis(host="127.0.0.1", port=p, decode_responses=True, socket_timeout=5)
             for p in stack.redis_ports}
    ids = {p: c.execute_command("CLUSTER", "MYID") for p, c in nodes.items()}
    n = 1
    slot = stack.redis.keyslot(partition(n))
    src = int(master_of(stack, partition(n)).rsplit(":", 1)[1])
    dst = next(p for p in stack.redis_ports if p != src)
    add_jobs(stack, n, 5, "before the move")
    wait_run(stack, n)  # the workers know where the partition is
    # keys of the slot to move, so that it moves in several steps
    for k in range(120):
        stack.redis.set(f"x:{{{DB_NAME}:{QUEUE}:{n}}}:{k}", "filler")
    try:
        move_slot(nodes, ids, slot, src, dst)
        add_jobs(stack, n, 5, "after the move")
        wait_run(stack, n)
        # the partition's keys are all on dst now, and the jobs added there ran
        assert nodes[src].execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        assert nodes[dst].execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) > 0
        assert stack.server_alive()
    finally:
        for c in nodes.values():
            c.close()


def test_a_login_works_and_its_session_is_in_the_cluster(stack):
    owner = signup(stack)
    r = login_request(stack, owner.slug, owner.email, owner.password)
    assert r.status_code == 200, r.text
    claims = token_claims(r.json()["access_token"])
    assert claims["tid"] == owner.tenant_id
    assert stack.redis.exists(f"t:{{{claims['tid']}}}:sess:{claims['sid']}") == 1
