/* tenant.c - parsing and validation of Tenant, Plan and Region objects into plain structs
 * (see tenant.h). */
#include "tenancy/tenant.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------------------------ */

static const char *const state_names[TN_STATE_COUNT] = {"",          "Draft",    "Active",
                                                        "Suspended", "Archived", "Deleted"};
static const char *const isolation_names[TN_ISOLATION_COUNT] = {"shared", "dedicated", "hybrid"};
static const char *const role_names[TN_ROLE_COUNT] = {"tenant-admin", "tenant-developer", "tenant-viewer"};

const char *tn_state_name(enum tn_state s) { return (unsigned)s < TN_STATE_COUNT ? state_names[s] : "?"; }

int tn_state_parse(const char *s, enum tn_state *out) {
  if (!s || !*s) {
    *out = TN_STATE_NONE;
    return 0;
  }
  for (int i = 1; i < TN_STATE_COUNT; i++)
    if (strcmp(s, state_names[i]) == 0) {
      *out = (enum tn_state)i;
      return 0;
    }
  return TN_EINVALID;
}

const char *tn_isolation_name(enum tn_isolation i) {
  return (unsigned)i < TN_ISOLATION_COUNT ? isolation_names[i] : "?";
}

int tn_isolation_parse(const char *s, enum tn_isolation *out) {
  for (int i = 0; s && i < TN_ISOLATION_COUNT; i++)
    if (strcmp(s, isolation_names[i]) == 0) {
      *out = (enum tn_isolation)i;
      return 0;
    }
  return TN_EINVALID;
}

const char *tn_role_name(enum tn_role r) { return (unsigned)r < TN_ROLE_COUNT ? role_names[r] : "?"; }

int tn_role_parse(const char *s, enum tn_role *out) {
  for (int i = 0; s && i < TN_ROLE_COUNT; i++)
    if (strcmp(s, role_names[i]) == 0) {
      *out = (enum tn_role)i;
      return 0;
    }
  return TN_EINVALID;
}

bool tn_is_dns_label(const char *s) {
  if (!s)
    return false;
  size_t n = strlen(s);
  if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return false;
  }
  return true;
}

/* ---- quantities ---------------------------------------------------------------------------- */

/* Kubernetes' resource.Quantity grammar: <digits>[.<digits>] then one of: nothing, a binary
 * suffix (Ki Mi Gi Ti Pi Ei), a decimal suffix (n u m k M G T P E), or an exponent e<int>/E<int>.
 * The value is mantissa * 10^dec * 1024^bin; the result is in thousandths, rounded up. */
