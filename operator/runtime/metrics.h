/* metrics.h - a small Prometheus metrics registry: counters, gauges and histograms with
 * labels, and the text exposition format (version 0.0.4) for /metrics. */
#ifndef TN_RUNTIME_METRICS_H
#define TN_RUNTIME_METRICS_H

#include <stddef.h>

#include "util/buf.h"

enum tn_metric_type { TN_COUNTER, TN_GAUGE, TN_HISTOGRAM };

struct tn_metrics; /* a registry; thread-safe */
struct tn_metric;  /* a family: one name, one type, fixed label names; owned by its registry */
struct tn_series;  /* one label-value combination of a family; owned by its family, never moves */

struct tn_metrics *tn_metrics_new(void);
/* Frees the registry with every family and series in it. Accepts NULL. */
void tn_metrics_free(struct tn_metrics *m);

/* Registers a family, or returns the existing one when a family of the same name, type and
 * labels exists (so components may register idempotently). label_names is a NULL-terminated
 * array (NULL for none), copied. buckets (histograms only; ascending upper bounds, copied,
 * +Inf implied) may be NULL for the default {0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10}.
 * Returns NULL on a clash with a different type/labels/buckets (or with the _bucket/_sum/_count
 * sample names of a histogram), on an invalid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), label
 * name ([a-zA-Z_][a-zA-Z0-9_]*, not "__*", not "le" on histograms, no duplicates) or bucket
 * list (must be strictly ascending, no NaN), or on allocation failure. help may be NULL; a
 * repeated registration keeps the first help. A family without labels has its one series
 * from the start (exposed as 0); a labelled family is exposed once it has a series. */
struct tn_metric *tn_metrics_register(struct tn_metrics *m, enum tn_metric_type type, const char *name,
                                      const char *help, const char *const *label_names, const double *buckets,
                                      size_t n_buckets);

/* The series for these label values (NULL-terminated, as many as the family's label names;
 * NULL for a family without labels), created on first use. The pointer stays valid for the
 * registry's life, so hot paths look it up once. Takes the registry lock: look up once, then
 * update lock-free. Returns NULL on allocation failure, when the number of values differs
 * from the family's label names (a programming error), or for a NULL family. */
struct tn_series *tn_metric_with(struct tn_metric *f, const char *const *label_values);

/* Lock-free updates (atomic doubles, CAS on the bit pattern); every function accepts a NULL
 * series and does nothing, and does nothing for a series of the wrong type. A counter
 * ignores negative and NaN increments (counters never go down). */
void tn_series_add(struct tn_series *s, double v); /* counters and gauges */
void tn_series_inc(struct tn_series *s);
void tn_series_set(struct tn_series *s, double v);     /* gauges */
void tn_series_observe(struct tn_series *s, double v); /* histograms */
double tn_series_value(const struct tn_series *s);     /* counter/gauge value; histogram count */

/* A gauge whose value is computed at scrape time (e.g. process RSS, queue depth). fn runs on
 * the scraping thread with the registry lock held, so it must be thread-safe, quick, and must
 * not call into the registry; ud is borrowed until tn_metrics_free. Returns 0, -EINVAL (bad
 * name or NULL fn), -EEXIST (the name is taken) or -ENOMEM. */
int tn_metrics_register_gauge_func(struct tn_metrics *m, const char *name, const char *help,
                                   double (*fn)(void *ud), void *ud);

/* ---- scrape-time collectors ----
 * A collector computes whole families when /metrics is scraped (e.g. tenants by state from an
 * informer cache, the process' CPU time from /proc), instead of keeping series up to date on hot
 * paths. It runs on the scraping thread WITHOUT the registry lock (so it may read caches that
 * take their own locks), in registration order among the families; it must be thread-safe and
 * quick. It emits families with tn_collect_family and their samples with tn_collect_sample; a
 * family without any sample is left out. The names must not be used by any registered family or
 * by another collector (a programming error the exposition tests catch). */
struct tn_collect; /* the sink a collector writes to; valid only during the call */
typedef void (*tn_collector_fn)(void *ud, struct tn_collect *c);

/* Registers a collector; ud is borrowed until tn_metrics_unregister_collector or tn_metrics_free.
 * Returns 0, -EINVAL or -ENOMEM. */
int tn_metrics_register_collector(struct tn_metrics *m, tn_collector_fn fn, void *ud);
/* Stops calling (fn, ud): returns once a call in progress finished, so ud may be freed after.
 * Returns 0 or -ENOENT. */
int tn_metrics_unregister_collector(struct tn_metrics *m, tn_collector_fn fn, void *ud);

/* Starts a family (TN_COUNTER or TN_GAUGE) in a collector's output: label_names NULL-terminated
 * (NULL for none). An invalid name, label name or type makes the family's samples be dropped
 * (and is reported by tn_collect_error). */
void tn_collect_family(struct tn_collect *c, enum tn_metric_type type, const char *name, const char *help,
                       const char *const *label_names);
/* One sample of the current family: as many label values as it has label names (NULL-terminated;
 * NULL for none). Label values are escaped. */
void tn_collect_sample(struct tn_collect *c, const char *const *label_values, double v);
/* The first error of this collector's call: 0, -EINVAL (bad family or sample), TN_ERR_TOOBIG or
 * -ENOMEM (the exposition buffer). */
int tn_collect_error(const struct tn_collect *c);

/* Appends every family in registration order in the Prometheus text format: # HELP, # TYPE,
 * samples with escaped label values; histograms as _bucket{le=...} (cumulative), _sum, _count.
 * Numbers are the shortest decimal that reads back exactly, or +Inf, -Inf, NaN; families
 * without series are left out. Returns 0 or a tn_buf error (TN_ERR_TOOBIG, -ENOMEM). */
int tn_metrics_write(struct tn_metrics *m, struct tn_buf *out);

/* Resident set size of this process in bytes (from /proc/self/statm), 0 when unknown. Prefer the
 * process collector (runtime/process_metrics.h), which exposes it with the other process_* metrics. */
double tn_process_rss_bytes(void *unused);

#endif
