// Per-agent state shared by Envoy's worker threads (proxy-wasm shared data),
// and the operator endpoints that read and lift it. Envoy runs with
// `--concurrency 4` (four Wasm VMs, one per worker) and every request goes
// on a new connection, so requests spread over the workers; the decision log
// lines carry Envoy's thread id (`[%t]`), which shows that they did.
//
// - one rate limit (5/1m) holds across workers: exactly 5 of 12 allowed;
// - a DPoP proof used once is refused on every other connection;
// - the circuit breaker trips on requests spread over workers, and the
//   agent is suspended on all of them; an operator lists and lifts the
//   suspension through the filter's own endpoints (admin-scoped routes), and
//   the agent gets in again everywhere;
// - with `"shared_state": false` the same 12 requests get more than 5
//   through (each worker has its own bucket), so the first test can fail.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { webcrypto as crypto, createHash } from "node:crypto";

import { loadVectors } from "../vectors/mint.mjs";
import { startEnvoy, startUpstream, bootstrap, wasmFilter, send, nowSecs, agentToken } from "./harness.mjs";

const { policy } = loadVectors();
const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const sha256 = (text) => createHash("sha256").update(text).digest();

const statePolicy = () => {
  const p = structuredClone(policy);
  p.routes.push(
    { id: "agentguard-lift", methods: ["POST"], path: "/_agentguard/suspensions/lift", scopes: ["agentguard.admin"] },
    { id: "agentguard-suspensions", methods: ["GET"], path: "/_agentguard/suspensions", scopes: ["agentguard.admin"] },
  );
  // Reads of contacts: 5 per minute per agent. The breaker: more than 12
  // requests in 10 s by one agent (any route) revokes it for 10 minutes.
  p.limits = [{ id: "reads", per: "agent", rate: "5/1m", burst: 5, routes: ["read-contacts"] }];
  p.circuit_breaker = { window: "10s", max_requests: 12, cooldown: "10m" };
  return p;
};
const config = (extra = {}) =>
  JSON.stringify({ policy: statePolicy(), lift_route: "agentguard-lift", suspensions_route: "agentguard-suspensions", ...extra });

let upstream;
let envoy;

before(async () => {
  upstream = await startUpstream();
  envoy = await startEnvoy(bootstrap({ httpFilters: [wasmFilter(config())], upstreamPort: upstream.port }), {
    concurrency: 4,
  });
});

after(async () => {
  await envoy?.stop();
  await upstream?.close();
});

const token = agentToken;

/** Envoy thread ids of the decision lines for `agent` logged since `from` (an output offset). */
function threadsFor(server, agent, from) {
  const threads = new Set();
  for (const line of server.output().slice(from).split("\n")) {
    const m = /^\[[A-Za-z]\]\[wasm\]\[(\d+)\] .*decision \{/.exec(line);
    if (m && line.includes(`"agent":"spiffe://test/agents/${agent}"`)) threads.add(m[1]);
  }
  return threads;
}

async function twelveReads(server, agent) {
  const from = server.output().length;
  const bearer = await token(agent);
  const statuses = [];
  for (let i = 0; i < 12; i++) {
    // `send` opens a new connection per request (no keep-alive agent).
    const res = await send(server.port, { path: `/v1/contacts/${i}`, headers: { authorization: `Bearer ${bearer}` } });
    statuses.push(res.status);
    if (res.status === 429) assert.equal(res.json.reason, "rate_limited");
  }
  await new Promise((r) => setTimeout(r, 200)); // the last log lines
  return { statuses, threads: threadsFor(server, agent, from) };
}

test("one rate limit holds across four workers: 5 of 12 allowed", async () => {
  const { statuses, threads } = await twelveReads(envoy, "reader");
  assert.ok(threads.size >= 2, `requests must spread over workers to prove anything (threads: ${[...threads]})`);
  assert.equal(statuses.filter((s) => s === 200).length, 5, `statuses: ${statuses}`);
  assert.equal(statuses.filter((s) => s === 429).length, 7, `statuses: ${statuses}`);
});

test("a DPoP proof used once is refused on every other connection", async () => {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", pair.publicKey);
  const jkt = b64url(sha256(JSON.stringify({ crv, kty, x, y })));
  const bound = await token("dpop-agent", { cnf: { jkt } });
  const header = { typ: "dpop+jwt", alg: "ES256", jwk: { kty, crv, x, y } };
  const claims = {
    htm: "GET",
    htu: "https://api.test/v1/contacts/42",
    iat: nowSecs(),
    jti: b64url(crypto.getRandomValues(new Uint8Array(12))),
    ath: b64url(sha256(bound)),
  };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, Buffer.from(input));
  const proof = `${input}.${b64url(new Uint8Array(sig))}`;

  const from = envoy.output().length;
  const read = () =>
    send(envoy.port, { path: "/v1/contacts/42", headers: { authorization: `DPoP ${bound}`, dpop: proof } });
  const first = await read();
  assert.equal(first.status, 200, first.body);
  const replays = [];
  for (let i = 0; i < 6; i++) replays.push(await read());
  for (const r of replays) {
    assert.equal(r.status, 401, r.body);
    assert.equal(r.json.reason, "dpop_proof_replayed");
  }
  await new Promise((r) => setTimeout(r, 200));
  const threads = threadsFor(envoy, "dpop-agent", from);
  assert.ok(threads.size >= 2, `the replays must reach other workers (threads: ${[...threads]})`);
});

