#define _GNU_SOURCE /* strptime, timegm */
/* failover.c - the Region failover controller (see failover.h and docs/failover.md). */
#include "failover/failover.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "converge/database.h"
#include "converge/kinds_status.h"
#include "converge/tenant_db.h"
#include "failover/plan.h"
#include "runtime/events.h"
#include "runtime/log.h"
#include "tenancy/dbplan.h"
#include "util/b64.h"
#include "util/clock.h"
#include "util/pgtext.h"

#define SYNC_PERIOD_S 5.0       /* warm: how often the replicas are checked (new tenants, tables) */
#define CATCH_UP_TIMEOUT_S 10.0 /* warm: the longest wait for a replica to confirm the primary's WAL */
#define PRIMARY_CONNECT_TIMEOUT "3"
#define MOVED_MEMORY_S 120.0 /* a tenant just moved is not touched again while the cache catches up */
/* Every connection to a server (a primary may be dead, or gone without a TCP reset): TCP
 * keepalives and tcp_user_timeout end a connection whose peer vanished mid-statement (the
 * server-side statement_timeout cannot), connect_timeout bounds a connect that gets no answer. */
#define PG_KEEPALIVES_IDLE "10"
#define PG_KEEPALIVES_INTERVAL "5"
#define PG_KEEPALIVES_COUNT "3"
#define PG_TCP_USER_TIMEOUT "30000" /* ms */
/* The subscription's connect_timeout (the standby's apply worker, and DROP SUBSCRIPTION, connect
 * to the primary with it) when the primary's admin URI sets none. */
#define SUB_CONNECT_TIMEOUT "10"
/* The client-side bound on one statement or one COPY read: a server that stopped answering
 * without closing the connection (a frozen process, a paused machine: the kernel still
 * acknowledges, so keepalives do not notice) cannot hold the controller's only worker. Above
 * the sessions' statement_timeout (120 s), which a live server enforces itself. */
#define CLIENT_DEADLINE_S 150.0

static const struct tn_gvr gvr_secrets = {"", "v1", "secrets", true};

struct moved {
  char key[160]; /* region/tenant */
  double at;
};

struct tn_failover {
  struct tn_reconciler *rec;
  struct tn_controller *ctl;
  pthread_mutex_t mu; /* guards moved (handlers run on informer threads) */
  struct moved *moved;
  size_t n_moved;
  int switched; /* tenants switched by this process (the test hook counts them) */
};

/* ---- small helpers ---------------------------------------------------------------------------- */

static const char *str2(const json_t *o, const char *a, const char *b) {
  const json_t *v = json_object_get(o, a);
  return json_string_value(b ? json_object_get(v, b) : v);
}

/* Tenants by status.placement.region: the tenants a Region's failover copies and moves. */
#define TN_INDEX_PLACEMENT_REGION "placement-region"

static int index_by_placement_region(const json_t *obj, void *ud, struct tn_index_values *out) {
  (void)ud;
  const char *r = str2(json_object_get(obj, "status"), "placement", "region");
  return r && *r ? tn_index_values_add(out, r) : 0;
}

static const char *name_of(const json_t *o) { return str2(o, "metadata", "name"); }

static void log_region(enum tn_log_level lvl, const char *region, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_region(enum tn_log_level lvl, const char *region, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  struct tn_log_fields lf = TN_LOG_FIELDS_INIT;
  lf.controller = "failover";
  tn_log(lvl, &lf, "region %s: %s", region, msg);
}

static void region_event(struct tn_failover *f, const json_t *region, const char *type, const char *reason,
                         const char *note) {
  const json_t *meta = json_object_get(region, "metadata");
  struct tn_object_ref ref = {.api_version = TN_API_VERSION,
                              .kind = "Region",
                              .name = json_string_value(json_object_get(meta, "name")),
                              .uid = json_string_value(json_object_get(meta, "uid")),
                              .resource_version =
                                  json_string_value(json_object_get(meta, "resourceVersion"))};
  tn_recorder_eventf(f->rec->recorder, &ref, type, reason, "Failover", "%s", note);
}

static void tenant_event(struct tn_failover *f, const json_t *tenant, const char *type, const char *reason,
                         const char *note) {
  const json_t *meta = json_object_get(tenant, "metadata");
  struct tn_object_ref ref = {.api_version = TN_API_VERSION,
                              .kind = "Tenant",
                              .name = json_string_value(json_object_get(meta, "name")),
                              .uid = json_string_value(json_object_get(meta, "uid")),
                              .resource_version =
                                  json_string_value(json_object_get(meta, "resourceVersion"))};
  tn_recorder_eventf(f->rec->recorder, &ref, type, reason, "Failover", "%s", note);
}

static void audit(struct tn_failover *f, const char *action, const char *target, const char *outcome,
                  const char *correlation, json_t *details /* taken */) {
  if (!f->rec->audit) {
    json_decref(details);
    return;
  }
  char *d = details ? json_dumps(details, JSON_COMPACT) : NULL;
  json_decref(details);
  struct tn_error err = {0};
  struct tn_audit_event ev = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                              .action = action,
                              .target = target,
                              .correlation_id = correlation,
                              .outcome = outcome,
                              .details = d};
  if (tn_audit_append(f->rec->audit, &ev, NULL, &err))
    log_region(TN_LOG_WARN, target, "audit row %s %s: %s", action, outcome, err.message);
  free(d);
}

static void remember_moved(struct tn_failover *f, const char *region, const char *tenant) {
  double now = tn_mono_now();
  pthread_mutex_lock(&f->mu);
  size_t w = 0;
  for (size_t i = 0; i < f->n_moved; i++)
    if (now - f->moved[i].at < MOVED_MEMORY_S)
      f->moved[w++] = f->moved[i];
  f->n_moved = w;
  struct moved *m = realloc(f->moved, (f->n_moved + 1) * sizeof *m);
  if (m) {
    f->moved = m;
    snprintf(m[f->n_moved].key, sizeof m[f->n_moved].key, "%s/%s", region, tenant);
    m[f->n_moved].at = now;
    f->n_moved++;
  }
  pthread_mutex_unlock(&f->mu);
}

static bool was_moved(struct tn_failover *f, const char *region, const char *tenant) {
  char key[160];
  snprintf(key, sizeof key, "%s/%s", region, tenant);
  double now = tn_mono_now();
  bool hit = false;
  pthread_mutex_lock(&f->mu);
  for (size_t i = 0; i < f->n_moved && !hit; i++)
    hit = now - f->moved[i].at < MOVED_MEMORY_S && strcmp(f->moved[i].key, key) == 0;
  pthread_mutex_unlock(&f->mu);
  return hit;
}

/* ---- servers and connections ------------------------------------------------------------------ */

struct server {
  json_t *spec; /* borrowed: the databaseServers[] entry */
  char name[64];
  char host[256];
  int port;
  char sslmode[16];
  char *admin_uri; /* secret: never logged */
  char *ca_pem;
  struct tn_db_server db; /* for converge/database.h, pointing into this struct */
};

static void server_cleanup(struct server *s) {
  if (s->admin_uri) {
    explicit_bzero(s->admin_uri, strlen(s->admin_uri));
    free(s->admin_uri);
  }
  free(s->ca_pem);
  memset(s, 0, sizeof *s);
}

static char *secret_key(struct tn_failover *f, const json_t *server, const char *field, const char *key,
                        struct tn_error *err) {
  const json_t *ref = json_object_get(server, field);
  const char *ns = str2(ref, "namespace", NULL), *name = str2(ref, "name", NULL);
  const char *sv = str2(server, "name", NULL);
  if (!ns || !name) {
    tn_error_set(err, TN_EINVALID, "database server %s: %s needs namespace and name", sv ? sv : "", field);
    return NULL;
  }
  if (!tn_region_secret_namespace_allowed(f->rec->region_secret_namespaces, ns)) {
    tn_error_set(err, TN_EINVALID,
                 "database server %s: %s names Secret %s/%s, outside the namespaces the operator reads "
                 "Region Secrets from",
                 sv ? sv : "", field, ns, name);
    return NULL;
  }
  json_t *sec = NULL;
  if (tn_kube_get(f->rec->kube, &gvr_secrets, ns, name, &sec, err)) {
    tn_error_prefix(err, "Secret %s/%s", ns, name);
    return NULL;
  }
  char *v = tn_b64_decode_text(str2(json_object_get(sec, "data"), key, NULL));
  json_decref(sec);
  if (!v)
    tn_error_set(err, TN_EINVALID, "Secret %s/%s has no key %s", ns, name, key);
  return v;
}

static int server_load(struct tn_failover *f, json_t *spec, struct server *s, struct tn_error *err) {
  memset(s, 0, sizeof *s);
  s->spec = spec;
  snprintf(s->name, sizeof s->name, "%s", str2(spec, "name", NULL) ?: "");
  snprintf(s->host, sizeof s->host, "%s", str2(spec, "host", NULL) ?: "");
  s->port = (int)json_integer_value(json_object_get(spec, "port"));
  if (s->port <= 0)
    s->port = 5432;
  snprintf(s->sslmode, sizeof s->sslmode, "%s", str2(spec, "sslMode", NULL) ?: "verify-full");
  if (json_object_get(spec, "caSecretRef") &&
      !(s->ca_pem = secret_key(f, spec, "caSecretRef", "ca.crt", err)))
    return err->code ? err->code : TN_EINVALID;
  if (!(s->admin_uri = secret_key(f, spec, "adminSecretRef", "uri", err)))
    return err->code ? err->code : TN_EINVALID;
  s->db = (struct tn_db_server){.name = s->name,
                                .host = s->host,
                                .port = s->port,
                                .sslmode = s->sslmode,
                                .ca_pem = s->ca_pem,
                                .admin_uri = s->admin_uri};
  return 0;
}

/* The databaseServers[] entry named name of region (borrowed), or NULL. */
static json_t *server_named(json_t *region, const char *name) {
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(json_object_get(region, "spec"), "databaseServers"), i, s) {
    const char *n = str2(s, "name", NULL);
    if (n && name && strcmp(n, name) == 0)
      return s;
  }
  return NULL;
}

/* The standby server for mode: the first in name order that serves it (as a new placement). */
static json_t *standby_server(json_t *region, enum tn_isolation mode) {
  json_t *best = NULL;
  size_t i, j;
  json_t *s, *m;
  json_array_foreach(json_object_get(json_object_get(region, "spec"), "databaseServers"), i, s) {
    bool serves = false;
    json_array_foreach(json_object_get(s, "serves"), j, m) {
      enum tn_isolation iso;
      if (tn_isolation_parse(json_string_value(m), &iso) == 0 && iso == mode)
        serves = true;
    }
    if (serves && (!best || strcmp(str2(s, "name", NULL), str2(best, "name", NULL)) < 0))
      best = s;
  }
  return best;
}

