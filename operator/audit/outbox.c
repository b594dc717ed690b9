/* outbox.c - the transactional outbox (see outbox.h and docs/events/README.md).
 *
 * The database does the writing, as for the audit trail: audit_append_event() (SECURITY DEFINER)
 * appends the audit row through audit_append() (which takes the trail's advisory lock, held to
 * the commit) and then outbox_insert() under that same lock: the tenant's counter row is bumped
 * (INSERT ... ON CONFLICT DO UPDATE ... RETURNING), the global seq taken, and the event completed
 * with its time (the audit row's) and tenancysequence, all in one statement: the audit row and
 * its event commit together or not at all, seq order is commit order, and a rolled back append
 * leaves no gap in the tenant's sequence. The same event id appended again is stored once. */
#include "audit/outbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/cloudevents.h"
#include "util/uuid.h"

/* The first key of the trail's advisory lock: the same as audit.c's LOCK_CLASS ("TNAU"). */
#define LOCK_CLASS "1414414677"
#define TS_TEXT(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* The event EVENT (jsonb) of audit row AUDIT_ID written at AT into the outbox, unless an event with
 * its id is there already (then SEQ and TSEQ are that one's): PL/pgSQL statements, the names
 * those of variables of the enclosing block (ID a text one for the event's id), run under the
 * trail's lock. The tenant's counter row is bumped, the global seq taken, and the event completed
 * with its time (the audit row's) and tenancysequence. Shared by outbox_insert() and
 * audit_append_rows(), inline (a nested function call per event cost as much as its inserts). */
#define OUTBOX_PUT(AUDIT_ID, AT, TENANT, LABELS, EVENT, ID, SEQ, TSEQ)                                       \
  "  " ID " := " EVENT " ->> 'id';\n"                                                                        \
  "  IF " TENANT " IS NULL OR " TENANT " = '' OR jsonb_typeof(" EVENT ") IS DISTINCT FROM 'object'\n"        \
  "     OR coalesce(" ID ", '') = '' OR coalesce(" EVENT " ->> 'type', '') = ''\n"                           \
  "     OR (" EVENT " ->> 'subject') IS DISTINCT FROM 'tenant/' || " TENANT "\n"                             \
  "     OR jsonb_typeof(coalesce(" LABELS ", '{}'::jsonb)) <> 'object' THEN\n"                               \
  "    RAISE EXCEPTION 'outbox: an event needs a tenant, an object with id, type and subject "               \
  "tenant/<tenant>, '\n"                                                                                     \
  "      'and labels as an object' USING ERRCODE = 'invalid_parameter_value';\n"                             \
  "  END IF;\n"                                                                                              \
  "  SELECT o.seq, o.tenant_seq INTO " SEQ ", " TSEQ " FROM @S@.outbox o WHERE o.id = " ID ";\n"             \
  "  IF NOT FOUND THEN\n"                                                                                    \
  "    INSERT INTO @S@.outbox_tenants AS c (tenant, last_seq) VALUES (" TENANT ", 1)\n"                      \
  "      ON CONFLICT (tenant) DO UPDATE SET last_seq = c.last_seq + 1\n"                                     \
  "      RETURNING c.last_seq INTO " TSEQ ";\n"                                                              \
  "    " SEQ " := nextval('@S@.outbox_seq_seq');\n"                                                          \
  "    INSERT INTO @S@.outbox (seq, tenant, tenant_seq, id, type, audit_id, labels, event)\n"                \
  "    VALUES (" SEQ ", " TENANT ", " TSEQ ", " ID ", " EVENT " ->> 'type', " AUDIT_ID ",\n"                 \
  "            coalesce(" LABELS ", '{}'::jsonb),\n"                                                         \
  "            " EVENT " || jsonb_build_object('time', " TS_TEXT(                                            \
      "coalesce(" AT ", clock_timestamp())") ", 'tenancysequence', " TSEQ "));\n"                            \
                                             "  END IF;\n"

const char tn_outbox_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS @S@.outbox (\n"
    "  seq        bigserial PRIMARY KEY,\n"
    "  tenant     text NOT NULL,\n"
    "  tenant_seq bigint NOT NULL,\n"
    "  id         text NOT NULL UNIQUE,\n"
    "  type       text NOT NULL,\n"
    "  audit_id   bigint,\n"
    "  labels     jsonb NOT NULL DEFAULT '{}'::jsonb,\n"
    "  event      jsonb NOT NULL,\n"
    "  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),\n"
    "  CONSTRAINT outbox_tenant_seq_key UNIQUE (tenant, tenant_seq)\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS outbox_type_seq ON @S@.outbox (type, seq);\n"
    /* Schema 5: each statement that adds events announces it on channel <schema>_outbox when it
     * commits (NOTIFY is transactional; one per transaction and channel), so the delivery engine
     * fetches at once instead of polling. */
    "CREATE OR REPLACE FUNCTION @S@.outbox_announce() RETURNS trigger\n"
    "  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');\n"
    "  RETURN NULL;\n"
    "END $$;\n"
    "CREATE OR REPLACE TRIGGER outbox_announce AFTER INSERT ON @S@.outbox\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION @S@.outbox_announce();\n"
    "REVOKE ALL ON FUNCTION @S@.outbox_announce() FROM PUBLIC;\n"
    /* The last sequence number of each tenant. Kept when a tenant is deleted: a tenant created
     * again under the same name goes on from there, so (tenant, tenant_seq) stays unique. */
    "CREATE TABLE IF NOT EXISTS @S@.outbox_tenants (\n"
    "  tenant   text PRIMARY KEY,\n"
    "  last_seq bigint NOT NULL CHECK (last_seq > 0)\n"
    ");\n"
    "CREATE OR REPLACE FUNCTION @S@.outbox_insert(p_audit_id bigint, p_tenant text, p_labels jsonb,\n"
    "    p_event jsonb, OUT out_seq bigint, OUT out_tenant_seq bigint)\n"
    "  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$\n"
    "DECLARE\n"
    "  v_at timestamptz;\n"
    "  v_id text;\n"
    "BEGIN\n"
    "  PERFORM pg_advisory_xact_lock(" LOCK_CLASS ", '@S@.audit_events'::regclass::oid::int4);\n"
    "  SELECT e.at INTO v_at FROM @S@.audit_events e WHERE e.id = p_audit_id;\n" OUTBOX_PUT(
        "p_audit_id", "v_at", "p_tenant", "p_labels", "p_event", "v_id", "out_seq",
        "out_tenant_seq") "END $$;\n"
                          "CREATE OR REPLACE FUNCTION @S@.audit_append_event(p_actor text, p_action text, "
                          "p_target text,\n"
                          "    p_request_id text, p_correlation_id text, p_outcome text, p_generation_before "
                          "bigint,\n"
                          "    p_generation_after bigint, p_details json, p_tenant text, p_labels jsonb, "
                          "p_event jsonb,\n"
                          "    OUT out_id bigint, OUT out_hash text, OUT out_seq bigint, OUT out_tenant_seq "
                          "bigint)\n"
                          "  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
                          "BEGIN\n"
                          "  SELECT a.out_id, a.out_hash INTO out_id, out_hash\n"
                          "    FROM @S@.audit_append(p_actor, p_action, p_target, p_request_id, "
                          "p_correlation_id, p_outcome,\n"
                          "                          p_generation_before, p_generation_after, p_details) a;\n"
                          "  SELECT o.out_seq, o.out_tenant_seq INTO out_seq, out_tenant_seq\n"
                          "    FROM @S@.outbox_insert(out_id, p_tenant, p_labels, p_event) o;\n"
                          "END $$;\n"
                          /* Schema 6: several audit rows (and their events) in one call and one transaction,
                           * in the order given, under one take of the trail's lock: what the operator writes
                           * for one reconcile. p_rows is a JSON array of objects {actor, action, target,
                           * request_id, correlation_id, outcome, generation_before, generation_after, details
                           * (the JSON text, stored verbatim), and for an event tenant, labels and event (JSON
                           * texts)}; a missing key is NULL. One result row per element, in order. All rows or
                           * none. */
                          "CREATE OR REPLACE FUNCTION @S@.audit_append_rows(p_rows jsonb)\n"
                          "  RETURNS TABLE (out_id bigint, out_hash text, out_seq bigint)\n"
                          "  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
                          "DECLARE\n"
                          "  r jsonb;\n"
                          "  v_at timestamptz;\n"
                          "  v_tenant text;\n"
                          "  v_labels jsonb;\n"
                          "  v_event jsonb;\n"
                          "  v_id text;\n"
                          "  v_tenant_seq bigint;\n"
                          "BEGIN\n"
                          "  IF jsonb_typeof(p_rows) IS DISTINCT FROM 'array' THEN\n"
                          "    RAISE EXCEPTION 'audit_append_rows: the rows must be a JSON array'\n"
                          "      USING ERRCODE = 'invalid_parameter_value';\n"
                          "  END IF;\n"
                          "  PERFORM pg_advisory_xact_lock(" LOCK_CLASS
                          ", '@S@.audit_events'::regclass::oid::int4);\n"
                          "  FOR r IN SELECT e.value FROM jsonb_array_elements(p_rows) e LOOP\n"
                          "    IF jsonb_typeof(r) IS DISTINCT FROM 'object' THEN\n"
                          "      RAISE EXCEPTION 'audit_append_rows: each row must be a JSON object'\n"
                          "        USING ERRCODE = 'invalid_parameter_value';\n"
                          "    END IF;\n"
                          "    IF r ->> 'action' = 'audit.prune' THEN\n"
                          "      RAISE EXCEPTION 'action audit.prune is reserved for retention checkpoints'\n"
                          "        USING ERRCODE = 'invalid_parameter_value';\n"
                          "    END IF;\n"
                          "    INSERT INTO @S@.audit_events (id, at, actor, action, target, request_id, "
                          "correlation_id, outcome,\n"
                          "                                  generation_before, generation_after, details, "
                          "prev_hash, hash)\n"
                          "    VALUES (nextval('@S@.audit_events_id_seq'), clock_timestamp(), r ->> 'actor', "
                          "r ->> 'action',\n"
                          "            r ->> 'target', r ->> 'request_id', r ->> 'correlation_id', r ->> "
                          "'outcome',\n"
                          "            (r ->> 'generation_before')::bigint, (r ->> "
                          "'generation_after')::bigint,\n"
                          "            (r ->> 'details')::json, NULL, NULL)\n"
                          "    RETURNING id, hash, at INTO out_id, out_hash, v_at;\n"
                          "    out_seq := NULL;\n"
                          "    IF r ->> 'event' IS NOT NULL THEN\n"
                          "      v_tenant := r ->> 'tenant';\n"
                          "      v_labels := (r ->> 'labels')::jsonb;\n"
                          "      v_event := (r ->> 'event')::jsonb;\n" OUTBOX_PUT(
                              "out_id", "v_at", "v_tenant", "v_labels", "v_event", "v_id", "out_seq",
                              "v_tenant_seq") "    END IF;\n"
                                              "    RETURN NEXT;\n"
                                              "  END LOOP;\n"
                                              "END $$;\n"
                                              "REVOKE ALL ON @S@.outbox FROM PUBLIC;\n"
                                              "REVOKE ALL ON SEQUENCE @S@.outbox_seq_seq FROM PUBLIC;\n"
                                              "REVOKE ALL ON @S@.outbox_tenants FROM PUBLIC;\n"
                                              "REVOKE ALL ON FUNCTION @S@.outbox_insert(bigint, text, jsonb, "
                                              "jsonb) FROM PUBLIC;\n"
                                              "REVOKE ALL ON FUNCTION @S@.audit_append_rows(jsonb) FROM "
                                              "PUBLIC;\n"
                                              "REVOKE ALL ON FUNCTION @S@.audit_append_event(text, text, "
                                              "text, text, text, text, bigint, "
                                              "bigint, json,\n"
                                              "    text, jsonb, jsonb) FROM PUBLIC;\n";

/* What /work/OUTBOX.md gives the writer: INSERT/SELECT on the table, USAGE on its sequence; the
 * operator itself writes only through audit_append_event(). */
const char tn_outbox_grant_sql[] =
    "GRANT SELECT, INSERT ON @S@.outbox TO @R@;\n"
    "GRANT USAGE ON SEQUENCE @S@.outbox_seq_seq TO @R@;\n"
    "GRANT SELECT ON @S@.outbox_tenants TO @R@;\n"
    "GRANT EXECUTE ON FUNCTION @S@.audit_append_event(text, text, text, text, text, text, bigint, bigint,\n"
    "    json, text, jsonb, jsonb) TO @R@;\n"
    "GRANT EXECUTE ON FUNCTION @S@.audit_append_rows(jsonb) TO @R@;\n"
    "REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON @S@.outbox FROM @R@;\n"
    "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON @S@.outbox_tenants FROM @R@;\n";

void tn_outbox_event_cleanup(struct tn_outbox_event *ob) {
  if (!ob)
    return;
  free(ob->tenant);
  free(ob->labels);
  free(ob->event);
  *ob = (struct tn_outbox_event){0};
}

int tn_outbox_event_init(struct tn_outbox_event *ob, const char *cluster, const json_t *tenant,
                         const char *event, const char *correlation_id, const char *actor, const json_t *data,
                         struct tn_error *err) {
  *ob = (struct tn_outbox_event){0};
  const json_t *meta = json_object_get(tenant, "metadata");
  const char *name = json_string_value(json_object_get(meta, "name"));
  const char *uid = json_string_value(json_object_get(meta, "uid"));
  const json_t *labels = json_object_get(meta, "labels");
  char type[96], id[37];
  if (!name || !*name)
    return tn_error_set(err, TN_EINVALID, "outbox: the tenant has no metadata.name");
  if (tn_ce_type(event, type, sizeof type))
    return tn_error_set(err, TN_EINVALID, "outbox: unknown event \"%.64s\"", event ? event : "");
  const char *parts[] = {"tenancy.dev/outbox", uid ? uid : name, type, correlation_id};
  tn_uuid_from_parts(parts, sizeof parts / sizeof parts[0], id);
  struct tn_ce ce = {.id = id,
                     .cluster = cluster,
                     .event = event,
                     .tenant = name,
                     .correlation_id = correlation_id,
                     .actor = actor,
                     .data = data};
  json_t *ev = tn_ce_build(&ce, err);
  if (!ev)
    return err && err->code ? err->code : TN_EINVALID;
  ob->tenant = strdup(name);
  ob->labels = json_is_object(labels) ? json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
  ob->event = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(ev);
  if (!ob->tenant || !ob->labels || !ob->event) {
    tn_outbox_event_cleanup(ob);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  return 0;
}

/* ---- reading -------------------------------------------------------------------------------- */

#define ROW_COLUMNS                                                                                          \
  "seq, tenant, tenant_seq, id, type, audit_id, labels::text AS labels, " TS_TEXT(                           \
      "created_at") " AS created_at, event::text AS event"

static const char *str_at(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static json_t *int_or_null(const char *s) { return s ? json_integer(strtoll(s, NULL, 10)) : json_null(); }

/* A row of tn_audit_query (all text) as the documented object. */
static json_t *row_object(const json_t *r) {
  json_t *labels = json_loads(str_at(r, "labels") ? str_at(r, "labels") : "{}", 0, NULL);
  json_t *event = json_loads(str_at(r, "event") ? str_at(r, "event") : "null", JSON_DECODE_ANY, NULL);
  return json_pack(
      "{s:o, s:s, s:o, s:s, s:s, s:o, s:o, s:s, s:o}", "seq", int_or_null(str_at(r, "seq")), "tenant",
      str_at(r, "tenant") ? str_at(r, "tenant") : "", "tenantSeq", int_or_null(str_at(r, "tenant_seq")), "id",
      str_at(r, "id") ? str_at(r, "id") : "", "type", str_at(r, "type") ? str_at(r, "type") : "", "auditId",
      int_or_null(str_at(r, "audit_id")), "labels", labels ? labels : json_object(), "createdAt",
      str_at(r, "created_at") ? str_at(r, "created_at") : "", "event", event ? event : json_null());
}

static int rows_to_objects(json_t *rows, json_t **out, struct tn_error *err) {
  json_t *arr = json_array();
  size_t i;
  json_t *r;
  json_array_foreach(rows, i, r) {
    json_t *o = row_object(r);
    if (!arr || !o || json_array_append_new(arr, o)) {
      json_decref(arr);
      return tn_error_set(err, -ENOMEM, "out of memory");
    }
  }
  *out = arr;
  return 0;
}

int tn_outbox_list(struct tn_audit *a, const struct tn_outbox_filter *f, json_t **rows,
                   struct tn_error *err) {
  *rows = NULL;
  struct tn_outbox_filter none = {0};
  if (!f)
    f = &none;
  char type[128] = "", after[24], limit[24];
  if (f->type && *f->type) {
    if (tn_ce_event_known(f->type))
      tn_ce_type(f->type, type, sizeof type);
    else
      snprintf(type, sizeof type, "%s", f->type);
  }
  snprintf(after, sizeof after, "%lld", f->after_seq > 0 ? f->after_seq : 0);
  snprintf(limit, sizeof limit, "%lld", f->limit > 0 ? f->limit : 100);
  const char *params[] = {f->tenant && *f->tenant ? f->tenant : NULL, type[0] ? type : NULL, after, limit};
  json_t *raw = NULL;
  int rc =
      tn_audit_query(a,
                     "SELECT " ROW_COLUMNS " FROM @S@.outbox WHERE ($1::text IS NULL OR tenant = $1) "
                     "AND ($2::text IS NULL OR type = $2) AND seq > $3::bigint ORDER BY seq LIMIT $4::bigint",
                     4, params, &raw, err);
  if (rc == 0)
    rc = rows_to_objects(raw, rows, err);
  json_decref(raw);
  return rc;
}

int tn_outbox_show(struct tn_audit *a, const char *id, json_t **row, struct tn_error *err) {
  *row = NULL;
  const char *params[] = {id};
  json_t *raw = NULL, *objs = NULL;
  int rc = tn_audit_query(a, "SELECT " ROW_COLUMNS " FROM @S@.outbox WHERE id = $1", 1, params, &raw, err);
  if (rc == 0)
    rc = rows_to_objects(raw, &objs, err);
  json_decref(raw);
  if (rc == 0 && json_array_size(objs) == 0)
    rc = tn_error_set(err, TN_ENOTFOUND, "outbox: no event with id \"%.64s\"", id ? id : "");
  if (rc == 0)
    *row = json_incref(json_array_get(objs, 0));
  json_decref(objs);
  return rc;
}
