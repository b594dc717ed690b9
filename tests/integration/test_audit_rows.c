/* test_audit_rows.c - schema 6 of the audit trail (session 25: PostgreSQL CPU per tenant) against
 * the real PostgreSQL of the local stack:
 *   - tn_audit_append_many: several rows and their outbox events in one call and one
 *     transaction, in order, through the least-privilege writer role; the chain verifies (chain.c
 *     and the SQL audit_hash() agree on every row), details are stored verbatim, each event has
 *     its row's time and the tenant's next sequence, the outbox NOTIFY still fires once;
 *   - all or none: a batch with one bad row writes nothing (checked before sending, or refused
 *     by the database inside the transaction);
 *   - the trigger links and hashes a row inserted without prev_hash, and still refuses one that
 *     brings a prev_hash not chaining to the last row;
 *   - tampering with a row written by the new path (content, or a row removed) is detected and
 *     named by tn_audit_verify and `tenantctl audit verify`;
 *   - an existing schema 5 trail with rows is upgraded in place by its owner: the old rows and
 *     the new ones verify as one chain, the hash encoding is unchanged and now inlined.
 * Each test works in its own schema. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/outbox.h"
#include "tn_pg_test.h"
#include "tn_test.h"

static char schema[64];

static const char *dsn(void) { return tn_test_env("TENANCY_PG_DSN"); }

static void new_schema(void) {
  static int seq;
  snprintf(schema, sizeof schema, "tn_audrows_t%ld_%d", (long)getpid(), ++seq);
}

static PGconn *admin(void) { return tn_test_pg_connect(NULL); }

static void drop_schema(void) {
  PGconn *c = admin();
  PQclear(tn_test_pg_exec(c, "DROP SCHEMA IF EXISTS %s CASCADE", schema));
  PQfinish(c);
}

/* tmpl with every @S@ replaced by the test's schema (malloc'd). */
static char *subst(const char *tmpl) { return tn_test_pg_subst_schema(tmpl, schema); }

/* Runs a template (@S@ = schema) that must succeed. */
static void must(PGconn *c, const char *tmpl) {
  char *q = subst(tmpl);
  PGresult *r = PQexec(c, q);
  cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", q,
            PQresultErrorMessage(r));
  PQclear(r);
  free(q);
}

static long long count(PGconn *c, const char *table) {
  char *v = tn_test_pg_value(c, "SELECT count(*) FROM %s.%s", schema, table);
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

static struct tn_audit_verify_result verify(struct tn_audit *a) {
  struct tn_audit_verify_result r;
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_verify(a, NULL, &r, &err), 0, "verify: %s", err.message);
  return r;
}

/* A Tenant as the operator reads it (what tn_outbox_event_init looks at). */
static json_t *tenant_obj(const char *name) {
  return json_pack("{s:{s:s, s:s, s:I, s:{s:s}}}", "metadata", "name", name, "uid", "6f1d2c1e-uid-rows",
                   "generation", (json_int_t)1, "labels", "team", "blue");
}

/* The rows of one reconcile of a new tenant: the two "succeeded" transitions with their events,
 * as the reconciler's audit_steps writes them. */
struct batch {
  struct tn_outbox_event ob[2];
  struct tn_audit_event ev[3];
};

