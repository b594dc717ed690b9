/* controller.c - work queue + workers + reconcile results, as controller-runtime (see controller.h).
 *
 * Threads: `workers` threads named "ctl:<name>" loop get -> reconcile -> done. The mutex
 * protects `active` (reconciles in flight) and `first_pass`; the queue has its own locking and
 * is never called with our mutex held. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "runtime/controller.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube/store.h"
#include "runtime/log.h"
#include "util/clock.h"
#include "util/error.h"

struct tn_controller {
  char *name;
  int workers;
  tn_reconcile_fn reconcile;
  void *ud;
  struct tn_workqueue *queue;
  pthread_t *threads;
  int started;
  bool stopped;
  atomic_bool abandoned; /* leadership lost: queued items are dropped, not processed */

  pthread_mutex_t mu;
  int active;
  bool first_pass;

  struct tn_series *m_success, *m_error, *m_requeue, *m_requeue_after, *m_errors, *m_time, *m_active;
};

static void register_metrics(struct tn_controller *c, struct tn_metrics *m) {
  if (!m)
    return;
  static const char *const total_labels[] = {"controller", "result", NULL};
  static const char *const ctl_labels[] = {"controller", NULL};
  static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3,  0.35,
                                   0.4,   0.45, 0.5,   0.6,  0.7, 0.8,  0.9, 1.0,  1.25, 1.5,
                                   1.75,  2.0,  2.5,   3.0,  3.5, 4.0,  4.5, 5,    6,    7,
                                   8,     9,    10,    15,   20,  25,   30,  40,   50,   60};
  struct tn_metric *total =
      tn_metrics_register(m, TN_COUNTER, "controller_runtime_reconcile_total",
                          "Total number of reconciliations per controller", total_labels, NULL, 0);
  struct tn_metric *errors =
      tn_metrics_register(m, TN_COUNTER, "controller_runtime_reconcile_errors_total",
                          "Total number of reconciliation errors per controller", ctl_labels, NULL, 0);
  struct tn_metric *time = tn_metrics_register(m, TN_HISTOGRAM, "controller_runtime_reconcile_time_seconds",
                                               "Length of time per reconciliation per controller", ctl_labels,
                                               buckets, sizeof buckets / sizeof buckets[0]);
  struct tn_metric *active =
      tn_metrics_register(m, TN_GAUGE, "controller_runtime_active_workers",
                          "Number of currently used workers per controller", ctl_labels, NULL, 0);
  struct tn_metric *maxc =
      tn_metrics_register(m, TN_GAUGE, "controller_runtime_max_concurrent_reconciles",
                          "Maximum number of concurrent reconciles per controller", ctl_labels, NULL, 0);
  const char *v_ok[] = {c->name, "success", NULL}, *v_err[] = {c->name, "error", NULL},
             *v_rq[] = {c->name, "requeue", NULL}, *v_rqa[] = {c->name, "requeue_after", NULL},
             *v_c[] = {c->name, NULL};
  c->m_success = total ? tn_metric_with(total, v_ok) : NULL;
  c->m_error = total ? tn_metric_with(total, v_err) : NULL;
  c->m_requeue = total ? tn_metric_with(total, v_rq) : NULL;
  c->m_requeue_after = total ? tn_metric_with(total, v_rqa) : NULL;
  c->m_errors = errors ? tn_metric_with(errors, v_c) : NULL;
  c->m_time = time ? tn_metric_with(time, v_c) : NULL;
  c->m_active = active ? tn_metric_with(active, v_c) : NULL;
  /* Touch the counters so every result shows 0 before the first reconcile, as controller-runtime. */
  tn_series_add(c->m_success, 0);
  tn_series_add(c->m_error, 0);
  tn_series_add(c->m_requeue, 0);
  tn_series_add(c->m_requeue_after, 0);
  tn_series_add(c->m_errors, 0);
  if (maxc)
    tn_series_set(tn_metric_with(maxc, v_c), c->workers);
}

