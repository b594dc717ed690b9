/* test_audit.c - the audit trail against the real PostgreSQL of the local stack: append and
 * verify (the database's hashes agree with chain.c), tenantctl verify/list/init/prune, tampering
 * detected and named, UPDATE/DELETE/TRUNCATE refused, a least-privilege writer role, concurrent
 * writers through one handle and through separate connections, PostgreSQL stopped and
 * restarted, retention. Each test works in its own schema so tests never see each other's rows. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "tn_pg_test.h"
#include "tn_test.h"

#define PG_CTL "/usr/lib/postgresql/15/bin/pg_ctl"

/* ---- helpers ------------------------------------------------------------------------------ */

static char schema[64];

static const char *dsn(void) { return tn_test_env("TENANCY_PG_DSN"); }

static void new_schema(void) {
  static int seq;
  snprintf(schema, sizeof schema, "tn_audit_t%ld_%d", (long)getpid(), ++seq);
}

/* A superuser connection of the test itself (not through the module). */
static PGconn *admin(void) { return tn_test_pg_connect(NULL); }

static long long sql_ll(PGconn *c, const char *q) {
  char *v = tn_test_pg_value(c, "%s", q);
  long long n = strtoll(v, NULL, 10);
  free(v);
  return n;
}

static struct tn_audit *open_trail(const char *the_dsn, bool no_create) {
  struct tn_audit *a = NULL;
  struct tn_error err = {0};
  struct tn_audit_options o = {.schema = schema, .no_create = no_create};
  cr_assert_eq(tn_audit_open(the_dsn, &o, &a, &err), 0, "%s", err.message);
  return a;
}

static long long append(struct tn_audit *a, const char *tenant, const char *action, const char *outcome,
                        const char *details) {
  char target[128];
  snprintf(target, sizeof target, "tenant/%s", tenant);
  struct tn_audit_event ev = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                              .action = action,
                              .target = target,
                              .request_id = "req-1",
                              .correlation_id = "8c5e8f1e-0f4a-8b2c-9d3e-1a2b3c4d5e6f",
                              .outcome = outcome,
                              .generation_before = 3,
                              .generation_after = 4,
                              .details = details};
  long long id = 0;
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_append(a, &ev, &id, &err), 0, "append: %s", err.message);
  cr_assert_gt(id, 0);
  return id;
}

static struct tn_audit_verify_result verify(struct tn_audit *a) {
  struct tn_audit_verify_result r;
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_verify(a, NULL, &r, &err), 0, "verify: %s", err.message);
  return r;
}

/* Runs tenantctl (args printf-formatted) with TENANCY_PG_DSN from the environment and our
 * schema; returns its exit code, *out its output. */