static void batch_init(struct batch *b, const char *cid_suffix) {
  *b = (struct batch){0};
  json_t *t = tenant_obj("acme");
  struct tn_error err = {0};
  static char cids[2][64];
  snprintf(cids[0], sizeof cids[0], "c0-%s", cid_suffix);
  snprintf(cids[1], sizeof cids[1], "c1-%s", cid_suffix);
  json_t *data = json_pack("{s:s}", "to", "Draft");
  cr_assert_eq(tn_outbox_event_init(&b->ob[0], "test", t, "created", cids[0], "jane", data, &err), 0, "%s",
               err.message);
  json_decref(data);
  data = json_pack("{s:s}", "to", "Active");
  cr_assert_eq(tn_outbox_event_init(&b->ob[1], "test", t, "activated", cids[1], "jane", data, &err), 0, "%s",
               err.message);
  json_decref(data);
  json_decref(t);
  b->ev[0] = (struct tn_audit_event){.actor = "jane",
                                     .action = "create",
                                     .target = "tenant/acme",
                                     .request_id = "314",
                                     .correlation_id = cids[0],
                                     .outcome = TN_AUDIT_SUCCEEDED,
                                     .generation_before = 1,
                                     .generation_after = 1,
                                     .details = "{\"from\": \"\",  \"to\":\"Draft\", \"note\": \"a|b\\n\"}",
                                     .outbox = &b->ob[0]};
  b->ev[1] = (struct tn_audit_event){.actor = "Zo\xc3\xab \"admin\"\n<zoe@acme.example>",
                                     .action = "activate",
                                     .target = "tenant/acme",
                                     .correlation_id = cids[1],
                                     .outcome = TN_AUDIT_SUCCEEDED,
                                     .generation_after = 1,
                                     .outbox = &b->ob[1]};
  /* A row without an event between (and after) rows with one. */
  b->ev[2] = (struct tn_audit_event){
      .actor = "tenancy-operator", .action = "repair-drift", .target = "tenant/acme", .outcome = "succeeded"};
}

static void batch_cleanup(struct batch *b) {
  tn_outbox_event_cleanup(&b->ob[0]);
  tn_outbox_event_cleanup(&b->ob[1]);
}

/* Waits up to 5 s for a notification on c's channel; returns how many arrived. */
static int notifications(PGconn *c) {
  int n = 0;
  double t0 = tn_test_now();
  while (tn_test_now() - t0 < 2.0) {
    int fd = PQsocket(c);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(fd, &rd);
    struct timeval tv = {0, 200 * 1000};
    select(fd + 1, &rd, NULL, NULL, &tv);
    PQconsumeInput(c);
    PGnotify *nt;
    while ((nt = PQnotifies(c))) {
      n++;
      PQfreemem(nt);
    }
    if (n > 0 && tn_test_now() - t0 > 0.5)
      break;
  }
  return n;
}

