/* test_webhooks.c - webhook delivery (operator/webhooks/) against the real PostgreSQL of the local
 * stack and a real HTTPS consumer started here (tests/support/webhook_receiver.py: python's
 * http.server with ssl, a certificate made by openssl, and its OWN Standard Webhooks
 * verification). The outbox is created with exactly the DDL of the interface (/work/OUTBOX.md,
 * docs/webhooks.md) in a schema of each test's own, and events are inserted with SQL. Covers:
 * order per tenant, the consumer down for a minute, the engine SIGKILLed with requests in flight,
 * PostgreSQL restarted, dead letters (retryable and permanent, PerTenant and BestEffort),
 * requeue, purge, replay, a key rotation's overlap, 429 Retry-After. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"
#include "webhooks/admin.h"
#include "webhooks/delivery.h"

#define KEY_A "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define KEY_B "whsec_c2Vjb25kLWtleS1mb3ItdGhlLXJvdGF0aW9u"

static char schema[64];
static char dir[256];
static int port;
static pid_t receiver_pid;
static char *ca_b64;

static const char *dsn(void) { return tn_test_env("TENANCY_PG_DSN"); }

static PGconn *db(void) {
  PGconn *c = PQconnectdb(dsn());
  cr_assert_eq(PQstatus(c), CONNECTION_OK, "cannot connect: %s", PQerrorMessage(c));
  PQclear(PQexec(c, "SET client_min_messages = warning"));
  return c;
}

static void sql(PGconn *c, const char *q) {
  PGresult *r = PQexec(c, q);
  cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", q,
            PQresultErrorMessage(r));
  PQclear(r);
}

static void write_file(const char *name, const char *content) {
  char p[400];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  cr_assert(f, "%s", p);
  fputs(content, f);
  fclose(f);
}

static void control(const char *name, const char *value) {
  char p[400];
  snprintf(p, sizeof p, "%s/control/%s", dir, name);
  if (!value) {
    unlink(p);
    return;
  }
  FILE *f = fopen(p, "w");
  cr_assert(f);
  fputs(value, f);
  fclose(f);
}

/* The exact outbox DDL of the interface, in this test's own schema. */
static void setup(void) {
  static int n;
  snprintf(schema, sizeof schema, "tn_wh_t%ld_%d", (long)getpid(), ++n);
  const char *logdir = getenv("TENANCY_TEST_LOG_DIR") ? getenv("TENANCY_TEST_LOG_DIR") : "/tmp";
  mkdir(logdir, 0755);
  snprintf(dir, sizeof dir, "%s/webhooks-%s", logdir, schema);
  tn_test_sh(NULL, "rm -rf '%s' && mkdir -p '%s/control'", dir, dir);
  cr_assert_eq(
      tn_test_sh(NULL,
                 "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout key.pem -out cert.pem -days 1 -subj /CN=127.0.0.1 "
                 "-addext subjectAltName=IP:127.0.0.1 2>/dev/null",
                 dir),
      0);
  ca_b64 = tn_test_output("base64 -w0 '%s/cert.pem'", dir);
  write_file("keys", KEY_A "\n");
  write_file("log", "");
  PGconn *c = db();
  char q[2048];
  snprintf(
      q, sizeof q,
      "CREATE SCHEMA \"%s\"; CREATE TABLE IF NOT EXISTS \"%s\".outbox ("
      "seq bigserial PRIMARY KEY, tenant text NOT NULL, tenant_seq bigint NOT NULL, id text NOT NULL UNIQUE, "
      "type text NOT NULL, audit_id bigint, labels jsonb NOT NULL DEFAULT '{}'::jsonb, event jsonb NOT NULL, "
      "created_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
      "CONSTRAINT outbox_tenant_seq_key UNIQUE (tenant, tenant_seq))",
      schema, schema);
  sql(c, q);
  PQfinish(c);
}

static void teardown(void) {
  if (receiver_pid > 0) {
    kill(receiver_pid, SIGKILL);
    waitpid(receiver_pid, NULL, 0);
    receiver_pid = 0;
  }
  free(ca_b64);
  ca_b64 = NULL;
  PGconn *c = PQconnectdb(dsn());
  if (PQstatus(c) == CONNECTION_OK) {
    char q[200];
    snprintf(q, sizeof q, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS \"%s\" CASCADE", schema);
    PQclear(PQexec(c, q));
  }
  PQfinish(c);
}

/* Inserts n events for tenant (type dev.tenancy.tenant.<what>.v1, labels), as the writer would:
 * the next tenant sequences, a fresh UUID as id and webhook-id. Returns the last outbox seq. */
