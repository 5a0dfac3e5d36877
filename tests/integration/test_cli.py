"""Operator CLI: `trellis tenant create|list`, `trellis user create`,
`trellis user reset-password`, run against the session's MongoDB and Redis.
Effects are checked over HTTP (the session's server) and in MongoDB."""

import os
import re
import secrets
import subprocess
import time

import pytest
from bson import ObjectId

from conftest import (REPO_ROOT, check_problem, login_request, sanitizer_hits, signup_request,
                      unique_email, unique_slug)

HEX24 = re.compile(r"^[0-9a-f]{24}$")
USAGE_ERROR = 2


class Run:
    def __init__(self, args, proc):
        self.args = args
        self.returncode = proc.returncode
        self.stdout = proc.stdout.decode("utf-8", "replace")
        self.stderr = proc.stderr.decode("utf-8", "replace")

    def __repr__(self):
        return f"Run({self.args!r} -> {self.returncode}, stdout={self.stdout[-800:]!r}, stderr={self.stderr[-800:]!r})"


def cli(stack, *args, stdin=b"", env_extra=None, timeout=60):
    """Run `trellis *args` with the session's configuration; `stdin` is fed
    to the process (str or bytes)."""
    env = stack.server_env()
    env.pop("TRELLIS_PORT", None)  # the CLI does not listen
    env.update(env_extra or {})
    if isinstance(stdin, str):
        stdin = stdin.encode()
    proc = subprocess.run([stack.server_bin] + list(args), input=stdin, capture_output=True,
                          env=env, cwd=REPO_ROOT, timeout=timeout)
    run = Run(list(args), proc)
    hits = sanitizer_hits(run.stdout + run.stderr)
    assert not hits, f"sanitizer report from the CLI: {hits}\n{run!r}"
    return run


def new_password():
    return "pw-" + secrets.token_urlsafe(12)


def tenant_create(stack, slug=None, name="CLI Tenant"):
    slug = slug or unique_slug("cli")
    run = cli(stack, "tenant", "create", "--slug", slug, "--name", name)
    assert run.returncode == 0, run
    tid = run.stdout.strip()
    assert HEX24.match(tid), f"tenant create did not print an id: {run!r}"
    return slug, tid


def user_create(stack, slug, email=None, name="CLI User", roles=("admin",), password=None):
    email = email or unique_email("cli")
    password = password or new_password()
    args = ["user", "create", "--tenant", slug, "--email", email, "--name", name]
    for r in roles:
        args += ["--role", r]
    run = cli(stack, *args, stdin=password + "\n")
    assert run.returncode == 0, run
    uid = run.stdout.strip()
    assert HEX24.match(uid), f"user create did not print an id: {run!r}"
    return email, password, uid


# The server may reuse what Redis said about a session for
# TRELLIS_SESSION_CACHE_MS (default 1000 ms); a revocation made by another
# process (the CLI) must show within that, so allow it a little more.
REVOCATION_GRACE_S = 2.5


def assert_revoked_soon(stack, access_token):
    """GET /v1/me with `access_token` answers 401 within REVOCATION_GRACE_S."""
    headers = {"Authorization": "Bearer " + access_token}
    t0 = time.monotonic()
    while True:
        r = stack.get("/v1/me", headers=headers)
        if r.status_code != 200 or time.monotonic() - t0 > REVOCATION_GRACE_S:
            break
        time.sleep(0.1)
    check_problem(r, 401)
    return time.monotonic() - t0


def login_ok(stack, slug, email, password):
    r = login_request(stack, slug, email, password)
    assert r.status_code == 200, f"login failed: {r.status_code} {r.text[:300]}"
    return r.json()


def tenant_docs(stack, slug):
    return list(stack.mongo["tenants"].find({"slug": slug}))


def users_in(stack, tenant_id):
    return list(stack.mongo["users"].find({"tenant_id": ObjectId(tenant_id)}))


@pytest.fixture(scope="module")
def tenant(stack):
    """(slug, tenant id) of a tenant created with the CLI, shared by the module."""
    return tenant_create(stack)


