/* test_admission.c - the admission review of Tenants without a server: AdmissionReview parsing
 * and response shape, every decision (policy, external ids, delete guard, ratcheting, fail
 * closed), the hooks, the external-id index, and the webhook configuration and generated
 * certificate. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "converge/admission.h"
#include "kube/store.h"
#include "util/error.h"

/* ---- fake lookups ------------------------------------------------------------------------------ */

static json_t *g_policies, *g_regions, *g_tenants;
static int g_fail; /* make every lookup fail with this code */

static json_t *load(const char *text) {
  json_error_t je;
  json_t *v = json_loads(text, 0, &je);
  cr_assert_not_null(v, "bad JSON in the test: %s: %s", je.text, text);
  return v;
}

static int list_policies(void *ud, json_t **out, struct tn_error *err) {
  if (g_fail)
    return tn_error_set(err, g_fail, "the TenancyPolicy cache has not synced yet");
  *out = json_incref(g_policies);
  return 0;
}

static int list_regions(void *ud, json_t **out, struct tn_error *err) {
  *out = json_incref(g_regions);
  return 0;
}

static int by_external_id(void *ud, const char *system, const char *id, json_t **out, struct tn_error *err) {
  if (g_fail)
    return tn_error_set(err, g_fail, "the Tenant cache has not synced yet");
  *out = json_array();
  size_t i;
  json_t *t;
  json_array_foreach(g_tenants, i, t) {
    json_t *v = json_object_get(json_object_get(json_object_get(t, "spec"), "externalIds"), system);
    if (json_is_string(v) && strcmp(json_string_value(v), id) == 0)
      json_array_append(*out, t);
  }
  return 0;
}

static const struct tn_admission_lookups LOOKUPS = {
    .list_policies = list_policies, .list_regions = list_regions, .tenants_by_external_id = by_external_id};

/* ---- recording hooks ----------------------------------------------------------------------------- */

struct seen {
  int admitted, denied;
  char actor[128], uid[64], op[16], name[64];
  bool allowed, dry_run, has_object, has_old;
};
static struct seen g_seen;

static void record(const struct tn_admission_record *r) {
  snprintf(g_seen.actor, sizeof g_seen.actor, "%s", r->actor);
  snprintf(g_seen.uid, sizeof g_seen.uid, "%s", r->request_uid);
  snprintf(g_seen.op, sizeof g_seen.op, "%s", r->operation);
  snprintf(g_seen.name, sizeof g_seen.name, "%s", r->name);
  g_seen.allowed = r->allowed;
  g_seen.dry_run = r->dry_run;
  g_seen.has_object = r->object != NULL;
  g_seen.has_old = r->old_object != NULL;
}
static void on_admitted(void *ud, const struct tn_admission_record *r) {
  g_seen.admitted++;
  record(r);
}
static void on_denied(void *ud, const struct tn_admission_record *r) {
  g_seen.denied++;
  cr_assert(r->message && *r->message);
  record(r);
}
static const struct tn_admission_hooks HOOKS = {on_admitted, on_denied, NULL};

/* ---- fixtures --------------------------------------------------------------------------------------- */

#define EU_POLICY                                                                                            \
  "{\"metadata\":{\"name\":\"eu-residency\"},\"spec\":{\"residency\":[{\"flag\":\"eu-only\","                \
  "\"allowedRegions\":"                                                                                      \
  "[\"eu-west-1\",\"eu-central-1\"]}]}}"
#define LIFECYCLE_POLICY                                                                                     \
  "{\"metadata\":{\"name\":\"lifecycle\"},\"spec\":{\"allowedActions\":[{\"action\":\"activate\"},{"         \
  "\"action\":"                                                                                              \
  "\"suspend\",\"plans\":[\"starter\",\"standard\"]},{\"action\":\"resume\"},{\"action\":\"archive\"},"      \
  "{\"action\":\"delete\",\"plans\":[\"starter\"]}]}}"
#define REGIONS                                                                                              \
  "[{\"metadata\":{\"name\":\"eu-west-1\"},\"spec\":{\"available\":true,\"isolationModes\":[\"shared\"]}},"  \
  "{\"metadata\":{\"name\":\"us-east-1\"},\"spec\":{\"available\":true,\"isolationModes\":[\"shared\"]}}]"

