// The example users start from: examples/envoy/envoy.yaml, run as written
// (only its three ports and the filter's path are rewritten for the test),
// with the example policy it embeds and tokens minted with the example key.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

import { createHash } from "node:crypto";

import { signJwt } from "../vectors/mint.mjs";
import { ROOT, WASM, startEnvoy, startUpstream, send, upstreamSaw, nowSecs, tempDir } from "./harness.mjs";

const yaml = readFileSync(path.join(ROOT, "examples/envoy/envoy.yaml"), "utf8");
const readKey = (name) => JSON.parse(readFileSync(path.join(ROOT, "examples/keys", name), "utf8"));
const key = readKey("issuer.private.jwk.json");
const approver = readKey("approver.private.jwk.json");
const sha256 = (text) => createHash("sha256").update(text).digest("base64url");

/** The policy embedded in the YAML: the block scalar after `value: |`. */
function embeddedPolicy(text) {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.trim() === "value: |");
  assert.ok(start > 0, "envoy.yaml has a `value: |` block");
  const indent = lines[start + 1].search(/\S/);
  const body = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() && line.search(/\S/) < indent) break;
    body.push(line.slice(indent));
  }
  return JSON.parse(body.join("\n"));
}

// Claims as examples/generate.py mints them for the example agent.
const claims = (extra = {}) => ({
  iss: "https://sts.example.com",
  aud: "https://api.example.com",
  sub: "user:alice@example.com",
  client_id: "crm-assistant",
  act: { sub: "spiffe://prod.example.com/agents/crm-assistant" },
  scope: "crm.read mail.draft",
  jti: `envoy-example-${Math.random().toString(36).slice(2)}`,
  iat: nowSecs() - 10,
  exp: nowSecs() + 290,
  ...extra,
});

let upstream;
let envoy;

before(async () => {
  upstream = await startUpstream();
  const rewritten = yaml
    .replace("port_value: 9901", "port_value: 0")
    .replace("port_value: 10000", "port_value: 0")
    .replace("port_value: 8080", `port_value: ${upstream.port}`)
    .replace("filename: target/envoy/agentguard.wasm", `filename: ${WASM}`);
  assert.equal((rewritten.match(/port_value: 0\b/g) ?? []).length, 2);
  assert.ok(rewritten.includes(`filename: ${WASM}`));
  const file = path.join(tempDir("example"), "envoy.yaml");
  writeFileSync(file, rewritten);
  envoy = await startEnvoy(file);
});

after(async () => {
  await envoy?.stop();
  await upstream?.close();
});

test("the embedded policy is examples/policy.json", () => {
  const policy = JSON.parse(readFileSync(path.join(ROOT, "examples/policy.json"), "utf8"));
  assert.deepEqual(embeddedPolicy(yaml), policy, "update examples/envoy/envoy.yaml to match examples/policy.json");
});

test("an example agent reads a contact; the API sees who it is", async () => {
  const token = await signJwt(key, claims());
  const res = await send(envoy.port, {
    path: "/v1/contacts/42",
    host: "api.example.com",
    headers: { authorization: `Bearer ${token}`, "x-forwarded-for": "10.1.2.3" },
  });
  assert.equal(res.status, 200, res.body);
  const seen = upstreamSaw(res).headers;
  assert.deepEqual(seen.get("x-agentguard-agent"), ["spiffe://prod.example.com/agents/crm-assistant"]);
  assert.deepEqual(seen.get("x-agentguard-subject"), ["user:alice@example.com"]);
  assert.deepEqual(seen.get("x-agentguard-route"), ["read-contact"]);
});

