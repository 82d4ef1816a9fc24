// Web Bot Auth key directories in Envoy: the filter fetches a trusted
// operator's `directory_uri` through an Envoy cluster (a server on
// 127.0.0.1), hands the body and the response's Signature-Input / Signature /
// Content-Digest to the core, which checks the directory's response signature
// (draft-meunier-webbotauth-httpsig-directory) before trusting its keys.
// Directories are signed with npm web-bot-auth's `directoryResponseHeaders`
// and requests with its `signatureHeaders`, as a real signed agent does:
//
// - signed directory (policy default `directory_signatures: "required"`):
//   a request signed by the listed key → 200, with the operator as identity;
//   the fetch asked for the directory media type; after the operator rotates,
//   the first request signed with the new key is held while the directory is
//   fetched again (once), then allowed; the retired key is refused;
// - the same directory served unsigned → refused and logged ("key
//   directory"), so a request signed by its key is `signature_key_unknown`;
// - unsigned, with `directory_signatures: "unchecked"` → 200.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { webcrypto as crypto } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import { ROOT, bootstrap, wasmFilter, startEnvoy, startUpstream, send, stats, upstreamSaw, eventually } from "./harness.mjs";
import { signDirectory } from "../vectors/webbotauth.mjs";

// npm packages live in js/node_modules (pinned in js/package.json).
const requireFromJs = createRequire(path.join(ROOT, "js/package.json"));
const importFromJs = (specifier) => import(pathToFileURL(requireFromJs.resolve(specifier)).href);
const { signatureHeaders, jwkToKeyID, helpers, HTTP_MESSAGE_SIGNATURES_DIRECTORY } =
  await importFromJs("web-bot-auth");
const { signerFromJWK } = await importFromJs("web-bot-auth/crypto");

const OPERATOR = "https://bot.test";
const DIRECTORY_URI = OPERATOR + HTTP_MESSAGE_SIGNATURES_DIRECTORY;

/** A fresh Ed25519 key: `{privateJwk, publicJwk, keyid}` (keyid = RFC 7638 thumbprint). */
async function ed25519() {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const publicJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  const keyid = await jwkToKeyID(publicJwk, helpers.WEBCRYPTO_SHA256, helpers.BASE64URL_DECODE);
  return { privateJwk: { ...publicJwk, d: jwk.d }, publicJwk, keyid };
}

/**
 * The operator's directory server: lists `keys`; signs each response with
 * every listed key (web-bot-auth `directoryResponseHeaders`, for the
 * authority the request names) unless `state.sign` is false.
 */
