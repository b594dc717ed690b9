/* test_tenant_parse.c - parsing and validation of Tenant, Plan and Region objects, quantities
 * and DNS labels, including hostile input. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/tenant.h"

static json_t *load(const char *text) {
  json_error_t je;
  json_t *j = json_loads(text, JSON_ALLOW_NUL, &je);
  cr_assert_not_null(j, "fixture does not parse: %s (line %d)", je.text, je.line);
  return j;
}

static const char sample_tenant[] =
    "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\","
    "\"metadata\":{\"name\":\"acme\",\"uid\":\"11111111-2222-3333-4444-555555555555\",\"generation\":7},"
    "\"spec\":{\"displayName\":\"Acme Corporation\",\"state\":\"Active\",\"stateReason\":\"contract signed\","
    "\"deletionConfirmation\":\"\",\"plan\":\"standard\",\"isolation\":\"dedicated\","
    "\"residency\":{\"allowedRegions\":[\"eu-west-1\",\"eu-central-1\"],\"preferredRegion\":\"eu-west-1\","
    "\"flags\":[\"eu-only\"]},"
    "\"environments\":[\"prod\",\"staging\"],"
    "\"contacts\":[{\"role\":\"technical\",\"name\":\"Ada Lovelace\",\"email\":\"ada@acme.example\"},"
    "{\"role\":\"billing\",\"name\":\"Bob\",\"email\":\"billing@acme.example\"}],"
    "\"externalIds\":{\"crm\":\"0015g00000AbCdE\",\"billing\":\"cus_8TzQ\"},"
    "\"identity\":{\"domain\":\"acme.example\",\"groupBindings\":[{\"group\":\"acme-admins\",\"role\":"
    "\"tenant-admin\"},{\"group\":\"acme-devs\",\"role\":\"tenant-developer\"}]}},"
    "\"status\":{\"state\":\"Draft\",\"observedGeneration\":6,\"lastCorrelationId\":\"abc\","
    "\"placement\":{\"region\":\"eu-west-1\",\"isolation\":\"dedicated\"}}}";

Test(tenant_parse, parses_the_documented_sample) {
  json_t *j = load(sample_tenant);
  struct tn_tenant *t = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_parse(j, &t, &err), 0, "%s", err.message);
  cr_assert_str_eq(t->name, "acme");
  cr_assert_str_eq(t->uid, "11111111-2222-3333-4444-555555555555");
  cr_assert_eq(t->generation, 7);
  cr_assert_str_eq(t->display_name, "Acme Corporation");
  cr_assert_eq(t->state, TN_STATE_ACTIVE);
  cr_assert_str_eq(t->state_reason, "contract signed");
  cr_assert_null(t->deletion_confirmation, "an empty confirmation reads as absent");
  cr_assert_str_eq(t->plan, "standard");
  cr_assert_eq(t->isolation, TN_ISOLATION_DEDICATED);
  cr_assert_eq(t->residency.n_allowed_regions, 2);
  cr_assert_str_eq(t->residency.allowed_regions[0], "eu-west-1");
  cr_assert_str_eq(t->residency.allowed_regions[1], "eu-central-1");
  cr_assert_str_eq(t->residency.preferred_region, "eu-west-1");
  cr_assert_eq(t->residency.n_flags, 1);
  cr_assert_str_eq(t->residency.flags[0], "eu-only");
  cr_assert_eq(t->n_environments, 2);
  cr_assert_str_eq(t->environments[0], "prod");
  cr_assert_str_eq(t->environments[1], "staging");
  cr_assert_eq(t->n_contacts, 2);
  cr_assert_str_eq(t->contacts[0].role, "technical");
  cr_assert_str_eq(t->contacts[0].name, "Ada Lovelace");
  cr_assert_str_eq(t->contacts[1].email, "billing@acme.example");
  cr_assert_eq(t->n_external_ids, 2);
  cr_assert_str_eq(t->external_ids[0].system, "billing", "sorted by system");
  cr_assert_str_eq(t->external_ids[0].id, "cus_8TzQ");
  cr_assert_str_eq(t->external_ids[1].system, "crm");
  cr_assert_str_eq(t->identity_domain, "acme.example");
  cr_assert_eq(t->n_group_bindings, 2);
  cr_assert_str_eq(t->group_bindings[0].group, "acme-admins");
  cr_assert_eq(t->group_bindings[0].role, TN_ROLE_ADMIN);
  cr_assert_eq(t->group_bindings[1].role, TN_ROLE_DEVELOPER);
  cr_assert_eq(t->status_state, TN_STATE_DRAFT);
  cr_assert_eq(t->observed_generation, 6);
  cr_assert_str_eq(t->last_correlation_id, "abc");
  cr_assert_str_eq(t->status_region, "eu-west-1");
  tn_tenant_free(t);
  json_decref(j);
}

Test(tenant_parse, minimal_tenant_gets_defaults) {
  json_t *j = load("{\"metadata\":{\"name\":\"a1\"},\"spec\":{\"plan\":\"free\"}}");
  struct tn_tenant *t = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_parse(j, &t, &err), 0, "%s", err.message);
  cr_assert_eq(t->state, TN_STATE_DRAFT);
  cr_assert_eq(t->status_state, TN_STATE_NONE);
  cr_assert_eq(t->isolation, TN_ISOLATION_SHARED);
  cr_assert_null(t->uid);
  cr_assert_eq(t->n_environments, 0);
  cr_assert_null(t->residency.preferred_region);
  tn_tenant_free(t);
  tn_tenant_free(NULL);
  json_decref(j);
}

/* A tenant whose spec (or metadata) is replaced by the given fragment must be refused, naming
 * `field` in the message and in causes[0]. */