static void setup(void) {
  g_policies = load("[" EU_POLICY "," LIFECYCLE_POLICY "]");
  g_regions = load(REGIONS);
  g_tenants =
      load("[{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"standard\",\"state\":\"Active\","
           "\"externalIds\":{\"billing\":\"cus_8TzQ\"}}},{\"metadata\":{\"name\":\"gone\"},\"spec\":{"
           "\"plan\":\"standard\",\"state\":\"Deleted\",\"deletionConfirmation\":\"gone\",\"externalIds\":"
           "{\"billing\":\"cus_old\"}}}]");
  g_fail = 0;
  memset(&g_seen, 0, sizeof g_seen);
}

static void teardown(void) {
  json_decref(g_policies);
  json_decref(g_regions);
  json_decref(g_tenants);
}

TestSuite(admission, .init = setup, .fini = teardown);

static char *tenant_json(const char *name, const char *spec) {
  char *s = malloc(8192);
  snprintf(s, 8192,
           "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\","
           "\"generation\":1},\"spec\":%s}",
           name, spec);
  return s;
}

/* An AdmissionReview request for tenants; object and old are JSON text or NULL. */
static char *review_request(const char *op, const char *object, const char *old, bool dry_run) {
  char *s = malloc(32768);
  snprintf(
      s, 32768,
      "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":"
      "\"705ab4f5-6393-11e8-b7cc-42010a800002\",\"kind\":{\"group\":\"tenancy.dev\",\"version\":\"v1alpha1\","
      "\"kind\":\"Tenant\"},\"resource\":{\"group\":\"tenancy.dev\",\"version\":\"v1alpha1\",\"resource\":"
      "\"tenants\"},\"requestKind\":{\"group\":\"tenancy.dev\",\"version\":\"v1alpha1\",\"kind\":\"Tenant\"},"
      "\"name\":\"x\",\"operation\":\"%s\",\"userInfo\":{\"username\":\"alice@example.com\",\"groups\":["
      "\"system:authenticated\"]},\"object\":%s,\"oldObject\":%s,\"dryRun\":%s,\"options\":{}}}",
      op, object ? object : "null", old ? old : "null", dry_run ? "true" : "false");
  return s;
}

/* Reviews and checks the envelope; returns the response object (new reference). */
static json_t *run(const char *op, const char *object, const char *old, bool dry_run) {
  char *req = review_request(op, object, old, dry_run);
  json_t *resp = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_admission_review(req, strlen(req), &LOOKUPS, &HOOKS, &resp, &err), 0, "%s", err.message);
  free(req);
  cr_assert_str_eq(json_string_value(json_object_get(resp, "apiVersion")), "admission.k8s.io/v1");
  cr_assert_str_eq(json_string_value(json_object_get(resp, "kind")), "AdmissionReview");
  json_t *r = json_object_get(resp, "response");
  cr_assert_str_eq(json_string_value(json_object_get(r, "uid")), "705ab4f5-6393-11e8-b7cc-42010a800002",
                   "uid echoed");
  cr_assert(json_is_boolean(json_object_get(r, "allowed")));
  json_incref(r);
  json_decref(resp);
  return r;
}

static bool allowed(const json_t *r) { return json_is_true(json_object_get(r, "allowed")); }
static const char *message(const json_t *r) {
  return json_string_value(json_object_get(json_object_get(r, "status"), "message"));
}
static int code(const json_t *r) {
  return (int)json_integer_value(json_object_get(json_object_get(r, "status"), "code"));
}

/* ---- the envelope ---------------------------------------------------------------------------------- */

Test(admission, refuses_what_is_not_an_admission_review) {
  const char *bad[] = {
      "not json", "{}",
      "{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\","
      "\"request\":{\"uid\":\"u\"}}",
      "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{}}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *resp = (json_t *)1;
    struct tn_error err = {0};
    cr_assert_eq(tn_admission_review(bad[i], strlen(bad[i]), &LOOKUPS, &HOOKS, &resp, &err), TN_EINVALID,
                 "%s", bad[i]);
    cr_assert_null(resp);
    cr_assert(err.message[0]);
  }
  cr_assert_eq(g_seen.admitted + g_seen.denied, 0);
}

