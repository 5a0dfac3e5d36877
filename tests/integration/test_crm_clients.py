"""CRM clients (/v1/crm/clients) with their counterparties and contacts,
client groups (/v1/crm/groups) and the client timeline: CRUD with
ETag/If-Match, filters, sorts and cursor pages, Idempotency-Key,
validation (validity periods, references, custom fields), nested paths,
":own" permissions (sales read every client but write their own), and other
tenants' ids.  Black-box: the real server of the session stack, looked at
through the API only."""

import re
import secrets
import time

import pytest
import requests

from conftest import DEFAULT_PASSWORD, check_problem, login, signup
from crm_support import (  # noqa: F401 (fixtures among them)
    ID_RE, TS_RE, hdr, uniq, expect_403, expect_422, with_fields, created, get_ok, patch_ok,
    list_all, walk, ids, assert_shape, RetryingStack, stack, Team, team, other, CLIENTS, client)


# ---------------------------------------------------------------------------
# helpers (the shared ones are in crm_support.py)
# ---------------------------------------------------------------------------


GROUPS = "/v1/crm/groups"


def post_client(stack, who, headers=None, **fields):
    body = with_fields({"name": uniq("Client"), "kind": "company"}, fields)
    return stack.post(CLIENTS, json=body, headers=headers or hdr(who))


def make_client(stack, who, **fields):
    return created(post_client(stack, who, **fields), "client")


def cpath(client_id, *rest):
    return "/".join([CLIENTS, client_id] + list(rest))


def get_client(stack, who, client_id):
    return get_ok(stack, who, cpath(client_id))


def post_sub(stack, who, parent_id, kind, **fields):
    base = ({"legal_name": uniq("Legal GmbH")} if kind == "counterparties" else {"name": uniq("Contact")})
    return stack.post(cpath(parent_id, kind), json=with_fields(base, fields), headers=hdr(who))


def make_sub(stack, who, parent_id, kind, **fields):
    return created(post_sub(stack, who, parent_id, kind, **fields), kind[:-1])


def make_group(stack, who, rule, name=None):
    r = stack.post(GROUPS, json={"name": name or uniq("Group"), "rule": rule}, headers=hdr(who))
    g = created(r, "group")
    assert r.headers.get("Location") == f"{GROUPS}/{g['id']}", r.headers
    return g


# ---------------------------------------------------------------------------
# clients
# ---------------------------------------------------------------------------

def test_create_client_is_201_with_location_and_defaults(stack, team):
    r = post_client(stack, team.owner, name="Initech", kind="company")
    c = created(r, "client")
    assert_shape(c)
    assert r.headers.get("Location") == cpath(c["id"]), r.headers
    assert c["name"] == "Initech" and c["kind"] == "company" and c["group_ids"] == [], c
    assert c["owner_id"] == team.owner.user_id and c["version"] == 1, c
    got = stack.get(r.headers["Location"], headers=team.owner.headers)
    assert got.status_code == 200 and got.json() == c and got.headers.get("ETag") == '"1"'


def test_patch_and_delete_client_with_if_match(stack, team):
    c = make_client(stack, team.owner)
    changed = patch_ok(stack, team.owner, cpath(c["id"]), {"name": "Renamed", "kind": "person"}, if_match=1)
    assert (changed["name"], changed["kind"], changed["version"]) == ("Renamed", "person", 2), changed
    check_problem(stack.patch(cpath(c["id"]), json={"name": "Stale"}, headers=hdr(team.owner, if_match=1)), 412)
    check_problem(stack.delete(cpath(c["id"]), headers=hdr(team.owner, if_match=1)), 412)
    assert get_client(stack, team.owner, c["id"]) == changed
    assert stack.delete(cpath(c["id"]), headers=hdr(team.owner, if_match=2)).status_code == 204
    check_problem(stack.get(cpath(c["id"]), headers=team.owner.headers), 404)
    check_problem(stack.delete(cpath(c["id"]), headers=team.owner.headers), 404)


