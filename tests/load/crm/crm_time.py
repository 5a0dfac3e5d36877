"""Timed requests of the CRM benchmark (tests/load/bench.sh, BENCH_ONLY=crm).

    crm_time.py lists   --base-url URL --token JWT --mongo-uri URI [--page 1000]
    crm_time.py reports --base-url URL --token JWT --from T --to T
    crm_time.py intake  --base-url URL --api-key KEY

Each prints one JSON object (flat: numbers and strings) on stdout; progress
goes to stderr. A request that fails is recorded (status, detail, time),
not raised: the bench reports it in its table.

lists: GET /v1/crm/leads?limit=L (the first page) and page P: the request
  a client following next_cursor from the first page sends for its P-th
  page, each timed alone. One first page goes before, untimed (the first
  query after the bulk insert meets cold caches; its time is reported
  apart); then the two alternate, up to --repeat runs each (fewer once
  they have taken 2 x --budget seconds), and the medians are compared.
  How page P's cursor is reached: following next_cursor through P-1 pages
  costs P-1 times a page, and on FerretDB's SQLite backend a page of a
  100,000-lead tenant costs seconds (every list query scans the
  collection), so by default the cursor is built: the tenant's leads are
  read from the database in the list's order (-created_at, then -_id), and
  the cursor of the record ending page P-1 is encoded in the server's
  cursor format. The format is checked first against the server itself:
  the cursor built for the first page's last record must equal, byte for
  byte, the next_cursor the server returned. Then page P must hold the
  records expected at that position and its next_cursor must again equal
  the one built for its last record. --walk follows next_cursor for real
  (pages of 200, then one of the remainder, which lands on the same
  cursor: a cursor names a record, not a page size).

reports: GET /v1/crm/reports/{funnel, abc-xyz, managers, sources} with
  from/to (and currency for abc-xyz). A report answering 501 (or 404: no
  route) is "not available"; any other non-200 is an error.

intake: a few POST /v1/crm/leads with the API key, one at a time, after the
  seeding: what a partner waits for once the tenant holds many leads.
"""

import argparse
import base64
import json
import statistics
import sys
import time

import bson
import pymongo
import requests
from bson.son import SON


def log(msg):
    print(f"crm_time: {msg}", file=sys.stderr, flush=True)


def timed_get(session, url, timeout):
    """(status or 0, ms, body dict or None, error text)."""
    t = time.monotonic()
    try:
        r = session.get(url, timeout=timeout)
    except requests.RequestException as e:
        return 0, (time.monotonic() - t) * 1000, None, f"no answer: {type(e).__name__}: {str(e)[:150]}"
    ms = (time.monotonic() - t) * 1000
    try:
        body = r.json()
    except ValueError:
        body = None
    err = ""
    if r.status_code != 200:
        detail = body.get("detail") or body.get("title") if isinstance(body, dict) else r.text[:150]
        err = f"{r.status_code} {detail}"
    return r.status_code, ms, body, err


def repeat(fn, times, budget):
    """Runs fn() (-> (ok, ms, ...)) up to `times` times, fewer once `budget`
    seconds went by; stops at the first failure. Returns the list of
    results."""
    out = []
    start = time.monotonic()
    for _ in range(times):
        r = fn()
        out.append(r)
        if not r[0] or time.monotonic() - start >= budget:
            break
    return out


def fmt_list(values):
    return " / ".join(f"{v:.0f}" for v in values)


# ---- lists ----

def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def build_cursor(created_at, oid):
    """The server's cursor (server/db.c encode_cursor) for sort
    -created_at after the record (created_at, _id)."""
    doc = SON([("s", "created_at"), ("d", -1), ("v", created_at), ("i", oid)])
    return b64url(bson.encode(doc))


