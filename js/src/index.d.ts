// Types of the agentguard JS package. The shapes mirror the Rust core's JSON
// API exactly (src/policy.rs, src/request.rs, src/decision.rs); the policy
// reference is docs/policy.md and the JSON Schema schema/policy.schema.json.

// ---------------------------------------------------------------------------
// Policy

/** A duration: a whole number and a unit, e.g. `"30s"`, `"5m"`, `"1h"`, `"7d"`. */
export type Duration = `${number}${"s" | "m" | "h" | "d"}`;
/** JWS algorithms agentguard verifies. */
export type Algorithm = "EdDSA" | "ES256" | "RS256" | "PS256";
export type Jwk = { kty: string; kid?: string; alg?: string; use?: string; key_ops?: string[]; [member: string]: unknown };
export interface Jwks {
  keys: Jwk[];
}

export interface Policy {
  description?: string;
  /** `realm` in `WWW-Authenticate` challenges. Default `"agentguard"`. */
  realm?: string;
  /** Trusted token issuers; at least one. */
  issuers: IssuerPolicy[];
  dpop?: DpopPolicy;
  attestation?: AttestationPolicy;
  delegation?: DelegationPolicy;
  /** Matched in order; the first that fits the method and path wins. */
  routes: RoutePolicy[];
  /** Only `"deny"`: agentguard never allows an unmatched request. */
  default?: "deny";
  /** Revoked token ids, subjects, agents and signing keys, in the policy itself. */
  revoked?: RevocationLists;
  /**
   * A revocation list fetched from a URL (by the host: the JS package, Envoy,
   * a component host), in force together with `revoked`. Fails closed: while
   * no list younger than `max_stale` is loaded, requests with a token get 503
   * `state_unavailable` (`Retry-After` = `refresh`).
   */
  revocation_list?: RevocationListPolicy;
  network?: NetworkPolicy;
  limits?: LimitPolicy[];
  circuit_breaker?: CircuitBreakerPolicy;
  state?: { max_keys?: number };
  approval?: ApprovalPolicy;
  identity_headers?: {
    prefix?: string;
    /** Which identity headers to add upstream (default all); inbound ones with the prefix are always removed. */
    include?: Array<"issuer" | "agent" | "subject" | "client-id" | "actors" | "scopes" | "route">;
  };
  cache?: { tokens?: number };
  /** Which machine credentials a request must carry. Default `"token"`. */
  credentials?: "token" | "signature" | "either" | "both";
  /** Web Bot Auth (RFC 9421): operators whose signed agents are trusted. docs/agents.md */
  signature_agents?: SignatureAgentsPolicy;
  /** This API as an OAuth protected resource (RFC 9728 metadata, MCP authorization). docs/agents.md */
  resource?: ResourcePolicy;
  /** The edge token service: RFC 8693 token exchange (workload identity federation). */
  token_service?: TokenServicePolicy;
  /** Decision-log settings: which events are written, and what extra they carry. */
  log?: LogPolicy;
}

export interface LogPolicy {
  /** Outcomes to log. Default all four. */
  outcomes?: Outcome[];
  /** Share of matching decisions to log, 0–1 (deterministic per request). Default 1. */
  sample?: number;
  /** Token claims copied into events (by name). */
  claims?: string[];
  /** Request headers copied into events (lower-case names); credential headers are refused. */
  headers?: string[];
  /** Agents kept in the live statistics. Default 10000. */
  stats_agents?: number;
}

export interface TokenServicePolicy {
  /** `iss` of minted tokens (the edge's URL). */
  issuer: string;
  /** `kid` of the signing key in use (the others stay published). */
  signing_kid: string;
  /** Default `"5m"`. */
  default_lifetime?: Duration;
  /** Tried in order; the first that matches wins. */
  federation: FederationRule[];
  /** Token requests per client IP (IPv6 by its /64), checked before anything else is read. */
  rate_limit?: { rate: string; burst?: number };
}

export interface FederationRule {
  /** Name, also the minted token's `client_id`. */
  id: string;
  /**
   * The external issuer whose tokens this rule accepts: an issuer entry
   * without `required_claims` and `binding` (exactly one of `jwks` and
   * `jwks_uri`; here `token_type` defaults to any, `max_lifetime` to `"1h"`).
   */
  issuer: Omit<IssuerPolicy, "required_claims" | "binding">;
  /** `sub` patterns the subject token must match. */
  subjects?: string[];
  /** Claim path → allowed values. */
  claims?: Record<string, unknown[]>;
  /** Patterns an actor token's `sub` must match, when one is sent. */
  actors?: string[];
  scopes: string[];
  audiences: string[];
  /** Default `"15m"`. */
  max_lifetime?: Duration;
  require_dpop?: boolean;
}

