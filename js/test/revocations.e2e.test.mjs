// The policy's `revocation_list` end to end in the real Workers runtime
// (workerd): the gateway (js/worker/workerd.capnp) fetches the list from a
// server on 127.0.0.1 and refreshes it in the background (ctx.waitUntil), in
// real time with `refresh: 1s`. Before the list is reachable: 503
// state_unavailable with Retry-After; then a listed token is 401
// revoked_token and an updated list takes effect; the list host down: the
// last list until max_stale, then 503, and back. In Durable Object mode
// (js/test/fixtures/durable.capnp) the agents' objects, in another isolate,
// load the list themselves.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";

import { signJwt } from "../../tests/vectors/mint.mjs";
import { freePort, generateKey, root, send, startGateway, startOrigin, startRevocationListServer, startWorkerd } from "./helpers.mjs";

const ISS = "https://sts.test";
const AUD = "https://api.test";
const nowS = () => Math.floor(Date.now() / 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const reason = (res) => JSON.parse(res.text).reason;

/** Calls `attempt` every 100 ms until `done(result)`, for at most `ms`; returns the last result. */
async function until(attempt, done, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const result = await attempt();
    if (done(result) || Date.now() > deadline) return result;
    await sleep(100);
  }
}

async function setup(list) {
  const key = await generateKey("EdDSA", "k1");
  const listServer = await startRevocationListServer(list);
  const claims = (c) => ({ iss: ISS, aud: AUD, sub: "user:alice", iat: nowS(), exp: nowS() + 600, ...c });
  const token = (jti, c = {}) => signJwt(key.privateJwk, claims({ client_id: "crm-agent", scope: "crm.read", jti, ...c }));
  const policy = (revocationList) => ({
    realm: "api.test",
    issuers: [{ iss: ISS, audiences: [AUD], algorithms: ["EdDSA"], jwks: { keys: [key.publicJwk] }, max_lifetime: "1h" }],
    routes: [
      { id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] },
      { id: "agentguard-stats", methods: ["GET"], path: "/_agentguard/stats", scopes: ["agentguard.admin"] },
      { id: "agentguard-lift", methods: ["POST"], path: "/_agentguard/suspensions/lift", scopes: ["agentguard.admin"] },
    ],
    revocation_list: { uri: listServer.url, ...revocationList },
  });
  return { listServer, token, policy };
}

describe("revocation_list: the gateway in workerd", () => {
  let origin;
  let gateway;
  let listServer;
  let token;
  const get = (tok) => send(`${gateway.url}/v1/contacts/1`, { headers: { host: "api.test", authorization: `Bearer ${tok}` } });

  before(async () => {
    let policy;
    ({ listServer, token, policy } = await setup({ jti: ["jti-listed"] }));
    listServer.state.down = true; // not reachable at first
    origin = await startOrigin();
    gateway = await startGateway({
      policyText: JSON.stringify(policy({ refresh: "1s", max_stale: "4s" })),
      originPort: origin.port,
    });
  });
  after(async () => {
    await gateway?.stop();
    await origin?.close();
    await listServer?.close();
  });

  test("before the list is reachable: 503 state_unavailable, Retry-After: 1, a log line naming the URL", async () => {
    const res = await get(await token("jti-a"));
    assert.equal(res.status, 503, res.text);
    assert.equal(reason(res), "state_unavailable");
    assert.equal(res.headers["retry-after"], "1");
    assert.match(JSON.parse(res.text).detail, /has not been loaded yet/);
    assert.ok(JSON.parse(res.text).detail.includes(listServer.url), res.text);
    assert.ok(listServer.state.hits >= 1, "the gateway tried to fetch it");
    assert.ok(
      gateway.logs.some((l) => l.includes(`revocation list ${listServer.url}: fetch failed (HTTP 503)`)),
      gateway.logs.join("\n"),
    );
    assert.equal(origin.seen.length, 0);
  });

  test("the list served: a listed jti is 401 revoked_token, another token reaches the origin", async () => {
    listServer.state.down = false;
    const listed = await token("jti-listed");
    const res = await until(() => get(listed), (r) => r.status !== 503);
    assert.equal(res.status, 401, res.text);
    assert.equal(reason(res), "revoked_token");
    const ok = await get(await token("jti-b"));
    assert.equal(ok.status, 200, ok.text);
    assert.equal(listServer.state.requests.at(-1).accept, "application/json");
  });

  test("an updated list takes effect after `refresh`, without a request waiting for it", async () => {
    const t = await token("jti-later");
    assert.equal((await get(t)).status, 200);
    const hits = listServer.state.hits;
    listServer.state.list = { jti: ["jti-listed", "jti-later"] };
    const started = Date.now();
    const res = await until(() => get(t), (r) => r.status === 401);
    assert.equal(res.status, 401, res.text);
    assert.equal(reason(res), "revoked_token");
    assert.ok(Date.now() - started < 5_000);
    assert.ok(listServer.state.hits > hits);
    // Unchanged lists were answered 304 (If-None-Match with the ETag).
    assert.ok(listServer.state.requests.some((r) => r.ifNoneMatch), JSON.stringify(listServer.state.requests.slice(-3)));
  });

  test("the list host down: the last list holds until max_stale (4 s), then 503; back up, it loads again", async () => {
    const [listed, other] = [await token("jti-listed"), await token("jti-c")];
    listServer.state.down = true;
    const downAt = Date.now();
    assert.equal((await get(listed)).status, 401);
    assert.equal((await get(other)).status, 200);
    await sleep(1_500);
    assert.equal((await get(other)).status, 200, "within max_stale: the last list");
    const res = await until(() => get(other), (r) => r.status === 503, 10_000);
    assert.equal(res.status, 503, res.text);
    assert.equal(reason(res), "state_unavailable");
    assert.match(JSON.parse(res.text).detail, /was loaded \d+ s ago, longer than `revocation_list.max_stale` \(4 s\) allows/);
    assert.ok(Date.now() - downAt >= 3_000, "not before max_stale");
    assert.ok(
      gateway.logs.some((l) => l.includes(`revocation list ${listServer.url}: refresh failed (HTTP 503); the list fetched`)),
      gateway.logs.join("\n"),
    );
    listServer.state.down = false;
    const back = await until(() => get(other), (r) => r.status === 200);
    assert.equal(back.status, 200, back.text);
    assert.equal((await get(listed)).status, 401);
  });

  test("a bad document: the last good list stays, and one log line says why", async () => {
    listServer.state.raw = '{"jti": ["jti-listed"], "users": ["x"]}';
    const logged = () => gateway.logs.some((l) => l.includes("revocation list refused, the last good list (2 entries) stays in force"));
    const fresh = await token("jti-d");
    await until(() => get(fresh), () => logged());
    assert.ok(logged(), gateway.logs.join("\n"));
    assert.ok(gateway.logs.some((l) => l.includes("users: unknown field `users`")));
    assert.equal((await get(await token("jti-later"))).status, 401, "the last good list is in force");
    listServer.state.raw = null;
  });
});

