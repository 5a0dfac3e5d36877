"""Exact writes across processes: three server processes on one database
(PostgreSQL-backed FerretDB) and one Redis, racing for the same record with
its id spelled in lower, upper and mixed case.

FerretDB v1.24 applies findAndModify as a read and a separate write, so a
version check in the filter alone lets two writers of one version both win.
The server claims (record, version) with a unique insert before it writes;
these tests race real requests through real processes and count what was
stored, and kill a writer between its claim and its write."""

import signal
import threading
import time

import pytest
import requests

from conftest import HTTP_TIMEOUT_S, check_problem, sanitizer_hits, signup

# no rate limit gets in the way of fifty requests at once
NO_RATE_LIMITS = dict(rate_limit_rps=100000, rate_limit_burst=200000,
                      rate_limit_user_rps=100000, rate_limit_user_burst=200000)
RACERS = 50
LEASE_MS = 4000  # claim_lease_ms of the processes started here


def spellings(record_id):
    """The id as the API accepts it: lower, upper and mixed case."""
    mixed = "".join(ch.upper() if i % 2 else ch for i, ch in enumerate(record_id))
    return [record_id.lower(), record_id.upper(), mixed]


def db_name(env):
    return env["TRELLIS_MONGO_URI"].rsplit("/", 1)[1]


class Trio:
    """Three server processes on one fresh database."""

    def __init__(self, trellis, **overrides):
        self.trellis = trellis
        self.overrides = dict(NO_RATE_LIMITS, claim_lease_ms=LEASE_MS, **overrides)
        env = trellis.env(**self.overrides)
        run = trellis.run("migrate", env=env)
        assert run.returncode == 0 and not sanitizer_hits(run.output), run
        self.db = db_name(env)
        self.mongo = trellis.db(self.db)
        self.procs = [self.start()[0] for _ in range(3)]

    def start(self, **more):
        env = self.trellis.env(db=self.db, **dict(self.overrides, **more))
        proc = self.trellis.start("serve", env=env)
        proc.wait_ready()
        return proc, env

    def url(self, i, path):
        return self.procs[i % len(self.procs)].url(path)

    def check_logs(self):
        for p in self.procs:
            hits = sanitizer_hits(p.output())
            assert not hits, f"sanitizer report {hits}:\n{p.output_tail(80)}"


@pytest.fixture
def trio(trellis):
    t = Trio(trellis)
    yield t
    t.check_logs()


def race(calls):
    """Runs every call at the same moment from its own thread; returns the
    responses in call order."""
    barrier = threading.Barrier(len(calls))
    out = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            out[i] = call()
        except requests.RequestException as e:
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def statuses(responses):
    return sorted(r.status_code if isinstance(r, requests.Response) else repr(r) for r in responses)