int tn_quantity_parse(const char *s, int64_t *milli) {
  if (!s || !*s)
    return TN_EINVALID;
  const char *p = s;
  if (*p == '+')
    p++;
  uint64_t mant = 0;
  int dec = 0, digits = 0, sig = 0;
  bool dot = false;
  for (; (*p >= '0' && *p <= '9') || *p == '.'; p++) {
    if (*p == '.') {
      if (dot)
        return TN_EINVALID;
      dot = true;
      continue;
    }
    digits++;
    if (mant == 0 && *p == '0') {
      if (dot)
        dec--;
      continue;
    }
    if (sig >= 18) { /* keep 18 significant digits: further integer digits scale, fraction digits drop */
      if (!dot)
        dec++;
      continue;
    }
    mant = mant * 10 + (uint64_t)(*p - '0');
    sig++;
    if (dot)
      dec--;
  }
  if (digits == 0)
    return TN_EINVALID;
  int bin = 0;
  if (*p) {
    static const struct {
      const char *sfx;
      int dec, bin;
    } sfx[] = {{"Ki", 0, 1}, {"Mi", 0, 2}, {"Gi", 0, 3}, {"Ti", 0, 4}, {"Pi", 0, 5},
               {"Ei", 0, 6}, {"n", -9, 0}, {"u", -6, 0}, {"m", -3, 0}, {"k", 3, 0},
               {"M", 6, 0},  {"G", 9, 0},  {"T", 12, 0}, {"P", 15, 0}, {"E", 18, 0}};
    size_t i;
    for (i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
      if (strcmp(p, sfx[i].sfx) == 0)
        break;
    if (i < sizeof sfx / sizeof sfx[0]) {
      dec += sfx[i].dec;
      bin = sfx[i].bin;
    } else if (*p == 'e' || *p == 'E') {
      char *end = NULL;
      errno = 0;
      long e = strtol(p + 1, &end, 10);
      if (end == p + 1 || *end != '\0' || errno || e > 100 || e < -100 ||
          !((p[1] >= '0' && p[1] <= '9') || p[1] == '-' || p[1] == '+'))
        return TN_EINVALID;
      dec += (int)e;
    } else {
      return TN_EINVALID;
    }
  }
  /* thousandths */
  dec += 3;
  uint64_t v = mant;
  for (int i = 0; i < bin && v; i++)
    if (__builtin_mul_overflow(v, (uint64_t)1024, &v))
      return TN_EINVALID;
  for (; dec > 0 && v; dec--)
    if (__builtin_mul_overflow(v, (uint64_t)10, &v))
      return TN_EINVALID;
  for (; dec < 0 && v; dec++)
    v = v / 10 + (v % 10 != 0); /* round up, like MilliValue */
  if (v > (uint64_t)INT64_MAX)
    return TN_EINVALID;
  *milli = (int64_t)v;
  return 0;
}

bool tn_subject_is_reserved(const char *name) {
  return name && strncmp(name, TN_RESERVED_SUBJECT_PREFIX, strlen(TN_RESERVED_SUBJECT_PREFIX)) == 0;
}

static const char *const pod_security_names[] = {"baseline", "restricted"};

const char *tn_pod_security_name(enum tn_pod_security l) {
  return (unsigned)l <= TN_POD_SECURITY_RESTRICTED ? pod_security_names[l] : "?";
}

int tn_pod_security_parse(const char *s, enum tn_pod_security *out) {
  for (int i = 0; s && i <= TN_POD_SECURITY_RESTRICTED; i++)
    if (strcmp(s, pod_security_names[i]) == 0) {
      *out = (enum tn_pod_security)i;
      return 0;
    }
  return TN_EINVALID;
}

/* ---- parse helpers -------------------------------------------------------------------------- */

/* Copies src into dst[cap], cut to fit, always terminated. */
static void copy_trunc(char *dst, size_t cap, const char *src) {
  size_t n = strnlen(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* Fails with TN_EINVALID naming the field, in the message and in causes[0]. */
__attribute__((format(printf, 4, 5))) static int field_error(struct tn_error *err, const char *field,
                                                             const char *reason, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  tn_error_set(err, TN_EINVALID, "%s: %s", field, msg);
  if (err) {
    err->n_causes = 1;
    copy_trunc(err->causes[0].field, sizeof err->causes[0].field, field);
    copy_trunc(err->causes[0].reason, sizeof err->causes[0].reason, reason);
    copy_trunc(err->causes[0].message, sizeof err->causes[0].message, msg);
    copy_trunc(err->reason, sizeof err->reason, "Invalid");
  }
  return TN_EINVALID;
}

static int nomem(struct tn_error *err) { return tn_error_set(err, -ENOMEM, "out of memory"); }

static const char dns_label_rule[] = "is not a DNS label (1 to 63 lowercase letters, digits or '-', starting "
                                     "and ending with a letter or digit)";

/* obj[key] as a string. Absent or null: *out NULL (error when required). Present and not a
 * string: error. The result is borrowed from obj. */
static int get_str(const json_t *obj, const char *key, const char *field, bool required, const char **out,
                   struct tn_error *err) {
  *out = NULL;
  const json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v || json_is_null(v)) {
    if (required)
      return field_error(err, field, "FieldValueRequired", "is required");
    return 0;
  }
  if (!json_is_string(v))
    return field_error(err, field, "FieldValueTypeInvalid", "must be a string");
  if (strlen(json_string_value(v)) != json_string_length(v))
    return field_error(err, field, "FieldValueInvalid", "must not contain NUL characters");
  *out = json_string_value(v);
  if (required && !**out)
    return field_error(err, field, "FieldValueRequired", "must not be empty");
  return 0;
}

/* Copies s into *dst; "" and NULL give NULL. */
static int dup_opt(const char *s, char **dst, struct tn_error *err) {
  *dst = NULL;
  if (!s || !*s)
    return 0;
  *dst = strdup(s);
  return *dst ? 0 : nomem(err);
}

/* obj[key] as an object; absent or null -> NULL; other types -> error. */
static int get_obj(const json_t *obj, const char *key, const char *field, const json_t **out,
                   struct tn_error *err) {
  *out = NULL;
  const json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_object(v))
    return field_error(err, field, "FieldValueTypeInvalid", "must be an object");
  *out = v;
  return 0;
}

static int get_arr(const json_t *obj, const char *key, const char *field, const json_t **out,
                   struct tn_error *err) {
  *out = NULL;
  const json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_array(v))
    return field_error(err, field, "FieldValueTypeInvalid", "must be a list");
  *out = v;
  return 0;
}

