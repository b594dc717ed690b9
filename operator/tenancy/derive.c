/* derive.c - a Plan's quotas, rate limits, feature flags and container defaults (see derive.h). */
#include "tenancy/derive.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

static int set_new(json_t *obj, const char *key, json_t *v) {
  return v ? json_object_set_new(obj, key, v) : -1;
}

int tn_derive_status(const char *plan_name, const struct tn_plan *plan, json_t **out, struct tn_error *err) {
  json_t *d = NULL, *q = NULL, *rl = NULL, *f = NULL;
  int rc = 0;
  *out = NULL;
  if (!plan)
    return tn_error_set(
        err, TN_ENOTFOUND,
        "plan \"%.63s\" not found: create a Plan named \"%.63s\", or set spec.plan to an existing "
        "Plan (kubectl get plans)",
        plan_name ? plan_name : "", plan_name ? plan_name : "");
  const struct tn_quotas *qu = &plan->quotas;
  if (!(d = json_object()) || !(q = json_object()) || !(f = json_object()))
    goto nomem;
  if (set_new(q, "cpu", json_string(qu->cpu)) || set_new(q, "memory", json_string(qu->memory)) ||
      set_new(q, "storage", json_string(qu->storage)) || set_new(q, "pods", json_integer(qu->pods)) ||
      set_new(q, "services", json_integer(qu->services)))
    goto nomem;
  if (qu->connections >= 0 && set_new(q, "connections", json_integer(qu->connections)))
    goto nomem;
  if (qu->events_per_day >= 0 && set_new(q, "eventsPerDay", json_integer(qu->events_per_day)))
    goto nomem;
  for (size_t i = 0; i < plan->n_features; i++)
    if (set_new(f, plan->features[i].name, json_boolean(plan->features[i].enabled)))
      goto nomem;
  if (tn_rate_limits_to_json(&plan->rate_limits, &rl)) /* plan values, overrides applied */
    goto nomem;
  if (json_object_set_new(d, "quotas", q)) {
    q = NULL;
    goto nomem;
  }
  q = NULL;
  /* Only when it is not the default, so a tenant of an Environment-scoped plan keeps its status. */
  if (plan->quota_scope == TN_QUOTA_SCOPE_TENANT &&
      json_object_set_new(d, "quotaScope", json_string(tn_quota_scope_name(plan->quota_scope))))
    goto nomem;
  if (rl) {
    int r = json_object_set_new(d, "rateLimits", rl);
    rl = NULL;
    if (r)
      goto nomem;
  }
  int r = json_object_set_new(d, "features", f);
  f = NULL;
  if (r)
    goto nomem;
  *out = d;
  return 0;
nomem:
  rc = tn_error_set(err, -ENOMEM, "out of memory");
  json_decref(d);
  json_decref(q);
  json_decref(rl);
  json_decref(f);
  return rc;
}

static void format_cpu(char *dst, size_t n, int64_t milli) {
  if (milli % 1000 == 0)
    snprintf(dst, n, "%" PRId64, milli / 1000);
  else
    snprintf(dst, n, "%" PRId64 "m", milli);
}

static void format_bytes(char *dst, size_t n, int64_t bytes) {
  static const char *const sfx[] = {"Gi", "Mi", "Ki"};
  static const int shift[] = {30, 20, 10};
  for (int i = 0; i < 3; i++)
    if (bytes > 0 && bytes % ((int64_t)1 << shift[i]) == 0) {
      snprintf(dst, n, "%" PRId64 "%s", bytes >> shift[i], sfx[i]);
      return;
    }
  snprintf(dst, n, "%" PRId64, bytes);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

void tn_derive_container_defaults(const struct tn_plan *plan, struct tn_container_defaults *out) {
  const struct tn_quotas *q = &plan->quotas;
  int64_t pods = max64(q->pods, 1);

  int64_t cpu = q->cpu_milli;
  int64_t cpu_req = min64(max64(cpu / pods, 10), cpu);
  int64_t cpu_lim = min64(cpu_req * 2, cpu);
  format_cpu(out->request_cpu, sizeof out->request_cpu, cpu_req);
  format_cpu(out->limit_cpu, sizeof out->limit_cpu, cpu_lim);
  format_cpu(out->max_cpu, sizeof out->max_cpu, cpu);

  const int64_t mi = (int64_t)1 << 20;
  int64_t mem = q->memory_milli / 1000;
  int64_t mem_req = min64(max64(mem / pods / mi * mi, 16 * mi), mem);
  int64_t mem_lim = min64(mem_req * 2, mem);
  format_bytes(out->request_memory, sizeof out->request_memory, mem_req);
  format_bytes(out->limit_memory, sizeof out->limit_memory, mem_lim);
  format_bytes(out->max_memory, sizeof out->max_memory, mem);
}

/* floor(total / n), plus the remainder for index 0. */
static int64_t share_of(int64_t total, size_t n, size_t index) {
  int64_t base = total / (int64_t)n;
  return index == 0 ? total - base * ((int64_t)n - 1) : base;
}

void tn_quota_share(const struct tn_quotas *q, enum tn_quota_scope scope, size_t n_envs, size_t index,
                    struct tn_quota_share *out) {
  size_t n = n_envs ? n_envs : 1;
  if (scope != TN_QUOTA_SCOPE_TENANT)
    n = 1, index = 0;
  out->cpu_milli = share_of(q->cpu_milli, n, index);
  out->memory_bytes = share_of(q->memory_milli / 1000, n, index);
  out->storage_bytes = share_of(q->storage_milli / 1000, n, index);
  out->pods = share_of(q->pods, n, index);
  out->services = share_of(q->services, n, index);
  if (n == 1) { /* the plan's own text: objects stay byte-identical to what was written before */
    snprintf(out->cpu, sizeof out->cpu, "%s", q->cpu);
    snprintf(out->memory, sizeof out->memory, "%s", q->memory);
    snprintf(out->storage, sizeof out->storage, "%s", q->storage);
    return;
  }
  format_cpu(out->cpu, sizeof out->cpu, out->cpu_milli);
  format_bytes(out->memory, sizeof out->memory, out->memory_bytes);
  format_bytes(out->storage, sizeof out->storage, out->storage_bytes);
}
