/* test_cli.c - tenantctl / kubectl tenant against the real API server of the local stack: every
 * command and its exit codes (get/list formats and filters, create and the API server's refusals,
 * lifecycle verbs, delete and its confirmation, rotate, events, describe, completion), RBAC
 * through impersonation, an exec credential plugin (a ServiceAccount token from the TokenRequest
 * API, and a client certificate), KUBECONFIG with two files merged, --context, and the binary run
 * by the real kubectl as the plugin `kubectl tenant`. The suite cli_operator also runs the
 * operator, for status, events and the audit tail. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *bin(void) { return tn_test_env("TENANCY_TENANTCTL_BIN"); }

/* Runs `tenantctl ARGS` (printf-formatted, trusted strings only) with stdin from /dev/null;
 * stdout+stderr in *out. Returns the exit code. */
static int ctl(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ctl(char **out, const char *fmt, ...) {
  char *args = NULL;
  va_list ap;
  va_start(ap, fmt);
  cr_assert_geq(vasprintf(&args, fmt, ap), 0);
  va_end(ap);
  int rc = tn_test_sh(out, "'%s' %s </dev/null", bin(), args);
  free(args);
  return rc;
}

/* stdout only, parsed as JSON (fails the test when it is not). */
static json_t *ctl_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *ctl_json(const char *fmt, ...) {
  char *args = NULL;
  va_list ap;
  va_start(ap, fmt);
  cr_assert_geq(vasprintf(&args, fmt, ap), 0);
  va_end(ap);
  char *out = NULL;
  int rc = tn_test_sh(&out, "'%s' %s </dev/null 2>/dev/null", bin(), args);
  cr_assert_eq(rc, 0, "tenantctl %s: exit %d: %s", args, rc, out);
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  cr_assert_not_null(j, "tenantctl %s: not JSON (%s): %s", args, je.text, out);
  free(out);
  free(args);
  return j;
}

static char *kget(const char *name, const char *jsonpath) {
  return tn_test_output("kubectl get tenant %s -o jsonpath='%s'", name, jsonpath);
}

static void assert_field(const char *name, const char *jsonpath, const char *want) {
  char *v = kget(name, jsonpath);
  cr_assert_str_eq(v, want, "tenant %s %s", name, jsonpath);
  free(v);
}

static void create_ok(const char *name, const char *extra) {
  char *out = NULL;
  int rc = ctl(&out, "create %s --plan starter %s", name, extra ? extra : "");
  cr_assert_eq(rc, 0, "create %s: %s", name, out);
  cr_assert(strstr(out, "tenant.tenancy.dev/") && strstr(out, "created"), "%s", out);
  free(out);
}

static void cleanup_tenant(const char *name) {
  /* Tombstones and Drafts alike: straight through kubectl (the finalizer has nothing to do
   * when no operator runs; with one it tears down). */
  tn_test_sh(
      NULL,
      "kubectl patch tenant %s --type=json -p '[{\"op\":\"remove\",\"path\":\"/metadata/finalizers\"}]'"
      " >/dev/null 2>&1; kubectl delete tenant %s --ignore-not-found --wait=false >/dev/null 2>&1",
      name, name);
}

static void setup(void) { tn_test_install_api(); }

TestSuite(cli, .init = setup, .timeout = 240);

/* ---- get / list ----------------------------------------------------------------------------- */

Test(cli, get_and_list_output_formats_and_filters) {
  char a[64], b[64], *out = NULL;
  tn_test_unique_name(a, sizeof a, "cli-get");
  tn_test_unique_name(b, sizeof b, "cli-get");
  create_ok(a, "--display-name 'Acme Corp' --label tier=gold --env prod --region eu-west-1 "
               "--allowed-region eu-west-1,eu-central-1");
  char *o2 = NULL;
  cr_assert_eq(ctl(&o2, "create %s --plan standard --label tier=silver", b), 0, "%s", o2);
  free(o2);

  /* table: the printer columns of the CRD */
  cr_assert_eq(ctl(&out, "get"), 0, "%s", out);
  cr_assert(strstr(out, "NAME") && strstr(out, "STATE") && strstr(out, "PLAN") && strstr(out, "REGION") &&
                strstr(out, "READY") && strstr(out, "AGE"),
            "%s", out);
  cr_assert(strstr(out, a) && strstr(out, b), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "list -o wide %s", a), 0, "%s", out);
  cr_assert(strstr(out, "DISPLAY NAME") && strstr(out, "Acme Corp") && strstr(out, "Draft") &&
                strstr(out, "shared"),
            "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "get %s --no-headers", a), 0, "%s", out);
  cr_assert(!strstr(out, "NAME") && strstr(out, a), "%s", out);
  free(out);

  /* json: one object for one name, a List otherwise */
  json_t *j = ctl_json("get %s -o json", a);
  cr_assert_str_eq(json_string_value(json_object_get(j, "kind")), "Tenant");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "metadata"), "name")), a);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "spec"), "displayName")),
                   "Acme Corp");
  cr_assert_null(json_object_get(json_object_get(j, "metadata"), "managedFields"));
  json_decref(j);
  j = ctl_json("get -o json -l tier=gold");
  cr_assert_str_eq(json_string_value(json_object_get(j, "kind")), "List");
  json_t *items = json_object_get(j, "items");
  bool seen_a = false;
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) {
    const char *n = json_string_value(json_object_get(json_object_get(it, "metadata"), "name"));
    cr_assert_str_neq(n, b, "-l tier=gold must not list %s", b);
    seen_a = seen_a || !strcmp(n, a);
  }
  cr_assert(seen_a);
  json_decref(j);

  /* yaml: valid for kubectl (parsed back as a Tenant) */
  cr_assert_eq(tn_test_sh(&out,
                          "'%s' get %s -o yaml </dev/null | kubectl create --dry-run=client -o name -f -",
                          bin(), a),
               0, "%s", out);
  cr_assert(strstr(out, "tenant.tenancy.dev/") && strstr(out, a), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "get %s -o yaml", a), 0, "%s", out);
  cr_assert(strstr(out, "kind: Tenant") && strstr(out, "displayName: Acme Corp") &&
                strstr(out, "- eu-central-1"),
            "%s", out);
  free(out);

  /* name */
  cr_assert_eq(ctl(&out, "get %s %s -o name", a, b), 0, "%s", out);
  char want[160];
  snprintf(want, sizeof want, "tenant.tenancy.dev/%s\ntenant.tenancy.dev/%s\n", a, b);
  cr_assert_str_eq(out, want);
  free(out);

  /* client-side filters */
  cr_assert_eq(ctl(&out, "get -o name --plan standard"), 0, "%s", out);
  cr_assert(strstr(out, b) && !strstr(out, a), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "get -o name --region eu-west-1"), 0, "%s", out);
  cr_assert(strstr(out, a) && !strstr(out, b), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "get -o name --state Draft %s %s", a, b), 0, "%s", out);
  cr_assert(strstr(out, a) && strstr(out, b), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "get -o name --state Active %s", a), 0, "%s", out);
  cr_assert_str_eq(out, "");
  free(out);

  /* exit codes: not found 3 (the others still printed), usage 2 */
  cr_assert_eq(ctl(&out, "get %s cli-no-such-tenant -o name", a), 3, "%s", out);
  cr_assert(strstr(out, "Error from server (NotFound): tenants.tenancy.dev \"cli-no-such-tenant\" not found"),
            "%s", out);
  cr_assert(strstr(out, a), "the found one is printed: %s", out);
  free(out);
  cr_assert_eq(ctl(&out, "get -o xml"), 2, "%s", out);
  cr_assert(strstr(out, "--output must be"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "get Not_An_Id"), 2, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "frobnicate"), 2, "%s", out);
  free(out);
  cleanup_tenant(a);
  cleanup_tenant(b);
}

