/* test_history.c - the pure parts of issue 13's history and tenant-wide quotas: the field-level
 * diff and changed-field summary of tenantctl, Plan spec.quotaScope parsing, the split of a plan's
 * quotas across environments (sums exact), the ResourceQuota and LimitRange the desired-state
 * builder makes from it, and whether a tenant's generation still needs recording. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "audit/history.h"
#include "tenancy/derive.h"
#include "tenancy/desired.h"

static json_t *load(const char *text) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  cr_assert_not_null(j, "fixture does not parse: %s", je.text);
  return j;
}

static char *diff_of(const char *a, const char *b) {
  json_t *x = load(a), *y = load(b);
  struct tn_buf out;
  tn_buf_init(&out, 1u << 20);
  int n = -1;
  cr_assert_eq(tn_history_diff(x, y, "spec", &out, &n), 0);
  char *s = strdup(tn_buf_str(&out));
  tn_buf_cleanup(&out);
  json_decref(x);
  json_decref(y);
  return s;
}

Test(history_diff, field_level_sorted_and_stable) {
  char *d = diff_of(
      "{\"plan\":\"standard\",\"contacts\":[{\"role\":\"technical\",\"name\":\"Ada\"}],"
      "\"externalIds\":{\"billing\":\"cus_1\",\"crm\":\"x\"},\"environments\":[\"prod\",\"staging\"]}",
      "{\"plan\":\"premium\",\"contacts\":[{\"name\":\"Ada L\",\"role\":\"technical\"},"
      "{\"role\":\"billing\",\"name\":\"Bob\"}],\"externalIds\":{\"billing\":\"cus_1\"},"
      "\"environments\":[\"prod\"],\"displayName\":\"Acme\"}");
  cr_assert_str_eq(d, "~ spec.contacts[0].name: \"Ada\" -> \"Ada L\"\n"
                      "+ spec.contacts[1]: {\"name\":\"Bob\",\"role\":\"billing\"}\n"
                      "+ spec.displayName: \"Acme\"\n"
                      "- spec.environments[1]: \"staging\"\n"
                      "- spec.externalIds.crm: \"x\"\n"
                      "~ spec.plan: \"standard\" -> \"premium\"\n");
  free(d);
}

Test(history_diff, equal_specs_and_type_changes) {
  char *d = diff_of("{\"a\":{\"b\":[1,2]}}", "{\"a\":{\"b\":[1,2]}}");
  cr_assert_str_eq(d, "");
  free(d);
  d = diff_of("{\"a\":{\"b\":1}}", "{\"a\":[1]}");
  cr_assert_str_eq(d, "~ spec.a: {\"b\":1} -> [1]\n");
  free(d);
}

Test(history_diff, changed_fields_summary) {
  json_t *a = load("{\"plan\":\"a\",\"contacts\":[],\"state\":\"Active\"}");
  json_t *b = load("{\"plan\":\"b\",\"contacts\":[],\"state\":\"Active\",\"externalIds\":{\"x\":\"1\"}}");
  char out[64];
  tn_history_changed_fields(a, b, out, sizeof out);
  cr_assert_str_eq(out, "externalIds,plan");
  tn_history_changed_fields(a, a, out, sizeof out);
  cr_assert_str_eq(out, "");
  char tiny[8];
  tn_history_changed_fields(a, b, tiny, sizeof tiny);
  cr_assert(strlen(tiny) < sizeof tiny);
  json_decref(a);
  json_decref(b);
}

Test(history_record, needs_record_only_for_an_unobserved_generation) {
  json_t *t = load("{\"metadata\":{\"generation\":3},\"status\":{\"observedGeneration\":2}}");
  cr_assert(tn_history_needs_record(t));
  json_object_set_new(json_object_get(t, "status"), "observedGeneration", json_integer(3));
  cr_assert_not(tn_history_needs_record(t));
  json_decref(t);
  t = load("{\"metadata\":{\"generation\":1}}");
  cr_assert(tn_history_needs_record(t));
  json_decref(t);
}

static struct tn_plan *plan(const char *scope, const char *quotas) {
  char text[1024];
  snprintf(text, sizeof text, "{\"metadata\":{\"name\":\"p\"},\"spec\":{%s%s%s\"quotas\":%s}}",
           scope ? "\"quotaScope\":\"" : "", scope ? scope : "", scope ? "\"," : "", quotas);
  json_t *j = load(text);
  struct tn_plan *p = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_plan_parse(j, &p, &err), 0, "%s", err.message);
  json_decref(j);
  return p;
}

Test(quota_scope, parse_default_tenant_and_refusal) {
  const char *q = "{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"50Gi\",\"pods\":50,\"services\":10}";
  struct tn_plan *p = plan(NULL, q);
  cr_assert_eq(p->quota_scope, TN_QUOTA_SCOPE_ENVIRONMENT);
  tn_plan_free(p);
  p = plan("Tenant", q);
  cr_assert_eq(p->quota_scope, TN_QUOTA_SCOPE_TENANT);
  cr_assert_str_eq(tn_quota_scope_name(p->quota_scope), "Tenant");
  tn_plan_free(p);
  json_t *j = load("{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotaScope\":\"Namespace\",\"quotas\":"
                   "{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"50Gi\",\"pods\":50,\"services\":10}}}");
  struct tn_error err = {0};
  cr_assert_eq(tn_plan_parse(j, &p, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "spec.quotaScope") && strstr(err.message, "Tenant"), "%s", err.message);
  json_decref(j);
}

Test(quota_scope, shares_add_up_exactly_to_the_plan) {
  struct tn_plan *p =
      plan("Tenant", "{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":\"10Gi\",\"pods\":5,\"services\":3}");
  for (size_t n = 1; n <= 7; n++) {
    int64_t cpu = 0, mem = 0, sto = 0, pods = 0, svc = 0;
    for (size_t i = 0; i < n; i++) {
      struct tn_quota_share s;
      tn_quota_share(&p->quotas, p->quota_scope, n, i, &s);
      cpu += s.cpu_milli, mem += s.memory_bytes, sto += s.storage_bytes, pods += s.pods, svc += s.services;
      if (i > 0) { /* the first environment gets the remainder: never less than another */
        struct tn_quota_share first;
        tn_quota_share(&p->quotas, p->quota_scope, n, 0, &first);
        cr_assert(first.pods >= s.pods && first.cpu_milli >= s.cpu_milli);
      }
    }
    cr_assert_eq(cpu, 1000, "n=%zu", n);
    cr_assert_eq(mem, 1073741824LL, "n=%zu", n);
    cr_assert_eq(sto, 10737418240LL, "n=%zu", n);
    cr_assert_eq(pods, 5, "n=%zu", n);
    cr_assert_eq(svc, 3, "n=%zu", n);
  }
  struct tn_quota_share s;
  tn_quota_share(&p->quotas, p->quota_scope, 3, 0, &s);
  cr_assert_str_eq(s.cpu, "334m");
  cr_assert_eq(s.pods, 3);
  tn_quota_share(&p->quotas, p->quota_scope, 3, 2, &s);
  cr_assert_str_eq(s.cpu, "333m");
  cr_assert_eq(s.pods, 1);
  cr_assert_eq(s.services, 1);
  tn_quota_share(&p->quotas, p->quota_scope, 2, 1, &s);
  cr_assert_str_eq(s.memory, "512Mi");
  cr_assert_str_eq(s.storage, "5Gi");
  tn_plan_free(p);
  /* Environment scope: the plan's own text for every environment. */
  p = plan(NULL, "{\"cpu\":4,\"memory\":\"8Gi\",\"storage\":\"50Gi\",\"pods\":50,\"services\":10}");
  tn_quota_share(&p->quotas, p->quota_scope, 3, 2, &s);
  cr_assert_str_eq(s.cpu, "4");
  cr_assert_str_eq(s.memory, "8Gi");
  cr_assert_eq(s.pods, 50);
  tn_plan_free(p);
}

