// The live connection against a WebSocket whose server side the test plays.

import assert from "node:assert/strict";
import { test } from "node:test";
import { memoryStorage, Trellis, type LiveEvent } from "../src/index";
import { BACKOFF_BASE_MS, BACKOFF_CAP_MS } from "../src/timers";
import { STABLE_MS } from "../src/live";
import { accessToken, event, FakeClock, fakeFetch, fakeSocketClass, flush, json, problem } from "./fakes";

async function setup(opts: { random?: () => number; resumeFrom?: string; refreshOk?: boolean } = {}) {
  const clock = new FakeClock();
  const storage = memoryStorage();
  if (opts.resumeFrom) storage.set("trellis.resume", opts.resumeFrom);
  const Socket = fakeSocketClass();
  let n = 1;
  const fetch = fakeFetch((req) => {
    if (!req.url.endsWith("/v1/auth/refresh")) return json(200, {});
    if (opts.refreshOk === false) return problem(401, "unauthorized");
    n++;
    return json(200, { access_token: accessToken(n, clock.time), refresh_token: `R${n}`, expires_in: 900 });
  });
  const client = new Trellis({ baseUrl: "https://api.example.com", fetch, storage, WebSocket: Socket,
    now: clock.now, timers: clock, random: opts.random || (() => 0.5) });
  const token = accessToken(1, clock.time);
  await client.useTokens({ access_token: token, refresh_token: "R1", expires_in: 900 });
  const ended: string[] = [];
  client.onSessionEnded((r) => ended.push(r));
  return { clock, storage, Socket, client, fetch, token, ended };
}

function collect(live: ReturnType<Trellis["live"]>) {
  const events: LiveEvent[] = [];
  const resyncs: string[] = [];
  const states: string[] = [];
  const errors: { code: string }[] = [];
  live.on("event", (e) => events.push(e));
  live.on("resync_required", (r) => resyncs.push(r));
  live.on("state", (s) => states.push(s));
  live.on("error", (e) => errors.push(e));
  return { events, resyncs, states, errors };
}

test("the auth frame carries the token, the topics and the stored resume id", async () => {
  const { Socket, client, token } = await setup({ resumeFrom: "1700000000000-3" });
  const live = client.live({ topics: ["crm.leads", "bpm.tasks"] });
  await flush();
  const ws = Socket.last();
  assert.equal(ws.url, "wss://api.example.com/v1/ws");
  assert.equal(live.state, "connecting");
  ws.open();
  assert.deepEqual(ws.sent[0], { type: "auth", token, resume_from: "1700000000000-3", topics: ["crm.leads", "bpm.tasks"] });
  ws.frame({ type: "ready", user_id: "u1", tenant_id: "t1", last_event_id: "1700000000000-9" });
  assert.equal(live.state, "open");
});

test("every delivered event's id is kept in storage as the resume id", async () => {
  const { Socket, client, storage } = await setup();
  const live = client.live({ topics: ["crm.leads"], resumeKey: "app.resume" });
  const seen = collect(live);
  await flush();
  Socket.last().accept(null);
  Socket.last().frame(event("100-0"));
  await flush();
  assert.equal(await storage.get("app.resume"), "100-0");
  Socket.last().frame(event("100-1"));
  await flush();
  assert.equal(await storage.get("app.resume"), "100-1");
  assert.deepEqual(seen.events.map((e) => e.id), ["100-0", "100-1"]);
  assert.deepEqual(seen.events[0], { id: "100-0", topic: "crm.leads", event: "crm.lead.created", entity_id: "l1",
    ts: "2026-11-22T16:20:07.123Z", data: { id: "l1" } });
});

test("before any event, the server's head from the ready frame is the resume id", async () => {
  const { Socket, client, storage } = await setup();
  client.live({ topics: ["crm.leads"] });
  await flush();
  Socket.last().accept("42-7");
  await flush();
  assert.equal(await storage.get("trellis.resume"), "42-7");
});

