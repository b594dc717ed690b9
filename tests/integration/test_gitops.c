/* test_gitops.c - what GitOps tools see of Tenants and of the objects the operator owns, against
 * the real API server with the real operator:
 *  - the Argo CD health check docs/gitops/tenant-health.lua, run verbatim by Debian's lua5.1
 *    (Lua 5.1 semantics, as Argo CD's gopher-lua) on Tenants fetched live in each state: Draft,
 *    Active and Ready, a spec change the operator has not observed yet, Suspended, Archived,
 *    Deleted, and an activation refused. The test turns the Tenant's JSON into a Lua table
 *    literal (no third-party Lua library) and asserts hs.status and hs.message;
 *  - what Flux's kstatus reads (observedGeneration against generation; no Reconciling/Stalled
 *    conditions) on the same live objects, as docs/gitops.md states it;
 *  - server-side apply: the operator's objects are created by a POST (one Update entry of manager
 *    tenancy-operator, no extra write) and, once applied, owned by field manager tenancy-operator
 *    (operation Apply, the create's Update entry folded into it), and labels/annotations other managers add
 * to a tenant namespace and ResourceQuota (kubectl label --field-manager, an SSA of another manager) survive
 * a Plan change that rewrites the namespace's labels and the quota. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;

static void operator_up(void) {
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void start(void) {
  tn_test_install_api();
  tn_test_env("TENANCY_PG_DSN");
  operator_up();
}

static void stop(void) { tn_test_operator_stop(&op, SIGTERM, 40); }

TestSuite(gitops, .init = start, .fini = stop, .timeout = 400);

/* ---- helpers ------------------------------------------------------------------------------- */

#define OK(...)                                                                                              \
  do {                                                                                                       \
    char *o_ = NULL;                                                                                         \
    int rc_ = tn_test_sh(&o_, __VA_ARGS__);                                                                  \
    if (rc_)                                                                                                 \
      tn_test_operator_dump_log(&op);                                                                        \
    cr_assert_eq(rc_, 0, "%s", o_);                                                                          \
    free(o_);                                                                                                \
  } while (0)

static void wait_for(double timeout, const char *t, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void wait_for(double timeout, const char *t, const char *what, const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  char *out = NULL;
  int rc = tn_test_sh_until(timeout, &out, "%s", cmd);
  if (rc) {
    free(out);
    tn_test_sh(&out, "kubectl get tenant %s -o jsonpath='{.status}'", t);
    tn_test_operator_dump_log(&op);
    cr_assert_fail("%s: not within %.0f s; tenant %s status: %s", what, timeout, t, out);
  }
  free(out);
}

static void apply_tenant(const char *t, const char *state, const char *plan, const char *region) {
  OK("printf '%%s' "
     "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
     "\"spec\":{\"displayName\":\"GitOps %s\",\"state\":\"%s\",\"plan\":\"%s\",\"isolation\":\"shared\","
     "\"environments\":[\"prod\"],\"residency\":{\"allowedRegions\":[\"%s\"]}}}' | kubectl apply -f -",
     t, t, state, plan, region);
}

/* status.state is `state`, observedGeneration is the generation and Ready has status `ready`. */
static void wait_status(const char *t, const char *state, const char *ready, double timeout) {
  char what[160];
  snprintf(what, sizeof what, "tenant %s %s with Ready %s", t, state, ready);
  wait_for(timeout, t, what,
           "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}/"
           "{.status.conditions[?(@.type==\"Ready\")].status}/{.status.observedGeneration}/"
           "{.metadata.generation}' | awk -F/ '{print $1\"/\"$2\"/\"($3==$4)}')\" = %s/%s/1",
           t, state, ready);
}

static void set_state(const char *t, const char *patch_spec) {
  OK("kubectl patch tenant %s --type=merge -p '{\"spec\":%s}'", t, patch_spec);
}

/* ---- the Lua table literal of a JSON value ------------------------------------------------- */

static void lua_string(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f)
      fprintf(f, "\\%03u", c); /* decimal escapes: Lua 5.1 has no \x */
    else
      fputc(c, f);
  }
  fputc('"', f);
}

