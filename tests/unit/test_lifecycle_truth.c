/* test_lifecycle_truth.c - the pure parts of "a lifecycle that means what it says": which steps
 * need the activation prerequisites, which wait for effects, splitting a plan, the effects'
 * progress, Region capacity against the quotas placed there, drift against propagation. */
#include <criterion/criterion.h>
#include <string.h>

#include "tenancy/capacity.h"
#include "tenancy/drift.h"
#include "tenancy/lifecycle.h"

static struct tn_transition step(enum tn_state from, enum tn_state to, enum tn_action a) {
  struct tn_transition s = {.from = from, .to = to, .action = a, .event_reason = tn_action_event_reason(a)};
  snprintf(s.correlation_id, sizeof s.correlation_id, "cid-%d-%d", (int)from, (int)to);
  return s;
}

Test(lifecycle_truth, activation_is_a_move_into_active_from_draft_or_archived) {
  struct tn_transition a = step(TN_STATE_DRAFT, TN_STATE_ACTIVE, TN_ACTION_ACTIVATE);
  struct tn_transition restore = step(TN_STATE_ARCHIVED, TN_STATE_ACTIVE, TN_ACTION_RESUME);
  struct tn_transition resume = step(TN_STATE_SUSPENDED, TN_STATE_ACTIVE, TN_ACTION_RESUME);
  struct tn_transition create = step(TN_STATE_NONE, TN_STATE_DRAFT, TN_ACTION_CREATE);
  struct tn_transition suspend = step(TN_STATE_ACTIVE, TN_STATE_SUSPENDED, TN_ACTION_SUSPEND);
  cr_assert(tn_transition_is_activation(&a));
  cr_assert(tn_transition_is_activation(&restore));
  cr_assert_not(tn_transition_is_activation(&resume), "a resume needs no prerequisites: it was active");
  cr_assert_not(tn_transition_is_activation(&create));
  cr_assert_not(tn_transition_is_activation(&suspend));
  cr_assert_not(tn_transition_has_effects(&create), "Created changes only the status");
  cr_assert(tn_transition_has_effects(&a));
  cr_assert(tn_transition_has_effects(&suspend));
}

Test(lifecycle_truth, a_new_active_tenant_splits_after_created) {
  static char name[] = "acme", uid[] = "u1";
  struct tn_tenant t = {.name = name, .uid = uid, .generation = 1, .state = TN_STATE_ACTIVE};
  struct tn_lifecycle_plan lp, rest;
  struct tn_error err = {0};
  cr_assert_eq(tn_lifecycle_plan(&t, &lp, &err), 0, "%s", err.message);
  cr_assert_eq(lp.n_steps, 2);
  cr_assert_eq(tn_lifecycle_first_activation(&lp), 1);
  cr_assert_eq(tn_lifecycle_first_effect(&lp), 1);
  char activated_cid[37];
  memcpy(activated_cid, lp.steps[1].correlation_id, sizeof activated_cid);
  tn_lifecycle_split(&lp, 1, &rest);
  cr_assert_eq(lp.n_steps, 1);
  cr_assert_eq(lp.next, TN_STATE_DRAFT, "the state reached is the activation's from: Draft");
  cr_assert_eq(rest.n_steps, 1);
  cr_assert_eq(rest.next, TN_STATE_ACTIVE);
  cr_assert_str_eq(rest.steps[0].correlation_id, activated_cid);

  /* The next pass plans Draft -> Active at the same generation: the same correlation id, so the
   * started, failed and succeeded rows of one attempt series share it. */
  t.status_state = TN_STATE_DRAFT;
  cr_assert_eq(tn_lifecycle_plan(&t, &lp, &err), 0);
  cr_assert_eq(lp.n_steps, 1);
  cr_assert_str_eq(lp.steps[0].correlation_id, activated_cid);
}

Test(lifecycle_truth, split_out_of_range_changes_nothing) {
  struct tn_lifecycle_plan lp = {.next = TN_STATE_SUSPENDED, .n_steps = 1};
  lp.steps[0] = step(TN_STATE_ACTIVE, TN_STATE_SUSPENDED, TN_ACTION_SUSPEND);
  struct tn_lifecycle_plan rest = {.n_steps = 7};
  tn_lifecycle_split(&lp, 1, &rest);
  cr_assert_eq(lp.n_steps, 1);
  cr_assert_eq(lp.next, TN_STATE_SUSPENDED);
  cr_assert_eq(rest.n_steps, 7, "rest untouched");
  tn_lifecycle_split(&lp, 0, &rest);
  cr_assert_eq(lp.n_steps, 0);
  cr_assert_eq(lp.next, TN_STATE_ACTIVE, "a suspend not done leaves the tenant Active");
  cr_assert_eq(rest.n_steps, 1);
  cr_assert_eq(tn_lifecycle_first_effect(&lp), -1);
  cr_assert_eq(tn_lifecycle_first_activation(&lp), -1);
}

