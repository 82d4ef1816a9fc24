// The soak shared by the gateway hosts (bench/soak/envoy.mjs, bench/soak/workerd.mjs):
// the policy, the request mix with each request's expected answer, and the
// run itself — `wrk` on loopback in rounds, every answer checked by a Lua
// script, the host's resident memory sampled every 2 s.
//
// The mix: every shared vector of tests/vectors/cases.json (valid EdDSA and
// ES256 tokens, expired, tampered, wrong audience, revoked, two
// Authorization headers, not a JWS, ...) recurring as agents reuse tokens,
// plus hostile requests — distinct forged tokens (cache-busting: each costs a
// signature check), 2000 distinct valid agents per round (per-agent state),
// a greedy agent on a 1/min limit (429s), a DPoP proof replayed on every
// connection, a 12 KB token, 60 junk headers around a valid token, and a path
// traversal. Each request's expected answer is known and every response is
// checked by the Lua script (status + problem+json `reason`, or `allow` for a
// 200): anything outside the expected set, a share of the answers more than
// 2 points off its share of the mix, or any socket error fails the run.
// Tokens are minted again each round (they live 5 minutes).
//
// The policy keeps per-agent state to 4000 keys and the token cache to 2000
// entries, so the agent flood fills them during the warm-up (two rounds);
// after it, flat memory means nothing grows with the requests served.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { webcrypto as crypto, createHash } from "node:crypto";

import { caseHeaders, loadVectors, signJwt } from "../../tests/vectors/mint.mjs";

const FORGED = 500; // distinct forged tokens per round
const AGENTS = 2000; // distinct valid agents per round
const WRK = process.env.WRK_BIN || "wrk";

export const vectors = loadVectors();
const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const sha256 = (text) => createHash("sha256").update(text).digest();

/** `[seconds] [--round=N] [--connections=N] [--workers=N]` from the command line. */
export function soakArgs(defaults = {}) {
  const args = process.argv.slice(2);
  const opt = (name, fallback) => Number(args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? fallback);
  return {
    seconds: Number(args.find((a) => /^\d+$/.test(a)) ?? defaults.seconds ?? 180),
    roundSecs: Math.min(opt("round", defaults.round ?? 30), 240),
    connections: opt("connections", defaults.connections ?? 32),
    workers: opt("workers", defaults.workers ?? 2),
  };
}

export function soakPolicy() {
  const p = structuredClone(vectors.policy);
  p.routes.push({ id: "soak-greedy", methods: ["GET"], path: "/v1/greedy/**", scopes: ["crm.read"] });
  p.limits = [{ id: "greedy", per: "agent", rate: "1/1m", burst: 1, routes: ["soak-greedy"] }];
  p.circuit_breaker = { window: "10s", max_requests: 100_000_000 };
  p.dpop = { max_age: "5m" };
  // Small enough that the flood of distinct agents fills the per-agent tables
  // and the token cache within the warm-up, so the rest of the run shows
  // whether memory stays flat once every bounded structure is full.
  p.state = { max_keys: 4000 };
  p.cache = { tokens: 2000 };
  return p;
}

/** One raw HTTP/1.1 request (repeated headers stay separate lines) and the answer it must get. */
function raw(method, path, headers, expect) {
  const lines = [`${method} ${path} HTTP/1.1`, "Host: api.test"];
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
  }
  return { text: `${lines.join("\r\n")}\r\n\r\n`, expect };
}

const claims = (now, agent, extra = {}) => ({
  iss: "https://sts.test",
  aud: "https://api.test",
  sub: "user:soak",
  client_id: "soak",
  act: { sub: `spiffe://test/agents/${agent}` },
  scope: "crm.read",
  jti: `soak-${agent}-${now}-${b64url(crypto.getRandomValues(new Uint8Array(6)))}`,
  iat: now - 5,
  exp: now + 290,
  ...extra,
});

