/* admin.c - dead letters and replay (see admin.h). */
#include "webhooks/admin.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhooks/delivery.h"

static int check_schema(const char *s, struct tn_error *err) {
  if (!*s || strlen(s) > 40)
    return tn_error_set(err, TN_EINVALID, "bad schema name");
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || *p == '_' || (p > s && *p >= '0' && *p <= '9')))
      return tn_error_set(err, TN_EINVALID, "bad schema name");
  return 0;
}

/* Runs one statement (with @S@ replaced by the quoted schema); *res kept when wanted. */
static int run(PGconn *c, const char *schema, const char *tmpl, int n, const char *const *v,
               ExecStatusType want, PGresult **keep, struct tn_error *err) {
  char q[64];
  snprintf(q, sizeof q, "\"%s\"", schema);
  size_t len = strlen(tmpl) + 1;
  for (const char *p = tmpl; (p = strstr(p, "@S@")); p += 3)
    len += strlen(q);
  char *text = malloc(len), *o = text;
  if (!text)
    return tn_error_set(err, -ENOMEM, "out of memory");
  for (const char *p = tmpl; *p;)
    if (strncmp(p, "@S@", 3) == 0) {
      o += sprintf(o, "%s", q);
      p += 3;
    } else
      *o++ = *p++;
  *o = '\0';
  PGresult *res = PQexecParams(c, text, n, NULL, v, NULL, NULL, 0);
  free(text);
  if (PQresultStatus(res) != want) {
    char msg[300];
    snprintf(msg, sizeof msg, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(c));
    msg[strcspn(msg, "\n")] = '\0';
    PQclear(res);
    return tn_error_set(err, TN_EUNAVAILABLE, "%s", msg);
  }
  if (keep)
    *keep = res;
  else
    PQclear(res);
  return 0;
}

static int begin(PGconn *c, const char *schema, struct tn_error *err) {
  int rc = check_schema(schema, err);
  if (rc)
    return rc;
  if ((rc = tn_delivery_init_schema(c, schema, err)))
    return rc;
  return run(c, schema, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL, err);
}

static int finish(PGconn *c, const char *schema, const char *sub, int rc, struct tn_error *err) {
  if (!rc) {
    const char *v[] = {sub};
    rc = run(c, schema,
             "INSERT INTO @S@.webhook_state AS w (subscription, epoch) VALUES ($1, 1) "
             "ON CONFLICT (subscription) DO UPDATE SET epoch = w.epoch + 1",
             1, v, PGRES_COMMAND_OK, NULL, err);
  }
  if (!rc)
    rc = run(c, schema, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, err);
  if (rc)
    PQclear(PQexec(c, "ROLLBACK"));
  return rc;
}

int tn_wh_dlq_list(void *conn, const char *schema, const char *subscription, json_t **out,
                   struct tn_error *err) {
  int rc = check_schema(schema, err);
  if (rc || (rc = tn_delivery_init_schema(conn, schema, err)))
    return rc;
  const char *v[] = {subscription};
  PGresult *res = NULL;
  if ((rc = run(
           conn, schema,
           "SELECT COALESCE(json_agg(json_build_object('subscription', subscription, 'seq', seq, 'tenant', "
           "tenant, 'tenantSequence', tenant_seq, 'id', id, 'type', type, 'attempts', attempts, "
           "'lastStatus', last_status, 'lastError', last_error, 'deadAt', "
           "to_char(dead_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) ORDER BY subscription, "
           "seq), '[]')::text FROM @S@.webhook_dead_letters WHERE $1::text IS NULL OR subscription = $1",
           1, v, PGRES_TUPLES_OK, &res, err)))
    return rc;
  *out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
  PQclear(res);
  return *out ? 0 : tn_error_set(err, -ENOMEM, "out of memory");
}

int tn_wh_dlq_requeue(void *conn, const char *schema, const char *subscription, long long seq, long long *n,
                      struct tn_error *err) {
  int rc = begin(conn, schema, err);
  if (rc)
    return rc;
  char s[32];
  snprintf(s, sizeof s, "%lld", seq);
  const char *v[] = {subscription, s};
  PGresult *res = NULL;
  rc = run(
      conn, schema,
      "WITH d AS (DELETE FROM @S@.webhook_dead_letters WHERE subscription = $1 AND ($2::bigint = 0 OR seq = "
      "$2::bigint) RETURNING tenant, tenant_seq), m AS (SELECT tenant, min(tenant_seq) AS ts FROM d GROUP BY "
      "tenant), u AS (UPDATE @S@.webhook_cursors c SET tenant_seq = LEAST(c.tenant_seq, m.ts - 1) FROM m "
      "WHERE c.subscription = $1 AND c.tenant = m.tenant RETURNING 1) "
      "SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM u)",
      2, v, PGRES_TUPLES_OK, &res, err);
  if (!rc) {
    *n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
  }
  return finish(conn, schema, subscription, rc, err);
}

int tn_wh_dlq_purge(void *conn, const char *schema, const char *subscription, long long seq, long long *n,
                    struct tn_error *err) {
  int rc = begin(conn, schema, err);
  if (rc)
    return rc;
  char s[32];
  snprintf(s, sizeof s, "%lld", seq);
  const char *v[] = {subscription, s};
  PGresult *res = NULL;
  rc = run(
      conn, schema,
      "WITH d AS (DELETE FROM @S@.webhook_dead_letters WHERE subscription = $1 AND ($2::bigint = 0 OR seq = "
      "$2::bigint) RETURNING tenant, tenant_seq, seq), m AS (SELECT DISTINCT ON (tenant) tenant, tenant_seq, "
      "seq FROM d ORDER BY tenant, tenant_seq DESC), u AS (INSERT INTO @S@.webhook_cursors AS c "
      "(subscription, "
      "tenant, tenant_seq, seq) SELECT $1, tenant, tenant_seq, seq FROM m ON CONFLICT (subscription, tenant) "
      "DO UPDATE SET tenant_seq = GREATEST(c.tenant_seq, EXCLUDED.tenant_seq), seq = GREATEST(c.seq, "
      "EXCLUDED.seq) RETURNING 1) SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM u)",
      2, v, PGRES_TUPLES_OK, &res, err);
  if (!rc) {
    *n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
  }
  return finish(conn, schema, subscription, rc, err);
}

int tn_wh_replay(void *conn, const char *schema, const char *subscription, long long from_seq,
                 long long *tenants, struct tn_error *err) {
  if (from_seq < 1)
    return tn_error_set(err, TN_EINVALID, "--from-sequence must be a positive outbox sequence");
  int rc = begin(conn, schema, err);
  if (rc)
    return rc;
  char s[32];
  snprintf(s, sizeof s, "%lld", from_seq);
  const char *v[] = {subscription, s};
  PGresult *res = NULL;
  rc = run(
      conn, schema,
      "WITH f AS (SELECT tenant, min(tenant_seq) AS ts FROM @S@.outbox WHERE seq >= $2::bigint GROUP BY "
      "tenant), u AS (UPDATE @S@.webhook_cursors c SET tenant_seq = f.ts - 1 FROM f WHERE c.subscription = "
      "$1 AND c.tenant = f.tenant AND c.tenant_seq >= f.ts RETURNING 1) SELECT count(*) FROM u",
      2, v, PGRES_TUPLES_OK, &res, err);
  if (!rc) {
    *tenants = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
  }
  return finish(conn, schema, subscription, rc, err);
}
