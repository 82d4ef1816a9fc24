// Starter policies, each with policy tests in the CLI's format
// (`agentguard test`: `{"policy": "policy.json", "cases": [{name, request, expect}]}`).
//
// "Payments behind approval" is examples/policy.json with
// examples/policy.tests.json, byte for byte (the build copies them). The
// others are written here against the same world and use the key ring's
// public keys; their test cases are minted when the starter is loaded, at the
// fixed time T0, so they are ordinary, self-contained cases the CLI runs too.

import { publicJwk } from "./crypto.js";
import { AGENT, AUD, Client, ISS, T0, TRUST_DOMAIN, agentId } from "./world.js";

const issuer = (keys, extra = {}) => ({
  iss: ISS,
  audiences: [AUD],
  jwks: { keys: [publicJwk(keys.issuer)] },
  algorithms: ["EdDSA", "ES256"],
  token_type: "at+jwt",
  max_lifetime: "15m",
  clock_skew: "30s",
  required_claims: ["sub", "iat", "jti", "client_id"],
  ...extra,
});

const delegation = {
  max_depth: 2,
  actors: [`${TRUST_DOMAIN}/agents/*`],
  subjects: ["user:*"],
  require_actor: true,
};

const readRoutes = [
  { id: "list-contacts", methods: ["GET"], path: "/v1/contacts", scopes: ["crm.read"] },
  { id: "read-contact", methods: ["GET"], path: "/v1/contacts/{id}/**", scopes: ["crm.read"] },
];

const breaker = { window: "10s", max_requests: 100, max_deny_ratio: 0.5, min_requests: 20, cooldown: "15m" };

const notesGrant = [{ type: "contact_notes", actions: ["read"], identifier: "42" }];

const expect = (decision, status, reasons) => ({ decision, status, reasons });
const allow = expect("allow", 200, []);

async function cases(keys, policy, list) {
  const client = new Client(keys, policy);
  const out = [];
  for (const [name, build, expected] of list) out.push({ name, request: await build(client, T0), expect: expected });
  return { policy: "policy.json", cases: out };
}

