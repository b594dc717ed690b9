/* dbplan.c - a tenant's PostgreSQL data plane, pure (see dbplan.h): names, desired state, the
 * ordered operations of a converge or a teardown, SCRAM-SHA-256 verifier checks, the libpq URI. */
#include "tenancy/dbplan.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

/* ---- names ------------------------------------------------------------------------------------ */

#define DIRECT_ID_MAX 59 /* "tn_" + 59 = 62 bytes: direct names are never 63 bytes long */
#define HASHED_PREFIX 48 /* "tn_" + 48 + "_" + 11 hex digits = 63 bytes */
#define HASHED_HEX 11

int tn_db_identifier(const char *id, char out[64], struct tn_error *err) {
  out[0] = '\0';
  if (!tn_is_dns_label(id))
    return tn_error_set(
        err, TN_EINVALID,
        "tenant id \"%.80s\" is not a DNS label (1 to 63 lowercase letters, digits or '-', starting "
        "and ending with a letter or digit): database object names are made from it",
        id ? id : "(null)");
  size_t n = strlen(id);
  size_t take = n <= DIRECT_ID_MAX ? n : HASHED_PREFIX;
  memcpy(out, "tn_", 3);
  for (size_t i = 0; i < take; i++)
    out[3 + i] = id[i] == '-' ? '_' : id[i];
  size_t len = 3 + take;
  if (n > DIRECT_ID_MAX) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)id, n, md);
    static const char hex[] = "0123456789abcdef";
    out[len++] = '_';
    for (int i = 0; i < HASHED_HEX; i++)
      out[len++] = hex[(md[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
  }
  out[len] = '\0';
  return 0;
}

/* The shared database's name comes from the administrator, not from tenants; it is quoted like
 * every identifier, so any printable ASCII will do, except a tenant database's prefix. */
static bool valid_shared_database(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > TN_DB_NAME_MAX || strncmp(s, "tn_", 3) == 0 || strcmp(s, "template0") == 0 ||
      strcmp(s, "template1") == 0)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
      return false;
  return true;
}

int tn_db_names_for(const char *id, enum tn_isolation mode, const char *shared_database,
                    struct tn_db_names *out, struct tn_error *err) {
  memset(out, 0, sizeof *out);
  if (!shared_database)
    shared_database = TN_DB_SHARED_DATABASE;
  if (!valid_shared_database(shared_database))
    return tn_error_set(err, TN_EINVALID,
                        "shared database name \"%.80s\" is invalid: use 1 to 63 printable ASCII characters, "
                        "not starting with tn_ (tenant databases) nor a template database",
                        shared_database);
  if ((unsigned)mode >= TN_ISOLATION_COUNT)
    return tn_error_set(err, TN_EINVALID, "unknown isolation mode %d", (int)mode);
  int rc = tn_db_identifier(id, out->role, err);
  if (rc)
    return rc;
  out->mode = mode;
  memcpy(out->tenant_database, out->role, sizeof out->role);
  snprintf(out->shared_database, sizeof out->shared_database, "%s", shared_database);
  if (mode == TN_ISOLATION_SHARED) {
    memcpy(out->database, out->shared_database, sizeof out->database);
    memcpy(out->schema, out->role, sizeof out->schema);
  } else {
    memcpy(out->database, out->tenant_database, sizeof out->database);
  }
  snprintf(out->marker, sizeof out->marker, "%s%s", TN_DB_MARKER_PREFIX, id);
  return 0;
}

/* ---- server --------------------------------------------------------------------------------------- */

int tn_db_pick_server(const struct tn_db_server_choice *servers, size_t n, enum tn_isolation mode,
                      const char *current, const char *region, size_t *index, struct tn_error *err) {
  if (!region)
    region = "?";
  if (current && *current) {
    for (size_t i = 0; i < n; i++)
      if (servers[i].name && strcmp(servers[i].name, current) == 0) {
        *index = i;
        return 0;
      }
    return tn_error_set(
        err, TN_ENOTFOUND,
        "the tenant's database server %s is no longer listed in spec.databaseServers of region %s; "
        "the operator does not move a tenant's data to another server: list it again",
        current, region);
  }
  const char *best = NULL;
  for (size_t i = 0; i < n; i++)
    if (servers[i].name && (servers[i].serves & (1u << mode)) &&
        (!best || strcmp(servers[i].name, best) < 0)) {
      best = servers[i].name;
      *index = i;
    }
  if (best)
    return 0;
  return tn_error_set(err, TN_ENOTFOUND,
                      "region %s has no database server that serves isolation %s: add one to its "
                      "spec.databaseServers (with %s in serves), or change the tenant's isolation",
                      region, tn_isolation_name(mode), tn_isolation_name(mode));
}

