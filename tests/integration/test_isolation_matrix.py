"""Tenant isolation, route by route: every route that takes an id or a name,
called by tenant B (its owner's token, or one of its API keys) with tenant
A's id, answers 404 and leaves A's document (MongoDB) and A's sessions
(Redis) exactly as they were.  Lists show B nothing of A."""

import secrets

import pytest
from bson import ObjectId

from conftest import DEFAULT_PASSWORD, check_problem, signup, user_session

ALL_B_KEY_PERMS = ["system.tags.read", "system.tags.write", "system.users.read", "system.users.write",
                   "system.roles.read", "system.roles.write", "system.api_keys.read",
                   "system.api_keys.write", "system.audit.read"]


class World:
    """Tenant A with one resource of each kind, tenant B with an owner and a key."""


@pytest.fixture(scope="module")
def world(stack):
    w = World()
    w.a = signup(stack)
    w.b = signup(stack)
    # A's resources
    r = stack.post("/v1/tags", json={"name": "a-tag-" + secrets.token_hex(4), "color": "#123456"},
                   headers=w.a.headers)
    assert r.status_code == 201, r.text
    w.tag = r.json()
    w.employee = user_session(stack, w.a, ["employee"])
    w.role = "a-role-" + secrets.token_hex(4)
    r = stack.post("/v1/roles", json={"name": w.role, "permissions": ["system.tags.read"]}, headers=w.a.headers)
    assert r.status_code == 201, r.text
    r = stack.post("/v1/api-keys", json={"name": "a-key", "permissions": ["system.tags.read"]},
                   headers=w.a.headers)
    assert r.status_code == 201, r.text
    w.a_key = r.json()
    # B's API key with every system permission
    r = stack.post("/v1/api-keys", json={"name": "b-key", "permissions": ALL_B_KEY_PERMS}, headers=w.b.headers)
    assert r.status_code == 201, r.text
    w.b_key = r.json()
    return w


def b_headers(world, who):
    return world.b.headers if who == "owner" else {"X-API-Key": world.b_key["key"]}


# (id, method, path template, body, extra headers, collection, which A document)
ROUTES = [
    ("get-tag", "GET", "/v1/tags/{tag}", None, {}, "tags", "tag"),
    ("patch-tag", "PATCH", "/v1/tags/{tag}", {"name": "hijacked", "color": "#000000"}, {}, "tags", "tag"),
    ("patch-tag-if-match", "PATCH", "/v1/tags/{tag}", {"name": "hijacked"}, {"If-Match": '"999"'}, "tags", "tag"),
    ("delete-tag", "DELETE", "/v1/tags/{tag}", None, {}, "tags", "tag"),
    ("delete-tag-if-match", "DELETE", "/v1/tags/{tag}", None, {"If-Match": '"999"'}, "tags", "tag"),
    ("get-user", "GET", "/v1/users/{user}", None, {}, "users", "user"),
    ("patch-user-name", "PATCH", "/v1/users/{user}", {"name": "hijacked"}, {}, "users", "user"),
    ("patch-user-roles", "PATCH", "/v1/users/{user}", {"roles": ["admin"]}, {}, "users", "user"),
    ("patch-user-active", "PATCH", "/v1/users/{user}", {"active": False}, {}, "users", "user"),
    ("patch-user-password", "PATCH", "/v1/users/{user}", {"password": "hijacked-password-1"}, {}, "users", "user"),
    ("patch-user-if-match", "PATCH", "/v1/users/{user}", {"name": "hijacked"}, {"If-Match": '"999"'}, "users",
     "user"),
    ("delete-user", "DELETE", "/v1/users/{user}", None, {}, "users", "user"),
    ("get-owner", "GET", "/v1/users/{owner}", None, {}, "users", "owner"),
    ("patch-owner-roles", "PATCH", "/v1/users/{owner}", {"roles": ["employee"]}, {}, "users", "owner"),
    ("delete-owner", "DELETE", "/v1/users/{owner}", None, {}, "users", "owner"),
    ("delete-api-key", "DELETE", "/v1/api-keys/{key}", None, {}, "api_keys", "key"),
    ("patch-role", "PATCH", "/v1/roles/{role}", {"permissions": ["system.users.write", "system.tags.write"]}, {},
     "roles", "role"),
    ("delete-role", "DELETE", "/v1/roles/{role}", None, {}, "roles", "role"),
]


def a_doc(stack, world, which):
    if which == "tag":
        return stack.mongo["tags"].find_one({"_id": ObjectId(world.tag["id"])})
    if which == "user":
        return stack.mongo["users"].find_one({"_id": world.employee.user_oid})
    if which == "owner":
        return stack.mongo["users"].find_one({"_id": world.a.user_oid})
    if which == "key":
        return stack.mongo["api_keys"].find_one({"_id": ObjectId(world.a_key["id"])})
    if which == "role":
        return stack.mongo["roles"].find_one({"tenant_id": world.a.tenant_oid, "name": world.role})
    raise AssertionError(which)


def a_sessions(stack, world):
    out = {}
    for acct in (world.a, world.employee):
        key = f"t:{{{acct.tenant_id}}}:usess:{acct.user_id}"
        out[key] = sorted(stack.redis.smembers(key))
    return out


def path_for(world, template):
    return template.format(tag=world.tag["id"], user=world.employee.user_id, owner=world.a.user_id,
                           key=world.a_key["id"], role=world.role)