static const char tenant_json[] = "{\"metadata\":{\"name\":\"acme\",\"uid\":\"u1\",\"generation\":1},"
                                  "\"spec\":{\"state\":\"Active\",\"plan\":\"p\",\"environments\":[\"prod\","
                                  "\"staging\"]}}";

static json_t *spec_of(const struct tn_object_list *l, enum tn_kind kind, const char *ns) {
  for (size_t i = 0; i < l->len; i++)
    if (l->items[i].kind == kind && !strcmp(l->items[i].namespace, ns))
      return json_object_get(l->items[i].body, "spec");
  cr_assert_fail("no %s in %s", tn_kind_name(kind), ns);
  return NULL;
}

static void build(const char *scope, enum tn_state state, struct tn_object_list *out) {
  json_t *tj = load(tenant_json);
  struct tn_tenant *t = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_parse(tj, &t, &err), 0, "%s", err.message);
  struct tn_plan *p =
      plan(scope, "{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":\"3Gi\",\"pods\":5,\"services\":3}");
  struct tn_placement pl = {.region = "eu-west-1"};
  struct tn_desired_input in = {.tenant = t, .state = state, .plan = p, .placement = &pl};
  cr_assert_eq(tn_desired_build(&in, out, &err), 0, "%s", err.message);
  tn_plan_free(p);
  tn_tenant_free(t);
  json_decref(tj);
}