/* A non-negative integer; *present tells whether it was there. */
static int get_count(const json_t *obj, const char *key, const char *field, bool required, int64_t *out,
                     bool *present, struct tn_error *err) {
  const json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (present)
    *present = false;
  if (!v || json_is_null(v)) {
    if (required)
      return field_error(err, field, "FieldValueRequired", "is required");
    return 0;
  }
  if (!json_is_integer(v))
    return field_error(err, field, "FieldValueTypeInvalid", "must be an integer");
  if (json_integer_value(v) < 0)
    return field_error(err, field, "FieldValueInvalid",
                       "must not be negative (it is %" JSON_INTEGER_FORMAT ")", json_integer_value(v));
  *out = json_integer_value(v);
  if (present)
    *present = true;
  return 0;
}

/* A list of DNS labels into a new array of copies; duplicates refused when `distinct`. */
static int get_label_list(const json_t *obj, const char *key, const char *field, bool distinct, char ***out,
                          size_t *n_out, struct tn_error *err) {
  *out = NULL;
  *n_out = 0;
  const json_t *arr;
  int rc = get_arr(obj, key, field, &arr, err);
  if (rc || !arr)
    return rc;
  size_t n = json_array_size(arr);
  if (n == 0)
    return 0;
  char **v = calloc(n, sizeof *v);
  if (!v)
    return nomem(err);
  for (size_t i = 0; i < n; i++) {
    char f[160];
    snprintf(f, sizeof f, "%s[%zu]", field, i);
    const json_t *e = json_array_get(arr, i);
    if (!json_is_string(e)) {
      rc = field_error(err, f, "FieldValueTypeInvalid", "must be a string");
      goto fail;
    }
    const char *s = json_string_value(e);
    if (!tn_is_dns_label(s) || strlen(s) != json_string_length(e)) {
      json_t *q = json_string(s);
      char *quoted = q ? json_dumps(q, JSON_ENCODE_ANY) : NULL;
      rc = field_error(err, f, "FieldValueInvalid", "%s %s", quoted ? quoted : "value", dns_label_rule);
      free(quoted);
      json_decref(q);
      goto fail;
    }
    for (size_t j = 0; distinct && j < i; j++)
      if (strcmp(v[j], s) == 0) {
        rc = field_error(err, f, "FieldValueDuplicate", "duplicate value \"%s\" (also at %s[%zu])", s, field,
                         j);
        goto fail;
      }
    if (!(v[i] = strdup(s))) {
      rc = nomem(err);
      goto fail;
    }
  }
  *out = v;
  *n_out = n;
  return 0;
fail:
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
  return rc;
}

