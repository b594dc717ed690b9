/* tenant_changes.h - the placement.decided and quota.changed lifecycle events (issue 14): when a
 * provisioned tenant's placement (region, isolation) or effective quotas differ from what its
 * last such event recorded, one audit row (action placement.decide / quota.change, outcome
 * succeeded) and its CloudEvent are appended in one transaction. The comparison is with the
 * outbox itself (the tenant's last event of the type since its latest "created"), so a resync,
 * a restart or a new leader records nothing twice.
 *
 * The cache keeps, per tenant (name and uid), what the outbox last recorded, so that a reconcile
 * that changes nothing issues no SQL: the outbox is read on a tenant's first reconcile in this
 * process (a new leader is a new process: it reads once per tenant), and again only when the
 * placement or the quotas differ from the cached values, before anything is written (another
 * writer, a TenantMigration's cutover, may have recorded the new value already). What we append is
 * cached; a failed read or append drops the entry (the next reconcile reads again). */
#ifndef TN_CONVERGE_TENANT_CHANGES_H
#define TN_CONVERGE_TENANT_CHANGES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "audit/audit.h"
#include "util/error.h"

struct tn_metrics;

#define TN_AUDIT_ACTION_PLACEMENT_DECIDE "placement.decide"
#define TN_AUDIT_ACTION_QUOTA_CHANGE "quota.change"

/* The last recorded values per tenant; thread-safe (reconciles of different tenants run in
 * parallel). */
struct tn_tenant_changes_cache;

/* A new, empty cache; with metrics (may be NULL) its reads are counted in the counter
 * tenancy_outbox_change_reads_total. NULL when out of memory. */
struct tn_tenant_changes_cache *tn_tenant_changes_cache_new(struct tn_metrics *metrics);
/* Accepts NULL. */
void tn_tenant_changes_cache_free(struct tn_tenant_changes_cache *cache);
/* Drops a tenant's entry (the tenant is deleted or gone). Accepts NULL. */
void tn_tenant_changes_forget(struct tn_tenant_changes_cache *cache, const char *name);
/* How many times the outbox was read through this cache; and how many tenants it holds. */
unsigned long long tn_tenant_changes_reads(struct tn_tenant_changes_cache *cache);
size_t tn_tenant_changes_cached(struct tn_tenant_changes_cache *cache);
/* Whether the cache says the outbox holds these values for the tenant (name, uid) already:
 * want_p ("region\tisolation") or want_q (the quotas as compact JSON, sorted keys) NULL are not
 * compared. put records what the outbox holds after a call (p or q NULL: none recorded). */
bool tn_tenant_changes_cache_has(struct tn_tenant_changes_cache *cache, const char *name, const char *uid,
                                 const char *want_p, const char *want_q);
void tn_tenant_changes_cache_put(struct tn_tenant_changes_cache *cache, const char *name, const char *uid,
                                 const char *p, const char *q);

struct tn_tenant_changes {
  struct tn_audit *audit;
  struct tn_tenant_changes_cache *cache; /* NULL: the outbox is read on every call */
  const char *cluster;                   /* --cluster-name (NULL: "local") */
  const json_t *tenant;                  /* the Tenant object (name, uid, labels, generation) */
  const char *actor;                     /* who asked for this generation, or TN_AUDIT_OPERATOR_ACTOR */
  const char *request_id;                /* the reconcile's id (the resourceVersion read) */
  const char *now;                       /* RFC 3339: part of the correlation id */
  const char *region;                    /* the placement; NULL: not placed (no placement event) */
  const char *isolation;
  const json_t *quotas; /* status.derived.quotas; NULL: unknown (no quota event) */
};

/* Appends what changed (0, 1 or 2 events). *appended (may be NULL) gets how many. Errors: those
 * of the audit trail (the caller retries the reconcile or logs). */
int tn_tenant_record_changes(const struct tn_tenant_changes *c, int *appended, struct tn_error *err);

#endif
