#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ one after the other (libFuzzer via cargo fuzz,
# nightly toolchain), each under `nice -n 19`.
#
#   bash scripts/fuzz.sh smoke                 # a few seconds per target (CI)
#   bash scripts/fuzz.sh 600                   # 600 seconds per target
#   bash scripts/fuzz.sh runs=10000000         # ten million executions per target
#   bash scripts/fuzz.sh 600 dpop decide       # only these targets
#
# Before fuzzing it rebuilds the corpora's starting points from the test
# vectors (fuzz/gen_corpus.py) and replays every saved crash input in
# fuzz/regressions/<target>/. Logs go to fuzz/logs/<target>.log, crash inputs
# to fuzz/artifacts/<target>/. The closing table has libFuzzer's final
# stats per target. Exit status: non-zero if any target crashed, or any
# regression input still fails.
#
# Needs cargo-fuzz and a nightly toolchain (scripts/test-fuzz-smoke.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

budget="${1:-smoke}"
shift || true
all_targets=(jws jwks policy path dpop decide revocations httpsig directory exchange)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

case "$budget" in
  smoke) limit=(-max_total_time="${AGENTGUARD_FUZZ_SMOKE_SECS:-8}") ;;
  runs=*) limit=(-runs="${budget#runs=}") ;;
  *[!0-9]*|"") echo "usage: $0 smoke|SECONDS|runs=N [target...]" >&2; exit 2 ;;
  *) limit=(-max_total_time="$budget") ;;
esac

toolchain="${AGENTGUARD_FUZZ_TOOLCHAIN:-nightly}"
fuzz=(nice -n 19 cargo "+$toolchain" fuzz)

python3 fuzz/gen_corpus.py fuzz/corpus
mkdir -p fuzz/logs fuzz/artifacts

echo "building the fuzz targets (release, debug assertions, overflow checks, AddressSanitizer)"
if [ ${#targets[@]} -eq ${#all_targets[@]} ]; then
  "${fuzz[@]}" build >/dev/null 2>fuzz/logs/build.log || { tail -30 fuzz/logs/build.log; exit 1; }
else
  for t in "${targets[@]}"; do
    "${fuzz[@]}" build "$t" >/dev/null 2>>fuzz/logs/build.log || { tail -30 fuzz/logs/build.log; exit 1; }
  done
fi

status=0
summary=()
sample_dir="" # a smoke run's sample of a target's seeds, removed however the script ends
trap '[ -z "$sample_dir" ] || rm -rf "$sample_dir"' EXIT
for t in "${targets[@]}"; do
  # Saved crash inputs first: each must now run clean.
  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then
    if "${fuzz[@]}" run "$t" fuzz/regressions/"$t"/* -- -runs=0 >"fuzz/logs/$t.regressions.log" 2>&1; then
      echo "$t: regression inputs pass"
    else
      echo "$t: a regression input still fails (fuzz/logs/$t.regressions.log)"
      status=1
    fi
  fi
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=(-dict="fuzz/dicts/$t.dict")
  mkdir -p "fuzz/artifacts/$t" "fuzz/corpus/$t"
  # A smoke run starts from a sample of the seeds (loading thousands of seeds
  # under AddressSanitizer takes a minute per target); campaigns use them all.
  corpus_dir="fuzz/corpus/$t"
  if [ "$budget" = smoke ]; then
    corpus_dir="$(mktemp -d -t agentguard-fuzz-corpus.XXXXXX)"
    sample_dir="$corpus_dir"
    find "fuzz/corpus/$t" -type f | sort | awk 'NR % 25 == 1 && ++n <= 120' | xargs -r cp -t "$corpus_dir"
  fi
  echo "fuzzing $t (${limit[*]})"
  set +e
  "${fuzz[@]}" run "$t" "$corpus_dir" -- "${limit[@]}" -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" -timeout=10 -rss_limit_mb=2048 "${dict[@]}" \
    >"fuzz/logs/$t.log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/logs/$t.log" | grep -o '[0-9]*$' | tail -1 || true)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "fuzz/logs/$t.log" | grep -o '[0-9]*$' | tail -1 || true)
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "fuzz/logs/$t.log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "fuzz/logs/$t.log" | tail -1 || true)
  corpus=$(find "$corpus_dir" -type f | wc -l)
  [ "$budget" = smoke ] && rm -rf "$corpus_dir"
  if [ $rc -ne 0 ]; then
    status=1
    [ -z "$runs" ] && runs=$(grep -o '^#[0-9]*' "fuzz/logs/$t.log" | tail -1 | tr -d '#' || true)
    crash=$(grep -o 'Test unit written to [^ ]*' "fuzz/logs/$t.log" | tail -1 | sed 's/Test unit written to //' || true)
    summary+=("$(printf '%-7s CRASH (exit %s) after %s runs: %s — see fuzz/logs/%s.log' "$t" "$rc" "${runs:-?}" "${crash:-?}" "$t")")
  else
    summary+=("$(printf '%-7s ok  %12s runs %6ss %8s exec/s  %-22s corpus %s' "$t" "${runs:-?}" "${secs:-?}" "${speed:-?}" "${cov:-cov: ?}" "$corpus")")
  fi
done

echo
echo "fuzz results (${budget}):"
printf '  %s\n' "${summary[@]}"
exit $status
