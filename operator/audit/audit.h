/* audit.h - the durable audit trail: an append-only, hash-chained table tenancy.audit_events in
 * the operator's PostgreSQL; append, verify, list and retention (docs/audit.md,
 * docs/internals/audit.md). */
#ifndef TN_AUDIT_AUDIT_H
#define TN_AUDIT_AUDIT_H

#include <jansson.h>
#include <stdbool.h>

#include "audit/chain.h"
#include "util/error.h"

/* The schema the table lives in unless told otherwise. */
#define TN_AUDIT_SCHEMA "tenancy"
/* The actor of rows the operator writes for its own actions (unless the caller has a better
 * identity, e.g. its service account). */
#define TN_AUDIT_OPERATOR_ACTOR "tenancy-operator"

/* Outcomes. An action is recorded twice: TN_AUDIT_STARTED before it is attempted (if that
 * append fails, the action must not happen), then TN_AUDIT_SUCCEEDED or TN_AUDIT_FAILED with the
 * same correlation id once its result is known. TN_AUDIT_REFUSED records an action denied by
 * policy or the lifecycle, which never starts. */
#define TN_AUDIT_STARTED "started"
#define TN_AUDIT_SUCCEEDED "succeeded"
#define TN_AUDIT_FAILED "failed"
#define TN_AUDIT_REFUSED "refused"

/* The action of the checkpoint rows retention writes; reserved (tn_audit_append refuses it). */
#define TN_AUDIT_ACTION_PRUNE "audit.prune"

/* The minimum retention a new audit table starts with: audit_prune() refuses to remove rows younger
 * than this, whoever calls it. Stored in <schema>.audit_settings; its owner may raise it
 * (`tenantctl audit init --min-retention Nd`), nobody can lower it through the triggers. 90 days:
 * long enough that a misuse of the operator's database credential is normally noticed and
 * investigated before its traces could be pruned (PCI DSS 10.5.1 keeps three months at hand),
 * short enough to sit below any real TenancyPolicy retention (years). */
#define TN_AUDIT_MIN_RETENTION_DEFAULT_DAYS 90
#define TN_AUDIT_MIN_RETENTION_DEFAULT_DAYS_S "90"

/* An open audit trail: one PostgreSQL connection behind a mutex, reconnected on demand, so any
 * thread may call any function. Opaque. */
struct tn_audit;

struct tn_audit_options {
  const char *schema;           /* NULL: "tenancy"; [a-z_][a-z0-9_]{0,39} (tests use their own) */
  bool no_create;               /* true: never create the table (tenantctl list/verify); functions
                                 * then answer TN_ENOTFOUND while it is missing */
  const char *application_name; /* NULL: "tenancy-operator" (shown in pg_stat_activity) */
  const char *ca_file;          /* the server's CA (libpq sslrootcert) unless the DSN names one; NULL:
                                 * libpq's default ($PGSSLROOTCERT, ~/.postgresql/root.crt) */
};

/* TLS. Unless the DSN states sslmode itself, the connection uses sslmode=verify-full: the server's
 * certificate must chain to the CA given (sslrootcert in the DSN, opts->ca_file, $PGSSLROOTCERT) and
 * name the host. $PGSSLMODE is not taken as a request. A weaker mode (verify-ca, require, prefer,
 * allow, disable) is used only when the DSN says so; then this returns a warning to log at start
 * (it names the mode, never the DSN), else NULL. */
const char *tn_audit_tls_warning(const struct tn_audit *a);

/* Checks that dsn is a libpq connection string or URI and copies it (it is a secret: it is
 * never logged nor put into error messages). Does not connect: the database may be down when
 * the operator starts; every other call connects (again) when needed, and with !no_create
 * creates the schema, table, triggers and functions idempotently on its first connection.
 * opts may be NULL (defaults) and is copied. On success *out is the caller's:
 * tn_audit_close() it. Errors: TN_ECONFIG (empty or malformed DSN, bad schema name), -ENOMEM. */
int tn_audit_open(const char *dsn, const struct tn_audit_options *opts, struct tn_audit **out,
                  struct tn_error *err);
/* Closes the connection and frees a. Accepts NULL. No call on a may be in progress. */
void tn_audit_close(struct tn_audit *a);
/* Every later tn_audit_append is first checked against fence (borrowed, must outlive a; NULL
 * removes it): closed, it fails with TN_ECANCELED and nothing is written. */
