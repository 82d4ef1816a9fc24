// Shared per-agent state for Cloudflare Workers: one Durable Object per agent.
//
// The core keeps rate-limit buckets, circuit-breaker windows, suspensions and
// replay caches in the engine, i.e. per Workers isolate. To make them hold
// across isolates, the gateway sends each request to the Durable Object named
// by its agent (`idFromName(agent)`), which runs its own engine with the same
// policy and returns the decision. Every request of an agent reaches the same
// object, so that object's in-memory state is the agent's global state.
//
// The agent is read from the request WITHOUT verifying it (`routingKey`, the
// core's src/shard.rs): a forged token only routes a request to another
// agent's object, where it is verified and refused, and the engine counts
// limits and breaker outcomes only for agents whose credential verified. A
// decision is only returned from the object of the agent that verified: if
// the verified agent is not the one the request was routed by (possible for
// an HTTP message signature without `Signature-Agent`), the request is sent
// on to that agent's object and decided there.
//
// Fail closed: an object that cannot be reached, throws or answers nonsense
// is a 503 `state_unavailable` deny, never an allow.
//
// Operator endpoints (off by default, each protected by its own policy route):
//   GET  /_agentguard/stats[?agent=A]     the isolate's stats, or agent A's (from A's object)
//   POST /_agentguard/suspensions/lift    body {"agent": A}: lift A's suspension

import { routingKey as routingKeyJson } from "../dist/agentguard.js";
import { AgentGuard, toCoreRequest } from "./agentguard.js";
import { hostRefusal } from "./refusal.js";

/** The default name of the Durable Object namespace binding. */
export const STATE_BINDING = "AGENTGUARD_STATE";
/** Where the operator endpoints live. */
export const OPERATOR_PREFIX = "/_agentguard";

const ORIGIN = "https://agentguard-state.internal"; // the object's URL space (never leaves the runtime)
const MAX_GUARDS = 4; // engines per isolate of objects (one per policy text in use)
const MAX_OPERATOR_BODY = 4096;
const SUSPENSION_KEY = "suspension"; // the agent's breaker trip, in the object's durable storage
const APPROVAL_PREFIX = "approval:"; // + an approval's replay key: the approvals it used, until they expire

/**
 * The agent a core request object claims to be, UNVERIFIED (see src/shard.rs):
 * for a token `act.sub`, else `client_id`, else `sub`, else `""`; for an HTTP
 * message signature (as `credentials` says) the operator `Signature-Agent`
 * names. `undefined` when the request names none. For routing only.
 */
export function routingKey(input, credentials = "token") {
  return routingKeyJson(JSON.stringify(input), String(credentials)) ?? undefined;
}

// ---------------------------------------------------------------------------
// Policy identity: objects get the gateway's exact policy text, by hash.

const policyInfos = new Map(); // policy text -> Promise<{text, hash, mode}>

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function policyInfo(text) {
  let info = policyInfos.get(text);
  if (!info) {
    info = sha256Hex(text).then((hash) => {
      let mode = "token";
      try {
        mode = JSON.parse(text).credentials ?? "token";
      } catch {
        // A policy that does not parse never compiles: no request gets this far.
      }
      return { text, hash, mode };
    });
    if (policyInfos.size >= MAX_GUARDS) policyInfos.delete(policyInfos.keys().next().value);
    policyInfos.set(text, info);
  }
  return info;
}

// ---------------------------------------------------------------------------
// The Durable Object

// One engine per policy text, shared by every object in the isolate: each
// object only ever decides for its own agent, and the engine keys all state by
// agent, so sharing costs nothing and keeps the token cache warm.
const objectGuards = new Map(); // policy hash -> Promise<AgentGuard>

