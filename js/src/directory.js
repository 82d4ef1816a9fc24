// Web Bot Auth key directories (RFC 9421 signature agents), fetched from an
// operator's `/.well-known/http-message-signatures-directory` and cached per
// isolate exactly like JWKS documents: the same `JwksCache` (js/src/jwks.js)
// with the directory media type, no issuer-metadata discovery, and its own
// module-scope instance (`directoryCache`) so directory and issuer URLs never
// share a cooldown.
//
// - module scope, keyed by URL, shared by every guard in the isolate;
// - single-flight: concurrent requests for one directory share one fetch;
// - lifetime from `Cache-Control: max-age`, clamped to [minTtl, maxTtl];
// - a signature whose `keyid` no trusted directory has forces a refresh of
//   the directories, at most once per `cooldown` per URL;
// - stale-if-error: the last good directory stays in use when a refresh fails.
//
// The directory is a JWK set (`{"keys": [...]}`, Ed25519 `OKP` keys); the
// engine parses it strictly, keeps only usable keys, identifies them by their
// RFC 7638 thumbprint and refuses a document with none (the previous keys
// stay). The cache keeps the response's `Signature-Input`, `Signature` and
// `Content-Digest` with the text; the engine checks the directory's response
// signature (`tag="http-message-signatures-directory"`, src/directory.rs)
// unless the policy sets `signature_agents.directory_signatures: "unchecked"`.

import { JwksCache } from "./jwks.js";

/** The directory media type (draft-meunier-http-message-signatures-directory). */
export const DIRECTORY_MEDIA_TYPE = "application/http-message-signatures-directory+json";

/** A `JwksCache` for key directories; takes the same options. */
export class DirectoryCache extends JwksCache {
  constructor(options = {}) {
    super({ accept: `${DIRECTORY_MEDIA_TYPE}, application/json`, discovery: false, label: "key directory", ...options });
  }
}

/** The isolate-wide directory cache every guard uses unless given another. */
export const directoryCache = new DirectoryCache();

/**
 * The directories a policy (object or JSON text) names by URL:
 * `[{operator, directory_uri}]`. Only reads the policy; the engine validates it.
 */
export function directorySources(policy) {
  let doc = policy;
  if (typeof policy === "string") {
    try {
      doc = JSON.parse(policy);
    } catch {
      return [];
    }
  }
  const dirs = doc?.signature_agents?.directories;
  if (!Array.isArray(dirs)) return [];
  return dirs
    .filter((d) => d && typeof d.operator === "string" && typeof d.directory_uri === "string")
    .map((d) => ({ operator: d.operator, directory_uri: d.directory_uri }));
}
