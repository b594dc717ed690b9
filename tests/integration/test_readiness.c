/* test_readiness.c - /readyz at start-up with many tenants (issue 18): polled from the moment the
 * operator starts, its first 200 must come only after every cached tenant has been reconciled.
 * Session 24's restart with 10,100 tenants answered ready after 559 reconciles: the probe said
 * ready between the caches syncing and main starting the workers, and the workers' first pass
 * covered only the tenants the informer's handlers had queued by then. */
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

#define OK(...) tn_test_sh_ok(NULL, __VA_ARGS__)
#define TENANTS 60
#define RECONCILES "controller_runtime_reconcile_total{controller=\"tenant\""

static size_t count_tenants(void) {
  char *out = tn_test_output("kubectl get tenants --no-headers 2>/dev/null | wc -l");
  size_t n = out ? strtoul(out, NULL, 10) : 0;
  free(out);
  return n;
}

static void create_tenants(const char *label) {
  char *list = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&list, &len);
  cr_assert_not_null(f);
  fprintf(f, "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[");
  for (int i = 0; i < TENANTS; i++)
    fprintf(f,
            "%s{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s-%d\","
            "\"labels\":{\"tenancy-test/readiness\":\"%s\"}},\"spec\":{\"state\":\"Active\",\"plan\":"
            "\"starter\",\"isolation\":\"shared\",\"residency\":{\"allowedRegions\":[\"eu-west-1\"]},"
            "\"environments\":[\"prod\"]}}",
            i ? "," : "", label, i, label);
  fprintf(f, "]}");
  fclose(f);
  char path[] = "/tmp/readiness-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, list, len), (ssize_t)len);
  close(fd);
  free(list);
  OK("kubectl create -f %s >/dev/null", path);
  unlink(path);
}

Test(readiness, first_ready_comes_after_every_cached_tenant_is_reconciled, .timeout = 600) {
  char label[64];
  tn_test_unique_name(label, sizeof label, "rdy");
  tn_test_install_api();
  create_tenants(label);

  /* The tenants converged by a first operator, which then stops: the restart finds them done. */
  struct tn_test_operator op = {0};
  const char *const args[] = {"--leader-elect=false", "--sync-period=10m", NULL};
  tn_test_operator_start_ready(&op, args);
  if (tn_test_sh(NULL,
                 "kubectl wait --for=condition=Ready tenant -l tenancy-test/readiness=%s --timeout=300s",
                 label) != 0) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the tenants did not become Ready");
  }
  cr_assert_eq(tn_test_operator_stop(&op, SIGTERM, 40), 0);
  size_t cached = count_tenants();
  cr_assert_geq(cached, (size_t)TENANTS);

  /* The restart, /readyz polled back to back from the start: at its first 200 every tenant in the
   * cache has been reconciled (the counter is read right after the 200; it only grows, so a count
   * below the tenants means the 200 came before them). */
  struct tn_test_operator op2 = {0};
  tn_test_operator_start(&op2, args);
  double t0 = tn_test_now();
  int status = 0, polls = 0, not_ready = 0;
  char *body = NULL;
  while (tn_test_now() - t0 < 120) {
    free(body);
    body = NULL;
    status = tn_test_http_get(op2.probe_port, "/readyz", &body);
    polls++;
    if (status == 200)
      break;
    if (status == 503)
      not_ready++;
  }
  double reconciles = tn_test_metric_sum(op2.metrics_port, RECONCILES);
  free(body);
  if (status != 200 || reconciles < (double)cached)
    tn_test_operator_dump_log(&op2);
  cr_assert_eq(status, 200, "the restarted operator became ready (%d polls)", polls);
  cr_assert_gt(not_ready, 0, "/readyz was polled while not ready (the start was observed)");
  cr_assert_geq(reconciles, (double)cached,
                "at the first 200 only %.0f tenant reconciles of %zu cached tenants had run", reconciles,
                cached);

  OK("kubectl delete tenant -l tenancy-test/readiness=%s --wait=false >/dev/null", label);
  int gone =
      tn_test_sh(NULL, "kubectl wait --for=delete tenant -l tenancy-test/readiness=%s --timeout=240s", label);
  int code = tn_test_operator_stop(&op2, SIGTERM, 40);
  if (code != 0)
    tn_test_operator_dump_log(&op2);
  cr_assert_eq(gone, 0, "the tenants were deleted");
  cr_assert_eq(code, 0, "the operator exited cleanly (a sanitizer report exits non-zero)");
}
