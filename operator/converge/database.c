/* database.c - a tenant's PostgreSQL objects converged with libpq (see database.h): observe the
 * catalogs, plan with tenancy/dbplan.c, execute the plan's operations in order.
 *
 * Every identifier goes through PQescapeIdentifier and every literal through PQescapeLiteral or a
 * query parameter; tenant ids are DNS labels anyway (tn_db_names_for refuses anything else). The
 * admin URI and passwords never reach a log line or an error message: connection failures quote
 * libpq's message, which names host and user only; statement failures quote the server's primary
 * message and SQLSTATE, never the statement.
 *
 * Lock: tn_db.mu protects the idle connection list, the counters and the test hook. It is never
 * held while talking to a server. A connection is used by one call at a time: a call takes it off
 * the idle list and puts it back (or closes it) when done. */
#include "converge/database.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "runtime/log.h"
#include "util/fence.h"
#include "util/pgtext.h"

#define IDLE_PER_KEY 4      /* idle connections kept per (server, database) */
#define IDLE_MAX 64         /* idle connections kept in all */
#define CONNECT_TIMEOUT "5" /* seconds, unless the admin URI says otherwise */
#define SESSION_OPTIONS "-c lock_timeout=10s -c statement_timeout=60s"
#define TERMINATE_WAIT_MS "5000"  /* pg_terminate_backend waits this long for each session to end */
#define DDL_LOCK_KEY "7612345098" /* pg_advisory_xact_lock key serialising GRANT/REVOKE on shared rows */

struct conn {
  struct conn *next;
  char server[64];
  char dbname[64];                        /* "" = the admin URI's own database */
  unsigned char fp[SHA256_DIGEST_LENGTH]; /* digest of everything the connection was made from */
  PGconn *pg;
};

/* What this process last set as a role's password, for admins that cannot read pg_authid: key
 * SHA-256(server, role), value SHA-256(connection fingerprint, role, password), so no password is
 * kept. Consulted only when the verifier is unreadable (TN_DB_PASSWORD_UNKNOWN). */
#define RECORD_BUCKETS 256
struct record {
  struct record *next;
  unsigned char key[SHA256_DIGEST_LENGTH];
  unsigned char value[SHA256_DIGEST_LENGTH];
};

/* Calls by (server, operation, result), for metrics; a short list (servers x 3 x 7 at most). */
struct op_count {
  struct op_count *next;
  char server[64];
  const char *operation, *result; /* static */
  unsigned long long n;
};

struct tn_db {
  pthread_mutex_t mu; /* protects idle, records, stats, ops, stop_after */
  struct op_count *ops;
  struct conn *idle;
  struct record *records[RECORD_BUCKETS];
  struct tn_db_stats stats;
  int stop_after;
  const struct tn_fence *_Atomic fence; /* borrowed; NULL: never fenced */
};

struct tn_db *tn_db_new(void) {
  struct tn_db *db = calloc(1, sizeof *db);
  if (!db)
    return NULL;
  if (pthread_mutex_init(&db->mu, NULL) != 0) {
    free(db);
    return NULL;
  }
  db->stop_after = -1;
  return db;
}

void tn_db_set_fence(struct tn_db *db, const struct tn_fence *fence) {
  if (db)
    atomic_store(&db->fence, fence);
}

void tn_db_free(struct tn_db *db) {
  if (!db)
    return;
  for (struct conn *c = db->idle, *next; c; c = next) {
    next = c->next;
    PQfinish(c->pg);
    free(c);
  }
  for (int i = 0; i < RECORD_BUCKETS; i++)
    for (struct record *r = db->records[i], *next; r; r = next) {
      next = r->next;
      free(r);
    }
  for (struct op_count *o = db->ops, *next; o; o = next) {
    next = o->next;
    free(o);
  }
  pthread_mutex_destroy(&db->mu);
  free(db);
}

const char *tn_db_result_name(int rc) {
  switch (rc) {
  case 0:
    return "success";
  case TN_ETRANSPORT:
    return "unreachable";
  case TN_EUNAVAILABLE:
    return "unavailable";
  case TN_ECONFLICT:
  case TN_ETIMEOUT:
    return "conflict";
  case TN_ECANCELED:
    return "canceled";
  case TN_EEXISTS:
  case TN_EFORBIDDEN:
  case TN_EINVALID:
  case TN_ECONFIG:
    return "refused";
  default:
    return "error";
  }
}

/* Counts one call's result (an allocation failure loses the count, nothing else). */
static void count_op(struct tn_db *db, const char *server, const char *operation, int rc) {
  const char *result = tn_db_result_name(rc);
  pthread_mutex_lock(&db->mu);
  struct op_count *o = db->ops;
  while (o && !(o->operation == operation && o->result == result && strcmp(o->server, server) == 0))
    o = o->next;
  if (!o && (o = calloc(1, sizeof *o))) {
    snprintf(o->server, sizeof o->server, "%s", server);
    o->operation = operation;
    o->result = result;
    o->next = db->ops;
    db->ops = o;
  }
  if (o)
    o->n++;
  pthread_mutex_unlock(&db->mu);
}

void tn_db_foreach_op_count(struct tn_db *db, tn_db_op_count_fn fn, void *ud) {
  if (!db || !fn)
    return;
  pthread_mutex_lock(&db->mu);
  for (const struct op_count *o = db->ops; o; o = o->next)
    fn(ud, o->server, o->operation, o->result, o->n);
  pthread_mutex_unlock(&db->mu);
}

void tn_db_get_stats(struct tn_db *db, struct tn_db_stats *out) {
  pthread_mutex_lock(&db->mu);
  *out = db->stats;
  pthread_mutex_unlock(&db->mu);
}

void tn_db_test_stop_after(struct tn_db *db, int n) {
  pthread_mutex_lock(&db->mu);
  db->stop_after = n;
  pthread_mutex_unlock(&db->mu);
}

