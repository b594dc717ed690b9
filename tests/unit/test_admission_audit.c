/* test_admission_audit.c - the refused rows of denied Tenant requests are queued, never written on
 * the webhook's thread: a denial returns at once even when PostgreSQL cannot be reached, a flood is
 * bounded by the rate limit, and shutdown frees what is left. (No database: the trail points at a
 * closed local port.) */
#include <criterion/criterion.h>
#include <string.h>

#include "converge/admission_audit.h"
#include "util/clock.h"

static struct tn_admission_audit *start(void) {
  struct tn_audit *a = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_open("host=127.0.0.1 port=1 connect_timeout=1 sslmode=disable", NULL, &a, &err), 0,
               "%s", err.message);
  struct tn_admission_audit *aa = NULL;
  cr_assert_eq(tn_admission_audit_new(a, &aa, &err), 0, "%s", err.message);
  return aa;
}

Test(admission_audit, a_denial_never_waits_for_the_database_and_a_flood_is_bounded) {
  struct tn_admission_audit *aa = start();
  struct tn_admission_hooks h = tn_admission_audit_hooks(aa);
  cr_assert_null(h.on_admitted);
  cr_assert_not_null(h.on_denied);
  char long_actor[4096];
  memset(long_actor, 'x', sizeof long_actor - 1);
  long_actor[sizeof long_actor - 1] = '\0';
  struct tn_admission_record rec = {.request_uid = "uid-1",
                                    .actor = long_actor,
                                    .operation = "DELETE",
                                    .name = "acme",
                                    .allowed = false,
                                    .message = "denied: the tenant is Active"};
  double t0 = tn_mono_now();
  for (int i = 0; i < 400; i++)
    h.on_denied(h.ud, &rec);
  double took = tn_mono_now() - t0;
  cr_assert_lt(took, 0.5, "400 denials took %.3f s: the hook must only queue", took);
  long long written = -1, dropped = -1;
  tn_admission_audit_counts(aa, &written, &dropped);
  cr_assert_eq(written, 0);
  /* A burst of 200 is accepted (a few more as tokens refill), the rest dropped and counted. */
  cr_assert(dropped >= 150 && dropped <= 200, "dropped %lld", dropped);
  t0 = tn_mono_now();
  tn_admission_audit_free(aa, 0.2); /* the queued rows are given up, freed (LeakSanitizer checks) */
  cr_assert_lt(tn_mono_now() - t0, 5.0);
}

Test(admission_audit, free_accepts_null) { tn_admission_audit_free(NULL, 0); }
