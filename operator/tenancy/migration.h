/* migration.h - the TenantMigration state machine (issue 16), pure: parsing and checking the spec,
 * the order of the steps, what to do next from the recorded phase and the spec (abort, rollback,
 * window, rollbackRetention), and the per-step condition names. No I/O, no clock (now is given).
 *
 * Phases, in order (status.phase):
 *   Pending -> Validate -> ProvisionTarget -> Copy -> Verify -> Cutover -> RollbackWindow
 *   -> CleanUp -> Succeeded
 * and the side exits: Aborting -> Aborted (spec.abort before Cutover), RollingBack -> RolledBack
 * (spec.rollback during RollbackWindow), Failed (a step refused for good, e.g. Validate).
 * A phase names the step to run next; a step's work is idempotent, so a process killed during a
 * step runs it again from the start (see docs/migration.md). */
#ifndef TN_TENANCY_MIGRATION_H
#define TN_TENANCY_MIGRATION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "tenancy/tenant.h"
#include "util/error.h"

enum tn_mig_phase {
  TN_MIG_PENDING = 0,
  TN_MIG_VALIDATE,
  TN_MIG_PROVISION_TARGET,
  TN_MIG_COPY,
  TN_MIG_VERIFY,
  TN_MIG_CUTOVER,
  TN_MIG_ROLLBACK_WINDOW,
  TN_MIG_CLEANUP,
  TN_MIG_SUCCEEDED,
  TN_MIG_ABORTING,
  TN_MIG_ABORTED,
  TN_MIG_ROLLING_BACK,
  TN_MIG_ROLLED_BACK,
  TN_MIG_FAILED,
  TN_MIG_PHASE_COUNT
};

/* "Pending", "Validate", ... ; "?" out of range. Static. */
const char *tn_mig_phase_name(enum tn_mig_phase p);
/* 0, or TN_EINVALID for an unknown name. NULL or "" parse as Pending. */
int tn_mig_phase_parse(const char *s, enum tn_mig_phase *out);
/* Succeeded, Aborted, RolledBack, Failed: nothing more happens. */
bool tn_mig_phase_terminal(enum tn_mig_phase p);
/* The migration holds the tenant's database: the tenant reconcile must not touch its roles
 * (Cutover, RollingBack: the write freeze is on). */
bool tn_mig_phase_holds_database(enum tn_mig_phase p);
/* Still running (not terminal): a second migration of the same tenant is refused. */
bool tn_mig_phase_active(enum tn_mig_phase p);
/* The condition type a step reports (status.conditions[].type): "Validated", "TargetProvisioned",
 * "Copied", "Verified", "CutOver", "SourceRetained", "CleanedUp", "Aborted", "RolledBack"; NULL for
 * phases without a step (Pending, terminal ones). Static. */
const char *tn_mig_condition_type(enum tn_mig_phase p);
/* The audit action of a step: "migration.validate", "migration.provision-target", ... Static. */
const char *tn_mig_audit_action(enum tn_mig_phase p);

/* A daily UTC window for the cutover ("HH:MM" start and end; end before start crosses midnight). */
struct tn_mig_window {
  bool set;
  int start_min, end_min; /* minutes since midnight, 0..1439 */
};

struct tn_mig_spec {
  char tenant[64];
  char target_region[64];
  bool target_isolation_set;
  enum tn_isolation target_isolation;
  struct tn_mig_window window;
  double rollback_retention_s; /* default TN_MIG_DEFAULT_RETENTION_S */
  bool abort;
  bool rollback;
};

#define TN_MIG_DEFAULT_RETENTION_S (24.0 * 3600)
#define TN_MIG_MAX_RETENTION_S (90.0 * 24 * 3600)

/* Parses spec (the TenantMigration's .spec, borrowed). Returns 0, or TN_EINVALID with a message
 * naming the field (tenant or target.region missing or not a DNS label, an unknown isolation, a
 * bad window or duration). */
int tn_mig_spec_parse(const json_t *spec, struct tn_mig_spec *out, struct tn_error *err);

/* "30s", "15m", "24h", "7d" or a sum like "1h30m": seconds, 0 allowed. 0 or TN_EINVALID. */
int tn_mig_duration_parse(const char *s, double *out);
/* "HH:MM" -> minutes. 0 or TN_EINVALID. */
int tn_mig_clock_parse(const char *s, int *minutes);
/* Whether unix time now is inside the window (always when not set); else *wait_s (may be NULL)
 * gets the seconds until it opens. */
bool tn_mig_in_window(const struct tn_mig_window *w, double now, double *wait_s);

