/* test_runtime.c - the operator program as a whole: flags, probes, /metrics, graceful shutdown,
 * and leader election between two real processes. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

static void install(void) { tn_test_install_api(); }

TestSuite(runtime, .init = install, .timeout = 180);

Test(runtime, help_and_bad_flags) {
  const char *bin = tn_test_env("TENANCY_OPERATOR_BIN");
  char *out = NULL;
  cr_assert_eq(tn_test_sh(&out, "'%s' --help", bin), 0, "%s", out);
  const char *flags[] = {"--kubeconfig",
                         "--metrics-bind-address",
                         "--health-probe-bind-address",
                         "--leader-elect",
                         "--leader-election-namespace",
                         "--workers",
                         "--sync-period",
                         "--log-level",
                         "--pg-dsn",
                         "--pg-dsn-file",
                         NULL};
  for (int i = 0; flags[i]; i++)
    cr_assert(strstr(out, flags[i]) != NULL, "--help does not mention %s", flags[i]);
  free(out);
  cr_assert_eq(tn_test_sh(&out, "'%s' --workers=zero", bin), 2);
  cr_assert(strstr(out, "--workers: invalid value (not shown); expected a whole number") != NULL, "%s", out);
  cr_assert(strstr(out, "zero") == NULL, "a refused value is echoed: %s", out);
  free(out);
  cr_assert_eq(
      tn_test_sh(&out,
                 "printf 'apiVersion: v1\\nkind: Config\\ncurrent-context: c\\ncontexts:\\n- name: c\\n"
                 "  context: {cluster: k, user: u}\\nclusters: 7\\n' > /tmp/tn-bad-kc-%d && "
                 "'%s' --kubeconfig=/tmp/tn-bad-kc-%d --metrics-bind-address=0 "
                 "--health-probe-bind-address=0",
                 (int)getpid(), bin, (int)getpid()),
      1);
  cr_assert(strstr(out, "clusters") != NULL, "a malformed kubeconfig must be named by field: %s", out);
  free(out);
}

Test(runtime, probes_metrics_and_graceful_shutdown) {
  struct tn_test_operator op;
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  bool ready = tn_test_operator_wait_ready(&op, 60);
  if (!ready)
    tn_test_operator_dump_log(&op);
  cr_assert(ready, "the operator never became ready");
  char *body = NULL;
  cr_assert_eq(tn_test_http_get(op.probe_port, "/healthz", &body), 200);
  free(body);
  /* Some reconcile work, so that every family has samples (request counters appear with the
   * first completed request, as client_golang's do). */
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-rt");
  cr_assert_eq(
      tn_test_sh(&out,
                 "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\","
                 "\"metadata\":{\"name\":\"%s\"},\"spec\":{\"state\":\"Draft\",\"plan\":\"starter\"}}' "
                 "| kubectl apply -f - && kubectl wait --for=jsonpath='{.status.state}'=Draft tenant/%s "
                 "--timeout=60s",
                 t, t),
      0, "%s", out);
  free(out);
  double end = tn_test_now() + 15;
  for (;;) { /* counters are bumped just after the answer the test saw: allow a moment */
    cr_assert_eq(tn_test_http_get(op.metrics_port, "/metrics", &body), 200);
    if (strstr(body, "rest_client_requests_total{") || tn_test_now() > end)
      break;
    free(body);
    usleep(100 * 1000);
  }
  const char *names[] = {"controller_runtime_reconcile_total{",
                         "controller_runtime_reconcile_time_seconds_bucket{",
                         "controller_runtime_reconcile_errors_total{",
                         "workqueue_depth{",
                         "workqueue_adds_total{",
                         "workqueue_queue_duration_seconds_bucket{",
                         "workqueue_work_duration_seconds_bucket{",
                         "workqueue_retries_total{",
                         "workqueue_unfinished_work_seconds{",
                         "workqueue_longest_running_processor_seconds{",
                         "rest_client_requests_total{",
                         "process_resident_memory_bytes ",
                         NULL};
  for (int i = 0; names[i]; i++)
    cr_assert(strstr(body, names[i]) != NULL, "/metrics lacks %s", names[i]);
  /* A real Prometheus parser accepts it. */
  char path[128];
  snprintf(path, sizeof path, "/tmp/tn-metrics-%d.txt", (int)getpid());
  FILE *f = fopen(path, "w");
  fputs(body, f);
  fclose(f);
  free(body);
  int rc = tn_test_sh(&out, "'%s/hack/promcheck.sh' < '%s'", tn_test_env("TENANCY_ROOT"), path);
  cr_assert_eq(rc, 0, "the Prometheus text parser refused /metrics: %s", out);
  free(out);
  unlink(path);

  double t0 = tn_test_now();
  int code = tn_test_operator_stop(&op, SIGTERM, 40);
  if (code != 0)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(code, 0, "SIGTERM must end the operator with exit code 0 (got %d)", code);
  cr_log_info("graceful shutdown took %.2f s", tn_test_now() - t0);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

