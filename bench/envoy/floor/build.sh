#!/usr/bin/env bash
# Builds the floor filter (see src/lib.rs) as scripts/build-envoy.sh builds
# agentguard's: opt-level 3, wasm-opt -O3, and the callbacks that build leaves
# unexported (read from it, so the two cannot drift).  → target/envoy/floor.wasm
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
. .tools/env.sh
cargo build --quiet --release --target wasm32-wasip1 --manifest-path bench/envoy/floor/Cargo.toml \
  --target-dir target/envoy-floor-cargo
mkdir -p target/envoy
# The same callbacks left unexported as agentguard's filter: its build script's list.
unexported="$(sed -n 's/^unexported="\(.*\)"$/\1/p' scripts/build-envoy.sh)"
[ -n "$unexported" ] || { echo "floor/build.sh: no unexported= list in scripts/build-envoy.sh" >&2; exit 1; }
"$WASM_OPT_BIN" --remove-exports --pass-arg="remove-exports@$unexported" \
  -O3 --strip-debug --strip-producers \
  target/envoy-floor-cargo/wasm32-wasip1/release/agentguard_floor.wasm -o target/envoy/floor.wasm
printf 'floor filter   target/envoy/floor.wasm (%s bytes)\n' "$(stat -c %s target/envoy/floor.wasm)"
