"""CRM leads (/v1/crm/leads): create/get/list/patch/delete with ETag and
If-Match, list filters, sorts and cursor pages, Idempotency-Key, validation
(with custom fields), the status flow, duplicates, conversion into a client,
a contact and a deal (also 50 at once), ":own" permissions of sales users,
API keys, and other tenants' ids.  Black-box: the real server of the
session stack, looked at through the API only."""

import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import DEFAULT_PASSWORD, check_problem, login, signup
from crm_support import (  # noqa: F401 (fixtures among them)
    ID_RE, TS_RE, hdr, uniq, errors_of, expect_403, get_ok, list_page, list_all, ids,
    RetryingStack, stack, Team, team, other, LEADS)
from crm_support import walk as walk_list


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def uniq_email(prefix="lead"):
    return f"{prefix}.{secrets.token_hex(5)}@example.com"


def uniq_phone():
    d = f"{secrets.randbelow(10 ** 7):07d}"
    return f"+1 (555) {d[:3]}-{d[3:]}"


def expect_422(r, field):
    body = check_problem(r, 422)
    assert field in errors_of(body), f"expected a field error on {field!r}: {body}"
    return body


def post_lead(stack, who, headers=None, **fields):
    body = {"name": uniq("Lead"), "email": uniq_email()}
    for k, v in fields.items():
        if v is ...:
            body.pop(k, None)
        else:
            body[k] = v
    return stack.post(LEADS, json=body, headers=headers or hdr(who))


def make_lead(stack, who, **fields):
    r = post_lead(stack, who, **fields)
    assert r.status_code == 201, f"creating a lead: {r.status_code} {r.text[:500]}"
    return r.json()


def get_lead(stack, who, lead_id):
    return get_ok(stack, who, f"{LEADS}/{lead_id}")


def patch_lead(stack, who, lead_id, body, **h):
    return stack.patch(f"{LEADS}/{lead_id}", json=body, headers=hdr(who, **h))


def patch_ok(stack, who, lead_id, body):
    r = patch_lead(stack, who, lead_id, body)
    assert r.status_code == 200, f"PATCH lead {body}: {r.status_code} {r.text[:500]}"
    return r.json()


def convert(stack, who, lead_id, body=None):
    return stack.post(f"{LEADS}/{lead_id}/convert", json=body if body is not None else {},
                      headers=hdr(who))


def make_key(stack, owner, permissions):
    r = stack.post("/v1/api-keys", json={"name": uniq("key").replace(" ", "-"), "permissions": permissions},
                   headers=owner.headers)
    assert r.status_code == 201, f"creating an API key: {r.status_code} {r.text[:500]}"
    return {"X-API-Key": r.json()["key"]}


def assert_lead_shape(lead):
    assert ID_RE.match(lead["id"]), lead
    assert TS_RE.match(lead["created_at"]) and TS_RE.match(lead["updated_at"]), lead
    assert isinstance(lead["version"], int), lead
    assert "tenant_id" not in lead and "_id" not in lead, lead
    assert not [k for k in lead if k.startswith("_")], f"internal fields leak: {lead}"


# ---------------------------------------------------------------------------
# create, get, patch, delete
# ---------------------------------------------------------------------------

def test_create_lead_is_201_with_location_and_the_lead(stack, team):
    email = uniq_email("Mixed.Case").replace("mixed", "MiXeD")
    r = post_lead(stack, team.owner, name="Ada Lovelace", email=email, phone=uniq_phone(),
                  company="Analytical Engines", source={"channel": "web"})
    assert r.status_code == 201, r.text
    lead = r.json()
    assert_lead_shape(lead)
    assert r.headers.get("Location") == f"{LEADS}/{lead['id']}", r.headers
    assert lead["name"] == "Ada Lovelace" and lead["company"] == "Analytical Engines"
    assert lead["email"] == email.lower(), lead
    assert lead["status"] == "new", lead
    assert lead["owner_id"] == team.owner.user_id, lead
    assert lead["duplicate_of"] is None, lead
    assert lead["source"] == {"channel": "web", "campaign_id": None}, lead
    assert lead["version"] == 1, lead
    got = stack.get(r.headers["Location"], headers=team.owner.headers)
    assert got.status_code == 200 and got.json() == lead, got.text
    assert got.headers.get("ETag") == '"1"', got.headers


def test_lead_with_only_a_phone_is_accepted(stack, team):
    lead = make_lead(stack, team.owner, email=..., phone=uniq_phone())
    assert lead["status"] == "new" and lead.get("email") is None, lead


