/* test_fence.c - the leadership write fence: closed until extended, never moves back, closes for
 * good, and what a refused write says. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "util/clock.h"
#include "util/fence.h"

Test(fence, pure_decision) {
  cr_assert(tn_fence_allows_at(false, true, 0, 1e9), "open forever (no election) allows");
  cr_assert_not(tn_fence_allows_at(true, true, 0, 0), "closed beats open-forever");
  cr_assert(tn_fence_allows_at(false, false, 10, 9.999));
  cr_assert_not(tn_fence_allows_at(false, false, 10, 10), "the deadline itself is already too late");
  cr_assert_not(tn_fence_allows_at(false, false, 0, 0), "never extended: closed");
}

Test(fence, closed_until_extended_and_never_moves_back) {
  struct tn_fence *f = tn_fence_new(false);
  cr_assert_not_null(f);
  cr_assert_not(tn_fence_allows(f), "a standby may not write");
  double now = tn_mono_now();
  tn_fence_extend(f, now + 60);
  cr_assert(tn_fence_allows(f));
  tn_fence_extend(f, now - 1); /* an older renewal reported late must not shorten it */
  cr_assert(tn_fence_allows(f));
  tn_fence_close(f);
  cr_assert_not(tn_fence_allows(f));
  tn_fence_extend(f, now + 120);
  cr_assert_not(tn_fence_allows(f), "closed for good: a lost leader never writes again");
  struct tn_error err = {0};
  cr_assert_eq(tn_fence_check(f, "PATCH", &err), TN_ECANCELED);
  cr_assert(strstr(err.message, "PATCH") && strstr(err.message, "no longer the leader"), "%s", err.message);
  tn_fence_free(f);
}

Test(fence, expires_by_the_monotonic_clock) {
  struct tn_fence *f = tn_fence_new(false);
  tn_fence_extend(f, tn_mono_now() + 0.05);
  cr_assert(tn_fence_allows(f));
  struct timespec ts = {0, 80 * 1000 * 1000};
  nanosleep(&ts, NULL);
  cr_assert_not(tn_fence_allows(f), "a leader paused past its renew deadline may not write when it wakes");
  tn_fence_free(f);
  cr_assert(tn_fence_allows(NULL), "no fence: nothing is fenced");
  cr_assert_eq(tn_fence_check(NULL, "x", NULL), 0);
}
