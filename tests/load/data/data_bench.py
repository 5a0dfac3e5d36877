"""Section `data` of `make bench` (tests/load/bench.sh, BENCH_ONLY=data).

    data_bench.py --base-url URL --loader build/load_crm --out DIR [sizes]

Signs up one big tenant and --tenants small ones through the API, loads
their CRM records with build/load_crm (the server's own data layer, so the
records carry list buckets and report totals like records written through
the API), runs VACUUM (ANALYZE) as autovacuum would after a bulk load (so
that it does not run in the middle of the timings), then times
requests against the big tenant, one at a time on one keep-alive connection:
each figure is the p50 and p99 of --requests requests.

  - GET /v1/crm/leads?limit=50: page 1 and page 1,000 (its cursor reached
    by following next_cursor), without and with ?status=new;
  - POST /v1/crm/leads (new emails; the duplicate check runs for each);
  - GET /v1/crm/leads/{id} of leads met on the pages;
  - GET /v1/crm/reports/abc-xyz and /funnel over the loaded year, and
    managers and sources (fewer runs).

Prints one JSON object (figures, the load time, counts) on stdout and writes
the markdown section to --markdown. The baseline column holds the figures
main measured before this change on FerretDB's SQLite backend (README,
"CRM" benchmark of 2026-11-23, and issue 9): they cannot be measured in the
same run any more - at 200,000 leads one such request takes 14 s, and 200 of
each would take hours.
"""

import argparse
import datetime
import json
import os
import secrets
import statistics
import subprocess
import sys
import time

import requests

PASSWORD = "bench-password-" + secrets.token_hex(6)
# main before this change (FerretDB 1.24 on SQLite), seconds
SQLITE = {
    "page1": (15.2, "page 1 at 100,000 leads (README, 2026-11-23)"),
    "page1000": (14.0, "page 1,000 at 100,000 leads (README)"),
    "status_page1": (14.0, "a filtered page at 200,000 leads (issue 9: 14 s)"),
    "status_page1000": (14.0, "as above (every list query scans)"),
    "post": (13.5, "a lead POST at 200,000 leads (issue 9)"),
    "get": (None, "not measured on SQLite"),
    "abc": (14.6, "abc-xyz at 100,000 deals (README)"),
    "funnel": (17.1, "funnel at 100,000 deals (README)"),
    "managers": (31.4, "managers at 100,000 deals (README)"),
    "sources": (30.1, "sources at 100,000 deals (README)"),
}
GOALS = {"page1": 50, "page1000": 50, "status_page1": 50, "status_page1000": 50, "post": 20,
         "get": 5, "abc": 200, "funnel": 200}


def log(msg):
    print(f"data_bench: {msg}", file=sys.stderr, flush=True)


def signup(s, base, slug):
    r = s.post(base + "/v1/signup", timeout=60, json={
        "tenant_name": slug, "tenant_slug": slug, "email": f"owner@{slug}.bench", "password": PASSWORD,
        "name": "Bench Owner"})
    r.raise_for_status()
    body = r.json()
    token = body["access_token"]
    r = s.get(base + "/v1/crm/pipelines", headers={"Authorization": "Bearer " + token}, timeout=60)
    r.raise_for_status()
    pipeline = [p for p in r.json()["items"] if p.get("is_default")][0]
    return {"tenant": body["tenant"]["id"], "owner": body["user"]["id"], "token": token,
            "pipeline": pipeline["id"], "stages": [st["key"] for st in pipeline["stages"]]}