static double master_status(struct tn_test_operator *op) {
  return tn_test_metric_sum(op->metrics_port, "leader_election_master_status{");
}

static bool wait_leader(struct tn_test_operator *op, double timeout) {
  double end = tn_test_now() + timeout;
  while (tn_test_now() < end) {
    if (master_status(op) == 1)
      return true;
    usleep(100 * 1000);
  }
  return false;
}

Test(runtime, one_leader_and_takeover_after_sigkill) {
  char id[64], idflag[96];
  tn_test_unique_name(id, sizeof id, "tn-leader");
  snprintf(idflag, sizeof idflag, "--leader-election-id=%s", id);
  const char *args[] = {"--leader-elect", "--leader-election-namespace=default", idflag, NULL};
  struct tn_test_operator a, b;
  tn_test_operator_start(&a, args);
  cr_assert(wait_leader(&a, 30), "the first operator did not become leader");
  tn_test_operator_start(&b, args);
  cr_assert(tn_test_operator_wait_ready(&b, 60), "the standby must be ready (caches warm) without leading");
  sleep(3);
  cr_assert_eq(master_status(&b), 0, "two leaders at once");
  cr_assert_eq(master_status(&a), 1);

  double t0 = tn_test_now();
  tn_test_operator_stop(&a, SIGKILL, 10);
  bool took = wait_leader(&b, 30);
  double took_s = tn_test_now() - t0;
  if (!took)
    tn_test_operator_dump_log(&b);
  cr_assert(took, "the standby did not take over");
  cr_log_info("takeover after SIGKILL of the leader: %.2f s (lease duration 15 s)", took_s);
  cr_assert_leq(took_s, 15 + 2 + 3, "takeover took %.2f s, more than lease duration + retry period + slack",
                took_s);

  /* Graceful stop releases the lease: the holder becomes empty at once. */
  cr_assert_eq(tn_test_operator_stop(&b, SIGTERM, 40), 0);
  char *holder = NULL;
  cr_assert_eq(
      tn_test_sh(&holder, "kubectl -n default get lease %s -o jsonpath='{.spec.holderIdentity}'", id), 0);
  cr_assert_str_eq(holder, "", "the lease was not released on shutdown");
  free(holder);
}

/* The operator runs with exactly the RBAC and the admission policy of manifests/deploy/ (a
 * ServiceAccount token, not the admin certificate) and still converges the samples and tears down
 * a tenant: the least-privilege rules are enough, and nothing it does is forbidden (what they
 * refuse it: test_identity.c). */
