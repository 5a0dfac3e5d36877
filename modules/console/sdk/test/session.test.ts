// The session: login, refresh before expiry and on 401 (once for many
// callers), rotation kept in storage, the end of a session.

import assert from "node:assert/strict";
import { test } from "node:test";
import { memoryStorage, Problem, Trellis } from "../src/index";
import { accessToken, FakeClock, fakeFetch, flush, json, noContent, problem, type SeenRequest } from "./fakes";

/* A server with one session: refresh tokens R1, R2, ... rotate; presenting
 * a rotated one revokes the session, as the contract says. */
function authServer(clock: FakeClock) {
  const s = {
    access: accessToken(1, clock.time),
    refresh: "R1",
    n: 1,
    refreshes: 0,
    revoked: false,
    /** refresh requests get no answer */
    offline: false,
    /** while set, refresh answers wait for it */
    gate: null as Promise<void> | null,
  };
  const fetch = fakeFetch(async (req: SeenRequest) => {
    if (req.url.endsWith("/v1/auth/login")) {
      if (req.body.password !== "correct horse") return problem(401, "unauthorized", "bad credentials");
      return json(200, { access_token: s.access, refresh_token: s.refresh, expires_in: 900, user: { id: "u1" } });
    }
    if (req.url.endsWith("/v1/auth/refresh")) {
      s.refreshes++;
      if (s.offline) throw new TypeError("fetch failed");
      if (s.gate) await s.gate;
      if (s.revoked || req.body.refresh_token !== s.refresh) {
        s.revoked = true;
        return problem(401, "unauthorized", "refresh token not valid");
      }
      s.n++;
      s.access = accessToken(s.n, clock.time);
      s.refresh = `R${s.n}`;
      return json(200, { access_token: s.access, refresh_token: s.refresh, expires_in: 900 });
    }
    if (req.url.endsWith("/v1/auth/logout")) {
      s.revoked = true;
      return noContent();
    }
    if (s.revoked || req.headers.authorization !== `Bearer ${s.access}`) return problem(401, "unauthorized", "token");
    return json(200, { user: { id: "u1", email: "a@b.co" }, tenant: { id: "t1", slug: "acme" }, permissions: ["crm.leads.read"] });
  });
  return { s, fetch };
}

function setup() {
  const clock = new FakeClock();
  const { s, fetch } = authServer(clock);
  const storage = memoryStorage();
  const client = new Trellis({ fetch, storage, now: clock.now, timers: clock });
  const ended: string[] = [];
  client.onSessionEnded((r) => ended.push(r));
  return { clock, s, fetch, storage, client, ended };
}

test("login keeps the tokens and answers /v1/me", async () => {
  const { client, fetch, storage, s } = setup();
  assert.equal(client.signedIn, false);
  const me = await client.login("acme", "a@b.co", "correct horse");
  assert.equal(me.tenant.slug, "acme");
  assert.deepEqual(me.permissions, ["crm.leads.read"]);
  assert.equal(client.signedIn, true);
  assert.deepEqual(fetch.seen[0].body, { tenant_slug: "acme", email: "a@b.co", password: "correct horse" });
  assert.equal(fetch.seen[0].headers.authorization, undefined);
  assert.equal(fetch.seen[1].headers.authorization, `Bearer ${s.access}`);
  assert.equal(JSON.parse((await storage.get("trellis.session"))!).refresh_token, "R1");
});

test("a wrong password is a Problem and no session", async () => {
  const { client } = setup();
  await assert.rejects(client.login("acme", "a@b.co", "wrong"), (e: unknown) => e instanceof Problem && e.status === 401);
  assert.equal(client.signedIn, false);
});

test("ten parallel calls that get 401 share one refresh", async () => {
  const { client, s, fetch, storage, ended } = setup();
  await client.login("acme", "a@b.co", "correct horse");
  const before = fetch.seen.length;
  s.access = "revoked-on-the-server-side"; /* every call with the old token gets 401 */
  let open!: () => void;
  s.gate = new Promise((r) => (open = r));
  const calls = Array.from({ length: 10 }, () => client.me());
  await flush();
  open();
  const results = await Promise.all(calls);
  assert.equal(results.length, 10);
  assert.equal(s.refreshes, 1, "one refresh for all");
  assert.equal(s.revoked, false, "no rotated refresh token was presented again");
  assert.deepEqual(ended, []);
  const retried = fetch.seen.slice(before).filter((r) => r.url.endsWith("/v1/me") && r.headers.authorization === `Bearer ${s.access}`);
  assert.equal(retried.length, 10);
  assert.equal(JSON.parse((await storage.get("trellis.session"))!).refresh_token, "R2", "the rotated pair is kept");
});