async function startDirectory(keys, { sign }) {
  const state = { keys, sign, hits: 0, seen: [] };
  const server = http.createServer(async (req, res) => {
    state.hits += 1;
    state.seen.push({ host: req.headers.host, url: req.url, accept: req.headers.accept });
    if (req.url !== HTTP_MESSAGE_SIGNATURES_DIRECTORY) {
      res.writeHead(404).end();
      return;
    }
    const headers = { "content-type": "application/http-message-signatures-directory+json" };
    if (state.sign) {
      const sig = await signDirectory(`https://${req.headers.host}${req.url}`, state.keys.map((k) => k.privateJwk));
      headers["signature-input"] = sig.signatureInput;
      headers.signature = sig.signature;
    }
    res.writeHead(200, headers);
    res.end(JSON.stringify({ keys: state.keys.map((k) => k.publicJwk) }));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    state,
    port: server.address().port,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Headers of a GET https://api.test<path> signed by `key` with web-bot-auth, naming the operator. */
async function signed(key, target = "/v1/records/1") {
  const signer = await signerFromJWK(key.privateJwk);
  const agent = { "signature-agent": `"${OPERATOR}"` };
  const created = new Date(Date.now() - 1000);
  const sig = await signatureHeaders(new Request(`https://api.test${target}`, { headers: agent }), signer, {
    created,
    expires: new Date(created.getTime() + 60_000),
  });
  return { ...agent, "signature-input": sig["Signature-Input"], signature: sig.Signature };
}

/** The filter configuration: signed agents only, one operator whose keys are at `DIRECTORY_URI`. */
function configuration(directorySignatures, issuerKey, cooldown) {
  const policy = {
    realm: "api.test",
    credentials: "signature",
    // A policy needs an issuer; with `credentials: "signature"` its tokens identify no one.
    issuers: [{ iss: "https://sts.test", audiences: ["https://api.test"], jwks: { keys: [issuerKey.publicJwk] }, algorithms: ["EdDSA"] }],
    signature_agents: {
      ...(directorySignatures ? { directory_signatures: directorySignatures } : {}),
      directories: [{ operator: OPERATOR, directory_uri: DIRECTORY_URI, scopes: ["records.read"] }],
    },
    routes: [{ id: "read-records", methods: ["GET"], path: "/v1/records/**", scopes: ["records.read"] }],
  };
  return JSON.stringify({ policy, jwks_cluster: "bot", jwks_timeout: "2s", jwks_refresh: "1h", jwks_cooldown: cooldown });
}

const cleanup = [];
after(async () => {
  for (const stop of cleanup.reverse()) await stop();
});

async function setUp({ sign, directorySignatures, cooldown = "1h" }) {
  const [key, issuerKey] = await Promise.all([ed25519(), ed25519()]);
  const upstream = await startUpstream();
  cleanup.push(upstream.close);
  const directory = await startDirectory([key], { sign });
  cleanup.push(directory.close);
  const envoy = await startEnvoy(
    bootstrap({
      httpFilters: [wasmFilter(configuration(directorySignatures, issuerKey, cooldown))],
      upstreamPort: upstream.port,
      clusters: { bot: directory.port },
    }),
  );
  cleanup.push(envoy.stop);
  const read = async (k = key) => send(envoy.port, { path: "/v1/records/1", headers: await signed(k) });
  return { key, directory, envoy, read };
}

/** Waits until a request signed by the directory's key is allowed (the worker's fetch may still be under way). */
async function allowed(read) {
  let last;
  await eventually(async () => (last = await read()).status === 200, { timeoutMs: 10000, what: "a 200" }).catch(
    (e) => assert.fail(`${e.message}; last answer ${last?.status} ${last?.body}`),
  );
  return last;
}

test("a signed key directory is loaded: its key's signatures are allowed; another key's are not; a rotated-in key is fetched on demand", async () => {
  const { directory, read } = await setUp({ sign: true, cooldown: "1s" });
  const res = await allowed(read);
  const saw = upstreamSaw(res);
  assert.deepEqual(saw.headers.get("x-agentguard-agent"), [OPERATOR]);
  assert.deepEqual(saw.headers.get("x-agentguard-scopes"), ["records.read"]);
  assert.ok(directory.state.seen.length >= 1);
  for (const seen of directory.state.seen) {
    assert.equal(seen.host, "bot.test");
    assert.equal(seen.url, HTTP_MESSAGE_SIGNATURES_DIRECTORY);
    assert.match(seen.accept, /^application\/http-message-signatures-directory\+json\b/);
  }

  // The operator rotates its key: the first request signed with the new key
  // is held while the directory is fetched again (once), then allowed.
  const rotated = await ed25519();
  await sleep(1100); // past the cooldown
  const hits = directory.state.hits;
  directory.state.keys = [rotated];
  const res2 = await read(rotated);
  assert.equal(res2.status, 200, res2.body);
  assert.equal(directory.state.hits, hits + 1, "one on-demand fetch");
  // Within the cooldown the retired key and a stranger's are refused without fetching.
  for (const key of [undefined, await ed25519()]) {
    const refused = await read(key);
    assert.equal(refused.status, 401, refused.body);
    assert.equal(refused.json.reason, "signature_key_unknown");
  }
  assert.equal(directory.state.hits, hits + 1, "no fetch within the cooldown");
});

test("an unsigned key directory is refused by default: signature_key_unknown, and Envoy logs why", async () => {
  const { directory, envoy, read } = await setUp({ sign: false });
  // Every VM (main thread and worker) fetched the directory and refused it.
  const refusal = /^\[\w+\]\[wasm\]\[(\d+)\] .*key directory of `https:\/\/bot\.test` from .*not signed.*keeping the previous keys/gm;
  await eventually(() => new Set([...envoy.output().matchAll(refusal)].map((m) => m[1])).size >= 2, {
    timeoutMs: 10000,
    what: "both VMs to refuse the unsigned directory",
  });
  assert.ok(directory.state.hits >= 2);
  assert.ok((await stats(envoy)).values["wasmcustom.agentguard.jwks.fetch_failed"] >= 2, "counted as failed fetches");
  assert.equal((await stats(envoy)).values["wasmcustom.agentguard.jwks.fetch_ok"] ?? 0, 0);
  for (let i = 0; i < 2; i++) {
    const res = await read();
    assert.equal(res.status, 401, res.body);
    assert.equal(res.json.reason, "signature_key_unknown");
  }
});

test('an unsigned key directory is accepted with directory_signatures: "unchecked"', async () => {
  const { read } = await setUp({ sign: false, directorySignatures: "unchecked" });
  const res = await allowed(read);
  assert.deepEqual(upstreamSaw(res).headers.get("x-agentguard-agent"), [OPERATOR]);
});
