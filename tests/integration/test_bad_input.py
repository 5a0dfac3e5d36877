"""Bad input at the HTTP layer: bodies, headers, paths, slow and abusive clients.

After every test the autouse fixture in conftest checks the server is alive and
still answers /healthz."""

import select
import socket
import struct
import time

import pytest

from bson import ObjectId

BODY_LIMIT = 1048576       # TRELLIS_BODY_LIMIT default (the stack does not override it)
HEADER_TIMEOUT_S = 2       # TRELLIS_HEADER_TIMEOUT set by the stack
IDLE_TIMEOUT_S = 5         # TRELLIS_IDLE_TIMEOUT set by the stack


@pytest.fixture(autouse=True)
def _limits_match_stack(stack):
    assert (stack.body_limit, stack.header_timeout, stack.idle_timeout) == (BODY_LIMIT, HEADER_TIMEOUT_S,
                                                                            IDLE_TIMEOUT_S)


def tag_count(stack, principal):
    return stack.mongo.tags.count_documents({"tenant_id": principal.tenant_oid})


def post_bytes(stack, principal, body, content_type="application/json", path="/v1/tags", method="POST"):
    headers = dict(principal.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return stack.request(method, path, data=body, headers=headers)


def send_with_body_and_read(stack, head, body, timeout=30.0):
    """Send `head` then stream `body`, stopping as soon as the server starts to
    answer (it may reject from the head alone).  Returns the response (or None
    if the server closed/reset the connection without answering)."""
    s = stack.connect(timeout)
    try:
        s.sendall(head)
        sent = 0
        deadline = time.monotonic() + timeout
        s.setblocking(False)
        while time.monotonic() < deadline:
            wlist = [s] if sent < len(body) else []
            readable, writable, _ = select.select([s], wlist, [], max(0.0, deadline - time.monotonic()))
            if readable:
                break
            if writable:
                try:
                    sent += s.send(body[sent:sent + 65536])
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
        s.setblocking(True)
        return stack.read_response(s, max(1.0, deadline - time.monotonic()))
    finally:
        s.close()


# ---------------------------------------------------------------------------
# bodies
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b'{"name": ',
    b'{"name": "x",}',
    b"{name: 'x'}",
    b'{"name": "x"} trailing',
    b"",
], ids=["truncated", "trailing-comma", "single-quotes", "trailing-garbage", "empty"])
def test_malformed_json_is_400(stack, principal, problem, body):
    r = post_bytes(stack, principal, body)
    problem(r, 400, "malformed-request")
    assert tag_count(stack, principal) == 0


@pytest.mark.parametrize("body", [b'[{"name": "x"}]', b'"x"', b"42", b"null", b"true"],
                         ids=["array", "string", "number", "null", "bool"])
def test_non_object_json_body_is_400(stack, principal, problem, body):
    r = post_bytes(stack, principal, body)
    problem(r, 400, "malformed-request")
    assert tag_count(stack, principal) == 0


def test_text_plain_content_type_is_415(stack, principal, problem):
    r = post_bytes(stack, principal, b'{"name": "plain"}', content_type="text/plain")
    problem(r, 415, "unsupported-media-type")
    assert tag_count(stack, principal) == 0


def test_missing_content_type_is_415(stack, principal, problem):
    r = post_bytes(stack, principal, b'{"name": "no-ctype"}', content_type=None)
    problem(r, 415, "unsupported-media-type")
    assert tag_count(stack, principal) == 0


def test_patch_with_text_plain_is_415(stack, principal, problem):
    created = stack.post("/v1/tags", json={"name": "patch-ctype"}, headers=principal.headers)
    assert created.status_code == 201, created.text
    tag_id = created.json()["id"]
    r = post_bytes(stack, principal, b'{"name": "renamed"}', content_type="text/plain",
                   path=f"/v1/tags/{tag_id}", method="PATCH")
    problem(r, 415, "unsupported-media-type")
    doc = stack.mongo.tags.find_one({"_id": ObjectId(tag_id)})
    assert doc["name"] == "patch-ctype"


def test_json_content_type_with_charset_is_accepted(stack, principal):
    r = post_bytes(stack, principal, b'{"name": "charset-ok"}', content_type="application/json; charset=utf-8")
    assert r.status_code == 201, r.text


def _name_body_of_size(size):
    skeleton = b'{"name":""}'
    assert size > len(skeleton)
    body = b'{"name":"' + b"a" * (size - len(skeleton)) + b'"}'
    assert len(body) == size
    return body


