/* audit.c - the audit trail in PostgreSQL (see audit.h and docs/internals/audit.md).
 *
 * The database does the writing: audit_append() (SECURITY DEFINER) takes a transaction-scoped
 * advisory lock on the table, reads the last hash, takes the next id and the clock, computes the
 * row's hash with the same canonical encoding as chain.c and inserts, all in one statement, so
 * every writer of every replica is serialized and a row is never half written. This file only
 * connects, calls those functions, and verifies with chain.c what the database wrote.
 *
 * Threads: one connection, protected with its state by tn_audit.mu; every public function holds
 * mu for its whole duration (appends are serialized by the database lock anyway). No other lock
 * is taken while mu is held. */
#include "audit/audit.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/outbox.h" /* OUTBOX (issue 14) */
#include "util/buf.h"
#include "util/fence.h"
#include "webhooks/delivery.h" /* OUTBOX (issue 14): its tables are created with the trail */

/* The first key of the two-key advisory lock (the second is the table's oid): "TNAU". */
#define LOCK_CLASS "1414414677"
/* The second key of the lock serializing creation (any schema of this database). */
#define DDL_LOCK "hashtext(current_database() || '/tenancy-audit-ddl')"
#define SCHEMA_MARK "tenancy-operator audit trail (schema 6): append-only and hash-chained; see docs/audit.md"
#define AT_TEXT "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#define COLUMNS                                                                                              \
  "id, " AT_TEXT ", actor, action, target, request_id, correlation_id, outcome, generation_before, "         \
  "generation_after, details, prev_hash, hash"
#define FETCH_ROWS 1000
#define FETCH_ROWS_S "1000"

/* The objects of the trail; @S@ is the schema. Every statement is idempotent. Function bodies are
 * dollar-quoted SQL/PL/pgSQL (PostgreSQL 11 and later). */
