/* test_policy.c - TenancyPolicy parsing and the pure policy evaluator: residency, encryption,
 * allowed actions, quota overrides, several violations in one message, ratcheting, and the
 * uniqueness of external ids. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/policy.h"

/* ---- fixtures ------------------------------------------------------------------------------ */

static json_t *load(const char *text) {
  json_error_t je;
  json_t *v = json_loads(text, 0, &je);
  cr_assert_not_null(v, "bad JSON in the test: %s: %s", je.text, text);
  return v;
}

static struct tn_policy *policy(const char *name, const char *spec_json) {
  char buf[8192];
  snprintf(buf, sizeof buf, "{\"metadata\":{\"name\":\"%s\",\"generation\":3},\"spec\":%s}", name, spec_json);
  json_t *obj = load(buf);
  struct tn_policy *p = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_policy_parse(obj, &p, &err), 0, "%s", err.message);
  json_decref(obj);
  return p;
}

/* A tenant from the spec (and optional status) JSON. */
static struct tn_tenant *tenant_st(const char *name, const char *spec_json, const char *status_json) {
  char buf[8192];
  snprintf(buf, sizeof buf,
           "{\"metadata\":{\"name\":\"%s\",\"uid\":\"u-%s\",\"generation\":1},\"spec\":%s%s%s}", name, name,
           spec_json, status_json ? ",\"status\":" : "", status_json ? status_json : "");
  json_t *obj = load(buf);
  struct tn_tenant *t = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_parse(obj, &t, &err), 0, "%s", err.message);
  json_decref(obj);
  return t;
}

static struct tn_tenant *tenant(const char *name, const char *spec_json) {
  return tenant_st(name, spec_json, NULL);
}

static struct tn_policy_region *region(const char *name, const char *spec_json) {
  char buf[4096];
  snprintf(buf, sizeof buf, "{\"metadata\":{\"name\":\"%s\"},\"spec\":%s}", name, spec_json);
  json_t *obj = load(buf);
  struct tn_policy_region *r = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_policy_region_parse(obj, &r, &err), 0, "%s", err.message);
  json_decref(obj);
  return r;
}

#define ALL_MODES "\"isolationModes\":[\"shared\",\"dedicated\",\"hybrid\"]"

/* The sample inventory: eu-west-1, eu-central-1, us-east-1, all available, no database servers. */
struct inventory {
  struct tn_policy_region *r[8];
  size_t n;
};

static void inventory_samples(struct inventory *inv) {
  inv->r[0] = region("eu-west-1", "{\"available\":true," ALL_MODES "}");
  inv->r[1] = region("eu-central-1", "{\"available\":true,\"isolationModes\":[\"shared\",\"dedicated\"]}");
  inv->r[2] = region("us-east-1", "{\"available\":true," ALL_MODES "}");
  inv->n = 3;
}

static void inventory_free(struct inventory *inv) {
  for (size_t i = 0; i < inv->n; i++)
    tn_policy_region_free(inv->r[i]);
}