static int tenantctl(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tenantctl(char **out, const char *fmt, ...) {
  char *args = NULL;
  va_list ap;
  va_start(ap, fmt);
  cr_assert_geq(vasprintf(&args, fmt, ap), 0);
  va_end(ap);
  int rc = tn_test_sh(out, "'%s' %s", tn_test_env("TENANCY_TENANTCTL_BIN"), args);
  free(args);
  return rc;
}

static void drop_schema(void) {
  PGconn *c = admin();
  PQclear(tn_test_pg_exec(c, "DROP SCHEMA IF EXISTS %s CASCADE", schema));
  PQfinish(c);
}

/* tmpl with every @S@ replaced by the test's schema (malloc'd). */
static char *subst(const char *tmpl) { return tn_test_pg_subst_schema(tmpl, schema); }

/* Runs a statement template (@S@ = schema) as c; returns the result (PQclear it). */
static PGresult *sql_t(PGconn *c, const char *tmpl) {
  char *q = subst(tmpl);
  PGresult *r = PQexec(c, q);
  free(q);
  return r;
}

/* The superuser bypasses the append-only trigger the documented way. */
static void tamper(PGconn *c, const char *tmpl) {
  char *v = tn_test_pg_value(c, "SET session_replication_role = replica");
  free(v);
  char *stmt = subst(tmpl);
  PGresult *r = PQexec(c, stmt);
  cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", stmt, PQresultErrorMessage(r));
  cr_assert_str_eq(PQcmdTuples(r), "1", "%s touched %s rows", stmt, PQcmdTuples(r));
  PQclear(r);
  free(stmt);
  v = tn_test_pg_value(c, "SET session_replication_role = origin");
  free(v);
}

/* These tests prune rows seconds old: the superuser lowers the minimum retention (90 days by
 * default; the triggers only let it be raised) the way only a superuser can. */
static void no_min_retention(PGconn *c) {
  char *v = tn_test_pg_value(c, "SET session_replication_role = replica");
  free(v);
  v = tn_test_pg_value(c, "UPDATE %s.audit_settings SET min_retention = interval '0'", schema);
  free(v);
  v = tn_test_pg_value(c, "SET session_replication_role = origin");
  free(v);
}

TestSuite(audit, .timeout = 180);

/* ---- tests -------------------------------------------------------------------------------- */

Test(audit, append_then_verify_and_the_database_hashes_agree_with_chain_c) {
  new_schema();
  struct tn_audit *a = open_trail(dsn(), false); /* creates the table on first use */
  append(a, "acme", "create", TN_AUDIT_SUCCEEDED, NULL);
  append(a, "acme", "activate", TN_AUDIT_STARTED,
         "{\"from\": \"Draft\", \"to\": \"Active\",  \"note\": \"a|b\\n\"}");
  /* Every nullable column NULL, and text that needs care. */
  struct tn_audit_event ev = {.actor = "Zo\xc3\xab \"admin\"\n<zoe@acme.example>",
                              .action = "activate",
                              .target = "tenant/acme",
                              .outcome = TN_AUDIT_SUCCEEDED};
  long long id = 0;
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_append(a, &ev, &id, &err), 0, "%s", err.message);
  cr_assert_eq(id, 3);

  struct tn_audit_verify_result r = verify(a);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 3);
  cr_assert_eq(r.first_id, 1);
  cr_assert_eq(r.last_id, 3);
  cr_assert(tn_audit_hash_valid(r.last_hash));

  /* The SQL implementation of the encoding (used by audit_append) and chain.c agree on every
   * row, and the chain links are what the database stored. */
  PGconn *c = admin();
  long long bad = 0;
  char *v = tn_test_pg_value(
      c,
      "SELECT count(*) FROM %s.audit_events WHERE hash <> %s.audit_hash(id, at, actor, action, target, "
      "request_id, correlation_id, outcome, generation_before, generation_after, details, prev_hash)",
      schema, schema);
  bad = strtoll(v, NULL, 10);
  free(v);
  cr_assert_eq(bad, 0);
  v = tn_test_pg_value(c, "SELECT hash FROM %s.audit_events WHERE id = 3", schema);
  cr_assert_str_eq(v, r.last_hash);
  free(v);
  v = tn_test_pg_value(c, "SELECT prev_hash FROM %s.audit_events WHERE id = 1", schema);
  cr_assert_str_eq(v, TN_AUDIT_GENESIS_HASH);
  free(v);
  /* details is stored verbatim (json, not jsonb): what was hashed is what is read back. */
  v = tn_test_pg_value(c, "SELECT details FROM %s.audit_events WHERE id = 2", schema);
  cr_assert_str_eq(v, "{\"from\": \"Draft\", \"to\": \"Active\",  \"note\": \"a|b\\n\"}");
  free(v);
  PQfinish(c);

  char *out = NULL;
  int rc = tenantctl(&out, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 0, "tenantctl audit verify: %s", out);
  cr_assert(strstr(out, "3 rows verified"), "%s", out);
  free(out);
  rc = tenantctl(&out, "audit verify --schema %s --expect 3:%s", schema, r.last_hash);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  tn_audit_close(a);
  drop_schema();
}

