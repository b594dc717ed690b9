/* test_failover_plan.c - region failover, the pure part (failover/plan.h): reading
 * spec.failover, what starts a failover or a drill, residency, object names, subscription
 * connection strings and the drill's RPO and statistics. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "failover/plan.h"

static json_t *region(const char *text) {
  json_error_t e;
  json_t *r = json_loads(text, 0, &e);
  cr_assert(r, "bad fixture: %s", e.text);
  return r;
}

Test(failover_plan, parse_defaults_and_fields) {
  json_t *r = region("{\"metadata\":{\"name\":\"eu-west-1\"},\"spec\":{\"available\":true,"
                     "\"failover\":{\"standbyRegion\":\"eu-central-1\"}}}");
  struct tn_failover_spec s;
  struct tn_error err = {0};
  cr_assert_eq(tn_failover_spec_parse(r, &s, &err), 0, "%s", err.message);
  cr_assert(s.configured);
  cr_assert_str_eq(s.standby, "eu-central-1");
  cr_assert_eq(s.mode, TN_FAILOVER_WARM);
  cr_assert(!s.active);
  cr_assert(s.available);
  cr_assert_float_eq(s.snapshot_interval_s, 300, 1e-9);
  cr_assert_null(s.drill);
  json_decref(r);

  r = region(
      "{\"metadata\":{\"name\":\"a\",\"annotations\":{\"tenancy.dev/failover-drill\":\"fd-1\"}},"
      "\"spec\":{\"available\":false,\"failover\":{\"standbyRegion\":\"b\",\"mode\":\"cold\",\"active\":true,"
      "\"snapshotIntervalSeconds\":60}},\"status\":{\"failover\":{\"phase\":\"FailedOver\","
      "\"lastFailover\":{\"drill\":\"fd-0\"}}}}");
  cr_assert_eq(tn_failover_spec_parse(r, &s, &err), 0);
  cr_assert_eq(s.mode, TN_FAILOVER_COLD);
  cr_assert(s.active && !s.available && s.failed_over);
  cr_assert_float_eq(s.snapshot_interval_s, 60, 1e-9);
  cr_assert_str_eq(s.drill, "fd-1");
  cr_assert_str_eq(s.drill_done, "fd-0");
  json_decref(r);
}

Test(failover_plan, parse_refuses_self_and_missing_standby) {
  struct tn_failover_spec s;
  struct tn_error err = {0};
  json_t *r = region("{\"metadata\":{\"name\":\"a\"},\"spec\":{\"failover\":{\"standbyRegion\":\"a\"}}}");
  cr_assert_eq(tn_failover_spec_parse(r, &s, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "names this Region (a)"), "%s", err.message);
  json_decref(r);
  r = region("{\"metadata\":{\"name\":\"a\"},\"spec\":{\"failover\":{}}}");
  cr_assert_eq(tn_failover_spec_parse(r, &s, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "standbyRegion is missing"), "%s", err.message);
  json_decref(r);
  /* no failover at all: not configured, no error */
  r = region("{\"metadata\":{\"name\":\"a\"},\"spec\":{\"available\":true}}");
  cr_assert_eq(tn_failover_spec_parse(r, &s, &err), 0);
  cr_assert(!s.configured);
  cr_assert_eq(tn_failover_trigger_of(&s), TN_FAILOVER_NONE);
  json_decref(r);
}