static void free_strv(char **v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

/* A DNS-label string field (required or optional) copied into *dst. */
static int get_label(const json_t *obj, const char *key, const char *field, bool required, char **dst,
                     struct tn_error *err) {
  const char *s;
  *dst = NULL;
  int rc = get_str(obj, key, field, required, &s, err);
  if (rc)
    return rc;
  if (!s || (!*s && !required))
    return 0;
  if (!tn_is_dns_label(s)) {
    json_t *q = json_string(s);
    char *quoted = q ? json_dumps(q, JSON_ENCODE_ANY) : NULL;
    rc = field_error(err, field, "FieldValueInvalid", "%s %s", quoted ? quoted : "value", dns_label_rule);
    free(quoted);
    json_decref(q);
    return rc;
  }
  return dup_opt(s, dst, err);
}

/* ---- Tenant ------------------------------------------------------------------------------------- */

void tn_tenant_free(struct tn_tenant *t) {
  if (!t)
    return;
  free(t->name);
  free(t->uid);
  free(t->display_name);
  free(t->state_reason);
  free(t->deletion_confirmation);
  free(t->plan);
  free_strv(t->residency.allowed_regions, t->residency.n_allowed_regions);
  free(t->residency.preferred_region);
  free_strv(t->residency.flags, t->residency.n_flags);
  free_strv(t->environments, t->n_environments);
  for (size_t i = 0; t->contacts && i < t->n_contacts; i++) {
    free(t->contacts[i].role);
    free(t->contacts[i].name);
    free(t->contacts[i].email);
  }
  free(t->contacts);
  for (size_t i = 0; t->external_ids && i < t->n_external_ids; i++) {
    free(t->external_ids[i].system);
    free(t->external_ids[i].id);
  }
  free(t->external_ids);
  free(t->identity_domain);
  for (size_t i = 0; t->group_bindings && i < t->n_group_bindings; i++)
    free(t->group_bindings[i].group);
  free(t->group_bindings);
  free(t->status_region);
  free(t->last_correlation_id);
  free(t);
}

static int parse_contacts(const json_t *spec, struct tn_tenant *t, struct tn_error *err) {
  const json_t *arr;
  int rc = get_arr(spec, "contacts", "spec.contacts", &arr, err);
  if (rc || !arr || json_array_size(arr) == 0)
    return rc;
  size_t n = json_array_size(arr);
  if (!(t->contacts = calloc(n, sizeof *t->contacts)))
    return nomem(err);
  t->n_contacts = n;
  for (size_t i = 0; i < n; i++) {
    char f[96], ff[128];
    snprintf(f, sizeof f, "spec.contacts[%zu]", i);
    const json_t *c = json_array_get(arr, i);
    if (!json_is_object(c))
      return field_error(err, f, "FieldValueTypeInvalid", "must be an object");
    const char *role, *name, *email;
    snprintf(ff, sizeof ff, "%s.role", f);
    if ((rc = get_str(c, "role", ff, true, &role, err)))
      return rc;
    if (strcmp(role, "technical") && strcmp(role, "billing") && strcmp(role, "incident"))
      return field_error(err, ff, "FieldValueNotSupported",
                         "unsupported role; supported values: \"technical\", \"billing\", \"incident\"");
    snprintf(ff, sizeof ff, "%s.name", f);
    if ((rc = get_str(c, "name", ff, false, &name, err)))
      return rc;
    snprintf(ff, sizeof ff, "%s.email", f);
    if ((rc = get_str(c, "email", ff, true, &email, err)))
      return rc;
    const char *at = strchr(email, '@');
    if (!at || at == email || !at[1] || strchr(at + 1, '@'))
      return field_error(err, ff, "FieldValueInvalid", "is not an email address (name@domain)");
    if ((rc = dup_opt(role, &t->contacts[i].role, err)) || (rc = dup_opt(name, &t->contacts[i].name, err)) ||
        (rc = dup_opt(email, &t->contacts[i].email, err)))
      return rc;
  }
  return 0;
}

static int cmp_external_id(const void *a, const void *b) {
  return strcmp(((const struct tn_external_id *)a)->system, ((const struct tn_external_id *)b)->system);
}

static int parse_external_ids(const json_t *spec, struct tn_tenant *t, struct tn_error *err) {
  const json_t *m;
  int rc = get_obj(spec, "externalIds", "spec.externalIds", &m, err);
  if (rc || !m || json_object_size(m) == 0)
    return rc;
  if (!(t->external_ids = calloc(json_object_size(m), sizeof *t->external_ids)))
    return nomem(err);
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)m, k, v) {
    char f[200];
    snprintf(f, sizeof f, "spec.externalIds[%.150s]", k);
    if (!*k)
      return field_error(err, "spec.externalIds", "FieldValueInvalid", "a system name must not be empty");
    if (!json_is_string(v) || !json_string_length(v))
      return field_error(err, f, "FieldValueInvalid", "must be a non-empty string");
    struct tn_external_id *x = &t->external_ids[t->n_external_ids++];
    if ((rc = dup_opt(k, &x->system, err)) || (rc = dup_opt(json_string_value(v), &x->id, err)))
      return rc;
  }
  qsort(t->external_ids, t->n_external_ids, sizeof *t->external_ids, cmp_external_id);
  return 0;
}

static int parse_identity(const json_t *spec, struct tn_tenant *t, struct tn_error *err) {
  const json_t *id, *arr;
  const char *domain;
  int rc = get_obj(spec, "identity", "spec.identity", &id, err);
  if (rc || !id)
    return rc;
  if ((rc = get_str(id, "domain", "spec.identity.domain", false, &domain, err)) ||
      (rc = dup_opt(domain, &t->identity_domain, err)))
    return rc;
  if ((rc = get_arr(id, "groupBindings", "spec.identity.groupBindings", &arr, err)) || !arr ||
      json_array_size(arr) == 0)
    return rc;
  size_t n = json_array_size(arr);
  if (!(t->group_bindings = calloc(n, sizeof *t->group_bindings)))
    return nomem(err);
  t->n_group_bindings = n;
  for (size_t i = 0; i < n; i++) {
    char f[96], ff[128];
    snprintf(f, sizeof f, "spec.identity.groupBindings[%zu]", i);
    const json_t *b = json_array_get(arr, i);
    if (!json_is_object(b))
      return field_error(err, f, "FieldValueTypeInvalid", "must be an object");
    const char *group, *role;
    snprintf(ff, sizeof ff, "%s.group", f);
    if ((rc = get_str(b, "group", ff, true, &group, err)))
      return rc;
    snprintf(ff, sizeof ff, "%s.role", f);
    if ((rc = get_str(b, "role", ff, true, &role, err)))
      return rc;
    if (tn_role_parse(role, &t->group_bindings[i].role))
      return field_error(err, ff, "FieldValueNotSupported",
                         "unsupported role; supported values: \"tenant-admin\", \"tenant-developer\", "
                         "\"tenant-viewer\"");
    if ((rc = dup_opt(group, &t->group_bindings[i].group, err)))
      return rc;
  }
  return 0;
}