struct tn_fence;
void tn_audit_set_fence(struct tn_audit *a, const struct tn_fence *fence);

/* Creates (or completes) the schema, table, indexes, triggers and functions, idempotently and
 * safely against concurrent callers. writer_role (NULL: none) is granted what the operator
 * needs and nothing more: USAGE on the schema, SELECT on the table, EXECUTE on audit_append()
 * and audit_prune(). Needs a role that may create in the database (the owner of the objects).
 * Errors as below. */
int tn_audit_init(struct tn_audit *a, const char *writer_role, struct tn_error *err);

/* Connects if needed and checks the table exists. For readiness probes and tenantctl. */
int tn_audit_ping(struct tn_audit *a, struct tn_error *err);

/* Raises the table's minimum retention to `days` (never lowers it; a lower value changes
 * nothing). Needs the owner. *now_days (may be NULL) is the minimum in force afterwards. */
int tn_audit_raise_min_retention(struct tn_audit *a, int days, int *now_days, struct tn_error *err);

/* Whether the connected role could remove or change rows without the chain functions: it owns
 * the table (or is a member of its owner), is a superuser, or holds UPDATE/DELETE/TRUNCATE on it.
 * The operator should connect as a writer role (`tenantctl audit init --writer-role`) for which
 * this is false. *who is set to a short reason ("owns the table", "is a superuser", ...) or "". */
int tn_audit_role_can_cut(struct tn_audit *a, bool *can_cut, char *who, size_t who_len, struct tn_error *err);

/* The newest row: *id (0 when the table is empty) and its hash ("" then). The pair is the
 * anchor `tenantctl audit verify --expect ID:HASH` checks against. */
int tn_audit_head(struct tn_audit *a, long long *id, char hash[TN_AUDIT_HASH_LEN], struct tn_error *err);

struct tn_outbox_event;

/* What happened. Strings are borrowed for the call; NULL means none (SQL NULL). */
struct tn_audit_event {
  const char *actor;           /* required: the requesting user, or TN_AUDIT_OPERATOR_ACTOR */
  const char *action;          /* required: e.g. "activate", "suspend", "key.rotate" */
  const char *target;          /* required: "tenant/<id>" */
  const char *request_id;      /* the admission request uid, or the reconcile's id */
  const char *correlation_id;  /* the transition's correlation id */
  const char *outcome;         /* required: TN_AUDIT_STARTED, ... */
  long long generation_before; /* metadata.generation; <= 0: none (generations start at 1) */
  long long generation_after;
  const char *details; /* a JSON text stored verbatim (json column), or NULL */
  /* OUTBOX (issue 14, outbox.h): an event written to <schema>.outbox in the same transaction as
   * this row, or NULL. */
  const struct tn_outbox_event *outbox;
};

/* Appends one row, serialized against every other writer (all threads, all replicas) so the
 * chain never forks; the row's id, time (the database's clock), prev_hash and hash are set by
 * the database inside one transaction. On success *id_out (may be NULL) is the new row's id.
 * The row is durable when this returns 0.
 * Errors (all with a message that never contains the DSN):
 *   TN_EUNAVAILABLE  PostgreSQL unreachable or restarting (transient: retry later; the caller
 *                    must not perform the action). When the connection broke while committing
 *                    the row may or may not exist: a retry may record the event twice.
 *   TN_ETIMEOUT      statement or lock timeout (transient)
 *   TN_ECONFLICT     a writer that bypassed the lock got in first (transient)
 *   TN_ENOTFOUND     the table is missing and no_create was set
 *   TN_EFORBIDDEN    the role may not append
 *   TN_EINVALID      a required field is missing, details is not JSON, the action is reserved,
 *                    or PostgreSQL refused a value
 *   TN_EAPI          any other error PostgreSQL answered */
int tn_audit_append(struct tn_audit *a, const struct tn_audit_event *ev, long long *id_out,
                    struct tn_error *err);

/* The same for n rows (evs[0..n-1]) in one call, one round trip and one transaction (schema 6:
 * audit_append_rows()): in that order, with consecutive places in the chain under one take of the
 * lock, each with its outbox event if any; all or none. ids_out (may be NULL) gets the n ids. Every
 * row is checked before anything is sent: one invalid row writes nothing (TN_EINVALID). n == 0
 * does nothing and returns 0. Errors as for tn_audit_append. */
int tn_audit_append_many(struct tn_audit *a, const struct tn_audit_event *evs, size_t n, long long *ids_out,
                         struct tn_error *err);