static long long emit(const char *tenant, int n, const char *what, const char *labels) {
  PGconn *c = db();
  char q[2048], ns[16], type[128];
  snprintf(ns, sizeof ns, "%d", n);
  snprintf(type, sizeof type, "dev.tenancy.tenant.%s.v1", what);
  snprintf(
      q, sizeof q,
      "WITH m AS (SELECT COALESCE(max(tenant_seq), 0) AS m FROM \"%s\".outbox WHERE tenant = $1), "
      "r AS (SELECT m + g AS ts, gen_random_uuid()::text AS u FROM m, generate_series(1, $2::int) g) "
      "INSERT INTO \"%s\".outbox (tenant, tenant_seq, id, type, labels, event) "
      "SELECT $1, ts, u, $3, $4::jsonb, jsonb_build_object('specversion', '1.0', 'id', u, 'source', "
      "'tenancy.dev/test', 'type', $3::text, 'subject', 'tenant/' || $1, 'time', "
      "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'datacontenttype', "
      "'application/json', 'tenancysequence', ts, 'correlationid', u, 'actor', 'test', 'data', "
      "jsonb_build_object('tenant', $1::text, 'n', ts)) FROM r ORDER BY ts RETURNING seq",
      schema, schema);
  const char *v[] = {tenant, ns, type, labels ? labels : "{}"};
  PGresult *r = PQexecParams(c, q, 4, NULL, v, NULL, NULL, 0);
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
  long long last = atoll(PQgetvalue(r, PQntuples(r) - 1, 0));
  PQclear(r);
  PQfinish(c);
  return last;
}

static void receiver_start(void) {
  if (!port)
    port = tn_test_free_port();
  const char *root = tn_test_env("TENANCY_ROOT");
  char script[400], p[8], cert[300], key[300], keys[300], log[300], ctl[300];
  snprintf(script, sizeof script, "%s/tests/support/webhook_receiver.py", root);
  snprintf(p, sizeof p, "%d", port);
  snprintf(cert, sizeof cert, "%s/cert.pem", dir);
  snprintf(key, sizeof key, "%s/key.pem", dir);
  snprintf(keys, sizeof keys, "%s/keys", dir);
  snprintf(log, sizeof log, "%s/log", dir);
  snprintf(ctl, sizeof ctl, "%s/control", dir);
  receiver_pid = fork();
  cr_assert_geq(receiver_pid, 0);
  if (receiver_pid == 0) {
    execlp("python3", "python3", script, "--port", p, "--cert", cert, "--key", key, "--keys-file", keys,
           "--log", log, "--control", ctl, (char *)NULL);
    _exit(127);
  }
  cr_assert_eq(tn_test_sh_until(10, NULL,
                                "curl -s -o /dev/null --cacert '%s' -X POST https://127.0.0.1:%d/ -d '{}' "
                                "-w '%%{http_code}' | grep -q 401",
                                cert, port),
               0, "the receiver did not start"); /* (the probe has no webhook-id: not logged) */
}

/* The receiver's log as a JSON array of its records. */
static json_t *received(void) {
  json_t *a = json_array();
  char p[400];
  snprintf(p, sizeof p, "%s/log", dir);
  FILE *f = fopen(p, "r");
  cr_assert(f);
  char line[2048];
  while (fgets(line, sizeof line, f)) {
    json_t *o = json_loads(line, 0, NULL);
    if (o)
      json_array_append_new(a, o);
  }
  fclose(f);
  return a;
}

/* How many events the consumer accepted (2xx), counting each webhook-id once; *dups: ids
 * accepted more than once; verified_all: every accepted request had a valid signature. */
static int accepted(const char *tenant, int *dups) {
  json_t *a = received(), *seen = json_object();
  size_t i;
  json_t *o;
  int n = 0, d = 0;
  json_array_foreach(a, i, o) {
    if (json_integer_value(json_object_get(o, "status")) != 200)
      continue;
    if (tenant && strcmp(json_string_value(json_object_get(o, "tenant")), tenant) != 0)
      continue;
    cr_assert(json_is_true(json_object_get(o, "verified")));
    const char *id = json_string_value(json_object_get(o, "id"));
    if (json_object_get(seen, id))
      d++;
    else
      n++;
    json_object_set_new(seen, id, json_true());
  }
  json_decref(a);
  json_decref(seen);
  if (dups)
    *dups = d;
  return n;
}

/* Every tenant's events were accepted in order: a tenant's sequence never jumps ahead of the
 * highest accepted so far + 1 (a redelivery may repeat an earlier one). */
static void assert_in_order(void) {
  json_t *a = received(), *max = json_object();
  size_t i;
  json_t *o;
  json_array_foreach(a, i, o) {
    if (json_integer_value(json_object_get(o, "status")) != 200)
      continue;
    const char *t = json_string_value(json_object_get(o, "tenant"));
    long long s = json_integer_value(json_object_get(o, "sequence"));
    long long m = json_integer_value(json_object_get(max, t));
    cr_assert_leq(s, m + 1, "tenant %s: sequence %lld accepted after %lld", t, s, m);
    if (s > m)
      json_object_set_new(max, t, json_integer(s));
  }
  json_decref(a);
  json_decref(max);
}

static bool wait_accepted(const char *tenant, int want, double timeout_s) {
  double end = tn_test_now() + timeout_s;
  while (tn_test_now() < end) {
    if (accepted(tenant, NULL) >= want)
      return true;
    usleep(100000);
  }
  return accepted(tenant, NULL) >= want;
}

