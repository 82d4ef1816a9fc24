#!/usr/bin/env bash
# The JS frontend's tests, self-contained (scripts/test.sh calls it):
#
#   bash scripts/test-js.sh
#
# 1. builds js/dist (scripts/build-js.sh) and the native CLI (for the jose cross-check);
# 2. wasm-bindgen-test of the binding (src/js.rs) inside Wasm under Node;
# 3. the demo gateway (scripts/demo-gateway.sh --check) on free ports;
# 4. node:test: the shim's unit tests (Node 20), the jose cross-check, the
#    browser entry point in headless Chromium, and the gateway end to end in
#    real workerd (the repo's capnp config and the wrangler bundle) — every
#    server (JWKS, origin, workerd, static files) is started on 127.0.0.1 by
#    the tests and stopped by its own handle.
# Exits non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

. scripts/step.sh

step "js: tools"
bash scripts/install-tools.sh rust wasm node browser
. .tools/env.sh
[ -n "$WORKERD_BIN" ] && [ -x "$WORKERD_BIN" ] || { echo "workerd not installed (js/node_modules)" >&2; exit 1; }

step "js: build js/dist (wasm32 + wasm-bindgen + wasm-opt)"
bash scripts/build-js.sh

step "js: native CLI for the jose cross-check"
if [ -z "${AGENTGUARD_CLI:-}" ]; then # scripts/test.sh names the one its cargo test built
  cargo build --quiet --features cli --bin agentguard
  export AGENTGUARD_CLI="$root/target/debug/agentguard"
else
  echo "using $AGENTGUARD_CLI"
fi

step "js: wasm-bindgen-test of the binding, in Node"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$(dirname "$WASM_BINDGEN_BIN")/wasm-bindgen-test-runner" \
  cargo test --manifest-path js/wasm-test/Cargo.toml --target wasm32-unknown-unknown --test binding \
  --target-dir "$root/target/js-wasm-test"

step "js: demo gateway smoke test (scripts/demo-gateway.sh --check)"
cd "$root"
ports="$(node -e '
  const net = require("net");
  const get = () => new Promise((r) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => r(p)); }); });
  Promise.all([get(), get()]).then((p) => console.log(p.join(" ")));
')"
read -r gw_port origin_port <<<"$ports"
AGENTGUARD_GATEWAY_PORT="$gw_port" AGENTGUARD_ORIGIN_PORT="$origin_port" bash scripts/demo-gateway.sh --check

step "js: tsc --noEmit of the public types (js/src/*.d.ts); the types against what the core returns"
cd "$root"
js/node_modules/.bin/tsc -p js/test/types/tsconfig.json
js/node_modules/.bin/tsc -p js/test/types/tsconfig.node.json
node --test js/test/types/*.test.mjs

step "js: node:test — shim unit tests, jose cross-check, Chromium, gateway in workerd"
cd "$root/js"
node --test --test-reporter=spec --test-timeout=120000 test/*.test.mjs

