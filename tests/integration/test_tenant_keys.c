/* test_tenant_keys.c - the keys step against the local API server, with the Secret-backed local
 * KMS: the first call creates the KEK Secret and the tenant's key Secret (nothing in clear), the
 * next costs no write; rotation on demand and on schedule add versions and the old ones still
 * unwrap to the same key; a KEK rotation rewraps every version; audit first (a failing trail
 * stops the change); lost, foreign, damaged and tampered Secrets; teardown destroys the keys.
 * Tenants are real Tenant objects (the CRDs must be installed); no operator runs. */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "converge/tenant_keys.h"
#include "kube/client.h"
#include "tn_test.h"
#include "util/clock.h"

static const struct tn_gvr gvr_ns = {"", "v1", "namespaces", false};
static const struct tn_gvr gvr_secrets = {"", "v1", "secrets", true};
static const struct tn_gvr gvr_tenants = {"tenancy.dev", "v1alpha1", "tenants", false};

static struct tn_kube *kube;
static struct tn_kek_secret *kek;
static char ns[64];
static char tenants[8][64];
static int n_tenants;

/* ---- the audit hook: records every call; can be told to refuse ---------------------------------- */

struct record {
  char action[32], outcome[16], correlation_id[37], details[512];
  long long before, after;
};
static struct record records[64];
static int n_records;
static bool audit_down;

static int audit_hook(void *ud, const struct tn_tenant_keys_action *a, const char *outcome,
                      struct tn_error *err) {
  (void)ud;
  if (audit_down)
    return tn_error_set(err, TN_EUNAVAILABLE, "audit trail unavailable (test)");
  cr_assert_lt(n_records, 64);
  struct record *r = &records[n_records++];
  snprintf(r->action, sizeof r->action, "%s", a->action);
  snprintf(r->outcome, sizeof r->outcome, "%s", outcome);
  snprintf(r->correlation_id, sizeof r->correlation_id, "%s", a->correlation_id);
  snprintf(r->details, sizeof r->details, "%s", a->details ? a->details : "");
  r->before = a->version_before;
  r->after = a->version_after;
  bool known = false;
  for (int i = 0; i < n_tenants; i++)
    known |= strcmp(a->tenant, tenants[i]) == 0;
  cr_assert(known, "audited for tenant %s", a->tenant);
  return 0;
}

/* ---- set-up ----------------------------------------------------------------------------------- */

static void setup(void) {
  struct tn_kube_config kc;
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_config_load(tn_test_env("KUBECONFIG"), NULL, &kc, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_new(&kc, NULL, &kube, &err), 0, "%s", err.message);
  tn_kube_config_cleanup(&kc);
  tn_test_unique_name(ns, sizeof ns, "keys-ns");
  json_t *obj =
      json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "Namespace", "metadata", "name", ns);
  cr_assert_eq(tn_kube_create(kube, &gvr_ns, NULL, obj, NULL, &err), 0, "%s", err.message);
  json_decref(obj);
  struct tn_kek_secret_options o = {.namespace = ns};
  cr_assert_eq(tn_kek_secret_new(kube, &o, &kek, &err), 0, "%s", err.message);
}

static void teardown(void) {
  for (int i = 0; i < n_tenants; i++)
    tn_kube_delete(kube, &gvr_tenants, NULL, tenants[i], NULL, NULL);
  tn_kube_delete(kube, &gvr_ns, NULL, ns, NULL, NULL);
  tn_kek_secret_free(kek);
  tn_kube_free(kube);
}

TestSuite(tenant_keys, .init = setup, .fini = teardown, .timeout = 120);

static struct tn_tenant_keys_config config(void) {
  return (struct tn_tenant_keys_config){
      .namespace = ns, .kms = tn_kek_secret_provider(kek), .audit = audit_hook, .audit_ud = NULL};
}

/* A real Tenant (Draft) with a fresh name; returns it as stored (with its uid). */
static json_t *tenant_create(void) {
  cr_assert_lt(n_tenants, 8);
  char *name = tenants[n_tenants++];
  tn_test_unique_name(name, 64, "keys");
  json_t *obj = json_pack("{s:s,s:s,s:{s:s},s:{s:s,s:s}}", "apiVersion", "tenancy.dev/v1alpha1", "kind",
                          "Tenant", "metadata", "name", name, "spec", "state", "Draft", "plan", "standard");
  json_t *stored = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_create(kube, &gvr_tenants, NULL, obj, &stored, &err), 0, "%s", err.message);
  json_decref(obj);
  return stored;
}

/* Sets the tenant's rotate-keys annotation through the API; returns the new object. */
static json_t *tenant_annotate(json_t *t, const char *value) {
  const char *name = json_string_value(json_object_get(json_object_get(t, "metadata"), "name"));
  json_t *patch = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", TN_ANNOTATION_ROTATE_KEYS, value);
  json_t *out = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_merge_patch(kube, &gvr_tenants, NULL, name, patch, NULL, &out, &err), 0, "%s",
               err.message);
  json_decref(patch);
  json_decref(t);
  return out;
}

static const char *name_of(json_t *t) {
  return json_string_value(json_object_get(json_object_get(t, "metadata"), "name"));
}

static json_t *secret_get(const char *name) {
  json_t *s = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_get(kube, &gvr_secrets, ns, name, &s, &err), 0, "%s", err.message);
  return s;
}

static json_t *keys_secret(json_t *t) {
  char name[128];
  snprintf(name, sizeof name, "%s%s", TN_KEYS_SECRET_PREFIX, name_of(t));
  return secret_get(name);
}

