/* delivery.c - the webhook delivery engine (see delivery.h). */
#include "webhooks/delivery.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/log.h"
#include "runtime/metrics.h"
#include "util/pgtext.h"
#include "util/wipe.h"

/* ---- subscriptions -------------------------------------------------------------------------- */

void tn_wh_subscription_free(struct tn_wh_subscription *s) {
  if (!s)
    return;
  free(s->name);
  free(s->url);
  free(s->ca_pem);
  json_decref(s->event_types);
  json_decref(s->tenant_selector);
  tn_wh_keys_wipe(&s->keys);
  free(s);
}

static bool loopback_host(const char *host, size_t n) {
  char h[64];
  if (n == 0 || n >= sizeof h)
    return false;
  memcpy(h, host, n);
  h[n] = '\0';
  if (h[0] == '[' && n > 2 && h[n - 1] == ']') {
    h[n - 1] = '\0';
    return strcmp(h + 1, "::1") == 0;
  }
  if (strcmp(h, "localhost") == 0)
    return true;
  struct in_addr a;
  return inet_pton(AF_INET, h, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* https://host..., or http://<loopback>... with insecure_loopback. */
static int check_url(const char *url, bool insecure_loopback, struct tn_error *err) {
  const char *rest;
  if (strncmp(url, "https://", 8) == 0)
    rest = url + 8;
  else if (strncmp(url, "http://", 7) == 0) {
    rest = url + 7;
    const char *end = rest;
    if (*end == '[')
      end = strchr(end, ']') ? strchr(end, ']') + 1 : end + strlen(end);
    else
      end += strcspn(end, ":/?#");
    if (!insecure_loopback || !loopback_host(rest, (size_t)(end - rest)))
      return tn_error_set(err, TN_EINVALID,
                          "spec.url: plain http is allowed only to a loopback address (127.0.0.0/8, ::1, "
                          "localhost) with spec.allowInsecureLoopback: true; use https");
  } else
    return tn_error_set(err, TN_EINVALID, "spec.url must start with https://");
  if (!*rest || *rest == '/' || strchr(rest, '@') || strpbrk(url, " \t\r\n"))
    return tn_error_set(err, TN_EINVALID, "spec.url must name a host, without user information or spaces");
  return 0;
}

int tn_wh_subscription_parse(const json_t *obj, const char *secret, size_t secret_len,
                             struct tn_wh_subscription **out, struct tn_error *err) {
  const json_t *md = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
  const char *name = json_string_value(json_object_get(md, "name"));
  const char *url = json_string_value(json_object_get(spec, "url"));
  if (!name || !url)
    return tn_error_set(err, TN_EINVALID, "a WebhookSubscription needs metadata.name and spec.url");
  struct tn_wh_subscription *s = calloc(1, sizeof *s);
  if (!s)
    return tn_error_set(err, -ENOMEM, "out of memory");
  int rc = 0;
  s->insecure_loopback = json_is_true(json_object_get(spec, "allowInsecureLoopback"));
  if ((rc = check_url(url, s->insecure_loopback, err)))
    goto fail;
  s->name = strdup(name);
  s->url = strdup(url);
  if (!s->name || !s->url) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  const char *ca = json_string_value(json_object_get(spec, "caBundle"));
  if (ca && *ca) {
    size_t n = strlen(ca);
    s->ca_pem = calloc(1, n + 4);
    int got = s->ca_pem && n % 4 == 0
                  ? EVP_DecodeBlock((unsigned char *)s->ca_pem, (const unsigned char *)ca, (int)n)
                  : -1;
    if (got < 0 || !strstr(s->ca_pem, "-----BEGIN CERTIFICATE-----")) {
      rc = tn_error_set(err, TN_EINVALID, "spec.caBundle must be base64 of PEM certificates");
      goto fail;
    }
  }
  json_t *et = json_object_get(spec, "eventTypes");
  if (json_is_array(et) && json_array_size(et) > 0)
    s->event_types = json_incref(et);
  json_t *sel = json_object_get(spec, "tenantSelector");
  if (json_is_object(sel) && json_object_size(sel) > 0)
    s->tenant_selector = json_deep_copy(sel);
  json_t *v;
  s->max_attempts = (v = json_object_get(spec, "maxAttempts")) && json_integer_value(v) > 0
                        ? (int)json_integer_value(v)
                        : 12;
  s->timeout_s = (v = json_object_get(spec, "timeoutSeconds")) && json_integer_value(v) > 0
                     ? (int)json_integer_value(v)
                     : 10;
  s->paused = json_is_true(json_object_get(spec, "paused"));
  const char *ord = json_string_value(json_object_get(spec, "ordering"));
  s->best_effort = ord && strcmp(ord, "BestEffort") == 0;
  s->generation = json_integer_value(json_object_get(md, "generation"));
  if ((rc = tn_wh_keys_parse(secret, secret_len, &s->keys, err))) {
    tn_error_prefix(err, "spec.secretRef");
    goto fail;
  }
  *out = s;
  return 0;
fail:
  tn_wh_subscription_free(s);
  return rc;
}

static bool expr_matches(const json_t *e, const json_t *labels) {
  const char *key = json_string_value(json_object_get(e, "key"));
  const char *op = json_string_value(json_object_get(e, "operator"));
  const json_t *vals = json_object_get(e, "values");
  if (!key || !op)
    return false;
  const char *have = json_string_value(json_object_get(labels, key));
  bool in = false;
  size_t i;
  json_t *x;
  json_array_foreach(vals, i, x) if (have && json_string_value(x) && strcmp(have, json_string_value(x)) == 0)
      in = true;
  if (strcmp(op, "In") == 0)
    return in;
  if (strcmp(op, "NotIn") == 0)
    return !in;
  if (strcmp(op, "Exists") == 0)
    return have != NULL;
  if (strcmp(op, "DoesNotExist") == 0)
    return have == NULL;
  return false;
}

bool tn_wh_selector_matches(const json_t *selector, const json_t *labels) {
  if (!selector)
    return true;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)json_object_get(selector, "matchLabels"), k, v) {
    const char *have = json_string_value(json_object_get(labels, k));
    if (!have || !json_string_value(v) || strcmp(have, json_string_value(v)) != 0)
      return false;
  }
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(selector, "matchExpressions"), i,
                     e) if (!expr_matches(e, labels)) return false;
  return true;
}

static bool type_wanted(const struct tn_wh_subscription *s, const char *type) {
  if (!s->event_types)
    return true;
  size_t i;
  json_t *x;
  json_array_foreach(s->event_types, i,
                     x) if (json_string_value(x) && strcmp(json_string_value(x), type) == 0) return true;
  return false;
}

/* A fetch at most this often while commits are announced or events finish (bounds the queries
 * per second at full speed); and how long to wait while nothing can move. */
#define FETCH_GAP_S 0.02
#define STALLED_POLL_S 1.0
/* How many outbox rows past the floor one fetch looks at. */
#define SCAN_ROWS(d) (8 * (d)->cfg.batch)

/* ---- engine state --------------------------------------------------------------------------- */

struct row {
  long long seq, tenant_seq;
  char *id, *type, *body;
  json_t *labels;
  double created; /* outbox created_at, epoch seconds */
  int attempts;
  double next_at; /* monotonic: not before */
  bool in_flight;
  struct row *next;
};

struct tq { /* one tenant's held rows, in tenant_seq order */
  char *tenant;
  struct row *head, *tail;
  int n;
  long long held_through;              /* highest tenant_seq held or done */
  long long done_seq, done_tenant_seq; /* to commit (0: nothing) */
  struct tq *next;
};

