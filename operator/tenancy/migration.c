/* migration.c - the TenantMigration state machine, pure (see migration.h). */
#include "tenancy/migration.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/placement.h"
#include "tenancy/policy.h"

static const char *const phase_names[TN_MIG_PHASE_COUNT] = {
    "Pending", "Validate",  "ProvisionTarget", "Copy",    "Verify",      "Cutover",    "RollbackWindow",
    "CleanUp", "Succeeded", "Aborting",        "Aborted", "RollingBack", "RolledBack", "Failed"};

const char *tn_mig_phase_name(enum tn_mig_phase p) {
  return (unsigned)p < TN_MIG_PHASE_COUNT ? phase_names[p] : "?";
}

int tn_mig_phase_parse(const char *s, enum tn_mig_phase *out) {
  if (!s || !*s) {
    *out = TN_MIG_PENDING;
    return 0;
  }
  for (int i = 0; i < TN_MIG_PHASE_COUNT; i++)
    if (strcmp(s, phase_names[i]) == 0) {
      *out = (enum tn_mig_phase)i;
      return 0;
    }
  return TN_EINVALID;
}

bool tn_mig_phase_terminal(enum tn_mig_phase p) {
  return p == TN_MIG_SUCCEEDED || p == TN_MIG_ABORTED || p == TN_MIG_ROLLED_BACK || p == TN_MIG_FAILED;
}

bool tn_mig_phase_holds_database(enum tn_mig_phase p) {
  return p == TN_MIG_CUTOVER || p == TN_MIG_ROLLING_BACK;
}

bool tn_mig_phase_active(enum tn_mig_phase p) {
  return (unsigned)p < TN_MIG_PHASE_COUNT && !tn_mig_phase_terminal(p);
}

const char *tn_mig_condition_type(enum tn_mig_phase p) {
  switch (p) {
  case TN_MIG_VALIDATE:
    return "Validated";
  case TN_MIG_PROVISION_TARGET:
    return "TargetProvisioned";
  case TN_MIG_COPY:
    return "Copied";
  case TN_MIG_VERIFY:
    return "Verified";
  case TN_MIG_CUTOVER:
    return "CutOver";
  case TN_MIG_ROLLBACK_WINDOW:
    return "SourceRetained";
  case TN_MIG_CLEANUP:
    return "CleanedUp";
  case TN_MIG_ABORTING:
    return "Aborted";
  case TN_MIG_ROLLING_BACK:
    return "RolledBack";
  default:
    return NULL;
  }
}

const char *tn_mig_audit_action(enum tn_mig_phase p) {
  switch (p) {
  case TN_MIG_VALIDATE:
    return "migration.validate";
  case TN_MIG_PROVISION_TARGET:
    return "migration.provision-target";
  case TN_MIG_COPY:
    return "migration.copy";
  case TN_MIG_VERIFY:
    return "migration.verify";
  case TN_MIG_CUTOVER:
    return "migration.cutover";
  case TN_MIG_ROLLBACK_WINDOW:
    return "migration.rollback-window";
  case TN_MIG_CLEANUP:
    return "migration.cleanup";
  case TN_MIG_ABORTING:
    return "migration.abort";
  case TN_MIG_ROLLING_BACK:
    return "migration.rollback";
  case TN_MIG_FAILED:
    return "migration.fail";
  default:
    return "migration";
  }
}

int tn_mig_duration_parse(const char *s, double *out) {
  if (!s || !*s)
    return TN_EINVALID;
  double total = 0;
  const char *p = s;
  while (*p) {
    if (!isdigit((unsigned char)*p))
      return TN_EINVALID;
    char *end = NULL;
    long long n = strtoll(p, &end, 10);
    if (!end || end == p || n < 0 || n > 100000000LL)
      return TN_EINVALID;
    double unit;
    switch (*end) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    default:
      return TN_EINVALID;
    }
    total += (double)n * unit;
    p = end + 1;
  }
  *out = total;
  return 0;
}

int tn_mig_clock_parse(const char *s, int *minutes) {
  if (!s || strlen(s) != 5 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) || s[2] != ':' ||
      !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
    return TN_EINVALID;
  int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59)
    return TN_EINVALID;
  *minutes = h * 60 + m;
  return 0;
}

