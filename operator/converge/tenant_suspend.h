/* tenant_suspend.h - the workload step of Suspended and Archived: with TenancyPolicy
 * spec.suspension.workloads ScaleToZero (and always while Archived with the data retained) the
 * tenant's Deployments and StatefulSets are scaled to zero, the replicas each had kept in its
 * annotation tenancy.dev/suspended-replicas; on resume or restore each gets them back exactly.
 * Also the purge of an Archived tenant's data when its retention ends (audited). */
#ifndef TN_CONVERGE_TENANT_SUSPEND_H
#define TN_CONVERGE_TENANT_SUSPEND_H

#include <jansson.h>
#include <stdbool.h>

#include "converge/reconciler.h"
#include "tenancy/retention.h"
#include "tenancy/tenant.h"

/* status.scaledWorkloads: how many of the tenant's workloads the operator holds at zero. */
#define TN_STATUS_SCALED_WORKLOADS "scaledWorkloads"

struct tn_workloads_result {
  int scaled;  /* scaled to zero by this pass */
  int resumed; /* given their replicas back by this pass */
  int held;    /* Deployments/StatefulSets carrying the annotation after this pass */
  int writes;
  bool retry; /* a write failed or conflicted: come back */
  char problem[512];
};

/* Whether the workload step has anything to do for a tenant whose reconcile reaches `next`:
 * scaling to zero is asked (*scale_to_zero), or the status says workloads are held at zero. */
bool tn_tenant_workloads_needed(const json_t *tenant_obj, enum tn_state next,
                                const struct tn_lifecycle_rules *rules,
                                const struct tn_archive_schedule *archive, bool *scale_to_zero);

/* scale_to_zero: every Deployment and StatefulSet in the tenant's namespaces with replicas > 0
 * is patched to replicas 0 with its replicas in the annotation (resourceVersion as precondition);
 * otherwise every one with the annotation gets replicas back and loses the annotation (one that
 * was scaled by someone else meanwhile keeps their replicas). Only in the namespaces of t. */
void tn_tenant_workloads_reconcile(struct tn_kube *kube, const struct tn_tenant *t, bool scale_to_zero,
                                   struct tn_workloads_result *out);

/* Writes the "purge" row (outcome succeeded) of an Archived tenant whose objects and database
 * are gone. Returns 0 (or when there is no audit trail) or the audit error: then the purge is not
 * recorded as done and the reconcile retries. */
int tn_archive_purge_audit(struct tn_reconciler *r, const json_t *tenant_obj, const char *request_id,
                           const struct tn_archive_schedule *s, struct tn_error *err);

#endif
