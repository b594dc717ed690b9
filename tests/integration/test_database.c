/* test_database.c - the tenant database converge (converge/database.c) against the real
 * PostgreSQL of the local stack: each isolation mode end to end, tenants unable to reach each
 * other's data (the exact permission errors), zero statements for an unchanged tenant, rotation,
 * suspend/resume with live sessions, archive, teardown, hostile ids and names, a crash between
 * any two operations, PostgreSQL stopped and restarted mid-run, a non-superuser admin, and
 * concurrent workers sharing one connection cache. */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "converge/database.h"
#include "tn_test.h"

/* ---- the server of the local stack ---------------------------------------------------------- */

static char g_admin_uri[2048];
static char *g_ca_pem;

static char *read_file(const char *path) {
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "%s", path);
  char *buf = calloc(1, 1 << 16);
  size_t n = fread(buf, 1, (1 << 16) - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

/* TENANCY_PG_DSN without its query string (sslmode, sslrootcert): the module must bring the
 * server's sslmode and CA itself. */
static struct tn_db_server server(void) {
  if (!g_admin_uri[0]) {
    const char *dsn = tn_test_env("TENANCY_PG_DSN");
    size_t n = strcspn(dsn, "?");
    cr_assert_lt(n, sizeof g_admin_uri);
    memcpy(g_admin_uri, dsn, n);
    g_admin_uri[n] = '\0';
    g_ca_pem = read_file(tn_test_env("TENANCY_CA_FILE"));
  }
  return (struct tn_db_server){.name = "pg-local",
                               .host = tn_test_env("TENANCY_PG_HOST"),
                               .port = atoi(tn_test_env("TENANCY_PG_PORT")),
                               .sslmode = "verify-full",
                               .ca_pem = g_ca_pem,
                               .admin_uri = g_admin_uri};
}

/* The admin password of the DSN, to check that no message ever holds it. */
static void admin_password(char *out, size_t n) {
  const char *dsn = tn_test_env("TENANCY_PG_DSN");
  const char *colon = strchr(dsn + strlen("postgresql://"), ':');
  const char *at = strchr(dsn, '@');
  cr_assert(colon && at && at > colon);
  snprintf(out, n, "%.*s", (int)(at - colon - 1), colon + 1);
}

static void quiet(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

/* A superuser connection to database dbname (NULL: the DSN's). */
static PGconn *admin_conn(const char *dbname) {
  const char *keys[] = {"dbname", "dbname", NULL};
  const char *vals[] = {tn_test_env("TENANCY_PG_DSN"), dbname, NULL};
  if (!dbname)
    keys[1] = NULL;
  PGconn *pg = PQconnectdbParams(keys, vals, 1);
  cr_assert_eq(PQstatus(pg), CONNECTION_OK, "admin connection: %s", PQerrorMessage(pg));
  PQsetNoticeProcessor(pg, quiet, NULL);
  return pg;
}

/* The first value of a query with up to two parameters, malloc'd ("" for NULL); NULL: no row. */
static char *scalar(PGconn *pg, const char *sql, const char *p1, const char *p2) {
  const char *params[] = {p1, p2};
  int n = p2 ? 2 : p1 ? 1 : 0;
  PGresult *res = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
  cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(pg));
  char *v = PQntuples(res) ? strdup(PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0)) : NULL;
  PQclear(res);
  return v;
}

static long long admin_count(const char *sql, const char *p1, const char *p2) {
  PGconn *pg = admin_conn(NULL);
  char *v = scalar(pg, sql, p1, p2);
  long long n = v ? atoll(v) : -1;
  free(v);
  PQfinish(pg);
  return n;
}

static void admin_exec(const char *dbname, const char *sql) {
  PGconn *pg = admin_conn(dbname);
  PGresult *res = PQexec(pg, sql);
  cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
            PQerrorMessage(pg));
  PQclear(res);
  PQfinish(pg);
}

/* Connects as the tenant: with its URI (plus the CA file), or as role/password to dbname. */
static PGconn *login_uri(const char *uri) {
  const char *keys[] = {"dbname", "sslrootcert", "connect_timeout", NULL};
  const char *vals[] = {uri, tn_test_env("TENANCY_CA_FILE"), "5", NULL};
  PGconn *pg = PQconnectdbParams(keys, vals, 1);
  PQsetNoticeProcessor(pg, quiet, NULL);
  return pg;
}

static PGconn *login_as(const char *role, const char *password, const char *dbname) {
  const char *keys[] = {
      "host", "port", "user", "password", "dbname", "sslmode", "sslrootcert", "connect_timeout", NULL};
  const char *vals[] = {tn_test_env("TENANCY_PG_HOST"),
                        tn_test_env("TENANCY_PG_PORT"),
                        role,
                        password,
                        dbname,
                        "verify-full",
                        tn_test_env("TENANCY_CA_FILE"),
                        "5",
                        NULL};
  PGconn *pg = PQconnectdbParams(keys, vals, 0);
  PQsetNoticeProcessor(pg, quiet, NULL);
  return pg;
}

static void assert_login_ok(PGconn *pg, const char *what) {
  cr_assert_eq(PQstatus(pg), CONNECTION_OK, "%s: %s", what, PQerrorMessage(pg));
}

static void assert_login_fails(PGconn *pg, const char *want, const char *what) {
  cr_assert_neq(PQstatus(pg), CONNECTION_OK, "%s: the login succeeded", what);
  cr_assert(strstr(PQerrorMessage(pg), want), "%s: want \"%s\" in: %s", what, want, PQerrorMessage(pg));
  PQfinish(pg);
}

/* Runs sql; NULL when it succeeds, else the server's primary message (malloc'd). */
static char *exec_err(PGconn *pg, const char *sql) {
  PGresult *res = PQexec(pg, sql);
  ExecStatusType st = PQresultStatus(res);
  char *msg = NULL;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    msg = strdup(m ? m : PQerrorMessage(pg));
  }
  PQclear(res);
  return msg;
}

static void assert_ok(PGconn *pg, const char *sql) {
  char *e = exec_err(pg, sql);
  cr_assert_null(e, "%s: %s", sql, e);
}

static void assert_denied(PGconn *pg, const char *sql, const char *want) {
  char *e = exec_err(pg, sql);
  cr_assert_not_null(e, "%s succeeded; want \"%s\"", sql, want);
  cr_assert_str_eq(e, want, "%s", sql);
  free(e);
}

/* ---- converging ------------------------------------------------------------------------------ */

