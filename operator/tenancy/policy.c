/* policy.c - TenancyPolicy parsing and the pure policy evaluator (see policy.h, docs/policy.md). */
#include "tenancy/policy.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/placement.h"
#include "util/buf.h"

#define MESSAGE_CAP ((size_t)1 << 20) /* a joined message never grows past this */

static const char *const quota_key_names[TN_QUOTA_KEY_COUNT] = {
    "cpu", "memory", "storage", "pods", "services", "connections", "eventsPerDay"};

const char *tn_quota_key_name(enum tn_quota_key k) {
  return (unsigned)k < TN_QUOTA_KEY_COUNT ? quota_key_names[k] : "?";
}

int tn_quota_key_parse(const char *s, enum tn_quota_key *out) {
  for (int i = 0; s && i < TN_QUOTA_KEY_COUNT; i++)
    if (strcmp(s, quota_key_names[i]) == 0) {
      *out = (enum tn_quota_key)i;
      return 0;
    }
  return TN_EINVALID;
}

/* ---- small helpers ------------------------------------------------------------------------- */

static void copy_trunc(char *dst, size_t cap, const char *src) {
  size_t n = strnlen(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
}

static int nomem(struct tn_error *err) { return tn_error_set(err, -ENOMEM, "out of memory"); }

/* Fails with TN_EINVALID naming the field, in the message and in causes[0]. */
__attribute__((format(printf, 3, 4))) static int field_error(struct tn_error *err, const char *field,
                                                             const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  tn_error_set(err, TN_EINVALID, "%s: %s", field, msg);
  if (err) {
    err->n_causes = 1;
    copy_trunc(err->causes[0].field, sizeof err->causes[0].field, field);
    copy_trunc(err->causes[0].reason, sizeof err->causes[0].reason, "FieldValueInvalid");
    copy_trunc(err->causes[0].message, sizeof err->causes[0].message, msg);
    copy_trunc(err->reason, sizeof err->reason, "Invalid");
  }
  return TN_EINVALID;
}

static bool strv_has(char *const *v, size_t n, const char *s) {
  for (size_t i = 0; s && i < n; i++)
    if (v[i] && strcmp(v[i], s) == 0)
      return true;
  return false;
}

static void strv_free(char **v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

/* Appends a copy of s to *v (n entries). 0 or -ENOMEM. */
static int strv_push(char ***v, size_t *n, const char *s) {
  char *c = strdup(s);
  char **nv = c ? realloc(*v, (*n + 1) * sizeof **v) : NULL;
  if (!nv) {
    free(c);
    return -ENOMEM;
  }
  nv[(*n)++] = c;
  *v = nv;
  return 0;
}

/* "a, b, c" into b. */
static void join(struct tn_buf *b, char *const *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    tn_buf_printf(b, "%s%s", i ? ", " : "", v[i]);
}

static bool streq_null(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

/* ---- parsing a TenancyPolicy --------------------------------------------------------------------- */

/* obj[key] as an array of DNS labels (copied) into *out and *n; absent: n 0. */
static int get_labels(const json_t *obj, const char *key, const char *field, bool required, char ***out,
                      size_t *n, struct tn_error *err) {
  *out = NULL;
  *n = 0;
  const json_t *a = json_object_get(obj, key);
  if (!a || json_is_null(a)) {
    if (required)
      return field_error(err, field, "is required");
    return 0;
  }
  if (!json_is_array(a))
    return field_error(err, field, "must be a list of names");
  if (required && json_array_size(a) == 0)
    return field_error(err, field, "must list at least one name");
  size_t i;
  const json_t *e;
  json_array_foreach(a, i, e) {
    char f[160];
    snprintf(f, sizeof f, "%s[%zu]", field, i);
    if (!json_is_string(e) || !tn_is_dns_label(json_string_value(e)))
      return field_error(err, f,
                         "is not a DNS label (1 to 63 lowercase letters, digits or '-', starting and "
                         "ending with a letter or digit)");
    if (strv_push(out, n, json_string_value(e)))
      return nomem(err);
  }
  return 0;
}

static int get_bool(const json_t *obj, const char *key, const char *field, bool *out, struct tn_error *err) {
  const json_t *v = obj ? json_object_get(obj, key) : NULL;
  *out = false;
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_boolean(v))
    return field_error(err, field, "must be true or false");
  *out = json_is_true(v);
  return 0;
}

/* "<1 to 6 digits>d" into days; absent: -1. */
static int get_days(const json_t *obj, const char *key, const char *field, int *out, struct tn_error *err) {
  const json_t *v = obj ? json_object_get(obj, key) : NULL;
  *out = -1;
  if (!v || json_is_null(v))
    return 0;
  const char *s = json_is_string(v) ? json_string_value(v) : NULL;
  size_t n = s ? strlen(s) : 0, digits = 0;
  while (digits < n && s[digits] >= '0' && s[digits] <= '9')
    digits++;
  if (!s || digits < 1 || digits > 6 || n != digits + 1 || s[digits] != 'd')
    return field_error(err, field, "must be a number of days such as 90d (1 to 6 digits, then d)");
  *out = atoi(s);
  return 0;
}

/* The states an action can start from, as bits. */
static unsigned action_from_states(enum tn_action a) {
  switch (a) {
  case TN_ACTION_ACTIVATE:
    return 1u << TN_STATE_DRAFT;
  case TN_ACTION_SUSPEND:
    return 1u << TN_STATE_ACTIVE;
  case TN_ACTION_RESUME:
    return 1u << TN_STATE_SUSPENDED;
  case TN_ACTION_ARCHIVE:
    return (1u << TN_STATE_ACTIVE) | (1u << TN_STATE_SUSPENDED);
  case TN_ACTION_DELETE:
    return (1u << TN_STATE_DRAFT) | (1u << TN_STATE_ARCHIVED);
  case TN_ACTION_RESTORE:
    return 1u << TN_STATE_ARCHIVED;
  default:
    return 0;
  }
}

static int parse_action_name(const char *s, enum tn_action *out) {
  for (int a = TN_ACTION_ACTIVATE; s && a < TN_ACTION_COUNT; a++)
    if (strcmp(s, tn_action_name((enum tn_action)a)) == 0) {
      *out = (enum tn_action)a;
      return 0;
    }
  return TN_EINVALID;
}

static int parse_allowed_action(const json_t *e, const char *field, struct tn_policy_allowed_action *aa,
                                struct tn_error *err) {
  char f[160];
  if (!json_is_object(e))
    return field_error(err, field, "must be an object with action, plans and fromStates");
  snprintf(f, sizeof f, "%s.action", field);
  const json_t *act = json_object_get(e, "action");
  if (!act)
    return field_error(err, f, "is required");
  if (!json_is_string(act) || parse_action_name(json_string_value(act), &aa->action))
    return field_error(err, f, "must be one of activate, suspend, resume, archive, delete");
  snprintf(f, sizeof f, "%s.plans", field);
  int rc = get_labels(e, "plans", f, false, &aa->plans, &aa->n_plans, err);
  if (rc)
    return rc;
  snprintf(f, sizeof f, "%s.fromStates", field);
  const json_t *fs = json_object_get(e, "fromStates");
  if (!fs || json_is_null(fs))
    return 0;
  if (!json_is_array(fs))
    return field_error(err, f, "must be a list of states");
  size_t i;
  const json_t *s;
  json_array_foreach(fs, i, s) {
    enum tn_state st;
    char fi[176];
    snprintf(fi, sizeof fi, "%s[%zu]", f, i);
    if (!json_is_string(s) || tn_state_parse(json_string_value(s), &st) || st == TN_STATE_NONE)
      return field_error(err, fi, "must be Draft, Active, Suspended or Archived");
    if (!(action_from_states(aa->action) & (1u << st)))
      return field_error(err, fi,
                         "fromStates must be states the action can start from: activate from Draft, suspend "
                         "from Active, resume from Suspended, archive from Active or Suspended, delete from "
                         "Draft or Archived");
    aa->from_states |= 1u << st;
  }
  return 0;
}

void tn_policy_free(struct tn_policy *p) {
  if (!p)
    return;
  free(p->name);
  for (size_t i = 0; i < p->n_residency; i++) {
    free(p->residency[i].flag);
    strv_free(p->residency[i].allowed_regions, p->residency[i].n_allowed_regions);
  }
  free(p->residency);
  for (size_t i = 0; i < p->n_allowed_actions; i++)
    strv_free(p->allowed_actions[i].plans, p->allowed_actions[i].n_plans);
  free(p->allowed_actions);
  strv_free(p->allowed_group_patterns, p->n_allowed_group_patterns);
  free(p);
}

static int parse_policy_spec(const json_t *spec, struct tn_policy *p, struct tn_error *err) {
  int rc;
  const json_t *a = json_object_get(spec, "residency");
  if (a && !json_is_null(a)) {
    if (!json_is_array(a))
      return field_error(err, "spec.residency", "must be a list of {flag, allowedRegions}");
    if (json_array_size(a) && !(p->residency = calloc(json_array_size(a), sizeof *p->residency)))
      return nomem(err);
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e) {
      char f[96];
      struct tn_policy_residency_rule *r = &p->residency[i];
      p->n_residency = i + 1;
      snprintf(f, sizeof f, "spec.residency[%zu]", i);
      if (!json_is_object(e))
        return field_error(err, f, "must be an object with flag and allowedRegions");
      const json_t *flag = json_object_get(e, "flag");
      snprintf(f, sizeof f, "spec.residency[%zu].flag", i);
      if (!json_is_string(flag) || !tn_is_dns_label(json_string_value(flag)))
        return field_error(err, f, "must be a DNS label, e.g. eu-only");
      if (!(r->flag = strdup(json_string_value(flag))))
        return nomem(err);
      snprintf(f, sizeof f, "spec.residency[%zu].allowedRegions", i);
      if ((rc = get_labels(e, "allowedRegions", f, true, &r->allowed_regions, &r->n_allowed_regions, err)))
        return rc;
    }
  }
  const json_t *enc = json_object_get(spec, "encryption");
  if (enc && !json_is_null(enc) && !json_is_object(enc))
    return field_error(err, "spec.encryption", "must be an object");
  if ((rc = get_bool(enc, "requireDatabaseTLS", "spec.encryption.requireDatabaseTLS",
                     &p->require_database_tls, err)) ||
      (rc = get_bool(enc, "requireTenantKeys", "spec.encryption.requireTenantKeys", &p->require_tenant_keys,
                     err)))
    return rc;
  const json_t *ret = json_object_get(spec, "retention");
  if (ret && !json_is_null(ret) && !json_is_object(ret))
    return field_error(err, "spec.retention", "must be an object");
  if ((rc = get_days(ret, "archivedData", "spec.retention.archivedData", &p->archived_data_days, err)) ||
      (rc = get_days(ret, "auditRecords", "spec.retention.auditRecords", &p->audit_records_days, err)))
    return rc;
  a = json_object_get(spec, "allowedActions");
  if (a && !json_is_null(a)) {
    if (!json_is_array(a))
      return field_error(err, "spec.allowedActions", "must be a list of {action, plans, fromStates}");
    p->has_allowed_actions = true;
    if (json_array_size(a) && !(p->allowed_actions = calloc(json_array_size(a), sizeof *p->allowed_actions)))
      return nomem(err);
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e) {
      char f[96];
      p->n_allowed_actions = i + 1;
      snprintf(f, sizeof f, "spec.allowedActions[%zu]", i);
      if ((rc = parse_allowed_action(e, f, &p->allowed_actions[i], err)))
        return rc;
    }
  }
  a = json_object_get(spec, "quotaOverrides");
  if (a && !json_is_null(a)) {
    if (!json_is_array(a))
      return field_error(err, "spec.quotaOverrides", "must be a list of quota keys");
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e) {
      enum tn_quota_key k;
      char f[64];
      snprintf(f, sizeof f, "spec.quotaOverrides[%zu]", i);
      if (!json_is_string(e) || tn_quota_key_parse(json_string_value(e), &k))
        return field_error(err, f,
                           "must be one of cpu, memory, storage, pods, services, connections, eventsPerDay");
      p->quota_overrides |= 1u << k;
    }
  }
  a = json_object_get(spec, "rateLimitOverrides");
  if (a && !json_is_null(a)) {
    if (!json_is_array(a))
      return field_error(err, "spec.rateLimitOverrides", "must be a list of rate-limit keys");
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e) {
      unsigned k;
      char f[64];
      snprintf(f, sizeof f, "spec.rateLimitOverrides[%zu]", i);
      if (!json_is_string(e) || tn_rate_limit_key_parse(json_string_value(e), &k))
        return field_error(err, f, "must be one of default, get, list, byExternalId, placement, events");
      p->rate_limit_overrides |= 1u << k;
    }
  }
  const json_t *idn = json_object_get(spec, "identity");
  if (idn && !json_is_null(idn) && !json_is_object(idn))
    return field_error(err, "spec.identity", "must be an object");
  a = json_is_object(idn) ? json_object_get(idn, "allowedGroupPatterns") : NULL;
  if (a && !json_is_null(a)) {
    if (!json_is_array(a))
      return field_error(err, "spec.identity.allowedGroupPatterns", "must be a list of glob patterns");
    p->has_allowed_group_patterns = true;
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e) {
      char f[96];
      snprintf(f, sizeof f, "spec.identity.allowedGroupPatterns[%zu]", i);
      if (!json_is_string(e) || !json_string_length(e) || json_string_length(e) > 256 ||
          strlen(json_string_value(e)) != json_string_length(e))
        return field_error(err, f,
                           "must be a non-empty glob pattern of at most 256 characters, e.g. "
                           "\"{tenant}-*\" or \"*@{domain}\"");
      if (strv_push(&p->allowed_group_patterns, &p->n_allowed_group_patterns, json_string_value(e)))
        return nomem(err);
    }
  }
  const json_t *ps = json_object_get(spec, "podSecurity");
  if (ps && !json_is_null(ps) && !json_is_object(ps))
    return field_error(err, "spec.podSecurity", "must be an object");
  const json_t *min = json_is_object(ps) ? json_object_get(ps, "minimum") : NULL;
  if (min && !json_is_null(min)) {
    if (!json_is_string(min) || tn_pod_security_parse(json_string_value(min), &p->pod_security_minimum))
      return field_error(err, "spec.podSecurity.minimum", "must be restricted or baseline");
    p->has_pod_security_minimum = true;
  }
  return 0;
}

