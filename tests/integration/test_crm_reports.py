"""CRM reports (CONTRACT.md "Reports"; the exact definitions are in the
comments at the top of modules/crm/reports.h and of each report's file,
modules/crm/report_*.c): funnel, abc-xyz, managers and sources over small
fixed data sets whose expected values are worked out by hand below, the
borders of the ABC and XYZ classes, periods, currencies, bad input,
permissions and tenant isolation.

Every test signs up its own tenant, so data sets never mix. Closed deals with
a past closed_at are imported (crm.deals.import, the owner has it); leads and
open deals get created_at = now, so periods that must hold them reach into
the future."""

import secrets

import pytest
import requests

from conftest import check_problem, create_user, signup, unique_email, user_session

JAN = "2026-01-01T00:00:00Z"
FEB = "2026-02-01T00:00:00Z"
MAR = "2026-03-01T00:00:00Z"
# a period around "now" (the server's clock is in late 2026) for records
# whose created_at is the time of the test
NOW_FROM = "2026-01-01T00:00:00Z"
NOW_TO = "2030-01-01T00:00:00Z"

REPORTS = ["funnel", "abc-xyz", "managers", "sources"]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def ok(r, status=200):
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:800]}"
    return r.json()


def eur(amount):
    return {"amount": amount, "currency": "EUR"}


def money(amount, currency):
    return {"amount": amount, "currency": currency}


def report(stack, acct, name, **params):
    return ok(stack.get(f"/v1/crm/reports/{name}", headers=acct.headers, params=params))


def new_client(stack, acct, name=None):
    return ok(stack.post("/v1/crm/clients", headers=acct.headers,
                         json={"name": name or f"Client {secrets.token_hex(3)}", "kind": "company"}), 201)


def won_deal(stack, acct, client, amount, closed_at, currency="EUR", **extra):
    """An imported deal, already won at closed_at."""
    body = {"client_id": client["id"], "title": f"Won {secrets.token_hex(3)}",
            "amount": money(amount, currency), "status": "won", "closed_at": closed_at}
    body.update(extra)
    return ok(stack.post("/v1/crm/deals", headers=acct.headers, json=body), 201)


def lost_deal(stack, acct, client, amount, closed_at, currency="EUR", **extra):
    body = {"client_id": client["id"], "title": f"Lost {secrets.token_hex(3)}",
            "amount": money(amount, currency), "status": "lost", "closed_at": closed_at,
            "lost_reason": "price"}
    body.update(extra)
    return ok(stack.post("/v1/crm/deals", headers=acct.headers, json=body), 201)


def open_deal(stack, acct, client, amount=None, **extra):
    body = {"client_id": client["id"], "title": f"Open {secrets.token_hex(3)}"}
    if amount is not None:
        body["amount"] = amount
    body.update(extra)
    return ok(stack.post("/v1/crm/deals", headers=acct.headers, json=body), 201)


def move(stack, acct, deal, stage):
    return ok(stack.post(f"/v1/crm/deals/{deal['id']}/stage", headers=acct.headers, json={"stage": stage}))


def win(stack, acct, deal):
    return ok(stack.post(f"/v1/crm/deals/{deal['id']}/won", headers=acct.headers))


def lose(stack, acct, deal):
    return ok(stack.post(f"/v1/crm/deals/{deal['id']}/lost", headers=acct.headers, json={"reason": "price"}))


def new_lead(stack, acct, channel=None, campaign=None, headers=None, **extra):
    body = {"name": f"Lead {secrets.token_hex(3)}", "email": unique_email("lead")}
    if channel is not None:
        body["source"] = {"channel": channel, "campaign_id": campaign["id"] if campaign else None}
    body.update(extra)
    lead = ok(stack.post("/v1/crm/leads", headers=headers or acct.headers, json=body), 201)
    assert lead.get("source") == body.get("source")
    return lead


def convert(stack, acct, lead, amount):
    return ok(stack.post(f"/v1/crm/leads/{lead['id']}/convert", headers=acct.headers,
                         json={"create_deal": True, "amount": amount}))


def new_campaign(stack, acct, name, cost=None):
    body = {"name": name, "kind": "exhibition"}
    if cost is not None:
        body["cost"] = cost
    return ok(stack.post("/v1/crm/campaigns", headers=acct.headers, json=body), 201)


def by(items, key):
    return {item[key]: item for item in items}


def field_errors(body):
    return {e["field"] for e in body.get("errors", [])}


# ---------------------------------------------------------------------------
# funnel
# ---------------------------------------------------------------------------