@pytest.mark.parametrize("who", ["owner", "api-key"])
@pytest.mark.parametrize("route", ROUTES, ids=[r[0] for r in ROUTES])
def test_tenant_b_gets_404_for_tenant_a_and_nothing_changes(stack, world, who, route):
    _, method, template, body, extra, _, which = route
    before = a_doc(stack, world, which)
    assert before is not None, f"A's {which} is missing before the test"
    sessions = a_sessions(stack, world)
    audit_before = stack.mongo["audit"].count_documents({"tenant_id": world.a.tenant_oid})
    headers = dict(b_headers(world, who))
    headers.update(extra)
    kw = {"headers": headers}
    if body is not None:
        kw["json"] = body
    path = path_for(world, template)
    r = stack.request(method, path, **kw)
    check_problem(r, 404)
    for secret_value in (world.tag["name"], world.employee.email, world.a.email, world.a_key["prefix"]):
        assert secret_value not in r.text, f"404 body reveals A's data: {r.text[:300]}"
    after = a_doc(stack, world, which)
    assert after == before, f"{method} {path} by B changed A's document:\nbefore {before}\nafter  {after}"
    assert a_sessions(stack, world) == sessions, "A's sessions changed"
    assert stack.mongo["audit"].count_documents({"tenant_id": world.a.tenant_oid}) == audit_before


@pytest.mark.parametrize("who", ["owner", "api-key"])
def test_tenant_a_still_works_after_b_tried_everything(stack, world, who):
    # run every route once more, then use A's credentials and resources
    for _, method, template, body, extra, _, _ in ROUTES:
        headers = dict(b_headers(world, who))
        headers.update(extra)
        stack.request(method, path_for(world, template), headers=headers,
                      **({"json": body} if body is not None else {}))
    r = stack.get(f"/v1/tags/{world.tag['id']}", headers=world.a.headers)
    assert r.status_code == 200 and r.json()["name"] == world.tag["name"], r.text
    r = stack.get("/v1/me", headers=world.employee.headers)
    assert r.status_code == 200, f"A's employee lost their session: {r.text[:200]}"
    assert r.json()["user"]["roles"] == ["employee"]
    r = stack.get("/v1/tags", headers={"X-API-Key": world.a_key["key"]})
    assert r.status_code == 200, f"A's API key stopped working: {r.text[:200]}"
    r = stack.get("/v1/roles", headers=world.a.headers)
    mine = [x for x in r.json()["items"] if x["name"] == world.role]
    assert mine and mine[0]["permissions"] == ["system.tags.read"], mine
    r = stack.post("/v1/auth/login", json={"tenant_slug": world.a.slug, "email": world.employee.email,
                                           "password": DEFAULT_PASSWORD})
    assert r.status_code == 200, f"A's employee cannot log in any more: {r.text[:200]}"


@pytest.mark.parametrize("who", ["owner", "api-key"])
@pytest.mark.parametrize("path", ["/v1/tags", "/v1/users", "/v1/roles", "/v1/api-keys", "/v1/audit"])
def test_tenant_b_lists_show_nothing_of_a(stack, world, who, path):
    r = stack.get(path, headers=b_headers(world, who), params={"limit": 200} if path != "/v1/roles" else None)
    assert r.status_code == 200, r.text
    for value in (world.tag["id"], world.tag["name"], world.employee.user_id, world.employee.email,
                  world.a.user_id, world.a.email, world.role, world.a_key["id"], world.a.tenant_id):
        assert value not in r.text, f"GET {path} by B shows A's {value!r}"


def test_same_role_name_in_both_tenants_are_separate(stack, world):
    r = stack.post("/v1/roles", json={"name": world.role, "permissions": ["system.tags.read"]},
                   headers=world.b.headers)
    assert r.status_code == 201, f"B cannot create a role named like A's: {r.status_code} {r.text[:200]}"
    before = a_doc(stack, world, "role")
    r = stack.patch(f"/v1/roles/{world.role}", json={"permissions": ["system.tags.write", "system.tags.read"]},
                    headers=world.b.headers)
    assert r.status_code == 200, r.text
    assert a_doc(stack, world, "role") == before, "B's PATCH changed A's role of the same name"
    r = stack.delete(f"/v1/roles/{world.role}", headers=world.b.headers)
    assert r.status_code == 204, r.text
    assert a_doc(stack, world, "role") == before, "B's DELETE touched A's role of the same name"


def test_b_cannot_assign_a_custom_role_of_a(stack, world):
    """Roles are per tenant: B creating a user with A's custom role name is 422."""
    name = "only-in-a-" + secrets.token_hex(3)
    r = stack.post("/v1/roles", json={"name": name, "permissions": ["system.tags.read"]}, headers=world.a.headers)
    assert r.status_code == 201
    before = stack.mongo["users"].count_documents({"tenant_id": world.b.tenant_oid})
    r = stack.post("/v1/users", headers=world.b.headers, json={
        "email": "x-" + secrets.token_hex(4) + "@example.com", "name": "X", "roles": [name],
        "password": DEFAULT_PASSWORD})
    body = check_problem(r, 422)
    assert "roles" in [e["field"] for e in body.get("errors", [])], body
    assert stack.mongo["users"].count_documents({"tenant_id": world.b.tenant_oid}) == before


def test_a_key_cannot_act_on_b(stack, world):
    """The other direction, with a key holding only tag reads: B's tag -> 404."""
    r = stack.post("/v1/tags", json={"name": "b-tag-" + secrets.token_hex(4)}, headers=world.b.headers)
    assert r.status_code == 201
    check_problem(stack.get(f"/v1/tags/{r.json()['id']}", headers={"X-API-Key": world.a_key["key"]}), 404)
