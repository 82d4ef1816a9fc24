// Shared per-agent state end to end in the real Workers runtime: two gateway
// Workers (separate isolates, separate engines) in one workerd process, both
// bound to ONE Durable Object namespace (js/test/fixtures/durable.capnp).
// Requests of one agent through either gateway see one rate limit and one
// circuit breaker; the agent revoked through one is revoked on both; an
// operator lifts the suspension through the endpoint; forged tokens naming the
// agent cost it nothing; the stats endpoint needs the admin route and its
// counters match the requests sent.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";

import { signJwt } from "../../tests/vectors/mint.mjs";
import { freePort, generateKey, root, send, startOrigin, startWorkerd } from "./helpers.mjs";

const ISS = "https://sts.test";
const AUD = "https://api.test";
const BOT = "spiffe://test/agents/bot";
const nowS = () => Math.floor(Date.now() / 1000);

describe("shared state: a Durable Object per agent, in workerd", () => {
  let origin;
  let workerd;
  let urlA;
  let urlB;
  let issuer;
  let forger;
  const tokens = {};

  before(async () => {
    issuer = await generateKey("EdDSA", "k1");
    forger = await generateKey("EdDSA", "k1"); // same kid, another key: a forgery
    origin = await startOrigin();
    const policy = {
      realm: "api.test",
      issuers: [{ iss: ISS, audiences: [AUD], algorithms: ["EdDSA"], jwks: { keys: [issuer.publicJwk] }, max_lifetime: "10m" }],
      routes: [
        { id: "ping", methods: ["GET"], path: "/v1/ping", scopes: ["crm.read"] },
        { id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] },
        { id: "agentguard-stats", methods: ["GET"], path: "/_agentguard/stats", scopes: ["agentguard.admin"] },
        { id: "agentguard-lift", methods: ["POST"], path: "/_agentguard/suspensions/lift", scopes: ["agentguard.admin"] },
      ],
      // 5 reads per agent; slow refill, so the test's timing cannot add a token.
      limits: [{ id: "reads", per: "agent", rate: "5/10m", routes: ["read"] }],
      circuit_breaker: { window: "1m", max_requests: 8, cooldown: "15m" },
    };
    const claims = (c) => ({ iss: ISS, aud: AUD, iat: nowS(), exp: nowS() + 300, jti: crypto.randomUUID(), ...c });
    const bot = claims({ sub: "user:alice", client_id: "crm", act: { sub: BOT }, scope: "crm.read" });
    tokens.bot = await signJwt(issuer.privateJwk, bot);
    tokens.forged = await signJwt(forger.privateJwk, bot);
    tokens.other = await signJwt(issuer.privateJwk, claims({ sub: "user:bob", client_id: "other-bot", scope: "crm.read" }));
    tokens.admin = await signJwt(issuer.privateJwk, claims({ sub: "ops:carol", client_id: "ops-console", scope: "agentguard.admin" }));

    const [portA, portB] = [await freePort(), await freePort()];
    workerd = await startWorkerd({
      config: `${root}js/test/fixtures/durable.capnp`,
      port: portA,
      args: [
        "--socket-addr", `a=127.0.0.1:${portA}`,
        "--socket-addr", `b=127.0.0.1:${portB}`,
        "--external-addr", `origin=127.0.0.1:${origin.port}`,
      ],
      env: { AGENTGUARD_POLICY: JSON.stringify(policy) },
    });
    urlA = `http://127.0.0.1:${portA}`;
    urlB = `http://127.0.0.1:${portB}`;
  });

  after(async () => {
    await workerd?.stop();
    await origin?.close();
  });

  const call = (base, path, token, init = {}) =>
    send(base + path, {
      ...init,
      headers: { host: "api.test", ...(token ? { authorization: `Bearer ${token}` } : {}), ...init.headers },
    });
  const reason = (res) => JSON.parse(res.text).reason;
  const via = (i) => (i % 2 === 0 ? urlA : urlB);

  // Requests made for the bot that the engine counts (verified), by outcome.
  const sent = { requests: 0, allowed: 0 };

  test("forged tokens naming the agent are refused and cost it nothing", async () => {
    for (let i = 0; i < 12; i++) {
      const res = await call(via(i), "/v1/contacts/1", tokens.forged);
      assert.equal(res.status, 401, res.text);
      assert.equal(reason(res), "token_signature_invalid");
    }
  });

  test("one rate limit across both gateways: 3 via A + 3 via B → the 6th is 429", async () => {
    const statuses = [];
    let last;
    for (const base of [urlA, urlA, urlA, urlB, urlB, urlB]) {
      last = await call(base, "/v1/contacts/1", tokens.bot);
      statuses.push(last.status);
      sent.requests += 1;
      if (last.status === 200) sent.allowed += 1;
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429], "12 forged requests before must not have drained the bucket");
    assert.equal(reason(last), "rate_limited");
    assert.ok(Number(last.headers["retry-after"]) > 0, `Retry-After: ${last.headers["retry-after"]}`);
    // Allowed requests reached the origin as the verified agent.
    assert.equal(origin.seen.at(-1).headers["x-agentguard-agent"], BOT);
    // Another agent has its own bucket.
    const other = await call(urlB, "/v1/contacts/1", tokens.other);
    assert.equal(other.status, 200, other.text);
  });

  test("the breaker trips through one gateway and the agent is revoked on both", async () => {
    // Requests 7 and 8 in the window are still only rate-limited; the 9th trips (max_requests 8).
    for (const base of [urlA, urlB]) {
      const res = await call(base, "/v1/contacts/1", tokens.bot);
      sent.requests += 1;
      assert.equal(res.status, 429, res.text);
    }
    const trip = await call(urlA, "/v1/contacts/1", tokens.bot);
    sent.requests += 1;
    assert.equal(trip.status, 403, trip.text);
    assert.equal(reason(trip), "breaker_burst");
    assert.equal(JSON.parse(trip.text).decision, "revoked");
    for (const base of [urlB, urlA]) {
      const res = await call(base, "/v1/ping", tokens.bot);
      sent.requests += 1;
      assert.equal(res.status, 403, res.text);
      assert.equal(reason(res), "agent_suspended");
      assert.ok(Number(res.headers["retry-after"]) > 800, "the cooldown's seconds left");
    }
    // Another agent is untouched.
    assert.equal((await call(urlA, "/v1/ping", tokens.other)).status, 200);
  });

  test("stats: refused without the admin route, exact per-agent counters with it", async () => {
    const path = `/_agentguard/stats?agent=${encodeURIComponent(BOT)}`;
    const anonymous = await call(urlB, path);
    assert.equal(anonymous.status, 401, anonymous.text);
    const notAdmin = await call(urlA, path, tokens.other);
    assert.equal(notAdmin.status, 403, notAdmin.text);
    assert.equal(reason(notAdmin), "scope_insufficient");

    for (const base of [urlA, urlB]) {
      const res = await call(base, path, tokens.admin);
      assert.equal(res.status, 200, res.text);
      const body = JSON.parse(res.text);
      assert.equal(body.scope, "agent");
      assert.equal(body.agent, BOT);
      // Every verified request of the bot, through either gateway; none of the 12 forged ones.
      assert.equal(body.stats.requests, sent.requests, res.text);
      assert.equal(body.stats.allowed, sent.allowed);
      assert.deepEqual(body.stats.denied, { rate_limited: 3, breaker_burst: 1, agent_suspended: 2 });
      assert.equal(body.stats.revocations, 3);
      assert.deepEqual(body.stats.routes, { read: 9, ping: 2 });
      assert.equal(body.suspended.length, 1);
      assert.equal(body.suspended[0].kind, "burst");
    }
  });

  test("the two gateways are separate isolates: their local stats differ", async () => {
    // Requests without a credential name no agent: each gateway decides them itself.
    for (let i = 0; i < 2; i++) assert.equal((await call(urlA, "/v1/contacts/1")).status, 401);
    const local = async (base) => {
      const res = await call(base, "/_agentguard/stats", tokens.admin);
      assert.equal(res.status, 200, res.text);
      const body = JSON.parse(res.text);
      assert.equal(body.scope, "isolate");
      return body.stats.reasons.credential_missing ?? 0;
    };
    // A: the two above; B: the anonymous stats request of the previous test.
    assert.equal(await local(urlA), 2);
    assert.equal(await local(urlB), 1);
  });

  test("an operator lifts the suspension through the endpoint; the agent is allowed again on both", async () => {
    const lift = (base, token, body = { agent: BOT }) =>
      call(base, "/_agentguard/suspensions/lift", token, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    assert.equal((await lift(urlA)).status, 401);
    const notAdmin = await lift(urlA, tokens.bot);
    assert.equal(notAdmin.status, 403, notAdmin.text);
    assert.equal((await call(urlA, "/v1/ping", tokens.bot)).status, 403, "still revoked");
    const bad = await lift(urlB, tokens.admin, { who: BOT });
    assert.equal(bad.status, 400, bad.text);

    const res = await lift(urlB, tokens.admin);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(JSON.parse(res.text), { scope: "agent", agent: BOT, lifted: true });
    for (const base of [urlA, urlB]) {
      const ping = await call(base, "/v1/ping", tokens.bot);
      assert.equal(ping.status, 200, ping.text);
    }
    // The read bucket is still empty: lifting a suspension does not refill a limit.
    assert.equal((await call(urlA, "/v1/contacts/1", tokens.bot)).status, 429);
    const again = await lift(urlA, tokens.admin);
    assert.equal(JSON.parse(again.text).lifted, false);
  });

  test("decision events are logged by the gateways, never with a token", () => {
    const events = workerd.logs.filter((l) => l.startsWith('{"v":1')).map((l) => JSON.parse(l));
    assert.ok(events.some((e) => e.decision === "revoked" && e.agent?.agent === BOT), workerd.logs.join("\n"));
    assert.ok(events.every((e) => !JSON.stringify(e).includes("eyJ")));
  });
});
