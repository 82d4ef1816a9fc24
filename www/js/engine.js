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
 * A compiled policy with its own state (token cache, replay caches, rate
 * buckets, circuit breaker). Each decision is `JSON.parse(guard.decide(...))`.
 */
export class Engine {
  #guard;
  #log;

  /** `options.log`: record each decision's event in the session's decision log. */
  constructor(policyText, options = {}) {
    this.#guard = new Guard(policyText);
    this.#log = Boolean(options.log);
  }

  /** Decides a core request object; never throws. */
  decide(request) {
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
