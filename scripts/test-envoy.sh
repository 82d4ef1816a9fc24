#!/usr/bin/env bash
# The Envoy suite: the filter's unit tests (native), then the built filter in
# a real Envoy (1.40, V8) on 127.0.0.1 — every shared vector, identity
# headers, refusals, stats, decision events, JWKS by URL with rotation,
# refused configurations, mTLS-bound tokens (openssl-made certificates), the
# approval loop with the body read by the filter, per-agent state shared by
# four workers and the operator endpoints, and the example envoy.yaml.
#
#   bash scripts/test-envoy.sh
#
# Self-contained: installs the tools it needs (idempotent), builds the
# filter, and starts and stops every server itself. Exits non-zero on any
# failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. scripts/step.sh

step "envoy: tools"
bash scripts/install-tools.sh rust node envoy >/dev/null
. .tools/env.sh

step "envoy: filter unit tests (native)"
if [ -n "${AGENTGUARD_NATIVE_FRONTENDS_DONE:-}" ]; then
  echo "already run by scripts/test.sh (cargo test --features cli,envoy,component)"
else
  cargo test --quiet --features envoy --lib envoy::
fi

step "envoy: build the filter"
bash scripts/build-envoy.sh

step "envoy: end to end in Envoy ($("$ENVOY_BIN" --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*/[A-Za-z]*' | head -n1))"
# One test file at a time: each starts its own Envoy (1 worker), and two cores
# are shared with the upstream and JWKS servers.
ENVOY_BIN="$ENVOY_BIN" node --test --test-concurrency=1 --test-reporter=spec tests/envoy/
