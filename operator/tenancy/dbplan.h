/* dbplan.h - a tenant's PostgreSQL data plane, pure: object names from the tenant id, the desired
 * state per isolation mode and lifecycle state, the ordered operations that take an observed
 * state there (or tear it down), SCRAM-SHA-256 verifier checks, passwords and the tenant's libpq
 * URI. No network, no clock, no globals; converge/database.c observes and executes. */
#ifndef TN_TENANCY_DBPLAN_H
#define TN_TENANCY_DBPLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "tenancy/tenant.h"
#include "util/error.h"

/* PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes. */
#define TN_DB_NAME_MAX 63
/* The database that holds the schemas of shared-mode tenants, unless the server names another. */
#define TN_DB_SHARED_DATABASE "tenants"
/* The comment on a role that marks it as the operator's (followed by the tenant id). */
#define TN_DB_MARKER_PREFIX "tenancy-operator tenant "
/* Generated passwords: 32 random bytes as unpadded base64url, 43 characters. */
#define TN_DB_PASSWORD_BYTES 32
#define TN_DB_PASSWORD_LEN 43
/* Passwords given by the caller: 1 to this many printable ASCII characters. */
#define TN_DB_PASSWORD_MAX 256

/* The names of a tenant's objects, at most 63 bytes; all but shared_database are [a-z0-9_]. */
struct tn_db_names {
  enum tn_isolation mode;
  char role[64];            /* tn_<id with '-' as '_'>; see tn_db_identifier */
  char database[64];        /* the database the tenant connects to: tenant_database or shared_database */
  char schema[64];          /* shared: the tenant's schema (= role); "" otherwise */
  char tenant_database[64]; /* the database of a dedicated or hybrid tenant (= role), whatever mode says */
  char shared_database[64]; /* the server's shared database */
  char marker[96];          /* the role's comment: TN_DB_MARKER_PREFIX "<id>" */
};

/* The identifier of tenant id (a DNS label, <= 63 characters): "tn_" + id with '-' as '_' when
 * that fits in 62 bytes (ids of up to 59 characters); longer ids give exactly 63 bytes: "tn_",
 * the first 48 characters, '_' and 11 hex digits of SHA-256(id). Direct names are at most 62
 * bytes and hashed ones exactly 63, so two ids never map to one name (short of a 44-bit hash
 * collision between two ids longer than 59 characters sharing their first 48). Returns 0 or
 * TN_EINVALID (err says why) when id is not a DNS label. */
int tn_db_identifier(const char *id, char out[64], struct tn_error *err);

/* The names of tenant id's objects for mode. shared_database: the server's shared database, NULL
 * for TN_DB_SHARED_DATABASE: 1 to 63 printable ASCII characters (it is quoted like every
 * identifier), not starting with "tn_" (a tenant database could take it) nor template0/1.
 * Returns 0 or TN_EINVALID. */
int tn_db_names_for(const char *id, enum tn_isolation mode, const char *shared_database,
                    struct tn_db_names *out, struct tn_error *err);

/* ---- server ------------------------------------------------------------------------------------ */

/* One entry of a Region's spec.databaseServers, as far as choosing matters. Borrowed. */
struct tn_db_server_choice {
  const char *name;
  unsigned serves;      /* bits 1u << enum tn_isolation */
  const char *ssl_mode; /* libpq sslmode as written; NULL means verify-full (the CRD default) */
};

/* Whether a libpq sslmode verifies the server's certificate (verify-ca, verify-full; NULL counts
 * as verify-full, the default). */
bool tn_db_ssl_mode_verified(const char *ssl_mode);

/* Which server of region (for messages) holds a tenant in mode: current (status.database.server,
 * NULL for a tenant without a database yet) while it is listed, whatever it serves now (moving a
 * tenant's data is a migration, not a reconcile; the teardown then finds everything on it); else
 * the first server in name order that serves mode. Sets *index into servers and returns 0, or
 * TN_ENOTFOUND with words: current no longer listed, or no server serves mode. */
