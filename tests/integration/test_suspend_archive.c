/* test_suspend_archive.c - Suspended and Archived as the product describes them, end to end
 * through kubectl against the real API server and PostgreSQL:
 *  - suspend: the tenant's groups keep only viewer access (or none, by policy), checked with
 *    `kubectl auth can-i --as-group` against the roles we ship; new pods are refused (quota);
 *    running Deployments keep their replicas (CutOff) or are scaled to zero and given back
 *    exactly (ScaleToZero); database logins are refused and come back on resume; any other edit
 *    of the tenant is refused by the API server with a message;
 *  - archive: namespaces and database rows are kept for the retention, closed; restore
 *    (Archived -> Active) brings access, workloads and logins back, audited as "restore";
 *  - purge: with a TenancyPolicy retention.archivedData of 0d the data goes at once, and a
 *    restore is then refused with the reason.
 * TenancyPolicies apply to every tenant: the suite runs its tests one at a time (--jobs=1, as
 * hack/test.sh does) and each test removes the policy it made. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_cluster.h"
#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;
static char region[64];

static void start(void) {
  tn_test_install_api();
  tn_test_env("TENANCY_PG_DSN"); /* the operator's audit trail, from the environment */
  tn_test_unique_name(region, sizeof region, "sa-region");
  tn_test_apply_region(region, "pg-local");
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", NULL});
}

static void stop(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  tn_test_sh(NULL, "kubectl delete region %s --wait=false", region);
}

TestSuite(suspend_archive, .init = start, .fini = stop, .timeout = 420);

/* ---- helpers ------------------------------------------------------------------------------- */

/* A Pod that Pod Security "restricted" (the namespaces' level) accepts: only the quota can refuse
 * it. A printf format: its one %s is the name. */
#define RESTRICTED_POD                                                                                       \
  "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%%s\"},\"spec\":{"                       \
  "\"securityContext\":{\"runAsNonRoot\":true,\"runAsUser\":1000,\"seccompProfile\":{\"type\":"              \
  "\"RuntimeDefault\"}},\"containers\":[{\"name\":\"c\",\"image\":\"registry.k8s.io/pause:3.10\","           \
  "\"securityContext\":{\"allowPrivilegeEscalation\":false,\"capabilities\":{\"drop\":[\"ALL\"]}}}]}}"

/* Runs the command; fails the test with its output (and the operator's log) when it exits non-zero. */
#define OK(...) tn_test_sh_ok(&op, __VA_ARGS__)

/* Polls the shell condition until it holds; fails the test with the tenant's status when not. */
#define wait_for(timeout, t, what, ...) tn_test_wait_for(&op, t, timeout, what, __VA_ARGS__)

static void apply_tenant(const char *t, const char *state) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"%s\",\"plan\":\"standard\",\"isolation\":\"shared\",\"environments\":[\"prod\"],"
      "\"residency\":{\"allowedRegions\":[\"%s\"]},\"identity\":{\"domain\":\"%s.example\","
      "\"groupBindings\":[{\"group\":\"%s-devs\",\"role\":\"tenant-developer\"}]}}}' | kubectl apply -f -",
      t, state, region, t, t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static void set_state(const char *t, const char *state) {
  OK("kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"%s\"}}'", t, state);
}

/* status.state is `state` and Ready is True at the current generation. */
static void wait_settled(const char *t, const char *state, double timeout) {
  char what[128];
  snprintf(what, sizeof what, "tenant %s %s and Ready", t, state);
  wait_for(timeout, t, what,
           "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}/"
           "{.status.conditions[?(@.type==\"Ready\")].status}/{.status.observedGeneration}/"
           "{.metadata.generation}' | awk -F/ '{print $1\"/\"$2\"/\"($3==$4)}')\" = %s/True/1",
           t, state);
}

/* "yes" or "no": may the tenant's developers (group <t>-devs) do VERB RESOURCE in <t>-prod? */
static char *can_i(const char *t, const char *verb, const char *resource) {
  return tn_test_output("kubectl auth can-i %s %s -n %s-prod --as=dev@%s.example --as-group=%s-devs "
                        "2>/dev/null",
                        verb, resource, t, t, t);
}

static void assert_can(const char *t, const char *verb, const char *resource, const char *want,
                       const char *when) {
  char *got = can_i(t, verb, resource);
  cr_assert_str_eq(got, want, "%s: can the tenant's developers %s %s? %s (want %s)", when, verb, resource,
                   got, want);
  free(got);
}

