// Trellis: one client per app. It owns the session (tokens, refresh), sends
// requests (auth header, Idempotency-Key, If-Match, retries), turns error
// answers into Problems, pages through lists and opens the live connection.
//
// A request goes: build the URL and headers -> take a fresh token -> fetch ->
// on 401 refresh once and send again -> on no answer, 503 or 429 with a
// short Retry-After wait and send again (a bounded number of times, with the
// same Idempotency-Key, and only when sending twice cannot do a thing twice)
// -> read the answer or throw a Problem.

import { randomKey } from "./encoding";
import { Live, type LiveHost } from "./live";
import { readPage, type Page, type PageStep } from "./page";
import { NetworkError, problemFromResponse } from "./problem";
import { isRejection, Session, type TokenPair } from "./session";
import { memoryStorage, type KeyValueStorage } from "./storage";
import { abortReason, backoffDelay, realTimers, sleep, type Timers } from "./timers";
import { Api, type Answer, type Operation, type Schema } from "./typed";

export interface ClientOptions {
  /** Where the API is: "https://api.example.com"; "" (the default) = the page's own origin. */
  baseUrl?: string;
  /** Where tokens and the live resume id are kept; memory by default (nothing survives a reload). */
  storage?: KeyValueStorage;
  fetch?: typeof fetch;
  /** The WebSocket class (React Native's global, or a polyfill); the global one by default. */
  WebSocket?: any;
  /** A partner integration's key: sent as X-API-Key instead of a user session. */
  apiKey?: string;
  now?: () => number;
  random?: () => number;
  /** Timer functions, for tests that drive time by hand. */
  timers?: Timers;
  /** Storage key of the session; "trellis.session" by default. */
  sessionKey?: string;
  /** How many times a request is sent again after no answer / 503 / 429; 2 by default. */
  retries?: number;
}

type Query = Record<string, string | number | boolean | undefined | null>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  /** true: a generated key; a string: that key; false: none. POST gets one unless false. */
  idempotencyKey?: string | boolean;
  /** The version the change is made against (a number, or the ETag as received). */
  ifMatch?: string | number;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** GET /v1/me: the generated type, with what the contract promises in it spelt out. */
export type Me = Answer<Operation<"/v1/me", "get">> & {
  user: Schema<"User">;
  tenant: { id: string; name?: string; slug?: string; [field: string]: unknown };
  permissions: string[];
};

/* A Retry-After longer than this is the app's decision, not the SDK's. */
const MAX_RETRY_AFTER_S = 10;

/* Methods that do the same thing however often they are sent. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

function trimSlash(s: string): string {
  return s.replace(/\/+$/, "");
}

function queryString(query: Query | undefined): string {
  if (!query) return "";
  const parts: string[] = [];
  for (const k of Object.keys(query)) {
    const v = query[k];
    if (v === undefined || v === null) continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

/* If-Match wants the ETag as sent: a quoted version. */
function ifMatchValue(v: string | number): string {
  const s = String(v).trim();
  return /^(W\/)?".*"$/.test(s) || s === "*" ? s : `"${s}"`;
}

function isAbort(e: unknown, signal?: AbortSignal): boolean {
  return (signal !== undefined && signal.aborted) || (e instanceof Error && e.name === "AbortError");
}

export class Trellis {
  /** Typed calls: client.api.get("/v1/crm/leads/{id}", { path: { id } }). */
  readonly api: Api;
  private readonly baseUrl: string;
  private readonly storage: KeyValueStorage;
  private readonly fetchFn: typeof fetch;
  private readonly WebSocketCtor: any;
  private readonly apiKey: string | null;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly timers: Timers;
  private readonly retries: number;
  private readonly session: Session;
  private readonly endedListeners = new Set<(reason: string) => void>();
  private liveConn: Live | null = null;
  private resumeKey = "trellis.resume";
  private quiet = false;

  constructor(opts: ClientOptions = {}) {
    this.baseUrl = trimSlash(opts.baseUrl || "");
    this.storage = opts.storage || memoryStorage();
    /* always called as a plain function: window.fetch throws "Illegal
     * invocation" when called as a method of another object (this client) */
    const given = opts.fetch;
    this.fetchFn = given ? (input, init) => given(input, init) : (input, init) => globalThis.fetch(input, init);
    this.WebSocketCtor = opts.WebSocket || (globalThis as { WebSocket?: unknown }).WebSocket;
    this.apiKey = opts.apiKey || null;
    this.now = opts.now || (() => Date.now());
    this.random = opts.random || Math.random;
    this.timers = opts.timers || realTimers;
    this.retries = opts.retries ?? 2;
    this.session = new Session({
      storage: this.storage,
      key: opts.sessionKey || "trellis.session",
      now: this.now,
      exchange: (refreshToken) => this.bare<TokenPair>("/v1/auth/refresh", { refresh_token: refreshToken }),
      ended: (reason) => this.sessionEnded(reason),
    });
    this.api = new Api(this);
  }

