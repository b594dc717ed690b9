/* store.c - a thread-safe cache of API objects with secondary indexes (see store.h).
 *
 * Memory layout, chosen by measurement (docs/internals/informer.md): each object is a single
 * allocation `struct tn_store_obj` holding its key and its compact JSON text, deflated with a
 * dictionary taken from an earlier object of the same store (4-13x smaller); a jansson tree
 * of the same object costs 5-10 times more than the plain text. The key table is open addressing with linear
 * probing over pointers (no per-entry node), deletion by backward shift (no tombstones). An
 * index is a second open-addressing table of value entries; each entry holds the set of
 * objects carrying that value, a plain array while small and a pointer hash set when large,
 * so removing one object from a value shared by 100,000 objects is O(1).
 *
 * Locking: `lock` (a writer-preferring rwlock) protects every field of the store and the
 * `gen` field of the objects it holds; objects are otherwise immutable and shared with
 * readers and observers by reference count. Index functions and the observer run under the
 * write lock; an observer may take its own locks after this one (the informer's queue lock
 * nests inside it). Reads copy references under the read lock and decode after unlocking. */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np */
#include "kube/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <zlib.h>

/* A compression dictionary: the compact JSON of an earlier object of the same store. Objects of
 * one kind share most of their text (field names, labels, conditions), so raw deflate primed
 * with one of them stores a 2.6 KB Tenant in ~200 bytes (docs/internals/informer.md). */
struct zdict {
  atomic_uint refs;
  uint32_t len;
  unsigned char data[];
};

struct tn_store_obj {
  atomic_uint refs;
  uint32_t hash;       /* of the key */
  uint32_t gen;        /* replace generation that last wrote it; the owning store's, under its lock */
  uint32_t json_len;   /* of the JSON text */
  uint32_t stored_len; /* bytes after the key: json_len + 1 when plain, else deflated */
  uint16_t key_len;
  uint16_t ivals_len; /* bytes of the packed index values after the text; 0: none packed */
  struct zdict *dict; /* the dictionary the text was deflated with; NULL: stored plain */
  /* key, '\0', then the compact JSON and '\0', or its raw deflate stream; then the packed
   * index values (ivals_pack): what unindex removes, without decoding the object. */
  char data[];
};

struct tn_index_values {
  char **v;
  size_t n, cap;
};

/* The objects carrying one value of one index. */
struct ientry {
  uint32_t hash; /* of value */
  uint32_t n;    /* objects in the set */
  uint32_t cap;  /* <= SMALL_SET: objs[0..n) is a plain array; above: a hash set, NULL = empty */
  struct tn_store_obj **objs;
  char value[];
};

#define SMALL_SET 8u

struct index {
  char *name;
  tn_store_index_fn fn;
  void *ud;
  struct ientry **slots; /* open addressing by value */
  size_t cap, n;
};

struct tn_store {
  pthread_rwlock_t lock;       /* protects everything below, and tn_store_obj.gen */
  struct tn_store_obj **slots; /* open addressing by key; cap is 0 or a power of two */
  size_t cap, n;
  struct index *indexes;
  size_t n_indexes;
  uint32_t gen; /* current replace generation */
  tn_store_observer_fn observer;
  void *observer_ud;
  atomic_size_t bytes;     /* allocation sizes of the cached objects (written under lock, read without) */
  atomic_ulong changes;    /* upserts and removals so far (written under lock, read without) */
  pthread_mutex_t dict_mu; /* protects dict and dict_changes (taken without the lock above) */
  struct zdict *dict;      /* for new objects; NULL until one is big enough to serve */
  int dict_changes;
};

/* ---- hashing ------------------------------------------------------------------------------- */

static uint64_t g_seed;
static pthread_once_t g_seed_once = PTHREAD_ONCE_INIT;

static void seed_init(void) {
  if (getrandom(&g_seed, sizeof g_seed, GRND_NONBLOCK) != (ssize_t)sizeof g_seed)
    g_seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&g_seed;
}

static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

static uint32_t hash_bytes(const char *p, size_t n) {
  uint64_t h = g_seed ^ 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 0x100000001b3ULL;
  }
  return (uint32_t)mix64(h);
}

static uint32_t hash_ptr(const void *p) { return (uint32_t)mix64((uint64_t)(uintptr_t)p); }

/* Whether home slot k lies cyclically in (i, j]: then the entry at j must stay where it is when
 * slot i is emptied (backward-shift deletion for linear probing). */
static bool stays(size_t i, size_t j, size_t k) { return i <= j ? (i < k && k <= j) : (i < k || k <= j); }

/* ---- objects --------------------------------------------------------------------------------- */

char *tn_store_key_of(const json_t *obj) {
  const json_t *meta = json_object_get(obj, "metadata");
  const char *name = json_string_value(json_object_get(meta, "name"));
  const char *ns = json_string_value(json_object_get(meta, "namespace"));
  if (!name || !*name)
    return NULL;
  size_t nl = strlen(name), sl = ns ? strlen(ns) : 0;
  char *k = malloc(sl + 1 + nl + 1);
  if (!k)
    return NULL;
  if (sl) {
    memcpy(k, ns, sl);
    k[sl] = '/';
    memcpy(k + sl + 1, name, nl + 1);
  } else {
    memcpy(k, name, nl + 1);
  }
  return k;
}

/* What one cached object occupies: its single allocation (malloc's own header left out). */
static size_t obj_bytes(const struct tn_store_obj *o) {
  return sizeof *o + (size_t)o->key_len + 1 + (size_t)o->stored_len + o->ivals_len;
}

