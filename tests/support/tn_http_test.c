/* tn_http_test.c - read API client helpers of the suites (see tn_http_test.h). */
#define _GNU_SOURCE
#include "tn_http_test.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kube/client.h"
#include "tn_test.h"

static const struct tn_gvr gvr_tenants = {"tenancy.dev", "v1alpha1", "tenants", false};

struct tn_kube *tn_test_kube(void) {
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

void tn_test_https_self_signed(const char *dir) {
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "mkdir -p '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                      "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '%s/tls.key' "
                      "-out '%s/tls.crt' 2>&1",
                      dir, dir, dir);
  cr_assert_eq(rc, 0, "certificate: %s", out ? out : "");
  free(out);
}

static int g_port;
static char g_cafile[512];

void tn_test_https_target(int port, const char *cafile) {
  g_port = port;
  snprintf(g_cafile, sizeof g_cafile, "%s", cafile);
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  return tn_buf_append(ud, p, sz * n) ? 0 : sz * n;
}

void tn_test_resp_free(struct tn_test_resp *r) {
  tn_buf_cleanup(&r->body);
  tn_buf_cleanup(&r->headers);
  json_decref(r->json);
  memset(r, 0, sizeof *r);
}

const char *tn_test_resp_header(const struct tn_test_resp *r, const char *name) {
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

struct tn_test_resp tn_test_https_get(const char *path, const char *token) {
  static CURL *c;
  cr_assert_gt(g_port, 0, "tn_test_https_target was not called");
  if (!c)
    c = curl_easy_init(); /* one connection, kept alive */
  cr_assert_not_null(c);
  struct tn_test_resp r = {0};
  tn_buf_init(&r.body, 64u << 20);
  tn_buf_init(&r.headers, 1u << 20);
  char url[4096], auth[8192];
  snprintf(url, sizeof url, "https://127.0.0.1:%d%s", g_port, path);
  struct curl_slist *h = NULL;
  if (token) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
  }
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CAINFO, g_cafile);
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

void tn_test_https_wait_status(const char *path, const char *token, long want) {
  double t0 = tn_test_now();
  for (;;) {
    struct tn_test_resp r = tn_test_https_get(path, token);
    long st = r.status;
    char body[512];
    snprintf(body, sizeof body, "%s", r.body.data ? r.body.data : "");
    tn_test_resp_free(&r);
    if (st == want)
      return;
    cr_assert(tn_test_now() - t0 < 30, "GET %s: %ld after 30 s, want %ld: %s", path, st, want, body);
    usleep(100000);
  }
}

void tn_test_expect_problem(const struct tn_test_resp *r, long status, const char *what) {
  cr_assert_eq(r->status, status, "%s: status %ld, want %ld: %s", what, r->status, status, r->body.data);
  const char *ct = tn_test_resp_header(r, "content-type");
  cr_assert(ct && strncmp(ct, "application/problem+json", 24) == 0, "%s: content-type %s", what,
            ct ? ct : "-");
  cr_assert_eq(json_integer_value(json_object_get(r->json, "status")), status, "%s: %s", what, r->body.data);
  cr_assert(json_string_value(json_object_get(r->json, "title")) &&
                json_string_value(json_object_get(r->json, "type")) &&
                json_string_value(json_object_get(r->json, "detail")),
            "%s: not a problem detail: %s", what, r->body.data);
}

char *tn_test_sa_token(const char *ns, const char *sa) {
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "kubectl -n %s create serviceaccount %s >/dev/null 2>&1; kubectl -n %s create token %s "
                      "--duration=1h",
                      ns, sa, ns, sa);
  cr_assert_eq(rc, 0, "token of %s: %s", sa, out);
  out[strcspn(out, "\r\n")] = '\0';
  return out;
}

char *tn_test_user_token(const char *who) {
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

void tn_test_create_labelled_tenant(const char *name, const char *label, const char *value,
                                    const char *extra_spec) {
  char body[4096];
  snprintf(body, sizeof body,
           "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\","
           "\"labels\":{\"%s\":\"%s\"}},\"spec\":{\"state\":\"Draft\",\"plan\":\"starter\",\"isolation\":"
           "\"shared\",\"residency\":{\"allowedRegions\":[\"eu-west-1\",\"us-east-1\"]},\"environments\":"
           "[\"prod\"]%s%s}}",
           name, label, value, extra_spec ? "," : "", extra_spec ? extra_spec : "");
  json_t *obj = json_loads(body, 0, NULL);
  cr_assert(obj, "bad fixture %s", body);
  struct tn_error err;
  tn_error_clear(&err);
  int rc = tn_kube_create(tn_test_kube(), &gvr_tenants, NULL, obj, NULL, &err);
  json_decref(obj);
  cr_assert_eq(rc, 0, "create tenant %s: %s", name, err.message);
}

void tn_test_delete_labelled_tenants(const char *label, const char *value) {
  char q[512];
  snprintf(q, sizeof q, "labelSelector=%s%%3D%s", label, value);
  struct tn_kube_request req = {
      .method = "DELETE", .path = "/apis/tenancy.dev/v1alpha1/tenants", .query = q, .timeout_ms = 300000};
  struct tn_kube_response resp;
  tn_kube_response_init(&resp);
  struct tn_error err;
  tn_error_clear(&err);
  (void)tn_kube_do(tn_test_kube(), &req, &resp, &err);
  tn_kube_response_cleanup(&resp);
}
