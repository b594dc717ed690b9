/* migration_pg.c - the PostgreSQL work of a TenantMigration (see migration_pg.h). */
#include "converge/migration_pg.h"
#include "util/pgtext.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- connections ------------------------------------------------------------------------------ */

int tn_mig_pg_connect(const struct tn_db_server *srv, const char *dbname, PGconn **out,
                      struct tn_error *err) {
  *out = NULL;
  if (!srv->admin_uri || !*srv->admin_uri)
    return tn_error_set(err, TN_ECONFIG, "database server %s: the admin Secret has no key uri", srv->name);
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(srv->admin_uri, &perr);
  if (!opts) {
    PQfreemem(perr); /* may quote the password */
    return tn_error_set(err, TN_ECONFIG,
                        "database server %s: the admin Secret's uri is not a libpq connection string",
                        srv->name);
  }
  bool has_host = false;
  for (PQconninfoOption *o = opts; o->keyword; o++)
    if (o->val && *o->val && (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0))
      has_host = true;
  PQconninfoFree(opts);
  const char *keys[12], *vals[12];
  int k = 0;
  char port[16], ca_path[512] = "";
  snprintf(port, sizeof port, "%d", srv->port > 0 ? srv->port : 5432);
  keys[k] = "dbname", vals[k++] = srv->admin_uri; /* expanded; later keywords override */
  if (dbname && *dbname)
    keys[k] = "dbname", vals[k++] = dbname;
  if (!has_host && srv->host) {
    keys[k] = "host", vals[k++] = srv->host;
    keys[k] = "port", vals[k++] = port;
  }
  /* TLS as the Region says, verify-full unless it says otherwise, against the server's CA. */
  keys[k] = "sslmode", vals[k++] = srv->sslmode && *srv->sslmode ? srv->sslmode : "verify-full";
  if (srv->ca_pem && *srv->ca_pem) {
    int w = tn_pg_write_ca_file(srv->ca_pem, ca_path, sizeof ca_path);
    if (w)
      return tn_error_set(err, w, "database server %s: writing the CA bundle: %s", srv->name, strerror(-w));
    keys[k] = "sslrootcert", vals[k++] = ca_path;
  }
  keys[k] = "connect_timeout", vals[k++] = "5";
  keys[k] = "application_name", vals[k++] = "tenancy-operator-migration";
  keys[k] = "options", vals[k++] = "-c lock_timeout=10s -c statement_timeout=300s";
  keys[k] = NULL, vals[k] = NULL;
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (ca_path[0])
    unlink(ca_path);
  if (!c)
    return tn_error_set(err, -ENOMEM, "out of memory");
  if (PQstatus(c) != CONNECTION_OK) {
    char msg[600];
    tn_pg_one_line(PQerrorMessage(c), msg, sizeof msg);
    PQfinish(c);
    return tn_error_set(err, TN_ETRANSPORT, "database server %s: cannot connect%s%s: %s", srv->name,
                        dbname && *dbname ? " to database " : "", dbname && *dbname ? dbname : "", msg);
  }
  PQsetNoticeProcessor(c, tn_pg_quiet_notices, NULL);
  *out = c;
  return 0;
}

/* ---- helpers ---------------------------------------------------------------------------------- */

static int pg_fail(PGconn *c, PGresult *res, const char *what, struct tn_error *err) {
  char msg[600];
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  tn_pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(c), msg, sizeof msg);
  if (!*msg)
    tn_pg_one_line(PQerrorMessage(c), msg, sizeof msg);
  int code = PQstatus(c) != CONNECTION_OK ? TN_ETRANSPORT : TN_EAPI;
  if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0))
    code = TN_ECONFLICT;
  if (state && strcmp(state, "57014") == 0)
    code = TN_ETIMEOUT;
  tn_error_set(err, code, "%s: %s%s%s%s", what, msg, state ? " (SQLSTATE " : "", state ? state : "",
               state ? ")" : "");
  PQclear(res);
  return code;
}

static int exec_ok(PGconn *c, const char *sql, const char *what, struct tn_error *err) {
  PGresult *res = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    return pg_fail(c, res, what, err);
  PQclear(res);
  return 0;
}