/* An admin connection to dbname on s (as converge/database.c makes them). */
static PGconn *pg_open(const struct server *s, const char *dbname, const char *timeout,
                       struct tn_error *err) {
  char ca_path[512] = "", port[16];
  snprintf(port, sizeof port, "%d", s->port);
  PQconninfoOption *opts = PQconninfoParse(s->admin_uri, NULL);
  bool has_host = false;
  for (PQconninfoOption *o = opts; o && o->keyword; o++)
    if (o->val && *o->val && (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0))
      has_host = true;
  if (!opts) {
    tn_error_set(err, TN_ECONFIG,
                 "database server %s: the admin Secret's uri is not a libpq connection string", s->name);
    return NULL;
  }
  PQconninfoFree(opts);
  const char *keys[20], *vals[20];
  int k = 0;
  keys[k] = "dbname", vals[k++] = s->admin_uri;
  if (dbname && *dbname)
    keys[k] = "dbname", vals[k++] = dbname;
  if (!has_host) {
    keys[k] = "host", vals[k++] = s->host;
    keys[k] = "port", vals[k++] = port;
  }
  keys[k] = "sslmode", vals[k++] = s->sslmode;
  if (s->ca_pem && *s->ca_pem) {
    if (tn_pg_write_ca_file(s->ca_pem, ca_path, sizeof ca_path)) {
      tn_error_set(err, TN_EUNAVAILABLE, "database server %s: cannot write the CA to a temporary file",
                   s->name);
      return NULL;
    }
    keys[k] = "sslrootcert", vals[k++] = ca_path;
  }
  keys[k] = "connect_timeout", vals[k++] = timeout ? timeout : "5";
  keys[k] = "application_name", vals[k++] = "tenancy-operator-failover";
  keys[k] = "options", vals[k++] = "-c lock_timeout=10s -c statement_timeout=120s";
  keys[k] = "keepalives", vals[k++] = "1";
  keys[k] = "keepalives_idle", vals[k++] = PG_KEEPALIVES_IDLE;
  keys[k] = "keepalives_interval", vals[k++] = PG_KEEPALIVES_INTERVAL;
  keys[k] = "keepalives_count", vals[k++] = PG_KEEPALIVES_COUNT;
  keys[k] = "tcp_user_timeout", vals[k++] = PG_TCP_USER_TIMEOUT;
  keys[k] = NULL, vals[k] = NULL;
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (ca_path[0])
    unlink(ca_path);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    char msg[600];
    tn_pg_one_line(c ? PQerrorMessage(c) : "out of memory", msg, sizeof msg);
    tn_error_set(err, TN_ETRANSPORT, "database server %s: cannot connect to database %s: %s", s->name,
                 dbname && *dbname ? dbname : "(default)", msg);
    PQfinish(c);
    return NULL;
  }
  PQsetNoticeProcessor(c, tn_pg_quiet_notices, NULL);
  return c;
}

/* One step of waiting for c's input: waits (at most 100 ms, and not past `until`, monotonic) for
 * its socket to be readable, then consumes what arrived. The caller loops while libpq still needs
 * more. The wait is sliced because TLS may hold decrypted bytes the socket no longer signals
 * (libpq's own blocking wait asks OpenSSL; poll cannot). Returns 0, -ETIMEDOUT once `until` has
 * passed, or -EPIPE when the connection broke. */
static int wait_input(PGconn *c, double until) {
  int fd = PQsocket(c);
  if (fd < 0)
    return -EPIPE;
  double left = until - tn_mono_now();
  if (left <= 0)
    return -ETIMEDOUT;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  (void)poll(&p, 1, left < 0.1 ? (int)(left * 1000) + 1 : 100);
  return PQconsumeInput(c) ? 0 : -EPIPE;
}

/* PQexec/PQexecParams with a client-side deadline (CLIENT_DEADLINE_S): the last result, or the
 * first error of a multi-statement string, as PQexec; NULL when it could not be sent or timed out
 * (*timed_out). After a timeout the connection is unusable (the caller finishes it). */
static PGresult *exec_bounded(PGconn *c, const char *sql, int n, const char *const *params, bool *timed_out) {
  *timed_out = false;
  if (!(n ? PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQsendQuery(c, sql)))
    return NULL;
  double until = tn_mono_now() + CLIENT_DEADLINE_S;
  PGresult *keep = NULL, *r;
  for (;;) {
    while (PQisBusy(c)) {
      int w = wait_input(c, until);
      if (w == -ETIMEDOUT) {
        *timed_out = true;
        PQclear(keep);
        return NULL;
      }
      if (w)
        break; /* broken: PQgetResult reports it */
    }
    if (!(r = PQgetResult(c)))
      break;
    ExecStatusType st = PQresultStatus(r);
    bool stop =
        st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH || PQstatus(c) == CONNECTION_BAD;
    if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR) {
      PQclear(r);
    } else {
      PQclear(keep);
      keep = r;
    }
    if (stop)
      break;
  }
  return keep;
}

/* The next result of c (NULL at the end, or on a timeout: *timed_out), waiting at most
 * CLIENT_DEADLINE_S. */
static PGresult *exec_bounded_next(PGconn *c, bool *timed_out) {
  *timed_out = false;
  double until = tn_mono_now() + CLIENT_DEADLINE_S;
  while (PQisBusy(c)) {
    int w = wait_input(c, until);
    if (w == -ETIMEDOUT) {
      *timed_out = true;
      return NULL;
    }
    if (w)
      break;
  }
  return PQgetResult(c);
}

/* Runs sql (with params); returns the result when it succeeded (caller PQclears) or NULL with err. */
static PGresult *pg_q(PGconn *c, const char *what, const char *sql, int n, const char *const *params,
                      struct tn_error *err) {
  bool timed_out = false;
  PGresult *r = exec_bounded(c, sql, n, params, &timed_out);
  if (timed_out) {
    tn_error_set(err, TN_ETRANSPORT, "%s: no answer from the server within %.0f s", what, CLIENT_DEADLINE_S);
    return NULL;
  }
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
    return r;
  char msg[700];
  tn_pg_one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(c), msg, sizeof msg);
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  tn_error_set(err, PQstatus(c) == CONNECTION_OK ? TN_EAPI : TN_ETRANSPORT, "%s: %s (SQLSTATE %s)", what, msg,
               state ? state : "?");
  PQclear(r);
  return NULL;
}

static int pg_x(PGconn *c, const char *what, const char *sql, struct tn_error *err) {
  PGresult *r = pg_q(c, what, sql, 0, NULL, err);
  PQclear(r);
  return r ? 0 : err->code;
}

/* A quoted identifier (malloc'd) or NULL. */
static char *ident(PGconn *c, const char *s) { return PQescapeIdentifier(c, s, strlen(s)); }

/* "{a,b}" array literal of names for = ANY($1::text[]) (names are [a-z0-9_] identifiers or
 * quoted by the array syntax). */
static char *text_array(char **v, size_t n) {
  size_t len = 3;
  for (size_t i = 0; i < n; i++)
    len += 2 * strlen(v[i]) + 4;
  char *out = malloc(len), *w = out;
  if (!out)
    return NULL;
  *w++ = '{';
  for (size_t i = 0; i < n; i++) {
    if (i)
      *w++ = ',';
    *w++ = '"';
    for (const char *p = v[i]; *p; p++) {
      if (*p == '"' || *p == '\\')
        *w++ = '\\';
      *w++ = *p;
    }
    *w++ = '"';
  }
  *w++ = '}';
  *w = '\0';
  return out;
}

/* ---- units: the tenants of one source database ----------------------------------------------- */

struct member {
  json_t *tenant; /* borrowed from the list */
  struct tn_tenant *t;
  struct tn_db_names names; /* on the primary (and the standby: same names) */
  bool trig;                /* failed over this pass */
  bool ready;               /* its copy is complete */
  bool moved;               /* its placement was switched this pass */
};

struct unit {
  char pname[64], sname[64]; /* primary and standby server names */
  char database[64];         /* the source database (= the standby's) */
  bool shared;
  char object[64]; /* publication, slot and subscription name */
  struct member *m;
  size_t n;
  struct server p, s;
  bool p_loaded, s_loaded;
};

static void unit_free(struct unit *u) {
  for (size_t i = 0; i < u->n; i++)
    tn_tenant_free(u->m[i].t);
  free(u->m);
  server_cleanup(&u->p);
  server_cleanup(&u->s);
}

/* The schemas a unit replicates on the primary connection pc: the members' schemas (shared), or
 * every non-system schema of the database (dedicated, hybrid). Only members with want (or all,
 * want_all). */
static int unit_schemas(struct unit *u, PGconn *pc, bool only_untriggered, char ***out, size_t *n,
                        struct tn_error *err) {
  *out = NULL;
  *n = 0;
  if (u->shared) {
    char **v = calloc(u->n ? u->n : 1, sizeof *v);
    if (!v)
      return tn_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < u->n; i++)
      if (!(only_untriggered && u->m[i].trig))
        v[(*n)++] = strdup(u->m[i].names.schema);
    *out = v;
    return 0;
  }
  PGresult *r = pg_q(pc, "listing schemas",
                     "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> "
                     "'information_schema' ORDER BY 1",
                     0, NULL, err);
  if (!r)
    return err->code;
  int rows = PQntuples(r);
  char **v = calloc((size_t)rows + 1, sizeof *v);
  for (int i = 0; v && i < rows; i++)
    v[(*n)++] = strdup(PQgetvalue(r, i, 0));
  PQclear(r);
  if (!v)
    return tn_error_set(err, -ENOMEM, "out of memory");
  *out = v;
  return 0;
}

