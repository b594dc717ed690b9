/* manager.c - the tenancy operator's informers and tenant controller (see manager.h).
 *
 * Caches: Tenants, Plans and Regions whole (minus managedFields); the five owned kinds only
 * with label app.kubernetes.io/managed-by=tenancy-operator and only the fields the diff reads.
 * Event handlers map every change to the keys of the tenants to reconcile. */
#include "converge/manager.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converge/admission.h"
#include "converge/kinds_status.h"
#include "converge/migration.h"
#include "converge/reconcile_triggers.h"
#include "converge/reconciler.h"
#include "converge/tenancy_metrics.h"
#include "converge/tenant_changes.h"
#include "converge/tenant_keys.h"
#include "failover/failover.h" /* FAILOVER (issue 16) */
#include "kube/informer.h"
#include "runtime/controller.h"
#include "runtime/log.h"
#include "util/clock.h"
#include "webhooks/controller.h"

struct owned_ud {
  struct tn_manager *m;
  int kind; /* TN_TRIGGER_KIND_* of reconcile_triggers.h */
};

struct tn_manager {
  struct tn_reconciler rec;
  struct tn_controller *ctl;
  struct tn_triggers *triggers;               /* why each tenant reconcile ran (issue 18) */
  struct owned_ud owned_ud[TN_TRIGGER_KINDS]; /* the owned informers' handler data */
  double sync_period_s;                       /* the Tenant informer's resync period */
  struct tn_informer *all[6 + TN_KIND_COUNT]; /* every informer, for start/stop/sync */
  size_t n_all;
  bool controllers_started;
  struct tn_kek_secret *kek;
  char *region_secret_namespaces; /* rec.region_secret_namespaces points here */
  struct tn_metrics *metrics;     /* borrowed; the tenancy collector's registry (NULL: none) */
  struct tn_tenancy_metrics_source metrics_src;
  struct tn_kinds_status *kinds;     /* status of Plans, Regions and TenancyPolicies */
  struct tn_wh_controller *webhooks; /* NULL without a database */
  struct tn_failover *failover;      /* FAILOVER (issue 16): Region standbys and failover */
  struct tn_migrations *migrations;  /* MIGRATION (issue 16): the TenantMigration controller */
};

/* ---- transforms and indexes ----------------------------------------------------------------- */

static json_t *drop_managed_fields(json_t *obj, void *ud) {
  json_object_del(json_object_get(obj, "metadata"), "managedFields");
  return obj;
}

/* No metadata.uid: ~20 bytes of random text that do not compress, read only by a delete, which
 * GETs it then (owned_delete.h). RoleBindings keep it: break-glass revocations read it. */
static const char *const owned_paths[] = {"apiVersion",
                                          "kind",
                                          "metadata.name",
                                          "metadata.namespace",
                                          "metadata.resourceVersion",
                                          "metadata.labels",
                                          "metadata.annotations",
                                          "metadata.ownerReferences",
                                          "metadata.deletionTimestamp",
                                          "spec",
                                          "roleRef",
                                          "subjects",
                                          NULL};
static const char *const rolebinding_paths[] = {"apiVersion",
                                                "kind",
                                                "metadata.name",
                                                "metadata.namespace",
                                                "metadata.uid",
                                                "metadata.resourceVersion",
                                                "metadata.labels",
                                                "metadata.annotations",
                                                "metadata.ownerReferences",
                                                "metadata.deletionTimestamp",
                                                "roleRef",
                                                "subjects",
                                                NULL};
static const char *const secret_paths[] = {"apiVersion",
                                           "kind",
                                           "metadata.name",
                                           "metadata.namespace",
                                           "metadata.uid",
                                           "metadata.resourceVersion",
                                           "metadata.labels",
                                           "metadata.annotations",
                                           "metadata.ownerReferences",
                                           "type",
                                           "data",
                                           NULL};
static const char *const namespace_paths[] = {"apiVersion",
                                              "kind",
                                              "metadata.name",
                                              "metadata.resourceVersion",
                                              "metadata.labels",
                                              "metadata.annotations",
                                              "metadata.ownerReferences",
                                              "metadata.deletionTimestamp",
                                              NULL};

static json_t *project_owned(json_t *obj, void *ud) {
  json_t *p = tn_store_project(obj, ud ? (const char *const *)ud : owned_paths);
  json_decref(obj);
  return p;
}