struct tn_controller *tn_controller_new(const struct tn_controller_config *cfg) {
  if (!cfg || !cfg->name || !cfg->reconcile || cfg->workers < 1) {
    tn_ratelimiter_free(cfg ? cfg->ratelimiter : NULL);
    return NULL;
  }
  struct tn_controller *c = calloc(1, sizeof *c);
  if (!c) {
    tn_ratelimiter_free(cfg->ratelimiter);
    return NULL;
  }
  c->name = strdup(cfg->name);
  c->workers = cfg->workers;
  c->reconcile = cfg->reconcile;
  c->ud = cfg->ud;
  pthread_mutex_init(&c->mu, NULL);
  c->queue = tn_workqueue_new(cfg->name, cfg->metrics, cfg->ratelimiter);
  c->threads = calloc((size_t)cfg->workers, sizeof *c->threads);
  if (!c->name || !c->queue || !c->threads) {
    tn_controller_free(c);
    return NULL;
  }
  register_metrics(c, cfg->metrics);
  return c;
}

/* Called with the item marked done: the first pass is complete when every key queued when the
 * workers started has been reconciled once (tn_workqueue_mark_pass), not when the queue is first
 * empty: with a resync (or events) adding keys as fast as the workers drain them, the queue is not
 * empty for long after every tenant was checked (a restart with 5,100 tenants and
 * --sync-period=30s: 9,681 reconciles, 104 s, before /readyz said ready). Exact by key, with no
 * window between a get and its reconcile. */
static void note_idle(struct tn_controller *c) {
  if (tn_workqueue_pass_left(c->queue) == 0)
    c->first_pass = true;
}

static void process(struct tn_controller *c, const char *key) {
  pthread_mutex_lock(&c->mu);
  c->active++;
  tn_series_set(c->m_active, c->active);
  pthread_mutex_unlock(&c->mu);

  double t0 = tn_mono_now();
  struct tn_result r = c->reconcile(c->ud, key);
  tn_series_observe(c->m_time, tn_mono_now() - t0);

  switch (r.kind) {
  case TN_RESULT_ERROR:
    tn_series_inc(c->m_error);
    tn_series_inc(c->m_errors);
    tn_workqueue_add_rate_limited(c->queue, key);
    break;
  case TN_RESULT_REQUEUE:
    tn_series_inc(c->m_requeue);
    tn_workqueue_add_rate_limited(c->queue, key);
    break;
  case TN_RESULT_REQUEUE_AFTER:
    if (r.after_s > 0) {
      tn_series_inc(c->m_requeue_after);
      tn_workqueue_forget(c->queue, key);
      tn_workqueue_add_after(c->queue, key, r.after_s);
      break;
    }
    /* RequeueAfter <= 0 is a plain success, as controller-runtime */
    __attribute__((fallthrough));
  case TN_RESULT_SUCCESS:
  default:
    tn_series_inc(c->m_success);
    tn_workqueue_forget(c->queue, key);
    break;
  }

  pthread_mutex_lock(&c->mu);
  c->active--;
  tn_series_set(c->m_active, c->active);
  pthread_mutex_unlock(&c->mu);
}

static void *worker_main(void *arg) {
  struct tn_controller *c = arg;
  char tname[16];
  snprintf(tname, sizeof tname, "ctl:%.11s", c->name);
  pthread_setname_np(pthread_self(), tname);
  for (;;) {
    char *key = NULL;
    int rc = tn_workqueue_get(c->queue, &key);
    if (rc == TN_ECANCELED)
      break;
    if (rc) {
      struct timespec ts = {0, 10 * 1000 * 1000};
      nanosleep(&ts, NULL);
      continue;
    }
    if (!atomic_load(&c->abandoned))
      process(c, key);
    tn_workqueue_done(c->queue, key);
    pthread_mutex_lock(&c->mu);
    note_idle(c);
    pthread_mutex_unlock(&c->mu);
    free(key);
  }
  return NULL;
}

int tn_controller_start(struct tn_controller *c) {
  if (c->started)
    return 0;
  pthread_mutex_lock(&c->mu);
  tn_workqueue_mark_pass(c->queue);
  note_idle(c);
  pthread_mutex_unlock(&c->mu);
  for (int i = 0; i < c->workers; i++) {
    int rc = pthread_create(&c->threads[i], NULL, worker_main, c);
    if (rc) {
      tn_log_error("controller %s: cannot start worker %d: %s", c->name, i, strerror(rc));
      return -rc;
    }
    c->started++;
  }
  tn_log(TN_LOG_INFO, &(struct tn_log_fields){.controller = c->name, .generation = -1}, "starting %d workers",
         c->workers);
  return 0;
}

