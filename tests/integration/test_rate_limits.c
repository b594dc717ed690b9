/* test_rate_limits.c - read API rate limits against the real API server and operator: a Plan
 * with per-endpoint limits, a Tenant's spec.rateLimitOverrides permitted by a TenancyPolicy, the
 * effective values in status.derived.rateLimits (as the read API's limiter reads them), the
 * schema's refusals, and an override no policy permits refused at admission and, when a policy
 * stops permitting one, reported as PolicyDenied with the Plan's values back in force. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/limiter.h"
#include "tn_operator.h"
#include "tn_test.h"

#define PLAN "tn-test-rl"
#define POLICY "tn-test-rl"

static struct tn_test_operator op;

static void start(void) {
  tn_test_install_api();
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Plan\",\"metadata\":{\"name\":\"" PLAN
      "\"},\"spec\":{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":\"1Gi\",\"pods\":5,"
      "\"services\":2},"
      "\"rateLimits\":{\"requestsPerSecond\":50,\"burst\":100,\"endpoints\":{"
      "\"list\":{\"requestsPerSecond\":5,\"burst\":10},\"events\":{\"requestsPerSecond\":2,\"burst\":4}}}}}' "
      "| kubectl apply -f - && "
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\","
      "\"metadata\":{\"name\":\"" POLICY
      "\"},\"spec\":{\"rateLimitOverrides\":[\"default\",\"list\",\"placement\"]}}' "
      "| kubectl apply -f -");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char addr[64];
  snprintf(addr, sizeof addr, "--webhook-bind-address=127.0.0.1:%d", tn_test_free_port());
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", addr, NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void stop(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  /* Nothing of this suite may govern the other suites' tenants; the webhook registration would
   * refuse their writes without the operator (failurePolicy Fail). */
  tn_test_sh(NULL, "kubectl delete tenancypolicy " POLICY " --ignore-not-found");
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
}

TestSuite(rate_limits, .init = start, .fini = stop, .timeout = 240);

/* Applies a Tenant on PLAN with spec.rateLimitOverrides = overrides (JSON). */
static int apply_tenant(char **out, const char *t, const char *overrides) {
  return tn_test_sh(
      out,
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":"
      "{\"name\":\"%s\"},\"spec\":{\"state\":\"Active\",\"plan\":\"" PLAN "\",\"environments\":"
      "[\"prod\"],\"residency\":{\"allowedRegions\":[\"eu-west-1\"]},\"rateLimitOverrides\":%s}}' | "
      "kubectl apply -f -",
      t, overrides);
}

/* status.derived.rateLimits of tenant t once it equals want (compact JSON, sorted keys), within
 * timeout_s; returns whether it did. */
static bool wait_derived(const char *t, const char *want, double timeout_s) {
  char *out = NULL;
  int rc = tn_test_sh_until(timeout_s, &out,
                            "test \"$(kubectl get tenant %s -o json | python3 -c 'import json,sys; "
                            "print(json.dumps(json.load(sys.stdin).get(\"status\",{}).get(\"derived\",{})"
                            ".get(\"rateLimits\"),sort_keys=True,separators=(\",\",\":\")))')\" = '%s'",
                            t, want);
  free(out);
  if (rc) {
    char *now = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.derived.rateLimits} "
                               "{.status.conditions[?(@.type==\"PolicyCompliant\")].message}'",
                               t);
    cr_log_error("status.derived.rateLimits of %s: %s (want %s)", t, now, want);
    free(now);
  }
  return rc == 0;
}

static json_t *get_tenant(const char *t) {
  char *out = tn_test_output("kubectl get tenant %s -o json", t);
  json_error_t e;
  json_t *obj = json_loads(out, 0, &e);
  cr_assert_not_null(obj, "%s: %s", e.text, out);
  free(out);
  return obj;
}

