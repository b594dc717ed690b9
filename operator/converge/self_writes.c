/* self_writes.c - the watch events that only bring back the operator's own writes (see
 * self_writes.h). A small chained hash table of "<kind>/<namespace>/<name>" -> resourceVersion
 * ("" for a create: any ADDED), with the time of the note. */
#include "converge/self_writes.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

#define MAX_EXPECTED 4 /* writes of one object whose events are still to come */
#define MAX_HELD 8     /* events held while a write of the object is in flight */

struct held {
  char *rv;
  int tag;
};

struct note {
  struct note *next;
  double at;     /* monotonic: the last write noted */
  bool inflight; /* a write is under way: its resourceVersion is not known yet */
  int n_exp, n_held;
  char *exp[MAX_EXPECTED]; /* resourceVersions our writes answered ("" for a create) */
  struct held held[MAX_HELD];
  bool overflow; /* more events than MAX_HELD were held: release one more with overflow_tag */
  int overflow_tag;
  char key[]; /* kind/namespace/name */
};

struct tn_self_writes {
  pthread_mutex_t mu;
  struct note **b; /* n_b buckets, a power of two */
  size_t n_b, n;
  double last_expire;
  tn_self_writes_release_fn release;
  void *release_ud;
};

static size_t hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return (size_t)(h ^ (h >> 29));
}

struct tn_self_writes *tn_self_writes_new(void) {
  struct tn_self_writes *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->n_b = 256;
  if (!(s->b = calloc(s->n_b, sizeof *s->b))) {
    free(s);
    return NULL;
  }
  pthread_mutex_init(&s->mu, NULL);
  return s;
}

void tn_self_writes_set_release(struct tn_self_writes *s, tn_self_writes_release_fn fn, void *ud) {
  if (!s)
    return;
  pthread_mutex_lock(&s->mu);
  s->release = fn;
  s->release_ud = ud;
  pthread_mutex_unlock(&s->mu);
}

static void note_free(struct note *n) {
  if (!n)
    return;
  for (int i = 0; i < n->n_exp; i++)
    free(n->exp[i]);
  for (int i = 0; i < n->n_held; i++)
    free(n->held[i].rv);
  free(n);
}

void tn_self_writes_free(struct tn_self_writes *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->n_b; i++)
    for (struct note *n = s->b[i], *next; n; n = next) {
      next = n->next;
      note_free(n);
    }
  free(s->b);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static const char *str(const json_t *o, const char *a, const char *b) {
  return json_string_value(json_object_get(json_object_get(o, a), b));
}

static int make_key(char *out, size_t cap, const char *kind, const char *ns, const char *name) {
  int n = snprintf(out, cap, "%s/%s/%s", kind ? kind : "", ns ? ns : "", name ? name : "");
  return n > 0 && (size_t)n < cap && name ? 0 : -1;
}

static bool note_empty(const struct note *n) { return !n->inflight && n->n_exp == 0 && n->n_held == 0; }

/* Unlinks and frees *pp. Under mu. */
static void unlink_note(struct tn_self_writes *s, struct note **pp) {
  struct note *n = *pp;
  *pp = n->next;
  note_free(n);
  s->n--;
}

static void expire_locked(struct tn_self_writes *s, double now) {
  for (size_t i = 0; i < s->n_b; i++) {
    struct note **pp = &s->b[i];
    while (*pp) {
      /* A note with a write in flight is settled by tn_self_writes_write_done, never here: the
       * events it holds must be released. */
      if (!(*pp)->inflight && now - (*pp)->at > TN_SELF_WRITES_TTL_S)
        unlink_note(s, pp);
      else
        pp = &(*pp)->next;
    }
  }
  s->last_expire = now;
}

static void grow_locked(struct tn_self_writes *s) {
  size_t nb = s->n_b * 2;
  struct note **b = calloc(nb, sizeof *b);
  if (!b)
    return; /* longer chains, still correct */
  for (size_t i = 0; i < s->n_b; i++)
    for (struct note *n = s->b[i], *next; n; n = next) {
      next = n->next;
      size_t j = hash(n->key) & (nb - 1);
      n->next = b[j];
      b[j] = n;
    }
  free(s->b);
  s->b = b;
  s->n_b = nb;
}

