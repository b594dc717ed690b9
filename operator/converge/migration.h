/* migration.h - the TenantMigration controller (issue 16): one worker runs the state machine of
 * tenancy/migration.h against the real servers (converge/migration_pg.h) and the API server:
 * each step's work, then an audit row, then the status write (phase, the step's condition with
 * observedGeneration), then an Event. A step is idempotent, so a process killed anywhere in it
 * runs it again from the start. See docs/migration.md. */
#ifndef TN_CONVERGE_MIGRATION_H
#define TN_CONVERGE_MIGRATION_H

#include <jansson.h>
#include <stdbool.h>

#include "converge/reconciler.h"
#include "kube/informer.h"
#include "runtime/controller.h"
#include "runtime/metrics.h"

extern const struct tn_gvr tn_gvr_tenantmigrations;

struct tn_migrations;

/* rec is the manager's reconciler (kube, regions, secrets, db, audit, recorder), borrowed;
 * migrations the TenantMigration informer (not started yet; this adds its handlers). */
int tn_migrations_new(struct tn_reconciler *rec, struct tn_informer *migrations, struct tn_metrics *metrics,
                      struct tn_migrations **out, struct tn_error *err);
int tn_migrations_start(struct tn_migrations *m);
void tn_migrations_stop(struct tn_migrations *m, double deadline_s); /* accepts NULL */
void tn_migrations_abandon(struct tn_migrations *m);                 /* accepts NULL */
void tn_migrations_free(struct tn_migrations *m);                    /* accepts NULL */

/* The reconcile of one TenantMigration (key = its name), for tests. */
struct tn_result tn_migration_reconcile(void *ud, const char *key);

/* Whether a TenantMigration holds tenant_obj's database, so the tenant reconcile must leave its
 * roles and Secrets alone this pass: the write freeze of a Cutover or RollingBack is on, or the
 * migration moved the tenant and tenant_obj (the cache's copy) does not show that yet. When true,
 * why (n bytes) says which migration. migrations may be NULL (false). */
bool tn_migration_holds(struct tn_informer *migrations, json_t *tenant_obj, char *why, size_t n);

#endif
