#!/usr/bin/env bash
# node-down.sh - stop the node of $TENANCY_STATE_DIR (hack/node-up.sh) and put the host back as
# node-up found it: sysctls, iptables chains and rules, ipsets, nftables tables, the node IP on lo,
# the CNI bridge, netns mounts, the kubelet's cgroups, directories the node's programs created.
# Idempotent; works after a crash, a failed start, or with the state directory already gone (the
# record lives in $NODE_HOST_DIR). hack/cluster-down.sh runs it first.
#
#   hack/node-down.sh           stop and restore; exit 1 when something could not be restored
#   hack/node-down.sh --check   only compare the host with the record (exit 1 when it differs)
set -euo pipefail
LOG_TAG=node-down
. "$(dirname "$0")/lib.sh"

STATE=${TENANCY_STATE_DIR:-$ROOT/.local}
[ -d "$STATE" ] && STATE=$(cd "$STATE" && pwd)
N=$STATE/node
BEFORE=$NODE_HOST_DIR/before
CTR=(ctr --address "$N/containerd/containerd.sock" --namespace k8s.io)

owner=$(cat "$NODE_HOST_DIR/owner" 2>/dev/null || true)

# host_diff: what differs from the record ("-" before only, "+" now only), nothing when restored.
host_diff() {
  diff <(sort "$BEFORE") <(host_snapshot | sort) | grep -E '^[<>]' | sed 's/^</-/; s/^>/+/' || true
}

if [ "${1:-}" = --check ]; then
  [ -f "$BEFORE" ] || { log "no node record in $NODE_HOST_DIR"; exit 0; }
  d=$(host_diff)
  [ -z "$d" ] && { log "host matches the record"; exit 0; }
  printf '%s\n' "$d"
  exit 1
fi

if [ ! -d "$N" ] && [ "$owner" != "$STATE" ]; then
  exit 0 # no node here
fi

# --- 1. the pods, through the kubelet while it and the API server still run -----------------
if pid_alive "$N/pids/kubelet.pid" && pid_alive "$STATE/pids/kube-apiserver.pid" && [ -f "$STATE/admin.kubeconfig" ]; then
  K=("$CP_BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" --request-timeout=10s)
  # Cordoned, so that what controllers recreate stays Pending.
  "${K[@]}" cordon "$NODE_NAME" >/dev/null 2>&1 || true
  "${K[@]}" delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1 || true
  for _ in $(seq 60); do
    [ -z "$("${CTR[@]}" tasks ls -q 2>/dev/null)" ] && break
    sleep 0.5
  done
fi

# --- 2. the node's programs -------------------------------------------------------------------
stop_pid kube-router "$N/pids/kube-router.pid" 10
stop_pid kube-proxy "$N/pids/kube-proxy.pid" 10
stop_pid kube-scheduler "$N/pids/kube-scheduler.pid" 10
stop_pid kubelet "$N/pids/kubelet.pid" 15
# What kube-proxy programmed (iptables chains); what remains is removed by name below.
[ -x "$NODE_BIN/kube-proxy" ] && timeout 30 "$NODE_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true

# --- 3. containers: through containerd, then whatever still runs in the kubelet's cgroups ------
if pid_alive "$N/pids/containerd.pid"; then
  for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
    "${CTR[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
  sleep 0.5
  for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; done
