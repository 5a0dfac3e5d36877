"""CRM activities and settings: interactions, tasks, campaigns, claims and
custom field definitions (/v1/crm/interactions, tasks, campaigns, claims,
fields): CRUD with ETag/If-Match, filters, sorts and cursor pages,
Idempotency-Key, validation, the claim status flow, task completion,
":own" permissions (sales see their own interactions, tasks and claims),
and other tenants' ids.  Task reminders (crm.task.due) are tested with the
WebSocket in test_crm_live.py.  Black-box: the real server of the session
stack, looked at through the API only."""

import re
import secrets
import time

import pytest

from conftest import DEFAULT_PASSWORD, check_problem, login, signup
from crm_support import (  # noqa: F401 (fixtures among them)
    ID_RE, TS_RE, hdr, uniq, uniq_email, expect_403, expect_422, with_fields, created, get_ok,
    patch_ok, list_all, walk, ids, assert_shape, RetryingStack, stack, Team, team, other,
    TASKS, CLAIMS, make_client, client)


# ---------------------------------------------------------------------------
# helpers (the shared ones are in crm_support.py)
# ---------------------------------------------------------------------------


CRM = "/v1/crm"
INTERACTIONS = "/v1/crm/interactions"
CAMPAIGNS = "/v1/crm/campaigns"
FIELDS = "/v1/crm/fields"


def post(stack, who, path, base, fields, headers=None):
    body = {k: v for k, v in with_fields(base, fields).items() if v is not ...}
    return stack.post(path, json=body, headers=headers or hdr(who))


def post_interaction(stack, who, cid, **fields):
    base = {"client_id": cid, "kind": "call_out", "at": "2026-03-04T10:15:00.000Z", "summary": "Talked"}
    return post(stack, who, INTERACTIONS, base, fields)


def post_task(stack, who, **fields):
    return post(stack, who, TASKS, {"title": uniq("Task")}, fields)


def post_claim(stack, who, cid, **fields):
    return post(stack, who, CLAIMS, {"client_id": cid, "subject": uniq("Claim")}, fields)


def post_campaign(stack, who, **fields):
    return post(stack, who, CAMPAIGNS, {"name": uniq("Campaign"), "kind": "ads"}, fields)


def rec_path(path, rec_id):
    return f"{path}/{rec_id}"


def crud_roundtrip(stack, who, path, r, change):
    """Location, GET with ETag, PATCH with If-Match (and a stale one: 412),
    DELETE (a stale If-Match: 412), then 404."""
    rec = created(r)
    assert_shape(rec)
    assert r.headers.get("Location") == rec_path(path, rec["id"]), r.headers
    got = stack.get(r.headers["Location"], headers=hdr(who))
    assert got.status_code == 200 and got.json() == rec and got.headers.get("ETag") == '"1"', got.text
    changed = patch_ok(stack, who, rec_path(path, rec["id"]), change, if_match=1)
    for k, v in change.items():
        assert changed[k] == v, (k, changed)
    assert changed["version"] == 2
    check_problem(stack.patch(rec_path(path, rec["id"]), json=change, headers=hdr(who, if_match=1)), 412)
    check_problem(stack.delete(rec_path(path, rec["id"]), headers=hdr(who, if_match=1)), 412)
    assert get_ok(stack, who, rec_path(path, rec["id"])) == changed
    assert rec["id"] in ids(list_all(stack, who, path))
    assert stack.delete(rec_path(path, rec["id"]), headers=hdr(who, if_match=2)).status_code == 204
    check_problem(stack.get(rec_path(path, rec["id"]), headers=hdr(who)), 404)
    assert rec["id"] not in ids(list_all(stack, who, path))
    return rec


def idempotent_once(stack, who, path, body, count):
    key = "k-" + secrets.token_hex(8)
    first = stack.post(path, json=body, headers=hdr(who, idem=key))
    again = stack.post(path, json=body, headers=hdr(who, idem=key))
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json() and again.headers.get("Location") == first.headers.get("Location")
    assert count() == 1
    changed = dict(body, **{next(iter(k for k in body if isinstance(body[k], str) and k not in (
        "client_id", "at", "kind"))): "something else"})
    check_problem(stack.post(path, json=changed, headers=hdr(who, idem=key)), 422, "idempotency-key-reused")
    assert count() == 1


# ---------------------------------------------------------------------------
# interactions
# ---------------------------------------------------------------------------