static void strv_free(char **v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

/* The role owning schema `schema` in the unit (the member whose schema it is; dedicated: the only
 * member). */
static const char *owner_role(struct unit *u, const char *schema) {
  if (!u->shared)
    return u->n ? u->m[0].names.role : NULL;
  for (size_t i = 0; i < u->n; i++)
    if (strcmp(u->m[i].names.schema, schema) == 0)
      return u->m[i].names.role;
  return NULL;
}

/* Makes sure the role, schema or database of each member exist on the standby (NOLOGIN: the
 * tenant reconcile enables the login once the tenant is placed there). */
static int ensure_standby_objects(struct tn_failover *f, struct unit *u, struct tn_error *err) {
  PGconn *c = pg_open(&u->s, NULL, NULL, err), *sc = NULL;
  bool sc_failed = false;
  if (!c)
    return err->code;
  int rc = 0;
  for (size_t i = 0; i < u->n && !rc; i++) {
    struct member *m = &u->m[i];
    const char *params[2] = {m->names.role, u->shared ? m->names.schema : m->names.tenant_database};
    PGresult *r =
        pg_q(c, "checking the standby's objects",
             "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), EXISTS (SELECT 1 FROM pg_database "
             "WHERE datname = $2)",
             2, params, err);
    if (!r) {
      rc = err->code;
      break;
    }
    bool have = strcmp(PQgetvalue(r, 0, 0), "t") == 0 && (u->shared || strcmp(PQgetvalue(r, 0, 1), "t") == 0);
    PQclear(r);
    if (have && u->shared) {
      /* the schema lives in the shared database: checked there (one connection for all) */
      if (!sc && !sc_failed && !(sc = pg_open(&u->s, u->database, NULL, err))) {
        tn_error_clear(err);
        sc_failed = true;
      }
      const char *p1[1] = {m->names.schema};
      PGresult *r2 = sc ? pg_q(sc, "checking the standby's schema",
                               "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", 1, p1, err)
                        : NULL;
      have = r2 && strcmp(PQgetvalue(r2, 0, 0), "t") == 0;
      PQclear(r2);
      tn_error_clear(err);
    }
    if (have)
      continue;
    struct tn_db_tenant dt = {.id = m->t->name,
                              .mode = m->t->isolation,
                              .state = TN_STATE_SUSPENDED,
                              .connections = -1,
                              .password = NULL,
                              .credentials_version = 0};
    struct tn_db_outcome oc = {0};
    rc = tn_db_converge(f->rec->db, &u->s.db, &dt, &oc, err);
    tn_db_outcome_cleanup(&oc);
    if (rc)
      tn_error_prefix(err, "creating tenant %s's role and %s on standby server %s", m->t->name,
                      u->shared ? "schema" : "database", u->s.name);
  }
  PQfinish(sc);
  PQfinish(c);
  return rc;
}

/* Creates on the standby (sc) the tables, and the sequences they use, of schemas that the primary
 * (pc) has and the standby lacks, owned by the tenant role. *created counts them. Tables of the
 * primary without a primary key or replica identity get REPLICA IDENTITY FULL there (logical
 * replication of their UPDATEs and DELETEs needs one). */
static int sync_tables(struct unit *u, PGconn *pc, PGconn *sc, char **schemas, size_t ns, int *created,
                       int *tables_total, struct tn_error *err) {
  *created = 0;
  *tables_total = 0;
  if (!ns)
    return 0;
  char *arr = text_array(schemas, ns);
  if (!arr)
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *p1[1] = {arr};
  int rc = 0;
  PGresult *pt = NULL, *st = NULL, *seq = NULL, *noid = NULL;
  if (pg_x(pc, "search_path", "SET search_path = pg_catalog", err))
    goto out;
  pt = pg_q(
      pc, "reading the primary's tables",
      "SELECT n.nspname, c.relname, format('CREATE TABLE IF NOT EXISTS %I.%I (%s)', n.nspname, c.relname, "
      "concat_ws(', ', (SELECT string_agg(format('%I %s%s%s%s', a.attname, format_type(a.atttypid, "
      "a.atttypmod), "
      "CASE WHEN a.attidentity IN ('a','d') THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END, "
      "CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, "
      "CASE WHEN ad.adbin IS NOT NULL AND a.attgenerated = '' THEN ' DEFAULT ' || pg_get_expr(ad.adbin, "
      "ad.adrelid) ELSE '' END), ', ' ORDER BY a.attnum) FROM pg_attribute a LEFT JOIN pg_attrdef ad ON "
      "ad.adrelid = a.attrelid AND ad.adnum = a.attnum WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT "
      "a.attisdropped), (SELECT string_agg(pg_get_constraintdef(con.oid), ', ') FROM pg_constraint con WHERE "
      "con.conrelid = c.oid AND con.contype IN ('p','u')))) FROM pg_class c JOIN pg_namespace n ON n.oid = "
      "c.relnamespace WHERE c.relkind = 'r' AND NOT c.relispartition AND n.nspname = ANY($1::text[]) ORDER "
      "BY "
      "1, 2",
      1, p1, err);
  if (!pt)
    goto out;
  *tables_total = PQntuples(pt);
  /* replica identity for tables without a key */
  noid =
      pg_q(pc, "finding tables without replica identity",
           "SELECT format('ALTER TABLE %I.%I REPLICA IDENTITY FULL', n.nspname, c.relname) FROM pg_class c "
           "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND c.relreplident = 'd' AND "
           "n.nspname = ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid "
           "AND i.indisprimary)",
           1, p1, err);
  if (!noid)
    goto out;
  for (int i = 0; i < PQntuples(noid); i++)
    if (pg_x(pc, "setting REPLICA IDENTITY FULL", PQgetvalue(noid, i, 0), err))
      goto out;
  st = pg_q(sc, "reading the standby's tables",
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
            "c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname = ANY($1::text[])",
            1, p1, err);
  if (!st)
    goto out;
  for (int i = 0; i < PQntuples(pt); i++) {
    char full[300];
    snprintf(full, sizeof full, "%s.%s", PQgetvalue(pt, i, 0), PQgetvalue(pt, i, 1));
    bool have = false;
    for (int j = 0; j < PQntuples(st) && !have; j++)
      have = strcmp(PQgetvalue(st, j, 0), full) == 0;
    if (have)
      continue;
    const char *schema = PQgetvalue(pt, i, 0);
    const char *role = owner_role(u, schema);
    if (!role)
      continue;
    if (!seq) {
      seq = pg_q(
          pc, "reading the primary's sequences",
          "SELECT n.nspname, format('CREATE SEQUENCE IF NOT EXISTS %I.%I', n.nspname, c.relname) FROM "
          "pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S' AND n.nspname = "
          "ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = "
          "'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i')",
          1, p1, err);
      if (!seq)
        goto out;
    }
    char *qrole = ident(sc, role), *qschema = ident(sc, schema);
    char pre[512];
    snprintf(pre, sizeof pre, "BEGIN; SET LOCAL ROLE %s; %s%s%s", qrole ? qrole : "\"\"",
             u->shared ? "" : "CREATE SCHEMA IF NOT EXISTS ", u->shared ? "" : (qschema ? qschema : "\"\""),
             u->shared ? "" : ";");
    PQfreemem(qrole);
    PQfreemem(qschema);
    if (pg_x(sc, "creating a table on the standby", pre, err))
      goto out;
    for (int k = 0; k < PQntuples(seq); k++)
      if (strcmp(PQgetvalue(seq, k, 0), schema) == 0 &&
          pg_x(sc, "creating a sequence on the standby", PQgetvalue(seq, k, 1), err))
        break;
    if (!err->code)
      pg_x(sc, "creating a table on the standby", PQgetvalue(pt, i, 2), err);
    if (err->code) {
      struct tn_error ignore = {0};
      pg_x(sc, "rollback", "ROLLBACK", &ignore);
      goto out;
    }
    if (pg_x(sc, "creating a table on the standby", "COMMIT", err))
      goto out;
    (*created)++;
  }
out:
  rc = err->code;
  PQclear(pt);
  PQclear(st);
  PQclear(seq);
  PQclear(noid);
  free(arr);
  return rc;
}

/* The subscription's conninfo to the primary's database: the admin URI's settings with the
 * source database, and the Region's host, port and sslmode where the URI has none. The standby
 * server connects with it (sslrootcert paths in the URI are read there). Holds a password. */
static char *sub_conninfo(const struct server *p, const char *database) {
  PQconninfoOption *opts = PQconninfoParse(p->admin_uri, NULL);
  if (!opts)
    return NULL;
  size_t cap = 4096;
  char *buf = calloc(1, cap);
  bool has_host = false, has_ssl = false, has_timeout = false;
  char port[16];
  snprintf(port, sizeof port, "%d", p->port);
  for (PQconninfoOption *o = opts; buf && o->keyword; o++) {
    if (!o->val || !*o->val || strcmp(o->keyword, "dbname") == 0)
      continue;
    has_host |= strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0;
    has_ssl |= strcmp(o->keyword, "sslmode") == 0;
    has_timeout |= strcmp(o->keyword, "connect_timeout") == 0;
    if (tn_failover_conninfo_add(buf, cap, o->keyword, o->val)) {
      free(buf);
      buf = NULL;
    }
  }
  PQconninfoFree(opts);
  if (buf && !has_host &&
      (tn_failover_conninfo_add(buf, cap, "host", p->host) ||
       tn_failover_conninfo_add(buf, cap, "port", port))) {
    free(buf);
    buf = NULL;
  }
  if (buf && !has_ssl && tn_failover_conninfo_add(buf, cap, "sslmode", p->sslmode)) {
    free(buf);
    buf = NULL;
  }
  if (buf && !has_timeout && tn_failover_conninfo_add(buf, cap, "connect_timeout", SUB_CONNECT_TIMEOUT)) {
    free(buf);
    buf = NULL;
  }
  if (buf && tn_failover_conninfo_add(buf, cap, "dbname", database)) {
    free(buf);
    buf = NULL;
  }
  return buf;
}

/* The subscription's oid on sc ("" when there is none). */
static int sub_oid(PGconn *sc, const char *name, char oid[32], struct tn_error *err) {
  const char *p1[1] = {name};
  PGresult *r = pg_q(sc, "reading the subscription",
                     "SELECT oid FROM pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM "
                     "pg_database WHERE datname = current_database())",
                     1, p1, err);
  if (!r)
    return err->code;
  snprintf(oid, 32, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
  PQclear(r);
  return 0;
}

/* What warm and cold share: the members' roles and schemas or databases on the standby, a
 * connection to the source database on each side, the schemas copied, and the tables (and their
 * sequences) the standby lacks created there. On success the caller owns *pc, *sc and *schemas;
 * on failure nothing is left open. *created: tables created now. */
struct synced {
  PGconn *pc, *sc;
  char **schemas;
  size_t ns;
  int created, total;
};

static int sync_definitions(struct tn_failover *f, struct unit *u, struct synced *x, struct tn_error *err) {
  memset(x, 0, sizeof *x);
  if (ensure_standby_objects(f, u, err))
    return err->code;
  if (!(x->pc = pg_open(&u->p, u->database, NULL, err)) ||
      !(x->sc = pg_open(&u->s, u->database, NULL, err)) ||
      unit_schemas(u, x->pc, false, &x->schemas, &x->ns, err) ||
      sync_tables(u, x->pc, x->sc, x->schemas, x->ns, &x->created, &x->total, err)) {
    int rc = err->code ? err->code : TN_EUNAVAILABLE;
    strv_free(x->schemas, x->ns);
    PQfinish(x->pc);
    PQfinish(x->sc);
    memset(x, 0, sizeof *x);
    return rc;
  }
  return 0;
}

/* Warm: publication, subscription and tables of one unit, and each member's readiness. */
static int sync_warm(struct tn_failover *f, struct unit *u, struct tn_error *err) {
  struct synced x;
  if (sync_definitions(f, u, &x, err))
    return err->code;
  PGconn *pc = x.pc, *sc = x.sc;
  char **schemas = x.schemas;
  size_t ns = x.ns;
  int created = x.created, rc = 0;
  char *qobj = ident(pc, u->object), oid[32] = "";
  PGresult *r = NULL;
  /* The publication. */
  const char *p1[1] = {u->object};
  bool changed = created > 0;
  r = pg_q(pc, "reading the publication", "SELECT puballtables FROM pg_publication WHERE pubname = $1", 1, p1,
           err);
  if (!r) {
    rc = err->code;
    goto out;
  }
  bool have_pub = PQntuples(r) > 0;
  PQclear(r);
  r = NULL;
  char sql[8192];
  if (!have_pub) {
    snprintf(sql, sizeof sql, "CREATE PUBLICATION %s%s", qobj, u->shared ? "" : " FOR ALL TABLES");
    if ((rc = pg_x(pc, "creating the publication", sql, err)))
      goto out;
    changed = true;
  }
  if (u->shared) {
    r = pg_q(
        pc, "reading the publication's schemas",
        "SELECT n.nspname FROM pg_publication p JOIN pg_publication_namespace pn ON pn.pnpubid = p.oid JOIN "
        "pg_namespace n ON n.oid = pn.pnnspid WHERE p.pubname = $1",
        1, p1, err);
    if (!r) {
      rc = err->code;
      goto out;
    }
    bool same = (size_t)PQntuples(r) == ns;
    for (size_t i = 0; same && i < ns; i++) {
      bool found = false;
      for (int j = 0; j < PQntuples(r) && !found; j++)
        found = strcmp(PQgetvalue(r, j, 0), schemas[i]) == 0;
      same = found;
    }
    PQclear(r);
    r = NULL;
    if (!same && ns > 0) {
      size_t off = (size_t)snprintf(sql, sizeof sql, "ALTER PUBLICATION %s SET TABLES IN SCHEMA ", qobj);
      for (size_t i = 0; i < ns && off < sizeof sql; i++) {
        char *q = ident(pc, schemas[i]);
        off += (size_t)snprintf(sql + off, sizeof sql - off, "%s%s", i ? ", " : "", q ? q : "\"\"");
        PQfreemem(q);
      }
      if (off >= sizeof sql) {
        rc = tn_error_set(err, TN_EINVALID, "too many tenants in one publication statement");
        goto out;
      }
      if ((rc = pg_x(pc, "updating the publication's schemas", sql, err)))
        goto out;
      changed = true;
    }
  }
  /* The subscription. */
  if ((rc = sub_oid(sc, u->object, oid, err)))
    goto out;
  if (!oid[0] && ns > 0) {
    char *ci = sub_conninfo(&u->p, u->database);
    char *lit = ci ? PQescapeLiteral(sc, ci, strlen(ci)) : NULL;
    if (ci) {
      explicit_bzero(ci, strlen(ci));
      free(ci);
    }
    if (!lit) {
      rc = tn_error_set(err, TN_ECONFIG, "cannot build the subscription's connection string");
      goto out;
    }
    snprintf(sql, sizeof sql, "CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (slot_name = %s)",
             qobj, lit, qobj, qobj);
    explicit_bzero(lit, strlen(lit));
    PQfreemem(lit);
    rc = pg_x(sc, "creating the subscription", sql, err);
    explicit_bzero(sql, sizeof sql);
    if (rc && strstr(err->message, "already exists")) {
      /* a slot left by an earlier subscription: dropped when nothing uses it, tried next pass */
      struct tn_error e2 = {0};
      PGresult *d =
          pg_q(pc, "dropping a leftover slot",
               "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = "
               "$1 AND NOT active",
               1, p1, &e2);
      PQclear(d);
    }
    if (rc)
      goto out;
    if ((rc = sub_oid(sc, u->object, oid, err)))
      goto out;
  } else if (oid[0] && changed) {
    snprintf(sql, sizeof sql, "ALTER SUBSCRIPTION %s REFRESH PUBLICATION", qobj);
    if ((rc = pg_x(sc, "refreshing the subscription", sql, err)))
      goto out;
  }
  /* Readiness: every table of the member's schemas synchronized (srsubstate r). */
  if (oid[0]) {
    const char *p2[1] = {oid};
    r = pg_q(
        sc, "reading the subscription's tables",
        "SELECT n.nspname, count(*) FILTER (WHERE sr.srsubstate = 'r') FROM pg_subscription_rel sr JOIN "
        "pg_class c ON c.oid = sr.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE sr.srsubid = "
        "$1::oid GROUP BY 1",
        1, p2, err);
    if (!r) {
      rc = err->code;
      goto out;
    }
    /* per schema on the primary */
    char *arr = text_array(schemas, ns);
    const char *p3[1] = {arr ? arr : "{}"};
    PGresult *pr =
        pg_q(pc, "counting the primary's tables",
             "SELECT n.nspname, count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
             "WHERE c.relkind = 'r' AND NOT c.relispartition AND n.nspname = ANY($1::text[]) GROUP BY 1",
             1, p3, err);
    free(arr);
    if (!pr) {
      rc = err->code;
      goto out;
    }
    for (size_t i = 0; i < u->n; i++) {
      struct member *m = &u->m[i];
      long want = 0, have = 0;
      for (int j = 0; j < PQntuples(pr); j++)
        if (!u->shared || strcmp(PQgetvalue(pr, j, 0), m->names.schema) == 0)
          want += atol(PQgetvalue(pr, j, 1));
      for (int j = 0; j < PQntuples(r); j++)
        if (!u->shared || strcmp(PQgetvalue(r, j, 0), m->names.schema) == 0)
          have += atol(PQgetvalue(r, j, 1));
      m->ready = have >= want;
    }
    PQclear(pr);
  }
out:
  PQclear(r);
  PQfreemem(qobj);
  strv_free(schemas, ns);
  PQfinish(pc);
  PQfinish(sc);
  return rc;
}

/* Cold: one snapshot of each member: its tables' rows copied from one REPEATABLE READ snapshot of
 * the primary into the standby in one transaction (TRUNCATE + COPY per table). */
/* One row (or -1 at the end, -2 on error) of the primary's COPY OUT, waiting at most until
 * `until`: -3 when it timed out. */
static int copy_row(PGconn *pc, char **b, double until) {
  for (;;) {
    int n = PQgetCopyData(pc, b, 1);
    if (n != 0)
      return n;
    int w = wait_input(pc, until);
    if (w == -ETIMEDOUT)
      return -3;
    if (w)
      return -2;
  }
}

static int copy_table(PGconn *pc, PGconn *sc, const char *qname, struct tn_error *err) {
  char sql[600];
  snprintf(sql, sizeof sql, "TRUNCATE %s", qname);
  if (pg_x(sc, "truncating on the standby", sql, err))
    return err->code;
  snprintf(sql, sizeof sql, "COPY %s TO STDOUT", qname);
  bool timed_out = false;
  PGresult *r = exec_bounded(pc, sql, 0, NULL, &timed_out);
  if (PQresultStatus(r) != PGRES_COPY_OUT) {
    char msg[600];
    tn_pg_one_line(timed_out ? "no answer from the server"
                   : r       ? PQresultErrorMessage(r)
                             : PQerrorMessage(pc),
                   msg, sizeof msg);
    PQclear(r);
    return tn_error_set(err, TN_EAPI, "COPY out of %s: %s", qname, msg);
  }
  PQclear(r);
  snprintf(sql, sizeof sql, "COPY %s FROM STDIN", qname);
  r = exec_bounded(sc, sql, 0, NULL, &timed_out);
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    char msg[600];
    tn_pg_one_line(timed_out ? "no answer from the server"
                   : r       ? PQresultErrorMessage(r)
                             : PQerrorMessage(sc),
                   msg, sizeof msg);
    PQclear(r);
    return tn_error_set(err, TN_EAPI,
                        "COPY into %s: %s (the primary's COPY is abandoned with its connection)", qname, msg);
  }
  PQclear(r);
  /* each row within CLIENT_DEADLINE_S of the previous one: a primary that stops answering ends
   * the round instead of holding the worker */
  int n;
  char *b;
  bool ok = true;
  while ((n = copy_row(pc, &b, tn_mono_now() + CLIENT_DEADLINE_S)) > 0) {
    if (ok && PQputCopyData(sc, b, n) != 1)
      ok = false;
    PQfreemem(b);
  }
  PQputCopyEnd(sc, ok && n == -1 ? NULL : "copy from the primary failed");
  int rc = 0;
  if (n < -1) {
    rc = tn_error_set(err, TN_ETRANSPORT, "COPY out of %s: %s", qname,
                      n == -3 ? "no answer from the primary"
                              : "the copy failed or the primary's connection broke");
  } else {
    while ((r = exec_bounded_next(pc, &timed_out))) {
      if (PQresultStatus(r) != PGRES_COMMAND_OK && !rc)
        rc = tn_error_set(err, TN_EAPI, "COPY out of %s failed", qname);
      PQclear(r);
    }
    if (timed_out && !rc)
      rc = tn_error_set(err, TN_ETRANSPORT, "COPY out of %s: no answer from the primary", qname);
  }
  while ((r = exec_bounded_next(sc, &timed_out))) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK && !rc) {
      char msg[600];
      tn_pg_one_line(PQresultErrorMessage(r), msg, sizeof msg);
      rc = tn_error_set(err, TN_EAPI, "COPY into %s: %s", qname, msg);
    }
    PQclear(r);
  }
  if (timed_out && !rc)
    rc = tn_error_set(err, TN_ETRANSPORT, "COPY into %s: no answer from the standby", qname);
  return rc;
}

