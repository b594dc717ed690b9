/* tenant_breakglass.h - the break-glass step of the tenant reconcile: bind the RoleBindings of
 * the tenant's allowed break-glass requests, delete expired, removed and denied ones, audit each
 * grant before it is made, and report grants, revocations, refusals, the status and when to come
 * back (the next expiry). The decisions are tenancy/breakglass.h's; docs/break-glass.md. */
#ifndef TN_CONVERGE_TENANT_BREAKGLASS_H
#define TN_CONVERGE_TENANT_BREAKGLASS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "kube/client.h"
#include "tenancy/breakglass.h"
#include "util/error.h"

/* One audit row to append. Everything borrowed for the call. */
struct tn_breakglass_event {
  const char *action;  /* TN_BREAKGLASS_ACTION_GRANT or TN_BREAKGLASS_ACTION_REVOKE */
  const char *outcome; /* TN_AUDIT_STARTED, TN_AUDIT_SUCCEEDED, TN_AUDIT_FAILED or TN_AUDIT_REFUSED */
  const struct tn_breakglass_report *report; /* what (tn_breakglass_report_details makes the details) */
  const char *error;                         /* TN_AUDIT_FAILED: what failed; else NULL */
};

/* Appends ev to the audit trail (target tenant/<id>, correlation id report->correlation_id).
 * Returns 0 when the row is durable, else a negative code with err set. */
typedef int (*tn_breakglass_audit_fn)(void *ud, const struct tn_breakglass_event *ev, struct tn_error *err);

/* What the step reads; all borrowed. */
struct tn_breakglass_step {
  struct tn_kube *kube;
  const json_t *tenant; /* the Tenant as the reconcile holds it (metadata, spec, status) */
  /* The environments whose namespaces exist and are the tenant's (Active or Suspended tenants
   * with NamespacesReady); n 0 removes every break-glass binding of the tenant (out-of-scope). */
  const char *const *environments;
  size_t n_environments;
  const json_t *policies; /* a JSON array of every TenancyPolicy object (e.g. tn_informer_list) */
  /* The tenant's RoleBindings from a cache (e.g. the owned informer's tenant index; bindings
   * without the break-glass label are ignored), or NULL to list them from the API server. When
   * the cache says something must be written, the step lists them from the API server and plans
   * again before writing anything, so a cache that is behind never causes a duplicate grant. */
  const json_t *observed;
  double now; /* wall-clock seconds since the epoch (tn_wall_now()) */
  /* Audit: NULL for none. A grant's "started" row is appended before its first write and the
   * grant is not made when that fails (retried later); a revocation is never held back by the
   * audit trail (expired access must go): its rows are appended when possible. A refusal is
   * recorded once per denial message (outcome "refused"). */
  tn_breakglass_audit_fn audit;
  void *audit_ud;
};

/* What the step did. Caller-owned; tn_breakglass_result_cleanup it in every case. */
struct tn_breakglass_result {
  struct tn_breakglass_report *granted; /* bound (or rebound: role, subject or expiry changed) */
  size_t n_granted;
  struct tn_breakglass_report
      *revoked; /* bindings removed; why = expired|removed|denied|changed|out-of-scope */
  size_t n_revoked;
  struct tn_breakglass_report *denied; /* newly refused (why = the message), reported once */
  size_t n_denied;
  /* status.breakGlass to write (new reference): [{id, state, message, expiresAt, firstSeenAt,
   * namespaces}]; an empty array means remove the field. NULL when the step could not decide
   * (the break-glass bindings could not be listed, out of memory): keep what the status holds. */
  json_t *status;
  double requeue_after_s; /* > 0: reconcile again after this long (the next expiry) */
  bool retry;             /* something transient failed: retry with backoff */
  int writes;             /* Kubernetes writes made */
  char problem[768];      /* the first failure, for logs and events; "" when none */
};
void tn_breakglass_result_cleanup(struct tn_breakglass_result *r); /* accepts NULL; leaves it zeroed */

/* Runs the step (see tn_breakglass_plan for the decisions). Fills *out in every case. Returns 0
 * when the tenant's break-glass bindings are as decided (zero writes when nothing changed), or
 * the first error (out->retry says whether retrying may help; a RoleBinding of the same name that
 * is not the operator's leaves the request Pending without retry). */
int tn_tenant_breakglass_reconcile(const struct tn_breakglass_step *in, struct tn_breakglass_result *out,
                                   struct tn_error *err);

#endif