static void create_deployment(const char *t, const char *name, int replicas) {
  OK("printf '%%s' '{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"%s\","
     "\"namespace\":\"%s-prod\"},\"spec\":{\"replicas\":%d,\"selector\":{\"matchLabels\":{\"app\":\"%s\"}},"
     "\"template\":{\"metadata\":{\"labels\":{\"app\":\"%s\"}},\"spec\":{\"containers\":[{\"name\":\"c\","
     "\"image\":\"registry.k8s.io/pause:3.10\"}]}}}}' | kubectl apply -f -",
     name, t, replicas, name, name);
}

static char *replicas_of(const char *t, const char *kind, const char *name) {
  return tn_test_output("kubectl -n %s-prod get %s %s -o jsonpath='{.spec.replicas}/"
                        "{.metadata.annotations.tenancy\\.dev/suspended-replicas}'",
                        t, kind, name);
}

static void wait_login(const char *t, const char *sql, const char *want, double timeout) {
  char *out = NULL;
  double end = tn_test_now() + timeout;
  int rc;
  for (;;) {
    free(out);
    out = NULL;
    rc = tn_test_psql_as(t, sql, &out);
    if ((rc == 0 && strcmp(out, want) == 0) || tn_test_now() > end)
      break;
    usleep(500 * 1000);
  }
  cr_assert_eq(rc, 0, "tenant %s cannot log in: %s", t, out);
  cr_assert_str_eq(out, want);
  free(out);
}

static void wait_login_refused(const char *t, double timeout) {
  char what[128];
  snprintf(what, sizeof what, "login of tenant %s refused", t);
  wait_for(timeout, t, what,
           "uri=$(kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.uri}' | base64 -d) && "
           "PGCONNECT_TIMEOUT=5 psql \"$uri&sslrootcert=$TENANCY_CA_FILE\" -tAc 'select 1' 2>&1 | "
           "grep -q 'not permitted to log in\\|password authentication failed'",
           t);
}

static char *schema_of(const char *t) {
  return tn_test_output("kubectl get tenant %s -o jsonpath='{.status.database.schema}'", t);
}

/* The audit rows of the tenant as "action:outcome" words, oldest first. */
static char *audit_actions(const char *t) {
  return tn_test_output(
      "'%s' audit list --tenant %s -o json | python3 -c 'import json,sys; "
      "print(\" \".join(r[\"action\"]+\":\"+r[\"outcome\"] for r in json.load(sys.stdin)))'",
      tn_test_env("TENANCY_TENANTCTL_BIN"), t);
}

static void apply_policy(const char *name, const char *spec) {
  OK("printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\","
     "\"metadata\":{\"name\":\"%s\"},\"spec\":%s}' | kubectl apply -f -",
     name, spec);
  sleep(1); /* the operator's policy cache */
}

/* kubectl delete, waited for: the finalizer drops the database while this test's Region (removed
 * by the suite's fini) still says where it is. */
static void delete_tenant(const char *t) { OK("kubectl delete tenant %s --wait --timeout=120s", t); }

/* ---- Suspended ------------------------------------------------------------------------------ */

