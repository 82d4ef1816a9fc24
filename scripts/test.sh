#!/usr/bin/env bash
# Runs every test: the README's test command, and what .ci/run calls.
#
#   bash scripts/test.sh
#
# Installs what it needs first (idempotent, quick when already installed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

. scripts/step.sh

# A one-off build: incremental caches would only take disk (GiBs) and time.
export CARGO_INCREMENTAL=0

step "tools"
bash scripts/install-tools.sh rust wasm node envoy browser
. .tools/env.sh

step "format"
cargo fmt --all -- --check

step "clippy (core, each feature; the core alone for both Wasm targets)"
cargo clippy --all-targets -- -D warnings
# Natively with the CLI and the frontends that build natively (their unit tests too).
cargo clippy --all-targets --features cli,envoy,component -- -D warnings
cargo clippy --lib --target wasm32-unknown-unknown --features js -- -D warnings
cargo clippy --lib --target wasm32-wasip1 --features envoy -- -D warnings
# The core without any frontend compiles for both Wasm targets: a check is
# enough (the frontends' suites build the real artefacts in release).
cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings
cargo clippy --lib --target wasm32-wasip1 -- -D warnings

step "no clock in the core (no SystemTime, Instant or std::time outside the frontends)"
if grep -rnE 'SystemTime|Instant::now|std::time' src --include='*.rs' | grep -vE '^src/(cli|envoy|js|component)\.rs|^src/bin/'; then
  echo "the core must not read a clock" >&2
  exit 1
fi

step "cargo test (unit, integration, doc; with the Envoy and component frontends' native unit tests)"
# One test build for the core, the CLI and the frontends' native unit tests.
# The Envoy and component suites below then skip their own native clippy and
# unit tests (they run them when started alone).
cargo test --features cli,envoy,component
export AGENTGUARD_NATIVE_FRONTENDS_DONE=1
# That build made the CLI too (the integration tests run it): the suites below
# use it instead of building it again with the feature set of a plain build.
export AGENTGUARD_CLI="$root/target/debug/agentguard"

step "browser tests (headless Chromium): the HTML activity report and the playground"
node --test tests/browser/

for suite in js envoy component; do
  if [ -f "scripts/test-$suite.sh" ]; then
    step "$suite suite"
    bash "scripts/test-$suite.sh"
  fi
done

step "fuzz smoke: every cargo-fuzz target for a few seconds (long campaigns: bash scripts/fuzz.sh 600)"
AGENTGUARD_FUZZ_SMOKE_SECS="${AGENTGUARD_FUZZ_SMOKE_SECS:-5}" bash scripts/test-fuzz-smoke.sh

step "all tests passed"
