/* test_metrics.c - the metrics registry: series updates, registration rules and the text
 * exposition format, checked line by line. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/metrics.h"

/* Exposition of the whole registry, as a malloc'd string. */
static char *expose(struct tn_metrics *m) {
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(tn_metrics_write(m, &b), 0);
  return tn_buf_take(&b);
}

/* Asserts that text is exactly the given lines (NULL-terminated), each followed by '\n'. */
static void assert_lines(const char *text, const char *const *lines) {
  const char *p = text;
  size_t i = 0;
  for (; lines[i]; i++) {
    const char *nl = strchr(p, '\n');
    cr_assert_not_null(nl, "line %zu missing: expected '%s'; whole text:\n%s", i + 1, lines[i], text);
    size_t len = (size_t)(nl - p);
    cr_assert(len == strlen(lines[i]) && memcmp(p, lines[i], len) == 0,
              "line %zu is '%.*s', expected '%s'; whole text:\n%s", i + 1, (int)len, p, lines[i], text);
    p = nl + 1;
  }
  cr_assert_str_eq(p, "", "unexpected trailing text after %zu lines: '%s'", i, p);
}

Test(metrics, counter_without_labels_is_exposed_from_the_start) {
  struct tn_metrics *m = tn_metrics_new();
  struct tn_metric *f = tn_metrics_register(m, TN_COUNTER, "tn_things_total", "Things done.", NULL, NULL, 0);
  cr_assert_not_null(f);
  char *t = expose(m);
  assert_lines(t, (const char *const[]){"# HELP tn_things_total Things done.",
                                        "# TYPE tn_things_total counter", "tn_things_total 0", NULL});
  free(t);
  struct tn_series *s = tn_metric_with(f, NULL);
  cr_assert_not_null(s);
  tn_series_inc(s);
  tn_series_add(s, 2.5);
  tn_series_add(s, -10); /* a counter never goes down */
  tn_series_add(s, NAN);
  cr_assert_eq(tn_series_value(s), 3.5);
  t = expose(m);
  assert_lines(t, (const char *const[]){"# HELP tn_things_total Things done.",
                                        "# TYPE tn_things_total counter", "tn_things_total 3.5", NULL});
  free(t);
  tn_metrics_free(m);
}

Test(metrics, gauges_set_add_and_special_values) {
  struct tn_metrics *m = tn_metrics_new();
  const char *labels[] = {"queue", NULL};
  struct tn_metric *f = tn_metrics_register(m, TN_GAUGE, "tn_depth", "Depth.", labels, NULL, 0);
  cr_assert_not_null(f);
  char *t = expose(m);
  cr_assert_str_eq(t, "", "a labelled family with no series exposes nothing");
  free(t);
  struct tn_series *a = tn_metric_with(f, (const char *const[]){"a", NULL});
  struct tn_series *b = tn_metric_with(f, (const char *const[]){"b", NULL});
  struct tn_series *c = tn_metric_with(f, (const char *const[]){"c", NULL});
  struct tn_series *d = tn_metric_with(f, (const char *const[]){"d", NULL});
  struct tn_series *e = tn_metric_with(f, (const char *const[]){"e", NULL});
  cr_assert(a && b && c && d && e);
  cr_assert_eq(tn_metric_with(f, (const char *const[]){"a", NULL}), a,
               "the same values give the same series");
  tn_series_set(a, 10);
  tn_series_add(a, -3);
  tn_series_set(b, 0.1);
  tn_series_set(c, INFINITY);
  tn_series_set(d, -INFINITY);
  tn_series_set(e, NAN);
  cr_assert_eq(tn_series_value(a), 7);
  cr_assert(isnan(tn_series_value(e)));
  t = expose(m);
  assert_lines(t, (const char *const[]){"# HELP tn_depth Depth.", "# TYPE tn_depth gauge",
                                        "tn_depth{queue=\"a\"} 7", "tn_depth{queue=\"b\"} 0.1",
                                        "tn_depth{queue=\"c\"} +Inf", "tn_depth{queue=\"d\"} -Inf",
                                        "tn_depth{queue=\"e\"} NaN", NULL});
  free(t);
  tn_metrics_free(m);
}

