"""`trellis migrate` and the migration checks of `trellis serve`.

The platform's migrations are in migrations/ (migrations_dir), recorded by
name; each module's are in the folder its tr_module declares
(modules/<module>/migrations, relative to the working directory), recorded
as "<module>/<name>".

Each test uses a fresh database (TRELLIS_MONGO_URI path) on the session's
FerretDB and, where it needs its own migrations, a copy of migrations/ in a
temporary directory passed as TRELLIS_MIGRATIONS_DIR, or a copy of the whole
layout (platform and module folders) used as the working directory."""

import datetime
import glob
import hashlib
import json
import os
import re
import signal
import shutil
import subprocess
import time

import pytest

from conftest import REPO_ROOT, sanitizer_hits

MIGRATIONS_DIR = os.path.join(REPO_ROOT, "migrations")
# The modules that declare migrations, in registry order (server/registry.c).
MIGRATING_MODULES = ("identity", "webhooks", "crm", "erp", "bpm")
# migrations/ as it was before modules owned their migrations: what
# databases migrated until then have recorded (byte for byte, checksums
# included).
BEFORE_MODULES_DIR = os.path.join(os.path.dirname(__file__), "migrations_before_modules")
CHANGED_MESSAGE = "was changed after it was applied"
SERVE_REFUSES_WITHIN_S = 10.0
CONCURRENT_ROUNDS = 3
FILLER_COMMANDS = 150  # a slow migration ahead of the scratch one keeps both migrate processes busy together

SCRATCH_ID = "applied-once"
SCRATCH_MIGRATION = {
    "description": "test: a fixed-_id insert that fails with a duplicate key if applied twice, "
                   "plus an auto-_id insert that would simply be doubled",
    "commands": [
        {"insert": "scratch", "documents": [{"_id": SCRATCH_ID, "note": "inserted by a migration"}]},
        {"insert": "scratch_runs", "documents": [{"migration": "0900_scratch_once"}]},
    ],
}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

FILLER_MIGRATION = {
    "description": "test: many small inserts (auto _id) so that applying takes a while",
    "commands": [{"insert": "filler", "documents": [{"n": i}]} for i in range(FILLER_COMMANDS)],
}


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def migration_files(directory):
    return sorted(glob.glob(os.path.join(directory, "[0-9][0-9][0-9][0-9]_*.json")))


def migration_id(path):
    return os.path.basename(path)[:-len(".json")]


def normalized_checksum(value):
    assert isinstance(value, str), f"checksum is not a string: {value!r}"
    value = value.lower()
    return value[len("sha256:"):] if value.startswith("sha256:") else value


def assert_clean(run_or_text, what="trellis"):
    text = run_or_text if isinstance(run_or_text, str) else run_or_text.output
    hits = sanitizer_hits(text)
    assert not hits, f"{what} output contains sanitizer report {hits}:\n{text[-3000:]}"


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    return path


@pytest.fixture
def mig_dir(trellis):
    """A private copy of migrations/ (absolute path)."""
    path = os.path.join(trellis.workdir, "migrations")
    shutil.copytree(MIGRATIONS_DIR, path)
    assert migration_files(path), "migrations/ holds no NNNN_name.json file"
    return path


def private(trellis, migrations_dir=None):
    """(env, database) for a fresh database, optionally with its own migrations dir."""
    db = trellis.fresh_db("mig")
    env = trellis.env(db=db)
    if migrations_dir is not None:
        env["TRELLIS_MIGRATIONS_DIR"] = migrations_dir
    return env, trellis.db(db)


def migrate(trellis, env):
    run = trellis.run("migrate", env=env, timeout=120)
    assert_clean(run, "trellis migrate")
    return run


def module_migrations(root=REPO_ROOT):
    """{record id: path} of the modules' migrations under root."""
    out = {}
    for module in MIGRATING_MODULES:
        for path in migration_files(os.path.join(root, "modules", module, "migrations")):
            out[f"{module}/{migration_id(path)}"] = path
    return out


def all_migrations(platform_dir=MIGRATIONS_DIR, root=REPO_ROOT):
    """{record id: path} of every migration a run applies: the platform's
    (by name) and the modules' ("<module>/<name>")."""
    out = {migration_id(p): p for p in migration_files(platform_dir)}
    out.update(module_migrations(root))
    return out


def has_pg_steps(path):
    with open(path) as f:
        return any("postgresqlIndexes" in c for c in json.load(f).get("commands", []))


