// Revocation lists fetched from the policy's `revocation_list.uri`, cached per
// isolate (the core never touches the network; it only reads the text and
// decides how old a list may be).
//
// - one cache at module scope (`revocationListCache`), shared by every guard
//   in the isolate (the gateway's and the Durable Objects' engines), keyed by URL;
// - single-flight: concurrent fetches of one URL share one request;
// - `Accept: application/json`, `If-None-Match` with the last `ETag`: a `304`
//   confirms the list in hand (its load time moves on), a `200` replaces it;
// - the body is read up to the core's cap (4 MiB), never further;
// - stale-if-error: a failed fetch (network, timeout, non-200, too large, not
//   UTF-8) keeps the last good list, and a document the engine refuses is
//   dropped again (`rejected`), so the last good one stays the one handed
//   out. The next attempt waits `retryAfterError` seconds (at most the list's
//   `refresh`), so a host that is down is not asked once per request.
//
// How fresh a list must be is the engine's call: past `max_stale` (or before
// the first list) it refuses token-bearing requests, 503 `state_unavailable`.

import { readAtMost, within } from "./jwks.js";

/** The largest list read (the core's `limits::MAX_REVOCATION_LIST_BYTES`). */
export const MAX_REVOCATION_LIST_BYTES = 4 * 1024 * 1024;

// Reads a response body as UTF-8 text, at most `limit` bytes.
async function readCapped(res, limit) {
  const bytes = await readAtMost(res.body, res.headers.get("content-length"), limit);
  if (bytes === undefined) throw new Error(`the list is larger than ${limit} bytes`);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Error("the list is not UTF-8");
  }
}

export class RevocationListCache {
  #entries = new Map();
  #options;

