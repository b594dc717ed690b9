/* test_first_pass.c - the controller's first pass (what /readyz waits for) ends when every key
 * queued at the start has been reconciled once, even when a resync keeps the queue from ever being
 * empty; the work queue's pass marks (tn_workqueue_mark_pass) underneath. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/controller.h"
#include "runtime/workqueue.h"
#include "tn_test.h"

#define KEYS 40

struct resync {
  struct tn_controller *c;
  pthread_mutex_t mu;
  int calls[KEYS + 8];
  atomic_int total;
  atomic_bool stop;
};

/* A resync with a very short period: every key queued again every millisecond, faster than the
 * workers drain them, so the queue is never empty while they run. */
static void *resync_main(void *arg) {
  struct resync *r = arg;
  char key[16];
  while (!atomic_load(&r->stop)) {
    for (int i = 0; i < KEYS; i++) {
      snprintf(key, sizeof key, "k%d", i);
      tn_controller_enqueue(r->c, key);
    }
    usleep(1000);
  }
  return NULL;
}

static int key_index(const char *key) { return atoi(key + 1); }

static struct tn_result reconcile(void *ud, const char *key) {
  struct resync *r = ud;
  int i = key_index(key);
  pthread_mutex_lock(&r->mu);
  r->calls[i]++;
  pthread_mutex_unlock(&r->mu);
  atomic_fetch_add(&r->total, 1);
  usleep(500);
  return TN_RESULT_OK;
}

Test(first_pass, ends_when_every_key_queued_at_start_was_reconciled_though_the_queue_never_empties) {
  struct resync r = {.mu = PTHREAD_MUTEX_INITIALIZER};
  struct tn_controller_config cfg = {.name = "fp", .workers = 3, .reconcile = reconcile, .ud = &r};
  r.c = tn_controller_new(&cfg);
  cr_assert_not_null(r.c);
  char key[16];
  for (int i = 0; i < KEYS; i++) {
    snprintf(key, sizeof key, "k%d", i);
    tn_controller_enqueue(r.c, key);
  }
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, resync_main, &r), 0);
  cr_assert_eq(tn_controller_start(r.c), 0);
  double end = tn_test_now() + 10;
  while (!tn_controller_first_pass_done(r.c) && tn_test_now() < end)
    usleep(1000);
  bool done = tn_controller_first_pass_done(r.c);
  int missed = 0;
  pthread_mutex_lock(&r.mu);
  for (int i = 0; i < KEYS; i++)
    missed += r.calls[i] == 0;
  pthread_mutex_unlock(&r.mu);
  size_t queued = tn_workqueue_len(tn_controller_queue(r.c));
  int total = atomic_load(&r.total);
  atomic_store(&r.stop, true);
  pthread_join(th, NULL);
  tn_controller_stop(r.c, 5);
  tn_controller_free(r.c);
  cr_assert(done, "the first pass never ended (%d reconciles, %zu queued): it waited for an empty queue",
            total, queued);
  cr_assert_eq(missed, 0, "%d keys were not reconciled before the first pass ended", missed);
}

Test(first_pass, no_keys_means_done_at_start) {
  struct resync r = {.mu = PTHREAD_MUTEX_INITIALIZER};
  struct tn_controller_config cfg = {.name = "fp0", .workers = 1, .reconcile = reconcile, .ud = &r};
  r.c = tn_controller_new(&cfg);
  cr_assert_not(tn_controller_first_pass_done(r.c));
  cr_assert_eq(tn_controller_start(r.c), 0);
  cr_assert(tn_controller_first_pass_done(r.c));
  tn_controller_stop(r.c, 5);
  tn_controller_free(r.c);
}

Test(first_pass, queue_marks_count_each_key_once_until_done) {
  struct tn_workqueue *q = tn_workqueue_new("fpq", NULL, NULL);
  cr_assert_not_null(q);
  tn_workqueue_add(q, "a");
  tn_workqueue_add(q, "b");
  tn_workqueue_add(q, "a"); /* a duplicate keeps its place and its one mark */
  cr_assert_eq(tn_workqueue_mark_pass(q), 2);
  tn_workqueue_add(q, "c"); /* after the mark: not in the pass */
  cr_assert_eq(tn_workqueue_pass_left(q), 2);
  char *item = NULL;
  cr_assert_eq(tn_workqueue_get(q, &item), 0);
  cr_assert_str_eq(item, "a");
  tn_workqueue_add(q, "a"); /* added again while processing: queued again at done, unmarked */
  tn_workqueue_done(q, item);
  free(item);
  cr_assert_eq(tn_workqueue_pass_left(q), 1);
  cr_assert_eq(tn_workqueue_get(q, &item), 0);
  cr_assert_str_eq(item, "b");
  cr_assert_eq(tn_workqueue_pass_left(q), 1, "handed out is not done");
  tn_workqueue_done(q, item);
  free(item);
  cr_assert_eq(tn_workqueue_pass_left(q), 0);
  for (int i = 0; i < 2; i++) { /* c, then a again: neither changes the count */
    cr_assert_eq(tn_workqueue_get(q, &item), 0);
    tn_workqueue_done(q, item);
    free(item);
  }
  cr_assert_eq(tn_workqueue_pass_left(q), 0);
  tn_workqueue_free(q);
}