struct bad_case {
  const char *json;
  const char *field;
  const char *words; /* a piece of the message */
};

static const struct bad_case bad_tenants[] = {
    {"{\"spec\":{\"plan\":\"p\"}}", "metadata.name", "is required"},
    {"{\"metadata\":{\"name\":\"Acme\"},\"spec\":{\"plan\":\"p\"}}", "metadata.name", "is not a DNS label"},
    {"{\"metadata\":{\"name\":\"acme_1\"},\"spec\":{\"plan\":\"p\"}}", "metadata.name", "is not a DNS label"},
    {"{\"metadata\":{\"name\":\"-acme\"},\"spec\":{\"plan\":\"p\"}}", "metadata.name", "is not a DNS label"},
    {"{\"metadata\":{\"name\":\"a'; DROP TABLE tenants;--\"},\"spec\":{\"plan\":\"p\"}}", "metadata.name",
     "is not a DNS label"},
    {"{\"metadata\":{\"name\":\"acme\\\"},\\\"x\\\":{\\\"\"},\"spec\":{\"plan\":\"p\"}}", "metadata.name",
     "is not a DNS label"},
    {"{\"metadata\":{\"name\":\"ac\\u0000me\"},\"spec\":{\"plan\":\"p\"}}", "metadata.name", "NUL"},
    {"{\"metadata\":{\"name\":\"acme\"}}", "spec", "is required"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{}}", "spec.plan", "is required"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"Gold Plan\"}}", "spec.plan",
     "is not a DNS label"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"state\":\"active\"}}", "spec.state",
     "supported values: \"Draft\", \"Active\", \"Suspended\", \"Archived\", \"Deleted\""},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"state\":3}}", "spec.state",
     "must be a string"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"isolation\":\"private\"}}",
     "spec.isolation", "supported values: \"shared\", \"dedicated\", \"hybrid\""},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"environments\":[\"prod\",\"Prod\"]}}",
     "spec.environments[1]", "\"Prod\" is not a DNS label"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"environments\":[\"prod\",\"x\\\"}]\"]}}",
     "spec.environments[1]", "\"x\\\"}]\" is not a DNS label"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"environments\":[\"prod\",\"dev\",\"prod\"]"
     "}}",
     "spec.environments[2]", "duplicate value \"prod\" (also at spec.environments[0])"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"environments\":\"prod\"}}",
     "spec.environments", "must be a list"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"environments\":[7]}}",
     "spec.environments[0]", "must be a string"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"residency\":{\"allowedRegions\":[\"EU\"]}}"
     "}",
     "spec.residency.allowedRegions[0]", "is not a DNS label"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"residency\":{\"preferredRegion\":\"eu "
     "west\"}}}",
     "spec.residency.preferredRegion", "is not a DNS label"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"residency\":{\"flags\":[\"\"]}}}",
     "spec.residency.flags[0]", "non-empty"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"contacts\":[{\"role\":\"ceo\",\"email\":"
     "\"a@b\"}]}}",
     "spec.contacts[0].role", "supported values"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"contacts\":[{\"role\":\"billing\","
     "\"email\":"
     "\"nobody\"}]}}",
     "spec.contacts[0].email", "not an email address"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"externalIds\":{\"crm\":5}}}",
     "spec.externalIds[crm]", "non-empty string"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"identity\":{\"groupBindings\":[{\"group\":"
     "\"g\",\"role\":\"cluster-admin\"}]}}}",
     "spec.identity.groupBindings[0].role", "\"tenant-admin\", \"tenant-developer\", \"tenant-viewer\""},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"identity\":{\"groupBindings\":[{\"role\":"
     "\"tenant-admin\"}]}}}",
     "spec.identity.groupBindings[0].group", "is required"},
    {"{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\"},\"status\":{\"state\":\"Gone\"}}",
     "status.state", "unsupported state"},
    {"{\"metadata\":{\"name\":\"acme\",\"generation\":-1},\"spec\":{\"plan\":\"p\"}}", "metadata.generation",
     "must not be negative"},
};

