#define _GNU_SOURCE /* strptime, timegm */
/* tenant_db.c - the database step of the tenant reconcile (see tenant_db.h).
 *
 * Password handling, in an order where a crash between any two steps converges: a new password
 * (first time, on demand or on schedule) is written into the tenant-database Secrets first, and
 * only then set on the role; the next pass reads it back from the Secrets, and the database
 * module compares it with the role's SCRAM verifier, so a role still on the old password is
 * fixed and an unchanged one costs nothing. */
#include "converge/tenant_db.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converge/database.h"
#include "runtime/log.h"
#include "tenancy/dbplan.h"
#include "tenancy/desired.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/wipe.h"

static const struct tn_gvr gvr_secrets = {"", "v1", "secrets", true};

void tn_tenant_db_result_cleanup(struct tn_tenant_db_result *r) {
  if (!r)
    return;
  json_decref(r->database);
  memset(r, 0, sizeof *r);
}

static void fail(struct tn_tenant_db_result *out, bool retry, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct tn_tenant_db_result *out, bool retry, const char *reason, const char *fmt, ...) {
  out->configured = true;
  out->status = "False";
  out->retry = retry;
  snprintf(out->reason, sizeof out->reason, "%s", reason);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->message, sizeof out->message, fmt, ap);
  va_end(ap);
}

/* ---- base64 (Secret data) ---------------------------------------------------------------- */

#include <openssl/evp.h>

static char *b64(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (out)
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
  return out;
}

static char *unb64(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (!n || n % 4)
    return NULL;
  unsigned char *out = malloc(n);
  if (!out)
    return NULL;
  int len = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
  if (len < 0) {
    tn_wipe_free(out);
    return NULL;
  }
  while (len > 0 && n > 0 && s[n - 1] == '=') { /* EVP_DecodeBlock counts the padding */
    len--;
    n--;
  }
  out[len] = '\0';
  return (char *)out;
}

/* ---- the region's servers and their Secrets --------------------------------------------------- */

static char *secret_key(struct tn_reconciler *r, json_t *ref, const char *key, struct tn_error *err) {
  const char *ns = json_string_value(json_object_get(ref, "namespace"));
  const char *name = json_string_value(json_object_get(ref, "name"));
  if (!ns || !name) {
    tn_error_set(err, TN_EINVALID, "a secret reference needs namespace and name");
    return NULL;
  }
  json_t *sec = NULL;
  if (tn_kube_get(r->kube, &gvr_secrets, ns, name, &sec, err)) {
    tn_error_prefix(err, "Secret %s/%s", ns, name);
    return NULL;
  }
  char *v = unb64(json_string_value(json_object_get(json_object_get(sec, "data"), key)));
  json_decref(sec);
  if (!v)
    tn_error_set(err, TN_EINVALID, "Secret %s/%s has no key %s", ns, name, key);
  return v;
}

static unsigned serves_bits(json_t *serves) {
  unsigned bits = 0;
  size_t i;
  json_t *m;
  json_array_foreach(serves, i, m) {
    enum tn_isolation iso;
    if (tn_isolation_parse(json_string_value(m), &iso) == 0)
      bits |= 1u << iso;
  }
  return bits;
}

/* Picks the tenant's server in region; *server is borrowed from region_obj. */
static int pick_server(json_t *region_obj, const char *region, enum tn_isolation mode, const char *current,
                       json_t **server, struct tn_error *err) {
  json_t *servers = json_object_get(json_object_get(region_obj, "spec"), "databaseServers");
  size_t n = json_array_size(servers);
  if (n == 0)
    return TN_ENOTFOUND;
  struct tn_db_server_choice *choices = calloc(n, sizeof *choices);
  if (!choices)
    return tn_error_set(err, -ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_array_get(servers, i);
    choices[i].name = json_string_value(json_object_get(s, "name"));
    choices[i].serves = serves_bits(json_object_get(s, "serves"));
  }
  size_t idx = 0;
  int rc = tn_db_pick_server(choices, n, mode, current, region, &idx, err);
  free(choices);
  if (rc == 0)
    *server = json_array_get(servers, idx);
  return rc;
}

