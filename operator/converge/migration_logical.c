/* migration_logical.c - the logical replication copy of a TenantMigration (see migration_logical.h). */
#include "converge/migration_logical.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "failover/plan.h"
#include "util/pgtext.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

static int fail(PGconn *c, PGresult *res, const char *what, struct tn_error *err) {
  char msg[600];
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  tn_pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(c), msg, sizeof msg);
  if (!*msg)
    tn_pg_one_line(PQerrorMessage(c), msg, sizeof msg);
  int code = PQstatus(c) != CONNECTION_OK ? TN_ETRANSPORT : TN_EAPI;
  if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 ||
                strcmp(state, "55006") == 0))
    code = TN_ECONFLICT;
  tn_error_set(err, code, "%s: %s%s%s%s", what, msg, state ? " (SQLSTATE " : "", state ? state : "",
               state ? ")" : "");
  PQclear(res);
  return code;
}

/* Runs sql with params; the result (caller PQclears) or NULL with err set. */
static PGresult *q(PGconn *c, const char *what, const char *sql, int n, const char *const *params,
                   struct tn_error *err) {
  PGresult *r = n ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
    return r;
  fail(c, r, what, err);
  return NULL;
}

static int x(PGconn *c, const char *what, const char *sql, struct tn_error *err) {
  PGresult *r = q(c, what, sql, 0, NULL, err);
  PQclear(r);
  return r ? 0 : err->code;
}

static void sb_table(struct tn_mig_sb *b, PGconn *c, const struct tn_mig_tables *t, size_t i) {
  tn_mig_sb_ident(b, c, t->schema[i]);
  tn_mig_sb_add(b, ".");
  tn_mig_sb_ident(b, c, t->table[i]);
}
/* Runs b's statement (and frees it). */
static int sb_exec(struct tn_mig_sb *b, PGconn *c, const char *what, struct tn_error *err) {
  int rc = b->oom ? tn_error_set(err, -ENOMEM, "out of memory") : x(c, what, b->s, err);
  if (b->s)
    explicit_bzero(b->s, b->len);
  free(b->s);
  memset(b, 0, sizeof *b);
  return rc;
}

static double mono(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* ---- names and sizes -------------------------------------------------------------------------- */

long long tn_mig_logical_min_bytes(void) {
  const char *v = getenv("TENANCY_MIGRATION_LOGICAL_MIN_BYTES");
  if (!v || !*v)
    return TN_MIG_LOGICAL_MIN_BYTES_DEFAULT;
  char *end = NULL;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || !end || *end)
    return TN_MIG_LOGICAL_MIN_BYTES_DEFAULT;
  return n;
}

int tn_mig_logical_name(const char *uid, char *out, size_t n) {
  if (!uid || !*uid || strlen(uid) > 56 || n < strlen(uid) + 7)
    return TN_EINVALID;
  size_t k = (size_t)snprintf(out, n, "tnmig_");
  for (const char *p = uid; *p; p++) {
    char ch = *p;
    if (ch >= 'A' && ch <= 'F')
      ch = (char)(ch - 'A' + 'a');
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || ch == '-'))
      return TN_EINVALID;
    out[k++] = ch == '-' ? '_' : ch;
  }
  out[k] = '\0';
  return 0;
}

bool tn_mig_logical_delete_allowed(const json_t *old, char *msg, size_t n) {
  const json_t *st = json_object_get(old, "status"), *spec = json_object_get(old, "spec");
  const char *method = json_string_value(json_object_get(st, "copyMethod"));
  const char *phase = json_string_value(json_object_get(st, "phase"));
  const char *name = json_string_value(json_object_get(json_object_get(old, "metadata"), "name"));
  const char *repl = json_string_value(json_object_get(json_object_get(st, "replication"), "name"));
  if (!method || strcmp(method, "logical") != 0 || !phase || json_is_true(json_object_get(spec, "abort")))
    return true;
  static const char *const live[] = {"Copy", "Verify", "Cutover", "Aborting", NULL};
  bool running = false;
  for (int i = 0; live[i]; i++)
    running |= strcmp(phase, live[i]) == 0;
  if (!running)
    return true;
  snprintf(
      msg, n,
      "TenantMigration %s is in phase %s with a running logical replication (publication, subscription and "
      "slot %s): deleting it now would leave the replication slot on the source, which keeps its WAL "
      "forever; set spec.abort: true (before the cutover), wait for phase Aborted, then delete it",
      name ? name : "?", phase, repl ? repl : "tnmig_<uid>");
  return false;
}

