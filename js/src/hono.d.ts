// Types of agentguard/hono (js/src/hono.js).
import type { MiddlewareHandler, Context } from "hono";
import type { AgentGuardMiddlewareOptions, Decision, RequestContext } from "./index.js";

export const CONTEXT_KEY: "agentguard";

export interface HonoAgentGuardOptions
  extends Omit<AgentGuardMiddlewareOptions, "context" | "onDecision"> {
  /** Extra request context (client IP, certificate, body hash) from Hono's context. */
  context?: (c: Context) => RequestContext | Promise<RequestContext>;
  /** Default: log `decision.event` as one JSON line; `null` turns it off. */
  onDecision?: ((decision: Decision, c: Context) => void) | null;
}

/** `c.get("agentguard")`: the decision; `decision.identity` is the verified agent. */
export type AgentGuardVariables = { agentguard: Decision };

/** Hono middleware: `app.use(agentguard({...}))`. */
export function agentguard(options?: HonoAgentGuardOptions): MiddlewareHandler<{ Variables: AgentGuardVariables }>;
