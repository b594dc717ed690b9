/* b64.c - see b64.h. */
#include "util/b64.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "util/wipe.h"

char *tn_b64_decode_text(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (!n || n % 4 || n > (size_t)1 << 30)
    return NULL;
  unsigned char *out = malloc(n + 1);
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
