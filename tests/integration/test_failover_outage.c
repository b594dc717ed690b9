/* test_failover_outage.c - region failover when things really break (issue 16,
 * docs/failover.md), on three real PostgreSQL servers:
 *
 *  - warm, the primary server really down (PG3 stopped with `pg_ctl stop -m immediate` while a
 *    writer commits to a shared and a dedicated tenant): the failover does not hang on the dead
 *    primary, both tenants are Ready in the standby; RTO and RPO measured and printed (the RPO
 *    is the replication lag at the crash: reported, not bounded). Then the old primary comes
 *    back: the tenants' roles there are made NOLOGIN (their old credentials cannot log in), the
 *    publication and replication slot of the copy are dropped, the data there is kept;
 *  - the operator SIGKILLed in the middle of a failover (test hook
 *    TENANCY_TEST_FAILOVER_CRASH_AFTER_SWITCHED=1, after one of two tenants switched): the next
 *    operator finishes it, no tenant switched twice nor lost, no row copied twice (a table without
 *    a key is the one an initial copy would duplicate);
 *  - cold, the primary down, restored from a real snapshot (200,000 rows): RTO printed, < 10 min.
 *
 * Regions: S (server PG2), the standby of W (PG3, warm), K (PG1, warm) and C (PG3, cold). Each
 * test runs its own operator. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "failover/plan.h"
#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;
static char rs[64], rw[64], rk[64], rc[64], ca_copy[128];

static void region_apply(const char *name, const char *server, const char *dsn_var, const char *port_var,
                         const char *failover_json) {
  char *out = NULL;
  int rc_ = tn_test_sh(
      &out,
      "dsn=\"$%s\" && kubectl -n tenancy-system create secret generic pg-admin-%s "
      "--from-literal=uri=\"${dsn%%%%sslrootcert=*}sslrootcert=%s\" --dry-run=client -o yaml | kubectl apply "
      "-f - >/dev/null && kubectl -n tenancy-system create secret generic pg-ca-%s "
      "--from-file=ca.crt=\"$TENANCY_CA_FILE\" --dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\",\"dedicated\"],%s"
      "\"databaseServers\":[{\"name\":\"%s\",\"host\":\"127.0.0.1\",\"port\":'\"$%s\"',\"sslMode\":\"verify-"
      "full\",\"caSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-ca-%s\"},\"serves\":["
      "\"shared\","
      "\"dedicated\"],\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-admin-%s\"}}]}}' | "
      "kubectl apply -f -",
      dsn_var, name, ca_copy, name, name, failover_json, server, port_var, name, name);
  cr_assert_eq(rc_, 0, "%s", out);
  free(out);
}

/* pg_ctl on PG3 (the primary of W and C): "stop" is an immediate stop (a crash: no checkpoint, no
 * goodbye to clients or the standby's subscription). */
static int pg3_ctl(const char *action) {
  char *out = NULL;
  int rc_ =
      tn_test_sh(&out,
                 "pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); "
                 "if [ \"$(id -u)\" = 0 ]; then as='runuser -u postgres --'; else as=''; fi; "
                 "$as \"$pgbin/pg_ctl\" -D \"$TENANCY_PG3_DATA\" -l \"$TENANCY_PG3_DATA/../postgres.log\" "
                 "-m immediate -w -t 60 %s",
                 action);
  if (rc_)
    cr_log_error("pg_ctl %s (PG3): %s", action, out);
  free(out);
  return rc_;
}

static void pg3_ensure_up(void) {
  if (pg3_ctl("status") != 0)
    pg3_ctl("start");
}

