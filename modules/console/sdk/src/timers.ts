// Timers and backoff, injectable so tests (and apps with their own
// scheduling) can drive time by hand.

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export const BACKOFF_BASE_MS = 250;
export const BACKOFF_CAP_MS = 30_000;

/**
 * "Full jitter" exponential backoff: a uniform pick in [0, min(cap, base*2^n)).
 * Spreading reconnects over the whole window keeps thousands of clients that
 * lost the server at the same moment from coming back at the same moment.
 */
export function backoffDelay(attempt: number, random: () => number): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 30));
  const r = random();
  return Math.floor(ceiling * (r >= 0 && r < 1 ? r : 0.5));
}

/** Waits ms on `timers`; rejects with the signal's reason when it aborts first. */
export function sleep(timers: Timers, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      timers.clearTimeout(handle);
      reject(abortReason(signal as AbortSignal));
    };
    const handle = timers.setTimeout(() => {
      if (signal) signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    if (signal) signal.addEventListener("abort", onAbort, { once: true });
  });
}

export function abortReason(signal: AbortSignal): unknown {
  if ((signal as { reason?: unknown }).reason !== undefined) return (signal as { reason?: unknown }).reason;
  const e = new Error("The operation was aborted.");
  e.name = "AbortError";
  return e;
}
