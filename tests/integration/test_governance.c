/* test_governance.c - policy before action through the real operator binary serving its admission
 * webhook: a non-compliant tenant is refused at kubectl apply with the evaluator's message, an
 * Active tenant cannot be deleted, and the audit trail names the user who asked. */
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
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl apply -f '%s/manifests/samples/02-policies.yaml'",
                      tn_test_env("TENANCY_ROOT"));
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
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
  /* The policies this suite applied must not govern the other suites' tenants. */
  tn_test_sh(
      NULL,
      "kubectl delete tenancypolicy eu-residency tn-test-breakglass tn-test-overrides --ignore-not-found");
  /* failurePolicy is Fail for tenants: without the operator, the registration would refuse every
   * later tenant write of the other suites. */
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
}

TestSuite(governance, .init = start, .fini = stop, .timeout = 240);

static int apply(char **out, const char *t, const char *state, const char *regions, const char *flags) {
  return tn_test_sh(
      out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"%s\",\"plan\":\"standard\",\"environments\":[\"prod\"],"
      "\"residency\":{\"allowedRegions\":[%s],\"flags\":[%s]}}}' | kubectl apply -f -",
      t, state, regions, flags);
}

Test(governance, residency_violation_is_refused_at_apply) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-res");
  int rc = apply(&out, t, "Active", "\"us-east-1\"", "\"eu-only\"");
  cr_assert_neq(rc, 0, "an eu-only tenant in us-east-1 was stored");
  cr_assert(strstr(out, "TenancyPolicy eu-residency") && strstr(out, "us-east-1"),
            "the refusal must carry the evaluator's message: %s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl get tenant %s", t);
  cr_assert_neq(rc, 0, "the refused tenant exists");
  free(out);
  /* The same tenant in an EU region is accepted and converges. */
  rc = apply(&out, t, "Active", "\"eu-west-1\"", "\"eu-only\"");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tn_test_sh_until(60, &out,
                        "test \"$(kubectl get tenant %s -o "
                        "jsonpath='{.status.conditions[?(@.type==\"PolicyCompliant\")].status}')\" = True",
                        t);
  cr_assert_eq(rc, 0, "PolicyCompliant never became True");
  free(out);
}

Test(governance, an_active_tenant_cannot_be_deleted_and_the_actor_is_audited) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-guard");
  cr_assert_eq(apply(&out, t, "Active", "\"eu-west-1\"", ""), 0, "%s", out);
  free(out);
  int rc = tn_test_sh_until(60, &out,
                            "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = Active", t);
  cr_assert_eq(rc, 0);
  free(out);
  rc = tn_test_sh(&out, "kubectl delete tenant %s --wait=false", t);
  cr_assert_neq(rc, 0, "an Active tenant was deleted");
  cr_assert(strstr(out, "denied") != NULL, "%s", out);
  free(out);

  /* The transitions were asked for by the kubectl user (the admin certificate's CN); what the
   * operator does on its own (e.g. making the tenant's data key) carries its own identity. */
  char *who = NULL;
  tn_test_sh(&who, "kubectl auth whoami -o jsonpath='{.status.userInfo.username}'");
  rc = tn_test_sh(&out,
                  "'%s' audit list --tenant %s -o json | python3 -c 'import json,sys; "
                  "print(\" \".join(sorted(set(r[\"actor\"] for r in json.load(sys.stdin) "
                  "if r[\"action\"] in (\"create\", \"activate\")))))'",
                  tn_test_env("TENANCY_TENANTCTL_BIN"), t);
  cr_assert_eq(rc, 0, "%s", out);
  char want[300];
  snprintf(want, sizeof want, "%s\n", who);
  cr_assert_str_eq(out, want, "the audit rows must name the requesting user %s", who);
  free(out);
  free(who);

  /* Archived, it may go. */
  cr_assert_eq(
      tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Archived\"}}'", t), 0,
      "%s", out);
  free(out);
  rc = tn_test_sh_until(60, &out,
                        "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = Archived", t);
  cr_assert_eq(rc, 0);
  free(out);
  rc = tn_test_sh(&out, "kubectl delete tenant %s --wait --timeout=150s", t);
  cr_assert_eq(rc, 0, "an Archived tenant could not be deleted: %s", out);
  free(out);
}

static const char *tenantctl(void) { return tn_test_env("TENANCY_TENANTCTL_BIN"); }

/* The sample policy requires per-tenant keys: a data key is made, rotation adds a version and
 * the old one is kept (so data encrypted before still unwraps), each change audited. */