struct sub {
  struct tn_wh_subscription *s;
  struct tq *tenants;
  int held;
  long long floor; /* every outbox row with seq <= floor is past this subscription's cursors */
  long long epoch; /* webhook_state.epoch seen; a change (replay, requeue) resets what is held */
  bool epoch_known;
  double next_fetch; /* monotonic */
  double last_fetch; /* monotonic */
  bool progressed;   /* something finished since the last fetch */
  bool stalled;      /* the last fetch added nothing while rows were held: wait for progress */
  bool notified;     /* an outbox commit was announced since the last fetch */
  bool removed;
  struct tn_wh_status st;
  double next_status;
  struct curl_slist *resolve;
  struct tn_series *lat, *backlog, *oldest, *dlq;
  struct sub *next;
};

struct tn_delivery {
  struct tn_delivery_config cfg;
  char *dsn, *ca_file, *schema;
  pthread_t thread;
  bool started;
  atomic_bool stop;
  pthread_mutex_t mu; /* guards pending puts/removes and the status copies */
  struct tn_wh_subscription **puts;
  size_t n_puts, cap_puts;
  char **removes;
  size_t n_removes, cap_removes;
  struct sub *subs; /* engine thread only (status copied under mu) */
  PGconn *conn;
  bool schema_ready;
  bool listening; /* LISTEN <schema>_outbox on conn: commits are announced (push, not polling) */
  double next_connect;
  CURLM *multi;
  int in_flight;
  struct xfer *xfers; /* in flight */
  struct tn_metric *m_lat, *m_attempts, *m_failures, *m_backlog, *m_oldest, *m_dlq;
};

struct xfer {
  struct xfer *prev, *next;
  struct sub *sub;
  struct tq *tq;
  struct row *row;
  CURL *easy;
  struct curl_slist *headers;
  double started;
};

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void row_free(struct row *r) {
  if (!r)
    return;
  free(r->id);
  free(r->type);
  free(r->body);
  json_decref(r->labels);
  free(r);
}

static void tq_clear(struct tq *q) {
  struct row *r = q->head;
  while (r) {
    struct row *n = r->next;
    row_free(r);
    r = n;
  }
  q->head = q->tail = NULL;
  q->n = 0;
}

/* ---- PostgreSQL ----------------------------------------------------------------------------- */

static char *sql(const struct tn_delivery *d, const char *fmt) {
  /* fmt uses @S@ for the quoted schema; returns malloc'ed SQL. */
  char q[80];
  snprintf(q, sizeof q, "\"%s\"", d->schema);
  size_t n = strlen(fmt) + 1, ql = strlen(q);
  for (const char *p = fmt; (p = strstr(p, "@S@")); p += 3)
    n += ql;
  char *out = malloc(n), *o = out;
  if (!out)
    return NULL;
  for (const char *p = fmt; *p;) {
    if (strncmp(p, "@S@", 3) == 0) {
      memcpy(o, q, ql);
      o += ql;
      p += 3;
    } else
      *o++ = *p++;
  }
  *o = '\0';
  return out;
}

static PGresult *q_exec(struct tn_delivery *d, const char *tmpl, int n, const char *const *vals,
                        ExecStatusType want, struct tn_error *err) {
  if (!d->conn) {
    tn_error_set(err, TN_EUNAVAILABLE, "PostgreSQL connection lost");
    return NULL;
  }
  char *text = sql(d, tmpl);
  if (!text) {
    tn_error_set(err, -ENOMEM, "out of memory");
    return NULL;
  }
  PGresult *res = PQexecParams(d->conn, text, n, NULL, vals, NULL, NULL, 0);
  free(text);
  if (PQresultStatus(res) != want) {
    char msg[300];
    tn_pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(d->conn), msg, sizeof msg);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    tn_error_set(err, state && strcmp(state, "42P01") == 0 ? TN_ENOTFOUND : TN_EUNAVAILABLE, "%s", msg);
    PQclear(res);
    if (PQstatus(d->conn) != CONNECTION_OK) {
      PQfinish(d->conn);
      d->conn = NULL;
    }
    return NULL;
  }
  return res;
}

/* What marks the engine's objects as this version's (a comment on webhook_state). */
#define WH_SCHEMA_MARK "tenancy-operator webhook delivery (schema 2): written only through its functions"

/* The engine's tables and functions, created by their owner (the audit trail's init, or the
 * engine itself when its role owns the schema). The operator's role (the audit trail's writer
 * role) gets SELECT on the tables and EXECUTE on the functions only (tn_delivery_grant_sql):
 * cursors only move forward, a dead letter copies its outbox row, and requeue, purge and replay
 * bump the epoch and append their audit row in the same transaction. */
