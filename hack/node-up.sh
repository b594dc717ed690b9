#!/usr/bin/env bash
# node-up.sh - add a real node to the local stack of $TENANCY_STATE_DIR (make cluster-up NODE=1):
# containerd + runc (Debian) with a private root, state and socket, the CNI bridge plugin, kubelet,
# kube-proxy (iptables mode), kube-scheduler, and kube-router as the NetworkPolicy agent (its
# firewall only). Images come from OCI archives (`ctr images import`), never from a registry.
#
#   hack/node-up.sh --prepare-host  hack/cluster-up.sh runs this before the API server starts:
#                                   claim the machine's node slot, record the host settings the
#                                   node changes, put the node IP on lo (the API server binds it)
#   hack/node-up.sh                 start the node against the running control plane
#
# The node changes the host while it runs: the kubelet sets vm.overcommit_memory, kernel.panic,
# kernel.panic_on_oops (and more), the bridge plugin net.ipv4.ip_forward; kubelet, kube-proxy and
# kube-router add iptables chains and ipsets; CNI adds a bridge, veths and netns mounts; the kubelet
# makes cgroups. hack/node-down.sh (run by cluster-down and by any failed start) restores all of
# it from the record in $NODE_HOST_DIR. One node stack per machine: they share the host network.
set -euo pipefail
LOG_TAG=node-up
. "$(dirname "$0")/lib.sh"

STATE=${TENANCY_STATE_DIR:-$ROOT/.local}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
N=$STATE/node
PKI=$STATE/pki
LOGS=$STATE/logs
READY_TIMEOUT=${READY_TIMEOUT:-120}
CTR=(ctr --address "$N/containerd/containerd.sock" --namespace k8s.io)

[ "$(id -u)" = 0 ] || die "the node needs root (containerd, kubelet, iptables)"
# containerd and the kubelet create the containers' root directories and volumes: with the
# umask 077 of cluster-up (its env file) a non-root container could not even traverse "/".
umask 022

failed() { # failed NAME LOGFILE: print the log tail, undo everything of the node, exit 1
  log "$1 failed to start; last lines of $2:"
  tail -n 30 "$2" >&2 || true
  TENANCY_STATE_DIR=$STATE "$HACK/node-down.sh" >&2 || true
  exit 1
}

# wait_until NAME LOGFILE PIDFILE CMD...: poll CMD until it succeeds, the process dies or time runs out.
wait_until() {
  local name=$1 logf=$2 pidf=$3 t0=$SECONDS
  shift 3
  until "$@" >/dev/null 2>&1; do
    pid_alive "$pidf" || failed "$name" "$logf"
    [ $((SECONDS - t0)) -lt "$READY_TIMEOUT" ] || failed "$name" "$logf"
    sleep 0.3
  done
}

# --- the host: claim the node slot and record what the node will change ------------------
prepare_host() {
  if [ -f "$NODE_HOST_DIR/owner" ]; then
    local owner
    owner=$(cat "$NODE_HOST_DIR/owner")
    if [ "$owner" != "$STATE" ]; then
      if pid_alive "$owner/node/pids/kubelet.pid" || pid_alive "$owner/node/pids/containerd.pid" ||
        pid_alive "$owner/pids/kube-apiserver.pid"; then
        die "a node stack of $owner runs on this machine (they share the host network): stop it with TENANCY_STATE_DIR=$owner hack/cluster-down.sh"
      fi
      log "restoring the host after a node stack of $owner that did not stop cleanly"
    fi
    TENANCY_STATE_DIR=$owner "$HACK/node-down.sh" >&2 || true
  fi
  mkdir -p "$NODE_HOST_DIR"
  echo "$STATE" > "$NODE_HOST_DIR/owner"
  host_snapshot > "$NODE_HOST_DIR/before"
  if ! ip -4 addr show dev lo | grep -qw "$NODE_IP/32"; then
    ip addr add "$NODE_IP/32" dev lo
    touch "$NODE_HOST_DIR/added-node-ip"
  fi
  log "node IP $NODE_IP on lo; host settings recorded in $NODE_HOST_DIR"
}

if [ "${1:-}" = --prepare-host ]; then
  prepare_host
  exit 0
fi

