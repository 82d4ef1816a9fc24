// The Wasm core in the page: the same module the js/ package ships
// (wasm-bindgen `--target web` glue, copied to dist/ by scripts/build-www.sh).
// Every check and decision is the core's; this file only moves JSON across.

import init, { Guard, check, mint, version } from "../dist/agentguard.js";

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

  constructor(policyText) {
    this.#guard = new Guard(policyText);
  }

  /** Decides a core request object; never throws. */
  decide(request) {
    return JSON.parse(this.#guard.decide(JSON.stringify(request)));
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