static const char EU_RESIDENCY[] =
    "{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":[\"eu-west-1\",\"eu-central-1\"]}]}";

/* Evaluates t against the policies and inventory; returns the code, result in *res. */
static int evaluate(const struct tn_tenant *t, struct tn_policy **pols, size_t np, struct inventory *inv,
                    const struct tn_transition *steps, size_t ns, unsigned quota_overrides,
                    const char *db_server, struct tn_policy_result *res, struct tn_error *err) {
  struct tn_policy_input in = {.tenant = t,
                               .quota_overrides = quota_overrides,
                               .database_server = db_server,
                               .regions = (const struct tn_policy_region *const *)(inv ? inv->r : NULL),
                               .n_regions = inv ? inv->n : 0,
                               .policies = (const struct tn_policy *const *)pols,
                               .n_policies = np,
                               .steps = steps,
                               .n_steps = ns};
  return tn_policy_evaluate(&in, res, err);
}

static struct tn_transition step(enum tn_state from, enum tn_state to, enum tn_action a) {
  return (struct tn_transition){.from = from, .to = to, .action = a};
}

/* ---- parsing --------------------------------------------------------------------------------- */

Test(policy_parse, the_documented_example) {
  struct tn_policy *p = policy(
      "eu-residency", "{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":[\"eu-west-1\","
                      "\"eu-central-1\"]}],\"encryption\":{\"requireDatabaseTLS\":true,"
                      "\"requireTenantKeys\":true},\"retention\":{\"archivedData\":\"90d\","
                      "\"auditRecords\":\"2555d\"},\"allowedActions\":[{\"action\":\"delete\",\"plans\":"
                      "[\"starter\"],\"fromStates\":[\"Draft\",\"Archived\"]},{\"action\":\"activate\"}],"
                      "\"quotaOverrides\":[\"pods\",\"storage\"]}");
  cr_assert_str_eq(p->name, "eu-residency");
  cr_assert_eq(p->generation, 3);
  cr_assert_eq(p->n_residency, 1);
  cr_assert_str_eq(p->residency[0].flag, "eu-only");
  cr_assert_eq(p->residency[0].n_allowed_regions, 2);
  cr_assert_str_eq(p->residency[0].allowed_regions[1], "eu-central-1");
  cr_assert(p->require_database_tls);
  cr_assert(p->require_tenant_keys);
  cr_assert_eq(p->archived_data_days, 90);
  cr_assert_eq(p->audit_records_days, 2555);
  cr_assert(p->has_allowed_actions);
  cr_assert_eq(p->n_allowed_actions, 2);
  cr_assert_eq(p->allowed_actions[0].action, TN_ACTION_DELETE);
  cr_assert_eq(p->allowed_actions[0].n_plans, 1);
  cr_assert_str_eq(p->allowed_actions[0].plans[0], "starter");
  cr_assert_eq(p->allowed_actions[0].from_states, (1u << TN_STATE_DRAFT) | (1u << TN_STATE_ARCHIVED));
  cr_assert_eq(p->allowed_actions[1].action, TN_ACTION_ACTIVATE);
  cr_assert_eq(p->allowed_actions[1].from_states, 0u);
  cr_assert_eq(p->quota_overrides, (1u << TN_QUOTA_PODS) | (1u << TN_QUOTA_STORAGE));
  tn_policy_free(p);
}

Test(policy_parse, absent_fields_restrict_nothing) {
  struct tn_policy *p = policy("empty", "{}");
  cr_assert_eq(p->n_residency, 0);
  cr_assert_not(p->require_database_tls);
  cr_assert_eq(p->archived_data_days, -1);
  cr_assert_eq(p->audit_records_days, -1);
  cr_assert_not(p->has_allowed_actions);
  cr_assert_eq(p->quota_overrides, 0u);
  tn_policy_free(p);
  p = policy("frozen", "{\"allowedActions\":[]}");
  cr_assert(p->has_allowed_actions, "an empty list is set: it allows nothing");
  cr_assert_eq(p->n_allowed_actions, 0);
  tn_policy_free(p);
}

static void assert_parse_fails(const char *spec_json, const char *field, const char *needle) {
  char buf[4096];
  snprintf(buf, sizeof buf, "{\"metadata\":{\"name\":\"bad\"},\"spec\":%s}", spec_json);
  json_t *obj = load(buf);
  struct tn_policy *p = (struct tn_policy *)1;
  struct tn_error err = {0};
  cr_assert_eq(tn_policy_parse(obj, &p, &err), TN_EINVALID, "%s parsed", spec_json);
  cr_assert_null(p);
  cr_assert_str_eq(err.causes[0].field, field, "field of %s", err.message);
  cr_assert(strstr(err.message, needle), "message: %s", err.message);
  cr_assert(strstr(err.message, "TenancyPolicy bad: "), "names the policy: %s", err.message);
  json_decref(obj);
}

Test(policy_parse, bad_input_names_the_field) {
  assert_parse_fails("{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":[\"eu-west-1\",\"EU\"]}]}",
                     "spec.residency[0].allowedRegions[1]", "is not a DNS label");
  assert_parse_fails("{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":[]}]}",
                     "spec.residency[0].allowedRegions", "at least one");
  assert_parse_fails("{\"retention\":{\"archivedData\":\"90\"}}", "spec.retention.archivedData", "90d");
  assert_parse_fails("{\"allowedActions\":[{\"action\":\"suspend\",\"fromStates\":[\"Draft\"]}]}",
                     "spec.allowedActions[0].fromStates[0]",
                     "fromStates must be states the action can start");
  assert_parse_fails("{\"allowedActions\":[{\"action\":\"create\"}]}", "spec.allowedActions[0].action",
                     "activate, suspend");
  assert_parse_fails("{\"quotaOverrides\":[\"gpu\"]}", "spec.quotaOverrides[0]", "eventsPerDay");
  assert_parse_fails("{\"encryption\":{\"requireDatabaseTLS\":\"yes\"}}",
                     "spec.encryption.requireDatabaseTLS", "true or false");
}

Test(policy_parse, region_database_servers) {
  struct tn_policy_region *r = region(
      "eu-west-1", "{\"available\":true," ALL_MODES ",\"databaseServers\":[{\"name\":\"pg-1\",\"host\":"
                   "\"db\",\"sslMode\":\"require\",\"serves\":[\"shared\"]},{\"name\":\"pg-2\",\"host\":"
                   "\"db2\",\"serves\":[\"dedicated\",\"hybrid\"]}]}");
  cr_assert_str_eq(r->region->name, "eu-west-1");
  cr_assert_eq(r->n_servers, 2);
  cr_assert_str_eq(r->servers[0].ssl_mode, "require");
  cr_assert_eq(r->servers[0].serves, 1u << TN_ISOLATION_SHARED);
  cr_assert_str_eq(r->servers[1].ssl_mode, "verify-full", "the CRD default");
  cr_assert_eq(r->servers[1].serves, (1u << TN_ISOLATION_DEDICATED) | (1u << TN_ISOLATION_HYBRID));
  tn_policy_region_free(r);
}

Test(policy_parse, tenant_fields_not_in_struct_tenant) {
  json_t *obj = load("{\"metadata\":{\"name\":\"a\"},\"spec\":{\"plan\":\"p\",\"quotaOverrides\":{\"pods\":9,"
                     "\"cpu\":\"8\",\"bogus\":1}},\"status\":{\"placement\":{\"region\":\"eu-west-1\","
                     "\"databaseServer\":\"pg-1\"}}}");
  unsigned qo = 99;
  const char *ds = NULL;
  tn_policy_tenant_fields(obj, &qo, &ds);
  cr_assert_eq(qo, (1u << TN_QUOTA_PODS) | (1u << TN_QUOTA_CPU));
  cr_assert_str_eq(ds, "pg-1");
  json_decref(obj);
  obj = load("{\"metadata\":{\"name\":\"a\"},\"spec\":{\"plan\":\"p\"},\"status\":{\"database\":{\"server\":"
             "\"pg-2\"}}}");
  tn_policy_tenant_fields(obj, &qo, &ds);
  cr_assert_str_eq(ds, "pg-2", "status.database.server when placement does not say");
  json_decref(obj);
  obj = load("{\"metadata\":{\"name\":\"a\"},\"spec\":{\"plan\":\"p\"}}");
  tn_policy_tenant_fields(obj, &qo, &ds);
  cr_assert_eq(qo, 0u);
  cr_assert_null(ds);
  json_decref(obj);
}

/* ---- residency ----------------------------------------------------------------------------------- */