int tn_policy_parse(const json_t *obj, struct tn_policy **out, struct tn_error *err) {
  *out = NULL;
  struct tn_policy *p = NULL;
  int rc;
  if (!json_is_object(obj))
    return field_error(err, "(root)", "a TenancyPolicy must be a JSON object");
  const json_t *md = json_object_get(obj, "metadata");
  const json_t *name = json_is_object(md) ? json_object_get(md, "name") : NULL;
  if (!json_is_string(name) || !json_string_length(name) || json_string_length(name) > 253)
    return field_error(err, "metadata.name", "is required");
  const json_t *spec = json_object_get(obj, "spec");
  if (!json_is_object(spec))
    return field_error(err, "spec", "is required and must be an object");
  if (!(p = calloc(1, sizeof *p)) || !(p->name = strdup(json_string_value(name)))) {
    rc = nomem(err);
    goto out;
  }
  const json_t *gen = json_object_get(md, "generation");
  p->generation = json_is_integer(gen) ? (long long)json_integer_value(gen) : 0;
  p->archived_data_days = p->audit_records_days = -1;
  if ((rc = parse_policy_spec(spec, p, err))) {
    tn_error_prefix(err, "TenancyPolicy %s", p->name);
    goto out;
  }
  *out = p;
  p = NULL;
out:
  tn_policy_free(p);
  return rc;
}

