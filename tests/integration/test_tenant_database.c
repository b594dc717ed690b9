/* test_tenant_database.c - tenant databases end to end through kubectl apply: the operator
 * provisions a schema (shared) or a database (dedicated) on the real PostgreSQL that the Region
 * lists, stores credentials in the tenant-database Secret, rotates them on demand, blocks login
 * while suspended, and drops everything on delete. Connections go through psql, as a tenant's
 * application would. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_cluster.h"
#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;
static char region[64];

static void start(void) {
  tn_test_install_api();
  tn_test_unique_name(region, sizeof region, "db-region");
  /* The admin Secret holds the superuser DSN of the local PostgreSQL, the CA Secret its CA. */
  tn_test_apply_region(region, "pg-local");
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", NULL});
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

Test(tenant_database, shared_schema_end_to_end) {
  char t[64], other[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-dbs");
  tn_test_unique_name(other, sizeof other, "tn-dbo");
  apply_tenant(t, "Active", "shared");
  apply_tenant(other, "Active", "shared");
  tn_test_wait_condition(&op, t, "DatabaseReady", "True", 90);
  tn_test_wait_condition(&op, other, "DatabaseReady", "True", 90);
  tn_test_wait_condition(&op, t, "Ready", "True", 30);

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
  rc = tn_test_psql_as(t, sql, &out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "1\n");
  free(out);
  rc = tn_test_psql_as(t, "CREATE TABLE public.leak(x int)", &out);
  cr_assert_neq(rc, 0, "a tenant created a table in public");
  cr_assert(strstr(out, "permission denied for schema public") != NULL, "%s", out);
  free(out);
  char *other_schema = NULL;
  tn_test_sh(&other_schema, "kubectl get tenant %s -o jsonpath='{.status.database.schema}'", other);
  snprintf(sql, sizeof sql, "SELECT * FROM %s.notes", other_schema);
  rc = tn_test_psql_as(t, sql, &out);
  cr_assert_neq(rc, 0);
  cr_assert(strstr(out, "permission denied for schema") != NULL, "%s", out);
  free(out);
  snprintf(sql, sizeof sql, "CREATE TABLE %s.intrude(x int)", other_schema);
  rc = tn_test_psql_as(t, sql, &out);
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
  cr_assert_eq(tn_test_psql_admin(NULL, sql, &out), 0, "%s", out);
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
  tn_test_wait_condition(&op, t, "DatabaseReady", "True", 90);
  cr_assert_eq(
      tn_test_psql_as(t, "CREATE TABLE kept(x int); INSERT INTO kept VALUES (42); SELECT current_database()",
                      &out),
      0, "%s", out);
  free(out);
  /* No other tenant role (nor PUBLIC) may connect to it. */
  char *db = NULL;
  tn_test_sh(&db, "kubectl get tenant %s -o jsonpath='{.status.database.database}'", t);
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT has_database_privilege('public', '%s', 'CONNECT')", db);
  cr_assert_eq(tn_test_psql_admin(NULL, sql, &out), 0, "%s", out);
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
  rc = tn_test_psql_as(t, "SELECT x FROM kept", &out);
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
  cr_assert_eq(tn_test_psql_admin(NULL, sql, &out), 0, "%s", out);
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
  tn_test_wait_condition(&op, t, "DatabaseReady", "True", 90);
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

  tn_test_wait_condition(&op, t, "DatabaseReady", "True", 120);
  char sql[256];
  /* Exactly one role carries this tenant's marker, and it is the one in status. */
  snprintf(sql, sizeof sql,
           "SELECT string_agg(r.rolname, ',') FROM pg_roles r JOIN pg_shdescription d ON d.objoid = r.oid "
           "WHERE d.description = 'tenancy-operator tenant %s'",
           t);
  cr_assert_eq(tn_test_psql_admin(NULL, sql, &out), 0, "%s", out);
  char want[128];
  snprintf(want, sizeof want, "%s\n", role);
  cr_assert_str_eq(out, want);
  free(out);
  cr_assert_eq(tn_test_psql_as(t, "SELECT 1", &out), 0, "the tenant cannot log in after recovery: %s", out);
  free(out);
  free(role);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

/* ---- credentials: the canonical Secret and the attacks on the copies ------------------------------ */

/* A tenant whose group <t>-admins is bound to tenant-admin in its namespaces (the shipped role). */
static void apply_tenant_with_admins(const char *t) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":\"shared\",\"environments\":["
      "\"prod\"],"
      "\"residency\":{\"allowedRegions\":[\"%s\"]},"
      "\"identity\":{\"groupBindings\":[{\"group\":\"%s-admins\",\"role\":\"tenant-admin\"}]}}}' | kubectl "
      "apply -f -",
      t, region, t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

/* kubectl as a member of tenant t's admin group (impersonation: only what the shipped
 * tenancy-tenant-admin role allows in t's namespaces). */
#define AS_ADMIN_OF "--as=mallory --as-group=%s-admins --as-group=system:authenticated"

/* The copy's value of key in t's prod namespace (decoded). */
static char *copy_value(const char *t, const char *key) {
  return tn_test_output("kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.%s}' | base64 -d",
                        t, key);
}

static char *status_field(const char *t, const char *path) {
  return tn_test_output("kubectl get tenant %s -o jsonpath='{.status.database.%s}'", t, path);
}

/* psql as tenant t's role with the given password; returns psql's exit code. */
static int psql_with_password(const char *t, const char *password, char **out) {
  char *role = status_field(t, "role"), *db = status_field(t, "database");
  int rc = tn_test_sh(out,
                      "PGCONNECT_TIMEOUT=5 PGPASSWORD='%s' psql \"host=127.0.0.1 port=$TENANCY_PG_PORT "
                      "user=%s dbname=%s sslmode=verify-full sslrootcert=$TENANCY_CA_FILE\" -tAc 'select 1'",
                      password, role, db);
  free(role);
  free(db);
  return rc;
}

/* Whether a Warning event with this reason is recorded on the Tenant. */
#define EVENT_EXISTS                                                                                         \
  "kubectl get events.events.k8s.io -n default -o "                                                          \
  "jsonpath='{range .items[?(@.regarding.name==\"%s\")]}{.type}/{.reason}{\"\\n\"}{end}' | grep -qx "        \
  "Warning/ForeignCredentialIgnored"

static void wait_copy(const char *t) {
  char *out = NULL;
  int rc = tn_test_sh_until(60, &out, "kubectl -n %s-prod get secret tenant-database", t);
  cr_assert_eq(rc, 0, "no tenant-database Secret in %s-prod: %s", t, out);
  free(out);
}

/* Tenant A's admin relabels A's Secret to claim tenant B, with a huge version, a password of its
 * choosing and even an owner reference to B: B's password, Secret and role stay as they were,
 * the planted password cannot log in as B, the attempt is a Warning event on B, and A's own copy
 * is put back. */
Test(tenant_database, a_tenant_admin_cannot_plant_credentials_for_another_tenant) {
  char a[64], b[64], *out = NULL;
  tn_test_unique_name(a, sizeof a, "tn-plant-a");
  tn_test_unique_name(b, sizeof b, "tn-plant-b");
  apply_tenant_with_admins(a);
  apply_tenant_with_admins(b);
  tn_test_wait_condition(&op, a, "DatabaseReady", "True", 90);
  tn_test_wait_condition(&op, b, "DatabaseReady", "True", 90);
  wait_copy(a);
  wait_copy(b);
  char *b_password = copy_value(b, "password"), *b_version = status_field(b, "credentialsVersion");
  char *a_password = copy_value(a, "password");
  char *b_uid = tn_test_output("kubectl get tenant %s -o jsonpath='{.metadata.uid}'", b);
  const char *planted = "planted-by-a-0123456789";

  /* The attacker may do this with the shipped role (the test fails loudly if it may not). */
  int rc = tn_test_sh(
      &out,
      "kubectl " AS_ADMIN_OF " -n %s-prod patch secret tenant-database --type=merge -p "
      "'{\"metadata\":{\"labels\":{\"tenancy.dev/tenant\":\"%s\"},"
      "\"annotations\":{\"tenancy.dev/credentials-version\":\"999999999999999999\"},"
      "\"ownerReferences\":[{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"name\":\"%s\","
      "\"uid\":\"%s\",\"controller\":true}]},"
      "\"data\":{\"password\":\"'$(printf %%s '%s' | base64 -w0)'\"}}'",
      a, a, b, b, b_uid, planted);
  cr_assert_eq(rc, 0, "the tenant admin could not edit its own Secret: %s", out);
  free(out);
  /* And a second claim, a fresh Secret under another name in its namespace. */
  rc = tn_test_sh(&out,
                  "printf '%%s' '{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":"
                  "\"tenant-database-claim\",\"labels\":{\"tenancy.dev/tenant\":\"%s\","
                  "\"app.kubernetes.io/managed-by\":\"tenancy-operator\"},\"annotations\":{"
                  "\"tenancy.dev/credentials-version\":\"999999999999999999\"}},"
                  "\"stringData\":{\"password\":\"%s\"}}' | kubectl " AS_ADMIN_OF " -n %s-prod create -f -",
                  b, planted, a, a);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  tn_test_sh(NULL, "kubectl annotate tenant %s example.com/poke=1 --overwrite", b);

  /* Until the operator has acted on it (the event), or B's Secret changed (the hole). */
  rc = tn_test_sh_until(60, &out,
                        "(" EVENT_EXISTS ") || test \"$(kubectl -n %s-prod get secret tenant-database -o "
                        "jsonpath='{.data.password}' | base64 -d)\" != '%s'",
                        b, b, b_password);
  free(out);
  sleep(3); /* what the operator would do next, let it */
  char *b_now = copy_value(b, "password"), *b_version_now = status_field(b, "credentialsVersion");
  cr_assert_str_eq(b_now, b_password, "B's password was replaced (planted: %s)",
                   strcmp(b_now, planted) == 0 ? "yes" : "no");
  cr_assert_str_eq(b_version_now, b_version, "B's credentials version changed");
  rc = psql_with_password(b, planted, &out);
  cr_assert_neq(rc, 0, "the planted password logs in as tenant B");
  cr_assert(strstr(out, "password authentication failed") != NULL, "%s", out);
  free(out);
  cr_assert_eq(tn_test_psql_as(b, "SELECT 1", &out), 0, "B cannot log in with its own Secret: %s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&out, EVENT_EXISTS, b), 0, "no Warning ForeignCredentialIgnored event on %s", b);
  free(out);
  /* The event says which Secret, never the password. */
  char *notes = tn_test_output(
      "kubectl get events.events.k8s.io -n default -o jsonpath='{range .items[?(@.regarding.name==\"%s\")]}"
      "{.note}{\"\\n\"}{end}'",
      b);
  cr_assert(strstr(notes, a) != NULL, "the event does not name the Secret: %s", notes);
  cr_assert(strstr(notes, planted) == NULL, "the event holds the planted password");
  free(notes);

  /* A's copy is A's again, with A's password (its role never took the planted one). */
  rc = tn_test_sh_until(60, &out,
                        "test \"$(kubectl -n %s-prod get secret tenant-database -o "
                        "jsonpath='{.metadata.labels.tenancy\\.dev/tenant}')\" = %s",
                        a, a);
  cr_assert_eq(rc, 0, "A's copy was not restored");
  free(out);
  char *a_now = copy_value(a, "password");
  cr_assert_str_eq(a_now, a_password, "A's password changed");
  cr_assert_eq(tn_test_psql_as(a, "SELECT 1", &out), 0, "A cannot log in: %s", out);
  free(out);
  cr_assert_neq(psql_with_password(a, planted, &out), 0, "the planted password logs in as A");
  free(out);

  free(a_now);
  free(b_now);
  free(b_version_now);
  free(b_password);
  free(b_version);
  free(a_password);
  free(b_uid);
  tn_test_sh(NULL, "kubectl delete tenant %s %s --wait=false", a, b);
}

/* The tenant's own admin edits (with a higher version) or deletes the copy in its namespace: it is
 * put back from the canonical Secret, with the same password and version; no rotation. */
Test(tenant_database, an_edited_or_deleted_copy_is_restored_from_the_canonical_secret) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-copy");
  apply_tenant_with_admins(t);
  tn_test_wait_condition(&op, t, "DatabaseReady", "True", 90);
  wait_copy(t);
  char *password = copy_value(t, "password"), *version = status_field(t, "credentialsVersion");
  /* Edit: another password, a higher version. */
  int rc = tn_test_sh(&out,
                      "kubectl " AS_ADMIN_OF " -n %s-prod patch secret tenant-database --type=merge -p "
                      "'{\"metadata\":{\"annotations\":{\"tenancy.dev/credentials-version\":\"100\"}},"
                      "\"data\":{\"password\":\"'$(printf %%s chosen-password-1 | base64 -w0)'\"}}'",
                      t, t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tn_test_sh_until(
      60, &out,
      "test \"$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.password}' "
      "| base64 -d)\" = '%s'",
      t, password);
  cr_assert_eq(rc, 0, "the edited copy was not restored");
  free(out);
  cr_assert_neq(psql_with_password(t, "chosen-password-1", &out), 0, "the chosen password logs in");
  free(out);

  /* Delete: recreated with the same password. */
  rc = tn_test_sh(&out, "kubectl " AS_ADMIN_OF " -n %s-prod delete secret tenant-database", t, t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  wait_copy(t);
  char *again = copy_value(t, "password"), *version_now = status_field(t, "credentialsVersion");
  cr_assert_str_eq(again, password, "a deleted copy came back with a new password");
  cr_assert_str_eq(version_now, version, "the credentials version changed without a rotation");
  cr_assert_eq(tn_test_psql_as(t, "SELECT 1", &out), 0, "%s", out);
  free(out);

  /* The source: the canonical Secret, in the operator's namespace, not readable by the tenant admin. */
  char *canonical = tn_test_output(
      "kubectl -n tenancy-system get secret tenant-database-%s -o jsonpath='{.type} {.data.password}' ", t);
  char *b64pw = tn_test_output("printf %%s '%s' | base64 -w0", password);
  char want[256];
  snprintf(want, sizeof want, "tenancy.dev/tenant-database %s", b64pw);
  cr_assert_str_eq(canonical, want);
  cr_assert_neq(
      tn_test_sh(&out, "kubectl " AS_ADMIN_OF " -n tenancy-system get secret tenant-database-%s", t, t), 0,
      "the tenant admin can read the canonical Secret");
  free(out);

  free(again);
  free(version_now);
  free(b64pw);
  free(canonical);
  free(password);
  free(version);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

/* Stops the operator, runs the command (printf-formatted), starts the operator again. */
static void restart_operator_after(const char *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void restart_operator_after(const char *t, const char *fmt, ...) {
  char cmd[2048], *out = NULL;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  cr_assert_eq(tn_test_operator_stop(&op, SIGTERM, 40), 0, "the operator did not stop cleanly");
  int rc = tn_test_sh(&out, "%s", cmd);
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready again (tenant %s)", t);
  }
}

/* An installation from before the canonical Secret (simulated: it is deleted): the copy is adopted
 * when it is the tenant's own and the role holds its password; a copy whose password the role does
 * not hold is not: a new password is made (the version grows). */
Test(tenant_database, upgrade_adopts_only_an_owned_consistent_copy) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-upg");
  apply_tenant_with_admins(t);
  tn_test_wait_condition(&op, t, "DatabaseReady", "True", 90);
  wait_copy(t);
  char *password = copy_value(t, "password"), *version = status_field(t, "credentialsVersion");
  /* The upgrade: the operator stops, the canonical Secret is not there, the operator starts. */
  restart_operator_after(t, "kubectl -n tenancy-system delete secret tenant-database-%s", t);
  int rc = tn_test_sh_until(60, &out, "kubectl -n tenancy-system get secret tenant-database-%s", t);
  cr_assert_eq(rc, 0, "the canonical Secret was not recreated");
  free(out);
  char *adopted = tn_test_output(
      "kubectl -n tenancy-system get secret tenant-database-%s -o jsonpath='{.data.password}' | "
      "base64 -d",
      t);
  cr_assert_str_eq(adopted, password, "a consistent, owned copy was not adopted");
  char *v1 = status_field(t, "credentialsVersion");
  cr_assert_str_eq(v1, version);

  /* The tenant admin edits its copy, then the canonical Secret is gone again: the role does not
   * hold the copy's password, so it is not adopted. */
  restart_operator_after(t,
                         "kubectl " AS_ADMIN_OF " -n %s-prod patch secret tenant-database --type=merge -p "
                         "'{\"data\":{\"password\":\"'$(printf %%s chosen-password-2 | base64 -w0)'\"}}' && "
                         "kubectl -n tenancy-system delete secret tenant-database-%s",
                         t, t, t);
  rc = tn_test_sh_until(
      60, &out,
      "test \"$(kubectl get tenant %s -o jsonpath='{.status.database.credentialsVersion}')\" -gt %s", t,
      version);
  cr_assert_eq(rc, 0, "no new password after the canonical Secret went missing with a tampered copy");
  free(out);
  tn_test_wait_condition(&op, t, "DatabaseReady", "True", 60);
  char *fresh = copy_value(t, "password");
  cr_assert_str_neq(fresh, "chosen-password-2");
  cr_assert_str_neq(fresh, password);
  cr_assert_neq(psql_with_password(t, "chosen-password-2", &out), 0, "the chosen password logs in");
  free(out);
  rc = tn_test_sh_until(
      30, &out,
      "uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 "
      "-d) && PGCONNECT_TIMEOUT=5 psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -tAc 'select 1'",
      t);
  cr_assert_eq(rc, 0, "the new password does not log in: %s", out);
  free(out);

  free(fresh);
  free(v1);
  free(adopted);
  free(password);
  free(version);
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
  tn_test_wait_condition(&op, t, "DatabaseReady", "False", 60);
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

/* The database of a tenant whose Region was deleted cannot be dropped: the delete waits, and the
 * tenant says why and both ways out (recreate the Region, or remove the finalizer to leave the
 * database); recreating the Region completes the delete and drops the role. */
Test(tenant_database, a_delete_after_the_region_was_deleted_says_why_and_completes_when_it_is_back) {
  char t[64], r2[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-dbr");
  tn_test_unique_name(r2, sizeof r2, "db-gone");
  /* the same server in a second Region, this test's own */
  char *spec = tn_test_output("kubectl get region %s -o jsonpath='{.spec}'", region);
  int rc =
      tn_test_sh(&out,
                 "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":"
                 "{\"name\":\"%s\"},\"spec\":%s}' | kubectl apply -f -",
                 r2, spec);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  free(spec);
  rc = tn_test_sh(&out,
                  "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":"
                  "{\"name\":\"%s\"},\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":"
                  "\"shared\",\"environments\":[\"prod\"],\"residency\":{\"allowedRegions\":[\"%s\"]}}}' | "
                  "kubectl apply -f -",
                  t, r2);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  tn_test_wait_condition(&op, t, "DatabaseReady", "True", 90);
  char *role = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.database.role}'", t);

  cr_assert_eq(tn_test_sh(&out, "kubectl delete region %s --wait=true --timeout=30s", r2), 0, "%s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&out, "kubectl delete tenant %s --wait=false", t), 0, "%s", out);
  free(out);
  char want[512];
  snprintf(want, sizeof want,
           "no Region named %s exists any more, so it cannot be dropped. To fix: recreate Region %s", r2, r2);
  rc = tn_test_sh_until(60, &out,
                        "kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"DatabaseReady\")]"
                        ".message}' | grep -qF '%s'",
                        t, want);
  if (rc) {
    free(out);
    out = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.conditions}'", t);
    tn_test_operator_dump_log(&op);
    cr_assert_fail("no clear reason for the stuck delete: %s", out);
  }
  free(out);
  out = tn_test_output(
      "kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"DatabaseReady\")].message}'", t);
  cr_assert(strstr(out, "remove the finalizer tenancy.dev/finalizer"), "%s", out);
  free(out);
  rc = tn_test_sh_until(60, &out,
                        "kubectl get events.events.k8s.io -n default --field-selector regarding.name=%s,"
                        "reason=DatabaseTeardownFailed -o jsonpath='{.items[*].type}' | grep -qw Warning",
                        t);
  cr_assert_eq(rc, 0, "no Warning event: %s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&out, "kubectl get tenant %s -o name", t), 0, "the finalizer holds the tenant: %s",
               out);
  free(out);

  /* the Region back: the delete completes and the role is gone */
  spec = tn_test_output("kubectl get region %s -o jsonpath='{.spec}'", region);
  rc = tn_test_sh(
      &out,
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":"
      "{\"name\":\"%s\"},\"spec\":%s}' | kubectl apply -f - && kubectl wait --for=delete tenant/%s "
      "--timeout=90s",
      r2, spec, t);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  free(spec);
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_roles WHERE rolname = '%s'", role);
  cr_assert_eq(tn_test_psql_admin(NULL, sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "role %s survived the delete", role);
  free(out);
  free(role);
  tn_test_sh(NULL, "kubectl delete region %s --wait=false", r2);
}
