#!/usr/bin/env bash
# Soak: the agentguard filter in real Envoy under wrk load (valid, invalid and
# hostile requests, every answer checked, Envoy RSS sampled). Not part of the
# tests; see bench/soak/envoy.mjs.
#
#   bash bench/soak/envoy.sh                 # 180 s, 2 workers, 32 connections
#   bash bench/soak/envoy.sh 600 --round=30 --connections=32 --workers=2
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash scripts/install-tools.sh rust node envoy browser >/dev/null   # browser: Debian wrk
. .tools/env.sh
bash scripts/build-envoy.sh
ENVOY_BIN="$ENVOY_BIN" WRK_BIN="$WRK_BIN" node bench/soak/envoy.mjs "$@"
