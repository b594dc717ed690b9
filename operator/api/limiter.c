/* limiter.c - token buckets per key in a fixed-size hash table with LRU eviction, the rate-limit
 * rule of a Tenant's status.derived.rateLimits, and the IETF RateLimit header values. */
#include "api/limiter.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define NIL UINT32_MAX

/* One bucket. Slots live in one array allocated at creation; links are slot indexes. */
struct slot {
  char *key;         /* owned; NULL when the slot is free */
  uint64_t hash;     /* of key */
  uint32_t next;     /* the next slot in this hash chain */
  uint32_t lru_prev; /* towards the most recently used */
  uint32_t lru_next; /* towards the least recently used */
  double tokens;     /* tokens at `at` */
  double at;         /* monotonic seconds of the last take */
};

/* The mutex protects every other field; it never nests with another lock. */
struct tn_limiter {
  pthread_mutex_t mu;
  struct slot *slots; /* max_keys of them */
  size_t max_keys;
  uint32_t *heads; /* n_heads chain heads (a power of two >= 2 x max_keys) */
  size_t n_heads;
  size_t used;       /* slots holding a bucket; they are slots[0 .. used-1] until the table fills */
  uint32_t lru_head; /* most recently used */
  uint32_t lru_tail; /* least recently used: evicted first */
  size_t key_bytes;  /* bytes of the key copies */
  uint64_t k0, k1;   /* SipHash key */
};

/* ---- SipHash-2-4 (Aumasson and Bernstein, 2012) ------------------------------------------------ */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                             \
  do {                                                                                                       \
    v0 += v1;                                                                                                \
    v1 = ROTL(v1, 13);                                                                                       \
    v1 ^= v0;                                                                                                \
    v0 = ROTL(v0, 32);                                                                                       \
    v2 += v3;                                                                                                \
    v3 = ROTL(v3, 16);                                                                                       \
    v3 ^= v2;                                                                                                \
    v0 += v3;                                                                                                \
    v3 = ROTL(v3, 21);                                                                                       \
    v3 ^= v0;                                                                                                \
    v2 += v1;                                                                                                \
    v1 = ROTL(v1, 17);                                                                                       \
    v1 ^= v2;                                                                                                \
    v2 = ROTL(v2, 32);                                                                                       \
  } while (0)

static uint64_t load64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t siphash(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len) {
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  size_t whole = len - len % 8;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = load64(in + i);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < len % 8; i++)
    b |= (uint64_t)in[whole + i] << (8 * i);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the table ---------------------------------------------------------------------------------- */

static size_t heads_for(size_t max_keys) {
  size_t n = 16;
  while (n < 2 * max_keys)
    n *= 2;
  return n;
}

size_t tn_limiter_memory_bound(size_t max_keys) {
  if (max_keys == 0)
    max_keys = 1;
  return sizeof(struct tn_limiter) + max_keys * (sizeof(struct slot) + TN_LIMITER_KEY_MAX + 1) +
         heads_for(max_keys) * sizeof(uint32_t);
}

