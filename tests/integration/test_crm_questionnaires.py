"""CRM questionnaires (/v1/crm/questionnaires, issue 17): questions of four
types checked on the way in, sent to a client's contacts as links that need
no login, answers checked against the questions and taken once per link -
even when twenty submissions race over three server processes - shown on
the client's timeline and summed up per question with exact arithmetic;
the public link is rate limited across processes. Black-box: real server
processes, looked at through the API only."""

import re
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from jsonschema import Draft202012Validator

from conftest import HTTP_TIMEOUT_S, check_problem, signup
from crm_support import (  # noqa: F401 (fixtures among them)
    ID_RE, TS_RE, hdr, uniq, errors_of, expect_403, get_ok, list_all, stack, team, other,
    make_client, created, iso, CLIENTS)
from test_exact_writes import Trio, race, spellings

QS = "/v1/crm/questionnaires"
LINK_RE = re.compile(r"^/v1/questionnaire-links/[0-9a-f]{24}[A-Za-z0-9_-]{43}$")

QUESTIONS = [
    {"key": "plan", "text": "Which plan do you use?", "type": "single",
     "options": ["basic", "pro", "enterprise"], "required": True},
    {"key": "channels", "text": "Where do you hear from us?", "type": "multiple",
     "options": ["email", "phone", "events"]},
    {"key": "nps", "text": "How likely are you to recommend us?", "type": "scale", "min": 0,
     "max": 10, "required": True},
    {"key": "comment", "text": "Anything else?", "type": "text"},
]


def wait_for(what, check, within=20.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def public(method, base_url, link, **kw):
    """A request to a link, as a contact's browser makes it (no login). The
    per-address limit is not under test here: a 429 is waited out."""
    for _ in range(120):
        r = requests.request(method, base_url + link, timeout=HTTP_TIMEOUT_S, **kw)
        if r.status_code != 429:
            return r
        time.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))
    return r


def make_questionnaire(stack, who, status="open", questions=None, **fields):
    body = {"title": uniq("Survey"), "questions": questions or QUESTIONS, "status": status}
    body.update(fields)
    return created(stack.post(QS, json=body, headers=hdr(who)), "questionnaire")


def make_contact(stack, who, client_id):
    return created(stack.post(f"{CLIENTS}/{client_id}/contacts", json={"name": uniq("Contact")},
                              headers=hdr(who)), "contact")


def invite(stack, who, qid, contact_ids, **fields):
    body = {"contact_ids": contact_ids}
    body.update(fields)
    r = stack.post(f"{QS}/{qid}/invitations", json=body, headers=hdr(who))
    assert r.status_code == 201, f"inviting: {r.status_code} {r.text[:500]}"
    return r.json()["items"]


def invitations(stack, who, qid):
    return list_all(stack, who, f"{QS}/{qid}/invitations")


def timeline_answers(stack, who, client_id):
    body = get_ok(stack, who, f"{CLIENTS}/{client_id}/timeline?limit=200")
    return [i for i in body["items"] if i["type"] == "questionnaire_answer"]


@pytest.fixture(scope="module")
def sent(stack, team):
    """An open questionnaire sent to one contact of a new client: (q, client,
    contact, invitation)."""
    q = make_questionnaire(stack, team.owner)
    cl = make_client(stack, team.owner)
    ct = make_contact(stack, team.owner, cl["id"])
    (inv,) = invite(stack, team.owner, q["id"], [ct["id"]])
    return q, cl, ct, inv


def fresh_link(stack, team, q=None, **fields):
    q = q or make_questionnaire(stack, team.owner)
    cl = make_client(stack, team.owner)
    ct = make_contact(stack, team.owner, cl["id"])
    (inv,) = invite(stack, team.owner, q["id"], [ct["id"]], **fields)
    return q, cl, ct, inv


GOOD = {"plan": "pro", "channels": ["email", "events"], "nps": 9, "comment": "Fine"}

# ---------------------------------------------------------------------------
# the questionnaire as a resource
# ---------------------------------------------------------------------------


def test_a_questionnaire_starts_as_a_draft_with_its_questions_as_checked(stack, team):
    r = stack.post(QS, json={"title": "Onboarding", "questions": QUESTIONS}, headers=hdr(team.owner))
    q = created(r)
    assert ID_RE.match(q["id"]) and q["status"] == "draft" and q["version"] == 1
    assert [x["key"] for x in q["questions"]] == ["plan", "channels", "nps", "comment"]
    assert q["questions"][1]["required"] is False  # not said: optional
    assert q["questions"][2]["min"] == 0 and q["questions"][2]["max"] == 10
    assert "options" not in q["questions"][3]
    assert get_ok(stack, team.owner, f"{QS}/{q['id']}")["questions"] == q["questions"]


