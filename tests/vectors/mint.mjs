// Mints the tokens of tests/vectors/cases.json, following the rules in its
// `_comment`, with Node's built-in WebCrypto (no dependencies), so every
// JavaScript-driven suite (workerd, Envoy, browser) shares one implementation.
//
//   import { loadVectors, mintCaseToken, caseRequest } from "../vectors/mint.mjs";

import { readFileSync } from "node:fs";
import { webcrypto as crypto } from "node:crypto";

const here = new URL(".", import.meta.url);

export function loadVectors() {
  const read = (name) => JSON.parse(readFileSync(new URL(name, here), "utf8"));
  const doc = read("cases.json");
  return {
    cases: doc.cases,
    keys: read(doc.keys),
    policy: read(doc.policy),
    policyText: readFileSync(new URL(doc.policy, here), "utf8"),
  };
}

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const b64json = (value) => b64url(Buffer.from(JSON.stringify(value)));

async function signingKey(jwk) {
  const { d, x, y, kty, crv } = jwk;
  const params = kty === "OKP" ? { name: "Ed25519" } : { name: "ECDSA", namedCurve: crv };
  const privateJwk = kty === "OKP" ? { kty, crv, x, d } : { kty, crv, x, y, d };
  const key = await crypto.subtle.importKey("jwk", privateJwk, params, false, ["sign"]);
  const sign = kty === "OKP" ? { name: "Ed25519" } : { name: "ECDSA", hash: "SHA-256" };
  return { key, sign, alg: kty === "OKP" ? "EdDSA" : "ES256" };
}

/** Signs `claims` with a private JWK: header {alg, typ, kid}. */
export async function signJwt(jwk, claims, typ = "at+jwt") {
  const { key, sign, alg } = await signingKey(jwk);
  const header = { alg, typ, kid: jwk.kid };
  const input = `${b64json(header)}.${b64json(claims)}`;
  const sig = new Uint8Array(await crypto.subtle.sign(sign, key, Buffer.from(input)));
  return `${input}.${b64url(sig)}`;
}

/** A fresh signing key pair as JWKs (private with `d`, public without), `alg` `EdDSA` or `ES256`. */
export async function generateKey(alg, kid) {
  const params = alg === "EdDSA" ? { name: "Ed25519" } : { name: "ECDSA", namedCurve: "P-256" };
  const pair = await crypto.subtle.generateKey(params, true, ["sign", "verify"]);
  const priv = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const { d, key_ops, ext, ...pub } = priv;
  return {
    privateJwk: { ...pub, d, kid, alg, use: "sig" },
    publicJwk: { ...pub, kid, alg, use: "sig" },
  };
}

const relative = /^[+-]\d+$/;

/** Mints the token a case describes, at `now` (Unix seconds). */
export async function mintCaseToken(spec, keys, now, serial = 0) {
  const jwk = keys[spec.key];
  const claims = {};
  for (const [k, v] of Object.entries(spec.claims)) {
    claims[k] = typeof v === "string" && relative.test(v) ? now + Number(v) : v;
  }
  claims.iat = now + spec.iat;
  claims.exp = now + spec.exp;
  if (!("jti" in claims)) claims.jti = `jti-${serial}-${b64url(crypto.getRandomValues(new Uint8Array(9)))}`;
  const token = await signJwt(jwk, claims, spec.typ ?? "at+jwt");
  const [h, p, s] = token.split(".");
  switch (spec.tamper) {
    case undefined:
    case null:
      return token;
    case "payload":
      return `${h}.${b64json({ ...claims, sub: "user:mallory" })}.${s}`;
    case "signature":
      return `${h}.${p}.${s.startsWith("B") ? "A" : "B"}${s.slice(1)}`;
    default:
      throw new Error(`unknown tamper ${spec.tamper}`);
  }
}

/** The request headers of a case, with its minted token (if any) as a Bearer credential. */
export async function caseHeaders(c, keys, now, serial = 0) {
  const headers = { ...c.request.headers };
  if (c.token) headers.authorization = `Bearer ${await mintCaseToken(c.token, keys, now, serial)}`;
  return headers;
}
