/* test_webhooks_privilege.c - least privilege on the webhook delivery tables (issue 14), against
 * the stack's real PostgreSQL, with the owner/writer split of the audit trail:
 * - `tenantctl audit init --writer-role` (tn_audit_init) as the owner creates the outbox and the
 *   webhook_* tables and functions; the writer (the operator's role) can read them but cannot
 *   DELETE, UPDATE, INSERT or TRUNCATE any of them: it cannot drop a dead letter, move a cursor
 *   back or forward by hand, or bump the epoch;
 * - what the engine needs works as the writer, through SECURITY DEFINER functions only: cursors
 *   move forward (never back), a dead letter is a copy of its outbox row (no forged ones);
 * - the documented tools work with the writer's DSN: `tenantctl events dlq list|requeue|purge`
 *   and `events replay`, each leaving its started and succeeded audit rows, the succeeded one
 *   written by the database in the transaction of the change.
 * Before this change the engine created these tables as the operator's role, which owned them
 * and so could delete dead letters and rewrite cursors at will. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/outbox.h"
#include "tenancy/cloudevents.h"
#include "tn_pg_test.h"
#include "tn_test.h"
#include "webhooks/delivery.h"

static char schema[64], role[96], dsn_file[160];

static const char *dsn(void) { return tn_test_env("TENANCY_PG_DSN"); }

/* The stack's DSN as the writer (keyword/value pairs). malloc'd. */
static char *writer_dsn(void) { return tn_test_pg_dsn(role, "writer-pw-456", NULL, NULL); }

static void setup(void) {
  snprintf(schema, sizeof schema, "tn_whpriv_%ld", (long)getpid());
  snprintf(role, sizeof role, "%s_writer", schema);
  PGconn *c = tn_test_pg_connect(NULL);
  tn_test_pg_role_create(c, role, "writer-pw-456");
  PQfinish(c);
}

static void teardown(void) {
  PGconn *c = PQconnectdb(dsn());
  PQclear(PQexec(c, "SET client_min_messages = warning"));
  PQclear(tn_test_pg_exec(c, "DROP SCHEMA IF EXISTS %s CASCADE", schema));
  tn_test_pg_role_drop(c, role);
  PQfinish(c);
  if (dsn_file[0])
    unlink(dsn_file);
}

TestSuite(webhooks_privilege, .init = setup, .fini = teardown, .timeout = 180);

/* One event of tenant acme through the writer's audit trail; returns its outbox seq. */
static long long append_event(struct tn_audit *w, PGconn *wc, const char *cid) {
  json_t *tenant = json_pack("{s:{s:s,s:s}}", "metadata", "name", "acme", "uid", "uid-acme");
  struct tn_outbox_event ob = {0};
  struct tn_error err = {0};
  cr_assert_eq(
      tn_outbox_event_init(&ob, "itest", tenant, TN_CE_UPDATED, cid, TN_AUDIT_OPERATOR_ACTOR, NULL, &err), 0,
      "%s", err.message);
  json_decref(tenant);
  struct tn_audit_event ev = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                              .action = "spec.update",
                              .target = "tenant/acme",
                              .correlation_id = cid,
                              .outcome = TN_AUDIT_SUCCEEDED,
                              .outbox = &ob};
  int rc = tn_audit_append(w, &ev, NULL, &err);
  tn_outbox_event_cleanup(&ob);
  cr_assert_eq(rc, 0, "%s", err.message);
  char *s =
      tn_test_pg_value(wc, "SELECT seq FROM %s.outbox WHERE event->>'correlationid' = '%s'", schema, cid);
  long long seq = atoll(s);
  free(s);
  return seq;
}

static int tenantctl(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tenantctl(char **out, const char *fmt, ...) {
  char *args = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&args, fmt, ap);
  va_end(ap);
  cr_assert_geq(n, 0);
  int rc =
      tn_test_sh(out, "env -u TENANCY_PG_DSN '%s' %s --schema %s --pg-dsn-file '%s' --actor itest:alice 2>&1",
                 tn_test_env("TENANCY_TENANTCTL_BIN"), args, schema, dsn_file);
  free(args);
  return rc;
}

