#define _GNU_SOURCE /* strptime, timegm */
/* tenant_keys.c - the keys step of the tenant reconcile and the Secret-backed local KMS (see
 * tenant_keys.h and docs/keys.md).
 *
 * A data key exists in clear only in this process, between RAND_bytes and the KMS's wrap (or an
 * unwrap and the caller's use), in buffers wiped right after; the Secrets, the logs, the events,
 * the audit trail and the status only ever see envelopes, versions and KEK ids. */
#include "converge/tenant_keys.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "runtime/log.h"
#include "tenancy/desired.h"
#include "tenancy/tenant.h"
#include "util/clock.h"
#include "util/uuid.h"
#include "util/wipe.h"

static const struct tn_gvr gvr_secrets = {"", "v1", "secrets", true};

#define DEK_PREFIX "dek-"
#define KEK_CURRENT "current"
#define MAX_TEXT 65536 /* the longest Secret value decoded as text */

/* ---- small helpers ------------------------------------------------------------------------------ */

static char *b64(const unsigned char *p, size_t n) {
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (out)
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
  return out;
}

/* Frees a string that held key material (wiped first). */
static void free_secret(char *s) {
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

/* Decodes base64 s into a new buffer; *len its length (the buffer is NUL-terminated too).
 * NULL for bad base64, empty or overlong input. */
static unsigned char *unb64(const char *s, size_t *len) {
  size_t n = s ? strlen(s) : 0;
  if (!n || n % 4 || n > MAX_TEXT)
    return NULL;
  unsigned char *out = malloc(n / 4 * 3 + 1);
  if (!out)
    return NULL;
  int l = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
  if (l < 0) {
    tn_wipe_free(out);
    return NULL;
  }
  l -= (s[n - 1] == '=') + (s[n - 2] == '=');
  out[l] = '\0';
  *len = (size_t)l;
  return out;
}

/* "<prefix><n>" with n a positive decimal without leading zero -> n; 0 when s is not that. */
static long long numbered(const char *s, const char *prefix) {
  size_t pl = strlen(prefix);
  if (strncmp(s, prefix, pl) != 0)
    return 0;
  const char *d = s + pl;
  if (*d < '1' || *d > '9')
    return 0;
  long long v = 0;
  for (; *d; d++) {
    if (*d < '0' || *d > '9' || v > (LLONG_MAX - 9) / 10)
      return 0;
    v = v * 10 + (*d - '0');
  }
  return v;
}

/* A positive decimal (trailing whitespace allowed: `kubectl create secret --from-file` keeps a
 * file's newline) -> its value; 0 when s is not one. */
static long long positive(const char *s) {
  char buf[40];
  snprintf(buf, sizeof buf, "n%s", s ? s : "");
  for (size_t n = strlen(buf); n > 1 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\r'); n--)
    buf[n - 1] = '\0';
  return numbered(buf, "n");
}

static double parse_time(const char *s) {
  struct tm tm = {0};
  const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
  if (!end || *end)
    return 0;
  return (double)timegm(&tm);
}

static const char *str_at(json_t *obj, const char *a, const char *b) {
  json_t *v = json_object_get(obj, a);
  return json_string_value(b ? json_object_get(v, b) : v);
}

/* A deterministic id for one key change: SHA-256 of the tenant uid, what changes, the version
 * after and the KEK, as a UUID (version 8). A retry of the same change gets the same id. */
static void change_id(const char *uid, const char *what, long long version, const char *kek, char out[37]) {
  char v[32];
  snprintf(v, sizeof v, "%lld", version);
  const char *parts[] = {"tenancy.dev/keys", uid, what, v, kek};
  tn_uuid_from_parts(parts, sizeof parts / sizeof parts[0], out);
}

void tn_tenant_keys_aad(const char *tenant, long long version, char *aad, size_t n) {
  snprintf(aad, n, "tenancy.dev/tenant-key\ntenant=%s\nversion=%lld", tenant ? tenant : "", version);
}

/* ---- the local KMS: KEKs in a Secret ------------------------------------------------------------- */

struct tn_kek_secret {
  struct tn_kube *kube; /* borrowed */
  char ns[254], name[254];
  double refresh_s;
  pthread_mutex_t mu;          /* protects ring and loaded_at; held across each KMS call */
  struct tn_kms_keyring *ring; /* NULL until first loaded */
  double loaded_at;            /* monotonic */
  bool seen;                   /* this process has read the KEK Secret: it must not be recreated */
  atomic_long writes;
  struct tn_kms_provider provider;
};

/* Builds a keyring from the KEK Secret's data. */
static int kek_parse(struct tn_kek_secret *s, json_t *sec, struct tn_kms_keyring **out, long long *max_n,
                     struct tn_error *err) {
  int rc = 0;
  unsigned char *raw = NULL;
  size_t len = 0;
  long long current = 0;
  *max_n = 0;
  struct tn_kms_keyring *ring = tn_kms_keyring_new();
  if (!ring)
    return tn_error_set(err, -ENOMEM, "out of memory");
  json_t *data = json_object_get(sec, "data");
  const char *k;
  json_t *v;
  json_object_foreach(data, k, v) {
    long long n = numbered(k, "kek-");
    if (strcmp(k, KEK_CURRENT) == 0) {
      raw = unb64(json_string_value(v), &len);
      current = raw ? positive((char *)raw) : 0;
      free(raw);
      raw = NULL;
      continue;
    }
    if (n == 0)
      continue;
    raw = unb64(json_string_value(v), &len);
    if (!raw || len != TN_KMS_KEY_LEN) {
      rc = tn_error_set(err, TN_EINVALID, "Secret %s/%s: %s must be %d bytes (base64 in data), it is %s",
                        s->ns, s->name, k, TN_KMS_KEY_LEN, raw ? "of another length" : "not base64");
      goto out;
    }
    if ((rc = tn_kms_keyring_add(ring, k, raw, err)))
      goto out;
    OPENSSL_cleanse(raw, len);
    free(raw);
    raw = NULL;
    if (n > *max_n)
      *max_n = n;
  }
  char id[TN_KMS_ID_MAX];
  if (current == 0 || tn_kms_kek_id(current, id, sizeof id) || !tn_kms_keyring_has(ring, id)) {
    rc = tn_error_set(
        err, TN_EINVALID,
        "Secret %s/%s: key \"current\" must name one of its kek-<n> keys (restore the Secret from "
        "backup; it is never regenerated, that would lose every tenant's data key)",
        s->ns, s->name);
    goto out;
  }
  tn_kms_keyring_set_current(ring, id, NULL);
  *out = ring;
  ring = NULL;
out:
  if (raw) {
    OPENSSL_cleanse(raw, len);
    free(raw);
  }
  tn_kms_keyring_free(ring);
  return rc;
}

/* The KEK Secret's body holding data (taken). */
static json_t *kek_body(struct tn_kek_secret *s, json_t *data) {
  return json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:{s:s}},s:o}", "apiVersion", "v1", "kind", "Secret", "type",
                   TN_SECRET_TYPE_KEK, "metadata", "name", s->name, "namespace", s->ns, "labels",
                   TN_LABEL_MANAGED_BY, TN_MANAGED_BY, "data", data);
}

