#!/usr/bin/env bash
# e2e.sh - the end-to-end suite: the operator image installed with the Helm chart on a real node
# (make cluster-up NODE=1), as users run it. Each check prints PASS or FAIL; the exit status is
# the number of failures (0: all passed). hack/test.sh runs it on its own node stack.
#
#   helm install -> 2 replicas Running and Ready -> the webhook answers through its Service (a
#   residency violation is refused at kubectl apply) -> the samples become Ready -> SIGKILL of the
#   leader's container: the standby takes over within the lease duration, and no audit row is
#   written twice -> NetworkPolicies under kube-router with real pods (same tenant reaches, other
#   tenant does not, a Suspended tenant is cut off; a Plan's ingress namespaces and
#   crossEnvironment: Deny; cluster DNS only; the tenant's database server only) -> helm upgrade with a changed value rolls
#   while Tenant writes go on, none refused -> helm uninstall leaves the tenants' namespaces.
#
# Needs: the environment of a node stack (source .local/cluster.env after make cluster-up NODE=1).
# Env:   TENANCY_HELM           helm binary (default: hack/build-helm.sh builds or finds it)
#        TENANCY_IMAGE_ARCHIVE  the operator image as an OCI archive (default: make image-archive)
#        E2E_KEEP=1             leave the release and the e2e pods in place at the end
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HACK=$ROOT/hack
LOG_TAG=e2e
# shellcheck source=../../hack/lib.sh
. "$HACK/lib.sh"

[ "${TENANCY_NODE:-0}" = 1 ] || die "no node stack in the environment: make cluster-up NODE=1 && source .local/cluster.env"
STATE=$TENANCY_STATE_DIR
NS=tenancy-system
REL=tenancy-operator
CHART=$ROOT/charts/tenancy-operator
HELM=${TENANCY_HELM:-$("$HACK/build-helm.sh" | tail -n 1)}
VERSION=$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2 }' "$CHART/Chart.yaml")
ARCHIVE=${TENANCY_IMAGE_ARCHIVE:-$ROOT/build/image/tenancy-operator-$VERSION.oci.tar}
CTR=(ctr --address "$TENANCY_CONTAINERD_ADDRESS" --namespace k8s.io)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tenancy-e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export HELM_CONFIG_HOME=$WORK/helm/config HELM_CACHE_HOME=$WORK/helm/cache HELM_DATA_HOME=$WORK/helm/data

fails=0
passes=0
T0=$SECONDS
pass() { passes=$((passes + 1)); printf '  PASS  %s\n' "$*"; }
fail() { fails=$((fails + 1)); printf '  FAIL  %s\n' "$*"; }
# check DESCRIPTION CMD...: PASS when CMD succeeds.
check() {
  local d=$1
  shift
  if "$@" >"$WORK/out" 2>&1; then pass "$d"; else fail "$d"; sed 's/^/        /' "$WORK/out" | tail -n 15; fi
}
section() { printf '\n[e2e %s +%ds] %s\n' "$(date +%T)" $((SECONDS - T0)) "$*"; }
# eventually SECONDS CMD...: retry CMD every 0.5 s until it succeeds or time runs out.
eventually() {
  local limit=$1 t0=$SECONDS
  shift
  until "$@"; do
    [ $((SECONDS - t0)) -lt "$limit" ] || return 1
    sleep 0.5
  done
}
jp() { kubectl "$@" 2>/dev/null; }
dump_on_failure() {
  [ $fails = 0 ] && return
  {
    kubectl get pods -A -o wide
    kubectl -n $NS describe pods
    for p in $(kubectl -n $NS get pods -o name); do echo "--- $p"; kubectl -n $NS logs "$p" --tail=40; done
  } >"$STATE/logs/e2e-dump.log" 2>&1 || true
  log "cluster state at the failure: $STATE/logs/e2e-dump.log"
}