/* JSON null becomes nil (the key is left out), as Argo CD's conversion does. */
static void lua_value(FILE *f, const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    const char *k;
    json_t *x;
    fputc('{', f);
    json_object_foreach((json_t *)v, k, x) {
      if (json_is_null(x))
        continue;
      fputc('[', f);
      lua_string(f, k, strlen(k));
      fputs("]=", f);
      lua_value(f, x);
      fputc(',', f);
    }
    fputc('}', f);
    break;
  }
  case JSON_ARRAY: {
    size_t i;
    json_t *x;
    fputc('{', f);
    json_array_foreach(v, i, x) {
      lua_value(f, x);
      fputc(',', f);
    }
    fputc('}', f);
    break;
  }
  case JSON_STRING:
    lua_string(f, json_string_value(v), json_string_length(v));
    break;
  case JSON_INTEGER:
    fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    break;
  case JSON_REAL:
    fprintf(f, "%.17g", json_real_value(v));
    break;
  case JSON_TRUE:
    fputs("true", f);
    break;
  case JSON_FALSE:
    fputs("false", f);
    break;
  case JSON_NULL:
    fputs("nil", f);
    break;
  }
}

struct health {
  char status[32];
  char message[1024];
  json_t *obj; /* the live Tenant it was computed from */
};

/* Fetches Tenant t from the API server and runs the health check on it with lua5.1. */
static void health_of(const char *t, struct health *h) {
  static int n;
  char *text = tn_test_output("kubectl get tenant %s -o json", t);
  json_error_t jerr;
  h->obj = json_loads(text, 0, &jerr);
  cr_assert_not_null(h->obj, "kubectl get tenant %s: %s: %s", t, jerr.text, text);
  free(text);
  char path[512];
  snprintf(path, sizeof path, "%s/gitops-health-%s-%d.lua", tn_test_env("TENANCY_TEST_LOG_DIR"), t, n++);
  tn_test_sh(NULL, "mkdir -p '%s'", tn_test_env("TENANCY_TEST_LOG_DIR"));
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "cannot write %s", path);
  /* As Argo CD runs it: the script is a chunk that reads the global obj and returns hs. */
  fputs("obj = ", f);
  lua_value(f, h->obj);
  fprintf(f, "\nlocal hs = dofile(\"%s/docs/gitops/tenant-health.lua\")\n", tn_test_env("TENANCY_ROOT"));
  fputs("assert(type(hs) == \"table\" and type(hs.status) == \"string\" and type(hs.message) == \"string\")\n"
        "io.write(hs.status, \"\\n\", hs.message, \"\\n\")\n",
        f);
  fclose(f);
  char *out = NULL;
  int rc = tn_test_sh(&out, "lua5.1 '%s'", path);
  cr_assert_eq(rc, 0, "lua5.1 %s: %s", path, out);
  char *nl = strchr(out, '\n');
  cr_assert_not_null(nl, "health check output: %s", out);
  *nl = 0;
  snprintf(h->status, sizeof h->status, "%s", out);
  snprintf(h->message, sizeof h->message, "%s", nl + 1);
  size_t ml = strlen(h->message);
  if (ml && h->message[ml - 1] == '\n')
    h->message[ml - 1] = 0;
  free(out);
}

static void expect_health(const char *t, const char *status, const char *message_part) {
  struct health h = {0};
  health_of(t, &h);
  cr_expect_str_eq(h.status, status, "tenant %s: health %s (%s), want %s", t, h.status, h.message, status);
  cr_expect_not_null(strstr(h.message, message_part), "tenant %s: health message \"%s\" lacks \"%s\"", t,
                     h.message, message_part);
  json_decref(h.obj);
}

/* What kstatus (Flux, kpt, cli-utils) reads of a custom resource: observedGeneration against
 * generation, and the abnormal-true conditions Reconciling and Stalled, which Tenants do not
 * have. want_current: observedGeneration equals generation. */
