/* test_boundary.c - the tenant boundary against the real API server and PostgreSQL, playing the
 * attacker through impersonation with only the tenant roles we ship:
 *  - Pod Security: a tenant developer cannot create privileged, hostPID, hostNetwork or hostPath
 *    pods in its namespaces (the API server's built-in PodSecurity admission, from the labels the
 *    operator sets); the labels come back when removed;
 *  - group bindings: system: groups and break-glass subjects are refused at apply (CEL) and a
 *    TenancyPolicy's allowedGroupPatterns at admission (webhook); with the webhook down and an older
 *    CRD, the controller still never binds them (AccessBound=False, reason GroupRefused, an Event);
 *  - requireDatabaseTLS: a tenant lands only on a verify-full server; with none compliant,
 *    DatabaseReady=False with the policy's message and nothing is provisioned;
 *  - NetworkPolicies: allow-same-tenant holds exactly the egress to the database server, ingress
 *    from the plan's ingress-controller namespaces and the plan's cross-environment rule; a
 *    Suspended tenant is cut off.
 * Two suites: boundary_admission runs the operator with its webhook; boundary runs it without
 * one (the webhook down), so only the CRD schema and the controller stand in the way. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <jansson.h>
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
static char region[64], region_empty[64], plan_net[64];

#define OK(...) tn_test_sh_ok(NULL, __VA_ARGS__)

/* Writes text to a new temporary file; returns its path (malloc'd; unlink and free it). */
static char *temp_file(const char *text) {
  char *path = strdup("/tmp/tn-boundary-XXXXXX");
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  size_t n = strlen(text);
  cr_assert_eq(write(fd, text, n), (ssize_t)n);
  close(fd);
  return path;
}

/* kubectl [flags] create|apply -f <json>; returns the exit code, output in *out. */
static int kubectl_json(char **out, const char *verb_and_flags, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int kubectl_json(char **out, const char *verb_and_flags, const char *fmt, ...) {
  char *text = NULL;
  va_list ap;
  va_start(ap, fmt);
  cr_assert_geq(vasprintf(&text, fmt, ap), 0);
  va_end(ap);
  char *path = temp_file(text);
  int rc = tn_test_sh(out, "kubectl %s -f %s", verb_and_flags, path);
  unlink(path);
  free(path);
  free(text);
  return rc;
}

#define wait_for(timeout, what, ...) tn_test_wait_for(&op, NULL, timeout, what, __VA_ARGS__)

static void wait_condition(const char *t, const char *type, const char *status, const char *reason) {
  wait_for(90, type,
           "test \"$(kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"%s\")].status}"
           "/{.status.conditions[?(@.type==\"%s\")].reason}')\" = '%s/%s'",
           t, type, type, status, reason);
}

static void apply_tenant(const char *t, const char *state, const char *plan, const char *in_region,
                         const char *groups_json) {
  char *out = NULL;
  int rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"%s\",\"plan\":\"%s\",\"environments\":[\"prod\",\"staging\"],"
      "\"residency\":{\"allowedRegions\":[\"%s\"]},"
      "\"identity\":{\"domain\":\"%s.example\",\"groupBindings\":[%s]}}}",
      t, state, plan, in_region, t, groups_json);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static void install_common(void) {
  tn_test_install_api();
  tn_test_unique_name(region, sizeof region, "bnd-region");
  tn_test_unique_name(region_empty, sizeof region_empty, "bnd-empty");
  tn_test_unique_name(plan_net, sizeof plan_net, "bnd-net");
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "kubectl create namespace tenancy-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "kubectl -n tenancy-system create secret generic pg-admin-%s --from-literal=uri=\"$TENANCY_PG_DSN\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "kubectl -n tenancy-system create secret generic pg-ca-%s --from-file=ca.crt=\"$TENANCY_CA_FILE\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null",
      region, region);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* Two servers on the local PostgreSQL: pg-a only encrypts (sslMode require) and sorts first;
   * pg-b verifies the server's certificate. */
  rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\",\"dedicated\",\"hybrid\"],"
      "\"databaseServers\":["
      "{\"name\":\"pg-a\",\"host\":\"127.0.0.1\",\"port\":%s,\"sslMode\":\"require\",\"serves\":[\"shared\"],"
      "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-admin-%s\"}},"
      "{\"name\":\"pg-b\",\"host\":\"127.0.0.1\",\"port\":%s,\"sslMode\":\"verify-full\",\"serves\":["
      "\"shared\"],"
      "\"caSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-ca-%s\"},"
      "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-admin-%s\"}}]}}",
      region, tn_test_env("TENANCY_PG_PORT"), region, tn_test_env("TENANCY_PG_PORT"), region, region);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\"]}}",
      region_empty);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Plan\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"quotas\":{\"cpu\":\"2\",\"memory\":\"2Gi\",\"storage\":\"1Gi\",\"pods\":10,"
      "\"services\":5},\"network\":{\"ingressNamespaces\":[\"ingress-nginx\"],"
      "\"crossEnvironment\":\"Deny\"}}}",
      plan_net);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static void uninstall_common(void) {
  tn_test_sh(NULL, "kubectl delete region %s %s --wait=false --ignore-not-found", region, region_empty);
  tn_test_sh(NULL, "kubectl delete plan %s --wait=false --ignore-not-found", plan_net);
  tn_test_sh(NULL, "kubectl delete tenancypolicy -l tenancy.dev/test=boundary --ignore-not-found");
  /* put back the CRD schema a test may have loosened */
  tn_test_install_api();
}

