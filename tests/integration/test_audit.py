"""The audit log: every change to users, roles and API keys is recorded with
who did it (user or API key), what it touched and the request id; only
owners and admins read it; it is per tenant."""

import re
import secrets

import pytest
from bson import ObjectId

from conftest import DEFAULT_PASSWORD, check_problem, signup, unique_email, user_session

HEX24 = re.compile(r"^[0-9a-f]{24}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ACTIONS = {"user.created", "user.updated", "user.deactivated", "role.created", "role.updated",
           "role.deleted", "api_key.created", "api_key.revoked"}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def rid():
    """A client request id the server echoes (and should record)."""
    return "audit-" + secrets.token_hex(8)


def with_rid(headers, request_id):
    h = dict(headers)
    h["X-Request-Id"] = request_id
    return h


def audit(stack, headers, **params):
    params.setdefault("limit", 200)
    r = stack.get("/v1/audit", headers=headers, params=params)
    assert r.status_code == 200, f"GET /v1/audit: {r.status_code} {r.text[:500]}"
    body = r.json()
    assert set(body) >= {"items", "next_cursor"}, body
    return body["items"]


def entries_for(stack, acct, request_id):
    return [e for e in audit(stack, acct.headers) if e.get("request_id") == request_id]


def one_entry(stack, acct, request_id):
    found = entries_for(stack, acct, request_id)
    assert len(found) == 1, f"expected exactly one audit entry for request {request_id}, got {found}"
    return found[0]


def assert_entry(entry, action, actor_type, actor_id, target_type, target_id, request_id):
    assert entry["action"] == action, entry
    assert entry["actor"] == {"type": actor_type, "id": actor_id} or (
        entry["actor"].get("type") == actor_type and entry["actor"].get("id") == actor_id), entry
    assert entry["target"].get("type") == target_type and entry["target"].get("id") == target_id, entry
    assert entry["request_id"] == request_id, entry
    assert HEX24.match(entry["id"]), entry
    assert isinstance(entry.get("created_at"), str) and TIMESTAMP.match(entry["created_at"]), entry


def post_user(stack, acct, request_id=None, roles=("employee",), email=None):
    headers = with_rid(acct.headers, request_id) if request_id else acct.headers
    return stack.post("/v1/users", headers=headers, json={
        "email": email or unique_email(), "name": "Audited", "roles": list(roles),
        "password": DEFAULT_PASSWORD})


def new_user(stack, acct, roles=("employee",)):
    r = post_user(stack, acct, roles=roles)
    assert r.status_code == 201, r.text
    return r.json()


def new_role(stack, acct, permissions=("system.tags.read",)):
    name = "aud-" + secrets.token_hex(4)
    r = stack.post("/v1/roles", headers=acct.headers, json={"name": name, "permissions": list(permissions)})
    assert r.status_code == 201, r.text
    return name


def new_key(stack, headers, permissions=("system.tags.read",)):
    r = stack.post("/v1/api-keys", headers=headers, json={"name": "k", "permissions": list(permissions)})
    assert r.status_code == 201, r.text
    return r.json()


def audit_count(stack, tenant_id):
    return stack.mongo["audit"].count_documents({"tenant_id": ObjectId(tenant_id)})


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def owner(stack):
    return signup(stack)


@pytest.fixture(scope="module")
def other(stack):
    """The owner of tenant B."""
    return signup(stack)


@pytest.fixture(scope="module")
def admin(stack, owner):
    return user_session(stack, owner, ["admin"])


# ---------------------------------------------------------------------------
# each action is recorded
# ---------------------------------------------------------------------------

def test_user_created_is_recorded(stack, owner):
    request_id = rid()
    r = post_user(stack, owner, request_id)
    assert r.status_code == 201, r.text
    assert r.headers.get("X-Request-Id") == request_id
    e = one_entry(stack, owner, request_id)
    assert_entry(e, "user.created", "user", owner.user_id, "user", r.json()["id"], request_id)


def test_user_updated_is_recorded(stack, owner):
    user = new_user(stack, owner)
    request_id = rid()
    r = stack.patch(f"/v1/users/{user['id']}", headers=with_rid(owner.headers, request_id),
                    json={"name": "Renamed"})
    assert r.status_code == 200, r.text
    assert_entry(one_entry(stack, owner, request_id), "user.updated", "user", owner.user_id, "user",
                 user["id"], request_id)