static int index_by_tenant_label(const json_t *obj, void *ud, struct tn_index_values *out) {
  const char *t = json_string_value(
      json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), TN_LABEL_TENANT));
  return t ? tn_index_values_add(out, t) : 0;
}

static int index_by_plan(const json_t *obj, void *ud, struct tn_index_values *out) {
  const char *p = json_string_value(json_object_get(json_object_get(obj, "spec"), "plan"));
  return p ? tn_index_values_add(out, p) : 0;
}

/* ---- handlers: which tenants to reconcile ------------------------------------------------------ */

/* Every enqueue of a tenant names its trigger (reconcile_triggers.h). */
static void want(struct tn_manager *m, const char *key, enum tn_trigger trig, int kind) {
  tn_triggers_note(m->triggers, key, trig, kind);
  tn_controller_enqueue(m->ctl, key);
}

static void want_object(struct tn_manager *m, json_t *obj, enum tn_trigger trig) {
  char key[512];
  if (tn_object_key(obj, key, sizeof key) == 0)
    want(m, key, trig, TN_TRIGGER_KIND_NONE);
}

static void tenant_added(void *ud, json_t *obj) { want_object(ud, obj, TN_TRIGGER_TENANT_ADDED); }
static void tenant_deleted(void *ud, json_t *obj) { want_object(ud, obj, TN_TRIGGER_TENANT_DELETED); }

static long long generation_of(json_t *obj) {
  return json_integer_value(json_object_get(json_object_get(obj, "metadata"), "generation"));
}

static void tenant_updated(void *ud, json_t *old, json_t *cur) {
  struct tn_manager *m = ud;
  if (old == cur) {
    /* The periodic resync is the safety net for an event missed: a tenant whose last reconcile
     * began within the last half period was checked already (so every tenant is still checked
     * at least every 1.5 periods). */
    char key[512];
    if (tn_object_key(cur, key, sizeof key) != 0)
      return;
    if (tn_triggers_recent(m->triggers, key, m->sync_period_s / 2, tn_mono_now())) {
      tn_triggers_skipped(m->triggers, TN_SKIP_RESYNC_RECENT);
      return;
    }
    want(m, key, TN_TRIGGER_TENANT_RESYNC, TN_TRIGGER_KIND_NONE);
    return;
  }
  /* The cache now shows cur: a status write it is past is forgotten (tn_written keeps only the
   * writes the cache has not shown yet, ~130 B each, rather than one per tenant forever). */
  (void)tn_written_is_stale(m->rec.written, cur);
  enum tn_trigger trig = TN_TRIGGER_TENANT_METADATA;
  if (generation_of(old) != generation_of(cur))
    trig = TN_TRIGGER_TENANT_SPEC;
  else if (!json_equal(json_object_get(old, "status"), json_object_get(cur, "status")))
    trig = TN_TRIGGER_TENANT_STATUS;
  /* The event of the reconcile's own finalizer or status write (self_writes.h): nothing new.
   * While such a write is in flight the event is held: self_write_released decides. */
  int mine = tn_self_writes_take_modified_tag(m->rec.self, cur, (int)trig);
  if (mine == TN_SELF_WRITES_TAKEN)
    tn_triggers_skipped(m->triggers, TN_SKIP_OWN_TENANT_WRITE);
  if (mine != TN_SELF_WRITES_NOT_OURS)
    return;
  want_object(m, cur, trig);
}

/* A Tenant event held while the reconcile's write was in flight: the write's own (nothing new),
 * or someone else's change, enqueued now with the trigger it was held with. */
static void self_write_released(void *ud, const char *name, int tag) {
  struct tn_manager *m = ud;
  if (tag == TN_SELF_WRITES_OURS)
    tn_triggers_skipped(m->triggers, TN_SKIP_OWN_TENANT_WRITE);
  else
    want(m, name, (enum tn_trigger)tag, TN_TRIGGER_KIND_NONE);
}

/* Whether two cached states of an owned object differ only in metadata.resourceVersion (a
 * write of something the projection does not keep, such as a ResourceQuota's status): the
 * diff reads nothing that changed. */
