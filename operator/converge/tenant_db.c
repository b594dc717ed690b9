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
#include "converge/owned_apply.h"
#include "converge/reconciler.h"
#include "runtime/events.h"
#include "runtime/log.h"
#include "tenancy/dbplan.h"
#include "tenancy/desired.h"
#include "tenancy/policy.h"
#include "util/b64.h"
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

/* ---- the region's servers and their Secrets --------------------------------------------------- */

bool tn_region_secret_namespace_allowed(const char *allowed, const char *ns) {
  if (!allowed)
    allowed = TN_DEFAULT_OPERATOR_NAMESPACE;
  size_t n = strlen(ns);
  for (const char *p = allowed; n && *p;) {
    size_t len = strcspn(p, ",");
    if (len == n && strncmp(p, ns, n) == 0)
      return true;
    p += len;
    p += *p == ',';
  }
  return false;
}

/* FIELD names the reference in messages ("adminSecretRef"). */
static char *secret_key(struct tn_reconciler *r, json_t *server, const char *field, const char *key,
                        struct tn_error *err) {
  json_t *ref = json_object_get(server, field);
  const char *ns = json_string_value(json_object_get(ref, "namespace"));
  const char *name = json_string_value(json_object_get(ref, "name"));
  const char *sv = json_string_value(json_object_get(server, "name"));
  if (!ns || !name) {
    tn_error_set(err, TN_EINVALID, "database server %s: %s needs namespace and name", sv ? sv : "", field);
    return NULL;
  }
  /* A Region may point the operator only at Secrets of its own namespace (or an allowed one):
   * otherwise writing a Region would be a way to make the operator read, and use as a database
   * password or CA, any Secret in the cluster. Refused before anything is read. */
  if (!tn_region_secret_namespace_allowed(r->region_secret_namespaces, ns)) {
    const char *allowed =
        r->region_secret_namespaces ? r->region_secret_namespaces : TN_DEFAULT_OPERATOR_NAMESPACE;
    tn_error_set(err, TN_EINVALID,
                 "database server %s: %s names Secret %s/%s, outside the namespaces the operator reads "
                 "Region Secrets from (%s); move the Secret there, or start the operator with "
                 "--region-secret-namespaces=%s",
                 sv ? sv : "", field, ns, name, allowed, ns);
    return NULL;
  }
  json_t *sec = NULL;
  if (tn_kube_get(r->kube, &gvr_secrets, ns, name, &sec, err)) {
    tn_error_prefix(err, "Secret %s/%s", ns, name);
    return NULL;
  }
  char *v = tn_b64_decode_text(json_string_value(json_object_get(json_object_get(sec, "data"), key)));
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
                       const char *require_tls_policy, json_t **server, struct tn_error *err) {
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
    choices[i].ssl_mode = json_string_value(json_object_get(s, "sslMode"));
  }
  size_t idx = 0;
  int rc = tn_db_pick_server_policy(choices, n, mode, current, region, require_tls_policy, &idx, err);
  free(choices);
  if (rc == 0)
    *server = json_array_get(servers, idx);
  return rc;
}

/* ---- the tenant-database Secrets ------------------------------------------------------------- */

/* The canonical credential is the Secret <operator namespace>/tenant-database-<id> (type
 * TN_SECRET_TYPE_DATABASE, controlled by the Tenant): no tenant can write there. The Secrets
 * tenant-database in the tenant's namespaces are copies made from it, never read back, except
 * once, to adopt an existing installation's password (see migrate()). */
struct stored {
  char *password;
  long long version;
  char rotated_for[256];
  double rotated_at; /* wall seconds; 0 unknown */
};

static void stored_cleanup(struct stored *st) {
  if (st->password) {
    explicit_bzero(st->password, strlen(st->password));
    free(st->password);
  }
  memset(st, 0, sizeof *st);
}

static double parse_time(const char *s) {
  struct tm tm = {0};
  if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm))
    return 0;
  return (double)timegm(&tm);
}

/* A credentials version: 1 to TN_CREDENTIALS_VERSION_MAX; 0 absent; -1 not a plausible one (a
 * number the operator never writes, e.g. a planted "huge" version). */
static long long parse_version(const char *v) {
  if (!v || !*v)
    return 0;
  char *end = NULL;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || !end || *end || n < 1 || n > TN_CREDENTIALS_VERSION_MAX)
    return -1;
  return n;
}