static const char *hard(json_t *spec, const char *k) {
  return json_string_value(json_object_get(json_object_get(spec, "hard"), k));
}

Test(quota_scope, desired_quota_and_limits_are_the_shares) {
  struct tn_object_list l = {0};
  build("Tenant", TN_STATE_ACTIVE, &l);
  json_t *prod = spec_of(&l, TN_KIND_RESOURCE_QUOTA, "acme-prod");
  json_t *stg = spec_of(&l, TN_KIND_RESOURCE_QUOTA, "acme-staging");
  cr_assert_str_eq(hard(prod, "pods"), "3");
  cr_assert_str_eq(hard(stg, "pods"), "2");
  cr_assert_str_eq(hard(prod, "services"), "2");
  cr_assert_str_eq(hard(stg, "services"), "1");
  cr_assert_str_eq(hard(prod, "requests.cpu"), "500m");
  cr_assert_str_eq(hard(stg, "limits.memory"), "512Mi");
  cr_assert_str_eq(hard(stg, "requests.storage"), "1536Mi");
  /* No container may ask for more than its environment's share. */
  json_t *lr = spec_of(&l, TN_KIND_LIMIT_RANGE, "acme-staging");
  json_t *c = json_array_get(json_object_get(lr, "limits"), 0);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "max"), "cpu")), "500m");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "max"), "memory")), "512Mi");
  tn_object_list_cleanup(&l);
  /* Suspended: no pods anywhere, whatever the scope. */
  build("Tenant", TN_STATE_SUSPENDED, &l);
  cr_assert_str_eq(hard(spec_of(&l, TN_KIND_RESOURCE_QUOTA, "acme-prod"), "pods"), "0");
  tn_object_list_cleanup(&l);
  /* Environment (the default): each namespace gets the whole plan, as before. */
  build(NULL, TN_STATE_ACTIVE, &l);
  cr_assert_str_eq(hard(spec_of(&l, TN_KIND_RESOURCE_QUOTA, "acme-staging"), "pods"), "5");
  cr_assert_str_eq(hard(spec_of(&l, TN_KIND_RESOURCE_QUOTA, "acme-staging"), "requests.cpu"), "1");
  tn_object_list_cleanup(&l);
}
