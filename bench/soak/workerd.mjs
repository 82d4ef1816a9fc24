// Soak: the agentguard gateway in real workerd under `wrk` load on loopback
// for a few minutes, with a mix of valid, invalid and hostile requests
// (bench/soak/soak.mjs has the mix, the checks and the memory report).
//
//   node bench/soak/workerd.mjs [seconds=180] [--round=30] [--connections=32]
//
// (after `bash scripts/build-js.sh`; `. .tools/env.sh` gives WORKERD_BIN).
// The gateway (js/worker/workerd.capnp) runs the soak policy in front of a
// minimal local origin (200 for everything, nothing kept).
// Exit status: non-zero on any unexpected answer or socket error.

import { createServer } from "node:http";

import { startGateway } from "../../js/test/helpers.mjs";
import { runSoak, soakArgs, soakPolicy } from "./soak.mjs";

const { seconds, roundSecs, connections } = soakArgs({ round: 30 });
const origin = createServer((req, res) => {
  req.resume();
  req.on("end", () => res.writeHead(200, { "content-type": "text/plain" }).end("ok"));
});
await new Promise((r) => origin.listen(0, "127.0.0.1", r));
const gateway = await startGateway({ policyText: JSON.stringify(soakPolicy()), originPort: origin.address().port });
let result;
try {
  // workerd serves plain HTTP on loopback: the gateway sees http:// URLs.
  result = await runSoak({ name: "workerd", url: gateway.url, pid: gateway.pid, seconds, roundSecs, connections, scheme: "http" });
} finally {
  const errors = gateway.logs.filter((l) => /uncaught/i.test(l));
  if (errors.length) {
    if (result) result.failed = true;
    console.log("workerd logged errors:\n" + errors.slice(0, 20).join("\n"));
  }
  await gateway.stop();
  await new Promise((r) => origin.close(r));
}
console.log(JSON.stringify(result.report));
process.exit(result.failed ? 1 : 0);
