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
#include "tn_operator.h"
#include "tn_test.h"
#include "util/buf.h"

#define LABEL "test.tenancy.dev/read-api-trail"

static const struct tn_gvr gvr_tenants = {"tenancy.dev", "v1alpha1", "tenants", false};

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

static struct tn_kube *kube(void) {
  static struct tn_kube *k;
  if (k)
    return k;
  struct tn_kube_config cfg = {0};
  struct tn_error err;
  tn_error_clear(&err);
  cr_assert_eq(tn_kube_config_auto(NULL, &cfg, &err), 0, "%s", err.message);
  cfg.qps = 0;
  cr_assert_eq(tn_kube_new(&cfg, NULL, &k, &err), 0, "%s", err.message);
  tn_kube_config_cleanup(&cfg);
  return k;
}

static void sh_ok(const char *what, const char *cmd) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "%s", cmd);
  cr_assert_eq(rc, 0, "%s: %s", what, out ? out : "");
  free(out);
}

/* ---- HTTP client ------------------------------------------------------------------------- */

struct resp {
  long status;
  struct tn_buf body;
  struct tn_buf headers;
  json_t *json;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  return tn_buf_append(ud, p, sz * n) ? 0 : sz * n;
}

static void resp_free(struct resp *r) {
  tn_buf_cleanup(&r->body);
  tn_buf_cleanup(&r->headers);
  json_decref(r->json);
  memset(r, 0, sizeof *r);
}

/* The value of header name in r (a static buffer), or NULL. */
static const char *header(const struct resp *r, const char *name) {
  static char v[512];
  const char *p = r->headers.data;
  size_t n = strlen(name);
  while (p && *p) {
    const char *eol = strstr(p, "\r\n");
    if (!eol)
      break;
    if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
      const char *s = p + n + 1;
      while (*s == ' ')
        s++;
      snprintf(v, sizeof v, "%.*s", (int)(eol - s), s);
      return v;
    }
    p = eol + 2;
  }
  return NULL;
}

/* GET path (already escaped) on the read API with token (NULL: no Authorization). */
static struct resp api_get(const char *path, const char *token) {
  static CURL *c;
  if (!c)
    c = curl_easy_init(); /* one connection, kept alive */
  struct resp r = {0};
  tn_buf_init(&r.body, 64u << 20);
  tn_buf_init(&r.headers, 1u << 20);
  char url[4096], cafile[300], auth[8192];
  snprintf(url, sizeof url, "https://127.0.0.1:%d%s", g_port, path);
  snprintf(cafile, sizeof cafile, "%s/tls.crt", g_dir);
  struct curl_slist *h = NULL;
  if (token) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
  }
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(h);
  cr_assert_eq(rc, CURLE_OK, "GET %s: %s", path, curl_easy_strerror(rc));
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  (void)tn_buf_append(&r.body, "", 1);
  r.body.len--;
  r.json = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
  return r;
}

static void expect_problem(const struct resp *r, long status, const char *what) {
  cr_assert_eq(r->status, status, "%s: status %ld, want %ld: %s", what, r->status, status, r->body.data);
  const char *ct = header(r, "content-type");
  cr_assert(ct && strncmp(ct, "application/problem+json", 24) == 0, "%s: content-type %s", what,
            ct ? ct : "-");
  cr_assert_eq(json_integer_value(json_object_get(r->json, "status")), status, "%s: %s", what, r->body.data);
  cr_assert(json_string_value(json_object_get(r->json, "title")) &&
                json_string_value(json_object_get(r->json, "type")) &&
                json_string_value(json_object_get(r->json, "detail")),
            "%s: not a problem detail: %s", what, r->body.data);
}

/* A token of ServiceAccount sa in the test namespace (TokenRequest API). malloc'd. */
static char *sa_token(const char *sa) {
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "kubectl -n %s create serviceaccount %s >/dev/null 2>&1; kubectl -n %s create token %s "
                      "--duration=1h",
                      g_ns, sa, g_ns, sa);
  cr_assert_eq(rc, 0, "token of %s: %s", sa, out);
  out[strcspn(out, "\r\n")] = '\0';
  return out;
}

/* The stack's static token of user readapi-<who> (group readapi-team-<who>). malloc'd. */
static char *user_token(const char *who) {
  const char *file = getenv("TENANCY_TEST_TOKENS_FILE");
  cr_assert(file && *file, "TENANCY_TEST_TOKENS_FILE is not set: restart the stack with hack/cluster-up.sh");
  FILE *f = fopen(file, "r");
  cr_assert(f, "cannot open %s", file);
  char line[512], want[64];
  snprintf(want, sizeof want, ",readapi-%s,", who);
  char *tok = NULL;
  while (!tok && fgets(line, sizeof line, f))
    if (strstr(line, want))
      tok = strndup(line, strcspn(line, ","));
  fclose(f);
  cr_assert(tok, "no token for %s in %s", who, file);
  return tok;
}

