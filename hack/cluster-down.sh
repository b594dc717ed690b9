#!/usr/bin/env bash
# cluster-down.sh - stop exactly the processes hack/cluster-up.sh started and remove their state.
# Order matters: kube-apiserver can hang on SIGTERM when etcd goes away under it, and it waits
# (tried: 30 s and more) while the controller-manager still holds its watches open; so the
# controller-manager stops first, then the API server, then etcd, then PostgreSQL. A node
# (make cluster-up NODE=1) stops before all of them: its pods are deleted through the API server
# and the kubelet, then hack/node-down.sh restores the host.
set -euo pipefail
LOG_TAG=cluster-down
. "$(dirname "$0")/lib.sh"

STATE=${TENANCY_STATE_DIR:-$ROOT/.local}
if [ ! -d "$STATE" ]; then
  # A node's host record may outlive its state directory: restore the host all the same.
  if [ "$(cat "$NODE_HOST_DIR/owner" 2>/dev/null)" = "$STATE" ]; then "$HACK/node-down.sh" || exit 1; fi
  log "nothing to stop ($STATE does not exist)"
  exit 0
fi
STATE=$(cd "$STATE" && pwd)
PIDS=$STATE/pids
node_rc=0

# Processes the tests or `make run` started in this state dir (the operator) go first.
for f in "$PIDS"/*.pid; do
  [ -e "$f" ] || continue
  case $(basename "$f" .pid) in
    kube-apiserver | kube-controller-manager | etcd) ;;
    *) stop_pid "$(basename "$f" .pid)" "$f" 10 ;;
  esac
done
TENANCY_STATE_DIR=$STATE "$HACK/node-down.sh" || node_rc=1
stop_pid kube-controller-manager "$PIDS/kube-controller-manager.pid" 15
# With a node, the API server spends its SIGTERM on deleting its endpoint lease and the
# `kubernetes` endpoints through its own listener, which is already closed (10 s + 20 s of
# timeouts in its log); its state is thrown away below, so it gets 5 s.
api_timeout=30
grep -qx "export TENANCY_NODE=1" "$STATE/cluster.env" 2>/dev/null && api_timeout=5
stop_pid kube-apiserver "$PIDS/kube-apiserver.pid" $api_timeout
stop_pid etcd "$PIDS/etcd.pid" 15

for pathfile in "$STATE"/postgres*.path; do
  [ -f "$pathfile" ] || continue
  sfx=$(basename "$pathfile" .path); sfx=${sfx#postgres}
  PGROOT=$(cat "$pathfile")
  if [ -f "$PGROOT/data/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGROOT/data" -m fast -w -t 30 stop >/dev/null 2>&1 || {
      pid=$(head -n 1 "$PGROOT/data/postmaster.pid" 2>/dev/null || true)
      [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    }
  fi
  [ -f "$PGROOT/postgres.log" ] && cp --remove-destination "$PGROOT/postgres.log" "$STATE/logs/postgres$sfx.log" 2>/dev/null || true
  case $PGROOT in
    "$STATE"/* | /tmp/tenancy-postgres.*) rm -rf "$PGROOT" ;;
  esac
  rm -f "$pathfile"
done
rm -rf "$PIDS" "$STATE/etcd" "$STATE/cluster.env" "$STATE/pki" "$STATE"/*.kubeconfig
[ $node_rc = 0 ] || die "stopped, but the host is not as it was before the node started (see above)"
log "stopped"
