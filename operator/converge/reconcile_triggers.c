/* reconcile_triggers.c - why each tenant reconcile ran (see reconcile_triggers.h). An open-
 * addressing table by tenant name: the pending cause, the scheduled one (requeue-after, error)
 * and when the last reconcile began; counters are atomics, exposed by a scrape-time collector. */
#include "converge/reconcile_triggers.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/desired.h"

static const char *const trigger_names[TN_TRIGGER_COUNT] = {
    [TN_TRIGGER_UNKNOWN] = "unknown",
    [TN_TRIGGER_START] = "start",
    [TN_TRIGGER_TENANT_ADDED] = "tenant_added",
    [TN_TRIGGER_TENANT_SPEC] = "tenant_spec",
    [TN_TRIGGER_TENANT_METADATA] = "tenant_metadata",
    [TN_TRIGGER_TENANT_STATUS] = "tenant_status",
    [TN_TRIGGER_TENANT_RESYNC] = "tenant_resync",
    [TN_TRIGGER_TENANT_DELETED] = "tenant_deleted",
    [TN_TRIGGER_OWNED_ADDED] = "owned_added",
    [TN_TRIGGER_OWNED_UPDATED] = "owned_updated",
    [TN_TRIGGER_OWNED_DELETED] = "owned_deleted",
    [TN_TRIGGER_PLAN] = "plan",
    [TN_TRIGGER_REGION] = "region",
    [TN_TRIGGER_POLICY] = "policy",
    [TN_TRIGGER_REQUEUE_AFTER] = "requeue_after",
    [TN_TRIGGER_ERROR] = "error",
};

static const char *const skip_names[TN_SKIP_COUNT] = {
    [TN_SKIP_OWN_TENANT_WRITE] = "own_tenant_write",
    [TN_SKIP_OWN_CREATE] = "own_create",
    [TN_SKIP_VERSION_ONLY] = "version_only",
    [TN_SKIP_RESYNC_RECENT] = "resync_recent",
};

const char *tn_trigger_name(enum tn_trigger t) {
  return (unsigned)t < TN_TRIGGER_COUNT ? trigger_names[t] : "unknown";
}

const char *tn_trigger_skip_name(enum tn_trigger_skip s) {
  return (unsigned)s < TN_SKIP_COUNT ? skip_names[s] : "unknown";
}

const char *tn_trigger_kind_name(int kind) {
  if (kind == TN_TRIGGER_KIND_SECRET)
    return "Secret";
  if (kind > 0 && kind <= TN_KIND_COUNT)
    return tn_kind_name((enum tn_kind)(kind - 1));
  return "";
}

static bool owned_trigger(enum tn_trigger t) {
  return t == TN_TRIGGER_OWNED_ADDED || t == TN_TRIGGER_OWNED_UPDATED || t == TN_TRIGGER_OWNED_DELETED;
}

/* ---- the table ------------------------------------------------------------------------------ */

#define NONE 0xff

/* 24 bytes a tenant (384 KiB at 10,000): the name is kept as its 64-bit hash. Two names with the
 * same hash (odds ~10^-12 at 10,000 tenants) would share causes and the time of the last begin:
 * a cause counted under the other tenant, a resync skipped once more. */
struct slot {
  uint64_t h;        /* 0: empty (a name hashing to 0 or 1 is moved to 2) */
  double last_begin; /* monotonic; -INFINITY: never */
  float due;         /* of the scheduled cause, seconds after last_begin */
  uint8_t pending, pending_kind, scheduled, tomb;
};

struct tn_triggers {
  pthread_mutex_t mu;
  struct slot *slots;
  size_t cap, n, used; /* used: keys + tombstones */
  _Atomic uint64_t counts[TN_TRIGGER_COUNT][TN_TRIGGER_KINDS];
  _Atomic uint64_t skips[TN_SKIP_COUNT];
};

struct tn_triggers *tn_triggers_new(void) {
  struct tn_triggers *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  pthread_mutex_init(&t->mu, NULL);
  return t;
}