bool tn_db_ssl_mode_verified(const char *ssl_mode) {
  return !ssl_mode || strcmp(ssl_mode, "verify-ca") == 0 || strcmp(ssl_mode, "verify-full") == 0;
}

int tn_db_pick_server_policy(const struct tn_db_server_choice *servers, size_t n, enum tn_isolation mode,
                             const char *current, const char *region, const char *require_tls_policy,
                             size_t *index, struct tn_error *err) {
  if (!require_tls_policy || (current && *current))
    return tn_db_pick_server(servers, n, mode, current, region, index, err);
  const char *best = NULL;
  char weak[512] = "";
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    if (!servers[i].name || !(servers[i].serves & (1u << mode)))
      continue;
    if (!tn_db_ssl_mode_verified(servers[i].ssl_mode)) {
      int w = snprintf(weak + used, sizeof weak - used, "%s%s (sslMode %s)", used ? ", " : "",
                       servers[i].name, servers[i].ssl_mode);
      if (w > 0)
        used = used + (size_t)w < sizeof weak ? used + (size_t)w : sizeof weak - 1;
      continue;
    }
    if (!best || strcmp(servers[i].name, best) < 0) {
      best = servers[i].name;
      *index = i;
    }
  }
  if (best)
    return 0;
  if (!used) /* no server serves the mode at all: the usual words */
    return tn_db_pick_server(servers, n, mode, current, region, index, err);
  return tn_error_set(err, TN_EFORBIDDEN,
                      "TenancyPolicy %s: encryption.requireDatabaseTLS needs a database server with sslMode "
                      "verify-ca or verify-full, and region %s serves isolation %s only on %s: nothing was "
                      "provisioned; set sslMode verify-full (with a caSecretRef) on one of them, or add a "
                      "compliant server to the region's spec.databaseServers",
                      require_tls_policy, region ? region : "?", tn_isolation_name(mode), weak);
}

/* ---- desired state ------------------------------------------------------------------------------ */

int tn_db_desired_for(const char *id, enum tn_isolation mode, enum tn_state state, long long connections,
                      const char *shared_database, struct tn_db_desired *out, struct tn_error *err) {
  memset(out, 0, sizeof *out);
  int rc = tn_db_names_for(id, mode, shared_database, &out->names, err);
  if (rc)
    return rc;
  out->mode = mode;
  switch (state) {
  case TN_STATE_ACTIVE:
    out->create = out->login = out->password = out->connect = true;
    break;
  case TN_STATE_SUSPENDED:
    out->create = out->password = out->connect = true;
    break;
  case TN_STATE_ARCHIVED:
    break;
  default:
    return tn_error_set(err, TN_EINVALID,
                        "a %s tenant has no database to converge (Draft: nothing is created yet; Deleted: "
                        "tear it down instead)",
                        tn_state_name(state)[0] ? tn_state_name(state) : "new");
  }
  if (connections < 0)
    out->connection_limit = -1;
  else
    out->connection_limit = connections > INT32_MAX ? INT32_MAX : connections;
  return 0;
}

/* ---- operations ------------------------------------------------------------------------------------ */