@pytest.fixture
def funnel_tenant(stack):
    """The default pipeline (new, qualified, proposal, negotiation, closing)
    with six deals:
      d1 new -> qualified -> proposal, open            (history new, qualified, proposal)
      d2 new -> qualified, won, 500 EUR               (history new, qualified)
      d3 new, lost, 300 USD                           (history new)
      d4 new -> qualified -> new, open                (history new, qualified, new)
      d5 imported won 1000 EUR, created in new        (history new)
      d6 created in proposal, open                    (history proposal)"""
    acct = signup(stack)
    client = new_client(stack, acct)
    d1 = open_deal(stack, acct, client)
    move(stack, acct, d1, "qualified")
    move(stack, acct, d1, "proposal")
    d2 = open_deal(stack, acct, client, eur(500))
    move(stack, acct, d2, "qualified")
    win(stack, acct, d2)
    d3 = open_deal(stack, acct, client, money(300, "USD"))
    lose(stack, acct, d3)
    d4 = open_deal(stack, acct, client)
    move(stack, acct, d4, "qualified")
    move(stack, acct, d4, "new")
    won_deal(stack, acct, client, 1000, "2026-03-15T00:00:00Z")
    open_deal(stack, acct, client, stage="proposal")
    return acct


def test_funnel_counts_each_stage_after_stage_moves(stack, funnel_tenant):
    acct = funnel_tenant
    r = report(stack, acct, "funnel")
    pipelines = ok(stack.get("/v1/crm/pipelines", headers=acct.headers))["items"]
    default = [p for p in pipelines if p.get("is_default")][0]
    assert r["pipeline_id"] == default["id"]
    assert r["from"] is None and r["to"] is None
    stages = r["stages"]
    assert [s["key"] for s in stages] == ["new", "qualified", "proposal", "negotiation", "closing"]
    s = by(stages, "key")
    # new: entered by d1 d2 d3 d4 d5 (not d6) = 5; still there: d4 (open, back
    # in new) = 1; moved on: d1 d2 (other stages), d3 (lost), d5 (won) = 4
    assert (s["new"]["entered"], s["new"]["still_there"], s["new"]["moved_on"]) == (5, 1, 4)
    # qualified: d1 d2 d4 = 3; none is there now; all 3 moved on
    assert (s["qualified"]["entered"], s["qualified"]["still_there"], s["qualified"]["moved_on"]) == (3, 0, 3)
    # proposal: d1 (moved there) and d6 (created there) = 2, both still there
    assert (s["proposal"]["entered"], s["proposal"]["still_there"], s["proposal"]["moved_on"]) == (2, 2, 0)
    for key in ("negotiation", "closing"):
        assert (s[key]["entered"], s[key]["still_there"], s[key]["moved_on"]) == (0, 0, 0)
    # conversion = entered(next) / entered(this), 4 decimals:
    # new 3/5 = 0.6; qualified 2/3 = 0.66666.. -> 0.6667; proposal 0/2 = 0;
    # negotiation 0/0 -> null; closing (last stage) -> null
    assert s["new"]["conversion_to_next"] == 0.6
    assert s["qualified"]["conversion_to_next"] == 0.6667
    assert s["proposal"]["conversion_to_next"] == 0
    assert s["negotiation"]["conversion_to_next"] is None
    assert s["closing"]["conversion_to_next"] is None
    for st in stages:
        assert st["entered"] == st["still_there"] + st["moved_on"]
    # totals: 6 deals; open d1 d4 d6; won d2 (500 EUR) d5 (1000 EUR); lost d3 (300 USD)
    t = r["totals"]
    assert (t["deals"], t["open"], t["won"], t["lost"]) == (6, 3, 2, 1)
    assert t["won_amounts"] == [eur(1500)]
    assert t["lost_amounts"] == [money(300, "USD")]


def test_funnel_period_filters_deals_by_created_at(stack, funnel_tenant):
    acct = funnel_tenant
    # every deal was created just now: a period that ended in 2026-01 holds none
    r = report(stack, acct, "funnel", **{"from": "2025-01-01T00:00:00Z", "to": JAN})
    assert r["from"] == "2025-01-01T00:00:00.000Z" and r["to"] == "2026-01-01T00:00:00.000Z"
    assert all(s["entered"] == 0 and s["conversion_to_next"] is None for s in r["stages"])
    assert r["totals"] == {"deals": 0, "open": 0, "won": 0, "lost": 0,
                           "won_amounts": [], "lost_amounts": []}
    # only "from" (open end): all six
    r = report(stack, acct, "funnel", **{"from": JAN})
    assert r["totals"]["deals"] == 6 and r["to"] is None
    # only "to" in the future: all six
    r = report(stack, acct, "funnel", to=NOW_TO)
    assert r["totals"]["deals"] == 6


