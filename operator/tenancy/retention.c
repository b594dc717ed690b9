/* retention.c - Suspended and Archived as the policies define them (see retention.h). */
#define _GNU_SOURCE /* strptime, timegm */
#include "tenancy/retention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"

const char *tn_suspension_access_name(enum tn_suspension_access a) {
  return a == TN_SUSPEND_ACCESS_NONE ? "None" : "Viewer";
}

const char *tn_suspension_workloads_name(enum tn_suspension_workloads w) {
  return w == TN_SUSPEND_WORKLOADS_SCALE_TO_ZERO ? "ScaleToZero" : "CutOff";
}

/* "90d" -> 90; -1 when not of the CRD's form ^[0-9]{1,6}d$. */
static int days_of(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n < 2 || n > 7 || s[n - 1] != 'd')
    return -1;
  int v = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

void tn_lifecycle_rules_from(const json_t *policy_objs, struct tn_lifecycle_rules *out) {
  memset(out, 0, sizeof *out);
  out->archived_data_days = TN_RETENTION_ARCHIVED_DEFAULT_DAYS;
  size_t i;
  const json_t *p;
  json_array_foreach(policy_objs, i, p) {
    const json_t *spec = json_object_get(p, "spec");
    const json_t *sus = json_object_get(spec, "suspension");
    const char *access = json_string_value(json_object_get(sus, "access"));
    const char *workloads = json_string_value(json_object_get(sus, "workloads"));
    if (access && strcmp(access, "None") == 0)
      out->access = TN_SUSPEND_ACCESS_NONE;
    if (workloads && strcmp(workloads, "ScaleToZero") == 0)
      out->workloads = TN_SUSPEND_WORKLOADS_SCALE_TO_ZERO;
    int d = days_of(json_string_value(json_object_get(json_object_get(spec, "retention"), "archivedData")));
    if (d < 0)
      continue;
    const char *name = json_string_value(json_object_get(json_object_get(p, "metadata"), "name"));
    /* The shortest wins; among equals the first name in order, so the answer is stable. */
    if (!out->archived_data_set || d < out->archived_data_days ||
        (d == out->archived_data_days && name && strcmp(name, out->retention_from) < 0)) {
      out->archived_data_days = d;
      out->archived_data_set = true;
      snprintf(out->retention_from, sizeof out->retention_from, "%s", name ? name : "");
    }
  }
}

static double parse_time(const char *s) {
  struct tm tm = {0};
  const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
  if (!end || *end)
    return 0;
  return (double)timegm(&tm);
}

static const json_t *archive_status(const json_t *tenant_obj) {
  return json_object_get(json_object_get(tenant_obj, "status"), "archive");
}

void tn_archive_schedule_for(const json_t *tenant_obj, enum tn_state next, bool archiving_now,
                             const struct tn_lifecycle_rules *rules, double now,
                             struct tn_archive_schedule *out) {
  memset(out, 0, sizeof *out);
  if (next != TN_STATE_ARCHIVED)
    return;
  out->archived = true;
  out->retention_days = rules->archived_data_days;
  const json_t *status = json_object_get(tenant_obj, "status");
  out->purged = json_string_value(json_object_get(archive_status(tenant_obj), "purgedAt")) != NULL;
  double at = archiving_now ? 0 : parse_time(json_string_value(json_object_get(status, "archivedAt")));
  /* Archived without a readable archivedAt (archiving now, or a status edited by hand): the
   * retention starts now, never in the past. */
  out->archived_at = at > 0 ? at : now;
  out->purge_after = out->archived_at + (double)rules->archived_data_days * 86400.0;
  out->due = out->purged || now >= out->purge_after;
}

int tn_archive_check_restore(const json_t *tenant_obj, struct tn_lifecycle_plan *lp, struct tn_error *err) {
  bool restore = false;
  for (int i = 0; i < lp->n_steps; i++)
    restore |= lp->steps[i].action == TN_ACTION_RESTORE;
  if (!restore)
    return 0;
  const json_t *archive = archive_status(tenant_obj);
  const char *purged = json_string_value(json_object_get(archive, "purgedAt"));
  if (archive && !purged)
    return 0;
  lp->n_steps = 0;
  lp->refused = true;
  lp->next = TN_STATE_ARCHIVED;
  if (!archive)
    /* Every archive the operator makes records status.archive in the same write as the state: a
     * status that says Archived without it was written by someone else, and is not acted on. */
    tn_error_set(
        err, TN_EINVALID,
        "transition Archived -> Active (restore) refused: status.state says Archived but the operator "
        "never archived this tenant (status.archive is missing; the status was rewritten by hand), "
        "so there is nothing to restore and nothing is changed");
  else
    tn_error_set(
        err, TN_EINVALID,
        "transition Archived -> Active (restore) is not possible: the archived data was purged at %s "
        "when its retention (TenancyPolicy spec.retention.archivedData) ended; only Deleted is left "
        "(set spec.state to Deleted with spec.deletionConfirmation), or create a new tenant",
        purged);
  if (err)
    snprintf(err->reason, sizeof err->reason, "%s", TN_REASON_TRANSITION_REFUSED);
  return TN_EINVALID;
}

void tn_archive_status_set(json_t *status, const struct tn_archive_schedule *s, bool purge_complete,
                           const char *now_rfc3339) {
  if (!status)
    return;
  if (!s->archived) {
    json_object_del(status, "archive");
    return;
  }
  char after[32];
  tn_time_rfc3339(s->purge_after, after, sizeof after);
  json_t *old = json_object_get(status, "archive");
  const char *purged_at = json_string_value(json_object_get(old, "purgedAt"));
  json_t *a = json_pack("{s:i, s:s}", "retentionDays", s->retention_days, "purgeAfter", after);
  if (!a)
    return;
  if (purged_at)
    json_object_set_new(a, "purgedAt", json_string(purged_at));
  else if (purge_complete && now_rfc3339)
    json_object_set_new(a, "purgedAt", json_string(now_rfc3339));
  if (purged_at || purge_complete) {
    /* Once purged the schedule is history: keep what it was when the purge happened. */
    json_t *kept = json_object_get(old, "purgeAfter");
    if (json_string_value(kept))
      json_object_set(a, "purgeAfter", kept);
    json_t *kd = json_object_get(old, "retentionDays");
    if (json_is_integer(kd))
      json_object_set(a, "retentionDays", kd);
  }
  json_object_set_new(status, "archive", a);
}