static void start(void) {
  tn_test_install_api();
  tn_test_unique_name(rs, sizeof rs, "foo-s");
  tn_test_unique_name(rw, sizeof rw, "foo-w");
  tn_test_unique_name(rk, sizeof rk, "foo-k");
  tn_test_unique_name(rc, sizeof rc, "foo-c");
  snprintf(ca_copy, sizeof ca_copy, "/tmp/tnfoo-ca-%d.crt", (int)getpid());
  char *out = NULL;
  int rc_ =
      tn_test_sh(&out,
                 "cp \"$TENANCY_CA_FILE\" %s && chmod 0644 %s && kubectl create namespace tenancy-system "
                 "--dry-run=client -o yaml | kubectl apply -f - >/dev/null",
                 ca_copy, ca_copy);
  cr_assert_eq(rc_, 0, "%s", out);
  free(out);
  char fo[256];
  region_apply(rs, "pg-s", "TENANCY_PG2_DSN", "TENANCY_PG2_PORT", "");
  snprintf(fo, sizeof fo, "\"failover\":{\"standbyRegion\":\"%s\",\"mode\":\"warm\"},", rs);
  region_apply(rw, "pg-w", "TENANCY_PG3_DSN", "TENANCY_PG3_PORT", fo);
  region_apply(rk, "pg-k", "TENANCY_PG_DSN", "TENANCY_PG_PORT", fo);
  snprintf(fo, sizeof fo,
           "\"failover\":{\"standbyRegion\":\"%s\",\"mode\":\"cold\",\"snapshotIntervalSeconds\":10},", rs);
  region_apply(rc, "pg-c", "TENANCY_PG3_DSN", "TENANCY_PG3_PORT", fo);
}

static void stop(void) {
  if (op.pid > 0)
    tn_test_operator_stop(&op, SIGTERM, 40);
  pg3_ensure_up();
  tn_test_sh(NULL, "kubectl delete region %s %s %s %s --wait=false; rm -f %s", rs, rw, rk, rc, ca_copy);
}

TestSuite(failover_outage, .init = start, .fini = stop, .timeout = 300);

static void op_start(const char *crash_after) {
  if (crash_after)
    setenv("TENANCY_TEST_FAILOVER_CRASH_AFTER_SWITCHED", crash_after, 1);
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  unsetenv("TENANCY_TEST_FAILOVER_CRASH_AFTER_SWITCHED");
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void apply_tenant(const char *t, const char *isolation, const char *region) {
  char *out = NULL;
  int rc_ = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":\"%s\",\"environments\":[\"prod\"],"
      "\"residency\":{\"allowedRegions\":[\"%s\",\"%s\"],\"preferredRegion\":\"%s\"}}}' | kubectl apply -f -",
      t, isolation, region, rs, region);
  cr_assert_eq(rc_, 0, "%s", out);
  free(out);
}

static void wait_sh(double timeout, const char *what, const char *cmd) {
  char *out = NULL;
  int rc_ = tn_test_sh_until(timeout, &out, "%s", cmd);
  if (rc_) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("%s: timed out (%s): %s", what, cmd, out ? out : "");
  }
  free(out);
}

/* Ready in region, with its tenant-database Secret on port port_var's server. */
static void wait_ready_in(const char *t, const char *region, const char *port_var, double timeout) {
  char cmd[1024];
  snprintf(
      cmd, sizeof cmd,
      "test \"$(kubectl get tenant %s -o "
      "jsonpath='{.status.placement.region}/{.status.conditions[?(@.type==\"Ready\")].status}')\" = %s/True "
      "&& test \"$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.port}' | base64 -d)\" "
      "= \"$%s\"",
      t, region, t, port_var);
  wait_sh(timeout, "tenant Ready", cmd);
}

static char *tenant_uri(const char *t) {
  return tn_test_output("kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d",
                        t);
}

static int psql_uri(const char *uri, const char *sql, char **out) {
  return tn_test_sh(
      out,
      "PGCONNECT_TIMEOUT=5 psql \"%s&sslrootcert=$TENANCY_CA_FILE\" -X -v ON_ERROR_STOP=1 -qtAc "
      "\"%s\"",
      uri, sql);
}

