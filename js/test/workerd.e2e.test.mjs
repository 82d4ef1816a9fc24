// End to end in the real Workers runtime: the gateway (js/worker/) runs in
// workerd on 127.0.0.1 in front of a local origin. Every shared vector goes
// through it over HTTP and must get the decision, status and reason code the
// native core gives; allowed requests must reach the origin with the
// verified identity headers and without spoofed ones; a JWKS rotation
// happens mid-run.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";

import { join } from "node:path";

import { loadVectors, caseHeaders, signJwt } from "../../tests/vectors/mint.mjs";
import { generateKey, root, send, startGateway, startJwksServer, startOrigin } from "./helpers.mjs";
import { startBundledWorker } from "./fixtures/bundle.mjs";

const vectors = loadVectors();
const nowS = () => Math.floor(Date.now() / 1000);

describe("gateway in workerd", () => {
  let origin;
  let jwks;
  let gateway;
  let remoteGateway;
  let keyA;
  let keyB;

  before(async () => {
    keyA = await generateKey("ES256", "rot-a");
    keyB = await generateKey("EdDSA", "rot-b");
    origin = await startOrigin();
    jwks = await startJwksServer([keyA.publicJwk]);
    const remotePolicy = {
      realm: "api.test",
      issuers: [
        {
          iss: "https://sts.remote.test",
          audiences: ["https://api.test"],
          jwks_uri: jwks.url,
          algorithms: ["EdDSA", "ES256"],
          max_lifetime: "10m",
        },
      ],
      routes: [{ id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] }],
    };
    [gateway, remoteGateway] = await Promise.all([
      startGateway({ policyText: vectors.policyText, originPort: origin.port }),
      startGateway({ policyText: JSON.stringify(remotePolicy), originPort: origin.port }),
    ]);
  });

  after(async () => {
    await Promise.all([gateway?.stop(), remoteGateway?.stop()]);
    await Promise.all([origin?.close(), jwks?.close()]);
  });

  for (const [i, c] of vectors.cases.entries()) {
    test(`vector: ${c.name}`, async () => {
      const headers = await caseHeaders(c, vectors.keys, nowS(), i);
      const before = origin.seen.length;
      const res = await send(gateway.url + c.request.path, {
        method: c.request.method,
        headers: { ...headers, host: c.request.host },
      });
      if (c.expect.decision === "allow") {
        assert.equal(res.status, 200, res.text);
        assert.equal(res.headers["x-origin"], "demo");
        assert.equal(origin.seen.length, before + 1);
        const seen = JSON.parse(res.text);
        assert.equal(seen.headers["x-agentguard-issuer"], "https://sts.test");
        assert.ok(seen.headers["x-agentguard-agent"]);
        return;
      }
      assert.equal(origin.seen.length, before, "a refused request must not reach the origin");
      assert.equal(res.status, c.expect.status, res.text);
      assert.equal(res.headers["content-type"], "application/problem+json");
      const body = JSON.parse(res.text);
      assert.deepEqual(
        { decision: body.decision, status: body.status, reasons: [body.reason] },
        c.expect,
        `${c.name}: ${res.text}`,
      );
      if (res.status === 401) assert.match(res.headers["www-authenticate"], /^(Bearer|DPoP) realm="api.test"/);
    });
  }

  test("the origin sees the verified identity, and spoofed identity headers are stripped", async () => {
    const c = vectors.cases.find((x) => x.name === "valid EdDSA token reads a contact");
    const headers = await caseHeaders(c, vectors.keys, nowS(), 99);
    const res = await send(`${gateway.url}/v1/contacts/42?fields=name`, {
      headers: {
        ...headers,
        host: "api.test",
        "X-AgentGuard-Agent": "spiffe://test/agents/admin",
        "x-agentguard-scopes": "admin",
        "x-agentguard-is-admin": "true",
        "cf-connecting-ip": "6.6.6.6",
        "x-kept": "yes",
      },
    });
    assert.equal(res.status, 200, res.text);
    const seen = JSON.parse(res.text);
    assert.equal(seen.url, "/v1/contacts/42?fields=name");
    assert.equal(seen.headers["x-agentguard-agent"], "spiffe://test/agents/crm-bot");
    assert.equal(seen.headers["x-agentguard-subject"], "user:alice");
    assert.equal(seen.headers["x-agentguard-client-id"], "crm-agent");
    assert.equal(seen.headers["x-agentguard-actors"], "spiffe://test/agents/crm-bot");
    assert.equal(seen.headers["x-agentguard-scopes"], "crm.read mail.draft");
    assert.equal(seen.headers["x-agentguard-route"], "read-contacts");
    assert.equal(seen.headers["x-agentguard-is-admin"], undefined);
    assert.equal(seen.headers["x-kept"], "yes");
  });

  test("decision events are logged as JSON lines", () => {
    const events = gateway.logs.filter((l) => l.startsWith('{"v":1')).map((l) => JSON.parse(l));
    assert.ok(events.length >= vectors.cases.length, gateway.logs.join("\n"));
    assert.ok(events.some((e) => e.decision === "allow" && e.agent?.token_hash));
    assert.ok(events.every((e) => !JSON.stringify(e).includes("eyJ")), "events never carry tokens");
    // The source IP is workerd's TCP peer, not a CF-Connecting-IP the caller sent.
    assert.ok(events.every((e) => e.source_ip === "127.0.0.1"), JSON.stringify(events.map((e) => e.source_ip)));
  });

  test("JWKS rotation mid-run: the new key verifies after one refresh, the retired one stops", async () => {
    const call = async (jwk) => {
      const now = nowS();
      const token = await signJwt(jwk, {
        iss: "https://sts.remote.test",
        aud: "https://api.test",
        sub: "user:bob",
        scope: "crm.read",
        iat: now - 5,
        exp: now + 120,
        jti: `rot-${Math.random()}`,
      });
      return send(`${remoteGateway.url}/v1/records/1`, { headers: { authorization: `Bearer ${token}`, host: "api.test" } });
    };
    const hits0 = jwks.state.hits;
    let res = await call(keyA.privateJwk);
    assert.equal(res.status, 200, res.text);
    assert.equal(JSON.parse(res.text).headers["x-agentguard-subject"], "user:bob");
    res = await call(keyA.privateJwk);
    assert.equal(res.status, 200, res.text);
    assert.equal(jwks.state.hits - hits0, 1, "one fetch for two requests");

    jwks.state.keys = [keyB.publicJwk]; // the issuer rotates
    res = await call(keyB.privateJwk);
    assert.equal(res.status, 200, res.text);
    assert.equal(jwks.state.hits - hits0, 2, "the unknown kid caused exactly one refresh");

    res = await call(keyA.privateJwk);
    assert.equal(res.status, 401);
    assert.equal(JSON.parse(res.text).reason, "token_key_not_found");
    // The refresh for key B started the unknown-kid cooldown: retired-key
    // tokens now cause no fetch at all.
    for (let i = 0; i < 5; i++) assert.equal((await call(keyA.privateJwk)).status, 401);
    assert.equal(jwks.state.hits - hits0, 2, "no fetch per unknown-kid request within the cooldown");
  });
});

