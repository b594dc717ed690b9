/* kinds_status.c - status of Plans, Regions and TenancyPolicies (see kinds_status.h). */
#include "converge/kinds_status.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "converge/reconciler.h"
#include "runtime/log.h"
#include "tenancy/policy.h"
#include "tenancy/tenant.h"
#include "util/clock.h"

#define PROBE_INTERVAL_S 30.0
#define PROBE_TIMEOUT_S 2.0
#define BATCH_S 0.5 /* tenant events are batched: a burst of them costs one recount */
/* A policy's violations need every tenant parsed and evaluated: a scan is delayed by at least
 * POLICY_COST_FACTOR times what the last one took (so scans use at most ~1/20 of a core), at most
 * POLICY_MAX_DELAY_S. */
#define POLICY_COST_FACTOR 20.0
#define POLICY_MAX_DELAY_S 30.0
/* While tenants pour in, a Plan's or Region's count changes with nearly every tenant; a status
 * write that changes only the count waits until this long after the object's last status write
 * (issue 18: 207 count PUTs for 1,000 tenants before). The exact count is always written once the
 * interval passes, and nothing when it came back to what is stored. */
#define COUNT_INTERVAL_S 5.0

/* One probe result, remembered per region, server and address. */
struct probe {
  char *key;   /* "<region>/<server>/<host>:<port>" */
  double at;   /* monotonic time of the probe */
  double seen; /* last time a reconcile asked for it (pruned when old) */
  bool reachable;
  char message[320];
};

/* What the counts read of one tenant, kept up to date by the tenant handlers: a Plan's and a
 * Region's counts are a walk over these (no tenant decoded), instead of decoding every tenant of
 * the plan on every batch of tenant events (43 s of CPU for 1,000 tenants before, issue 18). */
struct tentry {
  struct tentry *next;
  char *plan, *region; /* NULL when absent */
  bool counts;         /* tenant_counts() */
  char name[];
};

/* When the status of a Plan or Region ("plan/<name>", "region/<name>") was last written. */
struct last_write {
  char *key;
  double at; /* monotonic */
};

struct tn_kinds_status {
  struct tn_kube *kube;
  struct tn_informer *tenants, *plans, *regions, *policies;
  struct tn_controller *ctl;
  double probe_interval_s, probe_timeout_s;
  struct probe *probes; /* only the worker touches them (one worker) */
  size_t n_probes;
  double count_interval_s; /* <= 0: count changes are written at once */
  pthread_mutex_t wmu;     /* protects written: the worker writes, tenant handlers read */
  struct last_write *written;
  size_t n_written;
  pthread_mutex_t tmu;     /* protects the tenant table and policy_scan_s */
  struct tentry **buckets; /* chained hash table by tenant name; n_buckets a power of two */
  size_t n_buckets, n_tentries;
  double policy_scan_s; /* how long the last policy scan took */
};

/* ---- small helpers ---------------------------------------------------------------------------- */

static const char *name_of(const json_t *obj) {
  return json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
}

static const char *str_at(const json_t *obj, const char *a, const char *b, const char *c) {
  const json_t *v = json_object_get(obj, a);
  if (b)
    v = json_object_get(v, b);
  if (c)
    v = json_object_get(v, c);
  return json_string_value(v);
}

/* A Deleted tenant is a tombstone (its id kept, nothing of it left): it uses no plan, is placed
 * nowhere and violates nothing. So is one being removed. */
static bool tenant_counts(const json_t *t) {
  const char *st = str_at(t, "status", "state", NULL);
  if (json_object_get(json_object_get(t, "metadata"), "deletionTimestamp"))
    return false;
  return !(st && strcmp(st, "Deleted") == 0);
}

static void enqueue(struct tn_kinds_status *ks, const char *prefix, const char *name, double after) {
  if (!name || !*name)
    return;
  char key[96];
  if (snprintf(key, sizeof key, "%s/%s", prefix, name) >= (int)sizeof key)
    return;
  if (after > 0)
    tn_controller_enqueue_after(ks->ctl, key, after);
  else
    tn_controller_enqueue(ks->ctl, key);
}

/* ---- the tenant table ------------------------------------------------------------------------ */

static size_t name_hash(const char *s) {
  size_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h ^ (h >> 29);
}

static void tentry_free(struct tentry *e) {
  if (e) {
    free(e->plan);
    free(e->region);
    free(e);
  }
}

static struct tentry **tentry_find(struct tn_kinds_status *ks, const char *name) {
  if (!ks->n_buckets)
    return NULL;
  struct tentry **pp = &ks->buckets[name_hash(name) & (ks->n_buckets - 1)];
  while (*pp && strcmp((*pp)->name, name) != 0)
    pp = &(*pp)->next;
  return pp;
}

