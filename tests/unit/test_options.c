/* test_options.c - the operator's flags and Go-style durations. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/options.h"

static char *no_env(const char *name) { return NULL; }
static char *dsn_env(const char *name) {
  return strcmp(name, "TENANCY_PG_DSN") == 0 ? "postgresql://from-env" : NULL;
}

#define PARSE(o, err, env, ...)                                                                              \
  ({                                                                                                         \
    char *argv_[] = {"tenancy-operator", __VA_ARGS__, NULL};                                                 \
    tn_options_parse((int)(sizeof argv_ / sizeof argv_[0]) - 1, argv_, env, o, err);                         \
  })

Test(options, defaults_match_the_contract) {
  struct tn_options o;
  struct tn_error err = {0};
  char *argv[] = {"tenancy-operator", NULL};
  cr_assert_eq(tn_options_parse(1, argv, dsn_env, &o, &err), 0, "%s", err.message);
  cr_assert_str_eq(o.metrics_addr, ":8080");
  cr_assert_str_eq(o.probe_addr, ":8081");
  cr_assert_eq(o.leader_elect, false);
  cr_assert_eq(o.workers, 16);
  cr_assert_float_eq(o.kube_qps, 0, 1e-9);
  cr_assert_float_eq(o.sync_period_s, 36000, 1e-9);
  cr_assert_eq(o.log_level, TN_LOG_INFO);
  cr_assert_str_eq(o.pg_dsn, "postgresql://from-env");
  cr_assert_null(o.kubeconfig);
  tn_options_cleanup(&o);
}

Test(options, every_flag_in_both_forms) {
  struct tn_options o;
  struct tn_error err = {0};
  int rc =
      PARSE(&o, &err, no_env, "--kubeconfig", "/tmp/kc", "--metrics-bind-address=127.0.0.1:0",
            "--health-probe-bind-address", "0", "--leader-elect", "--leader-election-namespace=ops",
            "--workers=8", "--sync-period", "1m30s", "--log-level=debug", "--log-format=text",
            "--pg-dsn=host=x", "--kube-api-qps=0", "--kube-api-burst=7", "--graceful-shutdown-timeout=250ms");
  cr_assert_eq(rc, 0, "%s", err.message);
  cr_assert_str_eq(o.kubeconfig, "/tmp/kc");
  cr_assert_str_eq(o.metrics_addr, "127.0.0.1:0");
  cr_assert_str_eq(o.probe_addr, "0");
  cr_assert(o.leader_elect);
  cr_assert_str_eq(o.leader_namespace, "ops");
  cr_assert_eq(o.workers, 8);
  cr_assert_float_eq(o.sync_period_s, 90, 1e-9);
  cr_assert_eq(o.log_level, TN_LOG_DEBUG);
  cr_assert_eq(o.log_format, TN_LOG_TEXT);
  cr_assert_str_eq(o.pg_dsn, "host=x");
  cr_assert_float_eq(o.kube_qps, 0, 1e-9);
  cr_assert_eq(o.kube_burst, 7);
  cr_assert_float_eq(o.shutdown_timeout_s, 0.25, 1e-9);
  tn_options_cleanup(&o);

  rc = PARSE(&o, &err, no_env, "--leader-elect=false");
  cr_assert_eq(rc, 0);
  cr_assert_not(o.leader_elect);
  tn_options_cleanup(&o);
}

/* A refused value is never echoed (values may be secrets, and messages land in logs): the
 * message names the flag and what it accepts. */
