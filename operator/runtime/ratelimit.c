/* ratelimit.c - retry rate limiters for the work queue (see ratelimit.h). */
#include "runtime/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t tn_clock_now_ns(const struct tn_clock *c) {
  if (c && c->now_ns)
    return c->now_ns(c->ud);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * TN_NS_PER_S + ts.tv_nsec;
}

/* Every limiter starts with its operations; the concrete structs embed this first. */
struct limiter_ops {
  int64_t (*when)(struct tn_ratelimiter *rl, const char *item);
  void (*forget)(struct tn_ratelimiter *rl, const char *item);
  int (*num_requeues)(struct tn_ratelimiter *rl, const char *item);
  void (*free)(struct tn_ratelimiter *rl);
};

struct tn_ratelimiter {
  const struct limiter_ops *ops;
};

int64_t tn_ratelimiter_when(struct tn_ratelimiter *rl, const char *item) { return rl->ops->when(rl, item); }
void tn_ratelimiter_forget(struct tn_ratelimiter *rl, const char *item) { rl->ops->forget(rl, item); }
int tn_ratelimiter_num_requeues(struct tn_ratelimiter *rl, const char *item) {
  return rl->ops->num_requeues(rl, item);
}
void tn_ratelimiter_free(struct tn_ratelimiter *rl) {
  if (rl)
    rl->ops->free(rl);
}

/* ---- a string -> failure count map (chained hash table) ---- */

struct count_node {
  struct count_node *next;
  uint64_t hash;
  int count;
  char key[];
};

struct count_map {
  struct count_node **buckets; /* n_buckets, a power of two; NULL until the first insert */
  size_t n_buckets;
  size_t n;
};

static uint64_t hash_str(const char *s) {
  uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3u;
  return h;
}

static struct count_node **count_map_slot(struct count_map *m, const char *key, uint64_t h) {
  struct count_node **pp = &m->buckets[h & (m->n_buckets - 1)];
  for (; *pp; pp = &(*pp)->next)
    if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
      break;
  return pp;
}

static int count_map_get(struct count_map *m, const char *key) {
  if (!m->n)
    return 0;
  struct count_node *n = *count_map_slot(m, key, hash_str(key));
  return n ? n->count : 0;
}

static int count_map_grow(struct count_map *m) {
  size_t nb = m->n_buckets ? m->n_buckets * 2 : 16;
  struct count_node **b = calloc(nb, sizeof *b);
  if (!b)
    return -1;
  for (size_t i = 0; i < m->n_buckets; i++)
    for (struct count_node *n = m->buckets[i], *next; n; n = next) {
      next = n->next;
      n->next = b[n->hash & (nb - 1)];
      b[n->hash & (nb - 1)] = n;
    }
  free(m->buckets);
  m->buckets = b;
  m->n_buckets = nb;
  return 0;
}

/* Increments the item's count and returns the count before; on allocation failure the count is not recorded
 * (the item is treated as failing for the first time). */
static int count_map_bump(struct count_map *m, const char *key) {
  uint64_t h = hash_str(key);
  if (m->n_buckets) {
    struct count_node *n = *count_map_slot(m, key, h);
    if (n) {
      int before = n->count;
      if (n->count < INT32_MAX)
        n->count++;
      return before;
    }
  }
  if (m->n >= m->n_buckets && count_map_grow(m) < 0 && !m->n_buckets)
    return 0;
  size_t len = strlen(key);
  struct count_node *n = malloc(sizeof *n + len + 1);
  if (!n)
    return 0;
  memcpy(n->key, key, len + 1);
  n->hash = h;
  n->count = 1;
  struct count_node **head = &m->buckets[h & (m->n_buckets - 1)];
  n->next = *head;
  *head = n;
  m->n++;
  return 0;
}

static void count_map_delete(struct count_map *m, const char *key) {
  if (!m->n)
    return;
  struct count_node **pp = count_map_slot(m, key, hash_str(key));
  struct count_node *n = *pp;
  if (!n)
    return;
  *pp = n->next;
  free(n);
  m->n--;
}

