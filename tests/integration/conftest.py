"""Black-box integration fixtures for Trellis.

A session-scoped `stack` starts, in a fresh temporary directory, a private
redis-server, a private PostgreSQL 15 cluster (ops/pg.sh, Unix socket only),
FerretDB on it (PostgreSQL backend) and the server binary
(AddressSanitizer build by default) on free loopback ports.  Tests talk to the
server over HTTP only and look at MongoDB / Redis directly to check effects.
A sanitizer report (ASan, UBSan, LSan, TSan) in the output of the session's
server or of a process run through the `trellis` fixture fails the test.

Environment knobs:
  TRELLIS_BIN           server binary (default <repo>/build/asan/trellis;
                        `make tsan` sets <repo>/build/tsan/trellis)
  TRELLIS_DEMO_BIN      the demo tool, tools/demo (default: trellis-demo in the
                        directory of the server binary, built by the same target)
  TRELLIS_FERRETDB_BIN  FerretDB binary (default ~/go/bin/ferretdb)
  TRELLIS_REDIS_BIN     redis-server binary (default: redis-server on PATH)
  TRELLIS_IT_REDIS_CLUSTER=1
                        Redis is a local Redis Cluster of three masters
                        (tests/redis/cluster.sh) and the server runs with
                        redis_mode=cluster; tests that start or stop a Redis of
                        their own skip themselves (`make test-redis-cluster`)
  KEEP_TMP=1            keep the temporary directory (logs, data) afterwards
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time

import jwt
import pymongo
import pytest
import redis as redis_lib
import requests
from bson import ObjectId

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

JWT_ISSUER = "trellis"
JWT_AUDIENCE = "trellis-api"
HEADER_TIMEOUT_S = 2
IDLE_TIMEOUT_S = 5
BODY_LIMIT = 1048576
DB_NAME = "trellis_test"
REDIS_CLUSTER = os.environ.get("TRELLIS_IT_REDIS_CLUSTER") == "1"
CLUSTER_SCRIPT = os.path.join(REPO_ROOT, "tests", "redis", "cluster.sh")

PROBLEM_TYPE_PREFIX = "https://trellis.dev/errors/"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "ThreadSanitizer")

READY_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 10.0


# ---------------------------------------------------------------------------
# small utilities
# ---------------------------------------------------------------------------

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path, lines=80):
    try:
        with open(path, "r", errors="replace") as f:
            content = f.read().splitlines()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(content[-lines:])


def read_text(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def stop_process(proc, timeout=10.0, sig=signal.SIGTERM):
    """Signal a process we started and wait for it; SIGKILL if it lingers.

    Returns the exit code, or None if the process had to be killed."""
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return None


def random_secret(n=48):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def b64url(data):
    import base64

    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(obj):
    return b64url(json.dumps(obj, separators=(",", ":")))


# ---------------------------------------------------------------------------
# raw HTTP over a socket (for requests that `requests` would not send as-is)
# ---------------------------------------------------------------------------

class RawResponse:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case names -> value (last one wins)
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"RawResponse({self.status} {self.reason!r}, headers={self.headers!r}, body={self.body[:300]!r})"


def _recv_some(sock):
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def read_raw_response(sock, timeout=HTTP_TIMEOUT_S):
    """Read one HTTP/1.1 response from `sock`.

    Returns None when the peer closed (or reset) the connection before sending
    a single byte.  Raises socket.timeout when nothing complete arrives in time."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no complete response head in time; got %r" % buf[:200])
        sock.settimeout(remaining)
        chunk = _recv_some(sock)
        if not chunk:
            if not buf:
                return None
            raise ConnectionError("connection closed inside the response head: %r" % buf[:300])
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    m = re.match(r"HTTP/\d\.\d\s+(\d{3})\s*(.*)", lines[0])
    if not m:
        raise ValueError("not an HTTP status line: %r" % lines[0])
    status, reason = int(m.group(1)), m.group(2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()

    def need(n):
        nonlocal rest
        while len(rest) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("response body incomplete")
            sock.settimeout(remaining)
            chunk = _recv_some(sock)
            if not chunk:
                raise ConnectionError("connection closed inside the response body")
            rest += chunk

    if status in (204, 304) or 100 <= status < 200:
        body = b""
    elif "content-length" in headers:
        n = int(headers["content-length"])
        need(n)
        body = rest[:n]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                need(len(rest) + 1)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            need(size + 2)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                break
    else:
        # read to EOF
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            chunk = _recv_some(sock)
            if not chunk:
                break
            rest += chunk
        body = rest
    return RawResponse(status, reason, headers, body)


def wait_closed(sock, timeout):
    """Wait until the peer closes `sock` (EOF or reset), discarding any data it
    sends first (e.g. a 408 response).  Returns seconds waited, or None if the
    connection was still open after `timeout`."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        if not chunk:
            return time.monotonic() - start


# ---------------------------------------------------------------------------
# principals (tenant + user + live session + signed token)
# ---------------------------------------------------------------------------

class Principal:
    def __init__(self, tenant_id, user_id, session_id, token):
        self.tenant_id = tenant_id
        self.user_id = user_id
        self.session_id = session_id
        self.token = token
        self.headers = {"Authorization": "Bearer " + token}

    @property
    def tenant_oid(self):
        return ObjectId(self.tenant_id)

    def __repr__(self):
        return f"Principal(tenant={self.tenant_id}, user={self.user_id}, sid={self.session_id})"


# ---------------------------------------------------------------------------
# the stack
# ---------------------------------------------------------------------------

class Stack:
    def __init__(self):
        self.tmpdir = tempfile.mkdtemp(prefix="trellis-it-")
        self.server_bin = os.environ.get("TRELLIS_BIN") or os.path.join(REPO_ROOT, "build", "asan", "trellis")
        # the tools are built beside the server binary, with the same sanitizer
        self.demo_bin = os.environ.get("TRELLIS_DEMO_BIN") or os.path.join(
            os.path.dirname(self.server_bin), "trellis-demo")
        self.ferretdb_bin = os.environ.get("TRELLIS_FERRETDB_BIN") or os.path.expanduser("~/go/bin/ferretdb")
        self.redis_bin = os.environ.get("TRELLIS_REDIS_BIN") or shutil.which("redis-server") or "/usr/bin/redis-server"

        self.redis_ports = [free_port()]
        while REDIS_CLUSTER and len(self.redis_ports) < 3:
            p = free_port()
            if p not in self.redis_ports:
                self.redis_ports.append(p)
        self.redis_port = self.redis_ports[0]
        self.mongo_port = free_port()
        self.port = free_port()
        while len({*self.redis_ports, self.mongo_port, self.port}) < len(self.redis_ports) + 2:
            self.port = free_port()
            self.mongo_port = free_port()
        self.secret = random_secret(48)

        self.redis_dir = os.path.join(self.tmpdir, "redis")
        self.pg_dir = os.path.join(self.tmpdir, "pg")
        self.ferret_dir = os.path.join(self.tmpdir, "ferretdb")
        os.makedirs(self.redis_dir)
        os.makedirs(self.ferret_dir)
        self.redis_log_path = os.path.join(self.tmpdir, "redis.log")
        self.ferret_log_path = os.path.join(self.tmpdir, "ferretdb.log")
        self.server_log_path = os.path.join(self.tmpdir, "server.log")
        self.migrate_log_path = os.path.join(self.tmpdir, "migrate.log")

        self.redis_proc = None
        self.pg_running = False
        self.ferret_proc = None
        self.server_proc = None
        self._server_log_file = None

        self.base_url = f"http://127.0.0.1:{self.port}"
        self.mongo_uri = f"mongodb://127.0.0.1:{self.mongo_port}/{DB_NAME}"
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"

        self.mongo_client = None
        self.mongo = None
        self.redis = None

        # the configuration the server runs with, for tests to use
        self.body_limit = BODY_LIMIT
        self.header_timeout = HEADER_TIMEOUT_S
        self.idle_timeout = IDLE_TIMEOUT_S
        self.jwt_issuer = JWT_ISSUER
        self.jwt_audience = JWT_AUDIENCE

    # raw-socket helpers, reachable from tests through the fixture
    read_response = staticmethod(read_raw_response)
    wait_closed = staticmethod(wait_closed)

    # -- environment for the server -------------------------------------
    def server_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRELLIS_")}
        env.update({
            "TRELLIS_PORT": str(self.port),
            "TRELLIS_HOST": "127.0.0.1",
            "TRELLIS_MONGO_URI": self.mongo_uri,
            "TRELLIS_REDIS_URL": self.redis_url,
            "TRELLIS_REDIS_MODE": "cluster" if REDIS_CLUSTER else "single",
            "TRELLIS_POSTGRESQL_URI": self.pg_libpq(),
            "TRELLIS_JWT_SECRET": self.secret,
            "TRELLIS_ENV": "development",
            "TRELLIS_HEADER_TIMEOUT": str(HEADER_TIMEOUT_S),
            "TRELLIS_IDLE_TIMEOUT": str(IDLE_TIMEOUT_S),
            # as ops/run.sh and the systemd unit: no shared-memory counters (see there)
            "MONGOC_DISABLE_SHM": "1",
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        })
        return env

    # -- redis -----------------------------------------------------------
    def start_redis_cluster(self):
        """Three masters on self.redis_ports, all slots served."""
        r = subprocess.run(["bash", CLUSTER_SCRIPT, "start", self.redis_dir,
                            *map(str, self.redis_ports)],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "TRELLIS_REDIS_BIN": self.redis_bin})
        if r.returncode != 0:
            raise RuntimeError("the Redis Cluster did not start: " + (r.stderr or r.stdout))
        self.redis = redis_lib.RedisCluster(host="127.0.0.1", port=self.redis_port,
                                            decode_responses=True, socket_timeout=5,
                                            socket_connect_timeout=5)
        self.redis.ping(target_nodes=redis_lib.RedisCluster.ALL_NODES)

    def stop_redis_cluster(self):
        subprocess.run(["bash", CLUSTER_SCRIPT, "stop", self.redis_dir],
                       capture_output=True, text=True, timeout=60)

    def start_redis(self, timeout=30.0):
        if REDIS_CLUSTER:
            return self.start_redis_cluster()
        assert self.redis_proc is None or self.redis_proc.poll() is not None, "redis already running"
        log = open(self.redis_log_path, "ab")
        try:
            self.redis_proc = subprocess.Popen(
                [self.redis_bin, "--port", str(self.redis_port), "--bind", "127.0.0.1",
                 "--dir", self.redis_dir, "--appendonly", "yes", "--save", "",
                 "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.redis_dir,
                start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.redis_proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s:\n%s" % (
                    self.redis_proc.returncode, tail(self.redis_log_path)))
            try:
                probe = redis_lib.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=1,
                                        socket_connect_timeout=1)
                try:
                    if probe.ping():
                        break
                finally:
                    probe.close()
            except redis_lib.RedisError as e:
                last = e
            time.sleep(0.1)
        else:
            raise RuntimeError(f"redis did not answer PING within {timeout}s: {last}")
        if self.redis is None:
            self.redis = redis_lib.Redis(host="127.0.0.1", port=self.redis_port, db=0,
                                         decode_responses=True, socket_timeout=5,
                                         socket_connect_timeout=5)
        else:
            # drop pooled connections to the previous redis process
            self.redis.connection_pool.disconnect()
        self.redis.ping()

    def stop_redis(self, timeout=15.0):
        assert not REDIS_CLUSTER, "a test that stops Redis cannot run against the cluster"
        if self.redis is not None:
            self.redis.connection_pool.disconnect()
        stop_process(self.redis_proc, timeout=timeout)
        deadline = time.monotonic() + 10
        while port_open(self.redis_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not port_open(self.redis_port), "redis port still open after stopping redis"

    # -- postgresql (under FerretDB) --------------------------------------
    def _pg(self, *args, timeout=120.0):
        return subprocess.run(["bash", os.path.join(REPO_ROOT, "ops", "pg.sh"), *args],
                              capture_output=True, text=True, timeout=timeout)

    def pg_libpq(self):
        """libpq connection string of the cluster (what the server gets)."""
        return f"host={self.pg_dir}/socket user=postgres dbname=ferretdb"

    def pg_url(self):
        return f"postgres:///ferretdb?host={self.pg_dir}/socket&user=postgres"

    def start_postgres(self):
        # the cluster's owner (postgres, when tests run as root) must reach it
        os.chmod(self.tmpdir, 0o755)
        r = self._pg("start", self.pg_dir, "--fast")
        if r.returncode != 0:
            raise RuntimeError("PostgreSQL did not start: " + (r.stderr.strip() or r.stdout.strip()))
        self.pg_running = True

    def stop_postgres(self):
        self._pg("stop", self.pg_dir)
        self.pg_running = False

    def psql(self, sql):
        """Runs SQL on the cluster as its owner; returns stdout (tuples only)."""
        cmd = ["/usr/lib/postgresql/15/bin/psql", "-h", f"{self.pg_dir}/socket", "-U", "postgres",
               "-d", "ferretdb", "-Atqc", sql]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout

    # -- ferretdb --------------------------------------------------------
    def start_ferretdb(self, timeout=60.0):
        assert self.ferret_proc is None or self.ferret_proc.poll() is not None, "ferretdb already running"
        log = open(self.ferret_log_path, "ab")
        try:
            self.ferret_proc = subprocess.Popen(
                [self.ferretdb_bin, "--handler=postgresql",
                 f"--postgresql-url={self.pg_url()}",
                 f"--listen-addr=127.0.0.1:{self.mongo_port}",
                 "--debug-addr=-", "--telemetry=disable",
                 f"--state-dir={self.ferret_dir}", "--log-level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.ferret_dir,
                start_new_session=True)
        finally:
            log.close()
        if self.mongo_client is None:
            self.mongo_client = pymongo.MongoClient(
                f"mongodb://127.0.0.1:{self.mongo_port}/", directConnection=True,
                serverSelectionTimeoutMS=2000, connectTimeoutMS=2000, socketTimeoutMS=10000)
            self.mongo = self.mongo_client[DB_NAME]
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.ferret_proc.poll() is not None:
                raise RuntimeError("ferretdb exited with %s:\n%s" % (
                    self.ferret_proc.returncode, tail(self.ferret_log_path)))
            try:
                self.mongo_client.admin.command("ping")
                return
            except pymongo.errors.PyMongoError as e:
                last = e
                time.sleep(0.2)
        raise RuntimeError(f"ferretdb did not answer ping within {timeout}s: {last}")

    def stop_ferretdb(self, timeout=15.0):
        stop_process(self.ferret_proc, timeout=timeout)
        deadline = time.monotonic() + 10
        while port_open(self.mongo_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not port_open(self.mongo_port), "ferretdb port still open after stopping it"

    # -- server ----------------------------------------------------------
    def run_migrate(self, timeout=120.0):
        with open(self.migrate_log_path, "wb") as log:
            proc = subprocess.run([self.server_bin, "migrate"], cwd=REPO_ROOT, env=self.server_env(),
                                  stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        text = read_text(self.migrate_log_path)
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise RuntimeError(f"`trellis migrate` reported {marker!r}:\n{tail(self.migrate_log_path)}")
        if proc.returncode != 0:
            raise RuntimeError(f"`trellis migrate` exited {proc.returncode}:\n{tail(self.migrate_log_path)}")

    def start_server(self):
        if not os.path.exists(self.server_bin):
            raise RuntimeError(f"server binary {self.server_bin} does not exist (make build-asan)")
        self._server_log_file = open(self.server_log_path, "ab")
        self.server_proc = subprocess.Popen(
            [self.server_bin, "serve"], cwd=REPO_ROOT, env=self.server_env(),
            stdin=subprocess.DEVNULL, stdout=self._server_log_file, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.wait_ready(READY_TIMEOUT_S)

    def server_alive(self):
        return self.server_proc is not None and self.server_proc.poll() is None

    def server_log(self):
        return read_text(self.server_log_path)

    def server_log_tail(self, lines=80):
        return tail(self.server_log_path, lines)

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """Poll /readyz until it answers 200; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.server_alive():
                raise RuntimeError("server exited with %s while waiting for /readyz:\n%s" % (
                    self.server_proc.returncode if self.server_proc else None, self.server_log_tail()))
            try:
                r = requests.get(self.base_url + "/readyz", timeout=5)
                last = f"{r.status_code} {r.text[:300]}"
                if r.status_code == 200:
                    return r
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.2)
        raise RuntimeError(f"/readyz not 200 within {timeout}s (last: {last}):\n{self.server_log_tail()}")

    # -- HTTP helpers ----------------------------------------------------
    def url(self, path):
        return self.base_url + path

    def request(self, method, path, **kw):
        kw.setdefault("timeout", HTTP_TIMEOUT_S)
        kw.setdefault("allow_redirects", False)
        return requests.request(method, self.base_url + path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def connect(self, timeout=HTTP_TIMEOUT_S):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def raw_request(self, data, timeout=HTTP_TIMEOUT_S):
        """Send raw bytes on a fresh connection and read one response
        (None if the server closed without answering)."""
        with self.connect(timeout) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return read_raw_response(s, timeout)

    # -- auth ------------------------------------------------------------
    def claims(self, tenant_id, user_id, session_id, **overrides):
        now = int(time.time())
        c = {"sub": user_id, "tid": tenant_id, "sid": session_id, "iat": now,
             "exp": now + 900, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE}
        for k, v in overrides.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def sign(self, claims, key=None, algorithm="HS256", headers=None):
        h = {"kid": "k1"}
        if headers:
            h.update(headers)
        return jwt.encode(claims, key if key is not None else self.secret, algorithm=algorithm, headers=h)

    def create_session(self, tenant_id, session_id, user_id, perms="system.tags.read system.tags.write"):
        # The shape the server's session store writes (server/identity/session.c):
        # uid, space-separated perms, and the /v1/me document.
        me = json.dumps({"user": {"id": user_id}, "tenant": {"id": tenant_id},
                         "permissions": perms.split()})
        self.redis.hset(f"t:{{{tenant_id}}}:sess:{session_id}",
                        mapping={"uid": user_id, "perms": perms, "me": me})

    def principal(self, tenant_id=None, create_session=True):
        tid = tenant_id or str(ObjectId())
        uid = str(ObjectId())
        sid = secrets.token_hex(16)
        if create_session:
            self.create_session(tid, sid, uid)
        token = self.sign(self.claims(tid, uid, sid))
        return Principal(tid, uid, sid, token)

    # -- teardown --------------------------------------------------------
    def shutdown(self):
        """Stop everything; return a list of failure messages (empty if clean)."""
        failures = []
        try:
            if self.server_proc is not None:
                if self.server_proc.poll() is not None:
                    failures.append(f"server had already exited with code {self.server_proc.returncode} "
                                    "before teardown")
                    code = self.server_proc.returncode
                else:
                    self.server_proc.send_signal(signal.SIGTERM)
                    try:
                        code = self.server_proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        failures.append("server did not exit within 15 s of SIGTERM; killed")
                        self.server_proc.kill()
                        self.server_proc.wait(timeout=10)
                        code = None
                if code is not None and code != 0:
                    failures.append(f"server exit code {code} (expected 0 after SIGTERM)")
                if self._server_log_file is not None:
                    self._server_log_file.close()
                text = self.server_log()
                for marker in SANITIZER_MARKERS:
                    if marker in text:
                        failures.append(f"server log contains {marker!r}")
        finally:
            try:
                if self.redis is not None:
                    self.redis.close()
                if self.mongo_client is not None:
                    self.mongo_client.close()
            except Exception:
                pass
            stop_process(self.redis_proc, timeout=10)
            if REDIS_CLUSTER:
                self.stop_redis_cluster()
            stop_process(self.ferret_proc, timeout=10)
            if self.pg_running:
                self.stop_postgres()
        return failures

    def remove_tmp(self):
        if os.environ.get("KEEP_TMP") == "1":
            print(f"\n[trellis-it] KEEP_TMP=1: kept {self.tmpdir}")
            return
        shutil.rmtree(self.tmpdir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack():
    st = Stack()
    startup_error = None
    try:
        st.start_redis()
        st.start_postgres()
        st.start_ferretdb()
        st.run_migrate()
        st.start_server()
    except BaseException as e:  # clean up even when startup fails
        startup_error = e
    if startup_error is not None:
        st.shutdown()
        log_tail = st.server_log_tail()
        st.remove_tmp()
        pytest.fail(f"could not start the test stack: {startup_error}\n--- server log tail ---\n{log_tail}",
                    pytrace=False)
    try:
        yield st
    finally:
        failures = st.shutdown()
        log_tail = st.server_log_tail(120)
        if failures:
            print("\n--- server log tail ---\n" + log_tail)
        st.remove_tmp()
        if failures:
            pytest.fail("server teardown check failed: " + "; ".join(failures)
                        + "\n--- server log tail ---\n" + log_tail, pytrace=False)


@pytest.fixture(autouse=True)
def _server_keeps_serving(stack):
    """After every test: the server process is alive and /healthz answers 200."""
    pid = stack.server_proc.pid
    yield
    assert stack.server_alive(), (
        f"server process died (exit {stack.server_proc.returncode}):\n{stack.server_log_tail()}")
    assert stack.server_proc.pid == pid
    last = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            r = requests.get(stack.base_url + "/healthz", timeout=5)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as e:
            last = repr(e)
        time.sleep(0.2)
    pytest.fail(f"server stopped serving /healthz after the test (last: {last})\n{stack.server_log_tail()}")


# ---------------------------------------------------------------------------
# assertion helpers as fixtures
# ---------------------------------------------------------------------------

def check_problem(resp, status, slug=None):
    """Assert `resp` is an RFC 9457 problem+json error with the given status (and slug).

    `status` may be an int or a collection of acceptable ints; when several are
    accepted and slug is None the slug must match the status actually given."""
    statuses = (status,) if isinstance(status, int) else tuple(status)
    code = resp.status_code if hasattr(resp, "status_code") else resp.status
    text = resp.text if hasattr(resp, "text") else resp.body.decode("utf-8", "replace")
    assert code in statuses, f"expected status {statuses}, got {code}: {text[:500]}"
    headers = resp.headers
    ctype = headers.get("Content-Type") if hasattr(resp, "status_code") else headers.get("content-type")
    assert ctype is not None and ctype.split(";")[0].strip().lower() == "application/problem+json", (
        f"expected Content-Type application/problem+json, got {ctype!r}: {text[:300]}")
    body = json.loads(text)
    assert isinstance(body, dict), f"problem body is not an object: {text[:300]}"
    default_slugs = {400: "malformed-request", 401: "unauthorized", 404: "not-found",
                     405: "method-not-allowed", 409: "conflict", 412: "version-mismatch",
                     413: "payload-too-large", 415: "unsupported-media-type", 422: "validation-failed",
                     429: "rate-limited", 503: "dependency-unavailable"}
    want_slug = slug or default_slugs.get(code)
    if want_slug is not None:
        assert body.get("type") == PROBLEM_TYPE_PREFIX + want_slug, (
            f"expected type {PROBLEM_TYPE_PREFIX + want_slug}, got {body.get('type')!r}")
    assert body.get("status") == code, f"problem status {body.get('status')!r} != HTTP status {code}"
    assert isinstance(body.get("title"), str) and body["title"], f"problem without title: {body}"
    assert isinstance(body.get("detail"), str), f"problem without detail: {body}"
    if "errors" in body:
        assert isinstance(body["errors"], list)
        for e in body["errors"]:
            assert isinstance(e, dict) and isinstance(e.get("field"), str) and isinstance(e.get("message"), str), body
    return body


@pytest.fixture(scope="session")
def problem():
    return check_problem


@pytest.fixture
def principal(stack):
    """A fresh tenant with one user and a live session."""
    return stack.principal()


# ---------------------------------------------------------------------------
# extra trellis processes (lifecycle and migration tests)
#
# These run the server binary beside the session's server, each with its own
# port and database, against the stack's FerretDB and Redis.
# ---------------------------------------------------------------------------

# SANITIZER_MARKERS plus the other headers the sanitizers print
ALL_SANITIZER_MARKERS = SANITIZER_MARKERS + (
    "AddressSanitizer", "UndefinedBehaviorSanitizer", "SUMMARY: ", "LeakSanitizer")


def sanitizer_hits(text):
    """The sanitizer markers found in `text` (empty list when clean)."""
    return [m for m in ALL_SANITIZER_MARKERS if m in text]


class TrellisRun:
    """Outcome of a one-shot `trellis ...` invocation (or of a tool's:
    `program` names the binary run)."""

    def __init__(self, args, returncode, stdout, stderr, elapsed, program="trellis"):
        self.program = program
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed

    @property
    def output(self):
        return self.stdout + self.stderr

    def stderr_lines(self):
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __repr__(self):
        outcome = "still running, killed" if self.returncode is None else self.returncode
        return (f"TrellisRun({' '.join([self.program] + self.args)!r} -> {outcome} "
                f"after {self.elapsed:.1f}s, "
                f"stdout={self.stdout[-1500:]!r}, stderr={self.stderr[-1500:]!r})")


class TrellisProcess:
    """A trellis process started in the background; output goes to a log file."""

    def __init__(self, stack, args, env, cwd, log_path, port=None):
        self.args = list(args)
        self.env = env
        self.log_path = log_path
        self.port = int(port or env.get("TRELLIS_PORT", "0") or 0)
        self.base_url = f"http://127.0.0.1:{self.port}"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [stack.server_bin] + self.args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def output(self):
        return read_text(self.log_path)

    def output_tail(self, lines=60):
        return tail(self.log_path, lines)

    def url(self, path):
        return self.base_url + path

    def wait_http(self, path="/healthz", timeout=READY_TIMEOUT_S):
        """Poll `path` until it answers 200; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("trellis exited with %s while waiting for %s:\n%s" % (
                    self.proc.returncode, path, self.output_tail()))
            try:
                r = requests.get(self.url(path), timeout=5)
                last = f"{r.status_code} {r.text[:300]}"
                if r.status_code == 200:
                    return r
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        raise RuntimeError(f"{path} not 200 within {timeout}s (last: {last}):\n{self.output_tail()}")

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        return self.wait_http("/readyz", timeout)

    def wait_exit(self, timeout):
        """Exit code, or None if still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self):
        """SIGKILL if still running (always safe to call, e.g. in `finally`)."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


class TrellisLauncher:
    """Builds environments for, runs and starts extra trellis processes.
    Everything started through it is killed when the owning fixture ends."""

    def __init__(self, stack):
        self.stack = stack
        self.started = []
        self.runs = []
        self.databases = []
        self.workdir = tempfile.mkdtemp(prefix="extra-", dir=stack.tmpdir)

    def fresh_db(self, prefix="x"):
        name = f"{prefix}_{secrets.token_hex(5)}"
        self.databases.append(name)
        return name

    def mongo_uri(self, db):
        return f"mongodb://127.0.0.1:{self.stack.mongo_port}/{db}"

    def db(self, name):
        return self.stack.mongo_client[name]

    def env(self, db=None, port=None, **overrides):
        """The session server's environment with its own database and port.
        Keyword overrides name TRELLIS_* keys in lower case without the
        prefix (port=..., migrations_dir=...); a value of None removes it."""
        env = self.stack.server_env()
        env["TRELLIS_MONGO_URI"] = self.mongo_uri(db or self.fresh_db())
        env["TRELLIS_PORT"] = str(port or free_port())
        for key, value in overrides.items():
            name = "TRELLIS_" + key.upper()
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        return env

    def bare_env(self):
        """The environment without any TRELLIS_* variable (sanitizer options kept)."""
        return {k: v for k, v in self.stack.server_env().items() if not k.startswith("TRELLIS_")}

    def run(self, *args, env, cwd=REPO_ROOT, timeout=120.0, binary=None, stdin=None):
        """Run `trellis *args` to completion, or the tool `binary`
        (stack.demo_bin) with them; `stdin` (bytes) is its standard input,
        none by default.  A process still running after `timeout` seconds is
        killed and reported with returncode None."""
        binary = binary or self.stack.server_bin
        program = os.path.basename(binary)
        feed = {"stdin": subprocess.DEVNULL} if stdin is None else {"input": stdin}
        t0 = time.monotonic()
        try:
            proc = subprocess.run([binary] + list(args), cwd=cwd, env=env, capture_output=True,
                                  timeout=timeout, **feed)
        except subprocess.TimeoutExpired as e:  # subprocess.run has killed it
            run = TrellisRun(list(args), None, (e.stdout or b"").decode("utf-8", "replace"),
                             (e.stderr or b"").decode("utf-8", "replace"), time.monotonic() - t0,
                             program)
        else:
            run = TrellisRun(list(args), proc.returncode, proc.stdout.decode("utf-8", "replace"),
                             proc.stderr.decode("utf-8", "replace"), time.monotonic() - t0,
                             program)
        self.runs.append(run)
        return run

    def start(self, *args, env, cwd=REPO_ROOT, port=None):
        """Start `trellis *args` in the background; `port` is where it is
        expected to listen when TRELLIS_PORT is not in `env`."""
        log_path = os.path.join(self.workdir, f"trellis-{len(self.started)}.log")
        p = TrellisProcess(self.stack, args or ("serve",), env, cwd, log_path, port)
        self.started.append(p)
        return p

    def close(self):
        for p in self.started:
            p.kill()
        for name in self.databases:
            try:
                self.stack.mongo_client.drop_database(name)
            except Exception:
                pass

    def sanitizer_reports(self):
        """What every process run or started here printed of a sanitizer
        report, one entry per process (empty when all were clean).  A test
        need not look itself: a report in any of them fails the test."""
        reports = []
        for r in self.runs:
            hits = sanitizer_hits(r.output)
            if hits:
                reports.append(f"`{' '.join([r.program] + r.args)}` reported {hits}:\n"
                               f"{r.output[-4000:]}")
        for p in self.started:
            hits = sanitizer_hits(p.output())
            if hits:
                reports.append(f"{p.log_path} reports {hits}:\n{p.output_tail(80)}")
        return reports


@pytest.fixture
def trellis(stack):
    """Launcher for extra trellis processes and tool runs; kills whatever it
    started, then fails the test if any of them printed a sanitizer report
    (a test checks the processes it stops itself; this catches the ones it
    only kills)."""
    launcher = TrellisLauncher(stack)
    try:
        yield launcher
    finally:
        launcher.close()
    reports = launcher.sanitizer_reports()
    if reports:
        pytest.fail("sanitizer report in a trellis process started by the test:\n"
                    + "\n".join(reports), pytrace=False)


# ---------------------------------------------------------------------------
# identity: accounts with server-issued tokens (signup / login)
#
# `target` is anything with a `base_url`: the session's Stack or a
# TrellisProcess started through the `trellis` launcher.
# ---------------------------------------------------------------------------

DEFAULT_PASSWORD = "correct-horse-battery-staple"


def unique_slug(prefix="t"):
    """A tenant slug that matches [a-z0-9-]{3,40} and is unique per call."""
    return f"{prefix}-{secrets.token_hex(6)}"


def unique_email(prefix="user"):
    return f"{prefix}-{secrets.token_hex(5)}@example.com"


def token_claims(token):
    """The claims of a JWT, read without verifying it."""
    return jwt.decode(token, options={"verify_signature": False})


class Account:
    """A user with a live server-issued session."""

    def __init__(self, target, slug, email, password, body, tenant=None):
        self.base_url = target.base_url
        self.slug = slug
        self.email = email
        self.password = password
        self.tenant = tenant
        self.user = body.get("user")
        self.expires_in = body.get("expires_in")
        self.set_tokens(body["access_token"], body["refresh_token"])

    def set_tokens(self, access_token, refresh_token):
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.headers = {"Authorization": "Bearer " + access_token}
        claims = token_claims(access_token)
        self.tenant_id = claims.get("tid")
        self.user_id = claims.get("sub")
        self.session_id = claims.get("sid")

    @property
    def tenant_oid(self):
        return ObjectId(self.tenant_id)

    @property
    def user_oid(self):
        return ObjectId(self.user_id)

    @property
    def session_key(self):
        return f"t:{{{self.tenant_id}}}:sess:{self.session_id}"

    def __repr__(self):
        return f"Account(slug={self.slug}, email={self.email}, user={self.user_id}, sid={self.session_id})"


def signup_request(target, **fields):
    """POST /v1/signup with a valid body, changed by `fields` (a value of
    None leaves that field out)."""
    body = {"tenant_name": "Acme Test Ltd", "tenant_slug": unique_slug(), "email": unique_email("owner"),
            "password": DEFAULT_PASSWORD, "name": "Olivia Owner"}
    for k, v in fields.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return requests.post(target.base_url + "/v1/signup", json=body, timeout=HTTP_TIMEOUT_S), body


def signup(target, **fields):
    """Sign a new tenant up; returns the owner's Account (asserts 201)."""
    r, body = signup_request(target, **fields)
    assert r.status_code == 201, f"signup failed: {r.status_code} {r.text[:500]}"
    j = r.json()
    return Account(target, body["tenant_slug"], j["user"]["email"], body["password"], j, tenant=j["tenant"])


def login_request(target, slug, email, password):
    return requests.post(target.base_url + "/v1/auth/login",
                         json={"tenant_slug": slug, "email": email, "password": password},
                         timeout=HTTP_TIMEOUT_S)


def login(target, slug, email, password=DEFAULT_PASSWORD):
    """Log in; returns an Account with a new session (asserts 200)."""
    r = login_request(target, slug, email, password)
    assert r.status_code == 200, f"login failed: {r.status_code} {r.text[:500]}"
    return Account(target, slug, email, password, r.json())


def create_user(target, owner, roles, email=None, name="Test User", password=DEFAULT_PASSWORD):
    """POST /v1/users as `owner`; returns the created user (asserts 201)."""
    r = requests.post(target.base_url + "/v1/users", headers=owner.headers, timeout=HTTP_TIMEOUT_S,
                      json={"email": email or unique_email(), "name": name, "roles": list(roles),
                            "password": password})
    assert r.status_code == 201, f"creating a user failed: {r.status_code} {r.text[:500]}"
    return r.json()


def user_session(target, owner, roles, **kw):
    """Create a user in `owner`'s tenant and log them in; returns their Account."""
    user = create_user(target, owner, roles, **kw)
    return login(target, owner.slug, user["email"], kw.get("password", DEFAULT_PASSWORD))


Stack.signup = signup
Stack.login = login


@pytest.fixture
def account(stack):
    """A fresh tenant signed up through the API; its owner's Account."""
    return signup(stack)


def find_doc(db, query, prefer=("users", "tenants", "roles")):
    """(collection name, document) of the first document matching `query` in
    any collection of `db` (the `prefer`red collections first), or (None, None).
    The identity collections' names are not part of the contract."""
    names = [n for n in db.list_collection_names() if not n.startswith("system.")]
    names.sort(key=lambda n: (n not in prefer, n))
    for name in names:
        doc = db[name].find_one(query)
        if doc is not None:
            return name, doc
    return None, None


NOT_ENTITIES = ("audit", "idempotency_keys", "_migrations")


def count_everywhere(db, query):
    """How many documents match `query`, summed over every collection of `db`
    that holds entities (not the audit log, idempotency records, migrations)."""
    return sum(db[n].count_documents(query) for n in db.list_collection_names()
               if not n.startswith("system.") and n not in NOT_ENTITIES)
