"""Nullable fields that were never set show as null wherever a record is
rendered (the 201 answer, GET, lists, events, the timeline, the answer
of a lead's conversion), as the served OpenAPI schema says, and so do
records stored before that (or before a field existed).

Which fields are nullable comes from the served OpenAPI document (a
resource's Update schema), so a field added later is checked too."""

import secrets

import pytest
from bson import ObjectId

from crm_support import (  # noqa: F401 (fixtures among them)
    RetryingStack, stack, team, other, uniq, uniq_email, created, get_ok, hdr,
    CLIENTS, LEADS, DEALS, TASKS, make_client)
from test_crm_live import subscribed, event_named


def nullable_fields(stack, item_path):
    """The fields a client may set to null on item_path's resource (PATCH
    schema), leaving out write-only secrets."""
    doc = stack.get("/v1/openapi.json").json()
    ref = doc["paths"][item_path]["patch"]["requestBody"]["content"]["application/json"][
        "schema"]["$ref"]
    props = doc["components"]["schemas"][ref.split("/")[-1]]["properties"]
    out = set()
    for name, p in props.items():
        types = p.get("type")
        types = types if isinstance(types, list) else [types]
        alts = p.get("anyOf", []) + p.get("oneOf", [])
        if ("null" in types or any(a.get("type") == "null" for a in alts)) and \
                not p.get("writeOnly"):
            out.add(name)
    return out


def assert_nulls(rec, fields, given=()):
    """Every field in `fields` that was not given is present and null."""
    missing = sorted(f for f in fields if f not in given and f not in rec)
    assert not missing, f"left out instead of null: {missing} in {rec}"
    wrong = sorted(f for f in fields if f not in given and rec[f] is not None)
    assert not wrong, f"not null though never set: {wrong} in {rec}"


def in_list(stack, who, path, rid, **params):
    r = stack.get(path, headers=hdr(who), params=params)
    assert r.status_code == 200, r.text[:300]
    found = [x for x in r.json()["items"] if x["id"] == rid]
    assert found, f"{rid} not in the first page of {path}"
    return found[0]


def test_lead_shows_unset_nullable_fields_as_null_in_answer_get_list_and_event(stack, team):
    fields = nullable_fields(stack, "/v1/crm/leads/{id}")
    assert {"phone", "company", "source", "lost_reason"} <= fields, fields
    email = uniq_email("nulls")
    with subscribed(stack, team.owner, ["crm.leads"]) as ws:
        lead = created(stack.post(LEADS, headers=hdr(team.owner),
                                  json={"name": uniq("Nulls"), "email": email}), "lead")
        ev = event_named(ws, "crm.lead.created", lead["id"])
    assert_nulls(lead, fields, given={"email"})
    assert lead["email"] == email
    got = get_ok(stack, team.owner, f"{LEADS}/{lead['id']}")
    assert got == lead
    assert in_list(stack, team.owner, LEADS, lead["id"], email=email) == lead
    assert ev["data"] == lead


def test_a_field_set_then_cleared_is_null_and_one_never_set_stays_null(stack, team):
    lead = created(stack.post(LEADS, headers=hdr(team.owner),
                              json={"name": uniq("Clear"), "phone": "+1 555 0100"}), "lead")
    assert lead["phone"] == "+1 555 0100" and lead["email"] is None
    r = stack.patch(f"{LEADS}/{lead['id']}", headers=hdr(team.owner, if_match=lead["version"]),
                    json={"phone": None, "email": uniq_email("later")})
    assert r.status_code == 200, r.text[:300]
    after = r.json()
    assert after["phone"] is None and after["company"] is None and "@" in after["email"]
    assert get_ok(stack, team.owner, f"{LEADS}/{lead['id']}") == after


