// The guard and helpers used the way a gateway would: create, decide, read
// the decision, answer. Each `@ts-expect-error` is an assertion (see policy.ts).
import {
  AgentGuard,
  DirectoryCache,
  JwksCache,
  PolicyError,
  analyticsDataPoint,
  bodySha256,
  checkPolicy,
  forwardRequest,
  jwksCache,
  MAX_REVOCATION_LIST_BYTES,
  RevocationListCache,
  revocationListCache,
  requestLines,
  toCoreRequest,
  toResponse,
  version,
  type Decision,
  type DecisionEvent,
  type Identity,
  type Outcome,
  type PolicyProblem,
  type ReasonCode,
} from "agentguard";
import { minimal, policy } from "./policy.js";

const lines: string[] = [];

export async function gateway(request: Request): Promise<Response> {
  let guard: AgentGuard;
  try {
    guard = await AgentGuard.create(policy, {
      jwksCache: new JwksCache({ minTtl: 30, cooldown: 10, fetch, now: () => Date.now(), log: (l) => lines.push(l) }),
      directoryCache: new DirectoryCache({ timeoutMs: 2_000 }),
      log: (line) => lines.push(line),
      hostVerify: ["ES256", "RS256"],
      hostCrypto: "webcrypto",
      dpopNonceSecret: "a shared secret from the environment",
      trace: true,
    });
  } catch (e) {
    if (e instanceof PolicyError) {
      return new Response(e.problems.map((p) => `${p.path}: ${p.message}`).join("\n"), { status: 500 });
    }
    throw e;
  }

  const served: Response | undefined = await guard.serveEndpoint(request);
  if (served) return served;

  const decision: Decision = await guard.decide(request, {
    clientIp: "203.0.113.7",
    bodySha256: await bodySha256(request),
    now: Date.now(),
  });

  // Reading the decision the way handlers and loggers do.
  const agent: string | undefined = decision.identity?.agent;
  const scopes: string[] = decision.identity?.scopes ?? [];
  const forwarded: Record<string, string> = decision.forward_headers;
  const codes: ReasonCode[] = decision.event.reasons;
  const firstReason: string | undefined = decision.reasons[0]?.message;
  const status: number | undefined = decision.response?.status;
  const bodyText: string | undefined = decision.response?.body;
  const tripped = decision.event.breaker?.kind === "unusual_routes";
  const stages = decision.trace.map((s) => `${s.stage}:${s.result}`);
  if (decision.log) lines.push(JSON.stringify(decision.event));
  lines.push(String([agent, scopes, forwarded, codes, firstReason, status, bodyText, tripped, stages]));

  // Every outcome is handled; `never` proves the union is what the switch covers.
  switch (decision.decision) {
    case "allow":
      return fetch(forwardRequest(request, decision));
    case "approval_required":
      lines.push(decision.approval?.binding_message ?? "");
      return toResponse(decision);
    case "deny":
    case "revoked":
      return toResponse(decision);
    default: {
      const unreachable: never = decision.decision;
      return unreachable;
    }
  }
}

export function operator(guard: AgentGuard): void {
  const stats = guard.stats();
  const perAgent = Object.entries(stats.agents).map(([name, a]) => `${name} ${a.requests} ${a.last_seen_ms}`);
  lines.push(`${stats.decisions} ${stats.cachedTokens} ${stats.stateKeys} ${perAgent.join(",")}`);
  for (const s of guard.suspendedAgents()) {
    if (s.kind === "burst" || s.kind === "deny_ratio" || s.kind === "unusual_routes") {
      guard.restoreSuspension(s.agent, { until_ms: s.until_ms, kind: s.kind, detail: s.detail });
    }
    guard.liftSuspension(s.agent);
  }
  guard.setRevocations({ agents: ["spiffe://prod.example.com/agents/rogue"] });
  const record = guard.approvalRecord({ method: "POST", path: "/v1/payments", headers: { "x-agent-approval": "a.b.c" }, now: 1 });
  if (record !== null) lines.push(`${record.id} ${record.expires_at} ${guard.restoreApproval(record)}`);
  const skipped = guard.setIssuerKeys("https://sts.example.com", { keys: [] });
  lines.push(skipped.map((k) => `${k.index}: ${k.message}`).join());
  const remote: string[] = guard.remoteIssuers.map((i) => i.jwks_uri);
  const metadata = guard.resourceMetadata();
  lines.push(`${remote} ${metadata?.resource} ${guard.endpoints?.resource_metadata.join()} ${version()}`);
  lines.push(JSON.stringify(jwksCache.stats("https://login.partner.example/.well-known/jwks.json")));
  // The policy's revocation_list: where it stands, for a dashboard.
  const list = guard.revocationListStatus() ?? stats.revocationList;
  if (list) {
    const age = list.loadedAtMs === null ? "never" : `${Math.round((Date.now() - list.loadedAtMs) / 1000)} s`;
    lines.push(`${list.uri} ${age} ${list.entries ?? 0} entries, ${list.fetches} fetches, ${list.lastError ?? "ok"}`);
  }
  // @ts-expect-error: the status's fields are camelCase (`loadedAtMs`)
  lines.push(String(guard.revocationListStatus()?.loaded_at_ms));
}