# ---------------------------------------------------------------------------
# tenant create / list
# ---------------------------------------------------------------------------

def test_tenant_create_prints_id_and_stores_the_tenant(stack):
    slug = unique_slug("cli")
    run = cli(stack, "tenant", "create", "--slug", slug, "--name", "Northwind Ltd")
    assert run.returncode == 0, run
    tid = run.stdout.strip()
    assert HEX24.match(tid), run
    assert run.stdout.count("\n") == 1, f"expected exactly one line: {run.stdout!r}"
    docs = tenant_docs(stack, slug)
    assert len(docs) == 1, docs
    assert str(docs[0]["_id"]) == tid
    assert docs[0]["name"] == "Northwind Ltd"


def test_tenant_create_duplicate_slug_exits_2_and_stores_nothing(stack, tenant):
    slug, tid = tenant
    run = cli(stack, "tenant", "create", "--slug", slug, "--name", "Again")
    assert run.returncode == USAGE_ERROR, run
    assert run.stdout.strip() == "", run
    assert run.stderr.strip(), "no message on stderr"
    docs = tenant_docs(stack, slug)
    assert [str(d["_id"]) for d in docs] == [tid]
    assert docs[0]["name"] == "CLI Tenant"


def test_tenant_create_with_signed_up_slug_exits_2(stack):
    r, body = signup_request(stack)
    assert r.status_code == 201, r.text
    run = cli(stack, "tenant", "create", "--slug", body["tenant_slug"], "--name", "Clash")
    assert run.returncode == USAGE_ERROR, run
    assert len(tenant_docs(stack, body["tenant_slug"])) == 1


def test_signup_with_cli_slug_is_409(stack, tenant):
    slug, _ = tenant
    r, _ = signup_request(stack, tenant_slug=slug)
    check_problem(r, 409)
    assert len(tenant_docs(stack, slug)) == 1


@pytest.mark.parametrize("slug", ["ab", "Upper-Case", "has space", "under_score", "x" * 41, "", "caf\u00e9"],
                         ids=["2-chars", "upper", "space", "underscore", "41-chars", "empty", "non-ascii"])
def test_tenant_create_bad_slug_exits_2_and_stores_nothing(stack, slug):
    before = stack.mongo["tenants"].count_documents({})
    run = cli(stack, "tenant", "create", "--slug", slug, "--name", "Bad Slug")
    assert run.returncode == USAGE_ERROR, run
    assert stack.mongo["tenants"].count_documents({}) == before


@pytest.mark.parametrize("name", ["", "n" * 101], ids=["empty", "101-chars"])
def test_tenant_create_bad_name_exits_2_and_stores_nothing(stack, name):
    """Names follow the signup rule: 1..100 characters."""
    slug = unique_slug("cli")
    run = cli(stack, "tenant", "create", "--slug", slug, "--name", name)
    assert run.returncode == USAGE_ERROR, run
    assert tenant_docs(stack, slug) == []


@pytest.mark.parametrize("args", [
    ["tenant", "create"],
    ["tenant", "create", "--slug"],
    ["tenant", "create", "--name", "No Slug"],
    ["tenant", "create", "--slug", "no-name-given"],
    ["tenant", "create", "--slug", "x-y-z", "--name", "N", "--bogus", "1"],
])
def test_tenant_create_usage_errors_exit_2(stack, args):
    before = stack.mongo["tenants"].count_documents({})
    run = cli(stack, *args)
    assert run.returncode == USAGE_ERROR, run
    assert run.stderr.strip(), run
    assert stack.mongo["tenants"].count_documents({}) == before


def test_tenant_list_prints_id_slug_name_lines(stack, tenant):
    slug, tid = tenant
    other_slug, other_tid = tenant_create(stack, name="Second Tenant")
    run = cli(stack, "tenant", "list")
    assert run.returncode == 0, run
    lines = run.stdout.splitlines()
    assert lines, run
    for line in lines:
        parts = line.split("\t")
        assert len(parts) == 3 and HEX24.match(parts[0]), f"bad line {line!r}"
    assert f"{tid}\t{slug}\tCLI Tenant" in lines
    assert f"{other_tid}\t{other_slug}\tSecond Tenant" in lines
    assert len(lines) == stack.mongo["tenants"].count_documents({})


