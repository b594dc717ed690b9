/* test_ratelimits.c - Plan spec.rateLimits with endpoints, Tenant spec.rateLimitOverrides, the
 * TenancyPolicy permission for them, and status.derived.rateLimits (plan + permitted overrides). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "api/limiter.h"
#include "tenancy/derive.h"
#include "tenancy/policy.h"
#include "tenancy/ratelimits.h"

static json_t *load(const char *text) {
  json_error_t je;
  json_t *v = json_loads(text, 0, &je);
  cr_assert_not_null(v, "bad JSON in the test: %s: %s", je.text, text);
  return v;
}

#define QUOTAS                                                                                               \
  "\"quotas\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"50Gi\",\"pods\":50,\"services\":10}"

static int plan_parse(const char *rate_limits, struct tn_plan **out, struct tn_error *err) {
  char buf[4096];
  snprintf(buf, sizeof buf, "{\"metadata\":{\"name\":\"standard\"},\"spec\":{" QUOTAS ",\"rateLimits\":%s}}",
           rate_limits);
  json_t *obj = load(buf);
  int rc = tn_plan_parse(obj, out, err);
  json_decref(obj);
  return rc;
}

static json_t *tenant_obj(const char *overrides) {
  char buf[4096];
  snprintf(buf, sizeof buf,
           "{\"metadata\":{\"name\":\"acme\",\"uid\":\"u\",\"generation\":1},\"spec\":{\"plan\":\"standard\","
           "\"environments\":[\"prod\"],\"rateLimitOverrides\":%s}}",
           overrides);
  return load(buf);
}

#define ENDPOINTS                                                                                            \
  "{\"requestsPerSecond\":50,\"burst\":100,\"endpoints\":{\"list\":{\"requestsPerSecond\":5,\"burst\":10},"  \
  "\"events\":{\"requestsPerSecond\":2,\"burst\":4}}}"

Test(plan, endpoint_limits_are_parsed) {
  struct tn_plan *p = NULL;
  struct tn_error err = {0};
  cr_assert_eq(plan_parse(ENDPOINTS, &p, &err), 0, "%s", err.message);
  cr_assert(p->has_rate_limits);
  cr_assert_eq(p->requests_per_second, 50);
  cr_assert(p->rate_limits.all.set);
  cr_assert(p->rate_limits.endpoints[TN_ENDPOINT_LIST].set);
  cr_assert_eq(p->rate_limits.endpoints[TN_ENDPOINT_LIST].requests_per_second, 5);
  cr_assert_eq(p->rate_limits.endpoints[TN_ENDPOINT_LIST].burst, 10);
  cr_assert_eq(p->rate_limits.endpoints[TN_ENDPOINT_EVENTS].burst, 4);
  cr_assert_not(p->rate_limits.endpoints[TN_ENDPOINT_GET].set);
  tn_plan_free(p);
}

Test(plan, bad_endpoint_limits_name_the_field) {
  static const struct {
    const char *rl, *field, *words;
  } cases[] = {
      {"{\"requestsPerSecond\":5,\"burst\":10,\"endpoints\":{\"list\":{\"requestsPerSecond\":5,\"burst\":1}}"
       "}",
       "spec.rateLimits.endpoints.list.burst",
       "at least spec.rateLimits.endpoints.list.requestsPerSecond (5)"},
      {"{\"requestsPerSecond\":5,\"burst\":10,\"endpoints\":{\"delete\":{\"requestsPerSecond\":1,\"burst\":1}"
       "}}",
       "spec.rateLimits.endpoints.delete", "use get, list, byExternalId, placement or events"},
      {"{\"requestsPerSecond\":5,\"burst\":10,\"endpoints\":{\"get\":{\"burst\":1}}}",
       "spec.rateLimits.endpoints.get.requestsPerSecond", "is required"},
      {"{\"requestsPerSecond\":5,\"burst\":10,\"endpoints\":{\"get\":{\"requestsPerSecond\":-1,\"burst\":1}}"
       "}",
       "spec.rateLimits.endpoints.get.requestsPerSecond", "must not be negative"},
      {"{\"burst\":10}", "spec.rateLimits.requestsPerSecond", "is required"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tn_plan *p = NULL;
    struct tn_error err = {0};
    cr_assert_neq(plan_parse(cases[i].rl, &p, &err), 0, "case %zu accepted", i);
    cr_assert_null(p);
    cr_assert_str_eq(err.causes[0].field, cases[i].field, "case %zu: %s", i, err.message);
    cr_assert(strstr(err.message, cases[i].words), "case %zu: %s", i, err.message);
  }
}

Test(tenant, overrides_are_parsed_into_keys) {
  json_t *o = tenant_obj("{\"requestsPerSecond\":500,\"burst\":1000,\"endpoints\":{\"get\":"
                         "{\"requestsPerSecond\":9,\"burst\":9}}}");
  struct tn_tenant *t = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_parse(o, &t, &err), 0, "%s", err.message);
  cr_assert_eq(t->rate_limit_overrides,
               (1u << TN_RATE_LIMIT_KEY_DEFAULT) | (1u << TN_RATE_LIMIT_KEY_ENDPOINT(TN_ENDPOINT_GET)));
  tn_tenant_free(t);
  json_decref(o);
}

Test(tenant, a_half_override_is_refused) {
  json_t *o = tenant_obj("{\"requestsPerSecond\":500}");
  struct tn_tenant *t = NULL;
  struct tn_error err = {0};
  cr_assert_neq(tn_tenant_parse(o, &t, &err), 0);
  cr_assert_str_eq(err.causes[0].field, "spec.rateLimitOverrides.burst", "%s", err.message);
  json_decref(o);
}

Test(derive, only_permitted_overrides_reach_status) {
  struct tn_plan *p = NULL;
  struct tn_error err = {0};
  cr_assert_eq(plan_parse(ENDPOINTS, &p, &err), 0, "%s", err.message);
  json_t *o =
      tenant_obj("{\"requestsPerSecond\":500,\"burst\":1000,\"endpoints\":{\"list\":"
                 "{\"requestsPerSecond\":50,\"burst\":60},\"get\":{\"requestsPerSecond\":7,\"burst\":8}}}");
  /* A policy permits default and list, not get. */
  unsigned permitted =
      (1u << TN_RATE_LIMIT_KEY_DEFAULT) | (1u << TN_RATE_LIMIT_KEY_ENDPOINT(TN_ENDPOINT_LIST));
  cr_assert_eq(tn_rate_limits_apply_overrides(&p->rate_limits, o, permitted), 2);
  json_t *d = NULL;
  cr_assert_eq(tn_derive_status("standard", p, &d, &err), 0, "%s", err.message);
  char *s = json_dumps(json_object_get(d, "rateLimits"), JSON_SORT_KEYS | JSON_COMPACT);
  cr_assert_str_eq(s, "{\"burst\":1000,\"endpoints\":{\"events\":{\"burst\":4,\"requestsPerSecond\":2},"
                      "\"list\":{\"burst\":60,\"requestsPerSecond\":50}},\"requestsPerSecond\":500}");
  free(s);
  /* What the read API reads from it. */
  json_t *tn = json_pack("{s:{s:O}}", "status", "derived", d);
  struct tn_limit_rule r;
  cr_assert_eq(tn_limit_rule_for_tenant(tn, "list", &r), 0);
  cr_assert_eq((long)r.rate_per_s, 50);
  cr_assert_eq(tn_limit_rule_for_tenant(tn, "get", &r), 0);
  cr_assert_eq((long)r.burst, 1000, "get has no permitted override: the (overridden) default");
  json_decref(tn);
  json_decref(d);
  json_decref(o);
  tn_plan_free(p);
}