Test(audit_rows, several_rows_and_events_in_one_call_through_the_writer_role) {
  new_schema();
  PGconn *c = admin();
  char role[96];
  snprintf(role, sizeof role, "%s_writer", schema);
  tn_test_pg_role_create(c, role, "writer-pw-123");
  struct tn_audit *owner = open_trail(dsn(), true);
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_init(owner, role, &err), 0, "%s", err.message);
  char *wdsn = tn_test_pg_dsn(role, "writer-pw-123", NULL, NULL);
  struct tn_audit *w = open_trail(wdsn, true);

  /* A listener on the outbox channel, as the delivery engine is. */
  PGconn *l = admin();
  char listen[128];
  snprintf(listen, sizeof listen, "LISTEN %s_outbox", schema);
  PQclear(tn_test_pg_exec(l, "%s", listen));

  struct batch b;
  batch_init(&b, "one");
  long long ids[3] = {0};
  cr_assert_eq(tn_audit_append_many(w, b.ev, 3, ids, &err), 0, "%s", err.message);
  cr_assert_eq(ids[0], 1);
  cr_assert_eq(ids[1], 2);
  cr_assert_eq(ids[2], 3);
  cr_assert_eq(notifications(l), 1, "one NOTIFY per committed batch");
  /* A single row goes the same way. */
  long long id = 0;
  cr_assert_eq(tn_audit_append(w, &b.ev[2], &id, &err), 0, "%s", err.message);
  cr_assert_eq(id, 4);
  struct tn_audit_stats st;
  tn_audit_get_stats(w, &st);
  cr_assert_eq(st.appends, 4);

  struct tn_audit_verify_result r = verify(w);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 4);
  /* chain.c (verify, above) and the SQL encoding agree on every row. */
  char *v = tn_test_pg_value(
      c,
      "SELECT count(*) FROM %s.audit_events WHERE hash <> %s.audit_hash(id, at, actor, action, target, "
      "request_id, correlation_id, outcome, generation_before, generation_after, details, prev_hash)",
      schema, schema);
  cr_assert_str_eq(v, "0");
  free(v);
  /* Stored as given: details verbatim (json), NULLs as NULL, the order of the call. */
  v = tn_test_pg_value(c, "SELECT details FROM %s.audit_events WHERE id = 1", schema);
  cr_assert_str_eq(v, "{\"from\": \"\",  \"to\":\"Draft\", \"note\": \"a|b\\n\"}");
  free(v);
  v = tn_test_pg_value(
      c,
      "SELECT concat_ws('|', actor, action, coalesce(request_id, 'NULL'), "
      "coalesce(generation_before::text, 'NULL'), generation_after, coalesce(details::text, 'NULL')) "
      "FROM %s.audit_events WHERE id = 2",
      schema);
  cr_assert_str_eq(v, "Zo\xc3\xab \"admin\"\n<zoe@acme.example>|activate|NULL|NULL|1|NULL");
  free(v);
  /* Two events, for rows 1 and 2, with their rows' times and the tenant's sequence 1, 2. */
  v = tn_test_pg_value(
      c,
      "SELECT string_agg(o.audit_id || ':' || o.tenant_seq || ':' || o.type || ':' || "
      "((o.event ->> 'time') = to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))::text "
      "|| ':' "
      "|| (o.event ->> 'tenancysequence') || ':' || (o.labels ->> 'team'), ',' ORDER BY o.seq) "
      "FROM %s.outbox o JOIN %s.audit_events e ON e.id = o.audit_id",
      schema, schema);
  cr_assert_str_eq(
      v, "1:1:dev.tenancy.tenant.created.v1:true:1:blue,2:2:dev.tenancy.tenant.activated.v1:true:2:blue");
  free(v);

  /* The same batch again (a retry after an unknown commit): rows again, each event stored once. */
  cr_assert_eq(tn_audit_append_many(w, b.ev, 2, NULL, &err), 0, "%s", err.message);
  cr_assert_eq(count(c, "audit_events"), 6);
  cr_assert_eq(count(c, "outbox"), 2);
  r = verify(w);
  cr_assert(r.ok, "%s", r.problem);
  batch_cleanup(&b);

  /* The writer reaches the function, not what is behind it. */
  PGconn *wc = PQconnectdb(wdsn);
  cr_assert_eq(PQstatus(wc), CONNECTION_OK, "%s", PQerrorMessage(wc));
  const char *denied[] = {
      "SELECT @S@.audit_insert('x', 'y', 'z', NULL, NULL, 'o', NULL, NULL, NULL)",
      "SELECT @S@.outbox_insert(1, 'acme', '{}', "
      "'{\"id\":\"x\",\"type\":\"t\",\"subject\":\"tenant/acme\"}')",
      "INSERT INTO @S@.audit_events (id, at, actor, action, target, outcome) VALUES (99, now(), 'x', 'y', "
      "'z', "
      "'o')",
  };
  for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
    char *q = subst(denied[i]);
    PGresult *res = PQexec(wc, q);
    cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "writer could run: %s", q);
    cr_assert(strstr(PQresultErrorMessage(res), "permission denied"), "%s: %s", q, PQresultErrorMessage(res));
    PQclear(res);
    free(q);
  }
  PQfinish(wc);
  PQfinish(l);
  free(wdsn);
  tn_audit_close(w);
  tn_audit_close(owner);
  drop_schema();
  tn_test_pg_role_drop(c, role);
  PQfinish(c);
}

