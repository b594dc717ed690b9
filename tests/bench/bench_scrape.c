/* bench_scrape.c - what a /metrics scrape costs with the tenancy collector: N tenants in a store (as
 * the informer caches them, 9 conditions each), decoded one at a time and counted as
 * tenancy_metrics.c does at scrape time, with and without --metrics-per-tenant; and, for comparison,
 * what listing the whole cache (tn_store_list) would cost; then with the counts kept between
 * scrapes (tn_tenancy_metrics_collect_memo): the first scrape, and the next ones while the store
 * is unchanged. Prints figures; asserts nothing.
 *
 *   bench_scrape [tenants]      (default 10000) */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "converge/tenancy_metrics.h"
#include "kube/store.h"
#include "runtime/metrics.h"
#include "util/buf.h"

struct ctx {
  struct tn_store *store;
  bool per_tenant;
  struct tn_tenancy_metrics_memo *memo; /* NULL: count at every scrape */
};

static void collect(void *ud, struct tn_collect *c) {
  struct ctx *x = ud;
  if (x->memo) /* as the operator's collector does since session 26 */
    tn_tenancy_metrics_collect_memo(x->memo, c, x->store, (double)time(NULL), x->per_tenant);
  else
    tn_tenancy_metrics_collect_store(c, x->store, (double)time(NULL), x->per_tenant);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: figures hold on a busy machine */
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
  static const char *const types[] = {"Ready",           "PolicyCompliant", "Placed",
                                      "NamespacesReady", "NetworkIsolated", "QuotaApplied",
                                      "AccessBound",     "DatabaseReady",   "KeysReady"};
  static const char *const plans[] = {"free", "standard", "pro", "enterprise"};
  static const char *const regions[] = {"eu-west-1", "eu-central-1", "us-east-1"};
  struct ctx x = {.store = tn_store_new()};
  struct tn_error err = {0};
  for (long i = 0; i < n; i++) {
    char name[64];
    snprintf(name, sizeof name, "tenant-%06ld", i);
    json_t *conds = json_array();
    for (size_t k = 0; k < 9; k++)
      json_array_append_new(conds, json_pack("{s:s,s:s,s:s,s:s}", "type", types[k], "status",
                                             i % 50 ? "True" : "False", "reason",
                                             i % 50 ? "Converged" : "NotConverged", "message", "ok"));
    json_t *t = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:s},s:{s:s,s:o,s:{s:s,s:s},s:{s:i,s:s}}}",
                          "apiVersion", "tenancy.dev/v1alpha1", "kind", "Tenant", "metadata", "name", name,
                          "uid", name, "spec", "plan", plans[i % 4], "state", "Active", "status", "state",
                          "Active", "conditions", conds, "placement", "region", regions[i % 3], "isolation",
                          "shared", "keys", "version", 1, "rotatedAt", "2026-11-01T00:00:00Z");
    tn_store_upsert(x.store, t, &err);
    json_decref(t);
  }
  {
    double t0 = now();
    json_t *all = tn_store_list(x.store);
    double t1 = now();
    printf("%ld tenants: listing the whole cache (tn_store_list, not used) %.1f ms CPU\n", n,
           (t1 - t0) * 1000);
    json_decref(all);
  }
  for (int per = 0; per <= 1; per++) {
    x.per_tenant = per;
    struct tn_metrics *m = tn_metrics_new();
    tn_metrics_register_collector(m, collect, &x);
    double best = 1e9;
    size_t bytes = 0;
    for (int r = 0; r < 5; r++) {
      struct tn_buf b;
      tn_buf_init(&b, (size_t)1 << 30);
      double t0 = now();
      tn_metrics_write(m, &b);
      double dt = now() - t0;
      if (dt < best)
        best = dt;
      bytes = b.len;
      tn_buf_cleanup(&b);
    }
    printf("%ld tenants, per-tenant %s: scrape %.1f ms CPU (best of 5), exposition %zu bytes\n", n,
           per ? "on " : "off", best * 1000, bytes);
    tn_metrics_free(m);
  }
  x.per_tenant = false;
  x.memo = tn_tenancy_metrics_memo_new();
  struct tn_metrics *m = tn_metrics_new();
  tn_metrics_register_collector(m, collect, &x);
  double first = 0, best = 1e9;
  for (int r = 0; r < 6; r++) {
    struct tn_buf b;
    tn_buf_init(&b, (size_t)1 << 30);
    double t0 = now();
    tn_metrics_write(m, &b);
    double dt = now() - t0;
    if (r == 0)
      first = dt;
    else if (dt < best)
      best = dt;
    tn_buf_cleanup(&b);
  }
  printf("%ld tenants, per-tenant off, counts kept between scrapes: first scrape %.1f ms CPU, then %.3f ms "
         "(best of 5, store unchanged; counted %lu time(s))\n",
         n, first * 1000, best * 1000, tn_tenancy_metrics_memo_recomputes(x.memo));
  tn_metrics_free(m);
  tn_tenancy_metrics_memo_free(x.memo);
  tn_store_free(x.store);
  return 0;
}
