/* test_migration_logical.c - a TenantMigration whose Copy is logical replication (issue 16), with
 * two real PostgreSQL servers of the stack: region A on the first ($TENANCY_PG_*), region B on the
 * second ($TENANCY_PG2_*). The operator runs with TENANCY_MIGRATION_LOGICAL_MIN_BYTES=0, so every
 * tenant, however small, takes the logical path (status.copyMethod logical).
 *  - a shared tenant under a steady write load (inserts, and updates of a table without a primary
 *    key while it is on the source) moves from A to B: every committed row is on the target, the
 *    rows up to the freeze and the updated table have equal checksums on both sides, writes during
 *    the freeze are refused and then accepted on the target, no statement failed (REPLICA IDENTITY
 *    FULL), the cutover caught up by replication (no snapshot fallback); then no publication, slot
 *    or subscription is left, during the rollback period nor after CleanUp;
 *  - while the subscription runs (a closed window holds the cutover), rows written on the source
 *    reach the target, a delete of the TenantMigration is refused (it would leave the slot), and an
 *    abort drops the subscription, the publication and the slot;
 *  - a SIGKILL of the operator right after the work of the Copy step (the subscription made and
 *    ready, not recorded) resumes and ends Succeeded, with the sequences moved past the source's;
 *  - the write freeze of a 200,000-row tenant measured both ways (snapshot, then logical). */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;
static char ra[64], rb[64], ca_copy[128];

#define OK(...)                                                                                              \
  do {                                                                                                       \
    char *o_ = NULL;                                                                                         \
    int rc_ = tn_test_sh(&o_, __VA_ARGS__);                                                                  \
    if (rc_)                                                                                                 \
      tn_test_operator_dump_log(&op);                                                                        \
    cr_assert_eq(rc_, 0, "%s", o_);                                                                          \
    free(o_);                                                                                                \
  } while (0)

static void region(const char *name, const char *server, const char *dsn_var, const char *port_var) {
  /* the subscription connects from the target server with the source's admin URI: its sslrootcert
   * must be a file that server's postgres user can read */
  OK("dsn=\"$%s\" && kubectl -n tenancy-system create secret generic pg-admin-%s "
     "--from-literal=uri=\"${dsn%%%%sslrootcert=*}sslrootcert=%s\" "
     "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
     "kubectl -n tenancy-system create secret generic pg-ca-%s --from-file=ca.crt=\"$TENANCY_CA_FILE\" "
     "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
     "printf '%%s' "
     "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
     "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\",\"dedicated\"],\"databaseServers\":[{"
     "\"name\":\"%s\",\"host\":\"127.0.0.1\",\"port\":'\"$%s\"',\"sslMode\":\"verify-full\","
     "\"caSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-ca-%s\"},"
     "\"serves\":[\"shared\",\"dedicated\"],"
     "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-admin-%s\"}}]}}' | kubectl apply -f "
     "-",
     dsn_var, name, ca_copy, name, name, server, port_var, name, name);
}

