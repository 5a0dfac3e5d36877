"""What the per-process caches of authentication may and may not do.

A process keeps verified access tokens (so a token seen before skips the
signature check) and checks a session's liveness once per loop turn for all
the requests of that session that arrived in the turn. Neither may let a
request through that a fresh check would refuse: an expired, tampered or
foreign token, or a session ended before the request was sent - on this
process or another one."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from bson import ObjectId

from conftest import HTTP_TIMEOUT_S, login, sanitizer_hits, signup


def bearer(token):
    return {"Authorization": "Bearer " + token}


def me(target, headers):
    return requests.get(target.base_url + "/v1/me", headers=headers, timeout=HTTP_TIMEOUT_S)


def tags(stack, headers):
    return stack.get("/v1/tags", headers=headers)


def change_one_char(token, part):
    """The token with one character of a part (0 header, 1 claims, 2
    signature) changed; a middle character, so every bit of it counts."""
    parts = token.split(".")
    s = parts[part]
    i = len(s) // 2
    parts[part] = s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]
    return ".".join(parts)


def test_cached_token_is_refused_once_it_expires(stack, principal, problem):
    now = int(time.time())
    # exp plus the 30 s leeway ends 3 s from now
    claims = stack.claims(principal.tenant_id, principal.user_id, principal.session_id,
                          iat=now - 600, exp=now - 27)
    headers = bearer(stack.sign(claims))
    assert tags(stack, headers).status_code == 200
    assert tags(stack, headers).status_code == 200  # now served from the cache
    time.sleep(max(0.0, now + 3 + 1.5 - time.time()))
    problem(tags(stack, headers), 401, "unauthorized")


@pytest.mark.parametrize("part", [0, 1, 2], ids=["header", "claims", "signature"])
def test_token_one_character_off_a_cached_one_is_refused(stack, principal, problem, part):
    assert tags(stack, principal.headers).status_code == 200
    problem(tags(stack, bearer(change_one_char(principal.token, part))), 401, "unauthorized")
    assert tags(stack, principal.headers).status_code == 200  # the cached one still works


def test_token_naming_another_tenant_is_not_served_from_the_cache(stack, principal, problem):
    """Same user and session id, other tenant: a token of its own, checked
    against that tenant's session (which does not exist)."""
    assert tags(stack, principal.headers).status_code == 200
    claims = stack.claims(str(ObjectId()), principal.user_id, principal.session_id)
    problem(tags(stack, bearer(stack.sign(claims))), 401, "unauthorized")


def test_token_naming_another_tenant_reads_that_tenants_session(stack, principal):
    other_tid = str(ObjectId())
    stack.create_session(other_tid, principal.session_id, principal.user_id)
    assert me(stack, principal.headers).json()["tenant"]["id"] == principal.tenant_id
    claims = stack.claims(other_tid, principal.user_id, principal.session_id)
    r = me(stack, bearer(stack.sign(claims)))
    assert r.status_code == 200, r.text
    assert r.json()["tenant"]["id"] == other_tid


@pytest.fixture
def second_process(stack, trellis):
    """Another server process on the same Redis and database, its rate
    limits lifted so that bursts reach the session check."""
    env = trellis.env(mongo_uri=stack.server_env()["TRELLIS_MONGO_URI"], rate_limit_rps=1000000,
                      rate_limit_burst=1000000, rate_limit_user_rps=1000000,
                      rate_limit_user_burst=1000000)
    proc = trellis.start("serve", env=env)
    proc.wait_ready()
    yield proc
    assert not sanitizer_hits(proc.output()), proc.output_tail(80)


def test_burst_of_one_session_is_answered_each_with_its_session(stack, second_process):
    owner = signup(stack)
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda _: me(second_process, owner.headers), range(200)))
    assert [r.status_code for r in answers] == [200] * 200
    assert {r.json()["user"]["id"] for r in answers} == {owner.user_id}


def test_burst_after_the_session_ended_is_refused_entirely(stack, second_process):
    owner = signup(stack)
    assert me(second_process, owner.headers).status_code == 200
    stack.redis.delete(f"t:{{{owner.tenant_id}}}:sess:{owner.session_id}")
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda _: me(second_process, owner.headers), range(100)))
    assert [r.status_code for r in answers] == [401] * 100


def burst_across_a_deletion(stack, target, account, clients=8, before_s=0.5, after_s=0.3):
    """Clients keep the account's session busy on target; the session is
    deleted in Redis meanwhile. Returns (statuses of requests sent before
    the deletion returned, statuses of those sent after it)."""
    stop = threading.Event()
    results = []  # (sent at, status)
    lock = threading.Lock()

    def client():
        with requests.Session() as s:
            while not stop.is_set():
                sent = time.monotonic()
                r = s.get(target.base_url + "/v1/me", headers=account.headers, timeout=HTTP_TIMEOUT_S)
                with lock:
                    results.append((sent, r.status_code))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(before_s)
        stack.redis.delete(f"t:{{{account.tenant_id}}}:sess:{account.session_id}")
        deleted_at = time.monotonic()
        time.sleep(after_s)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return ([st for sent, st in results if sent < deleted_at],
            [st for sent, st in results if sent > deleted_at])


def test_no_request_sent_after_a_revocation_passes_during_a_burst(stack, second_process):
    """Every request sent after the deletion returned must be refused,
    whatever check of that session was open or in flight meanwhile. Several
    rounds, since a deletion may fall anywhere in a turn."""
    for _ in range(4):
        before, after = burst_across_a_deletion(stack, second_process, signup(stack))
        assert before.count(200) > 40, "the burst never got going"
        assert after and set(after) == {401}, f"sent after the deletion: {sorted(set(after))}"


def test_logout_on_one_process_refuses_the_token_at_once_on_another(stack, second_process, problem):
    owner = signup(stack)
    for _ in range(3):  # token and session cached on the second process
        assert me(second_process, owner.headers).status_code == 200
    r = requests.post(stack.base_url + "/v1/auth/logout", headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 204, r.text
    problem(me(second_process, owner.headers), 401, "unauthorized")
    problem(me(stack, owner.headers), 401, "unauthorized")


def test_revoked_session_is_refused_at_once_on_another_process(stack, second_process, problem):
    """A refresh token used twice revokes its session (on the first
    process); the second process had the session's tokens cached."""
    owner = signup(stack)
    acct = login(stack, owner.slug, owner.email, owner.password)

    def refresh(token):
        return requests.post(stack.base_url + "/v1/auth/refresh", json={"refresh_token": token},
                             timeout=HTTP_TIMEOUT_S)

    first = refresh(acct.refresh_token)
    assert first.status_code == 200, first.text
    newer = bearer(first.json()["access_token"])
    for _ in range(3):
        assert me(second_process, acct.headers).status_code == 200
        assert me(second_process, newer).status_code == 200
    problem(refresh(acct.refresh_token), 401, "unauthorized")  # reuse: revoked
    problem(me(second_process, acct.headers), 401, "unauthorized")
    problem(me(second_process, newer), 401, "unauthorized")
    assert me(second_process, owner.headers).status_code == 200  # another session lives