Test(audit, a_tampered_row_is_named_by_tenantctl) {
  new_schema();
  struct tn_audit *a = open_trail(dsn(), false);
  for (int i = 0; i < 6; i++)
    append(a, "acme", i % 2 ? "suspend" : "resume", TN_AUDIT_SUCCEEDED, NULL);
  PGconn *c = admin();

  tamper(c, "UPDATE @S@.audit_events SET outcome = 'failed' WHERE id = 3");
  char *out = NULL;
  int rc = tenantctl(&out, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 1, "exit %d: %s", rc, out);
  cr_assert(strstr(out, "row 3: hash mismatch (stored "), "%s", out);
  free(out);
  struct tn_audit_verify_result r = verify(a);
  cr_assert_not(r.ok);
  cr_assert_eq(r.bad_id, 3);
  cr_assert_eq(r.rows, 2);

  /* Put it back: the chain verifies again. */
  tamper(c, "UPDATE @S@.audit_events SET outcome = 'succeeded' WHERE id = 3");
  r = verify(a);
  cr_assert(r.ok, "%s", r.problem);

  /* A row removed from the middle. */
  tamper(c, "DELETE FROM @S@.audit_events WHERE id = 4");
  rc = tenantctl(&out, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "row 5: prev_hash does not match row 3"), "%s", out);
  free(out);

  /* The tail cut off: the chain alone cannot tell, an anchor kept elsewhere can. */
  tn_audit_close(a);
  drop_schema();
  new_schema();
  a = open_trail(dsn(), false);
  for (int i = 0; i < 4; i++)
    append(a, "acme", "suspend", TN_AUDIT_SUCCEEDED, NULL);
  r = verify(a);
  char anchor[TN_AUDIT_HASH_LEN];
  snprintf(anchor, sizeof anchor, "%s", r.last_hash);
  tamper(c, "DELETE FROM @S@.audit_events WHERE id = 4");
  cr_assert(verify(a).ok);
  rc = tenantctl(&out, "audit verify --schema %s --expect 4:%s", schema, anchor);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "row 4: missing (the last row is 3)"), "%s", out);
  free(out);
  PQfinish(c);
  tn_audit_close(a);
  drop_schema();
}

Test(audit, update_delete_truncate_are_refused_by_the_trigger) {
  new_schema();
  struct tn_audit *a = open_trail(dsn(), false);
  append(a, "acme", "create", TN_AUDIT_SUCCEEDED, NULL);
  append(a, "acme", "activate", TN_AUDIT_STARTED, NULL);
  PGconn *c = admin(); /* even the superuser, in a normal session */
  const char *stmts[] = {"UPDATE @S@.audit_events SET outcome = 'failed'", "DELETE FROM @S@.audit_events",
                         "TRUNCATE @S@.audit_events"};
  const char *ops[] = {"UPDATE", "DELETE", "TRUNCATE"};
  for (int i = 0; i < 3; i++) {
    PGresult *r = sql_t(c, stmts[i]);
    cr_assert_eq(PQresultStatus(r), PGRES_FATAL_ERROR, "%s was accepted", ops[i]);
    char want[128];
    snprintf(want, sizeof want, "%s.audit_events is append-only: %s is refused", schema, ops[i]);
    cr_assert(strstr(PQresultErrorMessage(r), want), "%s", PQresultErrorMessage(r));
    PQclear(r);
  }
  /* A direct INSERT that does not chain to the last row is refused too (no fork). */
  PGresult *r = tn_test_pg_exec(
      c,
      "INSERT INTO %s.audit_events (at, actor, action, target, outcome, prev_hash, hash) "
      "VALUES (now(), 'x', 'y', 'tenant/acme', 'succeeded', repeat('0', 64), repeat('1', 64))",
      schema);
  cr_assert_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
  cr_assert(strstr(PQresultErrorMessage(r), "does not chain to the last row"), "%s", PQresultErrorMessage(r));
  PQclear(r);
  /* The reserved checkpoint action cannot be appended. */
  r = tn_test_pg_exec(
      c, "SELECT %s.audit_append('x', 'audit.prune', 'audit', NULL, NULL, 'succeeded', NULL, NULL, NULL)",
      schema);
  cr_assert_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
  PQclear(r);
  char target[] = "tenant/acme";
  struct tn_audit_event ev = {
      .actor = "x", .action = TN_AUDIT_ACTION_PRUNE, .target = target, .outcome = "succeeded"};
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_append(a, &ev, NULL, &err), TN_EINVALID);

  struct tn_audit_verify_result v = verify(a);
  cr_assert(v.ok, "%s", v.problem);
  cr_assert_eq(v.rows, 2);
  PQfinish(c);
  tn_audit_close(a);
  drop_schema();
}

