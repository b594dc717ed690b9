/* test_console.c - what the console's forwarder lets through to the Kubernetes API (pure). */
#include <criterion/criterion.h>
#include <string.h>

#include "api/console.h"

static int route(const char *method, const char *path, const char *const *q, size_t nq, char *up, char *uq) {
  char why[256];
  int st = tn_console_kube_route(method, path, q, nq, up, 512, uq, 512, why, sizeof why);
  if (st)
    cr_assert(why[0], "a refusal says why (%s %s)", method, path);
  return st;
}

Test(console, allowed_requests_map_to_tenancy_paths) {
  char up[512], uq[512];
  cr_assert_eq(route("GET", "/console/kube/apis/tenancy.dev/v1alpha1/tenants", NULL, 0, up, uq), 0);
  cr_assert_str_eq(up, "/apis/tenancy.dev/v1alpha1/tenants");
  cr_assert_str_eq(uq, "");
  cr_assert_eq(route("GET", "/console/kube/apis/tenancy.dev/v1alpha1/plans/starter", NULL, 0, up, uq), 0);
  cr_assert_str_eq(up, "/apis/tenancy.dev/v1alpha1/plans/starter");
  const char *dry[] = {"dryRun=All"};
  cr_assert_eq(route("POST", "/console/kube/apis/tenancy.dev/v1alpha1/tenants", dry, 1, up, uq), 0);
  cr_assert_str_eq(uq, "dryRun=All");
  cr_assert_eq(route("PATCH", "/console/kube/apis/tenancy.dev/v1alpha1/tenants/acme", dry, 1, up, uq), 0);
  cr_assert_str_eq(up, "/apis/tenancy.dev/v1alpha1/tenants/acme");
  const char *page[] = {"limit=100", "continue=a b&c=d"};
  cr_assert_eq(route("GET", "/console/kube/apis/tenancy.dev/v1alpha1/regions", page, 2, up, uq), 0);
  cr_assert_str_eq(uq, "limit=100&continue=a%20b%26c%3Dd", "a continue token is re-escaped, never pasted: %s",
                   uq);
}

Test(console, other_paths_are_not_forwarded) {
  char up[512], uq[512];
  const char *paths[] = {
      "/console/kube/api/v1/secrets",
      "/console/kube/api/v1/namespaces/kube-system/secrets",
      "/console/kube/apis/rbac.authorization.k8s.io/v1/clusterroles",
      "/console/kube/apis/tenancy.dev/v1alpha1/tenants/acme/status",
      "/console/kube/apis/tenancy.dev/v1alpha1/tenants/../../../../api/v1/secrets",
      "/console/kube/apis/tenancy.dev/v1alpha1/tenantsx",
      "/console/kube/apis/tenancy.dev/v1alpha1/Tenants",
      "/console/kube/apis/tenancy.dev/v1alpha1/tenants/ACME",
      "/console/kube/apis/tenancy.dev/v1alpha1/tenants/a%2Fb",
      "/console/kube/apis/tenancy.dev/v1/tenants",
      "/console/kube/apis/tenancy.dev/v1alpha1/webhooksubscriptions",
  };
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    cr_assert_eq(route("GET", paths[i], NULL, 0, up, uq), 404, "%s must not be forwarded", paths[i]);
    cr_assert_str_eq(up, "");
  }
}

Test(console, verbs_and_parameters_are_narrow) {
  char up[512], uq[512];
  const char *base = "/console/kube/apis/tenancy.dev/v1alpha1/tenants";
  cr_assert_eq(route("DELETE", "/console/kube/apis/tenancy.dev/v1alpha1/tenants/acme", NULL, 0, up, uq), 405);
  cr_assert_eq(route("PUT", "/console/kube/apis/tenancy.dev/v1alpha1/tenants/acme", NULL, 0, up, uq), 405);
  cr_assert_eq(route("PATCH", base, NULL, 0, up, uq), 405, "no patch of a collection");
  cr_assert_eq(route("POST", "/console/kube/apis/tenancy.dev/v1alpha1/tenants/acme", NULL, 0, up, uq), 405);
  const char *bad[][1] = {{"watch=true"}, {"dryRun=None"},       {"limit=0"},         {"limit=1001"},
                          {"limit=5x"},   {"fieldSelector=a=b"}, {"labelSelector=x"}, {"dryRun"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(route("GET", base, bad[i], 1, up, uq), 400, "%s must be refused", bad[i][0]);
  const char *dry[] = {"dryRun=All"};
  cr_assert_eq(route("GET", base, dry, 1, up, uq), 400, "dryRun is for writes");
  const char *lim[] = {"limit=5"};
  cr_assert_eq(route("PATCH", "/console/kube/apis/tenancy.dev/v1alpha1/tenants/acme", lim, 1, up, uq), 400);
}

Test(console, bearer_tokens) {
  cr_assert(tn_console_bearer_ok("Bearer abc.def-ghi_jkl"));
  cr_assert_not(tn_console_bearer_ok(""));
  cr_assert_not(tn_console_bearer_ok(NULL));
  cr_assert_not(tn_console_bearer_ok("Bearer "));
  cr_assert_not(tn_console_bearer_ok("Basic dXNlcjpwYXNz"));
  cr_assert_not(tn_console_bearer_ok("Bearer a b"));
  cr_assert_not(tn_console_bearer_ok("Bearer a\r\nImpersonate-User: admin"), "no header injection");
}