static struct tn_wh_subscription *subscription(const char *name, const char *secret, const char *extra_spec) {
  char url[128];
  snprintf(url, sizeof url, "https://127.0.0.1:%d/hooks", port ? port : (port = tn_test_free_port()));
  json_t *spec = json_pack("{s:s,s:s,s:{s:s,s:s}}", "url", url, "caBundle", ca_b64, "secretRef", "name", "wh",
                           "key", "secret");
  if (extra_spec) {
    json_t *x = json_loads(extra_spec, 0, NULL);
    cr_assert(x, "%s", extra_spec);
    json_object_update(spec, x);
    json_decref(x);
  }
  json_t *obj = json_pack("{s:{s:s,s:i},s:o}", "metadata", "name", name, "generation", 1, "spec", spec);
  struct tn_wh_subscription *s = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_wh_subscription_parse(obj, secret, strlen(secret), &s, &err), 0, "%s", err.message);
  json_decref(obj);
  return s;
}

static struct tn_delivery *engine(void) {
  struct tn_delivery_config cfg = {.dsn = dsn(),
                                   .schema = schema,
                                   .poll_s = 0.05,
                                   .backoff_base_s = 0.2,
                                   .backoff_max_s = 2,
                                   .status_period_s = 0.3};
  struct tn_delivery *d = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_delivery_new(&cfg, &d, &err), 0, "%s", err.message);
  return d;
}

static void start(struct tn_delivery *d) {
  struct tn_error err = {0};
  cr_assert_eq(tn_delivery_start(d, &err), 0, "%s", err.message);
}

TestSuite(webhooks, .init = setup, .fini = teardown, .timeout = 300);

Test(webhooks, signed_cloudevents_arrive_in_order_per_tenant_through_retries) {
  receiver_start();
  struct tn_delivery *d = engine();
  tn_delivery_put(d, subscription("billing", KEY_A, NULL));
  start(d);
  /* Interleaved tenants; for a second in the middle the consumer answers 503. */
  for (int i = 0; i < 20; i++) {
    emit("acme", 1, "activated", NULL);
    emit("globex", 1, "suspended", NULL);
    emit("initech", 1, "resumed", NULL);
    if (i == 8)
      control("status", "503");
    if (i == 12)
      control("status", NULL);
  }
  cr_assert(wait_accepted(NULL, 60, 60), "accepted %d of 60", accepted(NULL, NULL));
  int dups = -1;
  cr_assert_eq(accepted(NULL, &dups), 60);
  cr_assert_eq(dups, 0, "no redelivery without a restart");
  assert_in_order();
  /* The cursors say so, and the status shows it. */
  usleep(700000);
  struct tn_wh_status st;
  tn_delivery_status(d, "billing", &st);
  cr_assert(st.known);
  cr_assert_eq(st.backlog, 0);
  cr_assert_gt(st.last_delivered_seq, 0);
  cr_assert_eq(st.dead_letters, 0);
  tn_delivery_free(d);
}

/* Push, not polling: with a poll interval of a minute, an event committed to an idle engine still
 * arrives at once, because the outbox's trigger announces the commit (NOTIFY) and the engine
 * LISTENs. (Before, only the poll interval found new rows: a minute here.) */
Test(webhooks, a_commit_is_announced_and_delivered_at_once_without_polling) {
  receiver_start();
  struct tn_delivery_config cfg = {.dsn = dsn(), .schema = schema, .poll_s = 60, .status_period_s = 0.3};
  struct tn_delivery *d = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_delivery_new(&cfg, &d, &err), 0, "%s", err.message);
  tn_delivery_put(d, subscription("push", KEY_A, NULL));
  start(d);
  sleep(2); /* connected, listening, the empty outbox read once: idle until the next minute */
  for (int i = 1; i <= 3; i++) {
    double t0 = tn_test_now();
    emit("acme", 1, "activated", NULL);
    cr_assert(wait_accepted("acme", i, 10), "event %d not delivered within 10 s", i);
    double took = tn_test_now() - t0;
    cr_assert_lt(took, 3.0, "event %d took %.1f s: not announced", i, took);
    sleep(1);
  }
  tn_delivery_free(d);
}

Test(webhooks, consumer_down_for_a_minute_then_everything_arrives_once) {
  struct tn_delivery *d = engine();
  /* The test's backoff is capped at 2 s (the default 300 s): enough attempts to outlast a minute. */
  tn_delivery_put(d, subscription("crm", KEY_A, "{\"maxAttempts\": 100}"));
  start(d);
  for (int t = 0; t < 5; t++) {
    char name[16];
    snprintf(name, sizeof name, "tenant-%d", t);
    emit(name, 30, "updated", NULL);
  }
  sleep(5);
  struct tn_wh_status st;
  tn_delivery_status(d, "crm", &st);
  cr_assert_eq(st.backlog, 150, "backlog %lld", st.backlog);
  cr_assert(st.last_error[0], "a failure is reported (attempts %llu, delivered %llu)", st.attempts,
            st.delivered);
  cr_assert(strstr(st.last_error, "whsec_") == NULL && strstr(st.last_error, "MfKQ9r8") == NULL);
  sleep(55);
  receiver_start();
  cr_assert(wait_accepted(NULL, 150, 60), "accepted %d of 150", accepted(NULL, NULL));
  int dups = -1;
  cr_assert_eq(accepted(NULL, &dups), 150);
  cr_assert_eq(dups, 0);
  assert_in_order();
  tn_delivery_free(d);
}

