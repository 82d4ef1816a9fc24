// The attack and scenario library: one click each, run against a fresh
// engine compiled from the policy in the editor, at the playground's clock.
// Each step names what a correct policy should answer; the verdict shown is
// always the core's.

import { unsignedToken, tamperPayload } from "./crypto.js";
import { agentId } from "./world.js";

const step = (label, expect, build) => ({ label, expect, build });

export const SCENARIOS = [
  {
    id: "alg-none",
    title: "alg: none",
    summary: "an unsigned token that a naive verifier would accept",
    steps: [
      step("token with `alg: none` and no signature", { decision: "deny", code: "token_algorithm_not_allowed" }, async (c, now) =>
        c.request({ token: unsignedToken(await c.claims(now, { dpop: false })), now, proof: false }),
      ),
    ],
  },
  {
    id: "expired",
    title: "Expired token",
    summary: "a token that expired ten minutes ago",
    steps: [
      step("token expired 10 min ago", { decision: "deny", code: "token_expired" }, async (c, now) =>
        c.request({ token: await c.token(now, { iatOffset: -900, lifetime: 300 }), now }),
      ),
    ],
  },
  {
    id: "dpop-replay",
    title: "Replayed DPoP proof",
    summary: "a stolen proof sent a second time with its token",
    steps: [
      step("DPoP-bound token with a fresh proof", { decision: "allow" }, async (c, now, ctx) => {
        const req = await c.request({ token: await c.token(now, { dpop: true }), now });
        ctx.first = req;
        return req;
      }),
      step("the same proof again", { decision: "deny", code: "dpop_proof_replayed" }, async (c, now, ctx) => structuredClone(ctx.first)),
    ],
  },
  {
    id: "wrong-audience",
    title: "Wrong audience",
    summary: "a token minted for another API",
    steps: [
      step("token for https://billing.example.com", { decision: "deny", code: "token_audience_invalid" }, async (c, now) =>
        c.request({ token: await c.token(now, { aud: "https://billing.example.com" }), now }),
      ),
    ],
  },
  {
    id: "scope-escalation",
    title: "Scope escalation",
    summary: "a read-only agent tries to pay, then forges its own scope",
    steps: [
      step("`crm.read` token pays an invoice", { decision: "deny", code: "scope_insufficient" }, async (c, now, ctx) => {
        ctx.token = await c.token(now, { scope: "crm.read" });
        return c.request({ method: "POST", path: "/v1/invoices/981/pay", token: ctx.token, now, body: '{"amount":1200}' });
      }),
      step("same token, `payments.write` added to its payload", { decision: "deny", code: "token_signature_invalid" }, async (c, now, ctx) =>
        c.request({
          method: "POST",
          path: "/v1/invoices/981/pay",
          token: tamperPayload(ctx.token, (claims) => ({ ...claims, scope: "crm.read payments.write" })),
          now,
          body: '{"amount":1200}',
        }),
      ),
    ],
  },
  {
    id: "loop",
    title: "Agent in a loop",
    summary: "one agent calls the same URL 25 times a second: 429s, then the circuit breaker revokes it",
    simulation: "loop",
  },
  {
    id: "approval",
    title: "High-risk action, then approval",
    summary: "paying an invoice: challenge, a human approves that exact action, retry; the approval works once",
    steps: [
      step("pay without an approval", { decision: "approval_required", code: "approval_required" }, async (c, now, ctx) => {
        ctx.token = await c.token(now, { scope: "crm.read payments.write" });
        return c.request({ method: "POST", path: "/v1/invoices/981/pay", token: ctx.token, now, body: '{"amount":1200}' });
      }),
      step("retry with an approval for the challenge's digest and agent", { decision: "allow" }, async (c, now, ctx) => {
        if (!ctx.last.approval) throw new Error("the first step got no approval challenge, so there is nothing to approve");
        ctx.approval = c.approval(now, ctx.last.approval);
        return c.request({ method: "POST", path: "/v1/invoices/981/pay", token: ctx.token, now, body: '{"amount":1200}', approval: ctx.approval });
      }),
      step("the same approval for another invoice", { decision: "deny", code: "approval_digest_mismatch" }, async (c, now, ctx) =>
        c.request({ method: "POST", path: "/v1/invoices/982/pay", token: ctx.token, now, body: '{"amount":1200}', approval: ctx.approval }),
      ),
      step("the same approval again", { decision: "deny", code: "approval_replayed" }, async (c, now, ctx) =>
        c.request({ method: "POST", path: "/v1/invoices/981/pay", token: ctx.token, now, body: '{"amount":1200}', approval: ctx.approval }),
      ),
    ],
  },
  {
    id: "path-traversal",
    title: "Path traversal",
    summary: "`/v1/contacts/42/../../admin/users` to reach an unlisted route",
    steps: [
      step("dot segments toward /admin", { decision: "deny", code: "route_not_matched" }, async (c, now) =>
        c.request({ path: "/v1/contacts/42/../../admin/users", token: await c.token(now), now }),
      ),
    ],
  },
  {
    id: "unknown-agent",
    title: "Agent from another trust domain",
    summary: "a token whose acting agent is from the dev trust domain",
    steps: [
      step("actor outside the allowed agents", { decision: "deny", code: "delegation_actor_not_allowed" }, async (c, now) =>
        c.request({ token: await c.token(now, { agent: "spiffe://dev.example.com/agents/test" }), now, agent: "spiffe://dev.example.com/agents/test" }),
      ),
    ],
  },
  {
    id: "outside-network",
    title: "Stolen token, outside network",
    summary: "a valid token replayed from an unknown IP",
    steps: [
      step("from 203.0.113.9", { decision: "deny", code: "network_not_allowed" }, async (c, now) =>
        c.request({ token: await c.token(now, { agent: agentId("crm-assistant") }), now, sourceIp: "203.0.113.9" }),
      ),
    ],
  },
];

/** Runs a scenario's steps in order on `engine`; each result is `{label, expect, request, decision, ok}`. */
export async function runScenario(scenario, { engine, client, now }) {
  const ctx = {};
  const results = [];
  for (const st of scenario.steps) {
    let request;
    let decision;
    try {
      request = await st.build(client, now, ctx);
      decision = engine.decide(request);
    } catch (e) {
      results.push({ label: st.label, expect: st.expect, error: e.message ?? String(e), ok: false });
      break;
    }
    ctx.last = decision;
    const code = decision.reasons[0]?.code;
    const ok = decision.decision === st.expect.decision && (!st.expect.code || st.expect.code === code);
    results.push({ label: st.label, expect: st.expect, request, decision, ok });
  }
  return results;
}