Test(tenant_parse, refuses_bad_tenants_naming_the_field) {
  for (size_t i = 0; i < sizeof bad_tenants / sizeof bad_tenants[0]; i++) {
    const struct bad_case *c = &bad_tenants[i];
    json_t *j = load(c->json);
    struct tn_tenant *t = (struct tn_tenant *)1;
    struct tn_error err = {0};
    cr_assert_eq(tn_tenant_parse(j, &t, &err), TN_EINVALID, "case %zu (%s) was accepted", i, c->json);
    cr_assert_null(t, "case %zu: *out must be NULL on failure", i);
    cr_assert_eq(err.code, TN_EINVALID);
    cr_assert_eq(strncmp(err.message, c->field, strlen(c->field)), 0,
                 "case %zu: message \"%s\" must start with %s", i, err.message, c->field);
    cr_assert_str_eq(err.causes[0].field, c->field, "case %zu", i);
    cr_assert_eq(err.n_causes, 1);
    cr_assert_not_null(strstr(err.message, c->words), "case %zu: \"%s\" lacks \"%s\"", i, err.message,
                       c->words);
    json_decref(j);
  }
}

Test(tenant_parse, refuses_a_non_object) {
  json_t *j = json_string("acme");
  struct tn_tenant *t = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_parse(j, &t, &err), TN_EINVALID);
  cr_assert_null(t);
  json_decref(j);
}

Test(tenant_parse, hostile_group_names_are_kept_verbatim) {
  /* Group names are free text from identity providers: kept as they are, escaped later by
   * jansson when written (see test_desired). */
  json_t *j =
      load("{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"identity\":{\"groupBindings\":"
           "[{\"group\":\"x\\\"}],\\\"kind\\\":\\\"User'; --\",\"role\":\"tenant-viewer\"}]}}}");
  struct tn_tenant *t = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_parse(j, &t, &err), 0, "%s", err.message);
  cr_assert_str_eq(t->group_bindings[0].group, "x\"}],\"kind\":\"User'; --");
  cr_assert_eq(t->group_bindings[0].role, TN_ROLE_VIEWER);
  tn_tenant_free(t);
  json_decref(j);
}

Test(tenant_parse, state_isolation_and_role_names_round_trip) {
  for (int s = 0; s < TN_STATE_COUNT; s++) {
    enum tn_state back;
    cr_assert_eq(tn_state_parse(tn_state_name((enum tn_state)s), &back), 0);
    cr_assert_eq(back, s);
  }
  enum tn_state st;
  cr_assert_eq(tn_state_parse("draft", &st), TN_EINVALID, "state names are case-sensitive");
  cr_assert_str_eq(tn_state_name((enum tn_state)99), "?");
  for (int i = 0; i < TN_ISOLATION_COUNT; i++) {
    enum tn_isolation back;
    cr_assert_eq(tn_isolation_parse(tn_isolation_name((enum tn_isolation)i), &back), 0);
    cr_assert_eq(back, i);
  }
  for (int i = 0; i < TN_ROLE_COUNT; i++) {
    enum tn_role back;
    cr_assert_eq(tn_role_parse(tn_role_name((enum tn_role)i), &back), 0);
    cr_assert_eq(back, i);
  }
}

