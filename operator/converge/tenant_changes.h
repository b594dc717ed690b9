/* tenant_changes.h - the placement.decided and quota.changed lifecycle events (issue 14): when a
 * provisioned tenant's placement (region, isolation) or effective quotas differ from what its
 * last such event recorded, one audit row (action placement.decide / quota.change, outcome
 * succeeded) and its CloudEvent are appended in one transaction. The comparison is with the
 * outbox itself (the tenant's last event of the type since its latest "created"), so a resync,
 * a restart or a new leader records nothing twice. */
#ifndef TN_CONVERGE_TENANT_CHANGES_H
#define TN_CONVERGE_TENANT_CHANGES_H

#include <jansson.h>

#include "audit/audit.h"
#include "util/error.h"

#define TN_AUDIT_ACTION_PLACEMENT_DECIDE "placement.decide"
#define TN_AUDIT_ACTION_QUOTA_CHANGE "quota.change"

struct tn_tenant_changes {
  struct tn_audit *audit;
  const char *cluster;    /* --cluster-name (NULL: "local") */
  const json_t *tenant;   /* the Tenant object (name, uid, labels, generation) */
  const char *actor;      /* who asked for this generation, or TN_AUDIT_OPERATOR_ACTOR */
  const char *request_id; /* the reconcile's id (the resourceVersion read) */
  const char *now;        /* RFC 3339: part of the correlation id */
  const char *region;     /* the placement; NULL: not placed (no placement event) */
  const char *isolation;
  const json_t *quotas; /* status.derived.quotas; NULL: unknown (no quota event) */
};

/* Appends what changed (0, 1 or 2 events). *appended (may be NULL) gets how many. Errors: those
 * of the audit trail (the caller retries the reconcile or logs). */
int tn_tenant_record_changes(const struct tn_tenant_changes *c, int *appended, struct tn_error *err);

#endif