/* ---- create ---------------------------------------------------------------------------------- */

Test(cli, create_from_flags_dry_run_and_refusals) {
  char a[64], *out = NULL;
  tn_test_unique_name(a, sizeof a, "cli-create");
  /* server dry run: validated and admitted, not stored */
  cr_assert_eq(ctl(&out, "create %s --plan standard --dry-run=server", a), 0, "%s", out);
  cr_assert(strstr(out, "created (server dry run)"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "get %s", a), 3, "a dry run stores nothing: %s", out);
  free(out);
  /* refusals carry the API server's message (schema, CEL): exit 4 */
  cr_assert_eq(ctl(&out, "create %s --dry-run=server", a), 4, "%s", out);
  cr_assert(strstr(out, "Error from server (Invalid)") && strstr(out, "every tenant needs spec.plan"), "%s",
            out);
  free(out);
  cr_assert_eq(
      ctl(&out, "create %s --plan starter --region us-east-1 --allowed-region eu-west-1 --dry-run=server", a),
      4, "%s", out);
  cr_assert(
      strstr(out, "spec.residency.preferredRegion us-east-1 must be one of spec.residency.allowedRegions"),
      "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "create %s --plan starter --isolation sideways", a), 4, "%s", out);
  cr_assert(strstr(out, "spec.isolation") && strstr(out, "sideways"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "create %s --plan starter --state Deleted --dry-run=server", a), 4, "%s", out);
  cr_assert(strstr(out, "needs spec.deletionConfirmation"), "%s", out);
  free(out);
  /* client dry run prints the object and sends nothing */
  cr_assert_eq(
      ctl(&out,
          "create %s --plan starter --env prod,staging --contact role=billing,name=Bob,email=b@x.test "
          "--external-id billing=cus_1 --dry-run=client",
          a),
      0, "%s", out);
  cr_assert(strstr(out, "kind: Tenant") && strstr(out, "- staging") && strstr(out, "billing: cus_1") &&
                strstr(out, "email: b@x.test"),
            "%s", out);
  free(out);
  /* the real thing, every flag */
  create_ok(
      a,
      "--isolation dedicated --region eu-west-1 --allowed-region eu-west-1 --allowed-region eu-central-1 "
      "--residency-flag eu-only --env prod --env staging --display-name 'Acme' --contact "
      "role=technical,name=Ada,email=ada@acme.test --external-id crm=0015 --reason 'trial' --label team=x");
  assert_field(a, "{.spec.plan} {.spec.isolation} {.spec.residency.preferredRegion}",
               "starter dedicated eu-west-1");
  assert_field(a, "{.spec.residency.allowedRegions} {.spec.residency.flags} {.spec.environments}",
               "[\"eu-west-1\",\"eu-central-1\"] [\"eu-only\"] [\"prod\",\"staging\"]");
  assert_field(
      a, "{.spec.contacts[0].email} {.spec.externalIds.crm} {.spec.stateReason} {.metadata.labels.team}",
      "ada@acme.test 0015 trial x");
  assert_field(a, "{.spec.state}", "Draft");
  /* AlreadyExists: refused, 4 */
  cr_assert_eq(ctl(&out, "create %s --plan starter", a), 4, "%s", out);
  cr_assert(strstr(out, "Error from server (AlreadyExists)"), "%s", out);
  free(out);
  /* usage errors: 2 */
  cr_assert_eq(ctl(&out, "create %s --plan starter --contact nonsense", a), 2, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "create UPPER --plan starter"), 2, "%s", out);
  cr_assert(strstr(out, "not a tenant id"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "create %s --plan starter --dry-run=maybe", a), 2, "%s", out);
  free(out);
  cleanup_tenant(a);
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

Test(cli, lifecycle_verbs_patch_spec_state) {
  char a[64], *out = NULL;
  tn_test_unique_name(a, sizeof a, "cli-life");
  create_ok(a, NULL);
  cr_assert_eq(ctl(&out, "resume %s", a), 4, "%s", out);
  cr_assert(strstr(out, "not Suspended"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "activate %s --reason 'contract signed'", a), 0, "%s", out);
  cr_assert(strstr(out, "activated"), "%s", out);
  free(out);
  assert_field(a, "{.spec.state}/{.spec.stateReason}", "Active/contract signed");
  cr_assert_eq(ctl(&out, "activate %s", a), 0, "%s", out);
  cr_assert(strstr(out, "unchanged"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "suspend %s --reason 'unpaid invoice'", a), 0, "%s", out);
  free(out);
  assert_field(a, "{.spec.state}/{.spec.stateReason}", "Suspended/unpaid invoice");
  cr_assert_eq(ctl(&out, "resume %s", a), 0, "%s", out);
  cr_assert(strstr(out, "resumed"), "%s", out);
  free(out);
  assert_field(a, "{.spec.state}/{.spec.stateReason}", "Active/");
  cr_assert_eq(ctl(&out, "archive %s", a), 0, "%s", out);
  free(out);
  assert_field(a, "{.spec.state}", "Archived");
  /* a transition the lifecycle does not allow: the API server's CEL message, exit 4 */
  cr_assert_eq(ctl(&out, "suspend %s", a), 4, "%s", out);
  cr_assert(strstr(out, "Error from server (Invalid)") &&
                strstr(out, "transition Archived -> Suspended is not allowed"),
            "%s", out);
  free(out);
  assert_field(a, "{.spec.state}", "Archived");
  cr_assert_eq(ctl(&out, "suspend cli-no-such-tenant"), 3, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "suspend"), 2, "%s", out);
  free(out);
  cleanup_tenant(a);
}