/* What the controller does next. */
enum tn_mig_action_kind {
  TN_MIG_ACT_NONE = 0, /* terminal: nothing to do */
  TN_MIG_ACT_RUN,      /* run step `phase` (its work, then record the next phase) */
  TN_MIG_ACT_WAIT,     /* come back after wait_s (window closed, retention running) */
  TN_MIG_ACT_GOTO      /* record phase `phase` first (abort, rollback, retention over), no work */
};
struct tn_mig_action {
  enum tn_mig_action_kind kind;
  enum tn_mig_phase phase;
  double wait_s;
  const char *why; /* static: for logs and the Waiting message */
};

/* The next action from the recorded phase, the spec, the time and the cutover time (unix
 * seconds, 0 when none). Rules:
 *  - terminal phases: NONE;
 *  - spec.abort before the cutover (Pending..Verify; also Cutover until the freeze committed,
 *    which the controller marks with cutover_started = false): GOTO Aborting; in Aborting: RUN;
 *  - spec.abort after the cutover: ignored (rollback is the way back), why says so;
 *  - Pending: GOTO Validate;
 *  - Cutover outside the window: WAIT until it opens;
 *  - RollbackWindow: spec.rollback -> GOTO RollingBack; retention not over -> WAIT the rest;
 *    over -> GOTO CleanUp;
 *  - else RUN the recorded phase. */
struct tn_mig_action tn_mig_next(enum tn_mig_phase phase, const struct tn_mig_spec *spec, double now,
                                 double cutover_at, bool cutover_started);

/* The phase recorded after step p succeeded: Validate -> ProvisionTarget -> ... -> Cutover ->
 * RollbackWindow; CleanUp -> Succeeded; Aborting -> Aborted; RollingBack -> RolledBack. Terminal
 * and Pending give themselves / Validate. */
enum tn_mig_phase tn_mig_after(enum tn_mig_phase p);

/* Checks the target against the tenant (pure part of Validate): source_region is the tenant's
 * status.placement.region, source_isolation its isolation in effect (status.placement.isolation).
 * The target region defaults to the source region and the target isolation to the source's; at
 * least one must change (the same region is fine when the isolation changes: the new form may even
 * live on the same server); residency must allow the target region. 0, or TN_EINVALID /
 * TN_EFORBIDDEN with an actionable message. */
int tn_mig_check_target(const struct tn_mig_spec *spec, const char *source_region,
                        enum tn_isolation source_isolation, const struct tn_residency *residency,
                        struct tn_error *err);

/* The target region and isolation of spec for a tenant in source_region with source_isolation
 * (the spec's, or the source's where the spec leaves them out). */
const char *tn_mig_target_region(const struct tn_mig_spec *spec, const char *source_region);
enum tn_isolation tn_mig_target_isolation(const struct tn_mig_spec *spec, enum tn_isolation source_isolation);

/* Whether every TenancyPolicy's residency rules (those whose flag the tenant has in
 * spec.residency.flags) allow region. 0, or TN_EFORBIDDEN naming the policy, the flag and the
 * regions it allows. */
struct tn_policy;
int tn_mig_check_policies(const struct tn_tenant *t, const struct tn_policy *const *policies, size_t n,
                          const char *region, struct tn_error *err);

/* The schema a table of schema `schema` goes to when the tenant's isolation changes from `from` to
 * `to` (role: the tenant's role name, which is also its schema in the shared database):
 *  - the same isolation, or dedicated <-> hybrid (both a database of the tenant): the same schema;
 *  - shared -> dedicated/hybrid: the tenant's schema becomes "public" (the schema a database of
 *    the tenant uses; the default search_path "$user", public finds it as it found the schema);
 *  - dedicated/hybrid -> shared: "public" and the schema named like the role become the tenant's
 *    schema; any other schema is refused (TN_EINVALID: a shared tenant has one schema).
 * 0, or TN_EINVALID with an actionable message. */
int tn_mig_map_schema(enum tn_isolation from, enum tn_isolation to, const char *role, const char *schema,
                      char out[64], struct tn_error *err);

/* Table checksums compared in Verify. */
struct tn_mig_table_sum {
  char name[192]; /* "schema.table" (unquoted, for status) */
  long long rows;
  char md5[33];
};
/* Compares source and target lists (any order): 0 when every table is on both sides with equal
 * rows and checksum; else TN_ECONFLICT with a message naming the first difference. */
int tn_mig_compare_sums(const struct tn_mig_table_sum *src, size_t ns, const struct tn_mig_table_sum *dst,
                        size_t nd, struct tn_error *err);

/* Admission of a new TenantMigration obj against the existing ones (a JSON array of
 * TenantMigration objects, borrowed): refused when another one of the same spec.tenant is still
 * running (its status.phase absent, Pending or any non-terminal phase). Returns true when
 * allowed; else false with msg (n bytes) naming the running one. */
bool tn_mig_admit(const json_t *obj, const json_t *migrations, char *msg, size_t n);

#endif