bool tn_mig_in_window(const struct tn_mig_window *w, double now, double *wait_s) {
  if (!w || !w->set || w->start_min == w->end_min)
    return true;
  double day = fmod(now, 86400.0);
  if (day < 0)
    day += 86400.0;
  double start = w->start_min * 60.0, end = w->end_min * 60.0;
  bool inside = start < end ? (day >= start && day < end) : (day >= start || day < end);
  if (!inside && wait_s) {
    double wait = start - day;
    if (wait < 0)
      wait += 86400.0;
    *wait_s = wait;
  }
  return inside;
}

int tn_mig_spec_parse(const json_t *spec, struct tn_mig_spec *out, struct tn_error *err) {
  memset(out, 0, sizeof *out);
  out->rollback_retention_s = TN_MIG_DEFAULT_RETENTION_S;
  if (!json_is_object(spec))
    return tn_error_set(err, TN_EINVALID, "spec is missing");
  const char *tenant = json_string_value(json_object_get(spec, "tenant"));
  if (!tenant || !tn_is_dns_label(tenant) || strlen(tenant) >= sizeof out->tenant)
    return tn_error_set(err, TN_EINVALID, "spec.tenant must name a Tenant (a DNS label)");
  snprintf(out->tenant, sizeof out->tenant, "%s", tenant);
  json_t *target = json_object_get(spec, "target");
  const char *region = json_string_value(json_object_get(target, "region"));
  const char *iso = json_string_value(json_object_get(target, "isolation"));
  if (!region && !iso)
    return tn_error_set(err, TN_EINVALID, "spec.target needs region and/or isolation");
  if (region) {
    if (!tn_is_dns_label(region) || strlen(region) >= sizeof out->target_region)
      return tn_error_set(err, TN_EINVALID, "spec.target.region must name a Region (a DNS label)");
    snprintf(out->target_region, sizeof out->target_region, "%s", region);
  }
  if (iso) {
    if (tn_isolation_parse(iso, &out->target_isolation))
      return tn_error_set(err, TN_EINVALID, "spec.target.isolation: unknown isolation mode %s", iso);
    out->target_isolation_set = true;
  }
  json_t *w = json_object_get(spec, "window");
  if (w && !json_is_null(w)) {
    const char *ws = json_string_value(json_object_get(w, "start"));
    const char *we = json_string_value(json_object_get(w, "end"));
    if (tn_mig_clock_parse(ws, &out->window.start_min) || tn_mig_clock_parse(we, &out->window.end_min))
      return tn_error_set(err, TN_EINVALID,
                          "spec.window needs start and end as HH:MM in UTC (e.g. {start: \"02:00\", end: "
                          "\"04:00\"})");
    out->window.set = true;
  }
  const char *ret = json_string_value(json_object_get(spec, "rollbackRetention"));
  if (ret) {
    if (tn_mig_duration_parse(ret, &out->rollback_retention_s) ||
        out->rollback_retention_s > TN_MIG_MAX_RETENTION_S)
      return tn_error_set(err, TN_EINVALID,
                          "spec.rollbackRetention must be a duration like 30m, 24h or 7d (at most 90d), "
                          "not %s",
                          ret);
  }
  out->abort = json_is_true(json_object_get(spec, "abort"));
  out->rollback = json_is_true(json_object_get(spec, "rollback"));
  return 0;
}

