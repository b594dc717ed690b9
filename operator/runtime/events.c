/* events.c - the events.k8s.io/v1 event recorder (see events.h). */
#include "runtime/events.h"

#include <errno.h>
#include <math.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kube/client.h"
#include "runtime/log.h"
#include "util/clock.h"

#define NAME_MAX_LEN 253       /* metadata.name: a DNS subdomain */
#define INSTANCE_MAX_LEN 128   /* reportingInstance */
#define FIELD_MAX_LEN 128      /* reason, action */
#define WRITE_TIMEOUT_MS 10000 /* one create or patch */
#define TICK_S 1.0             /* how often the thread looks at series due for a patch */
/* Series remembered for dedup: each holds its Event as text (~1 KB with its key), so 1,024 cost
 * ~1 MiB (4,096 cost ~5 MiB, the largest item after the caches at 10,000 tenants). The least
 * recently seen series goes first, so a complaint that repeats keeps its series. */
#define CACHE_MAX 1024

static const struct tn_gvr events_gvr = {"events.k8s.io", "v1", "events", true};

/* ---- clocks and formatting --------------------------------------------------------------- */

static bool empty(const char *s) { return !s || !*s; }

/* ---- Event objects ----------------------------------------------------------------------- */

/* Cuts s (malloc'd or static storage of at least max+1 bytes) to at most max bytes without
 * splitting a UTF-8 sequence, ending it with "..." when something was cut. */
static void cut_utf8(char *s, size_t max) {
  size_t len = strlen(s);
  if (len <= max)
    return;
  size_t end = max - 3;
  while (end > 0 && ((unsigned char)s[end] & 0xC0) == 0x80)
    end--;
  memcpy(s + end, "...", 4);
}

/* Whether s is well-formed UTF-8 (jansson refuses anything else). */
static bool utf8_valid(const char *s) {
  json_t *j = json_string(s);
  json_decref(j);
  return j != NULL;
}

static int set_opt(json_t *o, const char *key, const char *v) {
  if (empty(v))
    return 0;
  return json_object_set_new(o, key, json_string(v));
}

struct tn_object_ref tn_object_ref_from(const json_t *obj, const char *kind) {
  const json_t *meta = json_object_get(obj, "metadata");
  return (struct tn_object_ref){
      .api_version = json_string_value(json_object_get(obj, "apiVersion")),
      .kind = kind ? kind : json_string_value(json_object_get(obj, "kind")),
      .name = json_string_value(json_object_get(meta, "name")),
      .namespace = json_string_value(json_object_get(meta, "namespace")),
      .uid = json_string_value(json_object_get(meta, "uid")),
      .resource_version = json_string_value(json_object_get(meta, "resourceVersion")),
  };
}

json_t *tn_event_build(const char *controller, const char *instance, const struct tn_object_ref *regarding,
                       const char *type, const char *reason, const char *action, const char *note,
                       const char *suffix, double wall_s) {
  json_t *ev = NULL, *ref = NULL;
  char *note_cut = NULL;
  char name[NAME_MAX_LEN + 1], when[40];
  size_t suffix_len = strlen(suffix);
  size_t keep = strlen(regarding->name);
  if (keep + 1 + suffix_len > NAME_MAX_LEN)
    keep = NAME_MAX_LEN - 1 - suffix_len;
  /* A cut name must still end with an alphanumeric character. */
  while (keep > 1 && (regarding->name[keep - 1] == '-' || regarding->name[keep - 1] == '.'))
    keep--;
  snprintf(name, sizeof name, "%.*s.%s", (int)keep, regarding->name, suffix);
  tn_time_micro(wall_s, when, sizeof when);

  note_cut = strdup(note ? note : "");
  if (!note_cut)
    goto fail;
  cut_utf8(note_cut, TN_EVENT_NOTE_MAX);
  if (!utf8_valid(note_cut))
    for (char *q = note_cut; *q; q++)
      if ((unsigned char)*q >= 0x80)
        *q = '?';

  ref = json_object();
  if (!ref || set_opt(ref, "apiVersion", regarding->api_version) || set_opt(ref, "kind", regarding->kind) ||
      set_opt(ref, "name", regarding->name) || set_opt(ref, "namespace", regarding->namespace) ||
      set_opt(ref, "uid", regarding->uid) || set_opt(ref, "resourceVersion", regarding->resource_version))
    goto fail;
  ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O}", "apiVersion",
                 "events.k8s.io/v1", "kind", "Event", "metadata", "name", name, "namespace",
                 empty(regarding->namespace) ? "default" : regarding->namespace, "eventTime", when,
                 "reportingController", controller, "reportingInstance", instance, "action", action, "reason",
                 reason, "note", note_cut, "type", type, "regarding", ref);
  if (!ev)
    goto fail;
  json_decref(ref);
  free(note_cut);
  return ev;
