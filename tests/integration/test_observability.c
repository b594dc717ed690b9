/* test_observability.c - the operator's /metrics as Prometheus and Grafana see it, from the real
 * binary against the real API server and PostgreSQL: the live exposition parses with Prometheus'
 * own parser, the tenancy metrics agree with the Tenants in the API server, database operations and
 * audit-trail failures are counted when the servers really fail, every metric that a dashboard
 * panel or an alert expression references exists in the live exposition, and --metrics-secure
 * serves HTTPS only to callers that a TokenReview authenticates and a SubjectAccessReview allows. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tn_cluster.h"
#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;
static char region[64], dead_region[64], lease[64];

static void apply_region(const char *name, const char *server, const char *admin_secret) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\",\"dedicated\",\"hybrid\"],"
      "\"databaseServers\":[{\"name\":\"%s\",\"host\":\"127.0.0.1\",\"port\":'\"$TENANCY_PG_PORT\"',"
      "\"sslMode\":\"verify-full\",\"caSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"obs-pg-ca\"},"
      "\"serves\":[\"shared\",\"dedicated\",\"hybrid\"],"
      "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"%s\"}}]}}' | kubectl apply -f -",
      name, server, admin_secret);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

/* The operator with everything that exports metrics on: leader election, the webhook, the audit
 * trail (TENANCY_PG_DSN from the stack's environment), per-tenant series; plus extra flags. */
static void start_operator_with(bool webhook, const char *const *extra) {
  char addr[64], id[96];
  snprintf(addr, sizeof addr, "--webhook-bind-address=%s", webhook ? "127.0.0.1:0" : "0");
  if (webhook)
    snprintf(addr, sizeof addr, "--webhook-bind-address=127.0.0.1:%d", tn_test_free_port());
  snprintf(id, sizeof id, "--leader-election-id=%s", lease);
  const char *args[16] = {"--leader-elect", "--leader-election-namespace=default", id, addr,
                          "--metrics-per-tenant"};
  size_t n = 5;
  for (size_t i = 0; extra && extra[i] && n < 15; i++)
    args[n++] = extra[i];
  args[n] = NULL;
  tn_test_operator_start(&op, args);
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void start_operator(const char *const *extra) { start_operator_with(true, extra); }

static void setup(void) {
  tn_test_install_api();
  tn_test_unique_name(region, sizeof region, "obs-region");
  tn_test_unique_name(dead_region, sizeof dead_region, "obs-dead");
  tn_test_unique_name(lease, sizeof lease, "obs-leader");
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "kubectl create namespace tenancy-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "kubectl -n tenancy-system create secret generic obs-pg-admin --from-literal=uri=\"$TENANCY_PG_DSN\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "kubectl -n tenancy-system create secret generic obs-pg-ca --from-file=ca.crt=\"$TENANCY_CA_FILE\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      /* the admin connection goes where the admin URI says: port 1 on loopback refuses it */
      "kubectl -n tenancy-system create secret generic obs-pg-admin-dead "
      "--from-literal=uri='host=127.0.0.1 port=1 dbname=postgres user=postgres connect_timeout=3' "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      /* data keys for every tenant while this suite runs (KeysReady, tenancy_tenant_key_*) */
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":"
      "{\"name\":\"obs-keys\"},\"spec\":{\"encryption\":{\"requireTenantKeys\":true}}}' | kubectl apply -f "
      "-");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  apply_region(region, "pg-local", "obs-pg-admin");
  apply_region(dead_region, "pg-dead", "obs-pg-admin-dead");
}

static void teardown(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
  tn_test_sh(NULL, "kubectl delete region %s %s --wait=false --ignore-not-found", region, dead_region);
  tn_test_sh(NULL, "kubectl -n default delete lease %s --ignore-not-found", lease);
  tn_test_sh(NULL, "kubectl delete tenancypolicy obs-keys --ignore-not-found");
}

TestSuite(observability, .init = setup, .fini = teardown, .timeout = 300);

