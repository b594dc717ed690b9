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
 *   is the one the write answered.
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

/* For an ADDED event of obj: true (and the note is forgotten) when the reconcile created it. */
bool tn_self_writes_take_added(struct tn_self_writes *s, const json_t *obj);
/* For a MODIFIED event of obj: true (and the note is forgotten) when its resourceVersion is one
 * a reconcile's write answered. */
bool tn_self_writes_take_modified(struct tn_self_writes *s, const json_t *obj);

/* Notes held (for tests and the cache-size metrics). */
size_t tn_self_writes_len(struct tn_self_writes *s);
/* Forgets the notes older than TN_SELF_WRITES_TTL_S at now (monotonic seconds; for tests). */
void tn_self_writes_expire(struct tn_self_writes *s, double now);

#endif
