// The Wasm core in the page: the same module the js/ package ships
// (wasm-bindgen `--target web` glue, copied to dist/ by scripts/build-www.sh).
// Every check and decision is the core's; this file only moves JSON across.

import init, { Guard, check, mint, reportHtml, reportJson, version } from "../dist/agentguard.js";

let ready = null;

/** Instantiates the module once (streaming compile of dist/agentguard_bg.wasm). */
export function loadCore() {
  ready ??= init({ module_or_path: new URL("../dist/agentguard_bg.wasm", import.meta.url) });
  return ready;
}

export const coreVersion = () => version();

/** Every problem of a policy text: `[{path, message, line?, column?}]`, empty when valid. */
export function checkPolicy(text) {
  return JSON.parse(check(text));
}

/**
 * The list the page hands to every engine whose policy has a
 * `revocation_list`, as a gateway hands over what it fetched from the
 * list's `uri` (the page itself fetches nothing): JSON text.
 */
export const revocationList = { text: "{}" };

/**
 * A compiled policy with its own state (token cache, replay caches, rate
 * buckets, circuit breaker). Each decision is `JSON.parse(guard.decide(...))`.
 */
export class Engine {
  #guard;
  #log;
  /** The policy's `revocation_list` (`{uri, refresh_s, max_stale_s}`), or null. */
  #list;
  /** `[text, Unix ms]` of the last list loaded. */
  #loaded = null;

  /** `options.log`: record each decision's event in the session's decision log. */
  constructor(policyText, options = {}) {
    this.#guard = new Guard(policyText);
    this.#log = Boolean(options.log);
    const list = this.#guard.revocationList();
    this.#list = list === undefined ? null : JSON.parse(list);
  }

  /** The policy's `revocation_list` (`{uri, refresh_s, max_stale_s}`), or null. */
  get revocationListSource() {
    return this.#list;
  }

  /**
   * Loads `revocationList.text` at `nowMs`, as a healthy gateway does every
   * `refresh`; returns its number of entries. Throws the core's message (with
   * the JSON path) for a list it cannot read: the previous one stays, ageing.
   */
  loadRevocationList(nowMs) {
    const entries = this.#guard.setListedRevocations(revocationList.text, nowMs);
    this.#loaded = [revocationList.text, nowMs];
    return entries;
  }

  /** Decides a core request object; never throws. */
  decide(request) {
    if (this.#list) {
      // A gateway whose list host answers: fetched again every `refresh` (and
      // when the page's list or clock changed); a list the core refuses is
      // not loaded, so the decision says why (503 once none is fresh).
      const nowMs = Math.round(request.now * 1000);
      const [text, at] = this.#loaded ?? [null, -Infinity];
      if (text !== revocationList.text || nowMs < at || nowMs - at >= this.#list.refresh_s * 1000) {
        try {
          this.loadRevocationList(nowMs);
        } catch {
          // Shown next to the list by the page.
        }
      }
    }
    const decision = JSON.parse(this.#guard.decide(JSON.stringify(request)));
    // `decision.log`: the policy's log settings (filter, sampling) keep this event.
    if (this.#log && decision.log && decision.event) sessionLog.record(decision.event);
    return decision;
  }

  /** Agents the circuit breaker suspended at `now` (seconds). */
  suspended(now) {
    return JSON.parse(this.#guard.suspendedAgents(now));
  }

  liftSuspension(agent) {
    return this.#guard.liftSuspension(agent);
  }

  stats() {
    return { cachedTokens: this.#guard.cachedTokens(), stateKeys: this.#guard.stateKeys() };
  }

  free() {
    this.#guard.free();
  }
}

/** Signs claims with a private JWK via the core (`mint`): header `{alg, typ, kid}`. */
export function mintToken(jwk, claims, typ) {
  return mint(JSON.stringify(jwk), JSON.stringify(claims), typ);
}

/**
 * The decisions made in this page (request tab, attack scenarios, traffic
 * simulator) as decision-log events, the same JSON Lines a gateway writes.
 * Bounded: the oldest events go first.
 */
export const sessionLog = {
  limit: 200_000,
  events: [],
  listeners: new Set(),
  record(event) {
    this.events.push(event);
    if (this.events.length > this.limit) this.events.splice(0, this.events.length - this.limit);
    for (const f of this.listeners) f();
  },
  clear() {
    this.events = [];
    for (const f of this.listeners) f();
  },
  jsonl() {
    return this.events.map((e) => JSON.stringify(e)).join("\n") + (this.events.length ? "\n" : "");
  },
};

/** The CLI's agent-activity report (`agentguard report --html`) of a JSON Lines log: a self-contained page. */
export const activityReportHtml = (jsonl) => reportHtml(jsonl);

/** The same report's totals: `{events, bad_lines, outcomes, reasons, routes, agents, hours, …}`. */
export const activityReport = (jsonl) => JSON.parse(reportJson(jsonl));
