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

struct tn_tenant_db_result {
  bool configured;    /* the tenant has (or had) a database: DatabaseReady is reported */
  const char *status; /* DatabaseReady: "True", "False" */
  char reason[64];
  char message[768];
  json_t *database;       /* status.database to write (new reference), or NULL to keep */
  bool retry;             /* a transient failure: retry with backoff */
  double requeue_after_s; /* > 0: come back then (scheduled rotation) */
  int writes;             /* Kubernetes writes made */
};

/* True when NS is one of ALLOWED (comma-separated; NULL = TN_DEFAULT_OPERATOR_NAMESPACE): the
 * namespaces whose Secrets a Region's adminSecretRef/caSecretRef may name. */
bool tn_region_secret_namespace_allowed(const char *allowed, const char *ns);

void tn_tenant_db_result_cleanup(struct tn_tenant_db_result *r);

/* Converges the tenant's database for state `next` (Active, Suspended or Archived; others do
 * nothing) in region `region` (NULL: nothing to do). tenant_obj and t are borrowed; plan may be
 * NULL (no connection limit). Namespaces are the tenant's namespaces that exist now. */
void tn_tenant_db_reconcile(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                            enum tn_state next, const char *region, const struct tn_plan *plan,
                            struct tn_tenant_db_result *out);

/* Drops the tenant's role, schema and database (Deleted, or kubectl delete). Returns 0 when
 * nothing is left (or there never was a database), else a negative code with out filled. */
int tn_tenant_db_teardown(struct tn_reconciler *r, json_t *tenant_obj, struct tn_tenant_db_result *out);

#endif
