"""Job queues and sessions on a Redis Cluster (TRELLIS_IT_REDIS_CLUSTER=1,
`make test-redis-cluster`): each queue is spread over job_partitions (4 in
a cluster) keys with hash tags of their own, which land on different
masters, and the worker threads' client (server/data/kv.c) follows the
slot map to each. Skipped on a single Redis."""
import json
import secrets
import time

import pytest
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


def test_a_login_works_and_its_session_is_in_the_cluster(stack):
    owner = signup(stack)
    r = login_request(stack, owner.slug, owner.email, owner.password)
    assert r.status_code == 200, r.text
    claims = token_claims(r.json()["access_token"])
    assert claims["tid"] == owner.tenant_id
    assert stack.redis.exists(f"t:{{{claims['tid']}}}:sess:{claims['sid']}") == 1
