/* admin.h - what `tenantctl events dlq|replay` does to the delivery engine's tables (delivery.h):
 * list, requeue and purge dead letters, and replay a subscription from an outbox sequence. Each
 * change is one SECURITY DEFINER function of the delivery schema (delivery.h) that bumps the
 * subscription's epoch in <schema>.webhook_state, so the running engine drops what it holds and
 * reads the outbox again from the cursors, and appends its "succeeded" audit row (actor,
 * correlation_id; when the audit trail is in the schema) in the same transaction: the
 * operator's role cannot change these tables otherwise. conn is a PGconn*. */
#ifndef TN_WEBHOOKS_ADMIN_H
#define TN_WEBHOOKS_ADMIN_H

#include <jansson.h>

#include "util/error.h"

/* Dead letters of subscription (NULL: every one) as a JSON array of objects {subscription, seq,
 * tenant, tenantSequence, id, type, attempts, lastStatus, lastError, deadAt}. */
int tn_wh_dlq_list(void *conn, const char *schema, const char *subscription, json_t **out,
                   struct tn_error *err);
/* Removes the dead letters (seq 0: all of the subscription's) and moves the tenants' cursors back
 * before them, so they are delivered again (with BestEffort, the later events of those tenants
 * too: consumers dedupe by webhook-id). *n: how many. */
int tn_wh_dlq_requeue(void *conn, const char *schema, const char *subscription, long long seq,
                      const char *actor, const char *correlation_id, long long *n, struct tn_error *err);
/* Removes the dead letters (seq 0: all of the subscription's) for good: the tenants' cursors move
 * past them and their later events flow again. *n: how many. */
int tn_wh_dlq_purge(void *conn, const char *schema, const char *subscription, long long seq,
                    const char *actor, const char *correlation_id, long long *n, struct tn_error *err);
/* Moves the subscription's cursors back so that every outbox event with seq >= from_seq is sent
 * again (same webhook-id). *tenants: how many tenants' cursors moved. */
int tn_wh_replay(void *conn, const char *schema, const char *subscription, long long from_seq,
                 const char *actor, const char *correlation_id, long long *tenants, struct tn_error *err);

#endif