/* min_bytes: TENANCY_MIGRATION_LOGICAL_MIN_BYTES of the operator ("0": always logical). */
static void operator_start(const char *crash_after, const char *min_bytes) {
  if (crash_after)
    setenv("TENANCY_TEST_MIGRATION_CRASH_AFTER", crash_after, 1);
  setenv("TENANCY_MIGRATION_LOGICAL_MIN_BYTES", min_bytes, 1);
  char addr[64];
  snprintf(addr, sizeof addr, "--webhook-bind-address=127.0.0.1:%d", tn_test_free_port());
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", addr, NULL});
  unsetenv("TENANCY_TEST_MIGRATION_CRASH_AFTER");
  unsetenv("TENANCY_MIGRATION_LOGICAL_MIN_BYTES");
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void start(void) {
  tn_test_install_api();
  tn_test_env("TENANCY_PG2_DSN");
  tn_test_env("TENANCY_PG_DSN");
  snprintf(ca_copy, sizeof ca_copy, "/tmp/tnmig-ca-%d.crt", (int)getpid());
  OK("cp \"$TENANCY_CA_FILE\" %s && chmod 0644 %s && kubectl create namespace tenancy-system "
     "--dry-run=client -o "
     "yaml | kubectl apply -f - >/dev/null",
     ca_copy, ca_copy);
  tn_test_unique_name(ra, sizeof ra, "mlr-a");
  tn_test_unique_name(rb, sizeof rb, "mlr-b");
  region(ra, "pg-a", "TENANCY_PG_DSN", "TENANCY_PG_PORT");
  region(rb, "pg-b", "TENANCY_PG2_DSN", "TENANCY_PG2_PORT");
  operator_start(NULL, "0");
}

static void stop(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  /* failurePolicy Fail: without the operator the registration would refuse the other suites' writes */
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
  tn_test_sh(NULL,
             "kubectl delete tenantmigrations -l test-suite=migration-logical --wait=false; "
             "kubectl delete region %s %s --wait=false; rm -f %s",
             ra, rb, ca_copy);
}

TestSuite(migration_logical, .init = start, .fini = stop, .timeout = 400);

static void apply_tenant(const char *t, const char *isolation) {
  OK("printf '%%s' "
     "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
     "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":\"%s\",\"environments\":[\"prod\"],"
     "\"residency\":{\"allowedRegions\":[\"%s\",\"%s\"],\"preferredRegion\":\"%s\"}}}' | kubectl apply -f -",
     t, isolation, ra, rb, ra);
}

static void migration(const char *name, const char *t, const char *extra) {
  OK("printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenantMigration\",\"metadata\":"
     "{\"name\":\"%s\",\"labels\":{\"test-suite\":\"migration-logical\"}},\"spec\":{\"tenant\":\"%s\","
     "\"target\":{\"region\":\"%s\"}%s}}' | kubectl apply -f -",
     name, t, rb, extra);
}

static char *jp(const char *kind, const char *name, const char *path) {
  return tn_test_output("kubectl get %s %s -o jsonpath='%s'", kind, name, path);
}

static void wait_jsonpath(const char *kind, const char *name, const char *path, const char *want,
                          double timeout) {
  char *out = NULL;
  int rc = tn_test_sh_until(timeout, &out, "test \"$(kubectl get %s %s -o jsonpath='%s')\" = '%s'", kind,
                            name, path, want);
  free(out);
  if (rc) {
    char *got = tn_test_output("kubectl get %s %s -o json | head -c 6000", kind, name);
    tn_test_operator_dump_log(&op);
    cr_assert_fail("%s %s: %s never became %s; object: %s", kind, name, path, want, got);
  }
}

static void wait_condition(const char *t, const char *type, const char *status, double timeout) {
  char path[128];
  snprintf(path, sizeof path, "{.status.conditions[?(@.type==\"%s\")].status}", type);
  wait_jsonpath("tenant", t, path, status, timeout);
}

/* psql on a server, in database db; the output without trailing newlines. */
static char *psql_db(const char *dsn_var, const char *db, const char *sql) {
  return tn_test_output("PGCONNECT_TIMEOUT=5 psql \"$(printf '%%s' \"$%s\" | sed 's#/postgres?#/%s?#')\" "
                        "-v ON_ERROR_STOP=1 -qtAc \"%s\" 2>&1",
                        dsn_var, db, sql);
}

/* As the tenant, through its tenant-database Secret. */
static void tenant_sql(const char *t, const char *sql) {
  OK("uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
     "psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qc \"%s\"",
     t, sql);
}

/* The replication name of migration m (tnmig_ + its uid with '_' for '-'), checked against the
 * status when it shows one. */
static void repl_name(const char *m, char *out, size_t n) {
  char *uid = jp("tenantmigration", m, "{.metadata.uid}");
  cr_assert(strlen(uid) > 8, "no uid: %s", uid);
  snprintf(out, n, "tnmig_%s", uid);
  for (char *p = out; *p; p++)
    if (*p == '-')
      *p = '_';
  free(uid);
}

/* How many of: slots named name on the source server, publications named name in the source's
 * database src_db (NULL: not checked), subscriptions named name on the target server. */
static void count_replication(const char *name, const char *src_db, int *slots, int *pubs, int *subs) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s'", name);
  char *v = psql_db("TENANCY_PG_DSN", "postgres", sql);
  *slots = atoi(v);
  free(v);
  *pubs = 0;
  if (src_db) {
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_publication WHERE pubname = '%s'", name);
    v = psql_db("TENANCY_PG_DSN", src_db, sql);
    *pubs = atoi(v);
    free(v);
  }
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_subscription WHERE subname = '%s'", name);
  v = psql_db("TENANCY_PG2_DSN", "postgres", sql);
  *subs = atoi(v);
  free(v);
}