static struct tn_db_tenant tenant(const char *id, enum tn_isolation mode, enum tn_state state,
                                  long long conns, const char *password) {
  return (struct tn_db_tenant){.id = id,
                               .mode = mode,
                               .state = state,
                               .connections = conns,
                               .password = password,
                               .credentials_version = 0};
}

static void converge_ok(struct tn_db *db, const struct tn_db_server *srv, const struct tn_db_tenant *t,
                        struct tn_db_outcome *out) {
  struct tn_error err = {0};
  tn_db_outcome_cleanup(out);
  int rc = tn_db_converge(db, srv, t, out, &err);
  cr_assert_eq(rc, 0, "converge %s: %s (%s)", t->id, err.message, tn_strerror(rc));
}

/* Converges again with the password the first pass left: nothing may change. */
static void assert_zero_statements(struct tn_db *db, const struct tn_db_server *srv, struct tn_db_tenant t,
                                   const struct tn_db_outcome *prev) {
  struct tn_db_outcome again = {0};
  t.password = prev->password;
  converge_ok(db, srv, &t, &again);
  cr_assert_eq(again.statements, 0, "%s: an unchanged tenant cost %d statement(s)", t.id, again.statements);
  cr_assert_eq(again.operations, 0);
  cr_assert_not(again.password_generated);
  tn_db_outcome_cleanup(&again);
}

static void teardown_ok(struct tn_db *db, const struct tn_db_server *srv, const char *id) {
  struct tn_error err = {0};
  struct tn_db_outcome out = {0};
  int rc = tn_db_teardown(db, srv, id, &out, &err);
  cr_assert_eq(rc, 0, "teardown %s: %s", id, err.message);
  cr_assert_not(out.foreign);
  tn_db_outcome_cleanup(&out);
}

/* Nothing of role is left on the server: role, schema in the shared database, database, and no
 * dependency on it anywhere. */
static void assert_gone(const char *role, const char *shared_db) {
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_roles WHERE rolname = $1", role, NULL), 0, "role %s",
               role);
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_database WHERE datname = $1", role, NULL), 0,
               "database %s", role);
  if (admin_count("SELECT count(*) FROM pg_database WHERE datname = $1", shared_db, NULL) == 1) {
    PGconn *pg = admin_conn(shared_db);
    char *n = scalar(pg, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", role, NULL);
    cr_assert_str_eq(n, "0", "schema %s in %s", role, shared_db);
    free(n);
    PQfinish(pg);
  }
}

static void drop_database(const char *name) {
  char sql[256];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
  admin_exec(NULL, sql);
}

static void unique_id(char *dst, size_t n, const char *prefix) { tn_test_unique_name(dst, n, prefix); }

/* ---- modes end to end ---------------------------------------------------------------------------- */

/* shared_db: NULL for the default ("tenants"), else a database this test creates and drops. */
static void shared_mode(const char *shared_db) {
  struct tn_db_server srv = server();
  srv.shared_database = shared_db;
  const char *sdb = shared_db ? shared_db : "tenants";
  struct tn_db *db = tn_db_new();
  char a[64], b[64];
  unique_id(a, sizeof a, "sha");
  unique_id(b, sizeof b, "shb");
  struct tn_db_tenant ta = tenant(a, TN_ISOLATION_SHARED, TN_STATE_ACTIVE, 5, NULL);
  struct tn_db_tenant tb = tenant(b, TN_ISOLATION_SHARED, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_outcome oa = {0}, ob = {0};
  converge_ok(db, &srv, &ta, &oa);
  converge_ok(db, &srv, &tb, &ob);

  /* What the reconcile writes to status and Secrets. */
  cr_assert_str_eq(oa.server, "pg-local");
  cr_assert_str_eq(oa.names.database, sdb);
  cr_assert_str_eq(oa.names.schema, oa.names.role);
  cr_assert_eq(strncmp(oa.names.role, "tn_sha_", 7), 0, "%s", oa.names.role);
  cr_assert(oa.password_generated);
  cr_assert_eq(oa.credentials_version, 1);
  cr_assert_eq(strlen(oa.password), TN_DB_PASSWORD_LEN);
  cr_assert_str_eq(oa.sslmode, "verify-full");
  cr_assert_gt(oa.statements, 0);
  char tail[128];
  snprintf(tail, sizeof tail, "/%s?sslmode=verify-full", sdb);
  cr_assert_not_null(strstr(oa.uri, tail), "%s", oa.uri);

  assert_zero_statements(db, &srv, ta, &oa);
  assert_zero_statements(db, &srv, tb, &ob);

  PGconn *pa = login_uri(oa.uri);
  assert_login_ok(pa, "tenant A with its URI");
  /* "$user" is first on the default search_path: the schema named like the role. */
  assert_ok(pa, "CREATE TABLE notes (id int PRIMARY KEY, body text)");
  assert_ok(pa, "INSERT INTO notes VALUES (1, 'a secret')");
  char *schema = scalar(pa, "SELECT schemaname FROM pg_tables WHERE tablename = 'notes'", NULL, NULL);
  cr_assert_str_eq(schema, oa.names.schema);
  free(schema);

  PGconn *pb = login_uri(ob.uri);
  assert_login_ok(pb, "tenant B with its URI");
  char sql[512], want[256];
  snprintf(want, sizeof want, "permission denied for schema %s", oa.names.schema);
  snprintf(sql, sizeof sql, "SELECT * FROM %s.notes", oa.names.schema);
  assert_denied(pb, sql, want);
  snprintf(sql, sizeof sql, "INSERT INTO %s.notes VALUES (2, 'x')", oa.names.schema);
  assert_denied(pb, sql, want);
  snprintf(sql, sizeof sql, "CREATE TABLE %s.planted (x int)", oa.names.schema);
  assert_denied(pb, sql, want);
  assert_denied(pb, "CREATE TABLE public.planted (x int)", "permission denied for schema public");
  assert_denied(pa, "CREATE TABLE public.planted (x int)", "permission denied for schema public");
  snprintf(want, sizeof want, "permission denied for database %s", sdb);
  assert_denied(pb, "CREATE SCHEMA planted", want);
  /* B works in its own schema. */
  assert_ok(pb, "CREATE TABLE notes (id int)");
  /* What shared mode does not hide (docs/database-isolation.md): catalog names and code. */
  assert_ok(pa, "CREATE FUNCTION secret_fn() RETURNS text LANGUAGE sql AS $$ SELECT 'body-of-a' $$");
  char *body =
      scalar(pb, "SELECT prosrc FROM pg_proc WHERE proname = 'secret_fn' AND pronamespace = $1::regnamespace",
             oa.names.schema, NULL);
  cr_assert_not_null(body);
  cr_assert_not_null(strstr(body, "body-of-a"), "%s", body);
  free(body);
  char *rel =
      scalar(pb, "SELECT relname FROM pg_class WHERE relname = 'notes' AND relnamespace = $1::regnamespace",
             oa.names.schema, NULL);
  cr_assert_not_null(rel, "B sees the names of A's tables in the catalogs");
  free(rel);

  /* Catalogs: PUBLIC lost CONNECT and TEMPORARY on the shared database; the limit is the plan's. */
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_database WHERE datname = $1 AND "
                           "(has_database_privilege('public', oid, 'CONNECT') OR "
                           "has_database_privilege('public', oid, 'TEMPORARY'))",
                           sdb, NULL),
               0);
  /* ... and every privilege on its schema public. */
  PGconn *adm = admin_conn(sdb);
  char *pub = scalar(adm,
                     "SELECT has_schema_privilege('public', 'public', 'USAGE') OR "
                     "has_schema_privilege('public', 'public', 'CREATE')",
                     NULL, NULL);
  cr_assert_str_eq(pub, "f", "PUBLIC still holds USAGE or CREATE on schema public of %s", sdb);
  free(pub);
  PQfinish(adm);
  cr_assert_eq(admin_count("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", oa.names.role, NULL), 5);
  cr_assert_eq(admin_count("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", ob.names.role, NULL), -1);
  cr_assert_eq(
      admin_count("SELECT count(*) FROM pg_roles WHERE rolname = $1 AND rolcanlogin AND NOT rolsuper AND "
                  "NOT rolcreatedb AND NOT rolcreaterole AND shobj_description(oid, 'pg_authid') = $2",
                  oa.names.role, oa.names.marker),
      1);
  PQfinish(pa);
  PQfinish(pb);
  teardown_ok(db, &srv, a);
  teardown_ok(db, &srv, b);
  assert_gone(oa.names.role, sdb);
  assert_gone(ob.names.role, sdb);
  tn_db_outcome_cleanup(&oa);
  tn_db_outcome_cleanup(&ob);
  tn_db_free(db);
  if (shared_db)
    drop_database(shared_db);
}