def test_funnel_of_another_pipeline_counts_only_its_deals(stack, funnel_tenant):
    acct = funnel_tenant
    p = ok(stack.post("/v1/crm/pipelines", headers=acct.headers, json={
        "name": "Renewals", "stages": [{"key": "ask", "name": "Ask", "probability": 20},
                                       {"key": "sign", "name": "Sign", "probability": 80}]}), 201)
    client = new_client(stack, acct)
    # a1 ask -> sign, won 70 EUR; a2 ask, open
    a1 = open_deal(stack, acct, client, eur(70), pipeline_id=p["id"])
    move(stack, acct, a1, "sign")
    win(stack, acct, a1)
    open_deal(stack, acct, client, pipeline_id=p["id"])
    r = report(stack, acct, "funnel", pipeline_id=p["id"])
    assert r["pipeline_id"] == p["id"] and r["pipeline_name"] == "Renewals"
    assert [(s["key"], s["name"], s["entered"], s["still_there"], s["moved_on"]) for s in r["stages"]] == [
        ("ask", "Ask", 2, 1, 1), ("sign", "Sign", 1, 0, 1)]
    # ask -> sign: 1/2
    assert r["stages"][0]["conversion_to_next"] == 0.5
    assert r["totals"] == {"deals": 2, "open": 1, "won": 1, "lost": 0,
                           "won_amounts": [eur(70)], "lost_amounts": []}
    # the default pipeline's funnel did not change
    assert report(stack, acct, "funnel")["totals"]["deals"] == 6


def test_funnel_pipeline_id_checks(stack):
    acct = signup(stack)
    other = signup(stack)
    theirs = [p for p in ok(stack.get("/v1/crm/pipelines", headers=other.headers))["items"]
              if p.get("is_default")][0]
    check_problem(stack.get("/v1/crm/reports/funnel", headers=acct.headers,
                            params={"pipeline_id": theirs["id"]}), 404)
    check_problem(stack.get("/v1/crm/reports/funnel", headers=acct.headers,
                            params={"pipeline_id": "0" * 24}), 404)
    body = check_problem(stack.get("/v1/crm/reports/funnel", headers=acct.headers,
                                   params={"pipeline_id": "not-an-id"}), 422)
    assert field_errors(body) == {"pipeline_id"}


# ---------------------------------------------------------------------------
# abc-xyz
# ---------------------------------------------------------------------------

def abc(stack, acct, frm, to, currency="EUR"):
    return report(stack, acct, "abc-xyz", **{"from": frm, "to": to, "currency": currency})


def test_abc_borders_exactly_80_and_95_percent(stack):
    acct = signup(stack)
    c80, c15, c5 = (new_client(stack, acct, n) for n in ("Eighty", "Fifteen", "Five"))
    # January 2026 only. c80: 50 on the first instant of the period (counts)
    # + 30 mid-month = 80; c15: 15; c5: 5. Total 100.
    won_deal(stack, acct, c80, 50, JAN)
    won_deal(stack, acct, c80, 30, "2026-01-15T12:00:00Z")
    won_deal(stack, acct, c15, 15, "2026-01-31T23:59:59.999Z")
    won_deal(stack, acct, c5, 5, "2026-01-20T00:00:00Z")
    # not counted: closed at `to` (excluded), before `from`, other currency,
    # open and lost deals
    won_deal(stack, acct, c15, 1000, FEB)
    won_deal(stack, acct, c80, 1000, "2025-12-31T23:59:59.999Z")
    won_deal(stack, acct, c5, 1000, "2026-01-20T00:00:00Z", currency="USD")
    lost_deal(stack, acct, c15, 1000, "2026-01-10T00:00:00Z")
    open_deal(stack, acct, c5, eur(1000))

    r = abc(stack, acct, JAN, FEB)
    assert r["currency"] == "EUR" and r["months"] == 1 and r["calendar_months"] == ["2026-01"]
    assert r["from"] == "2026-01-01T00:00:00.000Z" and r["to"] == "2026-02-01T00:00:00.000Z"
    assert r["total"] == eur(100)
    items = r["items"]
    assert [i["client_id"] for i in items] == [c80["id"], c15["id"], c5["id"]]
    assert [i["client_name"] for i in items] == ["Eighty", "Fifteen", "Five"]
    assert [i["revenue"] for i in items] == [eur(80), eur(15), eur(5)]
    # shares 80/100, 15/100, 5/100; cumulative 80, 95, 100
    assert [i["share"] for i in items] == ["0.8000", "0.1500", "0.0500"]
    assert [i["cumulative_share"] for i in items] == ["0.8000", "0.9500", "1.0000"]
    # 80*100 <= 100*80 -> A; 95*100 <= 100*95 -> B; 100 > 95 -> C
    assert [i["abc"] for i in items] == ["A", "B", "C"]
    # one month: no variation, cv 0 -> X
    assert [i["monthly"] for i in items] == [[80], [15], [5]]
    assert all(i["cv"] == "0.0000" and i["xyz"] == "X" for i in items)

    # the USD report sees only the USD deal
    r = abc(stack, acct, JAN, FEB, "USD")
    assert r["total"] == money(1000, "USD")
    assert [(i["client_id"], i["abc"]) for i in r["items"]] == [(c5["id"], "A")]


