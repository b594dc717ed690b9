/* test_workqueue.c - the work queue: dedup, one worker per key, dirty-while-processing, delayed and
 * rate-limited adds, shutdown and drain, metrics, and a concurrent stress run. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/metrics.h"
#include "runtime/workqueue.h"
#include "util/buf.h"
#include "util/error.h"

#define MS TN_NS_PER_MS
#define S TN_NS_PER_S

struct fake_clock {
  _Atomic int64_t now;
};

static int64_t fake_now(void *ud) { return atomic_load(&((struct fake_clock *)ud)->now); }
static void advance(struct fake_clock *c, int64_t ns) { atomic_fetch_add(&c->now, ns); }

/* A queue on a fake clock (starting at 100 s), without metrics, with the default limiter. */
static struct tn_workqueue *fake_queue(struct fake_clock *fc, struct tn_metrics *m) {
  atomic_store(&fc->now, 100 * S);
  struct tn_clock clock = {fake_now, fc};
  struct tn_workqueue_config cfg = {.name = "test", .metrics = m, .clock = &clock};
  struct tn_workqueue *q = tn_workqueue_new_with_config(&cfg);
  cr_assert_not_null(q);
  return q;
}

/* Takes the next ready item without blocking, asserting it is `want`, and frees the copy. */
static void expect_next(struct tn_workqueue *q, const char *want) {
  char *item = NULL;
  int rc = tn_workqueue_try_get(q, &item);
  cr_assert_eq(rc, 0, "expected %s to be ready, got %d", want, rc);
  cr_assert_str_eq(item, want);
  free(item);
}