test("the access token is refreshed shortly before it expires, not earlier", async () => {
  const { client, clock, s, fetch } = setup();
  await client.login("acme", "a@b.co", "correct horse");
  const first = s.access;
  clock.time += 800_000; /* 100 s left of 900 */
  await client.me();
  assert.equal(s.refreshes, 0);
  assert.equal(fetch.seen.at(-1)!.headers.authorization, `Bearer ${first}`);
  clock.time += 70_000; /* 30 s left: inside the margin */
  await client.me();
  assert.equal(s.refreshes, 1);
  assert.notEqual(s.access, first);
  assert.equal(fetch.seen.at(-1)!.headers.authorization, `Bearer ${s.access}`);
  assert.equal(fetch.seen.filter((r) => r.url.endsWith("/v1/me")).length, 3, "no 401 round trip was needed");
});

test("expiry follows the token's lifetime on the local clock, not the device's idea of exp", async () => {
  const clock = new FakeClock();
  /* the server's clock is an hour ahead of this device */
  const token = accessToken(1, clock.time + 3_600_000, 900);
  let refreshes = 0;
  const fetch = fakeFetch((req) => {
    if (req.url.endsWith("/refresh")) refreshes++;
    return json(200, { ok: true });
  });
  const client = new Trellis({ fetch, now: clock.now, timers: clock });
  await client.useTokens({ access_token: token, refresh_token: "R1", expires_in: 900 });
  await client.request("GET", "/v1/me");
  assert.equal(refreshes, 0);
});

test("a refused refresh ends the session, clears storage and tells the app once", async () => {
  const { client, s, storage, ended } = setup();
  await client.login("acme", "a@b.co", "correct horse");
  s.access = "gone";
  s.revoked = true;
  const calls = [client.me(), client.me(), client.me()];
  for (const c of calls) await assert.rejects(c, (e: unknown) => e instanceof Problem && e.status === 401);
  assert.deepEqual(ended, ["refresh_failed"]);
  assert.equal(client.signedIn, false);
  assert.equal(await storage.get("trellis.session"), null);
});

test("a refresh that gets no answer keeps the session and the still-valid token", async () => {
  const { client, clock, s, fetch, ended } = setup();
  await client.login("acme", "a@b.co", "correct horse");
  clock.time += 870_000; /* inside the margin, not expired */
  const token = s.access;
  s.offline = true;
  await client.me();
  assert.equal(s.refreshes, 1, "a refresh was tried");
  assert.equal(fetch.seen.at(-1)!.headers.authorization, `Bearer ${token}`);
  assert.equal(client.signedIn, true);
  assert.deepEqual(ended, []);
});

test("restore takes up a saved session, refreshing an expired one", async () => {
  const { client, clock, s, storage, fetch } = setup();
  await client.login("acme", "a@b.co", "correct horse");
  clock.time += 3_600_000;
  const again = new Trellis({ fetch, storage, now: clock.now, timers: clock });
  assert.equal(await again.restore(), true);
  assert.equal(again.signedIn, true);
  assert.equal(s.refreshes, 1);
  await again.me();
});

test("restore of a session the server refuses answers false, quietly, and forgets it", async () => {
  const { client, clock, s, storage, fetch } = setup();
  await client.login("acme", "a@b.co", "correct horse");
  s.revoked = true;
  clock.time += 3_600_000;
  const again = new Trellis({ fetch, storage, now: clock.now, timers: clock });
  const ended: string[] = [];
  again.onSessionEnded((r) => ended.push(r));
  assert.equal(await again.restore(), false);
  assert.equal(again.signedIn, false);
  assert.deepEqual(ended, []);
  assert.equal(await storage.get("trellis.session"), null);
});

test("restore without a saved session answers false without a request", async () => {
  const { client, fetch } = setup();
  assert.equal(await client.restore(), false);
  assert.equal(fetch.seen.length, 0);
});

test("logout tells the server, forgets the tokens and ends the session", async () => {
  const { client, fetch, storage, ended, s } = setup();
  await client.login("acme", "a@b.co", "correct horse");
  const token = s.access;
  await client.logout();
  const call = fetch.seen.at(-1)!;
  assert.ok(call.url.endsWith("/v1/auth/logout"));
  assert.equal(call.headers.authorization, `Bearer ${token}`);
  assert.deepEqual(ended, ["logout"]);
  assert.equal(client.signedIn, false);
  assert.equal(await storage.get("trellis.session"), null);
});

test("a tab that finds the pair already rotated by another tab uses it instead of refreshing", async () => {
  const { client, clock, s, storage, fetch } = setup();
  await client.login("acme", "a@b.co", "correct horse");
  const other = new Trellis({ fetch, storage, now: clock.now, timers: clock });
  await other.restore();
  clock.time += 870_000;
  await other.me(); /* rotates R1 -> R2 and saves it */
  assert.equal(s.refreshes, 1);
  await client.me(); /* must not present R1 again */
  assert.equal(s.refreshes, 1);
  assert.equal(s.revoked, false);
});
