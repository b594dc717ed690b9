/* test_chart.c - the Helm chart charts/tenancy-operator: it lints, its CRDs are copies of crds/, it
 * renders with default and non-default values and refuses broken ones, the real API server accepts
 * every rendered object under the restricted Pod Security Standard, its objects equal
 * manifests/deploy/ (RBAC compared grant by grant), and it installs, upgrades and uninstalls for real
 * in the local cluster. No pod ever runs (the local cluster has no nodes); nothing waits for one. */
#include <criterion/criterion.h>
#include <glob.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "tn_test.h"
#include "util/buf.h"

#define RELEASE "t"
#define RELEASE_NS "tenancy-system"
#define FULLNAME "t-tenancy-operator"

static const char *const TENANT_ROLES[] = {"tenancy-tenant-admin", "tenancy-tenant-developer",
                                           "tenancy-tenant-viewer"};

static const char *const CRD_NAMES[] = {"plans.tenancy.dev",           "regions.tenancy.dev",
                                        "tenancypolicies.tenancy.dev", "tenantmigrations.tenancy.dev",
                                        "tenants.tenancy.dev",         "webhooksubscriptions.tenancy.dev"};

/* Per test process (Criterion forks one per test): the helm binary, and a private HELM_*_HOME. */
static char helm_bin[PATH_MAX];
static char helm_home[64];

/* --- environment -------------------------------------------------------------------------------------- */

/* The repository root: TENANCY_ROOT (hack/test.sh exports it), else from this file's path (CMake
 * compiles with absolute paths), else the working directory. */
static const char *repo_root(void) {
  static char root[PATH_MAX];
  if (root[0])
    return root;
  const char *env = getenv("TENANCY_ROOT");
  const char *suffix = "/tests/integration/test_chart.c";
  size_t n = strlen(__FILE__), s = strlen(suffix);
  if (env && *env && strlen(env) < sizeof root) {
    strcpy(root, env);
  } else if (__FILE__[0] == '/' && n > s && strcmp(__FILE__ + n - s, suffix) == 0 && n - s < sizeof root) {
    memcpy(root, __FILE__, n - s);
    root[n - s] = '\0';
  } else if (!getcwd(root, sizeof root)) {
    strcpy(root, ".");
  }
  return root;
}

static const char *chart_dir(void) {
  static char dir[PATH_MAX + 32];
  if (!dir[0])
    snprintf(dir, sizeof dir, "%s/charts/tenancy-operator", repo_root());
  return dir;
}

/* Builds helm once (hack/build-helm.sh caches it; a later run builds nothing) and gives this process
 * its own Helm config, cache and data directories. */
static void setup(void) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "p=$('%s/hack/build-helm.sh') && printf 'HELM=%%s\\n' \"$p\"", repo_root());
  cr_assert_eq(rc, 0, "hack/build-helm.sh failed: %s", out);
  const char *h = NULL;
  for (const char *p = strstr(out, "HELM="); p; p = strstr(p + 1, "HELM="))
    h = p + 5;
  cr_assert_not_null(h, "hack/build-helm.sh printed no path: %s", out);
  size_t len = strcspn(h, "\n");
  cr_assert_lt(len, sizeof helm_bin);
  memcpy(helm_bin, h, len);
  helm_bin[len] = '\0';
  free(out);
  cr_assert_eq(access(helm_bin, X_OK), 0, "%s is not executable", helm_bin);

  strcpy(helm_home, "/tmp/tn-chart-helm-XXXXXX");
  cr_assert_not_null(mkdtemp(helm_home), "mkdtemp");
  char dir[128];
  snprintf(dir, sizeof dir, "%s/config", helm_home);
  setenv("HELM_CONFIG_HOME", dir, 1);
  snprintf(dir, sizeof dir, "%s/cache", helm_home);
  setenv("HELM_CACHE_HOME", dir, 1);
  snprintf(dir, sizeof dir, "%s/data", helm_home);
  setenv("HELM_DATA_HOME", dir, 1);
}

static void teardown(void) {
  if (helm_home[0] && strncmp(helm_home, "/tmp/tn-chart-helm-", 19) == 0)
    (void)tn_test_sh(NULL, "rm -rf '%s'", helm_home);
}

TestSuite(chart, .init = setup, .fini = teardown, .timeout = 600);

/* --- YAML to JSON --------------------------------------------------------------------------------- */

/* A scalar as JSON. Quoted scalars are strings; plain ones follow the YAML 1.2 core schema as far as
 * Kubernetes manifests need: null, true/false, decimal integers and reals, else strings. */
static json_t *scalar_to_json(const yaml_node_t *n) {
  const char *v = (const char *)n->data.scalar.value;
  size_t len = n->data.scalar.length;
  if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
    if (len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
        strcmp(v, "NULL") == 0)
      return json_null();
    if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 || strcmp(v, "TRUE") == 0)
      return json_true();
    if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0 || strcmp(v, "FALSE") == 0)
      return json_false();
    if (strspn(v, "0123456789+-.eE") == len) {
      char *end = NULL;
      long long i = strtoll(v, &end, 10);
      if (end != v && *end == '\0')
        return json_integer(i);
      double d = strtod(v, &end);
      if (end != v && *end == '\0' && isfinite(d))
        return json_real(d);
    }
  }
  return json_stringn(v, len);
}

/* Node N of DOC as JSON (new reference). Mapping keys must be scalars. */
static json_t *node_to_json(yaml_document_t *doc, yaml_node_t *n) {
  cr_assert_not_null(n, "YAML: dangling node");
  switch (n->type) {
  case YAML_SCALAR_NODE:
    return scalar_to_json(n);
  case YAML_SEQUENCE_NODE: {
    json_t *a = json_array();
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++)
      json_array_append_new(a, node_to_json(doc, yaml_document_get_node(doc, *i)));
    return a;
  }
  case YAML_MAPPING_NODE: {
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
      yaml_node_t *k = yaml_document_get_node(doc, p->key);
      cr_assert(k && k->type == YAML_SCALAR_NODE, "YAML: a mapping key that is not a scalar");
      json_object_setn_new(o, (const char *)k->data.scalar.value, k->data.scalar.length,
                           node_to_json(doc, yaml_document_get_node(doc, p->value)));
    }
    return o;
  }
  default:
    cr_assert_fail("YAML: empty node");
  }
  return NULL;
}

/* Every non-empty document of the YAML stream in PATH, as a JSON array (new reference). */
static json_t *yaml_file_to_json(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "open %s", path);
  yaml_parser_t parser;
  cr_assert(yaml_parser_initialize(&parser), "yaml_parser_initialize");
  yaml_parser_set_input_file(&parser, f);
  json_t *docs = json_array();
  for (;;) {
    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc))
      cr_assert_fail("%s: YAML error at line %zu: %s", path, parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "?");
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
      yaml_document_delete(&doc);
      break;
    }
    json_t *j = node_to_json(&doc, root);
    yaml_document_delete(&doc);
    if (json_is_null(j))
      json_decref(j);
    else
      json_array_append_new(docs, j);
  }
  yaml_parser_delete(&parser);
  fclose(f);
  return docs;
}

/* --- running helm --------------------------------------------------------------------------------- */

/* `helm template RELEASE <chart> -n NS ARGS` (ARGS: trusted shell words). Returns the rendered objects
 * (new reference); fails the test when helm fails. */
static json_t *render(const char *release, const char *ns, const char *args) {
  char path[] = "/tmp/tn-chart-render-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0, "mkstemp");
  close(fd);
  char *out = NULL;
  int rc = tn_test_sh(&out, "'%s' template %s '%s' -n %s %s >'%s'", helm_bin, release, chart_dir(), ns, args,
                      path);
  if (rc != 0) {
    unlink(path);
    cr_assert_fail("helm template %s %s failed (exit %d): %s", release, args, rc, out);
  }
  free(out);
  json_t *objs = yaml_file_to_json(path);
  unlink(path);
  return objs;
}

/* `helm template` with ARGS, expecting a refusal that mentions NEEDLE. */
static void expect_render_refused(const char *args, const char *needle) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "'%s' template " RELEASE " '%s' -n " RELEASE_NS " %s >/dev/null", helm_bin,
                      chart_dir(), args);
  cr_assert_neq(rc, 0, "helm template %s was accepted; expected a refusal mentioning \"%s\"", args, needle);
  cr_assert(strstr(out, needle), "helm template %s: expected \"%s\" in the refusal, got: %s", args, needle,
            out);
  free(out);
}

/* Writes TEXT to a new temporary file whose name is stored in PATH (a "/tmp/...XXXXXX" template). */
static void write_temp(char *path, const char *text) {
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0, "mkstemp");
  size_t n = strlen(text);
  cr_assert_eq(write(fd, text, n), (ssize_t)n, "write %s", path);
  close(fd);
}

/* --- looking into objects ------------------------------------------------------------------------- */

/* The object of KIND named NAME in OBJS, or NULL (borrowed). */
static json_t *find(json_t *objs, const char *kind, const char *name) {
  size_t i;
  json_t *o;
  json_array_foreach(objs, i, o) {
    const char *k = json_string_value(json_object_get(o, "kind"));
    const char *n = json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
    if (k && n && strcmp(k, kind) == 0 && strcmp(n, name) == 0)
      return o;
  }
  return NULL;
}

static json_t *must_find(json_t *objs, const char *kind, const char *name) {
  json_t *o = find(objs, kind, name);
  cr_assert_not_null(o, "no %s %s was rendered", kind, name);
  return o;
}

static size_t count_kind(json_t *objs, const char *kind) {
  size_t i, n = 0;
  json_t *o;
  json_array_foreach(objs, i, o) {
    const char *k = json_string_value(json_object_get(o, "kind"));
    n += k && strcmp(k, kind) == 0;
  }
  return n;
}

/* The value at PATH ("spec.template.spec.containers.0.args": keys, or indexes into arrays) in O, or
 * NULL (borrowed). */
static json_t *at(json_t *o, const char *path) {
  char seg[128];
  while (o && *path) {
    size_t n = strcspn(path, ".");
    cr_assert_lt(n, sizeof seg);
    memcpy(seg, path, n);
    seg[n] = '\0';
    path += n + (path[n] == '.');
    if (json_is_array(o)) {
      char *end = NULL;
      long i = strtol(seg, &end, 10);
      o = *end == '\0' && i >= 0 ? json_array_get(o, (size_t)i) : NULL;
    } else {
      o = json_object_get(o, seg);
    }
  }
  return o;
}

static const char *str_at(json_t *o, const char *path) { return json_string_value(at(o, path)); }

/* The string under KEY (which may hold dots, as label keys do) of the object at PATH in O, or NULL. */
static const char *key_at(json_t *o, const char *path, const char *key) {
  return json_string_value(json_object_get(at(o, path), key));
}

static const char *label(json_t *o, const char *key) { return key_at(o, "metadata.labels", key); }

#define expect_str(got, want)                                                                                \
  do {                                                                                                       \
    const char *got_ = (got);                                                                                \
    cr_expect(got_ &&strcmp(got_, (want)) == 0, "%s: expected \"%s\", got \"%s\"", #got, (want),             \
              got_ ? got_ : "(absent)");                                                                     \
  } while (0)

#define expect_str_at(o, path, want)                                                                         \
  do {                                                                                                       \
    const char *got_ = str_at((o), (path));                                                                  \
    cr_expect(got_ &&strcmp(got_, (want)) == 0, "%s: expected \"%s\", got \"%s\"", (path), (want),           \
              got_ ? got_ : "(absent)");                                                                     \
  } while (0)

#define expect_int_at(o, path, want)                                                                         \
  do {                                                                                                       \
    json_t *got_ = at((o), (path));                                                                          \
    cr_expect(json_is_integer(got_) && json_integer_value(got_) == (want), "%s: expected %lld, got %s",      \
              (path), (long long)(want),                                                                     \
              got_ ? (json_is_integer(got_) ? "another number" : "not a number") : "(absent)");              \
  } while (0)

/* The only container of DEPLOY's pod template. */
static json_t *container(json_t *deploy) {
  json_t *cs = at(deploy, "spec.template.spec.containers");
  cr_assert_eq(json_array_size(cs), 1, "expected exactly one container");
  return json_array_get(cs, 0);
}

static int has_arg(json_t *c, const char *arg) {
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(c, "args"), i, a) {
    if (json_is_string(a) && strcmp(json_string_value(a), arg) == 0)
      return 1;
  }
  return 0;
}

/* The args of C joined with spaces, for messages (static buffer). */
static const char *args_text(json_t *c) {
  static char s[4096];
  s[0] = '\0';
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(c, "args"), i, a) {
    strncat(s, json_string_value(a) ? json_string_value(a) : "?", sizeof s - strlen(s) - 2);
    strncat(s, " ", sizeof s - strlen(s) - 1);
  }
  return s;
}

#define expect_arg(c, arg) cr_expect(has_arg((c), (arg)), "arg %s missing from: %s", (arg), args_text(c))
#define expect_no_arg(c, arg) cr_expect(!has_arg((c), (arg)), "unexpected arg %s in: %s", (arg), args_text(c))

/* The env var NAME of C, or NULL (borrowed). */
static json_t *env_var(json_t *c, const char *name) {
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(c, "env"), i, e) {
    if (strcmp(str_at(e, "name"), name) == 0)
      return e;
  }
  return NULL;
}

/* The containerPort named NAME of C, or -1. */
static long long port_named(json_t *c, const char *name) {
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(c, "ports"), i, p) {
    if (strcmp(str_at(p, "name"), name) == 0)
      return json_integer_value(json_object_get(p, "containerPort"));
  }
  return -1;
}

/* The entry of ARRAY (a JSON array of objects) whose KEY is VALUE, or NULL. */
static json_t *entry_where(json_t *array, const char *key, const char *value) {
  size_t i;
  json_t *e;
  json_array_foreach(array, i, e) {
    const char *v = json_string_value(json_object_get(e, key));
    if (v && strcmp(v, value) == 0)
      return e;
  }
  return NULL;
}

/* The volume (of Deployment D) that container C mounts at PATH, or NULL. */
static json_t *volume_at(json_t *d, json_t *c, const char *path) {
  json_t *m = entry_where(json_object_get(c, "volumeMounts"), "mountPath", path);
  const char *name = m ? json_string_value(json_object_get(m, "name")) : NULL;
  return name ? entry_where(at(d, "spec.template.spec.volumes"), "name", name) : NULL;
}

/* --- RBAC, grant by grant ------------------------------------------------------------------------- */

/* The set (a JSON object with true values) of what ROLE grants: one key
 * "apiGroup|resource|verb|resourceName" per combination of each rule ("*" when a rule names no
 * resources). Two roles grant exactly the same when their sets are equal, however the rules are split
 * or ordered. New reference. */
static json_t *grants_of(json_t *role) {
  json_t *set = json_object(), *rule;
  size_t i;
  json_array_foreach(json_object_get(role, "rules"), i, rule) {
    json_t *groups = json_object_get(rule, "apiGroups"), *resources = json_object_get(rule, "resources");
    json_t *verbs = json_object_get(rule, "verbs"), *names = json_object_get(rule, "resourceNames");
    cr_assert(json_array_size(groups) && json_array_size(resources) && json_array_size(verbs),
              "rule %zu has no apiGroups, resources or verbs", i);
    size_t ng = json_array_size(groups), nr = json_array_size(resources), nv = json_array_size(verbs);
    size_t nn = json_array_size(names) ? json_array_size(names) : 1;
    for (size_t g = 0; g < ng; g++)
      for (size_t r = 0; r < nr; r++)
        for (size_t v = 0; v < nv; v++)
          for (size_t n = 0; n < nn; n++) {
            char key[512];
            const char *name = json_array_size(names) ? json_string_value(json_array_get(names, n)) : "*";
            snprintf(key, sizeof key, "%s|%s|%s|%s", json_string_value(json_array_get(groups, g)),
                     json_string_value(json_array_get(resources, r)),
                     json_string_value(json_array_get(verbs, v)), name);
            json_object_set_new(set, key, json_true());
          }
  }
  return set;
}

/* Keys of A that B lacks, comma-separated, appended to OUT. */
static void set_minus(json_t *a, json_t *b, struct tn_buf *out) {
  const char *k;
  json_t *v;
  json_object_foreach(a, k, v) {
    if (!json_object_get(b, k))
      (void)tn_buf_printf(out, " %s", k);
  }
}

