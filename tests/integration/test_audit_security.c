/* test_audit_security.c - the audit trail against an attacker, on the real PostgreSQL of the local
 * stack (TLS, a CA in $TENANCY_CA_FILE):
 *   - TLS: a DSN without sslmode is verify-full (connects with the CA, refuses an unverifiable
 *     certificate or host name, refuses a plaintext-only server); a weaker sslmode only when the
 *     DSN states it, and then warned (never with the password);
 *   - the chain: the writer role cannot change or remove rows even with the prune setting; the
 *     owner's `SET LOCAL tenancy.audit_prune = 'on'` cannot cut the tail any more; retention
 *     refuses rows inside the minimum retention, which can only be raised; a tail cut by a
 *     superuser is caught by `tenantctl audit verify --expect`; a legitimate prune still verifies;
 *     an older schema is upgraded by its owner and refused (clearly) to a writer;
 *   - the head exporter sets tenancy_audit_chain_head_id.
 * Each test works in its own schema. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/head.h"
#include "runtime/metrics.h"
#include "tn_pg_test.h"
#include "tn_test.h"

#define PG_BIN "/usr/lib/postgresql/15/bin"

static char schema[64];

static const char *dsn(void) { return tn_test_env("TENANCY_PG_DSN"); }

static void new_schema(void) {
  static int seq;
  snprintf(schema, sizeof schema, "tn_audsec_t%ld_%d", (long)getpid(), ++seq);
}

/* The superuser, through libpq directly (the DSN of the stack states verify-full and its CA). */
static PGconn *admin(void) { return tn_test_pg_connect(NULL); }

static char *vfmt(const char *fmt, va_list ap) {
  char *q = NULL;
  cr_assert_geq(vasprintf(&q, fmt, ap), 0);
  return q;
}

/* As the superuser, bypassing the triggers (what only a superuser can do). */
static void as_superuser_bypassing_triggers(PGconn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void as_superuser_bypassing_triggers(PGconn *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *q = vfmt(fmt, ap);
  va_end(ap);
  free(tn_test_pg_value(c, "SET session_replication_role = replica"));
  free(tn_test_pg_value(c, "%s", q));
  free(tn_test_pg_value(c, "SET session_replication_role = origin"));
  free(q);
}

/* The stack's DSN as keyword/value pairs without sslmode and sslrootcert (and without user and
 * password when user is given), then `extra` appended. malloc'd. */
static char *dsn_variant(const char *user, const char *password, const char *extra) {
  return tn_test_pg_dsn(user, password, (const char *const[]){"sslmode", "sslrootcert", NULL}, extra);
}

/* The password in the stack's DSN (it must never appear in output). */
static void stack_password(char *out, size_t n) {
  out[0] = '\0';
  PQconninfoOption *opts = PQconninfoParse(dsn(), NULL);
  for (PQconninfoOption *o = opts; o && o->keyword; o++)
    if (!strcmp(o->keyword, "password") && o->val)
      snprintf(out, n, "%s", o->val);
  PQconninfoFree(opts);
  cr_assert(out[0], "the stack's DSN has no password");
}

static struct tn_audit *open_trail(const char *the_dsn, const char *ca_file, const char *app,
                                   bool no_create) {
  struct tn_audit *a = NULL;
  struct tn_error err = {0};
  struct tn_audit_options o = {
      .schema = schema, .no_create = no_create, .application_name = app, .ca_file = ca_file};
  cr_assert_eq(tn_audit_open(the_dsn, &o, &a, &err), 0, "%s", err.message);
  return a;
}

static long long append(struct tn_audit *a, const char *action) {
  struct tn_audit_event ev = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                              .action = action,
                              .target = "tenant/acme",
                              .outcome = TN_AUDIT_SUCCEEDED,
                              .generation_before = 1,
                              .generation_after = 2};
  long long id = 0;
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_append(a, &ev, &id, &err), 0, "append: %s", err.message);
  return id;
}