Test(residency, region_outside_the_flag_is_named_with_the_fix) {
  struct tn_policy *p = policy("eu-residency", EU_RESIDENCY);
  struct tn_tenant *t =
      tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"eu-west-1\","
                     "\"us-east-1\"],\"flags\":[\"eu-only\"]}}");
  struct inventory inv;
  inventory_samples(&inv);
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, &p, 1, &inv, NULL, 0, 0, NULL, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_str_eq(
      res.violations[0].message,
      "TenancyPolicy eu-residency: residency flag eu-only allows regions [eu-west-1, eu-central-1]; "
      "spec.residency.allowedRegions has us-east-1: remove it or drop the flag");
  cr_assert_str_eq(res.violations[0].policy, "eu-residency");
  cr_assert_str_eq(res.violations[0].rule, "residency");
  cr_assert_str_eq(res.violations[0].field, "spec.residency.allowedRegions");
  cr_assert_str_eq(err.message, res.violations[0].message);
  cr_assert_str_eq(err.reason, TN_REASON_POLICY_DENIED);
  cr_assert_eq(err.n_causes, 1);
  cr_assert_str_eq(err.causes[0].field, "spec.residency.allowedRegions");
  cr_assert(res.residency_restricted);
  cr_assert_eq(res.residency.n_allowed_regions, 1, "narrowed to what the policy allows");
  cr_assert_str_eq(res.residency.allowed_regions[0], "eu-west-1");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);

  t = tenant("acme",
             "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"us-east-1\",\"ap-south-1\"],"
             "\"flags\":[\"eu-only\"]}}");
  cr_assert_eq(evaluate(t, &p, 1, &inv, NULL, 0, 0, NULL, &res, &err), TN_EINVALID);
  cr_assert(strstr(res.violations[0].message, "has us-east-1, ap-south-1: remove them or drop the flag"),
            "%s", res.violations[0].message);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p);
  inventory_free(&inv);
}

Test(residency, compliant_tenant_and_unflagged_tenant_are_allowed) {
  struct tn_policy *p = policy("eu-residency", EU_RESIDENCY);
  struct tn_tenant *t =
      tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"eu-west-1\","
                     "\"eu-central-1\"],\"preferredRegion\":\"eu-west-1\",\"flags\":[\"eu-only\"]}}");
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, &p, 1, NULL, NULL, 0, 0, NULL, &res, &err), 0, "%s", err.message);
  cr_assert_eq(res.n_violations, 0);
  cr_assert_eq(res.n_warnings, 0);
  cr_assert_eq(res.residency.n_allowed_regions, 2);
  cr_assert_str_eq(res.residency.preferred_region, "eu-west-1");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);

  t = tenant("globex", "{\"plan\":\"starter\",\"residency\":{\"allowedRegions\":[\"us-east-1\"]}}");
  cr_assert_eq(evaluate(t, &p, 1, NULL, NULL, 0, 0, NULL, &res, &err), 0, "%s", err.message);
  cr_assert_not(res.residency_restricted, "no flag, no rule");
  cr_assert_eq(res.residency.n_allowed_regions, 1);
  cr_assert_str_eq(res.residency.allowed_regions[0], "us-east-1");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p);
}

Test(residency, empty_allowed_regions_is_narrowed_to_the_flag) {
  struct tn_policy *p = policy("eu-residency", EU_RESIDENCY);
  struct tn_tenant *t = tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"flags\":[\"eu-only\"]}}");
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, &p, 1, NULL, NULL, 0, 0, NULL, &res, &err), 0, "%s", err.message);
  cr_assert(res.residency_restricted);
  cr_assert_eq(res.residency.n_allowed_regions, 2);
  cr_assert_str_eq(res.residency.allowed_regions[0], "eu-west-1");
  cr_assert_str_eq(res.residency.allowed_regions[1], "eu-central-1");
  cr_assert_null(res.residency.preferred_region);
  cr_assert_eq(res.residency.n_flags, 0);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);

  /* the preference must lie inside the flag's regions when the tenant lists none itself */
  t = tenant(
      "acme",
      "{\"plan\":\"standard\",\"residency\":{\"preferredRegion\":\"us-east-1\",\"flags\":[\"eu-only\"]}}");
  cr_assert_eq(evaluate(t, &p, 1, NULL, NULL, 0, 0, NULL, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_str_eq(res.violations[0].field, "spec.residency.preferredRegion");
  cr_assert_str_eq(
      res.violations[0].message,
      "TenancyPolicy eu-residency: residency flag eu-only allows regions [eu-west-1, eu-central-1]; "
      "spec.residency.preferredRegion is us-east-1: prefer one of those regions or drop the flag");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p);
}

Test(residency, several_policies_on_one_flag_intersect_and_each_is_named) {
  struct tn_policy *p[2] = {policy("eu-residency", EU_RESIDENCY),
                            policy("gdpr-strict", "{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":"
                                                  "[\"eu-central-1\"]}]}")};
  struct tn_tenant *t = tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"flags\":[\"eu-only\"]}}");
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, p, 2, NULL, NULL, 0, 0, NULL, &res, &err), 0, "%s", err.message);
  cr_assert_eq(res.residency.n_allowed_regions, 1, "the strictest wins");
  cr_assert_str_eq(res.residency.allowed_regions[0], "eu-central-1");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);

  t = tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"eu-west-1\",\"us-east-1\"],"
                     "\"flags\":[\"eu-only\"]}}");
  cr_assert_eq(evaluate(t, p, 2, NULL, NULL, 0, 0, NULL, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 2);
  cr_assert_str_eq(res.violations[0].policy, "eu-residency");
  cr_assert(strstr(res.violations[0].message, "has us-east-1: remove it"), "%s", res.violations[0].message);
  cr_assert_str_eq(res.violations[1].policy, "gdpr-strict");
  cr_assert(strstr(res.violations[1].message,
                   "allows regions [eu-central-1]; spec.residency.allowedRegions has "
                   "eu-west-1, us-east-1: remove them"),
            "%s", res.violations[1].message);
  cr_assert_eq(res.residency.n_allowed_regions, 0, "nothing of the tenant's list survives");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p[0]);
  tn_policy_free(p[1]);
}

