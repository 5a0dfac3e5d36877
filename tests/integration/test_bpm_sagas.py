"""BPM service steps as sagas on the real CRM and ERP: "fulfil a won deal"
started by crm.deal.won (once, even when the event is delivered twice),
its approval assigned to the deal's owner, the order made and confirmed by
service steps, the instance waiting for erp.order.paid correlated on the
order, shipping it, and the stock and ledger invariants after; a cancel
that compensates newest first and says what cannot be undone; a step out
of retries failing its instance with an incident that a retry resolves;
timers, boundary timers and escalations."""

import json
import secrets
import time

import pytest

from conftest import DB_NAME, check_problem, signup, user_session
from erp_support import assert_inventory_invariants, call, make_product, make_warehouse, money, receive, stock
from test_bpm_flow import DEFS, INSTANCES, TASKS, define, instance, start, tasks, wait_for

DEALS = "/v1/crm/deals"


@pytest.fixture
def owner(stack):
    return signup(stack)


def fulfilment(warehouse, product, quantity=2, key="fulfil", sla="PT4H"):
    return {
        "key": key, "name": "Fulfil a won deal", "start_on": "crm.deal.won",
        "nodes": [
            {"id": "approve", "type": "user_task", "name": "Approve the order",
             "instructions": "Check the deal and approve.", "assignee": {"field": "owner_id"},
             "form": [{"key": "approved", "type": "bool", "required": True}],
             "due_in": sla},
            {"id": "ok", "type": "exclusive", "default": "rejected"},
            {"id": "order", "type": "service", "action": "erp.create_order_from_deal",
             "input": {"warehouse_id": warehouse["id"], "currency": "EUR",
                       "lines": [{"product_id": product["id"], "quantity": quantity,
                                  "unit_price": money(1000)}]}},
            {"id": "confirm", "type": "service", "action": "erp.confirm_order"},
            {"id": "paid", "type": "wait_event", "event": "erp.order.paid", "correlate": "order_id"},
            {"id": "ship", "type": "service", "action": "erp.ship_order"},
            {"id": "done", "type": "end"},
            {"id": "rejected", "type": "end"},
        ],
        "flows": [
            {"from": "start", "to": "approve"}, {"from": "approve", "to": "ok"},
            {"from": "ok", "to": "order", "when": "approved == true"}, {"from": "ok", "to": "rejected"},
            {"from": "order", "to": "confirm"}, {"from": "confirm", "to": "paid"},
            {"from": "paid", "to": "ship"}, {"from": "ship", "to": "done"},
        ],
    }


def won_deal(stack, acct, owner_id=None):
    r = call(stack, acct, "POST", "/v1/crm/clients", json={"name": f"Client {secrets.token_hex(3)}", "kind": "company"})
    assert r.status_code == 201, r.text
    body = {"client_id": r.json()["id"], "title": "Workstations"}
    if owner_id:
        body["owner_id"] = owner_id
    r = call(stack, acct, "POST", DEALS, json=body)
    assert r.status_code == 201, r.text
    deal = r.json()
    r = call(stack, acct, "POST", f"{DEALS}/{deal['id']}/won")
    assert r.status_code == 200, r.text
    return r.json()


def instances_of(stack, acct, key):
    r = call(stack, acct, "GET", INSTANCES, params={"definition_key": key})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def goods(stack, acct, on_hand=10):
    w, p = make_warehouse(stack, acct), make_product(stack, acct)
    if on_hand:
        receive(stack, acct, p, w, on_hand, 400)
    return w, p