static char *psql_as(const char *t, const char *sql) {
  char *uri = tenant_uri(t), *out = NULL;
  int rc_ = psql_uri(uri, sql, &out);
  free(uri);
  cr_assert_eq(rc_, 0, "tenant %s: %s: %s", t, sql, out);
  size_t n = strlen(out);
  while (n && out[n - 1] == '\n')
    out[--n] = '\0';
  return out;
}

static char *jsonpath(const char *kind, const char *name, const char *path) {
  return tn_test_output("kubectl get %s %s -o jsonpath='%s'", kind, name, path);
}

/* A background writer: one committed INSERT after another into table w through uri, each
 * acknowledged row's "id|epoch of its commit time" appended to file. Returns its pid. */
static pid_t writer_start(const char *uri, const char *file) {
  char *pid = tn_test_output(
      "sh -c 'while :; do PGCONNECT_TIMEOUT=2 psql \"$0\" -X -qtAc \"INSERT INTO w DEFAULT VALUES RETURNING "
      "id, extract(epoch FROM at)\" >>\"$1\" 2>/dev/null || sleep 0.1; sleep 0.02; done' "
      "\"%s&sslrootcert=$TENANCY_CA_FILE\" %s </dev/null >/dev/null 2>&1 & echo $!",
      uri, file);
  pid_t p = (pid_t)atoi(pid);
  free(pid);
  cr_assert_gt(p, 0);
  return p;
}

/* RPO of one tenant: the newest row acknowledged by the primary (writer file) against the newest
 * row on the promoted copy; *lost: the acknowledged rows missing there. */
static double rpo_of(const char *t, const char *file, long *lost, long *acked) {
  char *last = tn_test_output("tail -n 1 %s", file);
  char *n = tn_test_output("wc -l < %s", file);
  *acked = atol(n);
  free(n);
  const char *bar = strchr(last, '|');
  double last_at = bar ? atof(bar + 1) : 0;
  free(last);
  char *kept =
      psql_as(t, "SELECT coalesce(max(id), 0) || '|' || coalesce(extract(epoch FROM max(at)), 0) FROM w");
  long kept_id = atol(kept);
  double kept_at = atof(strchr(kept, '|') + 1);
  free(kept);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "awk -F'|' '$1 > %ld' %s | wc -l", kept_id, file);
  char *l = tn_test_output("%s", cmd);
  *lost = atol(l);
  free(l);
  return last_at > kept_at ? last_at - kept_at : 0.0;
}