fail:
  json_decref(ref);
  json_decref(ev);
  free(note_cut);
  return NULL;
}

char *tn_event_key(const json_t *event) {
  json_t *k = json_pack("[O?, O?, O?, O?, O?, O?, O?]", json_object_get(event, "reportingController"),
                        json_object_get(event, "reportingInstance"), json_object_get(event, "type"),
                        json_object_get(event, "reason"), json_object_get(event, "action"),
                        json_object_get(event, "note"), json_object_get(event, "regarding"));
  if (!k)
    return NULL;
  char *s = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  json_decref(k);
  return s;
}

/* ---- series bookkeeping ------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static void series_free(struct tn_event_series *s) {
  if (!s)
    return;
  free(s->event);
  free(s->ns);
  free(s->name);
  free(s->key);
  free(s);
}

void tn_event_cache_init(struct tn_event_cache *c, size_t max) {
  memset(c, 0, sizeof *c);
  c->max = max ? max : 1;
}

void tn_event_cache_cleanup(struct tn_event_cache *c) {
  if (!c)
    return;
  for (size_t i = 0; i < c->n; i++)
    series_free(c->items[i]);
  free(c->items);
  memset(c, 0, sizeof *c);
}

static void cache_remove_at(struct tn_event_cache *c, size_t i) {
  series_free(c->items[i]);
  c->items[i] = c->items[--c->n];
}

bool tn_event_series_finished(const struct tn_event_series *s, double now) {
  return now - s->last_mono >= TN_EVENT_SERIES_WINDOW_S;
}

struct tn_event_series *tn_event_cache_observe(struct tn_event_cache *c, json_t *event, const char *key,
                                               double now, double wall, bool *is_new) {
  uint64_t h = fnv1a(key);
  *is_new = false;
  for (size_t i = 0; i < c->n; i++) {
    struct tn_event_series *s = c->items[i];
    if (s->hash == h && !tn_event_series_finished(s, now) && strcmp(s->key, key) == 0) {
      s->count++;
      s->last_mono = now;
      s->last_wall = wall;
      return s;
    }
  }
  if (c->n >= c->max && c->n > 0) {
    size_t oldest = 0;
    for (size_t i = 1; i < c->n; i++)
      if (c->items[i]->last_mono < c->items[oldest]->last_mono)
        oldest = i;
    cache_remove_at(c, oldest);
  }
  if (c->n == c->alloc) {
    size_t na = c->alloc ? 2 * c->alloc : 16;
    struct tn_event_series **p = realloc(c->items, na * sizeof *p);
    if (!p)
      return NULL;
    c->items = p;
    c->alloc = na;
  }
  struct tn_event_series *s = calloc(1, sizeof *s);
  const json_t *meta = json_object_get(event, "metadata");
  const char *ns = json_string_value(json_object_get(meta, "namespace"));
  const char *name = json_string_value(json_object_get(meta, "name"));
  if (!s || !(s->key = strdup(key)) || !(s->event = json_dumps(event, JSON_COMPACT)) ||
      !(s->ns = strdup(ns ? ns : "")) || !(s->name = strdup(name ? name : ""))) {
    series_free(s);
    return NULL;
  }
  s->hash = h;
  s->count = 1;
  s->last_mono = now;
  s->last_wall = wall;
  c->items[c->n++] = s;
  *is_new = true;
  return s;
}

bool tn_event_series_due(const struct tn_event_series *s, double now, bool flush) {
  if (s->count <= s->sent_count)
    return false;
  if (flush)
    return true;
  if (s->failures > 0)
    return now - s->last_attempt >= TN_EVENT_RETRY_S;
  if (s->sent_count <= 1 || tn_event_series_finished(s, now))
    return true;
  return now - s->last_attempt >= TN_EVENT_PATCH_INTERVAL_S;
}

void tn_event_series_after_write(struct tn_event_series *s, enum tn_event_write_result r, double now) {
  s->last_attempt = now;
  if (r == TN_EVENT_RETRY && ++s->failures < TN_EVENT_MAX_TRIES)
    return;
  s->failures = 0;
  s->sent_count = s->count;
}

static json_t *series_object(const struct tn_event_series *s) {
  char when[40];
  tn_time_micro(s->last_wall, when, sizeof when);
  return json_pack("{s:I, s:s}", "count", (json_int_t)s->count, "lastObservedTime", when);
}

json_t *tn_event_series_create_body(const struct tn_event_series *s) {
  json_t *ev = json_loads(s->event, 0, NULL);
  if (ev && s->count >= 2 && json_object_set_new(ev, "series", series_object(s)) != 0) {
    json_decref(ev);
    return NULL;
  }
  return ev;
}

json_t *tn_event_series_patch(const struct tn_event_series *s) {
  json_t *series = series_object(s);
  return series ? json_pack("{s:o}", "series", series) : NULL;
}

size_t tn_event_cache_expire(struct tn_event_cache *c, double now) {
  size_t dropped = 0;
  for (size_t i = 0; i < c->n;) {
    struct tn_event_series *s = c->items[i];
    if (tn_event_series_finished(s, now) && s->count <= s->sent_count) {
      cache_remove_at(c, i);
      dropped++;
    } else {
      i++;
    }
  }
  return dropped;
}

/* ---- the recorder ------------------------------------------------------------------------ */

