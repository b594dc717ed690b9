/* test_crds.c - the tenancy.dev CRDs against a real API server: they install and serve the
 * contracted names, every sample applies, printer columns show, and bad input is refused by the
 * API server itself (schema and CEL rules) with the message a user needs. No operator runs. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_test.h"
#include "util/buf.h"

#define LABEL_KEY "tests.tenancy.dev/suite"

static const char *const CRD_NAMES[] = {"tenants.tenancy.dev", "plans.tenancy.dev", "regions.tenancy.dev",
                                        "tenancypolicies.tenancy.dev"};

/* The repository root, from this file's path (CMake compiles with absolute paths); falls back
 * to the working directory (hack/test.sh runs the suites from the root). */
static const char *repo_root(void) {
  static char root[PATH_MAX];
  if (root[0])
    return root;
  const char *suffix = "/tests/integration/test_crds.c";
  size_t n = strlen(__FILE__), s = strlen(suffix);
  if (__FILE__[0] == '/' && n > s && strcmp(__FILE__ + n - s, suffix) == 0 && n - s < sizeof root) {
    memcpy(root, __FILE__, n - s);
    root[n - s] = '\0';
  } else if (!getcwd(root, sizeof root)) {
    strcpy(root, ".");
  }
  return root;
}

/* The label value that marks what this test process created, so fini can remove it. */
static const char *run_label(void) {
  static char v[32];
  snprintf(v, sizeof v, "crds-%ld", (long)getpid());
  return v;
}

static void install_crds(void) {
  char *out = NULL;
  int rc =
      tn_test_sh(&out,
                 "kubectl apply --server-side --force-conflicts --field-manager=tenancy-operator-install "
                 "-f '%s/crds/' && kubectl wait --for=condition=Established --timeout=60s -f '%s/crds/'",
                 repo_root(), repo_root());
  cr_assert_eq(rc, 0, "installing crds/ failed: %s", out);
  free(out);
}

static void cleanup_objects(void) {
  char *out = NULL;
  (void)tn_test_sh(&out, "kubectl delete tenants,plans,regions,tenancypolicies -l %s=%s --ignore-not-found",
                   LABEL_KEY, run_label());
  free(out);
}

TestSuite(crds, .init = install_crds, .fini = cleanup_objects, .timeout = 240);

/* Writes OBJ (borrowed) to a temporary file and runs `kubectl VERB -f FILE`. */
static int kubectl_file(char **out, const char *verb, json_t *obj) {
  char path[] = "/tmp/tn-crds-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0, "mkstemp");
  close(fd);
  cr_assert_eq(json_dump_file(obj, path, JSON_COMPACT), 0, "writing %s", path);
  int rc = tn_test_sh(out, "kubectl %s -f %s", verb, path);
  unlink(path);
  return rc;
}

/* A new object of KIND named NAME with SPEC_JSON (a JSON object text) as spec, labelled for
 * cleanup. Returns a new reference (json_decref it). */
static json_t *object_new(const char *kind, const char *name, const char *spec_json) {
  json_error_t err;
  json_t *spec = json_loads(spec_json, 0, &err);
  cr_assert_not_null(spec, "bad spec JSON in the test: %s: %s", err.text, spec_json);
  return json_pack("{s:s, s:s, s:{s:s, s:{s:s}}, s:o}", "apiVersion", "tenancy.dev/v1alpha1", "kind", kind,
                   "metadata", "name", name, "labels", LABEL_KEY, run_label(), "spec", spec);
}

/* kubectl create of a KIND named NAME with SPEC_JSON exactly; returns kubectl's exit status. */
static int create_exact(char **out, const char *kind, const char *name, const char *spec_json) {
  json_t *obj = object_new(kind, name, spec_json);
  int rc = kubectl_file(out, "create", obj);
  json_decref(obj);
  return rc;
}

/* Like create_exact, but a Tenant without spec.plan gets "standard" (every tenant needs one, and
 * most tests are about something else). */
static int create(char **out, const char *kind, const char *name, const char *spec_json) {
  json_t *obj = object_new(kind, name, spec_json);
  json_t *spec = json_object_get(obj, "spec");
  if (strcmp(kind, "Tenant") == 0 && !json_object_get(spec, "plan"))
    json_object_set_new(spec, "plan", json_string("standard"));
  int rc = kubectl_file(out, "create", obj);
  json_decref(obj);
  return rc;
}

/* kubectl patch --type=merge of the spec (SPEC_JSON must hold no single quote). */
static int patch_spec(char **out, const char *resource, const char *name, const char *spec_json) {
  return tn_test_sh(out, "kubectl patch %s %s --type=merge -p '{\"spec\":%s}'", resource, name, spec_json);
}

static void delete_obj(const char *resource, const char *name) {
  char *out = NULL;
  (void)tn_test_sh(&out, "kubectl delete %s %s --ignore-not-found", resource, name);
  free(out);
}

/* The value at JSONPATH of RESOURCE/NAME; malloc'd (free it). */
static char *get_field(const char *resource, const char *name, const char *jsonpath) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl get %s %s -o jsonpath='%s'", resource, name, jsonpath);
  cr_assert_eq(rc, 0, "get %s %s: %s", resource, name, out);
  return out;
}

#define assert_created(rc, out) cr_assert_eq((rc), 0, "expected success, got: %s", (out))

#define assert_refused(rc, out, needle)                                                                      \
  do {                                                                                                       \
    cr_assert_neq((rc), 0, "expected a refusal mentioning \"%s\", but it was accepted: %s", (needle),        \
                  (out));                                                                                    \
    cr_assert(strstr((out), (needle)) != NULL, "expected \"%s\" in the refusal, got: %s", (needle), (out));  \
  } while (0)

/* Creates a tenant whose spec is SPEC_JSON and expects a refusal mentioning NEEDLE. */
static void expect_tenant_refused(const char *spec_json, const char *needle) {
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "bad");
  int rc = create(&out, "Tenant", name, spec_json);
  assert_refused(rc, out, needle);
  free(out);
}

/* --- installation and the contracted names ----------------------------------------------------------- */

struct crd_expect {
  const char *name, *kind, *plural, *singular, *short_name;
};