static const char *meta_str(json_t *obj, const char *key) {
  return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

/* Whether obj's controller owner reference is the Tenant with this uid. */
static bool controlled_by(json_t *obj, const char *uid) {
  json_t *refs = json_object_get(json_object_get(obj, "metadata"), "ownerReferences");
  size_t i;
  json_t *ref;
  if (!uid || !*uid)
    return false;
  json_array_foreach(refs, i, ref) {
    const char *kind = json_string_value(json_object_get(ref, "kind"));
    const char *api = json_string_value(json_object_get(ref, "apiVersion"));
    const char *ruid = json_string_value(json_object_get(ref, "uid"));
    if (kind && api && ruid && strcmp(kind, "Tenant") == 0 &&
        strncmp(api, TN_API_GROUP "/", sizeof TN_API_GROUP) == 0 && strcmp(ruid, uid) == 0 &&
        json_is_true(json_object_get(ref, "controller")))
      return true;
  }
  return false;
}

static bool managed_by_us(json_t *obj) {
  const char *m = json_string_value(
      json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), TN_LABEL_MANAGED_BY));
  return m && strcmp(m, TN_MANAGED_BY) == 0;
}

/* Whether ns is one of the tenant's namespaces (spec.environments). */
static bool tenant_namespace(const struct tn_tenant *t, const char *ns) {
  for (size_t i = 0; ns && i < t->n_environments; i++) {
    char name[128];
    struct tn_error e = {0};
    if (tn_namespace_name(t->name, t->environments[i], name, sizeof name, &e) == 0 && strcmp(name, ns) == 0)
      return true;
  }
  return false;
}

/* A copy the tenant's own: named tenant-database, in one of its namespaces, controlled by it. */
static bool own_copy(const struct tn_tenant *t, json_t *s) {
  const char *name = meta_str(s, "name");
  return name && strcmp(name, TN_SECRET_DATABASE) == 0 && tenant_namespace(t, meta_str(s, "namespace")) &&
         controlled_by(s, t->uid);
}

/* Reads password and bookkeeping from a Secret (canonical or copy) into st. Returns 0, or -1
 * when it holds no valid password or no plausible version. */
static int stored_from(json_t *s, struct stored *st) {
  json_t *ann = json_object_get(json_object_get(s, "metadata"), "annotations");
  long long version =
      parse_version(json_string_value(json_object_get(ann, TN_ANNOTATION_CREDENTIALS_VERSION)));
  char *pw = tn_b64_decode_text(json_string_value(json_object_get(json_object_get(s, "data"), "password")));
  if (!pw || version < 1 || !tn_db_password_valid(pw)) {
    if (pw) {
      explicit_bzero(pw, strlen(pw));
      free(pw);
    }
    return -1;
  }
  stored_cleanup(st);
  st->password = pw;
  st->version = version;
  snprintf(st->rotated_for, sizeof st->rotated_for, "%s",
           json_string_value(json_object_get(ann, TN_ANNOTATION_ROTATED_FOR)) ?: "");
  st->rotated_at = parse_time(json_string_value(json_object_get(ann, TN_ANNOTATION_ROTATED_AT)));
  return 0;
}

static void tenant_event(struct tn_reconciler *r, json_t *tenant_obj, const char *type, const char *reason,
                         const char *note) {
  struct tn_object_ref ref = tn_object_ref_from(tenant_obj, "Tenant");
  tn_recorder_eventf(r->recorder, &ref, type, reason, "Reconcile", "%s", note);
}

/* Every Secret named tenant-database that claims this tenant (label) but is not one of its own
 * copies is ignored: logged (never its data) and evented as a Warning on the Tenant. */
static void report_foreign(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                           json_t *secrets) {
  size_t i;
  json_t *s;
  json_array_foreach(secrets, i, s) {
    const char *name = meta_str(s, "name"), *ns = meta_str(s, "namespace");
    if (!name || strcmp(name, TN_SECRET_DATABASE) != 0 || own_copy(t, s))
      continue;
    char note[512];
    snprintf(
        note, sizeof note,
        "Secret %s/%s claims tenant %s (label %s) but is not a copy the operator made for it (not in "
        "the tenant's namespaces or not controlled by the Tenant): ignored, its credentials are not used",
        ns ? ns : "?", name, t->name, TN_LABEL_TENANT);
    tn_log(TN_LOG_WARN, &(struct tn_log_fields){.controller = "tenant", .tenant = t->name, .generation = -1},
           "%s", note);
    tenant_event(r, tenant_obj, TN_EVENT_WARNING, TN_REASON_FOREIGN_CREDENTIAL, note);
  }
}

