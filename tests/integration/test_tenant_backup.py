"""Backup and restore of one tenant: `trellis tenant export --tenant SLUG
--out FILE` and `trellis tenant import --file FILE [--replace]`.

A demo tenant (CRM, ERP with its ledger and stock, BPM; trellis-demo seed)
plus a balance and a tag made over HTTP is exported, deleted from the
session's database and imported again: every stored document of it comes
back byte for byte, and the API answers what it answered before - lists,
balances, the ledger's verification, reports. Another tenant is neither in
the file nor touched. Bad files are refused with a clear message before
anything is written (checked against a fresh, migrated database that must
stay empty), a tenant in the way is refused unless --replace, and of two
imports of one tenant at once in two processes exactly one writes."""

import concurrent.futures
import hashlib
import json
import os
import secrets
import stat
import time

import bson
import pytest
import requests
from bson import ObjectId, json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from conftest import (DB_NAME, HTTP_TIMEOUT_S, REPO_ROOT, TrellisLauncher, free_port, login,
                      login_request, sanitizer_hits, signup, unique_slug)

USAGE_ERROR = 2
SEED_TIMEOUT_S = 300
CLI_TIMEOUT_S = 300
RAW = CodecOptions(document_class=RawBSONDocument)
BALANCE_KEY = "credits.backup"

# what the owner reads before and after: every page of these lists ...
LISTS = ["/v1/crm/leads", "/v1/crm/clients", "/v1/crm/deals", "/v1/erp/orders",
         "/v1/erp/products", "/v1/erp/stock/moves", "/v1/users", "/v1/tags",
         "/v1/bpm/instances", "/v1/bpm/tasks", f"/v1/balances/{BALANCE_KEY}/movements"]
# ... and these answers
ANSWERS = ["/v1/erp/stock", "/v1/erp/ledger/verify", "/v1/erp/checks", "/v1/erp/reports/trial-balance",
           "/v1/crm/reports/funnel", f"/v1/balances/{BALANCE_KEY}", "/v1/crm/pipelines"]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def run_cli(launcher, env, *args, binary=None, stdin=None, timeout=CLI_TIMEOUT_S):
    env = dict(env)
    env.pop("TRELLIS_PORT", None)
    run = launcher.run(*args, env=env, binary=binary, stdin=stdin, timeout=timeout)
    hits = sanitizer_hits(run.output)
    assert not hits, f"sanitizer report: {hits}\n{run!r}"
    return run


def export(launcher, env, slug, path):
    return run_cli(launcher, env, "tenant", "export", "--tenant", slug, "--out", path)


def import_(launcher, env, path, *extra):
    return run_cli(launcher, env, "tenant", "import", "--file", path, *extra)


def collections(db):
    return sorted(n for n in db.list_collection_names() if not n.startswith("system."))


def stored(db, tenant_id):
    """Every document of the tenant in every collection, as raw BSON bytes
    per collection, sorted: what a restore must give back exactly."""
    out = {}
    for name in collections(db):
        docs = sorted(d.raw for d in db.get_collection(name, codec_options=RAW).find(
            {"tenant_id": tenant_id}))
        if docs:
            out[name] = docs
    return out


def file_documents(path):
    """The file's documents as raw BSON per collection, sorted."""
    out = {}
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines[1:-1]:
        rec = json.loads(line)
        doc = json_util.loads(json.dumps(rec["d"]), json_options=json_util.CANONICAL_JSON_OPTIONS)
        out.setdefault(rec["c"], []).append(bson.encode(doc))
    return {k: sorted(v) for k, v in out.items()}


def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def reseal(lines):
    """A file from a header and document lines with a correct end line
    (counts and checksum), as an export would write it: for files whose
    checksum is right but whose content is wrong."""
    head, docs = lines[0], [ln for ln in lines[1:] if not ln.startswith('{"end"')]
    counts = {}
    for ln in docs:
        c = json.loads(ln)["c"]
        counts[c] = counts.get(c, 0) + 1
    body = "".join(ln + "\n" for ln in [head] + docs)
    digest = hashlib.blake2b(body.encode(), digest_size=32).hexdigest()
    end = {"end": {"documents": {"$numberLong": str(len(docs))},
                   "collections": {c: {"$numberLong": str(n)} for c, n in counts.items()},
                   "blake2b": digest}}
    return body + json.dumps(end) + "\n"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def get(stack, acct, path, **params):
    r = requests.get(stack.base_url + path, headers=acct.headers, params=params,
                     timeout=HTTP_TIMEOUT_S * 4)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
    return r.json()