/* ---- packed index values ------------------------------------------------------------------------
 * An object keeps the values its indexes gave it, so replacing or deleting it needs no decode
 * of its text (that decode was a full inflate and parse on every update): one byte, the number of
 * indexes; then per index one byte, the number of values, and the values, each NUL-terminated.
 * 0 bytes when they do not fit (more than 255 indexes or values, 64 KiB): unindex decodes then. */

static size_t ivals_packed_len(const struct tn_index_values *vals, size_t n) {
  if (!vals || n == 0 || n > UINT8_MAX)
    return 0;
  size_t len = 1;
  for (size_t i = 0; i < n; i++) {
    if (vals[i].n > UINT8_MAX)
      return 0;
    len++;
    for (size_t k = 0; k < vals[i].n; k++)
      len += strlen(vals[i].v[k]) + 1;
  }
  return len <= UINT16_MAX ? len : 0;
}

static void ivals_pack(const struct tn_index_values *vals, size_t n, char *out) {
  *out++ = (char)(unsigned char)n;
  for (size_t i = 0; i < n; i++) {
    *out++ = (char)(unsigned char)vals[i].n;
    for (size_t k = 0; k < vals[i].n; k++) {
      size_t l = strlen(vals[i].v[k]) + 1;
      memcpy(out, vals[i].v[k], l);
      out += l;
    }
  }
}

static const char *obj_ivals(const struct tn_store_obj *o) {
  return o->data + o->key_len + 1 + o->stored_len;
}

/* ---- compression: raw deflate with a per-store dictionary ------------------------------------- */

/* A 4 KiB window and memLevel 5 keep a stream's state at ~32 KiB (one per thread that writes). */
#define Z_WBITS (-12)
#define Z_MEMLEVEL 5
/* Level 9: the objects are small (0.3-3 KB), so the best compression costs microseconds more per
 * write than level 1 and stores ~8% fewer bytes (~1 MiB at 10,000 tenants). */
#define Z_LEVEL 9
#define DICT_MIN 128   /* objects smaller than this are stored plain and never serve as dictionary */
#define DICT_CHANGES 4 /* a store adopts a bigger dictionary at most this many times */

struct zthread {
  z_stream def, inf;
  bool def_ok, inf_ok;
  char *buf; /* tn_store_obj_json's text */
  size_t cap;
};

static pthread_key_t g_zkey;
static pthread_once_t g_zkey_once = PTHREAD_ONCE_INIT;

static void zthread_free(void *p) {
  struct zthread *z = p;
  if (!z)
    return;
  if (z->def_ok)
    deflateEnd(&z->def);
  if (z->inf_ok)
    inflateEnd(&z->inf);
  free(z->buf);
  free(z);
}

static void zkey_init(void) {
  if (pthread_key_create(&g_zkey, zthread_free) != 0)
    abort();
}

static struct zthread *zthread(void) {
  pthread_once(&g_zkey_once, zkey_init);
  struct zthread *z = pthread_getspecific(g_zkey);
  if (!z && (z = calloc(1, sizeof *z)) != NULL && pthread_setspecific(g_zkey, z) != 0) {
    free(z);
    z = NULL;
  }
  return z;
}

static struct zdict *zdict_ref(struct zdict *d) {
  if (d)
    atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
  return d;
}

static void zdict_unref(struct zdict *d) {
  if (d && atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) == 1)
    free(d);
}

/* The dictionary for text of jlen bytes (a reference), adopting text as the store's dictionary
 * when there is none yet or when it is twice the current one's size (a Tenant seen first without
 * its status). NULL: store plain. */
static struct zdict *store_dict(struct tn_store *s, const char *text, size_t jlen) {
  if (!s || jlen < DICT_MIN)
    return NULL;
  pthread_mutex_lock(&s->dict_mu);
  struct zdict *cur = s->dict;
  if ((!cur || (jlen >= 2 * (size_t)cur->len && s->dict_changes < DICT_CHANGES)) && jlen <= (1u << 12)) {
    struct zdict *d = malloc(sizeof *d + jlen);
    if (d) {
      atomic_init(&d->refs, 1);
      d->len = (uint32_t)jlen;
      memcpy(d->data, text, jlen);
      zdict_unref(cur); /* the store's reference; the objects deflated with it keep theirs */
      s->dict = cur = d;
      s->dict_changes++;
    }
  }
  zdict_ref(cur);
  pthread_mutex_unlock(&s->dict_mu);
  return cur;
}

