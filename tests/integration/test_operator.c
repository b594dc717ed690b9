/* test_operator.c - the Tenant reconcile end to end: the real operator binary against the real
 * API server and controller-manager; every check goes through kubectl as a user would. */
#define _GNU_SOURCE
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

static void start(void) {
  tn_test_install_api();
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", "--sync-period=3s", NULL});
}

static void stop(void) {
  int code = tn_test_operator_stop(&op, SIGTERM, 40);
  if (code != 0)
    tn_test_operator_dump_log(&op);
}

TestSuite(operator, .init = start, .fini = stop, .timeout = 240);

/* kubectl apply of a Tenant; envs like "prod\",\"staging" (JSON array body). */
static int apply_tenant(char **out, const char *name, const char *state, const char *plan, const char *envs,
                        const char *extra_spec) {
  return tn_test_sh(
      out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"displayName\":\"Test %s\",\"state\":\"%s\",\"plan\":\"%s\",\"isolation\":\"shared\","
      "\"residency\":{\"allowedRegions\":[\"eu-west-1\",\"eu-central-1\"],\"preferredRegion\":\"eu-west-1\"},"
      "\"environments\":[\"%s\"],"
      "\"identity\":{\"domain\":\"x.example\",\"groupBindings\":[{\"group\":\"%s-admins\",\"role\":\"tenant-"
      "admin\"}]}%s}}'"
      " | kubectl apply -f -",
      name, name, state, plan, envs, name, extra_spec ? extra_spec : "");
}

#define wait_ready(name, timeout) tn_test_wait_condition(&op, name, "Ready", "True", timeout)

#define assert_jsonpath(...) tn_test_wait_jsonpath(&op, __VA_ARGS__)

Test(operator, sample_tenant_converges_to_ready) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-ready");
  cr_assert_eq(apply_tenant(&out, t, "Active", "standard", "prod\",\"staging", NULL), 0, "%s", out);
  free(out);
  wait_ready(t, 60);
  char what[256];
  snprintf(what, sizeof what, "tenant %s", t);
  assert_jsonpath(what, "{.status.state}", "Active", 1);
  assert_jsonpath(what, "{.status.placement.region}", "eu-west-1", 1);
  assert_jsonpath(what, "{.status.derived.quotas.pods}", "50", 1);
  assert_jsonpath(what, "{.metadata.finalizers[0]}", "tenancy.dev/finalizer", 1);
  /* Each condition about owned objects names what it covers (QuotaApplied: two kinds). */
  assert_jsonpath(what, "{.status.conditions[?(@.type==\"QuotaApplied\")].message}",
                  "every ResourceQuota and LimitRange of the tenant is as desired", 1);
  assert_jsonpath(what, "{.status.conditions[?(@.type==\"NetworkIsolated\")].message}",
                  "every NetworkPolicy of the tenant is as desired", 1);
  char *cid = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.lastCorrelationId}'", t);
  cr_assert_eq(strlen(cid), 36, "correlation id: '%s'", cid);

  for (int e = 0; e < 2; e++) {
    const char *env = e ? "staging" : "prod";
    char ns[256];
    snprintf(ns, sizeof ns, "namespace %s-%s", t, env);
    assert_jsonpath(ns, "{.metadata.labels.tenancy\\.dev/tenant}", t, 1);
    assert_jsonpath(ns, "{.metadata.labels.tenancy\\.dev/environment}", env, 1);
    assert_jsonpath(ns, "{.metadata.labels.app\\.kubernetes\\.io/managed-by}", "tenancy-operator", 1);
    assert_jsonpath(ns, "{.metadata.ownerReferences[0].kind}", "Tenant", 1);
    char q[256];
    snprintf(q, sizeof q, "-n %s-%s resourcequota tenant-quota", t, env);
    assert_jsonpath(q, "{.spec.hard.pods}", "50", 1);
    snprintf(q, sizeof q, "-n %s-%s networkpolicy", t, env);
    assert_jsonpath(q, "{.items[*].metadata.name}", "allow-same-tenant default-deny", 1);
    snprintf(q, sizeof q, "-n %s-%s limitrange tenant-limits", t, env);
    assert_jsonpath(q, "{.metadata.name}", "tenant-limits", 1);
    snprintf(q, sizeof q, "-n %s-%s rolebinding -l tenancy.dev/tenant=%s", t, env, t);
    assert_jsonpath(q, "{.items[0].roleRef.name}", "tenancy-tenant-admin", 1);
  }
  /* kubectl get tenants shows the printer columns. */
  cr_assert_eq(tn_test_sh(&out, "kubectl get tenants %s", t), 0);
  cr_assert(strstr(out, "STATE") && strstr(out, "PLAN") && strstr(out, "REGION") && strstr(out, "READY") &&
                strstr(out, "AGE"),
            "%s", out);
  cr_assert(strstr(out, "Active") && strstr(out, "standard") && strstr(out, "eu-west-1") &&
                strstr(out, "True"),
            "%s", out);
  free(out);
  /* Events: Created and Activated with the correlation id in the note. */
  int rc = tn_test_sh_until(
      20, &out,
      "kubectl get events.events.k8s.io -n default --field-selector regarding.name=%s "
      "-o jsonpath='{range .items[*]}{.reason} {.note}{\"\\n\"}{end}' | grep Activated | grep -q %s",
      t, cid);
  cr_assert_eq(rc, 0, "no Activated event carrying correlation id %s", cid);
  free(out);
  free(cid);
}

