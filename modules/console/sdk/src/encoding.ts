// Decoding a JWT's claims without atob, Buffer or TextDecoder: React Native
// (Hermes) has none of them reliably, and the SDK only needs to read `exp`
// and `iat`. The signature is not checked - the server does that; the client
// only wants to know when to refresh.

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/* char code -> 6-bit value; both the url-safe and the standard alphabet's
 * last two characters are accepted, -1 marks everything else */
const SEXTET: Int8Array = (() => {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) t[ALPHABET.charCodeAt(i)] = i;
  t["-".charCodeAt(0)] = 62;
  t["+".charCodeAt(0)] = 62;
  t["_".charCodeAt(0)] = 63;
  t["/".charCodeAt(0)] = 63;
  return t;
})();

/** base64url (or base64) text to bytes; padding optional. Throws on bad input. */
export function base64UrlDecode(text: string): Uint8Array {
  const s = text.replace(/=+$/, "");
  if (s.length % 4 === 1) throw new Error("base64: bad length");
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let bits = 0;
  let nbits = 0;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? SEXTET[c] : -1;
    if (v < 0) throw new Error("base64: bad character");
    bits = ((bits << 6) | v) & 0xffffff;
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out[n++] = (bits >> nbits) & 0xff;
    }
  }
  return out.subarray(0, n);
}

/* A lead byte's payload bits, how many continuation bytes follow, and the
 * smallest code point that length may encode (longer is an overlong form). */
function leadByte(b: number): { cp: number; need: number; min: number } {
  if (b < 0x80) return { cp: b, need: 0, min: 0 };
  if (b >= 0xc2 && b < 0xe0) return { cp: b & 0x1f, need: 1, min: 0x80 };
  if (b >= 0xe0 && b < 0xf0) return { cp: b & 0x0f, need: 2, min: 0x800 };
  if (b >= 0xf0 && b < 0xf5) return { cp: b & 0x07, need: 3, min: 0x10000 };
  return { cp: -1, need: 0, min: 0 };
}

/** UTF-8 bytes to a string; malformed sequences become U+FFFD. */
export function utf8Decode(bytes: Uint8Array): string {
  const units: number[] = [];
  let i = 0;
  while (i < bytes.length) {
    const lead = leadByte(bytes[i++]);
    let cp = lead.cp;
    for (let k = 0; k < lead.need && cp >= 0; k++) {
      const c = bytes[i];
      if (c === undefined || (c & 0xc0) !== 0x80) cp = -1; /* not consumed: it may start the next */
      else {
        cp = (cp << 6) | (c & 0x3f);
        i++;
      }
    }
    if (cp < lead.min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) cp = 0xfffd;
    if (cp >= 0x10000) units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
    else units.push(cp);
  }
  /* in chunks: spreading a huge array into one call overflows the stack */
  let s = "";
  for (let j = 0; j < units.length; j += 4096) s += String.fromCharCode(...units.slice(j, j + 4096));
  return s;
}

/** The claims of a JWT, or null when it is not one. */
export function jwtClaims(token: string): Record<string, unknown> | null {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const claims: unknown = JSON.parse(utf8Decode(base64UrlDecode(parts[1])));
    return claims && typeof claims === "object" ? (claims as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * A random UUIDv4 for Idempotency-Key. crypto.getRandomValues when the
 * platform has it (browsers, Node); otherwise `random` (React Native without
 * a crypto polyfill) - weaker, but a key only has to be unique per user and day.
 */
export function randomKey(random: () => number,
  crypto: { getRandomValues?(a: Uint8Array): unknown } | null = (globalThis as { crypto?: Crypto }).crypto || null): string {
  const b = new Uint8Array(16);
  if (crypto && typeof crypto.getRandomValues === "function") crypto.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(random() * 256) & 0xff;
  b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
  b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
  let hex = "";
  for (const x of b) hex += (x < 16 ? "0" : "") + x.toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