@pytest.mark.parametrize("referrer", ["contacts", "counterparties", "deals", "claims", "interactions"])
def test_a_client_with_history_cannot_be_deleted(stack, team, referrer):
    c = make_client(stack, team.owner)
    if referrer in ("contacts", "counterparties"):
        make_sub(stack, team.owner, c["id"], referrer)
    else:
        body = {"deals": {"client_id": c["id"], "title": "Deal"},
                "claims": {"client_id": c["id"], "subject": "Broken"},
                "interactions": {"client_id": c["id"], "kind": "call_in", "at": "2026-01-01T10:00:00Z",
                                 "summary": "Called"}}[referrer]
        created(stack.post(f"/v1/crm/{referrer}", json=body, headers=team.owner.headers), referrer)
    check_problem(stack.delete(cpath(c["id"]), headers=team.owner.headers), 409)
    assert get_client(stack, team.owner, c["id"]) == c


@pytest.fixture(scope="module")
def five(stack):
    """A tenant of its own with five clients."""
    owner = signup(stack)
    spec = [("Echo", "company"), ("Alpha", "person"), ("Delta", "company"), ("Bravo", "person"), ("Charlie", "company")]
    return owner, [make_client(stack, owner, name=n, kind=k) for n, k in spec]


def test_pages_of_two_give_every_client_once_newest_first(stack, five):
    owner, clients = five
    seen, pages = walk(stack, owner, CLIENTS, 2)
    assert ids(seen) == [c["id"] for c in reversed(clients)]
    assert pages in (3, 4)


def test_pages_of_two_sorted_by_name(stack, five):
    owner, clients = five
    seen, _ = walk(stack, owner, CLIENTS, 2, sort="name")
    assert [c["name"] for c in seen] == ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]


def test_list_filters_kind_and_owner(stack, five):
    owner, clients = five
    persons = list_all(stack, owner, CLIENTS, kind="person", sort="name")
    assert [c["name"] for c in persons] == ["Alpha", "Bravo"]
    assert len(list_all(stack, owner, CLIENTS, owner_id=owner.user_id)) == 5
    assert list_all(stack, owner, CLIENTS, owner_id="0" * 24) == []
    expect_422(stack.get(CLIENTS, params={"kind": "robot"}, headers=owner.headers), "kind")


def test_same_idempotency_key_gives_the_same_client_once(stack):
    owner = signup(stack)
    key = "client-" + secrets.token_hex(8)
    body = {"name": "Once Ltd", "kind": "company"}
    first = stack.post(CLIENTS, json=body, headers=hdr(owner, idem=key))
    again = stack.post(CLIENTS, json=body, headers=hdr(owner, idem=key))
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json() and again.headers.get("Location") == first.headers.get("Location")
    check_problem(stack.post(CLIENTS, json={"name": "Twice Ltd", "kind": "company"}, headers=hdr(owner, idem=key)),
                  422, "idempotency-key-reused")
    assert ids(list_all(stack, owner, CLIENTS)) == [first.json()["id"]]


BAD_CLIENTS = [
    ({"name": ...}, "name"),
    ({"name": 5}, "name"),
    ({"kind": ...}, "kind"),
    ({"kind": "government"}, "kind"),
    ({"group_ids": ["0" * 24]}, "group_ids"),
    ({"group_ids": "all"}, "group_ids"),
    ({"group_ids": ["nope"]}, "group_ids"),
    ({"owner_id": "0" * 24}, "owner_id"),
    ({"lead_id": "0" * 24}, "lead_id"),
    ({"custom": {"industry": "retail"}}, "custom.industry"),
    ({"website": "https://example.com"}, "website"),
]


@pytest.mark.parametrize("change,field", BAD_CLIENTS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_CLIENTS)])
def test_invalid_client_is_422_and_creates_nothing(stack, team, change, field):
    name = uniq("Invalid")
    change = dict(change)
    change.setdefault("name", name)
    expect_422(post_client(stack, team.owner, **change), field)
    assert [c for c in list_all(stack, team.owner, CLIENTS) if c["name"] == name] == []


