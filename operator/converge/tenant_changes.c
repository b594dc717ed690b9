/* tenant_changes.c - placement.decided and quota.changed (see tenant_changes.h). */
#include "converge/tenant_changes.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/outbox.h"
#include "tenancy/cloudevents.h"
#include "util/uuid.h"

/* The data of the tenant's last placement.decided and quota.changed events since its latest
 * created event (a tenant deleted and created again under the same name starts afresh). */
static int last_recorded(const struct tn_tenant_changes *c, const char *name, json_t **placement,
                         json_t **quotas, struct tn_error *err) {
  char tp[96], tq[96], tc[96];
  tn_ce_type(TN_CE_PLACEMENT_DECIDED, tp, sizeof tp);
  tn_ce_type(TN_CE_QUOTA_CHANGED, tq, sizeof tq);
  tn_ce_type(TN_CE_CREATED, tc, sizeof tc);
  const char *params[] = {name, tp, tq, tc};
  json_t *rows = NULL;
  int rc = tn_audit_query(
      c->audit,
      "SELECT t.type, (SELECT o.event->'data' FROM @S@.outbox o WHERE o.tenant = $1 AND o.type = t.type "
      "AND o.seq > b.s ORDER BY o.tenant_seq DESC LIMIT 1)::text AS data "
      "FROM (VALUES ($2::text), ($3::text)) AS t(type), "
      "(SELECT coalesce(max(seq), 0) AS s FROM @S@.outbox WHERE tenant = $1 AND type = $4) AS b",
      4, params, &rows, err);
  if (rc)
    return rc;
  size_t i;
  json_t *r;
  json_array_foreach(rows, i, r) {
    const char *type = json_string_value(json_object_get(r, "type"));
    const char *data = json_string_value(json_object_get(r, "data"));
    json_t *d = data ? json_loads(data, 0, NULL) : NULL;
    if (type && strcmp(type, tp) == 0 && !*placement)
      *placement = d;
    else if (type && strcmp(type, tq) == 0 && !*quotas)
      *quotas = d;
    else
      json_decref(d);
  }
  json_decref(rows);
  return 0;
}

static int append(const struct tn_tenant_changes *c, const char *name, const char *event, const char *action,
                  json_t *data, struct tn_error *err) {
  char target[300], cid[37];
  snprintf(target, sizeof target, "tenant/%s", name);
  const json_t *md = json_object_get(c->tenant, "metadata");
  const char *uid = json_string_value(json_object_get(md, "uid"));
  /* One correlation id per change: the tenant, what, the new value and when. */
  char *value = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
  if (!value)
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *parts[] = {"tenancy.dev/change", uid ? uid : name, event, value, c->now ? c->now : ""};
  tn_uuid_from_parts(parts, sizeof parts / sizeof parts[0], cid);
  struct tn_outbox_event ob = {0};
  int rc = tn_outbox_event_init(&ob, c->cluster, c->tenant, event, cid, c->actor, data, err);
  if (rc == 0) {
    long long gen = json_integer_value(json_object_get(md, "generation"));
    struct tn_audit_event ev = {.actor = c->actor,
                                .action = action,
                                .target = target,
                                .request_id = c->request_id,
                                .correlation_id = cid,
                                .outcome = TN_AUDIT_SUCCEEDED,
                                .generation_before = gen,
                                .generation_after = gen,
                                .details = value,
                                .outbox = &ob};
    rc = tn_audit_append(c->audit, &ev, NULL, err);
  }
  tn_outbox_event_cleanup(&ob);
  free(value);
  return rc;
}

/* What this process last found in the outbox (or appended) for a tenant: hash(audit trail, name,
 * uid) -> hash(region, isolation, quotas). A reconcile whose values hash the same skips the
 * outbox query, which every reconcile of a placed tenant made, resyncs of unchanged tenants
 * included (issue 18: one PostgreSQL round trip per reconcile). Filled only after a query or an
 * append succeeded; starts empty in every process, so a restart or a new leader asks the outbox
 * again. */
static struct {
  pthread_mutex_t mu;
  uint64_t *keys, *vals; /* open addressing; key 0 = empty */
  size_t cap, n;
} memo = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

static uint64_t fnv_str(uint64_t h, const char *s) { return fnv(h, s ? s : "", s ? strlen(s) + 1 : 1); }

