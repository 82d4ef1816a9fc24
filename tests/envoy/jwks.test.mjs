// Keys by URL: the issuer publishes its JWKS on a local server (127.0.0.1);
// the filter fetches it through an Envoy cluster, holds requests that arrive
// before the keys, picks up a rotated-in key on demand (with a cooldown),
// keeps the last good keys when a fetch fails, and refreshes periodically,
// conditionally once the JWKS has an `ETag` (a 304 keeps keys and token cache).

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { webcrypto as crypto } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import { loadVectors, mintCaseToken } from "../vectors/mint.mjs";
import {
  bootstrap,
  wasmFilter,
  startEnvoy,
  startUpstream,
  startJwksServer,
  send,
  stats,
  nowSecs,
  eventually,
} from "./harness.mjs";

const { cases, policy } = loadVectors();
const validSpec = cases.find((c) => c.name === "valid EdDSA token reads a contact").token;
const JWKS_URI = "https://sts.test/.well-known/jwks.json";

/** A fresh Ed25519 signing key: `{private, public}` JWKs with `kid`. */
async function newKey(kid) {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  return {
    private: { ...jwk, kid, alg: "EdDSA" },
    public: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, kid, alg: "EdDSA", use: "sig" },
  };
}

let serial = 0;
const mint = (key) => mintCaseToken({ ...validSpec, key: "k" }, { k: key.private }, nowSecs(), serial++);
const read = (envoy, token) =>
  send(envoy.port, { path: "/v1/contacts/42", headers: { authorization: `Bearer ${token}` } });
const jwks = (...keys) => ({ keys: keys.map((k) => k.public) });

/** The filter configuration: the shared policy with its issuer's keys at a URL. */
function configuration(settings) {
  const p = structuredClone(policy);
  delete p.issuers[0].jwks;
  p.issuers[0].jwks_uri = JWKS_URI;
  return JSON.stringify({ policy: p, jwks_cluster: "sts", jwks_timeout: "2s", ...settings });
}

const counter = async (envoy, name) => (await stats(envoy)).values[`wasmcustom.agentguard.${name}`] ?? 0;

/** Waits until the JWKS server has had no request for 1.5 s. */
async function quiet(server) {
  for (;;) {
    const hits = server.hits;
    await sleep(1500);
    if (server.hits === hits) return;
  }
}

const cleanup = [];
after(async () => {
  for (const stop of cleanup.reverse()) await stop();
});

async function setUp(settings, initialKeys) {
  const upstream = await startUpstream();
  cleanup.push(upstream.close);
  const server = await startJwksServer(initialKeys);
  cleanup.push(server.close);
  return { upstream, server, start: async () => {
    const envoy = await startEnvoy(
      bootstrap({
        httpFilters: [wasmFilter(configuration(settings))],
        upstreamPort: upstream.port,
        clusters: { sts: server.port },
      }),
    );
    cleanup.push(envoy.stop);
    return envoy;
  } };
}

test("keys by URL: held first requests, rotation on demand, cooldown, last good keys", async () => {
  const [a, b, c] = await Promise.all([newKey("key-a"), newKey("key-b"), newKey("key-never-published")]);
  const { server, start } = await setUp({ jwks_refresh: "1h", jwks_cooldown: "1s" }, jwks(a));
  server.delay(3000);
  const envoy = await start();

  // 1. The first fetch is under way and will time out (3 s > jwks_timeout 2 s):
  //    the request is held, then refused once the fetch has failed.
  let t0 = Date.now();
  const pending = read(envoy, await mint(a));
  server.delay(500); // the retry answers in time
  const first = await pending;
  assert.equal(first.status, 401, first.body);
  assert.equal(first.json.reason, "token_key_not_found");
  assert.ok(Date.now() - t0 > 1000, `held until the fetch timed out (${Date.now() - t0} ms)`);
  assert.ok((await counter(envoy, "jwks.fetch_failed")) >= 1);

  // The next request waits for the retry and is allowed.
  t0 = Date.now();
  const second = await read(envoy, await mint(a));
  assert.equal(second.status, 200, second.body);
  assert.ok(Date.now() - t0 > 200, `held until the keys arrived (${Date.now() - t0} ms)`);
  assert.ok((await counter(envoy, "jwks.waited")) >= 2);
  assert.ok((await counter(envoy, "jwks.fetch_ok")) >= 1);
  assert.ok(server.paths.every((p) => p === "sts.test /.well-known/jwks.json"), server.paths.join(", "));
  server.delay(0);
  // Envoy's main-thread VM fetches on its own schedule too; let it settle so
  // the counts below are the worker's on-demand fetches only.
  await quiet(server);

  // 2. Keys known: no fetch per request.
  let hits = server.hits;
  assert.equal((await read(envoy, await mint(a))).status, 200);
  assert.equal(server.hits, hits);

  // 3. Rotation: a token signed with a key published after start-up. Its
  //    unknown kid triggers a fetch; the request is held and then allowed.
  server.set(jwks(a, b));
  await sleep(1100);
  const rotated = await read(envoy, await mint(b));
  assert.equal(rotated.status, 200, rotated.body);
  assert.equal(server.hits, hits + 1, "one on-demand fetch");
  hits = server.hits;

  // 4. Cooldown: unknown kids right after a fetch are refused without fetching.
  for (let i = 0; i < 5; i++) {
    const res = await read(envoy, await mint(c));
    assert.equal(res.status, 401);
    assert.equal(res.json.reason, "token_key_not_found");
  }
  assert.equal(server.hits, hits, "no fetch within the cooldown");

  // 5. A failing JWKS endpoint: the last good keys stay.
  server.fail(503);
  await sleep(1100);
  const failedBefore = await counter(envoy, "jwks.fetch_failed");
  assert.equal((await read(envoy, await mint(c))).json.reason, "token_key_not_found");
  assert.equal(server.hits, hits + 1, "the unknown kid tried a fetch");
  assert.equal(await counter(envoy, "jwks.fetch_failed"), failedBefore + 1);
  assert.equal((await read(envoy, await mint(b))).status, 200, "key b still verifies fresh tokens");
  assert.equal((await read(envoy, await mint(a))).status, 200, "key a too");

  // 6. Key a retired: once a fetch brings the new set, tokens signed with it
  //    are refused, cached ones included.
  const cachedA = await mint(a);
  assert.equal((await read(envoy, cachedA)).status, 200);
  server.set(jwks(b));
  await sleep(1100);
  assert.equal((await read(envoy, await mint(c))).json.reason, "token_key_not_found", "triggers the fetch");
  const retired = await read(envoy, cachedA);
  assert.equal(retired.status, 401);
  assert.equal(retired.json.reason, "token_key_not_found");
  assert.equal((await read(envoy, await mint(b))).status, 200);
});