static void create_tenant(const char *name, const char *extra_spec) {
  char body[4096];
  snprintf(
      body, sizeof body,
      "{\"apiVersion\":\"tenancy.dev/"
      "v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\",\"labels\":{"
      "\"" LABEL "\":\"%s\"}},\"spec\":{\"state\":\"Draft\",\"plan\":\"starter\",\"isolation\":\"shared\","
      "\"residency\":{\"allowedRegions\":[\"eu-west-1\",\"us-east-1\"]},\"environments\":[\"prod\"]%s%s}}",
      name, run_id(), extra_spec ? "," : "", extra_spec ? extra_spec : "");
  json_t *obj = json_loads(body, 0, NULL);
  cr_assert(obj, "bad fixture %s", body);
  struct tn_error err;
  tn_error_clear(&err);
  int rc = tn_kube_create(kube(), &gvr_tenants, NULL, obj, NULL, &err);
  json_decref(obj);
  cr_assert_eq(rc, 0, "create tenant %s: %s", name, err.message);
}

/* Waits until GET path with token answers want (the cache caught up). */
static void wait_status(const char *path, const char *token, long want) {
  double t0 = tn_test_now();
  for (;;) {
    struct resp r = api_get(path, token);
    long st = r.status;
    char body[512];
    snprintf(body, sizeof body, "%s", r.body.data ? r.body.data : "");
    resp_free(&r);
    if (st == want)
      return;
    cr_assert(tn_test_now() - t0 < 30, "GET %s: %ld after 30 s, want %ld: %s", path, st, want, body);
    usleep(100000);
  }
}

static void delete_collection(void) {
  char q[256];
  snprintf(q, sizeof q, "labelSelector=" LABEL "%%3D%s", run_id());
  struct tn_kube_request req = {
      .method = "DELETE", .path = "/apis/tenancy.dev/v1alpha1/tenants", .query = q, .timeout_ms = 300000};
  struct tn_kube_response resp;
  tn_kube_response_init(&resp);
  struct tn_error err;
  tn_error_clear(&err);
  (void)tn_kube_do(kube(), &req, &resp, &err);
  tn_kube_response_cleanup(&resp);
}