def test_patch_changes_fields_and_bumps_version_and_etag(stack, team):
    lead = make_lead(stack, team.owner)
    r = patch_lead(stack, team.owner, lead["id"], {"company": "Globex", "phone": uniq_phone()},
                   if_match=1)
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["company"] == "Globex" and changed["version"] == 2, changed
    assert changed["name"] == lead["name"] and changed["email"] == lead["email"], changed
    assert r.headers.get("ETag") == '"2"', r.headers
    got = stack.get(f"{LEADS}/{lead['id']}", headers=team.owner.headers)
    assert got.json() == changed and got.headers.get("ETag") == '"2"'


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(stack, team):
    lead = make_lead(stack, team.owner)
    patch_ok(stack, team.owner, lead["id"], {"company": "First"})
    r = patch_lead(stack, team.owner, lead["id"], {"company": "Second"}, if_match=1)
    check_problem(r, 412)
    got = get_lead(stack, team.owner, lead["id"])
    assert got["company"] == "First" and got["version"] == 2, got


def test_delete_with_a_stale_if_match_is_412_then_delete_is_204_and_gone(stack, team):
    lead = make_lead(stack, team.owner)
    patch_ok(stack, team.owner, lead["id"], {"company": "Moved on"})
    check_problem(stack.delete(f"{LEADS}/{lead['id']}", headers=hdr(team.owner, if_match=1)), 412)
    assert get_lead(stack, team.owner, lead["id"])["version"] == 2
    r = stack.delete(f"{LEADS}/{lead['id']}", headers=hdr(team.owner, if_match=2))
    assert r.status_code == 204, r.text
    check_problem(stack.get(f"{LEADS}/{lead['id']}", headers=team.owner.headers), 404)
    assert lead["id"] not in ids(list_all(stack, team.owner, LEADS, email=lead["email"]))
    check_problem(stack.delete(f"{LEADS}/{lead['id']}", headers=team.owner.headers), 404)


@pytest.mark.parametrize("lead_id", ["0" * 24, "not-an-id", "5f" * 12])
def test_unknown_lead_is_404_everywhere(stack, team, lead_id):
    check_problem(stack.get(f"{LEADS}/{lead_id}", headers=team.owner.headers), 404)
    check_problem(patch_lead(stack, team.owner, lead_id, {"company": "x"}), 404)
    check_problem(stack.delete(f"{LEADS}/{lead_id}", headers=team.owner.headers), 404)
    check_problem(convert(stack, team.owner, lead_id), 404)


# ---------------------------------------------------------------------------
# lists
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def five(stack):
    """A tenant of its own with five leads (names out of creation order)."""
    owner = signup(stack)
    names = ["Echo", "Alpha", "Delta", "Bravo", "Charlie"]
    leads = [make_lead(stack, owner, name=n) for n in names]
    return owner, leads


def walk(stack, who, limit, **params):
    return walk_list(stack, who, LEADS, limit, max_pages=10, **params)


def test_pages_of_two_give_every_lead_once_newest_first(stack, five):
    owner, leads = five
    seen, pages = walk(stack, owner, 2)
    assert ids(seen) == [l["id"] for l in reversed(leads)], [i["name"] for i in seen]
    assert pages in (3, 4), pages


def test_pages_of_two_sorted_by_name(stack, five):
    owner, leads = five
    seen, _ = walk(stack, owner, 2, sort="name")
    assert [i["name"] for i in seen] == ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]
    assert len(set(ids(seen))) == 5


def test_list_filters_by_status_owner_and_email(stack, team):
    mine = make_lead(stack, team.owner)
    theirs = make_lead(stack, team.manager)
    patch_ok(stack, team.owner, mine["id"], {"status": "contacted"})
    contacted = ids(list_all(stack, team.owner, LEADS, status="contacted"))
    assert mine["id"] in contacted and theirs["id"] not in contacted
    assert all(i["status"] == "contacted" for i in list_all(stack, team.owner, LEADS, status="contacted"))
    by_manager = list_all(stack, team.owner, LEADS, owner_id=team.manager.user_id)
    assert theirs["id"] in ids(by_manager) and mine["id"] not in ids(by_manager)
    assert {i["owner_id"] for i in by_manager} == {team.manager.user_id}
    by_email = list_all(stack, team.owner, LEADS, email=theirs["email"])
    assert ids(by_email) == [theirs["id"]]


@pytest.mark.parametrize("params,field", [({"status": "pending"}, "status"),
                                          ({"owner_id": "nobody"}, "owner_id")])
def test_bad_list_filter_is_422(stack, team, params, field):
    expect_422(stack.get(LEADS, headers=team.owner.headers, params=params), field)


@pytest.mark.parametrize("params", [{"sort": "email"}, {"limit": 0}, {"limit": 201}, {"cursor": "garbage!"}])
def test_bad_sort_limit_or_cursor_is_refused(stack, team, params):
    check_problem(stack.get(LEADS, headers=team.owner.headers, params=params), (400, 422))


# ---------------------------------------------------------------------------
# Idempotency-Key
# ---------------------------------------------------------------------------

