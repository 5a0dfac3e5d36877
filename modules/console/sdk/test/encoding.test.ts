// The hand-written decoders (React Native has no atob/TextDecoder to lean on),
// checked against Node's own.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { test } from "node:test";
import { base64UrlDecode, jwtClaims, randomKey, utf8Decode } from "../src/encoding";
import { browserStorage, memoryStorage } from "../src/index";
import { jwt } from "./fakes";

test("base64url decoding matches Node's for every length and both alphabets", () => {
  for (let len = 0; len < 70; len++) {
    const bytes = Buffer.from(Array.from({ length: len }, (_, i) => (i * 97 + len * 31) & 0xff));
    assert.deepEqual(Buffer.from(base64UrlDecode(bytes.toString("base64url"))), bytes, `url, ${len} bytes`);
    assert.deepEqual(Buffer.from(base64UrlDecode(bytes.toString("base64"))), bytes, `standard, ${len} bytes`);
  }
});

test("base64url decoding refuses characters outside the alphabet and impossible lengths", () => {
  assert.throws(() => base64UrlDecode("ab$d"));
  assert.throws(() => base64UrlDecode("abcde"));
  assert.throws(() => base64UrlDecode("ab\u00e9d"));
});

test("UTF-8 decoding matches Node's, including four-byte characters", () => {
  const text = "Zoë Ørsted – 東京 🚀 ok";
  assert.equal(utf8Decode(new Uint8Array(Buffer.from(text))), text);
});

test("malformed UTF-8 becomes U+FFFD instead of throwing", () => {
  assert.equal(utf8Decode(new Uint8Array([0x61, 0xc3, 0x62])), "a\ufffdb"); /* cut short */
  assert.equal(utf8Decode(new Uint8Array([0xc0, 0xaf])), "\ufffd\ufffd"); /* overlong */
  assert.equal(utf8Decode(new Uint8Array([0xed, 0xa0, 0x80])), "\ufffd"); /* a surrogate */
});

test("jwtClaims reads the payload and answers null for what is not a JWT", () => {
  const claims = jwtClaims(jwt({ sub: "u1", exp: 1900000000, name: "Zoë" }));
  assert.deepEqual(claims, { sub: "u1", exp: 1900000000, name: "Zoë" });
  assert.equal(jwtClaims("opaque-token"), null);
  assert.equal(jwtClaims("a.!!!.c"), null);
  assert.equal(jwtClaims(`a.${Buffer.from("42").toString("base64url")}.c`), null);
});

test("randomKey is a UUIDv4 from crypto, or from random() where there is no crypto", () => {
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  assert.match(randomKey(Math.random), uuid);
  assert.notEqual(randomKey(Math.random), randomKey(Math.random));
  let calls = 0;
  const k = randomKey(() => (calls++ % 16) / 16, null);
  assert.equal(calls, 16);
  assert.match(k, uuid);
  assert.equal(randomKey(() => 0.5, null), randomKey(() => 0.5, null), "only random() was used");
});

test("memoryStorage keeps values; browserStorage falls back to it without localStorage", async () => {
  for (const s of [memoryStorage(), browserStorage("x.")]) {
    assert.equal(await s.get("k"), null);
    await s.set("k", "v");
    assert.equal(await s.get("k"), "v");
    await s.remove("k");
    assert.equal(await s.get("k"), null);
  }
});

test("browserStorage uses localStorage under its prefix when there is one", async () => {
  const items = new Map<string, string>();
  const fake = {
    getItem: (k: string) => items.get(k) ?? null,
    setItem: (k: string, v: string) => void items.set(k, v),
    removeItem: (k: string) => void items.delete(k),
  };
  (globalThis as any).localStorage = fake;
  try {
    const s = browserStorage("app.");
    await s.set("trellis.session", "{}");
    assert.equal(items.get("app.trellis.session"), "{}");
    assert.equal(await s.get("trellis.session"), "{}");
  } finally {
    delete (globalThis as any).localStorage;
  }
});