/* "{\"s\".\"t\",...}" as a text[] literal of qualified names for $1::text[]::regclass[]: each
 * element quoted for the array syntax. */
static char *regclass_array(PGconn *c, const struct tn_mig_tables *t) {
  struct tn_mig_sb b = {0};
  tn_mig_sb_add(&b, "{");
  for (size_t i = 0; i < t->n; i++) {
    struct tn_mig_sb one = {0};
    sb_table(&one, c, t, i);
    if (one.oom) {
      b.oom = true;
      free(one.s);
      break;
    }
    tn_mig_sb_add(&b, i ? ",\"" : "\"");
    for (const char *p = one.s; *p; p++) {
      char e[3] = {0};
      if (*p == '"' || *p == '\\')
        e[0] = '\\', e[1] = *p;
      else
        e[0] = *p;
      tn_mig_sb_add(&b, e);
    }
    tn_mig_sb_add(&b, "\"");
    free(one.s);
  }
  tn_mig_sb_add(&b, "}");
  if (b.oom) {
    free(b.s);
    return NULL;
  }
  return b.s;
}

int tn_mig_pg_size_and_wal(PGconn *conn, const struct tn_mig_tables *tables, long long *bytes, bool *logical,
                           struct tn_error *err) {
  *bytes = 0;
  *logical = false;
  char *arr = regclass_array(conn, tables);
  if (!arr)
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *p[1] = {arr};
  PGresult *r = q(conn, "measuring the tenant's tables",
                  "SELECT coalesce(sum(pg_catalog.pg_total_relation_size(t)), 0)::bigint, "
                  "pg_catalog.current_setting('wal_level') = 'logical' FROM "
                  "unnest($1::text[]::regclass[]) t",
                  1, p, err);
  free(arr);
  if (!r)
    return err->code;
  *bytes = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  *logical = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
  PQclear(r);
  return 0;
}

int tn_mig_pg_counts(PGconn *conn, const struct tn_mig_tables *tables, long long *rows,
                     struct tn_error *err) {
  for (size_t i = 0; i < tables->n; i++) {
    struct tn_mig_sb b = {0};
    tn_mig_sb_add(&b, "SELECT count(*) FROM ");
    sb_table(&b, conn, tables, i);
    if (b.oom) {
      free(b.s);
      return tn_error_set(err, -ENOMEM, "out of memory");
    }
    PGresult *r = q(conn, "counting rows", b.s, 0, NULL, err);
    free(b.s);
    if (!r) {
      tn_error_prefix(err, "table %s", tables->v[i].name);
      return err->code;
    }
    rows[i] = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
  }
  return 0;
}

/* ---- the subscription's connection string ----------------------------------------------------- */

/* The admin URI's settings with the source database, and the server's host, port and sslmode where
 * the URI has none (as region failover builds it). Holds a password: bzero and free. */
static char *sub_conninfo(const struct tn_db_server *s, const char *database) {
  PQconninfoOption *opts = PQconninfoParse(s->admin_uri ? s->admin_uri : "", NULL);
  if (!opts)
    return NULL;
  size_t cap = 4096;
  char *buf = calloc(1, cap);
  bool has_host = false, has_ssl = false, bad = !buf;
  char port[16];
  snprintf(port, sizeof port, "%d", s->port > 0 ? s->port : 5432);
  for (PQconninfoOption *o = opts; !bad && o->keyword; o++) {
    if (!o->val || !*o->val || strcmp(o->keyword, "dbname") == 0)
      continue;
    has_host |= strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0;
    has_ssl |= strcmp(o->keyword, "sslmode") == 0;
    bad = tn_failover_conninfo_add(buf, cap, o->keyword, o->val) != 0;
  }
  PQconninfoFree(opts);
  if (!bad && !has_host && s->host)
    bad = tn_failover_conninfo_add(buf, cap, "host", s->host) ||
          tn_failover_conninfo_add(buf, cap, "port", port);
  if (!bad && !has_ssl)
    bad =
        tn_failover_conninfo_add(buf, cap, "sslmode", s->sslmode && *s->sslmode ? s->sslmode : "verify-full");
  if (!bad)
    bad = tn_failover_conninfo_add(buf, cap, "dbname", database) != 0;
  if (bad && buf) {
    explicit_bzero(buf, cap);
    free(buf);
    buf = NULL;
  }
  return buf;
}

