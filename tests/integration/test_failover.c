/* test_failover.c - region failover end to end on three real PostgreSQL servers (issue 16,
 * docs/failover.md): a warm drill of 20 synthetic tenants measures RTO and RPO; a region
 * failover keeps every committed row, lets the tenant write in the standby, and refuses to move
 * (or even copy) a tenant whose residency forbids the standby; a cold failover restores the latest
 * snapshot; the CRD refuses a Region that is its own standby.
 *
 * Regions: A (server PG1, warm -> B) for the drill, D (PG1, warm -> B) for the region failover,
 * C (PG3, cold -> B) and B (PG2), the standby of all three. The primaries' admin URIs carry
 * sslrootcert pointing at a copy of the CA the standby server's postgres user can read (the
 * subscription connects from the standby server with that URI). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;
static char ra[64], rb[64], rc3[64], rd[64], ca_copy[128];

static void region_apply(const char *name, const char *server, const char *dsn_var, const char *port_var,
                         const char *failover_json) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "dsn=\"$%s\" && kubectl -n tenancy-system create secret generic pg-admin-%s "
      "--from-literal=uri=\"${dsn%%%%sslrootcert=*}sslrootcert=%s\" --dry-run=client -o yaml | kubectl apply "
      "-f - "
      ">/dev/null && kubectl -n tenancy-system create secret generic pg-ca-%s "
      "--from-file=ca.crt=\"$TENANCY_CA_FILE\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\",\"dedicated\"],%s"
      "\"databaseServers\":[{\"name\":\"%s\",\"host\":\"127.0.0.1\",\"port\":'\"$%s\"',\"sslMode\":\"verify-"
      "full\","
      "\"caSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-ca-%s\"},\"serves\":[\"shared\","
      "\"dedicated\"],"
      "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-admin-%s\"}}]}}' | kubectl apply "
      "-f -",
      dsn_var, name, ca_copy, name, name, failover_json, server, port_var, name, name);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static void start(void) {
  tn_test_install_api();
  tn_test_unique_name(ra, sizeof ra, "fo-a");
  tn_test_unique_name(rb, sizeof rb, "fo-b");
  tn_test_unique_name(rc3, sizeof rc3, "fo-c");
  tn_test_unique_name(rd, sizeof rd, "fo-d");
  snprintf(ca_copy, sizeof ca_copy, "/tmp/tnfo-ca-%d.crt", (int)getpid());
  char *out = NULL;
  int rc =
      tn_test_sh(&out,
                 "cp \"$TENANCY_CA_FILE\" %s && chmod 0644 %s && kubectl create namespace tenancy-system "
                 "--dry-run=client -o yaml | kubectl apply -f - >/dev/null",
                 ca_copy, ca_copy);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char fo[256];
  region_apply(rb, "pg-b", "TENANCY_PG2_DSN", "TENANCY_PG2_PORT", "");
  snprintf(fo, sizeof fo, "\"failover\":{\"standbyRegion\":\"%s\",\"mode\":\"warm\"},", rb);
  region_apply(ra, "pg-a", "TENANCY_PG_DSN", "TENANCY_PG_PORT", fo);
  region_apply(rd, "pg-d", "TENANCY_PG_DSN", "TENANCY_PG_PORT", fo);
  snprintf(fo, sizeof fo,
           "\"failover\":{\"standbyRegion\":\"%s\",\"mode\":\"cold\",\"snapshotIntervalSeconds\":10},", rb);
  region_apply(rc3, "pg-c", "TENANCY_PG3_DSN", "TENANCY_PG3_PORT", fo);
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void stop(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  tn_test_sh(NULL, "kubectl delete region %s %s %s %s --wait=false; rm -f %s", ra, rb, rc3, rd, ca_copy);
}

TestSuite(failover, .init = start, .fini = stop, .timeout = 400);

static void apply_tenant(const char *t, const char *allowed_json, const char *preferred) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":\"shared\",\"environments\":["
      "\"prod\"],"
      "\"residency\":{\"allowedRegions\":%s,\"preferredRegion\":\"%s\"}}}' | kubectl apply -f -",
      t, allowed_json, preferred);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static void wait_sh(double timeout, const char *what, const char *cmd) {
  char *out = NULL;
  int rc = tn_test_sh_until(timeout, &out, "%s", cmd);
  if (rc) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("%s: timed out (%s): %s", what, cmd, out ? out : "");
  }
  free(out);
}

static void wait_ready_in(const char *t, const char *region, double timeout) {
  char cmd[1024];
  snprintf(
      cmd, sizeof cmd,
      "test \"$(kubectl get tenant %s -o "
      "jsonpath='{.status.placement.region}/{.status.conditions[?(@.type==\"Ready\")].status}')\" = %s/True "
      "&& kubectl -n %s-prod get secret tenant-database >/dev/null",
      t, region, t);
  wait_sh(timeout, "tenant Ready", cmd);
}

static int psql_as(const char *t, const char *sql, char **out) {
  return tn_test_sh(
      out,
      "uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
      "PGCONNECT_TIMEOUT=5 psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qtAc \"%s\"",
      t, sql);
}

static char *jsonpath(const char *kind, const char *name, const char *path) {
  return tn_test_output("kubectl get %s %s -o jsonpath='%s'", kind, name, path);
}

/* The drill: 20 synthetic tenants, warm. Prints RTO and RPO; the targets are warm RTO < 60 s and
 * RPO < 5 s. */