Test(webhooks_privilege, the_operator_role_cannot_tamper_but_the_engine_and_the_tools_work) {
  /* The owner (the stack's superuser) initializes, granting the writer. */
  struct tn_audit *owner = NULL, *w = NULL;
  struct tn_error err = {0};
  struct tn_audit_options oo = {.schema = schema, .no_create = true};
  cr_assert_eq(tn_audit_open(dsn(), &oo, &owner, &err), 0, "%s", err.message);
  cr_assert_eq(tn_audit_init(owner, role, &err), 0, "%s", err.message);
  char *wd = writer_dsn();
  struct tn_audit_options wo = {.schema = schema, .no_create = true};
  cr_assert_eq(tn_audit_open(wd, &wo, &w, &err), 0, "%s", err.message);
  PGconn *wc = tn_test_pg_connect(wd);
  snprintf(dsn_file, sizeof dsn_file, "%s/whpriv-dsn-%ld", tn_test_env("TENANCY_TEST_LOG_DIR"),
           (long)getpid());
  FILE *f = fopen(dsn_file, "w");
  cr_assert_not_null(f);
  fputs(wd, f);
  fclose(f);
  free(wd);

  /* The engine's schema check passes for the writer (the owner made it) without any DDL. */
  cr_assert_eq(tn_delivery_init_schema(wc, schema, &err), 0, "%s", err.message);
  long long s1 = append_event(w, wc, "00000000-0000-4000-8000-000000000001");
  long long s2 = append_event(w, wc, "00000000-0000-4000-8000-000000000002");

  /* What the engine does, through its functions: a dead letter copied from the outbox row... */
  free(
      tn_test_pg_value(wc, "SELECT %s.webhook_dead_letter('ledger', %lld, 12, 503, 'HTTP 503')", schema, s1));
  char *v = tn_test_pg_value(
      wc, "SELECT tenant || '/' || tenant_seq || '/' || attempts FROM %s.webhook_dead_letters", schema);
  cr_assert_str_eq(v, "acme/1/12");
  free(v);
  /* ...never a forged one... */
  char *m = tn_test_pg_error(wc, "SELECT %s.webhook_dead_letter('ledger', 999999, 1, 500, 'x')", schema);
  cr_assert(strstr(m, "no outbox event"), "%s", m);
  free(m);
  /* ...and cursors that only move forward. */
  free(tn_test_pg_value(
      wc, "SELECT %s.webhook_advance('warehouse', '[{\"t\":\"acme\",\"ts\":2,\"s\":%lld}]')", schema, s2));
  free(tn_test_pg_value(
      wc, "SELECT %s.webhook_advance('warehouse', '[{\"t\":\"acme\",\"ts\":1,\"s\":%lld}]')", schema, s1));
  v = tn_test_pg_value(wc, "SELECT tenant_seq FROM %s.webhook_cursors WHERE subscription = 'warehouse'",
                       schema);
  cr_assert_str_eq(v, "2", "a cursor moved back through webhook_advance");
  free(v);

  /* The attacks: every direct change to the history of deliveries is refused. */
  static const char *const stmts[] = {
      "DELETE FROM @.webhook_dead_letters",
      "UPDATE @.webhook_dead_letters SET attempts = 0",
      "INSERT INTO @.webhook_dead_letters SELECT * FROM @.webhook_dead_letters",
      "TRUNCATE @.webhook_dead_letters",
      "UPDATE @.webhook_cursors SET tenant_seq = 99",
      "DELETE FROM @.webhook_cursors",
      "INSERT INTO @.webhook_cursors (subscription, tenant, tenant_seq, seq) VALUES ('x', 'acme', 9, 9)",
      "UPDATE @.webhook_state SET epoch = epoch + 1",
      "INSERT INTO @.webhook_state (subscription) VALUES ('x')",
      "DELETE FROM @.outbox",
      "UPDATE @.outbox SET type = 'x'",
  };
  for (size_t i = 0; i < sizeof stmts / sizeof *stmts; i++) {
    char q[400], *o = q;
    for (const char *p = stmts[i]; *p; p++)
      o += *p == '@' ? sprintf(o, "%s", schema) : sprintf(o, "%c", *p);
    m = tn_test_pg_error(wc, "%s", q);
    cr_assert(strstr(m, "permission denied"), "%s: %s", q, m);
    free(m);
  }
  /* Nor can it call the internals of the functions directly. */
  m = tn_test_pg_error(wc, "SELECT %s.webhook_bump_epoch('ledger')", schema);
  cr_assert(strstr(m, "permission denied"), "%s", m);
  free(m);
  m = tn_test_pg_error(wc, "SELECT %s.webhook_audit('x', 'webhook.dlq.purge', 'ledger', NULL, '{}')", schema);
  cr_assert(strstr(m, "permission denied"), "%s", m);
  free(m);

  /* The documented tools, with the writer's DSN. */
  char *out = NULL;
  int rc = tenantctl(&out, "events dlq list --subscription ledger -o json");
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "\"tenantSequence\": 1") || strstr(out, "\"tenantSequence\":1"), "%s", out);
  free(out);
  rc = tenantctl(&out, "events dlq requeue --subscription ledger --seq %lld", s1);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "1 dead letter(s) of ledger requeued"), "%s", out);
  free(out);
  free(
      tn_test_pg_value(wc, "SELECT %s.webhook_dead_letter('ledger', %lld, 12, 503, 'HTTP 503')", schema, s1));
  rc = tenantctl(&out, "events dlq purge --subscription ledger --all");
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "1 dead letter(s) of ledger purged"), "%s", out);
  free(out);
  v = tn_test_pg_value(
      wc,
      "SELECT count(*) || ':' || (SELECT tenant_seq FROM %s.webhook_cursors WHERE subscription = "
      "'ledger') FROM %s.webhook_dead_letters",
      schema, schema);
  cr_assert_str_eq(v, "0:1", "after the purge: no dead letter, the cursor past it");
  free(v);
  rc = tenantctl(&out, "events replay --subscription warehouse --from-sequence %lld", s1);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  v = tn_test_pg_value(wc, "SELECT tenant_seq FROM %s.webhook_cursors WHERE subscription = 'warehouse'",
                       schema);
  cr_assert_str_eq(v, "0", "replay moved the cursor back before the first event");
  free(v);
  v = tn_test_pg_value(wc,
                       "SELECT (SELECT epoch FROM %s.webhook_state WHERE subscription = 'ledger') || ':' || "
                       "(SELECT epoch FROM %s.webhook_state WHERE subscription = 'warehouse')",
                       schema, schema);
  cr_assert_str_eq(v, "2:1", "each change bumps the subscription's epoch");
  free(v);
  /* Each change: started (tenantctl) and succeeded (the database, with the change), by the actor. */
  v = tn_test_pg_value(wc,
                       "SELECT string_agg(action || '/' || outcome || '/' || actor || '/' || "
                       "coalesce(details->>'count', '-'), "
                       "' ' ORDER BY id) FROM %s.audit_events WHERE target LIKE 'webhooksubscription/%%'",
                       schema);
  cr_assert_str_eq(v,
                   "webhook.dlq.requeue/started/itest:alice/- webhook.dlq.requeue/succeeded/itest:alice/1 "
                   "webhook.dlq.purge/started/itest:alice/- webhook.dlq.purge/succeeded/itest:alice/1 "
                   "webhook.replay/started/itest:alice/- webhook.replay/succeeded/itest:alice/1",
                   "%s", v);
  free(v);
  struct tn_audit_verify_result r;
  cr_assert_eq(tn_audit_verify(w, NULL, &r, &err), 0, "%s", err.message);
  cr_assert(r.ok, "%s", r.problem);

  PQfinish(wc);
  tn_audit_close(w);
  tn_audit_close(owner);
}
