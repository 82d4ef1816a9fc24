// A realistic policy, typed as `Policy` (the shape of examples/policy.json and
// tests/vectors/policy.json, plus the sections those leave out). Each
// `@ts-expect-error` below is an assertion: tsc fails the suite if the line
// under it compiles (an unused directive is an error).
//
// policies.test.mjs checks the same literals against the core: every policy
// the types accept compiles, every one they refuse is refused there too. So
// this file imports types only (its JavaScript is the literals alone).
import type { Duration, Policy } from "agentguard";

export const policy: Policy = {
  description: "type test: every section a gateway policy usually has",
  realm: "api.example.com",
  issuers: [
    {
      iss: "https://sts.example.com",
      audiences: ["https://api.example.com"],
      jwks: {
        keys: [
          {
            alg: "EdDSA",
            crv: "Ed25519",
            kid: "sts-2026-01",
            kty: "OKP",
            use: "sig",
            x: "NV0bakEiTDl195w_XvhKAVDMHhgtQZZXisS6Z6BG0bY",
          },
        ],
      },
      algorithms: ["EdDSA", "ES256"],
      token_type: "at+jwt",
      max_lifetime: "15m",
      clock_skew: "30s",
      required_claims: ["sub", "iat", "jti", "client_id"],
      binding: "dpop",
    },
    {
      iss: "https://login.partner.example",
      audiences: ["https://api.example.com"],
      jwks_uri: "https://login.partner.example/.well-known/jwks.json",
      algorithms: ["RS256", "PS256"],
      token_type: null,
    },
  ],
  dpop: { algorithms: ["ES256", "EdDSA"], max_age: "5m", nonce: true, replay_cache: 100_000 },
  delegation: {
    max_depth: 2,
    actors: ["spiffe://prod.example.com/agents/*"],
    subjects: ["user:*"],
    require_actor: true,
  },
  routes: [
    { id: "list-contacts", methods: ["GET"], path: "/v1/contacts", scopes: ["crm.read"] },
    { id: "read-contact", methods: ["GET"], path: "/v1/contacts/{id}/**", scopes: ["crm.read"], risk: "low" },
    { id: "draft-email", methods: ["POST"], path: "/v1/drafts", scopes: ["mail.draft"] },
    {
      id: "pay-invoice",
      methods: ["POST"],
      path: "/v1/invoices/{id}/pay",
      scopes: ["payments.write"],
      risk: "high",
      network: { allow: ["10.0.0.0/8"] },
    },
    { id: "ops-stats", methods: ["GET"], path: "/_agentguard/stats", scopes: ["ops.read"], risk: "critical" },
    {
      id: "transfer",
      methods: ["POST"],
      path: "/v1/transfers",
      scopes: ["payments.write"],
      approval_when: [
        { body: "/amount", gt: 1000 },
        { body: "/currency", not_in: ["EUR", "USD"] },
        { body: "/payee/flagged", in: [true, null] },
      ],
    },
  ],
  default: "deny",
  revoked: { agents: ["spiffe://prod.example.com/agents/legacy-importer"], jti: ["revoked-jti-1"] },
  revocation_list: { uri: "https://revocations.example.com/list.json", refresh: "1m", max_stale: "1h" },
  network: { allow: ["10.0.0.0/8", "2001:db8::/32"] },
  limits: [
    { id: "per-agent", per: "agent", rate: "120/1m", burst: 30 },
    { id: "payments", per: "agent_route", rate: "10/1h", burst: 4, routes: ["pay-invoice"] },
  ],
  circuit_breaker: { window: "10s", max_requests: 100, max_deny_ratio: 0.5, min_requests: 20, cooldown: "15m" },
  state: { max_keys: 100_000 },
  approval: {
    issuer: "https://approvals.example.com",
    jwks: {
      keys: [
        {
          alg: "EdDSA",
          crv: "Ed25519",
          kid: "approvals-2026-01",
          kty: "OKP",
          use: "sig",
          x: "EnSgtg1p1pzLEZ2G5f--SOoxVJeVslm1wke-TIosiKI",
        },
      ],
    },
    algorithms: ["EdDSA"],
    audiences: ["https://api.example.com"],
    endpoint: "https://approvals.example.com/bc-authorize",
    max_lifetime: "10m",
  },
  identity_headers: { prefix: "x-agent-", include: ["agent", "subject", "scopes", "route"] },
  cache: { tokens: 10_000 },
  credentials: "either",
  log: {
    outcomes: ["deny", "approval_required", "revoked"],
    sample: 0.25,
    claims: ["client_id"],
    headers: ["user-agent"],
    stats_agents: 5_000,
  },
  signature_agents: {
    directories: [
      {
        operator: "https://crawler.example",
        directory_uri: "https://crawler.example/.well-known/http-message-signatures-directory",
      },
    ],
    max_age: "5m",
    directory_signatures: "required",
  },
  resource: {
    identifier: "https://api.example.com",
    metadata_url: "https://api.example.com/.well-known/oauth-protected-resource",
    authorization_servers: ["https://sts.example.com"],
  },
};

// A policy with only the required sections, and the defaults a breaker has.
export const minimal: Policy = {
  issuers: [
    { iss: "https://sts.test", audiences: ["https://api.test"], jwks_uri: "https://sts.test/jwks", algorithms: ["EdDSA"] },
  ],
  routes: [{ id: "all", methods: ["*"], path: "/**" }],
  circuit_breaker: { max_requests: 500 },
};