Test(metrics, floats_are_exact_and_short) {
  struct tn_metrics *m = tn_metrics_new();
  struct tn_metric *f = tn_metrics_register(m, TN_GAUGE, "g", "", NULL, NULL, 0);
  struct tn_series *s = tn_metric_with(f, NULL);
  const double values[] = {1.0 / 3.0, 1e21, 123456789012.0, 5e-324, -0.25, 0.1 + 0.2};
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    tn_series_set(s, values[i]);
    char *t = expose(m);
    const char *last = strstr(t, "\ng ");
    cr_assert_not_null(last, "%s", t);
    char *end;
    double back = strtod(last + 3, &end);
    cr_assert_eq(back, values[i], "'%s' does not read back as %.17g", last + 3, values[i]);
    cr_assert_str_eq(end, "\n");
    cr_assert_leq(strlen(last + 3), 24);
    free(t);
  }
  tn_series_set(s, 0.1);
  char *t = expose(m);
  cr_assert_str_eq(t, "# HELP g \n# TYPE g gauge\ng 0.1\n",
                   "the shortest exact form, not 0.10000000000000001");
  free(t);
  tn_metrics_free(m);
}

Test(metrics, label_values_and_help_are_escaped) {
  struct tn_metrics *m = tn_metrics_new();
  const char *labels[] = {"path", "msg", NULL};
  struct tn_metric *f = tn_metrics_register(
      m, TN_COUNTER, "tn_escapes_total", "Help with \\ backslash,\nnewline and \"quotes\".", labels, NULL, 0);
  cr_assert_not_null(f);
  tn_series_inc(tn_metric_with(f, (const char *const[]){"C:\\dir\\", "say \"hi\"\nbye", NULL}));
  tn_series_inc(tn_metric_with(f, (const char *const[]){"", "ünïcödé {x=1} # ,", NULL}));
  char *t = expose(m);
  assert_lines(
      t, (const char *const[]){"# HELP tn_escapes_total Help with \\\\ backslash,\\nnewline and \"quotes\".",
                               "# TYPE tn_escapes_total counter",
                               "tn_escapes_total{path=\"C:\\\\dir\\\\\",msg=\"say \\\"hi\\\"\\nbye\"} 1",
                               "tn_escapes_total{path=\"\",msg=\"ünïcödé {x=1} # ,\"} 1", NULL});
  free(t);
  tn_metrics_free(m);
}

Test(metrics, histogram_buckets_are_cumulative_with_sum_and_count) {
  struct tn_metrics *m = tn_metrics_new();
  const char *labels[] = {"verb", NULL};
  const double buckets[] = {0.1, 0.5, 1};
  struct tn_metric *f =
      tn_metrics_register(m, TN_HISTOGRAM, "tn_latency_seconds", "Latency.", labels, buckets, 3);
  cr_assert_not_null(f);
  struct tn_series *s = tn_metric_with(f, (const char *const[]){"GET", NULL});
  tn_series_observe(s, 0.05);
  tn_series_observe(s, 0.1); /* upper bounds are inclusive */
  tn_series_observe(s, 0.3);
  tn_series_observe(s, 2);
  tn_series_observe(s, 0.75);
  tn_series_add(s, 5); /* not for histograms: ignored */
  tn_series_set(s, 5);
  cr_assert_eq(tn_series_value(s), 5);
  char *t = expose(m);
  assert_lines(t, (const char *const[]){"# HELP tn_latency_seconds Latency.",
                                        "# TYPE tn_latency_seconds histogram",
                                        "tn_latency_seconds_bucket{verb=\"GET\",le=\"0.1\"} 2",
                                        "tn_latency_seconds_bucket{verb=\"GET\",le=\"0.5\"} 3",
                                        "tn_latency_seconds_bucket{verb=\"GET\",le=\"1\"} 4",
                                        "tn_latency_seconds_bucket{verb=\"GET\",le=\"+Inf\"} 5",
                                        "tn_latency_seconds_sum{verb=\"GET\"} 3.2",
                                        "tn_latency_seconds_count{verb=\"GET\"} 5", NULL});
  free(t);
  tn_metrics_free(m);
}

