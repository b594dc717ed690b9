/* tenant_db.h - the database step of the tenant reconcile: choose the server of the tenant's
 * region, keep the tenant-database Secrets and the PostgreSQL objects converged, rotate
 * credentials on demand and on schedule, tear everything down on delete. */
#ifndef TN_CONVERGE_TENANT_DB_H
#define TN_CONVERGE_TENANT_DB_H

#include <jansson.h>
#include <stdbool.h>

#include "converge/reconciler.h"
#include "tenancy/tenant.h"

#define TN_SECRET_DATABASE "tenant-database"
#define TN_ANNOTATION_ROTATE "tenancy.dev/rotate-credentials" /* on the Tenant: set a new value to rotate */
#define TN_ANNOTATION_ROTATED_FOR "tenancy.dev/rotated-for"   /* on the Secret: the value handled */
#define TN_ANNOTATION_ROTATED_AT "tenancy.dev/rotated-at"     /* on the Secret: when the password was made */
#define TN_ANNOTATION_CREDENTIALS_VERSION "tenancy.dev/credentials-version"
/* The canonical credential: Secret <operator namespace>/tenant-database-<id> of this type,
 * controlled by the Tenant. Tenants cannot write there; the Secrets in their namespaces are copies. */
#define TN_SECRET_DATABASE_CANONICAL_PREFIX "tenant-database-"
#define TN_SECRET_TYPE_DATABASE "tenancy.dev/tenant-database"
#define TN_CREDENTIALS_NAMESPACE "tenancy-system"  /* the operator's namespace unless configured */
#define TN_CREDENTIALS_VERSION_MAX 1000000000000LL /* larger versions are never the operator's */
/* Warning event on a Tenant: a Secret claims it but is not its own copy, and was ignored. */
#define TN_REASON_FOREIGN_CREDENTIAL "ForeignCredentialIgnored"

struct tn_tenant_db_result {
  bool configured;    /* the tenant has (or had) a database: DatabaseReady is reported */
  const char *status; /* DatabaseReady: "True", "False" */
  char reason[64];
  char message[768];
  json_t *database;       /* status.database to write (new reference), or NULL to keep */
  bool retry;             /* a transient failure: retry with backoff */
  double requeue_after_s; /* > 0: come back then (scheduled rotation) */
  int writes;             /* Kubernetes writes made */
  bool rotated;           /* a new password replaced one (on demand or on schedule) this pass */
  long long rotated_version;
  char rotated_why[32]; /* "on demand", "on schedule" */
};

/* True when NS is one of ALLOWED (comma-separated; NULL = TN_DEFAULT_OPERATOR_NAMESPACE): the
 * namespaces whose Secrets a Region's adminSecretRef/caSecretRef may name. */
bool tn_region_secret_namespace_allowed(const char *allowed, const char *ns);

void tn_tenant_db_result_cleanup(struct tn_tenant_db_result *r);

/* Converges the tenant's database for state `next` (Active, Suspended or Archived; others do
 * nothing) in region `region` (NULL: nothing to do). tenant_obj and t are borrowed; plan may be
 * NULL (no connection limit). Namespaces are the tenant's namespaces that exist now.
 * require_tls_policy: the TenancyPolicy requiring database TLS (tn_policy_result's
 * require_database_tls_policy), NULL when none does: a new tenant then lands only on a verify-ca
 * or verify-full server, and with none DatabaseReady is False (reason PolicyDenied, the policy's
 * message) and nothing is provisioned. */
void tn_tenant_db_reconcile(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                            enum tn_state next, const char *region, const struct tn_plan *plan,
                            const char *require_tls_policy, struct tn_tenant_db_result *out);
/* The same with the Region object region_obj (borrowed) the caller read already from the cache
 * (NULL: it is read here): one cache decode fewer per reconcile. */
void tn_tenant_db_reconcile_in(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                               enum tn_state next, const char *region, json_t *region_obj,
                               const struct tn_plan *plan, const char *require_tls_policy,
                               struct tn_tenant_db_result *out);

/* The Region's databaseServers[] entry the tenant is (or would be) on in region, by the rules of
 * tn_tenant_db_reconcile: a new reference, or NULL when there is none (no database, no compliant
 * server, region unknown). For the NetworkPolicy egress rule to the server. */
json_t *tn_tenant_db_server(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                            const char *region, const char *require_tls_policy);
json_t *tn_tenant_db_server_in(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                               const char *region, json_t *region_obj, const char *require_tls_policy);

/* Drops the tenant's role, schema and database (Deleted, or kubectl delete). Returns 0 when
 * nothing is left (or there never was a database), else a negative code with out filled. */
int tn_tenant_db_teardown(struct tn_reconciler *r, json_t *tenant_obj, struct tn_tenant_db_result *out);

/* MIGRATION (issue 16): a Region's server with its Secrets read, for converge/migration.c. */
struct tn_db_server_conf {
  char *admin_uri, *ca_pem; /* owned */
  struct tn_db_server s;    /* strings borrowed from the Region object and the two above */
};
/* Loads databaseServers[] entry server (borrowed; must outlive c) by the rules of the database
 * step (Secrets only in the allowed namespaces). 0 or an error; clean up c either way. */
int tn_tenant_db_load_server(struct tn_reconciler *r, json_t *server, struct tn_db_server_conf *c,
                             struct tn_error *err);
void tn_db_server_conf_cleanup(struct tn_db_server_conf *c);
/* The server the database step picks in region_obj for mode (current: a server name to keep, or
 * NULL); *server borrowed from region_obj. 0, TN_ENOTFOUND or an error. */
int tn_tenant_db_pick_server(json_t *region_obj, const char *region, enum tn_isolation mode,
                             const char *current, json_t **server, struct tn_error *err);

#endif