def every_page(stack, acct, path):
    items, cursor = [], None
    for _ in range(1000):
        params = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        body = get(stack, acct, path, **params)
        items += body["items"]
        cursor = body.get("next_cursor")
        if not cursor:
            return items
    raise AssertionError(f"{path} did not end")


def answers(stack, acct):
    """What the owner reads: lists page by page and the ERP/CRM answers."""
    out = {path: every_page(stack, acct, path) for path in LISTS}
    out.update({path: get(stack, acct, path) for path in ANSWERS})
    return out


def first_event_id(stack, acct):
    """The id of the oldest event the tenant's stream keeps (events are
    appended right after the response: wait for one)."""
    deadline = time.monotonic() + 30
    while True:
        items = get(stack, acct, "/v1/changes", limit=1)["items"]
        if items:
            return items[0]["id"]
        assert time.monotonic() < deadline, "no event in the tenant's stream"
        time.sleep(0.2)


def wait_quiet(db, tenant_id, settle_s=3.0, timeout=180):
    """Until the tenant's stored documents stay the same for settle_s: the
    jobs its seeding queued (settling, checks) have run. An export is only
    a consistent picture of a tenant nothing writes to (README)."""
    deadline = time.monotonic() + timeout
    last = stored(db, tenant_id)
    while True:
        time.sleep(settle_s)
        now = stored(db, tenant_id)
        if now == last:
            return
        assert time.monotonic() < deadline, "the tenant never went quiet"
        last = now


def tenant_docs_anywhere(db, tenant_id):
    return sum(db[n].count_documents({"tenant_id": tenant_id}) for n in collections(db))


# ---------------------------------------------------------------------------
# fixtures: a seeded tenant, another one, and its export
# ---------------------------------------------------------------------------

class Seeded:
    pass


@pytest.fixture(scope="module")
def launcher(stack):
    lau = TrellisLauncher(stack)
    yield lau
    lau.close()
    reports = lau.sanitizer_reports()
    assert not reports, "\n".join(reports)


@pytest.fixture(scope="module")
def seeded(stack, launcher, tmp_path_factory):
    s = Seeded()
    s.env = stack.server_env()
    s.slug = unique_slug("bk")
    s.password = "demo-" + secrets.token_urlsafe(12)
    # the seed's ERP work is settled by jobs due half a second after it,
    # not a minute: the tenant goes quiet soon (wait_quiet)
    run = run_cli(launcher, launcher.env(db=DB_NAME, erp_settle_after_ms=500), "seed",
                  "--tenant", s.slug, binary=stack.demo_bin,
                  stdin=(s.password + "\n").encode(), timeout=SEED_TIMEOUT_S)
    assert run.returncode == 0, run
    tenant = stack.mongo["tenants"].find_one({"slug": s.slug})
    s.tenant_id = tenant["_id"]
    s.email = f"owner@{s.slug}.example"
    owner = login(stack, s.slug, s.email, s.password)
    # a register and a tag of its own, made over HTTP
    r = requests.post(f"{stack.base_url}/v1/balances/{BALANCE_KEY}/movements",
                      headers=owner.headers, timeout=HTTP_TIMEOUT_S,
                      json={"amount": 1250, "operation_id": "bk-1", "memo": "before the backup"})
    assert r.status_code == 201, r.text
    r = requests.post(stack.base_url + "/v1/tags", headers=owner.headers,
                      timeout=HTTP_TIMEOUT_S, json={"name": "kept-by-the-backup"})
    assert r.status_code == 201, r.text
    s.owner = owner
    s.event_id = first_event_id(stack, owner)
    # the other tenant, with a record of its own
    s.other = signup(stack)
    r = requests.post(stack.base_url + "/v1/tags", headers=s.other.headers,
                      timeout=HTTP_TIMEOUT_S, json={"name": "not-in-the-backup"})
    assert r.status_code == 201, r.text
    wait_quiet(stack.mongo, s.tenant_id)
    s.dir = tmp_path_factory.mktemp("backup")
    s.file = str(s.dir / f"{s.slug}.jsonl")
    s.answers = answers(stack, owner)
    s.run = export(launcher, s.env, s.slug, s.file)
    assert s.run.returncode == 0, s.run
    s.stored = stored(stack.mongo, s.tenant_id)
    s.other_stored = stored(stack.mongo, s.other.tenant_oid)
    yield s
    for name in collections(stack.mongo):
        stack.mongo[name].delete_many({"tenant_id": s.tenant_id})