Test(metrics, histogram_default_buckets_and_no_labels) {
  struct tn_metrics *m = tn_metrics_new();
  struct tn_metric *f = tn_metrics_register(m, TN_HISTOGRAM, "h", "H.", NULL, NULL, 0);
  cr_assert_not_null(f);
  tn_series_observe(tn_metric_with(f, NULL), 0.007);
  char *t = expose(m);
  assert_lines(t, (const char *const[]){
                      "# HELP h H.", "# TYPE h histogram", "h_bucket{le=\"0.005\"} 0",
                      "h_bucket{le=\"0.01\"} 1", "h_bucket{le=\"0.025\"} 1", "h_bucket{le=\"0.05\"} 1",
                      "h_bucket{le=\"0.1\"} 1", "h_bucket{le=\"0.25\"} 1", "h_bucket{le=\"0.5\"} 1",
                      "h_bucket{le=\"1\"} 1", "h_bucket{le=\"2.5\"} 1", "h_bucket{le=\"5\"} 1",
                      "h_bucket{le=\"10\"} 1", "h_bucket{le=\"+Inf\"} 1", "h_sum 0.007", "h_count 1", NULL});
  free(t);
  tn_metrics_free(m);
}

Test(metrics, registration_is_idempotent_and_detects_clashes) {
  struct tn_metrics *m = tn_metrics_new();
  const char *ab[] = {"a", "b", NULL};
  const char *ba[] = {"b", "a", NULL};
  const char *a[] = {"a", NULL};
  const double b1[] = {1, 2}, b2[] = {1, 3}, b1inf[] = {1, 2, INFINITY};
  struct tn_metric *c = tn_metrics_register(m, TN_COUNTER, "c_total", "C.", ab, NULL, 0);
  cr_assert_not_null(c);
  cr_assert_eq(tn_metrics_register(m, TN_COUNTER, "c_total", "other help", ab, NULL, 0), c);
  cr_assert_null(tn_metrics_register(m, TN_GAUGE, "c_total", "C.", ab, NULL, 0), "type clash");
  cr_assert_null(tn_metrics_register(m, TN_COUNTER, "c_total", "C.", ba, NULL, 0), "label order clash");
  cr_assert_null(tn_metrics_register(m, TN_COUNTER, "c_total", "C.", a, NULL, 0), "label count clash");
  cr_assert_null(tn_metrics_register(m, TN_COUNTER, "c_total", "C.", NULL, NULL, 0), "no labels clash");

  struct tn_metric *h = tn_metrics_register(m, TN_HISTOGRAM, "h_seconds", "H.", NULL, b1, 2);
  cr_assert_not_null(h);
  cr_assert_eq(tn_metrics_register(m, TN_HISTOGRAM, "h_seconds", "H.", NULL, b1inf, 3), h, "+Inf is implied");
  cr_assert_null(tn_metrics_register(m, TN_HISTOGRAM, "h_seconds", "H.", NULL, b2, 2), "bucket clash");
  cr_assert_null(tn_metrics_register(m, TN_HISTOGRAM, "h_seconds", "H.", NULL, NULL, 0),
                 "default bucket clash");
  cr_assert_null(tn_metrics_register(m, TN_GAUGE, "h_seconds_count", "", NULL, NULL, 0),
                 "histogram sample name");
  cr_assert_null(tn_metrics_register(m, TN_COUNTER, "h_seconds_bucket", "", NULL, NULL, 0));
  cr_assert_not_null(tn_metrics_register(m, TN_GAUGE, "h_seconds_total", "", NULL, NULL, 0));
  cr_assert_not_null(tn_metrics_register(m, TN_GAUGE, "x_sum", "", NULL, NULL, 0));
  cr_assert_null(tn_metrics_register(m, TN_HISTOGRAM, "x", "", NULL, NULL, 0), "x_sum already exists");

  cr_assert_eq(tn_metrics_register_gauge_func(m, "rss_bytes", "RSS.", tn_process_rss_bytes, NULL), 0);
  cr_assert_eq(tn_metrics_register_gauge_func(m, "rss_bytes", "RSS.", tn_process_rss_bytes, NULL), -EEXIST);
  cr_assert_null(tn_metrics_register(m, TN_GAUGE, "rss_bytes", "", NULL, NULL, 0),
                 "a func gauge is not a gauge");
  cr_assert_eq(tn_metrics_register_gauge_func(m, "c_total", "", tn_process_rss_bytes, NULL), -EEXIST);
  tn_metrics_free(m);
}