def test_user_deactivated_is_recorded(stack, owner):
    user = new_user(stack, owner)
    request_id = rid()
    r = stack.delete(f"/v1/users/{user['id']}", headers=with_rid(owner.headers, request_id))
    assert r.status_code == 204, r.text
    assert_entry(one_entry(stack, owner, request_id), "user.deactivated", "user", owner.user_id, "user",
                 user["id"], request_id)


def test_deactivation_by_patch_is_recorded_as_deactivated(stack, owner):
    """PATCH {active: false} deactivates just like DELETE; a reviewer looking
    for ?action=user.deactivated must find it."""
    user = new_user(stack, owner)
    request_id = rid()
    r = stack.patch(f"/v1/users/{user['id']}", headers=with_rid(owner.headers, request_id),
                    json={"active": False})
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    assert_entry(one_entry(stack, owner, request_id), "user.deactivated", "user", owner.user_id, "user",
                 user["id"], request_id)


def test_role_created_is_recorded(stack, owner):
    name = "aud-" + secrets.token_hex(4)
    request_id = rid()
    r = stack.post("/v1/roles", headers=with_rid(owner.headers, request_id),
                   json={"name": name, "permissions": ["system.tags.read"]})
    assert r.status_code == 201, r.text
    assert_entry(one_entry(stack, owner, request_id), "role.created", "user", owner.user_id, "role",
                 name, request_id)


def test_role_updated_is_recorded(stack, owner):
    name = new_role(stack, owner)
    request_id = rid()
    r = stack.patch(f"/v1/roles/{name}", headers=with_rid(owner.headers, request_id),
                    json={"permissions": ["system.tags.read", "system.tags.write"]})
    assert r.status_code == 200, r.text
    assert_entry(one_entry(stack, owner, request_id), "role.updated", "user", owner.user_id, "role",
                 name, request_id)


def test_role_deleted_is_recorded(stack, owner):
    name = new_role(stack, owner)
    request_id = rid()
    r = stack.delete(f"/v1/roles/{name}", headers=with_rid(owner.headers, request_id))
    assert r.status_code == 204, r.text
    assert_entry(one_entry(stack, owner, request_id), "role.deleted", "user", owner.user_id, "role",
                 name, request_id)


def test_api_key_created_is_recorded(stack, owner):
    request_id = rid()
    r = stack.post("/v1/api-keys", headers=with_rid(owner.headers, request_id),
                   json={"name": "audited", "permissions": ["system.tags.read"]})
    assert r.status_code == 201, r.text
    key = r.json()
    e = one_entry(stack, owner, request_id)
    assert_entry(e, "api_key.created", "user", owner.user_id, "api_key", key["id"], request_id)


def test_api_key_revoked_is_recorded(stack, owner):
    key = new_key(stack, owner.headers)
    request_id = rid()
    r = stack.delete(f"/v1/api-keys/{key['id']}", headers=with_rid(owner.headers, request_id))
    assert r.status_code == 204, r.text
    assert_entry(one_entry(stack, owner, request_id), "api_key.revoked", "user", owner.user_id, "api_key",
                 key["id"], request_id)


def test_change_by_admin_names_the_admin(stack, owner, admin):
    request_id = rid()
    r = post_user(stack, admin, request_id)
    assert r.status_code == 201, r.text
    assert_entry(one_entry(stack, owner, request_id), "user.created", "user", admin.user_id, "user",
                 r.json()["id"], request_id)


def test_change_by_api_key_names_the_key(stack, owner):
    key = new_key(stack, owner.headers, ("system.roles.write", "system.roles.read", "system.tags.read"))
    name = "bykey-" + secrets.token_hex(4)
    request_id = rid()
    r = stack.post("/v1/roles", headers={"X-API-Key": key["key"], "X-Request-Id": request_id},
                   json={"name": name, "permissions": ["system.tags.read"]})
    assert r.status_code == 201, r.text
    assert_entry(one_entry(stack, owner, request_id), "role.created", "api_key", key["id"], "role", name,
                 request_id)


