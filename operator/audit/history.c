/* history.c - tenant versions and their audit (see history.h and docs/history.md). The writing is
 * done by the database function tenant_version_record() (audit.c's schema), so a version and the
 * audit rows of what it changed are one transaction. */
#include "audit/history.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/outbox.h"
#include "tenancy/cloudevents.h"
#include "util/uuid.h"

static const char *str_at(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

bool tn_history_needs_record(const json_t *tenant) {
  const json_t *meta = json_object_get(tenant, "metadata");
  long long gen = json_integer_value(json_object_get(meta, "generation"));
  long long observed =
      json_integer_value(json_object_get(json_object_get(tenant, "status"), "observedGeneration"));
  return gen > 0 && gen != observed;
}

/* Copies the comma-separated elements of a PostgreSQL text[] literal ("{plan,contacts}"). */
static void array_literal(const char *lit, char *out, size_t n) {
  size_t j = 0;
  out[0] = '\0';
  if (!lit)
    return;
  for (const char *p = lit; *p && j + 1 < n; p++)
    if (*p != '{' && *p != '}' && *p != '"')
      out[j++] = *p;
  out[j] = '\0';
}

/* with_event: the version's dev.tenancy.tenant.updated.v1 event goes to the outbox (issue 14). */
static int record(struct tn_audit *a, const json_t *tenant, bool with_event, const char *cluster,
                  struct tn_history_recorded *out, struct tn_error *err) {
  struct tn_history_recorded local;
  if (!out)
    out = &local;
  memset(out, 0, sizeof *out);
  const json_t *meta = json_object_get(tenant, "metadata");
  const char *name = str_at(meta, "name"), *uid = str_at(meta, "uid"), *rv = str_at(meta, "resourceVersion");
  long long gen = json_integer_value(json_object_get(meta, "generation"));
  const json_t *spec = json_object_get(tenant, "spec");
  if (!name || !uid || gen <= 0 || !json_is_object(spec))
    return tn_error_set(err, TN_EINVALID,
                        "history: a tenant needs metadata.name, uid, generation and a spec");
  const char *actor = str_at(json_object_get(meta, "annotations"), TN_HISTORY_ACTOR_ANNOTATION);
  if (!actor || !*actor)
    actor = TN_HISTORY_UNKNOWN_ACTOR;
  char gens[24];
  snprintf(gens, sizeof gens, "%lld", gen);
  const char *parts[] = {"tenancy.dev/spec-change", uid, gens};
  tn_uuid_from_parts(parts, 3, out->correlation_id);
  struct tn_outbox_event ob = {0};
  if (with_event) {
    int erc =
        tn_outbox_event_init(&ob, cluster, tenant, TN_CE_UPDATED, out->correlation_id, actor, NULL, err);
    if (erc)
      return erc;
  }
  char *spec_text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
  if (!spec_text) {
    tn_outbox_event_cleanup(&ob);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  const char *params[] = {name, uid, gens, actor, spec_text, rv, out->correlation_id, ob.event, ob.labels};
  json_t *rows = NULL;
  int rc = tn_audit_query(a,
                          "SELECT recorded, previous_generation, changed FROM "
                          "@S@.tenant_version_record($1, $2, $3::bigint, $4, $5::jsonb, $6, $7, $8::jsonb, "
                          "$9::jsonb)",
                          9, params, &rows, err);
  tn_audit_note_append(a, rc); /* it appends the version's audit rows */
  free(spec_text);
  tn_outbox_event_cleanup(&ob);
  if (rc)
    return rc;
  const json_t *row = json_array_get(rows, 0);
  const char *rec = str_at(row, "recorded"), *prev = str_at(row, "previous_generation");
  out->recorded = rec && rec[0] == 't';
  out->previous_generation = prev ? strtoll(prev, NULL, 10) : 0;
  array_literal(str_at(row, "changed"), out->changed, sizeof out->changed);
  json_decref(rows);
  return 0;
}

int tn_history_record(struct tn_audit *a, const json_t *tenant, struct tn_history_recorded *out,
                      struct tn_error *err) {
  return record(a, tenant, false, NULL, out, err);
}

int tn_history_record_event(struct tn_audit *a, const json_t *tenant, const char *cluster,
                            struct tn_history_recorded *out, struct tn_error *err) {
  return record(a, tenant, true, cluster, out, err);
}

int tn_history_list(struct tn_audit *a, const char *name, const char *uid, json_t **versions,
                    struct tn_error *err) {
  *versions = NULL;
  const char *params[] = {name, uid};
  json_t *rows = NULL;
  int rc = tn_audit_query(a,
                          "SELECT tenant, uid, generation, "
                          "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at, actor, "
                          "correlation_id, spec::text AS spec FROM @S@.tenant_versions "
                          "WHERE tenant = $1 AND ($2::text IS NULL OR uid = $2) ORDER BY at, generation",
                          2, params, &rows, err);
  if (rc)
    return rc;
  json_t *out = json_array();
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    json_t *spec = json_loads(str_at(row, "spec") ?: "null", 0, NULL);
    const char *cid = str_at(row, "correlation_id");
    json_t *v = json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:o}", "tenant", str_at(row, "tenant") ?: "", "uid",
                          str_at(row, "uid") ?: "", "generation",
                          (json_int_t)strtoll(str_at(row, "generation") ?: "0", NULL, 10), "at",
                          str_at(row, "at") ?: "", "actor", str_at(row, "actor") ?: "", "correlationId",
                          cid ? json_string(cid) : json_null(), "spec", spec ? spec : json_null());
    if (!out || !v || json_array_append_new(out, v)) {
      json_decref(out);
      json_decref(rows);
      return tn_error_set(err, -ENOMEM, "out of memory");
    }
  }
  json_decref(rows);
  *versions = out;
  return 0;
}