Test(operator, lifecycle_suspend_resume_archive_delete) {
  char t[64], what[128], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-life");
  snprintf(what, sizeof what, "tenant %s", t);
  cr_assert_eq(apply_tenant(&out, t, "Active", "standard", "prod", NULL), 0, "%s", out);
  free(out);
  wait_ready(t, 60);
  char q[256], np[256];
  snprintf(q, sizeof q, "-n %s-prod resourcequota tenant-quota", t);
  snprintf(np, sizeof np, "-n %s-prod networkpolicy", t);
  char *active_quota = tn_test_output("kubectl get %s -o jsonpath='{.spec}'", q);

  /* Suspend: pods quota 0, a deny-all policy, the allow policies gone. */
  cr_assert_eq(
      tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Suspended\"}}'", t),
      0, "%s", out);
  free(out);
  assert_jsonpath(what, "{.status.state}", "Suspended", 30);
  assert_jsonpath(q, "{.spec.hard.pods}", "0", 30);
  assert_jsonpath(np, "{.items[*].metadata.name}", "default-deny suspended-deny-all", 30);
  wait_ready(t, 30);

  /* Resume: exactly the Active objects again. */
  cr_assert_eq(
      tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Active\"}}'", t), 0,
      "%s", out);
  free(out);
  assert_jsonpath(what, "{.status.state}", "Active", 30);
  assert_jsonpath(np, "{.items[*].metadata.name}", "allow-same-tenant default-deny", 30);
  assert_jsonpath(q, "{.spec}", active_quota, 30);
  free(active_quota);

  /* Refused by the API server itself, with the allowed states named. */
  int rc = tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Draft\"}}'", t);
  cr_assert_neq(rc, 0, "Active -> Draft was accepted");
  cr_assert(strstr(out, "Suspended") && strstr(out, "Archived"),
            "the refusal must name the allowed states: %s", out);
  free(out);

  /* Archive: the namespaces are kept for the retention (30 days without a policy), closed as
   * while Suspended; the record kept. */
  cr_assert_eq(
      tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Archived\"}}'", t), 0,
      "%s", out);
  free(out);
  assert_jsonpath(what, "{.status.state}", "Archived", 30);
  assert_jsonpath(q, "{.spec.hard.pods}", "0", 30);
  assert_jsonpath(np, "{.items[*].metadata.name}", "default-deny suspended-deny-all", 30);
  wait_ready(t, 30);
  char *archived_at = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.archivedAt}'", t);
  cr_assert(archived_at[0] != '\0', "status.archivedAt is not set");
  free(archived_at);

  /* Deleted needs the confirmation. */
  rc = tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Deleted\"}}'", t);
  cr_assert_neq(rc, 0, "Deleted without confirmation was accepted");
  free(out);
  cr_assert_eq(tn_test_sh(&out,
                          "kubectl patch tenant %s --type=merge -p "
                          "'{\"spec\":{\"state\":\"Deleted\",\"deletionConfirmation\":\"%s\"}}'",
                          t, t),
               0, "%s", out);
  free(out);
  assert_jsonpath(what, "{.status.state}", "Deleted", 30);
  rc = tn_test_sh_until(120, &out, "! kubectl get namespace %s-prod >/dev/null 2>&1", t);
  cr_assert_eq(rc, 0, "namespace %s-prod still exists after Deleted", t);
  free(out);
  /* A tombstone: the record stays until kubectl delete. */
  cr_assert_eq(tn_test_sh(&out, "kubectl delete tenant %s --wait --timeout=60s", t), 0, "%s", out);
  free(out);
}

