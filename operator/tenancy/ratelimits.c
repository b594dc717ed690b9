/* ratelimits.c - Plan rate limits, Tenant rate-limit overrides and their effective values (see
 * ratelimits.h). */
#include "tenancy/ratelimits.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const endpoint_names[TN_ENDPOINT_COUNT] = {"get", "list", "byExternalId", "placement",
                                                              "events"};

const char *tn_endpoint_name(enum tn_endpoint e) {
  return (unsigned)e < TN_ENDPOINT_COUNT ? endpoint_names[e] : "?";
}

int tn_endpoint_parse(const char *s, enum tn_endpoint *out) {
  for (unsigned i = 0; s && i < TN_ENDPOINT_COUNT; i++)
    if (strcmp(s, endpoint_names[i]) == 0) {
      *out = (enum tn_endpoint)i;
      return 0;
    }
  return TN_EINVALID;
}

const char *tn_rate_limit_key_name(unsigned key) {
  if (key == TN_RATE_LIMIT_KEY_DEFAULT)
    return "default";
  return key < TN_RATE_LIMIT_KEY_COUNT ? endpoint_names[key - 1] : "?";
}

int tn_rate_limit_key_parse(const char *s, unsigned *out) {
  enum tn_endpoint e;
  if (s && strcmp(s, "default") == 0) {
    *out = TN_RATE_LIMIT_KEY_DEFAULT;
    return 0;
  }
  if (tn_endpoint_parse(s, &e))
    return TN_EINVALID;
  *out = TN_RATE_LIMIT_KEY_ENDPOINT(e);
  return 0;
}

__attribute__((format(printf, 4, 5))) static int field_error(struct tn_error *err, const char *field,
                                                             const char *reason, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  tn_error_set(err, TN_EINVALID, "%s: %s", field, msg);
  if (err) {
    err->n_causes = 1;
    snprintf(err->causes[0].field, sizeof err->causes[0].field, "%s", field);
    snprintf(err->causes[0].reason, sizeof err->causes[0].reason, "%s", reason);
    snprintf(err->causes[0].message, sizeof err->causes[0].message, "%s", msg);
    snprintf(err->reason, sizeof err->reason, "Invalid");
  }
  return TN_EINVALID;
}

/* o[key] as a count >= 0 at field.key; *present says whether it was there. */
static int get_count(const json_t *o, const char *key, const char *field, int64_t *out, bool *present,
                     struct tn_error *err) {
  const json_t *v = json_object_get(o, key);
  char f[160];
  *present = false;
  if (!v || json_is_null(v))
    return 0;
  snprintf(f, sizeof f, "%s.%s", field, key);
  if (!json_is_integer(v))
    return field_error(err, f, "FieldValueTypeInvalid", "must be an integer");
  if (json_integer_value(v) < 0)
    return field_error(err, f, "FieldValueInvalid", "must not be negative (it is %" JSON_INTEGER_FORMAT ")",
                       json_integer_value(v));
  *out = json_integer_value(v);
  *present = true;
  return 0;
}

/* {requestsPerSecond, burst} of o at field into *r; both required when `required`, else both or
 * neither. */
static int parse_rate(const json_t *o, const char *field, bool required, struct tn_rate *r,
                      struct tn_error *err) {
  bool has_rps, has_burst;
  int rc;
  char f[160];
  memset(r, 0, sizeof *r);
  if ((rc = get_count(o, "requestsPerSecond", field, &r->requests_per_second, &has_rps, err)) ||
      (rc = get_count(o, "burst", field, &r->burst, &has_burst, err)))
    return rc;
  if (!has_rps && !has_burst && !required)
    return 0;
  if (!has_rps || !has_burst) {
    snprintf(f, sizeof f, "%s.%s", field, has_rps ? "burst" : "requestsPerSecond");
    return field_error(err, f, "FieldValueRequired", "is required%s",
                       required ? "" : " with the other of requestsPerSecond and burst");
  }
  if (r->burst < r->requests_per_second) {
    snprintf(f, sizeof f, "%s.burst", field);
    return field_error(err, f, "FieldValueInvalid", "must be at least %s.requestsPerSecond (%" PRId64 ")",
                       field, r->requests_per_second);
  }
  r->set = true;
  return 0;
}