fi
if [ -f "$BEFORE" ] && [ "$owner" = "$STATE" ]; then
  for cg in /sys/fs/cgroup/*/kubepods; do
    [ -d "$cg" ] && ! grep -qx "path $cg" "$BEFORE" || continue
    { find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true; } | sort -u | while read -r p; do
      kill -KILL "$p" 2>/dev/null || true
    done
  done
fi
stop_pid containerd "$N/pids/containerd.pid" 15
# Shims of this containerd (their command line names its socket), one PID at a time.
for p in $(pgrep -x containerd-shim-runc-v2 2>/dev/null || true); do
  tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$N/containerd/containerd.sock" && kill -KILL "$p" 2>/dev/null || true
done

# --- 4. mounts under the node's state (rootfs overlays, volumes, shm) -------------------------
if [ -d "$N" ]; then
  awk -v n="$N/" 'index($2, n) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
fi

# --- 5. the host, from the record ------------------------------------------------------------
rc=0
if [ -f "$BEFORE" ] && [ "$owner" = "$STATE" ]; then
  had() { grep -qxF -- "$1" "$BEFORE"; }
  # netns the CNI made (they hold the pods' veths), then the bridge
  if [ -d /run/netns ]; then
    for f in /run/netns/*; do
      [ -e "$f" ] || continue
      had "netns $(basename "$f")" && continue
      umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null || true
      rm -f "$f"
    done
  fi
  had "link $NODE_BRIDGE" || ip link del "$NODE_BRIDGE" 2>/dev/null || true
  # iptables: rules in the built-in chains that jump to KUBE-*/CNI-* chains, then those chains
  # (kubelet's KUBE-FIREWALL and canaries, kube-proxy's leftovers, kube-router's KUBE-ROUTER-*,
  # KUBE-NWPLCY-*, KUBE-POD-FW-*; kube-router's own --cleanup-config panics on this IPVS-less kernel)
  for ipt in iptables ip6tables; do
    for t in filter nat mangle raw; do
      $ipt -t $t -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j (KUBE-|CNI-)' | grep -vE '^-A (KUBE-|CNI-)' |
        sed 's/^-A/-D/' | while read -r r; do eval "$ipt -w -t $t $r" 2>/dev/null || true; done || true
      chains=$($ipt -t $t -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/ { print $2 }')
      for ch in $chains; do $ipt -w -t $t -F "$ch" 2>/dev/null || true; done
      for ch in $chains; do $ipt -w -t $t -X "$ch" 2>/dev/null || true; done
    done
  done
  # ipsets and nftables tables that were not there (a table is dropped only when it holds no rule)
  for s in $(ipset list -n 2>/dev/null); do had "ipset $s" || ipset destroy "$s" 2>/dev/null || true; done
  if command -v nft >/dev/null; then
    nft list tables 2>/dev/null | while read -r _ fam name; do
      had "nft-table $fam $name" && continue
      nft list table "$fam" "$name" 2>/dev/null |
        grep -vE '^\s*(table |chain |type |policy |}|$)' | grep -q . || nft delete table "$fam" "$name" 2>/dev/null || true
    done || true
  fi
  # sysctls: ip_forward first (writing it resets every interface's forwarding)
  { grep '^sysctl net.ipv4.ip_forward ' "$BEFORE" || true; } | while read -r _ k v; do sysctl -qw "$k=$v" || true; done
  { grep '^sysctl ' "$BEFORE" || true; } | while read -r _ k v; do
    [ "$(tr '\t' ' ' < "/proc/sys/${k//.//}" 2>/dev/null)" = "$v" ] || sysctl -qw "$k=$v" || true
  done
  [ -f "$NODE_HOST_DIR/added-node-ip" ] && { ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true; rm -f "$NODE_HOST_DIR/added-node-ip"; }
  # cgroups the kubelet made (empty now), directories and files the node's programs made
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [ -d "$cg" ] && [ ! -L "$(dirname "$cg")" ] && ! had "path $cg" && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  for p in "${NODE_HOST_PATHS[@]}"; do
    had "path $p" && continue
    case $p in
      /run/netns) rmdir "$p" 2>/dev/null || true ;;
      *) rm -rf "$p" ;;
    esac
  done
  d=$(host_diff)
  if [ -n "$d" ]; then
    log "the host differs from before the node started (- before, + now):"
    printf '%s\n' "$d" | sed 's/^/    /' >&2
    mkdir -p "$STATE/logs" 2>/dev/null && printf '%s\n' "$d" > "$STATE/logs/node-host.diff" || true
    rc=1
  else
    rm -rf "$NODE_HOST_DIR"
  fi
fi
rm -rf "$N"
[ $rc = 0 ] && log "node stopped; host restored"
exit $rc
