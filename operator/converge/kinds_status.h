/* kinds_status.h - status of the Plan, Region and TenancyPolicy kinds (issue 17, "Status on every
 * kind"): a small controller with one worker, fed by the manager's informers, that recomputes
 * from the caches
 *
 *   Plan           conditions Valid, Ready; tenantsCount (tenants naming it, Deleted ones aside)
 *   Region         conditions Ready, Available; available (mirrors spec.available); tenantsPlaced
 *                  (tenants whose status.placement.region is it); databaseServers[] {name,
 *                  reachable, message} and databaseServersReady ("reachable/listed")
 *   TenancyPolicy  conditions Valid, Ready; tenantsInViolation and violatingTenants (up to
 *                  TN_KINDS_STATUS_MAX_NAMES names, sorted)
 *
 * with observedGeneration, and writes it (PUT of the status subresource) only when it changed:
 * an idle resync writes nothing. While tenants pour in, a change of a Plan's tenantsCount or a
 * Region's tenantsPlaced alone is written at most once per count interval (5 s) per object; the
 * exact count is written once the interval has passed (nothing if it came back to what is
 * stored); any other change of the status is written at once. A Region's database servers are probed with
 * libpq's PQping (no credentials: empty password, no password file), each at most once per probe interval,
 * with a connect timeout; messages name host:port only, never a DSN or a Secret. */
#ifndef TN_CONVERGE_KINDS_STATUS_H
#define TN_CONVERGE_KINDS_STATUS_H

#include <stdbool.h>

#include "kube/client.h"
#include "kube/informer.h"
#include "runtime/controller.h"
#include "runtime/metrics.h"
#include "util/error.h"

#define TN_KINDS_STATUS_MAX_NAMES 10 /* violatingTenants lists at most this many names */

struct tn_kinds_status;

struct tn_kinds_status_config {
  struct tn_kube *kube;                                     /* borrowed */
  struct tn_informer *tenants, *plans, *regions, *policies; /* borrowed, not started yet */
  struct tn_metrics *metrics;                               /* borrowed; may be NULL */
  double probe_interval_s; /* a server is probed at most this often; 0 = 30 s */
  double probe_timeout_s;  /* connect timeout of one probe; 0 = 2 s (libpq's minimum) */
  double count_interval_s; /* a change of a count alone is written at most this often per object; 0 =
                              5 s, < 0: at once */
};

/* Creates the controller (no thread yet) and adds its handlers to the four informers. The tenant
 * handlers keep a small table of each tenant's plan, placement region and whether it counts, so
 * a Plan's or Region's count never decodes a tenant; a policy's scan (every tenant evaluated) is
 * delayed by 20 times what the last one took (at least 0.5 s, at most 30 s). Call before the
 * informers start. */
int tn_kinds_status_new(const struct tn_kinds_status_config *cfg, struct tn_kinds_status **out,
                        struct tn_error *err);
/* Starts the worker (once the caches synced and this replica leads). 0 or -errno. */
int tn_kinds_status_start(struct tn_kinds_status *ks);
void tn_kinds_status_stop(struct tn_kinds_status *ks, double deadline_s); /* accepts NULL */
void tn_kinds_status_abandon(struct tn_kinds_status *ks);                 /* accepts NULL */
/* Stops and frees. Accepts NULL. The informers must still exist. */
void tn_kinds_status_free(struct tn_kinds_status *ks);

/* Seconds to wait before new_status replaces old_status when the two differ only in count_key
 * and the object's status was last written at last_write (monotonic seconds; < 0: never) less
 * than interval_s before now; 0 to write now (any other difference, or the interval passed, or
 * interval_s <= 0). Pure, for tests. */
double tn_kinds_status_count_wait(const json_t *old_status, const json_t *new_status, const char *count_key,
                                  double last_write, double now, double interval_s);

/* The reconcile of one key ("plan/<name>", "region/<name>" or "policy/<name>"), for tests. */
struct tn_result tn_kinds_status_reconcile(void *ud, const char *key);

#endif
