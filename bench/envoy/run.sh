#!/usr/bin/env bash
# One command: agentguard vs Envoy's jwt_authn+RBAC vs no filter, side by side.
#
#   bash bench/envoy/run.sh            # ROUNDS=3 DURATION=8 CONNECTIONS=16 by default
#
# Builds the filter (and bench/envoy/floor), then bench/envoy/bench.mjs starts each Envoy (1 worker,
# 127.0.0.1), loads it with wrk and prints req/s, p50/p99, the ratios, the
# cost of a fresh ES256 check and the filter's size. Not part of the tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash scripts/install-tools.sh rust node envoy browser >/dev/null   # browser: Debian wrk
. .tools/env.sh
bash scripts/build-envoy.sh
bash bench/envoy/floor/build.sh
ENVOY_BIN="$ENVOY_BIN" WRK_BIN="$WRK_BIN" node bench/envoy/bench.mjs
