#!/usr/bin/env bash
# The JS benchmark, one command: builds js/dist, then prints Wasm size,
# cold start and decisions/s against npm jose (see bench.mjs).
#
#   bash bench/js/run.sh            # full run (~1 min)
#   bash bench/js/run.sh --quick    # fewer tokens and runs
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash scripts/build-js.sh --quiet
# --no-turbo-inline-js-wasm-calls: Node 20's V8 has been reported to crash
# intermittently in hot JS<->Wasm call loops with that optimisation; not seen
# here, kept as a guard (it applies to agentguard and the baseline alike).
exec node --no-turbo-inline-js-wasm-calls bench/js/bench.mjs "$@"
