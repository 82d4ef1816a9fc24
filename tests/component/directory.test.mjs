// Web Bot Auth key directories loaded into the WebAssembly component
// (target/component/agentguard.wasm, run by jco in Node): the host fetched the
// directory and hands over its body and signature headers with
// `set-directory-keys`. Directories are signed and requests are signed by
// Cloudflare's npm `web-bot-auth` (`directoryResponseHeaders`,
// `signatureHeaders`), as in js/test/webbotauth.e2e.test.mjs. Under
// `signature_agents.directory_signatures: required` (the default) a signed
// directory's key verifies requests; an unsigned directory, one signed for
// another authority, and the text-only `set-issuer-keys` are refused (the key
// stays unknown: `signature_key_unknown`); with `unchecked` both paths accept
// an unsigned directory. Run by scripts/test-component.sh.

import { test, before } from "node:test";
import assert from "node:assert/strict";
import { webcrypto as crypto } from "node:crypto";

import { importFromJs, loadComponent, throwsMessage } from "./host.mjs";
import { signDirectory } from "../vectors/webbotauth.mjs";

const { signatureHeaders, jwkToKeyID, helpers, HTTP_MESSAGE_SIGNATURES_DIRECTORY } =
  await importFromJs("web-bot-auth");
const { signerFromJWK } = await importFromJs("web-bot-auth/crypto");

const NOW = 1_767_225_600;
const OPERATOR = "https://crawler.test";
const DIRECTORY_URI = `${OPERATOR}${HTTP_MESSAGE_SIGNATURES_DIRECTORY}`;
let guard;

before(async () => {
  ({ guard } = await loadComponent());
});

/** A fresh Ed25519 key: private and public JWKs and its RFC 7638 thumbprint. */
async function ed25519() {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const { kty, crv, x, d } = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const publicJwk = { kty, crv, x };
  const keyid = await jwkToKeyID(publicJwk, helpers.WEBCRYPTO_SHA256, helpers.BASE64URL_DECODE);
  return { privateJwk: { ...publicJwk, d }, publicJwk, keyid };
}

function policy(directorySignatures) {
  const signatureAgents = { directories: [{ operator: OPERATOR, directory_uri: DIRECTORY_URI, scopes: ["pages.read"] }] };
  if (directorySignatures) signatureAgents.directory_signatures = directorySignatures;
  return JSON.stringify({
    credentials: "signature",
    issuers: [{ iss: "https://sts.test", audiences: ["https://api.test"], jwks_uri: "https://sts.test/jwks.json", algorithms: ["EdDSA"] }],
    signature_agents: signatureAgents,
    routes: [{ id: "pages", methods: ["GET"], path: "/pages/**", scopes: ["pages.read"] }],
  });
}

/** A WIT `directory-response` listing `keys`, signed (web-bot-auth) by `signers` for `authority`. */
async function directory(keys, { signers = keys, authority = "crawler.test", created = NOW - 60 } = {}) {
  const text = JSON.stringify({ keys: keys.map((k) => k.publicJwk) });
  if (signers.length === 0) return { text };
  const sig = await signDirectory(
    `https://${authority}${HTTP_MESSAGE_SIGNATURES_DIRECTORY}`,
    signers.map((k) => k.privateJwk),
    { created: new Date(created * 1000) },
  );
  return { text, ...sig };
}

/** A WIT `request` for GET https://api.test/pages/1 signed by `key` (web-bot-auth, fresh nonce). */
async function signedRequest(key) {
  const headers = { "signature-agent": `"${OPERATOR}"` };
  const sig = await signatureHeaders(new Request("https://api.test/pages/1", { headers }), await signerFromJWK(key.privateJwk), {
    created: new Date((NOW - 1) * 1000),
    expires: new Date((NOW + 59) * 1000),
  });
  return {
    method: "GET",
    host: "api.test",
    path: "/pages/1",
    headers: [...Object.entries(headers), ["signature-input", sig["Signature-Input"]], ["signature", sig.Signature]],
    now: NOW,
  };
}

/** The decision for a request signed by `key`: `allow`, or the first reason code. */
async function verdict(engine, key) {
  const d = engine.decide(await signedRequest(key));
  if (d.outcome === "allow") {
    assert.equal(d.identity.agent, OPERATOR);
    return "allow";
  }
  return d.reasons[0].code;
}

