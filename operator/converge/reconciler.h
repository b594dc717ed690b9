/* reconciler.h - the tenant reconcile: read the tenant from the cache, decide its state,
 * placement and desired objects (tenancy/), apply the difference with what the caches observe,
 * write status and events. Internal to converge/ (the manager wires it). */
#ifndef TN_CONVERGE_RECONCILER_H
#define TN_CONVERGE_RECONCILER_H

#include "audit/audit.h"
#include "converge/database.h"
#include "converge/self_writes.h"
#include "kube/client.h"
#include "kube/informer.h"
#include "runtime/controller.h"
#include "runtime/metrics.h"
#include "tenancy/desired.h"
#include "tenancy/kms.h"

#define TN_FINALIZER "tenancy.dev/finalizer"
/* The owned-object index (by tenancy.dev/tenant label) every owned informer has, and the
 * tenants' index by plan. */
#define TN_INDEX_TENANT "tenant"
#define TN_INDEX_PLAN "plan"

extern const struct tn_gvr tn_gvr_tenants, tn_gvr_plans, tn_gvr_regions, tn_gvr_policies;

/* The resourceVersions the reconcile's last status write of each tenant replaced: rv_start (the
 * cached tenant the pass started from), rv_sent (the one the status write was sent with: after
 * a finalizer write, that write's answer); tenant is what the status write answered. A cache that
 * still shows a replaced version of the same uid is behind our own writes (is_stale). A cache
 * that shows anything else is past the write, and is_stale then drops the entry: the table holds
 * only writes the cache has not shown yet (the Tenant watch calls it on every update). Thread-safe. */
struct tn_written;
struct tn_written *tn_written_new(void);
void tn_written_free(struct tn_written *w);
void tn_written_note(struct tn_written *w, json_t *tenant, const char *rv_start, const char *rv_sent);
bool tn_written_is_stale(struct tn_written *w, json_t *tenant);
/* The tenant is gone from the cache: its entry is dropped (the table no longer grows with churn). */
void tn_written_forget(struct tn_written *w, const char *name);
size_t tn_written_count(struct tn_written *w); /* the entries held */

/* Who asked for a tenant's current spec. The API server itself records it: the
 * MutatingAdmissionPolicy tenancy-operator-actor (manifests/deploy/45-actor-policy.yaml) writes
 * request.userInfo.username into this annotation on every write that changes the spec, and the
 * ValidatingAdmissionPolicy of the same name refuses any write that sets it to anything else or
 * changes it without changing the spec. So they survive restarts and replicas
 * and no client of the webhook port can feed them (docs/security.md, "Actor attribution"). */
/* The operator's namespace when it runs outside a cluster (in a Pod: the Pod's namespace). */
#define TN_DEFAULT_OPERATOR_NAMESPACE "tenancy-system"

#define TN_ANNOTATION_REQUESTED_BY "tenancy.dev/last-requested-by"

/* Copies the requester recorded on TENANT (a Tenant object) into actor. False, actor untouched,
 * when the tenant carries none (last changed before the policy was installed, or no policy). */
bool tn_tenant_requester(const json_t *tenant, char *actor, size_t na);

/* Everything a reconcile reads and writes; all borrowed from the manager. */
struct tn_tenant_changes_cache;

struct tn_reconciler {
  struct tn_kube *kube;
  struct tn_recorder *recorder; /* may be NULL */
  struct tn_audit *audit;       /* may be NULL (no --pg-dsn): transitions are then not audited */
  struct tn_informer *tenants, *plans, *regions, *policies;
  struct tn_written *written; /* may be NULL */
  struct tn_informer *owned[TN_KIND_COUNT];
  struct tn_informer *secrets;    /* our tenant-database Secrets (label-selected) */
  const char *operator_namespace; /* the operator's own namespace (KEK, canonical credentials);
                                     NULL = tenancy-system */
  struct tn_db *db;               /* PostgreSQL connection cache of the database step */
  double rotation_period_s;       /* scheduled credential rotation; 0 = only on demand */
  /* Comma-separated namespaces a Region's adminSecretRef/caSecretRef may name; NULL = only
   * TN_DEFAULT_OPERATOR_NAMESPACE. A reference elsewhere is refused before anything is read. */
  const char *region_secret_namespaces;
  const struct tn_kms_provider *kms; /* wraps per-tenant data keys; NULL = no keys */
  double keys_rotation_period_s;     /* scheduled data key rotation; 0 = only on demand */
  struct tn_series *policy_latency;  /* tn_policy_evaluation_seconds{caller="controller"}; may be NULL */
  const char *cluster_name;       /* OUTBOX (issue 14): the events' source tenancy.dev/<name>; NULL = local */
  struct tn_informer *migrations; /* MIGRATION (issue 16): TenantMigrations; NULL = none */
  struct tn_tenant_changes_cache *changes; /* the last recorded placement/quotas; NULL = read each time */
  struct tn_self_writes *self; /* the reconcile's own writes, whose events enqueue nothing; may be NULL */
};

/* The GVR of an owned kind. */
const struct tn_gvr *tn_kind_gvr(enum tn_kind k);

/* The controller's reconcile function (ud is a struct tn_reconciler). */
struct tn_result tn_tenant_reconcile(void *ud, const char *key);

#endif
