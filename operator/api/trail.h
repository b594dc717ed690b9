/* trail.h - the read API's tenant history and audit timeline: GET /api/v1/tenants/{id}/history
 * (the recorded versions of the tenant's spec, newest first, each with its field-level diff from
 * the version before it) and GET /api/v1/tenants/{id}/audit (the audit trail's rows for
 * tenant/{id}, newest first), both paged, read from the operator's PostgreSQL (tenancy.
 * tenant_versions and tenancy.audit_events) through a small bounded pool of read-only
 * connections. readapi.c authorizes the caller exactly as for GET /api/v1/tenants/{id}, then
 * calls tn_trail_serve, which defers the query to the HTTP server's job threads (never on a
 * service thread). See docs/read-api.md. */
#ifndef TN_API_TRAIL_H
#define TN_API_TRAIL_H

#include <jansson.h>

#include "util/error.h"

struct tn_http_request;
struct tn_http_response;

#define TN_TRAIL_DEFAULT_LIMIT 20
#define TN_TRAIL_MAX_LIMIT 100
#define TN_TRAIL_DEFAULT_CONNECTIONS 2
#define TN_TRAIL_MAX_CONNECTIONS 16
#define TN_TRAIL_ACQUIRE_TIMEOUT_S 5 /* waiting for a free connection; then 503 */

struct tn_trail_config {
  const char *dsn;     /* libpq DSN (a secret: never logged, never in an answer); NULL/"": no trail */
  const char *ca_file; /* the server's CA unless the DSN names one (tn_audit_options.ca_file) */
  const char *schema;  /* NULL: "tenancy" */
  int connections;     /* the pool's size; 0: TN_TRAIL_DEFAULT_CONNECTIONS */
};

struct tn_trail; /* opaque */

/* Prepares the pool (connects lazily, never creates tables). *out is NULL (0 returned) without a
 * DSN. Returns 0, or TN_ECONFIG / -ENOMEM with a message in err (which never holds the DSN). */
int tn_trail_new(const struct tn_trail_config *cfg, struct tn_trail **out, struct tn_error *err);
/* Closes the connections. No call may be in progress (free the HTTP server first). NULL ok. */
void tn_trail_free(struct tn_trail *t);

/* Answers GET .../tenants/{id}/{what} (what: "history" or "audit") for an authorized caller
 * of the tenant as cached now, whose metadata.uid is uid (the history shows only that uid's
 * versions: an earlier tenant of the same name is not the caller's to read; NULL: any):
 * checks the query (limit, continue) on the calling thread and defers the database work with
 * tn_http_defer. t NULL: 501 (the operator has no --pg-dsn). Returns what a handler returns. */
int tn_trail_serve(struct tn_trail *t, const struct tn_http_request *req, struct tn_http_response *resp,
                   const char *id, const char *uid, const char *what);

/* ---- pure parts (unit-tested) ------------------------------------------------------------- */

/* The history page from rows (newest first, as tenant_versions rows with the columns tenant,
 * uid, generation, at, actor, correlation_id, spec (text); at most limit + 1: the extra one is
 * only the predecessor of the page's oldest and says there is more): a new TenantHistory object
 * {apiVersion, kind, tenant, items: [{uid, generation, at, actor, correlationId,
 * previousGeneration (null for a first version), changes: ["~ spec.plan: ..."], spec}],
 * metadata: {continue?}}. NULL when out of memory. */
json_t *tn_trail_history_page(const json_t *rows, const char *id, long limit);

/* The history continue token of a row: "<at>_<generation>_<uid>"; parsed back by
 * tn_trail_history_cursor into at[40], gen[24], uid[72]. Returns 0 or -EINVAL. */
int tn_trail_history_cursor(const char *token, char *at, char *gen, char *uid);

/* Removes, recursively, object members whose name suggests a secret (password, secret, token,
 * dsn, credential, privatekey; case-insensitive substring) from v, in place. */
void tn_trail_scrub(json_t *v);

#endif
