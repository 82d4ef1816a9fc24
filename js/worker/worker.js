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
//   AGENTGUARD_STATS_ROUTE / AGENTGUARD_LIFT_ROUTE  optional policy route ids that turn on
//                      GET /_agentguard/stats and POST /_agentguard/suspensions/lift
import { withAgentGuard } from "../src/workers.js";

// The Durable Object class for shared per-agent state: used when wrangler.toml
// binds AGENTGUARD_STATE to it (see docs/workers.md, "Shared state").
export { AgentStateObject } from "../src/workers.js";

async function toOrigin(request, env) {
  if (env.ORIGIN_URL) {
    const url = new URL(request.url);
    const target = new URL(url.pathname + url.search, env.ORIGIN_URL);
    return fetch(new Request(target, request), { redirect: "manual" });
  }
  if (env.ORIGIN) return env.ORIGIN.fetch(request, { redirect: "manual" });
  return new Response("agentguard gateway: no origin configured (set ORIGIN_URL)\n", { status: 502 });
}

export default {
  fetch: withAgentGuard(toOrigin),
};
