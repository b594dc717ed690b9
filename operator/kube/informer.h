/* informer.h - a shared informer: a reflector fills a cache from a streaming list (or a paged
 * LIST) and keeps it current with a watch; handlers hear of every change from its own thread. */
#ifndef TN_KUBE_INFORMER_H
#define TN_KUBE_INFORMER_H

#include <jansson.h>
#include <stdbool.h>

#include "kube/client.h"
#include "kube/store.h"
#include "util/error.h"

struct tn_metrics;
struct tn_informer; /* opaque; every function may be called from any thread unless noted */

/* Keeps only what the cache needs of an object. Takes the caller's reference to obj and returns
 * a new reference (obj itself, modified or not, or a new tree such as tn_store_project's), or
 * NULL to drop the object (logged). Must keep metadata.name and metadata.namespace. Runs on the
 * client's transport thread (watch events) or the reflector thread (LIST pages): keep it quick
 * and free of blocking calls. */
typedef json_t *(*tn_informer_transform_fn)(json_t *obj, void *ud);

struct tn_informer_opts {
  struct tn_gvr gvr;                  /* its strings are copied */
  const char *namespace;              /* NULL or "" for all namespaces (ignored when cluster-scoped) */
  const char *label_selector;         /* NULL for none */
  const char *field_selector;         /* NULL for none */
  tn_informer_transform_fn transform; /* NULL keeps whole objects */
  void *transform_ud;                 /* borrowed until tn_informer_free */
  double resync_period_s;             /* re-deliver every cached object as an update; 0 = never */
  bool force_paged_list;              /* never try a streaming list: LIST with limit/continue */
  long page_size;                     /* LIST page size; 0 = 500 */
  int watch_timeout_s;                /* watch timeoutSeconds; 0 = random in [300, 600) like client-go */
  const char *name;                   /* in logs and metrics; NULL = the resource */
  bool drop_managed_fields;           /* watch events lose metadata.managedFields before they are
                                         parsed (tn_watchstream_drop_managed_fields): for caches
                                         whose transform drops it anyway */
};

/* Objects are borrowed for the call (json_incref to keep; do not modify: the same tree goes to
 * every handler set). Calls come from the informer's dispatch thread, in the order the cache
 * changed, never two at once for one informer. A NULL function is skipped. on_delete gets the
 * last known state: the object the DELETED event carried, or the cached one when a relist
 * found it gone. A relist delivers on_update for every object it finds already cached, even
 * with an unchanged resourceVersion, and resync delivers on_update(obj, obj). */
struct tn_informer_handlers {
  void (*on_add)(void *ud, json_t *obj);
  void (*on_update)(void *ud, json_t *old, json_t *cur);
  void (*on_delete)(void *ud, json_t *obj);
  void *ud; /* borrowed until tn_informer_free */
};

/* kube and metrics (may be NULL) are borrowed and must outlive the informer. Registers, when
 * metrics is given, tn_informer_lists_total{informer,mode}, tn_informer_watch_events_total
 * {informer,type}, tn_informer_relists_total{informer}, tn_informer_watch_errors_total
 * {informer} and tn_informer_cache_objects{informer}. */
int tn_informer_new(struct tn_kube *kube, const struct tn_informer_opts *opts, struct tn_metrics *metrics,
                    struct tn_informer **out, struct tn_error *err);
/* Stops (if started) and frees; pending notifications are dropped. Accepts NULL. */
void tn_informer_free(struct tn_informer *inf);

/* Before start only (TN_EINVALID after): h is copied. Handler sets are called in the order
 * they were added. */
int tn_informer_add_handlers(struct tn_informer *inf, const struct tn_informer_handlers *h,
                             struct tn_error *err);
/* A named secondary index of the cache (see tn_store_add_index); any time. */
int tn_informer_add_index(struct tn_informer *inf, const char *name, tn_store_index_fn fn, void *ud,
                          struct tn_error *err);

/* Starts the reflector and dispatch threads. Once only. */
int tn_informer_start(struct tn_informer *inf, struct tn_error *err);
/* Prompt: cancels the request in flight and joins both threads; handlers are not called after
 * it returns. Idempotent; an informer is not restarted. Not from a handler. */
void tn_informer_stop(struct tn_informer *inf);

/* Whether the first list has been applied to the cache and every notification it caused has
 * been handed to the handlers. */
bool tn_informer_has_synced(struct tn_informer *inf);
/* Waits for has_synced: 0, TN_ETIMEOUT, or TN_ECANCELED when stopped. Not from a handler. */
int tn_informer_wait_for_sync(struct tn_informer *inf, double timeout_s);

/* Reads of the cache (see store.h): new trees owned by the caller. */
json_t *tn_informer_get(struct tn_informer *inf, const char *key);
json_t *tn_informer_list(struct tn_informer *inf);
json_t *tn_informer_list_by_index(struct tn_informer *inf, const char *index, const char *value,
                                  struct tn_error *err);
/* The cache itself (owned by the informer, valid until tn_informer_free). Write to it only in
 * tests. */
struct tn_store *tn_informer_store(struct tn_informer *inf);

/* The resourceVersion the next watch starts from ("" before the first list). malloc'd. */
char *tn_informer_resource_version(struct tn_informer *inf);

struct tn_informer_stats {
  unsigned long streaming_lists; /* lists completed by a streaming list (initial-events-end seen) */
  unsigned long paged_lists;     /* lists completed by LIST with limit/continue */
  unsigned long pages;           /* LIST pages received */
  unsigned long relists;         /* lists after the first one */
  unsigned long watches;         /* watch requests made (a streaming list that goes on watching is not one) */
  unsigned long watch_events;    /* ADDED/MODIFIED/DELETED applied from watches and streaming lists */
  unsigned long bookmarks;
  unsigned long expired;      /* 410 Expired/Gone answers and ERROR events */
  unsigned long errors;       /* failed requests and streams that were retried after a backoff */
  bool streaming_unsupported; /* the server refused streaming lists; paged LIST is used */
};
void tn_informer_get_stats(struct tn_informer *inf, struct tn_informer_stats *out);

/* For tests: pause drops the request in flight and holds the reflector disconnected until
 * resume, which makes the next watch start from resource_version (NULL: where it left off). */
void tn_informer_test_pause(struct tn_informer *inf);
void tn_informer_test_resume(struct tn_informer *inf, const char *resource_version);

#endif