/* A child process runs the engine; it is SIGKILLed while the consumer holds requests. */
static pid_t engine_child(const char *sub_name) {
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    struct tn_delivery *d = engine();
    tn_delivery_put(d, subscription(sub_name, KEY_A, NULL));
    start(d);
    for (;;)
      pause();
  }
  return pid;
}

Test(webhooks, sigkill_with_requests_in_flight_redelivers_only_those_after_restart) {
  receiver_start();
  control("delay", "2");
  pid_t child = engine_child("support");
  for (int t = 0; t < 4; t++) {
    char name[16];
    snprintf(name, sizeof name, "t%d", t);
    emit(name, 10, "created", NULL);
  }
  sleep(1); /* the first event of each tenant is in flight, held by the consumer */
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  control("delay", NULL);
  sleep(2); /* the consumer accepted what it held, the sender is gone */
  int before = accepted(NULL, NULL);
  cr_assert_leq(before, 4, "only the in-flight events reached the consumer");
  child = engine_child("support");
  cr_assert(wait_accepted(NULL, 40, 60), "accepted %d of 40", accepted(NULL, NULL));
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  int dups = -1;
  cr_assert_eq(accepted(NULL, &dups), 40);
  cr_assert_leq(dups, 4, "at most the in-flight batch is redelivered (%d)", dups);
  cr_assert_eq(dups, before, "exactly the in-flight events came twice, with the same webhook-id");
  assert_in_order();
}

Test(webhooks, postgresql_restart_loses_nothing) {
  receiver_start();
  struct tn_delivery *d = engine();
  tn_delivery_put(d, subscription("analytics", KEY_A, NULL));
  start(d);
  emit("acme", 20, "created", NULL);
  cr_assert(wait_accepted(NULL, 20, 30));
  cr_assert_eq(tn_test_pg_ctl("stop"), 0);
  sleep(3);
  cr_assert_eq(tn_test_pg_ctl("start"), 0);
  emit("acme", 20, "updated", NULL);
  emit("globex", 5, "created", NULL);
  cr_assert(wait_accepted(NULL, 45, 60), "accepted %d of 45", accepted(NULL, NULL));
  int dups = -1;
  cr_assert_eq(accepted(NULL, &dups), 45);
  cr_assert_eq(dups, 0);
  assert_in_order();
  tn_delivery_free(d);
}

/* tenantctl with the test's schema; its output in *out (may be NULL). */
static int tenantctl(char **out, const char *args) {
  return tn_test_sh(out, "'%s' %s --schema '%s' --actor webhook-test 2>&1",
                    tn_test_env("TENANCY_TENANTCTL_BIN"), args, schema);
}

/* The audit rows tenantctl wrote: "action/outcome" lines. */
static char *audit_rows(void) {
  return tn_test_output(
      "psql '%s' -Atc \"SELECT action || '/' || outcome || '/' || target FROM \\\"%s\\\".audit_events "
      "ORDER BY id\"",
      dsn(), schema);
}

static json_t *dlq(const char *sub) {
  PGconn *c = db();
  json_t *out = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_wh_dlq_list(c, schema, sub, &out, &err), 0, "%s", err.message);
  PQfinish(c);
  return out;
}