def test_client_custom_fields_are_checked(stack):
    owner = signup(stack)
    created(stack.post("/v1/crm/fields", headers=owner.headers, json={
        "entity": "client", "key": "industry", "label": "Industry", "type": "enum",
        "options": ["retail", "energy"], "required": True}), "custom field")
    expect_422(post_client(stack, owner), "custom.industry")
    expect_422(post_client(stack, owner, custom={"industry": "mining"}), "custom.industry")
    expect_422(post_client(stack, owner, custom={"industry": "retail", "size": 3}), "custom.size")
    assert list_all(stack, owner, CLIENTS) == []
    c = make_client(stack, owner, custom={"industry": "energy"})
    assert c["custom"] == {"industry": "energy"}, c
    # the lead entity's fields are not the client's
    created(stack.post("/v1/crm/fields", headers=owner.headers, json={
        "entity": "lead", "key": "budget", "label": "Budget", "type": "number"}), "custom field")
    expect_422(post_client(stack, owner, custom={"industry": "energy", "budget": 5}), "custom.budget")


# ---------------------------------------------------------------------------
# counterparties
# ---------------------------------------------------------------------------

def test_counterparty_create_get_list(stack, team, client):
    r = post_sub(stack, team.owner, client["id"], "counterparties", legal_name="Initech Holding AG",
                 tax_id="DE123456789", address="Hauptstr. 1\n10115 Berlin",
                 active_from="2020-01-01T00:00:00Z", active_to="2030-01-01T00:00:00Z")
    cp = created(r, "counterparty")
    assert_shape(cp)
    assert cp["client_id"] == client["id"] and cp["legal_name"] == "Initech Holding AG", cp
    assert cp["address"] == "Hauptstr. 1\n10115 Berlin" and cp["tax_id"] == "DE123456789", cp
    assert (cp["active_from"], cp["active_to"]) == ("2020-01-01T00:00:00.000Z", "2030-01-01T00:00:00.000Z"), cp
    got = stack.get(cpath(client["id"], "counterparties", cp["id"]), headers=team.owner.headers)
    assert got.status_code == 200 and got.json() == cp and got.headers.get("ETag") == '"1"'
    assert cp["id"] in ids(list_all(stack, team.owner, cpath(client["id"], "counterparties")))


@pytest.mark.parametrize("kind", ["counterparties", "contacts"])
def test_location_of_a_nested_record_names_where_it_can_be_read(stack, team, client, kind):
    r = post_sub(stack, team.owner, client["id"], kind)
    rec = created(r, kind)
    assert r.headers.get("Location") == cpath(client["id"], kind, rec["id"]), r.headers
    got = stack.get(r.headers["Location"], headers=team.owner.headers)
    assert got.status_code == 200 and got.json() == rec, f"GET {r.headers['Location']}: {got.status_code} {got.text[:300]}"


def test_counterparties_list_only_the_clients_own_sorted_by_legal_name(stack, team):
    a, b = make_client(stack, team.owner), make_client(stack, team.owner)
    for n in ["Zeta AG", "Alpha SA", "Mu Ltd"]:
        make_sub(stack, team.owner, a["id"], "counterparties", legal_name=n)
    theirs = make_sub(stack, team.owner, b["id"], "counterparties")
    seen = list_all(stack, team.owner, cpath(a["id"], "counterparties"))
    assert [c["legal_name"] for c in seen] == ["Alpha SA", "Mu Ltd", "Zeta AG"], seen
    assert theirs["id"] not in ids(seen)
    seen2, _ = walk(stack, team.owner, cpath(a["id"], "counterparties"), 2)
    assert [c["legal_name"] for c in seen2] == ["Alpha SA", "Mu Ltd", "Zeta AG"]