# --- images -------------------------------------------------------------------------------------
section "images into the node's containerd (no registry)"
[ -f "$ARCHIVE" ] || ARCHIVE=$("$HACK/image.sh" archive | tail -n 1)
"$HACK/node-load.sh" "$ARCHIVE" || die "cannot load $ARCHIVE"
# The network probe: a static binary FROM scratch, built here (tests/e2e/netcheck.c).
gcc -Os -static -Wall -Wextra -Werror -o "$WORK/netcheck" "$ROOT/tests/e2e/netcheck.c" || die "netcheck does not build"
buildah_init
NC_IMAGE=docker.io/library/tenancy-e2e-netcheck:1
c=$("${BUILDAH[@]}" from --pull=never scratch)
"${BUILDAH[@]}" copy --quiet "$c" "$WORK/netcheck" /netcheck >/dev/null
"${BUILDAH[@]}" config --entrypoint '["/netcheck"]' --user 65532:65532 "$c"
"${BUILDAH[@]}" commit --quiet --rm "$c" "$NC_IMAGE" >/dev/null
"${BUILDAH[@]}" push --quiet "$NC_IMAGE" "oci-archive:$WORK/netcheck.oci.tar:$NC_IMAGE" >/dev/null
"$HACK/node-load.sh" "$WORK/netcheck.oci.tar" || die "cannot load the netcheck image"

# --- install ----------------------------------------------------------------------------------
section "helm install $REL (image tenancy-operator:$VERSION, 2 replicas) with the audit database"
kubectl create namespace $NS >/dev/null
# The operator's PostgreSQL: the stack's server, reached over the node IP, TLS verified against
# the stack's CA (mounted from a Secret, named by sslrootcert).
node_db_secret $NS
cp "$HACK/in-cluster-values.yaml" "$WORK/values.yaml"
t=$SECONDS
check "helm install succeeds and waits for the Deployment" \
  "$HELM" install $REL "$CHART" -n $NS -f "$WORK/values.yaml" --wait --timeout 180s
log "installed and Ready in $((SECONDS - t)) s"
ready_replicas() { [ "$(jp -n $NS get deploy $REL -o jsonpath='{.status.readyReplicas}')" = 2 ]; }
check "2 replicas Ready" eventually 60 ready_replicas
pods_running() {
  local out
  out=$(jp -n $NS get pods -l app.kubernetes.io/name=tenancy-operator \
    -o jsonpath='{range .items[*]}{.status.phase} {.spec.containers[0].image} {.spec.securityContext.runAsUser}{"\n"}{end}')
  [ "$(printf '%s\n' "$out" | grep -c "^Running tenancy-operator:$VERSION 65532$")" = 2 ]
}
check "both pods Running the image tenancy-operator:$VERSION as user 65532" pods_running
check "the image has no shell (exec /bin/sh fails)" \
  bash -c "! kubectl -n $NS exec deploy/$REL -- /bin/sh -c true"
check "tenantctl runs in the image" kubectl -n $NS exec deploy/$REL -- /usr/local/bin/tenantctl --version

# --- webhook ------------------------------------------------------------------------------------
section "the admission webhook through its Service"
kubectl apply -f "$ROOT/manifests/samples/00-plans.yaml" -f "$ROOT/manifests/samples/01-regions.yaml" \
  -f "$ROOT/manifests/samples/02-policies.yaml" >/dev/null
endpoints() { [ "$(jp -n $NS get endpointslices -l kubernetes.io/service-name=$REL-webhook \
  -o jsonpath='{range .items[*].endpoints[*]}{.conditions.ready}{"\n"}{end}' | grep -c true)" = 2 ]; }
check "the webhook Service has 2 ready endpoints" eventually 30 endpoints
cat > "$WORK/violation.yaml" <<'EOF'
apiVersion: tenancy.dev/v1alpha1
kind: Tenant
metadata: {name: e2e-residency-violation}
spec:
  displayName: Violates eu-only
  state: Active
  plan: standard
  isolation: shared
  residency: {allowedRegions: [us-east-1], flags: [eu-only]}
  environments: [prod]
  identity: {domain: violation.example}
EOF
refused() {
  local out
  out=$(kubectl apply -f "$WORK/violation.yaml" 2>&1) && { echo "stored: $out"; return 1; }
  echo "$out"
  grep -q 'admission webhook "tenants.tenancy.dev" denied the request: TenancyPolicy eu-residency: residency flag' <<<"$out"
}
check "a residency violation is refused at kubectl apply, with the policy's message" refused
check "... and was not stored" bash -c "! kubectl get tenant e2e-residency-violation"