Test(rate_limits, plan_endpoints_and_permitted_overrides_reach_status) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-rl");
  int rc = apply_tenant(&out, t,
                        "{\"requestsPerSecond\":200,\"burst\":400,\"endpoints\":{\"list\":"
                        "{\"requestsPerSecond\":20,\"burst\":40}}}");
  cr_assert_eq(rc, 0, "a permitted override was refused: %s", out);
  free(out);
  cr_assert(wait_derived(t,
                         "{\"burst\":400,\"endpoints\":{\"events\":{\"burst\":4,\"requestsPerSecond\":2},"
                         "\"list\":{\"burst\":40,\"requestsPerSecond\":20}},\"requestsPerSecond\":200}",
                         60),
            "the effective limits never reached status.derived.rateLimits");

  /* The read API's limiter reads exactly this from its cache of Tenants. */
  json_t *obj = get_tenant(t);
  struct tn_limit_rule r;
  cr_assert_eq(tn_limit_rule_for_tenant(obj, "list", &r), 0);
  cr_assert_eq((long)r.rate_per_s, 20);
  cr_assert_eq((long)r.burst, 40);
  cr_assert_eq(tn_limit_rule_for_tenant(obj, "events", &r), 0);
  cr_assert_eq((long)r.rate_per_s, 2, "the plan's events bucket stays");
  cr_assert_eq(tn_limit_rule_for_tenant(obj, "get", &r), 0);
  cr_assert_eq((long)r.burst, 400, "get has no bucket of its own: the overridden default");
  json_decref(obj);

  /* A change of the Plan reaches the tenant; the override still wins where it is set. */
  rc = tn_test_sh(&out,
                  "kubectl patch plan " PLAN " --type=merge -p '{\"spec\":{\"rateLimits\":{\"endpoints\":"
                  "{\"events\":{\"requestsPerSecond\":3,\"burst\":6}}}}}'");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  cr_assert(wait_derived(t,
                         "{\"burst\":400,\"endpoints\":{\"events\":{\"burst\":6,\"requestsPerSecond\":3},"
                         "\"list\":{\"burst\":40,\"requestsPerSecond\":20}},\"requestsPerSecond\":200}",
                         60),
            "the plan's new events bucket never reached the tenant");
  tn_test_sh(NULL, "kubectl patch plan " PLAN " --type=merge -p '{\"spec\":{\"rateLimits\":{\"endpoints\":"
                   "{\"events\":{\"requestsPerSecond\":2,\"burst\":4}}}}}'");

  /* Removing the override brings the plan's values back. */
  rc = tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"rateLimitOverrides\":null}}'",
                  t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  cr_assert(wait_derived(t,
                         "{\"burst\":100,\"endpoints\":{\"events\":{\"burst\":4,\"requestsPerSecond\":2},"
                         "\"list\":{\"burst\":10,\"requestsPerSecond\":5}},\"requestsPerSecond\":50}",
                         60),
            "the plan's values did not come back");
}

/* As quota overrides: no policy lists events, so the admission webhook refuses it, naming the
 * field and how to permit it. */
Test(rate_limits, an_override_no_policy_permits_is_refused_at_apply) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-rl");
  int rc = apply_tenant(&out, t, "{\"endpoints\":{\"events\":{\"requestsPerSecond\":100,\"burst\":100}}}");
  cr_assert_neq(rc, 0, "an override no policy permits was stored: %s", out);
  cr_assert(strstr(out, "spec.rateLimitOverrides.endpoints.events") &&
                strstr(out, "add events to spec.rateLimitOverrides of a TenancyPolicy"),
            "%s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl get tenant %s", t);
  cr_assert_neq(rc, 0, "the refused tenant exists: %s", out);
  free(out);
}

/* A policy that stops permitting an override (placement: no sample policy permits it): the
 * controller reports it as it reports quota overrides (PolicyCompliant False, reason
 * PolicyDenied, the same words, a PolicyDenied event) and the Plan's values apply again. */
