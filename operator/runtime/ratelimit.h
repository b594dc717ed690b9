/* ratelimit.h - retry rate limiters for the work queue, with client-go's semantics: per-item
 * exponential failure backoff, a token bucket (golang.org/x/time/rate reservations), the
 * max-of combination, and the default controller limiter; plus the injectable clock they use. */
#ifndef TN_RUNTIME_RATELIMIT_H
#define TN_RUNTIME_RATELIMIT_H

#include <stdint.h>

/* Durations and instants are int64 nanoseconds, as Go's time.Duration. */
#define TN_NS_PER_MS INT64_C(1000000)
#define TN_NS_PER_S INT64_C(1000000000)
/* "Wait forever": what a limiter returns when it can never allow the item (x/time/rate's
 * InfDuration). Queues treat it as a delay that never ends. */
#define TN_DURATION_INF INT64_MAX

/* A monotonic clock. now_ns must be thread-safe and never go backwards. Tests inject a fake one
 * so nothing has to sleep. The struct is copied by whoever takes it; ud is borrowed and must
 * outlive every user of the copy. */
struct tn_clock {
  int64_t (*now_ns)(void *ud);
  void *ud;
};

/* Now on clock c, or on CLOCK_MONOTONIC when c is NULL or c->now_ns is NULL. */
int64_t tn_clock_now_ns(const struct tn_clock *c);

/* A rate limiter decides how long an item waits before it is retried. Every limiter is
 * thread-safe (each has its own mutex, never held while calling out). Items are strings,
 * borrowed for the call only. */
struct tn_ratelimiter;

/* How long the item should wait now (>= 0; TN_DURATION_INF for never). Records a failure for
 * per-item limiters and consumes a token for buckets, as client-go's When does. */
int64_t tn_ratelimiter_when(struct tn_ratelimiter *rl, const char *item);
/* Stops tracking the item: its failure count goes back to 0. Buckets ignore it. */
void tn_ratelimiter_forget(struct tn_ratelimiter *rl, const char *item);
/* How many failures (When calls since the last Forget) the item has had; 0 for buckets. */
int tn_ratelimiter_num_requeues(struct tn_ratelimiter *rl, const char *item);
/* Frees the limiter (and, for max-of, every limiter it holds). Accepts NULL. */
void tn_ratelimiter_free(struct tn_ratelimiter *rl);

/* client-go's ItemExponentialFailureRateLimiter: When = base * 2^failures (failures counted
 * before this call), capped at max_ns; never overflows, however many failures. base_ns >= 0,
 * max_ns >= 0. Returns NULL on allocation failure. */
struct tn_ratelimiter *tn_ratelimiter_exponential_new(int64_t base_ns, int64_t max_ns);

/* client-go's BucketRateLimiter over rate.NewLimiter(qps, burst): the bucket starts full with
 * burst tokens and refills at qps per second; When reserves one token and returns how long
 * until that reservation may act (0 while tokens remain). As x/time/rate: qps = INFINITY
 * allows everything; qps <= 0 lets the first burst through, then returns TN_DURATION_INF (no
 * refill); burst < 1 makes every When return TN_DURATION_INF. The clock is copied (NULL =
 * monotonic). Returns NULL on allocation failure. */
struct tn_ratelimiter *tn_ratelimiter_bucket_new(double qps, int burst, const struct tn_clock *clock);

/* client-go's MaxOfRateLimiter: When asks every limiter (so each records the failure or
 * consumes its token) and returns the longest wait; NumRequeues is the largest count; Forget
 * reaches every limiter. Takes ownership of the n limiters in the array (the array itself is
 * copied), also when it fails: then it frees them and returns NULL. NULL entries are refused
 * (everything freed, NULL returned). */
struct tn_ratelimiter *tn_ratelimiter_max_of_new(struct tn_ratelimiter *const *limiters, int n);

/* client-go's DefaultTypedControllerRateLimiter: max(exponential(5 ms, 1000 s), bucket(10 qps,
 * burst 100)). The clock (for the bucket) is copied; NULL = monotonic. NULL on allocation
 * failure. */
struct tn_ratelimiter *tn_ratelimiter_default_new(const struct tn_clock *clock);

#endif