Test(residency, flags_without_a_common_region) {
  struct tn_policy *p[2] = {policy("eu-residency", EU_RESIDENCY),
                            policy("us-residency", "{\"residency\":[{\"flag\":\"us-only\",\"allowedRegions\":"
                                                   "[\"us-east-1\"]}]}")};
  struct tn_tenant *t =
      tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"flags\":[\"eu-only\",\"us-only\"]}}");
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, p, 2, NULL, NULL, 0, 0, NULL, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_null(res.violations[0].policy, "two policies share the blame");
  cr_assert_str_eq(res.violations[0].field, "spec.residency.flags");
  cr_assert_str_eq(
      res.violations[0].message,
      "spec.residency.flags: the residency rules of the tenant's flags allow no region in common: "
      "eu-only (TenancyPolicy eu-residency) allows [eu-west-1, eu-central-1]; us-only (TenancyPolicy "
      "us-residency) allows [us-east-1]: drop a flag, or align the policies");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p[0]);
  tn_policy_free(p[1]);
}

Test(residency, unknown_flag_warns_but_allows) {
  struct tn_policy *p = policy("eu-residency", EU_RESIDENCY);
  struct tn_tenant *t = tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"flags\":[\"eu-onyl\"]}}");
  struct tn_policy_result res;
  cr_assert_eq(evaluate(t, &p, 1, NULL, NULL, 0, 0, NULL, &res, NULL), 0);
  cr_assert_not(res.residency_restricted);
  cr_assert_eq(res.n_warnings, 1);
  cr_assert_str_eq(res.warnings[0],
                   "spec.residency.flags: no TenancyPolicy has a residency rule for flag eu-onyl, "
                   "so it restricts nothing; check its spelling");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p);
}

Test(residency, a_placed_tenant_outside_the_flag_is_a_violation) {
  struct tn_policy *p = policy("eu-residency", EU_RESIDENCY);
  struct tn_tenant *t = tenant_st("acme",
                                  "{\"plan\":\"standard\",\"state\":\"Active\",\"residency\":{\"flags\":"
                                  "[\"eu-only\"]}}",
                                  "{\"state\":\"Active\",\"placement\":{\"region\":\"us-east-1\"}}");
  struct tn_policy_result res;
  cr_assert_eq(evaluate(t, &p, 1, NULL, NULL, 0, 0, NULL, &res, NULL), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_str_eq(res.violations[0].field, "status.placement.region");
  cr_assert(strstr(res.violations[0].message,
                   "the tenant is already placed in us-east-1 and a placed tenant is "
                   "never moved (that is a migration)"),
            "%s", res.violations[0].message);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p);
}

/* ---- encryption ------------------------------------------------------------------------------------ */

static const char TLS_POLICY[] = "{\"encryption\":{\"requireDatabaseTLS\":true,\"requireTenantKeys\":true}}";

Test(encryption, region_without_a_verifying_server_for_the_mode) {
  struct tn_policy *p = policy("tls", TLS_POLICY);
  struct inventory inv = {.n = 2};
  inv.r[0] = region("eu-west-1",
                    "{\"available\":true," ALL_MODES ",\"databaseServers\":[{\"name\":\"pg-1\","
                    "\"host\":\"db\",\"sslMode\":\"require\",\"serves\":[\"shared\"]},{\"name\":"
                    "\"pg-2\",\"host\":\"db\",\"sslMode\":\"verify-full\",\"serves\":[\"dedicated\"]}]}");
  inv.r[1] = region("us-east-1", "{\"available\":true," ALL_MODES "}");
  struct tn_tenant *t =
      tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"eu-west-1\"]}}");
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, &p, 1, &inv, NULL, 0, 0, NULL, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_str_eq(res.violations[0].rule, "encryption");
  cr_assert_str_eq(res.violations[0].field, "spec.residency");
  cr_assert_str_eq(
      res.violations[0].message,
      "TenancyPolicy tls: encryption.requireDatabaseTLS needs a database server with sslMode verify-ca "
      "or verify-full, and Region eu-west-1 (where the tenant would be placed) hosts isolation shared "
      "only on pg-1 (sslMode require): set sslMode verify-full (with a caSecretRef) on one of them, "
      "or let the tenant live in another region");
  cr_assert(res.require_database_tls);
  cr_assert(res.require_tenant_keys, "recorded as a requirement; keys are provisioned elsewhere");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);

  /* dedicated tenants land on pg-2, which verifies */
  t = tenant("acme", "{\"plan\":\"standard\",\"isolation\":\"dedicated\",\"residency\":{\"allowedRegions\":"
                     "[\"eu-west-1\"]}}");
  cr_assert_eq(evaluate(t, &p, 1, &inv, NULL, 0, 0, NULL, &res, &err), 0, "%s", err.message);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);

  /* us-east-1 lists no database server: nothing to check yet */
  t = tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"us-east-1\"]}}");
  cr_assert_eq(evaluate(t, &p, 1, &inv, NULL, 0, 0, NULL, &res, &err), 0, "%s", err.message);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p);
  inventory_free(&inv);
}