/* ---- the tenant-database Secrets ------------------------------------------------------------- */

/* The tenant's current password and rotation bookkeeping, from its Secrets (any namespace; the
 * highest credentials version wins). */
struct stored {
  char *password;
  long long version;
  char rotated_for[256];
  double rotated_at; /* wall seconds; 0 unknown */
};

static double parse_time(const char *s) {
  struct tm tm = {0};
  if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm))
    return 0;
  return (double)timegm(&tm);
}

static void read_stored(json_t *secrets, struct stored *st) {
  size_t i;
  json_t *s;
  json_array_foreach(secrets, i, s) {
    json_t *meta = json_object_get(s, "metadata");
    const char *name = json_string_value(json_object_get(meta, "name"));
    if (!name || strcmp(name, TN_SECRET_DATABASE) != 0)
      continue;
    json_t *ann = json_object_get(meta, "annotations");
    const char *v = json_string_value(json_object_get(ann, TN_ANNOTATION_CREDENTIALS_VERSION));
    long long version = v ? atoll(v) : 0;
    char *pw = unb64(json_string_value(json_object_get(json_object_get(s, "data"), "password")));
    if (!pw)
      continue;
    if (st->password && version <= st->version) {
      tn_wipe_free_str(pw);
      continue;
    }
    tn_wipe_free_str(st->password);
    st->password = pw;
    st->version = version;
    snprintf(st->rotated_for, sizeof st->rotated_for, "%s",
             json_string_value(json_object_get(ann, TN_ANNOTATION_ROTATED_FOR)) ?: "");
    st->rotated_at = parse_time(json_string_value(json_object_get(ann, TN_ANNOTATION_ROTATED_AT)));
  }
}

static json_t *find_secret(json_t *secrets, const char *ns) {
  size_t i;
  json_t *s;
  json_array_foreach(secrets, i, s) {
    json_t *meta = json_object_get(s, "metadata");
    const char *n = json_string_value(json_object_get(meta, "name"));
    const char *sns = json_string_value(json_object_get(meta, "namespace"));
    if (n && sns && strcmp(n, TN_SECRET_DATABASE) == 0 && strcmp(sns, ns) == 0)
      return s;
  }
  return NULL;
}

struct secret_content {
  const char *host, *database, *user, *password, *sslmode, *uri, *ca_pem;
  int port;
  long long version;
  const char *rotated_for;
  const char *rotated_at;
};

static json_t *secret_body(const struct tn_tenant *t, const char *ns, const char *env,
                           const struct secret_content *c) {
  char port[16], version[32];
  snprintf(port, sizeof port, "%d", c->port);
  snprintf(version, sizeof version, "%lld", c->version);
  json_t *data = json_object();
  const char *keys[] = {"host", "port", "database", "user", "password", "sslmode", "uri", "ca.crt"};
  const char *vals[] = {c->host, port, c->database, c->user, c->password, c->sslmode, c->uri, c->ca_pem};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    if (!vals[i])
      continue;
    char *e = b64(vals[i]);
    json_object_set_new(data, keys[i], json_string(e ? e : ""));
    tn_wipe_free_str(e); /* base64 of a password or a URI that holds one */
  }
  return json_pack(
      "{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s,s:s},s:{s:s,s:s,s:s},s:[{s:s,s:s,s:s,s:s,s:b,s:b}]},s:s,s:o}",
      "apiVersion", "v1", "kind", "Secret", "metadata", "name", TN_SECRET_DATABASE, "namespace", ns, "labels",
      TN_LABEL_TENANT, t->name, TN_LABEL_ENVIRONMENT, env, TN_LABEL_MANAGED_BY, TN_MANAGED_BY, "annotations",
      TN_ANNOTATION_CREDENTIALS_VERSION, version, TN_ANNOTATION_ROTATED_FOR,
      c->rotated_for ? c->rotated_for : "", TN_ANNOTATION_ROTATED_AT, c->rotated_at, "ownerReferences",
      "apiVersion", TN_API_VERSION, "kind", "Tenant", "name", t->name, "uid", t->uid, "controller", 1,
      "blockOwnerDeletion", 1, "type", "Opaque", "data", data);
}

