/* tn_cluster.c - kubectl and psql helpers of the integration suites (see tn_cluster.h). */
#define _GNU_SOURCE
#include "tn_cluster.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tn_test.h"

static char *vformat(const char *fmt, va_list ap) {
  char *s = NULL;
  cr_assert_geq(vasprintf(&s, fmt, ap), 0, "out of memory");
  return s;
}

void tn_test_sh_ok(struct tn_test_operator *op, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *cmd = vformat(fmt, ap);
  va_end(ap);
  char *out = NULL;
  int rc = tn_test_sh(&out, "%s", cmd);
  if (rc && op)
    tn_test_operator_dump_log(op);
  cr_assert_eq(rc, 0, "exit %d: %s\n%s", rc, cmd, out ? out : "");
  free(out);
  free(cmd);
}

void tn_test_wait_for(struct tn_test_operator *op, const char *tenant, double timeout_s, const char *what,
                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *cmd = vformat(fmt, ap);
  va_end(ap);
  char *out = NULL;
  int rc = tn_test_sh_until(timeout_s, &out, "%s", cmd);
  if (rc) {
    char *status = NULL;
    if (tenant)
      tn_test_sh(&status, "kubectl get tenant %s -o jsonpath='{.status}'", tenant);
    if (op)
      tn_test_operator_dump_log(op);
    cr_assert_fail("%s: not within %.0f s%s%s%s\ncommand: %s\nlast output: %s", what, timeout_s,
                   tenant ? "; tenant " : "", tenant ? tenant : "", tenant ? " status: " : "",
                   tenant && status ? status : "", cmd, out ? out : "");
  }
  free(out);
  free(cmd);
}

void tn_test_wait_condition(struct tn_test_operator *op, const char *t, const char *type, const char *status,
                            double timeout_s) {
  char what[256];
  snprintf(what, sizeof what, "tenant %s: %s never became %s", t, type, status);
  tn_test_wait_for(
      op, t, timeout_s, what,
      "test \"$(kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"%s\")].status}')\" "
      "= %s",
      t, type, status);
}

void tn_test_wait_jsonpath(struct tn_test_operator *op, const char *what, const char *jsonpath,
                           const char *want, double timeout_s) {
  char *out = NULL;
  int rc = tn_test_sh_until(timeout_s, &out, "test \"$(kubectl get %s -o jsonpath='%s')\" = '%s'", what,
                            jsonpath, want);
  free(out);
  if (rc == 0)
    return;
  out = NULL;
  tn_test_sh(&out, "kubectl get %s -o jsonpath='%s'; echo; kubectl get %s -o jsonpath='{.status}'", what,
             jsonpath, what);
  if (op)
    tn_test_operator_dump_log(op);
  cr_assert_fail("%s %s: want '%s' within %.0f s, got: %s", what, jsonpath, want, timeout_s, out ? out : "");
}

void tn_test_apply_json(struct tn_test_operator *op, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *doc = vformat(fmt, ap);
  va_end(ap);
  tn_test_sh_ok(op, "printf '%%s' '%s' | kubectl apply -f -", doc);
  free(doc);
}

void tn_test_apply_region(const char *name, const char *server) {
  tn_test_sh_ok(
      NULL,
      "kubectl create namespace tenancy-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "kubectl -n tenancy-system create secret generic pg-admin-%s --from-literal=uri=\"$TENANCY_PG_DSN\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "kubectl -n tenancy-system create secret generic pg-ca-%s --from-file=ca.crt=\"$TENANCY_CA_FILE\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\",\"dedicated\",\"hybrid\"],"
      "\"databaseServers\":[{\"name\":\"%s\",\"host\":\"127.0.0.1\",\"port\":'\"$TENANCY_PG_PORT\"',"
      "\"sslMode\":\"verify-full\",\"caSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-ca-%s\"},"
      "\"serves\":[\"shared\",\"dedicated\",\"hybrid\"],"
      "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-admin-%s\"}}]}}' | kubectl apply "
      "-f -",
      name, name, name, server, name, name);
}

int tn_test_psql_as(const char *t, const char *sql, char **out) {
  return tn_test_sh(
      out,
      "uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
      "PGCONNECT_TIMEOUT=5 psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qtAc \"%s\"",
      t, sql);
}

int tn_test_psql_admin(const char *db, const char *sql, char **out) {
  if (!db)
    return tn_test_sh(out, "PGCONNECT_TIMEOUT=5 psql \"$TENANCY_PG_DSN\" -v ON_ERROR_STOP=1 -qtAc \"%s\"",
                      sql);
  return tn_test_sh(
      out, "PGCONNECT_TIMEOUT=5 psql \"$TENANCY_PG_DSN&dbname=%s\" -v ON_ERROR_STOP=1 -qtAc \"%s\"", db, sql);
}
