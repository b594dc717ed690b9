/* database.h - a tenant's PostgreSQL objects converged with libpq: observe the catalogs, plan
 * the difference (tenancy/dbplan.h), execute only that; tear them down on delete. Holds a small
 * connection cache per server that reconcile workers share. See docs/internals/database.md. */
#ifndef TN_CONVERGE_DATABASE_H
#define TN_CONVERGE_DATABASE_H

#include <stdbool.h>
#include <stddef.h>

#include "tenancy/dbplan.h"
#include "tenancy/tenant.h"
#include "util/error.h"

/* A server of a Region's spec.databaseServers, with its Secrets already read. Every string is
 * borrowed for the call. */
struct tn_db_server {
  const char *name;            /* databaseServers[].name: messages and the cache key */
  const char *host;            /* the tenant URI's host; also the admin connection's when its URI has none */
  int port;                    /* the tenant URI's port (and the admin's as host); 0 = 5432 */
  const char *sslmode;         /* libpq sslmode of every connection, admin and tenant; NULL = verify-full */
  const char *ca_pem;          /* caSecretRef's ca.crt (PEM) or NULL: the admin connection's sslrootcert
                                  (written to a private temporary file for the connect, then removed) */
  const char *admin_uri;       /* adminSecretRef's key `uri`: a libpq URI or key=value string of a role
                                  with CREATEROLE and CREATEDB. Never logged nor put in a message */
  const char *shared_database; /* the shared-mode database; NULL = TN_DB_SHARED_DATABASE ("tenants") */
};

/* What the reconcile knows of the tenant. Strings borrowed for the call. */
struct tn_db_tenant {
  const char *id;                /* metadata.name: a DNS label (anything else is refused) */
  enum tn_isolation mode;        /* status.placement.isolation */
  enum tn_state state;           /* the state reached: Active, Suspended or Archived */
  long long connections;         /* the plan's quotas.connections, -1 when it sets none */
  const char *password;          /* the password the caller stored (Secret), or NULL to have one made */
  long long credentials_version; /* the caller's counter (status.database.credentialsVersion) */
};

/* What the reconcile writes to status.database and the tenant-database Secrets. Caller-owned:
 * zero it before the call, tn_db_outcome_cleanup() it after (also after an error). */
struct tn_db_outcome {
  char server[64];
  char host[256];
  int port;
  char sslmode[16];
  struct tn_db_names names; /* .role, .database (the one to connect to), .schema ("" unless shared) */
  char *password;           /* malloc'd: the role's password now (Active, Suspended); NULL when Archived */
  char *uri;                /* malloc'd: the tenant's libpq URI (holds the password); NULL when Archived */
  bool password_generated;  /* t->password was NULL and a new one was made: store it (the role has it) */
  long long credentials_version; /* t->credentials_version, plus 1 when password_generated */
  int operations;                /* plan operations executed by this call */
  int statements;                /* statements that changed something (DDL, DCL, session ends) */
  bool foreign;                  /* teardown: an object with the tenant's names is not the operator's
                                    and was left alone */
};

/* Frees password and uri (cleared first) and zeroes *o. Accepts NULL. */
void tn_db_outcome_cleanup(struct tn_db_outcome *o);

/* The connection cache. Thread-safe: any number of workers may call converge/teardown at once
 * (for different tenants; the workqueue never runs one key twice at a time). */
struct tn_db;

/* Returns a new cache, or NULL when out of memory; free it with tn_db_free. */
struct tn_db *tn_db_new(void);
/* Every later operation that changes the server is first checked against fence (borrowed, must
 * outlive db; NULL removes it): closed, it fails with TN_ECANCELED and nothing is executed. */
struct tn_fence;
void tn_db_set_fence(struct tn_db *db, const struct tn_fence *fence);
/* Closes every cached connection and frees db. Accepts NULL. No call may be running. */
void tn_db_free(struct tn_db *db);