struct pending {
  json_t *event; /* own reference */
  char *key;
  double mono, wall;
};

struct tn_recorder {
  struct tn_kube *kube; /* borrowed */
  char *controller, *instance;

  /* mu protects queue/head/len, stopping, flush_requested and flush_done. cond wakes the thread
   * (work, flush, stop); idle wakes flushers when a flush pass ends. Both use CLOCK_MONOTONIC. */
  pthread_mutex_t mu;
  pthread_cond_t cond, idle;
  struct pending queue[TN_RECORDER_QUEUE_MAX];
  size_t head, len;
  bool stopping;
  unsigned long flush_requested, flush_done;
  pthread_t thread;

  struct tn_event_cache cache; /* the thread's alone */
  atomic_uint_fast64_t dropped;
};

static void pending_cleanup(struct pending *p) {
  json_decref(p->event);
  free(p->key);
  memset(p, 0, sizeof *p);
}

static void abs_deadline(double seconds, struct timespec *ts) {
  double end = tn_mono_now() + (seconds > 0 ? seconds : 0);
  ts->tv_sec = (time_t)end;
  ts->tv_nsec = (long)((end - (double)ts->tv_sec) * 1e9);
  if (ts->tv_nsec >= 1000000000L)
    ts->tv_nsec = 999999999L;
}

/* One create (name NULL) or merge patch, bounded by WRITE_TIMEOUT_MS. */
static int write_event(struct tn_recorder *rec, const char *method, const char *ns, const char *name,
                       const json_t *body, struct tn_error *err) {
  char *path = tn_kube_path(&events_gvr, ns, name, NULL);
  char *text = json_dumps(body, JSON_COMPACT);
  struct tn_kube_response resp;
  tn_kube_response_init(&resp);
  int rc;
  if (!path || !text) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  struct tn_kube_request req = {
      .method = method,
      .path = path,
      .content_type = name ? "application/merge-patch+json" : NULL,
      .body = text,
      .body_len = strlen(text),
      .timeout_ms = WRITE_TIMEOUT_MS,
  };
  rc = tn_kube_do(rec->kube, &req, &resp, err);
out:
  tn_kube_response_cleanup(&resp);
  free(text);
  free(path);
  return rc;
}

