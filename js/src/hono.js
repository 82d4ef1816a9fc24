// agentguard as Hono middleware:
//
//   import { Hono } from "hono";
//   import { agentguard } from "agentguard/hono";
//
//   const app = new Hono();
//   app.use("/v1/*", agentguard({ policyVar: "AGENTGUARD_POLICY" }));
//   app.get("/v1/records/:id", (c) => c.json({ agent: c.get("agentguard").identity.agent }));
//   export default app;
//
// The middleware is the plain Workers wrapper (`withAgentGuard`) with Hono's
// `next()` as its handler, so both decide with the same `AgentGuard` and
// behave the same: the same policy sources and fail-closed 500, the same
// gateway endpoints (RFC 9728 metadata), the core's refusal responses, inbound
// identity headers stripped and the verified ones added (`c.req.raw` is the
// forwarded request), and the next DPoP nonce on success. The decision, with
// the verified agent in `decision.identity`, is on the context:
// `c.get("agentguard")`.
//
// It imports the package by name so the right entry point (Workers, Node,
// browser) instantiates the Wasm core.

import { withAgentGuard } from "agentguard";

/** The context variable holding the decision. */
export const CONTEXT_KEY = "agentguard";

/**
 * Hono middleware. `options` are `withAgentGuard`'s (`policy` / `policyVar` /
 * `policyKv`, `hashBody`, `jwksCache`, `directoryCache`, `log`, `hostVerify`, `hostCrypto`,
 * `dpopNonceSecret`, `signingKeys`), except that callbacks take Hono's
 * context: `context(c)` → extra request context, `onDecision(decision, c)`
 * (default: log the decision event as one JSON line when the policy's `log`
 * settings want it, as `withAgentGuard` does; `null` turns it off).
 * Policies come from `c.env` (Workers bindings).
 */
export function agentguard(options = {}) {
  const userContext = options.context;
  const userOnDecision =
    options.onDecision === undefined ? (d) => d.log && console.log(JSON.stringify(d.event)) : options.onDecision;
  const run = withAgentGuard(
    async (request, _env, h, decision) => {
      h.forwarded = true;
      h.c.req.raw = request;
      h.c.set(CONTEXT_KEY, decision);
      await h.next();
      h.response = h.c.res;
      return h.response;
    },
    {
      ...options,
      context: userContext ? (_request, _env, h) => userContext(h.c) : undefined,
      onDecision: (decision, _request, _env, h) => {
        h.c.set(CONTEXT_KEY, decision);
        if (userOnDecision) userOnDecision(decision, h.c);
      },
    },
  );

  return async function agentguardMiddleware(c, next) {
    const h = { c, next, forwarded: false, response: undefined };
    let ctx;
    try {
      ctx = c.executionCtx;
    } catch {
      ctx = undefined; // not on Workers
    }
    h.executionCtx = ctx;
    const response = await run(c.req.raw, c.env ?? {}, h);
    // Refused (or a gateway endpoint, or fail-closed): answer without calling next.
    if (!h.forwarded) return response;
    // Allowed: the handlers ran; keep a header the wrapper added (DPoP nonce).
    if (response !== h.response) c.res = response;
    return undefined;
  };
}
