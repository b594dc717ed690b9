/* tenancy_metrics.c - the tenancy metrics, computed at scrape time (see tenancy_metrics.h). */
#define _GNU_SOURCE /* strptime, timegm */
#include "converge/tenancy_metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "converge/database.h"
#include "kube/informer.h"
#include "kube/store.h"
#include "util/clock.h"

#define SEP "\x1f" /* joins label values into one map key; never in a label value we emit */
#define TN_AUDIT_UP_FRESH_S 900.0

static const char *const STATES[] = {"Draft", "Active", "Suspended", "Archived", "Deleted"};
static const char *const BG_STATES[] = {"Pending", "Active", "Expired", "Denied"}; /* tenancy/breakglass.h */

/* RFC 3339 seconds ("2006-01-02T15:04:05Z", fraction and offset tolerated as UTC), or -1. */
static double parse_time(const char *s) {
  struct tm tm = {0};
  if (!s || !*s)
    return -1;
  const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end)
    return -1;
  return (double)timegm(&tm);
}

static const char *str_at(const json_t *o, const char *a, const char *b, const char *c) {
  const json_t *v = json_object_get(o, a);
  if (b)
    v = json_object_get(v, b);
  if (c)
    v = json_object_get(v, c);
  const char *s = json_string_value(v);
  return s ? s : "";
}

/* map[key] += by */
static void bump(json_t *map, const char *key, double by) {
  json_t *v = json_object_get(map, key);
  json_object_set_new(map, key, json_real((v ? json_number_value(v) : 0) + by));
}

/* key of n values joined by SEP into buf */
static const char *join(char *buf, size_t n, const char *const *values) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; values[i]; i++) {
    int w = snprintf(buf + used, n - used, "%s%s", i ? SEP : "", values[i]);
    if (w < 0 || (size_t)w >= n - used)
      break;
    used += (size_t)w;
  }
  return buf;
}

/* Emits every entry of map (keys split on SEP into n_labels values). */
static void emit_map(struct tn_collect *c, json_t *map, size_t n_labels) {
  const char *key;
  json_t *v;
  json_object_foreach(map, key, v) {
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", key);
    const char *vals[9] = {0};
    char *p = copy;
    for (size_t i = 0; i < n_labels && i < 8; i++) {
      vals[i] = p;
      char *s = strstr(p, SEP);
      if (s) {
        *s = '\0';
        p = s + 1;
      } else {
        p = p + strlen(p);
      }
    }
    tn_collect_sample(c, vals, json_number_value(v));
  }
}

/* The counts being made over the tenants of one scrape. */
struct acc {
  json_t *by_state, *placements, *conditions, *bg_states; /* bounded maps */
  json_t *info, *cond1, *key_rotated, *bg_tenant;         /* per tenant */
  double keys, now;
  double min_rotated; /* the oldest current key's status.keys.rotatedAt; meaningful when keys > 0 */
  double *bg_expiry;  /* the expiresAt of each grant Active in status (-1: none): which are in force
                         depends on the time of the scrape, not of the count */
  size_t n_bg, cap_bg;
  bool per_tenant;
};

static void acc_init(struct acc *a, double now, bool per_tenant) {
  *a = (struct acc){.by_state = json_object(),
                    .placements = json_object(),
                    .conditions = json_object(),
                    .bg_states = json_object(),
                    .info = json_object(),
                    .cond1 = json_object(),
                    .key_rotated = json_object(),
                    .bg_tenant = json_object(),
                    .now = now,
                    .per_tenant = per_tenant};
  for (size_t i = 0; i < sizeof STATES / sizeof *STATES; i++)
    json_object_set_new(a->by_state, STATES[i], json_real(0));
  for (size_t i = 0; i < sizeof BG_STATES / sizeof *BG_STATES; i++)
    json_object_set_new(a->bg_states, BG_STATES[i], json_real(0));
}