@pytest.fixture(scope="module")
def restored(stack, launcher, seeded):
    """The seeded tenant deleted from the session's database, then imported."""
    db = stack.mongo
    for name in collections(db):
        db[name].delete_many({"tenant_id": seeded.tenant_id})
    assert tenant_docs_anywhere(db, seeded.tenant_id) == 0
    r = login_request(stack, seeded.slug, seeded.email, seeded.password)
    assert r.status_code == 401, r.text
    seeded.import_run = import_(launcher, seeded.env, seeded.file)
    assert seeded.import_run.returncode == 0, seeded.import_run
    return seeded


@pytest.fixture
def empty_db(stack, launcher):
    """A fresh database with every migration applied, and its environment."""
    env = launcher.env(db=launcher.fresh_db("bk"))
    run = run_cli(launcher, env, "migrate")
    assert run.returncode == 0, run
    name = env["TRELLIS_MONGO_URI"].rsplit("/", 1)[1]
    return env, stack.mongo_client[name]


def assert_nothing_written(db, seeded):
    assert tenant_docs_anywhere(db, seeded.tenant_id) == 0
    assert db["tenants"].count_documents({}) == 0
    assert db["_tenant_imports"].count_documents({}) == 0


# ---------------------------------------------------------------------------
# the export
# ---------------------------------------------------------------------------

def test_the_file_names_its_tenant_migrations_and_counts(stack, seeded):
    lines = read_lines(seeded.file)
    head, end = json_util.loads(lines[0]), json_util.loads(lines[-1])
    assert head["format"] == "trellis-tenant-backup" and head["version"] == 1, head
    assert head["tenant_id"] == seeded.tenant_id
    assert head["slug"] == seeded.slug
    done = sorted(m["_id"] for m in stack.mongo["_migrations"].find({"state": "done"})
                  if not m["_id"].endswith("@postgresql"))
    assert head["migrations"] == done
    total = sum(len(v) for v in seeded.stored.values())
    assert end["end"]["documents"] == total
    assert f"{total} documents" in seeded.run.stdout, seeded.run


def test_the_file_holds_every_stored_document_of_the_tenant_exactly(seeded):
    assert file_documents(seeded.file) == seeded.stored
    # registers, list buckets and the tenant record are part of it
    assert {"tenants", "users", "register_moves", "_buckets", "leads", "erp_stock_moves",
            "bpm_instances"} <= set(seeded.stored)


def test_the_other_tenant_is_not_in_the_file(seeded):
    with open(seeded.file) as f:
        text = f.read()
    assert str(seeded.other.tenant_oid) not in text
    assert "not-in-the-backup" not in text


def test_the_file_is_readable_by_its_owner_only(seeded):
    mode = stat.S_IMODE(os.stat(seeded.file).st_mode)
    assert mode == 0o600, oct(mode)


def test_every_document_outside_the_migrations_names_its_tenant(stack, seeded):
    """The export takes what carries the tenant's tenant_id: a collection
    whose documents carried no tenant_id would be silently left out."""
    for name in collections(stack.mongo):
        if name in ("_migrations", "_tenant_imports"):
            continue
        assert stack.mongo[name].count_documents({"tenant_id": {"$exists": False}}) == 0, name


def test_every_collection_the_server_wrote_is_in_the_sharding_notes(stack, seeded):
    """ops/mongodb.md is checked against the migrations; this checks the
    migrations against what a seeded tenant's server really created."""
    with open(os.path.join(REPO_ROOT, "ops", "mongodb.md")) as f:
        notes = f.read()
    for name in collections(stack.mongo):
        if name == "_tenant_imports":
            continue
        assert f'"trellis.{name}"' in notes or f"`{name}`" in notes, name


def test_export_refuses_an_unknown_tenant_and_an_existing_file(launcher, seeded):
    missing = str(seeded.dir / "missing.jsonl")
    run = export(launcher, seeded.env, "no-such-tenant-" + secrets.token_hex(3), missing)
    assert run.returncode == USAGE_ERROR and "no tenant with the slug" in run.stderr, run
    assert not os.path.exists(missing)
    before = read_lines(seeded.file)
    run = export(launcher, seeded.env, seeded.slug, seeded.file)
    assert run.returncode == USAGE_ERROR and "cannot create" in run.stderr, run
    assert read_lines(seeded.file) == before


