"""Identity: signup, login, refresh rotation, logout and /v1/me.

Tokens come from the server (signup / login), never minted by hand here.
Password hashing is Argon2id, so accounts that tests only read are shared
through module-scoped fixtures; tests that end or rotate a session log in
afresh (a new session of the shared account)."""

import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from bson import ObjectId

from conftest import (DEFAULT_PASSWORD, Account, check_problem, count_everywhere, create_user, find_doc, login,
                      login_request, signup, signup_request, token_claims, unique_email, unique_slug,
                      user_session)

HEX24 = re.compile(r"^[0-9a-f]{24}$")
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TENANT_FIELDS = {"id", "name", "slug", "created_at", "updated_at", "version"}
USER_FIELDS = {"id", "email", "name", "roles", "active", "created_at", "updated_at", "version"}
LOGIN_DETAIL = "wrong tenant, email or password"
SECRET_KEYS = {"password", "_password", "password_hash", "hash", "pwhash", "passwd"}


def media_type(resp):
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower()


def all_keys(obj):
    """Every dict key anywhere inside a JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from all_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from all_keys(v)


def assert_no_secret(resp, password):
    text = resp.text
    assert password not in text, f"the password appears in the response: {text[:500]}"
    assert "$argon2" not in text, f"a password hash appears in the response: {text[:500]}"
    if text:
        leaked = SECRET_KEYS & set(all_keys(resp.json()))
        assert not leaked, f"response carries {leaked}: {text[:500]}"


def assert_user(user):
    assert isinstance(user, dict), user
    assert USER_FIELDS <= set(user), f"user lacks {USER_FIELDS - set(user)}: {user}"
    assert HEX24.match(user["id"]), user
    for f in ("created_at", "updated_at"):
        assert RFC3339_MS.match(user[f]), f"{f}={user[f]!r}"
    assert isinstance(user["version"], int) and not isinstance(user["version"], bool)
    assert isinstance(user["roles"], list) and all(isinstance(x, str) for x in user["roles"])
    assert user["active"] in (True, False)
    return user


def me(stack, acct_or_headers):
    headers = acct_or_headers if isinstance(acct_or_headers, dict) else acct_or_headers.headers
    return stack.get("/v1/me", headers=headers)


def refresh(stack, refresh_token):
    return stack.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


def logout(stack, headers):
    return stack.post("/v1/auth/logout", headers=headers)


def user_doc(stack, email):
    name, doc = find_doc(stack.mongo, {"email": email})
    assert doc is not None, f"no stored document has email {email!r}"
    return doc


def session_alive(stack, acct):
    return stack.redis.exists(acct.session_key) == 1


# ---------------------------------------------------------------------------
# shared accounts
# ---------------------------------------------------------------------------

MIXED_LOCAL = "Ada.Owner-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def owner_signup(stack):
    """One signup with a mixed-case email: (response, request body)."""
    r, body = signup_request(stack, email=f"{MIXED_LOCAL}@Example.COM", tenant_name="Ada Labs",
                             name="Ada Owner")
    assert r.status_code == 201, r.text
    return r, body


@pytest.fixture(scope="module")
def owner(stack, owner_signup):
    r, body = owner_signup
    j = r.json()
    return Account(stack, body["tenant_slug"], j["user"]["email"], body["password"], j, tenant=j["tenant"])


@pytest.fixture(scope="module")
def other_owner(stack):
    """The owner of a second tenant."""
    return signup(stack)


@pytest.fixture(scope="module")
def deactivated(stack, owner):
    """A user of the owner's tenant, deactivated by the owner: (user, password)."""
    password = "deactivated-pass-" + secrets.token_hex(4)
    user = create_user(stack, owner, ["sales"], password=password)
    r = stack.delete(f"/v1/users/{user['id']}", headers=owner.headers)
    assert r.status_code == 204, r.text
    return user, password