def test_abc_just_above_the_borders_moves_to_the_next_class(stack):
    acct = signup(stack)
    # 801 / 150 / 49 of 1000: cum 801 (80.1% > 80% but the largest is always A),
    # 951 (95.1% > 95% -> C), 1000 -> C
    clients = [new_client(stack, acct, n) for n in ("a", "b", "c")]
    for client, amount in zip(clients, (801, 150, 49)):
        won_deal(stack, acct, client, amount, "2026-01-05T00:00:00Z")
    r = abc(stack, acct, JAN, FEB)
    assert [i["abc"] for i in r["items"]] == ["A", "C", "C"]
    assert [i["cumulative_share"] for i in r["items"]] == ["0.8010", "0.9510", "1.0000"]

    acct = signup(stack)
    # 799 / 151 / 50: cum 799 -> A, 950 (exactly 95%) -> B, 1000 -> C
    clients = [new_client(stack, acct, n) for n in ("a", "b", "c")]
    for client, amount in zip(clients, (799, 151, 50)):
        won_deal(stack, acct, client, amount, "2026-01-05T00:00:00Z")
    r = abc(stack, acct, JAN, FEB)
    assert [i["abc"] for i in r["items"]] == ["A", "B", "C"]


def test_abc_largest_client_above_80_percent_is_still_a(stack):
    acct = signup(stack)
    big, mid, small = (new_client(stack, acct, n) for n in ("Big", "Mid", "Small"))
    # 90 / 6 / 4 of 100: Big alone is 90% > 80% but is the largest -> A;
    # Mid: cum 96 > 95 -> C; Small: 100 -> C
    won_deal(stack, acct, big, 90, "2026-01-10T00:00:00Z")
    won_deal(stack, acct, mid, 6, "2026-01-10T00:00:00Z")
    won_deal(stack, acct, small, 4, "2026-01-10T00:00:00Z")
    r = abc(stack, acct, JAN, FEB)
    assert [(i["client_name"], i["abc"], i["share"]) for i in r["items"]] == [
        ("Big", "A", "0.9000"), ("Mid", "C", "0.0600"), ("Small", "C", "0.0400")]


def test_abc_ties_are_ordered_by_client_id(stack):
    acct = signup(stack)
    one, two = new_client(stack, acct), new_client(stack, acct)
    won_deal(stack, acct, two, 50, "2026-01-10T00:00:00Z")
    won_deal(stack, acct, one, 50, "2026-01-11T00:00:00Z")
    r = abc(stack, acct, JAN, FEB)
    first, second = sorted([one["id"], two["id"]])
    # same revenue: lower id first; cum 50 -> A, then 100 -> C
    assert [(i["client_id"], i["abc"]) for i in r["items"]] == [(first, "A"), (second, "C")]


def test_xyz_borders_exactly_10_and_25_percent(stack):
    acct = signup(stack)
    # Two months (Jan, Feb); n = 2, mean = R/2, population stddev.
    #   x10: 90, 110  mean 100, stddev 10 -> cv 0.10 -> X  (100*(2*20200-200^2) = 40000 <= 40000)
    #   y11: 89, 111  stddev 11 -> cv 0.11 -> Y            (100*484 > 40000, 16*484 <= 40000)
    #   y25: 75, 125  stddev 25 -> cv 0.25 -> Y            (16*(2*21250-40000) = 40000 <= 40000)
    #   z26: 74, 126  stddev 26 -> cv 0.26 -> Z            (16*2704 = 43264 > 40000)
    #   z0:  200, -   monthly [200, 0]: stddev 100 -> cv 1 -> Z
    #   flat: 100,100 -> cv 0 -> X
    plan = {"x10": (90, 110), "y11": (89, 111), "y25": (75, 125), "z26": (74, 126),
            "z0": (200, None), "flat": (100, 100)}
    ids = {}
    for name, (jan, feb) in plan.items():
        client = new_client(stack, acct, name)
        ids[client["id"]] = name
        won_deal(stack, acct, client, jan, "2026-01-20T00:00:00Z")
        if feb is not None:
            won_deal(stack, acct, client, feb, "2026-02-20T00:00:00Z")
    r = abc(stack, acct, JAN, MAR)
    assert r["months"] == 2 and r["calendar_months"] == ["2026-01", "2026-02"]
    got = {ids[i["client_id"]]: i for i in r["items"]}
    assert set(got) == set(plan)
    expect = {"x10": ("0.1000", "X"), "y11": ("0.1100", "Y"), "y25": ("0.2500", "Y"),
              "z26": ("0.2600", "Z"), "z0": ("1.0000", "Z"), "flat": ("0.0000", "X")}
    assert {k: (v["cv"], v["xyz"]) for k, v in got.items()} == expect
    assert got["z0"]["monthly"] == [200, 0]
    assert got["x10"]["monthly"] == [90, 110]
    # all six have revenue 200 (total 1200): ordered by id; cum 200, 400, ..., 1200:
    # 200/400/600/800/ 960 (80% of 1200) -> A A A A, 1000 <= 1140 -> B, 1200 -> C
    assert [i["abc"] for i in r["items"]] == ["A", "A", "A", "A", "B", "C"]
    assert [i["client_id"] for i in r["items"]] == sorted(ids)