Test(failover, drill_20_synthetic_tenants_warm) {
  char *out = NULL;
  double t0 = tn_test_now();
  int rc = tn_test_sh(&out, "'%s' failover-drill %s --synthetic 20 --timeout 240",
                      tn_test_env("TENANCY_TENANTCTL_BIN"), ra);
  printf("failover-drill (%.1f s in all):\n%s\n", tn_test_now() - t0, out ? out : "");
  fflush(stdout);
  if (rc != 0)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "failover-drill exited %d:\n%s", rc, out);
  const char *p = strstr(out, "\nRTO: "), *q = strstr(out, "\nRPO: "), *l = strstr(out, "\nrows lost: ");
  cr_assert(p && q && l, "no RTO/RPO lines:\n%s", out);
  double rto = atof(p + 6), rpo = atof(q + 6);
  cr_assert(strstr(out, "tenants moved: 20/20"), "%s", out);
  cr_assert_eq(atoll(l + 12), 0, "committed rows were lost:\n%s", out);
  cr_assert_lt(rto, 60.0, "warm RTO %.2f s is not under 60 s", rto);
  cr_assert_lt(rpo, 5.0, "warm RPO %.2f s is not under 5 s", rpo);
  free(out);
  /* The report is an Event on the Region and an audit row; the synthetic tenants are gone. */
  char cmd[512];
  snprintf(
      cmd, sizeof cmd,
      "kubectl -n default get events.events.k8s.io --field-selector reason=FailoverDrill,regarding.name=%s "
      "-o jsonpath='{.items[*].note}' | grep -q 'RTO'",
      ra);
  wait_sh(10, "the drill's Event", cmd);
  char *n = tn_test_output("psql \"$TENANCY_PG_DSN\" -qtAc \"SELECT count(*) FROM tenancy.audit_events WHERE "
                           "action = 'failover.drill' "
                           "AND target = 'region/%s' AND outcome = 'succeeded'\"",
                           ra);
  cr_assert_str_eq(n, "1", "audit rows of the drill: %s", n);
  free(n);
  n = tn_test_output(
      "psql \"$TENANCY_PG_DSN\" -qtAc \"SELECT count(*) FROM tenancy.audit_events WHERE action = "
      "'failover' AND outcome = 'succeeded' AND target LIKE 'tenant/fd-%%'\"");
  cr_assert_geq(atoi(n), 20, "per-tenant failover audit rows: %s", n);
  free(n);
  wait_sh(150, "synthetic tenants removed",
          "test -z \"$(kubectl get tenants -l tenancy.dev/failover-drill -o name)\"");
}

