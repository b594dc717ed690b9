/* test_kubeconfig.c - unit tests of client configuration loading: kubeconfig variants (files vs
 * embedded data, relative paths, tokens, named and current contexts), in-cluster, and malformed
 * files that must be refused with a message naming the faulty field. No network. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kube/client.h"

/* The fixtures directory, found from this source file's (absolute) path. */
static const char *fixture(const char *name) {
  static char path[PATH_MAX];
  char src[PATH_MAX];
  snprintf(src, sizeof src, "%s", __FILE__);
  snprintf(path, sizeof path, "%s/fixtures/kubeconfig/%s", dirname(src), name);
  return path;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "open %s", path);
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strdup(buf);
}

static void load_ok(const char *name, const char *context, struct tn_kube_config *c) {
  struct tn_error err;
  tn_error_clear(&err);
  int rc = tn_kube_config_load(fixture(name), context, c, &err);
  cr_assert_eq(rc, 0, "%s: %s", name, err.message);
}

Test(kubeconfig, relative_files_resolve_against_the_kubeconfig_directory) {
  struct tn_kube_config c;
  load_ok("files.yaml", NULL, &c);
  cr_assert_str_eq(c.server, "https://127.0.0.1:6443", "the trailing slash is dropped");
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", fixture(""));
  dir[strlen(dir) - 1] = '\0';
  char want[PATH_MAX + 32];
  snprintf(want, sizeof want, "%s/ca.crt", dir);
  cr_assert_str_eq(c.ca_file, want);
  snprintf(want, sizeof want, "%s/client.crt", dir);
  cr_assert_str_eq(c.cert_file, want);
  snprintf(want, sizeof want, "%s/./client.key", dir);
  cr_assert_str_eq(c.key_file, want);
  cr_assert_null(c.ca_data);
  cr_assert_null(c.cert_data);
  cr_assert_null(c.key_data);
  cr_assert_null(c.token);
  cr_assert_str_eq(c.namespace, "team-a");
  cr_assert(!c.insecure_skip_tls_verify);
  tn_kube_config_cleanup(&c);
}

Test(kubeconfig, relative_kubeconfig_path_gives_absolute_file_paths) {
  char src[PATH_MAX], cwd[PATH_MAX];
  snprintf(src, sizeof src, "%s", __FILE__);
  cr_assert_not_null(getcwd(cwd, sizeof cwd));
  cr_assert_eq(chdir(dirname(src)), 0);
  struct tn_kube_config c;
  struct tn_error err;
  int rc = tn_kube_config_load("fixtures/kubeconfig/files.yaml", NULL, &c, &err);
  cr_assert_eq(chdir(cwd), 0);
  cr_assert_eq(rc, 0, "%s", err.message);
  cr_assert_eq(c.ca_file[0], '/', "%s", c.ca_file);
  cr_assert(access(c.ca_file, R_OK) == 0, "%s", c.ca_file);
  tn_kube_config_cleanup(&c);
}

Test(kubeconfig, embedded_data_is_decoded_to_pem) {
  struct tn_kube_config c;
  load_ok("data.yaml", NULL, &c);
  cr_assert_str_eq(c.server, "https://127.0.0.1:6443");
  char *ca = slurp(fixture("ca.crt")), *crt = slurp(fixture("client.crt")),
       *key = slurp(fixture("client.key"));
  cr_assert_str_eq(c.ca_data, ca);
  cr_assert_str_eq(c.cert_data, crt);
  cr_assert_str_eq(c.key_data, key);
  cr_assert_null(c.ca_file);
  cr_assert_null(c.cert_file);
  cr_assert_null(c.key_file);
  free(ca);
  free(crt);
  free(key);
  tn_kube_config_cleanup(&c);
}

Test(kubeconfig, token_and_tls_server_name) {
  struct tn_kube_config c;
  load_ok("token.yaml", NULL, &c);
  cr_assert_str_eq(c.server, "https://api.example.test:443");
  cr_assert_str_eq(c.token, "s3cr3t-token");
  cr_assert_null(c.token_file);
  cr_assert_str_eq(c.tls_server_name, "kubernetes.default.svc");
  cr_assert_not_null(c.ca_data);
  cr_assert_null(c.cert_file);
  cr_assert_null(c.cert_data);
  tn_kube_config_cleanup(&c);
}