void tn_db_outcome_cleanup(struct tn_db_outcome *o) {
  if (!o)
    return;
  if (o->password) {
    OPENSSL_cleanse(o->password, strlen(o->password));
    free(o->password);
  }
  if (o->uri) {
    OPENSSL_cleanse(o->uri, strlen(o->uri));
    free(o->uri);
  }
  memset(o, 0, sizeof *o);
}

int tn_db_password_new(char *out, size_t n) {
  if (n < TN_DB_PASSWORD_LEN + 1)
    return -ERANGE;
  unsigned char raw[TN_DB_PASSWORD_BYTES];
  char b64[4 * ((TN_DB_PASSWORD_BYTES + 2) / 3) + 1];
  if (RAND_bytes(raw, sizeof raw) != 1)
    return TN_EUNAVAILABLE;
  EVP_EncodeBlock((unsigned char *)b64, raw, sizeof raw);
  size_t j = 0;
  for (size_t i = 0; b64[i] && b64[i] != '='; i++)
    out[j++] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
  out[j] = '\0';
  OPENSSL_cleanse(raw, sizeof raw);
  OPENSSL_cleanse(b64, sizeof b64);
  return 0;
}

/* ---- one call's state ------------------------------------------------------------------------ */

struct call {
  struct tn_db *db;
  const struct tn_db_server *srv;
  const char *tenant;
  unsigned char fp[SHA256_DIGEST_LENGTH];
  struct conn *maint;  /* the admin URI's database: roles, databases, sessions */
  struct conn *shared; /* the shared database: schemas */
  struct conn *other;  /* another database (DROP OWNED in teardown) */
  char maint_db[64];
  bool reused; /* a connection came from the idle list (it may be stale) */
  int queries, statements, operations;
};

static void count(struct call *c, int queries, int statements, int connects) {
  pthread_mutex_lock(&c->db->mu);
  c->db->stats.queries += (unsigned long long)queries;
  c->db->stats.statements += (unsigned long long)statements;
  c->db->stats.connects += (unsigned long long)connects;
  pthread_mutex_unlock(&c->db->mu);
  c->queries += queries;
  c->statements += statements;
}

static void digest(const char *const *parts, size_t n, const unsigned char *fp,
                   unsigned char out[SHA256_DIGEST_LENGTH]) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
    memset(out, 0, SHA256_DIGEST_LENGTH);
    EVP_MD_CTX_free(ctx);
    return;
  }
  if (fp)
    EVP_DigestUpdate(ctx, fp, SHA256_DIGEST_LENGTH);
  for (size_t i = 0; i < n; i++)
    EVP_DigestUpdate(ctx, parts[i] ? parts[i] : "\x01", strlen(parts[i] ? parts[i] : "\x01") + 1);
  EVP_DigestFinal_ex(ctx, out, NULL);
  EVP_MD_CTX_free(ctx);
}

/* The record of role's password on this call's server; password NULL: "no password". */
static void record_kv(struct call *c, const char *role, const char *password,
                      unsigned char key[SHA256_DIGEST_LENGTH], unsigned char value[SHA256_DIGEST_LENGTH]) {
  const char *k[] = {c->srv->name, role};
  digest(k, 2, NULL, key);
  const char *v[] = {role, password};
  digest(v, 2, c->fp, value);
}

/* Whether the last password this process set on role is password (NULL: cleared). */
static bool record_says(struct call *c, const char *role, const char *password) {
  unsigned char key[SHA256_DIGEST_LENGTH], value[SHA256_DIGEST_LENGTH];
  record_kv(c, role, password, key, value);
  bool same = false;
  pthread_mutex_lock(&c->db->mu);
  for (struct record *r = c->db->records[key[0] % RECORD_BUCKETS]; r; r = r->next)
    if (memcmp(r->key, key, sizeof key) == 0) {
      same = CRYPTO_memcmp(r->value, value, sizeof value) == 0;
      break;
    }
  pthread_mutex_unlock(&c->db->mu);
  return same;
}

/* Records (set) or forgets (!set) role's password. */
static void record_update(struct call *c, const char *role, const char *password, bool set) {
  unsigned char key[SHA256_DIGEST_LENGTH], value[SHA256_DIGEST_LENGTH];
  record_kv(c, role, password, key, value);
  struct record *fresh = set ? calloc(1, sizeof *fresh) : NULL, *gone = NULL;
  pthread_mutex_lock(&c->db->mu);
  struct record **pp = &c->db->records[key[0] % RECORD_BUCKETS];
  for (; *pp; pp = &(*pp)->next)
    if (memcmp((*pp)->key, key, sizeof key) == 0)
      break;
  if (*pp && set) {
    memcpy((*pp)->value, value, sizeof value);
  } else if (*pp) {
    gone = *pp;
    *pp = gone->next;
  } else if (fresh) {
    memcpy(fresh->key, key, sizeof key);
    memcpy(fresh->value, value, sizeof value);
    *pp = fresh;
    fresh = NULL;
  }
  pthread_mutex_unlock(&c->db->mu);
  free(fresh);
  free(gone);
}

static const char *srv_sslmode(const struct tn_db_server *srv) {
  return srv->sslmode ? srv->sslmode : "verify-full";
}
static int srv_port(const struct tn_db_server *srv) { return srv->port > 0 ? srv->port : 5432; }

/* The digest of everything a connection is made from: a changed Secret means new connections. */
static void fingerprint(const struct tn_db_server *srv, unsigned char out[SHA256_DIGEST_LENGTH]) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  char port[16];
  snprintf(port, sizeof port, "%d", srv_port(srv));
  const char *parts[] = {srv->admin_uri ? srv->admin_uri : "", srv->ca_pem ? srv->ca_pem : "",
                         srv_sslmode(srv), srv->host ? srv->host : "", port};
  if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
      EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1); /* with the NUL: unambiguous */
    EVP_DigestFinal_ex(ctx, out, NULL);
  } else {
    memset(out, 0, SHA256_DIGEST_LENGTH);
  }
  EVP_MD_CTX_free(ctx);
}