Test(database, shared_mode_isolates_tenants_by_schema, .timeout = 120) { shared_mode(NULL); }

Test(database, shared_mode_on_a_server_without_its_shared_database, .timeout = 120) {
  char name[64];
  snprintf(name, sizeof name, "tenants_fresh_%d", (int)getpid());
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_database WHERE datname = $1", name, NULL), 0);
  shared_mode(name);
}

static void database_mode_end_to_end(enum tn_isolation mode) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  char a[64], b[64], s[64];
  unique_id(a, sizeof a, "dba");
  unique_id(b, sizeof b, "dbb");
  unique_id(s, sizeof s, "dbs");
  struct tn_db_tenant ta = tenant(a, mode, TN_STATE_ACTIVE, 10, NULL);
  struct tn_db_tenant tb = tenant(b, mode, TN_STATE_ACTIVE, 10, NULL);
  struct tn_db_tenant ts = tenant(s, TN_ISOLATION_SHARED, TN_STATE_ACTIVE, 10, NULL);
  struct tn_db_outcome oa = {0}, ob = {0}, os = {0};
  converge_ok(db, &srv, &ta, &oa);
  converge_ok(db, &srv, &tb, &ob);
  converge_ok(db, &srv, &ts, &os);
  cr_assert_str_eq(oa.names.database, oa.names.role);
  cr_assert_str_eq(oa.names.schema, "");
  assert_zero_statements(db, &srv, ta, &oa);
  assert_zero_statements(db, &srv, tb, &ob);

  PGconn *pa = login_uri(oa.uri);
  assert_login_ok(pa, "tenant A into its database");
  assert_ok(pa, "CREATE TABLE notes (id int)");
  assert_ok(pa, "INSERT INTO notes VALUES (1)");
  assert_ok(pa, "CREATE SCHEMA app");

  char want[256];
  snprintf(want, sizeof want, "permission denied for database \"%s\"", oa.names.database);
  assert_login_fails(login_as(ob.names.role, ob.password, oa.names.database), want,
                     "tenant B into A's database");
  assert_login_fails(login_as(os.names.role, os.password, oa.names.database), want,
                     "a shared tenant into A's database");
  assert_login_fails(login_as(oa.names.role, oa.password, "tenants"),
                     "permission denied for database \"tenants\"", "tenant A into the shared database");
  snprintf(want, sizeof want, "permission denied for database \"%s\"", ob.names.database);
  assert_login_fails(login_as(oa.names.role, oa.password, ob.names.database), want,
                     "tenant A into B's database");

  cr_assert_eq(admin_count("SELECT count(*) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE "
                           "d.datname = $1 AND r.rolname = $1",
                           oa.names.database, NULL),
               1, "the database is owned by the tenant role");
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_database WHERE datname = $1 AND "
                           "(has_database_privilege('public', oid, 'CONNECT') OR "
                           "has_database_privilege('public', oid, 'TEMPORARY'))",
                           oa.names.database, NULL),
               0);
  PQfinish(pa);
  teardown_ok(db, &srv, a);
  teardown_ok(db, &srv, b);
  teardown_ok(db, &srv, s);
  assert_gone(oa.names.role, "tenants");
  assert_gone(ob.names.role, "tenants");
  assert_gone(os.names.role, "tenants");
  tn_db_outcome_cleanup(&oa);
  tn_db_outcome_cleanup(&ob);
  tn_db_outcome_cleanup(&os);
  tn_db_free(db);
}

Test(database, dedicated_mode_isolates_tenants_by_database, .timeout = 120) {
  database_mode_end_to_end(TN_ISOLATION_DEDICATED);
}

Test(database, hybrid_mode_isolates_tenants_by_database, .timeout = 120) {
  database_mode_end_to_end(TN_ISOLATION_HYBRID);
}

/* ---- credentials ------------------------------------------------------------------------------- */