test("the example policy refuses what it should", async () => {
  const token = await signJwt(key, claims());
  const ask = (target, headers = {}, method = "GET") =>
    send(envoy.port, { method, path: target, host: "api.example.com", headers: { "x-forwarded-for": "10.1.2.3", ...headers } });
  const bearer = { authorization: `Bearer ${token}` };

  const none = await ask("/v1/contacts/42");
  assert.equal(none.status, 401);
  assert.equal(none.headers["www-authenticate"], 'Bearer realm="api.example.com"');

  const outside = await ask("/v1/contacts/42", { ...bearer, "x-forwarded-for": "192.0.2.7" });
  assert.equal(outside.status, 403, outside.body);
  assert.equal(outside.json.reason, "network_not_allowed");


  const outsideScope = await ask("/v1/invoices/7/pay", bearer, "POST");
  assert.equal(outsideScope.json?.reason, "scope_insufficient", outsideScope.body);

  const traversal = await ask("/v1/contacts/../admin", bearer);
  assert.equal(traversal.status, 403);
  assert.equal(traversal.json.reason, "route_not_matched");
});

test("a payment needs a human approval bound to its body (Content-Digest)", async () => {
  // The policy allows an agent 4 payments in a burst: each part uses its own agent.
  const payer = (name) =>
    signJwt(key, claims({ scope: "crm.read payments.write", act: { sub: `spiffe://prod.example.com/agents/${name}` } }));
  let token = await payer("payer-1");
  const contentDigest = (body) => `sha-256=:${createHash("sha256").update(body).digest("base64")}:`;
  const pay = (body, { approval, digest = contentDigest(body) } = {}) =>
    send(envoy.port, {
      method: "POST",
      path: "/v1/invoices/981/pay",
      host: "api.example.com",
      headers: {
        authorization: `Bearer ${token}`,
        "x-forwarded-for": "10.1.2.3",
        "content-type": "application/json",
        "content-digest": digest,
        ...(approval ? { "x-agent-approval": approval } : {}),
      },
      body,
    });
  const approve = (challenge) =>
    signJwt(
      approver,
      {
        iss: "https://approvals.example.com",
        aud: "https://api.example.com",
        sub: "user:cfo@example.com",
        agent: challenge.agent,
        action_digest: challenge.action_digest,
        jti: `approval-${Math.random().toString(36).slice(2)}`,
        iat: nowSecs() - 5,
        exp: nowSecs() + 120,
      },
      "approval+jwt",
    );
  const body = '{"amount": 120, "currency": "EUR"}';
  const other = '{"amount": 9999, "currency": "EUR"}';

  // 1. No approval: the challenge's digest covers the declared body digest.
  const challenge = await pay(body);
  assert.equal(challenge.status, 403, challenge.body);
  assert.equal(challenge.json.decision, "approval_required");
  const action = `agentguard-action-v1\nPOST\napi.example.com\n/v1/invoices/981/pay\n\n${sha256(body)}\n`;
  assert.equal(challenge.json.action_digest, sha256(action));
  assert.equal(challenge.json.approval_endpoint, "https://approvals.example.com/bc-authorize");

  // 2. A human approves that action: the request goes through, body and all, once.
  const approval = await approve(challenge.json);
  const approved = await pay(body, { approval });
  assert.equal(approved.status, 200, approved.body);
  const seen = upstreamSaw(approved);
  assert.equal(seen.method, "POST");
  assert.equal(seen.body, body);
  assert.deepEqual(seen.headers.get("x-agentguard-route"), ["pay-invoice"]);
  assert.equal((await pay(body, { approval })).json?.reason, "approval_replayed");

  // 3. The approval does not fit another body, declared honestly...
  token = await payer("payer-2");
  const second = await approve((await pay(body)).json);
  const otherBody = await pay(other, { approval: second });
  assert.equal(otherBody.status, 403, otherBody.body);
  assert.match(otherBody.json.reason, /^approval_/);
  // ...or behind the approved body's digest: the body never reaches the API.
  token = await payer("payer-3");
  const third = await approve((await pay(body)).json);
  const lied = await pay(other, { approval: third, digest: contentDigest(body) });
  assert.equal(lied.status, 400, lied.body);
  assert.equal(lied.json.reason, "request_invalid");
  assert.match(lied.json.detail, /does not match its `Content-Digest`/);
  assert.equal(lied.headers["x-upstream"], undefined);
});