/* A libpq keyword/value DSN of the test's server as another role. */
static char *dsn_as(const char *user, const char *password) {
  return tn_test_pg_dsn(user, password, NULL, NULL);
}

Test(audit, a_writer_role_may_append_and_prune_but_never_update_or_delete) {
  new_schema();
  char role[64];
  snprintf(role, sizeof role, "%s_writer", schema);
  PGconn *c = admin();
  tn_test_pg_role_create(c, role, "writer-pw-123");

  /* The owner (superuser here) creates the objects and grants the writer. */
  struct tn_audit *owner = open_trail(dsn(), true);
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_init(owner, role, &err), 0, "%s", err.message);
  cr_assert_eq(tn_audit_init(owner, role, &err), 0, "init twice: %s", err.message);

  char *wdsn = dsn_as(role, "writer-pw-123");
  struct tn_audit *w = open_trail(wdsn, true);
  for (int i = 0; i < 5; i++)
    append(w, "acme", "activate", TN_AUDIT_STARTED, NULL);
  struct tn_audit_verify_result r = verify(w);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 5);

  /* What the writer may not do, whatever the trigger says. */
  PGconn *wc = PQconnectdb(wdsn);
  cr_assert_eq(PQstatus(wc), CONNECTION_OK, "%s", PQerrorMessage(wc));
  const char *stmts[] = {
      "UPDATE @S@.audit_events SET outcome = 'failed'",
      "DELETE FROM @S@.audit_events",
      "TRUNCATE @S@.audit_events",
      "INSERT INTO @S@.audit_events (at, actor, action, target, outcome, prev_hash, hash) VALUES "
      "(now(), 'x', 'y', 'z', 'o', repeat('0', 64), repeat('1', 64))",
      "SELECT @S@.audit_insert('x', 'y', 'z', NULL, NULL, 'o', NULL, NULL, NULL)",
      "SET tenancy.audit_prune = 'on'; DELETE FROM @S@.audit_events",
      "SET session_replication_role = replica",
  };
  for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
    PGresult *res = sql_t(wc, stmts[i]);
    cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "writer could run: %s", stmts[i]);
    cr_assert(strstr(PQresultErrorMessage(res), "permission denied"), "%s: %s", stmts[i],
              PQresultErrorMessage(res));
    PQclear(res);
  }
  PQfinish(wc);

  /* Retention works for the writer through the SECURITY DEFINER function. */
  no_min_retention(c);
  long long pruned = -1;
  char *cutoff =
      tn_test_pg_value(c,
                       "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
                       "FROM %s.audit_events WHERE id = 3",
                       schema);
  cr_assert_eq(tn_audit_prune_before(w, cutoff, NULL, &pruned, &err), 0, "%s", err.message);
  cr_assert_eq(pruned, 2);
  r = verify(w);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.first_id, 3);
  free(cutoff);

  tn_audit_close(w);
  tn_audit_close(owner);
  free(wdsn);
  drop_schema();
  tn_test_pg_role_drop(c, role);
  PQfinish(c);
}

/* ---- concurrency -------------------------------------------------------------------------- */

#define THREADS 8
#define PER_THREAD 50

struct worker {
  struct tn_audit *a; /* shared (threads 0..3) or own (4..7) */
  int index;
  long long ids[PER_THREAD];
  int failed;
  char error[256];
};

