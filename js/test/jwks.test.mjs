// JwksCache (js/src/jwks.js) and DirectoryCache (js/src/directory.js, the same
// cache) when a fetch never settles: in workerd a fetch started by a request
// that is then cancelled may never settle, abort or not, and an injected
// `fetch` may ignore its AbortSignal. The wait on the shared in-flight fetch is
// bounded (`timeoutMs` per request the fetch may make, plus 1 s), and a fetch
// past that bound no longer holds the URL: without the bound every later get
// of that URL would wait forever. Injected `fetch` and a fake clock; the bound
// itself is a real timer, so `timeoutMs` is small and each test has its own
// short timeout (a hang fails the test in seconds, not after 120 s): a ref'd
// timer of its own, since node:test's is unref'd, and a hung promise with no
// timer left would only end the run ("Promise resolution is still pending").

import { test as nodeTest, describe } from "node:test";
import assert from "node:assert/strict";

import { JwksCache } from "../src/jwks.js";
import { DirectoryCache } from "../src/directory.js";

const URL_ = "https://sts.test/.well-known/jwks.json";
const KEYS = '{"keys":[]}';
const LIMIT_MS = 5_000;

// `test(name, fn)`, failing when `fn` has not settled within LIMIT_MS.
function test(name, fn) {
  nodeTest(name, async () => {
    let timer;
    const hung = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`hung: not settled within ${LIMIT_MS} ms`)), LIMIT_MS);
    });
    try {
      await Promise.race([fn(), hung]);
    } finally {
      clearTimeout(timer);
    }
  });
}

// A `fetch` whose calls are listed in `calls`; each one is answered by the
// next of `answers`: "hang" (never settles, ignores its signal), a deferred
// (`{promise, resolve, reject}`, settled by the test) or a body text.
function fakeFetch(answers) {
  const calls = [];
  const fetch = (url, init) => {
    calls.push({ url, init });
    const a = answers.shift() ?? "hang";
    if (a === "hang") return new Promise(() => {});
    if (typeof a === "object") return a.promise;
    return Promise.resolve(new Response(a, { headers: { "content-type": "application/json", "cache-control": "max-age=300" } }));
  };
  return { fetch, calls };
}

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function setup(Cache, answers, options = {}) {
  const clock = { now: 1_000_000 };
  const logs = [];
  const { fetch, calls } = fakeFetch(answers);
  const cache = new Cache({ timeoutMs: 50, retryAfterError: 30, fetch, now: () => clock.now, log: (l) => logs.push(l), ...options });
  return { clock, logs, cache, calls };
}