int tn_db_pick_server(const struct tn_db_server_choice *servers, size_t n, enum tn_isolation mode,
                      const char *current, const char *region, size_t *index, struct tn_error *err);

/* tn_db_pick_server under TenancyPolicy require_tls_policy's encryption.requireDatabaseTLS (NULL:
 * no policy requires it, exactly tn_db_pick_server): a new tenant is placed only on a server
 * whose sslMode is verify-ca or verify-full (the first such in name order that serves mode). When
 * a server serves mode but none is compliant, returns TN_EFORBIDDEN with the policy's words
 * (naming the policy, each server and its sslMode, and the fix): nothing may be provisioned. A
 * tenant already on a server keeps it (moving data is a migration); the policy evaluator reports
 * a non-compliant current server as a violation. */
int tn_db_pick_server_policy(const struct tn_db_server_choice *servers, size_t n, enum tn_isolation mode,
                             const char *current, const char *region, const char *require_tls_policy,
                             size_t *index, struct tn_error *err);

/* ---- desired state ---------------------------------------------------------------------- */

/* What a tenant's database objects should look like in a lifecycle state:
 *   Active:    role LOGIN with the caller's password, CONNECT on its database, limit applied;
 *   Suspended: role NOLOGIN, its sessions terminated; password, CONNECT, objects and data kept;
 *   Archived:  role NOLOGIN, password removed, CONNECT revoked, sessions terminated; the role,
 *              schema or database and every row kept (only a delete drops them); nothing missing
 *              is created (a tenant archived before it had a role gets none).
 * Draft and Deleted tenants have no desired database state (nothing is created for a Draft;
 * tn_db_plan_teardown removes a Deleted tenant's objects). */
struct tn_db_desired {
  enum tn_isolation mode;
  struct tn_db_names names;
  bool create;                /* missing objects are created: Active, Suspended (Archived only locks) */
  bool login;                 /* Active */
  bool password;              /* the role holds the caller's password: Active, Suspended */
  bool connect;               /* the role holds CONNECT on its database: Active, Suspended */
  long long connection_limit; /* ALTER ROLE ... CONNECTION LIMIT: -1 for none */
};

/* Fills *out for tenant id in mode and state. connections is the plan's quota (>= 0), or -1 when
 * the plan sets none; values above INT32_MAX become INT32_MAX (PostgreSQL's limit is an int4).
 * Returns 0, or TN_EINVALID for a bad id or shared database name or a state with no database
 * (Draft, Deleted, none), with words in err. */
int tn_db_desired_for(const char *id, enum tn_isolation mode, enum tn_state state, long long connections,
                      const char *shared_database, struct tn_db_desired *out, struct tn_error *err);

/* ---- observed state --------------------------------------------------------------------- */

/* Whether the role's stored password is the caller's. UNKNOWN when it could not be read (the
 * admin role cannot read pg_authid); the plan then sets it again (one statement per pass). */
enum tn_db_password_state {
  TN_DB_PASSWORD_NONE = 0, /* no password stored (rolpassword NULL) */
  TN_DB_PASSWORD_MATCHES,  /* the stored SCRAM verifier is the caller's password's */
  TN_DB_PASSWORD_DIFFERS,  /* another password, or a non-SCRAM (md5) one */
  TN_DB_PASSWORD_UNKNOWN,
};

/* One database as the catalogs show it (pg_database, aclexplode, pg_stat_activity). */
struct tn_db_observed_database {
  bool exists;
  bool owned;           /* its owner is the tenant role */
  bool public_access;   /* PUBLIC holds CONNECT or TEMPORARY on it */
  bool role_connect;    /* the tenant role holds CONNECT by a grant or as owner (PUBLIC not counted) */
  int foreign_sessions; /* client sessions in it of roles that do not hold CONNECT (any more) */
};

#define TN_DB_MAX_OWNING_DATABASES 16

/* What converge/database.c read from the catalogs. Plain data: the unit tests build it by hand. */
struct tn_db_observed {
  bool admin_superuser; /* the admin role is a superuser */
  bool admin_member;    /* the admin role is a member of the tenant role (needed when not superuser) */

