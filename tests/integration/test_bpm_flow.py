"""BPM: definitions checked whole and versioned per key, instances that
move through user tasks, exclusive and parallel gateways to their end, the
task inbox with its form checked, history, events pushed over WebSocket,
roles and other tenants. Every test signs a tenant of its own up."""

import json
import time

import pytest
from websockets.sync.client import connect

from conftest import check_problem, signup, user_session
from erp_support import call

DEFS = "/v1/bpm/definitions"
INSTANCES = "/v1/bpm/instances"
TASKS = "/v1/bpm/tasks"


@pytest.fixture
def owner(stack):
    return signup(stack)


def approval(key="approval", assignee=None, extra_nodes=(), extra_flows=()):
    """approve (a user task with a form) -> ok? -> done | rejected."""
    return {
        "key": key, "name": "Approve a discount",
        "nodes": [
            {"id": "approve", "type": "user_task", "name": "Approve", "instructions": "Check the margin.",
             "assignee": assignee or {"role": "manager"},
             "form": [{"key": "approved", "type": "bool", "required": True},
                      {"key": "note", "type": "string"},
                      {"key": "level", "type": "enum", "options": ["low", "high"]}],
             "due_in": "PT4H"},
            {"id": "ok", "type": "exclusive", "default": "rejected"},
            {"id": "done", "type": "end"},
            {"id": "rejected", "type": "end"},
            *extra_nodes,
        ],
        "flows": [
            {"from": "start", "to": "approve"},
            {"from": "approve", "to": "ok"},
            {"from": "ok", "to": "done", "when": "approved == true"},
            {"from": "ok", "to": "rejected"},
            *extra_flows,
        ],
    }


def define(stack, acct, body):
    r = call(stack, acct, "POST", DEFS, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def start(stack, acct, key, **body):
    r = call(stack, acct, "POST", INSTANCES, json={"definition_key": key, **body})
    assert r.status_code == 201, r.text
    return r.json()


def tasks(stack, acct, **params):
    r = call(stack, acct, "GET", TASKS, params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def instance(stack, acct, iid):
    r = call(stack, acct, "GET", f"{INSTANCES}/{iid}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(fn, timeout=15.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def fields_of(r, status=422):
    return {e["field"]: e["message"] for e in check_problem(r, status).get("errors", [])}


def test_a_definition_posted_again_is_the_next_version_and_old_ones_stay(stack, owner):
    first = define(stack, owner, approval())
    assert (first["key"], first["version"], first["name"]) == ("approval", 1, "Approve a discount")
    changed = approval()
    changed["name"] = "Approve a discount (v2)"
    second = define(stack, owner, changed)
    assert second["version"] == 2 and second["id"] != first["id"]
    assert call(stack, owner, "GET", f"{DEFS}/approval").json()["version"] == 2
    old = call(stack, owner, "GET", f"{DEFS}/approval/versions/1").json()
    assert (old["version"], old["name"]) == (1, "Approve a discount")
    assert call(stack, owner, "GET", f"{DEFS}/approval/versions/3").status_code == 404
    assert call(stack, owner, "GET", f"{DEFS}/nope").status_code == 404
    listed = call(stack, owner, "GET", DEFS, params={"key": "approval"}).json()["items"]
    assert sorted(d["version"] for d in listed) == [1, 2]


def test_a_definition_with_faults_gets_every_one_listed_and_nothing_is_stored(stack, owner):
    bad = {
        "key": "broken",
        "nodes": [
            {"id": "a", "type": "user_task", "name": "A", "assignee": {"role": "manager"},
             "form": [{"key": "x", "type": "colour"}]},
            {"id": "b", "type": "service", "action": "erp.launch_rocket"},
            {"id": "g", "type": "exclusive"},
            {"id": "lost", "type": "user_task", "name": "Nobody reaches me", "assignee": {"role": "manager"}},
            {"id": "t", "type": "timer", "duration": "P1M"},
            {"id": "end", "type": "end"},
            {"id": "lost2", "type": "end"},
        ],
        "flows": [
            {"from": "start", "to": "a"},
            {"from": "a", "to": "g"},
            {"from": "g", "to": "b", "when": "x =="},
            {"from": "g", "to": "t", "when": "x > 3"},
            {"from": "b", "to": "end"},
            {"from": "t", "to": "end"},
            {"from": "lost", "to": "lost2"},
        ],
    }
    r = call(stack, owner, "POST", DEFS, json=bad)
    errs = fields_of(r)
    assert "unknown form field type" in errs["nodes[0].form[0]"]
    assert "unknown action" in errs["nodes[1]"]
    assert "no condition may hold" in errs["g"]
    assert "unreachable" in errs["lost"] and "unreachable" in errs["lost2"]
    assert "when:" in errs["flows[2]"]
    assert "duration" in errs["nodes[4].duration"]
    assert call(stack, owner, "GET", f"{DEFS}/broken").status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"nodes": [], "flows": []}, "key"),
    ({"key": "k", "flows": []}, "nodes"),
    ({"key": "k", "nodes": [{"id": "start", "type": "end"}], "flows": []}, "nodes[0]"),
    ({"key": "k", "nodes": [{"id": "e", "type": "end"}], "flows": [{"from": "start", "to": "zz"}]}, "flows[0]"),
    ({"key": "k", "nodes": [{"id": "e", "type": "end"}], "flows": [{"from": "start", "to": "e"}],
      "start_on": "crm.deal.exploded"}, "start_on"),
    ({"key": "bad key!", "nodes": [{"id": "e", "type": "end"}], "flows": [{"from": "start", "to": "e"}]}, "key"),
])
def test_bad_definitions_are_422_naming_the_field(stack, owner, body, field):
    assert field in fields_of(call(stack, owner, "POST", DEFS, json=body))