static void apply_tenant(const char *t, const char *state, const char *in_region) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"%s\",\"plan\":\"standard\",\"isolation\":\"shared\",\"environments\":[\"prod\"],"
      "\"residency\":{\"allowedRegions\":[\"%s\"]}}}' | kubectl apply -f -",
      t, state, in_region);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

#define wait_condition(t, type, status, timeout) tn_test_wait_condition(&op, t, type, status, timeout)

static char *scrape(void) {
  char *body = NULL;
  int status = tn_test_http_get(op.metrics_port, "/metrics", &body);
  cr_assert_eq(status, 200, "GET /metrics: %d", status);
  return body;
}

/* The value of the sample line that is exactly `series` (name and labels as exposed), or NAN. */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p;) {
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  return NAN;
}

/* Waits until sample(series) satisfies v >= min; returns the last value. */
static double wait_sample(const char *series, double min, double timeout) {
  double v = NAN, deadline = tn_test_now() + timeout;
  do {
    char *t = scrape();
    v = sample(t, series);
    free(t);
    if (v >= min)
      return v;
    usleep(250 * 1000);
  } while (tn_test_now() < deadline);
  return v;
}

Test(observability, live_metrics_parse_and_agree_with_the_api_server) {
  char t[64];
  tn_test_unique_name(t, sizeof t, "tn-obs");
  start_operator(NULL);
  apply_tenant(t, "Active", region);
  wait_condition(t, "DatabaseReady", "True", 90);
  wait_condition(t, "KeysReady", "True", 60);
  wait_condition(t, "Ready", "True", 60);

  char *text = scrape();
  /* Prometheus' own parser (expfmt) accepts the whole exposition. */
  char path[] = "/tmp/test-observability-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  char *out = NULL;
  int rc = tn_test_sh(&out, "'%s/hack/promcheck.sh' < '%s'", tn_test_env("TENANCY_ROOT"), path);
  unlink(path);
  cr_assert_eq(rc, 0, "promcheck refused the live exposition: %s", out);
  free(out);

  /* per tenant (--metrics-per-tenant) */
  char series[512];
  snprintf(series, sizeof series,
           "tenancy_tenant_info{tenant=\"%s\",state=\"Active\",plan=\"standard\",region=\"%s\",isolation="
           "\"shared\"}",
           t, region);
  cr_assert_eq(sample(text, series), 1.0, "%s missing", series);
  snprintf(series, sizeof series,
           "tenancy_tenant_condition{tenant=\"%s\",type=\"Ready\",status=\"True\",reason=\"Converged\"}", t);
  cr_assert_eq(sample(text, series), 1.0, "%s missing", series);
  snprintf(series, sizeof series, "tenancy_tenant_key_rotated_timestamp_seconds{tenant=\"%s\"}", t);
  double rotated = sample(text, series), now = (double)time(NULL);
  cr_assert(rotated > now - 600 && rotated <= now + 5, "%s = %f, now %f", series, rotated, now);
  snprintf(series, sizeof series, "tenancy_tenant_breakglass_grants_active{tenant=\"%s\"}", t);
  cr_assert_eq(sample(text, series), 0.0);
  /* Events the recorder dropped (its queue full under load): exposed, none here. */
  cr_assert_eq(sample(text, "tenancy_events_dropped_total"), 0.0, "tenancy_events_dropped_total missing");

  /* the bounded counts equal what the API server holds (other suites' tenants included) */
  free(text);
  for (int attempt = 0;; attempt++) {
    char *active =
        tn_test_output("kubectl get tenants -o jsonpath='{range .items[?(@.status.state==\"Active\")]}"
                       "{.metadata.name}{\"\\n\"}{end}' | grep -c . || true");
    text = scrape();
    double want = strtod(active, NULL), got = sample(text, "tenancy_tenants{state=\"Active\"}");
    free(active);
    if (got == want && got >= 1)
      break;
    cr_assert(attempt < 20, "tenancy_tenants{state=\"Active\"} is %f, the API server has %f", got, want);
    free(text);
    usleep(500 * 1000);
  }
  cr_assert_geq(
      sample(text, "tenancy_tenant_conditions{type=\"Ready\",status=\"True\",reason=\"Converged\"}"), 1);
  cr_assert_geq(sample(text, "tenancy_tenant_keys"), 1);
  cr_assert_geq(sample(text, "tenancy_tenant_key_age_seconds_max"), 0);
  /* grants in force: as many as the API server's tenants show (other suites may leave a tenant
   * with a grant behind, e.g. one whose deletion waits for its Region) */
  for (int attempt = 0;; attempt++) {
    char *grants =
        tn_test_output("kubectl get tenants -o json | python3 -c 'import json,sys,datetime; "
                       "now=datetime.datetime.now(datetime.timezone.utc); "
                       "print(sum(1 for t in json.load(sys.stdin)[\"items\"] "
                       "for g in (t.get(\"status\") or {}).get(\"breakGlass\") or [] "
                       "if g.get(\"state\")==\"Active\" and (not g.get(\"expiresAt\") or "
                       "datetime.datetime.fromisoformat(g[\"expiresAt\"].replace(\"Z\",\"+00:00\"))>now)))'");
    double want = strtod(grants, NULL), got = sample(text, "tenancy_breakglass_grants_active");
    free(grants);
    if (got == want)
      break;
    cr_assert(attempt < 20, "tenancy_breakglass_grants_active is %f, the API server's tenants show %f", got,
              want);
    free(text);
    text = scrape();
    usleep(500 * 1000);
  }
  cr_assert_geq(sample(text, "tenancy_database_operations_total{server=\"pg-local\",operation=\"converge\","
                             "result=\"success\"}"),
                1);
  /* the audit trail is on, answered, and recorded the Draft -> Active transition */
  cr_assert_eq(sample(text, "tenancy_audit_trail_enabled"), 1);
  cr_assert_eq(sample(text, "tenancy_audit_trail_up"), 1);
  cr_assert_geq(sample(text, "tenancy_audit_appends_total"), 2);
  cr_assert_eq(sample(text, "tenancy_audit_append_failures_total"), 0);
  snprintf(series, sizeof series, "leader_election_master_status{name=\"%s\"}", lease);
  cr_assert_eq(sample(text, series), 1, "%s: this replica leads", series);
  /* the process collector, with the meaning client_golang gives these names */
  double start = sample(text, "process_start_time_seconds");
  cr_assert(start > now - 600 && start <= now + 1, "process_start_time_seconds %f, now %f", start, now);
  double fds = sample(text, "process_open_fds"), max_fds = sample(text, "process_max_fds");
  cr_assert(fds >= 5 && fds < max_fds, "open fds %f, max %f", fds, max_fds);
  cr_assert_gt(sample(text, "process_cpu_seconds_total"), 0);
  double rss = sample(text, "process_resident_memory_bytes"),
         vm = sample(text, "process_virtual_memory_bytes");
  cr_assert(rss > 1e6 && vm > rss, "rss %f vm %f", rss, vm);
  cr_assert_gt(sample(text, "tenancy_webhook_certificate_expiry_timestamp_seconds"), now + 86400);
  free(text);
}

