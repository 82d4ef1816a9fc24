// What bench.mjs and ab.mjs share: the benchmark token's claims, the request
// it is sent in, one timed pass and the median.

import { performance } from "node:perf_hooks";

/** Claims of the i-th benchmark token (allowed by tests/vectors/policy.json). */
export function claims(now, i) {
  return {
    iss: "https://sts.test",
    aud: "https://api.test",
    sub: "user:alice",
    client_id: "crm-agent",
    act: { sub: "spiffe://test/agents/crm-bot" },
    scope: "crm.read mail.draft",
    iat: now - 10,
    exp: now + 290,
    jti: `bench-${i}`,
  };
}

/** The core request that reads a contact with `token`. */
export const input = (token) => ({
  method: "GET",
  host: "api.test",
  path: "/v1/contacts/42",
  headers: { authorization: `Bearer ${token}` },
  now: Date.now() / 1000,
});

/** One timed pass of `fn(i)` for i in 0..count; returns ops/s. */
export async function pass(fn, count) {
  const t0 = performance.now();
  for (let i = 0; i < count; i++) await fn(i);
  return count / ((performance.now() - t0) / 1000);
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
