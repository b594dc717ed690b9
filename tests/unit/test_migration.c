/* test_migration.c - the TenantMigration state machine (tenancy/migration.c): spec parsing,
 * durations and windows, the order of the steps, abort and rollback rules, target checks and
 * checksum comparison. */
#include <criterion/criterion.h>
#include <string.h>

#include "tenancy/migration.h"
#include "tenancy/policy.h"

static struct tn_mig_spec spec_of(const char *json) {
  json_error_t je;
  json_t *j = json_loads(json, 0, &je);
  cr_assert(j, "bad test JSON: %s", je.text);
  struct tn_mig_spec s;
  struct tn_error err = {0};
  int rc = tn_mig_spec_parse(j, &s, &err);
  json_decref(j);
  cr_assert_eq(rc, 0, "%s", err.message);
  return s;
}

static int spec_err(const char *json, char *msg, size_t n) {
  json_t *j = json_loads(json, 0, NULL);
  struct tn_mig_spec s;
  struct tn_error err = {0};
  int rc = tn_mig_spec_parse(j, &s, &err);
  json_decref(j);
  snprintf(msg, n, "%s", err.message);
  return rc;
}

Test(migration, phase_names_round_trip) {
  for (int i = 0; i < TN_MIG_PHASE_COUNT; i++) {
    enum tn_mig_phase p;
    cr_assert_eq(tn_mig_phase_parse(tn_mig_phase_name((enum tn_mig_phase)i), &p), 0);
    cr_assert_eq((int)p, i);
  }
  enum tn_mig_phase p = TN_MIG_COPY;
  cr_assert_eq(tn_mig_phase_parse("", &p), 0);
  cr_assert_eq(p, TN_MIG_PENDING);
  cr_assert_eq(tn_mig_phase_parse("Copying", &p), TN_EINVALID);
  cr_assert_str_eq(tn_mig_phase_name((enum tn_mig_phase)99), "?");
}

Test(migration, the_happy_path_in_order) {
  enum tn_mig_phase want[] = {TN_MIG_VALIDATE, TN_MIG_PROVISION_TARGET, TN_MIG_COPY,    TN_MIG_VERIFY,
                              TN_MIG_CUTOVER,  TN_MIG_ROLLBACK_WINDOW,  TN_MIG_CLEANUP, TN_MIG_SUCCEEDED};
  enum tn_mig_phase p = TN_MIG_PENDING;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    p = tn_mig_after(p);
    cr_assert_eq(p, want[i], "step %zu: %s", i, tn_mig_phase_name(p));
    cr_assert_eq(tn_mig_phase_terminal(p), p == TN_MIG_SUCCEEDED);
  }
  cr_assert_eq(tn_mig_after(TN_MIG_ABORTING), TN_MIG_ABORTED);
  cr_assert_eq(tn_mig_after(TN_MIG_ROLLING_BACK), TN_MIG_ROLLED_BACK);
  cr_assert_eq(tn_mig_after(TN_MIG_FAILED), TN_MIG_FAILED);
}

Test(migration, every_step_has_a_condition_and_an_audit_action) {
  for (int i = TN_MIG_VALIDATE; i <= TN_MIG_CLEANUP; i++) {
    cr_assert_not_null(tn_mig_condition_type((enum tn_mig_phase)i));
    cr_assert(strncmp(tn_mig_audit_action((enum tn_mig_phase)i), "migration.", 10) == 0);
  }
  cr_assert_null(tn_mig_condition_type(TN_MIG_SUCCEEDED));
  cr_assert_str_eq(tn_mig_condition_type(TN_MIG_CUTOVER), "CutOver");
}