def test_interaction_crud(stack, team, client):
    r = post_interaction(stack, team.owner, client["id"], kind="meeting", summary="Kick-off\nwith agenda")
    rec = crud_roundtrip(stack, team.owner, INTERACTIONS, r, {"summary": "Kick-off, moved"})
    assert rec["user_id"] == team.owner.user_id and rec["kind"] == "meeting", rec
    assert rec["at"] == "2026-03-04T10:15:00.000Z" and rec["summary"] == "Kick-off\nwith agenda", rec


def test_interaction_on_a_lead_or_a_deal_only(stack, team, client):
    lead = created(stack.post("/v1/crm/leads", json={"name": uniq("L"), "email": uniq_email()}, headers=team.owner.headers))
    deal = created(stack.post("/v1/crm/deals", json={"client_id": client["id"], "title": "D"}, headers=team.owner.headers))
    on_lead = created(post_interaction(stack, team.owner, ..., lead_id=lead["id"], kind="sms"))
    on_deal = created(post_interaction(stack, team.owner, ..., deal_id=deal["id"], kind="email"))
    assert ids(list_all(stack, team.owner, INTERACTIONS, lead_id=lead["id"])) == [on_lead["id"]]
    assert ids(list_all(stack, team.owner, INTERACTIONS, deal_id=deal["id"])) == [on_deal["id"]]


BAD_INTERACTIONS = [
    ({"client_id": ...}, "client_id"),
    ({"client_id": None}, "client_id"),
    ({"client_id": "0" * 24}, "client_id"),
    ({"lead_id": "0" * 24}, "lead_id"),
    ({"deal_id": "0" * 24}, "deal_id"),
    ({"kind": "telegram"}, "kind"),
    ({"kind": ...}, "kind"),
    ({"at": ...}, "at"),
    ({"at": "2026-03-04"}, "at"),
    ({"at": "2026-03-04T25:00:00Z"}, "at"),
    ({"summary": ...}, "summary"),
    ({"summary": "x" * 5001}, "summary"),
    ({"user_id": "0" * 24}, "user_id"),
    ({"duration": 30}, "duration"),
]


@pytest.mark.parametrize("change,field", BAD_INTERACTIONS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_INTERACTIONS)])
def test_invalid_interaction_is_422_and_creates_nothing(stack, team, change, field):
    c = make_client(stack, team.owner)
    expect_422(post_interaction(stack, team.owner, c["id"], **change), field)
    assert list_all(stack, team.owner, INTERACTIONS, client_id=c["id"]) == []


def test_patch_unlinking_an_interaction_is_422(stack, team, client):
    rec = created(post_interaction(stack, team.owner, client["id"]))
    expect_422(stack.patch(rec_path(INTERACTIONS, rec["id"]), json={"client_id": None}, headers=team.owner.headers),
               "client_id")
    assert get_ok(stack, team.owner, rec_path(INTERACTIONS, rec["id"])) == rec


def test_interactions_page_by_at_newest_first_and_filter_by_kind(stack, team):
    c = make_client(stack, team.owner)
    ats = ["2026-01-03T00:00:00.000Z", "2026-01-01T00:00:00.000Z", "2026-01-05T00:00:00.000Z",
           "2026-01-02T00:00:00.000Z", "2026-01-04T00:00:00.000Z"]
    recs = [created(post_interaction(stack, team.owner, c["id"], at=a, kind="meeting" if i % 2 else "call_in"))
            for i, a in enumerate(ats)]
    seen, pages = walk(stack, team.owner, INTERACTIONS, 2, client_id=c["id"])
    assert [i["at"] for i in seen] == sorted(ats, reverse=True) and pages in (3, 4)
    seen, _ = walk(stack, team.owner, INTERACTIONS, 2, client_id=c["id"], sort="at")
    assert [i["at"] for i in seen] == sorted(ats)
    meetings = list_all(stack, team.owner, INTERACTIONS, client_id=c["id"], kind="meeting")
    assert sorted(ids(meetings)) == sorted(r["id"] for i, r in enumerate(recs) if i % 2)
    assert ids(list_all(stack, team.owner, INTERACTIONS, client_id=c["id"], user_id=team.manager.user_id)) == []


