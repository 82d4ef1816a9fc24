// agentguard in Envoy vs Envoy's own JWT filter, side by side in one run.
//
//   bash bench/envoy/run.sh            (builds, installs tools, then runs this)
//
// Every variant is the same Envoy (1 worker) answering GET /v1/contacts/42
// with a direct response after its HTTP filters, so the numbers compare the
// filters, not an upstream. wrk (1 thread, 16 connections, loopback) sends
// the same valid ES256 token on every request:
//
//   none            no auth filter
//   jwt_authn+rbac  envoy.filters.http.jwt_authn (same issuer, audience, keys,
//                   clock skew and max lifetime; JWT cache on) + RBAC requiring
//                   GET /v1/contacts/* and `crm.read` in the token's scope
//   agentguard      the Wasm filter with tests/vectors/policy.json (cache on)
//   agentguard, 3 headers  the same policy forwarding only the subject,
//                   client id and scopes (`identity_headers.include`): what
//                   jwt_authn's claim_to_headers forwards here
//
// and, for the floor under any Wasm filter (bench/envoy/floor: same SDK,
// build and exported callbacks as agentguard's filter, but deciding nothing):
//
//   wasm floor, empty              on_http_request_headers returns Continue
//   wasm floor, identity           reads the headers, 401 without
//                                  `authorization`, reads the clock, adds
//                                  3 headers: agentguard's host calls
//
// and, with PERF=1 (or when named in VARIANTS), two that add Wasm time to the
// identity floor, to tell what a filter's time costs Envoy from what its
// footprint costs:
//
//   wasm floor, busy               + 54 000 rounds of a tiny loop (~10 µs
//                                  here: about agentguard's time in the VM)
//   wasm floor, code               + one call to each of 400 distinct
//                                  functions (~200 KiB of Wasm)
//
// and, to price a fresh signature check (every request a cache miss):
//
//   jwt_authn, no cache            jwt_authn+rbac with the JWT cache off
//   agentguard, no cache           the policy with `cache.tokens: 0`
//   agentguard, no cache, EdDSA    the same with an EdDSA token
//
// Variants run in rounds (A B C D E, A B C D E, ...); each figure is the
// median over rounds. Environment: ROUNDS (3), DURATION (8 s), CONNECTIONS (16),
// VARIANTS (names separated by `;`, to run only those), COMPARE_WASM (another
// build of the filter: its cached variants and its two without the cache
// run in the same rounds, for an A/B
// that the machine's drift between runs cannot blur), PERF=1 (`perf record`s
// Envoy through each measured run and splits its CPU per request by where it
// ran: V8's compiled Wasm, Envoy's own code, the kernel, libc; needs `perf`).

import { execFileSync, spawn } from "node:child_process";
import { writeFileSync, mkdirSync, mkdtempSync, rmSync, statSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { loadVectors, mintCaseToken } from "../../tests/vectors/mint.mjs";
import { ROOT, WASM, startEnvoy, send, stats, wasmFilter } from "../../tests/envoy/harness.mjs";

// The filter as the tests configure it, without holding headers for bodies (no route here needs one).
const agentguardFilter = (policyJson, wasm) => wasmFilter(policyJson, { allowStopIteration: false, wasm });
const COMPARE = process.env.COMPARE_WASM;
const FLOOR = path.join(ROOT, "target/envoy/floor.wasm");
const floorFilter = (mode) => wasmFilter(mode, { allowStopIteration: false, wasm: FLOOR });

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const DURATION = Number(process.env.DURATION ?? 8);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16);
const WRK = process.env.WRK_BIN || "wrk";
const TARGET = "/v1/contacts/42";
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));

const { cases, keys, policy, policyText } = loadVectors();
const es256 = cases.find((c) => c.name === "valid ES256 token reads a contact").token;

// ------------------------------------------------------------------ configs

const directResponse = { status: 200, body: { inline_string: "ok\n" } };