def test_entry_carries_no_secrets(stack, owner):
    password = "audit-" + secrets.token_hex(10)
    request_id = rid()
    r = stack.post("/v1/users", headers=with_rid(owner.headers, request_id), json={
        "email": unique_email(), "name": "Secretive", "roles": ["employee"], "password": password})
    assert r.status_code == 201, r.text
    r2 = stack.post("/v1/api-keys", headers=owner.headers, json={"name": "s", "permissions": ["system.tags.read"]})
    assert r2.status_code == 201, r2.text
    key = r2.json()["key"]
    new_password = "changed-" + secrets.token_hex(10)
    r3 = stack.patch(f"/v1/users/{r.json()['id']}", headers=owner.headers, json={"password": new_password})
    assert r3.status_code == 200, r3.text
    r = stack.get("/v1/audit", headers=owner.headers, params={"limit": 200})
    assert r.status_code == 200
    assert new_password not in r.text
    assert password not in r.text and key not in r.text and "$argon2" not in r.text
    stored = list(stack.mongo["audit"].find({"tenant_id": owner.tenant_oid}))
    assert stored, "no audit documents stored with tenant_id"
    assert password not in repr(stored) and key.split("_")[-1] not in repr(stored)


def test_entries_are_stored_with_the_tenant(stack, owner):
    request_id = rid()
    assert post_user(stack, owner, request_id).status_code == 201
    docs = list(stack.mongo["audit"].find({"request_id": request_id}))
    assert len(docs) == 1, docs
    assert docs[0]["tenant_id"] == owner.tenant_oid, docs[0]


# ---------------------------------------------------------------------------
# nothing recorded for what did not happen
# ---------------------------------------------------------------------------

def test_failed_changes_are_not_recorded(stack, owner):
    sales = user_session(stack, owner, ["sales"])
    before = audit_count(stack, owner.tenant_id)
    ids = []
    attempts = [
        ("POST", "/v1/users", owner.headers, {"email": "not-an-email", "name": "x", "roles": ["sales"],
                                              "password": DEFAULT_PASSWORD}),          # 422
        ("POST", "/v1/users", sales.headers, {"email": unique_email(), "name": "x", "roles": ["sales"],
                                              "password": DEFAULT_PASSWORD}),          # 403
        ("POST", "/v1/roles", owner.headers, {"name": "owner", "permissions": []}),   # 409
        ("POST", "/v1/roles", owner.headers, {"name": "r-" + secrets.token_hex(3),
                                              "permissions": ["no.such.perm"]}),      # 422
        ("DELETE", "/v1/roles/no-such-role", owner.headers, None),                     # 404
        ("PATCH", f"/v1/users/{ObjectId()}", owner.headers, {"name": "x"}),            # 404
        ("DELETE", f"/v1/users/{owner.user_id}", owner.headers, None),                 # 409 (self)
        ("DELETE", f"/v1/api-keys/{ObjectId()}", owner.headers, None),                 # 404
        ("POST", "/v1/api-keys", owner.headers, {"name": "x", "permissions": ["system.tags.read:own"]}),  # 422
    ]
    for method, path, headers, body in attempts:
        request_id = rid()
        ids.append(request_id)
        kw = {"headers": with_rid(headers, request_id)}
        if body is not None:
            kw["json"] = body
        r = stack.request(method, path, **kw)
        assert r.status_code >= 400, f"{method} {path} unexpectedly succeeded: {r.status_code} {r.text[:300]}"
    assert audit_count(stack, owner.tenant_id) == before
    listed = {e["request_id"] for e in audit(stack, owner.headers)}
    assert not listed & set(ids)


def test_reading_does_not_record(stack, owner):
    before = audit_count(stack, owner.tenant_id)
    for path in ("/v1/users", "/v1/roles", "/v1/api-keys", "/v1/audit", "/v1/me", "/v1/tags"):
        assert stack.get(path, headers=owner.headers).status_code == 200, path
    assert audit_count(stack, owner.tenant_id) == before


# ---------------------------------------------------------------------------
# reading the log
# ---------------------------------------------------------------------------

def test_newest_first(stack, owner):
    first, second, third = rid(), rid(), rid()
    for request_id in (first, second, third):
        assert post_user(stack, owner, request_id).status_code == 201
    order = [e["request_id"] for e in audit(stack, owner.headers)]
    pos = [order.index(x) for x in (third, second, first)]
    assert pos == sorted(pos), f"not newest first: {order[:10]}"
    assert pos[0] == 0, "the newest change is not the first entry"


def test_filter_by_action(stack, owner):
    name = new_role(stack, owner)
    assert stack.delete(f"/v1/roles/{name}", headers=owner.headers).status_code == 204
    new_user(stack, owner)
    items = audit(stack, owner.headers, action="role.deleted")
    assert items, "no role.deleted entries"
    assert {e["action"] for e in items} == {"role.deleted"}
    assert name in [e["target"]["id"] for e in items]
    assert audit(stack, owner.headers, action="no.such.action") == []


