// Shared pieces of the console's browser tests: a fresh tenant per file, users
// and API calls over fetch, Debian's Chromium through playwright-core, an axe
// check, screenshots, and a collector that fails a test on any console error.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import assert from "node:assert/strict";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
export const BASE = (process.env.TRELLIS_URL || "http://127.0.0.1:8080").replace(/\/$/, "");
export const APP = BASE + "/app/";
export const CONTROL = process.env.TRELLIS_CONTROL_URL || "";
export const SHOTS = process.env.TRELLIS_SHOTS_DIR || join(here, "..", "..", "..", "build", "console", "shots");
export const PASSWORD = "correct horse battery staple";

export function rid(n = 6) {
  return randomBytes(n).toString("hex");
}

// --- the API, over fetch ---------------------------------------------------
export class ApiError extends Error {
  constructor(status, body, method, path) {
    super(`${method} ${path} -> ${status}: ${JSON.stringify(body)}`);
    this.status = status;
    this.body = body;
  }
}

export async function call(method, path, { token, apiKey, body, headers = {}, ok = true } = {}) {
  const h = { ...headers };
  if (body !== undefined) h["content-type"] = "application/json";
  if (token) h.authorization = "Bearer " + token;
  if (apiKey) h["x-api-key"] = apiKey;
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(BASE + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (res.status === 429 && attempt < 20) {
      const wait = Math.min(5, Number(res.headers.get("retry-after") || "1")) * 1000;
      await new Promise((r) => setTimeout(r, wait));
      continue;
    }
    if (ok && !res.ok) throw new ApiError(res.status, data, method, path);
    return { status: res.status, data, headers: res.headers };
  }
}

// A fresh tenant: its owner, a token for it, and helpers bound to that token.
export async function tenant(prefix = "e2e") {
  const slug = `${prefix}-${rid(5)}`.slice(0, 40);
  const email = `owner@${slug}.example`;
  const { data } = await call("POST", "/v1/signup", {
    body: { tenant_name: "Test " + slug, tenant_slug: slug, email, password: PASSWORD, name: "Olivia Owner" },
  });
  const t = { slug, owner: { email, id: data.user.id, token: data.access_token, name: "Olivia Owner" } };
  t.api = (method, path, body, opts = {}) => call(method, path, { token: t.owner.token, body, ...opts }).then((r) => r.data);
  t.user = async (role, name = role[0].toUpperCase() + role.slice(1) + " " + rid(2)) => {
    const em = `${role}-${rid(3)}@${slug}.example`;
    const u = await t.api("POST", "/v1/users", { email: em, name, roles: [role], password: PASSWORD });
    const login = await call("POST", "/v1/auth/login", { body: { tenant_slug: slug, email: em, password: PASSWORD } });
    return { id: u.id, email: em, name, token: login.data.access_token };
  };
  return t;
}

// --- the browser -------------------------------------------------------------
export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
}

// A page whose console errors and uncaught exceptions are collected; call
// errors.check() at the end of the test (it fails on any).
export async function newPage(b, { viewport = { width: 1280, height: 860 } } = {}) {
  const context = await b.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });
  page.on("pageerror", (e) => errors.push("pageerror: " + (e.stack || e.message)));
  page.errors = {
    list: errors,
    check() { assert.deepEqual(errors, [], "the console logged errors:\n" + errors.join("\n")); },
  };
  return { context, page };
}

export async function signIn(page, slug, email, password = PASSWORD) {
  await page.goto(APP + "#/login");
  await page.getByLabel("Company (tenant)").fill(slug);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

// Waits until the live connection is open (the header's badge says "Live").
export async function live(page) {
  await page.getByTestId("live-state").filter({ hasText: /^Live$/ }).waitFor({ timeout: 20000 });
}

export async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name + ".png"), fullPage: true });
}

// axe-core in the page; fails on serious or critical violations. The console's
// CSP allows no inline script, so axe.min.js is served from the console's own
// origin by a route of the test (the page's CSP stays on).
export async function axe(page, name) {
  const has = await page.evaluate(() => typeof window.axe === "object");
  if (!has) {
    const url = APP + "__axe.min.js";
    await page.route(url, (r) => r.fulfill({ path: require.resolve("axe-core/axe.min.js"), contentType: "text/javascript" }));
    await page.addScriptTag({ url });
  }
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }));
  });
  const bad = result.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad, [], `axe on ${name}: ${JSON.stringify(bad, null, 1)}`);
  return result;
}

// Screenshot and axe check of the screen on display.
export async function review(page, name) {
  await shot(page, name);
  await axe(page, name);
}

// Polls fn until it returns a truthy value, or fails after timeout ms.
export async function until(fn, { timeout = 20000, interval = 100, message = "condition" } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${message}: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

// ERP fixtures: a product with stock in a warehouse, a client, and an order of it.
export async function orderFixture(t, { quantity = 2, price = 12500 } = {}) {
  const sfx = rid(3);
  const product = await t.api("POST", "/v1/erp/products", { sku: "SKU-" + sfx, name: "Widget " + sfx, uom: "pcs", uom_scale: 0,
    price: { amount: price, currency: "EUR" }, tax_rate_bp: 2000, active: true });
  const wh = await t.api("POST", "/v1/erp/warehouses", { code: "W" + sfx, name: "Main " + sfx });
  await t.api("POST", "/v1/erp/stock/moves", { kind: "receipt", product_id: product.id, warehouse_id: wh.id, quantity: 100,
    unit_cost: { amount: 5000, currency: "EUR" } });
  const client = await t.api("POST", "/v1/crm/clients", { name: "Client " + sfx, kind: "company" });
  const order = await t.api("POST", "/v1/erp/orders", { client_id: client.id, warehouse_id: wh.id, currency: "EUR",
    lines: [{ product_id: product.id, quantity, unit_price: { amount: price, currency: "EUR" } }] });
  return { product, wh, client, order };
}
