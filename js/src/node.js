// Node entry point (Node 20+): instantiates the Wasm core synchronously from
// the file next to the glue, then exports the API.
import { readFileSync } from "node:fs";
import { initSync } from "../dist/agentguard.js";

initSync({ module: readFileSync(new URL("../dist/agentguard_bg.wasm", import.meta.url)) });

export * from "./agentguard.js";