static int snapshot_cold(struct tn_failover *f, struct unit *u, struct tn_error *err) {
  struct synced x;
  if (sync_definitions(f, u, &x, err))
    return err->code;
  PGconn *pc = x.pc, *sc = x.sc;
  char **schemas = x.schemas;
  size_t ns = x.ns;
  int rc = 0;
  for (size_t i = 0; i < u->n; i++) {
    struct member *m = &u->m[i];
    char *arr = NULL;
    if (u->shared) {
      char *one[1] = {m->names.schema};
      arr = text_array(one, 1);
    } else {
      arr = text_array(schemas, ns);
    }
    const char *p1[1] = {arr ? arr : "{}"};
    if ((rc = pg_x(pc, "snapshot", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err))) {
      free(arr);
      goto out;
    }
    PGresult *t =
        pg_q(pc, "listing tables",
             "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = "
             "c.relnamespace WHERE c.relkind = 'r' AND NOT c.relispartition AND n.nspname = "
             "ANY($1::text[]) ORDER BY 1",
             1, p1, err);
    free(arr);
    if (!t) {
      rc = err->code;
      goto out;
    }
    rc = pg_x(sc, "snapshot", "BEGIN", err);
    for (int j = 0; !rc && j < PQntuples(t); j++)
      rc = copy_table(pc, sc, PQgetvalue(t, j, 0), err);
    PQclear(t);
    struct tn_error ignore = {0};
    if (!rc)
      rc = pg_x(sc, "committing the snapshot", "COMMIT", err);
    else
      pg_x(sc, "rollback", "ROLLBACK", &ignore);
    pg_x(pc, "end of snapshot", "COMMIT", &ignore);
    if (rc)
      goto out;
    m->ready = true;
  }
out:
  strv_free(schemas, ns);
  PQfinish(pc);
  PQfinish(sc);
  return rc;
}

