#!/usr/bin/env bash
# build-helm.sh - build the helm CLI (helm.sh/helm/v3/cmd/helm, pinned in hack/helm/go.mod) from
# the Go module proxy into a version-keyed cache outside git. A second run builds nothing.
#
# Usage: hack/build-helm.sh        prints the path of the helm binary on the last line of stdout
# Env:   TENANCY_CACHE (default ~/.cache/tenancy-operator)
set -euo pipefail

HACK=$(cd "$(dirname "$0")" && pwd)
CACHE=${TENANCY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenancy-operator}
log() { printf '[build-helm %s] %s\n' "$(date +%T)" "$*" >&2; }

# The one pinned version: the require line of the wrapper module.
HELM_VERSION=$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" { print $3 }' "$HACK/helm/go.mod")
[ -n "$HELM_VERSION" ] || { log "no 'require helm.sh/helm/v3 vX.Y.Z' line in $HACK/helm/go.mod"; exit 1; }
DIR="$CACHE/helm-$HELM_VERSION"
BIN="$DIR/helm"

if [ ! -x "$BIN" ]; then
  command -v go >/dev/null || { log "go not found: install Go >= 1.26"; exit 1; }
  mkdir -p "$DIR"
  # Build from a copy so the committed go.mod/go.sum stay untouched; move the binary into place
  # atomically at the end (concurrent runs may race to build it; the last mv wins, both are equal).
  work=$(mktemp -d "${TMPDIR:-/tmp}/helm-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cp "$HACK/helm/go.mod" "$HACK/helm/go.sum" "$work/"
  # As Helm's own Makefile: a static binary that reports its version, and the Kubernetes version
  # that `helm template`/`helm lint` assume (the client-go minor it was built with, major 0 -> 1).
  kmod=$(cd "$work" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go list -f '{{.Version}}' -m k8s.io/client-go)
  kminor=$(echo "$kmod" | cut -d. -f2)
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ld+=" -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$kminor"
  done
  log "building helm $HELM_VERSION (client-go $kmod) into $DIR (first time: ~3 min on 2 cores)"
  t0=$SECONDS
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    go build -trimpath -ldflags "$ld" -o "$work/helm" helm.sh/helm/v3/cmd/helm) ||
    { log "build failed"; exit 1; }
  mv -f "$work/helm" "$BIN"
  log "helm built in $((SECONDS - t0)) s: $("$BIN" version --short)"
else
  log "helm $HELM_VERSION already built: $BIN"
fi
echo "$BIN"