export async function revocationLists(policyText: string): Promise<number | null> {
  const cache = new RevocationListCache({ retryAfterError: 5, timeoutMs: 2_000, log: (l) => lines.push(l) });
  const guard = await AgentGuard.create(policyText, { revocationListCache: cache });
  const status = await guard.refreshRevocationList();
  const entry = cache.peek("https://revocations.example.com/list.json");
  lines.push(`${entry?.generation} ${cache.stats("https://revocations.example.com/list.json")?.notModified} ${MAX_REVOCATION_LIST_BYTES}`);
  lines.push(String(revocationListCache.peek("https://revocations.example.com/list.json")?.fetchedAt));
  return status?.entries ?? null;
}

export function synchronous(): Decision {
  const guard = AgentGuard.createSync(JSON.stringify(policy));
  const input = toCoreRequest(new Request("https://api.example.com/v1/contacts"), { clientIp: "10.1.2.3" });
  const decision = guard.decideInput({ ...input, now: 1_790_000_000 });
  // The line form the package sends, or null (then JSON).
  const form: string | null = requestLines(input);
  // @ts-expect-error: it may be null
  const text: string = requestLines(input);
  lines.push(`${form === null ? "json" : "lines"} ${text.length}`);
  const point = analyticsDataPoint(decision.event);
  lines.push(`${point.indexes[0]} ${point.blobs.join()} ${point.doubles[0]}`);
  guard.free();
  return decision;
}

// checkPolicy takes a Policy or its JSON text and lists problems.
export function check(): string[] {
  const problems: PolicyProblem[] = [...checkPolicy(policy), ...checkPolicy(JSON.stringify(minimal))];
  return problems.map((p) => (p.line === undefined ? p.path : `${p.path} (line ${p.line}, column ${p.column ?? 0})`));
}

// ---------------------------------------------------------------------------
// What the types refuse.

export function refused(decision: Decision, event: DecisionEvent, identity: Identity): void {
  // @ts-expect-error: the outcome is "allow", not "allowed" (no overlap: tsc reports the comparison)
  if (decision.decision === "allowed") lines.push("never");

  // @ts-expect-error: `identity` is absent on most refusals; it must be checked first
  lines.push(decision.identity.agent);

  // @ts-expect-error: `response` is absent on allow
  lines.push(String(decision.response.status));

  // @ts-expect-error: decision JSON is snake_case as the core writes it (`forward_headers`)
  lines.push(String(decision.forwardHeaders));

  // @ts-expect-error: event reasons are codes (strings), not `{code, message}` objects
  lines.push(event.reasons[0].code);

  // @ts-expect-error: `expires_at` is Unix seconds (a number)
  const expires: string = identity.expires_at;

  // @ts-expect-error: not an outcome
  const outcome: Outcome = "denied";

  // @ts-expect-error: `hostVerify` names JWS algorithms agentguard verifies
  void AgentGuard.create(policy, { hostVerify: ["HS256"] });

  // @ts-expect-error: `hostCrypto` is "platform" or "webcrypto"
  void AgentGuard.create(policy, { hostCrypto: "openssl" });

  // @ts-expect-error: a guard option that does not exist
  void AgentGuard.create(policy, { traces: true });

  // @ts-expect-error: a core request needs `now` (Unix seconds)
  void AgentGuard.createSync(policy).decideInput({ method: "GET", path: "/" });

  // @ts-expect-error: `decide` takes a Fetch Request, not a URL
  void AgentGuard.createSync(policy).decide("https://api.example.com/v1/contacts");

  lines.push(expires, outcome);
}