/* ---- regions with their database servers ----------------------------------------------------------- */

void tn_policy_region_free(struct tn_policy_region *r) {
  if (!r)
    return;
  tn_region_free(r->region);
  for (size_t i = 0; i < r->n_servers; i++) {
    free(r->servers[i].name);
    free(r->servers[i].ssl_mode);
  }
  free(r->servers);
  free(r);
}

static int parse_db_server(const json_t *e, const char *field, struct tn_policy_db_server *s,
                           struct tn_error *err) {
  char f[128];
  if (!json_is_object(e))
    return field_error(err, field, "must be an object");
  const json_t *name = json_object_get(e, "name"), *ssl = json_object_get(e, "sslMode");
  snprintf(f, sizeof f, "%s.name", field);
  if (!json_is_string(name) || !tn_is_dns_label(json_string_value(name)))
    return field_error(err, f, "must be a DNS label");
  snprintf(f, sizeof f, "%s.sslMode", field);
  if (ssl && !json_is_null(ssl) && !json_is_string(ssl))
    return field_error(err, f, "must be a libpq sslmode");
  if (!(s->name = strdup(json_string_value(name))) ||
      !(s->ssl_mode = strdup(json_is_string(ssl) ? json_string_value(ssl) : "verify-full")))
    return nomem(err);
  const json_t *serves = json_object_get(e, "serves");
  size_t i;
  const json_t *m;
  snprintf(f, sizeof f, "%s.serves", field);
  if (serves && !json_is_array(serves))
    return field_error(err, f, "must be a list of isolation modes");
  json_array_foreach(serves, i, m) {
    enum tn_isolation iso;
    if (!json_is_string(m) || tn_isolation_parse(json_string_value(m), &iso))
      return field_error(err, f, "must list shared, dedicated or hybrid");
    s->serves |= 1u << iso;
  }
  return 0;
}

int tn_policy_region_parse(const json_t *obj, struct tn_policy_region **out, struct tn_error *err) {
  *out = NULL;
  struct tn_policy_region *r = calloc(1, sizeof *r);
  int rc;
  if (!r)
    return nomem(err);
  if ((rc = tn_region_parse(obj, &r->region, err)))
    goto out;
  const json_t *spec = json_object_get(obj, "spec");
  const json_t *servers = json_is_object(spec) ? json_object_get(spec, "databaseServers") : NULL;
  if (servers && !json_is_null(servers)) {
    if (!json_is_array(servers)) {
      rc = field_error(err, "spec.databaseServers", "must be a list");
      goto out;
    }
    size_t n = json_array_size(servers);
    if (n && !(r->servers = calloc(n, sizeof *r->servers))) {
      rc = nomem(err);
      goto out;
    }
    for (size_t i = 0; i < n; i++) {
      char f[64];
      r->n_servers = i + 1;
      snprintf(f, sizeof f, "spec.databaseServers[%zu]", i);
      if ((rc = parse_db_server(json_array_get(servers, i), f, &r->servers[i], err)))
        goto out;
    }
  }
  *out = r;
  r = NULL;
out:
  if (rc && r && r->region)
    tn_error_prefix(err, "Region %s", r->region->name);
  tn_policy_region_free(r);
  return rc;
}

void tn_policy_tenant_fields(const json_t *obj, unsigned *quota_overrides, const char **database_server) {
  const json_t *spec = json_object_get(obj, "spec"), *status = json_object_get(obj, "status");
  if (quota_overrides) {
    *quota_overrides = 0;
    const json_t *qo = json_is_object(spec) ? json_object_get(spec, "quotaOverrides") : NULL;
    const char *key;
    const json_t *v;
    enum tn_quota_key k;
    if (json_is_object(qo))
      json_object_foreach((json_t *)qo, key, v) {
        if (!json_is_null(v) && tn_quota_key_parse(key, &k) == 0)
          *quota_overrides |= 1u << k;
      }
  }
  if (database_server) {
    const json_t *pl = json_is_object(status) ? json_object_get(status, "placement") : NULL;
    const json_t *db = json_is_object(status) ? json_object_get(status, "database") : NULL;
    const json_t *ds = json_is_object(pl) ? json_object_get(pl, "databaseServer") : NULL;
    if (!json_is_string(ds) || !json_string_length(ds))
      ds = json_is_object(db) ? json_object_get(db, "server") : NULL;
    *database_server = json_is_string(ds) && json_string_length(ds) ? json_string_value(ds) : NULL;
  }
}

