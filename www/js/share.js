// Shareable state: the policy, its tests, the request, the scenario and the
// clock offset, compressed into the URL fragment (`#s=…`, never sent to a
// server), or saved to and loaded from a JSON file.
//
// Private keys are never put in a link. The export file includes the key ring
// only when asked (they are playground test keys, but a file is the user's to
// keep; a URL ends up in histories and chats).

import { b64url, b64urlDecode } from "./crypto.js";

const FORMAT = "agentguard-playground";

async function pipe(bytes, stream) {
  const out = new Response(new Blob([bytes]).stream().pipeThrough(stream));
  return new Uint8Array(await out.arrayBuffer());
}

export async function encodeState(state) {
  const json = new TextEncoder().encode(JSON.stringify({ format: FORMAT, v: 1, ...state }));
  return b64url(await pipe(json, new CompressionStream("deflate-raw")));
}

export async function decodeState(text) {
  const bytes = await pipe(b64urlDecode(text), new DecompressionStream("deflate-raw"));
  const state = JSON.parse(new TextDecoder().decode(bytes));
  if (state.format !== FORMAT) throw new Error("not a playground link");
  return state;
}

/** The state in the current URL, or null. */
export async function stateFromHash(hash = location.hash) {
  const m = /^#s=([A-Za-z0-9_-]+)$/.exec(hash);
  return m ? decodeState(m[1]) : null;
}

/** Reads an imported file: a playground export, a tests file, or a policy. */
export function classifyImport(text) {
  const doc = JSON.parse(text);
  if (doc && doc.format === FORMAT) return { kind: "playground", state: doc };
  if (doc && Array.isArray(doc.cases)) return { kind: "tests", tests: doc };
  if (doc && Array.isArray(doc.issuers)) return { kind: "policy", text };
  throw new Error("expected a playground export, a policy (with `issuers`) or a tests file (with `cases`)");
}

export const exportDocument = (state) => JSON.stringify({ format: FORMAT, v: 1, ...state }, null, 2) + "\n";
