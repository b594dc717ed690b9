/* self_writes.h - the watch events that only bring back the operator's own writes (issue 18).
 *
 * A reconcile that creates an owned object, adds the finalizer or writes a tenant's status
 * continues with what it wrote: nothing is left for the watch event of that write to tell it.
 * Yet every such event enqueued the tenant again (2.3 reconciles per tenant while 1,000 tenants
 * converged, each decoding the tenant and its 12 objects to find nothing to do). The reconcile
 * notes each write here; the event handlers skip the enqueue for an event that is exactly one
 * of them, once:
 *
 *   an owned object the reconcile created: its ADDED event (an object can only be added once
 *   under a name; someone else's object with that name would have made the create fail);
 *   a tenant the reconcile wrote (finalizer, status): the MODIFIED event whose resourceVersion
 *   is the one the write answered. That event can be dispatched before the write's answer
 *   reaches the reconcile (the watch and the PUT share a connection; under load it did so for
 *   most writes: 701 of 1,000 new tenants were reconciled once more for it). So the write is
 *   announced first (tn_self_writes_writing): the tenant's MODIFIED events that come while it is
 *   in flight are held, and tn_self_writes_write_done drops the one of this write and hands the
 *   others (someone else's changes) to the release callback, which enqueues them.
 *
 * Any other event (someone else's change, a resync, a relist) enqueues as before. A note whose
 * event never comes (the watch restarted past it) is forgotten after TN_SELF_WRITES_TTL_S.
 * Thread-safe. */
#ifndef TN_CONVERGE_SELF_WRITES_H
#define TN_CONVERGE_SELF_WRITES_H

#include <jansson.h>
#include <stdbool.h>

#define TN_SELF_WRITES_TTL_S 120.0

struct tn_self_writes;

struct tn_self_writes *tn_self_writes_new(void);    /* NULL when out of memory */
void tn_self_writes_free(struct tn_self_writes *s); /* accepts NULL */

/* The reconcile is about to create kind/namespace/name (namespace NULL or "" when cluster-scoped):
 * noted before the POST, so that its ADDED event cannot come first; tn_self_writes_forget when
 * the create failed. */
void tn_self_writes_created(struct tn_self_writes *s, const char *kind, const char *ns, const char *name);
void tn_self_writes_forget(struct tn_self_writes *s, const char *kind, const char *ns, const char *name);
/* The reconcile wrote obj (a Tenant as the API server answered the write): its resourceVersion. */
void tn_self_writes_wrote(struct tn_self_writes *s, const json_t *obj);

/* A write of kind/namespace/name is about to be sent (a Tenant's finalizer or status PUT). Every
 * call is followed by tn_self_writes_write_done (obj: the answer; NULL when the write failed):
 * until then that object's MODIFIED events are held, never dropped. */
void tn_self_writes_writing(struct tn_self_writes *s, const char *kind, const char *ns, const char *name);
void tn_self_writes_write_done(struct tn_self_writes *s, const char *kind, const char *ns, const char *name,
                               const json_t *obj);
/* Receives the held events that were not the write's (name: the object's, tag: the handler's),
 * and the write's own event, if it was held, with tag TN_SELF_WRITES_OURS; on the thread that
 * called tn_self_writes_write_done, without the table's lock. */
#define TN_SELF_WRITES_OURS (-1)
typedef void (*tn_self_writes_release_fn)(void *ud, const char *name, int tag);
void tn_self_writes_set_release(struct tn_self_writes *s, tn_self_writes_release_fn fn, void *ud);

/* For an ADDED event of obj: true (and the note is forgotten) when the reconcile created it. */
bool tn_self_writes_take_added(struct tn_self_writes *s, const json_t *obj);
/* For a MODIFIED event of obj: true (and the note is forgotten) when its resourceVersion is one
 * a reconcile's write answered; true as well while a write of obj is in flight (the event is
 * held with tag, and released with it unless it is the write's). */
bool tn_self_writes_take_modified(struct tn_self_writes *s, const json_t *obj);
enum { TN_SELF_WRITES_NOT_OURS, TN_SELF_WRITES_TAKEN, TN_SELF_WRITES_HELD };
int tn_self_writes_take_modified_tag(struct tn_self_writes *s, const json_t *obj, int tag);

/* Notes held (for tests and the cache-size metrics). */
size_t tn_self_writes_len(struct tn_self_writes *s);
/* Forgets the notes older than TN_SELF_WRITES_TTL_S at now (monotonic seconds; for tests). */
void tn_self_writes_expire(struct tn_self_writes *s, double now);

#endif