static void *work(void *p) {
  struct worker *w = p;
  for (int i = 0; i < PER_THREAD; i++) {
    char details[64], target[32];
    snprintf(details, sizeof details, "{\"thread\":%d,\"seq\":%d}", w->index, i);
    snprintf(target, sizeof target, "tenant/t%d", w->index);
    struct tn_audit_event ev = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                                .action = "activate",
                                .target = target,
                                .outcome = TN_AUDIT_STARTED,
                                .generation_before = i + 1,
                                .generation_after = i + 2,
                                .details = details};
    struct tn_error err = {0};
    if (tn_audit_append(w->a, &ev, &w->ids[i], &err)) {
      w->failed++;
      snprintf(w->error, sizeof w->error, "%s", err.message);
    }
  }
  return NULL;
}

Test(audit, eight_writers_never_fork_the_chain) {
  new_schema();
  /* Half the threads share one handle (one connection, the mutex), the other half each have
   * their own connection, as separate replicas would: only the database lock serializes them.
   * The table does not exist yet: the first appends race to create it. */
  struct tn_audit *shared = open_trail(dsn(), false);
  struct worker ws[THREADS];
  pthread_t th[THREADS];
  memset(ws, 0, sizeof ws);
  double t0 = tn_test_now();
  for (int i = 0; i < THREADS; i++) {
    ws[i].index = i;
    ws[i].a = i < THREADS / 2 ? shared : open_trail(dsn(), false);
    cr_assert_eq(pthread_create(&th[i], NULL, work, &ws[i]), 0);
  }
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  double dt = tn_test_now() - t0;
  fprintf(stderr, "audit: %d appends from %d threads in %.3f s (%.0f appends/s)\n", THREADS * PER_THREAD,
          THREADS, dt, THREADS * PER_THREAD / dt);
  for (int i = 0; i < THREADS; i++) {
    cr_assert_eq(ws[i].failed, 0, "thread %d: %d appends failed: %s", i, ws[i].failed, ws[i].error);
    /* Each thread's rows are in its own order. */
    for (int k = 1; k < PER_THREAD; k++)
      cr_assert_gt(ws[i].ids[k], ws[i].ids[k - 1]);
  }
  PGconn *c = admin();
  char q[256];
  snprintf(q, sizeof q, "SELECT count(*) FROM %s.audit_events", schema);
  cr_assert_eq(sql_ll(c, q), THREADS * PER_THREAD);
  snprintf(q, sizeof q, "SELECT min(id) FROM %s.audit_events", schema);
  cr_assert_eq(sql_ll(c, q), 1);
  snprintf(q, sizeof q, "SELECT max(id) FROM %s.audit_events", schema);
  cr_assert_eq(sql_ll(c, q), THREADS * PER_THREAD, "ids have gaps");
  /* Time follows ids. */
  snprintf(q, sizeof q,
           "SELECT count(*) FROM (SELECT at < lag(at) OVER (ORDER BY id) AS back FROM %s.audit_events) t "
           "WHERE back",
           schema);
  cr_assert_eq(sql_ll(c, q), 0);
  PQfinish(c);

  struct tn_audit_verify_result r = verify(shared);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, THREADS * PER_THREAD);
  cr_assert_eq(r.last_id, THREADS * PER_THREAD);
  char *out = NULL;
  cr_assert_eq(tenantctl(&out, "audit verify --schema %s", schema), 0, "%s", out);
  cr_assert(strstr(out, "400 rows verified"), "%s", out);
  free(out);
  for (int i = THREADS / 2; i < THREADS; i++)
    tn_audit_close(ws[i].a);
  tn_audit_close(shared);
  drop_schema();
}

/* ---- outage ------------------------------------------------------------------------------- */