Test(metrics, invalid_names_labels_and_buckets_are_refused) {
  struct tn_metrics *m = tn_metrics_new();
  const double desc[] = {2, 1}, dup[] = {1, 1}, nan[] = {NAN};
  cr_assert_null(tn_metrics_register(m, TN_COUNTER, "1abc", "", NULL, NULL, 0));
  cr_assert_null(tn_metrics_register(m, TN_COUNTER, "a-b", "", NULL, NULL, 0));
  cr_assert_null(tn_metrics_register(m, TN_COUNTER, "", "", NULL, NULL, 0));
  cr_assert_null(tn_metrics_register(m, TN_COUNTER, NULL, "", NULL, NULL, 0));
  cr_assert_not_null(tn_metrics_register(m, TN_COUNTER, "ns:sub_name_total", "", NULL, NULL, 0));
  cr_assert_null(
      tn_metrics_register(m, TN_COUNTER, "l1", "", (const char *const[]){"__reserved", NULL}, NULL, 0));
  cr_assert_null(tn_metrics_register(m, TN_COUNTER, "l2", "", (const char *const[]){"a:b", NULL}, NULL, 0));
  cr_assert_null(
      tn_metrics_register(m, TN_COUNTER, "l3", "", (const char *const[]){"a", "a", NULL}, NULL, 0));
  cr_assert_null(tn_metrics_register(m, TN_HISTOGRAM, "l4", "", (const char *const[]){"le", NULL}, NULL, 0));
  cr_assert_not_null(
      tn_metrics_register(m, TN_COUNTER, "l5", "", (const char *const[]){"le", NULL}, NULL, 0));
  cr_assert_null(tn_metrics_register(m, TN_HISTOGRAM, "b1", "", NULL, desc, 2));
  cr_assert_null(tn_metrics_register(m, TN_HISTOGRAM, "b2", "", NULL, dup, 2));
  cr_assert_null(tn_metrics_register(m, TN_HISTOGRAM, "b3", "", NULL, nan, 1));
  cr_assert_eq(tn_metrics_register_gauge_func(m, "bad name", "", tn_process_rss_bytes, NULL), -EINVAL);

  struct tn_metric *f =
      tn_metrics_register(m, TN_COUNTER, "two_total", "", (const char *const[]){"a", "b", NULL}, NULL, 0);
  cr_assert_null(tn_metric_with(f, (const char *const[]){"x", NULL}), "too few values");
  cr_assert_null(tn_metric_with(f, (const char *const[]){"x", "y", "z", NULL}), "too many values");
  cr_assert_null(tn_metric_with(f, NULL));
  cr_assert_null(tn_metric_with(NULL, NULL));
  /* NULL series are accepted everywhere */
  tn_series_inc(NULL);
  tn_series_add(NULL, 1);
  tn_series_set(NULL, 1);
  tn_series_observe(NULL, 1);
  cr_assert_eq(tn_series_value(NULL), 0);
  tn_metrics_free(m);
  tn_metrics_free(NULL);
}

static double fixed_value(void *ud) { return *(double *)ud; }