def test_usage_errors_are_exit_2_and_name_the_usage(launcher, seeded):
    for args in (["tenant", "export", "--tenant", seeded.slug],
                 ["tenant", "export", "--out", "x", "--tenant"],
                 ["tenant", "import"],
                 ["tenant", "import", "--file", seeded.file, "--force"]):
        run = run_cli(launcher, seeded.env, *args)
        assert run.returncode == USAGE_ERROR and "usage: trellis tenant" in run.stderr, run


# ---------------------------------------------------------------------------
# the restore
# ---------------------------------------------------------------------------

def test_a_restore_gives_back_every_document_exactly(stack, restored):
    assert stored(stack.mongo, restored.tenant_id) == restored.stored
    assert "documents restored" in restored.import_run.stdout, restored.import_run


def test_after_a_restore_the_api_answers_as_before(stack, restored):
    owner = login(stack, restored.slug, restored.email, restored.password)
    after = answers(stack, owner)
    for path in LISTS + ANSWERS:
        assert after[path] == restored.answers[path], path
    assert after["/v1/erp/ledger/verify"]["ok"] is True
    assert after[f"/v1/balances/{BALANCE_KEY}"]["balance"] == 1250


def test_a_restore_ends_the_sessions_users_had(stack, restored):
    r = requests.get(stack.base_url + "/v1/me", headers=restored.owner.headers,
                     timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 401, r.text


def test_a_restore_tells_clients_resuming_from_an_old_event_to_resync(stack, restored):
    owner = login(stack, restored.slug, restored.email, restored.password)
    r = requests.get(stack.base_url + "/v1/changes", headers=owner.headers,
                     params={"since": restored.event_id}, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 410 and "resync-required" in r.json()["type"], r.text


def test_a_restore_leaves_the_other_tenant_alone(stack, restored):
    assert stored(stack.mongo, restored.other.tenant_oid) == restored.other_stored
    tags = get(stack, restored.other, "/v1/tags")["items"]
    assert [t["name"] for t in tags] == ["not-in-the-backup"]


def test_a_tenant_that_exists_is_not_overwritten(stack, launcher, restored):
    run = import_(launcher, restored.env, restored.file)
    assert run.returncode == USAGE_ERROR and "--replace" in run.stderr, run
    assert stored(stack.mongo, restored.tenant_id) == restored.stored


def test_replace_puts_the_tenant_back_as_the_file_has_it(stack, launcher, restored):
    owner = login(stack, restored.slug, restored.email, restored.password)
    r = requests.post(stack.base_url + "/v1/tags", headers=owner.headers,
                      timeout=HTTP_TIMEOUT_S, json={"name": "made-after-the-backup"})
    assert r.status_code == 201, r.text
    run = import_(launcher, restored.env, restored.file, "--replace")
    assert run.returncode == 0, run
    assert stored(stack.mongo, restored.tenant_id) == restored.stored
    r = requests.get(stack.base_url + "/v1/me", headers=owner.headers, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 401, r.text
    owner = login(stack, restored.slug, restored.email, restored.password)
    names = [t["name"] for t in get(stack, owner, "/v1/tags")["items"]]
    assert "made-after-the-backup" not in names and "kept-by-the-backup" in names


def dead_redis(env):
    """env with Redis at a port where nothing listens."""
    return dict(env, TRELLIS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")


def test_with_redis_away_replace_deletes_nothing(stack, launcher, restored):
    run = import_(launcher, dead_redis(restored.env), restored.file, "--replace")
    assert run.returncode == 1 and "Redis" in run.stderr, run
    assert stored(stack.mongo, restored.tenant_id) == restored.stored


def test_with_redis_away_an_import_undoes_what_it_wrote(launcher, seeded, empty_db):
    """The import writes the documents, then cannot end the restored users'
    sessions: it deletes what it wrote, and the tenant slot is empty."""
    env, db = empty_db
    run = import_(launcher, dead_redis(env), seeded.file)
    assert run.returncode == 1 and "Redis" in run.stderr, run
    assert_nothing_written(db, seeded)
    run = import_(launcher, env, seeded.file)
    assert run.returncode == 0, run
    assert stored(db, seeded.tenant_id) == seeded.stored


def test_a_slug_held_by_another_tenant_is_refused_even_with_replace(stack, launcher, seeded,
                                                                   empty_db, tmp_path):
    env, db = empty_db
    lines = read_lines(seeded.file)
    ok = write(tmp_path, "ok.jsonl", "\n".join(lines) + "\n")
    # the fresh database: another tenant already holds the slug
    db["tenants"].insert_one({"_id": ObjectId(), "tenant_id": ObjectId(), "slug": seeded.slug,
                              "name": "Squatter"})
    for extra in ([], ["--replace"]):
        run = import_(launcher, env, ok, *extra)
        assert run.returncode == USAGE_ERROR and "another tenant holds the slug" in run.stderr, run
        assert tenant_docs_anywhere(db, seeded.tenant_id) == 0


def test_a_restore_into_a_fresh_database_is_exact(launcher, seeded, empty_db):
    env, db = empty_db
    run = import_(launcher, env, seeded.file)
    assert run.returncode == 0, run
    assert stored(db, seeded.tenant_id) == seeded.stored
    assert db["_tenant_imports"].count_documents({}) == 0


def test_of_two_imports_at_once_in_two_processes_exactly_one_writes(launcher, seeded, empty_db):
    env, db = empty_db
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(lambda _: import_(launcher, env, seeded.file), range(3)))
    codes = sorted(r.returncode for r in runs)
    assert codes == [0, USAGE_ERROR, USAGE_ERROR], runs
    for r in runs:
        if r.returncode:
            assert ("another import" in r.stderr or "--replace" in r.stderr), r
    assert stored(db, seeded.tenant_id) == seeded.stored


# ---------------------------------------------------------------------------
# bad files: refused before anything is written
# ---------------------------------------------------------------------------

def bad_files(seeded, tmp_path):
    lines = read_lines(seeded.file)
    head = json.loads(lines[0])
    docs = lines[1:-1]
    foreign = json.loads(docs[-1])
    foreign["d"]["tenant_id"] = {"$oid": str(ObjectId())}
    newer = dict(head, migrations=head["migrations"] + ["9999_from_the_future"])
    other_slug = json.loads(lines[1])
    other_slug["d"]["slug"] = "someone-else"
    # a tag renamed by hand: still JSON, still the tenant's
    changed = [ln.replace("kept-by-the-backup", "kept-by-the-backuq") for ln in lines]
    assert changed != lines
    return {
        "empty": ("", "empty"),
        "not JSON": ("{not json\n", "not JSON"),
        "not a backup": ('{"hello": "world"}\n', "not a Trellis tenant backup"),
        "another format version": (json.dumps(dict(head, version=2)) + "\n", "version"),
        "cut short": ("\n".join(lines[:-5]) + "\n", "incomplete"),
        "a document changed": ("\n".join(changed) + "\n", "checksum"),
        "a line after the end": ("\n".join(lines) + "\n" + docs[0] + "\n", "follow the end"),
        "a document of another tenant": (reseal(lines[:-1] + [json.dumps(foreign)]),
                                         "not the file's tenant"),
        "newer migrations": (reseal([json.dumps(newer)] + docs), "migrations"),
        "the tenant record renamed": (reseal([lines[0], json.dumps(other_slug)] + docs[1:]),
                                      "slug"),
        "no tenant record": (reseal([lines[0]] + docs[1:]), "tenant's record exactly once"),
        "the migrations collection": (reseal(lines[:-1] + [json.dumps(
            {"c": "_migrations", "d": json.loads(docs[0])["d"]})]), "collection"),
    }


def test_bad_files_are_refused_and_nothing_is_written(launcher, seeded, empty_db, tmp_path):
    env, db = empty_db
    assert json.loads(read_lines(seeded.file)[1])["c"] == "tenants"
    for name, (text, says) in bad_files(seeded, tmp_path).items():
        path = write(tmp_path, name.replace(" ", "_") + ".jsonl", text)
        run = import_(launcher, env, path)
        assert run.returncode == USAGE_ERROR, (name, run)
        assert says in run.stderr, (name, run)
        assert_nothing_written(db, seeded)
    run = import_(launcher, env, str(tmp_path / "no-such-file.jsonl"))
    assert run.returncode == USAGE_ERROR and "cannot open" in run.stderr, run
    assert_nothing_written(db, seeded)