static int pg_ctl(const char *what) {
  char *out = NULL;
  int rc;
  if (!strcmp(what, "stop"))
    rc = tn_test_sh(&out, "runuser -u postgres -- " PG_CTL " -D \"$TENANCY_PG_DATA\" -m fast stop");
  else if (!strcmp(what, "start"))
    rc = tn_test_sh(&out, "runuser -u postgres -- " PG_CTL
                          " -D \"$TENANCY_PG_DATA\" -l \"$TENANCY_PG_DATA/../postgres.log\" start -w");
  else
    rc = tn_test_sh(&out, "runuser -u postgres -- " PG_CTL " -D \"$TENANCY_PG_DATA\" status");
  if (rc != 0 && strcmp(what, "status"))
    fprintf(stderr, "pg_ctl %s: %s\n", what, out ? out : "");
  free(out);
  return rc;
}

/* Whatever happened in the test, PostgreSQL runs again afterwards. */
static void pg_ensure_running(void) {
  if (pg_ctl("status") != 0)
    pg_ctl("start");
}

Test(audit, postgres_down_append_fails_clearly_then_recovers, .fini = pg_ensure_running) {
  new_schema();
  tn_test_env("TENANCY_PG_DATA");
  char password[256] = "";
  PQconninfoOption *opts = PQconninfoParse(dsn(), NULL);
  for (PQconninfoOption *o = opts; o && o->keyword; o++)
    if (!strcmp(o->keyword, "password") && o->val)
      snprintf(password, sizeof password, "%s", o->val);
  PQconninfoFree(opts);
  struct tn_audit *a = open_trail(dsn(), false);
  append(a, "acme", "activate", TN_AUDIT_STARTED, NULL);
  append(a, "acme", "activate", TN_AUDIT_SUCCEEDED, NULL);

  cr_assert_eq(pg_ctl("stop"), 0, "could not stop PostgreSQL");
  char target[] = "tenant/acme";
  struct tn_audit_event ev = {
      .actor = TN_AUDIT_OPERATOR_ACTOR, .action = "suspend", .target = target, .outcome = TN_AUDIT_STARTED};
  /* The first append finds its connection closed by the shutdown, the second cannot connect. */
  for (int i = 0; i < 2; i++) {
    struct tn_error err = {0};
    long long id = 0;
    int rc = tn_audit_append(a, &ev, &id, &err);
    cr_assert_eq(rc, TN_EUNAVAILABLE, "append %d while down: %d %s", i, rc, err.message);
    cr_assert(tn_error_is_transient(rc));
    cr_assert(strstr(err.message, "PostgreSQL"), "%s", err.message);
    /* The DSN carries a password: it never reaches a message. */
    cr_assert(password[0]);
    cr_assert_null(strstr(err.message, password), "the password leaked: %s", err.message);
  }
  struct tn_audit_verify_result r;
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_verify(a, NULL, &r, &err), TN_EUNAVAILABLE);
  char *out = NULL;
  int rc = tenantctl(&out, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 5, "exit %d: %s", rc, out);
  cr_assert(strstr(out, "cannot connect to PostgreSQL"), "%s", out);
  free(out);

  cr_assert_eq(pg_ctl("start"), 0, "could not start PostgreSQL");
  /* The same handle reconnects. */
  long long id = append(a, "acme", "suspend", TN_AUDIT_STARTED, NULL);
  cr_assert_eq(id, 3);
  r = verify(a);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 3);
  tn_audit_close(a);
  drop_schema();
}

/* ---- list --------------------------------------------------------------------------------- */

