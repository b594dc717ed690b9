/* test_read_api.c - the read API of the real operator binary against the real API server: the
 * operator runs as a standby (another holder keeps its Lease), so its caches are warm and no
 * controller touches the test's Tenants; statuses are written by the test through the status
 * subresource. Authentication with real tokens (TokenRequest for ServiceAccounts, the stack's
 * static tokens for users with groups), authorization with real SubjectAccessReviews and RBAC;
 * pagination across 10,000 Tenants while Tenants are created, changed and deleted. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kube/client.h"
#include "tn_http_test.h"
#include "tn_operator.h"
#include "tn_test.h"
#include "util/buf.h"

#define LABEL "tests.tenancy.dev/read-api"

static const struct tn_gvr gvr_tenants = {"tenancy.dev", "v1alpha1", "tenants", false};

static struct tn_test_operator g_op;
static int g_port;
static char g_dir[256]; /* certificate, key, kubeconfig bits */
static char g_ns[64];   /* the test's namespace (ServiceAccounts) */
static char g_run[32];  /* this process's label value and name prefix */
static char g_lease[64];

static const char *run_id(void) {
  if (!g_run[0])
    snprintf(g_run, sizeof g_run, "ra%ld", (long)getpid());
  return g_run;
}

static void sh_ok(const char *what, const char *cmd) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "%s", cmd);
  cr_assert_eq(rc, 0, "%s: %s", what, out ? out : "");
  free(out);
}

/* Fixtures: ServiceAccount tokens in the test's namespace, this run's labelled tenants. */
static char *sa_token(const char *sa) { return tn_test_sa_token(g_ns, sa); }

static void create_tenant(const char *name, const char *extra_spec) {
  tn_test_create_labelled_tenant(name, LABEL, run_id(), extra_spec);
}

static void delete_collection(void) { tn_test_delete_labelled_tenants(LABEL, run_id()); }

static void patch_status(const char *name, const char *status_json) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "kubectl patch tenant %s --subresource=status --type=merge -p '{\"status\":%s}' >/dev/null", name,
           status_json);
  sh_ok("patch status", cmd);
}

static void setup(void) {
  tn_test_install_api();
  snprintf(g_dir, sizeof g_dir, "/tmp/tn-readapi-%ld", (long)getpid());
  tn_test_https_self_signed(g_dir);
  char cmd[2048], cafile[300];
  snprintf(cafile, sizeof cafile, "%s/tls.crt", g_dir);
  snprintf(g_ns, sizeof g_ns, "readapi-%ld", (long)getpid());
  snprintf(cmd, sizeof cmd, "kubectl create namespace %s >/dev/null", g_ns);
  sh_ok("namespace", cmd);
  /* a reader role for integrations: get and list tenants */
  sh_ok("reader role",
        "printf '%s' '{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRole\",\"metadata\":"
        "{\"name\":\"readapi-test-reader\"},\"rules\":[{\"apiGroups\":[\"tenancy.dev\"],\"resources\":"
        "[\"tenants\"],\"verbs\":[\"get\",\"list\"]}]}' | kubectl apply -f - >/dev/null");
  /* the Lease held by someone else for an hour: the operator stays a standby */
  snprintf(g_lease, sizeof g_lease, "readapi-lease-%ld", (long)getpid());
  snprintf(
      cmd, sizeof cmd,
      "printf '%%s' '{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":"
      "\"%s\",\"namespace\":\"default\"},\"spec\":{\"holderIdentity\":\"someone-else\","
      "\"leaseDurationSeconds\":3600,\"renewTime\":\"2030-01-01T00:00:00.000000Z\"}}' | kubectl apply -f - "
      ">/dev/null",
      g_lease);
  sh_ok("lease", cmd);
  g_port = tn_test_free_port();
  tn_test_https_target(g_port, cafile);
  char a_addr[64], a_cert[300], a_key[300], a_id[128];
  snprintf(a_addr, sizeof a_addr, "--api-bind-address=127.0.0.1:%d", g_port);
  snprintf(a_cert, sizeof a_cert, "--api-cert-file=%s/tls.crt", g_dir);
  snprintf(a_key, sizeof a_key, "--api-key-file=%s/tls.key", g_dir);
  snprintf(a_id, sizeof a_id, "--leader-election-id=%s", g_lease);
  const char *args[] = {a_addr, a_cert, a_key, "--leader-elect=true", "--leader-election-namespace=default",
                        a_id,   NULL};
  tn_test_operator_start_ready(&g_op, args);
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void) {
  if (g_op.pid > 0)
    tn_test_operator_stop(&g_op, SIGTERM, 20);
  delete_collection();
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "kubectl delete namespace %s --wait=false >/dev/null 2>&1; kubectl -n default delete lease %s "
           ">/dev/null 2>&1; kubectl delete clusterrolebinding readapi-reader-%s >/dev/null 2>&1; rm -rf %s",
           g_ns, g_lease, g_ns, g_dir);
  char *out = NULL;
  (void)tn_test_sh(&out, "%s", cmd);
  free(out);
}

