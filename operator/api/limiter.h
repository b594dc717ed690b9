/* limiter.h - per-tenant, per-endpoint request rate limits of the read API: token buckets in a
 * bounded table, the rule a Tenant's status.derived.rateLimits sets for an endpoint, and the IETF
 * RateLimit / RateLimit-Policy header values. See docs/internals/ratelimit.md. */
#ifndef TN_API_LIMITER_H
#define TN_API_LIMITER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The longest wait a decision reports (Retry-After, reset): a bucket that never refills
 * (requestsPerSecond 0) or never holds a whole token (burst < 1) says "an hour", not forever. */
#define TN_LIMITER_WAIT_MAX_S 3600.0
/* Keys longer than this many bytes are cut to it (two such keys sharing their first
 * TN_LIMITER_KEY_MAX bytes share a bucket). Keys are "<tenant>/<endpoint>" and the like. */
#define TN_LIMITER_KEY_MAX 512

/* A table of token buckets, one per key, holding at most max_keys of them. Thread-safe: one
 * mutex protects the whole table (held only for the O(1) work of a take; no call out while
 * held). */
struct tn_limiter;

/* A new limiter for at most max_keys buckets (max_keys >= 1; 0 is taken as 1). Every bucket
 * slot and the hash index are allocated here, once: memory is fixed at creation except the
 * copies of the keys (each at most TN_LIMITER_KEY_MAX + 1 bytes). NULL on allocation failure.
 * Free with tn_limiter_free. */
struct tn_limiter *tn_limiter_new(size_t max_keys);
void tn_limiter_free(struct tn_limiter *l); /* accepts NULL */

/* A token bucket's rule: refills at rate_per_s tokens a second up to burst tokens; a request
 * takes one token. */
struct tn_limit_rule {
  double rate_per_s; /* >= 0; 0: the bucket never refills */
  double burst;      /* >= 0; < 1: no request is ever allowed */
};

/* The rule tenant's (borrowed, a Tenant object as the informer caches it)
 * status.derived.rateLimits sets for endpoint ("get", "list", "byExternalId", "placement",
 * "events"): rateLimits.endpoints.<endpoint> when present, else rateLimits' own
 * requestsPerSecond and burst. Returns 0 with *out filled (limited), or 1 when neither is set
 * (unlimited; *out untouched). tenant or endpoint NULL: 1. */
int tn_limit_rule_for_tenant(const json_t *tenant, const char *endpoint, struct tn_limit_rule *out);

/* What one request gets. */
struct tn_limit_decision {
  bool allowed;
  double retry_after_s; /* when !allowed: seconds until one token is there (Retry-After); else 0 */
  long limit;           /* the bucket's size: floor(burst) */
  long remaining;       /* whole tokens left after this request */
  double reset_s;       /* seconds until the bucket is full again (0 when full) */
};

/* Takes one token from key's bucket (key borrowed; created full when the key has none, which
 * may evict the least recently used bucket when max_keys are held), with rule (borrowed) and
 * the monotonic time now_mono_s (seconds, e.g. tn_mono_now(); a time earlier than the
 * bucket's last take counts as no time passed). Fills *out. O(1) expected: a keyed hash
 * (SipHash-2-4 with a random key) keeps chains short whatever the keys.
 *
 * Eviction is safe: a bucket restarts full, which is where any bucket left unused for
 * burst / rate_per_s seconds already is; a bucket is evicted only once max_keys other keys
 * have been used since its own last use, so the worst a caller gains is one extra burst per
 * max_keys distinct keys that others used in between. Size max_keys above the number of keys
 * in steady use (tenants x endpoints) and eviction only ever drops idle, full buckets. */
void tn_limiter_take(struct tn_limiter *l, const char *key, const struct tn_limit_rule *rule,
                     double now_mono_s, struct tn_limit_decision *out);

/* How many buckets are held (<= max_keys), and the bytes the limiter holds (the fixed table
 * plus the key copies): for tests and metrics. */
size_t tn_limiter_size(struct tn_limiter *l);
size_t tn_limiter_memory(struct tn_limiter *l);
/* The bound tn_limiter_memory never passes for a limiter of max_keys buckets. */
size_t tn_limiter_memory_bound(size_t max_keys);

/* The values of the `RateLimit` and `RateLimit-Policy` response header fields for rule and the
 * decision d (both borrowed), with the policy named policy_name (printable ASCII; quoted and
 * escaped as a Structured Field String), into ratelimit[n1] and policy[n2], e.g.
 *   RateLimit-Policy: "tenant";q=100;w=2      (q = burst, w = seconds to refill q: burst / rate)
 *   RateLimit: "tenant";r=42;t=1              (r = remaining, t = seconds until full again)
 * w is left out when the bucket never refills. Returns 0, or -EINVAL when policy_name is NULL,
 * longer than 128 bytes or has a byte outside 0x20-0x7e, or -ENOSPC when a buffer is too small (buffers then
 * hold
 * ""). */
int tn_limit_headers(const struct tn_limit_rule *rule, const struct tn_limit_decision *d,
                     const char *policy_name, char *ratelimit, size_t n1, char *policy, size_t n2);

#endif
