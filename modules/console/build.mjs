// The console's build: the OpenAPI document -> the SDK's generated types,
// a type check of everything, then esbuild bundles into build/console/:
//   sdk/trellis.js   the SDK as one ES module (served at /sdk/trellis.js)
//   app/             the web console (served at /app/)
//   test/            with --tests: the SDK's unit tests, for node --test
// Run from anywhere; paths are relative to this file.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const out = join(repo, "build", "console");
const server = process.env.TRELLIS_BIN || join(repo, "build", "trellis");
const withTests = process.argv.includes("--tests");

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "inherit"], ...opts });
}

// 1. the types, from the document the server serves
mkdirSync(join(out), { recursive: true });
mkdirSync(join(here, "sdk", "src", "generated"), { recursive: true });
writeFileSync(join(out, "openapi.json"), run(server, ["openapi"]));
run(join(here, "node_modules", ".bin", "openapi-typescript"),
  [join(out, "openapi.json"), "-o", join(here, "sdk", "src", "generated", "api.d.ts")],
  { stdio: ["ignore", "ignore", "inherit"] });

// 2. the type check (esbuild strips types without checking them)
for (const config of ["tsconfig.json", "tsconfig.test.json"])
  execFileSync(join(here, "node_modules", ".bin", "tsc"), ["-p", join(here, config)], { stdio: "inherit" });

// 3. the bundles
const common = { bundle: true, format: "esm", target: "es2020", minify: true, sourcemap: true,
  legalComments: "none", logLevel: "warning" };
await esbuild.build({ ...common, entryPoints: [join(here, "sdk", "src", "index.ts")],
  outfile: join(out, "sdk", "trellis.js"), platform: "neutral" });
await esbuild.build({ ...common, entryPoints: [join(here, "app", "src", "main.ts")],
  outfile: join(out, "app", "app.js"), platform: "browser" });
for (const f of readdirSync(join(here, "app"))) {
  if (/\.(html|css|svg|png|ico|webmanifest)$/.test(f))
    copyFileSync(join(here, "app", f), join(out, "app", f));
}
if (withTests) {
  const tests = readdirSync(join(here, "sdk", "test")).filter((f) => f.endsWith(".test.ts"));
  await esbuild.build({ ...common, minify: false, entryPoints: tests.map((f) => join(here, "sdk", "test", f)),
    outdir: join(out, "test"), outExtension: { ".js": ".mjs" }, platform: "node" });
}

// 4. gzip copies the server sends to browsers that take gzip (it sends a
//    copy only while it is newer than its file)
for (const dir of ["app", "sdk"]) {
  for (const f of readdirSync(join(out, dir))) {
    if (/\.(html|css|js|map|svg|webmanifest)$/.test(f))
      writeFileSync(join(out, dir, f + ".gz"), gzipSync(readFileSync(join(out, dir, f)), { level: 9 }));
  }
}

// 5. what a browser downloads, gzipped (the console's budget is 150 KB)
const sizes = {};
for (const f of ["sdk/trellis.js", "app/app.js"]) {
  const b = readFileSync(join(out, f));
  sizes[f] = { bytes: b.length, gzip: gzipSync(b, { level: 9 }).length };
}
writeFileSync(join(out, "sizes.json"), JSON.stringify(sizes, null, 2) + "\n");
