/* test_status.c - unit tests of the client's pure parts: decoding API server Status bodies into
 * errors, escaping request paths, building queries, and the retry policy. No network. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kube/client.h"

/* Bodies as kube-apiserver v1.37 sends them (captured with kubectl get --raw / curl). */
static const char not_found[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":"
    "\"configmaps \\\"missing\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"missing\","
    "\"kind\":\"configmaps\"},\"code\":404}\n";
static const char conflict[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":"
    "\"Operation "
    "cannot be fulfilled on configmaps \\\"c1\\\": the object has been modified; please apply your changes "
    "to "
    "the latest version and try again\",\"reason\":\"Conflict\",\"details\":{\"name\":\"c1\",\"kind\":"
    "\"configmaps\"},\"code\":409}\n";
static const char already_exists[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":"
    "\"configmaps \\\"c1\\\" already exists\",\"reason\":\"AlreadyExists\",\"details\":{\"name\":\"c1\","
    "\"kind\":\"configmaps\"},\"code\":409}\n";
static const char invalid[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":"
    "\"ConfigMap \\\"Bad_Name\\\" is invalid: [metadata.name: Invalid value: \\\"Bad_Name\\\": a lowercase "
    "RFC "
    "1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', data[a b]: Invalid "
    "value: "
    "\\\"a b\\\": a valid config key must consist of alphanumeric characters, '-', '_' or '.']\",\"reason\":"
    "\"Invalid\",\"details\":{\"name\":\"Bad_Name\",\"kind\":\"ConfigMap\",\"causes\":[{\"reason\":"
    "\"FieldValueInvalid\",\"message\":\"Invalid value: \\\"Bad_Name\\\": a lowercase RFC 1123 subdomain "
    "must "
    "consist of lower case alphanumeric characters, '-' or '.'\",\"field\":\"metadata.name\"},{\"reason\":"
    "\"FieldValueInvalid\",\"message\":\"Invalid value: \\\"a b\\\": a valid config key must consist of "
    "alphanumeric characters, '-', '_' or '.'\",\"field\":\"data[a b]\"}]},\"code\":422}\n";
static const char expired[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"The "
    "provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of "
    "the results. Continuing with the provided token results in an inconsistent list - objects that were "
    "created, modified, or deleted between the time the first chunk was returned and now may show up in the "
    "list.\",\"reason\":\"Expired\",\"code\":410}\n";
static const char too_many[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Too "
    "many "
    "requests, please try again "
    "later.\",\"reason\":\"TooManyRequests\",\"details\":{\"causes\":[{\"message\":"
    "\"The apiserver is shutting down\"}],\"retryAfterSeconds\":3},\"code\":429}\n";
static const char forbidden[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"secrets "
    "is "
    "forbidden: User \\\"jane\\\" cannot list resource \\\"secrets\\\" in API group \\\"\\\" in the "
    "namespace "
    "\\\"default\\\"\",\"reason\":\"Forbidden\",\"details\":{\"kind\":\"secrets\"},\"code\":403}\n";
static const char watch_error_event_status[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old "
    "resource version: 1 (3021)\",\"reason\":\"Expired\",\"code\":410}";

static int decode(long http, const char *body, struct tn_error *e) {
  memset(e, 0x5a, sizeof *e); /* every field must be written */
  return tn_kube_status_error(http, body, body ? strlen(body) : 0, e);
}

Test(status, not_found) {
  struct tn_error e;
  cr_assert_eq(decode(404, not_found, &e), TN_ENOTFOUND);
  cr_assert_eq(e.code, TN_ENOTFOUND);
  cr_assert_eq(e.http_status, 404);
  cr_assert_str_eq(e.reason, "NotFound");
  cr_assert_str_eq(e.message, "configmaps \"missing\" not found");
  cr_assert_eq(e.n_causes, 0);
  cr_assert_eq(e.retry_after_s, 0);
}

Test(status, conflict_keeps_the_server_message) {
  struct tn_error e;
  cr_assert_eq(decode(409, conflict, &e), TN_ECONFLICT);
  cr_assert_str_eq(e.reason, "Conflict");
  cr_assert(strstr(e.message, "the object has been modified") != NULL, "%s", e.message);
}

Test(status, already_exists_is_not_a_conflict) {
  struct tn_error e;
  cr_assert_eq(decode(409, already_exists, &e), TN_EEXISTS);
  cr_assert_str_eq(e.reason, "AlreadyExists");
  cr_assert_str_eq(e.message, "configmaps \"c1\" already exists");
}

Test(status, invalid_with_causes) {
  struct tn_error e;
  cr_assert_eq(decode(422, invalid, &e), TN_EINVALID);
  cr_assert_str_eq(e.reason, "Invalid");
  cr_assert(strncmp(e.message, "ConfigMap \"Bad_Name\" is invalid", 31) == 0, "%s", e.message);
  cr_assert_eq(e.n_causes, 2);
  cr_assert_str_eq(e.causes[0].field, "metadata.name");
  cr_assert_str_eq(e.causes[0].reason, "FieldValueInvalid");
  cr_assert(strstr(e.causes[0].message, "RFC 1123") != NULL);
  cr_assert_str_eq(e.causes[1].field, "data[a b]");
}

Test(status, expired_410) {
  struct tn_error e;
  cr_assert_eq(decode(410, expired, &e), TN_EGONE);
  cr_assert_str_eq(e.reason, "Expired");
  cr_assert(strstr(e.message, "continue parameter is too old") != NULL);
}

Test(status, too_many_requests_with_retry_after) {
  struct tn_error e;
  cr_assert_eq(decode(429, too_many, &e), TN_ETHROTTLED);
  cr_assert_str_eq(e.reason, "TooManyRequests");
  cr_assert_eq(e.retry_after_s, 3.0);
  cr_assert_eq(e.n_causes, 1);
  cr_assert_str_eq(e.causes[0].field, "");
  cr_assert_str_eq(e.causes[0].message, "The apiserver is shutting down");
}

Test(status, forbidden) {
  struct tn_error e;
  cr_assert_eq(decode(403, forbidden, &e), TN_EFORBIDDEN);
  cr_assert(strstr(e.message, "User \"jane\" cannot list resource \"secrets\"") != NULL);
  cr_assert_eq(decode(401,
                      "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
                      "\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}",
                      &e),
               TN_EFORBIDDEN);
  cr_assert_str_eq(e.message, "Unauthorized");
}

Test(status, code_from_the_status_when_no_http_status) {
  /* A watch ERROR event carries a Status without an HTTP answer around it. */
  struct tn_error e;
  cr_assert_eq(decode(0, watch_error_event_status, &e), TN_EGONE);
  cr_assert_eq(e.http_status, 410);
  cr_assert_str_eq(e.message, "too old resource version: 1 (3021)");
}

Test(status, non_json_body) {
  struct tn_error e;
  const char *html = "<html><head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body></html>\n";
  cr_assert_eq(decode(502, html, &e), TN_EUNAVAILABLE);
  cr_assert_eq(e.http_status, 502);
  cr_assert_str_eq(e.reason, "");
  cr_assert(strstr(e.message, "HTTP 502") != NULL, "%s", e.message);
  cr_assert(strstr(e.message, "502 Bad Gateway") != NULL, "the body is quoted: %s", e.message);
  cr_assert(strchr(e.message, '\r') == NULL && strchr(e.message, '\n') == NULL, "one line: %s", e.message);

  /* JSON that is not a Status (e.g. a webhook proxy's) is quoted too. */
  cr_assert_eq(decode(404, "{\"error\":\"no route\"}", &e), TN_ENOTFOUND);
  cr_assert(strstr(e.message, "could not find the requested resource") != NULL, "%s", e.message);
  cr_assert(strstr(e.message, "no route") != NULL, "%s", e.message);

  /* A huge body is cut short. */
  char *big = malloc(100000);
  memset(big, 'x', 99999);
  big[99999] = '\0';
  cr_assert_eq(decode(500, big, &e), TN_EUNAVAILABLE);
  cr_assert(strlen(e.message) < 400, "%zu", strlen(e.message));
  cr_assert(strstr(e.message, "...") != NULL);
  free(big);
}

Test(status, empty_body) {
  struct tn_error e;
  cr_assert_eq(decode(503, "", &e), TN_EUNAVAILABLE);
  cr_assert(strstr(e.message, "HTTP 503") && strstr(e.message, "empty body"), "%s", e.message);
  cr_assert_eq(decode(503, NULL, &e), TN_EUNAVAILABLE);
  cr_assert_eq(decode(405, "", &e), TN_EAPI);
  cr_assert_eq(decode(400, "", &e), TN_EINVALID);
  cr_assert_eq(decode(418, "", &e), TN_EAPI);
  cr_assert_eq(tn_kube_status_error(404, "", 0, NULL), TN_ENOTFOUND, "err may be NULL");
}

Test(status, causes_are_capped) {
  char body[8192] = "{\"kind\":\"Status\",\"reason\":\"Invalid\",\"code\":422,\"details\":{\"causes\":[";
  for (int i = 0; i < 20; i++)
    snprintf(body + strlen(body), sizeof body - strlen(body), "%s{\"field\":\"f%d\",\"message\":\"m\"}",
             i ? "," : "", i);
  strcat(body, "]}}");
  struct tn_error e;
  cr_assert_eq(decode(422, body, &e), TN_EINVALID);
  cr_assert_eq(e.n_causes, TN_ERROR_MAX_CAUSES);
  cr_assert_str_eq(e.causes[7].field, "f7");
  cr_assert(strstr(e.message, "HTTP 422") != NULL, "no message: a generic one: %s", e.message);
}

/* ---- paths -------------------------------------------------------------------------------------- */

static const struct tn_gvr configmaps = {"", "v1", "configmaps", true};
static const struct tn_gvr namespaces = {"", "v1", "namespaces", false};
static const struct tn_gvr tenants = {"tenancy.dev", "v1alpha1", "tenants", false};
static const struct tn_gvr leases = {"coordination.k8s.io", "v1", "leases", true};

static void path_is(const struct tn_gvr *g, const char *ns, const char *name, const char *sub,
                    const char *want) {
  char *p = tn_kube_path(g, ns, name, sub);
  cr_assert_not_null(p, "expected %s", want);
  cr_assert_str_eq(p, want);
  free(p);
}

Test(path, shapes) {
  path_is(&configmaps, "default", NULL, NULL, "/api/v1/namespaces/default/configmaps");
  path_is(&configmaps, "default", "c1", NULL, "/api/v1/namespaces/default/configmaps/c1");
  path_is(&configmaps, NULL, NULL, NULL, "/api/v1/configmaps");
  path_is(&namespaces, "ignored", "ns1", "status", "/api/v1/namespaces/ns1/status");
  path_is(&tenants, NULL, "acme", "status", "/apis/tenancy.dev/v1alpha1/tenants/acme/status");
  path_is(&leases, "kube-system", "op", NULL,
          "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/op");
}

Test(path, segments_are_escaped) {
  path_is(&configmaps, "a/b", "x/../../secrets", NULL,
          "/api/v1/namespaces/a%2Fb/configmaps/x%2F..%2F..%2Fsecrets");
  path_is(&configmaps, "ns", "a b?c=d&e#f%", NULL,
          "/api/v1/namespaces/ns/configmaps/a%20b%3Fc%3Dd%26e%23f%25");
  path_is(&configmaps, "ns", "caf\xc3\xa9", NULL, "/api/v1/namespaces/ns/configmaps/caf%C3%A9");
}

Test(path, unusable_segments_are_refused) {
  cr_assert_null(tn_kube_path(&configmaps, "ns", "", NULL));
  cr_assert_null(tn_kube_path(&configmaps, "ns", ".", NULL));
  cr_assert_null(tn_kube_path(&configmaps, "ns", "..", NULL));
  cr_assert_null(tn_kube_path(&configmaps, "..", "x", NULL));
  cr_assert_null(tn_kube_path(&configmaps, "ns", NULL, "status"), "a subresource needs a name");
  struct tn_gvr nov = {"", NULL, "configmaps", true};
  cr_assert_null(tn_kube_path(&nov, "ns", "x", NULL));
}

/* ---- queries ------------------------------------------------------------------------------------ */

Test(query, pairs_are_joined_and_escaped) {
  struct tn_buf q;
  tn_buf_init(&q, 4096);
  cr_assert_eq(tn_kube_query_add(&q, "labelSelector", "tenancy.dev/tenant=acme,env in (prod,staging)"), 0);
  cr_assert_eq(tn_kube_query_add(&q, "limit", "2"), 0);
  cr_assert_eq(tn_kube_query_add(&q, "continue", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MX0="), 0);
  cr_assert_eq(tn_kube_query_add(&q, "fieldSelector", "metadata.name!=a&b"), 0);
  cr_assert_str_eq(tn_buf_str(&q),
                   "labelSelector=tenancy.dev%2Ftenant%3Dacme%2Cenv%20in%20%28prod%2Cstaging%29"
                   "&limit=2&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MX0%3D"
                   "&fieldSelector=metadata.name%21%3Da%26b");
  cr_assert_eq(tn_kube_query_add(&q, "", "x"), -EINVAL);
  cr_assert_eq(tn_kube_query_add(&q, "k", NULL), -EINVAL);
  tn_buf_cleanup(&q);

  tn_buf_init(&q, 16);
  cr_assert_eq(tn_kube_query_add(&q, "resourceVersion", "123456789012345"), TN_ERR_TOOBIG, "the cap holds");
  tn_buf_cleanup(&q);
}

/* ---- retry policy ------------------------------------------------------------------------------- */

static bool retry(const char *method, const char *ctype, long status, bool sent, double ra, double *delay) {
  struct tn_kube_request r = {.method = method, .path = "/api/v1/x", .content_type = ctype};
  return tn_kube_should_retry(&r, 1, status, sent, ra, delay);
}

Test(retry, which_answers_are_retried) {
  double d;
  /* 429: every verb, honouring the server's delay. */
  cr_assert(retry("POST", NULL, 429, true, 3, &d));
  cr_assert_eq(d, 3.0);
  cr_assert(retry("PATCH", "application/merge-patch+json", 429, true, 0, &d));
  cr_assert_eq(d, 0.25);
  /* 5xx: idempotent verbs and apply only. */
  cr_assert(retry("GET", NULL, 503, true, 0, &d));
  cr_assert(retry("PUT", NULL, 500, true, 0, &d));
  cr_assert(retry("DELETE", NULL, 504, true, 0, &d));
  cr_assert(retry("PATCH", "application/apply-patch+yaml", 500, true, 0, &d));
  cr_assert(!retry("POST", NULL, 503, true, 0, &d));
  cr_assert(!retry("PATCH", "application/merge-patch+json", 503, true, 0, &d));
  /* Connection failures: idempotent verbs always, others only when nothing was sent. */
  cr_assert(retry("GET", NULL, 0, true, 0, &d));
  cr_assert(retry("POST", NULL, 0, false, 0, &d));
  cr_assert(!retry("POST", NULL, 0, true, 0, &d));
  cr_assert(!retry("PATCH", "application/merge-patch+json", 0, true, 0, &d));
  /* Client errors are final. */
  cr_assert(!retry("GET", NULL, 404, true, 0, &d));
  cr_assert(!retry("PUT", NULL, 409, true, 0, &d));
  cr_assert(!retry("GET", NULL, 403, true, 0, &d));
  cr_assert(!retry("GET", NULL, 410, true, 0, &d));
}

Test(retry, backoff_attempts_and_watches) {
  struct tn_kube_request r = {.method = "GET", .path = "/api"};
  double d, want[] = {0.25, 0.5, 1.0, 2.0};
  for (int a = 1; a < TN_KUBE_MAX_ATTEMPTS; a++) {
    cr_assert(tn_kube_should_retry(&r, a, 503, true, 0, &d), "attempt %d", a);
    cr_assert_eq(d, want[a - 1], "attempt %d: %f", a, d);
  }
  cr_assert(!tn_kube_should_retry(&r, TN_KUBE_MAX_ATTEMPTS, 503, true, 0, &d), "at most 5 attempts");
  cr_assert(tn_kube_should_retry(&r, 1, 429, true, 3600, &d));
  cr_assert_eq(d, 60.0, "a very long Retry-After is capped");
  r.no_retry = true;
  cr_assert(!tn_kube_should_retry(&r, 1, 429, true, 1, &d), "watches are never retried");
  cr_assert(!tn_kube_should_retry(&r, 1, 0, false, 0, &d));
}