static void tentries_grow(struct tn_kinds_status *ks) {
  size_t nb = ks->n_buckets ? ks->n_buckets * 2 : 256;
  struct tentry **b = calloc(nb, sizeof *b);
  if (!b)
    return; /* longer chains, still correct */
  for (size_t i = 0; i < ks->n_buckets; i++) {
    for (struct tentry *e = ks->buckets[i], *next; e; e = next) {
      next = e->next;
      size_t j = name_hash(e->name) & (nb - 1);
      e->next = b[j];
      b[j] = e;
    }
  }
  free(ks->buckets);
  ks->buckets = b;
  ks->n_buckets = nb;
}

static char *dup_nonempty(const char *s) { return s && *s ? strdup(s) : NULL; }

/* Records what the counts read of tenant t (its plan, region and whether it counts). */
static void tentry_set(struct tn_kinds_status *ks, const json_t *t) {
  const char *name = name_of(t);
  if (!name)
    return;
  const char *plan = str_at(t, "spec", "plan", NULL), *region = str_at(t, "status", "placement", "region");
  bool counts = tenant_counts(t);
  pthread_mutex_lock(&ks->tmu);
  if (ks->n_tentries >= ks->n_buckets)
    tentries_grow(ks);
  struct tentry **pp = tentry_find(ks, name), *e = pp ? *pp : NULL;
  if (pp && e) {
    bool same_plan = (!e->plan && !(plan && *plan)) || (e->plan && plan && strcmp(e->plan, plan) == 0);
    bool same_region =
        (!e->region && !(region && *region)) || (e->region && region && strcmp(e->region, region) == 0);
    if (!same_plan) {
      free(e->plan);
      e->plan = dup_nonempty(plan);
    }
    if (!same_region) {
      free(e->region);
      e->region = dup_nonempty(region);
    }
    e->counts = counts;
  } else if (pp) {
    size_t nl = strlen(name);
    if ((e = calloc(1, sizeof *e + nl + 1)) != NULL) {
      memcpy(e->name, name, nl + 1);
      e->plan = dup_nonempty(plan);
      e->region = dup_nonempty(region);
      e->counts = counts;
      *pp = e;
      ks->n_tentries++;
    }
  }
  pthread_mutex_unlock(&ks->tmu);
}

static void tentry_del(struct tn_kinds_status *ks, const char *name) {
  if (!name)
    return;
  pthread_mutex_lock(&ks->tmu);
  struct tentry **pp = tentry_find(ks, name);
  if (pp && *pp) {
    struct tentry *e = *pp;
    *pp = e->next;
    tentry_free(e);
    ks->n_tentries--;
  }
  pthread_mutex_unlock(&ks->tmu);
}

/* Tenants that count whose plan (by_region false) or placement region (true) is value. */
static long long tentries_count(struct tn_kinds_status *ks, bool by_region, const char *value) {
  long long n = 0;
  pthread_mutex_lock(&ks->tmu);
  for (size_t i = 0; i < ks->n_buckets; i++) {
    for (const struct tentry *e = ks->buckets[i]; e; e = e->next) {
      const char *v = by_region ? e->region : e->plan;
      n += e->counts && v && strcmp(v, value) == 0;
    }
  }
  pthread_mutex_unlock(&ks->tmu);
  return n;
}

static double policy_delay(struct tn_kinds_status *ks) {
  pthread_mutex_lock(&ks->tmu);
  double d = ks->policy_scan_s * POLICY_COST_FACTOR;
  pthread_mutex_unlock(&ks->tmu);
  return d < BATCH_S ? BATCH_S : d > POLICY_MAX_DELAY_S ? POLICY_MAX_DELAY_S : d;
}

/* ---- handlers --------------------------------------------------------------------------------- */

static void plan_event(void *ud, json_t *obj) { enqueue(ud, "plan", name_of(obj), 0); }
static void plan_update(void *ud, json_t *old, json_t *cur) { plan_event(ud, cur); }
static void all_policies(struct tn_kinds_status *ks, double after) {
  json_t *pols = tn_informer_list(ks->policies);
  size_t i;
  json_t *p;
  json_array_foreach(pols, i, p) enqueue(ks, "policy", name_of(p), after);
  json_decref(pols);
}

/* A Region change also concerns the policies: requireDatabaseTLS reads its servers' sslMode. */
static void region_event(void *ud, json_t *obj) {
  enqueue(ud, "region", name_of(obj), 0);
  all_policies(ud, BATCH_S);
}
static void region_update(void *ud, json_t *old, json_t *cur) {
  enqueue(ud, "region", name_of(cur), 0);
  if (!json_equal(json_object_get(old, "spec"), json_object_get(cur, "spec")))
    all_policies(ud, BATCH_S);
}

