// JWKS documents fetched from `jwks_uri`, cached per isolate.
//
// - one cache at module scope (`jwksCache`), shared by every guard in the
//   isolate, keyed by URL;
// - single-flight: concurrent requests for the same URL share one fetch, and
//   the wait for it is bounded (`within`, below): past `timeoutMs` per request
//   it may make, plus 1 s, it counts as a failed fetch (below) and no longer
//   holds the URL;
// - lifetime from `Cache-Control: max-age`, clamped to [minTtl, maxTtl]
//   (`defaultTtl` when the header has none);
// - a token whose key id is unknown may force a refresh, at most once per
//   `cooldown` per URL, so an attacker cannot make the gateway fetch per request;
// - stale-if-error: when a refresh fails the last good document stays in use
//   and the next attempt waits `retryAfterError`.
//
// - discovery: when the URL serves issuer metadata (RFC 8414
//   `/.well-known/oauth-authorization-server` or OpenID
//   `/.well-known/openid-configuration`) instead of a JWKS, its `jwks_uri`
//   is followed once; the metadata's `issuer` must equal the policy's.
//
// The cache returns documents as text; the engine parses and validates them.

const MAX_JWKS_BYTES = 256 * 1024;

/**
 * A body stream read to its end, but never past `limit` bytes: `undefined`
 * when it is (or its `contentLength` header says it is) longer, in which case
 * at most one chunk past `limit` was read and the stream is cancelled. A
 * `null` body is empty. Used for every document fetched (JWKS, key
 * directories, revocation lists) and for request bodies, so a hostile peer
 * cannot make the shim hold more than it will use.
 */
export async function readAtMost(body, contentLength, limit) {
  if (contentLength !== null && contentLength !== undefined && Number(contentLength) > limit) {
    body?.cancel().catch(() => {});
    return undefined;
  }
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      // Not awaited: a tee branch's cancel settles only once the other branch is cancelled too.
      reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return bytes;
}

/**
 * Settles with `promise`, or with `undefined` after `ms`: a fetch shared with
 * a request whose context went away must not hold the others forever. The
 * fetch's own `AbortSignal.timeout` does not cover that: in workerd the fetch
 * and its timer belong to the request that started it, and when that request
 * is cancelled the shared promise never settles, abort or not (nor does an
 * injected `fetch` that ignores the signal). This timer runs in the waiting
 * request's own context. Used by the single-flight fetches of JWKS, key
 * directories and revocation lists.
 */