def record_ids(migrations):
    """The _migrations ids a run over {record id: path} leaves: one per
    file, and one more, "<id>@postgresql", for a file with steps for the
    PostgreSQL behind FerretDB (the test stack has one)."""
    out = []
    for mid, path in migrations.items():
        out.append(mid)
        if has_pg_steps(path):
            out.append(mid + "@postgresql")
    return sorted(out)


def records(db):
    return {d["_id"]: d for d in db["_migrations"].find()}


def applied(run):
    """The record ids `trellis migrate` said it applied, in order."""
    return re.findall(r"migrations: applying (\S+?)\"", run.output)


def copy_layout(dest, platform_dir=MIGRATIONS_DIR, modules=True):
    """A working directory with its own migrations/ (a copy of platform_dir)
    and modules/<module>/migrations (copies of the repository's, or empty
    when not modules). Returns dest."""
    shutil.copytree(platform_dir, os.path.join(dest, "migrations"))
    for module in MIGRATING_MODULES:
        target = os.path.join(dest, "modules", module, "migrations")
        if modules:
            shutil.copytree(os.path.join(REPO_ROOT, "modules", module, "migrations"), target)
        else:
            os.makedirs(target)
    return dest


def assert_done_record(rec, path, mid=None):
    mid = mid or migration_id(path)
    assert rec is not None, f"no _migrations record for {mid}"
    assert rec.get("state") == "done", f"{mid}: state {rec.get('state')!r}, expected 'done': {rec}"
    assert normalized_checksum(rec.get("checksum")) == sha256_file(path), (
        f"{mid}: checksum {rec.get('checksum')!r} is not the sha256 of the file ({sha256_file(path)})")
    started, finished = rec.get("started_at"), rec.get("finished_at")
    assert isinstance(started, datetime.datetime), f"{mid}: started_at is not a date: {started!r}"
    assert isinstance(finished, datetime.datetime), f"{mid}: finished_at is not a date: {finished!r}"
    assert started <= finished, f"{mid}: started_at {started} after finished_at {finished}"


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------

def test_migrate_twice_records_each_file_once_with_its_checksum(stack, trellis):
    env, db = private(trellis)  # default migrations_dir: ./migrations of the repo (cwd)
    migrations = all_migrations()
    assert {"identity/0001_identity", "webhooks/0001_webhooks", "crm/0001_crm"} <= set(migrations)

    first = migrate(trellis, env)
    assert first.returncode == 0, first
    after_first = records(db)

    second = migrate(trellis, env)
    assert second.returncode == 0, second
    after_second = records(db)

    assert sorted(after_second) == record_ids(migrations), (
        f"_migrations ids {sorted(after_second)} do not match the files {sorted(migrations)}")
    assert db["_migrations"].count_documents({}) == len(record_ids(migrations))
    for mid, path in migrations.items():
        assert_done_record(after_second.get(mid), path, mid)
        assert "covered_by" not in after_second[mid], after_second[mid]
    assert after_second == after_first, "the second `trellis migrate` rewrote records of applied migrations"
    assert applied(second) == [], f"the second `trellis migrate` applied {applied(second)}"


def test_platform_migrations_come_first_then_each_modules_in_registry_order(stack, trellis):
    env, db = private(trellis)
    run = migrate(trellis, env)
    assert run.returncode == 0, run
    platform = sorted(migration_id(p) for p in migration_files(MIGRATIONS_DIR))
    expected = []
    for mid in platform + list(module_migrations()):  # dicts keep registry, then file-name order
        expected.append(mid)
        if has_pg_steps(all_migrations()[mid]):
            expected.append(mid + "@postgresql")
    assert applied(run) == expected, run.output[-3000:]


def test_module_migration_is_applied_once_and_recorded_under_its_module(stack, trellis):
    root = copy_layout(os.path.join(trellis.workdir, "layout"))
    extra = write_json(os.path.join(root, "modules", "crm", "migrations", "0900_scratch_once.json"),
                       SCRATCH_MIGRATION)
    env, db = private(trellis)
    for _ in range(2):
        run = trellis.run("migrate", env=env, cwd=root)
        assert_clean(run, "trellis migrate")
        assert run.returncode == 0, run
    assert db["scratch"].count_documents({"_id": SCRATCH_ID}) == 1
    assert db["scratch_runs"].count_documents({}) == 1, "the module's migration ran twice"
    assert_done_record(db["_migrations"].find_one({"_id": "crm/0900_scratch_once"}), extra,
                       "crm/0900_scratch_once")
    assert db["_migrations"].count_documents({"_id": "0900_scratch_once"}) == 0
    assert sorted(records(db)) == record_ids(all_migrations(os.path.join(root, "migrations"), root))