static bool secret_exists(const char *name) {
  json_t *s = NULL;
  int rc = tn_kube_get(kube, &gvr_secrets, ns, name, &s, NULL);
  json_decref(s);
  cr_assert(rc == 0 || rc == TN_ENOTFOUND, "get %s: %d", name, rc);
  return rc == 0;
}

/* data[key] of a Secret decoded into out[cap]; returns the length (-1: absent). */
static long data_of(json_t *secret, const char *key, unsigned char *out, size_t cap) {
  const char *v = json_string_value(json_object_get(json_object_get(secret, "data"), key));
  if (!v)
    return -1;
  size_t n = strlen(v);
  cr_assert_lt(n / 4 * 3, cap);
  int l = EVP_DecodeBlock(out, (const unsigned char *)v, (int)n);
  cr_assert_geq(l, 0);
  l -= (n > 0 && v[n - 1] == '=') + (n > 1 && v[n - 2] == '=');
  out[l] = '\0';
  return l;
}

/* The envelope of version v as a JSON object (new reference). */
static json_t *envelope(json_t *secret, long long v) {
  char key[32];
  unsigned char text[4096];
  snprintf(key, sizeof key, "dek-%lld", v);
  cr_assert_gt(data_of(secret, key, text, sizeof text), 0, "%s missing", key);
  json_t *e = json_loads((char *)text, 0, NULL);
  cr_assert_not_null(e, "%s is not JSON: %s", key, text);
  return e;
}

static const char *annotation(json_t *obj, const char *key) {
  return json_string_value(
      json_object_get(json_object_get(json_object_get(obj, "metadata"), "annotations"), key));
}

static void unwrap_ok(json_t *t, long long version, unsigned char key[TN_KMS_KEY_LEN]) {
  struct tn_tenant_keys_config cfg = config();
  struct tn_error err = {0};
  long long got = -1;
  cr_assert_eq(tn_tenant_keys_unwrap(kube, &cfg, name_of(t), version, key, &got, &err), 0, "%s", err.message);
  if (version)
    cr_assert_eq(got, version);
}

static void reconcile_ok(struct tn_tenant_keys_config *cfg, json_t *t, struct tn_tenant_keys_result *r) {
  struct tn_error err = {0};
  int rc = tn_tenant_keys_reconcile(kube, cfg, t, r, &err);
  cr_assert_eq(rc, 0, "reconcile: %s (%s)", err.message, r->reason);
  cr_assert_str_eq(r->status, "True");
  cr_assert_str_eq(r->reason, "Ready");
}

/* ---- tests ------------------------------------------------------------------------------------ */

Test(tenant_keys, first_call_creates_kek_and_key_secrets_second_costs_nothing) {
  json_t *t = tenant_create();
  const char *uid = json_string_value(json_object_get(json_object_get(t, "metadata"), "uid"));
  struct tn_tenant_keys_config cfg = config();
  struct tn_tenant_keys_result r;
  reconcile_ok(&cfg, t, &r);
  cr_assert_eq(r.version, 1);
  cr_assert(r.created);
  cr_assert_not(r.rotated);
  cr_assert_eq(r.writes, 1);
  cr_assert_str_eq(r.kek, "kek-1");
  cr_assert_eq(r.requeue_after_s, 0, "no schedule");
  cr_assert_eq(strlen(r.correlation_id), 36);
  cr_assert_eq(tn_kek_secret_writes(kek), 1, "the KEK Secret was created once");

  /* status.keys */
  char secret_name[128];
  snprintf(secret_name, sizeof secret_name, "tenant-keys-%s", name_of(t));
  json_t *want = json_pack("{s:i,s:s,s:s,s:s,s:{s:s,s:s}}", "version", 1, "kek", "kek-1", "provider", "local",
                           "rotatedAt", r.rotated_at, "secretRef", "namespace", ns, "name", secret_name);
  cr_assert(json_equal(r.keys, want), "status.keys: %s", json_dumps(r.keys, JSON_COMPACT));
  json_decref(want);

  /* The KEK Secret: kek-1 is 32 bytes, current is 1. */
  json_t *ks = secret_get("tenancy-kek");
  unsigned char buf[4096];
  cr_assert_str_eq(json_string_value(json_object_get(ks, "type")), "tenancy.dev/kek");
  cr_assert_eq(data_of(ks, "kek-1", buf, sizeof buf), 32);
  cr_assert_eq(data_of(ks, "current", buf, sizeof buf), 1);
  cr_assert_str_eq((char *)buf, "1");
  json_decref(ks);

  /* The tenant's Secret: type, labels, annotations, owner, and an envelope per version. */
  json_t *s = keys_secret(t);
  cr_assert_str_eq(json_string_value(json_object_get(s, "type")), "tenancy.dev/tenant-keys");
  json_t *labels = json_object_get(json_object_get(s, "metadata"), "labels");
  cr_assert_str_eq(json_string_value(json_object_get(labels, "tenancy.dev/tenant")), name_of(t));
  cr_assert_str_eq(json_string_value(json_object_get(labels, "app.kubernetes.io/managed-by")),
                   "tenancy-operator");
  cr_assert_str_eq(annotation(s, TN_ANNOTATION_KEYS_VERSION), "1");
  cr_assert_str_eq(annotation(s, TN_ANNOTATION_KEYS_ROTATED_AT), r.rotated_at);
  json_t *owner = json_array_get(json_object_get(json_object_get(s, "metadata"), "ownerReferences"), 0);
  cr_assert_str_eq(json_string_value(json_object_get(owner, "uid")), uid);
  cr_assert_str_eq(json_string_value(json_object_get(owner, "kind")), "Tenant");
  cr_assert_eq(json_object_size(json_object_get(s, "data")), 1, "only dek-1");
  json_t *e = envelope(s, 1);
  cr_assert_eq(json_object_size(e), 5);
  cr_assert_str_eq(json_string_value(json_object_get(e, "kek")), "kek-1");
  cr_assert_str_eq(json_string_value(json_object_get(e, "alg")), "A256GCM");
  json_decref(e);

  /* The key unwraps, and is nowhere in clear: not in the Secret, not in status.keys. */
  unsigned char key[TN_KMS_KEY_LEN];
  unwrap_ok(t, 1, key);
  char key64[64];
  EVP_EncodeBlock((unsigned char *)key64, key, sizeof key);
  char *dump = json_dumps(s, 0), *status = json_dumps(r.keys, 0);
  cr_assert_null(strstr(dump, key64), "the data key is in the Secret in clear");
  cr_assert_null(memmem(dump, strlen(dump), key, sizeof key));
  cr_assert_null(strstr(status, key64));
  free(dump);
  free(status);

  /* Audited before and after, with one correlation id. */
  cr_assert_eq(n_records, 2);
  cr_assert_str_eq(records[0].action, "key.create");
  cr_assert_str_eq(records[0].outcome, TN_AUDIT_STARTED);
  cr_assert_str_eq(records[1].outcome, TN_AUDIT_SUCCEEDED);
  cr_assert_str_eq(records[0].correlation_id, r.correlation_id);
  cr_assert_str_eq(records[1].correlation_id, r.correlation_id);
  cr_assert_eq(records[0].before, 0);
  cr_assert_eq(records[0].after, 1);
  cr_assert(strstr(records[0].details, "\"trigger\":\"first\""), "%s", records[0].details);
  cr_assert_null(strstr(records[0].details, key64));

  /* Again: nothing to do, nothing written, nothing audited. */
  const char *rv = json_string_value(json_object_get(json_object_get(s, "metadata"), "resourceVersion"));
  struct tn_tenant_keys_result r2;
  reconcile_ok(&cfg, t, &r2);
  cr_assert_eq(r2.writes, 0);
  cr_assert_eq(r2.version, 1);
  cr_assert_not(r2.created || r2.rotated || r2.rewrapped);
  cr_assert_str_eq(r2.correlation_id, "");
  cr_assert(json_equal(r.keys, r2.keys), "status.keys unchanged");
  cr_assert_eq(tn_kek_secret_writes(kek), 1);
  cr_assert_eq(n_records, 2);
  json_t *s2 = keys_secret(t);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(s2, "metadata"), "resourceVersion")),
                   rv);
  OPENSSL_cleanse(key, sizeof key);
  json_decref(s2);
  json_decref(s);
  tn_tenant_keys_result_cleanup(&r);
  tn_tenant_keys_result_cleanup(&r2);
  json_decref(t);
}