Test(crds, installed_with_the_contracted_names) {
  static const struct crd_expect want[] = {
      {"tenants.tenancy.dev", "Tenant", "tenants", "tenant", "tn"},
      {"plans.tenancy.dev", "Plan", "plans", "plan", "tplan"},
      {"regions.tenancy.dev", "Region", "regions", "region", "treg"},
      {"tenancypolicies.tenancy.dev", "TenancyPolicy", "tenancypolicies", "tenancypolicy", "tpol"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    char *out = NULL;
    int rc = tn_test_sh(&out, "kubectl get crd %s -o json", want[i].name);
    cr_assert_eq(rc, 0, "%s", out);
    json_error_t err;
    json_t *crd = json_loads(out, 0, &err);
    cr_assert_not_null(crd, "%s: %s", err.text, out);
    free(out);
    json_t *spec = json_object_get(crd, "spec"), *names = json_object_get(spec, "names");
    cr_expect_str_eq(json_string_value(json_object_get(spec, "group")), "tenancy.dev");
    cr_expect_str_eq(json_string_value(json_object_get(spec, "scope")), "Cluster", "%s", want[i].name);
    cr_expect_str_eq(json_string_value(json_object_get(names, "kind")), want[i].kind);
    cr_expect_str_eq(json_string_value(json_object_get(names, "plural")), want[i].plural);
    cr_expect_str_eq(json_string_value(json_object_get(names, "singular")), want[i].singular);
    json_t *shorts = json_object_get(names, "shortNames");
    if (want[i].short_name) {
      cr_expect_eq(json_array_size(shorts), 1);
      cr_expect_str_eq(json_string_value(json_array_get(shorts, 0)), want[i].short_name);
    } else {
      cr_expect_eq(json_array_size(shorts), 0, "%s has unexpected short names", want[i].name);
    }
    json_t *versions = json_object_get(spec, "versions");
    cr_assert_eq(json_array_size(versions), 1);
    json_t *v = json_array_get(versions, 0);
    cr_expect_str_eq(json_string_value(json_object_get(v, "name")), "v1alpha1");
    cr_expect(json_is_true(json_object_get(v, "served")));
    cr_expect(json_is_true(json_object_get(v, "storage")));
    cr_expect_not_null(json_object_get(json_object_get(v, "subresources"), "status"),
                       "%s has no status subresource", want[i].name);
    json_t *cond;
    size_t k;
    int established = 0;
    json_array_foreach(json_object_get(json_object_get(crd, "status"), "conditions"), k, cond) {
      if (strcmp(json_string_value(json_object_get(cond, "type")), "Established") == 0)
        established = strcmp(json_string_value(json_object_get(cond, "status")), "True") == 0;
    }
    cr_expect(established, "%s is not Established", want[i].name);
    json_decref(crd);
  }
}

/* Walks a schema and appends to MISSING the path of every field without a description. */
static void find_undescribed(json_t *schema, const char *path, int root, struct tn_buf *missing) {
  const char *key;
  json_t *prop;
  json_object_foreach(json_object_get(schema, "properties"), key, prop) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s.%s", path, key);
    if (root && strcmp(key, "metadata") == 0)
      continue; /* the API server forbids anything but name/generateName there */
    if (!json_is_string(json_object_get(prop, "description")))
      tn_buf_printf(missing, "%s ", sub);
    find_undescribed(prop, sub, 0, missing);
  }
  json_t *items = json_object_get(schema, "items");
  if (json_is_object(items)) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s[]", path);
    if (!json_is_string(json_object_get(items, "description")))
      tn_buf_printf(missing, "%s ", sub);
    find_undescribed(items, sub, 0, missing);
  }
  json_t *ap = json_object_get(schema, "additionalProperties");
  if (json_is_object(ap)) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s{}", path);
    if (!json_is_string(json_object_get(ap, "description")))
      tn_buf_printf(missing, "%s ", sub);
    find_undescribed(ap, sub, 0, missing);
  }
}

Test(crds, every_field_has_a_description) {
  for (size_t i = 0; i < sizeof CRD_NAMES / sizeof CRD_NAMES[0]; i++) {
    char *out = NULL;
    cr_assert_eq(tn_test_sh(&out, "kubectl get crd %s -o json", CRD_NAMES[i]), 0, "%s", out);
    json_t *crd = json_loads(out, 0, NULL);
    cr_assert_not_null(crd);
    free(out);
    json_t *schema = json_object_get(
        json_object_get(json_array_get(json_object_get(json_object_get(crd, "spec"), "versions"), 0),
                        "schema"),
        "openAPIV3Schema");
    cr_assert_not_null(schema);
    struct tn_buf missing;
    tn_buf_init(&missing, 1 << 20);
    find_undescribed(schema, CRD_NAMES[i], 1, &missing);
    cr_expect_eq(missing.len, 0, "fields without a description: %s", tn_buf_str(&missing));
    tn_buf_cleanup(&missing);
    json_decref(crd);
  }
  /* And kubectl explain serves them. */
  char *out = NULL;
  cr_assert_eq(tn_test_sh(&out, "kubectl explain tenants.spec.state"), 0, "%s", out);
  cr_expect(strstr(out, "requested lifecycle state") != NULL, "%s", out);
  free(out);
}

Test(crds, short_names_and_category_resolve) {
  char *out = NULL;
  cr_assert_eq(tn_test_sh(&out, "kubectl api-resources --api-group=tenancy.dev --no-headers"), 0, "%s", out);
  cr_expect(strstr(out, "tenants") && strstr(out, " tn ") != NULL, "%s", out);
  cr_expect(strstr(out, "tenancypolicies") && strstr(out, " tpol ") != NULL, "%s", out);
  free(out);
  const char *resources[] = {"tn",   "tenants", "plans",           "tplan",  "regions",
                             "treg", "tpol",    "tenancypolicies", "tenancy"};
  for (size_t i = 0; i < sizeof resources / sizeof resources[0]; i++) {
    int rc = tn_test_sh(&out, "kubectl get %s", resources[i]);
    cr_expect_eq(rc, 0, "kubectl get %s: %s", resources[i], out);
    free(out);
  }
}

