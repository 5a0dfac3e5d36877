"""CRM live events over /v1/ws: crm.lead.created for a partner's lead
(X-API-Key) reaching a manager with the resource as GET returns it, a sales
rep seeing a lead's events only once it is theirs, deal, task, claim and
client events on their topics, and task reminders (crm.task.due) at the
task's due time, once, not for finished tasks, and at the new time when
the task was moved.  Black-box: the real server of the session stack."""

import json
import re
import secrets
import time
from datetime import datetime, timedelta, timezone

import pytest
from websockets.sync.client import connect

from conftest import DEFAULT_PASSWORD, login, signup
from crm_support import (  # noqa: F401 (fixtures among them)
    ID_RE, TS_RE, iso, uniq, uniq_email, created, get_ok, patch_ok, RetryingStack, stack, Team,
    team, other, CLIENTS, LEADS, DEALS, TASKS, CLAIMS, make_client)


# ---------------------------------------------------------------------------
# helpers (the shared ones are in crm_support.py)
# ---------------------------------------------------------------------------


def make_key(stack, owner, permissions):
    r = stack.post("/v1/api-keys", json={"name": "key-" + secrets.token_hex(4), "permissions": permissions},
                   headers=owner.headers)
    assert r.status_code == 201, f"creating an API key: {r.status_code} {r.text[:500]}"
    return {"X-API-Key": r.json()["key"]}


RECV_S = 10.0


# ---------------------------------------------------------------------------
# WebSocket helpers (the style of test_events_live.py)
# ---------------------------------------------------------------------------

def ws_open(stack):
    return connect(stack.base_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10,
                   close_timeout=2, max_size=2 ** 22)


def recv(ws, timeout=RECV_S):
    return json.loads(ws.recv(timeout=timeout))


def until_type(ws, kind, timeout=RECV_S):
    """Frames up to and including the first of `kind`."""
    frames, deadline = [], time.monotonic() + timeout
    while True:
        f = recv(ws, max(deadline - time.monotonic(), 0.05))
        frames.append(f)
        if f["type"] == kind:
            return frames


def events(ws, n, timeout=RECV_S):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n:
        f = recv(ws, max(deadline - time.monotonic(), 0.05))
        if f["type"] == "event":
            got.append(f)
    return got


def event_named(ws, name, entity_id, timeout=RECV_S):
    """The first event `name` about entity_id (other events are skipped)."""
    deadline, skipped = time.monotonic() + timeout, []
    while True:
        try:
            f = recv(ws, max(deadline - time.monotonic(), 0.05))
        except TimeoutError:
            pytest.fail(f"no {name} for {entity_id} within {timeout}s; other frames: {skipped}")
        if f["type"] == "event" and f["event"] == name and f["entity_id"] == entity_id:
            return f
        skipped.append((f.get("type"), f.get("event"), f.get("entity_id")))


def no_event(ws, wait=1.0):
    """No event frame arrives within `wait` seconds (a ping's pong ends it)."""
    time.sleep(wait)
    ws.send(json.dumps({"type": "ping"}))
    frames = until_type(ws, "pong")
    evs = [f for f in frames if f["type"] == "event"]
    assert evs == [], [(f["event"], f["entity_id"]) for f in evs]


class subscribed:
    """`with subscribed(stack, acct, ["crm.leads"]) as ws:` an authenticated
    socket whose subscription is confirmed."""

    def __init__(self, stack, acct, topics):
        self.stack, self.acct, self.topics = stack, acct, topics

    def __enter__(self):
        self.ws = ws_open(self.stack)
        try:
            self.ws.send(json.dumps({"type": "auth", "token": self.acct.access_token}))
            ready = recv(self.ws)
            assert ready["type"] == "ready", ready
            self.ws.send(json.dumps({"type": "subscribe", "topics": self.topics}))
            frames = until_type(self.ws, "subscribed")
            assert sorted(frames[-1]["topics"]) == sorted(self.topics), frames
        except BaseException:
            self.ws.close()
            raise
        return self.ws

    def __exit__(self, *exc):
        self.ws.close()
        return False