TestSuite(read_api, .init = setup, .fini = teardown, .timeout = 900);

static char *reader_token(void) {
  char *t = sa_token("reader");
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "kubectl create clusterrolebinding readapi-reader-%s --clusterrole=readapi-test-reader "
           "--serviceaccount=%s:reader >/dev/null",
           g_ns, g_ns);
  sh_ok("binding", cmd);
  return t;
}

/* ---- tests -------------------------------------------------------------------------------- */

Test(read_api, authentication_and_one_tenant) {
  char name[64], path[256];
  snprintf(name, sizeof name, "%s-one", run_id());
  create_tenant(name, "\"displayName\":\"One Inc\",\"externalIds\":{\"billing\":\"cus_one\"}");
  char *reader = reader_token();
  char *nobody = sa_token("nobody"); /* authenticated, no RBAC, in no tenant's groups */
  snprintf(path, sizeof path, "/api/v1/tenants/%s", name);

  struct tn_test_resp r = tn_test_https_get(path, NULL);
  tn_test_expect_problem(&r, 401, "no token");
  cr_assert(tn_test_resp_header(&r, "www-authenticate"), "401 without WWW-Authenticate");
  tn_test_resp_free(&r);
  r = tn_test_https_get(path, "not-a-token");
  tn_test_expect_problem(&r, 401, "a made-up token");
  tn_test_resp_free(&r);

  tn_test_https_wait_status(path, reader, 200);
  r = tn_test_https_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  cr_assert_str_eq(json_string_value(json_object_get(r.json, "kind")), "Tenant");
  cr_assert_str_eq(json_string_value(json_object_get(r.json, "apiVersion")), "tenancy.dev/v1alpha1");
  json_t *meta = json_object_get(r.json, "metadata");
  cr_assert_str_eq(json_string_value(json_object_get(meta, "name")), name);
  cr_assert_null(json_object_get(meta, "managedFields"), "managedFields are served");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "spec"), "displayName")),
                   "One Inc");
  tn_test_resp_free(&r);

  r = tn_test_https_get(path, nobody);
  tn_test_expect_problem(&r, 403, "a ServiceAccount without RBAC");
  tn_test_resp_free(&r);
  r = tn_test_https_get("/api/v1/tenants", nobody);
  tn_test_expect_problem(&r, 403, "a ServiceAccount without RBAC lists");
  tn_test_resp_free(&r);

  snprintf(path, sizeof path, "/api/v1/tenants/%s-missing", run_id());
  r = tn_test_https_get(path, reader);
  tn_test_expect_problem(&r, 404, "an unknown tenant");
  tn_test_resp_free(&r);
  r = tn_test_https_get("/api/v1/nothing-here", reader);
  tn_test_expect_problem(&r, 404, "an unknown endpoint");
  tn_test_resp_free(&r);

  /* placement, from the status */
  patch_status(name,
               "{\"state\":\"Active\",\"placement\":{\"region\":\"us-east-1\",\"isolation\":\"shared\"},"
               "\"namespaces\":[\"x-prod\"]}");
  snprintf(path, sizeof path, "/api/v1/tenants/%s/placement", name);
  double t0 = tn_test_now();
  for (;;) {
    r = tn_test_https_get(path, reader);
    cr_assert_eq(r.status, 200, "%s", r.body.data);
    const char *region = json_string_value(json_object_get(json_object_get(r.json, "placement"), "region"));
    if (region && strcmp(region, "us-east-1") == 0)
      break;
    tn_test_resp_free(&r);
    cr_assert(tn_test_now() - t0 < 30, "the placement never showed");
    usleep(100000);
  }
  cr_assert_str_eq(json_string_value(json_object_get(r.json, "kind")), "TenantPlacement");
  cr_assert_str_eq(json_string_value(json_array_get(json_object_get(r.json, "namespaces"), 0)), "x-prod");
  tn_test_resp_free(&r);

  /* events: a core Event about the tenant shows up from the events cache */
  char cmd[1024];
  snprintf(
      cmd, sizeof cmd,
      "printf '%%s' "
      "'{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":{\"name\":\"%s.e1\",\"namespace\":"
      "\"default\"},\"involvedObject\":{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"name\":"
      "\"%s\"},\"reason\":\"Activated\",\"message\":\"hello\",\"type\":\"Normal\",\"source\":{\"component\":"
      "\"test\"}}' | kubectl create -f - >/dev/null",
      name, name);
  sh_ok("event", cmd);
  snprintf(path, sizeof path, "/api/v1/tenants/%s/events", name);
  t0 = tn_test_now();
  for (;;) {
    r = tn_test_https_get(path, reader);
    cr_assert_eq(r.status, 200, "%s", r.body.data);
    json_t *items = json_object_get(r.json, "items");
    if (json_array_size(items) == 1) {
      cr_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 0), "reason")), "Activated");
      break;
    }
    tn_test_resp_free(&r);
    cr_assert(tn_test_now() - t0 < 30, "the event never showed");
    usleep(100000);
  }
  tn_test_resp_free(&r);
  snprintf(cmd, sizeof cmd, "kubectl -n default delete event %s.e1 >/dev/null", name);
  sh_ok("event delete", cmd);

  /* the description is served without a token */
  r = tn_test_https_get("/openapi.json", NULL);
  cr_assert_eq(r.status, 200);
  cr_assert(json_string_value(json_object_get(r.json, "openapi")), "%s", r.body.data);
  cr_assert(json_object_get(json_object_get(r.json, "paths"), "/api/v1/tenants/{id}"));
  tn_test_resp_free(&r);
  free(reader);
  free(nobody);
}