static bool transient(int rc) {
  return rc == TN_ETRANSPORT || rc == TN_EUNAVAILABLE || rc == TN_ETHROTTLED || rc == TN_ETIMEOUT ||
         rc == TN_EAPI || rc == -ENOMEM;
}

/* Writes s's pending count: create when the server has nothing yet, else patch the series (and
 * create it when the Event is gone). final: no retry later (shutdown). Returns the last
 * request's code. */
static int write_series(struct tn_recorder *rec, struct tn_event_series *s, bool final) {
  struct tn_error err;
  json_t *body = NULL;
  const char *ns = *s->ns ? s->ns : NULL;
  const char *name = *s->name ? s->name : NULL;
  bool patch = s->sent_count > 0;
  int rc;

  tn_error_clear(&err);
  if (patch) {
    body = tn_event_series_patch(s);
    rc = body ? write_event(rec, "PATCH", ns, name, body, &err) : -ENOMEM;
    json_decref(body);
    body = NULL;
    if (rc != TN_ENOTFOUND)
      goto out;
    tn_error_clear(&err);
  }
  body = tn_event_series_create_body(s);
  rc = body ? write_event(rec, "POST", ns, NULL, body, &err) : -ENOMEM;
  /* AlreadyExists on a first create: an earlier attempt that timed out did succeed. After a
   * patch found nothing it means the Event appeared meanwhile: retried below, as client-go. */
  if (rc == TN_EEXISTS && !patch)
    rc = 0;
out:
  json_decref(body);
  enum tn_event_write_result r = TN_EVENT_WRITTEN;
  if (rc != 0) {
    r = !final && (transient(rc) || rc == TN_EEXISTS) ? TN_EVENT_RETRY : TN_EVENT_REJECTED;
    tn_log(r == TN_EVENT_RETRY ? TN_LOG_WARN : TN_LOG_ERROR, NULL,
           "events: cannot write Event %s/%s (count %ld)%s: %s", ns ? ns : "", name ? name : "", s->count,
           r == TN_EVENT_RETRY ? ", will retry" : ", giving it up", err.message);
  }
  tn_event_series_after_write(s, r, tn_mono_now());
  return rc;
}

/* Writes every series due now (all pending when flush), then forgets finished ones. When
 * final, gives up the rest after the first transient failure so shutdown stays bounded. */
static void tick(struct tn_recorder *rec, bool flush, bool final) {
  bool unreachable = false;
  for (size_t i = 0; i < rec->cache.n; i++) {
    struct tn_event_series *s = rec->cache.items[i];
    if (!tn_event_series_due(s, tn_mono_now(), flush))
      continue;
    if (unreachable) {
      tn_event_series_after_write(s, TN_EVENT_REJECTED, tn_mono_now());
      continue;
    }
    int rc = write_series(rec, s, final);
    if (final && rc != 0 && transient(rc))
      unreachable = true;
  }
  if (unreachable)
    tn_log_error("events: the API server is unreachable; pending Events were dropped at shutdown");
  (void)tn_event_cache_expire(&rec->cache, tn_mono_now());
}

/* Counts an occurrence into its series and writes it when due. While stopping nothing is
 * written here: the final flush writes each series once, so shutdown stays bounded. */
static void process(struct tn_recorder *rec, struct pending *p, bool write) {
  bool is_new;
  struct tn_event_series *s =
      tn_event_cache_observe(&rec->cache, p->event, p->key, p->mono, p->wall, &is_new);
  if (!s) {
    tn_log_error("events: out of memory; an Event was dropped");
    return;
  }
  if (write && tn_event_series_due(s, tn_mono_now(), false))
    (void)write_series(rec, s, false);
}