  bool role_exists;
  bool role_managed;    /* its comment is names.marker: the operator created it */
  bool role_login;      /* rolcanlogin */
  bool role_privileged; /* SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS: never wanted */
  long long role_connection_limit;
  enum tn_db_password_state password;
  int role_sessions; /* open sessions of the role, any database */

  struct tn_db_observed_database tenant_db; /* the database named like the role (dedicated, hybrid) */
  struct tn_db_observed_database shared_db; /* the shared database */
  bool public_schema_open;                  /* PUBLIC holds CREATE or USAGE on schema public of shared_db */
  bool schema_exists;                       /* the tenant's schema in shared_db */
  bool schema_owned;                        /* ... owned by the tenant role */

  /* Teardown: where the role still owns objects or holds privileges (pg_shdepend): database
   * names, "" for shared objects (privileges on databases), which the admin's own database
   * handles. */
  char owning_databases[TN_DB_MAX_OWNING_DATABASES][64];
  int n_owning_databases;
};

/* ---- operations --------------------------------------------------------------------------- */

/* One step of a plan: one transaction, or one statement that cannot run in a transaction
 * (CREATE DATABASE, DROP DATABASE). converge/database.c renders the SQL with libpq's escaping. */
enum tn_db_op_kind {
  TN_DB_OP_CREATE_DATABASE = 0,    /* CREATE DATABASE d [OWNER role] - not transactional */
  TN_DB_OP_REVOKE_DATABASE_PUBLIC, /* REVOKE CONNECT, TEMPORARY ON DATABASE d FROM PUBLIC */
  TN_DB_OP_REVOKE_PUBLIC_SCHEMA,   /* in d: REVOKE CREATE, USAGE ON SCHEMA public FROM PUBLIC */
  TN_DB_OP_CREATE_ROLE, /* CREATE ROLE role NOLOGIN NOSUPERUSER ... CONNECTION LIMIT n; COMMENT marker */
  TN_DB_OP_GRANT_ROLE_TO_ADMIN,        /* GRANT role TO CURRENT_USER (admin not a superuser) */
  TN_DB_OP_RESET_ROLE_ATTRIBUTES,      /* ALTER ROLE role NOSUPERUSER NOCREATEDB NOCREATEROLE ... */
  TN_DB_OP_SET_CONNECTION_LIMIT,       /* ALTER ROLE role CONNECTION LIMIT value */
  TN_DB_OP_SET_PASSWORD,               /* ALTER ROLE role PASSWORD '<SCRAM-SHA-256 verifier>' */
  TN_DB_OP_CLEAR_PASSWORD,             /* ALTER ROLE role PASSWORD NULL */
  TN_DB_OP_CREATE_SCHEMA,              /* in d: CREATE SCHEMA schema AUTHORIZATION role */
  TN_DB_OP_GRANT_CONNECT,              /* GRANT CONNECT ON DATABASE d TO role */
  TN_DB_OP_REVOKE_CONNECT,             /* REVOKE CONNECT ON DATABASE d FROM role */
  TN_DB_OP_TERMINATE_FOREIGN_SESSIONS, /* end sessions in d of roles without CONNECT */
  TN_DB_OP_SET_LOGIN,                  /* ALTER ROLE role LOGIN */
  TN_DB_OP_SET_NOLOGIN,                /* ALTER ROLE role NOLOGIN */
  TN_DB_OP_TERMINATE_ROLE_SESSIONS,    /* end every session of role */
  TN_DB_OP_DROP_SCHEMA,                /* in d: DROP SCHEMA schema CASCADE */
  TN_DB_OP_DROP_DATABASE,              /* DROP DATABASE d WITH (FORCE) - not transactional */
  TN_DB_OP_DROP_OWNED,                 /* in d ("" = the admin's database): DROP OWNED BY role */
  TN_DB_OP_DROP_ROLE,                  /* DROP ROLE role */
};
#define TN_DB_OP_COUNT 20

