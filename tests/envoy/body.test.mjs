// Approval conditions on the request body (`approval_when`) in a real Envoy:
// the filter reads the JSON body of a POST to the `transfer` route, hands
// its text to the core, and the core sends large or foreign-currency
// transfers to the approval gate. The approval binds to the exact body
// (its SHA-256 is in the action digest); the upstream gets the body
// unchanged. What the core cannot read (not JSON, not UTF-8, over 64 KiB)
// needs an approval; a body over Envoy's buffer limit is refused, never
// forwarded truncated. Routes without body rules are not held for the body.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import { loadVectors, signJwt } from "../vectors/mint.mjs";
import { startEnvoy, startUpstream, bootstrap, wasmFilter, send, upstreamSaw, nowSecs, agentToken, openPost, within } from "./harness.mjs";

const { keys, policyText } = loadVectors();
const sha256 = (data) => createHash("sha256").update(data).digest("base64url");
/** The action digest as src/approval.rs documents it, computed independently. */
const actionDigest = (body, path = "/v1/transfers") =>
  sha256(`agentguard-action-v1\nPOST\napi.test\n${path}\n\n${body.length ? sha256(body) : ""}\n`);

// The shared policy plus a low-risk route whose body can send a request to a human.
const policy = JSON.parse(policyText);
policy.routes.push({
  id: "transfer",
  methods: ["POST"],
  path: "/v1/transfers",
  scopes: ["payments.write"],
  approval_when: [
    { body: "/amount", gt: 1000 },
    { body: "/currency", not_in: ["EUR", "USD"] },
  ],
});

const LIMIT = 64 * 1024; // crate::limits::MAX_BODY_BYTES
const ENVOY_BUFFER = 1024 * 1024; // Envoy's default per_connection_buffer_limit_bytes

let upstream;
let envoy;

before(async () => {
  upstream = await startUpstream();
  envoy = await startEnvoy(
    bootstrap({ httpFilters: [wasmFilter(JSON.stringify({ policy }))], upstreamPort: upstream.port }),
  );
});

after(async () => {
  await envoy?.stop();
  await upstream?.close();
});

const payerToken = (agent = "payer") => agentToken(agent, { scope: "crm.read payments.write mail.draft" });

let serial = 0;
const approve = (challenge) =>
  signJwt(
    keys.approver,
    {
      iss: "https://approvals.test",
      aud: "https://api.test",
      sub: "user:cfo",
      agent: challenge.agent,
      action_digest: challenge.action_digest,
      jti: `body-approval-${serial++}`,
      iat: nowSecs() - 5,
      exp: nowSecs() + 120,
    },
    "approval+jwt",
  );

const transfer = (token, body, { approval, headers = {} } = {}) =>
  send(envoy.port, {
    method: "POST",
    path: "/v1/transfers",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      ...(approval ? { "x-agent-approval": approval } : {}),
      ...headers,
    },
    body,
  });

const SMALL = '{"amount":250,"currency":"EUR"}';
const LARGE = '{"amount":1500,"currency":"EUR"}';
const HUGE = '{"amount":150000,"currency":"EUR"}';

/** Asserts an approval challenge for `body` that did not reach the upstream. */
function assertChallenge(res, body, why) {
  assert.equal(res.status, 403, res.body);
  assert.equal(res.json.decision, "approval_required", res.body);
  assert.equal(res.json.reason, "approval_required");
  assert.equal(res.json.action_digest, actionDigest(body), "the digest covers the whole body Envoy received");
  assert.equal(res.headers["x-upstream"], undefined, "held requests never reach the upstream");
  if (why) assert.match(res.json.detail, why);
}

test("a transfer under the limit goes through, body unchanged", async () => {
  const res = await transfer(await payerToken(), SMALL);
  assert.equal(res.status, 200, res.body);
  const seen = upstreamSaw(res);
  assert.equal(seen.body, SMALL, "the upstream got the exact body");
  assert.deepEqual(seen.headers.get("x-agentguard-route"), ["transfer"]);
  // Another currency meets the second condition.
  assertChallenge(await transfer(await payerToken(), '{"amount":5,"currency":"BTC"}'), '{"amount":5,"currency":"BTC"}', /currency/);
});

test("a large transfer needs an approval, which binds to that body and is used once", async () => {
  const token = await payerToken();
  const challenge = await transfer(token, LARGE);
  assertChallenge(challenge, LARGE, /body \/amount is 1500, more than 1000/);
  assert.equal(challenge.json.agent, "spiffe://test/agents/payer");

  const approval = await approve(challenge.json);
  const res = await transfer(token, LARGE, { approval });
  assert.equal(res.status, 200, res.body);
  assert.equal(upstreamSaw(res).body, LARGE, "the buffered body goes upstream unchanged");

  const again = await transfer(token, LARGE, { approval });
  assert.equal(again.status, 403, again.body);
  assert.equal(again.json.reason, "approval_replayed");
  assert.equal(again.headers["x-upstream"], undefined);

  // An approval for 1500 does not cover 150000.
  const other = await approve(challenge.json);
  const bigger = await transfer(token, HUGE, { approval: other });
  assert.equal(bigger.status, 403, bigger.body);
  assert.equal(bigger.json.reason, "approval_digest_mismatch");
  assert.equal(bigger.headers["x-upstream"], undefined);
});

