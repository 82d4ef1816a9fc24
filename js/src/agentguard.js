// agentguard for JavaScript hosts: the platform glue around the Wasm core.
//
// This file maps a Fetch `Request` to the core's request JSON and the
// decision back to a `Response`, fetches JWKS documents for issuers that name
// a `jwks_uri` and the policy's `revocation_list`, and loads policies. Every
// security decision is made by the core (src/ in the Rust crate): there is no
// policy logic here.
//
// It needs the Wasm module instantiated first; the entry points do that:
// ./node.js (Node), ./workers.js (Cloudflare Workers / workerd), ./browser.js.

import {
  Guard,
  check as checkPolicyJson,
  gatewayEndpoints,
  mint as mintJson,
  version as coreVersion,
} from "../dist/agentguard.js";
import { JwksCache, jwksCache, readAtMost } from "./jwks.js";
import { DirectoryCache, directoryCache, directorySources } from "./directory.js";
import { MAX_REVOCATION_LIST_BYTES, RevocationListCache, revocationListCache } from "./revocations.js";
import { DEFAULT_HOST_ALGORITHMS, hostVerifier } from "./webcrypto.js";
import { decideWithState, serveOperator } from "./durable.js";
import { hostRefusal } from "./refusal.js";

export { JwksCache, jwksCache, DirectoryCache, directoryCache, DEFAULT_HOST_ALGORITHMS };
export { RevocationListCache, revocationListCache, MAX_REVOCATION_LIST_BYTES };
export { AgentStateObject, routingKey, decideShared, stateUnavailable } from "./durable.js";

/** A policy that does not compile: `problems` lists `{path, message, line?, column?}`. */
export class PolicyError extends Error {
  constructor(problems) {
    const lines = problems.map((p) => `${p.path}: ${p.message}` + (p.line ? ` (line ${p.line}, column ${p.column})` : ""));
    super(`invalid agentguard policy:\n  ${lines.join("\n  ")}`);
    this.name = "PolicyError";
    this.problems = problems;
  }
}

/** The core's version (the Rust crate's). */
export const version = () => coreVersion();

/** Validates a policy (object or JSON text): every problem with its JSON path; `[]` when valid. */
export function checkPolicy(policy) {
  return JSON.parse(checkPolicyJson(policyText(policy)));
}

/**
 * Signs a token with a private JWK (for tests, demos and the playground):
 * header `{alg, typ, kid}`, a random `jti` when the claims have none.
 */
export function mint(privateJwk, claims, typ = "at+jwt") {
  return mintJson(JSON.stringify(privateJwk), JSON.stringify(claims), typ);
}

function policyText(policy) {
  if (typeof policy === "string") return policy;
  if (policy && typeof policy === "object") return JSON.stringify(policy);
  throw new TypeError("agentguard: the policy must be a JSON string or an object");
}

// ---------------------------------------------------------------------------
// Request mapping

// "127.0.0.1:5678" → "127.0.0.1", "[::1]:5678" → "::1", "::1" stays.
function withoutPort(address) {
  if (address.startsWith("[")) return address.slice(1, address.indexOf("]"));
  const i = address.indexOf(":");
  return i !== -1 && i === address.lastIndexOf(":") ? address.slice(0, i) : address;
}

// A Fetch `Headers` object joins repeated headers with ", ". A Bearer or DPoP
// credential never contains a comma (token68), so splitting restores the
// separate header lines and the core can refuse a request that sent two.
const SPLIT_ON_COMMA = new Set(["authorization", "dpop"]);

/**
 * Maps a Fetch `Request` plus context to the core's request object.
 *
 * context:
 * - `clientIp`: the caller's IP as the host knows it. Default: in workerd
 *   `request.cf.clientIp` (the TCP peer); on Cloudflare (`request.cf`
 *   present) the `CF-Connecting-IP` header, which Cloudflare sets and callers
 *   cannot forge; elsewhere the header named by `clientIpHeader` (only set it
 *   behind a proxy that overwrites that header), else none.
 * - `clientCertSha256`: the client certificate's SHA-256 (hex or base64url).
 *   Default on Cloudflare: `request.cf.tlsClientAuth.certFingerprintSHA256`
 *   when a certificate was presented.
 * - `bodySha256`: SHA-256 of the request body (hex or base64url), when the
 *   host has it; approvals bind to it (see `bodySha256()`).
 * - `body`: the request body as text, for routes with `approval_when`
 *   conditions (`AgentGuard#bodyUse` says `"text"`); the core hashes it into
 *   `body_sha256` (a `bodySha256` given as well must match it).
 * - `now`: milliseconds since the epoch. Default `Date.now()`.
 */
export function toCoreRequest(request, context = {}) {
  const url = new URL(request.url);
  const headers = {};
  for (const [name, value] of request.headers) {
    if (SPLIT_ON_COMMA.has(name) && value.includes(",")) {
      headers[name] = value.split(",").map((v) => v.trim());
    } else {
      headers[name] = value;
    }
  }
  const cf = request.cf;
  let sourceIp = context.clientIp;
  if (sourceIp === undefined) {
    if (typeof cf?.clientIp === "string") sourceIp = withoutPort(cf.clientIp); // workerd: the TCP peer
    else if (cf) sourceIp = request.headers.get("cf-connecting-ip") ?? undefined;
    else if (context.clientIpHeader) sourceIp = request.headers.get(context.clientIpHeader) ?? undefined;
  }
  let certSha256 = context.clientCertSha256;
  if (certSha256 === undefined) {
    const tls = cf?.tlsClientAuth;
    if (tls && tls.certPresented === "1" && tls.certFingerprintSHA256) certSha256 = tls.certFingerprintSHA256;
  }
  const input = {
    method: request.method,
    scheme: url.protocol.replace(/:$/, ""),
    host: url.host,
    path: url.pathname + url.search,
    headers,
    now: (context.now ?? Date.now()) / 1000,
  };
  if (sourceIp) input.source_ip = sourceIp;
  if (certSha256) input.client_cert_sha256 = certSha256;
  if (context.bodySha256) input.body_sha256 = context.bodySha256;
  if (typeof context.body === "string") input.body = context.body;
  return input;
}