/* Counts the items of every page of path's list (limit per page), asserting it is well formed;
 * returns the names in *names (a JSON array; json_decref it). */
static json_t *list_all(const char *query, const char *token, int limit) {
  json_t *names = json_array();
  char *cont = NULL;
  for (int page = 0; page < 100000; page++) {
    char path[2048];
    snprintf(path, sizeof path, "/api/v1/tenants?%s%slimit=%d%s%s", query, *query ? "&" : "", limit,
             cont ? "&continue=" : "", cont ? cont : "");
    free(cont);
    cont = NULL;
    struct tn_test_resp r = tn_test_https_get(path, token);
    cr_assert_eq(r.status, 200, "%s: %s", path, r.body.data);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "kind")), "TenantList");
    json_t *items = json_object_get(r.json, "items");
    cr_assert(json_array_size(items) <= (size_t)limit);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) json_array_append_new(
        names, json_string(json_string_value(json_object_get(json_object_get(it, "metadata"), "name"))));
    const char *c = json_string_value(json_object_get(json_object_get(r.json, "metadata"), "continue"));
    if (c)
      cont = strdup(c);
    tn_test_resp_free(&r);
    if (!cont)
      break;
  }
  return names;
}

static bool has(const json_t *names, const char *name) {
  size_t i;
  json_t *n;
  json_array_foreach(names, i, n) if (strcmp(json_string_value(n), name) == 0) return true;
  return false;
}