/* Runs `tenantctl ARGS` with an environment prefix (e.g. "TENANCY_PG_DSN=..."; trusted strings). */
static int tenantctl(char **out, const char *env, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int tenantctl(char **out, const char *env, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *args = vfmt(fmt, ap);
  va_end(ap);
  int rc = tn_test_sh(out, "env -u PGSSLROOTCERT -u PGSSLMODE -u TENANCY_PG_CA_FILE %s '%s' %s 2>&1",
                      env ? env : "", tn_test_env("TENANCY_TENANTCTL_BIN"), args);
  free(args);
  return rc;
}

static void drop_schema(void) {
  PGconn *c = admin();
  PQclear(tn_test_pg_exec(c, "DROP SCHEMA IF EXISTS %s CASCADE", schema));
  PQfinish(c);
}

/* Whether the connection of application `app` uses TLS (seen from the server). */
static bool server_sees_tls(PGconn *c, const char *app) {
  char *v =
      tn_test_pg_value(c,
                       "SELECT coalesce(bool_and(s.ssl), false) FROM pg_stat_ssl s JOIN pg_stat_activity a "
                       "USING (pid) WHERE a.application_name = '%s'",
                       app);
  bool tls = v[0] == 't';
  free(v);
  return tls;
}

TestSuite(audit_security, .timeout = 240);

/* ---- TLS ---------------------------------------------------------------------------------- */

Test(audit_security, no_sslmode_means_verify_full_with_the_given_ca) {
  new_schema();
  const char *ca = tn_test_env("TENANCY_CA_FILE");
  char password[128];
  stack_password(password, sizeof password);
  unsetenv("PGSSLROOTCERT");
  unsetenv("PGSSLMODE");
  char *plain = dsn_variant(NULL, NULL, NULL); /* no sslmode, no sslrootcert */

  /* With the CA given (the option, as --pg-ca-file / TENANCY_PG_CA_FILE): connects over TLS. */
  struct tn_audit *a = open_trail(plain, ca, "tn-audsec-tls", false);
  cr_assert_null(tn_audit_tls_warning(a), "verify-full by default needs no warning");
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_ping(a, &err), 0, "%s", err.message);
  PGconn *c = admin();
  cr_assert(server_sees_tls(c, "tn-audsec-tls"), "the audit connection is not TLS");
  tn_audit_close(a);

  /* A CA that did not sign the server's certificate: refused, and said why. */
  a = open_trail(plain, "/etc/ssl/certs/ca-certificates.crt", NULL, false);
  cr_assert_eq(tn_audit_ping(a, &err), TN_EUNAVAILABLE);
  cr_assert(strstr(err.message, "certificate verify failed"), "%s", err.message);
  cr_assert(strstr(err.message, "sslmode=verify-full"), "%s", err.message);
  cr_assert(strstr(err.message, "sslrootcert"), "%s", err.message);
  cr_assert_null(strstr(err.message, password), "the password leaked: %s", err.message);
  tn_audit_close(a);

  /* The right CA but a host name the certificate does not name: refused (verify-full, not -ca). */
  char *wrong_host = dsn_variant(NULL, NULL, "host='audit-db.invalid' hostaddr='127.0.0.1'");
  a = open_trail(wrong_host, ca, NULL, false);
  cr_assert_eq(tn_audit_ping(a, &err), TN_EUNAVAILABLE);
  cr_assert(strstr(err.message, "does not match host name"), "%s", err.message);
  tn_audit_close(a);

  /* tenantctl: the same rule, --pg-ca-file and TENANCY_PG_CA_FILE. */
  char *out = NULL, env[8192];
  snprintf(env, sizeof env, "TENANCY_PG_DSN=\"%s\"", plain);
  int rc = tenantctl(&out, env, "audit verify --schema %s --pg-ca-file '%s'", schema, ca);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_null(strstr(out, "warning"), "%s", out);
  free(out);
  snprintf(env, sizeof env, "TENANCY_PG_DSN=\"%s\" TENANCY_PG_CA_FILE='%s'", plain, ca);
  rc = tenantctl(&out, env, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  snprintf(env, sizeof env, "TENANCY_PG_DSN=\"%s\" HOME=/nonexistent", plain);
  rc = tenantctl(&out, env, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 5, "no CA given must fail: %s", out);
  cr_assert(strstr(out, "sslmode=verify-full") && strstr(out, "--pg-ca-file"), "%s", out);
  cr_assert_null(strstr(out, password), "the password leaked: %s", out);
  free(out);
  /* The stack's own DSN states sslmode=verify-full and its CA: no warning either. */
  rc = tenantctl(&out, NULL, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_null(strstr(out, "warning"), "%s", out);
  free(out);

  PQfinish(c);
  free(plain);
  free(wrong_host);
  drop_schema();
}

Test(audit_security, a_weaker_sslmode_must_be_stated_and_is_warned) {
  new_schema();
  char password[128];
  stack_password(password, sizeof password);
  /* PGSSLMODE is not a request: the DSN must say it. */
  char *plain = dsn_variant(NULL, NULL, NULL);
  char *out = NULL, env[8192];
  snprintf(env, sizeof env, "TENANCY_PG_DSN=\"%s\" PGSSLMODE=require HOME=/nonexistent", plain);
  int rc = tenantctl(&out, env, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 5, "PGSSLMODE must not weaken TLS: %s", out);
  free(out);

  const char *modes[] = {"require", "verify-ca", "prefer"};
  for (size_t i = 0; i < 3; i++) {
    char extra[512];
    if (!strcmp(modes[i], "verify-ca"))
      snprintf(extra, sizeof extra, "sslmode='verify-ca' sslrootcert='%s'", tn_test_env("TENANCY_CA_FILE"));
    else
      snprintf(extra, sizeof extra, "sslmode='%s'", modes[i]);
    char *d = dsn_variant(NULL, NULL, extra);
    struct tn_audit *a = open_trail(d, NULL, "tn-audsec-weak", false);
    const char *w = tn_audit_tls_warning(a);
    cr_assert_not_null(w, "sslmode=%s was not warned", modes[i]);
    char want[64];
    snprintf(want, sizeof want, "sslmode=%s", modes[i]);
    cr_assert(strstr(w, want), "%s", w);
    cr_assert_null(strstr(w, password), "%s", w);
    struct tn_error err = {0};
    cr_assert_eq(tn_audit_ping(a, &err), 0, "an explicit sslmode=%s must work: %s", modes[i], err.message);
    tn_audit_close(a);

    snprintf(env, sizeof env, "TENANCY_PG_DSN=\"%s\" HOME=/nonexistent", d);
    rc = tenantctl(&out, env, "audit verify --schema %s", schema);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "tenantctl: warning: audit trail: the PostgreSQL DSN asks explicitly for"), "%s",
              out);
    cr_assert(strstr(out, want), "%s", out);
    cr_assert_null(strstr(out, password), "the password leaked: %s", out);
    free(out);
    free(d);
  }

  /* The operator logs the warning at start (it stops at the missing kubeconfig afterwards). */
  char *d = dsn_variant(NULL, NULL, "sslmode='require'");
  snprintf(env, sizeof env, "TENANCY_PG_DSN=\"%s\"", d);
  rc = tn_test_sh(&out,
                  "env %s KUBECONFIG=/nonexistent '%s' --kubeconfig=/nonexistent --metrics-bind-address=0 "
                  "--health-probe-bind-address=0 2>&1",
                  env, tn_test_env("TENANCY_OPERATOR_BIN"));
  cr_assert_neq(rc, 0, "%s", out);
  cr_assert(strstr(out, "asks explicitly for sslmode=require"), "%s", out);
  cr_assert_null(strstr(out, password), "the password leaked: %s", out);
  free(out);
  free(d);
  free(plain);
  drop_schema();
}