Test(kubeconfig, token_file_is_resolved_not_read) {
  struct tn_kube_config c;
  load_ok("tokenfile.yaml", NULL, &c);
  cr_assert_str_eq(c.server, "https://10.0.0.1");
  cr_assert_null(c.token, "the file is read by the client, each time it changes");
  char want[PATH_MAX];
  snprintf(want, sizeof want, "%s", fixture("token"));
  cr_assert_str_eq(c.token_file, want);
  tn_kube_config_cleanup(&c);
}

Test(kubeconfig, current_context_and_named_context) {
  struct tn_kube_config c;
  load_ok("contexts.yaml", NULL, &c);
  cr_assert_str_eq(c.server, "https://one.example.test:6443");
  cr_assert_str_eq(c.token, "alice-token");
  cr_assert_null(c.cert_file);
  cr_assert_null(c.namespace);
  tn_kube_config_cleanup(&c);

  load_ok("contexts.yaml", "second", &c);
  cr_assert_str_eq(c.server, "https://two.example.test:7443");
  cr_assert_null(c.token);
  cr_assert_not_null(c.ca_data);
  cr_assert_not_null(c.cert_file);
  cr_assert_not_null(c.key_file);
  cr_assert_str_eq(c.namespace, "bobs");
  tn_kube_config_cleanup(&c);

  struct tn_error err;
  cr_assert_eq(tn_kube_config_load(fixture("contexts.yaml"), "third", &c, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "no entry named \"third\" in contexts"), "%s", err.message);
}

