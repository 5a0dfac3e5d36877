"""A client's timeline (GET /v1/crm/clients/{id}/timeline) across modules:
the CRM's interactions, deals and claims and the ERP's orders and invoices in
one list, newest first, paged by one cursor across kinds (ties of the same
millisecond included); each kind only for callers who may read its list
(":own" as the lists apply it); another tenant's client 404; bad limit 422,
bad cursor 400; the served OpenAPI document describes the items. Black-box:
the real server of the session stack, through the API only."""

import secrets

import pytest
import requests
from jsonschema import Draft202012Validator

from conftest import HTTP_TIMEOUT_S, check_problem, user_session
from crm_support import (  # noqa: F401 (fixtures among them)
    CLIENTS, DEALS, TS_RE, created, get_ok, hdr, list_page, make_client, other, stack, team, uniq,
    walk)
from erp_support import make_product, make_warehouse, money, receive

KINDS = {"interaction", "deal", "claim", "order", "invoice"}


def timeline(client):
    return f"{CLIENTS}/{client['id']}/timeline"


def whole(stack, who, client):
    body = list_page(stack, who, timeline(client), limit=200)
    assert body["next_cursor"] is None, body
    return body["items"]


def shown(items):
    return [(i["type"], i[i["type"]]["id"]) for i in items]


def post_ok(stack, who, path, body=None, status=(200, 201)):
    r = stack.post(path, json=body, headers=hdr(who)) if body is not None else \
        stack.post(path, headers=hdr(who))
    assert r.status_code in status, f"POST {path}: {r.status_code} {r.text[:500]}"
    return r.json()


def interaction(stack, who, client, at, summary="Call"):
    return created(stack.post("/v1/crm/interactions", headers=hdr(who), json={
        "client_id": client["id"], "kind": "call_out", "at": at, "summary": summary}))


def order_of(stack, who, warehouse, product, quantity=2, **fields):
    body = {"warehouse_id": warehouse["id"], "currency": "EUR",
            "lines": [{"product_id": product["id"], "quantity": quantity, "unit_price": money(1000)}]}
    body.update(fields)
    return post_ok(stack, who, "/v1/erp/orders", body, status=(201,))


def invoiced(stack, who, order):
    post_ok(stack, who, f"/v1/erp/orders/{order['id']}/confirm", status=(200,))
    return post_ok(stack, who, f"/v1/erp/orders/{order['id']}/invoice", status=(201,))


@pytest.fixture(scope="module")
def goods(stack, team):
    """A warehouse with stock of one product (20% tax) for the orders."""
    w, p = make_warehouse(stack, team.owner), make_product(stack, team.owner, tax_rate_bp=2000)
    receive(stack, team.owner, p, w, 1000, 400)
    return w, p


def make_history(stack, team, goods):
    """A client with an old interaction, a deal won and made into an order
    (by deal_id), that order invoiced, and a claim after it; and a second
    client whose records must stay off the first one's timeline."""
    w, p = goods
    c = make_client(stack, team.owner)
    old = interaction(stack, team.owner, c, "2020-01-01T10:00:00Z", "First call")
    deal = created(stack.post(DEALS, headers=hdr(team.owner), json={"client_id": c["id"], "title": uniq("Deal")}))
    won = post_ok(stack, team.owner, f"{DEALS}/{deal['id']}/won", status=(200,))
    assert won["status"] == "won"
    order = order_of(stack, team.owner, w, p, deal_id=deal["id"])
    assert order["client_id"] == c["id"] and order["deal_id"] == deal["id"]
    invoice = invoiced(stack, team.owner, order)
    claim = created(stack.post("/v1/crm/claims", headers=hdr(team.owner),
                               json={"client_id": c["id"], "subject": "Late delivery"}))
    elsewhere = make_client(stack, team.owner)
    invoiced(stack, team.owner, order_of(stack, team.owner, w, p, client_id=elsewhere["id"]))
    return {"client": c, "interaction": old, "deal": won, "order": order, "invoice": invoice,
            "claim": claim}


@pytest.fixture(scope="module")
def history(stack, team, goods):
    return make_history(stack, team, goods)


