/* test_controller.c - reconcile results, worker exclusivity per key, owner mapping, first pass. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "runtime/controller.h"
#include "tn_test.h"

struct probe {
  pthread_mutex_t mu;
  int calls[8];
  int running[8];
  int overlap;
  int fail_times; /* key "k0" fails this many times first */
  double after_s; /* key "k1" returns requeue-after this once */
  struct tn_metrics *m;
};

static int idx(const char *key) { return key[1] - '0'; }

static struct tn_result reconcile(void *ud, const char *key) {
  struct probe *p = ud;
  int i = idx(key);
  pthread_mutex_lock(&p->mu);
  if (p->running[i])
    p->overlap++;
  p->running[i] = 1;
  int n = ++p->calls[i];
  pthread_mutex_unlock(&p->mu);
  usleep(2000);
  pthread_mutex_lock(&p->mu);
  p->running[i] = 0;
  pthread_mutex_unlock(&p->mu);
  if (i == 0 && n <= p->fail_times)
    return TN_RESULT_ERR;
  if (i == 1 && n == 1 && p->after_s > 0)
    return TN_RESULT_AFTER(p->after_s);
  return TN_RESULT_OK;
}

static int calls(struct probe *p, int i) {
  pthread_mutex_lock(&p->mu);
  int n = p->calls[i];
  pthread_mutex_unlock(&p->mu);
  return n;
}

static bool wait_calls(struct probe *p, int i, int want, double timeout) {
  double end = tn_test_now() + timeout;
  while (tn_test_now() < end) {
    if (calls(p, i) >= want)
      return true;
    usleep(1000);
  }
  return false;
}

static struct tn_controller *make(struct probe *p, int workers) {
  memset(p, 0, sizeof *p);
  pthread_mutex_init(&p->mu, NULL);
  p->m = tn_metrics_new();
  struct tn_controller_config cfg = {
      .name = "test", .workers = workers, .reconcile = reconcile, .ud = p, .metrics = p->m};
  struct tn_controller *c = tn_controller_new(&cfg);
  cr_assert_not_null(c);
  return c;
}

static void finish(struct tn_controller *c, struct probe *p) {
  tn_controller_free(c);
  tn_metrics_free(p->m);
  pthread_mutex_destroy(&p->mu);
}

static double metric(struct tn_metrics *m, const char *line_prefix) {
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(tn_metrics_write(m, &b), 0);
  const char *at = strstr(tn_buf_str(&b), line_prefix);
  double v = at ? strtod(at + strlen(line_prefix), NULL) : -1;
  tn_buf_cleanup(&b);
  return v;
}

Test(controller, errors_are_retried_with_backoff_then_forgotten) {
  struct probe p;
  struct tn_controller *c = make(&p, 2);
  p.fail_times = 3;
  cr_assert_eq(tn_controller_start(c), 0);
  tn_controller_enqueue(c, "k0");
  /* 3 failures: retries after 5, 10, 20 ms, then success. */
  cr_assert(wait_calls(&p, 0, 4, 5), "k0 reconciled %d times", calls(&p, 0));
  usleep(50 * 1000);
  cr_assert_eq(calls(&p, 0), 4, "a success must not be retried");
  cr_assert_eq(tn_workqueue_num_requeues(tn_controller_queue(c), "k0"), 0, "success forgets failures");
  cr_assert_float_eq(metric(p.m, "controller_runtime_reconcile_total{controller=\"test\",result=\"error\"} "),
                     3, 1e-9);
  cr_assert_float_eq(
      metric(p.m, "controller_runtime_reconcile_total{controller=\"test\",result=\"success\"} "), 1, 1e-9);
  cr_assert_float_eq(metric(p.m, "controller_runtime_reconcile_errors_total{controller=\"test\"} "), 3, 1e-9);
  finish(c, &p);
}

Test(controller, requeue_after_runs_again_later) {
  struct probe p;
  struct tn_controller *c = make(&p, 1);
  p.after_s = 0.2;
  cr_assert_eq(tn_controller_start(c), 0);
  double t0 = tn_test_now();
  tn_controller_enqueue(c, "k1");
  cr_assert(wait_calls(&p, 1, 2, 5));
  cr_assert_geq(tn_test_now() - t0, 0.19, "requeued too early");
  cr_assert_float_eq(
      metric(p.m, "controller_runtime_reconcile_total{controller=\"test\",result=\"requeue_after\"} "), 1,
      1e-9);
  finish(c, &p);
}