Test(read_api, filters_and_external_ids) {
  char a[64], b[64], c[64], d[64], spec[512];
  snprintf(a, sizeof a, "%s-fa", run_id());
  snprintf(b, sizeof b, "%s-fb", run_id());
  snprintf(c, sizeof c, "%s-fc", run_id());
  snprintf(d, sizeof d, "%s-fd", run_id());
  snprintf(spec, sizeof spec, "\"displayName\":\"Zebra Works\",\"externalIds\":{\"billing\":\"cus_%s_A\"}",
           run_id());
  create_tenant(a, spec);
  snprintf(spec, sizeof spec,
           "\"plan\":\"standard\",\"isolation\":\"dedicated\",\"externalIds\":{\"crm\":\"CRM-%s-B\"}",
           run_id());
  create_tenant(b, spec);
  create_tenant(c, "\"plan\":\"enterprise\",\"isolation\":\"hybrid\"");
  create_tenant(d, "\"displayName\":\"Quiet\"");
  patch_status(a, "{\"state\":\"Active\",\"placement\":{\"region\":\"eu-west-1\",\"isolation\":\"shared\"}}");
  patch_status(
      b, "{\"state\":\"Suspended\",\"placement\":{\"region\":\"us-east-1\",\"isolation\":\"dedicated\"}}");
  patch_status(c, "{\"state\":\"Active\",\"placement\":{\"region\":\"us-east-1\",\"isolation\":\"hybrid\"}}");
  char *reader = reader_token();
  char q[512], path[512];
  /* wait for the last status to be cached */
  snprintf(q, sizeof q, "q=%s&region=us-east-1&state=Active", run_id());
  double t0 = tn_test_now();
  for (;;) {
    json_t *n = list_all(q, reader, 10);
    bool ok = json_array_size(n) == 1 && has(n, c);
    json_decref(n);
    if (ok)
      break;
    cr_assert(tn_test_now() - t0 < 30, "the statuses never showed");
    usleep(100000);
  }
  struct {
    const char *query;
    const char *want[5];
  } cases[] = {
      {"plan=standard", {b}},
      {"plan=enterprise", {c}},
      {"plan=starter", {a, d}},
      {"isolation=dedicated", {b}},
      {"isolation=shared", {a, d}}, /* d: spec.isolation (no status yet) */
      {"region=us-east-1", {b, c}},
      {"region=eu-west-1", {a}},
      {"state=Suspended", {b}},
      {"state=Draft", {d}}, /* spec.state when there is no status */
      {"state=Active", {a, c}},
      {"state=Active&region=us-east-1", {c}},
      {"plan=starter&state=Active", {a}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(q, sizeof q, "q=%s&%s", run_id(), cases[i].query);
    json_t *n = list_all(q, reader, 1); /* one per page: the filters hold across pages */
    size_t want = 0;
    while (want < 5 && cases[i].want[want])
      want++;
    cr_assert_eq(json_array_size(n), want, "%s: %zu items, want %zu", q, json_array_size(n), want);
    for (size_t k = 0; k < want; k++)
      cr_assert(has(n, cases[i].want[k]), "%s: %s missing", q, cases[i].want[k]);
    json_decref(n);
  }
  /* q: case-insensitive, over the id, the display name and external id values */
  json_t *n = list_all("q=zEBRA%20wOrKs", reader, 50);
  cr_assert(has(n, a) && json_array_size(n) >= 1);
  json_decref(n);
  snprintf(q, sizeof q, "q=crm-%s-b", run_id());
  n = list_all(q, reader, 50);
  cr_assert(json_array_size(n) == 1 && has(n, b), "external id substring");
  json_decref(n);
  snprintf(q, sizeof q, "q=%s-F", run_id());
  n = list_all(q, reader, 3);
  cr_assert_eq(json_array_size(n), 4);
  /* stable order by name */
  for (size_t i = 1; i < json_array_size(n); i++)
    cr_assert(strcmp(json_string_value(json_array_get(n, i - 1)), json_string_value(json_array_get(n, i))) <
              0);
  json_decref(n);

  /* external ids */
  snprintf(path, sizeof path, "/api/v1/tenants/by-external-id/billing/cus_%s_A", run_id());
  struct tn_test_resp r = tn_test_https_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "metadata"), "name")), a);
  tn_test_resp_free(&r);
  snprintf(path, sizeof path, "/api/v1/tenants/by-external-id/crm/CRM-%s-B", run_id());
  r = tn_test_https_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "metadata"), "name")), b);
  tn_test_resp_free(&r);
  snprintf(path, sizeof path, "/api/v1/tenants/by-external-id/billing/CRM-%s-B", run_id());
  r = tn_test_https_get(path, reader);
  tn_test_expect_problem(&r, 404, "an external id of another system");
  tn_test_resp_free(&r);

  /* bad parameters */
  r = tn_test_https_get("/api/v1/tenants?limit=0", reader);
  tn_test_expect_problem(&r, 400, "limit=0");
  tn_test_resp_free(&r);
  r = tn_test_https_get("/api/v1/tenants?limit=abc", reader);
  tn_test_expect_problem(&r, 400, "limit=abc");
  tn_test_resp_free(&r);
  r = tn_test_https_get("/api/v1/tenants?continue=!!!", reader);
  tn_test_expect_problem(&r, 400, "a made-up continue token");
  tn_test_resp_free(&r);
  /* a token of one filter does not continue another */
  snprintf(path, sizeof path, "/api/v1/tenants?q=%s-f&limit=1", run_id());
  r = tn_test_https_get(path, reader);
  const char *cont = json_string_value(json_object_get(json_object_get(r.json, "metadata"), "continue"));
  cr_assert(cont, "%s", r.body.data);
  snprintf(path, sizeof path, "/api/v1/tenants?plan=standard&limit=1&continue=%s", cont);
  tn_test_resp_free(&r);
  r = tn_test_https_get(path, reader);
  tn_test_expect_problem(&r, 400, "a continue token with other filters");
  tn_test_resp_free(&r);
  free(reader);
}

