#!/usr/bin/env bash
# Builds the js/ package's Wasm core: one idempotent command.
#
#   bash scripts/build-js.sh            # release build → js/dist/
#   bash scripts/build-js.sh --quiet    # no size report
#   bash scripts/build-js.sh --speed    # opt-level 3 everywhere: ~2x faster
#                                       # decisions, ~30% larger .wasm
#
# cargo build (wasm32-unknown-unknown, feature js, release profile: opt-level z,
# LTO, panic=abort) → wasm-bindgen --target web (the same glue serves Workers,
# Node and browsers: each entry point in js/src/ instantiates the module its
# own way) → wasm-opt -Oz -ocimfs=0 (npm binaryen, pinned in js/package.json) → js/dist/.
# Prints raw / gzip / brotli sizes of the shipped .wasm.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
quiet=0
cargo_opts=()
for arg in "$@"; do
  case "$arg" in
    --quiet) quiet=1 ;;
    # Own target dir: the size-optimised release artefacts stay cached.
    --speed) cargo_opts=(--config 'profile.release.opt-level=3' --target-dir "$root/target/js-speed") ;;
    *) echo "build-js.sh: unknown option $arg (--quiet, --speed)" >&2; exit 2 ;;
  esac
done

bash scripts/install-tools.sh rust wasm node >/dev/null
. .tools/env.sh

want="wasm-bindgen $WASM_BINDGEN_VERSION"
have="$("$WASM_BINDGEN_BIN" --version)"
[ "$have" = "$want" ] || { echo "build-js: $have found, $want needed" >&2; exit 1; }

cargo build --quiet --release --lib --target wasm32-unknown-unknown --features js ${cargo_opts[@]+"${cargo_opts[@]}"}
target_dir="${CARGO_TARGET_DIR:-$root/target}"
[ ${#cargo_opts[@]} -gt 0 ] && target_dir="$root/target/js-speed"
raw="$target_dir/wasm32-unknown-unknown/release/agentguard.wasm"

out="js/dist"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$WASM_BINDGEN_BIN" "$raw" --out-dir "$tmp" --out-name agentguard --target web --typescript
# The generated declarations name `Symbol.dispose` (the `using` protocol),
# which TypeScript only knows with its `esnext.disposable` lib: without this
# reference a strict project on `lib: ["es2022"]` fails to compile them
# (js/test/types/wasm.ts). TypeScript >= 5.2.
sed -i '1i /// <reference lib="esnext.disposable" />' "$tmp/agentguard.d.ts"
# -Oz for size; the features are read from the module's target_features
# section (kept by the release profile's strip = "debuginfo").
# -ocimfs=0: no inlining of a function into its only caller. The module gets
# 1% larger raw but 7% smaller gzip/brotli (what is downloaded and what
# Workers' size limit counts), V8 compiles ~16% fewer bytes for the first
# policy and decision (functions it never calls stay out of the ones it does),
# and decisions measured the same (2026-11-30, bench/js and a cached/fresh
# EdDSA loop in one process).
"$WASM_OPT_BIN" -Oz -ocimfs=0 --strip-debug --strip-producers "$tmp/agentguard_bg.wasm" -o "$tmp/agentguard_bg.opt.wasm"
mv -f "$tmp/agentguard_bg.opt.wasm" "$tmp/agentguard_bg.wasm"

mkdir -p "$out"
for f in agentguard.js agentguard.d.ts agentguard_bg.wasm agentguard_bg.wasm.d.ts; do
  # Replace only what changed, so watchers and workerd see stable files.
  cmp -s "$tmp/$f" "$out/$f" || cp -f "$tmp/$f" "$out/$f"
done
touch "$out/.built" # when the build last ran (scripts/demo-gateway.sh compares it with src/)

if [ $quiet = 0 ]; then
  node --input-type=module -e '
    import { readFileSync } from "node:fs";
    import { gzipSync, brotliCompressSync, constants } from "node:zlib";
    const kib = (n) => (n / 1024).toFixed(1) + " KiB";
    const [pre, post] = process.argv.slice(1).map((p) => readFileSync(p));
    const gz = gzipSync(post, { level: 9 }).length;
    const br = brotliCompressSync(post, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
    console.log(`js/dist/agentguard_bg.wasm: ${kib(post.length)} raw, ${kib(gz)} gzip, ${kib(br)} brotli (before wasm-bindgen + wasm-opt: ${kib(pre.length)})`);
  ' "$raw" "$out/agentguard_bg.wasm"
fi