export interface SignatureAgentsPolicy {
  directories: SignatureDirectoryPolicy[];
  /** Required `tag`. Default `"web-bot-auth"`. */
  tag?: string;
  /** Longest `expires − created` and oldest `created`. Default `"5m"`. */
  max_age?: Duration;
  clock_skew?: Duration;
  /** Require a single-use nonce. Default true. */
  require_nonce?: boolean;
  /**
   * Whether a fetched key directory must carry a valid response signature
   * (`tag="http-message-signatures-directory"`, each key signing for the
   * `directory_uri`'s authority); keys without one are not trusted.
   * `"unchecked"` trusts the URL alone. Default `"required"`.
   */
  directory_signatures?: "required" | "unchecked";
}

/** One operator; give exactly one of `keys` (inline) and `directory_uri` (fetched by the host). */
export interface SignatureDirectoryPolicy {
  /** As its `Signature-Agent` header names it, e.g. `"https://crawler.example"`. */
  operator: string;
  keys?: Jwks;
  /** `…/.well-known/http-message-signatures-directory` */
  directory_uri?: string;
  /** Scopes this operator's agents get. */
  scopes?: string[];
}

export interface ResourcePolicy {
  /** The resource identifier tokens must name as audience (RFC 8707). */
  identifier: string;
  /** Where the RFC 9728 metadata is served; every 401 points to it. */
  metadata_url: string;
  authorization_servers: string[];
  name?: string;
  documentation?: string;
}

/** Give exactly one of `jwks` (inline keys) and `jwks_uri` (fetched by the host). */
export interface IssuerPolicy {
  iss: string;
  audiences: string[];
  jwks?: Jwks;
  jwks_uri?: string;
  algorithms: Algorithm[];
  /** Required JWS `typ`; `null` accepts any. Default `"at+jwt"`. */
  token_type?: string | null;
  max_lifetime?: Duration;
  clock_skew?: Duration;
  required_claims?: string[];
  binding?: "none" | "mtls" | "dpop";
}

export interface DpopPolicy {
  algorithms?: Algorithm[];
  max_age?: Duration;
  clock_skew?: Duration;
  nonce?: boolean;
  replay_cache?: number;
}

export interface AttestationPolicy {
  header?: string;
  embedded_claim?: string;
  /** At least one, unless `embedded_claim` is set. */
  issuers?: AttestationIssuerPolicy[];
  require?: { spiffe_id?: string[]; claims?: Record<string, unknown[]> };
  bind_to_actor?: boolean;
}

export interface AttestationIssuerPolicy {
  iss: string;
  kind: "jwt_svid" | "attestation_result";
  audiences: string[];
  jwks?: Jwks;
  jwks_uri?: string;
  algorithms: Algorithm[];
  token_type?: string | null;
  max_lifetime?: Duration;
  clock_skew?: Duration;
}

export interface DelegationPolicy {
  max_depth?: number;
  actors?: string[];
  subjects?: string[];
  require_actor?: boolean;
}

export interface RoutePolicy {
  id: string;
  /** Upper-case methods, or `["*"]`. */
  methods: string[];
  /** Literal segments, `*`, `{name}` (captured), and a final `**`. */
  path: string;
  scopes?: string[];
  risk?: "low" | "high" | "critical";
  network?: NetworkPolicy;
  authorization_details?: { type: string; actions?: string[]; identifier?: string; locations?: string[] };
  /** Conditions on the JSON body that send a request to the approval gate (any one met). */
  approval_when?: BodyCondition[];
}

type BodyScalar = string | number | boolean | null;
/**
 * `body` is an RFC 6901 JSON Pointer (`/amount`); exactly one test. A missing
 * value, a value of the wrong type, or a body that is absent, larger than
 * 64 KiB, not JSON or with a duplicate key meets the condition.
 */
export type BodyCondition = { body: string } & (
  | BodyTest<"gt", number>
  | BodyTest<"gte", number>
  | BodyTest<"lt", number>
  | BodyTest<"lte", number>
  | BodyTest<"eq", string | number | boolean>
  | BodyTest<"in", BodyScalar[]>
  | BodyTest<"not_in", BodyScalar[]>
);
type BodyTestName = "gt" | "gte" | "lt" | "lte" | "eq" | "in" | "not_in";
/** Test `K` with a `V`, and none of the others. */
type BodyTest<K extends BodyTestName, V> = { [P in K]: V } & { [P in Exclude<BodyTestName, K>]?: never };