static void expect_kstatus(const char *t, bool want_current) {
  char *text = tn_test_output("kubectl get tenant %s -o json", t);
  json_t *obj = json_loads(text, 0, NULL);
  cr_assert_not_null(obj, "%s", text);
  free(text);
  json_int_t gen = json_integer_value(json_object_get(json_object_get(obj, "metadata"), "generation"));
  json_t *st = json_object_get(obj, "status");
  json_int_t og = json_integer_value(json_object_get(st, "observedGeneration"));
  cr_expect(gen > 0 && og > 0, "tenant %s: generation %lld, observedGeneration %lld", t, (long long)gen,
            (long long)og);
  cr_expect_eq(og == gen, want_current, "tenant %s: observedGeneration %lld, generation %lld", t,
               (long long)og, (long long)gen);
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(st, "conditions"), i, c) {
    const char *type = json_string_value(json_object_get(c, "type"));
    cr_expect(type && strcmp(type, "Reconciling") != 0 && strcmp(type, "Stalled") != 0,
              "tenant %s has a %s condition: docs/gitops.md says kstatus sees none", t, type);
    if (want_current)
      cr_expect_eq(json_integer_value(json_object_get(c, "observedGeneration")), gen,
                   "tenant %s: condition %s is of generation %lld, not %lld", t, type,
                   (long long)json_integer_value(json_object_get(c, "observedGeneration")), (long long)gen);
  }
  json_decref(obj);
}

/* ---- the Argo CD health check on live Tenants ---------------------------------------------- */

Test(gitops, argocd_health_check_on_live_tenants_in_every_state) {
  char t[64], bad[64], nowhere[64];
  tn_test_unique_name(t, sizeof t, "gh");
  tn_test_unique_name(bad, sizeof bad, "ghbad");
  tn_test_unique_name(nowhere, sizeof nowhere, "nowhere");

  /* The script is Lua 5.1 (luac5.1 parses it), and docs/gitops.md shows it verbatim. */
  const char *root = tn_test_env("TENANCY_ROOT");
  OK("luac5.1 -p '%s/docs/gitops/tenant-health.lua'", root);
  OK("python3 -c 'import sys; d = open(sys.argv[1]).read(); l = open(sys.argv[2]).read(); "
     "sys.exit(0 if \"```lua\\n\" + l + \"```\" in d else \"docs/gitops.md does not show the Lua file "
     "verbatim\")' "
     "'%s/docs/gitops.md' '%s/docs/gitops/tenant-health.lua'",
     root, root);

  /* Draft: nothing provisioned, nothing to wait for. */
  apply_tenant(t, "Draft", "standard", "eu-west-1");
  wait_status(t, "Draft", "True", 60);
  expect_health(t, "Healthy", "Draft: ");
  expect_kstatus(t, true);

  /* Active and Ready. */
  set_state(t, "{\"state\":\"Active\"}");
  wait_status(t, "Active", "True", 90);
  expect_health(t, "Healthy", "Active: tenant is Active and converged");
  expect_kstatus(t, true);

  /* A spec change the operator has not observed yet (it is stopped): Progressing, whatever the
   * old Ready says; kstatus says InProgress for the same reason. */
  cr_assert_eq(tn_test_operator_stop(&op, SIGTERM, 40), 0, "the operator did not stop cleanly");
  set_state(t, "{\"displayName\":\"GitOps renamed\"}");
  expect_health(t, "Progressing", "Waiting for the tenancy operator to observe generation");
  expect_kstatus(t, false);
  operator_up();
  wait_status(t, "Active", "True", 90);
  expect_health(t, "Healthy", "Active: ");

  /* Suspended: Argo CD's Suspended. */
  set_state(t, "{\"state\":\"Suspended\"}");
  wait_status(t, "Suspended", "True", 90);
  expect_health(t, "Suspended", "Suspended: ");
  expect_kstatus(t, true);

  /* Archived: also Suspended (restorable while the data is retained). */
  set_state(t, "{\"state\":\"Archived\"}");
  wait_status(t, "Archived", "True", 90);
  expect_health(t, "Suspended", "Archived: ");
  expect_kstatus(t, true);

  /* Deleted: the tombstone is Healthy once everything it owned is gone. */
  char spec[256];
  snprintf(spec, sizeof spec, "{\"state\":\"Deleted\",\"deletionConfirmation\":\"%s\"}", t);
  set_state(t, spec);
  wait_status(t, "Deleted", "True", 120);
  expect_health(t, "Healthy", "Deleted: ");

  /* An activation the operator refuses (no allowed Region exists): Degraded with the reason,
   * while kstatus (which reads no Ready condition) calls the same object Current. */
  apply_tenant(bad, "Active", "standard", nowhere);
  wait_for(90, bad, "activation refused",
           "kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].reason}' | "
           "grep -qx ActivationRefused",
           bad);
  wait_for(
      30, bad, "the refusal observed",
      "test \"$(kubectl get tenant %s -o jsonpath='{.status.observedGeneration}/{.metadata.generation}' | "
      "awk -F/ '{print ($1==$2)}')\" = 1",
      bad);
  expect_health(bad, "Degraded", "Draft -> Active: ActivationRefused: activation (Draft -> Active) refused");
  expect_kstatus(bad, true);

  /* A Tenant synced before its Plan: Degraded, naming the Plan, until the Plan exists. */
  char noplan[64], missing[64];
  tn_test_unique_name(noplan, sizeof noplan, "ghnoplan");
  tn_test_unique_name(missing, sizeof missing, "missing-plan");
  apply_tenant(noplan, "Active", missing, "eu-west-1");
  wait_for(90, noplan, "Ready False for the missing Plan",
           "test \"$(kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}/"
           "{.status.observedGeneration}')\" = False/1",
           noplan);
  struct health h = {0};
  health_of(noplan, &h);
  cr_expect_str_eq(h.status, "Degraded", "tenant without its Plan: %s (%s)", h.status, h.message);
  cr_expect_not_null(strstr(h.message, missing), "the message names the Plan: %s", h.message);
  json_decref(h.obj);
  /* ... and Healthy once the Plan is synced, with no change to the Tenant. */
  OK("kubectl get plan standard -o json | python3 -c 'import json, sys; p = json.load(sys.stdin); "
     "print(json.dumps({\"apiVersion\": p[\"apiVersion\"], \"kind\": \"Plan\", \"metadata\": {\"name\": "
     "sys.argv[1]}, \"spec\": p[\"spec\"]}))' %s | kubectl apply -f -",
     missing);
  wait_status(noplan, "Active", "True", 90);
  expect_health(noplan, "Healthy", "Active: tenant is Active and converged");

  OK("kubectl delete tenant %s %s %s --wait --timeout=120s", t, bad, noplan);
  OK("kubectl delete plan %s", missing);
}