# --- the node ------------------------------------------------------------------------------
[ -f "$STATE/cluster.env" ] || die "no control plane in $STATE: start it with make cluster-up NODE=1"
# shellcheck disable=SC1091
. "$STATE/cluster.env"
[ "${TENANCY_NODE:-0}" = 1 ] || die "the control plane in $STATE was started without NODE=1 (its API server listens on loopback only)"
[ "$(cat "$NODE_HOST_DIR/owner" 2>/dev/null)" = "$STATE" ] || die "$STATE does not own the node slot ($NODE_HOST_DIR)"
"$HACK/install-deps.sh" --node
"$HACK/build-node.sh" >/dev/null
K=("$CP_BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig")
SERVER=$TENANCY_KUBE_SERVER

mkdir -p "$N"/{pki,pids,containerd,cni/net.d,cni/ipam,kubelet,pod-logs}
chmod 700 "$N/pki"
cat > "$N/pki/san.cnf" <<CNF
[serving]
subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME
extendedKeyUsage=serverAuth
[client]
extendedKeyUsage=clientAuth
CNF
node_sign() { # node_sign NAME SUBJECT EXT
  openssl req -newkey rsa:2048 -nodes -keyout "$N/pki/$1.key" -out "$N/pki/$1.csr" -subj "$2" >/dev/null 2>&1
  openssl x509 -req -in "$N/pki/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -CAserial "$N/pki/ca.srl" -out "$N/pki/$1.crt" -days 365 -extfile "$N/pki/san.cnf" -extensions "$3" >/dev/null 2>&1
  rm -f "$N/pki/$1.csr"
}
log "generating the node's certificates"
node_sign kubelet-serving "/CN=$NODE_NAME" serving
node_sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" client
node_sign kube-proxy "/CN=system:kube-proxy" client
node_sign kube-scheduler "/CN=system:kube-scheduler" client
node_sign kube-router "/CN=tenancy-node:kube-router" client
for u in kubelet kube-proxy kube-scheduler kube-router; do
  write_kubeconfig "$N/$u.kubeconfig" "$SERVER" "$PKI/ca.crt" "$N/pki/$u.crt" "$N/pki/$u.key"