/* Converges tenant t's role, schema or database on server srv to its state (tn_db_desired_for):
 * observes the catalogs, plans (tn_db_plan_converge) and executes only what differs; an
 * unchanged tenant costs only the observing queries (out->statements == 0).
 * Passwords: the role ends with t->password when given (printable ASCII, <= 256 characters); with
 * NULL a new one is made (tn_db_password_new) and returned in out->password with
 * out->password_generated set: the caller must store it. The check against the stored SCRAM
 * verifier needs no connection as the role. Crash-safe rotation: generate, store in the Secret,
 * then converge with the stored password.
 * out is filled (names, host, ...) as far as known even on failure. Returns 0, or:
 *  TN_ETRANSPORT    server unreachable or connection lost (transient: retry with backoff);
 *  TN_EUNAVAILABLE  server shutting down, starting, or out of connections (transient);
 *  TN_ECONFLICT, TN_ETIMEOUT  concurrent change or lock wait (transient);
 *  TN_EEXISTS       a name is taken by a role, schema or database the operator does not manage;
 *  TN_EFORBIDDEN    the admin role lacks a privilege (message says which statement);
 *  TN_EINVALID      bad tenant id, state, password or shared database name;
 *  TN_ECONFIG       admin_uri is not a libpq connection string;
 *  TN_EAPI          any other PostgreSQL error (message has its text and SQLSTATE);
 *  TN_ECANCELED     the test hook stopped it (tn_db_test_stop_after). */
int tn_db_converge(struct tn_db *db, const struct tn_db_server *srv, const struct tn_db_tenant *t,
                   struct tn_db_outcome *out, struct tn_error *err);

/* Removes tenant tenant_id's objects on srv, whatever isolation mode made them: role NOLOGIN,
 * its sessions ended, its database and its schema in the shared database dropped with their data,
 * whatever else it owns dropped, the role dropped. Call it only once the Tenant is Deleted or being
 * deleted. Idempotent: once everything is gone it costs only the observing queries. Objects with
 * the tenant's names that are not the operator's are left alone (out->foreign). Same returns as
 * tn_db_converge. out may be NULL. */
int tn_db_teardown(struct tn_db *db, const struct tn_db_server *srv, const char *tenant_id,
                   struct tn_db_outcome *out, struct tn_error *err);

/* Whether tenant tenant_id's role on srv exists, is the operator's (its comment) and holds
 * password, checked against its SCRAM verifier (no login as the role). When the admin cannot read
 * pg_authid, only a password this process set itself counts as held. *matches is false for an
 * invalid password. Costs the observing queries of the role, nothing is changed. Returns 0 or
 * the codes of tn_db_converge. */
int tn_db_password_check(struct tn_db *db, const struct tn_db_server *srv, const char *tenant_id,
                         const char *password, bool *matches, struct tn_error *err);

/* Writes a new random password: TN_DB_PASSWORD_BYTES bytes from OpenSSL's RAND_bytes as unpadded
 * base64url (TN_DB_PASSWORD_LEN characters and a NUL). Returns 0, -ERANGE when n is too small, or
 * TN_EUNAVAILABLE when the random generator fails. */
int tn_db_password_new(char *out, size_t n);

/* Counters since tn_db_new. */
struct tn_db_stats {
  unsigned long long converges;  /* tn_db_converge and tn_db_teardown calls */
  unsigned long long queries;    /* observing queries */
  unsigned long long statements; /* statements that changed something */
  unsigned long long connects;   /* connections opened */
};
void tn_db_get_stats(struct tn_db *db, struct tn_db_stats *out);

/* Results of calls by server, for metrics (tenancy_database_operations_total). operation is
 * "converge", "teardown" or "password_check"; result is tn_db_result_name(rc). fn runs under the
 * cache's lock: it must only copy or format (no call into db). */
typedef void (*tn_db_op_count_fn)(void *ud, const char *server, const char *operation, const char *result,
                                  unsigned long long n);
void tn_db_foreach_op_count(struct tn_db *db, tn_db_op_count_fn fn, void *ud);
/* The result label of a return code: "success" (0), "unreachable" (TN_ETRANSPORT),
 * "unavailable" (TN_EUNAVAILABLE), "conflict" (TN_ECONFLICT, TN_ETIMEOUT), "canceled"
 * (TN_ECANCELED: fenced or stopped), "refused" (TN_EEXISTS, TN_EFORBIDDEN, TN_EINVALID,
 * TN_ECONFIG), "error" (anything else). Static strings. */
const char *tn_db_result_name(int rc);

/* Test hook: stop every later call after n plan operations (n < 0: never), as a crash between
 * two operations would; the call then returns TN_ECANCELED. */
void tn_db_test_stop_after(struct tn_db *db, int n);

#endif