// The fields a core request object may have (the core refuses any other).
const REQUEST_FIELDS = new Set(["method", "scheme", "host", "path", "headers", "source_ip", "client_cert_sha256", "body_sha256", "body", "now"]);
// A line of the line form: a string with no line break that survives UTF-8
// unchanged (request JSON would reject a lone surrogate; keep that).
// Without `isWellFormed` (older browsers), every request goes as JSON.
const wellFormed = typeof "".isWellFormed === "function" ? (v) => v.isWellFormed() : () => false;
const isLine = (v) => typeof v === "string" && !v.includes("\n") && wellFormed(v);
// An optional field: absent, or a non-empty line.
const isOptionalLine = (v) => v === undefined || v === null || (v !== "" && isLine(v));

/**
 * The core request object `input` in the core's line form (`method`,
 * `scheme`, `host`, `path`, `source_ip`, `client_cert_sha256`,
 * `body_sha256`, then a name and a value line per header value), which the
 * engine reads without a JSON parser; `null` when a field does not fit it
 * (a line break, a type the JSON form would refuse, an unknown field), and
 * the request then goes as JSON so the engine names the problem. Requests
 * from `toCoreRequest` always fit (Fetch header values have no line breaks).
 */
export function requestLines(input) {
  if (input === null || typeof input !== "object" || !Number.isFinite(input.now)) return null;
  for (const field in input) if (!REQUEST_FIELDS.has(field)) return null;
  const { method, scheme = "https", host = "", path, headers, source_ip, client_cert_sha256, body_sha256, body } = input;
  if (!isLine(method) || !isLine(scheme) || !isLine(host) || !isLine(path)) return null;
  if (!isOptionalLine(source_ip) || !isOptionalLine(client_cert_sha256) || !isOptionalLine(body_sha256)) return null;
  if (body !== undefined && body !== null && typeof body !== "string") return null;
  let text = `${method}\n${scheme}\n${host}\n${path}\n${source_ip ?? ""}\n${client_cert_sha256 ?? ""}\n${body_sha256 ?? ""}`;
  if (headers !== undefined) {
    if (headers === null || typeof headers !== "object" || Array.isArray(headers)) return null;
    for (const name in headers) {
      if (!isLine(name)) return null;
      const value = headers[name];
      if (typeof value === "string") {
        if (!isLine(value)) return null;
        text += `\n${name}\n${value}`;
      } else if (Array.isArray(value)) {
        for (const v of value) {
          if (!isLine(v)) return null;
          text += `\n${name}\n${v}`;
        }
      } else return null;
    }
  }
  return text;
}

/** SHA-256 of a request's body as base64url (reads a clone; `undefined` when there is no body). */
export async function bodySha256(request) {
  if (request.body === null) return undefined;
  const digest = await crypto.subtle.digest("SHA-256", await request.clone().arrayBuffer());
  return base64url(new Uint8Array(digest));
}

// ---------------------------------------------------------------------------
// Request bodies for approvals

/** The largest body the core reads as text for `approval_when` (the core's `limits::MAX_BODY_BYTES`). */
export const MAX_BODY_TEXT_BYTES = 64 * 1024;
/** Default `maxBodyBytes`: the largest body read (and held in memory) to hash it for an approval. */
export const MAX_BODY_BYTES = 1024 * 1024;

const base64url = (bytes) => {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};

// The body of `request`, read from a clone (the request itself keeps it for
// the origin): `undefined` when it is (or says it is) longer than `limit`
// bytes, in which case no more than one chunk past `limit` was read.
async function readBodyAtMost(request, limit) {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) return undefined;
  return readAtMost(request.body === null ? null : request.clone().body, null, limit);
}

/**
 * What the core needs of `request`'s body, as `toCoreRequest` context, asked
 * of `guard.bodyUse` for the request's method and target:
 *
 * - `"none"` (most routes): nothing is read; with `hashBody: true` the body
 *   is hashed anyway (`bodySha256()`), as before.
 * - `"text"` (a route with `approval_when`): a body of at most 64 KiB that is
 *   UTF-8 goes as `body` (the core reads the conditions and hashes it);
 *   a longer one, or one that is not UTF-8, goes as `bodySha256` only (the
 *   core cannot read it, so the request needs an approval, bound to the body).
 * - `"digest"` (a `risk: high` route): `bodySha256`, so an approval binds to
 *   the body.
 *
 * An empty body binds like no body. Bodies are read from a clone (the
 * request keeps its body for the origin) and held in memory to be hashed, up
 * to `maxBodyBytes` (default 1 MiB): a longer body (or a `Content-Length`
 * saying so) is not read further, and the request is refused (413): an
 * approval could not bind to it. Resolves to `{context}` (the fields to add,
 * `{}` when none) or `{refused: {status, message}}` (413; 400 when the body
 * cannot be read). Never rejects.
 */
export async function requestBodyContext(guard, request, options = {}) {
  // No body: nothing to read, whatever the route (the fast path of GETs).
  if (request.body === null) return { context: {} };
  try {
    const url = new URL(request.url);
    const use = guard.bodyUse(request.method, url.pathname + url.search);
    if (use !== "text" && use !== "digest") {
      if (options.hashBody !== true) return { context: {} };
      const digest = await bodySha256(request);
      return { context: digest === undefined ? {} : { bodySha256: digest } };
    }
    const limit = options.maxBodyBytes ?? MAX_BODY_BYTES;
    const bytes = await readBodyAtMost(request, limit);
    if (bytes === undefined) {
      return {
        refused: {
          status: 413,
          message: `the request body is longer than the ${limit} bytes agentguard reads to bind an approval to it`,
        },
      };
    }
    if (bytes.byteLength === 0) return { context: {} };
    if (use === "text" && bytes.byteLength <= MAX_BODY_TEXT_BYTES) {
      try {
        // ignoreBOM: a leading BOM stays in the text, so the core hashes exactly these bytes.
        return { context: { body: new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes) } };
      } catch {
        // Not UTF-8: only its digest (below); the core then requires an approval.
      }
    }
    return { context: { bodySha256: base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))) } };
  } catch (e) {
    return { refused: { status: 400, message: `the request body could not be read: ${e?.message ?? e}` } };
  }
}

/**
 * The decision for a request whose body `requestBodyContext` refused (413 or
 * 400 `request_invalid`), shaped like a core decision (sent by the host,
 * never by the core).
 */
export function bodyRefused(input, { status, message }) {
  const title = status === 413 ? "Content Too Large" : "Bad Request";
  return hostRefusal(input, { status, code: "request_invalid", title, message, stage: "body" });
}

// ---------------------------------------------------------------------------
// Responses

