#!/usr/bin/env bash
# bench.sh - run every benchmark program and print its figures (nothing here is asserted).
set -euo pipefail
LOG_TAG=bench
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
shopt -s nullglob
progs=(build/release/bench/bench_*)
[ ${#progs[@]} -gt 0 ] || { log "no benchmarks built yet"; exit 0; }
for p in "${progs[@]}"; do
  log "$(basename "$p")"
  "$p"
done