/* Opens a connection to dbname ("" = the admin URI's database). */
static int open_conn(struct call *c, const char *dbname, struct conn **out, struct tn_error *err) {
  const struct tn_db_server *srv = c->srv;
  PQconninfoOption *opts = NULL;
  char *perr = NULL;
  char ca_path[512] = "";
  struct conn *cn = NULL;
  int rc = 0;
  *out = NULL;
  if (!srv->admin_uri || !*srv->admin_uri)
    return tn_error_set(err, TN_ECONFIG, "database server %s: the admin Secret has no key uri", srv->name);
  opts = PQconninfoParse(srv->admin_uri, &perr);
  if (!opts) {
    /* libpq's message may quote part of the string, password included: withhold it. */
    PQfreemem(perr);
    return tn_error_set(
        err, TN_ECONFIG,
        "database server %s: the admin Secret's uri is not a libpq URI or connection string "
        "(postgresql://user:password@host:port/database); libpq's message is withheld as it may "
        "quote the password",
        srv->name);
  }
  bool has_host = false, has_timeout = false, has_app = false, has_options = false;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val || !*o->val)
      continue;
    has_host |= strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0;
    has_timeout |= strcmp(o->keyword, "connect_timeout") == 0;
    has_app |= strcmp(o->keyword, "application_name") == 0;
    has_options |= strcmp(o->keyword, "options") == 0;
  }
  PQconninfoFree(opts);

  const char *keys[16], *vals[16];
  int k = 0;
  char port[16];
  snprintf(port, sizeof port, "%d", srv_port(srv));
  keys[k] = "dbname", vals[k++] = srv->admin_uri; /* expanded: later keywords override it */
  if (dbname && *dbname)
    keys[k] = "dbname", vals[k++] = dbname;
  if (!has_host && srv->host) {
    keys[k] = "host", vals[k++] = srv->host;
    keys[k] = "port", vals[k++] = port;
  }
  keys[k] = "sslmode", vals[k++] = srv_sslmode(srv);
  if (srv->ca_pem && *srv->ca_pem) {
    int w = tn_pg_write_ca_file(srv->ca_pem, ca_path, sizeof ca_path);
    if (w) {
      ca_path[0] = '\0';
      rc = tn_error_set(err, w, "database server %s: writing the CA bundle to a temporary file: %s",
                        srv->name, strerror(-w));
      goto out;
    }
    keys[k] = "sslrootcert", vals[k++] = ca_path;
  }
  if (!has_timeout)
    keys[k] = "connect_timeout", vals[k++] = CONNECT_TIMEOUT;
  if (!has_app)
    keys[k] = "application_name", vals[k++] = "tenancy-operator";
  if (!has_options)
    keys[k] = "options", vals[k++] = SESSION_OPTIONS;
  keys[k] = NULL, vals[k] = NULL;

  cn = calloc(1, sizeof *cn);
  if (!cn) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  snprintf(cn->server, sizeof cn->server, "%s", srv->name);
  snprintf(cn->dbname, sizeof cn->dbname, "%s", dbname ? dbname : "");
  memcpy(cn->fp, c->fp, sizeof cn->fp);
  cn->pg = PQconnectdbParams(keys, vals, 1);
  count(c, 0, 0, 1);
  if (!cn->pg) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  if (PQstatus(cn->pg) != CONNECTION_OK) {
    char msg[600];
    tn_pg_one_line(PQerrorMessage(cn->pg), msg, sizeof msg);
    rc = tn_error_set(err, TN_ETRANSPORT, "database server %s: cannot connect%s%s: %s", srv->name,
                      dbname && *dbname ? " to database " : "", dbname && *dbname ? dbname : "", msg);
    goto out;
  }
  PQsetNoticeProcessor(cn->pg, tn_pg_quiet_notices, NULL);
  *out = cn;
  cn = NULL;
out:
  if (ca_path[0])
    unlink(ca_path); /* libpq read it during the handshake; a reconnect writes it again */
  if (cn) {
    PQfinish(cn->pg);
    free(cn);
  }
  return rc;
}

/* A connection to dbname from the idle list, or a new one. */
static int checkout(struct call *c, const char *dbname, struct conn **out, struct tn_error *err) {
  struct conn *found = NULL, *stale = NULL;
  pthread_mutex_lock(&c->db->mu);
  for (struct conn **pp = &c->db->idle; *pp;) {
    struct conn *cn = *pp;
    bool same_server = strcmp(cn->server, c->srv->name) == 0;
    if (same_server && memcmp(cn->fp, c->fp, sizeof c->fp) != 0) {
      *pp = cn->next; /* made from an older Secret: close it */
      cn->next = stale;
      stale = cn;
      continue;
    }
    if (!found && same_server && strcmp(cn->dbname, dbname) == 0) {
      *pp = cn->next;
      found = cn;
      continue;
    }
    pp = &cn->next;
  }
  pthread_mutex_unlock(&c->db->mu);
  for (struct conn *cn = stale, *next; cn; cn = next) {
    next = cn->next;
    PQfinish(cn->pg);
    free(cn);
  }
  if (found && PQstatus(found->pg) == CONNECTION_OK) {
    found->next = NULL;
    c->reused = true;
    *out = found;
    return 0;
  }
  if (found) {
    PQfinish(found->pg);
    free(found);
  }
  return open_conn(c, dbname, out, err);
}

/* Puts cn back on the idle list when it is healthy and idle, else closes it. */
static void checkin(struct call *c, struct conn *cn, bool discard) {
  if (!cn)
    return;
  if (!discard && PQstatus(cn->pg) == CONNECTION_OK && PQtransactionStatus(cn->pg) == PQTRANS_IDLE) {
    pthread_mutex_lock(&c->db->mu);
    int same = 0, all = 0;
    for (struct conn *x = c->db->idle; x; x = x->next, all++)
      same += strcmp(x->server, cn->server) == 0 && strcmp(x->dbname, cn->dbname) == 0;
    if (same < IDLE_PER_KEY && all < IDLE_MAX) {
      cn->next = c->db->idle;
      c->db->idle = cn;
      cn = NULL;
    }
    pthread_mutex_unlock(&c->db->mu);
  }
  if (cn) {
    PQfinish(cn->pg);
    free(cn);
  }
}