const char tn_delivery_schema_sql[] =
    "SELECT pg_advisory_xact_lock(7142014);\n"
    "CREATE SCHEMA IF NOT EXISTS @S@;\n"
    "CREATE TABLE IF NOT EXISTS @S@.webhook_cursors (\n"
    "  subscription text NOT NULL, tenant text NOT NULL, tenant_seq bigint NOT NULL, seq bigint NOT NULL,\n"
    "  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (subscription, tenant));\n"
    "CREATE TABLE IF NOT EXISTS @S@.webhook_dead_letters (\n"
    "  subscription text NOT NULL, seq bigint NOT NULL, tenant text NOT NULL, tenant_seq bigint NOT NULL,\n"
    "  id text NOT NULL, type text NOT NULL, attempts int NOT NULL, last_status int, last_error text NOT "
    "NULL,\n"
    "  dead_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (subscription, seq));\n"
    "CREATE INDEX IF NOT EXISTS webhook_dead_letters_tenant ON @S@.webhook_dead_letters (subscription, "
    "tenant);\n"
    "CREATE TABLE IF NOT EXISTS @S@.webhook_state (\n"
    "  subscription text PRIMARY KEY, epoch bigint NOT NULL DEFAULT 0);\n"
    /* An outbox this role owns without the announcing trigger (one made by hand, as in tests). */
    "DO $d$ BEGIN\n"
    "  IF to_regclass('@S@.outbox') IS NOT NULL\n"
    "     AND pg_has_role((SELECT relowner FROM pg_catalog.pg_class WHERE oid = to_regclass('@S@.outbox')),\n"
    "                     'USAGE')\n"
    "     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = to_regclass('@S@.outbox')\n"
    "                     AND tgname = 'outbox_announce') THEN\n"
    "    CREATE OR REPLACE FUNCTION @S@.outbox_announce() RETURNS trigger\n"
    "      LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$\n"
    "    BEGIN PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', ''); RETURN NULL; END $f$;\n"
    "    CREATE TRIGGER outbox_announce AFTER INSERT ON @S@.outbox\n"
    "      FOR EACH STATEMENT EXECUTE FUNCTION @S@.outbox_announce();\n"
    "  END IF;\n"
    "END $d$;\n"
    /* The audit row of an administrative change, when the audit trail is in this schema. */
    "CREATE OR REPLACE FUNCTION @S@.webhook_audit(p_actor text, p_action text, p_subscription text,\n"
    "    p_correlation_id text, p_details jsonb) RETURNS void\n"
    "  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  IF to_regprocedure('@S@.audit_append(text,text,text,text,text,text,bigint,bigint,json)') IS NULL "
    "THEN\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  PERFORM @S@.audit_append(coalesce(nullif(p_actor, ''), session_user::text), p_action,\n"
    "    'webhooksubscription/' || p_subscription, NULL, p_correlation_id, 'succeeded', NULL, NULL,\n"
    "    p_details::json);\n"
    "END $$;\n"
    "CREATE OR REPLACE FUNCTION @S@.webhook_bump_epoch(p_subscription text) RETURNS void\n"
    "  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$\n"
    "  INSERT INTO @S@.webhook_state AS w (subscription, epoch) VALUES (p_subscription, 1)\n"
    "  ON CONFLICT (subscription) DO UPDATE SET epoch = w.epoch + 1 $$;\n"
    /* The engine: cursors only move forward. */
    "CREATE OR REPLACE FUNCTION @S@.webhook_advance(p_subscription text, p_cursors json) RETURNS void\n"
    "  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
    "  INSERT INTO @S@.webhook_cursors AS c (subscription, tenant, tenant_seq, seq)\n"
    "  SELECT p_subscription, x.t, x.ts, x.s FROM json_to_recordset(p_cursors) AS x(t text, ts bigint, s "
    "bigint)\n"
    "  ON CONFLICT (subscription, tenant) DO UPDATE SET tenant_seq = EXCLUDED.tenant_seq,\n"
    "    seq = EXCLUDED.seq, updated_at = clock_timestamp()\n"
    "  WHERE c.tenant_seq < EXCLUDED.tenant_seq $$;\n"
    /* The engine: a dead letter is a copy of its outbox row (nothing else can be put there). */
    "CREATE OR REPLACE FUNCTION @S@.webhook_dead_letter(p_subscription text, p_seq bigint, p_attempts int,\n"
    "    p_last_status int, p_last_error text) RETURNS void\n"
    "  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  INSERT INTO @S@.webhook_dead_letters AS w (subscription, seq, tenant, tenant_seq, id, type, "
    "attempts,\n"
    "      last_status, last_error)\n"
    "  SELECT p_subscription, o.seq, o.tenant, o.tenant_seq, o.id, o.type, p_attempts, p_last_status,\n"
    "      left(coalesce(p_last_error, ''), 1000)\n"
    "    FROM @S@.outbox o WHERE o.seq = p_seq\n"
    "  ON CONFLICT (subscription, seq) DO UPDATE SET attempts = EXCLUDED.attempts,\n"
    "    last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error, dead_at = clock_timestamp();\n"
    "  IF NOT FOUND THEN\n"
    "    RAISE EXCEPTION 'webhooks: no outbox event with seq %', p_seq USING ERRCODE = 'no_data_found';\n"
    "  END IF;\n"
    "END $$;\n"
    /* tenantctl events dlq requeue: the dead letters go and the tenants' cursors move back. */
    "CREATE OR REPLACE FUNCTION @S@.webhook_dlq_requeue(p_subscription text, p_seq bigint, p_actor text,\n"
    "    p_correlation_id text, OUT out_count bigint)\n"
    "  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  WITH d AS (DELETE FROM @S@.webhook_dead_letters WHERE subscription = p_subscription\n"
    "               AND (p_seq = 0 OR seq = p_seq) RETURNING tenant, tenant_seq),\n"
    "       m AS (SELECT tenant, min(tenant_seq) AS ts FROM d GROUP BY tenant),\n"
    "       u AS (UPDATE @S@.webhook_cursors c SET tenant_seq = LEAST(c.tenant_seq, m.ts - 1) FROM m\n"
    "               WHERE c.subscription = p_subscription AND c.tenant = m.tenant RETURNING 1)\n"
    "  SELECT (SELECT count(*) FROM d) + 0 * (SELECT count(*) FROM u) INTO out_count;\n"
    "  PERFORM @S@.webhook_bump_epoch(p_subscription);\n"
    "  PERFORM @S@.webhook_audit(p_actor, 'webhook.dlq.requeue', p_subscription, p_correlation_id,\n"
    "    jsonb_strip_nulls(jsonb_build_object('subscription', p_subscription, 'seq', nullif(p_seq, 0),\n"
    "                                         'count', out_count)));\n"
    "END $$;\n"
    /* tenantctl events dlq purge: the dead letters go for good; the cursors move past them. */
    "CREATE OR REPLACE FUNCTION @S@.webhook_dlq_purge(p_subscription text, p_seq bigint, p_actor text,\n"
    "    p_correlation_id text, OUT out_count bigint)\n"
    "  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  WITH d AS (DELETE FROM @S@.webhook_dead_letters WHERE subscription = p_subscription\n"
    "               AND (p_seq = 0 OR seq = p_seq) RETURNING tenant, tenant_seq, seq),\n"
    "       m AS (SELECT DISTINCT ON (tenant) tenant, tenant_seq, seq FROM d ORDER BY tenant, tenant_seq "
    "DESC),\n"
    "       u AS (INSERT INTO @S@.webhook_cursors AS c (subscription, tenant, tenant_seq, seq)\n"
    "               SELECT p_subscription, tenant, tenant_seq, seq FROM m\n"
    "               ON CONFLICT (subscription, tenant) DO UPDATE\n"
    "               SET tenant_seq = GREATEST(c.tenant_seq, EXCLUDED.tenant_seq),\n"
    "                   seq = GREATEST(c.seq, EXCLUDED.seq) RETURNING 1)\n"
    "  SELECT (SELECT count(*) FROM d) + 0 * (SELECT count(*) FROM u) INTO out_count;\n"
    "  PERFORM @S@.webhook_bump_epoch(p_subscription);\n"
    "  PERFORM @S@.webhook_audit(p_actor, 'webhook.dlq.purge', p_subscription, p_correlation_id,\n"
    "    jsonb_strip_nulls(jsonb_build_object('subscription', p_subscription, 'seq', nullif(p_seq, 0),\n"
    "                                         'count', out_count)));\n"
    "END $$;\n"
    /* tenantctl events replay: every event with seq >= p_from is sent again. */
    "CREATE OR REPLACE FUNCTION @S@.webhook_replay(p_subscription text, p_from bigint, p_actor text,\n"
    "    p_correlation_id text, OUT out_tenants bigint)\n"
    "  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
    "BEGIN\n"
    "  IF p_from IS NULL OR p_from < 1 THEN\n"
    "    RAISE EXCEPTION 'webhooks: the replay sequence must be positive' USING ERRCODE = "
    "'invalid_parameter_value';\n"
    "  END IF;\n"
    "  WITH f AS (SELECT tenant, min(tenant_seq) AS ts FROM @S@.outbox WHERE seq >= p_from GROUP BY "
    "tenant),\n"
    "       u AS (UPDATE @S@.webhook_cursors c SET tenant_seq = f.ts - 1 FROM f\n"
    "               WHERE c.subscription = p_subscription AND c.tenant = f.tenant AND c.tenant_seq >= f.ts\n"
    "               RETURNING 1)\n"
    "  SELECT count(*) FROM u INTO out_tenants;\n"
    "  PERFORM @S@.webhook_bump_epoch(p_subscription);\n"
    "  PERFORM @S@.webhook_audit(p_actor, 'webhook.replay', p_subscription, p_correlation_id,\n"
    "    jsonb_build_object('subscription', p_subscription, 'fromSequence', p_from, 'count', out_tenants));\n"
    "END $$;\n"
    "REVOKE ALL ON @S@.webhook_cursors, @S@.webhook_dead_letters, @S@.webhook_state FROM PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.webhook_audit(text, text, text, text, jsonb) FROM PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.webhook_bump_epoch(text) FROM PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.webhook_advance(text, json) FROM PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.webhook_dead_letter(text, bigint, int, int, text) FROM PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.webhook_dlq_requeue(text, bigint, text, text) FROM PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.webhook_dlq_purge(text, bigint, text, text) FROM PUBLIC;\n"
    "REVOKE ALL ON FUNCTION @S@.webhook_replay(text, bigint, text, text) FROM PUBLIC;\n"
    "COMMENT ON TABLE @S@.webhook_state IS '" WH_SCHEMA_MARK "';\n";