test("the breaker suspends an agent on every worker; an operator lists and lifts it", async () => {
  const agent = "looper";
  const bearer = await token(agent);
  const admin = await token("operator", { scope: "agentguard.admin" });
  const from = envoy.output().length;
  const statuses = [];
  // Drafts (no rate limit; refused for scope, which the breaker counts too):
  // the 13th request in 10 s trips the breaker.
  for (let i = 0; i < 15; i++) {
    const res = await send(envoy.port, { method: "POST", path: "/v1/drafts", headers: { authorization: `Bearer ${bearer}` }, body: "{}" });
    statuses.push(res.json?.reason ?? res.status);
  }
  assert.deepEqual(statuses.slice(0, 12), Array(12).fill("scope_insufficient"), `statuses: ${statuses}`);
  assert.equal(statuses[12], "breaker_burst", `statuses: ${statuses}`);
  assert.deepEqual(statuses.slice(13), ["agent_suspended", "agent_suspended"]);
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(threadsFor(envoy, agent, from).size >= 2, "the requests spread over workers");

  // Suspended everywhere: several new connections, all refused.
  for (let i = 0; i < 4; i++) {
    const res = await send(envoy.port, { path: "/v1/contacts/1", headers: { authorization: `Bearer ${bearer}` } });
    assert.equal(res.json?.reason, "agent_suspended", res.body);
  }

  // The operator endpoints: admin scope required, then list and lift.
  const list = (auth) => send(envoy.port, { path: "/_agentguard/suspensions", headers: auth ? { authorization: `Bearer ${auth}` } : {} });
  assert.equal((await list()).status, 401);
  const notAdmin = await list(await token("someone"));
  assert.equal(notAdmin.status, 403);
  assert.equal(notAdmin.json.reason, "scope_insufficient");
  const listed = await list(admin);
  assert.equal(listed.status, 200, listed.body);
  assert.equal(listed.json.scope, "envoy");
  const entry = listed.json.suspended.find((s) => s.agent === `spiffe://test/agents/${agent}`);
  assert.ok(entry, listed.body);
  assert.equal(entry.suspension.kind, "burst");
  assert.equal(listed.headers["x-upstream"], undefined, "the filter answers operator requests itself");

  const lift = (who, auth = admin) =>
    send(envoy.port, {
      method: "POST",
      path: `/_agentguard/suspensions/lift?agent=${encodeURIComponent(who)}`,
      headers: { authorization: `Bearer ${auth}` },
    });
  const lifted = await lift(`spiffe://test/agents/${agent}`);
  assert.equal(lifted.status, 200, lifted.body);
  assert.deepEqual(lifted.json, { scope: "envoy", agent: `spiffe://test/agents/${agent}`, lifted: true });
  assert.equal((await lift(`spiffe://test/agents/${agent}`)).json.lifted, false, "nothing left to lift");
  assert.equal((await lift("spiffe://test/agents/looper", await token("looper"))).status, 403, "agents cannot lift themselves");
  const noAgent = await send(envoy.port, { method: "POST", path: "/_agentguard/suspensions/lift", headers: { authorization: `Bearer ${admin}` } });
  assert.equal(noAgent.status, 400);

  // In again, on every worker (a clean window).
  for (let i = 0; i < 4; i++) {
    const res = await send(envoy.port, { path: "/v1/contacts/1", headers: { authorization: `Bearer ${bearer}` } });
    assert.equal(res.status, 200, res.body);
  }
  assert.equal((await list(admin)).json.suspended.length, 0);
});

test("with shared_state off, each worker has its own bucket (the first test can fail)", async () => {
  const local = await startEnvoy(
    bootstrap({ httpFilters: [wasmFilter(config({ shared_state: false }))], upstreamPort: upstream.port }),
    { concurrency: 4 },
  );
  try {
    const { statuses, threads } = await twelveReads(local, "reader-local");
    assert.ok(threads.size >= 2, `requests must spread over workers (threads: ${[...threads]})`);
    assert.ok(statuses.filter((s) => s === 200).length > 5, `statuses: ${statuses}`);
  } finally {
    await local.stop();
  }
});