bool tn_controller_stop(struct tn_controller *c, double deadline_s) {
  if (!c || c->stopped)
    return true;
  c->stopped = true;
  bool drained = tn_workqueue_shutdown_drain(c->queue, deadline_s);
  tn_workqueue_shutdown(c->queue);
  for (int i = 0; i < c->started; i++)
    pthread_join(c->threads[i], NULL);
  tn_log(TN_LOG_INFO, &(struct tn_log_fields){.controller = c->name, .generation = -1},
         drained ? "stopped; in-flight work finished" : "stopped; in-flight work passed the deadline");
  return drained;
}

void tn_controller_abandon(struct tn_controller *c) {
  if (!c || c->stopped)
    return;
  atomic_store(&c->abandoned, true);
  c->stopped = true;
  tn_workqueue_shutdown(c->queue);
  for (int i = 0; i < c->started; i++)
    pthread_join(c->threads[i], NULL);
  tn_log(TN_LOG_INFO, &(struct tn_log_fields){.controller = c->name, .generation = -1},
         "abandoned: queued work dropped, in-flight work ended");
}

void tn_controller_free(struct tn_controller *c) {
  if (!c)
    return;
  if (c->queue)
    tn_controller_stop(c, -1);
  tn_workqueue_free(c->queue);
  pthread_mutex_destroy(&c->mu);
  free(c->threads);
  free(c->name);
  free(c);
}

void tn_controller_enqueue(struct tn_controller *c, const char *key) { tn_workqueue_add(c->queue, key); }

void tn_controller_enqueue_after(struct tn_controller *c, const char *key, double seconds) {
  tn_workqueue_add_after(c->queue, key, seconds);
}

int tn_object_key(json_t *obj, char *key, size_t n) {
  char *k = tn_store_key_of(obj); /* the cache's key: one definition of it */
  if (!k)
    return -EINVAL;
  size_t len = strlen(k);
  int rc = len < n ? 0 : -ENAMETOOLONG;
  if (rc == 0)
    memcpy(key, k, len + 1);
  free(k);
  return rc;
}

void tn_controller_enqueue_object(struct tn_controller *c, json_t *obj) {
  char key[512];
  if (tn_object_key(obj, key, sizeof key) == 0)
    tn_controller_enqueue(c, key);
}

/* The group of an apiVersion: "tenancy.dev/v1alpha1" -> "tenancy.dev", "v1" -> "". */
static bool group_matches(const char *api_version, const char *group) {
  const char *slash = strchr(api_version, '/');
  if (!slash)
    return group[0] == '\0';
  size_t n = (size_t)(slash - api_version);
  return strlen(group) == n && strncmp(api_version, group, n) == 0;
}

bool tn_controller_enqueue_owner(struct tn_controller *c, json_t *obj, const char *owner_group,
                                 const char *owner_kind, bool owner_namespaced) {
  json_t *meta = json_object_get(obj, "metadata");
  json_t *refs = json_object_get(meta, "ownerReferences");
  size_t i;
  json_t *ref;
  json_array_foreach(refs, i, ref) {
    if (!json_is_true(json_object_get(ref, "controller")))
      continue;
    const char *av = json_string_value(json_object_get(ref, "apiVersion"));
    const char *kind = json_string_value(json_object_get(ref, "kind"));
    const char *name = json_string_value(json_object_get(ref, "name"));
    if (!av || !kind || !name || strcmp(kind, owner_kind) != 0 || !group_matches(av, owner_group))
      continue;
    char key[512];
    const char *ns = json_string_value(json_object_get(meta, "namespace"));
    int w = owner_namespaced && ns && *ns ? snprintf(key, sizeof key, "%s/%s", ns, name)
                                          : snprintf(key, sizeof key, "%s", name);
    if (w < 0 || (size_t)w >= sizeof key)
      return false;
    tn_controller_enqueue(c, key);
    return true;
  }
  return false;
}

bool tn_controller_first_pass_done(struct tn_controller *c) {
  pthread_mutex_lock(&c->mu);
  bool done = c->first_pass;
  pthread_mutex_unlock(&c->mu);
  return done;
}

struct tn_workqueue *tn_controller_queue(struct tn_controller *c) {
  return c->queue;
}