def make_lead(trio, owner, **fields):
    body = {"name": "Race Lead", "email": f"race-{time.monotonic_ns()}@example.com"}
    body.update(fields)
    r = requests.post(trio.url(0, "/v1/crm/leads"), json=body, headers=owner.headers,
                      timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def owner(trio):
    return signup(trio.procs[0])


# ---------------------------------------------------------------------------
# races
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("round_", range(2))
def test_fifty_conversions_of_one_lead_over_three_processes_make_one_client(trio, owner, round_):
    lead = make_lead(trio, owner)
    names = spellings(lead["id"])

    def convert(i):
        return lambda: requests.post(trio.url(i, f"/v1/crm/leads/{names[i % 3]}/convert"),
                                     json={"create_deal": True, "deal_title": f"deal {i}"},
                                     headers=owner.headers, timeout=60)

    got = race([convert(i) for i in range(RACERS)])
    codes = statuses(got)
    assert codes.count(200) == 1, codes
    assert codes.count(409) == RACERS - 1, codes
    for r in got:
        if r.status_code == 409:
            check_problem(r, 409)
    tid = owner.tenant_oid
    from bson import ObjectId
    lid = ObjectId(lead["id"])
    assert trio.mongo.clients.count_documents({"tenant_id": tid, "lead_id": lid}) == 1
    assert trio.mongo.contacts.count_documents({"tenant_id": tid}) == 1
    assert trio.mongo.deals.count_documents({"tenant_id": tid, "lead_id": lid}) == 1
    winner = next(r for r in got if r.status_code == 200).json()
    stored = requests.get(trio.url(1, f"/v1/crm/leads/{lead['id']}"), headers=owner.headers,
                          timeout=HTTP_TIMEOUT_S).json()
    assert stored["status"] == "converted"
    assert stored["client_id"] == winner["client"]["id"]
    assert stored["deal_id"] == winner["deal"]["id"]
    assert stored["version"] == 2


def test_fifty_if_match_patches_over_three_processes_one_wins_the_rest_412(trio, owner):
    lead = make_lead(trio, owner)
    names = spellings(lead["id"])

    def patch(i):
        return lambda: requests.patch(trio.url(i, f"/v1/crm/leads/{names[i % 3]}"),
                                      json={"name": f"Writer {i}"},
                                      headers=dict(owner.headers, **{"If-Match": '"1"'}),
                                      timeout=60)

    got = race([patch(i) for i in range(RACERS)])
    codes = statuses(got)
    assert codes.count(200) == 1, codes
    assert codes.count(412) == RACERS - 1, codes
    winner = next(r for r in got if r.status_code == 200).json()
    for r in got:
        if r.status_code == 412:
            body = check_problem(r, 412, "version-mismatch")
            assert body["current_version"] == 2, body
            assert r.headers["ETag"] == '"2"'
    stored = requests.get(trio.url(2, f"/v1/crm/leads/{lead['id']}"), headers=owner.headers,
                          timeout=HTTP_TIMEOUT_S)
    assert stored.json()["name"] == winner["name"]
    assert stored.json()["version"] == 2
    assert stored.headers["ETag"] == '"2"'


def test_fifty_unconditional_patches_all_land_one_version_each(trio, owner):
    """Without If-Match every write is applied, each on the version before
    it: the version ends at 1 + the number of writes, none lost."""
    lead = make_lead(trio, owner)
    names = spellings(lead["id"])
    n = 30

    def patch(i):
        return lambda: requests.patch(trio.url(i, f"/v1/crm/leads/{names[i % 3]}"),
                                      json={"company": f"Company {i}"}, headers=owner.headers,
                                      timeout=60)

    got = race([patch(i) for i in range(n)])
    codes = statuses(got)
    # a writer that waited longer than claim_wait_ms is told so (409 record-busy)
    assert set(codes) <= {200, 409}, codes
    landed = codes.count(200)
    assert landed >= 1
    stored = requests.get(trio.url(0, f"/v1/crm/leads/{lead['id']}"), headers=owner.headers,
                          timeout=HTTP_TIMEOUT_S).json()
    assert stored["version"] == 1 + landed, (stored["version"], codes)
    versions = sorted(r.json()["version"] for r in got if r.status_code == 200)
    assert versions == list(range(2, 2 + landed)), versions


def test_an_id_in_any_case_is_the_same_record(trio, owner):
    lead = make_lead(trio, owner)
    for i, name in enumerate(spellings(lead["id"])):
        r = requests.get(trio.url(i, f"/v1/crm/leads/{name}"), headers=owner.headers,
                         timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text
        assert r.json()["id"] == lead["id"].lower()


def test_an_upper_case_id_of_another_tenant_is_404_and_changes_nothing(trio, owner):
    lead = make_lead(trio, owner)
    other = signup(trio.procs[1])
    for i, name in enumerate(spellings(lead["id"])):
        r = requests.patch(trio.url(i, f"/v1/crm/leads/{name}"), json={"name": "Stolen"},
                           headers=other.headers, timeout=HTTP_TIMEOUT_S)
        check_problem(r, 404, "not-found")
        r = requests.post(trio.url(i, f"/v1/crm/leads/{name}/convert"), json={},
                          headers=other.headers, timeout=HTTP_TIMEOUT_S)
        check_problem(r, 404, "not-found")
    stored = requests.get(trio.url(0, f"/v1/crm/leads/{lead['id']}"), headers=owner.headers,
                          timeout=HTTP_TIMEOUT_S).json()
    assert stored["name"] == lead["name"] and stored["version"] == 1


# ---------------------------------------------------------------------------
# a writer that holds a record, or dies holding it
# ---------------------------------------------------------------------------

def test_a_write_waiting_on_a_slow_writer_is_409_busy_with_the_version(trio, owner):
    # the slow writer pauses 4.5 s between claim and write, within half its
    # 10 s lease; the others wait claim_wait_ms (2 s) for it
    slow, _ = trio.start(debug_claim_delay_ms=4500, claim_lease_ms=10000)
    try:
        lead = make_lead(trio, owner)
        result = {}

        def slow_patch():
            result["r"] = requests.patch(slow.url(f"/v1/crm/leads/{lead['id']}"),
                                         json={"name": "Slow Writer"}, headers=owner.headers,
                                         timeout=30)

        t = threading.Thread(target=slow_patch)
        t.start()
        time.sleep(1.0)  # the slow process holds the claim now
        r = requests.patch(trio.url(0, f"/v1/crm/leads/{lead['id'].upper()}"),
                           json={"name": "Quick Writer"},
                           headers=dict(owner.headers, **{"If-Match": '"1"'}), timeout=30)
        body = check_problem(r, 409, "record-busy")
        assert body["current_version"] == 1
        assert r.headers.get("Retry-After") == "1"
        t.join(30)
        assert result["r"].status_code == 200, result["r"].text
        stored = requests.get(trio.url(1, f"/v1/crm/leads/{lead['id']}"), headers=owner.headers,
                              timeout=HTTP_TIMEOUT_S).json()
        assert stored["name"] == "Slow Writer" and stored["version"] == 2
    finally:
        slow.signal(signal.SIGTERM)
        slow.wait_exit(20)


def test_a_writer_slower_than_half_its_lease_gives_up_and_writes_nothing(trio, owner):
    late, _ = trio.start(debug_claim_delay_ms=LEASE_MS // 2 + 500)
    try:
        lead = make_lead(trio, owner)
        r = requests.patch(late.url(f"/v1/crm/leads/{lead['id']}"), json={"name": "Too Late"},
                           headers=owner.headers, timeout=30)
        check_problem(r, 503, "dependency-unavailable")
        stored = requests.get(trio.url(0, f"/v1/crm/leads/{lead['id']}"), headers=owner.headers,
                              timeout=HTTP_TIMEOUT_S).json()
        assert stored["name"] == lead["name"] and stored["version"] == 1
        r = requests.patch(trio.url(1, f"/v1/crm/leads/{lead['id']}"), json={"name": "In Time"},
                           headers=dict(owner.headers, **{"If-Match": '"1"'}), timeout=30)
        assert r.status_code == 200, r.text
    finally:
        late.signal(signal.SIGTERM)
        late.wait_exit(20)


def test_a_writer_killed_between_claim_and_write_blocks_the_record_at_most_a_lease(trio, owner):
    doomed, _ = trio.start(debug_claim_delay_ms=30000)
    lead = make_lead(trio, owner)

    def doomed_patch():
        try:
            requests.patch(doomed.url(f"/v1/crm/leads/{lead['id']}"),
                           json={"name": "Never Written"}, headers=owner.headers, timeout=60)
        except requests.RequestException:
            pass  # it is killed mid-request

    t = threading.Thread(target=doomed_patch, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and trio.mongo["_claims"].count_documents({}) == 0:
        time.sleep(0.05)
    assert trio.mongo["_claims"].count_documents({}) == 1, "the doomed writer never claimed"
    doomed.kill()
    killed_at = time.monotonic()

    seen = []
    while True:
        r = requests.patch(trio.url(len(seen), f"/v1/crm/leads/{lead['id'].upper()}"),
                           json={"name": "After The Crash"},
                           headers=dict(owner.headers, **{"If-Match": '"1"'}), timeout=30)
        seen.append(r.status_code)
        if r.status_code == 200:
            break
        check_problem(r, 409, "record-busy")
        assert time.monotonic() - killed_at < LEASE_MS / 1000 + 5, (
            f"still refused {time.monotonic() - killed_at:.1f}s after the writer died: {seen}")
    blocked_for = time.monotonic() - killed_at
    assert blocked_for <= LEASE_MS / 1000 + 3, (blocked_for, seen)
    stored = requests.get(trio.url(2, f"/v1/crm/leads/{lead['id']}"), headers=owner.headers,
                          timeout=HTTP_TIMEOUT_S).json()
    assert stored["name"] == "After The Crash" and stored["version"] == 2
    assert trio.mongo["_claims"].count_documents({}) == 0, "claims left behind after the write"


def test_a_writer_killed_between_write_and_effects_has_them_posted_once(trio, owner):
    """A deal won through a process that dies right after writing it: the
    win is stored, and its effect on the report totals (kept in the claim)
    is posted by the other processes within a lease, once."""
    doomed, _ = trio.start(debug_effects_delay_ms=30000)
    client = requests.post(trio.url(0, "/v1/crm/clients"), json={"name": "Crash Co", "kind": "company"},
                           headers=owner.headers, timeout=HTTP_TIMEOUT_S).json()
    deal = requests.post(trio.url(0, "/v1/crm/deals"), headers=owner.headers, timeout=HTTP_TIMEOUT_S,
                         json={"client_id": client["id"], "title": "Almost",
                               "amount": {"amount": 777, "currency": "EUR"}}).json()
    funnel = lambda: requests.get(trio.url(1, "/v1/crm/reports/funnel"), headers=owner.headers,  # noqa: E731
                                  timeout=HTTP_TIMEOUT_S).json()["totals"]
    assert (funnel()["won"], funnel()["open"]) == (0, 1)

    def doomed_win():
        try:
            requests.post(doomed.url(f"/v1/crm/deals/{deal['id']}/won"), json={},
                          headers=owner.headers, timeout=60)
        except requests.RequestException:
            pass

    t = threading.Thread(target=doomed_win, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stored = requests.get(trio.url(2, f"/v1/crm/deals/{deal['id']}"), headers=owner.headers,
                              timeout=HTTP_TIMEOUT_S).json()
        if stored["status"] == "won":
            break
        time.sleep(0.05)
    assert stored["status"] == "won", "the doomed writer never wrote"
    assert funnel()["won"] == 0, "the effects were posted before the pause"
    doomed.kill()
    killed_at = time.monotonic()
    while funnel()["won"] != 1:
        assert time.monotonic() - killed_at < LEASE_MS / 1000 + 10, funnel()
        time.sleep(0.2)
    time.sleep(3)  # more settling rounds: nothing posted twice
    totals = funnel()
    assert (totals["won"], totals["open"], totals["won_amounts"]) == (
        1, 0, [{"amount": 777, "currency": "EUR"}])
    assert trio.mongo["_claims"].count_documents({}) == 0


def test_a_state_machine_race_over_three_processes_settles_on_one_final_state(trio, owner):
    """Half of fifty writers close a claim as resolved, half as rejected,
    with no If-Match, the id spelled three ways over three processes. Both
    moves are allowed from open and both states are final: whichever lands
    first decides, every writer of the other state is refused 409, and no
    answer ever shows the other state."""
    r = requests.post(trio.url(0, "/v1/crm/clients"), json={"name": "Racer", "kind": "company"},
                      headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 201, r.text
    r = requests.post(trio.url(1, "/v1/crm/claims"),
                      json={"client_id": r.json()["id"], "subject": "Late delivery"},
                      headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 201 and r.json()["status"] == "open", r.text
    names = spellings(r.json()["id"])
    targets = ["resolved", "rejected"]

    def close(i):
        return lambda: requests.patch(trio.url(i, f"/v1/crm/claims/{names[i % 3]}"),
                                      json={"status": targets[i % 2]}, headers=owner.headers,
                                      timeout=60)

    got = race([close(i) for i in range(RACERS)])
    ok = [(i, r) for i, r in enumerate(got) if isinstance(r, requests.Response) and r.status_code == 200]
    assert ok, statuses(got)
    final = {r.json()["status"] for _, r in ok}
    assert len(final) == 1, final
    final = final.pop()
    for i, r in enumerate(got):
        assert isinstance(r, requests.Response), r
        if targets[i % 2] != final:
            assert r.status_code == 409, (i, r.status_code, r.text)
            check_problem(r, 409)
        else:
            assert r.status_code in (200, 409), (i, r.status_code, r.text)  # 409: record busy
    stored = requests.get(trio.url(2, f"/v1/crm/claims/{names[1]}"), headers=owner.headers,
                          timeout=HTTP_TIMEOUT_S).json()
    assert stored["status"] == final
    assert stored["version"] == 1 + len(ok)
