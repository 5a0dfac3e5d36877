"""Rate limits and login throttling, against dedicated trellis processes
started with small limits (each with its own database and its own Redis
database, so the session's server and other tests are not affected).

Server "limits":  per user 1 rps / burst 5, per API key 1 rps / burst 5,
                  per account 3 failed logins in a 10 s window.
Server "tenant":  per tenant 1 rps / burst 8 (users and keys unlimited),
                  per address 4 failed logins in a 10 s window."""

import secrets
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redis_lib
import requests

from conftest import (DEFAULT_PASSWORD, TrellisLauncher, check_problem, create_user, login,
                      login_request, sanitizer_hits, signup, unique_email)

WINDOW = 10
ACCOUNT_MAX = 3
ADDRESS_MAX = 4
USER_BURST = 5
KEY_BURST = 5
TENANT_BURST = 8
LIMITS_REDIS_DB = 13
TENANT_REDIS_DB = 14
ADDR_KEY = "login:fail:addr:127.0.0.1"


class Server:
    """A dedicated trellis process plus a Redis client on its Redis database."""

    def __init__(self, proc, redis_client, db):
        self.proc = proc
        self.base_url = proc.base_url
        self.redis = redis_client
        self.db = db

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.request(method, self.base_url + path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)


def start_server(stack, launcher, redis_db, **limits):
    redis_url = f"redis://127.0.0.1:{stack.redis_port}/{redis_db}"
    db = launcher.fresh_db("rl")
    env = launcher.env(db=db, redis_url=redis_url, **limits)
    run = launcher.run("migrate", env=env)
    assert run.returncode == 0, f"migrate failed: {run!r}"
    proc = launcher.start("serve", env=env)
    proc.wait_ready()
    client = redis_lib.Redis(host="127.0.0.1", port=stack.redis_port, db=redis_db, decode_responses=True,
                             socket_timeout=5)
    client.delete(ADDR_KEY)
    return Server(proc, client, launcher.db(db))


def stop_server(server):
    """SIGTERM, then the process must exit 0 with a clean sanitizer log."""
    server.proc.signal(signal.SIGTERM)
    code = server.proc.wait_exit(20)
    server.redis.delete(ADDR_KEY)
    server.redis.close()
    text = server.proc.output()
    hits = sanitizer_hits(text)
    assert code == 0 and not hits, f"dedicated server exit {code}, sanitizer {hits}:\n{server.proc.output_tail()}"


@pytest.fixture(scope="module")
def launcher(stack):
    la = TrellisLauncher(stack)
    try:
        yield la
    finally:
        la.close()


@pytest.fixture(scope="module")
def limits(stack, launcher):
    server = start_server(
        stack, launcher, LIMITS_REDIS_DB,
        rate_limit_user_rps=1, rate_limit_user_burst=USER_BURST,
        rate_limit_key_rps=1, rate_limit_key_burst=KEY_BURST,
        rate_limit_rps=100000, rate_limit_burst=1000000,
        login_max_account_failures=ACCOUNT_MAX, login_max_address_failures=100000,
        login_failure_window=WINDOW)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def tenant_server(stack, launcher):
    server = start_server(
        stack, launcher, TENANT_REDIS_DB,
        rate_limit_user_rps=100000, rate_limit_user_burst=1000000,
        rate_limit_key_rps=100000, rate_limit_key_burst=1000000,
        rate_limit_rps=1, rate_limit_burst=TENANT_BURST,
        login_max_account_failures=1000, login_max_address_failures=ADDRESS_MAX,
        login_failure_window=WINDOW)
    yield server
    stop_server(server)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def retry_after(resp):
    value = resp.headers.get("Retry-After")
    assert value is not None, f"429 without Retry-After: {resp.headers}"
    assert value.isdigit(), f"Retry-After is not a number of seconds: {value!r}"
    n = int(value)
    assert n >= 1, f"Retry-After {n} < 1"
    return n


def check_429(resp, max_wait=None):
    check_problem(resp, 429, "rate-limited")
    n = retry_after(resp)
    if max_wait is not None:
        assert n <= max_wait, f"Retry-After {n} > {max_wait}"
    return n


def hammer(server, headers, limit, path="/v1/tags"):
    """GET `path` until the first 429 (at most `limit` requests).
    Returns (number of 200s before it, the 429 response or None)."""
    ok = 0
    for _ in range(limit):
        r = server.get(path, headers=headers)
        if r.status_code == 429:
            return ok, r
        assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
        ok += 1
    return ok, None