test("bodies the core cannot judge go to a human, bound to their bytes", async () => {
  const token = await payerToken();
  assertChallenge(await transfer(token, "amount=5&currency=EUR"), "amount=5&currency=EUR", /not JSON/);
  assertChallenge(await transfer(token, '{"amount":5,"amount":5000,"currency":"EUR"}'), '{"amount":5,"amount":5000,"currency":"EUR"}', /duplicate/);
  assertChallenge(await transfer(token, '{"currency":"EUR"}'), '{"currency":"EUR"}', /amount is missing/);
  // Not UTF-8: only the digest goes to the core.
  const binary = Buffer.from([0x7b, 0x22, 0x61, 0xff, 0xfe, 0x7d]);
  assertChallenge(await transfer(token, binary), binary, /only the body's SHA-256/);
  // No body at all.
  assertChallenge(await transfer(token, ""), "", /not given/);
});

test("a body over 64 KiB needs an approval; approved, it goes upstream whole", async () => {
  const token = await payerToken();
  const big = JSON.stringify({ amount: 5, currency: "EUR", memo: "x".repeat(LIMIT) });
  assert.ok(big.length > LIMIT && big.length < ENVOY_BUFFER);
  const challenge = await transfer(token, big);
  assertChallenge(challenge, big, /only the body's SHA-256/);
  const res = await transfer(token, big, { approval: await approve(challenge.json) });
  assert.equal(res.status, 200, res.body);
  const seen = upstreamSaw(res).body;
  assert.equal(seen.length, big.length, "not truncated");
  assert.equal(seen, big);
  // The filter is fine afterwards.
  assert.equal((await transfer(token, SMALL)).status, 200);
  // A 64 KiB body is read as text (and meets no condition).
  const padded = '{"amount":5,"currency":"EUR","memo":"' + "y".repeat(LIMIT - 39) + '"}';
  assert.equal(padded.length, LIMIT);
  const atLimit = await transfer(token, padded);
  assert.equal(atLimit.status, 200, atLimit.body);
  assert.equal(upstreamSaw(atLimit).body, padded);
});

test("a body over Envoy's buffer limit is refused, not forwarded truncated", async () => {
  const token = await payerToken();
  const body = JSON.stringify({ amount: 5, currency: "EUR", memo: "z".repeat(ENVOY_BUFFER + 1000) });
  const res = await transfer(token, body);
  assert.equal(res.status, 413, "Envoy's answer when a filter buffers more than it may");
  assert.equal(res.headers["x-upstream"], undefined);
  assert.equal((await transfer(token, SMALL)).status, 200, "the next request still works");
});

test("a body in several frames is read whole before the conditions look at it", async () => {
  // The first frame alone is not JSON (it would need an approval); the whole is 250 EUR.
  const parts = ['{"amount":2', '50,"currency":', '"EUR"}'];
  assert.equal(parts.join(""), SMALL);
  const res = await transfer(await payerToken(), parts);
  assert.equal(res.status, 200, res.body);
  assert.equal(upstreamSaw(res).body, SMALL);
});

test("a declared Content-Digest does not spare the read, and must match it", async () => {
  const token = await payerToken();
  const digestOf = (text) => `sha-256=:${createHash("sha256").update(text).digest("base64")}:`;
  // Declared and matching: the conditions still read the values (250 EUR: no approval).
  const ok = await transfer(token, SMALL, { headers: { "content-digest": digestOf(SMALL) } });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(upstreamSaw(ok).body, SMALL);
  // A declaration of a small body on a large one: refused before the upstream.
  const lie = await transfer(token, HUGE, { headers: { "content-digest": digestOf(SMALL) } });
  assert.equal(lie.status, 400, lie.body);
  assert.equal(lie.json.reason, "request_invalid");
  assert.match(lie.json.detail, /does not match its `Content-Digest`/);
  assert.equal(lie.headers["x-upstream"], undefined);
  // Declared and matching, but large: the approval loop as without a declaration.
  assertChallenge(await transfer(token, LARGE, { headers: { "content-digest": digestOf(LARGE) } }), LARGE);
});

test("only routes that read bodies wait for them; others stream", async () => {
  const token = await payerToken();
  // No body rule: decided on the headers while the body is still coming.
  const draft = openPost(envoy.port, "/v1/drafts", { authorization: "Bearer not-a-token" }, '{"amount": ');
  const early = await within(draft.response, 3000);
  assert.notEqual(early, "pending", "a route without body rules must not wait for the body");
  assert.equal(early.status, 401);
  draft.finish("1}");
  // An allowed request to such a route streams its body upstream.
  const streamed = openPost(envoy.port, "/v1/drafts", { authorization: `Bearer ${token}` }, '{"to": ');
  await sleep(200);
  streamed.finish('"ACME"}');
  const done = await streamed.response;
  assert.equal(done.status, 200);
  assert.equal(done.json.body, '{"to": "ACME"}');
  // The transfer route answers only once its body has ended.
  const held = openPost(envoy.port, "/v1/transfers", { authorization: `Bearer ${token}` }, '{"amount": ');
  assert.equal(await within(held.response, 700), "pending", "the filter waits for the whole body");
  held.finish('5000, "currency": "EUR"}');
  const late = await held.response;
  assert.equal(late.status, 403);
  assert.equal(late.json.action_digest, actionDigest('{"amount": 5000, "currency": "EUR"}'));
});
