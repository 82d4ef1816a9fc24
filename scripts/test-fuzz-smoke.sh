#!/usr/bin/env bash
# The fuzz smoke test for CI: makes sure the nightly toolchain and cargo-fuzz
# are there (installing cargo-fuzz only if it is missing), then runs every
# fuzz target for a few seconds (`bash scripts/fuzz.sh smoke`). Idempotent.
#
#   bash scripts/test-fuzz-smoke.sh
#
# Long campaigns are a separate command: `bash scripts/fuzz.sh 600`.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$PATH"
toolchain="${AGENTGUARD_FUZZ_TOOLCHAIN:-nightly}"

if ! rustup toolchain list | grep -q "^$toolchain"; then
  echo "installing the $toolchain toolchain"
  rustup toolchain install "$toolchain" --profile minimal || {
    echo "error: no $toolchain toolchain and it could not be installed (cargo fuzz needs nightly)" >&2
    exit 1
  }
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "installing python3 (builds the corpora's seeds from the test vectors)"
  apt-get update -qq && apt-get install -y -qq python3 >/dev/null
fi

echo "cargo-fuzz: $(cargo fuzz --version 2>/dev/null); toolchain: $(rustc "+$toolchain" --version)"
bash scripts/fuzz.sh smoke