async function dpopPair(now, scheme) {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", pair.publicKey);
  const jkt = b64url(sha256(JSON.stringify({ crv, kty, x, y })));
  const token = await signJwt(vectors.keys.ed25519, claims(now, "dpop-soak", { cnf: { jkt } }));
  const header = { typ: "dpop+jwt", alg: "ES256", jwk: { kty, crv, x, y } };
  const body = { htm: "GET", htu: `${scheme}://api.test/v1/contacts/42`, iat: now, jti: b64url(crypto.getRandomValues(new Uint8Array(12))), ath: b64url(sha256(token)) };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(body))}`;
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, Buffer.from(input));
  return { token, proof: `${input}.${b64url(new Uint8Array(sig))}` };
}

/** The round's requests; `scheme` is how the host sees the URL (DPoP proofs name it). */
export async function mix(round, scheme = "https") {
  const now = Math.floor(Date.now() / 1000);
  const out = [];
  const cases = [];
  for (const [i, c] of vectors.cases.entries()) {
    const headers = await caseHeaders(c, vectors.keys, now, round * 1000 + i);
    if (c.request.source_ip) headers["x-forwarded-for"] = c.request.source_ip;
    const e = c.expect;
    cases.push(raw(c.request.method, c.request.path, headers, e.status === 200 ? "200 allow" : `${e.status} ${e.reasons[0]}`));
  }
  // Agents reuse their tokens: the vectors recur (cache hits).
  for (let k = 0; k < 36; k++) out.push(...cases);
  const valid = vectors.cases.find((c) => c.expect.status === 200 && c.request.method === "GET");
  const token = (await caseHeaders(valid, vectors.keys, now, round * 1000 + 999)).authorization.slice(7);
  // Hostile: distinct forged tokens (valid shape, random signature).
  const [h, p] = token.split(".");
  for (let i = 0; i < FORGED; i++) {
    const sig = b64url(crypto.getRandomValues(new Uint8Array(64)));
    out.push(raw("GET", valid.request.path, { authorization: `Bearer ${h}.${p}.${sig}` }, "401 token_signature_invalid"));
  }
  // Many distinct valid agents: per-agent state (breaker windows) in the shared tables.
  for (let i = 0; i < AGENTS; i++) {
    const t = await signJwt(vectors.keys.ed25519, claims(now, `soak-${round}-${i}`));
    out.push(raw("GET", "/v1/contacts/1", { authorization: `Bearer ${t}` }, "200 allow"));
  }
  // A greedy agent on a 1/min limit: all but ~1 a minute are 429s.
  const greedy = await signJwt(vectors.keys.ed25519, claims(now, `greedy-${round}`));
  // A DPoP proof replayed on every connection: used once, refused ever after.
  const dpop = await dpopPair(now, scheme);
  for (let k = 0; k < 300; k++) {
    out.push(raw("GET", "/v1/greedy/x", { authorization: `Bearer ${greedy}` }, "429 rate_limited"));
    out.push(raw("GET", "/v1/contacts/42", { authorization: `DPoP ${dpop.token}`, dpop: dpop.proof }, "401 dpop_proof_replayed"));
  }
  for (let k = 0; k < 10; k++) {
    // A 12 KB "token", 60 junk headers around a valid token, a traversal.
    out.push(raw("GET", valid.request.path, { authorization: `Bearer ${"A".repeat(12_000)}` }, "401 token_malformed"));
    const junk = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`x-junk-${i}`, "y".repeat(100)]));
    out.push(raw("GET", valid.request.path, { ...junk, authorization: `Bearer ${token}` }, "200 allow"));
    out.push(raw("GET", "/v1/contacts/../../admin", { authorization: `Bearer ${token}` }, "403 route_not_matched"));
  }
  // Shuffled (seeded), so every stretch of the run has the same mix.
  let seed = 42 + round;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function luaString(s) {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\r/g, "\\r").replace(/\n/g, "\\n")}"`;
}

function luaScript(requests) {
  return `
local requests = { ${requests.map((r) => luaString(r.text)).join(",\n")} }
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {}; i = math.random(#requests) end
function request()
  i = i % #requests + 1
  return requests[i]
end
function response(status, headers, body)
  local key
  if status == 200 then key = "200 allow"
  else key = tostring(status) .. " " .. (string.match(body or "", '"reason":"([%w_]+)"') or "?") end
  counts[key] = (counts[key] or 0) + 1
end
function done(summary, latency, requests_)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%s": %d', k, v)) end
  io.write("COUNTS {" .. table.concat(parts, ", ") .. "}\\n")
  io.write(string.format("ERRORS {\\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"timeout\\": %d, \\"status\\": %d}\\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout, summary.errors.status))
  io.write(string.format("LATENCY {\\"p50\\": %d, \\"p99\\": %d}\\n", latency:percentile(50), latency:percentile(99)))
end
`;
}

