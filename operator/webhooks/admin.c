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

static int prepare(PGconn *c, const char *schema, struct tn_error *err) {
  int rc = check_schema(schema, err);
  return rc ? rc : tn_delivery_init_schema(c, schema, err);
}

/* One administrative function of the delivery schema (SECURITY DEFINER: it bumps the epoch and
 * appends its audit row in the same transaction); its single result into *n. */
static int call(PGconn *c, const char *schema, const char *tmpl, const char *subscription, long long arg,
                const char *actor, const char *correlation_id, long long *n, struct tn_error *err) {
  int rc = prepare(c, schema, err);
  if (rc)
    return rc;
  char a[32];
  snprintf(a, sizeof a, "%lld", arg);
  const char *v[] = {subscription, a, actor, correlation_id};
  PGresult *res = NULL;
  if ((rc = run(c, schema, tmpl, 4, v, PGRES_TUPLES_OK, &res, err)))
    return rc;
  *n = atoll(PQgetvalue(res, 0, 0));
  PQclear(res);
  return 0;
}

int tn_wh_dlq_list(void *conn, const char *schema, const char *subscription, json_t **out,
                   struct tn_error *err) {
  int rc = prepare(conn, schema, err);
  if (rc)
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

int tn_wh_dlq_requeue(void *conn, const char *schema, const char *subscription, long long seq,
                      const char *actor, const char *correlation_id, long long *n, struct tn_error *err) {
  return call(conn, schema, "SELECT @S@.webhook_dlq_requeue($1, $2::bigint, $3, $4)", subscription, seq,
              actor, correlation_id, n, err);
}

int tn_wh_dlq_purge(void *conn, const char *schema, const char *subscription, long long seq,
                    const char *actor, const char *correlation_id, long long *n, struct tn_error *err) {
  return call(conn, schema, "SELECT @S@.webhook_dlq_purge($1, $2::bigint, $3, $4)", subscription, seq, actor,
              correlation_id, n, err);
}

int tn_wh_replay(void *conn, const char *schema, const char *subscription, long long from_seq,
                 const char *actor, const char *correlation_id, long long *tenants, struct tn_error *err) {
  if (from_seq < 1)
    return tn_error_set(err, TN_EINVALID, "--from-sequence must be a positive outbox sequence");
  return call(conn, schema, "SELECT @S@.webhook_replay($1, $2::bigint, $3, $4)", subscription, from_seq,
              actor, correlation_id, tenants, err);
}