static void count_map_cleanup(struct count_map *m) {
  for (size_t i = 0; i < m->n_buckets; i++)
    for (struct count_node *n = m->buckets[i], *next; n; n = next) {
      next = n->next;
      free(n);
    }
  free(m->buckets);
  memset(m, 0, sizeof *m);
}

/* ---- per-item exponential failure limiter ---- */

struct exponential {
  struct tn_ratelimiter base;
  pthread_mutex_t lock; /* protects failures */
  struct count_map failures;
  int64_t base_ns, max_ns;
};

static int64_t exponential_when(struct tn_ratelimiter *rl, const char *item) {
  struct exponential *e = (struct exponential *)rl;
  pthread_mutex_lock(&e->lock);
  int exp = count_map_bump(&e->failures, item);
  pthread_mutex_unlock(&e->lock);
  /* As client-go: computed in floating point so that it saturates instead of overflowing; 2^63 itself does
   * not fit an int64 either, hence >=. */
  double backoff = (double)e->base_ns * pow(2.0, (double)exp);
  if (!(backoff < 0x1p63))
    return e->max_ns;
  int64_t calculated = (int64_t)backoff;
  return calculated > e->max_ns ? e->max_ns : calculated;
}

static void exponential_forget(struct tn_ratelimiter *rl, const char *item) {
  struct exponential *e = (struct exponential *)rl;
  pthread_mutex_lock(&e->lock);
  count_map_delete(&e->failures, item);
  pthread_mutex_unlock(&e->lock);
}

static int exponential_num_requeues(struct tn_ratelimiter *rl, const char *item) {
  struct exponential *e = (struct exponential *)rl;
  pthread_mutex_lock(&e->lock);
  int n = count_map_get(&e->failures, item);
  pthread_mutex_unlock(&e->lock);
  return n;
}

static void exponential_free(struct tn_ratelimiter *rl) {
  struct exponential *e = (struct exponential *)rl;
  count_map_cleanup(&e->failures);
  pthread_mutex_destroy(&e->lock);
  free(e);
}

static const struct limiter_ops exponential_ops = {exponential_when, exponential_forget,
                                                   exponential_num_requeues, exponential_free};

struct tn_ratelimiter *tn_ratelimiter_exponential_new(int64_t base_ns, int64_t max_ns) {
  struct exponential *e = calloc(1, sizeof *e);
  if (!e)
    return NULL;
  e->base.ops = &exponential_ops;
  pthread_mutex_init(&e->lock, NULL);
  e->base_ns = base_ns < 0 ? 0 : base_ns;
  e->max_ns = max_ns < 0 ? 0 : max_ns;
  return &e->base;
}

/* ---- token bucket (golang.org/x/time/rate Limiter.Reserve().Delay()) ---- */

struct bucket {
  struct tn_ratelimiter base;
  pthread_mutex_t lock; /* protects tokens, last, has_last */
  double qps;
  int burst;
  double tokens; /* may go negative: reservations made ahead of time */
  int64_t last;  /* when tokens was last brought up to date */
  bool has_last; /* false until the first reservation (Go's zero time.Time) */
  struct tn_clock clock;
};

/* time.Duration.Seconds(): whole seconds plus the fraction, exactly as Go computes it. */
static double duration_seconds(int64_t d) {
  int64_t sec = d / TN_NS_PER_S, nsec = d % TN_NS_PER_S;
  return (double)sec + (double)nsec / 1e9;
}

static int64_t bucket_when(struct tn_ratelimiter *rl, const char *item) {
  struct bucket *b = (struct bucket *)rl;
  if (isinf(b->qps) && b->qps > 0)
    return 0; /* rate.Inf allows every event, whatever the burst */
  if (b->burst < 1)
    return TN_DURATION_INF; /* n > burst: the reservation is not ok, nothing changes */
  int64_t now = tn_clock_now_ns(&b->clock);
  pthread_mutex_lock(&b->lock);
  /* advance(): refill for the time since last (never negative), at most up to burst. Before the first
   * reservation the bucket is full (it starts with burst tokens). */
  double tokens = b->tokens;
  if (b->has_last && b->qps > 0) {
    int64_t last = b->last > now ? now : b->last;
    tokens += duration_seconds(now - last) * b->qps;
  }
  if (tokens > b->burst)
    tokens = b->burst;
  tokens -= 1;
  int64_t wait = 0;
  if (tokens < 0) { /* durationFromTokens(-tokens), saturating */
    double d = b->qps > 0 ? (-tokens / b->qps) * 1e9 : INFINITY;
    wait = d >= 0x1p63 ? TN_DURATION_INF : (int64_t)d;
  }
  b->last = now;
  b->has_last = true;
  b->tokens = tokens;
  pthread_mutex_unlock(&b->lock);
  return wait; /* Reservation.Delay() at the same instant: timeToAct - now */
}