test("keys by URL: the periodic refresh picks up a new key set without any trigger", async () => {
  const [a, b] = await Promise.all([newKey("key-a"), newKey("key-b")]);
  const { server, start } = await setUp({ jwks_refresh: "2s", jwks_cooldown: "1m" }, jwks(a));
  const envoy = await start();
  const tokenA = await mint(a);
  await eventually(async () => (await read(envoy, tokenA)).status === 200, { what: "the first keys" });
  const okBefore = await counter(envoy, "jwks.fetch_ok");

  server.set(jwks(b));
  // Token a's kid is known until the refresh, so these requests never trigger
  // a fetch themselves (and the 1m cooldown would forbid a second one).
  const refused = await eventually(
    async () => {
      const res = await read(envoy, tokenA);
      return res.status === 401 ? res : null;
    },
    { timeoutMs: 8000, everyMs: 200, what: "the refresh to retire key a" },
  );
  assert.equal(refused.json.reason, "token_key_not_found");
  assert.ok((await counter(envoy, "jwks.fetch_ok")) > okBefore);
  const tokenB = await mint(b);
  assert.equal((await read(envoy, tokenB)).status, 200);
});

test("keys by URL: conditional refreshes (If-None-Match), a 304 keeps the keys and the token cache", async () => {
  const [a, b] = await Promise.all([newKey("key-a"), newKey("key-b")]);
  const { server, start } = await setUp({ jwks_refresh: "1s", jwks_cooldown: "1s" }, jwks(a));
  const n = (name) => counter(envoy, name);
  const tick = () => sleep(1100); // decision counters reach Envoy on the next tick

  // 0. A 304 to a request without If-None-Match is no answer: a failed fetch, no keys.
  server.always304(true);
  const envoy = await start();
  const tokenA = await mint(a);
  const refused = await read(envoy, tokenA);
  assert.equal(refused.status, 401, refused.body);
  assert.equal(refused.json.reason, "token_key_not_found");
  await eventually(async () => (await n("jwks.fetch_failed")) >= 1, { what: "the 304 counted as failed" });
  assert.equal(await n("jwks.fetch_not_modified"), 0);
  assert.equal(await n("jwks.fetch_ok"), 0);
  assert.ok(server.ifNoneMatch.every((v) => v === null), "no ETag known yet");

  // 1. A JWKS with an ETag: loaded, then every fetch carries `If-None-Match`
  //    with it (Envoy's main thread and the worker each fetch every 1 s) and
  //    gets a 304.
  server.always304(false);
  let mark = server.ifNoneMatch.length;
  server.set(jwks(a), { etag: '"k1"' });
  await eventually(async () => (await read(envoy, tokenA)).status === 200, { what: "the keys" });
  await eventually(async () => (await n("jwks.fetch_not_modified")) >= 3, { what: "304s" });
  let sent = server.ifNoneMatch.slice(mark);
  assert.ok(sent.includes('"k1"'), sent.join(", "));
  assert.ok(sent.every((v) => v === null || v === '"k1"'), sent.join(", "));
  assert.ok(sent.filter((v) => v === null).length <= 2, `one plain fetch per VM: ${sent.join(", ")}`);

  // 2. 304s leave the key generation alone: the cached token stays a cache
  //    hit across several refreshes, and no document is loaded again.
  assert.equal((await read(envoy, tokenA)).status, 200);
  await tick();
  const [hits, misses, ok, notModified] = await Promise.all(
    ["token.cache_hit", "token.cache_miss", "jwks.fetch_ok", "jwks.fetch_not_modified"].map(n),
  );
  mark = server.ifNoneMatch.length;
  await eventually(() => server.ifNoneMatch.length >= mark + 4, { what: "two refreshes per VM" });
  for (let i = 0; i < 3; i++) assert.equal((await read(envoy, tokenA)).status, 200);
  await tick();
  assert.equal(await n("token.cache_hit"), hits + 3, "the token stays cached");
  assert.equal(await n("token.cache_miss"), misses, "no token verified again");
  assert.equal(await n("jwks.fetch_ok"), ok, "nothing loaded");
  assert.ok((await n("jwks.fetch_not_modified")) >= notModified + 4);
  assert.ok(server.ifNoneMatch.slice(mark).every((v) => v === '"k1"'), server.ifNoneMatch.slice(mark).join(", "));

  // The control: the same JWKS without an ETag is a 200 on every refresh,
  // each one a new key generation, so the cached token is verified again.
  server.set(jwks(a));
  mark = server.ifNoneMatch.length;
  await eventually(() => server.ifNoneMatch.length >= mark + 4, { what: "plain refreshes" });
  await sleep(1200);
  const missesBefore = await n("token.cache_miss");
  assert.equal((await read(envoy, tokenA)).status, 200);
  await tick();
  assert.equal(await n("token.cache_miss"), missesBefore + 1, "after a 200 the token is verified again");
  assert.ok(server.ifNoneMatch.slice(-2).every((v) => v === null), "a JWKS without an ETag clears it");

  // 3. A refused document's ETag is never sent: the filter keeps sending the
  //    ETag of the keys in force, so the host answers with the bad document
  //    again (refused again) rather than a 304 vouching for it.
  server.set(jwks(a), { etag: '"k1"' });
  await eventually(() => server.ifNoneMatch.slice(-2).every((v) => v === '"k1"'), { what: "k1 in force" });
  const failed = await n("jwks.fetch_failed");
  server.set({ keys: [] }, { etag: '"empty"' });
  mark = server.ifNoneMatch.length;
  await eventually(async () => (await n("jwks.fetch_failed")) > failed, { what: "the empty JWKS refused" });
  await eventually(() => server.ifNoneMatch.length >= mark + 4, { what: "more refreshes" });
  sent = server.ifNoneMatch.slice(mark);
  assert.ok(!sent.includes('"empty"'), `the refused document's ETag was sent: ${sent.join(", ")}`);
  assert.ok(sent.every((v) => v === '"k1"'), sent.join(", "));
  assert.ok((await n("jwks.fetch_failed")) >= failed + 3, "refused on every fetch");
  assert.equal((await read(envoy, await mint(a))).status, 200, "the last good keys stay");

  // 4. A new key set with a new ETag: a 200 to If-None-Match "k1" replaces
  //    the keys (key b rotated in on demand, key a retired), and its ETag is sent next.
  server.set(jwks(b), { etag: '"k2"' });
  await eventually(async () => (await read(envoy, await mint(b))).status === 200, { what: "key b" });
  const retired = await read(envoy, tokenA);
  assert.equal(retired.status, 401);
  assert.equal(retired.json.reason, "token_key_not_found");
  await eventually(() => server.ifNoneMatch.slice(-2).every((v) => v === '"k2"'), { what: "k2 sent" });
});

