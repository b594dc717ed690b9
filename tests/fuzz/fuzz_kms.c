/* fuzz_kms.c - libFuzzer harness of the KMS envelope (tenancy/kms.c): tn_kms_envelope_kek and
 * tn_kms_open with a fixed KEK, and the local keyring provider's unwrap, on untrusted envelope
 * text. The first input byte picks the aad. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/kms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char kek[TN_KMS_KEY_LEN] = "0123456789abcdef0123456789abcdef";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 2 * TN_KMS_ENVELOPE_MAX)
    return 0;
  const char *aad = (data[0] & 1) ? "tenant=acme;version=1" : NULL;
  char *env = malloc(size);
  if (!env)
    return 0;
  memcpy(env, data + 1, size - 1);
  env[size - 1] = '\0';
  struct tn_error err = {0};
  char id[TN_KMS_ID_MAX];
  (void)tn_kms_envelope_kek(env, id, sizeof id, &err);
  unsigned char key[64];
  size_t len = 0;
  if (tn_kms_open(kek, env, aad, key, (data[0] & 2) ? 16 : sizeof key, &len, &err) == 0 && len > sizeof key)
    __builtin_trap();
  struct tn_kms_keyring *ring = tn_kms_keyring_new();
  if (ring && tn_kms_keyring_add(ring, "kek-1", kek, &err) == 0) {
    struct tn_kms_provider p;
    tn_kms_keyring_provider(ring, &p);
    if (p.unwrap(p.ud, env, aad, key, sizeof key, &len, &err) == 0 && len > sizeof key)
      __builtin_trap();
  }
  tn_kms_keyring_free(ring);
  free(env);
  return 0;
}
