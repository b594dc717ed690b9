/* events.h - the events.k8s.io/v1 event recorder: events are queued and written by the
 * recorder's own thread, and repeats are folded into one Event's series, as client-go's
 * tools/events broadcaster does (see docs/internals/leader-election.md, "Events"). */
#ifndef TN_RUNTIME_EVENTS_H
#define TN_RUNTIME_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tn_kube;

#define TN_EVENT_NORMAL "Normal"
#define TN_EVENT_WARNING "Warning"
/* The reportingController of every Event the operator writes. */
#define TN_REPORTING_CONTROLLER "tenancy.dev/tenancy-operator"

/* The object an Event is about (an ObjectReference). Strings are borrowed for the call; any but
 * kind and name may be NULL or "". A cluster-scoped object (namespace NULL or "") gets its
 * Events in the namespace "default", as client-go does. */
struct tn_object_ref {
  const char *api_version;
  const char *kind;
  const char *name;
  const char *namespace;
  const char *uid;
  const char *resource_version;
};

/* The reference to obj as an Event's regarding: its apiVersion (objects from our informers and
 * from the API server's answers carry it), metadata name, namespace, uid and resourceVersion, and
 * kind (obj's own "kind" when NULL). The strings are borrowed from obj: valid while obj is. */
struct tn_object_ref tn_object_ref_from(const json_t *obj, const char *kind);

/* ---- the recorder ------------------------------------------------------------------------ */

#define TN_RECORDER_QUEUE_MAX 1024 /* occurrences waiting for the recorder thread */

struct tn_recorder; /* opaque; tn_recorder_eventf may be called from any thread */

/* Starts the recorder's thread. kube is borrowed and must outlive the recorder.
 * reporting_controller is e.g. TN_REPORTING_CONTROLLER; reporting_instance NULL means
 * "<reporting_controller>-<hostname>" (cut to 128 characters). Both are copied. Returns 0,
 * -EINVAL (no kube or controller), -ENOMEM or -errno from pthread_create. The caller frees *out
 * with tn_recorder_free(). */
int tn_recorder_new(struct tn_kube *kube, const char *reporting_controller, const char *reporting_instance,
                    struct tn_recorder **out);

/* Records an occurrence; never blocks on the API server. rec NULL does nothing and returns 0
 * (for components run without a recorder, e.g. in unit tests). type is TN_EVENT_NORMAL or
 * TN_EVENT_WARNING; reason (e.g. "Activated") and action (e.g. "Reconcile") are CamelCase
 * words of at most 128 characters; the note (printf-formatted) is cut to 1024 bytes.
 * NEVER put a secret (password, token, DSN, key) in a note: Events are readable by anyone who
 * may list events in the namespace, and are kept by the API server for an hour or more.
 * The same (regarding, type, reason, action, note) within 6 minutes of the previous occurrence
 * does not create a new Event: it counts into the first one's series.
 * Returns 0; -EINVAL for a bad type or a missing kind/name/reason/action (nothing queued, a
 * line is logged); -ENOSPC when the queue is full (the occurrence is dropped and counted, a
 * line is logged); -ESHUTDOWN while the recorder is being freed. */