/* ---- results ------------------------------------------------------------------------------------------ */

void tn_policy_result_init(struct tn_policy_result *r) {
  memset(r, 0, sizeof *r);
  r->pod_security_minimum = TN_POD_SECURITY_BASELINE;
  r->archived_data_days = r->audit_records_days = -1;
}

static void violation_free(struct tn_policy_violation *v) {
  free(v->policy);
  free(v->rule);
  free(v->field);
  free(v->subject);
  free(v->message);
}

void tn_policy_result_cleanup(struct tn_policy_result *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->n_violations; i++)
    violation_free(&r->violations[i]);
  free(r->violations);
  strv_free(r->warnings, r->n_warnings);
  strv_free(r->residency.allowed_regions, r->residency.n_allowed_regions);
  free(r->residency.preferred_region);
  free(r->require_database_tls_policy);
  strv_free(r->refused_groups, r->n_refused_groups);
  tn_policy_result_init(r);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* Adds a violation; the message is formatted. 0 or -ENOMEM. */
__attribute__((format(printf, 6, 7))) static int add_violation(struct tn_policy_result *r, const char *policy,
                                                               const char *rule, const char *field,
                                                               const char *subject, const char *fmt, ...) {
  struct tn_buf b;
  tn_buf_init(&b, MESSAGE_CAP);
  va_list ap;
  va_start(ap, fmt);
  int rc = tn_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  struct tn_policy_violation v = {.policy = dup_or_null(policy),
                                  .rule = strdup(rule),
                                  .field = strdup(field),
                                  .subject = strdup(subject ? subject : ""),
                                  .message = rc ? NULL : tn_buf_take(&b)};
  tn_buf_cleanup(&b);
  struct tn_policy_violation *nv = realloc(r->violations, (r->n_violations + 1) * sizeof *nv);
  if (nv)
    r->violations = nv;
  if (!nv || (policy && !v.policy) || !v.rule || !v.field || !v.subject || !v.message) {
    violation_free(&v);
    return -ENOMEM;
  }
  r->violations[r->n_violations++] = v;
  return 0;
}

__attribute__((format(printf, 2, 3))) static int add_warning(struct tn_policy_result *r, const char *fmt,
                                                             ...) {
  struct tn_buf b;
  tn_buf_init(&b, MESSAGE_CAP);
  va_list ap;
  va_start(ap, fmt);
  int rc = tn_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  if (!rc)
    rc = strv_push(&r->warnings, &r->n_warnings, tn_buf_str(&b));
  tn_buf_cleanup(&b);
  return rc;
}

/* ---- the rules ------------------------------------------------------------------------------------------
 */

/* A residency rule that applies to the tenant, found while narrowing. */
struct applied_rule {
  const struct tn_policy *policy;
  const struct tn_policy_residency_rule *rule;
};

/* "[a, b]" of a rule's regions. */
static void rule_regions(struct tn_buf *b, const struct tn_policy_residency_rule *rule) {
  tn_buf_appends(b, "[");
  join(b, rule->allowed_regions, rule->n_allowed_regions);
  tn_buf_appends(b, "]");
}

/* Residency: every rule of every policy whose flag the tenant carries restricts where it may be
 * placed; the tenant's allowed regions must lie inside each such rule (intersection: the
 * strictest wins). Fills r->residency (always) and reports violations when report is set. */
