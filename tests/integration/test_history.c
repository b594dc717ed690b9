/* test_history.c - tenant history, spec-change audit, rollback and tenant-wide quotas, through the
 * real operator binary (with its admission webhook), kubectl, tenantctl, the API server and
 * PostgreSQL of the local stack (docs/history.md):
 *  - a plan change, a contacts edit and an externalIds edit each give a version and an audit row
 *    (spec.plan, spec.contacts, spec.externalIds) naming the user who asked;
 *  - `tenantctl history` and `tenantctl diff` print them (exact, stable output);
 *  - `tenantctl rollback --to N` restores an earlier plan through the API server (a new version,
 *    audited with the user as actor), and refuses a state change the lifecycle does not allow
 *    (exit 4 with the reason);
 *  - a request the webhook denies gives a `refused` row;
 *  - a Plan with quotaScope Tenant splits its quotas over two environments so that no more pods
 *    than the plan allows can be created in both namespaces together. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;

static void start(void) {
  tn_test_install_api();
  tn_test_env("TENANCY_PG_DSN");
  char addr[64];
  snprintf(addr, sizeof addr, "--webhook-bind-address=127.0.0.1:%d", tn_test_free_port());
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", addr, NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void stop(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  /* failurePolicy Fail: without the operator the registration would refuse later tenant writes. */
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
}

TestSuite(history, .init = start, .fini = stop, .timeout = 300);

static const char *tenantctl(void) { return tn_test_env("TENANCY_TENANTCTL_BIN"); }

static void wait_for(const char *what, double timeout, const char *cmd) {
  char *out = NULL;
  int rc = tn_test_sh_until(timeout, &out, "%s", cmd);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "%s: %s", what, out);
  free(out);
}

static void wait_state(const char *t, const char *state) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = %s", t, state);
  wait_for(state, 90, cmd);
}

/* Waits until the operator recorded generation `gen` of tenant t (status.observedGeneration). */
static void wait_observed(const char *t, int gen) {
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "test \"$(kubectl get tenant %s -o jsonpath='{.status.observedGeneration}')\" -ge %d", t, gen);
  wait_for("observedGeneration", 90, cmd);
}

/* `kubectl patch` as user `who` (impersonated, with the admin group so RBAC lets it write). */
static void patch_as(const char *who, const char *t, const char *patch) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl --as=%s --as-group=system:masters patch tenant %s --type=merge -p '%s'",
                      who, t, patch);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static void create_tenant(const char *t) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"environments\":[\"prod\"],"
      "\"contacts\":[{\"role\":\"technical\",\"name\":\"Ada\",\"email\":\"ada@example.com\"}],"
      "\"externalIds\":{\"billing\":\"cus_%d\"}}}' | kubectl --as=hist-creator --as-group=system:masters "
      "create -f -",
      t, (int)getpid());
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

/* The tenant's audit rows of one action as "actor:outcome:before:after" lines. */
static char *rows_of(const char *t, const char *action) {
  char *out = NULL;
  int rc =
      tn_test_sh(&out,
                 "'%s' audit list --tenant %s --limit 0 -o json | python3 -c 'import json,sys; "
                 "[print(\"%%s:%%s:%%s:%%s\" %% (r[\"actor\"], r[\"outcome\"], r[\"generation_before\"], "
                 "r[\"generation_after\"])) for r in json.load(sys.stdin) if r[\"action\"] == \"%s\"]'",
                 tenantctl(), t, action);
  cr_assert_eq(rc, 0, "%s", out);
  return out;
}

