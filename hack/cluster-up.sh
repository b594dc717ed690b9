#!/usr/bin/env bash
# cluster-up.sh - start a real local control plane (etcd, kube-apiserver,
# kube-controller-manager) and a PostgreSQL server on free loopback ports.
#
# State lives in $TENANCY_STATE_DIR (default <repo>/.local): certificates, data, logs,
# pid files and the sourceable cluster.env. Stop everything with hack/cluster-down.sh.
#
# TENANCY_NODE=1 (make cluster-up NODE=1) adds a real node (hack/node-up.sh): the API server
# and PostgreSQL then listen on the node IP ($NODE_IP, on lo) instead of 127.0.0.1, so that
# pods reach them, and the API server advertises it behind the `kubernetes` Service. Without
# it (the default, for the unit and integration suites) nothing touches the host network.
set -euo pipefail
LOG_TAG=cluster-up
. "$(dirname "$0")/lib.sh"

STATE=${TENANCY_STATE_DIR:-$ROOT/.local}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
PKI=$STATE/pki
LOGS=$STATE/logs
PIDS=$STATE/pids
ENVFILE=$STATE/cluster.env
READY_TIMEOUT=${READY_TIMEOUT:-120}
WITH_NODE=${TENANCY_NODE:-0}
[ "$WITH_NODE" = 1 ] && API_HOST=$NODE_IP || API_HOST=127.0.0.1

healthy() {
  for c in etcd kube-apiserver kube-controller-manager; do pid_alive "$PIDS/$c.pid" || return 1; done
  [ -f "$ENVFILE" ] && [ -f "$STATE/postgres.path" ] && [ -f "$(cat "$STATE/postgres.path")/data/postmaster.pid" ] &&
    "$CP_BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" get --raw /readyz >/dev/null 2>&1
}
if healthy; then
  if [ "$WITH_NODE" = 1 ] && ! pid_alive "$STATE/node/pids/kubelet.pid"; then
    die "already running without a node; make cluster-down first, then make cluster-up NODE=1"
  fi
  log "already running; source $ENVFILE (stop it with make cluster-down)"
  exit 0
fi
# Leftovers of a crashed run: stop them first so nothing leaks.
[ -d "$PIDS" ] && TENANCY_STATE_DIR=$STATE "$HACK/cluster-down.sh" >/dev/null 2>&1 || true

"$HACK/install-deps.sh"
"$HACK/build-control-plane.sh" >/dev/null
if [ "$WITH_NODE" = 1 ]; then
  "$HACK/install-deps.sh" --node
  "$HACK/build-node.sh" >/dev/null