/* 1 and 2: the primary really down during a warm failover, then back. */
Test(failover_outage, warm_primary_down_then_back) {
  op_start(NULL);
  char ts[64], td[64];
  tn_test_unique_name(ts, sizeof ts, "foo-sh");
  tn_test_unique_name(td, sizeof td, "foo-de");
  apply_tenant(ts, "shared", rw);
  apply_tenant(td, "dedicated", rw);
  wait_ready_in(ts, rw, "TENANCY_PG3_PORT", 120);
  wait_ready_in(td, rw, "TENANCY_PG3_PORT", 120);
  const char *ddl =
      "CREATE TABLE w(id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); "
      "INSERT INTO w SELECT FROM generate_series(1, 100); CREATE TABLE k(v int); INSERT INTO k "
      "SELECT generate_series(1, 50)";
  free(psql_as(ts, ddl));
  free(psql_as(td, ddl));
  char cmd[1536];
  snprintf(cmd, sizeof cmd,
           "test \"$(kubectl get region %s -o "
           "jsonpath='{.status.failover.replicasReady}/{.status.failover.replicasTotal}')\" = 2/2",
           rw);
  wait_sh(90, "replicas ready", cmd);
  char *uri_s = tenant_uri(ts), *uri_d = tenant_uri(td);
  char *db_d = jsonpath("tenant", td, "{.status.database.database}");
  char *role_s = jsonpath("tenant", ts, "{.status.database.role}"); /* = its schema */
  char *role_d = jsonpath("tenant", td, "{.status.database.role}");
  char slot_s[64], slot_d[64];
  tn_failover_object_name(rw, "pg-w", "tenants", rs, slot_s);
  tn_failover_object_name(rw, "pg-w", db_d, rs, slot_d);
  /* the copies stream from PG3 through these slots right now */
  snprintf(cmd, sizeof cmd,
           "test \"$(psql \"$TENANCY_PG3_DSN\" -qtAc \"SELECT count(*) FROM pg_replication_slots WHERE "
           "slot_name IN "
           "('%s', '%s') AND active\")\" = 2",
           slot_s, slot_d);
  wait_sh(30, "both copies streaming from the primary", cmd);

  char file_s[128], file_d[128];
  snprintf(file_s, sizeof file_s, "/tmp/tnfoo-w-%d-s.log", (int)getpid());
  snprintf(file_d, sizeof file_d, "/tmp/tnfoo-w-%d-d.log", (int)getpid());
  tn_test_sh(NULL, "rm -f %s %s", file_s, file_d);
  pid_t ws = writer_start(uri_s, file_s), wd = writer_start(uri_d, file_d);
  /* a few seconds of acknowledged writes */
  snprintf(cmd, sizeof cmd,
           "test $(cat %s 2>/dev/null | wc -l) -ge 20 && test $(cat %s 2>/dev/null | wc -l) -ge 20", file_s,
           file_d);
  wait_sh(60, "the writers commit", cmd);

  /* The primary crashes under the writers, then the region is failed over. */
  double t_down = tn_test_now();
  cr_assert_eq(pg3_ctl("stop"), 0, "could not stop PG3");
  char *out = NULL;
  int rc_ =
      tn_test_sh(&out, "'%s' failover %s --wait --timeout 120", tn_test_env("TENANCY_TENANTCTL_BIN"), rw);
  double t_fo = tn_test_now() - t_down;
  kill(ws, SIGTERM);
  kill(wd, SIGTERM);
  if (rc_)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc_, 0, "tenantctl failover with the primary down: %s", out);
  cr_assert(strstr(out, "2 tenant(s) moved") && strstr(out, "NOT confirmed caught up"), "%s", out);
  free(out);
  cr_assert_lt(t_fo, 60.0, "the failover took %.1f s with the primary down (hung on it?)", t_fo);
  wait_ready_in(ts, rs, "TENANCY_PG2_PORT", 90);
  double rto_s = tn_test_now() - t_down;
  wait_ready_in(td, rs, "TENANCY_PG2_PORT", 90);
  double rto_d = tn_test_now() - t_down;
  long lost_s, lost_d, acked_s, acked_d;
  double rpo_s = rpo_of(ts, file_s, &lost_s, &acked_s), rpo_d = rpo_of(td, file_d, &lost_d, &acked_d);
  printf(
      "warm failover, primary down (pg_ctl stop -m immediate under a writer): failover pass done %.1f s "
      "after "
      "the crash; RTO (crash -> Ready in the standby, Secret switched) shared %.1f s, dedicated %.1f s; RPO "
      "shared %.2f s (%ld of %ld acknowledged rows lost), dedicated %.2f s (%ld of %ld lost)\n",
      t_fo, rto_s, rto_d, rpo_s, lost_s, acked_s, rpo_d, lost_d, acked_d);
  fflush(stdout);
  cr_assert_lt(rto_s, 60.0);
  cr_assert_lt(rto_d, 60.0);
  /* every row copied before the crash is there, and the tenants write in the standby */
  char *n = psql_as(ts, "SELECT (SELECT count(*) FROM k) || '/' || (SELECT count(*) FROM w WHERE id <= 100)");
  cr_assert_str_eq(n, "50/100");
  free(n);
  n = psql_as(td, "SELECT (SELECT count(*) FROM k) || '/' || (SELECT count(*) FROM w WHERE id <= 100)");
  cr_assert_str_eq(n, "50/100");
  free(n);
  /* (the CTE's outer query does not see the new row: max is the copied rows') */
  const char *ins =
      "WITH i AS (INSERT INTO w DEFAULT VALUES RETURNING id) SELECT id > (SELECT max(id) FROM w) FROM i";
  char *m = psql_as(ts, ins);
  cr_assert_str_eq(m, "t", "the sequence was not set past the copied rows");
  free(m);
  m = psql_as(td, ins);
  cr_assert_str_eq(m, "t", "the sequence was not set past the copied rows");
  free(m);
  char *last = jsonpath("region", rw,
                        "{.status.failover.phase}/{.status.failover.lastFailover.tenantsMoved}/"
                        "{.status.failover.lastFailover.catchUp}");
  cr_assert_str_eq(last, "FailedOver/2/false");
  free(last);

  /* The old primary comes back: no split brain, no slot retaining WAL. */
  cr_assert_eq(pg3_ctl("start"), 0, "could not start PG3");
  double t_up = tn_test_now();
  snprintf(
      cmd, sizeof cmd,
      "test \"$(psql \"$TENANCY_PG3_DSN\" -qtAc \"SELECT (SELECT count(*) FROM pg_roles WHERE rolname IN "
      "('%s', '%s') AND rolcanlogin) || '/' || (SELECT count(*) FROM pg_replication_slots WHERE slot_name "
      "IN ('%s', '%s'))\")\" = 0/0",
      role_s, role_d, slot_s, slot_d);
  wait_sh(60, "the old primary fenced and its slots dropped", cmd);
  printf("old primary back: its tenant roles NOLOGIN and the copies' slots dropped %.1f s after it started\n",
         tn_test_now() - t_up);
  /* the publications too, in each source database */
  n = tn_test_output(
      "psql \"${TENANCY_PG3_DSN%%%%/postgres?*}/tenants?${TENANCY_PG3_DSN#*\\?}\" -qtAc \"SELECT "
      "count(*) FROM pg_publication WHERE pubname = '%s'\"",
      slot_s);
  cr_assert_str_eq(n, "0", "the shared database's publication is left on the old primary");
  free(n);
  n = tn_test_output("psql \"${TENANCY_PG3_DSN%%%%/postgres?*}/%s?${TENANCY_PG3_DSN#*\\?}\" -qtAc \"SELECT "
                     "count(*) FROM pg_publication WHERE pubname = '%s'\"",
                     db_d, slot_d);
  cr_assert_str_eq(n, "0", "the dedicated database's publication is left on the old primary");
  free(n);
  /* the tenants' old credentials no longer open a session there */
  rc_ = psql_uri(uri_s, "SELECT 1", &out);
  cr_assert_neq(rc_, 0, "the shared tenant still logs in on the old primary: %s", out);
  cr_assert(strstr(out, "not permitted to log in"), "%s", out);
  free(out);
  rc_ = psql_uri(uri_d, "SELECT 1", &out);
  cr_assert_neq(rc_, 0, "the dedicated tenant still logs in on the old primary: %s", out);
  cr_assert(strstr(out, "not permitted to log in"), "%s", out);
  free(out);
  /* its data is kept there (the writes the standby never received live only there) */
  n = tn_test_output(
      "psql \"${TENANCY_PG3_DSN%%%%/postgres?*}/tenants?${TENANCY_PG3_DSN#*\\?}\" -qtAc \"SELECT "
      "count(*) FROM %s.w\"",
      role_s);
  cr_assert_geq(atol(n), 100 + acked_s, "rows on the old primary: %s (acknowledged: %ld)", n, acked_s);
  free(n);
  snprintf(
      cmd, sizeof cmd,
      "kubectl -n default get events.events.k8s.io --field-selector reason=FailoverCleanup,regarding.name=%s "
      "-o name | grep -q .",
      rw);
  wait_sh(20, "the FailoverCleanup Event", cmd);
  tn_test_sh(NULL, "rm -f %s %s", file_s, file_d);
  free(uri_s);
  free(uri_d);
  free(db_d);
  free(role_s);
  free(role_d);
  tn_test_operator_stop(&op, SIGTERM, 40);
}

