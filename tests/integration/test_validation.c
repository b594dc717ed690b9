/* test_validation.c - what the operator requires of a Plan, Region or TenancyPolicy at reconcile,
 * the real API server requires too (the CRDs in crds/: schema and CEL), with a message that says what
 * is wrong and how to fix it. Every case is checked both ways: the API server refuses it (a
 * server-side dry-run create, so nothing is stored) and the operator's own parsers (the code
 * the reconcile runs) refuse it too, so the two cannot drift apart unnoticed. Every sample and
 * the smallest valid objects are still accepted by both. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tenancy/capacity.h"
#include "tenancy/policy.h"
#include "tenancy/tenant.h"
#include "tn_operator.h"
#include "tn_test.h"

static void install(void) { tn_test_install_api(); }

TestSuite(validation, .init = install, .timeout = 180);

/* A Kind object named NAME with SPEC_JSON as spec; new reference. */
static json_t *object(const char *kind, const char *name, const char *spec_json) {
  json_error_t e;
  json_t *spec = json_loads(spec_json, 0, &e);
  cr_assert_not_null(spec, "bad JSON in the test: %s: %s", e.text, spec_json);
  return json_pack("{s:s,s:s,s:{s:s},s:o}", "apiVersion", "tenancy.dev/v1alpha1", "kind", kind, "metadata",
                   "name", name, "spec", spec);
}

/* kubectl create --dry-run=server -o json of OBJ; returns kubectl's status, *out its output. */
static int dry_run(json_t *obj, char **out) {
  char path[] = "/tmp/tn-validation-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  close(fd);
  cr_assert_eq(json_dump_file(obj, path, JSON_COMPACT), 0);
  int rc = tn_test_sh(out, "kubectl create --dry-run=server -o json -f %s 2>&1", path);
  unlink(path);
  return rc;
}

/* What the reconcile does with the object: 0 when it accepts it, else the parser's code with
 * its message in err. */
static int operator_parse(json_t *obj, struct tn_error *err) {
  const char *kind = json_string_value(json_object_get(obj, "kind"));
  int rc;
  if (strcmp(kind, "Plan") == 0) {
    struct tn_plan *p = NULL;
    rc = tn_plan_parse(obj, &p, err);
    tn_plan_free(p);
  } else if (strcmp(kind, "Region") == 0) {
    struct tn_policy_region *r = NULL;
    struct tn_capacity cap;
    rc = tn_policy_region_parse(obj, &r, err);
    tn_policy_region_free(r);
    if (!rc)
      rc = tn_capacity_parse(obj, &cap, err);
  } else {
    struct tn_policy *p = NULL;
    rc = tn_policy_parse(obj, &p, err);
    tn_policy_free(p);
  }
  return rc;
}

struct refused {
  const char *kind, *spec, *needle;
};

static void check_refused(const struct refused *c, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char name[64], *out = NULL;
    tn_test_unique_name(name, sizeof name, "val");
    json_t *obj = object(c[i].kind, name, c[i].spec);
    int rc = dry_run(obj, &out);
    cr_expect_neq(rc, 0, "the API server accepted %s %s", c[i].kind, c[i].spec);
    cr_expect(strstr(out, c[i].needle) != NULL, "%s %s: want \"%s\" in: %s", c[i].kind, c[i].spec,
              c[i].needle, out);
    /* The defaulted form the API server would have stored, as the operator would read it. */
    struct tn_error err = {0};
    cr_expect_neq(operator_parse(obj, &err), 0,
                  "the operator accepts %s %s: the schema refuses more than it needs", c[i].kind, c[i].spec);
    free(out);
    json_decref(obj);
  }
}

/* A valid object: accepted by the API server, and its defaulted form accepted by the operator. */
static void check_accepted(const char *kind, const char *spec) {
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "val");
  json_t *obj = object(kind, name, spec);
  int rc = dry_run(obj, &out);
  cr_assert_eq(rc, 0, "%s %s refused: %s", kind, spec, out);
  json_error_t e;
  json_t *stored = json_loads(out, 0, &e);
  cr_assert_not_null(stored, "not JSON: %s", out);
  struct tn_error err = {0};
  cr_expect_eq(operator_parse(stored, &err), 0, "the operator refuses what the API server accepts: %s: %s",
               err.message, spec);
  json_decref(stored);
  json_decref(obj);
  free(out);
}