Test(database, rotation_old_password_rejected_new_accepted, .timeout = 120) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  char id[64], p1[64], p2[64], p3[64];
  unique_id(id, sizeof id, "rot");
  cr_assert_eq(tn_db_password_new(p1, sizeof p1), 0);
  cr_assert_eq(tn_db_password_new(p2, sizeof p2), 0);
  cr_assert_eq(tn_db_password_new(p3, sizeof p3), 0);
  cr_assert_str_neq(p1, p2);
  struct tn_db_tenant t = tenant(id, TN_ISOLATION_SHARED, TN_STATE_ACTIVE, -1, p1);
  t.credentials_version = 4;
  struct tn_db_outcome out = {0};
  converge_ok(db, &srv, &t, &out);
  cr_assert_not(out.password_generated);
  cr_assert_eq(out.credentials_version, 4, "the caller's version when it brings the password");
  cr_assert_str_eq(out.password, p1);
  const char *role = out.names.role;
  char rolebuf[64];
  snprintf(rolebuf, sizeof rolebuf, "%s", role);
  role = rolebuf;
  PGconn *old_session = login_as(role, p1, "tenants");
  assert_login_ok(old_session, "p1");
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_authid WHERE rolname = $1 AND rolpassword LIKE "
                           "'SCRAM-SHA-256$4096:%'",
                           role, NULL),
               1, "stored as a SCRAM-SHA-256 verifier");

  /* The caller stored p2 and converges: one statement, p1 stops working. */
  t.password = p2;
  t.credentials_version = 5;
  converge_ok(db, &srv, &t, &out);
  cr_assert_eq(out.statements, 1, "rotation is one ALTER ROLE");
  char want[128];
  snprintf(want, sizeof want, "password authentication failed for user \"%s\"", role);
  assert_login_fails(login_as(role, p1, "tenants"), want, "old password");
  PGconn *pg = login_as(role, p2, "tenants");
  assert_login_ok(pg, "new password");
  PQfinish(pg);
  PQfinish(old_session);
  assert_zero_statements(db, &srv, t, &out);

  /* The caller asks the module for a new one. */
  t.password = NULL;
  converge_ok(db, &srv, &t, &out);
  cr_assert(out.password_generated);
  cr_assert_eq(out.credentials_version, 6);
  cr_assert_str_neq(out.password, p2);
  assert_login_fails(login_as(role, p2, "tenants"), want, "password before the generated one");
  pg = login_uri(out.uri);
  assert_login_ok(pg, "generated password");
  PQfinish(pg);
  char current[64];
  snprintf(current, sizeof current, "%s", out.password);

  /* A crash after the caller stored p3 but before the role was altered: the next pass fixes it. */
  tn_db_test_stop_after(db, 0);
  t.password = p3;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_converge(db, &srv, &t, &out, &err), TN_ECANCELED, "%s", err.message);
  tn_db_outcome_cleanup(&out);
  assert_login_fails(login_as(role, p3, "tenants"), want, "p3 not yet set");
  pg = login_as(role, current, "tenants");
  assert_login_ok(pg, "the previous password still works");
  PQfinish(pg);
  tn_db_test_stop_after(db, -1);
  converge_ok(db, &srv, &t, &out);
  cr_assert_eq(out.statements, 1);
  pg = login_as(role, p3, "tenants");
  assert_login_ok(pg, "p3 after the next pass");
  PQfinish(pg);
  assert_login_fails(login_as(role, current, "tenants"), want, "the previous password after rotation");

  /* A password the module cannot verify exactly is refused, nothing changes. */
  t.password = "caf\xc3\xa9";
  cr_assert_eq(tn_db_converge(db, &srv, &t, &out, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "printable ASCII"), "%s", err.message);
  tn_db_outcome_cleanup(&out);
  teardown_ok(db, &srv, id);
  tn_db_free(db);
}

/* ---- lifecycle ----------------------------------------------------------------------------------- */

static void suspend_resume(enum tn_isolation mode) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  char id[64];
  unique_id(id, sizeof id, "sus");
  struct tn_db_tenant t = tenant(id, mode, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_outcome out = {0};
  converge_ok(db, &srv, &t, &out);
  char password[64], role[64], dbname[64];
  snprintf(password, sizeof password, "%s", out.password);
  snprintf(role, sizeof role, "%s", out.names.role);
  snprintf(dbname, sizeof dbname, "%s", out.names.database);
  t.password = password;

  PGconn *session = login_as(role, password, dbname);
  assert_login_ok(session, "open session before suspend");
  assert_ok(session, "CREATE TABLE kept (id int)");
  assert_ok(session, "INSERT INTO kept VALUES (42)");
  char pid[32];
  snprintf(pid, sizeof pid, "%d", PQbackendPID(session));
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", pid, NULL), 1);

  t.state = TN_STATE_SUSPENDED;
  converge_ok(db, &srv, &t, &out);
  cr_assert_eq(out.statements, 2, "NOLOGIN and the session ends");
  cr_assert_str_eq(out.password, password, "the password is kept while suspended");
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", pid, NULL), 0,
               "the open session was terminated");
  char *e = exec_err(session, "SELECT 1");
  cr_assert_not_null(e, "the terminated session still answers");
  free(e);
  cr_assert_eq(PQstatus(session), CONNECTION_BAD);
  PQfinish(session);
  char want[128];
  snprintf(want, sizeof want, "role \"%s\" is not permitted to log in", role);
  assert_login_fails(login_as(role, password, dbname), want, "login while suspended");
  assert_zero_statements(db, &srv, t, &out);

  t.state = TN_STATE_ACTIVE;
  converge_ok(db, &srv, &t, &out);
  cr_assert_eq(out.statements, 1, "resume is ALTER ROLE LOGIN");
  PGconn *pg = login_as(role, password, dbname);
  assert_login_ok(pg, "login after resume");
  char *v = scalar(pg, "SELECT id FROM kept", NULL, NULL);
  cr_assert_str_eq(v, "42", "data kept across suspend");
  free(v);
  PQfinish(pg);
  tn_db_outcome_cleanup(&out);
  teardown_ok(db, &srv, id);
  assert_gone(role, "tenants");
  tn_db_free(db);
}

Test(database, suspend_blocks_login_and_kills_sessions_shared, .timeout = 120) {
  suspend_resume(TN_ISOLATION_SHARED);
}
Test(database, suspend_blocks_login_and_kills_sessions_dedicated, .timeout = 120) {
  suspend_resume(TN_ISOLATION_DEDICATED);
}