test("each event id is delivered once: repeats and replays of older ids are dropped", async () => {
  const { Socket, client } = await setup();
  const seen = collect(client.live({ topics: ["crm.leads"] }));
  await flush();
  const ws = Socket.last();
  ws.accept(null);
  for (const id of ["9-0", "9-1", "9-1", "9-0", "10-0", "10-0", "11-0"]) ws.frame(event(id));
  /* "10-0" < "9-1" as text: ids must compare as numbers */
  assert.deepEqual(seen.events.map((e) => e.id), ["9-0", "9-1", "10-0", "11-0"]);
});

test("after a reconnect the topics are restored and the stream resumes after the last event", async () => {
  const { Socket, client, clock } = await setup();
  const live = client.live({ topics: ["crm.leads"] });
  const seen = collect(live);
  await flush();
  Socket.last().accept("5-0");
  live.subscribe(["erp.orders"]);
  live.unsubscribe(["crm.leads"]);
  live.subscribe(["bpm.tasks"]);
  assert.deepEqual(Socket.last().sent.slice(1), [
    { type: "subscribe", topics: ["erp.orders"] }, { type: "unsubscribe", topics: ["crm.leads"] },
    { type: "subscribe", topics: ["bpm.tasks"] }]);
  Socket.last().frame(event("6-0", "erp.orders"));
  Socket.last().drop(1006);
  assert.equal(live.state, "connecting");
  await clock.advance(BACKOFF_CAP_MS);
  assert.equal(Socket.instances.length, 2);
  const ws = Socket.last();
  ws.open();
  assert.deepEqual(ws.sent[0].topics, ["erp.orders", "bpm.tasks"]);
  assert.equal(ws.sent[0].resume_from, "6-0");
  ws.frame({ type: "ready", last_event_id: "8-0" });
  ws.frame(event("6-0", "erp.orders")); /* the replay overlapping what came before the drop */
  ws.frame(event("7-0", "erp.orders"));
  assert.deepEqual(seen.events.map((e) => e.id), ["6-0", "7-0"]);
  assert.equal(ws.framesOf("subscribe").length, 0, "nothing to send again: the auth frame had the topics");
});

test("topics added while connecting go out once the connection is ready", async () => {
  const { Socket, client } = await setup();
  const live = client.live({ topics: ["crm.leads"] });
  await flush();
  Socket.last().open();
  live.subscribe(["erp.orders"]);
  assert.equal(Socket.last().sent.length, 1, "not before ready");
  Socket.last().frame({ type: "ready", last_event_id: null });
  assert.deepEqual(Socket.last().sent[1], { type: "subscribe", topics: ["erp.orders"] });
});

test("reconnect waits grow exponentially with full jitter within [0, min(30 s, 250 ms * 2^n))", async () => {
  const draws = [0.999, 0.5, 0.999, 0.1, 0.999, 0.75, 0.999, 0.999, 0.999, 0.3, 0.999, 0.999];
  let i = 0;
  const { Socket, client, clock } = await setup({ random: () => draws[i++ % draws.length] });
  client.live({ topics: ["crm.leads"] });
  await flush();
  const waits: number[] = [];
  for (let n = 0; n < draws.length; n++) {
    const before = clock.delays.length;
    Socket.last().drop(1006); /* never got to ready */
    waits.push(clock.delays[before]);
    await clock.advance(BACKOFF_CAP_MS);
  }
  assert.equal(Socket.instances.length, draws.length + 1);
  waits.forEach((w, n) => {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** n);
    assert.ok(w >= 0 && w < ceiling, `wait ${n} = ${w} within [0, ${ceiling})`);
    assert.equal(w, Math.floor(ceiling * draws[n]), `wait ${n} is the jittered pick`);
  });
  assert.ok(waits[2] > waits[0] && waits[4] > waits[2] && waits[6] > waits[4], "grows");
  assert.equal(waits[11], Math.floor(BACKOFF_CAP_MS * 0.999), "capped at 30 s");
});

