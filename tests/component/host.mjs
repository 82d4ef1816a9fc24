// The component host for the tests: jco (npm @bytecodealliance/jco-transpile,
// pinned in js/package.json) transpiles target/component/agentguard.wasm to
// an ES module plus its core Wasm, with the WASI imports the Rust standard
// library links served by @bytecodealliance/preview2-shim, and Node runs it.
//
//   import { loadComponent, tools, WIT } from "./host.mjs";
//   const { guard } = await loadComponent();
//   const engine = new guard.Engine(policyText);
//
// The npm packages live in js/node_modules; these helpers resolve them from
// there so that the tests can sit beside the other suites in tests/.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const COMPONENT = process.env.AGENTGUARD_COMPONENT ?? path.join(ROOT, "target/component/agentguard.wasm");
export const WIT = path.join(ROOT, "wit/agentguard.wit");

const requireFromJs = createRequire(path.join(ROOT, "js/package.json"));
/** Imports an npm package installed in js/node_modules (e.g. `web-bot-auth`). */
export const importFromJs = (specifier) => import(pathToFileURL(requireFromJs.resolve(specifier)).href);

/** wasm-tools (compiled to Wasm, inside jco-transpile): parse, validate, print WIT. */
export const tools = await importFromJs("@bytecodealliance/jco-transpile/wasm-tools");
const jco = await importFromJs("@bytecodealliance/jco-transpile");

/** Transpiles `bytes` (a component) into `outDir`; returns the files and what it imports and exports. */
export async function transpile(bytes, outDir, { typescript = false } = {}) {
  // The generated module imports the WASI shims by package name; point it at
  // js/node_modules by absolute URL, since the output is not under js/.
  const shim = (name) => `${pathToFileURL(requireFromJs.resolve(`@bytecodealliance/preview2-shim/${name}`)).href}#*`;
  const map = Object.fromEntries(
    ["cli", "clocks", "filesystem", "http", "io", "random", "sockets"].map((name) => [`wasi:${name}/*`, shim(name)]),
  );
  const result = await jco.transpileBytes(bytes, {
    name: "agentguard",
    map,
    emitTypescriptDeclarations: typescript,
  });
  if (outDir) {
    rmSync(outDir, { recursive: true, force: true });
    for (const [name, data] of Object.entries(result.files)) {
      const file = path.join(outDir, name);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, data);
    }
  }
  return result;
}

/** Transpiles the built component and imports it: `{ guard, types, transpiled }`. */
export async function loadComponent() {
  const outDir = path.join(path.dirname(COMPONENT), "jco");
  const transpiled = await transpile(readFileSync(COMPONENT), outDir);
  const module = await import(pathToFileURL(path.join(outDir, "agentguard.js")).href);
  return { guard: module.guard, types: module.types, transpiled };
}

/** WIT `result` errors of type `string` reach JS as the thrown string itself. */
export function throwsMessage(fn, pattern) {
  let thrown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  assert.equal(typeof thrown, "string", `expected a thrown error message, got ${thrown}`);
  assert.match(thrown, pattern);
}
