/* test_breakglass.c - the break-glass step against the real API server: a grant becomes a
 * RoleBinding that `kubectl auth can-i --as` honours, and disappears at expiry; a request no
 * policy allows is denied and binds nothing; an unchanged tenant costs zero writes; the audit
 * hook sees the grant before the binding exists and blocks it when it fails; a cache that is
 * behind never causes a write; someone else's RoleBinding is left alone; status.breakGlass is
 * accepted by the CRD's status schema. No operator runs: the step is called directly. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "converge/reconciler.h"
#include "converge/tenant_breakglass.h"
#include "kube/client.h"
#include "tn_operator.h"
#include "tn_test.h"
#include "util/clock.h"

static struct tn_kube *kube;
static const struct tn_gvr gvr_rolebindings = {"rbac.authorization.k8s.io", "v1", "rolebindings", true};

static void start(void) {
  tn_test_install_api();
  struct tn_kube_config cfg;
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_config_load(tn_test_env("KUBECONFIG"), NULL, &cfg, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_new(&cfg, NULL, &kube, &err), 0, "%s", err.message);
  tn_kube_config_cleanup(&cfg);
}

static void stop(void) {
  tn_kube_free(kube);
  kube = NULL;
}

TestSuite(breakglass, .init = start, .fini = stop, .timeout = 180);

/* ---- the audit hook: records every row; can be told to fail ------------------------------------- */

struct recorder {
  char rows[32][256]; /* "action outcome id why" */
  int n;
  bool fail_started;
  bool binding_existed_at_start; /* a grant's binding was already there when "started" was appended */
  const char *ns;                /* where to look for it */
};

static int record(void *ud, const struct tn_breakglass_event *ev, struct tn_error *err) {
  struct recorder *r = ud;
  if (strcmp(ev->outcome, TN_AUDIT_STARTED) == 0 && strcmp(ev->action, TN_BREAKGLASS_ACTION_GRANT) == 0 &&
      r->ns) {
    char name[128];
    json_t *have = NULL;
    snprintf(name, sizeof name, "break-glass-%s", ev->report->id);
    struct tn_error e = {0};
    if (tn_kube_get(kube, &gvr_rolebindings, r->ns, name, &have, &e) == 0)
      r->binding_existed_at_start = true;
    json_decref(have);
  }
  if (r->fail_started && strcmp(ev->outcome, TN_AUDIT_STARTED) == 0)
    return tn_error_set(err, TN_EUNAVAILABLE, "audit trail unavailable (test)");
  if (r->n < 32) {
    char *details = tn_breakglass_report_details(ev->report);
    cr_assert_not_null(details);
    cr_assert_not_null(strstr(details, ev->report->id));
    free(details);
    snprintf(r->rows[r->n++], sizeof r->rows[0], "%s %s %s%s%s", ev->action, ev->outcome, ev->report->id,
             ev->report->why && strcmp(ev->outcome, TN_AUDIT_REFUSED) != 0 ? " " : "",
             ev->report->why && strcmp(ev->outcome, TN_AUDIT_REFUSED) != 0 ? ev->report->why : "");
  }
  return 0;
}

/* ---- fixtures ------------------------------------------------------------------------------------ */

struct fx {
  char tenant[48], ns[64], user[64], policy[64];
  json_t *obj;      /* the Tenant as read back (metadata.uid) */
  json_t *policies; /* the policies handed to the step */
};

static void sh_ok(const char *what, int rc, char *out) {
  cr_assert_eq(rc, 0, "%s: %s", what, out ? out : "");
  free(out);
}

/* Applies tenant f->tenant (Draft: nothing else acts on it) with spec.breakGlass = requests (a
 * JSON array), and reads it back into f->obj. */
static void apply_tenant(struct fx *f, const char *requests) {
  char *out = NULL;
  int rc =
      tn_test_sh(&out,
                 "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{"
                 "\"name\":\"%s\"},\"spec\":{\"plan\":\"standard\",\"environments\":[\"prod\"],"
                 "\"breakGlass\":%s}}' | kubectl apply -f -",
                 f->tenant, requests);
  sh_ok("applying the tenant", rc, out);
  json_decref(f->obj);
  f->obj = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_get(kube, &tn_gvr_tenants, NULL, f->tenant, &f->obj, &err), 0, "%s", err.message);
}