/* The operator's (writer) role: read the tables, change them only through the functions. */
const char tn_delivery_grant_sql[] =
    "GRANT SELECT ON @S@.webhook_cursors, @S@.webhook_dead_letters, @S@.webhook_state TO @R@;\n"
    "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON @S@.webhook_cursors,\n"
    "  @S@.webhook_dead_letters, @S@.webhook_state FROM @R@;\n"
    "GRANT EXECUTE ON FUNCTION @S@.webhook_advance(text, json) TO @R@;\n"
    "GRANT EXECUTE ON FUNCTION @S@.webhook_dead_letter(text, bigint, int, int, text) TO @R@;\n"
    "GRANT EXECUTE ON FUNCTION @S@.webhook_dlq_requeue(text, bigint, text, text) TO @R@;\n"
    "GRANT EXECUTE ON FUNCTION @S@.webhook_dlq_purge(text, bigint, text, text) TO @R@;\n"
    "GRANT EXECUTE ON FUNCTION @S@.webhook_replay(text, bigint, text, text) TO @R@;\n";

static int schema_current(PGconn *conn, const char *schema, bool *current, struct tn_error *err) {
  char reg[96];
  snprintf(reg, sizeof reg, "\"%s\".webhook_state", schema);
  const char *v[] = {reg};
  PGresult *res = PQexecParams(
      conn, "SELECT coalesce(obj_description(to_regclass($1), 'pg_class'), '') = '" WH_SCHEMA_MARK "'", 1,
      NULL, v, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    char msg[300];
    tn_pg_one_line(PQerrorMessage(conn), msg, sizeof msg);
    PQclear(res);
    return tn_error_set(err, TN_EUNAVAILABLE, "looking for the webhook delivery tables: %s", msg);
  }
  *current = PQgetvalue(res, 0, 0)[0] == 't';
  PQclear(res);
  return 0;
}

int tn_delivery_init_schema(void *conn, const char *schema, struct tn_error *err) {
  if (!schema)
    schema = "tenancy";
  bool current = false;
  int rc = schema_current(conn, schema, &current, err);
  if (rc || current)
    return rc; /* made by their owner (tenantctl audit init): the operator's role cannot, need not */
  struct tn_delivery tmp = {.conn = conn, .schema = (char *)schema};
  char *text = sql(&tmp, tn_delivery_schema_sql);
  if (!text)
    return tn_error_set(err, -ENOMEM, "out of memory");
  char *full = malloc(strlen(text) + 16);
  if (!full) {
    free(text);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  sprintf(full, "BEGIN;%sCOMMIT;", text);
  free(text);
  PGresult *res = PQexec(conn, full);
  free(full);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    char msg[300];
    tn_pg_one_line(PQerrorMessage(conn), msg, sizeof msg);
    rc = tn_error_set(err, TN_EUNAVAILABLE,
                      "creating the webhook delivery tables: %s (when the operator's role does not own the "
                      "schema, run `tenantctl audit init --writer-role ROLE` as its owner)",
                      msg);
    PQclear(PQexec(conn, "ROLLBACK"));
  }
  PQclear(res);
  return rc;
}

static int ensure_conn(struct tn_delivery *d, struct tn_error *err) {
  if (d->conn && PQstatus(d->conn) == CONNECTION_OK)
    return 0;
  if (d->conn) {
    PQfinish(d->conn);
    d->conn = NULL;
  }
  double now = mono();
  if (now < d->next_connect)
    return tn_error_set(err, TN_EUNAVAILABLE, "PostgreSQL unreachable; retrying");
  d->next_connect = now + 2;
  const char *keys[8] = {"connect_timeout", "application_name", "sslmode"};
  const char *vals[8] = {"5", "tenancy-operator-webhooks", "verify-full"};
  int n = 3;
  if (d->ca_file) {
    keys[n] = "sslrootcert";
    vals[n++] = d->ca_file;
  }
  keys[n] = "dbname";
  vals[n++] = d->dsn;
  keys[n] = vals[n] = NULL;
  d->conn = PQconnectdbParams(keys, vals, 1);
  if (!d->conn || PQstatus(d->conn) != CONNECTION_OK) {
    char msg[300];
    tn_pg_one_line(d->conn ? PQerrorMessage(d->conn) : "out of memory", msg, sizeof msg);
    PQfinish(d->conn);
    d->conn = NULL;
    return tn_error_set(err, TN_EUNAVAILABLE, "cannot connect to PostgreSQL: %s", msg);
  }
  /* No JIT: the engine's queries are short and frequent, and compiling cost more than running.
   * Asynchronous commit: a cursor committed is in PostgreSQL's memory at once and on disk within
   * a fraction of a second; only a crash of PostgreSQL itself (not of the operator, not a clean
   * restart) can lose that fraction, and then those events are sent again (same webhook-id):
   * at-least-once holds, and a commit no longer waits for a WAL flush per delivery. */
  PQclear(PQexec(d->conn, "SET statement_timeout = '30s'; SET client_min_messages = warning; SET jit = off; "
                          "SET synchronous_commit = off"));
  if (!d->schema_ready) {
    int rc = tn_delivery_init_schema(d->conn, d->schema, err);
    if (rc)
      return rc;
    d->schema_ready = true;
  }
  /* The outbox's statement trigger (tn_delivery_notify_sql) announces each commit on channel
   * <schema>_outbox; without it (an outbox made by hand) the poll interval still finds the rows. */
  char listen[96];
  snprintf(listen, sizeof listen, "LISTEN \"%s_outbox\"", d->schema);
  PGresult *res = PQexec(d->conn, listen);
  d->listening = PQresultStatus(res) == PGRES_COMMAND_OK;
  PQclear(res);
  for (struct sub *s = d->subs; s; s = s->next)
    s->notified = true; /* what was committed while we were away */
  return 0;
}

/* Reads the announcements that arrived on the connection; true when an outbox commit was among
 * them. Safe when the connection is gone. */
static bool take_notifies(struct tn_delivery *d) {
  if (!d->conn || !d->listening)
    return false;
  bool any = false;
  if (!PQconsumeInput(d->conn))
    return false; /* the next query notices the broken connection */
  PGnotify *n;
  while ((n = PQnotifies(d->conn))) {
    any = true;
    PQfreemem(n);
  }
  return any;
}

/* ---- metrics -------------------------------------------------------------------------------- */

static void register_metrics(struct tn_delivery *d) {
  struct tn_metrics *m = d->cfg.metrics;
  if (!m)
    return;
  static const char *const sub_l[] = {"subscription", NULL};
  static const char *const code_l[] = {"subscription", "code", NULL};
  static const double lat_b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  d->m_lat = tn_metrics_register(m, TN_HISTOGRAM, "tenancy_webhook_delivery_latency_seconds",
                                 "Seconds from the event's commit in the outbox to the consumer's 2xx.",
                                 sub_l, lat_b, sizeof lat_b / sizeof *lat_b);
  d->m_attempts = tn_metrics_register(m, TN_COUNTER, "tenancy_webhook_delivery_attempts_total",
                                      "Delivery attempts by answer (HTTP status, timeout or connection).",
                                      code_l, NULL, 0);
  d->m_failures = tn_metrics_register(
      m, TN_COUNTER, "tenancy_webhook_delivery_failures_total",
      "Failed delivery attempts by answer (HTTP status, timeout or connection).", code_l, NULL, 0);
  d->m_backlog = tn_metrics_register(m, TN_GAUGE, "tenancy_webhook_backlog",
                                     "Outbox events not yet delivered to the subscription.", sub_l, NULL, 0);
  d->m_oldest =
      tn_metrics_register(m, TN_GAUGE, "tenancy_webhook_oldest_undelivered_age_seconds",
                          "Age of the oldest event not yet delivered to the subscription.", sub_l, NULL, 0);
  d->m_dlq = tn_metrics_register(m, TN_GAUGE, "tenancy_webhook_dead_letters",
                                 "Events in the dead-letter table of the subscription.", sub_l, NULL, 0);
}

static void count(struct tn_delivery *d, struct tn_metric *f, const char *sub, const char *code) {
  if (f)
    tn_series_inc(tn_metric_with(f, (const char *const[]){sub, code, NULL}));
}

/* ---- the engine ----------------------------------------------------------------------------- */