function rss(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function runWrk(url, script, secs, connections) {
  return new Promise((resolve, reject) => {
    const child = spawn(WRK, ["-t2", `-c${connections}`, `-d${secs}s`, "--latency", "-s", script, url], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited ${code}:\n${out}`))));
  });
}

/**
 * Runs the soak against `url` for `seconds`, in rounds of `roundSecs` (a new
 * mix each round), sampling the resident memory of process `pid`. Returns
 * `{failed, report}` after printing a line per round and the memory summary.
 */
export async function runSoak({ name, url, pid, seconds, roundSecs, connections, scheme = "https", extra = {} }) {
  const dir = mkdtempSync(join(tmpdir(), "agentguard-soak-"));
  // Removed in the `finally` below, and on Ctrl-C or SIGTERM mid-run (the
  // listener removes itself, then the signal's default action ends the process).
  const onSignal = (signal) => {
    rmSync(dir, { recursive: true, force: true });
    process.off(signal, onSignal);
    process.kill(process.pid, signal);
  };
  process.on("SIGINT", onSignal).on("SIGTERM", onSignal);
  const samples = [];
  const started = Date.now();
  const sampler = setInterval(() => samples.push({ t: (Date.now() - started) / 1000, kb: rss(pid) }), 2000);
  let failed = false;
  const rounds = [];
  try {
    const n = Math.max(1, Math.ceil(seconds / roundSecs));
    for (let round = 0; round < n; round++) {
      const requests = await mix(round, scheme);
      const script = join(dir, `round-${round}.lua`);
      writeFileSync(script, luaScript(requests));
      const secs = Math.min(roundSecs, seconds - round * roundSecs);
      const out = await runWrk(url, script, secs, connections);
      const counts = JSON.parse(/^COUNTS (.*)$/m.exec(out)[1]);
      const errors = JSON.parse(/^ERRORS (.*)$/m.exec(out)[1]);
      const latency = JSON.parse(/^LATENCY (.*)$/m.exec(out)[1]);
      const expected = new Set(requests.map((r) => r.expect));
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      // The greedy agent's one request a minute and the DPoP proof's first use are 200s.
      const unexpected = Object.entries(counts).filter(([k]) => !expected.has(k) && k !== "200 allow");
      const share = (k) => requests.filter((r) => r.expect === k).length / requests.length;
      const skewed = [...expected].filter((k) => Math.abs((counts[k] ?? 0) / total - share(k)) > 0.02);
      const socketErrors = errors.connect + errors.read + errors.write + errors.timeout;
      const non2xx = total - (counts["200 allow"] ?? 0);
      rounds.push({ round, seconds: secs, requests: total, rps: Math.round(total / secs), p50_us: latency.p50, p99_us: latency.p99, non2xx, unexpected, skewed, socketErrors, rss_kib: rss(pid) });
      console.log(
        `round ${round + 1}/${n}: ${total} requests (${Math.round(total / secs)}/s), p50 ${latency.p50} µs, p99 ${latency.p99} µs; ` +
          `non-2xx ${non2xx} (all expected denies unless listed), unexpected answers ${unexpected.reduce((a, [, v]) => a + v, 0)}, ` +
          `socket errors ${socketErrors}; ${name} RSS ${((rss(pid) ?? 0) / 1024).toFixed(1)} MiB` +
          (skewed.length ? `, shares off: ${skewed.join(", ")}` : ""),
      );
      if (unexpected.length || socketErrors || skewed.length) {
        failed = true;
        console.log("  counts:", JSON.stringify(counts));
      }
    }
  } finally {
    clearInterval(sampler);
    process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
    rmSync(dir, { recursive: true, force: true });
  }

  // Memory after the warm-up (two rounds, at most a third of the run).
  const warmupSecs = Math.min(2 * roundSecs, seconds / 3);
  const warm = samples.filter((s) => s.kb !== null && s.t >= warmupSecs);
  const xs = warm.map((s) => s.t);
  const ys = warm.map((s) => s.kb);
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  const slope =
    warm.length > 2
      ? xs.reduce((acc, x, i) => acc + (x - mean(xs)) * (ys[i] - mean(ys)), 0) / xs.reduce((acc, x) => acc + (x - mean(xs)) ** 2, 0)
      : 0;
  const mib = (kb) => (kb / 1024).toFixed(1);
  const all = samples.filter((s) => s.kb !== null).map((s) => s.kb);
  const report = {
    host: name,
    seconds,
    connections,
    ...extra,
    rounds,
    rss_mib: warm.length
      ? {
          warmup_secs: warmupSecs,
          at_start: mib(all[0]),
          first_after_warmup: mib(ys[0]),
          last: mib(ys.at(-1)),
          max_after_warmup: mib(Math.max(...ys)),
          slope_kib_per_min: Math.round(slope * 60),
        }
      : null,
  };
  console.log(
    `${name} RSS: at start ${report.rss_mib?.at_start} MiB; after warm-up: first ${report.rss_mib?.first_after_warmup} MiB, ` +
      `last ${report.rss_mib?.last} MiB, max ${report.rss_mib?.max_after_warmup} MiB, slope ${report.rss_mib?.slope_kib_per_min} KiB/min`,
  );
  return { failed, report };
}