Test(operator, plan_change_propagates) {
  char t[64], plan[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-plan");
  tn_test_unique_name(plan, sizeof plan, "plan");
  cr_assert_eq(
      tn_test_sh(&out,
                 "printf '%%s' "
                 "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Plan\",\"metadata\":{\"name\":\"%s\"},"
                 "\"spec\":{\"quotas\":{\"cpu\":\"2\",\"memory\":\"4Gi\",\"storage\":\"10Gi\",\"pods\":10,"
                 "\"services\":5}}}'"
                 " | kubectl apply -f -",
                 plan),
      0, "%s", out);
  free(out);
  cr_assert_eq(apply_tenant(&out, t, "Active", plan, "prod", NULL), 0, "%s", out);
  free(out);
  wait_ready(t, 60);
  char q[256];
  snprintf(q, sizeof q, "-n %s-prod resourcequota tenant-quota", t);
  assert_jsonpath(q, "{.spec.hard.pods}", "10", 5);
  cr_assert_eq(
      tn_test_sh(&out, "kubectl patch plan %s --type=merge -p '{\"spec\":{\"quotas\":{\"pods\":20}}}'", plan),
      0, "%s", out);
  free(out);
  assert_jsonpath(q, "{.spec.hard.pods}", "20", 30);
  char what[256];
  snprintf(what, sizeof what, "tenant %s", t);
  assert_jsonpath(what, "{.status.derived.quotas.pods}", "20", 30);
}

Test(operator, drift_is_repaired) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-drift");
  cr_assert_eq(apply_tenant(&out, t, "Active", "standard", "prod", NULL), 0, "%s", out);
  free(out);
  wait_ready(t, 60);
  char q[256], np[256];
  snprintf(q, sizeof q, "-n %s-prod resourcequota tenant-quota", t);
  snprintf(np, sizeof np, "-n %s-prod networkpolicy allow-same-tenant", t);
  cr_assert_eq(tn_test_sh(&out, "kubectl delete %s", np), 0, "%s", out);
  free(out);
  assert_jsonpath(np, "{.metadata.name}", "allow-same-tenant", 15);
  cr_assert_eq(
      tn_test_sh(&out, "kubectl patch %s --type=merge -p '{\"spec\":{\"hard\":{\"pods\":\"999\"}}}'", q), 0,
      "%s", out);
  free(out);
  assert_jsonpath(q, "{.spec.hard.pods}", "50", 15);
  /* An allow-dns policy as operators before one policy held the DNS rule wrote it: ours, no
   * longer desired, so it is deleted (the upgrade path). */
  char *uid = tn_test_output("kubectl get tenant %s -o jsonpath='{.metadata.uid}'", t);
  cr_assert_eq(
      tn_test_sh(
          &out,
          "printf '%%s' '{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"NetworkPolicy\",\"metadata\":{"
          "\"name\":\"allow-dns\",\"namespace\":\"%s-prod\",\"labels\":{\"tenancy.dev/tenant\":\"%s\","
          "\"tenancy.dev/environment\":\"prod\",\"app.kubernetes.io/managed-by\":\"tenancy-operator\"},"
          "\"ownerReferences\":[{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"name\":\"%s\","
          "\"uid\":\"%s\",\"controller\":true}]},\"spec\":{\"podSelector\":{},\"policyTypes\":[\"Egress\"]}}'"
          " | kubectl create -f -",
          t, t, t, uid),
      0, "%s", out);
  free(out);
  free(uid);
  cr_assert_eq(
      tn_test_sh_until(15, &out,
                       "kubectl get -n %s-prod networkpolicy allow-same-tenant -o name && test -z "
                       "\"$(kubectl get -n %s-prod networkpolicy allow-dns --ignore-not-found -o name)\"",
                       t, t),
      0, "the operator left its former allow-dns policy: %s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&out, "kubectl delete namespace %s-prod --wait=false", t), 0, "%s", out);
  free(out);
  char ns[256];
  snprintf(ns, sizeof ns, "namespace %s-prod", t);
  /* Deleted by hand: once gone it is created again. */
  assert_jsonpath(ns, "{.status.phase}", "Active", 150);
  wait_ready(t, 60);
}

Test(operator, foreign_namespace_is_never_adopted) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-coll");
  cr_assert_eq(
      tn_test_sh(&out,
                 "kubectl create namespace %s-prod && kubectl label namespace %s-prod owner=someone-else", t,
                 t),
      0, "%s", out);
  free(out);
  char *before = tn_test_output(
      "kubectl get namespace %s-prod -o jsonpath='{.metadata.labels}{.metadata.ownerReferences}'", t);
  cr_assert_eq(apply_tenant(&out, t, "Active", "standard", "prod", NULL), 0, "%s", out);
  free(out);
  char what[256];
  snprintf(what, sizeof what, "tenant %s", t);
  assert_jsonpath(what, "{.status.conditions[?(@.type==\"NamespacesReady\")].reason}", "Conflict", 60);
  char *msg = tn_test_output(
      "kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"NamespacesReady\")].message}'", t);
  cr_assert(strstr(msg, "not owned by tenant") != NULL, "the message must say why: %s", msg);
  free(msg);
  assert_jsonpath(what, "{.status.conditions[?(@.type==\"Ready\")].status}", "False", 5);
  sleep(3);
  char *after = tn_test_output(
      "kubectl get namespace %s-prod -o jsonpath='{.metadata.labels}{.metadata.ownerReferences}'", t);
  cr_assert_str_eq(after, before, "the foreign namespace was changed");
  free(before);
  free(after);
  /* Deleting the tenant must not delete the foreign namespace either. */
  cr_assert_eq(tn_test_sh(&out, "kubectl delete tenant %s --wait --timeout=60s", t), 0, "%s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&out, "kubectl get namespace %s-prod", t), 0,
               "the foreign namespace was deleted: %s", out);
  free(out);
  tn_test_sh(NULL, "kubectl delete namespace %s-prod --wait=false", t);
}