static bool secret_equal(json_t *observed, json_t *desired) {
  json_t *om = json_object_get(observed, "metadata"), *dm = json_object_get(desired, "metadata");
  if (!json_equal(json_object_get(observed, "data"), json_object_get(desired, "data")))
    return false;
  const char *sections[] = {"labels", "annotations"};
  for (int s = 0; s < 2; s++) {
    json_t *want = json_object_get(dm, sections[s]), *have = json_object_get(om, sections[s]);
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v) {
      if (!json_equal(v, json_object_get(have, k)))
        return false;
    }
  }
  return true;
}

/* Makes every environment's Secret hold c. Returns 0 or an error worth retrying. */
static int write_secrets(struct tn_reconciler *r, const struct tn_tenant *t, json_t *observed,
                         const struct secret_content *c, int *writes, struct tn_error *err) {
  for (size_t i = 0; i < t->n_environments; i++) {
    char ns[128];
    if (tn_namespace_name(t->name, t->environments[i], ns, sizeof ns, err))
      return err->code;
    json_t *want = secret_body(t, ns, t->environments[i], c);
    if (!want)
      return tn_error_set(err, -ENOMEM, "out of memory");
    json_t *have = find_secret(observed, ns);
    int rc = 0;
    if (!have) {
      rc = tn_kube_create(r->kube, &gvr_secrets, ns, want, NULL, err);
      (*writes)++;
      if (rc == TN_EEXISTS) {
        tn_error_set(err, TN_EEXISTS,
                     "Secret %s/%s exists and is not the operator's: delete or rename it so the tenant's "
                     "credentials can be stored there",
                     ns, TN_SECRET_DATABASE);
      }
    } else if (!secret_equal(have, want)) {
      json_object_set(json_object_get(want, "metadata"), "resourceVersion",
                      json_object_get(json_object_get(have, "metadata"), "resourceVersion"));
      rc = tn_kube_update(r->kube, &gvr_secrets, ns, want, NULL, NULL, err);
      (*writes)++;
    }
    json_decref(want);
    if (rc)
      return rc;
  }
  return 0;
}

/* ---- the step --------------------------------------------------------------------------------- */

struct server_conf {
  char *admin_uri, *ca_pem;
  struct tn_db_server s;
};

static void server_conf_cleanup(struct server_conf *c) {
  if (c->admin_uri) {
    explicit_bzero(c->admin_uri, strlen(c->admin_uri));
    free(c->admin_uri);
  }
  free(c->ca_pem);
  memset(c, 0, sizeof *c);
}

static int load_server(struct tn_reconciler *r, json_t *server, struct server_conf *c, struct tn_error *err) {
  c->s.name = json_string_value(json_object_get(server, "name"));
  c->s.host = json_string_value(json_object_get(server, "host"));
  c->s.port = (int)json_integer_value(json_object_get(server, "port"));
  c->s.sslmode = json_string_value(json_object_get(server, "sslMode"));
  json_t *ca = json_object_get(server, "caSecretRef");
  if (ca && !(c->ca_pem = secret_key(r, ca, "ca.crt", err)))
    return err->code ? err->code : TN_EINVALID;
  if (!(c->admin_uri = secret_key(r, json_object_get(server, "adminSecretRef"), "uri", err)))
    return err->code ? err->code : TN_EINVALID;
  c->s.ca_pem = c->ca_pem;
  c->s.admin_uri = c->admin_uri;
  return 0;
}

static const char *current_server(json_t *tenant_obj) {
  return json_string_value(
      json_object_get(json_object_get(json_object_get(tenant_obj, "status"), "database"), "server"));
}

