/* informer.c - a shared informer: reflector (list/watch loop), cache and handler dispatch (see
 * informer.h and docs/internals/informer.md).
 *
 * Threads. The reflector thread makes the requests: a streaming list (watch with
 * sendInitialEvents) that goes on as the watch, or a paged LIST followed by watches; it sleeps
 * in tn_kube_do while the client's transport thread runs on_data, which parses events,
 * transforms objects and writes the store. The store tells its observer of each change under
 * its write lock, and the observer appends a notification (references to the immutable
 * cached objects, no copies) to the queue. The dispatch thread pops notifications, decodes
 * the objects and calls the handlers, and enqueues the periodic resync.
 *
 * Locks. `mu` protects the queue, the sync state, the resourceVersion, the pause/stop flags
 * and the stats. It nests inside the store's lock (the observer and the resync snapshot take
 * it while the store's lock is held), so nothing may call the store while holding `mu`.
 * Because a change and its notification are made under the same store write lock, and the
 * resync snapshot is taken under the store's read lock, handlers see changes exactly in the
 * order the cache went through them. */
#include "kube/informer.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <time.h>

#include "kube/watchstream.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "util/buf.h"
#include "util/clock.h"

#define INITIAL_EVENTS_END "k8s.io/initial-events-end"
#define DEFAULT_PAGE_SIZE 500
#define MIN_WATCH_TIMEOUT_S 300 /* client-go: random in [5 min, 10 min) */
#define BACKOFF_INITIAL_S 0.8   /* client-go's reflector backoff: 800 ms doubling to 30 s, */
#define BACKOFF_CAP_S 30.0      /* jittered by up to +100 %, */
#define BACKOFF_RESET_S 120.0   /* back to 800 ms after 2 min without a failure */
#define SHORT_WATCH_S 1.0       /* a watch that ends sooner with no event counts as a failure */
#define NOTE_RESYNC 0           /* a queue entry that is not a store change */

struct note {
  int change; /* enum tn_store_change, or NOTE_RESYNC */
  struct tn_store_obj *old, *cur;
  json_t *tree; /* the tree cur was encoded from (a reference), or NULL: decoded at delivery */
};

/* The tree apply_object is writing to the store, for its notification: the dispatcher hands it to
 * the handlers instead of decoding the object it just encoded (a parse and an inflate less per
 * event). Set only around tn_store_upsert/tn_store_delete on the writing thread. */
static _Thread_local json_t *tl_tree;
/* Past this many queued notifications a tree is not kept (a tree is 5-10 times the cached text):
 * the object is decoded at delivery as before, so a long list costs no more memory. */
#define TREE_QUEUE_MAX 256

struct backoff {
  double next;       /* the next un-jittered delay; 0 = initial */
  double last_start; /* monotonic time of the last backoff */
};

struct tn_informer {
  struct tn_kube *kube;
  char *group, *version, *resource, *ns, *label_selector, *field_selector, *name, *path;
  struct tn_gvr gvr;
  tn_informer_transform_fn transform;
  void *transform_ud;
  double resync_s;
  bool force_paged;
  bool drop_mf;
  long page_size;
  int watch_timeout_s;

  struct tn_store *store;
  struct tn_informer_handlers *handlers; /* fixed once started */
  size_t n_handlers;

  struct tn_series *m_lists_streaming, *m_lists_paged, *m_events[3], *m_relists, *m_errors, *m_objects,
      *m_bytes;
  atomic_long n_objects;

  pthread_t reflector, dispatcher;
  bool started, joined; /* the owner's: start, stop and free run on one thread at a time */
  atomic_int cancel;    /* set to cancel the request in flight */

  /* Reflector-thread state. */
  bool rv_unavailable; /* a list at rv answered 410: the next streaming list asks for the newest */
  uint64_t rng;

  pthread_mutex_t mu;       /* protects everything below; nests inside the store's lock */
  pthread_cond_t q_cond;    /* to the dispatcher: notes queued, or stopping */
  pthread_cond_t sync_cond; /* to waiters: synced, or stopping */
  pthread_cond_t refl_cond; /* to the reflector: stopping, paused or resumed */
  struct note *q;           /* ring buffer */
  size_t q_head, q_len, q_cap;
  unsigned long long enqueued, delivered, sync_target;
  bool list_complete, synced, stopping, paused, resume_watch;
  char *rv; /* where the next watch starts; "" before the first list */
  struct tn_informer_stats stats;
};

static double rand01(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return (double)(*s >> 11) / 9007199254740992.0;
}

