// agentguard in Node: Wasm size, cold start, and decisions per second against
// a baseline of npm `jose` (jwtVerify) plus the same checks written in plain JS.
//
//   bash bench/js/run.sh          (builds js/dist first)
//   node bench/js/bench.mjs       (uses the existing js/dist)
//
// Every number comes from this run; ratios compare numbers of this run only.

import { readFileSync } from "node:fs";
import { gzipSync, brotliCompressSync, constants } from "node:zlib";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";

import * as jose from "../../js/node_modules/jose/dist/webapi/index.js";
import { AgentGuard } from "../../js/src/node.js";
import { verifySignature } from "../../js/dist/agentguard.js";
import { loadVectors, signJwt } from "../../tests/vectors/mint.mjs";
import { claims, input, median, pass } from "./common.mjs";

const root = fileURLToPath(new URL("../../", import.meta.url));
const quick = process.argv.includes("--quick");
const { policy, policyText, keys } = loadVectors();

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const fmt = (n) => Math.round(n).toLocaleString("en-US");

// ---------------------------------------------------------------------------
// 1. Size

const wasm = readFileSync(`${root}js/dist/agentguard_bg.wasm`);
const gz = gzipSync(wasm, { level: 9 }).length;
const br = brotliCompressSync(wasm, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
console.log(`wasm size: ${kib(wasm.length)} raw, ${kib(gz)} gzip, ${kib(br)} brotli   (target: gzip <= 150 KiB)`);

// ---------------------------------------------------------------------------
// 2. Cold start, each in a fresh Node process (median of 7)

function coldStart(script) {
  const runs = [];
  for (let i = 0; i < (quick ? 3 : 7); i++) {
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: root, encoding: "utf8" });
    runs.push(JSON.parse(out));
  }
  const keys = Object.keys(runs[0]);
  return Object.fromEntries(keys.map((k) => [k, median(runs.map((r) => r[k]))]));
}

const now0 = Math.floor(Date.now() / 1000);
const startToken = await signJwt(keys.ed25519, claims(now0, 0));
const agentguardStart = coldStart(`
  import { readFileSync } from "node:fs";
  const bytes = readFileSync("js/dist/agentguard_bg.wasm");
  const policy = readFileSync("tests/vectors/policy.json", "utf8");
  const t0 = performance.now();
  const glue = await import("./js/dist/agentguard.js");
  const ta = performance.now();
  const module = new WebAssembly.Module(bytes);
  const tb = performance.now();
  glue.initSync({ module });
  const t1 = performance.now();
  const guard = new glue.Guard(policy);
  const tc = performance.now();
  const d = JSON.parse(guard.decide(JSON.stringify({ method: "GET", host: "api.test", path: "/v1/contacts/1",
    headers: { authorization: "Bearer ${startToken}" }, now: Date.now() / 1000 })));
  const t2 = performance.now();
  if (d.decision !== "allow") throw new Error(JSON.stringify(d.reasons));
  console.log(JSON.stringify({ glue: ta - t0, compile: tb - ta, instantiate: t1 - t0, policy: tc - t1, first: t2 - tc, total: t2 - t0 }));
`);
const joseStart = coldStart(`
  const t0 = performance.now();
  const jose = await import("./js/node_modules/jose/dist/webapi/index.js");
  const jwks = jose.createLocalJWKSet(JSON.parse(${JSON.stringify(JSON.stringify(policy.issuers[0].jwks))}));
  await jose.jwtVerify("${startToken}", jwks, { issuer: "https://sts.test", audience: "https://api.test", typ: "at+jwt" });
  console.log(JSON.stringify({ total: performance.now() - t0 }));
`);
console.log(
  `cold start (fresh process, median): agentguard compile+instantiate ${agentguardStart.instantiate.toFixed(1)} ms, ` +
    `+ policy + first decision ${agentguardStart.total.toFixed(1)} ms (target <= 15 ms); ` +
    `jose import + first jwtVerify ${joseStart.total.toFixed(1)} ms`,
);
const ms = (k) => `${agentguardStart[k].toFixed(1)} ms`;
console.log(
  `  agentguard split (medians of each): glue import ${ms("glue")}, WebAssembly.Module ${ms("compile")}, ` +
    `new Guard(policy) ${ms("policy")}, first decision ${ms("first")} (V8 compiles Wasm functions lazily, on first call)`,
);

// ---------------------------------------------------------------------------
// 3. Throughput

