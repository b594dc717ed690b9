/* test_owned_delete.c - the reconcile's deletes of owned objects whose cache keeps no uid
 * (operator/converge/manager.c drops metadata.uid of owned Namespaces, NetworkPolicies,
 * ResourceQuotas and LimitRanges; converge/owned_delete.c GETs it before a delete that stays
 * conditional on it): the real operator binary against the real API server. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tn_cluster.h"
#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;

static void start(void) {
  tn_test_install_api();
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", "--sync-period=3s", NULL});
}

static void stop(void) {
  int code = tn_test_operator_stop(&op, SIGTERM, 40);
  if (code != 0)
    tn_test_operator_dump_log(&op);
}

TestSuite(owned_delete, .init = start, .fini = stop, .timeout = 240);

static void apply_tenant(const char *name, const char *envs) {
  tn_test_apply_json(
      &op,
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"displayName\":\"Test %s\",\"state\":\"Active\",\"plan\":\"standard\","
      "\"isolation\":\"shared\",\"residency\":{\"allowedRegions\":[\"eu-west-1\"],"
      "\"preferredRegion\":\"eu-west-1\"},\"environments\":[%s],"
      "\"identity\":{\"domain\":\"x.example\",\"groupBindings\":[{\"group\":\"%s-admins\","
      "\"role\":\"tenant-admin\"}]}}}",
      name, name, envs, name);
}

/* Removing an environment deletes its Namespace (the cache has no uid for it: a GET reads it and
 * the delete is conditional on it); the other environment's objects stay. */
Test(owned_delete, a_removed_environment_is_deleted) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-odel");
  apply_tenant(t, "\"prod\",\"dev\"");
  tn_test_wait_condition(&op, t, "Ready", "True", 90);
  char *uid = tn_test_output("kubectl get namespace %s-dev -o jsonpath='{.metadata.uid}'", t);
  cr_assert(uid[0], "namespace %s-dev has no uid", t);

  apply_tenant(t, "\"prod\"");
  /* Gone, or being deleted (the namespace controller empties it first): the same object. */
  int rc = tn_test_sh_until(60, &out,
                            "u=$(kubectl get namespace %s-dev -o jsonpath='{.metadata.uid} "
                            "{.metadata.deletionTimestamp}' 2>/dev/null) || exit 0; "
                            "case \"$u\" in '%s '?*) exit 0;; *) exit 1;; esac",
                            t, uid);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "namespace %s-dev was not deleted: %s", t, out);
  free(out);
  free(uid);
  tn_test_wait_condition(&op, t, "Ready", "True", 120);
  out = tn_test_output("kubectl get namespace %s-prod -o jsonpath='{.metadata.deletionTimestamp}'", t);
  cr_expect_str_eq(out, "", "the kept environment's namespace is being deleted");
  free(out);
  out =
      tn_test_output("kubectl get networkpolicies,resourcequotas,limitranges -n %s-prod -o name | wc -l", t);
  cr_expect_str_eq(out, "4", "the kept environment lost objects");
  free(out);
}

/* A namespace of the tenant's that someone replaced by their own (same name, our labels, no owner
 * reference to the Tenant) is left alone when its environment is removed. */
Test(owned_delete, a_replaced_namespace_is_left_alone) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-orep");
  apply_tenant(t, "\"prod\"");
  tn_test_wait_condition(&op, t, "Ready", "True", 90);
  /* A foreign namespace carrying the tenant's labels but owned by no Tenant. */
  tn_test_apply_json(&op,
                     "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s-qa\","
                     "\"labels\":{\"app.kubernetes.io/managed-by\":\"tenancy-operator\","
                     "\"tenancy.dev/tenant\":\"%s\"}}}",
                     t, t);
  apply_tenant(t, "\"prod\",\"qa\"");
  tn_test_wait_condition(&op, t, "Ready", "False", 60); /* the conflict: never adopted */
  apply_tenant(t, "\"prod\"");
  tn_test_wait_condition(&op, t, "Ready", "True", 90);
  out = tn_test_output("kubectl get namespace %s-qa -o jsonpath='{.metadata.deletionTimestamp}'", t);
  cr_expect_str_eq(out, "", "someone else's namespace was deleted");
  free(out);
  cr_expect_eq(tn_test_sh(&out, "kubectl delete namespace %s-qa --wait=false", t), 0, "%s", out);
  free(out);
}