static void log_inf(struct tn_informer *inf, enum tn_log_level lvl, const char *rv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void log_inf(struct tn_informer *inf, enum tn_log_level lvl, const char *rv, const char *fmt, ...) {
  if (!tn_log_enabled(lvl))
    return;
  char msg[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  struct tn_log_fields f = TN_LOG_FIELDS_INIT;
  f.controller = inf->name;
  f.resource_version = rv;
  tn_log(lvl, &f, "informer: %s", msg);
}

/* ---- the notification queue (mu held) ---------------------------------------------------------- */

static int q_push(struct tn_informer *inf, int change, struct tn_store_obj *old, struct tn_store_obj *cur) {
  if (inf->q_len == inf->q_cap) {
    size_t cap = inf->q_cap ? inf->q_cap * 2 : 64;
    struct note *q = malloc(cap * sizeof *q);
    if (!q)
      return -ENOMEM;
    for (size_t i = 0; i < inf->q_len; i++)
      q[i] = inf->q[(inf->q_head + i) % inf->q_cap];
    free(inf->q);
    inf->q = q;
    inf->q_cap = cap;
    inf->q_head = 0;
  }
  json_t *tree =
      change != NOTE_RESYNC && cur && tl_tree && inf->q_len < TREE_QUEUE_MAX ? json_incref(tl_tree) : NULL;
  inf->q[(inf->q_head + inf->q_len) % inf->q_cap] = (struct note){
      .change = change, .old = tn_store_obj_ref(old), .cur = tn_store_obj_ref(cur), .tree = tree};
  inf->q_len++;
  inf->enqueued++;
  pthread_cond_signal(&inf->q_cond);
  return 0;
}

static struct note q_pop(struct tn_informer *inf) {
  struct note n = inf->q[inf->q_head];
  inf->q_head = (inf->q_head + 1) % inf->q_cap;
  inf->q_len--;
  if (inf->q_len == 0 && inf->q_cap > 1024) { /* give back what a big list needed */
    free(inf->q);
    inf->q = NULL;
    inf->q_cap = inf->q_head = 0;
  }
  return n;
}

static void check_synced_locked(struct tn_informer *inf) {
  if (inf->list_complete && !inf->synced && inf->delivered >= inf->sync_target) {
    inf->synced = true;
    pthread_cond_broadcast(&inf->sync_cond);
  }
}

/* The store's observer: runs under the store's write lock, on whichever thread wrote. */
static void observe(void *ud, enum tn_store_change change, struct tn_store_obj *old,
                    struct tn_store_obj *cur) {
  struct tn_informer *inf = ud;
  if (change != TN_STORE_UPDATED) {
    long n = atomic_fetch_add(&inf->n_objects, change == TN_STORE_ADDED ? 1 : -1) +
             (change == TN_STORE_ADDED ? 1 : -1);
    tn_series_set(inf->m_objects, (double)n);
  }
  tn_series_set(inf->m_bytes, (double)tn_store_bytes(inf->store));
  if (inf->n_handlers == 0)
    return;
  pthread_mutex_lock(&inf->mu);
  int rc = q_push(inf, change, old, cur);
  pthread_mutex_unlock(&inf->mu);
  if (rc)
    log_inf(inf, TN_LOG_ERROR, NULL, "out of memory: a notification for %s was dropped",
            tn_store_obj_key(cur ? cur : old));
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

static int push_resync(void *ud, struct tn_store_obj *o) {
  struct tn_informer *inf = ud;
  pthread_mutex_lock(&inf->mu);
  int rc = q_push(inf, NOTE_RESYNC, NULL, o);
  pthread_mutex_unlock(&inf->mu);
  return rc;
}

static void deliver(struct tn_informer *inf, struct note *n) {
  json_t *old = NULL, *cur = NULL;
  struct tn_store_obj *src = n->change == TN_STORE_DELETED && !n->cur ? n->old : n->cur;
  if (inf->n_handlers == 0)
    goto out; /* nobody to tell: no decode */
  if (n->tree && src == n->cur) {
    cur = n->tree; /* what cur was encoded from: the same content */
    n->tree = NULL;
  } else {
    cur = tn_store_obj_decode(src);
  }
  if (n->change == TN_STORE_UPDATED)
    old = tn_store_obj_decode(n->old);
  if (!cur || (n->change == TN_STORE_UPDATED && !old)) {
    log_inf(inf, TN_LOG_ERROR, NULL, "out of memory decoding %s: its notification was dropped",
            tn_store_obj_key(src));
    goto out;
  }
  for (size_t i = 0; i < inf->n_handlers; i++) {
    const struct tn_informer_handlers *h = &inf->handlers[i];
    switch (n->change) {
    case TN_STORE_ADDED:
      if (h->on_add)
        h->on_add(h->ud, cur);
      break;
    case TN_STORE_UPDATED:
      if (h->on_update)
        h->on_update(h->ud, old, cur);
      break;
    case NOTE_RESYNC:
      if (h->on_update)
        h->on_update(h->ud, cur, cur);
      break;
    case TN_STORE_DELETED:
      if (h->on_delete)
        h->on_delete(h->ud, cur);
      break;
    }
  }
out:
  json_decref(old);
  json_decref(cur);
  json_decref(n->tree);
  tn_store_obj_unref(n->old);
  tn_store_obj_unref(n->cur);
}

static void *dispatch_main(void *p) {
  struct tn_informer *inf = p;
  char tname[16];
  snprintf(tname, sizeof tname, "inf/%s", inf->resource);
  prctl(PR_SET_NAME, tname, 0, 0, 0);
  double next_resync = inf->resync_s > 0 ? tn_mono_now() + inf->resync_s : INFINITY;
  pthread_mutex_lock(&inf->mu);
  for (;;) {
    while (!inf->stopping && inf->q_len == 0 && tn_mono_now() < next_resync) {
      if (isfinite(next_resync)) {
        struct timespec ts = tn_mono_timespec(next_resync);
        pthread_cond_timedwait(&inf->q_cond, &inf->mu, &ts);
      } else {
        pthread_cond_wait(&inf->q_cond, &inf->mu);
      }
    }
    if (inf->stopping)
      break;
    if (tn_mono_now() >= next_resync) {
      next_resync = tn_mono_now() + inf->resync_s;
      if (inf->synced) {
        /* Appended under the store's read lock: after every change already queued, before any
         * change made after the snapshot. */
        pthread_mutex_unlock(&inf->mu);
        if (tn_store_foreach(inf->store, push_resync, inf) != 0)
          log_inf(inf, TN_LOG_ERROR, NULL, "out of memory: resync cut short");
        pthread_mutex_lock(&inf->mu);
      }
      continue;
    }
    struct note n = q_pop(inf);
    pthread_mutex_unlock(&inf->mu);
    deliver(inf, &n);
    pthread_mutex_lock(&inf->mu);
    inf->delivered++;
    check_synced_locked(inf);
  }
  pthread_mutex_unlock(&inf->mu);
  return NULL;
}

/* ---- applying what the server sent ----------------------------------------------------------------- */

static void set_rv(struct tn_informer *inf, const char *rv) {
  if (!rv || !*rv)
    return;
  char *copy = strdup(rv);
  if (!copy)
    return; /* keep the older one: a later watch repeats a few events */
  pthread_mutex_lock(&inf->mu);
  free(inf->rv);
  inf->rv = copy;
  pthread_mutex_unlock(&inf->mu);
}

static char *get_rv(struct tn_informer *inf) {
  pthread_mutex_lock(&inf->mu);
  char *rv = strdup(inf->rv ? inf->rv : "");
  pthread_mutex_unlock(&inf->mu);
  return rv;
}

/* Transforms obj (borrowed) and writes it to the cache; from_watch counts it as a watch event.
 * Problems with one object are logged and skipped, as client-go does: the stream goes on. */
static void apply_object(struct tn_informer *inf, enum tn_watch_type type, json_t *obj, bool from_watch) {
  char *key = type == TN_WATCH_DELETED ? tn_store_key_of(obj) : NULL;
  json_t *t = inf->transform ? inf->transform(json_incref(obj), inf->transform_ud) : json_incref(obj);
  struct tn_error err;
  tn_error_clear(&err);
  if (!t) {
    char *k = key ? NULL : tn_store_key_of(obj);
    log_inf(inf, TN_LOG_WARN, NULL, "the transform dropped %s (%s)",
            key ? key
            : k ? k
                : "an object",
            tn_watch_type_name(type));
    free(k);
    goto out;
  }
  tl_tree = t; /* for the notification (observe) */
  if (type == TN_WATCH_DELETED) {
    if (key && tn_store_delete(inf->store, key, t, &err) != 0 && err.code != TN_ENOTFOUND)
      log_inf(inf, TN_LOG_WARN, NULL, "deleting %s: %s", key, err.message);
  } else if (tn_store_upsert(inf->store, t, &err) != 0) {
    log_inf(inf, TN_LOG_WARN, NULL, "caching an object: %s", err.message);
  }
  tl_tree = NULL;
  if (from_watch) {
    tn_series_inc(inf->m_events[type - TN_WATCH_ADDED]);
    pthread_mutex_lock(&inf->mu);
    inf->stats.watch_events++;
    pthread_mutex_unlock(&inf->mu);
  }
out:
  json_decref(t);
  free(key);
}

/* A list is complete: delete what it did not return, record where to watch from, and the first
 * time, note how many notifications must be delivered before the informer counts as synced. */
static void list_completed(struct tn_informer *inf, const char *rv, bool streaming) {
  size_t gone = tn_store_replace_end(inf->store); /* not under mu: the observer takes it */
  set_rv(inf, rv);
  pthread_mutex_lock(&inf->mu);
  if (streaming)
    inf->stats.streaming_lists++;
  else
    inf->stats.paged_lists++;
  bool relist = inf->stats.streaming_lists + inf->stats.paged_lists > 1;
  if (relist)
    inf->stats.relists++;
  if (!inf->list_complete) {
    inf->list_complete = true;
    inf->sync_target = inf->enqueued;
    check_synced_locked(inf);
  }
  pthread_mutex_unlock(&inf->mu);
  inf->rv_unavailable = false;
  tn_series_inc(streaming ? inf->m_lists_streaming : inf->m_lists_paged);
  if (relist)
    tn_series_inc(inf->m_relists);
  /* A list decodes every object once (a streaming list of 10,000 Tenants: ~25 MB of trees made
   * and freed, page by page): give the freed heap back rather than keep it as the peak. */
  malloc_trim(0);
  log_inf(inf, TN_LOG_INFO, rv, "%s list complete: %ld objects cached, %zu gone since the previous list",
          streaming ? "streaming" : "paged", (long)atomic_load(&inf->n_objects), gone);
}

/* ---- requests -------------------------------------------------------------------------------------- */

struct outcome {
  bool listed;      /* the request completed a list */
  bool error_event; /* the stream ended with an ERROR event */
  long http_status;
  size_t events;
  struct tn_error err;
};

struct watch_ctx {
  struct tn_informer *inf;
  struct tn_watchstream *ws;
  bool listing; /* a streaming list whose initial events have not ended yet */
  bool list_done;
  bool error_event;
  bool stream_failed; /* on_data stopped the request; err says why */
  size_t events;
  struct tn_error err;
};

static int on_event(void *ud, enum tn_watch_type type, json_t *obj, struct tn_error *err) {
  struct watch_ctx *w = ud;
  struct tn_informer *inf = w->inf;
  if (type == TN_WATCH_ERROR) {
    w->error_event = true;
    int code = tn_watch_status_error(obj, err);
    return code < 0 ? code : TN_EAPI;
  }
  json_t *meta = json_object_get(obj, "metadata");
  const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
  if (type == TN_WATCH_BOOKMARK) {
    pthread_mutex_lock(&inf->mu);
    inf->stats.bookmarks++;
    pthread_mutex_unlock(&inf->mu);
    if (w->listing) {
      const char *end =
          json_string_value(json_object_get(json_object_get(meta, "annotations"), INITIAL_EVENTS_END));
      if (end && strcmp(end, "true") == 0) {
        list_completed(inf, rv, true);
        w->listing = false;
        w->list_done = true;
      }
      return 0; /* during the initial events the resourceVersion is only taken at the end */
    }
    set_rv(inf, rv);
    return 0;
  }
  apply_object(inf, type, obj, true);
  w->events++;
  if (!w->listing)
    set_rv(inf, rv);
  return 0;
}

/* On the transport thread: parse, apply, queue. Quick by construction. */
static int on_data(void *ud, const char *data, size_t len) {
  struct watch_ctx *w = ud;
  int rc = tn_watchstream_feed(w->ws, data, len, &w->err);
  if (rc)
    w->stream_failed = true;
  return rc;
}

static int query_common(struct tn_informer *inf, struct tn_buf *q) {
  int rc = 0;
  if (inf->label_selector && *inf->label_selector)
    rc = rc ? rc : tn_kube_query_add(q, "labelSelector", inf->label_selector);
  if (inf->field_selector && *inf->field_selector)
    rc = rc ? rc : tn_kube_query_add(q, "fieldSelector", inf->field_selector);
  return rc;
}

/* A watch, or with `list` a streaming list that goes on as the watch. */
static int stream_request(struct tn_informer *inf, bool list, struct outcome *o) {
  struct tn_buf q;
  struct tn_kube_response resp;
  struct watch_ctx w = {.inf = inf, .listing = list};
  char *rv = get_rv(inf);
  char tbuf[24];
  int rc = 0;
  tn_buf_init(&q, 8192);
  tn_kube_response_init(&resp);
  int timeout = inf->watch_timeout_s > 0 ? inf->watch_timeout_s
                                         : (int)(MIN_WATCH_TIMEOUT_S * (1.0 + rand01(&inf->rng)));
  snprintf(tbuf, sizeof tbuf, "%d", timeout);
  bool with_rv = rv && *rv && !(list && inf->rv_unavailable);
  if (!rv || (rc = tn_kube_query_add(&q, "watch", "1")) ||
      (list && ((rc = tn_kube_query_add(&q, "sendInitialEvents", "true")) ||
                (rc = tn_kube_query_add(&q, "resourceVersionMatch", "NotOlderThan")))) ||
      (rc = tn_kube_query_add(&q, "allowWatchBookmarks", "true")) ||
      (with_rv && (rc = tn_kube_query_add(&q, "resourceVersion", rv))) ||
      (rc = tn_kube_query_add(&q, "timeoutSeconds", tbuf)) || (rc = query_common(inf, &q))) {
    rc = tn_error_set(&o->err, rc ? rc : -ENOMEM, "building the watch query: %s",
                      tn_strerror(rc ? rc : -ENOMEM));
    goto out;
  }
  w.ws = tn_watchstream_new(0, on_event, &w);
  if (!w.ws) {
    rc = tn_error_set(&o->err, -ENOMEM, "out of memory");
    goto out;
  }
  tn_watchstream_drop_managed_fields(w.ws, inf->drop_mf);
  if (list) {
    tn_store_replace_begin(inf->store);
  } else {
    pthread_mutex_lock(&inf->mu);
    inf->stats.watches++;
    pthread_mutex_unlock(&inf->mu);
  }
  log_inf(inf, TN_LOG_DEBUG, with_rv ? rv : NULL, "%s %s", list ? "streaming list" : "watch", tn_buf_str(&q));
  struct tn_kube_request req = {
      .method = "GET",
      .path = inf->path,
      .query = tn_buf_str(&q),
      .on_data = on_data,
      .ud = &w,
      .cancel = &inf->cancel,
      .timeout_ms = (long)(timeout + 60) * 1000, /* the server ends it at timeoutSeconds; this is the net */
      .no_retry = true,
  };
  rc = tn_kube_do(inf->kube, &req, &resp, &o->err);
  if (rc == 0)
    rc = tn_watchstream_finish(w.ws, &o->err);
  else if (w.stream_failed)
    o->err = w.err; /* the parser's or the ERROR event's words, not "stopped by the consumer" */
out:
  o->listed = w.list_done;
  o->error_event = w.error_event;
  o->http_status = resp.status;
  o->events = w.events;
  tn_watchstream_free(w.ws);
  tn_kube_response_cleanup(&resp);
  tn_buf_cleanup(&q);
  free(rv);
  return rc;
}

/* LIST with limit/continue, a page at a time, at the newest resourceVersion. */
static int paged_list(struct tn_informer *inf, struct outcome *o) {
  struct tn_buf q;
  struct tn_kube_response resp;
  json_t *page = NULL;
  char *cont = NULL, *list_rv = NULL, limit[24];
  int rc = 0;
  tn_buf_init(&q, 8192);
  tn_kube_response_init(&resp);
  snprintf(limit, sizeof limit, "%ld", inf->page_size);
  tn_store_replace_begin(inf->store);
  do {
    tn_buf_reset(&q);
    if ((rc = tn_kube_query_add(&q, "limit", limit)) ||
        (cont && (rc = tn_kube_query_add(&q, "continue", cont))) || (rc = query_common(inf, &q))) {
      rc = tn_error_set(&o->err, rc, "building the list query: %s", tn_strerror(rc));
      goto out;
    }
    struct tn_kube_request req = {
        .method = "GET", .path = inf->path, .query = tn_buf_str(&q), .cancel = &inf->cancel};
    rc = tn_kube_do(inf->kube, &req, &resp, &o->err);
    o->http_status = resp.status;
    if (rc)
      goto out;
    json_error_t jerr;
    json_decref(page);
    page = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &jerr);
    json_t *items = json_object_get(page, "items");
    if (!page || !json_is_array(items)) {
      rc = tn_error_set(&o->err, TN_EINVALID, "GET %s: the answer is not a list: %s", inf->path,
                        page ? "no items" : jerr.text);
      goto out;
    }
    pthread_mutex_lock(&inf->mu);
    inf->stats.pages++;
    pthread_mutex_unlock(&inf->mu);
    /* Items of a list carry no kind/apiVersion; watch events do. Make cached objects alike. */
    const char *list_kind = json_string_value(json_object_get(page, "kind"));
    json_t *api_version = json_object_get(page, "apiVersion");
    char kind[128] = "";
    size_t kl = list_kind ? strlen(list_kind) : 0;
    if (kl > 4 && kl - 4 < sizeof kind && strcmp(list_kind + kl - 4, "List") == 0)
      snprintf(kind, sizeof kind, "%.*s", (int)(kl - 4), list_kind);
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) {
      if (*kind && !json_object_get(item, "kind"))
        json_object_set_new(item, "kind", json_string(kind));
      if (api_version && !json_object_get(item, "apiVersion"))
        json_object_set(item, "apiVersion", api_version);
      apply_object(inf, TN_WATCH_ADDED, item, false);
    }
    json_t *meta = json_object_get(page, "metadata");
    free(cont);
    free(list_rv);
    const char *c = json_string_value(json_object_get(meta, "continue"));
    const char *r = json_string_value(json_object_get(meta, "resourceVersion"));
    cont = c && *c ? strdup(c) : NULL;
    list_rv = r ? strdup(r) : NULL;
    if ((c && *c && !cont) || (r && !list_rv)) {
      rc = tn_error_set(&o->err, -ENOMEM, "out of memory");
      goto out;
    }
  } while (cont);
  list_completed(inf, list_rv, false);
  o->listed = true;
out:
  json_decref(page);
  free(cont);
  free(list_rv);
  tn_kube_response_cleanup(&resp);
  tn_buf_cleanup(&q);
  return rc;
}

/* ---- the reflector --------------------------------------------------------------------------------- */

/* client-go's ExponentialBackoffManager(800ms, 30s, 2min, 2.0, 1.0). */
static double backoff_next(struct backoff *b, uint64_t *rng) {
  double now = tn_mono_now();
  if (b->next == 0 || now - b->last_start > BACKOFF_RESET_S)
    b->next = BACKOFF_INITIAL_S;
  double d = b->next;
  b->next = fmin(b->next * 2.0, BACKOFF_CAP_S);
  b->last_start = now;
  return d * (1.0 + rand01(rng));
}

/* Sleeps for the next backoff delay, waking early for stop or pause. */
static void backoff_sleep(struct tn_informer *inf, struct backoff *b, const struct tn_error *why) {
  double d = backoff_next(b, &inf->rng);
  log_inf(inf, TN_LOG_WARN, NULL, "%s; retrying in %.1f s",
          why->message[0] ? why->message : tn_strerror(why->code), d);
  tn_series_inc(inf->m_errors);
  double deadline = tn_mono_now() + d;
  struct timespec ts = tn_mono_timespec(deadline);
  pthread_mutex_lock(&inf->mu);
  inf->stats.errors++;
  while (!inf->stopping && !inf->paused && tn_mono_now() < deadline) {
    if (pthread_cond_timedwait(&inf->refl_cond, &inf->mu, &ts) == ETIMEDOUT)
      break;
  }
  pthread_mutex_unlock(&inf->mu);
}

static void count_expired(struct tn_informer *inf) {
  pthread_mutex_lock(&inf->mu);
  inf->stats.expired++;
  pthread_mutex_unlock(&inf->mu);
}

static void *reflector_main(void *p) {
  struct tn_informer *inf = p;
  char tname[16];
  snprintf(tname, sizeof tname, "refl/%s", inf->resource);
  prctl(PR_SET_NAME, tname, 0, 0, 0);
  struct backoff bo = {0};
  bool listing = true; /* the next request is a list (else a watch from the last resourceVersion) */
  int gone_in_a_row = 0;
  int fruitless_relists = 0; /* relists for a 410 not followed by a watch that got anywhere */
  bool paged_once = false;   /* the next list is a paged LIST because a streaming list just failed */
  for (;;) {
    pthread_mutex_lock(&inf->mu);
    while (inf->paused && !inf->stopping)
      pthread_cond_wait(&inf->refl_cond, &inf->mu);
    if (inf->stopping) {
      pthread_mutex_unlock(&inf->mu);
      break;
    }
    if (inf->resume_watch) {
      inf->resume_watch = false;
      listing = false;
    }
    atomic_store(&inf->cancel, 0); /* under mu: a stop or pause from now on cancels this request */
    bool streaming = !inf->force_paged && !inf->stats.streaming_unsupported && !paged_once;
    pthread_mutex_unlock(&inf->mu);
    paged_once = false;

    struct outcome o;
    memset(&o, 0, sizeof o);
    double t0 = tn_mono_now();
    int rc = !listing    ? stream_request(inf, false, &o)
             : streaming ? stream_request(inf, true, &o)
                         : paged_list(inf, &o);
    bool was_listing = listing;
    if (o.listed)
      listing = false;

    pthread_mutex_lock(&inf->mu);
    bool interrupted = inf->stopping || inf->paused;
    pthread_mutex_unlock(&inf->mu);
    if (interrupted || rc == TN_ECANCELED)
      continue;

    gone_in_a_row = rc == TN_EGONE ? gone_in_a_row + 1 : 0;
    if (!was_listing && (o.events > 0 || rc == 0))
      fruitless_relists = 0;
    if (rc == 0) {
      if (was_listing && streaming && !o.listed) {
        /* The stream ended without the initial-events-end bookmark: the server ignored
         * sendInitialEvents (an older server). Paged LIST from now on. */
        pthread_mutex_lock(&inf->mu);
        inf->stats.streaming_unsupported = true;
        pthread_mutex_unlock(&inf->mu);
        log_inf(inf, TN_LOG_WARN, NULL,
                "the streaming list ended without its end bookmark; using paged LIST");
      } else if (!was_listing && o.events == 0 && tn_mono_now() - t0 < SHORT_WATCH_S) {
        tn_error_set(&o.err, TN_ETRANSPORT, "the watch ended after less than %.0f s without an event",
                     SHORT_WATCH_S);
        backoff_sleep(inf, &bo, &o.err);
      }
      continue; /* a watch that timed out: watch again from the last resourceVersion */
    }
    if (rc == TN_EGONE) {
      count_expired(inf);
      if (listing) {
        /* The list itself was too old (a streaming list at our resourceVersion, or an expired
         * continue token): ask for the newest state. */
        inf->rv_unavailable = true;
        if (gone_in_a_row > 1)
          backoff_sleep(inf, &bo, &o.err);
      } else {
        log_inf(inf, TN_LOG_INFO, NULL, "%s; relisting", o.err.message);
        listing = true;
        if (++fruitless_relists > 1) /* 410 again right after a relist: do not hammer */
          backoff_sleep(inf, &bo, &o.err);
      }
      continue;
    }
    if (was_listing && streaming && !o.listed && !o.error_event && o.http_status >= 400 &&
        o.http_status < 500 && rc == TN_EINVALID) {
      /* 400/422: the server refuses sendInitialEvents (the WatchList feature is off). */
      pthread_mutex_lock(&inf->mu);
      inf->stats.streaming_unsupported = true;
      pthread_mutex_unlock(&inf->mu);
      log_inf(inf, TN_LOG_WARN, NULL, "the server refused a streaming list (%s); using paged LIST",
              o.err.message);
      continue;
    }
    if (was_listing && streaming && !o.listed && rc != TN_ETHROTTLED) {
      /* Like client-go: a streaming list that failed is followed at once by a paged LIST,
       * "because making progress is better than deadlocking"; the next list streams again. */
      paged_once = true;
      tn_series_inc(inf->m_errors);
      pthread_mutex_lock(&inf->mu);
      inf->stats.errors++;
      pthread_mutex_unlock(&inf->mu);
      log_inf(inf, TN_LOG_WARN, NULL, "the streaming list failed (%s); falling back to a paged LIST",
              o.err.message[0] ? o.err.message : tn_strerror(rc));
      continue;
    }
    if (o.error_event && rc != TN_ETHROTTLED && !listing)
      listing = true; /* like client-go: any other ERROR event ends in a relist */
    backoff_sleep(inf, &bo, &o.err);
  }
  return NULL;
}

/* ---- public API -------------------------------------------------------------------------------------- */

static char *dup_or_null(const char *s, bool *failed) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *failed = true;
  return d;
}