/* --- samples and printer columns ------------------------------------------------------------------------ */

Test(crds, every_sample_applies) {
  const char *root = repo_root();
  char *before = NULL, *out = NULL;
  /* Remember which sample objects already exist: only the others are removed afterwards. */
  cr_assert_eq(tn_test_sh(&before, "kubectl get -f '%s/manifests/samples/' -o name --ignore-not-found", root),
               0, "%s", before);
  int rc = tn_test_sh(&out, "kubectl apply --dry-run=server -f '%s/manifests/samples/'", root);
  cr_assert_eq(rc, 0, "a sample is refused by the API server: %s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl apply -f '%s/manifests/samples/'", root);
  cr_expect_eq(rc, 0, "kubectl apply -f manifests/samples/: %s", out);
  free(out);

  static const char *const expected[] = {"plan.tenancy.dev/starter",
                                         "plan.tenancy.dev/standard",
                                         "plan.tenancy.dev/enterprise",
                                         "region.tenancy.dev/eu-west-1",
                                         "region.tenancy.dev/eu-central-1",
                                         "region.tenancy.dev/us-east-1",
                                         "tenancypolicy.tenancy.dev/eu-residency",
                                         "tenancypolicy.tenancy.dev/api-rate-limits",
                                         "tenant.tenancy.dev/acme",
                                         "tenant.tenancy.dev/globex"};
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
    rc = tn_test_sh(&out, "kubectl get %s -o name", expected[i]);
    cr_expect_eq(rc, 0, "%s missing after applying the samples: %s", expected[i], out);
    free(out);
  }
  /* acme is the contract's example: Active, standard, shared, its two namespaces' environments. */
  char *v = get_field("tenant", "acme", "{.spec.state} {.spec.plan} {.spec.isolation} {.spec.environments}");
  cr_expect_str_eq(v, "Active standard shared [\"prod\",\"staging\"]");
  free(v);
  v = get_field("tenant", "globex", "{.spec.state}");
  cr_expect_str_eq(v, "Draft");
  free(v);

  if (rc == 0) {
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
      if (strstr(before, expected[i]))
        continue;
      const char *slash = strchr(expected[i], '/');
      char kind[64];
      snprintf(kind, sizeof kind, "%.*s", (int)(slash - expected[i]), expected[i]);
      delete_obj(kind, slash + 1);
    }
  }
  free(before);
}

/* Splits the first line of OUT into words separated by runs of spaces, joined by one space. */
static char *squeeze_line(const char *out, int line) {
  const char *p = out;
  for (int i = 0; i < line && p; i++) {
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  cr_assert_not_null(p, "no line %d in: %s", line, out);
  struct tn_buf b;
  tn_buf_init(&b, 4096);
  int space = 0;
  for (; *p && *p != '\n'; p++) {
    if (*p == ' ') {
      space = 1;
      continue;
    }
    if (space && b.len)
      tn_buf_append(&b, " ", 1);
    space = 0;
    tn_buf_append(&b, p, 1);
  }
  char *s = tn_buf_take(&b);
  tn_buf_cleanup(&b);
  return s;
}

Test(crds, get_tenants_shows_state_plan_region_ready_age) {
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "cols");
  int rc = create(&out, "Tenant", name,
                  "{\"state\":\"Active\",\"plan\":\"standard\",\"environments\":[\"prod\"]}");
  assert_created(rc, out);
  free(out);
  /* What the operator would write, through the status subresource. */
  rc = tn_test_sh(
      &out,
      "kubectl patch tenant %s --subresource=status --type=merge -p '{\"status\":{\"state\":\"Active\","
      "\"placement\":{\"region\":\"eu-west-1\",\"isolation\":\"shared\"},\"conditions\":[{\"type\":"
      "\"Ready\",\"status\":\"True\",\"reason\":\"Converged\",\"message\":\"all converged\","
      "\"lastTransitionTime\":\"2026-01-02T03:04:05Z\",\"observedGeneration\":1}]}}'",
      name);
  cr_assert_eq(rc, 0, "status patch: %s", out);
  free(out);

  rc = tn_test_sh(&out, "kubectl get tenants %s", name);
  cr_assert_eq(rc, 0, "%s", out);
  char *header = squeeze_line(out, 0), *row = squeeze_line(out, 1);
  cr_expect_str_eq(header, "NAME STATE PLAN REGION READY AGE");
  char want[160];
  snprintf(want, sizeof want, "%s Active standard eu-west-1 True ", name);
  cr_expect(strncmp(row, want, strlen(want)) == 0, "row \"%s\" does not start with \"%s\"", row, want);
  free(header);
  free(row);
  free(out);

  /* The short name, and the wide columns. */
  rc = tn_test_sh(&out, "kubectl get tn %s -o wide", name);
  cr_assert_eq(rc, 0, "%s", out);
  header = squeeze_line(out, 0);
  cr_expect_str_eq(header, "NAME STATE PLAN REGION READY AGE DESIRED ISOLATION DISPLAY NAME");
  free(header);
  free(out);

  /* The status subresource is real: the main endpoint ignores status, the subresource ignores spec. */
  rc = tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"status\":{\"state\":\"Suspended\"}}'",
                  name);
  free(out);
  char *v = get_field("tenant", name, "{.status.state}");
  cr_expect_str_eq(v, "Active", "the main endpoint changed status");
  free(v);
  rc = tn_test_sh(
      &out,
      "kubectl patch tenant %s --subresource=status --type=merge -p '{\"spec\":{\"plan\":\"starter\"}}'",
      name);
  free(out);
  v = get_field("tenant", name, "{.spec.plan}");
  cr_expect_str_eq(v, "standard", "the status subresource changed spec");
  free(v);
  delete_obj("tenant", name);
}

