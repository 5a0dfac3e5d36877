"""Inbound sources (/v1/inbound-sources, POST /v1/inbound/{token}): a
partner's JSON post becomes a lead through POST /v1/crm/leads itself -
mapped by JSON Pointers, attributed to the source's channel and campaign,
de-duplicated, pushed to the manager's WebSocket - signed with Standard
Webhooks headers (checked with the reference library, standardwebhooks),
one lead per webhook-id even across three server processes, rate limited
per source; sources are a tenant's resource under the CRM's permissions.
Black-box: real server processes, looked at through the API only."""

import base64
import json
import os
import re
import secrets
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from conftest import HTTP_TIMEOUT_S, check_problem, signup
from crm_support import (  # noqa: F401 (fixtures among them)
    ID_RE, hdr, uniq, uniq_email, errors_of, expect_403, get_ok, list_all, RetryingStack, stack,
    Team, team, other, LEADS)
from test_crm_live import subscribed, event_named
from test_exact_writes import Trio, race

SOURCES = "/v1/inbound-sources"
URL_RE = re.compile(r"^/v1/inbound/[0-9a-f]{24}[A-Za-z0-9_-]{43}$")
MAPPING = {"name": "/contact/full_name", "email": "/contact/email", "phone": "/contact/phone",
           "company": "/org/name"}


def new_secret():
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def make_source(stack, who, **fields):
    body = {"name": uniq("Form"), "kind": "lead", "channel": "web", "mapping": MAPPING}
    body.update(fields)
    r = stack.post(SOURCES, json=body, headers=hdr(who))
    assert r.status_code == 201, f"creating a source: {r.status_code} {r.text[:500]}"
    return r.json()


def form(email=None, name=None, **extra):
    body = {"contact": {"full_name": name or uniq("Inbound"), "email": email or uniq_email("in")},
            "org": {"name": "Acme"}}
    body.update(extra)
    return body


def signed_headers(secret, payload, msg_id=None, when=None):
    msg_id = msg_id or "msg_" + secrets.token_hex(8)
    when = when or datetime.now(timezone.utc)
    sig = Webhook(secret).sign(msg_id, when, payload)
    return {"Content-Type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": sig}


def deliver(base_url, source, body, secret=None, **kw):
    """Posts body to the source's url (signed when a secret is given)."""
    payload = json.dumps(body)
    h = signed_headers(secret, payload, **kw) if secret else {"Content-Type": "application/json"}
    return requests.post(base_url + source["url"], data=payload, headers=h, timeout=HTTP_TIMEOUT_S)


def leads_with_email(stack, who, email):
    return [l for l in list_all(stack, who, LEADS, email=email)]


# ---------------------------------------------------------------------------
# the source as a resource
# ---------------------------------------------------------------------------


def test_a_source_gets_an_unguessable_url_and_never_shows_its_secret(stack, team):
    src = make_source(stack, team.owner, signing_secret=new_secret())
    assert URL_RE.match(src["url"]), src
    assert src["signed"] is True and src["active"] is True and src["kind"] == "lead"
    assert src["owner_id"] == team.owner.user_id
    assert "signing_secret" not in src and not [k for k in src if k.startswith("_")], src
    got = get_ok(stack, team.owner, f"{SOURCES}/{src['id']}")
    assert got["url"] == src["url"] and "signing_secret" not in got
    other_src = make_source(stack, team.owner)
    assert other_src["url"] != src["url"] and other_src["signed"] is False
    assert src["id"] in [s["id"] for s in list_all(stack, team.owner, SOURCES)]


def test_the_token_in_a_source_url_never_reaches_the_log(stack, team):
    """An unsigned source's url is its only credential: the access log names
    the route's pattern, not the path."""
    src = make_source(stack, team.owner)
    token = src["url"].rsplit("/", 1)[1]
    r = deliver(stack.base_url, src, form(email=uniq_email("log"), name="Log Test"))
    assert r.status_code == 202, r.text
    assert deliver(stack.base_url, dict(src, url=src["url"] + "x"), form()).status_code == 404
    time.sleep(0.5)
    log = stack.server_log()
    assert "/v1/inbound/{token}" in log
    assert token not in log and token[24:] not in log