Test(runtime, least_privilege_rbac_is_enough) {
  const char *root = tn_test_env("TENANCY_ROOT");
  char *out = NULL, kc[128], t[64];
  snprintf(kc, sizeof kc, "/tmp/tn-sa-kubeconfig-%d", (int)getpid());
  int rc = tn_test_sh(
      &out,
      "kubectl apply -f '%s/manifests/deploy/00-namespace.yaml' -f '%s/manifests/deploy/10-rbac.yaml' "
      "-f '%s/manifests/deploy/15-operator-policy.yaml' "
      "-f '%s/manifests/deploy/20-tenant-roles.yaml' >/dev/null && "
      "tok=$(kubectl -n tenancy-system create token tenancy-operator --duration=1h) && "
      "kubectl config --kubeconfig='%s' set-cluster c --server=\"$TENANCY_KUBE_SERVER\" "
      "--certificate-authority=\"$TENANCY_CA_FILE\" --embed-certs >/dev/null && "
      "kubectl config --kubeconfig='%s' set-credentials sa --token=\"$tok\" >/dev/null && "
      "kubectl config --kubeconfig='%s' set-context c --cluster=c --user=sa >/dev/null && "
      "kubectl config --kubeconfig='%s' use-context c >/dev/null && "
      "kubectl --kubeconfig='%s' auth whoami -o jsonpath='{.status.userInfo.username}'",
      root, root, root, root, kc, kc, kc, kc, kc);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "system:serviceaccount:tenancy-system:tenancy-operator");
  free(out);

  char kcflag[160], whflag[96];
  snprintf(kcflag, sizeof kcflag, "--kubeconfig=%s", kc);
  /* With its admission webhook too: the certificate Secret and the registration are allowed. */
  snprintf(whflag, sizeof whflag, "--webhook-bind-address=127.0.0.1:%d", tn_test_free_port());
  struct tn_test_operator op;
  tn_test_operator_start(
      &op, (const char *const[]){kcflag, "--leader-elect", "--leader-election-namespace=tenancy-system",
                                 whflag, "--webhook-cert-secret=tenancy-system/tn-test-webhook-tls", NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator running as its ServiceAccount never became ready");
  }
  tn_test_unique_name(t, sizeof t, "tn-rbac");
  rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"environments\":[\"prod\"],"
      "\"identity\":{\"groupBindings\":[{\"group\":\"g\",\"role\":\"tenant-developer\"}]}}}' | kubectl apply "
      "-f - && "
      "kubectl wait --for=jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'=True tenant/%s "
      "--timeout=90s",
      t, t);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* The samples (renamed, so as not to meet another suite's): acme Active with two environments and
   * group bindings, globex a Draft. */
  char acme[64], globex[64];
  snprintf(acme, sizeof acme, "%s-acme", t);
  snprintf(globex, sizeof globex, "%s-globex", t);
  rc = tn_test_sh(
      &out,
      "sed -e 's/^  name: acme .*/  name: %s/' -e 's/cus_8TzQ/cus-%s/' -e 's/0015g00000AbCdE/crm-%s/' "
      "'%s/manifests/samples/10-tenant-acme.yaml' | kubectl apply -f - && "
      "sed -e 's/^  name: globex/  name: %s/' '%s/manifests/samples/11-tenant-globex.yaml' | "
      "kubectl apply -f - && "
      "kubectl wait --for=jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'=True "
      "tenant/%s --timeout=90s && "
      "kubectl wait --for=jsonpath='{.status.state}'=Draft tenant/%s --timeout=60s && "
      "kubectl get rolebindings -n %s-prod -l tenancy.dev/tenant=%s -o name | wc -l",
      acme, t, t, root, globex, root, acme, globex, acme, acme);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "the samples did not converge under the shipped RBAC and policy: %s", out);
  free(out);
  rc = tn_test_sh(&out,
                  "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Archived\"}}' && "
                  "kubectl wait --for=jsonpath='{.status.state}'=Archived tenant/%s --timeout=60s && "
                  "kubectl delete tenant %s %s --wait --timeout=120s",
                  acme, acme, acme, globex);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* Through the webhook an Active tenant cannot be deleted: archive it first. */
  rc = tn_test_sh(&out,
                  "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Archived\"}}' && "
                  "kubectl wait --for=jsonpath='{.status.state}'=Archived tenant/%s --timeout=60s && "
                  "kubectl delete tenant %s --wait --timeout=120s",
                  t, t, t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  cr_assert_eq(tn_test_operator_stop(&op, SIGTERM, 40), 0);
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found; "
                   "kubectl -n tenancy-system delete secret tn-test-webhook-tls --ignore-not-found");
  rc = tn_test_sh(&out, "grep -ci forbidden '%s'", op.log_path);
  cr_assert_str_eq(out, "0\n", "the operator was refused something under its RBAC (see %s)", op.log_path);
  free(out);
  unlink(kc);
}
