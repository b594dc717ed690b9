/* test_ratelimit.c - the retry rate limiters: exponential per-item backoff, token bucket, max-of and the
 * default controller limiter, on a fake clock. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/ratelimit.h"

#define MS TN_NS_PER_MS
#define S TN_NS_PER_S

struct fake_clock {
  _Atomic int64_t now;
};

static int64_t fake_now(void *ud) { return atomic_load(&((struct fake_clock *)ud)->now); }
static void fake_advance(struct fake_clock *c, int64_t ns) { atomic_fetch_add(&c->now, ns); }

Test(exponential, doubles_from_the_base_per_failure) {
  struct tn_ratelimiter *rl = tn_ratelimiter_exponential_new(5 * MS, 1000 * S);
  cr_assert_not_null(rl);
  int64_t expect = 5 * MS;
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(tn_ratelimiter_when(rl, "acme"), expect, "failure %d", i);
    cr_assert_eq(tn_ratelimiter_num_requeues(rl, "acme"), i + 1);
    expect *= 2;
  }
  cr_assert_eq(tn_ratelimiter_when(rl, "other"), 5 * MS, "items are counted separately");
  cr_assert_eq(tn_ratelimiter_num_requeues(rl, "other"), 1);
  cr_assert_eq(tn_ratelimiter_num_requeues(rl, "never-failed"), 0);
  tn_ratelimiter_free(rl);
}

Test(exponential, caps_at_the_maximum) {
  struct tn_ratelimiter *rl = tn_ratelimiter_exponential_new(5 * MS, 1000 * S);
  /* 5 ms * 2^17 = 655.36 s < 1000 s; 2^18 -> 1310.72 s, capped. */
  for (int i = 0; i < 17; i++)
    tn_ratelimiter_when(rl, "k");
  cr_assert_eq(tn_ratelimiter_when(rl, "k"), 5 * MS * (INT64_C(1) << 17));
  cr_assert_eq(tn_ratelimiter_when(rl, "k"), 1000 * S);
  cr_assert_eq(tn_ratelimiter_when(rl, "k"), 1000 * S);
  tn_ratelimiter_free(rl);
}

Test(exponential, huge_failure_counts_do_not_overflow) {
  /* With the largest maximum, a wrong integer shift or multiply would wrap negative. */
  struct tn_ratelimiter *rl = tn_ratelimiter_exponential_new(1, INT64_MAX);
  int64_t prev = 0;
  for (int i = 0; i < 5000; i++) {
    int64_t d = tn_ratelimiter_when(rl, "k");
    cr_assert_geq(d, prev, "failure %d went backwards: %lld after %lld", i, (long long)d, (long long)prev);
    prev = d;
  }
  cr_assert_eq(prev, INT64_MAX);
  cr_assert_eq(tn_ratelimiter_num_requeues(rl, "k"), 5000);
  tn_ratelimiter_free(rl);

  rl = tn_ratelimiter_exponential_new(5 * MS, 1000 * S);
  for (int i = 0; i < 100000; i++)
    cr_assert_leq(tn_ratelimiter_when(rl, "k"), 1000 * S);
  cr_assert_eq(tn_ratelimiter_when(rl, "k"), 1000 * S);
  tn_ratelimiter_free(rl);
}

Test(exponential, forget_resets_the_item_only) {
  struct tn_ratelimiter *rl = tn_ratelimiter_exponential_new(5 * MS, 1000 * S);
  for (int i = 0; i < 3; i++) {
    tn_ratelimiter_when(rl, "a");
    tn_ratelimiter_when(rl, "b");
  }
  tn_ratelimiter_forget(rl, "a");
  cr_assert_eq(tn_ratelimiter_num_requeues(rl, "a"), 0);
  cr_assert_eq(tn_ratelimiter_num_requeues(rl, "b"), 3);
  cr_assert_eq(tn_ratelimiter_when(rl, "a"), 5 * MS);
  cr_assert_eq(tn_ratelimiter_when(rl, "b"), 40 * MS);
  tn_ratelimiter_forget(rl, "never-seen");
  tn_ratelimiter_free(rl);
}