Test(tenant_keys, rotation_on_demand_adds_versions_and_old_ones_still_unwrap) {
  json_t *t = tenant_create();
  struct tn_tenant_keys_config cfg = config();
  struct tn_tenant_keys_result r;
  reconcile_ok(&cfg, t, &r);
  tn_tenant_keys_result_cleanup(&r);
  unsigned char k1[TN_KMS_KEY_LEN], again[TN_KMS_KEY_LEN], k2[TN_KMS_KEY_LEN], k3[TN_KMS_KEY_LEN],
      cur[TN_KMS_KEY_LEN];
  unwrap_ok(t, 1, k1);
  n_records = 0;

  t = tenant_annotate(t, "r1");
  reconcile_ok(&cfg, t, &r);
  cr_assert(r.rotated);
  cr_assert_eq(r.version, 2);
  cr_assert_eq(r.writes, 1);
  cr_assert_eq(r.rewrapped, 0);
  char first_rotation[37];
  snprintf(first_rotation, sizeof first_rotation, "%s", r.correlation_id);
  cr_assert_eq(json_integer_value(json_object_get(r.keys, "version")), 2);
  cr_assert_eq(n_records, 2);
  cr_assert_str_eq(records[0].action, "key.rotate");
  cr_assert_str_eq(records[0].outcome, TN_AUDIT_STARTED);
  cr_assert_str_eq(records[1].action, "key.rotate");
  cr_assert_str_eq(records[1].outcome, TN_AUDIT_SUCCEEDED);
  cr_assert_str_eq(records[0].correlation_id, r.correlation_id);
  cr_assert_eq(records[0].before, 1);
  cr_assert_eq(records[0].after, 2);
  cr_assert(strstr(records[0].details, "\"trigger\":\"on-demand\""), "%s", records[0].details);
  tn_tenant_keys_result_cleanup(&r);

  /* Version 1 (archived data) unwraps to the same key as before; version 2 is new. */
  unwrap_ok(t, 1, again);
  cr_assert_eq(memcmp(k1, again, sizeof k1), 0, "version 1 changed with the rotation");
  unwrap_ok(t, 2, k2);
  cr_assert_neq(memcmp(k1, k2, sizeof k1), 0);
  long long got = 0;
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_keys_unwrap(kube, &cfg, name_of(t), 0, cur, &got, &err), 0, "%s", err.message);
  cr_assert_eq(got, 2, "version 0 means the current one");
  cr_assert_eq(memcmp(cur, k2, sizeof k2), 0);
  json_t *s = keys_secret(t);
  cr_assert_str_eq(annotation(s, TN_ANNOTATION_KEYS_VERSION), "2");
  cr_assert_str_eq(annotation(s, TN_ANNOTATION_KEYS_ROTATED_FOR), "r1");
  cr_assert_eq(json_object_size(json_object_get(s, "data")), 2);
  json_decref(s);

  /* The same annotation value again: handled already. */
  reconcile_ok(&cfg, t, &r);
  cr_assert_eq(r.writes, 0);
  cr_assert_eq(r.version, 2);
  tn_tenant_keys_result_cleanup(&r);

  /* A new value: version 3; every version still unwraps. */
  t = tenant_annotate(t, "r2");
  reconcile_ok(&cfg, t, &r);
  cr_assert_eq(r.version, 3);
  cr_assert_str_neq(r.correlation_id, first_rotation, "each rotation has its own correlation id");
  tn_tenant_keys_result_cleanup(&r);
  unwrap_ok(t, 1, again);
  cr_assert_eq(memcmp(k1, again, sizeof k1), 0);
  unwrap_ok(t, 2, again);
  cr_assert_eq(memcmp(k2, again, sizeof k2), 0);
  unwrap_ok(t, 3, k3);
  cr_assert_neq(memcmp(k3, k2, sizeof k3), 0);
  cr_assert_eq(tn_tenant_keys_unwrap(kube, &cfg, name_of(t), 4, cur, NULL, &err), TN_ENOTFOUND);
  json_decref(t);
}