/* Deflates text with d into out[cap]; returns the length, or 0 when it does not fit or fails. */
static size_t zdeflate(struct zdict *d, const char *text, size_t jlen, unsigned char *out, size_t cap) {
  struct zthread *z = zthread();
  if (!z)
    return 0;
  if (!z->def_ok) {
    if (deflateInit2(&z->def, Z_LEVEL, Z_DEFLATED, Z_WBITS, Z_MEMLEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
      return 0;
    z->def_ok = true;
  } else if (deflateReset(&z->def) != Z_OK) {
    return 0;
  }
  if (deflateSetDictionary(&z->def, d->data, d->len) != Z_OK)
    return 0;
  z->def.next_in = (unsigned char *)text;
  z->def.avail_in = (uInt)jlen;
  z->def.next_out = out;
  z->def.avail_out = (uInt)cap;
  return deflate(&z->def, Z_FINISH) == Z_STREAM_END ? cap - z->def.avail_out : 0;
}

/* Inflates o's text into out[o->json_len]; 0 on success. */
static int zinflate(const struct tn_store_obj *o, char *out) {
  struct zthread *z = zthread();
  if (!z)
    return -1;
  if (!z->inf_ok) {
    if (inflateInit2(&z->inf, Z_WBITS) != Z_OK)
      return -1;
    z->inf_ok = true;
  } else if (inflateReset(&z->inf) != Z_OK) {
    return -1;
  }
  if (inflateSetDictionary(&z->inf, o->dict->data, o->dict->len) != Z_OK)
    return -1;
  z->inf.next_in = (unsigned char *)o->data + o->key_len + 1;
  z->inf.avail_in = o->stored_len;
  z->inf.next_out = (unsigned char *)out;
  z->inf.avail_out = o->json_len;
  return inflate(&z->inf, Z_FINISH) == Z_STREAM_END && z->inf.avail_out == 0 ? 0 : -1;
}

/* Encodes obj under its key, with its index values vals[n] packed (none: NULL, 0). Returns a new
 * object with one reference. */
static int obj_new(struct tn_store *s, const json_t *obj, const struct tn_index_values *vals, size_t n_vals,
                   struct tn_store_obj **out, struct tn_error *err) {
  char scratch[4096];
  unsigned char packed[4096];
  size_t plen = 0;
  struct zdict *dict = NULL;
  char *key = NULL, *heap = NULL;
  const char *text = scratch;
  struct tn_store_obj *o = NULL;
  int rc = 0;
  key = tn_store_key_of(obj);
  if (!key) {
    rc = tn_error_set(err, TN_EINVALID, "store: object has no metadata.name");
    goto out;
  }
  size_t klen = strlen(key);
  if (klen > UINT16_MAX) {
    rc = tn_error_set(err, TN_EINVALID, "store: key of %zu bytes is too long", klen);
    goto out;
  }
  size_t jlen = json_dumpb(obj, scratch, sizeof scratch, JSON_COMPACT);
  if (jlen == 0) {
    rc = tn_error_set(err, -ENOMEM, "store: cannot encode %s", key);
    goto out;
  }
  if (jlen > sizeof scratch) {
    heap = malloc(jlen);
    if (!heap || json_dumpb(obj, heap, jlen, JSON_COMPACT) != jlen) {
      rc = tn_error_set(err, -ENOMEM, "store: cannot encode %s", key);
      goto out;
    }
    text = heap;
  }
  if (jlen > UINT32_MAX) {
    rc = tn_error_set(err, TN_ETOOBIG, "store: %s encodes to %zu bytes", key, jlen);
    goto out;
  }
  /* Compressed when that saves at least a quarter (small objects stay plain). */
  if ((dict = store_dict(s, text, jlen)) != NULL) {
    plen = zdeflate(dict, text, jlen, packed, jlen * 3 / 4 < sizeof packed ? jlen * 3 / 4 : sizeof packed);
    if (plen == 0) {
      zdict_unref(dict);
      dict = NULL;
    }
  }
  size_t stored = dict ? plen : jlen + 1, ilen = ivals_packed_len(vals, n_vals);
  o = malloc(sizeof *o + klen + 1 + stored + ilen);
  if (!o) {
    rc = tn_error_set(err, -ENOMEM, "store: out of memory for %s", key);
    goto out;
  }
  atomic_init(&o->refs, 1);
  o->hash = hash_bytes(key, klen);
  o->gen = 0;
  o->key_len = (uint16_t)klen;
  o->json_len = (uint32_t)jlen;
  o->stored_len = (uint32_t)stored;
  o->ivals_len = (uint16_t)ilen;
  o->dict = dict;
  dict = NULL;
  memcpy(o->data, key, klen + 1);
  if (o->dict) {
    memcpy(o->data + klen + 1, packed, plen);
  } else {
    memcpy(o->data + klen + 1, text, jlen);
    o->data[klen + 1 + jlen] = '\0';
  }
  if (ilen)
    ivals_pack(vals, n_vals, o->data + klen + 1 + stored);
  *out = o;
out:
  zdict_unref(dict);
  free(key);
  free(heap);
  return rc;
}

struct tn_store_obj *tn_store_obj_ref(struct tn_store_obj *o) {
  if (o)
    atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
  return o;
}

void tn_store_obj_unref(struct tn_store_obj *o) {
  if (o && atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1) {
    zdict_unref(o->dict);
    free(o);
  }
}

const char *tn_store_obj_key(const struct tn_store_obj *o) { return o->data; }

const char *tn_store_obj_json(const struct tn_store_obj *o, size_t *len) {
  if (len)
    *len = o->json_len;
  if (!o->dict)
    return o->data + o->key_len + 1;
  struct zthread *z = zthread();
  if (!z)
    return NULL;
  if (z->cap < (size_t)o->json_len + 1) {
    char *b = realloc(z->buf, (size_t)o->json_len + 1);
    if (!b)
      return NULL;
    z->buf = b;
    z->cap = (size_t)o->json_len + 1;
  }
  if (zinflate(o, z->buf) != 0)
    return NULL;
  z->buf[o->json_len] = '\0';
  return z->buf;
}

json_t *tn_store_obj_decode(const struct tn_store_obj *o) {
  if (!o->dict)
    return json_loadb(o->data + o->key_len + 1, o->json_len, 0, NULL);
  char stack[8192];
  char *text = o->json_len <= sizeof stack ? stack : malloc(o->json_len);
  json_t *obj = text && zinflate(o, text) == 0 ? json_loadb(text, o->json_len, 0, NULL) : NULL;
  if (text != stack)
    free(text);
  return obj;
}

/* ---- index values ---------------------------------------------------------------------------- */

int tn_index_values_add(struct tn_index_values *out, const char *value) {
  for (size_t i = 0; i < out->n; i++) {
    if (strcmp(out->v[i], value) == 0)
      return 0;
  }
  if (out->n == out->cap) {
    size_t cap = out->cap ? out->cap * 2 : 4;
    char **v = realloc(out->v, cap * sizeof *v);
    if (!v)
      return -ENOMEM;
    out->v = v;
    out->cap = cap;
  }
  char *copy = strdup(value);
  if (!copy)
    return -ENOMEM;
  out->v[out->n++] = copy;
  return 0;
}

static void ivals_clear(struct tn_index_values *v) {
  for (size_t i = 0; i < v->n; i++)
    free(v->v[i]);
  v->n = 0;
}

static void ivals_cleanup(struct tn_index_values *v) {
  ivals_clear(v);
  free(v->v);
  v->v = NULL;
  v->cap = 0;
}

/* ---- object sets (inside an index entry) ----------------------------------------------------- */

static int set_rehash(struct ientry *e, uint32_t cap) {
  struct tn_store_obj **old = e->objs, **objs;
  uint32_t old_cap = e->cap, old_n = e->n;
  objs = calloc(cap, sizeof *objs);
  if (!objs)
    return -ENOMEM;
  if (cap <= SMALL_SET) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < old_cap; i++) {
      if (old[i])
        objs[n++] = old[i];
    }
  } else {
    uint32_t count = old_cap <= SMALL_SET ? old_n : old_cap;
    for (uint32_t i = 0; i < count; i++) {
      if (!old[i])
        continue;
      size_t j = hash_ptr(old[i]) & (cap - 1);
      while (objs[j])
        j = (j + 1) & (cap - 1);
      objs[j] = old[i];
    }
  }
  free(old);
  e->objs = objs;
  e->cap = cap;
  return 0;
}

