"""The systemd units in ops/systemd: systemd's own parser accepts them
(ops/systemd/verify.sh: `systemd-analyze verify` and an offline security
rating), and each role's unit, run as systemd would run it - its
ExecStart, its Environment lines with the instance name filled in, the
configuration example as its --config - starts a process that serves its
role and not the others, and stops cleanly on the unit's KillSignal."""

import os
import re
import shutil
import signal
import subprocess

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import HTTP_TIMEOUT_S, REPO_ROOT, free_port

UNITS = os.path.join(REPO_ROOT, "ops", "systemd")
ROLE_UNITS = {"api": "trellis-api@.service", "ws": "trellis-ws@.service",
              "worker": "trellis-worker@.service"}
INSTALLED_BIN = "/opt/trellis/trellis"
INSTALLED_CONF = "/etc/trellis/trellis.conf"


def unit(name):
    """[(section, key, value)] of a unit file, in order (keys repeat)."""
    out, section = [], None
    with open(os.path.join(UNITS, name)) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            m = re.fullmatch(r"\[(\w+)\]", line)
            if m:
                section = m.group(1)
                continue
            key, _, value = line.partition("=")
            out.append((section, key.strip(), value.strip()))
    return out


def values(entries, key):
    return [v for s, k, v in entries if s == "Service" and k == key]


def test_systemd_accepts_the_units(stack):
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing (ops/deps.sh test)"
    run = subprocess.run(["bash", os.path.join(UNITS, "verify.sh"), stack.server_bin],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "verify: units ok" in run.stdout


def test_every_role_unit_is_hardened_alike_and_reads_the_shared_environment():
    for role, name in ROLE_UNITS.items():
        entries = unit(name)
        assert values(entries, "EnvironmentFile") == ["/etc/trellis/trellis.env"], name
        assert values(entries, "User") == ["trellis"], name
        for key, want in (("NoNewPrivileges", "true"), ("ProtectSystem", "strict"),
                          ("ProtectHome", "true"), ("PrivateTmp", "true"),
                          ("RestartPreventExitStatus", "2"), ("CapabilityBoundingSet", "")):
            assert values(entries, key) == [want], (name, key)
        assert f"TRELLIS_ROLES={role}" in values(entries, "Environment"), name


def test_the_environment_example_names_only_keys_the_binary_knows(stack):
    example = subprocess.run([stack.server_bin, "config-example"], capture_output=True,
                             text=True, timeout=60).stdout
    keys = set(re.findall(r"^([a-z_]+) =", example, re.M))
    with open(os.path.join(UNITS, "trellis.env.example")) as f:
        names = re.findall(r"^TRELLIS_([A-Z_]+)=", f.read(), re.M)
    assert names, "no TRELLIS_ variables in trellis.env.example"
    for name in names:
        assert name.lower() in keys, f"TRELLIS_{name} is no configuration key"


def start_unit(trellis, stack, name, tmp_path):
    """Runs the unit's ExecStart as systemd would, with the binary under
    test in place of /opt/trellis/trellis and the configuration example in
    place of /etc/trellis/trellis.conf; the instance name is a free port.
    The shared EnvironmentFile is the test stack's environment."""
    port = free_port()
    entries = unit(name)
    conf = tmp_path / f"{name}.conf"
    shutil.copy(os.path.join(REPO_ROOT, "config", "trellis.conf.example"), conf)
    env = stack.server_env()
    env.pop("TRELLIS_PORT", None)
    for line in values(entries, "Environment"):
        key, _, value = line.partition("=")
        env[key] = value.replace("%i", str(port))
    (exec_start,) = values(entries, "ExecStart")
    argv = exec_start.replace("%i", str(port)).split()
    assert argv[0] == INSTALLED_BIN and INSTALLED_CONF in argv, exec_start
    args = [str(conf) if a == INSTALLED_CONF else a for a in argv[1:]]
    assert int(env["TRELLIS_PORT"]) == port, "the instance name is not the port"
    proc = trellis.start(*args, env=env, port=port)
    proc.wait_ready()
    return proc


def serves_api(proc, account):
    r = requests.get(proc.url("/v1/me"), headers=account.headers, timeout=HTTP_TIMEOUT_S)
    if r.status_code == 200:
        return True
    assert r.status_code == 503 and "does not serve the API" in r.text, r.text
    return False


def serves_websockets(proc):
    try:
        with connect(proc.base_url.replace("http://", "ws://") + "/v1/ws", open_timeout=20):
            return True
    except InvalidStatus as e:
        assert e.response.status_code == 503, e
        return False


@pytest.mark.parametrize("role", sorted(ROLE_UNITS))
def test_a_role_unit_starts_a_process_serving_that_role(stack, trellis, tmp_path, account,
                                                       role):
    name = ROLE_UNITS[role]
    proc = start_unit(trellis, stack, name, tmp_path)
    assert serves_api(proc, account) == (role == "api")
    assert serves_websockets(proc) == (role == "ws")
    r = requests.get(proc.url("/metrics"), timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200 and "trellis_http_requests_total" in r.text
    (kill_signal,) = values(unit(name), "KillSignal")
    (stop_timeout,) = values(unit(name), "TimeoutStopSec")
    proc.signal(getattr(signal, kill_signal))
    assert proc.wait_exit(int(stop_timeout)) == 0, proc.output_tail()
