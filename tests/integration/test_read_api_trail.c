/* test_read_api_trail.c - the read API's tenant history and audit timeline (operator/api/trail.c)
 * through the real operator binary (it reconciles: it records the versions and audit rows in the
 * stack's PostgreSQL), the API server (TokenReview, SubjectAccessReview) and the stack's static
 * user tokens:
 *  - a reader with get/list on tenants reads any tenant's history (newest first, each version's
 *    diff from the one before) and audit rows, paged with continue tokens;
 *  - a tenant's group (readapi-team-alpha, no RBAC at all) reads its own tenant's history and audit
 *    timeline and gets 403 for another tenant's, with nothing of it in the answer; no token 401;
 *  - bad limits and forged continue tokens are 400; no answer holds the database password. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
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

#define LABEL "test.tenancy.dev/read-api-trail"

static struct tn_test_operator g_op;
static int g_port;
static char g_dir[256]; /* certificate, key, kubeconfig bits */
static char g_ns[64];   /* the test's namespace (ServiceAccounts) */
static char g_run[32];  /* this process's label value and name prefix */

static const char *run_id(void) {
  if (!g_run[0])
    snprintf(g_run, sizeof g_run, "rt%ld", (long)getpid());
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

static void setup(void) {
  tn_test_install_api();
  tn_test_env("TENANCY_PG_DSN"); /* the operator reads the history from the stack's PostgreSQL */
  snprintf(g_dir, sizeof g_dir, "/tmp/tn-readapi-trail-%ld", (long)getpid());
  tn_test_https_self_signed(g_dir);
  char cmd[2048], cafile[300];
  snprintf(cafile, sizeof cafile, "%s/tls.crt", g_dir);
  snprintf(g_ns, sizeof g_ns, "readapi-trail-%ld", (long)getpid());
  snprintf(cmd, sizeof cmd, "kubectl create namespace %s >/dev/null", g_ns);
  sh_ok("namespace", cmd);
  sh_ok("reader role",
        "printf '%s' '{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRole\",\"metadata\":"
        "{\"name\":\"readapi-trail-test-reader\"},\"rules\":[{\"apiGroups\":[\"tenancy.dev\"],\"resources\":"
        "[\"tenants\"],\"verbs\":[\"get\",\"list\"]}]}' | kubectl apply -f - >/dev/null");
  g_port = tn_test_free_port();
  tn_test_https_target(g_port, cafile);
  char a_addr[64], a_cert[300], a_key[300], w_addr[64];
  snprintf(a_addr, sizeof a_addr, "--api-bind-address=127.0.0.1:%d", g_port);
  snprintf(a_cert, sizeof a_cert, "--api-cert-file=%s/tls.crt", g_dir);
  snprintf(a_key, sizeof a_key, "--api-key-file=%s/tls.key", g_dir);
  snprintf(w_addr, sizeof w_addr, "--webhook-bind-address=127.0.0.1:%d", tn_test_free_port());
  const char *args[] = {a_addr, a_cert, a_key, w_addr, "--leader-elect=false", NULL};
  tn_test_operator_start_ready(&g_op, args);
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void) {
  delete_collection();
  char *out = NULL;
  /* let the operator run the finalizers, then stop it */
  (void)tn_test_sh_until(60, &out, "test -z \"$(kubectl get tenants -l " LABEL "=%s -o name)\"", run_id());
  free(out);
  out = NULL;
  if (g_op.pid > 0)
    tn_test_operator_stop(&g_op, SIGTERM, 20);
  (void)tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "kubectl delete namespace %s --wait=false >/dev/null 2>&1; kubectl delete clusterrolebinding "
           "readapi-trail-reader-%s >/dev/null 2>&1; rm -rf %s",
           g_ns, g_ns, g_dir);
  (void)tn_test_sh(&out, "%s", cmd);
  free(out);
}

TestSuite(read_api_trail, .init = setup, .fini = teardown, .timeout = 600);