fi
[ -x "$PG_BIN/initdb" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"

rm -rf "$PKI" "$LOGS" "$PIDS" "$STATE/etcd" "$ENVFILE"
mkdir -p "$PKI" "$LOGS" "$PIDS"
chmod 700 "$PKI"

# failed NAME LOGFILE: print the failing component's log tail, stop the rest, exit 1.
failed() {
  log "$1 failed to start; last lines of $2:"
  tail -n 30 "$2" >&2 || true
  TENANCY_STATE_DIR=$STATE "$HACK/cluster-down.sh" >/dev/null 2>&1 || true
  exit 1
}

# --- certificates -----------------------------------------------------------------------
log "generating certificates in $PKI"
(
  cd "$PKI"
  q() { "$@" >/dev/null 2>&1; }
  q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 365 -subj "/CN=tenancy-local-ca"
  cat > san.cnf <<CNF
[ext]
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1,IP:$NODE_IP
extendedKeyUsage=serverAuth
[client]
extendedKeyUsage=clientAuth
CNF
  sign() { # sign NAME SUBJECT EXTSECTION
    q openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
    q openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 365 \
      -extfile san.cnf -extensions "$3"
    rm -f "$1.csr"
  }
  sign apiserver "/CN=kube-apiserver" ext
  sign postgres "/CN=localhost" ext
  sign admin "/O=system:masters/CN=tenancy-admin" client
  sign unprivileged "/CN=jane" client
  # the API server's client certificate towards the kubelet (logs, exec)
  if [ "$WITH_NODE" = 1 ]; then sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client; fi
  q openssl genrsa -out sa.key 2048
  q openssl rsa -in sa.key -pubout -out sa.pub
) || die "certificate generation failed (is openssl installed?)"

kubeconfig() { # kubeconfig FILE USER
  local k="$CP_BIN/kubectl" f=$1
  "$k" config --kubeconfig "$f" set-cluster local --server="https://$API_HOST:$AP" \
    --certificate-authority="$PKI/ca.crt" --embed-certs >/dev/null
  "$k" config --kubeconfig "$f" set-credentials "$2" --client-certificate="$PKI/$2.crt" \
    --client-key="$PKI/$2.key" --embed-certs >/dev/null
  "$k" config --kubeconfig "$f" set-context local --cluster=local --user="$2" >/dev/null
  "$k" config --kubeconfig "$f" use-context local >/dev/null
  chmod 600 "$f"
}

# --- etcd -------------------------------------------------------------------------------
EP=$(freeport); PP=$(freeport)
log "starting etcd on 127.0.0.1:$EP"
setsid "$CP_BIN/etcd" --name local --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "local=http://127.0.0.1:$PP" --unsafe-no-fsync \
  >"$LOGS/etcd.log" 2>&1 < /dev/null &
echo $! > "$PIDS/etcd.pid"
t0=$SECONDS
until curl -fsS "http://127.0.0.1:$EP/health" 2>/dev/null | grep -q '"health":"true"'; do
  pid_alive "$PIDS/etcd.pid" || failed etcd "$LOGS/etcd.log"
  [ $((SECONDS - t0)) -lt "$READY_TIMEOUT" ] || failed etcd "$LOGS/etcd.log"
  sleep 0.2
done

# --- kube-apiserver ---------------------------------------------------------------------
AP=$(freeport)
# Bearer tokens of test users with groups of their own (ServiceAccount tokens only carry system:
# groups, which a Tenant's groupBindings refuse): the read API's tests. Random per stack.
(umask 077; for u in alpha beta; do
  printf '%s,readapi-%s,readapi-%s,"readapi-team-%s"\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" "$u" "$u" "$u"
done > "$STATE/tokens.csv")
if [ "$WITH_NODE" = 1 ]; then
  # The node IP must be on lo before the API server binds it.
  TENANCY_STATE_DIR=$STATE "$HACK/node-up.sh" --prepare-host ||
    { TENANCY_STATE_DIR=$STATE "$HACK/cluster-down.sh" >/dev/null 2>&1 || true; exit 1; }
  # Advertised (the default lease reconciler keeps the `kubernetes` Service's endpoint at
  # $NODE_IP:$AP), and the kubelet's serving certificate verified.
  API_FLAGS=(--bind-address="$NODE_IP" --advertise-address="$NODE_IP"
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key"
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP)
else
  API_FLAGS=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
fi
log "starting kube-apiserver $K8S_VERSION on https://$API_HOST:$AP"
setsid "$CP_BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$EP" \
  "${API_FLAGS[@]}" --secure-port="$AP" --cert-dir="$PKI" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" --service-cluster-ip-range=10.0.0.0/24 \
  --token-auth-file="$STATE/tokens.csv" \
  --authorization-mode=Node,RBAC --allow-privileged=true \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  >"$LOGS/kube-apiserver.log" 2>&1 < /dev/null &
echo $! > "$PIDS/kube-apiserver.pid"
kubeconfig "$STATE/admin.kubeconfig" admin
kubeconfig "$STATE/unprivileged.kubeconfig" unprivileged
K=("$CP_BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig")
t0=$SECONDS
until "${K[@]}" get --raw /readyz >/dev/null 2>&1; do
  pid_alive "$PIDS/kube-apiserver.pid" || failed kube-apiserver "$LOGS/kube-apiserver.log"
  [ $((SECONDS - t0)) -lt "$READY_TIMEOUT" ] || failed kube-apiserver "$LOGS/kube-apiserver.log"
  sleep 0.3
done
log "kube-apiserver ready in $((SECONDS - t0)) s"

# --- kube-controller-manager ------------------------------------------------------------
log "starting kube-controller-manager"
setsid "$CP_BIN/kube-controller-manager" --kubeconfig="$STATE/admin.kubeconfig" \
  --authentication-kubeconfig="$STATE/admin.kubeconfig" --authorization-kubeconfig="$STATE/admin.kubeconfig" \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --use-service-account-credentials=true --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port=0 \
  >"$LOGS/kube-controller-manager.log" 2>&1 < /dev/null &
echo $! > "$PIDS/kube-controller-manager.pid"
# Ready when its service-account controller has created default/default.
t0=$SECONDS
until "${K[@]}" -n default get serviceaccount default >/dev/null 2>&1; do
  pid_alive "$PIDS/kube-controller-manager.pid" || failed kube-controller-manager "$LOGS/kube-controller-manager.log"
  [ $((SECONDS - t0)) -lt "$READY_TIMEOUT" ] || failed kube-controller-manager "$LOGS/kube-controller-manager.log"
  sleep 0.3
done

# --- PostgreSQL -------------------------------------------------------------------------
# start_pg SUFFIX LISTEN: one PostgreSQL server; SUFFIX is "" for the main one and 2, 3... for
# the extra servers (TENANCY_PG_EXTRA, default 2) that migration and failover tests use as a
# second and third region. Sets PGROOT, PGP and DSN. Every server has wal_level = logical, so
# that any of them can be the source of a logical replication.
# The data directory must belong to the server's user; when we are root that is `postgres`,
# and it must be able to reach the directory, which a home directory may not allow.
start_pg() {
  local sfx=$1 listen=$2 pw
  PGROOT=$STATE/postgres$sfx
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$STATE"; then
    PGROOT=$(mktemp -d /tmp/tenancy-postgres.XXXXXX)
  fi
  echo "$PGROOT" > "$STATE/postgres$sfx.path"
  rm -rf "$PGROOT"; mkdir -p "$PGROOT/tls" "$PGROOT/run"
  pw=$(openssl rand -hex 24)
  printf '%s\n' "$pw" > "$PGROOT/pwfile"
  cp "$PKI/postgres.crt" "$PGROOT/tls/server.crt"; cp "$PKI/postgres.key" "$PGROOT/tls/server.key"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PGROOT"
  chmod 700 "$PGROOT"; chmod 600 "$PGROOT/tls/server.key" "$PGROOT/pwfile"
  PGP=$(freeport)
  log "starting PostgreSQL$sfx $("$PG_BIN/postgres" --version | awk '{print $3}') on $listen:$PGP (TLS)"
  as_pg "$PG_BIN/initdb" -D "$PGROOT/data" -U tenancy_admin --pwfile="$PGROOT/pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 >"$LOGS/initdb$sfx.log" 2>&1 \
    || failed initdb "$LOGS/initdb$sfx.log"
  rm -f "$PGROOT/pwfile"
  # TCP clients must use TLS: turn every `host` rule into `hostssl`.
  sed -i -E 's/^host(\s)/hostssl\1/' "$PGROOT/data/pg_hba.conf"
  # With a node, pods (their CIDR) connect over the node IP, with TLS and a password too.
  [ "$WITH_NODE" = 1 ] && echo "hostssl all all $POD_CIDR scram-sha-256" >> "$PGROOT/data/pg_hba.conf"
  # Settings go into postgresql.conf so that a plain `pg_ctl start` (outage tests) restores them.
  cat >> "$PGROOT/data/postgresql.conf" <<EOF
# tenancy-operator local settings
listen_addresses = '$listen'
port = $PGP
unix_socket_directories = '$PGROOT/run'
ssl = on
ssl_cert_file = '$PGROOT/tls/server.crt'
ssl_key_file = '$PGROOT/tls/server.key'
max_connections = 300
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_logical_replication_workers = 16
EOF
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/postgres.log" -w -t "$READY_TIMEOUT" start \
    >/dev/null 2>&1; then
    cp "$PGROOT/postgres.log" "$LOGS/postgres$sfx.log" 2>/dev/null || true
    failed "postgres$sfx" "$LOGS/postgres$sfx.log"
  fi
  ln -sf "$PGROOT/postgres.log" "$LOGS/postgres$sfx.log"
  pgca=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$PKI/ca.crt")
  DSN="postgresql://tenancy_admin:$pw@127.0.0.1:$PGP/postgres?sslmode=verify-full&sslrootcert=$pgca"
}
PG_LISTEN=127.0.0.1
[ "$WITH_NODE" = 1 ] && PG_LISTEN="127.0.0.1,$NODE_IP"
PG_EXTRA=${TENANCY_PG_EXTRA:-2}
EXTRA_ENV=""
for ((i = 2; i <= PG_EXTRA + 1; i++)); do
  start_pg "$i" "$PG_LISTEN"
  EXTRA_ENV+="export TENANCY_PG${i}_DSN='$DSN'
export TENANCY_PG${i}_HOST=127.0.0.1
export TENANCY_PG${i}_PORT=$PGP
export TENANCY_PG${i}_DATA='$PGROOT/data'
"
done
start_pg "" "$PG_LISTEN"

# --- environment file ---------------------------------------------------------------------
umask 077
cat > "$ENVFILE" <<EOF
# Written by hack/cluster-up.sh on $(date -u +%FT%TZ); source it: . $ENVFILE
export KUBECONFIG='$STATE/admin.kubeconfig'
export TENANCY_PG_DSN='$DSN'
export PATH='$CP_BIN':"\$PATH"
export TENANCY_STATE_DIR='$STATE'
export TENANCY_CA_FILE='$PKI/ca.crt'
export TENANCY_KUBE_SERVER='https://$API_HOST:$AP'
export TENANCY_UNPRIVILEGED_KUBECONFIG='$STATE/unprivileged.kubeconfig'
export TENANCY_TEST_TOKENS_FILE='$STATE/tokens.csv'
export TENANCY_ETCD_ENDPOINT='http://127.0.0.1:$EP'
export TENANCY_PG_HOST=127.0.0.1
export TENANCY_PG_PORT=$PGP
export TENANCY_PG_DATA='$PGROOT/data'
export TENANCY_NODE=$WITH_NODE
export TENANCY_PG_EXTRA=$PG_EXTRA
${EXTRA_ENV}
EOF
if [ "$WITH_NODE" = 1 ]; then
  echo "export TENANCY_NODE_IP='$NODE_IP'" >> "$ENVFILE"
  TENANCY_STATE_DIR=$STATE "$HACK/node-up.sh" ||
    { TENANCY_STATE_DIR=$STATE "$HACK/cluster-down.sh" >/dev/null 2>&1 || true; exit 1; }
fi
log "control plane and PostgreSQL are up. Use them with:"
echo "    source $ENVFILE && kubectl get namespaces" >&2
