// DPoP (RFC 9449) end to end in the real Workers runtime: an agent holding a
// DPoP key (made and used with npm `jose`, as a client would) calls the
// gateway in workerd with a token bound to that key (`cnf.jkt`). Fresh
// proofs pass; a replayed proof is refused with `dpop_proof_replayed` and a
// `WWW-Authenticate: DPoP error=…` challenge, and never reaches the origin.
// With server nonces on, two gateway processes that share
// AGENTGUARD_DPOP_NONCE_SECRET accept each other's nonces.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";

import { signJwt } from "../../tests/vectors/mint.mjs";
import { dpopKey, generateKey, send, startGateway, startOrigin } from "./helpers.mjs";

const nowS = () => Math.floor(Date.now() / 1000);
const STS = "https://sts.test";

function policyFor(sts, extra = {}) {
  return {
    realm: "api.test",
    issuers: [
      {
        iss: STS,
        audiences: ["https://api.test"],
        jwks: { keys: [sts.publicJwk] },
        algorithms: ["EdDSA"],
        max_lifetime: "10m",
        binding: "dpop",
      },
    ],
    routes: [{ id: "read", methods: ["GET"], path: "/v1/contacts/**", scopes: ["crm.read"] }],
    ...extra,
  };
}

/** An access token bound to `key` (cnf.jkt), from the test's STS key. */
function boundToken(sts, key, serial) {
  const now = nowS();
  return signJwt(sts.privateJwk, {
    iss: STS,
    aud: "https://api.test",
    sub: "user:alice",
    client_id: "crm-agent",
    act: { sub: "spiffe://test/agents/crm-bot" },
    scope: "crm.read",
    iat: now,
    exp: now + 300,
    jti: `dpop-e2e-${serial}`,
    cnf: { jkt: key.thumbprint },
  });
}

describe("DPoP through the gateway in workerd", () => {
  let sts;
  let origin;
  let gateway;

  before(async () => {
    sts = await generateKey("EdDSA", "sts-1");
    origin = await startOrigin();
    gateway = await startGateway({ policyText: JSON.stringify(policyFor(sts)), originPort: origin.port });
  });
  after(async () => {
    await gateway?.stop();
    await origin?.close();
  });

  const call = (token, proof, path = "/v1/contacts/42") =>
    send(gateway.url + path, { headers: { host: "api.test", authorization: `DPoP ${token}`, dpop: proof } });

  test("two calls with fresh proofs pass; replaying a proof is refused", async () => {
    const agent = await dpopKey();
    const token = await boundToken(sts, agent, 1);
    const htu = "http://api.test/v1/contacts/42";
    const first = await agent.proof({ htm: "GET", htu, token });
    const seen = origin.seen.length;

    const a = await call(token, first);
    assert.equal(a.status, 200, a.text);
    const b = await call(token, await agent.proof({ htm: "GET", htu, token }));
    assert.equal(b.status, 200, b.text);
    assert.equal(origin.seen.length, seen + 2);
    assert.equal(JSON.parse(b.text).headers["x-agentguard-agent"], "spiffe://test/agents/crm-bot");

    const replay = await call(token, first);
    assert.equal(replay.status, 401, replay.text);
    assert.equal(replay.headers["content-type"], "application/problem+json");
    assert.equal(JSON.parse(replay.text).reason, "dpop_proof_replayed");
    assert.match(replay.headers["www-authenticate"], /^DPoP realm="api.test",.* error="invalid_dpop_proof"/);
    assert.equal(origin.seen.length, seen + 2, "the replay never reaches the origin");
  });

  test("a proof by another key, for another URL or method, or a bound token sent as Bearer: refused", async () => {
    const agent = await dpopKey();
    const thief = await dpopKey();
    const token = await boundToken(sts, agent, 2);
    const htu = "http://api.test/v1/contacts/42";
    const seen = origin.seen.length;
    const cases = [
      [await thief.proof({ htm: "GET", htu, token }), "dpop_key_mismatch"],
      [await agent.proof({ htm: "GET", htu: "http://api.test/v1/contacts/43", token }), "dpop_url_mismatch"],
      [await agent.proof({ htm: "POST", htu, token }), "dpop_method_mismatch"],
      [await agent.proof({ htm: "GET", htu, token: "another-token" }), "dpop_ath_mismatch"],
      [await agent.proof({ htm: "GET", htu, token, iat: nowS() - 3600 }), "dpop_proof_stale"],
    ];
    for (const [proof, reason] of cases) {
      const res = await call(token, proof);
      assert.equal(res.status, 401, res.text);
      assert.equal(JSON.parse(res.text).reason, reason, res.text);
      assert.match(res.headers["www-authenticate"], /^DPoP /);
    }
    const bearer = await send(`${gateway.url}/v1/contacts/42`, {
      headers: { host: "api.test", authorization: `Bearer ${token}`, dpop: await agent.proof({ htm: "GET", htu, token }) },
    });
    assert.equal(bearer.status, 401, bearer.text);
    assert.equal(origin.seen.length, seen, "nothing reached the origin");
  });
});

describe("DPoP server nonces across gateway processes (shared secret)", () => {
  test("a nonce from one process is accepted by another with the same AGENTGUARD_DPOP_NONCE_SECRET", async () => {
    const sts = await generateKey("EdDSA", "sts-1");
    const origin = await startOrigin();
    const policyText = JSON.stringify(policyFor(sts, { dpop: { nonce: true } }));
    const env = { AGENTGUARD_DPOP_NONCE_SECRET: "a shared secret of the deployment, 32+ bytes long" };
    const [one, two] = await Promise.all([
      startGateway({ policyText, originPort: origin.port, env }),
      startGateway({ policyText, originPort: origin.port, env }),
    ]);
    try {
      const agent = await dpopKey();
      const token = await boundToken(sts, agent, 3);
      const htu = "http://api.test/v1/contacts/42";
      const call = async (gw, nonce) =>
        send(`${gw.url}/v1/contacts/42`, {
          headers: { host: "api.test", authorization: `DPoP ${token}`, dpop: await agent.proof({ htm: "GET", htu, token, nonce }) },
        });
      const first = await call(one);
      assert.equal(first.status, 401, first.text);
      assert.equal(JSON.parse(first.text).reason, "dpop_nonce_required");
      assert.match(first.headers["www-authenticate"], /error="use_dpop_nonce"/);
      const nonce = first.headers["dpop-nonce"];
      assert.ok(nonce, "the challenge carries a DPoP-Nonce");
      const ok = await call(two, nonce);
      assert.equal(ok.status, 200, ok.text);
      assert.ok(ok.headers["dpop-nonce"], "a success hands out the next nonce");
      const forged = await call(one, "not-a-nonce-we-issued");
      assert.equal(forged.status, 401, forged.text);
    } finally {
      await Promise.all([one.stop(), two.stop()]);
      await origin.close();
    }
  });
});