Test(audit_rows, a_batch_with_one_bad_row_writes_nothing) {
  new_schema();
  PGconn *c = admin();
  struct tn_audit *a = open_trail(dsn(), false);
  struct tn_error err = {0};
  struct batch b;
  batch_init(&b, "two");
  cr_assert_eq(tn_audit_append_many(a, b.ev, 1, NULL, &err), 0, "%s", err.message);

  /* Refused before anything is sent: a reserved action, details that are not JSON, a missing
   * outcome, in the last row. */
  struct tn_audit_event evs[3] = {b.ev[1], b.ev[2], b.ev[2]};
  evs[2].action = TN_AUDIT_ACTION_PRUNE;
  cr_assert_eq(tn_audit_append_many(a, evs, 3, NULL, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "reserved"), "%s", err.message);
  evs[2] = b.ev[2];
  evs[2].details = "{not json";
  cr_assert_eq(tn_audit_append_many(a, evs, 3, NULL, &err), TN_EINVALID);
  evs[2] = b.ev[2];
  evs[2].outcome = NULL;
  cr_assert_eq(tn_audit_append_many(a, evs, 3, NULL, &err), TN_EINVALID);
  /* Not UTF-8 (PostgreSQL would refuse it too). */
  evs[2] = b.ev[2];
  evs[2].actor = "bad \xff actor";
  cr_assert_eq(tn_audit_append_many(a, evs, 3, NULL, &err), TN_EINVALID);

  /* Refused by the database inside the transaction: the last row's event does not name its
   * tenant as subject. The rows before it are rolled back with it. */
  struct tn_outbox_event bad = {0};
  json_t *t = tenant_obj("other");
  cr_assert_eq(tn_outbox_event_init(&bad, "test", t, "suspended", "c-bad", "jane", NULL, &err), 0, "%s",
               err.message);
  json_decref(t);
  free(bad.tenant);
  bad.tenant = strdup("acme"); /* subject tenant/other, tenant acme */
  evs[2] = b.ev[2];
  evs[2].outbox = &bad;
  cr_assert_eq(tn_audit_append_many(a, evs, 3, NULL, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "subject"), "%s", err.message);
  tn_outbox_event_cleanup(&bad);

  cr_assert_eq(count(c, "audit_events"), 1);
  cr_assert_eq(count(c, "outbox"), 1);
  char *v = tn_test_pg_value(c, "SELECT last_seq FROM %s.outbox_tenants WHERE tenant = 'acme'", schema);
  cr_assert_str_eq(v, "1", "a rolled back batch leaves no gap in the tenant's sequence");
  free(v);
  /* The rolled back ids leave a gap in ids, not in the chain. */
  long long ids[2];
  cr_assert_eq(tn_audit_append_many(a, b.ev + 1, 2, ids, &err), 0, "%s", err.message);
  cr_assert_lt(ids[0], ids[1]);
  struct tn_audit_verify_result r = verify(a);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 3);
  /* The function checks its argument itself (a caller other than this module). */
  char *m = tn_test_pg_error(c, "SELECT * FROM %s.audit_append_rows('{\"actor\": \"x\"}')", schema);
  cr_assert(strstr(m, "must be a JSON array"), "%s", m);
  free(m);
  m = tn_test_pg_error(
      c,
      "SELECT * FROM %s.audit_append_rows('[{\"actor\":\"x\",\"action\":\"audit.prune\",\"target\":\"audit\","
      "\"outcome\":\"succeeded\"}]')",
      schema);
  cr_assert(strstr(m, "reserved"), "%s", m);
  free(m);
  cr_assert_eq(count(c, "audit_events"), 3);
  batch_cleanup(&b);
  tn_audit_close(a);
  drop_schema();
  PQfinish(c);
}

Test(audit_rows, the_trigger_links_a_row_without_prev_hash_and_refuses_a_fork) {
  new_schema();
  PGconn *c = admin();
  struct tn_audit *a = open_trail(dsn(), false);
  struct tn_error err = {0};
  struct batch b;
  batch_init(&b, "three");
  cr_assert_eq(tn_audit_append_many(a, b.ev, 3, NULL, &err), 0, "%s", err.message);
  /* The owner inserting directly without prev_hash: linked to the last row and hashed. */
  must(c, "INSERT INTO @S@.audit_events (id, at, actor, action, target, outcome) "
          "VALUES (nextval('@S@.audit_events_id_seq'), now(), 'owner', 'note', 'tenant/acme', 'succeeded')");
  char *v = tn_test_pg_value(c,
                             "SELECT (SELECT prev_hash FROM %s.audit_events WHERE id = 4) = "
                             "(SELECT hash FROM %s.audit_events WHERE id = 3)",
                             schema, schema);
  cr_assert_str_eq(v, "t");
  free(v);
  struct tn_audit_verify_result r = verify(a);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 4);
  /* A prev_hash that is not the last row's hash (a fork) is still refused, as is an id that
   * does not follow the last one. */
  char *m = tn_test_pg_error(
      c,
      "INSERT INTO %s.audit_events (id, at, actor, action, target, outcome, prev_hash, hash) "
      "SELECT nextval('%s.audit_events_id_seq'), now(), 'x', 'y', 'tenant/acme', 'o', "
      "prev_hash, repeat('1', 64) FROM %s.audit_events WHERE id = 4",
      schema, schema, schema);
  cr_assert(strstr(m, "does not chain to the last row"), "%s", m);
  free(m);
  m = tn_test_pg_error(c,
                       "INSERT INTO %s.audit_events (id, at, actor, action, target, outcome) "
                       "VALUES (2, now(), 'x', 'y', 'tenant/acme', 'o')",
                       schema);
  cr_assert(strstr(m, "would not follow the last row"), "%s", m);
  free(m);
  batch_cleanup(&b);
  tn_audit_close(a);
  drop_schema();
  PQfinish(c);
}