void tn_triggers_free(struct tn_triggers *t) {
  if (!t)
    return;
  free(t->slots);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  h ^= h >> 29;
  return h < 2 ? 2 : h;
}

/* The slot of hash h, or NULL. Under mu. */
static struct slot *find(struct tn_triggers *t, uint64_t h) {
  if (!t->cap)
    return NULL;
  for (size_t i = (size_t)h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
    struct slot *s = &t->slots[i];
    if (!s->h && !s->tomb)
      return NULL;
    if (s->h == h)
      return s;
  }
}

static bool rehash(struct tn_triggers *t, size_t cap) {
  struct slot *slots = calloc(cap, sizeof *slots);
  if (!slots)
    return false;
  for (size_t i = 0; i < t->cap; i++) {
    struct slot *s = &t->slots[i];
    if (!s->h)
      continue;
    size_t j = (size_t)s->h & (cap - 1);
    while (slots[j].h)
      j = (j + 1) & (cap - 1);
    slots[j] = *s;
  }
  free(t->slots);
  t->slots = slots;
  t->cap = cap;
  t->used = t->n;
  return true;
}

/* The slot of key, added when missing; NULL when out of memory. Under mu. */
static struct slot *get(struct tn_triggers *t, const char *key) {
  uint64_t h = hash(key);
  struct slot *s = find(t, h);
  if (s)
    return s;
  if ((t->used + 1) * 4 > t->cap * 3) { /* at most 3/4 full, tombstones included */
    size_t cap = t->cap ? t->cap : 64;
    while ((t->n + 1) * 8 > cap * 5) /* after growing, at most 5/8 full */
      cap *= 2;
    if (!rehash(t, cap))
      return NULL;
  }
  size_t i = (size_t)h & (t->cap - 1);
  while (t->slots[i].h)
    i = (i + 1) & (t->cap - 1);
  s = &t->slots[i];
  if (!s->tomb)
    t->used++;
  *s = (struct slot){.h = h, .last_begin = -INFINITY, .pending = NONE, .scheduled = NONE};
  t->n++;
  return s;
}

static void drop(struct tn_triggers *t, struct slot *s) {
  *s = (struct slot){.tomb = 1};
  t->n--;
}

void tn_triggers_note(struct tn_triggers *t, const char *key, enum tn_trigger trig, int kind) {
  if (!t || !key || (unsigned)trig >= TN_TRIGGER_COUNT)
    return;
  pthread_mutex_lock(&t->mu);
  struct slot *s = get(t, key);
  if (s && s->pending == NONE) {
    s->pending = (uint8_t)trig;
    s->pending_kind = (uint8_t)(owned_trigger(trig) && kind > 0 && kind < TN_TRIGGER_KINDS ? kind : 0);
  }
  pthread_mutex_unlock(&t->mu);
}

void tn_triggers_skipped(struct tn_triggers *t, enum tn_trigger_skip why) {
  if (t && (unsigned)why < TN_SKIP_COUNT)
    atomic_fetch_add(&t->skips[why], 1);
}

struct tn_trigger_cause tn_triggers_begin(struct tn_triggers *t, const char *key, double now) {
  struct tn_trigger_cause c = {TN_TRIGGER_UNKNOWN, 0};
  if (!t || !key)
    return c;
  pthread_mutex_lock(&t->mu);
  struct slot *s = get(t, key);
  if (s) {
    if (s->pending != NONE) {
      c.trigger = (enum tn_trigger)s->pending;
      c.kind = s->pending_kind;
      s->pending = NONE;
      /* A scheduled run due by now was merged into this one by the queue. */
      if (s->scheduled != NONE && s->last_begin + s->due <= now)
        s->scheduled = NONE;
      else if (s->scheduled != NONE) /* still to come: its due time kept, from this begin */
        s->due = (float)(s->last_begin + s->due - now);
    } else if (s->scheduled != NONE) {
      c.trigger = (enum tn_trigger)s->scheduled;
      s->scheduled = NONE;
    }
    s->last_begin = now;
  }
  pthread_mutex_unlock(&t->mu);
  atomic_fetch_add(&t->counts[c.trigger][c.kind], 1);
  return c;
}

