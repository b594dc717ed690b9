/* test_limiter.c - the read API's rate limiter: token-bucket refill, burst, Retry-After, the
 * bounded table under a million distinct keys, the RateLimit headers and the Tenant rule lookup. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api/limiter.h"

#define EPS 1e-9

static struct tn_limit_rule rule(double rate, double burst) {
  return (struct tn_limit_rule){.rate_per_s = rate, .burst = burst};
}

Test(limiter, a_new_key_starts_with_a_full_burst_then_is_refused) {
  struct tn_limiter *l = tn_limiter_new(16);
  struct tn_limit_rule r = rule(5, 10);
  struct tn_limit_decision d;
  for (int i = 0; i < 10; i++) {
    tn_limiter_take(l, "acme/get", &r, 100.0, &d);
    cr_assert(d.allowed, "request %d of the burst", i);
    cr_assert_eq(d.limit, 10);
    cr_assert_eq(d.remaining, 9 - i);
    cr_assert_float_eq(d.retry_after_s, 0, EPS);
  }
  tn_limiter_take(l, "acme/get", &r, 100.0, &d);
  cr_assert_not(d.allowed, "the 11th request at the same instant");
  cr_assert_eq(d.remaining, 0);
  cr_assert_float_eq(d.retry_after_s, 0.2, EPS, "one token at 5/s takes 0.2 s");
  cr_assert_float_eq(d.reset_s, 2.0, EPS, "10 tokens at 5/s take 2 s");
  tn_limiter_free(l);
}

Test(limiter, refills_at_the_rate_and_never_past_the_burst) {
  struct tn_limiter *l = tn_limiter_new(16);
  struct tn_limit_rule r = rule(4, 8);
  struct tn_limit_decision d;
  for (int i = 0; i < 8; i++)
    tn_limiter_take(l, "k", &r, 0.0, &d);
  cr_assert_eq(d.remaining, 0);
  /* 0.5 s later: 2 tokens back; the take leaves 1. */
  tn_limiter_take(l, "k", &r, 0.5, &d);
  cr_assert(d.allowed);
  cr_assert_eq(d.remaining, 1);
  cr_assert_float_eq(d.reset_s, 7.0 / 4, EPS);
  /* 0.1 s later: 1 + 0.4 = 1.4 tokens; a take leaves 0.4, the next is refused. */
  tn_limiter_take(l, "k", &r, 0.6, &d);
  cr_assert(d.allowed);
  cr_assert_eq(d.remaining, 0);
  tn_limiter_take(l, "k", &r, 0.6, &d);
  cr_assert_not(d.allowed);
  cr_assert_float_eq(d.retry_after_s, 0.6 / 4, 1e-6, "0.6 tokens missing at 4/s");
  /* An hour later the bucket holds the burst, not 14,400 tokens. */
  tn_limiter_take(l, "k", &r, 3600.6, &d);
  cr_assert(d.allowed);
  cr_assert_eq(d.remaining, 7);
  /* Time going backwards (a caller's mistake) adds nothing. */
  tn_limiter_take(l, "k", &r, 10.0, &d);
  cr_assert_eq(d.remaining, 6);
  tn_limiter_free(l);
}

Test(limiter, sustained_rate_is_the_configured_rate) {
  /* Requests every 10 ms (100/s) against 20/s burst 20 over 10 s: 20 + 20 x 10 pass. */
  struct tn_limiter *l = tn_limiter_new(4);
  struct tn_limit_rule r = rule(20, 20);
  struct tn_limit_decision d;
  int allowed = 0;
  for (int i = 0; i <= 1000; i++) {
    tn_limiter_take(l, "k", &r, i * 0.01, &d);
    allowed += d.allowed;
  }
  cr_assert(allowed >= 219 && allowed <= 221, "allowed %d", allowed);
  tn_limiter_free(l);
}

Test(limiter, keys_have_separate_buckets) {
  struct tn_limiter *l = tn_limiter_new(16);
  struct tn_limit_rule r = rule(1, 1);
  struct tn_limit_decision d;
  tn_limiter_take(l, "acme/get", &r, 0, &d);
  cr_assert(d.allowed);
  tn_limiter_take(l, "acme/get", &r, 0, &d);
  cr_assert_not(d.allowed);
  tn_limiter_take(l, "acme/list", &r, 0, &d);
  cr_assert(d.allowed, "another endpoint of the same tenant");
  tn_limiter_take(l, "globex/get", &r, 0, &d);
  cr_assert(d.allowed, "another tenant");
  tn_limiter_free(l);
}

