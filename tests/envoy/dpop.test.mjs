// DPoP through Envoy (RFC 9449) with server nonces: the filter gives the
// engine a nonce secret shared by Envoy's VMs, the first proof without a
// nonce is answered `dpop_nonce_required` with a `DPoP-Nonce`, the retry
// with it goes through, and successful responses carry the next nonce.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { loadVectors, mintCaseToken } from "../vectors/mint.mjs";
import { startEnvoy, startUpstream, bootstrap, wasmFilter, send, nowSecs, dpopKey, dpopProof } from "./harness.mjs";

const { cases, keys, policy } = loadVectors();
const validSpec = cases.find((c) => c.name === "valid EdDSA token reads a contact").token;
/** A proof for `GET /v1/contacts/42` with `token` (and `nonce`). */
const proof = (key, token, { nonce } = {}) =>
  dpopProof(key, { htm: "GET", htu: "https://api.test/v1/contacts/42", token, nonce });

let upstream;
let envoy;

before(async () => {
  upstream = await startUpstream();
  const p = { ...structuredClone(policy), dpop: { nonce: true } };
  envoy = await startEnvoy(bootstrap({ httpFilters: [wasmFilter(JSON.stringify(p))], upstreamPort: upstream.port }));
});

after(async () => {
  await envoy?.stop();
  await upstream?.close();
});

test("DPoP with server nonces: challenge, retry, next nonce on success", async () => {
  const key = await dpopKey();
  const token = await mintCaseToken(
    { ...validSpec, claims: { ...validSpec.claims, cnf: { jkt: key.thumbprint } } },
    keys,
    nowSecs(),
    1,
  );
  const read = async (dpop) =>
    send(envoy.port, { path: "/v1/contacts/42", headers: { authorization: `DPoP ${token}`, dpop } });

  const first = await read(await proof(key, token));
  assert.equal(first.status, 401, first.body);
  assert.equal(first.json.reason, "dpop_nonce_required");
  const nonce = first.headers["dpop-nonce"];
  assert.match(nonce ?? "", /^[A-Za-z0-9_-]{16,}$/, "the refusal hands out a nonce");
  assert.match(first.headers["www-authenticate"], /^DPoP /);

  const second = await read(await proof(key, token, { nonce }));
  assert.equal(second.status, 200, second.body);
  assert.equal(second.headers["x-upstream"], "echo");
  assert.match(second.headers["dpop-nonce"] ?? "", /^[A-Za-z0-9_-]{16,}$/, "success carries the next nonce");

  const wrongNonce = await read(await proof(key, token, { nonce: "not-the-nonce" }));
  assert.equal(wrongNonce.status, 401);
  assert.equal(wrongNonce.json.reason, "dpop_nonce_required");
});