static const char schema_sql[] =
    "SET LOCAL client_min_messages = warning;\n"
    "CREATE SCHEMA IF NOT EXISTS @S@;\n"
    "CREATE TABLE IF NOT EXISTS @S@.audit_events (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  at timestamptz NOT NULL,\n"
    "  actor text NOT NULL,\n"
    "  action text NOT NULL,\n"
    "  target text NOT NULL,\n"
    "  request_id text,\n"
    "  correlation_id text,\n"
    "  outcome text NOT NULL,\n"
    "  generation_before bigint CHECK (generation_before >= 0),\n"
    "  generation_after bigint CHECK (generation_after >= 0),\n"
    "  details json,\n"
    "  prev_hash text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),\n"
    "  hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),\n"
    "  CONSTRAINT audit_events_hash_key UNIQUE (hash),\n"
    "  CONSTRAINT audit_events_prev_hash_key UNIQUE (prev_hash)\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS audit_events_target_id ON @S@.audit_events (target, id);\n"
    "CREATE INDEX IF NOT EXISTS audit_events_correlation_id ON @S@.audit_events (correlation_id);\n"
    "CREATE INDEX IF NOT EXISTS audit_events_action_id ON @S@.audit_events (action, id);\n"
    "CREATE INDEX IF NOT EXISTS audit_events_at ON @S@.audit_events (at);\n"
    /* The canonical encoding of chain.c, field by field. Schema 6: STABLE, as convert_to() is:
     * an IMMUTABLE SQL function over a STABLE one is never inlined, and was run as a function
     * call of its own for each of the 9 text fields of every row (a third of an append's
     * PostgreSQL CPU). Inlined, audit_hash() is one expression. The encoding is unchanged. */
    "CREATE OR REPLACE FUNCTION @S@.audit_field_text(v text) RETURNS bytea\n"
    "  LANGUAGE sql STABLE PARALLEL SAFE AS $$\n"
    "  SELECT CASE WHEN v IS NULL THEN decode('00', 'hex')\n"
    "    ELSE decode('02', 'hex') || int8send(octet_length(convert_to(v, 'UTF8'))::bigint) || convert_to(v, "
    "'UTF8')\n"
    "  END $$;\n"
    "CREATE OR REPLACE FUNCTION @S@.audit_field_int(v bigint) RETURNS bytea\n"
    "  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$\n"
    "  SELECT CASE WHEN v IS NULL THEN decode('00', 'hex') ELSE decode('01', 'hex') || int8send(v) END $$;\n"
    "CREATE OR REPLACE FUNCTION @S@.audit_hash(p_id bigint, p_at timestamptz, p_actor text, p_action text,\n"
    "    p_target text, p_request_id text, p_correlation_id text, p_outcome text, p_generation_before "
    "bigint,\n"
    "    p_generation_after bigint, p_details json, p_prev_hash text) RETURNS text\n"
    "  LANGUAGE sql STABLE PARALLEL SAFE AS $$\n"
    "  SELECT encode(sha256(convert_to('TNAUDIT1', 'UTF8')\n"
    "    || @S@.audit_field_int(p_id)\n"
    "    || @S@.audit_field_text(to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))\n"
    "    || @S@.audit_field_text(p_actor) || @S@.audit_field_text(p_action) || "
    "@S@.audit_field_text(p_target)\n"
    "    || @S@.audit_field_text(p_request_id) || @S@.audit_field_text(p_correlation_id)\n"
    "    || @S@.audit_field_text(p_outcome) || @S@.audit_field_int(p_generation_before)\n"
    "    || @S@.audit_field_int(p_generation_after) || @S@.audit_field_text(p_details::text)\n"
    "    || @S@.audit_field_text(p_prev_hash)), 'hex') $$;\n"
    /* The minimum retention (schema 2): a single row, owned by the owner; it can only be raised.
     * The writer role may read it, never change it. */
    "CREATE TABLE IF NOT EXISTS @S@.audit_settings (\n"
    "  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),\n"
    "  min_retention interval NOT NULL DEFAULT interval '" TN_AUDIT_MIN_RETENTION_DEFAULT_DAYS_S " days'\n"
    "    CHECK (min_retention >= interval '0')\n"
    ");\n"
    "INSERT INTO @S@.audit_settings (singleton) VALUES (true) ON CONFLICT DO NOTHING;\n"
    "CREATE OR REPLACE FUNCTION @S@.audit_settings_guard() RETURNS trigger\n"
    "  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  IF TG_OP = 'UPDATE' AND NEW.singleton AND NEW.min_retention >= OLD.min_retention THEN\n"
    "    RETURN NEW;\n"
    "  END IF;\n"
    "  RAISE EXCEPTION '%.audit_settings: the minimum retention can only be raised (% is refused)',\n"
    "    TG_TABLE_SCHEMA, TG_OP USING ERRCODE = 'insufficient_privilege';\n"
    "END $$;\n"
    "DROP TRIGGER IF EXISTS audit_settings_raise_only ON @S@.audit_settings;\n"
    "CREATE TRIGGER audit_settings_raise_only BEFORE UPDATE OR DELETE ON @S@.audit_settings\n"
    "  FOR EACH ROW EXECUTE FUNCTION @S@.audit_settings_guard();\n"
    "DROP TRIGGER IF EXISTS audit_settings_no_truncate ON @S@.audit_settings;\n"
    "CREATE TRIGGER audit_settings_no_truncate BEFORE TRUNCATE ON @S@.audit_settings\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION @S@.audit_settings_guard();\n"
    "CREATE OR REPLACE FUNCTION @S@.audit_min_retention() RETURNS interval\n"
    "  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$\n"
    "  SELECT coalesce((SELECT s.min_retention FROM @S@.audit_settings s WHERE s.singleton),\n"
    "                  interval '" TN_AUDIT_MIN_RETENTION_DEFAULT_DAYS_S " days') $$;\n"
    /* UPDATE, DELETE and TRUNCATE are refused. Only audit_prune() deletes, with a transaction-local
     * setting; even then (whoever set it: only a role holding DELETE, i.e. the owner, gets this far)
     * a row inside the minimum retention and the newest row are never removed, so the setting cannot
     * cut the tail. The writer role holds no DELETE at all. */
    "CREATE OR REPLACE FUNCTION @S@.audit_events_guard() RETURNS trigger\n"
    "  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  IF TG_OP = 'DELETE' AND current_setting('tenancy.audit_prune', true) = 'on' THEN\n"
    "    IF OLD.at >= now() - @S@.audit_min_retention() THEN\n"
    "      RAISE EXCEPTION '%.audit_events: row % is inside the minimum retention (%) and is kept',\n"
    "        TG_TABLE_SCHEMA, OLD.id, @S@.audit_min_retention() USING ERRCODE = 'insufficient_privilege';\n"
    "    END IF;\n"
    "    IF NOT EXISTS (SELECT 1 FROM @S@.audit_events e WHERE e.id > OLD.id) THEN\n"
    "      RAISE EXCEPTION '%.audit_events: the newest row % is never removed', TG_TABLE_SCHEMA, OLD.id\n"
    "        USING ERRCODE = 'insufficient_privilege';\n"
    "    END IF;\n"
    "    RETURN OLD;\n"
    "  END IF;\n"
    "  RAISE EXCEPTION '%.audit_events is append-only: % is refused', TG_TABLE_SCHEMA, TG_OP\n"
    "    USING ERRCODE = 'insufficient_privilege',\n"
    "          HINT = 'retention removes the oldest rows through ' || TG_TABLE_SCHEMA || '.audit_prune()';\n"
    "END $$;\n"
    /* A row must follow the last one: no fork even from a writer that bypassed the lock.
     * Schema 6: a row inserted without prev_hash (what audit_insert() and audit_append_rows()
     * do, under the trail's lock) is linked and hashed here, from the one read of the last row
     * the check needs anyway; a row that brings its own prev_hash is checked as before. */
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
    "  IF NEW.prev_hash IS NULL THEN\n"
    "    NEW.prev_hash := v_hash;\n"
    "    NEW.hash := @S@.audit_hash(NEW.id, NEW.at, NEW.actor, NEW.action, NEW.target, NEW.request_id,\n"
    "                               NEW.correlation_id, NEW.outcome, NEW.generation_before,\n"
    "                               NEW.generation_after, NEW.details, NEW.prev_hash);\n"
    "  ELSIF NEW.prev_hash <> v_hash THEN\n"
    "    RAISE EXCEPTION 'audit row % does not chain to the last row', NEW.id USING ERRCODE = "
    "'serialization_failure';\n"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END $$;\n"
    "DROP TRIGGER IF EXISTS audit_events_append_only ON @S@.audit_events;\n"
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON @S@.audit_events\n"
    "  FOR EACH ROW EXECUTE FUNCTION @S@.audit_events_guard();\n"
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON @S@.audit_events;\n"
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON @S@.audit_events\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION @S@.audit_events_guard();\n"
    "DROP TRIGGER IF EXISTS audit_events_chain ON @S@.audit_events;\n"
    "CREATE TRIGGER audit_events_chain BEFORE INSERT ON @S@.audit_events\n"
    "  FOR EACH ROW EXECUTE FUNCTION @S@.audit_events_link();\n"
    /* The one writer: lock, then the insert under it (next id, clock; the trigger links and
     * hashes the row). */
    "CREATE OR REPLACE FUNCTION @S@.audit_insert(p_actor text, p_action text, p_target text, p_request_id "
    "text,\n"
    "    p_correlation_id text, p_outcome text, p_generation_before bigint, p_generation_after bigint,\n"
    "    p_details json, OUT out_id bigint, OUT out_hash text)\n"
    "  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  PERFORM pg_advisory_xact_lock(" LOCK_CLASS ", '@S@.audit_events'::regclass::oid::int4);\n"
    "  INSERT INTO @S@.audit_events (id, at, actor, action, target, request_id, correlation_id, outcome,\n"
    "                                generation_before, generation_after, details, prev_hash, hash)\n"
    "  VALUES (nextval('@S@.audit_events_id_seq'), clock_timestamp(), p_actor, p_action, p_target,\n"
    "          p_request_id, p_correlation_id, p_outcome, p_generation_before, p_generation_after, "
    "p_details,\n"
    "          NULL, NULL)\n"
    "  RETURNING id, hash INTO out_id, out_hash;\n"
    "END $$;\n"
    "CREATE OR REPLACE FUNCTION @S@.audit_append(p_actor text, p_action text, p_target text, p_request_id "
    "text,\n"
    "    p_correlation_id text, p_outcome text, p_generation_before bigint, p_generation_after bigint,\n"
    "    p_details json, OUT out_id bigint, OUT out_hash text)\n"
    "  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  IF p_action = '" TN_AUDIT_ACTION_PRUNE "' THEN\n"
    "    RAISE EXCEPTION 'action " TN_AUDIT_ACTION_PRUNE " is reserved for retention checkpoints'\n"
    "      USING ERRCODE = 'invalid_parameter_value';\n"
    "  END IF;\n"
    "  SELECT i.out_id, i.out_hash INTO out_id, out_hash\n"
    "    FROM @S@.audit_insert(p_actor, p_action, p_target, p_request_id, p_correlation_id, p_outcome,\n"
    "                          p_generation_before, p_generation_after, p_details) i;\n"
    "END $$;\n"
    /* Retention: the longest prefix (by id) of rows all older than the cutoff, never the last row,
     * then a checkpoint row recording the hash the first remaining row chains to. */
    "CREATE OR REPLACE FUNCTION @S@.audit_prune(p_cutoff timestamptz, p_actor text,\n"
    "    OUT pruned bigint, OUT pruned_through_id bigint, OUT checkpoint_id bigint)\n"
    "  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
    "DECLARE\n"
    "  v_tail bigint;\n"
    "  v_boundary bigint;\n"
    "  v_last_hash text;\n"
    "BEGIN\n"
    "  pruned := 0;\n"
    "  IF p_cutoff IS NULL OR least(p_cutoff, now()) > now() - @S@.audit_min_retention() THEN\n"
    "    RAISE EXCEPTION 'audit_prune: the cutoff % is inside the minimum retention of %: rows younger than "
    "'\n"
    "      'that are kept', coalesce(to_char(p_cutoff AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "'NULL'),\n"
    "      @S@.audit_min_retention()\n"
    "      USING ERRCODE = 'invalid_parameter_value',\n"
    "            HINT = 'the owner of the audit table may raise (never lower) it: tenantctl audit init "
    "--min-retention Nd';\n"
    "  END IF;\n"
    "  PERFORM pg_advisory_xact_lock(" LOCK_CLASS ", '@S@.audit_events'::regclass::oid::int4);\n"
    "  SELECT max(e.id) INTO v_tail FROM @S@.audit_events e;\n"
    "  IF v_tail IS NULL THEN\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT min(e.id) INTO v_boundary FROM @S@.audit_events e WHERE e.at >= p_cutoff;\n"
    "  v_boundary := least(coalesce(v_boundary, v_tail), v_tail);\n"
    "  SELECT e.id, e.hash INTO pruned_through_id, v_last_hash\n"
    "    FROM @S@.audit_events e WHERE e.id < v_boundary ORDER BY e.id DESC LIMIT 1;\n"
    "  IF pruned_through_id IS NULL THEN\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  PERFORM set_config('tenancy.audit_prune', 'on', true);\n"
    "  DELETE FROM @S@.audit_events e WHERE e.id <= pruned_through_id;\n"
    "  GET DIAGNOSTICS pruned = ROW_COUNT;\n"
    "  PERFORM set_config('tenancy.audit_prune', 'off', true);\n"
    "  SELECT i.out_id INTO checkpoint_id\n"
    "    FROM @S@.audit_insert(coalesce(p_actor, '" TN_AUDIT_OPERATOR_ACTOR "'), '" TN_AUDIT_ACTION_PRUNE
    "', 'audit', NULL, NULL,\n"
    "                          'succeeded', NULL, NULL,\n"
    "                          json_build_object('cutoff', to_char(p_cutoff AT TIME ZONE 'UTC',\n"
    "                                                              'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),\n"
    "                                            'prunedRows', pruned, 'prunedThroughId', "
    "pruned_through_id,\n"
    "                                            'lastPrunedHash', v_last_hash)) i;\n"
    "END $$;\n"
    /* Tenant history (schema 3, docs/history.md): every accepted spec the operator saw, one row
     * per (uid, generation), append-only like the trail. tenant_version_record() (SECURITY
     * DEFINER, the writer's only way in) inserts a version and, in the same transaction, appends
     * one audit row per changed area of the spec, so a version never exists without its audit. */
    "CREATE TABLE IF NOT EXISTS @S@.tenant_versions (\n"
    "  tenant text NOT NULL,\n"
    "  uid text NOT NULL,\n"
    "  generation bigint NOT NULL CHECK (generation > 0),\n"
    "  at timestamptz NOT NULL,\n"
    "  actor text NOT NULL,\n"
    "  request_id text,\n"
    "  correlation_id text,\n"
    "  spec jsonb NOT NULL,\n"
    "  CONSTRAINT tenant_versions_pkey PRIMARY KEY (uid, generation)\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS tenant_versions_tenant_at ON @S@.tenant_versions (tenant, at);\n"
    "CREATE OR REPLACE FUNCTION @S@.tenant_versions_guard() RETURNS trigger\n"
    "  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  RAISE EXCEPTION '%.tenant_versions is append-only: % is refused', TG_TABLE_SCHEMA, TG_OP\n"
    "    USING ERRCODE = 'insufficient_privilege';\n"
    "END $$;\n"
    "DROP TRIGGER IF EXISTS tenant_versions_append_only ON @S@.tenant_versions;\n"
    "CREATE TRIGGER tenant_versions_append_only BEFORE UPDATE OR DELETE ON @S@.tenant_versions\n"
    "  FOR EACH ROW EXECUTE FUNCTION @S@.tenant_versions_guard();\n"
    "DROP TRIGGER IF EXISTS tenant_versions_no_truncate ON @S@.tenant_versions;\n"
    "CREATE TRIGGER tenant_versions_no_truncate BEFORE TRUNCATE ON @S@.tenant_versions\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION @S@.tenant_versions_guard();\n"
    /* The areas of a spec audited one row each when they change (spec.<area>); any other key
     * except state, stateReason and deletionConfirmation (transitions are audited by the
     * lifecycle) is audited as spec.other. contacts hold personal data, which an append-only
     * trail could never erase: their rows carry counts, not names or addresses. */
    /* OUTBOX (schema 4): p_event, when given, is the envelope of a dev.tenancy.tenant.updated.v1
     * CloudEvent (outbox.h), written with the audit rows when plan, contacts, externalIds,
     * identity or residency changed: data lists those areas and their new values. */
    "DROP FUNCTION IF EXISTS @S@.tenant_version_record(text, text, bigint, text, jsonb, text, text);\n"
    "CREATE OR REPLACE FUNCTION @S@.tenant_version_record(p_tenant text, p_uid text, p_generation bigint,\n"
    "    p_actor text, p_spec jsonb, p_request_id text, p_correlation_id text, p_event jsonb, p_labels "
    "jsonb,\n"
    "    OUT recorded boolean, OUT previous_generation bigint, OUT changed text[])\n"
    "  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
    "DECLARE\n"
    "  v_prev jsonb;\n"
    "  v_area text;\n"
    "  v_details jsonb;\n"
    "  v_other text[];\n"
    "  v_audit_id bigint;\n"
    "  v_event_id bigint;\n"
    "  v_data jsonb;\n"
    "  v_event_areas constant text[] := ARRAY['plan', 'contacts', 'externalIds', 'identity', 'residency'];\n"
    "  v_areas constant text[] := ARRAY['plan', 'contacts', 'externalIds', 'identity', 'residency',\n"
    "    'quotaOverrides', 'rateLimitOverrides', 'environments', 'displayName', 'isolation', 'breakGlass'];\n"
    "BEGIN\n"
    "  recorded := false;\n"
    "  changed := ARRAY[]::text[];\n"
    "  IF p_spec IS NULL OR jsonb_typeof(p_spec) <> 'object' THEN\n"
    "    RAISE EXCEPTION 'tenant_version_record: the spec must be a JSON object'\n"
    "      USING ERRCODE = 'invalid_parameter_value';\n"
    "  END IF;\n"
    "  PERFORM pg_advisory_xact_lock(" LOCK_CLASS ", hashtext('@S@/tenant_versions/' || p_uid));\n"
    "  INSERT INTO @S@.tenant_versions (tenant, uid, generation, at, actor, request_id, correlation_id, "
    "spec)\n"
    "    VALUES (p_tenant, p_uid, p_generation, clock_timestamp(), p_actor, p_request_id, p_correlation_id,\n"
    "            p_spec)\n"
    "    ON CONFLICT ON CONSTRAINT tenant_versions_pkey DO NOTHING;\n"
    "  IF NOT FOUND THEN\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  recorded := true;\n"
    "  SELECT v.generation, v.spec INTO previous_generation, v_prev FROM @S@.tenant_versions v\n"
    "    WHERE v.uid = p_uid AND v.generation < p_generation ORDER BY v.generation DESC LIMIT 1;\n"
    "  IF previous_generation IS NULL THEN\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT coalesce(array_agg(k ORDER BY k), ARRAY[]::text[]) INTO v_other FROM (\n"
    "    SELECT jsonb_object_keys(p_spec) AS k UNION SELECT jsonb_object_keys(v_prev)) keys\n"
    "    WHERE k <> ALL (v_areas) AND k NOT IN ('state', 'stateReason', 'deletionConfirmation')\n"
    "      AND (v_prev -> k) IS DISTINCT FROM (p_spec -> k);\n"
    "  FOREACH v_area IN ARRAY v_areas || CASE WHEN cardinality(v_other) > 0 THEN ARRAY['other'] ELSE\n"
    "      ARRAY[]::text[] END LOOP\n"
    "    CONTINUE WHEN v_area <> 'other' AND (v_prev -> v_area) IS NOT DISTINCT FROM (p_spec -> v_area);\n"
    "    changed := changed || v_area;\n"
    "    v_details := CASE v_area\n"
    "      WHEN 'contacts' THEN jsonb_build_object('area', v_area,\n"
    "        'before', jsonb_build_object('count', coalesce(jsonb_array_length(\n"
    "          CASE WHEN jsonb_typeof(v_prev -> v_area) = 'array' THEN v_prev -> v_area END), 0)),\n"
    "        'after', jsonb_build_object('count', coalesce(jsonb_array_length(\n"
    "          CASE WHEN jsonb_typeof(p_spec -> v_area) = 'array' THEN p_spec -> v_area END), 0)))\n"
    "      WHEN 'other' THEN jsonb_build_object('area', v_area, 'fields', to_jsonb(v_other))\n"
    "      ELSE jsonb_build_object('area', v_area, 'before', v_prev -> v_area, 'after', p_spec -> v_area)\n"
    "    END;\n"
    "    IF (v_prev -> 'stateReason') IS DISTINCT FROM (p_spec -> 'stateReason')\n"
    "       AND p_spec ? 'stateReason' THEN\n"
    "      v_details := v_details || jsonb_build_object('stateReason', p_spec -> 'stateReason');\n"
    "    END IF;\n"
    "    SELECT i.out_id INTO v_audit_id\n"
    "      FROM @S@.audit_insert(p_actor, 'spec.' || v_area, 'tenant/' || p_tenant, p_request_id,\n"
    "                            p_correlation_id, 'succeeded', previous_generation, p_generation,\n"
    "                            v_details::json) i;\n"
    "    IF v_area = ANY (v_event_areas) THEN\n"
    "      v_event_id := coalesce(v_event_id, v_audit_id);\n"
    "      v_data := coalesce(v_data, jsonb_build_object('changed', '[]'::jsonb, 'generation', "
    "p_generation,\n"
    "                                                    'previousGeneration', previous_generation))\n"
    "        || jsonb_build_object(v_area, coalesce(p_spec -> v_area, 'null'::jsonb));\n"
    "      v_data := jsonb_set(v_data, '{changed}', (v_data -> 'changed') || to_jsonb(v_area));\n"
    "    END IF;\n"
    "  END LOOP;\n"
    "  IF p_event IS NOT NULL AND v_event_id IS NOT NULL THEN\n"
    "    PERFORM @S@.outbox_insert(v_event_id, p_tenant, p_labels, p_event || jsonb_build_object('data', "
    "v_data));\n"
    "  END IF;\n"
    "END $$;\n"
    "REVOKE ALL ON @S@.tenant_versions FROM PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.tenant_version_record(text, text, bigint, text, jsonb, text, text, jsonb, "
    "jsonb) FROM PUBLIC;\n"
    "REVOKE UPDATE, DELETE, TRUNCATE ON @S@.tenant_versions FROM CURRENT_USER;\n"
    "REVOKE ALL ON @S@.audit_events FROM PUBLIC;\n"
    "REVOKE ALL ON SEQUENCE @S@.audit_events_id_seq FROM PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.audit_insert(text, text, text, text, text, text, bigint, bigint, json) FROM "
    "PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.audit_append(text, text, text, text, text, text, bigint, bigint, json) FROM "
    "PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.audit_prune(timestamptz, text) FROM PUBLIC;\n"
    "REVOKE ALL ON @S@.audit_settings FROM PUBLIC;\n"

    /* The owner keeps INSERT (audit_insert) and DELETE (audit_prune); nobody needs UPDATE or TRUNCATE. */
    "REVOKE UPDATE, TRUNCATE ON @S@.audit_events FROM CURRENT_USER;\n"
    "COMMENT ON TABLE @S@.audit_events IS '" SCHEMA_MARK "';\n";