static const char *const op_names[TN_DB_OP_COUNT] = {
    [TN_DB_OP_CREATE_DATABASE] = "CREATE DATABASE",
    [TN_DB_OP_REVOKE_DATABASE_PUBLIC] = "REVOKE CONNECT, TEMPORARY ON DATABASE FROM PUBLIC",
    [TN_DB_OP_REVOKE_PUBLIC_SCHEMA] = "REVOKE CREATE, USAGE ON SCHEMA public FROM PUBLIC",
    [TN_DB_OP_CREATE_ROLE] = "CREATE ROLE",
    [TN_DB_OP_GRANT_ROLE_TO_ADMIN] = "GRANT role TO admin",
    [TN_DB_OP_RESET_ROLE_ATTRIBUTES] =
        "ALTER ROLE NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
    [TN_DB_OP_SET_CONNECTION_LIMIT] = "ALTER ROLE CONNECTION LIMIT",
    [TN_DB_OP_SET_PASSWORD] = "ALTER ROLE PASSWORD",
    [TN_DB_OP_CLEAR_PASSWORD] = "ALTER ROLE PASSWORD NULL",
    [TN_DB_OP_CREATE_SCHEMA] = "CREATE SCHEMA",
    [TN_DB_OP_GRANT_CONNECT] = "GRANT CONNECT ON DATABASE",
    [TN_DB_OP_REVOKE_CONNECT] = "REVOKE CONNECT ON DATABASE",
    [TN_DB_OP_TERMINATE_FOREIGN_SESSIONS] = "terminate sessions without CONNECT",
    [TN_DB_OP_SET_LOGIN] = "ALTER ROLE LOGIN",
    [TN_DB_OP_SET_NOLOGIN] = "ALTER ROLE NOLOGIN",
    [TN_DB_OP_TERMINATE_ROLE_SESSIONS] = "terminate the role's sessions",
    [TN_DB_OP_DROP_SCHEMA] = "DROP SCHEMA CASCADE",
    [TN_DB_OP_DROP_DATABASE] = "DROP DATABASE",
    [TN_DB_OP_DROP_OWNED] = "DROP OWNED",
    [TN_DB_OP_DROP_ROLE] = "DROP ROLE",
};

const char *tn_db_op_name(enum tn_db_op_kind k) {
  return (unsigned)k < TN_DB_OP_COUNT && op_names[k] ? op_names[k] : "?";
}

bool tn_db_op_is_transactional(enum tn_db_op_kind k) {
  return k != TN_DB_OP_CREATE_DATABASE && k != TN_DB_OP_DROP_DATABASE;
}

static void add(struct tn_db_plan *p, enum tn_db_op_kind kind, const char *database, bool with_owner,
                long long value) {
  if (p->n >= TN_DB_MAX_OPS)
    return; /* cannot happen: a plan has at most about 20 operations */
  struct tn_db_op *op = &p->ops[p->n++];
  memset(op, 0, sizeof *op);
  op->kind = kind;
  snprintf(op->database, sizeof op->database, "%s", database ? database : "");
  op->with_owner = with_owner;
  op->value = value;
}

/* The role's part of a converge: create it or repair its attributes, admin membership, password. */
static void plan_role(const struct tn_db_desired *d, const struct tn_db_observed *o, struct tn_db_plan *p,
                      struct tn_db_observed *now) {
  if (!o->role_exists) {
    add(p, TN_DB_OP_CREATE_ROLE, NULL, false, d->connection_limit);
    now->role_login = false;
    now->password = TN_DB_PASSWORD_NONE;
    now->admin_member = false;
    now->role_sessions = 0;
  } else {
    if (o->role_privileged)
      add(p, TN_DB_OP_RESET_ROLE_ATTRIBUTES, NULL, false, 0);
    if (o->role_connection_limit != d->connection_limit)
      add(p, TN_DB_OP_SET_CONNECTION_LIMIT, NULL, false, d->connection_limit);
  }
  if (!o->admin_superuser && !now->admin_member)
    add(p, TN_DB_OP_GRANT_ROLE_TO_ADMIN, NULL, false, 0);
  if (d->password && now->password != TN_DB_PASSWORD_MATCHES)
    add(p, TN_DB_OP_SET_PASSWORD, NULL, false, 0);
  else if (!d->password && now->password != TN_DB_PASSWORD_NONE)
    add(p, TN_DB_OP_CLEAR_PASSWORD, NULL, false, 0);
}