Test(suspend_archive, suspend_cuts_access_pods_logins_and_edits_and_resume_is_exact) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "sa-sus");
  apply_tenant(t, "Active");
  wait_settled(t, "Active", 90);
  wait_login(t, "select 1", "1\n", 30);
  char *schema = schema_of(t);
  char sql[256];
  snprintf(sql, sizeof sql, "create table %s.kept(x int); insert into %s.kept values (42)", schema, schema);
  cr_assert_eq(tn_test_psql_as(t, sql, &out), 0, "%s", out);
  free(out);
  create_deployment(t, "web", 3);
  assert_can(t, "create", "deployments", "yes", "Active");
  assert_can(t, "delete", "pods", "yes", "Active");
  /* While Active the same pod is accepted: the refusal below is the suspension's. */
  OK("printf '" RESTRICTED_POD "' early | kubectl -n %s-prod create -f -", t);

  set_state(t, "Suspended");
  wait_settled(t, "Suspended", 60);

  /* Access reduced to viewer (the default): reads yes, writes no. */
  assert_can(t, "create", "deployments", "no", "Suspended");
  assert_can(t, "delete", "pods", "no", "Suspended");
  assert_can(t, "patch", "deployments", "no", "Suspended");
  assert_can(t, "get", "deployments", "yes", "Suspended (viewer)");
  char *rb = tn_test_output("kubectl -n %s-prod get rolebindings -l tenancy.dev/tenant=%s "
                            "-o jsonpath='{.items[*].roleRef.name}'",
                            t, t);
  cr_assert_str_eq(rb, "tenancy-tenant-viewer");
  free(rb);

  /* New pods are refused, even to a cluster administrator (quota pods 0). */
  wait_for(
      30, t, "a new pod refused by the quota",
      "printf '" RESTRICTED_POD "' late | kubectl -n %s-prod create -f - 2>&1 | grep -q 'exceeded quota'", t);
  cr_assert_neq(tn_test_sh(NULL, "kubectl -n %s-prod get pod late >/dev/null 2>&1", t), 0,
                "a pod was created in a suspended tenant");

  /* Running workloads are cut off by the deny-all policy, replicas untouched (CutOff). */
  char *np =
      tn_test_output("kubectl -n %s-prod get networkpolicy -o jsonpath='{.items[*].metadata.name}'", t);
  cr_assert_str_eq(np, "default-deny suspended-deny-all");
  free(np);
  char *rep = replicas_of(t, "deployment", "web");
  cr_assert_str_eq(rep, "3/", "CutOff leaves replicas alone");
  free(rep);

  /* Database logins are refused. */
  wait_login_refused(t, 30);

  /* Any edit other than resume or archive is refused by the API server, with a message. */
  int rc = tn_test_sh(
      &out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"displayName\":\"changed\"}}'", t);
  cr_assert_neq(rc, 0, "a Suspended tenant's spec was edited");
  cr_assert(strstr(out, "Suspended") && strstr(out, "resume"), "the refusal must say why: %s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"plan\":\"starter\"}}'", t);
  cr_assert_neq(rc, 0, "a Suspended tenant's plan was changed");
  free(out);

  /* Resume: the developers' own role, the same replicas, logins and data back. */
  set_state(t, "Active");
  wait_settled(t, "Active", 60);
  assert_can(t, "create", "deployments", "yes", "resumed");
  rep = replicas_of(t, "deployment", "web");
  cr_assert_str_eq(rep, "3/");
  free(rep);
  snprintf(sql, sizeof sql, "select x from %s.kept", schema);
  wait_login(t, sql, "42\n", 30);
  char *pods =
      tn_test_output("kubectl -n %s-prod get resourcequota tenant-quota -o jsonpath='{.spec.hard.pods}'", t);
  cr_assert_str_eq(pods, "50");
  free(pods);
  char *audit = audit_actions(t);
  cr_assert(strstr(audit, "suspend:succeeded") && strstr(audit, "resume:succeeded"), "%s", audit);
  free(audit);
  free(schema);
  delete_tenant(t);
}

Test(suspend_archive, scale_to_zero_and_no_access_by_policy_replicas_exact_on_resume) {
  char t[64], pol[64];
  tn_test_unique_name(t, sizeof t, "sa-stz");
  tn_test_unique_name(pol, sizeof pol, "sa-stz");
  apply_policy(pol, "{\"suspension\":{\"access\":\"None\",\"workloads\":\"ScaleToZero\"}}");
  apply_tenant(t, "Active");
  wait_settled(t, "Active", 90);
  create_deployment(t, "web", 3);
  create_deployment(t, "idle", 0);
  OK("printf '%%s' '{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\",\"metadata\":{\"name\":\"db\","
     "\"namespace\":\"%s-prod\"},\"spec\":{\"replicas\":2,\"serviceName\":\"db\",\"selector\":{"
     "\"matchLabels\":"
     "{\"app\":\"db\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"db\"}},\"spec\":{\"containers\":[{"
     "\"name\":\"c\",\"image\":\"registry.k8s.io/pause:3.10\"}]}}}}' | kubectl apply -f -",
     t);

  set_state(t, "Suspended");
  wait_settled(t, "Suspended", 60);
  /* No access at all (None), not even reading. */
  assert_can(t, "get", "deployments", "no", "Suspended with access None");
  assert_can(t, "create", "deployments", "no", "Suspended with access None");
  /* Scaled to zero, the replicas kept in the annotation; one already at zero untouched. */
  wait_for(30, t, "workloads scaled to zero",
           "test \"$(kubectl -n %s-prod get deployment web -o jsonpath='{.spec.replicas}')\" = 0", t);
  char *rep = replicas_of(t, "deployment", "web");
  cr_assert_str_eq(rep, "0/3");
  free(rep);
  rep = replicas_of(t, "statefulset", "db");
  cr_assert_str_eq(rep, "0/2");
  free(rep);
  rep = replicas_of(t, "deployment", "idle");
  cr_assert_str_eq(rep, "0/");
  free(rep);
  wait_for(20, t, "status.scaledWorkloads 2",
           "test \"$(kubectl get tenant %s -o jsonpath='{.status.scaledWorkloads}')\" = 2", t);

  set_state(t, "Active");
  wait_settled(t, "Active", 60);
  wait_for(30, t, "replicas given back",
           "test \"$(kubectl -n %s-prod get deployment web -o jsonpath='{.spec.replicas}')\" = 3", t);
  rep = replicas_of(t, "deployment", "web");
  cr_assert_str_eq(rep, "3/", "exactly the replicas it had, and the annotation gone");
  free(rep);
  rep = replicas_of(t, "statefulset", "db");
  cr_assert_str_eq(rep, "2/");
  free(rep);
  wait_for(20, t, "status.scaledWorkloads gone",
           "test -z \"$(kubectl get tenant %s -o jsonpath='{.status.scaledWorkloads}')\"", t);
  assert_can(t, "create", "deployments", "yes", "resumed");
  OK("kubectl delete tenancypolicy %s", pol);
  delete_tenant(t);
}

