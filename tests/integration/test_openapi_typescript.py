"""A TypeScript client generated from the served document type-checks:
openapi-typescript (pinned in tests/openapi-ts/package.json) turns
/v1/openapi.json into types, and tsc checks tests/openapi-ts/sample.ts
against them - typed calls that must compile, and @ts-expect-error lines
(a lead without a name, an unknown member, a bad enum value) that must not."""

import os
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT

TS_DIR = os.path.join(REPO_ROOT, "tests", "openapi-ts")


def run(args, timeout=300):
    proc = subprocess.run(args, cwd=TS_DIR, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "CI": "true", "NO_COLOR": "1"})
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_generated_typescript_client_type_checks(stack):
    if not shutil.which("npm"):
        pytest.fail("npm not found: ops/deps.sh installs nodejs and npm")
    # the lock file pins every package; npm ci installs exactly that
    if not os.path.exists(os.path.join(TS_DIR, "node_modules", ".package-lock.json")):
        run(["npm", "ci", "--no-audit", "--no-fund"])
    r = stack.get("/v1/openapi.json")
    assert r.status_code == 200, r.text
    os.makedirs(os.path.join(TS_DIR, "generated"), exist_ok=True)
    doc = os.path.join(TS_DIR, "generated", "openapi.json")
    with open(doc, "w", encoding="utf-8") as f:
        f.write(r.text)
    run(["npx", "--no-install", "openapi-typescript", doc, "-o", "generated/api.d.ts"])
    run(["npx", "--no-install", "tsc", "-p", "tsconfig.json"])