/* CONNECT of the role on database db, then the sessions that lost (or never had) CONNECT. */
static void plan_connect(const struct tn_db_desired *d, const char *db,
                         const struct tn_db_observed_database *now, bool revoked_public,
                         struct tn_db_plan *p) {
  bool revoked = revoked_public;
  if (d->connect && !now->role_connect)
    add(p, TN_DB_OP_GRANT_CONNECT, db, false, 0);
  else if (!d->connect && now->role_connect) {
    add(p, TN_DB_OP_REVOKE_CONNECT, db, false, 0);
    revoked = true;
  }
  /* A privilege just revoked leaves the sessions opened with it: end them in the same pass. */
  if (now->foreign_sessions > 0 || revoked)
    add(p, TN_DB_OP_TERMINATE_FOREIGN_SESSIONS, db, false, 0);
}

static void plan_login(const struct tn_db_desired *d, const struct tn_db_observed *now,
                       struct tn_db_plan *p) {
  if (d->login) {
    if (!now->role_login)
      add(p, TN_DB_OP_SET_LOGIN, NULL, false, 0);
    return;
  }
  if (now->role_login)
    add(p, TN_DB_OP_SET_NOLOGIN, NULL, false, 0);
  if (now->role_login || now->role_sessions > 0)
    add(p, TN_DB_OP_TERMINATE_ROLE_SESSIONS, NULL, false, 0);
}

int tn_db_plan_converge(const struct tn_db_desired *d, const struct tn_db_observed *o, struct tn_db_plan *out,
                        struct tn_error *err) {
  memset(out, 0, sizeof *out);
  const struct tn_db_names *nm = &d->names;
  bool shared = d->mode == TN_ISOLATION_SHARED;

  /* Every conflict is found before anything is changed. */
  if (o->role_exists && !o->role_managed)
    return tn_error_set(
        err, TN_EEXISTS,
        "role %s already exists and is not managed by tenancy-operator (its comment is not \"%s\"); "
        "the operator never adopts or alters another's role. Drop or rename that role",
        nm->role, nm->marker);
  if (shared && o->shared_db.exists && o->schema_exists && !o->schema_owned)
    return tn_error_set(
        err, TN_EEXISTS,
        "schema %s already exists in database %s and is not owned by role %s; the operator never "
        "adopts or alters another's schema. Drop or rename that schema",
        nm->schema, nm->shared_database, nm->role);
  if (!shared && o->tenant_db.exists && !(o->role_exists && o->tenant_db.owned))
    return tn_error_set(
        err, TN_EEXISTS,
        "database %s already exists and is not owned by role %s; the operator never adopts or "
        "alters another's database. Drop or rename that database",
        nm->tenant_database, nm->role);

  if (!d->create && !o->role_exists)
    return 0;                     /* archived before it had a role: nothing to lock */
  struct tn_db_observed now = *o; /* what the catalogs will show once the ops so far ran */
  if (shared) {
    struct tn_db_observed_database *s = &now.shared_db;
    if (!s->exists && d->create) {
      add(out, TN_DB_OP_CREATE_DATABASE, nm->shared_database, false, 0);
      *s = (struct tn_db_observed_database){.exists = true, .public_access = true};
      now.public_schema_open = true; /* PostgreSQL 15: USAGE for PUBLIC on schema public */
      now.schema_exists = false;
    }
    bool revoked_public = s->public_access;
    if (s->public_access)
      add(out, TN_DB_OP_REVOKE_DATABASE_PUBLIC, nm->shared_database, false, 0);
    if (now.public_schema_open)
      add(out, TN_DB_OP_REVOKE_PUBLIC_SCHEMA, nm->shared_database, false, 0);
    plan_role(d, o, out, &now);
    if (!now.schema_exists && d->create)
      add(out, TN_DB_OP_CREATE_SCHEMA, nm->shared_database, false, 0);
    if (s->exists)
      plan_connect(d, nm->shared_database, s, revoked_public, out);
  } else {
    plan_role(d, o, out, &now);
    struct tn_db_observed_database *t = &now.tenant_db;
    if (!t->exists && d->create) {
      add(out, TN_DB_OP_CREATE_DATABASE, nm->tenant_database, true, 0);
      /* A new database: the owner holds CONNECT, PUBLIC holds CONNECT and TEMPORARY. */
      *t = (struct tn_db_observed_database){
          .exists = true, .owned = true, .public_access = true, .role_connect = true};
    }
    bool revoked_public = t->public_access;
    if (t->public_access)
      add(out, TN_DB_OP_REVOKE_DATABASE_PUBLIC, nm->tenant_database, false, 0);
    if (t->exists)
      plan_connect(d, nm->tenant_database, t, revoked_public, out);
  }
  plan_login(d, &now, out);
  return 0;
}