static void setup(void) {
  tn_test_install_api();
  tn_test_env("TENANCY_PG_DSN"); /* the operator reads the history from the stack's PostgreSQL */
  snprintf(g_dir, sizeof g_dir, "/tmp/tn-readapi-trail-%ld", (long)getpid());
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "mkdir -p %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
           "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout %s/tls.key -out %s/tls.crt "
           ">/dev/null 2>&1",
           g_dir, g_dir, g_dir);
  sh_ok("certificate", cmd);
  snprintf(g_ns, sizeof g_ns, "readapi-trail-%ld", (long)getpid());
  snprintf(cmd, sizeof cmd, "kubectl create namespace %s >/dev/null", g_ns);
  sh_ok("namespace", cmd);
  sh_ok("reader role",
        "printf '%s' '{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRole\",\"metadata\":"
        "{\"name\":\"readapi-trail-test-reader\"},\"rules\":[{\"apiGroups\":[\"tenancy.dev\"],\"resources\":"
        "[\"tenants\"],\"verbs\":[\"get\",\"list\"]}]}' | kubectl apply -f - >/dev/null");
  g_port = tn_test_free_port();
  char a_addr[64], a_cert[300], a_key[300], w_addr[64];
  snprintf(a_addr, sizeof a_addr, "--api-bind-address=127.0.0.1:%d", g_port);
  snprintf(a_cert, sizeof a_cert, "--api-cert-file=%s/tls.crt", g_dir);
  snprintf(a_key, sizeof a_key, "--api-key-file=%s/tls.key", g_dir);
  snprintf(w_addr, sizeof w_addr, "--webhook-bind-address=127.0.0.1:%d", tn_test_free_port());
  const char *args[] = {a_addr, a_cert, a_key, w_addr, "--leader-elect=false", NULL};
  tn_test_operator_start(&g_op, args);
  if (!tn_test_operator_wait_ready(&g_op, 60)) {
    tn_test_operator_dump_log(&g_op);
    cr_assert_fail("the operator did not become ready");
  }
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
    struct resp r = api_get(path, token);
    bool ok = false;
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(r.json, "items"), i, it) ok =
        ok || holds(json_object_get(it, "changes"), change);
    if (ok) {
      resp_free(&r);
      return;
    }
    if (tn_test_now() - t0 > 90) {
      tn_test_operator_dump_log(&g_op);
      cr_assert_fail("GET %s: no version with %s after 90 s: %ld %s", path, change, r.status, r.body.data);
    }
    resp_free(&r);
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
  char *alpha = user_token("alpha");
  char *reader = reader_token();
  snprintf(path, sizeof path, "/api/v1/tenants/%s", a);
  wait_status(path, alpha, 200);
  snprintf(path, sizeof path, "/api/v1/tenants/%s", b);
  wait_status(path, reader, 200); /* b is cached: alpha's 403 below is about access, not absence */
  patch_display_name(a, "Alpha Company");
  patch_display_name(b, "Beta Company");

  /* the reader: any tenant's history, newest first, each version with its diff */
  wait_change(b, reader, "~ spec.displayName: \"Beta Co\" -> \"Beta Company\"");
  wait_change(a, reader, "~ spec.displayName: \"Alpha Co\" -> \"Alpha Company\"");
  snprintf(path, sizeof path, "/api/v1/tenants/%s/history", a);
  struct resp r = api_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  cr_assert_str_eq(json_string_value(json_object_get(r.json, "kind")), "TenantHistory");
  json_t *items = json_object_get(r.json, "items");
  cr_assert_geq(json_array_size(items), 2, "%s", r.body.data);
  json_t *v0 = json_array_get(items, 0), *vl = json_array_get(items, json_array_size(items) - 1);
  cr_assert_gt(json_integer_value(json_object_get(v0, "generation")),
               json_integer_value(json_object_get(vl, "generation")), "newest first: %s", r.body.data);
  cr_assert(json_is_null(json_object_get(vl, "previousGeneration")));
  cr_assert(holds(json_object_get(vl, "changes"), "+ spec.displayName: \"Alpha Co\""), "%s", r.body.data);
  resp_free(&r);
  /* paging: one version a page, the next page starts after it */
  snprintf(path, sizeof path, "/api/v1/tenants/%s/history?limit=1", a);
  r = api_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 1);
  const char *cont = json_string_value(json_object_get(json_object_get(r.json, "metadata"), "continue"));
  cr_assert(cont && *cont, "a continue token: %s", r.body.data);
  json_int_t g1 =
      json_integer_value(json_object_get(json_array_get(json_object_get(r.json, "items"), 0), "generation"));
  char *esc = curl_easy_escape(NULL, cont, 0);
  snprintf(path, sizeof path, "/api/v1/tenants/%s/history?limit=1&continue=%s", a, esc);
  curl_free(esc);
  resp_free(&r);
  r = api_get(path, reader);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  cr_assert_lt(
      json_integer_value(json_object_get(json_array_get(json_object_get(r.json, "items"), 0), "generation")),
      g1);
  resp_free(&r);

  /* the audit timeline: the spec change audited, newest first */
  snprintf(path, sizeof path, "/api/v1/tenants/%s/audit", a);
  r = api_get(path, reader);
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
  resp_free(&r);

  /* the tenant's group: its own tenant's history and audit, nothing of another's */
  const char *dsn = tn_test_env("TENANCY_PG_DSN");
  char password[256] = "";
  const char *at = strchr(dsn, '@'), *colon = strstr(dsn, "://") ? strchr(strstr(dsn, "://") + 3, ':') : NULL;
  if (at && colon && colon < at)
    snprintf(password, sizeof password, "%.*s", (int)(at - colon - 1), colon + 1);
  static const char *const whats[] = {"history", "audit"};
  for (int w = 0; w < 2; w++) {
    snprintf(path, sizeof path, "/api/v1/tenants/%s/%s", a, whats[w]);
    r = api_get(path, alpha);
    cr_assert_eq(r.status, 200, "alpha's own %s: %s", whats[w], r.body.data);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "tenant")), a);
    cr_assert_gt(json_array_size(json_object_get(r.json, "items")), 0);
    if (password[0])
      cr_assert_null(strstr(r.body.data, password), "the database password in an answer");
    resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/tenants/%s/%s", b, whats[w]);
    r = api_get(path, alpha);
    expect_problem(&r, 403, "alpha reading beta's history or audit");
    cr_assert_null(strstr(r.body.data, "Beta"), "nothing of beta: %s", r.body.data);
    resp_free(&r);
    r = api_get(path, NULL);
    expect_problem(&r, 401, "no token");
    resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/tenants/%s-nope/%s", run_id(), whats[w]);
    r = api_get(path, reader);
    expect_problem(&r, 404, "no such tenant");
    resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/tenants/%s/%s?limit=101", a, whats[w]);
    r = api_get(path, reader);
    expect_problem(&r, 400, "limit 101");
    resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/tenants/%s/%s?continue=1%%27%%3B--", a, whats[w]);
    r = api_get(path, reader);
    expect_problem(&r, 400, "a forged continue token");
    resp_free(&r);
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