@pytest.mark.parametrize("fields,field", [
    ({"active_from": "2025-06-01T00:00:00Z", "active_to": "2025-01-01T00:00:00Z"}, "active_to"),
    ({"active_from": "2025-06-01T00:00:00Z", "active_to": "2025-06-01T00:00:00Z"}, "active_to"),
    ({"active_from": "June 2025"}, "active_from"),
    ({"active_to": "2025-06-31T00:00:00Z"}, "active_to"),
    ({"legal_name": ...}, "legal_name"),
    ({"legal_name": ""}, "legal_name"),
    ({"tax_id": 123}, "tax_id"),
    ({"client_id": "0" * 24}, "client_id"),
    ({"iban": "DE00"}, "iban"),
])
def test_invalid_counterparty_is_422_and_creates_nothing(stack, team, client, fields, field):
    before = ids(list_all(stack, team.owner, cpath(client["id"], "counterparties")))
    expect_422(post_sub(stack, team.owner, client["id"], "counterparties", **fields), field)
    assert ids(list_all(stack, team.owner, cpath(client["id"], "counterparties"))) == before


def test_patch_breaking_the_validity_period_is_422_and_changes_nothing(stack, team, client):
    cp = make_sub(stack, team.owner, client["id"], "counterparties",
                  active_from="2024-01-01T00:00:00Z", active_to="2025-01-01T00:00:00Z")
    path = cpath(client["id"], "counterparties", cp["id"])
    expect_422(stack.patch(path, json={"active_to": "2023-12-31T00:00:00Z"}, headers=team.owner.headers), "active_to")
    expect_422(stack.patch(path, json={"active_from": "2025-02-01T00:00:00Z"}, headers=team.owner.headers), "active_to")
    assert get_ok(stack, team.owner, path) == cp
    ok = patch_ok(stack, team.owner, path, {"active_to": None, "tax_id": "FR999"}, if_match=1)
    assert ok.get("active_to") is None and ok["tax_id"] == "FR999" and ok["version"] == 2, ok
    check_problem(stack.patch(path, json={"tax_id": "Stale"}, headers=hdr(team.owner, if_match=1)), 412)
    check_problem(stack.delete(path, headers=hdr(team.owner, if_match=1)), 412)
    assert stack.delete(path, headers=team.owner.headers).status_code == 204
    check_problem(stack.get(path, headers=team.owner.headers), 404)


# ---------------------------------------------------------------------------
# contacts
# ---------------------------------------------------------------------------

def test_contact_create_get_patch_delete(stack, team, client):
    ct = make_sub(stack, team.owner, client["id"], "contacts", name="Peter Gibbons",
                  email="Peter.Gibbons@Initech.example", phone="+1 555 0100", position="Engineer")
    assert_shape(ct)
    assert ct["client_id"] == client["id"] and ct["email"] == "peter.gibbons@initech.example", ct
    path = cpath(client["id"], "contacts", ct["id"])
    got = stack.get(path, headers=team.owner.headers)
    assert got.status_code == 200 and got.json() == ct and got.headers.get("ETag") == '"1"'
    changed = patch_ok(stack, team.owner, path, {"position": "Manager", "phone": None}, if_match=1)
    assert changed["position"] == "Manager" and changed.get("phone") is None and changed["version"] == 2
    check_problem(stack.patch(path, json={"name": "x"}, headers=hdr(team.owner, if_match=1)), 412)
    assert ct["id"] in ids(list_all(stack, team.owner, cpath(client["id"], "contacts")))
    assert stack.delete(path, headers=team.owner.headers).status_code == 204
    check_problem(stack.get(path, headers=team.owner.headers), 404)
    assert ct["id"] not in ids(list_all(stack, team.owner, cpath(client["id"], "contacts")))


def test_contacts_list_sorted_by_name_in_pages(stack, team):
    c = make_client(stack, team.owner)
    for n in ["Eve", "Bob", "Dan", "Alice", "Carol"]:
        make_sub(stack, team.owner, c["id"], "contacts", name=n)
    seen, pages = walk(stack, team.owner, cpath(c["id"], "contacts"), 2)
    assert [x["name"] for x in seen] == ["Alice", "Bob", "Carol", "Dan", "Eve"] and pages in (3, 4)


@pytest.mark.parametrize("fields,field", [({"name": ...}, "name"), ({"email": "nobody"}, "email"),
                                          ({"phone": "12"}, "phone"), ({"client_id": "0" * 24}, "client_id"),
                                          ({"birthday": "2000-01-01"}, "birthday")])
