#!/usr/bin/env bash
# A/B of the JS package against another commit, in one Node process:
#
#   bash bench/js/ab.sh <git rev>      # e.g. HEAD~1, main, a tag
#
# Checks the rev out into the worktree target/ab (kept, so the next run
# rebuilds it incrementally; `git worktree remove --force target/ab` drops
# it), builds both js/dist (scripts/build-js.sh) and runs bench/js/ab.mjs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
rev="$(git rev-parse --verify "${1:?usage: bench/js/ab.sh <git rev>}^{commit}")"
other="$root/target/ab"
if [ -e "$other/.git" ]; then
  git -C "$other" checkout --quiet --detach "$rev"
else
  git worktree add --detach --quiet "$other" "$rev"
fi
# The other checkout shares this one's tools and npm packages.
[ -e "$other/js/node_modules" ] || ln -s "$root/js/node_modules" "$other/js/node_modules"
[ -e "$other/.tools" ] || ln -s "$root/.tools" "$other/.tools"
(cd "$other" && bash scripts/build-js.sh --quiet)
bash scripts/build-js.sh --quiet
exec node --no-turbo-inline-js-wasm-calls bench/js/ab.mjs "$other"
