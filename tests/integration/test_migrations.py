"""`trellis migrate` and the migration checks of `trellis serve`.

Each test uses a fresh database (TRELLIS_MONGO_URI path) on the session's
FerretDB and, where it needs its own migrations, a copy of migrations/ in a
temporary directory passed as TRELLIS_MIGRATIONS_DIR."""

import datetime
import glob
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import REPO_ROOT, sanitizer_hits

MIGRATIONS_DIR = os.path.join(REPO_ROOT, "migrations")
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


def record_ids(files):
    """The _migrations ids a run over files leaves: one per file, and one
    more, "<name>@postgresql", for a file with steps for the PostgreSQL
    behind FerretDB (the test stack has one)."""
    out = []
    for path in files:
        out.append(migration_id(path))
        with open(path) as f:
            if any("postgresqlIndexes" in c for c in json.load(f).get("commands", [])):
                out.append(migration_id(path) + "@postgresql")
    return sorted(out)


def records(db):
    return {d["_id"]: d for d in db["_migrations"].find()}


def assert_done_record(rec, path):
    mid = migration_id(path)
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
    files = migration_files(MIGRATIONS_DIR)

    first = migrate(trellis, env)
    assert first.returncode == 0, first
    after_first = records(db)

    second = migrate(trellis, env)
    assert second.returncode == 0, second
    after_second = records(db)

    assert sorted(after_second) == record_ids(files), (
        f"_migrations ids {sorted(after_second)} do not match the files {[migration_id(p) for p in files]}")
    assert db["_migrations"].count_documents({}) == len(record_ids(files))
    for path in files:
        assert_done_record(after_second.get(migration_id(path)), path)
    assert after_second == after_first, "the second `trellis migrate` rewrote records of applied migrations"


def test_concurrent_migrate_on_fresh_database_applies_each_migration_once(stack, trellis, mig_dir):
    write_json(os.path.join(mig_dir, "0800_slow_filler.json"), FILLER_MIGRATION)
    extra = write_json(os.path.join(mig_dir, "0900_scratch_once.json"), SCRATCH_MIGRATION)
    files = migration_files(mig_dir)
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
        assert sorted(recs) == record_ids(files), recs
        assert db["_migrations"].count_documents({}) == len(record_ids(files))
        for path in files:
            assert_done_record(recs.get(migration_id(path)), path)
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