def test_xyz_partial_months_count_whole_and_empty_months_are_zero(stack):
    acct = signup(stack)
    once, steady = new_client(stack, acct, "once"), new_client(stack, acct, "steady")
    # [2026-01-15, 2026-03-10) overlaps January, February and March: 3 months.
    # once:   300 in January only -> monthly [300, 0, 0]; mean 100,
    #         variance ((200)^2 + 100^2 + 100^2)/3 = 20000, cv = sqrt(20000)/100 = 1.41421.. -> Z
    # steady: 100 in each month -> cv 0 -> X
    won_deal(stack, acct, once, 300, "2026-01-20T00:00:00Z")
    for day in ("2026-01-15T00:00:00Z", "2026-02-10T00:00:00Z", "2026-03-09T23:59:59Z"):
        won_deal(stack, acct, steady, 100, day)
    # outside the period (before from; exactly at to): not counted
    won_deal(stack, acct, once, 5000, "2026-01-10T00:00:00Z")
    won_deal(stack, acct, steady, 5000, "2026-03-10T00:00:00Z")
    r = abc(stack, acct, "2026-01-15T00:00:00Z", "2026-03-10T00:00:00Z")
    assert r["months"] == 3 and r["calendar_months"] == ["2026-01", "2026-02", "2026-03"]
    assert r["total"] == eur(600)
    got = by(r["items"], "client_name")
    assert got["once"]["monthly"] == [300, 0, 0]
    assert (got["once"]["cv"], got["once"]["xyz"]) == ("1.4142", "Z")
    assert got["steady"]["monthly"] == [100, 100, 100]
    assert (got["steady"]["cv"], got["steady"]["xyz"]) == ("0.0000", "X")
    # equal revenue: by id; 300/600 = 50% -> A, then 100% -> C
    assert [i["abc"] for i in r["items"]] == ["A", "C"]


def test_abc_xyz_with_no_revenue_is_empty(stack):
    acct = signup(stack)
    r = abc(stack, acct, JAN, FEB)
    assert r["items"] == [] and r["total"] == eur(0) and r["months"] == 1


def test_abc_xyz_bad_input_is_422(stack):
    acct = signup(stack)

    def bad(params, fields):
        body = check_problem(stack.get("/v1/crm/reports/abc-xyz", headers=acct.headers, params=params), 422)
        assert field_errors(body) == fields, body

    bad({}, {"from", "to", "currency"})
    bad({"from": JAN, "to": FEB}, {"currency"})
    bad({"from": JAN, "to": FEB, "currency": "eur"}, {"currency"})
    bad({"from": JAN, "to": FEB, "currency": "EURO"}, {"currency"})
    bad({"from": "yesterday", "to": FEB, "currency": "EUR"}, {"from"})
    bad({"from": JAN, "to": "2026-02-30T00:00:00Z", "currency": "EUR"}, {"to"})
    bad({"from": FEB, "to": JAN, "currency": "EUR"}, {"to"})
    bad({"from": JAN, "to": JAN, "currency": "EUR"}, {"to"})
    # at most 120 calendar months
    bad({"from": "2016-01-01T00:00:00Z", "to": "2026-01-01T00:00:01Z", "currency": "EUR"}, {"to"})
    ok(stack.get("/v1/crm/reports/abc-xyz", headers=acct.headers,
                 params={"from": "2016-01-01T00:00:00Z", "to": JAN, "currency": "EUR"}))


def test_abc_xyz_period_limit_is_configuration(trellis):
    """crm_report_max_months bounds the abc-xyz period: a server set to 3
    takes three calendar months and names `to` with its limit for four."""
    env = trellis.env(crm_report_max_months=3)
    assert trellis.run("migrate", env=env).returncode == 0
    proc = trellis.start("serve", env=env)
    proc.wait_ready()
    acct = signup(proc)
    url = proc.url("/v1/crm/reports/abc-xyz")
    r = requests.get(url, headers=acct.headers, timeout=30, params={
        "from": "2026-01-15T00:00:00Z", "to": "2026-04-01T00:00:00Z", "currency": "EUR"})
    assert r.status_code == 200, r.text
    r = requests.get(url, headers=acct.headers, timeout=30, params={
        "from": "2026-01-15T00:00:00Z", "to": "2026-04-01T00:00:01Z", "currency": "EUR"})
    errors = check_problem(r, 422)["errors"]
    assert errors == [{"field": "to", "message": "the period may span at most 3 calendar months"}], errors
    assert trellis.run("config-example", env=env).stdout.count("crm_report_max_months") >= 1