/* Expects GOT to grant exactly what WANT grants; the failure lists each missing and extra grant. */
static void expect_same_grants(json_t *want, json_t *got, const char *what) {
  json_t *w = grants_of(want), *g = grants_of(got);
  cr_expect_gt(json_object_size(w), 0, "%s: the reference grants nothing", what);
  if (!json_equal(w, g)) {
    struct tn_buf missing, extra;
    tn_buf_init(&missing, 1u << 20);
    tn_buf_init(&extra, 1u << 20);
    set_minus(w, g, &missing);
    set_minus(g, w, &extra);
    cr_expect_fail("%s: the chart's rules differ from manifests/deploy/: missing:%s; extra:%s", what,
                   tn_buf_str(&missing), tn_buf_str(&extra));
    tn_buf_cleanup(&missing);
    tn_buf_cleanup(&extra);
  }
  json_decref(w);
  json_decref(g);
}

/* --- state the fixture cleans up (this process only) ---------------------------------------------- */

static char dry_run_ns[64];       /* a namespace created for server-side dry runs */
static int release_installed;     /* helm install was attempted: uninstall it */
static int restore_tenant_roles;  /* the tenant ClusterRoles existed before (from manifests/deploy/) */
static int restore_console_roles; /* the console ClusterRoles existed before (manifests/deploy/) */
static char saved_webhook[64];    /* a ValidatingWebhookConfiguration that existed before, to restore */
static int delete_release_ns;     /* helm install --create-namespace created it: leave none behind */
static int crds_touched;          /* the CRDs were adopted by the release and changed by its upgrade */
static char chart_copy[64];       /* a copy of the chart with a changed CRD */

/* The field the upgrade test adds to the Plan CRD's spec (in a copy of the chart). */
#define PROBE_FIELD "chartUpgradeProbe"
#define PROBE_PATH "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/" PROBE_FIELD

static void cleanup_cluster(void) {
  if (dry_run_ns[0])
    (void)tn_test_sh(NULL, "kubectl delete namespace %s --ignore-not-found --wait=false", dry_run_ns);
  if (release_installed)
    (void)tn_test_sh(NULL,
                     "'%s' uninstall " RELEASE " -n " RELEASE_NS " --kubeconfig \"$KUBECONFIG\" "
                     "--ignore-not-found --wait --timeout=60s",
                     helm_bin);
  if (restore_tenant_roles)
    (void)tn_test_sh(NULL, "kubectl apply -f '%s/manifests/deploy/20-tenant-roles.yaml'", repo_root());
  if (restore_console_roles)
    (void)tn_test_sh(NULL, "kubectl apply -f '%s/manifests/deploy/25-console-roles.yaml'", repo_root());
  if (crds_touched) {
    /* the CRDs as other suites expect them: without the probe field, not claimed by a release */
    (void)tn_test_sh(
        NULL,
        "kubectl patch crd plans.tenancy.dev --type=json -p '[{\"op\":\"remove\",\"path\":\"" PROBE_PATH
        "\"}]' 2>/dev/null; for c in %s %s %s %s %s %s; do kubectl label crd $c "
        "app.kubernetes.io/managed-by- "
        "helm.sh/chart- app.kubernetes.io/instance- app.kubernetes.io/version- >/dev/null 2>&1; "
        "kubectl annotate crd $c meta.helm.sh/release-name- meta.helm.sh/release-namespace- "
        "helm.sh/resource-policy- >/dev/null 2>&1; done; '%s/hack/crds.sh' apply >/dev/null 2>&1",
        CRD_NAMES[0], CRD_NAMES[1], CRD_NAMES[2], CRD_NAMES[3], CRD_NAMES[4], CRD_NAMES[5], repo_root());
  }
  if (chart_copy[0] && strncmp(chart_copy, "/tmp/tn-chart-copy-", 19) == 0)
    (void)tn_test_sh(NULL, "rm -rf '%s'", chart_copy);
  if (saved_webhook[0]) {
    (void)tn_test_sh(NULL, "kubectl create -f %s", saved_webhook);
    unlink(saved_webhook);
  }
  /* Other suites `kubectl apply` manifests/deploy/00-namespace.yaml; a namespace Helm created has no
   * last-applied annotation and would make kubectl warn there. Wait until it is gone for good. */
  if (delete_release_ns)
    (void)tn_test_sh(NULL,
                     "kubectl delete namespace " RELEASE_NS " --ignore-not-found --wait --timeout=120s");
}

/* helm template arguments leaving out the CRDs and the helm test hooks, which have tests of their own. */
#define NO_CRDS_NO_TESTS "--skip-tests --set crds.install=false "

/* The non-default values the chart is rendered, linted and dry-run applied with. */
static const char NON_DEFAULT_VALUES[] =
    "replicaCount: 3\n"
    "image: {repository: registry.example.com/platform/tenancy-operator, tag: \"1.2.3\", pullPolicy: "
    "Always}\n"
    "imagePullSecrets: [{name: regcred}]\n"
    "serviceAccount: {name: tenancy-sa, annotations: {iam.example.com/role: tenancy}}\n"
    "leaderElection: {namespace: tenancy-leases, id: tenancy-lease}\n"
    "operator: {workers: 8, syncPeriod: 30m, clusterName: eu-prod-1, logLevel: debug, logFormat: text, "
    "gracefulShutdownTimeout: "
    "20s}\n"
    "extraArgs: [--kube-api-qps=50, --kube-api-burst=100]\n"
    "extraEnv: [{name: TZ, value: UTC}]\n"
    "database: {dsnSecret: {name: pg-dsn, key: uri, optional: false}}\n"
    "metrics:\n"
    "  port: 9090\n"
    "  service: {port: 9443, annotations: {prometheus.io/scrape: \"true\"}}\n"
    "  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}\n"
    "probes: {port: 9091}\n"
    "webhook: {port: 9444, certSecret: tenancy-webhook-cert, failurePolicy: Ignore, timeoutSeconds: 12}\n"
    "extraVolumes: [{name: db-ca, secret: {secretName: db-ca}}]\n"
    "extraVolumeMounts: [{name: db-ca, mountPath: /etc/tenancy-db, readOnly: true}]\n"
    "podDisruptionBudget: {minAvailable: 2, unhealthyPodEvictionPolicy: AlwaysAllow}\n"
    "networkPolicy:\n"
    "  enabled: true\n"
    "  ingress: {metricsFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "
    "monitoring}}}],\n"
    "            webhookFrom: [{ipBlock: {cidr: 10.0.0.0/24}}]}\n"
    "  egress:\n"
    "    apiServer: {ports: [6443], to: [{ipBlock: {cidr: 10.0.0.10/32}}]}\n"
    "    postgres: {ports: [5432, 6432], to: [{ipBlock: {cidr: 10.1.0.0/16}}]}\n"
    "    extra: [{ports: [{port: 443, protocol: TCP}], to: [{ipBlock: {cidr: 192.0.2.0/24}}]}]\n"
    "tests: {image: {repository: registry.example.com/curl, tag: \"8.0.0\"}, tenantPlan: gold}\n"
    "podAnnotations: {example.com/team: platform}\n"
    "podLabels: {team: platform}\n"
    "resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: \"1\", memory: 256Mi}}\n"
    "terminationGracePeriodSeconds: 25\n"
    "priorityClassName: system-cluster-critical\n"
    "nodeSelector: {kubernetes.io/os: linux}\n"
    "tolerations: [{key: dedicated, operator: Equal, value: platform, effect: NoSchedule}]\n"
    "affinity:\n"
    "  podAntiAffinity:\n"
    "    preferredDuringSchedulingIgnoredDuringExecution:\n"
    "      - weight: 100\n"
    "        podAffinityTerm:\n"
    "          topologyKey: kubernetes.io/hostname\n"
    "          labelSelector: {matchLabels: {app.kubernetes.io/name: tenancy-operator}}\n"
    "topologySpreadConstraints:\n"
    "  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway,\n"
    "     labelSelector: {matchLabels: {app.kubernetes.io/name: tenancy-operator}}}\n";

/* --- lint and CRDs ---------------------------------------------------------------------------------- */

Test(chart, lints_clean) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "'%s' lint --strict '%s'", helm_bin, chart_dir());
  cr_assert_eq(rc, 0, "helm lint --strict failed: %s", out);
  cr_expect(strstr(out, "1 chart(s) linted, 0 chart(s) failed"), "%s", out);
  free(out);

  char values[] = "/tmp/tn-chart-values-XXXXXX";
  write_temp(values, NON_DEFAULT_VALUES);
  rc = tn_test_sh(&out, "'%s' lint --strict '%s' -f '%s'", helm_bin, chart_dir(), values);
  unlink(values);
  cr_assert_eq(rc, 0, "helm lint --strict with non-default values failed: %s", out);
  free(out);

  /* lint validates values against values.schema.json (a template's `fail` is only [INFO] to lint:
   * refuses_broken_values covers those) */
  rc = tn_test_sh(&out, "'%s' lint --strict '%s' --set operator.logLevel=loud", helm_bin, chart_dir());
  cr_expect_neq(rc, 0, "helm lint accepted operator.logLevel=loud: %s", out);
  cr_expect(strstr(out, "logLevel"), "%s", out);
  free(out);
}

Test(chart, crds_are_copies_of_the_repository_crds) {
  const char *root = repo_root();
  char *out = NULL;
  int rc = tn_test_sh(&out, "'%s/hack/sync-chart-crds.sh' --check", root);
  cr_assert_eq(rc, 0, "the chart's crds/ differ from crds/ (run hack/sync-chart-crds.sh): %s", out);
  free(out);
  /* the same, without the script: byte-equal files, no extra ones */
  rc = tn_test_sh(&out,
                  "cd '%s' && for f in crds/*.yaml; do cmp \"$f\" \"charts/tenancy-operator/files/$f\" || "
                  "exit 1; done && "
                  "[ \"$(ls crds)\" = \"$(ls charts/tenancy-operator/files/crds)\" ]",
                  root);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);

  /* --check catches each kind of drift, and a sync repairs it (in a scratch copy) */
  char dir[] = "/tmp/tn-chart-crds-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  rc = tn_test_sh(&out,
                  "cp '%s'/files/crds/*.yaml %s/ && echo '# drift' >> %s/tenancy.dev_plans.yaml && "
                  "rm %s/tenancy.dev_tenants.yaml && touch %s/stale.yaml",
                  chart_dir(), dir, dir, dir, dir);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tn_test_sh(&out, "'%s/hack/sync-chart-crds.sh' --check %s", root, dir);
  cr_expect_eq(rc, 1, "--check passed a drifted copy: %s", out);
  cr_expect(strstr(out, "tenancy.dev_plans.yaml differs from crds/tenancy.dev_plans.yaml"), "%s", out);
  cr_expect(strstr(out, "tenancy.dev_tenants.yaml is missing"), "%s", out);
  cr_expect(strstr(out, "stale.yaml has no counterpart in crds/"), "%s", out);
  free(out);
  rc = tn_test_sh(&out,
                  "'%s/hack/sync-chart-crds.sh' %s && '%s/hack/sync-chart-crds.sh' --check %s && "
                  "[ ! -e %s/stale.yaml ] && for f in '%s'/crds/*.yaml; do cmp \"$f\" %s/$(basename \"$f\") "
                  "|| exit 1; done",
                  root, dir, root, dir, dir, root, dir);
  cr_expect_eq(rc, 0, "sync did not repair the copy: %s", out);
  free(out);
  (void)tn_test_sh(NULL, "rm -rf %s", dir);
}

/* The CRDs of crds/ as JSON, in CRD_NAMES order (new reference). */
static json_t *repository_crds(void) {
  json_t *all = json_array();
  for (size_t i = 0; i < sizeof CRD_NAMES / sizeof CRD_NAMES[0]; i++) {
    char path[PATH_MAX + 64];
    /* tenants.tenancy.dev -> crds/tenancy.dev_tenants.yaml */
    size_t plural = strcspn(CRD_NAMES[i], ".");
    snprintf(path, sizeof path, "%s/crds/tenancy.dev_%.*s.yaml", repo_root(), (int)plural, CRD_NAMES[i]);
    json_t *want = yaml_file_to_json(path);
    cr_assert_eq(json_array_size(want), 1, "%s", path);
    json_array_append(all, json_array_get(want, 0));
    json_decref(want);
  }
  return all;
}

/* Helm never upgrades a chart's crds/ directory: the CRDs are templates (crds.install), equal to
 * crds/ but for the keep annotation (crds.keep), and there is no crds/ directory left. */
Test(chart, renders_the_repository_crds_as_templates) {
  char dir[PATH_MAX + 8];
  snprintf(dir, sizeof dir, "%s/crds", chart_dir());
  cr_expect_neq(access(dir, F_OK), 0, "%s exists: Helm would install it before the templated CRDs", dir);
  json_t *want = repository_crds();
  json_t *objs = render(RELEASE, RELEASE_NS, "--include-crds");
  cr_expect_eq(count_kind(objs, "CustomResourceDefinition"), sizeof CRD_NAMES / sizeof CRD_NAMES[0]);
  for (size_t i = 0; i < sizeof CRD_NAMES / sizeof CRD_NAMES[0]; i++) {
    json_t *got = json_deep_copy(must_find(objs, "CustomResourceDefinition", CRD_NAMES[i]));
    expect_str(key_at(got, "metadata.annotations", "helm.sh/resource-policy"), "keep");
    cr_expect_eq(json_object_size(at(got, "metadata.annotations")), 1, "%s: other annotations", CRD_NAMES[i]);
    json_object_del(json_object_get(got, "metadata"), "annotations");
    /* the release's labels besides the file's own */
    expect_str(label(got, "app.kubernetes.io/instance"), RELEASE);
    expect_str(label(got, "app.kubernetes.io/managed-by"), "Helm");
    cr_expect(label(got, "helm.sh/chart") &&
              strncmp(label(got, "helm.sh/chart"), "tenancy-operator-", 17) == 0);
    static const char *const added[] = {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                                        "helm.sh/chart"};
    for (size_t l = 0; l < 3; l++)
      json_object_del(at(got, "metadata.labels"), added[l]);
    cr_expect(json_equal(json_array_get(want, i), got), "the rendered %s differs from crds/", CRD_NAMES[i]);
    json_decref(got);
  }
  json_decref(objs);

  /* crds.keep=false: no keep annotation (helm uninstall deletes them); crds.annotations added */
  objs = render(RELEASE, RELEASE_NS,
                "--set crds.keep=false --set 'crds.annotations.example\\.com/owner=platform'");
  for (size_t i = 0; i < sizeof CRD_NAMES / sizeof CRD_NAMES[0]; i++) {
    json_t *got = must_find(objs, "CustomResourceDefinition", CRD_NAMES[i]);
    cr_expect_null(key_at(got, "metadata.annotations", "helm.sh/resource-policy"));
    expect_str(key_at(got, "metadata.annotations", "example.com/owner"), "platform");
  }
  json_decref(objs);
  objs = render(RELEASE, RELEASE_NS, "--set crds.keep=false");
  json_t *got = json_deep_copy(must_find(objs, "CustomResourceDefinition", CRD_NAMES[3]));
  cr_expect_null(at(got, "metadata.annotations"), "crds.keep=false: no annotations");
  for (size_t l = 0; l < 3; l++) {
    static const char *const added[] = {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                                        "helm.sh/chart"};
    json_object_del(at(got, "metadata.labels"), added[l]);
  }
  cr_expect(json_equal(json_array_get(want, 3), got),
            "crds.keep=false: the CRD is the file with the release labels");
  json_decref(got);
  json_decref(objs);

  /* crds.install=false: none */
  objs = render(RELEASE, RELEASE_NS, "--set crds.install=false --include-crds");
  cr_expect_eq(count_kind(objs, "CustomResourceDefinition"), 0);
  json_decref(objs);
  json_decref(want);
}

/* --- rendering ------------------------------------------------------------------------------------ */

struct want_obj {
  const char *kind, *name;
  int namespaced;
};

