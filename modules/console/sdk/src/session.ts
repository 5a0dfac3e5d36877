// The signed-in user's tokens: where they are kept, when they are refreshed,
// and when the session is over.
//
// Invariants:
// - At most one refresh is in flight. The refresh token rotates on every use
//   and presenting a rotated one again revokes the whole session, so two
//   parallel refreshes would sign the user out. Callers that find a refresh
//   running wait for it; callers whose 401 came from a token that has been
//   replaced meanwhile just use the new one.
// - Expiry is kept on the local clock: the token's lifetime (exp - iat, both
//   on the server's clock) added to the moment it arrived. A device whose
//   clock is off by minutes still refreshes on time.
// - Only an answer that says the refresh token is no good (4xx) ends the
//   session. Offline or a 5xx keeps it: the next call tries again.

import { jwtClaims } from "./encoding";
import { Problem } from "./problem";
import type { KeyValueStorage } from "./storage";

/** What /v1/auth/login, /v1/auth/refresh and /v1/signup answer with. */
export interface TokenPair {
  access_token: string;
  refresh_token: string;
  expires_in?: number;
}

/** The stored form; times are on the local clock, in ms. */
export interface SavedSession {
  access_token: string;
  refresh_token: string;
  received_at: number;
  expires_at: number;
}

/* Refresh this long before expiry (at most a quarter of the lifetime), so a
 * request that is slow to reach the server still carries a valid token. */
const REFRESH_MARGIN_MS = 60_000;
/* Used when neither the token nor the answer says how long it lives. */
const DEFAULT_LIFETIME_S = 15 * 60;

export interface SessionDeps {
  storage: KeyValueStorage;
  key: string;
  now: () => number;
  /** POST /v1/auth/refresh without any of the session logic; throws Problem/NetworkError. */
  exchange: (refreshToken: string) => Promise<TokenPair>;
  /** The session is over: tell the app, close the live connection. */
  ended: (reason: string) => void;
}

function lifetimeSeconds(pair: TokenPair): number {
  const c = jwtClaims(pair.access_token);
  if (c && typeof c.exp === "number" && typeof c.iat === "number" && c.exp > c.iat) return c.exp - c.iat;
  if (typeof pair.expires_in === "number" && pair.expires_in > 0) return pair.expires_in;
  return DEFAULT_LIFETIME_S;
}

function parseSaved(text: string | null): SavedSession | null {
  if (!text) return null;
  try {
    const s = JSON.parse(text) as SavedSession;
    if (typeof s.access_token === "string" && typeof s.refresh_token === "string" &&
      typeof s.expires_at === "number" && typeof s.received_at === "number")
      return s;
  } catch {
    /* a foreign or damaged value: as if signed out */
  }
  return null;
}

/** A refresh answer that means the refresh token will never work again. */
export function isRejection(e: unknown): boolean {
  return e instanceof Problem && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429;
}

export class Session {
  private saved: SavedSession | null = null;
  private refreshing: Promise<string> | null = null;

  constructor(private readonly deps: SessionDeps) {}

  get active(): boolean {
    return this.saved !== null;
  }

  /** The current access token as is (maybe near expiry), or null. */
  get accessToken(): string | null {
    return this.saved ? this.saved.access_token : null;
  }

  /** Keeps a fresh pair, in memory and in storage. */
  async adopt(pair: TokenPair): Promise<void> {
    const now = this.deps.now();
    const s: SavedSession = {
      access_token: pair.access_token,
      refresh_token: pair.refresh_token,
      received_at: now,
      expires_at: now + lifetimeSeconds(pair) * 1000,
    };
    this.saved = s;
    await this.deps.storage.set(this.deps.key, JSON.stringify(s));
  }

  /** Loads the stored session; false when there is none. */
  async load(): Promise<boolean> {
    this.saved = parseSaved(await this.deps.storage.get(this.deps.key));
    return this.saved !== null;
  }

  private nearExpiry(s: SavedSession): boolean {
    const margin = Math.min(REFRESH_MARGIN_MS, (s.expires_at - s.received_at) / 4);
    return this.deps.now() >= s.expires_at - margin;
  }

  /**
   * An access token good for a while yet: refreshed first when close to
   * expiry. null when signed out. A refresh that fails for a passing reason
   * falls back to the old token while it has not expired.
   */
  async token(): Promise<string | null> {
    const s = this.saved;
    if (!s) return null;
    if (!this.nearExpiry(s)) return s.access_token;
    try {
      return await this.refresh(s.access_token);
    } catch (e) {
      if (!isRejection(e) && this.saved === s && this.deps.now() < s.expires_at) return s.access_token;
      throw e;
    }
  }

  /**
   * A new access token after `stale` stopped working (401) or came close to
   * expiry. Shared by every caller while one refresh is in flight.
   */
  refresh(stale: string | null): Promise<string> {
    if (this.saved && stale !== null && this.saved.access_token !== stale)
      return Promise.resolve(this.saved.access_token);
    if (!this.refreshing) {
      this.refreshing = this.exchange().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async exchange(): Promise<string> {
    /* Another tab sharing the storage may have rotated the pair already:
     * its refresh token is the only one that still works. */
    const stored = parseSaved(await this.deps.storage.get(this.deps.key));
    if (stored && this.saved && stored.refresh_token !== this.saved.refresh_token && !this.nearExpiry(stored)) {
      this.saved = stored;
      return stored.access_token;
    }
    const current = stored || this.saved;
    if (!current) throw new Problem(401, null, "not signed in");
    let pair: TokenPair;
    try {
      pair = await this.deps.exchange(current.refresh_token);
    } catch (e) {
      if (isRejection(e)) await this.end("refresh_failed");
      throw e;
    }
    await this.adopt(pair);
    return pair.access_token;
  }

  /** Forgets the tokens everywhere; tells the app once, when it was signed in. */
  async end(reason: string): Promise<void> {
    const was = this.saved !== null;
    this.saved = null;
    try {
      await this.deps.storage.remove(this.deps.key);
    } finally {
      if (was) this.deps.ended(reason);
    }
  }
}