/* ---- without the webhook: the CRD and the controller ------------------------------------------ */

static void start_plain(void) {
  /* no webhook registered: a test before may have left one whose operator is gone */
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
  install_common();
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", NULL});
}

static void stop_plain(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  uninstall_common();
}

TestSuite(boundary, .init = start_plain, .fini = stop_plain, .timeout = 400);

static const char RESTRICTED_POD[] =
    "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\"},\"spec\":{"
    "\"securityContext\":{\"runAsNonRoot\":true,\"runAsUser\":1000,\"seccompProfile\":{\"type\":"
    "\"RuntimeDefault\"}},\"containers\":[{\"name\":\"c\",\"image\":\"registry.k8s.io/pause:3.10\","
    "\"securityContext\":{\"allowPrivilegeEscalation\":false,\"capabilities\":{\"drop\":[\"ALL\"]}}}]}}";

/* One attack pod: the spec fragment that makes it dangerous. */
static const struct {
  const char *name, *spec;
} attacks[] = {
    {"privileged",
     "\"containers\":[{\"name\":\"c\",\"image\":\"busybox\",\"securityContext\":{\"privileged\":true}}]"},
    {"hostpid", "\"hostPID\":true,\"containers\":[{\"name\":\"c\",\"image\":\"busybox\"}]"},
    {"hostnetwork", "\"hostNetwork\":true,\"containers\":[{\"name\":\"c\",\"image\":\"busybox\"}]"},
    {"hostpath",
     "\"volumes\":[{\"name\":\"root\",\"hostPath\":{\"path\":\"/\"}}],\"containers\":[{\"name\":"
     "\"c\",\"image\":\"busybox\",\"volumeMounts\":[{\"name\":\"root\",\"mountPath\":\"/host\"}]}]"},
};