Test(failover_plan, trigger) {
  struct tn_failover_spec s = {.configured = true, .standby = "b", .available = true};
  cr_assert_eq(tn_failover_trigger_of(&s), TN_FAILOVER_NONE);
  s.active = true; /* active alone does nothing while the region is available */
  cr_assert_eq(tn_failover_trigger_of(&s), TN_FAILOVER_NONE);
  s.available = false;
  cr_assert_eq(tn_failover_trigger_of(&s), TN_FAILOVER_REGION);
  s.active = false; /* unavailable alone does nothing: placement is only gated */
  cr_assert_eq(tn_failover_trigger_of(&s), TN_FAILOVER_NONE);
  s.available = true;
  s.drill = "fd-1";
  cr_assert_eq(tn_failover_trigger_of(&s), TN_FAILOVER_DRILL);
  s.drill_done = "fd-1"; /* a drill runs once */
  cr_assert_eq(tn_failover_trigger_of(&s), TN_FAILOVER_NONE);
  s.drill_done = "fd-0";
  s.available = false;
  s.active = true; /* a real failover wins over a drill */
  cr_assert_eq(tn_failover_trigger_of(&s), TN_FAILOVER_REGION);
}

Test(failover_plan, residency) {
  char *allowed[] = {"eu-west-1", "eu-central-1"};
  struct tn_residency r = {.allowed_regions = allowed, .n_allowed_regions = 2};
  cr_assert(tn_failover_tenant_allowed(&r, "eu-central-1"));
  cr_assert(!tn_failover_tenant_allowed(&r, "us-east-1"));
  cr_assert(!tn_failover_tenant_allowed(&r, NULL));
  struct tn_residency any = {0};
  cr_assert(tn_failover_tenant_allowed(&any, "us-east-1"), "no allowedRegions means every region");
}

Test(failover_plan, object_names) {
  char a[64], b[64], c[64];
  tn_failover_object_name("eu-west-1", "pg-1", "tenants", "eu-central-1", a);
  tn_failover_object_name("eu-west-1", "pg-1", "tenants", "eu-central-1", b);
  tn_failover_object_name("eu-west-1", "pg-1", "tn_acme", "eu-central-1", c);
  cr_assert_str_eq(a, b, "stable across passes");
  cr_assert_str_neq(a, c, "one per source database");
  cr_assert_eq(strlen(a), 29);
  cr_assert(strncmp(a, "tnfo_", 5) == 0);
  for (const char *p = a; *p; p++)
    cr_assert((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_', "%s", a);
}

Test(failover_plan, conninfo_quotes) {
  char buf[256] = "";
  cr_assert_eq(tn_failover_conninfo_add(buf, sizeof buf, "host", "db.example"), 0);
  cr_assert_eq(tn_failover_conninfo_add(buf, sizeof buf, "password", "a'b\\c d"), 0);
  cr_assert_str_eq(buf, "host='db.example' password='a\\'b\\\\c d' ");
  char small[16] = "";
  cr_assert_eq(tn_failover_conninfo_add(small, sizeof small, "password", "0123456789"), -ERANGE);
  cr_assert_str_eq(small, "", "nothing written when it does not fit");
}

Test(failover_plan, rpo) {
  cr_assert_float_eq(tn_failover_rpo_seconds(100, 110, 110), 0, 1e-9, "nothing lost");
  cr_assert_float_eq(tn_failover_rpo_seconds(100, 110, 111), 0, 1e-9);
  cr_assert_float_eq(tn_failover_rpo_seconds(100, 110, 107.5), 2.5, 1e-9);
  cr_assert_float_eq(tn_failover_rpo_seconds(100, 110, 0), 10, 1e-9, "nothing kept: since the first write");
  cr_assert_float_eq(tn_failover_rpo_seconds(0, 0, 0), 0, 1e-9, "no writes");
}

Test(failover_plan, stats) {
  double v[] = {5, 1, 3, 2, 4};
  struct tn_failover_stats s;
  tn_failover_stats_of(v, 5, &s);
  cr_assert_float_eq(s.min, 1, 1e-9);
  cr_assert_float_eq(s.max, 5, 1e-9);
  cr_assert_float_eq(s.mean, 3, 1e-9);
  cr_assert_float_eq(s.p50, 3, 1e-9);
  cr_assert_float_eq(s.p95, 5, 1e-9);
  tn_failover_stats_of(v, 0, &s);
  cr_assert_float_eq(s.max, 0, 1e-9);
}