describe("revocation_list: Durable Object mode in workerd", () => {
  let origin;
  let workerd;
  let listServer;
  let token;
  let urlA;
  let urlB;
  const get = (base, path, tok) => send(`${base}${path}`, { headers: { host: "api.test", authorization: `Bearer ${tok}` } });

  before(async () => {
    let policy;
    ({ listServer, token, policy } = await setup({ jti: ["jti-listed"] }));
    origin = await startOrigin();
    const [portA, portB] = [await freePort(), await freePort()];
    workerd = await startWorkerd({
      config: `${root}js/test/fixtures/durable.capnp`,
      port: portA,
      args: ["--socket-addr", `a=127.0.0.1:${portA}`, "--socket-addr", `b=127.0.0.1:${portB}`, "--external-addr", `origin=127.0.0.1:${origin.port}`],
      env: { AGENTGUARD_POLICY: JSON.stringify(policy({ refresh: "1s", max_stale: "1m" })) },
    });
    urlA = `http://127.0.0.1:${portA}`;
    urlB = `http://127.0.0.1:${portB}`;
  });
  after(async () => {
    await workerd?.stop();
    await origin?.close();
    await listServer?.close();
  });

  test("decided in the agent's object: a listed token is 401 revoked_token; an updated list takes effect there", async () => {
    const listed = await token("jti-listed");
    const res = await get(urlA, "/v1/contacts/1", listed);
    assert.equal(res.status, 401, res.text);
    assert.equal(reason(res), "revoked_token");
    const later = await token("jti-later");
    assert.equal((await get(urlB, "/v1/contacts/1", later)).status, 200);
    listServer.state.list = { jti: ["jti-listed", "jti-later"] };
    const after = await until(() => get(urlB, "/v1/contacts/1", later), (r) => r.status === 401);
    assert.equal(after.status, 401, after.text);
    assert.equal(reason(after), "revoked_token");
  });

  test("the agent's stats report the object's list", async () => {
    const admin = await token("jti-admin", { client_id: "ops", scope: "agentguard.admin" });
    const res = await get(urlA, `/_agentguard/stats?agent=crm-agent`, admin);
    assert.equal(res.status, 200, res.text);
    const body = JSON.parse(res.text);
    assert.equal(body.scope, "agent");
    assert.equal(body.revocationList.uri, listServer.url);
    assert.equal(body.revocationList.entries, 2);
    assert.ok(Date.now() - body.revocationList.loadedAtMs < 60_000);
    assert.equal(body.revocationList.lastError, null);
  });
});
