// A breaker revocation outlives the runtime: the agent's Durable Object keeps
// its trip in durable storage (here workerd's on-disk storage), so after
// workerd restarts — every isolate and every object's memory gone — the
// agent is still revoked until its cooldown ends or an operator lifts it.
// Without the storage the restart would have ended the revocation early.
// The same for a used approval: after a restart it is still used (single use
// means once), where an engine with a fresh replay cache would let it pass.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { signJwt } from "../../tests/vectors/mint.mjs";
import { freePort, generateKey, root, send, startOrigin, startWorkerd } from "./helpers.mjs";

const ISS = "https://sts.test";
const AUD = "https://api.test";
const BOT = "spiffe://test/agents/looping-bot";
const PAYER = "spiffe://test/agents/payer";
const nowS = () => Math.floor(Date.now() / 1000);

describe("shared state survives a restart: breaker trips and used approvals are kept in Durable Object storage", () => {
  let origin;
  let dir;
  let policy;
  let approver;
  const tokens = {};

  const start = async () => {
    const port = await freePort();
    const workerd = await startWorkerd({
      config: `${root}js/test/fixtures/durable-disk.capnp`,
      port,
      args: [
        "--socket-addr", `a=127.0.0.1:${port}`,
        "--external-addr", `origin=127.0.0.1:${origin.port}`,
        "--directory-path", `state-disk=${dir}`,
      ],
      env: { AGENTGUARD_POLICY: JSON.stringify(policy) },
    });
    return { ...workerd, url: `http://127.0.0.1:${port}` };
  };
  const call = (gw, path, token, init = {}) =>
    send(gw.url + path, { ...init, headers: { host: "api.test", authorization: `Bearer ${token}`, ...init.headers } });
  const reason = (res) => JSON.parse(res.text).reason;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "agentguard-do-"));
    const issuer = await generateKey("EdDSA", "k1");
    approver = await generateKey("EdDSA", "ap1");
    origin = await startOrigin();
    policy = {
      realm: "api.test",
      issuers: [{ iss: ISS, audiences: [AUD], algorithms: ["EdDSA"], jwks: { keys: [issuer.publicJwk] }, max_lifetime: "10m" }],
      routes: [
        { id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] },
        { id: "agentguard-lift", methods: ["POST"], path: "/_agentguard/suspensions/lift", scopes: ["agentguard.admin"] },
        { id: "pay", methods: ["POST"], path: "/pay/invoices/{id}", scopes: ["payments.write"], risk: "high" },
      ],
      circuit_breaker: { window: "1m", max_requests: 4, cooldown: "15m" },
      approval: {
        issuer: "https://approvals.test", audiences: [AUD], algorithms: ["EdDSA"],
        jwks: { keys: [approver.publicJwk] }, endpoint: "https://approvals.test/bc-authorize",
      },
    };
    const claims = (c) => ({ iss: ISS, aud: AUD, iat: nowS(), exp: nowS() + 300, jti: crypto.randomUUID(), ...c });
    tokens.bot = await signJwt(issuer.privateJwk, claims({ sub: "user:alice", client_id: "crm", act: { sub: BOT }, scope: "crm.read" }));
    tokens.admin = await signJwt(issuer.privateJwk, claims({ sub: "ops:carol", client_id: "ops", scope: "agentguard.admin" }));
    tokens.payer = await signJwt(issuer.privateJwk, claims({ sub: "user:bob", client_id: "billing", act: { sub: PAYER }, scope: "payments.write" }));
  });

  after(async () => {
    await origin?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("tripped, restarted, still revoked; lifted, restarted, allowed", async () => {
    let gw = await start();
    try {
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await call(gw, "/v1/contacts/1", tokens.bot)).status);
      assert.deepEqual(statuses.slice(0, 4), [200, 200, 200, 200]);
      const tripped = await call(gw, "/v1/contacts/1", tokens.bot);
      assert.equal(tripped.status, 403);
      assert.equal(reason(tripped), "agent_suspended");
    } finally {
      await gw.stop();
    }
    assert.ok(readdirSync(dir, { recursive: true }).length > 0, "the objects wrote to disk");

    // A new workerd process: fresh isolates, no engine has seen this agent.
    gw = await start();
    try {
      const after = await call(gw, "/v1/contacts/1", tokens.bot);
      assert.equal(after.status, 403, after.text);
      assert.equal(reason(after), "agent_suspended", "the revocation survived the restart");
      assert.ok(Number(after.headers["retry-after"]) > 800, `about the 15 min cooldown left: ${after.headers["retry-after"]}`);

      const lift = await call(gw, "/_agentguard/suspensions/lift", tokens.admin, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ agent: BOT }),
      });
      assert.equal(lift.status, 200, lift.text);
      assert.equal(JSON.parse(lift.text).lifted, true);
      assert.equal((await call(gw, "/v1/contacts/1", tokens.bot)).status, 200);
    } finally {
      await gw.stop();
    }

    // The lift is durable too.
    gw = await start();
    try {
      assert.equal((await call(gw, "/v1/contacts/1", tokens.bot)).status, 200);
    } finally {
      await gw.stop();
    }
  });

  test("an approval used, restarted: still used (approval_replayed), not a second payment", async () => {
    const pay = (gw, approval) =>
      call(gw, "/pay/invoices/981", tokens.payer, {
        method: "POST",
        headers: { "content-type": "application/json", ...(approval ? { "x-agent-approval": approval } : {}) },
        body: '{"amount": 1500}',
      });
    let gw = await start();
    let approval;
    try {
      const asked = await pay(gw);
      assert.equal(asked.status, 403, asked.text);
      assert.equal(reason(asked), "approval_required");
      const digest = JSON.parse(asked.text).action_digest;
      approval = await signJwt(
        approver.privateJwk,
        { iss: "https://approvals.test", aud: AUD, sub: "user:cfo", agent: PAYER, action_digest: digest,
          iat: nowS(), exp: nowS() + 300, jti: crypto.randomUUID() },
        "approval+jwt",
      );
      const paid = await pay(gw, approval);
      assert.equal(paid.status, 200, paid.text);
      const again = await pay(gw, approval);
      assert.equal(again.status, 403);
      assert.equal(reason(again), "approval_replayed");
    } finally {
      await gw.stop();
    }

    // Every isolate gone: the object puts the approval it used back into the new engine.
    gw = await start();
    try {
      const replayed = await pay(gw, approval);
      assert.equal(replayed.status, 403, replayed.text);
      assert.equal(reason(replayed), "approval_replayed", "the approval stayed used across the restart");
    } finally {
      await gw.stop();
    }
  });
});