/* Sets data[id] = base64(key) and data.current = n. */
static int kek_put(json_t *data, long long n, const unsigned char key[TN_KMS_KEY_LEN]) {
  char id[TN_KMS_ID_MAX], num[32];
  tn_kms_kek_id(n, id, sizeof id);
  snprintf(num, sizeof num, "%lld", n);
  char *k64 = b64(key, TN_KMS_KEY_LEN), *n64 = b64((const unsigned char *)num, strlen(num));
  int rc = k64 && n64 && json_object_set_new(data, id, json_string(k64)) == 0 &&
                   json_object_set_new(data, KEK_CURRENT, json_string(n64)) == 0
               ? 0
               : -ENOMEM;
  free_secret(k64);
  free(n64);
  return rc;
}

/* Whether any tenant has data keys in the namespace (a Secret of type tenant-keys). Returns 0
 * with *any set, or an API error. */
static int kek_wrapped_keys_exist(struct tn_kek_secret *s, bool *any, struct tn_error *err) {
  json_t *list = NULL;
  struct tn_list_opts lo = {.field_selector = "type=" TN_SECRET_TYPE_TENANT_KEYS, .limit = 1};
  int rc = tn_kube_list(s->kube, &gvr_secrets, s->ns, &lo, &list, err);
  if (rc == 0)
    *any = json_array_size(json_object_get(list, "items")) > 0;
  json_decref(list);
  return rc;
}

/* The KEK Secret as stored (*obj new), created with kek-1 when missing on a first install only:
 * once this process has read it, or once any tenant-keys Secret exists beside it, a missing KEK
 * Secret is an error (a new KEK would make every existing data key unrecoverable). Called
 * locked. */
static int kek_fetch(struct tn_kek_secret *s, json_t **obj, struct tn_error *err) {
  int rc = tn_kube_get(s->kube, &gvr_secrets, s->ns, s->name, obj, err);
  if (rc != TN_ENOTFOUND)
    return rc;
  unsigned char key[TN_KMS_KEY_LEN];
  json_t *data = NULL;
  bool wrapped = false;
  if (!s->seen && (rc = kek_wrapped_keys_exist(s, &wrapped, err))) {
    tn_error_prefix(err, "KEK Secret %s/%s is missing and tenant-keys Secrets cannot be listed", s->ns,
                    s->name);
    return rc;
  }
  if (s->seen || wrapped) {
    tn_log(TN_LOG_ERROR, NULL, "local KMS: KEK Secret %s/%s is missing; not regenerated", s->ns, s->name);
    return tn_error_set(
        err, TN_ENOTFOUND,
        "the KEK Secret %s/%s is missing but %s: restore Secret %s/%s from backup. It is never "
        "regenerated: a new KEK would make every existing data key unrecoverable",
        s->ns, s->name, wrapped ? "tenants have data keys wrapped by it" : "it existed before", s->ns,
        s->name);
  }
  data = json_object();
  if ((rc = tn_kms_random(key, sizeof key, err)))
    goto out;
  if (!data || kek_put(data, 1, key)) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  json_t *body = kek_body(s, json_incref(data));
  rc = body ? tn_kube_create(s->kube, &gvr_secrets, s->ns, body, obj, err) : -ENOMEM;
  json_decref(body);
  if (rc == 0) {
    atomic_fetch_add(&s->writes, 1);
    tn_log(TN_LOG_INFO, NULL, "local KMS: created %s/%s with kek-1", s->ns, s->name);
  } else if (rc == TN_EEXISTS) { /* another writer made it first: use theirs */
    rc = tn_kube_get(s->kube, &gvr_secrets, s->ns, s->name, obj, err);
  }
out:
  OPENSSL_cleanse(key, sizeof key);
  json_decref(data);
  return rc;
}

/* Makes s->ring current enough (force: reread now). Called locked. A failed refresh keeps a
 * ring already loaded (the API server being away must not stop wraps), a forced one does not. */