Test(lifecycle_truth, effects_progress) {
  char why[256];
  struct tn_effect ok[] = {{"NamespacesReady", "True", "Converged", "", false},
                           {"AccessBound", "False", "GroupRefused", "1 group not bound", false}};
  cr_assert_eq(tn_effects_progress(ok, 2, why, sizeof why), TN_PROGRESS_DONE, "%s", why);
  cr_assert_str_eq(why, "");

  struct tn_effect waiting[] = {{"NamespacesReady", "True", "Converged", "", false},
                                {"NetworkIsolated", "Unknown", "Waiting", "waiting for the plan", false},
                                {"QuotaApplied", "False", "Conflict", "someone else's", false}};
  cr_assert_eq(tn_effects_progress(waiting, 3, why, sizeof why), TN_PROGRESS_WAITING);
  cr_assert_str_eq(why, "NetworkIsolated: waiting for the plan", "the first one missing is named");

  struct tn_effect failed[] = {{"NamespacesReady", "False", "Terminating", "being deleted", false},
                               {"DatabaseReady", "False", "ServerUnavailable", "connection refused", true}};
  cr_assert_eq(tn_effects_progress(failed, 2, why, sizeof why), TN_PROGRESS_FAILED);
  cr_assert_str_eq(why, "DatabaseReady: connection refused", "a failure wins over a pending effect");

  struct tn_effect nomsg[] = {{"DatabaseReady", "False", "Pending", NULL, false}};
  cr_assert_eq(tn_effects_progress(nomsg, 1, why, sizeof why), TN_PROGRESS_WAITING);
  cr_assert_str_eq(why, "DatabaseReady: Pending");
  cr_assert_eq(tn_effects_progress(NULL, 0, why, sizeof why), TN_PROGRESS_DONE);
}

/* ---- capacity ---- */

static json_t *region(const char *capacity_json) {
  json_t *r = json_pack("{s:{s:s},s:{s:b}}", "metadata", "name", "eu", "spec", "available", 1);
  if (capacity_json)
    json_object_set_new(json_object_get(r, "spec"), "capacity", json_loads(capacity_json, 0, NULL));
  return r;
}

static json_t *tenant(const char *region_name, const char *state, int n_ns, const char *cpu, const char *mem,
                      int pods) {
  json_t *ns = json_array();
  for (int i = 0; i < n_ns; i++)
    json_array_append_new(ns, json_sprintf("t-%d", i));
  return json_pack("{s:{s:s,s:{s:s},s:o,s:{s:{s:s,s:s,s:s,s:i}}}}", "status", "state", state, "placement",
                   "region", region_name, "namespaces", ns, "derived", "quotas", "cpu", cpu, "memory", mem,
                   "storage", "0", "pods", pods);
}

Test(lifecycle_truth, capacity_absent_is_unlimited) {
  json_t *r = region(NULL);
  struct tn_capacity cap, used = {0}, demand = {0};
  struct tn_error err = {0};
  cr_assert_eq(tn_capacity_parse(r, &cap, &err), 0);
  for (int k = 0; k < TN_CAP_COUNT; k++)
    cr_assert_not(cap.set[k]);
  struct tn_quotas q = {.cpu_milli = 1000000000, .memory_milli = INT64_MAX, .pods = 1000000};
  tn_capacity_add_quotas(&demand, &q, 50);
  cr_assert_eq(tn_capacity_check("eu", &cap, &used, &demand, &err), 0);
  json_decref(r);
  cr_assert_eq(tn_capacity_parse(NULL, &cap, &err), 0, "no region object: unlimited");
}

Test(lifecycle_truth, capacity_counts_a_tenant_scoped_plan_once) {
  /* quotaScope Tenant: status.derived.quotas are the tenant's total, split across namespaces. */
  json_t *a = tenant("eu", "Active", 2, "2", "8Gi", 10);
  json_object_set_new(json_object_get(json_object_get(a, "status"), "derived"), "quotaScope",
                      json_string("Tenant"));
  struct tn_capacity used = {0};
  cr_assert(tn_capacity_add_tenant(&used, a, "eu"));
  cr_assert_eq(used.milli[TN_CAP_CPU], 2000, "counted once, not per namespace: %lld",
               (long long)used.milli[TN_CAP_CPU]);
  cr_assert_eq(used.milli[TN_CAP_PODS], 10000);
  json_decref(a);
}

