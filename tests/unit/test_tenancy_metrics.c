/* test_tenancy_metrics.c - the tenancy metrics computed from Tenant objects: counts by state,
 * placement, condition, break-glass and key age; per-tenant series only when asked; and the
 * result labels of database operations. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "converge/database.h"
#include "converge/tenancy_metrics.h"
#include "kube/store.h"
#include "util/error.h"

#define NOW 1800000000.0 /* 2027-01-15T08:00:00Z */

struct fixture {
  json_t *tenants;
  bool per_tenant;
};

static void collect(void *ud, struct tn_collect *c) {
  struct fixture *f = ud;
  tn_tenancy_metrics_collect_tenants(c, f->tenants, NOW, f->per_tenant);
}

static json_t *tenant(const char *name, const char *state, const char *plan, const char *region,
                      const char *ready, const char *ready_reason) {
  json_t *t = json_pack("{s:{s:s},s:{s:s},s:{s:[{s:s,s:s,s:s},{s:s,s:s,s:s}]}}", "metadata", "name", name,
                        "spec", "plan", plan, "status", "conditions", "type", "Ready", "status", ready,
                        "reason", ready_reason, "type", "Placed", "status", "True", "reason", "Placed");
  json_t *st = json_object_get(t, "status");
  if (state)
    json_object_set_new(st, "state", json_string(state));
  if (region)
    json_object_set_new(st, "placement", json_pack("{s:s,s:s}", "region", region, "isolation", "shared"));
  return t;
}

static char *scrape(struct fixture *f) {
  struct tn_metrics *m = tn_metrics_new();
  tn_metrics_register_collector(m, collect, f);
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(tn_metrics_write(m, &b), 0);
  tn_metrics_free(m);
  return tn_buf_take(&b);
}

static void has(const char *text, const char *line) {
  char want[512];
  snprintf(want, sizeof want, "\n%s\n", line);
  cr_assert_not_null(strstr(text, want), "missing line '%s' in:\n%s", line, text);
}

static struct fixture sample(bool per_tenant) {
  json_t *a = tenant("acme", "Active", "standard", "eu-west-1", "True", "Converged");
  json_t *b = tenant("beta", "Active", "standard", "eu-west-1", "False", "DatabaseUnavailable");
  json_t *c = tenant("gamma", "Suspended", "pro", "us-east-1", "True", "Converged");
  json_t *d = tenant("delta", NULL, "pro", NULL, "Unknown", "Pending");
  /* acme: a data key made 3 days ago, one Active grant, one expired-in-status grant, one Denied */
  json_object_set_new(json_object_get(a, "status"), "keys",
                      json_pack("{s:i,s:s}", "version", 2, "rotatedAt", "2027-01-12T08:00:00Z"));
  json_object_set_new(json_object_get(a, "status"), "breakGlass",
                      json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s}]", "id", "inc-1", "state", "Active",
                                "expiresAt", "2027-01-15T09:00:00Z", "id", "inc-0", "state", "Active",
                                "expiresAt", "2027-01-15T07:00:00Z", "id", "x", "state", "Denied"));
  /* gamma: a key made 1 day ago */
  json_object_set_new(json_object_get(c, "status"), "keys",
                      json_pack("{s:s}", "rotatedAt", "2027-01-14T08:00:00Z"));
  return (struct fixture){json_pack("[o,o,o,o]", a, b, c, d), per_tenant};
}

Test(tenancy_metrics, counts_by_state_placement_condition_breakglass_and_keys) {
  struct fixture f = sample(false);
  char *t = scrape(&f);
  has(t, "tenancy_tenants{state=\"Draft\"} 0");
  has(t, "tenancy_tenants{state=\"Active\"} 2");
  has(t, "tenancy_tenants{state=\"Suspended\"} 1");
  has(t, "tenancy_tenants{state=\"Deleted\"} 0");
  has(t, "tenancy_tenants{state=\"Unknown\"} 1");
  has(t, "tenancy_tenant_placements{plan=\"standard\",region=\"eu-west-1\",isolation=\"shared\",state="
         "\"Active\"} 2");
  has(t, "tenancy_tenant_placements{plan=\"pro\",region=\"\",isolation=\"\",state=\"Unknown\"} 1");
  has(t, "tenancy_tenant_conditions{type=\"Ready\",status=\"True\",reason=\"Converged\"} 2");
  has(t, "tenancy_tenant_conditions{type=\"Ready\",status=\"False\",reason=\"DatabaseUnavailable\"} 1");
  has(t, "tenancy_tenant_conditions{type=\"Placed\",status=\"True\",reason=\"Placed\"} 4");
  has(t, "tenancy_breakglass_grants_active 1"); /* the other Active one expired an hour ago */
  has(t, "tenancy_breakglass_requests{state=\"Active\"} 2");
  has(t, "tenancy_breakglass_requests{state=\"Denied\"} 1");
  has(t, "tenancy_tenant_keys 2");
  has(t, "tenancy_tenant_key_age_seconds_max 259200");
  /* bounded by default: nothing per tenant */
  cr_assert_null(strstr(t, "acme"), "%s", t);
  cr_assert_null(strstr(t, "tenancy_tenant_info"));
  free(t);
  json_decref(f.tenants);
}

