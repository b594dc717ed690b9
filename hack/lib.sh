# lib.sh - shell helpers shared by the hack/ scripts (sourced, never run).

HACK=${HACK:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
ROOT=$(cd "$HACK/.." && pwd)
# shellcheck source=versions.env
. "$HACK/versions.env"
TENANCY_CACHE=${TENANCY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenancy-operator}
CP_BIN="$TENANCY_CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

# The node of `make cluster-up NODE=1` (hack/node-up.sh): binaries, addresses, names.
NODE_BIN="$TENANCY_CACHE/k8s-$K8S_VERSION-node/bin"
KUBE_ROUTER_VERSION=$(awk '$1 == "require" && $2 == "github.com/cloudnativelabs/kube-router/v2" { print $3 }' \
  "$HACK/kube-router/go.mod")
KUBE_ROUTER_DIR="$TENANCY_CACHE/kube-router-$KUBE_ROUTER_VERSION"
PAUSE_TAG=$PAUSE_VERSION
PAUSE_IMAGE=registry.k8s.io/pause:$PAUSE_TAG
PAUSE_ARCHIVE="$TENANCY_CACHE/k8s-$K8S_VERSION-node/pause-$PAUSE_TAG.oci.tar"
# The node IP: kubelet refuses a loopback node IP and this kernel has no dummy interfaces, so a
# /32 on lo. Pods reach the API server and PostgreSQL there. One node stack per machine.
NODE_IP=${TENANCY_NODE_IP:-10.99.0.1}
NODE_NAME=tenancy-node
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.0.0.0/24
NODE_BRIDGE=tnode0
# The machine's node slot: which state directory's node owns the host network settings right now
# (owner), and what they were before it started (before, *.before), for hack/node-down.sh.
NODE_HOST_DIR=/run/tenancy-operator-node
# Host settings a node changes (kubelet's kernel tunables, the bridge plugin's forwarding, what
# kube-proxy and kube-router may set): recorded before, restored after.
NODE_SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding
  net.ipv4.conf.lo.forwarding net.ipv6.conf.all.forwarding net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Paths the node's programs create when missing (CNI's result cache, kubelet's log links, the
# shim sockets, netns mounts, iptables' lock, cgroups); removed again when they were not there.
NODE_HOST_PATHS=(/var/lib/cni /var/log/pods /var/log/containers /run/containerd /run/netns /etc/cni
  /opt/cni /opt/containerd /var/lib/kubelet /var/lib/kube-router /run/runc /run/xtables.lock)

# host_snapshot: print the host state a node changes, one item a line (see NODE_* above).
host_snapshot() {
  local s p c
  for s in "${NODE_SYSCTLS[@]}"; do
    [ -e "/proc/sys/${s//.//}" ] && echo "sysctl $s $(cat "/proc/sys/${s//.//}" | tr '\t' ' ')"
  done
  for p in "${NODE_HOST_PATHS[@]}"; do [ -e "$p" ] && echo "path $p"; done
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do [ -e "$c" ] && echo "path $c"; done
  ip -o -4 addr show dev lo | awk '{ print "lo-addr " $4 }'
  ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print "link " $2 }'
  if [ -d /run/netns ]; then find /run/netns -mindepth 1 -maxdepth 1 -printf 'netns %f\n'; fi
  if command -v ipset >/dev/null; then { ipset list -n 2>/dev/null || true; } | sed 's/^/ipset /'; fi
  if command -v nft >/dev/null; then { nft list tables 2>/dev/null || true; } | sed 's/^table /nft-table /'; fi
  { iptables-save 2>/dev/null || true; } | awk '/^(\*|:|-A)/ { sub(/ \[[0-9]+:[0-9]+\]$/, ""); print "iptables " $0 }'
  { ip6tables-save 2>/dev/null || true; } | awk '/^(\*|:|-A)/ { sub(/ \[[0-9]+:[0-9]+\]$/, ""); print "ip6tables " $0 }'
  awk '$2 ~ /^\/run\/netns\// || $2 ~ /kubepods/ { print "mount " $2 }' /proc/self/mounts
  true
}

# write_kubeconfig FILE SERVER CA CERT KEY: a kubeconfig with client certificate credentials.
write_kubeconfig() {
  local k="$CP_BIN/kubectl" f=$1
  "$k" config --kubeconfig "$f" set-cluster local --server="$2" --certificate-authority="$3" --embed-certs >/dev/null
  "$k" config --kubeconfig "$f" set-credentials user --client-certificate="$4" --client-key="$5" \
    --embed-certs >/dev/null
  "$k" config --kubeconfig "$f" set-context local --cluster=local --user=user >/dev/null
  "$k" config --kubeconfig "$f" use-context local >/dev/null
  chmod 600 "$f"
}

log() { printf '[%s %s] %s\n' "${LOG_TAG:-hack}" "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# freeport: print a TCP port that is free on 127.0.0.1 right now.
freeport() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# pid_alive PIDFILE: true when the process recorded in PIDFILE runs.
pid_alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# stop_pid NAME PIDFILE [TIMEOUT]: SIGTERM, wait up to TIMEOUT seconds, then SIGKILL.
stop_pid() {
  local name=$1 file=$2 timeout=${3:-20} pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored SIGTERM for ${timeout}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$file"
}

# as_pg CMD...: run CMD as the postgres system user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# buildah_init: BUILDAH=(buildah ...) on a private store under the cache, with a private
# containers.conf: buildah would otherwise create /etc/cni/net.d and, on a `run` with networking,
# a cni-podman0 bridge and iptables rules on this machine. Every build and run here is
# --network=none.
buildah_init() {
  local d=$TENANCY_CACHE/image
  mkdir -p "$d"
  printf '[network]\nnetwork_config_dir = "%s/cni"\n' "$d" > "$d/containers.conf"
  export CONTAINERS_CONF=$d/containers.conf
  BUILDAH=(buildah --root "$d/storage" --runroot "$d/run" --storage-driver overlay)
}

# node_db_secret NAMESPACE: with a node stack's environment (cluster.env), create in NAMESPACE
# the Secrets the operator's Pods need for the stack's PostgreSQL: tenancy-operator-db (the DSN,
# over the node IP, TLS verified against /etc/tenancy-db/ca.crt) and tenancy-db-ca (that CA).
# The chart mounts the second with: -f hack/in-cluster-values.yaml.
node_db_secret() {
  local ns=$1 pw dsn
  pw=$(python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).password)' "$TENANCY_PG_DSN")
  dsn="postgresql://tenancy_admin:$pw@$TENANCY_NODE_IP:$TENANCY_PG_PORT/postgres?sslmode=verify-full&sslrootcert=/etc/tenancy-db/ca.crt"
  kubectl -n "$ns" create secret generic tenancy-operator-db --from-literal=dsn="$dsn" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n "$ns" create secret generic tenancy-db-ca --from-file=ca.crt="$TENANCY_CA_FILE" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}
