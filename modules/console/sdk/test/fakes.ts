// Test doubles: a hand-driven clock, fetch that answers from a function, and a
// WebSocket whose server side the test plays. No network, no real time.

import { Buffer } from "node:buffer";
import { setImmediate } from "node:timers";
import type { Timers } from "../src/timers";

export const T0 = Date.UTC(2026, 10, 22, 16, 0, 0);

/** An unsigned JWT with these claims (the SDK never checks signatures). */
export function jwt(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.c2ln`;
}

/** An access token issued at `nowMs` living `lifeS` seconds, numbered so tests can tell tokens apart. */
export function accessToken(n: number, nowMs: number, lifeS = 900): string {
  const iat = Math.floor(nowMs / 1000);
  return jwt({ sub: "u1", tid: "t1", sid: `s${n}`, iat, exp: iat + lifeS, n });
}

/** Lets every pending promise chain run to its end. */
export async function flush(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

interface PendingTimer {
  id: number;
  at: number;
  ms: number;
  fn: () => void;
}

/** A clock and timers that move only when the test says so. */
export class FakeClock implements Timers {
  time = T0;
  private nextId = 1;
  pending: PendingTimer[] = [];
  /** every delay ever asked for, in order */
  delays: number[] = [];

  now = (): number => this.time;

  setTimeout = (fn: () => void, ms: number): unknown => {
    const t = { id: this.nextId++, at: this.time + ms, ms, fn };
    this.pending.push(t);
    this.delays.push(ms);
    return t.id;
  };

  clearTimeout = (id: unknown): void => {
    this.pending = this.pending.filter((t) => t.id !== id);
  };

  /** Moves time forward, firing due timers in order and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      await flush();
      const due = this.pending.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.pending = this.pending.filter((t) => t !== due);
      this.time = Math.max(this.time, due.at);
      due.fn();
    }
    this.time = end;
    await flush();
  }
}

export interface SeenRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: any;
}

export type Handler = (req: SeenRequest, n: number) => Response | Promise<Response>;

/** fetch answering through `handler`; every request is kept in `.seen`. */
export function fakeFetch(handler: Handler): typeof fetch & { seen: SeenRequest[] } {
  const seen: SeenRequest[] = [];
  const f = async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries((init.headers || {}) as Record<string, string>)) headers[k.toLowerCase()] = v;
    let body: any = init.body;
    if (typeof body === "string" && /json/.test(headers["content-type"] || "")) body = JSON.parse(body);
    const req = { url: String(input), method: init.method || "GET", headers, body };
    seen.push(req);
    return handler(req, seen.length);
  };
  return Object.assign(f as typeof fetch, { seen });
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

export function problem(status: number, slug: string, detail = "", extra: Record<string, unknown> = {},
  headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ type: `https://trellis.dev/errors/${slug}`, title: slug, status, detail, ...extra }),
    { status, headers: { "content-type": "application/problem+json", "x-request-id": "req-1", ...headers } });
}

export function noContent(): Response {
  return new Response(null, { status: 204 });
}

/** A WebSocket class for one test; the test plays the server through the instances. */
export function fakeSocketClass() {
  return class FakeSocket {
    static instances: FakeSocket[] = [];
    readyState = 0;
    sent: any[] = [];
    closedWith: number | null = null;
    onopen: ((ev: any) => void) | null = null;
    onmessage: ((ev: { data: any }) => void) | null = null;
    onclose: ((ev: { code: number; reason?: string }) => void) | null = null;
    onerror: ((ev: any) => void) | null = null;

    constructor(public url: string) {
      FakeSocket.instances.push(this);
    }

    static last(): FakeSocket {
      return FakeSocket.instances[FakeSocket.instances.length - 1];
    }

    send(data: string): void {
      this.sent.push(JSON.parse(data));
    }

    close(code = 1000): void {
      this.closedWith = code;
      this.readyState = 3;
    }

    /* the server's side */
    open(): void {
      this.readyState = 1;
      this.onopen?.({});
    }

    frame(msg: object): void {
      this.onmessage?.({ data: JSON.stringify(msg) });
    }

    drop(code: number, reason = ""): void {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }

    /** open, and answer the auth frame with ready */
    accept(lastEventId: string | null = null): void {
      this.open();
      this.frame({ type: "ready", user_id: "u1", tenant_id: "t1", last_event_id: lastEventId });
    }

    framesOf(type: string): any[] {
      return this.sent.filter((f) => f.type === type);
    }
  };
}

export function event(id: string, topic = "crm.leads", data: unknown = { id: "l1" }) {
  return { type: "event", id, topic, event: "crm.lead.created", entity_id: "l1", ts: "2026-11-22T16:20:07.123Z", data };
}