static const char grant_sql[] = "GRANT USAGE ON SCHEMA @S@ TO @R@;\n"
                                "GRANT SELECT ON @S@.audit_events TO @R@;\n"
                                "GRANT EXECUTE ON FUNCTION @S@.audit_append(text, text, text, text, text, "
                                "text, bigint, bigint, json) TO @R@;\n"
                                "GRANT EXECUTE ON FUNCTION @S@.audit_prune(timestamptz, text) TO @R@;\n"
                                "GRANT SELECT ON @S@.audit_settings TO @R@;\n"
                                "GRANT EXECUTE ON FUNCTION @S@.audit_min_retention() TO @R@;\n"
                                /* Whatever an older version or a person granted: the writer may
                                 * never change or remove a row. */
                                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON "
                                "@S@.audit_events FROM @R@;\n"
                                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON "
                                "@S@.audit_settings FROM @R@;\n"
                                /* History (schema 3): read, and insert only through the function
                                 * that audits what changed. */
                                "GRANT SELECT ON @S@.tenant_versions TO @R@;\n"
                                "GRANT EXECUTE ON FUNCTION @S@.tenant_version_record(text, text, bigint, "
                                "text, jsonb, text, text, jsonb, jsonb) TO @R@;\n"
                                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON "
                                "@S@.tenant_versions FROM @R@;\n";

