/* test_kubeconfig.c - unit tests of client configuration loading: kubeconfig variants (files vs
 * embedded data, relative paths, tokens, named and current contexts), in-cluster, and malformed
 * files that must be refused with a message naming the faulty field. No network. */
#include <criterion/criterion.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
