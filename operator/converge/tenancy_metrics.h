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
};

/* Registers the collector; src is borrowed (and must stay valid) until
 * tn_tenancy_metrics_unregister. Returns 0, -EINVAL or -ENOMEM. */
int tn_tenancy_metrics_register(struct tn_metrics *m, const struct tn_tenancy_metrics_source *src);
void tn_tenancy_metrics_unregister(struct tn_metrics *m, const struct tn_tenancy_metrics_source *src);

/* The tenant families of an array of Tenant objects at wall time now (unit tests). */
void tn_tenancy_metrics_collect_tenants(struct tn_collect *c, const json_t *tenants, double now,
                                        bool per_tenant);
/* The same from a store of Tenants (the informer's, what the collector calls), one object decoded
 * at a time: no copy of the whole cache. */
struct tn_store;
void tn_tenancy_metrics_collect_store(struct tn_collect *c, struct tn_store *tenants, double now,
                                      bool per_tenant);

#endif