export const STARTERS = [
  {
    id: "read-only",
    title: "Read-only agent",
    summary: "reads contacts (notes only with an RFC 9396 grant), nothing else; rate limit and circuit breaker",
    async policy(keys) {
      return {
        description: "A read-only CRM agent: lists and reads contacts on a user's behalf; everything else is denied",
        realm: "api.example.com",
        issuers: [issuer(keys)],
        delegation,
        routes: [
          readRoutes[0],
          // RFC 9396: a contact's private notes need a grant naming that contact.
          {
            id: "contact-notes",
            methods: ["GET"],
            path: "/v1/contacts/{id}/notes",
            scopes: ["crm.read"],
            authorization_details: { type: "contact_notes", actions: ["read"], identifier: "{id}" },
          },
          readRoutes[1],
        ],
        network: { allow: ["10.0.0.0/8", "2001:db8::/32"] },
        limits: [{ id: "per-agent", per: "agent", rate: "120/1m", burst: 30 }],
        circuit_breaker: breaker,
      };
    },
    tests: (keys, policy) =>
      cases(keys, policy, [
        ["read-contact", async (c, t) => c.request({ path: "/v1/contacts/42", token: await c.token(t, { scope: "crm.read" }), now: t }), allow],
        ["list-contacts", async (c, t) => c.request({ path: "/v1/contacts?page=2", token: await c.token(t, { scope: "crm.read" }), now: t }), allow],
        [
          "notes-with-grant",
          async (c, t) => c.request({ path: "/v1/contacts/42/notes", token: await c.token(t, { scope: "crm.read", extra: { authorization_details: notesGrant } }), now: t }),
          allow,
        ],
        [
          "notes-of-another-contact",
          async (c, t) => c.request({ path: "/v1/contacts/43/notes", token: await c.token(t, { scope: "crm.read", extra: { authorization_details: notesGrant } }), now: t }),
          expect("deny", 403, ["authorization_details_mismatch"]),
        ],
        [
          "no-writes",
          async (c, t) => c.request({ method: "POST", path: "/v1/drafts", token: await c.token(t, { scope: "crm.read mail.draft" }), now: t }),
          expect("deny", 403, ["route_not_matched"]),
        ],
        [
          "expired-token",
          async (c, t) => c.request({ token: await c.token(t, { iatOffset: -1200, lifetime: 600 }), now: t }),
          expect("deny", 401, ["token_expired"]),
        ],
        [
          "wrong-audience",
          async (c, t) => c.request({ token: await c.token(t, { aud: "https://billing.example.com" }), now: t }),
          expect("deny", 401, ["token_audience_invalid"]),
        ],
        [
          "outside-network",
          async (c, t) => c.request({ token: await c.token(t), now: t, sourceIp: "203.0.113.9" }),
          expect("deny", 403, ["network_not_allowed"]),
        ],
      ]),
  },
  {
    id: "payments",
    title: "Payments behind approval",
    summary: "examples/policy.json: reads, drafts, and paying an invoice needs a human approval",
    async policy() {
      return fetchText("examples/policy.json");
    },
    async tests() {
      return JSON.parse(await fetchText("examples/policy.tests.json"));
    },
  },
  {
    id: "dpop",
    title: "DPoP-bound agent",
    summary: "tokens must be bound to the agent's key (RFC 9449); proofs are single-use",
    async policy(keys) {
      return {
        description: "A CRM agent whose tokens only work with a DPoP proof signed by its own key",
        realm: "api.example.com",
        issuers: [issuer(keys, { binding: "dpop" })],
        dpop: { algorithms: ["EdDSA", "ES256"], max_age: "60s", clock_skew: "5s" },
        delegation,
        routes: [...readRoutes, { id: "draft-email", methods: ["POST"], path: "/v1/drafts", scopes: ["mail.draft"] }],
        network: { allow: ["10.0.0.0/8", "2001:db8::/32"] },
        limits: [{ id: "per-agent", per: "agent", rate: "120/1m", burst: 30 }],
      };
    },
    tests: async (keys, policy) => {
      let replayed;
      return cases(keys, policy, [
        [
          "read-with-proof",
          async (c, t) => {
            const req = await c.request({ token: await c.token(t), now: t });
            replayed = req;
            return req;
          },
          allow,
        ],
        ["same-proof-again", async () => structuredClone(replayed), expect("deny", 401, ["dpop_proof_replayed"])],
        [
          "bound-token-as-bearer",
          async (c, t) => c.request({ token: await c.token(t), now: t, scheme: "Bearer", proof: false }),
          expect("deny", 401, ["binding_dpop_required"]),
        ],
        [
          "no-proof",
          async (c, t) => c.request({ token: await c.token(t), now: t, proof: false }),
          expect("deny", 401, ["dpop_proof_missing"]),
        ],
        [
          "unbound-token-with-proof",
          async (c, t) => c.request({ token: await c.token(t, { dpop: false }), now: t, scheme: "DPoP" }),
          expect("deny", 401, ["binding_missing"]),
        ],
        [
          "stale-proof",
          async (c, t) => {
            const token = await c.token(t - 100, { lifetime: 600 });
            const old = await c.request({ token, now: t - 90 });
            return { ...old, now: t };
          },
          expect("deny", 401, ["dpop_proof_stale"]),
        ],
      ]);
    },
  },
  {
    id: "attested",
    title: "Attested workload",
    summary: "each request carries a JWT-SVID naming the agent's workload (SPIFFE)",
    async policy(keys) {
      return {
        description: "CRM agents that must prove which workload they run as: a SPIFFE JWT-SVID for the acting agent on every request",
        realm: "api.example.com",
        issuers: [issuer(keys)],
        attestation: {
          header: "x-agent-attestation",
          issuers: [
            {
              iss: TRUST_DOMAIN,
              kind: "jwt_svid",
              audiences: [AUD],
              jwks: { keys: [publicJwk(keys.attestor)] },
              algorithms: ["ES256"],
              max_lifetime: "1h",
            },
          ],
          require: { spiffe_id: [`${TRUST_DOMAIN}/agents/*`] },
          bind_to_actor: true,
        },
        delegation,
        routes: [...readRoutes, { id: "draft-email", methods: ["POST"], path: "/v1/drafts", scopes: ["mail.draft"] }],
        network: { allow: ["10.0.0.0/8", "2001:db8::/32"] },
      };
    },
    tests: (keys, policy) =>
      cases(keys, policy, [
        ["attested-read", async (c, t) => c.request({ token: await c.token(t), now: t }), allow],
        [
          "no-evidence",
          async (c, t) => c.request({ token: await c.token(t), now: t, attest: false }),
          expect("deny", 403, ["attestation_missing"]),
        ],
        [
          "evidence-for-another-agent",
          async (c, t) => c.request({ token: await c.token(t), now: t, agent: agentId("billing-bot") }),
          expect("deny", 403, ["attestation_actor_mismatch"]),
        ],
        [
          "expired-evidence",
          async (c, t) => {
            const req = await c.request({ token: await c.token(t), now: t, attest: false });
            req.headers[c.attestationHeader] = c.svid(t, AGENT, { iatOffset: -1200, lifetime: 600 });
            return req;
          },
          expect("deny", 403, ["attestation_expired"]),
        ],
      ]),
  },
];

export const DEFAULT_STARTER = "payments";

async function fetchText(path) {
  const res = await fetch(new URL(`../${path}`, import.meta.url));
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.text();
}

/** The starter's policy text and tests document. */
export async function loadStarter(id, keys) {
  const s = STARTERS.find((x) => x.id === id);
  if (!s) throw new Error(`no starter \`${id}\``);
  const p = await s.policy(keys);
  const text = typeof p === "string" ? p : JSON.stringify(p, null, 2) + "\n";
  const tests = await s.tests(keys, JSON.parse(text));
  return { text, tests };
}