def test_an_instance_runs_through_its_task_and_gateway_to_the_end(stack, owner):
    define(stack, owner, approval(assignee={"user_id": owner.user_id}))
    inst = start(stack, owner, "approval", variables={"discount": 15})
    assert (inst["status"], inst["active_nodes"], inst["version"]) == ("running", ["approve"], 1)
    mine = tasks(stack, owner, assignee="me", status="open")
    task = [t for t in mine if t["instance_id"] == inst["id"]][0]
    assert task["name"] == "Approve" and task["instructions"] == "Check the margin."
    assert task["assignee_id"] == owner.user_id and task["status"] == "open" and task["due_at"]
    assert [f["key"] for f in task["form"]] == ["approved", "note", "level"]

    r = call(stack, owner, "POST", f"{TASKS}/{task['id']}/complete", json={"data": {"approved": True, "note": "fine"}})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "done"
    done = instance(stack, owner, inst["id"])
    assert done["status"] == "completed" and done["active_nodes"] == []
    assert done["variables"] == {"discount": 15, "approved": True, "note": "fine"}
    again = call(stack, owner, "POST", f"{TASKS}/{task['id']}/complete", json={"data": {"approved": True}})
    check_problem(again, 409)
    hist = call(stack, owner, "GET", f"{INSTANCES}/{inst['id']}/history").json()["items"]
    steps = [(h["node_id"], h["action"]) for h in hist]
    assert steps == [("start", "entered"), ("start", "left"), ("approve", "entered"),
                     ("approve", "left"), ("ok", "entered"), ("ok", "left"),
                     ("done", "entered"), ("done", "left")], steps
    assert [h["by"] for h in hist if h["node_id"] == "approve" and h["action"] == "left"] == [owner.user_id]


def test_the_default_flow_is_taken_when_no_condition_holds(stack, owner):
    define(stack, owner, approval(assignee={"user_id": owner.user_id}))
    inst = start(stack, owner, "approval")
    task = tasks(stack, owner, assignee="me")[0]
    r = call(stack, owner, "POST", f"{TASKS}/{task['id']}/complete", json={"data": {"approved": False}})
    assert r.status_code == 200, r.text
    hist = call(stack, owner, "GET", f"{INSTANCES}/{inst['id']}/history").json()["items"]
    assert ("rejected", "entered") in [(h["node_id"], h["action"]) for h in hist]
    assert ("done", "entered") not in [(h["node_id"], h["action"]) for h in hist]


@pytest.mark.parametrize("data, field", [
    ({}, "data.approved"),
    ({"approved": "yes"}, "data.approved"),
    ({"approved": True, "level": "medium"}, "data.level"),
    ({"approved": True, "note": 5}, "data.note"),
    ({"approved": True, "colour": "red"}, "data.colour"),
])
def test_form_data_is_checked_and_a_refused_complete_changes_nothing(stack, owner, data, field):
    define(stack, owner, approval(assignee={"user_id": owner.user_id}))
    inst = start(stack, owner, "approval")
    task = tasks(stack, owner, assignee="me")[0]
    r = call(stack, owner, "POST", f"{TASKS}/{task['id']}/complete", json={"data": data})
    assert field in fields_of(r)
    assert call(stack, owner, "GET", f"{TASKS}/{task['id']}").json()["status"] == "open"
    assert instance(stack, owner, inst["id"])["active_nodes"] == ["approve"]