Test(encryption, the_placed_database_server_must_verify) {
  struct tn_policy *p = policy("tls", TLS_POLICY);
  struct inventory inv = {.n = 1};
  inv.r[0] =
      region("eu-west-1", "{\"available\":true," ALL_MODES ",\"databaseServers\":[{\"name\":\"pg-1\","
                          "\"host\":\"db\",\"sslMode\":\"prefer\",\"serves\":[\"shared\"]},{\"name\":"
                          "\"pg-2\",\"host\":\"db\",\"sslMode\":\"verify-ca\",\"serves\":[\"shared\"]}]}");
  struct tn_tenant *t = tenant_st("acme", "{\"plan\":\"standard\",\"state\":\"Active\"}",
                                  "{\"state\":\"Active\",\"placement\":{\"region\":\"eu-west-1\"}}");
  struct tn_policy_result res;
  cr_assert_eq(evaluate(t, &p, 1, &inv, NULL, 0, 0, "pg-1", &res, NULL), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_str_eq(res.violations[0].field, "status.placement.databaseServer");
  cr_assert(strstr(res.violations[0].message,
                   "the tenant's database server pg-1 in Region eu-west-1 uses sslMode "
                   "prefer"),
            "%s", res.violations[0].message);
  tn_policy_result_cleanup(&res);
  cr_assert_eq(evaluate(t, &p, 1, &inv, NULL, 0, 0, "pg-2", &res, NULL), 0);
  tn_policy_result_cleanup(&res);
  /* not on a server yet: pg-2 exists, so the data plane can comply */
  cr_assert_eq(evaluate(t, &p, 1, &inv, NULL, 0, 0, NULL, &res, NULL), 0);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p);
  inventory_free(&inv);
}

/* ---- allowed actions --------------------------------------------------------------------------------- */

static const char ACTIONS_POLICY[] =
    "{\"allowedActions\":[{\"action\":\"delete\",\"plans\":[\"starter\"],\"fromStates\":[\"Draft\","
    "\"Archived\"]},"
    "{\"action\":\"activate\"},{\"action\":\"suspend\",\"plans\":[\"starter\",\"standard\"]},{\"action\":"
    "\"resume\"},{\"action\":\"archive\"}]}";

Test(actions, suspend_forbidden_on_enterprise) {
  struct tn_policy *p = policy("lifecycle", ACTIONS_POLICY);
  struct tn_tenant *t = tenant("bigco", "{\"plan\":\"enterprise\",\"state\":\"Suspended\"}");
  struct tn_transition s = step(TN_STATE_ACTIVE, TN_STATE_SUSPENDED, TN_ACTION_SUSPEND);
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, &p, 1, NULL, &s, 1, 0, NULL, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_str_eq(res.violations[0].field, "spec.state");
  cr_assert_str_eq(
      res.violations[0].message,
      "TenancyPolicy lifecycle: allowedActions does not allow suspend (Active -> Suspended) for a "
      "tenant on plan enterprise; it allows delete on plans [starter] from [Draft, Archived]; activate; "
      "suspend on plans [starter, standard]; resume; archive: add an entry for suspend that covers plan "
      "enterprise and state Active to TenancyPolicy lifecycle, or keep spec.state Active");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);

  t = tenant("smallco", "{\"plan\":\"standard\",\"state\":\"Suspended\"}");
  cr_assert_eq(evaluate(t, &p, 1, NULL, &s, 1, 0, NULL, &res, &err), 0, "%s", err.message);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p);
}

Test(actions, delete_by_plan_and_from_state) {
  struct tn_policy *p = policy("lifecycle", ACTIONS_POLICY);
  struct tn_tenant *t =
      tenant("tiny", "{\"plan\":\"starter\",\"state\":\"Deleted\",\"deletionConfirmation\":\"tiny\"}");
  struct tn_transition s = step(TN_STATE_ARCHIVED, TN_STATE_DELETED, TN_ACTION_DELETE);
  struct tn_policy_result res;
  cr_assert_eq(evaluate(t, &p, 1, NULL, &s, 1, 0, NULL, &res, NULL), 0);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  t = tenant("big", "{\"plan\":\"standard\",\"state\":\"Deleted\",\"deletionConfirmation\":\"big\"}");
  cr_assert_eq(evaluate(t, &p, 1, NULL, &s, 1, 0, NULL, &res, NULL), TN_EINVALID);
  cr_assert(strstr(res.violations[0].message,
                   "does not allow delete (Archived -> Deleted) for a tenant on plan "
                   "standard"));
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p);

  /* fromStates narrows: archive only from Suspended */
  p = policy("careful", "{\"allowedActions\":[{\"action\":\"archive\",\"fromStates\":[\"Suspended\"]}]}");
  t = tenant("acme", "{\"plan\":\"standard\",\"state\":\"Archived\"}");
  struct tn_transition from_active = step(TN_STATE_ACTIVE, TN_STATE_ARCHIVED, TN_ACTION_ARCHIVE);
  struct tn_transition from_susp = step(TN_STATE_SUSPENDED, TN_STATE_ARCHIVED, TN_ACTION_ARCHIVE);
  cr_assert_eq(evaluate(t, &p, 1, NULL, &from_active, 1, 0, NULL, &res, NULL), TN_EINVALID);
  cr_assert(strstr(res.violations[0].message, "it allows archive from [Suspended]"), "%s",
            res.violations[0].message);
  tn_policy_result_cleanup(&res);
  cr_assert_eq(evaluate(t, &p, 1, NULL, &from_susp, 1, 0, NULL, &res, NULL), 0);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p);
}

Test(actions, empty_list_allows_nothing_absent_list_everything_create_never_restricted) {
  struct tn_policy *p[2] = {policy("frozen", "{\"allowedActions\":[]}"), policy("open", "{}")};
  struct tn_tenant *t = tenant("acme", "{\"plan\":\"standard\",\"state\":\"Active\"}");
  struct tn_transition steps[2] = {step(TN_STATE_NONE, TN_STATE_DRAFT, TN_ACTION_CREATE),
                                   step(TN_STATE_DRAFT, TN_STATE_ACTIVE, TN_ACTION_ACTIVATE)};
  struct tn_policy_result res;
  cr_assert_eq(evaluate(t, p, 2, NULL, steps, 2, 0, NULL, &res, NULL), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1, "create is not restricted, activate is; open restricts nothing");
  cr_assert_str_eq(res.violations[0].policy, "frozen");
  cr_assert(
      strstr(res.violations[0].message, "it allows no lifecycle action (its allowedActions list is empty)"));
  tn_policy_result_cleanup(&res);
  cr_assert_eq(evaluate(t, p, 2, NULL, steps, 1, 0, NULL, &res, NULL), 0, "only create");
  tn_policy_result_cleanup(&res);
  cr_assert_eq(evaluate(t, p + 1, 1, NULL, steps, 2, 0, NULL, &res, NULL), 0);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p[0]);
  tn_policy_free(p[1]);
}