test("the host learns which jwks-uris entries are key directories", () => {
  const engine = new guard.Engine(policy());
  assert.deepEqual(engine.jwksUris(), [
    { iss: "https://sts.test", jwksUri: "https://sts.test/jwks.json" },
    { iss: OPERATOR, jwksUri: DIRECTORY_URI },
  ]);
  assert.equal(engine.isDirectoryOperator(OPERATOR), true);
  assert.equal(engine.isDirectoryOperator("https://sts.test"), false);
  assert.equal(engine.isDirectoryOperator("https://other.test"), false);
});

test("required (default): only a directory signed for the directory_uri's authority is trusted", async () => {
  const key = await ed25519();
  const engine = new guard.Engine(policy());
  assert.equal(await verdict(engine, key), "signature_key_unknown", "no directory loaded yet");

  throwsMessage(() => engine.setDirectoryKeys(OPERATOR, { text: JSON.stringify({ keys: [key.publicJwk] }) }, BigInt(NOW)), /not signed/);
  assert.equal(await verdict(engine, key), "signature_key_unknown", "an unsigned directory loads no key");

  throwsMessage(() => engine.setIssuerKeys(OPERATOR, JSON.stringify({ keys: [key.publicJwk] })), /response signature/);
  assert.equal(await verdict(engine, key), "signature_key_unknown", "the text-only path loads no key");

  const forOther = await directory([key], { authority: "crawler.evil.test" });
  throwsMessage(() => engine.setDirectoryKeys(OPERATOR, forOther, BigInt(NOW)), /does not verify/);
  assert.equal(await verdict(engine, key), "signature_key_unknown", "a directory signed for another authority loads no key");

  const expired = await directory([key], { created: NOW - 7200 });
  throwsMessage(() => engine.setDirectoryKeys(OPERATOR, expired, BigInt(NOW)), /expired/);
  assert.equal(await verdict(engine, key), "signature_key_unknown", "an expired directory signature loads no key");

  const signed = await directory([key]);
  assert.match(signed.signatureInput, /tag="http-message-signatures-directory"/);
  assert.deepEqual(engine.setDirectoryKeys(OPERATOR, signed, BigInt(NOW)), []);
  assert.equal(await verdict(engine, key), "allow");

  // A later bad directory is refused and the last good keys stay.
  const other = await ed25519();
  const unsignedOther = await directory([other], { signers: [] });
  throwsMessage(() => engine.setDirectoryKeys(OPERATOR, unsignedOther, BigInt(NOW)), /not signed/);
  assert.equal(await verdict(engine, key), "allow");
  assert.equal(await verdict(engine, other), "signature_key_unknown");
});

test("required: of two listed keys only the one that signed is kept, the other reported", async () => {
  const [signer, unsigned] = await Promise.all([ed25519(), ed25519()]);
  const engine = new guard.Engine(policy("required"));
  const problems = engine.setDirectoryKeys(OPERATOR, await directory([signer, unsigned], { signers: [signer] }), BigInt(NOW));
  assert.equal(problems.length, 1, JSON.stringify(problems));
  assert.equal(problems[0].index, 1);
  assert.match(problems[0].message, /no valid directory signature/);
  assert.equal(await verdict(engine, signer), "allow");
  assert.equal(await verdict(engine, unsigned), "signature_key_unknown");
});

test('unchecked: an unsigned directory is accepted through either function', async () => {
  const [a, b] = await Promise.all([ed25519(), ed25519()]);
  const viaIssuerKeys = new guard.Engine(policy("unchecked"));
  assert.deepEqual(viaIssuerKeys.setIssuerKeys(OPERATOR, JSON.stringify({ keys: [a.publicJwk] })), []);
  assert.equal(await verdict(viaIssuerKeys, a), "allow");

  const viaDirectoryKeys = new guard.Engine(policy("unchecked"));
  assert.deepEqual(viaDirectoryKeys.setDirectoryKeys(OPERATOR, await directory([a, b], { signers: [] }), BigInt(NOW)), []);
  assert.equal(await verdict(viaDirectoryKeys, a), "allow");
  assert.equal(await verdict(viaDirectoryKeys, b), "allow");
});

test("set-directory-keys refuses what is not a key directory of the policy", async () => {
  const key = await ed25519();
  const engine = new guard.Engine(policy());
  const signed = await directory([key]);
  throwsMessage(() => engine.setDirectoryKeys("https://sts.test", signed, BigInt(NOW)), /directory_uri/);
  throwsMessage(() => engine.setDirectoryKeys(OPERATOR, { ...signed, text: "{not json" }, BigInt(NOW)), /key directory/);
  assert.equal(await verdict(engine, key), "signature_key_unknown");
});
