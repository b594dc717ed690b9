/* kms.c - AES-256-GCM envelopes of wrapped keys, KEK ids, and the in-memory keyring provider
 * (see kms.h). The authenticated data of every envelope is
 *   "tenancy.dev/kms/v1\nkek=<kek id>\n<caller's aad>"
 * so neither the KEK id nor the caller's context (tenant, version) can be changed unnoticed. */
#include "tenancy/kms.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IV_LEN 12
#define TAG_LEN 16
#define MAX_KEY 1024
#define AAD_PREFIX "tenancy.dev/kms/v1\nkek="

/* ---- random keys and KEK ids ------------------------------------------------------------------ */

int tn_kms_random(unsigned char *key, size_t n, struct tn_error *err) {
  if (n > INT_MAX || RAND_bytes(key, (int)n) != 1) {
    OPENSSL_cleanse(key, n);
    return tn_error_set(err, TN_EUNAVAILABLE, "the random number generator failed (no entropy?)");
  }
  return 0;
}

int tn_kms_kek_id(long long n, char *id, size_t cap) {
  if (n < 1 || !id)
    return -EINVAL;
  int w = snprintf(id, cap, "kek-%lld", n);
  return w < 0 || (size_t)w >= cap ? -EINVAL : 0;
}

int tn_kms_kek_id_parse(const char *id, long long *n) {
  if (!id || strncmp(id, "kek-", 4) != 0)
    return -EINVAL;
  const char *d = id + 4;
  if (*d < '1' || *d > '9')
    return -EINVAL;
  long long v = 0;
  for (; *d; d++) {
    if (*d < '0' || *d > '9' || v > (LLONG_MAX - 9) / 10)
      return -EINVAL;
    v = v * 10 + (*d - '0');
  }
  *n = v;
  return 0;
}

static bool valid_id(const char *id) {
  size_t n = id ? strlen(id) : 0;
  if (n == 0 || n >= TN_KMS_ID_MAX)
    return false;
  for (const char *c = id; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
          *c == '_' || *c == '-'))
      return false;
  return true;
}

/* ---- base64 ----------------------------------------------------------------------------------- */

static char *b64(const unsigned char *p, size_t n) {
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (out)
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
  return out;
}

/* Decodes standard base64 s into out[cap]; returns the length or -1 (bad text, too long). */
static long unb64(const char *s, unsigned char *out, size_t cap) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n % 4 || n / 4 * 3 > cap + 2)
    return -1;
  unsigned char *tmp = malloc(n / 4 * 3 + 1);
  if (!tmp)
    return -1;
  int len = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n);
  if (len >= 0) {
    if (s[n - 1] == '=') /* EVP_DecodeBlock counts the padding */
      len--;
    if (s[n - 2] == '=')
      len--;
  }
  long rc = -1;
  if (len >= 0 && (size_t)len <= cap) {
    memcpy(out, tmp, (size_t)len);
    rc = len;
  }
  OPENSSL_cleanse(tmp, n / 4 * 3 + 1);
  free(tmp);
  return rc;
}

/* ---- the envelope ----------------------------------------------------------------------------- */

/* The authenticated data for kek_id and aad into a new string. */
static char *full_aad(const char *kek_id, const char *aad) {
  size_t n = strlen(AAD_PREFIX) + strlen(kek_id) + 1 + (aad ? strlen(aad) : 0) + 1;
  char *s = malloc(n);
  if (s)
    snprintf(s, n, "%s%s\n%s", AAD_PREFIX, kek_id, aad ? aad : "");
  return s;
}

