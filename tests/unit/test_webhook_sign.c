/* test_webhook_sign.c - Standard Webhooks signatures (webhooks/sign.c) against the specification's
 * published test vector, and the rotation overlap (one signature per key). */
#include <criterion/criterion.h>
#include <string.h>

#include "webhooks/sign.h"

/* The test vector of the Standard Webhooks reference libraries. */
#define VEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VEC_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VEC_TS 1614265330LL
#define VEC_BODY "{\"test\": 2432232314}"
#define VEC_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

Test(webhook_sign, published_test_vector) {
  struct tn_wh_keys k;
  struct tn_error err = {0};
  cr_assert_eq(tn_wh_keys_parse(VEC_SECRET, strlen(VEC_SECRET), &k, &err), 0, "%s", err.message);
  cr_assert_eq(k.n, 1);
  char sig[TN_WH_SIG_LEN * TN_WH_MAX_KEYS];
  int n = tn_wh_sign(&k, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), sig, sizeof sig);
  cr_assert_eq(n, (int)strlen(VEC_SIG));
  cr_assert_str_eq(sig, VEC_SIG);
  tn_wh_keys_wipe(&k);
}

Test(webhook_sign, a_changed_body_timestamp_or_id_changes_the_signature) {
  struct tn_wh_keys k;
  cr_assert_eq(tn_wh_keys_parse(VEC_SECRET, strlen(VEC_SECRET), &k, NULL), 0);
  char sig[TN_WH_SIG_LEN];
  tn_wh_sign(&k, VEC_ID, VEC_TS, "{\"test\": 2432232315}", 20, sig, sizeof sig);
  cr_assert_str_neq(sig, VEC_SIG);
  tn_wh_sign(&k, VEC_ID, VEC_TS + 1, VEC_BODY, strlen(VEC_BODY), sig, sizeof sig);
  cr_assert_str_neq(sig, VEC_SIG);
  tn_wh_sign(&k, "msg_other", VEC_TS, VEC_BODY, strlen(VEC_BODY), sig, sizeof sig);
  cr_assert_str_neq(sig, VEC_SIG);
}

Test(webhook_sign, rotation_overlap_sends_one_signature_per_key_in_order) {
  const char *v = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \n whsec_c2Vjb25kLWtleS1mb3ItdGhlLXJvdGF0aW9u";
  struct tn_wh_keys k;
  struct tn_error err = {0};
  cr_assert_eq(tn_wh_keys_parse(v, strlen(v), &k, &err), 0, "%s", err.message);
  cr_assert_eq(k.n, 2);
  char sig[TN_WH_SIG_LEN * TN_WH_MAX_KEYS];
  int n = tn_wh_sign(&k, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), sig, sizeof sig);
  cr_assert_gt(n, 0);
  cr_assert(strncmp(sig, VEC_SIG " v1,", strlen(VEC_SIG) + 4) == 0, "%s", sig);
  cr_assert_eq(strlen(sig), 2 * strlen(VEC_SIG) + 1);
  /* Too small a buffer for two signatures is refused, not truncated. */
  cr_assert_eq(tn_wh_sign(&k, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), sig, TN_WH_SIG_LEN + 2), -1);
}

Test(webhook_sign, bad_secrets_are_refused_without_echoing_them) {
  struct tn_wh_keys k;
  struct tn_error err = {0};
  cr_assert_eq(tn_wh_keys_parse("", 0, &k, &err), TN_EINVALID);
  cr_assert_eq(tn_wh_keys_parse("   ", 3, &k, &err), TN_EINVALID);
  const char *bad = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_not!base64$$";
  cr_assert_eq(tn_wh_keys_parse(bad, strlen(bad), &k, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "secret 2") != NULL, "%s", err.message);
  cr_assert(strstr(err.message, "not!base64") == NULL);
  cr_assert_eq(k.n, 0); /* wiped */
  const char *five = "whsec_QUFB whsec_QUFB whsec_QUFB whsec_QUFB whsec_QUFB";
  cr_assert_eq(tn_wh_keys_parse(five, strlen(five), &k, &err), TN_EINVALID);
}
