"""Access tokens issued by the server (signup / login / refresh), the session
record behind them in Redis, and verification with a previous signing key
(key rotation: TRELLIS_JWT_PREVIOUS_SECRET / TRELLIS_JWT_PREVIOUS_KID)."""

import base64
import hashlib
import json
import re
import time

import jwt
import pytest
import requests

from conftest import (TrellisLauncher, check_problem, login, random_secret, signup, token_claims)

HEX64 = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_KID = "k1"
DEFAULT_TTL = 900

ROTATION_KID = "k2"
ROTATION_PREVIOUS_KID = "k0"
ROTATION_TTL = 120


def bearer(token):
    return {"Authorization": "Bearer " + token}


@pytest.fixture(scope="module")
def owner(stack):
    return signup(stack)


@pytest.fixture(scope="module")
def header(owner):
    return jwt.get_unverified_header(owner.access_token)


@pytest.fixture(scope="module")
def claims(owner):
    return token_claims(owner.access_token)


# ---------------------------------------------------------------------------
# the token the session server issues
# ---------------------------------------------------------------------------

def test_header_names_hs256(header):
    assert header.get("alg") == "HS256", header


def test_header_carries_the_default_kid(header):
    assert header.get("kid") == DEFAULT_KID, header


def test_claims_name_user_tenant_and_session(owner, claims):
    assert claims["sub"] == owner.user["id"]
    assert claims["tid"] == owner.tenant["id"]
    assert isinstance(claims["sid"], str) and claims["sid"], claims


def test_claims_carry_issuer_and_audience(stack, claims):
    assert claims["iss"] == stack.jwt_issuer
    aud = claims["aud"]
    assert aud == stack.jwt_audience or aud == [stack.jwt_audience], claims


def test_token_lives_900_seconds(owner, claims):
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int), claims
    assert claims["exp"] - claims["iat"] == DEFAULT_TTL
    assert owner.expires_in == DEFAULT_TTL


def test_issued_at_is_now(claims):
    assert abs(claims["iat"] - time.time()) < 120, claims


def test_signature_verifies_with_the_configured_secret(stack, owner):
    got = jwt.decode(owner.access_token, stack.secret, algorithms=["HS256"], audience=stack.jwt_audience,
                     issuer=stack.jwt_issuer, options={"require": ["sub", "tid", "sid", "iat", "exp", "iss",
                                                                   "aud"]})
    assert got["sub"] == owner.user_id