/* A request with one field of request replaced (value is JSON). */
static char *with_request_field(const char *req, const char *path1, const char *path2, const char *value) {
  json_t *doc = load(req);
  json_t *r = json_object_get(doc, "request");
  json_error_t je;
  json_t *v = json_loads(value, JSON_DECODE_ANY, &je);
  cr_assert_not_null(v, "%s", je.text);
  if (path2)
    json_object_set_new(json_object_get(r, path1), path2, v);
  else
    json_object_set_new(r, path1, v);
  char *s = json_dumps(doc, 0);
  json_decref(doc);
  return s;
}

Test(admission, other_resources_and_subresources_pass_untouched) {
  char *t = tenant_json("acme", "{\"plan\":\"enterprise\",\"state\":\"Active\"}");
  char *base = review_request("DELETE", NULL, t, false); /* would be refused for a tenant */
  char *reqs[] = {with_request_field(base, "resource", "resource", "\"plans\""),
                  with_request_field(base, "subResource", NULL, "\"status\""),
                  with_request_field(base, "operation", NULL, "\"CONNECT\"")};
  for (int i = 0; i < 3; i++) {
    json_t *resp = NULL;
    cr_assert_eq(tn_admission_review(reqs[i], strlen(reqs[i]), &LOOKUPS, &HOOKS, &resp, NULL), 0);
    cr_assert(allowed(json_object_get(resp, "response")), "%s", reqs[i]);
    json_decref(resp);
    free(reqs[i]);
  }
  free(base);
  free(t);
  cr_assert_eq(g_seen.admitted + g_seen.denied, 0, "hooks hear only of tenant reviews");
}

/* ---- create ------------------------------------------------------------------------------------------ */