# --- samples --------------------------------------------------------------------------------------
section "the samples"
kubectl apply -f "$ROOT/manifests/samples/10-tenant-acme.yaml" -f "$ROOT/manifests/samples/11-tenant-globex.yaml" >/dev/null
check "acme becomes Ready" kubectl wait --for=condition=Ready tenant/acme --timeout=120s
check "globex (Draft) is reconciled: Ready condition at its generation" kubectl wait tenant/globex --timeout=60s \
  --for=jsonpath='{.status.observedGeneration}'="$(jp get tenant globex -o jsonpath='{.metadata.generation}')"
check "acme's namespaces exist" kubectl get namespace acme-prod acme-staging

# --- leader failover --------------------------------------------------------------------------------
section "SIGKILL of the leader's container"
LEASE_NS=$NS
LEASE=$REL-leader
holder() { jp -n $LEASE_NS get lease $LEASE -o jsonpath='{.spec.holderIdentity}'; }
old=$(holder)
lease_s=$(jp -n $LEASE_NS get lease $LEASE -o jsonpath='{.spec.leaseDurationSeconds}')
leader_pod=${old%_*}
standby_pod=$(jp -n $NS get pods -l app.kubernetes.io/name=tenancy-operator -o name | sed 's#^pod/##' | grep -vx "$leader_pod" | head -n 1)
log "leader $leader_pod (lease $lease_s s), standby $standby_pod"
# The leader's running container (an earlier, exited one of the same pod may still be listed).
cid=""
for id in $("${CTR[@]}" containers ls -q "labels.\"io.kubernetes.pod.name\"==$leader_pod,labels.\"io.kubernetes.container.name\"==operator" 2>/dev/null); do
  "${CTR[@]}" tasks ls 2>/dev/null | awk -v id="$id" '$1 == id && $3 == "RUNNING"' | grep -q . && cid=$id
done
if [ -z "$old" ] || [ -z "$lease_s" ] || [ -z "$cid" ] || [ -z "$standby_pod" ]; then
  fail "find the leader ($old), its lease ($lease_s s), its running container ($cid) and the standby ($standby_pod)"
else
  t=$SECONDS
  check "SIGKILL of the leader's process (ctr tasks kill)" "${CTR[@]}" tasks kill -s SIGKILL "$cid"
  # Another process leads: the standby, or the killed pod's restarted container when the kubelet
  # restarts it before the lease expires (both are new candidates; the standby is not favoured).
  # Bound, as client-go's leader election has it: a standby counts the lease duration from when it
  # saw the last renewal (it looks every jittered retry period, 2 to 4.4 s, so up to 4.4 s after
  # the renewal was made) and wakes just past that expiry (tn_leader_core_next_attempt); 1 s more
  # for the API round trips. A strict "lease duration from the SIGKILL" cannot hold for a holder
  # that renewed just before dying.
  taken() { local h; h=$(holder); [ -n "$h" ] && [ "$h" != "$old" ]; }
  if eventually $((lease_s + 5)) taken; then
    took=$((SECONDS - t))
    new=$(holder)
    case $new in "${standby_pod}_"*) who="the standby $standby_pod" ;; *) who="the restarted container of $leader_pod" ;; esac
    if [ $took -le $((lease_s + 6)) ]; then
      pass "$who took the lease $took s after the SIGKILL (lease duration $lease_s s)"
    else
      fail "$who took the lease only after $took s (lease duration $lease_s s, bound $((lease_s + 6)) s)"
    fi
  else
    fail "nobody took the lease within $((lease_s + 5)) s (holder: $(holder))"
  fi
  # The new leader converges a change made after the failover.
  kubectl patch tenant globex --type=merge -p '{"spec":{"state":"Active","stateReason":"e2e"}}' >/dev/null
  check "after the failover, globex (activated) becomes Ready under the new leader" \
    kubectl wait --for=condition=Ready tenant/globex --timeout=120s
fi
audit_dupes() {
  local schema n
  schema=$(psql "$TENANCY_PG_DSN" -Atc "SELECT table_schema FROM information_schema.tables WHERE table_name = 'audit_events' LIMIT 1")
  [ -n "$schema" ] || { echo "no audit_events table: the operator wrote no audit row"; return 1; }
  n=$(psql "$TENANCY_PG_DSN" -Atc "SELECT count(*) FROM \"$schema\".audit_events")
  echo "$n audit rows in $schema"
  [ "$n" -gt 0 ] || return 1
  psql "$TENANCY_PG_DSN" -Atc "SELECT action, target, correlation_id, outcome, count(*) FROM \"$schema\".audit_events
    WHERE correlation_id IS NOT NULL GROUP BY 1, 2, 3, 4 HAVING count(*) > 1" >"$WORK/dupes"
  cat "$WORK/dupes"
  [ ! -s "$WORK/dupes" ]
}
check "the audit trail (PostgreSQL over the node IP) has rows and none written twice" audit_dupes

