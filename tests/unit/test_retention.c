/* test_retention.c - what Suspended and Archived mean from the TenancyPolicies: suspension access
 * and workloads, the archive retention schedule, restore refused after the purge, status.archive. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "converge/tenant_suspend.h"
#include "tenancy/retention.h"

static json_t *load(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  cr_assert_not_null(j, "%s: %s", text, e.text);
  return j;
}

Test(retention, defaults_without_policies) {
  struct tn_lifecycle_rules r;
  tn_lifecycle_rules_from(NULL, &r);
  cr_assert_eq(r.access, TN_SUSPEND_ACCESS_VIEWER);
  cr_assert_eq(r.workloads, TN_SUSPEND_WORKLOADS_CUT_OFF);
  cr_assert_eq(r.archived_data_days, TN_RETENTION_ARCHIVED_DEFAULT_DAYS);
  cr_assert_eq(r.archived_data_days, 30);
  cr_assert_not(r.archived_data_set);
  cr_assert_str_eq(tn_suspension_access_name(r.access), "Viewer");
  cr_assert_str_eq(tn_suspension_workloads_name(r.workloads), "CutOff");
}

Test(retention, the_strictest_policy_wins) {
  json_t *p = load("[{\"metadata\":{\"name\":\"b\"},\"spec\":{\"retention\":{\"archivedData\":\"90d\"},"
                   "\"suspension\":{\"access\":\"Viewer\",\"workloads\":\"ScaleToZero\"}}},"
                   "{\"metadata\":{\"name\":\"a\"},\"spec\":{\"retention\":{\"archivedData\":\"7d\"},"
                   "\"suspension\":{\"access\":\"None\"}}},"
                   "{\"metadata\":{\"name\":\"c\"},\"spec\":{\"retention\":{\"archivedData\":\"x\"}}}]");
  struct tn_lifecycle_rules r;
  tn_lifecycle_rules_from(p, &r);
  cr_assert_eq(r.access, TN_SUSPEND_ACCESS_NONE);
  cr_assert_eq(r.workloads, TN_SUSPEND_WORKLOADS_SCALE_TO_ZERO);
  cr_assert_eq(r.archived_data_days, 7);
  cr_assert(r.archived_data_set);
  cr_assert_str_eq(r.retention_from, "a");
  json_decref(p);
  p = load("[{\"metadata\":{\"name\":\"z\"},\"spec\":{\"retention\":{\"archivedData\":\"0d\"}}}]");
  tn_lifecycle_rules_from(p, &r);
  cr_assert_eq(r.archived_data_days, 0, "0d purges at once");
  json_decref(p);
}

Test(retention, schedule_from_archived_at) {
  struct tn_lifecycle_rules r = {.archived_data_days = 30};
  json_t *t = load("{\"status\":{\"state\":\"Archived\",\"archivedAt\":\"2026-01-01T00:00:00Z\"}}");
  struct tn_archive_schedule s;
  double jan1 = 1767225600.0; /* 2026-01-01T00:00:00Z */
  tn_archive_schedule_for(t, TN_STATE_ARCHIVED, false, &r, jan1 + 86400, &s);
  cr_assert(s.archived);
  cr_assert_not(s.due);
  cr_assert_float_eq(s.archived_at, jan1, 0.5);
  cr_assert_float_eq(s.purge_after, jan1 + 30 * 86400.0, 0.5);
  tn_archive_schedule_for(t, TN_STATE_ARCHIVED, false, &r, jan1 + 30 * 86400.0, &s);
  cr_assert(s.due, "due exactly at purgeAfter");
  /* Archiving now: the retention starts now, whatever an old archivedAt says. */
  tn_archive_schedule_for(t, TN_STATE_ARCHIVED, true, &r, jan1 + 400 * 86400.0, &s);
  cr_assert_not(s.due);
  /* Not Archived: no schedule. */
  tn_archive_schedule_for(t, TN_STATE_ACTIVE, false, &r, jan1, &s);
  cr_assert_not(s.archived);
  cr_assert_not(s.due);
  json_decref(t);
  /* Purged stays purged, whatever the policy says now. */
  t = load("{\"status\":{\"archivedAt\":\"2026-01-01T00:00:00Z\",\"archive\":{\"purgedAt\":\"2026-01-02T00:"
           "00:00Z\"}}}");
  r.archived_data_days = 9999;
  tn_archive_schedule_for(t, TN_STATE_ARCHIVED, false, &r, jan1, &s);
  cr_assert(s.purged);
  cr_assert(s.due);
  json_decref(t);
}

static struct tn_lifecycle_plan restore_plan(void) {
  struct tn_lifecycle_plan lp = {.next = TN_STATE_ACTIVE, .n_steps = 1};
  lp.steps[0] =
      (struct tn_transition){.from = TN_STATE_ARCHIVED, .to = TN_STATE_ACTIVE, .action = TN_ACTION_RESTORE};
  return lp;
}