/* ---- failing over ------------------------------------------------------------------------------- */

/* Sets every sequence of the schemas on the standby past the largest value of the column that
 * uses it (owned sequences and identity columns): logical replication copies rows, not
 * sequences. */
static int sync_sequences(PGconn *sc, char **schemas, size_t ns, struct tn_error *err) {
  if (!ns)
    return 0;
  char *arr = text_array(schemas, ns);
  if (!arr)
    return tn_error_set(err, -ENOMEM, "out of memory");
  char *lit = PQescapeLiteral(sc, arr, strlen(arr));
  free(arr);
  if (!lit)
    return tn_error_set(err, -ENOMEM, "out of memory");
  char sql[4096];
  snprintf(
      sql, sizeof sql,
      "DO $tnfo$ DECLARE r record; m bigint; BEGIN FOR r IN SELECT s.oid::regclass AS seq, a.attname AS col, "
      "a.attrelid::regclass AS tbl FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace JOIN "
      "pg_depend d "
      "ON d.refclassid = 'pg_class'::regclass AND d.refobjid = s.oid AND d.classid = 'pg_attrdef'::regclass "
      "JOIN pg_attrdef ad ON ad.oid = d.objid JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = "
      "ad.adnum WHERE s.relkind = 'S' AND n.nspname = ANY(%s::text[]) UNION SELECT s.oid::regclass, "
      "a.attname, "
      "a.attrelid::regclass FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace JOIN pg_depend d "
      "ON "
      "d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.refclassid = 'pg_class'::regclass AND "
      "d.deptype IN ('a','i') JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
      "WHERE s.relkind = 'S' AND n.nspname = ANY(%s::text[]) LOOP EXECUTE format('SELECT max(%%I)::bigint "
      "FROM %%s', r.col, r.tbl) INTO m; IF m IS NOT NULL THEN PERFORM setval(r.seq, m); END IF; END LOOP; "
      "END $tnfo$",
      lit, lit);
  PQfreemem(lit);
  return pg_x(sc, "setting the sequences past the copied rows", sql, err);
}