static void archive(enum tn_isolation mode) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  char id[64];
  unique_id(id, sizeof id, "arc");
  struct tn_db_tenant t = tenant(id, mode, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_outcome out = {0};
  converge_ok(db, &srv, &t, &out);
  char password[64], role[64], dbname[64];
  snprintf(password, sizeof password, "%s", out.password);
  snprintf(role, sizeof role, "%s", out.names.role);
  snprintf(dbname, sizeof dbname, "%s", out.names.database);
  t.password = password;
  PGconn *session = login_as(role, password, dbname);
  assert_login_ok(session, "before archive");
  assert_ok(session, "CREATE TABLE kept (id int)");
  assert_ok(session, "INSERT INTO kept VALUES (7)");

  t.state = TN_STATE_ARCHIVED;
  converge_ok(db, &srv, &t, &out);
  cr_assert_null(out.password);
  cr_assert_null(out.uri);
  cr_assert_gt(out.statements, 0);
  char *e = exec_err(session, "SELECT 1");
  cr_assert_not_null(e, "the open session survived the archive");
  free(e);
  PQfinish(session);
  char want[128];
  snprintf(want, sizeof want, "password authentication failed for user \"%s\"", role);
  assert_login_fails(login_as(role, password, dbname), want, "login after archive (password removed)");
  cr_assert_eq(
      admin_count("SELECT count(*) FROM pg_authid WHERE rolname = $1 AND rolpassword IS NULL AND NOT "
                  "rolcanlogin",
                  role, NULL),
      1);
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_database WHERE datname = $2 AND "
                           "has_database_privilege($1, oid, 'CONNECT')",
                           role, dbname),
               0, "CONNECT revoked");
  /* The data is kept. */
  PGconn *adm = admin_conn(dbname);
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT id FROM %s%skept", mode == TN_ISOLATION_SHARED ? role : "",
           mode == TN_ISOLATION_SHARED ? "." : "");
  char *v = scalar(adm, sql, NULL, NULL);
  cr_assert_str_eq(v, "7");
  free(v);
  PQfinish(adm);
  assert_zero_statements(db, &srv, t, &out);
  tn_db_outcome_cleanup(&out);
  teardown_ok(db, &srv, id);
  assert_gone(role, "tenants");
  tn_db_free(db);
}

Test(database, archive_revokes_access_and_keeps_data_shared, .timeout = 120) { archive(TN_ISOLATION_SHARED); }
Test(database, archive_revokes_access_and_keeps_data_hybrid, .timeout = 120) { archive(TN_ISOLATION_HYBRID); }

Test(database, teardown_drops_everything_even_with_open_sessions, .timeout = 120) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  for (int m = 0; m < TN_ISOLATION_COUNT; m++) {
    char id[64];
    unique_id(id, sizeof id, "del");
    struct tn_db_tenant t = tenant(id, (enum tn_isolation)m, TN_STATE_ACTIVE, -1, NULL);
    struct tn_db_outcome out = {0};
    converge_ok(db, &srv, &t, &out);
    PGconn *session = login_uri(out.uri);
    assert_login_ok(session, "tenant session");
    assert_ok(session, "CREATE TABLE t (id serial PRIMARY KEY, v text)");
    assert_ok(session, "CREATE VIEW v AS SELECT * FROM t");
    assert_ok(session, "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'");
    assert_ok(session, "CREATE SEQUENCE s");
    char role[64];
    snprintf(role, sizeof role, "%s", out.names.role);
    struct tn_error err = {0};
    struct tn_db_outcome td = {0};
    cr_assert_eq(tn_db_teardown(db, &srv, id, &td, &err), 0, "%s", err.message);
    cr_assert_gt(td.statements, 0);
    cr_assert_not(td.foreign);
    tn_db_outcome_cleanup(&td);
    PQfinish(session);
    assert_gone(role, "tenants");
    cr_assert_eq(admin_count("SELECT count(*) FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND "
                             "refobjid NOT IN (SELECT oid FROM pg_authid)",
                             NULL, NULL),
                 0, "no dependency on a dropped role");
    /* Gone stays gone at no cost. */
    cr_assert_eq(tn_db_teardown(db, &srv, id, &td, &err), 0, "%s", err.message);
    cr_assert_eq(td.statements, 0);
    cr_assert_eq(td.operations, 0);
    tn_db_outcome_cleanup(&td);
    tn_db_outcome_cleanup(&out);
  }
  tn_db_free(db);
}

/* ---- hostile input --------------------------------------------------------------------------------- */

Test(database, hostile_tenant_id_is_refused_and_identifiers_are_quoted, .timeout = 120) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  long long roles = admin_count("SELECT count(*) FROM pg_roles", NULL, NULL);
  const char *hostile = "a\";drop role x;--";
  struct tn_db_tenant t = tenant(hostile, TN_ISOLATION_SHARED, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_outcome out = {0};
  struct tn_error err = {0};
  cr_assert_eq(tn_db_converge(db, &srv, &t, &out, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "is not a DNS label"), "%s", err.message);
  cr_assert_eq(tn_db_teardown(db, &srv, hostile, &out, &err), TN_EINVALID);
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_roles", NULL, NULL), roles, "nothing was created");
  struct tn_db_stats st;
  tn_db_get_stats(db, &st);
  cr_assert_eq(st.statements, 0);
  cr_assert_eq(st.connects, 0, "refused before connecting");

  /* Names that do reach SQL are quoted: a shared database named with quotes, a semicolon and a
   * comment, next to a canary role the name tries to drop. */
  char canary[64], shared[64];
  snprintf(canary, sizeof canary, "canary_%d", (int)getpid());
  snprintf(shared, sizeof shared, "x\"; DROP ROLE %s; --", canary);
  char sql[256];
  snprintf(sql, sizeof sql, "CREATE ROLE %s", canary);
  admin_exec(NULL, sql);
  srv.shared_database = shared;
  char id[64];
  unique_id(id, sizeof id, "quo");
  t = tenant(id, TN_ISOLATION_SHARED, TN_STATE_ACTIVE, -1, NULL);
  converge_ok(db, &srv, &t, &out);
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_roles WHERE rolname = $1", canary, NULL), 1,
               "canary alive");
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_database WHERE datname = $1", shared, NULL), 1);
  cr_assert_str_eq(out.names.database, shared);
  PGconn *pg = login_uri(out.uri);
  assert_login_ok(pg, "the URI carries the odd database name percent-encoded");
  char *cur = scalar(pg, "SELECT current_database()", NULL, NULL);
  cr_assert_str_eq(cur, shared);
  free(cur);
  PQfinish(pg);
  assert_zero_statements(db, &srv, t, &out);
  teardown_ok(db, &srv, id);
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_roles WHERE rolname = $1", canary, NULL), 1,
               "canary alive");
  tn_db_free(db); /* closes the cached connections to the odd database before it is dropped */
  PGconn *adm = admin_conn(NULL);
  char *q = PQescapeIdentifier(adm, shared, strlen(shared));
  snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", q);
  PQfreemem(q);
  PGresult *res = PQexec(adm, sql);
  cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(adm));
  PQclear(res);
  PQfinish(adm);
  snprintf(sql, sizeof sql, "DROP ROLE %s", canary);
  admin_exec(NULL, sql);
  tn_db_outcome_cleanup(&out);
}