Test(admission, compliant_tenant_is_admitted_and_the_hook_hears_the_actor) {
  char *t =
      tenant_json("initech", "{\"plan\":\"standard\",\"state\":\"Active\",\"residency\":{\"allowedRegions\":"
                             "[\"eu-west-1\"],\"flags\":[\"eu-only\"]},\"externalIds\":{\"billing\":"
                             "\"cus_new\"}}");
  json_t *r = run("CREATE", t, NULL, false);
  cr_assert(allowed(r));
  cr_assert_null(json_object_get(r, "status"));
  cr_assert_null(json_object_get(r, "warnings"));
  cr_assert_eq(g_seen.admitted, 1);
  cr_assert_str_eq(g_seen.actor, "alice@example.com");
  cr_assert_str_eq(g_seen.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
  cr_assert_str_eq(g_seen.op, "CREATE");
  cr_assert_str_eq(g_seen.name, "initech");
  cr_assert(g_seen.has_object);
  cr_assert_not(g_seen.has_old);
  json_decref(r);

  /* a dry run is decided the same, but it is not admitted into the audit trail */
  r = run("CREATE", t, NULL, true);
  cr_assert(allowed(r));
  cr_assert_eq(g_seen.admitted, 1);
  json_decref(r);
  free(t);
}

Test(admission, residency_violation_is_denied_with_the_evaluators_message) {
  char *t = tenant_json("acme2", "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"us-east-1\"],"
                                 "\"flags\":[\"eu-only\"]}}");
  json_t *r = run("CREATE", t, NULL, false);
  cr_assert_not(allowed(r));
  json_t *st = json_object_get(r, "status");
  cr_assert_str_eq(json_string_value(json_object_get(st, "status")), "Failure");
  cr_assert_eq(code(r), 403);
  cr_assert_str_eq(json_string_value(json_object_get(st, "reason")), "Forbidden");
  cr_assert_str_eq(message(r),
                   "TenancyPolicy eu-residency: residency flag eu-only allows regions [eu-west-1, "
                   "eu-central-1]; spec.residency.allowedRegions has us-east-1: remove it or drop the flag");
  cr_assert_eq(g_seen.denied, 1);
  cr_assert_eq(g_seen.admitted, 0);
  cr_assert_str_eq(g_seen.actor, "alice@example.com");
  json_decref(r);
  free(t);
}

Test(admission, reserved_groups_and_policy_group_patterns_are_denied) {
  char *t = tenant_json("acme2", "{\"plan\":\"standard\",\"identity\":{\"groupBindings\":["
                                 "{\"group\":\"system:authenticated\",\"role\":\"tenant-admin\"}]}}");
  json_t *r = run("CREATE", t, NULL, false);
  cr_assert_not(allowed(r));
  cr_assert_eq(code(r), 403);
  cr_assert(
      strstr(message(r), "spec.identity.groupBindings[0].group: group system:authenticated is reserved"),
      "%s", message(r));
  json_decref(r);
  free(t);
  /* a policy restricting groups to the tenant's own prefix */
  json_array_append_new(g_policies, load("{\"metadata\":{\"name\":\"idp\"},\"spec\":{\"identity\":{"
                                         "\"allowedGroupPatterns\":[\"{tenant}-*\"]}}}"));
  t = tenant_json("acme2", "{\"plan\":\"standard\",\"identity\":{\"groupBindings\":["
                           "{\"group\":\"globex-admins\",\"role\":\"tenant-admin\"}]}}");
  r = run("CREATE", t, NULL, false);
  cr_assert_not(allowed(r));
  cr_assert(strstr(message(r), "TenancyPolicy idp: spec.identity.allowedGroupPatterns [{tenant}-*] does not "
                               "match group globex-admins"),
            "%s", message(r));
  json_decref(r);
  free(t);
  t = tenant_json("acme2", "{\"plan\":\"standard\",\"identity\":{\"groupBindings\":["
                           "{\"group\":\"acme2-admins\",\"role\":\"tenant-admin\"}]}}");
  r = run("CREATE", t, NULL, false);
  cr_assert(allowed(r), "%s", message(r));
  json_decref(r);
  free(t);
}

Test(admission, reserved_break_glass_subjects_are_denied_unless_already_held) {
  static const char spec[] =
      "{\"plan\":\"standard\",\"breakGlass\":[{\"id\":\"inc-1\",\"%s\":\"%s\",\"role\":\"tenant-admin\","
      "\"reason\":\"INC-1\",\"expiresAt\":\"2030-01-01T00:00:00Z\"}]}";
  char buf[1024];
  snprintf(buf, sizeof buf, spec, "user", "system:serviceaccount:kube-system:default");
  char *t = tenant_json("acme2", buf);
  json_t *r = run("CREATE", t, NULL, false);
  cr_assert_not(allowed(r));
  cr_assert_eq(code(r), 422);
  cr_assert(
      strstr(message(r), "spec.breakGlass[0].user: system:serviceaccount:kube-system:default is reserved"),
      "%s", message(r));
  json_decref(r);
  snprintf(buf, sizeof buf, spec, "group", "system:masters");
  char *t2 = tenant_json("acme2", buf);
  r = run("CREATE", t2, NULL, false);
  cr_assert_not(allowed(r));
  cr_assert(strstr(message(r), "spec.breakGlass[0].group: system:masters is reserved"), "%s", message(r));
  json_decref(r);
  /* an update that keeps the same (already stored) request is not blocked by it */
  char *t3 = tenant_json("acme2", buf);
  json_t *newer = load(t3);
  json_object_set_new(json_object_get(newer, "spec"), "displayName", json_string("Acme 2"));
  char *t4 = json_dumps(newer, 0);
  r = run("UPDATE", t4, t2, false);
  cr_assert(allowed(r), "%s", message(r));
  json_decref(r);
  json_decref(newer);
  free(t4);
  free(t3);
  free(t2);
  free(t);
}

Test(admission, duplicate_external_id_names_the_other_tenant) {
  char *t = tenant_json("initech", "{\"plan\":\"standard\",\"externalIds\":{\"billing\":\"cus_8TzQ\"}}");
  json_t *r = run("CREATE", t, NULL, false);
  cr_assert_not(allowed(r));
  cr_assert_eq(code(r), 403);
  cr_assert_str_eq(message(r),
                   "spec.externalIds.billing: cus_8TzQ is already the billing id of tenant acme; "
                   "external ids are unique per system across tenants: correct it here, or remove it "
                   "from that tenant first");
  json_decref(r);
  free(t);
  /* a Deleted tenant's ids are released */
  t = tenant_json("initech", "{\"plan\":\"standard\",\"externalIds\":{\"billing\":\"cus_old\"}}");
  r = run("CREATE", t, NULL, false);
  cr_assert(allowed(r), "%s", message(r));
  json_decref(r);
  free(t);
}

Test(admission, creating_straight_into_a_state_checks_every_step) {
  /* Active on enterprise: activate is allowed; Suspended needs suspend, which enterprise lacks */
  char *t = tenant_json("bigco", "{\"plan\":\"enterprise\",\"state\":\"Active\"}");
  json_t *r = run("CREATE", t, NULL, false);
  cr_assert(allowed(r), "%s", message(r));
  json_decref(r);
  free(t);
  t = tenant_json("bigco", "{\"plan\":\"enterprise\",\"state\":\"Suspended\"}");
  r = run("CREATE", t, NULL, false);
  cr_assert_not(allowed(r));
  cr_assert(strstr(message(r), "TenancyPolicy lifecycle: allowedActions does not allow suspend (Active -> "
                               "Suspended) for a tenant on plan enterprise"),
            "%s", message(r));
  json_decref(r);
  free(t);
}

Test(admission, several_violations_in_one_message) {
  char *t = tenant_json("bigco",
                        "{\"plan\":\"enterprise\",\"state\":\"Suspended\",\"residency\":{\"allowedRegions\":"
                        "[\"us-east-1\"],\"flags\":[\"eu-only\"]},\"externalIds\":{\"billing\":"
                        "\"cus_8TzQ\"},\"quotaOverrides\":{\"pods\":100}}");
  json_t *r = run("CREATE", t, NULL, false);
  cr_assert_not(allowed(r));
  const char *m = message(r);
  cr_assert(strncmp(m, "4 policy violations: (1) TenancyPolicy eu-residency", 51) == 0, "%s", m);
  cr_assert(strstr(m, "(2) TenancyPolicy lifecycle: allowedActions does not allow suspend"), "%s", m);
  cr_assert(strstr(m, "(3) spec.quotaOverrides.pods: no TenancyPolicy permits overriding pods"), "%s", m);
  cr_assert(strstr(m, "(4) spec.externalIds.billing: cus_8TzQ is already the billing id of tenant acme"),
            "%s", m);
  json_decref(r);
  free(t);
}

Test(admission, unreadable_tenant_is_invalid) {
  char *t = tenant_json("acme3", "{\"plan\":\"standard\",\"environments\":[\"Prod\"]}");
  json_t *r = run("CREATE", t, NULL, false);
  cr_assert_not(allowed(r));
  cr_assert_eq(code(r), 422);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "status"), "reason")), "Invalid");
  cr_assert(strstr(message(r), "the new tenant cannot be read: spec.environments[0]"), "%s", message(r));
  json_decref(r);
  free(t);
}