# ---------------------------------------------------------------------------
# leads
# ---------------------------------------------------------------------------

def test_partner_lead_reaches_the_manager_and_the_rep_only_once_it_is_theirs(stack, team):
    key = make_key(stack, team.owner, ["crm.leads.write"])
    with subscribed(stack, team.manager, ["crm.leads"]) as mws, subscribed(stack, team.sales, ["crm.leads"]) as sws:
        r = stack.post(LEADS, json={"name": "Partner Lead", "email": uniq_email("partner"), "phone": "+44 20 7946 0000"},
                       headers=key)
        lead = created(r, "lead")
        ev = event_named(mws, "crm.lead.created", lead["id"])
        assert ev["topic"] == "crm.leads" and TS_RE.match(ev["ts"]), ev
        assert ev["data"] == get_ok(stack, team.manager, f"{LEADS}/{lead['id']}") == lead, ev
        no_event(sws)
        assigned = patch_ok(stack, team.manager, f"{LEADS}/{lead['id']}", {"owner_id": team.sales.user_id})
        ev = event_named(sws, "crm.lead.updated", lead["id"])
        assert ev["topic"] == "crm.leads" and ev["actor"] == team.manager.user_id, ev
        assert ev["data"] == assigned == get_ok(stack, team.sales, f"{LEADS}/{lead['id']}"), ev
        assert ev["data"]["owner_id"] == team.sales.user_id
        assert event_named(mws, "crm.lead.updated", lead["id"])["data"] == assigned


def test_a_rep_does_not_receive_events_of_leads_given_away(stack, team):
    lead = created(stack.post(LEADS, json={"name": uniq("L"), "email": uniq_email()}, headers=team.sales.headers))
    with subscribed(stack, team.sales, ["crm.leads"]) as sws, subscribed(stack, team.sales2, ["crm.leads"]) as s2:
        patch_ok(stack, team.manager, f"{LEADS}/{lead['id']}", {"owner_id": team.sales2.user_id})
        assert event_named(s2, "crm.lead.updated", lead["id"])["data"]["owner_id"] == team.sales2.user_id
        sws.send(json.dumps({"type": "ping"}))
        until_type(sws, "pong")  # whatever the hand-over itself told the former owner
        patch_ok(stack, team.manager, f"{LEADS}/{lead['id']}", {"company": "Now theirs"})
        assert event_named(s2, "crm.lead.updated", lead["id"])["data"]["company"] == "Now theirs"
        no_event(sws, 0.5)


# ---------------------------------------------------------------------------
# deals, tasks, claims, clients
# ---------------------------------------------------------------------------

def test_deal_events_arrive_on_crm_deals(stack, team):
    c = make_client(stack, team.owner)
    with subscribed(stack, team.manager, ["crm.deals"]) as ws, subscribed(stack, team.manager, ["crm.leads"]) as leads_only:
        deal = created(stack.post(DEALS, json={"client_id": c["id"], "title": "Live deal"}, headers=team.owner.headers))
        assert event_named(ws, "crm.deal.created", deal["id"])["data"] == deal
        r = stack.post(f"{DEALS}/{deal['id']}/stage", json={"stage": "qualified"}, headers=team.owner.headers)
        assert r.status_code == 200, r.text
        ev = event_named(ws, "crm.deal.stage_changed", deal["id"])
        assert ev["topic"] == "crm.deals" and ev["data"] == r.json(), ev
        assert ev["data"]["stage"] == "qualified" and ev["data"]["stage_history"][-1]["from"] == "new"
        r = stack.post(f"{DEALS}/{deal['id']}/won", headers=team.owner.headers)
        assert r.status_code == 200, r.text
        ev = event_named(ws, "crm.deal.won", deal["id"])
        assert ev["data"] == r.json() and ev["data"]["status"] == "won" and ev["data"]["closed_at"], ev
        other = created(stack.post(DEALS, json={"client_id": c["id"], "title": "Lost one"}, headers=team.owner.headers))
        r = stack.post(f"{DEALS}/{other['id']}/lost", json={"reason": "no budget"}, headers=team.owner.headers)
        assert r.status_code == 200, r.text
        ev = event_named(ws, "crm.deal.lost", other["id"])
        assert ev["data"] == r.json() and ev["data"]["lost_reason"] == "no budget", ev
        no_event(leads_only, 0.3)


