/* workqueue.c - the controllers' work queue with client-go semantics (see workqueue.h and
 * docs/internals/workqueue.md). */
#define _GNU_SOURCE /* pthread_setname_np */
#include "runtime/workqueue.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/log.h"
#include "util/error.h"

#define NOT_WAITING SIZE_MAX                /* entry.heap_idx when not in the delay heap */
#define METRICS_PERIOD (500 * TN_NS_PER_MS) /* client-go's defaultUnfinishedWorkUpdatePeriod */
#define MAX_TIMER_SLEEP (10 * TN_NS_PER_S)  /* client-go's maxWait heartbeat */

/* What the queue knows about one item. It exists while the item is dirty, processing or waiting in the delay
 * heap, and is freed when none of these holds any more. */
struct entry {
  struct entry *hnext; /* hash chain */
  uint64_t hash;
  bool dirty;                          /* needs processing (client-go's dirty set) */
  bool processing;                     /* handed out by get, done not yet called (processing set) */
  bool in_pass;                        /* queued at tn_workqueue_mark_pass, not done since */
  bool has_add_time;                   /* metrics: add_time is set (client-go's addTimes) */
  size_t heap_idx;                     /* index in the delay heap, or NOT_WAITING */
  int64_t ready_at;                    /* when waiting: when it is due */
  uint64_t seq;                        /* when waiting: insertion order, to break ties in ready_at */
  int64_t add_time;                    /* metrics: when it was added (for queue_duration) */
  int64_t start_time;                  /* metrics: when processing began (processingStartTimes) */
  struct entry *proc_prev, *proc_next; /* metrics: the list of processing entries */
  size_t len;
  char key[];
};

struct tn_workqueue {
  char *name;
  struct tn_clock clock;
  struct tn_ratelimiter *rl; /* owned; thread-safe on its own, never called under lock */

  /* lock protects every field below (not the metric series, which are lock-free). It is the only lock of the
   * queue; the rate limiter's lock is never taken while it is held. */
  pthread_mutex_t lock;
  pthread_cond_t item_cv;  /* getters wait here for an item or the shutdown */
  pthread_cond_t drain_cv; /* shutdown_drain waits here for n_processing == 0 or shutdown */
  pthread_cond_t timer_cv; /* the timer thread waits here for the next due time */

  struct entry **buckets; /* hash table of every entry; n_buckets is a power of two */
  size_t n_buckets, n_entries;

  struct entry **fifo; /* ring of dirty, not processing entries, in order; capacity >= n_entries */
  size_t fifo_head, fifo_len, fifo_cap;

  struct entry **heap; /* min-heap of waiting entries by (ready_at, seq) */
  size_t heap_len, heap_cap;
  uint64_t heap_seq;

  size_t n_processing;
  size_t pass_left; /* entries with in_pass set */
  int getters_waiting;
  int drainers;
  bool shutting_down;
  bool drain; /* a shutdown_drain is waiting and was not cancelled by shutdown */

  bool has_metrics;
  struct entry *proc_list; /* processing entries (only kept with metrics) */
  int64_t next_metrics_at;
  struct {
    struct tn_series *depth, *adds, *latency, *work, *unfinished, *longest, *retries;
  } m;

  pthread_t thread;
  bool thread_started;
};

/* ---- hash table of entries ---- */

static uint64_t hash_key(const char *s, size_t *len) {
  uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
  const char *p = s;
  for (; *p; p++)
    h = (h ^ (unsigned char)*p) * 0x100000001b3u;
  *len = (size_t)(p - s);
  return h;
}

static struct entry *lookup(struct tn_workqueue *q, const char *key, uint64_t h, size_t len) {
  if (!q->n_buckets)
    return NULL;
  for (struct entry *e = q->buckets[h & (q->n_buckets - 1)]; e; e = e->hnext)
    if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
      return e;
  return NULL;
}

static void rehash(struct tn_workqueue *q, size_t nb) {
  struct entry **b = calloc(nb, sizeof *b);
  if (!b)
    return; /* keep the longer chains; lookups stay correct */
  for (size_t i = 0; i < q->n_buckets; i++)
    for (struct entry *e = q->buckets[i], *next; e; e = next) {
      next = e->hnext;
      e->hnext = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
    }
  free(q->buckets);
  q->buckets = b;
  q->n_buckets = nb;
}