Test(exponential, many_items_survive_table_growth) {
  struct tn_ratelimiter *rl = tn_ratelimiter_exponential_new(MS, S);
  char key[32];
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < 5000; i++) {
      snprintf(key, sizeof key, "ns/item-%d", i);
      tn_ratelimiter_when(rl, key);
    }
  for (int i = 0; i < 5000; i += 2) {
    snprintf(key, sizeof key, "ns/item-%d", i);
    tn_ratelimiter_forget(rl, key);
  }
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "ns/item-%d", i);
    cr_assert_eq(tn_ratelimiter_num_requeues(rl, key), i % 2 ? 2 : 0, "%s", key);
  }
  tn_ratelimiter_free(rl);
}

Test(bucket, burst_then_spaced_at_the_rate) {
  struct fake_clock fc = {1000 * S};
  struct tn_clock clock = {fake_now, &fc};
  struct tn_ratelimiter *rl = tn_ratelimiter_bucket_new(10, 100, &clock);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(tn_ratelimiter_when(rl, "x"), 0, "token %d of the burst", i);
  /* The bucket is empty: each further reservation waits 100 ms more than the previous one. */
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), 100 * MS);
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), 200 * MS);
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), 300 * MS);
  /* 300 ms later those three reservations are paid for: the next one waits 100 ms again. */
  fake_advance(&fc, 300 * MS);
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), 100 * MS);
  /* Items do not matter to a bucket. */
  cr_assert_eq(tn_ratelimiter_num_requeues(rl, "x"), 0);
  tn_ratelimiter_forget(rl, "x");
  tn_ratelimiter_free(rl);
}

Test(bucket, refills_at_the_rate_up_to_the_burst) {
  struct fake_clock fc = {0};
  struct tn_clock clock = {fake_now, &fc};
  struct tn_ratelimiter *rl = tn_ratelimiter_bucket_new(10, 100, &clock);
  for (int i = 0; i < 100; i++)
    tn_ratelimiter_when(rl, "x");
  fake_advance(&fc, 1 * S); /* 10 tokens back */
  for (int i = 0; i < 10; i++)
    cr_assert_eq(tn_ratelimiter_when(rl, "x"), 0, "refilled token %d", i);
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), 100 * MS);
  fake_advance(&fc, 3600 * S); /* an hour: full again, but never more than the burst */
  for (int i = 0; i < 100; i++)
    cr_assert_eq(tn_ratelimiter_when(rl, "x"), 0);
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), 100 * MS);
  tn_ratelimiter_free(rl);
}

Test(bucket, zero_rate_and_zero_burst_as_x_time_rate) {
  struct fake_clock fc = {0};
  struct tn_clock clock = {fake_now, &fc};
  struct tn_ratelimiter *rl = tn_ratelimiter_bucket_new(0, 2, &clock);
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), 0);
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), 0);
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), TN_DURATION_INF, "no refill at rate 0");
  fake_advance(&fc, 1000 * S);
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), TN_DURATION_INF);
  tn_ratelimiter_free(rl);

  rl = tn_ratelimiter_bucket_new(10, 0, &clock);
  cr_assert_eq(tn_ratelimiter_when(rl, "x"), TN_DURATION_INF, "a reservation larger than the burst");
  tn_ratelimiter_free(rl);

  rl = tn_ratelimiter_bucket_new(INFINITY, 0, &clock);
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(tn_ratelimiter_when(rl, "x"), 0, "an infinite rate allows everything");
  tn_ratelimiter_free(rl);
}

