// Node entry point (Node 20+): instantiates the Wasm core synchronously from
// the file next to the glue, installs node:crypto as the verifier of
// host-verified signatures (synchronous OpenSSL: no thread-pool round trip per
// signature, unlike WebCrypto in Node), then exports the API.
import { readFileSync } from "node:fs";
import { initSync } from "../dist/agentguard.js";
import { nodeVerifier } from "./nodecrypto.js";
import { setPlatformVerifier } from "./webcrypto.js";

initSync({ module: readFileSync(new URL("../dist/agentguard_bg.wasm", import.meta.url)) });
setPlatformVerifier(nodeVerifier);

export * from "./agentguard.js";