/* ---- Archived ------------------------------------------------------------------------------- */

Test(suspend_archive, archive_keeps_namespace_and_rows_and_restore_brings_them_back) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "sa-arc");
  apply_tenant(t, "Active");
  wait_settled(t, "Active", 90);
  wait_login(t, "select 1", "1\n", 30);
  char *schema = schema_of(t);
  char sql[256];
  snprintf(sql, sizeof sql, "create table %s.kept(x int); insert into %s.kept values (7)", schema, schema);
  cr_assert_eq(tn_test_psql_as(t, sql, &out), 0, "%s", out);
  free(out);
  create_deployment(t, "web", 2);
  char *ns_uid = tn_test_output("kubectl get namespace %s-prod -o jsonpath='{.metadata.uid}'", t);

  set_state(t, "Archived");
  wait_settled(t, "Archived", 60);
  /* The namespace is kept (the same one), closed, with no access. */
  char *uid =
      tn_test_output("kubectl get namespace %s-prod -o jsonpath='{.metadata.uid}/{.status.phase}'", t);
  char want[128];
  snprintf(want, sizeof want, "%s/Active", ns_uid);
  cr_assert_str_eq(uid, want, "the namespace was not kept");
  free(uid);
  assert_can(t, "get", "pods", "no", "Archived");
  char *np =
      tn_test_output("kubectl -n %s-prod get networkpolicy -o jsonpath='{.items[*].metadata.name}'", t);
  cr_assert_str_eq(np, "default-deny suspended-deny-all");
  free(np);
  wait_for(30, t, "workloads scaled to zero while archived",
           "test \"$(kubectl -n %s-prod get deployment web -o jsonpath='{.spec.replicas}/"
           "{.metadata.annotations.tenancy\\.dev/suspended-replicas}')\" = 0/2",
           t);
  /* The retention without a policy: 30 days from archivedAt. */
  char *days = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.archive.retentionDays}'", t);
  cr_assert_str_eq(days, "30");
  free(days);
  OK("python3 -c 'import sys,datetime as d; p=lambda s: d.datetime.strptime(s, "
     "\"%%Y-%%m-%%dT%%H:%%M:%%SZ\"); "
     "sys.exit(0 if p(sys.argv[2]) - p(sys.argv[1]) == d.timedelta(days=30) else 1)' "
     "$(kubectl get tenant %s -o jsonpath='{.status.archivedAt} {.status.archive.purgeAfter}')",
     t);
  /* The database is kept, logins blocked. */
  wait_login_refused(t, 30);
  snprintf(sql, sizeof sql, "select x from %s.kept", schema);
  char *db = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.database.database}'", t);
  cr_assert_eq(tn_test_psql_admin(db, sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "7\n", "the archived rows are gone");
  free(db);
  free(out);

  /* Restore: policy-checked, audited, everything back. */
  set_state(t, "Active");
  wait_settled(t, "Active", 90);
  assert_can(t, "create", "deployments", "yes", "restored");
  wait_login(t, sql, "7\n", 30);
  wait_for(30, t, "replicas given back on restore",
           "test \"$(kubectl -n %s-prod get deployment web -o jsonpath='{.spec.replicas}/"
           "{.metadata.annotations.tenancy\\.dev/suspended-replicas}')\" = 2/",
           t);
  uid = tn_test_output("kubectl get namespace %s-prod -o jsonpath='{.metadata.uid}'", t);
  cr_assert_str_eq(uid, ns_uid);
  free(uid);
  char *archive = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.archive}'", t);
  cr_assert_str_eq(archive, "", "status.archive stays after the restore");
  free(archive);
  char *audit = audit_actions(t);
  cr_assert(strstr(audit, "archive:succeeded") && strstr(audit, "restore:started") &&
                strstr(audit, "restore:succeeded"),
            "%s", audit);
  free(audit);
  wait_for(20, t, "a Restored event",
           "kubectl get events.events.k8s.io -n default --field-selector regarding.name=%s "
           "-o jsonpath='{range .items[*]}{.reason} {.note}{\"\\n\"}{end}' | grep -q '^Restored .*Archived "
           "-> Active'",
           t);
  free(ns_uid);
  free(schema);
  delete_tenant(t);
}

