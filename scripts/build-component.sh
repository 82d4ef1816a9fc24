#!/usr/bin/env bash
# Builds the WebAssembly component (WIT world `agentguard` in
# wit/agentguard.wit): one idempotent command.
#
#   bash scripts/build-component.sh            # → target/component/agentguard.wasm
#   bash scripts/build-component.sh --quiet    # no size report
#
# 1. cargo rustc (wasm32-wasip2, feature component, release profile: opt-level
#    z, LTO, panic=abort), as a cdylib only: built beside the rlib crate type,
#    the same code links about 30% larger. (A plain `cargo build --release
#    --target wasm32-wasip2 --features component --lib` also gives a working
#    component, 1.4 MiB instead of 0.7.) The linker, wasm-component-ld, is told
#    to stop at the core module (--skip-wit-component) so that
# 2. wasm-opt -Oz (npm binaryen, pinned in js/package.json) can shrink it —
#    binaryen reads core modules, not components — and then
# 3. wit-component (`componentNew` of npm @bytecodealliance/jco-transpile,
#    pinned in js/package.json) turns it into a component from the WIT that
#    wit-bindgen embedded in it, as wasm-component-ld would have.
# Steps 2-3 are skipped when the core module and the tools are unchanged.
# Prints the raw / gzip size.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1

bash scripts/install-tools.sh rust node >/dev/null
. .tools/env.sh

cargo rustc --quiet --release --lib --crate-type cdylib --target wasm32-wasip2 --features component \
  -- -C link-arg=--skip-wit-component
core="target/wasm32-wasip2/release/agentguard.wasm"

out="target/component"
mkdir -p "$out"
# wasm-opt (binaryen compiled to Wasm) takes ~30 s: skip steps 2-3 when the
# core module (and the tools) are those the current component was made from.
stamp="$out/.core.sha256"
sum="$(sha256sum "$core" scripts/build-component.sh js/package-lock.json | sha256sum | cut -d' ' -f1)"
if [ -f "$out/agentguard.wasm" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
  fresh=1
else
  fresh=0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# -Oz for size; the features are read from the module's target_features
# section (kept by the release profile's strip = "debuginfo"); the
# component-type custom sections wit-bindgen wrote pass through untouched.
[ $fresh = 1 ] || "$WASM_OPT_BIN" -Oz --strip-debug --strip-producers "$core" -o "$tmp/core.wasm"

# Componentise, check the result is a component exporting the WIT's
# interfaces, and replace the output only when it changed.
[ $fresh = 1 ] || (cd js && node --input-type=module -e '
  import { readFileSync, writeFileSync } from "node:fs";
  import { componentNew, componentWit } from "@bytecodealliance/jco-transpile/wasm-tools";
  const [core, out] = process.argv.slice(1);
  const component = await componentNew(readFileSync(core));
  const header = Buffer.from(component.subarray(0, 8)).toString("hex");
  if (header !== "0061736d0d000100") throw new Error(`not a component (header ${header})`);
  const wit = await componentWit(component);
  for (const name of ["agentguard:guard/types@", "agentguard:guard/guard@"]) {
    if (!wit.includes(`export ${name}`)) throw new Error(`the component does not export ${name}`);
  }
  writeFileSync(out, component);
' "$tmp/core.wasm" "$tmp/agentguard.wasm")
if [ $fresh = 0 ]; then
  cmp -s "$tmp/agentguard.wasm" "$out/agentguard.wasm" || cp -f "$tmp/agentguard.wasm" "$out/agentguard.wasm"
  echo "$sum" >"$stamp"
fi

if [ $quiet = 0 ]; then
  raw=$(wc -c <"$out/agentguard.wasm")
  gz=$(gzip -9 -c "$out/agentguard.wasm" | wc -c)
  pre=$(wc -c <"$core")
  awk -v raw="$raw" -v gz="$gz" -v pre="$pre" -v f="$out/agentguard.wasm" \
    'BEGIN { printf "%s: %.1f KiB raw, %.1f KiB gzip (core module before wasm-opt: %.1f KiB)\n", f, raw / 1024, gz / 1024, pre / 1024 }'
fi