Test(boundary, pod_security_refuses_a_tenant_developers_host_access_pods) {
  char t[64], devs[96], ns[96], *out = NULL;
  tn_test_unique_name(t, sizeof t, "bnd-psa");
  snprintf(devs, sizeof devs, "%s-devs", t);
  snprintf(ns, sizeof ns, "%s-prod", t);
  char groups[256];
  snprintf(
      groups, sizeof groups,
      "{\"group\":\"%s\",\"role\":\"tenant-developer\"},{\"group\":\"%s-admins\",\"role\":\"tenant-admin\"}",
      devs, t);
  apply_tenant(t, "Active", "standard", region_empty, groups);
  wait_condition(t, "AccessBound", "True", "Converged");
  OK("test \"$(kubectl get ns %s -o jsonpath='{.metadata.labels.pod-security\\.kubernetes\\.io/enforce}')\" "
     "= "
     "restricted",
     ns);
  OK("test \"$(kubectl get ns %s -o "
     "jsonpath='{.metadata.labels.pod-security\\.kubernetes\\.io/enforce-version}/"
     "{.metadata.labels.pod-security\\.kubernetes\\.io/warn}/"
     "{.metadata.labels.pod-security\\.kubernetes\\.io/"
     "audit}')\" = latest/restricted/restricted",
     ns);

  /* The developer may create pods (so a refusal below is Pod Security, not RBAC)... */
  char as[160];
  snprintf(as, sizeof as, "--as=mallory@%s.example --as-group=%s -n %s create", t, devs, ns);
  int rc = kubectl_json(&out, as, RESTRICTED_POD, "fine");
  cr_assert_eq(rc, 0, "a restricted pod must be accepted: %s", out);
  free(out);
  /* ...but none that reaches the node. */
  for (size_t i = 0; i < sizeof attacks / sizeof *attacks; i++) {
    rc = kubectl_json(&out, as,
                      "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\"},\"spec\":{%s}}",
                      attacks[i].name, attacks[i].spec);
    cr_assert_neq(rc, 0, "the %s pod was created in %s by a tenant developer", attacks[i].name, ns);
    cr_assert(strstr(out, "violates PodSecurity"), "%s: refused for another reason: %s", attacks[i].name,
              out);
    free(out);
  }
  /* The tenant admin cannot lower the level: namespaces are not theirs to edit. */
  rc = tn_test_sh(&out, "kubectl auth can-i patch namespace/%s --as=eve --as-group=%s-admins 2>/dev/null", ns,
                  t);
  cr_assert_str_eq(out, "no\n", "a tenant admin may edit its namespace: %s", out);
  free(out);
  rc = tn_test_sh(&out,
                  "kubectl label ns %s pod-security.kubernetes.io/enforce=privileged --overwrite --as=eve "
                  "--as-group=%s-admins",
                  ns, t);
  cr_assert_neq(rc, 0, "a tenant admin relabelled its namespace: %s", out);
  free(out);
  /* Drift: a label removed (by someone who can) comes back. */
  OK("kubectl label ns %s pod-security.kubernetes.io/enforce-", ns);
  wait_for(
      60, "the enforce label restored",
      "test \"$(kubectl get ns %s -o jsonpath='{.metadata.labels.pod-security\\.kubernetes\\.io/enforce}')\" "
      "= restricted",
      ns);
  OK("kubectl delete tenant %s --wait=false", t);
}

/* Loosens the stored CRD as an older release would have it: no CEL rule on group names. */
static void drop_group_rule(void) {
  OK("kubectl patch crd tenants.tenancy.dev --type=json -p '[{\"op\":\"remove\",\"path\":\"/spec/versions/0/"
     "schema/openAPIV3Schema/properties/spec/properties/identity/properties/groupBindings/items/properties/"
     "group/"
     "x-kubernetes-validations\"}]'");
}

Test(boundary, the_controller_never_binds_system_groups) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "bnd-sys");
  char groups[512];
  snprintf(groups, sizeof groups, "{\"group\":\"%s-devs\",\"role\":\"tenant-developer\"}", t);
  apply_tenant(t, "Active", "standard", region_empty, groups);
  wait_condition(t, "AccessBound", "True", "Converged");
  /* webhook down, CRD without the rule: only the controller stands between the edit and every
   * signed-in user reading the tenant's Secrets */
  drop_group_rule();
  snprintf(groups, sizeof groups,
           "{\"group\":\"%s-devs\",\"role\":\"tenant-developer\"},"
           "{\"group\":\"system:authenticated\",\"role\":\"tenant-admin\"},"
           "{\"group\":\"system:serviceaccounts\",\"role\":\"tenant-developer\"}",
           t);
  /* the loosened schema reaches the API server's handler within moments: retry until stored */
  char *path = NULL;
  {
    char *text = NULL;
    cr_assert_geq(
        asprintf(&text,
                 "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":"
                 "\"%s\"},\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"environments\":[\"prod\","
                 "\"staging\"],\"residency\":{\"allowedRegions\":[\"%s\"]},\"identity\":{\"domain\":"
                 "\"%s.example\",\"groupBindings\":[%s]}}}",
                 t, region_empty, t, groups),
        0);
    path = temp_file(text);
    free(text);
  }
  wait_for(30, "the tenant with system: groups stored", "kubectl apply -f %s", path);
  unlink(path);
  free(path);
  tn_test_install_api(); /* the schema back for the next tests */
  wait_condition(t, "AccessBound", "False", "GroupRefused");
  OK("kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"AccessBound\")].message}' | grep -q "
     "'system:authenticated is reserved to Kubernetes'",
     t);
  OK("kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"PolicyCompliant\")].status}' | grep "
     "-qx "
     "False",
     t);
  wait_for(
      30, "a GroupRefused event",
      "kubectl get events.events.k8s.io -A -o "
      "jsonpath='{range .items[?(@.reason==\"GroupRefused\")]}{.regarding.name}{\"\\n\"}{end}' | grep -qx %s",
      t);
  /* settle: give the operator several passes, then nothing may bind a system: group */
  sleep(3);
  for (int e = 0; e < 2; e++) {
    const char *env = e ? "staging" : "prod";
    int rc = tn_test_sh(
        &out,
        "kubectl -n %s-%s get rolebindings -o jsonpath='{range .items[*]}{.subjects[*].name}{\"\\n\"}{end}'",
        t, env);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_null(strstr(out, "system:"), "%s-%s binds a system: group: %s", t, env, out);
    cr_assert(strstr(out, "-devs"), "the legitimate binding must stay: %s", out);
    free(out);
    rc = tn_test_sh(
        &out, "kubectl auth can-i get secrets -n %s-%s --as=anyone --as-group=system:authenticated", t, env);
    cr_assert_str_eq(out, "no\n", "every signed-in user can read the tenant's Secrets");
    free(out);
  }
  OK("kubectl delete tenant %s --wait=false", t);
}