/* Waits until the slot of the unit confirms the primary's current WAL position (bounded). */
static bool catch_up(PGconn *pc, const char *slot, double timeout_s) {
  struct tn_error err = {0};
  PGresult *r = pg_q(pc, "WAL position", "SELECT pg_current_wal_lsn()::text", 0, NULL, &err);
  if (!r)
    return false;
  char lsn[64];
  snprintf(lsn, sizeof lsn, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  const char *p[2] = {slot, lsn};
  double until = tn_mono_now() + timeout_s;
  while (tn_mono_now() < until) {
    r = pg_q(pc, "slot position",
             "SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1", 2, p,
             &err);
    bool done = r && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    bool gone = r && PQntuples(r) == 0;
    PQclear(r);
    if (done)
      return true;
    if (!r || gone)
      return false;
    usleep(100 * 1000);
  }
  return false;
}

struct fo_result {
  int moved, failed, not_allowed;
  bool catch_up; /* every warm unit confirmed caught up */
  bool any_warm;
  char failures[2048];
};

static void note_failure(struct fo_result *res, const char *tenant, const char *msg) {
  size_t len = strlen(res->failures);
  if (len + 8 < sizeof res->failures)
    snprintf(res->failures + len, sizeof res->failures - len, "%s%s: %s", len ? "; " : "", tenant, msg);
  res->failed++;
}

/* Test hook: TENANCY_TEST_FAILOVER_CRASH_AFTER_SWITCHED=<n> kills this process (SIGKILL) once it
 * has switched n tenants (placement patched, Event and audit row written), before the next one:
 * an operator dying in the middle of a failover. For tests only. */
static void crash_hook(struct tn_failover *f) {
  const char *want = getenv("TENANCY_TEST_FAILOVER_CRASH_AFTER_SWITCHED");
  if (want && *want && atoi(want) == f->switched) {
    struct tn_log_fields lf = TN_LOG_FIELDS_INIT;
    lf.controller = "failover";
    tn_log(TN_LOG_WARN, &lf, "test hook: SIGKILL after %d tenant(s) switched", f->switched);
    raise(SIGKILL);
  }
}

/* Whether the unit's subscription is gone from the standby (an interrupted pass detached it). */
static bool unit_detached(struct unit *u) {
  struct tn_error err = {0};
  PGconn *sc = pg_open(&u->s, u->database, NULL, &err);
  char oid[32] = "x";
  if (sc && sub_oid(sc, u->object, oid, &err))
    snprintf(oid, sizeof oid, "x");
  bool gone = sc && !oid[0];
  PQfinish(sc);
  return gone;
}

/* Fails over the triggered members of one unit. resuming: an earlier pass of this failover was
 * interrupted (the operator died): a unit whose subscription it already dropped is not copied
 * again (a new subscription's initial copy would add every row of a table without a key a
 * second time on the standby). */
static void failover_unit(struct tn_failover *f, const char *region, const char *standby,
                          enum tn_failover_mode mode, struct unit *u, const char *correlation, bool resuming,
                          struct fo_result *res) {
  struct tn_error err = {0};
  int trig = 0;
  for (size_t i = 0; i < u->n; i++)
    trig += u->m[i].trig;
  if (!trig)
    return;
  /* 0. Warm, primary still answering: a last pass of the copy (tables made since the last
   * pass), and a bounded wait for every table's initial synchronization. */
  bool detached = mode == TN_FAILOVER_WARM && resuming && unit_detached(u);
  if (detached)
    log_region(TN_LOG_INFO, region,
               "resuming an interrupted failover: the copy %s of %s/%s was detached by the interrupted pass; "
               "it is not copied again",
               u->object, u->pname, u->database);
  if (mode == TN_FAILOVER_WARM && !detached) {
    PGconn *probe = pg_open(&u->p, u->database, PRIMARY_CONNECT_TIMEOUT, &err);
    if (probe) {
      PQfinish(probe);
      double until = tn_mono_now() + CATCH_UP_TIMEOUT_S;
      for (;;) {
        if (sync_warm(f, u, &err)) {
          log_region(TN_LOG_WARN, region, "last copy pass before the failover: %s", err.message);
          break;
        }
        bool all_ready = true;
        for (size_t i = 0; i < u->n; i++)
          if (u->m[i].trig && !u->m[i].ready)
            all_ready = false;
        if (all_ready || tn_mono_now() > until)
          break;
        usleep(300 * 1000);
      }
    }
    tn_error_clear(&err);
  }
  /* 1. Fence the primary when it answers: the tenant roles NOLOGIN, their sessions ended. */
  PGconn *pc = pg_open(&u->p, u->database, PRIMARY_CONNECT_TIMEOUT, &err);
  if (!pc) {
    log_region(TN_LOG_WARN, region, "primary server %s unreachable, failing over without fencing: %s",
               u->pname, err.message);
    tn_error_clear(&err);
  }
  for (size_t i = 0; pc && i < u->n; i++) {
    if (!u->m[i].trig)
      continue;
    char *q = ident(pc, u->m[i].names.role);
    char sql[256];
    snprintf(sql, sizeof sql, "ALTER ROLE %s NOLOGIN", q ? q : "\"\"");
    PQfreemem(q);
    const char *p1[1] = {u->m[i].names.role};
    if (pg_x(pc, "fencing the primary role", sql, &err) == 0) {
      PGresult *r =
          pg_q(pc, "ending the role's sessions",
               "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", 1, p1, &err);
      PQclear(r);
    }
    if (err.code)
      log_region(TN_LOG_WARN, region, "fencing tenant %s on %s: %s", u->m[i].t->name, u->pname, err.message);
    tn_error_clear(&err);
  }
  PGconn *sc = pg_open(&u->s, u->database, NULL, &err);
  if (!sc) {
    for (size_t i = 0; i < u->n; i++)
      if (u->m[i].trig)
        note_failure(res, u->m[i].t->name, err.message);
    PQfinish(pc);
    return;
  }
  char *qobj = ident(sc, u->object);
  char sql[1024];
  bool all = (size_t)trig == u->n;
  if (mode == TN_FAILOVER_WARM) {
    res->any_warm = true;
    /* 2. Catch up: the replica confirms everything the primary wrote before the fence. */
    bool caught = pc && !detached && catch_up(pc, u->object, CATCH_UP_TIMEOUT_S);
    if (!caught)
      res->catch_up = false;
    /* 3. Detach: the whole subscription when every member goes (or the primary is gone), else
     * only the members' schemas. */
    if (all || !pc) {
      if (pc) {
        snprintf(sql, sizeof sql, "DROP SUBSCRIPTION IF EXISTS %s", qobj);
        if (pg_x(sc, "dropping the subscription", sql, &err)) {
          tn_error_clear(&err);
          pc = (PQfinish(pc), NULL); /* fall back to detaching from the slot */
        } else {
          snprintf(sql, sizeof sql, "DROP PUBLICATION IF EXISTS %s", qobj);
          pg_x(pc, "dropping the publication", sql, &err);
          tn_error_clear(&err);
        }
      }
      if (!pc) {
        char oid[32] = "";
        if (sub_oid(sc, u->object, oid, &err) == 0 && oid[0]) {
          snprintf(sql, sizeof sql, "ALTER SUBSCRIPTION %s DISABLE", qobj);
          pg_x(sc, "disabling the subscription", sql, &err);
          snprintf(sql, sizeof sql, "ALTER SUBSCRIPTION %s SET (slot_name = NONE)", qobj);
          if (!err.code)
            pg_x(sc, "detaching the subscription from its slot", sql, &err);
          snprintf(sql, sizeof sql, "DROP SUBSCRIPTION %s", qobj);
          if (!err.code)
            pg_x(sc, "dropping the subscription", sql, &err);
        }
      }
    } else {
      size_t off = (size_t)snprintf(sql, sizeof sql, "ALTER PUBLICATION %s DROP TABLES IN SCHEMA ", qobj);
      int k = 0;
      for (size_t i = 0; i < u->n && off < sizeof sql; i++) {
        if (!u->m[i].trig)
          continue;
        char *q = ident(pc, u->m[i].names.schema);
        off += (size_t)snprintf(sql + off, sizeof sql - off, "%s%s", k++ ? ", " : "", q ? q : "\"\"");
        PQfreemem(q);
      }
      if (pg_x(pc, "removing the tenants from the publication", sql, &err) == 0) {
        snprintf(sql, sizeof sql, "ALTER SUBSCRIPTION %s REFRESH PUBLICATION WITH (copy_data = false)", qobj);
        pg_x(sc, "refreshing the subscription", sql, &err);
      }
    }
    if (err.code) {
      for (size_t i = 0; i < u->n; i++)
        if (u->m[i].trig)
          note_failure(res, u->m[i].t->name, err.message);
      PQfreemem(qobj);
      PQfinish(pc);
      PQfinish(sc);
      return;
    }
  }
  PQfreemem(qobj);
  /* 4. Per member: sequences, then the placement switch. */
  for (size_t i = 0; i < u->n; i++) {
    struct member *m = &u->m[i];
    if (!m->trig)
      continue;
    tn_error_clear(&err);
    char **schemas = NULL;
    size_t ns = 0;
    if (u->shared) {
      schemas = calloc(1, sizeof *schemas);
      if (schemas && (schemas[0] = strdup(m->names.schema)))
        ns = 1;
    } else if (unit_schemas(u, sc, false, &schemas, &ns, &err)) {
      note_failure(res, m->t->name, err.message);
      continue;
    }
    int rc = sync_sequences(sc, schemas, ns, &err);
    strv_free(schemas, ns);
    if (rc) {
      char tg[128];
      snprintf(tg, sizeof tg, "tenant/%s", m->t->name);
      note_failure(res, m->t->name, err.message);
      audit(f, TN_AUDIT_ACTION_TENANT_FAILOVER, tg, TN_AUDIT_FAILED, correlation,
            json_pack("{s:s,s:s,s:s}", "from", region, "to", standby, "error", err.message));
      continue;
    }
    json_t *patch = json_pack("{s:{s:{s:s},s:{s:s}}}", "status", "placement", "region", standby, "database",
                              "server", u->sname);
    json_t *out = NULL;
    rc = tn_kube_merge_patch(f->rec->kube, &tn_gvr_tenants, NULL, m->t->name, patch, "status", &out, &err);
    json_decref(patch);
    json_decref(out);
    char target[128], note[1024];
    snprintf(target, sizeof target, "tenant/%s", m->t->name);
    if (rc) {
      note_failure(res, m->t->name, err.message);
      snprintf(note, sizeof note, "failover from region %s to %s failed: %s", region, standby, err.message);
      tenant_event(f, m->tenant, TN_EVENT_WARNING, TN_REASON_FAILOVER_FAILED, note);
      audit(f, TN_AUDIT_ACTION_TENANT_FAILOVER, target, TN_AUDIT_FAILED, correlation,
            json_pack("{s:s,s:s,s:s}", "from", region, "to", standby, "error", err.message));
      continue;
    }
    remember_moved(f, region, m->t->name);
    res->moved++;
    snprintf(note, sizeof note,
             "failed over (%s) from region %s server %s to region %s server %s; the login is enabled and the "
             "tenant-database Secrets rewritten by the next reconcile (correlationId=%s)",
             mode == TN_FAILOVER_WARM ? "warm replica promoted" : "restored from the latest snapshot", region,
             u->pname, standby, u->sname, correlation);
    tenant_event(f, m->tenant, TN_EVENT_NORMAL, TN_REASON_FAILED_OVER, note);
    audit(f, TN_AUDIT_ACTION_TENANT_FAILOVER, target, TN_AUDIT_SUCCEEDED, correlation,
          json_pack("{s:s,s:s,s:s,s:s,s:s}", "from", region, "to", standby, "fromServer", u->pname,
                    "toServer", u->sname, "mode", mode == TN_FAILOVER_WARM ? "warm" : "cold"));
    m->moved = true;
    f->switched++;
    crash_hook(f);
  }
  PQfinish(sc);
  /* A drill's synthetic tenants: their copies on the primary are dropped, once every tenant is
   * switched (a real failover keeps them, for forensics or a later migration back). */
  for (size_t i = 0; pc && i < u->n; i++) {
    struct member *m = &u->m[i];
    if (!m->trig || !m->moved ||
        !json_object_get(json_object_get(json_object_get(m->tenant, "metadata"), "labels"),
                         TN_LABEL_FAILOVER_DRILL))
      continue;
    struct tn_error terr = {0};
    if (tn_db_teardown(f->rec->db, &u->p.db, m->t->name, NULL, &terr))
      log_region(TN_LOG_WARN, region, "drill: dropping tenant %s's copy on %s: %s", m->t->name, u->pname,
                 terr.message);
  }
  PQfinish(pc);
}

/* ---- after a failover: the old primary ---------------------------------------------------------- */

/* Whether servers a and b (databaseServers[] entries) are one endpoint (host and port). */
static bool same_endpoint(const json_t *a, const json_t *b) {
  const char *ha = str2(a, "host", NULL), *hb = str2(b, "host", NULL);
  json_int_t pa = json_integer_value(json_object_get(a, "port")),
             pb = json_integer_value(json_object_get(b, "port"));
  return ha && hb && strcmp(ha, hb) == 0 && (pa ? pa : 5432) == (pb ? pb : 5432);
}

/* One old primary server of a failed-over region, when it answers again: every tenant role there
 * whose Tenant now lives in the standby region made NOLOGIN (its sessions ended): the same tenant
 * must not be writable in two places; the replication slots and publications of this region's
 * copies to the standby dropped (a slot nobody reads retains WAL without bound). The tenants'
 * schemas and databases there are kept: they may hold the writes the standby never received.
 * Returns how many objects it changed, or -1 when the server did not answer. */
static int clean_old_primary(struct tn_failover *f, json_t *region, const struct tn_failover_spec *spec,
                             json_t *standby, json_t *srv_spec, int *roles, int *slots,
                             struct tn_error *err) {
  const char *rname = name_of(region);
  struct server s;
  *roles = *slots = 0;
  if (server_load(f, srv_spec, &s, err)) {
    server_cleanup(&s);
    return -1;
  }
  PGconn *c = pg_open(&s, NULL, PRIMARY_CONNECT_TIMEOUT, err);
  if (!c) {
    server_cleanup(&s);
    return -1;
  }
  const char *pfx[1] = {TN_DB_MARKER_PREFIX};
  PGresult *r = pg_q(c, "listing the tenant roles that can log in",
                     "SELECT r.rolname, substr(d.description, length($1) + 1) FROM pg_roles r JOIN "
                     "pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass WHERE "
                     "r.rolcanlogin AND starts_with(d.description, $1)",
                     1, pfx, err);
  for (int i = 0; r && i < PQntuples(r); i++) {
    const char *role = PQgetvalue(r, i, 0), *id = PQgetvalue(r, i, 1);
    json_t *t = tn_informer_get(f->rec->tenants, id);
    const json_t *st = json_object_get(t, "status");
    const char *now_region = str2(st, "placement", "region");
    const char *now_server = str2(st, "database", "server");
    struct tn_db_names names;
    struct tn_error nerr = {0};
    /* only a tenant this failover moved (now in the standby region, on another endpoint) whose
     * role this is */
    bool fence = t && now_region && strcmp(now_region, spec->standby) == 0 && now_server &&
                 !same_endpoint(server_named(standby, now_server), srv_spec) &&
                 tn_db_names_for(id, TN_ISOLATION_SHARED, NULL, &names, &nerr) == 0 &&
                 strcmp(names.role, role) == 0;
    json_decref(t);
    if (!fence)
      continue;
    char *q = ident(c, role), sql[256];
    snprintf(sql, sizeof sql, "ALTER ROLE %s NOLOGIN", q ? q : "\"\"");
    PQfreemem(q);
    const char *p1[1] = {role};
    struct tn_error e2 = {0};
    if (pg_x(c, "fencing the old primary's role", sql, &e2) == 0) {
      PQclear(pg_q(c, "ending the role's sessions",
                   "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", 1, p1, &e2));
      (*roles)++;
      log_region(TN_LOG_INFO, rname, "old primary %s answers again: tenant %s's role made NOLOGIN", s.name,
                 id);
    }
    if (e2.code)
      log_region(TN_LOG_WARN, rname, "fencing tenant %s on the old primary %s: %s", id, s.name, e2.message);
  }
  PQclear(r);
  r = pg_q(c, "listing the replication slots",
           "SELECT slot_name, database FROM pg_replication_slots WHERE slot_type = 'logical' AND NOT active "
           "AND starts_with(slot_name::text, 'tnfo_')",
           0, NULL, err);
  for (int i = 0; r && i < PQntuples(r); i++) {
    const char *slot = PQgetvalue(r, i, 0), *db = PQgetvalue(r, i, 1);
    char obj[64];
    tn_failover_object_name(rname, s.name, db, spec->standby, obj);
    if (strcmp(obj, slot) != 0)
      continue; /* another region's or standby's copy */
    struct tn_error e2 = {0};
    PGconn *dc = pg_open(&s, db, PRIMARY_CONNECT_TIMEOUT, &e2);
    char *q = dc ? ident(dc, obj) : NULL, sql[256];
    snprintf(sql, sizeof sql, "DROP PUBLICATION IF EXISTS %s", q ? q : "\"\"");
    PQfreemem(q);
    if (dc && pg_x(dc, "dropping the publication", sql, &e2) == 0) {
      const char *p1[1] = {slot};
      PQclear(pg_q(
          c, "dropping the replication slot",
          "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND "
          "NOT active",
          1, p1, &e2));
      if (!e2.code) {
        (*slots)++;
        log_region(TN_LOG_INFO, rname, "old primary %s: publication and replication slot %s dropped", s.name,
                   obj);
      }
    }
    if (e2.code)
      log_region(TN_LOG_WARN, rname, "dropping the copy %s on the old primary %s: %s", obj, s.name,
                 e2.message);
    PQfinish(dc);
  }
  PQclear(r);
  PQfinish(c);
  server_cleanup(&s);
  return err->code ? -1 : *roles + *slots;
}

static void clean_old_primaries(struct tn_failover *f, json_t *region, const struct tn_failover_spec *spec,
                                json_t *standby) {
  const char *rname = name_of(region);
  size_t i;
  json_t *srv;
  json_array_foreach(json_object_get(json_object_get(region, "spec"), "databaseServers"), i, srv) {
    const char *sname = str2(srv, "name", NULL);
    char key[96];
    snprintf(key, sizeof key, "clean:%s", sname ? sname : "");
    if (!sname || was_moved(f, rname, key))
      continue; /* found clean less than MOVED_MEMORY_S ago */
    struct tn_error err = {0};
    int roles = 0, slots = 0;
    int n = clean_old_primary(f, region, spec, standby, srv, &roles, &slots, &err);
    if (n < 0) {
      log_region(TN_LOG_DEBUG, rname, "old primary %s not cleaned yet: %s", sname, err.message);
      continue;
    }
    if (n == 0) {
      remember_moved(f, rname, key);
      continue;
    }
    char note[512], target[128];
    snprintf(
        note, sizeof note,
        "old primary server %s answers again: %d tenant role(s) made NOLOGIN, %d replication slot(s) and "
        "publication(s) of the copies dropped; the tenants' data there is kept",
        sname, roles, slots);
    region_event(f, region, TN_EVENT_NORMAL, TN_REASON_FAILOVER_CLEANUP, note);
    snprintf(target, sizeof target, "region/%s", rname);
    audit(f, TN_AUDIT_ACTION_FAILOVER_CLEANUP, target, TN_AUDIT_SUCCEEDED, NULL,
          json_pack("{s:s,s:i,s:i}", "server", sname, "rolesFenced", roles, "slotsDropped", slots));
  }
}

/* ---- the pass ---------------------------------------------------------------------------------- */

static bool live_state(const json_t *tenant) {
  const char *st = str2(json_object_get(tenant, "status"), "state", NULL);
  if (json_object_get(json_object_get(tenant, "metadata"), "deletionTimestamp"))
    return false;
  return st && (strcmp(st, "Active") == 0 || strcmp(st, "Suspended") == 0);
}

static struct unit *unit_for(struct unit **units, size_t *n, const char *pname, const char *database,
                             const char *sname, bool shared) {
  for (size_t i = 0; i < *n; i++)
    if (strcmp((*units)[i].pname, pname) == 0 && strcmp((*units)[i].database, database) == 0 &&
        strcmp((*units)[i].sname, sname) == 0)
      return &(*units)[i];
  struct unit *u = realloc(*units, (*n + 1) * sizeof *u);
  if (!u)
    return NULL;
  *units = u;
  u = &u[(*n)++];
  memset(u, 0, sizeof *u);
  snprintf(u->pname, sizeof u->pname, "%s", pname);
  snprintf(u->database, sizeof u->database, "%s", database);
  snprintf(u->sname, sizeof u->sname, "%s", sname);
  u->shared = shared;
  return u;
}

static void status_patch(struct tn_failover *f, json_t *region_obj, json_t *fo /* taken */) {
  json_t *old = json_object_get(json_object_get(region_obj, "status"), "failover");
  /* unchanged: no write (lastFailover only changes when a failover ran) */
  json_t *merged = old ? json_deep_copy(old) : json_object();
  json_object_update(merged, fo);
  bool same = old && json_equal(old, merged);
  json_decref(merged);
  if (same) {
    json_decref(fo);
    return;
  }
  json_t *patch = json_pack("{s:{s:o}}", "status", "failover", fo);
  struct tn_error err = {0};
  json_t *out = NULL;
  if (tn_kube_merge_patch(f->rec->kube, &tn_gvr_regions, NULL, name_of(region_obj), patch, "status", &out,
                          &err))
    log_region(TN_LOG_WARN, name_of(region_obj), "writing status.failover: %s", err.message);
  json_decref(out);
  json_decref(patch);
}

struct tn_result tn_failover_reconcile(void *ud, const char *name) {
  struct tn_failover *f = ud;
  json_t *region = tn_informer_get(f->rec->regions, name);
  if (!region)
    return TN_RESULT_OK;
  struct tn_failover_spec spec;
  struct tn_error err = {0};
  struct tn_result res = TN_RESULT_OK;
  json_t *standby = NULL, *tenants = NULL;
  struct unit *units = NULL;
  size_t n_units = 0;
  json_t *not_allowed = json_array(), *refused = json_array();
  if (tn_failover_spec_parse(region, &spec, &err)) {
    if (spec.configured)
      status_patch(f, region,
                   json_pack("{s:s,s:s}", "phase", TN_FAILOVER_PHASE_ERROR, "message", err.message));
    goto out;
  }
  if (!spec.configured)
    goto out;
  standby = tn_informer_get(f->rec->regions, spec.standby);
  if (!standby) {
    char msg[512];
    snprintf(msg, sizeof msg,
             "standby region %s does not exist: create it or correct spec.failover.standbyRegion",
             spec.standby);
    status_patch(f, region,
                 json_pack("{s:s,s:s,s:s}", "phase", TN_FAILOVER_PHASE_ERROR, "message", msg, "standbyRegion",
                           spec.standby));
    res = TN_RESULT_AFTER(30);
    goto out;
  }
  enum tn_failover_trigger trig = tn_failover_trigger_of(&spec);
  const char *phase0 = str2(json_object_get(region, "status"), "failover", "phase");
  bool was_failing_over = phase0 && strcmp(phase0, TN_FAILOVER_PHASE_FAILING_OVER) == 0;
  if (!f->rec->db) {
    goto out; /* no database step: nothing to copy */
  }
  tenants = tn_informer_list_by_index(f->rec->tenants, TN_INDEX_PLACEMENT_REGION, name, &err);
  size_t i;
  json_t *t;
  char failures[2048] = "";
  int n_failed_setup = 0;
  json_array_foreach(tenants, i, t) {
    const char *id = name_of(t);
    const char *server = str2(json_object_get(t, "status"), "database", "server");
    if (!id || !live_state(t) || !server || was_moved(f, name, id))
      continue;
    struct tn_tenant *tt = NULL;
    struct tn_error perr = {0};
    if (tn_tenant_parse(t, &tt, &perr))
      continue;
    const char *drill_label =
        str2(json_object_get(json_object_get(t, "metadata"), "labels"), TN_LABEL_FAILOVER_DRILL, NULL);
    bool in_trigger = trig == TN_FAILOVER_REGION ||
                      (trig == TN_FAILOVER_DRILL && drill_label && strcmp(drill_label, spec.drill) == 0);
    if (!tn_failover_tenant_allowed(&tt->residency, spec.standby)) {
      json_array_append_new(not_allowed, json_string(id));
      if (in_trigger)
        json_array_append(refused, t);
      tn_tenant_free(tt);
      continue;
    }
    json_t *psrv = server_named(region, server);
    json_t *ssrv = standby_server(standby, tt->isolation);
    struct tn_db_names names;
    if (!psrv || !ssrv || tn_db_names_for(id, tt->isolation, NULL, &names, &perr)) {
      size_t len = strlen(failures);
      snprintf(failures + len, sizeof failures - len, "%s%s: %s", len ? "; " : "", id,
               !psrv   ? "its server is not listed in the region"
               : !ssrv ? "no server of the standby region serves its isolation mode"
                       : perr.message);
      n_failed_setup++;
      tn_tenant_free(tt);
      continue;
    }
    struct unit *u = unit_for(&units, &n_units, server, names.database, str2(ssrv, "name", NULL),
                              tt->isolation == TN_ISOLATION_SHARED);
    struct member *mm = u ? realloc(u->m, (u->n + 1) * sizeof *mm) : NULL;
    if (!mm) {
      tn_tenant_free(tt);
      continue;
    }
    u->m = mm;
    mm[u->n++] = (struct member){.tenant = t, .t = tt, .names = names, .trig = in_trigger};
    if (!u->p.spec) {
      u->p.spec = psrv;
      u->s.spec = ssrv;
    }
  }
  /* Load the servers (Secrets). */
  for (size_t k = 0; k < n_units; k++) {
    struct unit *u = &units[k];
    tn_failover_object_name(name, u->pname, u->database, spec.standby, u->object);
    json_t *ps = u->p.spec, *ss = u->s.spec;
    if (server_load(f, ps, &u->p, &err) || server_load(f, ss, &u->s, &err)) {
      size_t len = strlen(failures);
      snprintf(failures + len, sizeof failures - len, "%sservers %s/%s: %s", len ? "; " : "", u->pname,
               u->sname, err.message);
      tn_error_clear(&err);
      u->p_loaded = false;
      continue;
    }
    u->p_loaded = u->s_loaded = true;
  }
  char now[40];
  tn_time_rfc3339(tn_wall_now(), now, sizeof now);

  size_t n_trig = 0;
  for (size_t k = 0; k < n_units; k++)
    for (size_t j = 0; j < units[k].n; j++)
      n_trig += units[k].m[j].trig;
  /* After a region failover, later passes run only for tenants still to move (a failed one, or
   * one placed since): the rest is reported, not repeated. */
  if (trig == TN_FAILOVER_REGION && spec.failed_over && n_trig == 0)
    trig = TN_FAILOVER_NONE;
  if (trig != TN_FAILOVER_NONE) {
    char correlation[64];
    snprintf(correlation, sizeof correlation, "failover-%s-%.0f", name, tn_wall_now());
    char note[1024], target[128];
    snprintf(target, sizeof target, "region/%s", name);
    snprintf(note, sizeof note, "%s of region %s to %s (%s) started (correlationId=%s)",
             trig == TN_FAILOVER_DRILL ? "failover drill" : "failover", name, spec.standby,
             spec.mode == TN_FAILOVER_WARM ? "warm" : "cold", correlation);
    region_event(f, region, TN_EVENT_NORMAL, TN_REASON_FAILOVER_STARTED, note);
    audit(f, TN_AUDIT_ACTION_FAILOVER, target, TN_AUDIT_STARTED, correlation,
          json_pack("{s:s,s:s,s:s?}", "standby", spec.standby, "mode",
                    spec.mode == TN_FAILOVER_WARM ? "warm" : "cold", "drill",
                    trig == TN_FAILOVER_DRILL ? spec.drill : NULL));
    status_patch(f, region, json_pack("{s:s,s:s}", "phase", TN_FAILOVER_PHASE_FAILING_OVER, "message", note));
    double t0 = tn_wall_now();
    struct fo_result fr = {.catch_up = true};
    /* read before this pass's status write: FailingOver here means a pass died in the middle */
    bool resuming = was_failing_over;
    json_array_foreach(refused, i, t) {
      char rnote[512], rtarget[128];
      snprintf(
          rnote, sizeof rnote,
          "not failed over to region %s: the tenant's residency (spec.residency.allowedRegions) does not "
          "allow it; the tenant stays in region %s (correlationId=%s)",
          spec.standby, name, correlation);
      tenant_event(f, t, TN_EVENT_WARNING, TN_REASON_FAILOVER_NOT_ALLOWED, rnote);
      snprintf(rtarget, sizeof rtarget, "tenant/%s", name_of(t));
      audit(f, TN_AUDIT_ACTION_TENANT_FAILOVER, rtarget, TN_AUDIT_REFUSED, correlation,
            json_pack("{s:s,s:s,s:s}", "from", name, "to", spec.standby, "reason", "residency"));
    }
    for (size_t k = 0; k < n_units; k++) {
      struct unit *u = &units[k];
      if (!u->p_loaded) {
        for (size_t j = 0; j < u->n; j++)
          if (u->m[j].trig)
            note_failure(&fr, u->m[j].t->name, "its servers' Secrets could not be read");
        continue;
      }
      failover_unit(f, name, spec.standby, spec.mode, u, correlation, resuming, &fr);
    }
    fr.not_allowed = (int)json_array_size(refused);
    char done[40];
    tn_time_rfc3339(tn_wall_now(), done, sizeof done);
    char started[40];
    tn_time_rfc3339(t0, started, sizeof started);
    snprintf(
        note, sizeof note,
        "%s of region %s to %s (%s): %d tenant(s) moved, %d failed, %d not allowed by residency, in %.1f s; "
        "replicas %s%s%s (correlationId=%s)",
        trig == TN_FAILOVER_DRILL ? "failover drill" : "failover", name, spec.standby,
        spec.mode == TN_FAILOVER_WARM ? "warm" : "cold", fr.moved, fr.failed, fr.not_allowed,
        tn_wall_now() - t0,
        spec.mode == TN_FAILOVER_COLD ? "restored from the latest snapshot"
        : !fr.any_warm                ? "-"
        : fr.catch_up                 ? "confirmed caught up with the primary"
                                      : "NOT confirmed caught up (primary unreachable or the wait timed out)",
        fr.failed ? "; failures: " : "", fr.failures, correlation);
    region_event(f, region, fr.failed ? TN_EVENT_WARNING : TN_EVENT_NORMAL,
                 fr.failed ? TN_REASON_FAILOVER_FAILED : TN_REASON_FAILED_OVER, note);
    audit(f, TN_AUDIT_ACTION_FAILOVER, target, fr.failed ? TN_AUDIT_FAILED : TN_AUDIT_SUCCEEDED, correlation,
          json_pack("{s:s,s:i,s:i,s:i,s:f,s:b}", "standby", spec.standby, "moved", fr.moved, "failed",
                    fr.failed, "notAllowed", fr.not_allowed, "seconds", tn_wall_now() - t0, "catchUp",
                    fr.catch_up));
    json_t *last =
        json_pack("{s:s,s:s,s:I,s:I,s:I,s:b,s:s}", "startedAt", started, "completedAt", done, "tenantsMoved",
                  (json_int_t)fr.moved, "tenantsFailed", (json_int_t)fr.failed, "tenantsNotAllowed",
                  (json_int_t)fr.not_allowed, "catchUp", fr.any_warm ? fr.catch_up : false, "message", note);
    if (trig == TN_FAILOVER_DRILL)
      json_object_set_new(last, "drill", json_string(spec.drill));
    json_t *fo =
        json_pack("{s:s,s:s,s:s,s:s,s:o}", "phase",
                  trig == TN_FAILOVER_DRILL ? TN_FAILOVER_PHASE_REPLICATING : TN_FAILOVER_PHASE_FAILED_OVER,
                  "message", note, "standbyRegion", spec.standby, "mode",
                  spec.mode == TN_FAILOVER_WARM ? "warm" : "cold", "lastFailover", last);
    json_object_set(fo, "tenantsNotAllowed", not_allowed);
    status_patch(f, region, fo);
    log_region(TN_LOG_INFO, name, "%s", note);
    res = TN_RESULT_AFTER(fr.failed ? 5 : 1);
    goto out;
  }

  /* After a region failover: the old primary servers, once they answer again. */
  if (spec.failed_over && spec.active && !spec.available)
    clean_old_primaries(f, region, &spec, standby);

  /* Keep the copies current. */
  long long total = 0, ready = 0;
  bool cold_due = false;
  double next = SYNC_PERIOD_S;
  if (spec.mode == TN_FAILOVER_COLD) {
    const char *lst =
        str2(json_object_get(json_object_get(region, "status"), "failover"), "lastSnapshotTime", NULL);
    struct tm tm = {0};
    double last = 0;
    if (lst && strptime(lst, "%Y-%m-%dT%H:%M:%SZ", &tm))
      last = (double)timegm(&tm);
    double age = tn_wall_now() - last;
    cold_due = !lst || age >= spec.snapshot_interval_s;
    if (!cold_due && spec.snapshot_interval_s - age < next)
      next = spec.snapshot_interval_s - age;
    if (next < 1)
      next = 1;
  }
  bool cold_ok = true;
  for (size_t k = 0; k < n_units; k++) {
    struct unit *u = &units[k];
    total += (long long)u->n;
    if (!u->p_loaded)
      continue;
    int rc = 0;
    if (spec.mode == TN_FAILOVER_WARM)
      rc = sync_warm(f, u, &err);
    else if (cold_due)
      rc = snapshot_cold(f, u, &err);
    else
      for (size_t j = 0; j < u->n; j++)
        u->m[j].ready = true; /* the last round copied them */
    if (rc) {
      cold_ok = false;
      size_t len = strlen(failures);
      snprintf(failures + len, sizeof failures - len, "%s%s -> %s (%s): %s", len ? "; " : "", u->pname,
               u->sname, u->database, err.message);
      log_region(TN_LOG_WARN, name, "copy of %s/%s to %s: %s", u->pname, u->database, u->sname, err.message);
      tn_error_clear(&err);
    }
    for (size_t j = 0; j < u->n; j++)
      ready += u->m[j].ready;
  }
  char msg[4096];
  snprintf(msg, sizeof msg, "%lld of %lld tenant(s) copied to region %s (%s)%s%s%s", ready, total,
           spec.standby, spec.mode == TN_FAILOVER_WARM ? "warm: logical replication" : "cold: snapshots",
           json_array_size(not_allowed)
               ? "; residency forbids the standby for some tenants (tenantsNotAllowed)"
               : "",
           failures[0] ? "; problems: " : "", failures);
  json_t *fo = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "phase",
                         spec.failed_over && spec.active && !spec.available ? TN_FAILOVER_PHASE_FAILED_OVER
                         : failures[0] || n_failed_setup                    ? TN_FAILOVER_PHASE_ERROR
                         : spec.mode == TN_FAILOVER_WARM                    ? TN_FAILOVER_PHASE_REPLICATING
                                                         : TN_FAILOVER_PHASE_SNAPSHOT_READY,
                         "message", msg, "standbyRegion", spec.standby, "mode",
                         spec.mode == TN_FAILOVER_WARM ? "warm" : "cold", "replicasTotal", (json_int_t)total,
                         "replicasReady", (json_int_t)ready);
  json_object_set(fo, "tenantsNotAllowed", not_allowed);
  if (spec.mode == TN_FAILOVER_COLD && cold_due && cold_ok && n_units > 0)
    json_object_set_new(fo, "lastSnapshotTime", json_string(now));
  status_patch(f, region, fo);
  res = TN_RESULT_AFTER(next);
out:
  for (size_t k = 0; k < n_units; k++)
    unit_free(&units[k]);
  free(units);
  json_decref(not_allowed);
  json_decref(refused);
  json_decref(tenants);
  json_decref(standby);
  json_decref(region);
  return res;
}