function json(value, status = 200) {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

/**
 * The Durable Object class holding agents' state: bind it as
 * `AGENTGUARD_STATE` (see docs/workers.md) and export it from the Worker's
 * main module. It is called by the gateway only (`withAgentGuard`), with the
 * gateway's policy; it needs no bindings of its own except, when the policy
 * uses DPoP nonces, the same `AGENTGUARD_DPOP_NONCE_SECRET` as the gateway.
 */
export class AgentStateObject {
  #restored = new WeakSet(); // engines this object instance has put its stored state into

  constructor(state, env) {
    this.state = state;
    this.env = env ?? {};
  }

  async fetch(request) {
    try {
      const body = await request.json();
      const path = new URL(request.url).pathname;
      if (path === "/lift") {
        if (typeof body.agent !== "string") return json({ error: "`agent` must be a string" }, 400);
        let lifted = false;
        for (const pending of objectGuards.values()) {
          const guard = await pending.catch(() => null);
          if (guard && guard.liftSuspension(body.agent)) lifted = true;
        }
        const stored = await this.#storage?.get(SUSPENSION_KEY);
        if (stored?.agent === body.agent) {
          await this.#storage.delete(SUSPENSION_KEY);
          lifted ||= stored.until_ms > Date.now();
        }
        return json({ lifted });
      }
      const guard = await this.#guard(body);
      if (!guard) return json({ need_policy: true });
      await this.#restore(guard);
      if (path === "/decide") {
        // The object's engine loads the policy's revocation list itself
        // (through this isolate's cache) and keeps it fresh: it decides with
        // its own copy, never with the gateway's.
        const waitUntil = typeof this.state?.waitUntil === "function" ? (p) => this.state.waitUntil(p) : undefined;
        const decision = await guard.decideCore(body.input, { waitUntil });
        await this.#keep(decision, guard, body.input);
        return json({ decision });
      }
      if (path === "/stats") {
        if (typeof body.agent !== "string") return json({ error: "`agent` must be a string" }, 400);
        const stats = guard.stats();
        return json({
          stats: stats.agents?.[body.agent] ?? null,
          suspended: guard.suspendedAgents().filter((s) => s.agent === body.agent),
          revocationList: stats.revocationList,
        });
      }
      return json({ error: `no such call ${path}` }, 404);
    } catch (e) {
      console.error(`agentguard: agent state: ${e?.message ?? e}`);
      return json({ error: String(e?.message ?? e) }, 500);
    }
  }

  // Durable storage, when the runtime gives the object some.
  get #storage() {
    const storage = this.state?.storage;
    return storage && typeof storage.get === "function" && typeof storage.put === "function" ? storage : undefined;
  }

  // Two pieces of an agent's state must outlive the object's memory (an
  // isolate restart, or the object moving elsewhere, would otherwise drop
  // them): a breaker trip (or the agent's revocation would end early) and
  // each approval used (or it would pass again within its lifetime: single
  // use must mean once). Both are written to durable storage and put back
  // into the engine the first time this object instance decides. Buckets and
  // windows are not kept: after a restart they start full, which errs
  // towards the agent only within one window.
  async #keep(decision, guard, input) {
    const storage = this.#storage;
    if (!storage) return;
    if (decision?.decision === "allow" && decision.event?.approval_digest) {
      const record = guard.approvalRecord(input);
      if (record) await storage.put(APPROVAL_PREFIX + record.id, record.expires_at);
    }
    const trip = decision?.event?.breaker;
    const agent = decision?.event?.agent?.agent;
    if (!trip || !agent || decision.decision !== "revoked") return;
    const stored = await storage.get(SUSPENSION_KEY);
    if (stored?.agent === agent && stored.until_ms >= trip.until_ms) return;
    await storage.put(SUSPENSION_KEY, { agent, until_ms: trip.until_ms, kind: trip.kind, detail: trip.detail });
  }

  async #restore(guard) {
    if (this.#restored.has(guard)) return;
    this.#restored.add(guard);
    const storage = this.#storage;
    if (!storage) return;
    const nowMs = Date.now();
    if (typeof storage.list === "function") {
      const approvals = await storage.list({ prefix: APPROVAL_PREFIX });
      const expired = [];
      for (const [key, expiresAt] of approvals) {
        if (expiresAt * 1000 <= nowMs) expired.push(key);
        else guard.restoreApproval({ id: key.slice(APPROVAL_PREFIX.length), expires_at: expiresAt }, nowMs);
      }
      // Durable Object storage deletes at most 128 keys per call.
      for (let i = 0; i < expired.length; i += 128) await storage.delete(expired.slice(i, i + 128));
    }
    const stored = await storage.get(SUSPENSION_KEY);
    if (!stored || stored.until_ms <= nowMs) return;
    const { agent, ...suspension } = stored;
    guard.restoreSuspension(agent, suspension);
  }

  // The engine for the gateway's policy (by hash); compiled from the text the
  // gateway sends when this isolate has none. `null`: ask for the text.
  async #guard({ policy_hash: hash, policy }) {
    if (typeof hash !== "string") throw new Error("no policy hash");
    let pending = objectGuards.get(hash);
    if (!pending) {
      if (typeof policy !== "string") return null;
      // Registered before any await: concurrent first calls share one engine
      // (two engines for one policy would split the agent's state).
      const secret = this.env.AGENTGUARD_DPOP_NONCE_SECRET;
      pending = sha256Hex(policy).then((actual) => {
        if (actual !== hash) throw new Error("the policy text does not match its hash");
        return AgentGuard.create(policy, { dpopNonceSecret: secret });
      });
      if (objectGuards.size >= MAX_GUARDS) objectGuards.delete(objectGuards.keys().next().value);
      objectGuards.set(hash, pending);
      const registered = pending;
      pending.catch(() => {
        if (objectGuards.get(hash) === registered) objectGuards.delete(hash);
      });
    }
    return pending;
  }
}

