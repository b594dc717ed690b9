#!/usr/bin/env bash
# run.sh - what `make run` does after building and starting the local stack: install the CRDs
# and the tenant roles, apply the samples, print how to use kubectl, then run the operator in
# the foreground with readable logs (Ctrl-C stops it; the stack stays up until make cluster-down).
set -euo pipefail
LOG_TAG=run
. "$(dirname "$0")/lib.sh"
STATE=${TENANCY_STATE_DIR:-$ROOT/.local}
# shellcheck disable=SC1091
. "$STATE/cluster.env"
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