int tn_history_latest_uid(struct tn_audit *a, const char *name, char uid[64], struct tn_error *err) {
  const char *params[] = {name};
  json_t *rows = NULL;
  int rc = tn_audit_query(a,
                          "SELECT uid FROM @S@.tenant_versions WHERE tenant = $1 "
                          "ORDER BY at DESC, generation DESC LIMIT 1",
                          1, params, &rows, err);
  if (rc)
    return rc;
  const char *u = str_at(json_array_get(rows, 0), "uid");
  if (!u)
    rc = tn_error_set(err, TN_ENOTFOUND, "tenant %.63s has no recorded versions", name);
  else
    snprintf(uid, 64, "%s", u);
  json_decref(rows);
  return rc;
}

/* ---- diff ----------------------------------------------------------------------------------- */

static char *dump(const json_t *v) { return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY); }

static int line(struct tn_buf *out, int *n, char op, const char *path, const json_t *from, const json_t *to) {
  char *a = from ? dump(from) : NULL, *b = to ? dump(to) : NULL;
  int rc = 0;
  if ((from && !a) || (to && !b))
    rc = -ENOMEM;
  else if (op == '~')
    rc = tn_buf_printf(out, "~ %s: %s -> %s\n", path, a, b);
  else
    rc = tn_buf_printf(out, "%c %s: %s\n", op, path, op == '+' ? b : a);
  free(a);
  free(b);
  if (rc == 0)
    (*n)++;
  return rc ? -ENOMEM : 0;
}

static int cmp_str(const void *x, const void *y) {
  return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static int diff_rec(const json_t *from, const json_t *to, const char *path, struct tn_buf *out, int *n) {
  if (!from && !to)
    return 0;
  if (!from)
    return line(out, n, '+', path, NULL, to);
  if (!to)
    return line(out, n, '-', path, from, NULL);
  if (json_is_object(from) && json_is_object(to)) {
    size_t cap = json_object_size(from) + json_object_size(to), k = 0;
    const char **keys = calloc(cap ? cap : 1, sizeof *keys);
    if (!keys)
      return -ENOMEM;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)from, key, v) keys[k++] = key;
    json_object_foreach((json_t *)to, key, v) if (!json_object_get(from, key)) keys[k++] = key;
    qsort(keys, k, sizeof *keys, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
      size_t len = strlen(path) + strlen(keys[i]) + 2;
      char *p = malloc(len);
      if (!p) {
        rc = -ENOMEM;
        break;
      }
      snprintf(p, len, "%s%s%s", path, path[0] ? "." : "", keys[i]);
      rc = diff_rec(json_object_get(from, keys[i]), json_object_get(to, keys[i]), p, out, n);
      free(p);
    }
    free(keys);
    return rc;
  }
  if (json_is_array(from) && json_is_array(to)) {
    size_t na = json_array_size(from), nb = json_array_size(to), m = na > nb ? na : nb;
    int rc = 0;
    for (size_t i = 0; i < m && rc == 0; i++) {
      size_t len = strlen(path) + 24;
      char *p = malloc(len);
      if (!p)
        return -ENOMEM;
      snprintf(p, len, "%s[%zu]", path, i);
      rc = diff_rec(json_array_get(from, i), json_array_get(to, i), p, out, n);
      free(p);
    }
    return rc;
  }
  if (json_equal((json_t *)from, (json_t *)to))
    return 0;
  return line(out, n, '~', path, from, to);
}

int tn_history_diff(const json_t *from, const json_t *to, const char *prefix, struct tn_buf *out,
                    int *n_changes) {
  int n = 0;
  int rc = diff_rec(from, to, prefix ? prefix : "", out, &n);
  if (n_changes)
    *n_changes = n;
  return rc;
}

void tn_history_changed_fields(const json_t *from, const json_t *to, char *out, size_t n) {
  size_t cap = json_object_size(from) + json_object_size(to), k = 0;
  out[0] = '\0';
  const char **keys = calloc(cap ? cap : 1, sizeof *keys);
  if (!keys)
    return;
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)from, key, v) if (!json_equal((json_t *)v, json_object_get(to, key)))
      keys[k++] = key;
  json_object_foreach((json_t *)to, key, v) if (!json_object_get(from, key)) keys[k++] = key;
  qsort(keys, k, sizeof *keys, cmp_str);
  size_t j = 0;
  for (size_t i = 0; i < k; i++) {
    int w = snprintf(out + j, n - j, "%s%s", i ? "," : "", keys[i]);
    if (w < 0 || (size_t)w >= n - j) {
      out[j] = '\0';
      break;
    }
    j += (size_t)w;
  }
  free(keys);
}
