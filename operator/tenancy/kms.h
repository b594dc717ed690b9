/* kms.h - the pluggable key management interface that wraps per-tenant data keys with a
 * key-encryption key (KEK), the envelope format of a wrapped key (AES-256-GCM, JSON), and an
 * in-memory keyring provider that the Secret-backed local KMS is built on (docs/keys.md). */
#ifndef TN_TENANCY_KMS_H
#define TN_TENANCY_KMS_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

#define TN_KMS_KEY_LEN 32        /* data keys and local KEKs: 256 bits */
#define TN_KMS_ID_MAX 128        /* the longest KEK id, NUL included */
#define TN_KMS_ALG_GCM "A256GCM" /* the only algorithm the local provider writes */
#define TN_KMS_ENVELOPE_MAX 4096 /* the longest envelope text accepted */

/* A KMS: wraps and unwraps data keys with key-encryption keys it holds and never hands out.
 * A managed KMS (AWS KMS, Vault transit, ...) implements these three callbacks over its API;
 * the local provider (tn_kms_keyring_provider, and the Secret-backed one in
 * converge/tenant_keys.h) over keys in memory. Each callback gets ud; all may be called from
 * any thread at once (a provider serialises what it must). Every callback returns 0 or a
 * negative code with err set; transient codes (tn_error_is_transient) mean "try again later". */
struct tn_kms_provider {
  const char *name; /* "local", "aws-kms", ...: shown in status and docs; static */
  /* The id of the KEK new wraps use into id[n] (at most TN_KMS_ID_MAX bytes). */
  int (*current_kek)(void *ud, char *id, size_t n, struct tn_error *err);
  /* Wraps key[len] with KEK kek_id (NULL: the current one), bound to aad (a NUL-terminated
   * context such as "tenant=acme;version=2"; the same text must be given to unwrap). On success
   * *envelope is a new NUL-terminated text (free() it), at most TN_KMS_ENVELOPE_MAX bytes, safe
   * to store (it reveals nothing of key): a JSON object with at least "kek" (the id of the KEK
   * that wrapped it, as current_kek names them: printable ASCII without spaces) and "alg"; any
   * other fields are the provider's (tn_kms_envelope_kek reads the KEK id back: the keys step
   * rewraps versions whose KEK is not the current one). */
  int (*wrap)(void *ud, const char *kek_id, const unsigned char *key, size_t len, const char *aad,
              char **envelope, struct tn_error *err);
  /* Unwraps an envelope made by wrap with the same aad into key[cap]; *len is the key's
   * length. Fails with TN_EINVALID when the envelope is malformed, was made for another aad, was
   * altered, or its KEK does not match; TN_ENOTFOUND when its KEK is unknown. key is wiped on
   * failure; the caller wipes it (OPENSSL_cleanse) when done. */
  int (*unwrap)(void *ud, const char *envelope, const char *aad, unsigned char *key, size_t cap, size_t *len,
                struct tn_error *err);
  void *ud;
};

/* ---- random keys and KEK ids ------------------------------------------------------------------ */

/* Fills key[n] from the OpenSSL CSPRNG (RAND_bytes). Returns 0 or TN_EUNAVAILABLE (no entropy). */
int tn_kms_random(unsigned char *key, size_t n, struct tn_error *err);

/* The id of local KEK number n >= 1: "kek-<n>" into id[cap]. Returns 0 or -EINVAL. */
int tn_kms_kek_id(long long n, char *id, size_t cap);
/* "kek-<n>" (n >= 1, decimal, no sign or leading zero) -> n. Returns 0 or -EINVAL. */
int tn_kms_kek_id_parse(const char *id, long long *n);

/* ---- the envelope ----------------------------------------------------------------------------- */

/* Wraps key[len] (1 to 1024 bytes) with kek[TN_KMS_KEY_LEN] under AES-256-GCM with a fresh 96-bit
 * random IV, aad as additional authenticated data (NULL: none), into a compact JSON text
 *   {"kek":"<kek_id>","alg":"A256GCM","iv":"<b64>","ct":"<b64>","tag":"<b64>"}
 * (standard base64, 16-byte tag). The KEK id is itself authenticated (it is part of the AAD),
 * so an envelope relabelled with another KEK id fails to open. On success *envelope is new
 * (free() it). Errors: -EINVAL (bad arguments), TN_EUNAVAILABLE (no entropy), -ENOMEM. */
int tn_kms_seal(const char *kek_id, const unsigned char kek[TN_KMS_KEY_LEN], const unsigned char *key,
                size_t len, const char *aad, char **envelope, struct tn_error *err);

/* Opens an envelope made by tn_kms_seal with the same kek and aad into key[cap], *len its
 * length. TN_EINVALID with a message when the envelope is malformed (not JSON, a field missing,
 * bad base64, wrong IV or tag length, an algorithm other than A256GCM, too long for cap) or
 * fails authentication (wrong KEK, other aad, any byte altered). key is wiped on failure. */
int tn_kms_open(const unsigned char kek[TN_KMS_KEY_LEN], const char *envelope, const char *aad,
                unsigned char *key, size_t cap, size_t *len, struct tn_error *err);

/* The KEK id an envelope names, into id[n]: any provider's envelope (a JSON object with string
 * fields "kek" and "alg"). Returns 0 or TN_EINVALID (malformed envelope). */
int tn_kms_envelope_kek(const char *envelope, char *id, size_t n, struct tn_error *err);

/* ---- an in-memory keyring (the local provider) -------------------------------------------------- */

/* KEKs by id plus which one is current. Not thread-safe: build it, then share it read-only (its
 * provider callbacks only read); the Secret-backed KMS swaps whole keyrings under its lock. */
struct tn_kms_keyring;

/* Returns an empty keyring (NULL when out of memory); tn_kms_keyring_free it. */
struct tn_kms_keyring *tn_kms_keyring_new(void);
/* Wipes every key and frees. Accepts NULL. */
void tn_kms_keyring_free(struct tn_kms_keyring *k);
/* Adds a copy of key under id (1 to TN_KMS_ID_MAX-1 bytes of [A-Za-z0-9._-]). The first key
 * added becomes current. Returns 0, TN_EEXISTS (id already present), TN_EINVALID (bad id), or
 * -ENOMEM. */
int tn_kms_keyring_add(struct tn_kms_keyring *k, const char *id, const unsigned char key[TN_KMS_KEY_LEN],
                       struct tn_error *err);
/* Makes id the KEK new wraps use. Returns 0 or TN_ENOTFOUND. */
int tn_kms_keyring_set_current(struct tn_kms_keyring *k, const char *id, struct tn_error *err);
/* The current KEK's id (borrowed), NULL while empty. */
const char *tn_kms_keyring_current(const struct tn_kms_keyring *k);
/* How many KEKs it holds. */
size_t tn_kms_keyring_count(const struct tn_kms_keyring *k);
/* Whether it holds a KEK with this id. */
bool tn_kms_keyring_has(const struct tn_kms_keyring *k, const char *id);

/* Fills *p with the keyring's provider (name "local"): wrap with the current KEK or the one
 * asked, unwrap with the KEK the envelope names (TN_ENOTFOUND when it is not in the ring).
 * k is borrowed and must outlive every use of *p. */
void tn_kms_keyring_provider(struct tn_kms_keyring *k, struct tn_kms_provider *p);

#endif