Test(tenant_keys, scheduled_rotation_when_the_current_version_is_old_enough) {
  json_t *t = tenant_create();
  struct tn_tenant_keys_config cfg = config();
  cfg.rotation_period_s = 3600;
  double start = tn_wall_now();
  struct tn_tenant_keys_result r;
  reconcile_ok(&cfg, t, &r);
  cr_assert_eq(r.version, 1);
  cr_assert(r.requeue_after_s > 3500 && r.requeue_after_s <= 3600, "requeue after %f", r.requeue_after_s);
  tn_tenant_keys_result_cleanup(&r);
  unsigned char k1[TN_KMS_KEY_LEN], again[TN_KMS_KEY_LEN];
  unwrap_ok(t, 1, k1);

  /* Half a period later: nothing yet, come back in about half a period. */
  cfg.now = start + 1800;
  reconcile_ok(&cfg, t, &r);
  cr_assert_eq(r.writes, 0);
  cr_assert_eq(r.version, 1);
  cr_assert(r.requeue_after_s > 1600 && r.requeue_after_s <= 1800, "requeue after %f", r.requeue_after_s);
  tn_tenant_keys_result_cleanup(&r);

  /* A period later: a new version, the next one due a period after it. */
  n_records = 0;
  cfg.now = start + 3601;
  reconcile_ok(&cfg, t, &r);
  cr_assert(r.rotated);
  cr_assert_eq(r.version, 2);
  cr_assert(r.requeue_after_s > 3500 && r.requeue_after_s <= 3600, "requeue after %f", r.requeue_after_s);
  cr_assert_eq(n_records, 2);
  cr_assert(strstr(records[0].details, "\"trigger\":\"schedule\""), "%s", records[0].details);
  tn_tenant_keys_result_cleanup(&r);
  reconcile_ok(&cfg, t, &r);
  cr_assert_eq(r.writes, 0, "rotated once per period");
  tn_tenant_keys_result_cleanup(&r);
  unwrap_ok(t, 1, again);
  cr_assert_eq(memcmp(k1, again, sizeof k1), 0);
  json_decref(t);
}

Test(tenant_keys, kek_rotation_rewraps_every_version_with_the_same_keys) {
  json_t *t = tenant_create();
  struct tn_tenant_keys_config cfg = config();
  struct tn_tenant_keys_result r;
  reconcile_ok(&cfg, t, &r);
  tn_tenant_keys_result_cleanup(&r);
  t = tenant_annotate(t, "before-kek-rotation");
  reconcile_ok(&cfg, t, &r);
  cr_assert_eq(r.version, 2);
  tn_tenant_keys_result_cleanup(&r);
  unsigned char k1[TN_KMS_KEY_LEN], k2[TN_KMS_KEY_LEN], again[TN_KMS_KEY_LEN];
  unwrap_ok(t, 1, k1);
  unwrap_ok(t, 2, k2);

  char id[TN_KMS_ID_MAX];
  struct tn_error err = {0};
  cr_assert_eq(tn_kek_secret_rotate(kek, id, sizeof id, &err), 0, "%s", err.message);
  cr_assert_str_eq(id, "kek-2");
  json_t *ks = secret_get("tenancy-kek");
  unsigned char buf[256], old_kek[64];
  cr_assert_eq(data_of(ks, "kek-1", old_kek, sizeof old_kek), 32, "the old KEK is kept");
  cr_assert_eq(data_of(ks, "kek-2", buf, sizeof buf), 32);
  cr_assert_neq(memcmp(buf, old_kek, 32), 0);
  data_of(ks, "current", buf, sizeof buf);
  cr_assert_str_eq((char *)buf, "2");
  json_decref(ks);

  /* Versions made before still unwrap (their envelopes name kek-1)... */
  unwrap_ok(t, 1, again);
  cr_assert_eq(memcmp(k1, again, sizeof k1), 0);

  /* ...and the next reconcile rewraps both with kek-2: same keys, new envelopes, audited. */
  n_records = 0;
  reconcile_ok(&cfg, t, &r);
  cr_assert_eq(r.rewrapped, 2);
  cr_assert_not(r.rotated);
  cr_assert_eq(r.version, 2);
  cr_assert_eq(r.writes, 1);
  cr_assert_str_eq(r.kek, "kek-2");
  cr_assert_str_eq(json_string_value(json_object_get(r.keys, "kek")), "kek-2");
  cr_assert_eq(n_records, 2);
  cr_assert_str_eq(records[0].action, "key.rewrap");
  cr_assert_str_eq(records[0].outcome, TN_AUDIT_STARTED);
  cr_assert(strstr(records[0].details, "\"versions\":[1,2]") ||
                strstr(records[0].details, "\"versions\":[2,1]"),
            "%s", records[0].details);
  tn_tenant_keys_result_cleanup(&r);
  json_t *s = keys_secret(t);
  for (long long v = 1; v <= 2; v++) {
    json_t *e = envelope(s, v);
    cr_assert_str_eq(json_string_value(json_object_get(e, "kek")), "kek-2", "version %lld", v);
    json_decref(e);
  }
  json_decref(s);
  unwrap_ok(t, 1, again);
  cr_assert_eq(memcmp(k1, again, sizeof k1), 0, "rewrapping changed version 1");
  unwrap_ok(t, 2, again);
  cr_assert_eq(memcmp(k2, again, sizeof k2), 0, "rewrapping changed version 2");

  /* A second KMS reading the same Secret (another replica, a restart) unwraps them too. */
  struct tn_kek_secret *fresh = NULL;
  struct tn_kek_secret_options o = {.namespace = ns};
  cr_assert_eq(tn_kek_secret_new(kube, &o, &fresh, &err), 0);
  struct tn_tenant_keys_config cfg2 = config();
  cfg2.kms = tn_kek_secret_provider(fresh);
  cr_assert_eq(tn_tenant_keys_unwrap(kube, &cfg2, name_of(t), 1, again, NULL, &err), 0, "%s", err.message);
  cr_assert_eq(memcmp(k1, again, sizeof k1), 0);
  cr_assert_eq(tn_kek_secret_writes(fresh), 0);
  tn_kek_secret_free(fresh);

  reconcile_ok(&cfg, t, &r);
  cr_assert_eq(r.writes, 0, "rewrapped once");
  tn_tenant_keys_result_cleanup(&r);
  json_decref(t);
}