def test_same_idempotency_key_and_body_gives_the_first_response_and_one_lead(stack, team):
    key = "lead-" + secrets.token_hex(8)
    body = {"name": uniq("Idem"), "email": uniq_email("idem")}
    first = stack.post(LEADS, json=body, headers=hdr(team.owner, idem=key))
    assert first.status_code == 201, first.text
    again = stack.post(LEADS, json=body, headers=hdr(team.owner, idem=key))
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers.get("Location") == first.headers.get("Location")
    found = list_all(stack, team.owner, LEADS, email=body["email"])
    assert ids(found) == [first.json()["id"]], found


def test_same_idempotency_key_with_another_body_is_422_and_creates_nothing(stack, team):
    key = "lead-" + secrets.token_hex(8)
    first = stack.post(LEADS, json={"name": uniq("Idem"), "email": uniq_email("idem")},
                       headers=hdr(team.owner, idem=key))
    assert first.status_code == 201, first.text
    other_email = uniq_email("idem2")
    r = stack.post(LEADS, json={"name": uniq("Idem"), "email": other_email}, headers=hdr(team.owner, idem=key))
    check_problem(r, 422, "idempotency-key-reused")
    assert list_all(stack, team.owner, LEADS, email=other_email) == []


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

BAD_LEADS = [
    ({"name": ...}, "name"),
    ({"name": ""}, "name"),
    ({"name": 42}, "name"),
    ({"name": "a\nb"}, "name"),
    ({"email": "not-an-email"}, "email"),
    ({"email": 7}, "email"),
    ({"phone": "call me maybe"}, "phone"),
    ({"status": "hot"}, "status"),
    ({"status": "qualified"}, "status"),
    ({"owner_id": "0" * 24}, "owner_id"),
    ({"owner_id": "me"}, "owner_id"),
    ({"source": {"channel": "carrier-pigeon"}}, "source.channel"),
    ({"source": {"channel": "web", "campaign_id": "0" * 24}}, "source.campaign_id"),
    ({"source": "web"}, "source"),
    ({"custom": {"nope": 1}}, "custom.nope"),
    ({"custom": "x"}, "custom"),
    ({"favourite_colour": "blue"}, "favourite_colour"),
    ({"tenant_id": "0" * 24}, "tenant_id"),
    ({"duplicate_of": "0" * 24}, "duplicate_of"),
    ({"client_id": "0" * 24}, "client_id"),
    ({"email": ..., "phone": ...}, "email"),
    ({"email": None, "phone": None}, "email"),
]


@pytest.mark.parametrize("change,field", BAD_LEADS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_LEADS)])
def test_invalid_lead_is_422_with_the_field_and_creates_nothing(stack, team, change, field):
    name = uniq("Invalid")
    change = dict(change)
    change.setdefault("name", name)
    r = post_lead(stack, team.owner, **change)
    expect_422(r, field)
    assert [i for i in list_all(stack, team.owner, LEADS) if i["name"] == name] == []


def test_patch_dropping_the_last_contact_detail_is_422_and_changes_nothing(stack, team):
    lead = make_lead(stack, team.owner)
    expect_422(patch_lead(stack, team.owner, lead["id"], {"email": None}), "email")
    assert get_lead(stack, team.owner, lead["id"]) == lead


@pytest.mark.parametrize("body,field", [({"duplicate_of": "0" * 24}, "duplicate_of"),
                                        ({"name": None}, "name"),
                                        ({"status": "open"}, "status"),
                                        ({"owner_id": "0" * 24}, "owner_id"),
                                        ({"bogus": True}, "bogus")])
def test_invalid_patch_is_422_and_changes_nothing(stack, team, body, field):
    lead = make_lead(stack, team.owner)
    expect_422(patch_lead(stack, team.owner, lead["id"], body), field)
    assert get_lead(stack, team.owner, lead["id"]) == lead


def test_source_with_an_existing_campaign_is_kept(stack, team):
    r = stack.post("/v1/crm/campaigns", json={"name": uniq("Fair"), "kind": "exhibition"},
                   headers=team.owner.headers)
    assert r.status_code == 201, r.text
    campaign = r.json()
    lead = make_lead(stack, team.owner, source={"channel": "event", "campaign_id": campaign["id"]})
    assert lead["source"] == {"channel": "event", "campaign_id": campaign["id"]}, lead


# ---------------------------------------------------------------------------
# custom fields (a tenant of their own: a required field applies to all leads)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def custom_tenant(stack):
    owner = signup(stack)
    defs = [{"entity": "lead", "key": "budget", "label": "Budget", "type": "number"},
            {"entity": "lead", "key": "tier", "label": "Tier", "type": "enum", "options": ["gold", "silver"]},
            {"entity": "lead", "key": "vip", "label": "VIP", "type": "bool"},
            {"entity": "lead", "key": "met_on", "label": "Met on", "type": "date"},
            {"entity": "lead", "key": "region", "label": "Region", "type": "string", "required": True}]
    for d in defs:
        r = stack.post("/v1/crm/fields", json=d, headers=owner.headers)
        assert r.status_code == 201, f"defining {d}: {r.status_code} {r.text[:300]}"
    return owner