# ---------------------------------------------------------------------------
# managers
# ---------------------------------------------------------------------------

def test_managers_per_owner(stack):
    owner = signup(stack)
    mia = create_user(stack, owner, ["manager"], name="Mia Manager")
    sam = create_user(stack, owner, ["sales"], name="Sam Sales")
    lea = create_user(stack, owner, ["sales"], name="Lea Leads")
    client = new_client(stack, owner)
    # Mia: 2 leads; won 1000 EUR + 500 USD (in period), lost 200 EUR (in
    # period); won 9999 EUR in 2025 (outside); an open deal (not closed)
    new_lead(stack, owner, owner_id=mia["id"])
    new_lead(stack, owner, owner_id=mia["id"])
    won_deal(stack, owner, client, 1000, "2026-03-01T00:00:00Z", owner_id=mia["id"])
    won_deal(stack, owner, client, 500, "2026-03-02T00:00:00Z", currency="USD", owner_id=mia["id"])
    lost_deal(stack, owner, client, 200, "2026-04-01T00:00:00Z", owner_id=mia["id"])
    won_deal(stack, owner, client, 9999, "2025-06-01T00:00:00Z", owner_id=mia["id"])
    open_deal(stack, owner, client, eur(777), owner_id=mia["id"])
    # Sam: 1 lead, 1 lost deal -> conversion 0/1 = 0
    new_lead(stack, owner, owner_id=sam["id"])
    lost_deal(stack, owner, client, 50, "2026-05-01T00:00:00Z", owner_id=sam["id"])
    # Lea: 1 lead, no closed deals -> conversion null
    new_lead(stack, owner, owner_id=lea["id"])
    # the owner (deals default to their creator): 1 won 300 EUR -> conversion 1
    won_deal(stack, owner, client, 300, "2026-02-01T00:00:00Z")
    # a lead from a partner integration has no owner: the row with owner_id null
    key = ok(stack.post("/v1/api-keys", headers=owner.headers,
                        json={"name": "intake", "permissions": ["crm.leads.write"]}), 201)["key"]
    new_lead(stack, owner, headers={"X-API-Key": key})

    r = report(stack, owner, "managers", **{"from": NOW_FROM, "to": NOW_TO})
    items = r["items"]
    assert items[-1]["owner_id"] is None
    assert [i["owner_id"] for i in items[:-1]] == sorted(i["owner_id"] for i in items[:-1])
    rows = by(items, "owner_id")
    assert set(rows) == {mia["id"], sam["id"], lea["id"], owner.user_id, None}
    m = rows[mia["id"]]
    # conversion 2 / (2 + 1) = 0.6667; revenue by currency
    assert (m["name"], m["leads"], m["deals_won"], m["deals_lost"], m["conversion"]) == (
        "Mia Manager", 2, 2, 1, 0.6667)
    assert m["revenue"] == [eur(1000), money(500, "USD")]
    s = rows[sam["id"]]
    assert (s["name"], s["leads"], s["deals_won"], s["deals_lost"], s["revenue"], s["conversion"]) == (
        "Sam Sales", 1, 0, 1, [], 0)
    lr = rows[lea["id"]]
    assert (lr["leads"], lr["deals_won"], lr["deals_lost"], lr["revenue"], lr["conversion"]) == (1, 0, 0, [], None)
    o = rows[owner.user_id]
    assert (o["name"], o["leads"], o["deals_won"], o["revenue"], o["conversion"]) == (
        "Olivia Owner", 0, 1, [eur(300)], 1)
    n = rows[None]
    assert (n["name"], n["leads"], n["deals_won"], n["deals_lost"]) == (None, 1, 0, 0)

    # a period of 2025 holds only Mia's old win (leads are created now)
    r = report(stack, owner, "managers", **{"from": "2025-01-01T00:00:00Z", "to": JAN})
    assert [(i["owner_id"], i["leads"], i["deals_won"], i["revenue"], i["conversion"]) for i in r["items"]] == [
        (mia["id"], 0, 1, [eur(9999)], 1)]


# ---------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------