export interface RevocationLists {
  jti?: string[];
  sub?: string[];
  agents?: string[];
  kid?: string[];
}

/** `revocation_list`: where the host fetches a `RevocationLists` document, and how fresh it must be. */
export interface RevocationListPolicy {
  /** An `https://` (or `http://`) URL serving JSON shaped like `RevocationLists` (unknown fields refused). */
  uri: string;
  /** How often the list is fetched again. Default `"1m"`. */
  refresh?: Duration;
  /** The oldest list decisions may rely on; past it, 503 `state_unavailable`. At least `refresh`. Default `"1h"`. */
  max_stale?: Duration;
}

export interface NetworkPolicy {
  /** CIDRs, e.g. `"10.0.0.0/8"`, `"2001:db8::/32"`. */
  allow: string[];
}

export interface LimitPolicy {
  id?: string;
  per: "agent" | "route" | "issuer" | "agent_route";
  /** `"100/1m"`: requests per period. */
  rate: string;
  burst?: number;
  routes?: string[];
}

export interface CircuitBreakerPolicy {
  /** Default `"10s"`. */
  window?: Duration;
  max_requests?: number;
  max_deny_ratio?: number;
  min_requests?: number;
  profile_requests?: number;
  max_unusual?: number;
  /** How long a tripped agent stays revoked. Default `"15m"`. */
  cooldown?: Duration;
}

export interface ApprovalPolicy {
  issuer: string;
  jwks?: Jwks;
  jwks_uri?: string;
  algorithms: Algorithm[];
  audiences: string[];
  endpoint: string;
  token_type?: string;
  header?: string;
  max_lifetime?: Duration;
  clock_skew?: Duration;
  replay_cache?: number;
}

/** One problem with a policy. */
export interface PolicyProblem {
  /** JSON path, e.g. `issuers[0].max_lifetime`, or `.` for the document. */
  path: string;
  message: string;
  line?: number;
  column?: number;
}

// ---------------------------------------------------------------------------
// Request (the core's request object)

export interface CoreRequest {
  method: string;
  /** Default `"https"`. */
  scheme?: "https" | "http";
  host?: string;
  /** Request target: path and optional `?query`. */
  path: string;
  /** A name maps to one value, or several when the header was repeated. */
  headers?: Record<string, string | string[]>;
  source_ip?: string;
  /** Client certificate SHA-256: 64 hex digits or 43 base64url characters. */
  client_cert_sha256?: string;
  /** Request body SHA-256 (hex or base64url). */
  body_sha256?: string;
  /** The body as text, for routes with `approval_when` (`guard.bodyUse` says when); its SHA-256 becomes `body_sha256`. */
  body?: string;
  /** Unix seconds (may be fractional). */
  now: number;
}

/** What `toCoreRequest` adds to a Fetch `Request`. */
export interface RequestContext {
  clientIp?: string;
  /** A header carrying the client IP that a trusted proxy overwrites (off Cloudflare). */
  clientIpHeader?: string;
  clientCertSha256?: string;
  bodySha256?: string;
  /** The request body as text, for routes with `approval_when` (see `AgentGuard.bodyUse`, `requestBodyContext`). */
  body?: string;
  /** Milliseconds since the epoch. Default `Date.now()`. */
  now?: number;
  /**
   * Keeps a background refresh (of the policy's `revocation_list`) alive
   * after the response: Workers' `ctx.waitUntil`. `withAgentGuard` passes it itself.
   */
  waitUntil?: (promise: Promise<unknown>) => void;
}

// ---------------------------------------------------------------------------
// Decision

export type Outcome = "allow" | "deny" | "approval_required" | "revoked";

/** Stable reason codes: docs/reason-codes.md. */
export type ReasonCode = string;

export interface Reason {
  code: ReasonCode;
  /** Lowercase, concrete: "token expired 42 s ago". */
  message: string;
}

export interface Identity {
  issuer: string;
  subject?: string;
  agent: string;
  client_id?: string;
  actors: string[];
  scopes: string[];
  jti?: string;
  expires_at: number;
}

export interface TraceStep {
  stage: string;
  result: "pass" | "fail" | "skip";
  detail: string;
}

/** The response to send instead of forwarding (lower-case header names). */
export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  /** `application/problem+json` (RFC 9457). */
  body: string;
}

export interface ApprovalChallenge {
  action_digest: string;
  binding_message: string;
  agent: string;
  approval_endpoint?: string;
}

