/* test_harness.c - proves the local stack is real: the API server answers over verified TLS,
 * the controller-manager finishes namespace deletion and garbage-collects dependents, RBAC
 * denies an unprivileged user, and PostgreSQL accepts only TLS connections. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "tn_test.h"
#include "util/buf.h"

static size_t collect(char *p, size_t size, size_t n, void *ud) {
  return tn_buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

Test(harness, apiserver_readyz_over_verified_tls) {
  const char *server = tn_test_env("TENANCY_KUBE_SERVER");
  const char *ca = tn_test_env("TENANCY_CA_FILE");
  char url[512];
  snprintf(url, sizeof url, "%s/readyz", server);
  struct tn_buf body;
  tn_buf_init(&body, 1 << 16);
  CURL *c = curl_easy_init();
  cr_assert_not_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CAINFO, ca);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  cr_assert_eq(rc, CURLE_OK, "GET %s: %s", url, curl_easy_strerror(rc));
  cr_assert_eq(code, 200, "GET /readyz answered %ld: %s", code, tn_buf_str(&body));
  cr_assert_str_eq(tn_buf_str(&body), "ok");
  tn_buf_cleanup(&body);

  /* And a client that does not trust our CA is refused: TLS is really verified. */
  c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CAINFO, "/etc/ssl/certs/ca-certificates.crt");
  rc = curl_easy_perform(c);
  curl_easy_cleanup(c);
  cr_assert_eq(rc, CURLE_PEER_FAILED_VERIFICATION, "expected a verification failure, got %s",
               curl_easy_strerror(rc));
}

Test(harness, kubectl_is_the_pinned_version) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl version -o json");
  cr_assert_eq(rc, 0, "kubectl version: %s", out);
  cr_assert(strstr(out, "\"gitVersion\": \"v1.37.2\"") != NULL, "expected v1.37.2 client and server: %s",
            out);
  free(out);
}

Test(harness, namespace_is_deleted_all_the_way, .timeout = 180) {
  char ns[64], *out = NULL;
  tn_test_unique_name(ns, sizeof ns, "harness-ns");
  cr_assert_eq(tn_test_sh(&out, "kubectl create namespace %s", ns), 0, "%s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&out, "kubectl -n %s create configmap c1 --from-literal=a=b", ns), 0, "%s", out);
  free(out);
  /* The namespace controller (in kube-controller-manager) must empty it and drop the finalizer. */
  int rc = tn_test_sh(&out, "kubectl delete namespace %s --wait --timeout=150s", ns);
  cr_assert_eq(rc, 0, "namespace deletion did not complete: %s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl get namespace %s", ns);
  cr_assert_neq(rc, 0);
  cr_assert(strstr(out, "NotFound") != NULL, "expected NotFound, got: %s", out);
  free(out);
}

Test(harness, owner_references_are_garbage_collected, .timeout = 120) {
  char owner[64], *out = NULL, *uid = NULL;
  tn_test_unique_name(owner, sizeof owner, "harness-owner");
  cr_assert_eq(tn_test_sh(&out, "kubectl -n default create configmap %s", owner), 0, "%s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&uid, "kubectl -n default get configmap %s -o jsonpath='{.metadata.uid}'", owner),
               0);
  cr_assert_eq(
      tn_test_sh(
          &out,
          "printf '%%s' '{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s-dep\","
          "\"namespace\":\"default\",\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
          "\"name\":\"%s\",\"uid\":\"%s\"}]}}' | kubectl create -f -",
          owner, owner, uid),
      0, "%s", out);
  free(out);
  free(uid);
  cr_assert_eq(tn_test_sh(&out, "kubectl -n default delete configmap %s", owner), 0, "%s", out);
  free(out);
  int rc = tn_test_sh_until(90, &out, "! kubectl -n default get configmap %s-dep >/dev/null 2>&1", owner);
  cr_assert_eq(rc, 0, "the dependent was not garbage-collected within 90 s");
  free(out);
}

Test(harness, rbac_denies_an_unprivileged_user) {
  const char *kc = tn_test_env("TENANCY_UNPRIVILEGED_KUBECONFIG");
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl --kubeconfig '%s' -n default get secrets", kc);
  cr_assert_neq(rc, 0, "an unprivileged user listed secrets: %s", out);
  cr_assert(strstr(out, "Forbidden") != NULL || strstr(out, "forbidden") != NULL, "expected Forbidden: %s",
            out);
  free(out);
  rc =
      tn_test_sh(&out, "kubectl --kubeconfig '%s' auth whoami -o jsonpath='{.status.userInfo.username}'", kc);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "jane");
  free(out);
  /* The admin can: the denial is RBAC, not a broken client. */
  rc = tn_test_sh(&out, "kubectl -n default get secrets");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

Test(harness, postgres_accepts_tls_and_refuses_plaintext) {
  const char *dsn = tn_test_env("TENANCY_PG_DSN");
  PGconn *c = PQconnectdb(dsn);
  cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect: %s", PQerrorMessage(c));
  cr_assert_eq(PQsslInUse(c), 1);
  PGresult *r = PQexec(c, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
  cr_assert_str_eq(PQgetvalue(r, 0, 0), "t");
  cr_assert(strncmp(PQgetvalue(r, 0, 1), "TLSv1.", 6) == 0, "TLS version %s", PQgetvalue(r, 0, 1));
  PQclear(r);
  r = PQexec(c, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user");
  cr_assert_str_eq(PQgetvalue(r, 0, 0), "t", "the DSN's role must be a superuser");
  PQclear(r);
  PQfinish(c);

  /* The same credentials without TLS are refused by pg_hba (hostssl only). */
  const char *host = tn_test_env("TENANCY_PG_HOST");
  const char *port = tn_test_env("TENANCY_PG_PORT");
  const char *keys[] = {"dbname", "host", "port", "sslmode", NULL};
  const char *vals[] = {dsn, host, port, "disable", NULL};
  c = PQconnectdbParams(keys, vals, 1);
  cr_assert_neq(PQstatus(c), CONNECTION_OK, "a plaintext connection was accepted");
  cr_assert(strstr(PQerrorMessage(c), "no pg_hba.conf entry") != NULL, "%s", PQerrorMessage(c));
  PQfinish(c);
}