Test(limiter, a_shrunk_rule_clamps_the_tokens) {
  struct tn_limiter *l = tn_limiter_new(4);
  struct tn_limit_rule big = rule(100, 100), small = rule(1, 2);
  struct tn_limit_decision d;
  tn_limiter_take(l, "k", &big, 0, &d);
  cr_assert_eq(d.remaining, 99);
  tn_limiter_take(l, "k", &small, 0, &d);
  cr_assert_eq(d.remaining, 1, "99 tokens cut to the new burst of 2, then one taken");
  cr_assert_eq(d.limit, 2);
  tn_limiter_free(l);
}

Test(limiter, zero_rate_and_zero_burst_wait_the_maximum) {
  struct tn_limiter *l = tn_limiter_new(4);
  struct tn_limit_rule none = rule(0, 0), once = rule(0, 1);
  struct tn_limit_decision d;
  tn_limiter_take(l, "a", &none, 0, &d);
  cr_assert_not(d.allowed, "burst 0 allows nothing");
  cr_assert_float_eq(d.retry_after_s, TN_LIMITER_WAIT_MAX_S, EPS);
  tn_limiter_take(l, "b", &once, 0, &d);
  cr_assert(d.allowed);
  tn_limiter_take(l, "b", &once, 1e6, &d);
  cr_assert_not(d.allowed, "rate 0 never refills");
  cr_assert_float_eq(d.retry_after_s, TN_LIMITER_WAIT_MAX_S, EPS);
  tn_limiter_free(l);
}

Test(limiter, evicts_the_least_recently_used_and_it_restarts_full) {
  struct tn_limiter *l = tn_limiter_new(3);
  struct tn_limit_rule r = rule(1, 2);
  struct tn_limit_decision d;
  tn_limiter_take(l, "a", &r, 0, &d);
  tn_limiter_take(l, "a", &r, 0, &d);
  cr_assert_eq(d.remaining, 0);
  tn_limiter_take(l, "b", &r, 0, &d);
  tn_limiter_take(l, "c", &r, 0, &d);
  tn_limiter_take(l, "a", &r, 0, &d); /* a is now the most recent: refused, kept */
  cr_assert_not(d.allowed);
  tn_limiter_take(l, "d", &r, 0, &d); /* evicts b, the least recently used */
  cr_assert_eq(tn_limiter_size(l), 3);
  tn_limiter_take(l, "a", &r, 0, &d);
  cr_assert_not(d.allowed, "a was not evicted");
  tn_limiter_take(l, "b", &r, 0, &d);
  cr_assert(d.allowed, "b was evicted and restarts full");
  cr_assert_eq(d.remaining, 1);
  tn_limiter_free(l);
}

Test(limiter, a_million_distinct_keys_stay_within_the_bound) {
  const size_t max = 10000;
  struct tn_limiter *l = tn_limiter_new(max);
  struct tn_limit_rule r = rule(10, 20);
  struct tn_limit_decision d;
  char key[96];
  size_t bound = tn_limiter_memory_bound(max), peak = 0;
  for (int i = 0; i < 1000000; i++) {
    snprintf(key, sizeof key, "tenant-%07d/caller-with-a-longish-name/%s", i, i % 2 ? "get" : "list");
    tn_limiter_take(l, key, &r, i * 1e-6, &d);
    cr_assert(d.allowed, "a new key starts full (key %d)", i);
    if (i % 4096 == 0) {
      size_t m = tn_limiter_memory(l);
      peak = m > peak ? m : peak;
      cr_assert_leq(tn_limiter_size(l), max);
    }
  }
  size_t m = tn_limiter_memory(l);
  peak = m > peak ? m : peak;
  cr_assert_eq(tn_limiter_size(l), max);
  cr_assert_leq(peak, bound, "memory %zu past the bound %zu", peak, bound);
  /* The most recent keys are still tracked; the first ones were evicted (they restart full). */
  snprintf(key, sizeof key, "tenant-%07d/caller-with-a-longish-name/%s", 999999, "get");
  tn_limiter_take(l, key, &r, 1.0, &d);
  cr_assert_eq(d.remaining, 18, "second take of a recent key");
  tn_limiter_free(l);
}