/* A region failover: the allowed tenant's committed rows all arrive, it writes in the standby
 * (sequence past the copied ids); the tenant whose residency forbids the standby is never copied
 * nor moved, and is reported. */
Test(failover, region_failover_keeps_rows_and_residency) {
  char keep[64], stay[64], allowed[160], only[96], *out = NULL;
  tn_test_unique_name(keep, sizeof keep, "fo-keep");
  tn_test_unique_name(stay, sizeof stay, "fo-stay");
  snprintf(allowed, sizeof allowed, "[\"%s\",\"%s\"]", rd, rb);
  snprintf(only, sizeof only, "[\"%s\"]", rd);
  apply_tenant(keep, allowed, rd);
  apply_tenant(stay, only, rd);
  wait_ready_in(keep, rd, 90);
  wait_ready_in(stay, rd, 90);
  int rc =
      psql_as(keep,
              "CREATE TABLE notes(id serial PRIMARY KEY, v text); INSERT INTO notes(v) SELECT 'n' || g FROM "
              "generate_series(1, 100) g; SELECT count(*) FROM notes",
              &out);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = psql_as(stay, "CREATE TABLE secrets(id int); INSERT INTO secrets VALUES (1)", &out);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "test \"$(kubectl get region %s -o "
           "jsonpath='{.status.failover.replicasReady}/{.status.failover.replicasTotal}')\" = 1/1 "
           "&& kubectl get region %s -o jsonpath='{.status.failover.tenantsNotAllowed}' | grep -q %s",
           rd, rd, stay);
  wait_sh(60, "replica ready", cmd);
  /* residency: nothing of the refused tenant exists on the standby's server */
  char *schema = jsonpath("tenant", stay, "{.status.database.schema}");
  char *n = tn_test_output(
      "psql \"$TENANCY_PG2_DSN\" -qtAc \"SELECT (SELECT count(*) FROM pg_roles WHERE rolname = '%s')\"",
      schema);
  cr_assert_str_eq(n, "0", "the refused tenant's role exists on the standby server");
  free(n);
  /* rows committed right before the failover */
  rc = psql_as(keep, "INSERT INTO notes(v) SELECT 'late' FROM generate_series(1, 10)", &out);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  double t0 = tn_test_now();
  rc = tn_test_sh(&out, "'%s' failover %s --wait --timeout 120", tn_test_env("TENANCY_TENANTCTL_BIN"), rd);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "tenantctl failover: %s", out);
  cr_assert(strstr(out, "1 tenant(s) moved") && strstr(out, "1 not allowed by residency"), "%s", out);
  free(out);
  wait_ready_in(keep, rb, 60);
  snprintf(
      cmd, sizeof cmd,
      "test \"$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.port}' | base64 -d)\" = "
      "\"$TENANCY_PG2_PORT\"",
      keep);
  wait_sh(60, "Secret switched to the standby", cmd);
  printf("region failover: tenant Ready in the standby %.1f s after `tenantctl failover`\n",
         tn_test_now() - t0);
  rc = psql_as(keep, "SELECT count(*) FROM notes", &out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "110\n", "rows in the standby: %s", out);
  free(out);
  rc = psql_as(keep, "INSERT INTO notes(v) VALUES ('after') RETURNING id", &out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "111\n", "the sequence was not set past the copied rows: %s", out);
  free(out);
  /* the refused tenant stays where its data is, and is reported */
  char *reg = jsonpath("tenant", stay, "{.status.placement.region}");
  cr_assert_str_eq(reg, rd);
  free(reg);
  rc = psql_as(stay, "SELECT count(*) FROM secrets", &out);
  cr_assert_eq(rc, 0, "the refused tenant lost its database: %s", out);
  free(out);
  snprintf(cmd, sizeof cmd,
           "kubectl -n default get events.events.k8s.io --field-selector "
           "reason=FailoverNotAllowed,regarding.name=%s "
           "-o name | grep -q .",
           stay);
  wait_sh(10, "FailoverNotAllowed Event", cmd);
  n = tn_test_output(
      "psql \"$TENANCY_PG_DSN\" -qtAc \"SELECT string_agg(outcome, ',' ORDER BY id) FROM "
      "tenancy.audit_events WHERE action = 'failover' AND target IN ('tenant/%s', 'tenant/%s')\"",
      keep, stay);
  cr_assert(strstr(n, "succeeded") && strstr(n, "refused"), "audit rows: %s", n);
  free(n);
  char *last = jsonpath("region", rd,
                        "{.status.failover.phase}/{.status.failover.lastFailover.tenantsMoved}/"
                        "{.status.failover.lastFailover.tenantsNotAllowed}");
  cr_assert_str_eq(last, "FailedOver/1/1");
  free(last);
  free(schema);
}