static void release_all(struct call *c, bool discard) {
  checkin(c, c->maint, discard);
  checkin(c, c->shared, discard);
  checkin(c, c->other, true); /* a database visited once (DROP OWNED): not worth keeping */
  c->maint = c->shared = c->other = NULL;
}

/* The connection for operations in database dbname ("" = the admin's own). */
static int conn_for(struct call *c, const char *dbname, PGconn **out, struct tn_error *err) {
  if (!*dbname || strcmp(dbname, c->maint_db) == 0) {
    *out = c->maint->pg;
    return 0;
  }
  struct conn **slot =
      strcmp(dbname, c->srv->shared_database ? c->srv->shared_database : TN_DB_SHARED_DATABASE) == 0
          ? &c->shared
          : &c->other;
  if (*slot && strcmp((*slot)->dbname, dbname) != 0) {
    checkin(c, *slot, false);
    *slot = NULL;
  }
  if (!*slot) {
    int rc = checkout(c, dbname, slot, err);
    if (rc)
      return rc;
  }
  *out = (*slot)->pg;
  return 0;
}

/* ---- errors ---------------------------------------------------------------------------------- */

/* Maps a failed result (res may be NULL) to a code, and fills err with what was being done and the
 * server's words. */
static int pg_fail(struct call *c, PGconn *pg, PGresult *res, const char *what, struct tn_error *err) {
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  char msg[600];
  tn_pg_one_line(primary ? primary : PQerrorMessage(pg), msg, sizeof msg);
  int code = TN_EAPI;
  if (PQstatus(pg) != CONNECTION_OK || (state && strncmp(state, "08", 2) == 0))
    code = TN_ETRANSPORT;
  else if (!state)
    code = TN_EAPI;
  else if (strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 ||
           strncmp(state, "53", 2) == 0)
    code = TN_EUNAVAILABLE;
  else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55006") == 0 ||
           (strcmp(state, "XX000") == 0 && strstr(msg, "concurrently")) || strcmp(state, "42710") == 0 ||
           strcmp(state, "42P06") == 0 || strcmp(state, "42P04") == 0 || strcmp(state, "23505") == 0)
    code = TN_ECONFLICT; /* 42710/42P06/42P04/23505: created meanwhile by someone else; the next pass looks
                            again */
  else if (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0)
    code = TN_ETIMEOUT;
  else if (strcmp(state, "42501") == 0)
    code = TN_EFORBIDDEN;
  tn_error_set(err, code, "database server %s: %s: %s%s%s%s", c->srv->name, what, msg,
               state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "");
  return code;
}

/* What a statement counts as in the stats. */
enum kind { QUERY, CHANGE, CONTROL /* BEGIN, COMMIT, the advisory lock: not counted */ };

/* Runs one statement. Returns the result (PQclear it) or NULL with err filled. */
static PGresult *run(struct call *c, PGconn *pg, enum kind kind, const char *what, const char *sql,
                     int nparams, const char *const *params, struct tn_error *err) {
  PGresult *res = nparams ? PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0) : PQexec(pg, sql);
  count(c, kind == QUERY, kind == CHANGE, 0);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
    return res;
  pg_fail(c, pg, res, what, err);
  PQclear(res);
  return NULL;
}

static bool bool_at(PGresult *res, int row, int col) {
  const char *v = PQgetvalue(res, row, col);
  return v && v[0] == 't';
}

/* ---- observing ---------------------------------------------------------------------------------- */

static const char Q_ROLE[] =
    "SELECT current_setting('is_superuser') = 'on', current_database(), r.oid IS NOT NULL,"
    " coalesce(shobj_description(r.oid, 'pg_authid'), ''), coalesce(r.rolcanlogin, false),"
    " coalesce(r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls, false),"
    " coalesce(r.rolconnlimit, -1),"
    " coalesce(EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles me ON me.oid = m.member"
    "                  WHERE m.roleid = r.oid AND me.rolname = current_user), false),"
    " (SELECT count(*) FROM pg_stat_activity s WHERE r.oid IS NOT NULL AND s.usesysid = r.oid"
    "  AND s.pid <> pg_backend_pid())"
    " FROM (SELECT 1) one LEFT JOIN pg_roles r ON r.rolname = $1";

static const char Q_PASSWORD[] = "SELECT rolpassword FROM pg_authid WHERE rolname = $1";

static const char Q_DATABASES[] =
    "SELECT d.datname, coalesce(d.datdba = r.oid, false),"
    " EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
    "         WHERE a.grantee = 0 AND a.privilege_type IN ('CONNECT', 'TEMPORARY')),"
    " EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
    "         WHERE a.grantee = r.oid AND a.privilege_type = 'CONNECT'),"
    " (SELECT count(*) FROM pg_stat_activity s WHERE s.datid = d.oid AND s.backend_type = 'client backend'"
    "  AND s.pid <> pg_backend_pid() AND s.usesysid IN (SELECT oid FROM pg_roles)"
    "  AND NOT has_database_privilege(s.usesysid, d.oid, 'CONNECT'))"
    " FROM pg_database d LEFT JOIN pg_roles r ON r.rolname = $3 WHERE d.datname IN ($1, $2)";

static const char Q_SCHEMA[] =
    "SELECT n.oid IS NOT NULL, coalesce(n.nspowner = r.oid, false),"
    " EXISTS (SELECT 1 FROM pg_namespace p, aclexplode(coalesce(p.nspacl, acldefault('n', p.nspowner))) a"
    "         WHERE p.nspname = 'public' AND a.grantee = 0 AND a.privilege_type IN ('CREATE', 'USAGE'))"
    " FROM (SELECT 1) one LEFT JOIN pg_namespace n ON n.nspname = $1 LEFT JOIN pg_roles r ON r.rolname = $1";

