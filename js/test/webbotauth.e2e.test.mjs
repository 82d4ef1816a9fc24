// Web Bot Auth end to end: requests signed by Cloudflare's npm `web-bot-auth`
// (RFC 9421 HTTP message signatures, the client signed agents use) go to the
// gateway running in real workerd. Two trusted operators: one whose keys are
// inline in the policy, one whose key directory
// (`/.well-known/http-message-signatures-directory`) the shim fetches from a
// server on 127.0.0.1 and caches like a JWKS. Valid signatures reach the
// origin with the operator as the verified identity; a tampered covered
// component, an expired signature, an unknown key and a replayed nonce are
// refused with distinct reason codes. Directories are served signed with
// web-bot-auth's `directoryResponseHeaders` (tag
// "http-message-signatures-directory", `"@authority";req`); unsigned ones,
// ones signed by a key they do not list or for another authority are refused
// by default and accepted with `directory_signatures: "unchecked"`.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";

import { signatureHeaders, jwkToKeyID, helpers, HTTP_MESSAGE_SIGNATURES_DIRECTORY } from "web-bot-auth";
import { signerFromJWK } from "web-bot-auth/crypto";

import { generateKey, send, startGateway, startOrigin } from "./helpers.mjs";
import { signDirectory } from "../../tests/vectors/webbotauth.mjs";
import { signJwt } from "../../tests/vectors/mint.mjs";
import { DirectoryCache } from "../src/directory.js";
import { AgentGuard, toCoreRequest } from "../src/node.js";

const INLINE_OPERATOR = "https://crawler.test";

async function ed25519() {
  const { privateJwk, publicJwk } = await generateKey("EdDSA", undefined);
  // Directories name keys by thumbprint; no kid/alg/use needed.
  const pub = { kty: publicJwk.kty, crv: publicJwk.crv, x: publicJwk.x };
  return { privateJwk: { ...pub, d: privateJwk.d }, publicJwk: pub, keyid: await jwkToKeyID(pub, helpers.WEBCRYPTO_SHA256, helpers.BASE64URL_DECODE) };
}

/**
 * A key directory on 127.0.0.1 whose keys and availability the test controls.
 * `state.keys` are the listed keys (from `ed25519()`); the response is signed
 * with web-bot-auth's `directoryResponseHeaders` by `state.signers` (default:
 * every listed key), for `state.authority` (default: the directory's own),
 * unless `state.sign` is false.
 */
