// Requests: Idempotency-Key, resending, If-Match, query strings, answers and
// problem+json errors.

import assert from "node:assert/strict";
import { test } from "node:test";
import { NetworkError, Problem, Trellis } from "../src/index";
import { accessToken, FakeClock, fakeFetch, flush, json, noContent, problem, type Handler } from "./fakes";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function client(handler: Handler, extra: Record<string, unknown> = {}) {
  const clock = new FakeClock();
  const fetch = fakeFetch(handler);
  const c = new Trellis({ baseUrl: "https://api.example.com/", fetch, now: clock.now, timers: clock, ...extra });
  await c.useTokens({ access_token: accessToken(1, clock.time), refresh_token: "R1", expires_in: 900 });
  return { c, fetch, clock };
}

/* runs `p` while moving the fake clock, so the SDK's waits between attempts pass */
async function withTime<T>(clock: FakeClock, p: Promise<T>): Promise<T> {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  for (let i = 0; i < 50 && !done; i++) await clock.advance(1000);
  return p;
}

test("a create gets an Idempotency-Key, and the SDK's resends reuse it", async () => {
  const { c, fetch, clock } = await client((_req, n) => {
    if (n === 1) throw new TypeError("fetch failed");
    if (n === 2) return problem(503, "unavailable", "mongo down", {}, { "retry-after": "1" });
    return json(201, { id: "l1", name: "Ada" });
  });
  const lead = await withTime(clock, c.request<{ id: string }>("POST", "/v1/crm/leads", { body: { name: "Ada", email: "a@b.co" } }));
  assert.equal(lead.id, "l1");
  assert.equal(fetch.seen.length, 3);
  const keys = fetch.seen.map((r) => r.headers["idempotency-key"]);
  assert.match(keys[0], UUID);
  assert.deepEqual(keys, [keys[0], keys[0], keys[0]]);
  assert.deepEqual(fetch.seen[2].body, { name: "Ada", email: "a@b.co" });
  assert.ok(clock.delays.includes(1000), "Retry-After: 1 was waited for");
});

test("each call gets its own key; a given key is sent as is; false sends none", async () => {
  const { c, fetch } = await client(() => json(201, {}));
  await c.request("POST", "/v1/crm/leads", { body: {} });
  await c.request("POST", "/v1/crm/leads", { body: {} });
  await c.request("POST", "/v1/erp/orders/o1/payments", { body: {}, idempotencyKey: "pay-o1-1" });
  await c.request("POST", "/v1/crm/deals/d1/won", { idempotencyKey: false });
  await c.request("PATCH", "/v1/crm/leads/l1", { body: {}, idempotencyKey: true });
  await c.request("GET", "/v1/crm/leads");
  const keys = fetch.seen.map((r) => r.headers["idempotency-key"]);
  assert.notEqual(keys[0], keys[1]);
  assert.equal(keys[2], "pay-o1-1");
  assert.equal(keys[3], undefined);
  assert.match(keys[4], UUID);
  assert.equal(keys[5], undefined);
});

test("a PATCH without If-Match is not sent twice when its answer is lost", async () => {
  const { c, fetch } = await client(() => {
    throw new TypeError("connection reset");
  });
  await assert.rejects(c.request("PATCH", "/v1/crm/leads/l1", { body: { name: "B" } }), NetworkError);
  assert.equal(fetch.seen.length, 1);
});

test("a GET is sent again after no answer, then gives up with NetworkError", async () => {
  const { c, fetch, clock } = await client(() => {
    throw new TypeError("offline");
  });
  await assert.rejects(withTime(clock, c.request("GET", "/v1/crm/leads")), (e: unknown) =>
    e instanceof NetworkError && e.cause instanceof TypeError);
  assert.equal(fetch.seen.length, 3, "the first try and two more");
});

test("a 503 whose Retry-After is long is left to the app", async () => {
  const { c, fetch } = await client(() => problem(503, "unavailable", "", {}, { "retry-after": "120" }));
  await assert.rejects(c.request("GET", "/v1/crm/leads"), (e: unknown) => e instanceof Problem && e.status === 503 && e.retryAfter === 120);
  assert.equal(fetch.seen.length, 1);
});

test("If-Match is the quoted version; an ETag passes unchanged", async () => {
  const { c, fetch } = await client(() => json(200, {}));
  await c.request("PATCH", "/v1/crm/leads/l1", { body: {}, ifMatch: 7 });
  await c.request("DELETE", "/v1/crm/leads/l1", { ifMatch: '"8"' });
  assert.equal(fetch.seen[0].headers["if-match"], '"7"');
  assert.equal(fetch.seen[1].headers["if-match"], '"8"');
});