static void assert_no_replication(const char *name, const char *src_db, const char *when) {
  int slots, pubs, subs;
  count_replication(name, src_db, &slots, &pubs, &subs);
  cr_assert_eq(slots, 0, "%s: replication slot %s left on the source (it keeps WAL forever)", when, name);
  cr_assert_eq(pubs, 0, "%s: publication %s left on the source", when, name);
  cr_assert_eq(subs, 0, "%s: subscription %s left on the target", when, name);
}

/* ---- the writer ---------------------------------------------------------------------------------- */

#define MAX_ROWS 200000
#define NOTES 300
struct writer {
  char tenant[64], schema[64];
  pthread_t th;
  atomic_bool stop;
  atomic_int committed, refused, uncertain, errors;
  atomic_int committed_on_b; /* commits through a Secret that pointed at region B's server */
  atomic_int refused_then_b; /* commits on B after at least one refusal */
  char last_error[512];
  unsigned char *state; /* per sequence number: 1 committed, 2 uncertain */
  int next;
};

static char *secret_uri(const char *t, int *port) {
  char *uri = NULL;
  if (tn_test_sh(&uri, "kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d",
                 t)) {
    free(uri);
    return NULL;
  }
  char *p = NULL;
  if (port &&
      tn_test_sh(&p, "kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.port}' | base64 -d",
                 t) == 0)
    *port = atoi(p);
  free(p);
  size_t n = strlen(uri) + strlen(tn_test_env("TENANCY_CA_FILE")) + 64;
  char *full = malloc(n);
  snprintf(full, n, "%s%ssslrootcert=%s&connect_timeout=3", uri, strchr(uri, '?') ? "&" : "?",
           tn_test_env("TENANCY_CA_FILE"));
  free(uri);
  return full;
}

/* An application's loop: an insert into ledger per transaction, and while on the source, in the
 * same transaction, an update of the table without a primary key (logical replication of an
 * UPDATE needs a replica identity: the source refuses it without one). A session ended or a
 * connect refused is retried once with the URI it has, then the Secret is read again. */