Test(chart, renders_with_defaults) {
  static const struct want_obj want[] = {
      {"ServiceAccount", FULLNAME, 1},
      {"ClusterRole", FULLNAME, 0},
      {"ClusterRoleBinding", FULLNAME, 0},
      {"Role", FULLNAME "-leader-election", 1},
      {"RoleBinding", FULLNAME "-leader-election", 1},
      {"Role", FULLNAME "-read-api-events", 2}, /* 2: in "default", where Tenant Events are */
      {"RoleBinding", FULLNAME "-read-api-events", 2},
      {"ClusterRole", "tenancy-tenant-admin", 0},
      {"ClusterRole", "tenancy-tenant-developer", 0},
      {"ClusterRole", "tenancy-tenant-viewer", 0},
      {"ClusterRole", "tenancy-console-operator", 0},
      {"ClusterRole", "tenancy-console-viewer", 0},
      {"Service", FULLNAME "-metrics", 1},
      {"Service", FULLNAME "-webhook", 1},
      {"Deployment", FULLNAME, 1},
      {"ValidatingWebhookConfiguration", "tenancy-operator", 0},
      {"ValidatingAdmissionPolicy", FULLNAME "-scope", 0},
      {"ValidatingAdmissionPolicyBinding", FULLNAME "-scope", 0},
      {"MutatingAdmissionPolicy", FULLNAME "-actor", 0},
      {"MutatingAdmissionPolicyBinding", FULLNAME "-actor", 0},
      {"ValidatingAdmissionPolicy", FULLNAME "-actor", 0},
      {"ValidatingAdmissionPolicyBinding", FULLNAME "-actor", 0},
      {"PodDisruptionBudget", FULLNAME, 1},
  };
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/Chart.yaml", chart_dir());
  json_t *chart = yaml_file_to_json(path);
  const char *version = str_at(chart, "0.version"), *app_version = str_at(chart, "0.appVersion");
  cr_assert(version && app_version, "Chart.yaml lacks version or appVersion");
  char chart_label[128], image[128];
  snprintf(chart_label, sizeof chart_label, "tenancy-operator-%s", version);
  snprintf(image, sizeof image, "tenancy-operator:%s", app_version);

  /* the CRDs and the helm test hooks have tests of their own */
  json_t *objs = render(RELEASE, RELEASE_NS, "--skip-tests --set crds.install=false");
  cr_expect_eq(json_array_size(objs), sizeof want / sizeof want[0], "rendered %zu objects",
               json_array_size(objs));
  cr_expect_eq(count_kind(objs, "Namespace"), 0, "the chart must not create the release namespace");
  cr_expect_eq(count_kind(objs, "NetworkPolicy"), 0, "the NetworkPolicy is opt-in");
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    json_t *o = must_find(objs, want[i].kind, want[i].name);
    const char *ns = str_at(o, "metadata.namespace");
    if (want[i].namespaced == 2)
      cr_expect(ns && strcmp(ns, "default") == 0, "%s %s: namespace %s", want[i].kind, want[i].name, ns);
    else if (want[i].namespaced)
      cr_expect(ns && strcmp(ns, RELEASE_NS) == 0, "%s %s: namespace %s", want[i].kind, want[i].name, ns);
    else
      cr_expect_null(ns, "cluster-scoped %s %s has a namespace", want[i].kind, want[i].name);
    static const char *const keys[] = {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                                       "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                                       "helm.sh/chart"};
    const char *values[] = {"tenancy-operator", RELEASE, app_version, "Helm", chart_label};
    for (size_t k = 0; k < 5; k++) {
      const char *v = label(o, keys[k]);
      cr_expect(v && strcmp(v, values[k]) == 0, "%s %s: label %s=%s, expected %s", want[i].kind, want[i].name,
                keys[k], v ? v : "(absent)", values[k]);
    }
  }

  json_t *d = must_find(objs, "Deployment", FULLNAME), *c = container(d);
  expect_int_at(d, "spec.replicas", 2);
  json_t *selector = at(d, "spec.selector.matchLabels");
  cr_expect_eq(json_object_size(selector), 2, "selector: name and instance only");
  expect_str(key_at(d, "spec.selector.matchLabels", "app.kubernetes.io/name"), "tenancy-operator");
  expect_str(key_at(d, "spec.selector.matchLabels", "app.kubernetes.io/instance"), RELEASE);
  const char *k;
  json_t *v;
  json_object_foreach(selector, k, v) {
    cr_expect(json_equal(v, json_object_get(at(d, "spec.template.metadata.labels"), k)),
              "pod template lacks selector label %s", k);
  }
  expect_str_at(d, "spec.template.spec.serviceAccountName", FULLNAME);
  expect_str_at(c, "image", image);
  expect_str_at(c, "imagePullPolicy", "IfNotPresent");
  expect_arg(c, "--leader-elect");
  expect_arg(c, "--leader-election-namespace=" RELEASE_NS);
  expect_arg(c, "--leader-election-id=" FULLNAME "-leader");
  expect_arg(c, "--metrics-bind-address=:8080");
  expect_arg(c, "--health-probe-bind-address=:8081");
  expect_arg(c, "--workers=16");
  expect_arg(c, "--sync-period=10h");
  expect_arg(c, "--log-level=info");
  expect_arg(c, "--webhook-bind-address=:9443");
  expect_arg(c, "--webhook-service=" RELEASE_NS "/" FULLNAME "-webhook");
  expect_arg(c, "--webhook-cert-secret=" RELEASE_NS "/" FULLNAME "-webhook-tls");
  expect_arg(c, "--webhook-cert-dir=/run/webhook-certs");
  cr_expect_eq(port_named(c, "webhook"), 9443);
  /* the webhook's certificate and /tmp (libpq's CA files) in memory: the root filesystem is read-only */
  json_t *certs = volume_at(d, c, "/run/webhook-certs"), *tmp = volume_at(d, c, "/tmp");
  cr_assert_not_null(certs, "no volume at /run/webhook-certs");
  expect_str_at(certs, "emptyDir.medium", "Memory");
  cr_assert_not_null(tmp, "no volume at /tmp");
  expect_str_at(tmp, "emptyDir.medium", "Memory");
  json_t *dsn = env_var(c, "TENANCY_PG_DSN");
  cr_assert_not_null(dsn, "no TENANCY_PG_DSN");
  expect_str_at(dsn, "valueFrom.secretKeyRef.name", FULLNAME "-db");
  expect_str_at(dsn, "valueFrom.secretKeyRef.key", "dsn");
  cr_expect(json_is_true(at(dsn, "valueFrom.secretKeyRef.optional")));
  cr_expect_null(json_object_get(dsn, "value"), "the DSN must come from a Secret");
  cr_expect_eq(port_named(c, "metrics"), 8080);
  cr_expect_eq(port_named(c, "probes"), 8081);
  expect_str_at(c, "livenessProbe.httpGet.path", "/healthz");
  expect_str_at(c, "readinessProbe.httpGet.path", "/readyz");
  cr_expect(json_is_true(at(d, "spec.template.spec.securityContext.runAsNonRoot")));
  /* the image's numeric user (the Dockerfile's USER 65532:65532) */
  cr_expect_eq(json_integer_value(at(d, "spec.template.spec.securityContext.runAsUser")), 65532);
  cr_expect_eq(json_integer_value(at(d, "spec.template.spec.securityContext.runAsGroup")), 65532);
  expect_str_at(d, "spec.template.spec.securityContext.seccompProfile.type", "RuntimeDefault");
  cr_expect(json_is_false(at(c, "securityContext.allowPrivilegeEscalation")));
  cr_expect(json_is_true(at(c, "securityContext.readOnlyRootFilesystem")));
  expect_str_at(c, "securityContext.capabilities.drop.0", "ALL");
  expect_int_at(d, "spec.template.spec.terminationGracePeriodSeconds", 40);

  json_t *svc = must_find(objs, "Service", FULLNAME "-metrics");
  cr_expect(json_equal(at(svc, "spec.selector"), selector),
            "the Service selects other pods than the Deployment");
  expect_int_at(svc, "spec.ports.0.port", 8080);
  expect_str_at(svc, "spec.ports.0.targetPort", "metrics");

  json_t *hook_svc = must_find(objs, "Service", FULLNAME "-webhook");
  cr_expect(json_equal(at(hook_svc, "spec.selector"), selector), "the webhook Service selects other pods");
  expect_int_at(hook_svc, "spec.ports.0.port", 443);
  expect_int_at(hook_svc, "spec.ports.0.targetPort", 9443);
  json_t *vwc = must_find(objs, "ValidatingWebhookConfiguration", "tenancy-operator");
  expect_str_at(vwc, "webhooks.0.clientConfig.service.namespace", RELEASE_NS);
  expect_str_at(vwc, "webhooks.0.clientConfig.service.name", FULLNAME "-webhook");
  expect_int_at(vwc, "webhooks.0.clientConfig.service.port", 443);
  expect_str_at(vwc, "webhooks.0.failurePolicy", "Fail");
  expect_int_at(vwc, "webhooks.0.timeoutSeconds", 5);
  cr_expect_null(at(vwc, "metadata.annotations"), "no cert-manager annotation in the self-managed mode");
  /* the operator registers the same (it applies the configuration at start) */
  expect_arg(c, "--webhook-failure-policy=Fail");
  expect_arg(c, "--webhook-timeout-seconds=5");
  expect_no_arg(c, "--webhook-manage-configuration=false");
  cr_expect_null(at(d, "spec.template.spec.hostNetwork"));
  cr_expect_null(at(d, "spec.template.spec.dnsPolicy"));

  /* two replicas: a PodDisruptionBudget keeps one, and they spread softly over nodes and zones */
  json_t *pdb = must_find(objs, "PodDisruptionBudget", FULLNAME);
  expect_int_at(pdb, "spec.minAvailable", 1);
  cr_expect_null(at(pdb, "spec.maxUnavailable"));
  cr_expect(json_equal(at(pdb, "spec.selector.matchLabels"), selector), "the PDB selects other pods");
  json_t *pref =
      at(d, "spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution");
  cr_expect_eq(json_array_size(pref), 1, "one soft anti-affinity term");
  expect_int_at(pref, "0.weight", 100);
  expect_str_at(pref, "0.podAffinityTerm.topologyKey", "kubernetes.io/hostname");
  cr_expect(json_equal(at(pref, "0.podAffinityTerm.labelSelector.matchLabels"), selector));
  cr_expect_null(
      at(d, "spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution"),
      "the default anti-affinity is soft");
  json_t *tsc = at(d, "spec.template.spec.topologySpreadConstraints");
  cr_expect_eq(json_array_size(tsc), 1);
  expect_str_at(tsc, "0.topologyKey", "topology.kubernetes.io/zone");
  expect_str_at(tsc, "0.whenUnsatisfiable", "ScheduleAnyway");
  expect_int_at(tsc, "0.maxSkew", 1);
  expect_str_at(tsc, "0.matchLabelKeys.0", "pod-template-hash");
  cr_expect(json_equal(at(tsc, "0.labelSelector.matchLabels"), selector));
  expect_str_at(vwc, "webhooks.0.rules.0.resources.0", "tenants");
  expect_str_at(vwc, "webhooks.0.rules.0.resources.1", "tenantmigrations");

  /* the scope policy names the release's ServiceAccount and namespace */
  json_t *vap = must_find(objs, "ValidatingAdmissionPolicy", FULLNAME "-scope");
  expect_str_at(vap, "spec.matchConditions.0.expression",
                "request.userInfo.username == 'system:serviceaccount:" RELEASE_NS ":" FULLNAME "'");
  expect_str_at(vap, "spec.variables.0.expression", "['" RELEASE_NS "']");
  expect_str_at(must_find(objs, "ValidatingAdmissionPolicyBinding", FULLNAME "-scope"), "spec.policyName",
                FULLNAME "-scope");
  expect_str_at(must_find(objs, "MutatingAdmissionPolicyBinding", FULLNAME "-actor"), "spec.policyName",
                FULLNAME "-actor");
  expect_str_at(must_find(objs, "ValidatingAdmissionPolicyBinding", FULLNAME "-actor"), "spec.policyName",
                FULLNAME "-actor");

  json_t *crb = must_find(objs, "ClusterRoleBinding", FULLNAME);
  expect_str_at(crb, "roleRef.kind", "ClusterRole");
  expect_str_at(crb, "roleRef.name", FULLNAME);
  json_t *rb = must_find(objs, "RoleBinding", FULLNAME "-leader-election");
  expect_str_at(rb, "roleRef.kind", "Role");
  expect_str_at(rb, "roleRef.name", FULLNAME "-leader-election");
  json_t *bindings[] = {crb, rb};
  for (size_t i = 0; i < 2; i++) {
    cr_expect_eq(json_array_size(at(bindings[i], "subjects")), 1);
    expect_str_at(bindings[i], "subjects.0.kind", "ServiceAccount");
    expect_str_at(bindings[i], "subjects.0.name", FULLNAME);
    expect_str_at(bindings[i], "subjects.0.namespace", RELEASE_NS);
  }
  json_decref(objs);
  json_decref(chart);
}

/* Expects W and G (either may be NULL) to be equal JSON; WHAT names them in the failure. */
static void expect_same_json(json_t *w, json_t *g, const char *what) {
  if ((!w && !g) || (w && g && json_equal(w, g)))
    return;
  char *ws = w ? json_dumps(w, JSON_COMPACT) : NULL, *gs = g ? json_dumps(g, JSON_COMPACT) : NULL;
  cr_expect_fail("%s differs: manifests/deploy/ %s, chart %s", what, ws ? ws : "(absent)",
                 gs ? gs : "(absent)");
  free(ws);
  free(gs);
}

/* Expects every key of A or B but those in SKIP (NULL-terminated) to hold equal values in both. */
static void expect_same_keys(json_t *a, json_t *b, const char *const *skip, const char *what) {
  json_t *objs[] = {a, b};
  for (int side = 0; side < 2; side++) {
    const char *k;
    json_t *v;
    json_object_foreach(objs[side], k, v) {
      int skipped = 0;
      for (const char *const *s = skip; *s; s++)
        skipped |= strcmp(*s, k) == 0;
      if (skipped || (side == 1 && json_object_get(a, k)))
        continue; /* skipped, or already compared from A's side */
      char label_[256];
      snprintf(label_, sizeof label_, "%s.%s", what, k);
      expect_same_json(json_object_get(a, k), json_object_get(b, k), label_);
    }
  }
}

/* Flags the chart passes although they equal the operator's defaults (manifests/deploy/ leaves
 * them out). */
static const char *const CHART_DEFAULT_ARGS[] = {"--leader-election-id=tenancy-operator-leader",
                                                 "--webhook-failure-policy=Fail",
                                                 "--webhook-timeout-seconds=5",
                                                 "--workers=16",
                                                 "--sync-period=10h",
                                                 "--cluster-name=local",
                                                 "--log-level=info",
                                                 "--log-format=json",
                                                 "--graceful-shutdown-timeout=30s"};

/* Expects the chart's Deployment GOT to run the pod of manifests/deploy/'s Deployment WANT: the
 * same pod spec, container and flags (the chart adds only the operator's defaults), ports, volumes. */