/* A request for f->user, expiring at now + seconds. */
static char *request(struct fx *f, const char *id, const char *role, double seconds) {
  static char buf[2][512];
  static int k;
  char *b = buf[k++ % 2], when[32];
  tn_time_rfc3339(floor(tn_wall_now()) + seconds, when, sizeof when);
  snprintf(b, 512,
           "[{\"id\":\"%s\",\"user\":\"%s\",\"role\":\"%s\",\"reason\":\"INC-%d: database down\","
           "\"expiresAt\":\"%s\"}]",
           id, f->user, role, (int)getpid(), when);
  return b;
}

/* A TenancyPolicy created in the cluster (so its schema is checked) and read back as the only
 * policy the step sees. spec_json NULL: no policy at all. */
static void set_policy(struct fx *f, const char *spec_json) {
  json_decref(f->policies);
  f->policies = json_array();
  if (!spec_json)
    return;
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\","
                      "\"metadata\":{\"name\":\"%s\"},\"spec\":%s}' | kubectl apply -f -",
                      f->policy, spec_json);
  sh_ok("applying the policy", rc, out);
  static const struct tn_gvr gvr_pol = {"tenancy.dev", "v1alpha1", "tenancypolicies", false};
  json_t *p = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_get(kube, &gvr_pol, NULL, f->policy, &p, &err), 0, "%s", err.message);
  json_array_append_new(f->policies, p);
}

static void setup(struct fx *f) {
  memset(f, 0, sizeof *f);
  tn_test_unique_name(f->tenant, sizeof f->tenant, "bg");
  snprintf(f->ns, sizeof f->ns, "%s-prod", f->tenant);
  snprintf(f->user, sizeof f->user, "%s-oncall@example.com", f->tenant);
  snprintf(f->policy, sizeof f->policy, "%s-policy", f->tenant);
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl create namespace %s", f->ns);
  sh_ok("creating the namespace", rc, out);
  set_policy(f, NULL);
}

static void teardown(struct fx *f) {
  tn_test_sh(NULL,
             "kubectl delete tenant %s --wait=false; kubectl delete namespace %s --wait=false; "
             "kubectl delete tenancypolicy %s --ignore-not-found --wait=false",
             f->tenant, f->ns, f->policy);
  json_decref(f->obj);
  json_decref(f->policies);
}

/* Runs the step as the reconcile would, then writes status.breakGlass as the lead will (through
 * the status subresource: the CRD's status schema must accept it) and reads the tenant back. */
static int step(struct fx *f, const json_t *observed, struct recorder *rec,
                struct tn_breakglass_result *res) {
  const char *const envs[] = {"prod"};
  struct tn_breakglass_step in = {.kube = kube,
                                  .tenant = f->obj,
                                  .environments = envs,
                                  .n_environments = 1,
                                  .policies = f->policies,
                                  .observed = observed,
                                  .now = tn_wall_now(),
                                  .audit = rec ? record : NULL,
                                  .audit_ud = rec};
  struct tn_error err = {0};
  int rc = tn_tenant_breakglass_reconcile(&in, res, &err);
  if (res->status) {
    json_t *body = json_deep_copy(f->obj);
    json_t *st = json_object_get(body, "status");
    if (!st)
      json_object_set_new(body, "status", st = json_object());
    json_object_set(st, "breakGlass", res->status);
    json_t *back = NULL;
    struct tn_error serr = {0};
    cr_assert_eq(tn_kube_update(kube, &tn_gvr_tenants, NULL, body, "status", &back, &serr), 0,
                 "the CRD refused status.breakGlass: %s", serr.message);
    json_decref(body);
    json_decref(f->obj);
    f->obj = back;
  }
  return rc;
}

static bool can_i(struct fx *f, const char *verb_resource) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl auth can-i %s --as='%s' -n %s", verb_resource, f->user, f->ns);
  bool yes = rc == 0 && out && strncmp(out, "yes", 3) == 0;
  cr_assert(rc == 0 || (out && strncmp(out, "no", 2) == 0), "kubectl auth can-i: %s", out ? out : "");
  free(out);
  return yes;
}

static json_t *get_binding(struct fx *f, const char *id) {
  char name[128];
  snprintf(name, sizeof name, "break-glass-%s", id);
  json_t *b = NULL;
  struct tn_error err = {0};
  int rc = tn_kube_get(kube, &gvr_rolebindings, f->ns, name, &b, &err);
  cr_assert(rc == 0 || rc == TN_ENOTFOUND, "%s", err.message);
  return b;
}