static void expect_nothing_ready(struct tn_workqueue *q) {
  char *item = (char *)"unset";
  cr_assert_eq(tn_workqueue_try_get(q, &item), -EAGAIN);
  cr_assert_null(item);
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

Test(workqueue, items_come_out_in_order_and_get_copies) {
  struct tn_workqueue *q = tn_workqueue_new("order", NULL, NULL);
  cr_assert_not_null(q);
  char key[16] = "a";
  cr_assert_eq(tn_workqueue_add(q, key), 0);
  strcpy(key, "b"); /* the queue copied "a" */
  cr_assert_eq(tn_workqueue_add(q, key), 0);
  cr_assert_eq(tn_workqueue_add(q, "ns/c"), 0);
  cr_assert_eq(tn_workqueue_len(q), 3);
  char *item = NULL;
  cr_assert_eq(tn_workqueue_get(q, &item), 0);
  cr_assert_str_eq(item, "a");
  tn_workqueue_done(q, item);
  free(item);
  expect_next(q, "b");
  expect_next(q, "ns/c");
  cr_assert_eq(tn_workqueue_len(q), 0);
  expect_nothing_ready(q);
  tn_workqueue_done(q, "b");
  tn_workqueue_done(q, "ns/c");
  tn_workqueue_free(q);
}

Test(workqueue, adds_of_a_queued_item_are_deduplicated) {
  struct tn_workqueue *q = tn_workqueue_new("dedup", NULL, NULL);
  for (int i = 0; i < 3; i++)
    tn_workqueue_add(q, "a");
  tn_workqueue_add(q, "b");
  tn_workqueue_add(q, "a");
  cr_assert_eq(tn_workqueue_len(q), 2);
  expect_next(q, "a"); /* keeps its first place */
  expect_next(q, "b");
  expect_nothing_ready(q);
  tn_workqueue_free(q);
}

Test(workqueue, add_while_processing_runs_again_once_after_done) {
  struct tn_workqueue *q = tn_workqueue_new("dirty", NULL, NULL);
  tn_workqueue_add(q, "a");
  expect_next(q, "a");
  tn_workqueue_add(q, "a");
  cr_assert_eq(tn_workqueue_len(q), 0, "a processing item is not queued again before done");
  expect_nothing_ready(q);
  tn_workqueue_done(q, "a");
  cr_assert_eq(tn_workqueue_len(q), 1);
  expect_next(q, "a");
  tn_workqueue_done(q, "a");
  cr_assert_eq(tn_workqueue_len(q), 0);
  expect_nothing_ready(q);
  tn_workqueue_free(q);
}

Test(workqueue, many_adds_while_processing_make_one_rerun) {
  struct tn_workqueue *q = tn_workqueue_new("dirty-many", NULL, NULL);
  tn_workqueue_add(q, "a");
  tn_workqueue_add(q, "b");
  expect_next(q, "a");
  for (int i = 0; i < 5; i++)
    tn_workqueue_add(q, "a");
  tn_workqueue_done(q, "a");
  cr_assert_eq(tn_workqueue_len(q), 2);
  expect_next(q, "b"); /* the re-run goes to the back of the line */
  expect_next(q, "a");
  tn_workqueue_done(q, "a");
  tn_workqueue_done(q, "b");
  expect_nothing_ready(q);
  tn_workqueue_free(q);
}

Test(workqueue, done_of_an_item_not_processing_is_ignored) {
  struct tn_workqueue *q = tn_workqueue_new("stray-done", NULL, NULL);
  tn_workqueue_done(q, "never-added");
  tn_workqueue_add(q, "a");
  tn_workqueue_done(q, "a"); /* queued, not processing: must not queue it twice */
  cr_assert_eq(tn_workqueue_len(q), 1);
  expect_next(q, "a");
  tn_workqueue_done(q, "a");
  tn_workqueue_done(q, "a");
  expect_nothing_ready(q);
  tn_workqueue_free(q);
}

Test(workqueue, order_survives_growth_and_wraparound) {
  struct tn_workqueue *q = tn_workqueue_new("ring", NULL, NULL);
  char key[32], *item;
  int next_out = 0, next_in = 0;
  for (int round = 0; round < 50; round++) {
    for (int i = 0; i < 300; i++) {
      snprintf(key, sizeof key, "item-%d", next_in++);
      cr_assert_eq(tn_workqueue_add(q, key), 0);
    }
    for (int i = 0; i < 200; i++) {
      snprintf(key, sizeof key, "item-%d", next_out++);
      cr_assert_eq(tn_workqueue_try_get(q, &item), 0);
      cr_assert_str_eq(item, key);
      tn_workqueue_done(q, item);
      free(item);
    }
  }
  cr_assert_eq(tn_workqueue_len(q), (size_t)(next_in - next_out));
  while (tn_workqueue_try_get(q, &item) == 0) {
    snprintf(key, sizeof key, "item-%d", next_out++);
    cr_assert_str_eq(item, key);
    tn_workqueue_done(q, item);
    free(item);
  }
  cr_assert_eq(next_out, next_in);
  tn_workqueue_free(q);
}

Test(workqueue, add_after_releases_items_in_due_order) {
  struct fake_clock fc;
  struct tn_workqueue *q = fake_queue(&fc, NULL);
  tn_workqueue_add_after(q, "a", 3);
  tn_workqueue_add_after(q, "b", 1);
  tn_workqueue_add_after(q, "c", 2);
  cr_assert_eq(tn_workqueue_len(q), 0);
  advance(&fc, 999 * MS);
  expect_nothing_ready(q);
  advance(&fc, 500 * MS);
  cr_assert_eq(tn_workqueue_len(q), 1);
  expect_next(q, "b");
  advance(&fc, 2 * S);
  cr_assert_eq(tn_workqueue_len(q), 2);
  expect_next(q, "c");
  expect_next(q, "a");
  expect_nothing_ready(q);
  tn_workqueue_free(q);
}

Test(workqueue, add_after_earlier_moves_the_item_earlier_later_does_not) {
  struct fake_clock fc;
  struct tn_workqueue *q = fake_queue(&fc, NULL);
  tn_workqueue_add_after(q, "x", 10);
  tn_workqueue_add_after(q, "y", 1);
  tn_workqueue_add_after(q, "x", 0.5); /* earlier: moves ahead of y */
  tn_workqueue_add_after(q, "y", 5);   /* later: y stays due at 1 s */
  advance(&fc, 500 * MS);
  expect_next(q, "x");
  expect_nothing_ready(q);
  advance(&fc, 500 * MS);
  expect_next(q, "y");
  advance(&fc, 20 * S);
  expect_nothing_ready(q); /* each was delivered once */
  tn_workqueue_free(q);
}

Test(workqueue, add_after_without_a_positive_delay_adds_now) {
  struct fake_clock fc;
  struct tn_workqueue *q = fake_queue(&fc, NULL);
  tn_workqueue_add_after(q, "zero", 0);
  tn_workqueue_add_after(q, "negative", -1);
  tn_workqueue_add_after(q, "nan", NAN);
  cr_assert_eq(tn_workqueue_len(q), 3);
  tn_workqueue_add_after(q, "forever", INFINITY);
  advance(&fc, INT64_C(1) << 60);
  cr_assert_eq(tn_workqueue_len(q), 3);
  tn_workqueue_free(q); /* frees the entry still waiting */
}

Test(workqueue, delayed_add_of_a_queued_item_is_deduplicated_when_due) {
  struct fake_clock fc;
  struct tn_workqueue *q = fake_queue(&fc, NULL);
  tn_workqueue_add(q, "a");
  tn_workqueue_add_after(q, "a", 1);
  advance(&fc, 1 * S);
  cr_assert_eq(tn_workqueue_len(q), 1, "due while still queued: merged");
  expect_next(q, "a");
  tn_workqueue_done(q, "a");
  expect_nothing_ready(q);

  /* Due while processing: marked dirty, runs again after done. */
  tn_workqueue_add(q, "b");
  expect_next(q, "b");
  tn_workqueue_add_after(q, "b", 1);
  advance(&fc, 1 * S);
  expect_nothing_ready(q);
  tn_workqueue_done(q, "b");
  expect_next(q, "b");
  tn_workqueue_done(q, "b");
  tn_workqueue_free(q);
}

Test(workqueue, timer_thread_wakes_a_blocked_getter_when_due) {
  struct tn_workqueue *q = tn_workqueue_new("timer", NULL, NULL); /* real clock */
  tn_workqueue_add_after(q, "later", 0.2);
  tn_workqueue_add_after(q, "soon", 0.02);
  char *item = NULL;
  cr_assert_eq(tn_workqueue_get(q, &item), 0);
  cr_assert_str_eq(item, "soon");
  free(item);
  cr_assert_eq(tn_workqueue_get(q, &item), 0);
  cr_assert_str_eq(item, "later");
  free(item);
  tn_workqueue_free(q);
}

struct getter {
  struct tn_workqueue *q;
  int rc;
  char *item;
};

static void *getter_main(void *arg) {
  struct getter *g = arg;
  g->rc = tn_workqueue_get(g->q, &g->item);
  return NULL;
}

Test(workqueue, shutdown_wakes_every_blocked_getter) {
  struct tn_workqueue *q = tn_workqueue_new("wake", NULL, NULL);
  struct getter g[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    g[i] = (struct getter){q, 1, NULL};
    pthread_create(&t[i], NULL, getter_main, &g[i]);
  }
  sleep_ms(50); /* let them block (if one is late it gets TN_ECANCELED at once: same result) */
  tn_workqueue_shutdown(q);
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    cr_assert_eq(g[i].rc, TN_ECANCELED);
    cr_assert_null(g[i].item);
  }
  cr_assert(tn_workqueue_shutting_down(q));
  tn_workqueue_free(q);
}