int tn_delivery_new(const struct tn_delivery_config *cfg, struct tn_delivery **out, struct tn_error *err) {
  if (!cfg->dsn || !*cfg->dsn)
    return tn_error_set(err, TN_ECONFIG, "webhook delivery needs the PostgreSQL DSN of the audit trail");
  const char *schema = cfg->schema ? cfg->schema : "tenancy";
  for (const char *p = schema; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || *p == '_' || (p > schema && *p >= '0' && *p <= '9')) || p - schema > 40)
      return tn_error_set(err, TN_ECONFIG, "bad schema name");
  struct tn_delivery *d = calloc(1, sizeof *d);
  if (!d)
    return tn_error_set(err, -ENOMEM, "out of memory");
  d->cfg = *cfg;
  if (!d->cfg.batch)
    d->cfg.batch = 1000;
  if (!d->cfg.per_tenant)
    d->cfg.per_tenant = 16;
  if (!d->cfg.max_in_flight)
    d->cfg.max_in_flight = 64;
  if (d->cfg.poll_s <= 0)
    d->cfg.poll_s = 0.1;
  if (d->cfg.backoff_base_s <= 0)
    d->cfg.backoff_base_s = 1;
  if (d->cfg.backoff_max_s <= 0)
    d->cfg.backoff_max_s = 300;
  if (d->cfg.status_period_s <= 0)
    d->cfg.status_period_s = 2;
  d->dsn = strdup(cfg->dsn);
  d->schema = strdup(schema);
  d->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
  pthread_mutex_init(&d->mu, NULL);
  if (!d->dsn || !d->schema || (cfg->ca_file && !d->ca_file)) {
    tn_delivery_free(d);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  register_metrics(d);
  *out = d;
  return 0;
}

void tn_delivery_put(struct tn_delivery *d, struct tn_wh_subscription *s) {
  pthread_mutex_lock(&d->mu);
  if (d->n_puts == d->cap_puts) {
    size_t c = d->cap_puts ? d->cap_puts * 2 : 8;
    void *p = realloc(d->puts, c * sizeof *d->puts);
    if (!p) {
      pthread_mutex_unlock(&d->mu);
      tn_wh_subscription_free(s);
      return;
    }
    d->puts = p;
    d->cap_puts = c;
  }
  d->puts[d->n_puts++] = s;
  pthread_mutex_unlock(&d->mu);
}

void tn_delivery_remove(struct tn_delivery *d, const char *name) {
  char *n = strdup(name);
  if (!n)
    return;
  pthread_mutex_lock(&d->mu);
  if (d->n_removes == d->cap_removes) {
    size_t c = d->cap_removes ? d->cap_removes * 2 : 8;
    void *p = realloc(d->removes, c * sizeof *d->removes);
    if (!p) {
      pthread_mutex_unlock(&d->mu);
      free(n);
      return;
    }
    d->removes = p;
    d->cap_removes = c;
  }
  d->removes[d->n_removes++] = n;
  pthread_mutex_unlock(&d->mu);
}

static struct sub *find_sub(struct tn_delivery *d, const char *name) {
  for (struct sub *s = d->subs; s; s = s->next)
    if (!s->removed && strcmp(s->s->name, name) == 0)
      return s;
  return NULL;
}

static void sub_reset(struct sub *s) {
  /* Drops what is held (not what is in flight: those finish and are forgotten). */
  struct tq **pp = &s->tenants;
  while (*pp) {
    struct tq *q = *pp;
    struct row **rp = &q->head;
    q->tail = NULL;
    while (*rp) {
      if ((*rp)->in_flight) {
        q->tail = *rp;
        rp = &(*rp)->next;
      } else {
        struct row *r = *rp;
        *rp = r->next;
        row_free(r);
        q->n--;
        s->held--;
      }
    }
    q->held_through = q->tail ? q->tail->tenant_seq : 0;
    q->done_seq = q->done_tenant_seq = 0;
    pp = &q->next;
  }
  s->floor = 0;
  s->progressed = true;
}

static void apply_changes(struct tn_delivery *d) {
  pthread_mutex_lock(&d->mu);
  for (size_t i = 0; i < d->n_removes; i++) {
    struct sub *s = find_sub(d, d->removes[i]);
    if (s)
      s->removed = true;
    free(d->removes[i]);
  }
  d->n_removes = 0;
  for (size_t i = 0; i < d->n_puts; i++) {
    struct tn_wh_subscription *ns = d->puts[i];
    struct sub *s = find_sub(d, ns->name);
    if (s) {
      bool refilter = !json_equal(s->s->event_types, ns->event_types) ||
                      !json_equal(s->s->tenant_selector, ns->tenant_selector) ||
                      s->s->best_effort != ns->best_effort;
      /* In-flight transfers point at the subscription's struct sub, not at s->s: swap safely. */
      tn_wh_subscription_free(s->s);
      s->s = ns;
      if (refilter)
        sub_reset(s);
      continue;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
      tn_wh_subscription_free(ns);
      continue;
    }
    s->s = ns;
    const char *const l[] = {ns->name, NULL};
    s->lat = d->m_lat ? tn_metric_with(d->m_lat, l) : NULL;
    s->backlog = d->m_backlog ? tn_metric_with(d->m_backlog, l) : NULL;
    s->oldest = d->m_oldest ? tn_metric_with(d->m_oldest, l) : NULL;
    s->dlq = d->m_dlq ? tn_metric_with(d->m_dlq, l) : NULL;
    s->st.known = true;
    s->next = d->subs;
    d->subs = s;
  }
  d->n_puts = 0;
  pthread_mutex_unlock(&d->mu);
}

static struct tq *tq_get(struct sub *s, const char *tenant, bool create) {
  for (struct tq *q = s->tenants; q; q = q->next)
    if (strcmp(q->tenant, tenant) == 0)
      return q;
  if (!create)
    return NULL;
  struct tq *q = calloc(1, sizeof *q);
  if (!q || !(q->tenant = strdup(tenant))) {
    free(q);
    return NULL;
  }
  q->next = s->tenants;
  s->tenants = q;
  return q;
}

static void set_error(struct tn_delivery *d, struct sub *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(struct tn_delivery *d, struct sub *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&d->mu);
  vsnprintf(s->st.last_error, sizeof s->st.last_error, fmt, ap);
  pthread_mutex_unlock(&d->mu);
  va_end(ap);
}

/* Reads the epoch; when it changed (a replay or requeue), drops what is held. */
static int check_epoch(struct tn_delivery *d, struct sub *s, struct tn_error *err) {
  const char *v[] = {s->s->name};
  PGresult *res =
      q_exec(d, "SELECT epoch FROM @S@.webhook_state WHERE subscription = $1", 1, v, PGRES_TUPLES_OK, err);
  if (!res)
    return err->code;
  long long e = PQntuples(res) ? atoll(PQgetvalue(res, 0, 0)) : 0;
  PQclear(res);
  if (s->epoch_known && e != s->epoch)
    sub_reset(s);
  s->epoch = e;
  s->epoch_known = true;
  return 0;
}