/* "ident" quoted, appended to buf (size n) at *len. */
static int append_ident(PGconn *c, char *buf, size_t n, size_t *len, const char *ident) {
  char *q = PQescapeIdentifier(c, ident, strlen(ident));
  if (!q)
    return -ENOMEM;
  int w = snprintf(buf + *len, n - *len, "%s", q);
  PQfreemem(q);
  if (w < 0 || (size_t)w >= n - *len)
    return -ENAMETOOLONG;
  *len += (size_t)w;
  return 0;
}

/* "schema"."table" into out. */
static int qualified(PGconn *c, const char *schema, const char *table, char *out, size_t n) {
  size_t len = 0;
  out[0] = '\0';
  if (append_ident(c, out, n, &len, schema) || len + 1 >= n)
    return -ENAMETOOLONG;
  out[len++] = '.';
  out[len] = '\0';
  return append_ident(c, out, n, &len, table);
}

void tn_mig_sb_add(struct tn_mig_sb *b, const char *t) {
  size_t n = strlen(t);
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->s = p;
    b->cap = cap;
  }
  memcpy(b->s + b->len, t, n + 1);
  b->len += n;
}
void tn_mig_sb_ident(struct tn_mig_sb *b, PGconn *c, const char *ident) {
  char *q = PQescapeIdentifier(c, ident, strlen(ident));
  if (!q) {
    b->oom = true;
    return;
  }
  tn_mig_sb_add(b, q);
  PQfreemem(q);
}

/* ---- tables ----------------------------------------------------------------------------------- */

void tn_mig_tables_free(struct tn_mig_tables *t) {
  if (!t)
    return;
  free(t->v);
  free(t->schema);
  free(t->table);
  free(t->dst_schema);
  memset(t, 0, sizeof *t);
}

/* ---- isolation changes: where each table goes (ISOLATION, issue 16) ---------------------------- */

const char *tn_mig_tables_dst_schema(const struct tn_mig_tables *t, size_t i) {
  return t->dst_schema ? t->dst_schema[i] : t->schema[i];
}

int tn_mig_tables_map(struct tn_mig_tables *t, enum tn_isolation from, enum tn_isolation to, const char *role,
                      struct tn_error *err) {
  free(t->dst_schema);
  t->dst_schema = NULL;
  if (!t->n)
    return 0;
  char(*d)[64] = calloc(t->n, sizeof *d);
  if (!d)
    return tn_error_set(err, -ENOMEM, "out of memory");
  bool changed = false;
  for (size_t i = 0; i < t->n; i++) {
    int rc = tn_mig_map_schema(from, to, role, t->schema[i], d[i], err);
    if (rc) {
      free(d);
      return rc;
    }
    changed |= strcmp(d[i], t->schema[i]) != 0;
    for (size_t j = 0; j < i; j++)
      if (strcmp(d[j], d[i]) == 0 && strcmp(t->table[j], t->table[i]) == 0) {
        tn_error_set(err, TN_EINVALID,
                     "tables %s and %s would both become %s.%s on the target: rename or drop one of them "
                     "before migrating",
                     t->v[j].name, t->v[i].name, d[i], t->table[i]);
        free(d);
        return TN_EINVALID;
      }
  }
  if (changed)
    t->dst_schema = d;
  else
    free(d);
  return 0;
}

