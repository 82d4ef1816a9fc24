#!/usr/bin/env bash
# Builds the Envoy filter: agentguard as a proxy-wasm HTTP filter.
#
#   bash scripts/build-envoy.sh            # → target/envoy/agentguard.wasm
#
# cargo (wasm32-wasip1, feature `envoy`, the release profile: LTO, one codegen
# unit, panic=abort) then binaryen's wasm-opt from js/node_modules (installed
# by scripts/install-tools.sh node). Prints the size of both.
#
# Built for speed, not size: every request runs the decision in the Wasm VM,
# and opt-level 3 + wasm-opt -O3 decides ~1.5x faster than opt-level z + -Oz
# for ~25% more bytes (bench/envoy). Envoy loads the file once per worker, so
# the bytes cost little. It has its own target directory so the other builds
# keep the crate's size-optimised profile.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ ! -f .tools/env.sh ] || [ ! -x "$root/js/node_modules/.bin/wasm-opt" ]; then
  bash scripts/install-tools.sh rust node >/dev/null
fi
. .tools/env.sh

CARGO_PROFILE_RELEASE_OPT_LEVEL=3 cargo build --quiet --release --target wasm32-wasip1 --features envoy \
  --lib --target-dir target/envoy-cargo
raw="target/envoy-cargo/wasm32-wasip1/release/agentguard.wasm"
out_dir="target/envoy"
mkdir -p "$out_dir"
# Callbacks the filter does not implement are not exported: Envoy skips a
# callback the module does not export, and each one it calls is a crossing
# into the VM on every request (the SDK's defaults do nothing and continue).
# Whoever implements one of them in src/envoy.rs must take it off this list;
# the check below refuses a build that would silently drop it.
unexported="proxy_on_log,proxy_on_done,proxy_on_response_body,proxy_on_response_trailers"
if grep -nE 'fn (on_log|on_done|on_http_response_body|on_http_response_trailers)\b' src/envoy.rs src/envoy/*.rs; then
  echo "build-envoy.sh: src/envoy implements a callback the build does not export ($unexported): update the list" >&2
  exit 1
fi
# The feature set comes from the module's target_features section (what rustc
# enabled); --strip-debug/--strip-producers drop names Envoy never shows.
"$WASM_OPT_BIN" --remove-exports --pass-arg="remove-exports@$unexported" -O3 --strip-debug --strip-producers \
  "$raw" -o "$out_dir/agentguard.wasm"
printf 'envoy filter   %s (%s bytes; %s bytes before wasm-opt)\n' \
  "$out_dir/agentguard.wasm" "$(stat -c %s "$out_dir/agentguard.wasm")" "$(stat -c %s "$raw")"