const N = quick ? 300 : 1500; // distinct fresh tokens per algorithm
const now = Math.floor(Date.now() / 1000);
async function mintMany(jwk) {
  const out = [];
  for (let i = 0; i < N; i++) out.push(await signJwt(jwk, claims(now, i)));
  return out;
}
const tokens = { EdDSA: await mintMany(keys.ed25519), ES256: await mintMany(keys.es256) };
// A fresh guard per batch round would also measure compile; instead the cache
// is defeated by distinct tokens. Each guard sees each token at most once per batch,
// and a token cache of 0 entries keeps every decision fresh.
const freshPolicy = { ...policy, cache: { tokens: 0 } };
const wasmOnly = await AgentGuard.create(freshPolicy, { hostVerify: [] });
const nodeDefault = await AgentGuard.create(freshPolicy); // Node's default: ES256 via node:crypto, EdDSA in Wasm
const nodeAll = await AgentGuard.create(freshPolicy, { hostVerify: ["EdDSA", "ES256"] }); // EdDSA via node:crypto too
// What Workers and browsers do (WebCrypto), measured in Node: ES256 by default, EdDSA on request.
const webEs = await AgentGuard.create(freshPolicy, { hostCrypto: "webcrypto" });
const webAll = await AgentGuard.create(freshPolicy, { hostCrypto: "webcrypto", hostVerify: ["EdDSA", "ES256"] });
const cached = await AgentGuard.create(policy);

const expectAllow = (d) => {
  if (d.decision !== "allow") throw new Error(`bench: expected allow, got ${JSON.stringify(d.reasons)}`);
};
const inputs = { EdDSA: tokens.EdDSA.map(input), ES256: tokens.ES256.map(input) };

// Baseline: jose + the same checks in plain JS (route, delegation, revocation, scope, identity headers).
const jwks = jose.createLocalJWKSet(policy.issuers[0].jwks);
const revokedJti = new Set(policy.revoked.jti);
const revokedAgents = new Set(policy.revoked.agents);
const actorOk = (a) => policy.delegation.actors.some((p) => (p.endsWith("*") ? a.startsWith(p.slice(0, -1)) : a === p));
async function joseDecide(req) {
  const route = policy.routes.find((r) => r.methods.includes(req.method) && req.path.startsWith(r.path.replace("/**", "/")));
  if (!route) return { decision: "deny" };
  const auth = req.headers.authorization;
  if (!auth?.startsWith("Bearer ")) return { decision: "deny" };
  const { payload } = await jose.jwtVerify(auth.slice(7), jwks, {
    issuer: "https://sts.test",
    audience: "https://api.test",
    typ: "at+jwt",
    algorithms: ["EdDSA", "ES256"],
    maxTokenAge: "10m",
    clockTolerance: 30,
    requiredClaims: ["sub", "iat", "jti"],
    currentDate: new Date(req.now * 1000),
  });
  let depth = 0;
  for (let a = payload.act; a; a = a.act) depth++;
  if (depth > policy.delegation.max_depth) return { decision: "deny" };
  const agent = payload.act?.sub ?? payload.client_id ?? payload.sub;
  if (payload.act && !actorOk(agent)) return { decision: "deny" };
  if (revokedJti.has(payload.jti) || revokedAgents.has(agent)) return { decision: "revoked" };
  const scopes = String(payload.scope ?? "").split(" ");
  if (!route.scopes.every((s) => scopes.includes(s))) return { decision: "deny" };
  return {
    decision: "allow",
    forward_headers: {
      "x-agentguard-issuer": payload.iss,
      "x-agentguard-agent": agent,
      "x-agentguard-subject": payload.sub,
      "x-agentguard-scopes": scopes.join(" "),
      "x-agentguard-route": route.id,
    },
  };
}
for (const alg of ["EdDSA", "ES256"]) expectAllow(await joseDecide(inputs[alg][0]));
for (const g of [wasmOnly, nodeDefault, nodeAll, webEs, webAll]) for (const alg of ["EdDSA", "ES256"]) expectAllow(await g.decideRequest(inputs[alg][0]));

// Bare signature verification in Wasm (no token parsing, no checks):
// `verifySignature` parses the JWK on every call (~10 µs of an Ed25519
// check), so its key never verifies enough signatures to build a table of
// multiples (src/ed25519.rs): this is ed25519-dalek's own verify, the
// baseline the issue names, and p256's for ES256.
const bare = (alg, jwk) => {
  const parts = tokens[alg].map((t) => t.split("."));
  const pub = JSON.stringify(jwk);
  return (i) => {
    const [h, p, s] = parts[i];
    if (!verifySignature(alg, pub, `${h}.${p}`, s)) throw new Error("bench: bare verify failed");
  };
};
const { d: _d1, ...edPub } = keys.ed25519;
const { d: _d2, ...esPub } = keys.es256;