int tn_mig_pg_list_tables(PGconn *conn, const char *schema, struct tn_mig_tables *out, struct tn_error *err) {
  memset(out, 0, sizeof *out);
  const char *params[1] = {schema && *schema ? schema : NULL};
  PGresult *res = PQexecParams(
      conn,
      "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
      "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND NOT c.relispartition AND "
      "CASE WHEN $1::text IS NULL THEN n.nspname NOT IN ('pg_catalog', 'information_schema') AND "
      "n.nspname NOT LIKE 'pg\\_%' ELSE n.nspname = $1::text END ORDER BY 1, 2",
      1, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return pg_fail(conn, res, "listing the tenant's tables", err);
  size_t n = (size_t)PQntuples(res);
  out->v = calloc(n ? n : 1, sizeof *out->v);
  out->schema = calloc(n ? n : 1, sizeof *out->schema);
  out->table = calloc(n ? n : 1, sizeof *out->table);
  if (!out->v || !out->schema || !out->table) {
    PQclear(res);
    tn_mig_tables_free(out);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    const char *s = PQgetvalue(res, (int)i, 0), *t = PQgetvalue(res, (int)i, 1);
    if (strlen(s) >= sizeof out->schema[0] || strlen(t) >= sizeof out->table[0]) {
      PQclear(res);
      tn_mig_tables_free(out);
      return tn_error_set(err, TN_EINVALID, "a table name is too long to migrate");
    }
    snprintf(out->schema[i], sizeof out->schema[i], "%s", s);
    snprintf(out->table[i], sizeof out->table[i], "%s", t);
    snprintf(out->v[i].name, sizeof out->v[i].name, "%s.%s", s, t);
  }
  out->n = n;
  PQclear(res);
  return 0;
}

/* The CREATE TABLE of one table from src's catalogs (NULL on failure, err set). */
static char *table_ddl(PGconn *src, PGconn *dst, const char *schema, const char *dst_schema,
                       const char *table, const char *role, struct tn_error *err) {
  char qname[400], src_qname[400];
  if (qualified(dst, dst_schema, table, qname, sizeof qname) ||
      qualified(src, schema, table, src_qname, sizeof src_qname)) {
    tn_error_set(err, TN_EINVALID, "table name too long");
    return NULL;
  }
  const char *params[1] = {src_qname};
  PGresult *cols = PQexecParams(
      src,
      "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, "
      "pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '' OR "
      "coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%' "
      "FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND "
      "d.adnum = a.attnum WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped "
      "AND a.attgenerated = '' ORDER BY a.attnum",
      1, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(cols) != PGRES_TUPLES_OK) {
    pg_fail(src, cols, "reading the columns", err);
    return NULL;
  }
  PGresult *cons = PQexecParams(src,
                                "SELECT conname, pg_catalog.pg_get_constraintdef(oid) FROM "
                                "pg_catalog.pg_constraint WHERE conrelid = $1::regclass AND contype IN "
                                "('p', 'u', 'c') ORDER BY contype DESC, conname",
                                1, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(cons) != PGRES_TUPLES_OK) {
    PQclear(cols);
    pg_fail(src, cons, "reading the constraints", err);
    return NULL;
  }
  struct tn_mig_sb b = {0};
  tn_mig_sb_add(&b, "CREATE TABLE IF NOT EXISTS ");
  tn_mig_sb_add(&b, qname);
  tn_mig_sb_add(&b, " (");
  for (int i = 0; i < PQntuples(cols); i++) {
    if (i)
      tn_mig_sb_add(&b, ", ");
    tn_mig_sb_ident(&b, dst, PQgetvalue(cols, i, 0));
    tn_mig_sb_add(&b, " ");
    const char *type = PQgetvalue(cols, i, 1);
    bool ident = strcmp(PQgetvalue(cols, i, 4), "t") == 0;
    /* serial columns are integer/bigint with a nextval default: an identity column keeps inserts
     * without the column working; anything else from format_type is a type name */
    tn_mig_sb_add(&b, type);
    if (ident)
      tn_mig_sb_add(&b, " GENERATED BY DEFAULT AS IDENTITY");
    else if (!PQgetisnull(cols, i, 3)) {
      tn_mig_sb_add(&b, " DEFAULT ");
      tn_mig_sb_add(&b, PQgetvalue(cols, i, 3)); /* the server's own deparsed expression */
    }
    if (strcmp(PQgetvalue(cols, i, 2), "t") == 0)
      tn_mig_sb_add(&b, " NOT NULL");
  }
  for (int i = 0; i < PQntuples(cons); i++) {
    tn_mig_sb_add(&b, ", CONSTRAINT ");
    tn_mig_sb_ident(&b, dst, PQgetvalue(cons, i, 0));
    tn_mig_sb_add(&b, " ");
    tn_mig_sb_add(&b, PQgetvalue(cons, i, 1));
  }
  tn_mig_sb_add(&b, "); ALTER TABLE ");
  tn_mig_sb_add(&b, qname);
  tn_mig_sb_add(&b, " OWNER TO ");
  tn_mig_sb_ident(&b, dst, role);
  PQclear(cols);
  PQclear(cons);
  if (b.oom) {
    free(b.s);
    tn_error_set(err, -ENOMEM, "out of memory");
    return NULL;
  }
  return b.s;
}

int tn_mig_pg_create_tables(PGconn *src, PGconn *dst, const struct tn_mig_tables *tables, const char *role,
                            struct tn_error *err) {
  int rc = 0;
  for (size_t i = 0; i < tables->n && !rc; i++) {
    /* its schema first (a dedicated database may have several), owned by the tenant */
    struct tn_mig_sb s = {0};
    tn_mig_sb_add(&s, "CREATE SCHEMA IF NOT EXISTS ");
    tn_mig_sb_ident(&s, dst, tn_mig_tables_dst_schema(tables, i));
    tn_mig_sb_add(&s, " AUTHORIZATION ");
    tn_mig_sb_ident(&s, dst, role);
    if (s.oom)
      rc = tn_error_set(err, -ENOMEM, "out of memory");
    else
      rc = exec_ok(dst, s.s, "creating the schema on the target", err);
    free(s.s);
    if (rc)
      break;
    char *ddl = table_ddl(src, dst, tables->schema[i], tn_mig_tables_dst_schema(tables, i), tables->table[i],
                          role, err);
    if (!ddl)
      return err->code ? err->code : TN_EAPI;
    rc = exec_ok(dst, ddl, "creating the table on the target", err);
    free(ddl);
    if (rc) {
      tn_error_prefix(err, "table %s", tables->v[i].name);
      break;
    }
    /* indexes that back no constraint */
    char qname[400], dst_qname[400];
    if (qualified(src, tables->schema[i], tables->table[i], qname, sizeof qname) ||
        qualified(dst, tn_mig_tables_dst_schema(tables, i), tables->table[i], dst_qname, sizeof dst_qname))
      return tn_error_set(err, TN_EINVALID, "table name too long");
    /* the definition names the table schema-qualified (quote_ident each part): on the target it is
     * the table's name there (another schema when the isolation changes) */
    const char *params[2] = {qname, dst_qname};
    PGresult *idx = PQexecParams(
        src,
        "SELECT pg_catalog.replace(pg_catalog.pg_get_indexdef(i.indexrelid), ' ON ' || "
        "pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) || ' ', ' ON ' || $2 "
        "|| "
        "' ') FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN "
        "pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE i.indrelid = $1::regclass AND NOT EXISTS "
        "(SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid)",
        2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(idx) != PGRES_TUPLES_OK)
      return pg_fail(src, idx, "reading the indexes", err);
    for (int j = 0; j < PQntuples(idx) && !rc; j++) {
      const char *def = PQgetvalue(idx, j, 0);
      const char *rest = strncmp(def, "CREATE UNIQUE INDEX ", 20) == 0 ? def + 20
                         : strncmp(def, "CREATE INDEX ", 13) == 0      ? def + 13
                                                                       : NULL;
      if (!rest)
        continue;
      struct tn_mig_sb q = {0};
      tn_mig_sb_add(&q, def[7] == 'U' ? "CREATE UNIQUE INDEX IF NOT EXISTS " : "CREATE INDEX IF NOT EXISTS ");
      tn_mig_sb_add(&q, rest);
      rc = q.oom ? tn_error_set(err, -ENOMEM, "out of memory") : exec_ok(dst, q.s, "creating an index", err);
      free(q.s);
    }
    PQclear(idx);
  }
  return rc;
}

/* ---- copy and checksums ----------------------------------------------------------------------- */

static int sum_one(PGconn *c, const char *qname, struct tn_mig_table_sum *s, struct tn_error *err) {
  char sql[1024];
  /* every row's text form hashed (64-bit hashtextextended, stable across servers and versions:
   * hash partitioning relies on it), the hashes summed, the sum hashed into 32 hex digits:
   * independent of the physical order, equal on both servers when the rows and column types are,
   * without a sort, about twice as fast as an md5 per row (the freeze of a logical cutover is
   * mostly this) */
  snprintf(
      sql, sizeof sql,
      "SELECT count(*), md5(coalesce(sum(pg_catalog.hashtextextended(x::text, 0)::numeric), 0)::text) FROM "
      "%s x",
      qname);
  PGresult *res = PQexec(c, sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return pg_fail(c, res, "computing a table checksum", err);
  s->rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
  snprintf(s->md5, sizeof s->md5, "%s", PQgetvalue(res, 0, 1));
  PQclear(res);
  return 0;
}

int tn_mig_pg_sums(PGconn *conn, const struct tn_mig_tables *tables, struct tn_mig_table_sum *sums,
                   struct tn_error *err) {
  int rc = exec_ok(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "starting a snapshot", err);
  for (size_t i = 0; i < tables->n && !rc; i++) {
    char qname[400];
    if (qualified(conn, tables->schema[i], tables->table[i], qname, sizeof qname))
      rc = tn_error_set(err, TN_EINVALID, "table name too long");
    else {
      sums[i] = tables->v[i];
      rc = sum_one(conn, qname, &sums[i], err);
    }
  }
  PQclear(PQexec(conn, rc ? "ROLLBACK" : "COMMIT"));
  return rc;
}

static int copy_table(PGconn *src, PGconn *dst, const char *qname, const char *dst_qname, long long *bytes,
                      struct tn_error *err) {
  char sql[512];
  snprintf(sql, sizeof sql, "COPY %s TO STDOUT (FORMAT binary)", qname);
  PGresult *res = PQexec(src, sql);
  if (PQresultStatus(res) != PGRES_COPY_OUT)
    return pg_fail(src, res, "COPY from the source", err);
  PQclear(res);
  snprintf(sql, sizeof sql, "COPY %s FROM STDIN (FORMAT binary)", dst_qname);
  res = PQexec(dst, sql);
  if (PQresultStatus(res) != PGRES_COPY_IN) {
    int rc = pg_fail(dst, res, "COPY into the target", err);
    /* drain the source's copy so its connection stays usable */
    char *buf = NULL;
    while (PQgetCopyData(src, &buf, 0) > 0)
      PQfreemem(buf);
    PQclear(PQgetResult(src));
    return rc;
  }
  PQclear(res);
  int rc = 0;
  for (;;) {
    char *buf = NULL;
    int n = PQgetCopyData(src, &buf, 0);
    if (n == -1)
      break;
    if (n < 0) {
      rc = pg_fail(src, NULL, "reading the source's COPY", err);
      break;
    }
    if (PQputCopyData(dst, buf, n) != 1) {
      PQfreemem(buf);
      rc = pg_fail(dst, NULL, "writing the target's COPY", err);
      break;
    }
    if (bytes)
      *bytes += n;
    PQfreemem(buf);
  }
  res = PQgetResult(src);
  if (!rc && PQresultStatus(res) != PGRES_COMMAND_OK)
    rc = pg_fail(src, res, "COPY from the source", err);
  else
    PQclear(res);
  while ((res = PQgetResult(src)))
    PQclear(res);
  if (PQputCopyEnd(dst, rc ? "source failed" : NULL) != 1 && !rc)
    rc = pg_fail(dst, NULL, "ending the target's COPY", err);
  res = PQgetResult(dst);
  if (!rc && PQresultStatus(res) != PGRES_COMMAND_OK)
    rc = pg_fail(dst, res, "COPY into the target", err);
  else
    PQclear(res);
  while ((res = PQgetResult(dst)))
    PQclear(res);
  return rc;
}

int tn_mig_pg_copy(PGconn *src, PGconn *dst, const struct tn_mig_tables *tables,
                   struct tn_mig_table_sum *sums, long long *bytes, struct tn_error *err) {
  if (bytes)
    *bytes = 0;
  int rc =
      exec_ok(src, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "starting the source snapshot", err);
  if (rc)
    return rc;
  if ((rc = exec_ok(dst, "BEGIN", "starting the target transaction", err))) {
    PQclear(PQexec(src, "ROLLBACK"));
    return rc;
  }
  if (tables->n) {
    struct tn_mig_sb t = {0};
    tn_mig_sb_add(&t, "TRUNCATE ");
    for (size_t i = 0; i < tables->n; i++) {
      char qname[400];
      if (qualified(dst, tn_mig_tables_dst_schema(tables, i), tables->table[i], qname, sizeof qname))
        t.oom = true;
      tn_mig_sb_add(&t, i ? ", " : "");
      tn_mig_sb_add(&t, qname);
    }
    rc =
        t.oom ? tn_error_set(err, -ENOMEM, "out of memory") : exec_ok(dst, t.s, "truncating the target", err);
    free(t.s);
  }
  for (size_t i = 0; i < tables->n && !rc; i++) {
    char qname[400], dst_qname[400];
    if (qualified(src, tables->schema[i], tables->table[i], qname, sizeof qname) ||
        qualified(dst, tn_mig_tables_dst_schema(tables, i), tables->table[i], dst_qname, sizeof dst_qname)) {
      rc = tn_error_set(err, TN_EINVALID, "table name too long");
      break;
    }
    if ((rc = copy_table(src, dst, qname, dst_qname, bytes, err))) {
      tn_error_prefix(err, "table %s", tables->v[i].name);
      break;
    }
    sums[i] = tables->v[i];
    if ((rc = sum_one(src, qname, &sums[i], err)))
      break;
    /* identity sequences (and serial columns' owned sequences: a rollback copies into the source's
     * own tables) past the copied maximum */
    const char *params[1] = {dst_qname};
    PGresult *res = PQexecParams(
        dst,
        "SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1::regclass AND "
        "NOT a.attisdropped AND (a.attidentity <> '' OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN "
        "pg_catalog.pg_class q ON q.oid = d.objid WHERE d.classid = 'pg_catalog.pg_class'::regclass AND "
        "d.refobjid = a.attrelid AND d.refobjsubid = a.attnum AND q.relkind = 'S' AND d.deptype = 'a'))",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      rc = pg_fail(dst, res, "reading identity columns", err);
      break;
    }
    for (int j = 0; j < PQntuples(res) && !rc; j++) {
      struct tn_mig_sb q = {0};
      char *lit = PQescapeLiteral(dst, dst_qname, strlen(dst_qname));
      char *col = PQescapeLiteral(dst, PQgetvalue(res, j, 0), strlen(PQgetvalue(res, j, 0)));
      tn_mig_sb_add(&q, "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence(");
      tn_mig_sb_add(&q, lit ? lit : "");
      tn_mig_sb_add(&q, ", ");
      tn_mig_sb_add(&q, col ? col : "");
      tn_mig_sb_add(&q, "), coalesce(max(");
      tn_mig_sb_ident(&q, dst, PQgetvalue(res, j, 0));
      tn_mig_sb_add(&q, ")::bigint, 0) + 1, false) FROM ");
      tn_mig_sb_add(&q, dst_qname);
      rc = q.oom || !lit || !col ? tn_error_set(err, -ENOMEM, "out of memory")
                                 : exec_ok(dst, q.s, "moving an identity sequence", err);
      PQfreemem(lit);
      PQfreemem(col);
      free(q.s);
    }
    PQclear(res);
  }
  PQclear(PQexec(src, "ROLLBACK"));
  if (rc) {
    PQclear(PQexec(dst, "ROLLBACK"));
    return rc;
  }
  return exec_ok(dst, "COMMIT", "committing the copy on the target", err);
}

/* ---- the write freeze ------------------------------------------------------------------------- */

int tn_mig_pg_role_login(PGconn *conn, const char *role, bool *can_login, struct tn_error *err) {
  const char *params[1] = {role};
  PGresult *res = PQexecParams(conn, "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1", 1,
                               NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return pg_fail(conn, res, "reading the role", err);
  if (PQntuples(res) == 0) {
    PQclear(res);
    return tn_error_set(err, TN_ENOTFOUND, "role %s does not exist", role);
  }
  *can_login = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
  PQclear(res);
  return 0;
}

int tn_mig_pg_freeze(PGconn *conn, const char *role, double timeout_s, int *ended, struct tn_error *err) {
  *ended = 0;
  struct tn_mig_sb q = {0};
  tn_mig_sb_add(&q, "ALTER ROLE ");
  tn_mig_sb_ident(&q, conn, role);
  tn_mig_sb_add(&q, " NOLOGIN");
  int rc =
      q.oom ? tn_error_set(err, -ENOMEM, "out of memory") : exec_ok(conn, q.s, "ALTER ROLE NOLOGIN", err);
  free(q.s);
  if (rc)
    return rc;
  const char *params[1] = {role};
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    PGresult *res = PQexecParams(conn,
                                 "SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000)), "
                                 "count(*) FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND pid <> "
                                 "pg_catalog.pg_backend_pid()",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
      return pg_fail(conn, res, "ending the role's sessions", err);
    int killed = atoi(PQgetvalue(res, 0, 0)), seen = atoi(PQgetvalue(res, 0, 1));
    PQclear(res);
    *ended += killed;
    if (seen == 0)
      return 0;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > timeout_s)
      return tn_error_set(err, TN_ETIMEOUT, "%d session(s) of role %s still open after %.0f s", seen, role,
                          timeout_s);
    usleep(100 * 1000);
  }
}

/* ---- isolation changes: the target's sums, one form dropped (ISOLATION, issue 16) -------------- */

int tn_mig_pg_sums_target(PGconn *conn, const struct tn_mig_tables *t, struct tn_mig_table_sum *sums,
                          struct tn_error *err) {
  if (!t->dst_schema)
    return tn_mig_pg_sums(conn, t, sums, err);
  struct tn_mig_tables view = *t; /* the same tables and names, in their target schemas */
  view.schema = t->dst_schema;
  view.dst_schema = NULL;
  return tn_mig_pg_sums(conn, &view, sums, err);
}

int tn_mig_pg_close_database(PGconn *conn, const char *database, const char *role, struct tn_error *err) {
  struct tn_mig_sb q = {0};
  tn_mig_sb_add(&q, "REVOKE CONNECT, TEMPORARY ON DATABASE ");
  tn_mig_sb_ident(&q, conn, database);
  tn_mig_sb_add(&q, " FROM ");
  tn_mig_sb_ident(&q, conn, role);
  int rc = q.oom ? tn_error_set(err, -ENOMEM, "out of memory")
                 : exec_ok(conn, q.s, "revoking the role's CONNECT on the source database", err);
  free(q.s);
  if (rc)
    return rc;
  const char *params[2] = {role, database};
  for (int tries = 0; tries < 50; tries++) {
    PGresult *res =
        PQexecParams(conn,
                     "SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000)), "
                     "count(*) FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND datname = $2 "
                     "AND pid <> pg_catalog.pg_backend_pid()",
                     2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
      return pg_fail(conn, res, "ending the role's sessions in the source database", err);
    int seen = atoi(PQgetvalue(res, 0, 1));
    PQclear(res);
    if (seen == 0)
      return 0;
    usleep(100 * 1000);
  }
  return tn_error_set(err, TN_ETIMEOUT, "sessions of role %s in database %s still open after 5 s", role,
                      database);
}

int tn_mig_pg_drop_schema_form(PGconn *conn, const char *database, const char *schema, const char *role,
                               struct tn_error *err) {
  struct tn_mig_sb q = {0};
  tn_mig_sb_add(&q, "DROP SCHEMA IF EXISTS ");
  tn_mig_sb_ident(&q, conn, schema);
  tn_mig_sb_add(&q, " CASCADE");
  int rc =
      q.oom ? tn_error_set(err, -ENOMEM, "out of memory") : exec_ok(conn, q.s, "dropping the schema", err);
  free(q.s);
  return rc ? rc : tn_mig_pg_close_database(conn, database, role, err);
}

int tn_mig_pg_drop_database_form(PGconn *conn, const char *database, struct tn_error *err) {
  struct tn_mig_sb q = {0};
  tn_mig_sb_add(&q, "DROP DATABASE IF EXISTS ");
  tn_mig_sb_ident(&q, conn, database);
  tn_mig_sb_add(&q, " WITH (FORCE)");
  int rc =
      q.oom ? tn_error_set(err, -ENOMEM, "out of memory") : exec_ok(conn, q.s, "dropping the database", err);
  free(q.s);
  return rc;
}