def test_tenant_list_lines_cannot_be_forged_by_a_tenant_name(stack):
    """A tenant name with a tab or newline (if the API accepts one at all)
    must not break or add lines of `tenant list`."""
    forged = f"{'f' * 24}\tforged-slug\tForged"
    r, body = signup_request(stack, tenant_name=f"Evil\tCorp\n{forged}")
    if r.status_code != 201:
        check_problem(r, 422)
        return
    try:
        run = cli(stack, "tenant", "list")
        assert run.returncode == 0, run
        lines = run.stdout.splitlines()
        assert forged not in lines, "a tenant name injected a line into `tenant list`"
        for line in lines:
            parts = line.split("\t")
            assert len(parts) == 3 and HEX24.match(parts[0]), f"malformed line {line!r}"
        assert len(lines) == stack.mongo["tenants"].count_documents({})
    finally:
        # keep the shared database free of the odd name for the other tests
        tid = ObjectId(r.json()["tenant"]["id"])
        stack.mongo["users"].delete_many({"tenant_id": tid})
        stack.mongo["tenants"].delete_many({"_id": tid})


def test_tenant_list_takes_no_arguments(stack):
    run = cli(stack, "tenant", "list", "--slug", "x")
    assert run.returncode == USAGE_ERROR, run


def test_tenant_list_shows_signed_up_tenants(stack):
    r, body = signup_request(stack)
    assert r.status_code == 201
    run = cli(stack, "tenant", "list")
    assert run.returncode == 0, run
    assert f"{r.json()['tenant']['id']}\t{body['tenant_slug']}\t{body['tenant_name']}" in run.stdout.splitlines()


# ---------------------------------------------------------------------------
# user create
# ---------------------------------------------------------------------------

def test_user_create_prints_id_and_the_user_can_log_in(stack, tenant):
    slug, tid = tenant
    email, password, uid = user_create(stack, slug, roles=("admin",))
    body = login_ok(stack, slug, email, password)
    assert body["user"]["id"] == uid
    assert body["user"]["email"] == email
    assert body["user"]["roles"] == ["admin"]
    me = stack.get("/v1/me", headers={"Authorization": "Bearer " + body["access_token"]})
    assert me.status_code == 200, me.text
    assert me.json()["tenant"]["id"] == tid
    assert me.json()["user"]["id"] == uid


def test_user_create_stores_a_hash_not_the_password(stack, tenant):
    slug, tid = tenant
    email, password, uid = user_create(stack, slug)
    doc = stack.mongo["users"].find_one({"_id": ObjectId(uid)})
    assert doc is not None
    assert doc["tenant_id"] == ObjectId(tid)
    assert doc["active"] is True
    assert password not in repr(doc), "the password is stored in clear"
    assert "$argon2id$" in repr(doc), "no argon2id hash stored"


def test_user_create_never_prints_the_password(stack, tenant):
    slug, _ = tenant
    password = new_password()
    email = unique_email("cli")
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", "Quiet",
              stdin=password + "\n")
    assert run.returncode == 0, run
    assert password not in run.stdout and password not in run.stderr


def test_user_create_with_several_roles(stack, tenant):
    slug, _ = tenant
    email, password, uid = user_create(stack, slug, roles=("sales", "warehouse"))
    body = login_ok(stack, slug, email, password)
    assert sorted(body["user"]["roles"]) == ["sales", "warehouse"]
    me = stack.get("/v1/me", headers={"Authorization": "Bearer " + body["access_token"]}).json()
    assert "erp.shipments.write" in me["permissions"] or any(p.startswith("erp.") for p in me["permissions"])


