/* controller.h - WebhookSubscriptions to the delivery engine (delivery.h): an informer on the
 * cluster-scoped WebhookSubscriptions, their signing Secrets read from the operator's namespace
 * (again at every resync, so a rotated Secret takes effect within resync_period_s), and their
 * status (conditions Ready, Delivering, DeadLettered; backlog, lastDeliveredSequence,
 * lastError). The cache runs on every replica; the engine only while this replica leads. */
#ifndef TN_WEBHOOKS_CONTROLLER_H
#define TN_WEBHOOKS_CONTROLLER_H

#include <stdbool.h>

#include "util/error.h"

struct tn_kube;
struct tn_metrics;
struct tn_wh_controller;

extern const struct tn_gvr tn_gvr_webhook_subscriptions;

struct tn_wh_controller_config {
  struct tn_kube *kube;       /* borrowed */
  struct tn_metrics *metrics; /* borrowed, may be NULL */
  const char *dsn;            /* the audit trail's PostgreSQL (the outbox lives there); copied */
  const char *pg_ca_file;     /* may be NULL */
  const char *namespace;      /* where the signing Secrets live; NULL: tenancy-system */
  double resync_period_s;     /* 0: 30 */
};

int tn_wh_controller_new(const struct tn_wh_controller_config *cfg, struct tn_wh_controller **out,
                         struct tn_error *err);
int tn_wh_controller_start_cache(struct tn_wh_controller *c, struct tn_error *err);
/* Starts delivering (call when this replica leads). */
int tn_wh_controller_start(struct tn_wh_controller *c, struct tn_error *err);
/* Stops delivering (leadership lost or shutdown): in-flight requests are abandoned, their cursors
 * stay uncommitted. */
void tn_wh_controller_stop(struct tn_wh_controller *c);
void tn_wh_controller_free(struct tn_wh_controller *c);

#endif