Test(metrics, gauge_funcs_are_computed_at_scrape_time_in_registration_order) {
  struct tn_metrics *m = tn_metrics_new();
  double v = 42;
  cr_assert_not_null(tn_metrics_register(m, TN_COUNTER, "first_total", "First.", NULL, NULL, 0));
  cr_assert_eq(tn_metrics_register_gauge_func(m, "computed", "Computed.", fixed_value, &v), 0);
  cr_assert_not_null(tn_metrics_register(m, TN_GAUGE, "last", "Last.", NULL, NULL, 0));
  char *t = expose(m);
  assert_lines(t, (const char *const[]){"# HELP first_total First.", "# TYPE first_total counter",
                                        "first_total 0", "# HELP computed Computed.", "# TYPE computed gauge",
                                        "computed 42", "# HELP last Last.", "# TYPE last gauge", "last 0",
                                        NULL});
  free(t);
  v = 43.5;
  t = expose(m);
  cr_assert_not_null(strstr(t, "\ncomputed 43.5\n"), "%s", t);
  free(t);
  tn_metrics_free(m);
}

Test(metrics, process_rss_is_plausible) {
  double rss = tn_process_rss_bytes(NULL);
  cr_assert_gt(rss, 1 << 20, "a running test process has more than 1 MiB resident: %f", rss);
  cr_assert_lt(rss, 64.0 * (1ull << 30));
  cr_assert_eq(fmod(rss, 4096), 0, "whole pages");
}

Test(metrics, write_reports_the_buffer_cap) {
  struct tn_metrics *m = tn_metrics_new();
  tn_metrics_register(m, TN_COUNTER, "a_rather_long_metric_name_total", "Some help text.", NULL, NULL, 0);
  struct tn_buf b;
  tn_buf_init(&b, 16);
  cr_assert_eq(tn_metrics_write(m, &b), TN_ERR_TOOBIG);
  tn_buf_cleanup(&b);
  tn_metrics_free(m);
}

/* ---- concurrency: updates from many threads sum exactly ---- */

#define N_THREADS 8
#define N_ITER 20000

struct worker {
  struct tn_metric *counter, *gauge, *hist;
  int id;
};

static void *work(void *arg) {
  struct worker *w = arg;
  char name[16];
  /* every thread creates series concurrently too: one shared, one of its own */
  snprintf(name, sizeof name, "t%d", w->id);
  struct tn_series *shared = tn_metric_with(w->counter, (const char *const[]){"shared", NULL});
  struct tn_series *own = tn_metric_with(w->counter, (const char *const[]){name, NULL});
  struct tn_series *g = tn_metric_with(w->gauge, NULL);
  struct tn_series *h = tn_metric_with(w->hist, NULL);
  for (int i = 0; i < N_ITER; i++) {
    tn_series_inc(shared);
    tn_series_add(own, 0.5);
    tn_series_add(g, (i & 1) ? 0.25 : -0.125);
    tn_series_observe(h, (double)(i % 4)); /* 0,1,2,3 */
  }
  return NULL;
}