done
# kube-router reads what a NetworkPolicy agent needs, nothing more.
"${K[@]}" apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "tenancy-node:kube-router"}
rules:
  - apiGroups: [""]
    resources: [namespaces, pods, services, endpoints, nodes]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
  - apiGroups: ["", events.k8s.io]
    resources: [events]
    verbs: [create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "tenancy-node:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "tenancy-node:kube-router"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "tenancy-node:kube-router"}]
EOF

# --- containerd + runc ------------------------------------------------------------------------
# Root, state, socket and the `opt` directory in the state dir; CNI config and IPAM state too.
# The VM withholds CAP_SYS_RESOURCE: CRI's oom_score_adj -998 for sandboxes makes runc fail
# ("can't get final child's PID from pipe"), so restrict_oom_score_adj.
cat > "$N/containerd/config.toml" <<EOF
version = 2
root = "$N/containerd/root"
state = "$N/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$N/containerd/containerd.sock"
[ttrpc]
  address = "$N/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$N/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
EOF
# No masquerading: pods talk to the node IP (API server, PostgreSQL) and to each other only.
cat > "$N/cni/net.d/10-tenancy.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "tenancy-pods",
  "plugins": [
    { "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "dataDir": "$N/cni/ipam",
                "ranges": [[{ "subnet": "$POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }] } }
  ]
}
EOF
log "starting containerd $(containerd --version | awk '{print $3}') (socket $N/containerd/containerd.sock)"
setsid containerd --config "$N/containerd/config.toml" >"$LOGS/containerd.log" 2>&1 </dev/null &
echo $! > "$N/pids/containerd.pid"
wait_until containerd "$LOGS/containerd.log" "$N/pids/containerd.pid" "${CTR[@]}" version
"${CTR[@]}" images import --all-platforms "$PAUSE_ARCHIVE" >/dev/null || failed containerd "$LOGS/containerd.log"

# --- kubelet ------------------------------------------------------------------------------------
# cgroup v1 here: failCgroupV1 false (1.37 defaults to refusing it); Debian's containerd 1.6 has
# no CRI RuntimeConfig call, so the cgroup driver is set (cgroupfs). Image garbage collection off:
# what `ctr images import` loaded cannot be pulled again. Pod logs in the state dir.
KP=$(freeport)
KHP=$(freeport)
cat > "$N/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KHP
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $N/pki/kubelet-serving.crt
tlsPrivateKeyFile: $N/pki/kubelet-serving.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$N/containerd/containerd.sock
imageServiceEndpoint: unix://$N/containerd/containerd.sock
podLogsDir: $N/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
maxPods: 40
resolvConf: /etc/resolv.conf
serializeImagePulls: false
EOF
log "starting kubelet $K8S_VERSION as node $NODE_NAME ($NODE_IP)"
setsid "$NODE_BIN/kubelet" --config="$N/kubelet/config.yaml" --kubeconfig="$N/kubelet.kubeconfig" \
  --root-dir="$N/kubelet/root" --cert-dir="$N/kubelet/pki" --hostname-override="$NODE_NAME" \
  --node-ip="$NODE_IP" -v=1 >"$LOGS/kubelet.log" 2>&1 </dev/null &
echo $! > "$N/pids/kubelet.pid"
t0=$SECONDS
wait_until kubelet "$LOGS/kubelet.log" "$N/pids/kubelet.pid" "${K[@]}" get node "$NODE_NAME"
# No node IPAM controller runs: give the node the pod CIDR the bridge plugin hands out.
"${K[@]}" patch node "$NODE_NAME" --type=merge \
  -p "{\"spec\":{\"podCIDR\":\"$POD_CIDR\",\"podCIDRs\":[\"$POD_CIDR\"]}}" >/dev/null
wait_until kubelet "$LOGS/kubelet.log" "$N/pids/kubelet.pid" \
  "${K[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
log "node $NODE_NAME Ready $((SECONDS - t0)) s after the kubelet started"

# --- kube-proxy, kube-scheduler, kube-router -----------------------------------------------------
PHP=$(freeport)
cat > "$N/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $N/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$PHP
metricsBindAddress: 127.0.0.1:$(freeport)
nodePortAddresses: [$NODE_IP/32]
iptables: {localhostNodePorts: false, masqueradeAll: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
log "starting kube-proxy (iptables), kube-scheduler, kube-router $KUBE_ROUTER_VERSION (NetworkPolicy only)"
setsid "$NODE_BIN/kube-proxy" --config="$N/kube-proxy.yaml" -v=1 >"$LOGS/kube-proxy.log" 2>&1 </dev/null &
echo $! > "$N/pids/kube-proxy.pid"
setsid "$NODE_BIN/kube-scheduler" --kubeconfig="$N/kube-scheduler.kubeconfig" --leader-elect=false \
  --secure-port=0 -v=1 >"$LOGS/kube-scheduler.log" 2>&1 </dev/null &
echo $! > "$N/pids/kube-scheduler.pid"
RHP=$(freeport)
setsid "$KUBE_ROUTER_DIR/kube-router" --kubeconfig="$N/kube-router.kubeconfig" --hostname-override="$NODE_NAME" \
  --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
  --enable-cni=false --enable-pod-egress=false --enable-ipv4=true --enable-ipv6=false \
  --service-cluster-ip-range="$SERVICE_CIDR" --health-port="$RHP" --metrics-port=0 \
  --iptables-sync-period=1m -v=1 >"$LOGS/kube-router.log" 2>&1 </dev/null &
echo $! > "$N/pids/kube-router.pid"
wait_until kube-proxy "$LOGS/kube-proxy.log" "$N/pids/kube-proxy.pid" curl -fsS "http://127.0.0.1:$PHP/healthz"
wait_until kube-router "$LOGS/kube-router.log" "$N/pids/kube-router.pid" curl -fsS "http://127.0.0.1:$RHP/healthz"
pid_alive "$N/pids/kube-scheduler.pid" || failed kube-scheduler "$LOGS/kube-scheduler.log"

cat >> "$STATE/cluster.env" <<EOF
export TENANCY_NODE_NAME='$NODE_NAME'
export TENANCY_CONTAINERD_ADDRESS='$N/containerd/containerd.sock'
EOF
log "node $NODE_NAME is up; load images with: hack/node-load.sh ARCHIVE.oci.tar"