// Every measurement runs once per round, rounds interleave them: a machine
// that gets busier or quieter mid-run moves all of them alike. Reported:
// the median rate of each, and the median over rounds of each ratio.
const one = inputs.ES256[0];
expectAllow(await cached.decideRequest(one));
const measures = {
  bareEd: [bare("EdDSA", edPub), N],
  bareEs: [bare("ES256", esPub), Math.ceil(N / 4)],
  joseEd: [(i) => joseDecide(inputs.EdDSA[i]), N],
  joseEs: [(i) => joseDecide(inputs.ES256[i]), N],
  agEdDefault: [(i) => nodeDefault.decideRequest(inputs.EdDSA[i]), N],
  agEdWasm: [(i) => wasmOnly.decideRequest(inputs.EdDSA[i]), N],
  agEdNode: [(i) => nodeAll.decideRequest(inputs.EdDSA[i]), N],
  agEdWeb: [(i) => webAll.decideRequest(inputs.EdDSA[i]), N],
  agEsWasm: [(i) => wasmOnly.decideRequest(inputs.ES256[i]), Math.ceil(N / 4)],
  agEsNode: [(i) => nodeDefault.decideRequest(inputs.ES256[i]), N],
  agEsWeb: [(i) => webEs.decideRequest(inputs.ES256[i]), N],
  agCached: [() => cached.decideRequest(one), N * 10],
  agCachedSync: [() => cached.decideInput(one), N * 10],
};
// Warm-up: one full untimed round of everything. V8 starts Wasm in its
// baseline compiler and tiers hot functions up as they run, so the first
// rounds measure the tier-up, not the steady state a gateway lives in (jose's
// JS gets the same round).
for (const [fn, count] of Object.values(measures)) await pass(fn, count);
const rounds = quick ? 3 : 7;
const samples = Object.fromEntries(Object.keys(measures).map((k) => [k, []]));
for (let round = 0; round < rounds; round++) {
  for (const [key, [fn, count]] of Object.entries(measures)) samples[key].push(await pass(fn, count));
}
const r = Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, median(xs)]));
if (cached.decideInput(one).event.cache_hit !== true) throw new Error("bench: the repeated token was not a cache hit");

const us = (ops) => `${(1e6 / ops).toFixed(1)} µs`;
const row = (name, ops) => console.log(`  ${name.padEnd(52)} ${fmt(ops).padStart(9)} /s  ${us(ops).padStart(10)}`);
console.log(`\ndecisions per second (Node ${process.version}, ${N} distinct tokens, median of ${rounds} interleaved rounds):`);
row("bare Wasm Ed25519 verify (ed25519-dalek, signature only)", r.bareEd);
row("bare Wasm ES256 verify (p256, signature only)", r.bareEs);
row("jose jwtVerify + same checks, EdDSA", r.joseEd);
row("jose jwtVerify + same checks, ES256", r.joseEs);
row("agentguard fresh EdDSA, default (Wasm verify)", r.agEdDefault);
row("agentguard fresh EdDSA, hostVerify: [] (all Wasm)", r.agEdWasm);
row("agentguard fresh EdDSA, node:crypto verify", r.agEdNode);
row("agentguard fresh EdDSA, WebCrypto verify", r.agEdWeb);
row("agentguard fresh ES256, node:crypto verify (Node default)", r.agEsNode);
row("agentguard fresh ES256, WebCrypto verify (Workers default)", r.agEsWeb);
row("agentguard fresh ES256, Wasm verify", r.agEsWasm);
row("agentguard repeated token (cache hit), async decideRequest", r.agCached);
row("agentguard repeated token (cache hit), sync decideInput", r.agCachedSync);

// Median over rounds of samples[a][i] / samples[b][i].
const ratio = (a, b) => median(samples[a].map((x, i) => x / samples[b][i])).toFixed(2);
console.log("\nratios (cost = 1/throughput):");
console.log(
  `  fresh ES256 cost / jose ES256 cost          ${ratio("joseEs", "agEsNode")}x   (target <= 1.3x; ` +
    `WebCrypto: ${ratio("joseEs", "agEsWeb")}x, Wasm-only: ${ratio("joseEs", "agEsWasm")}x)`,
);
console.log(
  `  fresh EdDSA cost / bare Wasm Ed25519 verify ${ratio("bareEd", "agEdDefault")}x   (target <= 1.1x; ` +
    `all Wasm: ${ratio("bareEd", "agEdWasm")}x, node:crypto: ${ratio("bareEd", "agEdNode")}x, WebCrypto: ${ratio("bareEd", "agEdWeb")}x)`,
);
console.log(`  fresh EdDSA cost / jose EdDSA cost          ${ratio("joseEd", "agEdDefault")}x`);
console.log(`  cache-hit throughput / jose ES256           ${ratio("agCached", "joseEs")}x   (target >= 50x; sync: ${ratio("agCachedSync", "joseEs")}x)`);
console.log(`  cache-hit throughput / jose EdDSA           ${ratio("agCached", "joseEd")}x   (sync: ${ratio("agCachedSync", "joseEd")}x)`);