struct tn_audit {
  pthread_mutex_t mu; /* protects everything below */
  char *dsn;          /* a secret: never logged */
  char schema[48];
  char app_name[64];
  bool no_create;
  char *ca_file;                        /* sslrootcert unless the DSN names one; NULL: libpq's default */
  bool tls_default;                     /* the DSN states no sslmode: verify-full is ours */
  char tls_warning[320];                /* "" unless the DSN asks for a mode weaker than verify-full */
  PGconn *conn;                         /* NULL or possibly broken: connect() checks */
  bool schema_ready;                    /* the table was found (or created) on this connection */
  const struct tn_fence *_Atomic fence; /* borrowed; NULL: appends are never fenced */
  /* metrics (tn_audit_get_stats): atomics, so a scrape never waits for mu */
  _Atomic unsigned long long appends, append_failures;
  _Atomic int up;
  _Atomic long long last_round_trip_ms; /* wall clock */
};

void tn_audit_get_stats(const struct tn_audit *a, struct tn_audit_stats *out) {
  struct tn_audit *m = (struct tn_audit *)a;
  *out = (struct tn_audit_stats){.up = -1};
  if (!a)
    return;
  out->appends = atomic_load(&m->appends);
  out->append_failures = atomic_load(&m->append_failures);
  out->up = atomic_load(&m->up);
  out->last_round_trip = (double)atomic_load(&m->last_round_trip_ms) / 1000.0;
}