static bool memo_get(uint64_t key, uint64_t *val) {
  bool hit = false;
  pthread_mutex_lock(&memo.mu);
  for (size_t i = memo.cap ? key & (memo.cap - 1) : 0; memo.cap && memo.keys[i]; i = (i + 1) & (memo.cap - 1))
    if (memo.keys[i] == key) {
      *val = memo.vals[i];
      hit = true;
      break;
    }
  pthread_mutex_unlock(&memo.mu);
  return hit;
}

static void memo_put_locked(uint64_t key, uint64_t val) {
  size_t i = key & (memo.cap - 1);
  while (memo.keys[i] && memo.keys[i] != key)
    i = (i + 1) & (memo.cap - 1);
  memo.n += !memo.keys[i];
  memo.keys[i] = key;
  memo.vals[i] = val;
}

static void memo_put(uint64_t key, uint64_t val) {
  pthread_mutex_lock(&memo.mu);
  if (2 * (memo.n + 1) > memo.cap) {
    size_t cap = memo.cap ? memo.cap * 2 : 1024, old = memo.cap;
    uint64_t *k = calloc(cap, sizeof *k), *v = calloc(cap, sizeof *v), *ok = memo.keys, *ov = memo.vals;
    if (!k || !v) {
      free(k);
      free(v);
      pthread_mutex_unlock(&memo.mu);
      return; /* the next reconcile asks the outbox again */
    }
    memo.keys = k;
    memo.vals = v;
    memo.cap = cap;
    memo.n = 0;
    for (size_t i = 0; i < old; i++)
      if (ok[i])
        memo_put_locked(ok[i], ov[i]);
    free(ok);
    free(ov);
  }
  memo_put_locked(key, val);
  pthread_mutex_unlock(&memo.mu);
}

int tn_tenant_record_changes(const struct tn_tenant_changes *c, int *appended, struct tn_error *err) {
  if (appended)
    *appended = 0;
  const char *name = json_string_value(json_object_get(json_object_get(c->tenant, "metadata"), "name"));
  if (!c->audit || !name || (!c->region && !json_is_object(c->quotas)))
    return 0;
  const void *audit = c->audit;
  uint64_t key = fnv(1469598103934665603ULL, &audit, sizeof audit);
  key = fnv_str(fnv_str(key, name),
                json_string_value(json_object_get(json_object_get(c->tenant, "metadata"), "uid")));
  key += !key; /* 0 marks an empty slot */
  char *q = json_is_object(c->quotas) ? json_dumps(c->quotas, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  uint64_t val = fnv_str(fnv_str(fnv_str(1469598103934665603ULL, c->region), c->isolation), q);
  free(q);
  uint64_t seen;
  if (memo_get(key, &seen) && seen == val)
    return 0; /* the outbox holds these already: this process saw or wrote them */
  json_t *lp = NULL, *lq = NULL;
  int rc = last_recorded(c, name, &lp, &lq, err);
  if (rc)
    return rc;
  if (c->region && c->isolation) {
    const char *was = json_string_value(json_object_get(lp, "region"));
    const char *was_iso = json_string_value(json_object_get(lp, "isolation"));
    if (!was || strcmp(was, c->region) != 0 || !was_iso || strcmp(was_iso, c->isolation) != 0) {
      json_t *data = json_pack("{s:s, s:s, s:o}", "region", c->region, "isolation", c->isolation,
                               "previousRegion", was ? json_string(was) : json_null());
      rc = data ? append(c, name, TN_CE_PLACEMENT_DECIDED, TN_AUDIT_ACTION_PLACEMENT_DECIDE, data, err)
                : tn_error_set(err, -ENOMEM, "out of memory");
      json_decref(data);
      if (rc == 0 && appended)
        (*appended)++;
    }
  }
  if (rc == 0 && json_is_object(c->quotas)) {
    json_t *was = json_object_get(lq, "quotas");
    if (!was || !json_equal(was, (json_t *)c->quotas)) {
      json_t *data =
          json_pack("{s:O, s:O}", "quotas", (json_t *)c->quotas, "previous", was ? was : json_null());
      rc = data ? append(c, name, TN_CE_QUOTA_CHANGED, TN_AUDIT_ACTION_QUOTA_CHANGE, data, err)
                : tn_error_set(err, -ENOMEM, "out of memory");
      json_decref(data);
      if (rc == 0 && appended)
        (*appended)++;
    }
  }
  json_decref(lp);
  json_decref(lq);
  if (rc == 0)
    memo_put(key, val);
  return rc;
}
