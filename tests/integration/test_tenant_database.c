/* test_tenant_database.c - tenant databases end to end through kubectl apply: the operator
 * provisions a schema (shared) or a database (dedicated) on the real PostgreSQL that the Region
 * lists, stores credentials in the tenant-database Secret, rotates them on demand, blocks login
 * while suspended, and drops everything on delete. Connections go through psql, as a tenant's
 * application would. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;
static char region[64];

static void start(void) {
  tn_test_install_api();
  tn_test_unique_name(region, sizeof region, "db-region");
  char *out = NULL;
  /* The admin Secret holds the superuser DSN of the local PostgreSQL, the CA Secret its CA. */
  int rc = tn_test_sh(
      &out,
      "kubectl create namespace tenancy-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "kubectl -n tenancy-system create secret generic pg-admin-%s --from-literal=uri=\"$TENANCY_PG_DSN\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "kubectl -n tenancy-system create secret generic pg-ca-%s --from-file=ca.crt=\"$TENANCY_CA_FILE\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\",\"dedicated\",\"hybrid\"],"
      "\"databaseServers\":[{"
      "\"name\":\"pg-local\",\"host\":\"127.0.0.1\",\"port\":'\"$TENANCY_PG_PORT\"',\"sslMode\":\"verify-"
      "full\","
      "\"caSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-ca-%s\"},"
      "\"serves\":[\"shared\",\"dedicated\",\"hybrid\"],"
      "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-admin-%s\"}}]}}' | kubectl apply "
      "-f -",
      region, region, region, region, region);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void stop(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  tn_test_sh(NULL, "kubectl delete region %s --wait=false", region);
}

TestSuite(tenant_database, .init = start, .fini = stop, .timeout = 300);

static void apply_tenant(const char *t, const char *state, const char *isolation) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"%s\",\"plan\":\"standard\",\"isolation\":\"%s\",\"environments\":[\"prod\"],"
      "\"residency\":{\"allowedRegions\":[\"%s\"]}}}' | kubectl apply -f -",
      t, state, isolation, region);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static void wait_condition(const char *t, const char *type, const char *status, double timeout) {
  char *out = NULL;
  int rc = tn_test_sh_until(
      timeout, &out,
      "test \"$(kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"%s\")].status}')\" = %s",
      t, type, status);
  if (rc) {
    free(out);
    tn_test_sh(&out, "kubectl get tenant %s -o jsonpath='{.status.conditions}'", t);
    tn_test_operator_dump_log(&op);
    cr_assert_fail("tenant %s: %s never became %s; conditions: %s", t, type, status, out);
  }
  free(out);
}

/* psql as the tenant, with the Secret's uri (plus the CA file path, as an application mounting
 * ca.crt would set it). Returns psql's exit code; *out gets its output. */
static int psql_as(const char *t, const char *sql, char **out) {
  return tn_test_sh(
      out,
      "uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
      "PGCONNECT_TIMEOUT=5 psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qtAc \"%s\"",
      t, sql);
}

static int psql_admin(const char *sql, char **out) {
  return tn_test_sh(out, "PGCONNECT_TIMEOUT=5 psql \"$TENANCY_PG_DSN\" -v ON_ERROR_STOP=1 -qtAc \"%s\"", sql);
}

