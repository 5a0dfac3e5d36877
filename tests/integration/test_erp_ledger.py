"""ERP ledger: the default chart, journal entries that balance and are never
changed, reversals dated today, the per-tenant hash chain and its verify,
period close, the trial balance; bad input, roles and other tenants."""

import datetime

import pytest
import requests
from bson import ObjectId

from conftest import check_problem, signup, user_session
from erp_support import call

ZERO_HASH = "0" * 64


def entry(date=None, memo="test", currency="EUR", lines=None):
    return {"date": date or datetime.date.today().isoformat(), "memo": memo, "currency": currency,
            "lines": lines if lines is not None else [
                {"account_code": "1100", "debit": 12345},
                {"account_code": "3000", "credit": 12345}]}


def post(target, acct, body, **kw):
    return call(target, acct, "POST", "/v1/erp/journal", json=body, **kw)


def post_ok(target, acct, body):
    r = post(target, acct, body)
    assert r.status_code == 201, r.text
    return r.json()


def verify(target, acct):
    r = call(target, acct, "GET", "/v1/erp/ledger/verify")
    assert r.status_code == 200, r.text
    return r.json()


def last_month():
    first = datetime.date.today().replace(day=1)
    prev = first - datetime.timedelta(days=1)
    return prev.strftime("%Y-%m"), prev.isoformat()


@pytest.fixture
def owner(stack):
    return signup(stack)


def test_every_tenant_starts_with_the_default_chart(stack, owner):
    r = call(stack, owner, "GET", "/v1/erp/accounts", params={"limit": 50})
    assert r.status_code == 200, r.text
    codes = [(a["code"], a["type"]) for a in r.json()["items"]]
    assert codes == [("1000", "asset"), ("1100", "asset"), ("1200", "asset"), ("1300", "asset"),
                     ("2000", "liability"), ("2100", "liability"), ("3000", "equity"),
                     ("4000", "income"), ("5000", "expense"), ("6000", "expense")]
    r = call(stack, owner, "POST", "/v1/erp/accounts", json={"code": "1000", "name": "Twice",
                                                             "type": "asset"})
    check_problem(r, 409, "conflict")
    r = call(stack, owner, "POST", "/v1/erp/accounts", json={"code": "6100", "name": "Travel",
                                                             "type": "expense"})
    assert r.status_code == 201, r.text


def test_entries_are_numbered_without_gaps_and_chained(stack, owner):
    a = post_ok(stack, owner, entry(memo="first"))
    b = post_ok(stack, owner, entry(memo="second"))
    assert (a["seq"], b["seq"]) == (1, 2)
    assert a["prev_hash"] == ZERO_HASH and b["prev_hash"] == a["hash"]
    assert len(a["hash"]) == 64 and a["hash"] != b["hash"]
    got = call(stack, owner, "GET", f"/v1/erp/journal/{b['id'].upper()}")
    assert got.status_code == 200 and got.json() == b, got.text
    listing = call(stack, owner, "GET", "/v1/erp/journal", params={"limit": 1}).json()
    assert [e["id"] for e in listing["items"]] == [b["id"]] and listing["next_cursor"]
    older = call(stack, owner, "GET", "/v1/erp/journal",
                 params={"limit": 1, "cursor": listing["next_cursor"]}).json()
    assert [e["id"] for e in older["items"]] == [a["id"]] and older["next_cursor"] is None
    v = verify(stack, owner)
    assert v == {"ok": True, "entries": 2, "head": b["hash"]}, v


@pytest.mark.parametrize("lines,field", [
    ([{"account_code": "1100", "debit": 100}, {"account_code": "3000", "credit": 99}], "lines"),
    ([{"account_code": "1100", "debit": 100}], "lines"),
    ([{"account_code": "9999", "debit": 1}, {"account_code": "3000", "credit": 1}], "lines"),
    ([{"account_code": "1100", "debit": 1.5}, {"account_code": "3000", "credit": 1.5}], "lines[0]"),
    ([{"account_code": "1100", "debit": -1}, {"account_code": "3000", "credit": -1}], "lines[0]"),
    ([{"account_code": "1100", "debit": 1, "credit": 1}, {"account_code": "3000", "credit": 0}], "lines[0]"),
    ([{"account_code": "1100", "debit": 1, "colour": "red"}, {"account_code": "3000", "credit": 1}], "lines[0]"),
    ("not lines", "lines"),
])
def test_a_bad_entry_is_422_and_posts_nothing(stack, owner, lines, field):
    r = post(stack, owner, entry(lines=lines))
    problem = check_problem(r, 422)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert verify(stack, owner)["entries"] == 0


@pytest.mark.parametrize("change,field", [
    ({"date": "2026-02-30"}, "date"), ({"date": "30.11.2026"}, "date"), ({"date": None}, "date"),
    ({"date": "2026-+1-05"}, "date"), ({"date": "2026- 1-05"}, "date"),
    ({"currency": "eur"}, "currency"), ({"extra": 1}, "extra"),
])
def test_bad_entry_fields_are_422(stack, owner, change, field):
    body = entry()
    for k, v in change.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = v
    assert field in [e["field"] for e in check_problem(post(stack, owner, body), 422)["errors"]]


