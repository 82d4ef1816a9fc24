// Soak: the agentguard gateway in real workerd under `wrk` load on loopback
// for a few minutes, with a mix of valid, invalid and hostile requests.
//
//   node bench/soak/workerd.mjs [seconds=180] [--round=60] [--connections=32]
//
// (after `bash scripts/build-js.sh`; `. .tools/env.sh` gives WORKERD_BIN).
//
// The mix is every shared vector of tests/vectors/cases.json (valid EdDSA
// and ES256 tokens, expired, tampered, wrong audience, revoked, two
// Authorization headers, not a JWS, ...) plus hostile requests: distinct
// forged tokens (cache-busting: each one costs a signature check and must not
// be cached), oversized tokens and header floods. Each request's expected
// answer is known, so every response is checked: the Lua script classifies
// it by status and reason code (a refusal's problem+json `reason`, or
// `allow` for the origin's 200), and anything outside the expected set is an
// error. Tokens are minted again for each round (they live 5 minutes).
//
// It samples workerd's resident memory (VmRSS) every 2 s and reports the
// first and last sample after a warm-up round, the maximum, and the slope.
// Exit status: non-zero on any unexpected answer or socket error.

import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { caseHeaders, loadVectors } from "../../tests/vectors/mint.mjs";
import { startGateway } from "../../js/test/helpers.mjs";

const args = process.argv.slice(2);
const opt = (name, fallback) => Number(args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? fallback);
const seconds = Number(args.find((a) => /^\d+$/.test(a)) ?? 180);
const roundSecs = Math.min(opt("round", 60), 240);
const connections = opt("connections", 32);
const FORGED = 500; // distinct forged tokens per round (about a third of the mix)

const vectors = loadVectors();
const b64url = (bytes) => Buffer.from(bytes).toString("base64url");

/** One raw HTTP/1.1 request (repeated headers stay separate lines) and the answer it must get. */
function raw(method, path, headers, expect) {
  const lines = [`${method} ${path} HTTP/1.1`, "Host: api.test"];
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
  }
  return { text: `${lines.join("\r\n")}\r\n\r\n`, expect };
}

async function mix(serial) {
  const now = Math.floor(Date.now() / 1000);
  const out = [];
  const cases = [];
  for (const [i, c] of vectors.cases.entries()) {
    const headers = await caseHeaders(c, vectors.keys, now, serial * 1000 + i);
    const e = c.expect;
    cases.push(raw(c.request.method, c.request.path, headers, e.status === 200 ? "200 allow" : `${e.status} ${e.reasons[0]}`));
  }
  // Agents reuse their tokens: each vector's request recurs (cache hits), about 60% of the mix.
  for (let k = 0; k < 36; k++) out.push(...cases);
  // Hostile: distinct forged tokens (valid shape, random signature).
  const valid = vectors.cases.find((c) => c.expect.status === 200 && c.request.method === "GET");
  const token = (await caseHeaders(valid, vectors.keys, now, serial * 1000 + 999)).authorization.slice(7);
  const [h, p] = token.split(".");
  for (let i = 0; i < FORGED; i++) {
    const sig = b64url(crypto.getRandomValues(new Uint8Array(64)));
    out.push(raw("GET", valid.request.path, { authorization: `Bearer ${h}.${p}.${sig}` }, "401 token_signature_invalid"));
  }
  // Hostile: a 12 KB "token" and a flood of 60 junk headers around a valid token.
  for (let k = 0; k < 10; k++) {
    out.push(raw("GET", valid.request.path, { authorization: `Bearer ${"A".repeat(12_000)}` }, "401 token_malformed"));
    const junk = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`x-junk-${i}`, "y".repeat(100)]));
    out.push(raw("GET", valid.request.path, { ...junk, authorization: `Bearer ${token}` }, "200 allow"));
  }
  // Shuffled (seeded), so every stretch of the run has the same mix.
  let seed = 42 + serial;
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
  const expected = [...new Set(requests.map((r) => r.expect))];
  return `
local requests = { ${requests.map((r) => luaString(r.text)).join(",\n")} }
local expected = { ${expected.map((e) => `[${luaString(e)}] = true`).join(", ")} }
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

function runWrk(url, script, secs) {
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", ["-t2", `-c${connections}`, `-d${secs}s`, "--latency", "-s", script, url], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited ${code}:\n${out}`))));
  });
}