Test(max_of, returns_the_longest_wait_and_forgets_everywhere) {
  struct fake_clock fc = {0};
  struct tn_clock clock = {fake_now, &fc};
  struct tn_ratelimiter *parts[] = {tn_ratelimiter_exponential_new(1 * MS, 1000 * S),
                                    tn_ratelimiter_exponential_new(10 * MS, 20 * MS),
                                    tn_ratelimiter_bucket_new(1, 1, &clock)};
  struct tn_ratelimiter *rl = tn_ratelimiter_max_of_new(parts, 3);
  cr_assert_not_null(rl);
  cr_assert_eq(tn_ratelimiter_when(rl, "a"), 10 * MS); /* 1 ms, 10 ms, 0 */
  cr_assert_eq(tn_ratelimiter_when(rl, "a"), 1 * S);   /* 2 ms, 20 ms, bucket empty: 1 s */
  fake_advance(&fc, 10 * S);
  cr_assert_eq(tn_ratelimiter_when(rl, "a"), 20 * MS); /* 4 ms, 20 ms (capped), 0 */
  for (int i = 0; i < 4; i++)
    tn_ratelimiter_when(rl, "a"); /* the first grows to 64 ms */
  fake_advance(&fc, 100 * S);
  cr_assert_eq(tn_ratelimiter_when(rl, "a"), 128 * MS); /* now the first limiter is the worst */
  cr_assert_eq(tn_ratelimiter_num_requeues(rl, "a"), 8);
  tn_ratelimiter_forget(rl, "a");
  cr_assert_eq(tn_ratelimiter_num_requeues(rl, "a"), 0);
  fake_advance(&fc, 100 * S);
  cr_assert_eq(tn_ratelimiter_when(rl, "a"), 10 * MS, "both per-item limiters were reset");
  tn_ratelimiter_free(rl);
}

Test(max_of, refuses_null_members_and_frees_the_rest) {
  struct tn_ratelimiter *parts[] = {tn_ratelimiter_exponential_new(MS, S), NULL};
  cr_assert_null(tn_ratelimiter_max_of_new(parts, 2)); /* LeakSanitizer checks the first was freed */
  struct tn_ratelimiter *empty = tn_ratelimiter_max_of_new(NULL, 0);
  cr_assert_not_null(empty);
  cr_assert_eq(tn_ratelimiter_when(empty, "x"), 0);
  tn_ratelimiter_free(empty);
  tn_ratelimiter_free(NULL);
}

Test(default_limiter, is_max_of_exponential_5ms_and_bucket_10qps_burst_100) {
  struct fake_clock fc = {0};
  struct tn_clock clock = {fake_now, &fc};
  struct tn_ratelimiter *rl = tn_ratelimiter_default_new(&clock);
  cr_assert_not_null(rl);
  char key[32];
  /* 100 distinct items fail once: the burst covers them, the per-item 5 ms dominates. */
  for (int i = 0; i < 100; i++) {
    snprintf(key, sizeof key, "item-%d", i);
    cr_assert_eq(tn_ratelimiter_when(rl, key), 5 * MS, "%s", key);
  }
  /* The 101st retry overall waits for the bucket: 100 ms, then 200 ms. */
  cr_assert_eq(tn_ratelimiter_when(rl, "item-100"), 100 * MS);
  cr_assert_eq(tn_ratelimiter_when(rl, "item-101"), 200 * MS);
  /* The same item failing again: exponential 10 ms, bucket 300 ms. */
  cr_assert_eq(tn_ratelimiter_when(rl, "item-0"), 300 * MS);
  cr_assert_eq(tn_ratelimiter_num_requeues(rl, "item-0"), 2);
  /* Much later the bucket is full again and the item's own backoff shows: 5 ms * 2^2. */
  fake_advance(&fc, 60 * S);
  cr_assert_eq(tn_ratelimiter_when(rl, "item-0"), 20 * MS);
  tn_ratelimiter_forget(rl, "item-0");
  cr_assert_eq(tn_ratelimiter_num_requeues(rl, "item-0"), 0);
  cr_assert_eq(tn_ratelimiter_when(rl, "item-0"), 5 * MS);
  /* Far enough in failures, the 1000 s cap applies. */
  for (int i = 0; i < 40; i++)
    tn_ratelimiter_when(rl, "stuck");
  fake_advance(&fc, 3600 * S);
  cr_assert_eq(tn_ratelimiter_when(rl, "stuck"), 1000 * S);
  tn_ratelimiter_free(rl);
}

Test(clock, null_is_monotonic) {
  int64_t a = tn_clock_now_ns(NULL);
  int64_t b = tn_clock_now_ns(NULL);
  cr_assert_gt(a, 0);
  cr_assert_geq(b, a);
  struct fake_clock fc = {42};
  struct tn_clock clock = {fake_now, &fc};
  cr_assert_eq(tn_clock_now_ns(&clock), 42);
}