/* The superuser bypasses the triggers (the documented way to tamper). */
static void tamper(PGconn *c, const char *tmpl) {
  PQclear(tn_test_pg_exec(c, "SET session_replication_role = replica"));
  must(c, tmpl);
  PQclear(tn_test_pg_exec(c, "SET session_replication_role = origin"));
}

Test(audit_rows, tampering_with_rows_of_the_new_path_is_detected) {
  new_schema();
  PGconn *c = admin();
  struct tn_audit *a = open_trail(dsn(), false);
  struct tn_error err = {0};
  struct batch b;
  batch_init(&b, "four");
  for (int i = 0; i < 3; i++)
    cr_assert_eq(tn_audit_append_many(a, b.ev, 3, NULL, &err), 0, "%s", err.message);
  struct tn_audit_verify_result r = verify(a);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 9);
  char *out = NULL;
  char args[256];
  snprintf(args, sizeof args, "'%s' audit verify --schema %s", tn_test_env("TENANCY_TENANTCTL_BIN"), schema);
  cr_assert_eq(tn_test_sh(&out, "%s", args), 0, "%s", out);
  free(out);

  /* One changed outcome in the middle of a batch. */
  tamper(c, "UPDATE @S@.audit_events SET outcome = 'failed' WHERE id = 5");
  r = verify(a);
  cr_assert_not(r.ok);
  cr_assert_eq(r.bad_id, 5);
  cr_assert(strstr(r.problem, "row 5: hash mismatch"), "%s", r.problem);
  cr_assert_eq(tn_test_sh(&out, "%s", args), 1, "%s", out);
  cr_assert(strstr(out, "row 5: hash mismatch"), "%s", out);
  free(out);
  tamper(c, "UPDATE @S@.audit_events SET outcome = 'succeeded' WHERE id = 5");
  r = verify(a);
  cr_assert(r.ok, "restored: %s", r.problem);

  /* Verbatim details: one space added is a change. */
  tamper(c, "UPDATE @S@.audit_events SET details = (details::text || ' ')::json WHERE id = 7");
  r = verify(a);
  cr_assert_not(r.ok);
  cr_assert_eq(r.bad_id, 7);
  tamper(c, "UPDATE @S@.audit_events SET details = rtrim(details::text)::json WHERE id = 7");

  /* A row removed from the middle. */
  tamper(c, "DELETE FROM @S@.audit_events WHERE id = 6");
  r = verify(a);
  cr_assert_not(r.ok);
  cr_assert_eq(r.bad_id, 7);
  cr_assert(strstr(r.problem, "prev_hash does not match row 5"), "%s", r.problem);
  batch_cleanup(&b);
  tn_audit_close(a);
  drop_schema();
  PQfinish(c);
}

/* Schema 5's writer, as it was: the hash computed by audit_insert with the IMMUTABLE field
 * function (never inlined), the last row read twice, the trigger checking only. */