static void expect_same_deployment(json_t *want, json_t *got) {
  expect_same_json(at(want, "spec.replicas"), at(got, "spec.replicas"), "replicas");
  const char *k;
  json_t *v;
  json_object_foreach(at(want, "spec.selector.matchLabels"), k, v) {
    cr_expect(json_equal(v, json_object_get(at(got, "spec.selector.matchLabels"), k)), "selector lacks %s",
              k);
  }
  static const char *const pod_skip[] = {"containers", "affinity", "topologySpreadConstraints", NULL};
  expect_same_keys(at(want, "spec.template.spec"), at(got, "spec.template.spec"), pod_skip, "pod");
  /* the same scheduling, but for the label selectors (the chart's pods also carry instance) */
  static const char *const sched[] = {"affinity", "topologySpreadConstraints"};
  for (size_t s_ = 0; s_ < 2; s_++) {
    json_t *w = json_deep_copy(at(want, "spec.template.spec")),
           *g = json_deep_copy(at(got, "spec.template.spec"));
    json_t *ws = json_object_get(w, sched[s_]), *gs = json_object_get(g, sched[s_]);
    cr_expect(ws && gs, "%s missing", sched[s_]);
    json_t *terms[2] = {s_ ? ws : at(ws, "podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution"),
                        s_ ? gs : at(gs, "podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution")};
    for (int side = 0; side < 2; side++) {
      size_t ti;
      json_t *t;
      json_array_foreach(terms[side], ti, t) {
        json_object_del(s_ ? t : json_object_get(t, "podAffinityTerm"), "labelSelector");
      }
    }
    expect_same_json(ws, gs, sched[s_]);
    json_decref(w);
    json_decref(g);
  }
  json_t *wc = container(want), *gc = container(got);
  static const char *const container_skip[] = {"args", "ports", "imagePullPolicy", NULL};
  expect_same_keys(wc, gc, container_skip, "container");

  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(wc, "args"), i, a) expect_arg(gc, json_string_value(a));
  json_array_foreach(json_object_get(gc, "args"), i, a) {
    int known = has_arg(wc, json_string_value(a));
    for (size_t j = 0; j < sizeof CHART_DEFAULT_ARGS / sizeof CHART_DEFAULT_ARGS[0]; j++)
      known |= strcmp(json_string_value(a), CHART_DEFAULT_ARGS[j]) == 0;
    cr_expect(known, "the chart passes %s, which manifests/deploy/ does not", json_string_value(a));
  }
  json_t *p;
  cr_expect_eq(json_array_size(json_object_get(wc, "ports")), json_array_size(json_object_get(gc, "ports")),
               "number of container ports");
  json_array_foreach(json_object_get(wc, "ports"), i, p) {
    cr_expect_eq(port_named(gc, str_at(p, "name")), json_integer_value(json_object_get(p, "containerPort")),
                 "port %s differs", str_at(p, "name"));
  }
}

Test(chart, equals_manifests_deploy) {
  /* a release named tenancy-operator gets exactly the names of manifests/deploy/ */
  json_t *objs = render("tenancy-operator", "tenancy-system", NO_CRDS_NO_TESTS);
  /* every manifest but 00-namespace.yaml (Helm's --create-namespace makes the namespace) */
  char pattern[PATH_MAX + 32];
  snprintf(pattern, sizeof pattern, "%s/manifests/deploy/*.yaml", repo_root());
  glob_t files;
  cr_assert_eq(glob(pattern, 0, NULL, &files), 0, "no %s", pattern);
  json_t *man = json_array();
  for (size_t i = 0; i < files.gl_pathc; i++) {
    json_t *docs = yaml_file_to_json(files.gl_pathv[i]);
    cr_assert_gt(json_array_size(docs), 0, "%s holds no object", files.gl_pathv[i]);
    if (strcmp(str_at(docs, "0.kind"), "Namespace") == 0) {
      expect_str_at(docs, "0.metadata.name", "tenancy-system");
      cr_expect_eq(json_array_size(docs), 1, "%s: a Namespace and more", files.gl_pathv[i]);
    } else {
      json_array_extend(man, docs);
    }
    json_decref(docs);
  }
  globfree(&files);
  /* every object of the manifests (but the Namespace: Helm's --create-namespace), plus the metrics Service */
  cr_expect_eq(json_array_size(objs), json_array_size(man) + 1,
               "the chart renders %zu objects, the manifests %zu", json_array_size(objs),
               json_array_size(man));
  must_find(objs, "Service", "tenancy-operator-metrics");
  cr_expect_eq(count_kind(objs, "Namespace"), 0);

  size_t i, compared_roles = 0;
  json_t *m;
  json_array_foreach(man, i, m) {
    const char *kind = str_at(m, "kind"), *name = str_at(m, "metadata.name");
    json_t *o = find(objs, kind, name);
    cr_expect_not_null(o, "the chart renders no %s %s", kind, name);
    if (!o)
      continue;
    const char *wns = str_at(m, "metadata.namespace"), *gns = str_at(o, "metadata.namespace");
    cr_expect((!wns && !gns) || (wns && gns && strcmp(wns, gns) == 0), "%s %s: namespace %s, chart %s", kind,
              name, wns ? wns : "(none)", gns ? gns : "(none)");
    char what[256];
    snprintf(what, sizeof what, "%s %s", kind, name);
    if (strcmp(kind, "ClusterRole") == 0 || strcmp(kind, "Role") == 0) {
      expect_same_grants(m, o, what);
      compared_roles++;
    } else if (strcmp(kind, "ClusterRoleBinding") == 0 || strcmp(kind, "RoleBinding") == 0) {
      cr_expect(json_equal(json_object_get(m, "roleRef"), json_object_get(o, "roleRef")),
                "%s: roleRef differs", what);
      cr_expect(json_equal(json_object_get(m, "subjects"), json_object_get(o, "subjects")),
                "%s: subjects differ", what);
    } else if (strcmp(kind, "Deployment") == 0) {
      expect_same_deployment(m, o);
    } else if (strcmp(kind, "Service") == 0 || strcmp(kind, "PodDisruptionBudget") == 0) {
      static const char *const skip[] = {"selector", NULL};
      expect_same_keys(json_object_get(m, "spec"), json_object_get(o, "spec"), skip, what);
      const char *k;
      json_t *v;
      const char *sel = strcmp(kind, "Service") == 0 ? "spec.selector" : "spec.selector.matchLabels";
      cr_expect_gt(json_object_size(at(m, sel)), 0, "%s: no selector", what);
      json_object_foreach(at(m, sel), k, v) {
        cr_expect(json_equal(v, json_object_get(at(o, sel), k)), "%s: selector lacks %s", what, k);
      }
    } else if (strcmp(kind, "ServiceAccount") != 0) {
      /* anything else (the webhook configuration, kinds added later): equal but for metadata */
      static const char *const skip[] = {"metadata", NULL};
      expect_same_keys(m, o, skip, what);
    }
  }
  cr_expect_eq(
      compared_roles, 8,
      "operator ClusterRole, leader-election Role, 3 tenant roles, 2 console roles and the read API's "
      "Events Role");

  /* the grant comparison is not vacuous: it tells roles apart, one grant is enough */
  json_t *admin = must_find(man, "ClusterRole", "tenancy-tenant-admin");
  json_t *viewer = must_find(man, "ClusterRole", "tenancy-tenant-viewer");
  json_t *ga = grants_of(admin), *gv = grants_of(viewer);
  cr_expect(!json_equal(ga, gv));
  json_t *op = json_deep_copy(must_find(objs, "ClusterRole", "tenancy-operator"));
  json_t *g1 = grants_of(op);
  json_array_append_new(at(op, "rules.0.verbs"), json_string("delete")); /* tenants: delete */
  json_t *g2 = grants_of(op);
  cr_expect_eq(json_object_size(g2), json_object_size(g1) + 4, "one verb more on 4 resources");
  cr_expect(!json_equal(g1, g2));
  json_decref(ga);
  json_decref(gv);
  json_decref(g1);
  json_decref(g2);
  json_decref(op);
  json_decref(man);
  json_decref(objs);
}

Test(chart, renders_with_values) {
  char values[] = "/tmp/tn-chart-values-XXXXXX", args[64];
  write_temp(values, NON_DEFAULT_VALUES);
  snprintf(args, sizeof args, "-f %s", values);
  json_t *objs = render("ops", "platform", args);
  unlink(values);

  json_t *d = must_find(objs, "Deployment", "ops-tenancy-operator"), *c = container(d);
  json_t *pod = at(d, "spec.template.spec");
  expect_int_at(d, "spec.replicas", 3);
  expect_str_at(d, "metadata.namespace", "platform");
  expect_str_at(c, "image", "registry.example.com/platform/tenancy-operator:1.2.3");
  expect_str_at(c, "imagePullPolicy", "Always");
  expect_str(label(d, "app.kubernetes.io/version"), "1.2.3");
  expect_str_at(pod, "imagePullSecrets.0.name", "regcred");
  expect_str_at(pod, "serviceAccountName", "tenancy-sa");
  /* the scope policy confines that ServiceAccount, and lets it write its Leases where they are */
  json_t *vap = must_find(objs, "ValidatingAdmissionPolicy", "ops-tenancy-operator-scope");
  expect_str_at(vap, "spec.matchConditions.0.expression",
                "request.userInfo.username == 'system:serviceaccount:platform:tenancy-sa'");
  expect_str_at(vap, "spec.variables.0.expression", "['platform', 'tenancy-leases']");
  static const char *const want_args[] = {"--leader-elect",
                                          "--leader-election-namespace=tenancy-leases",
                                          "--leader-election-id=tenancy-lease",
                                          "--metrics-bind-address=:9090",
                                          "--health-probe-bind-address=:9091",
                                          "--workers=8",
                                          "--sync-period=30m",
                                          "--cluster-name=eu-prod-1",
                                          "--log-level=debug",
                                          "--log-format=text",
                                          "--graceful-shutdown-timeout=20s",
                                          "--webhook-bind-address=:9444",
                                          "--webhook-service=platform/ops-tenancy-operator-webhook",
                                          "--webhook-cert-secret=platform/tenancy-webhook-cert",
                                          "--webhook-cert-dir=/run/webhook-certs",
                                          "--webhook-failure-policy=Ignore",
                                          "--webhook-timeout-seconds=12",
                                          "--api-bind-address=:8443"};
  for (size_t i = 0; i < sizeof want_args / sizeof want_args[0]; i++)
    expect_arg(c, want_args[i]);
  /* extraArgs come last, so they win over the chart's own flags */
  json_t *argv = json_object_get(c, "args");
  size_t nargs = json_array_size(argv);
  cr_expect_eq(nargs, sizeof want_args / sizeof want_args[0] + 2, "args: %s", args_text(c));
  expect_str(json_string_value(json_array_get(argv, nargs - 2)), "--kube-api-qps=50");
  expect_str(json_string_value(json_array_get(argv, nargs - 1)), "--kube-api-burst=100");
  json_t *dsn = env_var(c, "TENANCY_PG_DSN");
  cr_assert_not_null(dsn);
  expect_str_at(dsn, "valueFrom.secretKeyRef.name", "pg-dsn");
  expect_str_at(dsn, "valueFrom.secretKeyRef.key", "uri");
  cr_expect(json_is_false(at(dsn, "valueFrom.secretKeyRef.optional")));
  cr_expect_not_null(env_var(c, "TZ"));
  expect_str_at(env_var(c, "TZ"), "value", "UTC");
  cr_expect_eq(port_named(c, "metrics"), 9090);
  cr_expect_eq(port_named(c, "probes"), 9091);
  cr_expect_eq(port_named(c, "webhook"), 9444);
  expect_int_at(must_find(objs, "Service", "ops-tenancy-operator-webhook"), "spec.ports.0.targetPort", 9444);
  json_t *vwc = must_find(objs, "ValidatingWebhookConfiguration", "tenancy-operator");
  expect_str_at(vwc, "webhooks.0.clientConfig.service.name", "ops-tenancy-operator-webhook");
  expect_str_at(vwc, "webhooks.0.failurePolicy", "Ignore");
  expect_int_at(vwc, "webhooks.0.timeoutSeconds", 12);
  /* extraVolumes / extraVolumeMounts beside the chart's own */
  json_t *dbca = volume_at(d, c, "/etc/tenancy-db");
  cr_assert_not_null(dbca, "extraVolumeMounts: no volume at /etc/tenancy-db");
  expect_str_at(dbca, "secret.secretName", "db-ca");
  cr_expect_not_null(volume_at(d, c, "/run/webhook-certs"));
  /* the PDB */
  json_t *pdb = must_find(objs, "PodDisruptionBudget", "ops-tenancy-operator");
  expect_int_at(pdb, "spec.minAvailable", 2);
  expect_str_at(pdb, "spec.unhealthyPodEvictionPolicy", "AlwaysAllow");
  /* the NetworkPolicy: ingress only to the operator's ports, from the peers given (or anyone) */
  json_t *np = must_find(objs, "NetworkPolicy", "ops-tenancy-operator");
  expect_str_at(np, "metadata.namespace", "platform");
  cr_expect(json_equal(at(np, "spec.podSelector.matchLabels"), at(d, "spec.selector.matchLabels")));
  expect_str_at(np, "spec.policyTypes.0", "Ingress");
  expect_str_at(np, "spec.policyTypes.1", "Egress");
  json_t *in = at(np, "spec.ingress");
  cr_expect_eq(json_array_size(in), 4, "webhook, metrics, read API, probes");
  expect_int_at(in, "0.ports.0.port", 9444);
  expect_str_at(in, "0.from.0.ipBlock.cidr", "10.0.0.0/24");
  expect_int_at(in, "1.ports.0.port", 9090);
  expect_str(key_at(in, "1.from.0.namespaceSelector.matchLabels", "kubernetes.io/metadata.name"),
             "monitoring");
  expect_int_at(in, "2.ports.0.port", 8443);
  cr_expect_null(at(in, "2.from"), "read API: any source");
  expect_int_at(in, "3.ports.0.port", 9091);
  cr_expect_null(at(in, "3.from"), "probes: any source (the kubelet)");
  json_t *eg = at(np, "spec.egress");
  cr_expect_eq(json_array_size(eg), 4, "API server, DNS, PostgreSQL, extra");
  expect_int_at(eg, "0.ports.0.port", 6443);
  expect_str_at(eg, "0.to.0.ipBlock.cidr", "10.0.0.10/32");
  expect_int_at(eg, "1.ports.0.port", 53);
  expect_str_at(eg, "1.ports.0.protocol", "UDP");
  expect_str_at(eg, "1.ports.1.protocol", "TCP");
  expect_str(key_at(eg, "1.to.0.podSelector.matchLabels", "k8s-app"), "kube-dns");
  expect_int_at(eg, "2.ports.1.port", 6432);
  expect_str_at(eg, "2.to.0.ipBlock.cidr", "10.1.0.0/16");
  expect_str_at(eg, "3.to.0.ipBlock.cidr", "192.0.2.0/24");
  /* the test pods use the image given, and the dry-run Tenant the plan given */
  json_t *tp = must_find(objs, "Pod", "ops-tenancy-operator-test-tenant-dry-run");
  expect_str_at(tp, "spec.containers.0.image", "registry.example.com/curl:8.0.0");
  expect_str_at(entry_where(at(tp, "spec.containers.0.env"), "name", "PLAN"), "value", "gold");
  expect_str_at(entry_where(at(tp, "spec.containers.0.env"), "name", "TENANT"), "value", "helm-test-ops");
  expect_str(key_at(d, "spec.template.metadata.annotations", "example.com/team"), "platform");
  expect_str(key_at(d, "spec.template.metadata.labels", "team"), "platform");
  json_t *want_res = json_pack("{s:{s:s,s:s},s:{s:s,s:s}}", "requests", "cpu", "100m", "memory", "64Mi",
                               "limits", "cpu", "1", "memory", "256Mi");
  cr_expect(json_equal(json_object_get(c, "resources"), want_res), "resources differ");
  json_decref(want_res);
  expect_int_at(pod, "terminationGracePeriodSeconds", 25);
  expect_str_at(pod, "priorityClassName", "system-cluster-critical");
  expect_str(key_at(pod, "nodeSelector", "kubernetes.io/os"), "linux");
  expect_str_at(pod, "tolerations.0.key", "dedicated");
  expect_str_at(pod, "tolerations.0.effect", "NoSchedule");
  expect_int_at(pod, "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution.0.weight",
                100);
  expect_int_at(pod, "topologySpreadConstraints.0.maxSkew", 1);

  json_t *sa = must_find(objs, "ServiceAccount", "tenancy-sa");
  expect_str(key_at(sa, "metadata.annotations", "iam.example.com/role"), "tenancy");
  json_t *crb = must_find(objs, "ClusterRoleBinding", "ops-tenancy-operator");
  expect_str_at(crb, "subjects.0.name", "tenancy-sa");
  expect_str_at(crb, "subjects.0.namespace", "platform");
  json_t *role = must_find(objs, "Role", "ops-tenancy-operator-leader-election");
  json_t *rb = must_find(objs, "RoleBinding", "ops-tenancy-operator-leader-election");
  expect_str_at(role, "metadata.namespace", "tenancy-leases");
  expect_str_at(rb, "metadata.namespace", "tenancy-leases");
  expect_str_at(rb, "subjects.0.name", "tenancy-sa");
  expect_str_at(rb, "subjects.0.namespace", "platform");

  json_t *svc = must_find(objs, "Service", "ops-tenancy-operator-metrics");
  expect_int_at(svc, "spec.ports.0.port", 9443);
  expect_str_at(svc, "spec.ports.0.targetPort", "metrics");
  expect_str(key_at(svc, "metadata.annotations", "prometheus.io/scrape"), "true");
  json_t *sm = must_find(objs, "ServiceMonitor", "ops-tenancy-operator");
  expect_str_at(sm, "apiVersion", "monitoring.coreos.com/v1");
  expect_str_at(sm, "metadata.namespace", "platform");
  expect_str(label(sm, "release"), "prom");
  expect_str_at(sm, "spec.endpoints.0.port", "metrics");
  expect_str_at(sm, "spec.endpoints.0.path", "/metrics");
  expect_str_at(sm, "spec.endpoints.0.interval", "15s");
  expect_str_at(sm, "spec.namespaceSelector.matchNames.0", "platform");
  const char *k;
  json_t *v;
  json_object_foreach(at(sm, "spec.selector.matchLabels"), k, v) {
    cr_expect(json_equal(v, json_object_get(at(svc, "metadata.labels"), k)),
              "the ServiceMonitor misses the Service");
  }
  json_decref(objs);
}

