"""Helpers the CRM integration tests share: request headers, expectations
on answers, list walking, a stack whose requests wait out 429s, and a
module's team of users in each role."""

import re
import secrets
import time

import pytest

from conftest import DEFAULT_PASSWORD, check_problem, login, signup

ID_RE = re.compile(r"^[0-9a-f]{24}$")

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

def iso(dt):
    """A datetime as the API writes times (TS_RE)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"

def hdr(who, **extra):
    """Headers of an Account (or a plain header dict), plus extra ones
    (if_match=3 -> If-Match: "3", idem="k" -> Idempotency-Key: k)."""
    h = dict(who.headers) if hasattr(who, "headers") else dict(who)
    if "if_match" in extra:
        h["If-Match"] = f'"{extra.pop("if_match")}"'
    if "idem" in extra:
        h["Idempotency-Key"] = extra.pop("idem")
    h.update(extra)
    return h

def uniq(prefix="x"):
    return f"{prefix} {secrets.token_hex(4)}"

def uniq_email(prefix="user"):
    return f"{prefix}.{secrets.token_hex(5)}@example.com"

def errors_of(body):
    return {e["field"] for e in body.get("errors", [])}

def expect_403(r):
    return check_problem(r, 403, "forbidden")

def expect_422(r, *fields):
    """A 422 problem naming (one of) the fields."""
    body = check_problem(r, 422)
    assert errors_of(body) & set(fields), f"expected a field error on {fields}: {body}"
    return body

def with_fields(base, fields):
    """base updated by fields; a value of ... removes the key."""
    body = dict(base)
    for k, v in fields.items():
        if v is ...:
            body.pop(k, None)
        else:
            body[k] = v
    return body

def created(r, what="record"):
    assert r.status_code == 201, f"creating a {what}: {r.status_code} {r.text[:500]}"
    return r.json()

def get_ok(stack, who, path):
    r = stack.get(path, headers=hdr(who))
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:500]}"
    return r.json()

def patch_ok(stack, who, path, body, **h):
    r = stack.patch(path, json=body, headers=hdr(who, **h))
    assert r.status_code == 200, f"PATCH {path} {body}: {r.status_code} {r.text[:500]}"
    return r.json()

def list_page(stack, who, path, **params):
    r = stack.get(path, headers=hdr(who), params=params)
    assert r.status_code == 200, f"GET {path} {params}: {r.status_code} {r.text[:500]}"
    body = r.json()
    assert set(body) >= {"items", "next_cursor"}, body
    return body

def list_all(stack, who, path, **params):
    """Every item of a list, following next_cursor (limit 200)."""
    items, cursor = [], None
    for _ in range(100):
        p = dict(params, limit=200)
        if cursor:
            p["cursor"] = cursor
        body = list_page(stack, who, path, **p)
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items
    pytest.fail(f"{path}: more than 100 pages")

def walk(stack, who, path, limit, max_pages=20, **params):
    """(items of every page of `limit`, number of pages; fewer than max_pages)."""
    pages, seen, cursor = 0, [], None
    while True:
        p = dict(params, limit=limit)
        if cursor:
            p["cursor"] = cursor
        body = list_page(stack, who, path, **p)
        assert len(body["items"]) <= limit, body
        seen += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            return seen, pages
        assert pages < max_pages, "pagination does not end"

def ids(items):
    return [i["id"] for i in items]

def assert_shape(rec):
    assert ID_RE.match(rec["id"]), rec
    assert TS_RE.match(rec["created_at"]) and TS_RE.match(rec["updated_at"]), rec
    assert isinstance(rec["version"], int), rec
    assert "tenant_id" not in rec and "_id" not in rec, rec
    assert not [k for k in rec if k.startswith("_")], f"internal fields leak: {rec}"

class RetryingStack:
    """The session stack whose HTTP helpers wait and retry when the server
    answers 429: the per-user rate limit (50 requests/s) is not under test
    here, and a test's requests come quicker than that."""

    def __init__(self, stack):
        self._stack = stack

    def __getattr__(self, name):
        return getattr(self._stack, name)

    def request(self, method, path, **kw):
        for _ in range(60):
            r = self._stack.request(method, path, **kw)
            if r.status_code != 429:
                return r
            time.sleep(0.25)
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

@pytest.fixture(scope="module")
def stack(stack):
    return RetryingStack(stack)

class Team:
    """One tenant: its owner and, made on first use, one user per role
    (logins cost an Argon2 hash each: one team per module)."""

    def __init__(self, stack):
        self.stack = stack
        self.owner = signup(stack)
        self.members = {}

    def member(self, name, role=None):
        if name not in self.members:
            email = f"{name}-{secrets.token_hex(5)}@example.com"
            r = self.stack.post("/v1/users", headers=self.owner.headers,
                                json={"email": email, "name": name.title(), "roles": [role or name],
                                      "password": DEFAULT_PASSWORD})
            assert r.status_code == 201, f"creating a {role or name}: {r.status_code} {r.text[:300]}"
            self.members[name] = login(self.stack, self.owner.slug, email)
        return self.members[name]

    @property
    def manager(self):
        return self.member("manager")

    @property
    def sales(self):
        return self.member("sales")

    @property
    def sales2(self):
        return self.member("sales2", "sales")

    @property
    def employee(self):
        return self.member("employee")

    @property
    def warehouse(self):
        return self.member("warehouse")

    @property
    def accountant(self):
        return self.member("accountant")

@pytest.fixture(scope="module")
def team(stack):
    return Team(stack)

@pytest.fixture(scope="module")
def other(stack):
    """The owner of another tenant."""
    return signup(stack)

CLIENTS = "/v1/crm/clients"
LEADS = "/v1/crm/leads"
DEALS = "/v1/crm/deals"
TASKS = "/v1/crm/tasks"
CLAIMS = "/v1/crm/claims"
DEFAULT_STAGES = ["new", "qualified", "proposal", "negotiation", "closing"]

def make_client(stack, who, **fields):
    body = with_fields({"name": uniq("Client"), "kind": "company"}, fields)
    return created(stack.post(CLIENTS, json=body, headers=hdr(who)), "client")

@pytest.fixture(scope="module")
def client(stack, team):
    """A client of the team's owner."""
    return make_client(stack, team.owner)