def test_invalid_contact_is_422(stack, team, client, fields, field):
    before = ids(list_all(stack, team.owner, cpath(client["id"], "contacts")))
    expect_422(post_sub(stack, team.owner, client["id"], "contacts", **fields), field)
    assert ids(list_all(stack, team.owner, cpath(client["id"], "contacts"))) == before


def fresh_server(trellis):
    """A server of its own (own database, the stack's FerretDB and Redis):
    for requests that have crashed the server, so that a crash fails only
    the test that makes it."""
    env = trellis.env()
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0, run
    server = trellis.start("serve", env=env)
    server.wait_ready()
    return server


def call(server, method, path, **kw):
    try:
        return requests.request(method, server.url(path), timeout=10, **kw)
    except requests.RequestException as e:
        server.wait_exit(5)
        report = [l for l in server.output().splitlines() if "Sanitizer" in l or " in " in l]
        pytest.fail(f"{method} {path}: no answer ({e!r}); the server "
                    f"{'is still running' if server.alive() else 'died'}:\n" + "\n".join(report)[:3000])


@pytest.mark.parametrize("kind", ["contacts", "counterparties"])
def test_nested_record_under_another_clients_path_is_404(trellis, kind):
    server = fresh_server(trellis)
    owner = signup(server)
    h = owner.headers

    def mk(path, body):
        r = call(server, "POST", path, json=body, headers=h)
        return created(r)

    a = mk(CLIENTS, {"name": "A", "kind": "company"})
    b = mk(CLIENTS, {"name": "B", "kind": "company"})
    rec = mk(cpath(a["id"], kind), {"legal_name": "A AG"} if kind == "counterparties" else {"name": "Ann"})
    wrong = cpath(b["id"], kind, rec["id"])
    check_problem(call(server, "GET", wrong, headers=h), 404)
    check_problem(call(server, "PATCH", wrong, headers=h,
                       json={"tax_id": "X1"} if kind == "counterparties" else {"position": "X"}), 404)
    check_problem(call(server, "DELETE", wrong, headers=h), 404)
    r = call(server, "GET", cpath(a["id"], kind, rec["id"]), headers=h)
    assert r.status_code == 200 and r.json() == rec, r.text
    r = call(server, "GET", cpath(b["id"], kind), headers=h)
    assert r.status_code == 200 and r.json()["items"] == [], r.text
    assert server.alive()


@pytest.mark.parametrize("kind", ["contacts", "counterparties"])
def test_nested_routes_of_an_unknown_client_are_404(stack, team, kind):
    check_problem(stack.get(cpath("0" * 24, kind), headers=team.owner.headers), 404)
    check_problem(post_sub(stack, team.owner, "0" * 24, kind), 404)


# ---------------------------------------------------------------------------
# groups
# ---------------------------------------------------------------------------

def test_static_group_lists_the_clients_that_name_it(stack, team):
    g = make_group(stack, team.owner, {"type": "static"})
    assert g["rule"] == {"type": "static"}
    r = stack.get(f"{GROUPS}/{g['id']}", headers=team.owner.headers)
    assert r.status_code == 200 and r.json() == g and r.headers.get("ETag") == '"1"'
    member = make_client(stack, team.owner, group_ids=[g["id"]])
    assert member["group_ids"] == [g["id"]]
    make_client(stack, team.owner)
    assert ids(list_all(stack, team.owner, f"{GROUPS}/{g['id']}/clients")) == [member["id"]]
    patch_ok(stack, team.owner, cpath(member["id"]), {"group_ids": []})
    assert list_all(stack, team.owner, f"{GROUPS}/{g['id']}/clients") == []