def test_interaction_idempotency(stack, team):
    c = make_client(stack, team.owner)
    idempotent_once(stack, team.owner, INTERACTIONS,
                    {"client_id": c["id"], "kind": "call_in", "at": "2026-02-02T10:00:00Z", "summary": "Once"},
                    lambda: len(list_all(stack, team.owner, INTERACTIONS, client_id=c["id"])))


def test_sales_sees_only_their_own_interactions(stack, team, client):
    mine = created(post_interaction(stack, team.sales, client["id"]))
    assert mine["user_id"] == team.sales.user_id
    theirs = created(post_interaction(stack, team.owner, client["id"]))
    seen = list_all(stack, team.sales, INTERACTIONS, client_id=client["id"])
    assert ids(seen) == [mine["id"]]
    path = rec_path(INTERACTIONS, theirs["id"])
    check_problem(stack.get(path, headers=team.sales.headers), 404)
    check_problem(stack.patch(path, json={"summary": "Edited"}, headers=team.sales.headers), 404)
    check_problem(stack.delete(path, headers=team.sales.headers), 404)
    expect_403(post_interaction(stack, team.sales, client["id"], user_id=team.owner.user_id))
    assert get_ok(stack, team.owner, path) == theirs
    assert mine["id"] in ids(list_all(stack, team.manager, INTERACTIONS, client_id=client["id"]))


# ---------------------------------------------------------------------------
# tasks
# ---------------------------------------------------------------------------

def test_task_crud(stack, team, client):
    r = post_task(stack, team.owner, title="Call back", due_at="2027-05-01T09:00:00Z", related={"client_id": client["id"]})
    rec = crud_roundtrip(stack, team.owner, TASKS, r, {"title": "Call back soon"})
    assert rec["assignee_id"] == team.owner.user_id and rec["done"] is False, rec
    assert rec["due_at"] == "2027-05-01T09:00:00.000Z" and rec["related"] == {"client_id": client["id"]}, rec


def test_task_done_and_list_by_done(stack):
    owner = signup(stack)
    a = created(post_task(stack, owner))
    b = created(post_task(stack, owner))
    done = patch_ok(stack, owner, rec_path(TASKS, a["id"]), {"done": True})
    assert done["done"] is True and done["version"] == 2
    assert get_ok(stack, owner, rec_path(TASKS, a["id"]))["done"] is True
    assert ids(list_all(stack, owner, TASKS, done="true")) == [a["id"]]
    assert ids(list_all(stack, owner, TASKS, done="false")) == [b["id"]]
    expect_422(stack.get(TASKS, params={"done": "maybe"}, headers=owner.headers), "done")
    reopened = patch_ok(stack, owner, rec_path(TASKS, a["id"]), {"done": False})
    assert reopened["done"] is False


def test_tasks_page_by_due_at(stack):
    owner = signup(stack)
    dues = ["2027-01-03T00:00:00.000Z", "2027-01-01T00:00:00.000Z", "2027-01-05T00:00:00.000Z",
            "2027-01-02T00:00:00.000Z", "2027-01-04T00:00:00.000Z"]
    recs = [created(post_task(stack, owner, due_at=d)) for d in dues]
    seen, pages = walk(stack, owner, TASKS, 2, sort="due_at")
    assert [t["due_at"] for t in seen] == sorted(dues) and pages in (3, 4)
    assert sorted(ids(seen)) == sorted(ids(recs))
    seen, _ = walk(stack, owner, TASKS, 2, sort="-due_at")
    assert [t["due_at"] for t in seen] == sorted(dues, reverse=True)


@pytest.mark.parametrize("related", [{"client_id": "<client>", "lead_id": "<lead>"}, {"invoice_id": "0" * 24},
                                     {"client_id": "0" * 24}, {"deal_id": "nope"}, "client", {}])
def test_invalid_related_is_422(stack, team, client, related):
    lead = created(stack.post("/v1/crm/leads", json={"name": uniq("L"), "email": uniq_email()}, headers=team.owner.headers))
    if isinstance(related, dict):
        related = {k: {"<client>": client["id"], "<lead>": lead["id"]}.get(v, v) for k, v in related.items()}
    title = uniq("Bad task")
    expect_422(post_task(stack, team.owner, title=title, related=related), "related")
    assert [t for t in list_all(stack, team.owner, TASKS) if t["title"] == title] == []