Test(crds, defaults_are_applied) {
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "dflt");
  int rc = create(&out, "Tenant", name, "{\"displayName\":\"Defaults\"}");
  assert_created(rc, out);
  free(out);
  char *v = get_field("tenant", name, "{.spec.state} {.spec.isolation}");
  cr_expect_str_eq(v, "Draft shared");
  free(v);
  delete_obj("tenant", name);

  char region[64];
  tn_test_unique_name(region, sizeof region, "rgd");
  rc = create(
      &out, "Region", region,
      "{\"available\":true,\"isolationModes\":[\"shared\"],\"databaseServers\":[{\"name\":\"pg\",\"host\":"
      "\"db.example\",\"serves\":[\"shared\"],\"adminSecretRef\":{\"namespace\":\"tenancy-system\","
      "\"name\":\"pg-admin\"}}]}");
  assert_created(rc, out);
  free(out);
  v = get_field("region", region, "{.spec.databaseServers[0].port} {.spec.databaseServers[0].sslMode}");
  cr_expect_str_eq(v, "5432 verify-full");
  free(v);
  delete_obj("region", region);
}

/* --- tenant ids and namespace names ----------------------------------------------------------------------
 */

Test(crds, tenant_id_must_be_a_dns_label) {
  /* A valid DNS subdomain but not a label: only our rule refuses it. */
  char *out = NULL;
  int rc = create(&out, "Tenant", "acme.corp", "{}");
  assert_refused(rc, out, "the tenant id (metadata.name) must be a DNS label");
  free(out);

  /* Hostile names: uppercase, SQL metacharacters, unicode, spaces, underscores, dashes at the ends. */
  static const char *const hostile[] = {"Acme",
                                        "a';drop",
                                        "a';drop table tenants;--",
                                        "\xc3\xa9t\xc3\xa9",
                                        "a b",
                                        "a_b",
                                        "-acme",
                                        "acme-",
                                        "a/b",
                                        "a%2fb",
                                        "..",
                                        "a\"b"};
  for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
    rc = create(&out, "Tenant", hostile[i], "{}");
    cr_expect_neq(rc, 0, "hostile name \"%s\" was accepted: %s", hostile[i], out);
    cr_expect(
        strstr(out, "metadata.name: Invalid value: the tenant id (metadata.name) must be a DNS label") !=
            NULL,
        "no clear reason given for \"%s\": %s", hostile[i], out);
    free(out);
  }

  /* 63 characters is the limit. */
  char name[80];
  tn_test_unique_name(name, sizeof name, "len");
  size_t n = strlen(name);
  memset(name + n, 'a', 63 - n);
  name[63] = '\0';
  rc = create(&out, "Tenant", name, "{}");
  assert_created(rc, out);
  free(out);
  delete_obj("tenant", name);
  name[63] = 'a';
  name[64] = '\0';
  rc = create(&out, "Tenant", name, "{}");
  assert_refused(rc, out, "metadata.name: Too long: may not be more than 63");
  free(out);
  char huge[400];
  memset(huge, 'a', sizeof huge - 1);
  huge[sizeof huge - 1] = '\0';
  rc = create(&out, "Tenant", huge, "{}");
  assert_refused(rc, out, "metadata.name: Too long");
  free(out);
}

Test(crds, namespace_names_must_fit_in_63_characters) {
  /* A 40-character tenant id leaves 22 characters for an environment: 40 + '-' + 22 = 63. */
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "nsl");
  size_t n = strlen(name);
  memset(name + n, 'a', 40 - n);
  name[40] = '\0';
  char env22[23], env23[24];
  memset(env22, 'e', 22);
  env22[22] = '\0';
  memset(env23, 'e', 23);
  env23[23] = '\0';

  char spec[256];
  snprintf(spec, sizeof spec, "{\"environments\":[\"prod\",\"%s\"]}", env23);
  int rc = create(&out, "Tenant", name, spec);
  char want[256];
  snprintf(want, sizeof want,
           "namespace %s-%s would be longer than the 63 characters allowed for namespace names: shorten the "
           "tenant id (metadata.name) or the environment names",
           name, env23);
  assert_refused(rc, out, want);
  free(out);

  snprintf(spec, sizeof spec, "{\"environments\":[\"prod\",\"%s\"]}", env22);
  rc = create(&out, "Tenant", name, spec);
  assert_created(rc, out);
  free(out);
  /* And the same rule on update. */
  snprintf(spec, sizeof spec, "{\"environments\":[\"prod\",\"%s\"]}", env23);
  rc = patch_spec(&out, "tenant", name, spec);
  assert_refused(rc, out, want);
  free(out);
  delete_obj("tenant", name);
}

Test(crds, environments_are_a_set_of_dns_labels) {
  expect_tenant_refused("{\"environments\":[\"prod\",\"staging\",\"prod\"]}", "Duplicate value: \"prod\"");
  expect_tenant_refused("{\"environments\":[\"Prod\"]}", "spec.environments[0]");
  expect_tenant_refused("{\"environments\":[\"prod;rm -rf\"]}", "spec.environments[0]");
  expect_tenant_refused("{\"environments\":[\"\"]}", "spec.environments[0]");
}

/* --- lifecycle -------------------------------------------------------------------------------------------
 */

static const char *const STATES[] = {"Draft", "Active", "Suspended", "Archived", "Deleted"};

/* The contract (API.md): which spec.state changes are allowed, and the states the refusal names. */
static int transition_allowed(int from, int to) {
  static const int ok[5][5] = {
      /*            Draft Active Susp Arch Del */
      /* Draft */ {1, 1, 0, 0, 1},
      /* Active */ {0, 1, 1, 1, 0},
      /* Susp */ {0, 1, 1, 1, 0},
      /* Arch */ {0, 1, 0, 1, 1}, /* -> Active: a restore */
      /* Del */ {0, 0, 0, 0, 1},
  };
  return ok[from][to];
}

static const char *allowed_next(int from) {
  static const char *const next[] = {"Active, Deleted", "Suspended, Archived", "Active, Archived",
                                     "Active, Deleted", NULL};
  return next[from];
}