def test_missing_module_migrations_folder_exits_2_naming_it(stack, trellis):
    root = copy_layout(os.path.join(trellis.workdir, "layout"))
    shutil.rmtree(os.path.join(root, "modules", "webhooks", "migrations"))
    env, db = private(trellis)
    run = trellis.run("migrate", env=env, cwd=root)
    assert_clean(run, "trellis migrate")
    assert run.returncode == 2, run
    assert "modules/webhooks/migrations" in run.output, run
    assert db["_migrations"].count_documents({"_id": {"$regex": "^webhooks/"}}) == 0


def test_concurrent_migrate_on_fresh_database_applies_each_migration_once(stack, trellis, mig_dir):
    write_json(os.path.join(mig_dir, "0800_slow_filler.json"), FILLER_MIGRATION)
    extra = write_json(os.path.join(mig_dir, "0900_scratch_once.json"), SCRATCH_MIGRATION)
    for round_no in range(CONCURRENT_ROUNDS):
        env, db = private(trellis, mig_dir)
        procs = [subprocess.Popen([stack.server_bin, "migrate"], cwd=REPO_ROOT, env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for _ in range(2)]
        outputs = []
        try:
            for p in procs:
                out, _ = p.communicate(timeout=120)
                outputs.append((p.returncode, out.decode("utf-8", "replace")))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=10)
        for code, out in outputs:
            assert_clean(out, "trellis migrate")
        codes = [code for code, _ in outputs]
        assert codes == [0, 0], (f"round {round_no}: concurrent `trellis migrate` exit codes {codes}:\n"
                                 + "\n----\n".join(out[-2000:] for _, out in outputs))
        assert db["scratch"].count_documents({"_id": SCRATCH_ID}) == 1
        assert db["filler"].count_documents({}) == FILLER_COMMANDS, (
            f"round {round_no}: 0800_slow_filler inserted {db['filler'].count_documents({})} documents")
        assert db["scratch_runs"].count_documents({}) == 1, (
            f"round {round_no}: 0900_scratch_once ran {db['scratch_runs'].count_documents({})} times")
        recs = records(db)
        migrations = all_migrations(mig_dir)
        assert sorted(recs) == record_ids(migrations), recs
        assert db["_migrations"].count_documents({}) == len(record_ids(migrations))
        for mid, path in migrations.items():
            assert_done_record(recs.get(mid), path, mid)
    assert os.path.exists(extra)


def edit_applied_migration(trellis, mig_dir):
    """Apply the migrations in mig_dir to a fresh database, then change the
    content of the first one.  Returns (env, edited migration id)."""
    env, db = private(trellis, mig_dir)
    run = migrate(trellis, env)
    assert run.returncode == 0, run
    path = migration_files(mig_dir)[0]
    assert db["_migrations"].count_documents({"_id": migration_id(path), "state": "done"}) == 1
    with open(path) as f:
        doc = json.load(f)
    doc["description"] = doc.get("description", "") + " (edited after it was applied)"
    write_json(path, doc)
    return env, migration_id(path)


def test_serve_refuses_to_start_after_an_applied_migration_changed(stack, trellis, mig_dir):
    env, mid = edit_applied_migration(trellis, mig_dir)
    server = trellis.start("serve", env=env)
    try:
        code = server.wait_exit(SERVE_REFUSES_WITHIN_S)
        out = server.output()
        assert code is not None, (f"serve still running {SERVE_REFUSES_WITHIN_S}s after starting with "
                                  f"changed migration {mid}:\n{server.output_tail()}")
        assert code == 2, f"serve exited {code}, expected 2:\n{out[-2000:]}"
        assert CHANGED_MESSAGE in out, f"no {CHANGED_MESSAGE!r} message:\n{out[-2000:]}"
        assert mid in out, f"the message does not name {mid}:\n{out[-2000:]}"
        assert_clean(out, "trellis serve")
    finally:
        server.kill()


def test_migrate_refuses_after_an_applied_migration_changed(stack, trellis, mig_dir):
    env, mid = edit_applied_migration(trellis, mig_dir)
    run = migrate(trellis, env)
    assert run.returncode == 2, run
    assert CHANGED_MESSAGE in run.output, run
    assert mid in run.output, run