@pytest.mark.parametrize("change,field", [({"title": ...}, "title"), ({"title": ""}, "title"),
                                          ({"due_at": "soon"}, "due_at"), ({"due_at": "2027-02-29T10:00:00Z"}, "due_at"),
                                          ({"assignee_id": "0" * 24}, "assignee_id"), ({"done": "yes"}, "done"),
                                          ({"priority": "high"}, "priority")])
def test_invalid_task_is_422(stack, team, change, field):
    title = uniq("Bad task")
    change = dict(change)
    change.setdefault("title", title)
    expect_422(post_task(stack, team.owner, **change), field)
    assert [t for t in list_all(stack, team.owner, TASKS) if t["title"] == title] == []


def test_task_idempotency(stack):
    owner = signup(stack)
    idempotent_once(stack, owner, TASKS, {"title": "Only once", "due_at": "2027-01-01T00:00:00Z"},
                    lambda: len(list_all(stack, owner, TASKS)))


def test_sales_sees_and_changes_only_their_own_tasks(stack, team):
    mine = created(post_task(stack, team.sales))
    assert mine["assignee_id"] == team.sales.user_id
    given = created(post_task(stack, team.manager, assignee_id=team.sales.user_id))
    theirs = created(post_task(stack, team.owner))
    seen = ids(list_all(stack, team.sales, TASKS))
    assert mine["id"] in seen and given["id"] in seen and theirs["id"] not in seen
    assert list_all(stack, team.sales, TASKS, assignee_id=team.owner.user_id) == []
    path = rec_path(TASKS, theirs["id"])
    check_problem(stack.get(path, headers=team.sales.headers), 404)
    check_problem(stack.patch(path, json={"done": True}, headers=team.sales.headers), 404)
    check_problem(stack.delete(path, headers=team.sales.headers), 404)
    assert get_ok(stack, team.owner, path) == theirs
    expect_403(post_task(stack, team.sales, assignee_id=team.sales2.user_id))
    expect_403(stack.patch(rec_path(TASKS, mine["id"]), json={"assignee_id": team.owner.user_id},
                           headers=team.sales.headers))
    assert patch_ok(stack, team.sales, rec_path(TASKS, given["id"]), {"done": True})["done"] is True


@pytest.mark.parametrize("role", ["employee", "warehouse", "accountant"])
def test_roles_without_task_permissions_get_403(stack, team, role):
    who = team.member(role)
    task = created(post_task(stack, team.owner))
    expect_403(post_task(stack, who))
    expect_403(stack.get(TASKS, headers=who.headers))
    expect_403(stack.patch(rec_path(TASKS, task["id"]), json={"done": True}, headers=who.headers))
    expect_403(stack.delete(rec_path(TASKS, task["id"]), headers=who.headers))
    expect_403(stack.get(INTERACTIONS, headers=who.headers))
    expect_403(stack.get(CLAIMS, headers=who.headers))
    assert get_ok(stack, team.owner, rec_path(TASKS, task["id"])) == task


# ---------------------------------------------------------------------------
# campaigns
# ---------------------------------------------------------------------------

def test_campaign_crud(stack, team):
    r = post_campaign(stack, team.owner, name="Spring fair", kind="exhibition", channel="Trade show",
                      cost={"amount": 250000, "currency": "EUR"}, starts_at="2026-04-01T08:00:00Z",
                      ends_at="2026-04-03T18:00:00Z")
    rec = crud_roundtrip(stack, team.owner, CAMPAIGNS, r, {"cost": {"amount": 300000, "currency": "EUR"}})
    assert rec["kind"] == "exhibition" and rec["starts_at"] == "2026-04-01T08:00:00.000Z", rec


@pytest.mark.parametrize("change,field", [({"cost": {"amount": 1.5, "currency": "EUR"}}, "cost"),
                                          ({"cost": {"amount": 100, "currency": "usd"}}, "cost"),
                                          ({"cost": "100 EUR"}, "cost"), ({"kind": "billboard"}, "kind"),
                                          ({"kind": ...}, "kind"), ({"name": ...}, "name"),
                                          ({"starts_at": "April"}, "starts_at"), ({"budget": 1}, "budget")])
def test_invalid_campaign_is_422(stack, team, change, field):
    name = uniq("Bad campaign")
    change = dict(change)
    change.setdefault("name", name)
    expect_422(post_campaign(stack, team.owner, **change), field)
    assert [c for c in list_all(stack, team.owner, CAMPAIGNS) if c["name"] == name] == []