Test(derive, nothing_permitted_keeps_the_plan) {
  struct tn_plan *p = NULL;
  struct tn_error err = {0};
  cr_assert_eq(plan_parse("{\"requestsPerSecond\":50,\"burst\":100}", &p, &err), 0, "%s", err.message);
  json_t *o = tenant_obj("{\"requestsPerSecond\":500,\"burst\":1000}");
  cr_assert_eq(tn_rate_limits_apply_overrides(&p->rate_limits, o, 0), 0);
  json_t *d = NULL;
  cr_assert_eq(tn_derive_status("standard", p, &d, &err), 0);
  char *s = json_dumps(json_object_get(d, "rateLimits"), JSON_SORT_KEYS | JSON_COMPACT);
  cr_assert_str_eq(s, "{\"burst\":100,\"requestsPerSecond\":50}",
                   "unchanged shape for plans without endpoints");
  free(s);
  json_decref(d);
  json_decref(o);
  tn_plan_free(p);
}

Test(derive, a_plan_without_limits_has_none) {
  struct tn_plan *p = NULL;
  struct tn_error err = {0};
  json_t *obj = load("{\"metadata\":{\"name\":\"free\"},\"spec\":{" QUOTAS "}}");
  cr_assert_eq(tn_plan_parse(obj, &p, &err), 0, "%s", err.message);
  json_t *d = NULL;
  cr_assert_eq(tn_derive_status("free", p, &d, &err), 0);
  cr_assert_null(json_object_get(d, "rateLimits"));
  json_decref(d);
  json_decref(obj);
  tn_plan_free(p);
}

