/* sign.c - Standard Webhooks signatures (see sign.h). */
#include "webhooks/sign.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int b64_decode(const char *in, size_t n, unsigned char *out, size_t cap, size_t *out_len) {
  if (n == 0 || n % 4 != 0 || (n / 4) * 3 > cap + 2)
    return -1;
  unsigned char tmp[TN_WH_KEY_MAX + 3];
  if ((n / 4) * 3 > sizeof tmp)
    return -1;
  int got = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
  if (got < 0)
    return -1;
  size_t pad = (in[n - 1] == '=') + (in[n - 2] == '=');
  size_t len = (size_t)got - pad;
  if (len == 0 || len > cap) {
    OPENSSL_cleanse(tmp, sizeof tmp);
    return -1;
  }
  memcpy(out, tmp, len);
  OPENSSL_cleanse(tmp, sizeof tmp);
  *out_len = len;
  return 0;
}

int tn_wh_keys_parse(const char *value, size_t value_len, struct tn_wh_keys *out, struct tn_error *err) {
  memset(out, 0, sizeof *out);
  size_t i = 0;
  int word = 0;
  while (i < value_len) {
    while (i < value_len && strchr(" \t\r\n", value[i]))
      i++;
    if (i >= value_len)
      break;
    size_t start = i;
    while (i < value_len && !strchr(" \t\r\n", value[i]))
      i++;
    word++;
    const char *w = value + start;
    size_t wl = i - start;
    if (wl > 6 && memcmp(w, "whsec_", 6) == 0) {
      w += 6;
      wl -= 6;
    }
    if (out->n >= TN_WH_MAX_KEYS) {
      tn_wh_keys_wipe(out);
      return tn_error_set(err, TN_EINVALID,
                          "the signing Secret holds more than %d secrets; keep at most %d during a rotation",
                          TN_WH_MAX_KEYS, TN_WH_MAX_KEYS);
    }
    if (b64_decode(w, wl, out->key[out->n], TN_WH_KEY_MAX, &out->len[out->n])) {
      tn_wh_keys_wipe(out);
      return tn_error_set(err, TN_EINVALID,
                          "secret %d of the signing Secret is not whsec_<base64> (standard base64 of 1 to %d "
                          "bytes, 24 to 64 recommended)",
                          word, TN_WH_KEY_MAX);
    }
    out->n++;
  }
  if (out->n == 0)
    return tn_error_set(err, TN_EINVALID, "the signing Secret's key is empty: put whsec_<base64> in it");
  return 0;
}

void tn_wh_keys_wipe(struct tn_wh_keys *k) {
  if (k)
    OPENSSL_cleanse(k, sizeof *k);
}

int tn_wh_sign(const struct tn_wh_keys *keys, const char *id, long long timestamp, const char *body,
               size_t body_len, char *out, size_t out_len) {
  size_t pos = 0;
  char ts[32];
  int tsl = snprintf(ts, sizeof ts, "%lld", timestamp);
  for (int k = 0; k < keys->n; k++) {
    if (out_len < pos + TN_WH_SIG_LEN + 1)
      return -1;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    size_t idl = strlen(id), n = idl + 1 + (size_t)tsl + 1 + body_len;
    unsigned char *msg = malloc(n ? n : 1);
    if (!msg)
      return -1;
    memcpy(msg, id, idl);
    msg[idl] = '.';
    memcpy(msg + idl + 1, ts, (size_t)tsl);
    msg[idl + 1 + (size_t)tsl] = '.';
    if (body_len)
      memcpy(msg + idl + 2 + (size_t)tsl, body, body_len);
    unsigned char *ok = HMAC(EVP_sha256(), keys->key[k], (int)keys->len[k], msg, n, mac, &mac_len);
    free(msg);
    if (!ok)
      return -1;
    if (k)
      out[pos++] = ' ';
    memcpy(out + pos, "v1,", 3);
    pos += 3;
    pos += (size_t)EVP_EncodeBlock((unsigned char *)out + pos, mac, (int)mac_len);
    out[pos] = '\0';
  }
  return (int)pos;
}