def wrong_login(server, slug, email):
    return login_request(server, slug, email, "wrong-" + secrets.token_hex(6))


def acct_keys(server):
    return server.redis.keys("login:fail:acct:*")


def sessions_of(server, acct):
    return server.redis.scard(f"t:{{{acct.tenant_id}}}:usess:{acct.user_id}")


# ---------------------------------------------------------------------------
# per user
# ---------------------------------------------------------------------------

def test_user_over_burst_gets_429_with_retry_after(limits):
    acct = signup(limits)
    ok, r = hammer(limits, acct.headers, USER_BURST + 5)
    assert r is not None, f"no 429 after {USER_BURST + 5} requests with a burst of {USER_BURST}"
    assert USER_BURST <= ok <= USER_BURST + 2, f"{ok} requests passed before the 429 (burst {USER_BURST})"
    check_429(r, max_wait=2)


def test_user_recovers_after_retry_after(limits):
    acct = signup(limits)
    ok, r = hammer(limits, acct.headers, USER_BURST + 5)
    assert r is not None
    wait = check_429(r)
    time.sleep(wait + 0.2)
    r = limits.get("/v1/tags", headers=acct.headers)
    assert r.status_code == 200, f"still limited after waiting Retry-After={wait}: {r.status_code} {r.text[:200]}"


def test_user_limit_does_not_touch_other_users(limits):
    owner = signup(limits)
    other = login(limits, owner.slug, create_user(limits, owner, ["manager"])["email"])
    ok, r = hammer(limits, owner.headers, USER_BURST + 5)
    assert r is not None
    r = limits.get("/v1/tags", headers=other.headers)
    assert r.status_code == 200, f"a second user of the same tenant was limited: {r.text[:200]}"


def test_rejected_request_changes_nothing(limits):
    acct = signup(limits)
    ok, r = hammer(limits, acct.headers, USER_BURST + 5)
    assert r is not None
    before = limits.db["tags"].count_documents({"tenant_id": acct.tenant_oid})
    r = limits.post("/v1/tags", json={"name": "limited-" + secrets.token_hex(4)}, headers=acct.headers)
    check_429(r)
    assert limits.db["tags"].count_documents({"tenant_id": acct.tenant_oid}) == before


def test_user_limit_applies_to_every_route(limits):
    acct = signup(limits)
    ok, r = hammer(limits, acct.headers, USER_BURST + 5, path="/v1/me")
    assert r is not None
    for method, path in (("GET", "/v1/tags"), ("GET", "/v1/users"), ("GET", "/v1/roles")):
        check_429(limits.request(method, path, headers=acct.headers))


def test_health_is_not_limited(limits):
    acct = signup(limits)
    hammer(limits, acct.headers, USER_BURST + 5)
    for _ in range(USER_BURST + 3):
        assert limits.get("/healthz").status_code == 200


# ---------------------------------------------------------------------------
# per API key
# ---------------------------------------------------------------------------

def make_key(server, acct, perms=("system.tags.read",)):
    r = server.post("/v1/api-keys", headers=acct.headers, json={"name": "rl", "permissions": list(perms)})
    assert r.status_code == 201, r.text
    return {"X-API-Key": r.json()["key"]}


def test_key_over_burst_gets_429_with_retry_after(limits):
    acct = signup(limits)
    key = make_key(limits, acct)
    ok, r = hammer(limits, key, KEY_BURST + 5)
    assert r is not None, f"no 429 for the API key after {KEY_BURST + 5} requests"
    assert KEY_BURST <= ok <= KEY_BURST + 2, ok
    check_429(r, max_wait=2)


def test_key_recovers_after_retry_after(limits):
    acct = signup(limits)
    key = make_key(limits, acct)
    ok, r = hammer(limits, key, KEY_BURST + 5)
    assert r is not None
    time.sleep(check_429(r) + 0.2)
    assert limits.get("/v1/tags", headers=key).status_code == 200


def test_key_limit_is_per_key(limits):
    acct = signup(limits)
    k1 = make_key(limits, acct)
    k2 = make_key(limits, acct)
    ok, r = hammer(limits, k1, KEY_BURST + 5)
    assert r is not None
    assert limits.get("/v1/tags", headers=k2).status_code == 200
    assert limits.get("/v1/tags", headers=acct.headers).status_code == 200