  /* ---- the session ---- */

  get signedIn(): boolean {
    return this.session.active || this.apiKey !== null;
  }

  async login(tenantSlug: string, email: string, password: string): Promise<Me> {
    const pair = await this.bare<TokenPair>("/v1/auth/login", { tenant_slug: tenantSlug, email, password });
    await this.session.adopt(pair);
    return this.me();
  }

  /** Starts a session from tokens obtained elsewhere (the answer of POST /v1/signup, say). */
  async useTokens(pair: TokenPair): Promise<void> {
    await this.session.adopt(pair);
  }

  /**
   * Takes up the session kept in storage. true when it is usable: the access
   * token is fresh, or a refresh worked, or the refresh could not reach the
   * server (offline: the session is kept and tried again later). A session the
   * server refuses is forgotten and false returned - without onSessionEnded,
   * as the app never saw it begin.
   */
  async restore(): Promise<boolean> {
    if (!(await this.session.load())) return false;
    this.quiet = true;
    try {
      await this.session.token();
      return true;
    } catch (e) {
      return !isRejection(e) && this.session.active;
    } finally {
      this.quiet = false;
    }
  }

  /** Ends the session on the server (best effort) and here. */
  async logout(): Promise<void> {
    const token = this.session.accessToken;
    if (token) {
      try {
        await this.fetchFn(this.url("/v1/auth/logout"), { method: "POST",
          headers: { Authorization: `Bearer ${token}`, Accept: "application/json" } });
      } catch {
        /* offline: the tokens are forgotten here anyway and expire there */
      }
    }
    await this.session.end("logout");
  }

  me(): Promise<Me> {
    return this.request<Me>("GET", "/v1/me");
  }

  /** fn(reason) when the session ends: "logout", "refresh_failed", "revoked" (WebSocket 4001). */
  onSessionEnded(fn: (reason: string) => void): () => void {
    this.endedListeners.add(fn);
    return () => {
      this.endedListeners.delete(fn);
    };
  }

  private sessionEnded(reason: string): void {
    this.liveConn?.close();
    this.liveConn = null;
    void Promise.resolve(this.storage.remove(this.resumeKey)).catch(() => undefined);
    if (this.quiet) return;
    for (const fn of [...this.endedListeners]) {
      try {
        fn(reason);
      } catch {
        /* one listener's failure does not keep the others from hearing it */
      }
    }
  }

  /* ---- requests ---- */

  private url(path: string, query?: Query): string {
    return this.baseUrl + (path.startsWith("/") ? path : `/${path}`) + queryString(query);
  }

  /* POST without session logic: login and refresh must not recurse into
   * refreshing, and send no stale Authorization. */
  private async bare<T>(path: string, body: unknown): Promise<T> {
    let res: Response;
    try {
      res = await this.fetchFn(this.url(path), { method: "POST", body: JSON.stringify(body),
        headers: { "Content-Type": "application/json", Accept: "application/json" } });
    } catch (e) {
      throw new NetworkError(`POST ${path}: no answer`, e);
    }
    return this.read<T>(res);
  }

  private headers(method: string, token: string | null, key: string | null, opts: RequestOptions,
    hasBody: boolean): Record<string, string> {
    const h: Record<string, string> = { Accept: "application/json" };
    if (hasBody) h["Content-Type"] = "application/json";
    if (this.apiKey) h["X-API-Key"] = this.apiKey;
    else if (token) h.Authorization = `Bearer ${token}`;
    if (key) h["Idempotency-Key"] = key;
    if (opts.ifMatch !== undefined && opts.ifMatch !== null && method !== "GET") h["If-Match"] = ifMatchValue(opts.ifMatch);
    return { ...h, ...opts.headers };
  }

  private idempotencyKey(method: string, opt: string | boolean | undefined): string | null {
    if (typeof opt === "string") return opt || null;
    if (opt === true || (opt === undefined && method === "POST")) return randomKey(this.random);
    return null;
  }

  /* A request may go out again when a second copy cannot act twice: the
   * method is idempotent, or the server de-duplicates it by key, or the
   * version check makes a second copy fail. */
  private mayResend(method: string, key: string | null, opts: RequestOptions): boolean {
    return IDEMPOTENT.has(method) || key !== null || (method === "PATCH" && opts.ifMatch !== undefined);
  }