@pytest.mark.parametrize("fields, field", [
    ({"mapping": {"email": "/e"}}, "mapping"),
    ({"mapping": {"name": "/n"}}, "mapping"),
    ({"mapping": {"name": "/n", "email": "/e", "notes": "/x"}}, "mapping"),
    ({"mapping": {"name": "n", "email": "/e"}}, "mapping.name"),
    ({"mapping": {"name": "/a~2b", "email": "/e"}}, "mapping.name"),
    ({"mapping": {"name": 5, "email": "/e"}}, "mapping.name"),
    ({"signing_secret": "not-a-secret"}, "signing_secret"),
    ({"signing_secret": "whsec_" + base64.b64encode(b"short").decode()}, "signing_secret"),
    ({"channel": "fax"}, "channel"),
    ({"campaign_id": "0" * 24}, "campaign_id"),
])
def test_a_source_that_cannot_make_leads_is_422(stack, team, fields, field):
    body = {"name": uniq("Form"), "channel": "web", "mapping": MAPPING}
    body.update(fields)
    r = stack.post(SOURCES, json=body, headers=hdr(team.owner))
    assert field in errors_of(check_problem(r, 422)), r.text


def test_roles_without_the_permission_get_403(stack, team):
    src = make_source(stack, team.owner)
    body = {"name": uniq("Form"), "channel": "web", "mapping": MAPPING}
    # writing is crm.settings.write (owner, admin): a manager reads only
    expect_403(stack.post(SOURCES, json=body, headers=hdr(team.manager)))
    expect_403(stack.patch(f"{SOURCES}/{src['id']}", json={"active": False},
                           headers=hdr(team.manager)))
    expect_403(stack.delete(f"{SOURCES}/{src['id']}", headers=hdr(team.manager)))
    assert get_ok(stack, team.manager, f"{SOURCES}/{src['id']}")["id"] == src["id"]
    # reading is crm.leads.read: not the accountant's or the employee's
    for who in (team.accountant, team.employee):
        expect_403(stack.get(SOURCES, headers=hdr(who)))
        expect_403(stack.get(f"{SOURCES}/{src['id']}", headers=hdr(who)))


def test_another_tenant_cannot_read_or_change_our_sources(stack, team, other):
    src = make_source(stack, team.owner)
    path = f"{SOURCES}/{src['id']}"
    check_problem(stack.get(path, headers=hdr(other)), 404)
    check_problem(stack.patch(path, json={"name": "mine"}, headers=hdr(other)), 404)
    check_problem(stack.delete(path, headers=hdr(other)), 404)
    assert src["id"] not in [s["id"] for s in list_all(stack, other, SOURCES)]
    assert get_ok(stack, team.owner, path)["name"] == src["name"]


# ---------------------------------------------------------------------------
# receiving
# ---------------------------------------------------------------------------


def test_a_signed_post_makes_an_attributed_lead_the_manager_sees_live(stack, team):
    campaign = stack.post("/v1/crm/campaigns", headers=hdr(team.owner),
                          json={"name": uniq("Expo"), "kind": "exhibition"})
    assert campaign.status_code == 201, campaign.text
    campaign = campaign.json()
    secret = new_secret()
    src = make_source(stack, team.owner, channel="event", campaign_id=campaign["id"],
                      signing_secret=secret, owner_id=team.manager.user_id)
    email = uniq_email("expo")
    with subscribed(stack, team.manager, ["crm.leads"]) as ws:
        r = deliver(stack.base_url, src, form(email=email, name="Ada Lovelace",
                                              contact_extra={"x": 1}), secret)
        assert r.status_code == 202, r.text
        lead_id = r.json()["lead_id"]
        assert ID_RE.match(lead_id) and r.json()["duplicate_of"] is None
        ev = event_named(ws, "crm.lead.created", lead_id)
    lead = get_ok(stack, team.owner, f"{LEADS}/{lead_id}")
    assert ev["data"] == lead
    assert lead["name"] == "Ada Lovelace" and lead["email"] == email
    assert lead["company"] == "Acme" and lead["status"] == "new"
    assert lead["source"] == {"channel": "event", "campaign_id": campaign["id"]}
    assert lead["owner_id"] == team.manager.user_id