def test_cli_user_looks_like_an_api_user(stack):
    """A CLI user is listed by GET /v1/users with the same fields as others."""
    r, body = signup_request(stack)
    assert r.status_code == 201
    owner_headers = {"Authorization": "Bearer " + r.json()["access_token"]}
    email, _, uid = user_create(stack, body["tenant_slug"], roles=("employee",))
    g = stack.get(f"/v1/users/{uid}", headers=owner_headers)
    assert g.status_code == 200, g.text
    u = g.json()
    for f in ("id", "email", "name", "roles", "active", "created_at", "updated_at", "version"):
        assert f in u, f"{f} missing: {u}"
    assert u["email"] == email and u["active"] is True and u["roles"] == ["employee"]
    assert isinstance(u["version"], int)


def test_user_create_lower_cases_the_email(stack, tenant):
    slug, _ = tenant
    local = "Mixed-" + secrets.token_hex(4)
    email, password, uid = user_create(stack, slug, email=f"{local}@Example.COM")
    body = login_ok(stack, slug, f"{local.lower()}@example.com", password)
    assert body["user"]["id"] == uid


@pytest.mark.parametrize("password,ok", [
    ("a" * 9, False), ("a" * 10, True), ("b" * 256, True), ("c" * 257, False), ("", False),
], ids=["9", "10", "256", "257", "empty"])
def test_user_create_password_length(stack, tenant, password, ok):
    slug, tid = tenant
    email = unique_email("len")
    before = len(users_in(stack, tid))
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", "Len",
              stdin=password + "\n")
    if ok:
        assert run.returncode == 0, run
        login_ok(stack, slug, email, password)
    else:
        assert run.returncode == USAGE_ERROR, run
        assert run.stdout.strip() == ""
        assert len(users_in(stack, tid)) == before


def test_user_create_without_stdin_exits_2(stack, tenant):
    slug, tid = tenant
    before = len(users_in(stack, tid))
    run = cli(stack, "user", "create", "--tenant", slug, "--email", unique_email(), "--name", "N", stdin=b"")
    assert run.returncode == USAGE_ERROR, run
    assert len(users_in(stack, tid)) == before


def test_user_create_reads_only_the_first_line(stack, tenant):
    slug, _ = tenant
    password = new_password()
    email = unique_email("line")
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", "Line",
              stdin=password + "\nsecond-line-ignored\n")
    assert run.returncode == 0, run
    login_ok(stack, slug, email, password)
    check_problem(login_request(stack, slug, email, password + "\nsecond-line-ignored"), 401)


@pytest.mark.parametrize("option", [["--password", "hunter2hunter2"], ["--password=hunter2hunter2"],
                                    ["--password"], ["-p", "hunter2hunter2"]])
def test_user_create_has_no_password_option(stack, tenant, option):
    slug, tid = tenant
    email = unique_email("argv")
    before = len(users_in(stack, tid))
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", "Argv", *option,
              stdin=new_password() + "\n")
    assert run.returncode == USAGE_ERROR, run
    assert len(users_in(stack, tid)) == before


@pytest.mark.parametrize("option", [["--password", "hunter2hunter2"], ["--password"]])
def test_reset_password_has_no_password_option(stack, tenant, option):
    slug, _ = tenant
    email, password, uid = user_create(stack, slug)
    before = stack.mongo["users"].find_one({"_id": ObjectId(uid)})
    run = cli(stack, "user", "reset-password", "--tenant", slug, "--email", email, *option,
              stdin=new_password() + "\n")
    assert run.returncode == USAGE_ERROR, run
    assert stack.mongo["users"].find_one({"_id": ObjectId(uid)}) == before
    login_ok(stack, slug, email, password)


def test_user_create_duplicate_email_fails_and_keeps_the_first(stack, tenant):
    slug, tid = tenant
    email, password, uid = user_create(stack, slug)
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", "Dup",
              stdin=new_password() + "\n")
    assert run.returncode == USAGE_ERROR, run
    docs = [d for d in users_in(stack, tid) if d["email"] == email]
    assert [str(d["_id"]) for d in docs] == [uid]
    login_ok(stack, slug, email, password)