/**
 * The HTTP response for a refused request: the core formats it (status,
 * `WWW-Authenticate`, `application/problem+json` body, `Retry-After`); this
 * only wraps it in a `Response`. An `allow` has no response: forward the
 * request instead.
 */
export function toResponse(decision) {
  if (decision.decision === "allow") {
    throw new TypeError("agentguard: an `allow` decision has no response; forward the request");
  }
  const r = decision.response;
  if (!r) return failClosedResponse("internal_error", "the decision carried no response");
  return new Response(r.body, { status: r.status, headers: r.headers });
}

/** A 500 problem response for when agentguard cannot decide at all (e.g. a bad policy). */
export function failClosedResponse(reason, detail) {
  const body = JSON.stringify({
    type: `https://agentguard.dev/problems/${reason}`,
    title: "Internal Server Error",
    status: 500,
    detail,
    decision: "deny",
    reason,
  });
  return new Response(body, {
    status: 500,
    headers: { "content-type": "application/problem+json", "cache-control": "no-store" },
  });
}

/**
 * The request to send upstream for an `allow`: every inbound header starting
 * with the identity prefix is removed (a caller cannot spoof them), then the
 * verified identity headers are added.
 */
export function forwardRequest(request, decision) {
  if (decision.decision !== "allow") throw new TypeError("agentguard: only an `allow` decision is forwarded");
  const headers = stripIdentityHeaders(request.headers, decision.strip_header_prefix);
  for (const [name, value] of Object.entries(decision.forward_headers)) headers.set(name, value);
  return new Request(request, { headers });
}

/**
 * A copy of `headers` without any header whose name starts with `prefix`,
 * reading `_` as `-`: CGI-style origins (WSGI, Rack, PHP) see
 * `x_agentguard_agent` and `x-agentguard-agent` as the same variable.
 */
export function stripIdentityHeaders(headers, prefix) {
  const out = new Headers();
  const p = String(prefix).toLowerCase().replaceAll("_", "-");
  for (const [name, value] of headers) {
    if (!name.replaceAll("_", "-").startsWith(p)) out.append(name, value);
  }
  return out;
}

// ---------------------------------------------------------------------------
// The guard

export class AgentGuard {
  #guard;
  #issuers; // [{iss, jwks_uri}]
  #loaded = new Map(); // jwks_uri -> generation handed to the engine
  #jwks;
  #dirs; // DirectoryCache for Web Bot Auth key directories
  #dirSources; // Set of "operator\njwks_uri" entries that are key directories
  #log;
  #hostAlgs; // comma-separated, for the core
  #verifier; // {name, sync, algorithms, verify(check)} or null: who checks #hostAlgs signatures
  #endpoints = null; // where the gateway's own endpoints are served (gatewayEndpoints)
  #readsBodies = true; // whether any route reads request bodies (the engine's readsBodies)
  #maxBodyBytes; // the longest body `decide` reads for a route that needs it
  #listSource = null; // the policy's `revocation_list`: {uri, refresh_s, max_stale_s}
  #lists; // RevocationListCache
  #listed = null; // the fetched list in the engine: {generation, text, fetchedAt, entries}

  constructor(guard, issuers, options, directories = []) {
    this.#guard = guard;
    this.#issuers = issuers;
    this.#jwks = options.jwksCache ?? jwksCache;
    this.#dirs = options.directoryCache ?? directoryCache;
    this.#dirSources = new Set(directories.map((d) => `${d.operator}\n${d.directory_uri}`));
    this.#lists = options.revocationListCache ?? revocationListCache;
    const list = guard.revocationList();
    if (list !== undefined) {
      const { uri, refresh_s, max_stale_s, signed } = JSON.parse(list);
      this.#listSource = { uri, refresh_s, max_stale_s, signed };
    }
    this.#log = options.log ?? ((line) => console.error(line));
    this.#maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
    // The per-stage trace is for explaining a decision (the playground, the
    // CLI); a gateway never shows it, and it is a third of a cached decision's cost.
    this.#guard.setTrace(options.trace === true);
    this.#verifier = hostVerifier(options.hostCrypto);
    const algs = this.#verifier ? (options.hostVerify ?? this.#verifier.algorithms) : [];
    this.#hostAlgs = algs.join(",");
    // DPoP nonces (when the policy turns them on) derive from a secret: give
    // every instance the same one (a Workers secret) so their nonces agree.
    const secret = options.dpopNonceSecret ?? crypto.getRandomValues(new Uint8Array(32));
    this.#guard.setDpopNonceSecret(typeof secret === "string" ? new TextEncoder().encode(secret) : secret);
    // The token service's private signing keys come from a secret, never the policy.
    if (options.signingKeys) {
      try {
        this.setSigningKeys(options.signingKeys);
      } catch (e) {
        this.#log(`agentguard: signing keys refused, the token endpoint answers server_error: ${e?.message ?? e}`);
      }
    }
  }