static void policy_event(void *ud, json_t *obj) { enqueue(ud, "policy", name_of(obj), 0); }
static void policy_update(void *ud, json_t *old, json_t *cur) { policy_event(ud, cur); }

static double touch_delay(struct tn_kinds_status *ks, const char *prefix, const char *name);

static void tenant_touches(struct tn_kinds_status *ks, const json_t *t) {
  const char *plan = str_at(t, "spec", "plan", NULL), *region = str_at(t, "status", "placement", "region");
  enqueue(ks, "plan", plan, touch_delay(ks, "plan", plan));
  enqueue(ks, "region", region, touch_delay(ks, "region", region));
}

static void tenant_event(void *ud, json_t *obj) {
  struct tn_kinds_status *ks = ud;
  tentry_set(ks, obj);
  tenant_touches(ks, obj);
  all_policies(ks, policy_delay(ks));
}

static void tenant_deleted(void *ud, json_t *obj) {
  struct tn_kinds_status *ks = ud;
  tentry_del(ks, name_of(obj));
  tenant_touches(ks, obj);
  all_policies(ks, policy_delay(ks));
}

/* What of a Tenant the counts and the policy evaluation read. */
static bool tenant_relevant_change(const json_t *old, const json_t *cur) {
  static const char *const status_keys[] = {"state", "placement", "database", NULL};
  if (!json_equal(json_object_get(old, "spec"), json_object_get(cur, "spec")))
    return true;
  if (!json_equal(json_object_get(json_object_get(old, "metadata"), "deletionTimestamp"),
                  json_object_get(json_object_get(cur, "metadata"), "deletionTimestamp")))
    return true;
  const json_t *so = json_object_get(old, "status"), *sc = json_object_get(cur, "status");
  for (int i = 0; status_keys[i]; i++)
    if (!json_equal(json_object_get(so, status_keys[i]), json_object_get(sc, status_keys[i])))
      return true;
  return false;
}

static void tenant_update(void *ud, json_t *old, json_t *cur) {
  struct tn_kinds_status *ks = ud;
  if (old == cur) { /* the periodic resync: the counts are recomputed (and written only if changed) */
    tenant_event(ud, cur);
    return;
  }
  if (!tenant_relevant_change(old, cur))
    return; /* a status change nothing here reads */
  tentry_set(ks, cur);
  tenant_touches(ks, old); /* the plan or region it left */
  tenant_touches(ks, cur);
  all_policies(ks, policy_delay(ks));
}

/* ---- status --------------------------------------------------------------------------------- */

static json_t *old_condition(const json_t *old_status, const char *type) {
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(old_status, "conditions"), i, c) {
    const char *t = json_string_value(json_object_get(c, "type"));
    if (t && strcmp(t, type) == 0)
      return c;
  }
  return NULL;
}

/* Appends a condition; lastTransitionTime is kept while status stays the same. */
static void add_condition(json_t *conds, const json_t *old_status, const char *type, bool ok,
                          const char *reason, const char *message, long long gen) {
  const char *st = ok ? "True" : "False";
  json_t *old = old_condition(old_status, type);
  const char *old_st = json_string_value(json_object_get(old, "status"));
  const char *ltt = old && old_st && strcmp(old_st, st) == 0
                        ? json_string_value(json_object_get(old, "lastTransitionTime"))
                        : NULL;
  char now[40];
  if (!ltt) {
    tn_time_rfc3339(tn_wall_now(), now, sizeof now);
    ltt = now;
  }
  json_array_append_new(conds, json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "type", type, "status", st, "reason",
                                         reason, "message", message, "lastTransitionTime", ltt,
                                         "observedGeneration", (json_int_t)gen));
}

static long long generation_of(const json_t *obj) {
  return (long long)json_integer_value(json_object_get(json_object_get(obj, "metadata"), "generation"));
}

