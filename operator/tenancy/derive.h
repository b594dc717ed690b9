/* derive.h - what a Plan means for a tenant: status.derived (quotas, rate limits, feature
 * flags) and the default container resources of the tenant's LimitRange. Pure. */
#ifndef TN_TENANCY_DERIVE_H
#define TN_TENANCY_DERIVE_H

#include <jansson.h>

#include "tenancy/tenant.h"
#include "util/error.h"

/* Builds status.derived for a tenant on plan `plan_name` (borrowed; the tenant's spec.plan).
 * plan is the parsed Plan of that name (borrowed), or NULL when no such Plan exists: then
 * returns TN_ENOTFOUND with a message naming the plan and how to fix it. On success returns 0
 * and *out is a new object the caller json_decref()s:
 *   {"quotas": {"cpu": "4", "memory": "8Gi", "storage": "50Gi", "pods": 50, "services": 10,
 *               "connections": 20, "eventsPerDay": 100000},
 *    "rateLimits": {"requestsPerSecond": 50, "burst": 100,
 *                   "endpoints": {"list": {"requestsPerSecond": 5, "burst": 10}}},
 *    "features": {"auditExport": false, "sso": true}}
 * connections and eventsPerDay appear only when the plan sets them, rateLimits only when the
 * plan has them (plan->rate_limits: the plan's values with any permitted Tenant
 * spec.rateLimitOverrides already applied, see tn_rate_limits_apply_overrides), endpoints only
 * for the endpoints that have their own; features is always present (maybe empty). Quantities keep the plan's
 * text. */
int tn_derive_status(const char *plan_name, const struct tn_plan *plan, json_t **out, struct tn_error *err);

/* Default resources of a container in a tenant namespace (LimitRange type Container), as
 * canonical quantity strings. With P = max(pods, 1) and the plan's cpu C and memory M:
 *   cpu:    defaultRequest = C/P (at least 10m, at most C), default = min(2 x request, C), max = C
 *   memory: defaultRequest = M/P rounded down to Mi (at least 16Mi, at most M),
 *           default = min(2 x request, M), max = M
 * so a tenant that fills its pod quota with defaulted pods fits its CPU and memory quota, and no
 * single container can ask for more than the whole quota. */
struct tn_container_defaults {
  char request_cpu[32], limit_cpu[32], max_cpu[32];
  char request_memory[32], limit_memory[32], max_memory[32];
};
void tn_derive_container_defaults(const struct tn_plan *plan, struct tn_container_defaults *out);

/* One environment's share of a plan's cpu, memory, storage, pods and services (what its
 * ResourceQuota and LimitRange enforce).
 *  - scope Environment: every environment gets the plan's values, text as written.
 *  - scope Tenant: the plan's values are split across the n_envs environments so that the shares
 *    add up exactly to the plan: each gets floor(value / n_envs) and the first environment (index
 *    0, spec.environments[0]) also gets the remainder. cpu is split in millicores, memory and
 *    storage in bytes (a fraction of a byte is dropped), pods and services as counts (so 5 pods
 *    over 2 environments are 3 + 2; with fewer pods than environments the last ones get 0).
 * Quantities are canonical ("1500m", "4Gi", "3221225472"). n_envs 0 is taken as 1. */
struct tn_quota_share {
  char cpu[32], memory[32], storage[32];
  int64_t cpu_milli, memory_bytes, storage_bytes, pods, services;
};
void tn_quota_share(const struct tn_quotas *q, enum tn_quota_scope scope, size_t n_envs, size_t index,
                    struct tn_quota_share *out);

#endif