function bootstrap(httpFilters) {
  return {
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: 0 } } },
    static_resources: {
      listeners: [
        {
          name: "bench",
          address: { socket_address: { address: "127.0.0.1", port_value: 0 } },
          filter_chains: [
            {
              filters: [
                {
                  name: "envoy.filters.network.http_connection_manager",
                  typed_config: {
                    "@type":
                      "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    stat_prefix: "bench",
                    route_config: {
                      virtual_hosts: [
                        { name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, direct_response: directResponse }] },
                      ],
                    },
                    http_filters: [
                      ...httpFilters,
                      {
                        name: "envoy.filters.http.router",
                        typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                      },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
    },
  };
}

function jwtAuthnFilters({ cache }) {
  const issuer = policy.issuers[0];
  const seconds = (d) => Number(d.slice(0, -1)) * { s: 1, m: 60, h: 3600 }[d.at(-1)];
  const provider = {
    issuer: issuer.iss,
    audiences: issuer.audiences,
    local_jwks: { inline_string: JSON.stringify(issuer.jwks) },
    forward: true,
    payload_in_metadata: "jwt_payload",
    clock_skew_seconds: seconds(issuer.clock_skew),
    max_lifetime: `${seconds(issuer.max_lifetime)}s`,
    // What agentguard forwards as identity headers.
    claim_to_headers: [
      { header_name: "x-jwt-subject", claim_name: "sub" },
      { header_name: "x-jwt-client-id", claim_name: "client_id" },
      { header_name: "x-jwt-scope", claim_name: "scope" },
    ],
    ...(cache ? { jwt_cache_config: { jwt_cache_size: 1000 } } : {}),
  };
  return [
    {
      name: "envoy.filters.http.jwt_authn",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        providers: { sts: provider },
        rules: [{ match: { prefix: "/" }, requires: { provider_name: "sts" } }],
      },
    },
    {
      name: "envoy.filters.http.rbac",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        rules: {
          action: "ALLOW",
          policies: {
            "read-contacts": {
              permissions: [
                {
                  and_rules: {
                    rules: [
                      { header: { name: ":method", string_match: { exact: "GET" } } },
                      { url_path: { path: { prefix: "/v1/contacts/" } } },
                    ],
                  },
                },
              ],
              principals: [
                {
                  metadata: {
                    filter: "envoy.filters.http.jwt_authn",
                    path: [{ key: "jwt_payload" }, { key: "scope" }],
                    value: { string_match: { safe_regex: { regex: "(.* )?crm\\.read( .*)?" } } },
                  },
                },
              ],
            },
          },
        },
      },
    },
  ];
}

const noCachePolicy = JSON.stringify({ ...policy, cache: { tokens: 0 } });
const threeHeadersPolicy = JSON.stringify({
  ...policy,
  identity_headers: { ...policy.identity_headers, include: ["subject", "client-id", "scopes"] },
});

const VARIANTS = [
  { name: "none", filters: [] },
  { name: "jwt_authn+rbac", filters: jwtAuthnFilters({ cache: true }) },
  { name: "agentguard", filters: [agentguardFilter(policyText)] },
  { name: "agentguard, 3 headers", filters: [agentguardFilter(threeHeadersPolicy)] },
  { name: "wasm floor, empty", filters: [floorFilter("empty")], open: true },
  { name: "wasm floor, identity", filters: [floorFilter("identity")] },
  { name: "wasm floor, busy", filters: [floorFilter("busy:54000")], optional: true },
  { name: "wasm floor, code", filters: [floorFilter("code:400")], optional: true },
  { name: "jwt_authn+rbac, no cache", filters: jwtAuthnFilters({ cache: false }) },
  { name: "agentguard, no cache", filters: [agentguardFilter(noCachePolicy)] },
  { name: "agentguard, no cache, EdDSA", filters: [agentguardFilter(noCachePolicy)], key: "ed25519" },
];
if (COMPARE) {
  VARIANTS.push(
    { name: "agentguard [COMPARE_WASM]", filters: [agentguardFilter(policyText, COMPARE)] },
    { name: "agentguard, 3 headers [COMPARE_WASM]", filters: [agentguardFilter(threeHeadersPolicy, COMPARE)] },
    { name: "agentguard, no cache [COMPARE_WASM]", filters: [agentguardFilter(noCachePolicy, COMPARE)] },
    {
      name: "agentguard, no cache, EdDSA [COMPARE_WASM]",
      filters: [agentguardFilter(noCachePolicy, COMPARE)],
      key: "ed25519",
    },
  );
}

// ------------------------------------------------------------------ wrk

function parseLatency(text) {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!m) throw new Error(`cannot parse latency ${text}`);
  return Number(m[1]) * { us: 1e-3, ms: 1, s: 1e3 }[m[2]];
}

function wrk(port, token, seconds) {
  const out = execFileSync(
    WRK,
    [
      "-t1",
      `-c${CONNECTIONS}`,
      `-d${seconds}s`,
      "--latency",
      "-H",
      "Host: api.test",
      "-H",
      `authorization: Bearer ${token}`,
      `http://127.0.0.1:${port}${TARGET}`,
    ],
    { encoding: "utf8" },
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = parseLatency(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? "");
  const p99 = parseLatency(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? "");
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const errors = /Socket errors:.*/.exec(out)?.[0] ?? "";
  return { rps, p50, p99, requests, non2xx, errors };
}

/** CPU seconds (user + system) Envoy's process has used so far. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  // utime and stime are fields 14 and 15 of /proc/<pid>/stat (1-based), in clock ticks.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ------------------------------------------------------------------ perf (PERF=1)

const PERF = process.env.PERF === "1";
const perfDir = PERF ? mkdtempSync(path.join(tmpdir(), "agentguard-perf-")) : null;
if (PERF) process.on("exit", () => rmSync(perfDir, { recursive: true, force: true }));

/** Starts `perf record` on Envoy for `seconds`; resolves to its data file once it has written it. */
function perfRecord(pid, seconds) {
  const out = path.join(perfDir, `${pid}.data`);
  const perf = spawn("perf", ["record", "-q", "-F", "2000", "-p", String(pid), "-o", out, "--", "sleep", String(seconds)], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  return new Promise((resolve, reject) => {
    perf.on("error", (e) => reject(new Error(`PERF=1 needs perf (Debian: linux-perf): ${e.message}`)));
    perf.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`perf record exited with ${code}`))));
  });
}

