// The human-approval loop end to end in the real Workers runtime: the gateway
// (js/worker/, AGENTGUARD_HASH_BODY=true so approvals bind to the body) runs
// in workerd in front of a local origin. A POST to a `risk: high` route
// without an approval gets `approval_required` with the action digest (the
// test recomputes it from the documented canonical form); an approval token
// for that digest and agent (signed by the test's approval-service key) lets
// it through once; reusing it, approving another body or another agent is
// refused with distinct reasons, and nothing refused reaches the origin.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";

import { signJwt } from "../../tests/vectors/mint.mjs";
import { generateKey, send, startGateway, startOrigin } from "./helpers.mjs";

const nowS = () => Math.floor(Date.now() / 1000);
const b64sha256 = (text) => createHash("sha256").update(text).digest("base64url");
const AGENT = "spiffe://test/agents/finance-bot";

/** The documented canonical action (src/approval.rs): one field per line. */
const actionDigest = ({ method, host, path, query = "", body }) =>
  b64sha256(`agentguard-action-v1\n${method}\n${host}\n${path}\n${query}\n${body === undefined ? "" : b64sha256(body)}\n`);

describe("approval loop through the gateway in workerd", () => {
  let sts;
  let approver;
  let origin;
  let gateway;
  let plainGateway; // the same policy without AGENTGUARD_HASH_BODY
  let serial = 0;

  before(async () => {
    sts = await generateKey("EdDSA", "sts-1");
    approver = await generateKey("EdDSA", "approvals-1");
    origin = await startOrigin();
    const policy = {
      realm: "api.test",
      issuers: [
        { iss: "https://sts.test", audiences: ["https://api.test"], jwks: { keys: [sts.publicJwk] }, algorithms: ["EdDSA"] },
      ],
      routes: [
        { id: "read", methods: ["GET"], path: "/v1/invoices/**", scopes: ["payments.read"] },
        { id: "pay", methods: ["POST"], path: "/v1/payments", scopes: ["payments.write"], risk: "high" },
      ],
      approval: {
        issuer: "https://approvals.test",
        jwks: { keys: [approver.publicJwk] },
        algorithms: ["EdDSA"],
        audiences: ["https://api.test"],
        endpoint: "https://approvals.test/bc-authorize",
      },
    };
    const policyText = JSON.stringify(policy);
    [gateway, plainGateway] = await Promise.all([
      startGateway({ policyText, originPort: origin.port, env: { AGENTGUARD_HASH_BODY: "true" } }),
      startGateway({ policyText, originPort: origin.port }),
    ]);
  });
  after(async () => {
    await Promise.all([gateway?.stop(), plainGateway?.stop()]);
    await origin?.close();
  });

  const accessToken = (agent = AGENT) => {
    const now = nowS();
    return signJwt(sts.privateJwk, {
      iss: "https://sts.test",
      aud: "https://api.test",
      sub: "user:cfo",
      client_id: "finance-agent",
      act: { sub: agent },
      scope: "payments.read payments.write",
      iat: now,
      exp: now + 300,
      jti: `acc-${++serial}`,
    });
  };
  const approval = (digest, agent = AGENT, extra = {}) => {
    const now = nowS();
    return signJwt(
      approver.privateJwk,
      {
        iss: "https://approvals.test",
        aud: "https://api.test",
        sub: "user:cfo",
        agent,
        action_digest: digest,
        iat: now,
        exp: now + 120,
        jti: `appr-${++serial}`,
        ...extra,
      },
      "approval+jwt",
    );
  };
  const pay = async (gw, body, { token, approvalToken } = {}) =>
    send(`${gw.url}/v1/payments`, {
      method: "POST",
      headers: {
        host: "api.test",
        "content-type": "application/json",
        authorization: `Bearer ${token ?? (await accessToken())}`,
        ...(approvalToken ? { "x-agent-approval": approvalToken } : {}),
      },
      body,
    });

  const invoice42 = JSON.stringify({ invoice: 42, amount: "1200.00", currency: "EUR" });
  const invoice43 = JSON.stringify({ invoice: 43, amount: "99000.00", currency: "EUR" });

  test("without an approval: approval_required with the action digest of this exact body", async () => {
    const seen = origin.seen.length;
    const res = await pay(gateway, invoice42);
    assert.equal(res.status, 403, res.text);
    const body = JSON.parse(res.text);
    assert.equal(body.decision, "approval_required");
    assert.equal(body.reason, "approval_required");
    assert.equal(body.agent, AGENT);
    assert.equal(body.approval_endpoint, "https://approvals.test/bc-authorize");
    assert.match(body.binding_message, /finance-bot wants to POST \/v1\/payments/);
    assert.equal(body.action_digest, actionDigest({ method: "POST", host: "api.test", path: "/v1/payments", body: invoice42 }));
    const other = JSON.parse((await pay(gateway, invoice43)).text);
    assert.notEqual(other.action_digest, body.action_digest, "another body, another digest");
    assert.equal(origin.seen.length, seen);
  });

  test("approved: allowed once; reused, for another body or another agent: refused", async () => {
    const seen = origin.seen.length;
    const digest = JSON.parse((await pay(gateway, invoice42)).text).action_digest;
    const approved = await approval(digest);

    const ok = await pay(gateway, invoice42, { approvalToken: approved });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(origin.seen.length, seen + 1);
    assert.equal(JSON.parse(ok.text).headers["x-agentguard-agent"], AGENT);

    const again = await pay(gateway, invoice42, { approvalToken: approved });
    assert.equal(again.status, 403, again.text);
    assert.equal(JSON.parse(again.text).reason, "approval_replayed");

    const swapped = await pay(gateway, invoice43, { approvalToken: await approval(digest) });
    assert.equal(swapped.status, 403, swapped.text);
    assert.equal(JSON.parse(swapped.text).reason, "approval_digest_mismatch");

    const otherAgent = "spiffe://test/agents/intern-bot";
    const stolen = await pay(gateway, invoice42, {
      token: await accessToken(otherAgent),
      approvalToken: await approval(digest),
    });
    assert.equal(stolen.status, 403, stolen.text);
    assert.equal(JSON.parse(stolen.text).reason, "approval_agent_mismatch");

    const expired = await pay(gateway, invoice42, {
      approvalToken: await approval(digest, AGENT, { iat: nowS() - 600, exp: nowS() - 300 }),
    });
    assert.equal(expired.status, 403, expired.text);
    assert.equal(JSON.parse(expired.text).reason, "approval_expired");

    assert.equal(origin.seen.length, seen + 1, "only the one approved request reached the origin");
  });

  test("without AGENTGUARD_HASH_BODY a high-risk route's body is hashed all the same", async () => {
    const a = JSON.parse((await pay(plainGateway, invoice42)).text);
    const b = JSON.parse((await pay(plainGateway, invoice43)).text);
    assert.equal(a.reason, "approval_required");
    assert.notEqual(a.action_digest, b.action_digest);
    assert.equal(a.action_digest, actionDigest({ method: "POST", host: "api.test", path: "/v1/payments", body: invoice42 }));
  });
});