struct tn_mig_action tn_mig_next(enum tn_mig_phase phase, const struct tn_mig_spec *spec, double now,
                                 double cutover_at, bool cutover_started) {
  struct tn_mig_action a = {.kind = TN_MIG_ACT_RUN, .phase = phase, .why = ""};
  if (tn_mig_phase_terminal(phase) || (unsigned)phase >= TN_MIG_PHASE_COUNT)
    return (struct tn_mig_action){.kind = TN_MIG_ACT_NONE, .phase = phase, .why = "finished"};
  bool before_cutover = phase <= TN_MIG_VERIFY || (phase == TN_MIG_CUTOVER && !cutover_started);
  if (spec->abort && before_cutover)
    return (struct tn_mig_action){.kind = TN_MIG_ACT_GOTO, .phase = TN_MIG_ABORTING, .why = "spec.abort"};
  if (phase == TN_MIG_PENDING)
    return (struct tn_mig_action){.kind = TN_MIG_ACT_GOTO, .phase = TN_MIG_VALIDATE, .why = "started"};
  if (phase == TN_MIG_CUTOVER && !cutover_started) {
    double wait = 0;
    if (!tn_mig_in_window(&spec->window, now, &wait))
      return (struct tn_mig_action){
          .kind = TN_MIG_ACT_WAIT, .phase = phase, .wait_s = wait, .why = "waiting for the cutover window"};
  }
  if (phase == TN_MIG_ROLLBACK_WINDOW) {
    if (spec->rollback)
      return (struct tn_mig_action){
          .kind = TN_MIG_ACT_GOTO, .phase = TN_MIG_ROLLING_BACK, .why = "spec.rollback"};
    double end = cutover_at + spec->rollback_retention_s;
    if (cutover_at > 0 && now < end)
      return (struct tn_mig_action){.kind = TN_MIG_ACT_WAIT,
                                    .phase = phase,
                                    .wait_s = end - now,
                                    .why = spec->abort ? "spec.abort is ignored after the cutover (set "
                                                         "spec.rollback to go back); source kept"
                                                       : "source kept for rollbackRetention"};
    return (struct tn_mig_action){
        .kind = TN_MIG_ACT_GOTO, .phase = TN_MIG_CLEANUP, .why = "rollbackRetention over"};
  }
  return a;
}

enum tn_mig_phase tn_mig_after(enum tn_mig_phase p) {
  switch (p) {
  case TN_MIG_PENDING:
    return TN_MIG_VALIDATE;
  case TN_MIG_VALIDATE:
    return TN_MIG_PROVISION_TARGET;
  case TN_MIG_PROVISION_TARGET:
    return TN_MIG_COPY;
  case TN_MIG_COPY:
    return TN_MIG_VERIFY;
  case TN_MIG_VERIFY:
    return TN_MIG_CUTOVER;
  case TN_MIG_CUTOVER:
    return TN_MIG_ROLLBACK_WINDOW;
  case TN_MIG_ROLLBACK_WINDOW:
    return TN_MIG_CLEANUP;
  case TN_MIG_CLEANUP:
    return TN_MIG_SUCCEEDED;
  case TN_MIG_ABORTING:
    return TN_MIG_ABORTED;
  case TN_MIG_ROLLING_BACK:
    return TN_MIG_ROLLED_BACK;
  default:
    return p;
  }
}

const char *tn_mig_target_region(const struct tn_mig_spec *spec, const char *source_region) {
  return spec->target_region[0] ? spec->target_region : source_region;
}

enum tn_isolation tn_mig_target_isolation(const struct tn_mig_spec *spec,
                                          enum tn_isolation source_isolation) {
  return spec->target_isolation_set ? spec->target_isolation : source_isolation;
}

int tn_mig_check_target(const struct tn_mig_spec *spec, const char *source_region,
                        enum tn_isolation source_isolation, const struct tn_residency *residency,
                        struct tn_error *err) {
  if (!source_region || !*source_region)
    return tn_error_set(err, TN_EINVALID, "tenant %s is not placed in a region yet: nothing to migrate",
                        spec->tenant);
  const char *region = tn_mig_target_region(spec, source_region);
  enum tn_isolation iso = tn_mig_target_isolation(spec, source_isolation);
  if (strcmp(region, source_region) == 0 && iso == source_isolation)
    return tn_error_set(err, TN_EINVALID,
                        "tenant %s is already in region %s with isolation %s: set spec.target.region to "
                        "another region and/or spec.target.isolation to another isolation mode",
                        spec->tenant, source_region, tn_isolation_name(source_isolation));
  if (residency && strcmp(region, source_region) != 0 && !tn_placement_allows(residency, region))
    return tn_error_set(err, TN_EFORBIDDEN,
                        "residency of tenant %s does not allow region %s: add it to "
                        "spec.residency.allowedRegions (if its policies permit) or choose an allowed region",
                        spec->tenant, region);
  return 0;
}