static int set_add(struct ientry *e, struct tn_store_obj *o) {
  if (e->cap <= SMALL_SET) {
    if (e->n == e->cap) {
      if (e->cap < SMALL_SET) {
        uint32_t cap = e->cap ? e->cap * 2 : 1;
        struct tn_store_obj **objs = realloc(e->objs, cap * sizeof *objs);
        if (!objs)
          return -ENOMEM;
        e->objs = objs;
        e->cap = cap;
      } else if (set_rehash(e, SMALL_SET * 4) != 0) {
        return -ENOMEM;
      }
    }
    if (e->cap <= SMALL_SET) {
      e->objs[e->n++] = o;
      return 0;
    }
  }
  if ((e->n + 1) * 4 > e->cap * 3 && set_rehash(e, e->cap * 2) != 0)
    return -ENOMEM;
  size_t mask = e->cap - 1, i = hash_ptr(o) & mask;
  while (e->objs[i])
    i = (i + 1) & mask;
  e->objs[i] = o;
  e->n++;
  return 0;
}

static void set_del(struct ientry *e, struct tn_store_obj *o) {
  if (e->cap <= SMALL_SET) {
    for (uint32_t i = 0; i < e->n; i++) {
      if (e->objs[i] == o) {
        e->objs[i] = e->objs[--e->n];
        return;
      }
    }
    return;
  }
  size_t mask = e->cap - 1, i = hash_ptr(o) & mask;
  while (e->objs[i] && e->objs[i] != o)
    i = (i + 1) & mask;
  if (!e->objs[i])
    return;
  for (size_t j = i;;) {
    j = (j + 1) & mask;
    if (!e->objs[j])
      break;
    if (stays(i, j, hash_ptr(e->objs[j]) & mask))
      continue;
    e->objs[i] = e->objs[j];
    i = j;
  }
  e->objs[i] = NULL;
  e->n--;
  if (e->n <= SMALL_SET / 2)
    (void)set_rehash(e, SMALL_SET); /* back to an array; on failure the hash set stays valid */
}

/* Calls fn for each object of the set. */
#define SET_FOREACH(e, o, body)                                                                              \
  do {                                                                                                       \
    uint32_t set_count_ = (e)->cap <= SMALL_SET ? (e)->n : (e)->cap;                                         \
    for (uint32_t set_i_ = 0; set_i_ < set_count_; set_i_++) {                                               \
      struct tn_store_obj *o = (e)->objs[set_i_];                                                            \
      if (!o)                                                                                                \
        continue;                                                                                            \
      body                                                                                                   \
    }                                                                                                        \
  } while (0)

/* ---- indexes ----------------------------------------------------------------------------------- */

static size_t index_probe(const struct index *ix, const char *value, uint32_t h, bool *found) {
  size_t mask = ix->cap - 1, i = h & mask;
  for (;; i = (i + 1) & mask) {
    struct ientry *e = ix->slots[i];
    if (!e) {
      *found = false;
      return i;
    }
    if (e->hash == h && strcmp(e->value, value) == 0) {
      *found = true;
      return i;
    }
  }
}

static int index_grow(struct index *ix) {
  size_t cap = ix->cap ? ix->cap * 2 : 16;
  struct ientry **slots = calloc(cap, sizeof *slots);
  if (!slots)
    return -ENOMEM;
  for (size_t i = 0; i < ix->cap; i++) {
    struct ientry *e = ix->slots[i];
    if (!e)
      continue;
    size_t j = e->hash & (cap - 1);
    while (slots[j])
      j = (j + 1) & (cap - 1);
    slots[j] = e;
  }
  free(ix->slots);
  ix->slots = slots;
  ix->cap = cap;
  return 0;
}