static void *writer_main(void *ud) {
  struct writer *w = ud;
  PGconn *c = NULL;
  char *uri = NULL;
  int port = 0, uri_port = 0, b_port = atoi(getenv("TENANCY_PG2_PORT"));
  bool seen_refusal = false;
  while (!atomic_load(&w->stop) && w->next < MAX_ROWS) {
    if (!c || PQstatus(c) != CONNECTION_OK) {
      if (c)
        PQfinish(c);
      c = uri ? PQconnectdb(uri) : NULL;
      port = uri_port;
      if (!c || PQstatus(c) != CONNECTION_OK) {
        if (uri) {
          atomic_fetch_add(&w->refused, 1);
          seen_refusal = true;
        }
        free(uri);
        uri = secret_uri(w->tenant, &uri_port);
        usleep(50 * 1000);
        continue;
      }
    }
    int seq = ++w->next;
    char sql[512];
    int k = snprintf(sql, sizeof sql, "INSERT INTO \"%s\".ledger(seq, v) VALUES (%d, 'row %d')", w->schema,
                     seq, seq);
    if (port != b_port)
      snprintf(sql + k, sizeof sql - (size_t)k, "; UPDATE \"%s\".notes SET n = n + 1 WHERE k = %d", w->schema,
               seq % NOTES + 1);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
      w->state[seq] = 1;
      atomic_fetch_add(&w->committed, 1);
      if (port == b_port) {
        atomic_fetch_add(&w->committed_on_b, 1);
        if (seen_refusal)
          atomic_fetch_add(&w->refused_then_b, 1);
      }
    } else if (PQstatus(c) == CONNECTION_OK) {
      /* refused by the server on a live session: not committed, and a bug of the migration */
      w->state[seq] = 0;
      snprintf(w->last_error, sizeof w->last_error, "%s", PQresultErrorMessage(r));
      atomic_fetch_add(&w->errors, 1);
    } else {
      w->state[seq] = 2; /* the session was ended: committed or not, the client cannot know */
      atomic_fetch_add(&w->uncertain, 1);
    }
    PQclear(r);
    usleep(3000);
  }
  if (c)
    PQfinish(c);
  free(uri);
  return NULL;
}

static void wait_count(atomic_int *v, int n, double timeout, const char *what) {
  double end = tn_test_now() + timeout;
  while (atomic_load(v) < n) {
    if (tn_test_now() > end) {
      tn_test_operator_dump_log(&op);
      cr_assert_fail("%s: %d, wanted %d", what, atomic_load(v), n);
    }
    usleep(50 * 1000);
  }
}

/* Every committed sequence number is in "schema".ledger on the server of dsn_var (db), once. */
static void assert_all_committed(struct writer *w, const char *dsn_var, const char *db) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT seq FROM \\\"%s\\\".ledger ORDER BY seq", w->schema);
  char *rows = psql_db(dsn_var, db, sql);
  unsigned char *seen = calloc(MAX_ROWS + 2, 1);
  int n = 0, dup = 0;
  for (char *p = rows; *p;) {
    int s = atoi(p);
    if (s > 0 && s <= MAX_ROWS) {
      dup += seen[s];
      seen[s] = 1;
      n++;
    }
    p = strchr(p, '\n');
    if (!p)
      break;
    p++;
  }
  int missing = 0, first_missing = 0, extra = 0;
  for (int s = 1; s <= w->next; s++) {
    if (w->state[s] == 1 && !seen[s] && !missing++)
      first_missing = s;
    if (w->state[s] == 0 && seen[s])
      extra++;
  }
  free(seen);
  cr_assert_eq(missing, 0, "%d committed row(s) missing on %s (first: seq %d); rows: %.300s", missing,
               dsn_var, first_missing, rows);
  cr_assert_eq(dup, 0, "duplicate rows on %s", dsn_var);
  cr_assert_eq(extra, 0, "rows never written are on %s", dsn_var);
  cr_assert_geq(n, atomic_load(&w->committed));
  cr_assert_leq(n, atomic_load(&w->committed) + atomic_load(&w->uncertain));
  free(rows);
}

/* ---- tests --------------------------------------------------------------------------------------- */

