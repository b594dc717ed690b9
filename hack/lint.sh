#!/usr/bin/env bash
# lint.sh - formatting check (clang-format) and a warnings-as-errors build.
set -euo pipefail
LOG_TAG=lint
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$HACK/install-deps.sh"
mapfile -t files < <(find operator tests -name '*.[ch]' | sort)
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "needs formatting: $f (run make fmt)"; bad=1
  fi
done
minlibs=$("$HACK/build-minlibs.sh")
cmake -S . -B build/lint -DTN_WERROR=ON -DTN_BIN_DIR="$ROOT/build/lint/bin" -DTN_MINLIBS_PREFIX="$minlibs" >/dev/null
cmake --build build/lint -j "$(nproc)" >/dev/null || { cmake --build build/lint 2>&1 | grep -E 'error|warning'; bad=1; }
for s in hack/*.sh .ci/run; do bash -n "$s" || bad=1; done
"$HACK/sync-chart-crds.sh" --check || bad=1
[ $bad = 0 ] && log "clean"
exit $bad
