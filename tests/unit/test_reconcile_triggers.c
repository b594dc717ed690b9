/* test_reconcile_triggers.c - the cause of each tenant reconcile (converge/reconcile_triggers.h,
 * issue 18): the first trigger since the last reconcile began wins, requeues are the cause of the
 * next run only when no event came first, deleted tenants are forgotten, and "recent" follows
 * the last begin. */
#include <criterion/criterion.h>
#include <math.h>

#include "converge/reconcile_triggers.h"
#include "tenancy/desired.h"

#define KIND_NP (TN_KIND_NETWORK_POLICY + 1)

Test(reconcile_triggers, the_first_trigger_since_the_last_begin_is_the_cause) {
  struct tn_triggers *t = tn_triggers_new();
  cr_assert_not_null(t);
  tn_triggers_note(t, "acme", TN_TRIGGER_TENANT_ADDED, 0);
  tn_triggers_note(t, "acme", TN_TRIGGER_OWNED_UPDATED, KIND_NP); /* merged by the queue */
  struct tn_trigger_cause c = tn_triggers_begin(t, "acme", 10.0);
  cr_assert_eq(c.trigger, TN_TRIGGER_TENANT_ADDED);
  cr_assert_eq(c.kind, 0);
  /* An event while the reconcile runs is the cause of the next one. */
  tn_triggers_note(t, "acme", TN_TRIGGER_OWNED_UPDATED, KIND_NP);
  tn_triggers_end(t, "acme", TN_RESULT_OK, false, 10.1);
  c = tn_triggers_begin(t, "acme", 10.2);
  cr_assert_eq(c.trigger, TN_TRIGGER_OWNED_UPDATED);
  cr_assert_eq(c.kind, KIND_NP);
  cr_assert_str_eq(tn_trigger_kind_name(c.kind), "NetworkPolicy");
  tn_triggers_end(t, "acme", TN_RESULT_OK, false, 10.3);
  /* Nothing noted: unknown, counted as such. */
  c = tn_triggers_begin(t, "acme", 11.0);
  cr_assert_eq(c.trigger, TN_TRIGGER_UNKNOWN);
  cr_assert_eq(tn_triggers_count(t, TN_TRIGGER_TENANT_ADDED, 0), 1);
  cr_assert_eq(tn_triggers_count(t, TN_TRIGGER_OWNED_UPDATED, KIND_NP), 1);
  cr_assert_eq(tn_triggers_count(t, TN_TRIGGER_OWNED_UPDATED, 0), 0);
  cr_assert_eq(tn_triggers_count(t, TN_TRIGGER_UNKNOWN, 0), 1);
  /* A kind is kept only for the owned triggers. */
  tn_triggers_note(t, "acme", TN_TRIGGER_TENANT_SPEC, KIND_NP);
  cr_assert_eq(tn_triggers_begin(t, "acme", 12.0).kind, 0);
  tn_triggers_free(t);
  tn_triggers_free(NULL);
}

Test(reconcile_triggers, a_requeue_is_the_cause_only_when_no_event_came_first) {
  struct tn_triggers *t = tn_triggers_new();
  tn_triggers_note(t, "acme", TN_TRIGGER_TENANT_ADDED, 0);
  (void)tn_triggers_begin(t, "acme", 0.0);
  tn_triggers_end(t, "acme", TN_RESULT_AFTER(5), false, 1.0);
  /* The delayed item fires at 6 with nothing else pending. */
  cr_assert_eq(tn_triggers_begin(t, "acme", 6.0).trigger, TN_TRIGGER_REQUEUE_AFTER);
  tn_triggers_end(t, "acme", TN_RESULT_AFTER(5), false, 6.5);
  /* An event at 7 runs first; the requeue due at 11.5 still fires afterwards and is told apart. */
  tn_triggers_note(t, "acme", TN_TRIGGER_OWNED_DELETED, TN_KIND_NAMESPACE + 1);
  cr_assert_eq(tn_triggers_begin(t, "acme", 7.0).trigger, TN_TRIGGER_OWNED_DELETED);
  tn_triggers_end(t, "acme", TN_RESULT_OK, false, 7.1);
  cr_assert_eq(tn_triggers_begin(t, "acme", 11.5).trigger, TN_TRIGGER_REQUEUE_AFTER);
  tn_triggers_end(t, "acme", TN_RESULT_ERR, false, 11.6);
  cr_assert_eq(tn_triggers_begin(t, "acme", 11.7).trigger, TN_TRIGGER_ERROR);
  tn_triggers_end(t, "acme", TN_RESULT_AFTER(2), false, 12.0);
  /* A requeue already due when an event's reconcile begins was merged into it. */
  tn_triggers_note(t, "acme", TN_TRIGGER_TENANT_SPEC, 0);
  cr_assert_eq(tn_triggers_begin(t, "acme", 14.5).trigger, TN_TRIGGER_TENANT_SPEC);
  tn_triggers_end(t, "acme", TN_RESULT_OK, false, 14.6);
  cr_assert_eq(tn_triggers_begin(t, "acme", 20.0).trigger, TN_TRIGGER_UNKNOWN);
  cr_assert_eq(tn_triggers_count(t, TN_TRIGGER_REQUEUE_AFTER, 0), 2);
  cr_assert_eq(tn_triggers_count(t, TN_TRIGGER_ERROR, 0), 1);
  tn_triggers_free(t);
}