Test(limiter, overlong_keys_are_cut_and_bounded) {
  struct tn_limiter *l = tn_limiter_new(2);
  static char big[4 * TN_LIMITER_KEY_MAX];
  memset(big, 'x', sizeof big - 1);
  struct tn_limit_rule r = rule(1, 5);
  struct tn_limit_decision d;
  tn_limiter_take(l, big, &r, 0, &d);
  big[sizeof big - 2] = 'y'; /* differs only past the cut: the same bucket */
  tn_limiter_take(l, big, &r, 0, &d);
  cr_assert_eq(d.remaining, 3);
  cr_assert_leq(tn_limiter_memory(l), tn_limiter_memory_bound(2));
  tn_limiter_free(l);
}

struct hammer {
  struct tn_limiter *l;
  int allowed;
};

static void *hammer_run(void *arg) {
  struct hammer *h = arg;
  struct tn_limit_rule r = rule(0, 1000);
  struct tn_limit_decision d;
  for (int i = 0; i < 500; i++) {
    tn_limiter_take(h->l, "shared", &r, 0, &d);
    h->allowed += d.allowed;
  }
  return NULL;
}

Test(limiter, concurrent_takes_never_spend_a_token_twice) {
  struct tn_limiter *l = tn_limiter_new(8);
  pthread_t th[4];
  struct hammer h[4];
  for (int i = 0; i < 4; i++) {
    h[i] = (struct hammer){.l = l};
    pthread_create(&th[i], NULL, hammer_run, &h[i]);
  }
  int total = 0;
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    total += h[i].allowed;
  }
  cr_assert_eq(total, 1000, "2000 takes on a 1000-token bucket that never refills");
  tn_limiter_free(l);
}

Test(limiter, free_accepts_null) { tn_limiter_free(NULL); }

/* ---- headers ------------------------------------------------------------------------------------ */

Test(headers, policy_and_state_use_structured_fields) {
  struct tn_limit_rule r = rule(50, 100);
  struct tn_limit_decision d = {.allowed = true, .limit = 100, .remaining = 42, .reset_s = 1.16};
  char rl[128], pol[128];
  cr_assert_eq(tn_limit_headers(&r, &d, "tenant", rl, sizeof rl, pol, sizeof pol), 0);
  cr_assert_str_eq(pol, "\"tenant\";q=100;w=2");
  cr_assert_str_eq(rl, "\"tenant\";r=42;t=2");
  r = rule(100, 100);
  d = (struct tn_limit_decision){.limit = 100, .remaining = 0, .reset_s = 1.0, .retry_after_s = 0.01};
  cr_assert_eq(tn_limit_headers(&r, &d, "acme-get", rl, sizeof rl, pol, sizeof pol), 0);
  cr_assert_str_eq(pol, "\"acme-get\";q=100;w=1");
  cr_assert_str_eq(rl, "\"acme-get\";r=0;t=1");
}

Test(headers, a_full_bucket_resets_in_zero_and_a_dry_one_has_no_window) {
  struct tn_limit_rule r = rule(0, 5);
  struct tn_limit_decision d = {.allowed = true, .limit = 5, .remaining = 5, .reset_s = 0};
  char rl[64], pol[64];
  cr_assert_eq(tn_limit_headers(&r, &d, "t", rl, sizeof rl, pol, sizeof pol), 0);
  cr_assert_str_eq(pol, "\"t\";q=5", "no refill: no window");
  cr_assert_str_eq(rl, "\"t\";r=5;t=0");
}

Test(headers, names_are_escaped_and_checked) {
  struct tn_limit_rule r = rule(1, 1);
  struct tn_limit_decision d = {.limit = 1};
  char rl[64], pol[64];
  cr_assert_eq(tn_limit_headers(&r, &d, "a\"b\\c", rl, sizeof rl, pol, sizeof pol), 0);
  cr_assert_str_eq(pol, "\"a\\\"b\\\\c\";q=1;w=1");
  cr_assert_eq(tn_limit_headers(&r, &d, "bad\r\nX-Injected: 1", rl, sizeof rl, pol, sizeof pol), -EINVAL);
  cr_assert_str_eq(rl, "");
  cr_assert_str_eq(pol, "");
  cr_assert_eq(tn_limit_headers(&r, &d, "caf\xc3\xa9", rl, sizeof rl, pol, sizeof pol), -EINVAL);
  cr_assert_eq(tn_limit_headers(&r, &d, NULL, rl, sizeof rl, pol, sizeof pol), -EINVAL);
}