/* ---- delete ----------------------------------------------------------------------------------- */

Test(cli, delete_needs_the_typed_confirmation) {
  char a[64], *out = NULL;
  tn_test_unique_name(a, sizeof a, "cli-del");
  create_ok(a, NULL);
  /* no terminal, no --confirm: refused before any request */
  cr_assert_eq(ctl(&out, "delete %s", a), 4, "%s", out);
  cr_assert(strstr(out, "no terminal") && strstr(out, "--confirm="), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "delete %s --confirm=%s-x", a, a), 4, "%s", out);
  cr_assert(strstr(out, "nothing was changed"), "%s", out);
  free(out);
  assert_field(a, "{.spec.state}", "Draft");
  /* on a terminal (script(1) gives it one): the typed id must match */
  cr_assert_eq(tn_test_sh(&out, "printf 'wrong\\n' | script -qec \"'%s' delete %s\" /dev/null", bin(), a), 4,
               "%s", out);
  cr_assert(strstr(out, "Type the tenant id to confirm") && strstr(out, "nothing was changed"), "%s", out);
  free(out);
  assert_field(a, "{.spec.state}", "Draft");
  cr_assert_eq(tn_test_sh(&out, "printf '%s\\n' | script -qec \"'%s' delete %s --reason done\" /dev/null", a,
                          bin(), a),
               0, "%s", out);
  cr_assert(strstr(out, "deleted"), "%s", out);
  free(out);
  char want[160];
  snprintf(want, sizeof want, "Deleted %s done", a);
  assert_field(a, "{.spec.state} {.spec.deletionConfirmation} {.spec.stateReason}", want);
  cleanup_tenant(a);

  /* --confirm for scripts; the API server still refuses Active -> Deleted */
  tn_test_unique_name(a, sizeof a, "cli-del");
  create_ok(a, "--state Active");
  cr_assert_eq(ctl(&out, "delete %s --confirm=%s", a, a), 4, "%s", out);
  cr_assert(strstr(out, "transition Active -> Deleted is not allowed"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "archive %s", a), 0, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "delete %s --confirm=%s", a, a), 0, "%s", out);
  free(out);
  assert_field(a, "{.spec.state}", "Deleted");
  cr_assert_eq(ctl(&out, "delete %s --confirm=%s", a, a), 0, "%s", out);
  cr_assert(strstr(out, "already Deleted"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "delete cli-no-such-tenant --confirm=cli-no-such-tenant"), 3, "%s", out);
  free(out);
  cleanup_tenant(a);
}

/* ---- rotate ----------------------------------------------------------------------------------- */

Test(cli, rotate_sets_the_annotations_the_operator_honours) {
  char a[64], *out = NULL;
  tn_test_unique_name(a, sizeof a, "cli-rot");
  create_ok(a, NULL);
  cr_assert_eq(ctl(&out, "rotate credentials %s --value v1", a), 0, "%s", out);
  cr_assert(strstr(out, "tenancy.dev/rotate-credentials=v1"), "%s", out);
  free(out);
  assert_field(a, "{.metadata.annotations.tenancy\\.dev/rotate-credentials}", "v1");
  cr_assert_eq(ctl(&out, "rotate keys %s", a), 0, "%s", out);
  free(out);
  char *v1 = kget(a, "{.metadata.annotations.tenancy\\.dev/rotate-keys}");
  cr_assert(strlen(v1) > 20 && v1[4] == '-' && v1[strlen(v1) - 1] == 'Z', "an RFC 3339 time: %s", v1);
  usleep(10000);
  cr_assert_eq(ctl(&out, "rotate keys %s", a), 0, "%s", out);
  free(out);
  char *v2 = kget(a, "{.metadata.annotations.tenancy\\.dev/rotate-keys}");
  cr_assert_str_neq(v1, v2, "each rotation sets a new value");
  free(v1);
  free(v2);
  cr_assert_eq(ctl(&out, "rotate passwords %s", a), 2, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "rotate keys cli-no-such-tenant"), 3, "%s", out);
  free(out);
  cleanup_tenant(a);
}