/* ---- server-side apply: other managers' fields survive a Plan change ----------------------- */

static json_t *get_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *get_json(const char *fmt, ...) {
  char cmd[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  char *text = tn_test_output("%s", cmd);
  json_t *obj = json_loads(text, 0, NULL);
  cr_assert_not_null(obj, "%s: %s", cmd, text);
  free(text);
  return obj;
}

/* The object's tenancy-operator managedFields entries (not of a subresource) are exactly one,
 * of operation `want` ("Apply" once applied; "Update" right after the create, whose entry the
 * first apply folds: no write is spent on an object that never changes). */
static void expect_entry_of_operator(const json_t *obj, const char *want, const char *what) {
  int apply = 0, update = 0;
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "managedFields"), i, e) {
    const char *m = json_string_value(json_object_get(e, "manager"));
    const char *opn = json_string_value(json_object_get(e, "operation"));
    if (!m || strcmp(m, "tenancy-operator") != 0 || json_object_get(e, "subresource"))
      continue;
    apply += opn && strcmp(opn, "Apply") == 0;
    update += opn && strcmp(opn, "Update") == 0;
  }
  bool want_apply = strcmp(want, "Apply") == 0;
  cr_expect_eq(apply, want_apply ? 1 : 0, "%s: %d Apply entries of manager tenancy-operator", what, apply);
  cr_expect_eq(update, want_apply ? 0 : 1, "%s: %d Update entries of manager tenancy-operator", what, update);
}
static void expect_applied_by_operator(const json_t *obj, const char *what) {
  expect_entry_of_operator(obj, "Apply", what);
}

static const char *label_of(const json_t *obj, const char *key) {
  return json_string_value(json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), key));
}
static const char *annotation_of(const json_t *obj, const char *key) {
  return json_string_value(
      json_object_get(json_object_get(json_object_get(obj, "metadata"), "annotations"), key));
}

static void apply_plan(const char *plan, const char *pod_security, const char *cpu) {
  OK("printf '%%s' "
     "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Plan\",\"metadata\":{\"name\":\"%s\"},"
     "\"spec\":{\"podSecurity\":\"%s\",\"features\":{\"sso\":false},\"quotas\":{\"cpu\":\"%s\",\"memory\":"
     "\"4Gi\","
     "\"storage\":\"10Gi\",\"pods\":20,\"services\":5,\"connections\":10,\"eventsPerDay\":10000},"
     "\"rateLimits\":{\"requestsPerSecond\":10,\"burst\":20}}}' | kubectl apply -f -",
     plan, pod_security, cpu);
}

