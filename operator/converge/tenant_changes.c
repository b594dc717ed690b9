/* tenant_changes.c - placement.decided and quota.changed (see tenant_changes.h). */
#define _GNU_SOURCE /* asprintf */
#include "converge/tenant_changes.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdint.h>

#include "audit/outbox.h"
#include "runtime/metrics.h"
#include "tenancy/cloudevents.h"
#include "util/uuid.h"

/* ---- the cache --------------------------------------------------------------------------------- */

/* One slot per tenant, 32 bytes (512 KiB at 10,000 tenants; the strings it held before cost ~300
 * bytes a tenant with jansson's object around them): the name, the uid, the last recorded
 * placement ("region\tisolation") and quotas (compact JSON, sorted keys), each kept as a 64-bit
 * digest: SHA-256 under a random per-process key, cut to 8 bytes. Only equality is ever asked, and
 * without the key nobody can make two values collide on purpose (by chance: 2^-64 a comparison).
 * A placement or quotas digest of 0: none recorded. */
struct slot {
  uint64_t name, uid, p, q; /* name 0: empty */
};

struct tn_tenant_changes_cache {
  pthread_mutex_t mu;
  unsigned char key[16];
  struct slot *slots;
  size_t cap, n; /* cap 0 or a power of two; n < cap * 3 / 4 */
  atomic_ullong reads;
  struct tn_series *reads_total; /* may be NULL */
};

struct tn_tenant_changes_cache *tn_tenant_changes_cache_new(struct tn_metrics *metrics) {
  struct tn_tenant_changes_cache *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  if (RAND_bytes(c->key, sizeof c->key) != 1) {
    free(c);
    return NULL;
  }
  pthread_mutex_init(&c->mu, NULL);
  atomic_init(&c->reads, 0);
  struct tn_metric *f =
      metrics ? tn_metrics_register(metrics, TN_COUNTER, "tenancy_outbox_change_reads_total",
                                    "Reads of the outbox for a tenant's last placement.decided and "
                                    "quota.changed events (once per tenant per process, then on a change)",
                                    NULL, NULL, 0)
              : NULL;
  c->reads_total = f ? tn_metric_with(f, NULL) : NULL;
  return c;
}

void tn_tenant_changes_cache_free(struct tn_tenant_changes_cache *c) {
  if (!c)
    return;
  free(c->slots);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* The digest of s under the cache's key, never 0 (0 means "none"). */
static uint64_t digest(const struct tn_tenant_changes_cache *c, char field, const char *s) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  unsigned int len = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
            EVP_DigestUpdate(ctx, c->key, sizeof c->key) == 1 && EVP_DigestUpdate(ctx, &field, 1) == 1 &&
            EVP_DigestUpdate(ctx, s, strlen(s)) == 1 && EVP_DigestFinal_ex(ctx, md, &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok)
    return 0;
  uint64_t d;
  memcpy(&d, md, sizeof d);
  return d ? d : 1;
}

/* The slot of name digest h, or the empty slot where it would go. cap > 0. Under mu. */
static struct slot *slot_of(struct slot *slots, size_t cap, uint64_t h) {
  for (size_t i = (size_t)h & (cap - 1);; i = (i + 1) & (cap - 1))
    if (!slots[i].name || slots[i].name == h)
      return &slots[i];
}

static bool grow(struct tn_tenant_changes_cache *c) {
  size_t cap = c->cap ? c->cap * 2 : 64;
  struct slot *slots = calloc(cap, sizeof *slots);
  if (!slots)
    return false;
  for (size_t i = 0; i < c->cap; i++)
    if (c->slots[i].name)
      *slot_of(slots, cap, c->slots[i].name) = c->slots[i];
  free(c->slots);
  c->slots = slots;
  c->cap = cap;
  return true;
}

/* Drops the entry of name digest h, if any. Under mu. */
static void drop(struct tn_tenant_changes_cache *c, uint64_t h) {
  struct slot *e = c->cap ? slot_of(c->slots, c->cap, h) : NULL;
  if (!e || !e->name)
    return;
  size_t mask = c->cap - 1, i = (size_t)(e - c->slots);
  memset(e, 0, sizeof *e);
  c->n--;
  /* Backward-shift deletion: every entry stays reachable from its home slot, no tombstones. */
  for (size_t j = (i + 1) & mask; c->slots[j].name; j = (j + 1) & mask) {
    size_t home = (size_t)c->slots[j].name & mask;
    bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      c->slots[i] = c->slots[j];
      memset(&c->slots[j], 0, sizeof c->slots[j]);
      i = j;
    }
  }
}