describe("gateway in workerd with a bad policy", () => {
  test("fails closed: 500 for every request, one clear log line", async () => {
    const origin = await startOrigin();
    const bad = structuredClone(vectors.policy);
    bad.issuers[0].max_lifetime = "forever";
    let gw;
    try {
      gw = await startGateway({ policyText: JSON.stringify(bad), originPort: origin.port });
      for (let i = 0; i < 3; i++) {
        const res = await send(`${gw.url}/v1/contacts/42`, { headers: { host: "api.test" } });
        assert.equal(res.status, 500);
        assert.equal(JSON.parse(res.text).reason, "policy_invalid");
      }
      assert.equal(origin.seen.length, 0);
      const lines = gw.logs.filter((l) => l.includes("agentguard: policy rejected"));
      assert.equal(lines.length, 1, gw.logs.join("\n"));
      assert.match(lines[0], /issuers\[0\]\.max_lifetime/);
    } finally {
      await gw?.stop();
      await origin.close();
    }
  });
});

describe("the wrangler bundle in workerd", () => {
  // What `wrangler deploy` uploads (bundled with `--dry-run --outdir`), run
  // by workerd with ORIGIN_URL: the deploy path, not just the repo layout.
  test("bundles, starts, refuses without a token and forwards with one", async () => {
    const origin = await startOrigin();
    let gw;
    try {
      gw = await startBundledWorker({
        config: join(root, "js/worker/wrangler.toml"),
        main: "worker.js",
        policyText: vectors.policyText,
        originUrl: `http://127.0.0.1:${origin.port}`,
      });
      const refused = await send(`${gw.url}/v1/contacts/42`, { headers: { host: "api.test" } });
      assert.equal(refused.status, 401);
      assert.equal(JSON.parse(refused.text).reason, "credential_missing");
      const c = vectors.cases.find((x) => x.name === "valid ES256 token reads a contact");
      const headers = await caseHeaders(c, vectors.keys, nowS(), 4242);
      const res = await send(`${gw.url}/v1/contacts/42`, { headers: { ...headers, host: "api.test" } });
      assert.equal(res.status, 200, res.text);
      assert.equal(JSON.parse(res.text).headers["x-agentguard-agent"], "spiffe://test/agents/crm-bot");
    } finally {
      await gw?.stop();
      await origin.close();
    }
  });
});