Test(governance, per_tenant_keys_are_made_rotated_and_audited) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-keys");
  cr_assert_eq(apply(&out, t, "Active", "\"eu-west-1\"", ""), 0, "%s", out);
  free(out);
  int rc = tn_test_sh_until(60, &out,
                            "test \"$(kubectl get tenant %s -o jsonpath='{.status.keys.version}')\" = 1", t);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "no data key version 1");
  free(out);
  cr_assert_eq(tn_test_sh(&out, "kubectl annotate tenant %s tenancy.dev/rotate-keys=r1 --overwrite", t), 0,
               "%s", out);
  free(out);
  rc = tn_test_sh_until(60, &out,
                        "test \"$(kubectl get tenant %s -o jsonpath='{.status.keys.version}')\" = 2", t);
  cr_assert_eq(rc, 0, "rotation did not make version 2");
  free(out);
  /* Both versions are kept, wrapped (no key in clear in the Secret's keys). */
  rc = tn_test_sh(&out,
                  "kubectl -n tenancy-system get secret tenant-keys-%s -o go-template='{{range $k, $v := "
                  ".data}}{{$k}} {{end}}'",
                  t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "dek-1") && strstr(out, "dek-2"), "versions kept: %s", out);
  free(out);
  rc = tn_test_sh(&out,
                  "'%s' audit list --tenant %s -o json | python3 -c 'import json,sys; "
                  "print(\" \".join(r[\"action\"] for r in json.load(sys.stdin) if "
                  "r[\"action\"].startswith(\"key.\") and r[\"outcome\"]==\"succeeded\"))'",
                  tenantctl(), t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "key.create key.rotate\n");
  free(out);
}

/* Break-glass: granted only while a policy allows it, and gone at expiry. */
Test(governance, break_glass_access_disappears_at_expiry) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-bg");
  int rc = tn_test_sh(
      &out, "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\","
            "\"metadata\":{\"name\":\"tn-test-breakglass\"},\"spec\":{\"breakGlass\":{\"allowed\":true,"
            "\"maxDuration\":\"1h\"}}}' | kubectl apply -f -");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  cr_assert_eq(apply(&out, t, "Active", "\"eu-west-1\"", ""), 0, "%s", out);
  free(out);
  rc = tn_test_sh_until(60, &out, "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = Active",
                        t);
  cr_assert_eq(rc, 0);
  free(out);
  rc = tn_test_sh(
      &out,
      "exp=$(date -u -d '+12 seconds' +%%Y-%%m-%%dT%%H:%%M:%%SZ) && kubectl patch tenant %s --type=merge -p "
      "\"{\\\"spec\\\":{\\\"breakGlass\\\":[{\\\"id\\\":\\\"bg1\\\",\\\"user\\\":\\\"alice\\\","
      "\\\"role\\\":\\\"tenant-admin\\\",\\\"reason\\\":\\\"incident "
      "42\\\",\\\"expiresAt\\\":\\\"$exp\\\"}]}}\"",
      t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tn_test_sh_until(20, &out,
                        "kubectl auth can-i create deployments --as=alice -n %s-prod | grep -qx yes", t);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "break-glass access was not granted");
  free(out);
  rc = tn_test_sh_until(60, &out, "kubectl auth can-i create deployments --as=alice -n %s-prod | grep -qx no",
                        t);
  cr_assert_eq(rc, 0, "break-glass access did not disappear at expiry");
  free(out);
  rc = tn_test_sh(&out,
                  "'%s' audit list --tenant %s -o json | python3 -c 'import json,sys; "
                  "print(\" \".join(r[\"action\"] for r in json.load(sys.stdin) if "
                  "r[\"action\"].startswith(\"break-glass\") and r[\"outcome\"]==\"succeeded\"))'",
                  tenantctl(), t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "break-glass.grant break-glass.revoke\n");
  free(out);
}

/* A quota override is honoured only when a TenancyPolicy permits that key. */
Test(governance, permitted_quota_overrides_replace_the_plan_value) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-ovr");
  int rc = tn_test_sh(
      &out, "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\","
            "\"metadata\":{\"name\":\"tn-test-overrides\"},\"spec\":{\"quotaOverrides\":[\"pods\"]}}' "
            "| kubectl apply -f -");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"environments\":[\"prod\"],"
      "\"residency\":{\"allowedRegions\":[\"eu-west-1\"]},\"quotaOverrides\":{\"pods\":77}}}' | kubectl "
      "apply -f -",
      t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tn_test_sh_until(
      60, &out,
      "test \"$(kubectl -n %s-prod get resourcequota tenant-quota -o jsonpath='{.spec.hard.pods}')\" = 77",
      t);
  cr_assert_eq(rc, 0, "the permitted override was not applied");
  free(out);
  /* A key no policy permits is refused at apply. */
  rc = tn_test_sh(
      &out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"quotaOverrides\":{\"services\":99}}}'", t);
  cr_assert_neq(rc, 0, "an override no policy permits was accepted");
  cr_assert(strstr(out, "quotaOverrides") != NULL, "%s", out);
  free(out);
}
