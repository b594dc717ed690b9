# readyz.sh - the `helm test` readyz check (templates/tests/readyz.yaml): every pod of the release's
# operator answers GET /readyz. POSIX sh + curl. Env: NAMESPACE, SELECTOR, PROBE_PORT; API_SERVER
# (default https://kubernetes.default.svc) and SA_DIR (the ServiceAccount token and CA) for runs
# outside a pod.
set -eu
sa=${SA_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}
api=${API_SERVER:-https://kubernetes.default.svc}
token=$(cat "$sa/token")
if ! list=$(curl -sS --fail-with-body --max-time 10 --cacert "$sa/ca.crt" -H "Authorization: Bearer $token" \
  -G --data-urlencode "labelSelector=$SELECTOR" "$api/api/v1/namespaces/$NAMESPACE/pods"); then
  echo "FAIL: listing the operator pods ($SELECTOR) in $NAMESPACE: $list"
  exit 1
fi
# (JSON without jq: one "podIP" member per line, compact or pretty-printed)
ips=$(printf '%s' "$list" | tr ',{}' '\n\n\n' | sed -n 's/^[[:space:]]*"podIP":[[:space:]]*"\([^"]*\)"[[:space:]]*$/\1/p')
n=0
for ip in $ips; do
  case $ip in *:*) host="[$ip]" ;; *) host=$ip ;; esac
  if ! out=$(curl -sS --fail-with-body --max-time 5 "http://$host:$PROBE_PORT/readyz" 2>&1); then
    echo "FAIL: pod $ip: GET /readyz: $out"
    exit 1
  fi
  echo "ok: pod $ip: GET /readyz: $out"
  n=$((n + 1))
done
if [ "$n" = 0 ]; then
  echo "FAIL: no operator pod with an IP in $NAMESPACE ($SELECTOR)"
  exit 1
fi
echo "PASS: $n operator pod(s) ready"