/* ---- state ------------------------------------------------------------------------------------ */

int tn_mig_logical_state(PGconn *src, PGconn *dst, const char *name, struct tn_mig_repl *st,
                         struct tn_error *err) {
  memset(st, 0, sizeof *st);
  st->lag_bytes = -1;
  const char *p[1] = {name};
  PGresult *r = q(dst, "reading the subscription",
                  "SELECT s.oid, (SELECT count(*) FROM pg_catalog.pg_subscription_rel sr WHERE sr.srsubid = "
                  "s.oid AND sr.srsubstate = 'r'), (SELECT count(*) FROM pg_catalog.pg_subscription_rel sr "
                  "WHERE sr.srsubid = s.oid) FROM pg_catalog.pg_subscription s WHERE s.subname = $1 AND "
                  "s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = "
                  "pg_catalog.current_database())",
                  1, p, err);
  if (!r)
    return err->code;
  if (PQntuples(r)) {
    st->subscription = true;
    snprintf(st->sub_oid, sizeof st->sub_oid, "%s", PQgetvalue(r, 0, 0));
    st->tables_ready = atoi(PQgetvalue(r, 0, 1));
    st->tables_subscribed = atoi(PQgetvalue(r, 0, 2));
  }
  PQclear(r);
  r = q(src, "reading the publication and its slot",
        "SELECT (SELECT count(*) FROM pg_catalog.pg_publication_tables WHERE pubname = $1), (SELECT "
        "pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM "
        "pg_catalog.pg_replication_slots WHERE slot_name = $1)",
        1, p, err);
  if (!r)
    return err->code;
  st->tables_total = atoi(PQgetvalue(r, 0, 0));
  if (!PQgetisnull(r, 0, 1))
    st->lag_bytes = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  return 0;
}

/* ---- setting it up ---------------------------------------------------------------------------- */

/* Whether the publication `name` on src exists (*exists) and holds exactly tables (*same). */
static int pub_tables(PGconn *src, const char *name, const struct tn_mig_tables *t, bool *exists, bool *same,
                      struct tn_error *err) {
  const char *p[1] = {name};
  PGresult *r = q(src, "reading the publication",
                  "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1", 1, p, err);
  if (!r)
    return err->code;
  *exists = PQntuples(r) > 0;
  PQclear(r);
  *same = false;
  if (!*exists)
    return 0;
  r = q(src, "reading the publication's tables",
        "SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables WHERE pubname = $1", 1, p, err);
  if (!r)
    return err->code;
  bool eq = (size_t)PQntuples(r) == t->n;
  for (size_t i = 0; eq && i < t->n; i++) {
    bool found = false;
    for (int j = 0; j < PQntuples(r) && !found; j++)
      found = strcmp(PQgetvalue(r, j, 0), t->schema[i]) == 0 && strcmp(PQgetvalue(r, j, 1), t->table[i]) == 0;
    eq = found;
  }
  *same = eq;
  PQclear(r);
  return 0;
}

/* Drops the slot `name` on src when it is not in use (a leftover of a subscription whose creation
 * did not commit). */
static void drop_idle_slot(PGconn *src, const char *name) {
  struct tn_error ignore = {0};
  const char *p[1] = {name};
  PQclear(
      q(src, "dropping a leftover slot",
        "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE "
        "slot_name = $1 AND NOT active",
        1, p, &ignore));
}

/* The tables of t that dst lacks, into out (tn_mig_tables_free). */
static int missing_tables(PGconn *dst, const struct tn_mig_tables *t, struct tn_mig_tables *out,
                          struct tn_error *err) {
  memset(out, 0, sizeof *out);
  size_t n = t->n ? t->n : 1;
  out->v = calloc(n, sizeof *out->v);
  out->schema = calloc(n, sizeof *out->schema);
  out->table = calloc(n, sizeof *out->table);
  if (!out->v || !out->schema || !out->table) {
    tn_mig_tables_free(out);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < t->n; i++) {
    const char *p[2] = {t->schema[i], t->table[i]};
    PGresult *r =
        q(dst, "looking for a table on the target",
          "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
          "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'",
          2, p, err);
    if (!r) {
      tn_mig_tables_free(out);
      return err->code;
    }
    if (PQntuples(r) == 0) {
      out->v[out->n] = t->v[i];
      memcpy(out->schema[out->n], t->schema[i], sizeof out->schema[0]);
      memcpy(out->table[out->n], t->table[i], sizeof out->table[0]);
      out->n++;
    }
    PQclear(r);
  }
  return 0;
}