int tn_informer_new(struct tn_kube *kube, const struct tn_informer_opts *opts, struct tn_metrics *metrics,
                    struct tn_informer **out, struct tn_error *err) {
  struct tn_informer *inf = NULL;
  int rc = 0;
  *out = NULL;
  if (!kube || !opts || !opts->gvr.version || !opts->gvr.resource || !*opts->gvr.resource) {
    rc = tn_error_set(err, -EINVAL, "informer: a client and a resource (version and plural) are required");
    goto out;
  }
  inf = calloc(1, sizeof *inf);
  if (!inf) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  pthread_mutex_init(&inf->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&inf->q_cond, &ca);
  pthread_cond_init(&inf->sync_cond, &ca);
  pthread_cond_init(&inf->refl_cond, &ca);
  pthread_condattr_destroy(&ca);
  inf->kube = kube;
  bool failed = false;
  inf->group = dup_or_null(opts->gvr.group ? opts->gvr.group : "", &failed);
  inf->version = dup_or_null(opts->gvr.version, &failed);
  inf->resource = dup_or_null(opts->gvr.resource, &failed);
  inf->ns = opts->gvr.namespaced && opts->namespace && *opts->namespace
                ? dup_or_null(opts->namespace, &failed)
                : NULL;
  inf->label_selector = dup_or_null(opts->label_selector, &failed);
  inf->field_selector = dup_or_null(opts->field_selector, &failed);
  inf->name = dup_or_null(opts->name ? opts->name : opts->gvr.resource, &failed);
  inf->rv = dup_or_null("", &failed);
  inf->store = tn_store_new();
  if (failed || !inf->store) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  inf->gvr = (struct tn_gvr){.group = inf->group,
                             .version = inf->version,
                             .resource = inf->resource,
                             .namespaced = opts->gvr.namespaced};
  inf->path = tn_kube_path(&inf->gvr, inf->ns, NULL, NULL);
  if (!inf->path) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  inf->transform = opts->transform;
  inf->transform_ud = opts->transform_ud;
  inf->resync_s = opts->resync_period_s > 0 ? opts->resync_period_s : 0;
  inf->force_paged = opts->force_paged_list;
  inf->drop_mf = opts->drop_managed_fields;
  inf->page_size = opts->page_size > 0 ? opts->page_size : DEFAULT_PAGE_SIZE;
  inf->watch_timeout_s = opts->watch_timeout_s > 0 ? opts->watch_timeout_s : 0;
  if (getrandom(&inf->rng, sizeof inf->rng, GRND_NONBLOCK) != (ssize_t)sizeof inf->rng || inf->rng == 0)
    inf->rng = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL | 1;
  if (metrics) {
    const char *const two[] = {"informer", "mode", NULL}, *const type[] = {"informer", "type", NULL},
                      *const one[] = {"informer", NULL};
    struct tn_metric *lists =
        tn_metrics_register(metrics, TN_COUNTER, "tn_informer_lists_total",
                            "Lists that filled an informer's cache, by mode.", two, NULL, 0);
    struct tn_metric *events = tn_metrics_register(
        metrics, TN_COUNTER, "tn_informer_watch_events_total",
        "Objects applied to an informer's cache from watch events, by type.", type, NULL, 0);
    struct tn_metric *relists = tn_metrics_register(metrics, TN_COUNTER, "tn_informer_relists_total",
                                                    "Lists after an informer's first one.", one, NULL, 0);
    struct tn_metric *errors = tn_metrics_register(
        metrics, TN_COUNTER, "tn_informer_watch_errors_total",
        "Failed list or watch requests an informer retried after a backoff.", one, NULL, 0);
    struct tn_metric *objects = tn_metrics_register(metrics, TN_GAUGE, "tn_informer_cache_objects",
                                                    "Objects in an informer's cache.", one, NULL, 0);
    inf->m_lists_streaming = tn_metric_with(lists, (const char *const[]){inf->name, "streaming", NULL});
    inf->m_lists_paged = tn_metric_with(lists, (const char *const[]){inf->name, "paged", NULL});
    inf->m_events[0] = tn_metric_with(events, (const char *const[]){inf->name, "ADDED", NULL});
    inf->m_events[1] = tn_metric_with(events, (const char *const[]){inf->name, "MODIFIED", NULL});
    inf->m_events[2] = tn_metric_with(events, (const char *const[]){inf->name, "DELETED", NULL});
    inf->m_relists = tn_metric_with(relists, (const char *const[]){inf->name, NULL});
    inf->m_errors = tn_metric_with(errors, (const char *const[]){inf->name, NULL});
    inf->m_objects = tn_metric_with(objects, (const char *const[]){inf->name, NULL});
    struct tn_metric *bytes =
        tn_metrics_register(metrics, TN_GAUGE, "tn_informer_cache_bytes",
                            "Bytes the objects in an informer's cache occupy (compact JSON).", one, NULL, 0);
    inf->m_bytes = tn_metric_with(bytes, (const char *const[]){inf->name, NULL});
  }
  *out = inf;
  inf = NULL;
out:
  tn_informer_free(inf);
  return rc;
}