def test_filter_groups_list_by_kind_and_owner(stack, five):
    owner, clients = five
    persons = make_group(stack, owner, {"type": "filter", "kind": "person"})
    got = list_all(stack, owner, f"{GROUPS}/{persons['id']}/clients")
    assert sorted(c["name"] for c in got) == ["Alpha", "Bravo"]
    mine = make_group(stack, owner, {"type": "filter", "owner_id": owner.user_id, "kind": "company"})
    assert sorted(c["name"] for c in list_all(stack, owner, f"{GROUPS}/{mine['id']}/clients")) == [
        "Charlie", "Delta", "Echo"]
    nobody = make_group(stack, owner, {"type": "filter", "owner_id": "0" * 24})
    assert list_all(stack, owner, f"{GROUPS}/{nobody['id']}/clients") == []


def test_group_patch_list_and_delete(stack, team):
    g = make_group(stack, team.owner, {"type": "static"}, name=uniq("VIP"))
    assert g["id"] in ids(list_all(stack, team.owner, GROUPS))
    changed = patch_ok(stack, team.owner, f"{GROUPS}/{g['id']}", {"rule": {"type": "filter", "kind": "person"}},
                       if_match=1)
    assert changed["rule"] == {"type": "filter", "kind": "person"} and changed["version"] == 2
    check_problem(stack.delete(f"{GROUPS}/{g['id']}", headers=hdr(team.owner, if_match=1)), 412)
    assert stack.delete(f"{GROUPS}/{g['id']}", headers=team.owner.headers).status_code == 204
    check_problem(stack.get(f"{GROUPS}/{g['id']}", headers=team.owner.headers), 404)
    check_problem(stack.get(f"{GROUPS}/{g['id']}/clients", headers=team.owner.headers), 404)


@pytest.mark.parametrize("rule", [{}, {"type": "dynamic"}, {"type": "filter"}, {"type": "static", "kind": "person"},
                                  {"type": "filter", "kind": "alien"}, {"type": "filter", "owner_id": "me"},
                                  {"type": "filter", "kind": "person", "city": "Paris"}, "static", None])
def test_invalid_group_rule_is_422(stack, team, rule):
    name = uniq("Bad group")
    expect_422(stack.post(GROUPS, json={"name": name, "rule": rule}, headers=team.owner.headers), "rule")
    assert [g for g in list_all(stack, team.owner, GROUPS) if g["name"] == name] == []


# ---------------------------------------------------------------------------
# timeline
# ---------------------------------------------------------------------------

def test_timeline_has_interactions_deals_and_claims_newest_first(stack, team):
    c = make_client(stack, team.owner)
    old = created(stack.post("/v1/crm/interactions", headers=team.owner.headers, json={
        "client_id": c["id"], "kind": "meeting", "at": "2020-01-01T10:00:00Z", "summary": "First meeting"}))
    deal = created(stack.post("/v1/crm/deals", headers=team.owner.headers,
                              json={"client_id": c["id"], "title": "Timeline deal"}))
    time.sleep(0.01)
    claim = created(stack.post("/v1/crm/claims", headers=team.owner.headers,
                               json={"client_id": c["id"], "subject": "Broken widget"}))
    future = created(stack.post("/v1/crm/interactions", headers=team.owner.headers, json={
        "client_id": c["id"], "kind": "call_out", "at": "2030-01-01T10:00:00Z", "summary": "Planned call"}))
    other_client = make_client(stack, team.owner)
    created(stack.post("/v1/crm/claims", headers=team.owner.headers,
                       json={"client_id": other_client["id"], "subject": "Not this client"}))
    body = get_ok(stack, team.owner, cpath(c["id"], "timeline"))
    items = body["items"]
    assert [(i["type"], i[i["type"]]["id"]) for i in items] == [
        ("interaction", future["id"]), ("claim", claim["id"]), ("deal", deal["id"]), ("interaction", old["id"])], items
    assert items[1]["claim"] == claim and items[2]["deal"] == deal and items[3]["interaction"] == old