/** Why the circuit breaker tripped. */
export type BreakerTripKind = "burst" | "deny_ratio" | "unusual_routes";

/** A circuit-breaker suspension, as `suspendedAgents` lists it (without `agent`). */
export interface Suspension {
  until_ms: number;
  kind: BreakerTripKind;
  detail: string;
}

export interface DecisionEvent {
  v: 1;
  time_ms: number;
  decision: Outcome;
  status: number;
  reasons: ReasonCode[];
  route?: string;
  method: string;
  host: string;
  path: string;
  source_ip?: string;
  agent?: {
    issuer: string;
    subject?: string;
    agent: string;
    actors: string[];
    client_id?: string;
    token_hash: string;
  };
  cache_hit: boolean;
  limit?: string;
  /** The workload attestation that passed: the attested workload and who vouched for it. */
  attestation?: { workload: string; issuer: string };
  breaker?: { kind: BreakerTripKind; detail: string; until_ms: number };
  approval_digest?: string;
  /** Token claims named by the policy's `log.claims`. */
  claims?: Record<string, unknown>;
  /** Request headers named by `log.headers` (never credentials). */
  headers?: Record<string, string>;
  /** Decision time the host measured (µs); the core has no clock. */
  duration_us?: number;
  [field: string]: unknown;
}

export interface Decision {
  decision: Outcome;
  /** 200 for allow. */
  status: number;
  /** Empty on allow. */
  reasons: Reason[];
  route?: string;
  params?: Record<string, string>;
  identity?: Identity;
  /** Headers to add upstream (allow only). */
  forward_headers: Record<string, string>;
  /** Inbound headers starting with this prefix are removed before forwarding. */
  strip_header_prefix: string;
  approval?: ApprovalChallenge;
  /** Present for every outcome but allow. */
  response?: HttpResponse;
  /** Every stage's result, in pipeline order; `[]` unless the guard was created with `trace: true`. */
  trace: TraceStep[];
  event: DecisionEvent;
  /** Whether the policy's `log` settings (outcome filter, sampling) want `event` written. */
  log: boolean;
}

// ---------------------------------------------------------------------------
// API

export class PolicyError extends Error {
  readonly problems: PolicyProblem[];
}

export interface JwksCacheOptions {
  /** Seconds; `Cache-Control: max-age` is clamped to [minTtl, maxTtl]. Defaults 60 / 86400. */
  minTtl?: number;
  maxTtl?: number;
  /** Seconds, when the response has no max-age. Default 300. */
  defaultTtl?: number;
  /** Seconds between unknown-`kid` refreshes of one URL. Default 30. */
  cooldown?: number;
  /** Seconds to wait after a failed fetch. Default 30. */
  retryAfterError?: number;
  /**
   * Milliseconds one request of a fetch may take. Default 5000. A caller
   * waits for a shared fetch at most this per request it makes (two when
   * issuer metadata is followed) plus 1 s; past that the fetch counts as
   * failed, even if it never settles.
   */
  timeoutMs?: number;
  fetch?: typeof fetch;
  /** Milliseconds since the epoch. */
  now?: () => number;
  log?: (line: string) => void;
  /** For other key documents: the request's `Accept`. Default `"application/jwk-set+json, application/json"`. */
  accept?: string;
  /** Follow issuer metadata (RFC 8414 / OpenID) to its `jwks_uri`. Default true (`DirectoryCache`: false). */
  discovery?: boolean;
  /** What log lines call the document. Default `"JWKS"`. */
  label?: string;
}

export interface JwksEntry {
  text: string;
  /** The response's `Signature-Input`, `Signature` and `Content-Digest`, when sent (a key directory's response signature). */
  signatureInput?: string;
  signature?: string;
  contentDigest?: string;
  generation: number;
  expiresAt: number;
  stale: boolean;
}

export class JwksCache {
  constructor(options?: JwksCacheOptions);
  /** `issuer`: the policy's `iss` for `uri`; a discovered metadata document's `issuer` must equal it. */
  get(uri: string, issuer?: string): Promise<JwksEntry | null>;
  refreshForUnknownKid(uri: string, issuer?: string): Promise<JwksEntry | null>;
  stats(uri: string): { fetches: number; generation: number; expiresAt: number; lastError: string | null } | null;
  clear(): void;
}

/** The isolate-wide JWKS cache. */
export const jwksCache: JwksCache;

/**
 * A `JwksCache` for Web Bot Auth key directories
 * (`/.well-known/http-message-signatures-directory`, named by
 * `signature_agents.directories[].directory_uri`): directory media type, no
 * issuer-metadata discovery; refreshed (under the cooldown) when a signature's
 * `keyid` is in no trusted directory.
 */