int tn_kms_seal(const char *kek_id, const unsigned char kek[TN_KMS_KEY_LEN], const unsigned char *key,
                size_t len, const char *aad, char **envelope, struct tn_error *err) {
  int rc = 0, outl = 0;
  unsigned char iv[IV_LEN], tag[TAG_LEN], *ct = NULL;
  char *a = NULL, *iv64 = NULL, *ct64 = NULL, *tag64 = NULL;
  EVP_CIPHER_CTX *ctx = NULL;
  json_t *env = NULL;
  *envelope = NULL;
  if (!valid_id(kek_id) || !kek || !key || len == 0 || len > MAX_KEY)
    return tn_error_set(err, -EINVAL,
                        "seal: a KEK id ([A-Za-z0-9._-]), a KEK and a key of 1 to %d bytes are needed",
                        MAX_KEY);
  if ((rc = tn_kms_random(iv, sizeof iv, err)))
    return rc;
  if (!(a = full_aad(kek_id, aad)) || !(ct = malloc(len)) || !(ctx = EVP_CIPHER_CTX_new())) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  int tmp = 0;
  if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) != 1 ||
      EVP_EncryptInit_ex(ctx, NULL, NULL, kek, iv) != 1 ||
      EVP_EncryptUpdate(ctx, NULL, &tmp, (const unsigned char *)a, (int)strlen(a)) != 1 ||
      EVP_EncryptUpdate(ctx, ct, &outl, key, (int)len) != 1 ||
      EVP_EncryptFinal_ex(ctx, ct + outl, &tmp) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1) {
    rc = tn_error_set(err, TN_EINVALID, "seal: AES-256-GCM encryption failed");
    goto out;
  }
  outl += tmp;
  if (!(iv64 = b64(iv, sizeof iv)) || !(ct64 = b64(ct, (size_t)outl)) || !(tag64 = b64(tag, sizeof tag)) ||
      !(env = json_pack("{s:s,s:s,s:s,s:s,s:s}", "kek", kek_id, "alg", TN_KMS_ALG_GCM, "iv", iv64, "ct", ct64,
                        "tag", tag64)) ||
      !(*envelope = json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
out:
  EVP_CIPHER_CTX_free(ctx);
  if (ct) {
    OPENSSL_cleanse(ct, len);
    free(ct);
  }
  free(a);
  free(iv64);
  free(ct64);
  free(tag64);
  json_decref(env);
  return rc;
}

/* Parses an envelope into its fields (borrowed from *root, which the caller json_decrefs). */
struct parsed {
  json_t *root;
  const char *kek, *alg, *iv, *ct, *tag;
};

/* A KEK id as envelopes carry it: 1 to TN_KMS_ID_MAX-1 printable ASCII characters without
 * spaces (a managed KMS names keys with ':' and '/', e.g. an AWS key ARN). */
static bool envelope_id(const char *id) {
  size_t n = id ? strlen(id) : 0;
  if (n == 0 || n >= TN_KMS_ID_MAX)
    return false;
  for (const char *c = id; *c; c++)
    if (*c <= ' ' || *c > '~')
      return false;
  return true;
}

/* Every envelope has kek and alg; iv, ct and tag are A256GCM's and checked by tn_kms_open. */
static int parse(const char *envelope, struct parsed *p, struct tn_error *err) {
  memset(p, 0, sizeof *p);
  if (!envelope || strlen(envelope) > TN_KMS_ENVELOPE_MAX)
    return tn_error_set(err, TN_EINVALID, "wrapped key: empty or longer than %d bytes", TN_KMS_ENVELOPE_MAX);
  json_error_t je;
  p->root = json_loads(envelope, JSON_REJECT_DUPLICATES, &je);
  if (!json_is_object(p->root))
    return tn_error_set(err, TN_EINVALID, "wrapped key: not a JSON object (%s)",
                        p->root ? "wrong type" : je.text);
  const char *names[] = {"kek", "alg", "iv", "ct", "tag"};
  const char **fields[] = {&p->kek, &p->alg, &p->iv, &p->ct, &p->tag};
  for (int i = 0; i < 5; i++)
    *fields[i] = json_string_value(json_object_get(p->root, names[i]));
  for (int i = 0; i < 2; i++)
    if (!*fields[i] || !**fields[i])
      return tn_error_set(err, TN_EINVALID, "wrapped key: field %s is missing or not a string", names[i]);
  if (!envelope_id(p->kek))
    return tn_error_set(err, TN_EINVALID, "wrapped key: kek \"%.64s\" is not a key id", p->kek);
  return 0;
}

int tn_kms_envelope_kek(const char *envelope, char *id, size_t n, struct tn_error *err) {
  struct parsed p;
  int rc = parse(envelope, &p, err);
  if (rc == 0 && snprintf(id, n, "%s", p.kek) >= (int)n)
    rc = tn_error_set(err, TN_EINVALID, "wrapped key: kek id too long");
  json_decref(p.root);
  return rc;
}

int tn_kms_open(const unsigned char kek[TN_KMS_KEY_LEN], const char *envelope, const char *aad,
                unsigned char *key, size_t cap, size_t *len, struct tn_error *err) {
  struct parsed p;
  unsigned char iv[IV_LEN + 3], tag[TAG_LEN + 3], ct[MAX_KEY + 3];
  unsigned char *pt = NULL;
  char *a = NULL;
  EVP_CIPHER_CTX *ctx = NULL;
  long ctl = 0;
  int rc = parse(envelope, &p, err);
  if (rc)
    goto out;
  if (strcmp(p.alg, TN_KMS_ALG_GCM) != 0) {
    rc = tn_error_set(err, TN_EINVALID, "wrapped key: algorithm \"%.32s\" is not supported (only %s)", p.alg,
                      TN_KMS_ALG_GCM);
    goto out;
  }
  const char *names[] = {"iv", "ct", "tag"}, *vals[] = {p.iv, p.ct, p.tag};
  for (int i = 0; i < 3; i++)
    if (!vals[i] || !*vals[i]) {
      rc = tn_error_set(err, TN_EINVALID, "wrapped key: field %s is missing or not a string", names[i]);
      goto out;
    }
  if (unb64(p.iv, iv, sizeof iv) != IV_LEN || unb64(p.tag, tag, sizeof tag) != TAG_LEN) {
    rc = tn_error_set(err, TN_EINVALID, "wrapped key: iv must be %d and tag %d bytes of base64", IV_LEN,
                      TAG_LEN);
    goto out;
  }
  if ((ctl = unb64(p.ct, ct, MAX_KEY)) <= 0) {
    rc = tn_error_set(err, TN_EINVALID, "wrapped key: ct is not base64 of 1 to %d bytes", MAX_KEY);
    goto out;
  }
  if ((size_t)ctl > cap) {
    rc = tn_error_set(err, TN_EINVALID, "wrapped key: the key (%ld bytes) does not fit in %zu", ctl, cap);
    goto out;
  }
  if (!(a = full_aad(p.kek, aad)) || !(pt = malloc((size_t)ctl)) || !(ctx = EVP_CIPHER_CTX_new())) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  int outl = 0, tmp = 0;
  if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) != 1 ||
      EVP_DecryptInit_ex(ctx, NULL, NULL, kek, iv) != 1 ||
      EVP_DecryptUpdate(ctx, NULL, &tmp, (const unsigned char *)a, (int)strlen(a)) != 1 ||
      EVP_DecryptUpdate(ctx, pt, &outl, ct, (int)ctl) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1 ||
      EVP_DecryptFinal_ex(ctx, pt + outl, &tmp) != 1) {
    rc = tn_error_set(
        err, TN_EINVALID,
        "wrapped key (KEK %.64s): authentication failed: wrong KEK, wrapped for another tenant or "
        "version, or altered",
        p.kek);
    goto out;
  }
  memcpy(key, pt, (size_t)ctl);
  *len = (size_t)ctl;