def test_every_listed_action_is_known(stack, owner):
    items = audit(stack, owner.headers)
    assert items
    unknown = {e["action"] for e in items} - ACTIONS
    assert not unknown, unknown


def test_pagination_with_cursor(stack, owner):
    for _ in range(3):
        new_user(stack, owner)
    seen = []
    r = stack.get("/v1/audit", headers=owner.headers, params={"limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    seen += [e["id"] for e in page["items"]]
    r = stack.get("/v1/audit", headers=owner.headers, params={"limit": 2, "cursor": page["next_cursor"]})
    assert r.status_code == 200, r.text
    seen += [e["id"] for e in r.json()["items"]]
    assert len(seen) == len(set(seen)) == 4, seen
    full = [e["id"] for e in audit(stack, owner.headers)]
    assert full[:4] == seen


def test_admin_can_read(stack, admin):
    audit(stack, admin.headers)


@pytest.mark.parametrize("role", ["manager", "sales", "warehouse", "accountant", "employee"])
def test_other_roles_get_403(stack, owner, role):
    acct = user_session(stack, owner, [role])
    r = stack.get("/v1/audit", headers=acct.headers)
    check_problem(r, 403, "forbidden")


def test_without_credentials_401(stack):
    check_problem(stack.get("/v1/audit"), 401)


def test_api_key_with_audit_read_can_read(stack, owner):
    key = new_key(stack, owner.headers, ("system.audit.read",))
    r = stack.get("/v1/audit", headers={"X-API-Key": key["key"]})
    assert r.status_code == 200, r.text
    assert key["id"] in [e["target"]["id"] for e in r.json()["items"]]


def test_api_key_without_audit_read_gets_403(stack, owner):
    key = new_key(stack, owner.headers, ("system.tags.read",))
    check_problem(stack.get("/v1/audit", headers={"X-API-Key": key["key"]}), 403, "forbidden")


def test_tenant_b_sees_none_of_tenant_a(stack, owner, other):
    request_id = rid()
    r = post_user(stack, owner, request_id)
    assert r.status_code == 201
    a_ids = {e["id"] for e in audit(stack, owner.headers)}
    assert a_ids
    b_items = audit(stack, other.headers)
    assert not a_ids & {e["id"] for e in b_items}
    assert request_id not in {e["request_id"] for e in b_items}
    assert r.json()["id"] not in {e["target"]["id"] for e in b_items}
    assert owner.user_id not in {e["actor"]["id"] for e in b_items}


def test_tenant_b_change_appears_only_in_b(stack, owner, other):
    request_id = rid()
    assert post_user(stack, other, request_id).status_code == 201
    assert len(entries_for(stack, other, request_id)) == 1
    assert entries_for(stack, owner, request_id) == []


def test_cannot_write_to_the_log(stack, owner):
    before = audit_count(stack, owner.tenant_id)
    r = stack.post("/v1/audit", headers=owner.headers, json={"action": "user.created"})
    check_problem(r, (404, 405))
    entry = audit(stack, owner.headers)[0]
    for method in ("PATCH", "DELETE"):
        r = stack.request(method, f"/v1/audit/{entry['id']}", headers=owner.headers, json={})
        check_problem(r, (404, 405))
    assert audit_count(stack, owner.tenant_id) == before


def test_server_generated_request_id_is_recorded(stack, owner):
    r = stack.post("/v1/users", headers=owner.headers, json={
        "email": unique_email(), "name": "No Rid", "roles": ["employee"], "password": DEFAULT_PASSWORD})
    assert r.status_code == 201, r.text
    request_id = r.headers.get("X-Request-Id")
    assert request_id, "response without X-Request-Id"
    e = one_entry(stack, owner, request_id)
    assert e["target"]["id"] == r.json()["id"]


def test_oldest_first_with_sort(stack, owner):
    new_user(stack, owner)
    newest = [e["id"] for e in audit(stack, owner.headers)]
    oldest = [e["id"] for e in audit(stack, owner.headers, sort="created_at")]
    assert oldest == list(reversed(newest)), "sort=created_at is not the reverse of the default order"
    check_problem(stack.get("/v1/audit", headers=owner.headers, params={"sort": "action"}), (400, 422))