static int fetch(struct tn_delivery *d, struct sub *s, struct tn_error *err) {
  int rc = check_epoch(d, s, err);
  if (rc)
    return rc;
  int room = d->cfg.batch - s->held;
  if (room <= 0)
    return 0;
  char floor[32], limit[32], per[32], upto[32];
  snprintf(floor, sizeof floor, "%lld", s->floor);
  snprintf(limit, sizeof limit, "%d", room);
  snprintf(per, sizeof per, "%d", d->cfg.per_tenant);
  /* At most SCAN_ROWS outbox rows past the floor are looked at: with a large backlog the rows of
   * tenants whose window is full would otherwise be read (and skipped) on every fetch. A tenant's
   * rows in the range are a prefix of its pending ones (its tenant_seq order is seq order). When
   * the last fetch found nothing new (one tenant's event may hold the floor back, in a long
   * backoff), the whole backlog is looked at, so that other tenants never wait for it. */
  long long end = s->stalled ? LLONG_MAX : s->floor + (long long)SCAN_ROWS(d);
  snprintf(upto, sizeof upto, "%lld", end);
  /* What is held (or done, not yet committed) per tenant is not read again: only new rows come
   * back, so a batch is never taken up by rows already in hand. */
  long long min_held = LLONG_MAX;
  json_t *held = json_array();
  for (struct tq *q = s->tenants; held && q; q = q->next) {
    if (q->head && q->head->seq < min_held)
      min_held = q->head->seq;
    if (q->held_through > 0 && json_array_append_new(held, json_pack("{s:s,s:I}", "t", q->tenant, "h",
                                                                     (json_int_t)q->held_through))) {
      json_decref(held);
      held = NULL;
    }
  }
  char *held_text = held ? json_dumps(held, JSON_COMPACT) : NULL;
  json_decref(held);
  if (!held_text)
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *v[] = {s->s->name, floor, per, limit, s->s->best_effort ? "t" : "f", upto, held_text};
  PGresult *b = q_exec(d, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL, PGRES_COMMAND_OK, err);
  if (!b) {
    free(held_text);
    return err->code;
  }
  PQclear(b);
  /* The first rows past each tenant's cursor (at most $3 per tenant), oldest first; a tenant
   * with a dead letter waits unless the subscription is BestEffort. */
  PGresult *res = q_exec(
      d,
      "SELECT o.seq, o.tenant, o.tenant_seq, o.id, o.type, o.labels::text, o.event::text, "
      "       extract(epoch FROM o.created_at)::float8 "
      "FROM @S@.outbox o LEFT JOIN @S@.webhook_cursors c ON c.subscription = $1 AND c.tenant = o.tenant "
      "  LEFT JOIN json_to_recordset($7::json) AS h(t text, h bigint) ON h.t = o.tenant "
      "WHERE o.seq > $2::bigint AND o.seq <= $6::bigint "
      "  AND o.tenant_seq > GREATEST(COALESCE(c.tenant_seq, 0), COALESCE(h.h, 0)) "
      "  AND o.tenant_seq <= COALESCE(c.tenant_seq, 0) + $3::int "
      "  AND ($5::bool OR NOT EXISTS (SELECT 1 FROM @S@.webhook_dead_letters x "
      "                               WHERE x.subscription = $1 AND x.tenant = o.tenant)) "
      "ORDER BY o.seq LIMIT $4::int",
      7, v, PGRES_TUPLES_OK, err);
  free(held_text);
  PGresult *mx =
      res ? q_exec(d, "SELECT COALESCE(max(seq), 0) FROM @S@.outbox", 0, NULL, PGRES_TUPLES_OK, err) : NULL;
  if (d->conn)
    PQclear(PQexec(d->conn, res && mx ? "COMMIT" : "ROLLBACK"));
  if (!res || !mx) {
    PQclear(res);
    PQclear(mx);
    return err->code;
  }
  int n = PQntuples(res);
  if (n == 0 && !s->held) { /* nothing pending in the range: the floor moves to its end */
    long long m = atoll(PQgetvalue(mx, 0, 0));
    if (m > end)
      m = end;
    if (m > s->floor)
      s->floor = m;
  } else {
    /* Below the oldest row held or returned, everything is past the cursors. */
    long long first = n > 0 ? atoll(PQgetvalue(res, 0, 0)) : LLONG_MAX;
    if (min_held < first)
      first = min_held;
    if (first != LLONG_MAX && first - 1 > s->floor)
      s->floor = first - 1;
  }
  PQclear(mx);
  int added = 0;
  for (int i = 0; i < n; i++) {
    const char *tenant = PQgetvalue(res, i, 1);
    long long ts = atoll(PQgetvalue(res, i, 2));
    struct tq *q = tq_get(s, tenant, true);
    if (!q)
      break;
    if (ts <= q->held_through)
      continue; /* already held, or done and not yet committed */
    struct row *r = calloc(1, sizeof *r);
    if (!r)
      break;
    r->seq = atoll(PQgetvalue(res, i, 0));
    r->tenant_seq = ts;
    r->id = strdup(PQgetvalue(res, i, 3));
    r->type = strdup(PQgetvalue(res, i, 4));
    r->labels = json_loads(PQgetvalue(res, i, 5), 0, NULL);
    r->body = strdup(PQgetvalue(res, i, 6));
    r->created = atof(PQgetvalue(res, i, 7));
    if (!r->id || !r->type || !r->body) {
      row_free(r);
      break;
    }
    if (q->tail)
      q->tail->next = r;
    else
      q->head = r;
    q->tail = r;
    q->n++;
    q->held_through = ts;
    s->held++;
    added++;
  }
  PQclear(res);
  s->stalled = added == 0 && s->held > 0;
  return 0;
}

/* Commits the cursors of the events finished (delivered, filtered out, or dead-lettered under
 * BestEffort) in one statement. A cursor only moves forward from where this engine saw it. */
static int commit_cursors(struct tn_delivery *d, struct sub *s, struct tn_error *err) {
  json_t *arr = json_array();
  if (!arr)
    return tn_error_set(err, -ENOMEM, "out of memory");
  for (struct tq *q = s->tenants; q; q = q->next)
    if (q->done_tenant_seq)
      json_array_append_new(arr, json_pack("{s:s,s:I,s:I}", "t", q->tenant, "ts",
                                           (json_int_t)q->done_tenant_seq, "s", (json_int_t)q->done_seq));
  if (json_array_size(arr) == 0) {
    json_decref(arr);
    return 0;
  }
  char *text = json_dumps(arr, JSON_COMPACT);
  json_decref(arr);
  if (!text)
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *v[] = {s->s->name, text};
  PGresult *res = q_exec(d, "SELECT @S@.webhook_advance($1, $2::json)", 2, v, PGRES_TUPLES_OK, err);
  free(text);
  if (!res)
    return err->code;
  PQclear(res);
  /* Forget the tenants with nothing held: the database cursor now says where they are. */
  struct tq **pp = &s->tenants;
  while (*pp) {
    struct tq *q = *pp;
    q->done_tenant_seq = q->done_seq = 0;
    if (!q->head) {
      *pp = q->next;
      free(q->tenant);
      free(q);
    } else
      pp = &q->next;
  }
  return 0;
}

static void finish_row(struct sub *s, struct tq *q, struct row *r) {
  /* r is q's head. */
  q->head = r->next;
  if (!q->head)
    q->tail = NULL;
  q->n--;
  s->held--;
  q->done_seq = r->seq;
  q->done_tenant_seq = r->tenant_seq;
  s->progressed = true;
  row_free(r);
}

static int dead_letter(struct tn_delivery *d, struct sub *s, struct tq *q, struct row *r, int status,
                       const char *why) {
  char seq[32], att[32], st[16];
  snprintf(seq, sizeof seq, "%lld", r->seq);
  snprintf(att, sizeof att, "%d", r->attempts);
  snprintf(st, sizeof st, "%d", status);
  const char *v[] = {s->s->name, seq, att, status ? st : NULL, why};
  struct tn_error err = {0};
  PGresult *res = q_exec(d, "SELECT @S@.webhook_dead_letter($1, $2::bigint, $3::int, $4::int, $5)", 5, v,
                         PGRES_TUPLES_OK, &err);
  if (!res)
    return err.code;
  PQclear(res);
  tn_log_warn(
      "webhook subscription %s: event %s (tenant %s, sequence %lld) dead-lettered after %d attempts: %s",
      s->s->name, r->id, q->tenant, r->tenant_seq, r->attempts, why);
  if (s->s->best_effort) {
    finish_row(s, q, r);
  } else {
    /* The tenant waits: drop what is held for it; its cursor stays before the dead letter. */
    s->held -= q->n;
    tq_clear(q);
    q->held_through = 0;
    s->progressed = true;
  }
  return 0;
}