struct tn_db_op {
  enum tn_db_op_kind kind;
  char database[64]; /* the database the op names or runs in; "" = the admin's own */
  bool with_owner;   /* CREATE_DATABASE: OWNER role */
  long long value;   /* SET_CONNECTION_LIMIT, CREATE_ROLE: the limit */
};

#define TN_DB_MAX_OPS 40

/* An ordered plan. */
struct tn_db_plan {
  struct tn_db_op ops[TN_DB_MAX_OPS];
  int n;
};

/* "CREATE DATABASE", "REVOKE CONNECT FROM PUBLIC", ... for logs and messages. Static. */
const char *tn_db_op_name(enum tn_db_op_kind k);
/* Whether the op cannot run inside a transaction block. */
bool tn_db_op_is_transactional(enum tn_db_op_kind k);

/* The operations, in order, that take o to d; none when o is already d (an unchanged tenant costs
 * zero statements). The order makes a stop between any two operations converge on the next
 * pass, and keeps the role NOLOGIN until everything else is in place:
 *   shared:     CREATE DATABASE shared, REVOKE its PUBLIC access, REVOKE PUBLIC on schema public,
 *               role (create | attributes | limit), GRANT role TO admin, password, CREATE SCHEMA,
 *               GRANT | REVOKE CONNECT, terminate foreign sessions, LOGIN | NOLOGIN + terminate.
 *   dedicated,
 *   hybrid:     role, GRANT role TO admin, password, CREATE DATABASE OWNER role, REVOKE PUBLIC,
 *               GRANT | REVOKE CONNECT, terminate foreign sessions, LOGIN | NOLOGIN + terminate.
 * Returns 0, or TN_EEXISTS when a name is taken by something the operator does not manage (a
 * role without the marker, a database or schema not owned by the tenant role): it never adopts
 * or alters another's objects; err says which and how to fix it. */
int tn_db_plan_converge(const struct tn_db_desired *d, const struct tn_db_observed *o, struct tn_db_plan *out,
                        struct tn_error *err);

/* The operations that remove tenant names's objects, whatever the isolation mode they were
 * created for: role NOLOGIN and its sessions terminated, its database (if owned by it) dropped,
 * its schema in the shared database (if owned by it) dropped, what it still owns elsewhere
 * dropped (DROP OWNED in each database of o->owning_databases), the role dropped. Objects that
 * are not the operator's are left alone: *foreign (may be NULL) is set when any was skipped. */
void tn_db_plan_teardown(const struct tn_db_names *names, const struct tn_db_observed *o,
                         struct tn_db_plan *out, bool *foreign);

/* ---- credentials ------------------------------------------------------------------------------ */

/* Whether password is acceptable: 1 to TN_DB_PASSWORD_MAX printable ASCII characters (for those,
 * SASLprep changes nothing, so the verifier check below is exact). */
bool tn_db_password_valid(const char *password);

/* Whether verifier, a PostgreSQL SCRAM-SHA-256 secret as pg_authid.rolpassword stores it
 * ("SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", base64), was made from password:
 * SaltedPassword = PBKDF2-HMAC-SHA256(password, salt, iterations); StoredKey =
 * SHA256(HMAC(SaltedPassword, "Client Key")); ServerKey = HMAC(SaltedPassword, "Server Key")
 * (RFC 5802, RFC 7677), both compared in constant time. False for NULL, malformed verifiers,
 * other mechanisms (md5), iterations above 10^6, and passwords tn_db_password_valid refuses. */
bool tn_scram_verifier_matches(const char *verifier, const char *password);

/* The tenant's libpq URI: postgresql://role:password@host:port/database?sslmode=mode, every part
 * percent-encoded (RFC 3986 unreserved characters kept), an IPv6 host in brackets. Returns a
 * malloc'd string the caller frees (it holds the password: clear it first), or NULL when out of
 * memory or an argument is NULL or host holds characters a host cannot. */
char *tn_db_uri(const char *role, const char *password, const char *host, int port, const char *database,
                const char *sslmode);

#endif
