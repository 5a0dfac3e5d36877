"""Soak: steady mixed traffic against one running Trellis server for
--minutes, sampling the server's RSS, open fds and threads, and judging
whether they stay flat after warm-up (soak_analysis.py). `make soak` runs
it through tests/load/soak.sh, which starts the stack; README "Soak" and
tests/load/README.md say what it does and why.

Traffic, scheduled at --rate flows a second on --clients threads, each
flow one lead's way to cash:

    POST /v1/crm/leads                       201  (crm.lead.created: WebSocket + webhook)
    GET  /v1/crm/leads/{ID}                  200  (a new connection, the id in upper case
                                                   every other flow)
    GET  /v1/crm/leads?limit=20              200
    GET  the lead as another tenant          404
    POST /v1/crm/leads with no name          422
    POST /v1/crm/leads/{id}/convert          200  (client + deal)
    POST /v1/crm/deals/{id}/won              200  (crm.deal.won)
    POST /v1/crm/tasks due in --task-due-s   201  (crm.task.due from the reminder job)
    POST /v1/erp/orders for the deal         201
    POST .../confirm, .../invoice            200, 201
    POST .../payments (Idempotency-Key)      201  (erp.order.paid)
    GET  /v1/erp/orders/{id}                 200
    every 10th flow: GET /v1/changes, GET /v1/erp/stock

Beside it: --ws-clients WebSocket clients subscribed for the whole run to
crm.leads, crm.deals, crm.tasks and erp.orders, each of which must get
every event named above once, in id order; one more WebSocket connects,
authenticates and leaves every --churn-s seconds; a webhook on crm.leads
posts to a receiver here, which must get every crm.lead.created.

Every --sample-s seconds: /proc/<pid>/status (VmRSS, Threads) and the
entries of /proc/<pid>/fd. Per minute: requests, errors, p50/p99/max
latency, RSS, fds, threads, load average. Then the events are waited for
(up to --event-deadline-s), the table printed and the JSON report written;
exit 1 when a check failed.
"""

import argparse
import json
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from websockets.sync.client import connect

import soak_analysis as sa