export class DirectoryCache extends JwksCache {}
/** The isolate-wide key-directory cache. */
export const directoryCache: DirectoryCache;
export interface RevocationListCacheOptions {
  /** Seconds before the next attempt after a failed fetch or a refused document (at most the list's `refresh`). Default 10. */
  retryAfterError?: number;
  /** Per fetch. Default 5000. */
  timeoutMs?: number;
  /** The longest list read. Default 4 MiB (the core's cap). */
  maxBytes?: number;
  fetch?: typeof fetch;
  /** Milliseconds since the epoch. */
  now?: () => number;
  log?: (line: string) => void;
}

/** A fetched revocation list: its text, when the server last sent or confirmed it (ms), and its generation. */
export interface RevocationListEntry {
  text: string;
  fetchedAt: number;
  generation: number;
}

/** The policy's `revocation_list` limits, as the engine reports them. */
export interface RevocationListLimits {
  refresh_s?: number;
  max_stale_s?: number;
}

/**
 * Revocation lists by URL, per isolate: single-flight fetches, `ETag` /
 * `If-None-Match`, a 4 MiB cap, the last good list kept when a fetch fails
 * or the engine refuses a document. The engine parses the lists and decides
 * how old one may be.
 */
export class RevocationListCache {
  constructor(options?: RevocationListCacheOptions);
  /** The list in hand; never fetches. */
  peek(uri: string): RevocationListEntry | null;
  /** Fetches now (single-flight; not during a failed attempt's back-off); the list in hand afterwards. Never rejects. */
  refresh(uri: string, list?: RevocationListLimits): Promise<RevocationListEntry | null>;
  /** The engine refused `generation`: the previous list is handed out again. */
  rejected(uri: string, generation: number, message: string, list?: RevocationListLimits): void;
  stats(uri: string): {
    fetches: number;
    notModified: number;
    generation: number;
    fetchedAt: number | null;
    lastError: string | null;
    lastErrorAt: number | null;
  } | null;
  clear(): void;
}
/** The isolate-wide revocation-list cache. */
export const revocationListCache: RevocationListCache;
/** The largest revocation list read: 4 MiB (the core's cap). */
export const MAX_REVOCATION_LIST_BYTES: number;

/** Where the policy's `revocation_list` stands (`AgentGuard.revocationListStatus`, `stats().revocationList`). */
export interface RevocationListStatus {
  uri: string;
  refreshS: number;
  maxStaleS: number;
  /** Whether the list must be signed (`revocation_list.jwks`). */
  signed: boolean;
  /**
   * When the list in force was fetched or confirmed (`304`), Unix ms; for a
   * signed list when it was signed (its `iat`: its age counts from there);
   * `null` before the first.
   */
  loadedAtMs: number | null;
  /** Entries of the fetched list in force; `null` before the first. */
  entries: number | null;
  /** Fetches made for this URL in the isolate, and how many were answered `304`. */
  fetches: number;
  notModified: number;
  /** The last failed fetch or refused document; `null` since a good one. */
  lastError: string | null;
  lastErrorAtMs: number | null;
}

/** Algorithms verified by the platform's native crypto by default (`hostVerify`). */
export const DEFAULT_HOST_ALGORITHMS: Algorithm[];
/** Who verifies `hostVerify` signatures: see `GuardOptions.hostCrypto`. */
export type HostCrypto = "platform" | "webcrypto";

export interface GuardOptions {
  jwksCache?: JwksCache;
  directoryCache?: DirectoryCache;
  /** For the policy's `revocation_list`. Default the isolate-wide `revocationListCache`. */
  revocationListCache?: RevocationListCache;
  log?: (line: string) => void;
  /**
   * Algorithms whose signatures the platform's native crypto verifies; `[]`
   * keeps all in Wasm. Default `DEFAULT_HOST_ALGORITHMS` (ES256, RS256, PS256).
   */
  hostVerify?: Algorithm[];
  /**
   * Which native crypto verifies them: `"platform"` (default: node:crypto's
   * synchronous verify in Node, WebCrypto in Workers and browsers) or
   * `"webcrypto"` (WebCrypto everywhere).
   */
  hostCrypto?: HostCrypto;
  /** Secret for DPoP nonces; share it across instances. Default random. */
  dpopNonceSecret?: string | Uint8Array;
  /** Fill in `decision.trace` (every stage's result). Default `false`: `trace` is `[]`, decisions cost less. */
  trace?: boolean;
  /** The token service's private JWK Set (keys with `d` and `kid`); from a secret, never the policy. */
  signingKeys?: Jwks | string;
  /**
   * The longest request body `decide` reads (from a clone) for a route with
   * `approval_when` conditions or a high-risk route; a longer one is refused
   * 413. Default 1 MiB (`MAX_BODY_BYTES`).
   */
  maxBodyBytes?: number;
}

