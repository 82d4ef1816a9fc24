// Host-verified signatures in Node: node:crypto (OpenSSL) instead of WebCrypto.
//
// WebCrypto in Node runs every `crypto.subtle.verify` on the libuv thread
// pool and answers through a promise; for one P-256 signature that round trip
// costs more than the arithmetic. node:crypto's `verify` is the same OpenSSL
// code, called synchronously on the calling thread: a fresh ES256 token's
// signature costs ~70 µs instead of ~200 µs, and the whole decision needs no
// `await`. Workers and browsers have no node:crypto and keep WebCrypto
// (webcrypto.js); only the Node entry point (node.js) installs this verifier.
//
// The contract is webcrypto.js's: the core names the key, algorithm, signed
// bytes and signature of each check; the verdict goes back tied to the check's
// hash. Anything this code cannot answer with certainty (an algorithm it does
// not know, a key of the wrong type or curve, any exception) returns `null`,
// and the core verifies that signature in Wasm: an error never counts as valid.

import nodeCrypto from "node:crypto";

import { base64url } from "./webcrypto.js";

// JWS algorithm → how node:crypto verifies it, and the only key it may use.
const ALGORITHMS = {
  ES256: { digest: "sha256", options: { dsaEncoding: "ieee-p1363" }, type: "ec", curve: "prime256v1" },
  EdDSA: { digest: null, options: {}, type: "ed25519" },
  RS256: { digest: "sha256", options: { padding: nodeCrypto.constants.RSA_PKCS1_PADDING }, type: "rsa" },
  PS256: {
    digest: "sha256",
    // RFC 7518 §3.5: the salt is as long as the hash.
    options: { padding: nodeCrypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
    type: "rsa",
  },
};

/**
 * Algorithms node:crypto verifies by default: where it beats Wasm. Not EdDSA:
 * OpenSSL's Ed25519 verify measured no faster than ed25519-dalek in Wasm
 * (bench/js), and the host round trip costs more; ask for it with `hostVerify`.
 */
export const NODE_HOST_ALGORITHMS = ["ES256", "RS256", "PS256"];

const MAX_KEYS = 64;
const keys = new Map(); // `${alg} ${jwk json}` -> KeyObject

function publicKey(alg, jwk) {
  const id = `${alg} ${JSON.stringify(jwk)}`;
  let key = keys.get(id);
  if (!key) {
    const want = ALGORITHMS[alg];
    key = nodeCrypto.createPublicKey({ key: jwk, format: "jwk" });
    // The core picked this key for `alg`; check anyway that the key is of the
    // kind the algorithm needs, so no other key type is ever used with it.
    if (key.asymmetricKeyType !== want.type) throw new Error(`${alg}: a ${key.asymmetricKeyType} key`);
    if (want.curve && key.asymmetricKeyDetails?.namedCurve !== want.curve) throw new Error(`${alg}: wrong curve`);
    if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value);
    keys.set(id, key);
  }
  return key;
}

/**
 * Whether `signature` is `alg`'s signature over `data` by the public `jwk`.
 * Throws when it cannot say (unknown algorithm, unusable key).
 */
export function verifyBytes(alg, jwk, data, signature) {
  const params = ALGORITHMS[alg];
  if (!params) throw new Error(`${alg}: not verified by node:crypto`);
  const key = publicKey(alg, jwk);
  if (params.type === "ec" && signature.length !== 64) return false; // r ‖ s, 32 bytes each
  if (params.type === "rsa") {
    // The strict side, as the core: a signature exactly as long as the
    // modulus (OpenSSL would also take a shorter one, left-padded).
    if (signature.length !== key.asymmetricKeyDetails.modulusLength / 8) return false;
  }
  return nodeCrypto.verify(params.digest, data, { key, ...params.options }, signature) === true;
}

const encoder = new TextEncoder();

/**
 * Verifies the core's signature check `{token_hash, alg, jwk, signing_input,
 * signature}` synchronously; returns the verdict JSON for `decideWith`, or
 * `null` when node:crypto could not answer (then the core verifies in Wasm).
 */
export function verifyCheckSync(check) {
  try {
    const valid = verifyBytes(check.alg, check.jwk, encoder.encode(check.signing_input), base64url(check.signature));
    return `{"token_hash":${JSON.stringify(check.token_hash)},"valid":${valid}}`;
  } catch {
    return null;
  }
}

/** The verifier node.js installs: synchronous; it can verify every algorithm the core takes. */
export const nodeVerifier = { name: "node:crypto", sync: true, algorithms: NODE_HOST_ALGORITHMS, verify: verifyCheckSync };