# ---------------------------------------------------------------------------
# signup
# ---------------------------------------------------------------------------

def test_signup_returns_201_with_tenant_user_and_tokens(owner_signup):
    r, body = owner_signup
    assert r.status_code == 201
    assert media_type(r) == "application/json"
    j = r.json()
    assert {"tenant", "user", "access_token", "refresh_token", "expires_in"} <= set(j), j
    tenant = j["tenant"]
    assert TENANT_FIELDS <= set(tenant), f"tenant lacks {TENANT_FIELDS - set(tenant)}: {tenant}"
    assert HEX24.match(tenant["id"])
    assert tenant["name"] == "Ada Labs"
    assert tenant["slug"] == body["tenant_slug"]
    assert tenant["version"] == 1
    user = assert_user(j["user"])
    assert user["name"] == "Ada Owner"
    assert user["roles"] == ["owner"]
    assert user["active"] is True
    assert user["version"] == 1
    assert isinstance(j["access_token"], str) and j["access_token"].count(".") == 2
    assert isinstance(j["refresh_token"], str) and len(j["refresh_token"]) >= 20
    assert j["refresh_token"] != j["access_token"]
    assert j["expires_in"] == 900


def test_signup_response_carries_no_password_or_hash(owner_signup):
    r, body = owner_signup
    assert_no_secret(r, body["password"])


def test_signup_does_not_log_password_or_tokens(stack, owner_signup):
    r, body = owner_signup
    j = r.json()
    log = stack.server_log()
    assert "/v1/signup" in log or "signup" in log, "the signup request was not logged at all"
    assert body["password"] not in log, "the password is in the server log"
    assert j["refresh_token"] not in log, "the refresh token is in the server log"
    assert j["access_token"] not in log, "the access token is in the server log"
    assert "$argon2" not in log, "a password hash is in the server log"


def test_signup_lowercases_email(owner_signup):
    r, _ = owner_signup
    assert r.json()["user"]["email"] == f"{MIXED_LOCAL.lower()}@example.com"


def test_signup_stores_lowercased_email(stack, owner):
    doc = user_doc(stack, owner.email)
    assert doc["email"] == f"{MIXED_LOCAL.lower()}@example.com"
    assert str(doc.get("tenant_id")) == owner.tenant_id


def test_signup_trims_email(stack):
    local = "trim-" + secrets.token_hex(4)
    r, _ = signup_request(stack, email=f"  {local}@Example.com \t")
    assert r.status_code == 201, r.text
    assert r.json()["user"]["email"] == f"{local}@example.com"


def test_signup_token_belongs_to_the_new_owner(owner):
    claims = token_claims(owner.access_token)
    assert claims["sub"] == owner.user["id"]
    assert claims["tid"] == owner.tenant["id"]


def test_signup_accepts_slug_of_40_characters(stack):
    slug = "s" + secrets.token_hex(19) + "z"
    assert len(slug) == 40
    r, _ = signup_request(stack, tenant_slug=slug)
    assert r.status_code == 201, r.text
    assert r.json()["tenant"]["slug"] == slug


def test_signup_with_taken_slug_is_409_and_creates_nothing(stack, owner):
    email = unique_email("second")
    r, _ = signup_request(stack, tenant_slug=owner.slug, email=email)
    check_problem(r, 409, "conflict")
    assert count_everywhere(stack.mongo, {"slug": owner.slug}) == 1
    assert count_everywhere(stack.mongo, {"email": email}) == 0


def test_concurrent_signups_with_one_slug_create_one_tenant(stack):
    slug = unique_slug("race")
    emails = [unique_email(f"race{i}") for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda e: signup_request(stack, tenant_slug=slug, email=e)[0], emails))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409, 409, 409], [(r.status_code, r.text[:200]) for r in results]
    assert count_everywhere(stack.mongo, {"slug": slug}) == 1
    assert sum(count_everywhere(stack.mongo, {"email": e}) for e in emails) == 1