/* ---- RBAC: the caller's rights, through impersonation ------------------------------------------ */

Test(cli, rbac_applies_as_for_kubectl) {
  char a[64], user[64], *out = NULL;
  tn_test_unique_name(a, sizeof a, "cli-rbac");
  tn_test_unique_name(user, sizeof user, "cli-reader");
  create_ok(a, NULL);
  /* jane has no rights at all */
  cr_assert_eq(ctl(&out, "--as=jane get"), 4, "%s", out);
  cr_assert(strstr(out, "Error from server (Forbidden)") &&
                strstr(out, "User \"jane\" cannot list resource \"tenants\""),
            "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "get %s --as jane --as-group team-x", a), 4, "%s", out);
  cr_assert(strstr(out, "cannot get resource"), "%s", out);
  free(out);
  /* a reader may get and list, never change */
  cr_assert_eq(
      tn_test_sh(&out,
                 "kubectl create clusterrole %s --verb=get,list --resource=tenants.tenancy.dev >/dev/null && "
                 "kubectl create clusterrolebinding %s --clusterrole=%s --group=%s-group >/dev/null",
                 user, user, user, user),
      0, "%s", out);
  free(out);
  cr_assert_eq(tn_test_sh_until(10, &out, "'%s' get %s --as=%s --as-group=%s-group", bin(), a, user, user), 0,
               "%s", out);
  cr_assert(strstr(out, a), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "suspend %s --as=%s --as-group=%s-group", a, user, user), 4, "%s", out);
  cr_assert(strstr(out, "Forbidden") && strstr(out, "cannot patch resource \"tenants\""), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "rotate credentials %s --as=%s --as-group=%s-group", a, user, user), 4, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "delete %s --confirm=%s --as=%s --as-group=%s-group", a, a, user, user), 4, "%s",
               out);
  free(out);
  assert_field(a, "{.spec.state}", "Draft");
  cr_assert_eq(ctl(&out, "get --as-group=x"), 2, "--as-group without --as: %s", out);
  free(out);
  tn_test_sh(NULL, "kubectl delete clusterrolebinding %s clusterrole %s >/dev/null 2>&1", user, user);
  cleanup_tenant(a);
}

/* ---- kubeconfig: exec plugins, merged files, --context ------------------------------------------ */

/* A work directory for kubeconfigs and plugins; removed by the caller with rm -rf. */
static void workdir(char *dir, size_t n) {
  snprintf(dir, n, "/tmp/tn-cli-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void write_file(const char *path, int mode, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void write_file(const char *path, int mode, const char *fmt, ...) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fclose(f);
  chmod(path, (mode_t)mode);
}

static void write_exec_kubeconfig(const char *path, const char *plugin) {
  write_file(
      path, 0600,
      "apiVersion: v1\nkind: Config\ncurrent-context: exec\n"
      "clusters:\n- name: local\n  cluster: {server: \"%s\", certificate-authority: \"%s\"}\n"
      "contexts:\n- name: exec\n  context: {cluster: local, user: plugin}\n"
      "users:\n- name: plugin\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
      "      command: %s\n      args: [--audience, api]\n      env: [{name: PLUGIN_DIR, value: \"%s\"}]\n"
      "      interactiveMode: Never\n      provideClusterInfo: true\n",
      tn_test_env("TENANCY_KUBE_SERVER"), tn_test_env("TENANCY_CA_FILE"), plugin, dirname(strdupa(path)));
}

Test(cli, exec_plugin_with_a_service_account_token) {
  char dir[64], a[64], ns[64], path[PATH_MAX], plugin[PATH_MAX], *out = NULL;
  workdir(dir, sizeof dir);
  tn_test_unique_name(a, sizeof a, "cli-exec");
  tn_test_unique_name(ns, sizeof ns, "cli-exec");
  create_ok(a, NULL);
  /* A ServiceAccount allowed to read tenants; its token from the TokenRequest API. */
  cr_assert_eq(
      tn_test_sh(&out,
                 "kubectl create namespace %s >/dev/null && kubectl -n %s create serviceaccount reader "
                 ">/dev/null && kubectl create clusterrole %s --verb=get,list --resource=tenants.tenancy.dev "
                 ">/dev/null && kubectl create clusterrolebinding %s --clusterrole=%s "
                 "--serviceaccount=%s:reader >/dev/null && kubectl -n %s create token reader "
                 "--duration=10m > %s/token",
                 ns, ns, ns, ns, ns, ns, ns, dir),
      0, "%s", out);
  free(out);
  /* The plugin prints an ExecCredential with that token, and records how it was called. */
  snprintf(plugin, sizeof plugin, "%s/sa-plugin.sh", dir);
  write_file(plugin, 0700,
             "#!/bin/sh\n"
             "echo run >> \"$PLUGIN_DIR/runs\"\n"
             "printf '%%s' \"$KUBERNETES_EXEC_INFO\" > \"$PLUGIN_DIR/info\"\n"
             "printf '%%s' \"$*\" > \"$PLUGIN_DIR/args\"\n"
             "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
             "\"status\":{\"token\":\"%%s\",\"expirationTimestamp\":\"2099-01-01T00:00:00Z\"}}' \"$(cat "
             "\"$PLUGIN_DIR/token\")\"\n");
  snprintf(path, sizeof path, "%s/exec.kubeconfig", dir);
  write_exec_kubeconfig(path, plugin);

  cr_assert_eq(tn_test_sh_until(10, &out, "'%s' --kubeconfig '%s' get %s -o name </dev/null", bin(), path, a),
               0, "%s", out);
  cr_assert(strstr(out, a), "%s", out);
  free(out);
  char *info = tn_test_output("cat %s/info", dir);
  json_t *j = json_loads(info, 0, NULL);
  cr_assert_not_null(j, "KUBERNETES_EXEC_INFO: %s", info);
  cr_assert_str_eq(json_string_value(json_object_get(j, "apiVersion")), "client.authentication.k8s.io/v1");
  cr_assert(json_is_false(json_object_get(json_object_get(j, "spec"), "interactive")));
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(json_object_get(j, "spec"), "cluster"), "server")),
      tn_test_env("TENANCY_KUBE_SERVER"));
  json_decref(j);
  free(info);
  char *args = tn_test_output("cat %s/args", dir);
  cr_assert_str_eq(args, "--audience api");
  free(args);
  /* The API server saw the ServiceAccount: it may read, not write. */
  cr_assert_eq(ctl(&out, "--kubeconfig '%s' suspend %s", path, a), 4, "%s", out);
  cr_assert(strstr(out, "Forbidden") && strstr(out, "system:serviceaccount:") && strstr(out, ":reader"), "%s",
            out);
  free(out);
  /* KUBECONFIG (the environment) works the same */
  cr_assert_eq(tn_test_sh(&out, "KUBECONFIG='%s' '%s' get %s -o name </dev/null", path, bin(), a), 0, "%s",
               out);
  free(out);

  /* A plugin that fails: its stderr reaches the user, exit 2 (configuration). */
  snprintf(plugin, sizeof plugin, "%s/fail-plugin.sh", dir);
  write_file(plugin, 0700, "#!/bin/sh\necho 'please log in first' >&2\nexit 5\n");
  write_exec_kubeconfig(path, plugin);
  cr_assert_eq(ctl(&out, "--kubeconfig '%s' get", path), 2, "%s", out);
  cr_assert(strstr(out, "please log in first") && strstr(out, "exited with status 5"), "%s", out);
  free(out);
  tn_test_sh(NULL,
             "kubectl delete namespace %s --wait=false >/dev/null 2>&1; kubectl delete clusterrolebinding %s "
             "clusterrole %s >/dev/null 2>&1; rm -rf %s",
             ns, ns, ns, dir);
  cleanup_tenant(a);
}

