/* reconcile_triggers.h - why each tenant reconcile ran (issue 18).
 *
 * Every handler that enqueues a tenant names its trigger (tenant added, its spec changed, an owned
 * object of some kind changed, a resync, ...). The first trigger since a tenant's last reconcile
 * began is its cause: the work queue merges the others into the same reconcile. A reconcile that
 * asks to run again (requeue-after, or a failure retried with backoff) is the cause of the next one
 * when no event came first. Counted per cause and exposed as
 * tenancy_reconcile_triggers_total{trigger,kind}; the events that enqueue nothing because they
 * carry nothing new (the reconcile's own writes, a resync of a tenant just reconciled, ...) as
 * tenancy_reconcile_events_skipped_total{reason}. docs/observability.md lists both.
 *
 * The table holds one 24-byte entry per tenant (its pending cause and when its last reconcile
 * began; the resync reads that), removed when the tenant is deleted. Thread-safe. */
#ifndef TN_CONVERGE_RECONCILE_TRIGGERS_H
#define TN_CONVERGE_RECONCILE_TRIGGERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/controller.h"
#include "runtime/metrics.h"

enum tn_trigger {
  TN_TRIGGER_UNKNOWN,         /* no cause recorded (should stay 0) */
  TN_TRIGGER_START,           /* the first pass: every cached tenant when the workers start */
  TN_TRIGGER_TENANT_ADDED,    /* a Tenant appeared in the cache (created, or first seen) */
  TN_TRIGGER_TENANT_SPEC,     /* metadata.generation changed */
  TN_TRIGGER_TENANT_METADATA, /* labels, annotations, finalizers or deletionTimestamp changed */
  TN_TRIGGER_TENANT_STATUS,   /* the status changed, by a write that was not this process' */
  TN_TRIGGER_TENANT_RESYNC,   /* the periodic resync (--sync-period) */
  TN_TRIGGER_TENANT_DELETED,  /* the Tenant left the cache */
  TN_TRIGGER_OWNED_ADDED,     /* an owned object (kind label) appeared, not created by the reconcile */
  TN_TRIGGER_OWNED_UPDATED,   /* an owned object changed in what the reconcile reads */
  TN_TRIGGER_OWNED_DELETED,   /* an owned object went away */
  TN_TRIGGER_PLAN,            /* the tenant's Plan changed */
  TN_TRIGGER_REGION,          /* a Region changed */
  TN_TRIGGER_POLICY,          /* a TenancyPolicy changed */
  TN_TRIGGER_REQUEUE_AFTER,   /* the previous reconcile asked to come back later */
  TN_TRIGGER_ERROR,           /* the previous reconcile failed: retried with backoff */
  TN_TRIGGER_COUNT
};

/* The owned kinds an owned trigger carries (kind label): TN_KIND_* + 1, TN_TRIGGER_KIND_SECRET
 * for the tenant-database Secrets, 0 for none. */
#define TN_TRIGGER_KIND_NONE 0
#define TN_TRIGGER_KIND_SECRET 6
#define TN_TRIGGER_KINDS 7

enum tn_trigger_skip {
  TN_SKIP_OWN_TENANT_WRITE, /* the MODIFIED event of the reconcile's finalizer or status write */
  TN_SKIP_OWN_CREATE,       /* the ADDED event of an owned object the reconcile created */
  TN_SKIP_VERSION_ONLY,     /* an owned object's update that changed nothing the projection keeps */
  TN_SKIP_RESYNC_RECENT,    /* a resync of a tenant whose last reconcile began within the period */
  TN_SKIP_COUNT
};

const char *tn_trigger_name(enum tn_trigger t);
const char *tn_trigger_skip_name(enum tn_trigger_skip s);
const char *tn_trigger_kind_name(int kind); /* "" for TN_TRIGGER_KIND_NONE */

struct tn_triggers;

struct tn_triggers *tn_triggers_new(void);    /* NULL when out of memory */
void tn_triggers_free(struct tn_triggers *t); /* accepts NULL */

/* An event asks for key's reconcile with this trigger: kept as the cause unless one is pending. */
void tn_triggers_note(struct tn_triggers *t, const char *key, enum tn_trigger trig, int kind);
/* An event that enqueued nothing. */
void tn_triggers_skipped(struct tn_triggers *t, enum tn_trigger_skip why);

struct tn_trigger_cause {
  enum tn_trigger trigger;
  int kind;
};
/* A reconcile of key begins at now (monotonic seconds): its cause, counted, and forgotten. */
struct tn_trigger_cause tn_triggers_begin(struct tn_triggers *t, const char *key, double now);
/* It ended: a requeue-after or an error is the cause of the next reconcile unless an event comes
 * first; gone (the tenant is no longer cached) forgets the key. */
void tn_triggers_end(struct tn_triggers *t, const char *key, struct tn_result res, bool gone, double now);

/* Whether key's last reconcile began within the last `period` seconds before now. */
bool tn_triggers_recent(struct tn_triggers *t, const char *key, double period, double now);

/* Counters (for tests and the collector). */
uint64_t tn_triggers_count(struct tn_triggers *t, enum tn_trigger trig, int kind);
uint64_t tn_triggers_skip_count(struct tn_triggers *t, enum tn_trigger_skip why);
size_t tn_triggers_len(struct tn_triggers *t); /* keys held */

/* The collector of both families (registered by the manager). */
int tn_triggers_register(struct tn_metrics *m, struct tn_triggers *t);
void tn_triggers_unregister(struct tn_metrics *m, struct tn_triggers *t);

#endif