/* Every pair of states: create a tenant in FROM, request TO, compare with the contract. */
Test(crds, every_state_transition_matches_the_contract, .timeout = 300) {
  for (int from = 0; from < 5; from++) {
    for (int to = 0; to < 5; to++) {
      char name[64], spec[256], *out = NULL;
      tn_test_unique_name(name, sizeof name, "tr");
      snprintf(spec, sizeof spec, "{\"state\":\"%s\",\"plan\":\"standard\",\"deletionConfirmation\":\"%s\"}",
               STATES[from], name);
      int rc = create(&out, "Tenant", name, spec);
      cr_assert_eq(rc, 0, "creating a %s tenant: %s", STATES[from], out);
      free(out);
      snprintf(spec, sizeof spec, "{\"state\":\"%s\"}", STATES[to]);
      rc = patch_spec(&out, "tenant", name, spec);
      if (transition_allowed(from, to)) {
        cr_expect_eq(rc, 0, "%s -> %s should be allowed: %s", STATES[from], STATES[to], out);
        char *v = get_field("tenant", name, "{.spec.state}");
        cr_expect_str_eq(v, STATES[to]);
        free(v);
      } else {
        char want[256];
        if (from == 4)
          snprintf(want, sizeof want,
                   "transition Deleted -> %s is not allowed; Deleted is final (a tombstone)", STATES[to]);
        else
          snprintf(
              want, sizeof want,
              "spec.state: Forbidden: transition %s -> %s is not allowed; from %s the allowed states are: %s",
              STATES[from], STATES[to], STATES[from], allowed_next(from));
        cr_expect_neq(rc, 0, "%s -> %s should be refused", STATES[from], STATES[to]);
        cr_expect(strstr(out, want) != NULL, "%s -> %s: expected \"%s\" in: %s", STATES[from], STATES[to],
                  want, out);
        char *v = get_field("tenant", name, "{.spec.state}");
        cr_expect_str_eq(v, STATES[from], "a refused transition changed the state");
        free(v);
      }
      free(out);
      delete_obj("tenant", name);
    }
  }
}

/* The whole life of one tenant through kubectl patch, each allowed step in turn. */
Test(crds, a_tenant_walks_its_whole_lifecycle) {
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "life");
  int rc = create(&out, "Tenant", name, "{\"plan\":\"starter\",\"environments\":[\"prod\"]}");
  assert_created(rc, out);
  free(out);
  const char *steps[] = {"Active", "Suspended", "Active", "Suspended", "Archived"};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    char spec[128];
    snprintf(spec, sizeof spec, "{\"state\":\"%s\",\"stateReason\":\"step %zu\"}", steps[i], i);
    rc = patch_spec(&out, "tenant", name, spec);
    cr_assert_eq(rc, 0, "-> %s: %s", steps[i], out);
    free(out);
  }
  char spec[160];
  snprintf(spec, sizeof spec, "{\"state\":\"Deleted\",\"deletionConfirmation\":\"%s\"}", name);
  rc = patch_spec(&out, "tenant", name, spec);
  cr_assert_eq(rc, 0, "Archived -> Deleted with the confirmation: %s", out);
  free(out);
  char *v = get_field("tenant", name, "{.spec.state}");
  cr_expect_str_eq(v, "Deleted");
  free(v);
  /* A tombstone's metadata (labels, finalizers) can still change, and it can be deleted. */
  rc = tn_test_sh(&out, "kubectl label tenant %s example.com/archived-by=test", name);
  cr_expect_eq(rc, 0, "%s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl delete tenant %s", name);
  cr_expect_eq(rc, 0, "%s", out);
  free(out);
}

Test(crds, deleted_needs_the_confirmation) {
  char name[64], spec[160], want[256], *out = NULL;
  tn_test_unique_name(name, sizeof name, "conf");
  int rc = create(&out, "Tenant", name, "{\"state\":\"Active\",\"plan\":\"standard\"}");
  assert_created(rc, out);
  free(out);
  rc = patch_spec(&out, "tenant", name, "{\"state\":\"Archived\"}");
  assert_created(rc, out);
  free(out);

  snprintf(
      want, sizeof want,
      "spec.deletionConfirmation: Invalid value: moving tenant %s to Deleted needs spec.deletionConfirmation "
      "set to the tenant id: %s",
      name, name);
  rc = patch_spec(&out, "tenant", name, "{\"state\":\"Deleted\"}");
  assert_refused(rc, out, want);
  free(out);
  rc = patch_spec(&out, "tenant", name, "{\"state\":\"Deleted\",\"deletionConfirmation\":\"\"}");
  assert_refused(rc, out, want);
  free(out);
  /* Someone else's id, or a prefix of this one, is not a confirmation. */
  rc = patch_spec(&out, "tenant", name, "{\"state\":\"Deleted\",\"deletionConfirmation\":\"acme\"}");
  assert_refused(rc, out, want);
  free(out);
  snprintf(spec, sizeof spec, "{\"state\":\"Deleted\",\"deletionConfirmation\":\"%.*s\"}",
           (int)strlen(name) - 1, name);
  rc = patch_spec(&out, "tenant", name, spec);
  assert_refused(rc, out, want);
  free(out);
  char *v = get_field("tenant", name, "{.spec.state}");
  cr_expect_str_eq(v, "Archived");
  free(v);

  snprintf(spec, sizeof spec, "{\"state\":\"Deleted\",\"deletionConfirmation\":\"%s\"}", name);
  rc = patch_spec(&out, "tenant", name, spec);
  assert_created(rc, out);
  free(out);
  delete_obj("tenant", name);

  /* Draft -> Deleted the same way. */
  tn_test_unique_name(name, sizeof name, "conf");
  rc = create(&out, "Tenant", name, "{}");
  assert_created(rc, out);
  free(out);
  rc = patch_spec(&out, "tenant", name, "{\"state\":\"Deleted\"}");
  assert_refused(rc, out, "needs spec.deletionConfirmation set to the tenant id");
  free(out);
  snprintf(spec, sizeof spec, "{\"state\":\"Deleted\",\"deletionConfirmation\":\"%s\"}", name);
  rc = patch_spec(&out, "tenant", name, spec);
  assert_created(rc, out);
  free(out);
  delete_obj("tenant", name);
}

