/* trail.c - the read API's tenant history and audit timeline (see trail.h).
 *
 * Threads: tn_trail_serve runs on a service thread and only parses; the query runs on one of the
 * HTTP server's job threads (tn_http_defer). The pool is `n` tn_audit handles (each one libpq
 * connection, opened with no_create: this path never creates or changes a table), a free list
 * under mu, and a condition variable: a job waits at most TN_TRAIL_ACQUIRE_TIMEOUT_S for a free
 * connection, then answers 503. At most `n` connections exist, whatever the load. */
#define _GNU_SOURCE
#include "api/trail.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "audit/audit.h"
#include "audit/history.h"
#include "runtime/httpserver.h"
#include "runtime/log.h"
#include "util/buf.h"

struct tn_trail {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int n;
  struct tn_audit *conns[TN_TRAIL_MAX_CONNECTIONS];
  bool busy[TN_TRAIL_MAX_CONNECTIONS];
};

int tn_trail_new(const struct tn_trail_config *cfg, struct tn_trail **out, struct tn_error *err) {
  *out = NULL;
  if (!cfg->dsn || !*cfg->dsn)
    return 0;
  int n = cfg->connections > 0 ? cfg->connections : TN_TRAIL_DEFAULT_CONNECTIONS;
  if (n > TN_TRAIL_MAX_CONNECTIONS)
    return tn_error_set(err, TN_ECONFIG, "the history pool holds 1 to %d connections, not %d",
                        TN_TRAIL_MAX_CONNECTIONS, n);
  struct tn_trail *t = calloc(1, sizeof *t);
  if (!t)
    return tn_error_set(err, -ENOMEM, "out of memory");
  pthread_mutex_init(&t->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->cv, &ca);
  pthread_condattr_destroy(&ca);
  struct tn_audit_options o = {.schema = cfg->schema,
                               .no_create = true,
                               .application_name = "tenancy-operator-read-api",
                               .ca_file = cfg->ca_file};
  for (int i = 0; i < n; i++) {
    int rc = tn_audit_open(cfg->dsn, &o, &t->conns[i], err);
    if (rc) {
      t->n = i;
      tn_trail_free(t);
      return rc;
    }
    t->n = i + 1;
  }
  *out = t;
  return 0;
}

void tn_trail_free(struct tn_trail *t) {
  if (!t)
    return;
  for (int i = 0; i < t->n; i++)
    tn_audit_close(t->conns[i]);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

static int acquire(struct tn_trail *t) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += TN_TRAIL_ACQUIRE_TIMEOUT_S;
  pthread_mutex_lock(&t->mu);
  int got = -1;
  for (;;) {
    for (int i = 0; i < t->n && got < 0; i++)
      if (!t->busy[i])
        got = i;
    if (got >= 0 || pthread_cond_timedwait(&t->cv, &t->mu, &until) == ETIMEDOUT)
      break;
  }
  if (got < 0) /* one last look after the timeout */
    for (int i = 0; i < t->n && got < 0; i++)
      if (!t->busy[i])
        got = i;
  if (got >= 0)
    t->busy[got] = true;
  pthread_mutex_unlock(&t->mu);
  return got;
}