/* Counters for metrics (tenancy_audit_*), read without waiting for a call in progress. */
struct tn_audit_stats {
  unsigned long long appends;         /* rows appended */
  unsigned long long append_failures; /* tn_audit_append errors (not the fence's TN_ECANCELED) */
  int up;                 /* the last round trip (append, head, ping) succeeded: 1; failed: 0; none yet: -1 */
  double last_round_trip; /* its wall time (seconds since the epoch); 0: none yet */
};
void tn_audit_get_stats(const struct tn_audit *a, struct tn_audit_stats *out);

/* Optional inputs of a verification. */
struct tn_audit_verify_opts {
  long long expect_id;     /* > 0: the row with this id must exist and have expect_hash (an anchor
                            * recorded outside the database detects rows removed at the end) */
  const char *expect_hash; /* 64 lowercase hex digits */
};

struct tn_audit_verify_result {
  bool ok;                           /* the whole chain verified */
  long long rows;                    /* rows verified before the first problem (all of them when ok) */
  long long first_id, last_id;       /* the first and last verified rows; 0 when none */
  char last_hash[TN_AUDIT_HASH_LEN]; /* hash of the last verified row ("" when none) */
  long long checkpoint_id;           /* the prune checkpoint anchoring the first row; 0 when none */
  long long pruned_through_id;       /* rows up to this id were removed by retention; 0 when none */
  long long bad_id;                  /* the first bad row; 0 when ok */
  char problem[512];                 /* "row 42: hash mismatch (stored ..., computed ...)"; "" when ok */
};

/* Reads the whole table in id order in one snapshot and checks the chain (chain.h): each row's
 * hash, each prev_hash, and that the first row follows either the genesis value or the latest
 * prune checkpoint. opts may be NULL. Returns 0 when the check ran (see r->ok), or an error as
 * for append when it could not. */
int tn_audit_verify(struct tn_audit *a, const struct tn_audit_verify_opts *opts,
                    struct tn_audit_verify_result *r, struct tn_error *err);

/* The newest `limit` rows (limit <= 0: all) whose target is "tenant/<tenant>" (tenant NULL:
 * every row), oldest first, as a new JSON array the caller json_decref()s. Each element has the
 * table's columns as keys: id, at (RFC 3339 UTC, microseconds), actor, action, target,
 * request_id, correlation_id, outcome, generation_before, generation_after (integers or null),
 * details (parsed JSON or null), prev_hash, hash. */
int tn_audit_list(struct tn_audit *a, const char *tenant, long long limit, json_t **rows,
                  struct tn_error *err);

/* Retention: removes the longest run of oldest rows that are all older than the cutoff (never
 * the newest row) and, in the same transaction, appends a checkpoint row (action "audit.prune",
 * target "audit", details {cutoff, prunedRows, prunedThroughId, lastPrunedHash}) so the chain
 * still verifies from the first remaining row. actor NULL: TN_AUDIT_OPERATOR_ACTOR.
 * *pruned (may be NULL) is the number of rows removed (0: nothing was old enough; no
 * checkpoint is written then). */
int tn_audit_prune(struct tn_audit *a, int older_than_days, const char *actor, long long *pruned,
                   struct tn_error *err);
/* The same with an explicit cutoff, an RFC 3339 time ("2025-01-02T03:04:05.123456Z"). */
int tn_audit_prune_before(struct tn_audit *a, const char *cutoff, const char *actor, long long *pruned,
                          struct tn_error *err);

/* Counts an append made through tn_audit_query (a function of the trail that writes audit rows,
 * such as tenant_version_record) in the appends / append failures metrics, as tn_audit_append
 * counts its own. */
void tn_audit_note_append(struct tn_audit *a, int rc);

/* Runs one statement returning rows on the trail's connection (for the tenant history,
 * history.h): sql with @S@ standing for the schema and $1..$n for params (text, NULL for SQL
 * NULL; never paste values into sql). Checked against the fence like tn_audit_append. On success
 * *rows is a new JSON array (json_decref it) of objects, column name -> text (null for NULL).
 * Errors as for tn_audit_append. */
int tn_audit_query(struct tn_audit *a, const char *sql, int n, const char *const *params, json_t **rows,
                   struct tn_error *err);

/* A TenancyPolicy retention ("2555d": a whole number of days, 1 to 3650000) -> days. Returns 0
 * or -EINVAL. */
int tn_audit_parse_retention(const char *s, int *days);

#endif