out:
  if (rc && key && cap)
    OPENSSL_cleanse(key, cap);
  if (pt) {
    OPENSSL_cleanse(pt, (size_t)ctl);
    free(pt);
  }
  OPENSSL_cleanse(ct, sizeof ct);
  EVP_CIPHER_CTX_free(ctx);
  free(a);
  json_decref(p.root);
  return rc;
}

/* ---- the keyring ------------------------------------------------------------------------------ */

struct kek {
  char id[TN_KMS_ID_MAX];
  unsigned char key[TN_KMS_KEY_LEN];
};

struct tn_kms_keyring {
  struct kek *keys;
  size_t n, alloc;
  size_t current; /* index into keys; meaningful when n > 0 */
};

struct tn_kms_keyring *tn_kms_keyring_new(void) {
  return calloc(1, sizeof(struct tn_kms_keyring));
}

void tn_kms_keyring_free(struct tn_kms_keyring *k) {
  if (!k)
    return;
  if (k->keys) {
    OPENSSL_cleanse(k->keys, k->alloc * sizeof *k->keys);
    free(k->keys);
  }
  free(k);
}

static const struct kek *find(const struct tn_kms_keyring *k, const char *id) {
  for (size_t i = 0; k && id && i < k->n; i++)
    if (strcmp(k->keys[i].id, id) == 0)
      return &k->keys[i];
  return NULL;
}

