// Host-verified signatures in Node: the token's signature and the DPoP
// proof's go to WebCrypto (`crypto.subtle.verify`, counted here), the core
// does every other check, and a verdict binds to its own token or proof only.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";

import * as jose from "jose";
import { AgentGuard } from "../src/node.js";

const HOST = "api.test";
const URL_ = `https://${HOST}/v1/contacts/42`;
const now = Math.floor(Date.now() / 1000);

describe("signatures verified by WebCrypto: tokens and DPoP proofs", () => {
  let issuer;
  let client;
  let guard;
  let wasmOnly;
  let calls;
  let answer; // null: real WebCrypto; true/false: forced verdict
  const realVerify = crypto.subtle.verify.bind(crypto.subtle);

  before(async () => {
    issuer = await jose.generateKeyPair("ES256", { extractable: true });
    client = await jose.generateKeyPair("ES256", { extractable: true });
    const jwk = { ...(await jose.exportJWK(issuer.publicKey)), kid: "i1", alg: "ES256" };
    const policy = {
      realm: HOST,
      issuers: [{ iss: "https://sts.test", audiences: [`https://${HOST}`], jwks: { keys: [jwk] }, algorithms: ["ES256"], binding: "dpop" }],
      routes: [{ id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] }],
    };
    // WebCrypto even in Node (where node:crypto is the default: nodeverify.test.mjs).
    guard = AgentGuard.createSync(policy, { hostCrypto: "webcrypto" });
    wasmOnly = AgentGuard.createSync(policy, { hostVerify: [] });
    crypto.subtle.verify = async (...args) => {
      calls += 1;
      return answer ?? realVerify(...args);
    };
  });
  after(() => {
    crypto.subtle.verify = realVerify;
    guard.free();
    wasmOnly.free();
  });

  async function bound() {
    const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(client.publicKey));
    return new jose.SignJWT({ scope: "crm.read", sub: "user:alice", client_id: "agent", cnf: { jkt } })
      .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid: "i1" })
      .setIssuer("https://sts.test").setAudience(`https://${HOST}`)
      .setIssuedAt(now - 5).setExpirationTime(now + 300).setJti(crypto.randomUUID())
      .sign(issuer.privateKey);
  }
  async function proof(token) {
    const ath = jose.base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))));
    return new jose.SignJWT({ htm: "GET", htu: URL_, ath })
      .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await jose.exportJWK(client.publicKey) })
      .setIssuedAt(now).setJti(crypto.randomUUID())
      .sign(client.privateKey);
  }
  const request = async (token, p) =>
    new Request(URL_, { headers: { authorization: `DPoP ${token}`, dpop: p ?? (await proof(token)) } });

  test("a fresh token and its proof: two WebCrypto checks; then only the proof's", async () => {
    answer = null;
    const token = await bound();
    calls = 0;
    assert.equal((await guard.decide(await request(token), { now: now * 1000 })).decision, "allow");
    assert.equal(calls, 2, "token and proof");
    calls = 0;
    assert.equal((await guard.decide(await request(token), { now: now * 1000 })).decision, "allow");
    assert.equal(calls, 1, "the token is cached: only the proof");
  });

  test("WebCrypto's answer is the answer: a proof it rejects is refused", async () => {
    const token = await bound();
    answer = null;
    await guard.decide(await request(token), { now: now * 1000 }); // cache the token
    answer = false;
    const d = await guard.decide(await request(token), { now: now * 1000 });
    assert.equal(d.decision, "deny");
    assert.equal(d.reasons[0].code, "dpop_proof_invalid");
    answer = null;
  });

  test("a replayed proof is refused whichever side verified it", async () => {
    answer = null;
    const token = await bound();
    const p = await proof(token);
    assert.equal((await guard.decide(await request(token, p), { now: now * 1000 })).decision, "allow");
    const again = await guard.decide(await request(token, p), { now: now * 1000 });
    assert.equal(again.reasons[0].code, "dpop_proof_replayed");
  });

  test("the same decisions as with every signature in Wasm", async () => {
    answer = null;
    const token = await bound();
    const other = await jose.generateKeyPair("ES256", { extractable: true });
    const foreign = await new jose.SignJWT({ htm: "GET", htu: URL_ })
      .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await jose.exportJWK(other.publicKey) })
      .setIssuedAt(now).setJti(crypto.randomUUID())
      .sign(other.privateKey);
    const tampered = (await proof(token)).replace(/.{4}$/, "AAAA");
    for (const p of [await proof(token), foreign, tampered]) {
      const a = await guard.decide(await request(token, p), { now: now * 1000 });
      const b = wasmOnly.decideInput({ method: "GET", scheme: "https", host: HOST, path: "/v1/contacts/42", headers: { authorization: `DPoP ${token}`, dpop: p }, now });
      assert.deepEqual(a.reasons.map((r) => r.code), b.reasons.map((r) => r.code));
      assert.equal(a.decision, b.decision);
    }
  });
});
