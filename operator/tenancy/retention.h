/* retention.h - what Suspended and Archived mean for one tenant, from the TenancyPolicies:
 * the access its groups keep while Suspended (spec.suspension.access), what happens to its
 * running workloads (spec.suspension.workloads), and how long an Archived tenant's data is kept
 * (spec.retention.archivedData) before the operator purges it. Pure: no network, no clock
 * (the caller passes the time), no globals. */
#ifndef TN_TENANCY_RETENTION_H
#define TN_TENANCY_RETENTION_H

#include <jansson.h>
#include <stdbool.h>

#include "tenancy/lifecycle.h"
#include "util/error.h"

/* How long an Archived tenant's data is kept when no TenancyPolicy sets
 * spec.retention.archivedData. */
#define TN_RETENTION_ARCHIVED_DEFAULT_DAYS 30

/* On each Deployment and StatefulSet the operator scaled to zero: the replicas it had, given
 * back on resume or restore. */
#define TN_ANNOTATION_SUSPENDED_REPLICAS "tenancy.dev/suspended-replicas"

/* spec.suspension.access: the role the tenant's groups keep while Suspended. */
enum tn_suspension_access {
  TN_SUSPEND_ACCESS_VIEWER = 0, /* every group binding becomes tenancy-tenant-viewer (default) */
  TN_SUSPEND_ACCESS_NONE,       /* every group binding is removed */
};

/* spec.suspension.workloads: what happens to running workloads while Suspended. */
enum tn_suspension_workloads {
  TN_SUSPEND_WORKLOADS_CUT_OFF = 0,   /* NetworkPolicy deny-all; replicas untouched (default) */
  TN_SUSPEND_WORKLOADS_SCALE_TO_ZERO, /* also: Deployments and StatefulSets scaled to zero */
};

/* What the policies say, for every tenant (policies apply to all tenants; the strictest wins:
 * None over Viewer, ScaleToZero over CutOff, the shortest archivedData). */
struct tn_lifecycle_rules {
  enum tn_suspension_access access;
  enum tn_suspension_workloads workloads;
  int archived_data_days;  /* the shortest spec.retention.archivedData, or the default */
  bool archived_data_set;  /* some policy sets it (else the default applies) */
  char retention_from[64]; /* the policy that sets the shortest archivedData; "" for the default */
};

/* Reads the rules from the TenancyPolicy objects (a JSON array, borrowed; NULL = none). Entries
 * that do not parse are skipped (the CRD schema refuses them at the API server). */
void tn_lifecycle_rules_from(const json_t *policy_objs, struct tn_lifecycle_rules *out);

/* The names of the values, as in the CRD ("Viewer", "None", "CutOff", "ScaleToZero"). Static. */
const char *tn_suspension_access_name(enum tn_suspension_access a);
const char *tn_suspension_workloads_name(enum tn_suspension_workloads w);

/* Where an Archived tenant is in its retention. */
struct tn_archive_schedule {
  bool archived;      /* the state reached is Archived */
  bool purged;        /* status.archive.purgedAt is set: the data is gone */
  bool due;           /* archived and the retention has passed (or purged): purge now */
  double archived_at; /* when it was archived (the time given when it is archived now) */
  double purge_after; /* archived_at + the retention */
  int retention_days;
};

/* The schedule of a tenant (tenant_obj borrowed) whose reconcile reaches `next`; archiving_now:
 * this reconcile archives it (status.archivedAt is about to be set to `now`). */
void tn_archive_schedule_for(const json_t *tenant_obj, enum tn_state next, bool archiving_now,
                             const struct tn_lifecycle_rules *rules, double now,
                             struct tn_archive_schedule *out);

/* Refuses a restore (an Archived -> Active step in lp) once the archived data was purged, or when
 * the status says Archived without status.archive (never archived by the operator: a status
 * rewritten by hand is not acted on):
 * lp becomes refused with no steps (next stays Archived), err gets reason TransitionRefused and
 * a message that says when the data was purged and what is left to do. Returns 0 when lp has no
 * restore or the data is retained, TN_EINVALID when refused. */
int tn_archive_check_restore(const json_t *tenant_obj, struct tn_lifecycle_plan *lp, struct tn_error *err);

/* Writes status.archive (into status, borrowed) from s: {retentionDays, purgeAfter, purgedAt}
 * while Archived (purgedAt = now_rfc3339 when purge_complete and not yet set), removed in any
 * other state. */
void tn_archive_status_set(json_t *status, const struct tn_archive_schedule *s, bool purge_complete,
                           const char *now_rfc3339);

#endif