Test(tenant_parse, dns_labels) {
  const char *good[] = {"a", "acme",   "a-b",
                        "0", "9lives", "x123456789012345678901234567890123456789012345678901234567890ab"};
  const char *bad[] = {"",
                       "-a",
                       "a-",
                       "A",
                       "a_b",
                       "a.b",
                       "a b",
                       "ä",
                       "a\"b",
                       "a;b",
                       "a'b",
                       "a/b",
                       "x1234567890123456789012345678901234567890123456789012345678901ab"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    cr_assert(tn_is_dns_label(good[i]), "%s", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_not(tn_is_dns_label(bad[i]), "%s", bad[i]);
  cr_assert_not(tn_is_dns_label(NULL));
  cr_assert_eq(strlen(good[5]), 63);
  cr_assert_eq(strlen(bad[12]), 64);
}

Test(tenant_parse, quantities) {
  static const struct {
    const char *s;
    int64_t milli;
  } ok[] = {
      {"4", 4000},
      {"0", 0},
      {"500m", 500},
      {"1.5", 1500},
      {"0.05", 50},
      {"+2", 2000},
      {"2e3", 2000000},
      {"2E3", 2000000},
      {"1k", 1000000},
      {"1Ki", 1024000},
      {"8Gi", 8LL * 1024 * 1024 * 1024 * 1000},
      {"1024Mi", 1024LL * 1024 * 1024 * 1000},
      {"1G", 1000000000000LL},
      {"0.1m", 1},  /* rounded up like MilliValue */
      {"1n", 1},    /* rounded up */
      {"100u", 1},  /* 0.1m, rounded up */
      {"1500u", 2}, /* 1.5m, rounded up */
      {"50Ti", 50LL * 1024 * 1024 * 1024 * 1024 * 1000},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int64_t v = -1;
    cr_assert_eq(tn_quantity_parse(ok[i].s, &v), 0, "%s", ok[i].s);
    cr_assert_eq(v, ok[i].milli, "%s: %lld != %lld", ok[i].s, (long long)v, (long long)ok[i].milli);
  }
  const char *bad[] = {"",   "-1", "abc",  "1.2.3", "1Gi ", " 1",  "1e",   "1x",
                       "Gi", ".",  "1Eix", "8EB",   "1Ei",  "99E", "1e400"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t v;
    cr_assert_eq(tn_quantity_parse(bad[i], &v), TN_EINVALID, "\"%s\" was accepted", bad[i]);
  }
  int64_t v;
  cr_assert_eq(tn_quantity_parse(NULL, &v), TN_EINVALID);
}

/* ---- Plan ---------------------------------------------------------------------------------------- */

static const char sample_plan[] =
    "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Plan\",\"metadata\":{\"name\":\"standard\"},"
    "\"spec\":{\"features\":{\"sso\":true,\"auditExport\":false},"
    "\"quotas\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"50Gi\",\"pods\":50,\"services\":10,"
    "\"connections\":20,\"eventsPerDay\":100000},"
    "\"rateLimits\":{\"requestsPerSecond\":50,\"burst\":100}}}";

Test(plan_parse, parses_the_documented_sample) {
  json_t *j = load(sample_plan);
  struct tn_plan *p = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_plan_parse(j, &p, &err), 0, "%s", err.message);
  cr_assert_str_eq(p->name, "standard");
  cr_assert_str_eq(p->quotas.cpu, "4");
  cr_assert_eq(p->quotas.cpu_milli, 4000);
  cr_assert_str_eq(p->quotas.memory, "8Gi");
  cr_assert_eq(p->quotas.memory_milli, 8LL * 1024 * 1024 * 1024 * 1000);
  cr_assert_str_eq(p->quotas.storage, "50Gi");
  cr_assert_eq(p->quotas.pods, 50);
  cr_assert_eq(p->quotas.services, 10);
  cr_assert_eq(p->quotas.connections, 20);
  cr_assert_eq(p->quotas.events_per_day, 100000);
  cr_assert_eq(p->n_features, 2);
  cr_assert_str_eq(p->features[0].name, "auditExport", "sorted by name");
  cr_assert_eq(p->features[0].enabled, false);
  cr_assert_str_eq(p->features[1].name, "sso");
  cr_assert_eq(p->features[1].enabled, true);
  cr_assert(p->has_rate_limits);
  cr_assert_eq(p->requests_per_second, 50);
  cr_assert_eq(p->burst, 100);
  tn_plan_free(p);
  tn_plan_free(NULL);
  json_decref(j);
}

Test(plan_parse, integer_quantities_and_optional_fields) {
  json_t *j = load("{\"metadata\":{\"name\":\"tiny\"},\"spec\":{\"quotas\":{\"cpu\":2,\"memory\":\"512Mi\","
                   "\"storage\":0,\"pods\":0,\"services\":0}}}");
  struct tn_plan *p = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_plan_parse(j, &p, &err), 0, "%s", err.message);
  cr_assert_str_eq(p->quotas.cpu, "2");
  cr_assert_str_eq(p->quotas.storage, "0");
  cr_assert_eq(p->quotas.connections, -1);
  cr_assert_eq(p->quotas.events_per_day, -1);
  cr_assert_not(p->has_rate_limits);
  cr_assert_eq(p->n_features, 0);
  tn_plan_free(p);
  json_decref(j);
}