export function within(promise, ms) {
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

function maxAgeOf(cacheControl) {
  if (!cacheControl) return undefined;
  let maxAge;
  for (const part of cacheControl.split(",")) {
    const [name, value] = part.trim().toLowerCase().split("=");
    if (name === "no-store" || name === "no-cache") return 0;
    if (name === "max-age" && /^\d+$/.test(value ?? "")) maxAge = Number(value);
  }
  return maxAge;
}

export class JwksCache {
  #entries = new Map();
  #options;

  /**
   * options (seconds unless noted): `minTtl` 60, `maxTtl` 86400, `defaultTtl`
   * 300, `cooldown` 30 (unknown-kid refresh), `retryAfterError` 30,
   * `timeoutMs` 5000 (per request; a caller waits for the shared fetch at
   * most that per request it may make, plus 1 s), `log(line)`, `fetch` (default the global), `now()` in ms (default `Date.now`).
   * For other key documents (js/src/directory.js): `accept` (the request's
   * `Accept`), `discovery` (follow issuer metadata; default true), `label`
   * (what log lines call the document; default `JWKS`).
   */
  constructor(options = {}) {
    this.#options = {
      minTtl: 60,
      maxTtl: 86_400,
      defaultTtl: 300,
      cooldown: 30,
      retryAfterError: 30,
      timeoutMs: 5_000,
      fetch: (...args) => globalThis.fetch(...args),
      now: () => Date.now(),
      log: (line) => console.error(line),
      accept: "application/jwk-set+json, application/json",
      discovery: true,
      label: "JWKS",
      ...options,
    };
  }

  #entry(uri) {
    let e = this.#entries.get(uri);
    if (!e) {
      e = { text: null, signed: null, generation: 0, expiresAt: 0, nextAttemptAt: 0, lastForcedAt: -Infinity, inflight: null, inflightAt: 0, fetches: 0, lastError: null };
      this.#entries.set(uri, e);
    }
    return e;
  }

  #view(e) {
    return e.text === null ? null : { text: e.text, ...e.signed, generation: e.generation, expiresAt: e.expiresAt, stale: this.#options.now() >= e.expiresAt };
  }

  /**
   * The current document for `uri` as `{text, signatureInput, signature,
   * contentDigest, generation, expiresAt, stale}` (the three headers of the
   * response, for a key directory's response signature; `undefined` when absent):
   * fetched when missing or expired (unless a failed attempt is still in its
   * back-off), the last good one when the fetch fails. Rejects only when there
   * has never been a good document and the fetch just failed; resolves `null`
   * while waiting out a back-off with nothing cached.
   */
  async get(uri, issuer) {
    const e = this.#entry(uri);
    if (issuer !== undefined) e.issuer = issuer;
    const now = this.#options.now();
    if (e.text !== null && now < e.expiresAt) return this.#view(e);
    if (now < e.nextAttemptAt) return this.#view(e);
    return this.#refresh(uri, e);
  }

  /**
   * A token named a key id the engine does not have: refetch, unless this URL
   * was force-refreshed less than `cooldown` seconds ago.
   */
  async refreshForUnknownKid(uri, issuer) {
    const e = this.#entry(uri);
    if (issuer !== undefined) e.issuer = issuer;
    const now = this.#options.now();
    if (this.#pending(e)) return this.#refresh(uri, e);
    if (now - e.lastForcedAt < this.#options.cooldown * 1000 || now < e.nextAttemptAt) return this.#view(e);
    e.lastForcedAt = now;
    return this.#refresh(uri, e);
  }

  /** Counters for tests and dashboards: `{fetches, generation, expiresAt, lastError}` per URL. */
  stats(uri) {
    const e = this.#entries.get(uri);
    return e ? { fetches: e.fetches, generation: e.generation, expiresAt: e.expiresAt, lastError: e.lastError } : null;
  }

  /** Forgets everything (tests). */
  clear() {
    this.#entries.clear();
  }

  // How long a caller waits for the shared fetch: `timeoutMs` per request it
  // may make (the issuer metadata, then its `jwks_uri`), plus 1 s.
  #bound() {
    return (this.#options.discovery ? 2 : 1) * this.#options.timeoutMs + 1_000;
  }

  // Whether a fetch of `e` is in flight. One older than its bound belongs to a
  // request that went away (see `within`): it is dropped, so the next attempt
  // starts another.
  #pending(e) {
    if (e.inflight && this.#options.now() - e.inflightAt > this.#bound()) e.inflight = null;
    return e.inflight !== null;
  }

  async #refresh(uri, e) {
    if (!this.#pending(e)) {
      e.inflightAt = this.#options.now();
      const fetching = this.#fetch(uri, e, () => e.inflight === fetching).finally(() => {
        if (e.inflight === fetching) e.inflight = null;
      });
      e.inflight = fetching;
    }
    const attempt = e.inflight;
    const bound = this.#bound();
    const result = await within(attempt, bound);
    if (result !== undefined) return result;
    // No answer within the bound: a failed fetch, recorded once (by the first
    // caller to give up); the URL is free for the next attempt.
    const message = `timed out after ${bound} ms`;
    if (e.inflight === attempt) {
      e.inflight = null;
      return this.#failed(uri, e, message);
    }
    return this.#lastGood(uri, e, message);
  }

  async #get(uri) {
    const res = await this.#options.fetch(uri, {
      headers: { accept: this.#options.accept },
      signal: AbortSignal.timeout(this.#options.timeoutMs),
    });
    if (!res.ok) {
      res.body?.cancel().catch(() => {});
      throw new Error(`HTTP ${res.status}`);
    }
    const bytes = await readAtMost(res.body, res.headers.get("content-length"), MAX_JWKS_BYTES);
    if (bytes === undefined) throw new Error(`document is larger than ${MAX_JWKS_BYTES} bytes`);
    const text = new TextDecoder().decode(bytes);
    return { res, text, doc: JSON.parse(text) };
  }

  // `current()`: whether this fetch still holds `e` (it is abandoned once a
  // caller gave up on it; a late failure is then not counted again).
  async #fetch(uri, e, current) {
    const o = this.#options;
    e.fetches += 1;
    try {
      let { res, text, doc } = await this.#get(uri);
      if (o.discovery && doc && !Array.isArray(doc.keys) && typeof doc.jwks_uri === "string") {
        // Issuer metadata: follow its jwks_uri, once.
        if (e.issuer !== undefined && doc.issuer !== e.issuer) {
          throw new Error(`metadata names issuer \`${doc.issuer}\`, expected \`${e.issuer}\``);
        }
        if (!/^https?:\/\//.test(doc.jwks_uri)) throw new Error("metadata `jwks_uri` is not an http(s) URL");
        ({ res, text, doc } = await this.#get(doc.jwks_uri));
      }
      if (!doc || typeof doc !== "object" || !Array.isArray(doc.keys)) throw new Error(`expected a ${o.label} document \`{"keys": [...]}\``);
      const maxAge = maxAgeOf(res.headers.get("cache-control")) ?? o.defaultTtl;
      const ttl = Math.min(Math.max(maxAge, o.minTtl), o.maxTtl);
      const now = o.now();
      // The response signature headers travel with the text (a key directory's
      // signature is checked by the engine); either changing is a new generation.
      const header = (name) => res.headers.get(name) ?? undefined;
      const signed = { signatureInput: header("signature-input"), signature: header("signature"), contentDigest: header("content-digest") };
      if (text !== e.text || JSON.stringify(signed) !== JSON.stringify(e.signed)) {
        e.text = text;
        e.signed = signed;
        e.generation += 1;
      }
      e.expiresAt = now + ttl * 1000;
      e.nextAttemptAt = 0;
      e.lastError = null;
      return this.#view(e);
    } catch (err) {
      const message = err?.name === "TimeoutError" ? `timed out after ${o.timeoutMs} ms` : (err?.message ?? String(err));
      // Abandoned (a caller gave up on it and recorded the failure): not counted again.
      if (!current()) return this.#lastGood(uri, e, message);
      return this.#failed(uri, e, message);
    }
  }

  // A failed fetch: back off; the last good document (stale-if-error) or a rejection.
  #failed(uri, e, message) {
    const o = this.#options;
    e.lastError = message;
    e.nextAttemptAt = o.now() + o.retryAfterError * 1000;
    // stale-if-error
    if (e.text !== null) o.log(`agentguard: ${o.label} ${uri}: refresh failed (${message}); using the keys fetched before`);
    return this.#lastGood(uri, e, message);
  }

  // The last good document (stale-if-error), or the failure when there is none.
  #lastGood(uri, e, message) {
    if (e.text !== null) return this.#view(e);
    throw new Error(`fetching ${uri} failed: ${message}`);
  }
}

/** The isolate-wide cache every guard uses unless given another. */
export const jwksCache = new JwksCache();