# --- NetworkPolicies with real pods ---------------------------------------------------------------
section "NetworkPolicies under kube-router"
# A server in acme-prod; each check is a one-shot client pod that connects to it (the image
# has no shell to exec into) and Succeeds only when the server answered.
netpod() { # netpod NAMESPACE NAME RESTARTPOLICY ARGS...
  local ns=$1 name=$2 restart=$3 args
  shift 3
  args=$(printf '"%s",' "$@")
  kubectl -n "$ns" delete pod "$name" --ignore-not-found --grace-period=0 --force >/dev/null 2>&1
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $ns, labels: {app: e2e-$name}}
spec:
  restartPolicy: $restart
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: netcheck
      image: $NC_IMAGE
      imagePullPolicy: Never
      args: [${args%,}]
      resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 32Mi}}
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
EOF
}
finished() { case $(jp -n "$1" get pod "$2" -o jsonpath='{.status.phase}') in Succeeded | Failed) true ;; *) false ;; esac; }
probe() { # probe NAMESPACE NAME: a client pod connects to the server; true when it got the answer
  netpod "$1" "$2" Never connect "$server_ip" 8080 5000
  eventually 60 finished "$1" "$2" || { echo "the probe pod did not finish"; return 2; }
  kubectl -n "$1" logs "$2" 2>&1
  [ "$(jp -n "$1" get pod "$2" -o jsonpath='{.status.phase}')" = Succeeded ]
}
blocked() { # blocked NAMESPACE NAME: the probe ran and netcheck reported the connection blocked
  probe "$@"
  [ $? = 1 ] && grep -q '^blocked' <(kubectl -n "$1" logs "$2" 2>&1)
}
netpod acme-prod server Always serve 8080
check "the server pod in acme-prod is Ready" kubectl -n acme-prod wait --for=condition=Ready pod/server --timeout=90s
server_ip=$(jp -n acme-prod get pod server -o jsonpath='{.status.podIP}')
check "a pod of acme-prod reaches the acme-prod server" probe acme-prod probe-same
check "a pod of acme-staging (same tenant) reaches it" probe acme-staging probe-sibling
check "a pod of globex-dev (another tenant) does not (5 s of attempts)" blocked globex-dev probe-other
# A Suspended tenant's pods are cut off; its quota then admits no new pod, so a client that runs
# from before polls the server, and its last lines tell.
netpod acme-staging poller Always poll "$server_ip" 8080
last_poll() { kubectl -n acme-staging logs poller --tail=1 2>/dev/null | grep -q "^$1"; }
check "a polling client in acme-staging connects while acme is Active" eventually 60 last_poll connected
kubectl patch tenant acme --type=merge -p '{"spec":{"state":"Suspended","stateReason":"e2e"}}' >/dev/null
check "once acme is Suspended, that client is cut off" eventually 60 last_poll blocked
kubectl patch tenant acme --type=merge -p '{"spec":{"state":"Active","stateReason":"e2e"}}' >/dev/null
kubectl wait --for=condition=Ready tenant/acme --timeout=60s >/dev/null || true

# --- the tenant NetworkPolicy's other rules, with real pods -------------------------------------
section "NetworkPolicies: ingress controllers, environments, DNS, the tenant's database server"
# A tenant on a Plan that admits an ingress namespace and keeps its environments apart, placed in
# a Region whose database server is the stack's PostgreSQL on the node IP (the operator provisions
# its schema there, so allow-same-tenant carries an egress rule to that address and port).
pw=$(python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).password)' "$TENANCY_PG_DSN")
kubectl -n $NS create secret generic e2e-pg-admin \
  --from-literal=uri="postgresql://tenancy_admin:$pw@$TENANCY_NODE_IP:$TENANCY_PG_PORT/postgres" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n $NS create secret generic e2e-pg-ca --from-file=ca.crt="$TENANCY_CA_FILE" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create namespace e2e-ingress >/dev/null 2>&1
