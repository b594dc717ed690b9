/* history.h - the tenant history (docs/history.md): every accepted spec of a Tenant the operator
 * sees is kept as a version in <schema>.tenant_versions beside the audit trail (tenant, uid,
 * generation, time, actor, the full spec), and what changed from the previous version is audited
 * one row per area (spec.plan, spec.contacts, ...) in the same transaction. Readers for tenantctl
 * history/diff/rollback, and the field-level diff (pure). */
#ifndef TN_AUDIT_HISTORY_H
#define TN_AUDIT_HISTORY_H

#include <jansson.h>
#include <stdbool.h>

#include "audit/audit.h"
#include "util/buf.h"
#include "util/error.h"

/* Who asked for a generation: written by the MutatingAdmissionPolicy tenancy-operator-actor
 * (docs/security.md); the same name as TN_ANNOTATION_REQUESTED_BY. */
#define TN_HISTORY_ACTOR_ANNOTATION "tenancy.dev/last-requested-by"
/* The actor of a version whose tenant carries no such annotation (the policy not installed). */
#define TN_HISTORY_UNKNOWN_ACTOR "unknown"

struct tn_history_recorded {
  bool recorded;                 /* a new version was written (false: this generation was already) */
  long long previous_generation; /* the version it was compared with; 0 when none (first version) */
  char changed[256];             /* the areas audited, comma-separated ("plan,contacts"), "" if none */
  char correlation_id[37];       /* the id of its audit rows */
};

/* Records tenant (a Tenant object as read from the API server, borrowed) as a version unless its
 * generation is already recorded: one call of <schema>.tenant_version_record(), which inserts the
 * version and appends, when there is an earlier version of the same uid, one audit row (outcome
 * succeeded, actor, generation before/after, correlation id) per changed area. Idempotent: calling
 * again for the same generation writes nothing. The correlation id is derived from the uid and
 * generation (retries share it); request_id is the object's resourceVersion. out may be NULL.
 * Returns 0, TN_EINVALID (no name, uid, generation or spec), or the errors of tn_audit_append
 * (TN_EUNAVAILABLE while PostgreSQL is down: the caller retries later). */
int tn_history_record(struct tn_audit *a, const json_t *tenant, struct tn_history_recorded *out,
                      struct tn_error *err);

/* The same, and (OUTBOX, issue 14) in the same transaction a dev.tenancy.tenant.updated.v1 event
 * in <schema>.outbox when plan, contacts, externalIds, identity or residency changed (outbox.h);
 * cluster names the event's source (NULL: "local"). */
int tn_history_record_event(struct tn_audit *a, const json_t *tenant, const char *cluster,
                            struct tn_history_recorded *out, struct tn_error *err);

/* Whether tenant's generation may not be recorded yet: metadata.generation differs from
 * status.observedGeneration (the operator records a generation before it acts on it, so one it
 * has observed is recorded). Pure; lets the reconciler skip the database on most passes. */
bool tn_history_needs_record(const json_t *tenant);

/* The versions of tenant `name`, oldest first (by time, then generation), as a new JSON array of
 * objects {tenant, uid, generation (integer), at (RFC 3339 UTC), actor, correlationId, spec
 * (object)}. A tenant deleted and created again under the same name has versions under two uids;
 * uid non-NULL keeps only that uid's. */
int tn_history_list(struct tn_audit *a, const char *name, const char *uid, json_t **versions,
                    struct tn_error *err);

/* The uid of the newest version of tenant `name` into uid[64]; TN_ENOTFOUND when it has none. */
int tn_history_latest_uid(struct tn_audit *a, const char *name, char uid[64], struct tn_error *err);

/* Field-level diff of two JSON values (borrowed; NULL reads as absent), one line per leaf that
 * differs, under path prefix (e.g. "spec"), keys in sorted order, arrays index by index:
 *   "~ spec.plan: \"standard\" -> \"premium\""
 *   "+ spec.externalIds.crm: \"0015g\""
 *   "- spec.contacts[1]: {\"email\":\"...\",\"name\":\"Bob\",\"role\":\"billing\"}"
 * Values are compact JSON with sorted keys, so the output is stable. Appends to out; *n_changes
 * (may be NULL) counts the lines. Returns 0 or -ENOMEM. */
int tn_history_diff(const json_t *from, const json_t *to, const char *prefix, struct tn_buf *out,
                    int *n_changes);

/* The top-level keys of two specs that differ, sorted, comma-separated, into out[n] ("" when
 * none). Pure. */
void tn_history_changed_fields(const json_t *from, const json_t *to, char *out, size_t n);

#endif