Test(migration_logical, under_write_load_no_slot_left) {
  char t[64], m[64], name[96];
  tn_test_unique_name(t, sizeof t, "tn-mlr");
  tn_test_unique_name(m, sizeof m, "mlr");
  apply_tenant(t, "shared");
  wait_condition(t, "DatabaseReady", "True", 90);
  char *schema = jp("tenant", t, "{.status.database.schema}");
  struct writer *w = calloc(1, sizeof *w);
  w->state = calloc(MAX_ROWS + 2, 1);
  snprintf(w->tenant, sizeof w->tenant, "%s", t);
  snprintf(w->schema, sizeof w->schema, "%s", schema);
  char sql[1024];
  snprintf(
      sql, sizeof sql,
      "CREATE TABLE \\\"%s\\\".ledger(id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, seq int NOT "
      "NULL UNIQUE, v text NOT NULL, at timestamptz NOT NULL DEFAULT now()); CREATE TABLE "
      "\\\"%s\\\".notes(k int NOT NULL, n int NOT NULL); INSERT INTO \\\"%s\\\".notes SELECT g, 0 FROM "
      "generate_series(1, %d) g",
      schema, schema, schema, NOTES);
  tenant_sql(t, sql);
  pthread_create(&w->th, NULL, writer_main, w);
  wait_count(&w->committed, 200, 60, "rows committed on the source");

  double t0 = tn_test_now();
  migration(m, t, ",\"rollbackRetention\":\"10m\"");
  repl_name(m, name, sizeof name);
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "RollbackWindow", 120);
  double took = tn_test_now() - t0;
  wait_count(&w->committed_on_b, 200, 60, "rows committed on the target");
  atomic_store(&w->stop, true);
  pthread_join(w->th, NULL);
  char *freeze = jp("tenantmigration", m, "{.status.freezeSeconds}");
  fprintf(stderr,
          "logical migration: %.1f s to RollbackWindow; freeze %s s; writer: %d committed (%d on the target, "
          "%d after a refusal), %d refused connects, %d uncertain, %d errors\n",
          took, freeze, atomic_load(&w->committed), atomic_load(&w->committed_on_b),
          atomic_load(&w->refused_then_b), atomic_load(&w->refused), atomic_load(&w->uncertain),
          atomic_load(&w->errors));
  free(freeze);
  cr_assert_eq(atomic_load(&w->errors), 0, "statements refused on a live session: %s", w->last_error);
  cr_assert_gt(atomic_load(&w->refused), 0, "no write was refused during the freeze");
  cr_assert_gt(atomic_load(&w->refused_then_b), 0,
               "writes refused in the freeze were never accepted on the target");

  /* the logical path, caught up by replication (no snapshot fallback), reported */
  char *v = jp("tenantmigration", m, "{.status.copyMethod}");
  cr_assert_str_eq(v, "logical");
  free(v);
  v = jp("tenantmigration", m, "{.status.copyFallback}");
  cr_assert_str_eq(v, "", "the cutover fell back to a snapshot copy: %s", v);
  free(v);
  v = jp("tenantmigration", m, "{.status.replication.name}");
  cr_assert_str_eq(v, name);
  free(v);
  v = jp("tenantmigration", m, "{.status.conditions[?(@.type==\"Copied\")].message}");
  cr_assert(strstr(v, "2 of 2 table(s) replicating") && strstr(v, "lag"), "%s", v);
  free(v);
  v = jp("tenantmigration", m, "{.status.conditions[?(@.type==\"CutOver\")].message}");
  cr_assert(strstr(v, "subscription caught up"), "%s", v);
  free(v);
  v = jp("tenant", t, "{.status.database.server}");
  cr_assert_str_eq(v, "pg-b");
  free(v);

  /* every committed row on the target; the rows up to the freeze and the updated table (no primary
   * key: replicated by REPLICA IDENTITY FULL) equal on both sides */
  assert_all_committed(w, "TENANCY_PG2_DSN", "tenants");
  snprintf(sql, sizeof sql, "SELECT max(seq) FROM \\\"%s\\\".ledger", schema);
  char *maxseq = psql_db("TENANCY_PG_DSN", "tenants", sql);
  snprintf(sql, sizeof sql,
           "SELECT count(*) || ' ' || md5(string_agg(seq || v || at || id, ',' ORDER BY seq)) FROM "
           "\\\"%s\\\".ledger WHERE seq <= %s",
           schema, maxseq);
  char *src_sum = psql_db("TENANCY_PG_DSN", "tenants", sql);
  char *dst_sum = psql_db("TENANCY_PG2_DSN", "tenants", sql);
  cr_assert_str_eq(dst_sum, src_sum, "rows up to the freeze: target %s, source %s", dst_sum, src_sum);
  cr_assert(strncmp(src_sum, "0 ", 2) != 0, "no rows before the freeze: %s", src_sum);
  free(src_sum);
  free(dst_sum);
  free(maxseq);
  snprintf(sql, sizeof sql,
           "SELECT count(*) || ' ' || sum(n) || ' ' || md5(string_agg(k || ':' || n, ',' ORDER BY k)) FROM "
           "\\\"%s\\\".notes",
           schema);
  src_sum = psql_db("TENANCY_PG_DSN", "tenants", sql);
  dst_sum = psql_db("TENANCY_PG2_DSN", "tenants", sql);
  cr_assert_str_eq(dst_sum, src_sum, "updated table without a key: target %s, source %s", dst_sum, src_sum);
  cr_assert(strncmp(src_sum, "300 0 ", 6) != 0, "the writer never updated notes: %s", src_sum);
  free(src_sum);
  free(dst_sum);

  /* the replication was dropped at the cutover; nothing of it is left, now nor after CleanUp */
  assert_no_replication(name, "tenants", "after the cutover");
  OK("kubectl patch tenantmigration %s --type=merge -p '{\"spec\":{\"rollbackRetention\":\"0s\"}}'", m);
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "Succeeded", 60);
  assert_no_replication(name, "tenants", "after CleanUp");
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_namespace WHERE nspname = '%s'", schema);
  v = psql_db("TENANCY_PG_DSN", "tenants", sql);
  cr_assert_str_eq(v, "0", "the source schema survived CleanUp");
  free(v);
  free(schema);
  free(w->state);
  free(w);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