static bool only_version_changed(json_t *old, json_t *cur) {
  if (old == cur || json_object_size(old) != json_object_size(cur))
    return false;
  const char *k;
  json_t *v;
  json_object_foreach(old, k, v) {
    json_t *w = json_object_get(cur, k);
    if (!w)
      return false;
    if (strcmp(k, "metadata") != 0) {
      if (!json_equal(v, w))
        return false;
      continue;
    }
    if (json_object_size(v) != json_object_size(w))
      return false;
    const char *mk;
    json_t *mv;
    json_object_foreach(v, mk, mv) {
      json_t *mw = json_object_get(w, mk);
      if (!mw || (strcmp(mk, "resourceVersion") != 0 && !json_equal(mv, mw)))
        return false;
    }
  }
  return true;
}

static void owned_want(struct owned_ud *o, json_t *obj, enum tn_trigger trig) {
  const char *t = json_string_value(
      json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), TN_LABEL_TENANT));
  if (t && *t)
    want(o->m, t, trig, o->kind);
}
static void owned_added(void *ud, json_t *obj) {
  struct owned_ud *o = ud;
  /* The ADDED event of an object the reconcile created (self_writes.h): nothing new. */
  if (tn_self_writes_take_added(o->m->rec.self, obj)) {
    tn_triggers_skipped(o->m->triggers, TN_SKIP_OWN_CREATE);
    return;
  }
  owned_want(o, obj, TN_TRIGGER_OWNED_ADDED);
}
static void owned_updated(void *ud, json_t *old, json_t *cur) {
  struct owned_ud *o = ud;
  if (only_version_changed(old, cur)) {
    tn_triggers_skipped(o->m->triggers, TN_SKIP_VERSION_ONLY);
    return;
  }
  owned_want(o, cur, TN_TRIGGER_OWNED_UPDATED);
  /* A relabelled object also concerns the tenant it left. */
  owned_want(o, old, TN_TRIGGER_OWNED_UPDATED);
}
static void owned_deleted(void *ud, json_t *obj) { owned_want(ud, obj, TN_TRIGGER_OWNED_DELETED); }
static void secret_added(void *ud, json_t *obj) { owned_want(ud, obj, TN_TRIGGER_OWNED_ADDED); }

/* The controller's reconcile: tn_tenant_reconcile with its cause counted. */
static struct tn_result reconcile_counted(void *ud, const char *key) {
  struct tn_manager *m = ud;
  struct tn_trigger_cause c = tn_triggers_begin(m->triggers, key, tn_mono_now());
  struct tn_result res = tn_tenant_reconcile(&m->rec, key);
  tn_triggers_end(m->triggers, key, res,
                  c.trigger == TN_TRIGGER_TENANT_DELETED && res.kind == TN_RESULT_SUCCESS, tn_mono_now());
  return res;
}

/* Enqueues the tenants of keys (a JSON array of cache keys: no Tenant decoded; a decoded Tenant
 * is ~18 KB of jansson tree, so listing 10,000 objects to enqueue them cost ~180 MiB at once). */
static void enqueue_keys(struct tn_manager *m, json_t *keys, enum tn_trigger trig) {
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    const char *key = json_string_value(k);
    if (key)
      want(m, key, trig, TN_TRIGGER_KIND_NONE);
  }
}

static void plan_changed(void *ud, json_t *obj) {
  struct tn_manager *m = ud;
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  if (!name)
    return;
  struct tn_error err = {0};
  json_t *ks = tn_store_keys_by_index(tn_informer_store(m->rec.tenants), TN_INDEX_PLAN, name, &err);
  enqueue_keys(m, ks, TN_TRIGGER_PLAN);
  json_decref(ks);
}
static void plan_updated(void *ud, json_t *old, json_t *cur) {
  /* Resyncs re-deliver unchanged objects: only a real change re-converges every tenant on it. */
  if (!json_equal(json_object_get(old, "spec"), json_object_get(cur, "spec")))
    plan_changed(ud, cur);
}

static void all_tenants(struct tn_manager *m, enum tn_trigger trig) {
  json_t *ks = tn_store_keys(tn_informer_store(m->rec.tenants));
  enqueue_keys(m, ks, trig);
  json_decref(ks);
}
static void region_changed(void *ud, json_t *obj) { all_tenants(ud, TN_TRIGGER_REGION); }
static void region_updated(void *ud, json_t *old, json_t *cur) {
  if (!json_equal(json_object_get(old, "spec"), json_object_get(cur, "spec")))
    region_changed(ud, cur);
}
static void policy_changed(void *ud, json_t *obj) { all_tenants(ud, TN_TRIGGER_POLICY); }
static void policy_updated(void *ud, json_t *old, json_t *cur) {
  if (!json_equal(json_object_get(old, "spec"), json_object_get(cur, "spec")))
    policy_changed(ud, cur);
}