int tn_informer_add_handlers(struct tn_informer *inf, const struct tn_informer_handlers *h,
                             struct tn_error *err) {
  if (inf->started)
    return tn_error_set(err, TN_EINVALID, "informer %s: handlers must be added before start", inf->name);
  struct tn_informer_handlers *hs = realloc(inf->handlers, (inf->n_handlers + 1) * sizeof *hs);
  if (!hs)
    return tn_error_set(err, -ENOMEM, "out of memory");
  inf->handlers = hs;
  inf->handlers[inf->n_handlers++] = *h;
  return 0;
}

int tn_informer_add_index(struct tn_informer *inf, const char *name, tn_store_index_fn fn, void *ud,
                          struct tn_error *err) {
  return tn_store_add_index(inf->store, name, fn, ud, err);
}

int tn_informer_start(struct tn_informer *inf, struct tn_error *err) {
  if (inf->started)
    return tn_error_set(err, TN_EINVALID, "informer %s: already started", inf->name);
  tn_store_set_observer(inf->store, observe, inf);
  if (pthread_create(&inf->dispatcher, NULL, dispatch_main, inf) != 0)
    return tn_error_set(err, -EAGAIN, "informer %s: cannot start its dispatch thread", inf->name);
  if (pthread_create(&inf->reflector, NULL, reflector_main, inf) != 0) {
    pthread_mutex_lock(&inf->mu);
    inf->stopping = true;
    pthread_cond_broadcast(&inf->q_cond);
    pthread_mutex_unlock(&inf->mu);
    pthread_join(inf->dispatcher, NULL);
    return tn_error_set(err, -EAGAIN, "informer %s: cannot start its reflector thread", inf->name);
  }
  inf->started = true;
  log_inf(inf, TN_LOG_INFO, NULL, "started (%s%s)", inf->path, inf->force_paged ? ", paged LIST forced" : "");
  return 0;
}