// ---------------------------------------------------------------------------
// The gateway side

/** The Durable Object namespace the options/env name (`stateBinding`, default `AGENTGUARD_STATE`), if bound. */
export function stateNamespace(env, options = {}) {
  const ns = env?.[options.stateBinding ?? STATE_BINDING];
  return ns && typeof ns.idFromName === "function" && typeof ns.get === "function" ? ns : undefined;
}

// One call into agent `key`'s object; sends the policy text when it asks.
async function callObject(ns, key, call, payload, policy) {
  const stub = ns.get(ns.idFromName(key));
  const post = async (body) => {
    const res = await stub.fetch(`${ORIGIN}/${call}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`agent state answered ${res.status}: ${text.slice(0, 200)}`);
    return JSON.parse(text);
  };
  let out = await post({ ...payload, policy_hash: policy.hash });
  if (out?.need_policy) out = await post({ ...payload, policy_hash: policy.hash, policy: policy.text });
  if (!out || typeof out !== "object" || out.need_policy) throw new Error("agent state gave no answer");
  return out;
}

// The agent whose credential verified, as the decision says (none when nothing verified).
function verifiedAgent(decision) {
  const agent = decision?.event?.agent?.agent;
  return typeof agent === "string" ? agent : undefined;
}

function isDecision(d) {
  return (
    d &&
    typeof d === "object" &&
    ["allow", "deny", "approval_required", "revoked"].includes(d.decision) &&
    Array.isArray(d.reasons) &&
    d.event &&
    typeof d.event === "object"
  );
}

/**
 * The decision agentguard gives when an agent's state cannot be used: a 503
 * `state_unavailable` deny (with `Retry-After: 1`), shaped like a core decision.
 */
export function stateUnavailable(input, message) {
  return hostRefusal(input, {
    status: 503,
    code: "state_unavailable",
    title: "Service Unavailable",
    message,
    stage: "state",
    headers: { "retry-after": "1" },
  });
}

/**
 * Decides a core request object where its agent's state lives: in agent
 * `routingKey(input)`'s Durable Object of `ns`. A request that names no agent
 * is decided by the local `guard` (nothing is counted for an agent unless its
 * credential verifies); if its credential does verify, it is decided again in
 * the verified agent's object. A decision always comes from the object of the
 * agent that verified. Never rejects: any failure is `stateUnavailable`.
 * `hooks`: as `AgentGuard#decideCore`'s (`waitUntil`), for local decisions.
 */
export async function decideShared(ns, guard, input, policyText, log = (line) => console.error(line), hooks = {}) {
  try {
    const policy = await policyInfo(policyText);
    let key = routingKey(input, policy.mode);
    if (key === undefined) {
      const local = await guard.decideCore(input, hooks);
      key = verifiedAgent(local);
      if (key === undefined) {
        // Nothing verified, so nothing can be allowed or counted for an agent.
        if (local.decision === "allow") return stateUnavailable(input, "an allowed request names no agent");
        return local;
      }
    }
    for (let hop = 0; hop < 2; hop++) {
      const { decision } = await callObject(ns, key, "decide", { input }, policy);
      if (!isDecision(decision)) throw new Error("agent state answered without a decision");
      const agent = verifiedAgent(decision);
      if (agent === key) return decision;
      if (agent === undefined) {
        if (decision.decision === "allow") throw new Error("an allowed request names no agent");
        return decision;
      }
      key = agent; // routed by an unverified name that is not the verified agent: decide where it lives
    }
    return stateUnavailable(input, "the request's agent could not be located");
  } catch (e) {
    log(`agentguard: agent state unavailable, denying: ${e?.message ?? e}`);
    return stateUnavailable(input, "the agent's state is unavailable; retry shortly");
  }
}

/**
 * `guard.decide(request, context)`, through the agent's Durable Object when
 * `env` binds one (`options.stateBinding`, default `AGENTGUARD_STATE`).
 * `waitUntil`: the Workers `ctx.waitUntil`, for background refreshes.
 */
export async function decideWithState(guard, request, context, env, options, policyText, waitUntil) {
  const ns = stateNamespace(env, options);
  // The caller read the body already (`requestBodyContext`): decide as is.
  if (!ns) return guard.decideCore(toCoreRequest(request, context), { waitUntil });
  const input = toCoreRequest(request, context);
  return decideShared(ns, guard, input, policyText, options.log, { waitUntil });
}

// ---------------------------------------------------------------------------
// Operator endpoints

/**
 * Which operator endpoint `request` is, with the policy route that must allow
 * it: `{kind: "stats"|"lift", route}`; `undefined` for anything else, or when
 * the endpoint is off. On with `options.statsRoute` / `options.liftRoute`
 * (or the env texts `AGENTGUARD_STATS_ROUTE` / `AGENTGUARD_LIFT_ROUTE`): the
 * id of the policy route (e.g. with an admin scope) that protects it.
 */
export function operatorEndpoint(request, env = {}, options = {}) {
  const url = new URL(request.url);
  if (!url.pathname.startsWith(`${OPERATOR_PREFIX}/`)) return undefined;
  const statsRoute = options.statsRoute ?? env?.AGENTGUARD_STATS_ROUTE;
  const liftRoute = options.liftRoute ?? env?.AGENTGUARD_LIFT_ROUTE;
  if (statsRoute && request.method === "GET" && url.pathname === `${OPERATOR_PREFIX}/stats`) {
    return { kind: "stats", route: String(statsRoute) };
  }
  if (liftRoute && request.method === "POST" && url.pathname === `${OPERATOR_PREFIX}/suspensions/lift`) {
    return { kind: "lift", route: String(liftRoute) };
  }
  return undefined;
}

function problem(status, reason, title, detail) {
  return new Response(JSON.stringify({ type: `https://agentguard.dev/problems/${reason}`, title, status, detail, decision: "deny", reason }), {
    status,
    headers: { "content-type": "application/problem+json", "cache-control": "no-store" },
  });
}

async function readAgent(request) {
  const text = await request.text();
  if (text.length > MAX_OPERATOR_BODY) return undefined;
  try {
    const body = JSON.parse(text);
    return typeof body?.agent === "string" ? body.agent : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Answers an operator endpoint after agentguard ALLOWED the request (the
 * caller checks that): only when the policy route that allowed it is the one
 * configured for the endpoint. Resolves to `undefined` when `request` is not
 * an operator endpoint (it is then forwarded like any other).
 */
export async function serveOperator(guard, decision, request, env, options, policyText) {
  const op = operatorEndpoint(request, env, options);
  if (!op) return undefined;
  if (decision.decision !== "allow" || decision.route !== op.route) {
    return problem(
      403,
      "route_not_matched",
      "Forbidden",
      `the operator endpoint needs the policy route \`${op.route}\`, but \`${decision.route ?? "none"}\` matched`,
    );
  }
  const ns = stateNamespace(env, options);
  try {
    if (op.kind === "stats") {
      const agent = new URL(request.url).searchParams.get("agent");
      if (agent === null) return json({ scope: "isolate", stats: guard.stats() });
      if (!ns) {
        const stats = guard.stats();
        const suspended = guard.suspendedAgents().filter((s) => s.agent === agent);
        return json({ scope: "isolate", agent, stats: stats.agents?.[agent] ?? null, suspended });
      }
      const policy = await policyInfo(policyText);
      const out = await callObject(ns, agent, "stats", { agent }, policy);
      const answer = { scope: "agent", agent, stats: out.stats ?? null, suspended: out.suspended ?? [] };
      // Where the object's engine stands with the policy's revocation list.
      if (out.revocationList) answer.revocationList = out.revocationList;
      return json(answer);
    }
    const agent = await readAgent(request);
    if (agent === undefined) {
      return problem(400, "request_invalid", "Bad Request", 'the body must be JSON {"agent": "<agent>"}');
    }
    let lifted = guard.liftSuspension(agent);
    let scope = "isolate";
    if (ns) {
      const policy = await policyInfo(policyText);
      const out = await callObject(ns, agent, "lift", { agent }, policy);
      lifted = out.lifted === true || lifted;
      scope = "agent";
    }
    return json({ scope, agent, lifted });
  } catch (e) {
    (options.log ?? ((line) => console.error(line)))(`agentguard: operator ${op.kind}: ${e?.message ?? e}`);
    return problem(503, "state_unavailable", "Service Unavailable", "the agent's state is unavailable; retry shortly");
  }
}