static int eval_residency(const struct tn_policy_input *in, bool report, struct tn_policy_result *r) {
  const struct tn_tenant *t = in->tenant;
  const struct tn_residency *res = &t->residency;
  struct applied_rule *applied = NULL;
  size_t n_applied = 0;
  bool *matched = NULL;
  char **eff = NULL; /* the intersection of the applied rules' regions (copies) */
  size_t n_eff = 0;
  struct tn_buf b, subj;
  int rc = -ENOMEM;
  tn_buf_init(&b, MESSAGE_CAP);
  tn_buf_init(&subj, MESSAGE_CAP);
  if (res->n_flags && !(matched = calloc(res->n_flags, sizeof *matched)))
    goto out;

  for (size_t pi = 0; pi < in->n_policies; pi++) {
    const struct tn_policy *p = in->policies[pi];
    for (size_t ri = 0; p && ri < p->n_residency; ri++) {
      const struct tn_policy_residency_rule *rule = &p->residency[ri];
      size_t fi;
      for (fi = 0; fi < res->n_flags; fi++)
        if (strcmp(res->flags[fi], rule->flag) == 0)
          break;
      if (fi == res->n_flags)
        continue;
      matched[fi] = true;
      struct applied_rule *na = realloc(applied, (n_applied + 1) * sizeof *na);
      if (!na)
        goto out;
      applied = na;
      applied[n_applied++] = (struct applied_rule){p, rule};

      /* narrow */
      if (n_applied == 1) {
        for (size_t i = 0; i < rule->n_allowed_regions; i++)
          if (!strv_has(eff, n_eff, rule->allowed_regions[i]) &&
              strv_push(&eff, &n_eff, rule->allowed_regions[i]))
            goto out;
      } else {
        size_t k = 0;
        for (size_t i = 0; i < n_eff; i++) {
          if (strv_has(rule->allowed_regions, rule->n_allowed_regions, eff[i]))
            eff[k++] = eff[i];
          else
            free(eff[i]);
        }
        n_eff = k;
      }
      if (!report)
        continue;

      /* the tenant's own regions outside the rule */
      size_t n_off = 0;
      tn_buf_reset(&subj);
      tn_buf_printf(&subj, "flag %s:", rule->flag);
      tn_buf_reset(&b);
      for (size_t i = 0; i < res->n_allowed_regions; i++)
        if (!strv_has(rule->allowed_regions, rule->n_allowed_regions, res->allowed_regions[i])) {
          tn_buf_printf(&b, "%s%s", n_off ? ", " : "", res->allowed_regions[i]);
          tn_buf_printf(&subj, " %s", res->allowed_regions[i]);
          n_off++;
        }
      if (n_off) {
        char *off = tn_buf_take(&b);
        if (!off)
          goto out;
        rule_regions(&b, rule);
        rc = add_violation(
            r, p->name, "residency", "spec.residency.allowedRegions", tn_buf_str(&subj),
            "TenancyPolicy %s: residency flag %s allows regions %s; spec.residency.allowedRegions "
            "has %s: remove %s or drop the flag",
            p->name, rule->flag, tn_buf_str(&b), off, n_off == 1 ? "it" : "them");
        free(off);
        if (rc)
          goto out;
        rc = -ENOMEM;
      } else if (!res->n_allowed_regions && res->preferred_region &&
                 !strv_has(rule->allowed_regions, rule->n_allowed_regions, res->preferred_region)) {
        tn_buf_reset(&b);
        rule_regions(&b, rule);
        tn_buf_reset(&subj);
        tn_buf_printf(&subj, "flag %s: preferred %s", rule->flag, res->preferred_region);
        if (add_violation(
                r, p->name, "residency", "spec.residency.preferredRegion", tn_buf_str(&subj),
                "TenancyPolicy %s: residency flag %s allows regions %s; spec.residency.preferredRegion "
                "is %s: prefer one of those regions or drop the flag",
                p->name, rule->flag, tn_buf_str(&b), res->preferred_region))
          goto out;
      }
      if (t->status_region && !strv_has(rule->allowed_regions, rule->n_allowed_regions, t->status_region)) {
        tn_buf_reset(&b);
        rule_regions(&b, rule);
        tn_buf_reset(&subj);
        tn_buf_printf(&subj, "flag %s: placed in %s", rule->flag, t->status_region);
        if (add_violation(
                r, p->name, "residency", "status.placement.region", tn_buf_str(&subj),
                "TenancyPolicy %s: residency flag %s allows regions %s; the tenant is already placed "
                "in %s and a placed tenant is never moved (that is a migration): drop the flag, or "
                "migrate the tenant to one of those regions",
                p->name, rule->flag, tn_buf_str(&b), t->status_region))
          goto out;
      }
    }
  }

  /* flags no policy defines restrict nothing: say so, a typo would otherwise pass silently */
  for (size_t fi = 0; report && fi < res->n_flags; fi++)
    if (!matched[fi] &&
        add_warning(r,
                    "spec.residency.flags: no TenancyPolicy has a residency rule for flag %s, "
                    "so it restricts nothing; check its spelling",
                    res->flags[fi]))
      goto out;

  /* the residency to place with */
  r->residency_restricted = n_applied > 0;
  for (size_t i = 0; i < res->n_allowed_regions; i++)
    if ((!n_applied || strv_has(eff, n_eff, res->allowed_regions[i])) &&
        strv_push(&r->residency.allowed_regions, &r->residency.n_allowed_regions, res->allowed_regions[i]))
      goto out;
  if (!res->n_allowed_regions && n_applied) {
    r->residency.allowed_regions = eff;
    r->residency.n_allowed_regions = n_eff;
    eff = NULL;
    n_eff = 0;
  }
  if (res->preferred_region &&
      (!n_applied ||
       strv_has(r->residency.allowed_regions, r->residency.n_allowed_regions, res->preferred_region)) &&
      !(r->residency.preferred_region = strdup(res->preferred_region)))
    goto out;

  if (report && n_applied && !r->residency.n_allowed_regions && !res->n_allowed_regions) {
    tn_buf_reset(&b);
    for (size_t i = 0; i < n_applied; i++) {
      tn_buf_printf(&b, "%s%s (TenancyPolicy %s) allows ", i ? "; " : "", applied[i].rule->flag,
                    applied[i].policy->name);
      rule_regions(&b, applied[i].rule);
    }
    if (add_violation(
            r, NULL, "residency", "spec.residency.flags", "no common region",
            "spec.residency.flags: the residency rules of the tenant's flags allow no region in common: "
            "%s: drop a flag, or align the policies",
            tn_buf_str(&b)))
      goto out;
  }
  rc = 0;
out:
  strv_free(eff, n_eff);
  free(matched);
  free(applied);
  tn_buf_cleanup(&b);
  tn_buf_cleanup(&subj);
  return rc;
}

static bool verified_tls(const char *ssl_mode) {
  return ssl_mode && (strcmp(ssl_mode, "verify-ca") == 0 || strcmp(ssl_mode, "verify-full") == 0);
}

static const struct tn_policy_region *find_inventory(const struct tn_policy_input *in, const char *name) {
  for (size_t i = 0; name && i < in->n_regions; i++)
    if (in->regions[i] && in->regions[i]->region && strcmp(in->regions[i]->region->name, name) == 0)
      return in->regions[i];
  return NULL;
}

/* Encryption: with requireDatabaseTLS, the database server the tenant is (or would be) on must
 * verify the server's certificate. Evaluated against the region the tenant is placed in, or
 * the one placement would choose now; nothing to check while that region has no database
 * server for the tenant's isolation mode (the data plane reports that). */
static int eval_encryption(const struct tn_policy_input *in, struct tn_policy_result *r) {
  const struct tn_tenant *t = in->tenant;
  const struct tn_region **regions = NULL;
  struct tn_buf b, subj;
  int rc = 0;
  tn_buf_init(&b, MESSAGE_CAP);
  tn_buf_init(&subj, MESSAGE_CAP);
  bool any = false;
  for (size_t i = 0; i < in->n_policies; i++)
    any |= in->policies[i] && in->policies[i]->require_database_tls;
  if (!any)
    goto out;

  const char *region_name = t->status_region;
  bool placed = region_name != NULL;
  struct tn_placement pl;
  if (!placed) {
    if (r->residency_restricted && !r->residency.n_allowed_regions)
      goto out; /* no region allowed at all: residency already said so */
    if (in->n_regions && !(regions = calloc(in->n_regions, sizeof *regions))) {
      rc = -ENOMEM;
      goto out;
    }
    size_t n = 0;
    for (size_t i = 0; i < in->n_regions; i++)
      if (in->regions[i] && in->regions[i]->region)
        regions[n++] = in->regions[i]->region;
    if (tn_placement_resolve(&r->residency, t->isolation, NULL, regions, n, &pl, NULL))
      goto out; /* no region fits: placement reports that, not policy */
    region_name = pl.region;
  }
  const struct tn_policy_region *reg = find_inventory(in, region_name);
  if (!reg)
    goto out;

  if (in->database_server) {
    for (size_t s = 0; s < reg->n_servers; s++) {
      const struct tn_policy_db_server *srv = &reg->servers[s];
      if (strcmp(srv->name, in->database_server) || verified_tls(srv->ssl_mode))
        continue;
      tn_buf_reset(&subj);
      tn_buf_printf(&subj, "%s/%s", region_name, srv->name);
      for (size_t i = 0; i < in->n_policies; i++) {
        const struct tn_policy *p = in->policies[i];
        if (p && p->require_database_tls &&
            (rc = add_violation(
                 r, p->name, "encryption", "status.placement.databaseServer", tn_buf_str(&subj),
                 "TenancyPolicy %s: encryption.requireDatabaseTLS needs sslMode verify-ca or "
                 "verify-full, and the tenant's database server %s in Region %s uses sslMode %s: "
                 "set its sslMode to verify-full (with a caSecretRef) in Region %s",
                 p->name, srv->name, region_name, srv->ssl_mode, region_name)))
          goto out;
      }
    }
    goto out;
  }

  size_t n_candidates = 0;
  tn_buf_reset(&subj);
  tn_buf_appends(&subj, region_name);
  for (size_t s = 0; s < reg->n_servers; s++) {
    const struct tn_policy_db_server *srv = &reg->servers[s];
    if (!((srv->serves >> t->isolation) & 1u))
      continue;
    if (verified_tls(srv->ssl_mode))
      goto out; /* a compliant server exists: the data plane must choose it (require_database_tls) */
    tn_buf_printf(&b, "%s%s (sslMode %s)", n_candidates ? ", " : "", srv->name, srv->ssl_mode);
    tn_buf_printf(&subj, " %s", srv->name);
    n_candidates++;
  }
  if (!n_candidates)
    goto out;
  for (size_t i = 0; i < in->n_policies; i++) {
    const struct tn_policy *p = in->policies[i];
    if (p && p->require_database_tls &&
        (rc = add_violation(
             r, p->name, "encryption", placed ? "status.placement.region" : "spec.residency",
             tn_buf_str(&subj),
             "TenancyPolicy %s: encryption.requireDatabaseTLS needs a database server with sslMode "
             "verify-ca or verify-full, and Region %s (where the tenant %s) hosts isolation %s only "
             "on %s: set sslMode verify-full (with a caSecretRef) on one of them, or %s",
             p->name, region_name, placed ? "is placed" : "would be placed", tn_isolation_name(t->isolation),
             tn_buf_str(&b), placed ? "migrate the tenant" : "let the tenant live in another region")))
      goto out;
  }
out:
  free(regions);
  tn_buf_cleanup(&b);
  tn_buf_cleanup(&subj);
  return rc;
}

