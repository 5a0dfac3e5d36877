"""API keys: create (key shown once, only a hash stored), list without
secrets, use within the key's tenant and permissions, revoke; who may create
which keys; tenant isolation of keys.  Effects are checked in MongoDB."""

import hashlib
import re
import secrets
import time

import pytest
from bson import ObjectId

from conftest import check_problem, signup, user_session

KEY_RE = re.compile(r"^trk_([0-9a-f]{24})_(.+)$")
HEX24 = re.compile(r"^[0-9a-f]{24}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
KEY_FIELDS = {"id", "name", "permissions", "prefix", "created_by", "last_used_at", "created_at",
              "updated_at", "version", "key"}
TAG_PERMS = ["system.tags.read", "system.tags.write"]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def post_key(stack, acct_or_headers, permissions, name=None, **extra):
    headers = acct_or_headers if isinstance(acct_or_headers, dict) else acct_or_headers.headers
    body = {"name": name or "key-" + secrets.token_hex(4), "permissions": permissions}
    body.update(extra)
    return stack.post("/v1/api-keys", json=body, headers=headers)


def create_key(stack, acct, permissions, name=None):
    r = post_key(stack, acct, permissions, name)
    assert r.status_code == 201, f"creating an API key failed: {r.status_code} {r.text[:500]}"
    return r.json()


def key_headers(key):
    return {"X-API-Key": key["key"] if isinstance(key, dict) else key}


def keys_in_mongo(stack, tenant_id):
    return list(stack.mongo["api_keys"].find({"tenant_id": ObjectId(tenant_id)}))


def key_doc(stack, key_id):
    return stack.mongo["api_keys"].find_one({"_id": ObjectId(key_id)})


def tag_doc(stack, tag_id):
    return stack.mongo["tags"].find_one({"_id": ObjectId(tag_id)})


def post_tag(stack, headers, name=None):
    return stack.post("/v1/tags", json={"name": name or "tag-" + secrets.token_hex(5)}, headers=headers)


def create_tag(stack, headers, name=None):
    r = post_tag(stack, headers, name)
    assert r.status_code == 201, f"creating a tag failed: {r.status_code} {r.text[:500]}"
    return r.json()


def create_role(stack, acct, permissions):
    name = "role-" + secrets.token_hex(4)
    r = stack.post("/v1/roles", json={"name": name, "permissions": permissions}, headers=acct.headers)
    assert r.status_code == 201, f"creating a role failed: {r.status_code} {r.text[:500]}"
    return name


def all_values(obj):
    """Every key and scalar value in a (nested) document, as strings."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from all_values(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from all_values(v)
    else:
        yield str(obj)


def list_keys(stack, acct):
    r = stack.get("/v1/api-keys", headers=acct.headers, params={"limit": 200})
    assert r.status_code == 200, r.text
    return r.json()


def field_errors(body):
    return [e["field"] for e in body.get("errors", [])]


# ---------------------------------------------------------------------------
# fixtures: tenant A (with a tag key) and tenant B, shared by the module
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def owner(stack):
    return signup(stack)


@pytest.fixture(scope="module")
def other(stack):
    """The owner of tenant B."""
    return signup(stack)


@pytest.fixture(scope="module")
def tag_key(stack, owner):
    """A key of tenant A with system.tags.read + write."""
    return create_key(stack, owner, TAG_PERMS, name="tags-rw")


@pytest.fixture(scope="module")
def b_tag(stack, other):
    return create_tag(stack, other.headers, "b-secret-" + secrets.token_hex(4))


# ---------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------

def test_create_answers_201_with_the_key_and_its_fields(stack, owner):
    r = post_key(stack, owner, ["system.tags.read"], name="partner sync")
    assert r.status_code == 201, r.text
    k = r.json()
    assert KEY_FIELDS <= set(k), f"missing {KEY_FIELDS - set(k)}: {k}"
    assert HEX24.match(k["id"]), k
    assert k["name"] == "partner sync"
    assert k["permissions"] == ["system.tags.read"]
    assert k["created_by"] == owner.user_id
    assert k["last_used_at"] is None
    assert TIMESTAMP.match(k["created_at"]) and TIMESTAMP.match(k["updated_at"]), k
    assert isinstance(k["version"], int) and not isinstance(k["version"], bool)
    m = KEY_RE.match(k["key"])
    assert m, f"key does not look like trk_<24hex>_<secret>: {k['key']!r}"
    assert m.group(1) == k["id"], "the key's id part is not the key's id"
    assert len(m.group(2)) >= 20, "the secret part is too short"


def test_prefix_identifies_the_key_without_revealing_the_secret(stack, owner):
    k = create_key(stack, owner, ["system.tags.read"])
    secret = KEY_RE.match(k["key"]).group(2)
    assert k["key"].startswith(k["prefix"]), k
    assert k["prefix"].startswith("trk_")
    assert secret[:6] not in k["prefix"], "the prefix reveals part of the secret"


def test_each_key_is_different(stack, owner):
    a = create_key(stack, owner, ["system.tags.read"], name="same")
    b = create_key(stack, owner, ["system.tags.read"], name="same")
    assert a["id"] != b["id"]
    assert KEY_RE.match(a["key"]).group(2) != KEY_RE.match(b["key"]).group(2)


def test_stored_document_has_hash_of_secret_and_never_the_key(stack, owner):
    k = create_key(stack, owner, ["system.tags.read"])
    secret = KEY_RE.match(k["key"]).group(2)
    doc = key_doc(stack, k["id"])
    assert doc is not None, "no document in api_keys with the key's id"
    assert doc["tenant_id"] == owner.tenant_oid
    assert doc.get("_hash") == hashlib.sha256(secret.encode()).hexdigest(), doc
    for v in all_values(doc):
        assert secret not in v, f"the secret is stored in api_keys: {doc}"
        assert k["key"] not in v
    # nothing else in the database holds the secret either (e.g. the audit log)
    for name in stack.mongo.list_collection_names():
        if name.startswith("system."):
            continue
        hits = stack.mongo[name].count_documents({"$or": [{"key": k["key"]}, {"secret": secret}]})
        assert hits == 0, f"collection {name} stores the key"


def test_key_is_never_shown_again_in_the_list(stack, owner):
    k = create_key(stack, owner, ["system.tags.read"])
    secret = KEY_RE.match(k["key"]).group(2)
    r = stack.get("/v1/api-keys", headers=owner.headers, params={"limit": 200})
    assert r.status_code == 200, r.text
    assert secret not in r.text, "the list shows the secret"
    body = r.json()
    assert set(body) >= {"items", "next_cursor"}
    mine = [i for i in body["items"] if i["id"] == k["id"]]
    assert len(mine) == 1, "the new key is not listed"
    item = mine[0]
    assert "key" not in item and "_hash" not in item and "hash" not in item, item
    assert item["name"] == k["name"] and item["prefix"] == k["prefix"]
    assert item["permissions"] == ["system.tags.read"]
    doc_hash = key_doc(stack, k["id"])["_hash"]
    assert doc_hash not in r.text, "the list shows the stored hash"


def test_create_with_tenant_id_in_body_is_422_and_stores_nothing(stack, owner, other):
    before = len(keys_in_mongo(stack, owner.tenant_id))
    before_b = len(keys_in_mongo(stack, other.tenant_id))
    r = post_key(stack, owner, ["system.tags.read"], tenant_id=other.tenant_id)
    body = check_problem(r, 422)
    assert "tenant_id" in field_errors(body), body
    assert len(keys_in_mongo(stack, owner.tenant_id)) == before
    assert len(keys_in_mongo(stack, other.tenant_id)) == before_b


@pytest.mark.parametrize("body,field", [
    ({"permissions": ["system.tags.read"]}, "name"),
    ({"name": "", "permissions": ["system.tags.read"]}, "name"),
    ({"name": "x"}, "permissions"),
    ({"name": "x", "permissions": "system.tags.read"}, "permissions"),
    ({"name": "x", "permissions": [42]}, "permissions"),
    ({"name": "x", "permissions": ["system.nothing.read"]}, "permissions"),
    ({"name": "x", "permissions": ["not a permission"]}, "permissions"),
])
def test_create_with_bad_fields_is_422_and_stores_nothing(stack, owner, body, field):
    before = len(keys_in_mongo(stack, owner.tenant_id))
    r = stack.post("/v1/api-keys", json=body, headers=owner.headers)
    problem = check_problem(r, 422)
    assert field in field_errors(problem), problem
    assert len(keys_in_mongo(stack, owner.tenant_id)) == before


def test_own_permission_is_422_and_stores_nothing(stack, owner):
    before = len(keys_in_mongo(stack, owner.tenant_id))
    r = post_key(stack, owner, ["system.tags.read:own"])
    problem = check_problem(r, 422)
    assert "permissions" in field_errors(problem), problem
    assert len(keys_in_mongo(stack, owner.tenant_id)) == before


def test_permission_the_creator_lacks_is_422_and_stores_nothing(stack, owner):
    role = create_role(stack, owner, ["system.api_keys.write", "system.api_keys.read", "system.tags.read"])
    keymaker = user_session(stack, owner, [role])
    before = len(keys_in_mongo(stack, owner.tenant_id))
    for perms in (["system.tags.write"], ["system.tags.read", "system.users.read"], ["system.audit.read"]):
        r = post_key(stack, keymaker, perms)
        problem = check_problem(r, 422)
        assert "permissions" in field_errors(problem), (perms, problem)
    assert len(keys_in_mongo(stack, owner.tenant_id)) == before
    # what the creator holds is fine
    k = create_key(stack, keymaker, ["system.tags.read"])
    assert k["created_by"] == keymaker.user_id


def test_sales_user_cannot_create_keys(stack, owner):
    sales = user_session(stack, owner, ["sales"])
    before = len(keys_in_mongo(stack, owner.tenant_id))
    r = post_key(stack, sales, ["system.tags.read"])
    check_problem(r, 403, "forbidden")
    assert len(keys_in_mongo(stack, owner.tenant_id)) == before
    r = stack.get("/v1/api-keys", headers=sales.headers)
    check_problem(r, 403, "forbidden")


def test_key_cannot_mint_a_key_with_more_than_it_holds(stack, owner):
    maker = create_key(stack, owner, ["system.api_keys.write", "system.tags.read"])
    before = len(keys_in_mongo(stack, owner.tenant_id))
    r = post_key(stack, key_headers(maker), ["system.users.read"])
    problem = check_problem(r, 422)
    assert "permissions" in field_errors(problem), problem
    assert len(keys_in_mongo(stack, owner.tenant_id)) == before


def test_create_without_credentials_is_401(stack):
    r = stack.post("/v1/api-keys", json={"name": "x", "permissions": ["system.tags.read"]})
    check_problem(r, 401)


# ---------------------------------------------------------------------------
# use
# ---------------------------------------------------------------------------

def test_key_can_write_and_read_tags_in_its_tenant(stack, owner, tag_key):
    r = post_tag(stack, key_headers(tag_key))
    assert r.status_code == 201, r.text
    tag = r.json()
    doc = tag_doc(stack, tag["id"])
    assert doc is not None and doc["tenant_id"] == owner.tenant_oid, doc
    r = stack.get(f"/v1/tags/{tag['id']}", headers=key_headers(tag_key))
    assert r.status_code == 200, r.text
    assert r.json()["name"] == tag["name"]
    # the owner sees the key's tag
    r = stack.get(f"/v1/tags/{tag['id']}", headers=owner.headers)
    assert r.status_code == 200, r.text


def test_key_without_a_permission_gets_403_and_changes_nothing(stack, owner):
    ro = create_key(stack, owner, ["system.tags.read"])
    before = stack.mongo["tags"].count_documents({"tenant_id": owner.tenant_oid})
    r = post_tag(stack, key_headers(ro))
    check_problem(r, 403, "forbidden")
    assert stack.mongo["tags"].count_documents({"tenant_id": owner.tenant_oid}) == before
    r = stack.get("/v1/tags", headers=key_headers(ro))
    assert r.status_code == 200, r.text


def test_key_cannot_list_users(stack, tag_key):
    r = stack.get("/v1/users", headers=key_headers(tag_key))
    check_problem(r, 403, "forbidden")


def test_key_cannot_use_me(stack, tag_key):
    r = stack.get("/v1/me", headers=key_headers(tag_key))
    check_problem(r, 403, "forbidden")


@pytest.mark.parametrize("make", [
    lambda k: "garbage",
    lambda k: "",
    lambda k: "trk_",
    lambda k: "trk_" + "0" * 24 + "_" + "A" * 43,
    lambda k: "trk_" + str(ObjectId()) + "_" + KEY_RE.match(k["key"]).group(2),  # other id, right secret
    lambda k: k["key"][:-1] + ("A" if k["key"][-1] != "A" else "B"),            # right id, wrong secret
    lambda k: k["key"] + "x",
    lambda k: k["key"].upper(),
    lambda k: "Bearer " + k["key"],
], ids=["garbage", "empty", "prefix-only", "unknown-id", "other-id", "wrong-secret", "longer",
        "upper", "bearer-prefixed"])
def test_unknown_or_garbage_key_is_401(stack, owner, tag_key, make):
    before = stack.mongo["tags"].count_documents({"tenant_id": owner.tenant_oid})
    r = stack.post("/v1/tags", json={"name": "t-" + secrets.token_hex(4)}, headers={"X-API-Key": make(tag_key)})
    check_problem(r, 401)
    assert stack.mongo["tags"].count_documents({"tenant_id": owner.tenant_oid}) == before


def test_last_used_at_is_set_after_use(stack, owner):
    k = create_key(stack, owner, ["system.tags.read"])
    assert key_doc(stack, k["id"]).get("last_used_at") is None
    t0 = time.time()
    r = stack.get("/v1/tags", headers=key_headers(k))
    assert r.status_code == 200, r.text
    items = [i for i in list_keys(stack, owner)["items"] if i["id"] == k["id"]]
    assert items, "key not listed"
    used = items[0]["last_used_at"]
    assert isinstance(used, str) and TIMESTAMP.match(used), items[0]
    stored = key_doc(stack, k["id"])["last_used_at"]
    assert abs(stored.timestamp() - t0) < 60, stored


# ---------------------------------------------------------------------------
# revoke
# ---------------------------------------------------------------------------

def test_revoked_key_gets_401(stack, owner):
    k = create_key(stack, owner, TAG_PERMS)
    assert stack.get("/v1/tags", headers=key_headers(k)).status_code == 200
    r = stack.delete(f"/v1/api-keys/{k['id']}", headers=owner.headers)
    assert r.status_code == 204, r.text
    assert r.content == b""
    before = stack.mongo["tags"].count_documents({"tenant_id": owner.tenant_oid})
    check_problem(stack.get("/v1/tags", headers=key_headers(k)), 401)
    check_problem(post_tag(stack, key_headers(k)), 401)
    assert stack.mongo["tags"].count_documents({"tenant_id": owner.tenant_oid}) == before
    assert k["id"] not in [i["id"] for i in list_keys(stack, owner)["items"]]


def test_revoking_twice_is_404(stack, owner):
    k = create_key(stack, owner, ["system.tags.read"])
    assert stack.delete(f"/v1/api-keys/{k['id']}", headers=owner.headers).status_code == 204
    check_problem(stack.delete(f"/v1/api-keys/{k['id']}", headers=owner.headers), 404)


@pytest.mark.parametrize("bad_id", ["nope", "0" * 24, "zz" * 12, "0" * 25])
def test_revoking_unknown_id_is_404(stack, owner, bad_id):
    before = len(keys_in_mongo(stack, owner.tenant_id))
    check_problem(stack.delete(f"/v1/api-keys/{bad_id}", headers=owner.headers), 404)
    assert len(keys_in_mongo(stack, owner.tenant_id)) == before


def test_revoking_one_key_leaves_the_others_working(stack, owner):
    a = create_key(stack, owner, ["system.tags.read"])
    b = create_key(stack, owner, ["system.tags.read"])
    assert stack.delete(f"/v1/api-keys/{a['id']}", headers=owner.headers).status_code == 204
    check_problem(stack.get("/v1/tags", headers=key_headers(a)), 401)
    assert stack.get("/v1/tags", headers=key_headers(b)).status_code == 200


def test_sales_user_cannot_revoke_a_key(stack, owner):
    k = create_key(stack, owner, ["system.tags.read"])
    sales = user_session(stack, owner, ["sales"])
    before = key_doc(stack, k["id"])
    check_problem(stack.delete(f"/v1/api-keys/{k['id']}", headers=sales.headers), 403, "forbidden")
    assert key_doc(stack, k["id"]) == before
    assert stack.get("/v1/tags", headers=key_headers(k)).status_code == 200


# ---------------------------------------------------------------------------
# tenant isolation
# ---------------------------------------------------------------------------

def test_key_of_a_gets_404_for_tenant_b_tag(stack, tag_key, b_tag):
    before = tag_doc(stack, b_tag["id"])
    check_problem(stack.get(f"/v1/tags/{b_tag['id']}", headers=key_headers(tag_key)), 404)
    check_problem(stack.patch(f"/v1/tags/{b_tag['id']}", json={"name": "hijacked"},
                              headers=key_headers(tag_key)), 404)
    check_problem(stack.delete(f"/v1/tags/{b_tag['id']}", headers=key_headers(tag_key)), 404)
    assert tag_doc(stack, b_tag["id"]) == before


def test_key_of_a_lists_only_tenant_a_tags(stack, owner, tag_key, b_tag):
    a_tag = create_tag(stack, owner.headers)
    r = stack.get("/v1/tags", headers=key_headers(tag_key), params={"limit": 200})
    assert r.status_code == 200, r.text
    ids = [t["id"] for t in r.json()["items"]]
    assert a_tag["id"] in ids
    assert b_tag["id"] not in ids
    assert b_tag["name"] not in r.text
    r = stack.get("/v1/tags", headers=key_headers(tag_key), params={"name": b_tag["name"]})
    assert r.status_code == 200 and r.json()["items"] == [], r.text


def test_key_created_in_a_lands_in_a_even_if_named_like_b(stack, owner, tag_key, b_tag):
    """A's key creating a tag with B's tag name creates it in A (no conflict with B)."""
    r = post_tag(stack, key_headers(tag_key), b_tag["name"])
    assert r.status_code == 201, r.text
    assert tag_doc(stack, r.json()["id"])["tenant_id"] == owner.tenant_oid


def test_key_lists_only_its_tenant_keys(stack, owner, other):
    b_key = create_key(stack, other, ["system.tags.read"])
    lister = create_key(stack, owner, ["system.api_keys.read"])
    r = stack.get("/v1/api-keys", headers=key_headers(lister), params={"limit": 200})
    assert r.status_code == 200, r.text
    ids = [i["id"] for i in r.json()["items"]]
    assert lister["id"] in ids
    assert b_key["id"] not in ids
    # and B's owner does not see A's keys
    ids_b = [i["id"] for i in list_keys(stack, other)["items"]]
    assert lister["id"] not in ids_b and b_key["id"] in ids_b


def test_tenant_b_cannot_revoke_tenant_a_key(stack, owner, other, tag_key):
    before = key_doc(stack, tag_key["id"])
    check_problem(stack.delete(f"/v1/api-keys/{tag_key['id']}", headers=other.headers), 404)
    assert key_doc(stack, tag_key["id"]) == before
    assert stack.get("/v1/tags", headers=key_headers(tag_key)).status_code == 200



# ---------------------------------------------------------------------------
# a key is not an owner
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def users_key(stack, owner):
    """A key of tenant A with every users permission (made by the owner)."""
    return create_key(stack, owner, ["system.users.read", "system.users.write"])


def test_key_cannot_grant_the_owner_role(stack, owner, users_key):
    before = stack.mongo["users"].count_documents({"tenant_id": owner.tenant_oid})
    r = stack.post("/v1/users", headers=key_headers(users_key), json={
        "email": "k-" + secrets.token_hex(4) + "@example.com", "name": "Escalated", "roles": ["owner"],
        "password": "correct-horse-battery-staple"})
    check_problem(r, 403, "forbidden")
    assert stack.mongo["users"].count_documents({"tenant_id": owner.tenant_oid}) == before


def test_key_cannot_change_or_deactivate_an_owner(stack, owner, users_key):
    before = stack.mongo["users"].find_one({"_id": owner.user_oid})
    check_problem(stack.patch(f"/v1/users/{owner.user_id}", json={"roles": ["employee"]},
                              headers=key_headers(users_key)), 403, "forbidden")
    check_problem(stack.delete(f"/v1/users/{owner.user_id}", headers=key_headers(users_key)), 403, "forbidden")
    assert stack.mongo["users"].find_one({"_id": owner.user_oid}) == before
    assert stack.get("/v1/me", headers=owner.headers).status_code == 200


def test_key_can_manage_ordinary_users(stack, owner, users_key):
    r = stack.post("/v1/users", headers=key_headers(users_key), json={
        "email": "k-" + secrets.token_hex(4) + "@example.com", "name": "By Key", "roles": ["sales"],
        "password": "correct-horse-battery-staple"})
    assert r.status_code == 201, r.text
    doc = stack.mongo["users"].find_one({"_id": ObjectId(r.json()["id"])})
    assert doc["tenant_id"] == owner.tenant_oid and doc["roles"] == ["sales"]


@pytest.mark.parametrize("name", ["n" * 101], ids=["101-chars"])
def test_overlong_name_is_422(stack, owner, name):
    before = len(keys_in_mongo(stack, owner.tenant_id))
    problem = check_problem(post_key(stack, owner, ["system.tags.read"], name=name), 422)
    assert "name" in field_errors(problem)
    assert len(keys_in_mongo(stack, owner.tenant_id)) == before


def test_key_list_rejects_bad_sort_and_limit(stack, owner):
    check_problem(stack.get("/v1/api-keys", headers=owner.headers, params={"sort": "_hash"}), (400, 422))
    check_problem(stack.get("/v1/api-keys", headers=owner.headers, params={"limit": 0}), (400, 422))
    check_problem(stack.get("/v1/api-keys", headers=owner.headers, params={"cursor": "garbage!"}), (400, 422))
