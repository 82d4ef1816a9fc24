// Keys by URL for more than access-token issuers: the approval service
// (`approval.jwks_uri`) and an attestation issuer
// (`attestation.issuers[].jwks_uri`) publish their JWKS on local servers
// (127.0.0.1); the filter fetches them through Envoy clusters (`jwks_cluster`,
// and `jwks_clusters` keyed by the attestation issuer) and verifies approvals
// and evidence with the fetched keys only.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { webcrypto as crypto } from "node:crypto";

import { loadVectors, signJwt } from "../vectors/mint.mjs";
import {
  bootstrap,
  wasmFilter,
  startEnvoy,
  startUpstream,
  startJwksServer,
  send,
  stats,
  nowSecs,
  eventually,
  agentToken,
  upstreamSaw,
} from "./harness.mjs";

const { policy, keys } = loadVectors();
const APPROVALS = "https://approvals.test";
const ATTEST = "https://attest.test";

/** A fresh Ed25519 signing key: `{private, public}` JWKs with `kid`. */
async function newKey(kid) {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  return {
    private: { ...jwk, kid, alg: "EdDSA" },
    public: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, kid, alg: "EdDSA", use: "sig" },
  };
}

const cleanup = [];
after(async () => {
  for (const stop of cleanup.reverse()) await stop();
});

/**
 * Starts Envoy with `configuration`, an upstream and one JWKS server per
 * cluster (`servers`: cluster name → JWKS document); resolves once every VM
 * (main thread and worker) has loaded the JWKS of each of `issuers`.
 */
async function setUp(configuration, servers, issuers) {
  const upstream = await startUpstream();
  cleanup.push(upstream.close);
  const started = {};
  for (const [cluster, doc] of Object.entries(servers)) {
    started[cluster] = await startJwksServer(doc);
    cleanup.push(started[cluster].close);
  }
  const envoy = await startEnvoy(
    bootstrap({
      httpFilters: [wasmFilter(JSON.stringify(configuration))],
      upstreamPort: upstream.port,
      clusters: Object.fromEntries(Object.entries(started).map(([name, s]) => [name, s.port])),
    }),
  );
  cleanup.push(envoy.stop);
  for (const iss of issuers) {
    const escaped = iss.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    const loaded = new RegExp(`^\\[\\w+\\]\\[wasm\\]\\[(\\d+)\\] .*loaded the JWKS of \`${escaped}\` from `, "gm");
    await eventually(() => new Set([...envoy.output().matchAll(loaded)].map((m) => m[1])).size >= 2, {
      timeoutMs: 10000,
      what: `both VMs to load the JWKS of ${iss}`,
    }).catch((e) => assert.fail(`${e.message}\n${envoy.output().slice(-3000)}`));
  }
  return { envoy, servers: started };
}

let serial = 0;

test("approval.jwks_uri: the approval service's keys are fetched and the approval loop completes", async () => {
  const approver = await newKey("approver-by-url");
  const p = structuredClone(policy);
  delete p.approval.jwks;
  p.approval.jwks_uri = `${APPROVALS}/.well-known/jwks.json`;
  const { envoy, servers } = await setUp(
    { policy: p, jwks_cluster: "approvals", jwks_refresh: "1h", jwks_cooldown: "1s" },
    { approvals: { keys: [approver.public] } },
    [APPROVALS],
  );
  assert.ok(servers.approvals.hits >= 2, "one fetch per VM");
  assert.ok(servers.approvals.paths.every((x) => x === "approvals.test /.well-known/jwks.json"), servers.approvals.paths.join());

  const token = await agentToken("payer", { scope: "crm.read payments.write" });
  const body = '{"amount": 120, "currency": "EUR", "to": "ACME"}';
  const pay = (approval) =>
    send(envoy.port, {
      method: "POST",
      path: "/v1/payments",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        ...(approval ? { "x-agent-approval": approval } : {}),
      },
      body,
    });
  const approve = (key, challenge) =>
    signJwt(
      key,
      {
        iss: APPROVALS,
        aud: "https://api.test",
        sub: "user:cfo",
        agent: challenge.agent,
        action_digest: challenge.action_digest,
        jti: `approval-by-url-${serial++}`,
        iat: nowSecs() - 5,
        exp: nowSecs() + 120,
      },
      "approval+jwt",
    );

  const challenge = await pay();
  assert.equal(challenge.status, 403, challenge.body);
  assert.equal(challenge.json.reason, "approval_required");
  assert.ok(challenge.json.action_digest);

  // Signed by a key the approval service does not publish (the shared
  // vectors' inline approver key, which this policy no longer names): refused.
  const stranger = await pay(await approve(keys.approver, challenge.json));
  assert.equal(stranger.status, 403, stranger.body);
  assert.equal(stranger.json.reason, "approval_invalid");
  assert.equal(stranger.headers["x-upstream"], undefined);

  // Signed by the published key: allowed, body intact.
  const approved = await pay(await approve(approver.private, challenge.json));
  assert.equal(approved.status, 200, approved.body);
  assert.equal(upstreamSaw(approved).body, body);
  const ok = (await stats(envoy)).values["wasmcustom.agentguard.jwks.fetch_ok"] ?? 0;
  assert.ok(ok >= 1, `jwks.fetch_ok counts the approval JWKS (${ok})`);

  // The approval service rotates to a key published after the last fetch
  // (the scheduled refresh is an hour away): the first approval signed with
  // it is refused, and refused approvals fetch the keys again (within the
  // cooldown), so the agent's retry goes through.
  const rotated = await newKey("approver-rotated");
  servers.approvals.set({ keys: [approver.public, rotated.public] });
  const hits = servers.approvals.hits;
  const again = await pay();
  assert.equal(again.json.reason, "approval_required", again.body);
  const first = await pay(await approve(rotated.private, again.json));
  assert.equal(first.json.reason, "approval_invalid", first.body);
  // Retries (each refusal may start a fetch once the 1 s cooldown allows).
  let retry;
  await eventually(
    async () => {
      retry = await pay(await approve(rotated.private, again.json));
      if (retry.status !== 200) assert.equal(retry.json.reason, "approval_invalid", retry.body);
      return retry.status === 200;
    },
    { timeoutMs: 8000, everyMs: 250, what: "the retry to pass with the rotated key" },
  ).catch(() => assert.fail(`retry: ${retry?.status} ${retry?.body}`));
  assert.equal(upstreamSaw(retry).body, body);
  assert.ok(servers.approvals.hits > hits, "the approval JWKS was fetched again");
});

