// The bundle the server serves must run in browsers and React Native: no
// Node-only globals or modules, no imports of anything (no runtime dependencies).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

/* build/console/test/platform.test.mjs -> build/console/sdk/trellis.js */
const bundle = readFileSync(new URL("../sdk/trellis.js", import.meta.url), "utf8");

test("the SDK bundle uses no Node-only API", () => {
  for (const name of ["Buffer", "process", "require(", "__dirname", "node:", "global."]) {
    assert.equal(bundle.includes(name), false, `trellis.js mentions ${name}`);
  }
});

test("the SDK bundle imports nothing and exports the public API", () => {
  assert.equal(/\bimport\s*[\w{*]|\bimport\(/.test(bundle), false, "trellis.js imports something");
  const exported = /export\s*\{([^}]*)\}/.exec(bundle)?.[1] ?? "";
  const names = exported.split(",").map((p) => p.trim().split(/\s+as\s+/).pop());
  for (const name of ["Trellis", "Live", "Problem", "NetworkError", "memoryStorage", "browserStorage", "Api", "fillPath"])
    assert.ok(names.includes(name), `trellis.js exports ${name}`);
});
