/* tenancy_metrics.h - the tenancy metrics, computed when /metrics is scraped from what the
 * operator already holds (the Tenant cache, the database step's counters, the audit trail's
 * counters), so no reconcile path pays for them. Bounded cardinality by default: counts by state,
 * plan/region, condition type/status/reason; series per tenant only with per_tenant
 * (--metrics-per-tenant). Every name is documented in docs/observability.md. */
#ifndef TN_CONVERGE_TENANCY_METRICS_H
#define TN_CONVERGE_TENANCY_METRICS_H

#include <jansson.h>
#include <stdbool.h>

#include "runtime/metrics.h"

struct tn_informer;
struct tn_db;
struct tn_audit;
struct tn_collect;

struct tn_tenancy_metrics_source {
  struct tn_informer *tenants; /* the Tenant cache; nothing tenant-related is exposed before it syncs */
  struct tn_db *db;            /* may be NULL */
  struct tn_audit *audit;      /* may be NULL: no audit trail configured (tenancy_audit_trail_enabled 0) */
  bool per_tenant;             /* also the tenancy_tenant_* series per tenant */
  struct tn_tenancy_metrics_memo *memo; /* set by register: the counts kept between scrapes */
};

/* Registers the collector; src is borrowed (and must stay valid) until
 * tn_tenancy_metrics_unregister. Returns 0, -EINVAL or -ENOMEM. */
int tn_tenancy_metrics_register(struct tn_metrics *m, struct tn_tenancy_metrics_source *src);
void tn_tenancy_metrics_unregister(struct tn_metrics *m, struct tn_tenancy_metrics_source *src);

/* The tenant families of an array of Tenant objects at wall time now (unit tests). */
void tn_tenancy_metrics_collect_tenants(struct tn_collect *c, const json_t *tenants, double now,
                                        bool per_tenant);
/* The same from a store of Tenants (the informer's, what the collector calls), one object decoded
 * at a time: no copy of the whole cache. */
struct tn_store;
void tn_tenancy_metrics_collect_store(struct tn_collect *c, struct tn_store *tenants, double now,
                                      bool per_tenant);

/* The counts of the bounded families are kept between scrapes and counted again only when the
 * Tenant store changed (tn_store_changes): at rest a scrape decodes nothing (it decoded every
 * cached Tenant: 0.5-1 s at 10,100 tenants, 5.7 s once during a resync; issue 18). What depends on
 * the time (grants in force, the oldest key's age) is worked out at each scrape from the kept
 * expiries and rotation time. With per_tenant everything is counted at each scrape. Thread-safe. */
struct tn_tenancy_metrics_memo;
struct tn_tenancy_metrics_memo *tn_tenancy_metrics_memo_new(void);    /* NULL when out of memory */
void tn_tenancy_metrics_memo_free(struct tn_tenancy_metrics_memo *m); /* accepts NULL */
void tn_tenancy_metrics_collect_memo(struct tn_tenancy_metrics_memo *m, struct tn_collect *c,
                                     struct tn_store *tenants, double now, bool per_tenant);
/* How many times the counts were made (for tests). */
unsigned long tn_tenancy_metrics_memo_recomputes(struct tn_tenancy_metrics_memo *m);

#endif
