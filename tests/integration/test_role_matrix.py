"""Role x route matrix: for each built-in role (and a custom role that
grants only system.audit.read) a user with that role calls every system
route.  What is expected comes from the permissions GET /v1/roles lists for
the role: allowed means the call succeeds (never 401/403), forbidden means
exactly 403 problem+json (type .../forbidden) and nothing changes."""

import secrets

import pytest
from bson import ObjectId

from conftest import DEFAULT_PASSWORD, check_problem, create_user, login, signup, unique_email, user_session

BUILTINS = ["owner", "admin", "manager", "sales", "warehouse", "accountant", "employee"]
AUDITOR = "auditor"  # the custom role; its real name is made unique in the fixture
ROLES = BUILTINS + [AUDITOR]

# (id, method, path template, permission needed (None: any user), success status)
ROUTES = [
    ("list-tags", "GET", "/v1/tags", "system.tags.read", 200),
    ("create-tag", "POST", "/v1/tags", "system.tags.write", 201),
    ("get-tag", "GET", "/v1/tags/{tag}", "system.tags.read", 200),
    ("patch-tag", "PATCH", "/v1/tags/{tag}", "system.tags.write", 200),
    ("delete-tag", "DELETE", "/v1/tags/{tag}", "system.tags.write", 204),
    ("list-users", "GET", "/v1/users", "system.users.read", 200),
    ("create-user", "POST", "/v1/users", "system.users.write", 201),
    ("get-user", "GET", "/v1/users/{user}", "system.users.read", 200),
    ("patch-user", "PATCH", "/v1/users/{user}", "system.users.write", 200),
    ("delete-user", "DELETE", "/v1/users/{user}", "system.users.write", 204),
    ("list-roles", "GET", "/v1/roles", "system.roles.read", 200),
    ("create-role", "POST", "/v1/roles", "system.roles.write", 201),
    ("patch-role", "PATCH", "/v1/roles/{role}", "system.roles.write", 200),
    ("delete-role", "DELETE", "/v1/roles/{role}", "system.roles.write", 204),
    ("list-api-keys", "GET", "/v1/api-keys", "system.api_keys.read", 200),
    ("create-api-key", "POST", "/v1/api-keys", "system.api_keys.write", 201),
    ("delete-api-key", "DELETE", "/v1/api-keys/{key}", "system.api_keys.write", 204),
    ("list-audit", "GET", "/v1/audit", "system.audit.read", 200),
    ("observability", "GET", "/v1/observability", "system.observability.read", 200),
    ("me", "GET", "/v1/me", None, 200),
]


class Matrix:
    pass


@pytest.fixture(scope="module")
def matrix(stack):
    m = Matrix()
    m.owner = signup(stack)
    m.auditor_role = "auditor-" + secrets.token_hex(3)
    r = stack.post("/v1/roles", json={"name": m.auditor_role, "permissions": ["system.audit.read"]},
                   headers=m.owner.headers)
    assert r.status_code == 201, r.text
    r = stack.get("/v1/roles", headers=m.owner.headers)
    assert r.status_code == 200, r.text
    m.perms = {x["name"]: set(x["permissions"]) for x in r.json()["items"]}
    missing = set(BUILTINS) - set(m.perms)
    assert not missing, f"GET /v1/roles lacks built-in roles {missing}"
    m.perms[AUDITOR] = m.perms[m.auditor_role]
    m.users = {}
    for role in ROLES:
        real = m.auditor_role if role == AUDITOR else role
        m.users[role] = user_session(stack, m.owner, [real])
    return m


def expected_allowed(m, role, perm):
    if perm is None:
        return True
    return perm in m.perms[role]


# ---------------------------------------------------------------------------
# targets: a fresh resource per call, made by the tenant's owner
# ---------------------------------------------------------------------------