def test_a_parallel_split_waits_for_both_branches_at_the_join(stack, owner):
    me = {"user_id": owner.user_id}
    define(stack, owner, {
        "key": "both",
        "nodes": [{"id": "split", "type": "parallel"},
                  {"id": "a", "type": "user_task", "name": "A", "assignee": me},
                  {"id": "b", "type": "user_task", "name": "B", "assignee": me},
                  {"id": "join", "type": "parallel"},
                  {"id": "after", "type": "user_task", "name": "After", "assignee": me},
                  {"id": "end", "type": "end"}],
        "flows": [{"from": "start", "to": "split"}, {"from": "split", "to": "a"}, {"from": "split", "to": "b"},
                  {"from": "a", "to": "join"}, {"from": "b", "to": "join"}, {"from": "join", "to": "after"},
                  {"from": "after", "to": "end"}],
    })
    inst = start(stack, owner, "both")
    assert sorted(inst["active_nodes"]) == ["a", "b"]
    by_name = {t["name"]: t for t in tasks(stack, owner, assignee="me")}
    assert call(stack, owner, "POST", f"{TASKS}/{by_name['A']['id']}/complete", json={}).status_code == 200
    assert instance(stack, owner, inst["id"])["active_nodes"] == ["b"]
    assert call(stack, owner, "POST", f"{TASKS}/{by_name['B']['id']}/complete", json={}).status_code == 200
    assert instance(stack, owner, inst["id"])["active_nodes"] == ["after"]


def test_a_condition_that_cannot_be_evaluated_fails_the_instance_with_an_incident_and_retry_goes_on(stack, owner):
    body = approval(assignee={"user_id": owner.user_id})
    body["flows"][2]["when"] = "score > 10"  # score is never set
    define(stack, owner, body)
    inst = start(stack, owner, "approval")
    task = tasks(stack, owner, assignee="me")[0]
    assert call(stack, owner, "POST", f"{TASKS}/{task['id']}/complete", json={"data": {"approved": True}}).status_code == 200
    failed = instance(stack, owner, inst["id"])
    assert failed["status"] == "failed" and "score" in failed["error"]
    incidents = call(stack, owner, "GET", "/v1/bpm/incidents", params={"instance_id": inst["id"]}).json()["items"]
    assert len(incidents) == 1 and incidents[0]["node_id"] == "ok" and incidents[0]["status"] == "open"
    r = call(stack, owner, "POST", f"/v1/bpm/incidents/{incidents[0]['id']}/retry")
    assert r.status_code == 200, r.text
    # still cannot be evaluated: it fails again, with a new incident
    assert instance(stack, owner, inst["id"])["status"] == "failed"
    check_problem(call(stack, owner, "POST", f"/v1/bpm/incidents/{incidents[0]['id']}/retry"), 409)


def test_a_task_for_a_role_is_claimed_by_a_candidate_and_not_by_others(stack, owner):
    define(stack, owner, approval(assignee={"role": "sales"}))
    inst = start(stack, owner, "approval")
    rep = user_session(stack, owner, ["sales"])
    clerk = user_session(stack, owner, ["warehouse"])
    offered = tasks(stack, rep, candidate="me")
    assert [t["instance_id"] for t in offered] == [inst["id"]]
    assert offered[0]["candidate_roles"] == ["sales"] and offered[0]["assignee_id"] is None
    tid = offered[0]["id"]
    assert tasks(stack, clerk, candidate="me") == []
    check_problem(call(stack, clerk, "POST", f"{TASKS}/{tid}/claim"), 404)
    check_problem(call(stack, clerk, "POST", f"{TASKS}/{tid}/complete", json={"data": {"approved": True}}), 404)
    r = call(stack, rep, "POST", f"{TASKS}/{tid}/claim")
    assert r.status_code == 200 and r.json()["assignee_id"] == rep.user_id
    assert [t["id"] for t in tasks(stack, rep, assignee="me")] == [tid]
    other = user_session(stack, owner, ["sales"])
    check_problem(call(stack, other, "POST", f"{TASKS}/{tid}/claim"), 404)
    r = call(stack, rep, "POST", f"{TASKS}/{tid}/unclaim")
    assert r.status_code == 200 and r.json()["assignee_id"] is None
    r = call(stack, other, "POST", f"{TASKS}/{tid}/complete", json={"data": {"approved": True}})
    assert r.status_code == 200, r.text
    assert instance(stack, owner, inst["id"])["status"] == "completed"