def question(**fields):
    base = {"key": "q1", "text": "Question?", "type": "single", "options": ["a", "b"]}
    for k, v in fields.items():
        if v is ...:
            base.pop(k, None)
        else:
            base[k] = v
    return base


BAD_QUESTIONS = [
    ("duplicate keys", [question(), question()], "questions[1].key"),
    ("choice without options", [question(options=...)], "questions[0].options"),
    ("one option", [question(options=["a"])], "questions[0].options"),
    ("repeated option", [question(options=["a", "a"])], "questions[0].options"),
    ("options on a text", [question(type="text")], "questions[0].options"),
    ("options on a scale", [question(type="scale", min=1, max=5)], "questions[0].options"),
    ("scale without bounds", [question(type="scale", options=...)], "questions[0].min"),
    ("scale min not below max", [question(type="scale", options=..., min=5, max=5)],
     "questions[0].max"),
    ("scale past 100", [question(type="scale", options=..., min=0, max=101)], "questions[0].max"),
    ("negative scale", [question(type="scale", options=..., min=-1, max=3)], "questions[0].min"),
    ("fractional bound", [question(type="scale", options=..., min=0, max=4.5)],
     "questions[0].max"),
    ("min on a choice", [question(min=1)], "questions[0].min"),
    ("unknown type", [question(type="ranking")], "questions[0].type"),
    ("bad key", [question(key="Q 1")], "questions[0].key"),
    ("long text", [question(text="x" * 501)], "questions[0].text"),
    ("empty text", [question(text="")], "questions[0].text"),
    ("unknown member", [question(hint="x")], "questions[0].hint"),
    ("required not a bool", [question(required="yes")], "questions[0].required"),
    ("not an object", ["q1"], "questions[0]"),
    ("no questions", [], "questions"),
    ("too many questions", [question(key=f"q{i}") for i in range(51)], "questions"),
    ("long option", [question(options=["a", "b" * 201])], "questions[0].options"),
]


@pytest.mark.parametrize("name,questions,field", BAD_QUESTIONS, ids=[b[0] for b in BAD_QUESTIONS])
def test_bad_questions_are_422_naming_the_field_and_make_nothing(stack, team, name, questions,
                                                                 field):
    title = uniq("Bad")
    r = stack.post(QS, json={"title": title, "questions": questions}, headers=hdr(team.owner))
    body = check_problem(r, 422)
    assert field in errors_of(body), f"{name}: {body}"
    assert not [q for q in list_all(stack, team.owner, QS) if q["title"] == title]


def test_every_bad_question_is_named_at_once(stack, team):
    r = stack.post(QS, json={"title": "x", "questions": [
        question(key="a", options=...), question(key="b", type="scale", options=..., min=3,
                                                 max=1)]}, headers=hdr(team.owner))
    assert {"questions[0].options", "questions[1].max"} <= errors_of(check_problem(r, 422))


def test_questions_not_an_array_and_missing_title_are_422(stack, team):
    r = stack.post(QS, json={"questions": {"a": 1}}, headers=hdr(team.owner))
    assert {"title", "questions"} <= errors_of(check_problem(r, 422))


def test_questions_change_only_while_a_draft(stack, team):
    q = make_questionnaire(stack, team.owner, status="draft")
    changed = [question(key="only", type="text", options=...)]
    r = stack.patch(f"{QS}/{q['id']}", json={"questions": changed}, headers=hdr(team.owner))
    assert r.status_code == 200 and [x["key"] for x in r.json()["questions"]] == ["only"], r.text
    r = stack.patch(f"{QS}/{q['id']}", json={"status": "open"}, headers=hdr(team.owner))
    assert r.status_code == 200 and r.json()["status"] == "open", r.text
    r = stack.patch(f"{QS}/{q['id']}", json={"questions": QUESTIONS}, headers=hdr(team.owner))
    check_problem(r, 409)
    r = stack.patch(f"{QS}/{q['id']}", json={"status": "draft"}, headers=hdr(team.owner))
    check_problem(r, 409)
    now = get_ok(stack, team.owner, f"{QS}/{q['id']}")
    assert [x["key"] for x in now["questions"]] == ["only"] and now["status"] == "open"
    # the title still changes
    r = stack.patch(f"{QS}/{q['id']}", json={"title": "Renamed"}, headers=hdr(team.owner))
    assert r.status_code == 200 and r.json()["title"] == "Renamed"