INVALID_SIGNUPS = [
    ("slug-uppercase", {"tenant_slug": "Bad-Slug-" + secrets.token_hex(3)}, "tenant_slug"),
    ("slug-underscore", {"tenant_slug": "bad_slug_" + secrets.token_hex(3)}, "tenant_slug"),
    ("slug-space", {"tenant_slug": "bad slug " + secrets.token_hex(3)}, "tenant_slug"),
    ("slug-too-short", {"tenant_slug": "ab"}, "tenant_slug"),
    ("slug-too-long", {"tenant_slug": "a" * 41}, "tenant_slug"),
    ("slug-missing", {"tenant_slug": None}, "tenant_slug"),
    ("password-too-short", {"password": "123456789"}, "password"),
    ("password-too-long", {"password": "p" * 257}, "password"),
    ("password-not-string", {"password": 12345678901234}, "password"),
    ("name-missing", {"name": None}, "name"),
    ("name-empty", {"name": ""}, "name"),
    ("name-too-long", {"name": "n" * 101}, "name"),
    ("tenant-name-missing", {"tenant_name": None}, "tenant_name"),
    ("tenant-name-too-long", {"tenant_name": "t" * 101}, "tenant_name"),
    ("email-invalid", {"email": "not-an-email"}, "email"),
    ("email-missing", {"email": None}, "email"),
    ("unknown-field", {"nickname": "ada"}, "nickname"),
    ("tenant-id-in-body", {"tenant_id": str(ObjectId())}, "tenant_id"),
]


@pytest.mark.parametrize("overrides,field", [(o, f) for _, o, f in INVALID_SIGNUPS],
                         ids=[i for i, _, _ in INVALID_SIGNUPS])
def test_signup_invalid_field_is_422_naming_it(stack, overrides, field):
    fields = {"tenant_slug": unique_slug("bad"), "email": unique_email("bad")}
    fields.update(overrides)
    r, body = signup_request(stack, **fields)
    p = check_problem(r, 422, "validation-failed")
    named = [e["field"] for e in p.get("errors", [])]
    assert field in named, f"errors do not name {field!r}: {p}"
    if isinstance(body.get("tenant_slug"), str):
        assert count_everywhere(stack.mongo, {"slug": body["tenant_slug"]}) == 0
    if isinstance(body.get("email"), str):
        assert count_everywhere(stack.mongo, {"email": body["email"].strip().lower()}) == 0


def test_signup_disabled_is_403_and_creates_nothing(stack, trellis):
    env = trellis.env(signup_enabled=0)
    db = env["TRELLIS_MONGO_URI"].rsplit("/", 1)[1]
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0, run
    server = trellis.start("serve", env=env)
    server.wait_ready()
    slug = unique_slug("off")
    r = requests.post(server.url("/v1/signup"), timeout=10,
                      json={"tenant_name": "Off Ltd", "tenant_slug": slug, "email": unique_email("off"),
                            "password": DEFAULT_PASSWORD, "name": "Off Owner"})
    check_problem(r, 403, "signup-disabled")
    assert count_everywhere(trellis.db(db), {"slug": slug}) == 0


# ---------------------------------------------------------------------------
# login
# ---------------------------------------------------------------------------

def test_login_returns_tokens_and_user(stack, owner):
    r = login_request(stack, owner.slug, owner.email, owner.password)
    assert r.status_code == 200, r.text
    assert media_type(r) == "application/json"
    j = r.json()
    assert {"access_token", "refresh_token", "expires_in", "user"} <= set(j), j
    assert j["expires_in"] == 900
    user = assert_user(j["user"])
    assert user["id"] == owner.user_id
    assert user["email"] == owner.email
    assert user["roles"] == ["owner"]
    assert_no_secret(r, owner.password)
    got = me(stack, {"Authorization": "Bearer " + j["access_token"]})
    assert got.status_code == 200, got.text
    assert got.json()["user"]["id"] == owner.user_id