Test(boundary, the_controller_applies_allowed_group_patterns) {
  char t[64], pol[64];
  tn_test_unique_name(t, sizeof t, "bnd-pat");
  tn_test_unique_name(pol, sizeof pol, "bnd-idp");
  char *out = NULL;
  int rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":{\"name\":"
      "\"%s\",\"labels\":{\"tenancy.dev/test\":\"boundary\"}},\"spec\":{\"identity\":{"
      "\"allowedGroupPatterns\":[\"{tenant}-*\",\"*@{domain}\"]}}}",
      pol);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char groups[512];
  snprintf(groups, sizeof groups,
           "{\"group\":\"%s-devs\",\"role\":\"tenant-developer\"},{\"group\":\"ops@%s.example\",\"role\":"
           "\"tenant-viewer\"}",
           t, t);
  apply_tenant(t, "Active", "standard", region_empty, groups);
  wait_condition(t, "AccessBound", "True", "Converged");
  /* the webhook is down: another team's group is stored, and must not be bound */
  snprintf(groups, sizeof groups,
           "{\"group\":\"%s-devs\",\"role\":\"tenant-developer\"},{\"group\":\"ops@%s.example\",\"role\":"
           "\"tenant-viewer\"},{\"group\":\"globex-admins\",\"role\":\"tenant-admin\"}",
           t, t);
  apply_tenant(t, "Active", "standard", region_empty, groups);
  wait_condition(t, "AccessBound", "False", "GroupRefused");
  sleep(2);
  rc = tn_test_sh(&out, "kubectl -n %s-prod get rolebindings -o jsonpath='{.items[*].subjects[*].name}'", t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_null(strstr(out, "globex-admins"), "a group outside the policy's patterns was bound: %s", out);
  cr_assert(strstr(out, "ops@"), "%s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl auth can-i get secrets -n %s-prod --as=x --as-group=globex-admins", t);
  cr_assert_str_eq(out, "no\n");
  free(out);
  OK("kubectl delete tenant %s --wait=false", t);
  OK("kubectl delete tenancypolicy %s", pol);
}

static void apply_tls_policy(const char *pol) {
  char *out = NULL;
  int rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":{\"name\":"
      "\"%s\",\"labels\":{\"tenancy.dev/test\":\"boundary\"}},\"spec\":{\"encryption\":{"
      "\"requireDatabaseTLS\":true}}}",
      pol);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static void role_of(const char *t, char *dst, size_t n) {
  snprintf(dst, n, "tn_%s", t);
  for (char *c = dst; *c; c++)
    if (*c == '-')
      *c = '_';
}

