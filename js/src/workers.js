// Cloudflare Workers / workerd entry point: the runtime compiles the `.wasm`
// module at deploy time (a Wasm module import), so instantiating it here is
// synchronous and cheap.
import wasmModule from "../dist/agentguard_bg.wasm";
import { initSync } from "../dist/agentguard.js";

initSync({ module: wasmModule });

export * from "./agentguard.js";