def test_custom_values_matching_their_definitions_are_stored(stack, custom_tenant):
    custom = {"budget": 12000, "tier": "gold", "vip": True, "met_on": "2026-03-01T10:00:00.000Z",
              "region": "EMEA"}
    lead = make_lead(stack, custom_tenant, custom=custom)
    assert lead["custom"] == custom, lead
    assert get_lead(stack, custom_tenant, lead["id"])["custom"] == custom


@pytest.mark.parametrize("custom,field", [
    ({"region": "EMEA", "budget": "lots"}, "custom.budget"),
    ({"region": "EMEA", "tier": "bronze"}, "custom.tier"),
    ({"region": "EMEA", "vip": "yes"}, "custom.vip"),
    ({"region": "EMEA", "met_on": "last tuesday"}, "custom.met_on"),
    ({"region": 5}, "custom.region"),
    ({"region": "EMEA", "shoe_size": 44}, "custom.shoe_size"),
    ({"budget": 5}, "custom.region"),
    (None, "custom.region"),
])
def test_bad_custom_values_are_422_with_the_field(stack, custom_tenant, custom, field):
    name = uniq("Custom")
    r = post_lead(stack, custom_tenant, name=name, custom=custom if custom is not None else ...)
    expect_422(r, field)
    assert [i for i in list_all(stack, custom_tenant, LEADS) if i["name"] == name] == []


def test_patch_of_custom_values_keeps_the_others_and_checks_types(stack, custom_tenant):
    lead = make_lead(stack, custom_tenant, custom={"region": "APAC", "budget": 10})
    changed = patch_ok(stack, custom_tenant, lead["id"], {"custom": {"tier": "silver"}})
    assert changed["custom"] == {"region": "APAC", "budget": 10, "tier": "silver"}, changed
    expect_422(patch_lead(stack, custom_tenant, lead["id"], {"custom": {"budget": True}}), "custom.budget")
    expect_422(patch_lead(stack, custom_tenant, lead["id"], {"custom": {"region": None}}), "custom.region")
    assert get_lead(stack, custom_tenant, lead["id"]) == changed


def test_custom_field_of_another_tenant_is_unknown_here(stack, team, custom_tenant):
    expect_422(post_lead(stack, team.owner, custom={"budget": 1}), "custom.budget")


# ---------------------------------------------------------------------------
# the status flow
# ---------------------------------------------------------------------------

def test_status_moves_forward_new_contacted_qualified(stack, team):
    lead = make_lead(stack, team.owner)
    assert patch_ok(stack, team.owner, lead["id"], {"status": "contacted"})["status"] == "contacted"
    q = patch_ok(stack, team.owner, lead["id"], {"status": "qualified"})
    assert q["status"] == "qualified" and q["version"] == 3, q


@pytest.mark.parametrize("path,back", [(["contacted"], "new"), (["contacted", "qualified"], "contacted"),
                                       (["qualified"], "new")])
def test_status_moving_backwards_is_409_and_changes_nothing(stack, team, path, back):
    lead = make_lead(stack, team.owner)
    for s in path:
        lead = patch_ok(stack, team.owner, lead["id"], {"status": s})
    check_problem(patch_lead(stack, team.owner, lead["id"], {"status": back}), 409)
    assert get_lead(stack, team.owner, lead["id"]) == lead


def test_lost_needs_a_reason(stack, team):
    lead = make_lead(stack, team.owner)
    expect_422(patch_lead(stack, team.owner, lead["id"], {"status": "lost"}), "lost_reason")
    expect_422(patch_lead(stack, team.owner, lead["id"], {"status": "lost", "lost_reason": None}), "lost_reason")
    assert get_lead(stack, team.owner, lead["id"]) == lead
    lost = patch_ok(stack, team.owner, lead["id"], {"status": "lost", "lost_reason": "went with a competitor"})
    assert lost["status"] == "lost" and lost["lost_reason"] == "went with a competitor", lost


def test_patch_status_converted_is_409(stack, team):
    lead = make_lead(stack, team.owner)
    check_problem(patch_lead(stack, team.owner, lead["id"], {"status": "converted"}), 409)
    assert get_lead(stack, team.owner, lead["id"]) == lead