static void bucket_forget(struct tn_ratelimiter *rl, const char *item) {}
static int bucket_num_requeues(struct tn_ratelimiter *rl, const char *item) { return 0; }

static void bucket_free(struct tn_ratelimiter *rl) {
  struct bucket *b = (struct bucket *)rl;
  pthread_mutex_destroy(&b->lock);
  free(b);
}

static const struct limiter_ops bucket_ops = {bucket_when, bucket_forget, bucket_num_requeues, bucket_free};

struct tn_ratelimiter *tn_ratelimiter_bucket_new(double qps, int burst, const struct tn_clock *clock) {
  struct bucket *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->base.ops = &bucket_ops;
  pthread_mutex_init(&b->lock, NULL);
  b->qps = isnan(qps) ? 0 : qps;
  b->burst = burst;
  b->tokens = burst;
  if (clock)
    b->clock = *clock;
  return &b->base;
}

/* ---- max-of ---- */

struct max_of {
  struct tn_ratelimiter base;
  int n;
  struct tn_ratelimiter *limiters[]; /* owned; immutable after creation, so no lock */
};

static int64_t max_of_when(struct tn_ratelimiter *rl, const char *item) {
  struct max_of *m = (struct max_of *)rl;
  int64_t ret = 0;
  for (int i = 0; i < m->n; i++) {
    int64_t cur = tn_ratelimiter_when(m->limiters[i], item);
    if (cur > ret)
      ret = cur;
  }
  return ret;
}

static void max_of_forget(struct tn_ratelimiter *rl, const char *item) {
  struct max_of *m = (struct max_of *)rl;
  for (int i = 0; i < m->n; i++)
    tn_ratelimiter_forget(m->limiters[i], item);
}

static int max_of_num_requeues(struct tn_ratelimiter *rl, const char *item) {
  struct max_of *m = (struct max_of *)rl;
  int ret = 0;
  for (int i = 0; i < m->n; i++) {
    int cur = tn_ratelimiter_num_requeues(m->limiters[i], item);
    if (cur > ret)
      ret = cur;
  }
  return ret;
}

static void max_of_free(struct tn_ratelimiter *rl) {
  struct max_of *m = (struct max_of *)rl;
  for (int i = 0; i < m->n; i++)
    tn_ratelimiter_free(m->limiters[i]);
  free(m);
}

static const struct limiter_ops max_of_ops = {max_of_when, max_of_forget, max_of_num_requeues, max_of_free};

struct tn_ratelimiter *tn_ratelimiter_max_of_new(struct tn_ratelimiter *const *limiters, int n) {
  struct max_of *m = NULL;
  bool ok = n >= 0 && (n == 0 || limiters);
  for (int i = 0; ok && i < n; i++)
    ok = limiters[i] != NULL;
  if (!ok)
    goto out;
  m = malloc(sizeof *m + (size_t)n * sizeof m->limiters[0]);
  if (!m)
    goto out;
  m->base.ops = &max_of_ops;
  m->n = n;
  if (n)
    memcpy(m->limiters, limiters, (size_t)n * sizeof m->limiters[0]);
  return &m->base;
out:
  for (int i = 0; limiters && i < n; i++)
    tn_ratelimiter_free(limiters[i]);
  return NULL;
}

struct tn_ratelimiter *tn_ratelimiter_default_new(const struct tn_clock *clock) {
  struct tn_ratelimiter *parts[2] = {tn_ratelimiter_exponential_new(5 * TN_NS_PER_MS, 1000 * TN_NS_PER_S),
                                     tn_ratelimiter_bucket_new(10, 100, clock)};
  return tn_ratelimiter_max_of_new(parts, 2);
}