static struct ientry *index_find(const struct index *ix, const char *value) {
  if (ix->cap == 0)
    return NULL;
  bool found;
  size_t i = index_probe(ix, value, hash_bytes(value, strlen(value)), &found);
  return found ? ix->slots[i] : NULL;
}

static int index_add(struct index *ix, const char *value, struct tn_store_obj *o) {
  if ((ix->n + 1) * 4 > ix->cap * 3 && index_grow(ix) != 0)
    return -ENOMEM;
  size_t vlen = strlen(value);
  uint32_t h = hash_bytes(value, vlen);
  bool found;
  size_t i = index_probe(ix, value, h, &found);
  if (!found) {
    struct ientry *e = calloc(1, sizeof *e + vlen + 1);
    if (!e)
      return -ENOMEM;
    e->hash = h;
    memcpy(e->value, value, vlen + 1);
    ix->slots[i] = e;
    ix->n++;
  }
  return set_add(ix->slots[i], o);
}

static void index_del(struct index *ix, const char *value, struct tn_store_obj *o) {
  if (ix->cap == 0)
    return;
  bool found;
  size_t mask = ix->cap - 1, i = index_probe(ix, value, hash_bytes(value, strlen(value)), &found);
  if (!found)
    return;
  struct ientry *e = ix->slots[i];
  set_del(e, o);
  if (e->n > 0)
    return;
  free(e->objs);
  free(e);
  for (size_t j = i;;) {
    j = (j + 1) & mask;
    if (!ix->slots[j])
      break;
    if (stays(i, j, ix->slots[j]->hash & mask))
      continue;
    ix->slots[i] = ix->slots[j];
    i = j;
  }
  ix->slots[i] = NULL;
  ix->n--;
}

static void index_cleanup(struct index *ix) {
  for (size_t i = 0; i < ix->cap; i++) {
    if (ix->slots[i]) {
      free(ix->slots[i]->objs);
      free(ix->slots[i]);
    }
  }
  free(ix->slots);
  free(ix->name);
}

static struct index *index_named(struct tn_store *s, const char *name) {
  for (size_t i = 0; i < s->n_indexes; i++) {
    if (strcmp(s->indexes[i].name, name) == 0)
      return &s->indexes[i];
  }
  return NULL;
}

/* Index values of obj for every index: vals[i] for s->indexes[i]. */
static int compute_values(struct tn_store *s, const json_t *obj, struct tn_index_values *vals,
                          struct tn_error *err) {
  for (size_t i = 0; i < s->n_indexes; i++) {
    ivals_clear(&vals[i]);
    int rc = s->indexes[i].fn(obj, s->indexes[i].ud, &vals[i]);
    if (rc < 0)
      return tn_error_set(err, rc, "store: index %s: %s", s->indexes[i].name, tn_strerror(rc));
  }
  return 0;
}

/* Removes o from every index, recomputing its values from its text (index functions are pure:
 * they give what they gave when it was added). */
static void unindex(struct tn_store *s, struct tn_store_obj *o) {
  if (s->n_indexes == 0)
    return;
  const unsigned char *p = (const unsigned char *)obj_ivals(o);
  if (o->ivals_len && p[0] == s->n_indexes) { /* the values packed when it was written */
    p++;
    for (size_t i = 0; i < s->n_indexes; i++) {
      unsigned nv = *p++;
      for (unsigned k = 0; k < nv; k++) {
        index_del(&s->indexes[i], (const char *)p, o);
        p += strlen((const char *)p) + 1;
      }
    }
    return;
  }
  json_t *obj = tn_store_obj_decode(o);
  struct tn_index_values v = {0};
  for (size_t i = 0; obj && i < s->n_indexes; i++) {
    ivals_clear(&v);
    if (s->indexes[i].fn(obj, s->indexes[i].ud, &v) < 0)
      continue;
    for (size_t k = 0; k < v.n; k++)
      index_del(&s->indexes[i], v.v[k], o);
  }
  ivals_cleanup(&v);
  json_decref(obj);
}

/* ---- the key table ----------------------------------------------------------------------------- */

static size_t table_probe(const struct tn_store *s, const char *key, size_t klen, uint32_t h, bool *found) {
  size_t mask = s->cap - 1, i = h & mask;
  for (;; i = (i + 1) & mask) {
    struct tn_store_obj *o = s->slots[i];
    if (!o) {
      *found = false;
      return i;
    }
    if (o->hash == h && o->key_len == klen && memcmp(o->data, key, klen) == 0) {
      *found = true;
      return i;
    }
  }
}

static int table_resize(struct tn_store *s, size_t cap) {
  struct tn_store_obj **slots = calloc(cap, sizeof *slots);
  if (!slots)
    return -ENOMEM;
  for (size_t i = 0; i < s->cap; i++) {
    struct tn_store_obj *o = s->slots[i];
    if (!o)
      continue;
    size_t j = o->hash & (cap - 1);
    while (slots[j])
      j = (j + 1) & (cap - 1);
    slots[j] = o;
  }
  free(s->slots);
  s->slots = slots;
  s->cap = cap;
  return 0;
}

static void table_remove_at(struct tn_store *s, size_t i) {
  size_t mask = s->cap - 1;
  for (size_t j = i;;) {
    j = (j + 1) & mask;
    if (!s->slots[j])
      break;
    if (stays(i, j, s->slots[j]->hash & mask))
      continue;
    s->slots[i] = s->slots[j];
    i = j;
  }
  s->slots[i] = NULL;
  s->n--;
}