static void *run(void *arg) {
  struct tn_recorder *rec = arg;
  pthread_mutex_lock(&rec->mu);
  for (;;) {
    if (rec->len == 0 && !rec->stopping && rec->flush_requested == rec->flush_done) {
      struct timespec ts;
      abs_deadline(TICK_S, &ts);
      (void)pthread_cond_timedwait(&rec->cond, &rec->mu, &ts);
    }
    if (rec->len > 0) {
      struct pending p = rec->queue[rec->head];
      memset(&rec->queue[rec->head], 0, sizeof rec->queue[rec->head]);
      rec->head = (rec->head + 1) % TN_RECORDER_QUEUE_MAX;
      rec->len--;
      bool write = !rec->stopping;
      pthread_mutex_unlock(&rec->mu);
      process(rec, &p, write);
      pending_cleanup(&p);
      pthread_mutex_lock(&rec->mu);
      continue;
    }
    bool stopping = rec->stopping;
    unsigned long gen = rec->flush_requested;
    bool flush = stopping || gen != rec->flush_done;
    pthread_mutex_unlock(&rec->mu);
    tick(rec, flush, stopping);
    pthread_mutex_lock(&rec->mu);
    if (flush) {
      rec->flush_done = gen;
      pthread_cond_broadcast(&rec->idle);
    }
    if (stopping && rec->len == 0)
      break;
  }
  pthread_mutex_unlock(&rec->mu);
  return NULL;
}

int tn_recorder_new(struct tn_kube *kube, const char *reporting_controller, const char *reporting_instance,
                    struct tn_recorder **out) {
  struct tn_recorder *rec = NULL;
  int rc = 0;
  *out = NULL;
  if (!kube || empty(reporting_controller))
    return -EINVAL;
  rec = calloc(1, sizeof *rec);
  if (!rec)
    return -ENOMEM;
  rec->kube = kube;
  rec->controller = strdup(reporting_controller);
  if (!empty(reporting_instance)) {
    rec->instance = strdup(reporting_instance);
  } else {
    char host[256];
    if (gethostname(host, sizeof host) != 0 || !host[0])
      snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    size_t n = strlen(reporting_controller) + 1 + strlen(host) + 1;
    if ((rec->instance = malloc(n)))
      snprintf(rec->instance, n, "%s-%s", reporting_controller, host);
  }
  if (!rec->controller || !rec->instance) {
    rc = -ENOMEM;
    goto out;
  }
  if (strlen(rec->instance) > INSTANCE_MAX_LEN)
    rec->instance[INSTANCE_MAX_LEN] = '\0';
  tn_event_cache_init(&rec->cache, CACHE_MAX);
  atomic_init(&rec->dropped, 0);
  pthread_mutex_init(&rec->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&rec->cond, &ca);
  pthread_cond_init(&rec->idle, &ca);
  pthread_condattr_destroy(&ca);
  rc = -pthread_create(&rec->thread, NULL, run, rec);
  if (rc != 0) {
    pthread_cond_destroy(&rec->idle);
    pthread_cond_destroy(&rec->cond);
    pthread_mutex_destroy(&rec->mu);
    goto out;
  }
  *out = rec;
  rec = NULL;
out:
  if (rec) {
    free(rec->controller);
    free(rec->instance);
    free(rec);
  }
  return rc;
}

static bool valid_word(const char *s) { return !empty(s) && strlen(s) <= FIELD_MAX_LEN; }