/* The entry for key, created (with no flag set) when missing. NULL when out of memory. */
static struct entry *lookup_or_create(struct tn_workqueue *q, const char *key) {
  size_t len;
  uint64_t h = hash_key(key, &len);
  struct entry *e = lookup(q, key, h, len);
  if (e)
    return e;
  /* Keep the FIFO able to hold every entry, so that queueing an entry never fails. */
  if (q->n_entries + 1 > q->fifo_cap) {
    size_t cap = q->fifo_cap ? q->fifo_cap * 2 : 64;
    struct entry **f = malloc(cap * sizeof *f);
    if (!f)
      return NULL;
    for (size_t i = 0; i < q->fifo_len; i++)
      f[i] = q->fifo[(q->fifo_head + i) % q->fifo_cap];
    free(q->fifo);
    q->fifo = f;
    q->fifo_cap = cap;
    q->fifo_head = 0;
  }
  if (q->n_entries + 1 > q->n_buckets)
    rehash(q, q->n_buckets ? q->n_buckets * 2 : 64);
  if (!q->n_buckets)
    return NULL;
  e = malloc(sizeof *e + len + 1);
  if (!e)
    return NULL;
  memset(e, 0, sizeof *e);
  e->hash = h;
  e->len = len;
  e->heap_idx = NOT_WAITING;
  memcpy(e->key, key, len + 1);
  struct entry **head = &q->buckets[h & (q->n_buckets - 1)];
  e->hnext = *head;
  *head = e;
  q->n_entries++;
  return e;
}

/* Unlinks the entry when nothing holds it any more; returns it for the caller to free after unlocking, or
 * NULL when it stays. */
static struct entry *release_if_unused(struct tn_workqueue *q, struct entry *e) {
  if (e->dirty || e->processing || e->heap_idx != NOT_WAITING)
    return NULL;
  struct entry **pp = &q->buckets[e->hash & (q->n_buckets - 1)];
  while (*pp != e)
    pp = &(*pp)->hnext;
  *pp = e->hnext;
  q->n_entries--;
  return e;
}

/* ---- FIFO ---- */

static void fifo_push(struct tn_workqueue *q, struct entry *e) {
  q->fifo[(q->fifo_head + q->fifo_len) % q->fifo_cap] = e;
  q->fifo_len++;
}

static struct entry *fifo_pop(struct tn_workqueue *q) {
  struct entry *e = q->fifo[q->fifo_head];
  q->fifo_head = (q->fifo_head + 1) % q->fifo_cap;
  q->fifo_len--;
  return e;
}

/* ---- delay heap ---- */

static bool heap_less(const struct entry *a, const struct entry *b) {
  return a->ready_at < b->ready_at || (a->ready_at == b->ready_at && a->seq < b->seq);
}

static void heap_set(struct tn_workqueue *q, size_t i, struct entry *e) {
  q->heap[i] = e;
  e->heap_idx = i;
}

static void heap_up(struct tn_workqueue *q, size_t i) {
  struct entry *e = q->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_less(e, q->heap[parent]))
      break;
    heap_set(q, i, q->heap[parent]);
    i = parent;
  }
  heap_set(q, i, e);
}

static void heap_down(struct tn_workqueue *q, size_t i) {
  struct entry *e = q->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= q->heap_len)
      break;
    if (child + 1 < q->heap_len && heap_less(q->heap[child + 1], q->heap[child]))
      child++;
    if (!heap_less(q->heap[child], e))
      break;
    heap_set(q, i, q->heap[child]);
    i = child;
  }
  heap_set(q, i, e);
}

static struct entry *heap_pop(struct tn_workqueue *q) {
  struct entry *top = q->heap[0];
  q->heap_len--;
  if (q->heap_len) {
    q->heap[0] = q->heap[q->heap_len];
    heap_down(q, 0);
  }
  top->heap_idx = NOT_WAITING;
  return top;
}

/* ---- metrics (all under lock, as client-go's defaultQueueMetrics) ---- */

static const char *const metric_labels[] = {"name", "controller", NULL};
/* prometheus.ExponentialBuckets(10e-9, 10, 12), as controller-runtime. */
static const double duration_buckets[] = {1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 1000};