def test_a_sent_questionnaire_is_not_deleted_but_a_draft_is(stack, team, sent):
    q = sent[0]
    check_problem(stack.delete(f"{QS}/{q['id']}", headers=hdr(team.owner)), 409)
    assert get_ok(stack, team.owner, f"{QS}/{q['id']}")["id"] == q["id"]
    d = make_questionnaire(stack, team.owner, status="draft")
    assert stack.delete(f"{QS}/{d['id']}", headers=hdr(team.owner)).status_code == 204
    assert stack.get(f"{QS}/{d['id']}", headers=hdr(team.owner)).status_code == 404


# ---------------------------------------------------------------------------
# sending
# ---------------------------------------------------------------------------


def test_invitations_show_their_link_once_and_never_the_token_again(stack, team):
    q = make_questionnaire(stack, team.owner)
    cl = make_client(stack, team.owner)
    a, b = make_contact(stack, team.owner, cl["id"]), make_contact(stack, team.owner, cl["id"])
    items = invite(stack, team.owner, q["id"], [a["id"], b["id"]])
    assert [i["contact_id"] for i in items] == [a["id"], b["id"]]
    for i in items:
        assert LINK_RE.match(i["link"]) and i["link"].endswith(i["token"]), i
        assert i["client_id"] == cl["id"] and i["status"] == "pending", i
        assert i["questionnaire_id"] == q["id"] and i["expires_at"] is None, i
        assert not [k for k in i if k.startswith("_")], i
    assert items[0]["token"] != items[1]["token"]
    listed = invitations(stack, team.owner, q["id"])
    assert sorted(x["id"] for x in listed) == sorted(i["id"] for i in items)
    for x in listed:
        assert x["status"] == "pending" and "token" not in x and "link" not in x, x
        assert not [k for k in x if k.startswith("_") or "hash" in k], x
        assert not [v for v in x.values() if isinstance(v, str) and
                    any(v == i["token"] for i in items)], x


def test_only_an_open_questionnaire_is_sent(stack, team):
    cl = make_client(stack, team.owner)
    ct = make_contact(stack, team.owner, cl["id"])
    q = make_questionnaire(stack, team.owner, status="draft")
    r = stack.post(f"{QS}/{q['id']}/invitations", json={"contact_ids": [ct["id"]]},
                   headers=hdr(team.owner))
    check_problem(r, 409)
    assert invitations(stack, team.owner, q["id"]) == []


def test_bad_invitation_bodies_are_422_and_send_nothing(stack, team):
    q = make_questionnaire(stack, team.owner)
    cl = make_client(stack, team.owner)
    ct = make_contact(stack, team.owner, cl["id"])
    past = iso(datetime.now(timezone.utc) - timedelta(minutes=1))
    cases = [
        ({}, "contact_ids"),
        ({"contact_ids": []}, "contact_ids"),
        ({"contact_ids": "x"}, "contact_ids"),
        ({"contact_ids": ["nope"]}, "contact_ids[0]"),
        ({"contact_ids": [ct["id"], 5]}, "contact_ids[1]"),
        ({"contact_ids": [ct["id"], ct["id"].upper()]}, "contact_ids[1]"),
        ({"contact_ids": [ct["id"]] * 101}, "contact_ids"),
        ({"contact_ids": [ct["id"]], "expires_at": past}, "expires_at"),
        ({"contact_ids": [ct["id"]], "expires_at": "tomorrow"}, "expires_at"),
        ({"contact_ids": [ct["id"]], "message": "hi"}, "message"),
    ]
    for body, field in cases:
        r = stack.post(f"{QS}/{q['id']}/invitations", json=body, headers=hdr(team.owner))
        assert field in errors_of(check_problem(r, 422)), (body, r.text)
    assert invitations(stack, team.owner, q["id"]) == []


def test_a_contact_that_is_not_the_tenants_is_404_and_sends_nothing(stack, team, other):
    q = make_questionnaire(stack, team.owner)
    mine = make_contact(stack, team.owner, make_client(stack, team.owner)["id"])
    theirs = make_contact(stack, other, make_client(stack, other)["id"])
    for ids in ([theirs["id"]], [mine["id"], theirs["id"]], [mine["id"], "0" * 24]):
        r = stack.post(f"{QS}/{q['id']}/invitations", json={"contact_ids": ids},
                       headers=hdr(team.owner))
        check_problem(r, 404)
    assert invitations(stack, team.owner, q["id"]) == []


