// Host-verified signatures in Node's default setup: node:crypto (OpenSSL,
// synchronous) verifies the token's signature and the DPoP proof's, the core
// does every other check. Checked here: the verifier agrees with Project
// Wycheproof on every vector the core itself is tested with
// (tests/wycheproof.rs), its verdicts are the ones decisions use (calls
// counted, answers forced), and anything it cannot answer goes back to Wasm.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import nodeCrypto from "node:crypto";

import * as jose from "jose";
import { AgentGuard } from "../src/node.js";
import { NODE_HOST_ALGORITHMS, verifyBytes, verifyCheckSync } from "../src/nodecrypto.js";

const wycheproof = (name) =>
  JSON.parse(readFileSync(new URL(`../../tests/wycheproof/${name}`, import.meta.url), "utf8"));
const hex = (s) => Buffer.from(s, "hex");
// A P-256 JWK from Wycheproof's hex coordinates (groups without `publicKeyJwk`).
const coordinate = (h) => hex(h.padStart(64, "0").slice(-64)).toString("base64url");
const ecJwk = (k) => ({ kty: "EC", crv: "P-256", x: coordinate(k.wx), y: coordinate(k.wy) });

describe("node:crypto verifier against Wycheproof", () => {
  // `acceptable` (one RSA case: DigestInfo without its NULL) is refused, as
  // the core refuses it: the strict side on both paths.
  for (const [file, alg, keyOf] of [
    ["ecdsa_secp256r1_sha256_p1363_test.json", "ES256", (g) => g.publicKeyJwk ?? ecJwk(g.publicKey)],
    ["ed25519_test.json", "EdDSA", (g) => g.publicKeyJwk],
    ["rsa_signature_2048_sha256_test.json", "RS256", (g) => g.keyJwk],
  ]) {
    test(`${alg}: ${file}`, (t) => {
      const doc = wycheproof(file);
      const tally = { valid: 0, invalid: 0, acceptable: 0, unanswered: 0 };
      for (const group of doc.testGroups) {
        const { kid: _kid, alg: _alg, ...jwk } = keyOf(group);
        for (const t of group.tests) {
          let got;
          try {
            got = verifyBytes(alg, jwk, hex(t.msg), hex(t.sig));
          } catch {
            got = "unanswered"; // a key node:crypto will not load: Wasm decides (and refuses)
            tally.unanswered += 1;
          }
          const want = t.result === "valid" ? [true] : [false, "unanswered"];
          assert.ok(want.includes(got), `${file} tcId ${t.tcId} (${t.result}, ${t.comment}): got ${got}`);
          tally[t.result] += 1;
        }
      }
      assert.ok(tally.valid > 0 && tally.invalid > 0, JSON.stringify(tally));
      assert.equal(tally.valid + tally.invalid + tally.acceptable, doc.numberOfTests);
      t.diagnostic(`${file}: ${JSON.stringify(tally)}`);
    });
  }

  test("what it cannot answer is null (the core verifies in Wasm), never valid", () => {
    const p384 = wycheproof("ecdsa_secp384r1_sha384_p1363_test.json").testGroups[0].publicKeyJwk;
    const check = (alg, jwk, signature = "AAAA") => verifyCheckSync({ alg, jwk, signature, signing_input: "x", token_hash: "h" });
    assert.equal(check("ES256", p384), null, "a P-384 key for ES256");
    assert.equal(check("HS256", { kty: "oct", k: "AAAA" }), null, "an algorithm it does not verify");
    assert.equal(check("ES256", { kty: "EC" }), null, "a broken key");
    const p256 = wycheproof("ed25519_test.json").testGroups[0].publicKeyJwk;
    assert.equal(check("ES256", p256), null, "an Ed25519 key for ES256");
    const es = wycheproof("ecdsa_secp256r1_sha256_p1363_test.json").testGroups[0].publicKeyJwk;
    assert.equal(check("ES256", es, "AAAA"), '{"token_hash":"h","valid":false}', "a short signature is invalid");
    assert.deepEqual(NODE_HOST_ALGORITHMS, ["ES256", "RS256", "PS256"], "EdDSA stays in Wasm by default");
  });
});