void tn_triggers_end(struct tn_triggers *t, const char *key, struct tn_result res, bool gone, double now) {
  if (!t || !key)
    return;
  pthread_mutex_lock(&t->mu);
  struct slot *s = find(t, hash(key));
  double after = res.kind == TN_RESULT_REQUEUE_AFTER && res.after_s > 0 ? res.after_s : 0;
  if (s && gone && s->pending == NONE) {
    drop(t, s);
  } else if (s && (res.kind == TN_RESULT_ERROR || res.kind == TN_RESULT_REQUEUE || after > 0)) {
    /* An error's backoff starts at a few milliseconds: due at once. */
    s->scheduled = res.kind == TN_RESULT_ERROR ? TN_TRIGGER_ERROR : TN_TRIGGER_REQUEUE_AFTER;
    s->due = (float)(now + after - s->last_begin);
  }
  pthread_mutex_unlock(&t->mu);
}

bool tn_triggers_recent(struct tn_triggers *t, const char *key, double period, double now) {
  if (!t || !key)
    return false;
  pthread_mutex_lock(&t->mu);
  struct slot *s = find(t, hash(key));
  bool recent = s && now - s->last_begin < period;
  pthread_mutex_unlock(&t->mu);
  return recent;
}

uint64_t tn_triggers_count(struct tn_triggers *t, enum tn_trigger trig, int kind) {
  if (!t || (unsigned)trig >= TN_TRIGGER_COUNT || kind < 0 || kind >= TN_TRIGGER_KINDS)
    return 0;
  return atomic_load(&t->counts[trig][kind]);
}

uint64_t tn_triggers_skip_count(struct tn_triggers *t, enum tn_trigger_skip why) {
  return t && (unsigned)why < TN_SKIP_COUNT ? atomic_load(&t->skips[why]) : 0;
}

size_t tn_triggers_len(struct tn_triggers *t) {
  if (!t)
    return 0;
  pthread_mutex_lock(&t->mu);
  size_t n = t->n;
  pthread_mutex_unlock(&t->mu);
  return n;
}

/* ---- metrics -------------------------------------------------------------------------------- */

static void collect(void *ud, struct tn_collect *c) {
  struct tn_triggers *t = ud;
  static const char *const tl[] = {"trigger", "kind", NULL}, *const sl[] = {"reason", NULL};
  tn_collect_family(c, TN_COUNTER, "tenancy_reconcile_triggers_total",
                    "Tenant reconciles by their cause: the first event (or requeue) since the tenant's last "
                    "reconcile began.",
                    tl);
  for (int g = 0; g < TN_TRIGGER_COUNT; g++) {
    bool owned = owned_trigger((enum tn_trigger)g);
    for (int k = owned ? 1 : 0; k < (owned ? TN_TRIGGER_KINDS : 1); k++)
      tn_collect_sample(c, (const char *const[]){trigger_names[g], tn_trigger_kind_name(k), NULL},
                        (double)atomic_load(&t->counts[g][k]));
  }
  tn_collect_family(c, TN_COUNTER, "tenancy_reconcile_events_skipped_total",
                    "Watch events that enqueued no tenant reconcile because they carry nothing new.", sl);
  for (int s = 0; s < TN_SKIP_COUNT; s++)
    tn_collect_sample(c, (const char *const[]){skip_names[s], NULL}, (double)atomic_load(&t->skips[s]));
}

int tn_triggers_register(struct tn_metrics *m, struct tn_triggers *t) {
  return m && t ? tn_metrics_register_collector(m, collect, t) : 0;
}

void tn_triggers_unregister(struct tn_metrics *m, struct tn_triggers *t) {
  if (m && t)
    (void)tn_metrics_unregister_collector(m, collect, t);
}
