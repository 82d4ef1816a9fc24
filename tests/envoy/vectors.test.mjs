// The shared request/decision vectors (tests/vectors/cases.json) through a
// real Envoy running the built filter with tests/vectors/policy.json: every
// case must reach the status and reason code the native core reaches. Then
// what only a proxy can show: identity headers upstream (and spoofed copies
// stripped), the exact refusal responses, the stats and the decision log.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

import { loadVectors, caseHeaders, mintCaseToken } from "../vectors/mint.mjs";
import {
  startEnvoy,
  startUpstream,
  bootstrap,
  wasmFilter,
  send,
  upstreamSaw,
  stats,
  nowSecs,
  eventually,
} from "./harness.mjs";

const { cases, keys, policyText } = loadVectors();
let upstream;
let envoy;

before(async () => {
  upstream = await startUpstream();
  envoy = await startEnvoy(bootstrap({ httpFilters: [wasmFilter(policyText)], upstreamPort: upstream.port }));
});

after(async () => {
  await envoy?.stop();
  await upstream?.close();
});

const findCase = (name) => {
  const c = cases.find((c) => c.name === name);
  assert.ok(c, `no vector named ${name}`);
  return c;
};

/**
 * Sends a vector's request (its minted token as Bearer) through Envoy. The
 * source IP travels as `X-Forwarded-For` (see the harness's bootstrap).
 */
async function sendCase(c, serial, extraHeaders = {}) {
  const { scheme = "https", source_ip: sourceIp, client_cert_sha256: cert } = c.request;
  // These need a listener this suite does not have yet: fail loudly rather than pass by omission.
  assert.equal(scheme, "https", `${c.name}: only https requests can be replayed through this listener`);
  assert.equal(cert, undefined, `${c.name}: client certificates need an mTLS listener`);
  const headers = { ...(await caseHeaders(c, keys, nowSecs(), serial)), ...extraHeaders };
  if (sourceIp) headers["x-forwarded-for"] = sourceIp;
  return send(envoy.port, { method: c.request.method, path: c.request.path, host: c.request.host, headers });
}

test("every shared vector gets the same decision through Envoy", async (t) => {
  assert.ok(cases.length >= 20);
  for (const [i, c] of cases.entries()) {
    await t.test(c.name, async () => {
      const res = await sendCase(c, i);
      const { decision, status, reasons } = c.expect;
      assert.equal(res.status, status, res.body);
      if (decision === "allow") {
        assert.equal(res.headers["x-upstream"], "echo", "allowed requests reach the upstream");
        const seen = upstreamSaw(res);
        assert.ok(seen.headers.get("x-agentguard-agent"), "the upstream sees the verified agent");
      } else {
        assert.equal(res.headers["content-type"], "application/problem+json");
        assert.equal(res.headers["x-upstream"], undefined, "refused requests never reach the upstream");
        assert.equal(res.json.decision, decision);
        assert.equal(res.json.status, status);
        assert.deepEqual([res.json.reason], reasons);
      }
    });
  }
});

test("allow: the upstream sees the identity headers and never a spoofed one", async () => {
  const c = findCase("valid EdDSA token reads a contact");
  const res = await sendCase(c, 1000, {
    "x-agentguard-subject": "user:mallory",
    "X-AgentGuard-Scopes": "admin payments.write",
    "x-agentguard-unknown": "spoof",
  });
  assert.equal(res.status, 200, res.body);
  const seen = upstreamSaw(res).headers;
  assert.deepEqual(seen.get("x-agentguard-subject"), ["user:alice"]);
  assert.deepEqual(seen.get("x-agentguard-agent"), ["spiffe://test/agents/crm-bot"]);
  assert.deepEqual(seen.get("x-agentguard-client-id"), ["crm-agent"]);
  assert.deepEqual(seen.get("x-agentguard-issuer"), ["https://sts.test"]);
  assert.deepEqual(seen.get("x-agentguard-scopes"), ["crm.read mail.draft"]);
  assert.deepEqual(seen.get("x-agentguard-route"), ["read-contacts"]);
  assert.equal(seen.get("x-agentguard-unknown"), undefined);
  const all = JSON.stringify([...seen]);
  assert.ok(!all.includes("mallory") && !all.includes("spoof") && !all.includes("admin"), all);
  assert.equal(upstreamSaw(res).url, "/v1/contacts/42", "the path goes upstream as sent");
});