describe("decisions with node:crypto verdicts", () => {
  const HOST = "api.test";
  const URL_ = `https://${HOST}/v1/contacts/42`;
  const now = Math.floor(Date.now() / 1000);
  const realVerify = nodeCrypto.verify;
  let issuer, edIssuer, client, guard, wasmOnly;
  let calls;
  let answer; // null: real node:crypto; true/false: forced verdict; "throw": it throws

  before(async () => {
    issuer = await jose.generateKeyPair("ES256", { extractable: true });
    edIssuer = await jose.generateKeyPair("EdDSA", { extractable: true });
    client = await jose.generateKeyPair("ES256", { extractable: true });
    const keys = [
      { ...(await jose.exportJWK(issuer.publicKey)), kid: "i1", alg: "ES256" },
      { ...(await jose.exportJWK(edIssuer.publicKey)), kid: "i2", alg: "EdDSA" },
    ];
    const policy = {
      realm: HOST,
      issuers: [{ iss: "https://sts.test", audiences: [`https://${HOST}`], jwks: { keys }, algorithms: ["ES256", "EdDSA"] }],
      routes: [{ id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] }],
    };
    // Node's default verifier (node:crypto), asked for EdDSA too.
    guard = AgentGuard.createSync(policy, { hostVerify: ["ES256", "EdDSA"] });
    wasmOnly = AgentGuard.createSync(policy, { hostVerify: [] });
    nodeCrypto.verify = (...args) => {
      calls += 1;
      if (answer === "throw") throw new Error("forced failure");
      return answer ?? realVerify(...args);
    };
  });
  after(() => {
    nodeCrypto.verify = realVerify;
    guard.free();
    wasmOnly.free();
  });

  const sign = (alg, key, kid, extra = {}) =>
    new jose.SignJWT({ scope: "crm.read", sub: "user:alice", client_id: "agent", ...extra })
      .setProtectedHeader({ alg, typ: "at+jwt", kid })
      .setIssuer("https://sts.test").setAudience(`https://${HOST}`)
      .setIssuedAt(now - 5).setExpirationTime(now + 300).setJti(crypto.randomUUID())
      .sign(key);
  async function proof(token, key = client) {
    const ath = jose.base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))));
    return new jose.SignJWT({ htm: "GET", htu: URL_, ath })
      .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await jose.exportJWK(key.publicKey) })
      .setIssuedAt(now).setJti(crypto.randomUUID())
      .sign(key.privateKey);
  }
  const tamper = (token) => token.replace(/.{4}$/, "AAAA");
  const decide = (g, headers) => g.decide(new Request(URL_, { headers }), { now: now * 1000 });

  test("ES256 and EdDSA tokens: one node:crypto call each, none for a cached token", async () => {
    answer = null;
    for (const token of [await sign("ES256", issuer.privateKey, "i1"), await sign("EdDSA", edIssuer.privateKey, "i2")]) {
      calls = 0;
      assert.equal((await decide(guard, { authorization: `Bearer ${token}` })).decision, "allow");
      assert.equal(calls, 1);
      calls = 0;
      assert.equal((await decide(guard, { authorization: `Bearer ${token}` })).decision, "allow");
      assert.equal(calls, 0, "cached: no signature to check");
    }
  });

  test("a DPoP-bound token and its proof: two calls; then only the proof's", async () => {
    answer = null;
    const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(client.publicKey));
    const token = await sign("ES256", issuer.privateKey, "i1", { cnf: { jkt } });
    calls = 0;
    assert.equal((await decide(guard, { authorization: `DPoP ${token}`, dpop: await proof(token) })).decision, "allow");
    assert.equal(calls, 2, "token and proof");
    calls = 0;
    assert.equal((await decide(guard, { authorization: `DPoP ${token}`, dpop: await proof(token) })).decision, "allow");
    assert.equal(calls, 1, "the token is cached: only the proof");
    // Its answer is the answer: a proof it rejects is refused.
    answer = false;
    const d = await decide(guard, { authorization: `DPoP ${token}`, dpop: await proof(token) });
    answer = null;
    assert.equal(d.reasons[0].code, "dpop_proof_invalid");
  });

  test("a token node:crypto rejects is refused; when it throws, Wasm decides", async () => {
    const token = await sign("ES256", issuer.privateKey, "i1");
    answer = false;
    assert.equal((await decide(guard, { authorization: `Bearer ${token}` })).reasons[0].code, "token_signature_invalid");
    answer = "throw";
    calls = 0;
    assert.equal((await decide(guard, { authorization: `Bearer ${token}` })).decision, "allow", "Wasm verified it");
    assert.equal(calls, 1, "node:crypto was asked first");
    const bad = await decide(guard, { authorization: `Bearer ${tamper(await sign("EdDSA", edIssuer.privateKey, "i2"))}` });
    assert.equal(bad.reasons[0].code, "token_signature_invalid", "a failure never counts as valid");
    answer = null;
  });

  test("the same decisions as with every signature in Wasm", async () => {
    answer = null;
    const other = await jose.generateKeyPair("ES256");
    const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(client.publicKey));
    const es = await sign("ES256", issuer.privateKey, "i1");
    const ed = await sign("EdDSA", edIssuer.privateKey, "i2");
    const bound = await sign("ES256", issuer.privateKey, "i1", { cnf: { jkt } });
    const cases = [
      { authorization: `Bearer ${es}` },
      { authorization: `Bearer ${ed}` },
      { authorization: `Bearer ${tamper(es)}` },
      { authorization: `Bearer ${tamper(ed)}` },
      { authorization: `Bearer ${await sign("ES256", other.privateKey, "i1")}` }, // right kid, wrong key
      { authorization: `DPoP ${bound}`, dpop: await proof(bound) },
      { authorization: `DPoP ${bound}`, dpop: await proof(bound, other) },
      { authorization: `DPoP ${bound}`, dpop: tamper(await proof(bound)) },
    ];
    const outcomes = new Set();
    for (const headers of cases) {
      const a = await decide(guard, headers);
      const b = await decide(wasmOnly, headers);
      assert.deepEqual(a.reasons.map((r) => r.code), b.reasons.map((r) => r.code), JSON.stringify(headers).slice(0, 80));
      assert.equal(a.decision, b.decision);
      outcomes.add(a.reasons[0]?.code ?? a.decision);
    }
    assert.ok(outcomes.size >= 4, [...outcomes].join(" "));
  });
});
