/* metrics.c - a small Prometheus metrics registry with lock-free series updates and the
 * text exposition format 0.0.4 (see metrics.h and docs/internals/http-and-metrics.md). */
#include "runtime/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Locking: tn_metrics.mu protects the family list and, in every family, the series hash
 * table and the series order list (creation and exposition). Series values are atomics
 * updated without any lock. There is no other lock, so nothing nests. */

static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct tn_series {
  struct tn_metric *family;
  struct tn_series *hash_next;  /* chain in family->table */
  struct tn_series *order_next; /* creation order, for exposition */
  uint64_t hash;
  char **values;            /* family->n_labels strings, owned */
  _Atomic uint64_t bits;    /* counter/gauge value or histogram sum, as double bits */
  _Atomic uint64_t *counts; /* histograms: n_buckets + 1 non-cumulative counts (last: +Inf) */
};

struct tn_metric {
  struct tn_metrics *registry;
  struct tn_metric *next; /* registration order */
  enum tn_metric_type type;
  char *name;
  char *help;
  char **label_names; /* n_labels strings, owned */
  size_t n_labels;
  double *buckets; /* histograms: n_buckets finite ascending upper bounds, owned */
  size_t n_buckets;
  double (*fn)(void *ud); /* gauge funcs: computed at scrape time; no series */
  void *fn_ud;
  /* collectors: no name of their own (""), no series; collect is NULL once unregistered.
   * cmu serializes a call with unregistration (never taken with the registry lock held). */
  tn_collector_fn collect;
  void *collect_ud;
  bool is_collector;
  pthread_mutex_t cmu;
  struct tn_series **table; /* n_table chains */
  size_t n_table;
  size_t n_series;
  struct tn_series *first, *last;
};

struct tn_metrics {
  pthread_mutex_t mu;
  struct tn_metric *first, *last;
};

/* ---- atomic doubles ---- */

static uint64_t dbits(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  return u;
}

static double bitsd(uint64_t u) {
  double v;
  memcpy(&v, &u, sizeof v);
  return v;
}

static void atomic_add_double(_Atomic uint64_t *p, double v) {
  uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(p, &old, dbits(bitsd(old) + v), memory_order_relaxed,
                                                memory_order_relaxed))
    ;
}

/* ---- names ---- */

static bool valid_metric_name(const char *s) {
  if (!s || !*s)
    return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (p != s && c >= '0' && c <= '9');
    if (!ok)
      return false;
  }
  return true;
}

static bool valid_label_name(const char *s) {
  if (!s || !*s || strncmp(s, "__", 2) == 0)
    return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (p != s && c >= '0' && c <= '9');
    if (!ok)
      return false;
  }
  return true;
}

static size_t count_strings(const char *const *v) {
  size_t n = 0;
  while (v && v[n])
    n++;
  return n;
}

static void free_strings(char **v, size_t n) {
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static char **dup_strings(const char *const *v, size_t n) {
  char **out = calloc(n ? n : 1, sizeof *out);
  if (!out)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    out[i] = strdup(v[i]);
    if (!out[i]) {
      free_strings(out, i);
      return NULL;
    }
  }
  return out;
}

/* ---- registry ---- */

struct tn_metrics *tn_metrics_new(void) {
  struct tn_metrics *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  if (pthread_mutex_init(&m->mu, NULL) != 0) {
    free(m);
    return NULL;
  }
  return m;
}

static void series_free(struct tn_series *s) {
  if (!s)
    return;
  free_strings(s->values, s->family->n_labels);
  free(s->counts);
  free(s);
}

static void family_free(struct tn_metric *f) {
  if (!f)
    return;
  struct tn_series *s = f->first;
  while (s) {
    struct tn_series *next = s->order_next;
    series_free(s);
    s = next;
  }
  free(f->table);
  free_strings(f->label_names, f->n_labels);
  free(f->buckets);
  free(f->name);
  free(f->help);
  if (f->is_collector)
    pthread_mutex_destroy(&f->cmu);
  free(f);
}

void tn_metrics_free(struct tn_metrics *m) {
  if (!m)
    return;
  struct tn_metric *f = m->first;
  while (f) {
    struct tn_metric *next = f->next;
    family_free(f);
    f = next;
  }
  pthread_mutex_destroy(&m->mu);
  free(m);
}

