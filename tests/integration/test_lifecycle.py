"""Process lifecycle: configuration errors at start-up, config file versus
environment, graceful shutdown on SIGTERM/SIGINT and data surviving a restart.

Every test that needs a server starts its own trellis process on a free port
with its own database (the session's FerretDB and Redis are shared) and kills
it in a `finally` block."""

import json
import os
import re
import signal
import socket
import time
import uuid

import pytest
import requests

from conftest import DEFAULT_PASSWORD, REPO_ROOT, free_port, port_open, sanitizer_hits

INVALID_CONFIG_PREFIX = "trellis: invalid configuration:"
CONFIG_ERROR_WITHIN_S = 15.0   # an invalid configuration is reported (ASan start-up included) this fast
PROMPT_EXIT_S = 5.0            # an idle server exits this fast after SIGINT/SIGTERM
REFUSE_WITHIN_S = 2.0          # after SIGTERM, new connections are refused this fast
SHUTDOWN_GRACE_S = 10          # shutdown_grace the graceful-shutdown test runs with


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def assert_clean(text, what="trellis"):
    hits = sanitizer_hits(text)
    assert not hits, f"{what} output contains sanitizer report {hits}:\n{text[-3000:]}"


def assert_invalid_configuration(run, *mentions):
    """`run` exited 2 with exactly one stderr line, the invalid-configuration
    line, which mentions every string in `mentions` (case-insensitive)."""
    assert_clean(run.output)
    assert run.returncode == 2, f"expected exit 2 for an invalid configuration: {run!r}"
    lines = run.stderr_lines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}: {run!r}"
    line = lines[0]
    assert line.startswith(INVALID_CONFIG_PREFIX), f"stderr line does not start with {INVALID_CONFIG_PREFIX!r}: {line!r}"
    for m in mentions:
        assert m.lower() in line.lower(), f"stderr line does not mention {m!r}: {line!r}"
    return line


def example_config(trellis):
    run = trellis.run("config-example", env=trellis.bare_env(), timeout=CONFIG_ERROR_WITHIN_S)
    assert run.returncode == 0, run
    assert_clean(run.output)
    return run.stdout


def example_value(text, key):
    m = re.search(r"^\s*" + re.escape(key) + r"\s*=\s*(.*?)\s*$", text, re.M)
    assert m, f"config-example has no {key} line:\n{text}"
    return m.group(1)


def write_config(path, values):
    with open(path, "w") as f:
        f.write("# written by test_lifecycle.py\n")
        for k, v in values.items():
            f.write(f"{k} = {v}\n")
    return path


def migrated_env(trellis, **overrides):
    """Environment for a private server whose fresh database is migrated."""
    env = trellis.env(**overrides)
    run = trellis.run("migrate", env=env)
    assert_clean(run.output, "trellis migrate")
    assert run.returncode == 0, run
    return env


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def still_open(sock, wait=0.2):
    """True if the peer neither closed nor sent anything within `wait` seconds."""
    sock.settimeout(wait)
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except socket.timeout:
        return True
    except OSError:
        return False
    return False if not data else f"unexpected data {data!r}"


def stop_and_check_exit(server, sig=signal.SIGTERM, within=PROMPT_EXIT_S):
    server.signal(sig)
    code = server.wait_exit(within)
    assert code is not None, f"server still running {within}s after {sig.name}:\n{server.output_tail()}"
    assert code == 0, f"server exited {code} after {sig.name}:\n{server.output_tail()}"
    assert_clean(server.output(), "server")


# ---------------------------------------------------------------------------
# invalid configuration
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["0", "70000", "abc"])
def test_invalid_port_exits_2_with_one_line_naming_port(stack, trellis, port):
    env = trellis.env()
    env["TRELLIS_PORT"] = port
    run = trellis.run("serve", env=env, timeout=CONFIG_ERROR_WITHIN_S)
    assert_invalid_configuration(run, "port")


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_config_file_exits_2_naming_the_file(stack, trellis, kind):
    if kind == "missing":
        path = os.path.join(trellis.workdir, "no-such-trellis.conf")
    else:
        path = os.path.join(trellis.workdir, "a-directory.conf")
        os.mkdir(path)
    run = trellis.run("serve", "--config", path, env=trellis.env(), timeout=CONFIG_ERROR_WITHIN_S)
    assert_invalid_configuration(run, path)