int tn_recorder_eventf(struct tn_recorder *rec, const struct tn_object_ref *regarding, const char *type,
                       const char *reason, const char *action, const char *note_fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Waits until every occurrence queued before the call is written and every series' pending
 * count is patched (ignoring the 30 s patch interval), or timeout_s passes. Returns 0 or
 * TN_ETIMEOUT. */
int tn_recorder_flush(struct tn_recorder *rec, double timeout_s);

/* Occurrences dropped because the queue was full, since tn_recorder_new. */
uint64_t tn_recorder_dropped(struct tn_recorder *rec);

/* Writes what is queued and pending (one attempt each; gives up on the rest at the first
 * transport failure), stops the thread, frees. Accepts NULL. */
void tn_recorder_free(struct tn_recorder *rec);

/* ---- the pure core: Event objects and series bookkeeping (exposed for unit tests) -------- */

#define TN_EVENT_NOTE_MAX 1024         /* bytes, the API server's limit */
#define TN_EVENT_SERIES_WINDOW_S 360.0 /* a repeat within 6 min of the last one joins the series */
#define TN_EVENT_PATCH_INTERVAL_S 30.0 /* at most one series patch per series per 30 s */
#define TN_EVENT_RETRY_S 10.0          /* wait after a transient write failure */
#define TN_EVENT_MAX_TRIES 12          /* transient failures before an Event is given up */

/* Builds an events.k8s.io/v1 Event: metadata.name "<regarding.name>.<suffix>" (the name part
 * cut so the whole fits 253 characters), namespace regarding's or "default", eventTime
 * wall_s as MicroTime, the note cut to TN_EVENT_NOTE_MAX bytes on a UTF-8 boundary ("..."
 * marks the cut). suffix is 16 hex digits. Returns a new reference (json_decref it) or NULL
 * on allocation failure. */
json_t *tn_event_build(const char *controller, const char *instance, const struct tn_object_ref *regarding,
                       const char *type, const char *reason, const char *action, const char *note,
                       const char *suffix, double wall_s);

/* The dedup key of an Event (borrowed): its reportingController, reportingInstance, type,
 * reason, action, note and regarding. Two Events with the same key are the same occurrence.
 * Returns malloc'd (free it), NULL on allocation failure. */
char *tn_event_key(const json_t *event);

/* One Event the recorder created and the repeats counted into it. Owned by its cache. */
struct tn_event_series {
  char *key;
  uint64_t hash;       /* of key, to compare fast */
  char *event;         /* the Event as built for the first occurrence, as compact JSON text: a
                        * parsed tree costs ~6x the memory, and 4,096 of them are kept */
  char *ns, *name;     /* its metadata.namespace and metadata.name ("" when absent) */
  long count;          /* occurrences so far */
  long sent_count;     /* what the server holds: 0 before the create, then the count written */
  double last_mono;    /* monotonic time of the last occurrence */
  double last_wall;    /* wall time of the last occurrence (series.lastObservedTime) */
  double last_attempt; /* monotonic time of the last write attempt */
  int failures;        /* transient write failures in a row */
};

/* The series the recorder knows, plain data owned by the recorder's thread. */
struct tn_event_cache {
  struct tn_event_series **items;
  size_t n, alloc;
  size_t max; /* beyond it the least recently observed series is forgotten */
};

void tn_event_cache_init(struct tn_event_cache *c, size_t max);
/* Frees every series. Accepts NULL. */
void tn_event_cache_cleanup(struct tn_event_cache *c);
/* An occurrence of event (borrowed; the cache keeps its own reference when it starts a series)
 * whose key is key (borrowed) at monotonic now / wall time wall. Joins the live series with the
 * same key (count+1), or starts one (count 1, *is_new set). Returns the series (owned by the
 * cache), NULL on allocation failure. */
struct tn_event_series *tn_event_cache_observe(struct tn_event_cache *c, json_t *event, const char *key,
                                               double now, double wall, bool *is_new);
/* The series ended: no occurrence for TN_EVENT_SERIES_WINDOW_S. */
bool tn_event_series_finished(const struct tn_event_series *s, double now);
/* Whether s needs a write now: it has occurrences the server lacks, and either flush, or it is
 * not created yet, or it just became a series (count 2 is written at once, like client-go), or
 * TN_EVENT_PATCH_INTERVAL_S passed since the last write, or it finished; after a transient
 * failure, not before TN_EVENT_RETRY_S. */
bool tn_event_series_due(const struct tn_event_series *s, double now, bool flush);
/* Bookkeeping after a write attempt at now: ok (the server has count), failed for good (given
 * up: counted as sent), or failed transiently (retried later; given up after
 * TN_EVENT_MAX_TRIES). */
enum tn_event_write_result { TN_EVENT_WRITTEN, TN_EVENT_REJECTED, TN_EVENT_RETRY };
void tn_event_series_after_write(struct tn_event_series *s, enum tn_event_write_result r, double now);
/* The object to create for s: its Event, with series {count, lastObservedTime} when count >= 2.
 * New reference, NULL on allocation failure. */
json_t *tn_event_series_create_body(const struct tn_event_series *s);
/* The merge patch for s: {"series":{"count":N,"lastObservedTime":"..."}}. New reference. */
json_t *tn_event_series_patch(const struct tn_event_series *s);
/* Forgets finished series whose count the server has. Returns how many were dropped. */
size_t tn_event_cache_expire(struct tn_event_cache *c, double now);

#endif
