// Decision events from a real Envoy match the requests made: a scripted
// sequence (allows, refusals of several kinds, a 429, a revocation, an
// approval challenge) goes through the filter, and the `decision {json}`
// lines Envoy logged are parsed back: one per request, in order, with the
// decision, status, reason codes, route id, method and path the script
// expects, the agent only where a token verified, the limit that refused the
// 429, the approval digest of the challenge, a decision time, and never a
// raw token.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";

import { loadVectors } from "../vectors/mint.mjs";
import { ROOT, startEnvoy, startUpstream, bootstrap, wasmFilter, send, nowSecs, eventually, agentToken } from "./harness.mjs";

const { policy } = loadVectors();
const schema = JSON.parse(readFileSync(path.join(ROOT, "schema/decision-event.schema.json"), "utf8"));

let upstream;
let envoy;

before(async () => {
  upstream = await startUpstream();
  const p = structuredClone(policy);
  p.limits = [{ id: "reads", per: "agent", rate: "3/1m", burst: 3, routes: ["read-contacts"] }];
  envoy = await startEnvoy(bootstrap({ httpFilters: [wasmFilter(JSON.stringify(p))], upstreamPort: upstream.port }));
});

after(async () => {
  await envoy?.stop();
  await upstream?.close();
});

const token = (extra = {}) => agentToken("event-bot", extra);

/** The decision events Envoy logged after output offset `from`. */
function eventsSince(from) {
  return envoy
    .output()
    .slice(from)
    .split("\n")
    .filter((l) => l.includes("agentguard: decision {"))
    .map((l) => JSON.parse(l.slice(l.indexOf("decision {") + "decision ".length)));
}

test("the events logged match the scripted requests one for one", async () => {
  const valid = await token();
  const expired = await token({ iat: nowSecs() - 600, exp: nowSecs() - 120 });
  const revoked = await token({ jti: "revoked-jti-1" });
  const payer = await token({ scope: "payments.write" });
  const bearer = (t) => ({ authorization: `Bearer ${t}` });
  const script = [
    // [request, [decision, status, reasons, route, whether the event names the
    // agent (its token's signature verified, whatever failed after)]]
    [{ path: "/v1/contacts/1", headers: bearer(valid) }, ["allow", 200, [], "read-contacts", true]],
    [{ path: "/v1/contacts/2" }, ["deny", 401, ["credential_missing"], "read-contacts", false]],
    [{ path: "/v1/contacts/3", headers: bearer(expired) }, ["deny", 401, ["token_expired"], "read-contacts", true]],
    [{ method: "POST", path: "/v1/drafts", headers: bearer(valid), body: "{}" }, ["deny", 403, ["scope_insufficient"], "draft-email", true]],
    [{ path: "/v1/nowhere", headers: bearer(valid) }, ["deny", 403, ["route_not_matched"], undefined, false]],
    [{ path: "/v1/contacts/4?q=secret-query-value", headers: bearer(valid) }, ["allow", 200, [], "read-contacts", true]],
    [{ path: "/v1/contacts/5", headers: bearer(valid) }, ["allow", 200, [], "read-contacts", true]],
    [{ path: "/v1/contacts/6", headers: bearer(valid) }, ["deny", 429, ["rate_limited"], "read-contacts", true]],
    [{ path: "/v1/contacts/7", headers: bearer(revoked) }, ["revoked", 401, ["revoked_token"], "read-contacts", true]],
    [{ method: "POST", path: "/v1/payments", headers: bearer(payer) }, ["approval_required", 403, ["approval_required"], "pay", true]],
  ];

  await sleep(300);
  const from = envoy.output().length;
  for (const [req, [, status]] of script) {
    const res = await send(envoy.port, req);
    assert.equal(res.status, status, `${req.method ?? "GET"} ${req.path}: ${res.body}`);
  }
  const events = await eventually(() => {
    const seen = eventsSince(from);
    return seen.length >= script.length && seen;
  }, { what: `${script.length} decision lines` });

  assert.equal(events.length, script.length, "one event per request, no more");
  for (const [i, [req, [decision, status, reasons, route, hasAgent]]] of script.entries()) {
    const e = events[i];
    const what = `event ${i} (${req.method ?? "GET"} ${req.path})`;
    assert.equal(e.v, 1, what);
    assert.equal(e.decision, decision, what);
    assert.equal(e.status, status, what);
    assert.deepEqual(e.reasons, reasons, what);
    assert.equal(e.route, route, what);
    assert.equal(e.method, req.method ?? "GET", what);
    assert.equal(e.path, req.path.split("?")[0], `${what}: the path without its query`);
    assert.equal(e.host, "api.test", what);
    assert.equal(e.source_ip, "127.0.0.1", what);
    assert.ok(Math.abs(e.time_ms - Date.now()) < 60_000, what);
    assert.ok(Number.isInteger(e.duration_us) && e.duration_us >= 0, `${what}: duration_us ${e.duration_us}`);
    if (hasAgent) {
      assert.equal(e.agent?.agent, "spiffe://test/agents/event-bot", what);
      assert.match(e.agent.token_hash, /^[A-Za-z0-9_-]{16}$/, what);
    } else {
      assert.equal(e.agent?.agent, undefined, `${what}: no verified agent`);
    }
    // Only the fields the schema knows.
    for (const key of Object.keys(e)) assert.ok(key in schema.properties, `${what}: unknown field ${key}`);
    for (const key of schema.required) assert.ok(key in e, `${what}: missing ${key}`);
  }
  assert.equal(events[7].limit, "reads", "the 429 names its limit");
  assert.match(events[9].approval_digest, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(events.filter((e) => e.cache_hit).length >= 4, true, "the reused token is a cache hit");

  const lines = envoy.output().slice(from);
  for (const secret of [valid, expired, payer, "secret-query-value"]) {
    assert.ok(!lines.includes(secret), "no token and no query value in the log");
  }
});

test("the policy's log settings decide which events are written", async () => {
  const p = structuredClone(policy);
  p.log = { outcomes: ["deny", "revoked"], headers: ["user-agent"] };
  const quiet = await startEnvoy(bootstrap({ httpFilters: [wasmFilter(JSON.stringify(p))], upstreamPort: upstream.port }));
  try {
    const from = quiet.output().length;
    const headers = { authorization: `Bearer ${await token()}`, "user-agent": "events-test/1" };
    assert.equal((await send(quiet.port, { path: "/v1/contacts/1", headers })).status, 200);
    assert.equal((await send(quiet.port, { path: "/v1/contacts/2", headers: { "user-agent": "events-test/1" } })).status, 401);
    await sleep(500);
    const lines = quiet.output().slice(from).split("\n").filter((l) => l.includes("agentguard: decision {"));
    assert.equal(lines.length, 1, lines.join("\n"));
    const e = JSON.parse(lines[0].slice(lines[0].indexOf("decision {") + "decision ".length));
    assert.deepEqual([e.decision, e.reasons], ["deny", ["credential_missing"]]);
    assert.deepEqual(e.headers, { "user-agent": "events-test/1" }, "allow-listed headers are copied");
  } finally {
    await quiet.stop();
  }
});

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
