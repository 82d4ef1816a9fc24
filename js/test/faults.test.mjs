// Faults at the host (issue: hardening): what the JS gateway does when the
// JWKS host returns garbage, when the policy source is missing or invalid at
// start and at reload, and when the clock jumps. Each must fail closed, or
// keep the last good keys / policy, and never throw out of a decision.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";

import { AgentGuard, JwksCache, withAgentGuard } from "../src/node.js";
import { generateKey } from "./helpers.mjs";
import { signJwt } from "../../tests/vectors/mint.mjs";

const ISS = "https://sts.faults.test";
const policy = (jwks) => ({
  realm: "api.test",
  issuers: [{ iss: ISS, audiences: ["https://api.test"], ...jwks, algorithms: ["EdDSA"], max_lifetime: "10m" }],
  routes: [{ id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] }],
});
const claims = (now, extra = {}) => ({
  iss: ISS, aud: "https://api.test", sub: "user:alice", client_id: "crm-agent",
  scope: "crm.read", iat: now - 10, exp: now + 290, jti: `j-${Math.random()}`, ...extra,
});
const request = (token) => new Request("https://api.test/v1/x", { headers: token ? { authorization: `Bearer ${token}` } : {} });

describe("JWKS host returns garbage: the last good keys stay", () => {
  let server;
  const state = { body: "", type: "application/json", status: 200 };
  let key;
  before(async () => {
    key = await generateKey("EdDSA", "k1");
    server = createServer((_req, res) => res.writeHead(state.status, { "content-type": state.type, "cache-control": "max-age=60" }).end(state.body));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
  });
  after(() => new Promise((r) => server.close(r)));

  const garbage = {
    "an HTML error page with status 200": ["<html><body>Service Unavailable</body></html>", "text/html"],
    "JSON that is not a key set": ['{"hello": "world"}', "application/json"],
    "a key set with no usable key": ['{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "application/json"],
    "duplicate members": ['{"keys": [], "keys": []}', "application/json"],
    "nesting past the depth limit": [`{"keys": [${"[".repeat(200)}${"]".repeat(200)}]}`, "application/json"],
    "a 2 MB document": [`{"keys": [], "pad": "${"x".repeat(2_000_000)}"}`, "application/json"],
    "truncated JSON": ['{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "abc', "application/json"],
  };

  for (const [what, [body, type]] of Object.entries(garbage)) {
    test(what, async () => {
      const clock = { now: 1_000_000 };
      const logs = [];
      const cache = new JwksCache({ now: () => clock.now, log: (l) => logs.push(l) });
      const uri = `http://127.0.0.1:${server.address().port}/jwks-${encodeURIComponent(what)}`;
      Object.assign(state, { body: JSON.stringify({ keys: [key.publicJwk] }), type: "application/jwk-set+json", status: 200 });
      const guard = await AgentGuard.create(policy({ jwks_uri: uri }), { jwksCache: cache, log: (l) => logs.push(l) });
      const now = Math.floor(Date.now() / 1000);
      assert.equal((await guard.decide(request(await signJwt(key.privateJwk, claims(now))))).decision, "allow");

      // The keys expire from the cache; the next fetch returns garbage.
      Object.assign(state, { body, type });
      clock.now += 120_000;
      const d = await guard.decide(request(await signJwt(key.privateJwk, claims(now))));
      assert.equal(d.decision, "allow", `the last good keys decide: ${JSON.stringify(d.reasons)}`);
      assert.ok(logs.length >= 1, "the bad document is logged");
      assert.ok(logs.every((l) => l.startsWith("agentguard: JWKS")), logs.join("\n"));
      // A token from a key that was never published is still refused.
      const rogue = await generateKey("EdDSA", "k1");
      const r = await guard.decide(request(await signJwt(rogue.privateJwk, claims(now))));
      assert.equal(r.decision, "deny");
      assert.equal(r.reasons[0].code, "token_signature_invalid");
      guard.free();
    });
  }
});

describe("policy source missing or invalid, at start and at reload", () => {
  let key;
  let goodText;
  before(async () => {
    key = await generateKey("EdDSA", "k1");
    goodText = JSON.stringify(policy({ jwks: { keys: [key.publicJwk] } }));
  });

  const origin = async () => new Response("origin", { status: 200 });

  test("missing at start: every request is a 500 deny, one log line", async () => {
    const logs = [];
    const fetch = withAgentGuard(origin, { log: (l) => logs.push(l), onDecision: null });
    for (let i = 0; i < 3; i++) {
      const res = await fetch(request(), {}, {});
      assert.equal(res.status, 500);
      const body = await res.json();
      assert.equal(body.decision, "deny");
      assert.equal(body.reason, "policy_invalid");
    }
    assert.equal(logs.length, 1);
    assert.match(logs[0], /policy rejected, denying every request: policy: none given/);
  });

  test("invalid at start: 500 deny naming the JSON path in the log", async () => {
    const logs = [];
    const fetch = withAgentGuard(origin, { log: (l) => logs.push(l), onDecision: null });
    const env = { AGENTGUARD_POLICY: goodText.replace('"algorithms":["EdDSA"]', '"algorithms":["HS256"]') };
    const res = await fetch(request(), env, {});
    assert.equal(res.status, 500);
    assert.match(logs[0], /issuers\[0\]\.algorithms\[0\]: algorithm `HS256` is never accepted/);
  });

  test("invalid or missing at reload: the last good policy stays in force, one log line each", async () => {
    const logs = [];
    const realNow = Date.now;
    let offset = 0;
    Date.now = () => realNow() + offset;
    try {
      const fetch = withAgentGuard(origin, { log: (l) => logs.push(l), onDecision: null, policyTtlMs: 1000 });
      const env = { AGENTGUARD_POLICY: goodText };
      const token = async () => signJwt(key.privateJwk, claims(Math.floor(Date.now() / 1000)));
      assert.equal((await fetch(request(await token()), env, {})).status, 200);

      // A bad push: it does not compile. The good policy keeps deciding.
      env.AGENTGUARD_POLICY = goodText.replace('"routes"', '"routez"');
      offset += 1500;
      assert.equal((await fetch(request(await token()), env, {})).status, 200);
      assert.equal((await fetch(request(), env, {})).status, 401, "and keeps refusing what it refused");
      assert.equal(logs.length, 1);
      assert.match(logs[0], /policy reload failed, the last good policy stays in force: .*routez/);

      // The source disappears.
      delete env.AGENTGUARD_POLICY;
      offset += 1500;
      assert.equal((await fetch(request(await token()), env, {})).status, 200);
      assert.equal(logs.length, 2);
      assert.match(logs[1], /policy reload failed, the last good policy stays in force: policy: none given/);

      // A good new policy takes over at the next read: this one drops the route.
      env.AGENTGUARD_POLICY = JSON.stringify({ ...JSON.parse(goodText), routes: [{ id: "other", methods: ["GET"], path: "/v2/**", scopes: ["crm.read"] }] });
      offset += 1500;
      const res = await fetch(request(await token()), env, {});
      assert.equal(res.status, 403);
      assert.equal((await res.json()).reason, "route_not_matched");
      assert.equal(logs.length, 2);
    } finally {
      Date.now = realNow;
    }
  });
});

describe("clock jumps", () => {
  test("backwards and forwards: an expired token never comes back; a future one is refused; the cache follows the clock", async () => {
    const key = await generateKey("EdDSA", "k1");
    const guard = await AgentGuard.create(policy({ jwks: { keys: [key.publicJwk] } }));
    const t0 = 1_800_000_000;
    const token = await signJwt(key.privateJwk, claims(t0));
    const at = (s) => guard.decide(request(token), { now: s * 1000 });
    assert.equal((await at(t0)).decision, "allow");
    assert.equal(guard.stats().cachedTokens, 1);
    // Forward past exp (+290 s, 30 s skew): refused, cached or not.
    const late = await at(t0 + 400);
    assert.equal(late.reasons[0].code, "token_expired");
    // Backwards before iat (−10 s, 30 s skew): "issued in the future".
    const early = await at(t0 - 3600);
    assert.equal(early.reasons[0].code, "token_issued_in_future");
    // Back to a time inside the window: allowed again (time is an argument, nothing is latched).
    assert.equal((await at(t0 + 5)).decision, "allow");
    // A jump of years forward and a nonsense time: refusals, not exceptions.
    assert.equal((await at(t0 + 10 * 365 * 86400)).reasons[0].code, "token_expired");
    const nonsense = await guard.decide(request(token), { now: Number.NaN });
    assert.equal(nonsense.decision, "deny");
    assert.equal(nonsense.reasons[0].code, "request_invalid");
    guard.free();
  });
});