def test_body_exactly_at_limit_is_not_413(stack, principal, problem):
    body = _name_body_of_size(BODY_LIMIT)
    r = post_bytes(stack, principal, body)
    # the body is accepted by the size check; the tag itself is invalid (name too long)
    assert r.status_code != 413, "a body of exactly TRELLIS_BODY_LIMIT bytes was rejected as too large"
    problem(r, (400, 422))
    assert tag_count(stack, principal) == 0


def test_body_one_byte_over_limit_is_413(stack, principal, problem):
    body = _name_body_of_size(BODY_LIMIT + 1)
    head = (f"POST /v1/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {principal.headers['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    r = send_with_body_and_read(stack, head, body)
    assert r is not None, "server closed the connection without a 413 response"
    problem(r, 413, "payload-too-large")
    assert tag_count(stack, principal) == 0


def test_small_chunked_body_is_answered(stack, principal):
    body = b'{"name":"chunked-small"}'
    req = (f"POST /v1/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {principal.headers['Authorization']}\r\n"
           "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    req += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    r = stack.raw_request(req)
    assert r is not None, "server closed the connection without answering a chunked request"
    # HTTP/1.1 servers must read chunked bodies; refusing them with 411 is the only clean alternative
    assert r.status in (201, 411), r


def test_chunked_body_over_limit_is_rejected(stack, principal, problem):
    chunk = b"a" * 65536
    total = 2 * BODY_LIMIT
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(total // len(chunk)))
    body = b'9\r\n{"name":"\r\n' + body + b"2\r\n\"}\r\n0\r\n\r\n"
    head = (f"POST /v1/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {principal.headers['Authorization']}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    r = send_with_body_and_read(stack, head, body)
    assert r is not None, "server closed the connection without answering"
    # 413 per spec; refusing chunked bodies outright (411/400) also keeps the limit
    assert r.status in (400, 411, 413), r
    if r.status == 413:
        problem(r, 413, "payload-too-large")
    assert tag_count(stack, principal) == 0


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"ab\xe2\x82", b"\x80"],
                         ids=["ff-fe", "overlong", "surrogate", "truncated", "lone-continuation"])
def test_invalid_utf8_in_json_string_is_400(stack, principal, problem, bad):
    r = post_bytes(stack, principal, b'{"name": "x' + bad + b'y"}')
    problem(r, 400, "malformed-request")
    assert tag_count(stack, principal) == 0


# ---------------------------------------------------------------------------
# heads, routes, methods, paths
# ---------------------------------------------------------------------------

def test_64k_header_is_rejected_or_closed(stack):
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    try:
        r = stack.raw_request(head, timeout=15)
    except (ConnectionError, OSError):
        r = None  # closed or reset mid-response: acceptable
    if r is not None:
        assert 400 <= r.status < 500, f"64 KiB header answered with {r.status}"
    assert stack.get("/healthz").status_code == 200


@pytest.mark.parametrize("method,path", [("GET", "/v1/nope"), ("GET", "/nope"), ("POST", "/v1/nope"),
                                         ("GET", "/v1/tags/123/extra"), ("GET", "/v1")])
def test_unknown_route_is_404_problem(stack, principal, problem, method, path):
    kw = {"json": {"a": 1}} if method == "POST" else {}
    r = stack.request(method, path, headers=principal.headers, **kw)
    problem(r, 404, "not-found")


@pytest.mark.parametrize("method,path_tpl,must_allow", [
    ("DELETE", "/v1/tags", {"GET", "POST"}),
    ("PUT", "/v1/tags", {"GET", "POST"}),
    ("PUT", "/v1/tags/{id}", {"GET", "PATCH", "DELETE"}),
    ("POST", "/v1/tags/{id}", {"GET", "PATCH", "DELETE"}),
    ("POST", "/healthz", {"GET"}),
    ("DELETE", "/readyz", {"GET"}),
])
def test_wrong_method_is_405_with_allow(stack, principal, problem, method, path_tpl, must_allow):
    path = path_tpl.replace("{id}", "0123456789abcdef01234567")
    kw = {"json": {"name": "x"}} if method in ("PUT", "POST") else {}
    r = stack.request(method, path, headers=principal.headers, **kw)
    problem(r, 405, "method-not-allowed")
    allow = r.headers.get("Allow")
    assert allow, "405 without Allow header"
    allowed = {m.strip().upper() for m in allow.split(",")}
    assert must_allow <= allowed, f"Allow: {allow!r} lacks {must_allow - allowed}"
    assert method not in allowed


@pytest.mark.parametrize("path", [
    "/../../../../etc/passwd",
    "/v1/../../../../etc/passwd",
    "/v1/openapi.json/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/v1/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/v1/tags/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/..%5c..%5c..%5cetc%5cpasswd",
    "/v1/tags/%2e%2e",
    "/v1/tags/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/%252e%252e/%252e%252e/etc/passwd",
    "/v1/tags/%00",
])
def test_path_traversal_is_not_served(stack, principal, problem, path):
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {principal.headers['Authorization']}\r\n"
           "Connection: close\r\n\r\n").encode()
    r = stack.raw_request(req)
    assert r is not None, f"server closed the connection on {path} without answering"
    assert b"root:" not in r.body
    problem(r, (400, 404))


# ---------------------------------------------------------------------------
# slow and abusive clients
# ---------------------------------------------------------------------------

def test_stalled_half_request_head_is_closed_within_header_timeout(stack):
    s = stack.connect()
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Partial: ")
        waited = stack.wait_closed(s, HEADER_TIMEOUT_S + 10)
    finally:
        s.close()
    assert waited is not None, f"connection still open {HEADER_TIMEOUT_S + 10}s after a stalled head"
    assert waited <= HEADER_TIMEOUT_S + 3, f"closed after {waited:.2f}s, limit {HEADER_TIMEOUT_S + 3}s"


def test_silent_connection_is_closed_within_header_timeout(stack):
    s = stack.connect()
    try:
        waited = stack.wait_closed(s, HEADER_TIMEOUT_S + 10)
    finally:
        s.close()
    assert waited is not None, "connection that never sent a byte was kept open"
    assert waited <= HEADER_TIMEOUT_S + 3, f"closed after {waited:.2f}s, limit {HEADER_TIMEOUT_S + 3}s"


def test_trickled_request_head_is_closed_within_header_timeout(stack):
    """Sending one header byte every 0.4 s must not extend the header deadline."""
    s = stack.connect()
    start = time.monotonic()
    closed_at = None
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        while time.monotonic() - start < HEADER_TIMEOUT_S + 10:
            try:
                s.send(b"a")
            except OSError:
                closed_at = time.monotonic()
                break
            readable, _, _ = select.select([s], [], [], 0.4)
            if readable:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    closed_at = time.monotonic()
                    break
    finally:
        s.close()
    assert closed_at is not None, "a trickling client kept its connection open past the header timeout"
    waited = closed_at - start
    assert waited <= HEADER_TIMEOUT_S + 3, f"closed after {waited:.2f}s, limit {HEADER_TIMEOUT_S + 3}s"


def test_idle_keepalive_connection_is_closed_within_idle_timeout(stack):
    s = stack.connect()
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        r = stack.read_response(s)
        assert r is not None and r.status == 200, r
        waited = stack.wait_closed(s, IDLE_TIMEOUT_S + 15)
    finally:
        s.close()
    assert waited is not None, f"idle keep-alive connection still open after {IDLE_TIMEOUT_S + 15}s"
    assert waited <= IDLE_TIMEOUT_S + 3, f"closed after {waited:.2f}s, limit {IDLE_TIMEOUT_S + 3}s"


def test_thousand_dropped_connections_leave_server_serving(stack, principal):
    batches, per_batch = 5, 200
    auth = principal.headers["Authorization"]
    for b in range(batches):
        socks = []
        try:
            for i in range(per_batch):
                s = socket.create_connection(("127.0.0.1", stack.port), timeout=15)
                socks.append(s)
                kind = i % 5
                try:
                    if kind == 1:
                        s.sendall(b"GET /v1/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthor")
                    elif kind == 2:
                        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    elif kind == 3:
                        s.sendall((f"POST /v1/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
                                   "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                                   '{"name":"').encode())
                    elif kind == 4:
                        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-not-http\r\n\r\n")
                except OSError:
                    pass
                if i % 2:
                    # abortive close: RST instead of FIN
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            for s in socks:
                s.close()

    r = stack.get("/healthz", timeout=10)
    assert r.status_code == 200, r.text
    created = stack.post("/v1/tags", json={"name": "after-the-storm"}, headers=principal.headers, timeout=10)
    assert created.status_code == 201, created.text
    got = stack.get(f"/v1/tags/{created.json()['id']}", headers=principal.headers, timeout=10)
    assert got.status_code == 200, got.text
    assert got.json()["name"] == "after-the-storm"
