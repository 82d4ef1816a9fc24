// Certificate-bound tokens (RFC 8705) in a real Envoy terminating TLS: the
// test makes a CA, a server certificate and client certificates A and B with
// openssl, and Envoy reads the client certificate's digest from the
// connection (`connection.sha256_peer_certificate_digest`, hex) for the core.
//
// Two listeners run the same filter: `mtls` requires a client certificate
// from the CA (a handshake without one, or with a stranger's, never gets to
// HTTP); `optional` asks for one but lets a client without one in, so the
// filter itself must refuse a bound token that arrives without a certificate.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { loadVectors } from "../vectors/mint.mjs";
import { startEnvoy, startUpstream, bootstrap, wasmFilter, send, upstreamSaw, makePki, agentToken } from "./harness.mjs";

const { policy } = loadVectors();
let pki;
let upstream;
let envoy;

// The shared policy plus an issuer that demands certificate-bound tokens.
const MTLS_ISS = "https://sts-mtls.test";
const mtlsPolicy = () => {
  const p = structuredClone(policy);
  p.issuers.push({ ...structuredClone(p.issuers[0]), iss: MTLS_ISS, binding: "mtls" });
  return p;
};

before(async () => {
  pki = makePki(["a", "b"]);
  upstream = await startUpstream();
  const tls = { cert: pki.server.cert, key: pki.server.key, ca: pki.ca };
  envoy = await startEnvoy(
    bootstrap({
      httpFilters: [wasmFilter(JSON.stringify(mtlsPolicy()))],
      upstreamPort: upstream.port,
      listeners: [
        { name: "mtls", tls: { ...tls, requireClientCert: true } },
        { name: "optional", tls },
      ],
    }),
  );
});

after(async () => {
  await envoy?.stop();
  await upstream?.close();
});

const token = (extra = {}) => agentToken("crm-bot", extra);
const boundTo = (client, extra = {}) => token({ cnf: { "x5t#S256": client.x5t }, ...extra });

/** GET /v1/contacts/42 over TLS on `listener`, presenting `client`'s certificate (or none). */
const read = (listener, bearer, client) =>
  send(envoy.ports[listener], {
    path: "/v1/contacts/42",
    headers: { authorization: `Bearer ${bearer}` },
    tls: { ca: pki.ca, cert: client?.cert, key: client?.key },
  });

test("the test PKI gives A and B different certificate digests", () => {
  const { a, b } = pki.clients;
  assert.match(a.x5t, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a.x5t, b.x5t);
});

test("a token bound to certificate A is allowed with A", async () => {
  const res = await read("mtls", await boundTo(pki.clients.a), pki.clients.a);
  assert.equal(res.status, 200, res.body);
  assert.equal(res.headers["x-upstream"], "echo");
  assert.deepEqual(upstreamSaw(res).headers.get("x-agentguard-agent"), ["spiffe://test/agents/crm-bot"]);
});

test("the same token is refused with certificate B (same CA)", async () => {
  const bound = await boundTo(pki.clients.a);
  const res = await read("mtls", bound, pki.clients.b);
  assert.equal(res.status, 401, res.body);
  assert.equal(res.json.reason, "binding_certificate_mismatch");
  assert.match(res.headers["www-authenticate"], /error="invalid_token"/);
  assert.equal(res.headers["x-upstream"], undefined, "never reaches the upstream");
  // ...and B's own bound token is fine with B: the digest really is per certificate.
  assert.equal((await read("mtls", await boundTo(pki.clients.b), pki.clients.b)).status, 200);
});

test("a bound token without a client certificate is refused by the filter", async () => {
  const res = await read("optional", await boundTo(pki.clients.a), undefined);
  assert.equal(res.status, 401, res.body);
  assert.equal(res.json.reason, "binding_certificate_missing");
  assert.equal(res.headers["x-upstream"], undefined);
  // With A on the same listener it goes through: the refusal was about the certificate.
  assert.equal((await read("optional", await boundTo(pki.clients.a), pki.clients.a)).status, 200);
});

test("the listener that requires certificates refuses the handshake without one, or with a stranger's", async () => {
  const bound = await boundTo(pki.clients.a);
  await assert.rejects(read("mtls", bound, undefined), /certificate|alert|socket hang up|ECONNRESET/i);
  await assert.rejects(read("mtls", bound, pki.clients.stranger), /certificate|alert|unknown ca|socket hang up|ECONNRESET/i);
});

test("an unbound token passes with any certificate unless the issuer demands binding", async () => {
  assert.equal((await read("mtls", await token(), pki.clients.b)).status, 200);
  const unbound = await read("mtls", await token({ iss: MTLS_ISS }), pki.clients.a);
  assert.equal(unbound.status, 401, unbound.body);
  assert.equal(unbound.json.reason, "binding_missing");
  const bound = await read("mtls", await boundTo(pki.clients.a, { iss: MTLS_ISS }), pki.clients.a);
  assert.equal(bound.status, 200, bound.body);
});