Test(cli, exec_plugin_with_a_client_certificate) {
  char dir[64], path[PATH_MAX], plugin[PATH_MAX], *out = NULL;
  workdir(dir, sizeof dir);
  /* jane's certificate and key (PEM) from the unprivileged kubeconfig, printed by the plugin. */
  const char *kc = tn_test_env("TENANCY_UNPRIVILEGED_KUBECONFIG");
  cr_assert_eq(tn_test_sh(&out,
                          "kubectl --kubeconfig '%s' config view --raw -o "
                          "jsonpath='{.users[0].user.client-certificate-data}' | base64 -d > %s/crt && "
                          "kubectl --kubeconfig '%s' config view --raw -o "
                          "jsonpath='{.users[0].user.client-key-data}' | base64 -d > %s/key && "
                          "grep -q 'BEGIN CERTIFICATE' %s/crt && grep -q 'PRIVATE KEY' %s/key",
                          kc, dir, kc, dir, dir, dir),
               0, "%s", out);
  free(out);
  snprintf(plugin, sizeof plugin, "%s/cert-plugin.sh", dir);
  write_file(plugin, 0700,
             "#!/bin/sh\n"
             "c=$(awk '{printf \"%%s\\\\n\", $0}' \"$PLUGIN_DIR/crt\")\n"
             "k=$(awk '{printf \"%%s\\\\n\", $0}' \"$PLUGIN_DIR/key\")\n"
             "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
             "\"status\":{\"clientCertificateData\":\"%%s\",\"clientKeyData\":\"%%s\"}}' \"$c\" \"$k\"\n");
  snprintf(path, sizeof path, "%s/exec.kubeconfig", dir);
  write_exec_kubeconfig(path, plugin);
  /* Authenticated as jane (the API server names her), who may not list tenants. */
  cr_assert_eq(ctl(&out, "--kubeconfig '%s' get", path), 4, "%s", out);
  cr_assert(strstr(out, "User \"jane\" cannot list resource \"tenants\""), "%s", out);
  free(out);
  tn_test_sh(NULL, "rm -rf %s", dir);
}