static struct note **slot_locked(struct tn_self_writes *s, const char *key) {
  struct note **pp = &s->b[hash(key) & (s->n_b - 1)];
  while (*pp && strcmp((*pp)->key, key) != 0)
    pp = &(*pp)->next;
  return pp;
}

/* The note of key, created when missing (NULL when out of memory). Under mu. */
static struct note *get_locked(struct tn_self_writes *s, const char *key, double now) {
  if (now - s->last_expire > TN_SELF_WRITES_TTL_S / 4)
    expire_locked(s, now);
  struct note **pp = slot_locked(s, key);
  if (*pp)
    return *pp;
  if (s->n >= s->n_b) {
    grow_locked(s);
    pp = slot_locked(s, key);
  }
  size_t kl = strlen(key);
  struct note *n = calloc(1, sizeof *n + kl + 1);
  if (!n)
    return NULL;
  memcpy(n->key, key, kl + 1);
  n->at = now;
  *pp = n;
  s->n++;
  return n;
}

/* Adds r (taken) to n's expected versions. Under mu. */
static void expect_locked(struct note *n, char *r, double now) {
  if (n->n_exp == MAX_EXPECTED) { /* the oldest goes: its event is long past */
    free(n->exp[0]);
    memmove(n->exp, n->exp + 1, (MAX_EXPECTED - 1) * sizeof *n->exp);
    n->n_exp--;
  }
  n->exp[n->n_exp++] = r;
  n->at = now;
}

/* Adds rv to what key's events may bring back. */
static void put(struct tn_self_writes *s, const char *key, const char *rv) {
  if (!s)
    return;
  double now = tn_mono_now();
  char *r = strdup(rv);
  if (!r)
    return; /* the event then enqueues: one reconcile more, nothing lost */
  pthread_mutex_lock(&s->mu);
  struct note *n = get_locked(s, key, now);
  if (n)
    expect_locked(n, r, now);
  else
    free(r);
  pthread_mutex_unlock(&s->mu);
}

/* Removes want from key's expected versions; true when it was there (and young enough). */
static bool take(struct tn_self_writes *s, const char *key, const char *want) {
  if (!s)
    return false;
  bool hit = false;
  pthread_mutex_lock(&s->mu);
  struct note **pp = slot_locked(s, key), *n = *pp;
  if (n && tn_mono_now() - n->at <= TN_SELF_WRITES_TTL_S) {
    for (int i = 0; i < n->n_exp && !hit; i++)
      if (strcmp(n->exp[i], want) == 0) {
        free(n->exp[i]);
        memmove(n->exp + i, n->exp + i + 1, (size_t)(n->n_exp - i - 1) * sizeof *n->exp);
        n->n_exp--;
        hit = true;
      }
    if (note_empty(n))
      unlink_note(s, pp);
  }
  pthread_mutex_unlock(&s->mu);
  return hit;
}

void tn_self_writes_created(struct tn_self_writes *s, const char *kind, const char *ns, const char *name) {
  char key[512];
  if (make_key(key, sizeof key, kind, ns, name) == 0)
    put(s, key, "");
}

void tn_self_writes_forget(struct tn_self_writes *s, const char *kind, const char *ns, const char *name) {
  char key[512];
  if (make_key(key, sizeof key, kind, ns, name) == 0)
    (void)take(s, key, "");
}

void tn_self_writes_wrote(struct tn_self_writes *s, const json_t *obj) {
  char key[512];
  const char *rv = str(obj, "metadata", "resourceVersion");
  if (rv && *rv &&
      make_key(key, sizeof key, json_string_value(json_object_get(obj, "kind")),
               str(obj, "metadata", "namespace"), str(obj, "metadata", "name")) == 0)
    put(s, key, rv);
}

bool tn_self_writes_take_added(struct tn_self_writes *s, const json_t *obj) {
  char key[512];
  return make_key(key, sizeof key, json_string_value(json_object_get(obj, "kind")),
                  str(obj, "metadata", "namespace"), str(obj, "metadata", "name")) == 0 &&
         take(s, key, "");
}