Test(migration, spec_parse_and_defaults) {
  struct tn_mig_spec s = spec_of("{\"tenant\":\"acme\",\"target\":{\"region\":\"eu-central-1\"}}");
  cr_assert_str_eq(s.tenant, "acme");
  cr_assert_str_eq(s.target_region, "eu-central-1");
  cr_assert_not(s.target_isolation_set);
  cr_assert_float_eq(s.rollback_retention_s, TN_MIG_DEFAULT_RETENTION_S, 1e-9);
  cr_assert_not(s.window.set);
  s = spec_of(
      "{\"tenant\":\"acme\",\"target\":{\"region\":\"b\",\"isolation\":\"dedicated\"},"
      "\"window\":{\"start\":\"22:00\",\"end\":\"02:00\"},\"rollbackRetention\":\"1h30m\",\"abort\":true}");
  cr_assert(s.target_isolation_set);
  cr_assert_eq(s.target_isolation, TN_ISOLATION_DEDICATED);
  cr_assert(s.window.set);
  cr_assert_eq(s.window.start_min, 22 * 60);
  cr_assert_eq(s.window.end_min, 120);
  cr_assert_float_eq(s.rollback_retention_s, 5400, 1e-9);
  cr_assert(s.abort);
  cr_assert_not(s.rollback);
}

Test(migration, spec_errors_name_the_field) {
  char msg[1024];
  cr_assert_eq(spec_err("{\"target\":{\"region\":\"b\"}}", msg, sizeof msg), TN_EINVALID);
  cr_assert(strstr(msg, "spec.tenant"), "%s", msg);
  cr_assert_eq(spec_err("{\"tenant\":\"a\",\"target\":{}}", msg, sizeof msg), TN_EINVALID);
  cr_assert(strstr(msg, "spec.target"), "%s", msg);
  cr_assert_eq(spec_err("{\"tenant\":\"a\",\"target\":{\"region\":\"B_1\"}}", msg, sizeof msg), TN_EINVALID);
  cr_assert(strstr(msg, "spec.target.region"), "%s", msg);
  cr_assert_eq(spec_err("{\"tenant\":\"a\",\"target\":{\"isolation\":\"solo\"}}", msg, sizeof msg),
               TN_EINVALID);
  cr_assert_eq(spec_err("{\"tenant\":\"a\",\"target\":{\"region\":\"b\"},\"rollbackRetention\":\"1y\"}", msg,
                        sizeof msg),
               TN_EINVALID);
  cr_assert(strstr(msg, "rollbackRetention"), "%s", msg);
  cr_assert_eq(spec_err("{\"tenant\":\"a\",\"target\":{\"region\":\"b\"},\"rollbackRetention\":\"91d\"}", msg,
                        sizeof msg),
               TN_EINVALID);
  cr_assert_eq(spec_err("{\"tenant\":\"a\",\"target\":{\"region\":\"b\"},\"window\":{\"start\":\"24:00\","
                        "\"end\":\"01:00\"}}",
                        msg, sizeof msg),
               TN_EINVALID);
  cr_assert(strstr(msg, "spec.window"), "%s", msg);
}

