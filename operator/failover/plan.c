/* plan.c - region failover, pure (see plan.h). */
#include "failover/plan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "tenancy/placement.h"

static const json_t *at(const json_t *o, const char *a, const char *b) {
  const json_t *v = json_object_get(o, a);
  return b ? json_object_get(v, b) : v;
}

int tn_failover_spec_parse(const json_t *region, struct tn_failover_spec *out, struct tn_error *err) {
  memset(out, 0, sizeof *out);
  out->snapshot_interval_s = 300;
  out->region = json_string_value(at(region, "metadata", "name"));
  const json_t *spec = json_object_get(region, "spec");
  out->available = json_is_true(json_object_get(spec, "available"));
  const json_t *fo = json_object_get(spec, "failover");
  const json_t *ann = at(region, "metadata", "annotations");
  const char *drill = json_string_value(json_object_get(ann, TN_ANNOTATION_FAILOVER_DRILL));
  out->drill = drill && *drill ? drill : NULL;
  const json_t *sfo = at(region, "status", "failover");
  out->drill_done = json_string_value(at(sfo, "lastFailover", "drill"));
  const char *phase = json_string_value(json_object_get(sfo, "phase"));
  out->failed_over = phase && strcmp(phase, TN_FAILOVER_PHASE_FAILED_OVER) == 0;
  if (!json_is_object(fo))
    return 0;
  out->configured = true;
  out->standby = json_string_value(json_object_get(fo, "standbyRegion"));
  const char *mode = json_string_value(json_object_get(fo, "mode"));
  out->mode = mode && strcmp(mode, "cold") == 0 ? TN_FAILOVER_COLD : TN_FAILOVER_WARM;
  out->active = json_is_true(json_object_get(fo, "active"));
  json_int_t iv = json_integer_value(json_object_get(fo, "snapshotIntervalSeconds"));
  if (iv >= 10 && iv <= 86400)
    out->snapshot_interval_s = (double)iv;
  if (!out->standby || !*out->standby)
    return tn_error_set(err, TN_EINVALID,
                        "spec.failover.standbyRegion is missing: name the Region that takes this region's "
                        "tenants on failover");
  if (out->region && strcmp(out->region, out->standby) == 0)
    return tn_error_set(err, TN_EINVALID,
                        "spec.failover.standbyRegion names this Region (%s): name another Region",
                        out->region);
  return 0;
}

enum tn_failover_trigger tn_failover_trigger_of(const struct tn_failover_spec *s) {
  if (!s->configured)
    return TN_FAILOVER_NONE;
  if (!s->available && s->active)
    return TN_FAILOVER_REGION;
  if (s->drill && !(s->drill_done && strcmp(s->drill, s->drill_done) == 0))
    return TN_FAILOVER_DRILL;
  return TN_FAILOVER_NONE;
}

bool tn_failover_tenant_allowed(const struct tn_residency *residency, const char *standby) {
  return standby && *standby && tn_placement_allows(residency, standby);
}

void tn_failover_object_name(const char *region, const char *server, const char *database,
                             const char *standby, char out[64]) {
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "%s/%s/%s>%s", region ? region : "", server ? server : "",
                   database ? database : "", standby ? standby : "");
  if (n < 0)
    n = 0;
  if ((size_t)n >= sizeof buf)
    n = (int)sizeof buf - 1;
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)buf, (size_t)n, md);
  strcpy(out, "tnfo_");
  for (int i = 0; i < 12; i++)
    snprintf(out + 5 + 2 * i, 3, "%02x", md[i]);
}

int tn_failover_conninfo_add(char *buf, size_t n, const char *key, const char *value) {
  size_t len = strlen(buf);
  size_t need = strlen(key) + 3;
  for (const char *p = value; *p; p++)
    need += (*p == '\'' || *p == '\\') ? 2 : 1;
  if (len + need + 2 > n)
    return -ERANGE;
  char *w = buf + len;
  w += sprintf(w, "%s='", key);
  for (const char *p = value; *p; p++) {
    if (*p == '\'' || *p == '\\')
      *w++ = '\\';
    *w++ = *p;
  }
  *w++ = '\'';
  *w++ = ' ';
  *w = '\0';
  return 0;
}

double tn_failover_rpo_seconds(double first_committed, double last_committed, double last_kept) {
  if (last_committed <= 0)
    return 0;
  if (last_kept <= 0)
    return first_committed > 0 ? last_committed - first_committed : last_committed;
  return last_kept >= last_committed ? 0 : last_committed - last_kept;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

void tn_failover_stats_of(const double *v, size_t n, struct tn_failover_stats *out) {
  memset(out, 0, sizeof *out);
  if (!n)
    return;
  double *s = malloc(n * sizeof *s);
  if (!s)
    return;
  memcpy(s, v, n * sizeof *s);
  qsort(s, n, sizeof *s, cmp_double);
  double sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += s[i];
  out->min = s[0];
  out->max = s[n - 1];
  out->mean = sum / (double)n;
  /* nearest rank */
  size_t r50 = (size_t)ceil(0.50 * (double)n), r95 = (size_t)ceil(0.95 * (double)n);
  out->p50 = s[(r50 ? r50 : 1) - 1];
  out->p95 = s[(r95 ? r95 : 1) - 1];
  free(s);
}
