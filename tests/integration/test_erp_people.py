"""ERP people: departments and employees on the resource engine, the org
chart (its nesting worked out by hand below), hierarchies that never loop
(parent_id, manager_id: 422 naming the loop, also when two writers race),
department names unique whatever their case, bad input, roles, other
tenants, the head of a user's department (the platform's directory
question, asked over GET /v1/erp/employees/head-of), events on erp.hr, and
a user's deactivation keeping their employee. Every test signs a tenant of
its own up."""

import json
import threading

import pytest
from websockets.sync.client import connect

from conftest import check_problem, create_user, signup, user_session
from erp_support import call

DEPARTMENTS = "/v1/erp/departments"
EMPLOYEES = "/v1/erp/employees"


@pytest.fixture
def owner(stack):
    return signup(stack)


def department(stack, acct, name, parent=None, **fields):
    body = {"name": name}
    if parent is not None:
        body["parent_id"] = parent["id"]
    body.update(fields)
    r = call(stack, acct, "POST", DEPARTMENTS, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def employee(stack, acct, name, dept=None, **fields):
    body = {"name": name}
    if dept is not None:
        body["department_id"] = dept["id"]
    body.update(fields)
    r = call(stack, acct, "POST", EMPLOYEES, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def patch(stack, acct, path, **body):
    return call(stack, acct, "PATCH", path, json=body)


def patch_ok(stack, acct, path, **body):
    r = patch(stack, acct, path, **body)
    assert r.status_code == 200, r.text
    return r.json()


def errors_of(r, status=422):
    return {e["field"]: e["message"] for e in check_problem(r, status).get("errors", [])}


def org_chart(stack, acct):
    r = call(stack, acct, "GET", "/v1/erp/org-chart")
    assert r.status_code == 200, r.text
    return r.json()


def shape(units):
    """The chart as (name, head name, [employee names], [children]) tuples."""
    return [(u["name"], u["head"]["name"] if u["head"] else None,
             [e["name"] for e in u["employees"]], shape(u["children"])) for u in units]


def head_of(stack, acct, user_id):
    return call(stack, acct, "GET", f"{EMPLOYEES}/head-of", params={"user_id": user_id})


# ---------------------------------------------------------------------------
# departments, employees and the org chart
# ---------------------------------------------------------------------------


def test_the_org_chart_nests_departments_by_name_with_heads_and_active_employees(stack, owner):
    company = department(stack, owner, "Company")
    sales = department(stack, owner, "Sales", company)
    ops = department(stack, owner, "operations", company)  # small letters sort by their folded name
    emea = department(stack, owner, "EMEA", sales)
    apac = department(stack, owner, "APAC", sales)
    lab = department(stack, owner, "Lab")  # a second root
    ceo = employee(stack, owner, "Carla CEO", company, position="Chief executive")
    vp = employee(stack, owner, "Victor VP", sales, position="VP Sales", manager_id=ceo["id"])
    ann = employee(stack, owner, "ann Rep", emea, manager_id=vp["id"])
    bob = employee(stack, owner, "Bob Rep", emea, manager_id=vp["id"])
    gone = employee(stack, owner, "Gone Rep", emea)
    assert call(stack, owner, "DELETE", f"{EMPLOYEES}/{gone['id']}").status_code == 204
    drifter = employee(stack, owner, "Drifter")  # in no department
    patch_ok(stack, owner, f"{DEPARTMENTS}/{company['id']}", head_id=ceo["id"])
    patch_ok(stack, owner, f"{DEPARTMENTS}/{sales['id']}", head_id=vp["id"])
    patch_ok(stack, owner, f"{DEPARTMENTS}/{emea['id']}", head_id=bob["id"])

    chart = org_chart(stack, owner)
    # worked out by hand: roots Company < Lab; Company's children by folded
    # name, "operations" < "sales"; Sales' children APAC < EMEA; EMEA's active
    # employees "ann rep" < "bob rep" (Gone Rep left); heads as set above
    assert shape(chart["departments"]) == [
        ("Company", "Carla CEO", ["Carla CEO"], [
            ("operations", None, [], []),
            ("Sales", "Victor VP", ["Victor VP"], [
                ("APAC", None, [], []),
                ("EMEA", "Bob Rep", ["ann Rep", "Bob Rep"], []),
            ]),
        ]),
        ("Lab", None, [], []),
    ]
    assert [e["name"] for e in chart["unassigned"]] == ["Drifter"]
    assert chart["unassigned"][0]["id"] == drifter["id"]
    emea_node = chart["departments"][0]["children"][1]["children"][1]
    assert emea_node["id"] == emea["id"] and emea_node["parent_id"] == sales["id"]
    assert emea_node["head"] == {"id": bob["id"], "name": "Bob Rep"}
    assert emea_node["employees"][0] == {"id": ann["id"], "name": "ann Rep", "position": None,
                                         "manager_id": vp["id"]}
    assert chart["departments"][0]["employees"][0]["position"] == "Chief executive"
    assert chart["departments"][0]["parent_id"] is None
    assert {ops["id"], apac["id"], lab["id"]} <= {u["id"] for u in walk(chart["departments"])}


def walk(units):
    for u in units:
        yield u
        yield from walk(u["children"])


def test_a_head_who_left_is_no_head_on_the_chart(stack, owner):
    d = department(stack, owner, "Support")
    h = employee(stack, owner, "Hana Head", d)
    patch_ok(stack, owner, f"{DEPARTMENTS}/{d['id']}", head_id=h["id"])
    assert call(stack, owner, "DELETE", f"{EMPLOYEES}/{h['id']}").status_code == 204
    [node] = org_chart(stack, owner)["departments"]
    assert node["head"] is None and node["employees"] == []
    # the record still names them; a new head must be active
    assert call(stack, owner, "GET", f"{DEPARTMENTS}/{d['id']}").json()["head_id"] == h["id"]
    other = department(stack, owner, "Other")
    r = patch(stack, owner, f"{DEPARTMENTS}/{other['id']}", head_id=h["id"])
    assert "head_id" in errors_of(r)


def test_employees_are_filtered_by_department_manager_user_and_active(stack, owner):
    d1, d2 = department(stack, owner, "One"), department(stack, owner, "Two")
    boss = employee(stack, owner, "Boss", d1)
    user = create_user(stack, owner, ["employee"])
    a = employee(stack, owner, "A", d1, manager_id=boss["id"], user_id=user["id"])
    b = employee(stack, owner, "B", d2, manager_id=boss["id"])
    assert call(stack, owner, "DELETE", f"{EMPLOYEES}/{b['id']}").status_code == 204

    def ids(**params):
        r = call(stack, owner, "GET", EMPLOYEES, params=params)
        assert r.status_code == 200, r.text
        return sorted(e["id"] for e in r.json()["items"])

    assert ids(department_id=d1["id"]) == sorted([boss["id"], a["id"]])
    assert ids(manager_id=boss["id"]) == sorted([a["id"], b["id"]])
    assert ids(user_id=user["id"]) == [a["id"]]
    assert ids(user_id=user["id"].upper()) == [a["id"]]
    assert ids(active="false") == [b["id"]]
    assert ids(active="true", manager_id=boss["id"]) == [a["id"]]
    r = call(stack, owner, "GET", EMPLOYEES, params={"sort": "name"})
    assert [e["name"] for e in r.json()["items"]] == ["A", "B", "Boss"]
    r = call(stack, owner, "GET", DEPARTMENTS, params={"sort": "name"})
    assert [d["name"] for d in r.json()["items"]] == ["One", "Two"]


def test_an_employee_reads_back_as_written(stack, owner):
    d = department(stack, owner, "Finance")
    user = create_user(stack, owner, ["accountant"])
    e = employee(stack, owner, "Fay Finance", d, email="Fay@Example.org", position="Controller",
                 user_id=user["id"], hired_on="2024-02-29", left_on=None)
    assert e["email"] == "fay@example.org" and e["active"] is True
    assert e["hired_on"] == "2024-02-29" and e.get("left_on") is None
    assert e["version"] == 1 and e["user_id"] == user["id"]
    assert not any(k.startswith("_") for k in e), e
    r = call(stack, owner, "GET", f"{EMPLOYEES}/{e['id']}")
    assert r.status_code == 200 and r.headers["ETag"] == '"1"'
    assert r.json() == e
    changed = patch_ok(stack, owner, f"{EMPLOYEES}/{e['id']}", left_on="2026-06-30")
    assert changed["left_on"] == "2026-06-30" and changed["active"] is True


# ---------------------------------------------------------------------------
# loops
# ---------------------------------------------------------------------------


def test_a_parent_chain_that_would_loop_is_422_naming_the_loop(stack, owner):
    sales = department(stack, owner, "Sales")
    emea = department(stack, owner, "EMEA", sales)
    west = department(stack, owner, "West", emea)
    r = patch(stack, owner, f"{DEPARTMENTS}/{sales['id']}", parent_id=emea["id"])
    assert errors_of(r)["parent_id"] == "would close a loop: Sales -> EMEA -> Sales"
    r = patch(stack, owner, f"{DEPARTMENTS}/{sales['id']}", parent_id=west["id"])
    assert errors_of(r)["parent_id"] == "would close a loop: Sales -> West -> EMEA -> Sales"
    # renamed in the same change: the loop names it as it would be
    r = patch(stack, owner, f"{DEPARTMENTS}/{sales['id']}", name="Revenue", parent_id=west["id"])
    assert errors_of(r)["parent_id"] == "would close a loop: Revenue -> West -> EMEA -> Revenue"
    r = patch(stack, owner, f"{DEPARTMENTS}/{sales['id']}", parent_id=sales["id"].upper())
    assert errors_of(r)["parent_id"] == "would close a loop: Sales -> Sales"
    # nothing changed; a move that closes no loop passes
    got = call(stack, owner, "GET", f"{DEPARTMENTS}/{sales['id']}").json()
    assert got["name"] == "Sales" and got.get("parent_id") is None and got["version"] == 1
    lab = department(stack, owner, "Lab")
    assert patch_ok(stack, owner, f"{DEPARTMENTS}/{west['id']}", parent_id=lab["id"])["parent_id"] == lab["id"]
    assert patch_ok(stack, owner, f"{DEPARTMENTS}/{lab['id']}", parent_id=sales["id"])["parent_id"] == sales["id"]


def test_a_manager_chain_that_would_loop_is_422_naming_the_loop(stack, owner):
    ceo = employee(stack, owner, "Cy")
    vp = employee(stack, owner, "Vi", manager_id=ceo["id"])
    rep = employee(stack, owner, "Re", manager_id=vp["id"])
    r = patch(stack, owner, f"{EMPLOYEES}/{ceo['id']}", manager_id=rep["id"])
    assert errors_of(r)["manager_id"] == "would close a loop: Cy -> Re -> Vi -> Cy"
    r = patch(stack, owner, f"{EMPLOYEES}/{ceo['id']}", manager_id=ceo["id"])
    assert errors_of(r)["manager_id"] == "would close a loop: Cy -> Cy"
    assert call(stack, owner, "GET", f"{EMPLOYEES}/{ceo['id']}").json()["version"] == 1
    assert patch_ok(stack, owner, f"{EMPLOYEES}/{rep['id']}", manager_id=ceo["id"])["manager_id"] == ceo["id"]


def test_two_moves_racing_to_close_a_loop_never_both_land(stack, owner):
    """Each round: A under B and B under A at once. One may land, never
    both; the stored tree never loops."""
    for round_ in range(6):
        a = department(stack, owner, f"A{round_}")
        b = department(stack, owner, f"B{round_}")
        results = {}
        go = threading.Barrier(2)

        def move(child, parent):
            go.wait()
            results[child["id"]] = patch(stack, owner, f"{DEPARTMENTS}/{child['id']}", parent_id=parent["id"])

        threads = [threading.Thread(target=move, args=(a, b)), threading.Thread(target=move, args=(b, a))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results.values())
        assert codes in ([200, 422], [422, 422]), [r.text for r in results.values()]
        parents = {d["id"]: d.get("parent_id") for d in
                   (call(stack, owner, "GET", f"{DEPARTMENTS}/{x['id']}").json() for x in (a, b))}
        assert not (parents[a["id"]] == b["id"] and parents[b["id"]] == a["id"]), parents


# ---------------------------------------------------------------------------
# conflicts and bad input
# ---------------------------------------------------------------------------


def test_a_department_name_is_unique_whatever_its_case(stack, owner):
    sales = department(stack, owner, "Sales EMEA")
    for name in ("Sales EMEA", "sales emea", "  SALES   emea "):
        check_problem(call(stack, owner, "POST", DEPARTMENTS, json={"name": name}), 409)
    other = department(stack, owner, "Support")
    check_problem(patch(stack, owner, f"{DEPARTMENTS}/{other['id']}", name="SALES emea"), 409)
    # its own name in another case is a rename, not a conflict
    assert patch_ok(stack, owner, f"{DEPARTMENTS}/{sales['id']}", name="sales EMEA")["name"] == "sales EMEA"
    # another tenant may have the same name
    department(stack, signup(stack), "Sales EMEA")
    r = call(stack, owner, "GET", DEPARTMENTS)
    assert sorted(d["name"] for d in r.json()["items"]) == ["Support", "sales EMEA"]


def test_one_employee_per_user(stack, owner):
    user = create_user(stack, owner, ["employee"])
    first = employee(stack, owner, "First", user_id=user["id"])
    check_problem(call(stack, owner, "POST", EMPLOYEES, json={"name": "Second", "user_id": user["id"]}), 409)
    second = employee(stack, owner, "Second")
    check_problem(patch(stack, owner, f"{EMPLOYEES}/{second['id']}", user_id=user["id"].upper()), 409)
    # unlinking the first frees the user; employees without a user are many
    patch_ok(stack, owner, f"{EMPLOYEES}/{first['id']}", user_id=None)
    assert patch_ok(stack, owner, f"{EMPLOYEES}/{second['id']}", user_id=user["id"])["user_id"] == user["id"]
    employee(stack, owner, "Third")


@pytest.mark.parametrize("body,field", [
    ({"email": "not-an-email"}, "email"),
    ({"email": "a@b@c.org"}, "email"),
    ({"hired_on": "2026-02-30"}, "hired_on"),
    ({"hired_on": "2026-01-01T00:00:00Z"}, "hired_on"),
    ({"hired_on": "2026-05-01", "left_on": "2026-04-30"}, "left_on"),
    ({"department_id": "0" * 24}, "department_id"),
    ({"manager_id": "f" * 24}, "manager_id"),
    ({"user_id": "not-an-id"}, "user_id"),
    ({"user_id": "0" * 24}, "user_id"),
    ({"name": ""}, "name"),
    ({"name": None}, "name"),
    ({"active": "yes"}, "active"),
    ({"salary": 100}, "salary"),
    ({"tenant_id": "0" * 24}, "tenant_id"),
])
def test_bad_employee_input_is_422_and_stores_nothing(stack, owner, body, field):
    full = {"name": "Pat"}
    full.update(body)
    if full["name"] is None:
        del full["name"]
    r = call(stack, owner, "POST", EMPLOYEES, json=full)
    assert field in errors_of(r)
    assert call(stack, owner, "GET", EMPLOYEES).json()["items"] == []


@pytest.mark.parametrize("body,field", [
    ({"name": "x" * 201}, "name"),
    ({"parent_id": "0" * 24}, "parent_id"),
    ({"head_id": "0" * 24}, "head_id"),
    ({"budget": 1}, "budget"),
])
def test_bad_department_input_is_422(stack, owner, body, field):
    full = {"name": "Dept"}
    full.update(body)
    assert field in errors_of(call(stack, owner, "POST", DEPARTMENTS, json=full))


def test_left_on_before_hired_on_is_422_whichever_changes(stack, owner):
    e = employee(stack, owner, "Dee", hired_on="2025-03-01", left_on="2025-12-31")
    assert "left_on" in errors_of(patch(stack, owner, f"{EMPLOYEES}/{e['id']}", left_on="2025-02-28"))
    assert "hired_on" in errors_of(patch(stack, owner, f"{EMPLOYEES}/{e['id']}", hired_on="2026-01-01"))
    assert patch_ok(stack, owner, f"{EMPLOYEES}/{e['id']}", left_on="2025-03-01")["left_on"] == "2025-03-01"
    assert patch_ok(stack, owner, f"{EMPLOYEES}/{e['id']}", hired_on=None)["hired_on"] is None


def test_another_tenants_ids_in_a_body_are_422(stack, owner):
    other = signup(stack)
    their_dept = department(stack, other, "Theirs")
    their_emp = employee(stack, other, "Them")
    their_user = other.user_id
    for body, field in (({"department_id": their_dept["id"]}, "department_id"),
                        ({"manager_id": their_emp["id"]}, "manager_id"),
                        ({"user_id": their_user}, "user_id")):
        assert field in errors_of(call(stack, owner, "POST", EMPLOYEES, json={"name": "X", **body}))
    for body, field in (({"parent_id": their_dept["id"].upper()}, "parent_id"),
                        ({"head_id": their_emp["id"]}, "head_id")):
        assert field in errors_of(call(stack, owner, "POST", DEPARTMENTS, json={"name": "X", **body}))


def test_a_department_with_sub_departments_or_active_employees_is_not_deleted(stack, owner):
    parent = department(stack, owner, "Parent")
    child = department(stack, owner, "Child", parent)
    e = employee(stack, owner, "Worker", parent)
    body = check_problem(call(stack, owner, "DELETE", f"{DEPARTMENTS}/{parent['id']}"), 409)
    assert "1 sub-department and 1 active employee" in body["detail"]
    assert call(stack, owner, "DELETE", f"{DEPARTMENTS}/{child['id']}").status_code == 204
    check_problem(call(stack, owner, "DELETE", f"{DEPARTMENTS}/{parent['id']}"), 409)
    assert call(stack, owner, "DELETE", f"{EMPLOYEES}/{e['id']}").status_code == 204
    assert call(stack, owner, "DELETE", f"{DEPARTMENTS}/{parent['id']}").status_code == 204
    check_problem(call(stack, owner, "GET", f"{DEPARTMENTS}/{parent['id']}"), 404)
    # the employee stays, inactive, and is never deleted
    got = call(stack, owner, "GET", f"{EMPLOYEES}/{e['id']}").json()
    assert got["active"] is False and got["department_id"] == parent["id"]
    assert org_chart(stack, owner) == {"departments": [], "unassigned": []}


# ---------------------------------------------------------------------------
# roles and tenants
# ---------------------------------------------------------------------------


def test_a_manager_reads_people_but_cannot_change_them(stack, owner):
    d = department(stack, owner, "Ops")
    e = employee(stack, owner, "Ola", d)
    manager = user_session(stack, owner, ["manager"])
    for path in (DEPARTMENTS, EMPLOYEES, f"{DEPARTMENTS}/{d['id']}", f"{EMPLOYEES}/{e['id']}",
                 "/v1/erp/org-chart"):
        assert call(stack, manager, "GET", path).status_code == 200, path
    check_problem(head_of(stack, manager, owner.user_id), 404)
    check_problem(call(stack, manager, "POST", DEPARTMENTS, json={"name": "New"}), 403)
    check_problem(call(stack, manager, "POST", EMPLOYEES, json={"name": "New"}), 403)
    check_problem(patch(stack, manager, f"{EMPLOYEES}/{e['id']}", name="Renamed"), 403)
    check_problem(call(stack, manager, "DELETE", f"{EMPLOYEES}/{e['id']}"), 403)
    check_problem(call(stack, manager, "DELETE", f"{DEPARTMENTS}/{d['id']}"), 403)
    me = call(stack, manager, "GET", "/v1/me").json()
    assert "erp.hr.read" in me["permissions"] and "erp.hr.write" not in me["permissions"]


@pytest.mark.parametrize("role", ["sales", "warehouse", "accountant", "employee"])
def test_other_roles_may_not_read_people(stack, owner, role):
    d = department(stack, owner, "Ops")
    acct = user_session(stack, owner, [role])
    for path in (DEPARTMENTS, EMPLOYEES, f"{DEPARTMENTS}/{d['id']}", "/v1/erp/org-chart"):
        check_problem(call(stack, acct, "GET", path), 403)
    check_problem(head_of(stack, acct, owner.user_id), 403)
    check_problem(call(stack, acct, "POST", DEPARTMENTS, json={"name": "New"}), 403)


def test_another_tenant_gets_404_for_every_id_in_any_case(stack, owner):
    d = department(stack, owner, "Mine")
    e = employee(stack, owner, "Mo", d)
    other = signup(stack)
    for path in (f"{DEPARTMENTS}/{d['id']}", f"{EMPLOYEES}/{e['id']}"):
        for spelled in (path, path.upper().replace("/V1/ERP/", "/v1/erp/").replace("DEPARTMENTS", "departments")
                        .replace("EMPLOYEES", "employees")):
            check_problem(call(stack, other, "GET", spelled), 404)
            check_problem(call(stack, other, "PATCH", spelled, json={"name": "Taken"}), 404)
            check_problem(call(stack, other, "DELETE", spelled), 404)
    assert org_chart(stack, other) == {"departments": [], "unassigned": []}
    # and nothing of theirs changed ours
    assert call(stack, owner, "GET", f"{DEPARTMENTS}/{d['id']}").json()["version"] == 1
    got = call(stack, owner, "GET", f"{EMPLOYEES}/{e['id']}").json()
    assert got["version"] == 1 and got["active"] is True
    check_problem(head_of(stack, other, owner.user_id), 404)


def test_upper_case_ids_name_the_same_records(stack, owner):
    d = department(stack, owner, "Case")
    r = call(stack, owner, "GET", f"{DEPARTMENTS}/{d['id'].upper()}")
    assert r.status_code == 200 and r.json()["id"] == d["id"]
    e = employee(stack, owner, "Up", department_id=d["id"].upper())
    assert e["department_id"] == d["id"]


# ---------------------------------------------------------------------------
# the head of a user's department
# ---------------------------------------------------------------------------


def person(stack, owner, name, dept, roles=("employee",)):
    """A user and their employee in dept."""
    user = create_user(stack, owner, list(roles), name=name)
    return user, employee(stack, owner, name, dept, user_id=user["id"])


def test_head_of_answers_the_head_of_the_users_department(stack, owner):
    company = department(stack, owner, "Company")
    sales = department(stack, owner, "Sales", company)
    ceo_user, ceo = person(stack, owner, "Cleo", company)
    vp_user, vp = person(stack, owner, "Val", sales)
    rep_user, rep = person(stack, owner, "Ray", sales)
    patch_ok(stack, owner, f"{DEPARTMENTS}/{company['id']}", head_id=ceo["id"])
    patch_ok(stack, owner, f"{DEPARTMENTS}/{sales['id']}", head_id=vp["id"])

    r = head_of(stack, owner, rep_user["id"])
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": vp_user["id"], "employee_id": vp["id"]}
    # the head of their own department: the head of the one above
    assert head_of(stack, owner, vp_user["id"].upper()).json() == {"user_id": ceo_user["id"],
                                                                   "employee_id": ceo["id"]}
    # the head of the root: no one above
    check_problem(head_of(stack, owner, ceo_user["id"]), 404)


def test_head_of_climbs_past_departments_without_a_head_who_can_act(stack, owner):
    company = department(stack, owner, "Company")
    sales = department(stack, owner, "Sales", company)
    emea = department(stack, owner, "EMEA", sales)
    ceo_user, ceo = person(stack, owner, "Cleo", company)
    rep_user, rep = person(stack, owner, "Ray", emea)
    no_user = employee(stack, owner, "No Login", sales)
    patch_ok(stack, owner, f"{DEPARTMENTS}/{company['id']}", head_id=ceo["id"])
    # EMEA has no head, Sales' head has no user: up to Company's
    patch_ok(stack, owner, f"{DEPARTMENTS}/{sales['id']}", head_id=no_user["id"])
    assert head_of(stack, owner, rep_user["id"]).json()["user_id"] == ceo_user["id"]
    # a head whose user was deactivated cannot act either
    vp_user, vp = person(stack, owner, "Val", sales)
    patch_ok(stack, owner, f"{DEPARTMENTS}/{emea['id']}", head_id=vp["id"])
    assert head_of(stack, owner, rep_user["id"]).json()["user_id"] == vp_user["id"]
    assert call(stack, owner, "DELETE", f"/v1/users/{vp_user['id']}").status_code == 204
    assert head_of(stack, owner, rep_user["id"]).json()["user_id"] == ceo_user["id"]


def test_head_of_is_404_without_a_head_or_an_employee(stack, owner):
    d = department(stack, owner, "Flat")
    alone_user, _ = person(stack, owner, "Al", d)
    check_problem(head_of(stack, owner, alone_user["id"]), 404)  # no head anywhere
    nobody = create_user(stack, owner, ["employee"])
    check_problem(head_of(stack, owner, nobody["id"]), 404)  # a user without an employee
    check_problem(head_of(stack, owner, "0" * 24), 404)
    loose_user, loose = person(stack, owner, "Lo", None)
    check_problem(head_of(stack, owner, loose_user["id"]), 404)  # in no department
    assert "user_id" in errors_of(head_of(stack, owner, "nope"))
    check_problem(call(stack, owner, "GET", f"{EMPLOYEES}/head-of"), (400, 422))
    # an employee who left has no head to ask
    h_user, h = person(stack, owner, "Hd", d)
    patch_ok(stack, owner, f"{DEPARTMENTS}/{d['id']}", head_id=h["id"])
    assert head_of(stack, owner, alone_user["id"]).json()["user_id"] == h_user["id"]
    al = call(stack, owner, "GET", EMPLOYEES, params={"user_id": alone_user["id"]}).json()["items"][0]
    assert call(stack, owner, "DELETE", f"{EMPLOYEES}/{al['id']}").status_code == 204
    check_problem(head_of(stack, owner, alone_user["id"]), 404)


# ---------------------------------------------------------------------------
# users and employees, events
# ---------------------------------------------------------------------------


def test_deactivating_a_user_keeps_their_employee(stack, owner):
    d = department(stack, owner, "Kept")
    user, e = person(stack, owner, "Kim", d)
    assert call(stack, owner, "DELETE", f"/v1/users/{user['id']}").status_code == 204
    assert call(stack, owner, "GET", f"/v1/users/{user['id']}").json()["active"] is False
    got = call(stack, owner, "GET", f"{EMPLOYEES}/{e['id']}").json()
    assert got == e  # not a field changed, not even the version
    [node] = org_chart(stack, owner)["departments"]
    assert [x["id"] for x in node["employees"]] == [e["id"]]


def test_changes_are_events_on_erp_hr_for_those_who_may_read_people(stack, owner):
    manager = user_session(stack, owner, ["manager"])
    with connect(stack.base_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": manager.access_token, "topics": ["erp.hr"]}))
        frames = []
        while not any(f["type"] == "subscribed" for f in frames):
            frames.append(json.loads(ws.recv(timeout=10)))
        assert [f for f in frames if f["type"] == "subscribed"][0]["topics"] == ["erp.hr"]
        d = department(stack, owner, "Evented")
        patch_ok(stack, owner, f"{DEPARTMENTS}/{d['id']}", name="Evented too")
        e = employee(stack, owner, "Eve", d)
        patch_ok(stack, owner, f"{EMPLOYEES}/{e['id']}", position="Lead")
        assert call(stack, owner, "DELETE", f"{EMPLOYEES}/{e['id']}").status_code == 204
        assert call(stack, owner, "DELETE", f"{DEPARTMENTS}/{d['id']}").status_code == 204
        want = ["erp.department.created", "erp.department.updated", "erp.employee.created",
                "erp.employee.updated", "erp.employee.deactivated", "erp.department.deleted"]
        got = []
        while len(got) < len(want):
            f = json.loads(ws.recv(timeout=10))
            if f["type"] == "event":
                assert f["topic"] == "erp.hr"
                got.append((f["event"], f["entity_id"], f["data"]))
        assert [g[0] for g in got] == want
        assert got[1][2]["name"] == "Evented too" and got[4][2]["active"] is False
        assert [g[1] for g in got] == [d["id"], d["id"], e["id"], e["id"], e["id"], d["id"]]
        assert not any(k.startswith("_") for g in got for k in g[2])
    sales = user_session(stack, owner, ["sales"])
    with connect(stack.base_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": sales.access_token, "topics": ["erp.hr"]}))
        frames = []
        while not any(f["type"] == "error" for f in frames):
            frames.append(json.loads(ws.recv(timeout=10)))
        assert "erp.hr" in [f for f in frames if f["type"] == "error"][0]["topics"]


def test_the_openapi_document_describes_people(stack):
    doc = stack.get("/v1/openapi.json").json()
    paths = doc["paths"]
    for path, methods in ((DEPARTMENTS, {"get", "post"}), (f"{DEPARTMENTS}/{{id}}", {"get", "patch", "delete"}),
                          (EMPLOYEES, {"get", "post"}), (f"{EMPLOYEES}/{{id}}", {"get", "patch", "delete"}),
                          ("/v1/erp/org-chart", {"get"}), (f"{EMPLOYEES}/head-of", {"get"})):
        assert methods <= set(paths[path]), (path, set(paths[path]))
    params = {p["name"]: p for p in paths[f"{EMPLOYEES}/head-of"]["get"]["parameters"]}
    assert params["user_id"]["required"] is True
    body = paths[EMPLOYEES]["post"]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in body:
        body = doc["components"]["schemas"][body["$ref"].split("/")[-1]]
    assert body["properties"]["hired_on"]["format"] == "date"
    assert body["required"] == ["name"]