def fresh_tag(stack, m):
    r = stack.post("/v1/tags", json={"name": "m-" + secrets.token_hex(5)}, headers=m.owner.headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def fresh_user(stack, m):
    return create_user(stack, m.owner, ["employee"])["id"]


def fresh_role(stack, m):
    name = "m-" + secrets.token_hex(4)
    r = stack.post("/v1/roles", json={"name": name, "permissions": ["system.tags.read"]}, headers=m.owner.headers)
    assert r.status_code == 201, r.text
    return name


def fresh_key(stack, m):
    r = stack.post("/v1/api-keys", json={"name": "m", "permissions": ["system.tags.read"]}, headers=m.owner.headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def snapshot(stack, m, kind, target):
    """The stored state the call could change (compared before/after a 403)."""
    t = m.owner.tenant_oid
    if kind == "tag":
        return stack.mongo["tags"].find_one({"_id": ObjectId(target)})
    if kind == "user":
        return stack.mongo["users"].find_one({"_id": ObjectId(target)})
    if kind == "role":
        return stack.mongo["roles"].find_one({"tenant_id": t, "name": target})
    if kind == "key":
        return stack.mongo["api_keys"].find_one({"_id": ObjectId(target)})
    # collections a POST could add to
    return {name: stack.mongo[name].count_documents({"tenant_id": t})
            for name in ("tags", "users", "roles", "api_keys")}


def request_for(m, role, route_id, method, template, target):
    """(path, json body) for one call."""
    path = template
    for kind in ("tag", "user", "role", "key"):
        path = path.replace("{" + kind + "}", str(target))
    body = None
    if route_id == "create-tag":
        body = {"name": f"by-{role}-{secrets.token_hex(4)}"}
    elif route_id == "patch-tag":
        body = {"name": f"renamed-{secrets.token_hex(4)}"}
    elif route_id == "create-user":
        body = {"email": unique_email(role), "name": "Made", "roles": ["employee"], "password": DEFAULT_PASSWORD}
    elif route_id == "patch-user":
        body = {"name": "Renamed"}
    elif route_id == "create-role":
        body = {"name": "r-" + secrets.token_hex(4), "permissions": ["system.tags.read"]}
    elif route_id == "patch-role":
        body = {"permissions": ["system.tags.read", "system.tags.write"]}
    elif route_id == "create-api-key":
        # a permission the caller holds, so that only the route permission decides
        held = sorted(p for p in m.perms[role] if ":own" not in p)
        body = {"name": "k", "permissions": held[:1] or ["system.tags.read"]}
    return path, body


TARGET_MAKERS = {"tag": fresh_tag, "user": fresh_user, "role": fresh_role, "key": fresh_key}


@pytest.mark.parametrize("route", ROUTES, ids=[r[0] for r in ROUTES])
@pytest.mark.parametrize("role", ROLES)
def test_role_route(stack, matrix, role, route):
    route_id, method, template, perm, success = route
    m = matrix
    kind = next((k for k in TARGET_MAKERS if "{" + k + "}" in template), None)
    target = TARGET_MAKERS[kind](stack, m) if kind else None
    path, body = request_for(m, role, route_id, method, template, target)
    state_kind = kind if kind else ("counts" if method == "POST" else None)
    before = snapshot(stack, m, state_kind, target) if state_kind else None
    acct = m.users[role]
    kw = {"headers": acct.headers}
    if body is not None:
        kw["json"] = body
    r = stack.request(method, path, **kw)
    allowed = expected_allowed(m, role, perm)
    if allowed:
        assert r.status_code not in (401, 403), (
            f"{role} holds {perm} but {method} {path} -> {r.status_code} {r.text[:300]}")
        assert r.status_code == success, f"{role}: {method} {path} -> {r.status_code} {r.text[:300]}"
    else:
        check_problem(r, 403, "forbidden")
        if state_kind:
            after = snapshot(stack, m, state_kind, target)
            assert after == before, f"{role} was refused {method} {path} but it changed:\n{before}\n{after}"


def test_permissions_listed_for_builtins(matrix):
    """The matrix relies on these facts of GET /v1/roles (from the spec)."""
    p = matrix.perms
    every = {r[3] for r in ROUTES if r[3]}
    assert every <= p["owner"] and every <= p["admin"], "owner/admin lack a system permission"
    assert "system.users.read" in p["manager"] and "system.users.write" not in p["manager"]
    assert "system.audit.read" not in p["manager"]
    for role in ("sales", "warehouse", "accountant", "employee", "manager"):
        assert "system.tags.read" in p[role], role
        assert not {"system.users.write", "system.roles.write", "system.api_keys.write", "system.audit.read",
                    "system.observability.read"} & p[role]
    for role in BUILTINS:
        own_system = [x for x in p[role] if x.startswith("system.") and x.endswith(":own")]
        assert not own_system, f"{role} has :own system permissions {own_system} (matrix would be ambiguous)"


def test_me_lists_the_role_permissions(stack, matrix):
    for role in ROLES:
        r = stack.get("/v1/me", headers=matrix.users[role].headers)
        assert r.status_code == 200, r.text
        assert set(r.json()["permissions"]) == matrix.perms[role], role


def test_custom_audit_only_role(stack, matrix):
    acct = matrix.users[AUDITOR]
    r = stack.get("/v1/audit", headers=acct.headers)
    assert r.status_code == 200, r.text
    assert "items" in r.json()
    for path in ("/v1/tags", "/v1/users", "/v1/roles", "/v1/api-keys"):
        check_problem(stack.get(path, headers=acct.headers), 403, "forbidden")


def test_granting_a_permission_to_the_custom_role_opens_the_route(stack):
    """A PATCH of the role reaches its users' next request (and a removal closes it again)."""
    owner = signup(stack)
    name = "grant-" + secrets.token_hex(3)
    assert stack.post("/v1/roles", json={"name": name, "permissions": ["system.audit.read"]},
                      headers=owner.headers).status_code == 201
    acct = user_session(stack, owner, [name])
    check_problem(stack.get("/v1/users", headers=acct.headers), 403, "forbidden")
    r = stack.patch(f"/v1/roles/{name}", json={"permissions": ["system.audit.read", "system.users.read"]},
                    headers=owner.headers)
    assert r.status_code == 200, r.text
    assert stack.get("/v1/users", headers=acct.headers).status_code == 200
    r = stack.patch(f"/v1/roles/{name}", json={"permissions": ["system.audit.read"]}, headers=owner.headers)
    assert r.status_code == 200, r.text
    check_problem(stack.get("/v1/users", headers=acct.headers), 403, "forbidden")
    assert stack.get("/v1/audit", headers=acct.headers).status_code == 200


def test_user_with_no_roles_gets_403_everywhere_but_me(stack):
    owner = signup(stack)
    r = stack.post("/v1/users", headers=owner.headers, json={
        "email": unique_email("none"), "name": "Nobody", "roles": [], "password": DEFAULT_PASSWORD})
    assert r.status_code == 201, r.text
    acct = login(stack, owner.slug, r.json()["email"])
    for _, method, path, perm, _ in ROUTES:
        if "{" in path or method != "GET":
            continue
        resp = stack.get(path, headers=acct.headers)
        if perm is None:
            assert resp.status_code == 200, resp.text
        else:
            check_problem(resp, 403, "forbidden")