static int parse_residency(const json_t *spec, struct tn_tenant *t, struct tn_error *err) {
  const json_t *r;
  int rc = get_obj(spec, "residency", "spec.residency", &r, err);
  if (rc || !r)
    return rc;
  if ((rc = get_label_list(r, "allowedRegions", "spec.residency.allowedRegions", true,
                           &t->residency.allowed_regions, &t->residency.n_allowed_regions, err)) ||
      (rc = get_label(r, "preferredRegion", "spec.residency.preferredRegion", false,
                      &t->residency.preferred_region, err)))
    return rc;
  /* flags are names for policy rules, not object names: non-empty strings */
  const json_t *flags;
  if ((rc = get_arr(r, "flags", "spec.residency.flags", &flags, err)) || !flags || !json_array_size(flags))
    return rc;
  size_t n = json_array_size(flags);
  if (!(t->residency.flags = calloc(n, sizeof *t->residency.flags)))
    return nomem(err);
  t->residency.n_flags = n;
  for (size_t i = 0; i < n; i++) {
    char f[64];
    snprintf(f, sizeof f, "spec.residency.flags[%zu]", i);
    const json_t *e = json_array_get(flags, i);
    if (!json_is_string(e) || !json_string_length(e) || strlen(json_string_value(e)) != json_string_length(e))
      return field_error(err, f, "FieldValueInvalid", "must be a non-empty string");
    if ((rc = dup_opt(json_string_value(e), &t->residency.flags[i], err)))
      return rc;
  }
  return 0;
}

static int parse_tenant_status(const json_t *obj, struct tn_tenant *t, struct tn_error *err) {
  const json_t *st, *pl;
  const char *s;
  int rc = get_obj(obj, "status", "status", &st, err);
  if (rc || !st)
    return rc;
  if ((rc = get_str(st, "state", "status.state", false, &s, err)))
    return rc;
  if (tn_state_parse(s, &t->status_state))
    return field_error(err, "status.state", "FieldValueNotSupported", "unsupported state \"%.64s\"", s);
  if ((rc = get_str(st, "lastCorrelationId", "status.lastCorrelationId", false, &s, err)) ||
      (rc = dup_opt(s, &t->last_correlation_id, err)))
    return rc;
  int64_t og = 0;
  if ((rc = get_count(st, "observedGeneration", "status.observedGeneration", false, &og, NULL, err)))
    return rc;
  t->observed_generation = og;
  if ((rc = get_obj(st, "placement", "status.placement", &pl, err)) || !pl)
    return rc;
  if ((rc = get_str(pl, "region", "status.placement.region", false, &s, err)) ||
      (rc = dup_opt(s, &t->status_region, err)))
    return rc;
  if ((rc = get_str(pl, "isolation", "status.placement.isolation", false, &s, err)))
    return rc;
  t->status_isolation_set = s && tn_isolation_parse(s, &t->status_isolation) == 0;
  return 0;
}

