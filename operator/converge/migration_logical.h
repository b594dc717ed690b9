/* migration_logical.h - the logical replication copy of a TenantMigration (issue 16): a publication
 * of the tenant's tables on the source, a subscription on the target (its slot on the source),
 * readiness from pg_subscription_rel, the catch-up after the write freeze (the slot's
 * confirmed_flush_lsn against the source's pg_current_wal_lsn), sequences moved past the source's
 * values, and the drop of all of it (subscription, publication, slots). Every step is idempotent:
 * a second pass finds what the first one made. The subscription connects from the target server
 * with the source's admin URI (as region failover does, docs/failover.md); that connection string
 * never goes into a message. Every identifier is quoted. */
#ifndef TN_CONVERGE_MIGRATION_LOGICAL_H
#define TN_CONVERGE_MIGRATION_LOGICAL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "converge/database.h"
#include "converge/migration_pg.h"
#include "util/error.h"

/* Admission of a DELETE of TenantMigration old (borrowed): refused while its logical replication
 * runs (status.copyMethod logical, phase Copy, Verify, Cutover or Aborting) and spec.abort is not
 * set, since the operator could then never drop the slot, which keeps the source's WAL forever.
 * true when allowed; else false with msg (n bytes) saying what to do. */
bool tn_mig_logical_delete_allowed(const json_t *old, char *msg, size_t n);

/* Default of the size (bytes, pg_total_relation_size over the tenant's tables) from which Copy
 * uses logical replication instead of the snapshot copy; TENANCY_MIGRATION_LOGICAL_MIN_BYTES
 * overrides it (0: always logical; a negative value: never). */
#define TN_MIG_LOGICAL_MIN_BYTES_DEFAULT (64LL * 1024 * 1024)

/* The threshold in force (the environment variable, else the default). */
long long tn_mig_logical_min_bytes(void);

/* The publication, subscription and slot name of a migration: "tnmig_" + its uid with '-' as '_'
 * (lower case; at most 63 bytes). 0 or TN_EINVALID (a uid that is not [0-9a-f-]). */
int tn_mig_logical_name(const char *uid, char *out, size_t n);

/* Sum of pg_total_relation_size of tables on conn (*bytes), and whether conn's server has
 * wal_level = logical (*logical). */
int tn_mig_pg_size_and_wal(PGconn *conn, const struct tn_mig_tables *tables, long long *bytes, bool *logical,
                           struct tn_error *err);

struct tn_mig_repl {
  bool subscription; /* the subscription exists on the target */
  char sub_oid[32];
  int tables_total;      /* tables of the publication */
  int tables_ready;      /* of them, state r (ready) in pg_subscription_rel */
  int tables_subscribed; /* rows of the subscription in pg_subscription_rel (any state) */
  long long lag_bytes;   /* source's current WAL minus the slot's confirmed_flush_lsn; -1 unknown */
};

/* Makes sure of everything, in this order: REPLICA IDENTITY FULL on the source tables without a
 * primary key (UPDATE/DELETE of a published table need a replica identity); the tables on the
 * target (tn_mig_pg_create_tables, IF NOT EXISTS); the publication `name` on src for exactly these
 * tables (created, or set when the list changed); when create_sub, the subscription `name` on dst
 * (the target's tables truncated first, a leftover inactive slot of the same name dropped), or
 * REFRESH PUBLICATION when the list changed. src_srv/src_db: the source, for the subscription's
 * connection string. Then the state (as tn_mig_logical_state). */
int tn_mig_logical_ensure(PGconn *src, PGconn *dst, const struct tn_db_server *src_srv, const char *src_db,
                          const char *name, const struct tn_mig_tables *tables, const char *role,
                          bool create_sub, struct tn_mig_repl *st, struct tn_error *err);

/* Reads the state of the subscription `name` (on dst) and its slot (on src). */
int tn_mig_logical_state(PGconn *src, PGconn *dst, const char *name, struct tn_mig_repl *st,
                         struct tn_error *err);

/* Waits (at most timeout_s) until the slot `name` on src has confirmed the source's current WAL
 * position. 0, TN_ETIMEOUT, TN_ENOTFOUND (no slot) or a database error. */
int tn_mig_logical_catch_up(PGconn *src, const char *name, double timeout_s, struct tn_error *err);

/* Drops the subscription `name` on dst (may be NULL: the target's database is gone), then on src
 * the publication, the slot `name` and the table-sync slots of subscription oid sub_oid (may be NULL
 * or ""), ending the sessions that hold them. Idempotent; 0 when nothing of it is left. */
int tn_mig_logical_drop(PGconn *src, PGconn *dst, const char *name, const char *sub_oid,
                        struct tn_error *err);

/* Sets each identity or serial column's sequence on dst past the larger of the column's maximum on
 * dst and the source sequence's last value (logical replication copies rows, not sequences). */
int tn_mig_pg_sync_sequences(PGconn *src, PGconn *dst, const struct tn_mig_tables *tables,
                             struct tn_error *err);

/* Row counts of tables on conn (rows[i], each table in its own statement). */
int tn_mig_pg_counts(PGconn *conn, const struct tn_mig_tables *tables, long long *rows, struct tn_error *err);

#endif