def test_campaigns_page_by_start_newest_first(stack):
    owner = signup(stack)
    starts = ["2026-03-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z", "2026-05-01T00:00:00.000Z",
              "2026-02-01T00:00:00.000Z", "2026-04-01T00:00:00.000Z"]
    for s in starts:
        created(post_campaign(stack, owner, starts_at=s))
    seen, _ = walk(stack, owner, CAMPAIGNS, 2)
    assert [c["starts_at"] for c in seen] == sorted(starts, reverse=True)
    idempotent_once(stack, owner, CAMPAIGNS, {"name": "Mailing", "kind": "mailing"},
                    lambda: len([c for c in list_all(stack, owner, CAMPAIGNS) if c["kind"] == "mailing"]))


def test_sales_reads_campaigns_but_only_managers_write_them(stack, team):
    c = created(post_campaign(stack, team.manager))
    assert c["id"] in ids(list_all(stack, team.sales, CAMPAIGNS))
    assert get_ok(stack, team.sales, rec_path(CAMPAIGNS, c["id"])) == c
    expect_403(post_campaign(stack, team.sales))
    expect_403(stack.patch(rec_path(CAMPAIGNS, c["id"]), json={"name": "x"}, headers=team.sales.headers))
    expect_403(stack.delete(rec_path(CAMPAIGNS, c["id"]), headers=team.sales.headers))
    expect_403(stack.get(CAMPAIGNS, headers=team.employee.headers))
    assert get_ok(stack, team.owner, rec_path(CAMPAIGNS, c["id"])) == c


# ---------------------------------------------------------------------------
# claims
# ---------------------------------------------------------------------------

def test_claim_crud(stack, team, client):
    r = post_claim(stack, team.owner, client["id"], subject="Scratched case", description="Arrived\nscratched")
    rec = crud_roundtrip(stack, team.owner, CLAIMS, r, {"description": "Arrived scratched, photos attached"})
    assert rec["status"] == "open" and rec["assignee_id"] == team.owner.user_id, rec
    assert rec["client_id"] == client["id"], rec


@pytest.mark.parametrize("flow", [["in_progress", "resolved"], ["in_progress", "rejected"], ["rejected"],
                                  ["resolved"], ["in_progress", "in_progress", "resolved"]])
def test_claim_status_moves_forward(stack, team, client, flow):
    claim = created(post_claim(stack, team.owner, client["id"]))
    for s in flow:
        claim = patch_ok(stack, team.owner, rec_path(CLAIMS, claim["id"]), {"status": s})
        assert claim["status"] == s
    assert get_ok(stack, team.owner, rec_path(CLAIMS, claim["id"]))["status"] == flow[-1]


@pytest.mark.parametrize("flow,bad", [(["in_progress"], "open"), (["resolved"], "in_progress"),
                                      (["resolved"], "open"), (["rejected"], "resolved"),
                                      (["in_progress", "resolved"], "rejected"), (["rejected"], "in_progress")])
def test_claim_status_backwards_or_out_of_a_final_state_is_409(stack, team, client, flow, bad):
    claim = created(post_claim(stack, team.owner, client["id"]))
    for s in flow:
        claim = patch_ok(stack, team.owner, rec_path(CLAIMS, claim["id"]), {"status": s})
    check_problem(stack.patch(rec_path(CLAIMS, claim["id"]), json={"status": bad}, headers=team.owner.headers), 409)
    assert get_ok(stack, team.owner, rec_path(CLAIMS, claim["id"])) == claim


@pytest.mark.parametrize("change,field", [({"status": "resolved"}, "status"), ({"status": "closed"}, "status"),
                                          ({"client_id": ...}, "client_id"), ({"client_id": "0" * 24}, "client_id"),
                                          ({"subject": ...}, "subject"), ({"assignee_id": "0" * 24}, "assignee_id"),
                                          ({"severity": "high"}, "severity")])
def test_invalid_claim_is_422(stack, team, change, field):
    c = make_client(stack, team.owner)
    expect_422(post_claim(stack, team.owner, c["id"], **change), field)
    assert list_all(stack, team.owner, CLAIMS, client_id=c["id"]) == []