void tn_informer_stop(struct tn_informer *inf) {
  if (!inf)
    return;
  pthread_mutex_lock(&inf->mu);
  inf->stopping = true;
  atomic_store(&inf->cancel, 1);
  pthread_cond_broadcast(&inf->q_cond);
  pthread_cond_broadcast(&inf->sync_cond);
  pthread_cond_broadcast(&inf->refl_cond);
  pthread_mutex_unlock(&inf->mu);
  if (inf->started && !inf->joined) {
    pthread_join(inf->reflector, NULL);
    pthread_join(inf->dispatcher, NULL);
    inf->joined = true;
    log_inf(inf, TN_LOG_INFO, NULL, "stopped");
  }
}

void tn_informer_free(struct tn_informer *inf) {
  if (!inf)
    return;
  tn_informer_stop(inf);
  for (size_t i = 0; i < inf->q_len; i++) {
    struct note *n = &inf->q[(inf->q_head + i) % inf->q_cap];
    tn_store_obj_unref(n->old);
    tn_store_obj_unref(n->cur);
    json_decref(n->tree);
  }
  free(inf->q);
  tn_store_free(inf->store);
  free(inf->handlers);
  free(inf->group);
  free(inf->version);
  free(inf->resource);
  free(inf->ns);
  free(inf->label_selector);
  free(inf->field_selector);
  free(inf->name);
  free(inf->path);
  free(inf->rv);
  pthread_cond_destroy(&inf->q_cond);
  pthread_cond_destroy(&inf->sync_cond);
  pthread_cond_destroy(&inf->refl_cond);
  pthread_mutex_destroy(&inf->mu);
  free(inf);
}