Test(gitops, other_managers_labels_and_annotations_survive_a_plan_change) {
  char t[64], plan[64], ns[96];
  tn_test_unique_name(t, sizeof t, "gs");
  tn_test_unique_name(plan, sizeof plan, "gs-plan");
  snprintf(ns, sizeof ns, "%s-prod", t);
  apply_plan(plan, "baseline", "2");
  apply_tenant(t, "Active", plan, "eu-west-1");
  wait_status(t, "Active", "True", 90);

  json_t *nso = get_json("kubectl get namespace %s -o json --show-managed-fields", ns);
  /* Created by a plain POST (never adopting), and left so: no managedFields PATCH per object. */
  expect_entry_of_operator(nso, "Update", "the tenant namespace after its creation");
  json_decref(nso);

  /* Other tools mark the namespace and the quota: kubectl label/annotate as manager "other",
   * and a server-side apply of manager "argocd-like". */
  OK("kubectl label namespace %s team.example/owner=payments --field-manager=other", ns);
  OK("kubectl annotate namespace %s team.example/oncall=pager-7 --field-manager=other", ns);
  OK("printf '%%s' '{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\","
     "\"labels\":{\"gitops.example/app\":\"payments\"},\"annotations\":{\"gitops.example/"
     "tracking-id\":\"x:y\"}}}' "
     "| kubectl apply --server-side --field-manager=argocd-like -f -",
     ns);
  char *quota =
      tn_test_output("kubectl get resourcequota -n %s -l app.kubernetes.io/managed-by=tenancy-operator "
                     "-o jsonpath='{.items[0].metadata.name}'",
                     ns);
  cr_assert(quota[0], "no ResourceQuota in %s", ns);
  OK("kubectl label resourcequota -n %s %s cost.example/center=cc-42 --field-manager=other", ns, quota);

  /* The Plan changes: the namespace's Pod Security labels and the quota's limits.cpu are
   * rewritten by the operator. */
  apply_plan(plan, "restricted", "3");
  wait_for(90, t, "the Plan change reaches the namespace and the quota",
           "test \"$(kubectl get namespace %s -o "
           "jsonpath='{.metadata.labels.pod-security\\.kubernetes\\.io/enforce}')"
           "/$(kubectl get resourcequota -n %s %s -o jsonpath='{.spec.hard.limits\\.cpu}')\" = restricted/3",
           ns, ns, quota);
  wait_status(t, "Active", "True", 60);

  nso = get_json("kubectl get namespace %s -o json --show-managed-fields", ns);
  cr_expect_str_eq(label_of(nso, "pod-security.kubernetes.io/warn"), "restricted");
  cr_expect_str_eq(label_of(nso, "team.example/owner"), "payments", "kubectl label of manager other lost");
  cr_expect_str_eq(label_of(nso, "gitops.example/app"), "payments", "SSA label of manager argocd-like lost");
  cr_expect_str_eq(annotation_of(nso, "team.example/oncall"), "pager-7", "kubectl annotate lost");
  cr_expect_str_eq(annotation_of(nso, "gitops.example/tracking-id"), "x:y", "SSA annotation lost");
  expect_applied_by_operator(nso, "the tenant namespace after the Plan change");
  json_decref(nso);
  json_t *q = get_json("kubectl get resourcequota -n %s %s -o json --show-managed-fields", ns, quota);
  cr_expect_str_eq(label_of(q, "cost.example/center"), "cc-42", "the quota's label of manager other lost");
  expect_applied_by_operator(q, "the ResourceQuota after the Plan change");
  json_decref(q);
  free(quota);

  /* A label the operator sets, changed by hand, is put back (force), others' stay. */
  OK("kubectl label namespace %s tenancy.dev/plan=hacked --overwrite --field-manager=other", ns);
  wait_for(60, t, "the operator's label restored",
           "kubectl get namespace %s -o jsonpath='{.metadata.labels.tenancy\\.dev/plan}' | grep -qx %s", ns,
           plan);
  char *owner =
      tn_test_output("kubectl get namespace %s -o jsonpath='{.metadata.labels.team\\.example/owner}'", ns);
  cr_expect_str_eq(owner, "payments");
  free(owner);

  OK("kubectl delete tenant %s --wait --timeout=120s", t);
  OK("kubectl delete plan %s", plan);
}