/** Envoy's samples by where they ran, as shares of 1: `jit` is V8's compiled code (the Wasm filters). */
function perfSplit(file) {
  const text = execFileSync("perf", ["report", "-i", file, "--sort", "dso", "--stdio", "-q"], { encoding: "utf8" });
  const split = { jit: 0, envoy: 0, kernel: 0, libc: 0, other: 0 };
  for (const line of text.split("\n")) {
    const m = /^\s*([\d.]+)%\s+(.+?)\s*$/.exec(line);
    if (!m) continue;
    const dso = m[2];
    const part = dso.startsWith("[JIT]")
      ? "jit"
      : dso === "envoy"
        ? "envoy"
        : dso.startsWith("[kernel")
          ? "kernel"
          : dso.startsWith("libc")
            ? "libc"
            : "other";
    split[part] += Number(m[1]) / 100;
  }
  return split;
}

// ------------------------------------------------------------------ run

async function measure(variant, token) {
  const envoy = await startEnvoy(bootstrap(variant.filters), { logLevel: "wasm:warn" });
  try {
    const check = await send(envoy.port, { path: TARGET, headers: { authorization: `Bearer ${token}` } });
    if (check.status !== 200) throw new Error(`${variant.name}: the valid token got ${check.status}: ${check.body}`);
    const anonymous = await send(envoy.port, { path: TARGET });
    if (variant.filters.length && !variant.open && anonymous.status !== 401 && process.env.CHECK !== "0") {
      throw new Error(`${variant.name}: a request without a token got ${anonymous.status}`);
    }
    wrk(envoy.port, token, 3); // warm-up: V8 tiers the Wasm up, caches fill
    const cpuBefore = cpuSeconds(envoy.pid);
    // Ends a second before wrk, so every sample is of Envoy under load.
    const recorded = PERF ? perfRecord(envoy.pid, Math.max(1, DURATION - 1)) : null;
    const result = wrk(envoy.port, token, DURATION);
    // Envoy's CPU time per request: steadier than req/s when the machine is shared.
    result.cpuUs = ((cpuSeconds(envoy.pid) - cpuBefore) * 1e6) / result.requests;
    if (recorded) {
      const split = perfSplit(await recorded);
      result.perfUs = Object.fromEntries(Object.entries(split).map(([k, share]) => [k, share * result.cpuUs]));
    }
    if (result.non2xx || result.errors) throw new Error(`${variant.name}: ${result.non2xx} non-2xx, ${result.errors}`);
    if (variant.name.startsWith("agentguard")) {
      const { values, text } = await stats(envoy);
      result.cacheHits = values["wasmcustom.agentguard.token.cache_hit"] ?? 0;
      result.cacheMisses = values["wasmcustom.agentguard.token.cache_miss"] ?? 0;
      // The filter's own histogram: time inside the decision (host calls excluded).
      const hist = /decision_time_us: (.*)/.exec(text)?.[1] ?? "";
      const cumulative = (q) => Number(new RegExp(`P${q}\\([^,]+,([\\d.]+)\\)`).exec(hist)?.[1]);
      result.decideUs = { p50: cumulative(50), p99: cumulative(99) };
    }
    return result;
  } finally {
    await envoy.stop();
  }
}