/* ---- lifecycle --------------------------------------------------------------------------------- */

static int add_informer(struct tn_manager *m, struct tn_kube *kube, struct tn_metrics *metrics,
                        const struct tn_informer_opts *o, const struct tn_informer_handlers *h,
                        struct tn_informer **out, struct tn_error *err) {
  int rc = tn_informer_new(kube, o, metrics, out, err);
  if (rc)
    return rc;
  m->all[m->n_all++] = *out;
  return tn_informer_add_handlers(*out, h, err);
}

int tn_manager_new(const struct tn_manager_config *cfg, struct tn_manager **out, struct tn_error *err) {
  struct tn_manager *m = calloc(1, sizeof *m);
  if (!m)
    return tn_error_set(err, -ENOMEM, "out of memory");
  int rc = 0;
  m->rec.kube = cfg->kube;
  m->rec.recorder = cfg->recorder;
  m->rec.audit = cfg->audit;
  struct tn_controller_config cc = {.name = "tenant",
                                    .workers = cfg->workers > 0 ? cfg->workers : 1,
                                    .reconcile = reconcile_counted,
                                    .ud = m,
                                    .metrics = cfg->metrics};
  m->ctl = tn_controller_new(&cc);
  m->triggers = tn_triggers_new();
  m->sync_period_s = cfg->sync_period_s;
  for (int k = 0; k < TN_TRIGGER_KINDS; k++)
    m->owned_ud[k] = (struct owned_ud){m, k};
  if (!m->ctl || !m->triggers) {
    rc = tn_error_set(err, -ENOMEM, "cannot create the tenant controller");
    goto fail;
  }

  struct tn_informer_opts o = {.gvr = tn_gvr_tenants,
                               .transform = drop_managed_fields,
                               .drop_managed_fields = true,
                               .resync_period_s = cfg->sync_period_s,
                               .name = "tenants"};
  struct tn_informer_handlers th = {tenant_added, tenant_updated, tenant_deleted, m};
  if ((rc = add_informer(m, cfg->kube, cfg->metrics, &o, &th, &m->rec.tenants, err)) ||
      (rc = tn_informer_add_index(m->rec.tenants, TN_INDEX_PLAN, index_by_plan, NULL, err)))
    goto fail;

  o = (struct tn_informer_opts){
      .gvr = tn_gvr_plans, .transform = drop_managed_fields, .drop_managed_fields = true, .name = "plans"};
  struct tn_informer_handlers ph = {plan_changed, plan_updated, plan_changed, m};
  if ((rc = add_informer(m, cfg->kube, cfg->metrics, &o, &ph, &m->rec.plans, err)))
    goto fail;

  /* A policy change re-evaluates every tenant, as a Region change does. */
  o = (struct tn_informer_opts){.gvr = tn_gvr_policies,
                                .transform = drop_managed_fields,
                                .drop_managed_fields = true,
                                .name = "tenancypolicies"};
  struct tn_informer_handlers polh = {policy_changed, policy_updated, policy_changed, m};
  if ((rc = add_informer(m, cfg->kube, cfg->metrics, &o, &polh, &m->rec.policies, err)) ||
      (rc = tn_informer_add_index(m->rec.tenants, TN_INDEX_EXTERNAL_ID, tn_admission_external_id_index, NULL,
                                  err)))
    goto fail;
  m->rec.written = tn_written_new();
  m->rec.self = tn_self_writes_new();
  if (!m->rec.written || !m->rec.self) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  tn_self_writes_set_release(m->rec.self, self_write_released, m);
  struct tn_metric *lat = tn_policy_evaluation_metric(cfg->metrics);
  m->rec.policy_latency = lat ? tn_metric_with(lat, (const char *const[]){"controller", NULL}) : NULL;

  o = (struct tn_informer_opts){.gvr = tn_gvr_regions,
                                .transform = drop_managed_fields,
                                .drop_managed_fields = true,
                                .name = "regions"};
  struct tn_informer_handlers rh = {region_changed, region_updated, region_changed, m};
  if ((rc = add_informer(m, cfg->kube, cfg->metrics, &o, &rh, &m->rec.regions, err)))
    goto fail;
  struct tn_kinds_status_config kc = {.kube = cfg->kube,
                                      .tenants = m->rec.tenants,
                                      .plans = m->rec.plans,
                                      .regions = m->rec.regions,
                                      .policies = m->rec.policies,
                                      .metrics = cfg->metrics};
  if ((rc = tn_kinds_status_new(&kc, &m->kinds, err)))
    goto fail;
  if ((rc = tn_failover_new(&m->rec, cfg->metrics, &m->failover, err))) /* FAILOVER (issue 16) */
    goto fail;

  for (int k = 0; k < TN_KIND_COUNT; k++) {
    o = (struct tn_informer_opts){.gvr = *tn_kind_gvr((enum tn_kind)k),
                                  .label_selector = TN_LABEL_MANAGED_BY "=" TN_MANAGED_BY,
                                  .transform = project_owned,
                                  .drop_managed_fields = true, /* not in the projection */
                                  .transform_ud = k == TN_KIND_NAMESPACE      ? (void *)namespace_paths
                                                  : k == TN_KIND_ROLE_BINDING ? (void *)rolebinding_paths
                                                                              : NULL,
                                  .name = tn_kind_gvr((enum tn_kind)k)->resource};
    struct tn_informer_handlers oh = {owned_added, owned_updated, owned_deleted, &m->owned_ud[k + 1]};
    if ((rc = add_informer(m, cfg->kube, cfg->metrics, &o, &oh, &m->rec.owned[k], err)) ||
        (rc = tn_informer_add_index(m->rec.owned[k], TN_INDEX_TENANT, index_by_tenant_label, NULL, err)))
      goto fail;
  }
  /* The tenant-database Secrets (only ours: label-selected; they hold passwords, so the cache
   * keeps them only as long as the Secrets exist). */
  o = (struct tn_informer_opts){.gvr = {"", "v1", "secrets", true},
                                .label_selector = TN_LABEL_MANAGED_BY "=" TN_MANAGED_BY "," TN_LABEL_TENANT,
                                .transform = project_owned,
                                .drop_managed_fields = true,
                                .transform_ud = (void *)secret_paths,
                                .name = "secrets"};
  struct tn_informer_handlers sh = {secret_added, owned_updated, owned_deleted,
                                    &m->owned_ud[TN_TRIGGER_KIND_SECRET]};
  if ((rc = add_informer(m, cfg->kube, cfg->metrics, &o, &sh, &m->rec.secrets, err)) ||
      (rc = tn_informer_add_index(m->rec.secrets, TN_INDEX_TENANT, index_by_tenant_label, NULL, err)))
    goto fail;
  /* MIGRATION (issue 16): TenantMigrations and their controller. */
  o = (struct tn_informer_opts){.gvr = tn_gvr_tenantmigrations,
                                .transform = drop_managed_fields,
                                .drop_managed_fields = true,
                                .name = "tenantmigrations"};
  if ((rc = add_informer(m, cfg->kube, cfg->metrics, &o, &(struct tn_informer_handlers){0},
                         &m->rec.migrations, err)) ||
      (rc = tn_migrations_new(&m->rec, m->rec.migrations, cfg->metrics, &m->migrations, err)))
    goto fail;
  m->rec.db = tn_db_new();
  if (!m->rec.db) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  tn_db_set_fence(m->rec.db, cfg->fence);
  m->rec.rotation_period_s = cfg->rotation_period_s;
  m->rec.operator_namespace = cfg->keys_namespace; /* the same namespace as the KEK's */
  if (!(m->region_secret_namespaces = strdup(
            cfg->region_secret_namespaces ? cfg->region_secret_namespaces : TN_DEFAULT_OPERATOR_NAMESPACE))) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  m->rec.region_secret_namespaces = m->region_secret_namespaces;
  /* The local KMS: key-encryption keys in a Secret of the operator's namespace. */
  if ((rc = tn_kek_secret_new(cfg->kube, &(struct tn_kek_secret_options){.namespace = cfg->keys_namespace},
                              &m->kek, err)))
    goto fail;
  m->rec.kms = tn_kek_secret_provider(m->kek);
  m->rec.keys_rotation_period_s = cfg->keys_rotation_period_s;
  m->rec.cluster_name = cfg->cluster_name;
  if (!(m->rec.changes = tn_tenant_changes_cache_new(cfg->metrics))) { /* OUTBOX: last recorded values */
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  /* The tenancy metrics, computed from the caches and counters at scrape time. */
  m->metrics_src = (struct tn_tenancy_metrics_source){
      .tenants = m->rec.tenants, .db = m->rec.db, .audit = cfg->audit, .per_tenant = cfg->metrics_per_tenant};
  if (cfg->metrics) {
    if ((rc = tn_tenancy_metrics_register(cfg->metrics, &m->metrics_src))) {
      tn_error_set(err, rc, "cannot register the tenancy metrics");
      goto fail;
    }
    if ((rc = tn_triggers_register(cfg->metrics, m->triggers))) {
      tn_tenancy_metrics_unregister(cfg->metrics, &m->metrics_src);
      tn_error_set(err, rc, "cannot register the reconcile trigger metrics");
      goto fail;
    }
    m->metrics = cfg->metrics;
  }
  if (cfg->webhooks_dsn && *cfg->webhooks_dsn &&
      (rc = tn_wh_controller_new(&(struct tn_wh_controller_config){.kube = cfg->kube,
                                                                   .metrics = cfg->metrics,
                                                                   .dsn = cfg->webhooks_dsn,
                                                                   .pg_ca_file = cfg->webhooks_pg_ca_file,
                                                                   .namespace = cfg->keys_namespace},
                                 &m->webhooks, err)))
    goto fail;
  *out = m;
  return 0;
fail:
  tn_manager_free(m);
  return rc ? rc : -ENOMEM;
}

int tn_manager_start_caches(struct tn_manager *m, struct tn_error *err) {
  for (size_t i = 0; i < m->n_all; i++) {
    int rc = tn_informer_start(m->all[i], err);
    if (rc)
      return rc;
  }
  return m->webhooks ? tn_wh_controller_start_cache(m->webhooks, err) : 0;
}

bool tn_manager_synced(struct tn_manager *m) {
  for (size_t i = 0; i < m->n_all; i++)
    if (!tn_informer_has_synced(m->all[i]))
      return false;
  return true;
}

int tn_manager_start_controllers(struct tn_manager *m, struct tn_error *err) {
  if (m->controllers_started)
    return 0;
  /* Every cached tenant into the queue before the workers start, so that the first pass (which
   * /readyz waits for) covers them all: the informers' handlers may still be delivering the
   * initial list when the caches report synced, and a pass over a partly filled queue ended
   * early (a restart with 10,100 tenants answered ready after 559 reconciles). The queue drops
   * duplicates, so the handlers' own enqueues cost nothing more. */
  json_t *keys = tn_store_keys(tn_informer_store(m->rec.tenants));
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) want(m, json_string_value(k), TN_TRIGGER_START, TN_TRIGGER_KIND_NONE);
  json_decref(keys);
  int rc = tn_controller_start(m->ctl);
  if (rc)
    return tn_error_set(err, rc, "cannot start the tenant workers: %s", tn_strerror(rc));
  if ((rc = tn_kinds_status_start(m->kinds)))
    return tn_error_set(err, rc, "cannot start the kinds-status worker: %s", tn_strerror(rc));
  if ((rc = tn_failover_start(m->failover)))
    return tn_error_set(err, rc, "cannot start the failover worker: %s", tn_strerror(rc));
  if ((rc = tn_migrations_start(m->migrations)))
    return tn_error_set(err, rc, "cannot start the migration worker: %s", tn_strerror(rc));
  m->controllers_started = true;
  /* Webhook delivery runs on the leader only; a failure to start it leaves the rest running. */
  struct tn_error werr = {0};
  if (m->webhooks && tn_wh_controller_start(m->webhooks, &werr))
    tn_log_error("webhook delivery: %s", werr.message);
  return 0;
}