/** Where `serveEndpoint` answers (paths, from the policy's `resource` and `token_service`). */
export interface GatewayEndpoints {
  resource_metadata: string[];
  token?: string;
  jwks?: string;
  authorization_server: string[];
}

/** RFC 9728 protected-resource metadata, as the core builds it from the policy. */
export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  scopes_supported: string[];
  bearer_methods_supported: string[];
  dpop_signing_alg_values_supported: string[];
  resource_name?: string;
  resource_documentation?: string;
}

/** RFC 8414 metadata of the token service. */
export interface AuthorizationServerMetadata {
  issuer: string;
  token_endpoint: string;
  jwks_uri: string;
  grant_types_supported: string[];
  token_endpoint_auth_methods_supported: string[];
  dpop_signing_alg_values_supported: string[];
}

export interface GuardStats {
  decisions: number;
  outcomes: Record<string, number>;
  reasons: Record<string, number>;
  routes: Record<string, number>;
  agents: Record<
    string,
    {
      requests: number;
      allowed: number;
      denied: Record<string, number>;
      approvals_requested: number;
      revocations: number;
      routes: Record<string, number>;
      /** Unix milliseconds of the agent's last request. */
      last_seen_ms: number;
    }
  >;
  agents_evicted: number;
  cachedTokens: number;
  stateKeys: number;
  remoteIssuers: number;
  /** With a `revocation_list` in the policy. */
  revocationList?: RevocationListStatus;
}

export class AgentGuard {
  static create(policy: Policy | string, options?: GuardOptions): Promise<AgentGuard>;
  static createSync(policy: Policy | string, options?: GuardOptions): AgentGuard;
  readonly remoteIssuers: { iss: string; jwks_uri: string }[];
  /**
   * What to read of the body of `method target` (path and query) before deciding:
   * `"text"` (give `context.body`), `"digest"` (give `context.bodySha256`) or `"none"`.
   */
  bodyUse(method: string, target: string): BodyUse;
  /**
   * Decides a Fetch `Request`; never rejects for a decision. Where the route
   * needs the body and `context` has neither `body` nor `bodySha256`, reads it
   * from a clone (up to `maxBodyBytes`; longer: 413, unreadable: 400).
   */
  decide(request: Request, context?: RequestContext): Promise<Decision>;
  decideRequest(input: CoreRequest): Promise<Decision>;
  /**
   * `decide` for a core request object: keys and the revocation list
   * refreshed first, like `decide`; `hooks.waitUntil` keeps a background refresh alive.
   */
  decideCore(input: CoreRequest, hooks?: { waitUntil?: (promise: Promise<unknown>) => void }): Promise<Decision>;
  decideInput(input: CoreRequest): Decision;
  refreshKeys(): Promise<void>;
  /** Replaces the policy's `revoked` lists (a fetched `revocation_list` stays in force on top). */
  setRevocations(lists: RevocationLists): void;
  /** Fetches the policy's `revocation_list` now and puts it in force; failures are logged. `undefined` without one. */
  refreshRevocationList(): Promise<RevocationListStatus | undefined>;
  /** Where the policy's `revocation_list` stands; `undefined` without one. */
  revocationListStatus(): RevocationListStatus | undefined;
  setIssuerKeys(iss: string, jwks: Jwks | string): { index: number; message: string; skipped: boolean }[];
  /**
   * A Web Bot Auth key directory the caller fetched (its body as text), with
   * the response's signature headers; only signed keys are kept unless the
   * policy sets `directory_signatures: "unchecked"`. Throws when refused.
   */
  setDirectoryKeys(
    operator: string,
    text: string,
    headers?: { signatureInput?: string; signature?: string; contentDigest?: string },
    nowMs?: number,
  ): { index: number; message: string; skipped: boolean }[];
  stats(): GuardStats;
  suspendedAgents(nowMs?: number): Array<Suspension & { agent: string }>;
  liftSuspension(agent: string): boolean;
  /** Puts a suspension back in force (e.g. one kept in Durable Object storage); never shortens one in force. */
  restoreSuspension(agent: string, suspension: Suspension): boolean;
  /**
   * The record to keep of the approval in `input`, once that request was
   * allowed with one (`decision.event.approval_digest` set): the approval's
   * replay key and the Unix time (s) past which it cannot be valid; `null`
   * without an approval. Hand it back with `restoreApproval` after a restart.
   */
  approvalRecord(input: CoreRequest): ApprovalRecord | null;
  /** Puts a kept approval record back: a request with it is `approval_replayed`. `false`: no room. */
  restoreApproval(record: ApprovalRecord, nowMs?: number): boolean;
  dpopNonce(nowMs?: number): string | undefined;
  /** RFC 9728 metadata, when the policy has a `resource` section. */
  resourceMetadata(): ProtectedResourceMetadata | undefined;
  /** RFC 8414 metadata, when the policy has a `token_service`. */
  tokenServiceMetadata(): AuthorizationServerMetadata | undefined;
  /** The token service's public JWKS (every loaded signing key). */
  tokenServiceJwks(): Jwks;
  /** Loads the private signing keys; returns how many; throws (keeping the old ones) when refused. */
  setSigningKeys(jwks: Jwks | string): number;
  readonly endpoints: GatewayEndpoints | null;
  /** RFC 8693 token exchange: the RFC 8693 response or an RFC 6749 §5.2 error (`Cache-Control: no-store`). */
  exchange(request: Request, context?: RequestContext): Promise<Response>;
  /** The gateway's own endpoints (metadata, /token, JWKS); `undefined` for any other request. */
  serveEndpoint(request: Request, context?: RequestContext): Promise<Response | undefined>;
  free(): void;
}

