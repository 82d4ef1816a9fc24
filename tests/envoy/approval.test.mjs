// The human-approval loop in a real Envoy, with the body read by the filter:
// a POST to the shared policy's `risk: high` route (`pay`) without a
// `Content-Digest` is held until its body is in, the body is hashed into the
// action digest, and only then decided. No approval → 403
// approval_required with the digest; an approval for that digest → 200 with
// the body intact upstream; the same approval again → approval_replayed; an
// approval for another body → approval_digest_mismatch.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";

import { loadVectors, signJwt } from "../vectors/mint.mjs";
import { startEnvoy, startUpstream, bootstrap, wasmFilter, send, upstreamSaw, nowSecs, assertLogged, agentToken, openPost, within } from "./harness.mjs";

const { keys, policyText } = loadVectors();
const sha256 = (text) => createHash("sha256").update(text).digest("base64url");
/** The action digest as src/approval.rs documents it, computed independently. */
const actionDigest = (body, { method = "POST", host = "api.test", path = "/v1/payments", query = "" } = {}) =>
  sha256(`agentguard-action-v1\n${method}\n${host}\n${path}\n${query}\n${body ? sha256(body) : ""}\n`);

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

const payerToken = (agent = "payer") => agentToken(agent, { scope: "crm.read payments.write" });

let serial = 0;

const approve = (challenge, extra = {}) =>
  signJwt(
    keys.approver,
    {
      iss: "https://approvals.test",
      aud: "https://api.test",
      sub: "user:cfo",
      agent: challenge.agent,
      action_digest: challenge.action_digest,
      jti: `approval-${serial++}`,
      iat: nowSecs() - 5,
      exp: nowSecs() + 120,
      ...extra,
    },
    "approval+jwt",
  );

const pay = (token, body, { approval, path = "/v1/payments" } = {}) =>
  send(envoy.port, {
    method: "POST",
    path,
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      ...(approval ? { "x-agent-approval": approval } : {}),
    },
    body,
  });

const BODY = '{"amount": 120, "currency": "EUR", "to": "ACME"}';
const OTHER = '{"amount": 9999, "currency": "EUR", "to": "MALLORY"}';

test("no approval: approval_required with a digest that covers the body the filter read", async () => {
  const token = await payerToken();
  const res = await pay(token, BODY);
  assert.equal(res.status, 403, res.body);
  assert.equal(res.json.decision, "approval_required");
  assert.equal(res.json.reason, "approval_required");
  assert.equal(res.json.action_digest, actionDigest(BODY), "the digest is over the body Envoy received");
  assert.equal(res.json.agent, "spiffe://test/agents/payer");
  assert.equal(res.json.approval_endpoint, "https://approvals.test/bc-authorize");
  assert.equal(res.headers["x-upstream"], undefined, "held requests never reach the upstream");
  // Another body, another digest: the body really is part of it.
  assert.equal((await pay(token, OTHER)).json.action_digest, actionDigest(OTHER));
});

test("the approval for that digest lets the request through once, body intact", async () => {
  const token = await payerToken();
  const challenge = (await pay(token, BODY)).json;
  const approval = await approve(challenge);
  const res = await pay(token, BODY, { approval });
  assert.equal(res.status, 200, res.body);
  const seen = upstreamSaw(res);
  assert.equal(seen.method, "POST");
  assert.equal(seen.body, BODY, "the buffered body goes upstream unchanged");
  assert.deepEqual(seen.headers.get("x-agentguard-route"), ["pay"]);
  assert.deepEqual(seen.headers.get("x-agentguard-agent"), ["spiffe://test/agents/payer"]);

  const again = await pay(token, BODY, { approval });
  assert.equal(again.status, 403, again.body);
  assert.equal(again.json.reason, "approval_replayed");
  assert.equal(again.headers["x-upstream"], undefined);
});

