// The Hono middleware (js/src/hono.js) in real workerd: a Hono app using
// `app.use(agentguard())`, bundled by wrangler exactly as `wrangler deploy`
// would (js/test/fixtures/hono-worker.mjs), runs beside the plain gateway
// (js/worker/, `withAgentGuard`). Every shared vector goes to both and must
// get the same decision: status, reason code and what reaches the origin.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";

import { loadVectors, caseHeaders } from "../../tests/vectors/mint.mjs";
import { root, send, startGateway, startOrigin } from "./helpers.mjs";
import { startBundledWorker } from "./fixtures/bundle.mjs";

const vectors = loadVectors();
const nowS = () => Math.floor(Date.now() / 1000);

/** The Hono fixture, bundled by wrangler, in workerd in front of `originPort`. */
function startHonoApp({ policyText, originPort }) {
  return startBundledWorker({
    config: join(root, "js/test/fixtures/hono.wrangler.toml"),
    main: "hono-worker.js",
    policyText,
    originUrl: `http://127.0.0.1:${originPort}`,
  });
}

describe("Hono middleware in workerd: same decisions as the plain wrapper", () => {
  let origin;
  let plain;
  let hono;

  before(async () => {
    origin = await startOrigin();
    [plain, hono] = await Promise.all([
      startGateway({ policyText: vectors.policyText, originPort: origin.port }),
      startHonoApp({ policyText: vectors.policyText, originPort: origin.port }),
    ]);
  });

  after(async () => {
    await Promise.all([plain?.stop(), hono?.stop()]);
    await origin?.close();
  });

  // What a response says about the decision, comparable across the two frontends.
  function outcome(res) {
    if (res.status === 200) {
      const seen = JSON.parse(res.text);
      const identity = Object.fromEntries(Object.entries(seen.headers).filter(([k]) => k.startsWith("x-agentguard-")));
      return { status: 200, identity };
    }
    const body = JSON.parse(res.text);
    return {
      status: res.status,
      reason: body.reason,
      decision: body.decision,
      contentType: res.headers["content-type"],
      challenge: res.headers["www-authenticate"]?.replace(/error_description="[^"]*"/, ""),
      retryAfter: res.headers["retry-after"],
    };
  }

  for (const [i, c] of vectors.cases.entries()) {
    test(`vector: ${c.name}`, async () => {
      const now = nowS();
      // Fresh credentials for each frontend (single-use jti/nonces), same time.
      const [hPlain, hHono] = await Promise.all([caseHeaders(c, vectors.keys, now, i), caseHeaders(c, vectors.keys, now, 5000 + i)]);
      const before = origin.seen.length;
      const req = (url, headers) => send(url + c.request.path, { method: c.request.method, headers: { ...headers, host: c.request.host } });
      const a = await req(plain.url, hPlain);
      const b = await req(hono.url, hHono);
      const [oa, ob] = [outcome(a), outcome(b)];
      assert.deepEqual(ob, oa, `${c.name}: hono ${b.status} ${b.text} vs plain ${a.status} ${a.text}`);
      // And both match the vector's expectation.
      if (c.expect.decision === "allow") {
        assert.equal(b.status, 200, b.text);
        assert.equal(origin.seen.length, before + 2);
        assert.equal(b.headers["x-hono-agent"], JSON.parse(b.text).headers["x-agentguard-agent"], "c.get('agentguard') has the verified agent");
        assert.equal(b.headers["x-hono-route"], JSON.parse(b.text).headers["x-agentguard-route"]);
      } else {
        assert.equal(origin.seen.length, before, "a refused request reaches no origin");
        assert.deepEqual({ decision: ob.decision, status: ob.status, reasons: [ob.reason] }, c.expect);
        assert.equal(ob.contentType, "application/problem+json");
      }
    });
  }

  test("spoofed identity headers are stripped before the Hono handlers run", async () => {
    const c = vectors.cases.find((x) => x.name === "valid EdDSA token reads a contact");
    const headers = await caseHeaders(c, vectors.keys, nowS(), 9999);
    const res = await send(`${hono.url}/v1/contacts/42?fields=name`, {
      headers: { ...headers, host: "api.test", "x-agentguard-agent": "spiffe://evil/admin", "x-agentguard-is-admin": "true", "x-kept": "yes" },
    });
    assert.equal(res.status, 200, res.text);
    const seen = JSON.parse(res.text);
    assert.equal(seen.url, "/v1/contacts/42?fields=name");
    assert.equal(seen.headers["x-agentguard-agent"], "spiffe://test/agents/crm-bot");
    assert.equal(seen.headers["x-agentguard-is-admin"], undefined);
    assert.equal(seen.headers["x-kept"], "yes");
    assert.equal(res.headers["x-hono-agent"], "spiffe://test/agents/crm-bot");
  });

  test("the Hono app logs one decision event per decided request, like the plain wrapper", () => {
    const events = (logs) => logs.filter((l) => l.startsWith('{"v":1')).map((l) => JSON.parse(l));
    const [ea, eb] = [events(plain.logs), events(hono.logs)];
    assert.ok(eb.length >= vectors.cases.length, hono.logs.join("\n"));
    assert.deepEqual(
      eb.slice(0, vectors.cases.length).map((e) => [e.decision, e.status, e.reasons]),
      ea.slice(0, vectors.cases.length).map((e) => [e.decision, e.status, e.reasons]),
    );
  });
});

