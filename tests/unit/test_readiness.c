/* test_readiness.c - the /readyz decision (runtime/readiness.h) at every step of the start-up. */
#include <criterion/criterion.h>
#include <string.h>

#include "runtime/readiness.h"

static bool decide(struct tn_readiness r, char *why) { return tn_readiness_decide(&r, why, 128); }

/* The start-up of a replica that runs the workers (no election, or the lease acquired), in main's
 * order, with the manager's answer at each step: the caches list, then main's next turn starts the
 * workers (every cached tenant queued first), then the first pass runs and ends. Ready only at
 * the end. Session 24's bug: between "synced" and "workers started" the manager said ready (its
 * pass check applies once its workers run) and so did /readyz. */
Test(readiness, not_ready_until_the_first_pass_of_started_workers_is_done) {
  char why[128];
  struct tn_readiness s = {
      .should_run_workers = true, .manager_ready = false, .manager_why = "cache of tenants has not synced"};
  cr_assert_not(decide(s, why));
  cr_assert_str_eq(why, "cache of tenants has not synced");

  /* caches synced; main has not started the workers yet: the manager has no pass to wait for */
  s.manager_ready = true;
  s.manager_why = NULL;
  cr_assert_not(decide(s, why), "synced but the workers not started: nothing has been checked");
  cr_assert_str_eq(why, "first reconcile pass not started");

  /* workers started, the pass running: the manager says so */
  s.workers_started = true;
  s.manager_ready = false;
  s.manager_why = "first reconcile pass in progress";
  cr_assert_not(decide(s, why));
  cr_assert_str_eq(why, "first reconcile pass in progress");

  /* the pass done */
  s.manager_ready = true;
  s.manager_why = NULL;
  cr_assert(decide(s, why));
}

/* A standby serves the webhook and the read API from its caches: ready once they synced. */
Test(readiness, a_standby_is_ready_once_its_caches_synced) {
  char why[128];
  struct tn_readiness s = {.manager_ready = false, .manager_why = "cache of regions has not synced"};
  cr_assert_not(decide(s, why));
  cr_assert_str_eq(why, "cache of regions has not synced");
  s.manager_ready = true;
  cr_assert(decide(s, why));
  /* it acquires the lease: not ready again until its workers ran their first pass */
  s.should_run_workers = true;
  cr_assert_not(decide(s, why));
  cr_assert_str_eq(why, "first reconcile pass not started");
}

Test(readiness, shutting_down_is_never_ready) {
  char why[128];
  struct tn_readiness s = {
      .shutting_down = true, .manager_ready = true, .should_run_workers = true, .workers_started = true};
  cr_assert_not(decide(s, why));
  cr_assert_str_eq(why, "shutting down");
  s.should_run_workers = false;
  cr_assert_not(decide(s, why));
}

Test(readiness, a_manager_without_a_reason_still_gives_one) {
  char why[128] = "";
  struct tn_readiness s = {.manager_ready = false};
  cr_assert_not(decide(s, why));
  cr_assert_str_eq(why, "caches not ready");
  char small[8];
  s.manager_why = "cache of tenantmigrations has not synced";
  cr_assert_not(tn_readiness_decide(&s, small, sizeof small));
  cr_assert_eq(strlen(small), sizeof small - 1, "truncated, terminated");
}
