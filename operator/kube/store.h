/* store.h - a thread-safe cache of API objects keyed "namespace/name" ("name" when cluster-scoped)
 * with named secondary indexes; objects are kept as deflated compact JSON text and decoded on read. */
#ifndef TN_KUBE_STORE_H
#define TN_KUBE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

struct tn_store;        /* opaque; every function may be called from any thread */
struct tn_store_obj;    /* one cached object: its key and compact JSON, immutable, reference-counted */
struct tn_index_values; /* what an index function returns, filled with tn_index_values_add */

/* ---- objects ----------------------------------------------------------------------------- */

/* The key of an object: "namespace/name", or "name" when metadata.namespace is absent or "".
 * Returns malloc'd (free() it), or NULL when metadata.name is missing or on ENOMEM. */
char *tn_store_key_of(const json_t *obj);

struct tn_store_obj *tn_store_obj_ref(struct tn_store_obj *o);
void tn_store_obj_unref(struct tn_store_obj *o); /* accepts NULL */
/* Owned by the object, valid while a reference is held. */
const char *tn_store_obj_key(const struct tn_store_obj *o);
/* The object's compact JSON, NUL-terminated. Objects are kept deflated (store.c), so this is a
 * per-thread buffer: valid until the calling thread's next tn_store_obj_json. NULL only when
 * out of memory. */
const char *tn_store_obj_json(const struct tn_store_obj *o, size_t *len);
/* A new tree of the object (json_decref it); NULL only when out of memory. */
json_t *tn_store_obj_decode(const struct tn_store_obj *o);

/* ---- the store ----------------------------------------------------------------------------- */

struct tn_store *tn_store_new(void);    /* NULL when out of memory */
void tn_store_free(struct tn_store *s); /* drops every object; accepts NULL */

/* An index function lists the values under which obj is found in its index (zero or more;
 * duplicates are ignored). It runs under the store's lock (the read lock for an upsert, which
 * may run beside other upserts' index functions): it must be quick, pure, thread-safe, and must
 * not call the store. Return 0, or a negative code to refuse the write. The values are kept
 * with the object (a few bytes), so replacing or deleting it does not decode it again. */
typedef int (*tn_store_index_fn)(const json_t *obj, void *ud, struct tn_index_values *out);
/* Copies value. Returns 0 or -ENOMEM. */
int tn_index_values_add(struct tn_index_values *out, const char *value);

/* Adds a named index (name copied, ud borrowed for the store's life) and indexes the objects
 * already cached. TN_EEXISTS when the name is taken. */
int tn_store_add_index(struct tn_store *s, const char *name, tn_store_index_fn fn, void *ud,
                       struct tn_error *err);

/* Told of every change, in order, under the store's write lock (so it sees changes exactly in
 * the order they were made and no reader sees a change before it was told): old and cur are
 * borrowed (take a reference to keep them). Added: old NULL. Updated: both. Deleted: old is
 * the cached state; cur is the final state given to tn_store_delete, or NULL. Must be quick
 * and must not call the store. One observer; NULL removes it. */
enum tn_store_change { TN_STORE_ADDED = 1, TN_STORE_UPDATED, TN_STORE_DELETED };
typedef void (*tn_store_observer_fn)(void *ud, enum tn_store_change change, struct tn_store_obj *old,
                                     struct tn_store_obj *cur);
void tn_store_set_observer(struct tn_store *s, tn_store_observer_fn fn, void *ud);

/* Adds obj or replaces the cached object with the same key (obj is borrowed and encoded; the
 * caller keeps its reference). TN_EINVALID when obj has no metadata.name; an index function's
 * error is returned with the store unchanged. */
int tn_store_upsert(struct tn_store *s, const json_t *obj, struct tn_error *err);
/* Removes the object with this key. final (borrowed, may be NULL) is the state the API server
 * reported at deletion, passed to the observer. Returns 0 or TN_ENOTFOUND. */
int tn_store_delete(struct tn_store *s, const char *key, const json_t *final, struct tn_error *err);

/* Replacing the whole content without holding a second copy: replace_begin starts a new
 * generation, every upsert after it marks its object as seen, replace_end deletes (observer:
 * Deleted with cur NULL) every object not upserted since replace_begin and returns how many.
 * A replace_begin while one is open starts over. */
void tn_store_replace_begin(struct tn_store *s);
size_t tn_store_replace_end(struct tn_store *s);
/* The same in one call: objs is a borrowed array of objects. */
int tn_store_replace(struct tn_store *s, const json_t *objs, struct tn_error *err);

/* ---- reads (decode outside the lock; the results are new trees owned by the caller) ------- */

json_t *tn_store_get(struct tn_store *s, const char *key); /* NULL when absent */
/* The cached object itself (a reference: tn_store_obj_unref it), NULL when absent: for readers
 * that serve its JSON text as it is, without decoding it. */
struct tn_store_obj *tn_store_get_obj(struct tn_store *s, const char *key);
json_t *tn_store_list(struct tn_store *s); /* array of objects, in no order */
json_t *tn_store_keys(struct tn_store *s); /* array of strings, in no order */
/* Objects whose index `index` holds value. NULL with TN_ENOTFOUND when there is no such index;
 * an empty array when nothing matches. */
json_t *tn_store_by_index(struct tn_store *s, const char *index, const char *value, struct tn_error *err);
/* Their keys (array of strings), nothing decoded: what enqueues them needs no more (a decoded
 * Tenant is ~18 KB of jansson tree; 10,000 at once would be ~180 MiB). */
json_t *tn_store_keys_by_index(struct tn_store *s, const char *index, const char *value,
                               struct tn_error *err);
/* The values index `index` currently holds (array of strings), NULL when no such index. */
json_t *tn_store_index_values(struct tn_store *s, const char *index);
size_t tn_store_len(struct tn_store *s);
/* Bytes the cached objects occupy (key and compact JSON with their header; not the tables).
 * Lock-free: may be called from the observer. */
size_t tn_store_bytes(struct tn_store *s);
/* Upserts and removals since the store was made (a relist counts every object it upserts): equal
 * values mean the same content. A resync does not change the store. */
unsigned long tn_store_changes(struct tn_store *s);
/* Calls fn for every object under the read lock (o borrowed; take a reference to keep it).
 * fn must not call the store's writers. A non-zero return stops and is returned. */
int tn_store_foreach(struct tn_store *s, int (*fn)(void *ud, struct tn_store_obj *o), void *ud);

/* ---- projection (for informer transforms) --------------------------------------------------- */

/* A new object holding deep copies of only the listed dotted paths of obj (NULL-terminated,
 * e.g. {"metadata.name", "metadata.labels", "status.phase", NULL}); missing paths are skipped.
 * obj is borrowed. NULL only when out of memory. */
json_t *tn_store_project(const json_t *obj, const char *const *paths);

#endif