Test(workqueue, after_shutdown_queued_items_still_come_out_then_canceled) {
  struct fake_clock fc;
  struct tn_workqueue *q = fake_queue(&fc, NULL);
  tn_workqueue_add(q, "a");
  tn_workqueue_add(q, "b");
  tn_workqueue_add_after(q, "delayed", 1);
  expect_next(q, "a");
  tn_workqueue_add(q, "a"); /* dirty before the shutdown */
  cr_assert_not(tn_workqueue_shutting_down(q));
  tn_workqueue_shutdown(q);
  tn_workqueue_shutdown(q); /* idempotent */
  cr_assert_eq(tn_workqueue_add(q, "c"), TN_ECANCELED);
  cr_assert_eq(tn_workqueue_add_after(q, "d", 1), TN_ECANCELED);
  cr_assert_eq(tn_workqueue_add_rate_limited(q, "e"), TN_ECANCELED);
  advance(&fc, 2 * S); /* the delayed item is dropped, not delivered */
  expect_next(q, "b");
  tn_workqueue_done(q, "a"); /* marked dirty before the shutdown: it runs once more */
  expect_next(q, "a");
  char *item = (char *)"unset";
  cr_assert_eq(tn_workqueue_try_get(q, &item), TN_ECANCELED);
  cr_assert_null(item);
  cr_assert_eq(tn_workqueue_get(q, &item), TN_ECANCELED);
  tn_workqueue_done(q, "a");
  tn_workqueue_done(q, "b");
  tn_workqueue_free(q);
}