Test(crds, a_deleted_tenant_is_a_tombstone) {
  char name[64], spec[160], *out = NULL;
  tn_test_unique_name(name, sizeof name, "tomb");
  snprintf(spec, sizeof spec,
           "{\"state\":\"Deleted\",\"deletionConfirmation\":\"%s\",\"displayName\":\"Gone\"}", name);
  int rc = create(&out, "Tenant", name, spec);
  assert_created(rc, out);
  free(out);
  const char *edits[] = {"{\"displayName\":\"Back\"}", "{\"plan\":\"starter\"}",
                         "{\"environments\":[\"prod\"]}", "{\"deletionConfirmation\":\"x\"}"};
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    rc = patch_spec(&out, "tenant", name, edits[i]);
    assert_refused(rc, out, "a Deleted tenant is a tombstone and its spec can no longer change");
    free(out);
  }
  rc = patch_spec(&out, "tenant", name, "{\"state\":\"Active\"}");
  assert_refused(rc, out, "transition Deleted -> Active is not allowed; Deleted is final (a tombstone)");
  free(out);
  /* The operator still writes its status. */
  rc = tn_test_sh(&out,
                  "kubectl patch tenant %s --subresource=status --type=merge -p "
                  "'{\"status\":{\"state\":\"Deleted\",\"deletedAt\":\"2026-01-02T03:04:05Z\"}}'",
                  name);
  cr_expect_eq(rc, 0, "%s", out);
  free(out);
  delete_obj("tenant", name);
}

Test(crds, every_tenant_needs_a_plan) {
  const char *want =
      "spec.plan: Required value: every tenant needs spec.plan, the name of a Plan (a Draft tenant "
      "too; the plan can change later)";
  const char *states[] = {"Draft", "Active", "Suspended", "Archived"};
  for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
    char name[64], spec[64], *out = NULL;
    tn_test_unique_name(name, sizeof name, "noplan");
    snprintf(spec, sizeof spec, "{\"state\":\"%s\"}", states[i]);
    int rc = create_exact(&out, "Tenant", name, spec);
    assert_refused(rc, out, want);
    free(out);
  }
  /* It can change, in Draft and later, and cannot be removed. */
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "plan");
  int rc = create_exact(&out, "Tenant", name, "{\"plan\":\"starter\"}");
  assert_created(rc, out);
  free(out);
  rc = patch_spec(&out, "tenant", name, "{\"plan\":\"standard\"}");
  assert_created(rc, out);
  free(out);
  rc = patch_spec(&out, "tenant", name, "{\"state\":\"Active\",\"plan\":\"enterprise\"}");
  assert_created(rc, out);
  free(out);
  rc = patch_spec(&out, "tenant", name, "{\"plan\":null}");
  assert_refused(rc, out, want);
  free(out);
  char *v = get_field("tenant", name, "{.spec.plan}");
  cr_expect_str_eq(v, "enterprise");
  free(v);
  delete_obj("tenant", name);
}

Test(crds, isolation_is_fixed_once_out_of_draft) {
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "iso");
  int rc = create(&out, "Tenant", name, "{\"plan\":\"standard\"}");
  assert_created(rc, out);
  free(out);
  rc = patch_spec(&out, "tenant", name, "{\"isolation\":\"dedicated\"}");
  cr_assert_eq(rc, 0, "changing isolation while Draft: %s", out);
  free(out);
  /* Leaving Draft and changing isolation in the same request is still a change made in Draft. */
  rc = patch_spec(&out, "tenant", name, "{\"state\":\"Active\",\"isolation\":\"hybrid\"}");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = patch_spec(&out, "tenant", name, "{\"isolation\":\"shared\"}");
  assert_refused(
      rc, out,
      "spec.isolation cannot change after Draft; use a TenantMigration with target.isolation: shared; after "
      "it, spec.isolation may be set to the value status.placement.isolation shows");
  free(out);
  char *v = get_field("tenant", name, "{.spec.isolation}");
  cr_expect_str_eq(v, "hybrid");
  free(v);
  delete_obj("tenant", name);
}

/* --- tenant fields ---------------------------------------------------------------------------------------
 */

Test(crds, bad_enum_values_are_refused) {
  expect_tenant_refused("{\"state\":\"Paused\"}", "spec.state: Unsupported value: \"Paused\"");
  expect_tenant_refused("{\"state\":\"active\"}", "spec.state: Unsupported value: \"active\"");
  expect_tenant_refused("{\"isolation\":\"private\"}", "spec.isolation: Unsupported value: \"private\"");
  expect_tenant_refused("{\"identity\":{\"groupBindings\":[{\"group\":\"g\",\"role\":\"cluster-admin\"}]}}",
                        "spec.identity.groupBindings[0].role: Unsupported value: \"cluster-admin\"");
}

Test(crds, preferred_region_must_be_allowed) {
  expect_tenant_refused(
      "{\"residency\":{\"allowedRegions\":[\"eu-west-1\",\"eu-central-1\"],"
      "\"preferredRegion\":\"us-east-1\"}}",
      "spec.residency.preferredRegion: Invalid value: spec.residency.preferredRegion us-east-1 must "
      "be one of spec.residency.allowedRegions: eu-west-1, eu-central-1");
  expect_tenant_refused("{\"residency\":{\"allowedRegions\":[\"eu-west-1\",\"eu-west-1\"]}}",
                        "Duplicate value: \"eu-west-1\"");
  expect_tenant_refused("{\"residency\":{\"flags\":[\"EU only\"]}}", "spec.residency.flags[0]");
  /* Alone, a preferred region is fine (no allowed list means any region). */
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "pref");
  int rc = create(&out, "Tenant", name, "{\"residency\":{\"preferredRegion\":\"us-east-1\"}}");
  assert_created(rc, out);
  free(out);
  delete_obj("tenant", name);
}

Test(crds, contacts_are_checked) {
  expect_tenant_refused("{\"contacts\":[{\"role\":\"technical\",\"email\":\"not-an-email\"}]}",
                        "spec.contacts[0].email: Invalid value: \"not-an-email\"");
  expect_tenant_refused("{\"contacts\":[{\"role\":\"technical\",\"email\":\"a@b\"}]}",
                        "spec.contacts[0].email");
  expect_tenant_refused("{\"contacts\":[{\"role\":\"technical\",\"email\":\"a b@acme.example\"}]}",
                        "spec.contacts[0].email");
  expect_tenant_refused("{\"contacts\":[{\"role\":\"ceo\",\"email\":\"ceo@acme.example\"}]}",
                        "spec.contacts[0].role: Unsupported value: \"ceo\"");
  expect_tenant_refused("{\"contacts\":[{\"role\":\"billing\",\"email\":\"a@acme.example\"},"
                        "{\"role\":\"billing\",\"email\":\"b@acme.example\"}]}",
                        "spec.contacts[1]: Duplicate value: {\"role\":\"billing\"}");
  expect_tenant_refused("{\"contacts\":[{\"role\":\"billing\"}]}", "spec.contacts[0].email: Required value");
  expect_tenant_refused("{\"contacts\":[{\"role\":\"billing\",\"name\":\"Bob\\nInjected: yes\","
                        "\"email\":\"b@acme.example\"}]}",
                        "spec.contacts[0].name");
}