  /**
   * Compiles a policy (object or JSON text) and loads the keys of issuers that
   * give a `jwks_uri` and the policy's `revocation_list`. Throws `PolicyError`
   * for a bad policy. A JWKS that cannot be fetched is logged, not thrown:
   * tokens of that issuer are denied (`token_key_not_found`) until its keys
   * load. So is a revocation list: until one loads, requests with a token get
   * 503 `state_unavailable` (the core's fail-closed rule).
   *
   * options: `jwksCache` (a `JwksCache`; default the module-scope one shared by
   * every guard in the isolate), `directoryCache` (a `DirectoryCache` for Web
   * Bot Auth key directories named by `directory_uri`; default the module-scope one), `log(line)` (default `console.error`),
   * `hostVerify`: JWS algorithms whose signatures the platform's native crypto
   * verifies instead of Wasm (default ES256/RS256/PS256: with node:crypto in
   * Node, with WebCrypto elsewhere when `crypto.subtle` exists; EdDSA may be
   * added, though Wasm is as fast for it; `[]` keeps everything in Wasm),
   * `hostCrypto`: `"platform"` (default: node:crypto in Node, WebCrypto
   * elsewhere) or `"webcrypto"` (WebCrypto even in Node),
   * `dpopNonceSecret` (string or bytes; default random per guard),
   * `trace` (default `false`: decisions carry `trace: []`; `true` fills in
   * every stage's result, for debugging),
   * `signingKeys`: the token service's private JWK Set (object or JSON text,
   * keys with `d` and `kid`; see `setSigningKeys`), for policies with a
   * `token_service`,
   * `maxBodyBytes` (default 1 MiB): the longest request body `decide` reads
   * for a route that needs it (see `decide`),
   * `revocationListCache` (a `RevocationListCache` for the policy's
   * `revocation_list`; default the module-scope one shared by every guard in
   * the isolate).
   */
  static async create(policy, options = {}) {
    const guard = AgentGuard.createSync(policy, options);
    await Promise.all([guard.refreshKeys(), guard.#loadRevocationListFirst()]);
    return guard;
  }

  /** Like `create`, without loading remote keys or the revocation list (they load on the first `decide`). */
  static createSync(policy, options = {}) {
    const text = policyText(policy);
    let guard;
    try {
      guard = new Guard(text);
    } catch (e) {
      const problems = JSON.parse(checkPolicyJson(text));
      throw new PolicyError(problems.length ? problems : [{ path: ".", message: String(e?.message ?? e) }]);
    }
    // The engine lists key directories (by operator) with the issuers' JWKS URLs.
    const created = new AgentGuard(guard, JSON.parse(guard.jwksUris()), options, directorySources(text));
    created.#endpoints = JSON.parse(gatewayEndpoints(text));
    created.#readsBodies = guard.readsBodies();
    return created;
  }

  /** Issuers whose keys come from a `jwks_uri`: `[{iss, jwks_uri}]`. */
  get remoteIssuers() {
    return this.#issuers.map((i) => ({ ...i }));
  }

  /**
   * What to read of the body of `method target` (target: path and query)
   * before deciding: `"text"` (the route has `approval_when` conditions: give
   * the body as `context.body`), `"digest"` (a high-risk route: give
   * `context.bodySha256` so an approval binds to the body) or `"none"`.
   * `withAgentGuard` does this itself (`requestBodyContext`).
   */
  bodyUse(method, target) {
    if (!this.#readsBodies) return "none";
    return this.#guard.bodyUse(String(method), String(target));
  }

  /**
   * Decides a Fetch `Request` (see `toCoreRequest` for `context`). Resolves to
   * the decision object; never rejects for a decision. Remote keys are
   * refreshed first when their cache entry expired; a token signed with a key
   * id the engine does not know triggers one JWKS refresh per issuer (subject
   * to the cache's cooldown) and a second decision. A refused approval or
   * attestation (`approval_invalid`, `attestation_invalid`) refreshes the
   * keys the same way, without deciding again, so a retry finds a new key.
   *
   * The body, when the matched route needs it (`approval_when` conditions, or
   * a high-risk route whose approval binds to it) and `context` carries
   * neither `body` nor `bodySha256`, is read from a clone as `withAgentGuard`
   * reads it (`requestBodyContext`, up to the guard's `maxBodyBytes`): the
   * request keeps its body. A body too long or unreadable is refused (413 or
   * 400 `request_invalid`, see `bodyRefused`). Nothing is read for other routes.
   *
   * With a `revocation_list` in the policy, the list is fetched before the
   * first decision that finds none in the engine (one fetch shared by
   * concurrent decisions), and again, awaited, when the one in hand is past
   * `max_stale`; once it is `refresh` old, a decision starts a refresh in the
   * background (handed to `context.waitUntil` when given, as in Workers) and
   * goes on with the list in hand.
   */
  async decide(request, context = {}) {
    if (context.body === undefined && context.bodySha256 === undefined && this.#readsBodies) {
      const read = await requestBodyContext(this, request, { maxBodyBytes: this.#maxBodyBytes });
      if (read.refused) return bodyRefused(toCoreRequest(request, context), read.refused);
      context = { ...context, ...read.context };
    }
    return this.decideCore(toCoreRequest(request, context), { waitUntil: context.waitUntil });
  }

  /**
   * `decide` for a core request object (see `toCoreRequest`): keys and the
   * revocation list refreshed as there; `hooks.waitUntil(promise)` keeps a
   * background refresh alive (Workers' `ctx.waitUntil`). Never rejects.
   */
  async decideCore(input, hooks = {}) {
    if (this.#listSource) {
      const nowMs = typeof input?.now === "number" ? input.now * 1000 : Date.now();
      await this.#ensureRevocationList(nowMs, hooks.waitUntil);
    }
    if (this.#issuers.length === 0) return this.decideRequest(input);
    await this.#ensureKeys(false);
    let decision = await this.decideRequest(input);
    const code = decision.reasons[0]?.code;
    const unknown = code === "token_key_not_found" ? "token" : code === "signature_key_unknown" ? "signature" : null;
    if (unknown && (await this.#ensureKeys(unknown))) {
      decision = await this.decideRequest(input);
    } else if (code === "approval_invalid" || code === "attestation_invalid") {
      // Maybe signed by a key published since the last fetch: refresh (within
      // the cooldown) so the agent's retry finds it. Not decided again: rate
      // limits and the breaker came before, and would count it twice.
      await this.#ensureKeys("token");
    }
    return decision;
  }

  /**
   * Decides a core request object with the keys as currently loaded,
   * verifying `hostVerify` signatures with the platform's crypto. Never rejects.
   */
  async decideRequest(input) {
    if (!this.#hostAlgs) return this.decideInput(input);
    // The line form when the request fits it, else JSON: the same engine calls.
    const lines = requestLines(input);
    const guard = this.#guard;
    const body = lines === null ? undefined : (input.body ?? undefined);
    const json = lines === null ? JSON.stringify(input) : undefined;
    const first =
      lines === null ? guard.decideOrCheck(json, this.#hostAlgs) : guard.decideOrCheckLines(lines, body, input.now, this.#hostAlgs);
    if (!first.startsWith('{"checks":')) return JSON.parse(first);
    // The token's signature and/or the DPoP proof's (verified side by side
    // when the verifier is asynchronous); a check the verifier could not
    // answer (null) is done in Wasm instead.
    const checks = JSON.parse(first).checks;
    const { sync, verify } = this.#verifier;
    let answers;
    if (sync) answers = checks.map(verify);
    else answers = checks.length === 1 ? [await verify(checks[0])] : await Promise.all(checks.map(verify));
    const verdicts = answers.filter(Boolean);
    const list = `[${verdicts.join(",")}]`;
    return JSON.parse(lines === null ? guard.decideWith(json, list) : guard.decideWithLines(lines, body, input.now, list));
  }

  /** Decides a core request object synchronously, every signature in Wasm. */
  decideInput(input) {
    const lines = requestLines(input);
    if (lines === null) return JSON.parse(this.#guard.decide(JSON.stringify(input)));
    return JSON.parse(this.#guard.decideLines(lines, input.body ?? undefined, input.now));
  }

  /** Loads (or refreshes, when expired) every remote issuer's keys. Resolves once done. */
  async refreshKeys() {
    await this.#ensureKeys(false);
  }

  /**
   * The record to keep of the approval in core request `input`, once that
   * request was allowed with one (`decision.event.approval_digest` set):
   * `{id, expires_at}` (the approval's replay key, base64url; Unix seconds
   * past which it cannot be valid), or `null`. A host with durable storage
   * keeps it and hands it back with `restoreApproval` after a restart, so the
   * approval stays single-use (the Durable Object does).
   */
  approvalRecord(input) {
    const record = this.#guard.approvalRecord(JSON.stringify(input));
    return record === undefined ? null : JSON.parse(record);
  }

  /** Puts a kept approval record back: a request with it is `approval_replayed`. `false`: no room. */
  restoreApproval(record, nowMs = Date.now()) {
    return this.#guard.restoreApproval(record.id, record.expires_at, nowMs / 1000);
  }

  /** Replaces the revocation lists: `{jti, sub, agents, kid}`. */
  setRevocations(lists) {
    this.#guard.setRevocations(JSON.stringify(lists));
  }

  /**
   * Fetches the policy's `revocation_list` now (one fetch at a time per URL
   * in the isolate; not while a failed attempt's back-off runs) and puts it in
   * force. Resolves to `revocationListStatus()`; a failure is logged, not thrown.
   */
  async refreshRevocationList() {
    const src = this.#listSource;
    if (!src) return undefined;
    await this.#lists.refresh(src.uri, src);
    this.#loadRevocationList();
    return this.revocationListStatus();
  }

  /**
   * Where the policy's `revocation_list` stands, for operators (`undefined`
   * without one): `{uri, refreshS, maxStaleS, signed, loadedAtMs, entries,
   * fetches, notModified, lastError, lastErrorAtMs}`. `loadedAtMs` is when
   * the list in force was fetched (or confirmed by a `304`) — for a signed
   * list (`signed`, `revocation_list.jwks`) when it was signed, its `iat`,
   * which is what its age counts from — `null` before the first;
   * `lastError` the last failed fetch or refused document, `null` since a good one.
   */
  revocationListStatus() {
    const src = this.#listSource;
    if (!src) return undefined;
    const loaded = JSON.parse(this.#guard.revocationList()).loaded_at_ms;
    const cache = this.#lists.stats(src.uri);
    return {
      uri: src.uri,
      refreshS: src.refresh_s,
      maxStaleS: src.max_stale_s,
      signed: src.signed === true,
      loadedAtMs: loaded ?? null,
      entries: this.#listed?.entries ?? null,
      fetches: cache?.fetches ?? 0,
      notModified: cache?.notModified ?? 0,
      lastError: cache?.lastError ?? null,
      lastErrorAtMs: cache?.lastErrorAt ?? null,
    };
  }

  /** Hands an issuer's JWKS (object) to the engine directly; returns skipped keys. */
  setIssuerKeys(iss, jwks) {
    return JSON.parse(this.#guard.setIssuerKeys(iss, typeof jwks === "string" ? jwks : JSON.stringify(jwks)));
  }

  /**
   * Hands a Web Bot Auth operator's key directory, fetched by the caller, to
   * the engine with its response's `signatureInput`, `signature` and
   * `contentDigest` headers (the engine checks the directory signature unless
   * the policy says `directory_signatures: "unchecked"`); returns the keys not
   * kept. Throws when the directory is refused (the previous keys stay).
   */
  setDirectoryKeys(operator, text, { signatureInput, signature, contentDigest } = {}, nowMs = Date.now()) {
    return JSON.parse(this.#guard.setDirectoryKeys(operator, text, signatureInput, signature, contentDigest, nowMs / 1000));
  }

  /**
   * Counters for dashboards and tests: the core's live statistics (decisions,
   * by outcome, reason, route and agent) plus cache and state sizes.
   */
  stats() {
    return {
      ...JSON.parse(this.#guard.stats()),
      cachedTokens: this.#guard.cachedTokens(),
      stateKeys: this.#guard.stateKeys(),
      remoteIssuers: this.#issuers.length,
      ...(this.#listSource ? { revocationList: this.revocationListStatus() } : {}),
    };
  }

  /** Agents the circuit breaker suspended: `[{agent, until_ms, kind, detail}]`. */
  suspendedAgents(nowMs = Date.now()) {
    return JSON.parse(this.#guard.suspendedAgents(nowMs / 1000));
  }

  /** Lifts an agent's suspension (an operator's call); `true` if it was suspended. */
  liftSuspension(agent) {
    return this.#guard.liftSuspension(agent);
  }

  /**
   * Puts a breaker suspension back in force (`{until_ms, kind, detail}`, as
   * `suspendedAgents` lists them), e.g. one kept in Durable Object storage;
   * never shortens one in force.
   */
  restoreSuspension(agent, suspension) {
    return this.#guard.restoreSuspension(agent, JSON.stringify(suspension));
  }

  /** The DPoP nonce to hand out now, when the policy turns nonces on. */
  dpopNonce(nowMs = Date.now()) {
    return this.#guard.dpopNonce(nowMs / 1000) ?? undefined;
  }

  // --- The gateway's own endpoints: RFC 9728 metadata, the RFC 8693 token
  // service, its JWKS and RFC 8414 metadata. The core builds every document
  // and response; this only routes and wraps.

  /** RFC 9728 protected-resource metadata, when the policy has a `resource` section. */
  resourceMetadata() {
    const text = this.#guard.resourceMetadata();
    return text === undefined ? undefined : JSON.parse(text);
  }

  /** RFC 8414 authorization-server metadata of the token service, when the policy has one. */
  tokenServiceMetadata() {
    const text = this.#guard.tokenServiceMetadata();
    return text === undefined ? undefined : JSON.parse(text);
  }

  /** The token service's public JWKS: every loaded signing key, without private parts. */
  tokenServiceJwks() {
    return JSON.parse(this.#guard.tokenServiceJwks());
  }

  /**
   * Loads the token service's private signing keys: a JWK Set (object or JSON
   * text) whose keys carry `d` and a `kid`, one of them the policy's
   * `signing_kid` (the one in use; the others stay published for verifiers).
   * Returns how many were loaded; throws, keeping the previous keys, otherwise.
   */
  setSigningKeys(jwks) {
    return this.#guard.setSigningKeys(typeof jwks === "string" ? jwks : JSON.stringify(jwks));
  }

  /**
   * Paths of the endpoints `serveEndpoint` answers:
   * `{resource_metadata: [], token?, jwks?, authorization_server: []}`.
   */
  get endpoints() {
    return structuredClone(this.#endpoints);
  }

  /**
   * RFC 8693 token exchange for a Fetch `Request` (`POST`, form body): the
   * core checks everything and mints; resolves to the RFC 8693 response or
   * the RFC 6749 §5.2 error, `Cache-Control: no-store`. Never rejects.
   */
  async exchange(request, context = {}) {
    const input = JSON.stringify(toCoreRequest(request, context));
    const body = await readTokenBody(request);
    if (this.#issuers.length) await this.#ensureKeys(false);
    let out = JSON.parse(this.#guard.exchange(input, body));
    // A subject token signed with a key we do not have yet: one refresh
    // (under the JWKS cache's cooldown), then once more. Nothing was minted
    // and no DPoP proof was spent: the subject token is checked first.
    if (out.status === 400 && this.#issuers.length && JSON.parse(out.body).error === "invalid_grant") {
      // Not counted again against `token_service.rate_limit`: the first attempt was.
      if (await this.#ensureKeys("token")) out = JSON.parse(this.#guard.exchangeAgain(input, body));
    }
    const headers = new Headers(out.headers);
    const nonce = this.dpopNonce(context.now);
    if (nonce) headers.set("dpop-nonce", nonce);
    return new Response(out.body, { status: out.status, headers });
  }

  /**
   * Answers the gateway's own endpoints, before any decision: protected-
   * resource metadata (RFC 9728) when the policy has a `resource` section;
   * with a `token_service`, `POST /token` (RFC 8693), its JWKS and its
   * RFC 8414 metadata (paths in `endpoints`). Resolves to `undefined` for
   * any other request, which is then decided as usual.
   */
  async serveEndpoint(request, context = {}) {
    const e = this.#endpoints;
    if (!e) return undefined;
    const path = new URL(request.url).pathname;
    if (e.token !== undefined && path === e.token) return this.exchange(request, context);
    // The core answers the documents (status, CORS and cache headers, 405 for other methods).
    const out = this.#guard.endpointResponse(path, request.method);
    if (out === undefined) return undefined;
    const { status, headers, body } = JSON.parse(out);
    return new Response(status === 204 || request.method === "HEAD" ? null : body, { status, headers });
  }

  /** Frees the Wasm memory of this guard. */
  free() {
    this.#guard.free();
  }

  // Hands the cache's newest revocation list to the engine, when it is not
  // the one in force: a new document is parsed (setListedRevocations); the
  // same one confirmed by a 304 only moves its load time on
  // (confirmListedRevocations), its text (up to 4 MiB) not read again. A
  // document the engine refuses is logged and dropped from the cache (the
  // last good one stays, in both).
  #loadRevocationList() {
    const src = this.#listSource;
    const view = this.#lists.peek(src.uri);
    const listed = this.#listed;
    // The same generation, and the same string (a cache's generations start
    // over after `clear()`): the list in force. Comparing one string with
    // itself is a pointer check.
    const same = listed !== null && view !== null && view.generation === listed.generation && view.text === listed.text;
    if (!view || (same && view.fetchedAt <= listed.fetchedAt)) return;
    if (same) {
      try {
        const entries = this.#guard.confirmListedRevocations(view.fetchedAt);
        this.#listed = { ...listed, fetchedAt: view.fetchedAt, entries };
        return;
      } catch {
        // The engine has no list to confirm (not while `#listed` is set): parse it below.
      }
    }
    try {
      const entries = this.#guard.setListedRevocations(view.text, view.fetchedAt);
      this.#listed = { generation: view.generation, text: view.text, fetchedAt: view.fetchedAt, entries };
    } catch (e) {
      const message = e?.message ?? String(e);
      this.#log(
        listed
          ? `agentguard: revocation list refused, the last good list (${listed.entries} entries) stays in force: ${message}`
          : `agentguard: revocation list refused, none is loaded, so requests with a token get 503 state_unavailable: ${message}`,
      );
      this.#lists.rejected(src.uri, view.generation, message, src);
    }
  }

  // At creation: the list the isolate's cache has (as old as it is), else a fetch.
  async #loadRevocationListFirst() {
    if (!this.#listSource) return;
    if (this.#lists.peek(this.#listSource.uri)) this.#loadRevocationList();
    else await this.refreshRevocationList();
  }

  // Before a decision at `nowMs`: no list in the engine, or one past
  // `max_stale` → fetch (single-flight) and wait; one `refresh` old → fetch
  // in the background and decide with the one in hand.
  async #ensureRevocationList(nowMs, waitUntil) {
    const src = this.#listSource;
    this.#loadRevocationList();
    const age = this.#listed ? nowMs - this.#listed.fetchedAt : Infinity;
    if (age >= src.max_stale_s * 1000) {
      await this.refreshRevocationList();
    } else if (age >= src.refresh_s * 1000) {
      const background = this.refreshRevocationList().catch((e) => {
        this.#log(`agentguard: revocation list ${src.uri}: ${e?.message ?? e}`);
      });
      if (typeof waitUntil === "function") {
        try {
          waitUntil(background);
        } catch {
          // A host without waitUntil at this point: the refresh runs on its own.
        }
      }
    }
  }

  // The cached document of one key source: an issuer's JWKS (`jwksCache`) or
  // an operator's key directory (`directoryCache`). `unknownKid` ("token" or
  // "signature") asks the matching cache for a refresh (it applies the cooldown).
  #keysFor(iss, uri, unknownKid) {
    const directory = this.#dirSources.has(`${iss}\n${uri}`);
    const cache = directory ? this.#dirs : this.#jwks;
    const force = unknownKid === (directory ? "signature" : "token");
    return force ? cache.refreshForUnknownKid(uri, directory ? undefined : iss) : cache.get(uri, directory ? undefined : iss);
  }

  // Makes sure each remote issuer's newest cached JWKS (and each key
  // directory) is in the engine. `unknownKid`: a token ("token") or a message
  // signature ("signature") named a key we do not have. Returns whether any
  // keys changed.
  async #ensureKeys(unknownKid) {
    const results = await Promise.all(
      this.#issuers.map(({ iss, jwks_uri }) =>
        this.#keysFor(iss, jwks_uri, unknownKid).catch((e) => {
          this.#log(`agentguard: JWKS ${jwks_uri}: ${e?.message ?? e}`);
          return null;
        }),
      ),
    );
    let changed = false;
    this.#issuers.forEach(({ iss, jwks_uri }, i) => {
      const entry = results[i];
      if (!entry || this.#loaded.get(jwks_uri) === entry.generation) return;
      // A key directory goes in with its response signature (checked by the engine).
      const directory = this.#dirSources.has(`${iss}\n${jwks_uri}`);
      const label = directory ? "key directory" : "JWKS";
      try {
        const skipped = JSON.parse(
          directory
            ? this.#guard.setDirectoryKeys(iss, entry.text, entry.signatureInput, entry.signature, entry.contentDigest, Date.now() / 1000)
            : this.#guard.setIssuerKeys(iss, entry.text),
        );
        for (const p of skipped) {
          if (!p.skipped) this.#log(`agentguard: ${label} ${jwks_uri}: keys[${p.index}]: ${p.message}`);
        }
        changed = true;
      } catch (e) {
        this.#log(`agentguard: ${label} ${jwks_uri}: ${e?.message ?? e}`);
      }
      // Remember the generation even when refused, so a bad document is not re-parsed per request.
      this.#loaded.set(jwks_uri, entry.generation);
    });
    return changed;
  }
}

// The token request body, read up to one byte past the core's 64 KiB limit
// (a larger body is refused by the core without being read to the end).
const MAX_TOKEN_BODY = 64 * 1024;
async function readTokenBody(request) {
  if (request.body === null) return "";
  const reader = request.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
    if (size > MAX_TOKEN_BODY) {
      await reader.cancel().catch(() => {});
      break;
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

// ---------------------------------------------------------------------------
// Policy sources and the Workers middleware

const POLICY_TTL_MS = 60_000;
const guards = new Map(); // policy text -> Promise<AgentGuard>, module scope: one engine per isolate

/**
 * Reads the policy text: `options.policy` (object or JSON text) inline, else
 * the environment text binding `options.policyVar` (default
 * `AGENTGUARD_POLICY`), else KV: `options.policyKv = {binding, key}` (default
 * binding `AGENTGUARD_KV`, key `policy.json`).
 */
export async function loadPolicyText(env = {}, options = {}) {
  if (options.policy !== undefined) return policyText(options.policy);
  const varName = options.policyVar ?? "AGENTGUARD_POLICY";
  const fromVar = env[varName];
  if (fromVar !== undefined && fromVar !== null && fromVar !== "") return policyText(fromVar);
  const kv = options.policyKv ?? { binding: "AGENTGUARD_KV", key: "policy.json" };
  const ns = env[kv.binding];
  if (ns && typeof ns.get === "function") {
    const text = await ns.get(kv.key ?? "policy.json", { type: "text", cacheTtl: 60 });
    if (text) return text;
    throw new Error(`policy: KV namespace \`${kv.binding}\` has no key \`${kv.key ?? "policy.json"}\``);
  }
  throw new Error(`policy: none given (inline \`policy\`, env text binding \`${varName}\`, or KV \`${kv.binding}\`)`);
}

/**
 * A decision event as a Workers Analytics Engine data point (one per decision):
 *
 * - `indexes[0]`: the agent (`(anonymous)` without a verified credential), the sampling key;
 * - `blobs`: 1 decision, 2 first reason code, 3 route id, 4 method, 5 path,
 *   6 issuer, 7 agent, 8 source IP, 9 rate limit that refused, 10 breaker trip kind;
 * - `doubles`: 1 status, 2 decision time (µs, as the host measured it), 3 token cache hit (0/1).
 *
 * Query it with SQL, e.g. `SELECT blob7 AS agent, blob2 AS reason, SUM(_sample_interval)
 * FROM agentguard WHERE blob1 != 'allow' GROUP BY agent, reason`.
 */
export function analyticsDataPoint(event) {
  const agent = event.agent?.agent || "(anonymous)";
  return {
    indexes: [agent.slice(0, 96)],
    blobs: [
      event.decision,
      event.reasons?.[0] ?? "",
      event.route ?? "",
      event.method ?? "",
      event.path ?? "",
      event.agent?.issuer ?? "",
      agent,
      event.source_ip ?? "",
      event.limit ?? "",
      event.breaker?.kind ?? "",
    ],
    doubles: [event.status ?? 0, event.duration_us ?? 0, event.cache_hit ? 1 : 0],
  };
}

// `ctx.waitUntil` of a Workers fetch handler, bound, when there is one.
function waitUntilOf(ctx) {
  return typeof ctx?.waitUntil === "function" ? (promise) => ctx.waitUntil(promise) : undefined;
}

/**
 * Wraps a fetch handler so that only requests agentguard allows reach it:
 *
 *   export default { fetch: withAgentGuard(async (request, env, ctx, decision) => fetch(request)) };
 *
 * A refused request gets the core's response (401/403/429/approval, RFC 9457
 * body). An allowed request reaches the handler with inbound identity headers
 * removed and the verified ones added. A policy that cannot be loaded or does
 * not compile fails closed: every request gets a 500, and one log line says why.
 *
 * options: `policy` / `policyVar` / `policyKv` (see `loadPolicyText`),
 * `policyTtlMs` (how often the env/KV policy is read again; default 60 000;
 * a policy that fails at a reload leaves the last good one in force),
 * `context(request, env, ctx)` → extra `toCoreRequest` context (a `body` or
 * `bodySha256` given there is used as is), `hashBody` (`true`: hash every
 * request's body; default: only where the route needs the body, see
 * `requestBodyContext`), `maxBodyBytes` (the longest body read to hash it for
 * an approval; default 1 MiB, a longer one to such a route is refused 413),
 * `onDecision(decision, request, env, ctx)` (default: log the decision event
 * as one JSON line with `console.log` when the policy's `log` settings keep it;
 * pass `null` to turn off), `analyticsBinding` (the Analytics Engine dataset
 * binding that gets one `analyticsDataPoint` per logged decision; default
 * `AGENTGUARD_ANALYTICS`, used when bound), `jwksCache`, `log`,
 * `hostVerify`, `hostCrypto`, `dpopNonceSecret` (default: the env secret
 * `AGENTGUARD_DPOP_NONCE_SECRET`; see `AgentGuard.create`),
 * `stateBinding` (the Durable Object namespace holding agents' shared state;
 * default `AGENTGUARD_STATE`, used when bound), `statsRoute` / `liftRoute`
 * (policy route ids that turn on `GET /_agentguard/stats` and
 * `POST /_agentguard/suspensions/lift`; default the env texts
 * `AGENTGUARD_STATS_ROUTE` / `AGENTGUARD_LIFT_ROUTE`, else off). See ./durable.js.
 * `signingKeys` (the token service's private JWK Set; default the env secret
 * `AGENTGUARD_SIGNING_KEYS`), `revocationListCache` (see `AgentGuard.create`;
 * a background refresh of the policy's `revocation_list` is handed to
 * `ctx.waitUntil`).
 *
 * Before any decision it answers its own endpoints (`AgentGuard.serveEndpoint`):
 * RFC 9728 protected-resource metadata when the policy has a `resource`
 * section; with a `token_service`, `POST /token` (RFC 8693), the JWKS and
 * RFC 8414 metadata.
 */
export function withAgentGuard(handler, options = {}) {
  const log = options.log ?? ((line) => console.error(line));
  // Default sink: one JSON line per decision the policy's `log` settings keep
  // (outcome filter, sampling), for Workers Logs / Logpush.
  const onDecision =
    options.onDecision === undefined ? (d) => d.log && console.log(JSON.stringify(d.event)) : options.onDecision;
  const analyticsBinding = options.analyticsBinding ?? "AGENTGUARD_ANALYTICS";
  const ttl = options.policyTtlMs ?? POLICY_TTL_MS;
  let current = null; // {text, loadedAt}: the policy text last read
  let good = null; // {text, guard}: the last policy that compiled
  let lastError = null;

  function compile(text, env) {
    let pending = guards.get(text);
    if (!pending) {
      pending = AgentGuard.create(text, {
        jwksCache: options.jwksCache,
        directoryCache: options.directoryCache,
        revocationListCache: options.revocationListCache,
        log,
        hostVerify: options.hostVerify,
        hostCrypto: options.hostCrypto,
        trace: options.trace,
        dpopNonceSecret: options.dpopNonceSecret ?? env.AGENTGUARD_DPOP_NONCE_SECRET,
        signingKeys: options.signingKeys ?? env.AGENTGUARD_SIGNING_KEYS,
      });
      guards.set(text, pending);
      // A policy that failed is compiled again on the next read (it may be fixed in KV by then).
      pending.catch(() => guards.delete(text));
    }
    return pending;
  }

  // The policy to decide with: re-read every `policyTtlMs` (env binding or
  // KV). A policy that cannot be read or compiled at start fails closed (every
  // request a 500). At a reload, the last good policy stays in force (as Envoy
  // keeps its last good config) and one log line says why.
  async function guardFor(env) {
    const now = Date.now();
    try {
      if (!current || (options.policy === undefined && now - current.loadedAt > ttl)) {
        current = { text: null, loadedAt: now };
        current.text = await loadPolicyText(env, options);
      }
      if (current.text === null) throw new Error(lastError ?? "policy: not loaded");
      const guard = await compile(current.text, env);
      good = { text: current.text, guard };
      lastError = null;
      return good;
    } catch (e) {
      // Not read again, nor compiled again, until the next read is due.
      if (current) current.text = null;
      const message = e?.message ?? String(e);
      if (message !== lastError) {
        const flat = message.replace(/\n\s*/g, "; ");
        log(
          good
            ? `agentguard: policy reload failed, the last good policy stays in force: ${flat}`
            : `agentguard: policy rejected, denying every request: ${flat}`,
        );
        lastError = message;
      }
      if (good) return good;
      throw e;
    }
  }

  return async function agentGuardFetch(request, env, ctx) {
    let guard;
    let activePolicy;
    try {
      ({ guard, text: activePolicy } = await guardFor(env));
    } catch {
      return failClosedResponse("policy_invalid", "the gateway's policy could not be loaded");
    }
    const context = options.context ? { ...(await options.context(request, env, ctx)) } : {};
    // The gateway's own endpoints (RFC 9728 metadata; with a token service,
    // /token, its JWKS and RFC 8414 metadata) are answered before any decision.
    const served = await guard.serveEndpoint(request, context);
    if (served) return served;
    // The body, when the route needs it (approval conditions or a high-risk
    // route) or `hashBody` asks; nothing is read for other routes.
    let refused;
    if (context.body === undefined && context.bodySha256 === undefined) {
      const read = await requestBodyContext(guard, request, options);
      if (read.refused) refused = read.refused;
      else Object.assign(context, read.context);
    }
    // With an AGENTGUARD_STATE binding, decided in the agent's Durable Object (./durable.js).
    const started = performance.now();
    const decision = refused
      ? bodyRefused(toCoreRequest(request, context), refused)
      : await decideWithState(guard, request, context, env, options, activePolicy, waitUntilOf(ctx));
    // The host's clock, not the core's (it has none). In Workers, timers only
    // advance across I/O, so this counts key fetches and Durable Object calls.
    if (decision.event) decision.event.duration_us = Math.round((performance.now() - started) * 1000);
    const analytics = env?.[analyticsBinding];
    if (decision.log && decision.event && typeof analytics?.writeDataPoint === "function") {
      try {
        analytics.writeDataPoint(analyticsDataPoint(decision.event));
      } catch (e) {
        log(`agentguard: Analytics Engine writeDataPoint threw: ${e?.message ?? e}`);
      }
    }
    if (onDecision) {
      try {
        onDecision(decision, request, env, ctx);
      } catch (e) {
        log(`agentguard: onDecision threw: ${e?.message ?? e}`);
      }
    }
    if (decision.decision !== "allow") return toResponse(decision);
    // Operator endpoints (/_agentguard/stats, …/suspensions/lift): off unless their policy route is named.
    const operated = await serveOperator(guard, decision, request, env, options, activePolicy);
    if (operated) return operated;
    const response = await handler(forwardRequest(request, decision), env, ctx, decision);
    const nonce = guard.dpopNonce(context.now);
    if (!nonce) return response;
    // RFC 9449 §9: hand the client the next DPoP nonce on success too.
    const withNonce = new Response(response.body, response);
    withNonce.headers.set("dpop-nonce", nonce);
    return withNonce;
  };
}