def test_login_opens_a_new_session_beside_the_old_one(stack, owner):
    second = login(stack, owner.slug, owner.email, owner.password)
    assert second.session_id != owner.session_id
    assert second.refresh_token != owner.refresh_token
    assert me(stack, second).status_code == 200
    assert me(stack, owner).status_code == 200
    members = stack.redis.smembers(f"t:{{{owner.tenant_id}}}:usess:{owner.user_id}")
    assert {owner.session_id, second.session_id} <= members, members


def _bad_logins(stack, owner, other_owner, deactivated):
    user, password = deactivated
    return {
        "unknown-tenant": login_request(stack, unique_slug("nosuch"), owner.email, owner.password),
        "other-tenant": login_request(stack, other_owner.slug, owner.email, owner.password),
        "unknown-email": login_request(stack, owner.slug, unique_email("nosuch"), owner.password),
        "wrong-password": login_request(stack, owner.slug, owner.email, owner.password + "x"),
        "deactivated-user": login_request(stack, owner.slug, user["email"], password),
    }


@pytest.fixture(scope="module")
def bad_logins(stack, owner, other_owner, deactivated):
    return _bad_logins(stack, owner, other_owner, deactivated)


@pytest.mark.parametrize("case", ["unknown-tenant", "other-tenant", "unknown-email", "wrong-password",
                                  "deactivated-user"])
def test_failed_login_is_401_with_the_generic_detail(bad_logins, case):
    r = bad_logins[case]
    p = check_problem(r, 401, "unauthorized")
    assert p["detail"] == LOGIN_DETAIL, p
    assert "access_token" not in r.text


def test_failed_logins_are_indistinguishable(bad_logins):
    bodies = {case: r.json() for case, r in bad_logins.items()}
    shapes = {case: (b.get("type"), b.get("title"), b.get("status"), b.get("detail"), tuple(sorted(b)))
              for case, b in bodies.items()}
    assert len(set(shapes.values())) == 1, f"failed logins differ: {shapes}"


def test_failed_login_creates_no_session(stack, owner):
    key = f"t:{{{owner.tenant_id}}}:usess:{owner.user_id}"
    before = stack.redis.smembers(key)
    r = login_request(stack, owner.slug, owner.email, "definitely-not-the-password")
    check_problem(r, 401, "unauthorized")
    assert stack.redis.smembers(key) == before


def test_password_is_stored_as_argon2id_hash(stack, owner):
    doc = user_doc(stack, owner.email)
    text = repr(doc)
    assert owner.password not in text, "the plain password is stored"
    hashes = [v for v in doc.values() if isinstance(v, str) and v.startswith("$argon2id$")]
    assert len(hashes) == 1, f"no $argon2id$ string in the user document: {sorted(doc)}"


def test_password_hashes_are_salted(stack, owner, other_owner):
    """Two accounts with the same password store different hashes."""
    a = [v for v in user_doc(stack, owner.email).values() if isinstance(v, str) and v.startswith("$argon2id$")]
    b = [v for v in user_doc(stack, other_owner.email).values()
         if isinstance(v, str) and v.startswith("$argon2id$")]
    assert owner.password == other_owner.password
    assert a and b and a[0] != b[0]


# ---------------------------------------------------------------------------
# refresh
# ---------------------------------------------------------------------------