struct tn_limiter *tn_limiter_new(size_t max_keys) {
  if (max_keys == 0)
    max_keys = 1;
  if (max_keys >= NIL / 2)
    return NULL;
  struct tn_limiter *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  l->max_keys = max_keys;
  l->n_heads = heads_for(max_keys);
  l->slots = calloc(max_keys, sizeof *l->slots);
  l->heads = malloc(l->n_heads * sizeof *l->heads);
  if (!l->slots || !l->heads || pthread_mutex_init(&l->mu, NULL)) {
    free(l->slots);
    free(l->heads);
    free(l);
    return NULL;
  }
  for (size_t i = 0; i < l->n_heads; i++)
    l->heads[i] = NIL;
  l->lru_head = l->lru_tail = NIL;
  unsigned char seed[16];
  if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
    /* Without the kernel's randomness the hash is still correct, only predictable. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    for (size_t i = 0; i < sizeof seed; i++)
      seed[i] = (unsigned char)((t >> (8 * (i % 8))) ^ (uintptr_t)l >> (i % 8));
  }
  l->k0 = load64(seed);
  l->k1 = load64(seed + 8);
  return l;
}

void tn_limiter_free(struct tn_limiter *l) {
  if (!l)
    return;
  for (size_t i = 0; i < l->max_keys; i++)
    free(l->slots[i].key);
  free(l->slots);
  free(l->heads);
  pthread_mutex_destroy(&l->mu);
  free(l);
}

static void lru_unlink(struct tn_limiter *l, uint32_t i) {
  struct slot *s = &l->slots[i];
  if (s->lru_prev != NIL)
    l->slots[s->lru_prev].lru_next = s->lru_next;
  else
    l->lru_head = s->lru_next;
  if (s->lru_next != NIL)
    l->slots[s->lru_next].lru_prev = s->lru_prev;
  else
    l->lru_tail = s->lru_prev;
  s->lru_prev = s->lru_next = NIL;
}

static void lru_push_front(struct tn_limiter *l, uint32_t i) {
  struct slot *s = &l->slots[i];
  s->lru_prev = NIL;
  s->lru_next = l->lru_head;
  if (l->lru_head != NIL)
    l->slots[l->lru_head].lru_prev = i;
  l->lru_head = i;
  if (l->lru_tail == NIL)
    l->lru_tail = i;
}

/* Removes slot i from its hash chain and frees its key. */
static void chain_remove(struct tn_limiter *l, uint32_t i) {
  uint32_t *p = &l->heads[l->slots[i].hash & (l->n_heads - 1)];
  while (*p != NIL && *p != i)
    p = &l->slots[*p].next;
  if (*p == i)
    *p = l->slots[i].next;
  l->key_bytes -= strlen(l->slots[i].key) + 1;
  free(l->slots[i].key);
  l->slots[i].key = NULL;
}

/* The slot of key (len bytes), or NIL. */
static uint32_t lookup(struct tn_limiter *l, const char *key, size_t len, uint64_t h) {
  for (uint32_t i = l->heads[h & (l->n_heads - 1)]; i != NIL; i = l->slots[i].next) {
    const struct slot *s = &l->slots[i];
    if (s->hash == h && strncmp(s->key, key, len) == 0 && s->key[len] == '\0')
      return i;
  }
  return NIL;
}

/* A slot for a new bucket of key: a free one, else the least recently used one emptied. NIL
 * only when the key cannot be copied. */
static uint32_t insert(struct tn_limiter *l, const char *key, size_t len, uint64_t h) {
  char *copy = malloc(len + 1);
  if (!copy)
    return NIL;
  memcpy(copy, key, len);
  copy[len] = '\0';
  uint32_t i;
  if (l->used < l->max_keys) {
    i = (uint32_t)l->used++;
  } else {
    i = l->lru_tail;
    lru_unlink(l, i);
    chain_remove(l, i);
  }
  struct slot *s = &l->slots[i];
  s->key = copy;
  s->hash = h;
  s->next = l->heads[h & (l->n_heads - 1)];
  l->heads[h & (l->n_heads - 1)] = i;
  l->key_bytes += len + 1;
  lru_push_front(l, i);
  return i;
}

static double wait_for(double need, double rate) {
  if (need <= 0)
    return 0;
  if (!(rate > 0))
    return TN_LIMITER_WAIT_MAX_S;
  double w = need / rate;
  return w < TN_LIMITER_WAIT_MAX_S ? w : TN_LIMITER_WAIT_MAX_S;
}

void tn_limiter_take(struct tn_limiter *l, const char *key, const struct tn_limit_rule *rule,
                     double now_mono_s, struct tn_limit_decision *out) {
  double rate = rule->rate_per_s > 0 && isfinite(rule->rate_per_s) ? rule->rate_per_s : 0;
  double burst = rule->burst > 0 && isfinite(rule->burst) ? rule->burst : 0;
  size_t len = strnlen(key ? key : "", TN_LIMITER_KEY_MAX);
  if (!key)
    key = "";
  uint64_t h = siphash(l->k0, l->k1, (const unsigned char *)key, len);
  double tokens;

  pthread_mutex_lock(&l->mu);
  uint32_t i = lookup(l, key, len, h);
  if (i == NIL) {
    i = insert(l, key, len, h);
    if (i != NIL) {
      l->slots[i].tokens = burst;
      l->slots[i].at = now_mono_s;
    }
  } else {
    struct slot *s = &l->slots[i];
    if (now_mono_s > s->at) {
      s->tokens += (now_mono_s - s->at) * rate;
      s->at = now_mono_s;
    }
    lru_unlink(l, i);
    lru_push_front(l, i);
  }
  if (i == NIL) {
    /* Out of memory for the key's copy: answer as a full bucket would, keep nothing. */
    tokens = burst;
  } else {
    struct slot *s = &l->slots[i];
    if (s->tokens > burst) /* full, or the rule shrank */
      s->tokens = burst;
    tokens = s->tokens;
    if (tokens >= 1)
      s->tokens -= 1;
  }
  pthread_mutex_unlock(&l->mu);

  out->allowed = tokens >= 1;
  if (out->allowed)
    tokens -= 1;
  out->retry_after_s = out->allowed ? 0 : wait_for(1 - tokens, rate);
  if (!out->allowed && burst < 1)
    out->retry_after_s = TN_LIMITER_WAIT_MAX_S;
  out->limit = (long)floor(burst);
  out->remaining = (long)floor(tokens);
  out->reset_s = wait_for(burst - tokens, rate);
}

size_t tn_limiter_size(struct tn_limiter *l) {
  pthread_mutex_lock(&l->mu);
  size_t n = l->used;
  pthread_mutex_unlock(&l->mu);
  return n;
}

size_t tn_limiter_memory(struct tn_limiter *l) {
  pthread_mutex_lock(&l->mu);
  size_t n = sizeof *l + l->max_keys * sizeof *l->slots + l->n_heads * sizeof *l->heads + l->key_bytes;
  pthread_mutex_unlock(&l->mu);
  return n;
}

/* ---- the rule of a Tenant ------------------------------------------------------------------------ */

/* {requestsPerSecond, burst} of o into *out; false when o is not such an object. */
static bool read_rule(const json_t *o, struct tn_limit_rule *out) {
  const json_t *r = json_object_get(o, "requestsPerSecond"), *b = json_object_get(o, "burst");
  if (!json_is_number(r) || !json_is_number(b))
    return false;
  out->rate_per_s = json_number_value(r);
  out->burst = json_number_value(b);
  return true;
}

int tn_limit_rule_for_tenant(const json_t *tenant, const char *endpoint, struct tn_limit_rule *out) {
  if (!tenant || !endpoint)
    return 1;
  const json_t *rl =
      json_object_get(json_object_get(json_object_get(tenant, "status"), "derived"), "rateLimits");
  if (!json_is_object(rl))
    return 1;
  const json_t *ep = json_object_get(json_object_get(rl, "endpoints"), endpoint);
  if (json_is_object(ep) && read_rule(ep, out))
    return 0;
  return read_rule(rl, out) ? 0 : 1;
}

/* ---- headers ------------------------------------------------------------------------------------- */

/* The header syntax follows draft-ietf-httpapi-ratelimit-headers-12 (20 November 2026; the same
 * Structured Field form since -08): RateLimit-Policy is a List of policy Items, each a String
 * (or Token) naming the policy with parameters q (quota, an Integer) and w (window, seconds);
 * RateLimit is a List of Items naming a policy with r (remaining quota) and t (seconds until the
 * quota resets). Integers only: Structured Field Integers have no fraction. */
static bool sf_string(char *dst, size_t n, const char *s) {
  size_t k = 0;
  if (n < 3)
    return false;
  dst[k++] = '"';
  for (const char *c = s; *c; c++) {
    if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
      return false;
    if (*c == '"' || *c == '\\') {
      if (k + 1 >= n)
        return false;
      dst[k++] = '\\';
    }
    if (k + 1 >= n)
      return false;
    dst[k++] = *c;
  }
  if (k + 2 > n)
    return false;
  dst[k++] = '"';
  dst[k] = '\0';
  return true;
}

static long ceil_seconds(double s) {
  if (!(s > 0))
    return 0;
  double c = ceil(s - 1e-9); /* 2.0000000001 from float rounding is still 2 */
  return c > 1e12 ? (long)1e12 : (long)c;
}

int tn_limit_headers(const struct tn_limit_rule *rule, const struct tn_limit_decision *d,
                     const char *policy_name, char *ratelimit, size_t n1, char *policy, size_t n2) {
  char name[2 * 128 + 3];
  int rc = 0, w;
  if (n1)
    ratelimit[0] = '\0';
  if (n2)
    policy[0] = '\0';
  if (!policy_name || strlen(policy_name) > 128)
    return -EINVAL;
  for (const char *c = policy_name; *c; c++)
    if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
      return -EINVAL;
  if (!sf_string(name, sizeof name, policy_name))
    return -EINVAL;
  double rate = rule->rate_per_s > 0 && isfinite(rule->rate_per_s) ? rule->rate_per_s : 0;
  long q = d->limit > 0 ? d->limit : 0;
  if (rate > 0) {
    long win = ceil_seconds((double)q / rate);
    w = snprintf(policy, n2, "%s;q=%ld;w=%ld", name, q, win > 0 ? win : 1);
  } else {
    w = snprintf(policy, n2, "%s;q=%ld", name, q);
  }
  if (w < 0 || (size_t)w >= n2)
    rc = -ENOSPC;
  long r = d->remaining > 0 ? d->remaining : 0;
  w = snprintf(ratelimit, n1, "%s;r=%ld;t=%ld", name, r, ceil_seconds(d->reset_s));
  if (w < 0 || (size_t)w >= n1)
    rc = -ENOSPC;
  if (rc) {
    if (n1)
      ratelimit[0] = '\0';
    if (n2)
      policy[0] = '\0';
  }
  return rc;
}
