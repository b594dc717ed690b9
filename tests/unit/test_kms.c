/* test_kms.c - the KMS envelope and keyring: AES-256-GCM wrap/unwrap round trips, a wrong KEK,
 * another tenant's or version's context, and every altered field fail; malformed envelopes are
 * refused with words; KEK ids and versions; the keyring provider picks KEKs by id. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/kms.h"

static const char *AAD = "tenant=acme;version=1";

static void fill(unsigned char *k, unsigned char v) { memset(k, v, TN_KMS_KEY_LEN); }

static char *seal_or_die(const char *id, const unsigned char *kek, const unsigned char *key,
                         const char *aad) {
  char *env = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_seal(id, kek, key, TN_KMS_KEY_LEN, aad, &env, &err), 0, "%s", err.message);
  cr_assert_not_null(env);
  return env;
}

/* The envelope with one field replaced (a new string). */
static char *with_field(const char *env, const char *field, const char *value) {
  json_t *o = json_loads(env, 0, NULL);
  cr_assert_not_null(o);
  json_object_set_new(o, field, json_string(value));
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return s;
}

/* The base64 field with one bit of its decoded bytes flipped (a new string). */
static char *with_bit_flipped(const char *env, const char *field) {
  json_t *o = json_loads(env, 0, NULL);
  const char *v = json_string_value(json_object_get(o, field));
  cr_assert_not_null(v);
  unsigned char raw[2048];
  int n = EVP_DecodeBlock(raw, (const unsigned char *)v, (int)strlen(v));
  size_t pad = (v[strlen(v) - 1] == '=') + (v[strlen(v) - 2] == '=');
  n -= (int)pad;
  cr_assert_gt(n, 0);
  raw[n / 2] ^= 0x01;
  char enc[4096];
  EVP_EncodeBlock((unsigned char *)enc, raw, n);
  json_object_set_new(o, field, json_string(enc));
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return s;
}

/* ---- round trips -------------------------------------------------------------------------------- */

Test(kms_envelope, round_trip_gives_the_same_key) {
  unsigned char kek[TN_KMS_KEY_LEN], key[TN_KMS_KEY_LEN], out[TN_KMS_KEY_LEN];
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_random(kek, sizeof kek, &err), 0);
  cr_assert_eq(tn_kms_random(key, sizeof key, &err), 0);
  char *env = seal_or_die("kek-1", kek, key, AAD);
  size_t len = 0;
  cr_assert_eq(tn_kms_open(kek, env, AAD, out, sizeof out, &len, &err), 0, "%s", err.message);
  cr_assert_eq(len, TN_KMS_KEY_LEN);
  cr_assert_eq(memcmp(out, key, len), 0);
  free(env);
}

Test(kms_envelope, format_names_kek_and_algorithm_and_hides_the_key) {
  unsigned char kek[TN_KMS_KEY_LEN], key[TN_KMS_KEY_LEN];
  fill(kek, 7);
  fill(key, 0x42);
  char *env = seal_or_die("kek-3", kek, key, AAD);
  json_error_t je;
  json_t *o = json_loads(env, JSON_REJECT_DUPLICATES, &je);
  cr_assert_not_null(o, "%s", je.text);
  cr_assert_eq(json_object_size(o), 5, "exactly kek, alg, iv, ct, tag: %s", env);
  cr_assert_str_eq(json_string_value(json_object_get(o, "kek")), "kek-3");
  cr_assert_str_eq(json_string_value(json_object_get(o, "alg")), "A256GCM");
  unsigned char raw[64];
  cr_assert_eq(EVP_DecodeBlock(raw, (const unsigned char *)json_string_value(json_object_get(o, "iv")), 16),
               12);
  /* The plaintext appears nowhere: neither raw (as ct) nor in base64. */
  char key64[64];
  EVP_EncodeBlock((unsigned char *)key64, key, sizeof key);
  cr_assert_null(strstr(env, key64), "the envelope carries the key in clear: %s", env);
  const char *ct = json_string_value(json_object_get(o, "ct"));
  cr_assert_str_neq(ct, key64);
  char id[TN_KMS_ID_MAX];
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_envelope_kek(env, id, sizeof id, &err), 0, "%s", err.message);
  cr_assert_str_eq(id, "kek-3");
  json_decref(o);
  free(env);
}