bool tn_manager_ready(struct tn_manager *m, char *why, size_t n) {
  static const char *const names[] = {"tenants", "plans", "tenancypolicies", "regions"};
  for (size_t i = 0; i < m->n_all; i++)
    if (!tn_informer_has_synced(m->all[i])) {
      snprintf(why, n, "cache of %s has not synced",
               i < 3                            ? names[i]
               : i < 3 + TN_KIND_COUNT          ? tn_kind_gvr((enum tn_kind)(i - 3))->resource
               : m->all[i] == m->rec.migrations ? "tenantmigrations"
                                                : "secrets");
      return false;
    }
  if (m->controllers_started && !tn_controller_first_pass_done(m->ctl)) {
    snprintf(why, n, "first reconcile pass in progress");
    return false;
  }
  return true;
}

bool tn_manager_stop_controllers(struct tn_manager *m, double deadline_s) {
  if (m)
    tn_kinds_status_stop(m->kinds, deadline_s);
  if (m) {
    tn_failover_stop(m->failover, deadline_s);
    tn_migrations_stop(m->migrations, deadline_s);
  }
  if (m)
    tn_wh_controller_stop(m->webhooks);
  return m && m->ctl ? tn_controller_stop(m->ctl, deadline_s) : true;
}

void tn_manager_abandon_controllers(struct tn_manager *m) {
  if (m)
    tn_wh_controller_stop(m->webhooks);
  if (m && m->ctl)
    tn_controller_abandon(m->ctl);
  if (m)
    tn_kinds_status_abandon(m->kinds);
  if (m) {
    tn_failover_abandon(m->failover);
    tn_migrations_abandon(m->migrations);
  }
}

