// Browser (and any ESM host with `fetch` and WebAssembly streaming) entry
// point: fetches the `.wasm` next to the glue and instantiates it before the
// module finishes loading (top-level await).
import init from "../dist/agentguard.js";

await init({ module_or_path: new URL("../dist/agentguard_bg.wasm", import.meta.url) });

export * from "./agentguard.js";