Test(operator, deleting_a_tenant_removes_everything) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-del");
  cr_assert_eq(apply_tenant(&out, t, "Active", "standard", "prod\",\"dev", NULL), 0, "%s", out);
  free(out);
  wait_ready(t, 60);
  int rc = tn_test_sh(&out, "kubectl delete tenant %s --wait --timeout=150s", t);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&out, "kubectl get namespaces -l tenancy.dev/tenant=%s -o name", t), 0);
  cr_assert_str_eq(out, "", "namespaces left behind: %s", out);
  free(out);
}

static double writes(void) {
  char *body = NULL;
  double sum = 0;
  if (tn_test_http_get(op.metrics_port, "/metrics", &body) == 200) {
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n"))
      if (strncmp(line, "rest_client_requests_total{", 27) == 0 && !strstr(line, "method=\"GET\""))
        sum += strtod(strrchr(line, ' ') + 1, NULL);
  }
  free(body);
  return sum;
}

Test(operator, an_unchanged_tenant_costs_zero_writes_per_resync) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-idle");
  cr_assert_eq(apply_tenant(&out, t, "Active", "standard", "prod\",\"staging", NULL), 0, "%s", out);
  free(out);
  wait_ready(t, 60);
  /* Quiescence first: other tenants left by earlier tests may still be finishing (a deletion
   * waiting for its namespaces), and the Region's and Plan's tenant counts are written at most
   * every 5 s (kinds_status.c), so the new tenant's count may come up to 5 s after its last write.
   * With --sync-period=3s, a tenant that wrote on every resync would never stay quiet for 7 s, so
   * this wait cannot hide the behaviour under test. */
  double quiet_since = tn_test_now(), last = writes(), give_up = tn_test_now() + 90;
  while (tn_test_now() - quiet_since < 7 && tn_test_now() < give_up) {
    usleep(250 * 1000);
    double w = writes();
    if (w != last) {
      last = w;
      quiet_since = tn_test_now();
    }
  }
  cr_assert_lt(tn_test_now(), give_up, "the operator never stopped writing");
  double before = writes();
  double reconciles_before = tn_test_metric_sum(op.metrics_port, "controller_runtime_reconcile_total{");
  sleep(8); /* --sync-period=3s: at least two full resyncs */
  double after = writes();
  double reconciles_after = tn_test_metric_sum(op.metrics_port, "controller_runtime_reconcile_total{");
  cr_assert_gt(reconciles_after, reconciles_before, "no resync happened: the test would prove nothing");
  cr_assert_eq(after, before, "%.0f API writes during idle resyncs", after - before);
}