def test_config_file_with_unknown_key_exits_2(stack, trellis):
    path = write_config(os.path.join(trellis.workdir, "unknown-key.conf"),
                        {"log_level": "info", "lisen_port": "9999"})
    run = trellis.run("serve", "--config", path, env=trellis.env(), timeout=CONFIG_ERROR_WITHIN_S)
    assert_invalid_configuration(run, "lisen_port")


@pytest.mark.parametrize("uri", ["not-a-uri", "mongodb://", "http://127.0.0.1:27017/trellis"])
def test_malformed_mongo_uri_exits_2(stack, trellis, uri):
    env = trellis.env()
    env["TRELLIS_MONGO_URI"] = uri
    run = trellis.run("serve", env=env, timeout=CONFIG_ERROR_WITHIN_S)
    assert_invalid_configuration(run, "mongo")


@pytest.mark.parametrize("url", ["not-a-url", "redis://127.0.0.1:notaport/0", "http://127.0.0.1:6379/0"])
def test_malformed_redis_url_exits_2(stack, trellis, url):
    env = trellis.env()
    env["TRELLIS_REDIS_URL"] = url
    run = trellis.run("serve", env=env, timeout=CONFIG_ERROR_WITHIN_S)
    assert_invalid_configuration(run, "redis")


def test_production_refuses_example_secret_from_env_without_echoing_it(stack, trellis):
    secret = example_value(example_config(trellis), "jwt_secret")
    env = trellis.env(env="production", jwt_secret=secret)
    run = trellis.run("serve", env=env, timeout=CONFIG_ERROR_WITHIN_S)
    assert secret not in run.output, f"the secret value appears in the output: {run!r}"
    assert_invalid_configuration(run, "jwt_secret")


def test_production_refuses_example_secret_from_config_file_without_echoing_it(stack, trellis):
    text = example_config(trellis)
    secret = example_value(text, "jwt_secret")
    path = os.path.join(trellis.workdir, "production-example.conf")
    with open(path, "w") as f:
        f.write(re.sub(r"^env\s*=.*$", "env = production", text, flags=re.M))
    # the environment supplies port/db/redis; the secret and env come from the file
    env = trellis.env(env=None, jwt_secret=None)
    run = trellis.run("serve", "--config", path, env=env, timeout=CONFIG_ERROR_WITHIN_S)
    assert secret not in run.output, f"the secret value appears in the output: {run!r}"
    assert_invalid_configuration(run, "jwt_secret")


# ---------------------------------------------------------------------------
# config file and environment
# ---------------------------------------------------------------------------

def file_config(trellis, stack, port):
    return {
        "host": "127.0.0.1",
        "port": port,
        "mongo_uri": trellis.mongo_uri(trellis.fresh_db("cfg")),
        "redis_url": stack.redis_url,
        "env": "development",
        "jwt_secret": stack.secret,
        "log_level": "info",
    }


def test_config_file_port_is_used(stack, trellis):
    file_port = free_port()
    path = write_config(os.path.join(trellis.workdir, "port-from-file.conf"),
                        file_config(trellis, stack, file_port))
    server = trellis.start("serve", "--config", path, env=trellis.bare_env(), port=file_port)
    try:
        r = server.wait_http("/healthz")
        assert r.json() == {"status": "ok"}
        stop_and_check_exit(server)
    finally:
        server.kill()