/* 3: SIGKILL of the operator after one of two tenants switched. */
Test(failover_outage, operator_killed_mid_failover) {
  op_start("1");
  char a[64], b[64];
  tn_test_unique_name(a, sizeof a, "foo-ka");
  tn_test_unique_name(b, sizeof b, "foo-kb");
  apply_tenant(a, "shared", rk);
  apply_tenant(b, "shared", rk);
  wait_ready_in(a, rk, "TENANCY_PG_PORT", 120);
  wait_ready_in(b, rk, "TENANCY_PG_PORT", 120);
  const char *ddl =
      "CREATE TABLE w(id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); "
      "INSERT INTO w SELECT FROM generate_series(1, 100); CREATE TABLE k(v int); INSERT INTO k "
      "SELECT generate_series(1, 30)";
  free(psql_as(a, ddl));
  free(psql_as(b, ddl));
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "test \"$(kubectl get region %s -o "
           "jsonpath='{.status.failover.replicasReady}/{.status.failover.replicasTotal}')\" = 2/2",
           rk);
  wait_sh(90, "replicas ready", cmd);
  char *out = NULL;
  int rc_ = tn_test_sh(&out, "'%s' failover %s", tn_test_env("TENANCY_TENANTCTL_BIN"), rk);
  cr_assert_eq(rc_, 0, "%s", out);
  free(out);
  /* the hook kills the operator after the first switch */
  int st = 0;
  pid_t w = 0;
  for (double end = tn_test_now() + 60; (w = waitpid(op.pid, &st, WNOHANG)) == 0 && tn_test_now() < end;)
    usleep(50 * 1000);
  if (w != op.pid) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the test hook did not kill the operator within 60 s");
  }
  op.pid = 0;
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the operator exited with status %d", st);
  char *pa = jsonpath("tenant", a, "{.status.placement.region}"),
       *pb = jsonpath("tenant", b, "{.status.placement.region}");
  cr_assert((strcmp(pa, rs) == 0) != (strcmp(pb, rs) == 0),
            "not exactly one tenant switched before the kill: %s %s", pa, pb);
  free(pa);
  free(pb);
  /* the next operator finishes the failover */
  op_start(NULL);
  wait_ready_in(a, rs, "TENANCY_PG2_PORT", 90);
  wait_ready_in(b, rs, "TENANCY_PG2_PORT", 90);
  snprintf(cmd, sizeof cmd,
           "test \"$(kubectl get region %s -o jsonpath='{.status.failover.phase}')\" = FailedOver", rk);
  wait_sh(30, "region FailedOver", cmd);
  const char *ts[2] = {a, b};
  for (int i = 0; i < 2; i++) {
    /* every row once: a second initial copy would add the keyless table's rows again */
    char *n = psql_as(ts[i], "SELECT (SELECT count(*) FROM w) || '/' || (SELECT count(*) FROM k)");
    cr_assert_str_eq(n, "100/30", "tenant %s's rows in the standby", ts[i]);
    free(n);
    n = psql_as(ts[i], "WITH i AS (INSERT INTO w DEFAULT VALUES RETURNING id) SELECT id FROM i");
    cr_assert_str_eq(n, "101");
    free(n);
    /* switched once: one succeeded audit row (and none failed) */
    snprintf(
        cmd, sizeof cmd,
        "test \"$(psql \"$TENANCY_PG_DSN\" -qtAc \"SELECT count(*) FILTER (WHERE outcome = 'succeeded') || "
        "'/' || count(*) FILTER (WHERE outcome = 'failed') FROM tenancy.audit_events WHERE action = "
        "'failover' AND target = 'tenant/%s'\")\" = 1/0",
        ts[i]);
    wait_sh(20, "one failover audit row per tenant", cmd);
  }
  /* nothing of the copy is left on the primary */
  char obj[64];
  tn_failover_object_name(rk, "pg-k", "tenants", rs, obj);
  char *n = tn_test_output(
      "psql \"$TENANCY_PG_DSN\" -qtAc \"SELECT count(*) FROM pg_replication_slots WHERE slot_name "
      "= '%s'\"",
      obj);
  cr_assert_str_eq(n, "0");
  free(n);
  tn_test_operator_stop(&op, SIGTERM, 40);
}