/* ---- every metric a dashboard or an alert references is exported -------------------------------- */

/* Whether `name` is a sample name of the exposition: a family (its # TYPE line), or name =
 * F_bucket / F_sum / F_count of a histogram family F. A counter called x_count is matched as itself,
 * never by stripping the suffix. */
static bool exported(const char *text, const char *name) {
  char want[256];
  snprintf(want, sizeof want, "\n# TYPE %s ", name);
  if (strstr(text, want) || strncmp(text, want + 1, strlen(want) - 1) == 0)
    return true;
  static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
  size_t n = strlen(name);
  for (size_t i = 0; i < 3; i++) {
    size_t s = strlen(suffixes[i]);
    if (n > s && strcmp(name + n - s, suffixes[i]) == 0) {
      snprintf(want, sizeof want, "\n# TYPE %.*s histogram\n", (int)(n - s), name);
      if (strstr(text, want))
        return true;
    }
  }
  return false;
}

Test(observability, every_metric_of_the_dashboards_and_alerts_is_in_the_live_exposition) {
  char t[64];
  tn_test_unique_name(t, sizeof t, "tn-obsd");
  start_operator(NULL);
  /* a converged tenant, so that every family has samples (per-tenant ones, keys, database) */
  apply_tenant(t, "Active", region);
  wait_condition(t, "DatabaseReady", "True", 90);
  wait_condition(t, "KeysReady", "True", 60);
  wait_condition(t, "Ready", "True", 60);
  /* and a WebhookSubscription (paused: nothing is sent), so that the delivery series exist */
  char sub[64], *out = NULL;
  tn_test_unique_name(sub, sizeof sub, "obs-sub");
  int rc =
      tn_test_sh(&out,
                 "kubectl -n tenancy-system create secret generic %s "
                 "--from-literal=key=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw && printf '%%s' "
                 "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"WebhookSubscription\",\"metadata\":"
                 "{\"name\":\"%s\"},\"spec\":{\"url\":\"https://127.0.0.1:9/hook\",\"paused\":true,"
                 "\"secretRef\":{\"name\":\"%s\",\"key\":\"key\"}}}' | kubectl apply -f -",
                 sub, sub, sub);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char series[160];
  snprintf(series, sizeof series, "tenancy_webhook_dead_letters{subscription=\"%s\"}", sub);
  cr_assert_eq(wait_sample(series, 0, 60), 0, "no delivery series for subscription %s", sub);
  char *text = scrape();
  (void)tn_test_sh(NULL, "kubectl delete whsub %s --wait=false; kubectl -n tenancy-system delete secret %s",
                   sub, sub);

  /* the checker itself: histogram suffixes only on histograms */
  cr_assert(exported(text, "controller_runtime_reconcile_time_seconds_bucket"));
  cr_assert(exported(text, "controller_runtime_reconcile_time_seconds_count"));
  cr_assert(exported(text, "process_cpu_seconds_total"));
  cr_assert(!exported(text, "process_cpu_seconds_total_count"), "a counter has no _count series");
  cr_assert(!exported(text, "tenancy_no_such_metric"));

  const char *root = tn_test_env("TENANCY_ROOT");
  char *names =
      tn_test_output("python3 '%s/hack/promql-metrics.py' '%s'/charts/tenancy-operator/dashboards/*.json "
                     "'%s/manifests/monitoring/prometheus-rules.yaml'",
                     root, root, root);
  char *where =
      tn_test_output("python3 '%s/hack/promql-metrics.py' -v '%s'/charts/tenancy-operator/dashboards/*.json "
                     "'%s/manifests/monitoring/prometheus-rules.yaml'",
                     root, root, root);
  int checked = 0, missing = 0;
  char missing_list[4096] = "";
  for (char *save = NULL, *name = strtok_r(names, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
    checked++;
    if (!exported(text, name)) {
      missing++;
      size_t used = strlen(missing_list);
      snprintf(missing_list + used, sizeof missing_list - used, " %s", name);
    }
  }
  /* the extraction found what the dashboards obviously use (a broken extractor must not pass) */
  cr_assert_geq(checked, 40, "only %d metric names found in the dashboards and rules:\n%s", checked, where);
  cr_assert_eq(missing, 0, "referenced but not exported:%s\nwhere used:\n%s", missing_list, where);
  /* and the chart's PrometheusRule renders the very rules checked here (hack/alerts-test.sh compares
   * the chart with manifests/monitoring/prometheus-rules.yaml) */
  free(names);
  free(where);
  free(text);
}

/* ---- failures are counted where they happen ------------------------------------------------------ */

Test(observability, an_unreachable_database_server_is_counted_by_server_and_result) {
  char t[64], series[256];
  tn_test_unique_name(t, sizeof t, "tn-obsx");
  start_operator(NULL);
  apply_tenant(t, "Active", dead_region);
  wait_condition(t, "DatabaseReady", "False", 90);
  double v = wait_sample("tenancy_database_operations_total{server=\"pg-dead\",operation=\"converge\","
                         "result=\"unreachable\"}",
                         1, 60);
  cr_assert_geq(v, 1, "no unreachable operation counted for pg-dead (%f)", v);
  char *text = scrape();
  cr_assert(isnan(sample(text, "tenancy_database_operations_total{server=\"pg-dead\",operation=\"converge\","
                               "result=\"success\"}")),
            "a success on a server nobody listens on");
  cr_assert_geq(sample(text, "tenancy_tenant_conditions{type=\"DatabaseReady\",status=\"False\","
                             "reason=\"DatabaseUnavailable\"}"),
                1);
  snprintf(
      series, sizeof series,
      "tenancy_tenant_condition{tenant=\"%s\",type=\"Ready\",status=\"False\",reason=\"TransitionFailed\"}",
      t);
  cr_assert_eq(sample(text, series), 1, "%s", series);
  free(text);
}

Test(observability, audit_trail_failures_are_counted_and_up_drops) {
  char t[64];
  tn_test_unique_name(t, sizeof t, "tn-obsa");
  start_operator(NULL);
  apply_tenant(t, "Draft", region);
  wait_condition(t, "Ready", "True", 60);
  cr_assert_eq(wait_sample("tenancy_audit_trail_up", 1, 30), 1);
  cr_assert_eq(tn_test_pg_ctl("stop"), 0);
  apply_tenant(t, "Active", region); /* Draft -> Active must be audited first: the append fails */
  double failures = wait_sample("tenancy_audit_append_failures_total", 1, 60);
  char *text = scrape();
  int restarted = tn_test_pg_ctl("start");
  cr_assert_geq(failures, 1, "no append failure counted while PostgreSQL was down");
  cr_assert_eq(sample(text, "tenancy_audit_trail_up"), 0, "the trail still reported up");
  cr_assert_eq(sample(text, "tenancy_audit_trail_enabled"), 1);
  free(text);
  cr_assert_eq(restarted, 0, "PostgreSQL did not restart");
  /* after recovery the transition is appended and up returns to 1 */
  wait_condition(t, "Ready", "True", 120);
  cr_assert_eq(wait_sample("tenancy_audit_trail_up", 1, 60), 1);
}

/* ---- --metrics-secure ------------------------------------------------------------------------------ */

/* curl's HTTP status for GET https://127.0.0.1:port/metrics with the bearer token in token_file
 * ("" for none); the body goes to body_file. */
static int secure_get(int port, const char *token_expr, const char *body_file) {
  char *code = tn_test_output("curl -sk -o '%s' -w '%%{http_code}' %s https://127.0.0.1:%d/metrics",
                              body_file, token_expr, port);
  int status = atoi(code);
  free(code);
  return status;
}

Test(observability, metrics_secure_serves_https_only_to_callers_allowed_get_metrics) {
  char sa_ok[64], sa_no[64], body[] = "/tmp/test-observability-body-XXXXXX";
  tn_test_unique_name(sa_ok, sizeof sa_ok, "obs-scraper");
  tn_test_unique_name(sa_no, sizeof sa_no, "obs-nobody");
  int bfd = mkstemp(body);
  cr_assert_geq(bfd, 0);
  close(bfd);
  /* the chart's ClusterRole tenancy-operator-metrics-reader, bound to one ServiceAccount only */
  const char *root = tn_test_env("TENANCY_ROOT");
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "helm=$('%s/hack/build-helm.sh' 2>/dev/null | tail -n 1) && \"$helm\" template obs '%s/charts/"
      "tenancy-operator' -n tenancy-system --set metrics.secure=true --show-only "
      "templates/metrics-auth-rbac.yaml | kubectl apply -f - >/dev/null && "
      "kubectl -n default create serviceaccount %s >/dev/null && "
      "kubectl -n default create serviceaccount %s >/dev/null && "
      "kubectl create clusterrolebinding %s --clusterrole=tenancy-operator-metrics-reader "
      "--serviceaccount=default:%s >/dev/null",
      root, root, sa_ok, sa_no, sa_ok, sa_ok);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* Without the webhook: with two TLS listeners in one process (webhook and secure metrics),
   * libwebsockets 4.1.6 leaves one vhost's CA store allocated at exit (~700 KB, once, not growing;
   * reproduced with two plain tn_httpserver TLS servers), which LeakSanitizer reports in the
   * operator's log. Known issue, reported; this test keeps the operator's exit clean. */
  start_operator_with(false, (const char *const[]){"--metrics-secure", NULL});
  char tok_ok[160], tok_no[160];
  snprintf(tok_ok, sizeof tok_ok, "-H \"Authorization: Bearer $(kubectl -n default create token %s)\"",
           sa_ok);
  snprintf(tok_no, sizeof tok_no, "-H \"Authorization: Bearer $(kubectl -n default create token %s)\"",
           sa_no);

  /* allowed: the exposition, with the tenancy metrics */
  int status = secure_get(op.metrics_port, tok_ok, body);
  char *text = tn_test_output("cat '%s'", body);
  cr_assert_eq(status, 200, "allowed scraper got %d: %s", status, text);
  cr_assert_not_null(strstr(text, "# TYPE tenancy_tenants gauge"), "%s", text);
  cr_assert_not_null(strstr(text, "# TYPE process_cpu_seconds_total counter"));
  free(text);
  /* authenticated but not bound: 403; no token, a forged one: 401 */
  cr_assert_eq(secure_get(op.metrics_port, tok_no, body), 403);
  cr_assert_eq(secure_get(op.metrics_port, "", body), 401);
  cr_assert_eq(secure_get(op.metrics_port, "-H 'Authorization: Bearer forged.token.value'", body), 401);
  /* an admin client certificate is no bearer token: still 401 */
  cr_assert_eq(secure_get(op.metrics_port,
                          "--cert \"$(dirname \"$TENANCY_CA_FILE\")/admin.crt\" --key "
                          "\"$(dirname \"$TENANCY_CA_FILE\")/admin.key\" 2>/dev/null",
                          body),
               401);
  /* plain HTTP is not served */
  char *plain = NULL;
  tn_test_sh(&plain, "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/metrics", op.metrics_port);
  cr_assert(strcmp(plain, "200") != 0, "plain HTTP answered 200");
  free(plain);
  /* the self-signed certificate names the address scrapers dial */
  rc = tn_test_sh(&out,
                  "echo | openssl s_client -connect 127.0.0.1:%d 2>/dev/null | openssl x509 -noout -ext "
                  "subjectAltName | grep -q 'IP Address:127.0.0.1'",
                  op.metrics_port);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* the token never reaches the log */
  char *leak = tn_test_output("grep -c 'eyJ' '%s' || true", op.log_path);
  cr_assert_str_eq(leak, "0", "a token appears in the operator's log");
  free(leak);

  unlink(body);
  tn_test_sh(NULL, "kubectl delete clusterrolebinding %s --ignore-not-found", sa_ok);
  tn_test_sh(NULL, "kubectl -n default delete serviceaccount %s %s --ignore-not-found", sa_ok, sa_no);
}