Test(kms_envelope, same_key_sealed_twice_differs) {
  unsigned char kek[TN_KMS_KEY_LEN], key[TN_KMS_KEY_LEN];
  fill(kek, 1);
  fill(key, 2);
  char *a = seal_or_die("kek-1", kek, key, AAD), *b = seal_or_die("kek-1", kek, key, AAD);
  cr_assert_str_neq(a, b, "a fresh IV every time");
  free(a);
  free(b);
}

Test(kms_envelope, null_aad_round_trips_and_any_context_then_fails) {
  unsigned char kek[TN_KMS_KEY_LEN], key[TN_KMS_KEY_LEN], out[TN_KMS_KEY_LEN];
  fill(kek, 9);
  fill(key, 3);
  char *env = seal_or_die("kek-1", kek, key, NULL);
  size_t len = 0;
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_open(kek, env, NULL, out, sizeof out, &len, &err), 0, "%s", err.message);
  cr_assert_eq(memcmp(out, key, sizeof key), 0);
  cr_assert_eq(tn_kms_open(kek, env, "tenant=acme", out, sizeof out, &len, &err), TN_EINVALID);
  free(env);
}

/* ---- what must fail --------------------------------------------------------------------------- */

Test(kms_envelope, wrong_kek_fails_and_wipes_the_output) {
  unsigned char kek[TN_KMS_KEY_LEN], other[TN_KMS_KEY_LEN], key[TN_KMS_KEY_LEN], out[TN_KMS_KEY_LEN];
  fill(kek, 1);
  fill(other, 1);
  other[31] ^= 0x80; /* one bit apart */
  fill(key, 5);
  char *env = seal_or_die("kek-1", kek, key, AAD);
  memset(out, 0xee, sizeof out);
  size_t len = 99;
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_open(other, env, AAD, out, sizeof out, &len, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "authentication failed"), "%s", err.message);
  unsigned char zero[TN_KMS_KEY_LEN] = {0};
  cr_assert_eq(memcmp(out, zero, sizeof out), 0, "output wiped on failure");
  free(env);
}

Test(kms_envelope, another_tenant_or_version_context_fails) {
  unsigned char kek[TN_KMS_KEY_LEN], key[TN_KMS_KEY_LEN], out[TN_KMS_KEY_LEN];
  fill(kek, 1);
  fill(key, 5);
  char *env = seal_or_die("kek-1", kek, key, "tenant=acme;version=1");
  size_t len;
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_open(kek, env, "tenant=globex;version=1", out, sizeof out, &len, &err), TN_EINVALID);
  cr_assert_eq(tn_kms_open(kek, env, "tenant=acme;version=2", out, sizeof out, &len, &err), TN_EINVALID);
  cr_assert_eq(tn_kms_open(kek, env, "tenant=acme;version=1", out, sizeof out, &len, &err), 0, "%s",
               err.message);
  free(env);
}

Test(kms_envelope, every_altered_field_fails) {
  unsigned char kek[TN_KMS_KEY_LEN], key[TN_KMS_KEY_LEN], out[TN_KMS_KEY_LEN];
  fill(kek, 1);
  fill(key, 5);
  char *env = seal_or_die("kek-1", kek, key, AAD);
  const char *fields[] = {"ct", "tag", "iv"};
  for (int i = 0; i < 3; i++) {
    char *bad = with_bit_flipped(env, fields[i]);
    size_t len;
    struct tn_error err = {0};
    cr_assert_eq(tn_kms_open(kek, bad, AAD, out, sizeof out, &len, &err), TN_EINVALID, "%s altered: %s",
                 fields[i], bad);
    cr_assert(strstr(err.message, "authentication failed"), "%s: %s", fields[i], err.message);
    free(bad);
  }
  /* Relabelled with another KEK id: the id is authenticated too. */
  char *relabelled = with_field(env, "kek", "kek-2");
  size_t len;
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_open(kek, relabelled, AAD, out, sizeof out, &len, &err), TN_EINVALID);
  free(relabelled);
  free(env);
}

