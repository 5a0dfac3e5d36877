"""Roles: built-ins, custom roles, permission changes that reach live
sessions, deletion rules, validation and tenant isolation."""

import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
from bson import ObjectId

from conftest import check_problem, create_user, find_doc, signup, user_session

BUILTINS = {"owner", "admin", "manager", "sales", "warehouse", "accountant", "employee"}
PERMISSION = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+(:own)?$")


def role_name(prefix="custom"):
    return f"{prefix}-{secrets.token_hex(4)}"


def list_roles(stack, acct):
    r = stack.get("/v1/roles", headers=acct.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def role_of(stack, acct, name):
    return next((x for x in list_roles(stack, acct) if x["name"] == name), None)


def role_doc(stack, tenant_id, name):
    _, doc = find_doc(stack.mongo, {"tenant_id": ObjectId(tenant_id), "name": name,
                                    "permissions": {"$exists": True}}, prefer=("roles",))
    return doc


def post_role(stack, acct, name, permissions, **extra):
    body = {"name": name, "permissions": permissions}
    body.update(extra)
    return stack.post("/v1/roles", json=body, headers=acct.headers)


def create_role(stack, acct, permissions, name=None):
    name = name or role_name()
    r = post_role(stack, acct, name, permissions)
    assert r.status_code == 201, r.text
    return r.json()


def post_tag(stack, acct):
    return stack.post("/v1/tags", json={"name": "t-" + secrets.token_hex(5)}, headers=acct.headers)


def errors_name(problem_body, field):
    return field in [e["field"] for e in problem_body.get("errors", [])]


@pytest.fixture(scope="module")
def owner(stack):
    return signup(stack)


@pytest.fixture(scope="module")
def other(stack):
    """The owner of tenant B."""
    return signup(stack)


@pytest.fixture(scope="module")
def roles(stack, owner):
    return list_roles(stack, owner)


# ---------------------------------------------------------------------------
# built-ins
# ---------------------------------------------------------------------------

def test_list_has_the_seven_builtins(roles):
    builtin = {r["name"] for r in roles if r.get("builtin") is True}
    assert builtin == BUILTINS, builtin


def test_builtins_are_listed_first(roles):
    flags = [r.get("builtin") for r in roles]
    assert flags[:7] == [True] * 7, [(r["name"], r.get("builtin")) for r in roles]


def test_role_items_have_name_permissions_builtin(roles):
    for r in roles:
        assert {"name", "permissions", "builtin"} <= set(r), r
        assert isinstance(r["permissions"], list)
        for p in r["permissions"]:
            assert isinstance(p, str) and PERMISSION.match(p), f"{r['name']}: {p!r}"


def test_owner_and_admin_hold_the_system_permissions(roles):
    by = {r["name"]: set(r["permissions"]) for r in roles}
    for name in ("owner", "admin"):
        assert {"system.users.read", "system.users.write", "system.roles.read", "system.roles.write",
                "system.tags.read", "system.tags.write"} <= by[name], (name, by[name])


def test_owner_and_admin_hold_every_listed_permission(roles):
    everything = set().union(*(set(r["permissions"]) for r in roles))
    plain = {p.split(":")[0] for p in everything}
    by = {r["name"]: {p.split(":")[0] for p in r["permissions"]} for r in roles}
    assert plain <= by["owner"], plain - by["owner"]
    assert plain <= by["admin"], plain - by["admin"]


def test_sales_and_employee_may_read_but_not_write_tags(roles):
    by = {r["name"]: set(r["permissions"]) for r in roles}
    for name in ("sales", "employee", "warehouse", "accountant"):
        assert "system.tags.read" in by[name], name
        assert "system.tags.write" not in by[name], name
        assert "system.users.write" not in by[name], name


def test_manager_may_read_users_and_write_tags(roles):
    by = {r["name"]: set(r["permissions"]) for r in roles}
    assert {"system.users.read", "system.tags.read", "system.tags.write"} <= by["manager"]
    assert "system.users.write" not in by["manager"]


# ---------------------------------------------------------------------------
# custom roles and live permission changes
# ---------------------------------------------------------------------------

def test_create_custom_role_is_201(stack, owner):
    name = role_name("tagger")
    r = post_role(stack, owner, name, ["system.tags.read", "system.tags.write"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == name
    assert sorted(body["permissions"]) == ["system.tags.read", "system.tags.write"]
    assert body.get("builtin") is False
    listed = role_of(stack, owner, name)
    assert listed is not None and listed.get("builtin") is False
    doc = role_doc(stack, owner.tenant_id, name)
    assert doc is not None and sorted(doc["permissions"]) == ["system.tags.read", "system.tags.write"]


def test_custom_role_grants_its_permission(stack, owner):
    role = create_role(stack, owner, ["system.tags.read", "system.tags.write"])
    user = user_session(stack, owner, [role["name"]])
    assert "system.tags.write" in stack.get("/v1/me", headers=user.headers).json()["permissions"]
    r = post_tag(stack, user)
    assert r.status_code == 201, r.text


def test_patching_role_removes_permission_from_live_sessions(stack, owner):
    role = create_role(stack, owner, ["system.tags.read", "system.tags.write"])
    user = user_session(stack, owner, [role["name"]])
    assert post_tag(stack, user).status_code == 201

    r = stack.patch(f"/v1/roles/{role['name']}", json={"permissions": ["system.tags.read"]},
                    headers=owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["permissions"] == ["system.tags.read"]

    check_problem(post_tag(stack, user), 403, "forbidden")
    assert stack.get("/v1/tags", headers=user.headers).status_code == 200


def test_patching_role_adds_permission_to_live_sessions(stack, owner):
    role = create_role(stack, owner, ["system.tags.read"])
    user = user_session(stack, owner, [role["name"]])
    check_problem(post_tag(stack, user), 403, "forbidden")

    r = stack.patch(f"/v1/roles/{role['name']}", json={"permissions": ["system.tags.read", "system.tags.write"]},
                    headers=owner.headers)
    assert r.status_code == 200, r.text
    assert post_tag(stack, user).status_code == 201


def test_patched_role_permissions_show_in_me(stack, owner):
    role = create_role(stack, owner, ["system.tags.read", "system.users.read"])
    user = user_session(stack, owner, [role["name"]])
    r = stack.patch(f"/v1/roles/{role['name']}", json={"permissions": ["system.tags.read"]},
                    headers=owner.headers)
    assert r.status_code == 200, r.text
    assert stack.get("/v1/me", headers=user.headers).json()["permissions"] == ["system.tags.read"]
    check_problem(stack.get("/v1/users", headers=user.headers), 403, "forbidden")


def test_create_role_with_duplicate_name_is_409(stack, owner):
    role = create_role(stack, owner, ["system.tags.read"])
    check_problem(post_role(stack, owner, role["name"], ["system.tags.write"]), 409, "conflict")
    assert role_of(stack, owner, role["name"])["permissions"] == ["system.tags.read"]


def test_concurrent_creates_of_one_role_name_create_one_role(stack, owner):
    name = role_name("race")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: post_role(stack, owner, name, ["system.tags.read"]), range(4)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409, 409, 409], [(r.status_code, r.text[:200]) for r in results]
    assert [x["name"] for x in list_roles(stack, owner)].count(name) == 1


@pytest.mark.parametrize("name", ["sales", "owner", "admin"])
def test_create_role_with_builtin_name_is_409(stack, owner, roles, name):
    check_problem(post_role(stack, owner, name, ["system.tags.read"]), 409, "conflict")
    assert role_of(stack, owner, name)["permissions"] == next(r for r in roles if r["name"] == name)["permissions"]


@pytest.mark.parametrize("perm", ["system.nothing.read", "crm.leads", "not-a-permission", "system.tags.read:all",
                                  "", "System.Tags.Read"])
def test_create_role_with_unknown_permission_is_422(stack, owner, perm):
    name = role_name("badperm")
    r = post_role(stack, owner, name, ["system.tags.read", perm])
    p = check_problem(r, 422, "validation-failed")
    assert errors_name(p, "permissions"), p
    assert role_of(stack, owner, name) is None


def test_create_role_with_non_list_permissions_is_422(stack, owner):
    name = role_name("badlist")
    p = check_problem(post_role(stack, owner, name, "system.tags.read"), 422, "validation-failed")
    assert errors_name(p, "permissions"), p


@pytest.mark.parametrize("name", ["a", "x" * 41, "Has-Upper", "has space", "dots.in.name", "slash/name", "",
                                  "émoji"], ids=["too-short", "too-long", "upper", "space", "dots", "slash", "empty",
                                                 "non-ascii"])
def test_create_role_with_bad_name_is_422(stack, owner, name):
    p = check_problem(post_role(stack, owner, name, ["system.tags.read"]), 422, "validation-failed")
    assert errors_name(p, "name"), p
    assert role_of(stack, owner, name) is None


@pytest.mark.parametrize("name", ["ab", "x" * 40, "under_score-and-dash-09"])
def test_create_role_accepts_boundary_names(stack, owner, name):
    r = post_role(stack, owner, name, ["system.tags.read"])
    assert r.status_code == 201, r.text


def test_create_role_with_unknown_field_is_422(stack, owner):
    p = check_problem(post_role(stack, owner, role_name(), ["system.tags.read"], colour="red"), 422,
                      "validation-failed")
    assert errors_name(p, "colour"), p


def test_create_role_with_tenant_id_is_422(stack, owner, other):
    name = role_name("cross")
    p = check_problem(post_role(stack, owner, name, ["system.tags.read"], tenant_id=other.tenant_id), 422,
                      "validation-failed")
    assert errors_name(p, "tenant_id"), p
    assert role_of(stack, owner, name) is None
    assert role_of(stack, other, name) is None


def test_patch_role_with_tenant_id_is_422(stack, owner, other):
    role = create_role(stack, owner, ["system.tags.read"])
    r = stack.patch(f"/v1/roles/{role['name']}", json={"permissions": ["system.tags.write"],
                                                       "tenant_id": other.tenant_id}, headers=owner.headers)
    p = check_problem(r, 422, "validation-failed")
    assert errors_name(p, "tenant_id"), p
    assert role_of(stack, owner, role["name"])["permissions"] == ["system.tags.read"]


def test_patch_role_with_unknown_permission_is_422(stack, owner):
    role = create_role(stack, owner, ["system.tags.read"])
    r = stack.patch(f"/v1/roles/{role['name']}", json={"permissions": ["system.bogus.write"]},
                    headers=owner.headers)
    p = check_problem(r, 422, "validation-failed")
    assert errors_name(p, "permissions"), p
    assert role_of(stack, owner, role["name"])["permissions"] == ["system.tags.read"]


def test_patch_unknown_role_is_404(stack, owner):
    r = stack.patch(f"/v1/roles/{role_name('nosuch')}", json={"permissions": ["system.tags.read"]},
                    headers=owner.headers)
    check_problem(r, 404, "not-found")


# ---------------------------------------------------------------------------
# delete
# ---------------------------------------------------------------------------

def test_delete_unused_custom_role_is_204(stack, owner):
    role = create_role(stack, owner, ["system.tags.read"])
    r = stack.delete(f"/v1/roles/{role['name']}", headers=owner.headers)
    assert r.status_code == 204, r.text
    assert role_of(stack, owner, role["name"]) is None
    assert role_doc(stack, owner.tenant_id, role["name"]) is None


def test_delete_role_in_use_is_409(stack, owner):
    role = create_role(stack, owner, ["system.tags.read"])
    create_user(stack, owner, [role["name"]])
    check_problem(stack.delete(f"/v1/roles/{role['name']}", headers=owner.headers), 409, "conflict")
    assert role_of(stack, owner, role["name"]) is not None


@pytest.mark.parametrize("name", ["sales", "employee", "owner"])
def test_delete_builtin_role_is_409(stack, owner, name):
    check_problem(stack.delete(f"/v1/roles/{name}", headers=owner.headers), 409, "conflict")
    assert role_of(stack, owner, name) is not None


def test_delete_unknown_role_is_404(stack, owner):
    check_problem(stack.delete(f"/v1/roles/{role_name('nosuch')}", headers=owner.headers), 404, "not-found")


# ---------------------------------------------------------------------------
# who may manage roles
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def employee(stack, owner):
    return user_session(stack, owner, ["employee"])


def test_employee_cannot_list_roles(stack, employee):
    check_problem(stack.get("/v1/roles", headers=employee.headers), 403, "forbidden")


def test_employee_cannot_create_roles(stack, owner, employee):
    name = role_name("sneaky")
    check_problem(post_role(stack, employee, name, ["system.users.write"]), 403, "forbidden")
    assert role_of(stack, owner, name) is None


def test_employee_cannot_widen_their_own_role(stack, owner, employee):
    r = stack.patch("/v1/roles/employee", json={"permissions": ["system.users.write"]}, headers=employee.headers)
    check_problem(r, 403, "forbidden")
    assert "system.users.write" not in stack.get("/v1/me", headers=employee.headers).json()["permissions"]


# ---------------------------------------------------------------------------
# tenant isolation
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def a_role(stack, owner):
    """A custom role of tenant A."""
    return create_role(stack, owner, ["system.tags.read", "system.tags.write"], name=role_name("a-only"))


def test_other_tenant_does_not_list_the_custom_role(stack, other, a_role):
    names = {r["name"] for r in list_roles(stack, other)}
    assert a_role["name"] not in names
    assert BUILTINS <= names


def test_other_tenant_cannot_patch_the_custom_role(stack, owner, other, a_role):
    r = stack.patch(f"/v1/roles/{a_role['name']}", json={"permissions": ["system.tags.read"]},
                    headers=other.headers)
    check_problem(r, 404, "not-found")
    assert sorted(role_of(stack, owner, a_role["name"])["permissions"]) == ["system.tags.read",
                                                                         "system.tags.write"]


def test_other_tenant_cannot_delete_the_custom_role(stack, owner, other, a_role):
    check_problem(stack.delete(f"/v1/roles/{a_role['name']}", headers=other.headers), 404, "not-found")
    assert role_of(stack, owner, a_role["name"]) is not None


def test_other_tenant_cannot_assign_the_custom_role(stack, other, a_role):
    r = stack.post("/v1/users", headers=other.headers,
                   json={"email": f"x-{secrets.token_hex(4)}@example.com", "name": "X", "roles": [a_role["name"]],
                         "password": "a-long-enough-password"})
    p = check_problem(r, 422, "validation-failed")
    assert errors_name(p, "roles"), p


def test_other_tenant_may_reuse_the_custom_role_name(stack, owner, other, a_role):
    r = post_role(stack, other, a_role["name"], ["system.tags.read"])
    assert r.status_code == 201, r.text
    assert sorted(role_of(stack, owner, a_role["name"])["permissions"]) == ["system.tags.read",
                                                                         "system.tags.write"]


def test_patching_a_builtin_in_one_tenant_leaves_the_other(stack, owner, other):
    """Built-in roles may or may not be patchable; if a tenant may patch one,
    the change stays in that tenant."""
    before = role_of(stack, other, "warehouse")["permissions"]
    r = stack.patch("/v1/roles/warehouse", json={"permissions": ["system.tags.read"]}, headers=owner.headers)
    assert r.status_code in (200, 403, 409, 422), r.text
    assert role_of(stack, other, "warehouse")["permissions"] == before