Test(migration_logical, abort_drops_replication) {
  char t[64], m[64], name[96];
  tn_test_unique_name(t, sizeof t, "tn-mlra");
  tn_test_unique_name(m, sizeof m, "mlra");
  apply_tenant(t, "shared");
  wait_condition(t, "DatabaseReady", "True", 90);
  char *schema = jp("tenant", t, "{.status.database.schema}");
  char *role = jp("tenant", t, "{.status.database.role}");
  char sql[512];
  snprintf(sql, sizeof sql,
           "CREATE TABLE \\\"%s\\\".items(id serial PRIMARY KEY, v text); INSERT INTO \\\"%s\\\".items(v) "
           "SELECT 'v' || g FROM generate_series(1, 1000) g",
           schema, schema);
  tenant_sql(t, sql);
  /* a window that is closed now: the migration waits before its cutover, the subscription running */
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  char extra[128];
  snprintf(extra, sizeof extra, ",\"window\":{\"start\":\"%02d:%02d\",\"end\":\"%02d:%02d\"}",
           (tm.tm_hour + 3) % 24, tm.tm_min, (tm.tm_hour + 4) % 24, tm.tm_min);
  migration(m, t, extra);
  repl_name(m, name, sizeof name);
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "Cutover", 60);
  int slots, pubs, subs;
  count_replication(name, "tenants", &slots, &pubs, &subs);
  cr_assert(slots == 1 && pubs == 1 && subs == 1,
            "before the abort: %d slot(s), %d publication(s), %d subscription(s)", slots, pubs, subs);
  /* rows written now reach the target by replication */
  snprintf(sql, sizeof sql, "INSERT INTO \\\"%s\\\".items(v) VALUES ('after copy')", schema);
  tenant_sql(t, sql);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM \\\"%s\\\".items", schema);
  char *out = NULL;
  int rc = tn_test_sh_until(20, &out,
                            "test \"$(PGCONNECT_TIMEOUT=5 psql \"$(printf '%%s' \"$TENANCY_PG2_DSN\" | sed "
                            "'s#/postgres?#/tenants?#')\" -qtAc \"%s\")\" = 1001",
                            sql);
  cr_assert_eq(rc, 0, "a row written after the copy never reached the target: %s", out);
  free(out);

  /* deleting it now would leave the slot: refused by the admission webhook, which says what to do */
  rc = tn_test_sh(&out, "kubectl delete tenantmigration %s --wait=false", m);
  cr_assert_neq(rc, 0, "a TenantMigration with a running replication was deleted");
  cr_assert(strstr(out, "denied the request") && strstr(out, name) && strstr(out, "spec.abort"), "%s", out);
  free(out);
  OK("kubectl patch tenantmigration %s --type=merge -p '{\"spec\":{\"abort\":true}}'", m);
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "Aborted", 60);
  assert_no_replication(name, "tenants", "after the abort");
  OK("kubectl delete tenantmigration %s", m);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_roles WHERE rolname = '%s'", role);
  char *v = psql_db("TENANCY_PG2_DSN", "postgres", sql);
  cr_assert_str_eq(v, "0", "the target role survived the abort");
  free(v);
  v = jp("tenant", t, "{.status.placement.region}");
  cr_assert_str_eq(v, ra);
  free(v);
  /* the tenant still writes on the source */
  snprintf(sql, sizeof sql, "UPDATE \\\"%s\\\".items SET v = 'x' WHERE id = 1", schema);
  tenant_sql(t, sql);
  free(schema);
  free(role);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

