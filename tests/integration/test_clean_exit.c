#define _GNU_SOURCE
/* test_clean_exit.c - the operator with every TLS listener it can open at once (the admission
 * webhook, the read API and --metrics-secure) starts against the real API server, serves, and
 * exits cleanly on SIGTERM under AddressSanitizer with leak detection on: exit status 0 and no
 * sanitizer report in its log.
 *
 * With libwebsockets serving two TLS listeners in one process (the webhook and the secure
 * metrics listener), libwebsockets 4.1.6 left one vhost's CA store allocated at exit (~700 KB),
 * which LeakSanitizer reported and which made the process exit 23: this suite failed on that. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

static void setup(void) {
  tn_test_install_api();
  /* leak detection on whatever the runner set: this suite is about the exit */
  const char *prev = getenv("ASAN_OPTIONS");
  char opts[512];
  snprintf(opts, sizeof opts, "%s%sdetect_leaks=1", prev ? prev : "", prev && *prev ? ":" : "");
  setenv("ASAN_OPTIONS", opts, 1);
}

TestSuite(clean_exit, .init = setup, .timeout = 180);

/* The sanitizer reports in the operator's log ("" when none), malloc'd. */
static char *sanitizer_reports(const struct tn_test_operator *op) {
  return tn_test_output(
      "grep -E 'LeakSanitizer|AddressSanitizer|runtime error:|SUMMARY:' '%s' | head -n 20 || true",
      op->log_path);
}

Test(clean_exit, webhook_read_api_and_secure_metrics_exit_without_a_leak) {
  struct tn_test_operator op;
  char webhook[64], api[64], dir[] = "/tmp/test-clean-exit-XXXXXX", certs[96];
  cr_assert_not_null(mkdtemp(dir));
  snprintf(certs, sizeof certs, "--webhook-cert-dir=%s", dir); /* the read API serves them too */
  snprintf(webhook, sizeof webhook, "--webhook-bind-address=127.0.0.1:%d", tn_test_free_port());
  snprintf(api, sizeof api, "--api-bind-address=127.0.0.1:%d", tn_test_free_port());
  tn_test_operator_start_ready(&op, (const char *const[]){"--leader-elect=false", webhook,
                                                          "--webhook-manage-configuration=false", certs, api,
                                                          "--metrics-secure", NULL});
  /* every listener serves TLS: a caller without a token is refused by the metrics listener,
   * the webhook and the read API finish their handshakes */
  char *code = tn_test_output("curl -sk -o /dev/null -w '%%{http_code}' https://127.0.0.1:%d/metrics",
                              op.metrics_port);
  cr_assert_str_eq(code, "401", "GET /metrics without a token: %s", code);
  free(code);
  char *out = NULL;
  int rc =
      tn_test_sh(&out, "echo | openssl s_client -connect 127.0.0.1:%s 2>&1 | grep -q 'BEGIN CERTIFICATE'",
                 strchr(webhook, ':') + 1);
  cr_assert_eq(rc, 0, "no TLS handshake with the webhook: %s", out);
  free(out);
  rc = tn_test_sh(&out, "echo | openssl s_client -connect 127.0.0.1:%s 2>&1 | grep -q 'BEGIN CERTIFICATE'",
                  strchr(api, ':') + 1);
  cr_assert_eq(rc, 0, "no TLS handshake with the read API: %s", out);
  free(out);

  int status = tn_test_operator_stop(&op, SIGTERM, 60);
  char *found = sanitizer_reports(&op), reports[2048];
  snprintf(reports, sizeof reports, "%s", found);
  free(found); /* before an assertion ends the test */
  if (status != 0 || reports[0])
    tn_test_operator_dump_log(&op);
  cr_assert_str_eq(reports, "", "sanitizer reports at exit:\n%s", reports);
  cr_assert_eq(status, 0, "the operator exited %d on SIGTERM", status);
  tn_test_sh(NULL, "rm -rf '%s'", dir);
}
