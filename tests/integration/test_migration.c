/* test_migration.c - TenantMigration end to end (issue 16) with two real PostgreSQL servers of the
 * stack: region A on the first ($TENANCY_PG_*), region B on the second ($TENANCY_PG2_*).
 *  - a shared tenant under a steady write load (a libpq writer that follows the tenant-database
 *    Secret) moves from A to B: every committed row is on the target, the copied rows' checksum
 *    equals the frozen source's, writes during the freeze are refused and then accepted on the
 *    target; every step is audited and evented; then a rollback brings it back to A with the rows
 *    written on B, and B's copy is dropped;
 *  - a dedicated tenant's migration survives a SIGKILL of the operator right after the work of
 *    each step (before it is recorded), and ends Succeeded with the source dropped;
 *  - a second migration of a tenant is refused by the admission webhook while one runs (the suite
 *    registers it); an abort before the cutover drops
 *    the target's copy and leaves the tenant where it was;
 *  - (isolation) a shared tenant under a steady write load becomes dedicated on the same server:
 *    every committed row in public of its own database, the copied rows' checksum equal to the
 *    frozen source schema's, writes refused in the freeze then accepted, the Secret names the new
 *    database, status.placement.isolation dedicated; spec.isolation may then become dedicated and
 *    nothing else (CEL); CleanUp drops the source schema only;
 *  - (isolation) a TenancyPolicy residency rule that forbids the target region: Validate refuses. */
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
static char ra[64], rb[64];

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
  OK("kubectl -n tenancy-system create secret generic pg-admin-%s --from-literal=uri=\"$%s\" "
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
     name, dsn_var, name, name, server, port_var, name, name);
}

/* wait_ready false: an operator that resumes a migration at start and kills itself after a step's
 * work may die before /readyz says ready (it waits for every cached tenant's first pass, which the
 * migration controller does not: with many tenants in the cluster the step came first), so the
 * caller waits for its exit instead. */
