#!/usr/bin/env bash
# build-control-plane.sh - build kube-apiserver, kube-controller-manager, kubectl and etcd
# from their Go modules into a version-keyed cache outside git. A second run builds nothing.
#
# Usage: hack/build-control-plane.sh        prints the bin directory on the last line of stdout
# Env:   TENANCY_CACHE (default ~/.cache/tenancy-operator), K8S_VERSION, ETCD_VERSION
set -euo pipefail

HACK=$(cd "$(dirname "$0")" && pwd)
. "$HACK/versions.env"
CACHE=${TENANCY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenancy-operator}
BIN="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"
mkdir -p "$BIN"
log() { printf '[build-control-plane %s] %s\n' "$(date +%T)" "$*" >&2; }

export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local
command -v go >/dev/null || { log "go not found: install Go >= 1.26"; exit 1; }

# Work on a copy of the wrapper modules so the committed go.mod/go.sum stay untouched.
build_k8s() {
  local w="$CACHE/work/k8s-$K8S_VERSION"
  mkdir -p "$w"
  cp "$HACK/k8s/go.mod" "$w/go.mod"
  [ -f "$HACK/k8s/go.sum" ] && cp "$HACK/k8s/go.sum" "$w/go.sum"
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ld+=" -X k8s.io/component-base/version.gitMajor=1"
  ld+=" -X k8s.io/component-base/version.gitMinor=$(echo "${K8S_VERSION#v1.}" | cut -d. -f1)"
  log "building kube-apiserver, kube-controller-manager, kubectl $K8S_VERSION (first time: ~15 min on 2 cores)"
  local t0=$SECONDS
  (cd "$w" && go build -trimpath -ldflags "$ld" -o "$BIN/.tmp-k8s/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubectl)
  mv "$BIN/.tmp-k8s/"* "$BIN/" && rmdir "$BIN/.tmp-k8s"
  log "kubernetes binaries built in $((SECONDS - t0)) s"
}

build_etcd() {
  local w="$CACHE/work/etcd-$ETCD_VERSION"
  mkdir -p "$w"
  cp "$HACK/etcd/go.mod" "$w/go.mod"
  [ -f "$HACK/etcd/go.sum" ] && cp "$HACK/etcd/go.sum" "$w/go.sum"
  log "building etcd $ETCD_VERSION (first time: ~1 min)"
  local t0=$SECONDS
  (cd "$w" && go build -trimpath -ldflags "-s -w" -o "$BIN/.etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/.etcd.tmp" "$BIN/etcd"
  log "etcd built in $((SECONDS - t0)) s"
}

have() { for b in "$@"; do [ -x "$BIN/$b" ] || return 1; done; }

have kube-apiserver kube-controller-manager kubectl || build_k8s
have etcd || build_etcd
echo "$BIN"
