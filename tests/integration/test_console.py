"""The web console in a real browser: Debian's chromium driven by
playwright-core (modules/console/e2e/*.test.mjs, node's test runner) against
a server of its own on the real database and Redis. The scenarios restart
that server through a small control endpoint this test serves
(POST $TRELLIS_CONTROL_URL/restart: SIGTERM, start again on the same port,
answer once /readyz is 200). Screenshots land in build/console/screenshots."""

import glob
import http.server
import os
import secrets
import shutil
import signal
import subprocess
import threading

import requests

from conftest import DEFAULT_PASSWORD, REPO_ROOT, free_port, sanitizer_hits

E2E_DIR = os.path.join(REPO_ROOT, "modules", "console", "e2e")
SHOTS_DIR = os.path.join(REPO_ROOT, "build", "console", "screenshots")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
RUN_TIMEOUT_S = 900
PAINT_LEADS = 10000


class Served:
    """The console's server, restartable on its port."""

    def __init__(self, trellis, env):
        self.trellis, self.env = trellis, env
        self.lock = threading.Lock()
        self.restarts = 0
        self.proc = self._start()

    def _start(self):
        proc = self.trellis.start("serve", env=self.env)
        proc.wait_ready()
        return proc

    def restart(self):
        with self.lock:
            self.proc.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait_exit(30)
            assert code == 0, f"the console's server stopped with {code}:\n{self.proc.output_tail()}"
            self.proc = self._start()
            self.restarts += 1


def control_server(served):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path != "/restart":
                self.send_response(404)
                self.end_headers()
                return
            try:
                served.restart()
                self.send_response(200)
            except Exception as e:  # the scenario sees the failure and says why
                self.send_response(500)
                self.end_headers()
                self.wfile.write(str(e).encode()[:2000])
                return
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def seed_many_leads(trellis, env, base_url):
    """A tenant with PAINT_LEADS leads for the first-paint scenario, written
    through the server's own data layer (build/asan/load_crm) in seconds
    rather than through 10,000 POSTs."""
    slug = f"paint-{secrets.token_hex(4)}"
    email = f"owner@{slug}.example"
    r = requests.post(base_url + "/v1/signup", timeout=60, json={
        "tenant_name": "Paint Ltd", "tenant_slug": slug, "email": email,
        "password": DEFAULT_PASSWORD, "name": "Paula Paint"})
    assert r.status_code == 201, r.text
    body = r.json()
    pipes = requests.get(base_url + "/v1/crm/pipelines", timeout=60,
                         headers={"Authorization": "Bearer " + body["access_token"]})
    assert pipes.status_code == 200, pipes.text
    pipeline = [p for p in pipes.json()["items"] if p.get("is_default")][0]
    spec = os.path.join(trellis.workdir, "paint-spec.txt")
    with open(spec, "w") as f:
        f.write(f"{body['tenant']['id']} {body['user']['id']} {pipeline['id']} "
                f"{','.join(st['key'] for st in pipeline['stages'])} {PAINT_LEADS} 0 0 30\n")
    load = trellis.run(spec, env=env, binary=os.path.join(REPO_ROOT, "build", "asan", "load_crm"),
                       timeout=300)
    assert load.returncode == 0, load
    return {"TRELLIS_PAINT_SLUG": slug, "TRELLIS_PAINT_EMAIL": email,
            "TRELLIS_PAINT_PASSWORD": DEFAULT_PASSWORD, "TRELLIS_PAINT_LEADS": str(PAINT_LEADS)}


def test_the_console_works_in_a_real_browser(trellis):
    scenarios = sorted(glob.glob(os.path.join(E2E_DIR, "*.test.mjs")))
    assert scenarios, f"no browser scenarios in {E2E_DIR}"
    assert os.path.exists(CHROMIUM), "chromium is missing: make test installs it (ops/deps.sh test)"
    assert os.path.isdir(os.path.join(REPO_ROOT, "build", "console", "app")), \
        "build/console is missing: make test builds the console first"
    env = trellis.env()
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0 and not sanitizer_hits(run.output), run
    served = Served(trellis, env)
    httpd = control_server(served)
    os.makedirs(SHOTS_DIR, exist_ok=True)
    node_env = {k: v for k, v in os.environ.items() if not k.startswith("TRELLIS_")}
    node_env.update({
        "TRELLIS_URL": served.proc.base_url,
        "TRELLIS_CONTROL_URL": f"http://127.0.0.1:{httpd.server_address[1]}",
        "TRELLIS_SHOTS_DIR": SHOTS_DIR,
        "CHROMIUM": CHROMIUM,
    })
    node_env.update(seed_many_leads(trellis, env, served.proc.base_url))
    try:
        proc = subprocess.run(
            ["node", "--test", "--test-concurrency=1", "--test-reporter=spec"] + scenarios,
            cwd=REPO_ROOT, env=node_env, capture_output=True, timeout=RUN_TIMEOUT_S)
    finally:
        httpd.shutdown()
    out = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    print(out[-20000:])
    assert proc.returncode == 0, f"browser scenarios failed:\n{out[-20000:]}\n--- server log ---\n" \
                                 f"{served.proc.output_tail(80)}"
    # a scenario that skips itself (no control endpoint, say) proves nothing
    assert "\u2139 skipped 0" in out or "# skipped 0" in out, f"a browser scenario was skipped:\n{out[-5000:]}"
    assert served.restarts >= 1, "the restart scenario never restarted the server"
    assert served.proc.alive(), served.proc.output_tail()