def test_user_create_unknown_tenant_fails(stack):
    slug = unique_slug("none")
    email = unique_email()
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", "Lost",
              stdin=new_password() + "\n")
    assert run.returncode == USAGE_ERROR, run
    assert stack.mongo["users"].count_documents({"email": email}) == 0


def test_user_create_unknown_role_fails(stack, tenant):
    slug, tid = tenant
    email = unique_email()
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", "N",
              "--role", "emperor", stdin=new_password() + "\n")
    assert run.returncode == USAGE_ERROR, run
    assert stack.mongo["users"].count_documents({"email": email}) == 0


@pytest.mark.parametrize("email", ["not-an-email", "", "a@", "two words@example.com"],
                         ids=["no-at", "empty", "no-domain", "space"])
def test_user_create_bad_email_fails(stack, tenant, email):
    """The CLI applies the same email rule as POST /v1/users."""
    slug, tid = tenant
    before = len(users_in(stack, tid))
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", "N",
              stdin=new_password() + "\n")
    assert run.returncode == USAGE_ERROR, run
    assert len(users_in(stack, tid)) == before


@pytest.mark.parametrize("name", ["", "n" * 101], ids=["empty", "101-chars"])
def test_user_create_bad_name_fails(stack, tenant, name):
    """The CLI applies the same name rule as POST /v1/users (1..100 characters)."""
    slug, tid = tenant
    email = unique_email()
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", name,
              stdin=new_password() + "\n")
    assert run.returncode == USAGE_ERROR, run
    assert stack.mongo["users"].count_documents({"email": email}) == 0


def test_same_email_in_two_tenants_is_fine(stack, tenant):
    slug, _ = tenant
    other_slug, _ = tenant_create(stack)
    email, pw1, uid1 = user_create(stack, slug)
    _, pw2, uid2 = user_create(stack, other_slug, email=email)
    assert uid1 != uid2
    assert login_ok(stack, slug, email, pw1)["user"]["id"] == uid1
    assert login_ok(stack, other_slug, email, pw2)["user"]["id"] == uid2
    check_problem(login_request(stack, slug, email, pw2), 401)


# ---------------------------------------------------------------------------
# user reset-password
# ---------------------------------------------------------------------------

def test_reset_password_swaps_passwords_and_ends_sessions(stack, tenant):
    slug, _ = tenant
    email, old, uid = user_create(stack, slug)
    session = login_ok(stack, slug, email, old)
    headers = {"Authorization": "Bearer " + session["access_token"]}
    assert stack.get("/v1/me", headers=headers).status_code == 200
    new = new_password()
    run = cli(stack, "user", "reset-password", "--tenant", slug, "--email", email, stdin=new + "\n")
    assert run.returncode == 0, run
    assert len(run.stdout.strip().splitlines()) == 1, run
    assert new not in run.stdout and new not in run.stderr and old not in run.stdout
    assert_revoked_soon(stack, session["access_token"])
    check_problem(stack.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}), 401)
    check_problem(login_request(stack, slug, email, old), 401)
    assert login_ok(stack, slug, email, new)["user"]["id"] == uid


def test_reset_password_ends_every_session_of_the_user_only(stack, tenant):
    slug, _ = tenant
    email, pw, _ = user_create(stack, slug)
    other_email, other_pw, _ = user_create(stack, slug)
    s1 = login_ok(stack, slug, email, pw)
    s2 = login_ok(stack, slug, email, pw)
    bystander = login_ok(stack, slug, other_email, other_pw)
    run = cli(stack, "user", "reset-password", "--tenant", slug, "--email", email, stdin=new_password() + "\n")
    assert run.returncode == 0, run
    for s in (s1, s2):
        assert_revoked_soon(stack, s["access_token"])
    r = stack.get("/v1/me", headers={"Authorization": "Bearer " + bystander["access_token"]})
    assert r.status_code == 200, r.text


def test_reset_password_of_signed_up_owner(stack):
    r, body = signup_request(stack)
    assert r.status_code == 201
    new = new_password()
    run = cli(stack, "user", "reset-password", "--tenant", body["tenant_slug"], "--email", body["email"],
              stdin=new + "\n")
    assert run.returncode == 0, run
    assert_revoked_soon(stack, r.json()["access_token"])
    login_ok(stack, body["tenant_slug"], body["email"], new)


