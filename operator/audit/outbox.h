/* outbox.h - the transactional outbox of lifecycle events (issue 14, docs/events/README.md): a
 * CloudEvent written to <schema>.outbox in the same transaction as the audit row it belongs to,
 * with a gapless per-tenant sequence and a global one, for the delivery side to read. */
#ifndef TN_AUDIT_OUTBOX_H
#define TN_AUDIT_OUTBOX_H

#include <jansson.h>

#include "audit/audit.h"
#include "util/error.h"

/* The objects of the outbox (@S@ = the audit schema), created by the audit trail's init in the
 * same transaction as its own, and the writer role's grants (@R@): the table of /work/OUTBOX.md,
 * the per-tenant counter outbox_tenants, outbox_insert() and audit_append_event(). */
extern const char tn_outbox_schema_sql[];
extern const char tn_outbox_grant_sql[];

/* One event to attach to an audit append (tn_audit_event.outbox). Owned strings. */
struct tn_outbox_event {
  char *tenant; /* the Tenant's metadata.name */
  char *labels; /* its metadata.labels as a JSON object text ("{}" when none) */
  char *event;  /* the CloudEvent without time and tenancysequence: the database sets them (the audit
                 * row's time, the next sequence of the tenant) in the append's transaction */
};

/* Builds the event `event` (a tn_ce_events name) of tenant (the Tenant object, borrowed: name,
 * uid and labels are read) with data (borrowed, NULL: {}; never secrets: refused with
 * TN_EINVALID). cluster NULL: "local". The id is derived from the tenant's uid, the type and the
 * correlation id, so the same event appended again (a retried audit row) is stored once.
 * On success ob is the caller's: tn_outbox_event_cleanup() it. Errors: TN_EINVALID, -ENOMEM. */
int tn_outbox_event_init(struct tn_outbox_event *ob, const char *cluster, const json_t *tenant,
                         const char *event, const char *correlation_id, const char *actor, const json_t *data,
                         struct tn_error *err);
/* Frees ob's strings; accepts a zeroed or cleaned ob. */
void tn_outbox_event_cleanup(struct tn_outbox_event *ob);

/* What tn_outbox_list returns. */
struct tn_outbox_filter {
  const char *tenant;  /* NULL: every tenant */
  const char *type;    /* a full type, or an event name ("activated"); NULL: every type */
  long long after_seq; /* only rows with seq > after_seq */
  long long limit;     /* <= 0: 100 */
};

/* The outbox rows matching f (may be NULL), by seq, as a new JSON array (json_decref it) of
 * {seq, tenant, tenantSeq, id, type, auditId, labels, createdAt, event}. Errors as tn_audit_query. */
int tn_outbox_list(struct tn_audit *a, const struct tn_outbox_filter *f, json_t **rows, struct tn_error *err);

/* The row of CloudEvents id `id` as above into *row (json_decref it); TN_ENOTFOUND when none. */
int tn_outbox_show(struct tn_audit *a, const char *id, json_t **row, struct tn_error *err);

#endif