static int kek_ensure(struct tn_kek_secret *s, bool force, struct tn_error *err) {
  double now = tn_mono_now();
  if (s->ring && !force && (s->refresh_s < 0 || now - s->loaded_at < s->refresh_s))
    return 0;
  json_t *obj = NULL;
  struct tn_kms_keyring *ring = NULL;
  long long max_n = 0;
  int rc = kek_fetch(s, &obj, err);
  if (rc == 0)
    s->seen = true; /* from now on it must exist */
  if (rc == 0)
    rc = kek_parse(s, obj, &ring, &max_n, err);
  json_decref(obj);
  if (rc) {
    tn_error_prefix(err, "local KMS");
    if (s->ring && !force && tn_error_is_transient(rc)) {
      tn_log(TN_LOG_WARN, NULL, "%s (using the KEKs read before)", err->message);
      s->loaded_at = now;
      return 0;
    }
    return rc;
  }
  tn_kms_keyring_free(s->ring);
  s->ring = ring;
  s->loaded_at = now;
  return 0;
}

static int kek_current(void *ud, char *id, size_t n, struct tn_error *err) {
  struct tn_kek_secret *s = ud;
  pthread_mutex_lock(&s->mu);
  int rc = kek_ensure(s, false, err);
  if (rc == 0)
    snprintf(id, n, "%s", tn_kms_keyring_current(s->ring));
  pthread_mutex_unlock(&s->mu);
  return rc;
}