static const char Q_OWNING[] =
    "SELECT DISTINCT coalesce(d.datname, '') FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid"
    " WHERE s.refclassid = 'pg_authid'::regclass"
    " AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1) ORDER BY 1";

/* Fills *o from the catalogs. password: what the role should hold (NULL: only whether it holds
 * one matters). schemas: read the shared database's schemas; owning: read pg_shdepend. */
static int observe(struct call *c, const struct tn_db_names *nm, const char *password, bool schemas,
                   bool owning, struct tn_db_observed *o, struct tn_error *err) {
  PGresult *res = NULL;
  int rc = 0;
  PGconn *pg = c->maint->pg;
  memset(o, 0, sizeof *o);
  const char *p1[] = {nm->role};
  if (!(res = run(c, pg, QUERY, "reading the tenant role", Q_ROLE, 1, p1, err)))
    return err->code;
  o->admin_superuser = bool_at(res, 0, 0);
  snprintf(c->maint_db, sizeof c->maint_db, "%s", PQgetvalue(res, 0, 1));
  o->role_exists = bool_at(res, 0, 2);
  o->role_managed = strcmp(PQgetvalue(res, 0, 3), nm->marker) == 0;
  o->role_login = bool_at(res, 0, 4);
  o->role_privileged = bool_at(res, 0, 5);
  o->role_connection_limit = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
  o->admin_member = bool_at(res, 0, 7);
  o->role_sessions = atoi(PQgetvalue(res, 0, 8));
  PQclear(res);
  res = NULL;

  if (o->role_exists) {
    res = PQexecParams(pg, Q_PASSWORD, 1, NULL, p1, NULL, NULL, 0);
    count(c, 1, 0, 0);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
      if (PQgetisnull(res, 0, 0))
        o->password = TN_DB_PASSWORD_NONE;
      else if (password && tn_scram_verifier_matches(PQgetvalue(res, 0, 0), password))
        o->password = TN_DB_PASSWORD_MATCHES;
      else
        o->password = TN_DB_PASSWORD_DIFFERS;
    } else if (state && strcmp(state, "42501") == 0) {
      /* Not a superuser and no SELECT on pg_authid: trust what this process set last. */
      o->password = TN_DB_PASSWORD_UNKNOWN;
      if (record_says(c, nm->role, password))
        o->password = password ? TN_DB_PASSWORD_MATCHES : TN_DB_PASSWORD_NONE;
    } else if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
      o->role_exists = false; /* dropped since the first query */
    } else {
      rc = pg_fail(c, pg, res, "reading the tenant role's password verifier", err);
      goto out;
    }
    PQclear(res);
    res = NULL;
  }

  const char *p3[] = {nm->tenant_database, nm->shared_database, nm->role};
  if (!(res = run(c, pg, QUERY, "reading the databases", Q_DATABASES, 3, p3, err)))
    return err->code;
  for (int i = 0; i < PQntuples(res); i++) {
    const char *name = PQgetvalue(res, i, 0);
    struct tn_db_observed_database *d =
        strcmp(name, nm->tenant_database) == 0 ? &o->tenant_db : &o->shared_db;
    d->exists = true;
    d->owned = bool_at(res, i, 1);
    d->public_access = bool_at(res, i, 2);
    d->role_connect = bool_at(res, i, 3);
    d->foreign_sessions = atoi(PQgetvalue(res, i, 4));
  }
  PQclear(res);
  res = NULL;

  if (schemas && o->shared_db.exists) {
    PGconn *spg = NULL;
    if ((rc = conn_for(c, nm->shared_database, &spg, err)))
      goto out;
    if (!(res = run(c, spg, QUERY, "reading the tenant schema", Q_SCHEMA, 1, p1, err)))
      return err->code;
    o->schema_exists = bool_at(res, 0, 0);
    o->schema_owned = bool_at(res, 0, 1);
    o->public_schema_open = bool_at(res, 0, 2);
    PQclear(res);
    res = NULL;
  }

  if (owning && o->role_exists) {
    if (!(res = run(c, pg, QUERY, "reading what the tenant role owns", Q_OWNING, 1, p1, err)))
      return err->code;
    for (int i = 0; i < PQntuples(res) && o->n_owning_databases < TN_DB_MAX_OWNING_DATABASES; i++)
      snprintf(o->owning_databases[o->n_owning_databases++], 64, "%s", PQgetvalue(res, i, 0));
    PQclear(res);
    res = NULL;
  }
out:
  PQclear(res);
  return rc;
}

/* ---- executing -------------------------------------------------------------------------------- */

/* Runs sqls[0..n) as one transaction (n > 1 or lock), or one statement. lock: take the advisory
 * lock that serialises GRANT/REVOKE on rows several tenants share ("tuple concurrently updated"). */
static int exec_sql(struct call *c, PGconn *pg, const char *what, const char *const *sqls, int n, bool lock,
                    struct tn_error *err) {
  bool txn = n > 1 || lock;
  PGresult *res = NULL;
  if (txn) {
    if (!(res = run(c, pg, CONTROL, what, "BEGIN", 0, NULL, err)))
      return err->code;
    PQclear(res);
    if (lock) {
      if (!(res = run(c, pg, CONTROL, what, "SELECT pg_advisory_xact_lock(" DDL_LOCK_KEY ")", 0, NULL, err)))
        goto fail;
      PQclear(res);
    }
  }
  for (int i = 0; i < n; i++) {
    if (!(res = run(c, pg, CHANGE, what, sqls[i], 0, NULL, err)))
      goto fail;
    PQclear(res);
  }
  if (txn) {
    if (!(res = run(c, pg, CONTROL, what, "COMMIT", 0, NULL, err)))
      goto fail;
    PQclear(res);
  }
  return 0;
fail:
  if (txn && PQstatus(pg) == CONNECTION_OK && PQtransactionStatus(pg) != PQTRANS_IDLE)
    PQclear(PQexec(pg, "ROLLBACK"));
  return err->code;
}

