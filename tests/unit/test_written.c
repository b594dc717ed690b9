/* test_written.c - the reconcile's memory of the resourceVersions its last status write of each
 * tenant replaced: a cache that still shows one of them (same uid) is behind our own writes. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>

#include "converge/reconciler.h"

static json_t *tenant(const char *name, const char *uid, const char *rv, const char *state) {
  return json_pack("{s:{s:s,s:s,s:I,s:s},s:{s:s}}", "metadata", "name", name, "uid", uid, "generation",
                   (json_int_t)3, "resourceVersion", rv, "status", "state", state);
}

/* A write that changes only a condition (Progressing records a failed suspend; the state stays
 * Active): a cache still at the version that write replaced is behind it. The state-only check
 * this replaced missed it, and a pass planned from that cache audited the attempt as started a
 * second time (test_lifecycle_truth's suspend with the database server down). */
Test(written, a_cache_at_the_version_our_write_replaced_is_behind) {
  struct tn_written *w = tn_written_new();
  cr_assert_not_null(w);
  json_t *before = tenant("acme", "u1", "100", "Active"), *after = tenant("acme", "u1", "105", "Active");
  json_t *later = tenant("acme", "u1", "230", "Active"), *other = tenant("acme", "u2", "100", "Active");
  cr_assert_not(tn_written_is_stale(w, before), "nothing written yet: trust the cache");
  tn_written_note(w, after, "100", "100");
  cr_assert(tn_written_is_stale(w, before), "the cache still shows the version our write replaced");
  cr_assert_eq(tn_written_count(w), 1);
  cr_assert_not(tn_written_is_stale(w, after), "the cache shows our write");
  cr_assert_eq(tn_written_count(w), 0, "the write came back: its entry has served");
  cr_assert_not(tn_written_is_stale(w, before), "a cache never goes back: nothing left to wait for");
  tn_written_note(w, after, "100", "100");
  cr_assert_not(tn_written_is_stale(w, later), "the cache is past our write");
  cr_assert_eq(tn_written_count(w), 0);
  tn_written_note(w, after, "100", "100");
  cr_assert_not(tn_written_is_stale(w, other), "a tenant recreated under the same name is another tenant");
  cr_assert_eq(tn_written_count(w), 0, "the other tenant's entry is dropped too");
  json_decref(before);
  json_decref(after);
  json_decref(later);
  json_decref(other);
  tn_written_free(w);
  tn_written_free(NULL);
}

/* A new tenant's first pass adds the finalizer (100 -> 101), then writes the status (101 -> 102):
 * a cache at either replaced version is behind. */
Test(written, both_versions_of_a_pass_with_a_finalizer_write_are_behind) {
  struct tn_written *w = tn_written_new();
  json_t *v100 = tenant("acme", "u1", "100", ""), *v101 = tenant("acme", "u1", "101", "");
  json_t *v102 = tenant("acme", "u1", "102", "Active");
  tn_written_note(w, v102, "100", "101");
  cr_assert(tn_written_is_stale(w, v100));
  cr_assert(tn_written_is_stale(w, v101));
  cr_assert_not(tn_written_is_stale(w, v102));
  json_decref(v100);
  json_decref(v101);
  json_decref(v102);
  tn_written_free(w);
}

/* Someone else rewrites the status (`kubectl patch --subresource=status`, state Archived): that
 * is a new version, never one of ours, so the reconcile runs and answers it. The state-only
 * check took it for a cache behind our write and never reconciled the tenant again
 * (test_acceptance's a_rewritten_status_never_tears_down_an_active_tenant). */
Test(written, a_status_someone_else_wrote_is_not_taken_for_a_cache_behind) {
  struct tn_written *w = tn_written_new();
  json_t *ours = tenant("acme", "u1", "105", "Active"), *theirs = tenant("acme", "u1", "140", "Archived");
  tn_written_note(w, ours, "100", "100");
  cr_assert_not(tn_written_is_stale(w, theirs));
  json_decref(ours);
  json_decref(theirs);
  tn_written_free(w);
}

/* A write the server kept as a no-op answers the version it was sent with: nothing to wait for.
 * A resourceVersion that is not a decimal number is never compared. */