static int kek_wrap(void *ud, const char *kek_id, const unsigned char *key, size_t len, const char *aad,
                    char **envelope, struct tn_error *err) {
  struct tn_kek_secret *s = ud;
  struct tn_kms_provider p;
  pthread_mutex_lock(&s->mu);
  int rc = kek_ensure(s, false, err);
  if (rc == 0 && kek_id && !tn_kms_keyring_has(s->ring, kek_id))
    rc = kek_ensure(s, true, err); /* rotated by someone else since we read it? */
  if (rc == 0) {
    tn_kms_keyring_provider(s->ring, &p);
    rc = p.wrap(p.ud, kek_id, key, len, aad, envelope, err);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

static int kek_unwrap(void *ud, const char *envelope, const char *aad, unsigned char *key, size_t cap,
                      size_t *len, struct tn_error *err) {
  struct tn_kek_secret *s = ud;
  struct tn_kms_provider p;
  char id[TN_KMS_ID_MAX];
  int rc = tn_kms_envelope_kek(envelope, id, sizeof id, err);
  if (rc)
    return rc;
  pthread_mutex_lock(&s->mu);
  rc = kek_ensure(s, false, err);
  if (rc == 0 && !tn_kms_keyring_has(s->ring, id))
    rc = kek_ensure(s, true, err);
  if (rc == 0) {
    tn_kms_keyring_provider(s->ring, &p);
    rc = p.unwrap(p.ud, envelope, aad, key, cap, len, err);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int tn_kek_secret_new(struct tn_kube *kube, const struct tn_kek_secret_options *opts,
                      struct tn_kek_secret **out, struct tn_error *err) {
  *out = NULL;
  const char *ns = opts && opts->namespace ? opts->namespace : TN_KEYS_NAMESPACE;
  const char *name = opts && opts->name ? opts->name : TN_KEK_SECRET;
  if (!kube || !*ns || !*name || strlen(ns) >= 254 || strlen(name) >= 254)
    return tn_error_set(err, TN_ECONFIG, "local KMS: a client and a Secret namespace and name are needed");
  struct tn_kek_secret *s = calloc(1, sizeof *s);
  if (!s)
    return tn_error_set(err, -ENOMEM, "out of memory");
  if (pthread_mutex_init(&s->mu, NULL)) {
    free(s);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  s->kube = kube;
  snprintf(s->ns, sizeof s->ns, "%s", ns);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->refresh_s = opts && opts->refresh_s != 0 ? opts->refresh_s : 60;
  atomic_init(&s->writes, 0);
  s->provider = (struct tn_kms_provider){
      .name = "local", .current_kek = kek_current, .wrap = kek_wrap, .unwrap = kek_unwrap, .ud = s};
  *out = s;
  return 0;
}

void tn_kek_secret_free(struct tn_kek_secret *s) {
  if (!s)
    return;
  tn_kms_keyring_free(s->ring);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

const struct tn_kms_provider *tn_kek_secret_provider(struct tn_kek_secret *s) { return &s->provider; }

long tn_kek_secret_writes(struct tn_kek_secret *s) { return atomic_load(&s->writes); }

int tn_kek_secret_rotate(struct tn_kek_secret *s, char *new_id, size_t n, struct tn_error *err) {
  json_t *obj = NULL, *answer = NULL;
  struct tn_kms_keyring *ring = NULL;
  unsigned char key[TN_KMS_KEY_LEN];
  long long max_n = 0;
  pthread_mutex_lock(&s->mu);
  int rc = kek_fetch(s, &obj, err);
  if (rc == 0)
    rc = kek_parse(s, obj, &ring, &max_n, err); /* never add to a Secret we cannot read */
  tn_kms_keyring_free(ring);
  ring = NULL;
  if (rc == 0)
    rc = tn_kms_random(key, sizeof key, err);
  if (rc)
    goto out;
  json_t *data = json_object_get(obj, "data");
  if (!json_is_object(data) || kek_put(data, max_n + 1, key)) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  if ((rc = tn_kube_update(s->kube, &gvr_secrets, s->ns, obj, NULL, &answer, err)))
    goto out;
  atomic_fetch_add(&s->writes, 1);
  if ((rc = kek_parse(s, answer, &ring, &max_n, err)))
    goto out;
  tn_kms_keyring_free(s->ring);
  s->ring = ring;
  s->loaded_at = tn_mono_now();
  if (new_id)
    snprintf(new_id, n, "%s", tn_kms_keyring_current(ring));
  tn_log(TN_LOG_INFO, NULL, "local KMS: %s/%s rotated, new KEK %s", s->ns, s->name,
         tn_kms_keyring_current(ring));
out:
  if (rc)
    tn_error_prefix(err, "rotating the KEK in Secret %s/%s", s->ns, s->name);
  pthread_mutex_unlock(&s->mu);
  OPENSSL_cleanse(key, sizeof key);
  json_decref(obj);
  json_decref(answer);
  return rc;
}

/* ---- the tenant's key Secret ---------------------------------------------------------------------- */

void tn_tenant_keys_result_cleanup(struct tn_tenant_keys_result *r) {
  if (!r)
    return;
  json_decref(r->keys);
  memset(r, 0, sizeof *r);
}

static int fail(struct tn_tenant_keys_result *out, struct tn_error *err, int code, const char *reason,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail(struct tn_tenant_keys_result *out, struct tn_error *err, int code, const char *reason,
                const char *fmt, ...) {
  out->status = "False";
  out->retry = tn_error_is_transient(code);
  snprintf(out->reason, sizeof out->reason, "%s", reason);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->message, sizeof out->message, fmt, ap);
  va_end(ap);
  if (err) {
    char msg[sizeof out->message];
    snprintf(msg, sizeof msg, "%s", out->message);
    tn_error_set(err, code, "%s", msg);
  }
  return code;
}

/* What the tenant's Secret holds. */
struct stored {
  json_t *secret;   /* as read (own reference), NULL when missing */
  json_t *versions; /* "dek-<n>" -> envelope text (decoded), own reference */
  long long current, max;
  bool current_annotated;
  const char *rotated_for; /* borrowed from secret; "" when none */
  double rotated_at;       /* 0 unknown */
};

static void stored_cleanup(struct stored *st) {
  json_decref(st->secret);
  json_decref(st->versions);
  memset(st, 0, sizeof *st);
}

static void secret_name(const char *tenant, char *dst, size_t n) {
  snprintf(dst, n, "%s%s", TN_KEYS_SECRET_PREFIX, tenant);
}

/* Reads and checks the tenant's Secret. Returns 0 (st->secret NULL when there is none), or an
 * error with reason set: a read failure, a Secret that is not ours, or unreadable versions. */
static int read_stored(struct tn_kube *kube, const char *ns, const char *name, struct stored *st,
                       char *reason, size_t rn, struct tn_error *err) {
  memset(st, 0, sizeof *st);
  st->rotated_for = "";
  int rc = tn_kube_get(kube, &gvr_secrets, ns, name, &st->secret, err);
  if (rc == TN_ENOTFOUND) {
    st->secret = NULL;
    return 0;
  }
  if (rc) {
    snprintf(reason, rn, "SecretReadFailed");
    tn_error_prefix(err, "reading Secret %s/%s", ns, name);
    return rc;
  }
  const char *type = str_at(st->secret, "type", NULL);
  if (!type || strcmp(type, TN_SECRET_TYPE_TENANT_KEYS) != 0) {
    snprintf(reason, rn, "Conflict");
    return tn_error_set(
        err, TN_EEXISTS,
        "Secret %s/%s exists with type %s, not %s: it is not the operator's; rename or delete it "
        "so the tenant's data keys can be stored there",
        ns, name, type ? type : "(none)", TN_SECRET_TYPE_TENANT_KEYS);
  }
  if (!(st->versions = json_object()))
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(st->secret, "data"), k, v) {
    long long n = numbered(k, DEK_PREFIX);
    if (n == 0)
      continue;
    size_t len = 0;
    char *text = (char *)unb64(json_string_value(v), &len);
    char kek[TN_KMS_ID_MAX];
    struct tn_error eerr = {0};
    if (!text || strlen(text) != len || tn_kms_envelope_kek(text, kek, sizeof kek, &eerr)) {
      free(text);
      snprintf(reason, rn, "KeysInvalid");
      return tn_error_set(err, TN_EINVALID, "Secret %s/%s: %s is not a wrapped key%s%s", ns, name, k,
                          eerr.message[0] ? ": " : "", eerr.message);
    }
    json_object_set_new(st->versions, k, json_string(text));
    free(text);
    if (n > st->max)
      st->max = n;
  }
  json_t *ann = json_object_get(json_object_get(st->secret, "metadata"), "annotations");
  const char *cur = json_string_value(json_object_get(ann, TN_ANNOTATION_KEYS_VERSION));
  st->current_annotated = cur != NULL;
  st->current = cur ? positive(cur) : st->max;
  char dek[48];
  snprintf(dek, sizeof dek, DEK_PREFIX "%lld", st->current);
  if (st->max > 0 && (st->current == 0 || !json_object_get(st->versions, dek))) {
    snprintf(reason, rn, "KeysInvalid");
    return tn_error_set(
        err, TN_EINVALID,
        "Secret %s/%s: annotation %s=\"%s\" does not name one of its versions (newest is %lld); "
        "restore the Secret from backup, or set the annotation to an existing version",
        ns, name, TN_ANNOTATION_KEYS_VERSION, cur ? cur : "", st->max);
  }
  const char *rf = json_string_value(json_object_get(ann, TN_ANNOTATION_KEYS_ROTATED_FOR));
  st->rotated_for = rf ? rf : "";
  st->rotated_at = parse_time(json_string_value(json_object_get(ann, TN_ANNOTATION_KEYS_ROTATED_AT)));
  return 0;
}

static const char *envelope_of(json_t *versions, long long v) {
  char k[48];
  snprintf(k, sizeof k, DEK_PREFIX "%lld", v);
  return json_string_value(json_object_get(versions, k));
}

/* status.keys of a tenant whose current version is v. */
static json_t *keys_status(const struct tn_tenant_keys_config *cfg, const char *ns, const char *name,
                           const struct tn_tenant_keys_result *out) {
  return json_pack("{s:I,s:s,s:s,s:s,s:{s:s,s:s}}", "version", (json_int_t)out->version, "kek", out->kek,
                   "provider", cfg->kms->name ? cfg->kms->name : "", "rotatedAt", out->rotated_at,
                   "secretRef", "namespace", ns, "name", name);
}

/* Calls the audit hook for each of actions[n] with outcome; stops at the first failure. */
static int audit_all(const struct tn_tenant_keys_config *cfg, const struct tn_tenant_keys_action *actions,
                     int n, const char *outcome, struct tn_error *err) {
  if (!cfg->audit)
    return 0;
  for (int i = 0; i < n; i++) {
    int rc = cfg->audit(cfg->audit_ud, &actions[i], outcome, err);
    if (rc && strcmp(outcome, TN_AUDIT_STARTED) == 0)
      return rc;
  }
  return 0;
}

/* Wraps a fresh data key for (tenant, version) with KEK kek into data[dek-<version>]. */
static int new_version(const struct tn_tenant_keys_config *cfg, const char *tenant, long long version,
                       const char *kek, json_t *data, struct tn_error *err) {
  unsigned char key[TN_KMS_KEY_LEN];
  char aad[512], k[48];
  char *env = NULL, *env64 = NULL;
  int rc = tn_kms_random(key, sizeof key, err);
  tn_tenant_keys_aad(tenant, version, aad, sizeof aad);
  if (rc == 0)
    rc = cfg->kms->wrap(cfg->kms->ud, kek, key, sizeof key, aad, &env, err);
  OPENSSL_cleanse(key, sizeof key);
  if (rc)
    return rc;
  snprintf(k, sizeof k, DEK_PREFIX "%lld", version);
  if (!(env64 = b64((const unsigned char *)env, strlen(env))) ||
      json_object_set_new(data, k, json_string(env64)))
    rc = tn_error_set(err, -ENOMEM, "out of memory");
  free(env);
  free(env64);
  return rc;
}

/* Unwraps data[dek-<version>] (envelope text env) and wraps the same key with kek. */
static int rewrap(const struct tn_tenant_keys_config *cfg, const char *tenant, long long version,
                  const char *env, const char *kek, json_t *data, struct tn_error *err) {
  unsigned char key[TN_KMS_KEY_LEN];
  size_t len = 0;
  char aad[512], k[48];
  char *fresh = NULL, *env64 = NULL;
  tn_tenant_keys_aad(tenant, version, aad, sizeof aad);
  int rc = cfg->kms->unwrap(cfg->kms->ud, env, aad, key, sizeof key, &len, err);
  if (rc == 0 && len != TN_KMS_KEY_LEN)
    rc = tn_error_set(err, TN_EINVALID, "version %lld unwraps to %zu bytes, not %d", version, len,
                      TN_KMS_KEY_LEN);
  if (rc == 0)
    rc = cfg->kms->wrap(cfg->kms->ud, kek, key, TN_KMS_KEY_LEN, aad, &fresh, err);
  OPENSSL_cleanse(key, sizeof key);
  if (rc) {
    tn_error_prefix(err, "rewrapping version %lld", version);
    return rc;
  }
  snprintf(k, sizeof k, DEK_PREFIX "%lld", version);
  if (!(env64 = b64((const unsigned char *)fresh, strlen(fresh))) ||
      json_object_set_new(data, k, json_string(env64)))
    rc = tn_error_set(err, -ENOMEM, "out of memory");
  free(fresh);
  free(env64);
  return rc;
}

/* json_dumps of a new value, which it releases; NULL when o is NULL. */
static char *dumps_new(json_t *o) {
  char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(o);
  return s;
}

/* The owner reference to the Tenant, unless the Secret has one already. */
static void own(json_t *meta, const char *tenant, const char *uid) {
  json_t *refs = json_object_get(meta, "ownerReferences");
  size_t i;
  json_t *ref;
  json_array_foreach(refs, i, ref) {
    const char *u = str_at(ref, "uid", NULL);
    if (u && strcmp(u, uid) == 0)
      return;
  }
  if (!json_is_array(refs))
    json_object_set_new(meta, "ownerReferences", refs = json_array());
  json_array_append_new(refs, json_pack("{s:s,s:s,s:s,s:s,s:b,s:b}", "apiVersion", TN_API_VERSION, "kind",
                                        "Tenant", "name", tenant, "uid", uid, "controller",
                                        !json_array_size(refs), "blockOwnerDeletion", 1));
}

int tn_tenant_keys_reconcile(struct tn_kube *kube, const struct tn_tenant_keys_config *cfg,
                             json_t *tenant_obj, struct tn_tenant_keys_result *out, struct tn_error *err) {
  struct stored st = {0};
  json_t *want = NULL, *stale = NULL;
  char *details[2] = {NULL, NULL};
  char reason[64] = "", name[320], kek[TN_KMS_ID_MAX] = "";
  struct tn_tenant_keys_action actions[2];
  int n_actions = 0;
  struct tn_error e = {0};
  int rc = 0;
  memset(out, 0, sizeof *out);
  json_t *meta = json_object_get(tenant_obj, "metadata");
  const char *tenant = str_at(meta, "name", NULL), *uid = str_at(meta, "uid", NULL);
  if (!cfg || !cfg->kms || !tn_is_dns_label(tenant))
    return fail(out, err, TN_EINVALID, "InvalidConfig", "the keys step needs a KMS and a tenant with a name");
  const char *ns = cfg->namespace ? cfg->namespace : TN_KEYS_NAMESPACE;
  const char *kms = cfg->kms->name ? cfg->kms->name : "?";
  secret_name(tenant, name, sizeof name);
  double now = cfg->now > 0 ? cfg->now : tn_wall_now();
  long long status_version = (long long)json_integer_value(
      json_object_get(json_object_get(json_object_get(tenant_obj, "status"), "keys"), "version"));

  if ((rc = read_stored(kube, ns, name, &st, reason, sizeof reason, &e))) {
    fail(out, err, rc, reason, "%s", e.message);
    goto out;
  }
  if (st.max == 0 && status_version > 0) {
    rc =
        fail(out, err, TN_ENOTFOUND, "KeysLost",
             "Secret %s/%s with the tenant's data keys (up to version %lld) is %s: data encrypted with them "
             "cannot be read until it is restored from backup. Keys are never regenerated silently; to start "
             "over with a new key, clear status.keys (kubectl patch tenant %s --subresource=status "
             "--type=merge -p '{\"status\":{\"keys\":null}}')",
             ns, name, status_version, st.secret ? "empty" : "gone", tenant);
    goto out;
  }
  if ((rc = cfg->kms->current_kek(cfg->kms->ud, kek, sizeof kek, &e))) {
    fail(out, err, rc, tn_error_is_transient(rc) ? "KMSUnavailable" : "KMSError", "KMS %s: %s", kms,
         e.message);
    if (!out->retry)
      out->requeue_after_s = 30; /* a restored KEK Secret is noticed without any other change */
    goto out;
  }

  /* What changes: the first key, a new version, versions wrapped with another KEK. */
  const char *ask =
      json_string_value(json_object_get(json_object_get(meta, "annotations"), TN_ANNOTATION_ROTATE_KEYS));
  bool create = st.max == 0;
  bool on_demand = !create && ask && *ask && strcmp(ask, st.rotated_for) != 0;
  bool scheduled = !create && !on_demand && cfg->rotation_period_s > 0 &&
                   (st.rotated_at <= 0 || now - st.rotated_at >= cfg->rotation_period_s);
  bool rotate = on_demand || scheduled;
  long long version = create ? 1 : rotate ? st.max + 1 : st.current;
  if (!(stale = json_array())) {
    rc = fail(out, err, -ENOMEM, "InternalError", "out of memory");
    goto out;
  }
  const char *k;
  json_t *v;
  json_object_foreach(st.versions, k, v) {
    char id[TN_KMS_ID_MAX] = "";
    tn_kms_envelope_kek(json_string_value(v), id, sizeof id, NULL);
    if (strcmp(id, kek) != 0)
      json_array_append_new(stale, json_integer(numbered(k, DEK_PREFIX)));
  }
  bool rewrap_any = json_array_size(stale) > 0;

  char rotated_at[32], version_text[32];
  tn_time_rfc3339(create || rotate || st.rotated_at <= 0 ? now : st.rotated_at, rotated_at,
                  sizeof rotated_at);
  snprintf(version_text, sizeof version_text, "%lld", version);
  const char *rotated_for = create || on_demand ? (ask ? ask : "") : st.rotated_for;

  /* The Secret as it should be: the observed one (anything else on it kept) with our metadata. */
  want = st.secret ? json_deep_copy(st.secret)
                   : json_pack("{s:s,s:s,s:s,s:{s:s,s:s}}", "apiVersion", "v1", "kind", "Secret", "type",
                               TN_SECRET_TYPE_TENANT_KEYS, "metadata", "name", name, "namespace", ns);
  if (!want) {
    rc = fail(out, err, -ENOMEM, "InternalError", "out of memory");
    goto out;
  }
  json_t *wm = json_object_get(want, "metadata");
  json_t *labels = json_object_get(wm, "labels"), *ann = json_object_get(wm, "annotations");
  if (!json_is_object(labels))
    json_object_set_new(wm, "labels", labels = json_object());
  if (!json_is_object(ann))
    json_object_set_new(wm, "annotations", ann = json_object());
  json_object_set_new(labels, TN_LABEL_TENANT, json_string(tenant));
  json_object_set_new(labels, TN_LABEL_MANAGED_BY, json_string(TN_MANAGED_BY));
  json_object_set_new(ann, TN_ANNOTATION_KEYS_VERSION, json_string(version_text));
  json_object_set_new(ann, TN_ANNOTATION_KEYS_ROTATED_FOR, json_string(rotated_for));
  json_object_set_new(ann, TN_ANNOTATION_KEYS_ROTATED_AT, json_string(rotated_at));
  if (uid && *uid)
    own(wm, tenant, uid);
  bool write =
      create || rotate || rewrap_any || !st.secret || !json_equal(json_object_get(st.secret, "metadata"), wm);

  if (write) {
    /* The audit rows first: without them nothing changes. */
    const char *what = create   ? TN_KEYS_ACTION_CREATE
                       : rotate ? TN_KEYS_ACTION_ROTATE
                                : TN_KEYS_ACTION_REWRAP;
    change_id(uid, what, version, kek, out->correlation_id);
    if (create || rotate) {
      details[n_actions] = dumps_new(json_pack("{s:s,s:s,s:s,s:s}", "trigger",
                                               create      ? "first"
                                               : on_demand ? "on-demand"
                                                           : "schedule",
                                               "kek", kek, "provider", kms, "secret", name));
      actions[n_actions] = (struct tn_tenant_keys_action){.action = what,
                                                          .tenant = tenant,
                                                          .correlation_id = out->correlation_id,
                                                          .version_before = st.max ? st.current : 0,
                                                          .version_after = version,
                                                          .details = details[n_actions]};
      n_actions++;
    }
    if (rewrap_any) {
      details[n_actions] = dumps_new(
          json_pack("{s:s,s:s,s:O,s:s}", "kek", kek, "provider", kms, "versions", stale, "secret", name));
      actions[n_actions] = (struct tn_tenant_keys_action){.action = TN_KEYS_ACTION_REWRAP,
                                                          .tenant = tenant,
                                                          .correlation_id = out->correlation_id,
                                                          .version_before = st.current,
                                                          .version_after = version,
                                                          .details = details[n_actions]};
      n_actions++;
    }
    if ((rc = audit_all(cfg, actions, n_actions, TN_AUDIT_STARTED, &e))) {
      fail(out, err, tn_error_is_transient(rc) ? rc : TN_EUNAVAILABLE, "AuditUnavailable",
           "key change postponed until it can be audited: %s", e.message);
      goto out;
    }

    /* The data: the versions with another KEK rewrapped with the current one, the new version. */
    json_t *data = json_object_get(want, "data");
    if (!json_is_object(data))
      json_object_set_new(want, "data", data = json_object());
    size_t i;
    json_array_foreach(stale, i, v) {
      long long sv = json_integer_value(v);
      if ((rc = rewrap(cfg, tenant, sv, envelope_of(st.versions, sv), kek, data, &e)))
        break;
    }
    if (rc == 0 && (create || rotate))
      rc = new_version(cfg, tenant, version, kek, data, &e);
    if (rc) {
      audit_all(cfg, actions, n_actions, TN_AUDIT_FAILED, NULL);
      fail(out, err, rc,
           tn_error_is_transient(rc) ? "KMSUnavailable"
           : rc == TN_ENOTFOUND      ? "KEKMissing"
                                     : "KeysInvalid",
           "%s", e.message);
      goto out;
    }
    rc = st.secret ? tn_kube_update(kube, &gvr_secrets, ns, want, NULL, NULL, &e)
                   : tn_kube_create(kube, &gvr_secrets, ns, want, NULL, &e);
    out->writes++;
    if (rc) {
      audit_all(cfg, actions, n_actions, TN_AUDIT_FAILED, NULL);
      if (rc == TN_EEXISTS)
        rc = TN_ECONFLICT; /* made by someone else since we read it: read it again */
      fail(out, err, rc, tn_error_is_transient(rc) ? "SecretWriteConflict" : "SecretWriteFailed",
           "writing Secret %s/%s: %s", ns, name, e.message);
      goto out;
    }
    audit_all(cfg, actions, n_actions, TN_AUDIT_SUCCEEDED, NULL);
    out->created = create;
    out->rotated = rotate;
    out->rewrapped = (int)json_array_size(stale);
    if (n_actions == 0)
      out->correlation_id[0] = '\0'; /* only our labels or annotations were put back */
    tn_log(TN_LOG_INFO,
           &(struct tn_log_fields){.controller = "tenant",
                                   .tenant = tenant,
                                   .correlation_id = n_actions ? out->correlation_id : NULL,
                                   .generation = -1},
           "data keys: %s%s%s; version %lld wrapped by %s (%s KMS)",
           create      ? "first key made"
           : on_demand ? "rotated on demand"
           : scheduled ? "rotated on schedule"
                       : "",
           (create || rotate) && rewrap_any ? ", " : "",
           rewrap_any  ? "older versions rewrapped with the current KEK"
           : n_actions ? ""
                       : "Secret metadata restored",
           version, kek, kms);
  }

  out->version = version;
  snprintf(out->kek, sizeof out->kek, "%s", kek); /* every version is wrapped by it now */
  snprintf(out->rotated_at, sizeof out->rotated_at, "%s", rotated_at);
  out->status = "True";
  snprintf(out->reason, sizeof out->reason, "Ready");
  snprintf(out->message, sizeof out->message,
           "data key version %lld wrapped by %s (%s KMS); %lld version(s) kept", version, kek, kms,
           (long long)json_object_size(st.versions) + (create || rotate ? 1 : 0));
  out->keys = keys_status(cfg, ns, name, out);
  if (cfg->rotation_period_s > 0) {
    double due = parse_time(rotated_at) + cfg->rotation_period_s;
    out->requeue_after_s = due > now ? due - now : 1;
  }
  rc = 0;
out:
  for (int i = 0; i < 2; i++)
    free(details[i]);
  json_decref(stale);
  json_decref(want);
  stored_cleanup(&st);
  return rc;
}

int tn_tenant_keys_teardown(struct tn_kube *kube, const struct tn_tenant_keys_config *cfg, json_t *tenant_obj,
                            struct tn_tenant_keys_result *out, struct tn_error *err) {
  struct stored st = {0};
  char reason[64] = "", name[320], now_text[32];
  char *details = NULL;
  struct tn_error e = {0};
  int rc = 0;
  memset(out, 0, sizeof *out);
  json_t *meta = json_object_get(tenant_obj, "metadata");
  const char *tenant = str_at(meta, "name", NULL), *uid = str_at(meta, "uid", NULL);
  if (!cfg || !tn_is_dns_label(tenant))
    return fail(out, err, TN_EINVALID, "InvalidConfig", "the keys teardown needs a tenant with a name");
  const char *ns = cfg->namespace ? cfg->namespace : TN_KEYS_NAMESPACE;
  secret_name(tenant, name, sizeof name);
  tn_time_rfc3339(cfg->now > 0 ? cfg->now : tn_wall_now(), now_text, sizeof now_text);
  json_t *keys = json_object_get(json_object_get(tenant_obj, "status"), "keys");
  long long status_version = (long long)json_integer_value(json_object_get(keys, "version"));

  rc = read_stored(kube, ns, name, &st, reason, sizeof reason, &e);
  if (rc == TN_EEXISTS) { /* someone else's Secret of that name: not ours to delete */
    tn_log(TN_LOG_WARN, &(struct tn_log_fields){.controller = "tenant", .tenant = tenant, .generation = -1},
           "keys teardown: %s (left alone)", e.message);
    rc = 0;
    goto out;
  }
  if (rc && !st.secret) {
    fail(out, err, rc, reason, "%s", e.message);
    goto out;
  }
  rc = 0; /* a Secret we cannot read is still ours to delete */
  long long version = st.secret ? (st.current ? st.current : st.max) : status_version;
  if (!st.secret) {
    if (keys && !json_object_get(keys, "destroyedAt") && status_version > 0) {
      /* Deleted by an earlier call whose status was not written, or by the garbage collector. */
      out->keys = json_pack("{s:I,s:s}", "version", (json_int_t)version, "destroyedAt", now_text);
      out->destroyed = true;
    } else if (keys) {
      out->keys = json_incref(keys);
    } else {
      goto out; /* it never had keys */
    }
  } else {
    change_id(uid, TN_KEYS_ACTION_DESTROY, version, NULL, out->correlation_id);
    details = dumps_new(json_pack("{s:s,s:I}", "secret", name, "versions", (json_int_t)st.max));
    struct tn_tenant_keys_action a = {.action = TN_KEYS_ACTION_DESTROY,
                                      .tenant = tenant,
                                      .correlation_id = out->correlation_id,
                                      .version_before = version,
                                      .version_after = 0,
                                      .details = details};
    if ((rc = audit_all(cfg, &a, 1, TN_AUDIT_STARTED, &e))) {
      fail(out, err, tn_error_is_transient(rc) ? rc : TN_EUNAVAILABLE, "AuditUnavailable",
           "destroying the data keys postponed until it can be audited: %s", e.message);
      goto out;
    }
    struct tn_delete_opts opts = {.precondition_uid = str_at(st.secret, "metadata", "uid")};
    rc = tn_kube_delete(kube, &gvr_secrets, ns, name, &opts, &e);
    out->writes++;
    if (rc == TN_ENOTFOUND)
      rc = 0;
    if (rc) {
      audit_all(cfg, &a, 1, TN_AUDIT_FAILED, NULL);
      fail(out, err, rc, "SecretDeleteFailed", "deleting Secret %s/%s: %s", ns, name, e.message);
      goto out;
    }
    audit_all(cfg, &a, 1, TN_AUDIT_SUCCEEDED, NULL);
    out->destroyed = true;
    out->keys = json_pack("{s:I,s:s}", "version", (json_int_t)version, "destroyedAt", now_text);
    tn_log(TN_LOG_INFO,
           &(struct tn_log_fields){.controller = "tenant",
                                   .tenant = tenant,
                                   .correlation_id = out->correlation_id,
                                   .generation = -1},
           "data keys destroyed: Secret %s/%s (%lld version(s)) deleted", ns, name, st.max);
  }
  out->version = version;
  out->status = "True";
  snprintf(out->reason, sizeof out->reason, "Destroyed");
  snprintf(out->message, sizeof out->message,
           "the tenant's data keys were destroyed: data encrypted with them can no longer be read");
out:
  free(details);
  stored_cleanup(&st);
  return rc;
}

int tn_tenant_keys_unwrap(struct tn_kube *kube, const struct tn_tenant_keys_config *cfg, const char *tenant,
                          long long version, unsigned char key[TN_KMS_KEY_LEN], long long *version_out,
                          struct tn_error *err) {
  struct stored st = {0};
  char reason[64], name[320], aad[512];
  size_t len = 0;
  if (!cfg || !cfg->kms || !tn_is_dns_label(tenant) || version < 0)
    return tn_error_set(err, TN_EINVALID, "unwrap needs a KMS, a tenant id and a version >= 0");
  const char *ns = cfg->namespace ? cfg->namespace : TN_KEYS_NAMESPACE;
  secret_name(tenant, name, sizeof name);
  int rc = read_stored(kube, ns, name, &st, reason, sizeof reason, err);
  if (rc == 0 && st.max == 0)
    rc = tn_error_set(err, TN_ENOTFOUND, "tenant %s has no data keys (Secret %s/%s)", tenant, ns, name);
  if (rc)
    goto out;
  if (version == 0)
    version = st.current;
  const char *env = envelope_of(st.versions, version);
  if (!env) {
    rc = tn_error_set(err, TN_ENOTFOUND, "tenant %s has no data key version %lld (newest %lld)", tenant,
                      version, st.max);
    goto out;
  }
  tn_tenant_keys_aad(tenant, version, aad, sizeof aad);
  rc = cfg->kms->unwrap(cfg->kms->ud, env, aad, key, TN_KMS_KEY_LEN, &len, err);
  if (rc == 0 && len != TN_KMS_KEY_LEN) {
    OPENSSL_cleanse(key, TN_KMS_KEY_LEN);
    rc = tn_error_set(err, TN_EINVALID, "version %lld unwraps to %zu bytes, not %d", version, len,
                      TN_KMS_KEY_LEN);
  }
  if (rc) {
    tn_error_prefix(err, "tenant %s data key version %lld", tenant, version);
    goto out;
  }
  if (version_out)
    *version_out = version;
out:
  stored_cleanup(&st);
  return rc;
}
