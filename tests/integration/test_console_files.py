"""The console's files (/app/, /sdk/trellis.js) as a browser gets them:
the right types, a Content-Security-Policy that forbids inline script,
revalidation by ETag (304), gzip where the client takes it, a rebuilt file
served at once, and nothing outside the build's folders reachable. A
server of its own serves a folder the test writes."""

import gzip
import os
import time

import pytest
import requests

from conftest import check_problem, sanitizer_hits


@pytest.fixture
def files(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "sdk").mkdir()
    (tmp_path / "app" / "index.html").write_text("<!doctype html><title>Trellis</title>\n")
    (tmp_path / "app" / "app.js").write_text("console.log('app');\n" * 50)
    (tmp_path / "app" / "styles.css").write_text("body{margin:0}\n")
    (tmp_path / "app" / "notes.txt").write_text("not a type the console serves\n")
    (tmp_path / "app" / ".hidden.js").write_text("secret\n")
    (tmp_path / "secret.js").write_text("outside the app folder\n")
    sdk = "export const version = 1;\n" * 40
    (tmp_path / "sdk" / "trellis.js").write_text(sdk)
    time.sleep(0.01)  # the .gz copy is newer than the file it copies
    (tmp_path / "sdk" / "trellis.js.gz").write_bytes(gzip.compress(sdk.encode()))
    return tmp_path


@pytest.fixture
def server(trellis, files):
    env = trellis.env(console_dir=str(files))
    run = trellis.run("migrate", env=env)
    assert run.returncode == 0 and not sanitizer_hits(run.output), run
    proc = trellis.start("serve", env=env)
    proc.wait_ready()
    return proc


def get(server, path, **headers):
    return requests.get(server.url(path), headers=headers, allow_redirects=False, timeout=10)


def test_the_console_page_is_served_with_a_policy_that_forbids_inline_script(server):
    r = get(server, "/app/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.text.startswith("<!doctype html>")
    policy = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'" and "unsafe-inline" not in policy
    assert directives["default-src"] == "'self'" and directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["etag"].startswith('"')


def test_each_file_has_its_type_and_app_without_a_slash_moves(server):
    assert get(server, "/app/app.js").headers["content-type"] == "text/javascript; charset=utf-8"
    assert get(server, "/app/styles.css").headers["content-type"] == "text/css; charset=utf-8"
    r = get(server, "/app")
    assert r.status_code == 308 and r.headers["location"] == "/app/"


def test_a_browser_revalidates_with_its_etag_and_gets_304(server):
    first = get(server, "/app/app.js")
    again = get(server, "/app/app.js", **{"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    other = get(server, "/app/app.js", **{"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content


def test_a_rebuilt_file_is_served_at_once_with_a_new_etag(server, files):
    first = get(server, "/app/app.js")
    (files / "app" / "app.js").write_text("console.log('rebuilt');\n")
    r = get(server, "/app/app.js", **{"If-None-Match": first.headers["etag"]})
    assert r.status_code == 200 and r.text == "console.log('rebuilt');\n"
    assert r.headers["etag"] != first.headers["etag"]


def test_gzip_goes_to_clients_that_take_it_and_a_stale_copy_is_never_sent(server, files):
    plain = get(server, "/sdk/trellis.js", **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.text.startswith("export const")
    zipped = requests.get(server.url("/sdk/trellis.js"), headers={"Accept-Encoding": "gzip"},
                          timeout=10, stream=True)
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped.raw.read()).decode() == plain.text
    assert zipped.headers["etag"] != plain.headers["etag"]
    refused = get(server, "/sdk/trellis.js", **{"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers
    # the SDK is rebuilt but its .gz copy is not: the copy is stale, never sent
    time.sleep(0.01)
    (files / "sdk" / "trellis.js").write_text("export const version = 2;\n")
    fresh = requests.get(server.url("/sdk/trellis.js"), headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert fresh.text == "export const version = 2;\n"


def test_the_sdk_may_be_loaded_by_apps_on_other_origins(server):
    r = get(server, "/sdk/trellis.js", Origin="https://shop.example")
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in get(server, "/app/app.js").headers


@pytest.mark.parametrize("path", [
    "/app/..%2Fsecret.js", "/app/%2e%2e%2fsecret.js", "/sdk/..%2F..%2Fsecret.js",
    "/app/..%2F..%2F..%2Fetc%2Fpasswd", "/app/.hidden.js", "/app/notes.txt", "/app/missing.js",
    "/sdk/", "/app/index.html.gz",
])
def test_nothing_outside_the_build_or_of_another_type_is_reachable(server, path):
    r = get(server, path)
    assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert "outside the app folder" not in r.text and "root:" not in r.text


@pytest.mark.parametrize("path,same_as", [
    ("/sdk/..%2Fapp%2Fapp.js", "/app/app.js"),  # the HTTP layer resolves the dots first
    ("/sdk/.%2Ftrellis.js", "/sdk/trellis.js"),
])
def test_a_spelling_the_http_layer_normalises_reaches_only_a_served_file(server, path, same_as):
    r = get(server, path)
    assert r.status_code in (200, 404), (path, r.status_code)
    if r.status_code == 200:
        assert r.content == get(server, same_as).content


def test_the_files_are_not_api_operations(server):
    paths = requests.get(server.url("/v1/openapi.json"), timeout=10).json()["paths"]
    assert not [p for p in paths if p.startswith("/app") or p.startswith("/sdk")]
    check_problem(requests.post(server.url("/app/"), timeout=10), 405)


def test_a_server_without_a_built_console_says_so(trellis, tmp_path):
    env = trellis.env(console_dir=str(tmp_path / "nothing-here"))
    assert trellis.run("migrate", env=env).returncode == 0
    proc = trellis.start("serve", env=env)
    proc.wait_ready()
    r = requests.get(proc.url("/app/"), timeout=10)
    body = check_problem(r, 404)
    assert "make build" in body["detail"]
    assert requests.get(proc.url("/healthz"), timeout=10).status_code == 200


def test_the_build_output_is_what_the_session_server_serves(stack):
    """make build writes the console; the server started from the repository serves it."""
    built = os.path.join(os.path.dirname(__file__), "..", "..", "build", "console")
    if not os.path.isdir(os.path.join(built, "app")):
        pytest.fail("build/console/app is missing: make test builds the console first")
    r = stack.get("/sdk/trellis.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "export" in r.text
    page = stack.get("/app/")
    assert page.status_code == 200 and '<script type="module" src="app.js">' in page.text


def test_names_of_missing_files_do_not_crowd_out_the_real_ones(server):
    """The server keeps files in memory; asking for a hundred names that do
    not exist must not take the places of the files that do."""
    for i in range(100):
        assert get(server, f"/app/missing-{i}.js").status_code == 404
    r = get(server, "/app/styles.css")
    assert r.status_code == 200 and r.text == "body{margin:0}\n"