test("a connection that stayed up starts the backoff over", async () => {
  const { Socket, client, clock } = await setup({ random: () => 0.999 });
  client.live({ topics: ["crm.leads"] });
  await flush();
  let lastBackoff = 0;
  for (let n = 0; n < 5; n++) {
    Socket.last().drop(1006);
    lastBackoff = clock.delays.at(-1)!;
    await clock.advance(BACKOFF_CAP_MS);
  }
  Socket.last().accept("1-0");
  clock.time += STABLE_MS; /* up long enough (without firing the ping timer) */
  Socket.last().drop(1006);
  const retryWait = clock.delays.at(-1)!;
  assert.ok(lastBackoff > 3000, `the backoff had grown (${lastBackoff})`);
  assert.ok(retryWait < BACKOFF_BASE_MS, `back to the first step, got ${retryWait}`);
});

test("close code 4001 ends the session and does not reconnect", async () => {
  const { Socket, client, clock, ended, storage } = await setup();
  const live = client.live({ topics: ["crm.leads"] });
  const seen = collect(live);
  await flush();
  Socket.last().accept("3-0");
  Socket.last().frame({ type: "error", code: "session-ended", message: "the session has ended; sign in again" });
  Socket.last().drop(4001);
  await clock.advance(120_000);
  assert.equal(Socket.instances.length, 1);
  assert.equal(live.state, "closed");
  assert.deepEqual(seen.states.at(-1), "closed");
  assert.deepEqual(ended, ["revoked"]);
  assert.equal(client.signedIn, false);
  assert.equal(await storage.get("trellis.session"), null);
});

test("close code 4009 reconnects at once, resuming from the last event", async () => {
  const { Socket, client, clock } = await setup();
  const live = client.live({ topics: ["crm.leads"] });
  await flush();
  Socket.last().accept("1-0");
  Socket.last().frame(event("2-0"));
  clock.time += STABLE_MS;
  Socket.last().drop(4009, "too slow; resume to catch up");
  assert.equal(clock.delays.at(-1), 0);
  await clock.advance(0);
  assert.equal(Socket.instances.length, 2);
  Socket.last().open();
  assert.equal(Socket.last().sent[0].resume_from, "2-0");
  assert.deepEqual(Socket.last().sent[0].topics, ["crm.leads"]);
  Socket.last().frame({ type: "ready", last_event_id: "9-0" });
  assert.equal(live.state, "open");
});

test("resync_required is emitted and the connection goes on from the server's present", async () => {
  const { Socket, client, storage } = await setup({ resumeFrom: "1-0" });
  const seen = collect(client.live({ topics: ["crm.leads"] }));
  await flush();
  const ws = Socket.last();
  ws.open();
  assert.equal(ws.sent[0].resume_from, "1-0");
  ws.frame({ type: "ready", last_event_id: "500-0" });
  ws.frame({ type: "resync_required", reason: "events after resume_from are no longer kept" });
  await flush();
  assert.deepEqual(seen.resyncs, ["events after resume_from are no longer kept"]);
  assert.equal(await storage.get("trellis.resume"), "500-0", "the old resume id is gone");
  ws.frame(event("501-0"));
  assert.deepEqual(seen.events.map((e) => e.id), ["501-0"]);
});

test("resync_required with an empty stream clears the resume id", async () => {
  const { Socket, client, storage } = await setup({ resumeFrom: "9-0" });
  const seen = collect(client.live({ topics: ["crm.leads"] }));
  await flush();
  Socket.last().open();
  Socket.last().frame({ type: "ready", last_event_id: null });
  Socket.last().frame({ type: "resync_required", reason: "resume_from is not an event id of this tenant" });
  await flush();
  assert.equal(seen.resyncs.length, 1);
  assert.equal(await storage.get("trellis.resume"), null);
});