Test(cli, kubeconfig_files_merged_and_context_selection) {
  char dir[64], a[64], pa[PATH_MAX], pb[PATH_MAX], *out = NULL;
  workdir(dir, sizeof dir);
  tn_test_unique_name(a, sizeof a, "cli-merge");
  create_ok(a, NULL);
  const char *admin = tn_test_env("KUBECONFIG"), *jane = tn_test_env("TENANCY_UNPRIVILEGED_KUBECONFIG");
  /* File A: the cluster and two contexts, no users; current-context "admin-ctx".
   * File B: the users (admin's and jane's credentials), a cluster of the same name that points
   * nowhere (A's must win) and its own current-context (A's must win). */
  snprintf(pa, sizeof pa, "%s/a.kubeconfig", dir);
  snprintf(pb, sizeof pb, "%s/b.kubeconfig", dir);
  write_file(pa, 0600,
             "apiVersion: v1\nkind: Config\ncurrent-context: admin-ctx\n"
             "clusters:\n- name: local\n  cluster: {server: \"%s\", certificate-authority: \"%s\"}\n"
             "contexts:\n- name: admin-ctx\n  context: {cluster: local, user: admin}\n"
             "- name: jane-ctx\n  context: {cluster: local, user: jane}\n",
             tn_test_env("TENANCY_KUBE_SERVER"), tn_test_env("TENANCY_CA_FILE"));
  char *acrt = tn_test_output("kubectl --kubeconfig '%s' config view --raw -o "
                              "jsonpath='{.users[0].user.client-certificate-data}'",
                              admin);
  char *akey = tn_test_output("kubectl --kubeconfig '%s' config view --raw -o "
                              "jsonpath='{.users[0].user.client-key-data}'",
                              admin);
  char *jcrt = tn_test_output("kubectl --kubeconfig '%s' config view --raw -o "
                              "jsonpath='{.users[0].user.client-certificate-data}'",
                              jane);
  char *jkey = tn_test_output("kubectl --kubeconfig '%s' config view --raw -o "
                              "jsonpath='{.users[0].user.client-key-data}'",
                              jane);
  cr_assert(strlen(acrt) > 100 && strlen(akey) > 100 && strlen(jcrt) > 100 && strlen(jkey) > 100);
  write_file(pb, 0600,
             "apiVersion: v1\nkind: Config\ncurrent-context: jane-ctx\n"
             "clusters:\n- name: local\n  cluster: {server: \"https://127.0.0.1:1\"}\n"
             "users:\n- name: admin\n  user: {client-certificate-data: %s, client-key-data: %s}\n"
             "- name: jane\n  user: {client-certificate-data: %s, client-key-data: %s}\n",
             acrt, akey, jcrt, jkey);
  free(acrt);
  free(akey);
  free(jcrt);
  free(jkey);
  /* A:B merged: admin-ctx from A, users from B, A's cluster. */
  cr_assert_eq(tn_test_sh(&out, "KUBECONFIG='%s:%s' '%s' get %s -o name </dev/null", pa, pb, bin(), a), 0,
               "%s", out);
  cr_assert(strstr(out, a), "%s", out);
  free(out);
  /* --context picks jane's context (in A, user in B): the API server sees jane. */
  cr_assert_eq(
      tn_test_sh(&out, "KUBECONFIG='%s:%s' '%s' --context jane-ctx get %s </dev/null", pa, pb, bin(), a), 4,
      "%s", out);
  cr_assert(strstr(out, "User \"jane\""), "%s", out);
  free(out);
  /* B:A: B's current-context (jane) and B's cluster (nowhere) win now. */
  cr_assert_eq(
      tn_test_sh(&out, "KUBECONFIG='%s:%s' '%s' --request-timeout=5 get %s </dev/null", pb, pa, bin(), a), 1,
      "%s", out);
  free(out);
  /* Unknown context: a usage error naming it. */
  cr_assert_eq(tn_test_sh(&out, "KUBECONFIG='%s:%s' '%s' --context=nope get </dev/null", pa, pb, bin()), 2,
               "%s", out);
  cr_assert(strstr(out, "no entry named \"nope\" in contexts"), "%s", out);
  free(out);
  /* kubectl agrees with the merge (the same files, the same answers). */
  char *who =
      tn_test_output("KUBECONFIG='%s:%s' kubectl config view -o jsonpath='{.current-context}'", pa, pb);
  cr_assert_str_eq(who, "admin-ctx");
  free(who);
  tn_test_sh(NULL, "rm -rf %s", dir);
  cleanup_tenant(a);
}

Test(cli, request_timeout_bounds_a_server_that_never_answers) {
  char dir[64], path[PATH_MAX], *out = NULL;
  workdir(dir, sizeof dir);
  int port = tn_test_free_port();
  /* Accepts connections (the kernel does, from the backlog) and never answers the TLS hello. */
  cr_assert_eq(tn_test_sh(NULL,
                          "python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\",%d)); "
                          "s.listen(16); time.sleep(40)' >/dev/null 2>&1 & echo $! > %s/pid; sleep 0.5",
                          port, dir),
               0);
  snprintf(path, sizeof path, "%s/hung.kubeconfig", dir);
  write_file(path, 0600,
             "apiVersion: v1\nkind: Config\ncurrent-context: hung\n"
             "clusters:\n- name: hung\n  cluster: {server: \"https://127.0.0.1:%d\", certificate-authority: "
             "\"%s\"}\n"
             "contexts:\n- name: hung\n  context: {cluster: hung}\n",
             port, tn_test_env("TENANCY_CA_FILE"));
  double t0 = tn_test_now();
  cr_assert_eq(ctl(&out, "--kubeconfig '%s' --request-timeout=2s get", path), 1, "%s", out);
  double took = tn_test_now() - t0;
  cr_assert(took >= 1.5 && took < 10, "gave up after %.1f s, not about 2 s: %s", took, out);
  free(out);
  cr_assert_eq(ctl(&out, "--request-timeout=soon get"), 2, "%s", out);
  free(out);
  tn_test_sh(NULL, "kill $(cat %s/pid) 2>/dev/null; rm -rf %s", dir, dir);
}

/* ---- kubectl tenant, completion, help ------------------------------------------------------------ */

