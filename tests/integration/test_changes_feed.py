"""The changes feed, GET /v1/changes (CONTRACT.md "Partner gateway"): the
tenant's events after an event id, in stream order, with the ids WebSocket
events carry, only of topics (and, for ":own" permissions, records) the
caller may read; deletions with data null; 410 resync-required past
retention.  Black-box: the real server, FerretDB and Redis."""

import threading
import time

import pytest
import requests

from conftest import HTTP_TIMEOUT_S, check_problem, sanitizer_hits, signup, user_session
from test_events_live import auth, events, no_event, until_type, ws_open

CHANGES = "/v1/changes"
LEADS = "/v1/crm/leads"


def call(target, method, path, who, **kw):
    """A request that waits out 429s (the per-user rate limit is not under test)."""
    headers = who if isinstance(who, dict) else who.headers
    for _ in range(50):
        r = requests.request(method, target.base_url + path, headers=headers,
                             timeout=HTTP_TIMEOUT_S, **kw)
        if r.status_code != 429:
            return r
        time.sleep(float(r.headers.get("Retry-After", "1")))
    return r


def new_lead(target, who, **fields):
    n = new_lead.count = getattr(new_lead, "count", 0) + 1
    body = {"name": f"Lead {n}", "email": f"lead{n}-{time.time_ns()}@example.com"}
    body.update(fields)
    r = call(target, "POST", LEADS, who, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def feed(target, who, **params):
    return call(target, "GET", CHANGES, who, params=params)


def page(target, who, **params):
    r = feed(target, who, **params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"items", "next", "has_more"}, body
    return body


def read_all(target, who, **params):
    """Every item from `since` on, following next while has_more."""
    items = []
    for _ in range(100):
        body = page(target, who, **params)
        items += body["items"]
        params["since"] = body["next"]
        if not body["has_more"]:
            return items, body["next"]
    raise AssertionError("the feed never ended")


def evkey(event_id):
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def test_pages_through_250_events_in_order_with_has_more_and_next(stack):
    owner = signup(stack)
    leads = [new_lead(stack, owner) for _ in range(250)]
    pages = []
    params = {"topics": "crm.leads"}
    while True:
        body = page(stack, owner, **params)
        pages.append(body)
        params["since"] = body["next"]
        if not body["has_more"]:
            break
    assert [len(p["items"]) for p in pages] == [100, 100, 50]
    assert [p["has_more"] for p in pages] == [True, True, False]
    items = [i for p in pages for i in p["items"]]
    assert [i["entity_id"] for i in items] == [lead["id"] for lead in leads]
    assert all(i["event"] == "crm.lead.created" and i["topic"] == "crm.leads" for i in items)
    ids = [i["id"] for i in items]
    assert ids == sorted(ids, key=evkey) and len(set(ids)) == 250
    # next is the last item's id; the page after the end is empty
    assert pages[0]["next"] == pages[0]["items"][-1]["id"]
    assert items[0]["data"] == leads[0]
    assert items[0]["ts"].endswith("Z") and items[0]["actor"] == owner.user_id
    last = page(stack, owner, topics="crm.leads", since=pages[-1]["next"])
    assert last == {"items": [], "next": pages[-1]["next"], "has_more": False}
    # limit bounds the page
    small = page(stack, owner, topics="crm.leads", limit=7)
    assert [i["id"] for i in small["items"]] == ids[:7] and small["has_more"]
    big = page(stack, owner, topics="crm.leads", limit=500)
    assert [i["id"] for i in big["items"]] == ids and not big["has_more"]


def test_topics_filter_and_default_to_every_readable_topic(stack):
    owner = signup(stack)
    start = page(stack, owner)["next"]
    lead = new_lead(stack, owner)
    user = user_session(stack, owner, ["employee"])
    only_leads, _ = read_all(stack, owner, since=start, topics="crm.leads")
    assert [i["entity_id"] for i in only_leads] == [lead["id"]]
    only_users, _ = read_all(stack, owner, since=start, topics="admin.users")
    assert {i["topic"] for i in only_users} == {"admin.users"}
    assert user.user_id in {i["entity_id"] for i in only_users}
    both, _ = read_all(stack, owner, since=start, topics="crm.leads,admin.users")
    everything, _ = read_all(stack, owner, since=start)
    assert [i["id"] for i in both] == [i["id"] for i in everything]
    assert {i["id"] for i in only_leads} | {i["id"] for i in only_users} == {i["id"] for i in both}


def test_sales_user_sees_only_the_events_of_their_own_leads_as_websocket_does(stack):
    owner = signup(stack)
    sales = user_session(stack, owner, ["sales"])
    start = page(stack, owner)["next"]
    with ws_open(stack) as ws:
        auth(ws, sales, topics=["crm.leads"])
        until_type(ws, "subscribed")
        mine = [new_lead(stack, owner, owner_id=sales.user_id) for _ in range(3)]
        mine.append(new_lead(stack, sales))
        others = [new_lead(stack, owner) for _ in range(3)]
        ws_got = events(ws, 4)
        no_event(ws)
    items, _ = read_all(stack, sales, since=start, topics="crm.leads")
    assert [i["entity_id"] for i in items] == [lead["id"] for lead in mine]
    assert [i["id"] for i in items] == [e["id"] for e in ws_got]
    # by default too: nothing of the others' records on any topic
    everything, _ = read_all(stack, sales, since=start)
    seen = {i["entity_id"] for i in everything}
    assert not seen & {lead["id"] for lead in others}
    perms = call(stack, "GET", "/v1/me", sales).json()["permissions"]
    assert "system.users.read" not in perms
    assert {i["topic"] for i in everything} <= {"crm.leads", "crm.deals", "crm.clients",
                                                  "crm.tasks", "crm.claims"}
    check_problem(feed(stack, sales, topics="crm.leads,admin.users"), 403, "forbidden")


def test_a_deleted_record_has_data_null_after_its_earlier_states(stack):
    owner = signup(stack)
    start = page(stack, owner)["next"]
    lead = new_lead(stack, owner)
    r = call(stack, "PATCH", f"{LEADS}/{lead['id']}", owner, json={"name": "Renamed"})
    assert r.status_code == 200, r.text
    r = call(stack, "DELETE", f"{LEADS}/{lead['id']}", owner)
    assert r.status_code == 204, r.text
    items, _ = read_all(stack, owner, since=start, topics="crm.leads")
    assert [i["event"] for i in items] == ["crm.lead.created", "crm.lead.updated",
                                           "crm.lead.deleted"]
    assert all(i["entity_id"] == lead["id"] for i in items)
    assert items[1]["data"]["name"] == "Renamed"
    assert items[2]["data"] is None
    assert set(items[2]) == {"id", "topic", "event", "entity_id", "actor", "ts", "data"}


def test_bad_input_is_refused(stack):
    owner = signup(stack)
    for since in ("abc", "1-", "-1", "1-2-3", "", "1.5-0", "99999999999999999999-0"):
        check_problem(feed(stack, owner, since=since), 422)
    for limit in ("0", "501", "x", "-1", "", "1e2"):
        check_problem(feed(stack, owner, limit=limit), 422)
    for topics in ("nope.nothing", "", "crm.leads,", ",crm.leads", "crm.leads,,admin.users"):
        check_problem(feed(stack, owner, topics=topics), 422)
    check_problem(feed(stack, owner, cursor="abc"), 400, "unknown-parameter")
    check_problem(requests.get(stack.base_url + CHANGES, timeout=HTTP_TIMEOUT_S), 401)
    # an id later than any event of the tenant is not one of its events
    check_problem(feed(stack, owner, since="99999999999999-0"), 410, "resync-required")


def test_another_tenant_sees_nothing_of_ours(stack):
    a, b = signup(stack), signup(stack)
    a_start = page(stack, a)["next"]
    ours = {new_lead(stack, a)["id"] for _ in range(3)}
    a_items, a_next = read_all(stack, a, since=a_start)
    assert ours <= {i["entity_id"] for i in a_items}
    b_items, _ = read_all(stack, b)
    assert not {i["entity_id"] for i in b_items} & ours
    assert not {i["id"] for i in b_items} & {i["id"] for i in a_items}
    r = feed(stack, b, since=a_next)
    if r.status_code == 200:
        assert not {i["entity_id"] for i in r.json()["items"]} & ours
    else:
        check_problem(r, 410, "resync-required")


def test_api_key_reads_the_topics_its_permissions_allow(stack):
    owner = signup(stack)
    start = page(stack, owner)["next"]
    lead = new_lead(stack, owner)
    r = call(stack, "POST", "/v1/api-keys", owner,
             json={"name": "feed", "permissions": ["crm.leads.read"]})
    assert r.status_code == 201, r.text
    key = {"X-API-Key": r.json()["key"]}
    items, _ = read_all(stack, key, since=start)
    assert {i["topic"] for i in items} == {"crm.leads"}
    assert [i["entity_id"] for i in items] == [lead["id"]]
    check_problem(feed(stack, key, topics="admin.users"), 403, "forbidden")
    r = call(stack, "POST", "/v1/api-keys", owner,
             json={"name": "tags", "permissions": ["system.tags.read"]})
    tags_key = {"X-API-Key": r.json()["key"]}
    check_problem(feed(stack, tags_key, topics="crm.leads"), 403, "forbidden")
    assert page(stack, tags_key, since=start)["items"] == []
    check_problem(feed(stack, {"X-API-Key": "trk_" + "0" * 24 + "_nope"}), 401)


def test_websocket_and_feed_alternated_see_every_change_exactly_once(stack):
    """The contract's proof: WebSocket for a while, disconnect, catch up
    through the feed from the last id seen, reconnect with resume_from the
    feed's next - while a writer keeps changing records throughout."""
    owner = signup(stack)
    seen = []
    written = []
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            written.append(new_lead(stack, owner)["id"])
            time.sleep(0.01)

    t = threading.Thread(target=writer)
    t.start()
    try:
        last = None
        for round_ in range(3):
            with ws_open(stack) as ws:
                extra = {"resume_from": last} if last else {}
                auth(ws, owner, topics=["crm.leads"], **extra)
                got = events(ws, 15)
                seen += got
                last = got[-1]["id"]
            time.sleep(0.3)  # changes happen while nobody listens
            items, last = read_all(stack, owner, since=last, topics="crm.leads")
            seen += items
            assert items, "the writer wrote while the client was away"
    finally:
        stop.set()
        t.join()
    # the rest: everything the writer did, after the last id
    items, _ = read_all(stack, owner, since=last, topics="crm.leads")
    seen += items
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids, key=evkey) and len(ids) == len(set(ids))
    first = written.index(seen[0]["entity_id"])
    assert [e["entity_id"] for e in seen] == written[first:]


