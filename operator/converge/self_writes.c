/* self_writes.c - the watch events that only bring back the operator's own writes (see
 * self_writes.h). A small chained hash table of "<kind>/<namespace>/<name>" -> resourceVersion
 * ("" for a create: any ADDED), with the time of the note. */
#include "converge/self_writes.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

struct note {
  struct note *next;
  double at;  /* monotonic */
  char *rv;   /* "" for a create */
  char key[]; /* kind/namespace/name */
};

struct tn_self_writes {
  pthread_mutex_t mu;
  struct note **b; /* n_b buckets, a power of two */
  size_t n_b, n;
  double last_expire;
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

static void note_free(struct note *n) {
  if (n) {
    free(n->rv);
    free(n);
  }
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

static void expire_locked(struct tn_self_writes *s, double now) {
  for (size_t i = 0; i < s->n_b; i++) {
    struct note **pp = &s->b[i];
    while (*pp) {
      if (now - (*pp)->at > TN_SELF_WRITES_TTL_S) {
        struct note *n = *pp;
        *pp = n->next;
        note_free(n);
        s->n--;
      } else {
        pp = &(*pp)->next;
      }
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

/* Adds or replaces the note of key. */
static void put(struct tn_self_writes *s, const char *key, const char *rv) {
  if (!s)
    return;
  double now = tn_mono_now();
  size_t kl = strlen(key);
  struct note *n = malloc(sizeof *n + kl + 1);
  char *r = strdup(rv);
  if (!n || !r) {
    free(n);
    free(r);
    return; /* the event then enqueues: one reconcile more, nothing lost */
  }
  memcpy(n->key, key, kl + 1);
  n->rv = r;
  n->at = now;
  pthread_mutex_lock(&s->mu);
  if (now - s->last_expire > TN_SELF_WRITES_TTL_S / 4)
    expire_locked(s, now);
  if (s->n >= s->n_b)
    grow_locked(s);
  struct note **pp = &s->b[hash(key) & (s->n_b - 1)];
  while (*pp && strcmp((*pp)->key, key) != 0)
    pp = &(*pp)->next;
  if (*pp) { /* a later write of the same object: its event is the one to expect */
    n->next = (*pp)->next;
    note_free(*pp);
    *pp = n;
  } else {
    n->next = NULL;
    *pp = n;
    s->n++;
  }
  pthread_mutex_unlock(&s->mu);
}

/* Removes the note of key when its rv is want ("" matches a create's note only). */
static bool take(struct tn_self_writes *s, const char *key, const char *want) {
  if (!s)
    return false;
  bool hit = false;
  pthread_mutex_lock(&s->mu);
  struct note **pp = &s->b[hash(key) & (s->n_b - 1)];
  while (*pp && strcmp((*pp)->key, key) != 0)
    pp = &(*pp)->next;
  if (*pp && strcmp((*pp)->rv, want) == 0 && tn_mono_now() - (*pp)->at <= TN_SELF_WRITES_TTL_S) {
    struct note *n = *pp;
    *pp = n->next;
    note_free(n);
    s->n--;
    hit = true;
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
  char key[512];
  const char *rv = str(obj, "metadata", "resourceVersion");
  return rv && *rv &&
         make_key(key, sizeof key, json_string_value(json_object_get(obj, "kind")),
                  str(obj, "metadata", "namespace"), str(obj, "metadata", "name")) == 0 &&
         take(s, key, rv);
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