const only = process.env.VARIANTS?.split(";");
const selected = only ? VARIANTS.filter((v) => only.includes(v.name)) : VARIANTS.filter((v) => PERF || !v.optional);
const results = new Map(selected.map((v) => [v.name, []]));
console.log(`Envoy ${execFileSync(process.env.ENVOY_BIN, ["--version"], { encoding: "utf8" }).match(/\d+\.\d+\.\d+/)[0]}, 1 worker; wrk -t1 -c${CONNECTIONS} -d${DURATION}s; ${ROUNDS} round(s)`);
for (let round = 1; round <= ROUNDS; round++) {
  // One valid token per round (iat now-10 s, exp now+590 s: the policy's 10 min maximum).
  const now = Math.floor(Date.now() / 1000);
  const tokens = {
    es256: await mintCaseToken({ ...es256, exp: 590 }, keys, now, round),
    ed25519: await mintCaseToken({ ...es256, key: "ed25519", exp: 590 }, keys, now, round),
  };
  for (const variant of selected) {
    const r = await measure(variant, tokens[variant.key ?? "es256"]);
    results.get(variant.name).push(r);
    console.log(
      `  round ${round}  ${variant.name.padEnd(26)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(3)} ms  p99 ${r.p99.toFixed(3)} ms  cpu ${r.cpuUs.toFixed(1)} us/req` +
        (r.cacheHits !== undefined
          ? `  (token cache: ${r.cacheHits} hits, ${r.cacheMisses} misses; decide p50 ${r.decideUs.p50.toFixed(1)} us, p99 ${r.decideUs.p99.toFixed(1)} us)`
          : "") +
        (r.perfUs
          ? `\n           perf, us/req: V8 JIT (Wasm) ${r.perfUs.jit.toFixed(1)}, envoy ${r.perfUs.envoy.toFixed(1)}, kernel ${r.perfUs.kernel.toFixed(1)}, libc ${r.perfUs.libc.toFixed(1)}, other ${r.perfUs.other.toFixed(1)}`
          : ""),
    );
  }
}

const summary = {};
for (const [name, rs] of results) {
  summary[name] = {
    rps: median(rs.map((r) => r.rps)),
    p50: median(rs.map((r) => r.p50)),
    p99: median(rs.map((r) => r.p99)),
    cpuUs: median(rs.map((r) => r.cpuUs)),
    ...(PERF ? { perfUs: Object.fromEntries(Object.keys(rs[0].perfUs).map((k) => [k, median(rs.map((r) => r.perfUs[k]))])) } : {}),
  };
}
if (only) {
  console.log(JSON.stringify(summary, null, 1));
  process.exit(0);
}
const ag = summary["agentguard"];
const jwt = summary["jwt_authn+rbac"];
const none = summary["none"];
// CPU time is the steadier measure; req/s would include waiting on a shared machine.
const freshUs = (cached, fresh) => fresh.cpuUs - cached.cpuUs;
const wasmBytes = statSync(WASM).size;