int tn_tenant_parse(const json_t *obj, struct tn_tenant **out, struct tn_error *err) {
  struct tn_tenant *t = NULL;
  const json_t *meta, *spec;
  const char *s;
  int rc;
  *out = NULL;
  if (!json_is_object(obj)) {
    rc = field_error(err, "(root)", "FieldValueTypeInvalid", "a Tenant must be a JSON object");
    goto out;
  }
  if (!(t = calloc(1, sizeof *t))) {
    rc = nomem(err);
    goto out;
  }
  if ((rc = get_obj(obj, "metadata", "metadata", &meta, err)) ||
      (rc = get_label(meta, "name", "metadata.name", true, &t->name, err)))
    goto out;
  if ((rc = get_str(meta, "uid", "metadata.uid", false, &s, err)) || (rc = dup_opt(s, &t->uid, err)))
    goto out;
  int64_t gen = 0;
  if ((rc = get_count(meta, "generation", "metadata.generation", false, &gen, NULL, err)))
    goto out;
  t->generation = gen;

  if ((rc = get_obj(obj, "spec", "spec", &spec, err)))
    goto out;
  if (!spec) {
    rc = field_error(err, "spec", "FieldValueRequired", "is required");
    goto out;
  }
  if ((rc = get_str(spec, "displayName", "spec.displayName", false, &s, err)) ||
      (rc = dup_opt(s, &t->display_name, err)))
    goto out;
  if ((rc = get_str(spec, "state", "spec.state", false, &s, err)))
    goto out;
  if (!s || !*s)
    t->state = TN_STATE_DRAFT;
  else if (tn_state_parse(s, &t->state)) {
    rc = field_error(
        err, "spec.state", "FieldValueNotSupported",
        "unsupported state; supported values: \"Draft\", \"Active\", \"Suspended\", \"Archived\", "
        "\"Deleted\"");
    goto out;
  }
  if ((rc = get_str(spec, "stateReason", "spec.stateReason", false, &s, err)) ||
      (rc = dup_opt(s, &t->state_reason, err)) ||
      (rc = get_str(spec, "deletionConfirmation", "spec.deletionConfirmation", false, &s, err)) ||
      (rc = dup_opt(s, &t->deletion_confirmation, err)))
    goto out;
  if ((rc = get_label(spec, "plan", "spec.plan", true, &t->plan, err)))
    goto out;
  if ((rc = get_str(spec, "isolation", "spec.isolation", false, &s, err)))
    goto out;
  if (!s || !*s)
    t->spec_isolation = TN_ISOLATION_SHARED;
  else if (tn_isolation_parse(s, &t->spec_isolation)) {
    rc = field_error(err, "spec.isolation", "FieldValueNotSupported",
                     "unsupported isolation mode; supported values: \"shared\", \"dedicated\", \"hybrid\"");
    goto out;
  }
  if ((rc = parse_residency(spec, t, err)) ||
      (rc = get_label_list(spec, "environments", "spec.environments", true, &t->environments,
                           &t->n_environments, err)) ||
      (rc = parse_contacts(spec, t, err)) || (rc = parse_external_ids(spec, t, err)) ||
      (rc = parse_identity(spec, t, err)) || (rc = parse_tenant_status(obj, t, err)))
    goto out;
  /* served by what the status shows once placed (a migration changes it), by the spec before */
  t->isolation = t->spec_isolation;
  if (t->status_isolation_set && t->status_region &&
      (t->status_state == TN_STATE_ACTIVE || t->status_state == TN_STATE_SUSPENDED ||
       t->status_state == TN_STATE_ARCHIVED))
    t->isolation = t->status_isolation;
  struct tn_rate_limits ov;
  if ((rc = tn_rate_limits_parse(json_object_get(spec, "rateLimitOverrides"), "spec.rateLimitOverrides",
                                 false, &ov, err)))
    goto out;
  t->rate_limit_overrides = tn_rate_limits_keys(&ov);
  *out = t;
  t = NULL;
out:
  tn_tenant_free(t);
  return rc;
}

/* ---- Plan ------------------------------------------------------------------------------------- */

void tn_plan_free(struct tn_plan *p) {
  if (!p)
    return;
  free(p->name);
  free(p->quotas.cpu);
  free(p->quotas.memory);
  free(p->quotas.storage);
  for (size_t i = 0; p->features && i < p->n_features; i++)
    free(p->features[i].name);
  free(p->features);
  for (size_t i = 0; p->ingress_namespaces && i < p->n_ingress_namespaces; i++)
    free(p->ingress_namespaces[i]);
  free(p->ingress_namespaces);
  free(p);
}

/* A quantity written as a string or a JSON integer; copied as text into *text. */
static int get_quantity(const json_t *obj, const char *key, const char *field, bool positive, char **text,
                        int64_t *milli, struct tn_error *err) {
  const json_t *v = json_object_get(obj, key);
  char buf[64];
  const char *s;
  if (!v || json_is_null(v))
    return field_error(err, field, "FieldValueRequired", "is required");
  if (json_is_integer(v)) {
    snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    s = buf;
  } else if (json_is_string(v)) {
    s = json_string_value(v);
  } else {
    return field_error(err, field, "FieldValueTypeInvalid",
                       "must be a quantity (a string like \"500m\" or \"8Gi\")");
  }
  if (s[0] == '-' || tn_quantity_parse(s, milli))
    return field_error(err, field, "FieldValueInvalid",
                       "\"%.64s\" is not a non-negative Kubernetes quantity (e.g. \"4\", \"500m\", \"8Gi\")",
                       s);
  if (positive && *milli == 0)
    return field_error(err, field, "FieldValueInvalid", "must be greater than zero");
  if (!(*text = strdup(s)))
    return nomem(err);
  return 0;
}

