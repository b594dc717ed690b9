/* ratelimits.h - request rate limits of the read API as plain data: a Plan's spec.rateLimits
 * (a default and per-endpoint token buckets), a Tenant's spec.rateLimitOverrides, and the
 * effective values written to status.derived.rateLimits. Pure: no network, no clock. */
#ifndef TN_TENANCY_RATELIMITS_H
#define TN_TENANCY_RATELIMITS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

/* The read API's endpoints that have their own limits. */
enum tn_endpoint {
  TN_ENDPOINT_GET = 0,        /* GET /api/v1/tenants/{id} */
  TN_ENDPOINT_LIST,           /* GET /api/v1/tenants?... */
  TN_ENDPOINT_BY_EXTERNAL_ID, /* GET /api/v1/tenants/by-external-id/{system}/{id} */
  TN_ENDPOINT_PLACEMENT,      /* GET /api/v1/tenants/{id}/placement */
  TN_ENDPOINT_EVENTS,         /* GET /api/v1/tenants/{id}/events */
};
#define TN_ENDPOINT_COUNT 5

/* "get", "list", "byExternalId", "placement", "events"; "?" out of range. Static. */
const char *tn_endpoint_name(enum tn_endpoint e);
/* The exact name to its value; 0 or TN_EINVALID. */
int tn_endpoint_parse(const char *s, enum tn_endpoint *out);

/* What a rate-limit override can replace, as bits 1u << key: the default bucket
 * (TN_RATE_LIMIT_KEY_DEFAULT, "default": spec.rateLimitOverrides.requestsPerSecond and burst)
 * and each endpoint's (1 + enum tn_endpoint, named as the endpoint). TenancyPolicy
 * spec.rateLimitOverrides lists these names. */
#define TN_RATE_LIMIT_KEY_DEFAULT 0u
#define TN_RATE_LIMIT_KEY_COUNT (1 + TN_ENDPOINT_COUNT)
#define TN_RATE_LIMIT_KEY_ENDPOINT(e) (1u + (unsigned)(e))
/* "default", then the endpoint names; "?" out of range. Static. */
const char *tn_rate_limit_key_name(unsigned key);
/* The exact name to its key; 0 or TN_EINVALID. */
int tn_rate_limit_key_parse(const char *s, unsigned *out);

/* One token bucket. */
struct tn_rate {
  bool set;
  int64_t requests_per_second; /* >= 0 */
  int64_t burst;               /* >= requests_per_second */
};

/* A default bucket and per-endpoint ones; an endpoint without its own uses the default, and
 * with neither it is not limited. Plain data (no pointers): copy it freely. */
struct tn_rate_limits {
  struct tn_rate all;
  struct tn_rate endpoints[TN_ENDPOINT_COUNT];
};

/* Parses rl (borrowed; NULL or JSON null: nothing set, returns 0) written at `field` (e.g.
 * "spec.rateLimits") into *out:
 *   {requestsPerSecond, burst, endpoints: {get: {requestsPerSecond, burst}, list: ..., ...}}
 * require_default: requestsPerSecond and burst are required (a Plan); otherwise they are
 * optional but come together (an override). Each endpoint entry needs both. burst must be at
 * least requestsPerSecond. Returns 0, or TN_EINVALID with err naming the field, e.g.
 * "spec.rateLimits.endpoints.list.burst: must be at least ...". */
int tn_rate_limits_parse(const json_t *rl, const char *field, bool require_default,
                         struct tn_rate_limits *out, struct tn_error *err);

/* The keys set in rl, as bits 1u << TN_RATE_LIMIT_KEY_*. */
unsigned tn_rate_limits_keys(const struct tn_rate_limits *rl);

/* Replaces the buckets of eff with those of tenant_obj's (borrowed) spec.rateLimitOverrides
 * whose key is in `permitted` (bits); the rest of eff stays. An override that does not parse
 * changes nothing (the CRD schema and the admission webhook refuse it first). Returns how many
 * buckets were replaced. */
int tn_rate_limits_apply_overrides(struct tn_rate_limits *eff, const json_t *tenant_obj, unsigned permitted);

/* status.derived.rateLimits for rl: {requestsPerSecond, burst} when the default is set, and
 * endpoints.<name>: {requestsPerSecond, burst} for each endpoint set. *out is NULL when nothing
 * is set (not limited), else a new object the caller json_decref()s. Returns 0 or -ENOMEM. */
int tn_rate_limits_to_json(const struct tn_rate_limits *rl, json_t **out);

#endif
