#!/usr/bin/env bash
# promcheck.sh - parse Prometheus text exposition from stdin with Prometheus' own parser
# (github.com/prometheus/common/expfmt, see hack/promcheck/main.go). Prints
# "families=N samples=M" and exits 0, or prints the parse error and exits 1.
# The checker is built once into the cache dir, and rebuilt only when it is missing or older
# than its sources in hack/promcheck/.
#
# Usage: curl -s localhost:8080/metrics | hack/promcheck.sh [-v]   (-v lists families on stderr)
# Env:   TENANCY_CACHE (default ~/.cache/tenancy-operator)
set -euo pipefail

HACK=$(cd "$(dirname "$0")" && pwd)
CACHE=${TENANCY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenancy-operator}
BIN="$CACHE/promcheck"
log() { printf '[promcheck %s] %s\n' "$(date +%T)" "$*" >&2; }

stale=0
for f in main.go go.mod go.sum; do [ "$HACK/promcheck/$f" -nt "$BIN" ] && stale=1; done
if [ ! -x "$BIN" ] || [ $stale = 1 ]; then
  command -v go >/dev/null || { log "go not found: install Go >= 1.25"; exit 2; }
  # Build from a copy so the committed go.mod/go.sum stay untouched, then move the binary
  # into place atomically (concurrent runs may race to build it).
  work=$(mktemp -d "${TMPDIR:-/tmp}/promcheck-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cp "$HACK/promcheck/main.go" "$HACK/promcheck/go.mod" "$HACK/promcheck/go.sum" "$work/"
  mkdir -p "$CACHE"
  log "building $BIN"
  (cd "$work" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" -o "$work/promcheck" .) >&2 ||
    { log "build failed"; exit 2; }
  mv -f "$work/promcheck" "$BIN"
fi
exec "$BIN" "$@"