Test(tenant_database, shared_schema_end_to_end) {
  char t[64], other[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-dbs");
  tn_test_unique_name(other, sizeof other, "tn-dbo");
  apply_tenant(t, "Active", "shared");
  apply_tenant(other, "Active", "shared");
  wait_condition(t, "DatabaseReady", "True", 90);
  wait_condition(other, "DatabaseReady", "True", 90);
  wait_condition(t, "Ready", "True", 30);

  /* The Secret has every key of the contract. */
  int rc = tn_test_sh(&out,
                      "kubectl -n %s-prod get secret tenant-database -o go-template='{{range $k, $v := "
                      ".data}}{{$k}} {{end}}'",
                      t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "ca.crt database host password port sslmode uri user ");
  free(out);
  char *schema = NULL;
  tn_test_sh(&schema, "kubectl get tenant %s -o jsonpath='{.status.database.schema}'", t);
  cr_assert(strncmp(schema, "tn_", 3) == 0, "status.database.schema = '%s'", schema);

  /* Its own schema works; public and the other tenant's schema do not. */
  char sql[512];
  snprintf(sql, sizeof sql,
           "CREATE TABLE %s.notes(x int); INSERT INTO %s.notes VALUES (1); SELECT count(*) FROM %s.notes",
           schema, schema, schema);
  rc = psql_as(t, sql, &out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "1\n");
  free(out);
  rc = psql_as(t, "CREATE TABLE public.leak(x int)", &out);
  cr_assert_neq(rc, 0, "a tenant created a table in public");
  cr_assert(strstr(out, "permission denied for schema public") != NULL, "%s", out);
  free(out);
  char *other_schema = NULL;
  tn_test_sh(&other_schema, "kubectl get tenant %s -o jsonpath='{.status.database.schema}'", other);
  snprintf(sql, sizeof sql, "SELECT * FROM %s.notes", other_schema);
  rc = psql_as(t, sql, &out);
  cr_assert_neq(rc, 0);
  cr_assert(strstr(out, "permission denied for schema") != NULL, "%s", out);
  free(out);
  snprintf(sql, sizeof sql, "CREATE TABLE %s.intrude(x int)", other_schema);
  rc = psql_as(t, sql, &out);
  cr_assert_neq(rc, 0);
  cr_assert(strstr(out, "permission denied for schema") != NULL, "%s", out);
  free(out);
  free(other_schema);

  /* Delete drops the role and the schema. */
  char *role = NULL;
  tn_test_sh(&role, "kubectl get tenant %s -o jsonpath='{.status.database.role}'", t);
  cr_assert_eq(tn_test_sh(&out, "kubectl delete tenant %s --wait --timeout=120s", t), 0, "%s", out);
  free(out);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_roles WHERE rolname = '%s'", role);
  cr_assert_eq(psql_admin(sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "role %s survived the delete", role);
  free(out);
  free(role);
  free(schema);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", other);
}

Test(tenant_database, dedicated_rotation_and_suspension) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-dbd");
  apply_tenant(t, "Active", "dedicated");
  wait_condition(t, "DatabaseReady", "True", 90);
  cr_assert_eq(
      psql_as(t, "CREATE TABLE kept(x int); INSERT INTO kept VALUES (42); SELECT current_database()", &out),
      0, "%s", out);
  free(out);
  /* No other tenant role (nor PUBLIC) may connect to it. */
  char *db = NULL;
  tn_test_sh(&db, "kubectl get tenant %s -o jsonpath='{.status.database.database}'", t);
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT has_database_privilege('public', '%s', 'CONNECT')", db);
  cr_assert_eq(psql_admin(sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "f\n");
  free(out);

  /* Rotation on demand: a new version, the old password refused, the new one works. */
  char *old_uri = NULL, *version = NULL;
  tn_test_sh(&old_uri, "kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d",
             t);
  tn_test_sh(&version, "kubectl get tenant %s -o jsonpath='{.status.database.credentialsVersion}'", t);
  cr_assert_eq(
      tn_test_sh(&out, "kubectl annotate tenant %s tenancy.dev/rotate-credentials=now-1 --overwrite", t), 0,
      "%s", out);
  free(out);
  int rc = tn_test_sh_until(
      60, &out,
      "test \"$(kubectl get tenant %s -o jsonpath='{.status.database.credentialsVersion}')\" -gt %s", t,
      version);
  cr_assert_eq(rc, 0, "credentialsVersion did not increase from %s", version);
  free(out);
  rc = tn_test_sh(&out, "PGCONNECT_TIMEOUT=5 psql \"%s&sslrootcert=$TENANCY_CA_FILE\" -tAc 'select 1'",
                  old_uri);
  cr_assert_neq(rc, 0, "the old password still works");
  cr_assert(strstr(out, "password authentication failed") != NULL, "%s", out);
  free(out);
  rc = psql_as(t, "SELECT x FROM kept", &out);
  cr_assert_eq(rc, 0, "the new password does not work: %s", out);
  cr_assert_str_eq(out, "42\n");
  free(out);
  free(old_uri);
  free(version);

  /* Suspend: an open session is ended and login is refused; resume restores it. */
  char *uri = NULL;
  tn_test_sh(&uri, "kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d", t);
  char pidfile[64];
  snprintf(pidfile, sizeof pidfile, "/tmp/tn-session-%d", (int)getpid());
  tn_test_sh(
      NULL,
      "(psql \"%s&sslrootcert=$TENANCY_CA_FILE\" -tAc 'select pg_sleep(120)' >/dev/null 2>&1 & echo $! > %s)",
      uri, pidfile);
  sleep(1);
  cr_assert_eq(
      tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Suspended\"}}'", t),
      0, "%s", out);
  free(out);
  rc = tn_test_sh_until(60, &out, "! kill -0 $(cat %s) 2>/dev/null", pidfile);
  cr_assert_eq(rc, 0, "the open session survived the suspension");
  free(out);
  rc = tn_test_sh_until(30, &out,
                        "PGCONNECT_TIMEOUT=5 psql \"%s&sslrootcert=$TENANCY_CA_FILE\" -tAc 'select 1' 2>&1 | "
                        "grep -q 'not permitted to log in'",
                        uri);
  cr_assert_eq(rc, 0, "login was not refused while suspended");
  free(out);
  cr_assert_eq(
      tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Active\"}}'", t), 0,
      "%s", out);
  free(out);
  rc = tn_test_sh_until(
      60, &out, "PGCONNECT_TIMEOUT=5 psql \"%s&sslrootcert=$TENANCY_CA_FILE\" -tAc 'select x from kept'",
      uri);
  cr_assert_eq(rc, 0, "login did not come back on resume: %s", out);
  cr_assert_str_eq(out, "42\n");
  free(out);
  free(uri);
  unlink(pidfile);

  cr_assert_eq(tn_test_sh(&out, "kubectl delete tenant %s --wait --timeout=120s", t), 0, "%s", out);
  free(out);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_database WHERE datname = '%s'", db);
  cr_assert_eq(psql_admin(sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "database %s survived the delete", db);
  free(out);
  free(db);
}

/* PostgreSQL stopped: DatabaseReady turns False with the reason, nothing else of the tenant is
 * undone, and after the restart it converges with exactly one role and schema. */
Test(tenant_database, postgres_outage_is_reported_and_recovered) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-dbout");
  apply_tenant(t, "Active", "shared");
  wait_condition(t, "DatabaseReady", "True", 90);
  char *role = NULL;
  tn_test_sh(&role, "kubectl get tenant %s -o jsonpath='{.status.database.role}'", t);

  cr_assert_eq(tn_test_pg_ctl("stop"), 0);
  /* Any change brings the tenant back to the reconcile (an annotation: no lifecycle step, so the
   * audit trail, down too, is not needed). */
  tn_test_sh(NULL, "kubectl annotate tenant %s example.com/poke=1 --overwrite", t);
  int rc = tn_test_sh_until(60, &out,
                            "test \"$(kubectl get tenant %s -o "
                            "jsonpath='{.status.conditions[?(@.type==\"DatabaseReady\")].reason}')\" = "
                            "DatabaseUnavailable",
                            t);
  char *ns = NULL;
  tn_test_sh(&ns, "kubectl get namespace %s-prod -o jsonpath='{.status.phase}'", t);
  int restarted = tn_test_pg_ctl("start");
  cr_assert_eq(rc, 0, "DatabaseReady did not report the outage");
  free(out);
  cr_assert_str_eq(ns, "Active", "the outage undid the tenant's namespace");
  free(ns);
  cr_assert_eq(restarted, 0);

  wait_condition(t, "DatabaseReady", "True", 120);
  char sql[256];
  /* Exactly one role carries this tenant's marker, and it is the one in status. */
  snprintf(sql, sizeof sql,
           "SELECT string_agg(r.rolname, ',') FROM pg_roles r JOIN pg_shdescription d ON d.objoid = r.oid "
           "WHERE d.description = 'tenancy-operator tenant %s'",
           t);
  cr_assert_eq(psql_admin(sql, &out), 0, "%s", out);
  char want[128];
  snprintf(want, sizeof want, "%s\n", role);
  cr_assert_str_eq(out, want);
  free(out);
  cr_assert_eq(psql_as(t, "SELECT 1", &out), 0, "the tenant cannot log in after recovery: %s", out);
  free(out);
  free(role);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

/* A Region may name only Secrets of the operator's namespace (tenancy-system here): a Region
 * pointing the operator at a Secret elsewhere (here a working admin DSN in default) is refused
 * before the Secret is read, with the way out in the message, and nothing is provisioned. */
static char foreign_region[64], foreign_secret[64], foreign_tenant[64];

/* Even when the test fails: a Region left behind would attract other suites' tenants. */
static void foreign_cleanup(void) {
  tn_test_sh(NULL,
             "kubectl delete tenant %s --wait=false; kubectl delete region %s --wait=false; "
             "kubectl -n default delete secret %s --wait=false",
             foreign_tenant, foreign_region, foreign_secret);
}

Test(tenant_database, region_secret_outside_the_operator_namespace_is_refused, .fini = foreign_cleanup) {
  char *r2 = foreign_region, *sec = foreign_secret, *t = foreign_tenant, *out = NULL;
  tn_test_unique_name(r2, sizeof foreign_region, "db-foreign");
  tn_test_unique_name(sec, sizeof foreign_secret, "pg-admin-foreign");
  tn_test_unique_name(t, sizeof foreign_tenant, "tn-dbf");
  int rc = tn_test_sh(
      &out,
      "kubectl -n default create secret generic %s --from-literal=uri=\"$TENANCY_PG_DSN\" >/dev/null && "
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\"],\"databaseServers\":[{"
      "\"name\":\"pg-foreign\",\"host\":\"127.0.0.1\",\"port\":'\"$TENANCY_PG_PORT\"',\"sslMode\":"
      "\"require\","
      "\"serves\":[\"shared\"],\"adminSecretRef\":{\"namespace\":\"default\",\"name\":\"%s\"}}]}}' | "
      "kubectl apply -f - && printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":\"shared\",\"environments\":["
      "\"prod\"],"
      "\"residency\":{\"allowedRegions\":[\"%s\"]}}}' | kubectl apply -f -",
      sec, r2, sec, t, r2);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  wait_condition(t, "DatabaseReady", "False", 60);
  char *reason = tn_test_output(
      "kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"DatabaseReady\")].reason}'", t);
  char *msg = tn_test_output(
      "kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"DatabaseReady\")].message}'", t);
  char *db = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.database}'", t);
  char *secrets =
      tn_test_output("kubectl -n %s-prod get secret tenant-database --ignore-not-found -o name", t);
  cr_assert_str_eq(reason, "DatabaseServerConfig");
  cr_assert(strstr(msg, "adminSecretRef names Secret default/") &&
                strstr(msg, "--region-secret-namespaces=default"),
            "the message must name the reference and the way out: %s", msg);
  cr_assert(!strstr(msg, "postgresql://"), "the message leaks the Secret: %s", msg);
  cr_assert(strcmp(db, "") == 0 || strstr(db, "\"schema\"") == NULL, "a database was provisioned: %s", db);
  cr_assert_str_eq(secrets, "", "credentials were written");
  free(reason);
  free(msg);
  free(db);
  free(secrets);
}