/* A second, throwaway PostgreSQL without TLS. */
static char plain_dir[128];
static int plain_port;

static void plain_pg_stop(void) {
  if (!plain_dir[0])
    return;
  tn_test_sh(NULL,
             "runuser -u postgres -- " PG_BIN
             "/pg_ctl -D %s/data -m immediate stop >/dev/null 2>&1; rm -rf %s",
             plain_dir, plain_dir);
  plain_dir[0] = '\0';
}

static void plain_pg_start(void) {
  snprintf(plain_dir, sizeof plain_dir, "/tmp/tn-audsec-plain-%ld", (long)getpid());
  char *port = tn_test_output("python3 -c 'import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));"
                              "print(s.getsockname()[1])'");
  plain_port = atoi(port);
  free(port);
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "set -e; rm -rf %s; mkdir -p %s/run; chown -R postgres %s; "
                      "runuser -u postgres -- " PG_BIN "/initdb -D %s/data -U postgres --auth=trust -E UTF8 "
                      "--locale=C.UTF-8 >/dev/null; "
                      "printf \"listen_addresses='127.0.0.1'\\nport=%d\\nunix_socket_directories='%s/run'\\n"
                      "ssl=off\\n\" >> %s/data/postgresql.conf; "
                      "runuser -u postgres -- " PG_BIN "/pg_ctl -D %s/data -l %s/log -w start >/dev/null",
                      plain_dir, plain_dir, plain_dir, plain_dir, plain_port, plain_dir, plain_dir, plain_dir,
                      plain_dir);
  cr_assert_eq(rc, 0, "cannot start a plaintext PostgreSQL: %s", out);
  free(out);
}