/* Whether a Secret named tenant-database that is not the tenant's own copy holds password. */
static bool foreign_holds(const struct tn_tenant *t, json_t *secrets, const char *password) {
  size_t i;
  json_t *s;
  json_array_foreach(secrets, i, s) {
    const char *name = meta_str(s, "name");
    if (!name || strcmp(name, TN_SECRET_DATABASE) != 0 || own_copy(t, s))
      continue;
    char *pw = tn_b64_decode_text(json_string_value(json_object_get(json_object_get(s, "data"), "password")));
    bool same = pw && strcmp(pw, password) == 0;
    if (pw) {
      explicit_bzero(pw, strlen(pw));
      free(pw);
    }
    if (same)
      return true;
  }
  return false;
}

/* The canonical Secret <ns>/<name>: *obj gets it (new reference) when it exists; st is filled
 * when it is ours, controlled by this Tenant (uid) and holds a valid password. Returns 0,
 * TN_ENOTFOUND (absent), TN_EEXISTS (a Secret of another type: not ours) or an API error. */
static int read_canonical(struct tn_reconciler *r, const char *ns, const char *name, const char *uid,
                          json_t **obj, struct stored *st, struct tn_error *err) {
  int rc = tn_kube_get(r->kube, &gvr_secrets, ns, name, obj, err);
  if (rc) {
    if (rc != TN_ENOTFOUND)
      tn_error_prefix(err, "reading Secret %s/%s", ns, name);
    return rc;
  }
  const char *type = json_string_value(json_object_get(*obj, "type"));
  if (!type || strcmp(type, TN_SECRET_TYPE_DATABASE) != 0)
    return tn_error_set(
        err, TN_EEXISTS,
        "Secret %s/%s exists with type %s, not %s: it is not the operator's; delete or rename it", ns, name,
        type ? type : "(none)", TN_SECRET_TYPE_DATABASE);
  if (!controlled_by(*obj, uid)) /* left by an earlier Tenant with this id: replaced */
    return 0;
  stored_from(*obj, st);
  return 0;
}

