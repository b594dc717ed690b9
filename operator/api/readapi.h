/* readapi.h - the read API for integrations: Tenants from the informer caches over HTTPS, with
 * Kubernetes authentication (TokenReview) and authorization (SubjectAccessReview), per-tenant
 * rate limits, RFC 9457 problem details and an OpenAPI 3 description. See docs/read-api.md. */
#ifndef TN_API_READAPI_H
#define TN_API_READAPI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

struct tn_kube;
struct tn_informer;
struct tn_metrics;

#define TN_READAPI_DEFAULT_ADDRESS ":8443"
#define TN_READAPI_DEFAULT_LIMIT 100 /* items in a page without ?limit */
#define TN_READAPI_MAX_LIMIT 1000    /* the largest ?limit */

struct tn_readapi_config {
  const char *bind_address;         /* "host:port", ":port"; "0" disables (tn_readapi_new gives NULL) */
  const char *cert_file, *key_file; /* the serving certificate (PEM); required; re-read when changed */
  struct tn_kube *kube;             /* borrowed: TokenReview, SubjectAccessReview, the events informer */
  struct tn_informer *tenants;      /* borrowed: the Tenant cache (manager's), with the externalId index */
  /* Where Tenant Events live (the recorder writes a cluster-scoped object's Events into
   * "default"); NULL: "default". "-": no events cache (GET .../events answers 501). */
  const char *events_namespace;
  struct tn_metrics *metrics;    /* borrowed, may be NULL */
  double auth_cache_ttl_s;       /* TokenReview and SubjectAccessReview answers are kept this long; 0: 10 */
  size_t auth_cache_size;        /* slots of each cache (bounded memory); 0: 4096 */
  size_t limiter_keys;           /* token buckets held at most; 0: 65536 */
  double cert_reload_interval_s; /* how often the certificate files are looked at; 0: 10; < 0: never */
  double token_reviews_per_s; /* TokenReviews of uncached tokens, all callers together; 0: 100 (burst 2x) */
  /* The audit database (tenancy.tenant_versions, tenancy.audit_events) for GET
   * .../tenants/{id}/history and .../audit: libpq DSN (NULL or "": those answer 501), its CA, and
   * the connections at most (0: 2). See operator/api/trail.h. */
  const char *pg_dsn, *pg_ca_file;
  int pg_connections;
  int workers; /* service threads (one libwebsockets context each, one port); 0: 1; at most 8 */
};

struct tn_readapi; /* opaque */

/* Prepares the server (nothing bound yet). *out is NULL (and 0 returned) when the address is "0".
 * Strings are copied. Returns 0, or TN_ECONFIG / -ENOMEM with a message in err. */
int tn_readapi_new(const struct tn_readapi_config *cfg, struct tn_readapi **out, struct tn_error *err);
/* Starts the events informer and binds the listener. Returns 0 or an error. Accepts NULL. */
int tn_readapi_start(struct tn_readapi *api, struct tn_error *err);
/* The bound port after start, else 0. */
int tn_readapi_port(const struct tn_readapi *api);
/* Stops serving and frees. Accepts NULL. */
void tn_readapi_free(struct tn_readapi *api);
/* The default of workers: the CPUs this process may run on (its affinity mask), 1 to 8. */
int tn_readapi_default_workers(void);

/* ---- pure parts (unit-tested) ------------------------------------------------------------- */

/* The continue token of a page that ended at tenant `after` under the filter fingerprint fp:
 * base64url (no padding) of {"v":1,"after":...,"f":...}. malloc'd; NULL when out of memory. */
char *tn_readapi_token_encode(const char *after, const char *fp);
/* Decodes a token into after (malloc'd, *after) after checking its version and that its
 * fingerprint is fp. Returns 0, or TN_EINVALID with the reason in err. */
int tn_readapi_token_decode(const char *token, const char *fp, char **after, struct tn_error *err);

/* Whether tenant (a cached Tenant) passes the filters (NULL or "" = any): plan = spec.plan;
 * region = status.placement.region; state = status.state, else spec.state; isolation =
 * status.placement.isolation, else spec.isolation (all exact); q = case-insensitive substring
 * of metadata.name, spec.displayName or a value of spec.externalIds. */
struct tn_readapi_filter {
  const char *plan, *region, *state, *isolation, *q;
};
bool tn_readapi_matches(const json_t *tenant, const struct tn_readapi_filter *f);

/* Whether one of groups (a JSON array of strings) is bound in tenant's
 * spec.identity.groupBindings[].group. */
bool tn_readapi_group_bound(const json_t *tenant, const json_t *groups);

/* The OpenAPI 3 document of the API (a new reference). */
json_t *tn_readapi_openapi(void);

#endif