Test(audit_security, a_plaintext_only_server_is_refused_by_default, .init = plain_pg_start,
     .fini = plain_pg_stop) {
  new_schema();
  char d[256];
  snprintf(d, sizeof d, "host=127.0.0.1 port=%d user=postgres dbname=postgres", plain_port);
  struct tn_audit *a = open_trail(d, tn_test_env("TENANCY_CA_FILE"), NULL, false);
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_ping(a, &err), TN_EUNAVAILABLE, "a plaintext server was accepted");
  cr_assert(strstr(err.message, "server does not support SSL"), "%s", err.message);
  cr_assert(strstr(err.message, "sslmode=verify-full"), "%s", err.message);
  tn_audit_close(a);
  /* The same for a DSN that names its CA but no sslmode. */
  char *out = NULL, env[512];
  snprintf(env, sizeof env, "TENANCY_PG_DSN='%s sslrootcert=%s'", d, tn_test_env("TENANCY_CA_FILE"));
  int rc = tenantctl(&out, env, "audit init --schema %s", schema);
  cr_assert_eq(rc, 5, "%s", out);
  cr_assert(strstr(out, "server does not support SSL"), "%s", out);
  free(out);

  /* Asked for explicitly, plaintext works, with the warning. */
  snprintf(env, sizeof env, "TENANCY_PG_DSN='%s sslmode=disable'", d);
  rc = tenantctl(&out, env, "audit init --schema %s", schema);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "asks explicitly for sslmode=disable: the connection is plaintext"), "%s", out);
  free(out);
}

/* ---- the chain ---------------------------------------------------------------------------- */

static void make_writer(PGconn *c, char *role, size_t n) {
  snprintf(role, n, "%s_writer", schema);
  tn_test_pg_role_create(c, role, "writer-pw-123");
}