def test_a_reps_deal_events_are_only_their_own_deals(stack, team):
    c = make_client(stack, team.owner)
    with subscribed(stack, team.sales, ["crm.deals"]) as ws:
        owners = created(stack.post(DEALS, json={"client_id": c["id"], "title": "Not yours"}, headers=team.owner.headers))
        theirs = created(stack.post(DEALS, json={"client_id": c["id"], "title": "Yours", "owner_id": team.sales.user_id},
                                    headers=team.owner.headers))
        ev = events(ws, 1)[0]
        assert (ev["event"], ev["entity_id"]) == ("crm.deal.created", theirs["id"]), ev
        assert stack.post(f"{DEALS}/{owners['id']}/won", headers=team.owner.headers).status_code == 200
        no_event(ws, 0.5)


def test_task_events_reach_the_assignee(stack, team):
    with subscribed(stack, team.sales, ["crm.tasks"]) as ws:
        mine = created(stack.post(TASKS, json={"title": "Yours", "assignee_id": team.sales.user_id},
                                  headers=team.manager.headers))
        created(stack.post(TASKS, json={"title": "Manager's own"}, headers=team.manager.headers))
        ev = events(ws, 1)[0]
        assert (ev["event"], ev["entity_id"], ev["topic"]) == ("crm.task.created", mine["id"], "crm.tasks"), ev
        assert ev["data"] == mine
        done = patch_ok(stack, team.manager, f"{TASKS}/{mine['id']}", {"done": True})
        ev = events(ws, 1)[0]
        assert (ev["event"], ev["entity_id"]) == ("crm.task.updated", mine["id"]) and ev["data"] == done, ev
        no_event(ws, 0.3)


def test_claim_events_arrive_on_crm_claims(stack, team):
    c = make_client(stack, team.owner)
    with subscribed(stack, team.manager, ["crm.claims"]) as ws:
        claim = created(stack.post(CLAIMS, json={"client_id": c["id"], "subject": "Dented"}, headers=team.owner.headers))
        ev = event_named(ws, "crm.claim.created", claim["id"])
        assert ev["topic"] == "crm.claims" and ev["data"] == claim, ev
        moved = patch_ok(stack, team.owner, f"{CLAIMS}/{claim['id']}", {"status": "in_progress"})
        assert event_named(ws, "crm.claim.updated", claim["id"])["data"] == moved


def test_client_events_and_conversion_events(stack, team):
    with subscribed(stack, team.manager, ["crm.clients", "crm.leads", "crm.deals"]) as ws:
        c = make_client(stack, team.owner)
        ev = event_named(ws, "crm.client.created", c["id"])
        assert ev["topic"] == "crm.clients" and ev["data"] == c, ev
        renamed = patch_ok(stack, team.owner, f"{CLIENTS}/{c['id']}", {"name": "Renamed"})
        assert event_named(ws, "crm.client.updated", c["id"])["data"] == renamed
        lead = created(stack.post(LEADS, json={"name": uniq("Lead"), "email": uniq_email(), "company": "Converted Co"},
                                  headers=team.owner.headers))
        event_named(ws, "crm.lead.created", lead["id"])
        r = stack.post(f"{LEADS}/{lead['id']}/convert", json={"create_deal": True}, headers=team.owner.headers)
        assert r.status_code == 200, r.text
        out = r.json()
        ev = event_named(ws, "crm.lead.updated", lead["id"])
        assert ev["data"]["status"] == "converted" and ev["data"]["client_id"] == out["client"]["id"], ev
        ev = event_named(ws, "crm.client.created", out["client"]["id"])
        assert ev["topic"] == "crm.clients" and ev["data"] == out["client"], ev
        ev = event_named(ws, "crm.deal.created", out["deal"]["id"])
        assert ev["topic"] == "crm.deals" and ev["data"] == out["deal"], ev


