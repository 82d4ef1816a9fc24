// The agentguard gateway: a Worker in front of an origin API. Every request
// is decided by agentguard; only allowed ones reach the origin, carrying the
// verified identity headers (inbound copies are stripped).
//
// Bindings (wrangler.toml, or workerd.capnp for local runs):
//   AGENTGUARD_POLICY  policy JSON text (or AGENTGUARD_KV: KV namespace, key `policy.json`)
//   ORIGIN_URL         the origin's base URL, e.g. https://api-internal.example.com
//   ORIGIN             or a service binding to the origin (used when ORIGIN_URL is unset)
//   AGENTGUARD_STATE   optional Durable Object namespace (class AgentStateObject): per-agent
//                      limits, breaker and suspensions shared by every isolate
//   AGENTGUARD_SIGNING_KEYS  secret: the token service's private JWK Set (policies with `token_service`)
//   AGENTGUARD_DPOP_NONCE_SECRET  secret shared by every isolate (policies with `dpop.nonce`)
//   AGENTGUARD_HASH_BODY  "true": hash every request's body (routes with approval_when or
//                      risk high/critical have theirs read or hashed anyway)
//   AGENTGUARD_STATS_ROUTE / AGENTGUARD_LIFT_ROUTE  optional policy route ids that turn on
//                      GET /_agentguard/stats and POST /_agentguard/suspensions/lift
import { withAgentGuard } from "../src/workers.js";

// The Durable Object class for shared per-agent state: used when wrangler.toml
// binds AGENTGUARD_STATE to it (see docs/workers.md, "Shared state").
export { AgentStateObject } from "../src/workers.js";

async function toOrigin(request, env) {
  if (env.ORIGIN_URL) {
    const url = new URL(request.url);
    // Path and query set on the origin's URL, never resolved against it: a
    // path like `//evil.example/x` would otherwise name another host (and get
    // the caller's token).
    const target = new URL(env.ORIGIN_URL);
    target.pathname = url.pathname;
    target.search = url.search;
    return fetch(new Request(target, request), { redirect: "manual" });
  }
  if (env.ORIGIN) return env.ORIGIN.fetch(request, { redirect: "manual" });
  return new Response("agentguard gateway: no origin configured (set ORIGIN_URL)\n", { status: 502 });
}

// Approvals bind to the request body wherever the route needs it (a route
// with approval_when gets its body read, a high-risk route its body hashed;
// see docs/workers.md). AGENTGUARD_HASH_BODY = "true" hashes every body.
const plain = withAgentGuard(toOrigin);
const hashing = withAgentGuard(toOrigin, { hashBody: true });

export default {
  fetch: (request, env, ctx) => (env.AGENTGUARD_HASH_BODY === "true" ? hashing : plain)(request, env, ctx),
};
