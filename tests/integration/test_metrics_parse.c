/* test_metrics_parse.c - /metrics as Prometheus itself parses it: a registry with every
 * metric type and tricky label values is served over HTTP, fetched with libcurl, and fed to
 * hack/promcheck.sh (github.com/prometheus/common/expfmt); the parsed samples must be exactly
 * what was recorded. Needs the Go toolchain, not a cluster. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/httpserver.h"
#include "runtime/metrics.h"
#include "tn_test.h"

/* The repository root: TENANCY_ROOT (hack/test.sh exports it), else from this file's path
 * (CMake compiles with absolute paths). */
static const char *repo_root(void) {
  static char root[PATH_MAX];
  const char *env = getenv("TENANCY_ROOT");
  if (env && *env)
    return env;
  const char *suffix = "/tests/integration/test_metrics_parse.c";
  size_t n = strlen(__FILE__), s = strlen(suffix);
  cr_assert(__FILE__[0] == '/' && n > s && strcmp(__FILE__ + n - s, suffix) == 0 && n - s < sizeof root,
            "set TENANCY_ROOT to the repository root");
  memcpy(root, __FILE__, n - s);
  root[n - s] = '\0';
  return root;
}

static size_t collect(char *p, size_t size, size_t n, void *ud) {
  return tn_buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

/* GET url into body; returns the status. */
static long http_get(const char *url, struct tn_buf *body, char *ctype, size_t ctype_size) {
  CURL *c = curl_easy_init();
  cr_assert_not_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  CURLcode rc = curl_easy_perform(c);
  cr_assert_eq(rc, CURLE_OK, "GET %s: %s", url, curl_easy_strerror(rc));
  long status = 0;
  char *t = NULL;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &t);
  snprintf(ctype, ctype_size, "%s", t ? t : "");
  curl_easy_cleanup(c);
  return status;
}

static double fixed(void *ud) { return *(double *)ud; }

