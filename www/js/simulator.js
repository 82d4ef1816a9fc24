// Traffic simulator: many requests from one or many agents against a fresh
// engine compiled from the policy, with simulated time (each request's `now`
// is computed, never waited for). Returns per-bucket outcome counts for the
// charts, per-agent lanes, the breaker trips and the final suspensions.

import { Engine } from "./engine.js";
import { outcomeClass } from "./decision-view.js";
import { Client, agentId } from "./world.js";

/** Deterministic PRNG (mulberry32), so a shared simulation replays the same. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const MIXES = {
  read: "reads",
  mixed: "reads, drafts",
  payments: "+ payments",
};

function pick(mix, r) {
  const id = 1 + Math.floor(r() * 500);
  const x = r();
  if (mix === "read") return { method: "GET", path: `/v1/contacts/${id}` };
  if (mix === "payments" && x < 0.15) return { method: "POST", path: `/v1/invoices/${id}/pay`, body: `{"invoice":${id}}` };
  if (x < 0.2) return { method: "GET", path: "/v1/contacts?page=1" };
  if (x < 0.4) return { method: "POST", path: "/v1/drafts", body: `{"to":"contact-${id}"}` };
  return { method: "GET", path: `/v1/contacts/${id}` };
}

export const PRESETS = {
  loop: { agents: 0, rate: 1, loopers: 1, loopRate: 25, duration: 30, mix: "read", seed: 1 },
  fleet: { agents: 6, rate: 1, loopers: 0, loopRate: 25, duration: 60, mix: "payments", seed: 1 },
  fleetLoop: { agents: 5, rate: 1, loopers: 1, loopRate: 20, duration: 60, mix: "mixed", seed: 1 },
};

/**
 * `config`: agents (well-behaved), rate (req/s each), loopers (agents
 * stuck in a loop on one URL), loopRate, duration (s), mix, seed.
 * `ctx`: {policyText, policy, keys, start (Unix s), onProgress(done, total)}.
 */
export async function simulate(config, ctx) {
  const engine = new Engine(ctx.policyText, { log: true });
  const client = new Client(ctx.keys, ctx.policy);
  const r = rng(config.seed ?? 1);
  const agents = [];
  for (let i = 0; i < config.loopers; i++) agents.push({ label: `looping-agent-${i + 1}`, rate: config.loopRate, loop: true });
  for (let i = 0; i < config.agents; i++) agents.push({ label: `agent-${i + 1}`, rate: config.rate, loop: false });
  agents.forEach((a) => (a.id = agentId(a.label)));
  // Every request time, in order (agents start at a small random offset).
  const events = [];
  agents.forEach((a, k) => {
    const offset = r() / Math.max(a.rate, 0.001);
    for (let t = offset; t < config.duration; t += 1 / a.rate) events.push({ t, k });
  });
  events.sort((p, q) => p.t - q.t || p.k - q.k);

  const bucketSec = Math.max(1, Math.ceil(config.duration / 60));
  const nb = Math.ceil(config.duration / bucketSec);
  const empty = () => ({ allow: 0, approval: 0, limited: 0, deny: 0, revoked: 0 });
  const buckets = Array.from({ length: nb }, (_, i) => ({ t: i * bucketSec, ...empty() }));
  const lanes = agents.map(() => Array.from({ length: nb }, () => null));
  const trips = [];
  const codes = new Map();
  let done = 0;
  try {
    for (const ev of events) {
      const a = agents[ev.k];
      const now = ctx.start + ev.t;
      // A real agent refreshes its token before it expires.
      if (!a.token || a.exp - now < 30) {
        a.token = await client.token(now, { agent: a.id, scope: "crm.read mail.draft payments.write", lifetime: 600 });
        a.exp = now + 600;
      }
      const target = a.loop ? { method: "GET", path: "/v1/contacts/42" } : pick(config.mix, r);
      const req = await client.request({ ...target, token: a.token, now, agent: a.id });
      const d = engine.decide(req);
      const cls = outcomeClass(d);
      const i = Math.min(nb - 1, Math.floor(ev.t / bucketSec));
      buckets[i][cls]++;
      lanes[ev.k][i] ??= empty();
      lanes[ev.k][i][cls]++;
      const code = d.reasons[0]?.code ?? "allowed";
      codes.set(code, (codes.get(code) ?? 0) + 1);
      // The circuit breaker's verdict: the tripping request (`breaker_*`) or
      // the first one refused as suspended, whose event names the trip.
      const trip = d.event?.breaker;
      if (d.decision === "revoked" && (trip || code.startsWith("breaker_")) && !a.tripped) {
        a.tripped = true;
        trips.push({ t: ev.t, agent: a.label, kind: trip?.kind ?? code.replace("breaker_", ""), code, message: trip?.detail ?? d.reasons[0].message });
      }
      if (d.decision !== "revoked") a.tripped = false;
      if (++done % 50 === 0) {
        ctx.onProgress?.(done, events.length);
        await new Promise((res) => setTimeout(res, 0));
      }
    }
    const suspended = engine.suspended(ctx.start + config.duration);
    return {
      bucketSec,
      buckets,
      lanes,
      agents,
      trips,
      codes: [...codes.entries()].sort((p, q) => q[1] - p[1]),
      total: events.length,
      suspended,
      events: trips.map((t) => ({ t: t.t, label: `${t.agent} revoked (${t.kind.replace("_", " ")})` })),
    };
  } finally {
    engine.free();
  }
}