Test(admission, lookups_failing_fail_closed_with_503) {
  g_fail = TN_EUNAVAILABLE;
  char *t = tenant_json("initech", "{\"plan\":\"standard\"}");
  json_t *r = run("CREATE", t, NULL, false);
  cr_assert_not(allowed(r));
  cr_assert_eq(code(r), 503);
  cr_assert(strstr(message(r), "cannot check this tenant against its policies right now (reading "
                               "TenancyPolicies: the TenancyPolicy cache has not synced yet); retry"),
            "%s", message(r));
  json_decref(r);
  free(t);
}

/* ---- update ------------------------------------------------------------------------------------------- */

Test(admission, transition_forbidden_by_policy) {
  char *old = tenant_json("bigco", "{\"plan\":\"enterprise\",\"state\":\"Active\"}");
  char *t = tenant_json("bigco", "{\"plan\":\"enterprise\",\"state\":\"Suspended\"}");
  json_t *r = run("UPDATE", t, old, false);
  cr_assert_not(allowed(r));
  cr_assert_eq(code(r), 403);
  cr_assert(
      strstr(message(r), "does not allow suspend (Active -> Suspended) for a tenant on plan enterprise"),
      "%s", message(r));
  cr_assert_str_eq(g_seen.op, "UPDATE");
  json_decref(r);
  free(old);
  free(t);
  old = tenant_json("smallco", "{\"plan\":\"standard\",\"state\":\"Active\"}");
  t = tenant_json("smallco", "{\"plan\":\"standard\",\"state\":\"Suspended\"}");
  r = run("UPDATE", t, old, false);
  cr_assert(allowed(r), "%s", message(r));
  cr_assert_eq(g_seen.admitted, 1);
  cr_assert(g_seen.has_object && g_seen.has_old);
  json_decref(r);
  free(old);
  free(t);
}