def test_revoked_key_is_401_not_429(limits):
    acct = signup(limits)
    key = make_key(limits, acct)
    key_id = key["X-API-Key"].split("_")[1]
    hammer(limits, key, KEY_BURST + 5)
    r = limits.request("DELETE", f"/v1/api-keys/{key_id}", headers=acct.headers)
    assert r.status_code == 204, r.text
    check_problem(limits.get("/v1/tags", headers=key), 401)


# ---------------------------------------------------------------------------
# login throttling per account
# ---------------------------------------------------------------------------

def test_account_throttled_after_max_failures_even_with_right_password(limits):
    acct = signup(limits)
    for _ in range(ACCOUNT_MAX):
        check_problem(wrong_login(limits, acct.slug, acct.email), 401)
    sessions = sessions_of(limits, acct)
    r = login_request(limits, acct.slug, acct.email, acct.password)
    check_429(r, max_wait=WINDOW)
    assert "access_token" not in r.text
    assert sessions_of(limits, acct) == sessions, "a throttled login opened a session"


def test_throttled_account_recovers_after_the_window(limits):
    acct = signup(limits)
    for _ in range(ACCOUNT_MAX):
        wrong_login(limits, acct.slug, acct.email)
    wait = check_429(login_request(limits, acct.slug, acct.email, acct.password), max_wait=WINDOW)
    time.sleep(wait + 1.0)
    r = login_request(limits, acct.slug, acct.email, acct.password)
    assert r.status_code == 200, f"still throttled {wait + 1}s later: {r.status_code} {r.text[:200]}"


def test_attempts_while_throttled_do_not_extend_the_window(limits):
    acct = signup(limits)
    for _ in range(ACCOUNT_MAX):
        wrong_login(limits, acct.slug, acct.email)
    first = check_429(wrong_login(limits, acct.slug, acct.email), max_wait=WINDOW)
    time.sleep(2.2)
    for _ in range(3):
        later = check_429(wrong_login(limits, acct.slug, acct.email), max_wait=WINDOW)
    assert later <= first - 1, f"Retry-After went from {first} to {later}: throttled attempts extend the window"


def test_successful_login_clears_the_account_counter(limits):
    acct = signup(limits)
    for _ in range(ACCOUNT_MAX - 1):
        check_problem(wrong_login(limits, acct.slug, acct.email), 401)
    assert login_request(limits, acct.slug, acct.email, acct.password).status_code == 200
    for _ in range(ACCOUNT_MAX - 1):
        check_problem(wrong_login(limits, acct.slug, acct.email), 401)
    r = login_request(limits, acct.slug, acct.email, acct.password)
    assert r.status_code == 200, f"failures before a successful login still counted: {r.status_code} {r.text[:200]}"


def test_concurrent_failures_cannot_exceed_the_account_limit(limits):
    """Guesses sent in parallel are bounded like sequential ones: at most
    ACCOUNT_MAX wrong passwords are checked (401), the rest get 429."""
    acct = signup(limits)
    attempts = 16
    with ThreadPoolExecutor(max_workers=attempts) as pool:
        results = list(pool.map(lambda _: wrong_login(limits, acct.slug, acct.email), range(attempts)))
    codes = [r.status_code for r in results]
    assert set(codes) <= {401, 429}, codes
    assert codes.count(401) <= ACCOUNT_MAX, (
        f"{codes.count(401)} wrong passwords were checked in parallel with a limit of {ACCOUNT_MAX}: {codes}")
    check_429(login_request(limits, acct.slug, acct.email, acct.password))


def test_throttle_is_per_account(limits):
    owner = signup(limits)
    other = create_user(limits, owner, ["employee"])
    for _ in range(ACCOUNT_MAX):
        wrong_login(limits, owner.slug, owner.email)
    check_429(login_request(limits, owner.slug, owner.email, owner.password))
    r = login_request(limits, owner.slug, other["email"], DEFAULT_PASSWORD)
    assert r.status_code == 200, r.text
    # the owner's live session is not affected by the throttle
    assert limits.get("/v1/me", headers=owner.headers).status_code == 200