Test(tenancy_metrics, per_tenant_series_only_when_asked) {
  struct fixture f = sample(true);
  char *t = scrape(&f);
  has(t, "tenancy_tenant_info{tenant=\"acme\",state=\"Active\",plan=\"standard\",region=\"eu-west-1\","
         "isolation=\"shared\"} 1");
  has(t, "tenancy_tenant_condition{tenant=\"beta\",type=\"Ready\",status=\"False\",reason="
         "\"DatabaseUnavailable\"} 1");
  has(t, "tenancy_tenant_key_rotated_timestamp_seconds{tenant=\"gamma\"} 1799913600");
  has(t, "tenancy_tenant_breakglass_grants_active{tenant=\"acme\"} 1");
  has(t, "tenancy_tenant_breakglass_grants_active{tenant=\"beta\"} 0");
  free(t);
  json_decref(f.tenants);
}

Test(tenancy_metrics, no_tenants_still_reports_zero_states) {
  struct fixture f = {json_array(), false};
  char *t = scrape(&f);
  has(t, "tenancy_tenants{state=\"Active\"} 0");
  has(t, "tenancy_breakglass_grants_active 0");
  has(t, "tenancy_breakglass_requests{state=\"Expired\"} 0");
  cr_assert_null(strstr(t, "key_age"), "no key, no age: %s", t);
  free(t);
  json_decref(f.tenants);
}

Test(tenancy_metrics, database_result_names) {
  cr_assert_str_eq(tn_db_result_name(0), "success");
  cr_assert_str_eq(tn_db_result_name(TN_ETRANSPORT), "unreachable");
  cr_assert_str_eq(tn_db_result_name(TN_EUNAVAILABLE), "unavailable");
  cr_assert_str_eq(tn_db_result_name(TN_ETIMEOUT), "conflict");
  cr_assert_str_eq(tn_db_result_name(TN_ECANCELED), "canceled");
  cr_assert_str_eq(tn_db_result_name(TN_EFORBIDDEN), "refused");
  cr_assert_str_eq(tn_db_result_name(TN_EAPI), "error");
}

/* ---- counts kept between scrapes (issue 18: a scrape decoded every cached Tenant) --------- */

struct memo_fixture {
  struct tn_tenancy_metrics_memo *memo;
  struct tn_store *store;
  double now;
};

static void collect_memo(void *ud, struct tn_collect *c) {
  struct memo_fixture *f = ud;
  tn_tenancy_metrics_collect_memo(f->memo, c, f->store, f->now, false);
}

static char *scrape_memo(struct memo_fixture *f) {
  struct tn_metrics *m = tn_metrics_new();
  tn_metrics_register_collector(m, collect_memo, f);
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(tn_metrics_write(m, &b), 0);
  tn_metrics_free(m);
  return tn_buf_take(&b);
}

Test(tenancy_metrics, counts_are_kept_until_the_store_changes_and_the_time_still_moves) {
  struct fixture s = sample(false);
  struct memo_fixture f = {tn_tenancy_metrics_memo_new(), tn_store_new(), NOW};
  cr_assert_not_null(f.memo);
  cr_assert_not_null(f.store);
  struct tn_error err;
  size_t i;
  json_t *t;
  json_array_foreach(s.tenants, i, t) cr_assert_eq(tn_store_upsert(f.store, t, &err), 0, "%s", err.message);

  char *a = scrape_memo(&f);
  has(a, "tenancy_tenants{state=\"Active\"} 2");
  has(a, "tenancy_breakglass_grants_active 1");
  has(a, "tenancy_tenant_key_age_seconds_max 259200");
  cr_assert_eq(tn_tenancy_metrics_memo_recomputes(f.memo), 1);

  /* Unchanged store, two hours later: not counted again, yet the grant that expires at 09:00 is
   * no longer in force and the oldest key is two hours older. */
  f.now = NOW + 7200;
  char *b = scrape_memo(&f);
  cr_assert_eq(tn_tenancy_metrics_memo_recomputes(f.memo), 1, "counted again without a change");
  has(b, "tenancy_tenants{state=\"Active\"} 2");
  has(b, "tenancy_breakglass_grants_active 0");
  has(b, "tenancy_breakglass_requests{state=\"Active\"} 2");
  has(b, "tenancy_tenant_key_age_seconds_max 266400");

  /* A tenant suspended, one deleted: counted again. */
  json_t *beta = tenant("beta", "Suspended", "standard", "eu-west-1", "True", "Converged");
  cr_assert_eq(tn_store_upsert(f.store, beta, &err), 0);
  cr_assert_eq(tn_store_delete(f.store, "delta", NULL, &err), 0);
  char *c = scrape_memo(&f);
  cr_assert_eq(tn_tenancy_metrics_memo_recomputes(f.memo), 2);
  has(c, "tenancy_tenants{state=\"Active\"} 1");
  has(c, "tenancy_tenants{state=\"Suspended\"} 2");
  cr_assert_null(strstr(c, "state=\"Unknown\""), "the deleted tenant is still counted: %s", c);

  free(a);
  free(b);
  free(c);
  json_decref(beta);
  json_decref(s.tenants);
  tn_store_free(f.store);
  tn_tenancy_metrics_memo_free(f.memo);
}
