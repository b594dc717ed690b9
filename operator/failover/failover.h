/* failover.h - the Region failover controller (issue 16, docs/failover.md): one worker keyed by
 * Region name, fed by the manager's Region and Tenant informers, that for each Region with
 * spec.failover
 *
 *   warm  keeps a logical replica of every tenant placed there whose residency allows the standby
 *         region: the tenant's role, schema or database on a server of the standby (NOLOGIN), its
 *         tables' definitions, a publication on the primary and a subscription on the standby
 *         (one per source database: the shared database's tenants share one);
 *   cold  copies every such tenant to the standby (TRUNCATE + COPY of each table from one
 *         REPEATABLE READ snapshot, in one transaction) every snapshotIntervalSeconds;
 *
 * and, when spec.available is false and spec.failover.active true (or a drill annotation asks for
 * it, for the drill's labelled tenants only), fails the tenants over: primary roles fenced
 * (NOLOGIN, sessions ended) when the primary answers, replicas caught up (warm, bounded wait),
 * subscriptions detached, sequences set past the copied rows, then each Tenant's
 * status.placement.region and status.database.server switched to the standby: the tenant
 * reconcile then enables the login there and rewrites the tenant-database Secrets. Tenants whose
 * residency forbids the standby are never copied nor moved: status, a Warning Event and an audit
 * row say so. Writes status.failover on the Region (merge patch). */
#ifndef TN_FAILOVER_FAILOVER_H
#define TN_FAILOVER_FAILOVER_H

#include "converge/reconciler.h"
#include "runtime/metrics.h"
#include "util/error.h"

struct tn_failover;

/* rec (borrowed, must outlive the controller) gives the informers (regions and tenants must
 * exist, not started yet; it adds its own index of tenants by placement region), the API
 * client, recorder, audit trail, database cache and Region Secret namespaces. */
int tn_failover_new(struct tn_reconciler *rec, struct tn_metrics *metrics, struct tn_failover **out,
                    struct tn_error *err);
int tn_failover_start(struct tn_failover *f);                    /* once leading; 0 or -errno */
void tn_failover_stop(struct tn_failover *f, double deadline_s); /* accepts NULL */
void tn_failover_abandon(struct tn_failover *f);                 /* accepts NULL */
void tn_failover_free(struct tn_failover *f);                    /* accepts NULL */

/* One pass over Region `name`, for tests. */
struct tn_result tn_failover_reconcile(void *ud, const char *name);

#endif