static struct tn_store_obj *table_get(const struct tn_store *s, const char *key) {
  if (s->cap == 0)
    return NULL;
  size_t klen = strlen(key);
  bool found;
  size_t i = table_probe(s, key, klen, hash_bytes(key, klen), &found);
  return found ? s->slots[i] : NULL;
}

/* Deletes the object at slot i (indexes, observer, the store's reference). Write lock held. */
static void remove_slot(struct tn_store *s, size_t i, struct tn_store_obj *final) {
  struct tn_store_obj *old = s->slots[i];
  unindex(s, old);
  table_remove_at(s, i);
  atomic_fetch_sub(&s->bytes, obj_bytes(old));
  atomic_fetch_add(&s->changes, 1);
  if (s->observer)
    s->observer(s->observer_ud, TN_STORE_DELETED, old, final);
  tn_store_obj_unref(old);
}

/* ---- the store --------------------------------------------------------------------------------- */

struct tn_store *tn_store_new(void) {
  pthread_once(&g_seed_once, seed_init);
  struct tn_store *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  int rc = pthread_rwlock_init(&s->lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  if (rc != 0) {
    free(s);
    return NULL;
  }
  pthread_mutex_init(&s->dict_mu, NULL);
  s->gen = 1;
  return s;
}

void tn_store_free(struct tn_store *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->n_indexes; i++)
    index_cleanup(&s->indexes[i]);
  free(s->indexes);
  for (size_t i = 0; i < s->cap; i++)
    tn_store_obj_unref(s->slots[i]);
  free(s->slots);
  zdict_unref(s->dict);
  pthread_mutex_destroy(&s->dict_mu);
  pthread_rwlock_destroy(&s->lock);
  free(s);
}

void tn_store_set_observer(struct tn_store *s, tn_store_observer_fn fn, void *ud) {
  pthread_rwlock_wrlock(&s->lock);
  s->observer = fn;
  s->observer_ud = ud;
  pthread_rwlock_unlock(&s->lock);
}

int tn_store_add_index(struct tn_store *s, const char *name, tn_store_index_fn fn, void *ud,
                       struct tn_error *err) {
  int rc = 0;
  struct tn_index_values v = {0};
  pthread_rwlock_wrlock(&s->lock);
  if (index_named(s, name)) {
    rc = tn_error_set(err, TN_EEXISTS, "store: index %s already exists", name);
    goto out;
  }
  struct index *ixs = realloc(s->indexes, (s->n_indexes + 1) * sizeof *ixs);
  if (!ixs) {
    rc = tn_error_set(err, -ENOMEM, "store: out of memory");
    goto out;
  }
  s->indexes = ixs;
  struct index *ix = &s->indexes[s->n_indexes];
  memset(ix, 0, sizeof *ix);
  ix->name = strdup(name);
  ix->fn = fn;
  ix->ud = ud;
  if (!ix->name) {
    rc = tn_error_set(err, -ENOMEM, "store: out of memory");
    goto out;
  }
  for (size_t i = 0; i < s->cap && rc == 0; i++) {
    struct tn_store_obj *o = s->slots[i];
    if (!o)
      continue;
    json_t *obj = tn_store_obj_decode(o);
    ivals_clear(&v);
    rc = obj ? fn(obj, ud, &v) : -ENOMEM;
    for (size_t k = 0; rc == 0 && k < v.n; k++)
      rc = index_add(ix, v.v[k], o);
    json_decref(obj);
    if (rc)
      tn_error_set(err, rc, "store: index %s of %s: %s", name, tn_store_obj_key(o), tn_strerror(rc));
  }
  if (rc)
    index_cleanup(ix);
  else
    s->n_indexes++;
out:
  pthread_rwlock_unlock(&s->lock);
  ivals_cleanup(&v);
  return rc;
}

int tn_store_upsert(struct tn_store *s, const json_t *obj, struct tn_error *err) {
  struct tn_store_obj *o = NULL;
  struct tn_index_values *vals = NULL;
  size_t n_vals = 0;
  int rc = 0;
  /* The index values first (index functions are pure: the read lock only keeps the index list
   * still), so they are packed into the object; deflating happens outside any lock. */
  pthread_rwlock_rdlock(&s->lock);
  if (s->n_indexes) {
    n_vals = s->n_indexes;
    vals = calloc(n_vals, sizeof *vals);
    rc = vals ? compute_values(s, obj, vals, err) : tn_error_set(err, -ENOMEM, "store: out of memory");
  }
  pthread_rwlock_unlock(&s->lock);
  if (rc || (rc = obj_new(s, obj, vals, n_vals, &o, err)) != 0)
    goto out_unlocked;
  pthread_rwlock_wrlock(&s->lock);
  if (s->n_indexes != n_vals) { /* an index was added meanwhile: compute again, unpacked */
    for (size_t x = 0; x < n_vals; x++)
      ivals_cleanup(&vals[x]);
    free(vals);
    n_vals = s->n_indexes;
    o->ivals_len = 0; /* not shared yet; the bytes after the text stay unused */
    vals = calloc(n_vals, sizeof *vals);
    if (!vals) {
      rc = tn_error_set(err, -ENOMEM, "store: out of memory");
      goto out;
    }
    rc = compute_values(s, obj, vals, err);
    if (rc)
      goto out;
  }
  if ((s->n + 1) * 4 > s->cap * 3 && table_resize(s, s->cap ? s->cap * 2 : 64) != 0) {
    rc = tn_error_set(err, -ENOMEM, "store: out of memory");
    goto out;
  }
  bool found;
  size_t i = table_probe(s, tn_store_obj_key(o), o->key_len, o->hash, &found);
  struct tn_store_obj *old = found ? s->slots[i] : NULL;
  if (old)
    unindex(s, old);
  else
    s->n++;
  s->slots[i] = o;
  o->gen = s->gen;
  atomic_fetch_add(&s->bytes, obj_bytes(o));
  atomic_fetch_add(&s->changes, 1);
  if (old)
    atomic_fetch_sub(&s->bytes, obj_bytes(old));
  /* Allocation failures below leave o out of some index: reported, the object stays cached. */
  for (size_t x = 0; x < n_vals; x++) {
    for (size_t k = 0; k < vals[x].n; k++) {
      if (index_add(&s->indexes[x], vals[x].v[k], o) != 0 && rc == 0)
        rc = tn_error_set(err, -ENOMEM, "store: out of memory indexing %s", tn_store_obj_key(o));
    }
  }
  if (s->observer)
    s->observer(s->observer_ud, old ? TN_STORE_UPDATED : TN_STORE_ADDED, old, o);
  tn_store_obj_unref(old);
  o = NULL; /* the table's reference now */
out:
  pthread_rwlock_unlock(&s->lock);
out_unlocked:
  for (size_t x = 0; x < n_vals && vals; x++)
    ivals_cleanup(&vals[x]);
  free(vals);
  tn_store_obj_unref(o);
  return rc;
}