def lists(a):
    res = {"page": a.page, "limit": a.limit}
    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + a.token
    url = f"{a.base_url}/v1/crm/leads?limit={a.limit}"

    def page(label, cursor, keep):
        st, ms, body, err = timed_get(s, f"{url}&cursor={cursor}" if cursor else url, a.timeout)
        ok = st == 200 and isinstance(body, dict) and len(body.get("items", [])) == a.limit
        if st == 200 and not ok:
            err = f"200 with {len(body.get('items', [])) if isinstance(body, dict) else 'no'} items"
        if ok:
            keep["body"] = body
        log(f"{label}: {st} in {ms:.0f} ms {err}")
        return ok, ms, err

    # One untimed first page: the first query after the bulk insert finds
    # FerretDB's and SQLite's caches cold (recorded, not counted).
    first = {}
    ok, ms, err = page("first page (warm-up, not counted)", None, first)
    res["warmup_ms"] = round(ms)
    res["warmup_error"] = err

    # ---- where page P starts ----
    t = time.monotonic()
    want_ids = None
    deep_cursor = None
    res["deep_how"] = "followed next_cursor" if a.walk else "built from the database"
    res["check"] = ""
    res["first_ok"] = res["deep_ok"] = False
    res["first_runs"] = res["deep_runs"] = 0
    res["first_all_ms"] = res["deep_all_ms"] = ""
    res["first_error"] = res["deep_error"] = ""
    if a.walk:
        cursor = first.get("body", {}).get("next_cursor")
        if not cursor:
            ok, _, err = page("first page (for the walk)", None, first)
            cursor = first.get("body", {}).get("next_cursor")
        if not cursor:
            res["deep_error"] = f"not reached: the first page failed ({err})"
            return res
        seen = a.limit
        target = (a.page - 1) * a.limit
        while seen < target and cursor:
            n = min(200, target - seen)
            st, ms, body, err = timed_get(s, f"{a.base_url}/v1/crm/leads?limit={n}&cursor={cursor}", a.timeout)
            if st != 200:
                res["deep_error"] = f"walk stopped after {seen} records: {err}"
                return res
            seen += len(body["items"])
            cursor = body["next_cursor"]
            log(f"walk: {seen} of {target} records, last page {ms:.0f} ms")
        deep_cursor = cursor
    else:
        client = pymongo.MongoClient(a.mongo_uri, serverSelectionTimeoutMS=10000)
        try:
            db = client.get_default_database()
            me = s.get(f"{a.base_url}/v1/me", timeout=60).json()
            tenant = bson.ObjectId(me["tenant"]["id"])
            rows = list(db.leads.find({"tenant_id": tenant}, {"_id": 1, "created_at": 1}))
        finally:
            client.close()
        # -created_at, ties by -_id: the list's order (server/db.c tr_db_list)
        rows.sort(key=lambda d: (d["created_at"], d["_id"].binary), reverse=True)
        res["tenant_leads"] = len(rows)
        log(f"{len(rows)} leads of the tenant read from the database in {time.monotonic() - t:.1f}s")
        end = (a.page - 1) * a.limit  # records before page P
        if len(rows) < end + a.limit:
            res["deep_error"] = f"the tenant has {len(rows)} leads, fewer than {a.page} pages"
            return res
        first_ids = [str(d["_id"]) for d in rows[:a.limit]]
        first_next = build_cursor(rows[a.limit - 1]["created_at"], rows[a.limit - 1]["_id"])
        deep_cursor = build_cursor(rows[end - 1]["created_at"], rows[end - 1]["_id"])
        want_ids = [str(d["_id"]) for d in rows[end:end + a.limit]]
        want_next = build_cursor(rows[end + a.limit - 1]["created_at"], rows[end + a.limit - 1]["_id"])
    res["setup_seconds"] = round(time.monotonic() - t, 1)

    # ---- the timed runs, page 1 and page P alternating (the machine's
    # other load drifts; alternating spreads it over both) ----
    runs = {"first": [], "deep": []}
    bodies = {"first": {}, "deep": {}}
    start = time.monotonic()
    for _ in range(a.repeat):
        for name, label, cursor in (("first", "first page", None), ("deep", f"page {a.page}", deep_cursor)):
            r = runs[name]
            if r and not r[-1][0]:
                continue  # this figure failed: no more runs of it
            r.append(page(label, cursor, bodies[name]))
        if time.monotonic() - start >= 2 * a.budget:
            break
    for name in ("first", "deep"):
        r = runs[name]
        res[f"{name}_runs"] = len(r)
        res[f"{name}_ok"] = bool(r) and all(x[0] for x in r)
        res[f"{name}_all_ms"] = fmt_list([x[1] for x in r])
        res[f"{name}_median_ms"] = statistics.median(x[1] for x in r) if res[f"{name}_ok"] else -1
        res[f"{name}_error"] = next((x[2] for x in r if not x[0]), "")

    # ---- the checks: the cursor format and page P's contents ----
    if want_ids is not None:
        checks = []
        fb = bodies["first"].get("body") or first.get("body")
        if fb:
            if [i["id"] for i in fb["items"]] != first_ids:
                checks.append("the first page is not the first records in -created_at, -_id order")
            if fb["next_cursor"] != first_next:
                checks.append("the cursor built for page 2 differs from the server's next_cursor "
                              f"({first_next[:40]}... vs {str(fb['next_cursor'])[:40]}...)")
        else:
            checks.append("the cursor format could not be checked: no first page answered")
        db_ = bodies["deep"].get("body")
        if db_:
            got = [i["id"] for i in db_["items"]]
            if got != want_ids:
                checks.append(f"page {a.page} holds other records than expected (first {got[0]}, expected {want_ids[0]})")
            if db_["next_cursor"] != want_next:
                checks.append(f"page {a.page}'s next_cursor differs from the one built for its last record")
        res["check"] = "; ".join(checks)
    return res


