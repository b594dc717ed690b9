/* test_options.c - the operator's flags and Go-style durations. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
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

Test(options, bad_values_name_the_flag) {
  struct {
    const char *arg, *expect;
  } cases[] = {
      {"--workers=0", "--workers=0: expected a whole number from 1 to 1024"},
      {"--workers=lots", "--workers=lots"},
      {"--sync-period=10", "--sync-period=10: expected a duration"},
      {"--sync-period=-1h", "--sync-period=-1h"},
      {"--log-level=loud", "--log-level=loud: expected debug, info, warn or error"},
      {"--log-format=xml", "--log-format=xml: expected json or text"},
      {"--metrics-bind-address=8080", "--metrics-bind-address=8080: expected HOST:PORT"},
      {"--metrics-bind-address=:99999", "--metrics-bind-address=:99999"},
      {"--leader-elect=maybe", "--leader-elect=maybe: expected true or false"},
      {"--no-such-flag", "unknown flag --no-such-flag"},
      {"stray", "unexpected argument stray"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tn_options o;
    struct tn_error err = {0};
    int rc = PARSE(&o, &err, no_env, (char *)cases[i].arg);
    cr_assert_eq(rc, TN_ECONFIG, "%s was accepted", cases[i].arg);
    cr_assert(strstr(err.message, cases[i].expect) != NULL, "%s: message '%s' lacks '%s'", cases[i].arg,
              err.message, cases[i].expect);
    tn_options_cleanup(&o);
  }
  struct tn_options o;
  struct tn_error err = {0};
  char *argv[] = {"tenancy-operator", "--workers", NULL};
  cr_assert_eq(tn_options_parse(2, argv, no_env, &o, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "--workers needs a value") != NULL, "%s", err.message);
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
  tn_options_cleanup(&o);
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
