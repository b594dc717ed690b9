/* controller.h - a controller: a work queue of object keys, N workers calling a reconcile
 * function, controller-runtime's result handling and metrics, and the mapping of watched
 * objects (primary or owned) to the keys of the objects to reconcile. */
#ifndef TN_RUNTIME_CONTROLLER_H
#define TN_RUNTIME_CONTROLLER_H

#include <jansson.h>
#include <stdbool.h>

#include "runtime/metrics.h"
#include "runtime/workqueue.h"

enum tn_result_kind {
  TN_RESULT_SUCCESS,       /* done: forget the key's failures */
  TN_RESULT_ERROR,         /* failed: retry with the rate limiter's backoff */
  TN_RESULT_REQUEUE,       /* not failed, but run again soon (rate-limited) */
  TN_RESULT_REQUEUE_AFTER, /* run again after `after_s` (failures forgotten) */
};

struct tn_result {
  enum tn_result_kind kind;
  double after_s;
};

#define TN_RESULT_OK ((struct tn_result){.kind = TN_RESULT_SUCCESS})
#define TN_RESULT_ERR ((struct tn_result){.kind = TN_RESULT_ERROR})
#define TN_RESULT_AFTER(s) ((struct tn_result){.kind = TN_RESULT_REQUEUE_AFTER, .after_s = (s)})

/* Reconciles the object with this key ("name" or "namespace/name"), borrowed. Runs on a worker
 * thread, never concurrently for the same key. */
typedef struct tn_result (*tn_reconcile_fn)(void *ud, const char *key);

struct tn_controller;

struct tn_controller_config {
  const char *name;                   /* copied; the `controller` metrics label and the queue name */
  int workers;                        /* >= 1 */
  tn_reconcile_fn reconcile;          /* not NULL */
  void *ud;                           /* borrowed, passed to reconcile */
  struct tn_metrics *metrics;         /* borrowed; NULL = none */
  struct tn_ratelimiter *ratelimiter; /* taken; NULL = client-go's default controller limiter */
};

/* Creates the controller and its queue; workers start with tn_controller_start. NULL on
 * allocation failure. */
struct tn_controller *tn_controller_new(const struct tn_controller_config *cfg);
/* Stops (as tn_controller_stop with no deadline) and frees. Accepts NULL. */
void tn_controller_free(struct tn_controller *c);

/* Starts the worker threads. Returns 0 or -errno. */
int tn_controller_start(struct tn_controller *c);
/* Stops taking new work, lets in-flight reconciles finish for at most deadline_s seconds
 * (< 0: no limit), then joins the workers. Returns true when everything in flight finished in
 * time. A worker still inside reconcile at the deadline is still joined (C cannot kill a
 * thread safely); the deadline bounds the wait for the queue, see docs/internals/controller.md. */
bool tn_controller_stop(struct tn_controller *c, double deadline_s);
/* Leadership lost: stops at once without draining. Items still queued are dropped (taken and
 * marked done without a reconcile); the workers are joined once the reconcile each runs returns
 * (its writes are refused by the write fence, so that is quick). Idempotent with stop. */
void tn_controller_abandon(struct tn_controller *c);

/* Enqueue a key (copied). */
void tn_controller_enqueue(struct tn_controller *c, const char *key);
void tn_controller_enqueue_after(struct tn_controller *c, const char *key, double seconds);

/* The key of an object: "namespace/name", or "name" when metadata.namespace is absent/empty.
 * Writes at most n bytes; returns 0, or -EINVAL when the object has no metadata.name, or
 * -ENAMETOOLONG. */
int tn_object_key(json_t *obj, char *key, size_t n);

/* Handlers for a watch on the primary kind: enqueue the object's own key. */
void tn_controller_enqueue_object(struct tn_controller *c, json_t *obj);
/* Handlers for a watch on an owned kind: enqueue the key of the object's controlling owner
 * (the ownerReference with controller=true) when its apiVersion group and kind match
 * owner_group ("" for core) and owner_kind. A cluster-scoped owner's key is its name; a
 * namespaced owner is in the object's namespace. Returns true when something was enqueued. */
bool tn_controller_enqueue_owner(struct tn_controller *c, json_t *obj, const char *owner_group,
                                 const char *owner_kind, bool owner_namespaced);

/* True once, after start, the queue has been empty with no reconcile running: everything
 * enqueued before (e.g. by the initial cache sync) has been reconciled once. /readyz uses it. */
bool tn_controller_first_pass_done(struct tn_controller *c);
struct tn_workqueue *tn_controller_queue(struct tn_controller *c);

#endif