static char *reader_token(void) {
  char *t = sa_token("reader");
  char cmd[512];
  snprintf(
      cmd, sizeof cmd,
      "kubectl create clusterrolebinding readapi-trail-reader-%s --clusterrole=readapi-trail-test-reader "
      "--serviceaccount=%s:reader >/dev/null",
      g_ns, g_ns);
  sh_ok("binding", cmd);
  return t;
}

static void patch_display_name(const char *name, const char *value) {
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"displayName\":\"%s\"}}' >/dev/null", name,
           value);
  sh_ok("patch", cmd);
}

/* Whether the string array a holds s. */
static bool holds(const json_t *a, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) return true;
  return false;
}

/* Waits until the history of name (read with token) has a version whose changes hold change. */
static void wait_change(const char *name, const char *token, const char *change) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/tenants/%s/history", name);
  double t0 = tn_test_now();
  for (;;) {
    struct tn_test_resp r = tn_test_https_get(path, token);
    bool ok = false;
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(r.json, "items"), i, it) ok =
        ok || holds(json_object_get(it, "changes"), change);
    if (ok) {
      tn_test_resp_free(&r);
      return;
    }
    if (tn_test_now() - t0 > 90) {
      tn_test_operator_dump_log(&g_op);
      cr_assert_fail("GET %s: no version with %s after 90 s: %ld %s", path, change, r.status, r.body.data);
    }
    tn_test_resp_free(&r);
    usleep(250000);
  }
}

