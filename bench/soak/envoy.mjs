// Soak: the agentguard filter in a real Envoy under `wrk` load on loopback
// for a few minutes, with a mix of valid, invalid and hostile requests
// (bench/soak/soak.mjs has the mix, the checks and the memory report).
//
//   bash bench/soak/envoy.sh [seconds=180] [--round=30] [--connections=32] [--workers=2]
//
// Envoy (2 workers by default, per-agent state shared between them) runs the
// built filter with the soak policy; Envoy answers allowed requests itself
// (direct response), so the load is on the filter. Start-up comes from
// tests/envoy/harness.mjs. Besides the soak's checks, any error or critical
// line in Envoy's log, and shared-state warnings, are reported.
// Exit status: non-zero on any unexpected answer, socket error or Envoy error.

import { startEnvoy, bootstrap, wasmFilter, stats } from "../../tests/envoy/harness.mjs";
import { runSoak, soakArgs, soakPolicy } from "./soak.mjs";

const { seconds, roundSecs, connections, workers } = soakArgs({ round: 30 });
const config = bootstrap({ httpFilters: [wasmFilter(JSON.stringify(soakPolicy()))], directResponse: true });
const envoy = await startEnvoy(config, { logLevel: "wasm:info", concurrency: workers });
let result;
try {
  result = await runSoak({
    name: "Envoy",
    url: `http://127.0.0.1:${envoy.port}`,
    pid: envoy.pid,
    seconds,
    roundSecs,
    connections,
    extra: { workers },
  });
} finally {
  const s = await stats(envoy).catch(() => null);
  if (s) {
    const pick = Object.entries(s.values).filter(([k]) => /decision\.|jwks|cache_/.test(k));
    console.log("Envoy stats:", JSON.stringify(Object.fromEntries(pick)));
  }
  // Shared-state trouble (a CAS that kept failing, unreadable data) is logged as a warning and fails closed.
  const stateWarnings = envoy.output().split("\n").filter((l) => /state unavailable|kept changing|unreadable shared data/.test(l));
  console.log(`shared-state warnings: ${stateWarnings.length}${stateWarnings.length ? `\n${stateWarnings.slice(0, 5).join("\n")}` : ""}`);
  const crit = envoy.output().split("\n").filter((l) => /\[(C|E)\]|critical|bug:/.test(l));
  if (crit.length) {
    if (result) result.failed = true;
    console.log("Envoy logged errors:\n" + crit.slice(0, 20).join("\n"));
  }
  await envoy.stop();
}
console.log(JSON.stringify(result.report));
process.exit(result.failed ? 1 : 0);
