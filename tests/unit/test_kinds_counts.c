/* test_kinds_counts.c - when the kinds-status controller writes a Plan's or Region's count
 * (issue 18): a change of the count alone waits until the interval after the object's last
 * status write; anything else, a first write, or an interval passed is written at once. */
#include <criterion/criterion.h>
#include <jansson.h>

#include "converge/kinds_status.h"

static json_t *plan_status(long long count, const char *ready) {
  return json_pack("{s:I,s:I,s:[{s:s,s:s,s:s}]}", "observedGeneration", (json_int_t)1, "tenantsCount",
                   (json_int_t)count, "conditions", "type", "Ready", "status", ready, "reason", "Ready");
}

Test(kinds_counts, a_count_change_alone_waits_for_the_interval) {
  json_t *old = plan_status(400, "True"), *cur = plan_status(600, "True");
  /* written 1 s ago, interval 5 s: 4 s to wait */
  double w = tn_kinds_status_count_wait(old, cur, "tenantsCount", 100.0, 101.0, 5.0);
  cr_assert_float_eq(w, 4.0, 1e-9, "waits %.3f s", w);
  /* the interval passed: written now, with the exact count */
  cr_assert_eq(tn_kinds_status_count_wait(old, cur, "tenantsCount", 100.0, 105.0, 5.0), 0.0);
  cr_assert_eq(tn_kinds_status_count_wait(old, cur, "tenantsCount", 100.0, 300.0, 5.0), 0.0);
  json_decref(old);
  json_decref(cur);
}

Test(kinds_counts, other_changes_and_first_writes_go_at_once) {
  json_t *old = plan_status(400, "True");
  json_t *invalid = plan_status(600, "False"); /* the count and a condition */
  cr_assert_eq(tn_kinds_status_count_wait(old, invalid, "tenantsCount", 100.0, 101.0, 5.0), 0.0,
               "a condition change is written at once, with the count");
  json_t *gen = plan_status(400, "True");
  json_object_set_new(gen, "observedGeneration", json_integer(2));
  cr_assert_eq(tn_kinds_status_count_wait(old, gen, "tenantsCount", 100.0, 101.0, 5.0), 0.0,
               "a new observedGeneration is written at once");
  json_t *cur = plan_status(600, "True");
  cr_assert_eq(tn_kinds_status_count_wait(old, cur, "tenantsCount", -1.0, 101.0, 5.0), 0.0,
               "never written by this process: written at once");
  cr_assert_eq(tn_kinds_status_count_wait(NULL, cur, "tenantsCount", 100.0, 101.0, 5.0), 0.0,
               "no status yet: written at once");
  cr_assert_eq(tn_kinds_status_count_wait(old, cur, "tenantsCount", 100.0, 101.0, -1.0), 0.0,
               "no interval: written at once");
  json_decref(old);
  json_decref(invalid);
  json_decref(gen);
  json_decref(cur);
}

Test(kinds_counts, an_unchanged_status_needs_no_wait_and_a_missing_count_is_a_change) {
  json_t *old = plan_status(400, "True"), *same = plan_status(400, "True");
  cr_assert_eq(tn_kinds_status_count_wait(old, same, "tenantsCount", 100.0, 101.0, 5.0), 0.0,
               "equal: nothing to wait for (the caller writes nothing)");
  /* a stored status without the count (an older operator's) and a new one with it: only the
   * count differs, so it waits like any count change */
  json_t *nocount = plan_status(400, "True");
  json_object_del(nocount, "tenantsCount");
  double w = tn_kinds_status_count_wait(nocount, same, "tenantsCount", 100.0, 102.0, 5.0);
  cr_assert_float_eq(w, 3.0, 1e-9, "waits %.3f s", w);
  /* the old status is left as it was (the check works on a copy) */
  cr_assert_null(json_object_get(nocount, "tenantsCount"));
  cr_assert_eq(json_integer_value(json_object_get(old, "tenantsCount")), 400);
  json_decref(old);
  json_decref(same);
  json_decref(nocount);
}
