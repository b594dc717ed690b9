#!/bin/bash
# run.sh SCRIPT SCHEMA N: the audit rows of N new tenants (6 rows, 4 outbox events each) written
# with pgbench (one connection, -M extended as libpq's PQexecParams) into audit schema SCHEMA
# (create it first: tenantctl audit init --schema SCHEMA), and the CPU-seconds of the stack's
# PostgreSQL (the postmaster of $TENANCY_PG_DATA and its children) they cost. Source
# .local/cluster.env first. one_row_calls.sql: a call per row (audit_append, audit_append_event);
# batched_calls.sql: 3 calls of audit_append_rows (schema 6). docs/benchmarks.md, session 25.
set -eu
script=$1 schema=$2 n=$3
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
sed "s/:S\./$schema./g" "$script" >"$tmp"
pg_cpu() {
  local pm tot c v
  pm=$(head -1 "$TENANCY_PG_DATA/postmaster.pid")
  tot=$(awk '{print $14+$15+$16+$17}' /proc/$pm/stat)
  for c in $(cat /proc/$pm/task/*/children); do
    v=$(awk '{print $14+$15}' /proc/$c/stat 2>/dev/null || echo 0)
    tot=$((tot + ${v:-0}))
  done
  echo "scale=3; $tot / $(getconf CLK_TCK)" | bc
}
c0=$(pg_cpu)
/usr/lib/postgresql/15/bin/pgbench -n -M extended -c 1 -t "$n" -f "$tmp" "$TENANCY_PG_DSN" | grep -E "processed|latency average"
sleep 1 # the backend is reaped by the postmaster
c1=$(pg_cpu)
echo "$script into $schema: PostgreSQL $(echo "scale=3; ($c1 - $c0) * 1000 / $n" | bc) CPU ms per tenant ($n tenants); load $(cut -d' ' -f1-3 /proc/loadavg)"