def test_another_tenant_reaches_nothing(stack, owner):
    define(stack, owner, approval(assignee={"user_id": owner.user_id}))
    inst = start(stack, owner, "approval")
    task = tasks(stack, owner, assignee="me")[0]
    stranger = signup(stack)
    assert call(stack, stranger, "GET", f"{DEFS}/approval").status_code == 404
    assert call(stack, stranger, "GET", f"{INSTANCES}/{inst['id']}").status_code == 404
    assert call(stack, stranger, "GET", f"{TASKS}/{task['id']}").status_code == 404
    check_problem(call(stack, stranger, "POST", f"{TASKS}/{task['id']}/complete", json={"data": {"approved": True}}), 404)
    check_problem(call(stack, stranger, "POST", f"{INSTANCES}/{inst['id']}/cancel"), 404)
    r = call(stack, stranger, "POST", INSTANCES, json={"definition_key": "approval"})
    assert "definition_key" in fields_of(r)
    assert tasks(stack, stranger) == []
    assert call(stack, owner, "GET", f"{TASKS}/{task['id']}").json()["status"] == "open"


def test_roles_without_bpm_permissions_get_403(stack, owner):
    rep = user_session(stack, owner, ["sales"])
    check_problem(call(stack, rep, "POST", DEFS, json=approval()), 403)
    check_problem(call(stack, rep, "POST", INSTANCES, json={"definition_key": "approval"}), 403)
    check_problem(call(stack, rep, "GET", INSTANCES), 403)


def test_someone_elses_task_is_403_for_an_own_role_and_fine_for_a_manager(stack, owner):
    rep = user_session(stack, owner, ["sales"])
    define(stack, owner, approval(assignee={"user_id": rep.user_id}))
    inst = start(stack, owner, "approval")
    other = user_session(stack, owner, ["sales"])
    tid = tasks(stack, rep, assignee="me")[0]["id"]
    check_problem(call(stack, other, "POST", f"{TASKS}/{tid}/complete", json={"data": {"approved": True}}), 404)
    manager = user_session(stack, owner, ["manager"])
    assert call(stack, manager, "POST", f"{TASKS}/{tid}/complete", json={"data": {"approved": True}}).status_code == 200
    assert instance(stack, owner, inst["id"])["status"] == "completed"