Test(admission, metadata_only_changes_and_finalizing_tenants_are_never_blocked) {
  /* the stored tenant violates residency (a policy added later); labels and finalizers still change */
  char *old =
      tenant_json("legacy", "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"us-east-1\"],"
                            "\"flags\":[\"eu-only\"]}}");
  json_t *o = load(old);
  json_t *n = json_deep_copy(o);
  json_object_set_new(json_object_get(n, "metadata"), "finalizers",
                      json_pack("[s]", "tenancy.dev/finalizer"));
  char *t = json_dumps(n, 0);
  json_t *r = run("UPDATE", t, old, false);
  cr_assert(allowed(r), "%s", message(r));
  json_decref(r);
  free(t);
  /* being deleted: whatever the finalizer removal looks like, it passes */
  json_object_set_new(json_object_get(n, "metadata"), "deletionTimestamp",
                      json_string("2026-11-27T10:00:00Z"));
  json_object_set_new(json_object_get(n, "spec"), "displayName", json_string("changed"));
  t = json_dumps(n, 0);
  r = run("UPDATE", t, old, false);
  cr_assert(allowed(r), "%s", message(r));
  json_decref(r);
  free(t);
  json_decref(n);
  json_decref(o);
  free(old);
}

Test(admission, updates_ratchet_existing_violations_into_warnings) {
  char *old =
      tenant_json("legacy", "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"us-east-1\"],"
                            "\"flags\":[\"eu-only\"]}}");
  char *t = tenant_json("legacy", "{\"plan\":\"standard\",\"displayName\":\"Legacy Inc\",\"residency\":"
                                  "{\"allowedRegions\":[\"us-east-1\"],\"flags\":[\"eu-only\"]}}");
  json_t *r = run("UPDATE", t, old, false);
  cr_assert(allowed(r), "%s", message(r));
  json_t *w = json_object_get(r, "warnings");
  cr_assert_eq(json_array_size(w), 1);
  cr_assert(strstr(json_string_value(json_array_get(w, 0)),
                   "already violated before this change: TenancyPolicy "
                   "eu-residency"));
  json_decref(r);
  free(t);
  /* adding another violating region is refused */
  t = tenant_json("legacy",
                  "{\"plan\":\"standard\",\"residency\":{\"allowedRegions\":[\"us-east-1\",\"us-west-2\"],"
                  "\"flags\":[\"eu-only\"]}}");
  r = run("UPDATE", t, old, false);
  cr_assert_not(allowed(r));
  json_decref(r);
  free(t);
  free(old);
}

Test(admission, external_ids_are_checked_only_when_they_change) {
  /* acme itself keeps its id */
  char *old = tenant_json("acme", "{\"plan\":\"standard\",\"state\":\"Active\",\"externalIds\":{\"billing\":"
                                  "\"cus_8TzQ\"}}");
  char *t =
      tenant_json("acme", "{\"plan\":\"standard\",\"state\":\"Active\",\"displayName\":\"A\",\"externalIds\":"
                          "{\"billing\":\"cus_8TzQ\"}}");
  json_t *r = run("UPDATE", t, old, false);
  cr_assert(allowed(r), "%s", message(r));
  json_decref(r);
  free(old);
  free(t);
  /* another tenant taking it */
  old = tenant_json("initech", "{\"plan\":\"standard\"}");
  t = tenant_json("initech", "{\"plan\":\"standard\",\"externalIds\":{\"billing\":\"cus_8TzQ\"}}");
  r = run("UPDATE", t, old, false);
  cr_assert_not(allowed(r));
  cr_assert(strstr(message(r), "billing id of tenant acme"), "%s", message(r));
  json_decref(r);
  free(old);
  free(t);
}

/* ---- delete -------------------------------------------------------------------------------------------- */