void tn_manager_free(struct tn_manager *m) {
  if (!m)
    return;
  tn_tenancy_metrics_unregister(m->metrics, &m->metrics_src); /* before what it reads goes */
  tn_triggers_unregister(m->metrics, m->triggers);
  tn_wh_controller_free(m->webhooks);
  if (m->ctl)
    tn_controller_stop(m->ctl, 0);
  tn_kinds_status_stop(m->kinds, 0);
  tn_failover_stop(m->failover, 0);
  tn_migrations_stop(m->migrations, 0);
  for (size_t i = 0; i < m->n_all; i++)
    tn_informer_stop(m->all[i]);
  tn_controller_free(m->ctl);
  tn_kinds_status_free(m->kinds);
  tn_failover_free(m->failover);
  tn_migrations_free(m->migrations);
  for (size_t i = 0; i < m->n_all; i++)
    tn_informer_free(m->all[i]);
  tn_db_free(m->rec.db);
  tn_written_free(m->rec.written);
  tn_tenant_changes_cache_free(m->rec.changes);
  tn_self_writes_free(m->rec.self);
  tn_triggers_free(m->triggers);
  tn_kek_secret_free(m->kek);
  free(m->region_secret_namespaces);
  free(m);
}

/* ---- what the admission webhook reads: the caches ------------------------------------------------ */