static size_t discard(char *p, size_t sz, size_t n, void *ud) { return sz * n; }

static void start_send(struct tn_delivery *d, struct sub *s, struct tq *q, struct row *r) {
  struct xfer *x = calloc(1, sizeof *x);
  if (!x)
    return;
  x->sub = s;
  x->tq = q;
  x->row = r;
  x->easy = curl_easy_init();
  if (!x->easy) {
    free(x);
    return;
  }
  char h[64 + TN_WH_SIG_LEN * TN_WH_MAX_KEYS];
  long long now = (long long)time(NULL);
  snprintf(h, sizeof h, "webhook-id: %s", r->id);
  x->headers = curl_slist_append(x->headers, h);
  snprintf(h, sizeof h, "webhook-timestamp: %lld", now);
  x->headers = curl_slist_append(x->headers, h);
  strcpy(h, "webhook-signature: ");
  tn_wh_sign(&s->s->keys, r->id, now, r->body, strlen(r->body), h + strlen(h), sizeof h - strlen(h));
  x->headers = curl_slist_append(x->headers, h);
  x->headers = curl_slist_append(x->headers, "Content-Type: application/cloudevents+json; charset=utf-8");
  x->headers = curl_slist_append(x->headers, "Expect:");
  OPENSSL_cleanse(h, sizeof h);
  CURL *e = x->easy;
  curl_easy_setopt(e, CURLOPT_URL, s->s->url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, s->s->insecure_loopback ? "https,http" : "https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->body));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "tenancy-operator-webhooks/" TN_VERSION);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->s->timeout_s * 1000L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(s->s->timeout_s < 5 ? s->s->timeout_s : 5) * 1000L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(e, CURLOPT_PRIVATE, x);
  if (s->s->ca_pem) {
    struct curl_blob blob = {.data = s->s->ca_pem, .len = strlen(s->s->ca_pem), .flags = CURL_BLOB_COPY};
    curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
  }
  x->started = mono();
  r->in_flight = true;
  r->attempts++;
  if (curl_multi_add_handle(d->multi, e) != CURLM_OK) {
    r->in_flight = false;
    curl_slist_free_all(x->headers);
    curl_easy_cleanup(e);
    free(x);
    return;
  }
  d->in_flight++;
  x->next = d->xfers;
  if (d->xfers)
    d->xfers->prev = x;
  d->xfers = x;
}

static void xfer_release(struct tn_delivery *d, struct xfer *x) {
  curl_multi_remove_handle(d->multi, x->easy);
  curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->headers);
  if (x->prev)
    x->prev->next = x->next;
  else
    d->xfers = x->next;
  if (x->next)
    x->next->prev = x->prev;
  d->in_flight--;
  x->row->in_flight = false;
}

static double backoff(struct tn_delivery *d, int attempts) {
  double b = d->cfg.backoff_base_s * pow(2, attempts - 1);
  if (b > d->cfg.backoff_max_s)
    b = d->cfg.backoff_max_s;
  unsigned int rnd = 0;
  RAND_bytes((unsigned char *)&rnd, sizeof rnd);
  return b * (0.5 + 0.5 * (rnd / (double)UINT32_MAX)); /* jitter: 50-100% */
}

static void transfer_done(struct tn_delivery *d, struct xfer *x, CURLcode cc) {
  struct sub *s = x->sub;
  struct tq *q = x->tq;
  struct row *r = x->row;
  long status = 0;
  curl_off_t retry_after = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry_after);
  xfer_release(d, x);
  char code[24];
  if (cc == CURLE_OK)
    snprintf(code, sizeof code, "%ld", status);
  else
    snprintf(code, sizeof code, "%s", cc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "connection");
  count(d, d->m_attempts, s->s->name, code);
  s->st.attempts++;
  bool orphan = s->removed; /* the row is freed with the subscription */
  if (cc == CURLE_OK && status >= 200 && status < 300) {
    tn_series_observe(s->lat, wall() - r->created);
    s->st.delivered++;
    pthread_mutex_lock(&d->mu);
    s->st.last_delivered_seq = r->seq;
    pthread_mutex_unlock(&d->mu);
    if (orphan)
      goto drop;
    finish_row(s, q, r);
    free(x);
    return;
  }
  count(d, d->m_failures, s->s->name, code);
  bool permanent = cc == CURLE_OK && status >= 400 && status < 500 && status != 408 && status != 429;
  if (cc == CURLE_OK)
    set_error(d, s, "event %s (tenant %s): the consumer answered HTTP %ld", r->id, q->tenant, status);
  else
    set_error(d, s, "event %s (tenant %s): %s", r->id, q->tenant, curl_easy_strerror(cc));
  if (orphan)
    goto drop;
  if (permanent || r->attempts >= s->s->max_attempts) {
    char why[160];
    if (cc == CURLE_OK)
      snprintf(why, sizeof why, "HTTP %ld%s", status, permanent ? " (permanent)" : "");
    else
      snprintf(why, sizeof why, "%s", curl_easy_strerror(cc));
    if (dead_letter(d, s, q, r, cc == CURLE_OK ? (int)status : 0, why))
      r->next_at = mono() + 1; /* PostgreSQL down: try again, the attempt count stays */
    free(x);
    return;
  }
  double delay = backoff(d, r->attempts);
  if (status == 429 && retry_after > 0)
    delay = retry_after > 3600 ? 3600 : (double)retry_after;
  r->next_at = mono() + delay;
  free(x);
  return;
drop:
  free(x);
}

static void dispatch(struct tn_delivery *d, struct sub *s, double now, double *wake) {
  if (s->s->paused || s->removed)
    return;
  for (struct tq *q = s->tenants; q && d->in_flight < d->cfg.max_in_flight; q = q->next) {
    while (q->head && !q->head->in_flight) {
      struct row *r = q->head;
      if (!type_wanted(s->s, r->type) || !tn_wh_selector_matches(s->s->tenant_selector, r->labels)) {
        finish_row(s, q, r); /* filtered out: the cursor moves past it */
        continue;
      }
      if (r->next_at > now) {
        if (r->next_at < *wake)
          *wake = r->next_at;
        break;
      }
      start_send(d, s, q, r);
      break;
    }
  }
}

static void compute_status(struct tn_delivery *d, struct sub *s) {
  char floor[32];
  snprintf(floor, sizeof floor, "%lld", s->floor);
  const char *v[] = {s->s->name, floor};
  struct tn_error err = {0};
  PGresult *res = q_exec(
      d,
      "SELECT count(*), COALESCE(extract(epoch FROM clock_timestamp() - min(o.created_at)), 0)::float8,"
      " (SELECT count(*) FROM @S@.webhook_dead_letters x WHERE x.subscription = $1) "
      "FROM @S@.outbox o LEFT JOIN @S@.webhook_cursors c ON c.subscription = $1 AND c.tenant = o.tenant "
      "WHERE o.seq > $2::bigint AND o.tenant_seq > COALESCE(c.tenant_seq, 0)",
      2, v, PGRES_TUPLES_OK, &err);
  pthread_mutex_lock(&d->mu);
  if (res) {
    s->st.backlog = atoll(PQgetvalue(res, 0, 0));
    s->st.oldest_age_s = atof(PQgetvalue(res, 0, 1));
    s->st.dead_letters = atoll(PQgetvalue(res, 0, 2));
    s->st.db_ok = true;
    PQclear(res);
  } else {
    s->st.db_ok = false;
    snprintf(s->st.last_error, sizeof s->st.last_error, "reading the outbox: %s", err.message);
  }
  s->st.delivering = s->held > 0 && !s->s->paused;
  struct tn_wh_status copy = s->st;
  pthread_mutex_unlock(&d->mu);
  tn_series_set(s->backlog, (double)copy.backlog);
  tn_series_set(s->oldest, copy.oldest_age_s);
  tn_series_set(s->dlq, (double)copy.dead_letters);
  if (d->cfg.on_status)
    d->cfg.on_status(d->cfg.ud, s->s->name, &copy);
}