// The edge token service (RFC 8693 token exchange).
export const tokenService: Policy = {
  ...minimal,
  token_service: {
    issuer: "https://edge.example.com",
    signing_kid: "edge-2026-01",
    default_lifetime: "5m",
    rate_limit: { rate: "30/1m", burst: 10 },
    federation: [
      {
        id: "ci",
        issuer: {
          iss: "https://token.actions.githubusercontent.com",
          audiences: ["https://edge.example.com"],
          jwks_uri: "https://token.actions.githubusercontent.com/.well-known/jwks",
          algorithms: ["RS256"],
        },
        subjects: ["repo:acme/agents:ref:refs/heads/main"],
        claims: { repository: ["acme/agents"] },
        scopes: ["crm.read"],
        audiences: ["https://api.example.com"],
        max_lifetime: "15m",
        require_dpop: true,
      },
    ],
  },
};

export const fiveMinutes: Duration = "5m";

// ---------------------------------------------------------------------------
// What the types refuse.

export const misspelled: Policy = {
  ...minimal,
  // @ts-expect-error: a misspelled section (`circuit_breakr`) is not a policy field
  circuit_breakr: { max_requests: 10 },
};

export const badRisk: Policy = {
  ...minimal,
  // @ts-expect-error: `risk` is "low" | "high" | "critical"
  routes: [{ id: "pay", methods: ["POST"], path: "/v1/pay", risk: "medium" }],
};

export const twoTests: Policy = {
  ...minimal,
  approval: policy.approval,
  routes: [
    // @ts-expect-error: one test per body condition (`gt` and `lt` are two)
    { id: "t", methods: ["POST"], path: "/t", approval_when: [{ body: "/amount", gt: 1, lt: 5 }] },
  ],
};

export const badDirectorySignatures: Policy = {
  ...minimal,
  signature_agents: {
    directories: policy.signature_agents!.directories,
    // @ts-expect-error: `directory_signatures` is "required" | "unchecked"
    directory_signatures: "optional",
  },
};

export const noTest: Policy = {
  ...minimal,
  approval: policy.approval,
  routes: [
    // @ts-expect-error: a body condition needs a test
    { id: "t", methods: ["POST"], path: "/t", approval_when: [{ body: "/amount" }] },
  ],
};

export const noPath: Policy = {
  ...minimal,
  // @ts-expect-error: a route without `path`
  routes: [{ id: "pay", methods: ["POST"] }],
};

// @ts-expect-error: a policy without `routes`
export const noRoutes: Policy = { issuers: minimal.issuers };

export const noAlgorithms: Policy = {
  ...minimal,
  // @ts-expect-error: an issuer without `algorithms`
  issuers: [{ iss: "https://sts.test", audiences: ["https://api.test"], jwks_uri: "https://sts.test/jwks" }],
};

export const hmac: Policy = {
  ...minimal,
  // @ts-expect-error: HS256 is not an algorithm agentguard verifies
  issuers: [{ iss: "https://sts.test", audiences: ["a"], jwks_uri: "https://sts.test/jwks", algorithms: ["HS256"] }],
};

export const noUnit: Policy = {
  ...minimal,
  issuers: [
    {
      iss: "https://sts.test",
      audiences: ["https://api.test"],
      jwks_uri: "https://sts.test/jwks",
      algorithms: ["EdDSA"],
      // @ts-expect-error: a duration needs a unit (s, m, h, d)
      max_lifetime: "300",
    },
  ],
};

// @ts-expect-error: only "deny" is a default
export const defaultAllow: Policy = { ...minimal, default: "allow" };

// @ts-expect-error: `credentials` is "token" | "signature" | "either" | "both"
export const anyCredential: Policy = { ...minimal, credentials: "any" };

export const badHeader: Policy = {
  ...minimal,
  // @ts-expect-error: "email" is not an identity header
  identity_headers: { include: ["agent", "email"] },
};

export const badLogOutcome: Policy = {
  ...minimal,
  // @ts-expect-error: log outcomes are Outcome values ("allowed" is not one)
  log: { outcomes: ["allowed"] },
};

export const badLimitKey: Policy = {
  ...minimal,
  // @ts-expect-error: a limit is per "agent" | "route" | "issuer" | "agent_route"
  limits: [{ per: "user", rate: "10/1m" }],
};

export const revocationListNoUri: Policy = {
  ...minimal,
  // @ts-expect-error: a revocation list needs its `uri`
  revocation_list: { refresh: "1m" },
};

export const revocationListNoUnit: Policy = {
  ...minimal,
  // @ts-expect-error: `refresh` is a duration with a unit
  revocation_list: { uri: "https://revocations.example.com/list.json", refresh: "60" },
};

export const federationBinding: Policy = {
  ...minimal,
  token_service: {
    issuer: "https://edge.example.com",
    signing_kid: "edge-2026-01",
    federation: [
      {
        id: "ci",
        issuer: {
          iss: "https://ci.example.com",
          audiences: ["https://edge.example.com"],
          jwks_uri: "https://ci.example.com/jwks",
          algorithms: ["ES256"],
          // @ts-expect-error: a federation issuer has no `binding` (a rule binds minted tokens with `require_dpop`)
          binding: "dpop",
        },
        scopes: ["crm.read"],
        audiences: ["https://api.example.com"],
      },
    ],
  },
};

/** The policies the types accept (the core must accept them). */
export const accepted = { policy, minimal, tokenService };
/** The policies the types refuse (the core must refuse them). */
export const refused = {
  misspelled,
  federationBinding,
  badRisk,
  twoTests,
  noTest,
  noPath,
  noRoutes,
  noAlgorithms,
  hmac,
  noUnit,
  defaultAllow,
  anyCredential,
  badHeader,
  badLogOutcome,
  badLimitKey,
  revocationListNoUri,
  revocationListNoUnit,
};