Test(audit, list_shows_only_that_tenants_rows_newest_last) {
  new_schema();
  struct tn_audit *a = open_trail(dsn(), false);
  long long acme[4];
  int n = 0;
  for (int i = 0; i < 6; i++) {
    if (i % 3 == 1)
      append(a, "acme-other", "activate", TN_AUDIT_STARTED, NULL);
    else
      acme[n++] = append(a, "acme", i < 3 ? "activate" : "suspend",
                         i % 2 ? TN_AUDIT_SUCCEEDED : TN_AUDIT_STARTED, "{\"k\":\"v\"}");
  }
  cr_assert_eq(n, 4);
  json_t *rows = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_list(a, "acme", 0, &rows, &err), 0, "%s", err.message);
  cr_assert_eq(json_array_size(rows), 4);
  for (int i = 0; i < 4; i++) {
    json_t *o = json_array_get(rows, (size_t)i);
    cr_assert_eq(json_integer_value(json_object_get(o, "id")), acme[i]);
    cr_assert_str_eq(json_string_value(json_object_get(o, "target")), "tenant/acme");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "details"), "k")), "v");
    cr_assert_eq(json_integer_value(json_object_get(o, "generation_after")), 4);
  }
  json_decref(rows);
  /* The newest two, oldest first. */
  cr_assert_eq(tn_audit_list(a, "acme", 2, &rows, &err), 0, "%s", err.message);
  cr_assert_eq(json_array_size(rows), 2);
  cr_assert_eq(json_integer_value(json_object_get(json_array_get(rows, 0), "id")), acme[2]);
  cr_assert_eq(json_integer_value(json_object_get(json_array_get(rows, 1), "id")), acme[3]);
  json_decref(rows);

  char *out = NULL;
  int rc = tenantctl(&out, "audit list --schema %s --tenant acme", schema);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "ID") && strstr(out, "ACTION") && strstr(out, "OUTCOME"), "%s", out);
  cr_assert(strstr(out, "suspend"), "%s", out);
  int lines = 0;
  for (char *p = out; *p; p++)
    lines += *p == '\n';
  cr_assert_eq(lines, 5, "a header and 4 rows: %s", out);
  free(out);

  rc = tenantctl(&out, "audit list --schema %s --tenant acme -o json", schema);
  cr_assert_eq(rc, 0, "%s", out);
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  cr_assert_not_null(j, "%s: %s", je.text, out);
  cr_assert_eq(json_array_size(j), 4);
  size_t i;
  json_t *o;
  long long prev = 0;
  json_array_foreach(j, i, o) {
    cr_assert_str_eq(json_string_value(json_object_get(o, "target")), "tenant/acme");
    cr_assert_gt(json_integer_value(json_object_get(o, "id")), prev);
    prev = json_integer_value(json_object_get(o, "id"));
  }
  json_decref(j);
  free(out);

  rc = tenantctl(&out, "audit list --schema %s --tenant nobody", schema);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "no audit rows for tenant nobody"), "%s", out);
  free(out);
  tn_audit_close(a);
  drop_schema();
}

/* ---- retention ---------------------------------------------------------------------------- */