static void acc_add(struct acc *a, const json_t *t) {
  char k[1024];
  bool per_tenant = a->per_tenant;
  double now = a->now;
  json_t *by_state = a->by_state, *placements = a->placements, *conditions = a->conditions,
         *bg_states = a->bg_states, *info = a->info, *cond1 = a->cond1, *key_rotated = a->key_rotated,
         *bg_tenant = a->bg_tenant;
  const char *name = str_at(t, "metadata", "name", NULL);
  const char *state = str_at(t, "status", "state", NULL);
  if (!*state)
    state = "Unknown"; /* not reconciled yet */
  const char *plan = str_at(t, "spec", "plan", NULL);
  const char *region = str_at(t, "status", "placement", "region");
  const char *isolation = str_at(t, "status", "placement", "isolation");
  bump(by_state, state, 1);
  bump(placements, join(k, sizeof k, (const char *const[]){plan, region, isolation, state, NULL}), 1);
  if (per_tenant)
    bump(info, join(k, sizeof k, (const char *const[]){name, state, plan, region, isolation, NULL}), 1);
  size_t ci;
  const json_t *cond;
  json_array_foreach(json_object_get(json_object_get(t, "status"), "conditions"), ci, cond) {
    const char *type = str_at(cond, "type", NULL, NULL), *status = str_at(cond, "status", NULL, NULL),
               *reason = str_at(cond, "reason", NULL, NULL);
    if (!*type)
      continue;
    bump(conditions, join(k, sizeof k, (const char *const[]){type, status, reason, NULL}), 1);
    if (per_tenant)
      bump(cond1, join(k, sizeof k, (const char *const[]){name, type, status, reason, NULL}), 1);
  }
  double tenant_bg = 0;
  const json_t *g;
  json_array_foreach(json_object_get(json_object_get(t, "status"), "breakGlass"), ci, g) {
    const char *gs = str_at(g, "state", NULL, NULL);
    if (!*gs)
      continue;
    double exp = parse_time(str_at(g, "expiresAt", NULL, NULL));
    /* Active in status and not past its expiry (the next reconcile revokes it then). */
    if (strcmp(gs, "Active") == 0) {
      if (a->n_bg == a->cap_bg) {
        size_t cap = a->cap_bg ? a->cap_bg * 2 : 16;
        double *m = realloc(a->bg_expiry, cap * sizeof *m);
        if (m)
          a->bg_expiry = m, a->cap_bg = cap;
      }
      if (a->n_bg < a->cap_bg)
        a->bg_expiry[a->n_bg++] = exp;
      if (exp < 0 || exp > now)
        tenant_bg++;
    }
    bump(bg_states, gs, 1);
  }
  if (per_tenant)
    json_object_set_new(bg_tenant, name, json_real(tenant_bg));
  double rotated = parse_time(str_at(t, "status", "keys", "rotatedAt"));
  if (rotated >= 0 && strcmp(state, "Deleted") != 0) {
    if (a->keys == 0 || rotated < a->min_rotated)
      a->min_rotated = rotated;
    a->keys++;
    if (per_tenant)
      json_object_set_new(key_rotated, name, json_real(rotated));
  }
}

/* The families of the counts in a, at wall time now (a may have been counted earlier: only the
 * grants in force and the oldest key's age depend on the time). */
