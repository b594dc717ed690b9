/* test_reconcile_triggers.c - why tenant reconciles run (issue 18), end to end against the real
 * API server: a new tenant converges without its own writes (finalizer, status, the objects it
 * creates) bringing it back, and drift made by someone else (an owned object deleted, changed,
 * or its managed-by label removed) is repaired at once by the object's own event. The operator
 * runs with --sync-period=1h, so no resync can be what repairs it; the
 * tenancy_reconcile_triggers_total series name the event that did. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_cluster.h"
#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;

static void start(void) {
  tn_test_install_api();
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", "--sync-period=1h", NULL});
}

static void stop(void) {
  int code = tn_test_operator_stop(&op, SIGTERM, 40);
  if (code != 0)
    tn_test_operator_dump_log(&op);
}

TestSuite(reconcile_triggers, .init = start, .fini = stop, .timeout = 240);

static void apply_tenant(const char *name, const char *envs) {
  tn_test_apply_json(
      &op,
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"displayName\":\"Test "
      "%s\",\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":\"shared\","
      "\"residency\":{\"allowedRegions\":[\"eu-west-1\",\"eu-central-1\"],\"preferredRegion\":\"eu-west-1\"},"
      "\"environments\":[\"%s\"],"
      "\"identity\":{\"domain\":\"x.example\",\"groupBindings\":[{\"group\":\"%s-admins\",\"role\":\"tenant-"
      "admin\"}]}}}",
      name, name, envs, name);
}

static double metric(const char *prefix) { return tn_test_metric_sum(op.metrics_port, prefix); }

#define TENANT_RECONCILES "controller_runtime_reconcile_total{controller=\"tenant\""
#define TRIGGER(t) "tenancy_reconcile_triggers_total{trigger=\"" t "\""
#define SKIPPED(r) "tenancy_reconcile_events_skipped_total{reason=\"" r "\"}"

/* Until no tenant reconcile ran for 3 s (tenants of earlier tests settling). */
static void wait_quiet(void) {
  double quiet_since = tn_test_now(), last = metric(TENANT_RECONCILES), give_up = tn_test_now() + 90;
  while (tn_test_now() - quiet_since < 3 && tn_test_now() < give_up) {
    usleep(200 * 1000);
    double n = metric(TENANT_RECONCILES);
    if (n != last) {
      last = n;
      quiet_since = tn_test_now();
    }
  }
  cr_assert_lt(tn_test_now(), give_up, "the tenant controller never went quiet");
}

Test(reconcile_triggers, a_new_tenant_s_own_writes_bring_it_back_for_nothing) {
  char t[64];
  tn_test_unique_name(t, sizeof t, "tn-trig");
  wait_quiet();
  double rec0 = metric(TENANT_RECONCILES), added0 = metric(TRIGGER("tenant_added"));
  double status0 = metric(TRIGGER("tenant_status")), meta0 = metric(TRIGGER("tenant_metadata"));
  double owned_added0 = metric(TRIGGER("owned_added")), unknown0 = metric(TRIGGER("unknown"));
  double own_create0 = metric(SKIPPED("own_create")), own_write0 = metric(SKIPPED("own_tenant_write"));
  /* Tenants other suites left on the shared stack may retry now and then (a backoff, a timer). */
  double retries0 = metric(TRIGGER("error")) + metric(TRIGGER("requeue_after"));
  apply_tenant(t, "prod\",\"staging");
  tn_test_wait_condition(&op, t, "Ready", "True", 60);
  wait_quiet();
  double rec = metric(TENANT_RECONCILES) - rec0;
  cr_assert_geq(metric(TRIGGER("tenant_added")) - added0, 1, "the tenant's creation is counted as its cause");
  /* 2 environments x (Namespace, 2 NetworkPolicies, ResourceQuota, LimitRange, RoleBinding). */
  cr_assert_geq(metric(SKIPPED("own_create")) - own_create0, 12,
                "the ADDED events of the 12 objects the reconcile created are recognised as its own");
  cr_assert_geq(metric(SKIPPED("own_tenant_write")) - own_write0, 2,
                "the finalizer and status writes' events are recognised as the reconcile's own");
  cr_assert_eq(metric(TRIGGER("tenant_status")) - status0, 0, "a status write of ours reconciled again");
  cr_assert_eq(metric(TRIGGER("tenant_metadata")) - meta0, 0, "the finalizer write of ours reconciled again");
  cr_assert_eq(metric(TRIGGER("owned_added")) - owned_added0, 0, "an object we created reconciled again");
  cr_assert_eq(metric(TRIGGER("unknown")) - unknown0, 0, "a reconcile without a recorded cause");
  double retries = metric(TRIGGER("error")) + metric(TRIGGER("requeue_after")) - retries0;
  cr_assert_leq(rec - retries, 1, "%.0f reconciles (%.0f retries or timers) to converge one new tenant", rec,
                retries);
}