/* 4: cold, the primary down, a real snapshot. */
Test(failover_outage, cold_primary_down_real_snapshot) {
  op_start(NULL);
  char t[64];
  tn_test_unique_name(t, sizeof t, "foo-cold");
  apply_tenant(t, "shared", rc);
  wait_ready_in(t, rc, "TENANCY_PG3_PORT", 120);
  free(psql_as(t,
               "CREATE TABLE items(id bigserial PRIMARY KEY, v text NOT NULL); INSERT INTO items(v) SELECT "
               "md5(g::text) || md5((g + 1)::text) FROM generate_series(1, 200000) g"));
  char *size = psql_as(t, "SELECT pg_size_pretty(pg_total_relation_size('items'))");
  char *now = tn_test_output("date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ");
  char cmd[1024];
  snprintf(
      cmd, sizeof cmd,
      "s=$(kubectl get region %s -o jsonpath='{.status.failover.lastSnapshotTime}') && test -n \"$s\" && "
      "test \"$s\" \\> %s",
      rc, now);
  wait_sh(120, "a snapshot after the writes", cmd);
  free(now);
  char *uri = tenant_uri(t);
  double t_down = tn_test_now();
  cr_assert_eq(pg3_ctl("stop"), 0, "could not stop PG3");
  char *out = NULL;
  int rc_ =
      tn_test_sh(&out, "'%s' failover %s --wait --timeout 120", tn_test_env("TENANCY_TENANTCTL_BIN"), rc);
  if (rc_)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc_, 0, "%s", out);
  cr_assert(strstr(out, "1 tenant(s) moved"), "%s", out);
  free(out);
  wait_ready_in(t, rs, "TENANCY_PG2_PORT", 120);
  double rto = tn_test_now() - t_down;
  printf("cold failover, primary down: RTO %.1f s (target < 600 s), snapshot of 200000 rows (%s)\n", rto,
         size);
  fflush(stdout);
  free(size);
  cr_assert_lt(rto, 600.0);
  char *n = psql_as(t, "SELECT count(*) FROM items");
  cr_assert_str_eq(n, "200000");
  free(n);
  n = psql_as(t, "WITH i AS (INSERT INTO items(v) VALUES ('after') RETURNING id) SELECT id FROM i");
  cr_assert_str_eq(n, "200001");
  free(n);
  /* the old primary back: the role cannot log in there */
  cr_assert_eq(pg3_ctl("start"), 0, "could not start PG3");
  char *role = jsonpath("tenant", t, "{.status.database.role}");
  snprintf(cmd, sizeof cmd,
           "test \"$(psql \"$TENANCY_PG3_DSN\" -qtAc \"SELECT rolcanlogin FROM pg_roles WHERE rolname = "
           "'%s'\")\" = f",
           role);
  wait_sh(60, "the old primary's role fenced", cmd);
  rc_ = psql_uri(uri, "SELECT 1", &out);
  cr_assert_neq(rc_, 0, "the tenant still logs in on the old primary: %s", out);
  free(out);
  free(role);
  free(uri);
  tn_test_operator_stop(&op, SIGTERM, 40);
}