Test(database, names_taken_by_others_are_never_adopted, .timeout = 120) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  char id[64], role[64];
  unique_id(id, sizeof id, "own");
  cr_assert_eq(tn_db_identifier(id, role, NULL), 0);
  char sql[256];
  snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN PASSWORD 'someone-elses'", role);
  admin_exec(NULL, sql);
  struct tn_db_tenant t = tenant(id, TN_ISOLATION_DEDICATED, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_outcome out = {0};
  struct tn_error err = {0};
  cr_assert_eq(tn_db_converge(db, &srv, &t, &out, &err), TN_EEXISTS);
  cr_assert(strstr(err.message, "is not managed by tenancy-operator"), "%s", err.message);
  cr_assert_eq(out.statements, 0);
  cr_assert_eq(tn_db_teardown(db, &srv, id, &out, &err), 0, "%s", err.message);
  cr_assert(out.foreign);
  cr_assert_eq(out.statements, 0);
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_roles WHERE rolname = $1 AND rolcanlogin", role, NULL), 1,
               "the other role is untouched");
  snprintf(sql, sizeof sql, "DROP ROLE %s", role);
  admin_exec(NULL, sql);
  tn_db_outcome_cleanup(&out);
  tn_db_free(db);
}

/* ---- quotas -------------------------------------------------------------------------------------- */

Test(database, connection_limit_follows_the_plan, .timeout = 120) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  char id[64];
  unique_id(id, sizeof id, "lim");
  struct tn_db_tenant t = tenant(id, TN_ISOLATION_HYBRID, TN_STATE_ACTIVE, 1, NULL);
  struct tn_db_outcome out = {0};
  converge_ok(db, &srv, &t, &out);
  char password[64];
  snprintf(password, sizeof password, "%s", out.password);
  t.password = password;
  PGconn *one = login_uri(out.uri);
  assert_login_ok(one, "first session");
  char want[128];
  snprintf(want, sizeof want, "too many connections for role \"%s\"", out.names.role);
  assert_login_fails(login_uri(out.uri), want, "second session with a limit of 1");
  t.connections = 2;
  converge_ok(db, &srv, &t, &out);
  cr_assert_eq(out.statements, 1);
  PGconn *two = login_uri(out.uri);
  assert_login_ok(two, "second session with a limit of 2");
  PQfinish(one);
  PQfinish(two);
  t.connections = -1;
  converge_ok(db, &srv, &t, &out);
  cr_assert_eq(admin_count("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", out.names.role, NULL), -1);
  tn_db_outcome_cleanup(&out);
  teardown_ok(db, &srv, id);
  tn_db_free(db);
}

/* ---- crashes and outages ---------------------------------------------------------------------------- */

Test(database, a_crash_between_any_two_operations_converges, .timeout = 600) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  for (int m = 0; m < TN_ISOLATION_COUNT; m++) {
    int positions = 0;
    for (int n = 0;; n++) {
      char id[64], pw[64], shared[64];
      unique_id(id, sizeof id, "crc");
      /* Shared mode starts from a server without its shared database: the longest plan. */
      snprintf(shared, sizeof shared, "crash_%d_%d", (int)getpid(), n);
      srv.shared_database = m == TN_ISOLATION_SHARED ? shared : NULL;
      cr_assert_eq(tn_db_password_new(pw, sizeof pw), 0);
      struct tn_db_tenant t = tenant(id, (enum tn_isolation)m, TN_STATE_ACTIVE, 3, pw);
      struct tn_db_outcome out = {0};
      struct tn_error err = {0};
      tn_db_test_stop_after(db, n);
      int rc = tn_db_converge(db, &srv, &t, &out, &err);
      tn_db_test_stop_after(db, -1);
      if (rc == 0) { /* the plan is shorter than n: every position was tried */
        tn_db_outcome_cleanup(&out);
        teardown_ok(db, &srv, id);
        drop_database(shared);
        break;
      }
      cr_assert_eq(rc, TN_ECANCELED, "%s after %d op(s): %s", tn_isolation_name((enum tn_isolation)m), n,
                   err.message);
      cr_assert_eq(out.operations, n);
      positions++;
      converge_ok(db, &srv, &t, &out);
      assert_zero_statements(db, &srv, t, &out);
      PGconn *pg = login_uri(out.uri);
      assert_login_ok(pg, "after the interrupted pass and the next one");
      PQfinish(pg);
      char role[64];
      snprintf(role, sizeof role, "%s", out.names.role);
      cr_assert_eq(admin_count("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", role, NULL), 3);

      /* The same for a teardown stopped after n operations. */
      tn_db_test_stop_after(db, n);
      rc = tn_db_teardown(db, &srv, id, NULL, &err);
      tn_db_test_stop_after(db, -1);
      cr_assert(rc == 0 || rc == TN_ECANCELED, "%s", err.message);
      teardown_ok(db, &srv, id);
      assert_gone(role, m == TN_ISOLATION_SHARED ? shared : "tenants");
      drop_database(shared);
      tn_db_outcome_cleanup(&out);
    }
    cr_assert_geq(positions, m == TN_ISOLATION_SHARED ? 9 : 6, "%s: the plan had only %d operations",
                  tn_isolation_name((enum tn_isolation)m), positions);
  }
  tn_db_free(db);
}

static void pg_ctl(const char *action) {
  const char *data = tn_test_env("TENANCY_PG_DATA");
  char logpath[1024];
  snprintf(logpath, sizeof logpath, "%s/../postgres.log", data);
  char *out = NULL;
  int rc;
  if (strcmp(action, "stop") == 0)
    rc = tn_test_sh(&out, "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D '%s' -m fast -w stop",
                    data);
  else
    rc = tn_test_sh(&out, "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D '%s' -l '%s' -w start",
                    data, logpath);
  cr_assert_eq(rc, 0, "pg_ctl %s: %s", action, out);
  free(out);
}