Test(reconcile_triggers, recent_follows_the_last_begin_and_deleted_tenants_are_forgotten) {
  struct tn_triggers *t = tn_triggers_new();
  cr_assert_not(tn_triggers_recent(t, "acme", 10, 100.0), "never reconciled");
  (void)tn_triggers_begin(t, "acme", 100.0);
  tn_triggers_end(t, "acme", TN_RESULT_OK, false, 100.2);
  cr_assert(tn_triggers_recent(t, "acme", 10, 109.0));
  cr_assert_not(tn_triggers_recent(t, "acme", 10, 110.5));
  cr_assert_not(tn_triggers_recent(t, "globex", 10, 101.0));
  /* Many tenants: the table grows and finds each. */
  char key[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "t%04d", i);
    tn_triggers_note(t, key, TN_TRIGGER_START, 0);
  }
  cr_assert_eq(tn_triggers_len(t), 5001);
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "t%04d", i);
    cr_assert_eq(tn_triggers_begin(t, key, 200.0).trigger, TN_TRIGGER_START);
  }
  /* The reconcile of a deleted tenant drops its entry, unless an event came meanwhile. */
  tn_triggers_note(t, "acme", TN_TRIGGER_TENANT_DELETED, 0);
  (void)tn_triggers_begin(t, "acme", 300.0);
  tn_triggers_end(t, "acme", TN_RESULT_OK, true, 300.1);
  cr_assert_eq(tn_triggers_len(t), 5000);
  cr_assert_not(tn_triggers_recent(t, "acme", 1000, 300.2));
  tn_triggers_note(t, "t0001", TN_TRIGGER_TENANT_DELETED, 0);
  (void)tn_triggers_begin(t, "t0001", 301.0);
  tn_triggers_note(t, "t0001", TN_TRIGGER_TENANT_ADDED, 0); /* recreated under the same name */
  tn_triggers_end(t, "t0001", TN_RESULT_OK, true, 301.1);
  cr_assert_eq(tn_triggers_len(t), 5000);
  cr_assert_eq(tn_triggers_begin(t, "t0001", 302.0).trigger, TN_TRIGGER_TENANT_ADDED);
  /* Deleting many leaves tombstones; adding again still works. */
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "t%04d", i);
    tn_triggers_end(t, key, TN_RESULT_OK, true, 400.0);
  }
  cr_assert_eq(tn_triggers_len(t), 0);
  for (int i = 0; i < 3000; i++) {
    snprintf(key, sizeof key, "u%04d", i);
    tn_triggers_note(t, key, TN_TRIGGER_TENANT_ADDED, 0);
  }
  cr_assert_eq(tn_triggers_len(t), 3000);
  cr_assert_eq(tn_triggers_begin(t, "u2999", 500.0).trigger, TN_TRIGGER_TENANT_ADDED);
  tn_triggers_skipped(t, TN_SKIP_RESYNC_RECENT);
  cr_assert_eq(tn_triggers_skip_count(t, TN_SKIP_RESYNC_RECENT), 1);
  cr_assert_str_eq(tn_trigger_skip_name(TN_SKIP_RESYNC_RECENT), "resync_recent");
  cr_assert_str_eq(tn_trigger_name(TN_TRIGGER_TENANT_RESYNC), "tenant_resync");
  tn_triggers_free(t);
}