def test_sources_per_channel_and_campaign_with_cost_per_lead(stack):
    acct = signup(stack)
    expo = new_campaign(stack, acct, "Expo", eur(1000))
    ads = new_campaign(stack, acct, "Ads", eur(1001))
    free = new_campaign(stack, acct, "Free")
    empty = new_campaign(stack, acct, "Empty", eur(500))
    # leads: 3 event/Expo, 2 ads/Ads, 1 web, 1 referral/Free, 1 without source
    expo_leads = [new_lead(stack, acct, "event", expo) for _ in range(3)]
    ads_leads = [new_lead(stack, acct, "ads", ads) for _ in range(2)]
    new_lead(stack, acct, "web")
    new_lead(stack, acct, "referral", free)
    new_lead(stack, acct)
    # deals from leads: Expo lead 1 -> 700 EUR won; Expo lead 2 -> 100 EUR open;
    # Ads lead 1 -> 50 USD won
    win(stack, acct, convert(stack, acct, expo_leads[0], eur(700))["deal"])
    convert(stack, acct, expo_leads[1], eur(100))
    win(stack, acct, convert(stack, acct, ads_leads[0], money(50, "USD"))["deal"])
    # a deal without a lead counts nowhere
    won_deal(stack, acct, new_client(stack, acct), 12345, "2026-03-01T00:00:00Z")

    r = report(stack, acct, "sources", **{"from": NOW_FROM, "to": NOW_TO})
    # channels in the contract's order (web phone email referral ads event
    # partner other), then no source; channels without leads left out
    assert [c["channel"] for c in r["channels"]] == ["web", "referral", "ads", "event", None]
    ch = by(r["channels"], "channel")
    assert (ch["event"]["leads"], ch["event"]["deals"], ch["event"]["revenue"]) == (3, 2, [eur(700)])
    assert (ch["ads"]["leads"], ch["ads"]["deals"], ch["ads"]["revenue"]) == (2, 1, [money(50, "USD")])
    for name in ("web", "referral", None):
        assert (ch[name]["leads"], ch[name]["deals"], ch[name]["revenue"]) == (1, 0, [])
    assert all(c["cost"] is None and c["cost_per_lead"] is None for c in r["channels"])

    assert [c["campaign_id"] for c in r["campaigns"]] == [expo["id"], ads["id"], free["id"], empty["id"]]
    cp = by(r["campaigns"], "name")
    # Expo: 1000 / 3 = 333.33 -> 333
    assert (cp["Expo"]["leads"], cp["Expo"]["deals"], cp["Expo"]["revenue"]) == (3, 2, [eur(700)])
    assert cp["Expo"]["cost"] == eur(1000) and cp["Expo"]["cost_per_lead"] == eur(333)
    # Ads: 1001 / 2 = 500.5 -> 501 (half up)
    assert (cp["Ads"]["leads"], cp["Ads"]["deals"], cp["Ads"]["revenue"]) == (2, 1, [money(50, "USD")])
    assert cp["Ads"]["cost"] == eur(1001) and cp["Ads"]["cost_per_lead"] == eur(501)
    # Free: no cost -> null; Empty: cost but no leads -> null
    assert (cp["Free"]["leads"], cp["Free"]["cost"], cp["Free"]["cost_per_lead"]) == (1, None, None)
    assert (cp["Empty"]["leads"], cp["Empty"]["cost"], cp["Empty"]["cost_per_lead"]) == (0, eur(500), None)

    # a period before the leads: no channels; campaigns listed with 0 leads
    r = report(stack, acct, "sources", **{"from": "2025-01-01T00:00:00Z", "to": JAN})
    assert r["channels"] == []
    assert all(c["leads"] == 0 and c["deals"] == 0 and c["cost_per_lead"] is None for c in r["campaigns"])


# ---------------------------------------------------------------------------
# bad input, permissions, isolation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["funnel", "managers", "sources"])
def test_bad_period_is_422(stack, name):
    acct = signup(stack)
    path = f"/v1/crm/reports/{name}"
    body = check_problem(stack.get(path, headers=acct.headers, params={"from": "2026-13-01T00:00:00Z"}), 422)
    assert field_errors(body) == {"from"}
    body = check_problem(stack.get(path, headers=acct.headers, params={"to": "soon"}), 422)
    assert field_errors(body) == {"to"}
    body = check_problem(stack.get(path, headers=acct.headers, params={"from": FEB, "to": JAN}), 422)
    assert field_errors(body) == {"to"}
    # offsets are accepted and shown in UTC
    r = report(stack, acct, name, **{"from": "2026-01-01T02:00:00+02:00", "to": FEB})
    assert r["from"] == "2026-01-01T00:00:00.000Z"


def test_sales_may_not_read_reports_but_a_manager_may(stack):
    owner = signup(stack)
    sales = user_session(stack, owner, ["sales"])
    manager = user_session(stack, owner, ["manager"])
    for name in REPORTS:
        # only abc-xyz takes a currency; the others refuse what they do not read
        params = {"from": JAN, "to": FEB, **({"currency": "EUR"} if name == "abc-xyz" else {})}
        check_problem(stack.get(f"/v1/crm/reports/{name}", headers=sales.headers, params=params), 403)
        ok(stack.get(f"/v1/crm/reports/{name}", headers=manager.headers, params=params))