Test(suspend_archive, a_restore_can_be_refused_by_policy) {
  char t[64], pol[64];
  tn_test_unique_name(t, sizeof t, "sa-deny");
  tn_test_unique_name(pol, sizeof pol, "sa-deny");
  apply_tenant(t, "Archived");
  wait_settled(t, "Archived", 90);
  /* allowedActions without restore: the restore is denied and nothing is reopened. */
  apply_policy(pol, "{\"allowedActions\":[{\"action\":\"activate\"},{\"action\":\"suspend\"},"
                    "{\"action\":\"resume\"},{\"action\":\"archive\"},{\"action\":\"delete\"}]}");
  set_state(t, "Active");
  wait_for(30, t, "PolicyDenied",
           "test \"$(kubectl get tenant %s -o "
           "jsonpath='{.status.conditions[?(@.type==\"PolicyCompliant\")].reason}')\" = PolicyDenied",
           t);
  char *state = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.state}'", t);
  cr_assert_str_eq(state, "Archived");
  free(state);
  assert_can(t, "create", "deployments", "no", "restore denied");
  char *audit = audit_actions(t);
  cr_assert_null(strstr(audit, "restore:started"), "a denied restore was started: %s", audit);
  free(audit);
  /* Allowed again: it goes through. */
  OK("kubectl delete tenancypolicy %s", pol);
  OK("kubectl annotate tenant %s example.com/poke=1 --overwrite", t);
  wait_settled(t, "Active", 60);
  delete_tenant(t);
}

Test(suspend_archive, purge_after_retention_and_restore_refused) {
  char t[64], pol[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "sa-purge");
  tn_test_unique_name(pol, sizeof pol, "sa-purge");
  apply_tenant(t, "Active");
  wait_settled(t, "Active", 90);
  wait_login(t, "select 1", "1\n", 30);
  char *schema = schema_of(t);
  char *role = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.database.role}'", t);
  char *db = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.database.database}'", t);
  /* Retention 0d: the archived data goes as soon as it is archived. */
  apply_policy(pol, "{\"retention\":{\"archivedData\":\"0d\"}}");
  set_state(t, "Archived");
  wait_for(120, t, "status.archive.purgedAt set",
           "test -n \"$(kubectl get tenant %s -o jsonpath='{.status.archive.purgedAt}')\"", t);
  cr_assert_neq(tn_test_sh(NULL, "kubectl get namespace %s-prod >/dev/null 2>&1", t), 0,
                "the namespace outlived the purge");
  char sql[256];
  snprintf(sql, sizeof sql, "select count(*) from pg_namespace where nspname = '%s'", schema);
  cr_assert_eq(tn_test_psql_admin(db, sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "schema %s outlived the purge", schema);
  free(out);
  snprintf(sql, sizeof sql, "select count(*) from pg_roles where rolname = '%s'", role);
  cr_assert_eq(tn_test_psql_admin("postgres", sql, &out), 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "role %s outlived the purge", role);
  free(out);
  char *audit = audit_actions(t);
  cr_assert(strstr(audit, "purge:succeeded"), "%s", audit);
  free(audit);

  /* A restore is now refused by the API server, with the reason. */
  int rc = tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Active\"}}'", t);
  cr_assert_neq(rc, 0, "a restore after the purge was accepted");
  cr_assert(strstr(out, "purged") && strstr(out, "Deleted"), "the refusal must say why: %s", out);
  free(out);
  char *state = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.state}'", t);
  cr_assert_str_eq(state, "Archived");
  free(state);
  /* Deleted is what is left. */
  OK("kubectl patch tenant %s --type=merge -p "
     "'{\"spec\":{\"state\":\"Deleted\",\"deletionConfirmation\":\"%s\"}}'",
     t, t);
  wait_for(60, t, "Deleted", "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = Deleted", t);
  OK("kubectl delete tenancypolicy %s", pol);
  OK("kubectl delete tenant %s --wait --timeout=60s", t);
  free(schema);
  free(role);
  free(db);
}