Test(history, spec_edits_are_versioned_audited_listed_and_diffed) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-hist");
  create_tenant(t);
  wait_state(t, "Active");
  patch_as("hist-alice", t, "{\"spec\":{\"plan\":\"enterprise\",\"stateReason\":\"upsell\"}}");
  wait_observed(t, 2);
  patch_as("hist-bob", t,
           "{\"spec\":{\"contacts\":[{\"role\":\"technical\",\"name\":\"Ada\",\"email\":\"ada@example.com\"},"
           "{\"role\":\"billing\",\"name\":\"Bob\",\"email\":\"bob@example.com\"}]}}");
  wait_observed(t, 3);
  char crm[128]; /* unique per run: external ids are unique per system across tenants */
  snprintf(crm, sizeof crm, "{\"spec\":{\"externalIds\":{\"crm\":\"crm-%s\"}}}", t);
  patch_as("hist-carol", t, crm);
  wait_observed(t, 4);

  /* One audit row per changed area, with the user who asked and the generations. */
  char *r = rows_of(t, "spec.plan");
  cr_assert_str_eq(r, "hist-alice:succeeded:1:2\n");
  free(r);
  r = rows_of(t, "spec.contacts");
  cr_assert_str_eq(r, "hist-bob:succeeded:2:3\n");
  free(r);
  r = rows_of(t, "spec.externalIds");
  cr_assert_str_eq(r, "hist-carol:succeeded:3:4\n");
  free(r);
  /* The plan row carries before/after and the stateReason given with the edit; the contacts row
   * only counts (no personal data in the append-only trail). */
  int rc = tn_test_sh(&out,
                      "'%s' audit list --tenant %s --limit 0 -o json | python3 -c 'import json,sys; "
                      "rows={r[\"action\"]: r for r in json.load(sys.stdin)}; "
                      "print(json.dumps(rows[\"spec.plan\"][\"details\"], sort_keys=True)); "
                      "print(json.dumps(rows[\"spec.contacts\"][\"details\"], sort_keys=True)); "
                      "print(rows[\"spec.plan\"][\"correlation_id\"] != None)'",
                      tenantctl(), t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(
      out, "{\"after\": \"enterprise\", \"area\": \"plan\", \"before\": \"standard\", \"stateReason\": "
           "\"upsell\"}\n"
           "{\"after\": {\"count\": 2}, \"area\": \"contacts\", \"before\": {\"count\": 1}}\n"
           "True\n");
  free(out);

  /* tenantctl history: generation, time, actor, changed fields. */
  rc = tn_test_sh(&out, "'%s' history %s | awk '{print $1, $3, $4}'", tenantctl(), t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "GENERATION ACTOR CHANGED\n"
                        "1 hist-creator (first\n"
                        "2 hist-alice plan,stateReason\n"
                        "3 hist-bob contacts\n"
                        "4 hist-carol externalIds\n");
  free(out);

  /* tenantctl diff: field-level, stable. */
  rc = tn_test_sh(&out, "'%s' diff %s --from 1 --to 4", tenantctl(), t);
  cr_assert_eq(rc, 0, "%s", out);
  char want[1024];
  snprintf(want, sizeof want,
           "+ spec.contacts[1]: {\"email\":\"bob@example.com\",\"name\":\"Bob\",\"role\":\"billing\"}\n"
           "+ spec.externalIds.crm: \"crm-%s\"\n"
           "~ spec.plan: \"standard\" -> \"enterprise\"\n"
           "+ spec.stateReason: \"upsell\"\n",
           t);
  cr_assert_str_eq(out, want);
  free(out);
  rc = tn_test_sh(&out, "'%s' diff %s --from 1 --to 9", tenantctl(), t);
  cr_assert_eq(rc, 3, "an unknown generation must exit 3: %s", out);
  cr_assert(strstr(out, "no recorded generation 9"), "%s", out);
  free(out);

  /* Versions are append-only even for the table's owner. */
  rc = tn_test_sh(&out,
                  "psql \"$TENANCY_PG_DSN\" -v ON_ERROR_STOP=1 -c \"DELETE FROM tenancy.tenant_versions "
                  "WHERE tenant = '%s'\"",
                  t);
  cr_assert_neq(rc, 0, "a version was deleted: %s", out);
  cr_assert(strstr(out, "append-only"), "%s", out);
  free(out);
  rc = tn_test_sh(&out, "'%s' audit verify", tenantctl());
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

Test(history, rollback_restores_an_earlier_plan_through_the_api_server) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-rb");
  create_tenant(t);
  wait_state(t, "Active");
  patch_as("hist-alice", t, "{\"spec\":{\"plan\":\"enterprise\"}}");
  wait_observed(t, 2);
  char cmd[512];
  snprintf(
      cmd, sizeof cmd,
      "test \"$(kubectl -n %s-prod get resourcequota tenant-quota -o jsonpath='{.spec.hard.pods}')\" = 500",
      t);
  wait_for("the enterprise quota", 60, cmd);

  /* A state change the lifecycle refuses: exit 4, the reason, nothing written. */
  int rc = tn_test_sh(&out, "'%s' rollback %s --to 1 --state Draft", tenantctl(), t);
  cr_assert_eq(rc, 4, "a refused rollback must exit 4: %s", out);
  cr_assert(strstr(out, "refused") && strstr(out, "Active -> Draft is not allowed"), "%s", out);
  free(out);
  char *gen = tn_test_output("kubectl get tenant %s -o jsonpath='{.metadata.generation}'", t);
  cr_assert_str_eq(gen, "2", "a refused rollback changed the tenant");
  free(gen);

  /* Back to generation 1's plan, as the kubectl user (the admin kubeconfig of the stack). */
  rc = tn_test_sh(&out, "'%s' rollback %s --to 1", tenantctl(), t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "~ spec.plan: \"enterprise\" -> \"standard\"") && strstr(out, "now generation 3"),
            "%s", out);
  free(out);
  char *plan = tn_test_output("kubectl get tenant %s -o jsonpath='{.spec.plan}/{.spec.state}'", t);
  cr_assert_str_eq(plan, "standard/Active");
  free(plan);
  snprintf(
      cmd, sizeof cmd,
      "test \"$(kubectl -n %s-prod get resourcequota tenant-quota -o jsonpath='{.spec.hard.pods}')\" = 50",
      t);
  wait_for("the standard quota back", 60, cmd);
  wait_observed(t, 3);
  char *who = tn_test_output("kubectl auth whoami -o jsonpath='{.status.userInfo.username}'");
  char *r = rows_of(t, "spec.plan");
  char want[512];
  snprintf(want, sizeof want, "hist-alice:succeeded:1:2\n%s:succeeded:2:3\n", who);
  cr_assert_str_eq(r, want, "the rollback must be audited with the user who ran it");
  free(r);
  free(who);
  rc = tn_test_sh(&out, "'%s' history %s | awk 'NR==4 {print $1, $4}'", tenantctl(), t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "3 plan,stateReason\n");
  free(out);
  /* Nothing left to roll back. */
  rc = tn_test_sh(&out, "'%s' rollback %s --to 1", tenantctl(), t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "nothing to roll back"), "%s", out);
  free(out);
  /* A user without write access is refused by the API server (RBAC), exit 4. */
  rc = tn_test_sh(&out, "KUBECONFIG='%s' '%s' rollback %s --to 2",
                  tn_test_env("TENANCY_UNPRIVILEGED_KUBECONFIG"), tenantctl(), t);
  cr_assert_eq(rc, 4, "%s", out);
  cr_assert(strstr(out, "forbidden") || strstr(out, "Forbidden"), "%s", out);
  free(out);
}