int tn_kms_keyring_add(struct tn_kms_keyring *k, const char *id, const unsigned char key[TN_KMS_KEY_LEN],
                       struct tn_error *err) {
  if (!valid_id(id))
    return tn_error_set(err, TN_EINVALID, "KEK id \"%.64s\" must be 1 to %d characters of [A-Za-z0-9._-]",
                        id ? id : "", TN_KMS_ID_MAX - 1);
  if (find(k, id))
    return tn_error_set(err, TN_EEXISTS, "KEK %s is already in the keyring", id);
  if (k->n == k->alloc) {
    /* Grow by copying so that old key bytes can be wiped (realloc may leave them behind). */
    size_t na = k->alloc ? 2 * k->alloc : 4;
    struct kek *nk = calloc(na, sizeof *nk);
    if (!nk)
      return tn_error_set(err, -ENOMEM, "out of memory");
    if (k->keys) {
      memcpy(nk, k->keys, k->n * sizeof *nk);
      OPENSSL_cleanse(k->keys, k->alloc * sizeof *k->keys);
      free(k->keys);
    }
    k->keys = nk;
    k->alloc = na;
  }
  snprintf(k->keys[k->n].id, sizeof k->keys[k->n].id, "%s", id);
  memcpy(k->keys[k->n].key, key, TN_KMS_KEY_LEN);
  if (k->n == 0)
    k->current = 0;
  k->n++;
  return 0;
}

int tn_kms_keyring_set_current(struct tn_kms_keyring *k, const char *id, struct tn_error *err) {
  const struct kek *e = find(k, id);
  if (!e)
    return tn_error_set(err, TN_ENOTFOUND, "KEK %.64s is not in the keyring", id ? id : "(null)");
  k->current = (size_t)(e - k->keys);
  return 0;
}

const char *tn_kms_keyring_current(const struct tn_kms_keyring *k) {
  return k && k->n ? k->keys[k->current].id : NULL;
}

size_t tn_kms_keyring_count(const struct tn_kms_keyring *k) { return k ? k->n : 0; }

bool tn_kms_keyring_has(const struct tn_kms_keyring *k, const char *id) { return find(k, id) != NULL; }

static int ring_current(void *ud, char *id, size_t n, struct tn_error *err) {
  const char *cur = tn_kms_keyring_current(ud);
  if (!cur)
    return tn_error_set(err, TN_ENOTFOUND, "the keyring holds no KEK");
  snprintf(id, n, "%s", cur);
  return 0;
}

static int ring_wrap(void *ud, const char *kek_id, const unsigned char *key, size_t len, const char *aad,
                     char **envelope, struct tn_error *err) {
  const struct tn_kms_keyring *k = ud;
  const char *id = kek_id ? kek_id : tn_kms_keyring_current(k);
  const struct kek *e = find(k, id);
  if (!e)
    return tn_error_set(err, TN_ENOTFOUND, "KEK %.64s is not in the keyring", id ? id : "(none)");
  return tn_kms_seal(e->id, e->key, key, len, aad, envelope, err);
}

static int ring_unwrap(void *ud, const char *envelope, const char *aad, unsigned char *key, size_t cap,
                       size_t *len, struct tn_error *err) {
  char id[TN_KMS_ID_MAX];
  int rc = tn_kms_envelope_kek(envelope, id, sizeof id, err);
  if (rc)
    return rc;
  const struct kek *e = find(ud, id);
  if (!e)
    return tn_error_set(err, TN_ENOTFOUND, "the key was wrapped with KEK %s, which the keyring does not hold",
                        id);
  return tn_kms_open(e->key, envelope, aad, key, cap, len, err);
}

void tn_kms_keyring_provider(struct tn_kms_keyring *k, struct tn_kms_provider *p) {
  *p = (struct tn_kms_provider){
      .name = "local", .current_kek = ring_current, .wrap = ring_wrap, .unwrap = ring_unwrap, .ud = k};
}