@pytest.fixture
def short_retention(trellis):
    env = trellis.env(events_max_len=100, rate_limit_user_rps=100000,
                      rate_limit_user_burst=200000, rate_limit_rps=100000,
                      rate_limit_burst=200000)
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0 and not sanitizer_hits(run.output), run
    proc = trellis.start("serve", env=env)
    proc.wait_ready()
    yield proc
    assert not sanitizer_hits(proc.output()), proc.output_tail(80)


def test_since_older_than_retention_is_410_resync_required(short_retention):
    srv = short_retention
    owner = signup(srv)
    first = new_lead(srv, owner)
    head = page(srv, owner, topics="crm.leads")["items"][0]
    assert head["entity_id"] == first["id"]
    for _ in range(350):
        new_lead(srv, owner)
    items, _ = read_all(srv, owner, topics="crm.leads")
    assert first["id"] not in {i["entity_id"] for i in items}  # trimmed
    assert len(items) >= 100 and len(items) < 351
    check_problem(feed(srv, owner, since=head["id"]), 410, "resync-required")
    check_problem(feed(srv, owner, since="0-0"), 410, "resync-required")
    # an id still held reads on
    body = page(srv, owner, since=items[0]["id"], topics="crm.leads")
    assert body["items"][0]["id"] == items[1]["id"]