Test(migration_logical, sigkill_after_copy_resumes) {
  char t[64], m[64], name[96];
  tn_test_unique_name(t, sizeof t, "tn-mlrk");
  tn_test_unique_name(m, sizeof m, "mlrk");
  apply_tenant(t, "dedicated");
  wait_condition(t, "DatabaseReady", "True", 90);
  tenant_sql(t,
             "CREATE SCHEMA app; CREATE TABLE app.items(id serial PRIMARY KEY, name text UNIQUE, n "
             "numeric(10,2) CHECK (n >= 0)); INSERT INTO app.items(name, n) SELECT 'item ' || g, g FROM "
             "generate_series(1, 5000) g; CREATE TABLE public.notes(x int); INSERT INTO public.notes VALUES "
             "(1), (2)");
  char *db = jp("tenant", t, "{.status.database.database}");
  const char *sum_sql =
      "SELECT (SELECT count(*) || md5(string_agg(i::text, ',' ORDER BY id)) FROM app.items i) || "
      "' ' || (SELECT count(*) FROM public.notes)";
  char *src_sum = psql_db("TENANCY_PG_DSN", db, sum_sql);

  tn_test_operator_stop(&op, SIGTERM, 40);
  operator_start("Copy", "0");
  migration(m, t, ",\"rollbackRetention\":\"0s\"");
  repl_name(m, name, sizeof name);
  int st = tn_test_operator_stop(&op, 0, 120); /* it kills itself after the Copy step's work */
  if (st != 128 + SIGKILL) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator did not die after the work of step Copy (exit %d)", st);
  }
  char *v = jp("tenantmigration", m, "{.status.phase}");
  cr_assert_str_eq(v, "Copy", "killed after the work of Copy, status says %s", v);
  free(v);
  v = jp("tenantmigration", m, "{.status.copyMethod}");
  cr_assert_str_eq(v, "logical");
  free(v);
  int slots, pubs, subs;
  count_replication(name, db, &slots, &pubs, &subs);
  cr_assert(slots == 1 && pubs == 1 && subs == 1,
            "after the kill: %d slot(s), %d publication(s), %d subscription(s)", slots, pubs, subs);

  operator_start(NULL, "0");
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "Succeeded", 120);
  v = jp("tenantmigration", m, "{.status.copyFallback}");
  cr_assert_str_eq(v, "", "the cutover fell back to a snapshot copy: %s", v);
  free(v);
  char *dst_sum = psql_db("TENANCY_PG2_DSN", db, sum_sql);
  cr_assert_str_eq(dst_sum, src_sum);
  assert_no_replication(name, NULL, "after CleanUp");
  /* the tenant writes on the target; its serial continues past the source's values */
  wait_jsonpath("tenant", t, "{.status.database.server}", "pg-b", 30);
  char *id = tn_test_output(
      "for i in $(seq 1 100); do port=$(kubectl -n %s-prod get secret tenant-database -o "
      "jsonpath='{.data.port}' | base64 -d); [ \"$port\" = \"$TENANCY_PG2_PORT\" ] && break; sleep 0.3; "
      "done; "
      "uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
      "psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qtAc \"INSERT INTO app.items(name, n) "
      "VALUES ('new', 1) RETURNING id\" 2>&1",
      t, t);
  cr_assert_gt(atoi(id), 5000, "the target's sequence was not moved past the source's: %s", id);
  free(id);
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_database WHERE datname = '%s'", db);
  v = psql_db("TENANCY_PG_DSN", "postgres", sql);
  cr_assert_str_eq(v, "0", "the source database survived CleanUp");
  free(v);
  free(src_sum);
  free(dst_sum);
  free(db);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