Test(webhooks, dead_letter_blocks_the_tenant_until_requeued_then_purge_skips_it) {
  receiver_start();
  struct tn_delivery *d = engine();
  tn_delivery_put(d, subscription("ledger", KEY_A, "{\"maxAttempts\": 3}"));
  start(d);
  control("fail-tenant", "bad 503");
  long long first_bad = emit("bad", 1, "created", NULL);
  emit("bad", 2, "updated", NULL);
  emit("good", 3, "created", NULL);
  cr_assert(wait_accepted("good", 3, 30));
  /* 3 attempts with backoff, then the dead letter; the tenant's later events wait. */
  json_t *l = NULL;
  double end = tn_test_now() + 20;
  while (tn_test_now() < end && json_array_size(l = dlq("ledger")) == 0) {
    json_decref(l);
    l = NULL;
    usleep(200000);
  }
  cr_assert_eq(json_array_size(l), 1);
  json_t *dl = json_array_get(l, 0);
  cr_assert_str_eq(json_string_value(json_object_get(dl, "tenant")), "bad");
  cr_assert_eq(json_integer_value(json_object_get(dl, "seq")), first_bad);
  cr_assert_eq(json_integer_value(json_object_get(dl, "attempts")), 3);
  cr_assert_eq(json_integer_value(json_object_get(dl, "lastStatus")), 503);
  json_decref(l);
  sleep(2);
  cr_assert_eq(accepted("bad", NULL), 0, "later events of the tenant wait behind the dead letter");
  json_t *a = received();
  int tries = 0;
  size_t i;
  json_t *o;
  json_array_foreach(a, i, o) tries += strcmp(json_string_value(json_object_get(o, "tenant")), "bad") == 0;
  json_decref(a);
  cr_assert_eq(tries, 3, "maxAttempts is respected (%d requests)", tries);
  struct tn_wh_status st;
  tn_delivery_status(d, "ledger", &st);
  cr_assert_eq(st.dead_letters, 1);

  /* Requeue: the consumer is healthy again, the tenant's three events arrive in order. */
  control("fail-tenant", NULL);
  char *out = NULL;
  cr_assert_eq(tenantctl(&out, "events dlq list -o json"), 0, "%s", out);
  cr_assert(strstr(out, "\"lastStatus\": 503") != NULL, "%s", out);
  free(out);
  cr_assert_eq(tenantctl(&out, "events dlq requeue --subscription ledger"), 2, "--seq or --all is required");
  free(out);
  cr_assert_eq(tenantctl(&out, "events dlq requeue --subscription ledger --all"), 0, "%s", out);
  cr_assert(strstr(out, "1 dead letter(s) of ledger requeued") != NULL, "%s", out);
  free(out);
  cr_assert(wait_accepted("bad", 3, 30), "accepted %d of 3", accepted("bad", NULL));
  assert_in_order();

  /* A permanent 4xx dead-letters at once; purge drops it and the tenant flows again. */
  control("fail-tenant", "bad 422");
  long long rejected = emit("bad", 1, "updated", NULL);
  end = tn_test_now() + 10;
  while (tn_test_now() < end && json_array_size(l = dlq("ledger")) == 0) {
    json_decref(l);
    usleep(100000);
  }
  cr_assert_eq(json_array_size(l), 1);
  cr_assert_eq(json_integer_value(json_object_get(json_array_get(l, 0), "attempts")), 1,
               "4xx is not retried");
  cr_assert_eq(json_integer_value(json_object_get(json_array_get(l, 0), "seq")), rejected);
  json_decref(l);
  control("fail-tenant", NULL);
  char args[128];
  snprintf(args, sizeof args, "events dlq purge --subscription ledger --seq %lld", rejected);
  cr_assert_eq(tenantctl(&out, args), 0, "%s", out);
  cr_assert(strstr(out, "1 dead letter(s) of ledger purged") != NULL, "%s", out);
  free(out);
  emit("bad", 1, "resumed", NULL);
  cr_assert(wait_accepted("bad", 4, 30));
  sleep(1);
  cr_assert_eq(accepted("bad", NULL), 4, "the purged event is never delivered");
  l = dlq("ledger");
  cr_assert_eq(json_array_size(l), 0);
  json_decref(l);
  /* Both changes are in the audit trail, before and after. */
  char *rows = audit_rows();
  cr_assert_str_eq(rows, "webhook.dlq.requeue/started/webhooksubscription/ledger\n"
                         "webhook.dlq.requeue/succeeded/webhooksubscription/ledger\n"
                         "webhook.dlq.purge/started/webhooksubscription/ledger\n"
                         "webhook.dlq.purge/succeeded/webhooksubscription/ledger");
  free(rows);
  tn_delivery_free(d);
}

Test(webhooks, best_effort_dead_letter_does_not_block_the_tenant) {
  receiver_start();
  struct tn_delivery *d = engine();
  tn_delivery_put(d, subscription("loose", KEY_A, "{\"maxAttempts\": 2, \"ordering\": \"BestEffort\"}"));
  start(d);
  control("fail-tenant", "acme 400");
  emit("acme", 1, "created", NULL);
  double end = tn_test_now() + 10;
  json_t *l = NULL;
  while (tn_test_now() < end && json_array_size(l = dlq("loose")) == 0) {
    json_decref(l);
    usleep(100000);
  }
  cr_assert_eq(json_array_size(l), 1);
  json_decref(l);
  control("fail-tenant", NULL);
  emit("acme", 3, "updated", NULL);
  cr_assert(wait_accepted("acme", 3, 30), "later events flow past the dead letter");
  tn_delivery_free(d);
}