void tn_tenant_db_reconcile(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                            enum tn_state next, const char *region, const struct tn_plan *plan,
                            struct tn_tenant_db_result *out) {
  struct tn_error err = {0};
  struct server_conf conf = {0};
  struct stored st = {0};
  struct tn_db_outcome oc = {0};
  json_t *region_obj = NULL, *secrets = NULL, *server = NULL;
  char *password = NULL, *uri = NULL;
  memset(out, 0, sizeof *out);
  if (!r->db || !region ||
      !(next == TN_STATE_ACTIVE || next == TN_STATE_SUSPENDED || next == TN_STATE_ARCHIVED))
    return;
  region_obj = tn_informer_get(r->regions, region);
  int rc = pick_server(region_obj, region, t->isolation, current_server(tenant_obj), &server, &err);
  if (rc == TN_ENOTFOUND && !json_object_get(json_object_get(region_obj, "spec"), "databaseServers") &&
      !current_server(tenant_obj))
    goto out; /* the region offers no database servers: nothing to report */
  if (rc) {
    fail(out, false, "NoDatabaseServer", "%s", err.message);
    goto out;
  }
  if (load_server(r, server, &conf, &err)) {
    fail(out, tn_error_is_transient(err.code), "DatabaseServerConfig", "%s", err.message);
    goto out;
  }

  struct tn_error serr = {0};
  secrets = tn_informer_list_by_index(r->secrets, TN_INDEX_TENANT, t->name, &serr);
  read_stored(secrets, &st);
  long long version = st.version;

  /* Rotation: on demand (a new value of the annotation) or on schedule. */
  const char *want_rotation = json_string_value(json_object_get(
      json_object_get(json_object_get(tenant_obj, "metadata"), "annotations"), TN_ANNOTATION_ROTATE));
  bool on_demand = want_rotation && *want_rotation && strcmp(want_rotation, st.rotated_for) != 0;
  double now = tn_wall_now();
  bool scheduled = r->rotation_period_s > 0 && st.password && st.rotated_at > 0 &&
                   now - st.rotated_at >= r->rotation_period_s;
  char rotated_at[32];
  tn_time_rfc3339(st.password && !on_demand && !scheduled && st.rotated_at > 0 ? st.rotated_at : now,
                  rotated_at, sizeof rotated_at);

  struct tn_db_names names;
  if (tn_db_names_for(t->name, t->isolation, conf.s.shared_database, &names, &err)) {
    fail(out, false, "InvalidSpec", "%s", err.message);
    goto out;
  }
  bool live = next == TN_STATE_ACTIVE || next == TN_STATE_SUSPENDED;
  if (live) {
    if (!st.password || on_demand || scheduled) {
      char fresh[TN_DB_PASSWORD_LEN + 1];
      if (tn_db_password_new(fresh, sizeof fresh)) {
        fail(out, true, "DatabaseError", "no randomness for a new password");
        goto out;
      }
      password = strdup(fresh);
      explicit_bzero(fresh, sizeof fresh);
      version++;
      tn_log(TN_LOG_INFO,
             &(struct tn_log_fields){.controller = "tenant", .tenant = t->name, .generation = -1},
             "new database credentials (version %lld): %s", version,
             !st.password ? "first password"
             : on_demand  ? "rotation requested"
                          : "scheduled rotation");
    } else {
      password = strdup(st.password);
    }
    uri = tn_db_uri(names.role, password, conf.s.host, conf.s.port ? conf.s.port : 5432, names.database,
                    conf.s.sslmode ? conf.s.sslmode : "verify-full");
    struct secret_content c = {.host = conf.s.host,
                               .port = conf.s.port ? conf.s.port : 5432,
                               .database = names.database,
                               .user = names.role,
                               .password = password,
                               .sslmode = conf.s.sslmode ? conf.s.sslmode : "verify-full",
                               .uri = uri,
                               .ca_pem = conf.ca_pem,
                               .version = version,
                               .rotated_for = on_demand ? want_rotation : st.rotated_for,
                               .rotated_at = rotated_at};
    /* The Secrets first: a password is never set on the role before it is stored. */
    if ((rc = write_secrets(r, t, secrets, &c, &out->writes, &err))) {
      fail(out, rc != TN_EEXISTS, rc == TN_EEXISTS ? "Conflict" : "SecretWriteFailed", "%s", err.message);
      goto out;
    }
  }

  struct tn_db_tenant dt = {.id = t->name,
                            .mode = t->isolation,
                            .state = next,
                            .connections = plan ? plan->quotas.connections : -1,
                            .password = password,
                            .credentials_version = version};
  rc = tn_db_converge(r->db, &conf.s, &dt, &oc, &err);
  if (rc) {
    fail(out, tn_error_is_transient(rc), tn_error_is_transient(rc) ? "DatabaseUnavailable" : "DatabaseError",
         "%s", err.message);
    goto out;
  }
  out->configured = true;
  out->status = "True";
  snprintf(out->reason, sizeof out->reason, "%s", next == TN_STATE_ARCHIVED ? "Archived" : "Converged");
  snprintf(out->message, sizeof out->message, "%s %s on server %s%s", names.schema[0] ? "schema" : "database",
           names.schema[0] ? names.schema : names.database, conf.s.name,
           next == TN_STATE_SUSPENDED  ? " (login disabled while suspended)"
           : next == TN_STATE_ARCHIVED ? " (access revoked, data kept)"
                                       : "");
  out->database =
      json_pack("{s:s,s:s,s:s,s:s,s:I}", "server", conf.s.name, "database", names.database, "schema",
                names.schema, "role", names.role, "credentialsVersion", (json_int_t)version);
  if (r->rotation_period_s > 0 && live) {
    double due = (password && strcmp(rotated_at, "") ? parse_time(rotated_at) : now) + r->rotation_period_s;
    out->requeue_after_s = due > now ? due - now : 1;
  }
out:
  tn_db_outcome_cleanup(&oc);
  if (password) {
    explicit_bzero(password, strlen(password));
    free(password);
  }
  if (uri) {
    explicit_bzero(uri, strlen(uri));
    free(uri);
  }
  if (st.password) {
    explicit_bzero(st.password, strlen(st.password));
    free(st.password);
  }
  server_conf_cleanup(&conf);
  json_decref(secrets);
  json_decref(region_obj);
}

