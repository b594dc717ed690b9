/* delivery.h - the webhook delivery engine (issue 14): reads the outbox (<schema>.outbox, see
 * docs/webhooks.md) from PostgreSQL in bounded batches and POSTs each event, signed per Standard
 * Webhooks, to every WebhookSubscription that wants it, with libcurl multi (TLS verified against
 * the subscription's caBundle or the system CAs, connections reused).
 *
 * Guarantees: in order per (subscription, tenant), tenants independent; at-least-once: a tenant's
 * cursor (<schema>.webhook_cursors) is committed only after the consumer answered 2xx, so a new
 * leader redelivers at most the batch that was in flight, with the same webhook-id. Retries with
 * exponential backoff and jitter on 5xx, 408, timeouts and connection errors; 429 honours
 * Retry-After; other 4xx are permanent. After maxAttempts (or a permanent answer) the event goes
 * to <schema>.webhook_dead_letters; with ordering PerTenant the tenant's later events wait until
 * the dead letter is requeued or purged, with BestEffort they go on.
 *
 * One thread; only the leader runs it. Its state lives in PostgreSQL, never the backlog in
 * memory: at most `batch` rows are held at a time. */
#ifndef TN_WEBHOOKS_DELIVERY_H
#define TN_WEBHOOKS_DELIVERY_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"
#include "webhooks/sign.h"

struct tn_metrics;
struct tn_delivery; /* opaque */

/* A subscription as the engine uses it: built from a WebhookSubscription and its Secret by
 * tn_wh_subscription_parse. Owned by whoever holds it; tn_wh_subscription_free frees it. */
struct tn_wh_subscription {
  char *name;
  char *url;
  char *ca_pem;            /* decoded caBundle, NULL: the system CAs */
  json_t *event_types;     /* array of strings; NULL or empty: all */
  json_t *tenant_selector; /* a label selector (matchLabels, matchExpressions); NULL: all */
  struct tn_wh_keys keys;
  int max_attempts;
  int timeout_s;
  bool paused;
  bool best_effort; /* ordering: BestEffort */
  bool insecure_loopback;
  long long generation;
};

/* Builds a subscription from a WebhookSubscription object (the API server's JSON) and the value
 * of its Secret key. Checks again what the CRD's schema checks (https, or http to a loopback
 * address with allowInsecureLoopback) and that caBundle is base64 PEM. The error message never
 * contains the secret. Errors: TN_EINVALID, -ENOMEM. */
int tn_wh_subscription_parse(const json_t *obj, const char *secret, size_t secret_len,
                             struct tn_wh_subscription **out, struct tn_error *err);
void tn_wh_subscription_free(struct tn_wh_subscription *s);
/* Whether a label selector (Kubernetes LabelSelector JSON; NULL selects everything) selects
 * labels (a JSON object). */
bool tn_wh_selector_matches(const json_t *selector, const json_t *labels);

/* What a subscription's status says. */
struct tn_wh_status {
  bool known;                   /* the engine has the subscription */
  bool delivering;              /* events are being sent (or retried) right now */
  bool db_ok;                   /* the outbox was read at the last attempt */
  long long backlog;            /* events past the cursors (approximate while delivering) */
  double oldest_age_s;          /* of the oldest event in the backlog; 0 when none */
  long long last_delivered_seq; /* outbox seq of the last event a consumer accepted; 0: none */
  long long dead_letters;       /* rows in the dead-letter table for it */
  char last_error[256];         /* the last failure ("" when none); never a secret */
  unsigned long long delivered; /* since start */
  unsigned long long attempts;  /* since start */
};

struct tn_delivery_config {
  const char *dsn;            /* libpq DSN (a secret: never logged); sslmode verify-full unless it says */
  const char *ca_file;        /* PostgreSQL's CA unless the DSN names one; may be NULL */
  const char *schema;         /* NULL: "tenancy" */
  struct tn_metrics *metrics; /* may be NULL */
  int batch;                  /* rows held at most (0: 1000) */
  int per_tenant;             /* rows held per tenant at most (0: 16) */
  int max_in_flight;          /* concurrent requests (0: 64) */
  double poll_s;              /* outbox poll interval when idle (0: 0.1) */
  double backoff_base_s;      /* first retry delay (0: 1) */
  double backoff_max_s;       /* cap (0: 300) */
  double status_period_s;     /* how often backlog/DLQ are counted and on_status called (0: 2) */
  /* Called on the engine's thread after each status computation (may be NULL). */
  void (*on_status)(void *ud, const char *subscription, const struct tn_wh_status *st);
  void *ud;
};

int tn_delivery_new(const struct tn_delivery_config *cfg, struct tn_delivery **out, struct tn_error *err);
/* Adds or replaces a subscription (takes ownership of s; its cursors stay). */
void tn_delivery_put(struct tn_delivery *d, struct tn_wh_subscription *s);
/* Removes a subscription (its cursors and dead letters stay in PostgreSQL). */
void tn_delivery_remove(struct tn_delivery *d, const char *name);
/* Starts the delivery thread (idempotent). */
int tn_delivery_start(struct tn_delivery *d, struct tn_error *err);
/* Stops the thread: requests in flight are abandoned (their cursors are not committed, so the
 * next leader sends them again). */
void tn_delivery_stop(struct tn_delivery *d);
/* The last computed status of a subscription. */
void tn_delivery_status(struct tn_delivery *d, const char *name, struct tn_wh_status *out);
void tn_delivery_free(struct tn_delivery *d);

/* The engine's tables and functions (@S@ = the quoted schema), created by their owner: the audit
 * trail's init creates them with its own; and what the operator's (writer) role is granted
 * (@R@): SELECT on the tables, EXECUTE on webhook_advance, webhook_dead_letter and the
 * administrative functions (requeue, purge, replay), never INSERT, UPDATE or DELETE. */
extern const char tn_delivery_schema_sql[];
extern const char tn_delivery_grant_sql[];

/* Creates the engine's tables and functions unless this version's are there (serialized by an
 * advisory lock); a role that does not own the schema gets an error naming `tenantctl audit
 * init`. conn is a PGconn*. */
int tn_delivery_init_schema(void *conn, const char *schema, struct tn_error *err);

#endif
