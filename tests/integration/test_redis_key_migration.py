"""`trellis migrate` renames a single Redis's keys from the names before
hash tags (t:<tid>:..., q:<db>:<queue>...) to the ones Redis Cluster needs
(t:{<tid>}:..., q:{<db>:<queue>:0}...), so a deployment that upgrades
keeps its sessions, its event streams and its queued and dead jobs.
Black-box: a real server, FerretDB and Redis; the old names are made by
renaming what the server wrote (or, for a queued job, written as the old
server wrote it)."""
import json
import secrets
import threading
import time

import pytest

from conftest import sanitizer_hits, signup
from test_jobs_webhooks import Api, start_server as start_jobs_server

WAIT_S = 20.0


def start_server(trellis):
    return start_jobs_server(trellis, session_cache_ms=0, job_max_attempts=1)


def db_of(env):
    return env["TRELLIS_MONGO_URI"].rsplit("/", 1)[1]


def to_old_names(redis, tenant_id):
    """Every key of the tenant back under its old name, as the server
    before hash tags wrote it."""
    old = []
    for key in list(redis.scan_iter(match=f"t:{{{tenant_id}}}:*")):
        name = key.decode() if isinstance(key, bytes) else key
        to = "t:" + tenant_id + name[len(tenant_id) + 4:]
        redis.rename(name, to)
        old.append(to)
    return old


def migrate(trellis, env):
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0 and not sanitizer_hits(run.output), run


def new_lead(api, acct, n):
    r = api.post(acct, "/v1/crm/leads", {"name": f"Lead {n}", "email": f"l{n}-{time.time_ns()}@example.com"})
    assert r.status_code == 201, r.text
    return r.json()


def test_sessions_and_event_streams_under_old_names_work_after_migrate(trellis, stack):
    proc, env = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    new_lead(api, owner, 1)
    first = api.get(owner, "/v1/changes", params={"topics": "crm.leads"}).json()["items"]
    assert len(first) == 1, first
    new_lead(api, owner, 2)

    old = to_old_names(stack.redis, owner.tenant_id)
    assert f"t:{owner.tenant_id}:sess:{owner.session_id}" in old
    assert f"t:{owner.tenant_id}:events" in old
    # the server knows only the new names: the session is gone for it
    assert api.get(owner, "/v1/me").status_code == 401

    migrate(trellis, env)
    assert stack.redis.exists(f"t:{owner.tenant_id}:sess:{owner.session_id}") == 0
    r = api.get(owner, "/v1/me")
    assert r.status_code == 200, r.text
    # the stream resumes after the event read before the upgrade
    r = api.get(owner, "/v1/changes", params={"topics": "crm.leads", "since": first[0]["id"]})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["data"]["name"] for i in items] == ["Lead 2"], items

    # a second run finds nothing to do and changes nothing
    migrate(trellis, env)
    assert api.get(owner, "/v1/me").status_code == 200


def test_a_newer_key_under_the_new_name_is_never_overwritten(trellis, stack):
    proc, env = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    tid = owner.tenant_id
    stack.redis.hset(f"t:{tid}:sess:{owner.session_id}", mapping={"uid": "stale", "perms": "", "me": "{}"})
    migrate(trellis, env)
    # the live session stays as the server wrote it; the stale copy is left
    assert api.get(owner, "/v1/me").status_code == 200
    assert stack.redis.hget(f"t:{{{tid}}}:sess:{owner.session_id}", "uid") == owner.user_id
    assert stack.redis.hget(f"t:{tid}:sess:{owner.session_id}", "uid") == "stale"


def test_a_job_queued_and_a_job_dead_under_old_names_are_run_and_listed_after_migrate(trellis, stack):
    proc, env = start_server(trellis)
    api = Api(proc)
    owner = signup(api)
    db = db_of(env)
    queue = "crm.reminders"
    # a job as the server before hash tags queued it: not a reminder, so
    # its run just finishes it
    job_id = secrets.token_hex(16)
    old_stream = f"q:{db}:{queue}"
    stack.redis.xadd(old_stream, {"id": job_id, "tenant": owner.tenant_id, "attempt": "0",
                                  "payload": json.dumps({"note": "queued before the upgrade"})})
    stack.redis.xgroup_create(old_stream, "workers", id="0")
    # and a dead one, with its entry in the queue's dead stream
    dead_id = secrets.token_hex(16)
    record = {"id": dead_id, "queue": queue, "state": "dead", "attempts": 1, "last_error": "failed",
              "failed_at": "2026-01-01T00:00:00Z", "payload": {"note": "dead before the upgrade"}}
    entry = stack.redis.xadd(f"q:{db}:{queue}:dead", {"id": dead_id, "tenant": owner.tenant_id,
                                                      "job": json.dumps(record)})
    entry = entry.decode() if isinstance(entry, bytes) else entry
    stack.redis.hset(f"t:{owner.tenant_id}:jobs:dead", dead_id, entry + "\n" + json.dumps(record))
    time.sleep(1.0)
    assert stack.redis.xlen(old_stream) == 1  # nobody reads the old name
    assert api.get(owner, "/v1/jobs?state=dead").json()["items"] == []

    migrate(trellis, env)
    new_stream = f"q:{{{db}:{queue}:0}}"
    assert stack.redis.exists(old_stream) == 0
    deadline = time.monotonic() + WAIT_S
    while stack.redis.xlen(new_stream) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stack.redis.xlen(new_stream) == 0, "the queued job was not run"
    assert stack.redis.xpending(new_stream, "workers")["pending"] == 0
    items = api.get(owner, "/v1/jobs?state=dead").json()["items"]
    assert [(i["id"], i["queue"]) for i in items] == [(dead_id, queue)], items
    # and the dead job can still be retried (once)
    assert api.post(owner, f"/v1/jobs/{dead_id}/retry", {}).status_code in (200, 202)
    assert api.post(owner, f"/v1/jobs/{dead_id}/retry", {}).status_code == 404


def test_three_migrates_at_once_rename_every_key_once_and_lose_nothing(trellis, stack):
    proc, env = start_server(trellis)
    api = Api(proc)
    owners, streams = [], {}
    for n in range(3):
        owner = signup(api)
        for k in range(3):
            new_lead(api, owner, f"{n}-{k}")
        owners.append(owner)
        streams[owner.tenant_id] = stack.redis.xlen(f"t:{{{owner.tenant_id}}}:events")
        to_old_names(stack.redis, owner.tenant_id)
        assert api.get(owner, "/v1/me").status_code == 401

    runs = [None] * 3

    def one(i):
        runs[i] = trellis.run("migrate", env=env)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for run in runs:
        assert run.returncode == 0 and not sanitizer_hits(run.output), run

    for owner in owners:
        tid = owner.tenant_id
        assert list(stack.redis.scan_iter(match=f"t:{tid}:*")) == [], "a key kept its old name"
        assert stack.redis.xlen(f"t:{{{tid}}}:events") == streams[tid] == 3
        r = api.get(owner, "/v1/me")
        assert r.status_code == 200, r.text
        names = sorted(i["data"]["name"] for i in
                       api.get(owner, "/v1/changes", params={"topics": "crm.leads"}).json()["items"])
        assert len(names) == 3, names