Test(history, an_admission_denial_gives_a_refused_row) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-deny");
  create_tenant(t);
  wait_state(t, "Active");
  int rc = tn_test_sh(&out,
                      "kubectl --as=hist-mallory --as-group=system:masters delete tenant %s --wait=false", t);
  cr_assert_neq(rc, 0, "an Active tenant was deleted");
  cr_assert(strstr(out, "denied"), "%s", out);
  free(out);
  char cmd[1024];
  snprintf(
      cmd, sizeof cmd,
      "'%s' audit list --tenant %s --limit 0 -o json | python3 -c 'import json,sys; "
      "rows=[r for r in json.load(sys.stdin) if r[\"action\"] == \"admission.delete\"]; "
      "assert len(rows) == 1 and rows[0][\"outcome\"] == \"refused\" and rows[0][\"actor\"] == "
      "\"hist-mallory\" "
      "and rows[0][\"generation_before\"] == 1 and \"Active\" in rows[0][\"details\"][\"message\"], rows'",
      tenantctl(), t);
  wait_for("a refused row for the denied delete", 20, cmd);
  rc = tn_test_sh(&out, "'%s' audit verify", tenantctl());
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

/* A pod that satisfies Pod Security restricted, with small explicit resources (so the pod count
 * is what the quota runs out of). */