/* ---- the chart's dashboards and rules, as the API server and the Grafana sidecar take them ---------- */

Test(observability, chart_dashboards_are_sidecar_configmaps_the_api_server_accepts) {
  const char *root = tn_test_env("TENANCY_ROOT");
  char *out = NULL;
  /* three ConfigMaps labelled for the sidecar, each holding one dashboard whose JSON parses, with
   * distinct uids; accepted by the real API server (server-side dry run) */
  int rc = tn_test_sh(
      &out,
      "set -e; helm=$('%s/hack/build-helm.sh' 2>/dev/null | tail -n 1); "
      "\"$helm\" template obs '%s/charts/tenancy-operator' -n default --set dashboards.enabled=true "
      "--show-only templates/dashboards.yaml > /tmp/obs-dash-$$.yaml; "
      "python3 -c 'import json,sys,yaml; docs=[d for d in yaml.safe_load_all(open(sys.argv[1])) if d]; "
      "assert len(docs)==3, len(docs); "
      "assert all(d[\"kind\"]==\"ConfigMap\" and d[\"metadata\"][\"labels\"][\"grafana_dashboard\"]==\"1\" "
      "for d in docs); "
      "uids=[json.loads(v)[\"uid\"] for d in docs for v in d[\"data\"].values()]; "
      "assert len(set(uids))==3, uids; print(\" \".join(sorted(uids)))' /tmp/obs-dash-$$.yaml; "
      "kubectl apply --dry-run=server -f /tmp/obs-dash-$$.yaml >/dev/null; rm -f /tmp/obs-dash-$$.yaml",
      root, root);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "tenancy-operator-health tenancy-tenant tenancy-tenants\n");
  free(out);
  /* off by default: neither dashboards nor rules are rendered */
  rc = tn_test_sh(
      &out,
      "helm=$('%s/hack/build-helm.sh' 2>/dev/null | tail -n 1); \"$helm\" template obs "
      "'%s/charts/tenancy-operator' -n default | grep -cE 'grafana_dashboard|kind: PrometheusRule' || true",
      root, root);
  cr_assert_str_eq(out, "0\n", "rendered without being asked: %s", out);
  free(out);
}