# ---- reports ----

REPORTS = (
    ("funnel", "/v1/crm/reports/funnel?from={f}&to={t}"),
    ("abc_xyz", "/v1/crm/reports/abc-xyz?from={f}&to={t}&currency={c}"),
    ("managers", "/v1/crm/reports/managers?from={f}&to={t}"),
    ("sources", "/v1/crm/reports/sources?from={f}&to={t}"),
)


def reports(a):
    res = {}
    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + a.token
    for name, path in REPORTS:
        url = a.base_url + path.format(f=a.from_, t=a.to, c=a.currency)
        state = {}

        def once():
            st, ms, body, err = timed_get(s, url, a.timeout)
            state["status"] = st
            if st == 200 and isinstance(body, dict):
                items = body.get("items", body.get("stages"))
                state["items"] = len(items) if isinstance(items, list) else -1
            log(f"{name}: {st} in {ms:.0f} ms {err}")
            return st == 200, ms, err

        runs = repeat(once, a.repeat, a.budget)
        status = state["status"]
        res[f"{name}_status"] = status
        res[f"{name}_runs"] = len(runs)
        res[f"{name}_all_ms"] = fmt_list([r[1] for r in runs])
        if status in (501, 404) and len(runs) == 1:
            res[f"{name}_state"] = "not available"
            res[f"{name}_error"] = runs[0][2]
        elif all(r[0] for r in runs):
            res[f"{name}_state"] = "ok"
            res[f"{name}_median_ms"] = statistics.median(r[1] for r in runs)
            res[f"{name}_items"] = state.get("items", -1)
        else:
            res[f"{name}_state"] = "failed"
            res[f"{name}_error"] = next(r[2] for r in runs if not r[0])
    return res


# ---- intake after seeding ----

def intake(a):
    s = requests.Session()
    s.headers["X-API-Key"] = a.api_key
    ms_list, errs = [], []
    tag = bson.ObjectId()
    for k in range(a.posts):
        body = {"name": f"After seed {tag} {k}", "email": f"after{k}.{tag}@partner.example",
                "phone": f"+49 40 {k:07d}", "company": "Partner Lead GmbH",
                "source": {"channel": "partner", "campaign_id": None}}
        t = time.monotonic()
        try:
            r = s.post(f"{a.base_url}/v1/crm/leads", json=body, timeout=a.timeout)
            st = r.status_code
            err = "" if st == 201 else f"{st} {r.text[:150]}"
        except requests.RequestException as e:
            st, err = 0, f"no answer: {type(e).__name__}"
        ms = (time.monotonic() - t) * 1000
        log(f"POST /v1/crm/leads after seeding: {st} in {ms:.0f} ms {err}")
        ms_list.append(ms)
        if err:
            errs.append(err)
    return {"posts": len(ms_list), "failed": len(errs), "error": errs[0] if errs else "",
            "all_ms": fmt_list(ms_list), "median_ms": statistics.median(ms_list)}


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("lists", "reports", "intake"):
        q = sub.add_parser(name)
        q.add_argument("--base-url", required=True)
        q.add_argument("--timeout", type=float, default=300, help="seconds one request may take")
        q.add_argument("--repeat", type=int, default=3)
        q.add_argument("--budget", type=float, default=120,
                       help="stop repeating a figure once it has taken this many seconds")
        if name in ("lists", "reports"):
            q.add_argument("--token", required=True)
        if name == "lists":
            q.add_argument("--mongo-uri", required=True)
            q.add_argument("--page", type=int, default=1000)
            q.add_argument("--limit", type=int, default=50)
            q.add_argument("--walk", action="store_true", help="follow next_cursor to the page")
        if name == "reports":
            q.add_argument("--from", dest="from_", required=True)
            q.add_argument("--to", required=True)
            q.add_argument("--currency", default="EUR")
        if name == "intake":
            q.add_argument("--api-key", required=True)
            q.add_argument("--posts", type=int, default=3)
    a = p.parse_args(argv)
    if a.cmd == "lists" and a.page < 2:
        p.error("--page must be at least 2")
    res = {"lists": lists, "reports": reports, "intake": intake}[a.cmd](a)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
