/* tn_test.c - helpers shared by the Criterion suites (see tn_test.h). */
#define _GNU_SOURCE
#include "tn_test.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"

const char *tn_test_env(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v)
    cr_assert_fail("%s is not set: run the integration suites through `make test` (hack/test.sh), "
                   "which starts the local cluster and exports it",
                   name);
  return v;
}

static int run_capture(char **out, const char *cmd) {
  struct tn_buf b;
  tn_buf_init(&b, 64u << 20);
  char *full = NULL;
  if (asprintf(&full, "exec 2>&1; %s", cmd) < 0)
    return -1;
  FILE *p = popen(full, "r");
  free(full);
  if (!p) {
    tn_buf_cleanup(&b);
    return -1;
  }
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
    (void)tn_buf_append(&b, chunk, n);
  int st = pclose(p);
  if (out)
    *out = tn_buf_take(&b);
  tn_buf_cleanup(&b);
  if (st == -1)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int tn_test_sh(char **out, const char *fmt, ...) {
  char *cmd = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&cmd, fmt, ap);
  va_end(ap);
  if (n < 0)
    return -1;
  int rc = run_capture(out, cmd);
  free(cmd);
  return rc;
}

char *tn_test_output(const char *fmt, ...) {
  char *cmd = NULL, *out = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&cmd, fmt, ap);
  va_end(ap);
  cr_assert_geq(n, 0, "out of memory formatting a command");
  int rc = run_capture(&out, cmd);
  free(cmd);
  cr_assert(rc >= 0 && out != NULL, "a command could not run");
  size_t len = strlen(out);
  while (len && out[len - 1] == '\n')
    out[--len] = '\0';
  return out;
}

double tn_test_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int tn_test_sh_until(double timeout_s, char **out, const char *fmt, ...) {
  char *cmd = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&cmd, fmt, ap);
  va_end(ap);
  if (n < 0)
    return -1;
  double end = tn_test_now() + timeout_s;
  int rc;
  for (;;) {
    char *o = NULL;
    rc = run_capture(&o, cmd);
    if (rc == 0 || tn_test_now() >= end) {
      if (out)
        *out = o;
      else
        free(o);
      break;
    }
    free(o);
    usleep(200 * 1000);
  }
  free(cmd);
  return rc;
}

void tn_test_unique_name(char *dst, size_t n, const char *prefix) {
  static unsigned counter;
  snprintf(dst, n, "%s-%ld-%u", prefix, (long)getpid(), ++counter);
}

int tn_test_pg_ctl(const char *action) {
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); "
                      "if [ \"$(id -u)\" = 0 ]; then as='runuser -u postgres --'; else as=''; fi; "
                      "$as \"$pgbin/pg_ctl\" -D \"$TENANCY_PG_DATA\" -l \"$TENANCY_PG_DATA/../postgres.log\" "
                      "-m fast -w -t 60 %s",
                      action);
  if (rc)
    cr_log_error("pg_ctl %s: %s", action, out);
  free(out);
  return rc;
}