async function startDirectory(keys) {
  const state = { keys, signers: null, authority: null, sign: true, hits: 0, accept: [], cacheControl: "max-age=300" };
  const server = createServer(async (req, res) => {
    state.hits += 1;
    state.accept.push(req.headers.accept);
    if (req.url !== HTTP_MESSAGE_SIGNATURES_DIRECTORY) {
      res.writeHead(404).end();
      return;
    }
    const headers = {
      "content-type": "application/http-message-signatures-directory+json",
      "cache-control": state.cacheControl,
    };
    if (state.sign) {
      const url = `http://${state.authority ?? req.headers.host}${req.url}`;
      const sig = await signDirectory(url, (state.signers ?? state.keys).map((k) => k.privateJwk));
      headers["signature-input"] = sig.signatureInput;
      headers.signature = sig.signature;
    }
    res.writeHead(200, headers);
    res.end(JSON.stringify({ keys: state.keys.map((k) => k.publicJwk) }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { state, operator: origin, url: origin + HTTP_MESSAGE_SIGNATURES_DIRECTORY, close: () => new Promise((r) => server.close(r)) };
}

/**
 * Signs a request for `https://api.test<path>` with web-bot-auth and returns
 * the headers to send: Signature-Agent (when an operator is given),
 * Signature-Input, Signature.
 */
async function signed(key, { path = "/v1/records/1", operator, authority = "api.test", createdOffset = -1, ttl = 60 } = {}) {
  const signer = await signerFromJWK(key.privateJwk);
  assert.equal(signer.keyid, key.keyid, "web-bot-auth names the key by its RFC 7638 thumbprint");
  const headers = operator ? { "signature-agent": `"${operator}"` } : {};
  const request = new Request(`https://${authority}${path}`, { headers });
  const created = new Date(Date.now() + createdOffset * 1000);
  const expires = new Date(created.getTime() + ttl * 1000);
  const sig = await signatureHeaders(request, signer, { created, expires });
  return { ...headers, "signature-input": sig["Signature-Input"], signature: sig.Signature };
}

describe("Web Bot Auth (npm web-bot-auth) against the gateway in workerd", () => {
  let origin;
  let directory;
  let gateway;
  let inlineKey;
  let remoteKey;
  let rotatedKey;

  before(async () => {
    [inlineKey, remoteKey, rotatedKey] = await Promise.all([ed25519(), ed25519(), ed25519()]);
    const issuer = await generateKey("EdDSA", "unused");
    origin = await startOrigin();
    directory = await startDirectory([remoteKey]);
    const policy = {
      realm: "api.test",
      credentials: "either",
      issuers: [
        { iss: "https://sts.test", audiences: ["https://api.test"], jwks: { keys: [issuer.publicJwk] }, algorithms: ["EdDSA"] },
      ],
      signature_agents: {
        directories: [
          { operator: INLINE_OPERATOR, keys: { keys: [inlineKey.publicJwk] }, scopes: ["records.read"] },
          { operator: directory.operator, directory_uri: directory.url, scopes: ["records.read"] },
        ],
      },
      routes: [
        { id: "read-records", methods: ["GET"], path: "/v1/records/**", scopes: ["records.read"] },
        { id: "admin", methods: ["GET"], path: "/v1/admin/**", scopes: ["admin"] },
      ],
    };
    gateway = await startGateway({ policyText: JSON.stringify(policy), originPort: origin.port });
  });

  after(async () => {
    await gateway?.stop();
    await Promise.all([origin?.close(), directory?.close()]);
  });

  const get = (path, headers) => send(gateway.url + path, { headers: { host: "api.test", ...headers } });

  async function refused(res, reason) {
    assert.equal(res.status, 401, res.text);
    assert.equal(res.headers["content-type"], "application/problem+json");
    assert.equal(JSON.parse(res.text).reason, reason, res.text);
  }

  test("directory by URL (runs first: a clean unknown-key cooldown): fetched once with the directory media type, cached, rotated on an unknown key", async () => {
    const hits0 = directory.state.hits;
    let res = await get("/v1/records/1", await signed(remoteKey, { operator: directory.operator }));
    assert.equal(res.status, 200, res.text);
    const seen = JSON.parse(res.text).headers;
    assert.equal(seen["x-agentguard-issuer"], directory.operator);
    assert.equal(seen["x-agentguard-agent"], directory.operator);
    res = await get("/v1/records/2", await signed(remoteKey, { operator: directory.operator }));
    assert.equal(res.status, 200, res.text);
    // The first request of the isolate loaded the directory; the second used the cache.
    assert.equal(hits0, 0);
    assert.equal(directory.state.hits, 1, "one fetch for two requests");
    assert.match(directory.state.accept[0], /application\/http-message-signatures-directory\+json/);

    // The operator rotates: the new key is unknown until one refresh.
    const hits1 = directory.state.hits;
    directory.state.keys = [rotatedKey];
    res = await get("/v1/records/3", await signed(rotatedKey, { operator: directory.operator }));
    assert.equal(res.status, 200, res.text);
    assert.equal(directory.state.hits - hits1, 1, "the unknown key caused exactly one refresh");

    // The retired key is refused, and within the cooldown causes no fetch.
    for (let i = 0; i < 4; i++) {
      await refused(await get("/v1/records/4", await signed(remoteKey, { operator: directory.operator })), "signature_key_unknown");
    }
    assert.equal(directory.state.hits - hits1, 1, "no fetch per unknown-key request within the cooldown");
  });

  test("inline keys: a valid signature is allowed; the origin sees the operator, not spoofed headers", async () => {
    const before = origin.seen.length;
    const res = await get("/v1/records/1", {
      ...(await signed(inlineKey, { operator: INLINE_OPERATOR })),
      "x-agentguard-agent": "spiffe://evil/admin",
      "x-agentguard-scopes": "admin",
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(origin.seen.length, before + 1);
    const seen = JSON.parse(res.text).headers;
    assert.equal(seen["x-agentguard-issuer"], INLINE_OPERATOR);
    assert.equal(seen["x-agentguard-agent"], INLINE_OPERATOR);
    assert.equal(seen["x-agentguard-scopes"], "records.read");
    assert.equal(seen["x-agentguard-route"], "read-records");
  });

  test("inline keys: a signature without Signature-Agent (web-bot-auth covers @authority only) is allowed", async () => {
    const res = await get("/v1/records/2", await signed(inlineKey));
    assert.equal(res.status, 200, res.text);
    assert.equal(JSON.parse(res.text).headers["x-agentguard-agent"], INLINE_OPERATOR);
  });

  test("the operator's scopes still bind: a route it has no scope for is refused", async () => {
    const res = await get("/v1/admin/1", await signed(inlineKey, { path: "/v1/admin/1", operator: INLINE_OPERATOR }));
    assert.equal(res.status, 403, res.text);
    assert.equal(JSON.parse(res.text).reason, "scope_insufficient");
  });

  test("tampered covered component (@authority signed for another host) → signature_invalid", async () => {
    const before = origin.seen.length;
    const headers = await signed(inlineKey, { operator: INLINE_OPERATOR, authority: "other.test" });
    await refused(await get("/v1/records/1", headers), "signature_invalid");
    assert.equal(origin.seen.length, before, "a refused request must not reach the origin");
  });

  test("tampered Signature-Agent (names another operator than the key's) → signature_key_unknown", async () => {
    const headers = await signed(inlineKey, { operator: INLINE_OPERATOR });
    // The signature covers signature-agent, so changing it must also break it;
    // agentguard refuses before the signature check because the names disagree.
    headers["signature-agent"] = `"${directory.operator}"`;
    await refused(await get("/v1/records/1", headers), "signature_key_unknown");
  });

  test("expired signature → signature_expired", async () => {
    const headers = await signed(inlineKey, { operator: INLINE_OPERATOR, createdOffset: -600, ttl: 60 });
    await refused(await get("/v1/records/1", headers), "signature_expired");
  });

  test("signature valid for longer than max_age → signature_expired", async () => {
    const headers = await signed(inlineKey, { operator: INLINE_OPERATOR, ttl: 3600 });
    await refused(await get("/v1/records/1", headers), "signature_expired");
  });

  test("unknown key → signature_key_unknown", async () => {
    const stranger = await ed25519();
    await refused(await get("/v1/records/1", await signed(stranger)), "signature_key_unknown");
  });

  test("replayed nonce → signature_replayed (the first use is allowed)", async () => {
    const headers = await signed(inlineKey, { operator: INLINE_OPERATOR });
    assert.equal((await get("/v1/records/1", headers)).status, 200);
    await refused(await get("/v1/records/1", headers), "signature_replayed");
  });

  test("the four failures have four distinct reason codes", async () => {
    const stranger = await ed25519();
    const replay = await signed(inlineKey, { operator: INLINE_OPERATOR });
    await get("/v1/records/1", replay);
    const reasons = [];
    for (const headers of [
      await signed(inlineKey, { operator: INLINE_OPERATOR, authority: "other.test" }),
      await signed(inlineKey, { operator: INLINE_OPERATOR, createdOffset: -600 }),
      await signed(stranger),
      replay,
    ]) {
      reasons.push(JSON.parse((await get("/v1/records/1", headers)).text).reason);
    }
    assert.deepEqual(reasons, ["signature_invalid", "signature_expired", "signature_key_unknown", "signature_replayed"]);
  });

  test("no credential at all (credentials: either) → 401 credential_missing", async () => {
    const res = await get("/v1/records/1", {});
    assert.equal(res.status, 401, res.text);
    assert.equal(JSON.parse(res.text).reason, "credential_missing");
  });

  test("a key from one operator's directory cannot claim the other operator", async () => {
    const headers = await signed(rotatedKey, { operator: INLINE_OPERATOR });
    await refused(await get("/v1/records/1", headers), "signature_key_unknown");
  });

  test("decision events name the operator and never carry signatures", () => {
    const events = gateway.logs.filter((l) => l.startsWith('{"v":1')).map((l) => JSON.parse(l));
    assert.ok(events.some((e) => e.decision === "allow" && e.agent?.agent === INLINE_OPERATOR), gateway.logs.join("\n"));
    assert.ok(events.some((e) => e.decision === "allow" && e.agent?.agent === directory.operator));
    for (const e of events) assert.ok(!JSON.stringify(e).includes("sig1=:"), "events never carry the signature");
  });
});

describe("credentials: both (a token and a signature) in workerd", () => {
  test("each alone is refused with the missing one named; together they are allowed", async () => {
    const key = await ed25519();
    const issuer = await generateKey("EdDSA", "both-1");
    const origin = await startOrigin();
    const policy = {
      realm: "api.test",
      credentials: "both",
      issuers: [{ iss: "https://sts.test", audiences: ["https://api.test"], jwks: { keys: [issuer.publicJwk] }, algorithms: ["EdDSA"] }],
      signature_agents: { directories: [{ operator: INLINE_OPERATOR, keys: { keys: [key.publicJwk] }, scopes: ["records.read"] }] },
      routes: [{ id: "read-records", methods: ["GET"], path: "/v1/records/**", scopes: ["records.read"] }],
    };
    let gw;
    try {
      gw = await startGateway({ policyText: JSON.stringify(policy), originPort: origin.port });
      const now = Math.floor(Date.now() / 1000);
      const token = `Bearer ${await signJwt(issuer.privateJwk, {
        iss: "https://sts.test", aud: "https://api.test", sub: "user:alice", client_id: "crawler-app",
        scope: "records.read", iat: now - 1, exp: now + 120, jti: `both-${now}`,
      })}`;
      const get = async (headers) => {
        const res = await send(`${gw.url}/v1/records/1`, { headers: { host: "api.test", ...headers } });
        return { status: res.status, reason: res.status === 200 ? null : JSON.parse(res.text).reason, text: res.text };
      };
      assert.deepEqual(await get({ authorization: token }).then((r) => [r.status, r.reason]), [401, "signature_missing"]);
      assert.deepEqual(await get(await signed(key, { operator: INLINE_OPERATOR })).then((r) => [r.status, r.reason]), [401, "credential_missing"]);
      const both = await get({ authorization: token, ...(await signed(key, { operator: INLINE_OPERATOR })) });
      assert.equal(both.status, 200, both.text);
      assert.equal(origin.seen.length, 1, "only the request with both reached the origin");
      assert.equal(JSON.parse(both.text).headers["x-agentguard-subject"], "user:alice");
    } finally {
      await gw?.stop();
      await origin.close();
    }
  });
});

describe("directory response signatures (draft-meunier-webbotauth-httpsig-directory) in workerd", () => {
  // One operator per case, each with its own directory server; each request
  // names its operator in Signature-Agent, so only that directory is consulted.
  let origin;
  let dirs; // name -> {directory, key}
  let strict; // gateway with the default `directory_signatures` (required)
  let lax; // gateway with `directory_signatures: "unchecked"`

  before(async () => {
    origin = await startOrigin();
    const make = async (name, configure = () => {}) => {
      const key = await ed25519();
      const directory = await startDirectory([key]);
      await configure(directory.state, key);
      return [name, { directory, key }];
    };
    dirs = Object.fromEntries(
      await Promise.all([
        make("signed"),
        make("unsigned", (s) => {
          s.sign = false;
        }),
        make("foreignSigner", async (s) => {
          s.signers = [await ed25519()];
        }),
        make("otherAuthority", (s) => {
          s.authority = "crawler.evil.test";
        }),
        make("partlySigned", async (s, key) => {
          const second = await ed25519();
          s.keys = [key, second];
          s.signers = [key];
          s.unsignedKey = second;
        }),
      ]),
    );
    const issuer = await generateKey("EdDSA", "unused");
    const policy = (extra) => ({
      realm: "api.test",
      credentials: "signature",
      issuers: [{ iss: "https://sts.test", audiences: ["https://api.test"], jwks: { keys: [issuer.publicJwk] }, algorithms: ["EdDSA"] }],
      signature_agents: {
        ...extra,
        directories: Object.values(dirs).map(({ directory }) => ({
          operator: directory.operator,
          directory_uri: directory.url,
          scopes: ["records.read"],
        })),
      },
      routes: [{ id: "read-records", methods: ["GET"], path: "/v1/records/**", scopes: ["records.read"] }],
    });
    [strict, lax] = await Promise.all([
      startGateway({ policyText: JSON.stringify(policy({})), originPort: origin.port }),
      startGateway({ policyText: JSON.stringify(policy({ directory_signatures: "unchecked" })), originPort: origin.port }),
    ]);
  });

  after(async () => {
    await Promise.all([strict?.stop(), lax?.stop()]);
    await Promise.all([origin?.close(), ...Object.values(dirs ?? {}).map((d) => d.directory.close())]);
  });

  const call = async (gw, name, key = dirs[name].key) => {
    const { directory } = dirs[name];
    const res = await send(`${gw.url}/v1/records/1`, {
      headers: { host: "api.test", ...(await signed(key, { operator: directory.operator })) },
    });
    return { status: res.status, reason: res.status === 200 ? null : JSON.parse(res.text).reason, text: res.text };
  };
  const logged = (gw, name, pattern) =>
    gw.logs.some((l) => l.includes(`key directory ${dirs[name].directory.url}`) && pattern.test(l));

  test("a directory signed by its keys (npm web-bot-auth directoryResponseHeaders) is trusted", async () => {
    const r = await call(strict, "signed");
    assert.equal(r.status, 200, r.text);
    assert.equal(JSON.parse(r.text).headers["x-agentguard-agent"], dirs.signed.directory.operator);
  });

  test("an unsigned directory is refused (its keys are unknown) and the log says why", async () => {
    const r = await call(strict, "unsigned");
    assert.deepEqual([r.status, r.reason], [401, "signature_key_unknown"], r.text);
    assert.ok(logged(strict, "unsigned", /is not signed/), strict.logs.join("\n"));
  });

  test("a directory signed by a key it does not list is refused", async () => {
    const r = await call(strict, "foreignSigner");
    assert.deepEqual([r.status, r.reason], [401, "signature_key_unknown"], r.text);
    assert.ok(logged(strict, "foreignSigner", /is not in the directory/), strict.logs.join("\n"));
  });

  test("a directory signed for another authority (a key claimed from another operator) is refused", async () => {
    const r = await call(strict, "otherAuthority");
    assert.deepEqual([r.status, r.reason], [401, "signature_key_unknown"], r.text);
    assert.ok(logged(strict, "otherAuthority", /does not verify/), strict.logs.join("\n"));
  });

  test("only the keys that signed the directory are trusted", async () => {
    const ok = await call(strict, "partlySigned");
    assert.equal(ok.status, 200, ok.text);
    const r = await call(strict, "partlySigned", dirs.partlySigned.directory.state.unsignedKey);
    assert.deepEqual([r.status, r.reason], [401, "signature_key_unknown"], r.text);
    assert.ok(logged(strict, "partlySigned", /keys\[1\]: key `[^`]+` has no valid directory signature/), strict.logs.join("\n"));
  });

  test('directory_signatures: "unchecked" trusts every directory as before', async () => {
    for (const name of ["signed", "unsigned", "foreignSigner", "otherAuthority"]) {
      const r = await call(lax, name);
      assert.equal(r.status, 200, `${name}: ${r.text}`);
    }
    const r = await call(lax, "partlySigned", dirs.partlySigned.directory.state.unsignedKey);
    assert.equal(r.status, 200, r.text);
  });
});

describe("AgentGuard#setDirectoryKeys (a directory the host fetched itself, Node)", () => {
  test("needs the response signature by default; the signed key then verifies requests", async () => {
    const key = await ed25519();
    const operator = "https://crawler.test";
    const url = `${operator}${HTTP_MESSAGE_SIGNATURES_DIRECTORY}`;
    const issuer = await generateKey("EdDSA", "unused");
    const guard = await AgentGuard.create(
      JSON.stringify({
        credentials: "signature",
        issuers: [{ iss: "https://sts.test", audiences: ["https://api.test"], jwks: { keys: [issuer.publicJwk] }, algorithms: ["EdDSA"] }],
        signature_agents: { directories: [{ operator, directory_uri: url, scopes: ["records.read"] }] },
        routes: [{ id: "read-records", methods: ["GET"], path: "/v1/records/**", scopes: ["records.read"] }],
      }),
      { log: () => {} },
    );
    try {
      const text = JSON.stringify({ keys: [key.publicJwk] });
      const created = new Date(Date.now() - 1000);
      const sign = (authority) =>
        signDirectory(`https://${authority}${HTTP_MESSAGE_SIGNATURES_DIRECTORY}`, [key.privateJwk], { created, validForMs: 60_000 });
      const decide = async () => {
        const request = new Request("https://api.test/v1/records/1", { headers: await signed(key, { operator }) });
        return (await guard.decideRequest(toCoreRequest(request))).decision;
      };
      assert.throws(() => guard.setDirectoryKeys(operator, text), /not signed/);
      const forOther = await sign("crawler.evil.test");
      assert.throws(() => guard.setDirectoryKeys(operator, text, forOther), /does not verify/);
      assert.equal(await decide(), "deny");
      assert.deepEqual(guard.setDirectoryKeys(operator, text, await sign("crawler.test")), []);
      assert.equal(await decide(), "allow");
    } finally {
      guard.free();
    }
  });
});

describe("DirectoryCache (the shim's key-directory cache)", () => {
  const fakeFetch = (responses, seen) => async (url, init) => {
    seen.push({ url, accept: init.headers.accept });
    const r = responses.shift();
    if (r instanceof Error) throw r;
    return new Response(JSON.stringify(r.body), { status: r.status ?? 200, headers: r.headers ?? {} });
  };

  test("asks for the directory media type, follows no issuer metadata, refuses a document without keys", async () => {
    const seen = [];
    const cache = new DirectoryCache({ fetch: fakeFetch([{ body: { jwks_uri: "https://evil.test/jwks" } }], seen), log: () => {} });
    await assert.rejects(cache.get("https://bots.test/.well-known/http-message-signatures-directory"), /key directory document/);
    assert.equal(seen.length, 1, "jwks_uri in a directory is not followed");
    assert.match(seen[0].accept, /^application\/http-message-signatures-directory\+json/);
  });

  test("caches for max-age, keeps the last good directory when a refresh fails, honours the cooldown", async () => {
    let now = 1_000_000;
    const seen = [];
    const keys = { keys: [{ kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }] };
    const responses = [{ body: keys, headers: { "cache-control": "max-age=120" } }, new Error("connection refused"), { body: keys }];
    const cache = new DirectoryCache({ fetch: fakeFetch(responses, seen), now: () => now, log: () => {}, cooldown: 30 });
    const url = "https://bots.test/.well-known/http-message-signatures-directory";
    const first = await cache.get(url);
    assert.equal(first.generation, 1);
    now += 60_000;
    assert.equal((await cache.get(url)).generation, 1);
    assert.equal(seen.length, 1, "still fresh: no fetch");
    now += 61_000;
    const stale = await cache.get(url); // refresh fails: stale-if-error
    assert.equal(seen.length, 2);
    assert.equal(stale.text, first.text);
    assert.equal(cache.stats(url).lastError, "connection refused");
    // Unknown keyid: one forced refresh, then none within the cooldown.
    now += 31_000;
    await cache.refreshForUnknownKid(url);
    await cache.refreshForUnknownKid(url);
    assert.equal(seen.length, 3);
  });
});
