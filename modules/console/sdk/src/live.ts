// The live connection: /v1/ws with the contract's protocol (auth frame first,
// then subscribe/unsubscribe; ready, event, resync_required, error frames).
//
// What it promises the app:
// - every event id is delivered once and in order: ids only grow, anything
//   not newer than the last delivered one is a replay overlap and dropped;
// - no gap across reconnects: the last delivered id (or, before the first
//   event, the server's head from the ready frame) is kept in the app's
//   storage and sent as resume_from, and the topics go along in the auth frame;
// - when the server no longer holds what came after that id it says
//   resync_required: the app hears it (and reloads what it shows), and the
//   connection carries on from the server's present;
// - reconnects back off with full jitter (250 ms doubling to 30 s), and start
//   over from the shortest wait once a connection has stayed up a while;
// - 4001 ends the session - except when the server said the access token
//   expired, which only means "reconnect with a fresh one"; 4009 (too slow)
//   resumes at once.

import { backoffDelay, type Timers } from "./timers";
import type { KeyValueStorage } from "./storage";

export type LiveState = "connecting" | "open" | "closed";
export type LiveEvent = { id: string; topic: string; event: string; entity_id: string; ts: string; data: any };
export type LiveError = { code: string; message: string; topics?: string[] };

/* The parts of the WebSocket interface used here (browsers and React Native agree on them). */
interface SocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}

/** What a Live needs from its client. */
export interface LiveHost {
  url: string;
  WebSocket: new (url: string) => SocketLike;
  storage: KeyValueStorage;
  resumeKey: string;
  now: () => number;
  random: () => number;
  timers: Timers;
  /** A fresh access token (refreshed when near expiry); null when signed out. */
  token(): Promise<string | null>;
  /** True when the error from token() means the session is over (it has ended it). */
  isSessionOver(e: unknown): boolean;
  /** The server closed with 4001: the session is over. */
  endSession(reason: string): void;
}

/* A connection up this long counts as stable: the next drop starts the backoff over. */
export const STABLE_MS = 10_000;
/* Idle connections are pinged this often; one that stays silent for two
 * periods is presumed dead (mobile networks drop them without a close). */
export const PING_MS = 25_000;

const OPEN = 1;