export function toCoreRequest(request: Request, context?: RequestContext): CoreRequest;
/**
 * A core request in the engine's line form (what `decide` sends when it
 * fits), or `null` when it does not (a line break, a wrong type, an unknown
 * field) and the request goes as JSON.
 */
export function requestLines(input: CoreRequest): string | null;
export function toResponse(decision: Decision): Response;
export function failClosedResponse(reason: string, detail: string): Response;
export function forwardRequest(request: Request, decision: Decision): Request;
export function stripIdentityHeaders(headers: Headers, prefix: string): Headers;
export function bodySha256(request: Request): Promise<string | undefined>;

/** What the core needs of a request's body: `AgentGuard.bodyUse`. */
export type BodyUse = "text" | "digest" | "none";
/** The longest body the core reads as text for `approval_when` (64 KiB). */
export const MAX_BODY_TEXT_BYTES: number;
/** Default `maxBodyBytes` (1 MiB): the longest body read to hash it for an approval. */
export const MAX_BODY_BYTES: number;
/** A body that cannot be bound to an approval: 413 (too long) or 400 (unreadable). */
export interface BodyRefusal {
  status: 400 | 413;
  message: string;
}
/**
 * Reads what the core needs of `request`'s body (from a clone, at most
 * `maxBodyBytes`), as `toCoreRequest` context. Never rejects.
 */
export function requestBodyContext(
  guard: AgentGuard,
  request: Request,
  options?: { hashBody?: boolean; maxBodyBytes?: number },
): Promise<{ context: Pick<RequestContext, "body" | "bodySha256">; refused?: undefined } | { refused: BodyRefusal; context?: undefined }>;
/** The decision (`request_invalid`, 413 or 400) for a body `requestBodyContext` refused. */
export function bodyRefused(input: CoreRequest, refusal: BodyRefusal): Decision;
export function checkPolicy(policy: Policy | string): PolicyProblem[];
export function mint(privateJwk: Jwk, claims: Record<string, unknown>, typ?: string): string;
export function version(): string;

export interface KvNamespaceLike {
  get(key: string, options?: { type: "text"; cacheTtl?: number }): Promise<string | null>;
}

export interface PolicySourceOptions {
  /** Inline policy (wins over the others). */
  policy?: Policy | string;
  /** Environment text binding with the policy JSON. Default `AGENTGUARD_POLICY`. */
  policyVar?: string;
  /** KV namespace binding and key. Default `{binding: "AGENTGUARD_KV", key: "policy.json"}`. */
  policyKv?: { binding: string; key?: string };
}

export function loadPolicyText(env?: Record<string, unknown>, options?: PolicySourceOptions): Promise<string>;

export type Handler<Env = any, Ctx = any> = (
  request: Request,
  env: Env,
  ctx: Ctx,
  decision: Decision,
) => Response | Promise<Response>;