int tn_tenant_db_teardown(struct tn_reconciler *r, json_t *tenant_obj, struct tn_tenant_db_result *out) {
  struct tn_error err = {0};
  struct server_conf conf = {0};
  json_t *region_obj = NULL, *server = NULL;
  memset(out, 0, sizeof *out);
  const char *cur = current_server(tenant_obj);
  json_t *status = json_object_get(tenant_obj, "status");
  const char *region = json_string_value(json_object_get(json_object_get(status, "placement"), "region"));
  const char *id = json_string_value(json_object_get(json_object_get(tenant_obj, "metadata"), "name"));
  if (!r->db || !cur || !region)
    return 0; /* it never had a database */
  region_obj = tn_informer_get(r->regions, region);
  enum tn_isolation mode = TN_ISOLATION_SHARED;
  tn_isolation_parse(json_string_value(json_object_get(json_object_get(status, "placement"), "isolation")),
                     &mode);
  int rc = pick_server(region_obj, region, mode, cur, &server, &err);
  if (rc == 0)
    rc = load_server(r, server, &conf, &err);
  if (rc == 0)
    rc = tn_db_teardown(r->db, &conf.s, id, NULL, &err);
  if (rc)
    fail(out, tn_error_is_transient(rc) || rc == TN_ENOTFOUND, "DatabaseTeardownFailed", "%s", err.message);
  server_conf_cleanup(&conf);
  json_decref(region_obj);
  return rc;
}