Test(chart, renders_without_optional_parts) {
  /* RBAC granted another way, an existing ServiceAccount */
  json_t *objs = render(
      RELEASE, RELEASE_NS,
      NO_CRDS_NO_TESTS
      "--set rbac.create=false --set serviceAccount.create=false --set serviceAccount.name=existing-sa");
  static const char *const rbac_kinds[] = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                           "RoleBinding"};
  for (size_t i = 0; i < sizeof rbac_kinds / sizeof rbac_kinds[0]; i++)
    cr_expect_eq(count_kind(objs, rbac_kinds[i]), 0, "rendered a %s", rbac_kinds[i]);
  cr_expect_eq(
      json_array_size(objs), 9,
      "the Deployment, its PDB, its 2 Services, the webhook configuration and the actor policies only");
  cr_expect_null(find(objs, "ValidatingAdmissionPolicy", FULLNAME "-scope"),
                 "the scope policy comes with the RBAC it narrows");
  expect_str_at(must_find(objs, "Deployment", FULLNAME), "spec.template.spec.serviceAccountName",
                "existing-sa");
  json_decref(objs);

  /* no admission policies */
  objs = render(RELEASE, RELEASE_NS,
                NO_CRDS_NO_TESTS
                "--set admissionPolicies.operatorScope=false --set admissionPolicies.actor=false");
  cr_expect_eq(count_kind(objs, "ValidatingAdmissionPolicy") + count_kind(objs, "MutatingAdmissionPolicy") +
                   count_kind(objs, "ValidatingAdmissionPolicyBinding") +
                   count_kind(objs, "MutatingAdmissionPolicyBinding"),
               0);
  must_find(objs, "ClusterRole", FULLNAME);
  json_decref(objs);

  /* one replica without leader election */
  objs =
      render(RELEASE, RELEASE_NS, NO_CRDS_NO_TESTS "--set leaderElection.enabled=false --set replicaCount=1");
  json_t *c = container(must_find(objs, "Deployment", FULLNAME));
  expect_arg(c, "--leader-elect=false");
  expect_no_arg(c, "--leader-elect");
  cr_expect_eq(count_kind(objs, "PodDisruptionBudget"), 0, "one replica: a PDB would block every drain");
  expect_no_arg(c, "--leader-election-namespace=" RELEASE_NS);
  cr_expect_eq(count_kind(objs, "Role"), 1); /* the read API's Events Role */
  cr_expect_eq(count_kind(objs, "RoleBinding"), 1);
  must_find(objs, "Role", FULLNAME "-read-api-events");
  cr_expect_eq(count_kind(objs, "ClusterRole"), 6);
  json_decref(objs);

  /* no metrics endpoint */
  objs = render(RELEASE, RELEASE_NS, NO_CRDS_NO_TESTS "--set metrics.enabled=false");
  c = container(must_find(objs, "Deployment", FULLNAME));
  expect_arg(c, "--metrics-bind-address=0");
  cr_expect_eq(port_named(c, "metrics"), -1);
  cr_expect_eq(port_named(c, "probes"), 8081);
  cr_expect_null(find(objs, "Service", FULLNAME "-metrics"));
  must_find(objs, "Service", FULLNAME "-webhook");
  json_decref(objs);

  /* no admission webhook: no flags, port, volume, Service, configuration, nor the RBAC to register it */
  objs = render(RELEASE, RELEASE_NS, NO_CRDS_NO_TESTS "--set webhook.enabled=false");
  json_t *d = must_find(objs, "Deployment", FULLNAME);
  c = container(d);
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(c, "args"), i, a) {
    cr_expect(strncmp(json_string_value(a), "--webhook-", 10) != 0, "webhook flag %s", json_string_value(a));
  }
  cr_expect_eq(port_named(c, "webhook"), -1);
  /* only /tmp stays */
  cr_expect_eq(json_array_size(json_object_get(c, "volumeMounts")), 1);
  cr_expect_eq(json_array_size(at(d, "spec.template.spec.volumes")), 1);
  cr_expect_null(volume_at(d, c, "/run/webhook-certs"));
  cr_expect_not_null(volume_at(d, c, "/tmp"));
  cr_expect_null(find(objs, "Service", FULLNAME "-webhook"));
  cr_expect_eq(count_kind(objs, "ValidatingWebhookConfiguration"), 0);
  json_t *grants = grants_of(must_find(objs, "ClusterRole", FULLNAME));
  const char *k;
  json_t *v;
  json_object_foreach(grants, k, v) {
    cr_expect(strncmp(k, "admissionregistration.k8s.io|", 29) != 0, "grant %s without a webhook", k);
  }
  json_decref(grants);
  json_decref(objs);

  /* tenant roles owned elsewhere (another release, or manifests/deploy/) */
  objs = render(RELEASE, RELEASE_NS, NO_CRDS_NO_TESTS "--set tenantRoles.create=false");
  cr_expect_eq(count_kind(objs, "ClusterRole"), 3);
  must_find(objs, "ClusterRole", FULLNAME);
  must_find(objs, "ClusterRole", "tenancy-console-viewer");
  json_decref(objs);
  /* and the console's */
  objs = render(RELEASE, RELEASE_NS,
                NO_CRDS_NO_TESTS "--set tenantRoles.create=false --set consoleRoles.create=false");
  cr_expect_eq(count_kind(objs, "ClusterRole"), 1);
  must_find(objs, "ClusterRole", FULLNAME);
  json_decref(objs);

  /* pinned by digest, renamed */
  objs = render(RELEASE, RELEASE_NS,
                NO_CRDS_NO_TESTS
                "--set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef "
                "--set fullnameOverride=tenancy");
  d = must_find(objs, "Deployment", "tenancy");
  expect_str_at(container(d), "image",
                "tenancy-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  must_find(objs, "ServiceAccount", "tenancy");
  must_find(objs, "ClusterRole", "tenancy");
  json_decref(objs);
}

Test(chart, renders_scheduling_presets_host_network_and_cert_manager) {
  /* hard anti-affinity; no default spread; the PDB as maxUnavailable, or off */
  json_t *objs =
      render(RELEASE, RELEASE_NS,
             NO_CRDS_NO_TESTS
             "--set podAntiAffinity=hard --set defaultTopologySpread=false "
             "--set podDisruptionBudget.maxUnavailable=1 --set podDisruptionBudget.minAvailable=null");
  json_t *d = must_find(objs, "Deployment", FULLNAME), *pod = at(d, "spec.template.spec");
  expect_str_at(pod, "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution.0.topologyKey",
                "kubernetes.io/hostname");
  cr_expect_null(at(pod, "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution"));
  cr_expect_null(at(pod, "topologySpreadConstraints"));
  json_t *pdb = must_find(objs, "PodDisruptionBudget", FULLNAME);
  expect_int_at(pdb, "spec.maxUnavailable", 1);
  cr_expect_null(at(pdb, "spec.minAvailable"));
  json_decref(objs);
  objs = render(RELEASE, RELEASE_NS,
                NO_CRDS_NO_TESTS "--set podAntiAffinity=none --set podDisruptionBudget.enabled=false");
  cr_expect_null(at(must_find(objs, "Deployment", FULLNAME), "spec.template.spec.affinity"));
  cr_expect_eq(count_kind(objs, "PodDisruptionBudget"), 0);
  json_decref(objs);

  /* hostNetwork: the node's network and cluster DNS; the webhook port moves, Service and flag follow */
  objs =
      render(RELEASE, RELEASE_NS, NO_CRDS_NO_TESTS "--set webhook.hostNetwork=true --set webhook.port=10443");
  d = must_find(objs, "Deployment", FULLNAME);
  json_t *c = container(d);
  cr_expect(json_is_true(at(d, "spec.template.spec.hostNetwork")));
  expect_str_at(d, "spec.template.spec.dnsPolicy", "ClusterFirstWithHostNet");
  expect_arg(c, "--webhook-bind-address=:10443");
  cr_expect_eq(port_named(c, "webhook"), 10443);
  expect_int_at(must_find(objs, "Service", FULLNAME "-webhook"), "spec.ports.0.targetPort", 10443);
  expect_int_at(must_find(objs, "Service", FULLNAME "-webhook"), "spec.ports.0.port", 443);
  json_decref(objs);

  /* cert-manager with the chart's own CA: a self-signed Issuer, a CA Certificate, a CA Issuer and the
   * serving Certificate into webhook.certSecret; the configuration asks the cainjector for the CA; the
   * operator serves the mounted Secret and leaves the configuration alone, and may not write it */
  objs = render(RELEASE, RELEASE_NS, NO_CRDS_NO_TESTS "--set certManager.enabled=true");
  json_t *self = must_find(objs, "Issuer", FULLNAME "-selfsigned");
  cr_expect(json_is_object(at(self, "spec.selfSigned")));
  json_t *ca = must_find(objs, "Certificate", FULLNAME "-ca");
  cr_expect(json_is_true(at(ca, "spec.isCA")));
  expect_str_at(ca, "spec.issuerRef.name", FULLNAME "-selfsigned");
  expect_str_at(must_find(objs, "Issuer", FULLNAME "-ca"), "spec.ca.secretName", FULLNAME "-ca");
  json_t *cert = must_find(objs, "Certificate", FULLNAME "-webhook");
  expect_str_at(cert, "apiVersion", "cert-manager.io/v1");
  expect_str_at(cert, "metadata.namespace", RELEASE_NS);
  expect_str_at(cert, "spec.secretName", FULLNAME "-webhook-tls");
  expect_str_at(cert, "spec.issuerRef.kind", "Issuer");
  expect_str_at(cert, "spec.issuerRef.name", FULLNAME "-ca");
  expect_str_at(cert, "spec.dnsNames.0", FULLNAME "-webhook." RELEASE_NS ".svc");
  json_t *vwc = must_find(objs, "ValidatingWebhookConfiguration", "tenancy-operator");
  expect_str(key_at(vwc, "metadata.annotations", "cert-manager.io/inject-ca-from"),
             RELEASE_NS "/" FULLNAME "-webhook");
  cr_expect_null(at(vwc, "webhooks.0.clientConfig.caBundle"));
  d = must_find(objs, "Deployment", FULLNAME);
  c = container(d);
  expect_arg(c, "--webhook-cert-file=/run/webhook-certs/tls.crt");
  expect_arg(c, "--webhook-key-file=/run/webhook-certs/tls.key");
  expect_arg(c, "--webhook-manage-configuration=false");
  expect_no_arg(c, "--webhook-cert-secret=" RELEASE_NS "/" FULLNAME "-webhook-tls");
  expect_no_arg(c, "--webhook-cert-dir=/run/webhook-certs");
  json_t *certs = volume_at(d, c, "/run/webhook-certs");
  cr_assert_not_null(certs);
  expect_str_at(certs, "secret.secretName", FULLNAME "-webhook-tls");
  json_t *grants = grants_of(must_find(objs, "ClusterRole", FULLNAME));
  const char *k;
  json_t *v;
  json_object_foreach(grants, k, v) {
    cr_expect(strncmp(k, "admissionregistration.k8s.io|", 29) != 0,
              "grant %s although cert-manager injects the CA", k);
  }
  json_decref(grants);
  json_decref(objs);

  /* cert-manager with the user's ClusterIssuer: no bootstrap */
  objs = render(RELEASE, RELEASE_NS,
                NO_CRDS_NO_TESTS "--set certManager.enabled=true --set certManager.issuerRef.name=corp-ca "
                                 "--set certManager.issuerRef.kind=ClusterIssuer");
  cr_expect_eq(count_kind(objs, "Issuer"), 0);
  cr_expect_eq(count_kind(objs, "Certificate"), 1);
  cert = must_find(objs, "Certificate", FULLNAME "-webhook");
  expect_str_at(cert, "spec.issuerRef.kind", "ClusterIssuer");
  expect_str_at(cert, "spec.issuerRef.name", "corp-ca");
  expect_str_at(cert, "spec.issuerRef.group", "cert-manager.io");
  json_decref(objs);
}

/* The helm test hooks: annotations, restricted pods, minimal RBAC, the dry-run-only policy. */
Test(chart, renders_the_helm_test_hooks) {
  json_t *objs = render(RELEASE, RELEASE_NS, "--set crds.install=false");
  static const char *const hooks[][2] = {{"ServiceAccount", FULLNAME "-test"},
                                         {"Role", FULLNAME "-test"},
                                         {"RoleBinding", FULLNAME "-test"},
                                         {"ClusterRole", FULLNAME "-test"},
                                         {"ClusterRoleBinding", FULLNAME "-test"},
                                         {"ValidatingAdmissionPolicy", FULLNAME "-test-dry-run-only"},
                                         {"ValidatingAdmissionPolicyBinding", FULLNAME "-test-dry-run-only"},
                                         {"Pod", FULLNAME "-test-readyz"},
                                         {"Pod", FULLNAME "-test-tenant-dry-run"}};
  for (size_t i = 0; i < sizeof hooks / sizeof hooks[0]; i++) {
    json_t *o = must_find(objs, hooks[i][0], hooks[i][1]);
    expect_str(key_at(o, "metadata.annotations", "helm.sh/hook"), "test");
    expect_str(key_at(o, "metadata.annotations", "helm.sh/hook-delete-policy"),
               "before-hook-creation,hook-succeeded");
  }
  cr_expect_eq(count_kind(objs, "Pod"), 2);
  /* the pods run after their RBAC and policy (hook weights) */
  cr_expect_lt(atoi(key_at(must_find(objs, "ClusterRoleBinding", FULLNAME "-test"), "metadata.annotations",
                           "helm.sh/hook-weight")),
               atoi(key_at(must_find(objs, "Pod", FULLNAME "-test-readyz"), "metadata.annotations",
                           "helm.sh/hook-weight")));
  /* least privilege: list pods in the release namespace; create tenants, which the policy restricts
   * to dry runs of this ServiceAccount */
  json_t *g = grants_of(must_find(objs, "Role", FULLNAME "-test"));
  cr_expect_eq(json_object_size(g), 1);
  cr_expect_not_null(json_object_get(g, "|pods|list|*"));
  json_decref(g);
  g = grants_of(must_find(objs, "ClusterRole", FULLNAME "-test"));
  cr_expect_eq(json_object_size(g), 1);
  cr_expect_not_null(json_object_get(g, "tenancy.dev|tenants|create|*"));
  json_decref(g);
  json_t *vap = must_find(objs, "ValidatingAdmissionPolicy", FULLNAME "-test-dry-run-only");
  expect_str_at(vap, "spec.matchConditions.0.expression",
                "request.userInfo.username == 'system:serviceaccount:" RELEASE_NS ":" FULLNAME "-test'");
  expect_str_at(vap, "spec.validations.0.expression", "request.dryRun == true");
  for (int i = 0; i < 2; i++) {
    json_t *p = must_find(objs, "Pod", i ? FULLNAME "-test-tenant-dry-run" : FULLNAME "-test-readyz");
    expect_str_at(p, "spec.serviceAccountName", FULLNAME "-test");
    expect_str_at(p, "spec.restartPolicy", "Never");
    expect_str_at(p, "spec.containers.0.image", "curlimages/curl:8.11.1");
    cr_expect(json_is_true(at(p, "spec.securityContext.runAsNonRoot")));
    expect_int_at(p, "spec.securityContext.runAsUser", 65532);
    expect_str(label(p, "app.kubernetes.io/component"), "helm-test");
    cr_expect_neq(strcmp(label(p, "app.kubernetes.io/name"), "tenancy-operator"), 0,
                  "a test pod must not match the operator's selector");
  }
  json_decref(objs);
  objs = render(RELEASE, RELEASE_NS, "--set tests.enabled=false --set crds.install=false");
  cr_expect_eq(count_kind(objs, "Pod"), 0);
  cr_expect_null(find(objs, "ServiceAccount", FULLNAME "-test"));
  json_decref(objs);
}

