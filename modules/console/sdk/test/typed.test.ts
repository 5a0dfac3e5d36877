// Typed calls from the generated OpenAPI types. The @ts-expect-error lines
// are part of the test: the build type-checks this file, and fails if any of
// those calls stops being a compile error.

import assert from "node:assert/strict";
import { test } from "node:test";
import { fillPath, Trellis, type Schema } from "../src/index";
import { fakeFetch, json, noContent } from "./fakes";

const lead = { id: "0123456789abcdef01234567", created_at: "2026-11-22T16:20:07.123Z",
  updated_at: "2026-11-22T16:20:07.123Z", version: 3, name: "Ada", email: "ada@example.com" };

function client() {
  const fetch = fakeFetch((req) => {
    if (req.method === "DELETE") return noContent();
    if (req.url.includes("/v1/crm/leads?")) {
      const cursor = new URL(req.url, "https://x").searchParams.get("cursor");
      return json(200, cursor ? { items: [{ ...lead, id: "b" }], next_cursor: null } : { items: [lead], next_cursor: "n1" });
    }
    return json(req.method === "POST" ? 201 : 200, lead);
  });
  return { fetch, c: new Trellis({ fetch, apiKey: "k" }) };
}

test("api.get fills the path and answers the schema's type", async () => {
  const { c, fetch } = client();
  const got = await c.api.get("/v1/crm/leads/{id}", { path: { id: lead.id } });
  const name: string | undefined = got.name; /* typed as Lead */
  const version: number = got.version;
  assert.equal(name, "Ada");
  assert.equal(version, 3);
  assert.equal(fetch.seen[0].url, `/v1/crm/leads/${lead.id}`);
  assert.equal(fetch.seen[0].method, "GET");
});

test("api.post sends the typed body with an Idempotency-Key; patch and delete take If-Match", async () => {
  const { c, fetch } = client();
  const body: Schema<"LeadCreate"> = { name: "Ada", email: "ada@example.com", source: { channel: "web" } };
  const created = await c.api.post("/v1/crm/leads", { body });
  assert.equal(created.id, lead.id);
  assert.deepEqual(fetch.seen[0].body, body);
  assert.ok(fetch.seen[0].headers["idempotency-key"]);
  await c.api.patch("/v1/crm/leads/{id}", { path: { id: lead.id }, body: { status: "contacted" }, ifMatch: created.version });
  assert.equal(fetch.seen[1].method, "PATCH");
  assert.equal(fetch.seen[1].headers["if-match"], '"3"');
  const gone = await c.api.delete("/v1/crm/leads/{id}", { path: { id: lead.id }, ifMatch: 4 });
  assert.equal(gone, undefined);
});

test("api.get passes typed query parameters, and api.iterate yields typed items across pages", async () => {
  const { c, fetch } = client();
  const page = await c.api.page("/v1/crm/leads", { query: { status: "new", limit: 1 } });
  assert.equal(page.next_cursor, "n1");
  assert.equal(fetch.seen[0].url, "/v1/crm/leads?status=new&limit=1");
  const ids: string[] = [];
  for await (const l of c.api.iterate("/v1/crm/leads", { query: { limit: 1 } })) ids.push(l.id);
  assert.deepEqual(ids, [lead.id, "b"]);
});

test("path parameters are escaped, and a missing one is an error before any request", () => {
  assert.equal(fillPath("/v1/erp/periods/{period}/close", { period: "2026/11" }), "/v1/erp/periods/2026%2F11/close");
  assert.throws(() => fillPath("/v1/crm/leads/{id}", {}), /"id"/);
});

test("wrong paths, missing parameters and wrong bodies do not compile", () => {
  const { c } = client();
  /* never run: only their compile errors are the test */
  const never = () => {
    // @ts-expect-error no such path
    void c.api.get("/v1/crm/leeds");
    // @ts-expect-error the path needs {id}
    void c.api.get("/v1/crm/leads/{id}");
    // @ts-expect-error a lead's name is a string
    void c.api.post("/v1/crm/leads", { body: { name: 42 } });
    // @ts-expect-error a create needs a body
    void c.api.post("/v1/crm/leads");
    // @ts-expect-error not a lead status
    void c.api.patch("/v1/crm/leads/{id}", { path: { id: "x" }, body: { status: "won" } });
    // @ts-expect-error leads cannot be PUT
    void c.api.put("/v1/crm/leads/{id}", { path: { id: "x" } });
    // @ts-expect-error unknown query parameter
    void c.api.get("/v1/crm/leads", { query: { colour: "red" } });
  };
  /* answers are the schemas' types, not `any` */
  const answers = async () => {
    const one = await c.api.get("/v1/crm/leads/{id}", { path: { id: "x" } });
    // @ts-expect-error a lead's name is not a number
    const n: number = one.name;
    for await (const item of c.api.iterate("/v1/crm/leads")) {
      // @ts-expect-error a list item is a Lead, which has no amount
      void item.amount;
    }
    const me = await c.me();
    // @ts-expect-error permissions are strings
    const p: number[] = me.permissions;
    return [n, p];
  };
  assert.equal(typeof answers, "function");
  assert.equal(typeof never, "function");
});
