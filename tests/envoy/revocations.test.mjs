// Revocations pushed at run time to a running Envoy: an operator posts token
// ids, subjects, agents or key ids to the filter's own endpoint (an
// admin-scoped policy route), and every worker (`--concurrency 4`, one Wasm
// VM each, a new connection per request) refuses them within a tick, without
// a configuration push and without rebuilding the engine; the policy's own
// `revoked` lists stay in force.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { loadVectors, signJwt } from "../vectors/mint.mjs";
import { startEnvoy, startUpstream, bootstrap, wasmFilter, send, agentClaims } from "./harness.mjs";

const { keys, policy } = loadVectors();

const revokePolicy = () => {
  const p = structuredClone(policy);
  p.routes.push({ id: "agentguard-revoke", methods: ["POST"], path: "/_agentguard/revocations", scopes: ["agentguard.admin"] });
  return p;
};

let upstream;
let envoy;

before(async () => {
  upstream = await startUpstream();
  const config = JSON.stringify({ policy: revokePolicy(), revoke_route: "agentguard-revoke" });
  envoy = await startEnvoy(bootstrap({ httpFilters: [wasmFilter(config)], upstreamPort: upstream.port }), { concurrency: 4 });
});

after(async () => {
  await envoy?.stop();
  await upstream?.close();
});

/** A token for `agent` and its `jti` (pushes name it). */
const token = async (agent, extra = {}) => {
  const claims = agentClaims(agent, extra);
  return { t: await signJwt(keys.ed25519, claims), jti: claims.jti };
};
const read = (bearer) => send(envoy.port, { path: "/v1/contacts/1", headers: { authorization: `Bearer ${bearer}` } });
const push = (query, auth) =>
  send(envoy.port, { method: "POST", path: `/_agentguard/revocations?${query}`, headers: auth ? { authorization: `Bearer ${auth}` } : {} });

/** Every one of `n` new connections (spread over the workers) gets `reason` (or 200 when `reason` is null). */
async function everywhere(bearer, reason, n = 8) {
  for (let i = 0; i < n; i++) {
    const res = await read(bearer);
    if (reason === null) assert.equal(res.status, 200, res.body);
    else assert.equal(res.json?.reason, reason, res.body);
  }
}

test("a pushed jti, agent or subject is refused on every worker within a tick; others pass", async () => {
  const admin = (await token("operator", { scope: "agentguard.admin" })).t;
  const a = await token("bot-a");
  const b = await token("bot-b");
  const c = await token("bot-c", { sub: "user:carol" });
  const keep = await token("bot-keep");
  for (const x of [a, b, c, keep]) await everywhere(x.t, null, 4);

  // Only an admin may push, and a push must name something.
  assert.equal((await push(`jti=${a.jti}`)).status, 401);
  const notAdmin = await push(`jti=${a.jti}`, keep.t);
  assert.equal(notAdmin.status, 403);
  assert.equal(notAdmin.json.reason, "scope_insufficient");
  const empty = await push("jti=", admin);
  assert.equal(empty.status, 400, empty.body);
  assert.equal(empty.json.reason, "request_invalid");

  const pushed = await push(
    `jti=${encodeURIComponent(a.jti)}&agent=${encodeURIComponent("spiffe://test/agents/bot-b")}&sub=user%3Acarol`,
    admin,
  );
  assert.equal(pushed.status, 200, pushed.body);
  assert.equal(pushed.json.scope, "envoy");
  assert.deepEqual(pushed.json.pushed.jti, [a.jti]);
  assert.equal(pushed.headers["x-upstream"], undefined, "the filter answers operator requests itself");

  await new Promise((r) => setTimeout(r, 1500)); // one tick (1 s) on every worker
  await everywhere(a.t, "revoked_token");
  await everywhere(b.t, "revoked_agent");
  await everywhere(c.t, "revoked_subject");
  await everywhere(keep.t, null);

  // The policy's own lists stay in force next to the pushed ones: its revoked agent is still refused.
  const policyRevoked = policy.revoked.agents[0];
  assert.ok(policyRevoked, "the shared policy revokes an agent");
  const old = await token(policyRevoked.replace("spiffe://test/agents/", ""));
  await everywhere(old.t, "revoked_agent", 4);

  // A second push adds to the first.
  const more = await push(`jti=${encodeURIComponent(keep.jti)}`, admin);
  assert.deepEqual(more.json.pushed.jti.sort(), [a.jti, keep.jti].sort());
  await new Promise((r) => setTimeout(r, 1500));
  await everywhere(keep.t, "revoked_token");
  await everywhere(a.t, "revoked_token", 4);
});