struct drainer {
  struct tn_workqueue *q;
  double timeout;
  atomic_bool finished;
  bool drained;
};

static void *drainer_main(void *arg) {
  struct drainer *d = arg;
  d->drained = tn_workqueue_shutdown_drain(d->q, d->timeout);
  atomic_store(&d->finished, true);
  return NULL;
}

Test(workqueue, drain_waits_for_items_in_flight) {
  struct tn_workqueue *q = tn_workqueue_new("drain", NULL, NULL);
  tn_workqueue_add(q, "a");
  tn_workqueue_add(q, "b");
  expect_next(q, "a");
  expect_next(q, "b");
  struct drainer d = {.q = q, .timeout = -1};
  pthread_t t;
  pthread_create(&t, NULL, drainer_main, &d);
  sleep_ms(50);
  cr_assert_not(atomic_load(&d.finished), "returned with two items in flight");
  cr_assert(tn_workqueue_shutting_down(q));
  cr_assert_eq(tn_workqueue_add(q, "c"), TN_ECANCELED);
  tn_workqueue_done(q, "a");
  sleep_ms(50);
  cr_assert_not(atomic_load(&d.finished), "returned with one item in flight");
  tn_workqueue_done(q, "b");
  pthread_join(t, NULL);
  cr_assert(d.drained);
  tn_workqueue_free(q);
}

Test(workqueue, drain_gives_up_at_its_deadline) {
  struct tn_workqueue *q = tn_workqueue_new("drain-deadline", NULL, NULL);
  tn_workqueue_add(q, "stuck");
  expect_next(q, "stuck");
  cr_assert_not(tn_workqueue_shutdown_drain(q, 0.05));
  cr_assert_not(tn_workqueue_shutdown_drain(q, 0));
  tn_workqueue_done(q, "stuck");
  cr_assert(tn_workqueue_shutdown_drain(q, 0));
  tn_workqueue_free(q);
}

Test(workqueue, shutdown_stops_a_waiting_drain) {
  struct tn_workqueue *q = tn_workqueue_new("drain-stop", NULL, NULL);
  tn_workqueue_add(q, "stuck");
  expect_next(q, "stuck");
  struct drainer d = {.q = q, .timeout = -1};
  pthread_t t;
  pthread_create(&t, NULL, drainer_main, &d);
  sleep_ms(50);
  tn_workqueue_shutdown(q); /* as client-go: ShutDown after ShutDownWithDrain stops the wait */
  pthread_join(t, NULL);
  cr_assert_not(d.drained);
  tn_workqueue_done(q, "stuck");
  tn_workqueue_free(q);
}