Test(headers, small_buffers_are_refused_not_cut) {
  struct tn_limit_rule r = rule(50, 100);
  struct tn_limit_decision d = {.limit = 100, .remaining = 42, .reset_s = 1};
  char rl[8], pol[128];
  cr_assert_eq(tn_limit_headers(&r, &d, "tenant", rl, sizeof rl, pol, sizeof pol), -ENOSPC);
  cr_assert_str_eq(rl, "");
  cr_assert_str_eq(pol, "");
}

Test(headers, a_refusal_and_its_headers_agree) {
  struct tn_limiter *l = tn_limiter_new(4);
  struct tn_limit_rule r = rule(2, 3);
  struct tn_limit_decision d;
  char rl[64], pol[64];
  for (int i = 0; i < 4; i++)
    tn_limiter_take(l, "k", &r, 0, &d);
  cr_assert_not(d.allowed);
  cr_assert_float_eq(d.retry_after_s, 0.5, EPS);
  cr_assert_eq(tn_limit_headers(&r, &d, "tenant", rl, sizeof rl, pol, sizeof pol), 0);
  cr_assert_str_eq(pol, "\"tenant\";q=3;w=2");
  cr_assert_str_eq(rl, "\"tenant\";r=0;t=2");
  tn_limiter_free(l);
}

/* ---- the rule of a Tenant ----------------------------------------------------------------------- */

static json_t *tenant_with(const char *rate_limits) {
  char buf[1024];
  snprintf(buf, sizeof buf, "{\"metadata\":{\"name\":\"acme\"},\"status\":{\"derived\":{\"rateLimits\":%s}}}",
           rate_limits);
  json_error_t e;
  json_t *t = json_loads(buf, 0, &e);
  cr_assert_not_null(t, "%s", e.text);
  return t;
}

Test(rule, an_endpoint_entry_wins_over_the_tenant_default) {
  json_t *t = tenant_with("{\"requestsPerSecond\":50,\"burst\":100,\"endpoints\":{\"list\":"
                          "{\"requestsPerSecond\":5,\"burst\":10}}}");
  struct tn_limit_rule r = {0};
  cr_assert_eq(tn_limit_rule_for_tenant(t, "list", &r), 0);
  cr_assert_float_eq(r.rate_per_s, 5, EPS);
  cr_assert_float_eq(r.burst, 10, EPS);
  cr_assert_eq(tn_limit_rule_for_tenant(t, "get", &r), 0);
  cr_assert_float_eq(r.rate_per_s, 50, EPS);
  cr_assert_float_eq(r.burst, 100, EPS);
  json_decref(t);
}

Test(rule, endpoints_only_leave_the_others_unlimited) {
  json_t *t = tenant_with("{\"endpoints\":{\"events\":{\"requestsPerSecond\":1,\"burst\":2}}}");
  struct tn_limit_rule r = {.rate_per_s = -1};
  cr_assert_eq(tn_limit_rule_for_tenant(t, "events", &r), 0);
  cr_assert_float_eq(r.burst, 2, EPS);
  r.rate_per_s = -1;
  cr_assert_eq(tn_limit_rule_for_tenant(t, "get", &r), 1);
  cr_assert_float_eq(r.rate_per_s, -1, EPS, "untouched when unlimited");
  json_decref(t);
}

Test(rule, no_derived_rate_limits_is_unlimited) {
  struct tn_limit_rule r;
  json_error_t e;
  json_t *t =
      json_loads("{\"metadata\":{\"name\":\"acme\"},\"status\":{\"derived\":{\"quotas\":{}}}}", 0, &e);
  cr_assert_eq(tn_limit_rule_for_tenant(t, "get", &r), 1);
  json_decref(t);
  t = json_loads("{\"metadata\":{\"name\":\"acme\"}}", 0, &e);
  cr_assert_eq(tn_limit_rule_for_tenant(t, "get", &r), 1);
  cr_assert_eq(tn_limit_rule_for_tenant(NULL, "get", &r), 1);
  cr_assert_eq(tn_limit_rule_for_tenant(t, NULL, &r), 1);
  json_decref(t);
  t = tenant_with("{\"requestsPerSecond\":\"fast\",\"burst\":1}");
  cr_assert_eq(tn_limit_rule_for_tenant(t, "get", &r), 1, "a malformed entry is not a rule");
  json_decref(t);
}