static json_t *canonical_body(const struct tn_tenant *t, const char *ns, const char *name,
                              const char *password, long long version, const char *rotated_for,
                              const char *rotated_at) {
  char v[32];
  snprintf(v, sizeof v, "%lld", version);
  char *pw = b64(password);
  if (!pw)
    return NULL;
  json_t *body = json_pack(
      "{s:s,s:s,s:s,s:{s:s,s:s,s:{s:s,s:s},s:{s:s,s:s,s:s},s:[{s:s,s:s,s:s,s:s,s:b,s:b}]},s:{s:s}}",
      "apiVersion", "v1", "kind", "Secret", "type", TN_SECRET_TYPE_DATABASE, "metadata", "name", name,
      "namespace", ns, "labels", TN_LABEL_TENANT, t->name, TN_LABEL_MANAGED_BY, TN_MANAGED_BY, "annotations",
      TN_ANNOTATION_CREDENTIALS_VERSION, v, TN_ANNOTATION_ROTATED_FOR, rotated_for ? rotated_for : "",
      TN_ANNOTATION_ROTATED_AT, rotated_at, "ownerReferences", "apiVersion", TN_API_VERSION, "kind", "Tenant",
      "name", t->name, "uid", t->uid, "controller", 1, "blockOwnerDeletion", 1, "data", "password", pw);
  explicit_bzero(pw, strlen(pw));
  free(pw);
  return body;
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

/* observed holds desired's data, labels and annotations, and is controlled by uid. */
static bool secret_equal(json_t *observed, json_t *desired, const char *uid) {
  json_t *om = json_object_get(observed, "metadata"), *dm = json_object_get(desired, "metadata");
  if (!json_equal(json_object_get(observed, "data"), json_object_get(desired, "data")) ||
      !controlled_by(observed, uid))
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

/* Whether obj has a controller owner reference other than the Tenant with this uid. */
static bool other_controller(json_t *obj, const char *uid) {
  json_t *refs = json_object_get(json_object_get(obj, "metadata"), "ownerReferences");
  size_t i;
  json_t *ref;
  json_array_foreach(refs, i, ref) {
    const char *ruid = json_string_value(json_object_get(ref, "uid"));
    if (json_is_true(json_object_get(ref, "controller")) && (!ruid || !uid || strcmp(ruid, uid) != 0))
      return true;
  }
  return false;
}

/* Brings Secret ns/<name of want> (observed as have) to want with server-side apply, field manager
 * tenancy-operator, the observed resourceVersion as precondition (owned_apply.h): labels,
 * annotations and data keys that other managers added are kept. One still controlled by an
 * earlier Tenant of this name (an owner reference an apply cannot take away, and the API server
 * refuses two controllers) is replaced: deleted with uid and resourceVersion preconditions, then
 * created. *writes counts the requests that may have written. */
static int update_secret(struct tn_reconciler *r, const char *ns, json_t *have, json_t *want, const char *uid,
                         int *writes, struct tn_error *err) {
  if (secret_equal(have, want, uid))
    return 0;
  const char *rv = meta_str(have, "resourceVersion");
  if (other_controller(have, uid)) {
    const char *name = meta_str(have, "name");
    struct tn_delete_opts o = {.precondition_uid = meta_str(have, "uid"),
                               .precondition_resource_version = rv};
    (*writes)++;
    int rc = tn_kube_delete(r->kube, &gvr_secrets, ns, name ? name : "", &o, err);
    if (rc && rc != TN_ENOTFOUND)
      return rc;
    tn_error_clear(err);
    (*writes)++;
    return tn_owned_create(r->kube, &gvr_secrets, ns, want, err);
  }
  (*writes)++;
  return tn_owned_apply(r->kube, &gvr_secrets, ns, want, rv, err);
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
    json_t *have = find_secret(observed, ns), *got = NULL;
    int rc = 0;
    if (!have) {
      rc = tn_owned_create(r->kube, &gvr_secrets, ns, want, err);
      (*writes)++;
      if (rc == TN_EEXISTS && tn_kube_get(r->kube, &gvr_secrets, ns, TN_SECRET_DATABASE, &got, NULL) == 0 &&
          (controlled_by(got, t->uid) || managed_by_us(got))) {
        /* Our copy, relabelled or re-owned (so the cache no longer files it under this tenant):
         * restore it, in the tenant's own namespace. */
        tn_error_clear(err);
        have = got;
        rc = 0;
      } else if (rc == TN_EEXISTS) {
        tn_error_set(err, TN_EEXISTS,
                     "Secret %s/%s exists and is not the operator's: delete or rename it so the tenant's "
                     "credentials can be stored there",
                     ns, TN_SECRET_DATABASE);
      }
    }
    if (have && rc == 0)
      rc = update_secret(r, ns, have, want, t->uid, writes, err);
    json_decref(got);
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
  if (ca && !(c->ca_pem = secret_key(r, server, "caSecretRef", "ca.crt", err)))
    return err->code ? err->code : TN_EINVALID;
  if (!(c->admin_uri = secret_key(r, server, "adminSecretRef", "uri", err)))
    return err->code ? err->code : TN_EINVALID;
  c->s.ca_pem = c->ca_pem;
  c->s.admin_uri = c->admin_uri;
  return 0;
}

static const char *current_server(json_t *tenant_obj) {
  return json_string_value(
      json_object_get(json_object_get(json_object_get(tenant_obj, "status"), "database"), "server"));
}

/* No canonical Secret yet (an installation from before it existed, or a cluster administrator
 * deleted it): the password of the tenant's own copies is adopted only if the newest of them
 * (tenant-database in one of the tenant's namespaces, controlled by this Tenant, a plausible
 * version) holds exactly the password the role has (its SCRAM verifier), and no Secret that is
 * not the tenant's own copy holds it too. Otherwise st stays without password (a new one is made)
 * and its version is the highest seen, so versions keep growing. Returns 0 or a database error. */
static int migrate(struct tn_reconciler *r, const struct tn_tenant *t, json_t *secrets,
                   const struct tn_db_server *srv, struct stored *st, bool *adopted, struct tn_error *err) {
  json_t *best = NULL;
  long long best_version = 0, max_version = 0;
  size_t i;
  json_t *s;
  *adopted = false;
  json_array_foreach(secrets, i, s) {
    if (!own_copy(t, s))
      continue;
    long long v = parse_version(json_string_value(json_object_get(
        json_object_get(json_object_get(s, "metadata"), "annotations"), TN_ANNOTATION_CREDENTIALS_VERSION)));
    if (v > max_version)
      max_version = v;
    if (v > best_version) {
      best = s;
      best_version = v;
    }
  }
  struct tn_log_fields lf = {.controller = "tenant", .tenant = t->name, .generation = -1};
  struct stored cand = {0};
  const char *why = "no copy of it to adopt";
  if (best && stored_from(best, &cand) == 0) {
    bool matches = false;
    int rc = 0;
    if (foreign_holds(t, secrets, cand.password))
      why = "a Secret that is not the tenant's holds the same password";
    else if ((rc = tn_db_password_check(r->db, srv, t->name, cand.password, &matches, err))) {
      stored_cleanup(&cand);
      return rc;
    } else if (!matches)
      why = "the role does not hold the password of the newest copy (or it cannot be checked)";
    if (matches) {
      tn_log(TN_LOG_INFO, &lf,
             "database credentials (version %lld) adopted from Secret %s/%s: stored in the "
             "operator's namespace from now on",
             cand.version, meta_str(best, "namespace"), TN_SECRET_DATABASE);
      *st = cand;
      *adopted = true;
      return 0;
    }
  } else if (best) {
    why = "the newest copy holds no valid password";
  }
  stored_cleanup(&cand);
  if (max_version > st->version)
    st->version = max_version;
  tn_log(TN_LOG_INFO, &lf, "no canonical database credentials: a new password is made (%s)", why);
  return 0;
}

json_t *tn_tenant_db_server(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                            const char *region, const char *require_tls_policy) {
  return tn_tenant_db_server_in(r, tenant_obj, t, region, NULL, require_tls_policy);
}

json_t *tn_tenant_db_server_in(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                               const char *region, json_t *given, const char *require_tls_policy) {
  if (!r->db || !region)
    return NULL;
  json_t *region_obj = given ? json_incref(given) : tn_informer_get(r->regions, region), *server = NULL;
  if (pick_server(region_obj, region, t->isolation, current_server(tenant_obj), require_tls_policy, &server,
                  NULL))
    server = NULL;
  json_incref(server);
  json_decref(region_obj);
  return server;
}

void tn_tenant_db_reconcile(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                            enum tn_state next, const char *region, const struct tn_plan *plan,
                            const char *require_tls_policy, struct tn_tenant_db_result *out) {
  tn_tenant_db_reconcile_in(r, tenant_obj, t, next, region, NULL, plan, require_tls_policy, out);
}

void tn_tenant_db_reconcile_in(struct tn_reconciler *r, json_t *tenant_obj, const struct tn_tenant *t,
                               enum tn_state next, const char *region, json_t *given,
                               const struct tn_plan *plan, const char *require_tls_policy,
                               struct tn_tenant_db_result *out) {
  struct tn_error err = {0};
  struct server_conf conf = {0};
  struct stored st = {0};
  struct tn_db_outcome oc = {0};
  json_t *region_obj = NULL, *secrets = NULL, *server = NULL, *canon = NULL;
  char *password = NULL, *uri = NULL;
  memset(out, 0, sizeof *out);
  if (!r->db || !region ||
      !(next == TN_STATE_ACTIVE || next == TN_STATE_SUSPENDED || next == TN_STATE_ARCHIVED))
    return;
  region_obj = given ? json_incref(given) : tn_informer_get(r->regions, region);
  int rc = pick_server(region_obj, region, t->isolation, current_server(tenant_obj), require_tls_policy,
                       &server, &err);
  if (rc == TN_ENOTFOUND && !json_object_get(json_object_get(region_obj, "spec"), "databaseServers") &&
      !current_server(tenant_obj))
    goto out; /* the region offers no database servers: nothing to report */
  if (rc) {
    fail(out, false, rc == TN_EFORBIDDEN ? TN_REASON_POLICY_DENIED : "NoDatabaseServer", "%s", err.message);
    goto out;
  }
  if (load_server(r, server, &conf, &err)) {
    fail(out, tn_error_is_transient(err.code), "DatabaseServerConfig", "%s", err.message);
    goto out;
  }

  const char *opns = r->operator_namespace ? r->operator_namespace : TN_CREDENTIALS_NAMESPACE;
  char cname[128];
  snprintf(cname, sizeof cname, "%s%s", TN_SECRET_DATABASE_CANONICAL_PREFIX, t->name);
  struct tn_error serr = {0};
  secrets = tn_informer_list_by_index(r->secrets, TN_INDEX_TENANT, t->name, &serr);
  report_foreign(r, tenant_obj, t, secrets);
  rc = read_canonical(r, opns, cname, t->uid, &canon, &st, &err);
  if (rc == TN_EEXISTS) {
    fail(out, false, "Conflict", "%s", err.message);
    goto out;
  }
  if (rc && rc != TN_ENOTFOUND) {
    fail(out, true, "SecretReadFailed", "%s", err.message);
    goto out;
  }
  tn_error_clear(&err);
  long long status_version = (long long)json_integer_value(json_object_get(
      json_object_get(json_object_get(tenant_obj, "status"), "database"), "credentialsVersion"));
  if (status_version < 0 || status_version > TN_CREDENTIALS_VERSION_MAX)
    status_version = 0;
  bool live = next == TN_STATE_ACTIVE || next == TN_STATE_SUSPENDED;
  if (live && !st.password) {
    bool adopted = false;
    if ((rc = migrate(r, t, secrets, &conf.s, &st, &adopted, &err))) {
      fail(out, tn_error_is_transient(rc),
           tn_error_is_transient(rc) ? "DatabaseUnavailable" : "DatabaseError", "%s", err.message);
      goto out;
    }
  }
  long long version = st.version > status_version ? st.version : status_version;

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
  if (!live && canon) {
    /* Archived: the password is removed from the role and its canonical copy is destroyed, so a
     * restore gets a new one (copies went with the namespaces). */
    if ((rc = tn_kube_delete(r->kube, &gvr_secrets, opns, cname,
                             &(struct tn_delete_opts){.precondition_uid = meta_str(canon, "uid")}, &err)) &&
        rc != TN_ENOTFOUND) {
      fail(out, tn_error_is_transient(rc), "SecretWriteFailed", "deleting Secret %s/%s: %s", opns, cname,
           err.message);
      goto out;
    }
    out->writes++;
    tn_error_clear(&err);
  }
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
      if (st.password) { /* a rotation, not the first password: audited by the reconcile */
        out->rotated = true;
        out->rotated_version = version;
        snprintf(out->rotated_why, sizeof out->rotated_why, "%s", on_demand ? "on demand" : "on schedule");
      }
      tn_log(TN_LOG_INFO,
             &(struct tn_log_fields){.controller = "tenant", .tenant = t->name, .generation = -1},
             "new database credentials (version %lld): %s", version,
             !st.password ? "first password"
             : on_demand  ? "rotation requested"
                          : "scheduled rotation");
    } else {
      password = strdup(st.password);
    }
    if (!password) {
      fail(out, true, "DatabaseError", "out of memory");
      goto out;
    }
    /* The canonical Secret first: a password is never set on the role (nor copied) before it is
     * stored where no tenant can write. */
    const char *rotated_for = on_demand ? want_rotation : st.rotated_for;
    json_t *want = canonical_body(t, opns, cname, password, version, rotated_for, rotated_at);
    if (!want) {
      fail(out, true, "DatabaseError", "out of memory");
      goto out;
    }
    if (!canon) {
      rc = tn_owned_create(r->kube, &gvr_secrets, opns, want, &err);
      out->writes++;
    } else {
      rc = update_secret(r, opns, canon, want, t->uid, &out->writes, &err);
    }
    json_decref(want);
    if (rc) {
      /* EEXISTS or a conflict: another writer got there first; the next pass reads theirs. */
      fail(out, true, "SecretWriteFailed", "writing Secret %s/%s: %s", opns, cname, err.message);
      goto out;
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
                               .rotated_for = rotated_for,
                               .rotated_at = rotated_at};
    /* Then the copies in the tenant's namespaces. */
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
  stored_cleanup(&st);
  server_conf_cleanup(&conf);
  json_decref(canon);
  json_decref(secrets);
  json_decref(region_obj);
}

/* Deletes the tenant's canonical credential Secret when the cache shows one of ours (so a
 * tombstone costs no request). */
static int delete_canonical(struct tn_reconciler *r, const char *id, struct tn_error *err) {
  const char *opns = r->operator_namespace ? r->operator_namespace : TN_CREDENTIALS_NAMESPACE;
  char cname[128];
  if (!id || !r->secrets)
    return 0;
  snprintf(cname, sizeof cname, "%s%s", TN_SECRET_DATABASE_CANONICAL_PREFIX, id);
  json_t *secrets = tn_informer_list_by_index(r->secrets, TN_INDEX_TENANT, id, NULL);
  int rc = 0;
  size_t i;
  json_t *s;
  json_array_foreach(secrets, i, s) {
    const char *ns = meta_str(s, "namespace"), *name = meta_str(s, "name");
    const char *type = json_string_value(json_object_get(s, "type"));
    if (!ns || !name || !type || strcmp(ns, opns) != 0 || strcmp(name, cname) != 0 ||
        strcmp(type, TN_SECRET_TYPE_DATABASE) != 0)
      continue;
    rc = tn_kube_delete(r->kube, &gvr_secrets, opns, cname,
                        &(struct tn_delete_opts){.precondition_uid = meta_str(s, "uid")}, err);
    if (rc == TN_ENOTFOUND || rc == TN_ECONFLICT) { /* gone, or replaced since: the next pass sees */
      tn_error_clear(err);
      rc = 0;
    }
    if (rc)
      tn_error_prefix(err, "deleting Secret %s/%s", opns, cname);
    break;
  }
  json_decref(secrets);
  return rc;
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
  int rc = delete_canonical(r, id, &err);
  if (rc) {
    fail(out, tn_error_is_transient(rc), "DatabaseTeardownFailed", "%s", err.message);
    return rc;
  }
  if (!r->db || !cur || !region)
    return 0; /* it never had a database */
  region_obj = tn_informer_get(r->regions, region);
  enum tn_isolation mode = TN_ISOLATION_SHARED;
  tn_isolation_parse(json_string_value(json_object_get(json_object_get(status, "placement"), "isolation")),
                     &mode);
  /* The database lives on a server of the Region it was placed in: without that Region, or
   * without that server in it, it cannot be dropped. Say what is missing and both ways out;
   * the Region watch retries at once when it comes back. */
  if (!region_obj)
    rc = tn_error_set(&err, TN_ENOTFOUND,
                      "the tenant's database is on server %s of Region %s, and no Region named %s exists any "
                      "more, so it cannot be dropped. To fix: recreate Region %s with that server in "
                      "spec.databaseServers (the drop then completes), or, to leave the database on the "
                      "server, remove the finalizer " TN_FINALIZER " from the tenant",
                      cur, region, region, region);
  else if (json_array_size(json_object_get(json_object_get(region_obj, "spec"), "databaseServers")) == 0)
    rc = tn_error_set(
        &err, TN_ENOTFOUND,
        "the tenant's database is on server %s, and Region %s lists no databaseServers any "
        "more, so it cannot be dropped. To fix: put server %s back into the Region's "
        "spec.databaseServers, or, to leave the database on the server, remove the finalizer " TN_FINALIZER
        " from the tenant",
        cur, region, cur);
  else
    rc = pick_server(region_obj, region, mode, cur, NULL, &server, &err);
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

/* ---- MIGRATION (issue 16): the server loading and choice, for converge/migration.c ----------- */

int tn_tenant_db_load_server(struct tn_reconciler *r, json_t *server, struct tn_db_server_conf *c,
                             struct tn_error *err) {
  struct server_conf sc = {0};
  int rc = load_server(r, server, &sc, err);
  c->admin_uri = sc.admin_uri;
  c->ca_pem = sc.ca_pem;
  c->s = sc.s;
  return rc;
}

void tn_db_server_conf_cleanup(struct tn_db_server_conf *c) {
  if (!c)
    return;
  struct server_conf sc = {.admin_uri = c->admin_uri, .ca_pem = c->ca_pem};
  server_conf_cleanup(&sc);
  memset(c, 0, sizeof *c);
}

int tn_tenant_db_pick_server(json_t *region_obj, const char *region, enum tn_isolation mode,
                             const char *current, json_t **server, struct tn_error *err) {
  return pick_server(region_obj, region, mode, current, NULL, server, err);
}