static int cached(struct tn_manager *m, struct tn_informer *inf, json_t **out, struct tn_error *err) {
  if (!tn_informer_has_synced(inf))
    return tn_error_set(err, TN_EUNAVAILABLE, "the operator's caches have not synced yet; retry in a moment");
  *out = tn_informer_list(inf);
  return *out ? 0 : tn_error_set(err, -ENOMEM, "out of memory");
}

static int lookup_policies(void *ud, json_t **out, struct tn_error *err) {
  struct tn_manager *m = ud;
  return cached(m, m->rec.policies, out, err);
}

static int lookup_regions(void *ud, json_t **out, struct tn_error *err) {
  struct tn_manager *m = ud;
  return cached(m, m->rec.regions, out, err);
}

static int lookup_migrations(void *ud, json_t **out, struct tn_error *err) {
  struct tn_manager *m = ud;
  return cached(m, m->rec.migrations, out, err);
}

static int lookup_external_id(void *ud, const char *system, const char *id, json_t **out,
                              struct tn_error *err) {
  struct tn_manager *m = ud;
  if (!tn_informer_has_synced(m->rec.tenants))
    return tn_error_set(err, TN_EUNAVAILABLE, "the operator's caches have not synced yet; retry in a moment");
  char key[512];
  snprintf(key, sizeof key, "%s=%s", system, id);
  *out = tn_informer_list_by_index(m->rec.tenants, TN_INDEX_EXTERNAL_ID, key, err);
  return *out ? 0 : (err->code ? err->code : -ENOMEM);
}

struct tn_admission_lookups tn_manager_admission_lookups(struct tn_manager *m) {
  struct tn_admission_lookups lk = {.list_policies = lookup_policies,
                                    .list_regions = lookup_regions,
                                    .tenants_by_external_id = lookup_external_id,
                                    .ud = m};
  lk.list_migrations = lookup_migrations; /* MIGRATION (issue 16) */
  return lk;
}

struct tn_admission_hooks tn_manager_admission_hooks(struct tn_manager *m) {
  /* No hook: who asked is recorded by the API server on the tenant itself (reconciler.h), never
   * from a review, which any client of the webhook port could forge. */
  return (struct tn_admission_hooks){.ud = m};
}

struct tn_informer *tn_manager_tenants_informer(struct tn_manager *m) {
  return m->rec.tenants;
}