Test(chart, refuses_broken_values) {
  expect_render_refused("--set leaderElection.enabled=false",
                        "replicaCount > 1 needs leaderElection.enabled=true");
  expect_render_refused("--set serviceAccount.create=false", "serviceAccount.name is required");
  expect_render_refused("--set metrics.serviceMonitor.enabled=true --set metrics.service.enabled=false",
                        "metrics.serviceMonitor.enabled needs");
  /* values.schema.json: typos and wrong values fail instead of being ignored */
  expect_render_refused("--set replicacount=3", "replicacount");
  expect_render_refused("--set operator.logLevel=loud", "logLevel");
  expect_render_refused("--set image.pullPolicy=Sometimes", "pullPolicy");
  expect_render_refused("--set image.digest=latest", "digest");
  expect_render_refused("--set operator.syncPeriod=tenhours", "syncPeriod");
  expect_render_refused("--set operator.clusterName=EU_Prod", "clusterName");
  expect_render_refused("--set operator.workers=0", "workers");
  expect_render_refused("--set metrics.port=70000", "port");
  expect_render_refused("--set probes.port=8080", "probes.port, metrics.port and webhook.port must differ");
  expect_render_refused("--set webhook.port=8081", "probes.port, metrics.port and webhook.port must differ");
  /* the new values: enums, ranges, types and unknown keys, each naming the value */
  expect_render_refused("--set webhook.failurePolicy=Sometimes", "failurePolicy");
  expect_render_refused("--set webhook.timeoutSeconds=31", "timeoutSeconds");
  expect_render_refused("--set webhook.timeoutSeconds=0", "timeoutSeconds");
  expect_render_refused("--set webhook.hostNetwork=yes", "hostNetwork");
  expect_render_refused("--set podAntiAffinity=strict", "podAntiAffinity");
  expect_render_refused("--set crds.kep=true", "kep");
  expect_render_refused("--set crds.install=maybe", "install");
  expect_render_refused("--set certManager.issuerRef.kind=Vault", "kind");
  expect_render_refused("--set certManager.duration=90d", "duration");
  expect_render_refused("--set podDisruptionBudget.minAvailable=half", "minAvailable");
  expect_render_refused("--set networkPolicy.ingress.metricsFrom[0].pods=all", "metricsFrom");
  expect_render_refused("--set networkPolicy.egress.postgres.ports[0]=0", "ports");
  expect_render_refused("--set tests.tenantPlan=Not_A_Plan", "tenantPlan");
  expect_render_refused("--set extraArgs[0]=workers=3", "extraArgs");
  expect_render_refused("--set extraVolumeMounts[0].name=x", "mountPath");
  /* combinations the templates refuse */
  expect_render_refused("--set podDisruptionBudget.maxUnavailable=1",
                        "podDisruptionBudget: set minAvailable or maxUnavailable, not both");
  expect_render_refused(
      "--set certManager.enabled=true --set webhook.enabled=false",
      "certManager.enabled issues the webhook's certificate: it needs webhook.enabled=true");
  /* there is no place for a password in values: the DSN comes from a Secret */
  expect_render_refused("--set database.password=hunter2", "password");
}

/* --- against the API server ------------------------------------------------------------------------ */

static size_t count_substr(const char *s, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

/* The first line of OUT that is a warning other than kubectl's note about objects created without
 * `kubectl apply` (the CRDs, when Helm or a server-side apply installed them), or NULL. */
static const char *unexpected_warning(const char *out) {
  for (const char *p = strstr(out, "Warning:"); p; p = strstr(p + 1, "Warning:")) {
    size_t n = strcspn(p, "\n");
    const char *note = strstr(p, "kubectl.kubernetes.io/last-applied-configuration");
    if (!note || note > p + n)
      return p;
  }
  return NULL;
}

/* Renders the chart (release t, namespace NS, ARGS) and applies it with --dry-run=server; returns
 * kubectl's exit status, its output in *OUT (free it). */
static int dry_run_apply(char **out, const char *ns, const char *args) {
  return tn_test_sh(out,
                    "f=$(mktemp /tmp/tn-chart-dry-XXXXXX) && '%s' template " RELEASE
                    " '%s' -n %s %s >\"$f\" && "
                    "kubectl apply --dry-run=server -f \"$f\"; rc=$?; rm -f \"$f\"; exit $rc",
                    helm_bin, chart_dir(), ns, args);
}

/* The same, but only the documents that do NOT mention API version DROP (e.g. cert-manager.io/v1,
 * whose CRDs the local cluster lacks); the dropped ones are dry-run separately into *DROPPED_OUT. */
static int dry_run_apply_without(char **out, char **dropped_out, const char *ns, const char *args,
                                 const char *drop) {
  int rc = tn_test_sh(out,
                      "f=$(mktemp /tmp/tn-chart-dry-XXXXXX) && '%s' template " RELEASE
                      " '%s' -n %s %s | awk -v RS='\\n---\\n' -v ORS='\\n---\\n' "
                      "'index($0, \"apiVersion: %s\") == 0' >\"$f\" && "
                      "kubectl apply --dry-run=server -f \"$f\"; rc=$?; rm -f \"$f\"; exit $rc",
                      helm_bin, chart_dir(), ns, args, drop);
  (void)tn_test_sh(dropped_out,
                   "f=$(mktemp /tmp/tn-chart-dry-XXXXXX) && '%s' template " RELEASE
                   " '%s' -n %s %s | awk -v RS='\\n---\\n' -v ORS='\\n---\\n' "
                   "'index($0, \"apiVersion: %s\") != 0' >\"$f\" && "
                   "kubectl apply --dry-run=server -f \"$f\"; rc=$?; rm -f \"$f\"; exit $rc",
                   helm_bin, chart_dir(), ns, args, drop);
  return rc;
}

Test(chart, api_server_accepts_the_rendered_objects, .fini = cleanup_cluster) {
  (void)tn_test_env("KUBECONFIG");
  tn_test_unique_name(dry_run_ns, sizeof dry_run_ns, "chart");
  char *out = NULL;
  /* the namespace enforces and warns about the restricted Pod Security Standard */
  int rc =
      tn_test_sh(&out,
                 "kubectl create namespace %s && kubectl label namespace %s "
                 "pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted",
                 dry_run_ns, dry_run_ns);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);

  /* the test pods' ServiceAccount must exist for their dry run (helm test creates it first) */
  rc = tn_test_sh(&out, "kubectl create serviceaccount " FULLNAME "-test -n %s", dry_run_ns);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);

  /* defaults: the templated CRDs, the objects, and the helm test hooks (their pods restricted too) */
  rc = dry_run_apply(&out, dry_run_ns, "");
  cr_assert_eq(rc, 0, "the API server refused the rendered chart: %s", out);
  cr_expect_eq(count_substr(out, "(server dry run)"), 38, "6 CRDs, 23 objects and 9 test hooks: %s", out);
  cr_expect(strstr(out, "poddisruptionbudget.policy/" FULLNAME " "), "%s", out);
  cr_expect(strstr(out, "pod/" FULLNAME "-test-readyz "), "%s", out);
  cr_expect(
      strstr(out, "validatingadmissionpolicy.admissionregistration.k8s.io/" FULLNAME "-test-dry-run-only "),
      "%s", out);
  for (size_t i = 0; i < sizeof CRD_NAMES / sizeof CRD_NAMES[0]; i++) {
    char line[128];
    snprintf(line, sizeof line, "customresourcedefinition.apiextensions.k8s.io/%s ", CRD_NAMES[i]);
    cr_expect(strstr(out, line), "no %s in: %s", CRD_NAMES[i], out);
  }
  cr_expect(strstr(out, "deployment.apps/" FULLNAME " "), "%s", out);
  cr_expect_null(unexpected_warning(out), "warnings (Pod Security?): %s", out);
  free(out);

  /* non-default values (no ServiceMonitor: its CRD is not installed here; the Lease in this namespace) */
  char values[] = "/tmp/tn-chart-values-XXXXXX", args[256];
  write_temp(values, NON_DEFAULT_VALUES);
  snprintf(args, sizeof args,
           "-f %s --set metrics.serviceMonitor.enabled=false --set leaderElection.namespace=%s", values,
           dry_run_ns);
  rc = dry_run_apply(&out, dry_run_ns, args);
  cr_expect_eq(rc, 0, "the API server refused the chart rendered with non-default values: %s", out);
  cr_expect_eq(count_substr(out, "(server dry run)"), 39,
               "6 CRDs, 24 objects (with the NetworkPolicy) and 9 test hooks: %s", out);
  cr_expect(strstr(out, "networkpolicy.networking.k8s.io/" FULLNAME " "), "%s", out);
  cr_expect(strstr(out, "poddisruptionbudget.policy/" FULLNAME " "), "%s", out);
  cr_expect_null(unexpected_warning(out), "warnings (Pod Security?): %s", out);
  free(out);

  /* the same check does see a container that is not restricted */
  rc = dry_run_apply(&out, dry_run_ns, "--set securityContext.allowPrivilegeEscalation=true");
  cr_expect(strstr(out, "would violate PodSecurity \"restricted"), "no Pod Security warning: %s", out);
  free(out);

  /* the default NetworkPolicy (egress on) and the hard anti-affinity are accepted too */
  rc = dry_run_apply(&out, dry_run_ns,
                     NO_CRDS_NO_TESTS "--set networkPolicy.enabled=true --set podAntiAffinity=hard");
  cr_expect_eq(rc, 0, "%s", out);
  cr_expect(strstr(out, "networkpolicy.networking.k8s.io/" FULLNAME " "), "%s", out);
  cr_expect_null(unexpected_warning(out), "%s", out);
  free(out);

  /* hostNetwork breaks the restricted (and baseline) Pod Security Standard: the API server says so
   * in the restricted namespace, and accepts it in one without a Pod Security level */
  rc = dry_run_apply(&out, dry_run_ns, NO_CRDS_NO_TESTS "--set webhook.hostNetwork=true");
  cr_expect(strstr(out, "would violate PodSecurity \"restricted") && strstr(out, "hostNetwork"),
            "no Pod Security warning for hostNetwork: %s", out);
  free(out);
  rc = dry_run_apply(&out, "default", NO_CRDS_NO_TESTS "--set webhook.hostNetwork=true");
  cr_expect_eq(rc, 0, "%s", out);
  cr_expect(strstr(out, "deployment.apps/" FULLNAME " created (server dry run)"), "%s", out);
  free(out);

  /* cert-manager mode: everything but the cert-manager objects is accepted (the local cluster has no
   * cert-manager CRDs, so those are only rendered, and the API server says it does not know them) */
  char *dropped = NULL;
  rc = dry_run_apply_without(&out, &dropped, dry_run_ns, NO_CRDS_NO_TESTS "--set certManager.enabled=true",
                             "cert-manager.io/v1");
  cr_expect_eq(rc, 0, "%s", out);
  cr_expect(strstr(out, "validatingwebhookconfiguration.admissionregistration.k8s.io/tenancy-operator "),
            "%s", out);
  cr_expect(strstr(out, "deployment.apps/" FULLNAME " "), "%s", out);
  cr_expect(strstr(dropped, "no matches for kind \"Certificate\"") ||
                strstr(dropped, "no matches for kind \"Issuer\""),
            "the cert-manager objects: %s", dropped);
  free(out);
  free(dropped);

  /* the API server validates what the schema leaves open: an invalid object name is refused */
  rc = dry_run_apply(&out, dry_run_ns, "--set serviceAccount.name=Not_A_Name");
  cr_expect_neq(rc, 0, "an invalid ServiceAccount name was accepted: %s", out);
  cr_expect(strstr(out, "Not_A_Name"), "%s", out);
  free(out);
  unlink(values);
}

/* `kubectl auth can-i VERB WHAT [-n NS]` as the release's ServiceAccount: 1 for yes, 0 for no. */
static int sa_can(const char *verb, const char *what, const char *ns) {
  char *out = NULL;
  (void)tn_test_sh(&out,
                   "kubectl auth can-i %s %s %s%s --as=system:serviceaccount:" RELEASE_NS ":" FULLNAME
                   " 2>/dev/null",
                   verb, what, ns ? "-n " : "", ns ? ns : "");
  int yes = strcmp(out, "yes\n") == 0, no = strcmp(out, "no\n") == 0;
  if (!yes && !no)
    cr_expect_fail("can-i %s %s: %s", verb, what, out);
  free(out);
  return yes;
}

/* The release's objects in the cluster, `-o name`, one per line ("" when none; free it). */
static char *release_objects(void) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out, "kubectl get deployments,serviceaccounts,roles,rolebindings,services,poddisruptionbudgets "
            "-n " RELEASE_NS " -l app.kubernetes.io/instance=" RELEASE " -o name 2>/dev/null && "
            "kubectl get roles,rolebindings -n default -l app.kubernetes.io/instance=" RELEASE
            " -o name 2>/dev/null && "
            "kubectl get clusterroles,clusterrolebindings,validatingwebhookconfigurations,"
            "validatingadmissionpolicies,validatingadmissionpolicybindings,mutatingadmissionpolicies,"
            "mutatingadmissionpolicybindings -l "
            "app.kubernetes.io/instance=" RELEASE " -o name 2>/dev/null && "
            "kubectl get secrets -n " RELEASE_NS " -l owner=helm,name=" RELEASE " -o name 2>/dev/null");
  cr_assert_eq(rc, 0, "%s", out);
  return out;
}

