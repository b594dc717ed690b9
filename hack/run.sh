#!/usr/bin/env bash
# run.sh - what `make run` does after building and starting the local stack: install the CRDs,
# then print how to use the cluster with kubectl.
set -euo pipefail
LOG_TAG=run
. "$(dirname "$0")/lib.sh"
STATE=${TENANCY_STATE_DIR:-$ROOT/.local}
# shellcheck disable=SC1091
. "$STATE/cluster.env"
"$HACK/crds.sh" apply
cat <<MSG

The local control plane and PostgreSQL are running.

  source $STATE/cluster.env     # KUBECONFIG, TENANCY_PG_DSN, and our kubectl first on PATH
  kubectl get namespaces
  psql "\$TENANCY_PG_DSN" -c 'select version()'

Stop everything with:  make cluster-down
MSG