# ---------------------------------------------------------------------------
# the public link
# ---------------------------------------------------------------------------


def test_a_link_shows_the_questions_and_nothing_of_the_tenant(stack, team, sent):
    q, cl, ct, inv = sent
    r = public("GET", stack.base_url, inv["link"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"title", "intro", "questions", "expires_at"}, body
    assert body["title"] == q["title"] and body["questions"] == q["questions"]
    text = r.text
    for secret in (cl["id"], ct["id"], q["id"], cl["name"], ct["name"], team.owner.tenant["id"]):
        assert secret not in text


def test_a_full_answer_is_stored_once_on_the_clients_timeline(stack, team):
    q, cl, ct, inv = fresh_link(stack, team)
    r = public("POST", stack.base_url, inv["link"], json={"answers": GOOD})
    assert r.status_code == 201, r.text
    assert r.json()["id"] == inv["id"] and TS_RE.match(r.json()["answered_at"])
    again = public("POST", stack.base_url, inv["link"], json={"answers": GOOD})
    check_problem(again, 409, "already-answered")
    check_problem(public("GET", stack.base_url, inv["link"]), 409, "already-answered")
    (item,) = timeline_answers(stack, team.owner, cl["id"])
    shown = item["questionnaire_answer"]
    assert shown["id"] == inv["id"] and shown["contact_id"] == ct["id"]
    assert shown["questionnaire_id"] == q["id"] and shown["title"] == q["title"]
    assert shown["answers"] == GOOD
    (listed,) = invitations(stack, team.owner, q["id"])
    assert listed["status"] == "answered" and listed["answered_at"] == r.json()["answered_at"]


def test_an_answer_is_an_event_on_the_questionnaires_topic(stack, team):
    q, cl, ct, inv = fresh_link(stack, team)
    assert public("POST", stack.base_url, inv["link"], json={"answers": GOOD}).status_code == 201

    def answered():
        r = stack.get("/v1/changes", params={"topics": "crm.questionnaires", "limit": 200},
                      headers=hdr(team.owner))
        assert r.status_code == 200, r.text
        return [e for e in r.json()["items"]
                if e["event"] == "crm.questionnaire.answered" and e["entity_id"] == inv["id"]]

    (ev,) = wait_for("the answered event", answered)
    assert ev["data"]["answers"] == GOOD and ev["data"]["client_id"] == cl["id"]


def test_an_optional_question_may_be_left_out(stack, team):
    q, cl, ct, inv = fresh_link(stack, team)
    r = public("POST", stack.base_url, inv["link"], json={"answers": {"plan": "basic", "nps": 0}})
    assert r.status_code == 201, r.text
    (item,) = timeline_answers(stack, team.owner, cl["id"])
    assert item["questionnaire_answer"]["answers"] == {"plan": "basic", "nps": 0}


BAD_ANSWERS = [
    ("unknown question", dict(GOOD, color="red"), "answers.color"),
    ("missing required choice", {k: v for k, v in GOOD.items() if k != "plan"}, "answers.plan"),
    ("missing required scale", {k: v for k, v in GOOD.items() if k != "nps"}, "answers.nps"),
    ("option not offered", dict(GOOD, plan="gold"), "answers.plan"),
    ("single given a list", dict(GOOD, plan=["pro"]), "answers.plan"),
    ("multiple given a string", dict(GOOD, channels="email"), "answers.channels"),
    ("multiple with an unoffered option", dict(GOOD, channels=["email", "fax"]),
     "answers.channels"),
    ("multiple repeating an option", dict(GOOD, channels=["email", "email"]), "answers.channels"),
    ("multiple empty", dict(GOOD, channels=[]), "answers.channels"),
    ("scale above max", dict(GOOD, nps=11), "answers.nps"),
    ("scale below min", dict(GOOD, nps=-1), "answers.nps"),
    ("scale fractional", dict(GOOD, nps=7.5), "answers.nps"),
    ("scale as text", dict(GOOD, nps="9"), "answers.nps"),
    ("text too long", dict(GOOD, comment="x" * 2001), "answers.comment"),
    ("text empty", dict(GOOD, comment=""), "answers.comment"),
    ("text a number", dict(GOOD, comment=5), "answers.comment"),
]


def test_bad_answers_are_422_naming_each_question_and_store_nothing(stack, team):
    q, cl, ct, inv = fresh_link(stack, team)
    for name, answers, field in BAD_ANSWERS:
        r = public("POST", stack.base_url, inv["link"], json={"answers": answers})
        assert field in errors_of(check_problem(r, 422)), (name, r.text)
    r = public("POST", stack.base_url, inv["link"], json={"answers": {"nps": 99, "x": 1}})
    assert {"answers.nps", "answers.x", "answers.plan"} <= errors_of(check_problem(r, 422))
    for body, field in (({}, "answers"), ({"answers": [1]}, "answers"),
                        ({"answers": GOOD, "name": "me"}, "name")):
        r = public("POST", stack.base_url, inv["link"], json=body)
        assert field in errors_of(check_problem(r, 422)), (body, r.text)
    assert timeline_answers(stack, team.owner, cl["id"]) == []
    assert invitations(stack, team.owner, q["id"])[0]["status"] == "pending"
    # the link still takes a good answer
    assert public("POST", stack.base_url, inv["link"], json={"answers": GOOD}).status_code == 201


def test_malformed_bodies_to_a_link_are_4xx_and_the_server_keeps_serving(stack, team):
    q, cl, ct, inv = fresh_link(stack, team)
    r = public("POST", stack.base_url, inv["link"], data="{not json",
               headers={"Content-Type": "application/json"})
    check_problem(r, 400)
    r = public("POST", stack.base_url, inv["link"], data="answers=1",
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    check_problem(r, 415)
    assert public("GET", stack.base_url, inv["link"]).status_code == 200


def test_tokens_that_are_not_a_links_are_404(stack, team, sent):
    inv = sent[3]
    link = inv["link"]
    prefix = "/v1/questionnaire-links/"
    token = link[len(prefix):]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (prefix + token.upper(), prefix + flipped, prefix + token[:24],
                prefix + "0" * 24 + token[24:], prefix + token + "x", prefix + "x"):
        check_problem(public("GET", stack.base_url, bad), 404)
        check_problem(public("POST", stack.base_url, bad, json={"answers": GOOD}), 404)
    assert public("GET", stack.base_url, link).status_code == 200


def test_a_closed_questionnaire_refuses_its_links_until_reopened(stack, team):
    q, cl, ct, inv = fresh_link(stack, team)
    r = stack.patch(f"{QS}/{q['id']}", json={"status": "closed"}, headers=hdr(team.owner))
    assert r.status_code == 200, r.text
    check_problem(public("GET", stack.base_url, inv["link"]), 409, "questionnaire-closed")
    r = public("POST", stack.base_url, inv["link"], json={"answers": GOOD})
    check_problem(r, 409, "questionnaire-closed")
    assert timeline_answers(stack, team.owner, cl["id"]) == []
    r = stack.post(f"{QS}/{q['id']}/invitations", json={"contact_ids": [ct["id"]]},
                   headers=hdr(team.owner))
    check_problem(r, 409)
    r = stack.patch(f"{QS}/{q['id']}", json={"status": "open"}, headers=hdr(team.owner))
    assert r.status_code == 200, r.text
    assert public("POST", stack.base_url, inv["link"], json={"answers": GOOD}).status_code == 201


def test_an_expired_link_is_refused_and_listed_as_expired(stack, team):
    soon = datetime.now(timezone.utc) + timedelta(seconds=3)
    q, cl, ct, inv = fresh_link(stack, team, expires_at=iso(soon))
    assert inv["expires_at"] == iso(soon)

    def refused():  # a Response is falsy when 4xx: wrapped in a list
        r = public("GET", stack.base_url, inv["link"])
        return [r] if r.status_code == 409 else None

    (got,) = wait_for("the link expiring", refused)
    check_problem(got, 409, "link-expired")
    r = public("POST", stack.base_url, inv["link"], json={"answers": GOOD})
    check_problem(r, 409, "link-expired")
    assert invitations(stack, team.owner, q["id"])[0]["status"] == "expired"
    assert timeline_answers(stack, team.owner, cl["id"]) == []


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


def test_results_add_up_exactly(stack, team):
    q = make_questionnaire(stack, team.owner)
    cl = make_client(stack, team.owner)
    contacts = [make_contact(stack, team.owner, cl["id"])["id"] for _ in range(4)]
    links = invite(stack, team.owner, q["id"], contacts)
    given = [
        {"plan": "pro", "channels": ["email", "events"], "nps": 2, "comment": "first"},
        {"plan": "pro", "channels": ["email"], "nps": 4},
        {"plan": "basic", "nps": 5, "comment": "third"},
    ]
    for inv, answers in zip(links, given):
        r = public("POST", stack.base_url, inv["link"], json={"answers": answers})
        assert r.status_code == 201, r.text
    res = get_ok(stack, team.owner, f"{QS}/{q['id']}/results")
    assert res["invited"] == 4 and res["answered"] == 3 and res["questionnaire_id"] == q["id"]
    plan, channels, nps, comment = res["questions"]
    assert plan["key"] == "plan" and plan["answered"] == 3
    assert plan["options"] == [{"option": "basic", "count": 1}, {"option": "pro", "count": 2},
                               {"option": "enterprise", "count": 0}]
    assert channels["answered"] == 2
    assert channels["options"] == [{"option": "email", "count": 2}, {"option": "phone", "count": 0},
                                   {"option": "events", "count": 1}]
    # (2 + 4 + 5) / 3 = 3.666..., half up to 4 decimals
    assert nps["answered"] == 3 and nps["mean"] == "3.6667"
    assert [d["value"] for d in nps["distribution"]] == list(range(0, 11))
    assert {d["value"]: d["count"] for d in nps["distribution"] if d["count"]} == {2: 1, 4: 1, 5: 1}
    assert comment["answered"] == 2
    assert [t["text"] for t in comment["latest"]] == ["third", "first"]
    assert comment["latest"][0]["answer_id"] == links[2]["id"]


def test_results_of_an_unanswered_questionnaire_are_zero(stack, team):
    q = make_questionnaire(stack, team.owner)
    res = get_ok(stack, team.owner, f"{QS}/{q['id']}/results")
    assert res["invited"] == 0 and res["answered"] == 0
    assert res["questions"][2]["mean"] is None and res["questions"][3]["latest"] == []
    assert all(o["count"] == 0 for o in res["questions"][0]["options"])


def test_ids_in_any_case_name_the_same_questionnaire(stack, team, sent):
    q = sent[0]
    for spelled in spellings(q["id"]):
        assert get_ok(stack, team.owner, f"{QS}/{spelled}")["id"] == q["id"]
        assert get_ok(stack, team.owner, f"{QS}/{spelled}/results")["questionnaire_id"] == q["id"]
        assert len(invitations(stack, team.owner, spelled)) == 1


def test_a_questionnaire_and_contacts_named_in_any_case_are_sent_once_each(stack, team):
    q = make_questionnaire(stack, team.owner)
    cl = make_client(stack, team.owner)
    cts = [make_contact(stack, team.owner, cl["id"])["id"] for _ in range(3)]
    for spelled_q, ct in zip(spellings(q["id"]), cts):
        (spelled_ct,) = [s for s in spellings(ct) if s != ct][:1]
        (inv,) = invite(stack, team.owner, spelled_q, [spelled_ct])
        assert inv["questionnaire_id"] == q["id"] and inv["contact_id"] == ct, inv
    assert sorted(x["contact_id"] for x in invitations(stack, team.owner, q["id"])) == sorted(cts)


def test_the_openapi_document_describes_the_answers_as_served(stack, team):
    doc = stack.get("/v1/openapi.json").json()

    def check(path, method, r, status):
        assert r.status_code == status, r.text
        ref = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
        schema = dict(ref["schema"], components=doc["components"])
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(r.json())]
        assert errors == [], (path, method, errors)

    q = make_questionnaire(stack, team.owner, intro="Two minutes")
    cl = make_client(stack, team.owner)
    ct = make_contact(stack, team.owner, cl["id"])
    r = stack.post(f"{QS}/{q['id']}/invitations", json={"contact_ids": [ct["id"]]},
                   headers=hdr(team.owner))
    check(QS + "/{id}/invitations", "post", r, 201)
    link = r.json()["items"][0]["link"]
    check("/v1/questionnaire-links/{token}", "get", public("GET", stack.base_url, link), 200)
    r = public("POST", stack.base_url, link, json={"answers": GOOD})
    check("/v1/questionnaire-links/{token}", "post", r, 201)
    r = stack.get(f"{QS}/{q['id']}/results", headers=hdr(team.owner))
    check(QS + "/{id}/results", "get", r, 200)
    for op in (doc["paths"]["/v1/questionnaire-links/{token}"]["get"],
               doc["paths"]["/v1/questionnaire-links/{token}"]["post"]):
        assert {"404", "409", "429"} <= set(op["responses"]), op["responses"].keys()
        assert not op.get("security"), op.get("security")


# ---------------------------------------------------------------------------
# permissions and tenants
# ---------------------------------------------------------------------------


def test_sales_reads_but_does_not_write_questionnaires(stack, team, sent):
    q, cl, ct, inv = sent
    assert get_ok(stack, team.sales, f"{QS}/{q['id']}")["id"] == q["id"]
    assert get_ok(stack, team.sales, f"{QS}/{q['id']}/results")["invited"] >= 1
    expect_403(stack.post(QS, json={"title": "x", "questions": QUESTIONS}, headers=hdr(team.sales)))
    expect_403(stack.patch(f"{QS}/{q['id']}", json={"title": "x"}, headers=hdr(team.sales)))
    expect_403(stack.post(f"{QS}/{q['id']}/invitations", json={"contact_ids": [ct["id"]]},
                          headers=hdr(team.sales)))
    assert len(invitations(stack, team.owner, q["id"])) == 1


def test_a_manager_runs_questionnaires(stack, team):
    q = make_questionnaire(stack, team.manager)
    cl = make_client(stack, team.manager)
    ct = make_contact(stack, team.manager, cl["id"])
    (inv,) = invite(stack, team.manager, q["id"], [ct["id"]])
    assert get_ok(stack, team.manager, f"{QS}/{q['id']}/results")["invited"] == 1


@pytest.mark.parametrize("role", ["employee", "accountant", "warehouse"])
def test_roles_without_the_permission_get_403(stack, team, sent, role):
    who = getattr(team, role)
    q = sent[0]
    for path in (QS, f"{QS}/{q['id']}", f"{QS}/{q['id']}/results", f"{QS}/{q['id']}/invitations"):
        expect_403(stack.get(path, headers=hdr(who)))


def test_the_timeline_shows_answers_only_to_readers_of_questionnaires(stack, team):
    q, cl, ct, inv = fresh_link(stack, team)
    assert public("POST", stack.base_url, inv["link"], json={"answers": GOOD}).status_code == 201
    assert len(timeline_answers(stack, team.sales, cl["id"])) == 1
    assert timeline_answers(stack, team.employee, cl["id"]) == []  # reads clients, not these


def test_another_tenants_questionnaire_is_404_and_unchanged(stack, team, other, sent):
    q, cl, ct, inv = sent
    mine = make_contact(stack, other, make_client(stack, other)["id"])
    for spelled in spellings(q["id"]):
        for path in (f"{QS}/{spelled}", f"{QS}/{spelled}/results", f"{QS}/{spelled}/invitations"):
            check_problem(stack.get(path, headers=hdr(other)), 404)
        check_problem(stack.patch(f"{QS}/{spelled}", json={"title": "Mine"}, headers=hdr(other)),
                      404)
        r = stack.post(f"{QS}/{spelled}/invitations", json={"contact_ids": [mine["id"]]},
                       headers=hdr(other))
        check_problem(r, 404)
        check_problem(stack.delete(f"{QS}/{spelled}", headers=hdr(other)), 404)
    assert q["id"] not in [x["id"] for x in list_all(stack, other, QS)]
    now = get_ok(stack, team.owner, f"{QS}/{q['id']}")
    assert now["title"] == q["title"] and now["version"] == q["version"]
    assert len(invitations(stack, team.owner, q["id"])) == 1


# ---------------------------------------------------------------------------
# across processes
# ---------------------------------------------------------------------------


def trio_link(trio, **overrides):
    owner = signup(trio.procs[0])
    url = lambda i, p: trio.url(i, p)  # noqa: E731
    r = requests.post(url(0, QS), json={"title": "Race", "questions": QUESTIONS, "status": "open"},
                      headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 201, r.text
    q = r.json()
    r = requests.post(url(1, CLIENTS), json={"name": "Race client", "kind": "company"},
                      headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 201, r.text
    cl = r.json()
    r = requests.post(url(2, f"{CLIENTS}/{cl['id']}/contacts"), json={"name": "Racer"},
                      headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 201, r.text
    ct = r.json()
    r = requests.post(url(0, f"{QS}/{q['id']}/invitations"), json={"contact_ids": [ct["id"]]},
                      headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 201, r.text
    return owner, q, cl, r.json()["items"][0]


def test_twenty_submits_of_one_link_over_three_processes_store_one_answer(trellis):
    trio = Trio(trellis, crm_questionnaire_link_rate_burst=1000,
                crm_questionnaire_token_rate_burst=1000)
    try:
        owner, q, cl, inv = trio_link(trio)
        answers = [dict(GOOD, nps=i % 11) for i in range(20)]

        def post(i):
            return lambda: requests.post(trio.url(i, inv["link"]), json={"answers": answers[i]},
                                         timeout=HTTP_TIMEOUT_S * 3)

        out = race([post(i) for i in range(20)])
        codes = [r.status_code if isinstance(r, requests.Response) else repr(r) for r in out]
        assert codes.count(201) == 1 and set(codes) <= {201, 409}, codes
        winner = codes.index(201)
        for r in out:
            if r.status_code == 409:
                check_problem(r, 409, "already-answered")
        r = requests.get(trio.url(2, f"{CLIENTS}/{cl['id']}/timeline"), headers=owner.headers,
                         timeout=HTTP_TIMEOUT_S)
        items = [i for i in r.json()["items"] if i["type"] == "questionnaire_answer"]
        assert len(items) == 1 and items[0]["questionnaire_answer"]["answers"] == answers[winner]
        for i, spelled in enumerate(spellings(q["id"])):
            r = requests.get(trio.url(i, f"{QS}/{spelled}/results"), headers=owner.headers,
                             timeout=HTTP_TIMEOUT_S)
            res = r.json()
            assert res["answered"] == 1 and res["invited"] == 1, res
            assert res["questions"][2]["mean"] == f"{answers[winner]['nps']}.0000"
        r = requests.get(trio.url(1, f"{QS}/{q['id']}/invitations"), headers=owner.headers,
                         timeout=HTTP_TIMEOUT_S)
        assert [x["status"] for x in r.json()["items"]] == ["answered"]
        again = requests.post(trio.url(1, inv["link"]), json={"answers": GOOD},
                              timeout=HTTP_TIMEOUT_S)
        check_problem(again, 409, "already-answered")
    finally:
        trio.check_logs()


def test_links_are_rate_limited_across_processes_with_retry_after(trellis):
    burst = 6
    trio = Trio(trellis, crm_questionnaire_link_rate_rps=1, crm_questionnaire_link_rate_burst=burst,
                crm_questionnaire_token_rate_burst=1000)
    try:
        owner, q, cl, inv = trio_link(trio)
        started, codes, limited = time.monotonic(), [], None
        for i in range(3 * burst):  # each process alone would let 3 * burst through
            r = requests.get(trio.url(i, inv["link"]), timeout=HTTP_TIMEOUT_S)
            codes.append(r.status_code)
            if r.status_code == 429:
                limited = r
                break
        assert limited is not None, codes
        check_problem(limited, 429, "rate-limited")
        assert int(limited.headers["Retry-After"]) >= 1
        # what got through is the shared bucket and its refill, not three buckets
        refill = int(time.monotonic() - started) + 1
        assert codes.count(200) <= burst + refill and set(codes) <= {200, 429}, codes
        # the bucket refills: a later request is served
        def served():
            x = requests.get(trio.url(1, inv["link"]), timeout=HTTP_TIMEOUT_S)
            return [x] if x.status_code == 200 else None

        (r,) = wait_for("the bucket refilling", served, within=30)
        assert r.json()["title"] == "Race"
    finally:
        trio.check_logs()


def test_one_link_is_rate_limited_on_its_own(trellis):
    trio = Trio(trellis, crm_questionnaire_token_rate_rps=1, crm_questionnaire_token_rate_burst=3)
    try:
        owner, q, cl, inv = trio_link(trio)
        codes = []
        for i in range(30):
            codes.append(requests.get(trio.url(i, inv["link"]), timeout=HTTP_TIMEOUT_S).status_code)
            if codes[-1] == 429:
                break
        assert codes[-1] == 429 and set(codes) == {200, 429}, codes
        # the refusal is the link's: the address still reaches another link
        r = requests.post(trio.url(0, f"{QS}/{q['id']}/invitations"),
                          json={"contact_ids": [inv["contact_id"]]}, headers=owner.headers,
                          timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 201, r.text
        other_link = r.json()["items"][0]["link"]
        assert requests.get(trio.url(2, other_link), timeout=HTTP_TIMEOUT_S).status_code == 200
    finally:
        trio.check_logs()
