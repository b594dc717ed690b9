# tenant-dry-run.sh - the `helm test` Tenant check (templates/tests/tenant-dry-run.yaml): a
# server-side dry-run create (dryRun=All) of a Draft Tenant is accepted by the CRD schema, the
# admission webhook and the admission policies; nothing is stored. POSIX sh + curl. Env: TENANT,
# PLAN; API_SERVER (default https://kubernetes.default.svc) and SA_DIR for runs outside a pod.
set -eu
sa=${SA_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}
api=${API_SERVER:-https://kubernetes.default.svc}
token=$(cat "$sa/token")
body=$(printf '{"apiVersion":"tenancy.dev/v1alpha1","kind":"Tenant","metadata":{"name":"%s"},"spec":{"displayName":"helm test","state":"Draft","plan":"%s"}}' "$TENANT" "$PLAN")
out=$(curl -sS --max-time 30 -w '\n%{http_code}' --cacert "$sa/ca.crt" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -X POST --data "$body" \
  "$api/apis/tenancy.dev/v1alpha1/tenants?dryRun=All&fieldManager=helm-test")
code=$(printf '%s\n' "$out" | tail -n 1)
resp=$(printf '%s\n' "$out" | sed '$d')
if [ "$code" != 201 ]; then
  echo "FAIL: dry-run create of Tenant $TENANT: HTTP $code: $resp"
  exit 1
fi
case $resp in
  *'"kind":"Tenant"'* | *'"kind": "Tenant"'*) ;;
  *) echo "FAIL: dry-run create of Tenant $TENANT answered no Tenant: $resp"; exit 1 ;;
esac
echo "PASS: the API server accepts Tenant $TENANT (dry run, not stored)"