/* ---- quota overrides ------------------------------------------------------------------------------------
 */

Test(quota_overrides, keys_must_be_listed_by_some_policy) {
  struct tn_policy *p[2] = {policy("a", "{\"quotaOverrides\":[\"pods\"]}"),
                            policy("b", "{\"quotaOverrides\":[\"storage\"]}")};
  struct tn_tenant *t = tenant("acme", "{\"plan\":\"standard\"}");
  struct tn_policy_result res;
  unsigned ok = (1u << TN_QUOTA_PODS) | (1u << TN_QUOTA_STORAGE);
  cr_assert_eq(evaluate(t, p, 2, NULL, NULL, 0, ok, NULL, &res, NULL), 0, "the union of the policies");
  cr_assert_eq(res.quota_overrides_permitted, ok);
  tn_policy_result_cleanup(&res);
  cr_assert_eq(evaluate(t, p, 2, NULL, NULL, 0, ok | (1u << TN_QUOTA_CPU), NULL, &res, NULL), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_null(res.violations[0].policy);
  cr_assert_str_eq(res.violations[0].field, "spec.quotaOverrides.cpu");
  cr_assert_str_eq(res.violations[0].message,
                   "spec.quotaOverrides.cpu: no TenancyPolicy permits overriding cpu "
                   "(permitted: storage, pods): remove it, or add cpu to "
                   "spec.quotaOverrides of a TenancyPolicy");
  tn_policy_result_cleanup(&res);
  cr_assert_eq(evaluate(t, NULL, 0, NULL, NULL, 0, 1u << TN_QUOTA_EVENTS_PER_DAY, NULL, &res, NULL),
               TN_EINVALID);
  cr_assert(strstr(res.violations[0].message, "(permitted: none)"), "%s", res.violations[0].message);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p[0]);
  tn_policy_free(p[1]);
}

/* ---- several rules at once, retention, rule selection -----------------------------------------------------
 */

Test(evaluate, every_violation_in_one_message) {
  struct tn_policy *p[2] = {policy("eu-residency", EU_RESIDENCY), policy("lifecycle", ACTIONS_POLICY)};
  struct tn_tenant *t = tenant("bigco", "{\"plan\":\"enterprise\",\"state\":\"Suspended\",\"residency\":"
                                        "{\"allowedRegions\":[\"us-east-1\"],\"flags\":[\"eu-only\"]}}");
  struct tn_transition s = step(TN_STATE_ACTIVE, TN_STATE_SUSPENDED, TN_ACTION_SUSPEND);
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, p, 2, NULL, &s, 1, 1u << TN_QUOTA_MEMORY, NULL, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 3);
  cr_assert_str_eq(res.violations[0].rule, "residency");
  cr_assert_str_eq(res.violations[1].rule, "allowedActions");
  cr_assert_str_eq(res.violations[2].rule, "quotaOverrides");
  char *msg = tn_policy_result_message(&res);
  cr_assert(strncmp(msg, "3 policy violations: (1) TenancyPolicy eu-residency: residency flag eu-only", 74) ==
                0,
            "%s", msg);
  cr_assert(strstr(msg, "; (2) TenancyPolicy lifecycle: allowedActions does not allow suspend"), "%s", msg);
  cr_assert(strstr(msg, "; (3) spec.quotaOverrides.memory: no TenancyPolicy permits overriding memory"), "%s",
            msg);
  cr_assert(strncmp(err.message, msg, sizeof err.message - 1) == 0,
            "err carries the same message, cut to fit");
  cr_assert_eq(err.n_causes, 3);
  cr_assert_str_eq(err.causes[1].field, "spec.state");
  free(msg);
  tn_policy_result_cleanup(&res);

  /* only the action rules */
  struct tn_policy_input in = {.tenant = t,
                               .quota_overrides = 1u << TN_QUOTA_MEMORY,
                               .policies = (const struct tn_policy *const *)p,
                               .n_policies = 2,
                               .steps = &s,
                               .n_steps = 1,
                               .rules = TN_POLICY_RULE_ACTIONS};
  cr_assert_eq(tn_policy_evaluate(&in, &res, NULL), TN_EINVALID);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_str_eq(res.violations[0].rule, "allowedActions");
  cr_assert(res.residency_restricted, "the residency to place with is computed whatever the rules");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(p[0]);
  tn_policy_free(p[1]);
}

Test(evaluate, retention_strictest) {
  struct tn_policy *p[3] = {
      policy("a", "{\"retention\":{\"archivedData\":\"90d\",\"auditRecords\":\"365d\"}}"),
      policy("b", "{\"retention\":{\"archivedData\":\"30d\",\"auditRecords\":\"2555d\"}}"),
      policy("c", "{}")};
  struct tn_tenant *t = tenant("acme", "{\"plan\":\"standard\"}");
  struct tn_policy_result res;
  cr_assert_eq(evaluate(t, p, 3, NULL, NULL, 0, 0, NULL, &res, NULL), 0);
  cr_assert_eq(res.archived_data_days, 30, "archived data: purged soonest");
  cr_assert_eq(res.audit_records_days, 2555, "audit records: kept longest");
  tn_policy_result_cleanup(&res);
  cr_assert_eq(evaluate(t, p + 2, 1, NULL, NULL, 0, 0, NULL, &res, NULL), 0);
  cr_assert_eq(res.archived_data_days, -1);
  cr_assert_eq(res.audit_records_days, -1);
  cr_assert_not(res.require_database_tls);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  for (int i = 0; i < 3; i++)
    tn_policy_free(p[i]);
}