static struct tn_series *series_for(struct tn_workqueue *q, struct tn_metrics *reg, enum tn_metric_type type,
                                    const char *name, const char *help) {
  const char *values[] = {q->name, q->name, NULL};
  bool hist = type == TN_HISTOGRAM;
  struct tn_metric *f =
      tn_metrics_register(reg, type, name, help, metric_labels, hist ? duration_buckets : NULL,
                          hist ? sizeof duration_buckets / sizeof duration_buckets[0] : 0);
  struct tn_series *s = f ? tn_metric_with(f, values) : NULL;
  if (!s)
    tn_log_warn("workqueue %s: metric %s is unavailable (registration clash or "
                "out of memory)",
                q->name, name);
  return s;
}

static void register_metrics(struct tn_workqueue *q, struct tn_metrics *reg) {
  q->m.depth = series_for(q, reg, TN_GAUGE, "workqueue_depth", "Current depth of workqueue");
  q->m.adds =
      series_for(q, reg, TN_COUNTER, "workqueue_adds_total", "Total number of adds handled by workqueue");
  q->m.latency = series_for(q, reg, TN_HISTOGRAM, "workqueue_queue_duration_seconds",
                            "How long in seconds an item stays in workqueue before being requested");
  q->m.work = series_for(q, reg, TN_HISTOGRAM, "workqueue_work_duration_seconds",
                         "How long in seconds processing an item from workqueue takes.");
  q->m.unfinished = series_for(q, reg, TN_GAUGE, "workqueue_unfinished_work_seconds",
                               "How many seconds of work has been done that is in progress "
                               "and hasn't been "
                               "observed by work_duration. Large values indicate stuck "
                               "threads. One can deduce "
                               "the number of stuck threads by observing the rate at which "
                               "this increases.");
  q->m.longest = series_for(q, reg, TN_GAUGE, "workqueue_longest_running_processor_seconds",
                            "How many seconds has the longest running "
                            "processor for workqueue been running.");
  q->m.retries = series_for(q, reg, TN_COUNTER, "workqueue_retries_total",
                            "Total number of retries handled by workqueue");
}

static double seconds_between(int64_t from, int64_t to) { return (double)(to - from) / 1e9; }

static void update_unfinished_locked(struct tn_workqueue *q, int64_t now) {
  double total = 0, oldest = 0;
  for (struct entry *e = q->proc_list; e; e = e->proc_next) {
    double age = seconds_between(e->start_time, now);
    total += age;
    if (age > oldest)
      oldest = age;
  }
  tn_series_set(q->m.unfinished, total);
  tn_series_set(q->m.longest, oldest);
}

/* ---- the queue proper ---- */

/* client-go's Typed.Add on an existing entry. */
static void add_entry_locked(struct tn_workqueue *q, struct entry *e) {
  if (e->dirty)
    return; /* already queued, or already marked for another run after done */
  if (q->has_metrics) {
    tn_series_inc(q->m.adds);
    tn_series_add(q->m.depth, 1);
    if (!e->has_add_time) {
      e->add_time = tn_clock_now_ns(&q->clock);
      e->has_add_time = true;
    }
  }
  e->dirty = true;
  if (e->processing)
    return; /* done will queue it */
  fifo_push(q, e);
  if (q->getters_waiting)
    pthread_cond_signal(&q->item_cv);
}

/* Moves every delayed entry that is due at `now` into the queue (client-go's waitingLoop). */
static void promote_due_locked(struct tn_workqueue *q, int64_t now) {
  if (q->shutting_down)
    return;
  while (q->heap_len && q->heap[0]->ready_at <= now)
    add_entry_locked(q, heap_pop(q));
  /* An entry popped here is dirty now (add_entry_locked ran), so none needs releasing. */
}

static void promote_if_any_locked(struct tn_workqueue *q) {
  if (q->heap_len && !q->shutting_down)
    promote_due_locked(q, tn_clock_now_ns(&q->clock));
}

int tn_workqueue_add(struct tn_workqueue *q, const char *item) {
  int rc = 0;
  pthread_mutex_lock(&q->lock);
  if (q->shutting_down) {
    rc = TN_ECANCELED;
    goto out;
  }
  struct entry *e = lookup_or_create(q, item);
  if (!e) {
    rc = -ENOMEM;
    goto out;
  }
  add_entry_locked(q, e);
out:
  pthread_mutex_unlock(&q->lock);
  return rc;
}