/* "[Draft, Archived]" of a state bit set. */
static void states_list(struct tn_buf *b, unsigned bits) {
  int k = 0;
  tn_buf_appends(b, "[");
  for (int s = TN_STATE_DRAFT; s < TN_STATE_COUNT; s++)
    if ((bits >> s) & 1u)
      tn_buf_printf(b, "%s%s", k++ ? ", " : "", tn_state_name((enum tn_state)s));
  tn_buf_appends(b, "]");
}

static void describe_allowed(struct tn_buf *b, const struct tn_policy *p) {
  if (!p->n_allowed_actions) {
    tn_buf_appends(b, "no lifecycle action (its allowedActions list is empty)");
    return;
  }
  for (size_t i = 0; i < p->n_allowed_actions; i++) {
    const struct tn_policy_allowed_action *aa = &p->allowed_actions[i];
    tn_buf_printf(b, "%s%s", i ? "; " : "", tn_action_name(aa->action));
    if (aa->n_plans) {
      tn_buf_appends(b, " on plans [");
      join(b, aa->plans, aa->n_plans);
      tn_buf_appends(b, "]");
    }
    if (aa->from_states) {
      tn_buf_appends(b, " from ");
      states_list(b, aa->from_states);
    }
  }
}

static bool action_allowed(const struct tn_policy *p, enum tn_action action, const char *plan,
                           enum tn_state from) {
  for (size_t i = 0; i < p->n_allowed_actions; i++) {
    const struct tn_policy_allowed_action *aa = &p->allowed_actions[i];
    if (aa->action == action && (!aa->n_plans || strv_has(aa->plans, aa->n_plans, plan)) &&
        (!aa->from_states || ((aa->from_states >> from) & 1u)))
      return true;
  }
  return false;
}

/* Allowed actions: every policy with allowedActions must have an entry matching each step's
 * action, the tenant's plan and the state the step leaves. */
static int eval_actions(const struct tn_policy_input *in, struct tn_policy_result *r) {
  const struct tn_tenant *t = in->tenant;
  struct tn_buf b, subj;
  int rc = 0;
  tn_buf_init(&b, MESSAGE_CAP);
  tn_buf_init(&subj, MESSAGE_CAP);
  for (size_t si = 0; si < in->n_steps; si++) {
    const struct tn_transition *st = &in->steps[si];
    if (!action_from_states(st->action))
      continue; /* none, create: never restricted */
    for (size_t pi = 0; pi < in->n_policies; pi++) {
      const struct tn_policy *p = in->policies[pi];
      if (!p || !p->has_allowed_actions || action_allowed(p, st->action, t->plan, st->from))
        continue;
      tn_buf_reset(&b);
      describe_allowed(&b, p);
      tn_buf_reset(&subj);
      tn_buf_printf(&subj, "%s from %s on %s", tn_action_name(st->action), tn_state_name(st->from), t->plan);
      if ((rc = add_violation(
               r, p->name, "allowedActions", "spec.state", tn_buf_str(&subj),
               "TenancyPolicy %s: allowedActions does not allow %s (%s -> %s) for a tenant on plan "
               "%s; it allows %s: add an entry for %s that covers plan %s and state %s to "
               "TenancyPolicy %s, or keep spec.state %s",
               p->name, tn_action_name(st->action), tn_state_name(st->from), tn_state_name(st->to), t->plan,
               tn_buf_str(&b), tn_action_name(st->action), t->plan, tn_state_name(st->from), p->name,
               tn_state_name(st->from))))
        goto out;
    }
  }
out:
  tn_buf_cleanup(&b);
  tn_buf_cleanup(&subj);
  return rc;
}

static void quota_keys(struct tn_buf *b, unsigned bits) {
  int k = 0;
  for (int i = 0; i < TN_QUOTA_KEY_COUNT; i++)
    if ((bits >> i) & 1u)
      tn_buf_printf(b, "%s%s", k++ ? ", " : "", quota_key_names[i]);
  if (!k)
    tn_buf_appends(b, "none");
}

/* Quota overrides: a key of the tenant's spec.quotaOverrides must be listed by some policy. */
static int eval_quota_overrides(const struct tn_policy_input *in, struct tn_policy_result *r) {
  struct tn_buf b;
  int rc = 0;
  tn_buf_init(&b, 4096);
  quota_keys(&b, r->quota_overrides_permitted);
  for (int k = 0; k < TN_QUOTA_KEY_COUNT; k++) {
    if (!((in->quota_overrides >> k) & 1u) || ((r->quota_overrides_permitted >> k) & 1u))
      continue;
    char field[64];
    snprintf(field, sizeof field, "spec.quotaOverrides.%s", quota_key_names[k]);
    if ((rc = add_violation(
             r, NULL, "quotaOverrides", field, quota_key_names[k],
             "%s: no TenancyPolicy permits overriding %s (permitted: %s): remove it, or add %s to "
             "spec.quotaOverrides of a TenancyPolicy",
             field, quota_key_names[k], tn_buf_str(&b), quota_key_names[k])))
      break;
  }
  tn_buf_cleanup(&b);
  return rc;
}