@pytest.mark.parametrize("to", ["new", "contacted", "qualified", "converted"])
def test_a_lost_lead_is_final(stack, team, to):
    lead = make_lead(stack, team.owner)
    lost = patch_ok(stack, team.owner, lead["id"], {"status": "lost", "lost_reason": "no budget"})
    check_problem(patch_lead(stack, team.owner, lead["id"], {"status": to}), 409)
    assert get_lead(stack, team.owner, lead["id"]) == lost
    check_problem(convert(stack, team.owner, lead["id"], {"create_deal": True}), 409)
    assert get_lead(stack, team.owner, lead["id"]) == lost


@pytest.mark.parametrize("to", ["new", "qualified", "lost"])
def test_a_converted_lead_is_final(stack, team, to):
    lead = make_lead(stack, team.owner)
    assert convert(stack, team.owner, lead["id"]).status_code == 200
    converted = get_lead(stack, team.owner, lead["id"])
    r = patch_lead(stack, team.owner, lead["id"], {"status": to, "lost_reason": "changed mind"})
    check_problem(r, 409)
    assert get_lead(stack, team.owner, lead["id"]) == converted


# ---------------------------------------------------------------------------
# duplicates
# ---------------------------------------------------------------------------

def test_same_email_in_another_case_is_a_duplicate(stack, team):
    email = uniq_email("dupe")
    first = make_lead(stack, team.owner, email=email)
    assert first["duplicate_of"] is None
    second = make_lead(stack, team.owner, email=email.upper(), phone=uniq_phone())
    assert second["duplicate_of"] == first["id"], second
    assert get_lead(stack, team.owner, second["id"])["duplicate_of"] == first["id"]


def test_same_phone_digits_with_other_punctuation_is_a_duplicate(stack, team):
    d = f"{secrets.randbelow(10 ** 7):07d}"
    first = make_lead(stack, team.owner, email=..., phone=f"+1 (555) {d[:3]}-{d[3:]}")
    second = make_lead(stack, team.owner, phone=f"+1.555.{d[:3]}.{d[3:5]} {d[5:]}")
    assert second["duplicate_of"] == first["id"], (first, second)


def test_same_email_is_a_duplicate_also_when_the_new_lead_brings_a_phone(stack):
    """Short values on purpose: the duplicate check must not depend on how
    much the new lead holds."""
    owner = signup(stack)
    first = make_lead(stack, owner, name="A", email="a@b.co")
    second = make_lead(stack, owner, name="B", email="a@b.co", phone="12345")
    assert second["duplicate_of"] == first["id"], second


def test_different_contact_details_are_not_duplicates(stack, team):
    make_lead(stack, team.owner, phone=uniq_phone())
    assert make_lead(stack, team.owner, phone=uniq_phone())["duplicate_of"] is None


def test_list_by_duplicate_of(stack, team):
    email = uniq_email("dupe")
    first = make_lead(stack, team.owner, email=email)
    second = make_lead(stack, team.owner, email=email)
    assert ids(list_all(stack, team.owner, LEADS, duplicate_of=first["id"])) == [second["id"]]


def test_lost_or_converted_lead_is_not_a_duplicate_target(stack, team):
    email, phone = uniq_email("closed"), uniq_phone()
    lost = make_lead(stack, team.owner, email=email)
    patch_ok(stack, team.owner, lost["id"], {"status": "lost", "lost_reason": "spam"})
    converted = make_lead(stack, team.owner, email=..., phone=phone)
    assert convert(stack, team.owner, converted["id"]).status_code == 200
    fresh = make_lead(stack, team.owner, email=email, phone=phone)
    assert fresh["duplicate_of"] is None, fresh


def test_patch_to_a_matching_email_marks_the_duplicate(stack, team):
    first = make_lead(stack, team.owner)
    second = make_lead(stack, team.owner)
    changed = patch_ok(stack, team.owner, second["id"], {"email": first["email"].upper()})
    assert changed["duplicate_of"] == first["id"], changed


# ---------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------

def default_pipeline(stack, who):
    items = list_all(stack, who, "/v1/crm/pipelines")
    defaults = [p for p in items if p.get("is_default")]
    assert len(defaults) == 1, items
    return defaults[0]