kubectl create namespace e2e-outsider >/dev/null 2>&1
kubectl apply -f - >/dev/null <<EOF
apiVersion: tenancy.dev/v1alpha1
kind: Plan
metadata: {name: e2e-net}
spec:
  displayName: e2e network
  quotas: {cpu: "2", memory: 4Gi, storage: 10Gi, pods: 20, services: 5, connections: 10, eventsPerDay: 1000}
  network: {ingressNamespaces: [e2e-ingress], crossEnvironment: Deny}
---
apiVersion: tenancy.dev/v1alpha1
kind: Region
metadata: {name: e2e-db}
spec:
  available: true
  isolationModes: [shared]
  databaseServers:
    - name: pg-node
      host: "$TENANCY_NODE_IP"
      port: $TENANCY_PG_PORT
      sslMode: verify-full
      caSecretRef: {namespace: $NS, name: e2e-pg-ca}
      adminSecretRef: {namespace: $NS, name: e2e-pg-admin}
      serves: [shared]
---
apiVersion: tenancy.dev/v1alpha1
kind: Tenant
metadata: {name: e2enet}
spec:
  state: Active
  plan: e2e-net
  isolation: shared
  residency: {allowedRegions: [e2e-db]}
  environments: [prod, dev]
EOF
check "e2enet (its own database on the node's PostgreSQL) becomes Ready" \
  kubectl wait --for=condition=Ready tenant/e2enet --timeout=120s
check "e2enet's database is provisioned (DatabaseReady)" \
  kubectl wait --for=condition=DatabaseReady tenant/e2enet --timeout=60s
netpod e2enet-prod server Always serve 8080
check "the server pod in e2enet-prod is Ready" kubectl -n e2enet-prod wait --for=condition=Ready pod/server --timeout=90s
server_ip=$(jp -n e2enet-prod get pod server -o jsonpath='{.status.podIP}')
check "a pod of the Plan's ingress namespace (e2e-ingress) reaches it" probe e2e-ingress probe-ingress
check "a pod of another, unlisted namespace does not" blocked e2e-outsider probe-outsider
check "a pod of e2enet-dev does not (Plan network.crossEnvironment: Deny)" blocked e2enet-dev probe-dev
check "a pod of e2enet-prod still does" probe e2enet-prod probe-prod
# tcpprobe NAMESPACE NAME HOST PORT: the pod completes a TCP handshake with HOST:PORT. Egress is
# the client pod's own policy, which kube-router puts in place a moment after the pod starts (a
# connection in the first second goes through: seen here), so the probe waits 5 s, then tries 3 s.
tcpprobe() {
  netpod "$1" "$2" Never tcp "$3" "$4" 3000 5000
  eventually 60 finished "$1" "$2" || { echo "the probe pod did not finish"; return 2; }
  kubectl -n "$1" logs "$2" 2>&1
  [ "$(jp -n "$1" get pod "$2" -o jsonpath='{.status.phase}')" = Succeeded ]
}
tcpblocked() {
  tcpprobe "$@"
  [ $? = 1 ] && grep -q '^blocked' <(kubectl -n "$1" logs "$2" 2>&1)
}
check "a pod of e2enet-prod reaches its database server ($TENANCY_NODE_IP:$TENANCY_PG_PORT)" \
  tcpprobe e2enet-prod probe-db "$TENANCY_NODE_IP" "$TENANCY_PG_PORT"