Test(crds, strings_refuse_control_characters_and_junk) {
  expect_tenant_refused("{\"displayName\":\"Acme\\nCorp\"}", "spec.displayName");
  expect_tenant_refused("{\"stateReason\":\"\\u001b[31mred\"}", "spec.stateReason");
  expect_tenant_refused("{\"plan\":\"standard'; drop table plans;--\"}", "spec.plan");
  expect_tenant_refused("{\"externalIds\":{\"Billing\":\"cus_1\"}}", "spec.externalIds keys name a system");
  expect_tenant_refused("{\"externalIds\":{\"billing\":\"cus 1\"}}", "spec.externalIds.billing");
  expect_tenant_refused("{\"identity\":{\"domain\":\"Acme.Example\"}}", "spec.identity.domain");
  expect_tenant_refused("{\"identity\":{\"groupBindings\":[{\"group\":\"g\",\"role\":\"tenant-admin\"},"
                        "{\"group\":\"g\",\"role\":\"tenant-viewer\"}]}}",
                        "spec.identity.groupBindings[1]: Duplicate value");
  /* Unicode is fine where people write prose. */
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "uni");
  int rc =
      create(&out, "Tenant", name,
             "{\"displayName\":\"Zo\\u00eb \\u00c9lectricit\\u00e9 \\u6771\\u4eac\",\"contacts\":[{\"role\":"
             "\"incident\",\"name\":\"J\\u00fcrgen\",\"email\":\"oncall@acme.example\"}]}");
  assert_created(rc, out);
  free(out);
  delete_obj("tenant", name);
}

/* --- Plan, Region, TenancyPolicy -------------------------------------------------------------------------
 */

/* The smallest valid quotas of a Plan. */
#define Q "{\"cpu\":1,\"memory\":\"1Gi\",\"storage\":\"1Gi\",\"pods\":1,\"services\":1}"

Test(crds, plans_are_checked) {
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "plan");
  int rc =
      create(&out, "Plan", name,
             "{\"features\":{\"sso\":true},\"quotas\":{\"cpu\":\"500m\",\"memory\":\"512Mi\",\"storage\":"
             "\"1Ti\",\"pods\":0,\"services\":1,\"connections\":2,\"eventsPerDay\":3},\"rateLimits\":{"
             "\"requestsPerSecond\":5,\"burst\":5}}");
  assert_created(rc, out);
  free(out);
  rc = create(&out, "Plan", "plan.with.dots", "{\"quotas\":" Q "}");
  assert_refused(rc, out, "the plan code (metadata.name) must be a DNS label");
  free(out);
  const struct {
    const char *spec, *needle;
  } bad[] = {
      {"{}", "spec.quotas: Required value"},
      {"{\"quotas\":{\"memory\":\"1Gi\",\"pods\":1,\"services\":1}}", "spec.quotas.cpu: Required value"},
      {"{\"quotas\":{\"cpu\":\"0\",\"memory\":\"1Gi\",\"pods\":1,\"services\":1}}",
       "spec.quotas.cpu: Invalid value: spec.quotas.cpu must be greater than zero"},
      {"{\"quotas\":{\"cpu\":1,\"memory\":0,\"pods\":1,\"services\":1}}",
       "spec.quotas.memory must be greater than zero"},
      {"{\"quotas\":{\"cpu\":\"lots\"}}", "spec.quotas.cpu"},
      {"{\"quotas\":{\"memory\":\"-1Gi\"}}", "spec.quotas.memory"},
      {"{\"quotas\":{\"pods\":-1}}",
       "spec.quotas.pods: Invalid value: -1: spec.quotas.pods in body should be "
       "greater than or equal to 0"},
      {"{\"quotas\":{\"eventsPerDay\":\"many\"}}", "spec.quotas.eventsPerDay"},
      {"{\"quotas\":" Q ",\"rateLimits\":{\"requestsPerSecond\":50,\"burst\":10}}",
       "spec.rateLimits.burst: Invalid value: spec.rateLimits.burst must be at least "
       "spec.rateLimits.requestsPerSecond"},
      {"{\"quotas\":" Q ",\"rateLimits\":{\"burst\":10}}",
       "spec.rateLimits.requestsPerSecond: Required value"},
      {"{\"quotas\":" Q ",\"features\":{\"bad key\":true}}", "spec.features keys must start with a letter"},
      {"{\"quotas\":" Q ",\"features\":{\"sso\":\"yes\"}}", "spec.features.sso"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char pname[64];
    tn_test_unique_name(pname, sizeof pname, "badplan");
    rc = create(&out, "Plan", pname, bad[i].spec);
    assert_refused(rc, out, bad[i].needle);
    free(out);
  }
  delete_obj("plan", name);
}

#define SERVER_FMT                                                                                           \
  "{\"available\":true,\"isolationModes\":[\"shared\",\"dedicated\"],\"databaseServers\":[{\"name\":\"pg-"   \
  "1\","                                                                                                     \
  "\"host\":\"%s\",\"port\":%d,\"sslMode\":\"%s\",\"serves\":[%s],\"adminSecretRef\":{\"namespace\":"        \
  "\"tenancy-system\",\"name\":\"pg-1-admin\"}}]}"

static int create_region(char **out, const char *host, int port, const char *ssl, const char *serves) {
  char name[64], spec[512];
  tn_test_unique_name(name, sizeof name, "rg");
  snprintf(spec, sizeof spec, SERVER_FMT, host, port, ssl, serves);
  return create(out, "Region", name, spec);
}