int tn_recorder_eventf(struct tn_recorder *rec, const struct tn_object_ref *regarding, const char *type,
                       const char *reason, const char *action, const char *note_fmt, ...) {
  struct pending p = {0};
  char *note = NULL;
  int rc = 0;

  if (!rec)
    return 0;
  if (!regarding || empty(regarding->kind) || empty(regarding->name) || !valid_word(reason) ||
      !valid_word(action) || !type ||
      (strcmp(type, TN_EVENT_NORMAL) != 0 && strcmp(type, TN_EVENT_WARNING) != 0)) {
    tn_log_error("events: refusing an Event with type \"%s\", reason \"%s\", action \"%s\" about %s \"%s\": "
                 "type must be Normal or Warning, reason and action 1 to 128 characters, kind and name set",
                 type ? type : "", reason ? reason : "", action ? action : "",
                 regarding && regarding->kind ? regarding->kind : "",
                 regarding && regarding->name ? regarding->name : "");
    return -EINVAL;
  }

  va_list ap, ap2;
  va_start(ap, note_fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, note_fmt, ap);
  va_end(ap);
  if (n < 0 || !(note = malloc((size_t)n + 1))) {
    va_end(ap2);
    rc = -ENOMEM;
    goto out;
  }
  vsnprintf(note, (size_t)n + 1, note_fmt, ap2);
  va_end(ap2);

  unsigned char rnd[8];
  char suffix[2 * sizeof rnd + 1];
  if (RAND_bytes(rnd, sizeof rnd) != 1) {
    rc = -EIO;
    goto out;
  }
  for (size_t i = 0; i < sizeof rnd; i++)
    snprintf(suffix + 2 * i, 3, "%02x", rnd[i]);
  p.wall = tn_wall_now();
  p.mono = tn_mono_now();
  p.event =
      tn_event_build(rec->controller, rec->instance, regarding, type, reason, action, note, suffix, p.wall);
  if (!p.event || !(p.key = tn_event_key(p.event))) {
    rc = -ENOMEM;
    goto out;
  }

  pthread_mutex_lock(&rec->mu);
  if (rec->stopping) {
    rc = -ESHUTDOWN;
  } else if (rec->len == TN_RECORDER_QUEUE_MAX) {
    rc = -ENOSPC;
  } else {
    rec->queue[(rec->head + rec->len) % TN_RECORDER_QUEUE_MAX] = p;
    rec->len++;
    memset(&p, 0, sizeof p);
    pthread_cond_signal(&rec->cond);
  }
  pthread_mutex_unlock(&rec->mu);
  if (rc == -ENOSPC) {
    uint64_t d = atomic_fetch_add(&rec->dropped, 1) + 1;
    /* The first drop and then every hundredth, so a storm does not flood the log too. */
    if (d == 1 || d % 100 == 0)
      tn_log_warn("events: the queue is full (%d waiting); dropped the %s Event %s about %s %s (%llu "
                  "dropped so far)",
                  TN_RECORDER_QUEUE_MAX, type, reason, regarding->kind, regarding->name,
                  (unsigned long long)d);
  }
out:
  pending_cleanup(&p);
  free(note);
  return rc;
}

int tn_recorder_flush(struct tn_recorder *rec, double timeout_s) {
  struct timespec ts;
  abs_deadline(timeout_s, &ts);
  int rc = 0;
  pthread_mutex_lock(&rec->mu);
  unsigned long gen = ++rec->flush_requested;
  pthread_cond_signal(&rec->cond);
  while (rec->flush_done < gen && !rec->stopping)
    if (pthread_cond_timedwait(&rec->idle, &rec->mu, &ts) == ETIMEDOUT) {
      rc = rec->flush_done < gen ? TN_ETIMEOUT : 0;
      break;
    }
  pthread_mutex_unlock(&rec->mu);
  return rc;
}

uint64_t tn_recorder_dropped(struct tn_recorder *rec) { return atomic_load(&rec->dropped); }

void tn_recorder_free(struct tn_recorder *rec) {
  if (!rec)
    return;
  pthread_mutex_lock(&rec->mu);
  rec->stopping = true;
  pthread_cond_signal(&rec->cond);
  pthread_cond_broadcast(&rec->idle);
  pthread_mutex_unlock(&rec->mu);
  pthread_join(rec->thread, NULL);
  for (size_t i = 0; i < rec->len; i++)
    pending_cleanup(&rec->queue[(rec->head + i) % TN_RECORDER_QUEUE_MAX]);
  tn_event_cache_cleanup(&rec->cache);
  pthread_cond_destroy(&rec->idle);
  pthread_cond_destroy(&rec->cond);
  pthread_mutex_destroy(&rec->mu);
  free(rec->controller);
  free(rec->instance);
  free(rec);
}