/* Writes status (taken) to obj (borrowed, a cache copy) unless it is what obj holds already. */
static struct tn_result write_status(struct tn_kinds_status *ks, const struct tn_gvr *gvr, json_t *obj,
                                     json_t *status, bool *wrote) {
  *wrote = false;
  struct tn_log_fields lf = TN_LOG_FIELDS_INIT;
  lf.controller = "kinds-status";
  if (!status) {
    tn_log(TN_LOG_ERROR, &lf, "out of memory computing the status of %s %s", gvr->resource, name_of(obj));
    return TN_RESULT_ERR;
  }
  if (json_equal(json_object_get(obj, "status"), status)) {
    json_decref(status);
    return TN_RESULT_OK;
  }
  json_object_set_new(obj, "status", status);
  struct tn_error err = {0};
  json_t *out = NULL;
  int rc = tn_kube_update(ks->kube, gvr, NULL, obj, "status", &out, &err);
  json_decref(out);
  if (rc == TN_ECONFLICT || rc == TN_ENOTFOUND) {
    /* The cache is behind (its watch event is on the way) or the object is gone. */
    tn_log(TN_LOG_DEBUG, &lf, "status of %s %s: %s", gvr->resource, name_of(obj), err.message);
    return rc == TN_ECONFLICT ? TN_RESULT_AFTER(1) : TN_RESULT_OK;
  }
  if (rc) {
    tn_log(TN_LOG_WARN, &lf, "writing the status of %s %s: %s", gvr->resource, name_of(obj), err.message);
    return TN_RESULT_ERR;
  }
  tn_log(TN_LOG_DEBUG, &lf, "status of %s %s written", gvr->resource, name_of(obj));
  *wrote = true;
  return TN_RESULT_OK;
}

/* ---- count writes, at most every count_interval_s per object ---------------------------------- */

double tn_kinds_status_count_wait(const json_t *old_status, const json_t *new_status, const char *count_key,
                                  double last_write, double now, double interval_s) {
  if (interval_s <= 0 || last_write < 0 || !json_is_object(old_status) || !json_is_object(new_status) ||
      json_equal(old_status, new_status))
    return 0;
  double due = last_write + interval_s - now;
  if (due <= 0)
    return 0;
  /* Only the count differs? The stored status with the new count must then be the new status. */
  json_t *o = json_copy((json_t *)old_status); /* shallow: only count_key is replaced */
  if (!o)
    return 0;
  json_t *c = json_object_get(new_status, count_key);
  if (c)
    json_object_set(o, count_key, c);
  else
    json_object_del(o, count_key);
  bool only_count = json_equal(o, new_status);
  json_decref(o);
  return only_count ? due : 0;
}

static struct last_write *last_write_slot(struct tn_kinds_status *ks, const char *key, bool create) {
  for (size_t i = 0; i < ks->n_written; i++)
    if (strcmp(ks->written[i].key, key) == 0)
      return &ks->written[i];
  if (!create)
    return NULL;
  /* Forget objects not written for a long while (deleted ones among them). */
  double now = tn_mono_now();
  size_t j = 0;
  for (size_t i = 0; i < ks->n_written; i++) {
    if (now - ks->written[i].at > 120.0 && now - ks->written[i].at > 10 * ks->count_interval_s) {
      free(ks->written[i].key);
      continue;
    }
    ks->written[j++] = ks->written[i];
  }
  ks->n_written = j;
  struct last_write *nw = realloc(ks->written, (ks->n_written + 1) * sizeof *nw);
  if (!nw)
    return NULL;
  ks->written = nw;
  struct last_write *w = &ks->written[ks->n_written];
  if (!(w->key = strdup(key)))
    return NULL;
  w->at = -1;
  ks->n_written++;
  return w;
}

/* Seconds until status (new) may replace obj's when only its count changed; 0: write now. */
static double count_wait(struct tn_kinds_status *ks, const char *prefix, const char *name, const json_t *obj,
                         const json_t *status, const char *count_key) {
  char key[96];
  snprintf(key, sizeof key, "%s/%s", prefix, name);
  pthread_mutex_lock(&ks->wmu);
  struct last_write *w = last_write_slot(ks, key, false);
  double at = w ? w->at : -1;
  pthread_mutex_unlock(&ks->wmu);
  return w ? tn_kinds_status_count_wait(json_object_get(obj, "status"), status, count_key, at, tn_mono_now(),
                                        ks->count_interval_s)
           : 0;
}

static void note_written(struct tn_kinds_status *ks, const char *prefix, const char *name) {
  char key[96];
  snprintf(key, sizeof key, "%s/%s", prefix, name);
  pthread_mutex_lock(&ks->wmu);
  struct last_write *w = last_write_slot(ks, key, true);
  if (w)
    w->at = tn_mono_now();
  pthread_mutex_unlock(&ks->wmu);
}

/* When a tenant event should bring back the Plan or Region key: a tenant changes only its count
 * there, and a count waits until count_interval_s after the object's last status write (above),
 * so a reconcile before then would find only that to wait for (issue 18: they were a third of
 * the reconciles while 1,000 tenants converged). */
static double touch_delay(struct tn_kinds_status *ks, const char *prefix, const char *name) {
  char key[96];
  if (!name || snprintf(key, sizeof key, "%s/%s", prefix, name) >= (int)sizeof key ||
      ks->count_interval_s <= 0)
    return BATCH_S;
  pthread_mutex_lock(&ks->wmu);
  struct last_write *w = last_write_slot(ks, key, false);
  double at = w ? w->at : -1;
  pthread_mutex_unlock(&ks->wmu);
  double due = at >= 0 ? at + ks->count_interval_s - tn_mono_now() : 0;
  return due > BATCH_S ? due : BATCH_S;
}