test("a request held for a key fetch stays held while its body arrives: decided, never passed on undecided", async () => {
  // Regression: a held request's body (or trailers) callback returned
  // `Continue`, which with `allow_on_headers_stop_iteration` sent the held
  // headers upstream before any decision, inbound identity headers and all.
  const p = structuredClone(policy);
  const legit = p.issuers[0].jwks;
  delete p.issuers[0].jwks;
  p.issuers[0].jwks_uri = JWKS_URI;
  const upstream = await startUpstream();
  const server = await startJwksServer(legit);
  const envoy = await startEnvoy(
    bootstrap({
      httpFilters: [
        wasmFilter(JSON.stringify({ policy: p, jwks_cluster: "sts", jwks_timeout: "3s", jwks_refresh: "1h", jwks_cooldown: "1s" })),
      ],
      upstreamPort: upstream.port,
      clusters: { sts: server.port },
    }),
  );
  try {
    await eventually(() => server.hits > 0, { what: "the first fetch" });
    await sleep(500);
    const held = (token) =>
      send(envoy.port, {
        method: "POST",
        path: "/v1/drafts",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "x-agentguard-agent": "spoofed" },
        body: ['{"to":"ceo@example.com",', '"text":"hello"}'],
      });
    // A forged token (a key the issuer never published) while the fetch its kid starts is slow.
    server.delay(1500);
    const forgedToken = await mint(await newKey("attacker-kid"));
    const refused = await held(forgedToken);
    assert.equal(refused.headers["x-upstream"], undefined, `reached the upstream undecided: ${refused.body}`);
    assert.equal(refused.status, 401, refused.body);
    assert.equal(refused.json.reason, "token_key_not_found");
  } finally {
    await envoy.stop();
    await upstream.close();
    await server.close();
  }
});