Test(chart, installs_upgrades_and_uninstalls, .fini = cleanup_cluster) {
  const char *kubeconfig = tn_test_env("KUBECONFIG");
  char *out = NULL;
  /* an interrupted earlier run may have left the release */
  int rc = tn_test_sh(
      &out, "'%s' uninstall " RELEASE " -n " RELEASE_NS " --kubeconfig '%s' --ignore-not-found --wait",
      helm_bin, kubeconfig);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* other suites apply manifests/deploy/20-tenant-roles.yaml; Helm will not adopt objects it did not
   * create, so they make way for the release and come back afterwards (cleanup_cluster) */
  rc = tn_test_sh(&out, "kubectl get clusterroles %s %s %s --ignore-not-found -o name", TENANT_ROLES[0],
                  TENANT_ROLES[1], TENANT_ROLES[2]);
  cr_assert_eq(rc, 0, "%s", out);
  if (*out) {
    restore_tenant_roles = 1;
    free(out);
    rc = tn_test_sh(&out, "kubectl delete clusterroles %s %s %s --ignore-not-found", TENANT_ROLES[0],
                    TENANT_ROLES[1], TENANT_ROLES[2]);
    cr_assert_eq(rc, 0, "%s", out);
  }
  free(out);
  /* and so do the console's (the browser suite applies manifests/deploy/25-console-roles.yaml) */
  rc = tn_test_sh(&out, "kubectl get clusterroles tenancy-console-operator tenancy-console-viewer "
                        "--ignore-not-found -o name");
  cr_assert_eq(rc, 0, "%s", out);
  if (*out) {
    restore_console_roles = 1;
    free(out);
    rc = tn_test_sh(&out, "kubectl delete clusterroles tenancy-console-operator tenancy-console-viewer "
                          "--ignore-not-found");
    cr_assert_eq(rc, 0, "%s", out);
  }
  free(out);

  /* so does a webhook configuration an operator run by another suite registered */
  json_error_t jerr;
  rc = tn_test_sh(&out,
                  "kubectl get validatingwebhookconfiguration tenancy-operator --ignore-not-found -o json");
  cr_assert_eq(rc, 0, "%s", out);
  if (*out) {
    json_t *vwc = json_loads(out, 0, &jerr);
    cr_assert_not_null(vwc, "%s: %s", jerr.text, out);
    static const char *const server_set[] = {"resourceVersion", "uid", "creationTimestamp", "generation",
                                             "managedFields"};
    for (size_t i = 0; i < sizeof server_set / sizeof server_set[0]; i++)
      json_object_del(json_object_get(vwc, "metadata"), server_set[i]);
    strcpy(saved_webhook, "/tmp/tn-chart-webhook-XXXXXX");
    int fd = mkstemp(saved_webhook);
    cr_assert_geq(fd, 0, "mkstemp");
    close(fd);
    cr_assert_eq(json_dump_file(vwc, saved_webhook, JSON_COMPACT), 0);
    json_decref(vwc);
    free(out);
    rc =
        tn_test_sh(&out, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
    cr_assert_eq(rc, 0, "%s", out);
  }
  free(out);

  rc = tn_test_sh(&out, "kubectl get namespace " RELEASE_NS " --ignore-not-found -o name");
  cr_assert_eq(rc, 0, "%s", out);
  delete_release_ns = !*out;
  free(out);

  /* the CRDs exist (other suites apply crds/ with kubectl): the release may not take them silently */
  rc = tn_test_sh(&out, "'%s/hack/crds.sh' apply", repo_root());
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc =
      tn_test_sh(&out, "'%s' install " RELEASE " '%s' -n " RELEASE_NS " --create-namespace --kubeconfig '%s'",
                 helm_bin, chart_dir(), kubeconfig);
  cr_expect_neq(rc, 0, "helm install took over CRDs that kubectl installed: %s", out);
  cr_expect(strstr(out, "CustomResourceDefinition \"") && strstr(out, "exists and cannot be imported"), "%s",
            out);
  free(out);
  /* the documented adoption (README, "Upgrading from 0.1"): label and annotate them for the release */
  crds_touched = 1;
  rc = tn_test_sh(&out,
                  "kubectl label crd %s %s %s %s %s %s app.kubernetes.io/managed-by=Helm --overwrite && "
                  "kubectl annotate crd %s %s %s %s %s %s meta.helm.sh/release-name=" RELEASE
                  " meta.helm.sh/release-namespace=" RELEASE_NS " --overwrite",
                  CRD_NAMES[0], CRD_NAMES[1], CRD_NAMES[2], CRD_NAMES[3], CRD_NAMES[4], CRD_NAMES[5],
                  CRD_NAMES[0], CRD_NAMES[1], CRD_NAMES[2], CRD_NAMES[3], CRD_NAMES[4], CRD_NAMES[5]);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);

  release_installed = 1;
  rc =
      tn_test_sh(&out, "'%s' install " RELEASE " '%s' -n " RELEASE_NS " --create-namespace --kubeconfig '%s'",
                 helm_bin, chart_dir(), kubeconfig);
  cr_assert_eq(rc, 0, "helm install failed: %s", out);
  cr_expect(strstr(out, "STATUS: deployed"), "%s", out);
  cr_expect(strstr(out, "is installed as release \"" RELEASE "\""), "no NOTES: %s", out);
  free(out);

  rc = tn_test_sh(&out, "'%s' status " RELEASE " -n " RELEASE_NS " --kubeconfig '%s' -o json", helm_bin,
                  kubeconfig);
  cr_assert_eq(rc, 0, "%s", out);
  json_t *status = json_loads(out, 0, &jerr);
  cr_assert_not_null(status, "%s: %s", jerr.text, out);
  free(out);
  expect_str_at(status, "info.status", "deployed");
  expect_int_at(status, "version", 1);
  json_decref(status);

  /* every object exists and belongs to the release */
  static const char *const objects[][2] = {
      {"deployment", FULLNAME},
      {"serviceaccount", FULLNAME},
      {"role", FULLNAME "-leader-election"},
      {"rolebinding", FULLNAME "-leader-election"},
      {"service", FULLNAME "-metrics"},
      {"clusterrole", FULLNAME},
      {"clusterrolebinding", FULLNAME},
      {"clusterrole", "tenancy-tenant-admin"},
      {"clusterrole", "tenancy-tenant-developer"},
      {"clusterrole", "tenancy-tenant-viewer"},
      {"service", FULLNAME "-webhook"},
      {"validatingwebhookconfiguration", "tenancy-operator"},
  };
  for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) {
    rc = tn_test_sh(&out, "kubectl get %s %s -n " RELEASE_NS " -o json", objects[i][0], objects[i][1]);
    cr_assert_eq(rc, 0, "%s %s: %s", objects[i][0], objects[i][1], out);
    json_t *o = json_loads(out, 0, &jerr);
    cr_assert_not_null(o, "%s", jerr.text);
    free(out);
    expect_str(label(o, "app.kubernetes.io/instance"), RELEASE);
    expect_str(label(o, "app.kubernetes.io/managed-by"), "Helm");
    expect_str(key_at(o, "metadata.annotations", "meta.helm.sh/release-name"), RELEASE);
    expect_str(key_at(o, "metadata.annotations", "meta.helm.sh/release-namespace"), RELEASE_NS);
    if (strcmp(objects[i][0], "deployment") == 0)
      expect_int_at(o, "spec.replicas", 2);
    json_decref(o);
  }
  /* --create-namespace made the namespace when it was missing */
  rc = tn_test_sh(&out, "kubectl get namespace " RELEASE_NS " -o name");
  cr_expect_eq(rc, 0, "%s", out);
  free(out);
  /* --create-namespace made the namespace when it was missing */
  rc = tn_test_sh(&out, "kubectl get namespace " RELEASE_NS " -o name");
  cr_expect_eq(rc, 0, "%s", out);
  free(out);
  /* the CRDs are the release's now, served, and marked to be kept */
  rc = tn_test_sh(&out, "kubectl wait --for=condition=Established --timeout=60s crd/%s crd/%s crd/%s crd/%s",
                  CRD_NAMES[0], CRD_NAMES[1], CRD_NAMES[2], CRD_NAMES[3]);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  for (size_t i = 0; i < sizeof CRD_NAMES / sizeof CRD_NAMES[0]; i++) {
    rc = tn_test_sh(&out, "kubectl get crd %s -o json", CRD_NAMES[i]);
    cr_assert_eq(rc, 0, "%s", out);
    json_t *crd = json_loads(out, 0, &jerr);
    cr_assert_not_null(crd, "%s", jerr.text);
    free(out);
    expect_str(key_at(crd, "metadata.annotations", "helm.sh/resource-policy"), "keep");
    expect_str(key_at(crd, "metadata.annotations", "meta.helm.sh/release-name"), RELEASE);
    expect_str(label(crd, "app.kubernetes.io/instance"), RELEASE);
    json_decref(crd);
  }
  /* the PodDisruptionBudget is accepted and computed by the API server's disruption controller
   * (kube-controller-manager): no pod runs here, so no disruption is allowed */
  rc = tn_test_sh(&out, "kubectl get pdb " FULLNAME " -n " RELEASE_NS " -o jsonpath='{.spec.minAvailable}'");
  cr_expect(rc == 0 && strcmp(out, "1") == 0, "PDB: %s", out);
  free(out);

  /* the ServiceAccount holds what the operator needs and nothing more */
  cr_expect(sa_can("create", "namespaces", NULL));
  cr_expect(sa_can("delete", "namespaces", NULL));
  cr_expect(sa_can("watch", "tenants.tenancy.dev", NULL));
  cr_expect(sa_can("list", "tenancypolicies.tenancy.dev", NULL));
  cr_expect(sa_can("update", "tenants.tenancy.dev --subresource=status", NULL));
  cr_expect(sa_can("update", "tenants.tenancy.dev --subresource=finalizers", NULL));
  cr_expect(sa_can("create", "networkpolicies.networking.k8s.io", "acme-prod"));
  cr_expect(sa_can("create", "resourcequotas", "acme-prod"));
  cr_expect(sa_can("create", "rolebindings.rbac.authorization.k8s.io", "acme-prod"));
  cr_expect(sa_can("bind", "clusterroles.rbac.authorization.k8s.io/tenancy-tenant-admin", NULL));
  cr_expect(sa_can("create", "events.events.k8s.io", "acme-prod"));
  cr_expect(sa_can("update", "leases.coordination.k8s.io", RELEASE_NS));
  cr_expect(!sa_can("update", "leases.coordination.k8s.io", "default"), "leases outside its namespace");
  cr_expect(!sa_can("delete", "tenants.tenancy.dev", NULL), "deleting tenants");
  cr_expect(!sa_can("update", "plans.tenancy.dev", NULL), "writing plans");
  cr_expect(!sa_can("bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin", NULL),
            "binding cluster-admin");
  cr_expect(!sa_can("create", "clusterroles.rbac.authorization.k8s.io", NULL), "creating cluster roles");
  cr_expect(!sa_can("create", "pods", "acme-prod"), "creating pods");
  /* Suspended (ScaleToZero) and Archived tenants' workloads are scaled, never made or removed. */
  cr_expect(sa_can("patch", "statefulsets.apps", "acme-prod"));
  cr_expect(sa_can("list", "deployments.apps", "acme-prod"));
  cr_expect(!sa_can("create", "deployments.apps", "acme-prod"), "creating deployments");
  cr_expect(!sa_can("delete", "deployments.apps", "acme-prod"), "deleting deployments");
  cr_expect(sa_can("create", "validatingwebhookconfigurations.admissionregistration.k8s.io", NULL));
  cr_expect(
      sa_can("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/tenancy-operator", NULL));
  cr_expect(!sa_can("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/other", NULL),
            "patching another webhook configuration");
  cr_expect(!sa_can("delete", "validatingwebhookconfigurations.admissionregistration.k8s.io/tenancy-operator",
                    NULL),
            "deleting its webhook configuration");
  cr_expect(!sa_can("get", "configmaps", "kube-system"), "reading config maps");

  /* no Plan field PROBE_FIELD yet: the API server prunes it */
  rc = tn_test_sh(&out, "kubectl get crd plans.tenancy.dev -o json");
  cr_assert_eq(rc, 0, "%s", out);
  cr_expect_null(strstr(out, PROBE_FIELD), "the Plan CRD has " PROBE_FIELD " before the upgrade");
  free(out);

  /* upgrade with a changed value, from a copy of the chart whose Plan CRD has a new spec field:
   * Helm never upgrades a crds/ directory, so this is what crds.install is for */
  strcpy(chart_copy, "/tmp/tn-chart-copy-XXXXXX");
  cr_assert_not_null(mkdtemp(chart_copy));
  rc = tn_test_sh(
      &out,
      "cp -r '%s' '%s/tenancy-operator' && f='%s/tenancy-operator/files/crds/tenancy.dev_plans.yaml' && "
      "awk '{print} /^            spec:$/ {s=1} s && /^              properties:$/ {print \"               "
      " " PROBE_FIELD
      ":\"; print \"                  description: added by the chart test\"; print \"                  "
      "type: string\"; s=0}' \"$f\" >\"$f.new\" && mv \"$f.new\" \"$f\" && grep -c " PROBE_FIELD " \"$f\"",
      chart_dir(), chart_copy, chart_copy);
  cr_assert(rc == 0 && strcmp(out, "1\n") == 0, "could not add the field to the copy: %s", out);
  free(out);
  rc = tn_test_sh(&out,
                  "'%s' upgrade " RELEASE " '%s/tenancy-operator' -n " RELEASE_NS
                  " --kubeconfig '%s' --set replicaCount=3 "
                  "--set operator.logLevel=debug",
                  helm_bin, chart_copy, kubeconfig);
  cr_assert_eq(rc, 0, "helm upgrade failed: %s", out);
  free(out);
  rc = tn_test_sh(&out,
                  "kubectl get crd plans.tenancy.dev -o jsonpath='{.spec.versions[0].schema.openAPIV3Schema"
                  ".properties.spec.properties." PROBE_FIELD ".type}'");
  cr_expect(rc == 0 && strcmp(out, "string") == 0, "helm upgrade did not update the Plan CRD's schema: %s",
            out);
  free(out);
  /* and the API server serves the new schema: the field survives instead of being pruned */
  rc = tn_test_sh(
      &out, "printf 'apiVersion: tenancy.dev/v1alpha1\\nkind: Plan\\nmetadata: {name: chart-probe}\\nspec: "
            "{quotas: {cpu: \"1\", memory: 1Gi, storage: 1Gi, pods: 1, services: 1}, " PROBE_FIELD
            ": kept}\\n' | kubectl apply --dry-run=server -o jsonpath='{.spec." PROBE_FIELD "}' -f -");
  cr_expect(rc == 0 && strstr(out, "kept"), "a Plan's " PROBE_FIELD " after the upgrade: %s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl get deployment " FULLNAME " -n " RELEASE_NS " -o json");
  cr_assert_eq(rc, 0, "%s", out);
  json_t *d = json_loads(out, 0, &jerr);
  cr_assert_not_null(d, "%s", jerr.text);
  free(out);
  expect_int_at(d, "spec.replicas", 3);
  expect_arg(container(d), "--log-level=debug");
  json_decref(d);
  rc = tn_test_sh(&out, "'%s' status " RELEASE " -n " RELEASE_NS " --kubeconfig '%s' -o json", helm_bin,
                  kubeconfig);
  cr_assert_eq(rc, 0, "%s", out);
  status = json_loads(out, 0, &jerr);
  cr_assert_not_null(status, "%s", jerr.text);
  free(out);
  expect_int_at(status, "version", 2);
  json_decref(status);

  /* uninstall removes every object of the release, and its record; the CRDs stay */
  char *before = release_objects();
  cr_expect_eq(count_substr(before, "\n"), 23 + 2, "23 objects and 2 release records: %s", before);
  free(before);
  rc = tn_test_sh(&out, "'%s' uninstall " RELEASE " -n " RELEASE_NS " --kubeconfig '%s'", helm_bin,
                  kubeconfig);
  cr_assert_eq(rc, 0, "helm uninstall failed: %s", out);
  cr_expect(strstr(out, "release \"" RELEASE "\" uninstalled"), "%s", out);
  free(out);
  double until = tn_test_now() + 60;
  char *left = release_objects();
  while (*left && tn_test_now() < until) {
    free(left);
    usleep(200 * 1000);
    left = release_objects();
  }
  cr_expect_str_empty(left, "left behind by helm uninstall: %s", left);
  free(left);
  rc = tn_test_sh(&out, "kubectl get clusterroles %s %s %s --ignore-not-found -o name", TENANT_ROLES[0],
                  TENANT_ROLES[1], TENANT_ROLES[2]);
  cr_expect(rc == 0 && !*out, "tenant roles left behind: %s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl get crd %s %s %s %s -o name", CRD_NAMES[0], CRD_NAMES[1], CRD_NAMES[2],
                  CRD_NAMES[3]);
  cr_expect_eq(rc, 0, "helm uninstall must keep the CRDs (crds.keep): %s", out);
  free(out);
  rc = tn_test_sh(&out,
                  "kubectl get crd plans.tenancy.dev -o jsonpath='{.spec.versions[0].schema.openAPIV3Schema"
                  ".properties.spec.properties." PROBE_FIELD ".type}'");
  cr_expect(rc == 0 && strcmp(out, "string") == 0, "the kept CRD is the upgraded one: %s", out);
  free(out);
}

/* --- the helm test hooks' scripts, run here against the real API server --------------------------- */

static char hooks_rbac[64]; /* the rendered hook RBAC and policy, applied: delete them */
static int stub_pids[2];    /* /readyz stand-ins */

static void cleanup_hooks(void) {
  for (int i = 0; i < 2; i++)
    if (stub_pids[i] > 0)
      (void)tn_test_sh(NULL, "kill %d", stub_pids[i]);
  if (hooks_rbac[0]) {
    (void)tn_test_sh(NULL, "kubectl delete --ignore-not-found -f %s", hooks_rbac);
    unlink(hooks_rbac);
  }
  cleanup_cluster();
}

/* Starts an HTTP server on HOST:PORT (0: any) answering GET /readyz with CODE; returns its pid and
 * stores the port in *PORT_OUT. */