def test_entries_are_never_changed_and_a_reversal_is_dated_today(stack, owner):
    a = post_ok(stack, owner, entry(date="2025-03-31", lines=[
        {"account_code": "6000", "debit": 700}, {"account_code": "1000", "credit": 700}]))
    for method in ("PATCH", "DELETE"):
        r = call(stack, owner, method, f"/v1/erp/journal/{a['id']}", json={"memo": "x"})
        check_problem(r, 405)
    r = call(stack, owner, "POST", f"/v1/erp/journal/{a['id']}/reverse")
    assert r.status_code == 201, r.text
    rev = r.json()
    assert rev["date"] == datetime.date.today().isoformat() and rev["reverses"] == a["id"]
    assert rev["lines"] == [{"account_code": "6000", "debit": 0, "credit": 700},
                            {"account_code": "1000", "debit": 700, "credit": 0}]
    again = call(stack, owner, "POST", f"/v1/erp/journal/{a['id']}/reverse")
    assert rev["id"] in check_problem(again, 409, "conflict")["detail"]
    check_problem(call(stack, owner, "POST", f"/v1/erp/journal/{rev['id']}/reverse"), 409)
    assert verify(stack, owner)["ok"] is True


def test_verify_names_the_entry_edited_in_the_database(stack, owner):
    for i in range(4):
        post_ok(stack, owner, entry(memo=f"entry {i}"))
    assert verify(stack, owner)["ok"] is True
    moves = stack.mongo["register_moves"]
    tenant = ObjectId(owner.tenant_id)
    target = moves.find_one({"tenant_id": tenant, "key": "erp.ledger", "seq": 3})
    moves.update_one({"_id": target["_id"]}, {"$set": {"meta.entry.memo": "edited"}})
    v = verify(stack, owner)
    assert v["ok"] is False and v["broken_at"] == 3, v
    moves.update_one({"_id": target["_id"]}, {"$set": {"meta.entry.memo": "entry 2"}})
    assert verify(stack, owner)["ok"] is True
    # an amount changed in place breaks it too
    target = moves.find_one({"tenant_id": tenant, "key": "erp.ledger", "seq": 2})
    lines = target["meta"]["entry"]["lines"]
    lines[0]["debit"] += 1
    lines[1]["credit"] += 1
    moves.update_one({"_id": target["_id"]}, {"$set": {"meta.entry.lines": lines}})
    assert verify(stack, owner)["broken_at"] == 2


def test_a_closed_period_takes_no_entry(stack, owner):
    month, day = last_month()
    post_ok(stack, owner, entry(date=day))
    r = call(stack, owner, "POST", f"/v1/erp/periods/{month}/close")
    assert r.status_code == 200 and r.json() == {"period": month, "closed": True}, r.text
    check_problem(post(stack, owner, entry(date=day)), 409, "period-closed")
    check_problem(post(stack, owner, entry(date="2020-01-15")), 409, "period-closed")
    check_problem(call(stack, owner, "POST", f"/v1/erp/periods/{month}/close"), 409)
    this_month = datetime.date.today().strftime("%Y-%m")
    check_problem(call(stack, owner, "POST", f"/v1/erp/periods/{this_month}/close"), 409)
    check_problem(call(stack, owner, "POST", "/v1/erp/periods/2026-13/close"), 404)
    assert post(stack, owner, entry()).status_code == 201
    v = verify(stack, owner)
    assert v["ok"] is True and v["entries"] == 2


def test_the_trial_balance_balances_at_a_date(stack, owner):
    post_ok(stack, owner, entry(date="2026-01-10", lines=[
        {"account_code": "1100", "debit": 100000}, {"account_code": "3000", "credit": 100000}]))
    post_ok(stack, owner, entry(date="2026-02-10", lines=[
        {"account_code": "6000", "debit": 2500}, {"account_code": "2100", "debit": 500},
        {"account_code": "1100", "credit": 3000}]))
    r = call(stack, owner, "GET", "/v1/erp/reports/trial-balance", params={"at": "2026-01-31"})
    tb = r.json()
    assert tb["total_debit"] == tb["total_credit"] == 100000, tb
    r = call(stack, owner, "GET", "/v1/erp/reports/trial-balance", params={"at": "2026-12-31"})
    tb = r.json()
    rows = {a["code"]: (a["debit"], a["credit"]) for a in tb["accounts"]}
    assert rows == {"1100": (97000, 0), "2100": (500, 0), "3000": (0, 100000), "6000": (2500, 0)}
    assert tb["total_debit"] == tb["total_credit"] == 100000 and tb["currency"] == "EUR"
    check_problem(call(stack, owner, "GET", "/v1/erp/reports/trial-balance",
                       params={"at": "yesterday"}), 422)


def test_one_idempotency_key_posts_one_entry(stack, owner):
    h = dict(owner.headers, **{"Idempotency-Key": "entry-1"})
    first = requests.post(stack.base_url + "/v1/erp/journal", json=entry(), headers=h, timeout=10)
    second = requests.post(stack.base_url + "/v1/erp/journal", json=entry(), headers=h, timeout=10)
    assert first.status_code == 201 and first.json()["id"] == second.json()["id"]
    assert verify(stack, owner)["entries"] == 1


def test_roles_and_other_tenants(stack, owner):
    a = post_ok(stack, owner, entry())
    accountant = user_session(stack, owner, ["accountant"])
    keeper = user_session(stack, owner, ["warehouse"])
    assert post(stack, accountant, entry()).status_code == 201
    check_problem(post(stack, keeper, entry()), 403)
    check_problem(call(stack, keeper, "GET", "/v1/erp/ledger/verify"), 403)
    other = signup(stack)
    check_problem(call(stack, other, "GET", f"/v1/erp/journal/{a['id']}"), 404)
    check_problem(call(stack, other, "POST", f"/v1/erp/journal/{a['id']}/reverse"), 404)
    assert verify(stack, other) == {"ok": True, "entries": 0, "head": None}
    assert verify(stack, owner)["entries"] == 2
    check_problem(call(stack, owner, "GET", "/v1/erp/journal/not-an-id"), 404)
