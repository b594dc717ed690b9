/* tn_operator.c - run the real operator binary in tests (see tn_operator.h). */
#define _GNU_SOURCE
#include "tn_operator.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tn_test.h"
#include "util/buf.h"

/* A port just closed may be handed out again at once, so a process that asks for several (an
 * operator's metrics, probes, webhook and read API) could get one twice: never return one of the
 * last 64 this process got. */
int tn_test_free_port(void) {
  static int recent[64];
  static unsigned n_recent;
  for (;;) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert(bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(s, (struct sockaddr *)&a, &len) == 0);
    int port = ntohs(a.sin_port);
    close(s);
    bool seen = false;
    for (unsigned i = 0; i < n_recent && i < 64; i++)
      seen = seen || recent[i] == port;
    if (seen)
      continue;
    recent[n_recent++ % 64] = port;
    return port;
  }
}

void tn_test_operator_start(struct tn_test_operator *op, const char *const *extra_args) {
  tn_test_operator_start_as(op, (uid_t)-1, (gid_t)-1, extra_args);
}

void tn_test_operator_start_as(struct tn_test_operator *op, uid_t uid, gid_t gid,
                               const char *const *extra_args) {
  const char *bin = tn_test_env("TENANCY_OPERATOR_BIN");
  memset(op, 0, sizeof *op);
  op->metrics_port = tn_test_free_port();
  op->probe_port = tn_test_free_port();
  const char *logdir = getenv("TENANCY_TEST_LOG_DIR") ? getenv("TENANCY_TEST_LOG_DIR") : "/tmp";
  static int seq;
  snprintf(op->log_path, sizeof op->log_path, "%s/operator-%ld-%d.log", logdir, (long)getpid(), ++seq);
  char maddr[64], paddr[64];
  snprintf(maddr, sizeof maddr, "--metrics-bind-address=127.0.0.1:%d", op->metrics_port);
  snprintf(paddr, sizeof paddr, "--health-probe-bind-address=127.0.0.1:%d", op->probe_port);
  const char *argv[32] = {bin, maddr, paddr, "--log-level=debug"};
  int n = 4;
  for (int i = 0; extra_args && extra_args[i] && n < 31; i++)
    argv[n++] = extra_args[i];
  argv[n] = NULL;
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    /* A failed assertion ends the test process: the operator must not outlive it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(op->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    if (uid != (uid_t)-1) {
      if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
        _exit(126);
      prctl(PR_SET_PDEATHSIG, SIGKILL); /* a change of identity clears it */
    }
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  op->pid = pid;
}

void tn_test_operator_start_ready(struct tn_test_operator *op, const char *const *extra_args) {
  tn_test_operator_start(op, extra_args);
  if (!tn_test_operator_wait_ready(op, 60)) {
    tn_test_operator_dump_log(op);
    cr_assert_fail("the operator never became ready");
  }
}

int tn_test_operator_stop(struct tn_test_operator *op, int sig, double timeout_s) {
  if (op->pid <= 0)
    return -1;
  kill(op->pid, sig);
  double end = tn_test_now() + timeout_s;
  int st = 0;
  for (;;) {
    pid_t r = waitpid(op->pid, &st, WNOHANG);
    if (r == op->pid)
      break;
    if (tn_test_now() > end) {
      kill(op->pid, SIGKILL);
      waitpid(op->pid, &st, 0);
      op->pid = 0;
      return -1;
    }
    usleep(20 * 1000);
  }
  op->pid = 0;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static size_t collect(char *p, size_t size, size_t n, void *ud) {
  return tn_buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

int tn_test_http_get(int port, const char *path, char **body) {
  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  struct tn_buf b;
  tn_buf_init(&b, 64u << 20);
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  long code = 0;
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  if (body)
    *body = tn_buf_take(&b);
  tn_buf_cleanup(&b);
  return (int)code;
}

double tn_test_metric_sum(int port, const char *prefix) {
  char *body = NULL;
  if (tn_test_http_get(port, "/metrics", &body) != 200) {
    free(body);
    return 0;
  }
  double sum = 0;
  size_t plen = strlen(prefix);
  for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n")) {
    if (line[0] == '#' || strncmp(line, prefix, plen) != 0)
      continue;
    char *sp = strrchr(line, ' ');
    if (sp)
      sum += strtod(sp + 1, NULL);
  }
  free(body);
  return sum;
}

bool tn_test_operator_wait_ready(struct tn_test_operator *op, double timeout_s) {
  double end = tn_test_now() + timeout_s;
  while (tn_test_now() < end) {
    if (tn_test_http_get(op->probe_port, "/readyz", NULL) == 200)
      return true;
    if (op->pid > 0 && waitpid(op->pid, NULL, WNOHANG) == op->pid) {
      op->pid = 0;
      return false;
    }
    usleep(100 * 1000);
  }
  return false;
}

void tn_test_operator_dump_log(struct tn_test_operator *op) {
  char *out = NULL;
  tn_test_sh(&out, "tail -n 40 '%s'", op->log_path);
  cr_log_error("operator log tail (%s):\n%s", op->log_path, out);
  free(out);
}

void tn_test_install_api(void) {
  const char *root = tn_test_env("TENANCY_ROOT");
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "kubectl apply --server-side --force-conflicts --field-manager=tenancy-tests -f '%s/crds/' >/dev/null "
      "&& kubectl wait --for=condition=Established --timeout=60s -f '%s/crds/' >/dev/null "
      "&& kubectl apply -f '%s/manifests/deploy/00-namespace.yaml' -f "
      "'%s/manifests/deploy/20-tenant-roles.yaml' -f '%s/manifests/deploy/45-actor-policy.yaml' "
      ">/dev/null "
      "&& kubectl apply -f '%s/manifests/samples/00-plans.yaml' -f '%s/manifests/samples/01-regions.yaml' "
      ">/dev/null",
      root, root, root, root, root, root, root);
  cr_assert_eq(rc, 0, "installing the API: %s", out);
  free(out);
  /* Established is not served: right after the CRDs are (re)applied the API server can still
   * answer a create with "Resource kind ... Kind=Tenant not found" for a moment. Wait until a
   * server-side dry-run create of a Tenant goes through storage and admission. */
  out = NULL;
  rc = tn_test_sh_until(
      60, &out,
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":"
      "\"install-probe\"},\"spec\":{\"state\":\"Draft\",\"plan\":\"starter\",\"isolation\":\"shared\","
      "\"residency\":{\"allowedRegions\":[\"eu-west-1\"]},\"environments\":[\"prod\"]}}' | "
      "kubectl create --dry-run=server -f - >/dev/null");
  cr_assert_eq(rc, 0, "Tenants are not served 60 s after their CRD was applied: %s", out);
  free(out);
}
