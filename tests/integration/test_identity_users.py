"""Users: create, list with cursors, get, patch, deactivate; who may do what;
tenant isolation.  Effects are checked in MongoDB and Redis directly."""

import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
from bson import ObjectId

from conftest import (DEFAULT_PASSWORD, check_problem, count_everywhere, create_user, find_doc,
                      login_request, signup, unique_email, user_session)

HEX24 = re.compile(r"^[0-9a-f]{24}$")
USER_FIELDS = {"id", "email", "name", "roles", "active", "created_at", "updated_at", "version"}
SECRET_KEYS = {"password", "_password", "password_hash", "hash", "pwhash", "passwd"}


def all_keys(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from all_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from all_keys(v)


def assert_no_secret(resp, password=DEFAULT_PASSWORD):
    assert password not in resp.text, resp.text[:500]
    assert "$argon2" not in resp.text, resp.text[:500]
    leaked = SECRET_KEYS & set(all_keys(resp.json()))
    assert not leaked, f"response carries {leaked}"


def assert_user(user):
    assert USER_FIELDS <= set(user), f"user lacks {USER_FIELDS - set(user)}: {user}"
    assert HEX24.match(user["id"]), user
    assert isinstance(user["version"], int) and not isinstance(user["version"], bool)
    return user


def user_doc(stack, user_id):
    _, doc = find_doc(stack.mongo, {"_id": ObjectId(user_id)}, prefer=("users",))
    assert doc is not None, f"no stored document with _id {user_id}"
    return doc


def users_count(stack, tenant_id):
    coll, _ = find_doc(stack.mongo, {"tenant_id": ObjectId(tenant_id), "email": {"$exists": True}},
                       prefer=("users",))
    return stack.mongo[coll].count_documents({"tenant_id": ObjectId(tenant_id)})


def post_user(stack, acct, **fields):
    body = {"email": unique_email(), "name": "New User", "roles": ["sales"], "password": DEFAULT_PASSWORD}
    for k, v in fields.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return stack.post("/v1/users", json=body, headers=acct.headers), body


def me(stack, acct):
    return stack.get("/v1/me", headers=acct.headers)


def session_keys(stack, acct):
    return stack.redis.smembers(f"t:{{{acct.tenant_id}}}:usess:{acct.user_id}")


# ---------------------------------------------------------------------------
# shared accounts
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def owner(stack):
    return signup(stack)


@pytest.fixture(scope="module")
def other(stack):
    """The owner of tenant B."""
    return signup(stack)


@pytest.fixture(scope="module")
def sales(stack, owner):
    return user_session(stack, owner, ["sales"], name="Sam Sales")


@pytest.fixture(scope="module")
def admin(stack, owner):
    return user_session(stack, owner, ["admin"], name="Ann Admin")


# ---------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------

def test_owner_creates_a_sales_user(stack, owner):
    email = unique_email("sales")
    r, body = post_user(stack, owner, email=email, name="Sally Sales", roles=["sales"])
    assert r.status_code == 201, r.text
    user = assert_user(r.json())
    assert user["email"] == email
    assert user["name"] == "Sally Sales"
    assert user["roles"] == ["sales"]
    assert user["active"] is True
    assert user["version"] == 1
    assert_no_secret(r)
    doc = user_doc(stack, user["id"])
    assert doc["tenant_id"] == owner.tenant_oid
    assert doc["email"] == email


def test_created_user_can_log_in(stack, owner):
    password = "a-sales-password-" + secrets.token_hex(3)
    user = create_user(stack, owner, ["sales"], password=password)
    r = login_request(stack, owner.slug, user["email"], password)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == user["id"]
    assert r.json()["user"]["roles"] == ["sales"]
    got = stack.get("/v1/me", headers={"Authorization": "Bearer " + r.json()["access_token"]})
    assert got.status_code == 200 and got.json()["user"]["id"] == user["id"]


def test_created_users_password_is_stored_as_argon2id(stack, owner, sales):
    doc = user_doc(stack, sales.user_id)
    assert DEFAULT_PASSWORD not in repr(doc)
    assert any(isinstance(v, str) and v.startswith("$argon2id$") for v in doc.values()), sorted(doc)


def test_create_user_with_duplicate_email_is_409(stack, owner, sales):
    before = users_count(stack, owner.tenant_id)
    r, _ = post_user(stack, owner, email=sales.email)
    check_problem(r, 409, "conflict")
    assert users_count(stack, owner.tenant_id) == before


def test_concurrent_creates_with_one_email_create_one_user(stack, owner):
    email = unique_email("race")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: post_user(stack, owner, email=email)[0], range(4)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409, 409, 409], [(r.status_code, r.text[:200]) for r in results]
    assert count_everywhere(stack.mongo, {"email": email}) == 1