Test(kms_envelope, malformed_envelopes_are_refused_with_words) {
  unsigned char kek[TN_KMS_KEY_LEN], key[TN_KMS_KEY_LEN], out[TN_KMS_KEY_LEN];
  fill(kek, 1);
  fill(key, 5);
  char *env = seal_or_die("kek-1", kek, key, AAD);
  struct {
    char *text;
    const char *expect;
  } cases[] = {
      {strdup("not json"), "not a JSON object"},
      {strdup("[1,2]"), "not a JSON object"},
      {strdup("{\"kek\":\"kek-1\"}"), "field alg"},
      {with_field(env, "alg", "A256KW"), "not supported"},
      {with_field(env, "iv", "AAAA"), "iv must be 12"},
      {with_field(env, "tag", "!!!!"), "tag 16"},
      {with_field(env, "ct", "%%%"), "ct is not base64"},
      {with_field(env, "kek", "kek 1/.."), "is not a key id"},
      {with_field(env, "ct", ""), "field ct"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t len;
    struct tn_error err = {0};
    cr_assert_eq(tn_kms_open(kek, cases[i].text, AAD, out, sizeof out, &len, &err), TN_EINVALID,
                 "case %zu: %s", i, cases[i].text);
    cr_assert(strstr(err.message, cases[i].expect), "case %zu: expected \"%s\" in \"%s\"", i, cases[i].expect,
              err.message);
    free(cases[i].text);
  }
  /* A key longer than the caller's buffer. */
  size_t len;
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_open(kek, env, AAD, out, 16, &len, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "does not fit"), "%s", err.message);
  free(env);
}

Test(kms_envelope, seal_refuses_bad_arguments) {
  unsigned char kek[TN_KMS_KEY_LEN], key[2048];
  fill(kek, 1);
  memset(key, 1, sizeof key);
  char *env = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_seal("", kek, key, 32, AAD, &env, &err), -EINVAL);
  cr_assert_eq(tn_kms_seal("kek/1", kek, key, 32, AAD, &env, &err), -EINVAL);
  cr_assert_eq(tn_kms_seal("kek-1", kek, key, 0, AAD, &env, &err), -EINVAL);
  cr_assert_eq(tn_kms_seal("kek-1", kek, key, sizeof key, AAD, &env, &err), -EINVAL);
  cr_assert_null(env);
}

Test(kms_envelope, another_providers_envelope_names_its_kek) {
  const char *aws = "{\"kek\":\"arn:aws:kms:eu-west-1:111122223333:key/1234abcd\",\"alg\":\"aws-kms\","
                    "\"blob\":\"AQIDAHh...\"}";
  char id[TN_KMS_ID_MAX];
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_envelope_kek(aws, id, sizeof id, &err), 0, "%s", err.message);
  cr_assert_str_eq(id, "arn:aws:kms:eu-west-1:111122223333:key/1234abcd");
  unsigned char kek[TN_KMS_KEY_LEN], out[TN_KMS_KEY_LEN];
  fill(kek, 1);
  size_t len;
  cr_assert_eq(tn_kms_open(kek, aws, AAD, out, sizeof out, &len, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "\"aws-kms\" is not supported"), "%s", err.message);
  /* The local keyring does not hold that KEK. */
  struct tn_kms_keyring *k = tn_kms_keyring_new();
  struct tn_kms_provider p;
  tn_kms_keyring_provider(k, &p);
  cr_assert_eq(p.unwrap(p.ud, aws, AAD, out, sizeof out, &len, &err), TN_ENOTFOUND);
  tn_kms_keyring_free(k);
  cr_assert_eq(tn_kms_envelope_kek("{\"kek\":\"a b\",\"alg\":\"x\"}", id, sizeof id, &err), TN_EINVALID);
  cr_assert_eq(tn_kms_envelope_kek("{\"kek\":\"k\"}", id, sizeof id, &err), TN_EINVALID);
}

/* ---- ids and versions ------------------------------------------------------------------------- */

