#!/usr/bin/env bash
# bench.sh - run the benchmark programs and print their figures (nothing here is asserted).
#   BENCH=bench_tenants        only the benchmarks whose name contains this
#   BENCH_ARGS="--tenants 200" arguments passed to each benchmark run
set -uo pipefail
LOG_TAG=bench
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
shopt -s nullglob
progs=(build/release/bench/bench_*)
[ ${#progs[@]} -gt 0 ] || { log "no benchmarks built yet"; exit 0; }
failed=()
for p in "${progs[@]}"; do
  name=$(basename "$p")
  [[ -z "${BENCH:-}" || $name == *"$BENCH"* ]] || continue
  log "$name"
  # shellcheck disable=SC2086
  "$p" ${BENCH_ARGS:-} || failed+=("$name")
done
[ ${#failed[@]} -eq 0 ] || die "benchmarks that failed to run: ${failed[*]}"