def test_claims_filter_by_status_and_page(stack, team):
    c = make_client(stack, team.owner)
    claims = [created(post_claim(stack, team.owner, c["id"])) for _ in range(5)]
    patch_ok(stack, team.owner, rec_path(CLAIMS, claims[1]["id"]), {"status": "in_progress"})
    assert ids(list_all(stack, team.owner, CLAIMS, client_id=c["id"], status="in_progress")) == [claims[1]["id"]]
    seen, pages = walk(stack, team.owner, CLAIMS, 2, client_id=c["id"], sort="created_at")
    assert ids(seen) == ids(claims) and pages in (3, 4)
    expect_422(stack.get(CLAIMS, params={"status": "closed"}, headers=team.owner.headers), "status")
    idempotent_once(stack, team.owner, CLAIMS, {"client_id": c["id"], "subject": "Once"},
                    lambda: len(list_all(stack, team.owner, CLAIMS, client_id=c["id"])) - 5)


def test_sales_sees_and_works_only_their_own_claims(stack, team, client):
    mine = created(post_claim(stack, team.sales, client["id"]))
    assert mine["assignee_id"] == team.sales.user_id
    theirs = created(post_claim(stack, team.owner, client["id"]))
    seen = ids(list_all(stack, team.sales, CLAIMS, client_id=client["id"]))
    assert mine["id"] in seen and theirs["id"] not in seen
    path = rec_path(CLAIMS, theirs["id"])
    check_problem(stack.get(path, headers=team.sales.headers), 404)
    check_problem(stack.patch(path, json={"status": "rejected"}, headers=team.sales.headers), 404)
    check_problem(stack.delete(path, headers=team.sales.headers), 404)
    assert get_ok(stack, team.owner, path) == theirs
    expect_403(post_claim(stack, team.sales, client["id"], assignee_id=team.owner.user_id))
    assert patch_ok(stack, team.sales, rec_path(CLAIMS, mine["id"]), {"status": "in_progress"})["status"] == "in_progress"
    assert theirs["id"] in ids(list_all(stack, team.manager, CLAIMS, client_id=client["id"]))


# ---------------------------------------------------------------------------
# custom field definitions
# ---------------------------------------------------------------------------

def test_custom_field_crud(stack):
    owner = signup(stack)
    r = stack.post(FIELDS, headers=owner.headers, json={"entity": "lead", "key": "tier", "label": "Tier",
                                                         "type": "enum", "options": ["gold", "silver"]})
    f = crud_roundtrip(stack, owner, FIELDS, r, {"label": "Customer tier"})
    assert (f["entity"], f["key"], f["type"], f["options"], f["required"]) == ("lead", "tier", "enum",
                                                                               ["gold", "silver"], False), f


def test_custom_field_options_and_removal_take_effect(stack):
    owner = signup(stack)
    f = created(stack.post(FIELDS, headers=owner.headers, json={"entity": "lead", "key": "tier", "label": "Tier",
                                                                 "type": "enum", "options": ["gold"]}))
    lead = {"name": "L", "email": uniq_email()}
    expect_422(stack.post("/v1/crm/leads", json=dict(lead, custom={"tier": "bronze"}), headers=owner.headers),
               "custom.tier")
    patch_ok(stack, owner, rec_path(FIELDS, f["id"]), {"options": ["gold", "bronze"]})
    assert created(stack.post("/v1/crm/leads", json=dict(lead, custom={"tier": "bronze"}),
                              headers=owner.headers))["custom"] == {"tier": "bronze"}
    assert stack.delete(rec_path(FIELDS, f["id"]), headers=owner.headers).status_code == 204
    expect_422(stack.post("/v1/crm/leads", json=dict(lead, email=uniq_email(), custom={"tier": "gold"}),
                          headers=owner.headers), "custom.tier")


def test_custom_fields_list_by_entity_and_keys_are_unique_per_entity(stack):
    owner = signup(stack)
    a = created(stack.post(FIELDS, headers=owner.headers, json={"entity": "lead", "key": "size", "label": "Size", "type": "number"}))
    b = created(stack.post(FIELDS, headers=owner.headers, json={"entity": "deal", "key": "size", "label": "Size", "type": "number"}))
    check_problem(stack.post(FIELDS, headers=owner.headers,
                             json={"entity": "lead", "key": "size", "label": "Size again", "type": "string"}), 409)
    assert ids(list_all(stack, owner, FIELDS, entity="lead")) == [a["id"]]
    assert ids(list_all(stack, owner, FIELDS, entity="deal")) == [b["id"]]
    assert get_ok(stack, owner, rec_path(FIELDS, a["id"])) == a


