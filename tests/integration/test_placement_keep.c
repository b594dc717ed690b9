/* test_placement_keep.c - a placed tenant stays where its data is: with the admission webhook out
 * of the way (this suite registers none, as when it is down or bypassed), an edit of allowedRegions
 * that drops the tenant's region, or a Region that stops hosting its isolation mode, never moves
 * it: status.placement keeps the region, the namespaces stay, Placed says MigrationRequired with
 * how to fix it (and a Warning Event), Ready is False; putting things back makes it Ready again in
 * the same region. A new tenant is still placed by preference. */
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
static char ra[64], rb[64];

static void region(const char *name, const char *modes) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":"
      "{\"name\":\"%s\"},\"spec\":{\"available\":true,\"isolationModes\":%s}}' | kubectl apply -f -",
      name, modes);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static void start(void) {
  tn_test_install_api();
  tn_test_env("TENANCY_PG_DSN");
  tn_test_unique_name(ra, sizeof ra, "pk-a");
  tn_test_unique_name(rb, sizeof rb, "pk-b");
  region(ra, "[\"shared\",\"dedicated\"]");
  region(rb, "[\"shared\",\"dedicated\"]");
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", NULL});
}

static void stop(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  tn_test_sh(NULL, "kubectl delete region %s %s --wait=false", ra, rb);
}

TestSuite(placement_keep, .init = start, .fini = stop, .timeout = 300);

#define OK(...) tn_test_sh_ok(&op, __VA_ARGS__)

#define wait_for(t, what, ...) tn_test_wait_for(&op, t, 90, what, __VA_ARGS__)

/* "<region>/<Placed status>/<Placed reason>/<Ready status>" once observedGeneration caught up. */
#define PLACED_QUERY                                                                                         \
  "test \"$(kubectl get tenant %s -o jsonpath='{.status.placement.region}/"                                  \
  "{.status.conditions[?(@.type==\"Placed\")].status}/{.status.conditions[?(@.type==\"Placed\")].reason}/"   \
  "{.status.conditions[?(@.type==\"Ready\")].status}/{.status.observedGeneration}/{.metadata.generation}' "  \
  "| awk -F/ '{print $1\"/\"$2\"/\"$3\"/\"$4\"/\"($5==$6)}')\" = '%s/%s/1'"

static void apply_tenant(const char *t, const char *allowed) {
  OK("printf '%%s' "
     "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
     "\"spec\":{\"state\":\"Active\",\"plan\":\"starter\",\"isolation\":\"shared\",\"environments\":["
     "\"prod\"],"
     "\"residency\":{\"allowedRegions\":%s,\"preferredRegion\":\"%s\"}}}' | kubectl apply -f -",
     t, allowed, ra);
}

Test(placement_keep, a_residency_edit_that_drops_the_region_does_not_move_the_tenant) {
  char t[64], both[160], only_b[96], what[128];
  tn_test_unique_name(t, sizeof t, "pk");
  snprintf(both, sizeof both, "[\"%s\",\"%s\"]", ra, rb);
  snprintf(only_b, sizeof only_b, "[\"%s\"]", rb);
  apply_tenant(t, both);
  snprintf(what, sizeof what, "tenant %s placed in %s and Ready", t, ra);
  wait_for(t, what, PLACED_QUERY, t, ra, "True/Placed/True");

  /* ra dropped: the preferred region is no longer allowed, rb would fit: the tenant stays in ra */
  OK("kubectl patch tenant %s --type=merge -p '{\"spec\":{\"residency\":{\"allowedRegions\":%s,"
     "\"preferredRegion\":\"%s\"}}}'",
     t, only_b, rb);
  snprintf(what, sizeof what, "tenant %s kept in %s with MigrationRequired", t, ra);
  wait_for(t, what, PLACED_QUERY, t, ra, "False/MigrationRequired/False");
  char *msg = tn_test_output(
      "kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"Placed\")].message}'", t);
  char want[256];
  snprintf(want, sizeof want, "To fix: add %s back to spec.residency.allowedRegions", ra);
  cr_assert(strstr(msg, "a placed tenant moves only by a migration") && strstr(msg, want), "%s", msg);
  free(msg);
  OK("kubectl get namespace %s-prod -o name", t);
  wait_for(t, "a MigrationRequired Warning event",
           "kubectl get events.events.k8s.io -n default --field-selector regarding.name=%s,"
           "reason=MigrationRequired -o jsonpath='{.items[*].type}' | grep -qw Warning",
           t);

  /* put back: Ready again, still in ra */
  OK("kubectl patch tenant %s --type=merge -p '{\"spec\":{\"residency\":{\"allowedRegions\":%s}}}'", t, both);
  snprintf(what, sizeof what, "tenant %s Ready again in %s", t, ra);
  wait_for(t, what, PLACED_QUERY, t, ra, "True/Placed/True");
  OK("kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Archived\"}}'", t);
}