Test(options, bad_values_name_the_flag_never_the_value) {
  struct {
    const char *arg, *expect, *value;
  } cases[] = {
      {"--workers=0", "--workers: invalid value (not shown); expected a whole number from 1 to 1024", "=0"},
      {"--workers=lots", "--workers: invalid value", "lots"},
      {"--sync-period=10", "--sync-period: invalid value (not shown); expected a duration", "=10"},
      {"--sync-period=-1h", "--sync-period: invalid value", "-1h"},
      {"--log-level=loud", "--log-level: invalid value (not shown); expected debug, info, warn or error",
       "loud"},
      {"--log-format=xml", "--log-format: invalid value (not shown); expected json or text", "xml"},
      {"--metrics-bind-address=8080", "--metrics-bind-address: invalid value (not shown); expected HOST:PORT",
       "8080"},
      {"--metrics-bind-address=:99999", "--metrics-bind-address: invalid value", "99999"},
      {"--leader-elect=maybe", "--leader-elect: invalid value (not shown); expected true or false", "maybe"},
      {"--kube-api-qps=s3cr3t", "--kube-api-qps: invalid value (not shown); expected a number >= 0",
       "s3cr3t"},
      {"--webhook-service=hunter2", "--webhook-service: invalid value (not shown); expected NAMESPACE/NAME",
       "hunter2"},
      {"--no-such-flag", "unknown flag --no-such-flag", NULL},
      /* A mistyped secret-bearing flag: only its name comes back. */
      {"--pg-dns=postgresql://app:hunter2@db/app", "unknown flag --pg-dns (see --help)", "hunter2"},
      {"stray", "unexpected argument #1", "stray"},
      {"postgresql://app:hunter2@db/app", "unexpected argument #1", "hunter2"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tn_options o;
    struct tn_error err = {0};
    int rc = PARSE(&o, &err, no_env, (char *)cases[i].arg);
    cr_assert_eq(rc, TN_ECONFIG, "%s was accepted", cases[i].arg);
    cr_assert(strstr(err.message, cases[i].expect) != NULL, "%s: message '%s' lacks '%s'", cases[i].arg,
              err.message, cases[i].expect);
    if (cases[i].value)
      cr_assert(strstr(err.message, cases[i].value) == NULL, "%s: message '%s' echoes the value",
                cases[i].arg, err.message);
    tn_options_cleanup(&o);
  }
  struct tn_options o;
  struct tn_error err = {0};
  char *argv[] = {"tenancy-operator", "--workers", NULL};
  cr_assert_eq(tn_options_parse(2, argv, no_env, &o, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "--workers needs a value") != NULL, "%s", err.message);
  tn_options_cleanup(&o);
}

/* ---- --pg-dsn-file ---------------------------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/tn-options-XXXXXX");
  cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  cr_assert_eq(system(cmd), 0);
}

/* Writes content (len bytes) into tmpdir/name with mode; returns the path (static). */
static const char *write_file(const char *name, const char *content, size_t len, mode_t mode) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(content, 1, len, f), len);
  fclose(f);
  cr_assert_eq(chmod(path, mode), 0);
  return path;
}

Test(options, pg_dsn_file_is_read_without_its_line_end, .init = make_tmpdir, .fini = remove_tmpdir) {
  static const char dsn[] = "postgresql://tenancy:s3cr3t@db.example:5432/tenancy?sslmode=verify-full";
  const char *files[] = {"plain", "newline", "crlf"};
  const char *suffixes[] = {"", "\n", "\r\n"};
  for (int i = 0; i < 3; i++) {
    char content[256];
    snprintf(content, sizeof content, "%s%s", dsn, suffixes[i]);
    const char *path = write_file(files[i], content, strlen(content), 0400);
    char flag[160];
    snprintf(flag, sizeof flag, "--pg-dsn-file=%s", path);
    struct tn_options o;
    struct tn_error err = {0};
    /* The file wins over $TENANCY_PG_DSN. */
    cr_assert_eq(PARSE(&o, &err, dsn_env, flag), 0, "%s", err.message);
    cr_assert_str_eq(o.pg_dsn, dsn, "%s: %s", files[i], o.pg_dsn);
    cr_assert_str_eq(o.pg_dsn_file, path);
    tn_options_cleanup(&o);
  }
  /* --pg-dsn-file PATH (two words) too. */
  const char *path = write_file("two", dsn, strlen(dsn), 0600);
  struct tn_options o;
  struct tn_error err = {0};
  cr_assert_eq(PARSE(&o, &err, no_env, "--pg-dsn-file", (char *)path), 0, "%s", err.message);
  cr_assert_str_eq(o.pg_dsn, dsn);
  tn_options_cleanup(&o);
}