int tn_store_delete(struct tn_store *s, const char *key, const json_t *final, struct tn_error *err) {
  struct tn_store_obj *fo = NULL;
  int rc = 0;
  if (final && obj_new(s, final, NULL, 0, &fo, NULL) != 0)
    fo = NULL; /* the observer gets the cached state instead */
  pthread_rwlock_wrlock(&s->lock);
  bool found = false;
  size_t klen = strlen(key), i = 0;
  if (s->cap)
    i = table_probe(s, key, klen, hash_bytes(key, klen), &found);
  if (!found)
    rc = tn_error_set(err, TN_ENOTFOUND, "store: %s is not cached", key);
  else
    remove_slot(s, i, fo);
  pthread_rwlock_unlock(&s->lock);
  tn_store_obj_unref(fo);
  return rc;
}

void tn_store_replace_begin(struct tn_store *s) {
  pthread_rwlock_wrlock(&s->lock);
  s->gen++;
  pthread_rwlock_unlock(&s->lock);
}

size_t tn_store_replace_end(struct tn_store *s) {
  size_t removed = 0;
  pthread_rwlock_wrlock(&s->lock);
  /* Backward-shift deletion only moves entries into the slot being emptied or into slots not
   * yet visited (or, past the wrap, already-kept entries into later slots), so re-examining
   * slot i after a removal visits every entry. */
  for (size_t i = 0; i < s->cap;) {
    struct tn_store_obj *o = s->slots[i];
    if (o && o->gen != s->gen) {
      remove_slot(s, i, NULL);
      removed++;
      continue;
    }
    i++;
  }
  if (s->cap > 64 && s->n * 8 < s->cap) {
    size_t cap = 64;
    while (cap < s->n * 2)
      cap *= 2;
    if (cap < s->cap)
      (void)table_resize(s, cap); /* on failure the larger table stays valid */
  }
  pthread_rwlock_unlock(&s->lock);
  return removed;
}

int tn_store_replace(struct tn_store *s, const json_t *objs, struct tn_error *err) {
  size_t i;
  const json_t *obj;
  tn_store_replace_begin(s);
  json_array_foreach(objs, i, obj) {
    int rc = tn_store_upsert(s, obj, err);
    if (rc)
      return rc; /* nothing deleted: the next replace starts over */
  }
  tn_store_replace_end(s);
  return 0;
}

/* ---- reads --------------------------------------------------------------------------------------- */

/* References to every object (or, with ix/value, to those carrying value), taken under the read
 * lock. *out is malloc'd; the caller unrefs each and frees it. */
static int snapshot(struct tn_store *s, const char *index, const char *value, struct tn_store_obj ***out,
                    size_t *n, struct tn_error *err) {
  int rc = 0;
  *out = NULL;
  *n = 0;
  pthread_rwlock_rdlock(&s->lock);
  if (index) {
    struct index *ix = index_named(s, index);
    if (!ix) {
      rc = tn_error_set(err, TN_ENOTFOUND, "store: no index named %s", index);
      goto out;
    }
    struct ientry *e = index_find(ix, value);
    if (!e || e->n == 0)
      goto out;
    *out = malloc(e->n * sizeof **out);
    if (!*out) {
      rc = tn_error_set(err, -ENOMEM, "store: out of memory");
      goto out;
    }
    SET_FOREACH(e, o, { (*out)[(*n)++] = tn_store_obj_ref(o); });
    goto out;
  }
  if (s->n == 0)
    goto out;
  *out = malloc(s->n * sizeof **out);
  if (!*out) {
    rc = tn_error_set(err, -ENOMEM, "store: out of memory");
    goto out;
  }
  for (size_t i = 0; i < s->cap; i++) {
    if (s->slots[i])
      (*out)[(*n)++] = tn_store_obj_ref(s->slots[i]);
  }
out:
  pthread_rwlock_unlock(&s->lock);
  return rc;
}