static const char schema5_sql[] =
    "CREATE OR REPLACE FUNCTION @S@.audit_field_text(v text) RETURNS bytea\n"
    "  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$\n"
    "  SELECT CASE WHEN v IS NULL THEN decode('00', 'hex')\n"
    "    ELSE decode('02', 'hex') || int8send(octet_length(convert_to(v, 'UTF8'))::bigint) || convert_to(v, "
    "'UTF8')\n"
    "  END $$;\n"
    "CREATE OR REPLACE FUNCTION @S@.audit_events_link() RETURNS trigger\n"
    "  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$\n"
    "DECLARE\n"
    "  v_id bigint;\n"
    "  v_hash text;\n"
    "BEGIN\n"
    "  SELECT e.id, e.hash INTO v_id, v_hash FROM @S@.audit_events e ORDER BY e.id DESC LIMIT 1;\n"
    "  IF v_id IS NULL THEN\n"
    "    v_hash := repeat('0', 64);\n"
    "  ELSIF NEW.id <= v_id THEN\n"
    "    RAISE EXCEPTION 'audit row % would not follow the last row %', NEW.id, v_id\n"
    "      USING ERRCODE = 'serialization_failure';\n"
    "  END IF;\n"
    "  IF NEW.prev_hash <> v_hash THEN\n"
    "    RAISE EXCEPTION 'audit row % does not chain to the last row', NEW.id USING ERRCODE = "
    "'serialization_failure';\n"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END $$;\n"
    "CREATE OR REPLACE FUNCTION @S@.audit_insert(p_actor text, p_action text, p_target text, p_request_id "
    "text,\n"
    "    p_correlation_id text, p_outcome text, p_generation_before bigint, p_generation_after bigint,\n"
    "    p_details json, OUT out_id bigint, OUT out_hash text)\n"
    "  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$\n"
    "DECLARE\n"
    "  v_prev text;\n"
    "  v_at timestamptz;\n"
    "BEGIN\n"
    "  PERFORM pg_advisory_xact_lock(1414414677, '@S@.audit_events'::regclass::oid::int4);\n"
    "  SELECT e.hash INTO v_prev FROM @S@.audit_events e ORDER BY e.id DESC LIMIT 1;\n"
    "  v_prev := coalesce(v_prev, repeat('0', 64));\n"
    "  out_id := nextval('@S@.audit_events_id_seq');\n"
    "  v_at := clock_timestamp();\n"
    "  out_hash := @S@.audit_hash(out_id, v_at, p_actor, p_action, p_target, p_request_id, "
    "p_correlation_id,\n"
    "                             p_outcome, p_generation_before, p_generation_after, p_details, v_prev);\n"
    "  INSERT INTO @S@.audit_events (id, at, actor, action, target, request_id, correlation_id, outcome,\n"
    "                                generation_before, generation_after, details, prev_hash, hash)\n"
    "  VALUES (out_id, v_at, p_actor, p_action, p_target, p_request_id, p_correlation_id, p_outcome,\n"
    "          p_generation_before, p_generation_after, p_details, v_prev, out_hash);\n"
    "END $$;\n"
    "DROP FUNCTION @S@.audit_append_rows(jsonb);\n"
    "COMMENT ON TABLE @S@.audit_events IS 'tenancy-operator audit trail (schema 5): append-only and "
    "hash-chained; see docs/audit.md';\n";