int tn_rate_limits_parse(const json_t *rl, const char *field, bool require_default,
                         struct tn_rate_limits *out, struct tn_error *err) {
  int rc;
  char f[160];
  memset(out, 0, sizeof *out);
  if (!rl || json_is_null(rl))
    return 0;
  if (!json_is_object(rl))
    return field_error(err, field, "FieldValueTypeInvalid", "must be an object");
  if ((rc = parse_rate(rl, field, require_default, &out->all, err)))
    return rc;
  const json_t *eps = json_object_get(rl, "endpoints");
  if (!eps || json_is_null(eps))
    return 0;
  snprintf(f, sizeof f, "%s.endpoints", field);
  if (!json_is_object(eps))
    return field_error(err, f, "FieldValueTypeInvalid", "must be an object");
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)eps, k, v) {
    enum tn_endpoint e;
    char ef[200];
    snprintf(ef, sizeof ef, "%s.%.32s", f, k);
    if (tn_endpoint_parse(k, &e))
      return field_error(err, ef, "FieldValueNotSupported",
                         "\"%.32s\" is not an endpoint: use get, list, byExternalId, placement or events", k);
    if (json_is_null(v))
      continue;
    if (!json_is_object(v))
      return field_error(err, ef, "FieldValueTypeInvalid", "must be an object {requestsPerSecond, burst}");
    if ((rc = parse_rate(v, ef, true, &out->endpoints[e], err)))
      return rc;
  }
  return 0;
}

unsigned tn_rate_limits_keys(const struct tn_rate_limits *rl) {
  unsigned bits = rl->all.set ? 1u << TN_RATE_LIMIT_KEY_DEFAULT : 0;
  for (unsigned e = 0; e < TN_ENDPOINT_COUNT; e++)
    if (rl->endpoints[e].set)
      bits |= 1u << TN_RATE_LIMIT_KEY_ENDPOINT(e);
  return bits;
}

int tn_rate_limits_apply_overrides(struct tn_rate_limits *eff, const json_t *tenant_obj, unsigned permitted) {
  struct tn_rate_limits ov;
  const json_t *spec = json_object_get(tenant_obj, "spec");
  if (tn_rate_limits_parse(json_object_get(spec, "rateLimitOverrides"), "spec.rateLimitOverrides", false, &ov,
                           NULL))
    return 0;
  int n = 0;
  if (ov.all.set && (permitted & (1u << TN_RATE_LIMIT_KEY_DEFAULT))) {
    eff->all = ov.all;
    n++;
  }
  for (unsigned e = 0; e < TN_ENDPOINT_COUNT; e++)
    if (ov.endpoints[e].set && (permitted & (1u << TN_RATE_LIMIT_KEY_ENDPOINT(e)))) {
      eff->endpoints[e] = ov.endpoints[e];
      n++;
    }
  return n;
}

static json_t *rate_json(const struct tn_rate *r) {
  json_t *o = json_object();
  if (!o || json_object_set_new(o, "requestsPerSecond", json_integer(r->requests_per_second)) ||
      json_object_set_new(o, "burst", json_integer(r->burst))) {
    json_decref(o);
    return NULL;
  }
  return o;
}

int tn_rate_limits_to_json(const struct tn_rate_limits *rl, json_t **out) {
  json_t *o = NULL, *eps = NULL;
  *out = NULL;
  if (!tn_rate_limits_keys(rl))
    return 0;
  if (rl->all.set ? !(o = rate_json(&rl->all)) : !(o = json_object()))
    goto nomem;
  for (unsigned e = 0; e < TN_ENDPOINT_COUNT; e++) {
    if (!rl->endpoints[e].set)
      continue;
    if (!eps && (!(eps = json_object()) || json_object_set_new(o, "endpoints", eps))) {
      eps = NULL;
      goto nomem;
    }
    json_t *r = rate_json(&rl->endpoints[e]);
    if (!r || json_object_set_new(eps, endpoint_names[e], r))
      goto nomem;
  }
  *out = o;
  return 0;
nomem:
  json_decref(o);
  return -ENOMEM;
}