def test_json_pointers_follow_rfc_6901_escapes_and_array_indexes(stack, team):
    src = make_source(stack, team.owner, mapping={"name": "/a~1b/x", "email": "/m~0n/1",
                                                  "phone": "/digits"})
    email = uniq_email("ptr")
    r = deliver(stack.base_url, src, {"a/b": {"x": "Slash Name"}, "m~n": ["no", email],
                                      "digits": 4930123456})
    assert r.status_code == 202, r.text
    lead = get_ok(stack, team.owner, f"{LEADS}/{r.json()['lead_id']}")
    assert (lead["name"], lead["email"], lead["phone"]) == ("Slash Name", email, "4930123456")


def test_a_post_matching_an_open_lead_is_marked_its_duplicate(stack, team):
    email = uniq_email("dup")
    first = stack.post(LEADS, json={"name": "Known", "email": email}, headers=hdr(team.owner))
    assert first.status_code == 201, first.text
    src = make_source(stack, team.owner)
    r = deliver(stack.base_url, src, form(email=email.upper()))
    assert r.status_code == 202, r.text
    assert r.json()["duplicate_of"] == first.json()["id"]
    lead = get_ok(stack, team.owner, f"{LEADS}/{r.json()['lead_id']}")
    assert lead["duplicate_of"] == first.json()["id"]


def test_a_body_that_maps_to_no_valid_lead_is_422_naming_the_fields(stack, team):
    src = make_source(stack, team.owner)
    bad_email = "not-an-email-" + secrets.token_hex(3)
    r = deliver(stack.base_url, src, {"contact": {"email": bad_email, "full_name": {"x": 1}}})
    body = check_problem(r, 422)
    assert {"name", "email"} <= errors_of(body), body
    names = [e for e in body["errors"] if e["field"] == "name"]
    assert "/contact/full_name" in names[0]["message"], body
    r = deliver(stack.base_url, src, {"unrelated": True})
    assert {"name", "email"} <= errors_of(check_problem(r, 422))
    assert leads_with_email(stack, team.owner, bad_email) == []


def test_bad_missing_or_stale_signatures_are_401_and_make_nothing(stack, team):
    secret = new_secret()
    src = make_source(stack, team.owner, signing_secret=secret)
    email = uniq_email("sig")
    body = form(email=email)
    # unsigned
    check_problem(deliver(stack.base_url, src, body), 401)
    # signed with another secret
    check_problem(deliver(stack.base_url, src, body, new_secret()), 401)
    # signed, then the body changed
    payload = json.dumps(body)
    h = signed_headers(secret, payload)
    r = requests.post(stack.base_url + src["url"], data=payload.replace("Acme", "Evil"),
                      headers=h, timeout=HTTP_TIMEOUT_S)
    check_problem(r, 401)
    # six minutes old, and six minutes ahead
    for skew in (-6, 6):
        when = datetime.now(timezone.utc) + timedelta(minutes=skew)
        check_problem(deliver(stack.base_url, src, body, secret, when=when), 401)
    assert leads_with_email(stack, team.owner, email) == []
    # four minutes old is within the tolerance
    when = datetime.now(timezone.utc) - timedelta(minutes=4)
    assert deliver(stack.base_url, src, body, secret, when=when).status_code == 202


def test_the_same_webhook_id_twice_makes_one_lead(stack, team):
    secret = new_secret()
    src = make_source(stack, team.owner, signing_secret=secret)
    email = uniq_email("replay")
    body = form(email=email)
    first = deliver(stack.base_url, src, body, secret, msg_id="msg_replay_1")
    assert first.status_code == 202, first.text
    again = deliver(stack.base_url, src, body, secret, msg_id="msg_replay_1")
    assert again.status_code == 200, again.text
    assert again.json() == {"lead_id": first.json()["lead_id"], "replayed": True}
    assert [l["id"] for l in leads_with_email(stack, team.owner, email)] == [first.json()["lead_id"]]
    # another id is another delivery (a duplicate of the first lead)
    third = deliver(stack.base_url, src, body, secret, msg_id="msg_replay_2")
    assert third.status_code == 202 and third.json()["duplicate_of"] == first.json()["lead_id"]