void tn_db_plan_teardown(const struct tn_db_names *nm, const struct tn_db_observed *o, struct tn_db_plan *out,
                         bool *foreign) {
  memset(out, 0, sizeof *out);
  bool skipped = false;
  bool ours = o->role_exists && o->role_managed;
  skipped |= o->role_exists && !o->role_managed;
  if (ours) {
    if (!o->admin_superuser && !o->admin_member)
      add(out, TN_DB_OP_GRANT_ROLE_TO_ADMIN, NULL, false, 0);
    if (o->role_login)
      add(out, TN_DB_OP_SET_NOLOGIN, NULL, false, 0);
    if (o->role_login || o->role_sessions > 0)
      add(out, TN_DB_OP_TERMINATE_ROLE_SESSIONS, NULL, false, 0);
  }
  bool drop_db = false;
  if (o->tenant_db.exists) {
    drop_db = ours && o->tenant_db.owned;
    skipped |= !drop_db;
    if (drop_db)
      add(out, TN_DB_OP_DROP_DATABASE, nm->tenant_database, false, 0);
  }
  if (o->shared_db.exists && o->schema_exists) {
    bool drop_schema = ours && o->schema_owned;
    skipped |= !drop_schema;
    if (drop_schema)
      add(out, TN_DB_OP_DROP_SCHEMA, nm->shared_database, false, 0);
  }
  if (ours) {
    for (int i = 0; i < o->n_owning_databases && i < TN_DB_MAX_OWNING_DATABASES; i++) {
      if (drop_db && strcmp(o->owning_databases[i], nm->tenant_database) == 0)
        continue;
      add(out, TN_DB_OP_DROP_OWNED, o->owning_databases[i], false, 0);
    }
    add(out, TN_DB_OP_DROP_ROLE, NULL, false, 0);
  }
  if (foreign)
    *foreign = skipped;
}

/* ---- credentials --------------------------------------------------------------------------------- */

bool tn_db_password_valid(const char *password) {
  if (!password)
    return false;
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)password; *p; p++, n++)
    if (*p < 0x20 || *p > 0x7e || n >= TN_DB_PASSWORD_MAX)
      return false;
  return n > 0;
}

/* Decodes standard base64 text (with padding) of exactly want bytes into out. */
static bool b64_decode_exact(const char *s, size_t len, unsigned char *out, size_t want) {
  if (len == 0 || len % 4 != 0 || len > 4 * ((64 + 2) / 3))
    return false;
  unsigned char tmp[96];
  int n = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len);
  if (n < 0)
    return false;
  size_t pad = (s[len - 1] == '=') + (s[len - 2] == '=');
  if ((size_t)n - pad != want)
    return false;
  memcpy(out, tmp, want);
  return true;
}

#define SCRAM_MAX_ITERATIONS 1000000

