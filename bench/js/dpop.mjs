// The added cost of a DPoP check per request in Node (the Wasm core through
// the JS package), relative to the same cached-token decision without DPoP,
// in the same run — with the proof's signature verified in Wasm, and (the
// package's default for ES256) by WebCrypto:
//
//   node bench/js/dpop.mjs [--quick]     (after bash scripts/build-js.sh)
//
// Both paths decide a core request object with a token already in the
// verified-token cache, so the difference is the proof: parsing it, its
// signature (ES256 and EdDSA proofs: the two keys agents use), the binding
// checks and the replay cache. Every request carries a fresh proof (a proof is
// single-use), made before timing starts. Batches alternate between the paths
// so machine noise hits both alike; the report is the median per batch.

import { performance } from "node:perf_hooks";

import * as jose from "../../js/node_modules/jose/dist/webapi/index.js";
import { AgentGuard } from "../../js/src/node.js";

const quick = process.argv.includes("--quick");
const BATCH = quick ? 50 : 200;
const BATCHES = quick ? 5 : 15;
const HOST = "api.test";
const URL_ = `https://${HOST}/v1/contacts/42`;

const issuerKeys = await jose.generateKeyPair("EdDSA", { extractable: true });
const issuerJwk = { ...(await jose.exportJWK(issuerKeys.publicKey)), kid: "iss-1", alg: "EdDSA" };
const policy = {
  realm: HOST,
  issuers: [{ iss: "https://sts.test", audiences: [`https://${HOST}`], jwks: { keys: [issuerJwk] }, algorithms: ["EdDSA"], max_lifetime: "15m" }],
  routes: [{ id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] }],
  dpop: { replay_cache: 1_000_000 },
};
// Every signature in Wasm, and the default: ES256 (token or proof) by WebCrypto.
const guard = AgentGuard.createSync(policy, { hostVerify: [] });
const hosted = AgentGuard.createSync(policy);
const now = Math.floor(Date.now() / 1000);

async function token(cnf) {
  return new jose.SignJWT({ scope: "crm.read", client_id: "crm-agent", sub: "user:alice", ...(cnf ? { cnf } : {}) })
    .setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid: "iss-1" })
    .setIssuer("https://sts.test").setAudience(`https://${HOST}`)
    .setIssuedAt(now - 5).setExpirationTime(now + 600).setJti(`t-${Math.random()}`)
    .sign(issuerKeys.privateKey);
}

const input = (authorization, dpop) => ({
  method: "GET", scheme: "https", host: HOST, path: "/v1/contacts/42",
  headers: dpop ? { authorization, dpop } : { authorization },
  now: now + 1,
});

async function proofs(alg, n, bound) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(publicKey);
  const jkt = await jose.calculateJwkThumbprint(jwk);
  const tok = await token({ jkt });
  const ath = jose.base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(tok))));
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(await new jose.SignJWT({ htm: "GET", htu: URL_, ath })
      .setProtectedHeader({ alg, typ: "dpop+jwt", jwk }).setIssuedAt(now).setJti(`p-${alg}-${i}-${Math.random()}`)
      .sign(privateKey));
  }
  return { token: tok, proofs: out, bound };
}

const total = BATCH * BATCHES + 1;
const plain = await token(null);
const es256 = await proofs("ES256", total, true);
const eddsa = await proofs("EdDSA", total, true);
const es256Hosted = await proofs("ES256", total, true);

// Warm up: every token verified once and cached; each path's code compiled.
for (const [auth, dpop] of [[`Bearer ${plain}`], [`DPoP ${es256.token}`, es256.proofs.pop()], [`DPoP ${eddsa.token}`, eddsa.proofs.pop()]]) {
  const d = guard.decideInput(input(auth, dpop));
  if (d.decision !== "allow") throw new Error(`warm-up refused: ${JSON.stringify(d.reasons)}`);
}
for (let i = 0; i < 2000; i++) guard.decideInput(input(`Bearer ${plain}`));
for (const [auth, dpop] of [[`Bearer ${plain}`], [`DPoP ${es256Hosted.token}`, es256Hosted.proofs.pop()]]) {
  const d = await hosted.decideRequest(input(auth, dpop));
  if (d.decision !== "allow") throw new Error(`warm-up refused: ${JSON.stringify(d.reasons)}`);
}

const PATHS = ["bearer", "es256", "eddsa", "bearer-hosted", "es256-hosted"];
const times = Object.fromEntries(PATHS.map((p) => [p, []]));
for (let b = 0; b < BATCHES; b++) {
  for (const path of PATHS) {
    const t0 = performance.now();
    for (let i = 0; i < BATCH; i++) {
      const n = b * BATCH + i;
      let d;
      if (path === "bearer") d = guard.decideInput(input(`Bearer ${plain}`));
      else if (path === "es256") d = guard.decideInput(input(`DPoP ${es256.token}`, es256.proofs[n]));
      else if (path === "eddsa") d = guard.decideInput(input(`DPoP ${eddsa.token}`, eddsa.proofs[n]));
      else if (path === "bearer-hosted") d = await hosted.decideRequest(input(`Bearer ${plain}`));
      else d = await hosted.decideRequest(input(`DPoP ${es256Hosted.token}`, es256Hosted.proofs[n]));
      if (d.decision !== "allow") throw new Error(`${path}: ${JSON.stringify(d.reasons)}`);
    }
    times[path].push(((performance.now() - t0) * 1000) / BATCH);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const m = Object.fromEntries(PATHS.map((p) => [p, median(times[p])]));
const line = (label, us, base) =>
  console.log(`${label.padEnd(58)} ${us.toFixed(1).padStart(8)} µs  (DPoP adds ${(us - base).toFixed(1)} µs, ${(us / base).toFixed(1)}×)`);
console.log(`${"cached token, Bearer (sync, every signature in Wasm)".padEnd(58)} ${m.bearer.toFixed(1).padStart(8)} µs per decision`);
line("cached token + fresh ES256 DPoP proof, verified in Wasm", m.es256, m.bearer);
line("cached token + fresh EdDSA DPoP proof, verified in Wasm", m.eddsa, m.bearer);
console.log(`${"cached token, Bearer (async, host verification on)".padEnd(58)} ${m["bearer-hosted"].toFixed(1).padStart(8)} µs per decision`);
line("cached token + fresh ES256 DPoP proof, verified by WebCrypto", m["es256-hosted"], m["bearer-hosted"]);
console.log(JSON.stringify(m));
guard.free();
hosted.free();