Test(boundary, require_database_tls_chooses_only_a_verifying_server) {
  char t[64], pol[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "bnd-tls");
  tn_test_unique_name(pol, sizeof pol, "bnd-tls");
  apply_tls_policy(pol);
  apply_tenant(t, "Active", "standard", region, "");
  wait_condition(t, "DatabaseReady", "True", "Converged");
  int rc = tn_test_sh(&out, "kubectl get tenant %s -o jsonpath='{.status.database.server}'", t);
  cr_assert_eq(rc, 0);
  cr_assert_str_eq(out, "pg-b", "requireDatabaseTLS: the verify-full server, not pg-a (sslMode require)");
  free(out);
  rc = tn_test_sh(
      &out, "kubectl -n %s-prod get secret tenant-database -o jsonpath='{.data.sslmode}' | base64 -d", t);
  cr_assert_str_eq(out, "verify-full");
  free(out);
  OK("kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Archived\"}}'", t);
  wait_for(60, "archived", "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = Archived", t);
  OK("kubectl delete tenant %s --wait --timeout=120s", t);
  OK("kubectl delete tenancypolicy %s", pol);
}

Test(boundary, require_database_tls_without_a_compliant_server_provisions_nothing) {
  char t[64], pol[64], reg[64], role[80], *out = NULL;
  tn_test_unique_name(t, sizeof t, "bnd-notls");
  tn_test_unique_name(pol, sizeof pol, "bnd-tls");
  tn_test_unique_name(reg, sizeof reg, "bnd-weak");
  role_of(t, role, sizeof role);
  apply_tls_policy(pol);
  /* a region without database servers: the tenant goes Active with no database */
  int rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\"]}}",
      reg);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  apply_tenant(t, "Active", "standard", reg, "");
  wait_condition(t, "NamespacesReady", "True", "Converged");
  /* then the region gets a server that only encrypts */
  rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\"],\"databaseServers\":["
      "{\"name\":\"pg-a\",\"host\":\"127.0.0.1\",\"port\":%s,\"sslMode\":\"require\",\"serves\":[\"shared\"],"
      "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-admin-%s\"}}]}}",
      reg, tn_test_env("TENANCY_PG_PORT"), region);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  wait_condition(t, "DatabaseReady", "False", "PolicyDenied");
  OK("kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"DatabaseReady\")].message}' | grep "
     "-q "
     "'TenancyPolicy %s: encryption.requireDatabaseTLS'",
     t, pol);
  sleep(3);
  rc = tn_test_sh(&out,
                  "PGCONNECT_TIMEOUT=5 psql \"$TENANCY_PG_DSN\" -qtAc \"select count(*) from pg_roles where "
                  "rolname = '%s'\"",
                  role);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "0\n", "a role was provisioned on the non-compliant server");
  free(out);
  rc = tn_test_sh(&out, "kubectl -n %s-prod get secret tenant-database", t);
  cr_assert_neq(rc, 0, "credentials for the non-compliant server were written: %s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl get tenant %s -o jsonpath='{.status.database.server}'", t);
  cr_assert_str_eq(out, "");
  free(out);
  OK("kubectl delete tenant %s --wait=false", t);
  OK("kubectl delete tenancypolicy %s", pol);
  tn_test_sh(NULL, "kubectl delete region %s --wait=false", reg);
}

static json_t *get_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *get_json(const char *fmt, ...) {
  char *cmd = NULL, *out = NULL;
  va_list ap;
  va_start(ap, fmt);
  cr_assert_geq(vasprintf(&cmd, fmt, ap), 0);
  va_end(ap);
  int rc = tn_test_sh(&out, "%s", cmd);
  cr_assert_eq(rc, 0, "%s: %s", cmd, out);
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  cr_assert_not_null(j, "%s: %s", je.text, out);
  free(out);
  free(cmd);
  return j;
}