describe("Hono middleware honours the policy's log settings", () => {
  test("with `log.outcomes: [\"deny\"]` the default logger writes the denial only", async () => {
    const origin = await startOrigin();
    const policy = { ...structuredClone(vectors.policy), log: { outcomes: ["deny"] } };
    const app = await startHonoApp({ policyText: JSON.stringify(policy), originPort: origin.port });
    try {
      const c = vectors.cases.find((x) => x.name === "valid EdDSA token reads a contact");
      const ok = await send(`${app.url}/v1/contacts/42`, { headers: { ...(await caseHeaders(c, vectors.keys, nowS(), 7001)), host: "api.test" } });
      assert.equal(ok.status, 200, ok.text);
      const denied = await send(`${app.url}/v1/contacts/42`, { headers: { host: "api.test" } });
      assert.equal(denied.status, 401, denied.text);
      // workerd prints console output asynchronously: wait for the denial's line.
      const events = () => app.logs.filter((l) => l.startsWith('{"v":1')).map((l) => JSON.parse(l));
      for (let i = 0; i < 50 && events().length < 1; i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(events().map((e) => [e.decision, e.status]), [["deny", 401]], app.logs.join("\n"));
    } finally {
      await app.stop();
      await origin.close();
    }
  });
});

describe("Hono middleware with a bad policy", () => {
  test("fails closed: 500 policy_invalid, the handlers never run", async () => {
    const origin = await startOrigin();
    const bad = structuredClone(vectors.policy);
    bad.routes[0].path = "";
    let app;
    try {
      app = await startHonoApp({ policyText: JSON.stringify(bad), originPort: origin.port });
      const res = await send(`${app.url}/v1/contacts/42`, { headers: { host: "api.test" } });
      assert.equal(res.status, 500, res.text);
      assert.equal(JSON.parse(res.text).reason, "policy_invalid");
      assert.equal(res.headers["x-hono-agent"], undefined);
      assert.equal(origin.seen.length, 0);
    } finally {
      await app?.stop();
      await origin.close();
    }
  });
});

describe("Hono middleware in Node (app.request)", () => {
  // The same middleware through Hono's own request path, with DPoP server
  // nonces on: the nonce the wrapper adds after a handler must survive Hono.
  test("an allowed DPoP request reaches the handler with the decision, and the response carries the next DPoP-Nonce", async () => {
    const { Hono } = await import("hono");
    const { agentguard } = await import("agentguard/hono");
    const { SignJWT, exportJWK, generateKeyPair, calculateJwkThumbprint } = await import("jose");
    const issuer = await generateKeyPair("EdDSA", { extractable: true });
    const client = await generateKeyPair("EdDSA", { extractable: true });
    const issuerJwk = { ...(await exportJWK(issuer.publicKey)), kid: "i1", alg: "EdDSA" };
    const clientJwk = await exportJWK(client.publicKey);
    const policy = {
      issuers: [{ iss: "https://sts.test", audiences: ["https://api.test"], jwks: { keys: [issuerJwk] }, algorithms: ["EdDSA"], binding: "dpop" }],
      dpop: { nonce: true },
      routes: [{ id: "read", methods: ["GET"], path: "/v1/**", scopes: ["read"] }],
    };
    const app = new Hono();
    const seen = [];
    app.use("*", agentguard({ policy, onDecision: null, dpopNonceSecret: "a shared test secret of 32 bytes!" }));
    app.get("/v1/*", (c) => {
      seen.push({ decision: c.get("agentguard"), spoofed: c.req.header("x-agentguard-agent") });
      return c.json({ ok: true });
    });
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ scope: "read", client_id: "bot", cnf: { jkt: await calculateJwkThumbprint(clientJwk) } })
      .setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid: "i1" })
      .setIssuer("https://sts.test")
      .setAudience("https://api.test")
      .setSubject("user:alice")
      .setIssuedAt(now)
      .setExpirationTime(now + 120)
      .setJti(crypto.randomUUID())
      .sign(issuer.privateKey);
    const ath = Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))).toString("base64url");
    const proof = (nonce) => {
      const claims = { htm: "GET", htu: "https://api.test/v1/x", ath, jti: crypto.randomUUID() };
      if (nonce) claims.nonce = nonce;
      return new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", typ: "dpop+jwt", jwk: clientJwk }).setIssuedAt().sign(client.privateKey);
    };
    const call = async (nonce) =>
      app.request("https://api.test/v1/x", {
        headers: { authorization: `DPoP ${token}`, dpop: await proof(nonce), "x-agentguard-agent": "spiffe://evil" },
      });
    const first = await call(undefined);
    assert.equal(first.status, 401);
    assert.equal((await first.json()).reason, "dpop_nonce_required");
    const nonce = first.headers.get("dpop-nonce");
    assert.ok(nonce);
    assert.equal(seen.length, 0, "a refused request runs no handler");
    const ok = await call(nonce);
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.deepEqual(await ok.json(), { ok: true });
    assert.ok(ok.headers.get("dpop-nonce"), "the next nonce is on the handler's response");
    assert.equal(ok.headers.get("content-type"), "application/json");
    assert.equal(seen.length, 1);
    assert.equal(seen[0].decision.decision, "allow");
    assert.equal(seen[0].decision.identity.agent, "bot");
    assert.equal(seen[0].spoofed, "bot", "the handler sees the verified identity header, not the inbound copy");
  });
});