Test(kms_ids, format_and_parse) {
  char id[TN_KMS_ID_MAX];
  cr_assert_eq(tn_kms_kek_id(1, id, sizeof id), 0);
  cr_assert_str_eq(id, "kek-1");
  cr_assert_eq(tn_kms_kek_id(1234567890123LL, id, sizeof id), 0);
  cr_assert_str_eq(id, "kek-1234567890123");
  cr_assert_eq(tn_kms_kek_id(0, id, sizeof id), -EINVAL);
  cr_assert_eq(tn_kms_kek_id(12345, id, 6), -EINVAL, "does not fit");
  long long n = 0;
  cr_assert_eq(tn_kms_kek_id_parse("kek-1", &n), 0);
  cr_assert_eq(n, 1);
  cr_assert_eq(tn_kms_kek_id_parse("kek-42", &n), 0);
  cr_assert_eq(n, 42);
  const char *bad[] = {
      "kek-0", "kek-01", "kek--1", "kek-", "kek-1a", "kek-+1", "dek-1", "kek-99999999999999999999", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(tn_kms_kek_id_parse(bad[i], &n), -EINVAL, "%s", bad[i]);
  cr_assert_eq(tn_kms_kek_id_parse(NULL, &n), -EINVAL);
}

Test(kms_ids, random_keys_differ) {
  unsigned char a[TN_KMS_KEY_LEN], b[TN_KMS_KEY_LEN];
  cr_assert_eq(tn_kms_random(a, sizeof a, NULL), 0);
  cr_assert_eq(tn_kms_random(b, sizeof b, NULL), 0);
  cr_assert_neq(memcmp(a, b, sizeof a), 0);
}

/* ---- the keyring provider --------------------------------------------------------------------- */

Test(kms_keyring, wraps_with_current_and_unwraps_by_the_envelopes_kek) {
  struct tn_kms_keyring *k = tn_kms_keyring_new();
  cr_assert_not_null(k);
  unsigned char k1[TN_KMS_KEY_LEN], k2[TN_KMS_KEY_LEN], key[TN_KMS_KEY_LEN], out[TN_KMS_KEY_LEN];
  fill(k1, 1);
  fill(k2, 2);
  fill(key, 0x5a);
  struct tn_error err = {0};
  cr_assert_null(tn_kms_keyring_current(k));
  cr_assert_eq(tn_kms_keyring_add(k, "kek-1", k1, &err), 0, "%s", err.message);
  cr_assert_str_eq(tn_kms_keyring_current(k), "kek-1", "the first key is current");
  struct tn_kms_provider p;
  tn_kms_keyring_provider(k, &p);
  cr_assert_str_eq(p.name, "local");
  char *env1 = NULL, *env2 = NULL, *env_old = NULL;
  cr_assert_eq(p.wrap(p.ud, NULL, key, sizeof key, AAD, &env1, &err), 0, "%s", err.message);

  cr_assert_eq(tn_kms_keyring_add(k, "kek-2", k2, &err), 0, "%s", err.message);
  cr_assert_str_eq(tn_kms_keyring_current(k), "kek-1", "adding does not switch");
  cr_assert_eq(tn_kms_keyring_set_current(k, "kek-2", &err), 0);
  char cur[TN_KMS_ID_MAX];
  cr_assert_eq(p.current_kek(p.ud, cur, sizeof cur, &err), 0);
  cr_assert_str_eq(cur, "kek-2");
  cr_assert_eq(p.wrap(p.ud, NULL, key, sizeof key, AAD, &env2, &err), 0, "%s", err.message);
  cr_assert_eq(p.wrap(p.ud, "kek-1", key, sizeof key, AAD, &env_old, &err), 0, "%s", err.message);
  char id[TN_KMS_ID_MAX];
  tn_kms_envelope_kek(env1, id, sizeof id, NULL);
  cr_assert_str_eq(id, "kek-1");
  tn_kms_envelope_kek(env2, id, sizeof id, NULL);
  cr_assert_str_eq(id, "kek-2");
  tn_kms_envelope_kek(env_old, id, sizeof id, NULL);
  cr_assert_str_eq(id, "kek-1", "an explicit KEK id is honoured");

  char *envs[] = {env1, env2, env_old};
  for (int i = 0; i < 3; i++) {
    size_t len = 0;
    memset(out, 0, sizeof out);
    cr_assert_eq(p.unwrap(p.ud, envs[i], AAD, out, sizeof out, &len, &err), 0, "%s", err.message);
    cr_assert_eq(memcmp(out, key, sizeof key), 0);
  }
  /* The envelope made with kek-1 does not open with kek-2's bytes. */
  size_t len;
  cr_assert_eq(tn_kms_open(k2, env1, AAD, out, sizeof out, &len, &err), TN_EINVALID);
  free(env1);
  free(env2);
  free(env_old);
  tn_kms_keyring_free(k);
}

Test(kms_keyring, unknown_kek_is_not_found) {
  struct tn_kms_keyring *k = tn_kms_keyring_new(), *other = tn_kms_keyring_new();
  unsigned char k1[TN_KMS_KEY_LEN], key[TN_KMS_KEY_LEN], out[TN_KMS_KEY_LEN];
  fill(k1, 1);
  fill(key, 2);
  struct tn_error err = {0};
  struct tn_kms_provider p, q;
  tn_kms_keyring_provider(k, &p);
  tn_kms_keyring_provider(other, &q);
  char *env = NULL, cur[TN_KMS_ID_MAX];
  cr_assert_eq(p.current_kek(p.ud, cur, sizeof cur, &err), TN_ENOTFOUND, "empty keyring");
  cr_assert_eq(p.wrap(p.ud, NULL, key, sizeof key, AAD, &env, &err), TN_ENOTFOUND);
  cr_assert_eq(tn_kms_keyring_add(k, "kek-1", k1, &err), 0);
  cr_assert_eq(p.wrap(p.ud, "kek-9", key, sizeof key, AAD, &env, &err), TN_ENOTFOUND);
  cr_assert_eq(p.wrap(p.ud, NULL, key, sizeof key, AAD, &env, &err), 0);
  size_t len;
  cr_assert_eq(q.unwrap(q.ud, env, AAD, out, sizeof out, &len, &err), TN_ENOTFOUND);
  cr_assert(strstr(err.message, "kek-1"), "names the KEK: %s", err.message);
  free(env);
  tn_kms_keyring_free(k);
  tn_kms_keyring_free(other);
}

Test(kms_keyring, ids_are_checked_and_unique) {
  struct tn_kms_keyring *k = tn_kms_keyring_new();
  unsigned char k1[TN_KMS_KEY_LEN];
  fill(k1, 1);
  struct tn_error err = {0};
  cr_assert_eq(tn_kms_keyring_add(k, "kek-1", k1, &err), 0);
  cr_assert_eq(tn_kms_keyring_add(k, "kek-1", k1, &err), TN_EEXISTS);
  cr_assert_eq(tn_kms_keyring_add(k, "a b", k1, &err), TN_EINVALID);
  cr_assert_eq(tn_kms_keyring_add(k, "", k1, &err), TN_EINVALID);
  cr_assert_eq(tn_kms_keyring_set_current(k, "kek-2", &err), TN_ENOTFOUND);
  /* Growing past the first allocation keeps every key. */
  for (int i = 2; i <= 20; i++) {
    char id[TN_KMS_ID_MAX];
    tn_kms_kek_id(i, id, sizeof id);
    fill(k1, (unsigned char)i);
    cr_assert_eq(tn_kms_keyring_add(k, id, k1, &err), 0, "%s", err.message);
  }
  cr_assert_eq(tn_kms_keyring_count(k), 20);
  cr_assert(tn_kms_keyring_has(k, "kek-1"));
  cr_assert(tn_kms_keyring_has(k, "kek-20"));
  cr_assert_not(tn_kms_keyring_has(k, "kek-21"));
  cr_assert_str_eq(tn_kms_keyring_current(k), "kek-1");
  tn_kms_keyring_free(k);
  tn_kms_keyring_free(NULL);
}
