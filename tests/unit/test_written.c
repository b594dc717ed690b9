/* test_written.c - the reconcile's memory of the state it last wrote: a cache that shows another
 * state for the same tenant uid and generation is behind our own write. */
#include <criterion/criterion.h>
#include <jansson.h>

#include "converge/reconciler.h"

static json_t *tenant(const char *uid, long long gen, const char *state) {
  return json_pack("{s:{s:s,s:s,s:I},s:{s:s}}", "metadata", "name", "acme", "uid", uid, "generation",
                   (json_int_t)gen, "status", "state", state);
}

Test(written, detects_a_cache_behind_our_own_write) {
  struct tn_written *w = tn_written_new();
  cr_assert_not_null(w);
  json_t *before = tenant("u1", 1, ""), *after = tenant("u1", 1, "Active");
  cr_assert_not(tn_written_is_stale(w, before), "nothing written yet: trust the cache");
  tn_written_note(w, after);
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