def test_malformed_migration_file_exits_2(stack, trellis, mig_dir):
    with open(os.path.join(mig_dir, "0900_broken.json"), "w") as f:
        f.write('{"description": "not json", "commands": [ {"insert": \n')
    env, db = private(trellis, mig_dir)
    run = migrate(trellis, env)
    assert run.returncode == 2, run
    assert "0900_broken" in run.output, f"the error does not name the malformed file: {run!r}"
    assert db["_migrations"].count_documents({"_id": "0900_broken", "state": "done"}) == 0


FAILING_COMMANDS = {
    # ok: 0 from the database
    "command-error": {"createIndexes": "scratch_fail", "indexes": [{"key": {"a": 1}}]},
    # ok: 1 but writeErrors (duplicate key)
    "write-error": {"insert": "scratch_fail", "documents": [{"_id": "dup"}, {"_id": "dup"}]},
}


@pytest.mark.parametrize("failure", sorted(FAILING_COMMANDS))
def test_failed_migration_is_not_recorded_and_succeeds_once_fixed(stack, trellis, mig_dir, failure):
    path = write_json(os.path.join(mig_dir, "0900_fails.json"), {
        "description": "test: a command that fails",
        "commands": [FAILING_COMMANDS[failure]],
    })
    env, db = private(trellis, mig_dir)

    run = migrate(trellis, env)
    assert run.returncode != 0, f"`trellis migrate` succeeded although 0900_fails failed: {run!r}"
    rec = db["_migrations"].find_one({"_id": "0900_fails"})
    assert rec is None or rec.get("state") != "done", f"failed migration recorded as done: {rec}"

    write_json(path, {
        "description": "test: the fixed migration",
        "commands": [{"insert": "scratch_fixed", "documents": [{"_id": "fixed"}]}],
    })
    run = migrate(trellis, env)
    assert run.returncode == 0, f"`trellis migrate` failed after the migration was fixed: {run!r}"
    assert_done_record(db["_migrations"].find_one({"_id": "0900_fails"}), path)
    assert db["scratch_fixed"].count_documents({"_id": "fixed"}) == 1
    for p in migration_files(mig_dir):
        assert_done_record(db["_migrations"].find_one({"_id": migration_id(p)}), p)


def test_a_step_creating_indexes_that_exist_is_a_no_op(stack, trellis, mig_dir):
    # Running a step again (a claim taken over from a process that died) is
    # harmless: FerretDB v1.24 drops the connection on a createIndexes that
    # names two or more existing indexes, so they are created one by one.
    with open(os.path.join(mig_dir, "0001_platform.json")) as f:
        tags = next(c for c in json.load(f)["commands"] if c.get("createIndexes") == "tags")
    assert len(tags["indexes"]) >= 2
    path = write_json(os.path.join(mig_dir, "0900_tags_again.json"), {
        "description": "test: the tags indexes 0001_platform creates, once more",
        "commands": [tags],
    })
    env, db = private(trellis, mig_dir)
    run = migrate(trellis, env)
    assert run.returncode == 0, run
    assert_done_record(db["_migrations"].find_one({"_id": "0900_tags_again"}), path)
    assert {i["name"] for i in tags["indexes"]} <= set(db["tags"].index_information())


# ---------------------------------------------------------------------------
# databases migrated before modules owned their migrations
# ---------------------------------------------------------------------------

def migrate_before_modules(trellis, env, db, names=None):
    """Migrate the database of env as Trellis did before modules owned
    their migrations: migrations/ holding the old files (all, or those
    named), no module migrations. Returns the records it left."""
    old = os.path.join(trellis.workdir, "before-modules")
    os.makedirs(old)
    for path in migration_files(BEFORE_MODULES_DIR):
        if names is None or migration_id(path) in names:
            shutil.copy(path, old)
    root = copy_layout(os.path.join(trellis.workdir, "old-layout"), platform_dir=old, modules=False)
    run = trellis.run("migrate", env=env, cwd=root)
    assert_clean(run, "trellis migrate")
    assert run.returncode == 0, run
    return records(db)