static void acc_emit(const struct acc *a, struct tn_collect *c, double now) {
  json_t *by_state = a->by_state, *placements = a->placements, *conditions = a->conditions,
         *bg_states = a->bg_states, *info = a->info, *cond1 = a->cond1, *key_rotated = a->key_rotated,
         *bg_tenant = a->bg_tenant;
  double bg_active = 0, key_age_max = a->keys > 0 ? now - a->min_rotated : -1, keys = a->keys;
  for (size_t i = 0; i < a->n_bg;
       i++) /* Active in status and not past its expiry (the next reconcile revokes it then) */
    if (a->bg_expiry[i] < 0 || a->bg_expiry[i] > now)
      bg_active++;
  bool per_tenant = a->per_tenant;
  tn_collect_family(c, TN_GAUGE, "tenancy_tenants",
                    "Tenants by the state they reached (status.state; Unknown: not reconciled yet).",
                    (const char *const[]){"state", NULL});
  emit_map(c, by_state, 1);
  tn_collect_family(
      c, TN_GAUGE, "tenancy_tenant_placements",
      "Tenants by plan, region, isolation mode and state (region and isolation empty until placed).",
      (const char *const[]){"plan", "region", "isolation", "state", NULL});
  emit_map(c, placements, 4);
  tn_collect_family(c, TN_GAUGE, "tenancy_tenant_conditions",
                    "Tenants by condition type, status and reason (bounded: no tenant label).",
                    (const char *const[]){"type", "status", "reason", NULL});
  emit_map(c, conditions, 3);
  tn_collect_family(c, TN_GAUGE, "tenancy_breakglass_grants_active",
                    "Break-glass grants in force now (status.breakGlass entries Active and not expired).",
                    NULL);
  tn_collect_sample(c, NULL, bg_active);
  tn_collect_family(c, TN_GAUGE, "tenancy_breakglass_requests",
                    "Break-glass requests by state (status.breakGlass).",
                    (const char *const[]){"state", NULL});
  emit_map(c, bg_states, 1);
  tn_collect_family(c, TN_GAUGE, "tenancy_tenant_keys", "Tenants with a current data key (status.keys).",
                    NULL);
  tn_collect_sample(c, NULL, keys);
  if (key_age_max >= 0) {
    tn_collect_family(c, TN_GAUGE, "tenancy_tenant_key_age_seconds_max",
                      "Age of the oldest current tenant data key (now - status.keys.rotatedAt), in seconds.",
                      NULL);
    tn_collect_sample(c, NULL, key_age_max);
  }
  if (per_tenant) {
    tn_collect_family(
        c, TN_GAUGE, "tenancy_tenant_info",
        "One series per tenant (--metrics-per-tenant): its state, plan and placement; always 1.",
        (const char *const[]){"tenant", "state", "plan", "region", "isolation", NULL});
    emit_map(c, info, 5);
    tn_collect_family(c, TN_GAUGE, "tenancy_tenant_condition",
                      "One series per tenant condition (--metrics-per-tenant); always 1.",
                      (const char *const[]){"tenant", "type", "status", "reason", NULL});
    emit_map(c, cond1, 4);
    tn_collect_family(
        c, TN_GAUGE, "tenancy_tenant_key_rotated_timestamp_seconds",
        "When the tenant's current data key was made (--metrics-per-tenant), seconds since the epoch.",
        (const char *const[]){"tenant", NULL});
    emit_map(c, key_rotated, 1);
    tn_collect_family(c, TN_GAUGE, "tenancy_tenant_breakglass_grants_active",
                      "Break-glass grants in force now, per tenant (--metrics-per-tenant).",
                      (const char *const[]){"tenant", NULL});
    emit_map(c, bg_tenant, 1);
  }
}

static void acc_free(struct acc *a) {
  json_decref(a->by_state);
  json_decref(a->placements);
  json_decref(a->conditions);
  json_decref(a->bg_states);
  json_decref(a->info);
  json_decref(a->cond1);
  json_decref(a->key_rotated);
  json_decref(a->bg_tenant);
  free(a->bg_expiry);
  memset(a, 0, sizeof *a);
}

static void acc_emit_and_free(struct acc *a, struct tn_collect *c) {
  acc_emit(a, c, a->now);
  acc_free(a);
}

void tn_tenancy_metrics_collect_tenants(struct tn_collect *c, const json_t *tenants, double now,
                                        bool per_tenant) {
  struct acc a;
  acc_init(&a, now, per_tenant);
  size_t i;
  const json_t *t;
  json_array_foreach(tenants, i, t) acc_add(&a, t);
  acc_emit_and_free(&a, c);
}

/* One cached tenant at a time (decoded, counted, dropped): no copy of the whole cache. */
static int add_cached(void *ud, struct tn_store_obj *o) {
  json_t *t = tn_store_obj_decode(o);
  if (t)
    acc_add(ud, t);
  json_decref(t);
  return 0;
}

void tn_tenancy_metrics_collect_store(struct tn_collect *c, struct tn_store *tenants, double now,
                                      bool per_tenant) {
  struct acc a;
  acc_init(&a, now, per_tenant);
  tn_store_foreach(tenants, add_cached, &a);
  acc_emit_and_free(&a, c);
}

/* ---- the counts kept between scrapes ----------------------------------------------------- */

struct tn_tenancy_metrics_memo {
  pthread_mutex_t mu; /* held while counting: a second scrape waits for the first's counts */
  bool valid;
  unsigned long changes; /* tn_store_changes when acc was counted */
  struct acc acc;
  unsigned long recomputes;
};

struct tn_tenancy_metrics_memo *tn_tenancy_metrics_memo_new(void) {
  struct tn_tenancy_metrics_memo *m = calloc(1, sizeof *m);
  if (m)
    pthread_mutex_init(&m->mu, NULL);
  return m;
}