static int add_after_ns(struct tn_workqueue *q, const char *item, int64_t delay) {
  int rc = 0;
  struct entry *unused = NULL;
  pthread_mutex_lock(&q->lock);
  if (q->shutting_down) {
    rc = TN_ECANCELED;
    goto out;
  }
  tn_series_inc(q->m.retries);
  struct entry *e = lookup_or_create(q, item);
  if (!e) {
    rc = -ENOMEM;
    goto out;
  }
  if (delay <= 0) {
    add_entry_locked(q, e);
    goto out;
  }
  int64_t now = tn_clock_now_ns(&q->clock);
  int64_t ready = now > INT64_MAX - delay ? INT64_MAX : now + delay;
  if (e->heap_idx != NOT_WAITING) { /* already waiting: only ever move it earlier */
    if (ready < e->ready_at) {
      e->ready_at = ready;
      heap_up(q, e->heap_idx);
    }
  } else {
    if (q->heap_len == q->heap_cap) {
      size_t cap = q->heap_cap ? q->heap_cap * 2 : 16;
      struct entry **h = realloc(q->heap, cap * sizeof *h);
      if (!h) {
        rc = -ENOMEM;
        unused = release_if_unused(q, e);
        goto out;
      }
      q->heap = h;
      q->heap_cap = cap;
    }
    e->ready_at = ready;
    e->seq = q->heap_seq++;
    q->heap[q->heap_len] = e;
    e->heap_idx = q->heap_len++;
    heap_up(q, e->heap_idx);
  }
  if (e->heap_idx == 0) /* a new earliest due time: the timer thread must wake earlier */
    pthread_cond_signal(&q->timer_cv);
out:
  pthread_mutex_unlock(&q->lock);
  free(unused);
  return rc;
}

int tn_workqueue_add_after(struct tn_workqueue *q, const char *item, double seconds) {
  int64_t delay;
  if (!(seconds > 0))
    delay = 0; /* also NaN */
  else if (seconds * 1e9 >= 0x1p63)
    delay = TN_DURATION_INF;
  else
    delay = (int64_t)(seconds * 1e9);
  return add_after_ns(q, item, delay);
}

int tn_workqueue_add_rate_limited(struct tn_workqueue *q, const char *item) {
  return add_after_ns(q, item, tn_ratelimiter_when(q->rl, item));
}

void tn_workqueue_forget(struct tn_workqueue *q, const char *item) { tn_ratelimiter_forget(q->rl, item); }

int tn_workqueue_num_requeues(struct tn_workqueue *q, const char *item) {
  return tn_ratelimiter_num_requeues(q->rl, item);
}

/* Hands out the first queued entry; the caller holds the lock and made sure fifo_len > 0. */
static int take_locked(struct tn_workqueue *q, char **item) {
  struct entry *e = q->fifo[q->fifo_head];
  char *copy = malloc(e->len + 1);
  if (!copy)
    return -ENOMEM; /* nothing taken: the entry stays first in line */
  memcpy(copy, e->key, e->len + 1);
  fifo_pop(q);
  if (q->has_metrics) {
    int64_t now = tn_clock_now_ns(&q->clock);
    tn_series_add(q->m.depth, -1);
    e->start_time = now;
    if (e->has_add_time) {
      tn_series_observe(q->m.latency, seconds_between(e->add_time, now));
      e->has_add_time = false;
    }
    e->proc_prev = NULL;
    e->proc_next = q->proc_list;
    if (q->proc_list)
      q->proc_list->proc_prev = e;
    q->proc_list = e;
  }
  e->processing = true;
  e->dirty = false;
  q->n_processing++;
  *item = copy;
  return 0;
}

int tn_workqueue_get(struct tn_workqueue *q, char **item) {
  int rc;
  *item = NULL;
  pthread_mutex_lock(&q->lock);
  for (;;) {
    promote_if_any_locked(q);
    if (q->fifo_len)
      break;
    if (q->shutting_down) {
      rc = TN_ECANCELED;
      goto out;
    }
    q->getters_waiting++;
    pthread_cond_wait(&q->item_cv, &q->lock);
    q->getters_waiting--;
  }
  rc = take_locked(q, item);
out:
  pthread_mutex_unlock(&q->lock);
  return rc;
}

int tn_workqueue_try_get(struct tn_workqueue *q, char **item) {
  int rc;
  *item = NULL;
  pthread_mutex_lock(&q->lock);
  promote_if_any_locked(q);
  if (q->fifo_len)
    rc = take_locked(q, item);
  else
    rc = q->shutting_down ? TN_ECANCELED : -EAGAIN;
  pthread_mutex_unlock(&q->lock);
  return rc;
}