/* ---- the TenancyPolicy permission ------------------------------------------------------------- */

static struct tn_policy *policy(const char *spec) {
  char buf[1024];
  snprintf(buf, sizeof buf, "{\"metadata\":{\"name\":\"rl\",\"generation\":1},\"spec\":%s}", spec);
  json_t *obj = load(buf);
  struct tn_policy *p = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_policy_parse(obj, &p, &err), 0, "%s", err.message);
  json_decref(obj);
  return p;
}

Test(policy, rate_limit_overrides_must_be_permitted) {
  struct tn_policy *pol = policy("{\"rateLimitOverrides\":[\"default\",\"list\"]}");
  cr_assert_eq(pol->rate_limit_overrides,
               (1u << TN_RATE_LIMIT_KEY_DEFAULT) | (1u << TN_RATE_LIMIT_KEY_ENDPOINT(TN_ENDPOINT_LIST)));
  json_t *o =
      tenant_obj("{\"requestsPerSecond\":5,\"burst\":5,\"endpoints\":{\"list\":{\"requestsPerSecond\":1,"
                 "\"burst\":1},\"events\":{\"requestsPerSecond\":1,\"burst\":1}}}");
  struct tn_tenant *t = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_parse(o, &t, &err), 0, "%s", err.message);
  const struct tn_policy *pols[] = {pol};
  struct tn_policy_input in = {.tenant = t, .policies = pols, .n_policies = 1};
  struct tn_policy_result res;
  cr_assert_eq(tn_policy_evaluate(&in, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_str_eq(res.violations[0].rule, "rateLimitOverrides");
  cr_assert_str_eq(res.violations[0].field, "spec.rateLimitOverrides.endpoints.events");
  cr_assert(strstr(res.violations[0].message, "permitted: default, list"), "%s", res.violations[0].message);
  cr_assert(strstr(err.message, "add events to spec.rateLimitOverrides of a TenancyPolicy"), "%s",
            err.message);
  cr_assert_eq(res.rate_limit_overrides_permitted, pol->rate_limit_overrides);
  tn_policy_result_cleanup(&res);

  /* No policy at all: the default override is refused too. */
  in.n_policies = 0;
  cr_assert_eq(tn_policy_evaluate(&in, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 3);
  cr_assert_str_eq(res.violations[0].field, "spec.rateLimitOverrides");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  json_decref(o);
  tn_policy_free(pol);
}

Test(policy, unknown_keys_are_refused) {
  json_t *obj = load("{\"metadata\":{\"name\":\"rl\"},\"spec\":{\"rateLimitOverrides\":[\"delete\"]}}");
  struct tn_policy *p = NULL;
  struct tn_error err = {0};
  cr_assert_neq(tn_policy_parse(obj, &p, &err), 0);
  cr_assert(strstr(err.message, "spec.rateLimitOverrides[0]"), "%s", err.message);
  json_decref(obj);
}

Test(names, keys_round_trip) {
  for (unsigned k = 0; k < TN_RATE_LIMIT_KEY_COUNT; k++) {
    unsigned back = 99;
    cr_assert_eq(tn_rate_limit_key_parse(tn_rate_limit_key_name(k), &back), 0);
    cr_assert_eq(back, k);
  }
  unsigned k;
  cr_assert_neq(tn_rate_limit_key_parse("Get", &k), 0);
  cr_assert_str_eq(tn_endpoint_name(TN_ENDPOINT_BY_EXTERNAL_ID), "byExternalId");
}