#define Q3 "\"cpu\":\"1\",\"memory\":\"1Gi\""

Test(validation, plan_rules_the_reconcile_enforces_are_refused_by_the_api_server) {
  const struct refused c[] = {
      /* The reconcile reported InvalidPlan "spec.quotas.storage: is required" on each tenant. */
      {"Plan", "{\"quotas\":{" Q3 ",\"pods\":1,\"services\":1}}",
       "spec.quotas.storage: Required value: spec.quotas.storage is required: set the persistent volume "
       "storage each environment may request, e.g. storage: 50Gi (0 allows none)"},
      /* Beyond what the operator computes with (thousandths in 64 bits): "not a quantity" before. */
      {"Plan",
       "{\"quotas\":{\"cpu\":\"9Pi\",\"memory\":\"1Gi\",\"storage\":\"1Gi\",\"pods\":1,\"services\":1}}",
       "spec.quotas.cpu: Invalid value: spec.quotas.cpu must be at most 8Pi"},
      {"Plan",
       "{\"quotas\":{\"cpu\":\"1\",\"memory\":\"16Ei\",\"storage\":\"1Gi\",\"pods\":1,\"services\":1}}",
       "spec.quotas.memory must be at most 8Pi"},
      {"Plan", "{\"quotas\":{" Q3 ",\"storage\":\"10E\",\"pods\":1,\"services\":1}}",
       "spec.quotas.storage must be at most 8Pi"},
      /* What was already refused both ways stays so. */
      {"Plan",
       "{\"quotas\":{\"cpu\":\"0\",\"memory\":\"1Gi\",\"storage\":\"1Gi\",\"pods\":1,\"services\":1}}",
       "spec.quotas.cpu must be greater than zero"},
      {"Plan", "{\"quotas\":{" Q3 ",\"storage\":\"1Gi\",\"services\":1}}",
       "spec.quotas.pods: Required value"},
      {"Plan",
       "{\"quotas\":{" Q3
       ",\"storage\":\"1Gi\",\"pods\":1,\"services\":1},\"rateLimits\":{\"requestsPerSecond\":"
       "9,\"burst\":1}}",
       "spec.rateLimits.burst must be at least spec.rateLimits.requestsPerSecond"},
      {"Plan",
       "{\"quotas\":{" Q3 ",\"storage\":\"1Gi\",\"pods\":1,\"services\":1},\"quotaScope\":\"Namespace\"}",
       "spec.quotaScope: Unsupported value"},
      {"Plan",
       "{\"quotas\":{" Q3 ",\"storage\":\"1Gi\",\"pods\":1,\"services\":1},\"podSecurity\":\"privileged\"}",
       "spec.podSecurity: Unsupported value: \"privileged\""},
  };
  check_refused(c, sizeof c / sizeof c[0]);
  check_accepted("Plan", "{\"quotas\":{" Q3 ",\"storage\":\"0\",\"pods\":0,\"services\":0}}");
  check_accepted("Plan", "{\"quotas\":{\"cpu\":\"8Pi\",\"memory\":\"8Pi\",\"storage\":\"8Pi\",\"pods\":1,"
                         "\"services\":1}}");
  check_accepted("Plan",
                 "{\"quotas\":{\"cpu\":2,\"memory\":1073741824,\"storage\":5,\"pods\":1,\"services\":1}}");
}