def test_a_won_deals_order_and_its_invoice_join_the_timeline_newest_first(stack, team, history):
    items = whole(stack, team.owner, history["client"])
    h = history
    assert shown(items) == [("claim", h["claim"]["id"]), ("invoice", h["invoice"]["id"]),
                            ("order", h["order"]["id"]), ("deal", h["deal"]["id"]),
                            ("interaction", h["interaction"]["id"])], items
    by_type = {i["type"]: i for i in items}
    order = get_ok(stack, team.owner, f"/v1/erp/orders/{h['order']['id']}")
    assert by_type["order"]["order"] == {
        "id": order["id"], "status": "invoiced", "total": money(2400), "deal_id": h["deal"]["id"],
        "created_at": order["created_at"]}, by_type["order"]
    inv = h["invoice"]
    assert by_type["invoice"]["invoice"] == {
        "id": inv["id"], "number": inv["number"], "order_id": order["id"], "total": money(2400),
        "status": "open", "issued_at": inv["created_at"], "due_at": inv["due_at"]}, by_type["invoice"]
    # the CRM's items are their records as GET shows them, as before
    assert by_type["claim"]["claim"] == h["claim"]
    assert by_type["interaction"]["interaction"] == h["interaction"]
    assert by_type["deal"]["deal"] == get_ok(stack, team.owner, f"{DEALS}/{h['deal']['id']}")
    # each item's time: the interaction's at, the others' creation (an invoice's issue)
    assert by_type["interaction"]["at"] == "2020-01-01T10:00:00.000Z"
    for kind in ("claim", "invoice", "order", "deal"):
        assert by_type[kind]["at"] == by_type[kind][kind].get("created_at", inv["created_at"])
    assert all(TS_RE.match(i["at"]) and set(i) == {"type", "at", i["type"]} for i in items), items
    ats = [i["at"] for i in items]
    assert ats == sorted(ats, reverse=True)