def test_a_won_deal_is_fulfilled_through_approval_order_payment_and_shipment(stack, owner):
    rep = user_session(stack, owner, ["sales"])
    w, p = goods(stack, owner)
    define(stack, owner, fulfilment(w, p))
    deal = won_deal(stack, owner, owner_id=rep.user_id)
    inst = wait_for(lambda: instances_of(stack, owner, "fulfil"), what="an instance started by crm.deal.won")[0]
    assert inst["subject"] == {"type": "crm.deal", "id": deal["id"]}
    assert inst["variables"]["deal_id"] == deal["id"]
    task = wait_for(lambda: tasks(stack, rep, assignee="me"), what="the approval in the owner's inbox")[0]
    assert (task["name"], task["subject"]["id"], task["assignee_id"]) == ("Approve the order", deal["id"], rep.user_id)
    r = call(stack, rep, "POST", f"{TASKS}/{task['id']}/complete", json={"data": {"approved": True}})
    assert r.status_code == 200, r.text

    waiting = wait_for(lambda: (i := instance(stack, owner, inst["id"]))["active_nodes"] == ["paid"] and i,
                       what="the instance waiting for the payment")
    order_id = waiting["variables"]["order_id"]
    order = call(stack, owner, "GET", f"/v1/erp/orders/{order_id}").json()
    assert (order["status"], order["deal_id"]) == ("confirmed", deal["id"])
    assert stock(stack, owner, p, w)["reserved"] == 2
    assert call(stack, owner, "POST", f"/v1/erp/orders/{order_id}/invoice").status_code == 201
    r = call(stack, owner, "POST", f"/v1/erp/orders/{order_id}/payments", json={"amount": money(order["total"]["amount"]), "method": "bank"})
    assert r.status_code == 201, r.text


    done = wait_for(lambda: (i := instance(stack, owner, inst["id"]))["status"] == "completed" and i,
                    what="the instance to complete after the payment")
    assert [s["action"] for s in done["steps"]] == ["erp.create_order_from_deal", "erp.confirm_order", "erp.ship_order"]
    s = stock(stack, owner, p, w)
    assert (s["on_hand"], s["reserved"]) == (8, 0), s
    assert call(stack, owner, "GET", f"/v1/erp/orders/{order_id}").json()["status"] in ("completed", "shipped")
    hist = [(h["node_id"], h["action"]) for h in
            call(stack, owner, "GET", f"{INSTANCES}/{inst['id']}/history").json()["items"]]
    assert [n for n, a in hist if a == "entered"] == ["start", "approve", "ok", "order", "confirm", "paid", "ship", "done"]
    assert len(instances_of(stack, owner, "fulfil")) == 1
    assert_inventory_invariants(stack, owner)


def test_the_same_won_deal_delivered_twice_starts_one_instance(stack, owner):
    w, p = goods(stack, owner)
    define(stack, owner, fulfilment(w, p))
    deal = won_deal(stack, owner)
    first = wait_for(lambda: instances_of(stack, owner, "fulfil"), what="the first start")
    # the listener's queue gets the very same event again (at-least-once delivery)
    event = {"id": f"{int(time.time() * 1000)}-0", "topic": "crm.deals", "event": "crm.deal.won",
             "entity_id": deal["id"].upper(), "actor": owner.user_id, "ts": "2026-01-01T00:00:00Z", "data": deal}
    stack.redis.xadd(f"q:{{{DB_NAME}:bpm.events:0}}", {"id": secrets.token_hex(16), "tenant": owner.tenant_id,
                                                 "attempt": "0", "payload": json.dumps({"event": event})})
    time.sleep(2.0)
    again = instances_of(stack, owner, "fulfil")
    assert [i["id"] for i in again] == [first[0]["id"]]
    assert len(tasks(stack, owner, assignee="me")) == 1


def test_cancel_compensates_done_steps_newest_first_and_says_what_cannot_be_undone(stack, owner):
    w, p = goods(stack, owner)
    define(stack, owner, fulfilment(w, p))
    won_deal(stack, owner)
    inst = wait_for(lambda: instances_of(stack, owner, "fulfil"), what="a start")[0]
    task = wait_for(lambda: tasks(stack, owner, assignee="me"), what="the approval")[0]
    assert call(stack, owner, "POST", f"{TASKS}/{task['id']}/complete", json={"data": {"approved": True}}).status_code == 200
    waiting = wait_for(lambda: (i := instance(stack, owner, inst["id"]))["active_nodes"] == ["paid"] and i,
                       what="the wait for payment")
    assert stock(stack, owner, p, w)["reserved"] == 2
    r = call(stack, owner, "POST", f"{INSTANCES}/{inst['id']}/cancel")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled"
    assert [(c["action"], c["result"]) for c in body["compensations"]] == [
        ("erp.confirm_order", "done"), ("erp.create_order_from_deal", "done")]
    order = call(stack, owner, "GET", f"/v1/erp/orders/{waiting['variables']['order_id']}").json()
    assert order["status"] == "cancelled"
    s = stock(stack, owner, p, w)
    assert (s["on_hand"], s["reserved"], s["available"]) == (10, 0, 10)
    assert_inventory_invariants(stack, owner)