Test(audit_rows, a_schema_5_trail_is_upgraded_in_place_and_verifies_as_one_chain) {
  new_schema();
  PGconn *c = admin();
  char role[96];
  snprintf(role, sizeof role, "%s_writer", schema);
  tn_test_pg_role_create(c, role, "writer-pw-123");
  struct tn_audit *owner = open_trail(dsn(), true);
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_init(owner, role, &err), 0, "%s", err.message);
  tn_audit_close(owner);
  /* Back to schema 5, and rows written by its functions (as the operator of session 24 did). */
  must(c, schema5_sql);
  for (int i = 0; i < 3; i++)
    must(c, "SELECT @S@.audit_append('jane', 'activate', 'tenant/acme', 'r', 'c', 'started', 1, 2, "
            "'{\"a\": 1}')");
  must(c,
       "SELECT @S@.audit_append_event('jane', 'activate', 'tenant/acme', NULL, 'c', 'succeeded', NULL, 2, "
       "NULL, 'acme', '{}', '{\"id\": \"ev-5\", \"type\": \"dev.tenancy.tenant.activated.v1\", \"subject\": "
       "\"tenant/acme\"}')");
  char *old_head = tn_test_pg_value(c, "SELECT hash FROM %s.audit_events WHERE id = 4", schema);
  char *v = tn_test_pg_value(c, "SELECT provolatile FROM pg_proc WHERE oid = '%s.audit_field_text'::regproc",
                             schema);
  cr_assert_str_eq(v, "i");
  free(v);

  /* The writer cannot upgrade it (a clear error, nothing written); the owner's next start does. */
  char *wdsn = tn_test_pg_dsn(role, "writer-pw-123", NULL, NULL);
  struct tn_audit *w = open_trail(wdsn, false);
  struct batch b;
  batch_init(&b, "five");
  cr_assert_eq(tn_audit_append_many(w, b.ev, 3, NULL, &err), TN_ENOTFOUND);
  cr_assert(strstr(err.message, "older version") && strstr(err.message, "tenantctl audit init"), "%s",
            err.message);
  tn_audit_close(w);
  cr_assert_eq(count(c, "audit_events"), 4);
  owner = open_trail(dsn(), false);
  struct tn_audit_verify_result r = verify(owner);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 4);
  v = tn_test_pg_value(c, "SELECT obj_description('%s.audit_events'::regclass, 'pg_class')", schema);
  cr_assert(strstr(v, "(schema 6)"), "%s", v);
  free(v);
  v = tn_test_pg_value(c, "SELECT provolatile FROM pg_proc WHERE oid = '%s.audit_field_text'::regproc",
                       schema);
  cr_assert_str_eq(v, "s", "the field encoding is STABLE now (inlined into audit_hash)");
  free(v);
  /* The old rows are untouched. */
  v = tn_test_pg_value(c, "SELECT hash FROM %s.audit_events WHERE id = 4", schema);
  cr_assert_str_eq(v, old_head);
  free(v);
  free(old_head);

  /* The writer appends through the new function (granted by the owner's init) after the old rows. */
  tn_audit_close(owner);
  owner = open_trail(dsn(), true);
  cr_assert_eq(tn_audit_init(owner, role, &err), 0, "%s", err.message);
  w = open_trail(wdsn, false);
  long long ids[3];
  cr_assert_eq(tn_audit_append_many(w, b.ev, 3, ids, &err), 0, "%s", err.message);
  cr_assert_eq(ids[0], 5);
  /* The old functions still work after the upgrade (an older operator during a rolling upgrade). */
  must(c,
       "SELECT @S@.audit_append('jane', 'suspend', 'tenant/acme', NULL, NULL, 'started', NULL, NULL, NULL)");
  r = verify(w);
  cr_assert(r.ok, "%s", r.problem);
  cr_assert_eq(r.rows, 8);
  cr_assert_eq(r.first_id, 1);
  v = tn_test_pg_value(
      c,
      "SELECT count(*) FROM %s.audit_events WHERE hash <> %s.audit_hash(id, at, actor, action, target, "
      "request_id, correlation_id, outcome, generation_before, generation_after, details, prev_hash)",
      schema, schema);
  cr_assert_str_eq(v, "0");
  free(v);
  /* The outbox goes on: the tenant's sequence continues from the schema 5 event. */
  v = tn_test_pg_value(c, "SELECT string_agg(tenant_seq::text, ',' ORDER BY seq) FROM %s.outbox", schema);
  cr_assert_str_eq(v, "1,2,3");
  free(v);
  /* A tampered old row is still named after the upgrade. */
  tamper(c, "UPDATE @S@.audit_events SET actor = 'mallory' WHERE id = 2");
  r = verify(w);
  cr_assert_not(r.ok);
  cr_assert_eq(r.bad_id, 2);
  batch_cleanup(&b);
  free(wdsn);
  tn_audit_close(w);
  tn_audit_close(owner);
  drop_schema();
  tn_test_pg_role_drop(c, role);
  PQfinish(c);
}
