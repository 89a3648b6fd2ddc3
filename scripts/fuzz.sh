#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (built by scripts/sanitize.sh in build-san/).
#
#   scripts/fuzz.sh --ci                 every target, -seed=1 and a fixed -runs per target (CI;
#                                        deterministic, ~60 s each at most), fresh work corpus
#   scripts/fuzz.sh --time 300 [TARGET]  longer runs (default 300 s each); the work corpus in
#                                        build-san/fuzz-work/<target> grows across runs
#   scripts/fuzz.sh --merge TARGET       minimise build-san/fuzz-work/<target> into
#                                        fuzz/corpus/<target> (review before committing)
#   scripts/fuzz.sh --repro FILE TARGET  run one input (a crash reproducer) once
#
# Crashes, leaks, timeouts and OOMs are written to fuzz/crashes/<target>-<kind>-<sha1> (ignored
# by git: keep reproducers small, add them to fuzz/corpus/<target>/ once the bug is fixed).
# Environment: BUILD_DIR (default build-san), JOBS unused (one process per target, in turn).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-san}"
TARGETS_ALL=(fuzz_request_head fuzz_config fuzz_rule_match fuzz_access_log_line)

# CI: number of inputs per target with -seed=1, sized to ~30-45 s each on this 2-core machine
# with other builds running (measured: request_head ~80k exec/s, config 2-5k, rule_match ~30k,
# access_log_line ~7.5k from the seed corpus). -max_total_time=90 is only a safety net against a
# slower CI machine; a run it cuts short still passes if nothing was found.
declare -A CI_RUNS=(
  [fuzz_request_head]=2000000
  [fuzz_config]=200000
  [fuzz_rule_match]=1000000
  [fuzz_access_log_line]=300000
)
# Per-input time limit (s): a Hyperscan compile of a big config is the slowest legitimate case.
declare -A TIMEOUT=([fuzz_request_head]=5 [fuzz_config]=25 [fuzz_rule_match]=10 [fuzz_access_log_line]=5)

mode=time
seconds=300
repro_file=""
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ci) mode=ci; shift ;;
    --time) mode=time; seconds="$2"; shift 2 ;;
    --merge) mode=merge; shift ;;
    --repro) mode=repro; repro_file="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${TARGETS_ALL[@]}")

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$ROOT/fuzz/crashes"

binary() {
  local bin="$BUILD_DIR/fuzz/$1"
  if [[ ! -x "$bin" ]]; then
    echo "fuzz.sh: $bin not built (run scripts/sanitize.sh, or cmake --build $BUILD_DIR --target fuzzers)" >&2
    exit 2
  fi
  echo "$bin"
}

common_flags() {
  local target="$1" flags=(-timeout="${TIMEOUT[$target]}" -rss_limit_mb=2048 -print_final_stats=1
                           -artifact_prefix="$ROOT/fuzz/crashes/$target-")
  [[ -f "$ROOT/fuzz/dict/$target.dict" ]] && flags+=(-dict="$ROOT/fuzz/dict/$target.dict")
  printf '%s\n' "${flags[@]}"
}

failed=()
summary=()
for target in "${targets[@]}"; do
  bin="$(binary "$target")"
  mapfile -t flags < <(common_flags "$target")
  seeds="$ROOT/fuzz/corpus/$target"
  log="$BUILD_DIR/fuzz-logs/$target.log"
  mkdir -p "$(dirname "$log")"
  case "$mode" in
    repro)
      "$bin" "${flags[@]}" -runs=1 "$repro_file"
      exit $?
      ;;
    merge)
      work="$BUILD_DIR/fuzz-work/$target"
      "$bin" "${flags[@]}" -merge=1 "$seeds" "$work"
      continue
      ;;
    ci)
      work="$(mktemp -d)"
      run=("$bin" "${flags[@]}" -seed=1 -runs="${CI_RUNS[$target]}" -max_total_time=90 "$work" "$seeds")
      ;;
    time)
      work="$BUILD_DIR/fuzz-work/$target"
      mkdir -p "$work"
      run=("$bin" "${flags[@]}" -max_total_time="$seconds" "$work" "$seeds")
      ;;
  esac
  echo "== $target: ${run[*]:1}"
  start=$(date +%s)
  rc=0
  "${run[@]}" > "$log" 2>&1 || rc=$?
  took=$(( $(date +%s) - start ))
  [[ "$mode" == ci ]] && rm -rf "$work"
  stats="$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" \
           | sed 's/^stat:://; s/: */=/' | tr '\n' ' ')"
  cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)"
  if [[ $rc -ne 0 ]]; then
    failed+=("$target")
    summary+=("FAIL $target (${took}s, rc=$rc) $cov $stats")
    echo "---- $target failed; the report (full log: $log):"
    grep -n -m1 -E '^==[0-9]+==ERROR|runtime error|invariant broken|threw|deadly signal|Test unit written' "$log" || true
    sed -n '/==[0-9]*==ERROR\|runtime error\|invariant broken/,/^SUMMARY\|Test unit written/p' "$log" | head -60
    grep 'Test unit written' "$log" || true
  else
    summary+=("ok   $target (${took}s) $cov $stats")
  fi
done

echo "== fuzz summary"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (reproducers in fuzz/crashes/; rerun: scripts/fuzz.sh --repro FILE TARGET)"
  exit 1
fi