Test(webhooks, replay_from_a_sequence_resends_with_the_same_ids) {
  receiver_start();
  struct tn_delivery *d = engine();
  tn_delivery_put(d, subscription("warehouse", KEY_A, NULL));
  start(d);
  emit("acme", 5, "created", NULL);
  long long from = emit("globex", 1, "created", NULL);
  emit("acme", 2, "updated", NULL);
  emit("globex", 2, "updated", NULL);
  cr_assert(wait_accepted(NULL, 10, 30));
  usleep(500000);
  char args[128], *out = NULL;
  snprintf(args, sizeof args, "events replay --subscription warehouse --from-sequence %lld", from);
  cr_assert_eq(tenantctl(&out, args), 0, "%s", out);
  cr_assert(strstr(out, "(2 tenant cursor(s) moved back)") != NULL, "%s", out);
  free(out);
  char *rows = audit_rows();
  cr_assert_str_eq(rows, "webhook.replay/started/webhooksubscription/warehouse\n"
                         "webhook.replay/succeeded/webhooksubscription/warehouse");
  free(rows);
  /* seq >= from: globex 1..3 and acme 6..7 again, nothing before. */
  double end = tn_test_now() + 30;
  int dups = 0;
  while (tn_test_now() < end && (accepted(NULL, &dups), dups < 5))
    usleep(100000);
  sleep(1);
  cr_assert_eq(accepted(NULL, &dups), 10);
  cr_assert_eq(dups, 5);
  cr_assert_eq(accepted("acme", &dups), 7);
  cr_assert_eq(dups, 2);
  tn_delivery_free(d);
}

Test(webhooks, key_rotation_overlap_signs_with_both_keys) {
  receiver_start();
  write_file("keys", KEY_B "\n"); /* the consumer already moved to the new key */
  struct tn_delivery *d = engine();
  tn_delivery_put(d, subscription("rotating", KEY_A " " KEY_B, NULL));
  start(d);
  emit("acme", 3, "created", NULL);
  cr_assert(wait_accepted(NULL, 3, 30));
  write_file("keys", KEY_A "\n"); /* or is still on the old one */
  emit("acme", 3, "updated", NULL);
  cr_assert(wait_accepted(NULL, 6, 30));
  json_t *a = received();
  size_t i;
  json_t *o;
  json_array_foreach(a, i, o) cr_assert_eq(json_integer_value(json_object_get(o, "signatures")), 2);
  json_decref(a);
  /* After the overlap, the old key alone is refused by a consumer on the new key: 401 is permanent. */
  tn_delivery_put(d, subscription("rotating", KEY_A, "{\"maxAttempts\": 2}"));
  write_file("keys", KEY_B "\n");
  emit("acme", 1, "resumed", NULL);
  double end = tn_test_now() + 10;
  json_t *l = NULL;
  while (tn_test_now() < end && json_array_size(l = dlq("rotating")) == 0) {
    json_decref(l);
    usleep(100000);
  }
  cr_assert_eq(json_array_size(l), 1);
  cr_assert_eq(json_integer_value(json_object_get(json_array_get(l, 0), "lastStatus")), 401);
  json_decref(l);
  tn_delivery_free(d);
}

Test(webhooks, too_many_requests_honours_retry_after) {
  receiver_start();
  control("status", "429");
  control("retry-after", "3");
  struct tn_delivery *d = engine();
  tn_delivery_put(d, subscription("polite", KEY_A, NULL));
  start(d);
  emit("acme", 1, "created", NULL);
  double t0 = tn_test_now();
  sleep(1);
  control("status", NULL);
  cr_assert(wait_accepted(NULL, 1, 20));
  cr_assert_geq(tn_test_now() - t0, 2.5, "the retry waited for Retry-After (backoff alone is 0.2 s)");
  json_t *a = received();
  cr_assert_eq(json_array_size(a), 2, "one 429, then the 2xx");
  json_decref(a);
  tn_delivery_free(d);
}

Test(webhooks, filters_and_pause) {
  receiver_start();
  struct tn_delivery *d = engine();
  tn_delivery_put(d,
                  subscription("filtered", KEY_A,
                               "{\"eventTypes\": [\"dev.tenancy.tenant.activated.v1\"], \"tenantSelector\": "
                               "{\"matchLabels\": {\"tier\": \"gold\"}}}"));
  start(d);
  emit("gold1", 1, "created", "{\"tier\": \"gold\"}");
  emit("gold1", 1, "activated", "{\"tier\": \"gold\"}");
  emit("silver1", 1, "activated", "{\"tier\": \"silver\"}");
  emit("gold1", 1, "activated", "{\"tier\": \"gold\"}");
  cr_assert(wait_accepted(NULL, 2, 30));
  sleep(1);
  cr_assert_eq(accepted(NULL, NULL), 2);
  cr_assert_eq(accepted("gold1", NULL), 2);
  /* Paused: nothing is sent; resumed: it flows. */
  tn_delivery_put(d, subscription("filtered", KEY_A, "{\"paused\": true}"));
  usleep(300000);
  emit("silver1", 2, "updated", NULL);
  sleep(2);
  cr_assert_eq(accepted(NULL, NULL), 2);
  tn_delivery_put(d, subscription("filtered", KEY_A, NULL));
  cr_assert(wait_accepted("silver1", 2, 30));
  tn_delivery_free(d);
}