static void release(struct tn_trail *t, int i) {
  pthread_mutex_lock(&t->mu);
  t->busy[i] = false;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

/* ---- pure parts ------------------------------------------------------------------------------ */

static const char *col(const json_t *row, const char *k) {
  return json_string_value(json_object_get(row, k));
}

int tn_trail_history_cursor(const char *token, char *at, char *gen, char *uid) {
  const char *u1 = token ? strchr(token, '_') : NULL;
  const char *u2 = u1 ? strchr(u1 + 1, '_') : NULL;
  if (!u2)
    return -EINVAL;
  size_t na = (size_t)(u1 - token), ng = (size_t)(u2 - u1 - 1), nu = strlen(u2 + 1);
  if (na < 20 || na > 39 || ng < 1 || ng > 19 || nu < 1 || nu > 71)
    return -EINVAL;
  for (size_t i = 0; i < na; i++)
    if (!(isdigit((unsigned char)token[i]) || strchr("-:.TZ", token[i])))
      return -EINVAL;
  for (size_t i = 0; i < ng; i++)
    if (!isdigit((unsigned char)u1[1 + i]))
      return -EINVAL;
  for (size_t i = 0; i < nu; i++)
    if (!(isxdigit((unsigned char)u2[1 + i]) || u2[1 + i] == '-'))
      return -EINVAL;
  snprintf(at, 40, "%.*s", (int)na, token);
  snprintf(gen, 24, "%.*s", (int)ng, u1 + 1);
  snprintf(uid, 72, "%s", u2 + 1);
  return 0;
}

json_t *tn_trail_history_page(const json_t *rows, const char *id, long limit) {
  json_t *items = json_array(), *meta = json_object();
  json_t *out =
      json_pack("{s:s, s:s, s:s, s:o, s:o}", "apiVersion", "tenancy.dev/v1alpha1", "kind", "TenantHistory",
                "tenant", id, "metadata", meta ? meta : json_object(), "items", items ? items : json_array());
  if (!out || !meta || !items) {
    json_decref(out);
    return NULL;
  }
  size_t n = json_array_size(rows);
  size_t shown = n > (size_t)limit ? (size_t)limit : n;
  bool ok = true;
  for (size_t i = 0; i < shown && ok; i++) {
    const json_t *row = json_array_get(rows, i), *prev = i + 1 < n ? json_array_get(rows, i + 1) : NULL;
    const char *uid = col(row, "uid") ?: "";
    if (prev && strcmp(col(prev, "uid") ?: "", uid) != 0)
      prev = NULL; /* another life of the same name: no predecessor */
    json_t *spec = json_loads(col(row, "spec") ?: "null", JSON_DECODE_ANY, NULL);
    /* a first version: every field is an addition (from an empty spec) */
    json_t *pspec = prev ? json_loads(col(prev, "spec") ?: "null", JSON_DECODE_ANY, NULL) : json_object();
    struct tn_buf d;
    tn_buf_init(&d, 1u << 20);
    int nchg = 0;
    json_t *changes = json_array();
    ok = spec && changes && tn_history_diff(pspec, spec, "spec", &d, &nchg) == 0;
    for (const char *p = tn_buf_str(&d); ok && *p;) {
      const char *nl = strchr(p, '\n');
      size_t len = nl ? (size_t)(nl - p) : strlen(p);
      if (len)
        ok = json_array_append_new(changes, json_stringn(p, len)) == 0;
      p += len + (nl ? 1 : 0);
    }
    tn_buf_cleanup(&d);
    json_decref(pspec);
    const char *cid = col(row, "correlation_id");
    json_t *item =
        ok ? json_pack("{s:s, s:I, s:s, s:s, s:o, s:o, s:o, s:O}", "uid", uid, "generation",
                       (json_int_t)strtoll(col(row, "generation") ?: "0", NULL, 10), "at",
                       col(row, "at") ?: "", "actor", col(row, "actor") ?: "", "correlationId",
                       cid ? json_string(cid) : json_null(), "previousGeneration",
                       prev ? json_integer((json_int_t)strtoll(col(prev, "generation") ?: "0", NULL, 10))
                            : json_null(),
                       "changes", changes, "spec", spec)
           : NULL;
    if (!ok)
      json_decref(changes);
    json_decref(spec);
    ok = item && json_array_append_new(items, item) == 0;
  }
  if (ok && n > (size_t)limit && shown > 0) {
    const json_t *last = json_array_get(rows, shown - 1);
    char tok[160];
    snprintf(tok, sizeof tok, "%s_%s_%s", col(last, "at_cursor") ?: "", col(last, "generation") ?: "",
             col(last, "uid") ?: "");
    ok = json_object_set_new(meta, "continue", json_string(tok)) == 0;
  }
  if (!ok) {
    json_decref(out);
    return NULL;
  }
  return out;
}

static bool secret_name(const char *k) {
  static const char *const words[] = {"password", "secret", "token", "dsn", "credential", "privatekey"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strcasestr(k, words[i]))
      return true;
  return false;
}

void tn_trail_scrub(json_t *v) {
  if (json_is_object(v)) {
    const char *k;
    json_t *x;
    void *tmp;
    json_object_foreach_safe(v, tmp, k, x) {
      if (secret_name(k))
        json_object_del(v, k);
      else
        tn_trail_scrub(x);
    }
  } else if (json_is_array(v)) {
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) tn_trail_scrub(x);
  }
}