Test(written, a_no_op_write_and_an_opaque_version_never_hold_a_pass) {
  struct tn_written *w = tn_written_new();
  json_t *same = tenant("acme", "u1", "230", "Active");
  tn_written_note(w, same, "230", "230");
  cr_assert_not(tn_written_is_stale(w, same));
  json_t *opaque = tenant("acme", "u1", "v1-abc", "Active"),
         *opaque2 = tenant("acme", "u1", "v1-abd", "Active");
  tn_written_note(w, opaque2, "v1-abc", "v1-abc");
  cr_assert_not(tn_written_is_stale(w, opaque));
  json_decref(same);
  json_decref(opaque);
  json_decref(opaque2);
  tn_written_free(w);
}

/* Tenant i of a numbered set, as its cache shows it: "t-i", uid "u-i", at version 10i + 1 (before
 * our write: behind) or 10i + 2 (the write's answer). */
static json_t *numbered(int i, bool behind) {
  char name[32], uid[40], rv[24];
  snprintf(name, sizeof name, "t-%d", i);
  snprintf(uid, sizeof uid, "u-%d", i);
  snprintf(rv, sizeof rv, "%d", 10 * i + (behind ? 1 : 2));
  return tenant(name, uid, rv, "Active");
}

/* Notes a status write (10i + 1 -> 10i + 2) for tenants 0 .. n-1. */
static void note_numbered(struct tn_written *w, int n) {
  for (int i = 0; i < n; i++) {
    json_t *t = numbered(i, false);
    char from[24];
    snprintf(from, sizeof from, "%d", 10 * i + 1);
    tn_written_note(w, t, from, from);
    json_decref(t);
  }
}

Test(written, keeps_every_tenant_apart_through_growth) {
  struct tn_written *w = tn_written_new();
  cr_assert_not_null(w);
  note_numbered(w, 3000);
  for (int i = 0; i < 3000; i += 97) {
    json_t *same = numbered(i, false), *behind = numbered(i, true);
    cr_assert(tn_written_is_stale(w, behind), "t-%d: the cache is behind its write", i);
    cr_assert_not(tn_written_is_stale(w, same), "t-%d: the cache shows what was written", i);
    json_decref(same);
    json_decref(behind);
  }
  tn_written_free(w);
}

/* The Tenant watch shows each write back: the entries go, the table shrinks with them, and what
 * is still in flight stays reachable while it does. */
Test(written, forgets_the_writes_the_cache_has_shown) {
  struct tn_written *w = tn_written_new();
  note_numbered(w, 3000);
  cr_assert_eq(tn_written_count(w), 3000);
  for (int i = 0; i < 3000; i++) {
    if (i % 100 == 7)
      continue; /* still in flight */
    json_t *same = numbered(i, false);
    cr_assert_not(tn_written_is_stale(w, same));
    json_decref(same);
  }
  cr_assert_eq(tn_written_count(w), 30);
  for (int i = 7; i < 3000; i += 100) {
    json_t *behind = numbered(i, true);
    cr_assert(tn_written_is_stale(w, behind), "t-%d: still in flight after the table shrank", i);
    json_decref(behind);
  }
  tn_written_free(w);
}

Test(written, a_uid_too_long_to_keep_forgets_the_tenant) {
  struct tn_written *w = tn_written_new();
  json_t *a = tenant("acme", "u1", "105", "Active"), *before = tenant("acme", "u1", "100", "Active");
  tn_written_note(w, a, "100", "100");
  cr_assert(tn_written_is_stale(w, before));
  json_t *odd = tenant("acme", "a-uid-much-longer-than-any-uid-the-api-server-hands-out", "110", "Active");
  tn_written_note(w, odd, "105", "105");
  cr_assert_not(tn_written_is_stale(w, before), "nothing reliable kept: trust the cache");
  json_decref(a);
  json_decref(before);
  json_decref(odd);
  tn_written_free(w);
}

/* Entries of deleted tenants are dropped; every other entry stays reachable (the table shifts
 * entries back into the hole). */
Test(written, forgetting_tenants_keeps_the_others) {
  struct tn_written *w = tn_written_new();
  note_numbered(w, 2000);
  for (int i = 0; i < 2000; i += 3) {
    char name[32];
    snprintf(name, sizeof name, "t-%d", i);
    tn_written_forget(w, name);
  }
  tn_written_forget(w, "never-noted");
  tn_written_forget(NULL, "x");
  for (int i = 0; i < 2000; i++) {
    json_t *behind = numbered(i, true);
    if (i % 3 == 0)
      cr_assert_not(tn_written_is_stale(w, behind), "t-%d was forgotten", i);
    else
      cr_assert(tn_written_is_stale(w, behind), "t-%d lost after the deletions", i);
    json_decref(behind);
  }
  tn_written_free(w);
}