Test(webhooks, subscription_urls_and_secrets_are_checked) {
  const char *bad[] = {"http://example.com/x", "ftp://127.0.0.1/", "https://", "https://user@h/x", NULL};
  for (int i = 0; bad[i]; i++) {
    json_t *o = json_pack("{s:{s:s},s:{s:s}}", "metadata", "name", "x", "spec", "url", bad[i]);
    struct tn_wh_subscription *s = NULL;
    struct tn_error err = {0};
    cr_assert_eq(tn_wh_subscription_parse(o, KEY_A, strlen(KEY_A), &s, &err), TN_EINVALID, "%s", bad[i]);
    json_decref(o);
  }
  json_t *o = json_pack("{s:{s:s},s:{s:s}}", "metadata", "name", "x", "spec", "url", "http://127.0.0.1:1/x");
  struct tn_wh_subscription *s = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_wh_subscription_parse(o, KEY_A, strlen(KEY_A), &s, &err), TN_EINVALID,
               "no allowInsecureLoopback");
  json_object_set_new(json_object_get(o, "spec"), "allowInsecureLoopback", json_true());
  cr_assert_eq(tn_wh_subscription_parse(o, KEY_A, strlen(KEY_A), &s, &err), 0, "%s", err.message);
  tn_wh_subscription_free(s);
  cr_assert_eq(tn_wh_subscription_parse(o, "whsec_!!", 8, &s, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "!!") == NULL);
  json_decref(o);
}

/* ---- the operator: WebhookSubscription -> delivery, status, restart ---------------------------- */

static struct tn_test_operator op;
static char tenant[64], subname[64];