/* Whatever happens in the outage test, PostgreSQL is running again afterwards. */
static void ensure_pg_running(void) {
  const char *data = getenv("TENANCY_PG_DATA");
  if (!data)
    return;
  char *out = NULL;
  if (tn_test_sh(&out, "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D '%s' status", data) !=
      0) {
    free(out);
    out = NULL;
    tn_test_sh(
        &out,
        "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D '%s' -l '%s/../postgres.log' -w start",
        data, data);
  }
  free(out);
}

Test(database, postgres_stopped_mid_run_is_transient_then_converges_without_duplicates, .timeout = 300,
     .fini = ensure_pg_running) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  char a[64], b[64], c[64], prefix[32];
  snprintf(prefix, sizeof prefix, "tn_out_%d_", (int)getpid());
  unique_id(a, sizeof a, "out");
  unique_id(b, sizeof b, "out");
  unique_id(c, sizeof c, "out");
  struct tn_db_tenant ta = tenant(a, TN_ISOLATION_SHARED, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_tenant tb = tenant(b, TN_ISOLATION_DEDICATED, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_tenant tc = tenant(c, TN_ISOLATION_HYBRID, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_outcome oa = {0}, ob = {0}, oc = {0};
  converge_ok(db, &srv, &ta, &oa);
  ta.password = oa.password;
  /* c is interrupted half way (role and password done, no database yet) before the outage. */
  char pc[64];
  cr_assert_eq(tn_db_password_new(pc, sizeof pc), 0);
  tc.password = pc;
  struct tn_error err = {0};
  tn_db_test_stop_after(db, 2);
  cr_assert_eq(tn_db_converge(db, &srv, &tc, &oc, &err), TN_ECANCELED, "%s", err.message);
  tn_db_test_stop_after(db, -1);

  pg_ctl("stop");
  char secret[256];
  admin_password(secret, sizeof secret);
  struct tn_db_tenant *all[] = {&ta, &tb, &tc};
  struct tn_db_outcome *outs[] = {&oa, &ob, &oc};
  for (int i = 0; i < 3; i++) {
    struct tn_db_outcome o = {0};
    tn_error_clear(&err);
    int rc = tn_db_converge(db, &srv, all[i], &o, &err);
    cr_assert(tn_error_is_transient(rc), "%s: rc %d (%s): %s", all[i]->id, rc, tn_strerror(rc), err.message);
    cr_assert_eq(rc, TN_ETRANSPORT, "%s", err.message);
    cr_assert(strstr(err.message, "database server pg-local: cannot connect"), "%s", err.message);
    cr_assert_null(strstr(err.message, secret), "the admin password leaked into: %s", err.message);
    cr_assert_str_eq(o.names.role[0] ? "named" : "", "named", "names are known even when the server is down");
    tn_db_outcome_cleanup(&o);
  }
  cr_assert(tn_error_is_transient(tn_db_teardown(db, &srv, a, NULL, &err)), "%s", err.message);
  pg_ctl("start");

  struct tn_db_stats before, after;
  tn_db_get_stats(db, &before);
  /* a's cached connections died with the server: the module reconnects by itself. */
  struct tn_db_outcome o = {0};
  converge_ok(db, &srv, &ta, &o);
  cr_assert_eq(o.statements, 0, "a was converged before the outage");
  tn_db_get_stats(db, &after);
  cr_assert_gt(after.connects, before.connects, "a new connection replaced the dead cached one");
  tn_db_outcome_cleanup(&o);
  converge_ok(db, &srv, &tb, &ob);
  converge_ok(db, &srv, &tc, &oc);
  cr_assert_gt(oc.statements, 0, "c finishes what the interrupted pass started");
  tb.password = ob.password;
  assert_zero_statements(db, &srv, tb, &ob);
  assert_zero_statements(db, &srv, tc, &oc);
  for (int i = 0; i < 3; i++) {
    PGconn *pg = login_uri(outs[i]->uri ? outs[i]->uri : oa.uri);
    assert_login_ok(pg, all[i]->id);
    PQfinish(pg);
  }
  /* Exactly one role per tenant, one database per dedicated/hybrid tenant, one schema for a. */
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)", prefix, NULL), 3);
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)", prefix, NULL),
               2);
  PGconn *sh = admin_conn("tenants");
  char *n = scalar(sh, "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, $1)", prefix, NULL);
  cr_assert_str_eq(n, "1");
  free(n);
  PQfinish(sh);
  teardown_ok(db, &srv, a);
  teardown_ok(db, &srv, b);
  teardown_ok(db, &srv, c);
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)", prefix, NULL), 0);
  cr_assert_eq(admin_count("SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)", prefix, NULL),
               0);
  tn_db_outcome_cleanup(&oa);
  tn_db_outcome_cleanup(&ob);
  tn_db_outcome_cleanup(&oc);
  tn_db_free(db);
}