api_port=${TENANCY_KUBE_SERVER##*:}
check "... but not another port of that host (the API server, $api_port)" \
  tcpblocked e2enet-prod probe-api "$TENANCY_NODE_IP" "$api_port"
# Cluster DNS: the rule admits port 53 of the kube-dns pods in kube-system only. A stand-in
# "kube-dns" pod there (the stack runs no DNS server) and an unlabelled twin.
dnspod() { # dnspod NAME LABELS
  kubectl -n kube-system delete pod "$1" --ignore-not-found --grace-period=0 --force >/dev/null 2>&1
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: kube-system, labels: {$2}}
spec:
  automountServiceAccountToken: false
  containers:
    - name: dns
      image: $NC_IMAGE
      imagePullPolicy: Never
      args: ["serve", "53"]
      securityContext: {runAsUser: 0}
EOF
}
dnspod e2e-dns "k8s-app: kube-dns"
dnspod e2e-notdns "app: e2e-notdns"
check "the stand-in DNS pods are Ready" kubectl -n kube-system wait --for=condition=Ready pod/e2e-dns pod/e2e-notdns --timeout=90s
dns_ip=$(jp -n kube-system get pod e2e-dns -o jsonpath='{.status.podIP}')
notdns_ip=$(jp -n kube-system get pod e2e-notdns -o jsonpath='{.status.podIP}')
check "a pod of e2enet-prod reaches cluster DNS (k8s-app=kube-dns in kube-system, port 53)" \
  tcpprobe e2enet-prod probe-dns "$dns_ip" 53
check "... but not port 53 of another kube-system pod" tcpblocked e2enet-prod probe-notdns "$notdns_ip" 53
kubectl -n kube-system delete pod e2e-dns e2e-notdns --grace-period=0 --force >/dev/null 2>&1
kubectl delete namespace e2e-ingress e2e-outsider --wait=false >/dev/null 2>&1

# --- upgrade ----------------------------------------------------------------------------------------
section "helm upgrade with a changed value, Tenant writes going on"
old_pods=$(jp -n $NS get pods -l app.kubernetes.io/name=tenancy-operator -o name | sort | tr '\n' ' ')
writes=0
refusals=0
: >"$WORK/writes.log"
"$HELM" upgrade $REL "$CHART" -n $NS -f "$WORK/values.yaml" --set operator.logLevel=debug \
  --wait --timeout 180s >"$WORK/upgrade.log" 2>&1 &
up=$!
while kill -0 $up 2>/dev/null; do
  writes=$((writes + 1))
  if ! kubectl annotate tenant acme --overwrite "e2e.tenancy.dev/tick=$writes" >>"$WORK/writes.log" 2>&1; then
    refusals=$((refusals + 1))
  fi
  sleep 0.2
done
wait $up
up_rc=$?
check "helm upgrade succeeds" test $up_rc = 0
[ $up_rc = 0 ] || sed 's/^/        /' "$WORK/upgrade.log"
new_pods=$(jp -n $NS get pods -l app.kubernetes.io/name=tenancy-operator -o name | sort | tr '\n' ' ')
check "the pods were replaced (rolled)" test "$old_pods" != "$new_pods"
check "the new pods run with --log-level=debug" bash -c \
  "kubectl -n $NS get deploy $REL -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q -- '--log-level=debug'"
if [ $refusals = 0 ] && [ $writes -gt 5 ]; then
  pass "$writes Tenant writes during the rollout, none refused"
else
  fail "$refusals of $writes Tenant writes during the rollout failed"
  grep -v annotated "$WORK/writes.log" | sort | uniq -c | head -n 5 | sed 's/^/        /'
fi
check "2 replicas Ready after the upgrade" eventually 60 ready_replicas

# --- uninstall --------------------------------------------------------------------------------------
section "helm uninstall"
if [ "${E2E_KEEP:-0}" = 1 ]; then
  log "E2E_KEEP=1: the release stays"
else
  check "helm uninstall succeeds" "$HELM" uninstall $REL -n $NS --wait --timeout 120s
  check "the tenants' namespaces stay" kubectl get namespace acme-prod acme-staging globex-dev
  ns_active() { [ "$(jp get namespace acme-prod -o jsonpath='{.status.phase}')" = Active ]; }
  check "... Active, not terminating" ns_active
  check "the tenants stay" kubectl get tenant acme globex
  check "the webhook registration is gone (tenants stay editable)" \
    kubectl annotate tenant acme --overwrite e2e.tenancy.dev/after-uninstall=1
  check "no operator pod is left" bash -c \
    "eventually() { local l=\$1 t=\$SECONDS; shift; until \"\$@\"; do [ \$((SECONDS - t)) -lt \$l ] || return 1; sleep 0.5; done; }; \
     eventually 60 bash -c '[ -z \"\$(kubectl -n $NS get pods -l app.kubernetes.io/name=tenancy-operator -o name)\" ]'"
fi

dump_on_failure
section "e2e: $passes passed, $fails failed in $((SECONDS - T0)) s"
exit $((fails > 0))
