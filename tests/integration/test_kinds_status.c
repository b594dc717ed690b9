/* test_kinds_status.c - the status of Plans, Regions and TenancyPolicies (issue 17, "Status on
 * every kind"): the real operator binary against the real API server and PostgreSQL; every check
 * goes through kubectl as a user would. Counts follow tenants created, re-planned and deleted; a
 * Region says which of its database servers do not answer; a policy counts the tenants that
 * violate it; the short names and printer columns work; observedGeneration follows; an idle
 * resync writes nothing. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_cluster.h"
#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;

static void start(void) {
  tn_test_install_api();
  /* What a failed earlier run of this suite left behind would keep the operator busy. */
  char *out = NULL;
  tn_test_sh(&out,
             "kubectl get tenants,tenancypolicies,plans,regions -o name | grep '/ks-' | xargs -r kubectl "
             "delete --wait=false");
  free(out);
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", "--sync-period=3s", NULL});
}

static void stop(void) {
  int code = tn_test_operator_stop(&op, SIGTERM, 40);
  if (code != 0)
    tn_test_operator_dump_log(&op);
}

TestSuite(kinds_status, .init = start, .fini = stop, .timeout = 240);

#define OK(...) tn_test_sh_ok(NULL, __VA_ARGS__)

/* Waits until `kubectl get WHAT -o jsonpath=JSONPATH` prints WANT. */
#define wait_field(...) tn_test_wait_jsonpath(&op, __VA_ARGS__)

#define apply(...) tn_test_apply_json(NULL, __VA_ARGS__)

static void apply_plan(const char *name, int pods) {
  apply("{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Plan\",\"metadata\":{\"name\":\"%s\"},\"spec\":{"
        "\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":\"1Gi\",\"pods\":%d,\"services\":2}}}",
        name, pods);
}

/* A Region with the given JSON members after isolationModes ("" for none). */
static void apply_region(const char *name, const char *extra) {
  apply(
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},\"spec\":{"
      "\"available\":true,\"isolationModes\":[\"shared\"]%s}}",
      name, extra);
}

static void apply_tenant(const char *name, const char *state, const char *plan, const char *region,
                         const char *flags) {
  apply(
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},\"spec\":{"
      "\"state\":\"%s\",\"plan\":\"%s\",\"isolation\":\"shared\",\"residency\":{\"allowedRegions\":[\"%s\"],"
      "\"flags\":[%s]},\"environments\":[\"prod\"]}}",
      name, state, plan, region, flags);
}

/* ---- counts ------------------------------------------------------------------------------------ */

Test(kinds_status, counts_follow_tenants_created_replanned_and_deleted) {
  char p1[64], p2[64], r[64], t1[64], t2[64], what[128];
  tn_test_unique_name(p1, sizeof p1, "ks-plan");
  tn_test_unique_name(p2, sizeof p2, "ks-plan");
  tn_test_unique_name(r, sizeof r, "ks-reg");
  tn_test_unique_name(t1, sizeof t1, "ks-tn");
  tn_test_unique_name(t2, sizeof t2, "ks-tn");
  apply_plan(p1, 5);
  apply_plan(p2, 5);
  apply_region(r, "");
  snprintf(what, sizeof what, "plan %s", p1);
  wait_field(what, "{.status.tenantsCount} {.status.conditions[?(@.type==\"Valid\")].status}", "0 True", 30);

  apply_tenant(t1, "Active", p1, r, "");
  apply_tenant(t2, "Active", p1, r, "");
  wait_field(what, "{.status.tenantsCount}", "2", 30);
  snprintf(what, sizeof what, "region %s", r);
  wait_field(what, "{.status.tenantsPlaced}", "2", 90); /* once the operator placed them */

  /* Re-planned: the count moves from one plan to the other. */
  OK("kubectl patch tenant %s --type=merge -p '{\"spec\":{\"plan\":\"%s\"}}'", t2, p2);
  snprintf(what, sizeof what, "plan %s", p1);
  wait_field(what, "{.status.tenantsCount}", "1", 30);
  snprintf(what, sizeof what, "plan %s", p2);
  wait_field(what, "{.status.tenantsCount}", "1", 30);

  /* Deleted: gone from the plan's count and the region's. */
  OK("kubectl delete tenant %s --wait=false", t1);
  snprintf(what, sizeof what, "plan %s", p1);
  wait_field(what, "{.status.tenantsCount}", "0", 90);
  snprintf(what, sizeof what, "region %s", r);
  wait_field(what, "{.status.tenantsPlaced}", "1", 90);

  /* observedGeneration follows a spec change, on the status and on each condition. */
  snprintf(what, sizeof what, "plan %s", p1);
  wait_field(what, "{.metadata.generation} {.status.observedGeneration}", "1 1", 30);
  apply_plan(p1, 7);
  wait_field(what, "{.metadata.generation} {.status.observedGeneration}", "2 2", 30);
  wait_field(what, "{.status.conditions[*].observedGeneration}", "2 2", 30);

  OK("kubectl delete tenant %s --wait=true --timeout=120s", t2);
  OK("kubectl delete tenant %s --ignore-not-found --wait=true --timeout=120s", t1);
  OK("kubectl delete plan %s %s", p1, p2);
  OK("kubectl delete region %s", r);
}

