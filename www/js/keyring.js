// The key ring: the private keys the playground signs with.
//
// - issuer, approver: the example keys (examples/keys/, copied by the build),
//   so examples/policy.json and its tests work as they are;
// - attestor: keys/attestor.private.jwk.json (ES256: JWT-SVIDs need RS/ES/PS);
// - client: the agent's own DPoP key, generated in this browser.
// All are test keys. Keys the user generates replace these and are kept in
// localStorage (never in a shared link).

import { generateKey, thumbprint, publicJwk } from "./crypto.js";

const STORE = "agentguard-playground-keys";
export const ROLES = {
  issuer: "token service (signs agent tokens)",
  approver: "approval service (signs approvals)",
  attestor: "workload attestation (signs JWT-SVIDs)",
  client: "the agent's DPoP key",
};

async function fetchJson(path) {
  const res = await fetch(new URL(`../${path}`, import.meta.url));
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

export async function defaultKeys() {
  const [issuer, approver, attestor] = await Promise.all([
    fetchJson("examples/keys/issuer.private.jwk.json"),
    fetchJson("examples/keys/approver.private.jwk.json"),
    fetchJson("keys/attestor.private.jwk.json"),
  ]);
  return { issuer, approver, attestor };
}

export async function loadKeyRing() {
  const defaults = await defaultKeys();
  let stored = {};
  try {
    stored = JSON.parse(localStorage.getItem(STORE) ?? "{}") ?? {};
  } catch {
    stored = {};
  }
  const ring = { ...defaults, ...stored };
  if (!ring.client) ring.client = await generateKey("EdDSA", "agent-dpop");
  saveKeyRing(ring, defaults);
  return { ring, defaults };
}

export function saveKeyRing(ring, defaults) {
  const keep = {};
  for (const [role, jwk] of Object.entries(ring)) {
    if (JSON.stringify(jwk) !== JSON.stringify(defaults[role])) keep[role] = jwk;
  }
  try {
    localStorage.setItem(STORE, JSON.stringify(keep));
  } catch {
    /* private mode: the ring lives for this page only */
  }
}

/** A new key for `role` (kid: `<role>-<date>-<random>`). */
export async function newKey(role, alg) {
  const kid = `${role}-${new Date().toISOString().slice(0, 10)}-${Math.random().toString(36).slice(2, 6)}`;
  return generateKey(alg, kid);
}

export async function describe(jwk) {
  return { kid: jwk.kid, alg: jwk.kty === "OKP" ? "EdDSA" : "ES256", thumbprint: await thumbprint(jwk), public: publicJwk(jwk) };
}
