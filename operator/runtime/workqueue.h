/* workqueue.h - the controllers' work queue of string keys, with client-go's
 * k8s.io/client-go/util/workqueue semantics: deduplication, one worker per key at a time,
 * delayed and rate-limited adds, drain on shutdown, and the standard workqueue_* metrics. */
#ifndef TN_RUNTIME_WORKQUEUE_H
#define TN_RUNTIME_WORKQUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/metrics.h"
#include "runtime/ratelimit.h"

/* The guarantees, as client-go's:
 * - An item is a string ("acme", "ns/name"); the queue copies what it is given.
 * - Adding an item that is already waiting to be processed does nothing (dirty set).
 * - An item handed out by get is never handed out again until done is called for it; adding
 *   it meanwhile marks it dirty, and done puts it back in the queue once (however many adds).
 * - Items come out in the order they were (first) added.
 * - After shutdown, adds are ignored; get keeps handing out what is queued and returns
 *   TN_ECANCELED once the queue is empty. Delayed items not yet due are dropped.
 * Every function is thread-safe. */
struct tn_workqueue;

struct tn_workqueue_config {
  const char *name;                   /* copied; the metrics' name/controller label; not NULL */
  struct tn_metrics *metrics;         /* borrowed, must outlive the queue; NULL = no metrics */
  struct tn_ratelimiter *ratelimiter; /* taken (freed by the queue, also when _new fails);
                                         NULL = tn_ratelimiter_default_new(clock) */
  const struct tn_clock *clock;       /* copied; NULL = CLOCK_MONOTONIC */
};

/* Creates a queue and its timer thread ("wq:<name>", which moves delayed items in when they
 * are due and refreshes the unfinished-work gauges every 500 ms). m is borrowed (NULL = no
 * metrics); rl is taken (NULL = the default controller limiter). Returns NULL when out of
 * memory or threads. Free with tn_workqueue_free. */
struct tn_workqueue *tn_workqueue_new(const char *name, struct tn_metrics *m, struct tn_ratelimiter *rl);
struct tn_workqueue *tn_workqueue_new_with_config(const struct tn_workqueue_config *cfg);
/* Shuts the queue down, joins its thread and frees everything. No other thread may be using
 * the queue any more (join the workers first). Accepts NULL. */
void tn_workqueue_free(struct tn_workqueue *q);

/* Marks item (copied) as needing processing. Returns 0 (also when it was already queued),
 * TN_ECANCELED when the queue is shutting down (the item is ignored), or -ENOMEM. */
int tn_workqueue_add(struct tn_workqueue *q, const char *item);
/* Adds item after `seconds` (at once when <= 0 or NaN). While it waits, adding it again with
 * an earlier time moves it earlier; a later time changes nothing. Counts in
 * workqueue_retries_total. Returns 0, TN_ECANCELED when shutting down, or -ENOMEM. */
int tn_workqueue_add_after(struct tn_workqueue *q, const char *item, double seconds);
/* add_after(item, rate limiter's When(item)): records a failure of the item. */
int tn_workqueue_add_rate_limited(struct tn_workqueue *q, const char *item);
/* Clears the item's failure count in the rate limiter (call it when the item succeeded or is
 * given up on). This does not replace done. */
void tn_workqueue_forget(struct tn_workqueue *q, const char *item);
/* The item's failure count (rate-limited adds since the last forget). */
int tn_workqueue_num_requeues(struct tn_workqueue *q, const char *item);

/* Blocks until an item is ready, then hands it to the caller in *item (malloc'd; free() it)
 * and marks it processing: call tn_workqueue_done(q, item) when finished. Returns 0;
 * TN_ECANCELED (with *item = NULL) once the queue is shut down and empty; -ENOMEM (nothing
 * taken). */
int tn_workqueue_get(struct tn_workqueue *q, char **item);
/* As tn_workqueue_get but never blocks: -EAGAIN (with *item = NULL) when nothing is ready. */
int tn_workqueue_try_get(struct tn_workqueue *q, char **item);
/* Ends processing of item (borrowed). If it was added meanwhile it is queued again. An item
 * that is not being processed is ignored. */
void tn_workqueue_done(struct tn_workqueue *q, const char *item);

/* Items ready to be handed out (not those processing or still delayed). Informational only. */
size_t tn_workqueue_len(struct tn_workqueue *q);
/* A pass: marks every item queued now (due) and returns how many are marked, in all. An item
 * stays marked until a done() of it (it may be added again meanwhile: it keeps its place). */
size_t tn_workqueue_mark_pass(struct tn_workqueue *q);
/* Marked items not done yet: 0 once every item queued at tn_workqueue_mark_pass was processed. */
size_t tn_workqueue_pass_left(struct tn_workqueue *q);

/* Ignores further adds, drops delayed items not yet due, wakes every blocked get (they return
 * what is still queued, then TN_ECANCELED) and stops a waiting shutdown_drain. Idempotent. */
void tn_workqueue_shutdown(struct tn_workqueue *q);
/* client-go's ShutDownWithDrain with a deadline: shuts down as above, then waits until no item
 * is being processed (every get has had its done), at most timeout_s seconds of real time
 * (< 0: without a limit). Returns true when nothing was processing on return, false on
 * timeout or when tn_workqueue_shutdown was called meanwhile. As in client-go it does not
 * wait for items still queued: workers keep getting them until the queue is empty. */
bool tn_workqueue_shutdown_drain(struct tn_workqueue *q, double timeout_s);
bool tn_workqueue_shutting_down(struct tn_workqueue *q);

/* Recomputes workqueue_unfinished_work_seconds and workqueue_longest_running_processor_seconds
 * now (the timer thread does it every 500 ms, as client-go does); a /metrics handler may call
 * it right before writing. No-op without metrics or after shutdown. */
void tn_workqueue_refresh_metrics(struct tn_workqueue *q);

#endif
