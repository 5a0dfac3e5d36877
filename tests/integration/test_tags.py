"""Tags: CRUD, validation, conflicts, optimistic concurrency, pagination,
idempotency and tenant isolation.  Effects are checked in MongoDB directly."""

import datetime
import re
import time
import uuid

import pytest
from bson import ObjectId

HEX24 = re.compile(r"^[0-9a-f]{24}$")
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TAG_FIELDS = {"id", "name", "color", "created_at", "updated_at", "version"}


def unique(prefix="tag"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def media_type(resp):
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower()


def assert_tag(tag, name=None, color=None, version=None):
    assert isinstance(tag, dict), tag
    assert TAG_FIELDS <= set(tag), f"tag lacks {TAG_FIELDS - set(tag)}: {tag}"
    assert isinstance(tag["id"], str) and HEX24.match(tag["id"]), tag["id"]
    for f in ("created_at", "updated_at"):
        assert isinstance(tag[f], str) and RFC3339_MS.match(tag[f]), f"{f}={tag[f]!r} is not RFC3339 UTC with ms"
    assert parse_ts(tag["updated_at"]) >= parse_ts(tag["created_at"])
    assert isinstance(tag["version"], int) and not isinstance(tag["version"], bool)
    assert tag["color"] is None or isinstance(tag["color"], str)
    if name is not None:
        assert tag["name"] == name
    if color is not None:
        assert tag["color"] == color
    if version is not None:
        assert tag["version"] == version
    return tag


def create(stack, p, name=None, color=None, headers=None, **extra):
    body = {"name": name if name is not None else unique()}
    if color is not None:
        body["color"] = color
    body.update(extra)
    h = dict(p.headers)
    h.update(headers or {})
    return stack.post("/v1/tags", json=body, headers=h)


def create_ok(stack, p, name=None, color=None):
    r = create(stack, p, name=name, color=color)
    assert r.status_code == 201, r.text
    return r.json()


def doc_of(stack, tag_id):
    return stack.mongo.tags.find_one({"_id": ObjectId(tag_id)})


def tenant_count(stack, p):
    return stack.mongo.tags.count_documents({"tenant_id": p.tenant_oid})


# ---------------------------------------------------------------------------
# create / get / list / patch / delete
# ---------------------------------------------------------------------------

def test_create_returns_201_with_tag_and_location(stack, principal):
    name = unique("create")
    before = datetime.datetime.now(datetime.timezone.utc)
    r = create(stack, principal, name=name, color="#a1b2c3")
    assert r.status_code == 201, r.text
    assert media_type(r) == "application/json"
    tag = assert_tag(r.json(), name=name, color="#a1b2c3", version=1)
    created = parse_ts(tag["created_at"])
    assert abs((created - before).total_seconds()) < 300, f"created_at {tag['created_at']} far from now"
    loc = r.headers.get("Location")
    assert loc and loc.endswith(f"/v1/tags/{tag['id']}"), loc


def test_create_stores_tenant_scoped_document(stack, principal):
    tag = create_ok(stack, principal, name=unique("stored"), color="#00ff00")
    doc = doc_of(stack, tag["id"])
    assert doc is not None
    assert doc["tenant_id"] == principal.tenant_oid
    assert doc["name"] == tag["name"]
    assert doc["color"] == "#00ff00"
    assert doc["version"] == 1
    assert isinstance(doc["created_at"], datetime.datetime)
    assert isinstance(doc["updated_at"], datetime.datetime)
    api_created = parse_ts(tag["created_at"]).replace(tzinfo=None)
    assert abs((doc["created_at"] - api_created).total_seconds()) < 0.002


def test_create_without_color_has_null_color(stack, principal):
    tag = create_ok(stack, principal)
    assert tag["color"] is None


def test_location_header_resolves_to_the_tag(stack, principal):
    r = create(stack, principal)
    assert r.status_code == 201
    loc = r.headers["Location"]
    path = loc[loc.index("/v1/"):]
    got = stack.get(path, headers=principal.headers)
    assert got.status_code == 200
    assert got.json()["id"] == r.json()["id"]


def test_get_returns_tag_with_etag(stack, principal):
    tag = create_ok(stack, principal, color="#123abc")
    r = stack.get(f"/v1/tags/{tag['id']}", headers=principal.headers)
    assert r.status_code == 200, r.text
    assert media_type(r) == "application/json"
    assert r.headers.get("ETag") == '"1"'
    assert r.json() == tag


def test_list_returns_items_and_null_cursor(stack, principal):
    a = create_ok(stack, principal)
    b = create_ok(stack, principal)
    r = stack.get("/v1/tags", headers=principal.headers)
    assert r.status_code == 200, r.text
    assert media_type(r) == "application/json"
    body = r.json()
    assert set(body) >= {"items", "next_cursor"}
    assert body["next_cursor"] is None
    for t in body["items"]:
        assert_tag(t)
    assert sorted(t["id"] for t in body["items"]) == sorted([a["id"], b["id"]])


def test_list_filters_by_exact_name(stack, principal):
    wanted = create_ok(stack, principal, name="exact-match")
    create_ok(stack, principal, name="exact-match-not")
    create_ok(stack, principal, name="exact")
    r = stack.get("/v1/tags", params={"name": "exact-match"}, headers=principal.headers)
    assert r.status_code == 200, r.text
    assert [t["id"] for t in r.json()["items"]] == [wanted["id"]]


def test_patch_increments_version_and_etag(stack, principal):
    tag = create_ok(stack, principal, color="#111111")
    time.sleep(0.01)
    r = stack.patch(f"/v1/tags/{tag['id']}", json={"color": "#222222"}, headers=principal.headers)
    assert r.status_code == 200, r.text
    patched = assert_tag(r.json(), name=tag["name"], color="#222222", version=2)
    assert patched["id"] == tag["id"]
    assert patched["created_at"] == tag["created_at"]
    assert parse_ts(patched["updated_at"]) > parse_ts(tag["updated_at"])
    got = stack.get(f"/v1/tags/{tag['id']}", headers=principal.headers)
    assert got.headers.get("ETag") == '"2"'
    assert got.json() == patched
    doc = doc_of(stack, tag["id"])
    assert doc["version"] == 2 and doc["color"] == "#222222"


def test_patch_name_then_color_reaches_version_3(stack, principal):
    tag = create_ok(stack, principal)
    new_name = unique("renamed")
    r1 = stack.patch(f"/v1/tags/{tag['id']}", json={"name": new_name}, headers=principal.headers)
    assert r1.status_code == 200, r1.text
    assert_tag(r1.json(), name=new_name, version=2)
    r2 = stack.patch(f"/v1/tags/{tag['id']}", json={"color": "#abcdef"}, headers=principal.headers)
    assert r2.status_code == 200, r2.text
    assert_tag(r2.json(), name=new_name, color="#abcdef", version=3)
    assert stack.get(f"/v1/tags/{tag['id']}", headers=principal.headers).headers.get("ETag") == '"3"'


def test_patch_with_matching_if_match_succeeds(stack, principal):
    tag = create_ok(stack, principal)
    h = dict(principal.headers, **{"If-Match": '"1"'})
    r = stack.patch(f"/v1/tags/{tag['id']}", json={"color": "#0a0b0c"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2


def test_patch_with_stale_if_match_is_412_and_changes_nothing(stack, principal, problem):
    tag = create_ok(stack, principal, color="#010101")
    r = stack.patch(f"/v1/tags/{tag['id']}", json={"color": "#020202"}, headers=principal.headers)
    assert r.status_code == 200, r.text
    before = doc_of(stack, tag["id"])
    h = dict(principal.headers, **{"If-Match": '"1"'})
    stale = stack.patch(f"/v1/tags/{tag['id']}", json={"name": "should-not-stick", "color": "#030303"}, headers=h)
    problem(stale, 412, "version-mismatch")
    after = doc_of(stack, tag["id"])
    assert after == before


def test_delete_returns_204_and_tag_is_gone(stack, principal, problem):
    tag = create_ok(stack, principal)
    r = stack.delete(f"/v1/tags/{tag['id']}", headers=principal.headers)
    assert r.status_code == 204, r.text
    assert r.content == b""
    problem(stack.get(f"/v1/tags/{tag['id']}", headers=principal.headers), 404, "not-found")
    listed = stack.get("/v1/tags", headers=principal.headers).json()
    assert tag["id"] not in [t["id"] for t in listed["items"]]
    problem(stack.delete(f"/v1/tags/{tag['id']}", headers=principal.headers), 404, "not-found")


def test_delete_with_matching_if_match_is_204(stack, principal):
    tag = create_ok(stack, principal)
    h = dict(principal.headers, **{"If-Match": '"1"'})
    r = stack.delete(f"/v1/tags/{tag['id']}", headers=h)
    assert r.status_code == 204, r.text


def test_delete_with_stale_if_match_is_412_and_keeps_tag(stack, principal, problem):
    tag = create_ok(stack, principal)
    assert stack.patch(f"/v1/tags/{tag['id']}", json={"color": "#999999"},
                       headers=principal.headers).status_code == 200
    before = doc_of(stack, tag["id"])
    h = dict(principal.headers, **{"If-Match": '"1"'})
    r = stack.delete(f"/v1/tags/{tag['id']}", headers=h)
    problem(r, 412, "version-mismatch")
    assert doc_of(stack, tag["id"]) == before
    assert stack.get(f"/v1/tags/{tag['id']}", headers=principal.headers).status_code == 200


@pytest.mark.parametrize("tag_id", ["not-an-id", "0123456789abcdef0123456", "0123456789abcdef012345678",
                                    "0123456789ABCDEF0123456Z", "0123456789abcdef01234567"])
def test_get_unknown_or_malformed_id_is_404(stack, principal, problem, tag_id):
    problem(stack.get(f"/v1/tags/{tag_id}", headers=principal.headers), 404, "not-found")


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_patch_or_delete_unknown_id_is_404(stack, principal, problem, method):
    kw = {"json": {"color": "#000000"}} if method == "PATCH" else {}
    r = stack.request(method, f"/v1/tags/{ObjectId()}", headers=principal.headers, **kw)
    problem(r, 404, "not-found")


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

INVALID_BODIES = [
    ("missing-name", {}, "name"),
    ("empty-name", {"name": ""}, "name"),
    ("name-65-chars", {"name": "n" * 65}, "name"),
    ("name-number", {"name": 123}, "name"),
    ("name-null", {"name": None}, "name"),
    ("name-object", {"name": {"x": 1}}, "name"),
    ("color-word", {"name": "ok-color", "color": "red"}, "color"),
    ("color-5-hex", {"name": "ok-color", "color": "#12345"}, "color"),
    ("color-7-hex", {"name": "ok-color", "color": "#1234567"}, "color"),
    ("color-non-hex", {"name": "ok-color", "color": "#gggggg"}, "color"),
    ("color-no-hash", {"name": "ok-color", "color": "a1b2c3"}, "color"),
    ("color-number", {"name": "ok-color", "color": 123456}, "color"),
    ("unknown-field", {"name": "ok-unknown", "foo": 1}, "foo"),
]


@pytest.mark.parametrize("body,field", [(b, f) for _, b, f in INVALID_BODIES], ids=[i for i, _, _ in INVALID_BODIES])
def test_invalid_tag_is_422_with_field(stack, principal, problem, body, field):
    r = stack.post("/v1/tags", json=body, headers=principal.headers)
    p = problem(r, 422, "validation-failed")
    fields = [e["field"] for e in p.get("errors", [])]
    assert field in fields, f"errors[].field {fields} does not name {field!r}"
    assert tenant_count(stack, principal) == 0


def test_tenant_id_in_body_is_422(stack, principal, problem):
    r = stack.post("/v1/tags", json={"name": unique("tid"), "tenant_id": principal.tenant_id},
                   headers=principal.headers)
    p = problem(r, 422, "validation-failed")
    assert "tenant_id" in [e["field"] for e in p.get("errors", [])]
    assert tenant_count(stack, principal) == 0


def test_name_of_64_chars_is_accepted(stack, principal):
    name = "x" * 64
    tag = create_ok(stack, principal, name=name)
    assert tag["name"] == name


def test_name_of_64_multibyte_chars_is_accepted(stack, principal):
    name = "\u00e9" * 32 + "\u732b" * 32  # 64 characters, 160 bytes of UTF-8
    tag = create_ok(stack, principal, name=name)
    assert tag["name"] == name
    assert doc_of(stack, tag["id"])["name"] == name


def test_patch_with_invalid_name_is_422_and_changes_nothing(stack, principal, problem):
    tag = create_ok(stack, principal)
    before = doc_of(stack, tag["id"])
    r = stack.patch(f"/v1/tags/{tag['id']}", json={"name": "n" * 65}, headers=principal.headers)
    p = problem(r, 422, "validation-failed")
    assert "name" in [e["field"] for e in p.get("errors", [])]
    assert doc_of(stack, tag["id"]) == before


def test_patch_with_bad_color_is_422_and_changes_nothing(stack, principal, problem):
    tag = create_ok(stack, principal, color="#abcdef")
    before = doc_of(stack, tag["id"])
    r = stack.patch(f"/v1/tags/{tag['id']}", json={"color": "blue"}, headers=principal.headers)
    p = problem(r, 422, "validation-failed")
    assert "color" in [e["field"] for e in p.get("errors", [])]
    assert doc_of(stack, tag["id"]) == before


# ---------------------------------------------------------------------------
# conflicts
# ---------------------------------------------------------------------------

def test_duplicate_name_is_409(stack, principal, problem):
    name = unique("dup")
    create_ok(stack, principal, name=name)
    r = create(stack, principal, name=name)
    problem(r, 409, "conflict")
    assert stack.mongo.tags.count_documents({"tenant_id": principal.tenant_oid, "name": name}) == 1


def test_same_name_in_another_tenant_is_allowed(stack):
    a, b = stack.principal(), stack.principal()
    name = unique("shared")
    ta = create_ok(stack, a, name=name)
    tb = create_ok(stack, b, name=name)
    assert ta["id"] != tb["id"]


def test_patch_rename_to_existing_name_is_409_and_changes_nothing(stack, principal, problem):
    first = create_ok(stack, principal, name=unique("first"))
    second = create_ok(stack, principal, name=unique("second"))
    before = doc_of(stack, second["id"])
    r = stack.patch(f"/v1/tags/{second['id']}", json={"name": first["name"]}, headers=principal.headers)
    problem(r, 409, "conflict")
    assert doc_of(stack, second["id"]) == before


# ---------------------------------------------------------------------------
# pagination
# ---------------------------------------------------------------------------

PAGE_NAMES = ["g-tag", "c-tag", "a-tag", "f-tag", "b-tag", "e-tag", "d-tag"]


@pytest.fixture
def seven_tags(stack):
    p = stack.principal()
    made = []
    for name in PAGE_NAMES:
        made.append(create_ok(stack, p, name=name))
        time.sleep(0.01)  # distinct created_at milliseconds
    return p, made


def walk_pages(stack, p, limit, sort=None):
    params = {"limit": limit}
    if sort is not None:
        params["sort"] = sort
    pages = []
    cursor = None
    for _ in range(20):
        q = dict(params)
        if cursor is not None:
            q["cursor"] = cursor
        r = stack.get("/v1/tags", params=q, headers=p.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert isinstance(cursor, str) and cursor, cursor
    pytest.fail("pagination did not end within 20 pages")


@pytest.mark.parametrize("sort", ["name", "-name", "created_at", "-created_at", None])
def test_cursor_pagination_walks_all_tags_once_in_order(stack, seven_tags, sort):
    p, made = seven_tags
    by_creation = [t["id"] for t in made]
    by_name = [t["id"] for t in sorted(made, key=lambda t: t["name"])]
    expected = {
        "name": by_name,
        "-name": list(reversed(by_name)),
        "created_at": by_creation,
        "-created_at": list(reversed(by_creation)),
        None: list(reversed(by_creation)),  # default sort is -created_at
    }[sort]
    pages = walk_pages(stack, p, 3, sort)
    assert [len(pg) for pg in pages] == [3, 3, 1], [len(pg) for pg in pages]
    seen = [t["id"] for pg in pages for t in pg]
    assert len(seen) == len(set(seen)), "duplicate across pages"
    assert seen == expected


def test_limit_equal_to_count_ends_with_null_cursor_or_empty_page(stack, seven_tags):
    p, made = seven_tags
    pages = walk_pages(stack, p, 7, "name")
    seen = [t["id"] for pg in pages for t in pg]
    assert sorted(seen) == sorted(t["id"] for t in made)
    assert len(seen) == 7
    assert all(pages[:1]) and len(pages) <= 2 and (len(pages) == 1 or pages[1] == [])


@pytest.mark.parametrize("limit", ["1", "200"])
def test_limit_bounds_are_accepted(stack, principal, limit):
    create_ok(stack, principal)
    create_ok(stack, principal)
    r = stack.get("/v1/tags", params={"limit": limit}, headers=principal.headers)
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == min(int(limit), 2)


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "eyJ4IjoxfQ", "A" * 4000, "%00", "null"],
                         ids=["garbage", "bangs", "b64-object", "4000-chars", "pct00", "null"])
def test_bad_cursor_is_400(stack, principal, problem, cursor):
    create_ok(stack, principal)
    r = stack.get("/v1/tags", params={"cursor": cursor}, headers=principal.headers)
    problem(r, 400, "malformed-request")


@pytest.mark.parametrize("limit", ["0", "201", "abc", "-1", "1.5", ""])
def test_bad_limit_is_rejected(stack, principal, problem, limit):
    r = stack.get("/v1/tags", params={"limit": limit}, headers=principal.headers)
    problem(r, (400, 422))


@pytest.mark.parametrize("sort", ["color", "tenant_id", "-", "name,created_at", "--name", "NAME"])
def test_bad_sort_is_rejected(stack, principal, problem, sort):
    r = stack.get("/v1/tags", params={"sort": sort}, headers=principal.headers)
    problem(r, (400, 422))


# ---------------------------------------------------------------------------
# idempotency
# ---------------------------------------------------------------------------

def test_idempotent_retry_returns_first_response_and_creates_once(stack, principal):
    key = "idem-" + uuid.uuid4().hex
    name = unique("idem")
    first = create(stack, principal, name=name, color="#123456", headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    again = create(stack, principal, name=name, color="#123456", headers={"Idempotency-Key": key})
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json() == first.json()
    assert stack.mongo.tags.count_documents({"tenant_id": principal.tenant_oid, "name": name}) == 1


def test_idempotency_key_with_different_body_is_422(stack, principal, problem):
    key = "idem-" + uuid.uuid4().hex
    name = unique("idem-a")
    first = create(stack, principal, name=name, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    other = unique("idem-b")
    r = create(stack, principal, name=other, headers={"Idempotency-Key": key})
    problem(r, 422, "idempotency-key-reused")
    assert stack.mongo.tags.count_documents({"name": other}) == 0
    assert tenant_count(stack, principal) == 1


def test_idempotency_keys_are_scoped_to_the_tenant(stack):
    a, b = stack.principal(), stack.principal()
    key = "idem-" + uuid.uuid4().hex
    name = unique("idem-shared")
    ra = create(stack, a, name=name, headers={"Idempotency-Key": key})
    assert ra.status_code == 201, ra.text
    rb = create(stack, b, name=name, headers={"Idempotency-Key": key})
    assert rb.status_code == 201, rb.text
    assert rb.json()["id"] != ra.json()["id"], "tenant B got tenant A's idempotent response"
    doc = doc_of(stack, rb.json()["id"])
    assert doc is not None and doc["tenant_id"] == b.tenant_oid


# ---------------------------------------------------------------------------
# tenant isolation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_other_tenant_cannot_touch_tag(stack, problem, method):
    a, b = stack.principal(), stack.principal()
    tag = create_ok(stack, a, color="#0f0f0f")
    before = doc_of(stack, tag["id"])
    kw = {"json": {"name": "hijacked", "color": "#ffffff"}} if method == "PATCH" else {}
    r = stack.request(method, f"/v1/tags/{tag['id']}", headers=b.headers, **kw)
    problem(r, 404, "not-found")
    assert doc_of(stack, tag["id"]) == before


def test_other_tenant_with_if_match_still_gets_404(stack, problem):
    a, b = stack.principal(), stack.principal()
    tag = create_ok(stack, a)
    h = dict(b.headers, **{"If-Match": '"1"'})
    problem(stack.delete(f"/v1/tags/{tag['id']}", headers=h), 404, "not-found")
    assert doc_of(stack, tag["id"]) is not None


@pytest.mark.parametrize("sort", ["name", "-created_at"])
def test_other_tenant_list_never_shows_tags(stack, sort):
    a, b = stack.principal(), stack.principal()
    names = [create_ok(stack, a)["name"] for _ in range(3)]
    r = stack.get("/v1/tags", params={"sort": sort, "limit": 200}, headers=b.headers)
    assert r.status_code == 200, r.text
    assert r.json()["items"] == []
    for n in names:
        rn = stack.get("/v1/tags", params={"name": n}, headers=b.headers)
        assert rn.status_code == 200 and rn.json()["items"] == []


def test_body_naming_another_tenant_is_rejected_and_creates_nothing(stack, problem):
    a, b = stack.principal(), stack.principal()
    name = unique("smuggle")
    r = stack.post("/v1/tags", json={"name": name, "tenant_id": a.tenant_id}, headers=b.headers)
    p = problem(r, 422, "validation-failed")
    assert "tenant_id" in [e["field"] for e in p.get("errors", [])]
    assert stack.mongo.tags.count_documents({"name": name}) == 0


def test_patch_naming_another_tenant_does_not_move_tag(stack):
    a, b = stack.principal(), stack.principal()
    tag = create_ok(stack, b)
    r = stack.patch(f"/v1/tags/{tag['id']}", json={"tenant_id": a.tenant_id}, headers=b.headers)
    assert r.status_code in (200, 422), r.text
    doc = doc_of(stack, tag["id"])
    assert doc["tenant_id"] == b.tenant_oid
    assert stack.get(f"/v1/tags/{tag['id']}", headers=b.headers).status_code == 200
    assert stack.get(f"/v1/tags/{tag['id']}", headers=a.headers).status_code == 404