  /**
   * options: `retryAfterError` (seconds before the next attempt after a failed
   * one; default 10, never more than the list's `refresh`), `timeoutMs` (per
   * fetch; default 5000), `maxBytes` (default 4 MiB, the core's cap),
   * `fetch` (default the global), `now()` in ms (default `Date.now`),
   * `log(line)` (default `console.error`).
   */
  constructor(options = {}) {
    this.#options = {
      retryAfterError: 10,
      timeoutMs: 5_000,
      maxBytes: MAX_REVOCATION_LIST_BYTES,
      fetch: (...args) => globalThis.fetch(...args),
      now: () => Date.now(),
      log: (line) => console.error(line),
      ...options,
    };
  }

  #entry(uri) {
    let e = this.#entries.get(uri);
    if (!e) {
      e = {
        text: null, // the list in hand
        etag: null,
        fetchedAt: null, // ms: when the server last sent or confirmed (304) it
        generation: 0, // of `text`: a new one per document fetched
        previous: null, // {text, etag, fetchedAt, generation}: the one before, until the engine accepts `text`
        counter: 0,
        inflight: null,
        inflightAt: 0,
        nextAttemptAt: 0,
        fetches: 0,
        notModified: 0,
        lastError: null,
        lastErrorAt: null,
      };
      this.#entries.set(uri, e);
    }
    return e;
  }

  #view(e) {
    return e.text === null ? null : { text: e.text, fetchedAt: e.fetchedAt, generation: e.generation };
  }

  /** The list in hand for `uri`, `{text, fetchedAt, generation}`, or `null`. Never fetches. */
  peek(uri) {
    const e = this.#entries.get(uri);
    return e ? this.#view(e) : null;
  }

  /**
   * Fetches `uri` now (one fetch at a time per URL), unless a failed attempt's
   * back-off is still running. Resolves to the list in hand afterwards (the
   * last good one when the fetch failed; `null` when there is none). Never
   * rejects. `list`: the policy's `{refresh_s, max_stale_s}` (`refresh_s`
   * caps the back-off; both go into the log line of a failure).
   */
  async refresh(uri, list = {}) {
    const o = this.#options;
    const e = this.#entry(uri);
    const now = o.now();
    // A fetch older than its own timeout belongs to a request that went away: start another.
    if (e.inflight && now - e.inflightAt > o.timeoutMs + 1_000) e.inflight = null;
    if (!e.inflight) {
      if (now < e.nextAttemptAt) return this.#view(e);
      e.inflightAt = now;
      const pending = this.#fetch(uri, e, list).finally(() => {
        if (e.inflight === pending) e.inflight = null;
      });
      e.inflight = pending;
    }
    await within(e.inflight, o.timeoutMs + 1_000);
    return this.#view(e);
  }

  /**
   * The engine refused generation `generation` of `uri`'s list (`message`
   * says why): hand out the one before again, and wait out the back-off
   * before the next fetch (`list` as for `refresh`).
   */
  rejected(uri, generation, message, list = {}) {
    const e = this.#entries.get(uri);
    if (!e || e.generation !== generation) return;
    const back = e.previous ?? { text: null, etag: null, fetchedAt: null, generation: 0 };
    Object.assign(e, back);
    e.previous = null;
    this.#failed(e, message, list);
  }

  /**
   * Counters for dashboards and tests: `{fetches, notModified, generation,
   * fetchedAt, lastError, lastErrorAt}` (ms), or `null` for a URL never asked for.
   */
  stats(uri) {
    const e = this.#entries.get(uri);
    if (!e) return null;
    const { fetches, notModified, generation, fetchedAt, lastError, lastErrorAt } = e;
    return { fetches, notModified, generation, fetchedAt, lastError, lastErrorAt };
  }

  /** Forgets everything (tests). */
  clear() {
    this.#entries.clear();
  }

  #failed(e, message, list) {
    const o = this.#options;
    e.lastError = message;
    e.lastErrorAt = o.now();
    e.nextAttemptAt = e.lastErrorAt + Math.min(o.retryAfterError, list.refresh_s ?? Infinity) * 1000;
  }

  async #fetch(uri, e, list) {
    const o = this.#options;
    e.fetches += 1;
    try {
      const headers = { accept: "application/json", "cache-control": "no-cache" };
      if (e.etag && e.text !== null) headers["if-none-match"] = e.etag;
      const res = await o.fetch(uri, { headers, signal: AbortSignal.timeout(o.timeoutMs) });
      if (res.status === 304 && e.text !== null && headers["if-none-match"]) {
        res.body?.cancel().catch(() => {});
        e.notModified += 1;
      } else {
        if (res.status !== 200) {
          res.body?.cancel().catch(() => {});
          throw new Error(`HTTP ${res.status}`);
        }
        const text = await readCapped(res, o.maxBytes);
        // Kept until the engine accepts it (or refuses it: `rejected`).
        if (e.text !== null) e.previous = { text: e.text, etag: e.etag, fetchedAt: e.fetchedAt, generation: e.generation };
        e.text = text;
        e.etag = res.headers.get("etag");
        e.counter += 1;
        e.generation = e.counter;
      }
      e.fetchedAt = o.now();
      e.nextAttemptAt = 0;
      e.lastError = null;
      e.lastErrorAt = null;
    } catch (err) {
      const message = err?.name === "TimeoutError" ? `timed out after ${o.timeoutMs} ms` : (err?.message ?? String(err));
      this.#failed(e, message, list);
      const age = e.text === null ? null : Math.floor((o.now() - e.fetchedAt) / 1000);
      const maxStale = list.max_stale_s;
      let outcome;
      if (age === null) outcome = "none loaded yet, so requests with a token get 503 state_unavailable until one loads";
      else if (maxStale === undefined || age <= maxStale) {
        outcome = `the list fetched ${age} s ago stays in force until it is older than \`max_stale\`${maxStale === undefined ? "" : ` (${maxStale} s)`}`;
      } else {
        outcome = `the list fetched ${age} s ago is older than \`max_stale\` (${maxStale} s), so requests with a token get 503 state_unavailable until one loads`;
      }
      o.log(`agentguard: revocation list ${uri}: ${age === null ? "fetch" : "refresh"} failed (${message}); ${outcome}`);
    }
  }
}

/** The isolate-wide revocation-list cache every guard uses unless given another. */
export const revocationListCache = new RevocationListCache();