Test(cli, runs_as_the_kubectl_plugin) {
  char a[64], *out = NULL;
  tn_test_unique_name(a, sizeof a, "cli-plugin");
  create_ok(a, "--display-name Plugged");
  char bindir[PATH_MAX];
  snprintf(bindir, sizeof bindir, "%s", bin());
  char *d = dirname(bindir);
  /* build/bin/kubectl-tenant is installed beside tenantctl */
  char *link = tn_test_output("readlink '%s/kubectl-tenant'", d);
  cr_assert_str_eq(link, "tenantctl");
  free(link);
  cr_assert_eq(tn_test_sh(&out, "PATH='%s':\"$PATH\" kubectl plugin list 2>&1", d), 0, "%s", out);
  cr_assert(strstr(out, "kubectl-tenant"), "%s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&out, "PATH='%s':\"$PATH\" kubectl tenant get %s -o wide </dev/null", d, a), 0,
               "%s", out);
  cr_assert(strstr(out, a) && strstr(out, "Plugged"), "%s", out);
  free(out);
  /* kubectl's own completion of `kubectl tenant ...` runs kubectl_complete-tenant */
  cr_assert_eq(tn_test_sh(&out, "PATH='%s':\"$PATH\" kubectl __complete tenant '' 2>/dev/null", d), 0, "%s",
               out);
  cr_assert(strstr(out, "describe\n") && strstr(out, "rotate\n") && strstr(out, ":4"), "%s", out);
  free(out);
  cr_assert_eq(
      tn_test_sh(&out, "PATH='%s':\"$PATH\" kubectl __complete tenant suspend cli-plug 2>/dev/null", d), 0,
      "%s", out);
  cr_assert(strstr(out, a) && !strstr(out, "describe"), "tenant ids: %s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&out, "PATH='%s':\"$PATH\" kubectl __complete tenant get -o y 2>/dev/null", d), 0,
               "%s", out);
  cr_assert_str_eq(out, "yaml\n:4\n");
  free(out);
  cr_assert_eq(tn_test_sh(&out, "PATH='%s':\"$PATH\" kubectl tenant --help", d), 0, "%s", out);
  cr_assert(strstr(out, "Usage: kubectl tenant COMMAND"), "%s", out);
  free(out);
  cr_assert_eq(tn_test_sh(&out, "PATH='%s':\"$PATH\" kubectl tenant get cli-no-such-tenant </dev/null", d), 3,
               "%s", out);
  free(out);
  cleanup_tenant(a);
}

Test(cli, completion_scripts) {
  char *out = NULL;
  cr_assert_eq(
      tn_test_sh(&out, "bash -c 'source <(\"%s\" completion bash) && complete -p tenantctl kubectl-tenant'",
                 bin()),
      0, "%s", out);
  cr_assert(strstr(out, "complete -F _tenantctl tenantctl") && strstr(out, "kubectl-tenant"), "%s", out);
  free(out);
  /* The function completes commands and values. */
  cr_assert_eq(
      tn_test_sh(&out,
                 "bash -c 'source <(\"%s\" completion bash); COMP_WORDS=(tenantctl sus); COMP_CWORD=1; "
                 "_tenantctl; echo \"${COMPREPLY[*]}\"; COMP_WORDS=(tenantctl get -o y); COMP_CWORD=3; "
                 "_tenantctl; echo \"${COMPREPLY[*]}\"'",
                 bin()),
      0, "%s", out);
  cr_assert_str_eq(out, "suspend\nyaml\n");
  free(out);
  cr_assert_eq(ctl(&out, "completion zsh"), 0, "%s", out);
  cr_assert(strstr(out, "#compdef tenantctl") && strlen(out) > 500, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "completion fish"), 0, "%s", out);
  cr_assert(strstr(out, "complete -c tenantctl") && strstr(out, "complete -c kubectl-tenant"), "%s", out);
  free(out);
  if (tn_test_sh(NULL, "command -v zsh >/dev/null") == 0) {
    cr_assert_eq(tn_test_sh(&out, "'%s' completion zsh | zsh -n", bin()), 0, "%s", out);
    free(out);
  }
  if (tn_test_sh(NULL, "command -v fish >/dev/null") == 0) {
    cr_assert_eq(tn_test_sh(&out, "'%s' completion fish | fish -n", bin()), 0, "%s", out);
    free(out);
  }
  cr_assert_eq(ctl(&out, "completion ksh"), 2, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "--help"), 0, "%s", out);
  cr_assert(strstr(out, "Exit codes") && strstr(out, "rotate") && strstr(out, "audit"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "audit --help"), 0, "the audit commands are unchanged: %s", out);
  cr_assert(strstr(out, "verify") && strstr(out, "prune"), "%s", out);
  free(out);
}

/* ---- with the operator: status, events, describe, the audit tail --------------------------------- */

/* One table of exit codes for every command (docs/cli.md): the audit, history and outbox
 * commands on PostgreSQL use the Kubernetes commands' 2 (usage) and 3 (not found), and 5 for a
 * database they cannot use (before, 3 meant "database error" there and "not found" here). */