Test(evaluate, ratchet_keeps_old_violations_as_warnings) {
  struct tn_policy *p = policy("eu-residency", EU_RESIDENCY);
  struct tn_tenant *before =
      tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"eu-west-1\","
                     "\"us-east-1\"],\"flags\":[\"eu-only\"]}}");
  struct tn_tenant *same =
      tenant("acme", "{\"plan\":\"standard\",\"displayName\":\"Acme\",\"residency\":"
                     "{\"allowedRegions\":[\"eu-west-1\",\"us-east-1\"],\"flags\":[\"eu-only\"]}}");
  struct tn_tenant *worse =
      tenant("acme", "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"eu-west-1\","
                     "\"us-east-1\",\"ap-south-1\"],\"flags\":[\"eu-only\"]}}");
  struct tn_policy_result old, cur;
  cr_assert_eq(evaluate(before, &p, 1, NULL, NULL, 0, 0, NULL, &old, NULL), TN_EINVALID);
  cr_assert_eq(evaluate(same, &p, 1, NULL, NULL, 0, 0, NULL, &cur, NULL), TN_EINVALID);
  cr_assert_eq(tn_policy_ratchet(&cur, &old), 0);
  cr_assert_eq(cur.n_violations, 0, "an unrelated change is not refused");
  cr_assert_eq(cur.n_warnings, 1);
  cr_assert(strncmp(cur.warnings[0], "already violated before this change: TenancyPolicy eu-residency", 63) ==
                0,
            "%s", cur.warnings[0]);
  cr_assert_eq(tn_policy_result_error(&cur, NULL), 0);
  tn_policy_result_cleanup(&cur);
  cr_assert_eq(evaluate(worse, &p, 1, NULL, NULL, 0, 0, NULL, &cur, NULL), TN_EINVALID);
  cr_assert_eq(tn_policy_ratchet(&cur, &old), 0);
  cr_assert_eq(cur.n_violations, 1, "a change that adds a violating region is refused");
  cr_assert(strstr(cur.violations[0].message, "has us-east-1, ap-south-1"), "%s", cur.violations[0].message);
  tn_policy_result_cleanup(&cur);
  tn_policy_result_cleanup(&old);
  tn_tenant_free(before);
  tn_tenant_free(same);
  tn_tenant_free(worse);
  tn_policy_free(p);
}

/* ---- external ids ----------------------------------------------------------------------------------------
 */

Test(external_ids, duplicate_names_the_other_tenant) {
  struct tn_tenant *t = tenant("initech", "{\"plan\":\"standard\",\"externalIds\":{\"billing\":\"cus_8TzQ\","
                                          "\"crm\":\"0015g\"}}");
  struct tn_external_id_claim claims[] = {
      {"acme", TN_STATE_ACTIVE, "billing", "cus_8TzQ"}, /* the clash */
      {"acme", TN_STATE_ACTIVE, "crm", "other"},        /* same system, other id */
      {"globex", TN_STATE_DRAFT, "erp", "0015g"},       /* same id, other system */
      {"initech", TN_STATE_DRAFT, "crm", "0015g"},      /* itself */
      {"gone", TN_STATE_DELETED, "crm", "0015g"},       /* a tombstone released its ids */
  };
  struct tn_policy_result res;
  tn_policy_result_init(&res);
  cr_assert_eq(tn_policy_check_external_ids(t, NULL, claims, 5, &res), 1);
  cr_assert_eq(res.n_violations, 1);
  cr_assert_str_eq(res.violations[0].rule, "externalIds");
  cr_assert_str_eq(res.violations[0].field, "spec.externalIds.billing");
  cr_assert_str_eq(res.violations[0].subject, "billing=cus_8TzQ");
  cr_assert_str_eq(
      res.violations[0].message,
      "spec.externalIds.billing: cus_8TzQ is already the billing id of tenant acme; external ids are "
      "unique per system across tenants: correct it here, or remove it from that tenant first");
  struct tn_error err = {0};
  cr_assert_eq(tn_policy_result_error(&res, &err), TN_EINVALID);
  cr_assert_str_eq(err.reason, TN_REASON_POLICY_DENIED);
  tn_policy_result_cleanup(&res);

  struct tn_external_id_claim two[] = {{"acme", TN_STATE_ACTIVE, "billing", "cus_8TzQ"},
                                       {"hooli", TN_STATE_SUSPENDED, "billing", "cus_8TzQ"}};
  cr_assert_eq(tn_policy_check_external_ids(t, NULL, two, 2, &res), 1);
  cr_assert(strstr(res.violations[0].message, "billing id of tenants acme, hooli;"), "%s",
            res.violations[0].message);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
}

Test(external_ids, unchanged_ids_are_not_checked_again) {
  struct tn_tenant *before =
      tenant("initech", "{\"plan\":\"standard\",\"externalIds\":{\"billing\":\"cus_1\"}}");
  struct tn_tenant *after = tenant("initech", "{\"plan\":\"standard\",\"externalIds\":{\"billing\":\"cus_1\","
                                              "\"crm\":\"c2\"}}");
  struct tn_external_id_claim claims[] = {{"acme", TN_STATE_ACTIVE, "billing", "cus_1"},
                                          {"acme", TN_STATE_ACTIVE, "crm", "c2"}};
  struct tn_policy_result res;
  tn_policy_result_init(&res);
  cr_assert_eq(tn_policy_check_external_ids(after, before, claims, 2, &res), 1, "only the new crm id");
  cr_assert_str_eq(res.violations[0].field, "spec.externalIds.crm");
  tn_policy_result_cleanup(&res);
  cr_assert_eq(tn_policy_check_external_ids(after, NULL, claims, 2, &res), 2);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(before);
  tn_tenant_free(after);
}

/* ---- groups, pod security ------------------------------------------------------------------ */