Test(kubeconfig, kubeconfig_env_first_entry_of_a_list) {
  char list[2 * PATH_MAX + 8];
  char first[PATH_MAX];
  snprintf(first, sizeof first, "%s", fixture("token.yaml"));
  snprintf(list, sizeof list, "%s:%s", first, fixture("files.yaml"));
  setenv("KUBECONFIG", list, 1);
  struct tn_kube_config c;
  struct tn_error err;
  cr_assert_eq(tn_kube_config_load(NULL, NULL, &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.token, "s3cr3t-token");
  tn_kube_config_cleanup(&c);
  cr_assert_eq(tn_kube_config_auto(NULL, &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.server, "https://api.example.test:443");
  tn_kube_config_cleanup(&c);
  /* An explicit path wins over the environment. */
  cr_assert_eq(tn_kube_config_auto(fixture("files.yaml"), &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.server, "https://127.0.0.1:6443");
  tn_kube_config_cleanup(&c);
  unsetenv("KUBECONFIG");
}

Test(kubeconfig, in_cluster_service_account) {
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  struct tn_kube_config c;
  struct tn_error err;
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", fixture("incluster"));
  cr_assert_eq(tn_kube_config_in_cluster(dir, &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.server, "https://10.96.0.1:443");
  char want[PATH_MAX + 16];
  snprintf(want, sizeof want, "%s/token", dir);
  cr_assert_str_eq(c.token_file, want);
  snprintf(want, sizeof want, "%s/ca.crt", dir);
  cr_assert_str_eq(c.ca_file, want);
  cr_assert_str_eq(c.namespace, "tenancy-system");
  tn_kube_config_cleanup(&c);

  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  cr_assert_eq(tn_kube_config_in_cluster(dir, &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.server, "https://[fd00::1]:443");
  tn_kube_config_cleanup(&c);

  /* A missing service-account directory names the file. */
  cr_assert_eq(tn_kube_config_in_cluster("/nonexistent/sa", &c, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "/nonexistent/sa/token"), "%s", err.message);

  unsetenv("KUBERNETES_SERVICE_HOST");
  cr_assert_eq(tn_kube_config_in_cluster(dir, &c, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "KUBERNETES_SERVICE_HOST"), "%s", err.message);
}

Test(kubeconfig, insecure_is_loaded_but_refused_by_the_client) {
  struct tn_kube_config c;
  load_ok("insecure.yaml", NULL, &c);
  cr_assert(c.insecure_skip_tls_verify);
  struct tn_kube *k = NULL;
  struct tn_error err;
  cr_assert_eq(tn_kube_new(&c, NULL, &k, &err), TN_ECONFIG);
  cr_assert_null(k);
  cr_assert(strstr(err.message, "insecure-skip-tls-verify"), "%s", err.message);
  /* With the explicit opt-in the client starts (no request is made). */
  c.allow_insecure = true;
  cr_assert_eq(tn_kube_new(&c, NULL, &k, &err), 0, "%s", err.message);
  tn_kube_free(k);
  tn_kube_config_cleanup(&c);
}

Test(kubeconfig, missing_file) {
  struct tn_kube_config c;
  struct tn_error err;
  cr_assert_eq(tn_kube_config_load("/nonexistent/kubeconfig", NULL, &c, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "/nonexistent/kubeconfig") && strstr(err.message, "No such file"), "%s",
            err.message);
}

/* Each malformed fixture and the words its error must contain. */
static const struct {
  const char *file;
  const char *want[3];
} malformed[] = {
    {"bad-yaml.yaml", {"invalid YAML", "line "}},
    {"empty.yaml", {"empty"}},
    {"not-a-mapping.yaml", {"not a mapping"}},
    {"missing-context.yaml", {"current-context", "\"nope\"", "contexts"}},
    {"no-current-context.yaml", {"current-context: not set"}},
    {"missing-cluster.yaml", {"contexts[x].context.cluster", "\"y\"", "clusters"}},
    {"missing-user.yaml", {"contexts[x].context.user", "\"nobody\"", "users"}},
    {"bad-base64.yaml", {"users[x].user.client-certificate-data", "not valid base64"}},
    {"data-not-pem.yaml", {"users[x].user.client-certificate-data", "not a PEM certificate"}},
    {"no-server.yaml", {"clusters[x].cluster.server", "missing"}},
    {"http-server.yaml", {"clusters[x].cluster.server", "https://"}},
    {"ca-file-and-data.yaml",
     {"clusters[x].cluster", "certificate-authority and certificate-authority-data"}},
    {"cert-without-key.yaml", {"users[x].user", "client-certificate is set without client-key"}},
    {"missing-ca-file.yaml",
     {"clusters[x].cluster.certificate-authority", "does-not-exist.crt", "No such file"}},
    {"exec-user.yaml", {"users[x].user.exec.apiVersion", "missing", "client.authentication.k8s.io/v1"}},
    {"missing-token-file.yaml", {"users[x].user.tokenFile", "no-such-token"}},
    {"alias-bomb.yaml", {"aliases expand to more than 4096 nodes", "alias bomb"}},
};

Test(kubeconfig, malformed_files_name_the_field) {
  for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
    char name[128];
    snprintf(name, sizeof name, "malformed/%s", malformed[i].file);
    struct tn_kube_config c;
    memset(&c, 0x5a, sizeof c); /* garbage in: the loader must not trust it */
    struct tn_error err;
    tn_error_clear(&err);
    int rc = tn_kube_config_load(fixture(name), NULL, &c, &err);
    cr_expect_eq(rc, TN_ECONFIG, "%s: expected TN_ECONFIG, got %d (%s)", name, rc, err.message);
    cr_expect_eq(err.code, TN_ECONFIG, "%s", name);
    cr_expect(strstr(err.message, malformed[i].file) != NULL, "%s: the message names the file: %s", name,
              err.message);
    for (int j = 0; j < 3 && malformed[i].want[j]; j++)
      cr_expect(strstr(err.message, malformed[i].want[j]) != NULL, "%s: expected \"%s\" in: %s", name,
                malformed[i].want[j], err.message);
    cr_expect_null(c.server, "%s: nothing is left behind on failure", name);
    tn_kube_config_cleanup(&c); /* safe after a failure */
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A "billion laughs" kubeconfig (10^9 nodes once its aliases are expanded) fails fast, in
 * bounded memory, with a message that says what to change. Before the expansion budget, the
 * conversion to JSON tried to build all 10^9 strings (minutes, then out of memory). */
Test(kubeconfig, alias_bomb_fails_fast_in_bounded_memory) {
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  double t0 = now_s();
  struct tn_kube_config c;
  struct tn_error err;
  tn_error_clear(&err);
  int rc = tn_kube_config_load(fixture("malformed/alias-bomb.yaml"), NULL, &c, &err);
  double took = now_s() - t0;
  getrusage(RUSAGE_SELF, &ru1);
  cr_assert_eq(rc, TN_ECONFIG, "%d: %s", rc, err.message);
  cr_assert(strstr(err.message, "write the repeated parts out instead of using anchors"), "%s", err.message);
  cr_assert_lt(took, 2.0, "took %.2fs", took);
  cr_assert_lt(ru1.ru_maxrss - ru0.ru_maxrss, 64 * 1024, "max RSS grew by %ld KiB",
               ru1.ru_maxrss - ru0.ru_maxrss);
  tn_kube_config_cleanup(&c);
}

/* Anchors and aliases themselves are fine: a shared cluster entry, a few thousand nodes of
 * expansion (the budget is 4096 nodes beyond the document's own). */
Test(kubeconfig, ordinary_aliases_still_load) {
  const char *text = "apiVersion: v1\n"
                     "kind: Config\n"
                     "current-context: b\n"
                     "base: &cl {server: \"https://10.0.0.1:6443/\", tls-server-name: api}\n"
                     "clusters: [{name: a, cluster: *cl}, {name: b, cluster: *cl}]\n"
                     "contexts: [{name: b, context: {cluster: b, user: u, namespace: ops}}]\n"
                     "users: [{name: u, user: {token: abc}}]\n";
  struct tn_kube_config c;
  struct tn_error err;
  tn_error_clear(&err);
  cr_assert_eq(tn_kube_config_parse(text, strlen(text), "inline", NULL, NULL, &c, &err), 0, "%s",
               err.message);
  cr_assert_str_eq(c.server, "https://10.0.0.1:6443");
  cr_assert_str_eq(c.tls_server_name, "api");
  cr_assert_str_eq(c.token, "abc");
  cr_assert_str_eq(c.namespace, "ops");
  tn_kube_config_cleanup(&c);
  /* 4000 extra nodes: accepted; 5000: refused, naming the budget. */
  char *big = malloc(65536);
  for (int want_ok = 1; want_ok >= 0; want_ok--) {
    int copies = want_ok ? 40 : 50; /* each alias of a 100-string list adds 101 nodes */
    int n = snprintf(big, 65536, "%sl: &l [", text);
    for (int i = 0; i < 100; i++)
      n += snprintf(big + n, 65536 - (size_t)n, "%sx", i ? "," : "");
    n += snprintf(big + n, 65536 - (size_t)n, "]\nm: [");
    for (int i = 0; i < copies; i++)
      n += snprintf(big + n, 65536 - (size_t)n, "%s*l", i ? "," : "");
    n += snprintf(big + n, 65536 - (size_t)n, "]\n");
    tn_error_clear(&err);
    int rc = tn_kube_config_parse(big, (size_t)n, "inline", NULL, NULL, &c, &err);
    if (want_ok)
      cr_assert_eq(rc, 0, "%d aliases: %s", copies, err.message);
    else
      cr_assert(rc == TN_ECONFIG && strstr(err.message, "4096"), "%d aliases: %d %s", copies, rc,
                err.message);
    tn_kube_config_cleanup(&c);
  }
  free(big);
}

/* ---- several files merged (KUBECONFIG=a:b), as kubectl merges them ------------------------- */

static const char merge_a[] = "apiVersion: v1\nkind: Config\n"
                              "current-context: ctx-a\n"
                              "clusters:\n"
                              "- name: shared\n  cluster: {server: \"https://a.example.test:6443\"}\n"
                              "contexts:\n"
                              "- name: ctx-a\n  context: {cluster: shared, user: u-b, namespace: from-a}\n"
                              "users:\n"
                              "- name: u-a\n  user: {token: token-a}\n";
static const char merge_b[] = "apiVersion: v1\nkind: Config\n"
                              "current-context: ctx-b\n"
                              "clusters:\n"
                              "- name: shared\n  cluster: {server: \"https://b.example.test:6443\"}\n"
                              "- name: only-b\n  cluster: {server: \"https://only-b.example.test:6443\"}\n"
                              "contexts:\n"
                              "- name: ctx-a\n  context: {cluster: only-b, user: u-a}\n"
                              "- name: ctx-b\n  context: {cluster: only-b, user: u-a}\n"
                              "users:\n"
                              "- name: u-a\n  user: {token: token-a-from-b}\n"
                              "- name: u-b\n  user: {token: token-b}\n";

static int parse2(const char *a, const char *b, const char *context, struct tn_kube_config *c,
                  struct tn_error *err) {
  struct tn_kube_config_source srcs[2] = {{a, strlen(a), "a.yaml", "/nonexistent"},
                                          {b, strlen(b), "b.yaml", "/nonexistent"}};
  return tn_kube_config_parse_sources(srcs, b ? 2 : 1, context, c, NULL, err);
}

Test(kubeconfig_merge, first_file_wins_per_name_and_for_current_context) {
  struct tn_kube_config c;
  struct tn_error err;
  cr_assert_eq(parse2(merge_a, merge_b, NULL, &c, &err), 0, "%s", err.message);
  /* current-context from a (ctx-a), its definition from a (cluster shared, user u-b), cluster
   * "shared" from a (b's is ignored), user u-b found only in b. */
  cr_assert_str_eq(c.server, "https://a.example.test:6443");
  cr_assert_str_eq(c.token, "token-b");
  cr_assert_str_eq(c.namespace, "from-a");
  tn_kube_config_cleanup(&c);
  /* The other order: b's current-context and b's definitions win. */
  cr_assert_eq(parse2(merge_b, merge_a, NULL, &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.server, "https://only-b.example.test:6443");
  cr_assert_str_eq(c.token, "token-a-from-b");
  tn_kube_config_cleanup(&c);
}

Test(kubeconfig_merge, context_selection_across_files) {
  struct tn_kube_config c;
  struct tn_error err;
  cr_assert_eq(parse2(merge_a, merge_b, "ctx-b", &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.server, "https://only-b.example.test:6443");
  cr_assert_str_eq(c.token, "token-a", "user u-a is a's, the first definition");
  cr_assert_null(c.namespace);
  tn_kube_config_cleanup(&c);
  cr_assert_eq(parse2(merge_a, merge_b, "nope", &c, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "no entry named \"nope\" in contexts") &&
                strstr(err.message, "a.yaml:b.yaml"),
            "%s", err.message);
}

Test(kubeconfig_merge, current_context_from_the_first_file_that_sets_it) {
  static const char none[] = "apiVersion: v1\nkind: Config\nclusters: []\n";
  struct tn_kube_config c;
  struct tn_error err;
  cr_assert_eq(parse2(none, merge_b, NULL, &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.server, "https://only-b.example.test:6443", "ctx-b, set by the second file");
  tn_kube_config_cleanup(&c);
  /* A malformed second file is reported with its own name. */
  static const char bad[] = "apiVersion: v1\nkind: Config\nusers:\n- user: {token: x}\n";
  cr_assert_eq(parse2(merge_a, bad, NULL, &c, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "kubeconfig b.yaml: users[0].name"), "%s", err.message);
}

Test(kubeconfig_merge, kubeconfig_env_merges_every_file_and_skips_missing_ones) {
  char dir[] = "/tmp/tn-kc-merge-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char pa[PATH_MAX], pb[PATH_MAX], list[3 * PATH_MAX];
  snprintf(pa, sizeof pa, "%s/a.yaml", dir);
  snprintf(pb, sizeof pb, "%s/b.yaml", dir);
  FILE *f = fopen(pa, "w");
  fputs(merge_a, f);
  fclose(f);
  f = fopen(pb, "w");
  fputs(merge_b, f);
  fclose(f);
  snprintf(list, sizeof list, "%s/missing.yaml:%s::%s", dir, pa, pb);
  setenv("KUBECONFIG", list, 1);
  struct tn_kube_config c;
  struct tn_error err;
  cr_assert_eq(tn_kube_config_load(NULL, NULL, &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.server, "https://a.example.test:6443");
  cr_assert_str_eq(c.token, "token-b");
  tn_kube_config_cleanup(&c);
  cr_assert_eq(tn_kube_config_load(NULL, "ctx-b", &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.server, "https://only-b.example.test:6443");
  tn_kube_config_cleanup(&c);
  snprintf(list, sizeof list, "%s/missing.yaml", dir);
  setenv("KUBECONFIG", list, 1);
  cr_assert_eq(tn_kube_config_load(NULL, NULL, &c, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "none of these files exists"), "%s", err.message);
  unsetenv("KUBECONFIG");
  unlink(pa);
  unlink(pb);
  rmdir(dir);
}

/* ---- exec credential plugins ------------------------------------------------------------------ */

static const char exec_kc[] = "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
                              "clusters:\n- name: x\n  cluster: {server: \"https://127.0.0.1:6443\"}\n"
                              "contexts:\n- name: x\n  context: {cluster: x, user: x}\n"
                              "users:\n- name: x\n  user:\n    exec:\n%s";

static int parse_exec(const char *exec_yaml, struct tn_kube_exec *e, struct tn_kube_config *c,
                      struct tn_error *err) {
  char text[4096];
  snprintf(text, sizeof text, exec_kc, exec_yaml);
  struct tn_kube_config_source src = {text, strlen(text), "exec.yaml", "/etc/kube"};
  return tn_kube_config_parse_sources(&src, 1, NULL, c, e, err);
}

Test(kubeconfig_exec, parsed_with_args_env_and_a_relative_command) {
  struct tn_kube_exec e;
  struct tn_kube_config c;
  struct tn_error err;
  cr_assert_eq(parse_exec("      apiVersion: client.authentication.k8s.io/v1\n"
                          "      command: ./bin/get-token\n"
                          "      args: [--cluster, prod]\n"
                          "      env: [{name: AWS_PROFILE, value: ops}, {name: EMPTY, value: \"\"}]\n"
                          "      interactiveMode: Never\n"
                          "      provideClusterInfo: true\n"
                          "      installHint: install get-token\n",
                          &e, &c, &err),
               0, "%s", err.message);
  cr_assert_str_eq(e.api_version, "client.authentication.k8s.io/v1");
  cr_assert_str_eq(e.command, "/etc/kube/./bin/get-token", "relative to the kubeconfig's directory");
  cr_assert_eq(e.nargs, 2);
  cr_assert_str_eq(e.args[1], "prod");
  cr_assert_eq(e.nenv, 2);
  cr_assert_str_eq(e.env[0], "AWS_PROFILE=ops");
  cr_assert_str_eq(e.env[1], "EMPTY=");
  cr_assert_str_eq(e.interactive_mode, "Never");
  cr_assert(e.provide_cluster_info);
  cr_assert_str_eq(e.install_hint, "install get-token");
  cr_assert_null(c.token, "parsing never runs the plugin");
  tn_kube_exec_cleanup(&e);
  tn_kube_config_cleanup(&c);
  /* A bare command name stays as is (looked up in PATH); v1beta1 defaults interactiveMode. */
  cr_assert_eq(parse_exec("      apiVersion: client.authentication.k8s.io/v1beta1\n      command: gke-auth\n",
                          &e, &c, &err),
               0, "%s", err.message);
  cr_assert_str_eq(e.command, "gke-auth");
  cr_assert_str_eq(e.interactive_mode, "IfAvailable");
  tn_kube_exec_cleanup(&e);
  tn_kube_config_cleanup(&c);
}

Test(kubeconfig_exec, invalid_plugins_name_the_field) {
  static const struct {
    const char *yaml, *want;
  } bad[] = {
      {"      command: x\n      interactiveMode: Never\n", "users[x].user.exec.apiVersion: missing"},
      {"      apiVersion: client.authentication.k8s.io/v1alpha1\n      command: x\n", "is not supported"},
      {"      apiVersion: client.authentication.k8s.io/v1\n      interactiveMode: Never\n",
       "exec.command: missing"},
      {"      apiVersion: client.authentication.k8s.io/v1\n      command: x\n", "interactiveMode: missing"},
      {"      apiVersion: client.authentication.k8s.io/v1\n      command: x\n      interactiveMode: Always\n",
       "Always is not supported"},
      {"      apiVersion: client.authentication.k8s.io/v1\n      command: x\n      interactiveMode: Never\n"
       "      args: [ok, {a: b}]\n",
       "exec.args[1]: must be a string"},
      {"      apiVersion: client.authentication.k8s.io/v1\n      command: x\n      interactiveMode: Never\n"
       "      env: [{name: \"A=B\", value: x}]\n",
       "exec.env[0].name"},
      {"      apiVersion: client.authentication.k8s.io/v1\n      command: x\n      interactiveMode: Never\n"
       "      env: [{name: A}]\n",
       "exec.env[0].value"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct tn_kube_exec e;
    struct tn_kube_config c;
    struct tn_error err;
    tn_error_clear(&err);
    cr_expect_eq(parse_exec(bad[i].yaml, &e, &c, &err), TN_ECONFIG, "case %zu", i);
    cr_expect(strstr(err.message, bad[i].want) != NULL, "case %zu: expected \"%s\" in: %s", i, bad[i].want,
              err.message);
    cr_expect_null(e.command, "case %zu: nothing left behind", i);
  }
}

#define V1 "client.authentication.k8s.io/v1"

Test(kubeconfig_exec, credential_output_is_parsed_and_validated) {
  struct tn_kube_exec_credential cr;
  struct tn_error err;
  const char *ok = "{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\","
                   "\"status\":{\"token\":\"tok\",\"expirationTimestamp\":\"2030-01-02T03:04:05Z\"}}";
  cr_assert_eq(tn_kube_exec_credential_parse(V1, ok, strlen(ok), &cr, &err), 0, "%s", err.message);
  cr_assert_str_eq(cr.token, "tok");
  cr_assert_eq(cr.expires, (time_t)1893553445);
  tn_kube_exec_credential_cleanup(&cr);
  const char *offset =
      "{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\","
      "\"status\":{\"token\":\"t\",\"expirationTimestamp\":\"2030-01-02T05:04:05.5+02:00\"}}";
  cr_assert_eq(tn_kube_exec_credential_parse(V1, offset, strlen(offset), &cr, &err), 0, "%s", err.message);
  cr_assert_eq(cr.expires, (time_t)1893553445);
  tn_kube_exec_credential_cleanup(&cr);
  /* A certificate and key (PEM, not base64) from the fixtures. */
  char *cert = slurp(fixture("client.crt")), *key = slurp(fixture("client.key"));
  json_t *j = json_pack("{s:s,s:s,s:{s:s,s:s}}", "apiVersion", V1, "kind", "ExecCredential", "status",
                        "clientCertificateData", cert, "clientKeyData", key);
  char *txt = json_dumps(j, 0);
  cr_assert_eq(tn_kube_exec_credential_parse(V1, txt, strlen(txt), &cr, &err), 0, "%s", err.message);
  cr_assert(strstr(cr.cert_data, "BEGIN CERTIFICATE") && cr.key_data && !cr.token && cr.expires == 0);
  tn_kube_exec_credential_cleanup(&cr);
  free(txt);
  json_decref(j);
  free(cert);
  free(key);

  static const struct {
    const char *json, *want;
  } bad[] = {
      {"not json", "not a JSON ExecCredential"},
      {"{\"apiVersion\":\"" V1 "\",\"kind\":\"Other\",\"status\":{\"token\":\"t\"}}",
       "kind must be ExecCredential"},
      {"{\"apiVersion\":\"client.authentication.k8s.io/"
       "v1beta1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t\"}}",
       "is not the configured"},
      {"{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\"}", "status is missing"},
      {"{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":{}}", "neither token nor"},
      {"{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":{\"clientCertificateData\":\"x\"}}",
       "without status.clientKeyData"},
      {"{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":{\"clientCertificateData\":\"x\","
       "\"clientKeyData\":\"y\"}}",
       "not a PEM"},
      {"{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t\","
       "\"expirationTimestamp\":\"tomorrow\"}}",
       "expirationTimestamp is not an RFC 3339 time"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tn_error_clear(&err);
    cr_expect_eq(tn_kube_exec_credential_parse(V1, bad[i].json, strlen(bad[i].json), &cr, &err), TN_ECONFIG,
                 "case %zu", i);
    cr_expect(strstr(err.message, bad[i].want) != NULL, "case %zu: expected \"%s\" in: %s", i, bad[i].want,
              err.message);
    cr_expect_null(cr.token);
  }
}

/* A plugin script: prints a token and counts its runs in a file; KUBERNETES_EXEC_INFO and
 * its env are saved next to it. */
static void write_plugin(const char *dir, const char *expiry) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/plugin.sh", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fprintf(f,
          "#!/bin/sh\n"
          "echo run >> \"%s/runs\"\n"
          "printf '%%s' \"$KUBERNETES_EXEC_INFO\" > \"%s/info\"\n"
          "printf '%%s %%s' \"$PLUGIN_MODE\" \"$1\" > \"%s/args\"\n"
          "read -r line && echo \"stdin was not empty\" >&2 && exit 9\n"
          "printf '{\"apiVersion\":\"" V1
          "\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"exec-token-%%s\"%s}}' "
          "\"$1\"\n",
          dir, dir, dir, expiry);
  fclose(f);
  chmod(path, 0700);
}

static int count_runs(const char *dir) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/runs", dir);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  int n = 0;
  char line[64];
  while (fgets(line, sizeof line, f))
    n++;
  fclose(f);
  return n;
}

Test(kubeconfig_exec, load_runs_the_plugin_once_and_caches_until_expiry) {
  char dir[] = "/tmp/tn-kc-exec-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  write_plugin(dir, "");
  char kc[PATH_MAX];
  snprintf(kc, sizeof kc, "%s/config", dir);
  FILE *f = fopen(kc, "w");
  fprintf(f,
          "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
          "clusters:\n- name: x\n  cluster: {server: \"https://127.0.0.1:6443\", certificate-authority: %s}\n"
          "contexts:\n- name: x\n  context: {cluster: x, user: x}\n"
          "users:\n- name: x\n  user:\n    exec:\n      apiVersion: " V1 "\n      command: ./plugin.sh\n"
          "      args: [one]\n      env: [{name: PLUGIN_MODE, value: test}]\n      interactiveMode: Never\n"
          "      provideClusterInfo: true\n",
          fixture("ca.crt"));
  fclose(f);
  struct tn_kube_config c;
  struct tn_error err;
  cr_assert_eq(tn_kube_config_load(kc, NULL, &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.token, "exec-token-one");
  tn_kube_config_cleanup(&c);
  cr_assert_eq(count_runs(dir), 1);
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/info", dir);
  char *info = slurp(p);
  json_t *j = json_loads(info, 0, NULL);
  cr_assert_not_null(j, "KUBERNETES_EXEC_INFO is JSON: %s", info);
  cr_assert_str_eq(json_string_value(json_object_get(j, "kind")), "ExecCredential");
  cr_assert(json_is_false(json_object_get(json_object_get(j, "spec"), "interactive")));
  json_t *cl = json_object_get(json_object_get(j, "spec"), "cluster");
  cr_assert_str_eq(json_string_value(json_object_get(cl, "server")), "https://127.0.0.1:6443");
  cr_assert(json_string_length(json_object_get(cl, "certificate-authority-data")) > 100);
  json_decref(j);
  free(info);
  snprintf(p, sizeof p, "%s/args", dir);
  char *args = slurp(p);
  cr_assert_str_eq(args, "test one");
  free(args);
  /* No expirationTimestamp: the credential is reused for the life of the process. */
  cr_assert_eq(tn_kube_config_load(kc, NULL, &c, &err), 0, "%s", err.message);
  cr_assert_str_eq(c.token, "exec-token-one");
  tn_kube_config_cleanup(&c);
  cr_assert_eq(count_runs(dir), 1, "the cached credential is used");

  /* An already expired credential is an error; one that expires soon is run again once expired. */
  write_plugin(dir, ",\"expirationTimestamp\":\"2001-01-01T00:00:00Z\"");
  struct tn_kube_exec e = {.api_version = (char *)V1, .command = p, .interactive_mode = (char *)"Never"};
  snprintf(p, sizeof p, "%s/plugin.sh", dir);
  struct tn_kube_config cfg = {.server = (char *)"https://other.example.test"};
  struct tn_kube_exec_credential cred;
  cr_assert_eq(tn_kube_exec_get_credential(&e, &cfg, &cred, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "already expired"), "%s", err.message);
  char soon[128];
  time_t t = time(NULL) + 2;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(soon, sizeof soon, ",\"expirationTimestamp\":\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
  write_plugin(dir, soon);
  int before = count_runs(dir);
  cr_assert_eq(tn_kube_exec_get_credential(&e, &cfg, &cred, &err), 0, "%s", err.message);
  tn_kube_exec_credential_cleanup(&cred);
  cr_assert_eq(tn_kube_exec_get_credential(&e, &cfg, &cred, &err), 0, "%s", err.message);
  tn_kube_exec_credential_cleanup(&cred);
  cr_assert_eq(count_runs(dir), before + 1, "cached while valid");
  sleep(3);
  write_plugin(dir, ",\"expirationTimestamp\":\"2099-01-01T00:00:00Z\"");
  cr_assert_eq(tn_kube_exec_get_credential(&e, &cfg, &cred, &err), 0, "%s", err.message);
  tn_kube_exec_credential_cleanup(&cred);
  cr_assert_eq(count_runs(dir), before + 2, "run again once expired");
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

Test(kubeconfig_exec, failing_or_missing_plugins_are_reported) {
  char dir[] = "/tmp/tn-kc-fail-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/fail.sh", dir);
  FILE *f = fopen(p, "w");
  fputs("#!/bin/sh\necho 'login required' >&2\nexit 3\n", f);
  fclose(f);
  chmod(p, 0700);
  struct tn_kube_exec e = {.api_version = (char *)V1, .command = p, .interactive_mode = (char *)"Never"};
  struct tn_kube_config cfg = {.server = (char *)"https://x.example.test"};
  struct tn_kube_exec_credential cred;
  struct tn_error err;
  cr_assert_eq(tn_kube_exec_get_credential(&e, &cfg, &cred, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "exited with status 3"), "%s", err.message);
  e.command = (char *)"tn-no-such-plugin-anywhere";
  e.install_hint = (char *)"install it from example.test";
  cr_assert_eq(tn_kube_exec_get_credential(&e, &cfg, &cred, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "cannot run it") && strstr(err.message, "install it from example.test"), "%s",
            err.message);
  /* Output that is not an ExecCredential. */
  f = fopen(p, "w");
  fputs("#!/bin/sh\necho hello\n", f);
  fclose(f);
  e.command = p;
  cr_assert_eq(tn_kube_exec_get_credential(&e, &cfg, &cred, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "not a JSON ExecCredential"), "%s", err.message);
  unlink(p);
  rmdir(dir);
}
