"""The embedded database's indexes: FerretDB v1.24 pushes a top-level
equality down to PostgreSQL as `_jsonb->'f' @> v`, which only a GIN index on
that expression serves. Migrations build one for every field the API filters
on by equality; these tests read PostgreSQL's catalog and FerretDB's own
`explain` to see that they exist and that the planner uses them."""

import glob
import json
import os

from conftest import REPO_ROOT, signup

# The platform's migrations and the modules' (modules/<module>/migrations).
MIGRATIONS = [os.path.join(REPO_ROOT, "migrations")] + sorted(
    glob.glob(os.path.join(REPO_ROOT, "modules", "*", "migrations")))


def declared_equality_fields():
    out = {}
    for path in sorted(p for d in MIGRATIONS for p in glob.glob(os.path.join(d, "*.json"))):
        with open(path) as f:
            for cmd in json.load(f)["commands"]:
                if "postgresqlIndexes" in cmd:
                    out.setdefault(cmd["postgresqlIndexes"], set()).update(cmd["equality"])
    return out


def table_of(stack, coll):
    rows = stack.psql(
        f"SELECT _jsonb->>'table' FROM \"{stack.mongo.name}\"._ferretdb_database_metadata "
        f"WHERE _jsonb->'_id' = to_jsonb('{coll}'::text)").split()
    assert len(rows) == 1, f"FerretDB has no table for {coll}"
    return rows[0]


def test_every_declared_equality_field_has_a_valid_gin_index(stack):
    fields = declared_equality_fields()
    assert {"leads", "deals", "users", "webhooks", "_claims"} <= set(fields)
    for coll, names in fields.items():
        table = table_of(stack, coll)
        rows = stack.psql(
            "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
            f"JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = '{stack.mongo.name}' "
            f"AND t.relname = '{table}'").splitlines()
        found = {}
        for row in rows:
            name, valid, definition = row.split("|", 2)
            found[name] = (valid, definition)
        for field in names:
            name = f"{table}_eq_{field}"
            assert name in found, f"{coll}.{field}: no index {name} among {sorted(found)}"
            valid, definition = found[name]
            assert valid == "t", f"{name} is not valid"
            assert "USING gin" in definition and "jsonb_path_ops" in definition, definition
            assert f"'{field}'" in definition, definition


def test_the_planner_makes_a_plan_for_each_bound_field_name(stack):
    # FerretDB binds the field name itself ($1 in _jsonb->$1): a generic plan
    # cannot match an expression index, so plans are made per execution
    assert stack.psql("SHOW plan_cache_mode").strip() == "force_custom_plan"


def test_a_lead_lookup_by_email_is_an_index_scan_after_many_runs(stack):
    acct = signup(stack)
    for i in range(30):
        r = stack.post("/v1/crm/leads", headers=acct.headers,
                       json={"name": f"Indexed {i}", "email": f"indexed-{i}@example.com"})
        assert r.status_code == 201, r.text
    filt = {"tenant_id": acct.tenant_oid, "email": "indexed-7@example.com"}
    for _ in range(12):  # past the five runs after which PostgreSQL may go generic
        assert stack.mongo.leads.find_one(filt)["name"] == "Indexed 7"
    plan = json.dumps(stack.mongo.command("explain", {"find": "leads", "filter": filt}), default=str)
    table = table_of(stack, "leads")
    assert "Seq Scan" not in plan, plan[:2000]
    assert f"{table}_eq_email" in plan or f"{table}_eq_tenant_id" in plan, plan[:2000]