Test(options, pg_dsn_file_errors_name_the_file_never_its_content, .init = make_tmpdir,
     .fini = remove_tmpdir) {
  struct {
    const char *name, *content;
    size_t len;
    mode_t mode;
    const char *expect;
  } cases[] = {
      {"empty", "", 0, 0600, "is empty"},
      {"only-newline", "\n", 1, 0600, "is empty"},
      {"two-lines", "host=a password=hunter2\nhost=b\n", 31, 0600, "must hold one line"},
      {"nul", "host=a\0password=hunter2", 23, 0600, "must hold one line"},
      {"unreadable", "password=hunter2", 16, 0000, "Permission denied"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *path = write_file(cases[i].name, cases[i].content, cases[i].len, cases[i].mode);
    char flag[160];
    snprintf(flag, sizeof flag, "--pg-dsn-file=%s", path);
    struct tn_options o;
    struct tn_error err = {0};
    /* Root reads any file: the unreadable case runs as nobody (the directory is root's 0700). */
    bool drop = cases[i].mode == 0000 && geteuid() == 0;
    if (drop)
      cr_assert_eq(seteuid(65534), 0);
    int rc = PARSE(&o, &err, no_env, flag);
    if (drop)
      cr_assert_eq(seteuid(0), 0);
    cr_assert_eq(rc, TN_ECONFIG, "%s was accepted", cases[i].name);
    cr_assert(strstr(err.message, "--pg-dsn-file: ") == err.message, "%s", err.message);
    cr_assert(strstr(err.message, path) != NULL, "%s: '%s' does not name the file", cases[i].name,
              err.message);
    cr_assert(strstr(err.message, cases[i].expect) != NULL, "%s: '%s' lacks '%s'", cases[i].name, err.message,
              cases[i].expect);
    cr_assert(strstr(err.message, "hunter2") == NULL, "%s", err.message);
    cr_assert_null(o.pg_dsn);
    tn_options_cleanup(&o);
  }
  struct tn_options o;
  struct tn_error err = {0};
  char missing[160], big[160];
  snprintf(missing, sizeof missing, "--pg-dsn-file=%s/missing", tmpdir);
  cr_assert_eq(PARSE(&o, &err, no_env, missing), TN_ECONFIG);
  cr_assert(strstr(err.message, "cannot open") && strstr(err.message, "No such file"), "%s", err.message);
  tn_options_cleanup(&o);
  /* A directory, and a file larger than any DSN. */
  snprintf(big, sizeof big, "--pg-dsn-file=%s", tmpdir);
  cr_assert_eq(PARSE(&o, &err, no_env, big), TN_ECONFIG);
  cr_assert(strstr(err.message, "not a regular file"), "%s", err.message);
  tn_options_cleanup(&o);
  char *huge = malloc(TN_PG_DSN_FILE_MAX + 10);
  memset(huge, 'x', TN_PG_DSN_FILE_MAX + 10);
  snprintf(big, sizeof big, "--pg-dsn-file=%s", write_file("huge", huge, TN_PG_DSN_FILE_MAX + 10, 0600));
  free(huge);
  cr_assert_eq(PARSE(&o, &err, no_env, big), TN_ECONFIG);
  cr_assert(strstr(err.message, "larger than 8192 bytes"), "%s", err.message);
  tn_options_cleanup(&o);
}

Test(options, pg_dsn_and_pg_dsn_file_together_are_refused, .init = make_tmpdir, .fini = remove_tmpdir) {
  const char *path = write_file("dsn", "host=a", 6, 0600);
  char flag[160];
  snprintf(flag, sizeof flag, "--pg-dsn-file=%s", path);
  struct tn_options o;
  struct tn_error err = {0};
  cr_assert_eq(PARSE(&o, &err, no_env, "--pg-dsn=host=b", flag), TN_ECONFIG);
  cr_assert(strstr(err.message, "--pg-dsn and --pg-dsn-file are both set"), "%s", err.message);
  tn_options_cleanup(&o);
}

Test(options, durations) {
  struct {
    const char *s;
    double v;
  } ok[] = {{"0", 0},         {"10h", 36000},  {"1m30s", 90}, {"0.5s", 0.5}, {"250ms", 0.25},
            {"1h2m3s", 3723}, {"100us", 1e-4}, {"7ns", 7e-9}, {"1.5h", 5400}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    double v = -1;
    cr_assert_eq(tn_parse_duration(ok[i].s, &v), 0, "%s refused", ok[i].s);
    cr_assert(fabs(v - ok[i].v) < 1e-12, "%s = %g, want %g", ok[i].s, v, ok[i].v);
  }
  const char *bad[] = {"", "10", "h", "5x", "-1s", "1s-", " 1s", "1 s", "nan", "infs", NULL};
  for (size_t i = 0; bad[i]; i++) {
    double v;
    cr_assert_eq(tn_parse_duration(bad[i], &v), -EINVAL, "'%s' accepted", bad[i]);
  }
}

static char *pod_env(const char *name) { return strcmp(name, "POD_NAMESPACE") == 0 ? "team-ops" : NULL; }

Test(options, wave2_flags_webhook_files_keys_namespace_and_lease_timings) {
  struct tn_options o;
  struct tn_error err = {0};
  int rc = PARSE(&o, &err, no_env, "--webhook-cert-file=/certs/tls.crt", "--webhook-key-file",
                 "/certs/tls.key", "--webhook-manage-configuration=false", "--keys-namespace=ops",
                 "--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s",
                 "--leader-elect-retry-period=500ms", "--webhook-cert-secret=webhook-tls");
  cr_assert_eq(rc, 0, "%s", err.message);
  cr_assert_str_eq(o.webhook_cert_file, "/certs/tls.crt");
  cr_assert_str_eq(o.webhook_key_file, "/certs/tls.key");
  cr_assert_eq(o.webhook_manage_configuration, false);
  cr_assert_str_eq(o.keys_namespace, "ops");
  cr_assert_float_eq(o.leader_lease_duration_s, 3, 1e-9);
  cr_assert_float_eq(o.leader_renew_deadline_s, 2, 1e-9);
  cr_assert_float_eq(o.leader_retry_period_s, 0.5, 1e-9);
  cr_assert_str_eq(o.webhook_cert_secret, "webhook-tls", "a bare Secret name means the operator's namespace");
  tn_options_cleanup(&o);

  cr_assert_eq(PARSE(&o, &err, no_env, "--leader-elect=true"), 0, "%s", err.message);
  cr_assert_eq(o.webhook_manage_configuration, true, "the webhook configuration is managed by default");
  cr_assert_null(o.keys_namespace);
  cr_assert_null(o.webhook_failure_policy, "NULL: the admission default, Fail");
  cr_assert_eq(o.webhook_timeout_seconds, 5);
  tn_options_cleanup(&o);
}

Test(options, webhook_failure_policy_and_timeout) {
  struct tn_options o;
  struct tn_error err = {0};
  cr_assert_eq(PARSE(&o, &err, no_env, "--webhook-failure-policy=Ignore", "--webhook-timeout-seconds", "10"),
               0, "%s", err.message);
  cr_assert_str_eq(o.webhook_failure_policy, "Ignore");
  cr_assert_eq(o.webhook_timeout_seconds, 10);
  tn_options_cleanup(&o);
  cr_assert_eq(PARSE(&o, &err, no_env, "--webhook-failure-policy=ignore"), TN_ECONFIG);
  cr_assert(strstr(err.message, "Fail or Ignore"), "%s", err.message);
  tn_options_cleanup(&o);
  static char bad[][32] = {"--webhook-timeout-seconds=0", "--webhook-timeout-seconds=31",
                           "--webhook-timeout-seconds=5s"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(PARSE(&o, &err, no_env, bad[i]), TN_ECONFIG, "%s accepted", bad[i]);
    cr_assert(strstr(err.message, "1 to 30"), "%s", err.message);
    tn_options_cleanup(&o);
  }
}

Test(options, webhook_files_go_together_and_durations_must_be_positive) {
  struct tn_options o;
  struct tn_error err = {0};
  cr_assert_eq(PARSE(&o, &err, no_env, "--webhook-cert-file=/c"), TN_ECONFIG);
  cr_assert(strstr(err.message, "--webhook-key-file"), "%s", err.message);
  tn_options_cleanup(&o);
  cr_assert_eq(PARSE(&o, &err, no_env, "--leader-elect-lease-duration=0"), TN_ECONFIG);
  cr_assert(strstr(err.message, "positive duration"), "%s", err.message);
  tn_options_cleanup(&o);
  cr_assert_eq(PARSE(&o, &err, no_env, "--webhook-manage-configuration=maybe"), TN_ECONFIG);
  cr_assert(!strstr(err.message, "maybe"), "a flag's value is never echoed: %s", err.message);
  tn_options_cleanup(&o);
}

Test(options, operator_namespace_from_env_file_or_default) {
  char *ns = tn_operator_namespace(pod_env, "/nonexistent");
  cr_assert_str_eq(ns, "team-ops");
  free(ns);
  char path[] = "/tmp/tn-ns-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, "tenants-a\n", 10), 10);
  close(fd);
  ns = tn_operator_namespace(no_env, path);
  cr_assert_str_eq(ns, "tenants-a");
  free(ns);
  unlink(path);
  ns = tn_operator_namespace(no_env, "/nonexistent");
  cr_assert_str_eq(ns, "tenancy-system", "outside a cluster");
  free(ns);
}

Test(options, api_workers_from_1_to_8) {
  struct tn_options o;
  struct tn_error err = {0};
  cr_assert_eq(PARSE(&o, &err, dsn_env, "--leader-elect=false"), 0, "%s", err.message);
  cr_assert_eq(o.api_workers, 0, "unset: the operator picks the CPUs it may use");
  tn_options_cleanup(&o);
  cr_assert_eq(PARSE(&o, &err, dsn_env, "--api-workers=3"), 0, "%s", err.message);
  cr_assert_eq(o.api_workers, 3);
  tn_options_cleanup(&o);
  const char *bad[] = {"--api-workers=0", "--api-workers=9", "--api-workers=two", "--api-workers="};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(&err, 0, sizeof err);
    char *argv[] = {"tenancy-operator", (char *)bad[i], NULL};
    cr_assert_neq(tn_options_parse(2, argv, dsn_env, &o, &err), 0, "%s is refused", bad[i]);
    cr_assert_not_null(strstr(err.message, "--api-workers: invalid value"), "%s: %s", bad[i], err.message);
    cr_assert_not_null(strstr(err.message, "1 to 8"), "%s: %s", bad[i], err.message);
    tn_options_cleanup(&o);
  }
}

/* --cluster-name (issue 14): the lifecycle events' source; a DNS label, default "local". */
Test(options, cluster_name) {
  struct tn_options o;
  struct tn_error err = {0};
  cr_assert_eq(PARSE(&o, &err, no_env, "--leader-elect=false"), 0, "%s", err.message);
  cr_assert_str_eq(o.cluster_name, "local");
  tn_options_cleanup(&o);
  cr_assert_eq(PARSE(&o, &err, no_env, "--cluster-name=prod-eu-1"), 0, "%s", err.message);
  cr_assert_str_eq(o.cluster_name, "prod-eu-1");
  tn_options_cleanup(&o);
  static const char *const bad[] = {"--cluster-name=Prod", "--cluster-name=a.b", "--cluster-name=-x",
                                    "--cluster-name="};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *argv[] = {"tenancy-operator", (char *)bad[i], NULL};
    err = (struct tn_error){0};
    cr_assert_eq(tn_options_parse(2, argv, no_env, &o, &err), TN_ECONFIG, "%s accepted", bad[i]);
    cr_assert(strstr(err.message, "--cluster-name") && strstr(err.message, "DNS label"), "%s", err.message);
    tn_options_cleanup(&o);
  }
}
