/* test_metrics_auth.c - --metrics-secure's decisions without an API server: bearer token parsing,
 * the per-token cache of allowed and refused decisions, failures never cached, the review rate limit,
 * and the self-signed certificate. (tests/integration/test_observability.c runs the real reviews.) */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/metrics_auth.h"

struct fake {
  int calls;
  char last[64];
};

static int review(void *ud, const char *token, char *who, size_t n) {
  struct fake *f = ud;
  f->calls++;
  snprintf(f->last, sizeof f->last, "%s", token);
  snprintf(who, n, "user-of-%s", token);
  if (strcmp(token, "good") == 0)
    return 200;
  if (strcmp(token, "stranger") == 0)
    return 403;
  if (strcmp(token, "broken") == 0)
    return -EIO; /* the API server could not be asked */
  return 401;
}

Test(metrics_auth, bearer_tokens_are_required_and_decisions_cached) {
  struct fake f = {0};
  struct tn_metrics_auth *a = NULL;
  cr_assert_eq(tn_metrics_auth_new_with(review, &f, &a), 0);
  cr_assert_eq(tn_metrics_auth_check(a, NULL), 401);
  cr_assert_eq(tn_metrics_auth_check(a, "Basic dXNlcjpwYXNz"), 401);
  cr_assert_eq(tn_metrics_auth_check(a, "Bearer "), 401);
  cr_assert_eq(f.calls, 0, "no review without a bearer token");
  cr_assert_eq(tn_metrics_auth_check(a, "Bearer good"), 200);
  cr_assert_str_eq(f.last, "good");
  cr_assert_eq(tn_metrics_auth_check(a, "bearer  good "), 200, "scheme case-insensitive, blanks trimmed");
  cr_assert_eq(f.calls, 1, "the allowed decision is cached");
  cr_assert_eq(tn_metrics_auth_check(a, "Bearer stranger"), 403);
  cr_assert_eq(tn_metrics_auth_check(a, "Bearer stranger"), 403);
  cr_assert_eq(tn_metrics_auth_check(a, "Bearer nobody"), 401);
  cr_assert_eq(tn_metrics_auth_check(a, "Bearer nobody"), 401);
  cr_assert_eq(f.calls, 3, "refusals are cached too");
  cr_assert_eq(tn_metrics_auth_check(a, "Bearer broken"), -EIO);
  cr_assert_eq(tn_metrics_auth_check(a, "Bearer broken"), -EIO);
  cr_assert_eq(f.calls, 5, "a failed review is never cached");
  tn_metrics_auth_free(a);
}

Test(metrics_auth, reviews_are_rate_limited) {
  struct fake f = {0};
  struct tn_metrics_auth *a = NULL;
  cr_assert_eq(tn_metrics_auth_new_with(review, &f, &a), 0);
  int limited = 0;
  char h[64];
  for (int i = 0; i < 50; i++) {
    snprintf(h, sizeof h, "Bearer junk-%d", i);
    if (tn_metrics_auth_check(a, h) == 429)
      limited++;
  }
  cr_assert_leq(f.calls, (int)TN_METRICS_AUTH_REVIEWS_PER_S + 2, "%d reviews for 50 junk tokens at once",
                f.calls);
  cr_assert_geq(limited, 50 - (int)TN_METRICS_AUTH_REVIEWS_PER_S - 2);
  /* a cached decision is still answered while the limiter is empty */
  tn_metrics_auth_free(a);
  f.calls = 0;
  cr_assert_eq(tn_metrics_auth_new_with(review, &f, &a), 0);
  cr_assert_eq(tn_metrics_auth_check(a, "Bearer good"), 200);
  for (int i = 0; i < 30; i++) {
    snprintf(h, sizeof h, "Bearer junk-%d", i);
    tn_metrics_auth_check(a, h);
  }
  cr_assert_eq(tn_metrics_auth_check(a, "Bearer good"), 200);
  tn_metrics_auth_free(a);
}

Test(metrics_auth, self_signed_certificate_files_are_private) {
  char *dir = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_metrics_self_signed(&dir, &err), 0, "%s", err.message);
  char path[700], cmd[800];
  struct stat st;
  snprintf(path, sizeof path, "%s/tls.key", dir);
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600);
  cr_assert_eq(stat(dir, &st), 0);
  cr_assert_eq(st.st_mode & 0077, 0, "the directory is private");
  snprintf(cmd, sizeof cmd,
           "openssl x509 -in '%s/tls.crt' -noout -ext subjectAltName | grep -q 'IP Address:127.0.0.1'", dir);
  cr_assert_eq(system(cmd), 0, "no 127.0.0.1 SAN");
  snprintf(cmd, sizeof cmd,
           "test \"$(openssl x509 -in '%s/tls.crt' -noout -pubkey | openssl sha256)\" = "
           "\"$(openssl pkey -in '%s/tls.key' -pubout | openssl sha256)\"",
           dir, dir);
  cr_assert_eq(system(cmd), 0, "the key does not match the certificate");
  char *copy = strdup(dir);
  tn_metrics_self_signed_remove(dir);
  cr_assert_neq(stat(copy, &st), 0, "the directory is removed");
  free(copy);
}

/* ---- the metrics flags ---- */

#include "runtime/options.h"

static char *no_env(const char *name) {
  (void)name;
  return NULL;
}

static int parse(struct tn_options *o, struct tn_error *err, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  return tn_options_parse(argc, argv, no_env, o, err);
}

Test(metrics_auth, metrics_flags_parse_and_refuse_half_a_certificate) {
  struct tn_options o;
  struct tn_error err = {0};
  char *a1[] = {"op", NULL};
  cr_assert_eq(parse(&o, &err, 1, a1), 0, "%s", err.message);
  cr_assert(!o.metrics_secure && !o.metrics_per_tenant, "both off by default");
  tn_options_cleanup(&o);
  char *a2[] = {"op",
                "--metrics-secure",
                "--metrics-per-tenant=true",
                "--metrics-cert-file=/c",
                "--metrics-key-file",
                "/k",
                NULL};
  cr_assert_eq(parse(&o, &err, 6, a2), 0, "%s", err.message);
  cr_assert(o.metrics_secure && o.metrics_per_tenant);
  cr_assert_str_eq(o.metrics_cert_file, "/c");
  cr_assert_str_eq(o.metrics_key_file, "/k");
  tn_options_cleanup(&o);
  char *a3[] = {"op", "--metrics-secure", "--metrics-cert-file=/c", NULL};
  cr_assert_eq(parse(&o, &err, 3, a3), TN_ECONFIG);
  cr_assert_not_null(strstr(err.message, "--metrics-key-file"), "%s", err.message);
  tn_options_cleanup(&o);
  char *a4[] = {"op", "--metrics-cert-file=/c", "--metrics-key-file=/k", NULL};
  cr_assert_eq(parse(&o, &err, 3, a4), TN_ECONFIG);
  cr_assert_not_null(strstr(err.message, "--metrics-secure"), "%s", err.message);
  tn_options_cleanup(&o);
  char *a5[] = {"op", "--metrics-secure=maybe", NULL};
  cr_assert_eq(parse(&o, &err, 2, a5), TN_ECONFIG);
  tn_options_cleanup(&o);
}