Test(audit_security, the_writer_cannot_remove_rows_and_the_prune_setting_cuts_nothing) {
  new_schema();
  PGconn *c = admin();
  char role[96];
  make_writer(c, role, sizeof role);
  struct tn_audit *owner = open_trail(dsn(), NULL, NULL, true);
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_init(owner, role, &err), 0, "%s", err.message);
  /* A writer that could bypass the triggers is refused at init. */
  char *me = tn_test_pg_value(c, "SELECT current_user");
  cr_assert_eq(tn_audit_init(owner, me, &err), TN_EINVALID, "a superuser writer was accepted");
  cr_assert(strstr(err.message, "is a superuser"), "%s", err.message);
  free(me);
  cr_assert_eq(tn_audit_init(owner, "no_such_role_tn", &err), TN_EINVALID);
  cr_assert(strstr(err.message, "does not exist"), "%s", err.message);
  char *wdsn = dsn_variant(role, "writer-pw-123", "sslmode='verify-full'");
  char x[600];
  snprintf(x, sizeof x, "%s sslrootcert='%s'", wdsn, tn_test_env("TENANCY_CA_FILE"));
  free(wdsn);
  struct tn_audit *w = open_trail(x, NULL, NULL, true);
  for (int i = 0; i < 4; i++)
    append(w, "activate");

  /* The writer knows it cannot cut; the superuser owner can. */
  bool can_cut = true;
  char who[96];
  cr_assert_eq(tn_audit_role_can_cut(w, &can_cut, who, sizeof who, &err), 0, "%s", err.message);
  cr_assert_not(can_cut, "the writer role could remove rows: %s", who);
  cr_assert_eq(tn_audit_role_can_cut(owner, &can_cut, who, sizeof who, &err), 0, "%s", err.message);
  cr_assert(can_cut);
  cr_assert_str_eq(who, "is a superuser");

  /* The writer, even with the prune setting: no DELETE, UPDATE or TRUNCATE, no settings change. */
  PGconn *wc = PQconnectdb(x);
  cr_assert_eq(PQstatus(wc), CONNECTION_OK, "%s", PQerrorMessage(wc));
  /* "<verb> <schema>.<rest>" */
  const char *stmts[][2] = {
      {"DELETE FROM", "audit_events"},
      {"DELETE FROM", "audit_events WHERE id = 4"},
      {"UPDATE", "audit_events SET outcome = 'failed'"},
      {"TRUNCATE", "audit_events"},
      {"UPDATE", "audit_settings SET min_retention = interval '0'"},
      {"DELETE FROM", "audit_settings"},
  };
  for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
    char *m = tn_test_pg_error(wc, "BEGIN; SET LOCAL tenancy.audit_prune = 'on'; %s %s.%s", stmts[i][0],
                               schema, stmts[i][1]);
    cr_assert(strstr(m, "permission denied"), "%s %s: %s", stmts[i][0], stmts[i][1], m);
    free(m);
  }
  /* Retention through the SECURITY DEFINER function: rows seconds old are inside the minimum. */
  char *m = tn_test_pg_error(wc, "SELECT * FROM %s.audit_prune(now(), 'x')", schema);
  cr_assert(strstr(m, "inside the minimum retention of 90 days"), "%s", m);
  free(m);
  PQfinish(wc);
  cr_assert_eq(tn_audit_prune(w, 1, NULL, NULL, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "inside the minimum retention of 90 days"), "%s", err.message);

  /* The attack of the issue, by the owner (here the superuser, in a normal session): the prune
   * setting then a DELETE of the tail. Refused: the tail is inside the retention, and the newest
   * row is never removed. (Before schema 2 the guard let any DELETE through with the setting.) */
  m = tn_test_pg_error(
      c, "BEGIN; SET LOCAL tenancy.audit_prune = 'on'; DELETE FROM %s.audit_events WHERE id >= 3", schema);
  cr_assert(strstr(m, "inside the minimum retention"), "%s", m);
  free(m);
  as_superuser_bypassing_triggers(c, "UPDATE %s.audit_settings SET min_retention = interval '0'", schema);
  m = tn_test_pg_error(
      c, "BEGIN; SET LOCAL tenancy.audit_prune = 'on'; DELETE FROM %s.audit_events WHERE id = 4", schema);
  cr_assert(strstr(m, "the newest row 4 is never removed"), "%s", m);
  free(m);
  struct tn_audit_verify_result r;
  cr_assert_eq(tn_audit_verify(w, NULL, &r, &err), 0, "%s", err.message);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 4);

  tn_audit_close(w);
  tn_audit_close(owner);
  drop_schema();
  tn_test_pg_role_drop(c, role);
  PQfinish(c);
}

Test(audit_security, the_minimum_retention_is_enforced_and_only_raised) {
  new_schema();
  struct tn_audit *a = open_trail(dsn(), NULL, NULL, false);
  for (int i = 0; i < 3; i++)
    append(a, "suspend");
  struct tn_error err = {0};
  long long pruned = -1;
  /* Within 90 days: refused, whatever the cutoff. */
  cr_assert_eq(tn_audit_prune(a, 30, "job", &pruned, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "minimum retention of 90 days"), "%s", err.message);
  cr_assert_eq(tn_audit_prune_before(a, "2999-01-01T00:00:00Z", "job", &pruned, &err), TN_EINVALID);
  char *out = NULL;
  int rc = tenantctl(&out, NULL, "audit prune --schema %s --older-than 7d", schema);
  cr_assert_eq(rc, 5, "%s", out);
  cr_assert(strstr(out, "inside the minimum retention of 90 days"), "%s", out);
  free(out);
  /* Older than the minimum is allowed (nothing that old here). */
  cr_assert_eq(tn_audit_prune(a, 90, "job", &pruned, &err), 0, "%s", err.message);
  cr_assert_eq(pruned, 0);

  /* Raised by the owner; a lower value changes nothing. */
  rc = tenantctl(&out, NULL, "audit init --schema %s --min-retention 400d", schema);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "minimum retention: 400 days"), "%s", out);
  free(out);
  rc = tenantctl(&out, NULL, "audit init --schema %s --min-retention 100d", schema);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "minimum retention: 400 days (it can only be raised"), "%s", out);
  free(out);
  cr_assert_eq(tn_audit_prune(a, 200, "job", &pruned, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "minimum retention of 400 days"), "%s", err.message);
  /* Even the owner cannot lower it or remove the setting through SQL (the triggers). */
  PGconn *c = admin();
  char *m = tn_test_pg_error(c, "UPDATE %s.audit_settings SET min_retention = interval '1 day'", schema);
  cr_assert(strstr(m, "can only be raised"), "%s", m);
  free(m);
  m = tn_test_pg_error(c, "DELETE FROM %s.audit_settings", schema);
  cr_assert(strstr(m, "can only be raised"), "%s", m);
  free(m);
  m = tn_test_pg_error(c, "TRUNCATE %s.audit_settings", schema);
  cr_assert(strstr(m, "can only be raised"), "%s", m);
  free(m);
  PQfinish(c);
  tn_audit_close(a);
  drop_schema();
}