Test(metrics, concurrent_updates_sum_exactly) {
  struct tn_metrics *m = tn_metrics_new();
  const char *labels[] = {"who", NULL};
  const double buckets[] = {0, 1, 2};
  struct worker w[N_THREADS];
  pthread_t th[N_THREADS];
  for (int i = 0; i < N_THREADS; i++) {
    /* registration races too; every thread must get the same families */
    w[i].counter = tn_metrics_register(m, TN_COUNTER, "ops_total", "Ops.", labels, NULL, 0);
    w[i].gauge = tn_metrics_register(m, TN_GAUGE, "level", "Level.", NULL, NULL, 0);
    w[i].hist = tn_metrics_register(m, TN_HISTOGRAM, "sizes", "Sizes.", NULL, buckets, 3);
    w[i].id = i;
    cr_assert(w[i].counter && w[i].gauge && w[i].hist);
  }
  for (int i = 0; i < N_THREADS; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
  /* scrape while the threads run: must not crash or deadlock */
  for (int i = 0; i < 20; i++)
    free(expose(m));
  for (int i = 0; i < N_THREADS; i++)
    pthread_join(th[i], NULL);

  cr_assert_eq(tn_series_value(tn_metric_with(w[0].counter, (const char *const[]){"shared", NULL})),
               (double)N_THREADS * N_ITER);
  for (int i = 0; i < N_THREADS; i++) {
    char name[16];
    snprintf(name, sizeof name, "t%d", i);
    cr_assert_eq(tn_series_value(tn_metric_with(w[0].counter, (const char *const[]){name, NULL})),
                 N_ITER * 0.5);
  }
  /* all additions are multiples of 1/8 well inside the mantissa, so the sum is exact */
  cr_assert_eq(tn_series_value(tn_metric_with(w[0].gauge, NULL)), N_THREADS * (N_ITER / 2) * (0.25 - 0.125));
  struct tn_series *h = tn_metric_with(w[0].hist, NULL);
  cr_assert_eq(tn_series_value(h), (double)N_THREADS * N_ITER);
  char *t = expose(m);
  char want[256];
  const int q = N_THREADS * N_ITER / 4;
  snprintf(want, sizeof want,
           "sizes_bucket{le=\"0\"} %d\nsizes_bucket{le=\"1\"} %d\nsizes_bucket{le=\"2\"} %d\n"
           "sizes_bucket{le=\"+Inf\"} %d\nsizes_sum %d\nsizes_count %d\n",
           q, 2 * q, 3 * q, 4 * q, q * (0 + 1 + 2 + 3), 4 * q);
  cr_assert_not_null(strstr(t, want), "expected\n%s\nin\n%s", want, t);
  free(t);
  tn_metrics_free(m);
}

/* Many series in one family: lookups stay correct across hash table growth. */
Test(metrics, many_series_survive_table_growth) {
  struct tn_metrics *m = tn_metrics_new();
  struct tn_metric *f =
      tn_metrics_register(m, TN_GAUGE, "many", "", (const char *const[]){"k", "v", NULL}, NULL, 0);
  struct tn_series *s[2000];
  char k[16], v[16];
  for (int i = 0; i < 2000; i++) {
    snprintf(k, sizeof k, "%d", i / 10);
    snprintf(v, sizeof v, "%d", i % 10);
    s[i] = tn_metric_with(f, (const char *const[]){k, v, NULL});
    cr_assert_not_null(s[i]);
    tn_series_set(s[i], i);
  }
  for (int i = 0; i < 2000; i++) {
    snprintf(k, sizeof k, "%d", i / 10);
    snprintf(v, sizeof v, "%d", i % 10);
    cr_assert_eq(tn_metric_with(f, (const char *const[]){k, v, NULL}), s[i]);
    cr_assert_eq(tn_series_value(s[i]), i);
  }
  /* "a"+"bc" and "ab"+"c" are different series */
  struct tn_series *x = tn_metric_with(f, (const char *const[]){"a", "bc", NULL});
  struct tn_series *y = tn_metric_with(f, (const char *const[]){"ab", "c", NULL});
  cr_assert_neq(x, y);
  tn_metrics_free(m);
}

/* ---- scrape-time collectors ---- */

static void two_families(void *ud, struct tn_collect *c) {
  int *calls = ud;
  (*calls)++;
  tn_collect_family(c, TN_GAUGE, "tn_widgets", "Widgets \\ by colour.",
                    (const char *const[]){"colour", NULL});
  tn_collect_sample(c, (const char *const[]){"red \"dark\"\n", NULL}, 2);
  tn_collect_sample(c, (const char *const[]){"blue", NULL}, 0.5);
  tn_collect_family(c, TN_COUNTER, "tn_empty_total", "Never sampled: left out.",
                    (const char *const[]){"k", NULL});
  tn_collect_family(c, TN_COUNTER, "tn_done_total", "Done.", NULL);
  tn_collect_sample(c, NULL, -3); /* a counter never goes negative */
}

Test(metrics, collectors_run_at_scrape_time_in_registration_order) {
  struct tn_metrics *m = tn_metrics_new();
  int calls = 0;
  tn_series_inc(tn_metric_with(tn_metrics_register(m, TN_COUNTER, "tn_a_total", "A.", NULL, NULL, 0), NULL));
  cr_assert_eq(tn_metrics_register_collector(m, two_families, &calls), 0);
  tn_metrics_register(m, TN_GAUGE, "tn_z", "Z.", NULL, NULL, 0);
  char *t = expose(m);
  assert_lines(t, (const char *const[]){
                      "# HELP tn_a_total A.", "# TYPE tn_a_total counter", "tn_a_total 1",
                      "# HELP tn_widgets Widgets \\\\ by colour.", "# TYPE tn_widgets gauge",
                      "tn_widgets{colour=\"red \\\"dark\\\"\\n\"} 2", "tn_widgets{colour=\"blue\"} 0.5",
                      "# HELP tn_done_total Done.", "# TYPE tn_done_total counter", "tn_done_total 0",
                      "# HELP tn_z Z.", "# TYPE tn_z gauge", "tn_z 0", NULL});
  free(t);
  cr_assert_eq(calls, 1);
  /* unregistered: never called again (and ud may go) */
  cr_assert_eq(tn_metrics_unregister_collector(m, two_families, &calls), 0);
  cr_assert_eq(tn_metrics_unregister_collector(m, two_families, &calls), -ENOENT); /* once only */
  t = expose(m);
  cr_assert_null(strstr(t, "tn_widgets"));
  free(t);
  cr_assert_eq(calls, 1);
  cr_assert_eq(tn_metrics_unregister_collector(m, two_families, NULL), -ENOENT);
  tn_metrics_free(m);
}

static void bad_collector(void *ud, struct tn_collect *c) {
  int *err = ud;
  tn_collect_family(c, TN_GAUGE, "bad-name", "x", NULL);
  tn_collect_sample(c, NULL, 1); /* dropped */
  tn_collect_family(c, TN_HISTOGRAM, "tn_hist", "x", NULL);
  tn_collect_sample(c, NULL, 1); /* dropped: collectors emit counters and gauges only */
  tn_collect_family(c, TN_GAUGE, "tn_ok", "x", (const char *const[]){"a", NULL});
  tn_collect_sample(c, (const char *const[]){"1", "2", NULL}, 1); /* wrong arity: dropped */
  tn_collect_sample(c, (const char *const[]){"1", NULL}, 7);
  *err = tn_collect_error(c);
}

Test(metrics, a_collector_bug_drops_only_its_bad_samples) {
  struct tn_metrics *m = tn_metrics_new();
  int err = 0;
  tn_metrics_register_collector(m, bad_collector, &err);
  char *t = expose(m);
  assert_lines(t, (const char *const[]){"# HELP tn_ok x", "# TYPE tn_ok gauge", "tn_ok{a=\"1\"} 7", NULL});
  free(t);
  cr_assert_eq(err, -EINVAL);
  tn_metrics_free(m);
}

/* A collector that calls back into the registry: allowed, since it runs without the lock. */
static void reentrant(void *ud, struct tn_collect *c) {
  struct tn_metrics *m = ud;
  tn_series_inc(
      tn_metric_with(tn_metrics_register(m, TN_COUNTER, "tn_scrapes_total", "S.", NULL, NULL, 0), NULL));
  tn_collect_family(c, TN_GAUGE, "tn_r", "R.", NULL);
  tn_collect_sample(c, NULL, 1);
}

Test(metrics, collectors_run_without_the_registry_lock) {
  struct tn_metrics *m = tn_metrics_new();
  tn_metrics_register_collector(m, reentrant, m);
  char *t = expose(m); /* would deadlock if the lock were held */
  cr_assert_not_null(strstr(t, "tn_r 1\n"));
  free(t);
  t = expose(m);
  cr_assert_not_null(strstr(t, "tn_scrapes_total 2\n"), "%s", t);
  free(t);
  tn_metrics_free(m);
}