/* ---- regions ---------------------------------------------------------------------------------- */

Test(kinds_status, a_region_says_which_database_server_does_not_answer) {
  char r[64], what[128], extra[1024];
  tn_test_unique_name(r, sizeof r, "ks-db");
  const char *pg_host = tn_test_env("TENANCY_PG_HOST"), *pg_port = tn_test_env("TENANCY_PG_PORT");
  int closed = tn_test_free_port(); /* nothing listens there */
  snprintf(
      extra, sizeof extra,
      ",\"databaseServers\":[{\"name\":\"pg-up\",\"host\":\"%s\",\"port\":%s,\"serves\":[\"shared\"],"
      "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"ks-admin\"}},{\"name\":\"pg-down\","
      "\"host\":\"127.0.0.1\",\"port\":%d,\"serves\":[\"shared\"],\"adminSecretRef\":{\"namespace\":"
      "\"tenancy-system\",\"name\":\"ks-admin\"}}]",
      pg_host, pg_port, closed);
  apply_region(r, extra);
  snprintf(what, sizeof what, "region %s", r);
  wait_field(what, "{.status.conditions[?(@.type==\"Ready\")].status}", "False", 30);
  wait_field(what, "{.status.conditions[?(@.type==\"Ready\")].reason}", "DatabaseServerUnreachable", 5);
  wait_field(what, "{.status.databaseServersReady}", "1/2", 5);
  wait_field(what, "{.status.databaseServers[?(@.name==\"pg-up\")].reachable}", "true", 5);
  wait_field(what, "{.status.databaseServers[?(@.name==\"pg-down\")].reachable}", "false", 5);
  char *msg = tn_test_output(
      "kubectl get region %s -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].message}'", r);
  char want[64];
  snprintf(want, sizeof want, "127.0.0.1:%d", closed);
  cr_expect(strstr(msg, "1 of 2 database servers reachable") && strstr(msg, "pg-down") && strstr(msg, want),
            "the message must name the server and its address: %s", msg);
  cr_expect(!strstr(msg, "pg-up"), "a reachable server is not blamed: %s", msg);
  cr_expect(!strstr(msg, "postgres://") && !strstr(msg, "postgresql://") && !strstr(msg, "password"),
            "no DSN or secret in the status: %s", msg);
  free(msg);
  wait_field(what, "{.status.available} {.status.conditions[?(@.type==\"Available\")].status}", "true True",
             5);

  /* The server goes away from the list: Ready again, and Available follows spec.available. */
  snprintf(extra, sizeof extra,
           ",\"databaseServers\":[{\"name\":\"pg-up\",\"host\":\"%s\",\"port\":%s,\"serves\":[\"shared\"],"
           "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"ks-admin\"}}]",
           pg_host, pg_port);
  apply_region(r, extra);
  wait_field(what, "{.status.conditions[?(@.type==\"Ready\")].reason}", "DatabaseServersReachable", 30);
  wait_field(what, "{.status.databaseServersReady}", "1/1", 5);
  OK("kubectl patch region %s --type=merge -p '{\"spec\":{\"available\":false}}'", r);
  wait_field(what, "{.status.available} {.status.conditions[?(@.type==\"Available\")].reason}",
             "false Unavailable", 30);

  /* The probes offer no credentials and log no connection string. */
  char *log = NULL;
  tn_test_sh(
      &log,
      "grep -c 'password=\\|passfile\\|postgres://\\|postgresql://\\|tenancy-operator-probe' '%s' || true",
      op.log_path);
  cr_expect_str_eq(log, "0\n", "the operator log shows a connection string");
  free(log);
  OK("kubectl delete region %s", r);
}

/* ---- policies -------------------------------------------------------------------------------------- */