Test(tenant_keys, a_change_that_cannot_be_audited_does_not_happen) {
  json_t *t = tenant_create();
  struct tn_tenant_keys_config cfg = config();
  struct tn_tenant_keys_result r;
  struct tn_error err = {0};
  char name[128];
  snprintf(name, sizeof name, "tenant-keys-%s", name_of(t));

  audit_down = true;
  int rc = tn_tenant_keys_reconcile(kube, &cfg, t, &r, &err);
  cr_assert_neq(rc, 0);
  cr_assert_str_eq(r.status, "False");
  cr_assert_str_eq(r.reason, "AuditUnavailable");
  cr_assert(r.retry);
  cr_assert_eq(r.writes, 0);
  cr_assert_not(secret_exists(name), "a key was made without an audit row");
  tn_tenant_keys_result_cleanup(&r);

  audit_down = false;
  reconcile_ok(&cfg, t, &r);
  cr_assert(r.created);
  tn_tenant_keys_result_cleanup(&r);

  t = tenant_annotate(t, "while-audit-is-down");
  audit_down = true;
  rc = tn_tenant_keys_reconcile(kube, &cfg, t, &r, &err);
  cr_assert_neq(rc, 0);
  cr_assert(r.retry);
  cr_assert_eq(r.writes, 0);
  tn_tenant_keys_result_cleanup(&r);
  json_t *s = secret_get(name);
  cr_assert_str_eq(annotation(s, TN_ANNOTATION_KEYS_VERSION), "1", "rotated without an audit row");
  json_decref(s);

  audit_down = false;
  n_records = 0;
  reconcile_ok(&cfg, t, &r);
  cr_assert(r.rotated);
  cr_assert_eq(r.version, 2);
  cr_assert_eq(n_records, 2);
  tn_tenant_keys_result_cleanup(&r);
  json_decref(t);
}

Test(tenant_keys, lost_keys_are_reported_never_regenerated) {
  json_t *t = tenant_create();
  struct tn_tenant_keys_config cfg = config();
  struct tn_tenant_keys_result r;
  reconcile_ok(&cfg, t, &r);
  /* The status the lead would have written. */
  json_object_set_new(t, "status", json_pack("{s:O}", "keys", r.keys));
  tn_tenant_keys_result_cleanup(&r);
  char name[128];
  snprintf(name, sizeof name, "tenant-keys-%s", name_of(t));
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_delete(kube, &gvr_secrets, ns, name, NULL, &err), 0, "%s", err.message);

  int rc = tn_tenant_keys_reconcile(kube, &cfg, t, &r, &err);
  cr_assert_eq(rc, TN_ENOTFOUND);
  cr_assert_str_eq(r.status, "False");
  cr_assert_str_eq(r.reason, "KeysLost");
  cr_assert_not(r.retry);
  cr_assert_eq(r.writes, 0);
  cr_assert(strstr(r.message, "restored from backup"), "%s", r.message);
  cr_assert(strstr(err.message, "restored from backup"), "%s", err.message);
  cr_assert_not(secret_exists(name));
  tn_tenant_keys_result_cleanup(&r);

  /* Once status.keys is cleared (the operator's explicit decision), a new first key. */
  json_object_del(t, "status");
  reconcile_ok(&cfg, t, &r);
  cr_assert(r.created);
  cr_assert_eq(r.version, 1);
  tn_tenant_keys_result_cleanup(&r);
  json_decref(t);
}