test("attestation.issuers[].jwks_uri: evidence is verified with keys fetched through jwks_clusters", async () => {
  const attester = await newKey("attester-by-url");
  const digest = "sha256:" + "ab".repeat(32);
  const p = structuredClone(policy);
  p.attestation = {
    issuers: [
      { iss: ATTEST, kind: "attestation_result", audiences: ["https://api.test"], algorithms: ["EdDSA"], jwks_uri: `${ATTEST}/keys` },
    ],
    require: { claims: { image_digest: [digest] } },
  };
  // The attestation issuer has its own cluster; `jwks_cluster` is the default for the rest.
  const { envoy, servers } = await setUp(
    { policy: p, jwks_cluster: "unused", jwks_clusters: { [ATTEST]: "attest" }, jwks_refresh: "1h", jwks_cooldown: "1s" },
    { attest: { keys: [attester.public] }, unused: { keys: [] } },
    [ATTEST],
  );
  assert.ok(servers.attest.hits >= 2, "one fetch per VM");
  assert.ok(servers.attest.paths.every((x) => x === "attest.test /keys"), servers.attest.paths.join());
  assert.equal(servers.unused.hits, 0, "nothing else is fetched");

  const token = await agentToken("worker");
  const evidence = (key, extra = {}) =>
    signJwt(
      key,
      {
        iss: ATTEST,
        sub: "spiffe://test/agents/worker",
        aud: "https://api.test",
        iat: nowSecs() - 5,
        exp: nowSecs() + 300,
        image_digest: digest,
        ...extra,
      },
      "attestation-result+jwt",
    );
  const read = (ev) =>
    send(envoy.port, {
      path: "/v1/contacts/42",
      headers: { authorization: `Bearer ${token}`, ...(ev ? { "x-agent-attestation": ev } : {}) },
    });

  const missing = await read();
  assert.equal(missing.status, 403, missing.body);
  assert.equal(missing.json.reason, "attestation_missing");

  const stranger = await read(await evidence((await newKey("attester-by-url")).private));
  assert.equal(stranger.status, 403, stranger.body);
  assert.equal(stranger.json.reason, "attestation_invalid");

  const wrongImage = await read(await evidence(attester.private, { image_digest: "sha256:" + "cd".repeat(32) }));
  assert.equal(wrongImage.status, 403, wrongImage.body);
  assert.equal(wrongImage.json.reason, "attestation_claim_mismatch");

  const attested = await read(await evidence(attester.private));
  assert.equal(attested.status, 200, attested.body);
  assert.deepEqual(upstreamSaw(attested).headers.get("x-agentguard-agent"), ["spiffe://test/agents/worker"]);

  // The attestation issuer rotates to a key published after the last fetch
  // (the scheduled refresh is an hour away): refused evidence has the keys
  // fetched again, and the agent's retry goes through.
  const rotated = await newKey("attester-rotated");
  servers.attest.set({ keys: [attester.public, rotated.public] });
  const hits = servers.attest.hits;
  const first = await read(await evidence(rotated.private));
  assert.equal(first.json.reason, "attestation_invalid", first.body);
  let retry;
  await eventually(
    async () => {
      retry = await read(await evidence(rotated.private));
      if (retry.status !== 200) assert.equal(retry.json.reason, "attestation_invalid", retry.body);
      return retry.status === 200;
    },
    { timeoutMs: 8000, everyMs: 250, what: "the retry to pass with the rotated key" },
  ).catch(() => assert.fail(`retry: ${retry?.status} ${retry?.body}`));
  assert.ok(servers.attest.hits > hits, "the attestation keys were fetched again");
  assert.equal(servers.unused.hits, 0, "and nothing else");
});