def test_convert_with_a_deal_links_client_contact_and_deal(stack, team):
    phone = uniq_phone()
    lead = make_lead(stack, team.owner, name="Grace Hopper", company="Compilers Inc", phone=phone)
    r = convert(stack, team.owner, lead["id"], {"create_deal": True, "deal_title": "Compiler licences",
                                                "amount": {"amount": 990000, "currency": "USD"}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"client", "contact", "deal"}, out
    client, contact, deal = out["client"], out["contact"], out["deal"]
    for rec in (client, contact, deal):
        assert_lead_shape(rec)
    assert client["name"] == "Compilers Inc" and client["kind"] == "company", client
    assert client["owner_id"] == team.owner.user_id and client["lead_id"] == lead["id"], client
    assert contact["client_id"] == client["id"] and contact["name"] == "Grace Hopper", contact
    assert contact["email"] == lead["email"] and contact["phone"] == phone, contact
    assert deal["client_id"] == client["id"] and deal["title"] == "Compiler licences", deal
    assert deal["status"] == "open" and deal["lead_id"] == lead["id"], deal
    assert deal["amount"] == {"amount": 990000, "currency": "USD"}, deal
    assert deal["owner_id"] == team.owner.user_id, deal
    pipeline = default_pipeline(stack, team.owner)
    assert deal["pipeline_id"] == pipeline["id"] and deal["stage"] == pipeline["stages"][0]["key"], deal
    after = get_lead(stack, team.owner, lead["id"])
    assert after["status"] == "converted", after
    assert (after["client_id"], after["contact_id"], after["deal_id"]) == (client["id"], contact["id"], deal["id"])
    assert TS_RE.match(after["converted_at"]), after
    assert get_ok(stack, team.owner, f"/v1/crm/clients/{client['id']}") == client
    assert get_ok(stack, team.owner, f"/v1/crm/clients/{client['id']}/contacts/{contact['id']}") == contact
    assert get_ok(stack, team.owner, f"/v1/crm/deals/{deal['id']}") == deal
    assert ids(list_all(stack, team.owner, f"/v1/crm/clients/{client['id']}/contacts")) == [contact["id"]]


def test_convert_without_a_deal_makes_a_person_client_and_deal_null(stack, team):
    lead = make_lead(stack, team.owner, name="Solo Person")
    r = convert(stack, team.owner, lead["id"], {"create_deal": False})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["deal"] is None, out
    assert out["client"]["name"] == "Solo Person" and out["client"]["kind"] == "person", out
    after = get_lead(stack, team.owner, lead["id"])
    assert after["status"] == "converted" and after["client_id"] == out["client"]["id"], after
    assert after.get("deal_id") is None, after
    assert [d for d in list_all(stack, team.owner, "/v1/crm/deals", client_id=out["client"]["id"])] == []


def test_second_conversion_is_409_and_makes_nothing_new(stack, team):
    lead = make_lead(stack, team.owner)
    first = convert(stack, team.owner, lead["id"], {"create_deal": True})
    assert first.status_code == 200, first.text
    converted = get_lead(stack, team.owner, lead["id"])
    check_problem(convert(stack, team.owner, lead["id"], {"create_deal": True}), 409)
    assert get_lead(stack, team.owner, lead["id"]) == converted
    mine = [c for c in list_all(stack, team.owner, "/v1/crm/clients") if c.get("lead_id") == lead["id"]]
    assert ids(mine) == [first.json()["client"]["id"]]


@pytest.mark.parametrize("body,field", [({"create_deal": "yes"}, "create_deal"),
                                        ({"create_deal": True, "amount": {"amount": 1.5, "currency": "EUR"}}, "amount"),
                                        ({"create_deal": True, "amount": {"amount": 100, "currency": "eur"}}, "amount"),
                                        ({"create_deal": True, "deal_title": ""}, "deal_title"),
                                        ({"client_name": "x"}, "client_name")])
def test_invalid_conversion_is_422_and_leaves_the_lead_open(stack, team, body, field):
    lead = make_lead(stack, team.owner)
    expect_422(convert(stack, team.owner, lead["id"], body), field)
    assert get_lead(stack, team.owner, lead["id"]) == lead


def parallel(n, fn):
    """fn(i) for i in range(n) on n threads released together. A 429 (the
    rate limiter's leases can run dry under such a burst; the request was
    not handled) is sent again after a moment."""
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait(timeout=30)
        for _ in range(40):
            r = fn(i)
            if r.status_code != 429:
                return r
            time.sleep(0.25)
        return r

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_fifty_parallel_conversions_make_exactly_one_client(stack):
    """Five rounds (a fresh tenant each): 50 conversions of one lead at once."""
    n, failures = 50, []
    for round_ in range(5):
        owner = signup(stack)
        lead = make_lead(stack, owner, company="Race Condition GmbH")
        url = f"{stack.base_url}{LEADS}/{lead['id']}/convert"
        results = [(r.status_code, r.text) for r in parallel(n, lambda i: requests.post(
            url, json={"create_deal": True}, headers=owner.headers, timeout=60))]
        codes = [code for code, _ in results]
        clients = [c for c in list_all(stack, owner, "/v1/crm/clients") if c.get("lead_id") == lead["id"]]
        deals = [d for d in list_all(stack, owner, "/v1/crm/deals") if d.get("lead_id") == lead["id"]]
        after = get_lead(stack, owner, lead["id"])
        summary = (f"round {round_}: {codes.count(200)} x 200, {codes.count(409)} x 409, others "
                   f"{[(c, t[:200]) for c, t in results if c not in (200, 409)]}; "
                   f"{len(clients)} clients and {len(deals)} deals name the lead")
        if codes.count(200) != 1 or codes.count(409) != n - 1 or len(clients) != 1 or len(deals) != 1:
            failures.append(summary)
            continue
        winner = next(t for c, t in results if c == 200)
        assert clients[0]["id"] in winner and deals[0]["id"] in winner, summary
        assert after["status"] == "converted" and after["client_id"] == clients[0]["id"], after
    assert failures == []


def test_fifty_parallel_patches_with_the_same_if_match_let_one_through(stack):
    """Three rounds (a fresh tenant each): 50 PATCHes with If-Match "1"."""
    failures = []
    for round_ in range(3):
        owner = signup(stack)
        lead = make_lead(stack, owner)
        url = f"{stack.base_url}{LEADS}/{lead['id']}"
        codes = [r.status_code for r in parallel(50, lambda i: requests.patch(
            url, json={"company": f"Writer {i}"}, headers=hdr(owner, if_match=1), timeout=60))]
        after = get_lead(stack, owner, lead["id"])
        if (codes.count(200), codes.count(412), after["version"]) != (1, 49, 2):
            failures.append(f"round {round_}: {codes.count(200)} x 200, {codes.count(412)} x 412, others "
                            f"{[c for c in codes if c not in (200, 412)]}; the lead is now at version {after['version']}")
    assert failures == []


# ---------------------------------------------------------------------------
# permissions
# ---------------------------------------------------------------------------

def test_sales_lists_only_their_own_leads(stack, team):
    theirs = make_lead(stack, team.sales)
    assert theirs["owner_id"] == team.sales.user_id, theirs
    owners = make_lead(stack, team.owner)
    other_rep = make_lead(stack, team.sales2)
    seen = list_all(stack, team.sales, LEADS)
    assert theirs["id"] in ids(seen)
    assert owners["id"] not in ids(seen) and other_rep["id"] not in ids(seen)
    assert {i["owner_id"] for i in seen} == {team.sales.user_id}
    assert list_all(stack, team.sales, LEADS, owner_id=team.owner.user_id) == []
    assert list_all(stack, team.sales, LEADS, email=owners["email"]) == []


def test_sales_cannot_see_or_touch_another_users_lead(stack, team):
    lead = make_lead(stack, team.owner)
    check_problem(stack.get(f"{LEADS}/{lead['id']}", headers=team.sales.headers), 404)
    check_problem(patch_lead(stack, team.sales, lead["id"], {"company": "Hijacked"}), 404)
    check_problem(patch_lead(stack, team.sales, lead["id"], {"owner_id": team.sales.user_id}), 404)
    check_problem(stack.delete(f"{LEADS}/{lead['id']}", headers=team.sales.headers), 404)
    check_problem(convert(stack, team.sales, lead["id"], {"create_deal": True}), 404)
    assert get_lead(stack, team.owner, lead["id"]) == lead


def test_sales_cannot_give_a_lead_to_someone_else(stack, team):
    expect_403(post_lead(stack, team.sales, owner_id=team.sales2.user_id))
    lead = make_lead(stack, team.sales)
    expect_403(patch_lead(stack, team.sales, lead["id"], {"owner_id": team.manager.user_id}))
    assert get_lead(stack, team.sales, lead["id"]) == lead


def test_sales_works_their_own_lead_through_conversion(stack, team):
    lead = make_lead(stack, team.sales, owner_id=team.sales.user_id)
    patch_ok(stack, team.sales, lead["id"], {"status": "contacted"})
    r = convert(stack, team.sales, lead["id"], {"create_deal": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["client"]["owner_id"] == team.sales.user_id and out["deal"]["owner_id"] == team.sales.user_id
    gone = make_lead(stack, team.sales)
    assert stack.delete(f"{LEADS}/{gone['id']}", headers=team.sales.headers).status_code == 204


def test_manager_sees_and_reassigns_everyones_leads(stack, team):
    lead = make_lead(stack, team.sales)
    seen = ids(list_all(stack, team.manager, LEADS, owner_id=team.sales.user_id))
    assert lead["id"] in seen
    assert get_lead(stack, team.manager, lead["id"]) == lead
    moved = patch_ok(stack, team.manager, lead["id"], {"owner_id": team.sales2.user_id})
    assert moved["owner_id"] == team.sales2.user_id
    check_problem(stack.get(f"{LEADS}/{lead['id']}", headers=team.sales.headers), 404)
    assert get_lead(stack, team.sales2, lead["id"])["owner_id"] == team.sales2.user_id


@pytest.mark.parametrize("role", ["employee", "warehouse", "accountant"])
def test_roles_without_lead_permissions_get_403(stack, team, role):
    who = team.member(role)
    lead = make_lead(stack, team.owner)
    name = uniq("Forbidden")
    expect_403(post_lead(stack, who, name=name))
    expect_403(stack.get(LEADS, headers=who.headers))
    expect_403(stack.get(f"{LEADS}/{lead['id']}", headers=who.headers))
    expect_403(patch_lead(stack, who, lead["id"], {"company": "x"}))
    expect_403(stack.delete(f"{LEADS}/{lead['id']}", headers=who.headers))
    expect_403(convert(stack, who, lead["id"]))
    assert get_lead(stack, team.owner, lead["id"]) == lead
    assert [i for i in list_all(stack, team.owner, LEADS) if i["name"] == name] == []


def test_api_key_with_leads_write_posts_an_unowned_lead_and_nothing_more(stack, team):
    key = make_key(stack, team.owner, ["crm.leads.write"])
    r = post_lead(stack, None, headers=key)
    assert r.status_code == 201, r.text
    lead = r.json()
    assert lead.get("owner_id") is None and lead["status"] == "new", lead
    assert r.headers.get("Location") == f"{LEADS}/{lead['id']}"
    assert get_lead(stack, team.owner, lead["id"]) == lead
    assert lead["id"] not in ids(list_all(stack, team.sales, LEADS))
    expect_403(stack.get(LEADS, headers=key))
    expect_403(stack.get(f"{LEADS}/{lead['id']}", headers=key))
    expect_403(stack.post("/v1/crm/clients", json={"name": uniq("C"), "kind": "person"}, headers=key))
    expect_403(stack.get("/v1/crm/deals", headers=key))
    expect_403(convert(stack, key, lead["id"], {"create_deal": False}))
    assert get_lead(stack, team.owner, lead["id"]) == lead


def test_partner_lead_with_a_source_is_created(stack, team):
    """A partner's typical intake: name, email and where the lead came from."""
    key = make_key(stack, team.owner, ["crm.leads.write"])
    r = stack.post(LEADS, headers=key, json={"name": uniq("Partner"), "email": uniq_email("partner"),
                                             "source": {"channel": "partner"}})
    assert r.status_code == 201, r.text
    assert r.json()["source"] == {"channel": "partner", "campaign_id": None}


def test_long_lead_with_a_campaign_source_is_created_and_the_server_survives(trellis):
    """On a server of its own (a crash must not take the session's server
    down): a lead whose fields fill more than a small buffer, with a source
    naming a campaign."""
    env = trellis.env()
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0, run
    server = trellis.start("serve", env=env)
    server.wait_ready()
    owner = signup(server)
    r = requests.post(server.url("/v1/crm/campaigns"), json={"name": "Trade fair", "kind": "exhibition"},
                      headers=owner.headers, timeout=10)
    assert r.status_code == 201, r.text
    body = {"name": "L" * 150, "email": "a@b.co", "source": {"channel": "event", "campaign_id": r.json()["id"]}}
    try:
        r = requests.post(server.url(LEADS), json=body, headers=owner.headers, timeout=10)
    except requests.RequestException as e:
        server.wait_exit(5)
        pytest.fail(f"POST {LEADS} got no answer ({e!r}); the server "
                    f"{'is still running' if server.alive() else 'died'}:\n"
                    + "\n".join(l for l in server.output().splitlines() if "Sanitizer" in l or " in " in l)[:3000])
    assert r.status_code == 201, r.text
    assert server.alive()


def test_api_key_may_not_name_an_owner_outside_the_tenant(stack, team, other):
    key = make_key(stack, team.owner, ["crm.leads.write"])
    expect_422(post_lead(stack, None, headers=key, owner_id=other.user_id), "owner_id")


# ---------------------------------------------------------------------------
# another tenant
# ---------------------------------------------------------------------------

def test_another_tenants_lead_is_404_and_unchanged(stack, team, other):
    lead = make_lead(stack, team.owner)
    path = f"{LEADS}/{lead['id']}"
    check_problem(stack.get(path, headers=other.headers), 404)
    check_problem(stack.patch(path, json={"company": "Stolen"}, headers=other.headers), 404)
    check_problem(stack.patch(path, json={"status": "lost", "lost_reason": "x"},
                              headers=hdr(other, if_match=1)), 404)
    check_problem(stack.delete(path, headers=other.headers), 404)
    check_problem(convert(stack, other, lead["id"], {"create_deal": True}), 404)
    assert lead["id"] not in ids(list_all(stack, other, LEADS))
    assert get_lead(stack, team.owner, lead["id"]) == lead
    assert [c for c in list_all(stack, other, "/v1/crm/clients") if c.get("lead_id") == lead["id"]] == []


def test_another_tenants_lead_is_no_duplicate_target(stack, team, other):
    email = uniq_email("cross")
    make_lead(stack, team.owner, email=email)
    assert make_lead(stack, other, email=email)["duplicate_of"] is None