int tn_mig_check_policies(const struct tn_tenant *t, const struct tn_policy *const *policies, size_t n,
                          const char *region, struct tn_error *err) {
  for (size_t i = 0; i < n; i++) {
    const struct tn_policy *p = policies[i];
    for (size_t r = 0; p && r < p->n_residency; r++) {
      const struct tn_policy_residency_rule *rule = &p->residency[r];
      bool flagged = false, allowed = false;
      for (size_t f = 0; f < t->residency.n_flags; f++)
        flagged |= rule->flag && strcmp(t->residency.flags[f], rule->flag) == 0;
      if (!flagged)
        continue;
      char list[512] = "";
      size_t len = 0;
      for (size_t a = 0; a < rule->n_allowed_regions; a++) {
        allowed |= strcmp(rule->allowed_regions[a], region) == 0;
        int w = snprintf(list + len, sizeof list - len, "%s%s", a ? ", " : "", rule->allowed_regions[a]);
        if (w > 0 && (size_t)w < sizeof list - len)
          len += (size_t)w;
      }
      if (!allowed)
        return tn_error_set(err, TN_EFORBIDDEN,
                            "TenancyPolicy %s: residency flag %s of tenant %s allows regions [%s], not %s: "
                            "choose one of those regions as spec.target.region",
                            p->name ? p->name : "?", rule->flag, t->name, list, region);
    }
  }
  return 0;
}

int tn_mig_map_schema(enum tn_isolation from, enum tn_isolation to, const char *role, const char *schema,
                      char out[64], struct tn_error *err) {
  bool from_shared = from == TN_ISOLATION_SHARED, to_shared = to == TN_ISOLATION_SHARED;
  const char *dst = schema;
  if (from_shared && !to_shared)
    dst = "public";
  else if (!from_shared && to_shared) {
    if (strcmp(schema, "public") != 0 && strcmp(schema, role) != 0)
      return tn_error_set(err, TN_EINVALID,
                          "table(s) in schema %s: a shared tenant has one schema (%s), which takes the "
                          "tables of schema public (and of %s); move the tables of %s to public before "
                          "migrating to shared, or keep a database of the tenant (dedicated or hybrid)",
                          schema, role, role, schema);
    dst = role;
  }
  if (strlen(dst) >= 64)
    return tn_error_set(err, TN_EINVALID, "schema name %s is too long", dst);
  snprintf(out, 64, "%s", dst);
  return 0;
}

static const struct tn_mig_table_sum *find_sum(const struct tn_mig_table_sum *v, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i].name, name) == 0)
      return &v[i];
  return NULL;
}

int tn_mig_compare_sums(const struct tn_mig_table_sum *src, size_t ns, const struct tn_mig_table_sum *dst,
                        size_t nd, struct tn_error *err) {
  for (size_t i = 0; i < ns; i++) {
    const struct tn_mig_table_sum *d = find_sum(dst, nd, src[i].name);
    if (!d)
      return tn_error_set(err, TN_ECONFLICT, "table %s is missing on the target", src[i].name);
    if (d->rows != src[i].rows)
      return tn_error_set(err, TN_ECONFLICT, "table %s: %lld rows on the source, %lld on the target",
                          src[i].name, src[i].rows, d->rows);
    if (strcmp(d->md5, src[i].md5) != 0)
      return tn_error_set(err, TN_ECONFLICT, "table %s: checksums differ (source %s, target %s)", src[i].name,
                          src[i].md5, d->md5);
  }
  for (size_t i = 0; i < nd; i++)
    if (!find_sum(src, ns, dst[i].name))
      return tn_error_set(err, TN_ECONFLICT, "table %s is on the target but not on the source", dst[i].name);
  return 0;
}

bool tn_mig_admit(const json_t *obj, const json_t *migrations, char *msg, size_t n) {
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  const char *tenant = json_string_value(json_object_get(json_object_get(obj, "spec"), "tenant"));
  size_t i;
  const json_t *m;
  if (!tenant)
    return true; /* the schema refuses it */
  json_array_foreach(migrations, i, m) {
    const char *mn = json_string_value(json_object_get(json_object_get(m, "metadata"), "name"));
    const char *mt = json_string_value(json_object_get(json_object_get(m, "spec"), "tenant"));
    const char *ph = json_string_value(json_object_get(json_object_get(m, "status"), "phase"));
    enum tn_mig_phase p;
    if (!mn || !mt || strcmp(mt, tenant) != 0 || (name && strcmp(mn, name) == 0))
      continue;
    if (tn_mig_phase_parse(ph, &p) == 0 && !tn_mig_phase_active(p))
      continue;
    snprintf(
        msg, n,
        "TenantMigration %s of tenant %s is running (phase %s): one migration of a tenant at a time; wait "
        "for it to finish, or abort it (spec.abort: true) before the cutover",
        mn, tenant, ph && *ph ? ph : "Pending");
    return false;
  }
  return true;
}