Test(tenant_keys, a_secret_that_is_not_ours_is_left_alone) {
  json_t *t = tenant_create();
  char name[128];
  snprintf(name, sizeof name, "tenant-keys-%s", name_of(t));
  json_t *foreign = json_pack("{s:s,s:s,s:s,s:{s:s},s:{s:s}}", "apiVersion", "v1", "kind", "Secret", "type",
                              "Opaque", "metadata", "name", name, "data", "mine", "aGVsbG8=");
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_create(kube, &gvr_secrets, ns, foreign, NULL, &err), 0, "%s", err.message);
  json_decref(foreign);

  struct tn_tenant_keys_config cfg = config();
  struct tn_tenant_keys_result r;
  int rc = tn_tenant_keys_reconcile(kube, &cfg, t, &r, &err);
  cr_assert_eq(rc, TN_EEXISTS);
  cr_assert_str_eq(r.reason, "Conflict");
  cr_assert_not(r.retry);
  cr_assert_eq(r.writes, 0);
  cr_assert(strstr(r.message, "not the operator's"), "%s", r.message);
  tn_tenant_keys_result_cleanup(&r);

  cr_assert_eq(tn_tenant_keys_teardown(kube, &cfg, t, &r, &err), 0, "%s", err.message);
  cr_assert_eq(r.writes, 0);
  cr_assert_null(r.status);
  tn_tenant_keys_result_cleanup(&r);
  json_t *s = secret_get(name);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(s, "data"), "mine")), "aGVsbG8=");
  json_decref(s);
  json_decref(t);
}

/* Replaces data[key] of the Secret with value (base64 of text). */
static void secret_set(json_t *t, const char *key, const char *text) {
  json_t *s = keys_secret(t);
  char enc[8192];
  EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)text, (int)strlen(text));
  json_object_set_new(json_object_get(s, "data"), key, json_string(enc));
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_update(kube, &gvr_secrets, ns, s, NULL, NULL, &err), 0, "%s", err.message);
  json_decref(s);
}

Test(tenant_keys, swapped_or_altered_keys_do_not_unwrap) {
  json_t *a = tenant_create(), *b = tenant_create();
  struct tn_tenant_keys_config cfg = config();
  struct tn_tenant_keys_result r;
  reconcile_ok(&cfg, a, &r);
  tn_tenant_keys_result_cleanup(&r);
  reconcile_ok(&cfg, b, &r);
  tn_tenant_keys_result_cleanup(&r);

  /* a's version 1 copied into b's Secret: wrapped for another tenant. */
  json_t *sa = keys_secret(a);
  json_t *ea = envelope(sa, 1);
  char *text = json_dumps(ea, JSON_COMPACT);
  secret_set(b, "dek-1", text);
  unsigned char key[TN_KMS_KEY_LEN];
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_keys_unwrap(kube, &cfg, name_of(b), 1, key, NULL, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "authentication failed"), "%s", err.message);
  free(text);

  /* One character of a's ciphertext changed. */
  const char *ct = json_string_value(json_object_get(ea, "ct"));
  char altered[256];
  snprintf(altered, sizeof altered, "%s", ct);
  altered[3] = altered[3] == 'A' ? 'B' : 'A';
  json_object_set_new(ea, "ct", json_string(altered));
  text = json_dumps(ea, JSON_COMPACT);
  secret_set(a, "dek-1", text);
  cr_assert_eq(tn_tenant_keys_unwrap(kube, &cfg, name_of(a), 1, key, NULL, &err), TN_EINVALID);
  free(text);

  /* Not an envelope at all: the reconcile says so and writes nothing. */
  secret_set(a, "dek-1", "garbage");
  int rc = tn_tenant_keys_reconcile(kube, &cfg, a, &r, &err);
  cr_assert_eq(rc, TN_EINVALID);
  cr_assert_str_eq(r.reason, "KeysInvalid");
  cr_assert_eq(r.writes, 0);
  tn_tenant_keys_result_cleanup(&r);
  json_decref(ea);
  json_decref(sa);
  json_decref(a);
  json_decref(b);
}

Test(tenant_keys, our_metadata_is_restored_without_a_key_change) {
  json_t *t = tenant_create();
  struct tn_tenant_keys_config cfg = config();
  struct tn_tenant_keys_result r;
  reconcile_ok(&cfg, t, &r);
  tn_tenant_keys_result_cleanup(&r);
  json_t *s = keys_secret(t);
  json_t *meta = json_object_get(s, "metadata");
  json_object_del(json_object_get(meta, "labels"), "tenancy.dev/tenant");
  json_object_del(json_object_get(meta, "annotations"), TN_ANNOTATION_KEYS_VERSION);
  json_object_set_new(json_object_get(meta, "annotations"), "someone.else/note", json_string("kept"));
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_update(kube, &gvr_secrets, ns, s, NULL, NULL, &err), 0, "%s", err.message);
  json_decref(s);

  n_records = 0;
  reconcile_ok(&cfg, t, &r);
  cr_assert_eq(r.writes, 1);
  cr_assert_eq(r.version, 1, "the newest version is current when the annotation is gone");
  cr_assert_not(r.created || r.rotated || r.rewrapped);
  cr_assert_str_eq(r.correlation_id, "");
  cr_assert_eq(n_records, 0, "no key changed: nothing to audit");
  tn_tenant_keys_result_cleanup(&r);
  s = keys_secret(t);
  cr_assert_str_eq(annotation(s, TN_ANNOTATION_KEYS_VERSION), "1");
  cr_assert_str_eq(annotation(s, "someone.else/note"), "kept");
  cr_assert_str_eq(json_string_value(json_object_get(
                       json_object_get(json_object_get(s, "metadata"), "labels"), "tenancy.dev/tenant")),
                   name_of(t));
  json_decref(s);

  /* An annotation naming a version that does not exist is not "repaired". */
  s = keys_secret(t);
  json_object_set_new(json_object_get(json_object_get(s, "metadata"), "annotations"),
                      TN_ANNOTATION_KEYS_VERSION, json_string("7"));
  cr_assert_eq(tn_kube_update(kube, &gvr_secrets, ns, s, NULL, NULL, &err), 0, "%s", err.message);
  json_decref(s);
  int rc = tn_tenant_keys_reconcile(kube, &cfg, t, &r, &err);
  cr_assert_eq(rc, TN_EINVALID);
  cr_assert_str_eq(r.reason, "KeysInvalid");
  cr_assert_eq(r.writes, 0);
  tn_tenant_keys_result_cleanup(&r);
  json_decref(t);
}