def pct(values, p):
    values = sorted(values)
    if not values:
        return None
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class Timer:
    def __init__(self, session, base, token):
        self.s = session
        self.base = base
        self.h = {"Authorization": "Bearer " + token}

    def one(self, method, path, **kw):
        t = time.perf_counter()
        r = self.s.request(method, self.base + path, headers=self.h, timeout=300, **kw)
        return r, (time.perf_counter() - t) * 1000

    def figure(self, name, n, call):
        times, failed, first_error = [], 0, None
        for i in range(n):
            r, ms = call(i)
            times.append(ms)
            if r.status_code >= 300:
                failed += 1
                first_error = first_error or f"{r.status_code} {r.text[:200]}"
        log(f"{name}: p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms, failed {failed}")
        return {"p50": round(pct(times, 50), 2), "p99": round(pct(times, 99), 2), "n": n,
                "failed": failed, "error": first_error}

    def cursor_of_page(self, page, params):
        """The cursor of page `page` (1-based), following next_cursor; also
        the ids seen, and a check that no lead came twice."""
        cursor, seen = None, []
        for _ in range(page - 1):
            p = dict(params, limit=50)
            if cursor:
                p["cursor"] = cursor
            r, _ = self.one("GET", "/v1/crm/leads", params=p)
            r.raise_for_status()
            body = r.json()
            seen += [i["id"] for i in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                raise RuntimeError(f"the list {params} ended before page {page}")
        if len(set(seen)) != len(seen):
            raise RuntimeError(f"the list {params} showed a lead twice in its first {page - 1} pages")
        return cursor, seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--loader", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown", required=True)
    ap.add_argument("--pg", default=os.environ.get("TRELLIS_POSTGRESQL_URI", ""))
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--leads-per-tenant", type=int, default=10000)
    ap.add_argument("--big-leads", type=int, default=200000)
    ap.add_argument("--big-deals", type=int, default=100000)
    ap.add_argument("--big-clients", type=int, default=5000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--page", type=int, default=1000)
    a = ap.parse_args()
    base = a.base_url
    s = requests.Session()
    run = secrets.token_hex(3)

    log(f"signing up 1 + {a.tenants} tenants")
    big = signup(s, base, f"bench-big-{run}")
    small = [signup(s, base, f"bench-{run}-{i:03d}") for i in range(a.tenants)]
    spec = os.path.join(a.out, "data-spec.txt")
    with open(spec, "w") as f:
        for t in small:
            f.write(f"{t['tenant']} {t['owner']} {t['pipeline']} {','.join(t['stages'])} "
                    f"{a.leads_per_tenant} 0 0 {a.days}\n")
        f.write(f"{big['tenant']} {big['owner']} {big['pipeline']} {','.join(big['stages'])} "
                f"{a.big_leads} {a.big_deals} {a.big_clients} {a.days}\n")
    total_leads = a.tenants * a.leads_per_tenant + a.big_leads
    log(f"loading {total_leads} leads, {a.big_deals} deals, {a.big_clients} clients")
    t0 = time.monotonic()
    load = subprocess.run([a.loader, spec], capture_output=True, text=True)
    load_seconds = time.monotonic() - t0
    sys.stderr.write(load.stderr)
    if load.returncode != 0:
        raise SystemExit(f"data_bench: the loader failed ({load.returncode})")
    loaded = json.loads(load.stdout)
    analyze_seconds = None
    if a.pg:
        t0 = time.monotonic()
        cmd = ["/usr/lib/postgresql/15/bin/psql", a.pg, "-Atqc", "VACUUM (ANALYZE)"]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"] + cmd
        subprocess.run(cmd, check=True)
        analyze_seconds = time.monotonic() - t0

    tm = Timer(s, base, big["token"])
    n = a.requests
    fig = {}
    log(f"timing: {n} requests per figure")
    fig["page1"] = tm.figure("page 1", n, lambda i: tm.one("GET", "/v1/crm/leads", params={"limit": 50}))
    cursor, seen = tm.cursor_of_page(a.page, {})
    fig["page1000"] = tm.figure(f"page {a.page}", n, lambda i: tm.one(
        "GET", "/v1/crm/leads", params={"limit": 50, "cursor": cursor}))
    fig["status_page1"] = tm.figure("status=new page 1", n, lambda i: tm.one(
        "GET", "/v1/crm/leads", params={"limit": 50, "status": "new"}))
    scursor, _ = tm.cursor_of_page(a.page, {"status": "new"})
    fig["status_page1000"] = tm.figure(f"status=new page {a.page}", n, lambda i: tm.one(
        "GET", "/v1/crm/leads", params={"limit": 50, "status": "new", "cursor": scursor}))
    fig["post"] = tm.figure("lead POST", n, lambda i: tm.one("POST", "/v1/crm/leads", json={
        "name": f"Timed {i}", "email": f"timed-{run}-{i}@bench.example", "phone": f"+49 30 {i:07d}",
        "source": {"channel": "web"}}))
    ids = seen[::max(1, len(seen) // n)][:n]
    fig["get"] = tm.figure("lead GET", n, lambda i: tm.one("GET", f"/v1/crm/leads/{ids[i % len(ids)]}"))
    today = datetime.datetime.now(datetime.timezone.utc).replace(day=1, hour=0, minute=0, second=0,
                                                                  microsecond=0)
    frm = (today - datetime.timedelta(days=365)).replace(day=1).strftime("%Y-%m-%dT%H:%M:%SZ")
    nxt = (today + datetime.timedelta(days=32)).replace(day=1).strftime("%Y-%m-%dT%H:%M:%SZ")
    period = {"from": frm, "to": nxt}
    fig["abc"] = tm.figure("abc-xyz", n, lambda i: tm.one(
        "GET", "/v1/crm/reports/abc-xyz", params=dict(period, currency="EUR")))
    fig["funnel"] = tm.figure("funnel", n, lambda i: tm.one("GET", "/v1/crm/reports/funnel"))
    fig["managers"] = tm.figure("managers", max(1, n // 10), lambda i: tm.one(
        "GET", "/v1/crm/reports/managers", params=period))
    fig["sources"] = tm.figure("sources", max(1, n // 10), lambda i: tm.one(
        "GET", "/v1/crm/reports/sources", params=period))
    r, _ = tm.one("GET", "/v1/crm/reports/funnel")
    funnel_deals = r.json()["totals"]["deals"] if r.status_code == 200 else None
    r, _ = tm.one("GET", "/v1/crm/reports/abc-xyz", params=dict(period, currency="EUR"))
    abc_clients = len(r.json()["items"]) if r.status_code == 200 else None

    out = {"load_seconds": round(load_seconds, 1), "analyze_seconds": analyze_seconds and round(analyze_seconds, 1),
           "loaded": loaded, "tenants": a.tenants + 1, "period": period, "funnel_deals": funnel_deals,
           "abc_clients": abc_clients, "requests": n, "page": a.page, "figures": fig}
    print(json.dumps(out))
    write_markdown(a, out)


def write_markdown(a, out):
    fig = out["figures"]
    rows = [
        ("page1", "GET /v1/crm/leads?limit=50, page 1"),
        ("page1000", f"GET /v1/crm/leads?limit=50, page {a.page}"),
        ("status_page1", "GET /v1/crm/leads?status=new&limit=50, page 1"),
        ("status_page1000", f"GET /v1/crm/leads?status=new&limit=50, page {a.page}"),
        ("post", "POST /v1/crm/leads (duplicate check included)"),
        ("get", "GET /v1/crm/leads/{id}"),
        ("abc", "GET /v1/crm/reports/abc-xyz (a year, EUR)"),
        ("funnel", "GET /v1/crm/reports/funnel (all time)"),
        ("managers", "GET /v1/crm/reports/managers (a year)"),
        ("sources", "GET /v1/crm/reports/sources (a year)"),
    ]
    loaded = out["loaded"]
    with open(a.markdown, "a") as f:
        f.write("\n## Data (section data)\n\n")
        f.write(f"{loaded['leads']:,} leads over {out['tenants']} tenants ({a.tenants} x "
                f"{a.leads_per_tenant:,} and one of {a.big_leads:,}), {loaded['deals']:,} deals and "
                f"{loaded['clients']:,} clients of the big tenant, on FerretDB 1.24 / PostgreSQL 15. "
                f"Loading took {out['load_seconds']} s (build/load_crm, through the data layer's import), "
                f"VACUUM (ANALYZE) {out['analyze_seconds']} s. Each figure: {out['requests']} requests to the big "
                f"tenant, one at a time (reports managers and sources: a tenth of that).\n\n")
        f.write("| figure | p50 ms | p99 ms | failed | SQLite baseline (main before this change) | p50 ratio | goal (p50) | result |\n")
        f.write("| --- | ---: | ---: | ---: | --- | ---: | --- | --- |\n")
        for key, label in rows:
            v = fig[key]
            base, why = SQLITE[key]
            ratio = f"{base * 1000 / v['p50']:,.0f}x faster" if base and v["p50"] else "-"
            goal = GOALS.get(key)
            result = "-" if goal is None else ("PASS" if v["p50"] <= goal and not v["failed"] else "MISS")
            base_cell = f"{base} s ({why})" if base else why
            f.write(f"| {label} | {v['p50']:.1f} | {v['p99']:.1f} | {v['failed']} | {base_cell} | {ratio} | "
                    f"{'<= ' + str(goal) + ' ms' if goal else '-'} | {result} |\n")
        f.write(f"\nThe funnel counted {out['funnel_deals']} deals; abc-xyz listed {out['abc_clients']} clients "
                f"over [{out['period']['from']}, {out['period']['to']}).\n")


if __name__ == "__main__":
    main()
