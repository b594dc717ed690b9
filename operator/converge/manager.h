/* manager.h - the tenancy operator's caches and controllers: informers for Tenants, Plans,
 * Regions and every owned kind, the tenant controller, and the readiness they add up to. */
#ifndef TN_CONVERGE_MANAGER_H
#define TN_CONVERGE_MANAGER_H

#include <stdbool.h>
#include <stddef.h>

#include "converge/admission.h"
#include "util/error.h"

struct tn_kube;
struct tn_metrics;
struct tn_recorder;
struct tn_audit;
struct tn_fence;
struct tn_manager; /* opaque */

struct tn_manager_config {
  struct tn_kube *kube;          /* borrowed; outlives the manager */
  struct tn_metrics *metrics;    /* borrowed; may be NULL */
  struct tn_recorder *recorder;  /* borrowed; may be NULL (no events) */
  struct tn_audit *audit;        /* borrowed; may be NULL (no audit trail configured) */
  int workers;                   /* concurrent tenant reconciles */
  double sync_period_s;          /* informer resync; 0 = never */
  double rotation_period_s;      /* scheduled database credential rotation; 0 = on demand only */
  double keys_rotation_period_s; /* scheduled data key rotation; 0 = on demand only */
  const char *cluster_name;      /* lifecycle events' source tenancy.dev/<name> (borrowed); NULL = local */
  const char *keys_namespace;    /* where key Secrets live; NULL = tenancy-system */
  /* borrowed, may be NULL; outlives the manager. The write fence of the leadership: database
   * operations are checked against it (give the same fence to kube with tn_kube_set_fence and to
   * audit with tn_audit_set_fence). */
  const struct tn_fence *fence;
  /* Comma-separated namespaces whose Secrets a Region's adminSecretRef/caSecretRef may name (the
   * operator's namespace and --region-secret-namespaces); NULL = "tenancy-system". Copied. */
  const char *region_secret_namespaces;
  /* --metrics-per-tenant: the tenancy metrics (converge/tenancy_metrics.h) also per tenant. */
  bool metrics_per_tenant;
  /* Webhook delivery (webhooks/controller.h): the PostgreSQL holding the outbox (NULL: none, no
   * delivery) and its CA file (may be NULL). The signing Secrets are read in keys_namespace. */
  const char *webhooks_dsn;
  const char *webhooks_pg_ca_file;
};

/* Creates the informers and the controller (no thread yet). */
int tn_manager_new(const struct tn_manager_config *cfg, struct tn_manager **out, struct tn_error *err);
/* Starts every informer (standbys do this too, to keep their caches warm). */
int tn_manager_start_caches(struct tn_manager *m, struct tn_error *err);
/* Every informer has synced. */
bool tn_manager_synced(struct tn_manager *m);
/* Starts the controller's workers (call once the caches synced and, with leader election, once
 * this replica leads). */
int tn_manager_start_controllers(struct tn_manager *m, struct tn_error *err);
/* Ready: caches synced and, when the controllers run, their first pass is done. When not
 * ready, why says what is missing. */
bool tn_manager_ready(struct tn_manager *m, char *why, size_t n);
/* Stops taking work; in-flight reconciles get deadline_s. True when they finished in time. */
bool tn_manager_stop_controllers(struct tn_manager *m, double deadline_s);
/* Leadership lost: the controllers stop at once, queued work is dropped (tn_controller_abandon). */
void tn_manager_abandon_controllers(struct tn_manager *m);
/* What the admission webhook reads (the caches) and tells (who asked for each generation, for
 * the audit trail). Valid while the manager lives. */
/* What the admission webhook reads (the caches). Its hooks record nothing: who asked for each
 * generation comes from the tenant's annotations, written by the API server (reconciler.h).
 * Valid while the manager lives. */
struct tn_admission_lookups tn_manager_admission_lookups(struct tn_manager *m);
struct tn_admission_hooks tn_manager_admission_hooks(struct tn_manager *m);
/* The Tenant cache (metadata.managedFields dropped; indexes TN_INDEX_EXTERNAL_ID and the plan's),
 * for the read API. Valid while the manager lives. */
struct tn_informer *tn_manager_tenants_informer(struct tn_manager *m);
/* Stops everything and frees. Accepts NULL. */
void tn_manager_free(struct tn_manager *m);

#endif