Test(controller, one_key_never_runs_on_two_workers) {
  struct probe p;
  struct tn_controller *c = make(&p, 4);
  cr_assert_eq(tn_controller_start(c), 0);
  for (int round = 0; round < 200; round++)
    for (int k = 2; k < 6; k++) {
      char key[3] = {'k', (char)('0' + k), 0};
      tn_controller_enqueue(c, key);
    }
  for (int k = 2; k < 6; k++)
    cr_assert(wait_calls(&p, k, 1, 5));
  cr_assert(tn_controller_stop(c, 5));
  cr_assert_eq(p.overlap, 0, "a key was reconciled concurrently %d times", p.overlap);
  finish(c, &p);
}

Test(controller, first_pass_and_graceful_stop) {
  struct probe p;
  struct tn_controller *c = make(&p, 2);
  for (int k = 2; k < 8; k++) {
    char key[3] = {'k', (char)('0' + k), 0};
    tn_controller_enqueue(c, key);
  }
  cr_assert_not(tn_controller_first_pass_done(c));
  cr_assert_eq(tn_controller_start(c), 0);
  double end = tn_test_now() + 5;
  while (!tn_controller_first_pass_done(c) && tn_test_now() < end)
    usleep(1000);
  cr_assert(tn_controller_first_pass_done(c));
  for (int k = 2; k < 8; k++)
    cr_assert_geq(calls(&p, k), 1, "k%d not reconciled before the first pass ended", k);
  cr_assert(tn_controller_stop(c, 5), "nothing in flight: stop must report drained");
  finish(c, &p);
}

Test(controller, object_keys_and_owner_mapping) {
  char key[64];
  json_t *ns = json_pack("{s:{s:s}}", "metadata", "name", "acme-prod");
  cr_assert_eq(tn_object_key(ns, key, sizeof key), 0);
  cr_assert_str_eq(key, "acme-prod");
  json_t *cm = json_pack("{s:{s:s,s:s}}", "metadata", "name", "c", "namespace", "n");
  cr_assert_eq(tn_object_key(cm, key, sizeof key), 0);
  cr_assert_str_eq(key, "n/c");
  cr_assert_eq(tn_object_key(cm, key, 3), -ENAMETOOLONG);
  json_t *noname = json_pack("{s:{}}", "metadata");
  cr_assert_eq(tn_object_key(noname, key, sizeof key), -EINVAL);

  struct probe p;
  struct tn_controller *c = make(&p, 1);
  json_t *owned = json_pack("{s:{s:s,s:s,s:[{s:s,s:s,s:s,s:b},{s:s,s:s,s:s,s:b}]}}", "metadata", "name", "np",
                            "namespace", "acme-prod", "ownerReferences", "apiVersion", "apps/v1", "kind",
                            "Tenant", "name", "wrong-group", "controller", 1, "apiVersion",
                            "tenancy.dev/v1alpha1", "kind", "Tenant", "name", "acme", "controller", 1);
  cr_assert(tn_controller_enqueue_owner(c, owned, "tenancy.dev", "Tenant", false));
  json_t *not_controller =
      json_pack("{s:{s:s,s:[{s:s,s:s,s:s,s:b}]}}", "metadata", "name", "x", "ownerReferences", "apiVersion",
                "tenancy.dev/v1alpha1", "kind", "Tenant", "name", "other", "controller", 0);
  cr_assert_not(tn_controller_enqueue_owner(c, not_controller, "tenancy.dev", "Tenant", false));
  cr_assert_eq(tn_workqueue_len(tn_controller_queue(c)), 1);
  char *item = NULL;
  cr_assert_eq(tn_workqueue_get(tn_controller_queue(c), &item), 0);
  cr_assert_str_eq(item, "acme");
  tn_workqueue_done(tn_controller_queue(c), item);
  free(item);
  json_decref(ns);
  json_decref(cm);
  json_decref(noname);
  json_decref(owned);
  json_decref(not_controller);
  finish(c, &p);
}