def test_a_shipped_order_is_not_unshipped_and_the_cancel_says_so(stack, owner):
    w, p = goods(stack, owner)
    me = {"user_id": owner.user_id}
    body = fulfilment(w, p)
    # no approval, no payment: straight to shipping, then a last task
    body["nodes"] = [n for n in body["nodes"] if n["id"] not in ("approve", "ok", "paid", "rejected")]
    body["nodes"].insert(0, {"id": "last", "type": "user_task", "name": "Call the client", "assignee": me})
    body["flows"] = [{"from": "start", "to": "order"}, {"from": "order", "to": "confirm"},
                     {"from": "confirm", "to": "ship"}, {"from": "ship", "to": "last"}, {"from": "last", "to": "done"}]
    define(stack, owner, body)
    won_deal(stack, owner)
    inst = wait_for(lambda: instances_of(stack, owner, "fulfil"), what="a start")[0]
    wait_for(lambda: instance(stack, owner, inst["id"])["active_nodes"] == ["last"], what="the shipment")
    r = call(stack, owner, "POST", f"{INSTANCES}/{inst['id']}/cancel")
    assert r.status_code == 200, r.text
    comp = r.json()["compensations"]
    assert comp[0]["action"] == "erp.ship_order" and comp[0]["result"] == "not possible"
    assert "not un-shipped" in comp[0]["compensation"]
    assert stock(stack, owner, p, w)["on_hand"] == 8
    assert_inventory_invariants(stack, owner)


def test_a_step_out_of_retries_fails_the_instance_with_an_incident_and_a_retry_after_the_fix_goes_on(stack, owner):
    w, p = goods(stack, owner, on_hand=0)  # nothing to reserve: confirm gets 409 every time
    me = {"user_id": owner.user_id}
    body = fulfilment(w, p)
    body["nodes"] = [n for n in body["nodes"] if n["id"] not in ("approve", "ok", "paid", "ship", "rejected")]
    body["nodes"].append({"id": "next", "type": "user_task", "name": "Next", "assignee": me})
    body["flows"] = [{"from": "start", "to": "order"}, {"from": "order", "to": "confirm"},
                     {"from": "confirm", "to": "next"}, {"from": "next", "to": "done"}]
    define(stack, owner, body)
    won_deal(stack, owner)
    inst = wait_for(lambda: instances_of(stack, owner, "fulfil"), what="a start")[0]
    failed = wait_for(lambda: (i := instance(stack, owner, inst["id"]))["status"] == "failed" and i,
                      timeout=40, what="the instance failing after its retries")
    assert "erp.confirm_order failed" in failed["error"] and "409" in failed["error"]
    # the incident is written right after the instance's failed move
    inc = wait_for(lambda: call(stack, owner, "GET", "/v1/bpm/incidents",
                                params={"instance_id": inst["id"]}).json()["items"], what="the incident")
    assert len(inc) == 1 and inc[0]["node_id"] == "confirm" and inc[0]["status"] == "open"
    receive(stack, owner, p, w, 5, 400)
    r = call(stack, owner, "POST", f"/v1/bpm/incidents/{inc[0]['id']}/retry")
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    wait_for(lambda: instance(stack, owner, inst["id"])["active_nodes"] == ["next"], what="the step to succeed")
    assert instance(stack, owner, inst["id"])["status"] == "running"
    assert stock(stack, owner, p, w)["reserved"] == 2


def test_a_timer_waits_then_moves_on(stack, owner):
    me = {"user_id": owner.user_id}
    define(stack, owner, {"key": "later", "nodes": [
        {"id": "wait", "type": "timer", "duration": "PT1S"},
        {"id": "then", "type": "user_task", "name": "Then", "assignee": me}, {"id": "end", "type": "end"}],
        "flows": [{"from": "start", "to": "wait"}, {"from": "wait", "to": "then"}, {"from": "then", "to": "end"}]})
    t0 = time.time()
    inst = start(stack, owner, "later")
    assert inst["active_nodes"] == ["wait"]
    wait_for(lambda: instance(stack, owner, inst["id"])["active_nodes"] == ["then"], what="the timer")
    assert time.time() - t0 >= 0.9