Test(admission, delete_guard) {
  char *active = tenant_json("acme", "{\"plan\":\"standard\",\"state\":\"Active\"}");
  json_t *r = run("DELETE", NULL, active, false);
  cr_assert_not(allowed(r));
  cr_assert_eq(code(r), 403);
  cr_assert_str_eq(message(r),
                   "tenant acme is Active: kubectl delete of a tenant is refused unless it is Draft, "
                   "Archived or Deleted, so that a live tenant's data is never removed by accident; "
                   "archive it first (kubectl patch tenant acme --type=merge -p "
                   "'{\"spec\":{\"state\":\"Archived\"}}'), then delete it");
  cr_assert_str_eq(g_seen.op, "DELETE");
  cr_assert_str_eq(g_seen.name, "acme");
  cr_assert(g_seen.has_old && !g_seen.has_object);
  json_decref(r);
  free(active);

  char *susp = tenant_json("acme", "{\"plan\":\"standard\",\"state\":\"Suspended\"}");
  r = run("DELETE", NULL, susp, false);
  cr_assert_not(allowed(r));
  json_decref(r);
  free(susp);

  /* Draft and Archived: the delete action, so allowedActions applies (delete only for starter) */
  char *draft = tenant_json("tiny", "{\"plan\":\"starter\",\"state\":\"Draft\"}");
  r = run("DELETE", NULL, draft, false);
  cr_assert(allowed(r), "%s", message(r));
  json_decref(r);
  free(draft);
  char *archived = tenant_json("big", "{\"plan\":\"standard\",\"state\":\"Archived\"}");
  r = run("DELETE", NULL, archived, false);
  cr_assert_not(allowed(r));
  cr_assert(strstr(message(r), "does not allow delete (Archived -> Deleted) for a tenant on plan standard"),
            "%s", message(r));
  json_decref(r);
  free(archived);

  /* a tombstone's record, and a tenant already being deleted */
  char *tomb =
      tenant_json("gone", "{\"plan\":\"standard\",\"state\":\"Deleted\",\"deletionConfirmation\":\"gone\"}");
  r = run("DELETE", NULL, tomb, false);
  cr_assert(allowed(r));
  json_decref(r);
  free(tomb);
  json_t *o =
      load("{\"metadata\":{\"name\":\"acme\",\"deletionTimestamp\":\"2026-11-27T10:00:00Z\"},\"spec\":"
           "{\"plan\":\"standard\",\"state\":\"Active\"}}");
  char *t = json_dumps(o, 0);
  r = run("DELETE", NULL, t, false);
  cr_assert(allowed(r));
  json_decref(r);
  free(t);
  json_decref(o);
}

/* ---- the index and the configuration ------------------------------------------------------------------ */

Test(admission, external_id_index_values) {
  struct tn_store *s = tn_store_new();
  struct tn_error err = {0};
  cr_assert_eq(tn_store_add_index(s, TN_INDEX_EXTERNAL_ID, tn_admission_external_id_index, NULL, &err), 0);
  json_t *a =
      load("{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"externalIds\":{\"billing\":\"cus=1\",\"crm\":"
           "\"c\"}}}");
  json_t *b = load("{\"metadata\":{\"name\":\"globex\"},\"spec\":{}}");
  cr_assert_eq(tn_store_upsert(s, a, &err), 0);
  cr_assert_eq(tn_store_upsert(s, b, &err), 0);
  json_t *hit = tn_store_by_index(s, TN_INDEX_EXTERNAL_ID, "billing=cus=1", &err);
  cr_assert_eq(json_array_size(hit), 1, "the first '=' splits: ids may hold '='");
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(json_array_get(hit, 0), "metadata"), "name")),
      "acme");
  json_decref(hit);
  hit = tn_store_by_index(s, TN_INDEX_EXTERNAL_ID, "crm=c", &err);
  cr_assert_eq(json_array_size(hit), 1);
  json_decref(hit);
  json_decref(a);
  json_decref(b);
  tn_store_free(s);
}

static char *sh(const char *cmd) {
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  char *buf = calloc(1, 65536);
  size_t n = fread(buf, 1, 65535, p);
  buf[n] = '\0';
  pclose(p);
  return buf;
}