/* ---- Plan ----------------------------------------------------------------------------------- */

static struct tn_result reconcile_plan(struct tn_kinds_status *ks, const char *name) {
  json_t *obj = tn_informer_get(ks->plans, name);
  if (!obj)
    return TN_RESULT_OK;
  long long gen = generation_of(obj);
  struct tn_plan *p = NULL;
  struct tn_error perr = {0};
  bool valid = tn_plan_parse(obj, &p, &perr) == 0;
  tn_plan_free(p);

  long long count = tentries_count(ks, false, name);

  const json_t *old = json_object_get(obj, "status");
  json_t *conds = json_array();
  char msg[1200];
  if (valid) {
    add_condition(conds, old, "Valid", true, "Valid", "the plan is valid", gen);
    snprintf(msg, sizeof msg, "tenants on the plan get its quotas, rate limits and features");
    add_condition(conds, old, "Ready", true, "Ready", msg, gen);
  } else {
    snprintf(msg, sizeof msg, "%s: correct the Plan; its tenants report QuotaApplied False until then",
             perr.message);
    add_condition(conds, old, "Valid", false, "InvalidPlan", msg, gen);
    add_condition(conds, old, "Ready", false, "InvalidPlan", msg, gen);
  }
  json_t *status = json_pack("{s:I,s:I,s:o}", "observedGeneration", (json_int_t)gen, "tenantsCount",
                             (json_int_t)count, "conditions", conds);
  double wait = count_wait(ks, "plan", name, obj, status, "tenantsCount");
  if (wait > 0) { /* only the count changed, and it was written less than the interval ago */
    json_decref(status);
    json_decref(obj);
    return TN_RESULT_AFTER(wait);
  }
  bool wrote;
  struct tn_result res = write_status(ks, &tn_gvr_plans, obj, status, &wrote);
  if (wrote)
    note_written(ks, "plan", name);
  json_decref(obj);
  return res;
}

/* ---- Region --------------------------------------------------------------------------------- */

static struct probe *probe_slot(struct tn_kinds_status *ks, const char *key) {
  for (size_t i = 0; i < ks->n_probes; i++)
    if (strcmp(ks->probes[i].key, key) == 0)
      return &ks->probes[i];
  struct probe *np = realloc(ks->probes, (ks->n_probes + 1) * sizeof *np);
  if (!np)
    return NULL;
  ks->probes = np;
  struct probe *p = &ks->probes[ks->n_probes];
  memset(p, 0, sizeof *p);
  if (!(p->key = strdup(key)))
    return NULL;
  ks->n_probes++;
  p->at = -1;
  return p;
}

/* Forgets probes no reconcile asked for in a long while (servers removed, hosts changed). */
static void probes_prune(struct tn_kinds_status *ks, double now) {
  size_t j = 0;
  for (size_t i = 0; i < ks->n_probes; i++) {
    if (now - ks->probes[i].seen > 10 * ks->probe_interval_s) {
      free(ks->probes[i].key);
      continue;
    }
    ks->probes[j++] = ks->probes[i];
  }
  ks->n_probes = j;
}

/* PQping: the server answers the PostgreSQL protocol. No credentials are offered (empty
 * password, no password file), TLS when the server offers it, no GSSAPI. */
static void probe_server(const char *host, long port, double timeout_s, struct probe *p) {
  char port_s[16], timeout[16];
  snprintf(port_s, sizeof port_s, "%ld", port);
  snprintf(timeout, sizeof timeout, "%d", timeout_s < 2 ? 2 : (int)timeout_s);
  const char *const kw[] = {
      "host",    "port",       "dbname",           "user", "password", "passfile", "connect_timeout",
      "sslmode", "gssencmode", "application_name", NULL};
  const char *const val[] = {host,       port_s,
                             "postgres", "tenancy-operator-probe",
                             "",         "/nonexistent/tenancy-operator-probe.pgpass",
                             timeout,    "prefer",
                             "disable",  "tenancy-operator-probe",
                             NULL};
  PGPing r = PQpingParams(kw, val, 0);
  p->reachable = r == PQPING_OK;
  switch (r) {
  case PQPING_OK:
    snprintf(p->message, sizeof p->message, "%.253s:%ld accepts connections", host, port);
    break;
  case PQPING_REJECT:
    snprintf(p->message, sizeof p->message,
             "%.253s:%ld answers but accepts no connections (starting up, shutting down or in recovery)",
             host, port);
    break;
  case PQPING_NO_RESPONSE:
    snprintf(p->message, sizeof p->message,
             "no PostgreSQL answer from %.253s:%ld within %s s: check the host, the port and the network "
             "between the operator and the server",
             host, port, timeout);
    break;
  default:
    snprintf(p->message, sizeof p->message, "%.253s:%ld could not be probed (invalid connection parameters)",
             host, port);
    break;
  }
}

