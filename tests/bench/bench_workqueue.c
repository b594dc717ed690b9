/* bench_workqueue.c - work queue throughput: producers adding keys, workers doing get+done.
 *
 * Counting: every call is one queue operation - each tn_workqueue_add (also one that is
 * deduplicated), each tn_workqueue_get that hands out an item, each tn_workqueue_done.
 * ops/s = (adds + gets + dones) / wall time from the first add until every worker has seen
 * the shutdown. Prints figures, asserts nothing.
 *
 *   bench_workqueue [adds per scenario, default 2000000] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/metrics.h"
#include "runtime/workqueue.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct run {
  struct tn_workqueue *q;
  char **keys;
  int n_keys;
  long adds_per_producer;
  atomic_int producer_id;
  _Atomic long gets;
};

static void *producer_main(void *arg) {
  struct run *r = arg;
  int id = atomic_fetch_add(&r->producer_id, 1);
  for (long i = 0; i < r->adds_per_producer; i++)
    tn_workqueue_add(r->q, r->keys[(i * 7919 + id * 104729) % r->n_keys]);
  return NULL;
}

static void *worker_main(void *arg) {
  struct run *r = arg;
  long gets = 0;
  char *item;
  while (tn_workqueue_get(r->q, &item) == 0) {
    gets++;
    tn_workqueue_done(r->q, item);
    free(item);
  }
  atomic_fetch_add(&r->gets, gets);
  return NULL;
}

static void scenario(const char *title, long adds, int n_keys, int producers, int workers, bool metrics) {
  struct run r = {.n_keys = n_keys, .adds_per_producer = adds / producers};
  struct tn_metrics *m = metrics ? tn_metrics_new() : NULL;
  r.q = tn_workqueue_new("bench", m, NULL);
  r.keys = malloc((size_t)n_keys * sizeof *r.keys);
  for (int i = 0; i < n_keys; i++) {
    r.keys[i] = malloc(32);
    snprintf(r.keys[i], 32, "tenant-%d", i);
  }
  pthread_t pt[16], wt[16];
  double t0 = now_s();
  for (int i = 0; i < workers; i++)
    pthread_create(&wt[i], NULL, worker_main, &r);
  for (int i = 0; i < producers; i++)
    pthread_create(&pt[i], NULL, producer_main, &r);
  for (int i = 0; i < producers; i++)
    pthread_join(pt[i], NULL);
  double t_add = now_s() - t0;
  tn_workqueue_shutdown(r.q);
  for (int i = 0; i < workers; i++)
    pthread_join(wt[i], NULL);
  double t = now_s() - t0;
  long total_adds = r.adds_per_producer * producers, gets = atomic_load(&r.gets);
  long ops = total_adds + 2 * gets;
  printf("%-44s %9ld adds %9ld gets+dones  %6.3f s  %6.2f M ops/s  (adds alone %.2f M/s)\n", title,
         total_adds, gets, t, (double)ops / t / 1e6, (double)total_adds / t_add / 1e6);
  tn_workqueue_free(r.q);
  tn_metrics_free(m);
  for (int i = 0; i < n_keys; i++)
    free(r.keys[i]);
  free(r.keys);
}

/* One thread: add, get, done in a loop, no contention. */
static void single_thread(long n, bool metrics) {
  struct tn_metrics *m = metrics ? tn_metrics_new() : NULL;
  struct tn_workqueue *q = tn_workqueue_new("bench", m, NULL);
  char key[32];
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    snprintf(key, sizeof key, "tenant-%ld", i % 1000);
    char *item;
    tn_workqueue_add(q, key);
    tn_workqueue_get(q, &item);
    tn_workqueue_done(q, item);
    free(item);
  }
  double t = now_s() - t0;
  printf("%-44s %9ld rounds of add+get+done        %6.3f s  %6.2f M ops/s\n",
         metrics ? "1 thread, metrics on" : "1 thread, no metrics", n, t, 3.0 * (double)n / t / 1e6);
  tn_workqueue_free(q);
  tn_metrics_free(m);
}

int main(int argc, char **argv) {
  long adds = argc > 1 ? atol(argv[1]) : 2000000;
  if (adds < 1000)
    adds = 1000;
  printf("work queue throughput (ops = adds + gets + dones; see the file's head comment)\n");
  single_thread(adds / 2, false);
  single_thread(adds / 2, true);
  scenario("1 producer, 4 workers, 100k keys", adds, 100000, 1, 4, false);
  scenario("1 producer, 4 workers, 100k keys, metrics", adds, 100000, 1, 4, true);
  scenario("1 producer, 4 workers, 1k keys (dedup)", adds, 1000, 1, 4, false);
  scenario("2 producers, 4 workers, 100k keys", adds, 100000, 2, 4, false);
  return 0;
}