Test(kinds_status, a_policy_counts_the_tenants_that_violate_it) {
  char pol[64], flag[64], t[64], ok[64], what[128];
  tn_test_unique_name(pol, sizeof pol, "ks-pol");
  tn_test_unique_name(flag, sizeof flag, "ks-flag");
  tn_test_unique_name(t, sizeof t, "ks-viol");
  tn_test_unique_name(ok, sizeof ok, "ks-fine");
  char flags[96];
  snprintf(flags, sizeof flags, "\"%s\"", flag);
  /* Draft tenants: a policy applies to them too, and they need no provisioning. */
  apply_tenant(t, "Draft", "starter", "us-east-1", flags);
  apply_tenant(ok, "Draft", "starter", "eu-west-1", flags);
  apply("{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":{\"name\":\"%s\"},"
        "\"spec\":{\"residency\":[{\"flag\":\"%s\",\"allowedRegions\":[\"eu-west-1\"]}]}}",
        pol, flag);
  snprintf(what, sizeof what, "tenancypolicy %s", pol);
  wait_field(what, "{.status.conditions[?(@.type==\"Valid\")].status}", "True", 30);
  char want[160];
  snprintf(want, sizeof want, "1 [\"%s\"]", t);
  wait_field(what, "{.status.tenantsInViolation} {.status.violatingTenants}", want, 30);

  /* The tenant is corrected: no violation left. */
  apply_tenant(t, "Draft", "starter", "eu-west-1", flags);
  wait_field(what, "{.status.tenantsInViolation} {.status.violatingTenants}", "0 []", 30);
  /* A second violator by a policy change: the count follows the policy too. */
  apply("{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":{\"name\":\"%s\"},"
        "\"spec\":{\"residency\":[{\"flag\":\"%s\",\"allowedRegions\":[\"eu-central-1\"]}]}}",
        pol, flag);
  wait_field(what, "{.status.tenantsInViolation}", "2", 30);
  wait_field(what, "{.metadata.generation} {.status.observedGeneration}", "2 2", 5);
  /* A deleted tenant violates nothing. */
  OK("kubectl delete tenant %s --wait=true --timeout=60s", ok);
  wait_field(what, "{.status.tenantsInViolation} {.status.violatingTenants}", want, 30);
  OK("kubectl delete tenant %s --wait=true --timeout=60s", t);
  OK("kubectl delete tenancypolicy %s", pol);
}

/* ---- short names and printer columns ---------------------------------------------------------------- */

/* The first line of OUT with runs of spaces squeezed to one, malloc'd. */
static char *squeeze(const char *out, int line) {
  const char *p = out;
  for (int i = 0; i < line && p; i++)
    if ((p = strchr(p, '\n')))
      p++;
  cr_assert_not_null(p, "no line %d in: %s", line, out);
  char *r = calloc(strlen(p) + 1, 1), *w = r;
  bool sp = false;
  for (; *p && *p != '\n'; p++) {
    if (*p == ' ') {
      sp = true;
      continue;
    }
    if (sp && w != r)
      *w++ = ' ';
    sp = false;
    *w++ = *p;
  }
  return r;
}

static void expect_table(const char *resource, const char *name, const char *header, const char *row_prefix) {
  char *out = NULL;
  cr_assert_eq(tn_test_sh(&out, "kubectl get %s %s", resource, name), 0, "%s", out);
  char *h = squeeze(out, 0), *row = squeeze(out, 1);
  cr_expect_str_eq(h, header, "kubectl get %s", resource);
  cr_expect(strncmp(row, row_prefix, strlen(row_prefix)) == 0, "kubectl get %s: row \"%s\", want \"%s...\"",
            resource, row, row_prefix);
  free(h);
  free(row);
  free(out);
}

Test(kinds_status, short_names_and_printer_columns) {
  char p[64], r[64], pol[64], t[64], want[256];
  tn_test_unique_name(p, sizeof p, "ks-col");
  tn_test_unique_name(r, sizeof r, "ks-col");
  tn_test_unique_name(pol, sizeof pol, "ks-col");
  tn_test_unique_name(t, sizeof t, "ks-col");
  apply_plan(p, 3);
  apply_region(r, "");
  apply("{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":{\"name\":\"%s\"},"
        "\"spec\":{\"retention\":{\"archivedData\":\"30d\"}}}",
        pol);
  apply_tenant(t, "Draft", p, r, "");
  char what[128];
  snprintf(what, sizeof what, "plan %s", p);
  wait_field(what, "{.status.tenantsCount}", "1", 30);
  snprintf(what, sizeof what, "region %s", r);
  wait_field(what, "{.status.databaseServersReady}", "0/0", 30);
  snprintf(what, sizeof what, "tenancypolicy %s", pol);
  wait_field(what, "{.status.tenantsInViolation}", "0", 30);

  snprintf(want, sizeof want, "%s 1 True ", p);
  expect_table("tplan", p, "NAME TENANTS VALID AGE", want);
  snprintf(want, sizeof want, "%s true 0/0 0 ", r);
  expect_table("treg", r, "NAME AVAILABLE SERVERS TENANTS AGE", want);
  snprintf(want, sizeof want, "%s 0 True ", pol);
  expect_table("tpol", pol, "NAME VIOLATIONS VALID AGE", want);
  /* The spec columns moved to -o wide. */
  char *out = NULL;
  cr_assert_eq(tn_test_sh(&out, "kubectl get tplan %s -o wide", p), 0, "%s", out);
  char *h = squeeze(out, 0);
  cr_expect_str_eq(h, "NAME TENANTS VALID AGE CPU MEMORY PODS RPS DISPLAY NAME");
  free(h);
  free(out);
  /* All three at once, by short name. */
  cr_assert_eq(tn_test_sh(&out, "kubectl get tplan,treg,tpol -o name"), 0, "%s", out);
  cr_expect(strstr(out, "plan.tenancy.dev/") && strstr(out, "region.tenancy.dev/") &&
                strstr(out, "tenancypolicy.tenancy.dev/"),
            "%s", out);
  free(out);
  OK("kubectl delete tenant %s --wait=true --timeout=60s", t);
  OK("kubectl delete plan %s", p);
  OK("kubectl delete region %s", r);
  OK("kubectl delete tenancypolicy %s", pol);
}

/* ---- idle --------------------------------------------------------------------------------------------- */

static double writes(void) {
  char *body = NULL;
  double sum = 0;
  if (tn_test_http_get(op.metrics_port, "/metrics", &body) == 200) {
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n"))
      if (strncmp(line, "rest_client_requests_total{", 27) == 0 && !strstr(line, "method=\"GET\""))
        sum += strtod(strrchr(line, ' ') + 1, NULL);
  }
  free(body);
  return sum;
}

Test(kinds_status, an_idle_resync_writes_no_status) {
  char p[64], r[64], pol[64], t[64], what[128], extra[512];
  tn_test_unique_name(p, sizeof p, "ks-idle");
  tn_test_unique_name(r, sizeof r, "ks-idle");
  tn_test_unique_name(pol, sizeof pol, "ks-idle");
  tn_test_unique_name(t, sizeof t, "ks-idle");
  apply_plan(p, 3);
  /* A Region with a database server: its probes run again, and write only when the answer changes. */
  snprintf(extra, sizeof extra,
           ",\"databaseServers\":[{\"name\":\"pg\",\"host\":\"%s\",\"port\":%s,\"serves\":[\"shared\"],"
           "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"ks-admin\"}}]",
           tn_test_env("TENANCY_PG_HOST"), tn_test_env("TENANCY_PG_PORT"));
  apply_region(r, extra);
  char flags[96];
  snprintf(flags, sizeof flags, "\"%s\"", t);
  /* An Active tenant that the policy (created after it) finds in violation: it stays where it is. */
  apply_tenant(t, "Active", p, "us-east-1", flags);
  snprintf(what, sizeof what, "tenant %s", t);
  wait_field(what, "{.status.state}", "Active", 90);
  apply("{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":{\"name\":\"%s\"},"
        "\"spec\":{\"residency\":[{\"flag\":\"%s\",\"allowedRegions\":[\"eu-west-1\"]}]}}",
        pol, t);
  snprintf(what, sizeof what, "tenancypolicy %s", pol);
  wait_field(what, "{.status.tenantsInViolation}", "1", 30);
  snprintf(what, sizeof what, "region %s", r);
  wait_field(what, "{.status.databaseServersReady}", "1/1", 30);
  snprintf(what, sizeof what, "plan %s", p);
  wait_field(what, "{.status.tenantsCount}", "1", 30);

  /* Quiescence first (tenants of earlier tests may still be finishing), then two resyncs. */
  double quiet_since = tn_test_now(), last = writes(), give_up = tn_test_now() + 90;
  while (tn_test_now() - quiet_since < 4 && tn_test_now() < give_up) {
    usleep(250 * 1000);
    double w = writes();
    if (w != last) {
      last = w;
      quiet_since = tn_test_now();
    }
  }
  cr_assert_lt(tn_test_now(), give_up, "the operator never stopped writing");
  double before = writes();
  double rec_before =
      tn_test_metric_sum(op.metrics_port, "controller_runtime_reconcile_total{controller=\"kinds-status\"");
  sleep(8); /* --sync-period=3s: at least two full resyncs */
  double after = writes();
  double rec_after =
      tn_test_metric_sum(op.metrics_port, "controller_runtime_reconcile_total{controller=\"kinds-status\"");
  cr_assert_gt(rec_after, rec_before, "no status reconcile happened: the test would prove nothing");
  cr_assert_eq(after, before, "%.0f API writes during idle resyncs", after - before);

  OK("kubectl delete tenant %s --wait=true --timeout=60s", t);
  OK("kubectl delete plan %s", p);
  OK("kubectl delete region %s", r);
  OK("kubectl delete tenancypolicy %s", pol);
}