Test(audit_security, a_tail_cut_by_a_superuser_is_caught_by_the_exported_head) {
  new_schema();
  struct tn_audit *a = open_trail(dsn(), NULL, NULL, false);
  for (int i = 0; i < 5; i++)
    append(a, "activate");
  long long head = 0;
  char hash[TN_AUDIT_HASH_LEN];
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_head(a, &head, hash, &err), 0, "%s", err.message);
  cr_assert_eq(head, 5);
  cr_assert(tn_audit_hash_valid(hash));
  char *out = NULL;
  int rc = tenantctl(&out, NULL, "audit verify --schema %s --expect %lld:%s", schema, head, hash);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);

  /* The superuser cuts the last two rows: the chain alone still verifies, the anchor does not. */
  PGconn *c = admin();
  as_superuser_bypassing_triggers(c, "DELETE FROM %s.audit_events WHERE id >= 4", schema);
  rc = tenantctl(&out, NULL, "audit verify --schema %s", schema);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tenantctl(&out, NULL, "audit verify --schema %s --expect %lld:%s", schema, head, hash);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "row 5: missing (the last row is 3)"), "%s", out);
  free(out);
  /* New rows after the cut do not hide it (ids are not reused). */
  append(a, "resume");
  rc = tenantctl(&out, NULL, "audit verify --schema %s --expect %lld:%s", schema, head, hash);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "row 5: missing"), "%s", out);
  free(out);
  PQfinish(c);
  tn_audit_close(a);
  drop_schema();
}

Test(audit_security, a_legitimate_prune_still_verifies_against_the_head) {
  new_schema();
  struct tn_audit *a = open_trail(dsn(), NULL, NULL, false);
  for (int i = 0; i < 6; i++)
    append(a, "activate");
  long long head = 0;
  char hash[TN_AUDIT_HASH_LEN];
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_head(a, &head, hash, &err), 0, "%s", err.message);
  /* Rows seconds old stand for rows older than the minimum: the superuser lowers it (only it can). */
  PGconn *c = admin();
  as_superuser_bypassing_triggers(c, "UPDATE %s.audit_settings SET min_retention = interval '0'", schema);
  long long pruned = 0;
  cr_assert_eq(tn_audit_prune_before(a, "2999-01-01T00:00:00Z", "job", &pruned, &err), 0, "%s", err.message);
  cr_assert_eq(pruned, 5, "everything but the newest row");
  char *out = NULL;
  int rc = tenantctl(&out, NULL, "audit verify --schema %s --expect %lld:%s", schema, head, hash);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "rows up to 5 were removed by retention (checkpoint in row 7)"), "%s", out);
  free(out);
  /* An anchor on the last pruned row is still checked against the checkpoint. */
  char *h5 = NULL;
  PGresult *res =
      tn_test_pg_exec(c, "SELECT details->>'lastPrunedHash' FROM %s.audit_events WHERE id = 7", schema);
  cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
  h5 = strdup(PQgetvalue(res, 0, 0));
  PQclear(res);
  rc = tenantctl(&out, NULL, "audit verify --schema %s --expect 5:%s", schema, h5);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  free(h5);
  PQfinish(c);
  tn_audit_close(a);
  drop_schema();
}