/* ---- wiring ------------------------------------------------------------------------------------- */

static void enqueue(struct tn_failover *f, const char *region, double after) {
  if (!region || !*region)
    return;
  if (after > 0)
    tn_controller_enqueue_after(f->ctl, region, after);
  else
    tn_controller_enqueue(f->ctl, region);
}

static void region_add(void *ud, json_t *obj) { enqueue(ud, name_of(obj), 0); }
static void region_upd(void *ud, json_t *old, json_t *cur) {
  (void)old;
  /* our own status writes come back as updates: only spec and metadata changes matter now */
  if (old != cur && json_equal(json_object_get(old, "spec"), json_object_get(cur, "spec")) &&
      json_equal(json_object_get(json_object_get(old, "metadata"), "annotations"),
                 json_object_get(json_object_get(cur, "metadata"), "annotations")))
    return;
  enqueue(ud, name_of(cur), 0);
}
static void tenant_add(void *ud, json_t *obj) {
  enqueue(ud, str2(json_object_get(obj, "status"), "placement", "region"), 1.0);
}
static void tenant_upd(void *ud, json_t *old, json_t *cur) {
  if (old == cur)
    return;
  const char *a = str2(json_object_get(old, "status"), "database", "server");
  const char *b = str2(json_object_get(cur, "status"), "database", "server");
  if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
    tenant_add(ud, cur);
}

