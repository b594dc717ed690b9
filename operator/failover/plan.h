/* plan.h - region failover, pure: a Region's spec.failover read from JSON, what starts a
 * failover (or a drill), which tenants may move (residency), the names of the replication
 * objects, libpq connection strings for subscriptions, and the drill's RPO arithmetic. No
 * network, no clock, no globals; failover/failover.c acts on it. See docs/failover.md. */
#ifndef TN_FAILOVER_PLAN_H
#define TN_FAILOVER_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "tenancy/tenant.h"
#include "util/error.h"

/* On a Region: the id of a drill to run now (tenantctl failover-drill writes it); only Tenants
 * labelled TN_LABEL_FAILOVER_DRILL=<id> and placed in the Region are failed over. */
#define TN_ANNOTATION_FAILOVER_DRILL "tenancy.dev/failover-drill"
/* On a synthetic Tenant of a drill: the drill id. */
#define TN_LABEL_FAILOVER_DRILL "tenancy.dev/failover-drill"

/* Event reasons. */
#define TN_REASON_FAILOVER_STARTED "FailoverStarted"
#define TN_REASON_FAILED_OVER "FailedOver"
#define TN_REASON_FAILOVER_FAILED "FailoverFailed"
#define TN_REASON_FAILOVER_NOT_ALLOWED "FailoverNotAllowed" /* residency forbids the standby */
#define TN_REASON_FAILOVER_DRILL "FailoverDrill"            /* the drill's report */
#define TN_REASON_FAILOVER_CLEANUP "FailoverCleanup"        /* the old primary fenced and its slots dropped */

/* Audit actions. */
#define TN_AUDIT_ACTION_FAILOVER "region.failover"      /* target region/<name>: started, succeeded */
#define TN_AUDIT_ACTION_TENANT_FAILOVER "failover"      /* target tenant/<id>: succeeded, refused, failed */
#define TN_AUDIT_ACTION_FAILOVER_DRILL "failover.drill" /* target region/<name>: the drill's report */
/* target region/<name>: the old primary, answering again after a failover, fenced and cleaned */
#define TN_AUDIT_ACTION_FAILOVER_CLEANUP "failover.cleanup"

enum tn_failover_mode { TN_FAILOVER_WARM = 0, TN_FAILOVER_COLD = 1 };

/* A Region's failover settings. Strings point into the JSON (borrowed). */
struct tn_failover_spec {
  bool configured;     /* spec.failover is present */
  const char *region;  /* metadata.name */
  const char *standby; /* spec.failover.standbyRegion */
  enum tn_failover_mode mode;
  bool active;                /* spec.failover.active */
  bool available;             /* spec.available */
  double snapshot_interval_s; /* cold: spec.failover.snapshotIntervalSeconds (default 300) */
  const char *drill;          /* annotation TN_ANNOTATION_FAILOVER_DRILL, NULL when absent or "" */
  const char *drill_done;     /* status.failover.lastFailover.drill: the drill last run */
  bool failed_over;           /* status.failover.phase is FailedOver */
};

/* Reads region (borrowed; must outlive *out). Returns 0, or TN_EINVALID (err says why) for a
 * failover naming no standby or itself (the CRD refuses both; a Region written before it may not). */
int tn_failover_spec_parse(const json_t *region, struct tn_failover_spec *out, struct tn_error *err);

enum tn_failover_trigger {
  TN_FAILOVER_NONE = 0, /* keep the copies current */
  TN_FAILOVER_REGION,   /* spec.available false and spec.failover.active true: every tenant */
  TN_FAILOVER_DRILL,    /* a drill not run yet: only its labelled tenants */
};
/* What the spec asks for now. A real failover wins over a drill. */
enum tn_failover_trigger tn_failover_trigger_of(const struct tn_failover_spec *s);

/* Whether a tenant with this residency may be copied to and moved into standby: allowedRegions
 * empty (every region) or listing it. A tenant refused here is never copied: its data must not
 * leave its allowed regions even as a replica. */
bool tn_failover_tenant_allowed(const struct tn_residency *residency, const char *standby);

/* The name of the publication, replication slot and subscription of the copy of database
 * `database` of server `server` in `region` to `standby`: "tnfo_" and 24 hex digits of
 * SHA-256("region/server/database>standby"): a valid unquoted identifier, unique per source
 * database and standby, and the same on every pass. out gets at most 63 bytes. */
void tn_failover_object_name(const char *region, const char *server, const char *database,
                             const char *standby, char out[64]);

/* Appends `key='value'` (with ' and \ escaped as libpq wants) and a space to buf of size n.
 * Returns 0, or -ERANGE when it does not fit. */
int tn_failover_conninfo_add(char *buf, size_t n, const char *key, const char *value);

/* The drill's RPO of one tenant: how many seconds of committed writes the failover lost:
 * last_committed - last_kept (wall seconds of the newest row committed on the primary and of
 * the newest row found on the promoted copy), 0 when nothing was lost (last_kept >=
 * last_committed) and last_committed when nothing at all was kept (last_kept <= 0 while
 * last_committed > 0: reported as the time since the first write). */
double tn_failover_rpo_seconds(double first_committed, double last_committed, double last_kept);

/* Summary statistics of n values (n may be 0: all 0). */
struct tn_failover_stats {
  double min, max, mean, p50, p95;
};
void tn_failover_stats_of(const double *v, size_t n, struct tn_failover_stats *out);

/* The phase names of status.failover.phase. */
#define TN_FAILOVER_PHASE_REPLICATING "Replicating"
#define TN_FAILOVER_PHASE_SNAPSHOT_READY "SnapshotReady"
#define TN_FAILOVER_PHASE_FAILING_OVER "FailingOver"
#define TN_FAILOVER_PHASE_FAILED_OVER "FailedOver"
#define TN_FAILOVER_PHASE_ERROR "Error"

#endif