def test_reset_password_finds_the_user_whatever_the_email_case(stack, tenant):
    slug, _ = tenant
    email, old, uid = user_create(stack, slug)
    new = new_password()
    run = cli(stack, "user", "reset-password", "--tenant", slug, "--email", email.upper(), stdin=new + "\n")
    assert run.returncode == 0, run
    login_ok(stack, slug, email, new)


@pytest.mark.parametrize("password", ["short", "x" * 257, ""], ids=["5", "257", "empty"])
def test_reset_password_bad_length_changes_nothing(stack, tenant, password):
    slug, _ = tenant
    email, old, uid = user_create(stack, slug)
    session = login_ok(stack, slug, email, old)
    before = stack.mongo["users"].find_one({"_id": ObjectId(uid)})
    run = cli(stack, "user", "reset-password", "--tenant", slug, "--email", email, stdin=password + "\n")
    assert run.returncode == USAGE_ERROR, run
    assert stack.mongo["users"].find_one({"_id": ObjectId(uid)}) == before
    assert stack.get("/v1/me", headers={"Authorization": "Bearer " + session["access_token"]}).status_code == 200
    login_ok(stack, slug, email, old)


def test_reset_password_unknown_email_fails(stack, tenant):
    slug, _ = tenant
    run = cli(stack, "user", "reset-password", "--tenant", slug, "--email", unique_email("ghost"),
              stdin=new_password() + "\n")
    assert run.returncode == USAGE_ERROR, run
    assert run.stderr.strip()


def test_reset_password_unknown_tenant_fails(stack, tenant):
    slug, _ = tenant
    email, old, _ = user_create(stack, slug)
    run = cli(stack, "user", "reset-password", "--tenant", unique_slug("none"), "--email", email,
              stdin=new_password() + "\n")
    assert run.returncode == USAGE_ERROR, run
    login_ok(stack, slug, email, old)


def test_reset_password_in_other_tenant_does_not_touch_this_one(stack, tenant):
    slug, _ = tenant
    other_slug, _ = tenant_create(stack)
    email, pw, uid = user_create(stack, slug)
    _, other_pw, _ = user_create(stack, other_slug, email=email)
    session = login_ok(stack, slug, email, pw)
    run = cli(stack, "user", "reset-password", "--tenant", other_slug, "--email", email,
              stdin=new_password() + "\n")
    assert run.returncode == 0, run
    login_ok(stack, slug, email, pw)
    assert stack.get("/v1/me", headers={"Authorization": "Bearer " + session["access_token"]}).status_code == 200


def test_reset_password_counts_as_a_change_of_the_user(stack):
    """Like PATCH {password}: version +1 and a later updated_at."""
    r, body = signup_request(stack)
    assert r.status_code == 201
    headers = {"Authorization": "Bearer " + r.json()["access_token"]}
    email, _, uid = user_create(stack, body["tenant_slug"], roles=("employee",))
    before = stack.get(f"/v1/users/{uid}", headers=headers).json()
    run = cli(stack, "user", "reset-password", "--tenant", body["tenant_slug"], "--email", email,
              stdin=new_password() + "\n")
    assert run.returncode == 0, run
    after = stack.get(f"/v1/users/{uid}", headers=headers).json()
    assert after["version"] == before["version"] + 1, (before, after)
    assert after["updated_at"] > before["updated_at"], (before, after)


