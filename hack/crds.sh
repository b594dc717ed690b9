#!/usr/bin/env bash
# crds.sh apply|delete - install or remove the CustomResourceDefinitions in crds/ on the cluster
# that KUBECONFIG points at, and wait until the API server serves them.
set -euo pipefail
LOG_TAG=crds
. "$(dirname "$0")/lib.sh"
shopt -s nullglob
files=("$ROOT"/crds/*.yaml)
[ ${#files[@]} -gt 0 ] || { log "crds/ holds no CRDs yet: nothing to ${1:-apply}"; exit 0; }
case ${1:-apply} in
  apply)
    kubectl apply --server-side --force-conflicts --field-manager=tenancy-operator-install -f "$ROOT/crds/" >&2
    kubectl wait --for=condition=Established --timeout=60s -f "$ROOT/crds/" >&2
    ;;
  delete) kubectl delete --ignore-not-found -f "$ROOT/crds/" >&2 ;;
  *) die "usage: crds.sh apply|delete" ;;
esac