static int start_readyz_stub(const char *host, int code, int port, int *port_out) {
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "f=$(mktemp /tmp/tn-chart-stub-XXXXXX) || exit 1; python3 -c '\n"
                      "import http.server, sys\n"
                      "code = int(sys.argv[2])\n"
                      "class H(http.server.BaseHTTPRequestHandler):\n"
                      "    def do_GET(self):\n"
                      "        self.send_response(code if self.path == \"/readyz\" else 404)\n"
                      "        self.end_headers()\n"
                      "        self.wfile.write(b\"ok\" if code == 200 else b\"informers not synced\")\n"
                      "    def log_message(self, *a):\n"
                      "        pass\n"
                      "s = http.server.HTTPServer((sys.argv[1], int(sys.argv[4])), H)\n"
                      "open(sys.argv[3], \"w\").write(str(s.server_address[1]))\n"
                      "s.serve_forever()\n"
                      "' %s %d \"$f\" %d >/dev/null 2>&1 & pid=$!; "
                      "for i in $(seq 50); do [ -s \"$f\" ] && break; sleep 0.1; done; echo \"$pid $(cat "
                      "\"$f\")\"; rm -f \"$f\"",
                      host, code, port);
  cr_assert_eq(rc, 0, "%s", out);
  int pid = 0, p = 0;
  cr_assert_eq(sscanf(out, "%d %d", &pid, &p), 2, "the stub did not start: %s", out);
  free(out);
  *port_out = p;
  return pid;
}

/* Runs files/tests/SCRIPT (what the hook pod runs: the template includes it verbatim) with ENV
 * (shell assignments), as the hook ServiceAccount whose token and CA are in SA_DIR. */
static int run_hook_script(char **out, const char *script, const char *sa_dir, const char *env) {
  return tn_test_sh(
      out, "cd /tmp && env API_SERVER=\"$TENANCY_KUBE_SERVER\" SA_DIR=%s %s sh '%s/files/tests/%s' 2>&1",
      sa_dir, env, chart_dir(), script);
}

Test(chart, helm_test_hooks_run_against_the_api_server, .fini = cleanup_hooks) {
  (void)tn_test_env("KUBECONFIG");
  const char *ca = tn_test_env("TENANCY_CA_FILE");
  (void)tn_test_env("TENANCY_KUBE_SERVER");
  tn_test_unique_name(dry_run_ns, sizeof dry_run_ns, "chart-hooks");
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl create namespace %s", dry_run_ns);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);

  /* the pods run exactly the files */
  char args[128];
  snprintf(args, sizeof args, "--set crds.install=false");
  json_t *objs = render(RELEASE, dry_run_ns, args);
  static const char *const scripts[][2] = {{FULLNAME "-test-readyz", "readyz.sh"},
                                           {FULLNAME "-test-tenant-dry-run", "tenant-dry-run.sh"}};
  for (int i = 0; i < 2; i++) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/files/tests/%s", chart_dir(), scripts[i][1]);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *arg = str_at(must_find(objs, "Pod", scripts[i][0]), "spec.containers.0.args.0");
    cr_expect(arg && strcmp(arg, text) == 0, "the pod %s does not run %s", scripts[i][0], path);
  }
  json_decref(objs);

  /* the hooks' ServiceAccount, RBAC and dry-run-only policy, as helm test creates them */
  strcpy(hooks_rbac, "/tmp/tn-chart-hooks-XXXXXX");
  int fd = mkstemp(hooks_rbac);
  cr_assert_geq(fd, 0);
  close(fd);
  rc = tn_test_sh(
      &out, "'%s' template " RELEASE " '%s' -n %s -s templates/tests/rbac.yaml >%s && kubectl apply -f %s",
      helm_bin, chart_dir(), dry_run_ns, hooks_rbac, hooks_rbac);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char sa_dir[] = "/tmp/tn-chart-sa-XXXXXX";
  cr_assert_not_null(mkdtemp(sa_dir));
  rc = tn_test_sh(
      &out, "kubectl create token " FULLNAME "-test -n %s --duration=10m >%s/token && cp '%s' %s/ca.crt",
      dry_run_ns, sa_dir, ca, sa_dir);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char sa[256];
  snprintf(sa, sizeof sa, "system:serviceaccount:%s:" FULLNAME "-test", dry_run_ns);

  /* least privilege: what the scripts need, nothing else */
  static const char *const can[][3] = {{"list", "pods", "NS"}, {"create", "tenants.tenancy.dev", ""}};
  static const char *const cannot[][3] = {{"get", "secrets", "NS"},
                                          {"list", "pods", "kube-system"},
                                          {"delete", "tenants.tenancy.dev", ""},
                                          {"update", "tenants.tenancy.dev", ""},
                                          {"get", "pods", "NS"},
                                          {"create", "plans.tenancy.dev", ""}};
  for (int i = 0; i < 2; i++) {
    rc = tn_test_sh(&out, "kubectl auth can-i %s %s %s%s --as=%s 2>/dev/null", can[i][0], can[i][1],
                    *can[i][2] ? "-n " : "", *can[i][2] ? dry_run_ns : "", sa);
    cr_expect(rc == 0 && strcmp(out, "yes\n") == 0, "the hook SA cannot %s %s: %s", can[i][0], can[i][1],
              out);
    free(out);
  }
  for (size_t i = 0; i < sizeof cannot / sizeof cannot[0]; i++) {
    const char *ns = strcmp(cannot[i][2], "NS") == 0 ? dry_run_ns : cannot[i][2];
    rc = tn_test_sh(&out, "kubectl auth can-i %s %s %s%s --as=%s 2>/dev/null", cannot[i][0], cannot[i][1],
                    *ns ? "-n " : "", ns, sa);
    cr_expect(strcmp(out, "no\n") == 0, "the hook SA can %s %s in %s: %s", cannot[i][0], cannot[i][1], ns,
              out);
    free(out);
  }

  /* the Tenant check: the dry run passes the schema (and webhook, when one is registered) and stores nothing
   */
  rc = run_hook_script(&out, "tenant-dry-run.sh", sa_dir, "TENANT=helm-test-chart PLAN=standard");
  cr_expect_eq(rc, 0, "tenant-dry-run.sh failed: %s", out);
  cr_expect(strstr(out, "PASS: the API server accepts Tenant helm-test-chart"), "%s", out);
  free(out);
  rc = tn_test_sh(&out, "kubectl get tenant helm-test-chart 2>&1");
  cr_expect(rc != 0 && strstr(out, "NotFound"), "the dry run stored the Tenant: %s", out);
  free(out);
  /* a Tenant the schema refuses makes the check fail, with the API server's message */
  rc = run_hook_script(&out, "tenant-dry-run.sh", sa_dir, "TENANT=Not_A_Tenant PLAN=standard");
  cr_expect_neq(rc, 0, "%s", out);
  cr_expect(strstr(out, "FAIL: dry-run create of Tenant Not_A_Tenant: HTTP 422") && strstr(out, "DNS label"),
            "%s", out);
  free(out);

  /* the attacker: the hook's token writing for real is refused by the policy (RBAC alone would allow it) */
  double until = tn_test_now() + 20;
  for (;;) {
    rc = tn_test_sh(
        &out,
        "curl -sS --cacert %s/ca.crt -H \"Authorization: Bearer $(cat %s/token)\" -H 'Content-Type: "
        "application/json' -X POST --data '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\","
        "\"metadata\":{\"name\":\"chart-hook-real\"},\"spec\":{\"plan\":\"standard\",\"state\":\"Draft\"}}' "
        "\"$TENANCY_KUBE_SERVER/apis/tenancy.dev/v1alpha1/tenants\"",
        sa_dir, sa_dir);
    if (strstr(out, "the helm test ServiceAccount may only dry-run Tenant writes") || tn_test_now() > until)
      break;
    free(out);
    (void)tn_test_sh(NULL, "kubectl delete tenant chart-hook-real --ignore-not-found >/dev/null 2>&1");
    usleep(500 * 1000);
  }
  cr_expect(strstr(out, "the helm test ServiceAccount may only dry-run Tenant writes") && strstr(out, "403"),
            "a real Tenant create with the hook's token: %s", out);
  free(out);
  (void)tn_test_sh(NULL, "kubectl delete tenant chart-hook-real --ignore-not-found >/dev/null 2>&1");

  /* the readyz check: no operator pod -> it fails */
#define READYZ_ENV                                                                                           \
  "NAMESPACE=%s SELECTOR=app.kubernetes.io/name=tenancy-operator,app.kubernetes.io/instance=" RELEASE        \
  " PROBE_PORT=%d"
  char env_port[560];
  snprintf(env_port, sizeof env_port, READYZ_ENV, dry_run_ns, 1);
  rc = run_hook_script(&out, "readyz.sh", sa_dir, env_port);
  cr_expect_neq(rc, 0, "%s", out);
  cr_expect(strstr(out, "FAIL: no operator pod with an IP"), "%s", out);
  free(out);

  /* one pod whose IP answers /readyz 200 -> passes; a second whose IP answers 503 -> fails naming it.
   * No node runs pods here: Pod objects with their status written as a kubelet would, and HTTP
   * stand-ins on those IPs. */
  int port = 0, port2 = 0;
  stub_pids[0] = start_readyz_stub("127.0.0.1", 200, 0, &port);
  stub_pids[1] = start_readyz_stub("127.0.0.2", 503, port, &port2);
  cr_assert_eq(port, port2);
  for (int i = 1; i <= 2; i++) {
    rc = tn_test_sh(
        &out,
        "printf 'apiVersion: v1\\nkind: Pod\\nmetadata: {name: op-%d, labels: {app.kubernetes.io/name: "
        "tenancy-operator, app.kubernetes.io/instance: " RELEASE "}}\\nspec: {containers: [{name: "
        "operator, image: tenancy-operator:0.1.0}]}\\n' | kubectl apply -n %s -f - && "
        "kubectl patch pod op-%d -n %s --subresource=status --type=merge "
        "-p '{\"status\":{\"podIP\":\"127.0.0.%d\",\"podIPs\":[{\"ip\":\"127.0.0.%d\"}]}}'",
        i, dry_run_ns, i, dry_run_ns, i, i);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    snprintf(env_port, sizeof env_port, READYZ_ENV, dry_run_ns, port);
    rc = run_hook_script(&out, "readyz.sh", sa_dir, env_port);
    if (i == 1) {
      cr_expect_eq(rc, 0, "readyz.sh with a ready pod: %s", out);
      cr_expect(strstr(out, "ok: pod 127.0.0.1: GET /readyz: ok") &&
                    strstr(out, "PASS: 1 operator pod(s) ready"),
                "%s", out);
    } else {
      cr_expect_neq(rc, 0, "readyz.sh passed with a pod answering 503: %s", out);
      cr_expect(strstr(out, "FAIL: pod 127.0.0.2: GET /readyz") && strstr(out, "503"), "%s", out);
    }
    free(out);
  }
  (void)tn_test_sh(NULL, "rm -rf %s", sa_dir);
}

/* --- the operator registers what the chart renders ------------------------------------------------ */

static int operator_pid;
static char operator_log[64];

static void cleanup_operator(void) {
  if (operator_pid > 0)
    (void)tn_test_sh(
        NULL, "kill %d 2>/dev/null; for i in $(seq 100); do kill -0 %d 2>/dev/null || break; sleep 0.1; done",
        operator_pid, operator_pid);
  (void)tn_test_sh(
      NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found >/dev/null");
  if (operator_log[0])
    unlink(operator_log);
  cleanup_cluster(); /* restores a configuration another suite left */
}

/* webhook.failurePolicy and webhook.timeoutSeconds reach both the chart's ValidatingWebhookConfiguration
 * and the operator's flags, and the operator (which applies the configuration at start) registers the
 * same values instead of overwriting them with its defaults. */
Test(chart, operator_registers_the_charts_failure_policy_and_timeout, .fini = cleanup_operator) {
  (void)tn_test_env("KUBECONFIG");
  const char *bin = tn_test_env("TENANCY_OPERATOR_BIN");
  char *out = NULL;
  json_error_t jerr;
  /* a configuration another suite left is restored afterwards */
  int rc = tn_test_sh(
      &out, "kubectl get validatingwebhookconfiguration tenancy-operator --ignore-not-found -o json");
  cr_assert_eq(rc, 0, "%s", out);
  if (*out) {
    json_t *vwc = json_loads(out, 0, &jerr);
    cr_assert_not_null(vwc, "%s", jerr.text);
    static const char *const server_set[] = {"resourceVersion", "uid", "creationTimestamp", "generation",
                                             "managedFields"};
    for (size_t i = 0; i < sizeof server_set / sizeof server_set[0]; i++)
      json_object_del(json_object_get(vwc, "metadata"), server_set[i]);
    strcpy(saved_webhook, "/tmp/tn-chart-webhook-XXXXXX");
    int fd = mkstemp(saved_webhook);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(json_dump_file(vwc, saved_webhook, JSON_COMPACT), 0);
    json_decref(vwc);
  }
  free(out);
  (void)tn_test_sh(
      NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found >/dev/null");

  json_t *objs = render(RELEASE, RELEASE_NS,
                        NO_CRDS_NO_TESTS "--set webhook.failurePolicy=Ignore --set webhook.timeoutSeconds=7");
  json_t *chart_vwc = must_find(objs, "ValidatingWebhookConfiguration", "tenancy-operator");
  json_t *c = container(must_find(objs, "Deployment", FULLNAME));
  const char *flags[2] = {NULL, NULL};
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(c, "args"), i, a) {
    const char *v = json_string_value(a);
    if (strncmp(v, "--webhook-failure-policy=", 25) == 0)
      flags[0] = v;
    else if (strncmp(v, "--webhook-timeout-seconds=", 26) == 0)
      flags[1] = v;
  }
  cr_assert(flags[0] && flags[1], "the chart passes no failure policy or timeout flag: %s", args_text(c));

  /* the operator with the chart's flags, its webhook on loopback (registered by URL, as outside a cluster) */
  strcpy(operator_log, "/tmp/tn-chart-operator-XXXXXX");
  int fd = mkstemp(operator_log);
  cr_assert_geq(fd, 0);
  close(fd);
  rc = tn_test_sh(&out,
                  "'%s' --leader-elect=false --metrics-bind-address=0 --health-probe-bind-address=0 "
                  "--api-bind-address=0 --webhook-bind-address=127.0.0.1:0 %s %s >%s 2>&1 & echo $!",
                  bin, flags[0], flags[1], operator_log);
  cr_assert_eq(rc, 0, "%s", out);
  operator_pid = atoi(out);
  free(out);
  cr_assert_gt(operator_pid, 0);
  rc = tn_test_sh_until(60, &out,
                        "kubectl get validatingwebhookconfiguration tenancy-operator -o json 2>/dev/null");
  cr_assert_eq(rc, 0, "the operator registered no configuration: %s", out);
  json_t *live = json_loads(out, 0, &jerr);
  cr_assert_not_null(live, "%s", jerr.text);
  free(out);
  expect_str_at(live, "webhooks.0.failurePolicy", "Ignore");
  expect_int_at(live, "webhooks.0.timeoutSeconds", 7);
  cr_expect(json_equal(at(live, "webhooks.0.failurePolicy"), at(chart_vwc, "webhooks.0.failurePolicy")));
  cr_expect(json_equal(at(live, "webhooks.0.timeoutSeconds"), at(chart_vwc, "webhooks.0.timeoutSeconds")));
  json_decref(live);
  json_decref(objs);

  /* stopped cleanly, and sanitizer-clean */
  rc = tn_test_sh(
      &out, "kill %d && for i in $(seq 300); do kill -0 %d 2>/dev/null || exit 0; sleep 0.1; done; exit 1",
      operator_pid, operator_pid);
  cr_expect_eq(rc, 0, "the operator did not stop: %s", out);
  free(out);
  operator_pid = 0;
  rc = tn_test_sh(&out, "cat %s", operator_log);
  cr_expect(strstr(out, "exiting with code 0"), "%s", out);
  cr_expect_null(strstr(out, "AddressSanitizer"), "%s", out);
  cr_expect_null(strstr(out, "LeakSanitizer"), "%s", out);
  cr_expect_null(strstr(out, "runtime error"), "%s", out);
  free(out);
}