const lines = [];
lines.push("");
lines.push(`| variant | req/s | p50 ms | p99 ms | Envoy CPU µs/req |`);
lines.push(`|---|---:|---:|---:|---:|`);
for (const [name, s] of Object.entries(summary)) {
  lines.push(`| ${name} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(3)} | ${s.cpuUs.toFixed(1)} |`);
}
if (PERF) {
  lines.push("");
  lines.push("Envoy CPU per request by where it ran (perf record, medians), µs:");
  lines.push("");
  lines.push("| variant | V8 JIT (Wasm) | envoy | kernel | libc | other |");
  lines.push("|---|---:|---:|---:|---:|---:|");
  for (const [name, { perfUs: p }] of Object.entries(summary)) {
    lines.push(`| ${name} | ${[p.jit, p.envoy, p.kernel, p.libc, p.other].map((x) => x.toFixed(1)).join(" | ")} |`);
  }
}
lines.push("");
lines.push(`agentguard / jwt_authn+rbac: throughput ${(ag.rps / jwt.rps).toFixed(3)}x (target >= 0.9), p99 ${(ag.p99 / jwt.p99).toFixed(3)}x (target <= 1.2)`);
const ag3 = summary["agentguard, 3 headers"];
const floorEmpty = summary["wasm floor, empty"];
const floorIdentity = summary["wasm floor, identity"];
lines.push(`agentguard, 3 headers (as jwt_authn) / jwt_authn+rbac: throughput ${(ag3.rps / jwt.rps).toFixed(3)}x, p99 ${(ag3.p99 / jwt.p99).toFixed(3)}x`);
lines.push(`agentguard / no filter:      throughput ${(ag.rps / none.rps).toFixed(3)}x, p99 ${(ag.p99 / none.p99).toFixed(3)}x`);
lines.push(
  `Envoy CPU per request: none ${none.cpuUs.toFixed(1)} us, jwt_authn+rbac ${jwt.cpuUs.toFixed(1)} us (+${(jwt.cpuUs - none.cpuUs).toFixed(1)}), ` +
    `agentguard ${ag.cpuUs.toFixed(1)} us (+${(ag.cpuUs - none.cpuUs).toFixed(1)})`,
);
lines.push(
  `the floor under a Wasm filter, CPU per request: empty ${floorEmpty.cpuUs.toFixed(1)} us (+${(floorEmpty.cpuUs - none.cpuUs).toFixed(1)}), ` +
    `identity ${floorIdentity.cpuUs.toFixed(1)} us (+${(floorIdentity.cpuUs - none.cpuUs).toFixed(1)}); ` +
    `throughput vs jwt_authn+rbac: empty ${(floorEmpty.rps / jwt.rps).toFixed(3)}x, identity ${(floorIdentity.rps / jwt.rps).toFixed(3)}x; ` +
    `agentguard, 3 headers adds ${(ag3.cpuUs - floorIdentity.cpuUs).toFixed(1)} us over the identity floor`,
);
lines.push(
  `fresh ES256 (cache off), extra time per request on the worker: agentguard ${freshUs(ag, summary["agentguard, no cache"]).toFixed(0)} us (Wasm p256), ` +
    `jwt_authn ${freshUs(jwt, summary["jwt_authn+rbac, no cache"]).toFixed(0)} us (BoringSSL); ` +
    `agentguard with EdDSA tokens ${freshUs(ag, summary["agentguard, no cache, EdDSA"]).toFixed(0)} us`,
);
if (COMPARE) {
  const other = summary["agentguard [COMPARE_WASM]"];
  const other3 = summary["agentguard, 3 headers [COMPARE_WASM]"];
  lines.push(
    `COMPARE_WASM ${COMPARE} (${statSync(COMPARE).size} bytes) / this build: CPU ${other.cpuUs.toFixed(1)} / ${ag.cpuUs.toFixed(1)} us/req, ` +
      `3 headers ${other3.cpuUs.toFixed(1)} / ${ag3.cpuUs.toFixed(1)}; throughput vs jwt_authn+rbac ${(other.rps / jwt.rps).toFixed(3)}x, 3 headers ${(other3.rps / jwt.rps).toFixed(3)}x`,
  );
  for (const alg of ["", ", EdDSA"]) {
    const other = summary[`agentguard, no cache${alg} [COMPARE_WASM]`];
    const mine = summary[`agentguard, no cache${alg}`];
    lines.push(
      `COMPARE_WASM / this build, ${alg ? "EdDSA" : "ES256"} without the cache: CPU ${other.cpuUs.toFixed(1)} / ${mine.cpuUs.toFixed(1)} us/req, ` +
        `throughput ${other.rps.toFixed(0)} / ${mine.rps.toFixed(0)} req/s, p50 ${other.p50.toFixed(3)} / ${mine.p50.toFixed(3)} ms`,
    );
  }
}
lines.push(`filter: ${path.relative(ROOT, WASM)} ${wasmBytes} bytes (${(wasmBytes / 1024).toFixed(0)} KiB)`);
console.log(lines.join("\n"));

mkdirSync(path.join(ROOT, "target"), { recursive: true });
const out = path.join(ROOT, "target/bench-envoy.json");
writeFileSync(out, JSON.stringify({ rounds: Object.fromEntries(results), summary, wasmBytes }, null, 1));
console.log(`raw numbers: ${path.relative(ROOT, out)}`);
