// Where the SDK keeps what must outlive a page load: the session's tokens and
// the live connection's resume id. The app chooses the place (localStorage,
// AsyncStorage in React Native, a keychain wrapper...), so every method may be
// synchronous or return a promise.

export interface KeyValueStorage {
  get(key: string): string | null | Promise<string | null>;
  set(key: string, value: string): void | Promise<void>;
  remove(key: string): void | Promise<void>;
}

/** Keeps values in this object only: nothing survives a reload. */
export function memoryStorage(): KeyValueStorage {
  const values = new Map<string, string>();
  return {
    get: (key) => (values.has(key) ? (values.get(key) as string) : null),
    set: (key, value) => {
      values.set(key, value);
    },
    remove: (key) => {
      values.delete(key);
    },
  };
}

/* The subset of the Web Storage API this file uses. */
interface WebStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/* localStorage can be missing (React Native, workers) or throw on access
 * (Safari private mode, storage disabled by policy): both mean "none". */
function findLocalStorage(): WebStorage | null {
  try {
    const ls = (globalThis as { localStorage?: WebStorage }).localStorage;
    if (!ls) return null;
    const probe = "__trellis_probe__";
    ls.setItem(probe, probe);
    ls.removeItem(probe);
    return ls;
  } catch {
    return null;
  }
}

/**
 * localStorage under `prefix` when the platform has a usable one, otherwise
 * memory. A write that fails (quota) is dropped: the SDK keeps working from
 * its in-memory state, it only loses the value at the next reload.
 */
export function browserStorage(prefix = ""): KeyValueStorage {
  const ls = findLocalStorage();
  if (!ls) return memoryStorage();
  return {
    get: (key) => ls.getItem(prefix + key),
    set: (key, value) => {
      try {
        ls.setItem(prefix + key, value);
      } catch {
        /* quota exceeded: see above */
      }
    },
    remove: (key) => {
      ls.removeItem(prefix + key);
    },
  };
}