static void rate_limit_keys(struct tn_buf *b, unsigned bits) {
  int n = 0;
  for (unsigned k = 0; k < TN_RATE_LIMIT_KEY_COUNT; k++)
    if ((bits >> k) & 1u)
      tn_buf_printf(b, "%s%s", n++ ? ", " : "", tn_rate_limit_key_name(k));
  if (!n)
    tn_buf_appends(b, "none");
}

/* Rate-limit overrides: each bucket the tenant's spec.rateLimitOverrides sets ("default" for its
 * own requestsPerSecond and burst, an endpoint name for endpoints.<name>) must be listed by some
 * policy's spec.rateLimitOverrides, as quota overrides are. */
static int eval_rate_limit_overrides(const struct tn_policy_input *in, struct tn_policy_result *r) {
  struct tn_buf b;
  int rc = 0;
  tn_buf_init(&b, 4096);
  rate_limit_keys(&b, r->rate_limit_overrides_permitted);
  for (unsigned k = 0; k < TN_RATE_LIMIT_KEY_COUNT; k++) {
    if (!((in->tenant->rate_limit_overrides >> k) & 1u) || ((r->rate_limit_overrides_permitted >> k) & 1u))
      continue;
    const char *name = tn_rate_limit_key_name(k);
    char field[96];
    if (k == TN_RATE_LIMIT_KEY_DEFAULT)
      snprintf(field, sizeof field, "spec.rateLimitOverrides");
    else
      snprintf(field, sizeof field, "spec.rateLimitOverrides.endpoints.%s", name);
    if ((rc = add_violation(r, NULL, "rateLimitOverrides", field, name,
                            "%s%s: no TenancyPolicy permits overriding the %s rate limit (permitted: %s): "
                            "remove it, or add %s to spec.rateLimitOverrides of a TenancyPolicy",
                            field, k == TN_RATE_LIMIT_KEY_DEFAULT ? " (requestsPerSecond, burst)" : "", name,
                            tn_buf_str(&b), name)))
      break;
  }
  tn_buf_cleanup(&b);
  return rc;
}

/* pattern with {tenant} and {domain} replaced (the values escaped for fnmatch) into b; false when
 * it uses {domain} and the tenant has none. */
static bool expand_pattern(struct tn_buf *b, const char *pattern, const struct tn_tenant *t) {
  tn_buf_reset(b);
  for (const char *c = pattern; *c;) {
    const char *val = NULL;
    if (strncmp(c, "{tenant}", 8) == 0) {
      val = t->name;
      c += 8;
    } else if (strncmp(c, "{domain}", 8) == 0) {
      if (!t->identity_domain)
        return false;
      val = t->identity_domain;
      c += 8;
    }
    if (val) {
      for (const char *v = val; *v; v++)
        tn_buf_printf(b, "%s%c", strchr("*?[]\\", *v) ? "\\" : "", *v);
    } else {
      tn_buf_printf(b, "%c", *c++);
    }
  }
  return true;
}

bool tn_policy_group_allowed(const struct tn_tenant *t, const char *group,
                             const struct tn_policy *const *policies, size_t n, char *why, size_t n_why) {
  if (tn_subject_is_reserved(group)) {
    if (why)
      snprintf(
          why, n_why,
          "group %.256s is reserved to Kubernetes (the prefix " TN_RESERVED_SUBJECT_PREFIX
          " names built-in identities such as system:authenticated, every signed-in user): binding it would "
          "open the tenant's namespaces to them; name a group of the tenant's identity provider",
          group);
    return false;
  }
  struct tn_buf b;
  tn_buf_init(&b, 4096);
  bool ok = true;
  for (size_t i = 0; ok && i < n; i++) {
    const struct tn_policy *p = policies[i];
    if (!p || !p->has_allowed_group_patterns)
      continue;
    bool match = false;
    for (size_t k = 0; !match && k < p->n_allowed_group_patterns; k++)
      match = expand_pattern(&b, p->allowed_group_patterns[k], t) && tn_buf_str(&b) &&
              fnmatch(tn_buf_str(&b), group, 0) == 0;
    if (match)
      continue;
    ok = false;
    if (why) {
      tn_buf_reset(&b);
      join(&b, p->allowed_group_patterns, p->n_allowed_group_patterns);
      snprintf(why, n_why,
               "TenancyPolicy %s: spec.identity.allowedGroupPatterns [%s] does not match group %.256s "
               "(with {tenant}=%s, {domain}=%s): use a group that matches, or change the policy",
               p->name, tn_buf_str(&b) ? tn_buf_str(&b) : "", group, t->name,
               t->identity_domain ? t->identity_domain : "(no spec.identity.domain)");
    }
  }
  tn_buf_cleanup(&b);
  return ok;
}

/* Groups: no reserved group, and every group matched by each policy's allowedGroupPatterns. */
static int eval_groups(const struct tn_policy_input *in, bool report, struct tn_policy_result *r) {
  const struct tn_tenant *t = in->tenant;
  for (size_t i = 0; i < t->n_group_bindings; i++) {
    const char *g = t->group_bindings[i].group;
    char why[1024];
    if (!g || tn_policy_group_allowed(t, g, in->policies, in->n_policies, why, sizeof why))
      continue;
    if (!strv_has(r->refused_groups, r->n_refused_groups, g) &&
        strv_push(&r->refused_groups, &r->n_refused_groups, g))
      return -ENOMEM;
    if (!report)
      continue;
    /* the policy that refuses it, for ratcheting: none for a reserved group */
    const char *pol = NULL;
    for (size_t k = 0; !tn_subject_is_reserved(g) && !pol && k < in->n_policies; k++) {
      const struct tn_policy *p = in->policies[k];
      if (p && p->has_allowed_group_patterns &&
          !tn_policy_group_allowed(t, g, (const struct tn_policy *const *)&in->policies[k], 1, NULL, 0))
        pol = p->name;
    }
    char field[96];
    snprintf(field, sizeof field, "spec.identity.groupBindings[%zu].group", i);
    if (add_violation(r, pol, "groups", field, g, "%s: %s", field, why))
      return -ENOMEM;
  }
  return 0;
}

