#!/usr/bin/env bash
# The component frontend's tests, self-contained:
#
#   bash scripts/test-component.sh
#
# 1. clippy of src/component.rs for wasm32-wasip2 (where the exports expand)
#    and natively; rustfmt of it and of the bindings crate (wit/rust); the
#    conversion's native unit tests;
# 2. builds target/component/agentguard.wasm (scripts/build-component.sh) and
#    the native CLI (the reference the component is compared with);
# 3. node:test in a real component host — jco (npm @bytecodealliance/
#    jco-transpile, pinned in js/package.json) transpiles the component and
#    Node calls it: the WIT and the component are validated with the
#    wasm-tools build inside jco, the shared vectors give the same decisions
#    as the native core field for field, and every other export is exercised.
# Exits non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

. scripts/step.sh

step "component: tools"
bash scripts/install-tools.sh rust node
. .tools/env.sh

step "component: clippy (wasm32-wasip2, where the exports expand, and native), rustfmt"
cargo clippy --quiet --lib --target wasm32-wasip2 --features component -- -D warnings
# Natively: already done by scripts/test.sh (with every native feature) when it started this suite.
[ -n "${AGENTGUARD_NATIVE_FRONTENDS_DONE:-}" ] || cargo clippy --quiet --lib --features component -- -D warnings
rustfmt --check --edition 2021 src/component.rs wit/rust/src/lib.rs

step "component: unit tests of the conversion (native)"
if [ -n "${AGENTGUARD_NATIVE_FRONTENDS_DONE:-}" ]; then
  echo "already run by scripts/test.sh (cargo test --features cli,envoy,component)"
else
  cargo test --quiet --lib --features component component::
fi

step "component: build target/component/agentguard.wasm"
bash scripts/build-component.sh

step "component: native CLI (the reference decisions)"
if [ -z "${AGENTGUARD_CLI:-}" ]; then # scripts/test.sh names the one its cargo test built
  cargo build --quiet --features cli --bin agentguard
  export AGENTGUARD_CLI="$root/target/debug/agentguard"
else
  echo "using $AGENTGUARD_CLI"
fi

step "component: node:test — jco host, WIT and component validation, shared vectors"
node --test --test-reporter=spec --test-timeout=120000 tests/component/
