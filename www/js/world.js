// The playground's small world: one API, one token service, one approval
// service, agents with SPIFFE IDs — the same names as examples/policy.json —
// and a well-behaved client that builds core requests for it.
//
// The client reads a few policy fields to behave like a correct agent would
// (bind its token with DPoP when the issuer demands it, carry attestation
// evidence when the policy asks for it). It never decides anything: every
// request goes to the core as is.

import { mint, dpopProof, thumbprint, hex, sha256, decodeJwt } from "./crypto.js";

export const HOST = "api.example.com";
export const ISS = "https://sts.example.com";
export const AUD = "https://api.example.com";
export const SUBJECT = "user:alice@example.com";
export const AGENT = "spiffe://prod.example.com/agents/crm-assistant";
export const CLIENT_ID = "crm-assistant";
export const SOURCE_IP = "10.1.2.3";
export const APPROVALS = "https://approvals.example.com";
export const TRUST_DOMAIN = "spiffe://prod.example.com";
/** 2026-01-01T10:00:00Z: the `now` of examples/policy.tests.json and of generated test cases. */
export const T0 = 1767261600;

export const agentId = (name) => `${TRUST_DOMAIN}/agents/${name}`;

/** Builds core request objects, signing what a correct agent would sign. */
export class Client {
  /** `keys`: the key ring (issuer, approver, attestor, client); `policy`: the parsed policy, or null. */
  constructor(keys, policy) {
    this.keys = keys;
    this.policy = policy ?? {};
  }

  get issuer() {
    return this.policy.issuers?.[0] ?? {};
  }

  /** Whether tokens should be DPoP-bound: the first issuer says so. */
  get wantsDpop() {
    return this.issuer.binding === "dpop";
  }

  /**
   * Claims of an agent token at `now`. `opts`: agent, subject, scope,
   * lifetime (s), aud, iss, actors (earlier actors, outermost first), extra.
   */
  async claims(now, opts = {}) {
    const agent = opts.agent ?? AGENT;
    const claims = {
      iss: opts.iss ?? this.issuer.iss ?? ISS,
      aud: opts.aud ?? this.issuer.audiences?.[0] ?? AUD,
      sub: opts.subject ?? SUBJECT,
      client_id: opts.clientId ?? agent.split("/").pop(),
      scope: opts.scope ?? "crm.read mail.draft",
      iat: Math.floor(now) + (opts.iatOffset ?? 0),
      exp: Math.floor(now) + (opts.iatOffset ?? 0) + (opts.lifetime ?? 300),
    };
    let act = { sub: agent };
    if (opts.actors?.length) {
      let inner = act;
      for (const a of opts.actors) inner = inner.act = { sub: a };
    }
    if (agent) claims.act = act;
    if (opts.dpop ?? this.wantsDpop) claims.cnf = { jkt: await thumbprint(this.keys.client) };
    Object.assign(claims, opts.extra ?? {});
    return claims;
  }

  /** An agent token minted by the core with the issuer key. */
  async token(now, opts = {}) {
    return mint(opts.key ?? this.keys.issuer, await this.claims(now, opts));
  }

  /** A JWT-SVID for `agent` (workload attestation), signed with the attestor key. */
  svid(now, agent = AGENT, opts = {}) {
    const issuer = this.policy.attestation?.issuers?.[0];
    return mint(
      this.keys.attestor,
      {
        iss: issuer?.iss ?? TRUST_DOMAIN,
        sub: agent,
        aud: issuer?.audiences?.[0] ?? AUD,
        iat: Math.floor(now) + (opts.iatOffset ?? 0),
        exp: Math.floor(now) + (opts.iatOffset ?? 0) + (opts.lifetime ?? 300),
      },
      "JWT",
    );
  }

  /** An approval token for the challenge of an `approval_required` decision. */
  approval(now, challenge, opts = {}) {
    const a = this.policy.approval ?? {};
    return mint(
      this.keys.approver,
      {
        iss: a.issuer ?? APPROVALS,
        aud: a.audiences?.[0] ?? AUD,
        sub: opts.approver ?? "user:cfo@example.com",
        agent: challenge.agent,
        action_digest: challenge.action_digest,
        iat: Math.floor(now),
        exp: Math.floor(now) + (opts.lifetime ?? 300),
      },
      a.token_type ?? "approval+jwt",
    );
  }

  get approvalHeader() {
    return this.policy.approval?.header ?? "x-agent-approval";
  }

  get attestationHeader() {
    return this.policy.attestation?.header ?? "x-agent-attestation";
  }

  /**
   * A core request. `opts`: method, path (with query), token, scheme
   * (`Bearer`/`DPoP`; default by the token's binding), now, headers,
   * sourceIp, proof (`true`: a fresh DPoP proof when the token is bound — the
   * default —, a string: that proof, `false`: none), attest (default: when the
   * policy requires attestation), agent (for the attestation), approval, body.
   */
  async request(opts) {
    const method = opts.method ?? "GET";
    const path = opts.path ?? "/v1/contacts/42";
    const now = opts.now;
    const headers = { "user-agent": "crm-assistant/1.4", ...(opts.headers ?? {}) };
    const token = opts.token;
    let bound = false;
    if (token) {
      try {
        bound = Boolean(decodeJwt(token).claims.cnf?.jkt);
      } catch {
        bound = false;
      }
    }
    // A bound token goes with the DPoP scheme unless told otherwise.
    const dpopScheme = opts.scheme ? opts.scheme === "DPoP" : bound;
    if (token) headers.authorization = `${dpopScheme ? "DPoP" : "Bearer"} ${token}`;
    const proof = opts.proof ?? true;
    if (typeof proof === "string") headers.dpop = proof;
    else if (proof && dpopScheme) {
      headers.dpop = await dpopProof(this.keys.client, { method, url: `https://${HOST}${path}`, token, now });
    }
    const attest = opts.attest ?? Boolean(this.policy.attestation && !this.policy.attestation.embedded_claim);
    if (attest) headers[this.attestationHeader] = this.svid(now, opts.agent ?? AGENT);
    if (opts.approval) headers[this.approvalHeader] = opts.approval;
    const req = { method, host: HOST, path, headers, source_ip: opts.sourceIp ?? SOURCE_IP, now };
    if (opts.body !== undefined) req.body_sha256 = hex(await sha256(opts.body));
    return req;
  }
}