def test_conversion_answer_get_and_timeline_agree_on_nulls(stack, team):
    lead = created(stack.post(LEADS, headers=hdr(team.owner),
                              json={"name": uniq("Convert"), "email": uniq_email("conv")}), "lead")
    r = stack.post(f"{LEADS}/{lead['id']}/convert", headers=hdr(team.owner),
                   json={"create_deal": True, "deal_title": uniq("Deal")})
    assert r.status_code == 200, r.text[:300]
    ans = r.json()
    client, contact, deal = ans["client"], ans["contact"], ans["deal"]
    assert_nulls(contact, nullable_fields(stack, "/v1/crm/clients/{id}/contacts/{cid}"),
                 given={"email"})
    assert_nulls(deal, nullable_fields(stack, "/v1/crm/deals/{id}"))
    assert get_ok(stack, team.owner, f"{CLIENTS}/{client['id']}/contacts/{contact['id']}") == contact
    got_deal = get_ok(stack, team.owner, f"{DEALS}/{deal['id']}")
    assert got_deal == deal
    tl = stack.get(f"{CLIENTS}/{client['id']}/timeline", headers=hdr(team.owner))
    assert tl.status_code == 200, tl.text[:300]
    deals = [i["deal"] for i in tl.json()["items"] if i.get("type") == "deal"]
    assert deals == [got_deal], tl.json()


@pytest.mark.parametrize("path,item,body", [
    (TASKS, "/v1/crm/tasks/{id}", {"title": "call back"}),
    ("/v1/crm/campaigns", "/v1/crm/campaigns/{id}", {"name": "Spring", "kind": "ads"}),
    ("/v1/crm/claims", "/v1/crm/claims/{id}", {"client_id": None, "subject": "late"}),
    ("/v1/webhooks", "/v1/webhooks/{id}", {"url": "https://example.com/hook", "topics": ["crm.leads"]}),
    ("/v1/erp/employees", "/v1/erp/employees/{id}", {"name": "Ann Nulls"}),
    ("/v1/erp/departments", "/v1/erp/departments/{id}", {"name": "Dept " + secrets.token_hex(4)}),
])
def test_other_resources_show_unset_nullable_fields_as_null(stack, team, path, item, body):
    body = dict(body)
    if "client_id" in body:
        body["client_id"] = make_client(stack, team.owner)["id"]
    r = stack.post(path, headers=hdr(team.owner), json=body)
    assert r.status_code == 201, f"{path}: {r.status_code} {r.text[:300]}"
    rec = r.json()
    fields = nullable_fields(stack, item)
    assert fields, f"{item} has no nullable field: the case checks nothing"
    assert_nulls(rec, fields, given=set(body))
    got = get_ok(stack, team.owner, item.replace("{id}", rec["id"]))
    assert_nulls(got, fields, given=set(body))


def test_another_tenant_sees_none_of_it(stack, team, other):
    lead = created(stack.post(LEADS, headers=hdr(team.owner),
                              json={"name": uniq("Mine"), "email": uniq_email("mine")}), "lead")
    r = stack.get(f"{LEADS}/{lead['id']}", headers=hdr(other))
    assert r.status_code == 404


# ---------------------------------------------------------------------------
# records stored before: reads fill them
# ---------------------------------------------------------------------------

def test_a_record_stored_without_its_nullable_fields_shows_them_as_null(stack, team):
    """A lead as a server before this change stored it (no key for what was
    never set): GET, the list, a PATCH of another field and its event all
    show the nulls, and the stored value of a field that was set stays."""
    made = created(stack.post(LEADS, headers=hdr(team.owner),
                              json={"name": uniq("Old"), "phone": "+1 555 0142"}), "lead")
    oid = ObjectId(made["id"])
    stack.mongo["leads"].update_one({"_id": oid},
                                    {"$unset": {"email": "", "company": "", "source": "",
                                                "lost_reason": ""}})
    raw = stack.mongo["leads"].find_one({"_id": oid})
    assert "email" not in raw and "company" not in raw, raw
    fields = nullable_fields(stack, "/v1/crm/leads/{id}")

    got = get_ok(stack, team.owner, f"{LEADS}/{made['id'].upper()}")
    assert_nulls(got, fields, given={"phone"})
    assert got["phone"] == "+1 555 0142"
    assert in_list(stack, team.owner, LEADS, made["id"]) == got
    with subscribed(stack, team.owner, ["crm.leads"]) as ws:
        r = stack.patch(f"{LEADS}/{made['id']}", headers=hdr(team.owner, if_match=got["version"]),
                        json={"name": uniq("Renamed")})
        assert r.status_code == 200, r.text[:300]
        ev = event_named(ws, "crm.lead.updated", made["id"])
    assert_nulls(r.json(), fields, given={"phone"})
    assert ev["data"] == r.json()
