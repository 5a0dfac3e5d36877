"""BPM exact across processes: three server processes on one database and
one Redis. Fifty completes of one task at once (ids spelled every way the
API accepts) - one 200, the rest 409, one move; a parallel join whose two
branches finish at the same moment on different processes fires once; a
timer fires once though every process runs jobs; a process killed in the
middle of a service step - the step runs again and its effect (an ERP
shipment) happens once."""

import time

import requests

from conftest import check_problem, signup
from erp_support import assert_inventory_invariants, make_product, make_warehouse, money, receive, stock
from test_bpm_flow import wait_for
from test_exact_writes import race, spellings, statuses, trio  # noqa: F401 (fixture)

DEFS = "/v1/bpm/definitions"
INSTANCES = "/v1/bpm/instances"
TASKS = "/v1/bpm/tasks"


class At:
    """One of the trio's processes as a target of the test helpers."""

    def __init__(self, proc):
        self.base_url = proc.url("").rstrip("/")


def post(trio, i, acct, path, body=None):
    return requests.post(trio.url(i, path), json=body, headers=acct.headers, timeout=120)


def get(trio, i, acct, path, **params):
    r = requests.get(trio.url(i, path), params=params, headers=acct.headers, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def define(trio, acct, body):
    r = post(trio, 0, acct, DEFS, body)
    assert r.status_code == 201, r.text
    return r.json()


def start(trio, acct, key, i=0):
    r = post(trio, i, acct, INSTANCES, {"definition_key": key})
    assert r.status_code == 201, r.text
    return r.json()


def history(trio, acct, iid):
    return [(h["node_id"], h["action"]) for h in get(trio, 1, acct, f"{INSTANCES}/{iid}/history")["items"]]


def test_fifty_completes_of_one_task_at_once_over_three_processes_one_wins(trio):
    owner = signup(At(trio.procs[0]))
    me = {"user_id": owner.user_id}
    define(trio, owner, {"key": "once", "nodes": [
        {"id": "a", "type": "user_task", "name": "A", "assignee": me,
         "form": [{"key": "n", "type": "int", "required": True}]},
        {"id": "b", "type": "user_task", "name": "B", "assignee": me}, {"id": "end", "type": "end"}],
        "flows": [{"from": "start", "to": "a"}, {"from": "a", "to": "b"}, {"from": "b", "to": "end"}]})
    inst = start(trio, owner, "once")
    tid = get(trio, 0, owner, TASKS, assignee="me")["items"][0]["id"]
    ids = spellings(tid)
    got = race([lambda i=i: post(trio, i, owner, f"{TASKS}/{ids[i % 3]}/complete", {"data": {"n": i}})
                for i in range(50)])
    codes = statuses(got)
    assert codes.count(200) == 1 and codes.count(409) == 49, codes
    for r in got:
        if r.status_code == 409:
            check_problem(r, 409)
    winner = [r for r in got if r.status_code == 200][0].json()
    after = get(trio, 2, owner, f"{INSTANCES}/{inst['id']}")
    assert after["active_nodes"] == ["b"] and after["variables"]["n"] == winner["data"]["n"]
    open_tasks = get(trio, 1, owner, TASKS, assignee="me", status="open")["items"]
    assert [t["name"] for t in open_tasks] == ["B"]
    assert history(trio, owner, inst["id"]).count(("a", "left")) == 1


def test_a_join_whose_branches_finish_at_once_on_two_processes_fires_once(trio):
    owner = signup(At(trio.procs[0]))
    me = {"user_id": owner.user_id}
    define(trio, owner, {"key": "join", "nodes": [
        {"id": "split", "type": "parallel"},
        {"id": "a", "type": "user_task", "name": "A", "assignee": me},
        {"id": "b", "type": "user_task", "name": "B", "assignee": me},
        {"id": "join", "type": "parallel"},
        {"id": "after", "type": "user_task", "name": "After", "assignee": me}, {"id": "end", "type": "end"}],
        "flows": [{"from": "start", "to": "split"}, {"from": "split", "to": "a"}, {"from": "split", "to": "b"},
                  {"from": "a", "to": "join"}, {"from": "b", "to": "join"}, {"from": "join", "to": "after"},
                  {"from": "after", "to": "end"}]})
    for round_ in range(5):
        inst = start(trio, owner, "join", i=round_)
        mine = [t for t in get(trio, 0, owner, TASKS, assignee="me", status="open", limit=100)["items"]
                if t["instance_id"] == inst["id"]]
        by = {t["name"]: t["id"] for t in mine}
        got = race([lambda: post(trio, 1, owner, f"{TASKS}/{by['A']}/complete", {}),
                    lambda: post(trio, 2, owner, f"{TASKS}/{by['B'].upper()}/complete", {})])
        assert statuses(got) == [200, 200], [r.text for r in got]
        after = get(trio, 0, owner, f"{INSTANCES}/{inst['id']}")
        assert after["active_nodes"] == ["after"], after
        followers = [t for t in get(trio, 2, owner, TASKS, assignee="me", status="open", limit=100)["items"]
                     if t["instance_id"] == inst["id"]]
        assert [t["name"] for t in followers] == ["After"]
        assert history(trio, owner, inst["id"]).count(("join", "left")) == 1


def test_a_timer_fires_once_with_three_processes_running_jobs(trio):
    owner = signup(At(trio.procs[0]))
    me = {"user_id": owner.user_id}
    define(trio, owner, {"key": "tick", "nodes": [
        {"id": "wait", "type": "timer", "duration": "PT1S"},
        {"id": "then", "type": "user_task", "name": "Then", "assignee": me}, {"id": "end", "type": "end"}],
        "flows": [{"from": "start", "to": "wait"}, {"from": "wait", "to": "then"}, {"from": "then", "to": "end"}]})
    started = [start(trio, owner, "tick", i=i) for i in range(6)]
    for inst in started:
        wait_for(lambda: get(trio, 1, owner, f"{INSTANCES}/{inst['id']}")["active_nodes"] == ["then"],
                 what="the timer")
    time.sleep(1.0)
    for inst in started:
        assert history(trio, owner, inst["id"]).count(("wait", "left")) == 1
    open_tasks = get(trio, 2, owner, TASKS, assignee="me", status="open", limit=100)["items"]
    assert sorted(t["instance_id"] for t in open_tasks) == sorted(i["id"] for i in started)


def test_a_process_killed_in_the_middle_of_a_service_step_ships_once_after_restart(trio):
    owner = signup(At(trio.procs[0]))
    at = At(trio.procs[0])
    w = make_warehouse(at, owner)
    p1, p2 = make_product(at, owner), make_product(at, owner)
    receive(at, owner, p1, w, 10, 400)
    receive(at, owner, p2, w, 10, 500)
    me = {"user_id": owner.user_id}
    r = post(trio, 0, owner, "/v1/erp/orders", {
        "warehouse_id": w["id"], "currency": "EUR",
        "lines": [{"product_id": p1["id"], "quantity": 2, "unit_price": money(1000)},
                  {"product_id": p2["id"], "quantity": 3, "unit_price": money(1000)}]})
    assert r.status_code == 201, r.text
    order = r.json()
    assert post(trio, 0, owner, f"/v1/erp/orders/{order['id']}/confirm").status_code == 200
    define(trio, owner, {"key": "ship", "nodes": [
        {"id": "ship", "type": "service", "action": "erp.ship_order"},
        {"id": "next", "type": "user_task", "name": "Next", "assignee": me}, {"id": "end", "type": "end"}],
        "flows": [{"from": "start", "to": "ship"}, {"from": "ship", "to": "next"}, {"from": "next", "to": "end"}]})

    # only a slow process runs jobs: its shipment stops between the two lines
    for proc in trio.procs:
        proc.kill()
    doomed, _ = trio.start(debug_step_delay_ms=30000, job_visibility_ms=2000, erp_settle_after_ms=2000)
    r = requests.post(doomed.url(INSTANCES), json={"definition_key": "ship", "variables": {"order_id": order["id"]}},
                      headers=owner.headers, timeout=60)
    assert r.status_code == 201, r.text
    inst = r.json()
    wait_for(lambda: stock(at_proc(doomed), owner, p1, w)["on_hand"] == 8, timeout=30,
             what="the first line shipped")
    doomed.kill()
    fresh, _ = trio.start(job_visibility_ms=2000, erp_settle_after_ms=2000)
    trio.procs = [fresh]
    done = wait_for(lambda: (i := requests.get(fresh.url(f"{INSTANCES}/{inst['id']}"), headers=owner.headers,
                                               timeout=30).json())["active_nodes"] == ["next"] and i,
                    timeout=60, what="the step run again to its end")
    assert [s["action"] for s in done["steps"]] == ["erp.ship_order"]
    target = at_proc(fresh)
    left = (stock(target, owner, p1, w)["on_hand"], stock(target, owner, p2, w)["on_hand"])
    assert left == (8, 7), left
    shipments = requests.get(fresh.url("/v1/erp/shipments"), params={"order_id": order["id"]},
                             headers=owner.headers, timeout=30).json()["items"]
    assert len(shipments) == 1, shipments
    assert_inventory_invariants(target, owner)


def at_proc(proc):
    return At(proc)