Test(audit_security, an_older_schema_is_upgraded_by_its_owner_and_refused_to_a_writer) {
  new_schema();
  PGconn *c = admin();
  char role[96];
  make_writer(c, role, sizeof role);
  struct tn_audit *owner = open_trail(dsn(), NULL, NULL, true);
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_init(owner, role, &err), 0, "%s", err.message);
  append(owner, "create");
  tn_audit_close(owner);
  /* Make it look like schema 1: no settings table, the old mark, the old guard that let any
   * DELETE through with the prune setting. */
  free(tn_test_pg_value(c, "DROP TABLE %s.audit_settings CASCADE", schema));
  free(tn_test_pg_value(
      c,
      "CREATE OR REPLACE FUNCTION %s.audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
      "BEGIN IF TG_OP = 'DELETE' AND current_setting('tenancy.audit_prune', true) = 'on' THEN "
      "RETURN OLD; END IF; RAISE EXCEPTION 'append-only'; END $$",
      schema));
  free(tn_test_pg_value(
      c,
      "COMMENT ON TABLE %s.audit_events IS 'tenancy-operator audit trail (schema 1): append-only "
      "and hash-chained; see docs/audit.md'",
      schema));

  /* The writer cannot upgrade it: a clear error, no rows written. */
  char *wdsn = dsn_variant(role, "writer-pw-123", NULL);
  char x[600];
  snprintf(x, sizeof x, "%s sslrootcert='%s'", wdsn, tn_test_env("TENANCY_CA_FILE"));
  free(wdsn);
  struct tn_audit *w = open_trail(x, NULL, NULL, false);
  struct tn_audit_event ev = {
      .actor = "x", .action = "suspend", .target = "tenant/acme", .outcome = "started"};
  cr_assert_eq(tn_audit_append(w, &ev, NULL, &err), TN_ENOTFOUND);
  cr_assert(strstr(err.message, "older version") && strstr(err.message, "tenantctl audit init"), "%s",
            err.message);
  tn_audit_close(w);

  /* The owner's next start (any call) upgrades it, idempotently. */
  owner = open_trail(dsn(), NULL, NULL, false);
  append(owner, "suspend");
  tn_audit_close(owner);
  owner = open_trail(dsn(), NULL, NULL, false);
  append(owner, "resume");
  char *m =
      tn_test_pg_error(c, "BEGIN; SET LOCAL tenancy.audit_prune = 'on'; DELETE FROM %s.audit_events", schema);
  cr_assert(strstr(m, "inside the minimum retention"), "%s", m);
  free(m);
  char *v = tn_test_pg_value(
      c, "SELECT floor(extract(epoch FROM min_retention) / 86400) FROM %s.audit_settings", schema);
  cr_assert_str_eq(v, "90");
  free(v);
  struct tn_audit_verify_result r;
  cr_assert_eq(tn_audit_verify(owner, NULL, &r, &err), 0, "%s", err.message);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 3);
  tn_audit_close(owner);
  w = open_trail(x, NULL, NULL, false);
  append(w, "activate");
  tn_audit_close(w);
  drop_schema();
  tn_test_pg_role_drop(c, role);
  PQfinish(c);
}

Test(audit_security, the_head_exporter_publishes_the_newest_row) {
  new_schema();
  struct tn_audit *a = open_trail(dsn(), NULL, NULL, false);
  append(a, "create");
  append(a, "activate");
  struct tn_metrics *m = tn_metrics_new();
  cr_assert_not_null(m);
  struct tn_audit_head_exporter *x = NULL;
  cr_assert_eq(tn_audit_head_exporter_start(a, m, NULL, NULL, NULL, 0.2, &x), 0);
  struct tn_series *s =
      tn_metric_with(tn_metrics_register(m, TN_GAUGE, TN_AUDIT_HEAD_METRIC, NULL, NULL, NULL, 0), NULL);
  double t0 = tn_test_now();
  while (tn_series_value(s) != 2 && tn_test_now() - t0 < 10)
    usleep(50 * 1000);
  cr_assert_eq(tn_series_value(s), 2);
  append(a, "suspend");
  t0 = tn_test_now();
  while (tn_series_value(s) != 3 && tn_test_now() - t0 < 10)
    usleep(50 * 1000);
  cr_assert_eq(tn_series_value(s), 3);
  tn_audit_head_exporter_stop(x, false);
  tn_metrics_free(m);
  tn_audit_close(a);
  drop_schema();
}
