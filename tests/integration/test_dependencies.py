"""Redis and MongoDB (FerretDB) outages: fast 503s, honest /readyz, and recovery
without restarting the server.  Every fixture that stops a dependency starts
it again and waits for /readyz 200, even when the test fails."""

import time
import types
import uuid

import pytest
import requests

ANSWER_WITHIN_S = 2.0      # a request needing a dead dependency must be answered this fast
RECOVER_WITHIN_S = 10.0    # after the dependency returns, service resumes within this
REQUEST_TIMEOUT_S = 5.0


def timed(stack, method, path, **kw):
    kw.setdefault("timeout", REQUEST_TIMEOUT_S)
    t0 = time.monotonic()
    r = stack.request(method, path, **kw)
    return r, time.monotonic() - t0


def wait_until(pred, timeout):
    """Poll pred() until it returns a truthy value; return (value, last)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            ok, last = pred()
        except requests.RequestException as e:
            ok, last = False, repr(e)
        if ok:
            return True, last
        time.sleep(0.25)
    return False, last


def outage_fixture(stack, stop, start):
    state = {"down": False}

    def down():
        state["down"] = True
        stop()

    def up():
        start()
        state["down"] = False

    try:
        yield types.SimpleNamespace(down=down, up=up)
    finally:
        try:
            if state["down"]:
                start()
        finally:
            stack.wait_ready(60)


@pytest.fixture
def redis_outage(stack):
    yield from outage_fixture(stack, stack.stop_redis, stack.start_redis)


@pytest.fixture
def mongo_outage(stack):
    yield from outage_fixture(stack, stack.stop_ferretdb, stack.start_ferretdb)


@pytest.fixture
def postgres_outage(stack):
    yield from outage_fixture(stack, stack.stop_postgres, stack.start_postgres)


@pytest.fixture
def tag(stack, principal):
    r = stack.post("/v1/tags", json={"name": "dep-" + uuid.uuid4().hex[:10]}, headers=principal.headers)
    assert r.status_code == 201, r.text
    return r.json()


def assert_retry_after(r):
    ra = r.headers.get("Retry-After")
    assert ra is not None, "503 without Retry-After"
    assert ra.strip().isdigit() and int(ra) >= 1, f"Retry-After {ra!r} is not a positive number of seconds"


def readyz_goes_down(stack, down, up):
    """Poll /readyz from the moment `down` stopped: every answer must come within
    ANSWER_WITHIN_S, and a 503 naming `down` must arrive within ANSWER_WITHIN_S
    of the dependency going away (the server may probe in the background)."""
    t0 = time.monotonic()
    seen = []
    while True:
        r, elapsed = timed(stack, "GET", "/readyz")
        seen.append((round(time.monotonic() - t0, 2), r.status_code, round(elapsed, 2)))
        assert elapsed <= ANSWER_WITHIN_S, f"/readyz took {elapsed:.2f}s (limit {ANSWER_WITHIN_S}s)"
        if r.status_code != 200:
            break
        assert time.monotonic() - t0 <= ANSWER_WITHIN_S, (
            f"/readyz still 200 {ANSWER_WITHIN_S}s after {down} went down: {seen}")
        time.sleep(0.1)
    assert r.status_code == 503, f"/readyz -> {r.status_code} {r.text}"
    assert r.headers.get("Content-Type", "").split(";")[0].strip() == "application/json"
    body = r.json()
    assert body["status"] == "not_ready", body
    assert body["checks"][down] == "down", body
    assert body["checks"][up] == "ok", body
    assert "X-Request-Id" in r.headers


def recover(stack, principal, tag):
    def ready():
        r = stack.get("/readyz", timeout=REQUEST_TIMEOUT_S)
        return r.status_code == 200, f"/readyz {r.status_code} {r.text[:200]}"

    def served():
        r = stack.get(f"/v1/tags/{tag['id']}", headers=principal.headers, timeout=REQUEST_TIMEOUT_S)
        return r.status_code == 200 and r.json()["id"] == tag["id"], f"GET tag {r.status_code} {r.text[:200]}"

    t0 = time.monotonic()
    ok, last = wait_until(ready, RECOVER_WITHIN_S)
    assert ok, f"/readyz not 200 within {RECOVER_WITHIN_S}s of the dependency returning (last: {last})"
    ok, last = wait_until(served, max(0.5, RECOVER_WITHIN_S - (time.monotonic() - t0)))
    assert ok, f"GET /v1/tags/{{id}} not 200 within {RECOVER_WITHIN_S}s of the dependency returning (last: {last})"


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------

def test_readyz_names_redis_down_quickly(stack, redis_outage):
    redis_outage.down()
    readyz_goes_down(stack, down="redis", up="mongodb")


def test_healthz_stays_ok_while_redis_down(stack, redis_outage):
    redis_outage.down()
    r, elapsed = timed(stack, "GET", "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert elapsed <= ANSWER_WITHIN_S


def test_authenticated_route_is_503_quickly_when_redis_down(stack, principal, tag, problem, redis_outage):
    redis_outage.down()
    r, elapsed = timed(stack, "GET", f"/v1/tags/{tag['id']}", headers=principal.headers)
    assert elapsed <= ANSWER_WITHIN_S, f"answered after {elapsed:.2f}s (limit {ANSWER_WITHIN_S}s)"
    problem(r, 503, "dependency-unavailable")
    assert_retry_after(r)


def test_service_recovers_after_redis_restart(stack, principal, tag, problem, redis_outage):
    pid = stack.server_proc.pid
    redis_outage.down()
    r, _ = timed(stack, "GET", f"/v1/tags/{tag['id']}", headers=principal.headers)
    problem(r, 503, "dependency-unavailable")
    redis_outage.up()
    recover(stack, principal, tag)
    assert stack.server_alive() and stack.server_proc.pid == pid


def test_repeated_redis_restarts_are_survived(stack, principal, tag, redis_outage):
    pid = stack.server_proc.pid
    for _ in range(3):
        redis_outage.down()
        r, elapsed = timed(stack, "GET", f"/v1/tags/{tag['id']}", headers=principal.headers)
        assert r.status_code == 503 and elapsed <= ANSWER_WITHIN_S, (r.status_code, elapsed)
        redis_outage.up()
        recover(stack, principal, tag)
    assert stack.server_alive() and stack.server_proc.pid == pid


# ---------------------------------------------------------------------------
# MongoDB (FerretDB)
# ---------------------------------------------------------------------------

def test_readyz_names_mongodb_down_quickly(stack, mongo_outage):
    mongo_outage.down()
    readyz_goes_down(stack, down="mongodb", up="redis")


def test_db_route_is_503_quickly_when_mongodb_down(stack, principal, tag, problem, mongo_outage):
    mongo_outage.down()
    r, elapsed = timed(stack, "GET", f"/v1/tags/{tag['id']}", headers=principal.headers)
    assert elapsed <= ANSWER_WITHIN_S, f"answered after {elapsed:.2f}s (limit {ANSWER_WITHIN_S}s)"
    problem(r, 503, "dependency-unavailable")
    assert_retry_after(r)


def test_write_refused_during_mongodb_outage_is_not_applied_later(stack, principal, problem, mongo_outage):
    name = "outage-" + uuid.uuid4().hex[:10]
    mongo_outage.down()
    r, elapsed = timed(stack, "POST", "/v1/tags", json={"name": name}, headers=principal.headers)
    assert elapsed <= ANSWER_WITHIN_S, f"answered after {elapsed:.2f}s (limit {ANSWER_WITHIN_S}s)"
    problem(r, 503, "dependency-unavailable")
    assert_retry_after(r)
    mongo_outage.up()
    stack.wait_ready(RECOVER_WITHIN_S + 20)
    time.sleep(2)  # give a stray queued write the chance to land
    assert stack.mongo.tags.count_documents({"name": name}) == 0, "a write answered 503 was applied afterwards"


def test_service_recovers_after_mongodb_restart(stack, principal, tag, problem, mongo_outage):
    pid = stack.server_proc.pid
    mongo_outage.down()
    r, _ = timed(stack, "GET", f"/v1/tags/{tag['id']}", headers=principal.headers)
    problem(r, 503, "dependency-unavailable")
    mongo_outage.up()
    recover(stack, principal, tag)
    created = stack.post("/v1/tags", json={"name": "after-mongo-" + uuid.uuid4().hex[:8]},
                         headers=principal.headers)
    assert created.status_code == 201, created.text
    assert stack.server_alive() and stack.server_proc.pid == pid


# ---------------------------------------------------------------------------
# PostgreSQL (behind FerretDB)
# ---------------------------------------------------------------------------

def test_readyz_names_postgresql_down_quickly(stack, postgres_outage):
    postgres_outage.down()
    readyz_goes_down(stack, down="postgresql", up="redis")


def test_db_route_is_503_quickly_when_postgresql_down(stack, principal, tag, problem, postgres_outage):
    postgres_outage.down()
    r, elapsed = timed(stack, "GET", f"/v1/tags/{tag['id']}", headers=principal.headers)
    assert elapsed <= ANSWER_WITHIN_S, f"answered after {elapsed:.2f}s (limit {ANSWER_WITHIN_S}s)"
    problem(r, 503, "dependency-unavailable")
    assert_retry_after(r)
    r, elapsed = timed(stack, "PATCH", f"/v1/tags/{tag['id']}", json={"name": "pg-down"},
                       headers=principal.headers)
    assert elapsed <= ANSWER_WITHIN_S, f"answered after {elapsed:.2f}s (limit {ANSWER_WITHIN_S}s)"
    problem(r, 503, "dependency-unavailable")


def test_service_recovers_after_postgresql_restart(stack, principal, tag, problem, postgres_outage):
    pid = stack.server_proc.pid
    postgres_outage.down()
    r, _ = timed(stack, "GET", f"/v1/tags/{tag['id']}", headers=principal.headers)
    problem(r, 503, "dependency-unavailable")
    postgres_outage.up()
    recover(stack, principal, tag)
    created = stack.post("/v1/tags", json={"name": "after-pg-" + uuid.uuid4().hex[:8]},
                         headers=principal.headers)
    assert created.status_code == 201, created.text
    assert stack.server_alive() and stack.server_proc.pid == pid