  /**
   * Sends one request and answers its JSON (undefined for 204, text for a
   * non-JSON body). Throws Problem for an error answer, NetworkError when
   * there was none, the signal's reason when aborted.
   */
  async request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const m = method.toUpperCase();
    const url = this.url(path, opts.query);
    const key = this.idempotencyKey(m, opts.idempotencyKey);
    const raw = typeof opts.body === "string" && this.hasOwnContentType(opts.headers);
    const body = opts.body === undefined ? undefined : raw ? (opts.body as string) : JSON.stringify(opts.body);
    let refreshed = false;
    for (let resent = 0; ; ) {
      const token = this.apiKey ? null : await this.session.token();
      const init: RequestInit = { method: m, headers: this.headers(m, token, key, opts, body !== undefined && !raw) };
      if (body !== undefined) init.body = body;
      if (opts.signal) init.signal = opts.signal;
      let res: Response;
      try {
        res = await this.fetchFn(url, init);
      } catch (e) {
        if (isAbort(e, opts.signal)) throw opts.signal?.aborted ? abortReason(opts.signal) : e;
        if (resent < this.retries && this.mayResend(m, key, opts)) {
          await sleep(this.timers, backoffDelay(resent++, this.random), opts.signal);
          continue;
        }
        throw new NetworkError(`${m} ${path}: no answer`, e);
      }
      if (res.status === 401 && token && !refreshed) {
        refreshed = true;
        await res.text().catch(() => "");
        await this.session.refresh(token);
        continue;
      }
      const wait = this.retryWait(res);
      if (wait !== null && resent < this.retries) {
        resent++;
        await res.text().catch(() => "");
        await sleep(this.timers, wait * 1000, opts.signal);
        continue;
      }
      return this.read<T>(res);
    }
  }

  private hasOwnContentType(headers?: Record<string, string>): boolean {
    return !!headers && Object.keys(headers).some((k) => k.toLowerCase() === "content-type");
  }

  /* Seconds to wait before sending again, or null: 503 and 429 were refused
   * before anything happened, so any method may go again - when the server
   * says when, and soon. */
  private retryWait(res: Response): number | null {
    if (res.status !== 503 && res.status !== 429) return null;
    const v = (res.headers.get("retry-after") || "").trim();
    if (!/^\d+$/.test(v)) return null;
    const s = Number(v);
    return s <= MAX_RETRY_AFTER_S ? s : null;
  }

  private async read<T>(res: Response): Promise<T> {
    if (!res.ok) throw await problemFromResponse(res, this.now());
    if (res.status === 204 || res.status === 205) return undefined as T;
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw new NetworkError(`the answer (${res.status}) broke off`, e);
    }
    if (text === "") return undefined as T;
    if (!/json/i.test(res.headers.get("content-type") || "")) return text as T;
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new NetworkError(`the answer (${res.status}) is not valid JSON`, e);
    }
  }

  /* ---- lists ---- */

  private async step<T>(path: string, query?: Query): Promise<PageStep<T>> {
    return readPage<T>(await this.request("GET", path, { query }));
  }

  /** One page: { items, next_cursor }; pass next_cursor back as `cursor` for the next. */
  async page<T = unknown>(path: string, query?: Query): Promise<Page<T>> {
    return (await this.step<T>(path, query)).page;
  }

  /** Every item of a list, fetching the next page when the current one is used up. */
  async *iterate<T = unknown>(path: string, query?: Query): AsyncIterableIterator<T> {
    let q: Query = { ...query };
    const seen = new Set<string>();
    for (;;) {
      const { page, param } = await this.step<T>(path, q);
      yield* page.items;
      /* a cursor that comes round again would loop for ever */
      if (page.next_cursor === null || seen.has(page.next_cursor)) return;
      seen.add(page.next_cursor);
      q = { ...q, [param]: page.next_cursor };
    }
  }

  /* ---- live ---- */

  private wsUrl(): string {
    let base = this.baseUrl;
    if (!/^https?:\/\//i.test(base)) {
      const loc = (globalThis as { location?: { protocol: string; host: string } }).location;
      if (!loc || !loc.host) throw new Error("Trellis: set baseUrl - this platform has no page origin");
      base = `${loc.protocol}//${loc.host}${base}`;
    }
    return `${base.replace(/^http/i, "ws")}/v1/ws`;
  }

  /**
   * The live connection (one per client: a second call adds its topics to
   * the first and returns it, until that one is closed).
   */
  live(opts: { topics?: string[]; resumeKey?: string } = {}): Live {
    if (this.liveConn && this.liveConn.state !== "closed") {
      if (opts.topics) this.liveConn.subscribe(opts.topics);
      return this.liveConn;
    }
    if (!this.WebSocketCtor) throw new Error("Trellis: no WebSocket on this platform; pass opts.WebSocket");
    if (opts.resumeKey) this.resumeKey = opts.resumeKey;
    const host: LiveHost = {
      url: this.wsUrl(),
      WebSocket: this.WebSocketCtor,
      storage: this.storage,
      resumeKey: this.resumeKey,
      now: this.now,
      random: this.random,
      timers: this.timers,
      token: () => this.session.token(),
      isSessionOver: (e) => isRejection(e) && !this.session.active,
      endSession: (reason) => void this.session.end(reason),
    };
    this.liveConn = new Live(host, opts.topics);
    return this.liveConn;
  }
}