def test_a_refused_delivery_does_not_use_up_its_webhook_id(stack, team):
    secret = new_secret()
    src = make_source(stack, team.owner, signing_secret=secret)
    check_problem(deliver(stack.base_url, src, {"contact": {}}, secret, msg_id="msg_fix"), 422)
    r = deliver(stack.base_url, src, form(), secret, msg_id="msg_fix")
    assert r.status_code == 202, r.text


def test_unknown_deleted_and_paused_sources(stack, team):
    src = make_source(stack, team.owner)
    check_problem(requests.post(stack.base_url + "/v1/inbound/" + "a" * 67, json=form(),
                                timeout=HTTP_TIMEOUT_S), 404)
    forged = src["url"][:-4] + ("AAAA" if not src["url"].endswith("AAAA") else "BBBB")
    check_problem(requests.post(stack.base_url + forged, json=form(), timeout=HTTP_TIMEOUT_S), 404)
    r = stack.patch(f"{SOURCES}/{src['id']}", json={"active": False}, headers=hdr(team.owner))
    assert r.status_code == 200, r.text
    check_problem(deliver(stack.base_url, src, form()), 409)
    r = stack.delete(f"{SOURCES}/{src['id']}", headers=hdr(team.owner))
    assert r.status_code == 204, r.text
    check_problem(deliver(stack.base_url, src, form()), 404)


def test_removing_the_secret_takes_unsigned_posts_again(stack, team):
    src = make_source(stack, team.owner, signing_secret=new_secret())
    check_problem(deliver(stack.base_url, src, form()), 401)
    r = stack.patch(f"{SOURCES}/{src['id']}", json={"signing_secret": None},
                    headers=hdr(team.owner))
    assert r.status_code == 200 and r.json()["signed"] is False, r.text
    assert deliver(stack.base_url, src, form()).status_code == 202


def test_a_source_is_rate_limited_with_retry_after(stack, team):
    src = make_source(stack, team.owner)
    other_src = make_source(stack, team.owner)
    statuses = []
    for _ in range(40):  # the default bucket holds 20; refusals are cheap
        r = deliver(stack.base_url, src, {})
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            break
    assert 429 in statuses and set(statuses) <= {422, 429}, statuses
    # the limit is the source's: another source of the tenant still takes posts
    assert deliver(stack.base_url, other_src, {}).status_code == 422


def test_one_webhook_id_across_three_processes_makes_one_lead(trellis):
    trio = Trio(trellis)
    try:
        owner = signup(trio.procs[0])
        secret = new_secret()
        r = requests.post(trio.url(0, SOURCES), headers=owner.headers, timeout=HTTP_TIMEOUT_S,
                          json={"name": "Race form", "channel": "web", "mapping": MAPPING,
                                "signing_secret": secret})
        assert r.status_code == 201, r.text
        src = r.json()
        email = uniq_email("trio")
        payload = json.dumps(form(email=email))
        h = signed_headers(secret, payload, msg_id="msg_trio")

        def post(i):
            return lambda: requests.post(trio.url(i, src["url"]), data=payload, headers=h,
                                         timeout=HTTP_TIMEOUT_S)

        out = race([post(i) for i in range(15)])
        codes = [r.status_code for r in out]
        assert codes.count(202) == 1 and set(codes) <= {200, 202, 409}, codes
        lead_id = [r for r in out if r.status_code == 202][0].json()["lead_id"]
        assert all(r.json()["lead_id"] == lead_id for r in out if r.status_code == 200)
        # the token is a credential spelled one way: upper-cased (its id too) it names no source
        prefix = "/v1/inbound/"
        upper = prefix + src["url"][len(prefix):].upper()
        assert upper != src["url"]
        r = requests.post(trio.url(1, upper), data=payload, headers=h, timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 404, r.text
        # a retry after the race is answered with the lead
        again = requests.post(trio.url(2, src["url"]), data=payload, headers=h,
                              timeout=HTTP_TIMEOUT_S)
        assert again.status_code == 200 and again.json()["lead_id"] == lead_id
        r = requests.get(trio.url(1, LEADS), params={"email": email}, headers=owner.headers,
                         timeout=HTTP_TIMEOUT_S)
        assert [l["id"] for l in r.json()["items"]] == [lead_id]
    finally:
        trio.check_logs()