int tn_policy_result_error(const struct tn_policy_result *r, struct tn_error *err) {
  if (!r->n_violations)
    return 0;
  char *msg = tn_policy_result_message(r);
  tn_error_set(err, TN_EINVALID, "%s", msg ? msg : "policy violations (out of memory describing them)");
  free(msg);
  if (err) {
    copy_trunc(err->reason, sizeof err->reason, TN_REASON_POLICY_DENIED);
    for (size_t i = 0; i < r->n_violations && err->n_causes < TN_ERROR_MAX_CAUSES; i++) {
      struct tn_error_cause *c = &err->causes[err->n_causes++];
      copy_trunc(c->field, sizeof c->field, r->violations[i].field);
      copy_trunc(c->reason, sizeof c->reason, TN_REASON_POLICY_DENIED);
      copy_trunc(c->message, sizeof c->message, r->violations[i].message);
    }
  }
  return TN_EINVALID;
}

int tn_policy_evaluate(const struct tn_policy_input *in, struct tn_policy_result *out, struct tn_error *err) {
  tn_policy_result_init(out);
  unsigned rules = in->rules ? in->rules : TN_POLICY_RULE_ALL;
  int rc;

  for (size_t i = 0; i < in->n_policies; i++) {
    const struct tn_policy *p = in->policies[i];
    if (!p)
      continue;
    out->require_database_tls |= p->require_database_tls;
    if (p->require_database_tls &&
        (!out->require_database_tls_policy || strcmp(p->name, out->require_database_tls_policy) < 0)) {
      free(out->require_database_tls_policy);
      if (!(out->require_database_tls_policy = strdup(p->name)))
        return nomem(err);
    }
    if (p->has_pod_security_minimum && p->pod_security_minimum > out->pod_security_minimum)
      out->pod_security_minimum = p->pod_security_minimum;
    out->require_tenant_keys |= p->require_tenant_keys;
    out->quota_overrides_permitted |= p->quota_overrides;
    out->rate_limit_overrides_permitted |= p->rate_limit_overrides;
    if (p->archived_data_days >= 0 &&
        (out->archived_data_days < 0 || p->archived_data_days < out->archived_data_days))
      out->archived_data_days = p->archived_data_days;
    if (p->audit_records_days > out->audit_records_days)
      out->audit_records_days = p->audit_records_days;
  }
  if ((rc = eval_residency(in, rules & TN_POLICY_RULE_RESIDENCY, out)) ||
      ((rules & TN_POLICY_RULE_ENCRYPTION) && (rc = eval_encryption(in, out))) ||
      ((rules & TN_POLICY_RULE_ACTIONS) && (rc = eval_actions(in, out))) ||
      ((rules & TN_POLICY_RULE_QUOTA_OVERRIDES) && (rc = eval_quota_overrides(in, out))) ||
      ((rules & TN_POLICY_RULE_RATE_LIMIT_OVERRIDES) && (rc = eval_rate_limit_overrides(in, out))) ||
      (rc = eval_groups(in, rules & TN_POLICY_RULE_GROUPS, out)))
    return nomem(err);
  return tn_policy_result_error(out, err);
}

char *tn_policy_result_message(const struct tn_policy_result *r) {
  struct tn_buf b;
  tn_buf_init(&b, MESSAGE_CAP);
  if (r->n_violations == 1) {
    tn_buf_appends(&b, r->violations[0].message);
  } else if (r->n_violations > 1) {
    tn_buf_printf(&b, "%zu policy violations:", r->n_violations);
    for (size_t i = 0; i < r->n_violations; i++)
      tn_buf_printf(&b, "%s (%zu) %s", i ? ";" : "", i + 1, r->violations[i].message);
  }
  char *s = tn_buf_take(&b); /* a cut message (past the cap) is still worth showing */
  tn_buf_cleanup(&b);
  return s;
}

int tn_policy_ratchet(struct tn_policy_result *cur, const struct tn_policy_result *before) {
  size_t k = 0;
  int rc = 0;
  for (size_t i = 0; i < cur->n_violations; i++) {
    struct tn_policy_violation *v = &cur->violations[i];
    bool old = false;
    for (size_t j = 0; before && j < before->n_violations && !old; j++) {
      const struct tn_policy_violation *w = &before->violations[j];
      old = streq_null(v->policy, w->policy) && strcmp(v->rule, w->rule) == 0 &&
            strcmp(v->field, w->field) == 0 && strcmp(v->subject, w->subject) == 0;
    }
    if (old && !rc && (rc = add_warning(cur, "already violated before this change: %s", v->message)) == 0) {
      violation_free(v);
      continue;
    }
    cur->violations[k++] = *v;
  }
  cur->n_violations = k;
  return rc;
}

/* ---- external ids
 * ------------------------------------------------------------------------------------------ */

static const char *external_id_of(const struct tn_tenant *t, const char *system) {
  for (size_t i = 0; t && i < t->n_external_ids; i++)
    if (strcmp(t->external_ids[i].system, system) == 0)
      return t->external_ids[i].id;
  return NULL;
}

int tn_policy_check_external_ids(const struct tn_tenant *t, const struct tn_tenant *only_changed,
                                 const struct tn_external_id_claim *claims, size_t n,
                                 struct tn_policy_result *out) {
  int added = 0;
  struct tn_buf holders;
  tn_buf_init(&holders, MESSAGE_CAP);
  for (size_t i = 0; i < t->n_external_ids; i++) {
    const struct tn_external_id *e = &t->external_ids[i];
    const char *before = external_id_of(only_changed, e->system);
    if (before && strcmp(before, e->id) == 0)
      continue;
    tn_buf_reset(&holders);
    int n_holders = 0;
    for (size_t c = 0; c < n; c++) {
      const struct tn_external_id_claim *cl = &claims[c];
      if (!cl->tenant || !cl->system || !cl->id || strcmp(cl->tenant, t->name) == 0 ||
          cl->state == TN_STATE_DELETED || strcmp(cl->system, e->system) || strcmp(cl->id, e->id))
        continue;
      tn_buf_printf(&holders, "%s%s", n_holders++ ? ", " : "", cl->tenant);
    }
    if (!n_holders)
      continue;
    char field[160], subject[512];
    snprintf(field, sizeof field, "spec.externalIds.%s", e->system);
    snprintf(subject, sizeof subject, "%s=%s", e->system, e->id);
    if (add_violation(out, NULL, "externalIds", field, subject,
                      "%s: %s is already the %s id of tenant%s %s; external ids are unique per system across "
                      "tenants: correct it here, or remove it from %s first",
                      field, e->id, e->system, n_holders > 1 ? "s" : "", tn_buf_str(&holders),
                      n_holders > 1 ? "those tenants" : "that tenant")) {
      added = -ENOMEM;
      break;
    }
    added++;
  }
  tn_buf_cleanup(&holders);
  return added;
}