describe("JwksCache: a fetch that never settles", () => {
  test("the first get fails after the bound; the back-off applies; the next attempt fetches again", async () => {
    const { clock, logs, cache, calls } = setup(JwksCache, ["hang", KEYS]);
    const started = Date.now();
    // Discovery may follow issuer metadata: two requests, so 2 × 50 ms + 1 s.
    await assert.rejects(cache.get(URL_), /fetching https:\/\/sts\.test\/\.well-known\/jwks\.json failed: timed out after 1100 ms/);
    assert.ok(Date.now() - started >= 1_000, "not before the bound");
    assert.equal(calls.length, 1);
    assert.equal(cache.stats(URL_).lastError, "timed out after 1100 ms");
    assert.deepEqual(logs, []); // as for any other failed first fetch: the caller logs the rejection
    // In the back-off: nothing cached, no fetch.
    assert.equal(await cache.get(URL_), null);
    assert.equal(calls.length, 1);
    // After it: a new fetch (the hung one no longer holds the URL).
    clock.now += 30_000;
    const doc = await cache.get(URL_);
    assert.equal(doc.text, KEYS);
    assert.equal(doc.generation, 1);
    assert.equal(calls.length, 2);
    assert.equal(cache.stats(URL_).lastError, null);
  });

  test("concurrent gets share the hung fetch and all fail after the bound, one failure recorded", async () => {
    const { clock, cache, calls } = setup(JwksCache, ["hang", KEYS]);
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => cache.get(URL_)));
    assert.equal(calls.length, 1);
    for (const r of results) {
      assert.equal(r.status, "rejected");
      assert.match(r.reason.message, /timed out after 1100 ms/);
    }
    assert.equal(cache.stats(URL_).fetches, 1);
    clock.now += 30_000;
    assert.equal((await cache.get(URL_)).text, KEYS);
    assert.equal(calls.length, 2);
  });

  test("stale-if-error: with keys in hand the get serves them after the bound, one log line", async () => {
    const { clock, logs, cache, calls } = setup(JwksCache, [KEYS, "hang", KEYS]);
    assert.equal((await cache.get(URL_)).generation, 1);
    clock.now += 301_000; // expired
    const results = await Promise.all(Array.from({ length: 3 }, () => cache.get(URL_)));
    for (const r of results) {
      assert.equal(r.text, KEYS);
      assert.equal(r.stale, true);
    }
    assert.equal(calls.length, 2);
    assert.equal(logs.length, 1);
    assert.match(logs[0], /JWKS https:\/\/sts\.test\/\.well-known\/jwks\.json: refresh failed \(timed out after 1100 ms\); using the keys fetched before/);
    // The back-off: the stale keys, no fetch; then a new fetch.
    assert.equal((await cache.get(URL_)).stale, true);
    assert.equal(calls.length, 2);
    clock.now += 30_000;
    assert.equal((await cache.get(URL_)).stale, false);
    assert.equal(calls.length, 3);
  });

  test("an unknown-kid refresh joining the hung fetch is bounded too", async () => {
    const { clock, logs, cache, calls } = setup(JwksCache, [KEYS, "hang"], { cooldown: 30 });
    await cache.get(URL_);
    clock.now += 31_000;
    const [a, b] = await Promise.all([cache.refreshForUnknownKid(URL_), cache.refreshForUnknownKid(URL_)]);
    assert.equal(calls.length, 2);
    assert.equal(a.text, KEYS);
    assert.equal(b.text, KEYS);
    assert.equal(logs.length, 1);
    assert.match(logs[0], /refresh failed \(timed out after 1100 ms\)/);
  });

  test("a fetch older than its bound (its request went away) does not hold the URL: the next get fetches at once", async () => {
    const late = deferred();
    const { clock, logs, cache, calls } = setup(JwksCache, [late, KEYS]);
    const first = cache.get(URL_);
    first.catch(() => {});
    clock.now += 1_101;
    const doc = await cache.get(URL_);
    assert.equal(doc.text, KEYS);
    assert.equal(calls.length, 2);
    // The abandoned fetch failing later records nothing: the newer one answered.
    late.reject(new Error("connection reset"));
    const r = await first;
    assert.equal(r.text, KEYS, "its waiter gets the keys in hand");
    assert.equal(cache.stats(URL_).lastError, null);
    assert.equal((await cache.get(URL_)).generation, 1);
    assert.equal(calls.length, 2);
    assert.deepEqual(logs, []);
  });

  test("without discovery (a key directory): the bound is timeoutMs + 1 s", async () => {
    const { clock, cache, calls } = setup(DirectoryCache, ["hang", KEYS]);
    await assert.rejects(cache.get(URL_), /timed out after 1050 ms/);
    assert.equal(cache.stats(URL_).lastError, "timed out after 1050 ms");
    clock.now += 30_000;
    assert.equal((await cache.get(URL_)).text, KEYS);
    assert.equal(calls.length, 2);
  });

  test("a fetch that honours its signal still fails with its own timeout, not the bound", async () => {
    const { cache } = setup(JwksCache, [], {
      fetch: (_url, init) => new Promise((_, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason))),
    });
    const started = Date.now();
    await assert.rejects(cache.get(URL_), /timed out after 50 ms/);
    assert.ok(Date.now() - started < 1_000);
  });
});