Test(workqueue, drain_with_nothing_in_flight_returns_and_queued_items_remain) {
  struct tn_workqueue *q = tn_workqueue_new("drain-queued", NULL, NULL);
  tn_workqueue_add(q, "queued");
  cr_assert(tn_workqueue_shutdown_drain(q, -1));
  expect_next(q, "queued"); /* workers still get what was queued */
  tn_workqueue_done(q, "queued");
  char *item;
  cr_assert_eq(tn_workqueue_try_get(q, &item), TN_ECANCELED);
  tn_workqueue_free(q);
}

Test(workqueue, rate_limited_adds_back_off_and_forget_resets) {
  struct fake_clock fc;
  struct tn_workqueue *q = fake_queue(&fc, NULL); /* default limiter on the fake clock */
  cr_assert_eq(tn_workqueue_num_requeues(q, "x"), 0);
  tn_workqueue_add_rate_limited(q, "x");
  cr_assert_eq(tn_workqueue_num_requeues(q, "x"), 1);
  advance(&fc, 4 * MS);
  expect_nothing_ready(q);
  advance(&fc, 1 * MS); /* 5 ms */
  expect_next(q, "x");
  tn_workqueue_add_rate_limited(q, "x"); /* fails again while processing */
  tn_workqueue_done(q, "x");
  advance(&fc, 9 * MS);
  expect_nothing_ready(q);
  advance(&fc, 1 * MS); /* 10 ms */
  expect_next(q, "x");
  tn_workqueue_done(q, "x");
  cr_assert_eq(tn_workqueue_num_requeues(q, "x"), 2);
  tn_workqueue_forget(q, "x");
  cr_assert_eq(tn_workqueue_num_requeues(q, "x"), 0);
  tn_workqueue_add_rate_limited(q, "x");
  advance(&fc, 5 * MS);
  expect_next(q, "x"); /* back to the base delay */
  tn_workqueue_done(q, "x");
  tn_workqueue_free(q);
}

Test(workqueue, takes_a_custom_rate_limiter) {
  struct fake_clock fc = {0};
  struct tn_clock clock = {fake_now, &fc};
  struct tn_workqueue_config cfg = {
      .name = "custom", .ratelimiter = tn_ratelimiter_exponential_new(2 * S, 60 * S), .clock = &clock};
  struct tn_workqueue *q = tn_workqueue_new_with_config(&cfg);
  tn_workqueue_add_rate_limited(q, "x");
  advance(&fc, 1999 * MS);
  expect_nothing_ready(q);
  advance(&fc, 1 * MS);
  expect_next(q, "x");
  tn_workqueue_done(q, "x");
  tn_workqueue_free(q); /* frees the limiter (LeakSanitizer checks) */

  struct tn_workqueue_config bad = {.name = NULL, .ratelimiter = tn_ratelimiter_exponential_new(1, 1)};
  cr_assert_null(tn_workqueue_new_with_config(&bad)); /* and frees the limiter it was given */
  tn_workqueue_free(NULL);
}

Test(workqueue, free_releases_items_in_every_state) {
  struct fake_clock fc;
  struct tn_workqueue *q = fake_queue(&fc, NULL);
  tn_workqueue_add(q, "processing");
  tn_workqueue_add(q, "queued");
  tn_workqueue_add_after(q, "waiting", 10);
  expect_next(q, "processing");
  tn_workqueue_add(q, "processing"); /* and dirty */
  tn_workqueue_free(q);              /* LeakSanitizer checks every entry is freed */
}

/* ---- metrics ---- */

/* The value of the sample `name{...}` whose labels include name="<queue>" (first match). */
static double sample(struct tn_metrics *m, const char *metric, const char *queue) {
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(tn_metrics_write(m, &b), 0);
  char prefix[128], label[128];
  snprintf(prefix, sizeof prefix, "%s{", metric);
  snprintf(label, sizeof label, "name=\"%s\"", queue);
  double v = NAN;
  for (char *line = b.data; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    if (strncmp(line, prefix, strlen(prefix)) == 0 && strstr(line, label)) {
      char *sp = strrchr(line, ' ');
      v = strtod(sp + 1, NULL);
      cr_assert(strstr(line, "controller=\""), "%s has no controller label: %s", metric, line);
      break;
    }
    line = nl ? nl + 1 : NULL;
  }
  tn_buf_cleanup(&b);
  cr_assert(!isnan(v), "no sample %s for queue %s", metric, queue);
  return v;
}