/* Runs a parameterised statement that ends sessions. */
static int exec_terminate(struct call *c, PGconn *pg, const char *what, const char *sql, const char *param,
                          struct tn_error *err) {
  const char *p[] = {param};
  PGresult *res = run(c, pg, CHANGE, what, sql, 1, p, err);
  if (!res)
    return err->code;
  PQclear(res);
  return 0;
}

static const char SQL_TERMINATE_ROLE[] =
    "SELECT pg_terminate_backend(pid, " TERMINATE_WAIT_MS ") FROM pg_stat_activity"
    " WHERE usename = $1 AND pid <> pg_backend_pid()";
static const char SQL_TERMINATE_FOREIGN[] =
    "SELECT pg_terminate_backend(s.pid, " TERMINATE_WAIT_MS ") FROM pg_stat_activity s"
    " JOIN pg_database d ON d.oid = s.datid WHERE d.datname = $1 AND s.backend_type = 'client backend'"
    " AND s.pid <> pg_backend_pid() AND s.usesysid IN (SELECT oid FROM pg_roles)"
    " AND NOT has_database_privilege(s.usesysid, d.oid, 'CONNECT')";

/* Executes one operation of the plan. */
static int exec_op(struct call *c, const struct tn_db_names *nm, const struct tn_db_op *op,
                   const char *password, struct tn_error *err) {
  PGconn *mpg = c->maint->pg, *pg = mpg;
  char *role = NULL, *dbid = NULL, *lit = NULL, *verifier = NULL;
  char sql[2][512];
  const char *sqls[2] = {sql[0], sql[1]};
  char what[200];
  int rc = 0;
  bool in_db = op->kind == TN_DB_OP_REVOKE_PUBLIC_SCHEMA || op->kind == TN_DB_OP_CREATE_SCHEMA ||
               op->kind == TN_DB_OP_DROP_SCHEMA || op->kind == TN_DB_OP_DROP_OWNED;
  if ((rc = tn_fence_check(atomic_load(&c->db->fence), tn_db_op_name(op->kind), err)))
    return rc;
  if (in_db && (rc = conn_for(c, op->database, &pg, err)))
    return rc;
  snprintf(what, sizeof what, "%s (role %s%s%s)", tn_db_op_name(op->kind), nm->role,
           op->database[0] ? ", database " : "", op->database);
  role = PQescapeIdentifier(pg, nm->role, strlen(nm->role));
  dbid = op->database[0] ? PQescapeIdentifier(pg, op->database, strlen(op->database)) : NULL;
  if (!role || (op->database[0] && !dbid)) {
    rc = pg_fail(c, pg, NULL, what, err);
    goto out;
  }
  switch (op->kind) {
  case TN_DB_OP_CREATE_DATABASE: {
    snprintf(sql[0], sizeof sql[0], "CREATE DATABASE %s%s%s", dbid, op->with_owner ? " OWNER " : "",
             op->with_owner ? role : "");
    PGresult *res = PQexec(pg, sql[0]);
    count(c, 0, 1, 0);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (res && PQresultStatus(res) == PGRES_COMMAND_OK)
      rc = 0;
    else if (state && (strcmp(state, "42P04") == 0 || strcmp(state, "23505") == 0) && !op->with_owner)
      rc = 0; /* the shared database, created meanwhile by another worker (23505: at the same instant) */
    else
      rc = pg_fail(c, pg, res, what, err);
    PQclear(res);
    goto out;
  }
  case TN_DB_OP_REVOKE_DATABASE_PUBLIC:
    snprintf(sql[0], sizeof sql[0], "REVOKE CONNECT, TEMPORARY ON DATABASE %s FROM PUBLIC", dbid);
    rc = exec_sql(c, pg, what, sqls, 1, true, err);
    break;
  case TN_DB_OP_REVOKE_PUBLIC_SCHEMA:
    snprintf(sql[0], sizeof sql[0], "REVOKE CREATE, USAGE ON SCHEMA public FROM PUBLIC");
    rc = exec_sql(c, pg, what, sqls, 1, true, err);
    break;
  case TN_DB_OP_CREATE_ROLE:
    if (!(lit = PQescapeLiteral(pg, nm->marker, strlen(nm->marker)))) {
      rc = pg_fail(c, pg, NULL, what, err);
      goto out;
    }
    snprintf(sql[0], sizeof sql[0],
             "CREATE ROLE %s NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
             "CONNECTION LIMIT %lld",
             role, op->value);
    snprintf(sql[1], sizeof sql[1], "COMMENT ON ROLE %s IS %s", role, lit);
    rc = exec_sql(c, pg, what, sqls, 2, false, err); /* one transaction: never a role without its marker */
    break;
  case TN_DB_OP_GRANT_ROLE_TO_ADMIN:
    snprintf(sql[0], sizeof sql[0], "GRANT %s TO CURRENT_USER", role);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  case TN_DB_OP_RESET_ROLE_ATTRIBUTES:
    snprintf(sql[0], sizeof sql[0],
             "ALTER ROLE %s NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS", role);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  case TN_DB_OP_SET_CONNECTION_LIMIT:
    snprintf(sql[0], sizeof sql[0], "ALTER ROLE %s CONNECTION LIMIT %lld", role, op->value);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  case TN_DB_OP_SET_PASSWORD: {
    /* The verifier is computed here (libpq, SCRAM-SHA-256): the server never sees the password, so
     * no statement log can hold it. */
    verifier = PQencryptPasswordConn(pg, password, nm->role, "scram-sha-256");
    if (!verifier || !(lit = PQescapeLiteral(pg, verifier, strlen(verifier)))) {
      rc = pg_fail(c, pg, NULL, what, err);
      goto out;
    }
    char *big = NULL;
    size_t blen = strlen(role) + strlen(lit) + 32;
    if (!(big = malloc(blen))) {
      rc = tn_error_set(err, -ENOMEM, "out of memory");
      goto out;
    }
    snprintf(big, blen, "ALTER ROLE %s PASSWORD %s", role, lit);
    const char *one[] = {big};
    rc = exec_sql(c, pg, what, one, 1, false, err);
    OPENSSL_cleanse(big, blen);
    free(big);
    break;
  }
  case TN_DB_OP_CLEAR_PASSWORD:
    snprintf(sql[0], sizeof sql[0], "ALTER ROLE %s PASSWORD NULL", role);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  case TN_DB_OP_CREATE_SCHEMA:
    snprintf(sql[0], sizeof sql[0], "CREATE SCHEMA %s AUTHORIZATION %s", role, role);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  case TN_DB_OP_GRANT_CONNECT:
    snprintf(sql[0], sizeof sql[0], "GRANT CONNECT ON DATABASE %s TO %s", dbid, role);
    rc = exec_sql(c, pg, what, sqls, 1, true, err);
    break;
  case TN_DB_OP_REVOKE_CONNECT:
    snprintf(sql[0], sizeof sql[0], "REVOKE CONNECT ON DATABASE %s FROM %s", dbid, role);
    rc = exec_sql(c, pg, what, sqls, 1, true, err);
    break;
  case TN_DB_OP_TERMINATE_FOREIGN_SESSIONS:
    rc = exec_terminate(c, pg, what, SQL_TERMINATE_FOREIGN, op->database, err);
    break;
  case TN_DB_OP_SET_LOGIN:
    snprintf(sql[0], sizeof sql[0], "ALTER ROLE %s LOGIN", role);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  case TN_DB_OP_SET_NOLOGIN:
    snprintf(sql[0], sizeof sql[0], "ALTER ROLE %s NOLOGIN", role);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  case TN_DB_OP_TERMINATE_ROLE_SESSIONS:
    rc = exec_terminate(c, pg, what, SQL_TERMINATE_ROLE, nm->role, err);
    break;
  case TN_DB_OP_DROP_SCHEMA:
    snprintf(sql[0], sizeof sql[0], "DROP SCHEMA IF EXISTS %s CASCADE", role);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  case TN_DB_OP_DROP_DATABASE:
    snprintf(sql[0], sizeof sql[0], "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbid);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  case TN_DB_OP_DROP_OWNED:
    snprintf(sql[0], sizeof sql[0], "DROP OWNED BY %s", role);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  case TN_DB_OP_DROP_ROLE:
    snprintf(sql[0], sizeof sql[0], "DROP ROLE IF EXISTS %s", role);
    rc = exec_sql(c, pg, what, sqls, 1, false, err);
    break;
  }
out:
  if (verifier) {
    OPENSSL_cleanse(verifier, strlen(verifier));
    PQfreemem(verifier);
  }
  PQfreemem(lit);
  PQfreemem(role);
  PQfreemem(dbid);
  return rc;
}

static int stop_after(struct tn_db *db) {
  pthread_mutex_lock(&db->mu);
  int n = db->stop_after;
  pthread_mutex_unlock(&db->mu);
  return n;
}

static int exec_plan(struct call *c, const struct tn_db_names *nm, const struct tn_db_plan *plan,
                     const char *password, struct tn_error *err) {
  struct tn_log_fields lf = TN_LOG_FIELDS_INIT;
  lf.controller = "database";
  lf.tenant = c->tenant;
  int limit = stop_after(c->db);
  for (int i = 0; i < plan->n; i++) {
    const struct tn_db_op *op = &plan->ops[i];
    if (limit >= 0 && c->operations >= limit)
      return tn_error_set(err, TN_ECANCELED, "database server %s: stopped after %d operation(s) (test hook)",
                          c->srv->name, c->operations);
    int rc = exec_op(c, nm, op, password, err);
    if (rc) {
      tn_log(TN_LOG_WARN, &lf, "%s", err->message);
      return rc;
    }
    c->operations++;
    if (op->kind == TN_DB_OP_SET_PASSWORD)
      record_update(c, nm->role, password, true);
    else if (op->kind == TN_DB_OP_CLEAR_PASSWORD || op->kind == TN_DB_OP_CREATE_ROLE)
      record_update(c, nm->role, NULL, true);
    else if (op->kind == TN_DB_OP_DROP_ROLE)
      record_update(c, nm->role, NULL, false);
    tn_log(TN_LOG_INFO, &lf, "database server %s: %s (role %s%s%s)", c->srv->name, tn_db_op_name(op->kind),
           nm->role, op->database[0] ? ", database " : "", op->database);
  }
  return 0;
}

/* ---- the calls -------------------------------------------------------------------------------- */

static void outcome_init(struct tn_db_outcome *out, const struct tn_db_server *srv) {
  snprintf(out->server, sizeof out->server, "%s", srv->name ? srv->name : "");
  snprintf(out->host, sizeof out->host, "%s", srv->host ? srv->host : "");
  out->port = srv_port(srv);
  snprintf(out->sslmode, sizeof out->sslmode, "%s", srv_sslmode(srv));
}

static int check_server(const struct tn_db_server *srv, struct tn_error *err) {
  if (!srv || !srv->name || !*srv->name)
    return tn_error_set(err, TN_EINVALID, "database server without a name");
  if (!srv->admin_uri || !*srv->admin_uri)
    return tn_error_set(err, TN_ECONFIG, "database server %s: the admin Secret has no key uri", srv->name);
  if (!srv->host || !*srv->host)
    return tn_error_set(err, TN_ECONFIG, "database server %s has no host", srv->name);
  return 0;
}

/* One attempt of a converge (teardown: d == NULL). */
static int attempt(struct call *c, const struct tn_db_names *nm, const struct tn_db_desired *d,
                   const char *password, bool *foreign, struct tn_error *err) {
  struct tn_db_observed o;
  struct tn_db_plan plan;
  int rc = checkout(c, "", &c->maint, err);
  if (rc)
    return rc;
  bool teardown = d == NULL;
  rc = observe(c, nm, password, teardown || nm->mode == TN_ISOLATION_SHARED, teardown, &o, err);
  if (rc)
    return rc;
  if (teardown) {
    tn_db_plan_teardown(nm, &o, &plan, foreign);
  } else if ((rc = tn_db_plan_converge(d, &o, &plan, err))) {
    tn_error_prefix(err, "database server %s", c->srv->name);
    return rc;
  }
  return exec_plan(c, nm, &plan, password, err);
}

/* Runs attempt() once, and once more on fresh connections when a cached one turned out dead (the
 * server restarted since it was cached). */
static int run_call(struct call *c, const struct tn_db_names *nm, const struct tn_db_desired *d,
                    const char *password, bool *foreign, struct tn_error *err) {
  pthread_mutex_lock(&c->db->mu);
  c->db->stats.converges++;
  pthread_mutex_unlock(&c->db->mu);
  fingerprint(c->srv, c->fp);
  int rc = attempt(c, nm, d, password, foreign, err);
  if (rc == TN_ETRANSPORT || rc == TN_EUNAVAILABLE) {
    bool retry = c->reused;
    release_all(c, true);
    if (retry) {
      c->reused = false;
      tn_error_clear(err);
      rc = attempt(c, nm, d, password, foreign, err);
      if (rc == TN_ETRANSPORT || rc == TN_EUNAVAILABLE)
        release_all(c, true);
    }
  }
  release_all(c, false); /* checkin closes what is broken or mid-transaction */
  count_op(c->db, c->srv->name ? c->srv->name : "", d ? "converge" : "teardown", rc);
  return rc;
}

int tn_db_converge(struct tn_db *db, const struct tn_db_server *srv, const struct tn_db_tenant *t,
                   struct tn_db_outcome *out, struct tn_error *err) {
  struct tn_db_desired d;
  char generated[TN_DB_PASSWORD_LEN + 1] = "";
  const char *password = NULL;
  int rc = check_server(srv, err);
  if (rc)
    return rc;
  outcome_init(out, srv);
  out->credentials_version = t->credentials_version;
  if ((rc = tn_db_desired_for(t->id, t->mode, t->state, t->connections, srv->shared_database, &d, err)))
    return rc;
  out->names = d.names;
  if (d.password) {
    if (t->password) {
      if (!tn_db_password_valid(t->password))
        return tn_error_set(
            err, TN_EINVALID,
            "the stored database password of tenant %s is not 1 to %d printable ASCII characters; "
            "remove it to have a new one generated",
            t->id, TN_DB_PASSWORD_MAX);
      password = t->password;
    } else {
      if ((rc = tn_db_password_new(generated, sizeof generated)))
        return tn_error_set(err, rc, "generating a database password: the random generator failed");
      password = generated;
    }
  }
  struct call c = {.db = db, .srv = srv, .tenant = t->id};
  rc = run_call(&c, &d.names, &d, password, NULL, err);
  out->operations = c.operations;
  out->statements = c.statements;
  if (rc == 0 && password) {
    out->password = strdup(password);
    out->uri =
        tn_db_uri(d.names.role, password, srv->host, srv_port(srv), d.names.database, srv_sslmode(srv));
    if (!out->password || !out->uri)
      rc = tn_error_set(err, -ENOMEM, "out of memory (or server %s has a host a URI cannot hold)", srv->name);
    out->password_generated = password == generated;
    if (out->password_generated)
      out->credentials_version++;
  }
  OPENSSL_cleanse(generated, sizeof generated);
  return rc;
}

int tn_db_password_check(struct tn_db *db, const struct tn_db_server *srv, const char *tenant_id,
                         const char *password, bool *matches, struct tn_error *err) {
  struct tn_db_names nm;
  struct tn_db_observed o;
  *matches = false;
  int rc = check_server(srv, err);
  if (rc)
    return rc;
  if (!password || !tn_db_password_valid(password))
    return 0;
  if ((rc = tn_db_names_for(tenant_id, TN_ISOLATION_SHARED, srv->shared_database, &nm, err)))
    return rc;
  struct call c = {.db = db, .srv = srv, .tenant = tenant_id};
  fingerprint(srv, c.fp);
  for (int tries = 0; tries < 2; tries++) { /* once more on a fresh connection if a cached one died */
    rc = checkout(&c, "", &c.maint, err);
    if (rc == 0)
      rc = observe(&c, &nm, password, false, false, &o, err);
    bool dead = rc == TN_ETRANSPORT || rc == TN_EUNAVAILABLE;
    bool again = dead && c.reused && tries == 0;
    release_all(&c, dead);
    if (!again)
      break;
    c.reused = false;
    tn_error_clear(err);
  }
  count_op(db, srv->name ? srv->name : "", "password_check", rc);
  if (rc == 0)
    *matches = o.role_exists && o.role_managed && o.password == TN_DB_PASSWORD_MATCHES;
  return rc;
}

int tn_db_teardown(struct tn_db *db, const struct tn_db_server *srv, const char *tenant_id,
                   struct tn_db_outcome *out, struct tn_error *err) {
  struct tn_db_outcome local = {0};
  struct tn_db_names nm;
  if (!out)
    out = &local;
  int rc = check_server(srv, err);
  if (rc)
    return rc;
  outcome_init(out, srv);
  if ((rc = tn_db_names_for(tenant_id, TN_ISOLATION_SHARED, srv->shared_database, &nm, err)))
    return rc;
  out->names = nm;
  struct call c = {.db = db, .srv = srv, .tenant = tenant_id};
  bool foreign = false;
  rc = run_call(&c, &nm, NULL, NULL, &foreign, err);
  out->operations = c.operations;
  out->statements = c.statements;
  out->foreign = foreign;
  tn_db_outcome_cleanup(&local);
  return rc;
}
