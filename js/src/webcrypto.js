// Host-verified signatures: the core does every check but the signature
// arithmetic, which the platform's WebCrypto (`crypto.subtle`, native code in
// Workers, Node and browsers) does several times faster than Wasm for ECDSA
// and RSA. This covers a token's signature and a DPoP proof's. The core names
// the key, algorithm, signed bytes and signature; the verdict goes back tied
// to the token's (or proof's) hash and the key. Any WebCrypto failure falls
// back to verification in Wasm: an exception never counts as "valid".

const PARAMS = {
  ES256: { key: { name: "ECDSA", namedCurve: "P-256" }, verify: { name: "ECDSA", hash: "SHA-256" } },
  EdDSA: { key: { name: "Ed25519" }, verify: { name: "Ed25519" } },
  RS256: { key: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, verify: { name: "RSASSA-PKCS1-v1_5" } },
  PS256: { key: { name: "RSA-PSS", hash: "SHA-256" }, verify: { name: "RSA-PSS", saltLength: 32 } },
};

/** Algorithms verified with WebCrypto by default: where native code beats Wasm. */
export const DEFAULT_HOST_ALGORITHMS = ["ES256", "RS256", "PS256"];

// Which verifier a guard uses when its options do not say. WebCrypto where
// it exists (Workers, browsers); an entry point may install a better one for
// its platform (node.js installs node:crypto's synchronous verify).
let platformVerifier = null;

/** Installs the platform's verifier (`{name, sync, algorithms, verify(check)}`); for entry points. */
export function setPlatformVerifier(verifier) {
  platformVerifier = verifier;
}

/**
 * The verifier for `hostCrypto` (`"platform"`, the default, or `"webcrypto"`),
 * or `null` when there is none (everything is verified in Wasm).
 */
export function hostVerifier(hostCrypto = "platform") {
  if (hostCrypto !== "platform" && hostCrypto !== "webcrypto") {
    throw new TypeError(`hostCrypto: expected "platform" or "webcrypto", got ${JSON.stringify(hostCrypto)}`);
  }
  if (hostCrypto === "platform" && platformVerifier) return platformVerifier;
  return webCryptoAvailable() ? webCryptoVerifier : null;
}

const MAX_KEYS = 64;
const keys = new Map(); // `${alg} ${jwk json}` -> Promise<CryptoKey>
const encoder = new TextEncoder();

const B64 = new Uint8Array(128).fill(255);
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".split("").forEach((c, i) => {
  B64[c.charCodeAt(0)] = i;
});

/** Decodes unpadded base64url (the core produced it, so it is canonical). */
export function base64url(text) {
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const v = B64[text.charCodeAt(i)];
    if (v === undefined || v === 255) throw new Error("invalid base64url");
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return out.subarray(0, o);
}

export function webCryptoAvailable() {
  return typeof globalThis.crypto?.subtle?.verify === "function";
}

function importKey(alg, jwk) {
  const id = `${alg} ${JSON.stringify(jwk)}`;
  let key = keys.get(id);
  if (!key) {
    if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value);
    key = crypto.subtle.importKey("jwk", jwk, PARAMS[alg].key, false, ["verify"]);
    keys.set(id, key);
    key.catch(() => keys.delete(id));
  }
  return key;
}

/**
 * Verifies the core's signature check `{token_hash, alg, jwk, signing_input,
 * signature}`; resolves to the verdict JSON for `decideWith`, or `null` when
 * WebCrypto could not answer (then the core verifies in Wasm).
 */
export async function verifyCheck(check) {
  const params = PARAMS[check.alg];
  if (!params) return null;
  try {
    const key = await importKey(check.alg, check.jwk);
    const valid = await crypto.subtle.verify(
      params.verify,
      key,
      base64url(check.signature),
      encoder.encode(check.signing_input),
    );
    return `{"token_hash":${JSON.stringify(check.token_hash)},"valid":${valid === true}}`;
  } catch {
    return null;
  }
}

/** The WebCrypto verifier: asynchronous, `DEFAULT_HOST_ALGORITHMS` by default. */
export const webCryptoVerifier = { name: "webcrypto", sync: false, algorithms: DEFAULT_HOST_ALGORITHMS, verify: verifyCheck };