int tn_failover_new(struct tn_reconciler *rec, struct tn_metrics *metrics, struct tn_failover **out,
                    struct tn_error *err) {
  *out = NULL;
  struct tn_failover *f = calloc(1, sizeof *f);
  if (!f)
    return tn_error_set(err, -ENOMEM, "out of memory");
  f->rec = rec;
  pthread_mutex_init(&f->mu, NULL);
  struct tn_controller_config cc = {
      .name = "failover", .workers = 1, .reconcile = tn_failover_reconcile, .ud = f, .metrics = metrics};
  if (!(f->ctl = tn_controller_new(&cc))) {
    tn_failover_free(f);
    return tn_error_set(err, -ENOMEM, "cannot create the failover controller");
  }
  struct tn_informer_handlers rh = {region_add, region_upd, region_add, f};
  struct tn_informer_handlers th = {tenant_add, tenant_upd, tenant_add, f};
  int rc;
  if ((rc = tn_informer_add_index(rec->tenants, TN_INDEX_PLACEMENT_REGION, index_by_placement_region, NULL,
                                  err)) ||
      (rc = tn_informer_add_handlers(rec->regions, &rh, err)) ||
      (rc = tn_informer_add_handlers(rec->tenants, &th, err))) {
    tn_failover_free(f);
    return rc;
  }
  *out = f;
  return 0;
}

int tn_failover_start(struct tn_failover *f) { return tn_controller_start(f->ctl); }

void tn_failover_stop(struct tn_failover *f, double deadline_s) {
  if (f && f->ctl)
    tn_controller_stop(f->ctl, deadline_s);
}

void tn_failover_abandon(struct tn_failover *f) {
  if (f && f->ctl)
    tn_controller_abandon(f->ctl);
}

void tn_failover_free(struct tn_failover *f) {
  if (!f)
    return;
  tn_controller_free(f->ctl);
  pthread_mutex_destroy(&f->mu);
  free(f->moved);
  free(f);
}