static const char *status_state(struct fx *f, const char *id) {
  json_t *arr = json_object_get(json_object_get(f->obj, "status"), "breakGlass");
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e) {
    if (strcmp(json_string_value(json_object_get(e, "id")), id) == 0)
      return json_string_value(json_object_get(e, "state"));
  }
  return NULL;
}

/* The tenant's break-glass bindings as the API server lists them (a cache that is up to date). */
static json_t *live_bindings(struct fx *f) {
  char sel[160];
  snprintf(sel, sizeof sel, "tenancy.dev/tenant=%s,tenancy.dev/break-glass", f->tenant);
  struct tn_list_opts o = {.label_selector = sel};
  json_t *list = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_list(kube, &gvr_rolebindings, NULL, &o, &list, &err), 0, "%s", err.message);
  json_t *items = json_incref(json_object_get(list, "items"));
  json_decref(list);
  return items;
}

/* ---- tests --------------------------------------------------------------------------------------- */

Test(breakglass, granted_then_revoked_at_expiry) {
  struct fx f;
  setup(&f);
  struct recorder rec = {.ns = f.ns};
  set_policy(&f, "{\"breakGlass\":{\"allowed\":true,\"maxDuration\":\"1h\",\"roles\":[\"tenant-admin\"]}}");
  apply_tenant(&f, request(&f, "inc", "tenant-admin", 5));
  cr_assert_not(can_i(&f, "create deployments.apps"), "no access before the grant");

  struct tn_breakglass_result res;
  cr_assert_eq(step(&f, NULL, &rec, &res), 0, "%s", res.problem);
  cr_assert_eq(res.n_granted, 1);
  cr_assert_eq(res.n_revoked, 0);
  cr_assert_eq(res.writes, 1);
  cr_assert_str_eq(res.granted[0].id, "inc");
  cr_assert_str_eq(res.granted[0].subject, f.user);
  cr_assert_str_eq(res.granted[0].role, "tenant-admin");
  cr_assert_eq(res.granted[0].n_namespaces, 1);
  cr_assert(res.requeue_after_s > 0 && res.requeue_after_s <= 5, "requeue after %f", res.requeue_after_s);
  cr_assert_eq(rec.n, 2);
  cr_assert_str_eq(rec.rows[0], "break-glass.grant started inc");
  cr_assert_str_eq(rec.rows[1], "break-glass.grant succeeded inc");
  cr_assert_not(rec.binding_existed_at_start, "the grant was audited before the binding was made");
  cr_assert_str_eq(status_state(&f, "inc"), "Active");
  tn_breakglass_result_cleanup(&res);

  /* The binding as specified. */
  json_t *b = get_binding(&f, "inc");
  cr_assert_not_null(b);
  json_t *meta = json_object_get(b, "metadata"), *labels = json_object_get(meta, "labels");
  cr_assert_str_eq(json_string_value(json_object_get(labels, "tenancy.dev/tenant")), f.tenant);
  cr_assert_str_eq(json_string_value(json_object_get(labels, "tenancy.dev/environment")), "prod");
  cr_assert_str_eq(json_string_value(json_object_get(labels, "tenancy.dev/break-glass")), "inc");
  cr_assert_str_eq(json_string_value(json_object_get(labels, "app.kubernetes.io/managed-by")),
                   "tenancy-operator");
  cr_assert(strstr(json_string_value(json_object_get(json_object_get(meta, "annotations"),
                                                     "tenancy.dev/break-glass-reason")),
                   "database down"));
  cr_assert_str_eq(
      json_string_value(json_object_get(json_array_get(json_object_get(meta, "ownerReferences"), 0), "uid")),
      json_string_value(json_object_get(json_object_get(f.obj, "metadata"), "uid")));
  json_decref(b);
  cr_assert(can_i(&f, "create deployments.apps"), "the grant gives tenant-admin");
  cr_assert(can_i(&f, "get secrets"));
  cr_assert_not(can_i(&f, "create resourcequotas"), "tenant-admin still cannot change quotas");

  /* Nothing changed: zero writes and no audit rows, from the API server and from a cache. */
  cr_assert_eq(step(&f, NULL, &rec, &res), 0, "%s", res.problem);
  cr_assert_eq(res.writes, 0);
  cr_assert_eq(res.n_granted + res.n_revoked + res.n_denied, 0);
  tn_breakglass_result_cleanup(&res);
  json_t *cache = live_bindings(&f);
  cr_assert_eq(step(&f, cache, &rec, &res), 0, "%s", res.problem);
  cr_assert_eq(res.writes, 0);
  tn_breakglass_result_cleanup(&res);
  json_decref(cache);
  cr_assert_eq(rec.n, 2, "no audit row without a change");

  /* At expiry (the requeue the step asked for): revoked, and can-i says no. */
  double expires;
  cr_assert_eq(tn_breakglass_parse_time(
                   json_string_value(json_object_get(
                       json_array_get(json_object_get(json_object_get(f.obj, "status"), "breakGlass"), 0),
                       "expiresAt")),
                   &expires),
               0);
  while (tn_wall_now() < expires + 0.2)
    usleep(200 * 1000);
  cr_assert_eq(step(&f, NULL, &rec, &res), 0, "%s", res.problem);
  cr_assert_eq(res.n_revoked, 1);
  cr_assert_str_eq(res.revoked[0].why, "expired");
  cr_assert_str_eq(res.revoked[0].subject, f.user);
  cr_assert_eq(res.n_granted, 0);
  cr_assert_eq(res.writes, 1);
  cr_assert_eq(res.requeue_after_s, 0, "nothing left to expire");
  cr_assert_str_eq(rec.rows[2], "break-glass.revoke started inc expired");
  cr_assert_str_eq(rec.rows[3], "break-glass.revoke succeeded inc expired");
  cr_assert_str_eq(status_state(&f, "inc"), "Expired");
  tn_breakglass_result_cleanup(&res);
  b = get_binding(&f, "inc");
  cr_assert_null(b, "the binding is gone");
  cr_assert_not(can_i(&f, "create deployments.apps"), "access disappeared at expiry");

  cr_assert_eq(step(&f, NULL, &rec, &res), 0);
  cr_assert_eq(res.writes, 0, "an expired request costs nothing afterwards");
  tn_breakglass_result_cleanup(&res);
  teardown(&f);
}