Test(boundary, network_policies_for_real_tenants) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "bnd-net");
  apply_tenant(t, "Active", plan_net, region, "");
  wait_condition(t, "NetworkIsolated", "True", "Converged");
  wait_condition(t, "DatabaseReady", "True", "Converged");
  wait_for(30, "the database egress rule",
           "kubectl -n %s-prod get networkpolicy allow-same-tenant -o "
           "jsonpath='{.spec.egress[2].to[0].ipBlock.cidr}' "
           "| grep -qx 127.0.0.1/32",
           t);
  json_t *got = get_json("kubectl -n %s-prod get networkpolicy allow-same-tenant -o jsonpath='{.spec}'", t);
  char want_text[4096];
  snprintf(
      want_text, sizeof want_text,
      "{\"podSelector\":{},\"policyTypes\":[\"Ingress\",\"Egress\"],"
      "\"ingress\":[{\"from\":[{\"namespaceSelector\":{\"matchLabels\":{\"tenancy.dev/tenant\":\"%s\","
      "\"tenancy.dev/environment\":\"prod\"}}},"
      "{\"namespaceSelector\":{\"matchExpressions\":[{\"key\":\"kubernetes.io/"
      "metadata.name\",\"operator\":\"In\","
      "\"values\":[\"ingress-nginx\"]}]}}]}],"
      "\"egress\":[{\"to\":[{\"namespaceSelector\":{\"matchLabels\":{\"tenancy.dev/tenant\":\"%s\","
      "\"tenancy.dev/environment\":\"prod\"}}}]},"
      "{\"to\":[{\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/metadata.name\":\"kube-system\"}},"
      "\"podSelector\":{\"matchLabels\":{\"k8s-app\":\"kube-dns\"}}}],\"ports\":[{\"protocol\":\"UDP\","
      "\"port\":53},{\"protocol\":\"TCP\",\"port\":53}]},"
      "{\"to\":[{\"ipBlock\":{\"cidr\":\"127.0.0.1/32\"}}],\"ports\":[{\"protocol\":\"TCP\",\"port\":%s}]}]}",
      t, t, tn_test_env("TENANCY_PG_PORT"));
  json_error_t je;
  json_t *want = json_loads(want_text, 0, &je);
  cr_assert_not_null(want, "%s", je.text);
  char *g = json_dumps(got, JSON_SORT_KEYS);
  cr_assert(json_equal(got, want), "allow-same-tenant in %s-prod is not exactly as desired: %s", t, g);
  free(g);
  json_decref(got);
  json_decref(want);
  /* a tenant admin can neither change nor delete it */
  int rc = tn_test_sh(
      &out, "kubectl -n %s-prod delete networkpolicy allow-same-tenant --as=eve --as-group=%s-admins", t, t);
  cr_assert_neq(rc, 0, "%s", out);
  free(out);

  /* Suspended: cut off both ways, DNS included: only deny-all policies remain. */
  OK("kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Suspended\"}}'", t);
  wait_for(60, "the allow policy removed",
           "test \"$(kubectl -n %s-prod get networkpolicies -o jsonpath='{.items[*].metadata.name}')\" = "
           "'default-deny suspended-deny-all'",
           t);
  got = get_json("kubectl -n %s-staging get networkpolicy suspended-deny-all -o jsonpath='{.spec}'", t);
  want = json_loads("{\"podSelector\":{},\"policyTypes\":[\"Ingress\",\"Egress\"]}", 0, &je);
  cr_assert(json_equal(got, want));
  json_decref(got);
  json_decref(want);
  OK("kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Archived\"}}'", t);
  wait_for(60, "archived", "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = Archived", t);
  OK("kubectl delete tenant %s --wait=false", t);
}

/* ---- with the webhook: refused at kubectl apply --------------------------------------------- */

static void start_admission(void) {
  install_common();
  char addr[64];
  snprintf(addr, sizeof addr, "--webhook-bind-address=127.0.0.1:%d", tn_test_free_port());
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", addr, NULL});
}

static void stop_admission(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
  uninstall_common();
}

TestSuite(boundary_admission, .init = start_admission, .fini = stop_admission, .timeout = 240);

Test(boundary_admission, system_groups_and_subjects_are_refused_at_apply) {
  static const char *const groups[] = {"system:authenticated", "system:serviceaccounts", "system:masters",
                                       "system:nodes"};
  char t[64], g[128], *out = NULL;
  tn_test_unique_name(t, sizeof t, "bnd-apply");
  for (size_t i = 0; i < sizeof groups / sizeof *groups; i++) {
    snprintf(g, sizeof g, "{\"group\":\"%s\",\"role\":\"tenant-viewer\"}", groups[i]);
    int rc = kubectl_json(
        &out, "apply",
        "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
        "\"spec\":{\"state\":\"Draft\",\"plan\":\"standard\",\"environments\":[\"prod\"],"
        "\"identity\":{\"groupBindings\":[%s]}}}",
        t, g);
    cr_assert_neq(rc, 0, "a Tenant binding %s was stored", groups[i]);
    cr_assert(strstr(out, "reserved to Kubernetes"), "%s: %s", groups[i], out);
    free(out);
  }
  static const char *const subjects[] = {"\"user\":\"system:serviceaccount:kube-system:default\"",
                                         "\"user\":\"system:admin\"", "\"group\":\"system:masters\""};
  for (size_t i = 0; i < sizeof subjects / sizeof *subjects; i++) {
    int rc = kubectl_json(
        &out, "apply",
        "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
        "\"spec\":{\"state\":\"Draft\",\"plan\":\"standard\",\"environments\":[\"prod\"],"
        "\"breakGlass\":[{\"id\":\"inc-1\",%s,\"role\":\"tenant-admin\",\"reason\":\"INC-1 db down\","
        "\"expiresAt\":\"2030-01-01T00:00:00Z\"}]}}",
        t, subjects[i]);
    cr_assert_neq(rc, 0, "a break-glass request for %s was stored", subjects[i]);
    cr_assert(strstr(out, "system:"), "%s", out);
    free(out);
  }
  int rc = tn_test_sh(&out, "kubectl get tenant %s", t);
  cr_assert_neq(rc, 0, "%s", out);
  free(out);
}