/* How many samples `name{...}` have labels including name="<queue>". */
static int count_samples(struct tn_metrics *m, const char *metric, const char *queue) {
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(tn_metrics_write(m, &b), 0);
  char prefix[128], label[128];
  snprintf(prefix, sizeof prefix, "%s{", metric);
  snprintf(label, sizeof label, "name=\"%s\"", queue);
  int n = 0;
  for (char *line = b.data; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    if (strncmp(line, prefix, strlen(prefix)) == 0 && strstr(line, label))
      n++;
    line = nl ? nl + 1 : NULL;
  }
  tn_buf_cleanup(&b);
  return n;
}

Test(workqueue, publishes_client_go_metrics) {
  struct tn_metrics *m = tn_metrics_new();
  struct fake_clock fc;
  struct tn_workqueue *q = fake_queue(&fc, m);
  tn_workqueue_add(q, "a");
  tn_workqueue_add(q, "b");
  tn_workqueue_add(q, "a"); /* deduplicated: not an add */
  cr_assert_eq(sample(m, "workqueue_adds_total", "test"), 2);
  cr_assert_eq(sample(m, "workqueue_depth", "test"), 2);
  advance(&fc, 3 * S);
  expect_next(q, "a"); /* waited 3 s */
  cr_assert_eq(sample(m, "workqueue_depth", "test"), 1);
  cr_assert_eq(sample(m, "workqueue_queue_duration_seconds_count", "test"), 1);
  cr_assert_eq(sample(m, "workqueue_queue_duration_seconds_sum", "test"), 3);
  advance(&fc, 2 * S);
  expect_next(q, "b"); /* a has run 2 s */
  advance(&fc, 1 * S);
  tn_workqueue_refresh_metrics(q);
  cr_assert_eq(sample(m, "workqueue_unfinished_work_seconds", "test"), 3 + 1);
  cr_assert_eq(sample(m, "workqueue_longest_running_processor_seconds", "test"), 3);
  tn_workqueue_add(q, "a"); /* while processing: counted, as client-go */
  cr_assert_eq(sample(m, "workqueue_adds_total", "test"), 3);
  cr_assert_eq(sample(m, "workqueue_depth", "test"), 1);
  tn_workqueue_done(q, "a");
  cr_assert_eq(sample(m, "workqueue_work_duration_seconds_count", "test"), 1);
  cr_assert_eq(sample(m, "workqueue_work_duration_seconds_sum", "test"), 3);
  tn_workqueue_done(q, "b");
  tn_workqueue_refresh_metrics(q);
  cr_assert_eq(sample(m, "workqueue_unfinished_work_seconds", "test"), 0);
  cr_assert_eq(sample(m, "workqueue_longest_running_processor_seconds", "test"), 0);
  tn_workqueue_add_after(q, "c", 1);
  tn_workqueue_add_rate_limited(q, "d");
  tn_workqueue_add_after(q, "e", 0); /* client-go counts every AddAfter as a retry */
  cr_assert_eq(sample(m, "workqueue_retries_total", "test"), 3);
  /* The controller-runtime histogram buckets: 1e-8, 1e-7, ... 1000 s, and +Inf. */
  cr_assert_eq(count_samples(m, "workqueue_queue_duration_seconds_bucket", "test"), 13);
  cr_assert_eq(count_samples(m, "workqueue_work_duration_seconds_bucket", "test"), 13);
  tn_workqueue_free(q);
  tn_metrics_free(m);
}

Test(workqueue, null_metrics_registry_means_no_metrics) {
  struct fake_clock fc;
  struct tn_workqueue *q = fake_queue(&fc, NULL);
  tn_workqueue_add(q, "a");
  expect_next(q, "a");
  tn_workqueue_refresh_metrics(q);
  tn_workqueue_done(q, "a");
  tn_workqueue_free(q);
}