def test_unknown_account_is_throttled_the_same_way(limits):
    """No account enumeration: a made-up email is throttled like a real one."""
    acct = signup(limits)
    ghost = unique_email("ghost")
    for _ in range(ACCOUNT_MAX):
        check_problem(wrong_login(limits, acct.slug, ghost), 401)
    check_429(wrong_login(limits, acct.slug, ghost), max_wait=WINDOW)


def test_account_counter_lives_in_redis_with_the_window(limits):
    acct = signup(limits)
    before = set(acct_keys(limits))
    wrong_login(limits, acct.slug, acct.email)
    new = set(acct_keys(limits)) - before
    assert len(new) == 1, f"expected one new login:fail:acct:* key, got {new}"
    key = new.pop()
    assert limits.redis.get(key) == "1"
    ttl = limits.redis.ttl(key)
    assert 0 < ttl <= WINDOW, ttl
    assert acct.email not in key and acct.slug not in key, "the key shows the account in clear"


def test_email_case_does_not_dodge_the_throttle(limits):
    acct = signup(limits)
    variants = [acct.email, acct.email.upper(), acct.email.capitalize()]
    for i in range(ACCOUNT_MAX):
        check_problem(wrong_login(limits, acct.slug, variants[i % len(variants)]), 401)
    check_429(login_request(limits, acct.slug, acct.email.upper(), acct.password))


# ---------------------------------------------------------------------------
# login throttling per address
# ---------------------------------------------------------------------------

def test_address_throttled_across_accounts_and_recovers(tenant_server):
    server = tenant_server
    server.redis.delete(ADDR_KEY)
    try:
        owner = signup(server)
        for _ in range(ADDRESS_MAX):
            check_problem(wrong_login(server, owner.slug, unique_email("spray")), 401)
        assert server.redis.get(ADDR_KEY) == str(ADDRESS_MAX)
        # a different, real account with the right password from the same address
        r = login_request(server, owner.slug, owner.email, owner.password)
        wait = check_429(r, max_wait=WINDOW)
        assert r.headers.get("X-Request-Id"), "429 without X-Request-Id"
        # a client-supplied forwarding header does not change the address
        spoofed = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.7", "Forwarded": "for=203.0.113.7"}
        r = server.post("/v1/auth/login", headers=spoofed, json={
            "tenant_slug": owner.slug, "email": owner.email, "password": owner.password})
        check_429(r, max_wait=WINDOW)
        time.sleep(wait + 1.0)
        r = login_request(server, owner.slug, owner.email, owner.password)
        assert r.status_code == 200, f"address still throttled after the window: {r.status_code} {r.text[:200]}"
    finally:
        server.redis.delete(ADDR_KEY)


# ---------------------------------------------------------------------------
# per tenant
# ---------------------------------------------------------------------------

def test_tenant_bucket_is_shared_by_its_users(tenant_server):
    server = tenant_server
    owner = signup(server)
    users = [owner]
    for _ in range(2):
        u = create_user(server, owner, ["manager"])
        users.append(login(server, owner.slug, u["email"]))
    time.sleep(3)  # let the two user creations' tokens come back (1 rps)
    made = {u.user_id: 0 for u in users}
    hit = None
    for i in range(TENANT_BURST + 6):
        u = users[i % len(users)]
        r = server.get("/v1/tags", headers=u.headers)
        made[u.user_id] += 1
        if r.status_code == 429:
            hit = (u, r)
            break
        assert r.status_code == 200, r.text
    assert hit is not None, f"no 429 after {TENANT_BURST + 6} requests of one tenant (burst {TENANT_BURST})"
    u, r = hit
    check_429(r, max_wait=2)
    assert made[u.user_id] <= TENANT_BURST // 2 + 1, made
    assert sum(made.values()) >= TENANT_BURST, f"429 before the tenant burst was used: {made}"


def test_tenant_limit_does_not_touch_other_tenants(tenant_server):
    server = tenant_server
    a = signup(server)
    b = signup(server)
    ok, r = hammer(server, a.headers, TENANT_BURST + 6)
    assert r is not None, "tenant A was never limited"
    assert server.get("/v1/tags", headers=b.headers).status_code == 200


def test_tenant_limit_counts_api_keys_too(tenant_server):
    server = tenant_server
    acct = signup(server)
    time.sleep(1.2)
    key = make_key(server, acct)
    ok, r = hammer(server, key, TENANT_BURST + 6)
    assert r is not None, "API key requests are not counted against the tenant"
    check_429(r)
    check_429(server.get("/v1/tags", headers=acct.headers))