bool tn_self_writes_take_modified(struct tn_self_writes *s, const json_t *obj) {
  return tn_self_writes_take_modified_tag(s, obj, 0) != TN_SELF_WRITES_NOT_OURS;
}

int tn_self_writes_take_modified_tag(struct tn_self_writes *s, const json_t *obj, int tag) {
  char key[512];
  const char *rv = str(obj, "metadata", "resourceVersion");
  if (!s || !rv || !*rv ||
      make_key(key, sizeof key, json_string_value(json_object_get(obj, "kind")),
               str(obj, "metadata", "namespace"), str(obj, "metadata", "name")) != 0)
    return TN_SELF_WRITES_NOT_OURS;
  if (take(s, key, rv))
    return TN_SELF_WRITES_TAKEN;
  /* A write of the object in flight: this may be its event, arrived before the write's answer.
   * Held until tn_self_writes_write_done tells. */
  bool held = false;
  char *r = strdup(rv);
  pthread_mutex_lock(&s->mu);
  struct note *n = *slot_locked(s, key);
  if (n && n->inflight) {
    held = true;
    if (r && n->n_held < MAX_HELD) {
      n->held[n->n_held++] = (struct held){r, tag};
      r = NULL;
    } else {
      n->overflow = true; /* released at done whatever the write answered */
      n->overflow_tag = tag;
    }
  }
  pthread_mutex_unlock(&s->mu);
  free(r);
  return held ? TN_SELF_WRITES_HELD : TN_SELF_WRITES_NOT_OURS;
}

void tn_self_writes_writing(struct tn_self_writes *s, const char *kind, const char *ns, const char *name) {
  char key[512];
  if (!s || make_key(key, sizeof key, kind, ns, name) != 0)
    return;
  pthread_mutex_lock(&s->mu);
  struct note *n = get_locked(s, key, tn_mono_now());
  if (n)
    n->inflight = true; /* out of memory: the event enqueues as before */
  pthread_mutex_unlock(&s->mu);
}

void tn_self_writes_write_done(struct tn_self_writes *s, const char *kind, const char *ns, const char *name,
                               const json_t *obj) {
  char key[512];
  if (!s || make_key(key, sizeof key, kind, ns, name) != 0)
    return;
  const char *rv = obj ? str(obj, "metadata", "resourceVersion") : NULL;
  char *r = rv && *rv ? strdup(rv) : NULL;
  int tags[MAX_HELD + 1], n_rel = 0;
  bool seen = false;
  tn_self_writes_release_fn fn;
  void *ud;
  pthread_mutex_lock(&s->mu);
  fn = s->release;
  ud = s->release_ud;
  struct note **pp = slot_locked(s, key), *n = *pp;
  if (n && n->inflight) {
    n->inflight = false;
    for (int i = 0; i < n->n_held; i++) {
      if (!seen && rv && strcmp(n->held[i].rv, rv) == 0)
        seen = true; /* the event of this write: nothing new */
      else
        tags[n_rel++] = n->held[i].tag; /* someone else's change: enqueued now */
      free(n->held[i].rv);
    }
    n->n_held = 0;
    if (n->overflow)
      tags[n_rel++] = n->overflow_tag;
    n->overflow = false;
    if (r && !seen) { /* its event is still to come */
      expect_locked(n, r, tn_mono_now());
      r = NULL;
    }
    if (note_empty(n))
      unlink_note(s, pp);
  }
  pthread_mutex_unlock(&s->mu);
  free(r);
  if (fn && seen)
    fn(ud, name, TN_SELF_WRITES_OURS);
  for (int i = 0; i < n_rel; i++)
    if (fn)
      fn(ud, name, tags[i]);
}

size_t tn_self_writes_len(struct tn_self_writes *s) {
  if (!s)
    return 0;
  pthread_mutex_lock(&s->mu);
  size_t n = s->n;
  pthread_mutex_unlock(&s->mu);
  return n;
}

void tn_self_writes_expire(struct tn_self_writes *s, double now) {
  if (!s)
    return;
  pthread_mutex_lock(&s->mu);
  expire_locked(s, now);
  pthread_mutex_unlock(&s->mu);
}