def gin_index_names(stack, db_name, coll):
    table = stack.psql(
        f"SELECT _jsonb->>'table' FROM \"{db_name}\"._ferretdb_database_metadata "
        f"WHERE _jsonb->'_id' = to_jsonb('{coll}'::text)").strip()
    assert table, f"FerretDB has no table for {coll}"
    rows = stack.psql(f"SELECT indexname FROM pg_indexes WHERE schemaname = '{db_name}' "
                      f"AND tablename = '{table}'").split()
    return table, set(rows)


def test_database_migrated_before_modules_starts_without_applying_anything(stack, trellis):
    env, db = private(trellis)
    db_name = db.name
    old = migrate_before_modules(trellis, env, db)
    assert sorted(old) == record_ids({migration_id(p): p for p in migration_files(BEFORE_MODULES_DIR)})

    # Take away what the moved steps build: if the new layout ran them
    # again, these would come back.
    db["leads"].drop_index("t_email")
    table, gin = gin_index_names(stack, db_name, "webhooks")
    assert f"{table}_eq_active" in gin
    stack.psql(f'DROP INDEX "{db_name}"."{table}_eq_active"')

    run = migrate(trellis, env)  # the repository's layout
    assert run.returncode == 0, run
    new = all_migrations()
    # only what was written after modules owned their migrations (a module
    # added since, like the ERP's) is applied: nothing moved runs again
    added = sorted(mid for mid in record_ids(new) if mid not in old and
                   "replaces" not in json.load(open(new[mid.removesuffix("@postgresql")])))
    assert sorted(applied(run)) == added, f"migrations applied again on a database that had them: {applied(run)}"
    recs = records(db)
    for mid, rec in old.items():
        assert recs[mid] == rec, f"the record of {mid} changed"
    for mid in record_ids(new):
        if mid in old:
            continue
        path = new[mid.removesuffix("@postgresql")]
        assert_done_record(recs.get(mid), path, mid)
        if mid in added:
            continue
        replaced = json.load(open(path))["replaces"]
        expect = [r for r in replaced if r.endswith("@postgresql") == mid.endswith("@postgresql")]
        assert recs[mid]["covered_by"] == expect, recs[mid]
    assert sorted(recs) == sorted(set(old) | set(record_ids(new)))
    assert "t_email" not in db["leads"].index_information()
    assert f"{table}_eq_active" not in gin_index_names(stack, db_name, "webhooks")[1]

    server = trellis.start("serve", env=env)
    try:
        body = server.wait_http("/readyz").json()
        assert body["checks"]["migrations"] == "ok", body
        assert "applying" not in server.output(), server.output_tail()
        server.signal(signal.SIGTERM)
        assert server.wait_exit(SERVE_REFUSES_WITHIN_S) == 0, server.output_tail()
        assert_clean(server.output(), "trellis serve")
    finally:
        server.kill()


def test_database_migrated_before_0006_gets_the_moved_steps_applied(stack, trellis):
    # Migrated before 0006_exact_and_indexed existed: what replaces it runs.
    env, db = private(trellis)
    before_0006 = {"0001_platform", "0002_identity", "0003_api_keys_audit", "0004_events_outbox",
                   "0005_crm"}
    old = migrate_before_modules(trellis, env, db, names=before_0006)
    assert "0006_exact_and_indexed" not in old
    assert "list_bucket" not in db["leads"].index_information()

    run = migrate(trellis, env)
    assert run.returncode == 0, run
    done = applied(run)
    for mid in ("0006_claims_and_buckets", "0007_registers", "identity/0001_identity",
                "webhooks/0001_webhooks", "crm/0001_crm", "crm/0001_crm@postgresql"):
        assert mid in done, f"{mid} was not applied: {done}"
    recs = records(db)
    for mid in record_ids(all_migrations()):
        assert recs.get(mid, {}).get("state") == "done", f"{mid}: {recs.get(mid)}"
        assert "covered_by" not in recs[mid], recs[mid]
    assert "list_bucket" in db["leads"].index_information()
    assert "t_email" in db["leads"].index_information()


def test_replaces_that_is_not_a_list_of_names_exits_2(stack, trellis, mig_dir):
    write_json(os.path.join(mig_dir, "0900_bad_replaces.json"), {
        "description": "test: replaces must be a list of names",
        "replaces": "0001_platform",
        "commands": [{"insert": "scratch_bad", "documents": [{"_id": 1}]}],
    })
    env, db = private(trellis, mig_dir)
    run = migrate(trellis, env)
    assert run.returncode == 2, run
    assert "0900_bad_replaces" in run.output and "replaces" in run.output, run
    assert db["scratch_bad"].count_documents({}) == 0
