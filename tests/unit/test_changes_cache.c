/* test_changes_cache.c - the reconcile's memory of the placement and quotas the outbox holds for
 * each tenant (tenant_changes.h): a hit skips the outbox read, so it must never answer for another
 * tenant, another uid or other values. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "converge/tenant_changes.h"

#define P1 "eu-west\tshared"
#define P2 "eu-west\tdedicated"
#define Q1 "{\"cpu\":\"4\",\"memory\":\"8Gi\"}"
#define Q2 "{\"cpu\":\"8\",\"memory\":\"8Gi\"}"

Test(changes_cache, answers_only_for_the_values_it_was_told) {
  struct tn_tenant_changes_cache *c = tn_tenant_changes_cache_new(NULL);
  cr_assert_not_null(c);
  cr_assert_not(tn_tenant_changes_cache_has(c, "acme", "u1", P1, Q1), "empty: read the outbox");
  tn_tenant_changes_cache_put(c, "acme", "u1", P1, Q1);
  cr_assert(tn_tenant_changes_cache_has(c, "acme", "u1", P1, Q1));
  cr_assert(tn_tenant_changes_cache_has(c, "acme", "u1", NULL, Q1), "placement not asked");
  cr_assert(tn_tenant_changes_cache_has(c, "acme", "u1", P1, NULL), "quotas not asked");
  cr_assert_not(tn_tenant_changes_cache_has(c, "acme", "u1", P2, Q1), "another isolation");
  cr_assert_not(tn_tenant_changes_cache_has(c, "acme", "u1", P1, Q2), "other quotas");
  cr_assert_not(tn_tenant_changes_cache_has(c, "acme", "u2", P1, Q1), "the same name, another tenant");
  cr_assert_not(tn_tenant_changes_cache_has(c, "acm", "u1", P1, Q1), "another name");
  cr_assert_not(tn_tenant_changes_cache_has(c, "acme", "u1", "", Q1), "an empty placement is not P1");
  cr_assert_eq(tn_tenant_changes_cached(c), 1);

  /* Nothing recorded yet for the quotas: any quotas asked for miss. */
  tn_tenant_changes_cache_put(c, "acme", "u1", P2, NULL);
  cr_assert(tn_tenant_changes_cache_has(c, "acme", "u1", P2, NULL));
  cr_assert_not(tn_tenant_changes_cache_has(c, "acme", "u1", P2, Q1));
  cr_assert_not(tn_tenant_changes_cache_has(c, "acme", "u1", P1, NULL), "replaced, not added");
  cr_assert_eq(tn_tenant_changes_cached(c), 1);

  tn_tenant_changes_forget(c, "acme");
  cr_assert_not(tn_tenant_changes_cache_has(c, "acme", "u1", P2, NULL));
  cr_assert_eq(tn_tenant_changes_cached(c), 0);
  tn_tenant_changes_forget(c, "acme");
  tn_tenant_changes_forget(NULL, "acme");
  cr_assert_not(tn_tenant_changes_cache_has(NULL, "acme", "u1", P1, Q1));
  tn_tenant_changes_cache_put(NULL, "acme", "u1", P1, Q1);
  tn_tenant_changes_cache_free(c);
  tn_tenant_changes_cache_free(NULL);
}

/* Two caches (two processes) digest under different keys; each is consistent with itself. */
Test(changes_cache, every_process_has_its_own_key) {
  struct tn_tenant_changes_cache *a = tn_tenant_changes_cache_new(NULL),
                                 *b = tn_tenant_changes_cache_new(NULL);
  tn_tenant_changes_cache_put(a, "acme", "u1", P1, Q1);
  cr_assert(tn_tenant_changes_cache_has(a, "acme", "u1", P1, Q1));
  cr_assert_not(tn_tenant_changes_cache_has(b, "acme", "u1", P1, Q1));
  tn_tenant_changes_cache_free(a);
  tn_tenant_changes_cache_free(b);
}

/* Thousands of tenants through growth and deletions: each keeps its own values. */
Test(changes_cache, keeps_every_tenant_apart_through_growth_and_deletions) {
  struct tn_tenant_changes_cache *c = tn_tenant_changes_cache_new(NULL);
  char name[32], uid[32], q[64];
  for (int i = 0; i < 5000; i++) {
    snprintf(name, sizeof name, "t-%d", i);
    snprintf(uid, sizeof uid, "u-%d", i);
    snprintf(q, sizeof q, "{\"cpu\":\"%d\"}", i);
    tn_tenant_changes_cache_put(c, name, uid, P1, q);
  }
  cr_assert_eq(tn_tenant_changes_cached(c), 5000);
  for (int i = 0; i < 5000; i += 2) {
    snprintf(name, sizeof name, "t-%d", i);
    tn_tenant_changes_forget(c, name);
  }
  cr_assert_eq(tn_tenant_changes_cached(c), 2500);
  for (int i = 0; i < 5000; i++) {
    snprintf(name, sizeof name, "t-%d", i);
    snprintf(uid, sizeof uid, "u-%d", i);
    snprintf(q, sizeof q, "{\"cpu\":\"%d\"}", i);
    cr_assert_eq(tn_tenant_changes_cache_has(c, name, uid, P1, q), i % 2 == 1, "t-%d", i);
    snprintf(q, sizeof q, "{\"cpu\":\"%d\"}", i + 1);
    cr_assert_not(tn_tenant_changes_cache_has(c, name, uid, P1, q), "t-%d: a neighbour's quotas", i);
  }
  tn_tenant_changes_cache_free(c);
}