def test_cli_documents_have_the_shape_of_api_documents(stack):
    """A tenant and a user made by the CLI are stored with the same fields as
    ones made by signup / POST /v1/users."""
    r, body = signup_request(stack)
    assert r.status_code == 201
    api_tenant = stack.mongo["tenants"].find_one({"slug": body["tenant_slug"]})
    api_user = stack.mongo["users"].find_one({"_id": ObjectId(r.json()["user"]["id"])})
    slug, tid = tenant_create(stack)
    _, _, uid = user_create(stack, slug)
    cli_tenant = stack.mongo["tenants"].find_one({"_id": ObjectId(tid)})
    cli_user = stack.mongo["users"].find_one({"_id": ObjectId(uid)})
    assert set(cli_tenant) == set(api_tenant), (sorted(cli_tenant), sorted(api_tenant))
    assert set(cli_user) == set(api_user), (sorted(cli_user), sorted(api_user))
    for doc, ref in ((cli_tenant, api_tenant), (cli_user, api_user)):
        for k in ref:
            assert type(doc[k]) is type(ref[k]), f"{k}: {doc[k]!r} vs {ref[k]!r}"


# Lengths are counted in characters, as the API counts them (POST /v1/users
# and signup take 10..256 password characters and 1..100 name characters).

def test_password_of_nine_non_ascii_characters_is_too_short(stack, tenant):
    slug, tid = tenant
    email = unique_email("utf")
    password = "\u00e9" * 9  # 9 characters, 18 bytes: the API says 422
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", "Utf",
              stdin=password + "\n")
    assert run.returncode == USAGE_ERROR, run
    assert stack.mongo["users"].count_documents({"email": email}) == 0


def test_password_of_200_non_ascii_characters_is_accepted(stack, tenant):
    slug, _ = tenant
    email = unique_email("utf")
    password = "\u00e9" * 200  # 200 characters, 400 bytes: the API accepts it
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", "Utf",
              stdin=password + "\n")
    assert run.returncode == 0, run
    login_ok(stack, slug, email, password)


def test_name_of_100_non_ascii_characters_is_accepted(stack, tenant):
    slug, _ = tenant
    name = "\u00e9" * 100  # 100 characters, 200 bytes: the API accepts it
    t_slug = unique_slug("utf")
    run = cli(stack, "tenant", "create", "--slug", t_slug, "--name", name)
    assert run.returncode == 0, run
    assert tenant_docs(stack, t_slug)[0]["name"] == name
    email = unique_email("utf")
    run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", name,
              stdin=new_password() + "\n")
    assert run.returncode == 0, run
    assert stack.mongo["users"].find_one({"email": email})["name"] == name


def test_name_with_invalid_utf8_is_refused(stack, tenant):
    slug, _ = tenant
    bad = os.fsdecode(b"Bad \xff\xfe name")  # the API answers 400 for such bytes
    t_slug = unique_slug("utf")
    email = unique_email("utf")
    try:
        run = cli(stack, "tenant", "create", "--slug", t_slug, "--name", bad)
        assert run.returncode == USAGE_ERROR, run
        assert stack.mongo["tenants"].count_documents({"slug": t_slug}) == 0
        run = cli(stack, "user", "create", "--tenant", slug, "--email", email, "--name", bad,
                  stdin=new_password() + "\n")
        assert run.returncode == USAGE_ERROR, run
        assert stack.mongo["users"].count_documents({"email": email}) == 0
    finally:
        stack.mongo["tenants"].delete_many({"slug": t_slug})
        stack.mongo["users"].delete_many({"email": email})


def test_unknown_subcommand_exits_2(stack):
    for args in (["tenant", "delete"], ["user", "frobnicate"], ["user"], ["tenant"]):
        run = cli(stack, *args)
        assert run.returncode == USAGE_ERROR, run



@pytest.mark.parametrize("args", [["demo", "seed", "--tenant", "demo"], ["tenant", "delete"],
                                  ["frobnicate"], ["frobnicate", "--slug", "x"]],
                         ids=["moved-demo-seed", "unknown-verb", "unknown-area", "area-and-option"])
def test_an_unknown_command_is_named_and_the_commands_listed(stack, args):
    run = cli(stack, *args)
    assert run.returncode == USAGE_ERROR, run
    named = " ".join(a for a in args[:2] if not a.startswith("-"))
    assert f"trellis: unknown command: {named}\n" in run.stderr, run
    assert "trellis tenant create" in run.stderr and "trellis user create" in run.stderr, run
    assert run.stdout == ""
