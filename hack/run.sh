#!/usr/bin/env bash
# run.sh - what `make run` does after building and starting the local stack: install the CRDs
# and the tenant roles, apply the samples, print how to use kubectl, then run the operator in
# the foreground with readable logs (Ctrl-C stops it; the stack stays up until make cluster-down).
# TENANCY_IN_CLUSTER=1 (make run IN_CLUSTER=1, on a stack with a node): build the image, install
# the chart with it, and follow the Pods' logs instead.
set -euo pipefail
LOG_TAG=run
. "$(dirname "$0")/lib.sh"
STATE=${TENANCY_STATE_DIR:-$ROOT/.local}
# shellcheck disable=SC1091
. "$STATE/cluster.env"

if [ "${TENANCY_IN_CLUSTER:-0}" = 1 ]; then
  # make run IN_CLUSTER=1: the operator as Pods on the stack's node, installed with the chart
  # from the image built offline, as users run it.
  [ "${TENANCY_NODE:-0}" = 1 ] || die "the stack in $STATE has no node: make cluster-down, then make run IN_CLUSTER=1"
  NS=tenancy-system
  archive=$("$HACK/image.sh" archive | tail -n 1)
  "$HACK/node-load.sh" "$archive"
  HELM=$("$HACK/build-helm.sh" | tail -n 1)
  kubectl create namespace $NS --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  node_db_secret $NS
  log "helm upgrade --install tenancy-operator charts/tenancy-operator -n $NS (2 replicas)"
  "$HELM" upgrade --install tenancy-operator "$ROOT/charts/tenancy-operator" -n $NS \
    -f "$HACK/in-cluster-values.yaml" --wait --timeout 180s >&2
  kubectl apply -f "$ROOT/manifests/samples/" >&2
  cat >&2 <<MSG

The operator runs in-cluster: two Pods of the Deployment tenancy-operator in $NS (one leads,
the other stands by), on the node $TENANCY_NODE_NAME, with its webhook behind its Service and
the samples applied. In another terminal:

  source $STATE/cluster.env     # KUBECONFIG, TENANCY_PG_DSN, and our kubectl first on PATH
  kubectl -n $NS get pods,svc,lease -o wide
  kubectl get tenants           # STATE, PLAN, REGION, READY, AGE
  kubectl get networkpolicies -A
  $HELM upgrade tenancy-operator charts/tenancy-operator -n $NS -f hack/in-cluster-values.yaml --set operator.logLevel=debug
  $HELM uninstall tenancy-operator -n $NS

Following the operator's logs now (Ctrl-C stops following; the Pods keep running until
make cluster-down).

MSG
  exec kubectl -n $NS logs -f -l app.kubernetes.io/name=tenancy-operator --prefix --max-log-requests=4 --tail=20
fi

OPERATOR=${TENANCY_OPERATOR_BIN:-$ROOT/build/bin/tenancy-operator}
[ -x "$OPERATOR" ] || die "$OPERATOR is missing: run make build"

"$HACK/crds.sh" apply
kubectl apply -f "$ROOT/manifests/deploy/00-namespace.yaml" -f "$ROOT/manifests/deploy/20-tenant-roles.yaml" >&2
kubectl apply -f "$ROOT/manifests/samples/" >&2

MP=$(freeport)
HP=$(freeport)
cat >&2 <<MSG

The local control plane and PostgreSQL are running, with the CRDs and the samples applied.
In another terminal:

  source $STATE/cluster.env     # KUBECONFIG, TENANCY_PG_DSN, and our kubectl first on PATH
  kubectl get tenants           # STATE, PLAN, REGION, READY, AGE
  kubectl get namespaces -l app.kubernetes.io/managed-by=tenancy-operator
  kubectl describe tenant acme
  curl -s http://127.0.0.1:$MP/metrics | grep controller_runtime_reconcile_total
  curl -s http://127.0.0.1:$HP/readyz
  $ROOT/build/bin/tenantctl audit list --tenant acme   # the audit trail

Starting the operator now (Ctrl-C stops it; make cluster-down stops the stack).

MSG
WP=$(freeport)
# The admission webhook is registered with failurePolicy Fail for tenants: take the registration
# away again when the operator stops, so tenants stay editable without it.
trap 'kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found >/dev/null 2>&1' EXIT
"$OPERATOR" --log-format=text --metrics-bind-address="127.0.0.1:$MP" \
  --health-probe-bind-address="127.0.0.1:$HP" --webhook-bind-address="127.0.0.1:$WP" --leader-elect=false &
OP=$!
trap 'kill -TERM $OP 2>/dev/null' INT TERM
wait $OP || true
wait $OP 2>/dev/null || true