TOPICS = ["crm.leads", "crm.deals", "crm.tasks", "erp.orders"]
HTTP_TIMEOUT_S = 30
PRODUCTS = 10
OPENING_STOCK = 1_000_000
KEEP_ERRORS = 20


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def env_num(name, default, kind=float):
    v = os.environ.get(name)
    return kind(v) if v not in (None, "") else default


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--pid", type=int, required=True, help="the server's process id")
    p.add_argument("--out", required=True, help="directory of the JSON report")
    p.add_argument("--server-log", help="the server's log, for its error lines")
    p.add_argument("--minutes", type=float, default=env_num("SOAK_MINUTES", 30))
    p.add_argument("--rate", type=float, default=env_num("SOAK_RATE", 1.0), help="flows a second")
    p.add_argument("--clients", type=int, default=env_num("SOAK_CLIENTS", 4, int))
    p.add_argument("--ws-clients", type=int, default=env_num("SOAK_WS_CLIENTS", 3, int))
    p.add_argument("--churn-s", type=float, default=10.0)
    p.add_argument("--task-due-s", type=float, default=5.0)
    p.add_argument("--sample-s", type=float, default=env_num("SOAK_SAMPLE_SECONDS", 10.0))
    p.add_argument("--event-deadline-s", type=float, default=60.0)
    p.add_argument("--warmup-frac", type=float, default=env_num("SOAK_WARMUP_FRAC", sa.WARMUP_FRAC))
    p.add_argument("--rss-slope-mib-h", type=float, default=env_num("SOAK_RSS_SLOPE_MIB_H", sa.RSS_SLOPE_MIB_H))
    p.add_argument("--rss-rise-mib", type=float, default=env_num("SOAK_RSS_RISE_MIB", sa.RSS_RISE_MIB))
    p.add_argument("--fd-slack", type=int, default=env_num("SOAK_FD_SLACK", sa.FD_SLACK, int))
    a = p.parse_args(argv)
    for name in ("minutes", "rate", "sample_s", "task_due_s", "churn_s", "event_deadline_s"):
        if getattr(a, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if a.clients < 1 or a.ws_clients < 1:
        p.error("--clients and --ws-clients must be at least 1")
    return a


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Run:
    """What the run saw, shared by its threads; times are seconds since
    the traffic began (time.monotonic() - t0)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        self.requests = []  # (t, step, seconds, ok)
        self.errors = []  # the first KEEP_ERRORS: {t, step, status, detail}
        self.error_count = 0
        self.expected = []  # (t, event, entity_id): every WebSocket client must get it
        self.hooks_expected = {}  # lead id -> t
        self.flows_started = self.flows_done = 0
        self.backlog_max = 0

    def now(self):
        return time.monotonic() - self.t0

    def record(self, t, step, seconds, ok, status=None, detail=""):
        with self.lock:
            self.requests.append((t, step, seconds, ok))
            if not ok:
                self.error_count += 1
                if len(self.errors) < KEEP_ERRORS:
                    self.errors.append({"t": round(t, 1), "step": step, "status": status,
                                        "detail": detail[:300]})
                    log(f"ERROR {step}: {status} {detail[:200]}")

    def expect(self, t, event, entity_id):
        with self.lock:
            self.expected.append((t, event, entity_id))


class Api:
    """HTTP calls with one account's token; one keep-alive session per
    thread, or a new connection when asked."""

    def __init__(self, run, base, token):
        self.run, self.base, self.token = run, base, token
        self.local = threading.local()

    def session(self):
        s = getattr(self.local, "s", None)
        if s is None:
            s = self.local.s = requests.Session()
        return s

    def call(self, step, method, path, want, body=None, headers=None, fresh=False):
        """The decoded answer (or {}) when the status is `want`, else
        None; every call is timed and counted."""
        h = {"Authorization": "Bearer " + self.token}
        h.update(headers or {})
        t = self.run.now()
        t1 = time.monotonic()
        try:
            if fresh:
                h["Connection"] = "close"
                r = requests.request(method, self.base + path, json=body, headers=h, timeout=HTTP_TIMEOUT_S)
            else:
                r = self.session().request(method, self.base + path, json=body, headers=h,
                                           timeout=HTTP_TIMEOUT_S)
        except requests.RequestException as e:
            self.run.record(t, step, time.monotonic() - t1, False, None, f"no answer: {e}")
            return None
        took = time.monotonic() - t1
        if r.status_code != want:
            self.run.record(t, step, took, False, r.status_code, f"wanted {want}: {r.text}")
            return None
        if want == 422 or want == 404:
            ok = r.headers.get("Content-Type", "").startswith("application/problem+json")
            self.run.record(t, step, took, ok, r.status_code, "" if ok else "not problem+json")
            return {} if ok else None
        self.run.record(t, step, took, True)
        try:
            return r.json() if r.content else {}
        except ValueError:
            return {}


class WsClient(threading.Thread):
    """One WebSocket subscribed for the whole run: notes each event's
    arrival by (event, entity_id), and events seen twice or out of id
    order."""

    def __init__(self, run, url, token, name):
        super().__init__(name=name, daemon=True)
        self.soak, self.url, self.token = run, url, token
        self.closing = False
        self.got = {}  # (event, entity_id) -> t of the first arrival
        self.ids = set()
        self.last = None
        self.duplicates = self.disorder = self.frames = 0
        self.dropped = None  # why the connection ended early
        self.ready = threading.Event()
        self.lock = threading.Lock()

    @staticmethod
    def order(event_id):
        ms, _, seq = event_id.partition("-")
        return int(ms), int(seq or 0)

    def run(self):  # noqa: C901 (one loop, read in order)
        try:
            with connect(self.url, open_timeout=30, close_timeout=2, max_size=2 ** 22) as ws:
                ws.send(json.dumps({"type": "auth", "token": self.token, "topics": TOPICS}))
                while not self.ready.is_set():
                    f = json.loads(ws.recv(timeout=30))
                    if f.get("type") == "subscribed":
                        if sorted(f.get("topics", [])) != sorted(TOPICS):
                            raise RuntimeError(f"subscribed to {f.get('topics')}, asked {TOPICS}")
                        self.ready.set()
                    elif f.get("type") == "error":
                        raise RuntimeError(f"error frame at auth: {f}")
                while not self.run_stop():
                    try:
                        raw = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    self.take(json.loads(raw))
        except Exception as e:  # noqa: BLE001 (any end before the stop is a drop)
            if not self.run_stop():
                self.dropped = f"{type(e).__name__}: {e}"
                log(f"ERROR {self.name}: {self.dropped}")
            self.ready.set()

    def run_stop(self):
        return self.soak.stop.is_set() and self.closing

    def take(self, f):
        if f.get("type") != "event":
            return
        t = self.soak.now()
        with self.lock:
            self.frames += 1
            eid = f.get("id", "")
            if eid in self.ids:
                self.duplicates += 1
                return
            self.ids.add(eid)
            key = self.order(eid)
            if self.last is not None and key <= self.last:
                self.disorder += 1
            self.last = key if self.last is None or key > self.last else self.last
            self.got.setdefault((f.get("event"), f.get("entity_id")), t)


class Hooks:
    """The webhook receiver: every request answered 204; crm.lead.created
    deliveries noted by lead, webhook-ids seen twice counted."""

    def __init__(self, run):
        self.run = run
        self.lock = threading.Lock()
        self.leads = {}  # lead id -> t of the first delivery
        self.ids = set()
        self.duplicates = self.requests = self.unsigned = 0
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server's name)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                hooks.take(self.headers, body)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, name="hooks", daemon=True).start()

    def take(self, headers, body):
        t = self.run.now()
        try:
            ev = json.loads(body)
        except ValueError:
            ev = {}
        wid = headers.get("webhook-id")
        with self.lock:
            self.requests += 1
            if not wid or not headers.get("webhook-signature"):
                self.unsigned += 1
            if wid in self.ids:
                self.duplicates += 1
                return
            self.ids.add(wid)
            if ev.get("event") == "crm.lead.created":
                self.leads.setdefault(ev.get("entity_id"), t)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Sampler(threading.Thread):
    def __init__(self, run, pid, every_s):
        super().__init__(name="sampler", daemon=True)
        self.run_, self.pid, self.every_s = run, pid, every_s
        self.samples = []
        self.died = False

    def sample(self):
        st = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                st[k] = v.split()
        # RssAnon (heap, arenas, stacks) beside VmRSS: RssFile grows too as
        # code paths not run before page their libraries in.
        return {"t": round(self.run_.now(), 2), "rss_kib": int(st["VmRSS"][0]),
                "anon_kib": int(st["RssAnon"][0]),
                "fds": len(os.listdir(f"/proc/{self.pid}/fd")), "threads": int(st["Threads"][0]),
                "load1": load1()}

    def run(self):
        next_at = 0.0
        while not self.run_.stop.is_set():
            try:
                self.samples.append(self.sample())
            except (OSError, KeyError, ValueError, IndexError):
                self.died = True
                log("ERROR the server process is gone")
                self.run_.stop.set()
                return
            next_at += self.every_s
            self.run_.stop.wait(max(0.0, next_at - self.run_.now()))


def signup(base, name):
    body = {"tenant_name": name, "tenant_slug": "soak-" + secrets.token_hex(5),
            "email": "owner@soak.test", "password": "soak-" + secrets.token_hex(8), "name": "Soak Owner"}
    r = requests.post(base + "/v1/signup", json=body, timeout=HTTP_TIMEOUT_S)
    if r.status_code != 201:
        raise SystemExit(f"soak: signup answered {r.status_code}: {r.text[:300]}")
    j = r.json()
    return j["access_token"], j["user"]["id"], j["tenant"]["id"]


def must(api, step, method, path, want, body=None):
    got = api.call(step, method, path, want, body)
    if got is None:
        raise SystemExit(f"soak: seeding failed at {step} ({api.run.errors[-1:]})")
    return got


def seed(api, hook_url):
    wh = must(api, "seed warehouse", "POST", "/v1/erp/warehouses", 201, {"code": "SOAK", "name": "Soak"})
    products = []
    for i in range(PRODUCTS):
        price = 1000 + 250 * i
        p = must(api, "seed product", "POST", "/v1/erp/products", 201, {
            "sku": f"SOAK{i:03d}", "name": f"Soak product {i}",
            "price": {"amount": price, "currency": "EUR"}, "tax_rate_bp": 2000})
        must(api, "seed stock", "POST", "/v1/erp/stock/moves", 201, {
            "kind": "receipt", "product_id": p["id"], "warehouse_id": wh["id"], "quantity": OPENING_STOCK,
            "unit_cost": {"amount": price // 2, "currency": "EUR"}, "reference": "soak opening stock"})
        products.append((p["id"], price))
    must(api, "seed webhook", "POST", "/v1/webhooks", 201, {"url": hook_url, "topics": ["crm.leads"],
                                                             "description": "soak receiver"})
    return wh["id"], products


def flow(n, run, api, other, owner_id, warehouse, products, task_due_s):
    """One lead's way to cash; stops at the first unexpected answer."""
    tag = secrets.token_hex(4)
    lead = api.call("lead create", "POST", "/v1/crm/leads", 201, {
        "name": f"Soak lead {n}", "email": f"soak{n}-{tag}@soak.test", "company": "Soak Ltd"})
    if lead is None:
        return
    run.expect(run.now(), "crm.lead.created", lead["id"])
    with run.lock:
        run.hooks_expected[lead["id"]] = run.now()
    spelled = lead["id"].upper() if n % 2 else lead["id"]
    if api.call("lead get", "GET", f"/v1/crm/leads/{spelled}", 200, fresh=True) is None:
        return
    if api.call("lead list", "GET", "/v1/crm/leads?limit=20", 200) is None:
        return
    if other.call("other tenant 404", "GET", f"/v1/crm/leads/{lead['id']}", 404) is None:
        return
    if api.call("bad lead 422", "POST", "/v1/crm/leads", 422, {"email": f"x{n}@soak.test"}) is None:
        return
    conv = api.call("lead convert", "POST", f"/v1/crm/leads/{lead['id']}/convert", 200, {
        "create_deal": True, "deal_title": f"Soak deal {n}", "amount": {"amount": 10000 + n, "currency": "EUR"}})
    if conv is None:
        return
    deal = conv["deal"]["id"]
    if api.call("deal won", "POST", f"/v1/crm/deals/{deal}/won", 200) is None:
        return
    run.expect(run.now(), "crm.deal.won", deal)
    due = datetime.now(timezone.utc) + timedelta(seconds=task_due_s)
    task = api.call("task create", "POST", "/v1/crm/tasks", 201, {
        "title": f"Call soak lead {n}", "due_at": iso(due), "assignee_id": owner_id,
        "related": {"deal_id": deal}})
    if task is None:
        return
    run.expect(run.now() + max(0.0, (due - datetime.now(timezone.utc)).total_seconds()), "crm.task.due",
               task["id"])
    product, price = products[n % len(products)]
    order = api.call("order create", "POST", "/v1/erp/orders", 201, {
        "warehouse_id": warehouse, "currency": "EUR", "deal_id": deal,
        "lines": [{"product_id": product, "quantity": 1 + n % 3,
                   "unit_price": {"amount": price, "currency": "EUR"}}]})
    if order is None:
        return
    path = f"/v1/erp/orders/{order['id']}"
    if api.call("order confirm", "POST", path + "/confirm", 200) is None:
        return
    if api.call("order invoice", "POST", path + "/invoice", 201) is None:
        return
    if api.call("order pay", "POST", path + "/payments", 201,
                {"amount": order["total"], "method": "bank", "reference": f"soak {n}"},
                headers={"Idempotency-Key": f"soak-pay-{tag}-{n}"}) is None:
        return
    run.expect(run.now(), "erp.order.paid", order["id"])
    if api.call("order get", "GET", path, 200) is None:
        return
    if n % 10 == 0:
        api.call("changes", "GET", "/v1/changes?limit=100", 200)
        api.call("stock", "GET", f"/v1/erp/stock?warehouse_id={warehouse}", 200)


def churn(run, url, token, every_s):
    """A WebSocket that connects, authenticates, subscribes and leaves,
    every every_s seconds: the connection set-up and tear-down paths."""
    while not run.stop.wait(every_s):
        t = run.now()
        t1 = time.monotonic()
        try:
            with connect(url, open_timeout=30, close_timeout=2) as ws:
                ws.send(json.dumps({"type": "auth", "token": token, "topics": ["crm.leads"]}))
                deadline = time.monotonic() + 30
                while True:
                    f = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                    if f.get("type") == "subscribed":
                        break
                    if f.get("type") == "error":
                        raise RuntimeError(f"error frame: {f}")
            run.record(t, "ws connect", time.monotonic() - t1, True)
        except Exception as e:  # noqa: BLE001 (any failure is an error of the run)
            run.record(t, "ws connect", time.monotonic() - t1, False, None, f"{type(e).__name__}: {e}")


def schedule(run, args, work):
    """Starts work(n) at n / rate seconds for the run's length on a pool;
    waits for the flows in flight."""
    end = args.minutes * 60.0
    with ThreadPoolExecutor(max_workers=args.clients, thread_name_prefix="flow") as pool:
        n = 0
        while not run.stop.is_set():
            at = n / args.rate
            if at >= end:
                break
            left = at - run.now()
            if left > 0 and run.stop.wait(left):
                break
            with run.lock:
                run.flows_started += 1
                run.backlog_max = max(run.backlog_max, run.flows_started - run.flows_done)
            pool.submit(work, n)
            n += 1


def drain(run, ws_clients, hooks, deadline_s):
    """Waits (polling) until every expected event reached every client
    and every lead its webhook, or deadline_s after the last was due."""
    with run.lock:
        last_due = max([t for t, _, _ in run.expected] + [run.now()])
    until = last_due + deadline_s
    # run.stop is set this early only when the server died: nothing comes.
    while run.now() < until and not run.stop.is_set():
        with run.lock:
            want = list(run.expected)
            leads = list(run.hooks_expected)
        ws_done = all((e, i) in c.got for c in ws_clients if not c.dropped for _, e, i in want)
        with hooks.lock:
            hooks_done = all(lead in hooks.leads for lead in leads)
        if ws_done and hooks_done:
            return
        time.sleep(0.5)


def error_lines(path):
    if not path:
        return 0, []
    n, first = 0, []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if any(f'"level":"{lv}"' in line for lv in ("error", "warn")):
                    n += 1
                    if len(first) < 5:
                        first.append(line.strip()[:300])
    except OSError:
        pass
    return n, first


def minute_rows(run, samples, ws_clients, hooks, minutes):
    rows = []
    for m in range(int(-(-minutes // 1))):
        lo, hi = m * 60.0, (m + 1) * 60.0
        lat = [s * 1000 for t, _, s, _ in run.requests if lo <= t < hi]
        errs = sum(1 for t, _, _, ok in run.requests if lo <= t < hi and not ok)
        exp = [(e, i) for t, e, i in run.expected if lo <= t < hi]
        gaps = sum(1 for c in ws_clients for k in exp if k not in c.got)
        leads = [lead for lead, t in run.hooks_expected.items() if lo <= t < hi]
        hook_gaps = sum(1 for lead in leads if lead not in hooks.leads)
        in_min = [s for s in samples if lo <= s["t"] < hi]
        last = in_min[-1] if in_min else None
        rows.append({
            "minute": m + 1, "requests": len(lat), "errors": errs,
            "p50_ms": round(sa.percentile(lat, 50), 1) if lat else None,
            "p99_ms": round(sa.percentile(lat, 99), 1) if lat else None,
            "max_ms": round(max(lat), 1) if lat else None,
            "events_expected": len(exp) * len(ws_clients), "ws_gaps": gaps,
            "hooks_expected": len(leads), "hook_gaps": hook_gaps,
            "rss_mib": round(last["rss_kib"] / 1024, 1) if last else None,
            "rss_max_mib": round(max(s["rss_kib"] for s in in_min) / 1024, 1) if in_min else None,
            "anon_mib": round(last["anon_kib"] / 1024, 1) if last else None,
            "fds": last["fds"] if last else None, "threads": last["threads"] if last else None,
            "load1": last["load1"] if last else None})
    return rows


def table(rows, warm_s):
    head = ("min", "requests", "errors", "p50 ms", "p99 ms", "max ms", "ws gaps", "hook gaps",
            "RSS MiB", "RSS max", "anon MiB", "fds", "threads", "load1")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]

    def cell(v):
        return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    for r in rows:
        mark = " (warm-up)" if r["minute"] * 60 <= warm_s else ""
        lines.append("| " + " | ".join([f"{r['minute']}{mark}"] + [cell(r[k]) for k in (
            "requests", "errors", "p50_ms", "p99_ms", "max_ms", "ws_gaps", "hook_gaps", "rss_mib",
            "rss_max_mib", "anon_mib", "fds", "threads", "load1")]) + " |")
    return "\n".join(lines)


def main(argv):
    args = parse_args(argv)
    base = args.base_url.rstrip("/")
    ws_url = base.replace("http://", "ws://", 1) + "/v1/ws"
    load_before = open("/proc/loadavg").read().split()[:3]
    run = Run()
    hooks = Hooks(run)
    token, owner_id, tenant = signup(base, "Soak")
    other_token, _, _ = signup(base, "Soak other")
    api, other = Api(run, base, token), Api(run, base, other_token)
    warehouse, products = seed(api, hooks.url)
    seed_requests = len(run.requests)
    log(f"tenant {tenant}: warehouse, {PRODUCTS} products in stock, webhook -> {hooks.url}")

    ws_clients = [WsClient(run, ws_url, token, f"ws{i}") for i in range(args.ws_clients)]
    for c in ws_clients:
        c.start()
    for c in ws_clients:
        if not c.ready.wait(60) or c.dropped:
            raise SystemExit(f"soak: WebSocket {c.name} did not subscribe: {c.dropped}")

    # The clock of the run starts with the traffic.
    with run.lock:
        run.t0 = time.monotonic()
        run.requests.clear()
    sampler = Sampler(run, args.pid, args.sample_s)
    sampler.start()
    threading.Thread(target=churn, args=(run, ws_url, token, args.churn_s), name="churn",
                     daemon=True).start()

    def work(n):
        try:
            flow(n, run, api, other, owner_id, warehouse, products, args.task_due_s)
        except Exception as e:  # noqa: BLE001 (a bug here is a failed run, not a hang)
            run.record(run.now(), "flow", 0.0, False, None, f"{type(e).__name__}: {e}")
        finally:
            with run.lock:
                run.flows_done += 1

    log(f"{args.minutes:g} min at {args.rate:g} flows/s on {args.clients} clients, "
        f"{args.ws_clients} WebSockets, samples every {args.sample_s:g} s")
    progress = threading.Thread(target=report_progress, args=(run, sampler), daemon=True)
    progress.start()
    schedule(run, args, work)
    duration = min(run.now(), args.minutes * 60.0)
    log("traffic done; waiting for the last events and deliveries")
    drain(run, ws_clients, hooks, args.event_deadline_s)
    run.stop.set()
    for c in ws_clients:
        c.closing = True
    sampler.join(5)
    for c in ws_clients:
        c.join(5)
    hooks.close()

    samples = [s for s in sampler.samples if s["t"] <= duration + 1]
    rows = minute_rows(run, samples, ws_clients, hooks, args.minutes)
    ws_missing = sum(1 for c in ws_clients for _, e, i in run.expected if (e, i) not in c.got)
    counts = {
        "server_alive": not sampler.died, "requests": len(run.requests), "errors": run.error_count,
        "expected_events": len(run.expected), "ws_missing": ws_missing,
        "ws_duplicates": sum(c.duplicates for c in ws_clients),
        "ws_disorder": sum(c.disorder for c in ws_clients),
        "ws_drops": sum(1 for c in ws_clients if c.dropped),
        "hook_missing": sum(1 for lead in run.hooks_expected if lead not in hooks.leads),
        "hook_duplicates": hooks.duplicates}
    checks = sa.judge_traffic(counts) + sa.judge_resources(
        samples, duration, warmup_frac=args.warmup_frac, rss_slope_mib_h=args.rss_slope_mib_h,
        rss_rise_mib=args.rss_rise_mib, fd_slack=args.fd_slack)
    ok = all(c["ok"] for c in checks)

    lat = {}
    for _, step, s, _ in run.requests:
        lat.setdefault(step, []).append(s * 1000)
    steps = {k: {"n": len(v), "p50_ms": round(sa.percentile(v, 50), 1), "p99_ms": round(sa.percentile(v, 99), 1)}
             for k, v in sorted(lat.items())}
    event_lag = {}
    for t, e, i in run.expected:
        for c in ws_clients:
            if (e, i) in c.got:
                event_lag.setdefault(e, []).append((c.got[(e, i)] - t) * 1000)
    lag = {e: {"n": len(v), "p50_ms": round(sa.percentile(v, 50), 1), "p99_ms": round(sa.percentile(v, 99), 1)}
           for e, v in sorted(event_lag.items())}
    hook_lag = [(hooks.leads[lead] - t) * 1000 for lead, t in run.hooks_expected.items() if lead in hooks.leads]
    log_errors, first_log_errors = error_lines(args.server_log)
    warm = sa.warmup_seconds(duration, args.warmup_frac)
    load_after = open("/proc/loadavg").read().split()[:3]

    report = {
        "ok": ok, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k not in ("base_url", "pid", "out", "server_log")},
        "duration_s": round(duration, 1), "warmup_s": warm, "flows": run.flows_started,
        "flow_backlog_max": run.backlog_max, "seed_requests": seed_requests,
        "load_average_before": load_before, "load_average_after": load_after,
        "checks": checks, "counts": counts, "minutes": rows, "steps": steps, "event_lag": lag,
        "webhook_lag": {"n": len(hook_lag), "p50_ms": round(sa.percentile(hook_lag, 50) or 0, 1),
                        "p99_ms": round(sa.percentile(hook_lag, 99) or 0, 1),
                        "requests": hooks.requests, "unsigned": hooks.unsigned},
        "ws_frames": [c.frames for c in ws_clients], "errors_first": run.errors,
        "server_log_errors": log_errors, "server_log_errors_first": first_log_errors,
        "samples": samples}
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"soak-{stamp}.json", "report.json"):
        with open(os.path.join(args.out, name), "w") as f:
            json.dump(report, f, indent=1)
    text = table(rows, warm)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text + "\n")

    print(text)
    print(f"\n{run.flows_started} flows, {len(run.requests)} requests in {duration / 60:.1f} min; "
          f"warm-up {warm:.0f} s; load average before {' '.join(load_before)}, after {' '.join(load_after)}")
    print(f"events to each of {len(ws_clients)} WebSockets: {len(run.expected)}; lag "
          + ", ".join(f"{e} p99 {v['p99_ms']:g} ms" for e, v in lag.items()))
    print(f"webhook deliveries of crm.lead.created: {len(hook_lag)} of {len(run.hooks_expected)}; "
          f"p99 {report['webhook_lag']['p99_ms']:g} ms; server log warn and error lines: {log_errors}")
    for c in checks:
        print(f"  {'PASS' if c['ok'] else 'FAIL'}  {c['name']}: {c['detail']}")
    print(f"soak: {'PASS' if ok else 'FAIL'} (report: {os.path.join(args.out, 'soak-' + stamp + '.json')})")
    return 0 if ok else 1


def report_progress(run, sampler):
    """One line a minute while the traffic runs."""
    m = 0
    while not run.stop.wait(max(0.0, (m + 1) * 60.0 - run.now())):
        m += 1
        with run.lock:
            recent = [(s, ok) for t, _, s, ok in run.requests if (m - 1) * 60 <= t < m * 60]
            flows = run.flows_started
        s = sampler.samples[-1] if sampler.samples else {}
        lat = [x * 1000 for x, _ in recent]
        log(f"minute {m}: {flows} flows, {len(recent)} requests, {sum(1 for _, ok in recent if not ok)} errors, "
            f"p99 {sa.percentile(lat, 99) or 0:.0f} ms, RSS {s.get('rss_kib', 0) / 1024:.1f} MiB, "
            f"fds {s.get('fds')}, threads {s.get('threads')}, load {s.get('load1')}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
