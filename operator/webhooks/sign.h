/* sign.h - Standard Webhooks signatures (https://www.standardwebhooks.com): the headers
 * webhook-id, webhook-timestamp and webhook-signature "v1,<base64 HMAC-SHA256 of
 * id.timestamp.body>", keyed by secrets "whsec_<base64>". A Secret value may hold several
 * secrets separated by spaces (a key rotation's overlap): each one signs, and the header carries
 * every signature separated by spaces, so a consumer holding either key accepts the delivery. */
#ifndef TN_WEBHOOKS_SIGN_H
#define TN_WEBHOOKS_SIGN_H

#include <stddef.h>

#include "util/error.h"

#define TN_WH_MAX_KEYS 4  /* secrets in one rotation overlap */
#define TN_WH_KEY_MAX 128 /* decoded key bytes */
#define TN_WH_SIG_LEN 48  /* "v1," + 44 base64 characters + NUL */

struct tn_wh_keys {
  int n;
  size_t len[TN_WH_MAX_KEYS];
  unsigned char key[TN_WH_MAX_KEYS][TN_WH_KEY_MAX];
};

/* Parses a Secret value: one or more "whsec_<base64>" separated by spaces, tabs or newlines
 * (the "whsec_" prefix may be left out, as the reference libraries accept). The error message
 * names which word is wrong (its position), never the secret. Errors: TN_EINVALID. */
int tn_wh_keys_parse(const char *value, size_t value_len, struct tn_wh_keys *out, struct tn_error *err);
/* Wipes the keys. */
void tn_wh_keys_wipe(struct tn_wh_keys *k);

/* Writes the webhook-signature header value (without the name): "v1,<sig1> v1,<sig2> ..." into
 * out (at least TN_WH_SIG_LEN * keys->n bytes). Returns the length, or -1 if out is too small. */
int tn_wh_sign(const struct tn_wh_keys *keys, const char *id, long long timestamp, const char *body,
               size_t body_len, char *out, size_t out_len);

#endif