Test(retention, restore_refused_only_after_the_purge) {
  json_t *kept = load("{\"status\":{\"archive\":{\"purgeAfter\":\"2026-02-01T00:00:00Z\"}}}");
  json_t *gone = load("{\"status\":{\"archive\":{\"purgedAt\":\"2026-02-01T00:00:05Z\"}}}");
  struct tn_lifecycle_plan lp = restore_plan();
  struct tn_error err = {0};
  cr_assert_eq(tn_archive_check_restore(kept, &lp, &err), 0);
  cr_assert_eq(lp.n_steps, 1);
  cr_assert_eq(lp.next, TN_STATE_ACTIVE);
  cr_assert_eq(tn_archive_check_restore(gone, &lp, &err), TN_EINVALID);
  cr_assert(lp.refused);
  cr_assert_eq(lp.n_steps, 0);
  cr_assert_eq(lp.next, TN_STATE_ARCHIVED);
  cr_assert_str_eq(err.reason, "TransitionRefused");
  cr_assert_not_null(strstr(err.message, "purged at 2026-02-01T00:00:05Z"), "%s", err.message);
  cr_assert_not_null(strstr(err.message, "Deleted"), "%s", err.message);
  /* A status that says Archived without status.archive was not written by an archive. */
  json_t *forged = load("{\"status\":{\"state\":\"Archived\"}}");
  lp = restore_plan();
  cr_assert_eq(tn_archive_check_restore(forged, &lp, &err), TN_EINVALID);
  cr_assert(lp.refused);
  cr_assert_not_null(strstr(err.message, "status.archive is missing"), "%s", err.message);
  json_decref(forged);
  /* Not a restore: nothing to say. */
  struct tn_lifecycle_plan del = {.next = TN_STATE_DELETED, .n_steps = 1};
  del.steps[0].action = TN_ACTION_DELETE;
  cr_assert_eq(tn_archive_check_restore(gone, &del, &err), 0);
  cr_assert_eq(del.n_steps, 1);
  json_decref(kept);
  json_decref(gone);
}

Test(retention, status_archive) {
  json_t *status = load("{\"state\":\"Archived\"}");
  struct tn_archive_schedule s = {.archived = true, .purge_after = 1767225600.0, .retention_days = 30};
  tn_archive_status_set(status, &s, false, "2026-01-01T00:00:00Z");
  json_t *a = json_object_get(status, "archive");
  cr_assert_str_eq(json_string_value(json_object_get(a, "purgeAfter")), "2026-01-01T00:00:00Z");
  cr_assert_eq(json_integer_value(json_object_get(a, "retentionDays")), 30);
  cr_assert_null(json_object_get(a, "purgedAt"));
  tn_archive_status_set(status, &s, true, "2026-01-01T00:00:09Z");
  a = json_object_get(status, "archive");
  cr_assert_str_eq(json_string_value(json_object_get(a, "purgedAt")), "2026-01-01T00:00:09Z");
  /* later passes keep the first purgedAt and the schedule it ended */
  s.retention_days = 90;
  s.purge_after += 60 * 86400.0;
  tn_archive_status_set(status, &s, true, "2026-03-01T00:00:00Z");
  a = json_object_get(status, "archive");
  cr_assert_str_eq(json_string_value(json_object_get(a, "purgedAt")), "2026-01-01T00:00:09Z");
  cr_assert_str_eq(json_string_value(json_object_get(a, "purgeAfter")), "2026-01-01T00:00:00Z");
  cr_assert_eq(json_integer_value(json_object_get(a, "retentionDays")), 30);
  /* restored: gone */
  s.archived = false;
  tn_archive_status_set(status, &s, false, "2026-03-01T00:00:00Z");
  cr_assert_null(json_object_get(status, "archive"));
  json_decref(status);
}

Test(retention, the_workload_step_runs_only_when_needed) {
  struct tn_lifecycle_rules cut = {0}, stz = {.workloads = TN_SUSPEND_WORKLOADS_SCALE_TO_ZERO};
  struct tn_archive_schedule none = {0}, kept = {.archived = true}, due = {.archived = true, .due = true};
  json_t *plain = load("{\"status\":{}}"), *held = load("{\"status\":{\"scaledWorkloads\":2}}");
  bool stz_out = true;
  /* Active, nothing held: no API call at all. */
  cr_assert_not(tn_tenant_workloads_needed(plain, TN_STATE_ACTIVE, &stz, &none, &stz_out));
  /* Suspended: only with ScaleToZero. */
  cr_assert_not(tn_tenant_workloads_needed(plain, TN_STATE_SUSPENDED, &cut, &none, &stz_out));
  cr_assert(tn_tenant_workloads_needed(plain, TN_STATE_SUSPENDED, &stz, &none, &stz_out));
  cr_assert(stz_out);
  /* Archived and retained: always scaled to zero; once due, the namespaces go instead. */
  cr_assert(tn_tenant_workloads_needed(plain, TN_STATE_ARCHIVED, &cut, &kept, &stz_out));
  cr_assert(stz_out);
  cr_assert_not(tn_tenant_workloads_needed(held, TN_STATE_ARCHIVED, &cut, &due, &stz_out));
  /* Resumed or restored with workloads held: give them back. */
  cr_assert(tn_tenant_workloads_needed(held, TN_STATE_ACTIVE, &cut, &none, &stz_out));
  cr_assert_not(stz_out);
  /* Suspended with CutOff after a ScaleToZero policy went away: give them back too. */
  cr_assert(tn_tenant_workloads_needed(held, TN_STATE_SUSPENDED, &cut, &none, &stz_out));
  cr_assert_not(stz_out);
  json_decref(plain);
  json_decref(held);
}