Test(database, unreachable_or_misconfigured_servers_fail_with_words, .timeout = 60) {
  struct tn_db_server srv = server();
  struct tn_db *db = tn_db_new();
  struct tn_db_tenant t = tenant("nowhere", TN_ISOLATION_SHARED, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_outcome out = {0};
  struct tn_error err = {0};
  char uri[256], secret[256];
  admin_password(secret, sizeof secret);
  /* Port 1 on loopback: nothing listens. */
  snprintf(uri, sizeof uri, "postgresql://tenancy_admin:%s@127.0.0.1:1/postgres", secret);
  srv.admin_uri = uri;
  int rc = tn_db_converge(db, &srv, &t, &out, &err);
  cr_assert_eq(rc, TN_ETRANSPORT, "%s", err.message);
  cr_assert(tn_error_is_transient(rc));
  cr_assert(strstr(err.message, "database server pg-local: cannot connect"), "%s", err.message);
  cr_assert_null(strstr(err.message, secret), "%s", err.message);
  tn_db_outcome_cleanup(&out);
  /* Not a connection string: the message must not quote it. */
  snprintf(uri, sizeof uri, "postgresql://tenancy_admin:%s%%zz@127.0.0.1/postgres", secret);
  rc = tn_db_converge(db, &srv, &t, &out, &err);
  cr_assert_eq(rc, TN_ECONFIG, "%s", err.message);
  cr_assert_null(strstr(err.message, secret), "%s", err.message);
  tn_db_outcome_cleanup(&out);
  /* The wrong CA: verify-full refuses the server. */
  srv = server();
  srv.ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  rc = tn_db_converge(db, &srv, &t, &out, &err);
  cr_assert_eq(rc, TN_ETRANSPORT, "%s", err.message);
  tn_db_outcome_cleanup(&out);
  tn_db_free(db);
}

/* ---- admins that are not superusers ---------------------------------------------------------------- */

Test(database, a_createrole_createdb_admin_is_enough, .timeout = 180) {
  struct tn_db_server srv = server();
  char admin[64], shared[64], sql[512], uri[512];
  snprintf(admin, sizeof admin, "h9_admin_%d", (int)getpid());
  snprintf(shared, sizeof shared, "tenants_ns_%d", (int)getpid());
  snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN CREATEROLE CREATEDB PASSWORD 'admin-pw-1'", admin);
  admin_exec(NULL, sql);
  snprintf(uri, sizeof uri, "postgresql://%s:admin-pw-1@%s:%s/postgres", admin,
           tn_test_env("TENANCY_PG_HOST"), tn_test_env("TENANCY_PG_PORT"));
  srv.admin_uri = uri;
  srv.shared_database = shared;
  struct tn_db *db = tn_db_new();
  char a[64], b[64];
  unique_id(a, sizeof a, "nsa");
  unique_id(b, sizeof b, "nsb");
  struct tn_db_tenant ta = tenant(a, TN_ISOLATION_SHARED, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_tenant tb = tenant(b, TN_ISOLATION_DEDICATED, TN_STATE_ACTIVE, -1, NULL);
  struct tn_db_outcome oa = {0}, ob = {0};
  converge_ok(db, &srv, &ta, &oa);
  converge_ok(db, &srv, &tb, &ob);
  /* pg_authid is unreadable: the password this process set is trusted, still zero statements. */
  assert_zero_statements(db, &srv, ta, &oa);
  assert_zero_statements(db, &srv, tb, &ob);
  PGconn *pa = login_uri(oa.uri);
  assert_login_ok(pa, "shared tenant of a non-superuser admin");
  assert_ok(pa, "CREATE TABLE t (id int)");
  PGconn *pb = login_uri(ob.uri);
  assert_login_ok(pb, "dedicated tenant of a non-superuser admin");
  /* A fresh process cannot know: it sets the password once, then trusts it. */
  struct tn_db *db2 = tn_db_new();
  struct tn_db_outcome o = {0};
  ta.password = oa.password;
  converge_ok(db2, &srv, &ta, &o);
  cr_assert_eq(o.statements, 1, "one ALTER ROLE PASSWORD after a restart");
  assert_zero_statements(db2, &srv, ta, &oa);
  tn_db_outcome_cleanup(&o);
  /* Suspend kills the session (the admin is a member of the tenant role). */
  tb.password = ob.password;
  tb.state = TN_STATE_SUSPENDED;
  converge_ok(db2, &srv, &tb, &o);
  char *e = exec_err(pb, "SELECT 1");
  cr_assert_not_null(e, "the session survived the suspend");
  free(e);
  PQfinish(pb);
  PQfinish(pa);
  tn_db_outcome_cleanup(&o);
  teardown_ok(db2, &srv, a);
  teardown_ok(db2, &srv, b);
  assert_gone(oa.names.role, shared);
  assert_gone(ob.names.role, shared);
  tn_db_free(db);
  tn_db_free(db2);
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", shared);
  admin_exec(NULL, sql);
  snprintf(sql, sizeof sql, "DROP ROLE %s", admin);
  admin_exec(NULL, sql);
  tn_db_outcome_cleanup(&oa);
  tn_db_outcome_cleanup(&ob);
}

/* ---- concurrency ---------------------------------------------------------------------------------- */

#define WORKERS 8

struct worker {
  struct tn_db *db;
  struct tn_db_server srv;
  char id[64];
  enum tn_isolation mode;
  int rc;
  struct tn_error err;
  struct tn_db_outcome out;
};

static void *work(void *arg) {
  struct worker *w = arg;
  struct tn_db_tenant t = tenant(w->id, w->mode, TN_STATE_ACTIVE, 4, NULL);
  w->rc = tn_db_converge(w->db, &w->srv, &t, &w->out, &w->err);
  return NULL;
}

Test(database, concurrent_workers_share_one_cache, .timeout = 300) {
  struct tn_db *db = tn_db_new();
  char shared[64];
  snprintf(shared, sizeof shared, "tenants_par_%d", (int)getpid());
  struct worker w[WORKERS];
  pthread_t th[WORKERS];
  memset(w, 0, sizeof w);
  for (int i = 0; i < WORKERS; i++) {
    w[i].db = db;
    w[i].srv = server();
    w[i].srv.shared_database = shared; /* new: every worker races to create it */
    w[i].mode = i % 4 == 3 ? TN_ISOLATION_DEDICATED : TN_ISOLATION_SHARED;
    unique_id(w[i].id, sizeof w[i].id, "par");
  }
  for (int i = 0; i < WORKERS; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
  for (int i = 0; i < WORKERS; i++)
    pthread_join(th[i], NULL);
  int failed = 0;
  for (int i = 0; i < WORKERS; i++)
    if (w[i].rc) {
      cr_log_warn("worker %d: %s", i, w[i].err.message);
      failed++;
    }
  /* A race lost on a shared row is a transient conflict: the retry converges it. */
  for (int i = 0; i < WORKERS; i++) {
    if (w[i].rc == 0)
      continue;
    cr_assert(tn_error_is_transient(w[i].rc), "worker %d: %s", i, w[i].err.message);
    tn_db_outcome_cleanup(&w[i].out);
    work(&w[i]);
    cr_assert_eq(w[i].rc, 0, "worker %d retry: %s", i, w[i].err.message);
  }
  cr_log_info("%d of %d concurrent first passes needed a retry", failed, WORKERS);
  for (int i = 0; i < WORKERS; i++) {
    struct tn_db_tenant t = tenant(w[i].id, w[i].mode, TN_STATE_ACTIVE, 4, NULL);
    assert_zero_statements(db, &w[i].srv, t, &w[i].out);
    PGconn *pg = login_uri(w[i].out.uri);
    assert_login_ok(pg, w[i].id);
    PQfinish(pg);
  }
  for (int i = 0; i < WORKERS; i++) {
    teardown_ok(db, &w[i].srv, w[i].id);
    tn_db_outcome_cleanup(&w[i].out);
  }
  tn_db_free(db);
  char sql[256];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", shared);
  admin_exec(NULL, sql);
}