Test(breakglass, denied_without_an_allowing_policy) {
  struct fx f;
  setup(&f);
  struct recorder rec = {.ns = f.ns};
  set_policy(&f, "{\"encryption\":{\"requireDatabaseTLS\":false}}"); /* a policy, but no breakGlass */
  apply_tenant(&f, request(&f, "inc", "tenant-admin", 600));
  struct tn_breakglass_result res;
  cr_assert_eq(step(&f, NULL, &rec, &res), 0, "%s", res.problem);
  cr_assert_eq(res.n_granted, 0);
  cr_assert_eq(res.writes, 0);
  cr_assert_eq(res.n_denied, 1);
  cr_assert(strstr(res.denied[0].why, "no TenancyPolicy allows break-glass"), "%s", res.denied[0].why);
  cr_assert_eq(rec.n, 1);
  cr_assert_str_eq(rec.rows[0], "break-glass.grant refused inc");
  cr_assert_str_eq(status_state(&f, "inc"), "Denied");
  cr_assert_eq(res.requeue_after_s, 0);
  tn_breakglass_result_cleanup(&res);
  json_t *b = get_binding(&f, "inc");
  cr_assert_null(b, "nothing bound");
  cr_assert_not(can_i(&f, "create deployments.apps"));

  /* Again, with the status the first call wrote: zero writes, refused once. */
  cr_assert_eq(step(&f, NULL, &rec, &res), 0);
  cr_assert_eq(res.writes, 0);
  cr_assert_eq(res.n_denied, 0);
  cr_assert_eq(rec.n, 1);
  tn_breakglass_result_cleanup(&res);

  /* A policy that forbids it outright wins over one that allows it. */
  set_policy(&f, "{\"breakGlass\":{\"allowed\":false}}");
  json_array_append_new(f.policies, json_pack("{s:{s:s},s:{s:{s:b}}}", "metadata", "name", "allow-all",
                                              "spec", "breakGlass", "allowed", 1));
  cr_assert_eq(step(&f, NULL, &rec, &res), 0);
  cr_assert_eq(res.n_denied, 1, "a new reason is a new refusal");
  cr_assert(strstr(res.denied[0].why, "forbids break-glass"), "%s", res.denied[0].why);
  cr_assert_eq(res.writes, 0);
  tn_breakglass_result_cleanup(&res);
  cr_assert_not(can_i(&f, "create deployments.apps"));
  teardown(&f);
}