def test_timeline_shows_a_sales_user_only_what_they_may_read(stack, team):
    """Sales read every client but only their own deals, claims and
    interactions: the timeline must not be a way around that."""
    c = make_client(stack, team.owner)
    created(stack.post("/v1/crm/deals", headers=team.owner.headers, json={"client_id": c["id"], "title": "Secret deal"}))
    created(stack.post("/v1/crm/claims", headers=team.owner.headers, json={"client_id": c["id"], "subject": "Secret claim"}))
    created(stack.post("/v1/crm/interactions", headers=team.owner.headers, json={
        "client_id": c["id"], "kind": "call_in", "at": "2026-01-01T10:00:00Z", "summary": "Secret call"}))
    mine = created(stack.post("/v1/crm/deals", headers=team.sales.headers, json={"client_id": c["id"], "title": "My deal"}))
    items = get_ok(stack, team.sales, cpath(c["id"], "timeline"))["items"]
    assert [(i["type"], i[i["type"]]["id"]) for i in items] == [("deal", mine["id"])], items


# ---------------------------------------------------------------------------
# permissions
# ---------------------------------------------------------------------------

def test_sales_reads_every_client_but_writes_only_their_own(stack, team):
    owners = make_client(stack, team.owner)
    assert owners["id"] in ids(list_all(stack, team.sales, CLIENTS))
    assert get_client(stack, team.sales, owners["id"]) == owners
    check_problem(stack.patch(cpath(owners["id"]), json={"name": "Mine"}, headers=team.sales.headers), (403, 404))
    check_problem(stack.delete(cpath(owners["id"]), headers=team.sales.headers), (403, 404))
    check_problem(post_sub(stack, team.sales, owners["id"], "contacts"), (403, 404))
    check_problem(post_sub(stack, team.sales, owners["id"], "counterparties"), (403, 404))
    assert get_client(stack, team.owner, owners["id"]) == owners
    assert list_all(stack, team.owner, cpath(owners["id"], "contacts")) == []
    assert list_all(stack, team.owner, cpath(owners["id"], "counterparties")) == []
    mine = make_client(stack, team.sales)
    assert mine["owner_id"] == team.sales.user_id
    assert patch_ok(stack, team.sales, cpath(mine["id"]), {"name": "Renamed by sales"})["name"] == "Renamed by sales"
    make_sub(stack, team.sales, mine["id"], "contacts")
    gone = make_client(stack, team.sales)
    assert stack.delete(cpath(gone["id"]), headers=team.sales.headers).status_code == 204
    check_problem(stack.get(cpath(gone["id"]), headers=team.owner.headers), 404)


def test_sales_reads_contacts_of_any_client_but_changes_none_of_anothers(stack, team):
    owners = make_client(stack, team.owner)
    ct = make_sub(stack, team.owner, owners["id"], "contacts")
    assert ids(list_all(stack, team.sales, cpath(owners["id"], "contacts"))) == [ct["id"]]
    path = cpath(owners["id"], "contacts", ct["id"])
    assert get_ok(stack, team.sales, path) == ct
    check_problem(stack.patch(path, json={"position": "Spy"}, headers=team.sales.headers), (403, 404))
    check_problem(stack.delete(path, headers=team.sales.headers), (403, 404))
    assert get_ok(stack, team.owner, path) == ct


def test_sales_cannot_give_a_client_to_someone_else(stack, team):
    expect_403(post_client(stack, team.sales, owner_id=team.owner.user_id))
    mine = make_client(stack, team.sales)
    expect_403(stack.patch(cpath(mine["id"]), json={"owner_id": team.sales2.user_id}, headers=team.sales.headers))
    assert get_client(stack, team.sales, mine["id"]) == mine


def test_manager_changes_any_client(stack, team):
    theirs = make_client(stack, team.sales)
    changed = patch_ok(stack, team.manager, cpath(theirs["id"]), {"owner_id": team.sales2.user_id})
    assert changed["owner_id"] == team.sales2.user_id
    make_sub(stack, team.manager, theirs["id"], "contacts")


