"""ops/mongodb.md cannot drift from the migrations: its sharding commands
name every collection the migrations create (createIndexes, and the
PostgreSQL steps that create a collection on FerretDB), each once, with the
shard key MongoDB accepts for its unique indexes; the rest is listed as
unsharded, for a reason the migrations show."""

import glob
import json
import os
import re

from conftest import REPO_ROOT

DOC = os.path.join(REPO_ROOT, "ops", "mongodb.md")
SHARD = re.compile(r'sh\.shardCollection\("trellis\.([A-Za-z0-9_]+)", (\{[^}]*\})\)')
FULL_KEY = "{tenant_id: 1, _id: 1}"
TENANT_KEY = "{tenant_id: 1}"


def migrations():
    """{collection: [unique index keys]} over every migration file."""
    files = sorted(glob.glob(os.path.join(REPO_ROOT, "migrations", "*.json"))) + sorted(
        glob.glob(os.path.join(REPO_ROOT, "modules", "*", "migrations", "*.json")))
    assert files
    out = {}
    for path in files:
        with open(path) as f:
            for cmd in json.load(f)["commands"]:
                verb = next(iter(cmd))
                if verb not in ("createIndexes", "postgresqlIndexes"):
                    continue
                uniques = out.setdefault(cmd[verb], [])
                for index in cmd.get("indexes", []):
                    if index.get("unique"):
                        uniques.append(list(index["key"]))
    return out


def doc():
    with open(DOC) as f:
        text = f.read()
    sharded = SHARD.findall(text)
    m = re.search(r"^Unsharded: (.*)\.$", text, re.M)
    assert m, "ops/mongodb.md lost its 'Unsharded:' line"
    return sharded, re.findall(r"`([A-Za-z0-9_]+)`", m.group(1))


def test_every_collection_of_the_migrations_is_sharded_or_said_unsharded_once():
    sharded, unsharded = doc()
    names = [n for n, _ in sharded] + unsharded
    assert len(names) == len(set(names)), "a collection is named twice"
    assert set(names) == set(migrations()), (
        f"missing from ops/mongodb.md: {sorted(set(migrations()) - set(names))}; "
        f"not in any migration: {sorted(set(names) - set(migrations()))}")


def test_each_shard_key_is_one_mongodb_accepts_for_the_unique_indexes():
    colls = migrations()
    for name, key in doc()[0]:
        uniques = colls[name]
        if uniques:
            assert key == TENANT_KEY, f"{name} has unique indexes {uniques}: shard it on {TENANT_KEY}"
            assert all(u[0] == "tenant_id" for u in uniques), (name, uniques)
        else:
            assert key == FULL_KEY, f"{name}: shard it on {FULL_KEY}"


def test_what_stays_unsharded_has_a_reason():
    colls = migrations()
    for name in doc()[1]:
        global_unique = any(u[0] != "tenant_id" for u in colls[name])
        assert name == "_migrations" or global_unique, f"{name} could be sharded"