Test(read_api_trail, history_and_audit_as_the_tenant_group_and_as_a_reader) {
  char a[64], b[64], path[256];
  snprintf(a, sizeof a, "%s-alpha", run_id());
  snprintf(b, sizeof b, "%s-beta", run_id());
  create_tenant(
      a, "\"displayName\":\"Alpha Co\",\"identity\":{\"groupBindings\":[{\"group\":\"readapi-team-alpha\","
         "\"role\":\"tenant-viewer\"}]}");
  create_tenant(
      b, "\"displayName\":\"Beta Co\",\"identity\":{\"groupBindings\":[{\"group\":\"readapi-team-beta\","
         "\"role\":\"tenant-viewer\"}]}");
  char *alpha = tn_test_user_token("alpha");
  char *reader = reader_token();
  snprintf(path, sizeof path, "/api/v1/tenants/%s", a);
  tn_test_https_wait_status(path, alpha, 200);
  snprintf(path, sizeof path, "/api/v1/tenants/%s", b);
  tn_test_https_wait_status(path, reader,
                            200); /* b is cached: alpha's 403 below is about access, not absence */
  patch_display_name(a, "Alpha Company");
  patch_display_name(b, "Beta Company");

  /* the reader: any tenant's history, newest first, each version with its diff */
  wait_change(b, reader, "~ spec.displayName: \"Beta Co\" -> \"Beta Company\"");
  wait_change(a, reader, "~ spec.displayName: \"Alpha Co\" -> \"Alpha Company\"");
  snprintf(path, sizeof path, "/api/v1/tenants/%s/history", a);
  struct tn_test_resp r = tn_test_https_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  cr_assert_str_eq(json_string_value(json_object_get(r.json, "kind")), "TenantHistory");
  json_t *items = json_object_get(r.json, "items");
  cr_assert_geq(json_array_size(items), 2, "%s", r.body.data);
  json_t *v0 = json_array_get(items, 0), *vl = json_array_get(items, json_array_size(items) - 1);
  cr_assert_gt(json_integer_value(json_object_get(v0, "generation")),
               json_integer_value(json_object_get(vl, "generation")), "newest first: %s", r.body.data);
  cr_assert(json_is_null(json_object_get(vl, "previousGeneration")));
  cr_assert(holds(json_object_get(vl, "changes"), "+ spec.displayName: \"Alpha Co\""), "%s", r.body.data);
  tn_test_resp_free(&r);
  /* paging: one version a page, the next page starts after it */
  snprintf(path, sizeof path, "/api/v1/tenants/%s/history?limit=1", a);
  r = tn_test_https_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 1);
  const char *cont = json_string_value(json_object_get(json_object_get(r.json, "metadata"), "continue"));
  cr_assert(cont && *cont, "a continue token: %s", r.body.data);
  json_int_t g1 =
      json_integer_value(json_object_get(json_array_get(json_object_get(r.json, "items"), 0), "generation"));
  char *esc = curl_easy_escape(NULL, cont, 0);
  snprintf(path, sizeof path, "/api/v1/tenants/%s/history?limit=1&continue=%s", a, esc);
  curl_free(esc);
  tn_test_resp_free(&r);
  r = tn_test_https_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  cr_assert_lt(
      json_integer_value(json_object_get(json_array_get(json_object_get(r.json, "items"), 0), "generation")),
      g1);
  tn_test_resp_free(&r);

  /* the audit timeline: the spec change audited, newest first */
  snprintf(path, sizeof path, "/api/v1/tenants/%s/audit", a);
  r = tn_test_https_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  cr_assert_str_eq(json_string_value(json_object_get(r.json, "kind")), "TenantAuditTrail");
  bool seen = false;
  json_int_t prev_id = INT64_MAX;
  size_t i;
  json_t *it;
  json_array_foreach(json_object_get(r.json, "items"), i, it) {
    json_int_t id = json_integer_value(json_object_get(it, "id"));
    cr_assert_lt(id, prev_id, "newest first");
    prev_id = id;
    const char *action = json_string_value(json_object_get(it, "action"));
    seen = seen || (action && strncmp(action, "spec.", 5) == 0);
    cr_assert_null(json_object_get(it, "hash"));
  }
  cr_assert(seen, "an audit row of the spec change: %s", r.body.data);
  tn_test_resp_free(&r);

  /* the tenant's group: its own tenant's history and audit, nothing of another's */
  const char *dsn = tn_test_env("TENANCY_PG_DSN");
  char password[256] = "";
  const char *at = strchr(dsn, '@'), *colon = strstr(dsn, "://") ? strchr(strstr(dsn, "://") + 3, ':') : NULL;
  if (at && colon && colon < at)
    snprintf(password, sizeof password, "%.*s", (int)(at - colon - 1), colon + 1);
  static const char *const whats[] = {"history", "audit"};
  for (int w = 0; w < 2; w++) {
    snprintf(path, sizeof path, "/api/v1/tenants/%s/%s", a, whats[w]);
    r = tn_test_https_get(path, alpha);
    cr_assert_eq(r.status, 200, "alpha's own %s: %s", whats[w], r.body.data);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "tenant")), a);
    cr_assert_gt(json_array_size(json_object_get(r.json, "items")), 0);
    if (password[0])
      cr_assert_null(strstr(r.body.data, password), "the database password in an answer");
    tn_test_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/tenants/%s/%s", b, whats[w]);
    r = tn_test_https_get(path, alpha);
    tn_test_expect_problem(&r, 403, "alpha reading beta's history or audit");
    cr_assert_null(strstr(r.body.data, "Beta"), "nothing of beta: %s", r.body.data);
    tn_test_resp_free(&r);
    r = tn_test_https_get(path, NULL);
    tn_test_expect_problem(&r, 401, "no token");
    tn_test_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/tenants/%s-nope/%s", run_id(), whats[w]);
    r = tn_test_https_get(path, reader);
    tn_test_expect_problem(&r, 404, "no such tenant");
    tn_test_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/tenants/%s/%s?limit=101", a, whats[w]);
    r = tn_test_https_get(path, reader);
    tn_test_expect_problem(&r, 400, "limit 101");
    tn_test_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/tenants/%s/%s?continue=1%%27%%3B--", a, whats[w]);
    r = tn_test_https_get(path, reader);
    tn_test_expect_problem(&r, 400, "a forged continue token");
    tn_test_resp_free(&r);
  }
  /* the operator's log holds neither the token nor the password */
  FILE *f = fopen(g_op.log_path, "r");
  cr_assert(f, "no operator log %s", g_op.log_path);
  char line[8192];
  while (fgets(line, sizeof line, f)) {
    cr_assert_null(strstr(line, alpha), "the operator logged a bearer token: %s", line);
    if (password[0])
      cr_assert_null(strstr(line, password), "the operator logged the database password");
  }
  fclose(f);
  free(alpha);
  free(reader);
}