Test(tenant_keys, a_damaged_kek_secret_is_never_replaced) {
  /* current names kek-2, which is missing. */
  json_t *bad = json_pack("{s:s,s:s,s:s,s:{s:s},s:{s:s,s:s}}", "apiVersion", "v1", "kind", "Secret", "type",
                          "tenancy.dev/kek", "metadata", "name", "tenancy-kek", "data", "kek-1",
                          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "current", "Mg==");
  json_t *stored = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_create(kube, &gvr_secrets, ns, bad, &stored, &err), 0, "%s", err.message);
  json_decref(bad);
  json_t *t = tenant_create();
  struct tn_tenant_keys_config cfg = config();
  struct tn_tenant_keys_result r;
  int rc = tn_tenant_keys_reconcile(kube, &cfg, t, &r, &err);
  cr_assert_eq(rc, TN_EINVALID);
  cr_assert_str_eq(r.status, "False");
  cr_assert_str_eq(r.reason, "KMSError");
  cr_assert(strstr(r.message, "never regenerated"), "%s", r.message);
  cr_assert_eq(r.writes, 0);
  tn_tenant_keys_result_cleanup(&r);
  cr_assert_eq(tn_kek_secret_writes(kek), 0);
  char id[TN_KMS_ID_MAX];
  cr_assert_eq(tn_kek_secret_rotate(kek, id, sizeof id, &err), TN_EINVALID,
               "rotation adds to a broken Secret");
  json_t *now = secret_get("tenancy-kek");
  cr_assert(json_equal(json_object_get(now, "data"), json_object_get(stored, "data")),
            "the KEK Secret changed");
  json_decref(now);
  json_decref(stored);
  json_decref(t);
}

Test(tenant_keys, teardown_destroys_the_keys) {
  json_t *t = tenant_create();
  struct tn_tenant_keys_config cfg = config();
  struct tn_tenant_keys_result r;
  reconcile_ok(&cfg, t, &r);
  json_object_set_new(t, "status", json_pack("{s:O}", "keys", r.keys));
  tn_tenant_keys_result_cleanup(&r);
  char name[128];
  snprintf(name, sizeof name, "tenant-keys-%s", name_of(t));

  n_records = 0;
  struct tn_error err = {0};
  cr_assert_eq(tn_tenant_keys_teardown(kube, &cfg, t, &r, &err), 0, "%s", err.message);
  cr_assert(r.destroyed);
  cr_assert_eq(r.writes, 1);
  cr_assert_str_eq(r.status, "True");
  cr_assert_str_eq(r.reason, "Destroyed");
  cr_assert_eq(json_integer_value(json_object_get(r.keys, "version")), 1);
  cr_assert_not_null(json_object_get(r.keys, "destroyedAt"));
  cr_assert_eq(n_records, 2);
  cr_assert_str_eq(records[0].action, "key.destroy");
  cr_assert_str_eq(records[0].outcome, TN_AUDIT_STARTED);
  cr_assert_str_eq(records[1].outcome, TN_AUDIT_SUCCEEDED);
  cr_assert_str_eq(records[0].correlation_id, r.correlation_id);
  cr_assert_not(secret_exists(name));
  unsigned char key[TN_KMS_KEY_LEN];
  cr_assert_eq(tn_tenant_keys_unwrap(kube, &cfg, name_of(t), 1, key, NULL, &err), TN_ENOTFOUND);
  json_t *destroyed = json_incref(r.keys);
  tn_tenant_keys_result_cleanup(&r);

  /* Again before the status was written: reported destroyed, no write, no audit. */
  cr_assert_eq(tn_tenant_keys_teardown(kube, &cfg, t, &r, &err), 0, "%s", err.message);
  cr_assert(r.destroyed);
  cr_assert_eq(r.writes, 0);
  cr_assert_eq(n_records, 2);
  tn_tenant_keys_result_cleanup(&r);
  /* And after it was written: status.keys kept as is. */
  json_object_set_new(t, "status", json_pack("{s:o}", "keys", destroyed));
  cr_assert_eq(tn_tenant_keys_teardown(kube, &cfg, t, &r, &err), 0, "%s", err.message);
  cr_assert_not(r.destroyed);
  cr_assert_eq(r.writes, 0);
  cr_assert(json_equal(r.keys, destroyed));
  tn_tenant_keys_result_cleanup(&r);
  /* A tenant that never had keys: nothing to report. */
  json_object_del(t, "status");
  cr_assert_eq(tn_tenant_keys_teardown(kube, &cfg, t, &r, &err), 0, "%s", err.message);
  cr_assert_null(r.status);
  cr_assert_null(r.keys);
  tn_tenant_keys_result_cleanup(&r);
  json_decref(t);
}

/* ---- concurrency: workers share one KMS ---------------------------------------------------------- */

struct worker {
  json_t *tenant;
  int rc;
  char kek[TN_KMS_ID_MAX];
};

static void *work(void *ud) {
  struct worker *w = ud;
  struct tn_tenant_keys_config cfg = {.namespace = ns, .kms = tn_kek_secret_provider(kek)};
  struct tn_tenant_keys_result r;
  w->rc = tn_tenant_keys_reconcile(kube, &cfg, w->tenant, &r, NULL);
  snprintf(w->kek, sizeof w->kek, "%s", r.kek);
  tn_tenant_keys_result_cleanup(&r);
  return NULL;
}