/* Whether a family called `name` would collide with the sample names of histogram `h`
 * (name_bucket, name_sum, name_count), or the other way round. */
static bool suffix_clash(const char *hist, const char *other) {
  static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
  size_t hl = strlen(hist);
  if (strncmp(other, hist, hl) != 0)
    return false;
  for (size_t i = 0; i < 3; i++)
    if (strcmp(other + hl, suffixes[i]) == 0)
      return true;
  return false;
}

/* Called with m->mu held. Returns the family named `name`, or NULL. Sets *clash when some
 * other family's samples would share a name with this one's. */
static struct tn_metric *find_family(struct tn_metrics *m, const char *name, enum tn_metric_type type,
                                     bool *clash) {
  *clash = false;
  for (struct tn_metric *f = m->first; f; f = f->next) {
    if (strcmp(f->name, name) == 0)
      return f;
    if ((f->type == TN_HISTOGRAM && suffix_clash(f->name, name)) ||
        (type == TN_HISTOGRAM && suffix_clash(name, f->name)))
      *clash = true;
  }
  return NULL;
}

static bool same_shape(const struct tn_metric *f, enum tn_metric_type type, const char *const *label_names,
                       size_t n_labels, const double *buckets, size_t n_buckets, bool is_func) {
  if (f->type != type || f->n_labels != n_labels || (f->fn != NULL) != is_func)
    return false;
  for (size_t i = 0; i < n_labels; i++)
    if (strcmp(f->label_names[i], label_names[i]) != 0)
      return false;
  if (type == TN_HISTOGRAM) {
    if (f->n_buckets != n_buckets)
      return false;
    for (size_t i = 0; i < n_buckets; i++)
      if (f->buckets[i] != buckets[i])
        return false;
  }
  return true;
}

static uint64_t hash_values(const char *const *values, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a; 0xff separates values (never in UTF-8) */
  for (size_t i = 0; i < n; i++) {
    for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
      h = (h ^ *p) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;
  }
  return h;
}

/* Called with the registry lock held. Returns 0 or -ENOMEM. */
static int series_create(struct tn_metric *f, const char *const *values, uint64_t h, struct tn_series **out) {
  int rc = -ENOMEM;
  struct tn_series *s = NULL;
  if (f->n_series + 1 > f->n_table * 2) {
    size_t nt = f->n_table ? f->n_table * 4 : 8;
    struct tn_series **t = calloc(nt, sizeof *t);
    if (!t)
      goto out;
    for (struct tn_series *it = f->first; it; it = it->order_next) {
      it->hash_next = t[it->hash % nt];
      t[it->hash % nt] = it;
    }
    free(f->table);
    f->table = t;
    f->n_table = nt;
  }
  s = calloc(1, sizeof *s);
  if (!s)
    goto out;
  s->family = f;
  s->hash = h;
  atomic_init(&s->bits, dbits(0.0));
  s->values = dup_strings(values, f->n_labels);
  if (!s->values)
    goto out;
  if (f->type == TN_HISTOGRAM) {
    s->counts = calloc(f->n_buckets + 1, sizeof *s->counts);
    if (!s->counts)
      goto out;
    for (size_t i = 0; i <= f->n_buckets; i++)
      atomic_init(&s->counts[i], 0);
  }
  s->hash_next = f->table[h % f->n_table];
  f->table[h % f->n_table] = s;
  if (f->last)
    f->last->order_next = s;
  else
    f->first = s;
  f->last = s;
  f->n_series++;
  *out = s;
  s = NULL;
  rc = 0;
out:
  series_free(s);
  return rc;
}

/* Called with m->mu held: creates and links a family (validated by the caller). */
static struct tn_metric *family_create(struct tn_metrics *m, enum tn_metric_type type, const char *name,
                                       const char *help, const char *const *label_names, size_t n_labels,
                                       const double *buckets, size_t n_buckets) {
  struct tn_metric *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->registry = m;
  f->type = type;
  f->n_labels = n_labels;
  f->name = strdup(name);
  f->help = strdup(help ? help : "");
  f->label_names = dup_strings(label_names, n_labels);
  if (!f->name || !f->help || !f->label_names)
    goto fail;
  if (type == TN_HISTOGRAM) {
    f->n_buckets = n_buckets;
    f->buckets = malloc((n_buckets ? n_buckets : 1) * sizeof *f->buckets);
    if (!f->buckets)
      goto fail;
    if (n_buckets)
      memcpy(f->buckets, buckets, n_buckets * sizeof *buckets);
  }
  /* A family without labels has exactly one series: create it now so it is exposed (as 0)
   * from the start, as client_golang does. */
  struct tn_series *s;
  if (n_labels == 0 && series_create(f, NULL, hash_values(NULL, 0), &s) != 0)
    goto fail;
  if (m->last)
    m->last->next = f;
  else
    m->first = f;
  m->last = f;
  return f;
fail:
  family_free(f);
  return NULL;
}