def test_cancel_ends_the_open_tasks(stack, owner):
    define(stack, owner, approval(assignee={"user_id": owner.user_id}))
    inst = start(stack, owner, "approval")
    tid = tasks(stack, owner, assignee="me")[0]["id"]
    r = call(stack, owner, "POST", f"{INSTANCES}/{inst['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["compensations"] == []
    assert call(stack, owner, "GET", f"{TASKS}/{tid}").json()["status"] == "cancelled"
    check_problem(call(stack, owner, "POST", f"{TASKS}/{tid}/complete", json={"data": {"approved": True}}), 409)
    check_problem(call(stack, owner, "POST", f"{INSTANCES}/{inst['id']}/cancel"), 409)


def test_the_assignee_is_told_over_websocket_the_moment_the_step_is_reached(stack, owner):
    rep = user_session(stack, owner, ["sales"])
    other = user_session(stack, owner, ["sales"])
    define(stack, owner, approval(assignee={"user_id": rep.user_id}))
    sockets = []
    for who in (rep, other):
        ws = connect(stack.base_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10)
        ws.send(json.dumps({"type": "auth", "token": who.access_token, "topics": ["bpm.tasks"]}))
        while json.loads(ws.recv(timeout=10))["type"] != "subscribed":
            pass
        sockets.append(ws)
    try:
        inst = start(stack, owner, "approval")
        f = json.loads(sockets[0].recv(timeout=10))
        assert (f["type"], f["event"], f["topic"]) == ("event", "bpm.task.assigned", "bpm.tasks")
        assert f["data"]["instance_id"] == inst["id"] and f["data"]["assignee_id"] == rep.user_id
        with pytest.raises(TimeoutError):
            sockets[1].recv(timeout=1.0)
    finally:
        for ws in sockets:
            ws.close()


def listen(stack, who, topics=("bpm.tasks",)):
    ws = connect(stack.base_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10)
    ws.send(json.dumps({"type": "auth", "token": who.access_token, "topics": list(topics)}))
    while json.loads(ws.recv(timeout=10))["type"] != "subscribed":
        pass
    return ws


def test_a_step_offered_to_a_role_is_pushed_to_its_holders_who_read_only_their_own(stack, owner):
    """warehouse holds bpm.tasks.read only as ":own": the step offered to
    the role still reaches each holder live (and their changes feed), not
    a sales rep; the claim is heard by both candidates, so the task leaves
    the other's inbox."""
    clerks = [user_session(stack, owner, ["warehouse"]) for _ in range(2)]
    rep = user_session(stack, owner, ["sales"])
    define(stack, owner, approval(assignee={"role": "warehouse"}))
    sockets = [listen(stack, who) for who in (*clerks, rep)]
    try:
        inst = start(stack, owner, "approval")
        for ws in sockets[:2]:
            f = json.loads(ws.recv(timeout=10))
            assert (f["event"], f["data"]["instance_id"]) == ("bpm.task.assigned", inst["id"])
            assert f["data"]["assignee_id"] is None and f["data"]["candidate_roles"] == ["warehouse"]
        with pytest.raises(TimeoutError):
            sockets[2].recv(timeout=1.0)
        feed = call(stack, clerks[1], "GET", "/v1/changes", params={"topics": "bpm.tasks"})
        assert feed.status_code == 200, feed.text
        assert [i["event"] for i in feed.json()["items"]] == ["bpm.task.assigned"]
        assert call(stack, rep, "GET", "/v1/changes", params={"topics": "bpm.tasks"}).json()["items"] == []
        tid = f["data"]["id"]
        assert call(stack, clerks[0], "POST", f"{TASKS}/{tid}/claim").status_code == 200
        for ws in sockets[:2]:
            f = json.loads(ws.recv(timeout=10))
            assert (f["event"], f["data"]["assignee_id"]) == ("bpm.task.claimed", clerks[0].user_id)
        r = call(stack, clerks[0], "POST", f"{TASKS}/{tid}/complete", json={"data": {"approved": True}})
        assert r.status_code == 200, r.text
        f = json.loads(sockets[0].recv(timeout=10))
        assert f["event"] == "bpm.task.completed"
        with pytest.raises(TimeoutError):
            sockets[1].recv(timeout=1.0)  # no longer offered to them: not theirs
        with pytest.raises(TimeoutError):
            sockets[2].recv(timeout=0.2)
    finally:
        for ws in sockets:
            ws.close()


def test_oversized_definitions_are_refused_whole(stack, owner):
    many = {"key": "huge", "nodes": [{"id": f"t{i}", "type": "timer", "duration": "PT1H"} for i in range(201)]
            + [{"id": "end", "type": "end"}],
            "flows": [{"from": "start", "to": "t0"}] + [{"from": f"t{i}", "to": f"t{i + 1}"} for i in range(200)]
            + [{"from": "t200", "to": "end"}]}
    assert "at most 200 nodes" in fields_of(call(stack, owner, "POST", DEFS, json=many))["nodes"]
    big = approval(key="big")
    big["nodes"][0]["instructions"] = "x" * (1100 * 1024)
    check_problem(call(stack, owner, "POST", DEFS, json=big), 413)
    assert call(stack, owner, "GET", f"{DEFS}/huge").status_code == 404
    assert call(stack, owner, "GET", f"{DEFS}/big").status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"variables": {"a.b": 1}}, "variables"),
    ({"variables": [1, 2]}, "variables"),
    ({"version": 0}, "version"),
    ({"version": 9}, "definition_key"),
    ({"subject": {"type": "crm.deal", "id": "0" * 24}}, "subject"),
    ({"subject": {"type": "crm.spaceship", "id": "0" * 24}}, "subject"),
    ({"subject": "deal"}, "subject"),
])
def test_bad_instance_starts_are_422_and_start_nothing(stack, owner, body, field):
    define(stack, owner, approval(assignee={"user_id": owner.user_id}))
    r = call(stack, owner, "POST", INSTANCES, json={"definition_key": "approval", **body})
    assert field in fields_of(r)
    assert call(stack, owner, "GET", INSTANCES).json()["items"] == []


def test_another_tenants_deal_is_no_subject(stack, owner):
    define(stack, owner, approval(assignee={"user_id": owner.user_id}))
    stranger = signup(stack)
    r = call(stack, stranger, "POST", "/v1/crm/clients", json={"name": "Theirs", "kind": "company"})
    deal = call(stack, stranger, "POST", "/v1/crm/deals", json={"client_id": r.json()["id"], "title": "Theirs"}).json()
    r = call(stack, owner, "POST", INSTANCES, json={"definition_key": "approval",
                                                    "subject": {"type": "crm.deal", "id": deal["id"]}})
    assert "subject" in fields_of(r)