/* Decodes (or, keys_only, names) a snapshot into a new array and releases the snapshot. */
static json_t *decode_all(struct tn_store_obj **objs, size_t n, bool keys_only) {
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) {
    if (arr) {
      json_t *v = keys_only ? json_string(tn_store_obj_key(objs[i])) : tn_store_obj_decode(objs[i]);
      if (!v || json_array_append_new(arr, v) != 0) {
        json_decref(arr);
        arr = NULL;
      }
    }
    tn_store_obj_unref(objs[i]);
  }
  free(objs);
  return arr;
}

json_t *tn_store_get(struct tn_store *s, const char *key) {
  pthread_rwlock_rdlock(&s->lock);
  struct tn_store_obj *o = tn_store_obj_ref(table_get(s, key));
  pthread_rwlock_unlock(&s->lock);
  if (!o)
    return NULL;
  json_t *obj = tn_store_obj_decode(o);
  tn_store_obj_unref(o);
  return obj;
}

struct tn_store_obj *tn_store_get_obj(struct tn_store *s, const char *key) {
  pthread_rwlock_rdlock(&s->lock);
  struct tn_store_obj *o = tn_store_obj_ref(table_get(s, key));
  pthread_rwlock_unlock(&s->lock);
  return o;
}

json_t *tn_store_list(struct tn_store *s) {
  struct tn_store_obj **objs;
  size_t n;
  if (snapshot(s, NULL, NULL, &objs, &n, NULL) != 0)
    return NULL;
  return decode_all(objs, n, false);
}

json_t *tn_store_keys(struct tn_store *s) {
  struct tn_store_obj **objs;
  size_t n;
  if (snapshot(s, NULL, NULL, &objs, &n, NULL) != 0)
    return NULL;
  return decode_all(objs, n, true);
}

json_t *tn_store_by_index(struct tn_store *s, const char *index, const char *value, struct tn_error *err) {
  struct tn_store_obj **objs;
  size_t n;
  if (snapshot(s, index, value, &objs, &n, err) != 0)
    return NULL;
  return decode_all(objs, n, false);
}

json_t *tn_store_keys_by_index(struct tn_store *s, const char *index, const char *value,
                               struct tn_error *err) {
  struct tn_store_obj **objs;
  size_t n;
  if (snapshot(s, index, value, &objs, &n, err) != 0)
    return NULL;
  return decode_all(objs, n, true);
}

json_t *tn_store_index_values(struct tn_store *s, const char *index) {
  json_t *arr = NULL;
  pthread_rwlock_rdlock(&s->lock);
  struct index *ix = index_named(s, index);
  if (ix) {
    arr = json_array();
    for (size_t i = 0; arr && i < ix->cap; i++) {
      if (ix->slots[i] && json_array_append_new(arr, json_string(ix->slots[i]->value)) != 0) {
        json_decref(arr);
        arr = NULL;
      }
    }
  }
  pthread_rwlock_unlock(&s->lock);
  return arr;
}

size_t tn_store_len(struct tn_store *s) {
  pthread_rwlock_rdlock(&s->lock);
  size_t n = s->n;
  pthread_rwlock_unlock(&s->lock);
  return n;
}

unsigned long tn_store_changes(struct tn_store *s) { return atomic_load(&s->changes); }

size_t tn_store_bytes(struct tn_store *s) { return atomic_load(&s->bytes); }

int tn_store_foreach(struct tn_store *s, int (*fn)(void *ud, struct tn_store_obj *o), void *ud) {
  int rc = 0;
  pthread_rwlock_rdlock(&s->lock);
  for (size_t i = 0; i < s->cap && rc == 0; i++) {
    if (s->slots[i])
      rc = fn(ud, s->slots[i]);
  }
  pthread_rwlock_unlock(&s->lock);
  return rc;
}

/* ---- projection ----------------------------------------------------------------------------------- */

/* Splits the next segment of a dotted path into seg; returns the rest (NULL at the end) or
 * sets *bad when a segment is empty or too long. */
static const char *next_segment(const char *p, char *seg, size_t size, bool *bad) {
  const char *dot = strchr(p, '.');
  size_t n = dot ? (size_t)(dot - p) : strlen(p);
  *bad = n == 0 || n >= size;
  if (!*bad) {
    memcpy(seg, p, n);
    seg[n] = '\0';
  }
  return dot ? dot + 1 : NULL;
}

static int project_path(json_t *dst, const json_t *src, const char *path) {
  char seg[256];
  bool bad;
  /* Find the value first, so nothing is created in dst for a path that is missing. */
  const json_t *v = src;
  for (const char *p = path; p;) {
    p = next_segment(p, seg, sizeof seg, &bad);
    if (bad || !json_is_object(v) || !(v = json_object_get(v, seg)))
      return 0;
  }
  for (const char *p = path; p;) {
    p = next_segment(p, seg, sizeof seg, &bad);
    if (!p) {
      json_t *copy = json_deep_copy(v);
      return copy && json_object_set_new(dst, seg, copy) == 0 ? 0 : -ENOMEM;
    }
    json_t *next = json_object_get(dst, seg);
    if (!next) {
      next = json_object();
      if (!next || json_object_set_new(dst, seg, next) != 0)
        return -ENOMEM;
    }
    dst = next;
  }
  return 0;
}

json_t *tn_store_project(const json_t *obj, const char *const *paths) {
  json_t *out = json_object();
  for (size_t i = 0; out && paths[i]; i++) {
    if (project_path(out, obj, paths[i]) != 0) {
      json_decref(out);
      out = NULL;
    }
  }
  return out;
}
