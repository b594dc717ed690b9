/* test_kinds_counts.c - a Plan's tenantsCount and a Region's tenantsPlaced while tenants pour in
 * (issue 18): the kinds-status controller writes a change of a count alone at most every 5 s per
 * object; these tests check that the counts still end exact after a burst of creates and a burst
 * of deletes, with the real operator binary against the real API server. */
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
  char *out = NULL;
  tn_test_sh(
      &out, "kubectl get tenants,plans,regions -o name | grep '/kc-' | xargs -r kubectl delete --wait=false");
  free(out);
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", "--sync-period=30s", NULL});
}

static void stop(void) {
  int code = tn_test_operator_stop(&op, SIGTERM, 40);
  if (code != 0)
    tn_test_operator_dump_log(&op);
}

TestSuite(kinds_counts, .init = start, .fini = stop, .timeout = 300);

#define OK(...) tn_test_sh_ok(NULL, __VA_ARGS__)
#define wait_field(...) tn_test_wait_jsonpath(&op, __VA_ARGS__)
#define apply(...) tn_test_apply_json(NULL, __VA_ARGS__)

#define BURST 12

Test(kinds_counts, counts_end_exact_after_a_burst_of_creates_and_deletes) {
  char p[64], r[64], prefix[64], what[128];
  tn_test_unique_name(p, sizeof p, "kc-plan");
  tn_test_unique_name(r, sizeof r, "kc-reg");
  tn_test_unique_name(prefix, sizeof prefix, "kc-tn");
  apply("{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Plan\",\"metadata\":{\"name\":\"%s\"},\"spec\":{"
        "\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":\"1Gi\",\"pods\":5,\"services\":2}}}",
        p);
  apply(
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},\"spec\":{"
      "\"available\":true,\"isolationModes\":[\"shared\"]}}",
      r);
  snprintf(what, sizeof what, "plan %s", p);
  wait_field(what, "{.status.tenantsCount}", "0", 30);

  /* BURST tenants in one kubectl call (a List: the creates follow each other at once), so the
   * counts change many times within one interval. */
  char *list = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&list, &len);
  cr_assert_not_null(f);
  fprintf(f, "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[");
  for (int i = 0; i < BURST; i++)
    fprintf(
        f,
        "%s{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s-%d\"},"
        "\"spec\":{\"state\":\"Active\",\"plan\":\"%s\",\"isolation\":\"shared\",\"residency\":{"
        "\"allowedRegions\":[\"%s\"]},\"environments\":[\"prod\"]}}",
        i ? "," : "", prefix, i, p, r);
  fprintf(f, "]}");
  fclose(f);
  char path[] = "/tmp/kc-burst-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, list, len), (ssize_t)len);
  close(fd);
  free(list);
  OK("kubectl create -f %s >/dev/null", path);
  unlink(path);

  char want[16];
  snprintf(want, sizeof want, "%d", BURST);
  wait_field(what, "{.status.tenantsCount}", want, 60);
  snprintf(what, sizeof what, "region %s", r);
  wait_field(what, "{.status.tenantsPlaced}", want, 120); /* once the operator placed every one */

  /* Half of them deleted at once: both counts come down to the exact rest. */
  char names[1024] = "";
  size_t off = 0;
  for (int i = 0; i < BURST / 2; i++)
    off += (size_t)snprintf(names + off, sizeof names - off, " %s-%d", prefix, i);
  OK("kubectl delete tenant%s --wait=false", names);
  snprintf(want, sizeof want, "%d", BURST - BURST / 2);
  snprintf(what, sizeof what, "plan %s", p);
  wait_field(what, "{.status.tenantsCount}", want, 120);
  snprintf(what, sizeof what, "region %s", r);
  wait_field(what, "{.status.tenantsPlaced}", want, 120);

  /* Once quiet the stored counts stay exact: a resync recounts and finds nothing to write. */
  sleep(6);
  snprintf(what, sizeof what, "plan %s", p);
  wait_field(what, "{.status.tenantsCount}", want, 5);
  snprintf(what, sizeof what, "region %s", r);
  wait_field(what, "{.status.tenantsPlaced}", want, 5);

  for (int i = BURST / 2; i < BURST; i++)
    OK("kubectl delete tenant %s-%d --wait=false", prefix, i);
  for (int i = 0; i < BURST; i++)
    OK("kubectl wait --for=delete tenant/%s-%d --timeout=120s >/dev/null 2>&1 || true", prefix, i);
  OK("kubectl delete plan %s", p);
  OK("kubectl delete region %s", r);
}