export interface AgentGuardMiddlewareOptions<Env = any, Ctx = any> extends PolicySourceOptions {
  context?: (request: Request, env: Env, ctx: Ctx) => RequestContext | Promise<RequestContext>;
  /**
   * `true`: hash every request's body. Default: only where the route needs
   * it (`approval_when`: its text; `risk: high`/`critical`: its SHA-256).
   */
  hashBody?: boolean;
  /** The longest body read to hash it for an approval; a longer one to such a route is refused 413. Default 1 MiB. */
  maxBodyBytes?: number;
  directoryCache?: DirectoryCache;
  /** For the policy's `revocation_list` (refreshed in the background through `ctx.waitUntil`). Default the isolate-wide one. */
  revocationListCache?: RevocationListCache;
  /** Default: log `decision.event` as one JSON line (when `decision.log`); `null` turns it off. */
  onDecision?: ((decision: Decision, request: Request, env: Env, ctx: Ctx) => void) | null;
  /** Re-read the env/KV policy this often (ms). Default 60 000. A failed reload keeps the last good policy. */
  policyTtlMs?: number;
  /** Analytics Engine dataset binding: one `analyticsDataPoint` per logged decision. Default `AGENTGUARD_ANALYTICS`, used when bound. */
  analyticsBinding?: string;
  jwksCache?: JwksCache;
  log?: (line: string) => void;
  hostVerify?: Algorithm[];
  hostCrypto?: HostCrypto;
  /** Default: the env secret `AGENTGUARD_DPOP_NONCE_SECRET`, else random per isolate. */
  dpopNonceSecret?: string | Uint8Array;
  /** Fill in `decision.trace` (see `GuardOptions.trace`). Default `false`. */
  trace?: boolean;
  /** The token service's private JWK Set. Default: the env secret `AGENTGUARD_SIGNING_KEYS`. */
  signingKeys?: Jwks | string;
  /** Durable Object namespace binding for shared per-agent state; used when bound. Default `AGENTGUARD_STATE`. */
  stateBinding?: string;
  /** Policy route id that turns on `GET /_agentguard/stats`. Default: env text `AGENTGUARD_STATS_ROUTE`, else off. */
  statsRoute?: string;
  /** Policy route id that turns on `POST /_agentguard/suspensions/lift`. Default: env text `AGENTGUARD_LIFT_ROUTE`, else off. */
  liftRoute?: string;
}

// Shared per-agent state (js/src/durable.js, docs/workers.md "Shared state").

/** The agent a core request claims to be, UNVERIFIED (routing only); `undefined` when it names none. */
export function routingKey(input: CoreRequest, credentials?: "token" | "signature" | "either" | "both"): string | undefined;

/** The Durable Object class holding agents' state; bind it as `AGENTGUARD_STATE`. */
export class AgentStateObject {
  constructor(state: unknown, env?: Record<string, unknown>);
  fetch(request: Request): Promise<Response>;
}

export interface DurableObjectNamespaceLike {
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(input: string, init?: RequestInit): Promise<Response> };
}

/**
 * Decides `input` in its agent's object of `namespace` (requests naming no agent
 * locally with `guard`). Never rejects: a failing object gives `stateUnavailable`.
 */
export function decideShared(
  namespace: DurableObjectNamespaceLike,
  guard: AgentGuard,
  input: CoreRequest,
  policyText: string,
  log?: (line: string) => void,
  hooks?: { waitUntil?: (promise: Promise<unknown>) => void },
): Promise<Decision>;

/** A used approval, as a host with durable storage keeps it (`AgentGuard#approvalRecord`). */
export interface ApprovalRecord {
  /** The approval's replay key: base64url of the SHA-256 of the approval token's signed part (`header.payload`). */
  id: string;
  /** Unix seconds past which the approval cannot be valid (its use plus the gate's `max_lifetime` and `clock_skew`). */
  expires_at: number;
}

/** The 503 `state_unavailable` deny, shaped like a core decision. */
export function stateUnavailable(input: CoreRequest, message: string): Decision;

/** A Workers Analytics Engine data point (docs/workers.md lists the columns). */
export interface AnalyticsDataPoint {
  /** `[agent]`, the sampling key. */
  indexes: [string];
  /** decision, first reason, route, method, path, issuer, agent, source IP, limit, breaker trip kind. */
  blobs: string[];
  /** status, decision time (µs), token-cache hit (0/1). */
  doubles: [number, number, number];
}

/** A decision event as an Analytics Engine data point. */
export function analyticsDataPoint(event: DecisionEvent): AnalyticsDataPoint;

export function withAgentGuard<Env = any, Ctx = any>(
  handler: Handler<Env, Ctx>,
  options?: AgentGuardMiddlewareOptions<Env, Ctx>,
): (request: Request, env: Env, ctx: Ctx) => Promise<Response>;