Test(read_api, own_group_sees_only_its_tenant) {
  char a[64], b[64], path[256];
  snprintf(a, sizeof a, "%s-alpha", run_id());
  snprintf(b, sizeof b, "%s-beta", run_id());
  char spec[512];
  snprintf(spec, sizeof spec,
           "\"identity\":{\"groupBindings\":[{\"group\":\"readapi-team-alpha\",\"role\":\"tenant-viewer\"}]},"
           "\"externalIds\":{\"billing\":\"alpha-%s\"}",
           run_id());
  create_tenant(a, spec);
  snprintf(spec, sizeof spec,
           "\"identity\":{\"groupBindings\":[{\"group\":\"readapi-team-beta\",\"role\":\"tenant-viewer\"}]},"
           "\"externalIds\":{\"billing\":\"beta-%s\"}",
           run_id());
  create_tenant(b, spec);
  char *alpha = tn_test_user_token("alpha");
  char *reader = reader_token();
  /* the user has no RBAC on tenants at all: only the group binding lets it in */
  snprintf(path, sizeof path, "/api/v1/tenants/%s", a);
  tn_test_https_wait_status(path, alpha, 200);
  snprintf(path, sizeof path, "/api/v1/tenants/%s", b);
  tn_test_https_wait_status(path, reader,
                            200); /* b is cached: alpha's 403 below is about access, not absence */
  free(reader);
  struct tn_test_resp r = tn_test_https_get(path, alpha);
  tn_test_expect_problem(&r, 403, "alpha reading beta's tenant");
  tn_test_resp_free(&r);
  snprintf(path, sizeof path, "/api/v1/tenants/%s/placement", b);
  r = tn_test_https_get(path, alpha);
  tn_test_expect_problem(&r, 403, "alpha reading beta's placement");
  tn_test_resp_free(&r);
  snprintf(path, sizeof path, "/api/v1/tenants/by-external-id/billing/beta-%s", run_id());
  r = tn_test_https_get(path, alpha);
  tn_test_expect_problem(&r, 403, "alpha looking beta up by external id");
  tn_test_resp_free(&r);
  snprintf(path, sizeof path, "/api/v1/tenants/by-external-id/billing/alpha-%s", run_id());
  r = tn_test_https_get(path, alpha);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  tn_test_resp_free(&r);
  /* an unknown tenant is 403 too: no probing for ids */
  snprintf(path, sizeof path, "/api/v1/tenants/%s-nope", run_id());
  r = tn_test_https_get(path, alpha);
  tn_test_expect_problem(&r, 403, "alpha probing an unknown id");
  tn_test_resp_free(&r);
  /* the list is filtered to alpha's tenants */
  json_t *n = list_all("", alpha, 100);
  cr_assert(has(n, a), "alpha's tenant missing from its list");
  cr_assert(!has(n, b), "beta's tenant in alpha's list");
  size_t i;
  json_t *it;
  json_array_foreach(n, i, it) cr_assert(strcmp(json_string_value(it), b) != 0);
  json_decref(n);
  /* the token is never logged (the operator logs at debug level here) */
  FILE *f = fopen(g_op.log_path, "r");
  cr_assert(f, "no operator log %s", g_op.log_path);
  char line[8192];
  while (fgets(line, sizeof line, f))
    cr_assert_null(strstr(line, alpha), "the operator logged a bearer token: %s", line);
  fclose(f);
  free(alpha);
}