def test_refresh_returns_a_new_working_pair(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    r = refresh(stack, acct.refresh_token)
    assert r.status_code == 200, r.text
    j = r.json()
    assert {"access_token", "refresh_token", "expires_in"} <= set(j), j
    assert j["expires_in"] == 900
    assert j["refresh_token"] != acct.refresh_token
    got = me(stack, {"Authorization": "Bearer " + j["access_token"]})
    assert got.status_code == 200, got.text
    assert got.json()["user"]["id"] == owner.user_id
    assert_no_secret(r, owner.password)


def test_new_refresh_token_refreshes_again(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    first = refresh(stack, acct.refresh_token)
    assert first.status_code == 200, first.text
    second = refresh(stack, first.json()["refresh_token"])
    assert second.status_code == 200, second.text
    assert second.json()["refresh_token"] not in (acct.refresh_token, first.json()["refresh_token"])


def test_reused_refresh_token_is_401_and_revokes_the_session(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    r = refresh(stack, acct.refresh_token)
    assert r.status_code == 200, r.text
    new_access, new_refresh = r.json()["access_token"], r.json()["refresh_token"]
    assert me(stack, {"Authorization": "Bearer " + new_access}).status_code == 200

    again = refresh(stack, acct.refresh_token)
    check_problem(again, 401, "unauthorized")

    check_problem(me(stack, {"Authorization": "Bearer " + new_access}), 401, "unauthorized")
    check_problem(refresh(stack, new_refresh), 401, "unauthorized")
    sid = token_claims(new_access)["sid"]
    assert stack.redis.exists(f"t:{{{owner.tenant_id}}}:sess:{sid}") == 0, "the revoked session is still in Redis"


def test_concurrent_refreshes_of_one_token_succeed_at_most_once(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: refresh(stack, acct.refresh_token), range(6)))
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) <= 1, f"{len(ok)} refreshes of the same token succeeded"
    assert all(r.status_code in (200, 401) for r in results), [(r.status_code, r.text[:200]) for r in results]


def test_revoking_one_session_leaves_the_others(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    assert refresh(stack, acct.refresh_token).status_code == 200
    check_problem(refresh(stack, acct.refresh_token), 401, "unauthorized")
    assert me(stack, owner).status_code == 200


@pytest.mark.parametrize("token", [
    "garbage",
    "0" * 64,
    secrets.token_urlsafe(48),
    "a.b.c",
    "x" * 300,
], ids=["word", "zeros", "random", "dots", "long"])
def test_garbage_refresh_token_is_401(stack, token):
    check_problem(refresh(stack, token), 401, "unauthorized")


def test_access_token_is_not_a_refresh_token(stack, owner):
    check_problem(refresh(stack, owner.access_token), 401, "unauthorized")
    assert me(stack, owner).status_code == 200


def _forge_for_tenant(token, own_tid, other_tid):
    """`token` with every mention of `own_tid` replaced by `other_tid`; when the
    token does not name the tenant, `other_tid` is prefixed the way a
    tenant-qualified token would carry it."""
    if own_tid in token:
        return token.replace(own_tid, other_tid)
    return f"{other_tid}.{token}"


def test_refresh_token_moved_to_another_tenant_is_401(stack, owner, other_owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    forged = _forge_for_tenant(acct.refresh_token, owner.tenant_id, other_owner.tenant_id)
    assert forged != acct.refresh_token
    check_problem(refresh(stack, forged), 401, "unauthorized")
    assert me(stack, other_owner).status_code == 200


def test_refresh_token_naming_an_unknown_tenant_is_401(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    forged = _forge_for_tenant(acct.refresh_token, owner.tenant_id, str(ObjectId()))
    check_problem(refresh(stack, forged), 401, "unauthorized")


def test_refresh_token_with_another_sessions_secret_is_401(stack, owner):
    """A refresh token is bound to its session: session X's id with session
    Y's secret is no good (for a token made of dot-separated parts)."""
    x = login(stack, owner.slug, owner.email, owner.password)
    y = login(stack, owner.slug, owner.email, owner.password)
    xp, yp = x.refresh_token.split("."), y.refresh_token.split(".")
    assert len(xp) == len(yp) == 3, "refresh tokens are <tenant>.<session>.<secret>"
    forged = ".".join(xp[:-1] + yp[-1:])
    check_problem(refresh(stack, forged), 401, "unauthorized")


def test_refresh_with_tampered_secret_is_401(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    tok = acct.refresh_token
    i = len(tok) - 3  # inside the secret, away from a base64 tail's padding bits
    tampered = tok[:i] + ("a" if tok[i] != "a" else "b") + tok[i + 1:]
    check_problem(refresh(stack, tampered), 401, "unauthorized")


# ---------------------------------------------------------------------------
# logout
# ---------------------------------------------------------------------------

def test_logout_is_204_and_revokes_access_and_refresh_tokens(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    assert me(stack, acct).status_code == 200
    r = logout(stack, acct.headers)
    assert r.status_code == 204, r.text
    assert r.content == b""
    check_problem(me(stack, acct), 401, "unauthorized")
    check_problem(refresh(stack, acct.refresh_token), 401, "unauthorized")


def test_logout_removes_the_session_from_redis(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    assert session_alive(stack, acct)
    assert logout(stack, acct.headers).status_code == 204
    assert not session_alive(stack, acct), f"{acct.session_key} still exists"


def test_logout_leaves_other_sessions_alive(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    assert logout(stack, acct.headers).status_code == 204
    assert me(stack, owner).status_code == 200
    assert session_alive(stack, owner)


def test_logout_without_token_is_401(stack):
    check_problem(logout(stack, {}), 401, "unauthorized")


def test_second_logout_with_the_same_token_is_401(stack, owner):
    acct = login(stack, owner.slug, owner.email, owner.password)
    assert logout(stack, acct.headers).status_code == 204
    check_problem(logout(stack, acct.headers), 401, "unauthorized")


# ---------------------------------------------------------------------------
# /v1/me
# ---------------------------------------------------------------------------

def test_me_returns_user_tenant_and_sorted_permissions(stack, owner):
    r = me(stack, owner)
    assert r.status_code == 200, r.text
    assert media_type(r) == "application/json"
    j = r.json()
    assert {"user", "tenant", "permissions"} <= set(j), j
    user = assert_user(j["user"])
    assert user["id"] == owner.user_id
    assert user["email"] == owner.email
    assert j["tenant"]["id"] == owner.tenant_id
    assert j["tenant"]["slug"] == owner.slug
    perms = j["permissions"]
    assert isinstance(perms, list) and perms and all(isinstance(p, str) for p in perms)
    assert perms == sorted(perms), "permissions are not sorted"
    assert len(set(perms)) == len(perms), "permissions contain duplicates"
    assert_no_secret(r, owner.password)


def test_me_without_token_is_401(stack):
    check_problem(stack.get("/v1/me"), 401, "unauthorized")


def test_owner_permissions_include_users_write(stack, owner):
    perms = me(stack, owner).json()["permissions"]
    assert "system.users.write" in perms
    assert "system.roles.write" in perms
    assert "system.tags.write" in perms


@pytest.fixture(scope="module")
def employee(stack, owner):
    return user_session(stack, owner, ["employee"])


def test_employee_permissions_exclude_users_write(stack, employee):
    r = me(stack, employee)
    assert r.status_code == 200, r.text
    perms = r.json()["permissions"]
    assert "system.users.write" not in perms
    assert "system.roles.write" not in perms
    assert "system.tags.read" in perms
    assert r.json()["user"]["roles"] == ["employee"]


def test_permissions_of_overlapping_roles_are_listed_once(stack, owner):
    acct = user_session(stack, owner, ["sales", "employee"])
    perms = me(stack, acct).json()["permissions"]
    assert perms == sorted(set(perms)), perms
    assert "system.tags.read" in perms


def test_employee_permissions_match_the_employee_role(stack, owner, employee):
    roles = stack.get("/v1/roles", headers=owner.headers)
    assert roles.status_code == 200, roles.text
    role = next(x for x in roles.json()["items"] if x["name"] == "employee")
    assert sorted(me(stack, employee).json()["permissions"]) == sorted(set(role["permissions"]))
