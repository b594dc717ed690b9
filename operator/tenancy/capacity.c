/* capacity.c - Region capacity against the quotas of the tenants placed there (see capacity.h). */
#include "tenancy/capacity.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const key_names[TN_CAP_COUNT] = {"cpu", "memory", "storage", "pods"};

const char *tn_capacity_key_name(enum tn_capacity_key k) {
  return (unsigned)k < TN_CAP_COUNT ? key_names[k] : "?";
}

/* A quantity written as a string or an integer; 0 or TN_EINVALID. */
static int quantity(const json_t *v, int64_t *milli) {
  char text[64];
  if (json_is_string(v))
    snprintf(text, sizeof text, "%s", json_string_value(v));
  else if (json_is_integer(v))
    snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  else
    return TN_EINVALID;
  return tn_quantity_parse(text, milli);
}

int tn_capacity_parse(const json_t *region, struct tn_capacity *out, struct tn_error *err) {
  memset(out, 0, sizeof *out);
  const json_t *cap = json_object_get(json_object_get(region, "spec"), "capacity");
  if (!cap)
    return 0;
  for (int k = 0; k < TN_CAP_COUNT; k++) {
    const json_t *v = json_object_get(cap, key_names[k]);
    if (!v)
      continue;
    if (quantity(v, &out->milli[k]))
      return tn_error_set(err, TN_EINVALID, "spec.capacity.%s is not a quantity", key_names[k]);
    out->set[k] = true;
  }
  return 0;
}

static int64_t sat_add(int64_t a, int64_t b) { return a > INT64_MAX - b ? INT64_MAX : a + b; }

static int64_t sat_mul(int64_t a, size_t n) {
  if (a == 0 || n == 0)
    return 0;
  return (uint64_t)a > (uint64_t)INT64_MAX / n ? INT64_MAX : a * (int64_t)n;
}

static void add(struct tn_capacity *use, enum tn_capacity_key k, int64_t milli, size_t n) {
  use->set[k] = true;
  use->milli[k] = sat_add(use->milli[k], sat_mul(milli, n));
}

void tn_capacity_add_quotas(struct tn_capacity *use, const struct tn_quotas *q, size_t n_env) {
  add(use, TN_CAP_CPU, q->cpu_milli, n_env);
  add(use, TN_CAP_MEMORY, q->memory_milli, n_env);
  add(use, TN_CAP_STORAGE, q->storage_milli, n_env);
  add(use, TN_CAP_PODS, sat_mul(q->pods, 1000), n_env);
}

bool tn_capacity_add_tenant(struct tn_capacity *use, const json_t *tenant, const char *region) {
  const json_t *st = json_object_get(tenant, "status");
  const char *where = json_string_value(json_object_get(json_object_get(st, "placement"), "region"));
  const char *state = json_string_value(json_object_get(st, "state"));
  size_t n_env = json_array_size(json_object_get(st, "namespaces"));
  if (!region || !where || strcmp(where, region) != 0 || !state || n_env == 0)
    return false;
  if (strcmp(state, "Active") != 0 && strcmp(state, "Suspended") != 0 && strcmp(state, "Archived") != 0)
    return false;
  const json_t *q = json_object_get(json_object_get(st, "derived"), "quotas");
  if (!q)
    return false;
  /* A Plan with quotaScope Tenant splits its quotas across the namespaces: counted once. */
  const char *scope = json_string_value(json_object_get(json_object_get(st, "derived"), "quotaScope"));
  if (scope && strcmp(scope, "Tenant") == 0)
    n_env = 1;
  for (int k = 0; k < TN_CAP_COUNT; k++) {
    int64_t milli = 0;
    if (quantity(json_object_get(q, key_names[k]), &milli))
      continue;
    add(use, (enum tn_capacity_key)k, milli, n_env);
  }
  return true;
}

/* Formats thousandths of a unit for people: "2", "1.5", "500m" for cpu; bytes as Gi/Mi/Ki when
 * exact; whole pods. */
static void format(enum tn_capacity_key k, int64_t milli, char *out, size_t n) {
  if (k == TN_CAP_CPU) {
    if (milli % 1000 == 0)
      snprintf(out, n, "%" PRId64, milli / 1000);
    else
      snprintf(out, n, "%" PRId64 "m", milli);
    return;
  }
  int64_t whole = milli / 1000 + (milli % 1000 != 0);
  if (k == TN_CAP_PODS) {
    snprintf(out, n, "%" PRId64, whole);
    return;
  }
  static const char *const sfx[] = {"Ti", "Gi", "Mi", "Ki"};
  static const int shift[] = {40, 30, 20, 10};
  for (int i = 0; i < 4; i++)
    if (whole > 0 && whole % ((int64_t)1 << shift[i]) == 0) {
      snprintf(out, n, "%" PRId64 "%s", whole >> shift[i], sfx[i]);
      return;
    }
  snprintf(out, n, "%" PRId64, whole);
}

int tn_capacity_check(const char *region, const struct tn_capacity *cap, const struct tn_capacity *used,
                      const struct tn_capacity *demand, struct tn_error *err) {
  char what[512] = "";
  size_t len = 0;
  for (int k = 0; k < TN_CAP_COUNT; k++) {
    if (!cap->set[k] || !demand->set[k])
      continue;
    int64_t u = used->set[k] ? used->milli[k] : 0;
    if (sat_add(u, demand->milli[k]) <= cap->milli[k])
      continue;
    char need[32], freeb[32], total[32];
    format((enum tn_capacity_key)k, demand->milli[k], need, sizeof need);
    format((enum tn_capacity_key)k, u >= cap->milli[k] ? 0 : cap->milli[k] - u, freeb, sizeof freeb);
    format((enum tn_capacity_key)k, cap->milli[k], total, sizeof total);
    int w = snprintf(what + len, sizeof what - len, "%s%s needs %s but %s of %s are free", len ? ", " : "",
                     key_names[k], need, freeb, total);
    if (w > 0 && (size_t)w < sizeof what - len)
      len += (size_t)w;
  }
  if (!len)
    return 0;
  tn_error_set(err, TN_EINVALID,
               "region %s cannot take the tenant's quotas: %s; raise the Region's spec.capacity, choose a "
               "smaller Plan or fewer environments, or place the tenant in another region",
               region ? region : "", what);
  if (err)
    snprintf(err->reason, sizeof err->reason, "%s", TN_REASON_CAPACITY_EXCEEDED);
  return TN_EINVALID;
}