Test(read_api, rate_limit_429) {
  char name[64], path[256];
  snprintf(name, sizeof name, "%s-rl", run_id());
  create_tenant(name, NULL);
  patch_status(name, "{\"derived\":{\"rateLimits\":{\"requestsPerSecond\":1,\"burst\":2}}}");
  char *reader = reader_token();
  snprintf(path, sizeof path, "/api/v1/tenants/%s", name);
  /* until the status is cached the tenant is unlimited */
  double t0 = tn_test_now();
  for (;;) {
    struct tn_test_resp r = tn_test_https_get(path, reader);
    bool limited = tn_test_resp_header(&r, "ratelimit-policy") != NULL;
    tn_test_resp_free(&r);
    if (limited)
      break;
    cr_assert(tn_test_now() - t0 < 30, "no RateLimit-Policy header ever");
    usleep(100000);
  }
  bool got429 = false;
  for (int i = 0; i < 10 && !got429; i++) {
    struct tn_test_resp r = tn_test_https_get(path, reader);
    if (r.status == 429) {
      tn_test_expect_problem(&r, 429, "over the limit");
      const char *ra = tn_test_resp_header(&r, "retry-after");
      cr_assert(ra && atoi(ra) >= 1, "Retry-After: %s", ra ? ra : "-");
      cr_assert(tn_test_resp_header(&r, "ratelimit"), "429 without RateLimit");
      cr_assert(tn_test_resp_header(&r, "ratelimit-policy"), "429 without RateLimit-Policy");
      got429 = true;
    } else {
      cr_assert_eq(r.status, 200, "%s", r.body.data);
    }
    tn_test_resp_free(&r);
  }
  cr_assert(got429, "10 quick requests at 1/s with burst 2 never got 429");
  /* another endpoint has its own bucket; another tenant is not affected */
  snprintf(path, sizeof path, "/api/v1/tenants/%s/placement", name);
  struct tn_test_resp r = tn_test_https_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  tn_test_resp_free(&r);
  /* after Retry-After the tenant is served again */
  sleep(2);
  snprintf(path, sizeof path, "/api/v1/tenants/%s", name);
  r = tn_test_https_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  tn_test_resp_free(&r);
  free(reader);
}

/* ---- 10,000 tenants, paged while they change ------------------------------------------------ */

#define N_TENANTS 10000
#define N_THREADS 8

struct creator {
  int from, to;
  atomic_int *failed;
};

static void *create_range(void *arg) {
  struct creator *c = arg;
  for (int i = c->from; i < c->to; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s-p%05d", run_id(), i);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"apiVersion\":\"tenancy.dev/"
             "v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\",\"labels\":"
             "{\"" LABEL
             "\":\"%s\"}},\"spec\":{\"state\":\"Draft\",\"plan\":\"starter\",\"isolation\":\"shared\","
             "\"residency\":{\"allowedRegions\":[\"eu-west-1\"]},\"environments\":[\"prod\"]}}",
             name, run_id());
    json_t *obj = json_loads(body, 0, NULL);
    struct tn_error err;
    tn_error_clear(&err);
    if (!obj || tn_kube_create(tn_test_kube(), &gvr_tenants, NULL, obj, NULL, &err))
      atomic_fetch_add(c->failed, 1);
    json_decref(obj);
  }
  return NULL;
}

struct churn {
  atomic_bool stop;
  atomic_int deleted_lo; /* tenants [0, deleted_lo) of the deleted set are gone or going */
  int n_changed;
};

/* While the pages are read: deletes every 7th tenant, creates new ones between existing names,
 * and changes others' display names. */
static void *churn_main(void *arg) {
  struct churn *ch = arg;
  int i = 0;
  while (!atomic_load(&ch->stop) && i < N_TENANTS) {
    char name[64];
    struct tn_error err;
    tn_error_clear(&err);
    /* delete one */
    snprintf(name, sizeof name, "%s-p%05d", run_id(), i * 7 % N_TENANTS);
    (void)tn_kube_delete(tn_test_kube(), &gvr_tenants, NULL, name, NULL, &err);
    /* create one between two existing names */
    snprintf(name, sizeof name, "%s-p%05d-new", run_id(), (i * 13 + 5) % N_TENANTS);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"apiVersion\":\"tenancy.dev/"
             "v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\",\"labels\":"
             "{\"" LABEL
             "\":\"%s\"}},\"spec\":{\"state\":\"Draft\",\"plan\":\"starter\",\"isolation\":\"shared\","
             "\"residency\":{\"allowedRegions\":[\"eu-west-1\"]},\"environments\":[\"prod\"]}}",
             name, run_id());
    json_t *obj = json_loads(body, 0, NULL);
    tn_error_clear(&err);
    (void)tn_kube_create(tn_test_kube(), &gvr_tenants, NULL, obj, NULL, &err);
    json_decref(obj);
    /* change one (it stays in the list) */
    snprintf(name, sizeof name, "%s-p%05d", run_id(), (i * 11 + 3) % N_TENANTS);
    json_t *patch = json_pack("{s:{s:s}}", "spec", "displayName", "changed");
    tn_error_clear(&err);
    (void)tn_kube_merge_patch(tn_test_kube(), &gvr_tenants, NULL, name, patch, NULL, NULL, &err);
    json_decref(patch);
    atomic_store(&ch->deleted_lo, i + 1);
    ch->n_changed = i + 1;
    i++;
    usleep(2000);
  }
  return NULL;
}

