// The added cost of a DPoP check per request in Node (the Wasm core through
// the JS package), relative to the same cached-token decision without DPoP,
// in the same run:
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
const guard = AgentGuard.createSync(policy, { hostVerify: [] });
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

// Warm up: every token verified once and cached; each path's code compiled.
for (const [auth, dpop] of [[`Bearer ${plain}`], [`DPoP ${es256.token}`, es256.proofs.pop()], [`DPoP ${eddsa.token}`, eddsa.proofs.pop()]]) {
  const d = guard.decideInput(input(auth, dpop));
  if (d.decision !== "allow") throw new Error(`warm-up refused: ${JSON.stringify(d.reasons)}`);
}
for (let i = 0; i < 2000; i++) guard.decideInput(input(`Bearer ${plain}`));

const times = { bearer: [], es256: [], eddsa: [] };
for (let b = 0; b < BATCHES; b++) {
  for (const path of ["bearer", "es256", "eddsa"]) {
    const t0 = performance.now();
    for (let i = 0; i < BATCH; i++) {
      let d;
      if (path === "bearer") d = guard.decideInput(input(`Bearer ${plain}`));
      else {
        const set = path === "es256" ? es256 : eddsa;
        d = guard.decideInput(input(`DPoP ${set.token}`, set.proofs[b * BATCH + i]));
      }
      if (d.decision !== "allow") throw new Error(`${path}: ${JSON.stringify(d.reasons)}`);
    }
    times[path].push(((performance.now() - t0) * 1000) / BATCH);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const [bearer, p256, ed] = [median(times.bearer), median(times.es256), median(times.eddsa)];
console.log(`cached token, Bearer:                   ${bearer.toFixed(1)} µs per decision`);
console.log(`cached token + fresh ES256 DPoP proof:  ${p256.toFixed(1)} µs  (DPoP adds ${(p256 - bearer).toFixed(1)} µs, ${(p256 / bearer).toFixed(1)}×)`);
console.log(`cached token + fresh EdDSA DPoP proof:  ${ed.toFixed(1)} µs  (DPoP adds ${(ed - bearer).toFixed(1)} µs, ${(ed / bearer).toFixed(1)}×)`);
console.log(JSON.stringify({ bearer_us: bearer, dpop_es256_us: p256, dpop_eddsa_us: ed, added_es256_us: p256 - bearer, added_eddsa_us: ed - bearer }));
guard.free();