void tn_tenant_changes_forget(struct tn_tenant_changes_cache *c, const char *name) {
  if (!c || !name)
    return;
  uint64_t h = digest(c, 'n', name);
  pthread_mutex_lock(&c->mu);
  drop(c, h);
  pthread_mutex_unlock(&c->mu);
}

unsigned long long tn_tenant_changes_reads(struct tn_tenant_changes_cache *c) {
  return c ? atomic_load(&c->reads) : 0;
}

size_t tn_tenant_changes_cached(struct tn_tenant_changes_cache *c) {
  if (!c)
    return 0;
  pthread_mutex_lock(&c->mu);
  size_t n = c->n;
  pthread_mutex_unlock(&c->mu);
  return n;
}

bool tn_tenant_changes_cache_has(struct tn_tenant_changes_cache *c, const char *name, const char *uid,
                                 const char *want_p, const char *want_q) {
  if (!c || !name)
    return false;
  uint64_t h = digest(c, 'n', name), du = digest(c, 'u', uid ? uid : "");
  uint64_t dp = want_p ? digest(c, 'p', want_p) : 0, dq = want_q ? digest(c, 'q', want_q) : 0;
  if (!h || !du || (want_p && !dp) || (want_q && !dq))
    return false; /* no digest: read the outbox */
  pthread_mutex_lock(&c->mu);
  const struct slot *e = c->cap ? slot_of(c->slots, c->cap, h) : NULL;
  bool hit = e && e->name && e->uid == du && (!want_p || e->p == dp) && (!want_q || e->q == dq);
  pthread_mutex_unlock(&c->mu);
  return hit;
}

void tn_tenant_changes_cache_put(struct tn_tenant_changes_cache *c, const char *name, const char *uid,
                                 const char *p, const char *q) {
  if (!c || !name)
    return;
  struct slot v = {digest(c, 'n', name), digest(c, 'u', uid ? uid : ""), p ? digest(c, 'p', p) : 0,
                   q ? digest(c, 'q', q) : 0};
  bool ok = v.name && v.uid && (!p || v.p) && (!q || v.q);
  pthread_mutex_lock(&c->mu);
  if (!ok) {
    drop(c, v.name); /* no digest: read again next time */
  } else {
    struct slot *e = c->cap ? slot_of(c->slots, c->cap, v.name) : NULL;
    if ((!e || !e->name) && (c->n + 1) * 4 > c->cap * 3)
      e = grow(c) ? slot_of(c->slots, c->cap, v.name) : NULL;
    if (e && !e->name)
      c->n++;
    if (e)
      *e = v; /* out of memory (no slot): nothing kept, the outbox is read next time */
  }
  pthread_mutex_unlock(&c->mu);
}

/* "region\tisolation" (malloc'd), or NULL when either is missing. */
static char *placement_key(const char *region, const char *isolation) {
  char *k = NULL;
  if (!region || !isolation || asprintf(&k, "%s\t%s", region, isolation) < 0)
    return NULL;
  return k;
}

/* ---- the outbox -------------------------------------------------------------------------------- */

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
  if (c->cache) {
    atomic_fetch_add(&c->cache->reads, 1);
    tn_series_inc(c->cache->reads_total);
  }
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

/* One change to append: its audit row and event, with the strings they borrow. */
struct change {
  char target[300], cid[37];
  char *value;
  struct tn_outbox_event ob;
  struct tn_audit_event ev;
};

static void change_cleanup(struct change *ch) {
  tn_outbox_event_cleanup(&ch->ob);
  free(ch->value);
}

static int change_init(const struct tn_tenant_changes *c, const char *name, const char *event,
                       const char *action, json_t *data, struct change *ch, struct tn_error *err) {
  *ch = (struct change){0};
  snprintf(ch->target, sizeof ch->target, "tenant/%s", name);
  const json_t *md = json_object_get(c->tenant, "metadata");
  const char *uid = json_string_value(json_object_get(md, "uid"));
  /* One correlation id per change: the tenant, what, the new value and when. */
  ch->value = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
  if (!ch->value)
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *parts[] = {"tenancy.dev/change", uid ? uid : name, event, ch->value, c->now ? c->now : ""};
  tn_uuid_from_parts(parts, sizeof parts / sizeof parts[0], ch->cid);
  int rc = tn_outbox_event_init(&ch->ob, c->cluster, c->tenant, event, ch->cid, c->actor, data, err);
  if (rc) {
    change_cleanup(ch);
    return rc;
  }
  long long gen = json_integer_value(json_object_get(md, "generation"));
  ch->ev = (struct tn_audit_event){.actor = c->actor,
                                   .action = action,
                                   .target = ch->target,
                                   .request_id = c->request_id,
                                   .correlation_id = ch->cid,
                                   .outcome = TN_AUDIT_SUCCEEDED,
                                   .generation_before = gen,
                                   .generation_after = gen,
                                   .details = ch->value,
                                   .outbox = &ch->ob};
  return 0;
}