Test(boundary_admission, groups_outside_the_policy_patterns_are_refused_at_apply) {
  char t[64], pol[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "bnd-apat");
  tn_test_unique_name(pol, sizeof pol, "bnd-idp");
  int rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":{\"name\":"
      "\"%s\",\"labels\":{\"tenancy.dev/test\":\"boundary\"}},\"spec\":{\"identity\":{"
      "\"allowedGroupPatterns\":[\"*@{domain}\"]}}}",
      pol);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* the webhook reads policies from its cache: give it a moment to see the new one */
  char groups[256];
  snprintf(groups, sizeof groups, "{\"group\":\"admins@globex.example\",\"role\":\"tenant-admin\"}");
  wait_for(30, "the refusal",
           "printf '%%s' "
           "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
           "\"spec\":{\"state\":\"Draft\",\"plan\":\"standard\",\"environments\":[\"prod\"],\"identity\":{"
           "\"domain\":"
           "\"%s.example\",\"groupBindings\":[%s]}}}' | kubectl apply --dry-run=server -f - 2>&1 | grep -q "
           "'TenancyPolicy %s: spec.identity.allowedGroupPatterns'",
           t, t, groups, pol);
  rc = tn_test_sh(&out, "kubectl get tenant %s", t);
  cr_assert_neq(rc, 0, "%s", out);
  free(out);
  snprintf(groups, sizeof groups, "{\"group\":\"admins@%s.example\",\"role\":\"tenant-admin\"}", t);
  apply_tenant(t, "Draft", "standard", region_empty, groups);
  OK("kubectl delete tenant %s --wait=false", t);
  OK("kubectl delete tenancypolicy %s", pol);
}

Test(boundary_admission, schema_refuses_privileged_pod_security_and_bad_cidrs) {
  char p[64], *out = NULL;
  tn_test_unique_name(p, sizeof p, "bnd-plan");
  static const char plan_fmt[] =
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Plan\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"quotas\":{\"cpu\":\"1\",\"memory\":\"1Gi\",\"storage\":\"1Gi\","
      "\"pods\":1,\"services\":1}%s}}";
  int rc = kubectl_json(&out, "apply", plan_fmt, p, ",\"podSecurity\":\"privileged\"");
  cr_assert_neq(rc, 0, "a privileged plan was stored");
  cr_assert(strstr(out, "spec.podSecurity privileged is not allowed") ||
                strstr(out, "Unsupported value: \"privileged\""),
            "%s", out);
  free(out);
  rc = kubectl_json(&out, "apply", plan_fmt, p, "");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl get plan %s -o jsonpath='{.spec.podSecurity}'", p);
  cr_assert_str_eq(out, "restricted", "the default level");
  free(out);
  OK("kubectl delete plan %s", p);
  rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"podSecurity\":{\"minimum\":\"privileged\"}}}",
      p);
  cr_assert_neq(rc, 0, "%s", out);
  free(out);
  rc = kubectl_json(
      &out, "apply",
      "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\"],\"databaseServers\":[{\"name\":\"pg\","
      "\"host\":\"db.example\",\"egressCIDRs\":[\"10.0.0.0/33\"],\"serves\":[\"shared\"],"
      "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"x\"}}]}}",
      p);
  cr_assert_neq(rc, 0, "%s", out);
  cr_assert(strstr(out, "egressCIDRs entries must be CIDRs"), "%s", out);
  free(out);
}