/* Probes every server of the region that is due; fills servers[] and the counts. Returns the
 * seconds until the next probe is due (0 when the region lists none). */
static double region_servers(struct tn_kinds_status *ks, const char *region, const json_t *spec,
                             json_t *servers, int *n_ok, int *n_all, char *bad, size_t n_bad) {
  double now = tn_mono_now(), next = 0;
  size_t i, off = 0;
  json_t *s;
  *n_ok = *n_all = 0;
  bad[0] = '\0';
  json_array_foreach(json_object_get(spec, "databaseServers"), i, s) {
    const char *name = json_string_value(json_object_get(s, "name"));
    const char *host = json_string_value(json_object_get(s, "host"));
    json_t *pv = json_object_get(s, "port");
    long port = json_is_integer(pv) ? (long)json_integer_value(pv) : 5432;
    if (!name || !host)
      continue;
    char key[512];
    snprintf(key, sizeof key, "%s/%s/%s:%ld", region, name, host, port);
    struct probe *p = probe_slot(ks, key);
    if (!p)
      continue;
    p->seen = now;
    if (p->at < 0 || now - p->at >= ks->probe_interval_s) {
      probe_server(host, port, ks->probe_timeout_s, p);
      now = tn_mono_now();
      p->at = now;
      p->seen = now;
    }
    double due = p->at + ks->probe_interval_s - now;
    if (next == 0 || due < next)
      next = due > 0.5 ? due : 0.5;
    (*n_all)++;
    *n_ok += p->reachable;
    if (!p->reachable && off < n_bad)
      off += (size_t)snprintf(bad + off, n_bad - off, "%s%s: %s", off ? "; " : "", name, p->message);
    json_array_append_new(
        servers, json_pack("{s:s,s:b,s:s}", "name", name, "reachable", p->reachable, "message", p->message));
  }
  return next;
}

static struct tn_result reconcile_region(struct tn_kinds_status *ks, const char *name) {
  json_t *obj = tn_informer_get(ks->regions, name);
  if (!obj)
    return TN_RESULT_OK;
  long long gen = generation_of(obj);
  const json_t *spec = json_object_get(obj, "spec");
  bool available = json_is_true(json_object_get(spec, "available"));
  struct tn_policy_region *r = NULL;
  struct tn_error perr = {0};
  bool valid = tn_policy_region_parse(obj, &r, &perr) == 0;
  tn_policy_region_free(r);

  long long placed = tentries_count(ks, true, name);

  json_t *servers = json_array();
  int n_ok = 0, n_all = 0;
  char bad[1600], msg[2048], ready[32];
  double next = region_servers(ks, name, spec, servers, &n_ok, &n_all, bad, sizeof bad);
  probes_prune(ks, tn_mono_now());
  snprintf(ready, sizeof ready, "%d/%d", n_ok, n_all);

  const json_t *old = json_object_get(obj, "status");
  json_t *conds = json_array();
  if (!valid) {
    snprintf(msg, sizeof msg, "%s: correct the Region; tenants are not placed by it until then",
             perr.message);
    add_condition(conds, old, "Ready", false, "InvalidRegion", msg, gen);
  } else if (n_ok < n_all) {
    snprintf(msg, sizeof msg, "%d of %d database servers reachable: %s", n_ok, n_all, bad);
    add_condition(conds, old, "Ready", false, "DatabaseServerUnreachable", msg, gen);
  } else if (n_all == 0) {
    add_condition(conds, old, "Ready", true, "NoDatabaseServers",
                  "the region lists no database servers; its tenants get no database", gen);
  } else {
    snprintf(msg, sizeof msg, "all %d database servers reachable", n_all);
    add_condition(conds, old, "Ready", true, "DatabaseServersReachable", msg, gen);
  }
  if (available)
    add_condition(conds, old, "Available", true, "Available", "new tenants may be placed in the region", gen);
  else
    add_condition(conds, old, "Available", false, "Unavailable",
                  "spec.available is false: no new tenant is placed here; tenants already placed stay", gen);
  json_t *status = json_pack("{s:I,s:b,s:I,s:o,s:s,s:o}", "observedGeneration", (json_int_t)gen, "available",
                             available, "tenantsPlaced", (json_int_t)placed, "databaseServers", servers,
                             "databaseServersReady", ready, "conditions", conds);
  /* FAILOVER (issue 16): status.failover belongs to the failover controller: kept as it is. */
  json_t *fo = json_object_get(old, "failover");
  if (status && fo)
    json_object_set(status, "failover", fo);
  double wait = count_wait(ks, "region", name, obj, status, "tenantsPlaced");
  if (wait > 0) { /* only the count changed, and it was written less than the interval ago */
    json_decref(status);
    json_decref(obj);
    return TN_RESULT_AFTER(next > 0 && next < wait ? next : wait);
  }
  bool wrote;
  struct tn_result res = write_status(ks, &tn_gvr_regions, obj, status, &wrote);
  if (wrote)
    note_written(ks, "region", name);
  json_decref(obj);
  if (res.kind == TN_RESULT_SUCCESS && next > 0)
    res = TN_RESULT_AFTER(next); /* the next probe */
  return res;
}