/* ---- the endpoints ----------------------------------------------------------------------------- */

struct job {
  struct tn_trail *t;
  bool audit;
  char id[64];
  char tuid[72]; /* the cached tenant's metadata.uid: only its versions ("" any) */
  long limit;
  char at[40], gen[24], uid[72]; /* history cursor ("" none) */
  char before[24];               /* audit cursor: rows with a smaller id ("" none) */
};

static int answer(struct tn_http_response *resp, json_t *o) {
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!s)
    return -ENOMEM;
  snprintf(resp->content_type, sizeof resp->content_type, "application/json");
  int rc = tn_buf_appends(&resp->body, s);
  free(s);
  return rc;
}

static json_t *audit_page(const json_t *rows, const char *id, long limit) {
  json_t *items = json_array(), *meta = json_object();
  json_t *out =
      json_pack("{s:s, s:s, s:s, s:o, s:o}", "apiVersion", "tenancy.dev/v1alpha1", "kind", "TenantAuditTrail",
                "tenant", id, "metadata", meta ? meta : json_object(), "items", items ? items : json_array());
  if (!out || !meta || !items) {
    json_decref(out);
    return NULL;
  }
  size_t n = json_array_size(rows), shown = n > (size_t)limit ? (size_t)limit : n;
  for (size_t i = 0; i < shown; i++) {
    const json_t *r = json_array_get(rows, i);
    const char *gb = col(r, "generation_before"), *ga = col(r, "generation_after"), *det = col(r, "details");
    json_t *details = det ? json_loads(det, JSON_DECODE_ANY, NULL) : NULL;
    tn_trail_scrub(details);
#define OPT_STR(k) (col(r, k) ? json_string(col(r, k)) : json_null())
    json_t *item =
        json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "id",
                  (json_int_t)strtoll(col(r, "id") ?: "0", NULL, 10), "at", col(r, "at") ?: "", "actor",
                  col(r, "actor") ?: "", "action", col(r, "action") ?: "", "outcome", col(r, "outcome") ?: "",
                  "requestId", OPT_STR("request_id"), "correlationId", OPT_STR("correlation_id"),
                  "generationBefore", gb ? json_integer((json_int_t)strtoll(gb, NULL, 10)) : json_null(),
                  "generationAfter", ga ? json_integer((json_int_t)strtoll(ga, NULL, 10)) : json_null(),
                  "details", details ? details : json_null());
#undef OPT_STR
    if (!item || json_array_append_new(items, item)) {
      json_decref(out);
      return NULL;
    }
  }
  if (n > (size_t)limit && shown > 0 &&
      json_object_set_new(meta, "continue", json_string(col(json_array_get(rows, shown - 1), "id") ?: ""))) {
    json_decref(out);
    return NULL;
  }
  return out;
}

