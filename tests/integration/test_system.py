"""System endpoints: /healthz, /readyz, /metrics, /v1/openapi.json, X-Request-Id."""

import json
import re
import time

import pytest

METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def parse_metrics(text):
    """Prometheus text format -> list of (name, {labels}, float value)."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        assert m, f"unparseable metrics line: {line!r}"
        labels = dict(LABEL.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def counter_value(samples, name, **labels):
    total = None
    for n, l, v in samples:
        if n == name and all(l.get(k) == val for k, val in labels.items()):
            total = (total or 0) + v
    return total


def media_type(resp):
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower()


def test_healthz_returns_ok(stack):
    r = stack.get("/healthz")
    assert r.status_code == 200, r.text
    assert media_type(r) == "application/json"
    assert r.json() == {"status": "ok"}


def test_readyz_reports_all_checks_ok(stack):
    r = stack.get("/readyz")
    assert r.status_code == 200, r.text
    assert media_type(r) == "application/json"
    body = r.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"mongodb": "ok", "postgresql": "ok", "redis": "ok", "migrations": "ok"}


def test_metrics_counts_a_route_just_called(stack, principal):
    created = stack.post("/v1/tags", json={"name": "metrics-probe"}, headers=principal.headers)
    assert created.status_code == 201, created.text
    tag_id = created.json()["id"]

    def current():
        m = stack.get("/metrics")
        assert m.status_code == 200, m.text
        assert media_type(m) == "text/plain"
        return counter_value(parse_metrics(m.text), "trellis_http_requests_total",
                             route="/v1/tags/{id}", method="GET", status="200")

    before = current() or 0.0
    r = stack.get(f"/v1/tags/{tag_id}", headers=principal.headers)
    assert r.status_code == 200, r.text
    # the counter may be bumped just after the response is written: poll briefly
    deadline = time.monotonic() + 3
    after = current()
    while (after or 0.0) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        after = current()
    assert after is not None, "no trellis_http_requests_total sample for route /v1/tags/{id} GET 200"
    assert after >= before + 1, f"counter did not increase: before={before} after={after}"


def test_metrics_has_request_duration_histogram_by_route(stack):
    assert stack.get("/healthz").status_code == 200
    m = stack.get("/metrics")
    assert m.status_code == 200
    samples = parse_metrics(m.text)
    names = {n for n, _, _ in samples}
    for suffix in ("_bucket", "_sum", "_count"):
        assert "trellis_http_request_duration_seconds" + suffix in names, f"missing histogram series {suffix}"
    buckets = [(l, v) for n, l, v in samples if n == "trellis_http_request_duration_seconds_bucket"]
    assert all("route" in l and "le" in l for l, _ in buckets), "histogram buckets need route and le labels"
    healthz_inf = [v for l, v in buckets if l.get("route") == "/healthz" and l.get("le") == "+Inf"]
    assert healthz_inf and healthz_inf[0] >= 1, "no +Inf bucket counting /healthz"


def test_openapi_document_describes_tag_routes(stack):
    r = stack.get("/v1/openapi.json")
    assert r.status_code == 200, r.text
    assert media_type(r) == "application/json"
    doc = json.loads(r.text)
    assert isinstance(doc.get("openapi"), str) and doc["openapi"].startswith("3.1"), doc.get("openapi")
    paths = doc.get("paths")
    assert isinstance(paths, dict)
    assert "/v1/tags/{id}" in paths, sorted(paths)
    assert "/v1/tags" in paths, sorted(paths)
    item = paths["/v1/tags/{id}"]
    for method in ("get", "patch", "delete"):
        assert method in item, f"/v1/tags/{{id}} lacks {method}"
    for method in ("get", "post"):
        assert method in paths["/v1/tags"], f"/v1/tags lacks {method}"



def test_openapi_document_is_generated_from_the_tables(stack):
    doc = stack.get("/v1/openapi.json").json()

    def deref(node):
        while isinstance(node, dict) and "$ref" in node:
            target = doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node

    operation_ids = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            operation_ids.append(op["operationId"])
            params = [deref(p) for p in op.get("parameters", []) + item.get("parameters", [])]
            named = {p["name"] for p in params if p["in"] == "path"}
            for segment in path.split("/"):
                if segment.startswith("{"):
                    assert segment[1:-1] in named, f"{method} {path}: {segment} undocumented"
    assert len(operation_ids) == len(set(operation_ids)), "operationIds repeat"

    create = deref(doc["paths"]["/v1/crm/leads"]["post"]["requestBody"]["content"]["application/json"]["schema"])
    assert "name" in create["required"] and create["additionalProperties"] is False
    assert "duplicate_of" not in create["properties"]  # set by the server only
    status = deref(create["properties"]["status"])
    assert set(status["enum"]) == {"new", "contacted", "qualified", "converted", "lost"}

    listing = doc["paths"]["/v1/crm/leads"]["get"]
    query = {p["name"]: p for p in map(deref, listing["parameters"]) if p["in"] == "query"}
    assert {"status", "owner_id", "email", "limit", "cursor", "sort"} <= set(query)
    assert "-created_at" in query["sort"]["schema"]["enum"]
    assert query["limit"]["schema"]["maximum"] == 200

    users = doc["paths"]["/v1/users"]["get"]
    user_sort = [deref(p) for p in users["parameters"] if deref(p)["name"] == "sort"][0]
    assert set(user_sort["schema"]["enum"]) == {"created_at", "-created_at", "email", "-email"}
    abc = doc["paths"]["/v1/crm/reports/abc-xyz"]["get"]
    required = {deref(p)["name"] for p in abc["parameters"] if deref(p).get("required")}
    assert required == {"from", "to", "currency"}


@pytest.mark.parametrize("method,path,needs_auth", [
    ("GET", "/healthz", False),
    ("GET", "/readyz", False),
    ("GET", "/metrics", False),
    ("GET", "/v1/openapi.json", False),
    ("GET", "/v1/does-not-exist", False),
    ("GET", "/v1/tags", False),          # 401 without a token
    ("GET", "/v1/tags", True),
    ("POST", "/v1/tags", True),
    ("DELETE", "/healthz", False),       # 405
])
def test_every_response_has_request_id(stack, method, path, needs_auth):
    headers = {}
    kw = {}
    if needs_auth:
        headers.update(stack.principal().headers)
    if method == "POST":
        kw["json"] = {"name": "rid-probe"}
    r = stack.request(method, path, headers=headers, **kw)
    rid = r.headers.get("X-Request-Id")
    assert rid, f"{method} {path} -> {r.status_code} without X-Request-Id"
    assert VALID_REQUEST_ID.match(rid), f"generated X-Request-Id {rid!r} is not 1..64 of [A-Za-z0-9._-]"


def test_request_ids_are_fresh_per_request(stack):
    ids = {stack.get("/healthz").headers.get("X-Request-Id") for _ in range(5)}
    assert None not in ids
    assert len(ids) == 5, ids


@pytest.mark.parametrize("rid", ["abc-123", "Req.ID_x-9", "a", "z" * 64])
def test_valid_client_request_id_is_echoed(stack, rid):
    r = stack.get("/healthz", headers={"X-Request-Id": rid})
    assert r.status_code == 200
    assert r.headers.get("X-Request-Id") == rid


def test_valid_client_request_id_is_echoed_on_errors(stack, problem):
    r = stack.get("/v1/tags", headers={"X-Request-Id": "err-trace-42"})
    problem(r, 401, "unauthorized")
    assert r.headers.get("X-Request-Id") == "err-trace-42"


@pytest.mark.parametrize("rid", [
    "has space",
    "semi;colon",
    "slash/inside",
    "q" * 65,
    "\u00e9t\u00e9".encode("utf-8").decode("latin-1"),  # non-ASCII bytes on the wire
    "<script>",
])
def test_invalid_client_request_id_is_replaced(stack, rid):
    r = stack.get("/healthz", headers={"X-Request-Id": rid})
    assert r.status_code == 200
    got = r.headers.get("X-Request-Id")
    assert got, "no X-Request-Id on response"
    assert got != rid
    assert VALID_REQUEST_ID.match(got), f"replacement id {got!r} is not a valid request id"