// A minimal origin: 200 for everything, nothing kept.
const origin = createServer((req, res) => {
  req.resume();
  req.on("end", () => res.writeHead(200, { "content-type": "text/plain" }).end("ok"));
});
await new Promise((r) => origin.listen(0, "127.0.0.1", r));
const gateway = await startGateway({ policyText: vectors.policyText, originPort: origin.address().port });
const dir = mkdtempSync(join(tmpdir(), "agentguard-soak-"));
const samples = [];
const started = Date.now();
const sampler = setInterval(() => samples.push({ t: (Date.now() - started) / 1000, kb: rss(gateway.pid) }), 2000);
let failed = false;
const rounds = [];
try {
  const n = Math.max(1, Math.ceil(seconds / roundSecs));
  for (let round = 0; round < n; round++) {
    const requests = await mix(round);
    const script = join(dir, `round-${round}.lua`);
    writeFileSync(script, luaScript(requests));
    const secs = Math.min(roundSecs, seconds - round * roundSecs);
    const out = await runWrk(gateway.url, script, secs);
    const counts = JSON.parse(/^COUNTS (.*)$/m.exec(out)[1]);
    const errors = JSON.parse(/^ERRORS (.*)$/m.exec(out)[1]);
    const latency = JSON.parse(/^LATENCY (.*)$/m.exec(out)[1]);
    const expected = new Set(requests.map((r) => r.expect));
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    const unexpected = Object.entries(counts).filter(([k]) => !expected.has(k));
    // Every kind of request was answered as expected, in proportion to its share of the mix.
    const share = (k) => requests.filter((r) => r.expect === k).length / requests.length;
    const skewed = [...expected].filter((k) => Math.abs((counts[k] ?? 0) / total - share(k)) > 0.02);
    const socketErrors = errors.connect + errors.read + errors.write + errors.timeout;
    rounds.push({ round, seconds: secs, requests: total, rps: Math.round(total / secs), p50_us: latency.p50, p99_us: latency.p99, unexpected, skewed, socketErrors });
    console.log(
      `round ${round + 1}/${n}: ${total} requests (${Math.round(total / secs)}/s), p50 ${latency.p50} µs, p99 ${latency.p99} µs; ` +
        `unexpected answers ${unexpected.reduce((a, [, v]) => a + v, 0)}, socket errors ${socketErrors}` +
        (skewed.length ? `, shares off: ${skewed.join(", ")}` : ""),
    );
    if (unexpected.length || socketErrors || skewed.length) {
      failed = true;
      console.log("  counts:", JSON.stringify(counts));
    }
  }
} finally {
  clearInterval(sampler);
  await gateway.stop();
  await new Promise((r) => origin.close(r));
  rmSync(dir, { recursive: true, force: true });
}

// Memory after the warm-up round: flat means no growth with requests served.
const warm = samples.filter((s) => s.kb !== null && s.t >= Math.min(roundSecs, seconds / 3));
const xs = warm.map((s) => s.t);
const ys = warm.map((s) => s.kb);
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const slope =
  warm.length > 2
    ? xs.reduce((acc, x, i) => acc + (x - mean(xs)) * (ys[i] - mean(ys)), 0) / xs.reduce((acc, x) => acc + (x - mean(xs)) ** 2, 0)
    : 0;
const mib = (kb) => (kb / 1024).toFixed(1);
const report = {
  seconds,
  rounds,
  rss_mib: warm.length
    ? { first_after_warmup: mib(ys[0]), last: mib(ys.at(-1)), max: mib(Math.max(...ys)), slope_kib_per_min: Math.round(slope * 60) }
    : null,
};
console.log(
  `workerd RSS after warm-up: first ${report.rss_mib?.first_after_warmup} MiB, last ${report.rss_mib?.last} MiB, ` +
    `max ${report.rss_mib?.max} MiB, slope ${report.rss_mib?.slope_kib_per_min} KiB/min`,
);
console.log(JSON.stringify(report));
process.exit(failed ? 1 : 0);