Test(tenant_keys, concurrent_first_uses_create_one_kek) {
  struct worker w[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    w[i] = (struct worker){.tenant = tenant_create()};
  for (int i = 0; i < 4; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(w[i].rc, 0, "worker %d", i);
    cr_assert_str_eq(w[i].kek, "kek-1");
    json_decref(w[i].tenant);
  }
  cr_assert_eq(tn_kek_secret_writes(kek), 1);
}

/* The KEK Secret is deleted while tenants have data keys wrapped by it: neither the provider that
 * read it before (a running operator) nor a fresh one (after a restart) makes a new KEK; the step
 * answers KeysReady=False, KMSError, naming the Secret to restore; once it is restored, the same
 * data keys unwrap again. */
Test(tenant_keys, a_deleted_kek_secret_is_never_regenerated) {
  json_t *t = tenant_create();
  struct tn_error err = {0};
  struct tn_kek_secret *live = NULL;
  struct tn_kek_secret_options o = {.namespace = ns, .refresh_s = 1e-6}; /* rereads at every call */
  cr_assert_eq(tn_kek_secret_new(kube, &o, &live, &err), 0, "%s", err.message);
  struct tn_tenant_keys_config cfg = config();
  cfg.kms = tn_kek_secret_provider(live);
  struct tn_tenant_keys_result r;
  reconcile_ok(&cfg, t, &r);
  json_object_set_new(t, "status", json_pack("{s:O}", "keys", r.keys));
  char kek_id[TN_KMS_ID_MAX];
  snprintf(kek_id, sizeof kek_id, "%s", r.kek);
  tn_tenant_keys_result_cleanup(&r);
  unsigned char before[TN_KMS_KEY_LEN], after[TN_KMS_KEY_LEN];
  long long v = 0;
  cr_assert_eq(tn_tenant_keys_unwrap(kube, &cfg, name_of(t), 0, before, &v, &err), 0, "%s", err.message);

  /* Keep the KEK Secret (as a backup would), then delete it. */
  json_t *backup = secret_get(TN_KEK_SECRET);
  json_t *bm = json_object_get(backup, "metadata");
  json_object_del(bm, "resourceVersion");
  json_object_del(bm, "uid");
  json_object_del(bm, "creationTimestamp");
  json_object_del(bm, "managedFields");
  cr_assert_eq(tn_kube_delete(kube, &gvr_secrets, ns, TN_KEK_SECRET, NULL, &err), 0, "%s", err.message);

  struct tn_kek_secret *restarted = NULL;
  cr_assert_eq(tn_kek_secret_new(kube, &o, &restarted, &err), 0, "%s", err.message);
  struct tn_kek_secret *each[] = {live, restarted};
  for (int i = 0; i < 2; i++) {
    struct tn_tenant_keys_config c = cfg;
    c.kms = tn_kek_secret_provider(each[i]);
    int rc = tn_tenant_keys_reconcile(kube, &c, t, &r, &err);
    cr_assert_neq(rc, 0, "%s provider: the reconcile succeeded without the KEK Secret",
                  i ? "a restarted" : "the running");
    cr_assert_str_eq(r.status, "False");
    cr_assert_str_eq(r.reason, "KMSError", "%s", r.message);
    cr_assert(strstr(r.message, "restore") != NULL, "%s", r.message);
    char where[160];
    snprintf(where, sizeof where, "%s/%s", ns, TN_KEK_SECRET);
    cr_assert(strstr(r.message, where) != NULL, "the message does not name %s: %s", where, r.message);
    cr_assert_eq(r.writes, 0);
    cr_assert_gt(r.requeue_after_s, 0, "a KMSError is looked at again without another change");
    tn_tenant_keys_result_cleanup(&r);
    cr_assert(!secret_exists(TN_KEK_SECRET), "%s provider regenerated the KEK Secret",
              i ? "a restarted" : "the running");
    cr_assert_eq(tn_kek_secret_writes(each[i]), i == 0 ? 1 : 0, "KEK Secret writes");
    cr_assert_neq(tn_tenant_keys_unwrap(kube, &c, name_of(t), 0, after, NULL, &err), 0);
    char id[TN_KMS_ID_MAX];
    cr_assert_neq(tn_kek_secret_rotate(each[i], id, sizeof id, &err), 0, "a missing KEK Secret was rotated");
    cr_assert(!secret_exists(TN_KEK_SECRET));
  }

  /* Restored from the backup: Ready again, the same KEK, the same data key. */
  cr_assert_eq(tn_kube_create(kube, &gvr_secrets, ns, backup, NULL, &err), 0, "%s", err.message);
  for (int i = 0; i < 2; i++) {
    struct tn_tenant_keys_config c = cfg;
    c.kms = tn_kek_secret_provider(each[i]);
    reconcile_ok(&c, t, &r);
    cr_assert_str_eq(r.kek, kek_id);
    cr_assert_eq(r.writes, 0);
    tn_tenant_keys_result_cleanup(&r);
    cr_assert_eq(tn_tenant_keys_unwrap(kube, &c, name_of(t), 0, after, &v, &err), 0, "%s", err.message);
    cr_assert_eq(memcmp(before, after, sizeof before), 0, "the data key changed");
  }
  OPENSSL_cleanse(before, sizeof before);
  OPENSSL_cleanse(after, sizeof after);
  json_decref(backup);
  tn_kek_secret_free(restarted);
  tn_kek_secret_free(live);
  json_decref(t);
}