bool tn_informer_has_synced(struct tn_informer *inf) {
  pthread_mutex_lock(&inf->mu);
  bool s = inf->synced;
  pthread_mutex_unlock(&inf->mu);
  return s;
}

int tn_informer_wait_for_sync(struct tn_informer *inf, double timeout_s) {
  struct timespec ts = tn_mono_timespec(tn_mono_now() + timeout_s);
  int rc = 0;
  pthread_mutex_lock(&inf->mu);
  while (!inf->synced && !inf->stopping && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&inf->sync_cond, &inf->mu, &ts);
  rc = inf->synced ? 0 : inf->stopping ? TN_ECANCELED : TN_ETIMEOUT;
  pthread_mutex_unlock(&inf->mu);
  return rc;
}

json_t *tn_informer_get(struct tn_informer *inf, const char *key) { return tn_store_get(inf->store, key); }
json_t *tn_informer_list(struct tn_informer *inf) { return tn_store_list(inf->store); }
json_t *tn_informer_list_by_index(struct tn_informer *inf, const char *index, const char *value,
                                  struct tn_error *err) {
  return tn_store_by_index(inf->store, index, value, err);
}
struct tn_store *tn_informer_store(struct tn_informer *inf) {
  return inf->store;
}
char *tn_informer_resource_version(struct tn_informer *inf) { return get_rv(inf); }

void tn_informer_get_stats(struct tn_informer *inf, struct tn_informer_stats *out) {
  pthread_mutex_lock(&inf->mu);
  *out = inf->stats;
  pthread_mutex_unlock(&inf->mu);
}

void tn_informer_test_pause(struct tn_informer *inf) {
  pthread_mutex_lock(&inf->mu);
  inf->paused = true;
  atomic_store(&inf->cancel, 1);
  pthread_cond_broadcast(&inf->refl_cond);
  pthread_mutex_unlock(&inf->mu);
}

void tn_informer_test_resume(struct tn_informer *inf, const char *resource_version) {
  char *rv = resource_version ? strdup(resource_version) : NULL;
  pthread_mutex_lock(&inf->mu);
  inf->paused = false;
  if (rv) {
    free(inf->rv);
    inf->rv = rv;
    inf->resume_watch = true;
  }
  pthread_cond_broadcast(&inf->refl_cond);
  pthread_mutex_unlock(&inf->mu);
}