/* Whether a round trip's result says the trail is reachable and usable. */
static void note_round_trip(struct tn_audit *a, int rc) {
  if (rc == TN_ECANCELED || rc == TN_EINVALID)
    return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  atomic_store(&a->up, rc == 0 ? 1 : 0);
  atomic_store(&a->last_round_trip_ms, (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

void tn_audit_set_fence(struct tn_audit *a, const struct tn_fence *fence) {
  if (a)
    atomic_store(&a->fence, fence);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static bool valid_schema(const char *s) {
  if (!s || !*s || strlen(s) > 40)
    return false;
  if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
    return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
      return false;
  return true;
}

/* Appends tmpl to b with @S@ replaced by the schema and @R@ by role (may be NULL). */
static int expand(struct tn_buf *b, const char *tmpl, const char *schema, const char *role) {
  const char *p = tmpl;
  int rc = 0;
  while (rc == 0 && *p) {
    const char *at = strchr(p, '@');
    if (!at)
      return tn_buf_appends(b, p);
    rc = tn_buf_append(b, p, (size_t)(at - p));
    if (rc == 0 && strncmp(at, "@S@", 3) == 0) {
      rc = tn_buf_appends(b, schema);
      p = at + 3;
    } else if (rc == 0 && role && strncmp(at, "@R@", 3) == 0) {
      rc = tn_buf_appends(b, role);
      p = at + 3;
    } else if (rc == 0) {
      rc = tn_buf_append(b, "@", 1);
      p = at + 1;
    }
  }
  return rc;
}

/* A libpq message on one line, without the trailing newline ("connection to server at ...
 * failed: Connection refused; Is the server running ..."). */
static void one_line(const char *msg, char *out, size_t n) {
  size_t j = 0;
  bool space = false;
  for (const char *p = msg ? msg : ""; *p && j + 3 < n; p++) {
    if (*p == '\n' || *p == '\r' || *p == '\t') {
      space = true;
      continue;
    }
    if (space && j > 0) {
      if (out[j - 1] != ' ' && out[j - 1] != ';') {
        out[j++] = ';';
      }
      out[j++] = ' ';
    }
    space = false;
    out[j++] = *p;
  }
  out[j] = '\0';
}

/* Whether a libpq connection failure is about TLS (certificate, CA file, no TLS on the server). */
static bool tls_failure(const char *msg) {
  static const char *const marks[] = {"SSL", "certificate", "root.crt", "sslrootcert", "sslmode"};
  for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
    if (strstr(msg, marks[i]))
      return true;
  return false;
}

static void drop_connection(struct tn_audit *a) {
  PQfinish(a->conn);
  a->conn = NULL;
  a->schema_ready = false;
}

static bool connection_lost(struct tn_audit *a) { return !a->conn || PQstatus(a->conn) != CONNECTION_OK; }

static void rollback(struct tn_audit *a) {
  if (connection_lost(a) || PQtransactionStatus(a->conn) == PQTRANS_IDLE)
    return;
  PQclear(PQexec(a->conn, "ROLLBACK"));
}

static bool sqlstate_is(const char *state, const char *prefix) {
  return state && strncmp(state, prefix, strlen(prefix)) == 0;
}

/* Turns a failed result (res may be NULL; it is not cleared) into an error, dropping the
 * connection when it is gone. what says what was being done ("appending"). */
static int pg_error(struct tn_audit *a, PGresult *res, const char *what, struct tn_error *err) {
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  char msg[512];
  one_line(primary ? primary : (a->conn ? PQerrorMessage(a->conn) : "no connection"), msg, sizeof msg);
  if (connection_lost(a) || !state || sqlstate_is(state, "08") || sqlstate_is(state, "57P")) {
    drop_connection(a);
    return tn_error_set(err, TN_EUNAVAILABLE, "audit trail: PostgreSQL is unreachable while %s: %s", what,
                        msg[0] ? msg : "connection lost");
  }
  rollback(a);
  if (sqlstate_is(state, "53"))
    return tn_error_set(err, TN_EUNAVAILABLE, "audit trail: PostgreSQL is out of resources while %s: %s",
                        what, msg);
  if (!strcmp(state, "57014") || !strcmp(state, "55P03"))
    return tn_error_set(err, TN_ETIMEOUT, "audit trail: %s timed out: %s", what, msg);
  if (sqlstate_is(state, "40"))
    return tn_error_set(err, TN_ECONFLICT, "audit trail: %s conflicted with another writer: %s", what, msg);
  if (!strcmp(state, "42P01") || !strcmp(state, "42883") || !strcmp(state, "3F000")) {
    a->schema_ready = false;
    return tn_error_set(
        err, TN_ENOTFOUND,
        "audit trail: table %s.audit_events (or its functions) does not exist: start the operator "
        "once (it creates it) or run `tenantctl audit init` (%s)",
        a->schema, msg);
  }
  if (!strcmp(state, "42501"))
    return tn_error_set(err, TN_EFORBIDDEN, "audit trail: permission denied while %s: %s", what, msg);
  if (sqlstate_is(state, "22") || sqlstate_is(state, "23"))
    return tn_error_set(err, TN_EINVALID, "audit trail: PostgreSQL refused a value while %s: %s", what, msg);
  return tn_error_set(err, TN_EAPI, "audit trail: PostgreSQL error %s while %s: %s", state, what, msg);
}

/* Runs sql (no parameters; several statements allowed) expecting `want`. Returns the result
 * (PQclear it) or NULL with err set. */
static PGresult *exec(struct tn_audit *a, const char *sql, ExecStatusType want, const char *what,
                      struct tn_error *err) {
  PGresult *res = PQexec(a->conn, sql);
  if (res && PQresultStatus(res) == want)
    return res;
  pg_error(a, res, what, err);
  PQclear(res);
  return NULL;
}

static PGresult *exec_params(struct tn_audit *a, const char *sql, int n, const char *const *values,
                             ExecStatusType want, const char *what, struct tn_error *err) {
  PGresult *res = PQexecParams(a->conn, sql, n, NULL, values, NULL, NULL, 0);
  if (res && PQresultStatus(res) == want)
    return res;
  pg_error(a, res, what, err);
  PQclear(res);
  return NULL;
}

/* Runs a template (several statements) inside the caller's transaction. */
static int exec_template(struct tn_audit *a, const char *tmpl, const char *role, const char *what,
                         struct tn_error *err) {
  struct tn_buf b;
  tn_buf_init(&b, 1u << 20);
  int rc = expand(&b, tmpl, a->schema, role);
  if (rc) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  PGresult *res = exec(a, tn_buf_str(&b), PGRES_COMMAND_OK, what, err);
  if (!res) {
    rc = err->code ? err->code : TN_EAPI;
    goto out;
  }
  PQclear(res);
out:
  tn_buf_cleanup(&b);
  return rc;
}

/* Whether the table exists, and whether it carries this version's mark (so its triggers and
 * functions are in place). */
static int schema_state(struct tn_audit *a, bool *exists, bool *current, struct tn_error *err) {
  char reg[96];
  snprintf(reg, sizeof reg, "%s.audit_events", a->schema);
  const char *params[] = {reg};
  PGresult *res = exec_params(a,
                              "SELECT to_regclass($1) IS NOT NULL, "
                              "coalesce(obj_description(to_regclass($1), 'pg_class'), '')",
                              1, params, PGRES_TUPLES_OK, "looking for the audit table", err);
  if (!res)
    return err->code ? err->code : TN_EUNAVAILABLE;
  *exists = PQgetvalue(res, 0, 0)[0] == 't';
  *current = strcmp(PQgetvalue(res, 0, 1), SCHEMA_MARK) == 0;
  PQclear(res);
  return 0;
}

/* ---- connection and schema ---------------------------------------------------------------- */

static int create_locked(struct tn_audit *a, const char *writer_role, struct tn_error *err);

/* Makes a->conn usable (and, unless no_create, the schema present). Holds mu. */
static int connect_locked(struct tn_audit *a, struct tn_error *err) {
  if (a->conn && PQstatus(a->conn) != CONNECTION_OK)
    drop_connection(a);
  if (!a->conn) {
    /* Our defaults first, the DSN (expanded from dbname) last: what the DSN says wins. */
    /* verify-full unless the DSN says otherwise ($PGSSLMODE is not consulted: sslmode is set). */
    const char *keys[12] = {"connect_timeout", "application_name",    "client_encoding",  "keepalives",
                            "keepalives_idle", "keepalives_interval", "keepalives_count", "sslmode"};
    const char *vals[12] = {"5", a->app_name, "UTF8", "1", "10", "5", "3", "verify-full"};
    int n = 8;
    if (a->ca_file) {
      keys[n] = "sslrootcert";
      vals[n++] = a->ca_file;
    }
    keys[n] = "dbname";
    vals[n++] = a->dsn;
    keys[n] = vals[n] = NULL;
    a->conn = PQconnectdbParams(keys, vals, 1);
    if (!a->conn)
      return tn_error_set(err, -ENOMEM, "out of memory");
    if (PQstatus(a->conn) != CONNECTION_OK) {
      char msg[512];
      one_line(PQerrorMessage(a->conn), msg, sizeof msg);
      drop_connection(a);
      if (a->tls_default && tls_failure(msg))
        return tn_error_set(
            err, TN_EUNAVAILABLE,
            "audit trail: cannot connect to PostgreSQL: %s [TLS: the audit connection uses "
            "sslmode=verify-full unless the DSN states another sslmode: give the server's CA "
            "(sslrootcert= in the DSN, --pg-ca-file/TENANCY_PG_CA_FILE or PGSSLROOTCERT) and a "
            "host name its certificate names, or ask for a weaker sslmode in the DSN "
            "explicitly]",
            msg);
      return tn_error_set(err, TN_EUNAVAILABLE, "audit trail: cannot connect to PostgreSQL: %s", msg);
    }
    /* Bounded waits unless the DSN chose its own. */
    PGresult *res = exec(a,
                         "SELECT set_config('statement_timeout', '30s', false) "
                         "WHERE current_setting('statement_timeout') IN ('0', '0ms'); "
                         "SELECT set_config('lock_timeout', '15s', false) "
                         "WHERE current_setting('lock_timeout') IN ('0', '0ms')",
                         PGRES_TUPLES_OK, "configuring the session", err);
    if (!res)
      return err->code ? err->code : TN_EUNAVAILABLE;
    PQclear(res);
  }
  if (PQtransactionStatus(a->conn) != PQTRANS_IDLE)
    rollback(a);
  if (a->schema_ready)
    return 0;
  bool exists = false, current = false;
  int rc = schema_state(a, &exists, &current, err);
  if (rc)
    return rc;
  if (exists && current) {
    a->schema_ready = true;
    return 0;
  }
  if (exists && !a->no_create) {
    /* An older schema: only its owner can upgrade it. */
    char reg[96];
    snprintf(reg, sizeof reg, "%s.audit_events", a->schema);
    const char *params[] = {reg};
    PGresult *res = exec_params(a,
                                "SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c "
                                "WHERE c.oid = to_regclass($1)",
                                1, params, PGRES_TUPLES_OK, "looking for the audit table's owner", err);
    if (!res)
      return err->code ? err->code : TN_EUNAVAILABLE;
    bool owner = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!owner)
      return tn_error_set(
          err, TN_ENOTFOUND,
          "audit trail: table %s.audit_events was set up by an older version and this role is "
          "not its owner, so it cannot upgrade it: run `tenantctl audit init` as the owner "
          "(idempotent)",
          a->schema);
  }
  if (a->no_create) {
    if (exists)
      return tn_error_set(err, TN_ENOTFOUND,
                          "audit trail: table %s.audit_events exists but was not set up by this version (its "
                          "functions or triggers may be missing): run `tenantctl audit init`",
                          a->schema);
    return tn_error_set(
        err, TN_ENOTFOUND,
        "audit trail: table %s.audit_events does not exist: start the operator once (it creates "
        "it) or run `tenantctl audit init`",
        a->schema);
  }
  return create_locked(a, NULL, err);
}

/* The writer role must be one that cannot bypass the triggers: not a superuser, not (a member of)
 * the owner of the table. Inside create_locked's transaction. */
static int check_writer_role(struct tn_audit *a, const char *role, struct tn_error *err) {
  char reg[96];
  snprintf(reg, sizeof reg, "%s.audit_events", a->schema);
  const char *params[] = {role, reg};
  PGresult *res = exec_params(a,
                              "SELECT r.rolsuper, pg_has_role(r.oid, c.relowner, 'USAGE') "
                              "FROM pg_catalog.pg_roles r, pg_catalog.pg_class c "
                              "WHERE r.rolname = $1 AND c.oid = to_regclass($2)",
                              2, params, PGRES_TUPLES_OK, "looking up the writer role", err);
  if (!res)
    return err->code ? err->code : TN_EAPI;
  int rc = 0;
  if (PQntuples(res) != 1)
    rc = tn_error_set(err, TN_EINVALID, "audit trail: writer role \"%.64s\" does not exist: create it first",
                      role);
  else if (PQgetvalue(res, 0, 0)[0] == 't')
    rc = tn_error_set(err, TN_EINVALID,
                      "audit trail: writer role \"%.64s\" is a superuser, which can bypass every protection "
                      "of the trail: use a plain LOGIN role",
                      role);
  else if (PQgetvalue(res, 0, 1)[0] == 't')
    rc =
        tn_error_set(err, TN_EINVALID,
                     "audit trail: writer role \"%.64s\" owns the audit table (or is a member of its owner), "
                     "so it could remove rows: run init as another role that owns the objects",
                     role);
  PQclear(res);
  if (rc)
    rollback(a);
  return rc;
}

static int create_locked(struct tn_audit *a, const char *writer_role, struct tn_error *err) {
  /* One creator at a time; whoever comes second finds the table complete and changes nothing, so
   * creation never takes table locks while other connections append. The lock is a session lock
   * taken before the transaction: a transaction that started before the first creator committed
   * could still see the table as missing through the backend's catalog caches. */
  PGresult *res = exec(a, "SELECT pg_advisory_lock(" LOCK_CLASS ", " DDL_LOCK ")", PGRES_TUPLES_OK,
                       "waiting to create the audit table", err);
  if (!res)
    return err->code ? err->code : TN_EUNAVAILABLE;
  PQclear(res);
  bool exists = false, current = false;
  char *quoted = NULL;
  int rc = 0;
  res = exec(a, "BEGIN", PGRES_COMMAND_OK, "creating the audit table", err);
  if (!res)
    rc = err->code ? err->code : TN_EUNAVAILABLE;
  PQclear(res);
  if (rc == 0)
    rc = schema_state(a, &exists, &current, err);
  if (rc == 0 && !current)
    rc = exec_template(a, schema_sql, NULL, "creating the audit table", err);
  if (rc == 0 && !current)
    rc = exec_template(a, tn_outbox_schema_sql, NULL, "creating the outbox", err);
  if (rc == 0 && !current) /* schema 5: the delivery engine's tables, written only through functions */
    rc = exec_template(a, tn_delivery_schema_sql, NULL, "creating the webhook delivery tables", err);
  if (rc == 0 && writer_role)
    rc = check_writer_role(a, writer_role, err);
  if (rc == 0 && writer_role) {
    quoted = PQescapeIdentifier(a->conn, writer_role, strlen(writer_role));
    if (!quoted)
      rc = tn_error_set(err, TN_EINVALID, "audit trail: invalid role name");
    else
      rc = exec_template(a, grant_sql, quoted, "granting the writer role", err);
    if (rc == 0)
      rc = exec_template(a, tn_outbox_grant_sql, quoted, "granting the writer role the outbox", err);
    if (rc == 0)
      rc = exec_template(a, tn_delivery_grant_sql, quoted, "granting the writer role the webhook delivery",
                         err);
  }
  if (rc == 0) {
    res = exec(a, "COMMIT", PGRES_COMMAND_OK, "creating the audit table", err);
    if (!res)
      rc = err->code ? err->code : TN_EUNAVAILABLE;
    PQclear(res);
  }
  PQfreemem(quoted);
  rollback(a);
  if (!connection_lost(a)) /* a lost connection released it */
    PQclear(PQexec(a->conn, "SELECT pg_advisory_unlock(" LOCK_CLASS ", " DDL_LOCK ")"));
  if (rc == 0)
    a->schema_ready = true;
  return rc;
}

int tn_audit_open(const char *dsn, const struct tn_audit_options *opts, struct tn_audit **out,
                  struct tn_error *err) {
  *out = NULL;
  const char *schema = opts && opts->schema ? opts->schema : TN_AUDIT_SCHEMA;
  if (!dsn || !*dsn)
    return tn_error_set(err, TN_ECONFIG,
                        "audit trail: no PostgreSQL DSN: set --pg-dsn or TENANCY_PG_DSN (a libpq connection "
                        "string or postgresql:// URI)");
  char *perr = NULL;
  PQconninfoOption *parsed = PQconninfoParse(dsn, &perr);
  if (!parsed) {
    /* libpq's message may quote part of the DSN (a password): say only what is wrong in kind. */
    PQfreemem(perr);
    return tn_error_set(
        err, TN_ECONFIG,
        "audit trail: the PostgreSQL DSN is not a valid libpq connection string or "
        "postgresql:// URI (check quoting and percent-encoding; the value is not shown because "
        "it may contain a password)");
  }
  const char *sslmode = NULL;
  for (PQconninfoOption *o = parsed; o->keyword; o++)
    if (!strcmp(o->keyword, "sslmode") && o->val && *o->val)
      sslmode = o->val;
  char warning[320] = "";
  if (sslmode && strcmp(sslmode, "verify-full") != 0) {
    static const struct {
      const char *mode, *means;
    } weak[] = {
        {"verify-ca", "the server's certificate is checked against the CA but not its host name"},
        {"require", "encrypted but the server is not authenticated (a man in the middle is not detected)"},
        {"prefer", "may fall back to plaintext without notice"},
        {"allow", "plaintext unless the server insists on TLS"},
        {"disable", "plaintext"},
    };
    const char *means = "not verify-full";
    for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++)
      if (!strcmp(sslmode, weak[i].mode))
        means = weak[i].means;
    snprintf(warning, sizeof warning,
             "audit trail: the PostgreSQL DSN asks explicitly for sslmode=%.16s: the connection is %s; use "
             "sslmode=verify-full (the default) with the server's CA",
             sslmode, means);
  }
  bool explicit_mode = sslmode != NULL;
  PQconninfoFree(parsed);
  if (!valid_schema(schema))
    return tn_error_set(
        err, TN_ECONFIG,
        "audit trail: schema name \"%.60s\" is not allowed: use lowercase letters, digits and _ "
        "(at most 40, not starting with a digit)",
        schema);
  struct tn_audit *a = calloc(1, sizeof *a);
  if (a)
    atomic_init(&a->up, -1);
  if (!a || !(a->dsn = strdup(dsn))) {
    free(a);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  pthread_mutex_init(&a->mu, NULL);
  snprintf(a->schema, sizeof a->schema, "%s", schema);
  snprintf(a->app_name, sizeof a->app_name, "%s",
           opts && opts->application_name ? opts->application_name : "tenancy-operator");
  a->no_create = opts && opts->no_create;
  a->tls_default = !explicit_mode;
  snprintf(a->tls_warning, sizeof a->tls_warning, "%s", warning);
  if (opts && opts->ca_file && *opts->ca_file && !(a->ca_file = strdup(opts->ca_file))) {
    tn_audit_close(a);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  *out = a;
  return 0;
}

const char *tn_audit_tls_warning(const struct tn_audit *a) {
  return a && a->tls_warning[0] ? a->tls_warning : NULL;
}

void tn_audit_close(struct tn_audit *a) {
  if (!a)
    return;
  PQfinish(a->conn);
  /* The DSN holds a password: do not leave it in freed memory. */
  explicit_bzero(a->dsn, strlen(a->dsn));
  free(a->dsn);
  free(a->ca_file);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

int tn_audit_init(struct tn_audit *a, const char *writer_role, struct tn_error *err) {
  struct tn_error local;
  if (!err)
    err = &local;
  pthread_mutex_lock(&a->mu);
  bool saved = a->no_create;
  a->no_create = true; /* connect without creating; create below, once */
  int rc = connect_locked(a, err);
  a->no_create = saved;
  if (rc == 0 || rc == TN_ENOTFOUND) {
    tn_error_clear(err);
    rc = create_locked(a, writer_role, err);
  }
  pthread_mutex_unlock(&a->mu);
  return rc;
}

int tn_audit_ping(struct tn_audit *a, struct tn_error *err) {
  struct tn_error local;
  if (!err)
    err = &local;
  pthread_mutex_lock(&a->mu);
  int rc = connect_locked(a, err);
  pthread_mutex_unlock(&a->mu);
  note_round_trip(a, rc);
  return rc;
}

int tn_audit_raise_min_retention(struct tn_audit *a, int days, int *now_days, struct tn_error *err) {
  struct tn_error local;
  if (!err)
    err = &local;
  if (days < 0 || days > 3650000)
    return tn_error_set(err, TN_EINVALID, "audit trail: a minimum retention is 0 to 3650000 days (got %d)",
                        days);
  char days_s[16], upd[256], sel[160];
  snprintf(days_s, sizeof days_s, "%d", days);
  const char *params[] = {days_s};
  snprintf(upd, sizeof upd,
           "UPDATE %s.audit_settings SET min_retention = make_interval(days => $1::int) "
           "WHERE singleton AND min_retention < make_interval(days => $1::int)",
           a->schema);
  snprintf(sel, sizeof sel, "SELECT floor(extract(epoch FROM %s.audit_min_retention()) / 86400)::bigint",
           a->schema);
  pthread_mutex_lock(&a->mu);
  int rc = connect_locked(a, err);
  if (rc)
    goto out;
  PGresult *res = exec_params(a, upd, 1, params, PGRES_COMMAND_OK, "raising the minimum retention", err);
  if (!res) {
    rc = err->code ? err->code : TN_EAPI;
    goto out;
  }
  PQclear(res);
  res = exec(a, sel, PGRES_TUPLES_OK, "reading the minimum retention", err);
  if (!res) {
    rc = err->code ? err->code : TN_EAPI;
    goto out;
  }
  if (now_days)
    *now_days = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
  PQclear(res);
out:
  pthread_mutex_unlock(&a->mu);
  return rc;
}

int tn_audit_role_can_cut(struct tn_audit *a, bool *can_cut, char *who, size_t who_len,
                          struct tn_error *err) {
  struct tn_error local;
  if (!err)
    err = &local;
  *can_cut = false;
  if (who_len)
    who[0] = '\0';
  char reg[96];
  snprintf(reg, sizeof reg, "%s.audit_events", a->schema);
  const char *params[] = {reg};
  pthread_mutex_lock(&a->mu);
  int rc = connect_locked(a, err);
  if (rc)
    goto out;
  PGresult *res = exec_params(
      a,
      "SELECT CASE WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) "
      "THEN 'is a superuser' "
      "WHEN pg_has_role(c.relowner, 'USAGE') THEN 'owns the table (or is a member of its owner)' "
      "WHEN has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'UPDATE') "
      "OR has_table_privilege(c.oid, 'TRUNCATE') THEN 'holds UPDATE, DELETE or TRUNCATE on the table' "
      "ELSE '' END FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)",
      1, params, PGRES_TUPLES_OK, "checking the role's privileges", err);
  if (!res) {
    rc = err->code ? err->code : TN_EAPI;
    goto out;
  }
  if (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0]) {
    *can_cut = true;
    if (who_len)
      snprintf(who, who_len, "%s", PQgetvalue(res, 0, 0));
  }
  PQclear(res);
out:
  pthread_mutex_unlock(&a->mu);
  return rc;
}

int tn_audit_head(struct tn_audit *a, long long *id, char hash[TN_AUDIT_HASH_LEN], struct tn_error *err) {
  struct tn_error local;
  if (!err)
    err = &local;
  *id = 0;
  hash[0] = '\0';
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT id, hash FROM %s.audit_events ORDER BY id DESC LIMIT 1", a->schema);
  pthread_mutex_lock(&a->mu);
  int rc = connect_locked(a, err);
  if (rc)
    goto out;
  PGresult *res = exec(a, sql, PGRES_TUPLES_OK, "reading the audit head", err);
  if (!res) {
    rc = err->code ? err->code : TN_EAPI;
    goto out;
  }
  if (PQntuples(res) == 1) {
    *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(hash, TN_AUDIT_HASH_LEN, "%s", PQgetvalue(res, 0, 1));
  }
  PQclear(res);
out:
  pthread_mutex_unlock(&a->mu);
  note_round_trip(a, rc);
  return rc;
}

/* ---- append ------------------------------------------------------------------------------- */

static int check_event(const struct tn_audit_event *ev, struct tn_error *err) {
  static const char *const names[] = {"actor", "action", "target", "outcome"};
  const char *vals[] = {ev->actor, ev->action, ev->target, ev->outcome};
  for (int i = 0; i < 4; i++)
    if (!vals[i] || !*vals[i])
      return tn_error_set(err, TN_EINVALID, "audit trail: an event needs a %s", names[i]);
  if (strcmp(ev->action, TN_AUDIT_ACTION_PRUNE) == 0)
    return tn_error_set(err, TN_EINVALID, "audit trail: action %s is reserved for retention checkpoints",
                        TN_AUDIT_ACTION_PRUNE);
  if (ev->details) {
    json_error_t je;
    json_t *j = json_loads(ev->details, JSON_DECODE_ANY, &je);
    if (!j)
      return tn_error_set(err, TN_EINVALID, "audit trail: details is not JSON: %s (at position %d)", je.text,
                          je.position);
    json_decref(j);
  }
  return 0;
}

/* One element of audit_append_rows()'s argument; NULL when out of memory or a string is not
 * UTF-8. */
static json_t *row_json(const struct tn_audit_event *ev) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  const struct tn_outbox_event *ob = ev->outbox;
  const char *keys[] = {"actor",   "action",  "target", "request_id", "correlation_id",
                        "outcome", "details", "tenant", "labels",     "event"};
  const char *vals[] = {ev->actor,
                        ev->action,
                        ev->target,
                        ev->request_id,
                        ev->correlation_id,
                        ev->outcome,
                        ev->details,
                        ob ? ob->tenant : NULL,
                        ob ? ob->labels : NULL,
                        ob ? ob->event : NULL};
  bool ok = true;
  for (size_t i = 0; ok && i < sizeof keys / sizeof keys[0]; i++) {
    if (!vals[i])
      continue;
    json_t *v = json_string(vals[i]);
    ok = v && json_object_set_new(o, keys[i], v) == 0;
  }
  if (ok && ev->generation_before > 0)
    ok = json_object_set_new(o, "generation_before", json_integer(ev->generation_before)) == 0;
  if (ok && ev->generation_after > 0)
    ok = json_object_set_new(o, "generation_after", json_integer(ev->generation_after)) == 0;
  if (!ok) {
    json_decref(o);
    return NULL;
  }
  return o;
}

int tn_audit_append(struct tn_audit *a, const struct tn_audit_event *ev, long long *id_out,
                    struct tn_error *err) {
  return tn_audit_append_many(a, ev, 1, id_out, err);
}

int tn_audit_append_many(struct tn_audit *a, const struct tn_audit_event *evs, size_t n, long long *ids_out,
                         struct tn_error *err) {
  struct tn_error local;
  if (!err)
    err = &local;
  if (n == 0)
    return 0;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = check_event(&evs[i], err);
  if (rc)
    return rc;
  if ((rc = tn_fence_check(atomic_load(&a->fence), "audit append", err)))
    return rc;
  json_t *rows = json_array();
  for (size_t i = 0; rows && i < n; i++) {
    json_t *r = row_json(&evs[i]);
    if (!r || json_array_append_new(rows, r)) {
      json_decref(rows);
      rows = NULL;
    }
  }
  char *arg = rows ? json_dumps(rows, JSON_COMPACT) : NULL;
  json_decref(rows);
  if (!arg) /* json_string() refuses what is not UTF-8, as PostgreSQL would */
    return tn_error_set(err, TN_EINVALID,
                        "audit trail: a field of an audit row is not valid UTF-8 (or out of memory)");
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT out_id FROM %s.audit_append_rows($1::jsonb)", a->schema);
  const char *params[] = {arg};
  pthread_mutex_lock(&a->mu);
  rc = connect_locked(a, err);
  if (rc)
    goto out;
  PGresult *res = exec_params(a, sql, 1, params, PGRES_TUPLES_OK,
                              n > 1 ? "appending audit rows" : "appending an audit row", err);
  if (!res) {
    rc = err->code ? err->code : TN_EAPI;
    goto out;
  }
  if ((size_t)PQntuples(res) != n) /* committed already: say so, do not retry blindly */
    rc = tn_error_set(err, TN_EAPI, "audit trail: appending %zu rows answered %d ids", n, PQntuples(res));
  for (size_t i = 0; rc == 0 && ids_out && i < n; i++)
    ids_out[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
  PQclear(res);
out:
  pthread_mutex_unlock(&a->mu);
  free(arg);
  note_round_trip(a, rc);
  if (rc == 0)
    atomic_fetch_add(&a->appends, n);
  else if (rc != TN_ECANCELED)
    atomic_fetch_add(&a->append_failures, 1);
  return rc;
}

void tn_audit_note_append(struct tn_audit *a, int rc) {
  if (rc == 0)
    atomic_fetch_add(&a->appends, 1);
  else if (rc != TN_ECANCELED)
    atomic_fetch_add(&a->append_failures, 1);
}

/* ---- generic queries (history.c) ------------------------------------------------------------ */

int tn_audit_query(struct tn_audit *a, const char *sql, int n, const char *const *params, json_t **rows,
                   struct tn_error *err) {
  struct tn_error local;
  if (!err)
    err = &local;
  *rows = NULL;
  int rc = tn_fence_check(atomic_load(&a->fence), "audit query", err);
  if (rc)
    return rc;
  struct tn_buf b;
  tn_buf_init(&b, 1u << 16);
  if (expand(&b, sql, a->schema, NULL)) {
    tn_buf_cleanup(&b);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  pthread_mutex_lock(&a->mu);
  rc = connect_locked(a, err);
  PGresult *res = NULL;
  if (rc == 0 &&
      !(res = exec_params(a, tn_buf_str(&b), n, params, PGRES_TUPLES_OK, "querying the history", err)))
    rc = err->code ? err->code : TN_EAPI;
  json_t *out = rc ? NULL : json_array();
  if (rc == 0 && !out)
    rc = tn_error_set(err, -ENOMEM, "out of memory");
  for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
    json_t *row = json_object();
    if (!row || json_array_append_new(out, row)) {
      rc = tn_error_set(err, -ENOMEM, "out of memory");
      break;
    }
    for (int c = 0; c < PQnfields(res); c++) {
      json_t *v = PQgetisnull(res, i, c) ? json_null() : json_string(PQgetvalue(res, i, c));
      if (!v || json_object_set_new(row, PQfname(res, c), v)) {
        rc = tn_error_set(err, -ENOMEM, "out of memory");
        break;
      }
    }
  }
  PQclear(res);
  pthread_mutex_unlock(&a->mu);
  note_round_trip(a, rc);
  tn_buf_cleanup(&b);
  if (rc)
    json_decref(out);
  else
    *rows = out;
  return rc;
}

/* ---- verify ------------------------------------------------------------------------------- */

static const char *cell(PGresult *res, int row, int col) {
  return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static long long cell_ll(PGresult *res, int row, int col) {
  return PQgetisnull(res, row, col) ? -1 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static struct tn_audit_row row_at(PGresult *res, int i) {
  return (struct tn_audit_row){
      .id = cell_ll(res, i, 0),
      .at = cell(res, i, 1),
      .actor = cell(res, i, 2),
      .action = cell(res, i, 3),
      .target = cell(res, i, 4),
      .request_id = cell(res, i, 5),
      .correlation_id = cell(res, i, 6),
      .outcome = cell(res, i, 7),
      .generation_before = cell_ll(res, i, 8),
      .generation_after = cell_ll(res, i, 9),
      .details = cell(res, i, 10),
      .prev_hash = cell(res, i, 11),
      .hash = cell(res, i, 12),
  };
}

/* The anchor of the first row: the latest prune checkpoint, if any. */
static int read_checkpoint(struct tn_audit *a, struct tn_audit_verify_result *r,
                           char head_prev[TN_AUDIT_HASH_LEN], struct tn_error *err) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT id, details FROM %s.audit_events WHERE action = '" TN_AUDIT_ACTION_PRUNE
           "' ORDER BY id DESC LIMIT 1",
           a->schema);
  PGresult *res = exec(a, sql, PGRES_TUPLES_OK, "reading the retention checkpoint", err);
  if (!res)
    return err->code ? err->code : TN_EAPI;
  int rc = 0;
  if (PQntuples(res) == 1) {
    r->checkpoint_id = cell_ll(res, 0, 0);
    json_t *d = cell(res, 0, 1) ? json_loads(cell(res, 0, 1), 0, NULL) : NULL;
    const char *h = json_string_value(json_object_get(d, "lastPrunedHash"));
    json_t *through = json_object_get(d, "prunedThroughId");
    if (tn_audit_hash_valid(h) && json_is_integer(through)) {
      snprintf(head_prev, TN_AUDIT_HASH_LEN, "%s", h);
      r->pruned_through_id = json_integer_value(through);
    } else {
      /* A damaged checkpoint fails at its own row's hash; anchor nothing meanwhile. */
      head_prev[0] = '\0';
    }
    json_decref(d);
  }
  PQclear(res);
  return rc;
}

static void check_expectation(const struct tn_audit_verify_opts *o, const struct tn_audit_verify_result *r,
                              bool seen, const char *seen_hash, const char *checkpoint_hash,
                              struct tn_audit_chain *c) {
  if (!o || o->expect_id <= 0 || c->broken)
    return;
  const char *want = o->expect_hash ? o->expect_hash : "";
  if (seen) {
    if (strcmp(seen_hash, want) != 0)
      snprintf(c->problem, sizeof c->problem,
               "row %lld: hash differs from the expected anchor (stored %s, expected %s)", o->expect_id,
               seen_hash, want);
    else
      return;
  } else if (o->expect_id == r->pruned_through_id && checkpoint_hash[0]) {
    if (strcmp(checkpoint_hash, want) == 0)
      return;
    snprintf(c->problem, sizeof c->problem,
             "row %lld: removed by retention with hash %s, not the expected anchor %s", o->expect_id,
             checkpoint_hash, want);
  } else if (o->expect_id <= r->pruned_through_id) {
    snprintf(c->problem, sizeof c->problem,
             "row %lld: removed by retention (rows up to %lld were pruned); anchor a newer row", o->expect_id,
             r->pruned_through_id);
  } else {
    snprintf(c->problem, sizeof c->problem, "row %lld: missing (the last row is %lld): rows were removed",
             o->expect_id, r->last_id);
  }
  c->broken = true;
  c->bad_id = o->expect_id;
}

int tn_audit_verify(struct tn_audit *a, const struct tn_audit_verify_opts *opts,
                    struct tn_audit_verify_result *r, struct tn_error *err) {
  struct tn_error local;
  if (!err)
    err = &local;
  memset(r, 0, sizeof *r);
  char sql[512], head_prev[TN_AUDIT_HASH_LEN] = "", anchor[160] = "", seen_hash[TN_AUDIT_HASH_LEN] = "";
  bool seen = false;
  struct tn_audit_chain chain;
  PGresult *res = NULL;
  pthread_mutex_lock(&a->mu);
  int rc = connect_locked(a, err);
  if (rc)
    goto out;
  res = exec(a, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", PGRES_COMMAND_OK,
             "starting the verification", err);
  if (!res)
    goto failed;
  PQclear(res);
  if ((rc = read_checkpoint(a, r, head_prev, err)))
    goto out;
  if (head_prev[0])
    snprintf(anchor, sizeof anchor, "the prune checkpoint in row %lld (rows up to %lld were pruned)",
             r->checkpoint_id, r->pruned_through_id);
  tn_audit_chain_init(&chain, head_prev[0] ? head_prev : NULL, anchor);
  snprintf(sql, sizeof sql,
           "DECLARE tn_audit_verify NO SCROLL CURSOR FOR SELECT " COLUMNS " FROM %s.audit_events ORDER BY id",
           a->schema);
  res = exec(a, sql, PGRES_COMMAND_OK, "reading the audit table", err);
  if (!res)
    goto failed;
  PQclear(res);
  for (;;) {
    res = exec(a, "FETCH " FETCH_ROWS_S " FROM tn_audit_verify", PGRES_TUPLES_OK, "reading the audit table",
               err);
    if (!res)
      goto failed;
    int n = PQntuples(res);
    for (int i = 0; i < n && !chain.broken; i++) {
      struct tn_audit_row row = row_at(res, i);
      if (opts && row.id == opts->expect_id) {
        seen = true;
        snprintf(seen_hash, sizeof seen_hash, "%s", row.hash ? row.hash : "");
      }
      int frc = tn_audit_chain_feed(&chain, &row);
      if (frc && frc != TN_EINVALID) {
        PQclear(res);
        rc = tn_error_set(err, frc, "audit trail: hashing a row failed: %s", tn_strerror(frc));
        goto out;
      }
      if (frc == 0) {
        if (r->first_id == 0)
          r->first_id = row.id;
        r->last_id = row.id;
      }
    }
    PQclear(res);
    if (n < FETCH_ROWS || chain.broken)
      break;
  }
  check_expectation(opts, r, seen, seen_hash, head_prev, &chain);
  r->ok = !chain.broken;
  r->rows = chain.rows;
  r->bad_id = chain.bad_id;
  snprintf(r->problem, sizeof r->problem, "%s", chain.problem);
  if (chain.rows > 0)
    snprintf(r->last_hash, sizeof r->last_hash, "%s", chain.expect_prev);
  goto out;
failed:
  rc = err->code ? err->code : TN_EAPI;
out:
  rollback(a); /* read only: ends the transaction and the cursor */
  pthread_mutex_unlock(&a->mu);
  return rc;
}

/* ---- list --------------------------------------------------------------------------------- */

static json_t *json_cell_string(PGresult *res, int row, int col) {
  const char *s = cell(res, row, col);
  return s ? json_string(s) : json_null();
}

static json_t *json_cell_int(PGresult *res, int row, int col) {
  return PQgetisnull(res, row, col) ? json_null()
                                    : json_integer(strtoll(PQgetvalue(res, row, col), NULL, 10));
}

int tn_audit_list(struct tn_audit *a, const char *tenant, long long limit, json_t **rows,
                  struct tn_error *err) {
  *rows = NULL;
  char sql[768], limit_s[24];
  struct tn_error local;
  if (!err)
    err = &local;
  char *target = NULL;
  json_t *arr = NULL;
  if (tenant) {
    struct tn_buf tb;
    tn_buf_init(&tb, 4096);
    if (tn_buf_printf(&tb, "tenant/%s", tenant) || !(target = tn_buf_take(&tb))) {
      tn_buf_cleanup(&tb);
      return tn_error_set(err, TN_EINVALID, "audit trail: tenant id too long or out of memory");
    }
  }
  snprintf(limit_s, sizeof limit_s, "%lld", limit);
  const char *params[] = {target, limit > 0 ? limit_s : NULL};
  snprintf(sql, sizeof sql,
           "SELECT * FROM (SELECT " COLUMNS " FROM %s.audit_events WHERE ($1::text IS NULL OR target = $1) "
           "ORDER BY id DESC LIMIT $2::bigint) t ORDER BY id",
           a->schema);
  pthread_mutex_lock(&a->mu);
  int rc = connect_locked(a, err);
  if (rc)
    goto out;
  PGresult *res = exec_params(a, sql, 2, params, PGRES_TUPLES_OK, "listing audit rows", err);
  if (!res) {
    rc = err->code ? err->code : TN_EAPI;
    goto out;
  }
  arr = json_array();
  static const char *const keys[] = {"id",
                                     "at",
                                     "actor",
                                     "action",
                                     "target",
                                     "request_id",
                                     "correlation_id",
                                     "outcome",
                                     "generation_before",
                                     "generation_after",
                                     "details",
                                     "prev_hash",
                                     "hash"};
  for (int i = 0; arr && i < PQntuples(res); i++) {
    json_t *o = json_object();
    for (int c = 0; o && c < 13; c++) {
      json_t *v;
      if (c == 0 || c == 8 || c == 9)
        v = json_cell_int(res, i, c);
      else if (c == 10 && cell(res, i, c))
        v = json_loads(cell(res, i, c), JSON_DECODE_ANY, NULL);
      else
        v = json_cell_string(res, i, c);
      json_object_set_new(o, keys[c], v ? v : json_null());
    }
    if (!o || json_array_append_new(arr, o)) {
      json_decref(arr);
      arr = NULL;
    }
  }
  PQclear(res);
  if (!arr) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  *rows = arr;
out:
  pthread_mutex_unlock(&a->mu);
  free(target);
  return rc;
}

/* ---- retention ---------------------------------------------------------------------------- */

static int prune(struct tn_audit *a, const char *cutoff, int days, const char *actor, long long *pruned,
                 struct tn_error *err) {
  struct tn_error local;
  if (!err)
    err = &local;
  char sql[384], days_s[16];
  snprintf(days_s, sizeof days_s, "%d", days);
  const char *params[] = {cutoff, cutoff ? NULL : days_s, actor ? actor : TN_AUDIT_OPERATOR_ACTOR};
  snprintf(sql, sizeof sql,
           "SELECT pruned, pruned_through_id, checkpoint_id FROM %s.audit_prune("
           "coalesce($1::timestamptz, now() - make_interval(days => $2::int)), $3)",
           a->schema);
  if (pruned)
    *pruned = 0;
  pthread_mutex_lock(&a->mu);
  int rc = connect_locked(a, err);
  if (rc)
    goto out;
  PGresult *res = exec_params(a, sql, 3, params, PGRES_TUPLES_OK, "pruning audit rows", err);
  if (!res) {
    rc = err->code ? err->code : TN_EAPI;
    goto out;
  }
  if (pruned)
    *pruned = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
  PQclear(res);
out:
  pthread_mutex_unlock(&a->mu);
  return rc;
}

int tn_audit_prune(struct tn_audit *a, int older_than_days, const char *actor, long long *pruned,
                   struct tn_error *err) {
  if (older_than_days < 1)
    return tn_error_set(err, TN_EINVALID, "audit trail: retention must be at least 1 day (got %d)",
                        older_than_days);
  return prune(a, NULL, older_than_days, actor, pruned, err);
}

int tn_audit_prune_before(struct tn_audit *a, const char *cutoff, const char *actor, long long *pruned,
                          struct tn_error *err) {
  if (!cutoff || !*cutoff)
    return tn_error_set(err, TN_EINVALID, "audit trail: a prune needs a cutoff time");
  return prune(a, cutoff, 0, actor, pruned, err);
}

int tn_audit_parse_retention(const char *s, int *days) {
  if (!s || !*s)
    return -EINVAL;
  long long v = 0;
  const char *p = s;
  for (; *p >= '0' && *p <= '9'; p++) {
    v = v * 10 + (*p - '0');
    if (v > 3650000)
      return -EINVAL;
  }
  if (p == s || strcmp(p, "d") != 0 || v < 1)
    return -EINVAL;
  *days = (int)v;
  return 0;
}