/* ---- concurrency ---- */

#define STRESS_KEYS 1000
#define STRESS_ADDS 100000
#define STRESS_WORKERS 8
#define STRESS_PRODUCERS 2

struct stress {
  struct tn_workqueue *q;
  atomic_int busy[STRESS_KEYS];
  _Atomic long last_add[STRESS_KEYS];   /* sequence number taken just before the last add began */
  _Atomic long last_start[STRESS_KEYS]; /* sequence number taken just after the last get returned */
  _Atomic long seq;
  _Atomic long processed;
  atomic_int overlaps;
  atomic_int producer_id;
};

static void *stress_worker(void *arg) {
  struct stress *s = arg;
  char *item;
  while (tn_workqueue_get(s->q, &item) == 0) {
    int k = atoi(item + 2);
    if (atomic_fetch_add(&s->busy[k], 1) != 0)
      atomic_fetch_add(&s->overlaps, 1);
    atomic_store(&s->last_start[k], atomic_fetch_add(&s->seq, 1) + 1);
    if (k % 7 == 0)
      sched_yield(); /* some slow items, so adds land while they are processing */
    atomic_fetch_sub(&s->busy[k], 1);
    atomic_fetch_add(&s->processed, 1);
    tn_workqueue_done(s->q, item);
    free(item);
  }
  return NULL;
}

static void *stress_producer(void *arg) {
  struct stress *s = arg;
  unsigned seed = 12345u + (unsigned)atomic_fetch_add(&s->producer_id, 1);
  char key[16];
  for (int i = 0; i < STRESS_ADDS / STRESS_PRODUCERS; i++) {
    int k = rand_r(&seed) % STRESS_KEYS;
    snprintf(key, sizeof key, "k-%d", k);
    long mine = atomic_fetch_add(&s->seq, 1) + 1;
    long prev = atomic_load(&s->last_add[k]);
    while (prev < mine && !atomic_compare_exchange_weak(&s->last_add[k], &prev, mine))
      ;
    cr_assert_eq(tn_workqueue_add(s->q, key), 0);
    if (i % 1000 == 0)
      sched_yield();
  }
  return NULL;
}

Test(workqueue, concurrent_workers_never_share_a_key_and_miss_no_add, .timeout = 120) {
  struct stress *s = calloc(1, sizeof *s);
  s->q = tn_workqueue_new("stress", NULL, NULL);
  pthread_t workers[STRESS_WORKERS], producers[STRESS_PRODUCERS];
  for (int i = 0; i < STRESS_WORKERS; i++)
    pthread_create(&workers[i], NULL, stress_worker, s);
  for (int i = 0; i < STRESS_PRODUCERS; i++)
    pthread_create(&producers[i], NULL, stress_producer, s);
  for (int i = 0; i < STRESS_PRODUCERS; i++)
    pthread_join(producers[i], NULL);
  tn_workqueue_shutdown(s->q);
  for (int i = 0; i < STRESS_WORKERS; i++)
    pthread_join(workers[i], NULL);

  cr_assert_eq(atomic_load(&s->overlaps), 0, "a key was processed by two workers at once");
  long processed = atomic_load(&s->processed);
  cr_assert_leq(processed, STRESS_ADDS);
  int added = 0;
  for (int k = 0; k < STRESS_KEYS; k++) {
    if (!atomic_load(&s->last_add[k]))
      continue;
    added++;
    cr_assert_gt(atomic_load(&s->last_start[k]), atomic_load(&s->last_add[k]),
                 "k-%d was added after its last processing began, and not "
                 "processed again",
                 k);
  }
  cr_assert_gt(added, STRESS_KEYS * 9 / 10);
  cr_log_info("stress: %d adds of %d keys, %ld processings", STRESS_ADDS, added, processed);
  tn_workqueue_free(s->q);
  free(s);
}