Test(crds, regions_are_checked) {
  char *out = NULL;
  int rc = create_region(&out, "db1.eu.internal", 5432, "verify-full", "\"shared\"");
  assert_created(rc, out);
  free(out);
  rc = create_region(&out, "10.1.2.3", 1, "require", "\"shared\",\"dedicated\"");
  assert_created(rc, out);
  free(out);
  rc = create_region(&out, "::1", 65535, "disable", "\"dedicated\"");
  assert_created(rc, out);
  free(out);

  rc = create_region(&out, "db1.eu.internal", 0, "verify-full", "\"shared\"");
  assert_refused(rc, out,
                 "spec.databaseServers[0].port: Invalid value: 0: spec.databaseServers[0].port in body "
                 "should be greater than or equal to 1");
  free(out);
  rc = create_region(&out, "db1.eu.internal", 65536, "verify-full", "\"shared\"");
  assert_refused(rc, out, "spec.databaseServers[0].port in body should be less than or equal to 65535");
  free(out);
  rc = create_region(&out, "db1.eu.internal", 5432, "verify", "\"shared\"");
  assert_refused(rc, out, "spec.databaseServers[0].sslMode: Unsupported value: \"verify\"");
  free(out);
  rc = create_region(&out, "db1.eu.internal; rm -rf /", 5432, "verify-full", "\"shared\"");
  assert_refused(rc, out, "host must be a lowercase DNS name or an IP address");
  free(out);
  rc = create_region(&out, "db1.eu.internal", 5432, "verify-full", "\"hybrid\"");
  assert_refused(rc, out, "a database server may only serve isolation modes the region hosts");
  free(out);
  rc = create_region(&out, "db1.eu.internal", 5432, "verify-full", "\"shared\",\"shared\"");
  assert_refused(rc, out, "Duplicate value: \"shared\"");
  free(out);

  char name[64];
  tn_test_unique_name(name, sizeof name, "rg");
  rc = create(&out, "Region", name, "{\"available\":true,\"isolationModes\":[\"private\"]}");
  assert_refused(rc, out, "spec.isolationModes[0]: Unsupported value: \"private\"");
  free(out);
  rc = create(&out, "Region", name, "{\"isolationModes\":[\"shared\"]}");
  assert_refused(rc, out, "spec.available: Required value");
  free(out);
  rc = create(
      &out, "Region", name,
      "{\"available\":true,\"isolationModes\":[\"shared\"],\"databaseServers\":[{\"name\":\"a\",\"host\":"
      "\"h\",\"serves\":[\"shared\"],\"adminSecretRef\":{\"namespace\":\"ns\",\"name\":\"s\"}},{\"name\":"
      "\"a\",\"host\":\"h2\",\"serves\":[\"shared\"],\"adminSecretRef\":{\"namespace\":\"ns\",\"name\":"
      "\"s\"}}]}");
  assert_refused(rc, out, "spec.databaseServers[1]: Duplicate value");
  free(out);
  rc = create(&out, "Region", "eu.west", "{\"available\":true,\"isolationModes\":[\"shared\"]}");
  assert_refused(rc, out, "the region name (metadata.name) must be a DNS label");
  free(out);
}

Test(crds, policies_are_checked) {
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "pol");
  int rc = create(
      &out, "TenancyPolicy", name,
      "{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":[\"eu-west-1\"]}],\"encryption\":{"
      "\"requireDatabaseTLS\":true},\"retention\":{\"archivedData\":\"0d\",\"auditRecords\":\"2555d\"},"
      "\"allowedActions\":[{\"action\":\"delete\",\"plans\":[\"starter\"],\"fromStates\":[\"Draft\","
      "\"Archived\"]},{\"action\":\"suspend\"}],\"quotaOverrides\":[\"pods\",\"storage\"]}");
  assert_created(rc, out);
  free(out);
  char *v = get_field("tpol", name, "{.spec.encryption.requireTenantKeys}");
  cr_expect_str_eq(v, "false", "requireTenantKeys should default to false");
  free(v);
  delete_obj("tenancypolicy", name);

  const struct {
    const char *spec, *needle;
  } bad[] = {
      {"{\"retention\":{\"archivedData\":\"90 days\"}}", "spec.retention.archivedData"},
      {"{\"retention\":{\"auditRecords\":\"7y\"}}", "spec.retention.auditRecords"},
      {"{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":[]}]}", "spec.residency[0].allowedRegions"},
      {"{\"residency\":[{\"flag\":\"eu-only\",\"allowedRegions\":[\"eu-west-1\"]},{\"flag\":\"eu-only\","
       "\"allowedRegions\":[\"eu-central-1\"]}]}",
       "spec.residency[1]: Duplicate value"},
      {"{\"allowedActions\":[{\"action\":\"destroy\"}]}", "spec.allowedActions[0].action: Unsupported value"},
      {"{\"allowedActions\":[{\"action\":\"resume\",\"fromStates\":[\"Draft\"]}]}",
       "fromStates must be states the action can start from"},
      {"{\"quotaOverrides\":[\"gpus\"]}", "spec.quotaOverrides[0]: Unsupported value: \"gpus\""},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tn_test_unique_name(name, sizeof name, "badpol");
    rc = create(&out, "TenancyPolicy", name, bad[i].spec);
    assert_refused(rc, out, bad[i].needle);
    free(out);
  }
}

Test(crds, quota_overrides_use_the_plan_quota_shape) {
  char name[64], *out = NULL;
  tn_test_unique_name(name, sizeof name, "qo");
  int rc = create(&out, "Tenant", name, "{\"quotaOverrides\":{\"pods\":100,\"storage\":\"200Gi\"}}");
  assert_created(rc, out);
  free(out);
  delete_obj("tenant", name);
  expect_tenant_refused("{\"quotaOverrides\":{\"pods\":-5}}", "spec.quotaOverrides.pods");
  expect_tenant_refused("{\"quotaOverrides\":{\"storage\":\"a lot\"}}", "spec.quotaOverrides.storage");
  expect_tenant_refused("{\"quotaOverrides\":{\"cpu\":\"0m\"}}",
                        "spec.quotaOverrides.cpu must be greater than zero");
}