Test(placement_keep, a_region_that_stops_hosting_the_mode_keeps_its_tenants) {
  char t[64], both[160], what[128];
  tn_test_unique_name(t, sizeof t, "pi");
  snprintf(both, sizeof both, "[\"%s\",\"%s\"]", ra, rb);
  apply_tenant(t, both);
  snprintf(what, sizeof what, "tenant %s placed in %s and Ready", t, ra);
  wait_for(t, what, PLACED_QUERY, t, ra, "True/Placed/True");

  region(ra, "[\"dedicated\"]");
  snprintf(what, sizeof what, "tenant %s kept in %s with MigrationRequired", t, ra);
  wait_for(t, what, PLACED_QUERY, t, ra, "False/MigrationRequired/False");
  char *msg = tn_test_output(
      "kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"Placed\")].message}'", t);
  cr_assert(strstr(msg, "isolationModes no longer lists shared"), "%s", msg);
  free(msg);

  /* a new tenant is placed where it fits (rb), by preference order, as before */
  char n[64];
  tn_test_unique_name(n, sizeof n, "pn");
  apply_tenant(n, both);
  snprintf(what, sizeof what, "new tenant %s placed in %s", n, rb);
  wait_for(n, what, PLACED_QUERY, n, rb, "True/Placed/True");

  region(ra, "[\"shared\",\"dedicated\"]");
  snprintf(what, sizeof what, "tenant %s Ready again in %s", t, ra);
  wait_for(t, what, PLACED_QUERY, t, ra, "True/Placed/True");
  OK("kubectl patch tenant %s %s --type=merge -p '{\"spec\":{\"state\":\"Archived\"}}'", t, n);
}

/* A tenant whose first reconcile finds a TenancyPolicy it violates (no webhook refused it: none
 * is registered here, as when it was down) is still recorded as Draft, with PolicyCompliant False
 * and the policy's message, and its status settles (it is not rewritten in a loop). */
Test(placement_keep, a_new_tenant_a_policy_denies_is_draft_and_says_why) {
  char t[64], pol[64];
  tn_test_unique_name(t, sizeof t, "pd");
  tn_test_unique_name(pol, sizeof pol, "pk-eu");
  OK("printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":"
     "{\"name\":\"%s\"},\"spec\":{\"residency\":[{\"flag\":\"%s\",\"allowedRegions\":[\"%s\"]}]}}' | "
     "kubectl apply -f -",
     pol, pol, rb);
  OK("printf '%%s' "
     "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
     "\"spec\":{\"state\":\"Active\",\"plan\":\"starter\",\"isolation\":\"shared\",\"environments\":"
     "[\"prod\"],\"residency\":{\"allowedRegions\":[\"%s\"],\"flags\":[\"%s\"]}}}' | kubectl apply -f -",
     t, ra, pol);
  wait_for(t, "Draft with PolicyCompliant False",
           "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}/"
           "{.status.conditions[?(@.type==\"PolicyCompliant\")].status}/"
           "{.status.conditions[?(@.type==\"PolicyCompliant\")].reason}')\" = Draft/False/PolicyDenied",
           t);
  char *rv1 = tn_test_output("kubectl get tenant %s -o jsonpath='{.metadata.resourceVersion}'", t);
  sleep(5);
  char *rv2 = tn_test_output("kubectl get tenant %s -o jsonpath='{.metadata.resourceVersion}'", t);
  cr_assert_str_eq(rv1, rv2, "the status keeps being rewritten");
  free(rv1);
  free(rv2);
  OK("! kubectl get namespace %s-prod 2>/dev/null", t);
  OK("kubectl delete tenancypolicy %s", pol);
  OK("kubectl delete tenant %s --wait=false", t);
}