test("an approval for one body does not fit another", async () => {
  const token = await payerToken();
  const approval = await approve((await pay(token, BODY)).json);
  const res = await pay(token, OTHER, { approval });
  assert.equal(res.status, 403, res.body);
  assert.equal(res.json.reason, "approval_digest_mismatch");
  assert.equal(res.headers["x-upstream"], undefined);
  // Unused, it still fits the body it was made for.
  assert.equal((await pay(token, BODY, { approval })).status, 200);
});

test("a body sent in several frames is hashed whole", async () => {
  const token = await payerToken();
  const parts = ['{"amount": 120, ', '"currency": "EUR", ', '"to": "ACME"}'];
  assert.equal(parts.join(""), BODY);
  const challenge = await pay(token, parts);
  assert.equal(challenge.status, 403, challenge.body);
  assert.equal(challenge.json.action_digest, actionDigest(BODY));
  const approval = await approve(challenge.json);
  const res = await pay(token, parts, { approval });
  assert.equal(res.status, 200, res.body);
  assert.equal(upstreamSaw(res).body, BODY);
});

test("an empty body binds like no body; the approval names the agent", async () => {
  const token = await payerToken("payer-2");
  const empty = await pay(token, "");
  assert.equal(empty.json?.action_digest, actionDigest(""), empty.body);
  const declared = await send(envoy.port, {
    method: "POST",
    path: "/v1/payments",
    headers: { authorization: `Bearer ${token}`, "content-digest": `sha-256=:${createHash("sha256").update("").digest("base64")}:` },
  });
  assert.equal(declared.json?.action_digest, actionDigest(""), "a declared empty body binds the same way");
  const approval = await approve(empty.json, { agent: "spiffe://test/agents/someone-else" });
  const res = await pay(token, "", { approval });
  assert.equal(res.status, 403, res.body);
  assert.equal(res.json.reason, "approval_agent_mismatch");
});

test("only approval-gated routes wait for the body; others are decided on their headers", async () => {
  const token = await payerToken();
  // A low-risk route is decided while the body is still coming.
  const draft = openPost(envoy.port, "/v1/drafts", { authorization: "Bearer not-a-token" }, '{"amount": ');
  const early = await within(draft.response, 3000);
  assert.notEqual(early, "pending", "a low-risk route must not wait for the body");
  assert.equal(early.status, 401);
  draft.finish("1}");
  // The high-risk route answers only once the body has ended, and hashes all of it.
  const payment = openPost(envoy.port, "/v1/payments", { authorization: `Bearer ${token}` }, '{"amount": ');
  assert.equal(await within(payment.response, 700), "pending", "the filter waits for the whole body");
  payment.finish("1}");
  const late = await payment.response;
  assert.equal(late.status, 403);
  assert.equal(late.json.action_digest, actionDigest('{"amount": 1}'));
});

test("without allow_on_headers_stop_iteration the held request is refused, saying why", async () => {
  // Envoy then never hands the body to a filter that holds the headers: the
  // filter must not leave the request hanging (nor let it through).
  const config = JSON.stringify({ policy: JSON.parse(policyText), body_wait: "1s" });
  const plain = await startEnvoy(
    bootstrap({ httpFilters: [wasmFilter(config, { allowStopIteration: false })], upstreamPort: upstream.port }),
  );
  try {
    const started = Date.now();
    const res = await send(plain.port, {
      method: "POST",
      path: "/v1/payments",
      headers: { authorization: `Bearer ${await payerToken()}` },
      body: BODY,
    });
    assert.equal(res.status, 500, res.body);
    assert.equal(res.json.reason, "internal_error");
    assert.equal(res.headers["x-upstream"], undefined);
    assert.ok(Date.now() - started < 5000, "refused within body_wait and a tick");
    assertLogged(plain.output(), /no request body reached the filter within 1s.*allow_on_headers_stop_iteration: true/);
    // Routes that need no body are unaffected.
    const read = await send(plain.port, { path: "/v1/contacts/1", headers: { authorization: "Bearer x" } });
    assert.equal(read.status, 401);
  } finally {
    await plain.stop();
  }
});