void tn_tenancy_metrics_memo_free(struct tn_tenancy_metrics_memo *m) {
  if (!m)
    return;
  if (m->valid)
    acc_free(&m->acc);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

unsigned long tn_tenancy_metrics_memo_recomputes(struct tn_tenancy_metrics_memo *m) {
  pthread_mutex_lock(&m->mu);
  unsigned long n = m->recomputes;
  pthread_mutex_unlock(&m->mu);
  return n;
}

void tn_tenancy_metrics_collect_memo(struct tn_tenancy_metrics_memo *m, struct tn_collect *c,
                                     struct tn_store *tenants, double now, bool per_tenant) {
  if (!m || per_tenant) { /* the series per tenant say which grants are in force now: counted each time */
    tn_tenancy_metrics_collect_store(c, tenants, now, per_tenant);
    return;
  }
  pthread_mutex_lock(&m->mu);
  /* Read before counting: a change while counting leaves the counter past it, so the next
   * scrape counts again. */
  unsigned long changes = tn_store_changes(tenants);
  if (!m->valid || m->changes != changes) {
    if (m->valid)
      acc_free(&m->acc);
    acc_init(&m->acc, now, false);
    tn_store_foreach(tenants, add_cached, &m->acc);
    m->valid = true;
    m->changes = changes;
    m->recomputes++;
  }
  acc_emit(&m->acc, c, now);
  pthread_mutex_unlock(&m->mu);
}

static void db_op(void *ud, const char *server, const char *operation, const char *result,
                  unsigned long long n) {
  tn_collect_sample(ud, (const char *const[]){server, operation, result, NULL}, (double)n);
}

static void collect(void *ud, struct tn_collect *c) {
  const struct tn_tenancy_metrics_source *src = ud;
  if (src->tenants && tn_informer_has_synced(src->tenants)) {
    tn_tenancy_metrics_collect_memo(src->memo, c, tn_informer_store(src->tenants), tn_wall_now(),
                                    src->per_tenant);
  }
  tn_collect_family(c, TN_COUNTER, "tenancy_database_operations_total",
                    "Tenant database operations (converge, teardown, password_check) by server and result.",
                    (const char *const[]){"server", "operation", "result", NULL});
  tn_db_foreach_op_count(src->db, db_op, c);

  tn_collect_family(c, TN_GAUGE, "tenancy_audit_trail_enabled",
                    "1 when an audit trail is configured (--pg-dsn), else 0 (transitions are not audited).",
                    NULL);
  tn_collect_sample(c, NULL, src->audit ? 1 : 0);
  if (src->audit) {
    struct tn_audit_stats st;
    tn_audit_get_stats(src->audit, &st);
    /* Only a recent answer counts: the leader exports the head every 5 minutes, a standby only
     * pings at start, and a stale 0 or 1 from then would mislead. */
    if (st.up >= 0 && tn_wall_now() - st.last_round_trip <= TN_AUDIT_UP_FRESH_S) {
      tn_collect_family(c, TN_GAUGE, "tenancy_audit_trail_up",
                        "1 when the last round trip to the audit trail (append, head export, ping) within 15 "
                        "minutes succeeded, 0 when it failed; absent without a recent one.",
                        NULL);
      tn_collect_sample(c, NULL, st.up);
    }
    tn_collect_family(c, TN_COUNTER, "tenancy_audit_appends_total", "Rows appended to the audit trail.",
                      NULL);
    tn_collect_sample(c, NULL, (double)st.appends);
    tn_collect_family(c, TN_COUNTER, "tenancy_audit_append_failures_total",
                      "Failed appends to the audit trail (the action waited and was retried).", NULL);
    tn_collect_sample(c, NULL, (double)st.append_failures);
  }
}

int tn_tenancy_metrics_register(struct tn_metrics *m, struct tn_tenancy_metrics_source *src) {
  if (!m || !src)
    return -EINVAL;
  if (!src->memo && !(src->memo = tn_tenancy_metrics_memo_new()))
    return -ENOMEM;
  int rc = tn_metrics_register_collector(m, collect, src);
  if (rc) {
    tn_tenancy_metrics_memo_free(src->memo);
    src->memo = NULL;
  }
  return rc;
}

void tn_tenancy_metrics_unregister(struct tn_metrics *m, struct tn_tenancy_metrics_source *src) {
  if (!m || !src)
    return;
  tn_metrics_unregister_collector(m, collect, src); /* returns once a scrape in progress ended */
  tn_tenancy_metrics_memo_free(src->memo);
  src->memo = NULL;
}
