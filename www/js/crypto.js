// Keys, tokens and proofs in the browser.
//
// Signing access, approval and attestation tokens goes through the core's own
// `mint` export (header `{alg, typ, kid}`, random `jti`). What the Wasm
// bindings do not offer is done here with WebCrypto (Ed25519 and ECDSA P-256,
// which Chromium supports on http://127.0.0.1 and https):
// - generating key pairs (exported as JWKs, so `mint` can use them);
// - DPoP proofs (RFC 9449): their header carries the public `jwk`;
// - RFC 7638 thumbprints (`cnf.jkt`) and SHA-256 digests (`ath`, bodies);
// - hostile tokens for the attack library (`alg: none`, a tampered payload).
// Nothing here decides anything: every verdict comes from the core.

import { mintToken } from "./engine.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

export function b64url(bytes) {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function b64urlDecode(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  const bin = atob(padded);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export const b64json = (value) => b64url(enc.encode(JSON.stringify(value)));

export async function sha256(data) {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

export function randomId(bytes = 12) {
  return b64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** The public members of a JWK (what goes into a JWKS or a DPoP header). */
export function publicJwk(jwk) {
  const { kty, crv, x, y, kid, alg } = jwk;
  const out = kty === "EC" ? { kty, crv, x, y } : { kty, crv, x };
  if (kid) out.kid = kid;
  if (alg) out.alg = alg;
  if (kid) out.use = "sig";
  return out;
}

/** RFC 7638 JWK thumbprint (base64url SHA-256 of the required members, sorted). */
export async function thumbprint(jwk) {
  const canonical =
    jwk.kty === "EC"
      ? `{"crv":"${jwk.crv}","kty":"EC","x":"${jwk.x}","y":"${jwk.y}"}`
      : `{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}"}`;
  return b64url(await sha256(canonical));
}

const PARAMS = {
  EdDSA: { gen: { name: "Ed25519" }, sign: { name: "Ed25519" } },
  ES256: { gen: { name: "ECDSA", namedCurve: "P-256" }, sign: { name: "ECDSA", hash: "SHA-256" } },
};

export const algOf = (jwk) => (jwk.kty === "OKP" ? "EdDSA" : "ES256");

/** A new private JWK (with `d`) for `alg` (`EdDSA` or `ES256`). */
export async function generateKey(alg, kid) {
  const pair = await crypto.subtle.generateKey(PARAMS[alg].gen, true, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const out = { alg, kty: jwk.kty, crv: jwk.crv, kid, use: "sig", x: jwk.x, d: jwk.d };
  if (jwk.kty === "EC") out.y = jwk.y;
  return out;
}

async function webCryptoSign(jwk, input) {
  const alg = algOf(jwk);
  const { kty, crv, x, y, d } = jwk;
  const importable = kty === "EC" ? { kty, crv, x, y, d } : { kty, crv, x, d };
  const key = await crypto.subtle.importKey("jwk", importable, PARAMS[alg].gen, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign(PARAMS[alg].sign, key, enc.encode(input)));
}

/** Signs a JWS with an arbitrary header (WebCrypto; for DPoP proofs). */
export async function signJws(jwk, header, claims) {
  const input = `${b64json(header)}.${b64json(claims)}`;
  return `${input}.${b64url(await webCryptoSign(jwk, input))}`;
}

/** Mints a token with the core (`mint`): header `{alg, typ, kid}`. */
export function mint(jwk, claims, typ = "at+jwt") {
  return mintToken(jwk, claims, typ);
}

/**
 * A DPoP proof for one request (RFC 9449 §4.2): `htm`, `htu` (the URL
 * without query and fragment), `iat`, a fresh `jti`, and `ath` when a token
 * goes with it. `overrides` replaces any claim (the attack library uses it).
 */
export async function dpopProof(clientJwk, { method, url, token, now, nonce, overrides = {} }) {
  const u = new URL(url);
  const claims = {
    htm: method,
    htu: `${u.protocol}//${u.host}${u.pathname}`,
    iat: Math.floor(now),
    jti: randomId(),
  };
  if (token) claims.ath = b64url(await sha256(token));
  if (nonce) claims.nonce = nonce;
  Object.assign(claims, overrides);
  const header = { typ: "dpop+jwt", alg: algOf(clientJwk), jwk: publicJwk({ ...clientJwk, kid: undefined, alg: undefined }) };
  return signJws(clientJwk, header, claims);
}

/** An unsigned token (`alg: none`): what a naive verifier would accept. */
export function unsignedToken(claims, typ = "at+jwt") {
  return `${b64json({ alg: "none", typ })}.${b64json(claims)}.`;
}

/** Keeps header and signature, swaps in other claims (a forged payload). */
export function tamperPayload(token, change) {
  const [h, p, s] = token.split(".");
  const claims = JSON.parse(dec.decode(b64urlDecode(p)));
  return `${h}.${b64json(change(claims))}.${s}`;
}

/** Splits a compact JWS into its decoded header and claims (no verification). */
export function decodeJwt(token) {
  const parts = token.trim().split(".");
  if (parts.length !== 3) throw new Error(`expected 3 dot-separated parts, found ${parts.length}`);
  const part = (i, what) => {
    try {
      return JSON.parse(dec.decode(b64urlDecode(parts[i])));
    } catch (e) {
      throw new Error(`${what}: ${e.message}`);
    }
  };
  return { header: part(0, "header"), claims: part(1, "claims"), signature: parts[2] };
}
