/* uuid.c - deterministic ids (see uuid.h). */
#include "util/uuid.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <string.h>

void tn_uuid_from_parts(const char *const *parts, size_t n, char out[37]) {
  unsigned char md[EVP_MAX_MD_SIZE] = {0};
  unsigned int mdlen = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
  /* NUL-separated fields: no two different inputs give the same byte string */
  for (size_t i = 0; ok && i < n; i++) {
    const char *p = parts[i] ? parts[i] : "";
    ok = EVP_DigestUpdate(ctx, p, strlen(p) + 1) == 1;
  }
  ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= 16;
  EVP_MD_CTX_free(ctx);
  if (!ok)
    memset(md, 0, 16);
  md[6] = (unsigned char)((md[6] & 0x0f) | 0x80); /* version 8: custom */
  md[8] = (unsigned char)((md[8] & 0x3f) | 0x80); /* RFC 9562 variant */
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[o++] = '-';
    out[o++] = hex[md[i] >> 4];
    out[o++] = hex[md[i] & 15];
  }
  out[o] = '\0';
}