Test(lifecycle_truth, capacity_counts_placed_tenants_times_environments) {
  json_t *r = region("{\"cpu\":\"10\",\"memory\":\"64Gi\",\"pods\":100}");
  struct tn_capacity cap, used = {0}, demand = {0};
  struct tn_error err = {0};
  cr_assert_eq(tn_capacity_parse(r, &cap, &err), 0, "%s", err.message);
  cr_assert(cap.set[TN_CAP_CPU] && cap.set[TN_CAP_MEMORY] && cap.set[TN_CAP_PODS] &&
            !cap.set[TN_CAP_STORAGE]);
  cr_assert_eq(cap.milli[TN_CAP_CPU], 10000);
  cr_assert_eq(cap.milli[TN_CAP_PODS], 100000);

  json_t *a = tenant("eu", "Active", 2, "2", "8Gi", 10);      /* 4 cpu, 16Gi, 20 pods */
  json_t *s = tenant("eu", "Suspended", 1, "500m", "1Gi", 5); /* 0.5 cpu */
  json_t *other = tenant("us", "Active", 3, "100", "1Ti", 100);
  json_t *draft = tenant("eu", "Draft", 0, "100", "1Ti", 100);
  cr_assert(tn_capacity_add_tenant(&used, a, "eu"));
  cr_assert(tn_capacity_add_tenant(&used, s, "eu"));
  cr_assert_not(tn_capacity_add_tenant(&used, other, "eu"), "another region's tenant");
  cr_assert_not(tn_capacity_add_tenant(&used, draft, "eu"), "a Draft tenant holds nothing");
  cr_assert_eq(used.milli[TN_CAP_CPU], 4500);
  cr_assert_eq(used.milli[TN_CAP_PODS], 25000);

  /* 2 environments of 2 cpu: 4.5 + 4 = 8.5 <= 10 fits. */
  struct tn_quotas q = {.cpu_milli = 2000, .memory_milli = 4LL * 1024 * 1024 * 1024 * 1000, .pods = 10};
  tn_capacity_add_quotas(&demand, &q, 2);
  cr_assert_eq(tn_capacity_check("eu", &cap, &used, &demand, &err), 0, "%s", err.message);

  /* 3 environments: 4.5 + 6 = 10.5 > 10. */
  memset(&demand, 0, sizeof demand);
  tn_capacity_add_quotas(&demand, &q, 3);
  cr_assert_eq(tn_capacity_check("eu", &cap, &used, &demand, &err), TN_EINVALID);
  cr_assert_str_eq(err.reason, TN_REASON_CAPACITY_EXCEEDED);
  cr_assert(
      strstr(err.message, "region eu cannot take the tenant's quotas: cpu needs 6 but 5500m of 10 are free"),
      "%s", err.message);
  cr_assert(strstr(err.message, "raise the Region's spec.capacity"), "%s", err.message);
  cr_assert_null(strstr(err.message, "memory"), "memory fits: %s", err.message);
  json_decref(r);
  json_decref(a);
  json_decref(s);
  json_decref(other);
  json_decref(draft);
}

Test(lifecycle_truth, capacity_bad_quantity_is_named_and_sums_saturate) {
  json_t *r = region("{\"memory\":\"lots\"}");
  struct tn_capacity cap;
  struct tn_error err = {0};
  cr_assert_eq(tn_capacity_parse(r, &cap, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "spec.capacity.memory"), "%s", err.message);
  json_decref(r);
  struct tn_capacity use = {0};
  struct tn_quotas q = {.cpu_milli = INT64_MAX / 2, .memory_milli = 1, .pods = 1};
  tn_capacity_add_quotas(&use, &q, 5);
  cr_assert_eq(use.milli[TN_CAP_CPU], INT64_MAX, "saturates instead of wrapping");
}

/* ---- drift ---- */

Test(lifecycle_truth, drift_is_someone_elses_edit_not_a_plan_change) {
  struct tn_object desired = {.kind = TN_KIND_RESOURCE_QUOTA};
  snprintf(desired.spec_hash, sizeof desired.spec_hash, "%s", "aaaa");
  json_t *edited = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", TN_ANNOTATION_SPEC_HASH, "aaaa");
  json_t *stale = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", TN_ANNOTATION_SPEC_HASH, "bbbb");
  json_t *stripped = json_pack("{s:{}}", "metadata");
  struct tn_change c = {.op = TN_CHANGE_UPDATE, .kind = TN_KIND_RESOURCE_QUOTA, .desired = &desired};
  c.observed = edited;
  cr_assert(tn_change_is_drift(&c), "what we applied is still what we want: someone else changed it");
  c.observed = stale;
  cr_assert_not(tn_change_is_drift(&c), "what we applied was another desired state: a Plan change");
  c.observed = stripped;
  cr_assert(tn_change_is_drift(&c), "our annotation removed: someone else changed it");
  c.op = TN_CHANGE_CREATE;
  cr_assert_not(tn_change_is_drift(&c));
  cr_assert_not(tn_change_is_drift(NULL));
  json_decref(edited);
  json_decref(stale);
  json_decref(stripped);
}
