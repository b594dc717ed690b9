/* test_webhook_cert.c - the webhook certificate's lifetime: notAfter parsing and the renewal
 * decision (pure), on certificates made by the openssl command. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "converge/admission.h"
#include "tn_test.h"

/* A self-signed certificate valid for `days`, as PEM (malloc'd). */
static char *cert_for_days(int days) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "d=$(mktemp -d) && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-days %d -subj /CN=t -keyout $d/k -out $d/c 2>/dev/null && cat $d/c && rm -rf $d",
      days);
  cr_assert_eq(rc, 0, "openssl: %s", out);
  return out;
}

Test(webhook_cert, not_after_is_read_from_the_first_certificate) {
  char *pem = cert_for_days(10);
  double not_after = 0, now = (double)time(NULL);
  cr_assert_eq(tn_webhook_cert_not_after(pem, &not_after), 0);
  cr_assert(not_after > now + 10 * 86400.0 - 120 && not_after < now + 10 * 86400.0 + 120, "%f vs %f",
            not_after, now);
  free(pem);
  cr_assert_eq(tn_webhook_cert_not_after("not a certificate", &not_after), TN_EINVALID);
  cr_assert_eq(tn_webhook_cert_not_after(NULL, &not_after), TN_EINVALID);
}

Test(webhook_cert, renewal_starts_thirty_days_ahead) {
  const double day = 86400, renew = 30 * day, t = 1.8e9;
  cr_assert(tn_webhook_cert_needs_renewal(t + 10 * day, t, renew), "10 days left: renew");
  cr_assert(tn_webhook_cert_needs_renewal(t + 30 * day, t, renew), "exactly 30 days left: renew");
  cr_assert_not(tn_webhook_cert_needs_renewal(t + 31 * day, t, renew), "31 days left: keep");
  cr_assert(tn_webhook_cert_needs_renewal(t - day, t, renew), "expired: renew");

  char *soon = cert_for_days(10), *later = cert_for_days(400);
  double a = 0, b = 0, now = (double)time(NULL);
  cr_assert_eq(tn_webhook_cert_not_after(soon, &a), 0);
  cr_assert_eq(tn_webhook_cert_not_after(later, &b), 0);
  cr_assert(tn_webhook_cert_needs_renewal(a, now, renew));
  cr_assert_not(tn_webhook_cert_needs_renewal(b, now, renew));
  free(soon);
  free(later);
}
