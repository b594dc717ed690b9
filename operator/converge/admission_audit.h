/* admission_audit.h - denied Tenant requests in the audit trail: the admission webhook's on_denied
 * hook (admission.h) queues a `refused` row, and a thread of its own appends it, so a review is
 * never slowed by PostgreSQL (docs/history.md, "Refused requests"). */
#ifndef TN_CONVERGE_ADMISSION_AUDIT_H
#define TN_CONVERGE_ADMISSION_AUDIT_H

#include "audit/audit.h"
#include "converge/admission.h"
#include "util/error.h"

/* Bounds: rows waiting at most (more are dropped and counted), the longest a row waits for
 * PostgreSQL before it is dropped, and the rate of rows accepted (a token bucket: the webhook
 * port takes reviews from whoever reaches it, so a flood must not grow the trail without end). */
#define TN_ADMISSION_AUDIT_QUEUE 512
#define TN_ADMISSION_AUDIT_MAX_AGE_S 600.0
#define TN_ADMISSION_AUDIT_RATE 20.0
#define TN_ADMISSION_AUDIT_BURST 200.0

struct tn_admission_audit; /* opaque */

/* Starts the writer thread. audit is taken over (closed by tn_admission_audit_free): give it a
 * handle of its own, without the leader's fence (every replica serves the webhook, and a denial
 * is a fact whoever served it). Returns 0, -ENOMEM or an error from pthread_create. */
int tn_admission_audit_new(struct tn_audit *audit, struct tn_admission_audit **out, struct tn_error *err);
/* The hooks to give the webhook (tn_admission_config.hooks): on_denied queues a row; on_admitted
 * is NULL (accepted changes are audited from the stored Tenant, audit/history.h). */
struct tn_admission_hooks tn_admission_audit_hooks(struct tn_admission_audit *aa);
/* Queues one denial as tn_admission_audit_hooks' on_denied does (for tests). Never blocks on I/O. */
void tn_admission_audit_denied(void *ud, const struct tn_admission_record *rec);
/* Rows written, dropped (queue full, rate, too old) so far. */
void tn_admission_audit_counts(struct tn_admission_audit *aa, long long *written, long long *dropped);
/* Waits up to timeout_s for the rows queued so far to be written or dropped, stops the thread,
 * closes the audit handle, frees. Accepts NULL. Call after the webhook is stopped. */
void tn_admission_audit_free(struct tn_admission_audit *aa, double timeout_s);

#endif