static int cmp_feature(const void *a, const void *b) {
  return strcmp(((const struct tn_feature *)a)->name, ((const struct tn_feature *)b)->name);
}

const char *tn_quota_scope_name(enum tn_quota_scope s) {
  return s == TN_QUOTA_SCOPE_TENANT ? "Tenant" : "Environment";
}

int tn_plan_parse(const json_t *obj, struct tn_plan **out, struct tn_error *err) {
  struct tn_plan *p = NULL;
  const json_t *meta, *spec, *q, *f, *rl;
  int rc;
  bool present;
  *out = NULL;
  if (!json_is_object(obj)) {
    rc = field_error(err, "(root)", "FieldValueTypeInvalid", "a Plan must be a JSON object");
    goto out;
  }
  if (!(p = calloc(1, sizeof *p))) {
    rc = nomem(err);
    goto out;
  }
  if ((rc = get_obj(obj, "metadata", "metadata", &meta, err)) ||
      (rc = get_label(meta, "name", "metadata.name", true, &p->name, err)) ||
      (rc = get_obj(obj, "spec", "spec", &spec, err)) ||
      (rc = get_obj(spec, "quotas", "spec.quotas", &q, err)))
    goto out;
  if (!q) {
    rc = field_error(err, "spec.quotas", "FieldValueRequired", "is required");
    goto out;
  }
  struct tn_quotas *qu = &p->quotas;
  if ((rc = get_quantity(q, "cpu", "spec.quotas.cpu", true, &qu->cpu, &qu->cpu_milli, err)) ||
      (rc = get_quantity(q, "memory", "spec.quotas.memory", true, &qu->memory, &qu->memory_milli, err)) ||
      (rc =
           get_quantity(q, "storage", "spec.quotas.storage", false, &qu->storage, &qu->storage_milli, err)) ||
      (rc = get_count(q, "pods", "spec.quotas.pods", true, &qu->pods, NULL, err)) ||
      (rc = get_count(q, "services", "spec.quotas.services", true, &qu->services, NULL, err)))
    goto out;
  if ((rc = get_count(q, "connections", "spec.quotas.connections", false, &qu->connections, &present, err)))
    goto out;
  if (!present)
    qu->connections = -1;
  if ((rc = get_count(q, "eventsPerDay", "spec.quotas.eventsPerDay", false, &qu->events_per_day, &present,
                      err)))
    goto out;
  if (!present)
    qu->events_per_day = -1;

  if ((rc = get_obj(spec, "features", "spec.features", &f, err)))
    goto out;
  if (f && json_object_size(f)) {
    if (!(p->features = calloc(json_object_size(f), sizeof *p->features))) {
      rc = nomem(err);
      goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)f, k, v) {
      char fld[200];
      snprintf(fld, sizeof fld, "spec.features.%.150s", k);
      if (!*k) {
        rc = field_error(err, "spec.features", "FieldValueInvalid", "a feature name must not be empty");
        goto out;
      }
      if (!json_is_boolean(v)) {
        rc = field_error(err, fld, "FieldValueTypeInvalid", "must be true or false");
        goto out;
      }
      struct tn_feature *ft = &p->features[p->n_features++];
      ft->enabled = json_is_true(v);
      if (!(ft->name = strdup(k))) {
        rc = nomem(err);
        goto out;
      }
    }
    qsort(p->features, p->n_features, sizeof *p->features, cmp_feature);
  }

  if ((rc = get_obj(spec, "rateLimits", "spec.rateLimits", &rl, err)) ||
      (rc = tn_rate_limits_parse(rl, "spec.rateLimits", true, &p->rate_limits, err)))
    goto out;
  p->has_rate_limits = rl != NULL;
  p->requests_per_second = p->rate_limits.all.requests_per_second;
  p->burst = p->rate_limits.all.burst;

  const char *ps;
  p->pod_security = TN_POD_SECURITY_RESTRICTED;
  if ((rc = get_str(spec, "podSecurity", "spec.podSecurity", false, &ps, err)))
    goto out;
  if (ps && *ps && tn_pod_security_parse(ps, &p->pod_security)) {
    rc = field_error(err, "spec.podSecurity", "FieldValueNotSupported",
                     "\"%.32s\" is not supported: use restricted (the default) or baseline; privileged is "
                     "never allowed on tenant namespaces (it would let a tenant's pods take over the node)",
                     ps);
    goto out;
  }
  const json_t *net;
  const char *xenv;
  if ((rc = get_obj(spec, "network", "spec.network", &net, err)) ||
      (rc = get_label_list(net, "ingressNamespaces", "spec.network.ingressNamespaces", true,
                           &p->ingress_namespaces, &p->n_ingress_namespaces, err)) ||
      (rc = get_str(net, "crossEnvironment", "spec.network.crossEnvironment", false, &xenv, err)))
    goto out;
  if (xenv && *xenv && strcmp(xenv, "Allow") && strcmp(xenv, "Deny")) {
    rc = field_error(err, "spec.network.crossEnvironment", "FieldValueNotSupported",
                     "\"%.32s\" is not supported: use Allow (the default) or Deny", xenv);
    goto out;
  }
  p->cross_environment = xenv && strcmp(xenv, "Deny") == 0 ? TN_CROSS_ENV_DENY : TN_CROSS_ENV_ALLOW;
  const char *scope;
  if ((rc = get_str(spec, "quotaScope", "spec.quotaScope", false, &scope, err)))
    goto out;
  if (scope && *scope && strcmp(scope, "Environment") && strcmp(scope, "Tenant")) {
    rc = field_error(err, "spec.quotaScope", "FieldValueNotSupported",
                     "\"%.32s\" is not supported: use Environment (the default: each environment gets the "
                     "plan's quotas) or Tenant (the quotas are split across the tenant's environments)",
                     scope);
    goto out;
  }
  p->quota_scope = scope && strcmp(scope, "Tenant") == 0 ? TN_QUOTA_SCOPE_TENANT : TN_QUOTA_SCOPE_ENVIRONMENT;
  *out = p;
  p = NULL;