static void operator_start_ex(const char *crash_after, bool wait_ready) {
  if (crash_after)
    setenv("TENANCY_TEST_MIGRATION_CRASH_AFTER", crash_after, 1);
  char addr[64];
  snprintf(addr, sizeof addr, "--webhook-bind-address=127.0.0.1:%d", tn_test_free_port());
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", addr, NULL});
  unsetenv("TENANCY_TEST_MIGRATION_CRASH_AFTER");
  if (wait_ready && !tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void operator_start(const char *crash_after) { operator_start_ex(crash_after, true); }

static void start(void) {
  tn_test_install_api();
  tn_test_env("TENANCY_PG2_DSN");
  tn_test_env("TENANCY_PG_DSN");
  OK("kubectl create namespace tenancy-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null");
  tn_test_unique_name(ra, sizeof ra, "mig-a");
  tn_test_unique_name(rb, sizeof rb, "mig-b");
  region(ra, "pg-a", "TENANCY_PG_DSN", "TENANCY_PG_PORT");
  region(rb, "pg-b", "TENANCY_PG2_DSN", "TENANCY_PG2_PORT");
  operator_start(NULL);
}

static void stop(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  /* failurePolicy Fail: without the operator the registration would refuse the other suites' writes */
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
  tn_test_sh(NULL,
             "kubectl delete tenantmigrations -l test-suite=migration --wait=false; "
             "kubectl delete region %s %s --wait=false",
             ra, rb);
}

TestSuite(migration, .init = start, .fini = stop, .timeout = 400);

static void apply_tenant(const char *t, const char *isolation) {
  OK("printf '%%s' "
     "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
     "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":\"%s\",\"environments\":[\"prod\"],"
     "\"residency\":{\"allowedRegions\":[\"%s\",\"%s\"],\"preferredRegion\":\"%s\"}}}' | kubectl apply -f -",
     t, isolation, ra, rb, ra);
}

static void migration(const char *name, const char *t, const char *extra) {
  OK("printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenantMigration\",\"metadata\":"
     "{\"name\":\"%s\",\"labels\":{\"test-suite\":\"migration\"}},\"spec\":{\"tenant\":\"%s\",\"target\":"
     "{\"region\":\"%s\"}%s}}' | kubectl apply -f -",
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

static int psql_at(const char *dsn_var, const char *sql, char **out) {
  return tn_test_sh(out, "PGCONNECT_TIMEOUT=5 psql \"$%s\" -v ON_ERROR_STOP=1 -qtAc \"%s\"", dsn_var, sql);
}

/* psql on a server, in database db. */
static char *psql_db(const char *dsn_var, const char *db, const char *sql) {
  return tn_test_output("PGCONNECT_TIMEOUT=5 psql \"$(printf '%%s' \"$%s\" | sed 's#/postgres?#/%s?#')\" "
                        "-v ON_ERROR_STOP=1 -qtAc \"%s\" 2>&1",
                        dsn_var, db, sql);
}

/* ---- the writer ---------------------------------------------------------------------------------- */

#define MAX_ROWS 200000
struct writer {
  char tenant[64], schema[64]; /* schema "": the table named as an application does (search_path) */
  char target_db[64];          /* "": the target is region B's server; else this database */
  pthread_t th;
  atomic_bool stop;
  atomic_int committed, refused, uncertain;
  atomic_int committed_on_b; /* commits through a Secret that pointed at region B's server */
  atomic_int refused_then_b; /* commits on B after at least one refusal */
  unsigned char *state;      /* per sequence number: 1 committed, 2 uncertain */
  int next;
};

static char *secret_uri(const char *t, int *port, char *db, size_t dbn) {
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
  p = NULL;
  if (db &&
      tn_test_sh(&p,
                 "kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.database}' | base64 -d",
                 t) == 0)
    snprintf(db, dbn, "%s", p);
  free(p);
  size_t n = strlen(uri) + strlen(tn_test_env("TENANCY_CA_FILE")) + 64;
  char *full = malloc(n);
  snprintf(full, n, "%s%ssslrootcert=%s&connect_timeout=3", uri, strchr(uri, '?') ? "&" : "?",
           tn_test_env("TENANCY_CA_FILE"));
  free(uri);
  return full;
}

/* An application's loop: a session ended or a connect refused is retried once with the URI it
 * has, then the Secret is read again (as a pod would after a restart or a Secret reload). */
static void *writer_main(void *ud) {
  struct writer *w = ud;
  PGconn *c = NULL;
  char *uri = NULL;
  int port = 0, uri_port = 0, b_port = atoi(getenv("TENANCY_PG2_PORT"));
  char db[64] = "", uri_db[64] = "";
  bool seen_refusal = false;
  while (!atomic_load(&w->stop) && w->next < MAX_ROWS) {
    if (!c || PQstatus(c) != CONNECTION_OK) {
      if (c)
        PQfinish(c);
      c = uri ? PQconnectdb(uri) : NULL;
      port = uri_port;
      snprintf(db, sizeof db, "%s", uri_db);
      if (!c || PQstatus(c) != CONNECTION_OK) {
        if (uri) {
          atomic_fetch_add(&w->refused, 1);
          seen_refusal = true;
        }
        free(uri);
        uri = secret_uri(w->tenant, &uri_port, uri_db, sizeof uri_db);
        usleep(50 * 1000);
        continue;
      }
    }
    int seq = ++w->next;
    char sql[256];
    if (w->schema[0])
      snprintf(sql, sizeof sql, "INSERT INTO \"%s\".ledger(seq, v) VALUES (%d, 'row %d')", w->schema, seq,
               seq);
    else
      snprintf(sql, sizeof sql, "INSERT INTO ledger(seq, v) VALUES (%d, 'row %d')", seq, seq);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
      w->state[seq] = 1;
      atomic_fetch_add(&w->committed, 1);
      if (w->target_db[0] ? strcmp(db, w->target_db) == 0 : port == b_port) {
        atomic_fetch_add(&w->committed_on_b, 1);
        if (seen_refusal)
          atomic_fetch_add(&w->refused_then_b, 1);
      }
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

/* Every committed sequence number is in "schema".ledger on the server of dsn_var (db). */
static void assert_all_committed_in(struct writer *w, const char *dsn_var, const char *db,
                                    const char *schema) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT seq FROM \\\"%s\\\".ledger ORDER BY seq", schema);
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

static void assert_all_committed(struct writer *w, const char *dsn_var, const char *db) {
  assert_all_committed_in(w, dsn_var, db, w->schema);
}

Test(migration, under_write_load_then_rollback) {
  char t[64], m[64];
  tn_test_unique_name(t, sizeof t, "tn-mig");
  tn_test_unique_name(m, sizeof m, "mig");
  apply_tenant(t, "shared");
  wait_condition(t, "DatabaseReady", "True", 90);
  char *placed = jp("tenant", t, "{.status.placement.region}");
  cr_assert_str_eq(placed, ra);
  free(placed);
  char *schema = jp("tenant", t, "{.status.database.schema}");
  struct writer *w = calloc(1, sizeof *w);
  w->state = calloc(MAX_ROWS + 2, 1);
  snprintf(w->tenant, sizeof w->tenant, "%s", t);
  snprintf(w->schema, sizeof w->schema, "%s", schema);
  char sql[512];
  snprintf(
      sql, sizeof sql,
      "CREATE TABLE \\\"%s\\\".ledger(id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, seq int NOT "
      "NULL UNIQUE, v text NOT NULL, at timestamptz NOT NULL DEFAULT now())",
      schema);
  OK("uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
     "psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qc \"%s\"",
     t, sql);
  pthread_create(&w->th, NULL, writer_main, w);
  wait_count(&w->committed, 200, 60, "rows committed on the source");

  double t0 = tn_test_now();
  migration(m, t, ",\"rollbackRetention\":\"10m\"");
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "RollbackWindow", 120);
  double took = tn_test_now() - t0;
  /* the Secret follows (the tenant reconcile writes it for the new server) and writes resume there */
  wait_count(&w->committed_on_b, 200, 60, "rows committed on the target");
  atomic_store(&w->stop, true);
  pthread_join(w->th, NULL);
  char *freeze = jp("tenantmigration", m, "{.status.freezeSeconds}");
  fprintf(
      stderr,
      "migration: %.1f s to RollbackWindow; freeze %s s; writer: %d committed (%d on the target, %d after a "
      "refusal), %d refused connects, %d uncertain\n",
      took, freeze, atomic_load(&w->committed), atomic_load(&w->committed_on_b),
      atomic_load(&w->refused_then_b), atomic_load(&w->refused), atomic_load(&w->uncertain));
  free(freeze);
  cr_assert_gt(atomic_load(&w->refused), 0, "no write was refused during the freeze");
  cr_assert_gt(atomic_load(&w->refused_then_b), 0,
               "writes refused in the freeze were never accepted on the target");

  /* the tenant is in B now: placement, server, Secret */
  char *v = jp("tenant", t, "{.status.placement.region}");
  cr_assert_str_eq(v, rb);
  free(v);
  v = jp("tenant", t, "{.status.database.server}");
  cr_assert_str_eq(v, "pg-b");
  free(v);
  wait_condition(t, "Ready", "True", 60);

  /* every committed row is on the target; the copied rows equal the frozen source's */
  assert_all_committed(w, "TENANCY_PG2_DSN", "tenants");
  snprintf(sql, sizeof sql, "SELECT max(seq) FROM \\\"%s\\\".ledger", schema);
  char *maxseq = psql_db("TENANCY_PG_DSN", "tenants", sql);
  snprintf(
      sql, sizeof sql,
      "SELECT count(*) || ' ' || md5(string_agg(seq || v || at, ',' ORDER BY seq)) FROM \\\"%s\\\".ledger "
      "WHERE seq <= %s",
      schema, maxseq);
  char *src_sum = psql_db("TENANCY_PG_DSN", "tenants", sql);
  char *dst_sum = psql_db("TENANCY_PG2_DSN", "tenants", sql);
  cr_assert_str_eq(dst_sum, src_sum, "checksum of the rows up to the freeze: target %s, source %s", dst_sum,
                   src_sum);
  cr_assert(strncmp(src_sum, "0 ", 2) != 0, "no rows before the freeze: %s", src_sum);
  free(src_sum);
  free(dst_sum);
  free(maxseq);
  /* the source role may not log in (kept for the rollback period, frozen) */
  char *role = jp("tenant", t, "{.status.database.role}");
  snprintf(sql, sizeof sql, "SELECT rolcanlogin FROM pg_roles WHERE rolname = '%s'", role);
  char *out = NULL;
  cr_assert_eq(psql_at("TENANCY_PG_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "f\n");
  free(out);

  /* audited and evented, every step */
  snprintf(sql, sizeof sql,
           "SELECT string_agg(DISTINCT action, ',' ORDER BY action) FROM tenancy.audit_events WHERE target = "
           "'tenant/%s' AND action LIKE 'migration.%%' AND outcome = 'succeeded'",
           t);
  cr_assert_eq(psql_at("TENANCY_PG_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(
      out,
      "migration.copy,migration.cutover,migration.provision-target,migration.validate,migration.verify\n");
  free(out);
  /* the switch is a placement change in the outbox (issue 14), with the audit row */
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM tenancy.outbox WHERE tenant = '%s' AND type = "
           "'dev.tenancy.tenant.placement.decided.v1' AND event->'data'->>'region' = '%s' AND "
           "event->'data'->>'previousRegion' = '%s'",
           t, rb, ra);
  cr_assert_eq(psql_at("TENANCY_PG_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "1\n", "no placement.decided event for the cutover");
  free(out);
  OK("kubectl get events -A --field-selector involvedObject.name=%s -o jsonpath='{.items[*].reason}' | "
     "grep -w Cutover",
     m);
  OK("kubectl get events -A --field-selector involvedObject.name=%s -o jsonpath='{.items[*].reason}' | "
     "grep -w Migrated",
     t);
  v = jp("tenantmigration", m, "{.status.conditions[?(@.type==\"CutOver\")].observedGeneration}");
  cr_assert_str_eq(v, "1");
  free(v);

  /* rollback within the window: back to A, with what was written on B; B's copy dropped */
  OK("kubectl patch tenantmigration %s --type=merge -p '{\"spec\":{\"rollback\":true}}'", m);
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "RolledBack", 90);
  v = jp("tenant", t, "{.status.placement.region}");
  cr_assert_str_eq(v, ra);
  free(v);
  wait_jsonpath("tenant", t, "{.status.database.server}", "pg-a", 30);
  wait_condition(t, "DatabaseReady", "True", 60);
  assert_all_committed(w, "TENANCY_PG_DSN", "tenants");
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_roles WHERE rolname = '%s'", role);
  cr_assert_eq(psql_at("TENANCY_PG2_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "the target's role survived the rollback");
  free(out);
  /* the tenant writes on the source again */
  OK("tn=%s; for i in $(seq 1 100); do port=$(kubectl -n $tn-prod get secret tenant-database -o "
     "jsonpath='{.data.port}' | base64 -d); [ \"$port\" = \"$TENANCY_PG_PORT\" ] && break; sleep 0.3; done; "
     "uri=$(kubectl -n $tn-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
     "psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qc \"INSERT INTO \\\"%s\\\".ledger(seq, "
     "v) "
     "VALUES (%d, 'after rollback')\"",
     t, schema, MAX_ROWS + 1);
  free(role);
  free(schema);
  free(w->state);
  free(w);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

Test(migration, sigkill_at_every_step_resumes) {
  char t[64], m[64];
  tn_test_unique_name(t, sizeof t, "tn-migk");
  tn_test_unique_name(m, sizeof m, "migk");
  apply_tenant(t, "dedicated");
  wait_condition(t, "DatabaseReady", "True", 90);
  OK("uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
     "psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qc \"CREATE SCHEMA app; CREATE TABLE "
     "app.items(id serial PRIMARY KEY, name text UNIQUE, n numeric(10,2) CHECK (n >= 0)); CREATE INDEX ON "
     "app.items (n); INSERT INTO app.items(name, n) SELECT 'item ' || g, g FROM generate_series(1, 5000) g; "
     "CREATE TABLE public.notes(x int); INSERT INTO public.notes VALUES (1), (2)\"",
     t);
  char *db = jp("tenant", t, "{.status.database.database}");
  const char *sum_sql =
      "SELECT (SELECT count(*) || md5(string_agg(i::text, ',' ORDER BY id)) FROM app.items i) || "
      "' ' || (SELECT count(*) FROM public.notes)";
  char *src_sum = psql_db("TENANCY_PG_DSN", db, sum_sql);

  const char *steps[] = {"Validate", "ProvisionTarget", "Copy", "Verify", "Cutover", "CleanUp"};
  tn_test_operator_stop(&op, SIGTERM, 40);
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    operator_start_ex(steps[i], i == 0); /* the first creates the migration through the webhook */
    if (i == 0)
      migration(m, t, ",\"rollbackRetention\":\"0s\"");
    int st = tn_test_operator_stop(&op, 0, 90); /* it kills itself after the step's work */
    if (st != 128 + SIGKILL) {
      tn_test_operator_dump_log(&op);
      cr_assert_fail("the operator did not die after the work of step %s (exit %d)", steps[i], st);
    }
    char *phase = jp("tenantmigration", m, "{.status.phase}");
    cr_assert_str_eq(phase, steps[i], "killed after the work of %s, status says %s", steps[i], phase);
    free(phase);
  }
  operator_start(NULL);
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "Succeeded", 90);
  char *dst_sum = psql_db("TENANCY_PG2_DSN", db, sum_sql);
  cr_assert_str_eq(dst_sum, src_sum);
  /* the target works for the tenant (serial continues past the copied rows), the source is gone */
  wait_jsonpath("tenant", t, "{.status.database.server}", "pg-b", 30);
  OK("for i in $(seq 1 100); do port=$(kubectl -n %s-prod get secret tenant-database -o "
     "jsonpath='{.data.port}' | base64 -d); [ \"$port\" = \"$TENANCY_PG2_PORT\" ] && break; sleep 0.3; done; "
     "uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
     "psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qc \"INSERT INTO app.items(name, n) "
     "VALUES "
     "('new', 1)\"",
     t, t);
  char sql[256], *out = NULL;
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_database WHERE datname = '%s'", db);
  cr_assert_eq(psql_at("TENANCY_PG_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "the source database survived CleanUp");
  free(out);
  /* each step audited once as succeeded even though each ran twice */
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM tenancy.audit_events WHERE target = 'tenant/%s' AND action LIKE "
           "'migration.%%' AND "
           "outcome = 'succeeded'",
           t);
  cr_assert_eq(psql_at("TENANCY_PG_DSN", sql, &out), 0, "%s", out);
  cr_assert_geq(atoi(out), 6, "%s", out);
  free(out);
  free(src_sum);
  free(dst_sum);
  free(db);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

Test(migration, second_refused_and_abort) {
  char t[64], m1[64], m2[64];
  tn_test_unique_name(t, sizeof t, "tn-miga");
  tn_test_unique_name(m1, sizeof m1, "miga");
  tn_test_unique_name(m2, sizeof m2, "migb");
  apply_tenant(t, "shared");
  wait_condition(t, "DatabaseReady", "True", 90);
  char *role = jp("tenant", t, "{.status.database.role}");
  /* a window that is closed now: the migration waits before its cutover */
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  char extra[128];
  snprintf(extra, sizeof extra, ",\"window\":{\"start\":\"%02d:%02d\",\"end\":\"%02d:%02d\"}",
           (tm.tm_hour + 3) % 24, tm.tm_min, (tm.tm_hour + 4) % 24, tm.tm_min);
  migration(m1, t, extra);
  wait_jsonpath("tenantmigration", m1, "{.status.phase}", "Cutover", 60);
  char *msg = jp("tenantmigration", m1, "{.status.message}");
  cr_assert(strstr(msg, "window"), "%s", msg);
  free(msg);
  /* a second one is refused */
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenantMigration\",\"metadata\":"
      "{\"name\":\"%s\",\"labels\":{\"test-suite\":\"migration\"}},\"spec\":{\"tenant\":\"%s\","
      "\"target\":{\"region\":\"%s\"}}}' | kubectl apply -f -",
      m2, t, rb);
  cr_assert_neq(rc, 0, "a second migration of a running tenant was stored");
  cr_assert(strstr(out, "denied the request") && strstr(out, m1) && strstr(out, "is running"), "%s", out);
  free(out);
  /* the target copy exists; abort drops it and the tenant never moved */
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT rolcanlogin FROM pg_roles WHERE rolname = '%s'", role);
  cr_assert_eq(psql_at("TENANCY_PG2_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "f\n", "the target role may log in before the cutover");
  free(out);
  OK("kubectl patch tenantmigration %s --type=merge -p '{\"spec\":{\"abort\":true}}'", m1);
  wait_jsonpath("tenantmigration", m1, "{.status.phase}", "Aborted", 60);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_roles WHERE rolname = '%s'", role);
  cr_assert_eq(psql_at("TENANCY_PG2_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "the target role survived the abort");
  free(out);
  char *v = jp("tenant", t, "{.status.placement.region}");
  cr_assert_str_eq(v, ra);
  free(v);
  /* spec.target cannot change (CEL) */
  rc = tn_test_sh(
      &out, "kubectl patch tenantmigration %s --type=merge -p '{\"spec\":{\"target\":{\"region\":\"x\"}}}'",
      m1);
  cr_assert_neq(rc, 0);
  cr_assert(strstr(out, "cannot change"), "%s", out);
  free(out);
  free(role);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

/* ---- ISOLATION (issue 16): a migration that changes the isolation ------------------------------- */

static void migration_to(const char *name, const char *t, const char *target, const char *extra) {
  OK("printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenantMigration\",\"metadata\":"
     "{\"name\":\"%s\",\"labels\":{\"test-suite\":\"migration\"}},\"spec\":{\"tenant\":\"%s\",\"target\":"
     "%s%s}}' | kubectl apply -f -",
     name, t, target, extra);
}

static char *secret_field(const char *t, const char *key) {
  return tn_test_output("kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.%s}' | base64 -d",
                        t, key);
}

/* A shared tenant under a steady write load becomes dedicated on the same server (region A, pg-a):
 * its tables move from its schema in the shared database to public in a database of its own; the
 * application names its table without a schema (search_path) and keeps working. */
Test(migration, shared_to_dedicated_on_the_same_server_under_write_load) {
  char t[64], m[64];
  tn_test_unique_name(t, sizeof t, "tn-migi");
  tn_test_unique_name(m, sizeof m, "migi");
  apply_tenant(t, "shared");
  wait_condition(t, "DatabaseReady", "True", 90);
  char *schema = jp("tenant", t, "{.status.database.schema}");
  char *role = jp("tenant", t, "{.status.database.role}");
  cr_assert_str_eq(schema, role, "a shared tenant's schema is named like its role");
  OK("uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
     "psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qc \"CREATE TABLE ledger(id bigint "
     "GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, seq int NOT NULL UNIQUE, v text NOT NULL, at timestamptz "
     "NOT "
     "NULL DEFAULT now()); CREATE INDEX ledger_v ON ledger (v)\"",
     t);
  struct writer *w = calloc(1, sizeof *w);
  w->state = calloc(MAX_ROWS + 2, 1);
  snprintf(w->tenant, sizeof w->tenant, "%s", t);
  snprintf(w->target_db, sizeof w->target_db, "%s", role); /* a dedicated tenant's database: tn_<id> */
  pthread_create(&w->th, NULL, writer_main, w);
  wait_count(&w->committed, 200, 60, "rows committed in the shared schema");

  double t0 = tn_test_now();
  migration_to(m, t, "{\"isolation\":\"dedicated\"}", ",\"rollbackRetention\":\"10m\"");
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "RollbackWindow", 120);
  double took = tn_test_now() - t0;
  wait_count(&w->committed_on_b, 200, 60, "rows committed in the tenant's own database");
  atomic_store(&w->stop, true);
  pthread_join(w->th, NULL);
  char *freeze = jp("tenantmigration", m, "{.status.freezeSeconds}");
  fprintf(stderr,
          "isolation migration (shared -> dedicated, same server): %.1f s to RollbackWindow; freeze %s s; "
          "writer: %d committed (%d in the new database, %d after a refusal), %d refused connects, %d "
          "uncertain\n",
          took, freeze, atomic_load(&w->committed), atomic_load(&w->committed_on_b),
          atomic_load(&w->refused_then_b), atomic_load(&w->refused), atomic_load(&w->uncertain));
  free(freeze);
  cr_assert_gt(atomic_load(&w->refused), 0, "no write was refused during the freeze");
  cr_assert_gt(atomic_load(&w->refused_then_b), 0,
               "writes refused in the freeze were never accepted after it");

  /* recorded: same region and server, the isolation changed */
  char *v =
      jp("tenantmigration", m, "{.status.target.region}/{.status.target.server}/{.status.target.isolation}");
  char want[160];
  snprintf(want, sizeof want, "%s/pg-a/dedicated", ra);
  cr_assert_str_eq(v, want);
  free(v);
  v = jp("tenant", t, "{.status.placement.region}/{.status.placement.isolation}/{.status.database.server}");
  snprintf(want, sizeof want, "%s/dedicated/pg-a", ra);
  cr_assert_str_eq(v, want);
  free(v);
  /* served from the new database: the Secret names it, status.database too */
  wait_jsonpath("tenant", t, "{.status.database.database}", role, 30);
  v = secret_field(t, "database");
  cr_assert_str_eq(v, role, "the tenant-database Secret names %s, not the tenant's database", v);
  free(v);
  wait_condition(t, "Ready", "True", 60);
  /* spec says shared, status dedicated: reported, served by the status */
  v = jp("tenant", t, "{.status.conditions[?(@.type==\"Placed\")].reason}");
  cr_assert_str_eq(v, "IsolationDrift");
  free(v);

  /* every committed row is in public.ledger of the new database; the copied rows equal the
   * frozen source's (the source schema is kept for the rollback period) */
  assert_all_committed_in(w, "TENANCY_PG_DSN", role, "public");
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT max(seq) FROM \\\"%s\\\".ledger", schema);
  char *maxseq = psql_db("TENANCY_PG_DSN", "tenants", sql);
#define ISO_SUM_SQL                                                                                          \
  "SELECT count(*) || ' ' || md5(string_agg(seq || v || at, ',' ORDER BY seq)) FROM \\\"%s\\\".ledger "      \
  "WHERE seq <= %s"
  snprintf(sql, sizeof sql, ISO_SUM_SQL, schema, maxseq);
  char *src_sum = psql_db("TENANCY_PG_DSN", "tenants", sql);
  snprintf(sql, sizeof sql, ISO_SUM_SQL, "public", maxseq);
  char *dst_sum = psql_db("TENANCY_PG_DSN", role, sql);
  cr_assert_str_eq(dst_sum, src_sum, "checksum of the rows up to the freeze: target %s, source %s", dst_sum,
                   src_sum);
  cr_assert(strncmp(src_sum, "0 ", 2) != 0, "no rows before the freeze: %s", src_sum);
  free(src_sum);
  free(dst_sum);
  free(maxseq);
  /* the index came along, on the new table */
  v = psql_db("TENANCY_PG_DSN", role,
              "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND "
              "tablename = 'ledger' AND indexname = 'ledger_v'");
  cr_assert_str_eq(v, "1", "%s", v);
  free(v);

  /* GitOps catches up: spec.isolation may become what the status shows, nothing else */
  char *out = NULL;
  int rc =
      tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"isolation\":\"hybrid\"}}'", t);
  cr_assert_neq(rc, 0, "spec.isolation hybrid was accepted: %s", out);
  cr_assert(strstr(out, "spec.isolation cannot change after Draft; use a TenantMigration with "
                        "target.isolation: hybrid; after it, spec.isolation may be set to the value "
                        "status.placement.isolation shows (dedicated)"),
            "%s", out);
  free(out);
  apply_tenant(t, "dedicated");
  v = jp("tenant", t, "{.spec.isolation}");
  cr_assert_str_eq(v, "dedicated");
  free(v);
  rc = tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"isolation\":\"shared\"}}'", t);
  cr_assert_neq(rc, 0, "spec.isolation back to shared was accepted: %s", out);
  cr_assert(strstr(out, "spec.isolation cannot change after Draft"), "%s", out);
  free(out);
  wait_jsonpath("tenant", t, "{.status.conditions[?(@.type==\"Placed\")].reason}", "Placed", 30);

  /* after the rollback period (cut short) the source schema is dropped; the role and its database stay */
  OK("kubectl patch tenantmigration %s --type=merge -p '{\"spec\":{\"rollbackRetention\":\"0s\"}}'", m);
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "Succeeded", 90);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_namespace WHERE nspname = '%s'", schema);
  v = psql_db("TENANCY_PG_DSN", "tenants", sql);
  cr_assert_str_eq(v, "0", "the source schema survived CleanUp");
  free(v);
  snprintf(sql, sizeof sql, "SELECT rolcanlogin FROM pg_roles WHERE rolname = '%s'", role);
  cr_assert_eq(psql_at("TENANCY_PG_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "t\n", "the tenant's role lost its login");
  free(out);
  /* the application still writes, with the table named as before */
  OK("uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
     "psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qc \"INSERT INTO ledger(seq, v) VALUES "
     "(%d, 'after cleanup')\"",
     t, MAX_ROWS + 1);
  /* the cutover's placement event names both isolations */
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM tenancy.outbox WHERE tenant = '%s' AND type = "
           "'dev.tenancy.tenant.placement.decided.v1' AND event->'data'->>'isolation' = 'dedicated' AND "
           "event->'data'->>'previousIsolation' = 'shared'",
           t);
  cr_assert_eq(psql_at("TENANCY_PG_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "1\n", "no placement.decided event for the isolation change");
  free(out);
  free(schema);
  free(role);
  free(w->state);
  free(w);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}

/* Validate evaluates the TenancyPolicies: a residency rule of one of the tenant's flags that does
 * not allow the target region ends the migration Failed with the policy named. */
Test(migration, policy_forbids_the_target) {
  char t[64], m[64], p[64], flag[64];
  tn_test_unique_name(t, sizeof t, "tn-migp");
  tn_test_unique_name(m, sizeof m, "migp");
  tn_test_unique_name(p, sizeof p, "migpol");
  tn_test_unique_name(flag, sizeof flag, "only-a");
  OK("printf '%%s' "
     "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":{\"name\":"
     "\"%s\"},\"spec\":{\"residency\":[{\"flag\":\"%s\",\"allowedRegions\":[\"%s\"]}]}}' | kubectl apply -f "
     "-",
     p, flag, ra);
  OK("printf '%%s' "
     "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
     "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":\"shared\",\"environments\":["
     "\"prod\"],"
     "\"residency\":{\"preferredRegion\":\"%s\",\"flags\":[\"%s\"]}}}' | kubectl apply -f -",
     t, ra, flag);
  wait_condition(t, "DatabaseReady", "True", 90);
  migration(m, t, ""); /* to region B: the tenant's own residency allows any region */
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "Failed", 60);
  char *v = jp("tenantmigration", m, "{.status.conditions[?(@.type==\"Validated\")].reason}");
  cr_assert_str_eq(v, "ValidationFailed");
  free(v);
  v = jp("tenantmigration", m, "{.status.conditions[?(@.type==\"Validated\")].message}");
  char want[256];
  snprintf(want, sizeof want, "TenancyPolicy %s: residency flag %s of tenant %s allows regions [%s], not %s",
           p, flag, t, ra, rb);
  cr_assert(strstr(v, want), "%s", v);
  free(v);
  /* nothing was made on the target, and the tenant stays */
  v = jp("tenant", t, "{.status.placement.region}");
  cr_assert_str_eq(v, ra);
  free(v);
  char *role = jp("tenant", t, "{.status.database.role}"), sql[256], *out = NULL;
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_roles WHERE rolname = '%s'", role);
  cr_assert_eq(psql_at("TENANCY_PG2_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "a refused migration provisioned the target");
  free(out);
  free(role);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false; kubectl delete tenancypolicy %s --wait=false", t,
             p);
}

/* psql as the tenant, through its tenant-database Secret once it names database db. */
static void tenant_sql(const char *t, const char *db, const char *sql) {
  OK("for i in $(seq 1 100); do d=$(kubectl -n %s-prod get secret tenant-database -o "
     "jsonpath='{.data.database}' | base64 -d); [ \"$d\" = '%s' ] && break; sleep 0.3; done; "
     "uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
     "psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -v ON_ERROR_STOP=1 -qc \"%s\"",
     t, db, t, sql);
}

/* The rollback of an isolation change on one server: the rows written in the tenant's own database
 * go back to its schema in the shared database (public -> tn_<id>), the tenant is served from the
 * shared database again, and its own database is dropped while its role keeps its login. */
Test(migration, isolation_change_rolled_back_on_the_same_server) {
  char t[64], m[64];
  tn_test_unique_name(t, sizeof t, "tn-migr");
  tn_test_unique_name(m, sizeof m, "migr");
  apply_tenant(t, "shared");
  wait_condition(t, "DatabaseReady", "True", 90);
  char *role = jp("tenant", t, "{.status.database.role}");
  tenant_sql(t, "tenants",
             "CREATE TABLE items(id serial PRIMARY KEY, name text NOT NULL UNIQUE); INSERT INTO items(name) "
             "SELECT 'item ' || g FROM generate_series(1, 300) g");
  migration_to(m, t, "{\"isolation\":\"dedicated\"}", ",\"rollbackRetention\":\"10m\"");
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "RollbackWindow", 120);
  /* written in the new database, found without a schema name (public) */
  tenant_sql(t, role, "INSERT INTO items(name) VALUES ('written in the own database')");
  OK("kubectl patch tenantmigration %s --type=merge -p '{\"spec\":{\"rollback\":true}}'", m);
  wait_jsonpath("tenantmigration", m, "{.status.phase}", "RolledBack", 90);
  char *v = jp("tenant", t, "{.status.placement.isolation}/{.status.database.server}");
  cr_assert_str_eq(v, "shared/pg-a");
  free(v);
  wait_jsonpath("tenant", t, "{.status.database.database}", "tenants", 30);
  wait_condition(t, "DatabaseReady", "True", 60);
  v = jp("tenant", t, "{.status.conditions[?(@.type==\"Placed\")].reason}");
  cr_assert_str_eq(v, "Placed", "spec and status agree again");
  free(v);
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT count(*) || ' ' || max(id) || ' ' || bool_or(name = 'written in the own database') FROM "
           "\\\"%s\\\".items",
           role);
  v = psql_db("TENANCY_PG_DSN", "tenants", sql);
  cr_assert_str_eq(v, "301 301 true", "the rows of the own database did not come back: %s", v);
  free(v);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_database WHERE datname = '%s'", role);
  char *out = NULL;
  cr_assert_eq(psql_at("TENANCY_PG_DSN", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "the tenant's own database survived the rollback");
  free(out);
  /* served from the shared database again: its login works there, the serial goes on */
  tenant_sql(t, "tenants", "INSERT INTO items(name) VALUES ('after the rollback')");
  free(role);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=false", t);
}