# ---------------------------------------------------------------------------
# task reminders
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reminders(stack, team):
    """Three tasks of the sales rep due ~2.5 s ahead: one left alone, one
    finished at once, one moved 4 s later. The rep's and another rep's
    sockets (both subscribed to crm.tasks) are watched until 5.5 s after
    the latest due time; returns the tasks, their due times (epoch s) and
    every crm.task.due with its arrival time."""
    with subscribed(stack, team.sales, ["crm.tasks"]) as ws, subscribed(stack, team.sales2, ["crm.tasks"]) as ws2:
        base = datetime.now(timezone.utc) + timedelta(seconds=2.5)
        due, moved_to = iso(base), iso(base + timedelta(seconds=4))

        def task(title):
            return created(stack.post(TASKS, headers=team.manager.headers, json={
                "title": title, "due_at": due, "assignee_id": team.sales.user_id}), "task")

        plain, finished, moved = task("Remind me"), task("Done early"), task("Moved later")
        patch_ok(stack, team.manager, f"{TASKS}/{finished['id']}", {"done": True})
        patch_ok(stack, team.manager, f"{TASKS}/{moved['id']}", {"due_at": moved_to})
        got = []
        end = base.timestamp() + 4 + 5.5
        while True:
            left = end - time.time()
            if left <= 0:
                break
            try:
                f = recv(ws, left)
            except TimeoutError:
                break
            if f["type"] == "event" and f["event"] == "crm.task.due":
                got.append((time.time(), f))
        ws2.send(json.dumps({"type": "ping"}))
        other = [(0, f) for f in until_type(ws2, "pong") if f["type"] == "event"]
        return {"plain": plain, "finished": finished, "moved": moved, "due": base.timestamp(),
                "moved_to": base.timestamp() + 4, "moved_to_iso": moved_to, "got": got, "other": other}


def dues_of(run, task):
    return [(t, f) for t, f in run["got"] if f["entity_id"] == task["id"]]


def test_a_due_task_is_reminded_once_at_its_due_time(reminders):
    run = reminders
    mine = dues_of(run, run["plain"])
    assert len(mine) == 1, f"expected one crm.task.due, got {[(round(t - run['due'], 2), f['id']) for t, f in mine]}"
    at, ev = mine[0]
    assert at >= run["due"] - 0.02, f"crm.task.due came {run['due'] - at:.2f}s before due_at"
    assert at <= run["due"] + 4.0, f"crm.task.due came {at - run['due']:.2f}s after due_at"
    assert ev["topic"] == "crm.tasks", ev
    assert ev["data"]["id"] == run["plain"]["id"] and ev["data"]["assignee_id"] == run["plain"]["assignee_id"], ev
    assert ev["data"]["due_at"] == run["plain"]["due_at"] and ev["data"]["done"] is False, ev


def test_a_task_finished_before_due_at_is_not_reminded(reminders):
    run = reminders
    assert dues_of(run, run["finished"]) == []


def test_a_moved_task_is_reminded_at_the_new_time_only(reminders):
    run = reminders
    mine = dues_of(run, run["moved"])
    assert len(mine) == 1, f"expected one crm.task.due, got them at {[round(t - run['due'], 2) for t, _ in mine]}s after the old due time"
    at, ev = mine[0]
    assert at >= run["moved_to"] - 0.02, f"crm.task.due came {run['moved_to'] - at:.2f}s before the new due_at"
    assert at <= run["moved_to"] + 4.0, f"crm.task.due came {at - run['moved_to']:.2f}s after the new due_at"
    assert ev["data"]["due_at"] == run["moved_to_iso"], ev


def test_another_rep_gets_no_task_events_of_someone_elses_tasks(reminders):
    assert reminders["other"] == [], [(f["event"], f["entity_id"]) for _, f in reminders["other"]]