out:
  tn_plan_free(p);
  return rc;
}

/* ---- Region ------------------------------------------------------------------------------------ */

void tn_region_free(struct tn_region *r) {
  if (!r)
    return;
  free(r->name);
  free(r);
}

int tn_region_parse(const json_t *obj, struct tn_region **out, struct tn_error *err) {
  struct tn_region *r = NULL;
  const json_t *meta, *spec, *modes;
  int rc;
  *out = NULL;
  if (!json_is_object(obj)) {
    rc = field_error(err, "(root)", "FieldValueTypeInvalid", "a Region must be a JSON object");
    goto out;
  }
  if (!(r = calloc(1, sizeof *r))) {
    rc = nomem(err);
    goto out;
  }
  if ((rc = get_obj(obj, "metadata", "metadata", &meta, err)) ||
      (rc = get_label(meta, "name", "metadata.name", true, &r->name, err)) ||
      (rc = get_obj(obj, "spec", "spec", &spec, err)))
    goto out;
  const json_t *avail = spec ? json_object_get(spec, "available") : NULL;
  if (avail && !json_is_null(avail)) {
    if (!json_is_boolean(avail)) {
      rc = field_error(err, "spec.available", "FieldValueTypeInvalid", "must be true or false");
      goto out;
    }
    r->available = json_is_true(avail);
  }
  if ((rc = get_arr(spec, "isolationModes", "spec.isolationModes", &modes, err)))
    goto out;
  for (size_t i = 0; modes && i < json_array_size(modes); i++) {
    enum tn_isolation m;
    char f[64];
    snprintf(f, sizeof f, "spec.isolationModes[%zu]", i);
    if (tn_isolation_parse(json_string_value(json_array_get(modes, i)), &m)) {
      rc = field_error(err, f, "FieldValueNotSupported",
                       "unsupported isolation mode; supported values: \"shared\", \"dedicated\", \"hybrid\"");
      goto out;
    }
    r->isolation_modes |= 1u << m;
  }
  *out = r;
  r = NULL;
out:
  tn_region_free(r);
  return rc;
}

bool tn_owned_by_tenant(const json_t *obj, const char *tenant_uid) {
  const json_t *refs = json_object_get(json_object_get(obj, "metadata"), "ownerReferences");
  size_t i;
  const json_t *r;
  if (!tenant_uid)
    return false;
  json_array_foreach(refs, i, r) {
    const char *kind = json_string_value(json_object_get(r, "kind"));
    const char *api = json_string_value(json_object_get(r, "apiVersion"));
    const char *ruid = json_string_value(json_object_get(r, "uid"));
    if (kind && api && ruid && strcmp(kind, "Tenant") == 0 &&
        strncmp(api, TN_API_GROUP "/", sizeof TN_API_GROUP) == 0 && strcmp(ruid, tenant_uid) == 0)
      return true;
  }
  return false;
}