@pytest.mark.parametrize("change,field", [({"type": "enum"}, "options"), ({"options": ["a"]}, "options"),
                                          ({"key": "Bad-Key"}, "key"), ({"key": "1st"}, "key"),
                                          ({"type": "json"}, "type"), ({"entity": "task"}, "entity"),
                                          ({"label": ...}, "label"), ({"required": "yes"}, "required"),
                                          ({"default": 1}, "default")])
def test_invalid_custom_field_is_422(stack, team, change, field):
    key = "k" + secrets.token_hex(4)
    body = with_fields({"entity": "client", "key": key, "label": "Label", "type": "number"}, change)
    expect_422(stack.post(FIELDS, json=body, headers=team.owner.headers), field)
    assert [f for f in list_all(stack, team.owner, FIELDS) if f["key"] == key] == []


@pytest.mark.parametrize("change,field", [({"type": "string"}, "type"), ({"key": "other"}, "key"),
                                          ({"entity": "deal"}, "entity")])
def test_custom_field_key_type_and_entity_are_fixed(stack, team, change, field):
    f = created(stack.post(FIELDS, headers=team.owner.headers,
                           json={"entity": "client", "key": "k" + secrets.token_hex(4), "label": "L", "type": "number"}))
    expect_422(stack.patch(rec_path(FIELDS, f["id"]), json=change, headers=team.owner.headers), field)
    assert get_ok(stack, team.owner, rec_path(FIELDS, f["id"])) == f


@pytest.mark.parametrize("role", ["manager", "sales"])
def test_only_settings_writers_define_custom_fields(stack, team, role):
    who = team.member(role)
    f = created(stack.post(FIELDS, headers=team.owner.headers,
                           json={"entity": "client", "key": "k" + secrets.token_hex(4), "label": "L", "type": "bool"}))
    assert get_ok(stack, who, rec_path(FIELDS, f["id"])) == f
    key = "k" + secrets.token_hex(4)
    expect_403(stack.post(FIELDS, headers=who.headers, json={"entity": "client", "key": key, "label": "L", "type": "bool"}))
    expect_403(stack.patch(rec_path(FIELDS, f["id"]), json={"label": "Mine"}, headers=who.headers))
    expect_403(stack.delete(rec_path(FIELDS, f["id"]), headers=who.headers))
    assert get_ok(stack, team.owner, rec_path(FIELDS, f["id"])) == f


# ---------------------------------------------------------------------------
# another tenant
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["interactions", "tasks", "claims", "campaigns", "fields"])
def test_another_tenants_record_is_404_and_unchanged(stack, team, client, other, kind):
    make = {
        "interactions": lambda: post_interaction(stack, team.owner, client["id"]),
        "tasks": lambda: post_task(stack, team.owner, related={"client_id": client["id"]}),
        "claims": lambda: post_claim(stack, team.owner, client["id"]),
        "campaigns": lambda: post_campaign(stack, team.owner),
        "fields": lambda: stack.post(FIELDS, headers=team.owner.headers, json={
            "entity": "deal", "key": "k" + secrets.token_hex(4), "label": "L", "type": "number"}),
    }[kind]
    change = {"interactions": {"summary": "x"}, "tasks": {"done": True}, "claims": {"status": "rejected"},
              "campaigns": {"name": "x"}, "fields": {"label": "x"}}[kind]
    rec = created(make())
    path = f"{CRM}/{kind}/{rec['id']}"
    check_problem(stack.get(path, headers=other.headers), 404)
    check_problem(stack.patch(path, json=change, headers=other.headers), 404)
    check_problem(stack.patch(path, json=change, headers=hdr(other, if_match=1)), 404)
    check_problem(stack.delete(path, headers=other.headers), 404)
    assert rec["id"] not in ids(list_all(stack, other, f"{CRM}/{kind}"))
    assert get_ok(stack, team.owner, path) == rec


def test_records_of_another_tenant_cannot_be_linked(stack, team, other):
    theirs = make_client(stack, other)
    expect_422(post_interaction(stack, team.owner, theirs["id"]), "client_id")
    expect_422(post_task(stack, team.owner, related={"client_id": theirs["id"]}), "related")
    expect_422(post_claim(stack, team.owner, theirs["id"]), "client_id")
    expect_422(post_task(stack, team.owner, assignee_id=other.user_id), "assignee_id")
    assert list_all(stack, other, CLAIMS, client_id=theirs["id"]) == []
