#!/usr/bin/env bash
# node-load.sh - load OCI image archives into the node's containerd (no registry involved): what a
# Pod names as `image:` then runs with imagePullPolicy IfNotPresent or Never. The archive carries
# the fully qualified name the kubelet asks for (hack/image.sh archive writes
# docker.io/library/tenancy-operator:<version> for `image: tenancy-operator:<version>`).
#
#   hack/node-load.sh ARCHIVE...      (the node of $TENANCY_STATE_DIR, default <repo>/.local)
set -euo pipefail
LOG_TAG=node-load
. "$(dirname "$0")/lib.sh"
STATE=${TENANCY_STATE_DIR:-$ROOT/.local}
STATE=$(cd "$STATE" && pwd)
sock=$STATE/node/containerd/containerd.sock
[ -S "$sock" ] || die "no node in $STATE: start one with make cluster-up NODE=1"
[ $# -gt 0 ] || die "usage: $0 ARCHIVE.oci.tar..."
for a in "$@"; do
  t0=$SECONDS
  ctr --address "$sock" --namespace k8s.io images import --all-platforms "$a" | sed 's/^/    /' >&2
  log "loaded $(basename "$a") in $((SECONDS - t0)) s"
done
