/* test_foreign_fields.c - the tenant-database Secrets (the copy in the tenant's namespace and the
 * canonical one in the operator's) and the break-glass RoleBindings are written with server-side
 * apply as field manager tenancy-operator, so labels and annotations that other tools put on them
 * survive the operator's own rewrites (a credential rotation, a changed break-glass reason),
 * against the real API server, PostgreSQL and operator binary.
 *
 * When these objects were written with PUT, every rewrite replaced metadata.labels and
 * metadata.annotations whole and dropped the other tools' keys: this suite failed on that. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tn_cluster.h"
#include "tn_operator.h"
#include "tn_test.h"
#include "util/clock.h"

static struct tn_test_operator op;
static char region[64], policy[64];

static void start(void) {
  tn_test_install_api();
  tn_test_unique_name(region, sizeof region, "ff-region");
  tn_test_unique_name(policy, sizeof policy, "ff-policy");
  tn_test_apply_region(region, "pg-local");
  tn_test_apply_json(
      NULL,
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":{\"name\":"
      "\"%s\"},\"spec\":{\"breakGlass\":{\"allowed\":true,\"maxDuration\":\"1h\",\"roles\":["
      "\"tenant-admin\"]}}}",
      policy);
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", NULL});
}

static void stop(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  tn_test_sh(NULL, "kubectl delete tenancypolicy %s --ignore-not-found --wait=false", policy);
  tn_test_sh(NULL, "kubectl delete region %s --wait=false", region);
}

TestSuite(foreign_fields, .init = start, .fini = stop, .timeout = 300);

/* Applies tenant t (Active, shared database in the suite's Region) with one break-glass request
 * "inc" for user with this reason, expiring in 30 minutes. */
static void apply_tenant(const char *t, const char *user, const char *reason) {
  char when[32];
  tn_time_rfc3339(floor(tn_wall_now()) + 1800, when, sizeof when);
  tn_test_apply_json(
      &op,
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":\"shared\",\"environments\":["
      "\"prod\"],"
      "\"residency\":{\"allowedRegions\":[\"%s\"]},\"breakGlass\":[{\"id\":\"inc\",\"user\":\"%s\","
      "\"role\":\"tenant-admin\",\"reason\":\"%s\",\"expiresAt\":\"%s\"}]}}",
      t, region, user, reason, when);
}

/* kubectl's own field manager puts a label and an annotation on an object, as another tool would. */
static void mark(const char *what) {
  tn_test_sh_ok(NULL,
                "kubectl label %s example.com/team=payments --overwrite && "
                "kubectl annotate %s example.com/backup=nightly --overwrite",
                what, what);
}

/* The other tool's label and annotation are still on the object, and tenancy-operator's entry in
 * its managedFields is an Apply. */
static void assert_marked(const char *what) {
  char marks[256], managers[256], *out;
  out = tn_test_output("kubectl get %s -o go-template='{{index .metadata.labels \"example.com/team\"}} "
                       "{{index .metadata.annotations \"example.com/backup\"}}'",
                       what);
  snprintf(marks, sizeof marks, "%s", out);
  free(out);
  out =
      tn_test_output("kubectl get %s --show-managed-fields -o go-template='{{range .metadata.managedFields}}"
                     "{{if eq .manager \"tenancy-operator\"}}{{.operation}} {{end}}{{end}}'",
                     what);
  snprintf(managers, sizeof managers, "%s", out);
  free(out);
  cr_assert_str_eq(marks, "payments nightly", "%s lost the other tool's label or annotation: '%s'", what,
                   marks);
  cr_assert_str_eq(managers, "Apply ", "%s: tenancy-operator's managedFields entries: '%s'", what, managers);
}

Test(foreign_fields, rewrites_keep_other_tools_labels_and_annotations) {
  char t[64], user[96], copy[160], canonical[200], binding[160];
  tn_test_unique_name(t, sizeof t, "ff");
  snprintf(user, sizeof user, "%s-oncall@example.com", t);
  snprintf(copy, sizeof copy, "secret tenant-database -n %s-prod", t);
  snprintf(canonical, sizeof canonical, "secret tenant-database-%s -n tenancy-system", t);
  snprintf(binding, sizeof binding, "rolebinding break-glass-inc -n %s-prod", t);
  apply_tenant(t, user, "INC-1: database down");
  tn_test_wait_condition(&op, t, "DatabaseReady", "True", 120);
  tn_test_wait_for(&op, t, 60, "the break-glass RoleBinding was made", "kubectl get %s", binding);
  mark(copy);
  mark(canonical);
  mark(binding);

  /* a rotation rewrites both Secrets; a new reason rewrites the binding's annotation */
  char version[32],
      *v = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.database.credentialsVersion}'", t);
  snprintf(version, sizeof version, "%s", v);
  free(v);
  tn_test_sh_ok(&op, "kubectl annotate tenant %s tenancy.dev/rotate-credentials=ff-1 --overwrite", t);
  apply_tenant(t, user, "INC-2: still down");
  tn_test_wait_for(&op, t, 90, "both Secrets rewritten with a newer credentials version",
                   "test \"$(kubectl get %s -o jsonpath='{.metadata.annotations.tenancy\\.dev/"
                   "credentials-version}')\" -gt %s && "
                   "test \"$(kubectl get %s -o jsonpath='{.metadata.annotations.tenancy\\.dev/"
                   "credentials-version}')\" -gt %s",
                   copy, version, canonical, version);
  tn_test_wait_for(&op, t, 60, "the binding's reason updated",
                   "kubectl get %s -o jsonpath='{.metadata.annotations.tenancy\\.dev/break-glass-reason}' "
                   "| grep -q INC-2",
                   binding);

  assert_marked(copy);
  assert_marked(canonical);
  assert_marked(binding);
  /* the rotated password is what the copy holds (the rewrite was complete) */
  char *out = NULL;
  int rc = tn_test_psql_as(t, "select 1", &out);
  cr_assert_eq(rc, 0, "the rotated credentials do not log in: %s", out);
  free(out);
  /* delete while this operator runs and the Region exists, so nothing is left behind for the
   * suites that follow (a grant in force, a database waiting on a deleted Region) */
  tn_test_sh(NULL, "kubectl delete tenant %s --wait --timeout=120s", t);
}