Test(rate_limits, a_withdrawn_permission_is_reported_and_the_plan_applies) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-rl");
  int rc = apply_tenant(&out, t, "{\"endpoints\":{\"placement\":{\"requestsPerSecond\":30,\"burst\":30}}}");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  cr_assert(wait_derived(t,
                         "{\"burst\":100,\"endpoints\":{\"events\":{\"burst\":4,\"requestsPerSecond\":2},"
                         "\"list\":{\"burst\":10,\"requestsPerSecond\":5},"
                         "\"placement\":{\"burst\":30,\"requestsPerSecond\":30}},\"requestsPerSecond\":50}",
                         60));
  rc = tn_test_sh(&out, "kubectl patch tenancypolicy " POLICY
                        " --type=merge -p '{\"spec\":{\"rateLimitOverrides\":[\"default\",\"list\"]}}'");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tn_test_sh_until(
      60, &out,
      "kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"PolicyCompliant\")]"
      ".status} {.status.conditions[?(@.type==\"PolicyCompliant\")].reason} "
      "{.status.conditions[?(@.type==\"PolicyCompliant\")].message}' | grep -q "
      "'^False PolicyDenied spec.rateLimitOverrides.endpoints.placement: no TenancyPolicy "
      "permits'",
      t);
  free(out);
  if (rc) {
    char *cond = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.conditions}'", t);
    cr_log_error("conditions of %s: %s", t, cond);
    free(cond);
  }
  cr_assert_eq(rc, 0, "PolicyCompliant never reported the withdrawn permission");
  cr_assert(wait_derived(t,
                         "{\"burst\":100,\"endpoints\":{\"events\":{\"burst\":4,\"requestsPerSecond\":2},"
                         "\"list\":{\"burst\":10,\"requestsPerSecond\":5}},\"requestsPerSecond\":50}",
                         60),
            "a tenant that breaks a policy kept its override");
  rc = tn_test_sh_until(30, &out,
                        "kubectl get events.events.k8s.io -A -o jsonpath='{range "
                        ".items[?(@.reason==\"PolicyDenied\")]}{.regarding.name} {.note}{\"\\n\"}{end}' | "
                        "grep '^%s ' | grep -q rateLimitOverrides.endpoints.placement",
                        t);
  free(out);
  cr_assert_eq(rc, 0, "no PolicyDenied event names the override");
  /* Put the permission and the tenant back in order for the other tests and suites. */
  tn_test_sh(NULL, "kubectl patch tenancypolicy " POLICY " --type=merge -p "
                   "'{\"spec\":{\"rateLimitOverrides\":[\"default\",\"list\",\"placement\"]}}'");
  tn_test_sh(NULL, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"rateLimitOverrides\":null}}'", t);
}

/* The schema refuses bad limits before anything else sees them. */
Test(rate_limits, the_schema_refuses_bad_limits) {
  static const struct {
    const char *kind, *spec, *words;
  } cases[] = {
      {"Plan",
       "{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":\"1Gi\",\"pods\":1,\"services\":1},"
       "\"rateLimits\":{"
       "\"requestsPerSecond\":5,\"burst\":5,\"endpoints\":{\"list\":{\"requestsPerSecond\":10,\"burst\":1}}}"
       "}",
       "spec.rateLimits.endpoints.list.burst must be at least "
       "spec.rateLimits.endpoints.list.requestsPerSecond"},
      {"Plan",
       "{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":\"1Gi\",\"pods\":1,\"services\":1},"
       "\"rateLimits\":{"
       "\"requestsPerSecond\":5,\"burst\":5,\"endpoints\":{\"get\":{\"burst\":1}}}}",
       "spec.rateLimits.endpoints.get.requestsPerSecond: Required value"},
      {"Tenant",
       "{\"plan\":\"" PLAN "\",\"environments\":[\"prod\"],\"rateLimitOverrides\":{\"requestsPerSecond\":5}}",
       "spec.rateLimitOverrides.requestsPerSecond and spec.rateLimitOverrides.burst go together"},
      {"Tenant",
       "{\"plan\":\"" PLAN "\",\"environments\":[\"prod\"],\"rateLimitOverrides\":{\"requestsPerSecond\":5,"
       "\"burst\":1}}",
       "spec.rateLimitOverrides.burst must be at least spec.rateLimitOverrides.requestsPerSecond"},
      {"Tenant",
       "{\"plan\":\"" PLAN "\",\"environments\":[\"prod\"],\"rateLimitOverrides\":{\"endpoints\":{\"list\":"
       "{\"requestsPerSecond\":-1,\"burst\":1}}}}",
       "spec.rateLimitOverrides.endpoints.list.requestsPerSecond: Invalid value"},
      {"TenancyPolicy", "{\"rateLimitOverrides\":[\"delete\"]}",
       "spec.rateLimitOverrides[0]: Unsupported value: \"delete\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char name[64], *out = NULL;
    tn_test_unique_name(name, sizeof name, "tn-rl-bad");
    int rc = tn_test_sh(&out,
                        "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"%s\",\"metadata\":"
                        "{\"name\":\"%s\"},\"spec\":%s}' | kubectl create --dry-run=server -f -",
                        cases[i].kind, name, cases[i].spec);
    cr_expect_neq(rc, 0, "case %zu (%s) was accepted: %s", i, cases[i].kind, out);
    cr_expect(strstr(out, cases[i].words) != NULL, "case %zu: want \"%s\" in: %s", i, cases[i].words, out);
    free(out);
  }
}