static const struct bad_case bad_plans[] = {
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{}}", "spec.quotas", "is required"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"memory\":\"1Gi\",\"storage\":\"1Gi\",\"pods\":1,"
     "\"services\":1}}}",
     "spec.quotas.cpu", "is required"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"cpu\":\"four\",\"memory\":\"1Gi\",\"storage\":"
     "\"1Gi\","
     "\"pods\":1,\"services\":1}}}",
     "spec.quotas.cpu", "\"four\" is not a non-negative Kubernetes quantity"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"cpu\":\"0\",\"memory\":\"1Gi\",\"storage\":"
     "\"1Gi\","
     "\"pods\":1,\"services\":1}}}",
     "spec.quotas.cpu", "greater than zero"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"cpu\":\"1\",\"memory\":\"-1Gi\",\"storage\":"
     "\"1Gi\","
     "\"pods\":1,\"services\":1}}}",
     "spec.quotas.memory", "not a non-negative"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":true,"
     "\"pods\":1,\"services\":1}}}",
     "spec.quotas.storage", "must be a quantity"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":"
     "\"1Gi\","
     "\"services\":1}}}",
     "spec.quotas.pods", "is required"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":"
     "\"1Gi\","
     "\"pods\":-5,\"services\":1}}}",
     "spec.quotas.pods", "must not be negative"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":"
     "\"1Gi\","
     "\"pods\":1,\"services\":\"1\"}}}",
     "spec.quotas.services", "must be an integer"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":"
     "\"1Gi\","
     "\"pods\":1,\"services\":1},\"features\":{\"sso\":\"yes\"}}}",
     "spec.features.sso", "true or false"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":"
     "\"1Gi\","
     "\"pods\":1,\"services\":1},\"rateLimits\":{\"requestsPerSecond\":10,\"burst\":5}}}",
     "spec.rateLimits.burst", "at least spec.rateLimits.requestsPerSecond (10)"},
    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":"
     "\"1Gi\","
     "\"pods\":1,\"services\":1},\"rateLimits\":{\"burst\":5}}}",
     "spec.rateLimits.requestsPerSecond", "is required"},
};

Test(plan_parse, refuses_bad_plans_naming_the_field) {
  for (size_t i = 0; i < sizeof bad_plans / sizeof bad_plans[0]; i++) {
    const struct bad_case *c = &bad_plans[i];
    json_t *j = load(c->json);
    struct tn_plan *p = (struct tn_plan *)1;
    struct tn_error err = {0};
    cr_assert_eq(tn_plan_parse(j, &p, &err), TN_EINVALID, "case %zu was accepted", i);
    cr_assert_null(p);
    cr_assert_str_eq(err.causes[0].field, c->field, "case %zu: %s", i, err.message);
    cr_assert_not_null(strstr(err.message, c->words), "case %zu: \"%s\" lacks \"%s\"", i, err.message,
                       c->words);
    json_decref(j);
  }
}

/* ---- Region -------------------------------------------------------------------------------------- */

Test(region_parse, parses_modes_and_availability) {
  json_t *j = load("{\"metadata\":{\"name\":\"eu-west-1\"},\"spec\":{\"available\":true,\"isolationModes\":"
                   "[\"shared\",\"hybrid\"],\"databaseServers\":[{\"name\":\"pg\"}]}}");
  struct tn_region *r = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_region_parse(j, &r, &err), 0, "%s", err.message);
  cr_assert_str_eq(r->name, "eu-west-1");
  cr_assert(r->available);
  cr_assert_eq(r->isolation_modes, (1u << TN_ISOLATION_SHARED) | (1u << TN_ISOLATION_HYBRID));
  tn_region_free(r);
  json_decref(j);

  j = load("{\"metadata\":{\"name\":\"us-1\"},\"spec\":{}}");
  cr_assert_eq(tn_region_parse(j, &r, &err), 0, "%s", err.message);
  cr_assert_not(r->available, "available defaults to false");
  cr_assert_eq(r->isolation_modes, 0);
  tn_region_free(r);
  tn_region_free(NULL);
  json_decref(j);
}