def test_env_var_overrides_config_file_port(stack, trellis):
    file_port, env_port = free_port(), free_port()
    while env_port == file_port:
        env_port = free_port()
    path = write_config(os.path.join(trellis.workdir, "port-overridden.conf"),
                        file_config(trellis, stack, file_port))
    env = trellis.bare_env()
    env["TRELLIS_PORT"] = str(env_port)
    server = trellis.start("serve", "--config", path, env=env)
    try:
        r = server.wait_http("/healthz")
        assert server.port == env_port
        assert r.json() == {"status": "ok"}
        assert not port_open(file_port), f"the config file's port {file_port} is open although TRELLIS_PORT overrides it"
        stop_and_check_exit(server)
    finally:
        server.kill()


# ---------------------------------------------------------------------------
# keys a module declares (tr_module.config)
# ---------------------------------------------------------------------------

# A key of each module that declares some, and one of the platform's.
MODULE_KEYS = {"identity": "signup_enabled", "webhooks": "webhook_timeout_ms"}
EXAMPLE_PATH = os.path.join(REPO_ROOT, "config", "trellis.conf.example")


def test_config_example_lists_module_keys_under_their_module(stack, trellis):
    text = example_config(trellis)
    last_platform_key = text.index("\nlog_level = ")
    for module, key in MODULE_KEYS.items():
        header = text.index(f"# ---- the {module} module ----")
        line = text.index(f"\n{key} = ")
        assert last_platform_key < header < line, f"{key} is not listed under the {module} module:\n{text}"
        later = [text.index(f"# ---- the {m} module ----") for m in MODULE_KEYS if m != module]
        assert not any(header < h < line for h in later), f"{key} is listed under another module"
    assert example_value(text, "signup_enabled") == "1"
    assert example_value(text, "webhook_timeout_ms") == "5000"


def test_checked_in_example_is_what_config_example_prints(stack, trellis):
    with open(EXAMPLE_PATH) as f:
        assert f.read() == example_config(trellis), (
            "config/trellis.conf.example is stale: regenerate it with `build/trellis config-example`")


@pytest.mark.parametrize("value", ["99", "60001", "soon"])
def test_module_key_out_of_range_exits_2_naming_it(stack, trellis, value):
    env = trellis.env(webhook_timeout_ms=value)
    run = trellis.run("serve", env=env, timeout=CONFIG_ERROR_WITHIN_S)
    line = assert_invalid_configuration(run, "TRELLIS_WEBHOOK_TIMEOUT_MS", "webhook_timeout_ms",
                                        f'"{value}"')
    assert "from 100 to 60000" in line, line


def test_module_key_from_config_file_is_used(stack, trellis):
    port = free_port()
    values = file_config(trellis, stack, port)
    values["signup_enabled"] = "0"
    path = write_config(os.path.join(trellis.workdir, "signup-off.conf"), values)
    run = trellis.run("migrate", "--config", path, env=trellis.bare_env())
    assert run.returncode == 0, run
    server = trellis.start("serve", "--config", path, env=trellis.bare_env(), port=port)
    try:
        server.wait_ready()
        r = requests.post(server.url("/v1/signup"), timeout=10,
                          json={"tenant_name": "Off Ltd", "tenant_slug": f"off-{uuid.uuid4().hex[:8]}",
                                "email": f"off-{uuid.uuid4().hex[:8]}@example.com",
                                "password": DEFAULT_PASSWORD, "name": "Off Owner"})
        assert r.status_code == 403, r.text
        assert r.json()["type"].endswith("/signup-disabled"), r.text
        stop_and_check_exit(server)
    finally:
        server.kill()


# ---------------------------------------------------------------------------
# shutdown
# ---------------------------------------------------------------------------