int tn_tenant_record_changes(const struct tn_tenant_changes *c, int *appended, struct tn_error *err) {
  if (appended)
    *appended = 0;
  const json_t *md = json_object_get(c->tenant, "metadata");
  const char *name = json_string_value(json_object_get(md, "name"));
  if (!c->audit || !name || (!c->region && !json_is_object(c->quotas)))
    return 0;
  const char *uid = json_string_value(json_object_get(md, "uid")) ?: "";
  char *want_p = c->region ? placement_key(c->region, c->isolation) : NULL;
  char *want_q = json_is_object(c->quotas) ? json_dumps(c->quotas, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  if ((c->region && c->isolation && !want_p) || (json_is_object(c->quotas) && !want_q)) {
    free(want_p);
    free(want_q);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  if (c->cache && tn_tenant_changes_cache_has(c->cache, name, uid, want_p, want_q)) {
    free(want_p);
    free(want_q);
    return 0; /* recorded already: no SQL */
  }
  json_t *lp = NULL, *lq = NULL;
  int rc = last_recorded(c, name, &lp, &lq, err);
  if (rc) {
    free(want_p);
    free(want_q);
    tn_tenant_changes_forget(c->cache, name);
    return rc;
  }
  const char *was = json_string_value(json_object_get(lp, "region"));
  const char *was_iso = json_string_value(json_object_get(lp, "isolation"));
  char *rec_p = placement_key(was, was_iso); /* what the outbox holds after this call */
  json_t *was_q = json_object_get(lq, "quotas");
  char *rec_q = was_q ? json_dumps(was_q, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  /* Both changes in one call and one transaction (tn_audit_append_many): both or neither. */
  struct change ch[2];
  struct tn_audit_event evs[2];
  int n = 0;
  bool placed = false, quota = false;
  if (want_p && !(rec_p && strcmp(rec_p, want_p) == 0)) {
    json_t *data = json_pack("{s:s, s:s, s:o}", "region", c->region, "isolation", c->isolation,
                             "previousRegion", was ? json_string(was) : json_null());
    rc = data ? change_init(c, name, TN_CE_PLACEMENT_DECIDED, TN_AUDIT_ACTION_PLACEMENT_DECIDE, data, &ch[n],
                            err)
              : tn_error_set(err, -ENOMEM, "out of memory");
    json_decref(data);
    if (rc == 0) {
      evs[n] = ch[n].ev;
      n++;
      placed = true;
    }
  }
  if (rc == 0 && want_q && !(was_q && json_equal(was_q, (json_t *)c->quotas))) {
    json_t *data =
        json_pack("{s:O, s:O}", "quotas", (json_t *)c->quotas, "previous", was_q ? was_q : json_null());
    rc = data ? change_init(c, name, TN_CE_QUOTA_CHANGED, TN_AUDIT_ACTION_QUOTA_CHANGE, data, &ch[n], err)
              : tn_error_set(err, -ENOMEM, "out of memory");
    json_decref(data);
    if (rc == 0) {
      evs[n] = ch[n].ev;
      n++;
      quota = true;
    }
  }
  if (rc == 0 && n > 0)
    rc = tn_audit_append_many(c->audit, evs, (size_t)n, NULL, err);
  for (int i = 0; i < n; i++)
    change_cleanup(&ch[i]);
  if (rc == 0 && placed) {
    free(rec_p);
    rec_p = want_p;
    want_p = NULL;
  }
  if (rc == 0 && quota) {
    free(rec_q);
    rec_q = want_q;
    want_q = NULL;
  }
  if (rc == 0 && appended)
    *appended = n;
  if (c->cache) {
    if (rc == 0)
      tn_tenant_changes_cache_put(c->cache, name, uid, rec_p, rec_q);
    else
      tn_tenant_changes_forget(c->cache, name);
  }
  free(rec_p);
  free(rec_q);
  free(want_p);
  free(want_q);
  json_decref(lp);
  json_decref(lq);
  return rc;
}
