// A/B of the JS package in one Node process: another checkout's package
// (built js/dist) against this one, on the same tokens, in interleaved
// rounds, so the machine's drift cannot blur a change of a few percent.
//
//   node --no-turbo-inline-js-wasm-calls bench/js/ab.mjs <other checkout>
//
// (bench/js/ab.sh <git rev> makes the other checkout and runs this.) Prints
// per case the medians and the median of the per-round ratios this/other.

import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import { loadVectors, signJwt } from "../../tests/vectors/mint.mjs";
import { claims, input, median, pass } from "./common.mjs";

const other = process.argv[2];
if (!other) throw new Error("usage: ab.mjs <other checkout with js/dist built>");
const packages = {
  other: await import(pathToFileURL(resolve(other, "js/src/node.js")).href),
  this: await import("../../js/src/node.js"),
};
const { policy, keys } = loadVectors();
const now = Math.floor(Date.now() / 1000);
const N = 1500; // distinct fresh tokens
const inputs = [];
for (let i = 0; i < N; i++) inputs.push(input(await signJwt(keys.ed25519, claims(now, i))));
const [one] = inputs;
const guards = {};
for (const [name, { AgentGuard }] of Object.entries(packages)) {
  guards[name] = { cached: await AgentGuard.create(policy), fresh: await AgentGuard.create({ ...policy, cache: { tokens: 0 } }) };
  const g = guards[name];
  if (g.cached.decideInput(one).decision !== "allow") throw new Error(`${name}: the cached token is not allowed`);
  if ((await g.fresh.decideRequest(inputs[1])).decision !== "allow") throw new Error(`${name}: a fresh token is not allowed`);
}
const cases = {
  "cached, sync decideInput": [(g) => () => g.cached.decideInput(one), 30000],
  "cached, async decideRequest": [(g) => () => g.cached.decideRequest(one), 30000],
  "fresh EdDSA, decideRequest": [(g) => (i) => g.fresh.decideRequest(inputs[i]), N],
};
const microseconds = async (fn, count) => 1e6 / (await pass(fn, count));
const ROUNDS = 9;
const samples = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, [make, count]] of Object.entries(cases)) {
    for (const which of r % 2 ? ["other", "this"] : ["this", "other"]) {
      ((samples[name] ??= { other: [], this: [] })[which]).push(await microseconds(make(guards[which]), count));
    }
  }
}
console.log(`A/B, Node ${process.version}, ${ROUNDS} interleaved rounds: this checkout against ${other}`);
for (const [name, s] of Object.entries(samples)) {
  const ratio = median(s.this.map((x, i) => x / s.other[i]));
  console.log(
    `  ${name.padEnd(30)} other ${median(s.other).toFixed(1).padStart(7)} µs   this ${median(s.this).toFixed(1).padStart(7)} µs   this/other ${ratio.toFixed(2)}x`,
  );
}