/* ---- TenancyPolicy ------------------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The tenants violating policy p (only its own rules), their count, and up to max names. */
static long long policy_violators(struct tn_kinds_status *ks, const struct tn_policy *p, json_t *names_out) {
  json_t *region_objs = tn_informer_list(ks->regions), *tenants = tn_informer_list(ks->tenants);
  size_t nr = json_array_size(region_objs), n_regions = 0, i;
  struct tn_policy_region **regions = calloc(nr ? nr : 1, sizeof *regions);
  json_t *o;
  long long count = 0;
  char **names = NULL;
  size_t n_names = 0;
  if (!regions || !region_objs || !tenants)
    goto out;
  json_array_foreach(region_objs, i, o) {
    struct tn_error e = {0};
    if (tn_policy_region_parse(o, &regions[n_regions], &e) == 0)
      n_regions++;
  }
  names = calloc(json_array_size(tenants) + 1, sizeof *names);
  if (!names)
    goto out;
  const struct tn_policy *const one[] = {p};
  json_array_foreach(tenants, i, o) {
    if (!tenant_counts(o))
      continue;
    struct tn_tenant *t = NULL;
    struct tn_error e = {0};
    if (tn_tenant_parse(o, &t, &e))
      continue; /* an unparsable tenant is reported on the tenant itself */
    struct tn_policy_input in = {.tenant = t,
                                 .regions = (const struct tn_policy_region *const *)regions,
                                 .n_regions = n_regions,
                                 .policies = one,
                                 .n_policies = 1};
    tn_policy_tenant_fields(o, &in.quota_overrides, &in.database_server);
    struct tn_policy_result pr;
    bool violates = false;
    if (tn_policy_evaluate(&in, &pr, &e) == TN_EINVALID)
      for (size_t k = 0; k < pr.n_violations; k++)
        violates |= pr.violations[k].policy && strcmp(pr.violations[k].policy, p->name) == 0;
    tn_policy_result_cleanup(&pr);
    if (violates) {
      count++;
      names[n_names++] = t->name;
      t->name = NULL; /* kept for the list */
    }
    tn_tenant_free(t);
  }
  qsort(names, n_names, sizeof *names, cmp_str);
  for (size_t k = 0; k < n_names && k < TN_KINDS_STATUS_MAX_NAMES; k++)
    json_array_append_new(names_out, json_string(names[k]));
out:
  for (size_t k = 0; k < n_names; k++)
    free(names[k]);
  free(names);
  for (size_t k = 0; k < n_regions; k++)
    tn_policy_region_free(regions[k]);
  free(regions);
  json_decref(region_objs);
  json_decref(tenants);
  return count;
}

static struct tn_result reconcile_policy(struct tn_kinds_status *ks, const char *name) {
  json_t *obj = tn_informer_get(ks->policies, name);
  if (!obj)
    return TN_RESULT_OK;
  long long gen = generation_of(obj);
  struct tn_policy *p = NULL;
  struct tn_error perr = {0};
  bool valid = tn_policy_parse(obj, &p, &perr) == 0;
  json_t *names = json_array();
  double t0 = tn_mono_now();
  long long count = valid ? policy_violators(ks, p, names) : 0;
  double took = tn_mono_now() - t0;
  pthread_mutex_lock(&ks->tmu);
  ks->policy_scan_s = took;
  pthread_mutex_unlock(&ks->tmu);
  tn_policy_free(p);

  const json_t *old = json_object_get(obj, "status");
  json_t *conds = json_array();
  char msg[1200];
  if (valid) {
    add_condition(conds, old, "Valid", true, "Valid", "the policy is valid", gen);
    add_condition(conds, old, "Ready", true, "Enforced",
                  "the policy is evaluated for every tenant before each transition", gen);
  } else {
    snprintf(msg, sizeof msg, "%s: correct the policy; tenants are evaluated without it until then",
             perr.message);
    add_condition(conds, old, "Valid", false, "InvalidPolicy", msg, gen);
    add_condition(conds, old, "Ready", false, "InvalidPolicy", msg, gen);
  }
  json_t *status = json_pack("{s:I,s:I,s:o,s:o}", "observedGeneration", (json_int_t)gen, "tenantsInViolation",
                             (json_int_t)count, "violatingTenants", names, "conditions", conds);
  bool wrote;
  struct tn_result res = write_status(ks, &tn_gvr_policies, obj, status, &wrote);
  json_decref(obj);
  return res;
}