Test(groups, reserved_groups_are_violations_without_any_policy) {
  struct tn_tenant *t = tenant("acme", "{\"plan\":\"standard\",\"identity\":{\"groupBindings\":["
                                       "{\"group\":\"system:authenticated\",\"role\":\"tenant-admin\"},"
                                       "{\"group\":\"acme-devs\",\"role\":\"tenant-developer\"},"
                                       "{\"group\":\"system:masters\",\"role\":\"tenant-viewer\"}]}}");
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, NULL, 0, NULL, NULL, 0, 0, NULL, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 2);
  cr_assert_str_eq(res.violations[0].rule, "groups");
  cr_assert_null(res.violations[0].policy);
  cr_assert_str_eq(res.violations[0].field, "spec.identity.groupBindings[0].group");
  cr_assert(strstr(res.violations[0].message, "system:authenticated is reserved to Kubernetes"), "%s",
            res.violations[0].message);
  cr_assert_eq(res.n_refused_groups, 2);
  cr_assert_str_eq(res.refused_groups[0], "system:authenticated");
  cr_assert_str_eq(res.refused_groups[1], "system:masters");
  tn_policy_result_cleanup(&res);
  /* refused_groups is computed even when the groups rule is not reported */
  struct tn_policy_input in = {.tenant = t, .rules = TN_POLICY_RULE_ACTIONS};
  cr_assert_eq(tn_policy_evaluate(&in, &res, NULL), 0);
  cr_assert_eq(res.n_refused_groups, 2);
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
}

Test(groups, allowed_group_patterns_with_tenant_and_domain) {
  struct tn_policy *p =
      policy("idp", "{\"identity\":{\"allowedGroupPatterns\":[\"{tenant}-*\",\"*@{domain}\"]}}");
  cr_assert(p->has_allowed_group_patterns);
  cr_assert_eq(p->n_allowed_group_patterns, 2);
  struct tn_tenant *t = tenant("acme", "{\"plan\":\"standard\",\"identity\":{\"domain\":\"acme.example\","
                                       "\"groupBindings\":["
                                       "{\"group\":\"acme-admins\",\"role\":\"tenant-admin\"},"
                                       "{\"group\":\"ops@acme.example\",\"role\":\"tenant-viewer\"},"
                                       "{\"group\":\"globex-admins\",\"role\":\"tenant-admin\"},"
                                       "{\"group\":\"ops@acme.example.evil\",\"role\":\"tenant-viewer\"}]}}");
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, &p, 1, NULL, NULL, 0, 0, NULL, &res, &err), TN_EINVALID);
  cr_assert_eq(res.n_violations, 2, "%s", err.message);
  cr_assert_str_eq(res.violations[0].policy, "idp");
  cr_assert_str_eq(res.violations[0].subject, "globex-admins");
  cr_assert(strstr(res.violations[0].message,
                   "TenancyPolicy idp: spec.identity.allowedGroupPatterns [{tenant}-*, *@{domain}] does not "
                   "match group globex-admins"),
            "%s", res.violations[0].message);
  cr_assert_str_eq(res.violations[1].subject, "ops@acme.example.evil");
  cr_assert_eq(res.n_refused_groups, 2);
  tn_policy_result_cleanup(&res);
  /* glob characters in the substituted domain are literal: a domain is never a wildcard */
  cr_assert(!tn_policy_group_allowed(t, "opsXacme.example", (const struct tn_policy *const *)&p, 1, NULL, 0));
  /* no domain: patterns using {domain} match nothing */
  struct tn_tenant *nod = tenant("acme", "{\"plan\":\"standard\",\"identity\":{\"groupBindings\":["
                                         "{\"group\":\"ops@\",\"role\":\"tenant-viewer\"}]}}");
  cr_assert(!tn_policy_group_allowed(nod, "ops@", (const struct tn_policy *const *)&p, 1, NULL, 0));
  cr_assert(tn_policy_group_allowed(nod, "acme-x", (const struct tn_policy *const *)&p, 1, NULL, 0));
  tn_tenant_free(nod);
  tn_tenant_free(t);
  tn_policy_free(p);
}

Test(groups, bad_patterns_and_pod_security_minimum_are_validated) {
  assert_parse_fails("{\"identity\":{\"allowedGroupPatterns\":[\"\"]}}",
                     "spec.identity.allowedGroupPatterns[0]", "non-empty glob");
  assert_parse_fails("{\"podSecurity\":{\"minimum\":\"privileged\"}}", "spec.podSecurity.minimum",
                     "restricted or baseline");
  struct tn_policy *a = policy("a", "{\"podSecurity\":{\"minimum\":\"baseline\"}}");
  struct tn_policy *b = policy("b", "{\"podSecurity\":{\"minimum\":\"restricted\"},\"encryption\":{"
                                    "\"requireDatabaseTLS\":true}}");
  struct tn_policy *c = policy("a-tls", "{\"encryption\":{\"requireDatabaseTLS\":true}}");
  struct tn_policy *pols[] = {a, b, c};
  struct tn_tenant *t = tenant("acme", "{\"plan\":\"standard\"}");
  struct tn_policy_result res;
  struct tn_error err = {0};
  cr_assert_eq(evaluate(t, pols, 1, NULL, NULL, 0, 0, NULL, &res, &err), 0);
  cr_assert_eq(res.pod_security_minimum, TN_POD_SECURITY_BASELINE);
  cr_assert_null(res.require_database_tls_policy);
  tn_policy_result_cleanup(&res);
  cr_assert_eq(evaluate(t, pols, 3, NULL, NULL, 0, 0, NULL, &res, &err), 0);
  cr_assert_eq(res.pod_security_minimum, TN_POD_SECURITY_RESTRICTED, "the stricter wins");
  cr_assert_str_eq(res.require_database_tls_policy, "a-tls", "the first in name order");
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  tn_policy_free(a);
  tn_policy_free(b);
  tn_policy_free(c);
}