/* `kubectl get` of one field, or "" */
static char *get_field(const char *what, const char *jsonpath) {
  char *v = tn_test_output("kubectl get %s -o jsonpath='%s'", what, jsonpath);
  return v ? v : strdup("");
}

Test(reconcile_triggers, drift_is_repaired_at_once_by_the_object_s_own_event) {
  char t[64], np[256], q[256], lr[256];
  tn_test_unique_name(t, sizeof t, "tn-drift-ev");
  apply_tenant(t, "prod");
  tn_test_wait_condition(&op, t, "Ready", "True", 60);
  wait_quiet();
  snprintf(np, sizeof np, "-n %s-prod networkpolicy allow-same-tenant", t);
  snprintf(q, sizeof q, "-n %s-prod resourcequota tenant-quota", t);
  snprintf(lr, sizeof lr, "-n %s-prod limitrange tenant-limits", t);

  /* Deleted by someone: created again, because of its DELETED event. */
  double del0 = metric(TRIGGER("owned_deleted") ",kind=\"NetworkPolicy\"}");
  char *uid0 = get_field(np, "{.metadata.uid}");
  tn_test_sh_ok(&op, "kubectl delete %s --wait=false", np);
  tn_test_wait_for(
      &op, t, 10, "the deleted NetworkPolicy to be created again",
      "u=$(kubectl get %s -o jsonpath='{.metadata.uid}') && test -n \"$u\" && test \"$u\" != '%s'", np, uid0);
  free(uid0);
  cr_assert_geq(metric(TRIGGER("owned_deleted") ",kind=\"NetworkPolicy\"}") - del0, 1,
                "the repair was not caused by the NetworkPolicy's DELETED event");

  /* Changed by someone: restored, because of its MODIFIED event. */
  char *pods = get_field(q, "{.spec.hard.pods}");
  cr_assert(pods[0] && strcmp(pods, "999") != 0, "the quota has pods %s", pods);
  double upd0 = metric(TRIGGER("owned_updated") ",kind=\"ResourceQuota\"}");
  tn_test_sh_ok(&op, "kubectl patch %s --type=merge -p '{\"spec\":{\"hard\":{\"pods\":\"999\"}}}'", q);
  char want[300];
  snprintf(want, sizeof want, "%s", pods);
  tn_test_wait_jsonpath(&op, q, "{.spec.hard.pods}", want, 10);
  free(pods);
  cr_assert_geq(metric(TRIGGER("owned_updated") ",kind=\"ResourceQuota\"}") - upd0, 1,
                "the repair was not caused by the ResourceQuota's MODIFIED event");

  /* Its managed-by label removed: it leaves the label-selected cache (a DELETED event there),
   * and the reconcile finds it by name, still ours by its owner reference, and restores it. */
  double lr0 = metric(TRIGGER("owned_deleted") ",kind=\"LimitRange\"}");
  tn_test_sh_ok(&op, "kubectl label %s app.kubernetes.io/managed-by-", lr);
  tn_test_wait_jsonpath(&op, lr, "{.metadata.labels.app\\.kubernetes\\.io/managed-by}", "tenancy-operator",
                        10);
  cr_assert_geq(metric(TRIGGER("owned_deleted") ",kind=\"LimitRange\"}") - lr0, 1,
                "the repair was not caused by the LimitRange leaving the cache");
  tn_test_wait_condition(&op, t, "Ready", "True", 30);
  cr_assert_eq(metric(TRIGGER("tenant_resync")), 0, "a resync ran: the test proves nothing about events");
}
