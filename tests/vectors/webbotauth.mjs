// Signs Web Bot Auth key directories for every suite that serves or hands
// one over (js, Envoy, component): npm `web-bot-auth`'s
// `directoryResponseHeaders`, loaded from js/node_modules (pinned in
// js/package.json), so the suites outside js/ find it too.
//
//   import { signDirectory } from "../vectors/webbotauth.mjs";

import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const requireFromJs = createRequire(new URL("../../js/package.json", import.meta.url));
const importFromJs = (specifier) => import(pathToFileURL(requireFromJs.resolve(specifier)).href);
const { directoryResponseHeaders } = await importFromJs("web-bot-auth");
const { signerFromJWK } = await importFromJs("web-bot-auth/crypto");

/**
 * The signature of a directory response fetched from `url` (`GET`, `200`),
 * by each private JWK of `privateJwks`, created at `created` and valid for
 * `validForMs`: `{ signatureInput, signature }` (the `Signature-Input` and
 * `Signature` header values).
 */
export async function signDirectory(url, privateJwks, { created = new Date(Date.now() - 1000), validForMs = 3_600_000 } = {}) {
  const signers = await Promise.all(privateJwks.map((jwk) => signerFromJWK(jwk)));
  const headers = await directoryResponseHeaders(
    { request: { method: "GET", url, headers: {} }, response: { status: 200, headers: {} } },
    signers,
    { created, expires: new Date(created.getTime() + validForMs) },
  );
  return { signatureInput: headers["Signature-Input"], signature: headers.Signature };
}