Test(migration, durations) {
  double d = -1;
  cr_assert_eq(tn_mig_duration_parse("0s", &d), 0);
  cr_assert_float_eq(d, 0, 1e-9);
  cr_assert_eq(tn_mig_duration_parse("7d", &d), 0);
  cr_assert_float_eq(d, 7 * 86400, 1e-9);
  cr_assert_eq(tn_mig_duration_parse("2h15m10s", &d), 0);
  cr_assert_float_eq(d, 2 * 3600 + 15 * 60 + 10, 1e-9);
  const char *bad[] = {"", "h", "10", "-1h", "1.5h", "1h ", "1w"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(tn_mig_duration_parse(bad[i], &d), TN_EINVALID, "%s", bad[i]);
}

Test(migration, window_inside_outside_and_across_midnight) {
  struct tn_mig_window w = {.set = true, .start_min = 2 * 60, .end_min = 4 * 60};
  double day = 20000 * 86400.0, wait = 0;
  cr_assert(tn_mig_in_window(&w, day + 3 * 3600, &wait));
  cr_assert_not(tn_mig_in_window(&w, day + 1 * 3600, &wait));
  cr_assert_float_eq(wait, 3600, 1e-6);
  cr_assert_not(tn_mig_in_window(&w, day + 5 * 3600, &wait));
  cr_assert_float_eq(wait, 21 * 3600, 1e-6);
  struct tn_mig_window x = {.set = true, .start_min = 23 * 60, .end_min = 60};
  cr_assert(tn_mig_in_window(&x, day + 23.5 * 3600, NULL));
  cr_assert(tn_mig_in_window(&x, day + 0.5 * 3600, NULL));
  cr_assert_not(tn_mig_in_window(&x, day + 12 * 3600, NULL));
  struct tn_mig_window none = {0};
  cr_assert(tn_mig_in_window(&none, day, NULL));
}

Test(migration, next_runs_the_recorded_step) {
  struct tn_mig_spec s = spec_of("{\"tenant\":\"a\",\"target\":{\"region\":\"b\"}}");
  struct tn_mig_action a = tn_mig_next(TN_MIG_PENDING, &s, 1000, 0, false);
  cr_assert_eq(a.kind, TN_MIG_ACT_GOTO);
  cr_assert_eq(a.phase, TN_MIG_VALIDATE);
  for (int p = TN_MIG_VALIDATE; p <= TN_MIG_CUTOVER; p++) {
    a = tn_mig_next((enum tn_mig_phase)p, &s, 1000, 0, false);
    cr_assert_eq(a.kind, TN_MIG_ACT_RUN, "%s", tn_mig_phase_name((enum tn_mig_phase)p));
    cr_assert_eq((int)a.phase, p);
  }
  for (int p = TN_MIG_SUCCEEDED; p < TN_MIG_PHASE_COUNT; p++)
    if (tn_mig_phase_terminal((enum tn_mig_phase)p))
      cr_assert_eq(tn_mig_next((enum tn_mig_phase)p, &s, 1000, 0, false).kind, TN_MIG_ACT_NONE);
}

Test(migration, abort_only_before_the_freeze) {
  struct tn_mig_spec s = spec_of("{\"tenant\":\"a\",\"target\":{\"region\":\"b\"},\"abort\":true}");
  for (int p = TN_MIG_PENDING; p <= TN_MIG_VERIFY; p++) {
    struct tn_mig_action a = tn_mig_next((enum tn_mig_phase)p, &s, 1000, 0, false);
    cr_assert_eq(a.kind, TN_MIG_ACT_GOTO);
    cr_assert_eq(a.phase, TN_MIG_ABORTING);
  }
  cr_assert_eq(tn_mig_next(TN_MIG_CUTOVER, &s, 1000, 0, false).phase, TN_MIG_ABORTING);
  /* once the freeze began the cutover finishes; afterwards abort is ignored (rollback is the way) */
  struct tn_mig_action a = tn_mig_next(TN_MIG_CUTOVER, &s, 1000, 0, true);
  cr_assert_eq(a.kind, TN_MIG_ACT_RUN);
  cr_assert_eq(a.phase, TN_MIG_CUTOVER);
  a = tn_mig_next(TN_MIG_ROLLBACK_WINDOW, &s, 1000, 900, true);
  cr_assert_eq(a.kind, TN_MIG_ACT_WAIT);
  cr_assert(strstr(a.why, "spec.abort is ignored"), "%s", a.why);
  cr_assert_eq(tn_mig_next(TN_MIG_ABORTING, &s, 1000, 0, false).kind, TN_MIG_ACT_RUN);
}

Test(migration, rollback_window_waits_then_cleans_up) {
  struct tn_mig_spec s =
      spec_of("{\"tenant\":\"a\",\"target\":{\"region\":\"b\"},\"rollbackRetention\":\"10m\"}");
  struct tn_mig_action a = tn_mig_next(TN_MIG_ROLLBACK_WINDOW, &s, 1000 + 60, 1000, false);
  cr_assert_eq(a.kind, TN_MIG_ACT_WAIT);
  cr_assert_float_eq(a.wait_s, 540, 1e-6);
  a = tn_mig_next(TN_MIG_ROLLBACK_WINDOW, &s, 1000 + 600, 1000, false);
  cr_assert_eq(a.kind, TN_MIG_ACT_GOTO);
  cr_assert_eq(a.phase, TN_MIG_CLEANUP);
  s.rollback = true;
  a = tn_mig_next(TN_MIG_ROLLBACK_WINDOW, &s, 1000 + 60, 1000, false);
  cr_assert_eq(a.kind, TN_MIG_ACT_GOTO);
  cr_assert_eq(a.phase, TN_MIG_ROLLING_BACK);
  /* rollback is only a window thing: before the cutover it does nothing */
  cr_assert_eq(tn_mig_next(TN_MIG_COPY, &s, 1000, 0, false).kind, TN_MIG_ACT_RUN);
}

Test(migration, cutover_waits_for_the_window) {
  struct tn_mig_spec s = spec_of(
      "{\"tenant\":\"a\",\"target\":{\"region\":\"b\"},\"window\":{\"start\":\"02:00\",\"end\":\"03:00\"}}");
  double day = 20000 * 86400.0;
  struct tn_mig_action a = tn_mig_next(TN_MIG_CUTOVER, &s, day + 3600, 0, false);
  cr_assert_eq(a.kind, TN_MIG_ACT_WAIT);
  cr_assert_float_eq(a.wait_s, 3600, 1e-6);
  cr_assert_eq(tn_mig_next(TN_MIG_CUTOVER, &s, day + 2.5 * 3600, 0, false).kind, TN_MIG_ACT_RUN);
  /* a freeze that began in the window finishes even when the window closed meanwhile */
  cr_assert_eq(tn_mig_next(TN_MIG_CUTOVER, &s, day + 5 * 3600, 0, true).kind, TN_MIG_ACT_RUN);
  /* the steps before the cutover run at any time */
  cr_assert_eq(tn_mig_next(TN_MIG_COPY, &s, day + 3600, 0, false).kind, TN_MIG_ACT_RUN);
}

Test(migration, holds_and_active) {
  cr_assert(tn_mig_phase_holds_database(TN_MIG_CUTOVER));
  cr_assert(tn_mig_phase_holds_database(TN_MIG_ROLLING_BACK));
  cr_assert_not(tn_mig_phase_holds_database(TN_MIG_COPY));
  cr_assert(tn_mig_phase_active(TN_MIG_PENDING));
  cr_assert(tn_mig_phase_active(TN_MIG_ROLLBACK_WINDOW));
  cr_assert_not(tn_mig_phase_active(TN_MIG_ROLLED_BACK));
}

Test(migration, target_checks) {
  struct tn_mig_spec s = spec_of("{\"tenant\":\"acme\",\"target\":{\"region\":\"eu-2\"}}");
  struct tn_error err = {0};
  char *allowed[] = {"eu-1", "eu-2"};
  struct tn_residency r = {.allowed_regions = allowed, .n_allowed_regions = 2};
  cr_assert_eq(tn_mig_check_target(&s, "eu-1", TN_ISOLATION_SHARED, &r, &err), 0, "%s", err.message);
  cr_assert_eq(tn_mig_check_target(&s, NULL, TN_ISOLATION_SHARED, &r, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "not placed"), "%s", err.message);
  cr_assert_eq(tn_mig_check_target(&s, "eu-2", TN_ISOLATION_SHARED, &r, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "already in region eu-2"), "%s", err.message);
  r.n_allowed_regions = 1;
  cr_assert_eq(tn_mig_check_target(&s, "eu-1", TN_ISOLATION_SHARED, &r, &err), TN_EFORBIDDEN);
  cr_assert(strstr(err.message, "does not allow region eu-2"), "%s", err.message);
  r.n_allowed_regions = 2;
  s.target_isolation_set = true;
  s.target_isolation = TN_ISOLATION_DEDICATED;
  /* another region and another isolation at once */
  cr_assert_eq(tn_mig_check_target(&s, "eu-1", TN_ISOLATION_SHARED, &r, &err), 0, "%s", err.message);
  /* the same region is fine when the isolation changes (even the same server: Validate) */
  cr_assert_eq(tn_mig_check_target(&s, "eu-2", TN_ISOLATION_SHARED, &r, &err), 0, "%s", err.message);
  cr_assert_eq(tn_mig_check_target(&s, "eu-2", TN_ISOLATION_DEDICATED, &r, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "already in region eu-2 with isolation dedicated"), "%s", err.message);
  s.target_isolation = TN_ISOLATION_SHARED;
  cr_assert_eq(tn_mig_check_target(&s, "eu-1", TN_ISOLATION_SHARED, &r, &err), 0);
}

Test(migration, isolation_only_target) {
  struct tn_mig_spec s = spec_of("{\"tenant\":\"acme\",\"target\":{\"isolation\":\"dedicated\"}}");
  struct tn_error err = {0};
  char *allowed[] = {"eu-1"};
  struct tn_residency r = {.allowed_regions = allowed, .n_allowed_regions = 1};
  cr_assert_str_eq(tn_mig_target_region(&s, "eu-1"), "eu-1");
  cr_assert_eq(tn_mig_target_isolation(&s, TN_ISOLATION_SHARED), TN_ISOLATION_DEDICATED);
  cr_assert_eq(tn_mig_check_target(&s, "eu-1", TN_ISOLATION_SHARED, &r, &err), 0, "%s", err.message);
  /* the residency no longer lists the region it is in: staying there is no move */
  r.n_allowed_regions = 0;
  char *other[] = {"us-1"};
  r.allowed_regions = other;
  r.n_allowed_regions = 1;
  cr_assert_eq(tn_mig_check_target(&s, "eu-1", TN_ISOLATION_SHARED, &r, &err), 0, "%s", err.message);
  cr_assert_eq(tn_mig_check_target(&s, "eu-1", TN_ISOLATION_DEDICATED, &r, &err), TN_EINVALID);
  struct tn_mig_spec none = spec_of("{\"tenant\":\"acme\",\"target\":{\"region\":\"eu-1\"}}");
  cr_assert_eq(tn_mig_target_isolation(&none, TN_ISOLATION_HYBRID), TN_ISOLATION_HYBRID);
}

Test(migration, schema_mapping) {
  char out[64];
  struct tn_error err = {0};
  cr_assert_eq(tn_mig_map_schema(TN_ISOLATION_SHARED, TN_ISOLATION_SHARED, "tn_a", "tn_a", out, &err), 0);
  cr_assert_str_eq(out, "tn_a");
  cr_assert_eq(tn_mig_map_schema(TN_ISOLATION_SHARED, TN_ISOLATION_DEDICATED, "tn_a", "tn_a", out, &err), 0);
  cr_assert_str_eq(out, "public");
  cr_assert_eq(tn_mig_map_schema(TN_ISOLATION_SHARED, TN_ISOLATION_HYBRID, "tn_a", "tn_a", out, &err), 0);
  cr_assert_str_eq(out, "public");
  cr_assert_eq(tn_mig_map_schema(TN_ISOLATION_DEDICATED, TN_ISOLATION_SHARED, "tn_a", "public", out, &err),
               0);
  cr_assert_str_eq(out, "tn_a");
  cr_assert_eq(tn_mig_map_schema(TN_ISOLATION_HYBRID, TN_ISOLATION_SHARED, "tn_a", "tn_a", out, &err), 0);
  cr_assert_str_eq(out, "tn_a");
  cr_assert_eq(tn_mig_map_schema(TN_ISOLATION_DEDICATED, TN_ISOLATION_HYBRID, "tn_a", "app", out, &err), 0);
  cr_assert_str_eq(out, "app");
  cr_assert_eq(tn_mig_map_schema(TN_ISOLATION_DEDICATED, TN_ISOLATION_SHARED, "tn_a", "app", out, &err),
               TN_EINVALID);
  cr_assert(strstr(err.message, "schema app") && strstr(err.message, "move the tables of app to public"),
            "%s", err.message);
}

Test(migration, policies_narrow_the_target) {
  char *flags[] = {"eu-only"};
  char *eu[] = {"eu-1", "eu-2"};
  struct tn_policy_residency_rule rule = {.flag = "eu-only", .allowed_regions = eu, .n_allowed_regions = 2};
  struct tn_policy p = {.name = "eu-residency", .residency = &rule, .n_residency = 1};
  const struct tn_policy *ps[] = {&p};
  struct tn_tenant t = {.name = "acme", .residency = {.flags = flags, .n_flags = 1}};
  struct tn_error err = {0};
  cr_assert_eq(tn_mig_check_policies(&t, ps, 1, "eu-2", &err), 0, "%s", err.message);
  cr_assert_eq(tn_mig_check_policies(&t, ps, 1, "us-1", &err), TN_EFORBIDDEN);
  cr_assert(strstr(err.message, "TenancyPolicy eu-residency") &&
                strstr(err.message, "[eu-1, eu-2], not us-1"),
            "%s", err.message);
  t.residency.n_flags = 0; /* the rule is not the tenant's */
  cr_assert_eq(tn_mig_check_policies(&t, ps, 1, "us-1", &err), 0);
  cr_assert_eq(tn_mig_check_policies(&t, NULL, 0, "us-1", &err), 0);
}

Test(migration, compare_sums) {
  struct tn_mig_table_sum a[] = {{"s.t1", 3, "aaaa"}, {"s.t2", 0, "bbbb"}};
  struct tn_mig_table_sum b[] = {{"s.t2", 0, "bbbb"}, {"s.t1", 3, "aaaa"}};
  struct tn_error err = {0};
  cr_assert_eq(tn_mig_compare_sums(a, 2, b, 2, &err), 0);
  b[1].rows = 2;
  cr_assert_eq(tn_mig_compare_sums(a, 2, b, 2, &err), TN_ECONFLICT);
  cr_assert(strstr(err.message, "s.t1: 3 rows on the source, 2 on the target"), "%s", err.message);
  b[1].rows = 3;
  strcpy(b[1].md5, "cccc");
  cr_assert_eq(tn_mig_compare_sums(a, 2, b, 2, &err), TN_ECONFLICT);
  cr_assert(strstr(err.message, "checksums differ"), "%s", err.message);
  cr_assert_eq(tn_mig_compare_sums(a, 2, b, 1, &err), TN_ECONFLICT);
  cr_assert(strstr(err.message, "missing on the target"), "%s", err.message);
  cr_assert_eq(tn_mig_compare_sums(a, 1, a, 2, &err), TN_ECONFLICT);
  cr_assert(strstr(err.message, "not on the source"), "%s", err.message);
}

Test(migration, admit_one_running_migration_per_tenant) {
  json_t *all = json_loads("[{\"metadata\":{\"name\":\"old\"},\"spec\":{\"tenant\":\"acme\"},"
                           "\"status\":{\"phase\":\"Succeeded\"}},"
                           "{\"metadata\":{\"name\":\"other\"},\"spec\":{\"tenant\":\"globex\"},"
                           "\"status\":{\"phase\":\"Copy\"}}]",
                           0, NULL);
  json_t *obj = json_loads("{\"metadata\":{\"name\":\"new\"},\"spec\":{\"tenant\":\"acme\"}}", 0, NULL);
  char msg[512] = "";
  cr_assert(tn_mig_admit(obj, all, msg, sizeof msg), "finished or other tenants' migrations do not count");
  /* one that has not started yet (no status) counts as running */
  json_array_append_new(
      all, json_loads("{\"metadata\":{\"name\":\"first\"},\"spec\":{\"tenant\":\"acme\"}}", 0, NULL));
  cr_assert_not(tn_mig_admit(obj, all, msg, sizeof msg));
  cr_assert(strstr(msg, "TenantMigration first of tenant acme is running (phase Pending)"), "%s", msg);
  /* itself (a re-apply of the same object) does not */
  json_object_set_new(json_object_get(obj, "metadata"), "name", json_string("first"));
  cr_assert(tn_mig_admit(obj, all, msg, sizeof msg));
  json_decref(obj);
  json_decref(all);
}