/** Orders event ids: Redis stream ids "ms-seq" by number, anything else as text. */
export function compareEventIds(a: string, b: string): number {
  const ma = /^(\d+)-(\d+)$/.exec(a);
  const mb = /^(\d+)-(\d+)$/.exec(b);
  if (ma && mb) {
    const d = Number(ma[1]) - Number(mb[1]) || Number(ma[2]) - Number(mb[2]);
    return Math.sign(d);
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

type Listener = (arg: any) => void;

export class Live {
  private _state: LiveState = "connecting";
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly topics = new Set<string>();
  /* topics the server has been asked for on the current connection */
  private requested = new Set<string>();
  private ws: SocketLike | null = null;
  private ready = false;
  /* undefined until read from storage; null when there is nothing to resume from */
  private resumeId: string | null | undefined = undefined;
  private serverHead: string | null = null;
  private lastErrorCode = "";
  private attempt = 0;
  private openedAt = 0;
  private lastHeard = 0;
  private retryTimer: unknown = null;
  private pingTimer: unknown = null;
  private stopped = false;
  /* bumped by every connect and close: callbacks of an older socket see a
   * different number and do nothing */
  private generation = 0;
  private saving: Promise<void> = Promise.resolve();

  /** @internal - use Trellis.live() */
  constructor(private readonly host: LiveHost, topics: string[] = []) {
    for (const t of topics) this.topics.add(t);
    void this.connect();
  }

  get state(): LiveState {
    return this._state;
  }

  /** Adds topics; kept across reconnects. */
  subscribe(topics: string[]): void {
    const fresh = topics.filter((t) => !this.topics.has(t));
    for (const t of fresh) this.topics.add(t);
    if (fresh.length && this.ready) this.sendTopics("subscribe", fresh);
  }

  unsubscribe(topics: string[]): void {
    const gone = topics.filter((t) => this.topics.delete(t));
    if (gone.length && this.ready) this.sendTopics("unsubscribe", gone);
  }

  on(type: "event", fn: (e: LiveEvent) => void): () => void;
  on(type: "resync_required", fn: (reason: string) => void): () => void;
  on(type: "state", fn: (s: LiveState) => void): () => void;
  on(type: "error", fn: (e: LiveError) => void): () => void;
  on(type: string, fn: Listener): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => {
      set!.delete(fn);
    };
  }

  /** Stops for good: no reconnect. (Trellis.live() makes a new one.) */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.generation++;
    this.clearTimers();
    this.detach(1000);
    this.setState("closed");
  }

  /* ---- connecting ---- */

  private async connect(): Promise<void> {
    const gen = ++this.generation;
    this.setState("connecting");
    let token: string | null;
    try {
      token = await this.host.token();
      if (this.resumeId === undefined) this.resumeId = await this.host.storage.get(this.host.resumeKey);
    } catch (e) {
      if (gen !== this.generation) return;
      if (this.host.isSessionOver(e)) return this.close();
      return this.retry(false); /* offline: the refresh will work later */
    }
    if (gen !== this.generation) return;
    if (!token) {
      this.emit("error", { code: "unauthorized", message: "sign in before going live" });
      return this.close();
    }
    const ws = new this.host.WebSocket(this.host.url);
    this.ws = ws;
    ws.onopen = () => gen === this.generation && this.sendAuth(ws, token as string);
    ws.onmessage = (m) => gen === this.generation && this.onFrame(m.data);
    ws.onclose = (c) => gen === this.generation && this.onClose(c.code);
    ws.onerror = () => undefined; /* a close event follows and handles it */
  }

  private sendAuth(ws: SocketLike, token: string): void {
    const frame: Record<string, unknown> = { type: "auth", token };
    if (this.resumeId) frame.resume_from = this.resumeId;
    this.requested = new Set(this.topics);
    if (this.topics.size) frame.topics = [...this.topics];
    this.lastErrorCode = "";
    this.lastHeard = this.host.now();
    ws.send(JSON.stringify(frame));
  }

  private sendTopics(type: "subscribe" | "unsubscribe", topics: string[]): void {
    for (const t of topics) type === "subscribe" ? this.requested.add(t) : this.requested.delete(t);
    this.send({ type, topics });
  }

  private send(frame: object): void {
    if (this.ws && this.ws.readyState === OPEN) this.ws.send(JSON.stringify(frame));
  }

  /* ---- frames ---- */

  private onFrame(data: unknown): void {
    let msg: any;
    try {
      msg = JSON.parse(String(data));
    } catch {
      return; /* not the protocol: ignore rather than drop a working connection */
    }
    this.lastHeard = this.host.now();
    if (!msg || typeof msg !== "object") return;
    switch (msg.type) {
      case "ready":
        return this.onReady(msg);
      case "event":
        return this.onEvent(msg);
      case "resync_required":
        return this.onResync(typeof msg.reason === "string" ? msg.reason : "");
      case "error":
        return this.onError(msg);
      default:
        return; /* subscribed, pong, and whatever later versions add */
    }
  }

  private onReady(msg: { last_event_id?: unknown }): void {
    this.ready = true;
    this.openedAt = this.host.now();
    this.serverHead = typeof msg.last_event_id === "string" ? msg.last_event_id : null;
    /* Nothing to resume from yet: the server's head is where this connection
     * starts, so a drop before the first event still resumes without a gap. */
    if (!this.resumeId && this.serverHead) this.remember(this.serverHead);
    /* topics changed between the auth frame and now */
    const add = [...this.topics].filter((t) => !this.requested.has(t));
    const drop = [...this.requested].filter((t) => !this.topics.has(t));
    if (add.length) this.sendTopics("subscribe", add);
    if (drop.length) this.sendTopics("unsubscribe", drop);
    this.setState("open");
    this.schedulePing();
  }

  private onEvent(msg: any): void {
    if (typeof msg.id !== "string") return;
    if (this.resumeId && compareEventIds(msg.id, this.resumeId) <= 0) return; /* seen already */
    this.remember(msg.id);
    const e: LiveEvent = { id: msg.id, topic: msg.topic, event: msg.event, entity_id: msg.entity_id,
      ts: msg.ts, data: msg.data };
    this.emit("event", e);
  }

  /* What came after our resume id is gone. The server continues from its
   * head (sent in the ready frame just before), and so do we. */
  private onResync(reason: string): void {
    if (this.serverHead) this.remember(this.serverHead);
    else this.forget();
    this.emit("resync_required", reason);
  }

  private onError(msg: any): void {
    const code = typeof msg.code === "string" ? msg.code : "error";
    this.lastErrorCode = code;
    const e: LiveError = { code, message: typeof msg.message === "string" ? msg.message : "" };
    if (Array.isArray(msg.topics)) {
      e.topics = msg.topics.filter((t: unknown) => typeof t === "string");
      /* topics the user may not read: asking again after every reconnect only repeats this */
      if (code === "forbidden-topics") {
        for (const t of e.topics!) {
          this.topics.delete(t);
          this.requested.delete(t);
        }
      }
    }
    this.emit("error", e);
  }

  /* ---- the resume id ---- */

  private remember(id: string): void {
    this.resumeId = id;
    this.persist(() => this.host.storage.set(this.host.resumeKey, id));
  }

  private forget(): void {
    this.resumeId = null;
    this.persist(() => this.host.storage.remove(this.host.resumeKey));
  }

  /* Writes go one after another: an async storage must not let an older id
   * land after a newer one. */
  private persist(write: () => void | Promise<void>): void {
    this.saving = this.saving.then(write).catch(() => undefined);
  }

  /* ---- closing and reconnecting ---- */

  private onClose(code: number): void {
    const stable = this.ready && this.host.now() - this.openedAt >= STABLE_MS;
    this.generation++; /* the old socket's late callbacks are ignored from here on */
    this.ws = null;
    this.ready = false;
    this.clearTimers();
    if (this.stopped) return;
    if (code === 4001 && this.lastErrorCode !== "token-expired") {
      this.host.endSession("revoked"); /* which closes this */
      return this.close();
    }
    if (code === 4003) {
      this.emit("error", { code: "forbidden", message: "live updates are not allowed for this user" });
      return this.close();
    }
    if (stable) this.attempt = 0;
    /* too slow, or the token ran out: the server wants us back at once,
     * resuming - unless that just happened, then back off like any drop */
    this.retry(code === 4009 || code === 4001);
  }

  private retry(soon: boolean): void {
    const delay = soon && this.attempt === 0 ? 0 : backoffDelay(this.attempt, this.host.random);
    this.attempt++;
    this.setState("connecting");
    this.retryTimer = this.host.timers.setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delay);
  }

  /* Pings keep idle proxies from cutting the connection and notice one that
   * died silently; a dead one is dropped and reconnected like any other. */
  private schedulePing(): void {
    this.pingTimer = this.host.timers.setTimeout(() => {
      this.pingTimer = null;
      if (this.host.now() - this.lastHeard >= 2 * PING_MS) {
        const dead = this.ws;
        this.onClose(1006);
        dead?.close(4000);
        return;
      }
      this.send({ type: "ping" });
      this.schedulePing();
    }, PING_MS);
  }

  private clearTimers(): void {
    if (this.retryTimer !== null) this.host.timers.clearTimeout(this.retryTimer);
    if (this.pingTimer !== null) this.host.timers.clearTimeout(this.pingTimer);
    this.retryTimer = this.pingTimer = null;
  }

  /* Closes the socket without hearing from it again. */
  private detach(code: number): void {
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code);
    } catch {
      /* already closing */
    }
  }

  private setState(s: LiveState): void {
    if (s === this._state) return;
    this._state = s;
    this.emit("state", s);
  }

  /* A listener that throws must not stop the others, nor the connection. */
  private emit(type: string, arg: unknown): void {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (e) {
        const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
        if (report) report(e);
      }
    }
  }
}