Test(metrics_parse, every_type_and_tricky_labels_parse_exactly) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  struct tn_metrics *m = tn_metrics_new();

  /* 1. a counter without labels */
  struct tn_metric *plain = tn_metrics_register(m, TN_COUNTER, "tn_plain_total", "Plain.", NULL, NULL, 0);
  tn_series_add(tn_metric_with(plain, NULL), 3);
  /* 2. a counter whose help and label values need escaping (label names in sorted order) */
  struct tn_metric *tricky =
      tn_metrics_register(m, TN_COUNTER, "tn_tricky_total", "Help with a \\ backslash\nand a newline.",
                          (const char *const[]){"a_path", "b_msg", NULL}, NULL, 0);
  tn_series_inc(tn_metric_with(tricky, (const char *const[]){"C:\\dir\\", "say \"hi\"\nbye", NULL}));
  tn_series_add(tn_metric_with(tricky, (const char *const[]){"", "ünïcödé {x=\"1\"} # , = }", NULL}), 2);
  tn_series_add(tn_metric_with(tricky, (const char *const[]){"\\n is not a newline", "\"", NULL}), 4);
  /* 3. a gauge with special and extreme values */
  struct tn_metric *g =
      tn_metrics_register(m, TN_GAUGE, "tn_level", "Level.", (const char *const[]){"k", NULL}, NULL, 0);
  const struct {
    const char *k;
    double v;
    const char *want;
  } gv[] = {{"pinf", INFINITY, "+Inf"},
            {"ninf", -INFINITY, "-Inf"},
            {"nan", NAN, "NaN"},
            {"tiny", 5e-324, "5e-324"},
            {"huge", 1.7976931348623157e308, "1.7976931348623157e+308"},
            {"neg", -0.1, "-0.1"},
            {"third", 1.0 / 3.0, "0.3333333333333333"}};
  for (size_t i = 0; i < sizeof gv / sizeof gv[0]; i++)
    tn_series_set(tn_metric_with(g, (const char *const[]){gv[i].k, NULL}), gv[i].v);
  /* 4. a histogram with default buckets and two series */
  struct tn_metric *lat = tn_metrics_register(m, TN_HISTOGRAM, "tn_latency_seconds", "Latency.",
                                              (const char *const[]){"verb", NULL}, NULL, 0);
  struct tn_series *get = tn_metric_with(lat, (const char *const[]){"GET", NULL});
  struct tn_series *put = tn_metric_with(lat, (const char *const[]){"PUT", NULL});
  tn_series_observe(get, 0.003);
  tn_series_observe(get, 0.2);
  tn_series_observe(get, 30);
  tn_series_observe(put, 1);
  /* 5. a histogram with its own buckets, no labels */
  const double sizes[] = {10, 100, 1000};
  struct tn_metric *sz = tn_metrics_register(m, TN_HISTOGRAM, "tn_size_bytes", "Sizes.", NULL, sizes, 3);
  tn_series_observe(tn_metric_with(sz, NULL), 50);
  tn_series_observe(tn_metric_with(sz, NULL), 5000);
  /* 6. gauges computed at scrape time */
  double answer = 42;
  cr_assert_eq(tn_metrics_register_gauge_func(m, "tn_answer", "Answer.", fixed, &answer), 0);
  cr_assert_eq(
      tn_metrics_register_gauge_func(m, "process_resident_memory_bytes", "RSS.", tn_process_rss_bytes, NULL),
      0);
  /* 7. a labelled family without series is not exposed */
  cr_assert_not_null(tn_metrics_register(m, TN_COUNTER, "tn_unused_total", "Unused.",
                                         (const char *const[]){"x", NULL}, NULL, 0));

  const int want_families = 7;
  const int want_samples = 1 + 3 + 7 + 2 * (12 + 2) + (4 + 2) + 1 + 1;

  struct tn_httpserver *srv = NULL;
  struct tn_error err;
  tn_error_clear(&err);
  cr_assert_eq(tn_httpserver_new("127.0.0.1:0", NULL, &srv, &err), 0, "%s", err.message);
  cr_assert_eq(tn_httpserver_serve_metrics(srv, m), 0);
  cr_assert_eq(tn_httpserver_start(srv, &err), 0, "%s", err.message);
  char url[128], ctype[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", tn_httpserver_port(srv));
  struct tn_buf body;
  tn_buf_init(&body, 16u << 20);
  cr_assert_eq(http_get(url, &body, ctype, sizeof ctype), 200);
  cr_assert_str_eq(ctype, "text/plain; version=0.0.4; charset=utf-8");
  tn_httpserver_free(srv);

  char path[128];
  snprintf(path, sizeof path, "/tmp/tn-metrics-parse-%d.txt", (int)getpid());
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fwrite(body.data, 1, body.len, f);
  fclose(f);
  char *out = NULL;
  int rc = tn_test_sh(&out, "'%s/hack/promcheck.sh' -dump < '%s'", repo_root(), path);
  unlink(path);
  cr_assert_eq(rc, 0, "the Prometheus text parser refused /metrics:\n%s\n--- exposition ---\n%s", out,
               tn_buf_str(&body));
  char want[256];
  snprintf(want, sizeof want, "families=%d samples=%d\n", want_families, want_samples);
  cr_assert_not_null(strstr(out, want), "expected %s in:\n%s", want, out);

  /* The parser read back exactly what was recorded (label values Go-quoted by promcheck). */
  const char *lines[] = {
      "tn_plain_total 3\n",
      "tn_tricky_total{a_path=\"C:\\\\dir\\\\\",b_msg=\"say \\\"hi\\\"\\nbye\"} 1\n",
      "tn_tricky_total{a_path=\"\",b_msg=\"ünïcödé {x=\\\"1\\\"} # , = }\"} 2\n",
      "tn_tricky_total{a_path=\"\\\\n is not a newline\",b_msg=\"\\\"\"} 4\n",
      "tn_latency_seconds_bucket{verb=\"GET\",le=\"0.005\"} 1\n",
      "tn_latency_seconds_bucket{verb=\"GET\",le=\"0.25\"} 2\n",
      "tn_latency_seconds_bucket{verb=\"GET\",le=\"10\"} 2\n",
      "tn_latency_seconds_bucket{verb=\"GET\",le=\"+Inf\"} 3\n",
      "tn_latency_seconds_sum{verb=\"GET\"} 30.203\n",
      "tn_latency_seconds_count{verb=\"GET\"} 3\n",
      "tn_latency_seconds_bucket{verb=\"PUT\",le=\"0.5\"} 0\n",
      "tn_latency_seconds_bucket{verb=\"PUT\",le=\"1\"} 1\n",
      "tn_size_bytes_bucket{le=\"100\"} 1\n",
      "tn_size_bytes_bucket{le=\"+Inf\"} 2\n",
      "tn_size_bytes_sum 5050\n",
      "tn_answer 42\n",
      NULL,
  };
  for (int i = 0; lines[i]; i++)
    cr_assert_not_null(strstr(out, lines[i]), "the parser did not see %s in:\n%s", lines[i], out);
  for (size_t i = 0; i < sizeof gv / sizeof gv[0]; i++) {
    snprintf(want, sizeof want, "tn_level{k=\"%s\"} %s\n", gv[i].k, gv[i].want);
    cr_assert_not_null(strstr(out, want), "the parser did not see %s in:\n%s", want, out);
  }
  cr_assert_null(strstr(out, "tn_unused_total"));
  cr_assert_not_null(strstr(out, "process_resident_memory_bytes "));
  free(out);
  tn_buf_cleanup(&body);
  tn_metrics_free(m);
  curl_global_cleanup();
}

/* A broken exposition is refused with the parser's message and a non-zero exit: the check
 * above could not pass by accident. */
Test(metrics_parse, promcheck_refuses_broken_text) {
  char path[128];
  snprintf(path, sizeof path, "/tmp/tn-metrics-broken-%d.txt", (int)getpid());
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs("# TYPE x counter\nx{a=\"unterminated} 1\n", f);
  fclose(f);
  char *out = NULL;
  int rc = tn_test_sh(&out, "'%s/hack/promcheck.sh' < '%s'", repo_root(), path);
  unlink(path);
  cr_assert_neq(rc, 0, "%s", out);
  cr_assert_not_null(strstr(out, "parse error"), "%s", out);
  free(out);
}