Test(read_api, pagination_of_10000_tenants_while_they_change, .timeout = 900) {
  atomic_int failed = 0;
  pthread_t th[N_THREADS];
  struct creator cr[N_THREADS];
  double t0 = tn_test_now();
  /* The client is made lazily: make it here, before the threads share it. */
  cr_assert_not_null(tn_test_kube());
  for (int t = 0; t < N_THREADS; t++) {
    cr[t] = (struct creator){
        .from = t * N_TENANTS / N_THREADS, .to = (t + 1) * N_TENANTS / N_THREADS, .failed = &failed};
    pthread_create(&th[t], NULL, create_range, &cr[t]);
  }
  for (int t = 0; t < N_THREADS; t++)
    pthread_join(th[t], NULL);
  cr_assert_eq(atomic_load(&failed), 0, "%d creates failed", atomic_load(&failed));
  cr_log_info("created %d tenants in %.1f s", N_TENANTS, tn_test_now() - t0);
  char *reader = reader_token();
  char q[128];
  snprintf(q, sizeof q, "q=%s-p", run_id());
  /* wait until the cache holds all of them */
  t0 = tn_test_now();
  for (;;) {
    json_t *n = list_all(q, reader, 1000);
    size_t got = json_array_size(n);
    json_decref(n);
    if (got == N_TENANTS)
      break;
    cr_assert(tn_test_now() - t0 < 120, "the cache holds %zu of %d tenants after 120 s", got, N_TENANTS);
    usleep(500000);
  }
  /* page through them (200 a page: 50 pages) while they change */
  struct churn ch = {0};
  pthread_t churner;
  pthread_create(&churner, NULL, churn_main, &ch);
  usleep(200000);
  json_t *names = list_all(q, reader, 200);
  atomic_store(&ch.stop, true);
  pthread_join(churner, NULL);
  int churned = atomic_load(&ch.deleted_lo);
  cr_log_info("paged %zu names while %d tenants were deleted, created and changed", json_array_size(names),
              churned);
  cr_assert(churned > 10, "too little churn during paging (%d) to prove anything", churned);
  /* no duplicates, in order */
  for (size_t i = 1; i < json_array_size(names); i++)
    cr_assert(strcmp(json_string_value(json_array_get(names, i - 1)),
                     json_string_value(json_array_get(names, i))) < 0,
              "not strictly ordered (a duplicate?) at %zu: %s then %s", i,
              json_string_value(json_array_get(names, i - 1)), json_string_value(json_array_get(names, i)));
  /* no gaps: every original tenant that was not deleted during the paging is there (changed ones
   * included) */
  char *deleted = calloc(N_TENANTS, 1);
  for (int i = 0; i < churned + 1 && i < N_TENANTS; i++)
    deleted[i * 7 % N_TENANTS] = 1;
  json_t *set = json_object();
  size_t i;
  json_t *it;
  json_array_foreach(names, i, it) json_object_set_new(set, json_string_value(it), json_true());
  int missing = 0;
  for (int k = 0; k < N_TENANTS; k++) {
    if (deleted[k])
      continue;
    char name[64];
    snprintf(name, sizeof name, "%s-p%05d", run_id(), k);
    if (!json_object_get(set, name)) {
      if (missing < 5)
        cr_log_error("missing: %s", name);
      missing++;
    }
  }
  cr_assert_eq(missing, 0, "%d unchanged or changed tenants missing from the pages", missing);
  free(deleted);
  json_decref(set);
  json_decref(names);
  free(reader);
}