def test_an_interrupting_boundary_timer_takes_the_task_away_and_escalation_reassigns(stack, owner):
    me = {"user_id": owner.user_id}
    define(stack, owner, {"key": "sla", "nodes": [
        {"id": "approve", "type": "user_task", "name": "Approve", "assignee": me},
        {"id": "late", "type": "boundary_timer", "attached_to": "approve", "duration": "PT1S"},
        {"id": "chase", "type": "user_task", "name": "Chase", "assignee": {"role": "manager"},
         "escalate_after": "PT1S", "escalate_to": {"role": "admin"}},
        {"id": "end", "type": "end"}],
        "flows": [{"from": "start", "to": "approve"}, {"from": "approve", "to": "end"},
                  {"from": "late", "to": "chase"}, {"from": "chase", "to": "end"}]})
    inst = start(stack, owner, "sla")
    first = tasks(stack, owner, assignee="me")[0]
    wait_for(lambda: instance(stack, owner, inst["id"])["active_nodes"] == ["chase"], what="the boundary timer")
    # the interrupted task is cancelled just after the instance moves on
    wait_for(lambda: call(stack, owner, "GET", f"{TASKS}/{first['id']}").json()["status"] == "cancelled",
             what="the interrupted task cancelled")
    check_problem(call(stack, owner, "POST", f"{TASKS}/{first['id']}/complete", json={}), 409)
    # The instance is written first and its new task right after, so a
    # step reached by a background timer shows its task a moment later.
    chase = wait_for(lambda: next((t for t in tasks(stack, owner) if t["name"] == "Chase"), None),
                     what="the chase task")
    assert chase["candidate_roles"] == ["manager"]
    escalated = wait_for(lambda: (t := call(stack, owner, "GET", f"{TASKS}/{chase['id']}").json())["candidate_roles"] == ["admin"] and t,
                         what="the escalation")
    assert escalated["status"] == "open"


def test_a_timer_start_makes_one_instance_per_period_until_a_new_version_drops_it(stack, owner):
    me = {"user_id": owner.user_id}
    body = {"key": "tick", "start_every": "PT2S", "nodes": [
        {"id": "look", "type": "user_task", "name": "Look", "assignee": me}, {"id": "end", "type": "end"}],
        "flows": [{"from": "start", "to": "look"}, {"from": "look", "to": "end"}]}
    define(stack, owner, body)
    wait_for(lambda: len(instances_of(stack, owner, "tick")) >= 2, timeout=12, what="two timer starts")
    body.pop("start_every")
    define(stack, owner, body)
    time.sleep(2.5)  # a slot due as the new version came may still start
    settled = len(instances_of(stack, owner, "tick"))
    time.sleep(4.5)
    started = instances_of(stack, owner, "tick")
    assert len(started) == settled, "the dropped timer start kept starting"
    assert all(i["version"] == 1 for i in started)
    assert len({i["id"] for i in started}) == len(started)


def test_a_boundary_timer_that_does_not_interrupt_adds_a_branch_once(stack, owner):
    me = {"user_id": owner.user_id}
    define(stack, owner, {"key": "nudge", "nodes": [
        {"id": "work", "type": "user_task", "name": "Work", "assignee": me},
        {"id": "nudge", "type": "boundary_timer", "attached_to": "work", "duration": "PT1S", "interrupting": False},
        {"id": "remind", "type": "user_task", "name": "Remind", "assignee": me},
        {"id": "end", "type": "end"}, {"id": "end2", "type": "end"}],
        "flows": [{"from": "start", "to": "work"}, {"from": "work", "to": "end"},
                  {"from": "nudge", "to": "remind"}, {"from": "remind", "to": "end2"}]})
    inst = start(stack, owner, "nudge")
    wait_for(lambda: sorted(instance(stack, owner, inst["id"])["active_nodes"]) == ["remind", "work"],
             what="the reminder branch")
    time.sleep(1.5)
    mine = [t["name"] for t in tasks(stack, owner, assignee="me", status="open")]
    assert sorted(mine) == ["Remind", "Work"]
    for t in tasks(stack, owner, assignee="me", status="open"):
        assert call(stack, owner, "POST", f"{TASKS}/{t['id']}/complete", json={}).status_code == 200
    assert instance(stack, owner, inst["id"])["status"] == "completed"
