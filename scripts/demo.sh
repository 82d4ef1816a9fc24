#!/usr/bin/env bash
# Builds everything and starts the local demo: the example policy checked and
# evaluated with the CLI, the playground on http://127.0.0.1:8790/, and the
# edge gateway (workerd, the real Workers runtime) on http://127.0.0.1:8787/
# in front of a demo origin. Ctrl-C stops them.
#
#   bash scripts/demo.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/build.sh
cli=target/release/agentguard

echo
echo "==> the example policy (examples/policy.json)"
"$cli" check examples/policy.json
echo
echo "==> example requests (agentguard eval --short)"
for r in examples/requests/*.json; do
  printf '  %-22s ' "$(basename "$r" .json)"
  "$cli" eval --policy examples/policy.json --request "$r" --short
done
echo
echo "    full decision:  $cli eval --policy examples/policy.json --request examples/requests/read-contact.json"
echo "    policy tests:   $cli test examples/policy.tests.json"

playground_port="${AGENTGUARD_PLAYGROUND_PORT:-8790}"
node scripts/serve-www.mjs --port "$playground_port" &
playground_pid=$!
trap 'kill "$playground_pid" 2>/dev/null || true' EXIT INT TERM
echo
echo "==> playground: http://127.0.0.1:$playground_port/   (policy editor, tokens, scenarios, traffic simulator)"
echo
bash scripts/demo-gateway.sh