Test(audit, retention_prune_keeps_the_chain_verifiable) {
  new_schema();
  struct tn_audit *a = open_trail(dsn(), false);
  for (int i = 0; i < 10; i++)
    append(a, "acme", "activate", TN_AUDIT_SUCCEEDED, NULL);
  struct tn_error err = {0};
  long long pruned = -1;
  PGconn *c = admin();
  no_min_retention(c);

  /* Nothing is a day old: nothing is removed and no checkpoint written. */
  cr_assert_eq(tn_audit_prune(a, 1, NULL, &pruned, &err), 0, "%s", err.message);
  cr_assert_eq(pruned, 0);
  char *out = NULL;
  cr_assert_eq(tenantctl(&out, "audit prune --schema %s --older-than 2555d", schema), 0, "%s", out);
  cr_assert(strstr(out, "nothing to prune"), "%s", out);
  free(out);
  cr_assert_eq(verify(a).rows, 10);

  /* Everything before row 6. */
  char *cutoff =
      tn_test_pg_value(c,
                       "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
                       "FROM %s.audit_events WHERE id = 6",
                       schema);
  cr_assert_eq(tn_audit_prune_before(a, cutoff, "retention-job", &pruned, &err), 0, "%s", err.message);
  free(cutoff);
  cr_assert_eq(pruned, 5);
  struct tn_audit_verify_result r = verify(a);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.first_id, 6);
  cr_assert_eq(r.last_id, 11);
  cr_assert_eq(r.checkpoint_id, 11);
  cr_assert_eq(r.pruned_through_id, 5);
  char *v = tn_test_pg_value(
      c,
      "SELECT actor || ' ' || action || ' ' || (details->>'prunedRows') FROM %s.audit_events "
      "WHERE id = 11",
      schema);
  cr_assert_str_eq(v, "retention-job audit.prune 5");
  free(v);
  cr_assert_eq(tenantctl(&out, "audit verify --schema %s", schema), 0, "%s", out);
  cr_assert(strstr(out, "6 rows verified (ids 6..11)"), "%s", out);
  cr_assert(strstr(out, "rows up to 5 were removed by retention (checkpoint in row 11)"), "%s", out);
  free(out);

  /* More rows, then a second prune of everything but the newest row: the newest checkpoint anchors. */
  for (int i = 0; i < 3; i++)
    append(a, "acme", "suspend", TN_AUDIT_SUCCEEDED, NULL);
  cr_assert_eq(tenantctl(&out, "audit prune --schema %s --before 2999-01-01T00:00:00Z", schema), 0, "%s",
               out);
  cr_assert(strstr(out, "pruned 8 rows"), "%s", out);
  free(out);
  r = verify(a);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.first_id, 14);
  cr_assert_eq(r.rows, 2);
  cr_assert_eq(r.pruned_through_id, 13);
  append(a, "acme", "resume", TN_AUDIT_SUCCEEDED, NULL);
  cr_assert(verify(a).ok);

  /* Removing the first remaining row outside retention is detected against the checkpoint. */
  tamper(c, "DELETE FROM @S@.audit_events WHERE id = 14");
  r = verify(a);
  cr_assert_not(r.ok);
  cr_assert_eq(r.bad_id, 15);
  cr_assert(strstr(r.problem,
                   "row 15: prev_hash does not match the prune checkpoint in row 15 (rows up to 13 "
                   "were pruned)"),
            "%s", r.problem);
  PQfinish(c);
  tn_audit_close(a);
  drop_schema();
}

/* ---- errors ------------------------------------------------------------------------------- */

Test(audit, a_missing_table_and_bad_input_are_explained) {
  new_schema();
  char *out = NULL;
  int rc = tenantctl(&out, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 5, "%s", out);
  cr_assert(strstr(out, "does not exist") && strstr(out, "tenantctl audit init"), "%s", out);
  free(out);
  rc = tenantctl(&out, "audit list --schema %s --tenant acme", schema);
  cr_assert_eq(rc, 5, "%s", out);
  free(out);

  struct tn_audit *a = open_trail(dsn(), true);
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_ping(a, &err), TN_ENOTFOUND, "%s", err.message);
  tn_audit_close(a);

  rc = tenantctl(&out, "audit init --schema %s", schema);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tenantctl(&out, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "0 rows verified"), "%s", out);
  free(out);

  /* Malformed DSNs are refused without echoing them. */
  struct tn_audit *b = NULL;
  cr_assert_eq(tn_audit_open("postgresql://u:s3cret%zz@h/db", NULL, &b, &err), TN_ECONFIG);
  cr_assert_null(strstr(err.message, "s3cret"), "%s", err.message);
  cr_assert_eq(tn_audit_open("", NULL, &b, &err), TN_ECONFIG);
  struct tn_audit_options o = {.schema = "Robert'); DROP TABLE x;--"};
  cr_assert_eq(tn_audit_open(dsn(), &o, &b, &err), TN_ECONFIG);
  cr_assert_null(b);

  rc = tenantctl(&out, "audit list --schema %s", schema);
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "--tenant"), "%s", out);
  free(out);
  rc = tn_test_sh(&out, "env -u TENANCY_PG_DSN '%s' audit verify", tn_test_env("TENANCY_TENANTCTL_BIN"));
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "TENANCY_PG_DSN"), "%s", out);
  free(out);
  rc = tenantctl(&out, "audit verify --help");
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "Usage: tenantctl audit verify"), "%s", out);
  free(out);
  drop_schema();
}