Test(region_parse, refuses_bad_regions) {
  static const struct bad_case bad[] = {
      {"{\"metadata\":{\"name\":\"eu\"},\"spec\":{\"available\":\"yes\"}}", "spec.available",
       "true or false"},
      {"{\"metadata\":{\"name\":\"eu\"},\"spec\":{\"isolationModes\":[\"shared\",\"private\"]}}",
       "spec.isolationModes[1]", "supported values"},
      {"{\"metadata\":{\"name\":\"EU_1\"},\"spec\":{}}", "metadata.name", "is not a DNS label"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *j = load(bad[i].json);
    struct tn_region *r = NULL;
    struct tn_error err = {0};
    cr_assert_eq(tn_region_parse(j, &r, &err), TN_EINVALID, "case %zu", i);
    cr_assert_null(r);
    cr_assert_str_eq(err.causes[0].field, bad[i].field, "case %zu: %s", i, err.message);
    cr_assert_not_null(strstr(err.message, bad[i].words), "case %zu: %s", i, err.message);
    json_decref(j);
  }
}

Test(tenant_parse, ownership_is_an_owner_reference_to_the_tenant_uid) {
  json_t *o = load(
      "{\"metadata\":{\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"uid\":\"u1\"},"
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"name\":\"acme\",\"uid\":\"u1\"}]}}");
  cr_assert(tn_owned_by_tenant(o, "u1"));
  cr_assert_not(tn_owned_by_tenant(o, "u2"), "another tenant's uid");
  cr_assert_not(tn_owned_by_tenant(o, NULL));
  json_decref(o);
  o = load("{\"metadata\":{\"ownerReferences\":[{\"apiVersion\":\"other.dev/"
           "v1\",\"kind\":\"Tenant\",\"uid\":\"u1\"}]}}");
  cr_assert_not(tn_owned_by_tenant(o, "u1"), "a Tenant kind of another API group");
  json_decref(o);
  o = load("{\"metadata\":{\"name\":\"x\"}}");
  cr_assert_not(tn_owned_by_tenant(o, "u1"), "no owner references");
  json_decref(o);
}

/* ISOLATION (issue 16): a placed tenant is served by status.placement.isolation (a migration
 * changes it); before it is placed (Draft, first placement) by spec.isolation. */
Test(tenant_parse, effective_isolation_is_the_status_once_placed) {
  struct {
    const char *status;
    enum tn_isolation want;
  } cases[] = {
      {"{\"state\":\"Active\",\"placement\":{\"region\":\"eu-1\",\"isolation\":\"dedicated\"}}",
       TN_ISOLATION_DEDICATED},
      {"{\"state\":\"Suspended\",\"placement\":{\"region\":\"eu-1\",\"isolation\":\"hybrid\"}}",
       TN_ISOLATION_HYBRID},
      {"{\"state\":\"Archived\",\"placement\":{\"region\":\"eu-1\",\"isolation\":\"dedicated\"}}",
       TN_ISOLATION_DEDICATED},
      /* not placed yet: the spec */
      {"{\"state\":\"Draft\",\"placement\":{\"region\":\"eu-1\",\"isolation\":\"dedicated\"}}",
       TN_ISOLATION_SHARED},
      {"{\"state\":\"Active\",\"placement\":{\"isolation\":\"dedicated\"}}", TN_ISOLATION_SHARED},
      {"{\"state\":\"Active\",\"placement\":{\"region\":\"eu-1\"}}", TN_ISOLATION_SHARED},
      {"{\"state\":\"Active\",\"placement\":{\"region\":\"eu-1\",\"isolation\":\"bogus\"}}",
       TN_ISOLATION_SHARED},
      {"{}", TN_ISOLATION_SHARED},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[512];
    snprintf(text, sizeof text,
             "{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"p\",\"state\":\"Active\",\"isolation\":"
             "\"shared\"},\"status\":%s}",
             cases[i].status);
    json_t *j = load(text);
    struct tn_tenant *t = NULL;
    struct tn_error err = {0};
    cr_assert_eq(tn_tenant_parse(j, &t, &err), 0, "%s: %s", cases[i].status, err.message);
    cr_assert_eq(t->isolation, cases[i].want, "%s: isolation %s", cases[i].status,
                 tn_isolation_name(t->isolation));
    cr_assert_eq(t->spec_isolation, TN_ISOLATION_SHARED);
    tn_tenant_free(t);
    json_decref(j);
  }
}