static int create_pod(char **out, const char *ns, int i) {
  return tn_test_sh(
      out,
      "printf '%%s' '{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p%d\"},\"spec\":{"
      "\"securityContext\":{\"runAsNonRoot\":true,\"runAsUser\":65532,\"seccompProfile\":{\"type\":"
      "\"RuntimeDefault\"}},\"containers\":[{\"name\":\"c\",\"image\":\"registry.k8s.io/pause:3.10\","
      "\"securityContext\":{\"allowPrivilegeEscalation\":false,\"capabilities\":{\"drop\":[\"ALL\"]}},"
      "\"resources\":{\"requests\":{\"cpu\":\"10m\",\"memory\":\"16Mi\"},\"limits\":{\"cpu\":\"10m\","
      "\"memory\":\"16Mi\"}}}]}}' | kubectl -n %s create -f -",
      i, ns);
}

Test(history, a_tenant_wide_quota_cannot_be_exceeded_across_two_environments) {
  char t[64], plan[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-tq");
  tn_test_unique_name(plan, sizeof plan, "tn-tq-plan");
  int rc =
      tn_test_sh(&out,
                 "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Plan\",\"metadata\":{"
                 "\"name\":\"%s\"},\"spec\":{\"quotaScope\":\"Tenant\",\"quotas\":{\"cpu\":\"1\",\"memory\":"
                 "\"1Gi\",\"storage\":\"3Gi\",\"pods\":5,\"services\":3}}}' | kubectl apply -f -",
                 plan);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tn_test_sh(
      &out,
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":"
      "\"%s\"},\"spec\":{\"state\":\"Active\",\"plan\":\"%s\",\"environments\":[\"prod\",\"staging\"]}}' "
      "| kubectl apply -f -",
      t, plan);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  wait_state(t, "Active");
  /* The split: equal shares, the remainder to the first environment; the sum is the plan. */
  char cmd[512];
  snprintf(
      cmd, sizeof cmd,
      "kubectl -n %s-staging get resourcequota tenant-quota -o jsonpath='{.status.hard.pods}' | grep -qx 2",
      t);
  wait_for("the staging quota (status)", 60, cmd);
  snprintf(cmd, sizeof cmd,
           "kubectl -n %s-prod get resourcequota tenant-quota -o jsonpath='{.status.hard.pods}' | grep -qx 3",
           t);
  wait_for("the prod quota (status)", 60, cmd);
  char *q = tn_test_output("for e in prod staging; do kubectl -n %s-$e get resourcequota tenant-quota -o "
                           "jsonpath='{.spec.hard.pods} {.spec.hard.services} {.spec.hard.requests\\.cpu} "
                           "{.spec.hard.requests\\.memory} "
                           "{.spec.hard.requests\\.storage}{\"\\n\"}'; done",
                           t);
  cr_assert_str_eq(q, "3 2 500m 512Mi 1536Mi\n2 1 500m 512Mi 1536Mi");
  free(q);

  /* Create pods until refused, in both namespaces: 5 in total, never more. */
  int made[2] = {0, 0};
  const char *envs[2] = {"prod", "staging"};
  for (int e = 0; e < 2; e++) {
    char ns[96];
    snprintf(ns, sizeof ns, "%s-%s", t, envs[e]);
    for (int i = 0; i < 8; i++)
      if (create_pod(NULL, ns, i) == 0)
        made[e]++;
  }
  cr_assert_eq(made[0] + made[1], 5, "pods created: prod %d + staging %d, the plan allows 5 in total",
               made[0], made[1]);
  cr_assert_eq(made[0], 3);
  cr_assert_eq(made[1], 2);
  char ns[96];
  snprintf(ns, sizeof ns, "%s-staging", t);
  rc = create_pod(&out, ns, 99);
  cr_assert_neq(rc, 0, "a sixth pod was admitted");
  cr_assert(strstr(out, "exceeded quota"), "%s", out);
  free(out);
  tn_test_sh(NULL,
             "kubectl delete tenant %s --wait=false >/dev/null 2>&1; kubectl delete plan %s >/dev/null 2>&1",
             t, plan);
}

/* PostgreSQL down: a spec edit is stored by the API server but not acted on until its version and
 * audit rows are written; a denial is answered at once and its refused row written once
 * PostgreSQL is back. */
Test(history, postgresql_down_postpones_the_edit_and_never_slows_a_denial) {
  char t[64], *out = NULL, cmd[1024];
  tn_test_unique_name(t, sizeof t, "tn-pgdown");
  create_tenant(t);
  wait_state(t, "Active");
  snprintf(
      cmd, sizeof cmd,
      "test \"$(kubectl -n %s-prod get resourcequota tenant-quota -o jsonpath='{.spec.hard.pods}')\" = 50",
      t);
  wait_for("the standard quota", 60, cmd);
  wait_observed(t, 1);

  cr_assert_eq(tn_test_pg_ctl("stop"), 0);
  patch_as("hist-dave", t, "{\"spec\":{\"plan\":\"enterprise\"}}");
  double t0 = tn_test_now();
  int rc =
      tn_test_sh(&out, "kubectl --as=hist-erin --as-group=system:masters delete tenant %s --wait=false", t);
  double took = tn_test_now() - t0;
  cr_assert_neq(rc, 0, "an Active tenant was deleted");
  free(out);
  sleep(5);
  char *pods = NULL, *observed = NULL;
  tn_test_sh(&pods, "kubectl -n %s-prod get resourcequota tenant-quota -o jsonpath='{.spec.hard.pods}'", t);
  tn_test_sh(&observed, "kubectl get tenant %s -o jsonpath='{.status.observedGeneration}'", t);
  int restarted = tn_test_pg_ctl("start");
  cr_assert_lt(took, 3.0, "the denial took %.1f s while PostgreSQL was down", took);
  cr_assert_str_eq(pods, "50", "the plan change was applied before it was recorded");
  cr_assert_str_eq(observed, "1", "generation 2 was observed before it was recorded");
  free(pods);
  free(observed);
  cr_assert_eq(restarted, 0, "PostgreSQL did not restart");

  snprintf(
      cmd, sizeof cmd,
      "test \"$(kubectl -n %s-prod get resourcequota tenant-quota -o jsonpath='{.spec.hard.pods}')\" = 500",
      t);
  wait_for("the enterprise quota after recovery", 120, cmd);
  char *r = rows_of(t, "spec.plan");
  cr_assert_str_eq(r, "hist-dave:succeeded:1:2\n");
  free(r);
  snprintf(cmd, sizeof cmd,
           "'%s' audit list --tenant %s --limit 0 -o json | python3 -c 'import json,sys; "
           "rows=[r for r in json.load(sys.stdin) if r[\"action\"] == \"admission.delete\"]; "
           "assert len(rows) == 1 and rows[0][\"outcome\"] == \"refused\" and rows[0][\"actor\"] == "
           "\"hist-erin\", "
           "rows'",
           tenantctl(), t);
  wait_for("the refused row written after recovery", 60, cmd);
}