Test(validation, region_rules_the_reconcile_enforces_are_refused_by_the_api_server) {
  const struct refused c[] = {
      /* tn_capacity_parse said "spec.capacity.cpu is not a quantity" at activation. */
      {"Region", "{\"available\":true,\"isolationModes\":[\"shared\"],\"capacity\":{\"cpu\":\"9E\"}}",
       "spec.capacity.cpu: Invalid value: spec.capacity.cpu must be at most 8Pi (the largest quantity the "
       "operator computes with); leave it out for no limit"},
      {"Region", "{\"available\":true,\"isolationModes\":[\"shared\"],\"capacity\":{\"memory\":\"10Ei\"}}",
       "spec.capacity.memory must be at most 8Pi"},
      {"Region", "{\"available\":true,\"isolationModes\":[\"shared\"],\"capacity\":{\"storage\":\"9000P\"}}",
       "spec.capacity.storage must be at most 8Pi"},
      {"Region",
       "{\"available\":true,\"isolationModes\":[\"shared\"],\"capacity\":{\"pods\":10000000000000000}}",
       "spec.capacity.pods in body should be less than or equal to 1000000000000"},
      {"Region", "{\"available\":true,\"isolationModes\":[\"private\"]}",
       "spec.isolationModes[0]: Unsupported value: \"private\""},
      {"Region",
       "{\"available\":true,\"isolationModes\":[\"shared\"],\"databaseServers\":[{\"name\":\"PG_1\",\"host\":"
       "\"db\",\"serves\":[\"shared\"],\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"a\"}}]"
       "}",
       "spec.databaseServers[0].name: Invalid value"},
      {"Region",
       "{\"available\":true,\"isolationModes\":[\"shared\"],\"databaseServers\":[{\"name\":\"pg-1\",\"host\":"
       "\"db\",\"serves\":[\"private\"],\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"a\"}}"
       "]}",
       "spec.databaseServers[0].serves[0]: Unsupported value"},
  };
  check_refused(c, sizeof c / sizeof c[0]);
  check_accepted("Region",
                 "{\"available\":false,\"isolationModes\":[\"shared\"],\"capacity\":{\"cpu\":\"8Pi\","
                 "\"memory\":\"8Pi\",\"storage\":\"8Pi\",\"pods\":1000000000000}}");
  check_accepted("Region",
                 "{\"available\":true,\"isolationModes\":[\"dedicated\"],\"capacity\":{\"cpu\":64}}");
}

Test(validation, policy_rules_the_reconcile_enforces_are_refused_by_the_api_server) {
  const struct refused c[] = {
      {"TenancyPolicy", "{\"residency\":[{\"flag\":\"EU only\",\"allowedRegions\":[\"eu-west-1\"]}]}",
       "spec.residency[0].flag: Invalid value"},
      {"TenancyPolicy", "{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":[]}]}",
       "spec.residency[0].allowedRegions: Invalid value"},
      {"TenancyPolicy", "{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":[\"eu.west\"]}]}",
       "spec.residency[0].allowedRegions[0]: Invalid value"},
      {"TenancyPolicy", "{\"retention\":{\"archivedData\":\"90 days\"}}", "spec.retention.archivedData"},
      {"TenancyPolicy", "{\"allowedActions\":[{\"action\":\"suspend\",\"fromStates\":[\"Draft\"]}]}",
       "fromStates must be states the action can start from"},
      {"TenancyPolicy", "{\"quotaOverrides\":[\"gpus\"]}", "spec.quotaOverrides[0]: Unsupported value"},
      {"TenancyPolicy", "{\"podSecurity\":{\"minimum\":\"privileged\"}}",
       "spec.podSecurity.minimum: Unsupported value"},
  };
  check_refused(c, sizeof c / sizeof c[0]);
  check_accepted("TenancyPolicy", "{}");
  check_accepted("TenancyPolicy",
                 "{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":[\"eu-west-1\"]}],"
                 "\"retention\":{\"archivedData\":\"0d\"},\"allowedActions\":[{\"action\":"
                 "\"restore\",\"fromStates\":[\"Archived\"]}]}");
}

/* Every sample (manifests/samples) is accepted by the API server, and what it would store is
 * accepted by the operator's parsers. */
Test(validation, every_sample_is_accepted_both_ways) {
  const char *root = tn_test_env("TENANCY_ROOT");
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "for f in '%s'/manifests/samples/0*.yaml; do kubectl apply --dry-run=server -o json -f "
                      "\"$f\" || exit 1; done | jq -c '(.items // [.])[]' 2>&1",
                      root);
  cr_assert_eq(rc, 0, "a sample is refused: %s", out);
  int n = 0;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
    json_error_t e;
    json_t *obj = json_loads(line, 0, &e);
    cr_assert_not_null(obj, "%s", line);
    struct tn_error err = {0};
    cr_expect_eq(operator_parse(obj, &err), 0, "sample %s: %s", line, err.message);
    json_decref(obj);
    n++;
  }
  cr_expect_geq(n, 8, "only %d sample objects", n);
  free(out);
}