/* The write freeze of a tenant of TENANCY_TEST_MIGRATION_ROWS rows (default 200,000; about 20 MB)
 * moved with each copy method, one after the other (the operator restarted with the threshold
 * that forces it). The freeze of the logical path is its catch-up and the checksums; the
 * snapshot's is the whole copy and the checksums. */
static double migrate_measured(const char *min_bytes, const char *method, int rows) {
  char t[64], m[64], sql[512];
  tn_test_unique_name(t, sizeof t, "tn-mlrf");
  tn_test_unique_name(m, sizeof m, "mlrf");
  tn_test_operator_stop(&op, SIGTERM, 40);
  operator_start(NULL, min_bytes);
  apply_tenant(t, "dedicated");
  wait_condition(t, "DatabaseReady", "True", 90);
  snprintf(
      sql, sizeof sql,
      "CREATE TABLE big(id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, k int NOT NULL, v text NOT "
      "NULL); INSERT INTO big(k, v) SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, %d) g",
      rows);
  tenant_sql(t, sql);
  double t0 = tn_test_now();
  migration(m, t, ",\"rollbackRetention\":\"0s\"");
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "Succeeded", 240);
  double took = tn_test_now() - t0;
  char *v = jp("tenantmigration", m, "{.status.copyMethod}");
  cr_assert_str_eq(v, method);
  free(v);
  char *freeze = jp("tenantmigration", m, "{.status.freezeSeconds}");
  char *bytes = jp("tenantmigration", m, "{.status.sourceBytes}");
  fprintf(stderr, "freeze (%s copy, %d rows, %s bytes): %s s; migration %.1f s\n", method, rows, bytes,
          freeze, took);
  double f = atof(freeze);
  free(freeze);
  free(bytes);
  char *db = jp("tenant", t, "{.status.database.database}");
  char *n = psql_db("TENANCY_PG2_DSN", db, "SELECT count(*) FROM big");
  cr_assert_eq(atoi(n), rows, "%s", n);
  free(n);
  free(db);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
  return f;
}

Test(migration_logical, freeze_both_ways, .timeout = 600) {
  const char *env = getenv("TENANCY_TEST_MIGRATION_ROWS");
  int rows = env && atoi(env) > 0 ? atoi(env) : 200000;
  double snap = migrate_measured("-1", "snapshot", rows);
  double logical = migrate_measured("0", "logical", rows);
  cr_assert_lt(logical, snap, "the logical freeze (%.3f s) is not shorter than the snapshot's (%.3f s)",
               logical, snap);
}
