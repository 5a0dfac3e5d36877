"""The Prometheus alert rules in ops/prometheus: promtool accepts them and
their unit tests pass, and every trellis_* series and label they select is
on a live server's GET /metrics - so a renamed metric or label breaks this
test rather than silently muting an alert."""

import os
import re
import shutil
import subprocess
import time

import requests
import yaml

from conftest import HTTP_TIMEOUT_S, REPO_ROOT, signup
from erp_support import make_product, make_warehouse, receive

RULES_DIR = os.path.join(REPO_ROOT, "ops", "prometheus")
RULES = os.path.join(RULES_DIR, "trellis-alerts.yml")
WAIT_S = 60
# what Prometheus adds or computes, not the server
NOT_FROM_THE_SERVER = {"instance", "job", "le"}
# HTTP status codes come from traffic: a 503 is on /metrics only after one
TRAFFIC_VALUES = {"status"}

SELECTOR = re.compile(r"\b(trellis_[a-z_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
BY = re.compile(r"\bby\s*\(([^)]*)\)")


def promtool(*args):
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: `bash ops/deps.sh test` installs Debian's prometheus"
    return subprocess.run([exe] + list(args), cwd=RULES_DIR, capture_output=True, text=True,
                          timeout=120)


def rules():
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    return [r for g in doc["groups"] for r in g["rules"]]


def series(text):
    """{name: [ {label: value} per series ]} of a /metrics text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.setdefault(m.group(1), []).append(labels)
    return out


def live_metrics(target, tenant):
    """/metrics once the ERP check of `tenant` shows on it (an ERP write was
    made), with a /readyz answered before."""
    deadline = time.monotonic() + WAIT_S
    while True:
        requests.get(target.base_url + "/readyz", timeout=HTTP_TIMEOUT_S)
        text = requests.get(target.base_url + "/metrics", timeout=HTTP_TIMEOUT_S).text
        found = series(text)
        if any(s.get("tenant") == tenant for s in found.get("trellis_erp_invariant_ok", [])):
            return found
        assert time.monotonic() < deadline, "the ERP checks never showed on /metrics"
        time.sleep(0.25)


def test_promtool_accepts_the_rules():
    run = promtool("check", "rules", "trellis-alerts.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(rules())} rules found" in run.stdout, run.stdout


def test_the_rules_unit_tests_pass():
    run = promtool("test", "rules", "trellis-alerts.test.yml")
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_rule_has_a_severity_and_a_summary():
    for r in rules():
        assert r["labels"]["severity"] in ("critical", "warning", "info"), r["alert"]
        assert r["annotations"]["summary"], r["alert"]


def test_every_series_and_label_the_rules_use_is_on_metrics(trellis):
    # a server of its own, on its own database and queues, whose ERP check
    # runs a second after a write rather than after the default minute
    proc = trellis.start("serve", env=trellis.env(erp_settle_after_ms=1000))
    proc.wait_ready()
    owner = signup(proc)
    receive(proc, owner, make_product(proc, owner), make_warehouse(proc, owner), 3, 250)
    live = live_metrics(proc, owner.tenant_id)
    used_by = set()
    for r in rules():
        expr = r["expr"]
        for labels in BY.findall(expr):
            used_by |= {x.strip() for x in labels.split(",") if x.strip()}
        for name, matchers in SELECTOR.findall(expr):
            assert name in live, f"{r['alert']}: {name} is not on /metrics"
            for label, op, value in MATCHER.findall(matchers):
                if label in NOT_FROM_THE_SERVER:
                    continue
                values = {s.get(label) for s in live[name]}
                assert values != {None}, f"{r['alert']}: {name} has no label {label}"
                if op == "=" and label not in TRAFFIC_VALUES:
                    assert value in values, f"{r['alert']}: {name}{{{label}}} is never {value!r}"
    labels_on_metrics = {k for rows in live.values() for s in rows for k in s}
    missing = used_by - NOT_FROM_THE_SERVER - labels_on_metrics
    assert not missing, f"the rules group by labels no series has: {missing}"