@pytest.mark.parametrize("role", ["employee", "accountant"])
def test_readers_read_clients_but_cannot_write(stack, team, client, role):
    who = team.member(role)
    assert get_client(stack, who, client["id"]) == get_client(stack, team.owner, client["id"])
    name = uniq("Nope")
    expect_403(post_client(stack, who, name=name))
    expect_403(stack.patch(cpath(client["id"]), json={"name": "x"}, headers=who.headers))
    expect_403(stack.delete(cpath(client["id"]), headers=who.headers))
    expect_403(post_sub(stack, who, client["id"], "contacts"))
    expect_403(stack.post(GROUPS, json={"name": name, "rule": {"type": "static"}}, headers=who.headers))
    assert [c for c in list_all(stack, team.owner, CLIENTS) if c["name"] == name] == []


def test_warehouse_cannot_read_clients(stack, team, client):
    expect_403(stack.get(CLIENTS, headers=team.warehouse.headers))
    expect_403(stack.get(cpath(client["id"]), headers=team.warehouse.headers))
    expect_403(stack.get(cpath(client["id"], "contacts"), headers=team.warehouse.headers))
    expect_403(post_client(stack, team.warehouse))


# ---------------------------------------------------------------------------
# another tenant
# ---------------------------------------------------------------------------

def test_another_tenants_client_and_its_nested_records_are_404(stack, team, other):
    c = make_client(stack, team.owner)
    ct = make_sub(stack, team.owner, c["id"], "contacts")
    cp = make_sub(stack, team.owner, c["id"], "counterparties")
    h = other.headers
    check_problem(stack.get(cpath(c["id"]), headers=h), 404)
    check_problem(stack.patch(cpath(c["id"]), json={"name": "Stolen"}, headers=h), 404)
    check_problem(stack.delete(cpath(c["id"]), headers=h), 404)
    check_problem(stack.get(cpath(c["id"], "timeline"), headers=h), 404)
    for kind, rec, change in [("contacts", ct, {"position": "Mole"}), ("counterparties", cp, {"tax_id": "X"})]:
        check_problem(stack.get(cpath(c["id"], kind), headers=h), 404)
        check_problem(post_sub(stack, other, c["id"], kind), 404)
        check_problem(stack.get(cpath(c["id"], kind, rec["id"]), headers=h), 404)
        check_problem(stack.patch(cpath(c["id"], kind, rec["id"]), json=change, headers=h), 404)
        check_problem(stack.delete(cpath(c["id"], kind, rec["id"]), headers=h), 404)
        assert ids(list_all(stack, team.owner, cpath(c["id"], kind))) == [rec["id"]]
        assert get_ok(stack, team.owner, cpath(c["id"], kind, rec["id"])) == rec
    assert c["id"] not in ids(list_all(stack, other, CLIENTS))
    assert get_client(stack, team.owner, c["id"]) == c


def test_another_tenants_nested_ids_under_an_own_client_are_404(stack, team, other):
    c = make_client(stack, team.owner)
    ct = make_sub(stack, team.owner, c["id"], "contacts")
    mine = make_client(stack, other)
    check_problem(stack.get(cpath(mine["id"], "contacts", ct["id"]), headers=other.headers), 404)
    check_problem(stack.patch(cpath(mine["id"], "contacts", ct["id"]), json={"name": "x"}, headers=other.headers), 404)
    check_problem(stack.delete(cpath(mine["id"], "contacts", ct["id"]), headers=other.headers), 404)
    assert get_ok(stack, team.owner, cpath(c["id"], "contacts", ct["id"])) == ct


def test_another_tenants_group_is_404_and_cannot_be_joined(stack, team, other):
    g = make_group(stack, team.owner, {"type": "static"})
    member = make_client(stack, team.owner, group_ids=[g["id"]])
    check_problem(stack.get(f"{GROUPS}/{g['id']}", headers=other.headers), 404)
    check_problem(stack.get(f"{GROUPS}/{g['id']}/clients", headers=other.headers), 404)
    check_problem(stack.patch(f"{GROUPS}/{g['id']}", json={"name": "x"}, headers=other.headers), 404)
    check_problem(stack.delete(f"{GROUPS}/{g['id']}", headers=other.headers), 404)
    expect_422(post_client(stack, other, group_ids=[g["id"]]), "group_ids")
    assert ids(list_all(stack, team.owner, f"{GROUPS}/{g['id']}/clients")) == [member["id"]]
