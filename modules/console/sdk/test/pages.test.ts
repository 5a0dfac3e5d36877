// Lists: one page, and iteration across pages.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Trellis } from "../src/index";
import { fakeFetch, json } from "./fakes";

/* 5 leads in pages of 2, the cursor being the next index */
function pagedServer() {
  const all = [1, 2, 3, 4, 5].map((n) => ({ id: `l${n}` }));
  return fakeFetch((req) => {
    const u = new URL(req.url, "https://x");
    const from = Number(u.searchParams.get("cursor") || 0);
    const limit = Number(u.searchParams.get("limit"));
    const next = from + limit < all.length ? String(from + limit) : null;
    return json(200, { items: all.slice(from, from + limit), next_cursor: next });
  });
}

test("iterate walks three pages and keeps the query", async () => {
  const fetch = pagedServer();
  const c = new Trellis({ fetch, apiKey: "k" });
  const ids: string[] = [];
  for await (const lead of c.iterate<{ id: string }>("/v1/crm/leads", { limit: 2, status: "new" })) ids.push(lead.id);
  assert.deepEqual(ids, ["l1", "l2", "l3", "l4", "l5"]);
  assert.deepEqual(fetch.seen.map((r) => r.url), [
    "/v1/crm/leads?limit=2&status=new",
    "/v1/crm/leads?limit=2&status=new&cursor=2",
    "/v1/crm/leads?limit=2&status=new&cursor=4",
  ]);
});

test("iterate fetches a page only when the items before it are used", async () => {
  const fetch = pagedServer();
  const c = new Trellis({ fetch, apiKey: "k" });
  const it = c.iterate<{ id: string }>("/v1/crm/leads", { limit: 2 });
  assert.equal((await it.next()).value.id, "l1");
  assert.equal((await it.next()).value.id, "l2");
  assert.equal(fetch.seen.length, 1);
  await it.return?.(undefined);
});

test("page answers items and next_cursor", async () => {
  const c = new Trellis({ fetch: pagedServer(), apiKey: "k" });
  const p = await c.page<{ id: string }>("/v1/crm/leads", { limit: 2, cursor: "2" });
  assert.deepEqual(p, { items: [{ id: "l3" }, { id: "l4" }], next_cursor: "4" });
});

test("the changes feed's next/has_more is a page too, continued with since", async () => {
  const fetch = fakeFetch((req) => {
    const since = new URL(req.url, "https://x").searchParams.get("since");
    return since === "5-0" ? json(200, { items: [{ id: "6-0" }], next: "6-0", has_more: false })
      : json(200, { items: [{ id: "4-0" }, { id: "5-0" }], next: "5-0", has_more: true });
  });
  const c = new Trellis({ fetch, apiKey: "k" });
  assert.deepEqual(await c.page("/v1/changes", { since: "3-0" }), { items: [{ id: "4-0" }, { id: "5-0" }], next_cursor: "5-0" });
  const ids: string[] = [];
  for await (const ch of c.iterate<{ id: string }>("/v1/changes", { since: "3-0" })) ids.push(ch.id);
  assert.deepEqual(ids, ["4-0", "5-0", "6-0"]);
});

test("a cursor that comes round again ends the iteration instead of looping", async () => {
  const fetch = fakeFetch(() => json(200, { items: [{ id: "x" }], next_cursor: "same" }));
  const c = new Trellis({ fetch, apiKey: "k" });
  const ids: string[] = [];
  for await (const x of c.iterate<{ id: string }>("/v1/crm/leads")) ids.push(x.id);
  assert.equal(fetch.seen.length, 2);
  assert.deepEqual(ids, ["x", "x"]);
});
