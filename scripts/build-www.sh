#!/usr/bin/env bash
# Builds the browser playground into target/www/: one idempotent command.
#
#   bash scripts/build-www.sh                 # build (js/dist too, when missing or older than src/)
#   node scripts/serve-www.mjs                # then serve it on http://127.0.0.1:8080/
#
# target/www/ = www/ (the static playground) + dist/ (the Wasm core and its
# wasm-bindgen `--target web` glue, from js/dist/) + examples/ (the example
# policy, its policy tests and the example signing keys, so the playground's
# starter "payments behind approval" and its tests are exactly the CLI's).
# Static files only; nothing is fetched from the network at run time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The Wasm core: rebuild when missing or older than its sources.
if [ ! -f js/dist/agentguard_bg.wasm ] || [ ! -f js/dist/agentguard.js ] || [ ! -f js/dist/.built ] ||
  [ -n "$(find src Cargo.toml -newer js/dist/.built 2>/dev/null | head -n1)" ]; then
  echo "build-www: building js/dist (scripts/build-js.sh) ..."
  bash scripts/build-js.sh --quiet
fi

out="target/www"
mkdir -p target
tmp="$(mktemp -d target/www.tmp.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

cp -R www/. "$tmp/"
mkdir -p "$tmp/dist" "$tmp/examples/keys"
cp js/dist/agentguard.js js/dist/agentguard_bg.wasm "$tmp/dist/"
cp examples/policy.json examples/policy.tests.json "$tmp/examples/"
cp examples/keys/issuer.private.jwk.json examples/keys/approver.private.jwk.json "$tmp/examples/keys/"

# Replace the output in one step, so a server never sees half a build.
chmod 755 "$tmp"
rm -rf "$out.old"
[ -d "$out" ] && mv "$out" "$out.old"
mv "$tmp" "$out"
trap - EXIT
rm -rf "$out.old"
echo "build-www: $out ($(du -sh "$out" | cut -f1)); serve it with: node scripts/serve-www.mjs"
