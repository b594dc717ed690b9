/* test_written.c - the reconcile's memory of the state it last wrote: a cache that shows another
 * state for the same tenant uid and generation is behind our own write. */
#include <criterion/criterion.h>
#include <jansson.h>

#include "converge/reconciler.h"

static json_t *versioned(const char *uid, const char *rv, const char *state) {
  return json_pack("{s:{s:s,s:s,s:I,s:s},s:{s:s}}", "metadata", "name", "acme", "uid", uid, "generation",
                   (json_int_t)3, "resourceVersion", rv, "status", "state", state);
}

static json_t *tenant(const char *uid, long long gen, const char *state) {
  return json_pack("{s:{s:s,s:s,s:I},s:{s:s}}", "metadata", "name", "acme", "uid", uid, "generation",
                   (json_int_t)gen, "status", "state", state);
}

Test(written, detects_a_cache_behind_our_own_write) {
  struct tn_written *w = tn_written_new();
  cr_assert_not_null(w);
  json_t *before = tenant("u1", 1, ""), *after = tenant("u1", 1, "Active");
  cr_assert_not(tn_written_is_stale(w, before), "nothing written yet: trust the cache");
  tn_written_note(w, after, NULL);
  cr_assert(tn_written_is_stale(w, before), "the cache still shows the state before our write");
  cr_assert_not(tn_written_is_stale(w, after), "the cache caught up");
  json_t *edited = tenant("u1", 2, "Active"), *recreated = tenant("u2", 1, "");
  cr_assert_not(tn_written_is_stale(w, edited), "a new generation is a new request, not staleness");
  cr_assert_not(tn_written_is_stale(w, recreated),
                "a tenant recreated under the same name is another tenant");
  json_decref(before);
  json_decref(after);
  json_decref(edited);
  json_decref(recreated);
  tn_written_free(w);
  tn_written_free(NULL);
}

static json_t *named(const char *name, const char *uid, long long gen, const char *state) {
  return json_pack("{s:{s:s,s:s,s:I},s:{s:s}}", "metadata", "name", name, "uid", uid, "generation",
                   (json_int_t)gen, "status", "state", state);
}

Test(written, keeps_every_tenant_apart_through_growth) {
  struct tn_written *w = tn_written_new();
  cr_assert_not_null(w);
  char name[32], uid[40];
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof name, "t-%d", i);
    snprintf(uid, sizeof uid, "00000000-0000-0000-0000-%012d", i);
    json_t *t = named(name, uid, i % 7 + 1, i % 2 ? "Active" : "Suspended");
    tn_written_note(w, t, NULL);
    json_decref(t);
  }
  for (int i = 0; i < 3000; i += 97) {
    snprintf(name, sizeof name, "t-%d", i);
    snprintf(uid, sizeof uid, "00000000-0000-0000-0000-%012d", i);
    json_t *same = named(name, uid, i % 7 + 1, i % 2 ? "Active" : "Suspended");
    json_t *behind = named(name, uid, i % 7 + 1, "");
    cr_assert_not(tn_written_is_stale(w, same), "%s: the cache shows what was written", name);
    cr_assert(tn_written_is_stale(w, behind), "%s: the cache is behind its write", name);
    json_decref(same);
    json_decref(behind);
  }
  tn_written_free(w);
}

Test(written, a_value_too_long_to_keep_forgets_the_tenant) {
  struct tn_written *w = tn_written_new();
  json_t *a = named("acme", "u1", 1, "Active"), *before = named("acme", "u1", 1, "");
  tn_written_note(w, a, NULL);
  cr_assert(tn_written_is_stale(w, before));
  json_t *odd = named("acme", "u1", 1, "AStateNameLongerThanAnyKnownState");
  tn_written_note(w, odd, NULL);
  cr_assert_not(tn_written_is_stale(w, before), "nothing reliable kept: trust the cache");
  json_decref(a);
  json_decref(before);
  json_decref(odd);
  tn_written_free(w);
}

/* A write that changes only a condition (Progressing records a failed suspend; the state stays
 * Active): a cache still at the version that write replaced is behind it. Before, only the state
 * was compared, and a pass planned from that cache audited the attempt as started a second
 * time (test_lifecycle_truth's suspend with the database server down). */
Test(written, a_condition_only_write_is_recognised_by_the_version_it_replaced) {
  struct tn_written *w = tn_written_new();
  json_t *before = versioned("u1", "100", "Active"), *after = versioned("u1", "105", "Active");
  json_t *later = versioned("u1", "230", "Active"), *other = versioned("u2", "100", "Active");
  tn_written_note(w, after, "100");
  cr_assert(tn_written_is_stale(w, before), "the cache still shows the version our write replaced");
  cr_assert_not(tn_written_is_stale(w, after), "the cache shows our write");
  cr_assert_not(tn_written_is_stale(w, later), "the cache is past our write");
  cr_assert_not(tn_written_is_stale(w, other), "another tenant under the same name");
  /* A write the server kept as a no-op returns the version it was sent with: nothing to wait for. */
  json_t *same = versioned("u1", "230", "Active");
  tn_written_note(w, same, "230");
  cr_assert_not(tn_written_is_stale(w, later));
  /* A resourceVersion that is not a decimal number is never compared. */
  json_t *opaque = versioned("u1", "v1-abc", "Active");
  tn_written_note(w, opaque, "v1-abc");
  cr_assert_not(tn_written_is_stale(w, opaque));
  json_decref(before);
  json_decref(after);
  json_decref(later);
  json_decref(other);
  json_decref(same);
  json_decref(opaque);
  tn_written_free(w);
}