test("refusals carry the core's challenge and problem body", async () => {
  const expired = await sendCase(findCase("expired token"), 1001);
  assert.equal(expired.status, 401);
  assert.match(expired.headers["www-authenticate"], /^Bearer realm="api.test", error="invalid_token", error_description="token expired \d+ s ago"$/);
  assert.equal(expired.headers["cache-control"], "no-store");
  assert.equal(expired.json.type, "https://agentguard.dev/problems/token_expired");

  const missing = await sendCase(findCase("missing token"), 1002);
  assert.equal(missing.headers["www-authenticate"], 'Bearer realm="api.test"');

  const scope = await sendCase(findCase("insufficient scope"), 1003);
  assert.equal(scope.status, 403);
  assert.match(scope.headers["www-authenticate"], /error="insufficient_scope"/);
  assert.match(scope.headers["www-authenticate"], /scope="payments.write"/);

  const pay = await sendCase(findCase("high-risk route needs approval"), 1004);
  assert.equal(pay.status, 403);
  assert.equal(pay.json.decision, "approval_required");
  assert.match(pay.json.action_digest, /^[A-Za-z0-9_-]{43}$/);
  assert.match(pay.json.binding_message, /spiffe:\/\/test\/agents\/crm-bot wants to POST \/v1\/payments/);
});

test("stats count decisions, reasons and token-cache hits", async () => {
  const count = (s, name) => s[`wasmcustom.agentguard.${name}`] ?? 0;
  const snapshot = async () => (await stats(envoy)).values;
  // Decision counters reach Envoy once a second: wait until every expected
  // delta is there, then check nothing else moved.
  const settled = async (before, expected) =>
    eventually(
      async () => {
        const now = await snapshot();
        const delta = (name) => count(now, name) - count(before, name);
        return Object.entries(expected).every(([name, n]) => delta(name) >= n) ? delta : null;
      },
      { what: `counters ${JSON.stringify(expected)}` },
    );
  const valid = findCase("valid ES256 token reads a contact");
  const token = await mintCaseToken(valid.token, keys, nowSecs(), 2000);
  const headers = { authorization: `Bearer ${token}` };

  await sleep(1200); // a tick: counts of the earlier tests are flushed
  let before = await snapshot();
  for (let i = 0; i < 3; i++) {
    const res = await send(envoy.port, { path: "/v1/contacts/7", headers });
    assert.equal(res.status, 200, res.body);
  }
  // The same token three times: one signature check, then two cache hits.
  let expected = { "decision.allow": 3, "token.cache_miss": 1, "token.cache_hit": 2 };
  let delta = await settled(before, expected);
  for (const [name, n] of Object.entries(expected)) assert.equal(delta(name), n, name);

  before = await snapshot();
  for (let i = 0; i < 2; i++) assert.equal((await sendCase(findCase("expired token"), 2001 + i)).status, 401);
  assert.equal((await sendCase(findCase("revoked jti"), 2003)).status, 401);
  assert.equal((await sendCase(findCase("no route for the path"), 2004)).status, 403);
  expected = {
    "decision.deny": 3,
    "decision.revoked": 1,
    "reason.token_expired": 2,
    "reason.revoked_token": 1,
    "reason.route_not_matched": 1,
  };
  delta = await settled(before, expected);
  for (const [name, n] of Object.entries(expected)) assert.equal(delta(name), n, name);
  assert.equal(delta("decision.allow"), 0);
  const text = (await stats(envoy)).text;
  assert.match(text, /wasmcustom\.agentguard\.decision_time_us/, "the decision-time histogram exists");
});

test("each decision is logged as a decision-event JSON line", async () => {
  const res = await sendCase(findCase("wrong audience"), 3000);
  assert.equal(res.status, 401);
  const line = await eventually(
    () => envoy.output().split("\n").find((l) => l.includes('"reasons":["token_audience_invalid"]')),
    { what: "the decision log line" },
  );
  const event = JSON.parse(line.slice(line.indexOf("decision {") + "decision ".length));
  assert.equal(event.v, 1);
  assert.equal(event.decision, "deny");
  assert.equal(event.status, 401);
  assert.equal(event.path, "/v1/contacts/42");
  assert.equal(event.source_ip, "127.0.0.1");
  assert.equal(event.agent.subject, "user:alice", "the signature verified; the audience did not fit");
  assert.match(event.agent.token_hash, /^[A-Za-z0-9_-]{16}$/);
  assert.ok(!line.includes("eyJ"), "the raw token is never logged");
});