Test(observability, chart_metrics_secure_rbac_lets_the_operator_review_tokens_and_nobody_else) {
  const char *root = tn_test_env("TENANCY_ROOT");
  char *out = NULL;
  /* the chart's objects for metrics.secure, with its operator-scope ValidatingAdmissionPolicy in force */
  int rc = tn_test_sh(&out,
                      "helm=$('%s/hack/build-helm.sh' 2>/dev/null | tail -n 1) && \"$helm\" template obsrbac "
                      "'%s/charts/tenancy-operator' -n tenancy-system --set metrics.secure=true --show-only "
                      "templates/operator-scope-policy.yaml --show-only templates/metrics-auth-rbac.yaml > "
                      "/tmp/obs-rbac-%d.yaml && kubectl apply -f /tmp/obs-rbac-%d.yaml >/dev/null",
                      root, root, (int)getpid(), (int)getpid());
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  const char *sa = "system:serviceaccount:tenancy-system:obsrbac-tenancy-operator";
  const char *sar =
      "{\"apiVersion\":\"authorization.k8s.io/v1\",\"kind\":\"SubjectAccessReview\",\"spec\":{\"user\":"
      "\"bob\",\"nonResourceAttributes\":{\"path\":\"/metrics\",\"verb\":\"get\"}}}";
  const char *tr =
      "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{\"token\":\"a.b.c\"}}";
  /* the operator's ServiceAccount may ask both questions (RBAC and the admission policy let it) */
  rc = tn_test_sh_until(
      20, &out, "echo '%s' | kubectl create --validate=false --as=%s -f - -o jsonpath='{.status}'", tr, sa);
  cr_assert_eq(rc, 0, "TokenReview as the operator: %s", out);
  cr_assert_not_null(strstr(out, "invalid bearer token"), "%s", out);
  free(out);
  rc = tn_test_sh(&out,
                  "echo '%s' | kubectl create --validate=false --as=%s -f - -o jsonpath='{.status.allowed}'",
                  sar, sa);
  cr_assert_eq(rc, 0, "SubjectAccessReview as the operator: %s", out);
  cr_assert_str_eq(out, "false", "bob is bound to nothing");
  free(out);
  /* any other ServiceAccount may not */
  rc = tn_test_sh(
      &out, "echo '%s' | kubectl create --validate=false --as=system:serviceaccount:default:other -f -", sar);
  cr_assert_neq(rc, 0, "an unbound ServiceAccount created a SubjectAccessReview: %s", out);
  cr_assert_not_null(strstr(out, "forbidden"), "%s", out);
  free(out);
  tn_test_sh(
      NULL,
      "kubectl delete -f /tmp/obs-rbac-%d.yaml --ignore-not-found >/dev/null; rm -f /tmp/obs-rbac-%d.yaml",
      (int)getpid(), (int)getpid());
}