def test_same_email_is_allowed_in_another_tenant(stack, other, sales):
    r, _ = post_user(stack, other, email=sales.email)
    assert r.status_code == 201, r.text
    assert r.json()["id"] != sales.user_id


def test_create_user_with_idempotency_key_creates_once(stack, owner):
    key = "idem-" + secrets.token_hex(8)
    body = {"email": unique_email("idem"), "name": "Idem Potent", "roles": ["sales"], "password": DEFAULT_PASSWORD}
    headers = {**owner.headers, "Idempotency-Key": key}
    first = stack.post("/v1/users", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = stack.post("/v1/users", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert count_everywhere(stack.mongo, {"email": body["email"]}) == 1
    assert_no_secret(again)


def test_create_user_with_unknown_role_is_422_naming_roles(stack, owner):
    before = users_count(stack, owner.tenant_id)
    r, body = post_user(stack, owner, roles=["sales", "no-such-role"])
    p = check_problem(r, 422, "validation-failed")
    assert "roles" in [e["field"] for e in p.get("errors", [])], p
    assert users_count(stack, owner.tenant_id) == before
    assert count_everywhere(stack.mongo, {"email": body["email"]}) == 0


INVALID_USERS = [
    ("password-too-short", {"password": "short-pw"}, "password"),
    ("password-missing", {"password": None}, "password"),
    ("email-invalid", {"email": "nobody-at-example.com"}, "email"),
    ("email-missing", {"email": None}, "email"),
    ("name-empty", {"name": ""}, "name"),
    ("roles-not-a-list", {"roles": "sales"}, "roles"),
    ("unknown-field", {"nickname": "x"}, "nickname"),
    ("tenant-id-in-body", {"tenant_id": str(ObjectId())}, "tenant_id"),
]


@pytest.mark.parametrize("overrides,field", [(o, f) for _, o, f in INVALID_USERS],
                         ids=[i for i, _, _ in INVALID_USERS])
def test_create_user_invalid_field_is_422_naming_it(stack, owner, overrides, field):
    before = users_count(stack, owner.tenant_id)
    r, _ = post_user(stack, owner, **overrides)
    p = check_problem(r, 422, "validation-failed")
    assert field in [e["field"] for e in p.get("errors", [])], p
    assert users_count(stack, owner.tenant_id) == before


def test_tenant_id_in_body_does_not_create_in_that_tenant(stack, owner, other):
    email = unique_email("cross")
    r, _ = post_user(stack, owner, email=email, tenant_id=other.tenant_id)
    check_problem(r, 422, "validation-failed")
    assert count_everywhere(stack.mongo, {"email": email}) == 0


# ---------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def five(stack):
    """A tenant with exactly five users (the owner and four more)."""
    boss = signup(stack)
    ids = [boss.user_id]
    for i in range(4):
        ids.append(create_user(stack, boss, ["employee"], email=f"u{i}-{secrets.token_hex(3)}@example.com")["id"])
    return boss, ids


def page_through(stack, acct, **params):
    seen, pages, cursor = [], 0, None
    while True:
        q = dict(params)
        if cursor:
            q["cursor"] = cursor
        r = stack.get("/v1/users", params=q, headers=acct.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"items", "next_cursor"}, body
        seen.extend(body["items"])
        pages += 1
        assert pages <= 10, "pagination does not end"
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages
        assert len(body["items"]) == params.get("limit", 50)


def test_list_users_pages_without_gaps_or_duplicates(stack, five):
    boss, ids = five
    items, pages = page_through(stack, boss, limit=2)
    got = [u["id"] for u in items]
    assert pages == 3, f"5 users at limit=2 took {pages} pages"
    assert len(got) == len(set(got)), f"duplicates: {got}"
    assert set(got) == set(ids)


def test_list_users_default_order_is_newest_first(stack, five):
    boss, ids = five
    items, _ = page_through(stack, boss, limit=2)
    created = [u["created_at"] for u in items]
    assert created == sorted(created, reverse=True), created
    assert items[-1]["id"] == boss.user_id, "the owner (created first) is not last"


def test_list_users_sorted_by_email(stack, five):
    boss, ids = five
    items, _ = page_through(stack, boss, limit=2, sort="email")
    emails = [u["email"] for u in items]
    assert emails == sorted(emails), emails
    assert len(items) == 5


def test_list_users_sorted_oldest_first(stack, five):
    boss, ids = five
    items, _ = page_through(stack, boss, limit=2, sort="created_at")
    assert [u["created_at"] for u in items] == sorted(u["created_at"] for u in items)
    assert items[0]["id"] == boss.user_id
    assert len(items) == 5


def test_list_users_rejects_a_bad_cursor(stack, five):
    boss, _ = five
    r = stack.get("/v1/users", params={"cursor": "not-a-cursor!!"}, headers=boss.headers)
    check_problem(r, (400, 422))


def test_list_users_rejects_a_bad_sort(stack, five):
    boss, _ = five
    r = stack.get("/v1/users", params={"sort": "password"}, headers=boss.headers)
    check_problem(r, (400, 422))


def test_list_users_items_carry_no_secret(stack, five):
    boss, _ = five
    r = stack.get("/v1/users", headers=boss.headers)
    assert r.status_code == 200, r.text
    for u in r.json()["items"]:
        assert_user(u)
    assert_no_secret(r)


def test_list_users_rejects_bad_limit(stack, five):
    boss, _ = five
    r = stack.get("/v1/users", params={"limit": 0}, headers=boss.headers)
    check_problem(r, (400, 422))


# ---------------------------------------------------------------------------
# get / patch
# ---------------------------------------------------------------------------

def test_get_user_returns_it_with_etag(stack, owner, sales):
    r = stack.get(f"/v1/users/{sales.user_id}", headers=owner.headers)
    assert r.status_code == 200, r.text
    user = assert_user(r.json())
    assert user["id"] == sales.user_id
    assert user["email"] == sales.email
    assert r.headers.get("ETag") == f'"{user["version"]}"'
    assert_no_secret(r)


@pytest.mark.parametrize("uid", [str(ObjectId()), "not-an-id", "0" * 23], ids=["unknown", "garbage", "short"])
def test_get_missing_user_is_404(stack, owner, uid):
    check_problem(stack.get(f"/v1/users/{uid}", headers=owner.headers), 404, "not-found")


def test_patch_name_with_current_if_match_bumps_version(stack, owner):
    user = create_user(stack, owner, ["sales"], name="Before")
    r = stack.patch(f"/v1/users/{user['id']}", json={"name": "After"},
                    headers={**owner.headers, "If-Match": f'"{user["version"]}"'})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "After"
    assert r.json()["version"] == user["version"] + 1
    assert user_doc(stack, user["id"])["name"] == "After"


def test_patch_name_with_stale_if_match_is_412_and_changes_nothing(stack, owner):
    user = create_user(stack, owner, ["sales"], name="Unchanged")
    before = user_doc(stack, user["id"])
    r = stack.patch(f"/v1/users/{user['id']}", json={"name": "Changed"},
                    headers={**owner.headers, "If-Match": f'"{user["version"] + 7}"'})
    check_problem(r, 412, "version-mismatch")
    after = user_doc(stack, user["id"])
    assert after["name"] == "Unchanged"
    assert after == before


def test_patch_roles_changes_roles(stack, owner):
    user = create_user(stack, owner, ["sales"])
    r = stack.patch(f"/v1/users/{user['id']}", json={"roles": ["manager", "sales"]}, headers=owner.headers)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["roles"]) == ["manager", "sales"]
    assert sorted(stack.get(f"/v1/users/{user['id']}", headers=owner.headers).json()["roles"]) == [
        "manager", "sales"]


def test_patch_unknown_role_is_422(stack, owner, sales):
    r = stack.patch(f"/v1/users/{sales.user_id}", json={"roles": ["no-such-role"]}, headers=owner.headers)
    p = check_problem(r, 422, "validation-failed")
    assert "roles" in [e["field"] for e in p.get("errors", [])], p
    assert user_doc(stack, sales.user_id)["roles"] == ["sales"]


def test_patch_unknown_field_is_422(stack, owner, sales):
    r = stack.patch(f"/v1/users/{sales.user_id}", json={"nickname": "x"}, headers=owner.headers)
    p = check_problem(r, 422, "validation-failed")
    assert "nickname" in [e["field"] for e in p.get("errors", [])], p


def test_patch_password_changes_the_login_password(stack, owner):
    old, new = "old-password-" + secrets.token_hex(3), "new-password-" + secrets.token_hex(3)
    user = create_user(stack, owner, ["sales"], password=old)
    r = stack.patch(f"/v1/users/{user['id']}", json={"password": new}, headers=owner.headers)
    assert r.status_code == 200, r.text
    assert_no_secret(r, new)
    check_problem(login_request(stack, owner.slug, user["email"], old), 401, "unauthorized")
    assert login_request(stack, owner.slug, user["email"], new).status_code == 200


# ---------------------------------------------------------------------------
# deactivate
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deactivated(stack, owner):
    """A sales user with a live session whom the owner then deletes:
    (their account before deletion, the DELETE response)."""
    acct = user_session(stack, owner, ["sales"], name="Gone Soon")
    assert me(stack, acct).status_code == 200
    r = stack.delete(f"/v1/users/{acct.user_id}", headers=owner.headers)
    return acct, r


def test_delete_user_is_204(deactivated):
    _, r = deactivated
    assert r.status_code == 204, r.text
    assert r.content == b""


def test_deactivated_users_token_is_401_at_once(stack, deactivated):
    acct, _ = deactivated
    check_problem(me(stack, acct), 401, "unauthorized")


def test_deactivated_users_refresh_token_is_401(stack, deactivated):
    acct, _ = deactivated
    r = stack.post("/v1/auth/refresh", json={"refresh_token": acct.refresh_token})
    check_problem(r, 401, "unauthorized")


def test_deactivated_users_sessions_are_gone_from_redis(stack, deactivated):
    acct, _ = deactivated
    assert stack.redis.exists(acct.session_key) == 0
    for sid in session_keys(stack, acct):
        assert stack.redis.exists(f"t:{{{acct.tenant_id}}}:sess:{sid}") == 0, f"session {sid} survived"


def test_deactivated_user_cannot_log_in(stack, owner, deactivated):
    acct, _ = deactivated
    r = login_request(stack, owner.slug, acct.email, acct.password)
    p = check_problem(r, 401, "unauthorized")
    assert p["detail"] == "wrong tenant, email or password"


def test_deactivated_user_shows_active_false(stack, owner, deactivated):
    acct, _ = deactivated
    r = stack.get(f"/v1/users/{acct.user_id}", headers=owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    assert user_doc(stack, acct.user_id)["active"] is False


def test_delete_with_stale_if_match_is_412_and_keeps_the_user_active(stack, owner):
    acct = user_session(stack, owner, ["sales"])
    r = stack.delete(f"/v1/users/{acct.user_id}", headers={**owner.headers, "If-Match": '"42"'})
    check_problem(r, 412, "version-mismatch")
    assert user_doc(stack, acct.user_id)["active"] is True
    assert me(stack, acct).status_code == 200


def test_reactivated_user_can_log_in_again(stack, owner):
    password = "comeback-" + secrets.token_hex(4)
    user = create_user(stack, owner, ["sales"], password=password)
    assert stack.delete(f"/v1/users/{user['id']}", headers=owner.headers).status_code == 204
    check_problem(login_request(stack, owner.slug, user["email"], password), 401, "unauthorized")
    r = stack.patch(f"/v1/users/{user['id']}", json={"active": True}, headers=owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True
    assert login_request(stack, owner.slug, user["email"], password).status_code == 200


def test_patch_active_false_revokes_sessions(stack, owner):
    acct = user_session(stack, owner, ["sales"])
    r = stack.patch(f"/v1/users/{acct.user_id}", json={"active": False}, headers=owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    check_problem(me(stack, acct), 401, "unauthorized")


def test_user_cannot_delete_themselves(stack, owner):
    r = stack.delete(f"/v1/users/{owner.user_id}", headers=owner.headers)
    check_problem(r, 409, "conflict")
    assert user_doc(stack, owner.user_id)["active"] is True
    assert me(stack, owner).status_code == 200


def test_admin_cannot_delete_themselves(stack, admin):
    check_problem(stack.delete(f"/v1/users/{admin.user_id}", headers=admin.headers), 409, "conflict")
    assert me(stack, admin).status_code == 200


# ---------------------------------------------------------------------------
# who may do what
# ---------------------------------------------------------------------------

def test_admin_can_create_a_sales_user(stack, admin):
    r, _ = post_user(stack, admin, roles=["sales"])
    assert r.status_code == 201, r.text


def test_admin_can_deactivate_a_sales_user(stack, owner, admin):
    acct = user_session(stack, owner, ["sales"])
    r = stack.delete(f"/v1/users/{acct.user_id}", headers=admin.headers)
    assert r.status_code == 204, r.text
    check_problem(me(stack, acct), 401, "unauthorized")


def test_admin_cannot_deactivate_the_owner(stack, owner, admin):
    r = stack.delete(f"/v1/users/{owner.user_id}", headers=admin.headers)
    check_problem(r, 403, "forbidden")
    assert user_doc(stack, owner.user_id)["active"] is True
    assert me(stack, owner).status_code == 200


def test_admin_cannot_change_the_owner(stack, owner, admin):
    before = user_doc(stack, owner.user_id)
    r = stack.patch(f"/v1/users/{owner.user_id}", json={"name": "Renamed by admin"}, headers=admin.headers)
    check_problem(r, 403, "forbidden")
    assert user_doc(stack, owner.user_id) == before


def test_admin_cannot_grant_owner(stack, owner, admin):
    user = create_user(stack, owner, ["sales"])
    r = stack.patch(f"/v1/users/{user['id']}", json={"roles": ["owner"]}, headers=admin.headers)
    check_problem(r, 403, "forbidden")
    assert user_doc(stack, user["id"])["roles"] == ["sales"]


def test_admin_cannot_create_an_owner(stack, admin):
    r, body = post_user(stack, admin, roles=["owner"])
    check_problem(r, 403, "forbidden")
    assert count_everywhere(stack.mongo, {"email": body["email"]}) == 0


def test_owner_can_grant_owner(stack, owner):
    user = create_user(stack, owner, ["sales"])
    r = stack.patch(f"/v1/users/{user['id']}", json={"roles": ["owner"]}, headers=owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["roles"] == ["owner"]


def test_manager_can_list_users_but_not_change_them(stack, owner, sales):
    manager = user_session(stack, owner, ["manager"])
    assert stack.get("/v1/users", headers=manager.headers).status_code == 200
    r, body = post_user(stack, manager)
    check_problem(r, 403, "forbidden")
    assert count_everywhere(stack.mongo, {"email": body["email"]}) == 0
    before = user_doc(stack, sales.user_id)
    r = stack.patch(f"/v1/users/{sales.user_id}", json={"name": "By manager"}, headers=manager.headers)
    check_problem(r, 403, "forbidden")
    assert user_doc(stack, sales.user_id) == before


def test_sales_user_cannot_list_users(stack, sales):
    check_problem(stack.get("/v1/users", headers=sales.headers), 403, "forbidden")


def test_sales_user_cannot_create_users(stack, owner, sales):
    before = users_count(stack, owner.tenant_id)
    r, _ = post_user(stack, sales)
    check_problem(r, 403, "forbidden")
    assert users_count(stack, owner.tenant_id) == before


def test_sales_user_can_list_tags(stack, sales):
    r = stack.get("/v1/tags", headers=sales.headers)
    assert r.status_code == 200, r.text
    assert "items" in r.json()


def test_sales_user_cannot_create_tags(stack, sales):
    name = "sales-tag-" + secrets.token_hex(4)
    r = stack.post("/v1/tags", json={"name": name}, headers=sales.headers)
    check_problem(r, 403, "forbidden")
    assert stack.mongo.tags.count_documents({"tenant_id": sales.tenant_oid, "name": name}) == 0


def test_owner_can_create_tags(stack, owner):
    r = stack.post("/v1/tags", json={"name": "owner-tag-" + secrets.token_hex(4)}, headers=owner.headers)
    assert r.status_code == 201, r.text


# ---------------------------------------------------------------------------
# tenant isolation
# ---------------------------------------------------------------------------

def test_patch_user_with_tenant_id_is_422(stack, owner, other, sales):
    before = user_doc(stack, sales.user_id)
    r = stack.patch(f"/v1/users/{sales.user_id}", json={"name": "Moved", "tenant_id": other.tenant_id},
                    headers=owner.headers)
    p = check_problem(r, 422, "validation-failed")
    assert "tenant_id" in [e["field"] for e in p.get("errors", [])], p
    assert user_doc(stack, sales.user_id) == before


def test_other_tenant_cannot_get_the_user(stack, other, sales):
    check_problem(stack.get(f"/v1/users/{sales.user_id}", headers=other.headers), 404, "not-found")


def test_other_tenant_cannot_patch_the_user(stack, other, sales):
    before = user_doc(stack, sales.user_id)
    r = stack.patch(f"/v1/users/{sales.user_id}", json={"name": "Hijacked", "roles": ["admin"]},
                    headers=other.headers)
    check_problem(r, 404, "not-found")
    assert user_doc(stack, sales.user_id) == before


def test_other_tenant_cannot_delete_the_user(stack, other, sales):
    before = user_doc(stack, sales.user_id)
    r = stack.delete(f"/v1/users/{sales.user_id}", headers=other.headers)
    check_problem(r, 404, "not-found")
    assert user_doc(stack, sales.user_id) == before
    assert me(stack, sales).status_code == 200, "the user's session was revoked by another tenant"


def test_other_tenant_cannot_deactivate_the_owner(stack, owner, other):
    check_problem(stack.delete(f"/v1/users/{owner.user_id}", headers=other.headers), 404, "not-found")
    assert user_doc(stack, owner.user_id)["active"] is True


def test_other_tenants_list_does_not_show_the_user(stack, other, sales):
    items, _ = page_through(stack, other, limit=200)
    ids = {u["id"] for u in items}
    assert sales.user_id not in ids
    assert other.user_id in ids


# ---------------------------------------------------------------------------
# users on the resource engine: filters, ids spelled either way, the
# password write-only in the API description too
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("spell", [str.upper, lambda s: s[:12] + s[12:].upper()])
def test_nobody_deactivates_themselves_by_spelling_their_id_another_way(stack, spell):
    acct = signup(stack)
    r = stack.delete(f"/v1/users/{spell(acct.user_id)}", headers=acct.headers)
    check_problem(r, 409, "conflict")
    r = stack.patch(f"/v1/users/{spell(acct.user_id)}", json={"active": False}, headers=acct.headers)
    check_problem(r, 409, "conflict")
    assert user_doc(stack, acct.user_id)["active"] is True
    assert me(stack, acct).status_code == 200


def test_delete_with_an_upper_case_id_deactivates_that_user(stack, owner):
    acct = user_session(stack, owner, ["sales"])
    r = stack.delete(f"/v1/users/{acct.user_id.upper()}", headers=owner.headers)
    assert r.status_code == 204, r.text
    assert user_doc(stack, acct.user_id)["active"] is False
    check_problem(me(stack, acct), 401, "unauthorized")


def test_list_users_filters_by_active_and_by_email(stack):
    boss = signup(stack)
    kept = create_user(stack, boss, ["sales"])
    gone = create_user(stack, boss, ["sales"])
    assert stack.delete(f"/v1/users/{gone['id']}", headers=boss.headers).status_code == 204
    r = stack.get("/v1/users", params={"active": "false"}, headers=boss.headers)
    assert r.status_code == 200, r.text
    assert [u["id"] for u in r.json()["items"]] == [gone["id"]]
    r = stack.get("/v1/users", params={"active": "true"}, headers=boss.headers)
    assert {u["id"] for u in r.json()["items"]} == {boss.user_id, kept["id"]}
    r = stack.get("/v1/users", params={"email": kept["email"].upper()}, headers=boss.headers)
    assert [u["id"] for u in r.json()["items"]] == [kept["id"]]
    check_problem(stack.get("/v1/users", params={"active": "maybe"}, headers=boss.headers), 422,
                  "validation-failed")


def test_deactivating_by_patch_or_delete_is_one_event_named_so(stack):
    boss = signup(stack)
    a, b = create_user(stack, boss, ["sales"]), create_user(stack, boss, ["sales"])
    assert stack.patch(f"/v1/users/{a['id']}", json={"active": False}, headers=boss.headers).status_code == 200
    assert stack.delete(f"/v1/users/{b['id']}", headers=boss.headers).status_code == 204
    audit = stack.get("/v1/audit", params={"action": "user.deactivated"}, headers=boss.headers).json()
    assert {e["target"]["id"] for e in audit["items"]} == {a["id"], b["id"]}, audit


def test_the_api_description_keeps_the_password_write_only(stack):
    doc = stack.get("/v1/openapi.json").json()
    schemas = doc["components"]["schemas"]
    record = [s for n, s in schemas.items() if n.lower() == "user"]
    assert record and "password" not in record[0]["properties"], list(schemas)
    create = doc["paths"]["/v1/users"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    while "$ref" in create:
        create = schemas[create["$ref"].rsplit("/", 1)[1]]
    assert create["properties"]["password"]["writeOnly"] is True
    assert {"email", "name", "roles", "password"} <= set(create["required"])
    delete = doc["paths"]["/v1/users/{id}"]["delete"]
    assert "Deactivate" in delete["summary"], delete
