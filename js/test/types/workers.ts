// The Workers wrapper and the Hono middleware, as a Worker would use them.
// Each `@ts-expect-error` is an assertion (see policy.ts).
import { Hono, type Context } from "hono";
import { withAgentGuard, loadPolicyText, type Decision, type KvNamespaceLike } from "agentguard";
import { agentguard, CONTEXT_KEY, type AgentGuardVariables } from "agentguard/hono";
import { policy } from "./policy.js";

interface Env {
  AGENTGUARD_POLICY?: string;
  AGENTGUARD_KV: KvNamespaceLike;
  ORIGIN: string;
}
interface ExecutionContextLike {
  waitUntil(promise: Promise<unknown>): void;
}

// withAgentGuard: the handler sees only allowed requests, with the decision.
export const worker = {
  fetch: withAgentGuard<Env, ExecutionContextLike>(
    async (request, env, ctx, decision) => {
      ctx.waitUntil(Promise.resolve(decision.event.time_ms));
      const agent = decision.identity?.agent ?? "(none)";
      const upstream = new URL(new URL(request.url).pathname, env.ORIGIN);
      const response = await fetch(new Request(upstream, request));
      return new Response(response.body, { status: response.status, headers: { "x-served-for": agent } });
    },
    {
      policyVar: "AGENTGUARD_POLICY",
      policyKv: { binding: "AGENTGUARD_KV", key: "policy.json" },
      policyTtlMs: 30_000,
      hashBody: true,
      context: (request) => ({ clientIp: request.headers.get("x-real-ip") ?? undefined, now: Date.now() }),
      onDecision: (decision: Decision, request) => console.log(decision.event.decision, request.url),
      statsRoute: "ops-stats",
      trace: false,
    },
  ),
};

export async function readPolicy(env: Env): Promise<string> {
  return loadPolicyText(env as unknown as Record<string, unknown>, { policyKv: { binding: "AGENTGUARD_KV" } });
}

// Hono: the decision is on the context as `c.get("agentguard")`.
const app = new Hono<{ Variables: AgentGuardVariables }>();
app.use(
  "/v1/*",
  agentguard({
    policy,
    hashBody: true,
    context: (c) => ({ clientIp: c.req.header("x-real-ip") }),
    onDecision: (decision, c) => console.log(decision.decision, c.req.path),
  }),
);
app.get("/v1/contacts/:id", (c) => {
  const decision = c.get(CONTEXT_KEY);
  return c.json({
    id: c.req.param("id"),
    agent: decision.identity?.agent ?? null,
    route: decision.route ?? null,
    params: decision.params ?? {},
  });
});
// The middleware carries its Variables to a plain Hono app as well.
export const plain = new Hono().use(agentguard({ policyVar: "AGENTGUARD_POLICY", onDecision: null }));
plain.get("/v1/drafts", (c) => c.text(c.get("agentguard").decision));

export default app;

// ---------------------------------------------------------------------------
// What the types refuse.

// @ts-expect-error: `policyTtlMs` is milliseconds as a number
withAgentGuard(async () => new Response(), { policyTtlMs: "1m" });

// @ts-expect-error: a handler must return a Response
withAgentGuard(async () => "ok");

agentguard({
  // @ts-expect-error: the Hono `context` callback gets Hono's context, not (request, env, ctx)
  context: (_c: Context, env: Env) => ({ clientIp: env.ORIGIN }),
});

plain.get("/v1/other", (c) => {
  // @ts-expect-error: `c.get("agentguard")` is a Decision (not `any`), whose fields are snake_case
  return c.json(c.get("agentguard").forwardHeaders);
});