def test_paging_across_kinds_resumes_exactly_even_within_one_millisecond(stack, team, goods):
    """Items of several kinds at the same millisecond (interactions dated at
    an order's creation): every page size walks the same list, each item
    once, in the order of the whole list."""
    w, p = goods
    c = make_client(stack, team.owner)
    deal = created(stack.post(DEALS, headers=hdr(team.owner), json={"client_id": c["id"], "title": uniq("Deal")}))
    post_ok(stack, team.owner, f"{DEALS}/{deal['id']}/won", status=(200,))
    first = order_of(stack, team.owner, w, p, deal_id=deal["id"])
    invoiced(stack, team.owner, first)
    second = order_of(stack, team.owner, w, p, client_id=c["id"])
    for n in range(3):  # tied with the first order, and with each other
        interaction(stack, team.owner, c, first["created_at"], f"Call {n}")
    interaction(stack, team.owner, c, "2021-06-01T08:00:00Z")
    everything = whole(stack, team.owner, c)
    assert len(everything) == 8, everything
    assert sum(1 for i in everything if i["at"] == first["created_at"]) == 4
    tied = [i for i in everything if i["at"] == first["created_at"]]
    # at one time: kinds by name, then the newest id first
    assert [i["type"] for i in tied] == ["interaction"] * 3 + ["order"], tied
    ids = [i["interaction"]["id"] for i in tied[:3]]
    assert ids == sorted(ids, reverse=True)
    assert shown(everything)[0] == ("order", second["id"])
    for limit in (1, 2, 3, 5, 8):
        seen, pages = walk(stack, team.owner, timeline(c), limit)
        assert shown(seen) == shown(everything), (limit, seen)
        assert pages == -(-len(everything) // limit), (limit, pages)


def test_each_kind_is_shown_only_to_those_who_read_its_list(stack, team, goods):
    """Sales hold no ERP permission: neither orders nor invoices, and of the
    CRM's records only their own. An accountant reads orders and invoices
    but no deals, claims or interactions."""
    h = make_history(stack, team, goods)
    c = h["client"]
    mine = created(stack.post(DEALS, headers=hdr(team.sales), json={"client_id": c["id"], "title": uniq("Mine")}))
    assert shown(whole(stack, team.sales, c)) == [("deal", mine["id"])]
    assert shown(whole(stack, team.accountant, c)) == [("invoice", h["invoice"]["id"]),
                                                      ("order", h["order"]["id"])]
    check_problem(stack.get(timeline(c), headers=hdr(team.warehouse)), 403)


def test_own_order_and_invoice_permissions_show_the_callers_orders_only(stack, team, goods):
    w, p = goods
    name = f"rep-{secrets.token_hex(4)}"
    r = stack.post("/v1/roles", headers=hdr(team.owner), json={
        "name": name, "permissions": ["crm.clients.read", "erp.orders.read:own", "erp.invoices.read:own"]})
    assert r.status_code == 201, r.text
    rep = user_session(stack, team.owner, [name])
    c = make_client(stack, team.owner)
    theirs = order_of(stack, team.owner, w, p, client_id=c["id"], owner_id=rep.user_id)
    their_invoice = invoiced(stack, team.owner, theirs)
    invoiced(stack, team.owner, order_of(stack, team.owner, w, p, client_id=c["id"]))
    order_of(stack, team.owner, w, p, client_id=c["id"])
    assert len(whole(stack, team.owner, c)) == 5
    assert shown(whole(stack, rep, c)) == [("invoice", their_invoice["id"]), ("order", theirs["id"])]
    # as the lists show them
    assert [o["id"] for o in list_page(stack, rep, "/v1/erp/orders", client_id=c["id"])["items"]] == [theirs["id"]]


def test_another_tenants_client_is_404(stack, history, other):
    r = stack.get(timeline(history["client"]), headers=hdr(other))
    check_problem(r, 404)
    check_problem(stack.get(timeline(history["client"]), headers=hdr(other), params={"limit": 1}), 404)


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten", "1.5", ""])
def test_a_bad_limit_is_422_naming_it(stack, team, history, limit):
    r = stack.get(timeline(history["client"]), headers=hdr(team.owner), params={"limit": limit})
    assert "limit" in [e["field"] for e in check_problem(r, 422)["errors"]]


def test_a_cursor_this_list_did_not_make_is_400(stack, team, history):
    deals = list_page(stack, team.owner, DEALS, limit=1)
    assert deals["next_cursor"], deals
    for cursor in ["garbage", "", "AAAA", deals["next_cursor"], "x" * 400]:
        r = stack.get(timeline(history["client"]), headers=hdr(team.owner), params={"cursor": cursor})
        check_problem(r, 400, "malformed-request")
    r = stack.get(timeline(history["client"]), headers=hdr(team.owner), params={"sort": "at"})
    check_problem(r, 400, "unknown-parameter")  # one order only: newest first


def test_the_openapi_document_describes_every_kind_of_item(stack, team, history):
    doc = stack.get("/v1/openapi.json").json()
    op = doc["paths"]["/v1/crm/clients/{id}/timeline"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"id", "limit", "cursor"}
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Timeline"}
    kinds = doc["components"]["schemas"]["Timeline"]["properties"]["items"]["items"]["oneOf"]
    assert {k["properties"]["type"]["enum"][0] for k in kinds} == KINDS | {"questionnaire_answer"}
    # a real page (every kind in it) is what the document says
    page = list_page(stack, team.owner, timeline(history["client"]), limit=200)
    assert {i["type"] for i in page["items"]} == KINDS
    schema = dict(doc["components"]["schemas"]["Timeline"], components=doc["components"])
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(page)]
    assert errors == [], errors
    # a questionnaire answer (a client of its own: the history's lists stay as they are)
    c = make_client(stack, team.owner)
    contact = created(stack.post(f"{CLIENTS}/{c['id']}/contacts", json={"name": "Ann"},
                                 headers=hdr(team.owner)))
    q = created(stack.post("/v1/crm/questionnaires", headers=hdr(team.owner), json={
        "title": "Fit", "status": "open",
        "questions": [{"key": "ok", "text": "OK?", "type": "single", "options": ["y", "n"]}]}))
    r = stack.post(f"/v1/crm/questionnaires/{q['id']}/invitations", headers=hdr(team.owner),
                   json={"contact_ids": [contact["id"]]})
    assert r.status_code == 201, r.text
    r = requests.post(stack.base_url + r.json()["items"][0]["link"], json={"answers": {"ok": "y"}},
                      timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 201, r.text
    page = list_page(stack, team.owner, timeline(c), limit=200)
    assert [i["type"] for i in page["items"]] == ["questionnaire_answer"], page
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(page)]
    assert errors == [], errors