/* Cold: restored from the latest snapshot (every 10 s here). */
Test(failover, cold_failover_restores_latest_snapshot) {
  char t[64], allowed[160], *out = NULL;
  tn_test_unique_name(t, sizeof t, "fo-cold");
  snprintf(allowed, sizeof allowed, "[\"%s\",\"%s\"]", rc3, rb);
  apply_tenant(t, allowed, rc3);
  wait_ready_in(t, rc3, 90);
  int rc =
      psql_as(t,
              "CREATE TABLE items(id bigserial PRIMARY KEY, v text); INSERT INTO items(v) SELECT 'i' FROM "
              "generate_series(1, 20)",
              &out);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char *now = tn_test_output("date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ");
  char cmd[1024];
  snprintf(
      cmd, sizeof cmd,
      "s=$(kubectl get region %s -o jsonpath='{.status.failover.lastSnapshotTime}') && test -n \"$s\" && "
      "test \"$s\" \\> %s",
      rc3, now);
  wait_sh(60, "a snapshot after the writes", cmd);
  free(now);
  double t0 = tn_test_now();
  rc = tn_test_sh(&out, "'%s' failover %s --wait --timeout 120", tn_test_env("TENANCY_TENANTCTL_BIN"), rc3);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  wait_ready_in(t, rb, 120);
  snprintf(
      cmd, sizeof cmd,
      "test \"$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.port}' | base64 -d)\" = "
      "\"$TENANCY_PG2_PORT\"",
      t);
  wait_sh(60, "Secret switched", cmd);
  double rto = tn_test_now() - t0;
  printf("cold failover: RTO %.1f s (target < 600 s)\n", rto);
  cr_assert_lt(rto, 600.0);
  rc = psql_as(t, "SELECT count(*) FROM items", &out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "20\n");
  free(out);
  rc = psql_as(t, "INSERT INTO items(v) VALUES ('after') RETURNING id", &out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "21\n");
  free(out);
}

/* The CRD refuses a Region that is its own standby. */
Test(failover, crd_refuses_self_standby) {
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "fo-self");
  int rc = tn_test_sh(
      &out,
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{"
      "\"name\":\"%s\"},\"spec\":{\"available\":true,\"isolationModes\":[\"shared\"],\"failover\":{"
      "\"standbyRegion\":\"%s\"}}}' | kubectl apply -f -",
      name, name);
  cr_assert_neq(rc, 0, "a self-standby Region was accepted: %s", out);
  cr_assert(strstr(out, "must name another Region"), "%s", out);
  free(out);
  rc = tn_test_sh(
      &out,
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{"
      "\"name\":\"%s\"},\"spec\":{\"available\":true,\"isolationModes\":[\"shared\"],\"failover\":{"
      "\"standbyRegion\":\"x\",\"mode\":\"hot\"}}}' | kubectl apply -f -",
      name);
  cr_assert_neq(rc, 0, "mode hot was accepted: %s", out);
  free(out);
}
