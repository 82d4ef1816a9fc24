#!/usr/bin/env bash
# Builds everything: the CLI (native, release), the JS package (Wasm for
# Workers, Node and browsers), the Envoy filter (Wasm), the component (WIT)
# and the playground (target/www). Idempotent.
#
#   bash scripts/build.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/install-tools.sh rust wasm node envoy
echo "==> cli"
cargo build --release --features cli --quiet
echo "    target/release/agentguard"
for part in js envoy component www; do
  if [ -f "scripts/build-$part.sh" ]; then
    echo "==> $part"
    bash "scripts/build-$part.sh"
  fi
done