Test(breakglass, audit_failure_blocks_the_grant) {
  struct fx f;
  setup(&f);
  struct recorder rec = {.ns = f.ns, .fail_started = true};
  set_policy(&f, "{\"breakGlass\":{\"allowed\":true}}");
  apply_tenant(&f, request(&f, "inc", "tenant-developer", 600));
  struct tn_breakglass_result res;
  cr_assert_eq(step(&f, NULL, &rec, &res), TN_EUNAVAILABLE);
  cr_assert(res.retry);
  cr_assert_eq(res.writes, 0, "no grant without its audit row");
  cr_assert_eq(res.n_granted, 0);
  cr_assert_str_eq(status_state(&f, "inc"), "Pending");
  cr_assert(strstr(res.problem, "audit"), "%s", res.problem);
  tn_breakglass_result_cleanup(&res);
  json_t *b = get_binding(&f, "inc");
  cr_assert_null(b);

  rec.fail_started = false;
  cr_assert_eq(step(&f, NULL, &rec, &res), 0, "%s", res.problem);
  cr_assert_eq(res.n_granted, 1);
  cr_assert_str_eq(status_state(&f, "inc"), "Active");
  tn_breakglass_result_cleanup(&res);
  cr_assert(can_i(&f, "create deployments.apps"));
  cr_assert_not(can_i(&f, "get secrets"), "tenant-developer does not read secrets");
  teardown(&f);
}

Test(breakglass, removed_request_and_stale_cache) {
  struct fx f;
  setup(&f);
  struct recorder rec = {.ns = f.ns};
  set_policy(&f, "{\"breakGlass\":{\"allowed\":true,\"maxDuration\":\"2h\"}}");
  apply_tenant(&f, request(&f, "inc", "tenant-viewer", 3600));
  struct tn_breakglass_result res;
  cr_assert_eq(step(&f, NULL, &rec, &res), 0, "%s", res.problem);
  cr_assert_eq(res.n_granted, 1);
  tn_breakglass_result_cleanup(&res);
  cr_assert(can_i(&f, "list pods"));

  /* A cache that has not seen the binding yet asks for a create; the API server says it is
   * there: no write, no second grant row. */
  json_t *empty = json_array();
  cr_assert_eq(step(&f, empty, &rec, &res), 0, "%s", res.problem);
  cr_assert_eq(res.writes, 0);
  cr_assert_eq(res.n_granted, 0);
  cr_assert_eq(rec.n, 2);
  tn_breakglass_result_cleanup(&res);
  json_decref(empty);

  /* The request leaves the spec: revoked as removed. */
  apply_tenant(&f, "[]");
  json_t *cache = live_bindings(&f);
  cr_assert_eq(step(&f, cache, &rec, &res), 0, "%s", res.problem);
  json_decref(cache);
  cr_assert_eq(res.n_revoked, 1);
  cr_assert_str_eq(res.revoked[0].why, "removed");
  cr_assert_str_eq(res.revoked[0].role, "tenant-viewer");
  cr_assert_eq(json_array_size(res.status), 0, "no request, no status entry");
  tn_breakglass_result_cleanup(&res);
  cr_assert_not(can_i(&f, "list pods"));
  json_t *b = get_binding(&f, "inc");
  cr_assert_null(b);
  teardown(&f);
}

Test(breakglass, someone_elses_binding_is_left_alone) {
  struct fx f;
  setup(&f);
  set_policy(&f, "{\"breakGlass\":{\"allowed\":true}}");
  apply_tenant(&f, request(&f, "inc", "tenant-admin", 600));
  char *out = NULL;
  int src = tn_test_sh(
      &out, "kubectl -n %s create rolebinding break-glass-inc --clusterrole=view --user=someone", f.ns);
  sh_ok("creating a foreign RoleBinding", src, out);
  struct tn_breakglass_result res;
  int rc = step(&f, NULL, NULL, &res);
  cr_assert_eq(rc, TN_EEXISTS);
  cr_assert_not(res.retry, "retrying cannot help: a person must act");
  cr_assert_str_eq(status_state(&f, "inc"), "Pending");
  cr_assert(strstr(res.problem, "is not the operator's"), "%s", res.problem);
  tn_breakglass_result_cleanup(&res);
  json_t *b = get_binding(&f, "inc");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(b, "roleRef"), "name")), "view",
                   "untouched");
  json_decref(b);
  cr_assert_not(can_i(&f, "create deployments.apps"));
  teardown(&f);
}