/* ---- the controller ------------------------------------------------------------------------------ */

struct tn_result tn_kinds_status_reconcile(void *ud, const char *key) {
  struct tn_kinds_status *ks = ud;
  const char *slash = strchr(key, '/');
  if (!slash)
    return TN_RESULT_OK;
  size_t n = (size_t)(slash - key);
  if (n == 4 && strncmp(key, "plan", 4) == 0)
    return reconcile_plan(ks, slash + 1);
  if (n == 6 && strncmp(key, "region", 6) == 0)
    return reconcile_region(ks, slash + 1);
  if (n == 6 && strncmp(key, "policy", 6) == 0)
    return reconcile_policy(ks, slash + 1);
  return TN_RESULT_OK;
}

int tn_kinds_status_new(const struct tn_kinds_status_config *cfg, struct tn_kinds_status **out,
                        struct tn_error *err) {
  *out = NULL;
  struct tn_kinds_status *ks = calloc(1, sizeof *ks);
  if (!ks)
    return tn_error_set(err, -ENOMEM, "out of memory");
  ks->kube = cfg->kube;
  ks->tenants = cfg->tenants;
  ks->plans = cfg->plans;
  ks->regions = cfg->regions;
  ks->policies = cfg->policies;
  ks->probe_interval_s = cfg->probe_interval_s > 0 ? cfg->probe_interval_s : PROBE_INTERVAL_S;
  ks->probe_timeout_s = cfg->probe_timeout_s > 0 ? cfg->probe_timeout_s : PROBE_TIMEOUT_S;
  ks->count_interval_s = cfg->count_interval_s == 0 ? COUNT_INTERVAL_S : cfg->count_interval_s;
  pthread_mutex_init(&ks->tmu, NULL);
  pthread_mutex_init(&ks->wmu, NULL);
  struct tn_controller_config cc = {.name = "kinds-status",
                                    .workers = 1,
                                    .reconcile = tn_kinds_status_reconcile,
                                    .ud = ks,
                                    .metrics = cfg->metrics};
  if (!(ks->ctl = tn_controller_new(&cc))) {
    free(ks);
    return tn_error_set(err, -ENOMEM, "cannot create the kinds-status controller");
  }
  struct tn_informer_handlers ph = {plan_event, plan_update, plan_event, ks};
  struct tn_informer_handlers rh = {region_event, region_update, region_event, ks};
  struct tn_informer_handlers polh = {policy_event, policy_update, policy_event, ks};
  struct tn_informer_handlers th = {tenant_event, tenant_update, tenant_deleted, ks};
  int rc;
  if ((rc = tn_informer_add_handlers(ks->plans, &ph, err)) ||
      (rc = tn_informer_add_handlers(ks->regions, &rh, err)) ||
      (rc = tn_informer_add_handlers(ks->policies, &polh, err)) ||
      (rc = tn_informer_add_handlers(ks->tenants, &th, err))) {
    tn_kinds_status_free(ks);
    return rc;
  }
  *out = ks;
  return 0;
}

int tn_kinds_status_start(struct tn_kinds_status *ks) { return tn_controller_start(ks->ctl); }

void tn_kinds_status_stop(struct tn_kinds_status *ks, double deadline_s) {
  if (ks && ks->ctl)
    tn_controller_stop(ks->ctl, deadline_s);
}

void tn_kinds_status_abandon(struct tn_kinds_status *ks) {
  if (ks && ks->ctl)
    tn_controller_abandon(ks->ctl);
}

void tn_kinds_status_free(struct tn_kinds_status *ks) {
  if (!ks)
    return;
  tn_controller_free(ks->ctl);
  for (size_t i = 0; i < ks->n_probes; i++)
    free(ks->probes[i].key);
  free(ks->probes);
  for (size_t i = 0; i < ks->n_written; i++)
    free(ks->written[i].key);
  free(ks->written);
  for (size_t i = 0; i < ks->n_buckets; i++) {
    for (struct tentry *e = ks->buckets[i], *next; e; e = next) {
      next = e->next;
      tentry_free(e);
    }
  }
  free(ks->buckets);
  pthread_mutex_destroy(&ks->tmu);
  pthread_mutex_destroy(&ks->wmu);
  free(ks);
}
