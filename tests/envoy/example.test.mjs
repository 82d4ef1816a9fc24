// The example users start from: examples/envoy/envoy.yaml, run as written
// (only its three ports and the filter's path are rewritten for the test),
// with the example policy it embeds and tokens minted with the example key.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { createHash } from "node:crypto";

import { signJwt } from "../vectors/mint.mjs";
import { ROOT, WASM, startEnvoy, startUpstream, send, upstreamSaw, nowSecs } from "./harness.mjs";

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
  const file = path.join(mkdtempSync(path.join(tmpdir(), "agentguard-example-")), "envoy.yaml");
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

test("a payment needs a human approval bound to the exact body", async () => {
  const payer = await signJwt(key, claims({ scope: "crm.read payments.write" }));
  const pay = (body, approval) =>
    send(envoy.port, {
      method: "POST",
      path: "/v1/invoices/981/pay",
      host: "api.example.com",
      headers: {
        authorization: `Bearer ${payer}`,
        "x-forwarded-for": "10.1.2.3",
        "content-type": "application/json",
        ...(approval ? { "x-agent-approval": approval } : {}),
      },
      body,
    });
  const body = '{"amount": 120, "currency": "EUR"}';

  // 1. No approval: the challenge's digest covers the body Envoy buffered.
  const challenge = await pay(body);
  assert.equal(challenge.status, 403, challenge.body);
  assert.equal(challenge.json.decision, "approval_required");
  const action = `agentguard-action-v1\nPOST\napi.example.com\n/v1/invoices/981/pay\n\n${sha256(body)}\n`;
  assert.equal(challenge.json.action_digest, sha256(action));
  assert.equal(challenge.json.approval_endpoint, "https://approvals.example.com/bc-authorize");

  // 2. A human approves that action; the approval does not fit another body.
  const approval = await signJwt(
    approver,
    {
      iss: "https://approvals.example.com",
      aud: "https://api.example.com",
      sub: "user:cfo@example.com",
      agent: challenge.json.agent,
      action_digest: challenge.json.action_digest,
      jti: `approval-${Math.random().toString(36).slice(2)}`,
      iat: nowSecs() - 5,
      exp: nowSecs() + 120,
    },
    "approval+jwt",
  );
  const tampered = await pay('{"amount": 9999, "currency": "EUR"}', approval);
  assert.equal(tampered.status, 403, tampered.body);
  assert.notEqual(tampered.json.decision, "allow");

  // 3. The approved request goes through, body and all.
  const approved = await pay(body, approval);
  assert.equal(approved.status, 200, approved.body);
  assert.equal(upstreamSaw(approved).method, "POST");
  assert.deepEqual(upstreamSaw(approved).headers.get("x-agentguard-route"), ["pay-invoice"]);
  assert.equal(upstreamSaw(approved).body, body);

  // 4. Approvals are single-use.
  const again = await pay(body, approval);
  assert.equal(again.json?.reason, "approval_replayed", again.body);
});