static void op_setup(void) {
  setup();
  /* The operator reads the outbox in its audit schema ("tenancy"), where the writer creates it. */
  PGconn *c = db();
  char q[160];
  snprintf(q, sizeof q, "DROP SCHEMA \"%s\" CASCADE", schema); /* this suite uses the operator's */
  sql(c, q);
  sql(c,
      "CREATE SCHEMA IF NOT EXISTS tenancy; CREATE TABLE IF NOT EXISTS tenancy.outbox ("
      "seq bigserial PRIMARY KEY, tenant text NOT NULL, tenant_seq bigint NOT NULL, id text NOT NULL UNIQUE, "
      "type text NOT NULL, audit_id bigint, labels jsonb NOT NULL DEFAULT '{}'::jsonb, event jsonb NOT NULL, "
      "created_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
      "CONSTRAINT outbox_tenant_seq_key UNIQUE (tenant, tenant_seq))");
  PQfinish(c);
  snprintf(schema, sizeof schema, "tenancy"); /* emit() writes there; teardown must not drop it */
  tn_test_install_api();
  tn_test_unique_name(tenant, sizeof tenant, "whop");
  tn_test_unique_name(subname, sizeof subname, "whsub");
  tn_test_sh(NULL, "kubectl create namespace tenancy-system >/dev/null 2>&1; true");
  tn_test_env("TENANCY_PG_DSN");
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void op_teardown(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  tn_test_sh(NULL, "kubectl delete webhooksubscription %s --ignore-not-found >/dev/null 2>&1", subname);
  tn_test_sh(NULL, "kubectl -n tenancy-system delete secret %s --ignore-not-found >/dev/null 2>&1", subname);
  snprintf(schema, sizeof schema, "tn_wh_none"); /* nothing of the shared schema is dropped */
  teardown();
}

static void apply_subscription(const char *extra) {
  char *out = NULL;
  int rc =
      tn_test_sh(&out,
                 "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"WebhookSubscription\","
                 "\"metadata\":{\"name\":\"%s\"},\"spec\":{\"url\":\"https://127.0.0.1:%d/hooks\","
                 "\"caBundle\":\"%s\",\"secretRef\":{\"name\":\"%s\",\"key\":\"signing\"},"
                 "\"tenantSelector\":{\"matchLabels\":{\"test\":\"%s\"}}%s}}' | kubectl apply -f -",
                 subname, port, ca_b64, subname, tenant, extra ? extra : "");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static char *whsub(const char *jsonpath) {
  return tn_test_output("kubectl get webhooksubscription %s -o jsonpath='%s'", subname, jsonpath);
}

static bool wait_jsonpath(const char *jsonpath, const char *want, double timeout_s) {
  return tn_test_sh_until(timeout_s, NULL,
                          "test \"$(kubectl get webhooksubscription %s -o jsonpath='%s')\" = '%s'", subname,
                          jsonpath, want) == 0;
}

TestSuite(webhooks_operator, .init = op_setup, .fini = op_teardown, .timeout = 300);

Test(webhooks_operator, subscription_delivers_reports_status_and_survives_sigkill) {
  receiver_start();
  char labels[128];
  snprintf(labels, sizeof labels, "{\"test\": \"%s\"}", tenant);
  /* No Secret yet: the subscription says why it cannot deliver. */
  apply_subscription(NULL);
  cr_assert(wait_jsonpath("{.status.conditions[?(@.type==\"Ready\")].reason}", "InvalidConfiguration", 30),
            "Ready is not InvalidConfiguration without the Secret");
  char *msg = whsub("{.status.conditions[?(@.type==\"Ready\")].message}");
  cr_assert(strstr(msg, subname) != NULL, "the message names the Secret: %s", msg);
  free(msg);
  cr_assert_eq(tn_test_sh(NULL,
                          "kubectl -n tenancy-system create secret generic %s --from-literal=signing='%s'",
                          subname, KEY_A),
               0);
  /* The Secret is read again at the informer's resync (30 s) or on a change of the object. */
  apply_subscription(",\"timeoutSeconds\":9");
  emit(tenant, 5, "activated", labels);
  cr_assert(wait_accepted(tenant, 5, 60), "accepted %d of 5", accepted(tenant, NULL));
  cr_assert(wait_jsonpath("{.status.conditions[?(@.type==\"Ready\")].status}", "True", 30));
  cr_assert(wait_jsonpath("{.status.conditions[?(@.type==\"DeadLettered\")].status}", "False", 30));
  cr_assert(wait_jsonpath("{.status.backlog}", "0", 30));
  cr_assert_eq(tn_test_sh_until(30, NULL,
                                "test \"$(kubectl get webhooksubscription %s -o "
                                "jsonpath='{.status.lastDeliveredSequence}')\" -gt 0",
                                subname),
               0, "lastDeliveredSequence is reported");
  cr_assert_gt(tn_test_metric_sum(op.metrics_port, "tenancy_webhook_delivery_attempts_total"), 0);
  cr_assert_gt(tn_test_metric_sum(op.metrics_port, "tenancy_webhook_delivery_latency_seconds_count"), 0);

  /* SIGKILL while the consumer holds the next event: it arrives after the restart, once more at most. */
  control("delay", "3");
  emit(tenant, 3, "updated", labels);
  sleep(1);
  cr_assert_eq(tn_test_operator_stop(&op, SIGKILL, 10), 128 + SIGKILL);
  control("delay", NULL);
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  cr_assert(wait_accepted(tenant, 8, 90), "accepted %d of 8", accepted(tenant, NULL));
  int dups = -1;
  cr_assert_eq(accepted(tenant, &dups), 8);
  cr_assert_leq(dups, 1, "only the event in flight is sent twice (%d)", dups);
  assert_in_order();
}

/* The Python and Go examples of docs/webhooks.md, as written there, verify a real delivery made
 * during a key rotation (two signatures) with either key, and refuse a wrong key or a changed body. */
Test(webhooks, documented_python_and_go_examples_verify_a_real_delivery) {
  receiver_start();
  struct tn_delivery *d = engine();
  tn_delivery_put(d, subscription("docs", KEY_A " " KEY_B, NULL));
  start(d);
  emit("acme", 1, "activated", NULL);
  cr_assert(wait_accepted(NULL, 1, 30));
  tn_delivery_free(d);
  const char *root = tn_test_env("TENANCY_ROOT");
  cr_assert_eq(
      tn_test_sh(
          NULL,
          "cd '%s' && awk '/^```python$/{f=1;next} /^```$/{f=0} f' '%s/docs/webhooks.md' > verify.py && "
          "printf '%%s\\n' 'import json, sys' 'h = json.load(open(sys.argv[1]))' "
          "'print(verify(sys.argv[3], h, open(sys.argv[2], \"rb\").read()))' >> verify.py && "
          "awk '/^```go$/{f=1;next} /^```$/{f=0} f' '%s/docs/webhooks.md' | "
          "sed -e 's/^package webhookverify/package main/' "
          "-e '/^import (/a import (\"encoding/json\"; \"fmt\"; \"os\")' > verify.go && "
          "printf '%%s\\n' 'func main() {' '\tvar h map[string]string' "
          "'\thb, _ := os.ReadFile(os.Args[1])' '\tjson.Unmarshal(hb, &h)' "
          "'\tbody, _ := os.ReadFile(os.Args[2])' "
          "'\tfmt.Println(Verify(os.Args[3], h[\"webhook-id\"], h[\"webhook-timestamp\"], "
          "h[\"webhook-signature\"], body))' '}' >> verify.go && "
          "cp control/last-body tampered && sed -i 's/acme/acmf/' tampered && "
          "GOTOOLCHAIN=local GOPROXY=off GOFLAGS= go build -o verify-go verify.go",
          dir, root, root),
      0, "the examples could not be extracted or built");
  static const char *const cases[][3] = {
      {KEY_A, "last-body", "True"},
      {KEY_B, "last-body", "True"},
      {"whsec_d3Jvbmcta2V5LXdyb25nLWtleQ==", "last-body", "False"},
      {KEY_B, "../tampered", "False"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *py = tn_test_output("cd '%s' && python3 verify.py control/last-headers control/%s '%s'", dir,
                              cases[i][1], cases[i][0]);
    char *go = tn_test_output("cd '%s' && ./verify-go control/last-headers control/%s '%s'", dir, cases[i][1],
                              cases[i][0]);
    cr_assert_str_eq(py, cases[i][2], "python, case %zu: %s", i, py);
    cr_assert(strcasecmp(go, cases[i][2]) == 0, "go, case %zu: %s", i, go);
    free(py);
    free(go);
  }
}
