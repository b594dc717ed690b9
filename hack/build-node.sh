#!/usr/bin/env bash
# build-node.sh - build what the local stack's node runs into version-keyed caches outside git
# (a second run builds nothing):
#   kubelet, kube-proxy, kube-scheduler   from k8s.io/kubernetes $K8S_VERSION, the control plane's
#                                         wrapper module (hack/k8s), so the Go build cache is shared
#   kube-router                           the NetworkPolicy agent, github.com/cloudnativelabs/kube-router/v2
#                                         pinned in hack/kube-router/go.mod (firewall only)
#   the pause image                       from build/pause/linux/pause.c of the same module (static,
#                                         FROM scratch), as an OCI archive for `ctr images import`:
#                                         the sandbox image cannot be pulled without a registry
#
# Usage: hack/build-node.sh        prints the node's bin directory on the last line of stdout
set -euo pipefail
LOG_TAG=build-node
. "$(dirname "$0")/lib.sh"

export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local
command -v go >/dev/null || die "go not found: install Go >= 1.26"
mkdir -p "$NODE_BIN" "$KUBE_ROUTER_DIR"

build_k8s_node() {
  local w="$TENANCY_CACHE/work/k8s-$K8S_VERSION"
  mkdir -p "$w"
  cp "$HACK/k8s/go.mod" "$w/go.mod"
  [ -f "$HACK/k8s/go.sum" ] && cp "$HACK/k8s/go.sum" "$w/go.sum"
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ld+=" -X k8s.io/component-base/version.gitMajor=1"
  ld+=" -X k8s.io/component-base/version.gitMinor=$(echo "${K8S_VERSION#v1.}" | cut -d. -f1)"
  log "building kubelet, kube-proxy, kube-scheduler $K8S_VERSION (~2 min with the control plane's build cache, ~12 min cold)"
  local t0=$SECONDS
  (cd "$w" && nice -n 10 go build -trimpath -ldflags "$ld" -o "$NODE_BIN/.tmp/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler)
  mv "$NODE_BIN/.tmp/"* "$NODE_BIN/" && rmdir "$NODE_BIN/.tmp"
  log "node binaries built in $((SECONDS - t0)) s"
}

build_kube_router() {
  local w
  w=$(mktemp -d "${TMPDIR:-/tmp}/kube-router-build.XXXXXX")
  cp "$HACK/kube-router/go.mod" "$HACK/kube-router/go.sum" "$w/"
  log "building kube-router $KUBE_ROUTER_VERSION (~4 min cold)"
  local t0=$SECONDS
  (cd "$w" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w" -o "$w/kube-router" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router) || { rm -rf "$w"; die "kube-router build failed"; }
  mv -f "$w/kube-router" "$KUBE_ROUTER_DIR/kube-router"
  rm -rf "$w"
  log "kube-router built in $((SECONDS - t0)) s"
}

build_pause() {
  local src w c
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
  [ -f "$src" ] || (cd "$TENANCY_CACHE/work/k8s-$K8S_VERSION" && go mod download k8s.io/kubernetes) >/dev/null
  [ -f "$src" ] || die "$src not found"
  w=$(mktemp -d "${TMPDIR:-/tmp}/pause-build.XXXXXX")
  gcc -Os -static -Wall -Werror -DVERSION="$PAUSE_TAG-tenancy" -o "$w/pause" "$src"
  strip "$w/pause"
  buildah_init
  c=$("${BUILDAH[@]}" from --pull=never scratch)
  "${BUILDAH[@]}" copy --quiet "$c" "$w/pause" /pause >/dev/null
  "${BUILDAH[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  "${BUILDAH[@]}" commit --quiet --rm "$c" "$PAUSE_IMAGE" >/dev/null
  rm -f "$PAUSE_ARCHIVE.tmp"
  "${BUILDAH[@]}" push --quiet "$PAUSE_IMAGE" "oci-archive:$PAUSE_ARCHIVE.tmp:$PAUSE_IMAGE" >/dev/null
  mv -f "$PAUSE_ARCHIVE.tmp" "$PAUSE_ARCHIVE"
  rm -rf "$w"
  log "pause image $PAUSE_IMAGE built from $(basename "$src")"
}

for b in kubelet kube-proxy kube-scheduler; do [ -x "$NODE_BIN/$b" ] || { build_k8s_node; break; }; done
[ -x "$KUBE_ROUTER_DIR/kube-router" ] || build_kube_router
[ -f "$PAUSE_ARCHIVE" ] || build_pause
echo "$NODE_BIN"