Test(admission, configuration_and_generated_certificate) {
  char dir[] = "/tmp/test-admission-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  json_t *sel = load("{\"matchLabels\":{\"suite\":\"x\"}}");
  struct tn_admission_config cfg = {.bind_address = "127.0.0.1:0",
                                    .cert_dir = dir,
                                    .object_selector = sel,
                                    .url = "https://127.0.0.1:9443/validate-tenancy-dev-v1alpha1"};
  struct tn_admission *adm = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_admission_new(&cfg, &adm, &err), 0, "%s", err.message);
  json_decref(sel);
  json_t *c = tn_admission_configuration(adm);
  cr_assert_str_eq(json_string_value(json_object_get(c, "kind")), "ValidatingWebhookConfiguration");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "metadata"), "name")),
                   "tenancy-operator");
  json_t *w = json_array_get(json_object_get(c, "webhooks"), 0);
  cr_assert_eq(json_array_size(json_object_get(c, "webhooks")), 1);
  cr_assert_str_eq(json_string_value(json_object_get(w, "name")), "tenants.tenancy.dev");
  cr_assert_str_eq(json_string_value(json_object_get(w, "failurePolicy")), "Fail");
  cr_assert_str_eq(json_string_value(json_object_get(w, "sideEffects")), "None");
  cr_assert_str_eq(json_string_value(json_object_get(w, "matchPolicy")), "Equivalent");
  cr_assert_eq(json_integer_value(json_object_get(w, "timeoutSeconds")), 5);
  cr_assert_str_eq(json_string_value(json_array_get(json_object_get(w, "admissionReviewVersions"), 0)), "v1");
  json_t *rule = json_array_get(json_object_get(w, "rules"), 0);
  cr_assert_eq(json_array_size(json_object_get(w, "rules")), 1);
  char *rs = json_dumps(rule, JSON_SORT_KEYS | JSON_COMPACT);
  cr_assert_str_eq(
      rs,
      "{\"apiGroups\":[\"tenancy.dev\"],\"apiVersions\":[\"v1alpha1\"],\"operations\":[\"CREATE\","
      "\"UPDATE\",\"DELETE\"],\"resources\":[\"tenants\",\"tenantmigrations\"],\"scope\":\"Cluster\"}",
      "only our tenants (and migrations): never namespaces or pods");
  free(rs);
  json_t *labels = json_object_get(json_object_get(w, "objectSelector"), "matchLabels");
  cr_assert_str_eq(json_string_value(json_object_get(labels, "suite")), "x");
  json_t *cc = json_object_get(w, "clientConfig");
  cr_assert_str_eq(json_string_value(json_object_get(cc, "url")),
                   "https://127.0.0.1:9443/validate-tenancy-dev-v1alpha1");
  /* caBundle is the base64 of the CA that signed the serving certificate */
  char path[512], cmd[2048];
  snprintf(path, sizeof path, "%s/bundle.b64", dir);
  FILE *f = fopen(path, "w");
  fputs(json_string_value(json_object_get(cc, "caBundle")), f);
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "base64 -d %s/bundle.b64 > %s/bundle.pem && cmp %s/bundle.pem %s/ca.crt && "
           "openssl verify -CAfile %s/bundle.pem %s/tls.crt && openssl x509 -in %s/tls.crt -noout -ext "
           "subjectAltName,extendedKeyUsage && stat -c %%a %s/tls.key 2>&1",
           dir, dir, dir, dir, dir, dir, dir, dir);
  char *out = sh(cmd);
  cr_assert(strstr(out, "tls.crt: OK"), "%s", out);
  cr_assert(strstr(out, "IP Address:127.0.0.1"), "%s", out);
  cr_assert(strstr(out, "TLS Web Server Authentication"), "%s", out);
  cr_assert(strstr(out, "\n600\n"), "the key is private: %s", out);
  cr_assert_eq(strcmp(tn_admission_ca_pem(adm), "") != 0, 1);
  free(out);
  json_decref(c);
  tn_admission_free(adm);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

Test(admission, in_cluster_service_reference_and_dns_names) {
  struct tn_admission_config cfg = {.service_namespace = "tenancy-system",
                                    .service_name = "tenancy-operator-webhook",
                                    .timeout_seconds = 3};
  struct tn_admission *adm = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_admission_new(&cfg, &adm, &err), 0, "%s", err.message);
  json_t *c = tn_admission_configuration(adm);
  json_t *w = json_array_get(json_object_get(c, "webhooks"), 0);
  json_t *svc = json_object_get(json_object_get(w, "clientConfig"), "service");
  cr_assert_str_eq(json_string_value(json_object_get(svc, "name")), "tenancy-operator-webhook");
  cr_assert_str_eq(json_string_value(json_object_get(svc, "namespace")), "tenancy-system");
  cr_assert_str_eq(json_string_value(json_object_get(svc, "path")), "/validate-tenancy-dev-v1alpha1");
  cr_assert_eq(json_integer_value(json_object_get(svc, "port")), 443);
  cr_assert_null(json_object_get(json_object_get(w, "clientConfig"), "url"));
  cr_assert_eq(json_integer_value(json_object_get(w, "timeoutSeconds")), 3);
  json_decref(c);
  tn_admission_free(adm);

  cfg.failure_policy = "Sometimes";
  cr_assert_eq(tn_admission_new(&cfg, &adm, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "Fail or Ignore"), "%s", err.message);
}