def test_another_tenants_data_is_never_counted(stack):
    mine = signup(stack)
    theirs = signup(stack)
    # the same data set in both tenants, and more in theirs
    for acct, extra in ((mine, 0), (theirs, 5)):
        client = new_client(stack, acct, "Same name")
        won_deal(stack, acct, client, 100, "2026-01-10T00:00:00Z")
        lost_deal(stack, acct, client, 10, "2026-01-11T00:00:00Z")
        campaign = new_campaign(stack, acct, "Expo", eur(90))
        new_lead(stack, acct, "event", campaign)
        for _ in range(extra):
            won_deal(stack, acct, new_client(stack, acct), 1000, "2026-01-12T00:00:00Z")
            new_lead(stack, acct, "event", campaign)
    r = abc(stack, mine, JAN, FEB)
    assert r["total"] == eur(100) and len(r["items"]) == 1
    r = report(stack, mine, "funnel")
    assert r["totals"]["deals"] == 2 and r["totals"]["won_amounts"] == [eur(100)]
    r = report(stack, mine, "managers", **{"from": NOW_FROM, "to": NOW_TO})
    assert [(i["owner_id"], i["leads"], i["deals_won"], i["deals_lost"]) for i in r["items"]] == [
        (mine.user_id, 1, 1, 1)]
    r = report(stack, mine, "sources", **{"from": NOW_FROM, "to": NOW_TO})
    assert len(r["campaigns"]) == 1 and r["campaigns"][0]["leads"] == 1
    assert r["campaigns"][0]["cost_per_lead"] == eur(90)
    assert [(c["channel"], c["leads"]) for c in r["channels"]] == [("event", 1)]
    # and theirs sees its own six clients
    r = abc(stack, theirs, JAN, FEB)
    assert r["total"] == eur(5100) and len(r["items"]) == 6


def test_reports_add_up_across_register_snapshots(stack):
    """More won deals in one month than a register holds between two of its
    snapshots (64 movements): 150 imported deals closed in January, amount
    i for deal i, odd amounts to "Odd", even ones to "Even"."""
    acct = signup(stack)
    odd, even = new_client(stack, acct, "Odd"), new_client(stack, acct, "Even")
    for i in range(1, 151):
        won_deal(stack, acct, odd if i % 2 else even, i, "2026-01-15T00:00:00Z")
    # Odd: 1 + 3 + ... + 149 = 75^2 = 5625; Even: 2 + 4 + ... + 150 = 75 * 76 = 5700;
    # total 150 * 151 / 2 = 11325
    r = abc(stack, acct, JAN, FEB)
    assert r["total"] == eur(11325)
    assert [(i["client_name"], i["revenue"]["amount"]) for i in r["items"]] == [("Even", 5700), ("Odd", 5625)]
    # Even: 5700 / 11325 = 0.50331 -> A (cum 50.33%); Odd: cum 100% -> C
    assert [(i["share"], i["abc"]) for i in r["items"]] == [("0.5033", "A"), ("0.4967", "C")]
    r = report(stack, acct, "funnel")
    assert r["totals"]["deals"] == 150 and r["totals"]["won_amounts"] == [eur(11325)]
    assert (r["stages"][0]["entered"], r["stages"][0]["moved_on"]) == (150, 150)
    r = report(stack, acct, "managers", **{"from": JAN, "to": FEB})
    assert [(i["owner_id"], i["deals_won"], i["revenue"]) for i in r["items"]] == [
        (acct.user_id, 150, [eur(11325)])]


def test_reports_read_own_covers_only_the_callers_records(stack):
    owner = signup(stack)
    role = f"rep-own-{secrets.token_hex(3)}"
    ok(stack.post("/v1/roles", headers=owner.headers,
                  json={"name": role, "permissions": ["crm.reports.read:own"]}), 201)
    me = user_session(stack, owner, [role])
    client = new_client(stack, owner, "Shared")
    # mine: won 70 EUR, lost 1; the owner's: won 30 EUR
    won_deal(stack, owner, client, 70, "2026-01-10T00:00:00Z", owner_id=me.user_id)
    lost_deal(stack, owner, client, 5, "2026-01-11T00:00:00Z", owner_id=me.user_id)
    won_deal(stack, owner, client, 30, "2026-01-12T00:00:00Z")
    r = abc(stack, me, JAN, FEB)
    assert r["total"] == eur(70)
    r = report(stack, me, "managers", **{"from": JAN, "to": FEB})
    assert [(i["owner_id"], i["deals_won"], i["deals_lost"], i["revenue"]) for i in r["items"]] == [
        (me.user_id, 1, 1, [eur(70)])]
    r = report(stack, me, "funnel")
    assert (r["totals"]["deals"], r["totals"]["won_amounts"]) == (2, [eur(70)])
    # the owner sees everything: 70 + 30
    assert abc(stack, owner, JAN, FEB)["total"] == eur(100)