test("when the server says the token expired, the token is refreshed and the stream resumed", async () => {
  const { Socket, client, clock, ended, fetch, token } = await setup();
  const live = client.live({ topics: ["crm.leads"] });
  await flush();
  Socket.last().accept("1-0");
  Socket.last().frame(event("4-0"));
  clock.time += 905_000; /* past exp, without firing timers */
  Socket.last().frame({ type: "error", code: "token-expired", message: "the access token expired; reconnect with a new one" });
  Socket.last().drop(4001, "token expired");
  await clock.advance(0);
  assert.deepEqual(ended, []);
  assert.equal(fetch.seen.filter((r) => r.url.endsWith("/v1/auth/refresh")).length, 1);
  assert.equal(Socket.instances.length, 2);
  Socket.last().open();
  const auth = Socket.last().sent[0];
  assert.notEqual(auth.token, token);
  assert.equal(auth.resume_from, "4-0");
  Socket.last().frame({ type: "ready", last_event_id: "4-0" });
  assert.equal(live.state, "open");
});

test("a reconnect refreshes a token close to expiry first", async () => {
  const { Socket, client, clock, token } = await setup();
  client.live({ topics: ["crm.leads"] });
  await flush();
  Socket.last().accept("1-0");
  clock.time += 880_000; /* 20 s left */
  Socket.last().drop(1006);
  await clock.advance(BACKOFF_CAP_MS);
  Socket.last().open();
  assert.notEqual(Socket.last().sent[0].token, token);
});

test("a refused refresh before reconnecting ends the session and the live connection", async () => {
  const { Socket, client, clock, ended } = await setup({ refreshOk: false });
  const live = client.live({ topics: ["crm.leads"] });
  await flush();
  Socket.last().accept("1-0");
  clock.time += 900_000;
  Socket.last().drop(1006);
  await clock.advance(BACKOFF_CAP_MS);
  assert.deepEqual(ended, ["refresh_failed"]);
  assert.equal(live.state, "closed");
  assert.equal(Socket.instances.length, 1);
});

test("a forbidden topic is reported and not asked for again", async () => {
  const { Socket, client, clock } = await setup();
  const seen = collect(client.live({ topics: ["crm.leads", "erp.ledger"] }));
  await flush();
  Socket.last().accept(null);
  Socket.last().frame({ type: "error", code: "forbidden-topics", message: "no", topics: ["erp.ledger"] });
  assert.deepEqual(seen.errors, [{ code: "forbidden-topics", message: "no", topics: ["erp.ledger"] }]);
  Socket.last().drop(1006);
  await clock.advance(BACKOFF_CAP_MS);
  Socket.last().open();
  assert.deepEqual(Socket.last().sent[0].topics, ["crm.leads"]);
});

test("close() stops for good, and logout closes the live connection", async () => {
  const { Socket, client, clock } = await setup();
  const live = client.live({ topics: ["crm.leads"] });
  await flush();
  Socket.last().accept(null);
  live.close();
  assert.equal(live.state, "closed");
  assert.equal(Socket.last().closedWith, 1000);
  await clock.advance(120_000);
  assert.equal(Socket.instances.length, 1);
  const again = client.live({ topics: ["crm.leads"] });
  assert.notEqual(again, live);
  await flush();
  Socket.last().accept(null);
  await client.logout();
  assert.equal(again.state, "closed");
});

test("a silent connection is noticed by the pings and replaced", async () => {
  const { Socket, client, clock } = await setup();
  client.live({ topics: ["crm.leads"] });
  await flush();
  Socket.last().accept(null);
  await clock.advance(30_000);
  assert.equal(Socket.last().framesOf("ping").length, 1);
  await clock.advance(30_000); /* no pong, nothing: dead */
  assert.equal(Socket.instances[0].closedWith, 4000);
  await clock.advance(BACKOFF_CAP_MS);
  assert.equal(Socket.instances.length, 2);
});

test("live() twice gives the same connection with both sets of topics", async () => {
  const { Socket, client } = await setup();
  const a = client.live({ topics: ["crm.leads"] });
  const b = client.live({ topics: ["erp.orders"] });
  assert.equal(a, b);
  await flush();
  Socket.last().open();
  assert.deepEqual(Socket.last().sent[0].topics, ["crm.leads", "erp.orders"]);
  assert.equal(Socket.instances.length, 1);
});