void tn_workqueue_done(struct tn_workqueue *q, const char *item) {
  struct entry *unused = NULL;
  size_t len;
  uint64_t h = hash_key(item, &len);
  pthread_mutex_lock(&q->lock);
  struct entry *e = lookup(q, item, h, len);
  if (!e || !e->processing)
    goto out;
  if (q->has_metrics) {
    tn_series_observe(q->m.work, seconds_between(e->start_time, tn_clock_now_ns(&q->clock)));
    if (e->proc_prev)
      e->proc_prev->proc_next = e->proc_next;
    else
      q->proc_list = e->proc_next;
    if (e->proc_next)
      e->proc_next->proc_prev = e->proc_prev;
  }
  e->processing = false;
  q->n_processing--;
  if (e->in_pass) {
    e->in_pass = false;
    q->pass_left--;
  }
  if (e->dirty) {
    fifo_push(q, e);
    if (q->getters_waiting)
      pthread_cond_signal(&q->item_cv);
  }
  if (q->n_processing == 0 && q->drainers)
    pthread_cond_broadcast(&q->drain_cv);
  unused = release_if_unused(q, e);
out:
  pthread_mutex_unlock(&q->lock);
  free(unused);
}

size_t tn_workqueue_mark_pass(struct tn_workqueue *q) {
  pthread_mutex_lock(&q->lock);
  promote_if_any_locked(q);
  for (size_t i = 0; i < q->fifo_len; i++) {
    struct entry *e = q->fifo[(q->fifo_head + i) % q->fifo_cap];
    if (!e->in_pass) {
      e->in_pass = true;
      q->pass_left++;
    }
  }
  size_t n = q->pass_left;
  pthread_mutex_unlock(&q->lock);
  return n;
}

size_t tn_workqueue_pass_left(struct tn_workqueue *q) {
  pthread_mutex_lock(&q->lock);
  size_t n = q->pass_left;
  pthread_mutex_unlock(&q->lock);
  return n;
}

size_t tn_workqueue_len(struct tn_workqueue *q) {
  pthread_mutex_lock(&q->lock);
  promote_if_any_locked(q);
  size_t n = q->fifo_len;
  pthread_mutex_unlock(&q->lock);
  return n;
}

static void shutdown_locked(struct tn_workqueue *q, bool drain) {
  q->shutting_down = true;
  q->drain = drain;
  pthread_cond_broadcast(&q->item_cv);
  pthread_cond_broadcast(&q->drain_cv);
  pthread_cond_signal(&q->timer_cv);
}

void tn_workqueue_shutdown(struct tn_workqueue *q) {
  pthread_mutex_lock(&q->lock);
  shutdown_locked(q, false);
  pthread_mutex_unlock(&q->lock);
}

/* An absolute CLOCK_MONOTONIC time `ns` nanoseconds from now (ns >= 0). */
static struct timespec monotonic_in(int64_t ns) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t)(ns / TN_NS_PER_S);
  ts.tv_nsec += (long)(ns % TN_NS_PER_S);
  if (ts.tv_nsec >= TN_NS_PER_S) {
    ts.tv_sec++;
    ts.tv_nsec -= TN_NS_PER_S;
  }
  return ts;
}

bool tn_workqueue_shutdown_drain(struct tn_workqueue *q, double timeout_s) {
  bool limited = timeout_s >= 0;
  /* Beyond a year is as good as no limit, and keeps the timespec arithmetic in range. */
  if (limited && timeout_s > 365 * 86400.0)
    limited = false;
  struct timespec deadline = monotonic_in(limited ? (int64_t)(timeout_s * 1e9) : 0);
  pthread_mutex_lock(&q->lock);
  shutdown_locked(q, true);
  q->drainers++;
  while (q->n_processing && q->drain) {
    if (!limited)
      pthread_cond_wait(&q->drain_cv, &q->lock);
    else if (pthread_cond_timedwait(&q->drain_cv, &q->lock, &deadline) == ETIMEDOUT)
      break;
  }
  bool drained = q->n_processing == 0;
  q->drainers--;
  pthread_mutex_unlock(&q->lock);
  return drained;
}

bool tn_workqueue_shutting_down(struct tn_workqueue *q) {
  pthread_mutex_lock(&q->lock);
  bool s = q->shutting_down;
  pthread_mutex_unlock(&q->lock);
  return s;
}