static void sub_free(struct sub *s) {
  struct tq *q = s->tenants;
  while (q) {
    struct tq *n = q->next;
    tq_clear(q);
    free(q->tenant);
    free(q);
    q = n;
  }
  tn_wh_subscription_free(s->s);
  free(s);
}

/* Abandons the transfers in flight: their cursors were not committed, so whoever leads next sends
 * them again (same webhook-id). */
static void abandon_all(struct tn_delivery *d) {
  while (d->xfers) {
    struct xfer *x = d->xfers;
    xfer_release(d, x);
    free(x);
  }
}

static int drain_done(struct tn_delivery *d) {
  CURLMsg *msg;
  int left, n = 0;
  while ((msg = curl_multi_info_read(d->multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    struct xfer *x = NULL;
    CURL *e = msg->easy_handle;
    CURLcode cc = msg->data.result;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    transfer_done(d, x, cc);
    n++;
  }
  return n;
}

static void *run(void *arg) {
  struct tn_delivery *d = arg;
  double next_db_log = 0;
  while (!atomic_load(&d->stop)) {
    apply_changes(d);
    double now = mono();
    double wake = now + d->cfg.poll_s;
    struct tn_error err = {0};
    bool db = ensure_conn(d, &err) == 0;
    if (!db && now >= next_db_log) {
      tn_log_warn("webhook delivery: %s", err.message);
      next_db_log = now + 30;
    }
    /* Drop removed subscriptions with nothing in flight. */
    for (struct sub **pp = &d->subs; *pp;) {
      struct sub *s = *pp;
      bool busy = false;
      for (struct tq *q = s->tenants; q && !busy; q = q->next)
        for (struct row *r = q->head; r; r = r->next)
          busy |= r->in_flight;
      if (s->removed && !busy) {
        *pp = s->next;
        sub_free(s);
      } else
        pp = &s->next;
    }
    for (struct sub *s = d->subs; s; s = s->next) {
      if (s->removed)
        continue;
      /* Fetch when the poll interval is up, or at once (at most every FETCH_GAP_S) when a commit
       * was announced or something finished, unless the last fetch found nothing new to hold and
       * nothing finished since (every tenant's window is full: fetching again would only re-read
       * the same rows). */
      bool wanted = s->notified || s->progressed, blocked = s->stalled && !s->progressed;
      bool due = now >= s->next_fetch || (wanted && !blocked && now >= s->last_fetch + FETCH_GAP_S);
      if (db && commit_cursors(d, s, &err) == 0 && !s->s->paused && s->held < d->cfg.batch / 2 && due) {
        s->notified = s->progressed = false;
        int rc = fetch(d, s, &err);
        if (rc && rc != TN_ENOTFOUND)
          set_error(d, s, "reading the outbox: %s", err.message);
        s->last_fetch = now;
        /* Poll again soon (announcements make it sooner), or later while nothing can move. */
        s->next_fetch = now + (s->stalled ? STALLED_POLL_S : d->cfg.poll_s);
      }
      if (db && now >= s->next_status) {
        compute_status(d, s);
        /* Counting a large backlog takes a while: then at most a tenth of the engine's time. */
        double took = mono() - now, period = d->cfg.status_period_s;
        if (s->st.backlog > 50000 && 10 * took > period)
          period = 10 * took;
        s->next_status = now + period;
      }
      dispatch(d, s, now, &wake);
      if (s->next_fetch < wake)
        wake = s->next_fetch;
      if ((s->notified || s->progressed) && !(s->stalled && !s->progressed) &&
          s->last_fetch + FETCH_GAP_S < wake)
        wake = s->last_fetch + FETCH_GAP_S;
    }
    /* Start what dispatch added at once, then wait for sockets, timers or a wakeup. */
    int running = 0;
    curl_multi_perform(d->multi, &running);
    int finished = drain_done(d);
    int timeout = (int)((wake - mono()) * 1000);
    long curl_ms = -1;
    curl_multi_timeout(d->multi, &curl_ms);
    if (curl_ms >= 0 && curl_ms < timeout)
      timeout = (int)curl_ms;
    if (timeout < 0)
      timeout = 0;
    if (timeout > 1000)
      timeout = 1000;
    if (finished)
      timeout = 0; /* the next events of those tenants can go now */
    /* The PostgreSQL socket too: an announced commit ends the wait. */
    struct curl_waitfd pg = {.fd = d->conn && d->listening ? PQsocket(d->conn) : -1,
                             .events = CURL_WAIT_POLLIN};
    bool announced = take_notifies(d); /* read while the last queries ran */
    if (announced)
      timeout = 0;
    curl_multi_poll(d->multi, pg.fd >= 0 ? &pg : NULL, pg.fd >= 0 ? 1 : 0, timeout, NULL);
    if (take_notifies(d) || announced)
      for (struct sub *s = d->subs; s; s = s->next)
        s->notified = true;
    curl_multi_perform(d->multi, &running);
    drain_done(d);
    /* Commit what finished right away: the lower the commit latency, the smaller a redelivery. */
    if (d->conn)
      for (struct sub *s = d->subs; s; s = s->next)
        if (!s->removed)
          commit_cursors(d, s, &err);
  }
  abandon_all(d);
  return NULL;
}

int tn_delivery_start(struct tn_delivery *d, struct tn_error *err) {
  if (d->started)
    return 0;
  d->multi = curl_multi_init();
  if (!d->multi)
    return tn_error_set(err, -ENOMEM, "cannot create the curl multi handle");
  curl_multi_setopt(d->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)d->cfg.max_in_flight);
  /* Keep the connections: by default the cache shrinks with the handles added, and each easy
   * handle lives for one request, so connections (and TLS handshakes) would not be reused. */
  curl_multi_setopt(d->multi, CURLMOPT_MAXCONNECTS, (long)d->cfg.max_in_flight * 2);
  curl_multi_setopt(d->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  atomic_store(&d->stop, false);
  if (pthread_create(&d->thread, NULL, run, d)) {
    curl_multi_cleanup(d->multi);
    d->multi = NULL;
    return tn_error_set(err, -EAGAIN, "cannot start the webhook delivery thread");
  }
  d->started = true;
  return 0;
}

void tn_delivery_stop(struct tn_delivery *d) {
  if (!d || !d->started)
    return;
  atomic_store(&d->stop, true);
  curl_multi_wakeup(d->multi);
  pthread_join(d->thread, NULL);
  d->started = false;
}

void tn_delivery_status(struct tn_delivery *d, const char *name, struct tn_wh_status *out) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&d->mu);
  for (struct sub *s = d->subs; s; s = s->next)
    if (!s->removed && strcmp(s->s->name, name) == 0)
      *out = s->st;
  pthread_mutex_unlock(&d->mu);
}

void tn_delivery_free(struct tn_delivery *d) {
  if (!d)
    return;
  tn_delivery_stop(d);
  struct sub *s = d->subs;
  while (s) {
    struct sub *n = s->next;
    sub_free(s);
    s = n;
  }
  for (size_t i = 0; i < d->n_puts; i++)
    tn_wh_subscription_free(d->puts[i]);
  for (size_t i = 0; i < d->n_removes; i++)
    free(d->removes[i]);
  free(d->puts);
  free(d->removes);
  if (d->multi)
    curl_multi_cleanup(d->multi);
  PQfinish(d->conn);
  tn_wipe_free_str(d->dsn);
  free(d->schema);
  free(d->ca_file);
  pthread_mutex_destroy(&d->mu);
  free(d);
}