test("the URL joins baseUrl, path and a query without empty values", async () => {
  const { c, fetch } = await client(() => json(200, { items: [], next_cursor: null }));
  await c.request("GET", "/v1/crm/leads", { query: { status: "new", owner_id: undefined, q: "a&b c", limit: 5, active: true, x: null } });
  assert.equal(fetch.seen[0].url, "https://api.example.com/v1/crm/leads?status=new&q=a%26b%20c&limit=5&active=true");
  assert.equal(fetch.seen[0].headers.authorization?.startsWith("Bearer "), true);
  assert.equal(fetch.seen[0].headers["content-type"], undefined, "no body, no content type");
});

test("problem+json becomes a Problem with its field errors", async () => {
  const { c } = await client(() => problem(422, "validation", "the lead is not valid", {
    errors: [{ field: "email", message: "is not an email" }, { field: "name", message: "is required" },
      { field: "email", message: "is too long" }, { nonsense: true }],
  }));
  const e = await c.request("POST", "/v1/crm/leads", { body: {} }).catch((x: unknown) => x);
  assert.ok(e instanceof Problem);
  assert.ok(e instanceof Error);
  assert.equal(e.status, 422);
  assert.equal(e.type, "https://trellis.dev/errors/validation");
  assert.equal(e.slug, "validation");
  assert.equal(e.title, "validation");
  assert.equal(e.detail, "the lead is not valid");
  assert.equal(e.requestId, "req-1");
  assert.equal(e.errors.length, 3);
  assert.deepEqual(e.fieldErrors(), { email: "is not an email; is too long", name: "is required" });
  assert.match(e.message, /not valid/);
});

test("an error that is not JSON is still a Problem with its status", async () => {
  const { c } = await client(() => new Response("<html>Bad Gateway</html>", { status: 502, statusText: "Bad Gateway", headers: { "content-type": "text/html" } }));
  const e = await c.request("GET", "/v1/me").catch((x: unknown) => x);
  assert.ok(e instanceof Problem);
  assert.equal(e.status, 502);
  assert.equal(e.type, "about:blank");
  assert.equal(e.slug, "");
  assert.equal(e.title, "Bad Gateway");
  assert.equal(e.detail, "<html>Bad Gateway</html>");
  assert.deepEqual(e.errors, []);
  assert.deepEqual(e.fieldErrors(), {});
});

test("204 answers undefined and a non-JSON success answers its text", async () => {
  const { c } = await client((req) => (req.method === "DELETE" ? noContent()
    : new Response("<definitions/>", { status: 200, headers: { "content-type": "application/xml" } })));
  assert.equal(await c.request("DELETE", "/v1/crm/leads/l1"), undefined);
  assert.equal(await c.request("GET", "/v1/bpm/definitions/f/bpmn"), "<definitions/>");
});

test("a string body with its own content type is sent as is", async () => {
  const { c, fetch } = await client(() => json(201, {}));
  await c.request("POST", "/v1/bpm/definitions", { body: "<definitions/>", headers: { "Content-Type": "application/xml" } });
  assert.equal(fetch.seen[0].body, "<definitions/>");
  assert.equal(fetch.seen[0].headers["content-type"], "application/xml");
});

test("an aborted request rejects with the abort and is not sent again", async () => {
  const ctl = new AbortController();
  const { c, fetch } = await client(() => {
    ctl.abort();
    const e = new Error("aborted");
    e.name = "AbortError";
    throw e;
  });
  await assert.rejects(c.request("GET", "/v1/crm/leads", { signal: ctl.signal }), (e: unknown) => (e as Error).name === "AbortError");
  assert.equal(fetch.seen.length, 1);
});

test("an API key is sent instead of a bearer token, and a 401 is not refreshed", async () => {
  const clock = new FakeClock();
  const fetch = fakeFetch(() => problem(401, "unauthorized"));
  const c = new Trellis({ fetch, apiKey: "tk_live_1", now: clock.now, timers: clock });
  assert.equal(c.signedIn, true);
  await assert.rejects(c.request("GET", "/v1/crm/leads"), Problem);
  assert.equal(fetch.seen.length, 1);
  assert.equal(fetch.seen[0].headers["x-api-key"], "tk_live_1");
  assert.equal(fetch.seen[0].headers.authorization, undefined);
  assert.equal(fetch.seen[0].url, "/v1/crm/leads", "same origin when baseUrl is empty");
  await flush();
});

test("a fetch that must not be called as a method (window.fetch) is called as a plain function", async () => {
  const f = fakeFetch(() => json(200, { ok: true }));
  function strictFetch(this: unknown, input: RequestInfo | URL, init?: RequestInit) {
    if (this !== undefined && this !== globalThis) throw new TypeError("Illegal invocation");
    return f(input, init);
  }
  const c = new Trellis({ fetch: strictFetch as typeof fetch, apiKey: "k" });
  assert.deepEqual(await c.request("GET", "/v1/me"), { ok: true });
});