void tn_workqueue_refresh_metrics(struct tn_workqueue *q) {
  pthread_mutex_lock(&q->lock);
  if (q->has_metrics && !q->shutting_down)
    update_unfinished_locked(q, tn_clock_now_ns(&q->clock));
  pthread_mutex_unlock(&q->lock);
}

/* The timer thread: moves delayed items in when due and refreshes the unfinished-work gauges. It sleeps on
 * timer_cv (real time) until the earliest of: the first due time, the next metrics refresh, MAX_TIMER_SLEEP;
 * add_after wakes it when the earliest due time moves. */
static void *timer_main(void *arg) {
  struct tn_workqueue *q = arg;
  pthread_mutex_lock(&q->lock);
  while (!q->shutting_down) {
    int64_t now = tn_clock_now_ns(&q->clock);
    promote_due_locked(q, now);
    if (q->has_metrics && now >= q->next_metrics_at) {
      update_unfinished_locked(q, now);
      q->next_metrics_at = now + METRICS_PERIOD;
    }
    int64_t sleep = MAX_TIMER_SLEEP;
    if (q->heap_len && q->heap[0]->ready_at - now < sleep)
      sleep = q->heap[0]->ready_at - now;
    if (q->has_metrics && q->next_metrics_at - now < sleep)
      sleep = q->next_metrics_at - now;
    if (sleep < 0)
      sleep = 0;
    struct timespec until = monotonic_in(sleep);
    pthread_cond_timedwait(&q->timer_cv, &q->lock, &until);
  }
  pthread_mutex_unlock(&q->lock);
  return NULL;
}

struct tn_workqueue *tn_workqueue_new(const char *name, struct tn_metrics *m, struct tn_ratelimiter *rl) {
  struct tn_workqueue_config cfg = {.name = name, .metrics = m, .ratelimiter = rl};
  return tn_workqueue_new_with_config(&cfg);
}

struct tn_workqueue *tn_workqueue_new_with_config(const struct tn_workqueue_config *cfg) {
  struct tn_workqueue *q = NULL;
  struct tn_ratelimiter *rl = cfg->ratelimiter;
  pthread_condattr_t ca;
  bool ca_init = false;
  int rc = -ENOMEM;

  if (!cfg->name)
    goto out;
  q = calloc(1, sizeof *q);
  if (!q)
    goto out;
  if (cfg->clock)
    q->clock = *cfg->clock;
  if (!rl)
    rl = tn_ratelimiter_default_new(cfg->clock);
  q->rl = rl;
  rl = NULL;
  q->name = strdup(cfg->name);
  if (!q->rl || !q->name)
    goto out;
  if (pthread_condattr_init(&ca) != 0)
    goto out;
  ca_init = true;
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->item_cv, NULL);
  pthread_cond_init(&q->drain_cv, &ca);
  pthread_cond_init(&q->timer_cv, &ca);
  if (cfg->metrics) {
    q->has_metrics = true;
    register_metrics(q, cfg->metrics);
  }
  if (pthread_create(&q->thread, NULL, timer_main, q) != 0)
    goto out;
  q->thread_started = true;
  char tname[16];
  snprintf(tname, sizeof tname, "wq:%s", q->name);
  pthread_setname_np(q->thread, tname);
  rc = 0;
out:
  if (ca_init)
    pthread_condattr_destroy(&ca);
  tn_ratelimiter_free(rl);
  if (rc < 0) {
    if (q && q->name && q->rl && ca_init) { /* the locks were initialised */
      tn_workqueue_free(q);
    } else if (q) {
      tn_ratelimiter_free(q->rl);
      free(q->name);
      free(q);
    }
    return NULL;
  }
  return q;
}

void tn_workqueue_free(struct tn_workqueue *q) {
  if (!q)
    return;
  tn_workqueue_shutdown(q);
  if (q->thread_started)
    pthread_join(q->thread, NULL);
  for (size_t i = 0; i < q->n_buckets; i++)
    for (struct entry *e = q->buckets[i], *next; e; e = next) {
      next = e->hnext;
      free(e);
    }
  free(q->buckets);
  free(q->fifo);
  free(q->heap);
  pthread_cond_destroy(&q->timer_cv);
  pthread_cond_destroy(&q->drain_cv);
  pthread_cond_destroy(&q->item_cv);
  pthread_mutex_destroy(&q->lock);
  tn_ratelimiter_free(q->rl);
  free(q->name);
  free(q);
}