def test_sigterm_finishes_in_flight_request_and_refuses_new_connections(stack, trellis):
    env = migrated_env(trellis, shutdown_grace=SHUTDOWN_GRACE_S)
    db = env["TRELLIS_MONGO_URI"].rsplit("/", 1)[1]
    server = trellis.start("serve", env=env)
    sock = None
    try:
        server.wait_ready()
        principal = stack.principal()
        name = "graceful-" + uuid.uuid4().hex[:10]
        body = json.dumps({"name": name, "color": "#a1b2c3"}).encode()
        half = len(body) // 2
        head = (f"POST /v1/tags HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\n"
                f"Authorization: Bearer {principal.token}\r\n"
                f"Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"\r\n").encode()
        sock = connect(server.port)
        sock.sendall(head + body[:half])
        time.sleep(0.5)  # let the server read the head and the first half
        assert still_open(sock) is True, "server closed or answered a request whose body is incomplete"

        server.signal(signal.SIGTERM)
        t0 = time.monotonic()

        refused_after = None
        attempts = []
        while time.monotonic() - t0 <= REFUSE_WITHIN_S:
            try:
                probe = socket.create_connection(("127.0.0.1", server.port), timeout=0.5)
            except ConnectionRefusedError:
                refused_after = time.monotonic() - t0
                break
            except OSError as e:
                attempts.append(repr(e))
            else:
                probe.close()
                attempts.append("accepted")
            time.sleep(0.05)
        assert refused_after is not None, (
            f"new connections were not refused within {REFUSE_WITHIN_S}s of SIGTERM "
            f"(attempts: {attempts[-5:]}); server alive={server.alive()}")

        assert server.alive(), (f"server exited ({server.proc.returncode}) with a request in flight:\n"
                                f"{server.output_tail()}")
        state = still_open(sock)
        assert state is True, f"the in-flight connection did not stay open after SIGTERM ({state})"

        sock.sendall(body[half:])
        resp = stack.read_response(sock, timeout=SHUTDOWN_GRACE_S)
        assert resp is not None, "server closed the in-flight connection without answering"
        assert resp.status == 201, resp
        assert resp.json()["name"] == name, resp
        sock.close()
        sock = None

        remaining = SHUTDOWN_GRACE_S - (time.monotonic() - t0) + 1.0
        code = server.wait_exit(max(remaining, 1.0))
        assert code is not None, (f"server still running {SHUTDOWN_GRACE_S}s (shutdown_grace) after SIGTERM:\n"
                                  f"{server.output_tail()}")
        assert code == 0, f"server exited {code} after SIGTERM:\n{server.output_tail()}"
        assert_clean(server.output(), "server")
        assert trellis.db(db).tags.count_documents({"name": name}) == 1, "the answered tag was not stored"
    finally:
        if sock is not None:
            sock.close()
        server.kill()


def test_idle_server_exits_0_promptly_on_sigint(stack, trellis):
    server = trellis.start("serve", env=migrated_env(trellis))
    try:
        server.wait_ready()
        t0 = time.monotonic()
        stop_and_check_exit(server, signal.SIGINT, PROMPT_EXIT_S)
        assert time.monotonic() - t0 <= PROMPT_EXIT_S
        assert not port_open(server.port), "port still open after the server exited"
    finally:
        server.kill()


# ---------------------------------------------------------------------------
# restart
# ---------------------------------------------------------------------------

def test_data_written_before_restart_is_readable_after_it(stack, trellis):
    env = migrated_env(trellis)
    principal = stack.principal()
    first = trellis.start("serve", env=env)
    try:
        first.wait_ready()
        r = requests.post(first.url("/v1/tags"), json={"name": "survivor", "color": "#00ff7f"},
                          headers=principal.headers, timeout=10)
        assert r.status_code == 201, r.text
        created = r.json()
        stop_and_check_exit(first, signal.SIGTERM, 15)
    finally:
        first.kill()

    env = dict(env, TRELLIS_PORT=str(free_port()))
    second = trellis.start("serve", env=env)
    try:
        second.wait_ready()
        r = requests.get(second.url(f"/v1/tags/{created['id']}"), headers=principal.headers, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == created
        r = requests.get(second.url("/v1/tags"), headers=principal.headers, timeout=10)
        assert r.status_code == 200, r.text
        assert [t["id"] for t in r.json()["items"]] == [created["id"]]
        stop_and_check_exit(second, signal.SIGTERM, 15)
    finally:
        second.kill()