bool tn_scram_verifier_matches(const char *verifier, const char *password) {
  static const char prefix[] = "SCRAM-SHA-256$";
  if (!verifier || !tn_db_password_valid(password) || strncmp(verifier, prefix, sizeof prefix - 1) != 0)
    return false;
  const char *p = verifier + sizeof prefix - 1;
  /* <iterations>:<salt>$<StoredKey>:<ServerKey> */
  char *end = NULL;
  if (*p < '1' || *p > '9')
    return false;
  unsigned long iterations = strtoul(p, &end, 10);
  if (*end != ':' || iterations == 0 || iterations > SCRAM_MAX_ITERATIONS)
    return false;
  const char *salt = end + 1;
  const char *dollar = strchr(salt, '$');
  if (!dollar)
    return false;
  const char *stored = dollar + 1;
  const char *colon = strchr(stored, ':');
  if (!colon)
    return false;
  const char *server = colon + 1;
  size_t salt_len = (size_t)(dollar - salt);
  if (salt_len == 0 || salt_len % 4 || salt_len > 128)
    return false;
  unsigned char salt_raw[128];
  int sn = EVP_DecodeBlock(salt_raw, (const unsigned char *)salt, (int)salt_len);
  if (sn < 0)
    return false;
  sn -= (salt[salt_len - 1] == '=') + (salt[salt_len - 2] == '=');
  if (sn <= 0)
    return false;
  unsigned char want_stored[32], want_server[32];
  if (!b64_decode_exact(stored, (size_t)(colon - stored), want_stored, sizeof want_stored) ||
      !b64_decode_exact(server, strlen(server), want_server, sizeof want_server))
    return false;

  unsigned char salted[32], client_key[32], stored_key[32], server_key[32];
  unsigned int len = 0;
  bool ok = false;
  if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt_raw, sn, (int)iterations, EVP_sha256(),
                        sizeof salted, salted) != 1)
    goto out;
  if (!HMAC(EVP_sha256(), salted, sizeof salted, (const unsigned char *)"Client Key", 10, client_key, &len) ||
      len != sizeof client_key)
    goto out;
  SHA256(client_key, sizeof client_key, stored_key);
  if (!HMAC(EVP_sha256(), salted, sizeof salted, (const unsigned char *)"Server Key", 10, server_key, &len) ||
      len != sizeof server_key)
    goto out;
  /* Both keys, in constant time, whatever the first comparison says. */
  int diff = CRYPTO_memcmp(stored_key, want_stored, 32) | CRYPTO_memcmp(server_key, want_server, 32);
  ok = diff == 0;
out:
  OPENSSL_cleanse(salted, sizeof salted);
  OPENSSL_cleanse(client_key, sizeof client_key);
  OPENSSL_cleanse(server_key, sizeof server_key);
  return ok;
}

/* ---- URI ---------------------------------------------------------------------------------------- */

static int append(char *dst, size_t cap, size_t *len, const char *s, size_t n) {
  if (*len + n + 1 > cap)
    return -1;
  memcpy(dst + *len, s, n);
  *len += n;
  dst[*len] = '\0';
  return 0;
}

/* Percent-encodes s (RFC 3986: everything but ALPHA DIGIT - . _ ~). */
static int append_encoded(char *dst, size_t cap, size_t *len, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      if (append(dst, cap, len, (const char *)p, 1))
        return -1;
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      if (append(dst, cap, len, e, 3))
        return -1;
    }
  }
  return 0;
}

char *tn_db_uri(const char *role, const char *password, const char *host, int port, const char *database,
                const char *sslmode) {
  if (!role || !password || !host || !*host || !database || !sslmode || port <= 0 || port > 65535)
    return NULL;
  bool ipv6 = strchr(host, ':') != NULL;
  if (ipv6)
    for (const char *h = host; *h; h++)
      if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f') || (*h >= 'A' && *h <= 'F') || *h == ':' ||
            *h == '.'))
        return NULL;
  size_t cap = 3 * (strlen(role) + strlen(password) + strlen(host) + strlen(database) + strlen(sslmode)) + 64;
  char *s = malloc(cap);
  if (!s)
    return NULL;
  size_t len = 0;
  char portbuf[16];
  snprintf(portbuf, sizeof portbuf, ":%d/", port);
  s[0] = '\0';
  if (append(s, cap, &len, "postgresql://", 13) || append_encoded(s, cap, &len, role) ||
      append(s, cap, &len, ":", 1) || append_encoded(s, cap, &len, password) ||
      append(s, cap, &len, "@", 1) ||
      (ipv6 ? append(s, cap, &len, "[", 1) || append(s, cap, &len, host, strlen(host)) ||
                  append(s, cap, &len, "]", 1)
            : append_encoded(s, cap, &len, host)) ||
      append(s, cap, &len, portbuf, strlen(portbuf)) || append_encoded(s, cap, &len, database) ||
      append(s, cap, &len, "?sslmode=", 9) || append_encoded(s, cap, &len, sslmode)) {
    OPENSSL_cleanse(s, cap);
    free(s);
    return NULL;
  }
  return s;
}
