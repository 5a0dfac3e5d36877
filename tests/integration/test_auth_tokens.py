"""Bearer token verification: every flawed token is 401 problem+json and creates nothing.

Each flawed token is built for a principal whose session IS alive in Redis, so
the single flaw named by the test id is the only reason to reject it."""

import base64
import json
import secrets
import time
import uuid

import pytest
from bson import ObjectId


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64json(obj):
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def bearer(token):
    return {"Authorization": "Bearer " + token}


def hand_made(header, claims, signature=b""):
    return f"{b64json(header)}.{b64json(claims)}.{b64url(signature)}"


# Each builder takes (stack, principal) and returns the request headers to send.
def _no_token(st, p):
    return {}


def _garbage(st, p):
    return bearer("this-is-not-a-jwt")


def _garbage_three_parts(st, p):
    return bearer("aaaa.bbbb.cccc")


def _empty_bearer(st, p):
    return {"Authorization": "Bearer "}


def _basic_scheme(st, p):
    return {"Authorization": "Basic " + base64.b64encode(b"user:password").decode()}


def _token_without_scheme(st, p):
    return {"Authorization": p.token}


def _alg_none(st, p):
    claims = st.claims(p.tenant_id, p.user_id, p.session_id)
    return bearer(hand_made({"alg": "none", "typ": "JWT", "kid": "k1"}, claims))


def _alg_none_mixed_case(st, p):
    claims = st.claims(p.tenant_id, p.user_id, p.session_id)
    return bearer(hand_made({"alg": "nOnE", "typ": "JWT"}, claims))


def _alg_none_with_hs256_signature(st, p):
    """alg none, but carrying the signature of a genuine token."""
    good = p.token.split(".")
    claims = st.claims(p.tenant_id, p.user_id, p.session_id)
    header = b64json({"alg": "none", "typ": "JWT", "kid": "k1"})
    return bearer(f"{header}.{b64json(claims)}.{good[2]}")


def _hs256_other_key(st, p):
    claims = st.claims(p.tenant_id, p.user_id, p.session_id)
    return bearer(st.sign(claims, key="another-secret-that-is-long-enough-0123456789"))


def _rs256_header_fake_signature(st, p):
    claims = st.claims(p.tenant_id, p.user_id, p.session_id)
    return bearer(hand_made({"alg": "RS256", "typ": "JWT", "kid": "k1"}, claims, secrets.token_bytes(256)))


def _hs512_right_secret(st, p):
    claims = st.claims(p.tenant_id, p.user_id, p.session_id)
    return bearer(st.sign(claims, algorithm="HS512"))


def _expired(st, p):
    now = int(time.time())
    claims = st.claims(p.tenant_id, p.user_id, p.session_id, iat=now - 1000, exp=now - 120)
    return bearer(st.sign(claims))


def _nbf_in_future(st, p):
    now = int(time.time())
    claims = st.claims(p.tenant_id, p.user_id, p.session_id, nbf=now + 300)
    return bearer(st.sign(claims))


def _wrong_issuer(st, p):
    claims = st.claims(p.tenant_id, p.user_id, p.session_id, iss="evil-issuer")
    return bearer(st.sign(claims))


def _wrong_audience(st, p):
    claims = st.claims(p.tenant_id, p.user_id, p.session_id, aud="some-other-api")
    return bearer(st.sign(claims))


def _session_key_missing(st, p):
    claims = st.claims(p.tenant_id, p.user_id, "sid-" + uuid.uuid4().hex)
    return bearer(st.sign(claims))


def _session_of_other_tenant(st, p):
    """The sid is alive, but under another tenant's key."""
    sid = "sid-" + uuid.uuid4().hex
    st.create_session(str(ObjectId()), sid, p.user_id)
    claims = st.claims(p.tenant_id, p.user_id, sid)
    return bearer(st.sign(claims))


def _tampered_payload(st, p):
    """A genuine signature over other claims (tid swapped afterwards)."""
    head, _, sig = p.token.split(".")
    other_tid = str(ObjectId())
    st.create_session(other_tid, p.session_id, p.user_id)
    claims = st.claims(other_tid, p.user_id, p.session_id)
    return bearer(f"{head}.{b64json(claims)}.{sig}")


def _signature_stripped(st, p):
    head, payload, _ = p.token.split(".")
    return bearer(f"{head}.{payload}.")


def _two_segments(st, p):
    head, payload, _ = p.token.split(".")
    return bearer(f"{head}.{payload}")


FLAWED = [
    _no_token, _garbage, _garbage_three_parts, _empty_bearer, _basic_scheme, _token_without_scheme,
    _alg_none, _alg_none_mixed_case, _alg_none_with_hs256_signature, _hs256_other_key,
    _rs256_header_fake_signature, _hs512_right_secret, _expired, _nbf_in_future, _wrong_issuer,
    _wrong_audience, _session_key_missing, _session_of_other_tenant, _tampered_payload,
    _signature_stripped, _two_segments,
]


@pytest.mark.parametrize("build", FLAWED, ids=[f.__name__.lstrip("_") for f in FLAWED])
def test_flawed_token_is_401_and_creates_nothing(stack, principal, problem, build):
    headers = build(stack, principal)
    name = "auth-" + uuid.uuid4().hex[:12]

    created = stack.post("/v1/tags", json={"name": name}, headers=headers)
    problem(created, 401, "unauthorized")

    listed = stack.get("/v1/tags", headers=headers)
    problem(listed, 401, "unauthorized")

    assert stack.mongo.tags.count_documents({"name": name}) == 0
    assert stack.mongo.tags.count_documents({"tenant_id": principal.tenant_oid}) == 0


def test_valid_token_is_accepted(stack, principal):
    """Control for the cases above: the same construction without a flaw works."""
    name = "auth-ok-" + uuid.uuid4().hex[:8]
    created = stack.post("/v1/tags", json={"name": name}, headers=principal.headers)
    assert created.status_code == 201, created.text
    listed = stack.get("/v1/tags", headers=principal.headers)
    assert listed.status_code == 200, listed.text
    assert [t["name"] for t in listed.json()["items"]] == [name]


def test_token_without_kid_header_is_accepted(stack, principal):
    claims = stack.claims(principal.tenant_id, principal.user_id, principal.session_id)
    import jwt

    token = jwt.encode(claims, stack.secret, algorithm="HS256")
    r = stack.get("/v1/tags", headers=bearer(token))
    assert r.status_code == 200, r.text


def test_token_expired_within_leeway_is_accepted(stack, principal):
    now = int(time.time())
    claims = stack.claims(principal.tenant_id, principal.user_id, principal.session_id,
                          iat=now - 600, exp=now - 5)
    r = stack.get("/v1/tags", headers=bearer(stack.sign(claims)))
    assert r.status_code == 200, f"token expired 5 s ago (30 s leeway) was refused: {r.status_code} {r.text}"


def test_deleted_session_stops_token(stack, principal, problem):
    assert stack.get("/v1/tags", headers=principal.headers).status_code == 200
    stack.redis.delete(f"t:{{{principal.tenant_id}}}:sess:{principal.session_id}")
    r = stack.get("/v1/tags", headers=principal.headers)
    problem(r, 401, "unauthorized")