int tn_mig_logical_ensure(PGconn *src, PGconn *dst, const struct tn_db_server *src_srv, const char *src_db,
                          const char *name, const struct tn_mig_tables *tables, const char *role,
                          bool create_sub, struct tn_mig_repl *st, struct tn_error *err) {
  int rc;
  /* replica identity of the tables without a primary key */
  char *arr = regclass_array(src, tables);
  if (!arr)
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *pa[1] = {arr};
  PGresult *r =
      q(src, "finding tables without a replica identity",
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid "
        "= c.relnamespace WHERE c.oid = ANY($1::text[]::regclass[]) AND c.relreplident = 'd' AND NOT "
        "EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)",
        1, pa, err);
  free(arr);
  if (!r)
    return err->code;
  for (int i = 0; i < PQntuples(r); i++) {
    struct tn_mig_sb b = {0};
    tn_mig_sb_add(&b, "ALTER TABLE ");
    tn_mig_sb_ident(&b, src, PQgetvalue(r, i, 0));
    tn_mig_sb_add(&b, ".");
    tn_mig_sb_ident(&b, src, PQgetvalue(r, i, 1));
    tn_mig_sb_add(&b, " REPLICA IDENTITY FULL");
    if ((rc = sb_exec(&b, src, "setting REPLICA IDENTITY FULL on the source", err))) {
      PQclear(r);
      return rc;
    }
  }
  PQclear(r);
  /* the tables missing on the target (made on the source since the last pass); never the ones
   * there (ALTER TABLE OWNER would wait for the table's initial copy) */
  struct tn_mig_tables missing = {0};
  if ((rc = missing_tables(dst, tables, &missing, err)))
    return rc;
  rc = missing.n ? tn_mig_pg_create_tables(src, dst, &missing, role, err) : 0;
  tn_mig_tables_free(&missing);
  if (rc)
    return rc;
  /* the publication */
  bool have_pub = false, same = false;
  if ((rc = pub_tables(src, name, tables, &have_pub, &same, err)))
    return rc;
  if (!have_pub || (!same && tables->n > 0)) {
    struct tn_mig_sb b = {0};
    tn_mig_sb_add(&b, have_pub ? "ALTER PUBLICATION " : "CREATE PUBLICATION ");
    tn_mig_sb_ident(&b, src, name);
    if (tables->n)
      tn_mig_sb_add(&b, have_pub ? " SET TABLE " : " FOR TABLE ");
    for (size_t i = 0; i < tables->n; i++) {
      tn_mig_sb_add(&b, i ? ", " : "");
      sb_table(&b, src, tables, i);
    }
    if ((rc = sb_exec(&b, src, have_pub ? "setting the publication's tables" : "creating the publication",
                      err)))
      return rc;
  }
  /* the subscription */
  struct tn_mig_repl now;
  if ((rc = tn_mig_logical_state(src, dst, name, &now, err)))
    return rc;
  if (!now.subscription && create_sub) {
    /* a repeat starts clean: the initial copy fills empty tables (nobody else writes there: the
     * target role cannot log in before the cutover) */
    if (tables->n) {
      struct tn_mig_sb b = {0};
      tn_mig_sb_add(&b, "TRUNCATE ");
      for (size_t i = 0; i < tables->n; i++) {
        tn_mig_sb_add(&b, i ? ", " : "");
        sb_table(&b, dst, tables, i);
      }
      if ((rc = sb_exec(&b, dst, "emptying the target's tables", err)))
        return rc;
    }
    drop_idle_slot(src, name);
    char *ci = sub_conninfo(src_srv, src_db);
    char *lit = ci ? PQescapeLiteral(dst, ci, strlen(ci)) : NULL;
    if (ci) {
      explicit_bzero(ci, strlen(ci));
      free(ci);
    }
    if (!lit)
      return tn_error_set(err, TN_ECONFIG,
                          "database server %s: cannot build the subscription's connection string",
                          src_srv->name);
    struct tn_mig_sb b = {0};
    tn_mig_sb_add(&b, "CREATE SUBSCRIPTION ");
    tn_mig_sb_ident(&b, dst, name);
    tn_mig_sb_add(&b, " CONNECTION ");
    tn_mig_sb_add(&b, lit);
    tn_mig_sb_add(&b, " PUBLICATION ");
    tn_mig_sb_ident(&b, dst, name);
    tn_mig_sb_add(&b, " WITH (slot_name = ");
    tn_mig_sb_ident(&b, dst, name);
    tn_mig_sb_add(&b, ")");
    explicit_bzero(lit, strlen(lit));
    PQfreemem(lit);
    /* the server's message may not quote the connection string, but it never goes further than
     * the condition's message: keep it to the reason only */
    if ((rc = sb_exec(&b, dst, "creating the subscription on the target", err)))
      return rc;
  } else if (now.subscription && (!same || now.tables_subscribed != now.tables_total)) {
    struct tn_mig_sb b = {0};
    tn_mig_sb_add(&b, "ALTER SUBSCRIPTION ");
    tn_mig_sb_ident(&b, dst, name);
    tn_mig_sb_add(&b, " REFRESH PUBLICATION");
    if ((rc = sb_exec(&b, dst, "refreshing the subscription", err)))
      return rc;
  }
  return tn_mig_logical_state(src, dst, name, st, err);
}