Test(cli, exit_codes_are_the_same_for_every_command) {
  char schema[64], missing[64], *out = NULL;
  tn_test_unique_name(schema, sizeof schema, "cli_codes");
  tn_test_unique_name(missing, sizeof missing, "cli_nothing");
  for (char *p = schema; *p; p++) /* a schema name: no '-' */
    *p = *p == '-' ? '_' : *p;
  for (char *p = missing; *p; p++)
    *p = *p == '-' ? '_' : *p;
  cr_assert_eq(ctl(&out, "audit init --schema %s", schema), 0, "%s", out);
  free(out);
  /* the help prints the table */
  cr_assert_eq(ctl(&out, "--help"), 0, "%s", out);
  cr_assert(strstr(out, "3 not found") && strstr(out, "4 refused") && strstr(out, "5 database error"), "%s",
            out);
  free(out);
  /* not found: 3, as `get` of a missing tenant */
  cr_assert_eq(ctl(&out, "history cli-no-such-tenant --schema %s", schema), 3, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "diff cli-no-such-tenant --from 1 --to 2 --schema %s", schema), 3, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "events show 00000000-0000-0000-0000-000000000000 --schema %s", schema), 3, "%s",
               out);
  cr_assert(strstr(out, "no event with id"), "%s", out);
  free(out);
  /* database: 5, unreachable or without the tables */
  const char *dead = "--pg-dsn 'host=127.0.0.1 port=1 dbname=postgres user=postgres connect_timeout=3'";
  cr_assert_eq(ctl(&out, "history cli-no-such-tenant %s", dead), 5, "%s", out);
  cr_assert(strstr(out, "is PostgreSQL running and reachable?"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "audit list --tenant x %s", dead), 5, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "events list %s", dead), 5, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "audit verify --schema %s", missing), 5, "%s", out);
  cr_assert(strstr(out, "does not exist"), "%s", out);
  free(out);
  /* usage: 2, with no DSN at all or two of them */
  cr_assert_eq(tn_test_sh(&out, "env -u TENANCY_PG_DSN '%s' history x </dev/null", bin()), 2, "%s", out);
  cr_assert(strstr(out, "TENANCY_PG_DSN"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "events list --pg-dsn x --pg-dsn-file /dev/null"), 2, "%s", out);
  free(out);
  tn_test_sh(NULL, "psql \"$TENANCY_PG_DSN\" -qc 'DROP SCHEMA IF EXISTS %s CASCADE' >/dev/null 2>&1", schema);
}

static struct tn_test_operator op;

static void start_operator(void) {
  tn_test_install_api();
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void stop_operator(void) { tn_test_operator_stop(&op, 15, 30); }

TestSuite(cli_operator, .init = start_operator, .fini = stop_operator, .timeout = 240);

Test(cli_operator, describe_events_and_audit_of_a_live_tenant) {
  char a[64], *out = NULL;
  tn_test_unique_name(a, sizeof a, "cli-live");
  create_ok(a, "--region eu-west-1 --allowed-region eu-west-1 --env prod --display-name Live");
  cr_assert_eq(ctl(&out, "activate %s --reason go-live", a), 0, "%s", out);
  free(out);
  /* the operator converges it: status.state Active, shown by get */
  int rc = tn_test_sh_until(90, &out, "'%s' get %s --state Active -o name </dev/null | grep -q .", bin(), a);
  if (rc != 0)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "tenant %s never reached Active: %s", a, out);
  free(out);
  cr_assert_eq(ctl(&out, "get %s", a), 0, "%s", out);
  cr_assert(strstr(out, "Active") && strstr(out, "eu-west-1"), "STATE and REGION columns: %s", out);
  free(out);
  /* events: the operator's Events about this tenant */
  cr_assert_eq(tn_test_sh_until(30, &out, "'%s' events %s </dev/null | grep -q Activated", bin(), a), 0, "%s",
               out);
  free(out);
  cr_assert_eq(ctl(&out, "events %s", a), 0, "%s", out);
  cr_assert(strstr(out, "LAST SEEN") && strstr(out, "REASON") && strstr(out, "Activated"), "%s", out);
  free(out);
  json_t *j = ctl_json("events %s -o json", a);
  size_t i;
  json_t *e;
  cr_assert_gt(json_array_size(json_object_get(j, "items")), 0);
  json_array_foreach(json_object_get(j, "items"), i, e) {
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(e, "regarding"), "name")), a,
                     "only this tenant's events");
  }
  json_decref(j);
  /* describe: conditions, placement, namespaces, events and the audit tail */
  cr_assert_eq(ctl(&out, "describe %s", a), 0, "%s", out);
  cr_assert(strstr(out, "Display Name:") && strstr(out, "Live") &&
                strstr(out, "State:                Active"),
            "%s", out);
  cr_assert(strstr(out, "State Reason:         go-live"), "%s", out);
  cr_assert(strstr(out, "Placement:\n  Region:             eu-west-1"), "%s", out);
  char ns[96];
  snprintf(ns, sizeof ns, "%s-prod", a);
  cr_assert(strstr(out, ns), "namespaces: %s", out);
  cr_assert(strstr(out, "Conditions:") && strstr(out, "Ready") && strstr(out, "Placed"), "%s", out);
  cr_assert(strstr(out, "Events:") && strstr(out, "Activated"), "%s", out);
  cr_assert(strstr(out, "Audit (newest 10):") && strstr(out, "ACTION"),
            "the audit tail ($TENANCY_PG_DSN): %s", out);
  free(out);
  /* without a DSN the audit part says how to get it */
  cr_assert_eq(tn_test_sh(&out, "env -u TENANCY_PG_DSN '%s' describe %s </dev/null", bin(), a), 0, "%s", out);
  cr_assert(strstr(out, "set TENANCY_PG_DSN"), "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "describe cli-no-such-tenant"), 3, "%s", out);
  free(out);
  cr_assert_eq(ctl(&out, "events cli-no-such-tenant"), 3, "%s", out);
  free(out);
  /* teardown through the CLI: archive, delete */
  cr_assert_eq(ctl(&out, "archive %s", a), 0, "%s", out);
  free(out);
  /* the operator's status write for the archive comes first: delete's patch carries the
   * resourceVersion it read and would otherwise conflict with it (409, exit 4) */
  tn_test_sh_until(60, NULL,
                   "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}/{.status.observedGeneration}/"
                   "{.metadata.generation}' | awk -F/ '{print $1\"/\"($2==$3)}')\" = Archived/1",
                   a);
  cr_assert_eq(ctl(&out, "delete %s --confirm=%s", a, a), 0, "%s", out);
  free(out);
  tn_test_sh_until(60, NULL, "kubectl get tenant %s -o jsonpath='{.status.state}' | grep -q Deleted", a);
  tn_test_sh(NULL, "kubectl delete tenant %s --wait=true --timeout=60s >/dev/null 2>&1", a);
}