static int run(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  struct job *j = ud;
  (void)tn_http_response_header(resp, "Cache-Control", "no-store");
  int slot = acquire(j->t);
  if (slot < 0) {
    (void)tn_http_response_header(resp, "Retry-After", "1");
    return tn_http_problem(resp, req->path, 503, "database-busy",
                           "every connection to the audit database is busy; retry");
  }
  char lim[24];
  snprintf(lim, sizeof lim, "%ld", j->limit + 1);
  json_t *rows = NULL;
  struct tn_error err;
  tn_error_clear(&err);
  int rc;
  if (!j->audit) {
    const char *params[] = {j->id,
                            lim,
                            j->at[0] ? j->at : NULL,
                            j->gen[0] ? j->gen : NULL,
                            j->uid[0] ? j->uid : NULL,
                            j->tuid[0] ? j->tuid : NULL};
    rc = tn_audit_query(
        j->t->conns[slot],
        "SELECT tenant, uid, generation, "
        "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at, "
        "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at_cursor, actor, "
        "correlation_id, "
        "spec::text AS spec FROM @S@.tenant_versions WHERE tenant = $1 AND ($6::text IS NULL OR uid = $6) "
        "AND "
        "($3::text IS NULL OR "
        "(at, generation, uid) < ($3::timestamptz, $4::bigint, $5::text)) "
        "ORDER BY at DESC, generation DESC, uid DESC LIMIT $2::bigint",
        6, params, &rows, &err);
  } else {
    char target[80];
    snprintf(target, sizeof target, "tenant/%s", j->id);
    const char *params[] = {target, lim, j->before[0] ? j->before : NULL};
    rc = tn_audit_query(
        j->t->conns[slot],
        "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at, actor, "
        "action, outcome, request_id, correlation_id, generation_before, generation_after, "
        "details::text AS details FROM @S@.audit_events WHERE target = $1 AND "
        "($3::bigint IS NULL OR id < $3::bigint) ORDER BY id DESC LIMIT $2::bigint",
        3, params, &rows, &err);
  }
  release(j->t, slot);
  if (rc) {
    /* err.message never holds the DSN (audit.h); the answer says only what kind of failure */
    tn_log(TN_LOG_WARN, NULL, "read API: %s of tenant %s: %s", j->audit ? "audit" : "history", j->id,
           err.message);
    if (rc == TN_ENOTFOUND)
      return tn_http_problem(resp, req->path, 501, "trail-not-set-up",
                             "the audit database has no tenant history tables yet (tenantctl audit init)");
    (void)tn_http_response_header(resp, "Retry-After", "5");
    return tn_http_problem(resp, req->path, 503, "database-unavailable",
                           "the audit database did not answer; retry");
  }
  json_t *page = j->audit ? audit_page(rows, j->id, j->limit) : tn_trail_history_page(rows, j->id, j->limit);
  json_decref(rows);
  return answer(resp, page);
}

int tn_trail_serve(struct tn_trail *t, const struct tn_http_request *req, struct tn_http_response *resp,
                   const char *id, const char *uid, const char *what) {
  if (!t)
    return tn_http_problem(resp, req->path, 501, "trail-not-configured",
                           "this operator has no audit database (--pg-dsn): no history or audit trail");
  struct job *j = calloc(1, sizeof *j);
  if (!j)
    return -ENOMEM;
  j->t = t;
  j->audit = strcmp(what, "audit") == 0;
  snprintf(j->id, sizeof j->id, "%s", id);
  snprintf(j->tuid, sizeof j->tuid, "%s", uid ? uid : "");
  j->limit = TN_TRAIL_DEFAULT_LIMIT;
  const char *ls = tn_http_query(req, "limit");
  if (ls && *ls) {
    char *end = NULL;
    errno = 0;
    long v = strtol(ls, &end, 10);
    if (errno || *end || v < 1 || v > TN_TRAIL_MAX_LIMIT) {
      free(j);
      return tn_http_problem(resp, req->path, 400, "invalid-parameter",
                             "limit must be an integer from 1 to %d", TN_TRAIL_MAX_LIMIT);
    }
    j->limit = v;
  }
  const char *cont = tn_http_query(req, "continue");
  if (cont && *cont) {
    bool ok;
    if (j->audit) {
      size_t n = strlen(cont);
      ok = n > 0 && n < 19 && strspn(cont, "0123456789") == n;
      if (ok)
        snprintf(j->before, sizeof j->before, "%s", cont);
    } else {
      ok = tn_trail_history_cursor(cont, j->at, j->gen, j->uid) == 0;
    }
    if (!ok) {
      free(j);
      return tn_http_problem(resp, req->path, 400, "invalid-continue",
                             "continue is not a token this endpoint gave (start again without it)");
    }
  }
  return tn_http_defer(req, resp, run, j, free);
}