/* ---- catch-up --------------------------------------------------------------------------------- */

int tn_mig_logical_catch_up(PGconn *src, const char *name, double timeout_s, struct tn_error *err) {
  PGresult *r =
      q(src, "reading the WAL position", "SELECT pg_catalog.pg_current_wal_lsn()::text", 0, NULL, err);
  if (!r)
    return err->code;
  char lsn[64];
  snprintf(lsn, sizeof lsn, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  const char *p[2] = {name, lsn};
  double until = mono() + timeout_s;
  for (;;) {
    r = q(src, "reading the slot's position",
          "SELECT confirmed_flush_lsn >= $2::pg_lsn, pg_catalog.pg_wal_lsn_diff($2::pg_lsn, "
          "confirmed_flush_lsn)::bigint FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
          2, p, err);
    if (!r)
      return err->code;
    if (PQntuples(r) == 0) {
      PQclear(r);
      return tn_error_set(err, TN_ENOTFOUND, "the replication slot %s is gone from the source", name);
    }
    bool done = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    long long behind = PQgetisnull(r, 0, 1) ? -1 : strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    if (done)
      return 0;
    if (mono() > until)
      return tn_error_set(err, TN_ETIMEOUT,
                          "the subscription did not confirm the source's WAL position %s within %.0f s (%lld "
                          "bytes behind)",
                          lsn, timeout_s, behind);
    usleep(50 * 1000);
  }
}

/* ---- the drop --------------------------------------------------------------------------------- */

int tn_mig_logical_drop(PGconn *src, PGconn *dst, const char *name, const char *sub_oid,
                        struct tn_error *err) {
  int rc;
  char oid[32] = "";
  snprintf(oid, sizeof oid, "%s", sub_oid ? sub_oid : "");
  if (dst) {
    const char *p[1] = {name};
    PGresult *r = q(dst, "reading the subscription",
                    "SELECT oid FROM pg_catalog.pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid "
                    "FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())",
                    1, p, err);
    if (!r)
      return err->code;
    bool have = PQntuples(r) > 0;
    if (have)
      snprintf(oid, sizeof oid, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (have) {
      /* detached from its slot first: the drop then needs no connection to the source (which may
       * be down); the slots are dropped on the source below */
      const char *steps[] = {" DISABLE", " SET (slot_name = NONE)", NULL};
      for (int i = 0; steps[i]; i++) {
        struct tn_mig_sb b = {0};
        tn_mig_sb_add(&b, "ALTER SUBSCRIPTION ");
        tn_mig_sb_ident(&b, dst, name);
        tn_mig_sb_add(&b, steps[i]);
        if ((rc = sb_exec(&b, dst, "detaching the subscription from its slot", err)))
          return rc;
      }
      struct tn_mig_sb b = {0};
      tn_mig_sb_add(&b, "DROP SUBSCRIPTION IF EXISTS ");
      tn_mig_sb_ident(&b, dst, name);
      if ((rc = sb_exec(&b, dst, "dropping the subscription", err)))
        return rc;
    }
  }
  if (!src)
    return 0;
  struct tn_mig_sb b = {0};
  tn_mig_sb_add(&b, "DROP PUBLICATION IF EXISTS ");
  tn_mig_sb_ident(&b, src, name);
  if ((rc = sb_exec(&b, src, "dropping the publication", err)))
    return rc;
  /* the slot and the table-sync slots (pg_<suboid>_sync_<relid>_<sysid>) of the subscription */
  char like[64];
  snprintf(like, sizeof like, "pg\\_%s\\_sync\\_%%", oid[0] ? oid : "none");
  const char *p[2] = {name, like};
  for (int tries = 0;; tries++) {
    struct tn_error ignore = {0};
    /* a wal sender still serving a slot (the subscription was just dropped) is ended */
    PQclear(q(src, "ending the slots' wal senders",
              "SELECT pg_catalog.pg_terminate_backend(active_pid) FROM pg_catalog.pg_replication_slots WHERE "
              "(slot_name = $1 OR slot_name LIKE $2) AND active_pid IS NOT NULL",
              2, p, &ignore));
    PGresult *r =
        q(src, "dropping the replication slots",
          "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots "
          "WHERE (slot_name = $1 OR slot_name LIKE $2) AND NOT active",
          2, p, err);
    if (!r && err->code != TN_ECONFLICT)
      return err->code;
    PQclear(r);
    r = q(src, "counting the replication slots",
          "SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 OR slot_name LIKE $2", 2,
          p, err);
    if (!r)
      return err->code;
    int left = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!left) {
      memset(err, 0, sizeof *err);
      return 0;
    }
    if (tries >= 50)
      return tn_error_set(err, TN_ECONFLICT, "replication slot %s still in use on the source after 5 s",
                          name);
    usleep(100 * 1000);
  }
}

/* ---- sequences -------------------------------------------------------------------------------- */

int tn_mig_pg_sync_sequences(PGconn *src, PGconn *dst, const struct tn_mig_tables *tables,
                             struct tn_error *err) {
  for (size_t i = 0; i < tables->n; i++) {
    struct tn_mig_sb qn = {0};
    sb_table(&qn, dst, tables, i);
    if (qn.oom) {
      free(qn.s);
      return tn_error_set(err, -ENOMEM, "out of memory");
    }
    const char *p1[1] = {qn.s};
    PGresult *cols =
        q(dst, "reading identity columns",
          "SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1::text::regclass AND "
          "a.attnum > 0 AND NOT a.attisdropped AND pg_catalog.pg_get_serial_sequence($1::text, "
          "a.attname) IS NOT NULL",
          1, p1, err);
    if (!cols) {
      free(qn.s);
      return err->code;
    }
    int rc = 0;
    for (int j = 0; j < PQntuples(cols) && !rc; j++) {
      const char *col = PQgetvalue(cols, j, 0);
      const char *p2[2] = {qn.s, col};
      /* the source's sequence (NULL when the column has none there or it was never used) */
      PGresult *s = q(src, "reading the source's sequence",
                      "SELECT pg_catalog.pg_sequence_last_value(pg_catalog.pg_get_serial_sequence($1::text, "
                      "$2::text)::regclass)",
                      2, p2, err);
      if (!s) {
        rc = err->code;
        break;
      }
      char last[32] = "0";
      if (!PQgetisnull(s, 0, 0))
        snprintf(last, sizeof last, "%s", PQgetvalue(s, 0, 0));
      PQclear(s);
      struct tn_mig_sb b = {0};
      char *lit = PQescapeLiteral(dst, qn.s, strlen(qn.s)), *lcol = PQescapeLiteral(dst, col, strlen(col));
      tn_mig_sb_add(&b, "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence(");
      tn_mig_sb_add(&b, lit ? lit : "''");
      tn_mig_sb_add(&b, ", ");
      tn_mig_sb_add(&b, lcol ? lcol : "''");
      tn_mig_sb_add(&b, "), greatest(coalesce(max(");
      tn_mig_sb_ident(&b, dst, col);
      tn_mig_sb_add(&b, ")::bigint, 0), ");
      tn_mig_sb_add(&b, last); /* digits from the server */
      tn_mig_sb_add(&b, "::bigint) + 1, false) FROM ");
      tn_mig_sb_add(&b, qn.s);
      if (!lit || !lcol)
        b.oom = true;
      PQfreemem(lit);
      PQfreemem(lcol);
      rc = sb_exec(&b, dst, "moving a sequence past the source's values", err);
    }
    PQclear(cols);
    free(qn.s);
    if (rc)
      return rc;
  }
  return 0;
}