def test_login_token_has_the_same_form(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    h = jwt.get_unverified_header(acct.access_token)
    c = jwt.decode(acct.access_token, stack.secret, algorithms=["HS256"], audience=stack.jwt_audience,
                   issuer=stack.jwt_issuer)
    assert (h.get("alg"), h.get("kid")) == ("HS256", DEFAULT_KID)
    assert (c["sub"], c["tid"]) == (owner.user_id, owner.tenant_id)
    assert c["sid"] != owner.session_id
    assert c["exp"] - c["iat"] == DEFAULT_TTL


def test_refreshed_token_has_the_same_form(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    r = stack.post("/v1/auth/refresh", json={"refresh_token": acct.refresh_token})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    h = jwt.get_unverified_header(token)
    c = jwt.decode(token, stack.secret, algorithms=["HS256"], audience=stack.jwt_audience,
                   issuer=stack.jwt_issuer)
    assert (h.get("alg"), h.get("kid")) == ("HS256", DEFAULT_KID)
    assert (c["sub"], c["tid"]) == (owner.user_id, owner.tenant_id)
    assert c["exp"] - c["iat"] == DEFAULT_TTL
    assert r.json()["expires_in"] == DEFAULT_TTL


def test_token_of_a_tampered_claim_is_401(stack, owner):
    """Changing the payload of an issued token (here: exp) breaks its signature."""
    head, payload, sig = owner.access_token.split(".")
    c = token_claims(owner.access_token)
    c["exp"] = c["exp"] + 3600
    forged_payload = base64.urlsafe_b64encode(json.dumps(c, separators=(",", ":")).encode()).rstrip(b"=").decode()
    r = stack.get("/v1/me", headers=bearer(f"{head}.{forged_payload}.{sig}"))
    check_problem(r, 401, "unauthorized")


# ---------------------------------------------------------------------------
# the session record in Redis
# ---------------------------------------------------------------------------

def test_session_hash_holds_uid_perms_me_and_rt(stack, owner):
    key = owner.session_key
    assert stack.redis.type(key) == "hash", f"{key} is {stack.redis.type(key)}"
    h = stack.redis.hgetall(key)
    assert {"uid", "perms", "me", "rt"} <= set(h), sorted(h)
    assert h["uid"] == owner.user_id
    perms = h["perms"].split()
    assert "system.users.write" in perms and "system.tags.read" in perms, perms
    me = json.loads(h["me"])
    assert isinstance(me, dict)
    assert HEX64.match(h["rt"]), h["rt"]
    assert owner.password not in json.dumps(h)


def test_user_session_set_lists_the_session(stack, owner):
    members = stack.redis.smembers(f"t:{{{owner.tenant_id}}}:usess:{owner.user_id}")
    assert owner.session_id in members, members


def _sha256_candidates(refresh_token):
    """The refresh token and each of its separator-delimited parts."""
    parts = {refresh_token}
    for sep in (".", "_", ":", "~"):
        parts.update(p for p in refresh_token.split(sep) if p)
    return {hashlib.sha256(p.encode()).hexdigest() for p in parts}


def test_session_rt_is_sha256_of_the_refresh_secret(stack, owner):
    rt = stack.redis.hget(owner.session_key, "rt")
    assert rt in _sha256_candidates(owner.refresh_token), (
        "rt is not the sha256 of the refresh token or of any part of it")
    assert owner.refresh_token not in json.dumps(stack.redis.hgetall(owner.session_key)), (
        "the refresh token is stored in clear")


def test_refresh_replaces_rt(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    before = stack.redis.hget(acct.session_key, "rt")
    r = stack.post("/v1/auth/refresh", json={"refresh_token": acct.refresh_token})
    assert r.status_code == 200, r.text
    new = r.json()
    sid = token_claims(new["access_token"])["sid"]
    after = stack.redis.hget(f"t:{{{owner.tenant_id}}}:sess:{sid}", "rt")
    assert after is not None and after != before
    assert after in _sha256_candidates(new["refresh_token"])


# ---------------------------------------------------------------------------
# key rotation, on a server of its own
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rotation(stack):
    """A server with kid k2, previous key k0 and a 120 s access TTL, plus an
    owner signed up on it."""
    launcher = TrellisLauncher(stack)
    try:
        previous = random_secret(48)
        env = launcher.env(jwt_kid=ROTATION_KID, jwt_previous_secret=previous,
                           jwt_previous_kid=ROTATION_PREVIOUS_KID, access_ttl=ROTATION_TTL)
        run = launcher.run("migrate", env=env)
        assert run.returncode == 0, run
        server = launcher.start("serve", env=env)
        server.wait_ready()
        owner = signup(server)

        class Rotation:
            pass

        rot = Rotation()
        rot.server, rot.owner, rot.previous, rot.env = server, owner, previous, env
        yield rot
    finally:
        launcher.close()


def _resign(rotation, stack, key, kid):
    claims = token_claims(rotation.owner.access_token)
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": kid})


def _me(rotation, token):
    return requests.get(rotation.server.url("/v1/me"), headers=bearer(token), timeout=10)


def test_configured_kid_is_in_the_header(rotation):
    assert jwt.get_unverified_header(rotation.owner.access_token).get("kid") == ROTATION_KID


def test_configured_access_ttl_is_used(rotation):
    c = token_claims(rotation.owner.access_token)
    assert c["exp"] - c["iat"] == ROTATION_TTL
    assert rotation.owner.expires_in == ROTATION_TTL


def test_issued_token_works_on_the_rotation_server(rotation):
    r = _me(rotation, rotation.owner.access_token)
    assert r.status_code == 200, r.text


def test_token_signed_with_previous_secret_and_kid_is_accepted(stack, rotation):
    token = _resign(rotation, stack, rotation.previous, ROTATION_PREVIOUS_KID)
    r = _me(rotation, token)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == rotation.owner.user_id


def test_previous_secret_with_current_kid_is_rejected(stack, rotation):
    token = _resign(rotation, stack, rotation.previous, ROTATION_KID)
    check_problem(_me(rotation, token), 401, "unauthorized")


def test_current_secret_with_previous_kid_is_rejected(stack, rotation):
    token = _resign(rotation, stack, stack.secret, ROTATION_PREVIOUS_KID)
    check_problem(_me(rotation, token), 401, "unauthorized")


def test_previous_kid_with_an_unknown_secret_is_rejected(stack, rotation):
    token = _resign(rotation, stack, random_secret(48), ROTATION_PREVIOUS_KID)
    check_problem(_me(rotation, token), 401, "unauthorized")
