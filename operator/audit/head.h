/* head.h - exports the audit trail's head (the newest row's id and hash) periodically, so that a
 * tail cut by someone who can bypass the table's triggers (its owner, a database superuser) is
 * detectable later with `tenantctl audit verify --expect ID:HASH` (docs/audit.md).
 *
 * Each export, from a thread of its own:
 *   - a log line:  "audit trail head: row N hash H (check later with tenantctl audit verify --expect N:H)"
 *   - a Kubernetes Event (type Normal, reason AuditChainHead, action Export) about `regarding`,
 *     note "audit trail head: row N hash H"; kept by the API server (and usually shipped to a log
 *     pipeline) outside the database's reach; not written again while the API server still holds
 *     an Event with that note (a restart, an idle trail: no write);
 *   - the gauge tenancy_audit_chain_head_id (the newest row's id), so an alert on
 *     `decrease(tenancy_audit_chain_head_id)` or a drop in a recording rule shows a cut tail.
 * A failed read is logged (warning) and counted in tenancy_audit_chain_head_export_failures_total. */
#ifndef TN_AUDIT_HEAD_H
#define TN_AUDIT_HEAD_H

#include "audit/audit.h"
#include "kube/client.h"
#include "runtime/events.h"
#include "runtime/metrics.h"

#define TN_AUDIT_HEAD_METRIC "tenancy_audit_chain_head_id"
#define TN_AUDIT_HEAD_FAILURES_METRIC "tenancy_audit_chain_head_export_failures_total"
#define TN_AUDIT_HEAD_REASON "AuditChainHead"
/* Default period between exports (and the first one at start). */
#define TN_AUDIT_HEAD_DEFAULT_INTERVAL_S 300.0

struct tn_audit_head_exporter; /* opaque */

/* Starts the exporting thread: one export at once, then every interval_s seconds (> 0). audit is
 * borrowed and must outlive the exporter; metrics and rec may be NULL (no metric / no Event);
 * kube (borrowed, may be NULL) is used to look for an Event of the same head first (core Events,
 * list, in the regarding object's namespace);
 * regarding (copied; NULL: no Event) is the object the Events are about, e.g. the operator's
 * leader Lease. Returns 0, -EINVAL, -ENOMEM or -errno from pthread_create. */
int tn_audit_head_exporter_start(struct tn_audit *audit, struct tn_metrics *metrics, struct tn_recorder *rec,
                                 struct tn_kube *kube, const struct tn_object_ref *regarding,
                                 double interval_s, struct tn_audit_head_exporter **out);

/* Stops the thread (waits for an export in progress) and frees. With final_export, exports once
 * more first when rows were appended through audit since the last export and its last round trip
 * succeeded, without looking for an earlier Event (the head moved); the recorder must still run
 * and the write fence be open: a graceful shutdown, before the Lease is released. Accepts NULL. */
void tn_audit_head_exporter_stop(struct tn_audit_head_exporter *x, bool final_export);

#endif