struct tn_metric *tn_metrics_register(struct tn_metrics *m, enum tn_metric_type type, const char *name,
                                      const char *help, const char *const *label_names, const double *buckets,
                                      size_t n_buckets) {
  if (!m || !valid_metric_name(name) || (type != TN_COUNTER && type != TN_GAUGE && type != TN_HISTOGRAM))
    return NULL;
  size_t n_labels = count_strings(label_names);
  for (size_t i = 0; i < n_labels; i++) {
    if (!valid_label_name(label_names[i]) || (type == TN_HISTOGRAM && strcmp(label_names[i], "le") == 0))
      return NULL;
    for (size_t j = 0; j < i; j++)
      if (strcmp(label_names[i], label_names[j]) == 0)
        return NULL;
  }
  if (type == TN_HISTOGRAM) {
    if (!buckets || n_buckets == 0) {
      buckets = default_buckets;
      n_buckets = sizeof default_buckets / sizeof default_buckets[0];
    }
    if (isinf(buckets[n_buckets - 1]) && buckets[n_buckets - 1] > 0)
      n_buckets--; /* +Inf is implied */
    for (size_t i = 0; i < n_buckets; i++)
      if (isnan(buckets[i]) || isinf(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
        return NULL;
  } else {
    buckets = NULL;
    n_buckets = 0;
  }

  struct tn_metric *f = NULL;
  bool clash;
  pthread_mutex_lock(&m->mu);
  f = find_family(m, name, type, &clash);
  if (f) {
    if (!same_shape(f, type, label_names, n_labels, buckets, n_buckets, false))
      f = NULL;
  } else if (!clash) {
    f = family_create(m, type, name, help, label_names, n_labels, buckets, n_buckets);
  }
  pthread_mutex_unlock(&m->mu);
  return f;
}

int tn_metrics_register_gauge_func(struct tn_metrics *m, const char *name, const char *help,
                                   double (*fn)(void *ud), void *ud) {
  if (!m || !fn || !valid_metric_name(name))
    return -EINVAL;
  int rc = 0;
  bool clash;
  pthread_mutex_lock(&m->mu);
  struct tn_metric *f = find_family(m, name, TN_GAUGE, &clash);
  if (f || clash) {
    rc = -EEXIST;
    goto out;
  }
  f = calloc(1, sizeof *f);
  if (!f) {
    rc = -ENOMEM;
    goto out;
  }
  f->registry = m;
  f->type = TN_GAUGE;
  f->fn = fn;
  f->fn_ud = ud;
  f->name = strdup(name);
  f->help = strdup(help ? help : "");
  f->label_names = calloc(1, sizeof *f->label_names);
  if (!f->name || !f->help || !f->label_names) {
    family_free(f);
    rc = -ENOMEM;
    goto out;
  }
  if (m->last)
    m->last->next = f;
  else
    m->first = f;
  m->last = f;
out:
  pthread_mutex_unlock(&m->mu);
  return rc;
}

int tn_metrics_register_collector(struct tn_metrics *m, tn_collector_fn fn, void *ud) {
  if (!m || !fn)
    return -EINVAL;
  struct tn_metric *f = calloc(1, sizeof *f);
  if (!f)
    return -ENOMEM;
  f->registry = m;
  f->type = TN_GAUGE;
  f->collect = fn;
  f->collect_ud = ud;
  f->name = strdup(""); /* never a valid metric name: find_family never matches it */
  f->help = strdup("");
  f->label_names = calloc(1, sizeof *f->label_names);
  if (!f->name || !f->help || !f->label_names || pthread_mutex_init(&f->cmu, NULL) != 0) {
    family_free(f);
    return -ENOMEM;
  }
  f->is_collector = true;
  pthread_mutex_lock(&m->mu);
  if (m->last)
    m->last->next = f;
  else
    m->first = f;
  m->last = f;
  pthread_mutex_unlock(&m->mu);
  return 0;
}

int tn_metrics_unregister_collector(struct tn_metrics *m, tn_collector_fn fn, void *ud) {
  if (!m || !fn)
    return -ENOENT;
  struct tn_metric *found = NULL;
  pthread_mutex_lock(&m->mu);
  for (struct tn_metric *f = m->first; f && !found; f = f->next)
    if (f->is_collector && f->collect == fn && f->collect_ud == ud)
      found = f;
  pthread_mutex_unlock(&m->mu);
  if (!found)
    return -ENOENT;
  /* Entries are never removed before tn_metrics_free, so found stays valid; waiting for cmu
   * waits for a call in progress. */
  pthread_mutex_lock(&found->cmu);
  found->collect = NULL;
  found->collect_ud = NULL;
  pthread_mutex_unlock(&found->cmu);
  return 0;
}

struct tn_series *tn_metric_with(struct tn_metric *f, const char *const *label_values) {
  if (!f || f->fn || f->is_collector || count_strings(label_values) != f->n_labels)
    return NULL;
  uint64_t h = hash_values(label_values, f->n_labels);
  struct tn_series *found = NULL;
  pthread_mutex_lock(&f->registry->mu);
  for (struct tn_series *s = f->n_table ? f->table[h % f->n_table] : NULL; s && !found; s = s->hash_next) {
    if (s->hash != h)
      continue;
    size_t i = 0;
    while (i < f->n_labels && strcmp(s->values[i], label_values[i]) == 0)
      i++;
    if (i == f->n_labels)
      found = s;
  }
  if (!found && series_create(f, label_values, h, &found) != 0)
    found = NULL;
  pthread_mutex_unlock(&f->registry->mu);
  return found;
}

/* ---- updates ---- */

void tn_series_add(struct tn_series *s, double v) {
  if (!s || s->family->type == TN_HISTOGRAM)
    return;
  if (s->family->type == TN_COUNTER && !(v >= 0))
    return; /* counters never go down (and never become NaN) */
  atomic_add_double(&s->bits, v);
}

void tn_series_inc(struct tn_series *s) { tn_series_add(s, 1.0); }

void tn_series_set(struct tn_series *s, double v) {
  if (!s || s->family->type != TN_GAUGE)
    return;
  atomic_store_explicit(&s->bits, dbits(v), memory_order_relaxed);
}

void tn_series_observe(struct tn_series *s, double v) {
  if (!s || s->family->type != TN_HISTOGRAM)
    return;
  const struct tn_metric *f = s->family;
  size_t lo = 0, hi = f->n_buckets; /* first bucket with v <= upper bound; n_buckets is +Inf */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (v <= f->buckets[mid])
      hi = mid;
    else
      lo = mid + 1;
  }
  atomic_add_double(&s->bits, v);
  atomic_fetch_add_explicit(&s->counts[lo], 1, memory_order_relaxed);
}

double tn_series_value(const struct tn_series *s) {
  if (!s)
    return 0;
  if (s->family->type == TN_HISTOGRAM) {
    uint64_t n = 0;
    for (size_t i = 0; i <= s->family->n_buckets; i++)
      n += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
    return (double)n;
  }
  return bitsd(atomic_load_explicit(&((struct tn_series *)s)->bits, memory_order_relaxed));
}

/* ---- exposition ---- */

/* The shortest of %.15g..%.17g that reads back as the same double; +Inf, -Inf, NaN as
 * Prometheus (and Go's strconv) spell them. */
static void format_double(char *dst, size_t n, double v) {
  if (isnan(v)) {
    snprintf(dst, n, "NaN");
    return;
  }
  if (isinf(v)) {
    snprintf(dst, n, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(dst, n, "%.*g", prec, v);
    if (strtod(dst, NULL) == v)
      return;
  }
}

/* Appends s with '\\' and '\n' escaped, and '"' too when quotes is set (label values). */
static int append_escaped(struct tn_buf *out, const char *s, bool quotes) {
  int rc = 0;
  const char *run = s;
  for (const char *p = s; *p && rc == 0; p++) {
    const char *esc = NULL;
    if (*p == '\\')
      esc = "\\\\";
    else if (*p == '\n')
      esc = "\\n";
    else if (*p == '"' && quotes)
      esc = "\\\"";
    if (!esc)
      continue;
    rc = tn_buf_append(out, run, (size_t)(p - run));
    if (rc == 0)
      rc = tn_buf_appends(out, esc);
    run = p + 1;
  }
  if (rc == 0)
    rc = tn_buf_appends(out, run);
  return rc;
}

/* Appends `{a="x",b="y"` plus an optional extra pair, and the closing brace; nothing when
 * there are no labels at all. */
static int append_labels(struct tn_buf *out, const struct tn_metric *f, const struct tn_series *s,
                         const char *extra_name, const char *extra_value) {
  if (f->n_labels == 0 && !extra_name)
    return 0;
  int rc = tn_buf_appends(out, "{");
  for (size_t i = 0; i < f->n_labels && rc == 0; i++) {
    rc = tn_buf_printf(out, "%s%s=\"", i ? "," : "", f->label_names[i]);
    if (rc == 0)
      rc = append_escaped(out, s->values[i], true);
    if (rc == 0)
      rc = tn_buf_appends(out, "\"");
  }
  if (extra_name && rc == 0)
    rc = tn_buf_printf(out, "%s%s=\"%s\"", f->n_labels ? "," : "", extra_name, extra_value);
  if (rc == 0)
    rc = tn_buf_appends(out, "}");
  return rc;
}

static int append_sample(struct tn_buf *out, const struct tn_metric *f, const char *suffix,
                         const struct tn_series *s, const char *extra_name, const char *extra_value,
                         double v) {
  char num[40];
  format_double(num, sizeof num, v);
  int rc = tn_buf_printf(out, "%s%s", f->name, suffix);
  if (rc == 0 && s)
    rc = append_labels(out, f, s, extra_name, extra_value);
  if (rc == 0)
    rc = tn_buf_printf(out, " %s\n", num);
  return rc;
}

static int write_histogram(struct tn_buf *out, const struct tn_metric *f, const struct tn_series *s) {
  int rc = 0;
  uint64_t cum = 0;
  char le[40];
  for (size_t i = 0; i <= f->n_buckets && rc == 0; i++) {
    cum += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
    if (i < f->n_buckets)
      format_double(le, sizeof le, f->buckets[i]);
    else
      snprintf(le, sizeof le, "+Inf");
    rc = append_sample(out, f, "_bucket", s, "le", le, (double)cum);
  }
  /* _count is the +Inf bucket, so the two always agree even while observations land. */
  double sum = bitsd(atomic_load_explicit(&((struct tn_series *)s)->bits, memory_order_relaxed));
  if (rc == 0)
    rc = append_sample(out, f, "_sum", s, NULL, NULL, sum);
  if (rc == 0)
    rc = append_sample(out, f, "_count", s, NULL, NULL, (double)cum);
  return rc;
}

/* ---- collectors' output ---- */

#define COLLECT_MAX_LABELS 8

struct tn_collect {
  struct tn_buf *out;
  int rc;              /* first error */
  bool valid;          /* the current family can take samples */
  bool header_written; /* its # HELP / # TYPE lines are out */
  enum tn_metric_type type;
  char name[160];
  char help[256];
  char labels[COLLECT_MAX_LABELS][64];
  size_t n_labels;
};

static const char *const type_names[] = {"counter", "gauge", "histogram"};

void tn_collect_family(struct tn_collect *c, enum tn_metric_type type, const char *name, const char *help,
                       const char *const *label_names) {
  if (!c)
    return;
  c->valid = false;
  c->header_written = false;
  size_t n = count_strings(label_names);
  bool ok = (type == TN_COUNTER || type == TN_GAUGE) && valid_metric_name(name) &&
            strlen(name) < sizeof c->name && n <= COLLECT_MAX_LABELS;
  for (size_t i = 0; ok && i < n; i++) {
    ok = valid_label_name(label_names[i]) && strlen(label_names[i]) < sizeof c->labels[i];
    for (size_t j = 0; ok && j < i; j++)
      ok = strcmp(label_names[i], label_names[j]) != 0;
  }
  if (!ok) {
    if (c->rc == 0)
      c->rc = -EINVAL;
    return;
  }
  c->type = type;
  snprintf(c->name, sizeof c->name, "%s", name);
  snprintf(c->help, sizeof c->help, "%s", help ? help : "");
  for (size_t i = 0; i < n; i++)
    snprintf(c->labels[i], sizeof c->labels[i], "%s", label_names[i]);
  c->n_labels = n;
  c->valid = true;
}

void tn_collect_sample(struct tn_collect *c, const char *const *label_values, double v) {
  if (!c || !c->valid || c->rc == TN_ERR_TOOBIG || c->rc == -ENOMEM)
    return;
  size_t n = count_strings(label_values);
  if (n != c->n_labels) {
    if (c->rc == 0)
      c->rc = -EINVAL;
    return;
  }
  int rc = 0;
  if (!c->header_written) {
    rc = tn_buf_printf(c->out, "# HELP %s ", c->name);
    if (rc == 0)
      rc = append_escaped(c->out, c->help, false);
    if (rc == 0)
      rc = tn_buf_printf(c->out, "\n# TYPE %s %s\n", c->name, type_names[c->type]);
    c->header_written = rc == 0;
  }
  if (rc == 0)
    rc = tn_buf_appends(c->out, c->name);
  for (size_t i = 0; i < n && rc == 0; i++) {
    rc = tn_buf_printf(c->out, "%s%s=\"", i ? "," : "{", c->labels[i]);
    if (rc == 0)
      rc = append_escaped(c->out, label_values[i], true);
    if (rc == 0)
      rc = tn_buf_appends(c->out, i + 1 == n ? "\"}" : "\"");
  }
  if (c->type == TN_COUNTER && !(v >= 0))
    v = 0; /* counters are never negative nor NaN */
  char num[40];
  format_double(num, sizeof num, v);
  if (rc == 0)
    rc = tn_buf_printf(c->out, " %s\n", num);
  if (rc && (c->rc == 0 || c->rc == -EINVAL))
    c->rc = rc;
}

int tn_collect_error(const struct tn_collect *c) { return c ? c->rc : -EINVAL; }

/* Runs one collector (without the registry lock). Its -EINVAL is its own bug, not the scrape's:
 * what it emitted correctly stays; a full buffer fails the scrape. */
static int run_collector(struct tn_metric *f, struct tn_buf *out) {
  struct tn_collect c = {.out = out};
  pthread_mutex_lock(&f->cmu);
  if (f->collect)
    f->collect(f->collect_ud, &c);
  pthread_mutex_unlock(&f->cmu);
  return c.rc == -EINVAL ? 0 : c.rc;
}

int tn_metrics_write(struct tn_metrics *m, struct tn_buf *out) {
  int rc = 0;
  pthread_mutex_lock(&m->mu);
  for (struct tn_metric *f = m->first; f && rc == 0; f = f->next) {
    if (f->is_collector) {
      /* Families are only ever appended, never removed (until tn_metrics_free), so f and the
       * f->next read after relocking stay valid while the lock is dropped. */
      pthread_mutex_unlock(&m->mu);
      rc = run_collector(f, out);
      pthread_mutex_lock(&m->mu);
      continue;
    }
    if (!f->fn && !f->first)
      continue; /* no series yet: nothing to expose (as client_golang) */
    rc = tn_buf_printf(out, "# HELP %s ", f->name);
    if (rc == 0)
      rc = append_escaped(out, f->help, false);
    if (rc == 0)
      rc = tn_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
    if (rc == 0 && f->fn)
      rc = append_sample(out, f, "", NULL, NULL, NULL, f->fn(f->fn_ud));
    for (const struct tn_series *s = f->first; s && rc == 0; s = s->order_next) {
      if (f->type == TN_HISTOGRAM)
        rc = write_histogram(out, f, s);
      else
        rc = append_sample(out, f, "", s, NULL, NULL, tn_series_value(s));
    }
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

double tn_process_rss_bytes(void *unused) {
  (void)unused;
  FILE *fp = fopen("/proc/self/statm", "r");
  if (!fp)
    return 0;
  unsigned long long size = 0, resident = 0;
  int n = fscanf(fp, "%llu %llu", &size, &resident);
  fclose(fp);
  long page = sysconf(_SC_PAGESIZE);
  if (n != 2 || page <= 0)
    return 0;
  return (double)resident * (double)page;
}
