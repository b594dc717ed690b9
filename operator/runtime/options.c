/* options.c - the tenancy-operator command line (see options.h). */
#include "runtime/options.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tenancy/cloudevents.h" /* --cluster-name */
#include "util/wipe.h"

char *tn_service_account_namespace(const char *sa_ns_file) {
  FILE *f = fopen(sa_ns_file ? sa_ns_file : TN_SA_NAMESPACE_FILE, "re");
  if (!f)
    return NULL;
  char ns[254] = {0};
  char *ok = fgets(ns, sizeof ns, f);
  fclose(f);
  ns[strcspn(ns, "\r\n")] = '\0';
  return ok && *ns ? strdup(ns) : NULL;
}

char *tn_operator_namespace(char *(*env)(const char *), const char *sa_ns_file) {
  const char *pod = env ? env("POD_NAMESPACE") : NULL;
  if (pod && *pod)
    return strdup(pod);
  char *ns = tn_service_account_namespace(sa_ns_file);
  return ns ? ns : strdup("tenancy-system");
}

int tn_parse_duration(const char *s, double *out_s) {
  static const struct {
    const char *unit;
    double seconds;
  } units[] = {{"ns", 1e-9}, {"us", 1e-6}, {"µs", 1e-6}, {"ms", 1e-3}, {"s", 1}, {"m", 60}, {"h", 3600}};
  if (!s || !*s)
    return -EINVAL;
  if (strcmp(s, "0") == 0) {
    *out_s = 0;
    return 0;
  }
  double total = 0;
  const char *p = s;
  while (*p) {
    char *end = NULL;
    if (!(*p >= '0' && *p <= '9') && *p != '.')
      return -EINVAL;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v) || v < 0)
      return -EINVAL;
    p = end;
    size_t best = 0;
    double mult = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
      size_t n = strlen(units[i].unit);
      /* longest match first: "ms" before "m" */
      if (strncmp(p, units[i].unit, n) == 0 && n > best) {
        best = n;
        mult = units[i].seconds;
      }
    }
    if (!best)
      return -EINVAL;
    p += best;
    total += v * mult;
  }
  *out_s = total;
  return 0;
}

static int parse_bool(const char *v, bool *out) {
  if (!v || !strcasecmp(v, "true") || !strcmp(v, "1")) {
    *out = true;
    return 0;
  }
  if (!strcasecmp(v, "false") || !strcmp(v, "0")) {
    *out = false;
    return 0;
  }
  return -EINVAL;
}

static int valid_bind_address(const char *v) {
  if (strcmp(v, "0") == 0)
    return 1;
  const char *colon = strrchr(v, ':');
  if (!colon || !colon[1])
    return 0;
  char *end = NULL;
  long port = strtol(colon + 1, &end, 10);
  return *end == '\0' && port >= 0 && port <= 65535;
}

/* "a,b-1,c": DNS labels separated by commas, none empty. */
static int valid_namespace_list(const char *v) {
  size_t len = 0;
  for (const char *p = v;; p++) {
    if (*p == ',' || !*p) {
      if (len == 0 || len > 63 || p[-1] == '-')
        return 0;
      if (!*p)
        return 1;
      len = 0;
    } else if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || (*p == '-' && len > 0)) {
      len++;
    } else {
      return 0;
    }
  }
}

static int set_str(char **dst, const char *v) {
  char *c = strdup(v);
  if (!c)
    return -ENOMEM;
  tn_wipe_free_str(*dst); /* a DSN replaced by a later flag leaves no copy behind */
  *dst = c;
  return 0;
}

enum {
  OPT_KUBECONFIG = 256,
  OPT_METRICS,
  OPT_PROBE,
  OPT_LEADER_ELECT,
  OPT_LEADER_NS,
  OPT_LEADER_ID,
  OPT_WORKERS,
  OPT_SYNC,
  OPT_LOG_LEVEL,
  OPT_LOG_FORMAT,
  OPT_PG_DSN,
  OPT_QPS,
  OPT_BURST,
  OPT_SHUTDOWN,
  OPT_ROTATION,
  OPT_KEYS_ROTATION,
  OPT_WEBHOOK_ADDR,
  OPT_WEBHOOK_HOST,
  OPT_WEBHOOK_SERVICE,
  OPT_WEBHOOK_SECRET,
  OPT_WEBHOOK_DIR,
  OPT_WEBHOOK_CERT_FILE,
  OPT_WEBHOOK_KEY_FILE,
  OPT_WEBHOOK_MANAGE_CONFIGURATION,
  OPT_WEBHOOK_FAILURE_POLICY,
  OPT_WEBHOOK_TIMEOUT_SECONDS,
  OPT_KEYS_NAMESPACE,
  OPT_LEASE_DURATION,
  OPT_RENEW_DEADLINE,
  OPT_RETRY_PERIOD,
  OPT_REGION_SECRET_NS,
  OPT_PG_DSN_FILE,
  OPT_API_ADDR,
  OPT_API_CERT_FILE,
  OPT_API_WORKERS,
  OPT_API_KEY_FILE,
  OPT_METRICS_PER_TENANT,
  OPT_METRICS_SECURE,
  OPT_METRICS_CERT_FILE,
  OPT_METRICS_KEY_FILE,
  OPT_CLUSTER_NAME,
  OPT_HELP,
  OPT_VERSION
};

static const struct option long_opts[] = {
    {"kubeconfig", required_argument, NULL, OPT_KUBECONFIG},
    {"metrics-bind-address", required_argument, NULL, OPT_METRICS},
    {"health-probe-bind-address", required_argument, NULL, OPT_PROBE},
    {"leader-elect", optional_argument, NULL, OPT_LEADER_ELECT},
    {"leader-election-namespace", required_argument, NULL, OPT_LEADER_NS},
    {"leader-election-id", required_argument, NULL, OPT_LEADER_ID},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"sync-period", required_argument, NULL, OPT_SYNC},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"pg-dsn", required_argument, NULL, OPT_PG_DSN},
    {"kube-api-qps", required_argument, NULL, OPT_QPS},
    {"kube-api-burst", required_argument, NULL, OPT_BURST},
    {"graceful-shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN},
    {"credentials-rotation-period", required_argument, NULL, OPT_ROTATION},
    {"keys-rotation-period", required_argument, NULL, OPT_KEYS_ROTATION},
    {"webhook-bind-address", required_argument, NULL, OPT_WEBHOOK_ADDR},
    {"webhook-host", required_argument, NULL, OPT_WEBHOOK_HOST},
    {"webhook-service", required_argument, NULL, OPT_WEBHOOK_SERVICE},
    {"webhook-cert-secret", required_argument, NULL, OPT_WEBHOOK_SECRET},
    {"webhook-cert-dir", required_argument, NULL, OPT_WEBHOOK_DIR},
    {"webhook-cert-file", required_argument, NULL, OPT_WEBHOOK_CERT_FILE},
    {"webhook-key-file", required_argument, NULL, OPT_WEBHOOK_KEY_FILE},
    {"webhook-manage-configuration", optional_argument, NULL, OPT_WEBHOOK_MANAGE_CONFIGURATION},
    {"webhook-failure-policy", required_argument, NULL, OPT_WEBHOOK_FAILURE_POLICY},
    {"webhook-timeout-seconds", required_argument, NULL, OPT_WEBHOOK_TIMEOUT_SECONDS},
    {"keys-namespace", required_argument, NULL, OPT_KEYS_NAMESPACE},
    {"leader-elect-lease-duration", required_argument, NULL, OPT_LEASE_DURATION},
    {"leader-elect-renew-deadline", required_argument, NULL, OPT_RENEW_DEADLINE},
    {"leader-elect-retry-period", required_argument, NULL, OPT_RETRY_PERIOD},
    {"region-secret-namespaces", required_argument, NULL, OPT_REGION_SECRET_NS},
    {"pg-dsn-file", required_argument, NULL, OPT_PG_DSN_FILE},
    {"api-bind-address", required_argument, NULL, OPT_API_ADDR},
    {"api-cert-file", required_argument, NULL, OPT_API_CERT_FILE},
    {"api-key-file", required_argument, NULL, OPT_API_KEY_FILE},
    {"metrics-per-tenant", optional_argument, NULL, OPT_METRICS_PER_TENANT},
    {"metrics-secure", optional_argument, NULL, OPT_METRICS_SECURE},
    {"metrics-cert-file", required_argument, NULL, OPT_METRICS_CERT_FILE},
    {"metrics-key-file", required_argument, NULL, OPT_METRICS_KEY_FILE},
    {"api-workers", required_argument, NULL, OPT_API_WORKERS},
    {"cluster-name", required_argument, NULL, OPT_CLUSTER_NAME},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0}};

void tn_options_usage(FILE *f, const char *prog) {
  fprintf(
      f,
      "Usage: %s [flags]\n"
      "\n"
      "Reconciles tenancy.dev Tenants: namespaces, network policies, quotas, RBAC, databases.\n"
      "\n"
      "Flags:\n"
      "  --kubeconfig PATH                    kubeconfig to use (default: $KUBECONFIG, ~/.kube/config,\n"
      "                                       then the in-cluster service account)\n"
      "  --metrics-bind-address ADDR          address of /metrics (default \":8080\"; \"0\" disables)\n"
      "  --health-probe-bind-address ADDR     address of /healthz and /readyz (default \":8081\"; \"0\" "
      "disables)\n"
      "  --leader-elect[=BOOL]                elect a leader through a Lease before reconciling "
      "(default false)\n"
      "  --leader-election-namespace NS       namespace of the Lease (default: pod namespace, else "
      "\"default\")\n"
      "  --leader-election-id NAME            name of the Lease (default \"tenancy-operator-leader\")\n"
      "  --workers N                          concurrent reconciles (default 16)\n"
      "  --sync-period DURATION               full resync of every cached object (default 10h)\n"
      "  --log-level LEVEL                    debug, info, warn or error (default info)\n"
      "  --log-format FORMAT                  json (one object per line) or text (default json)\n"
      "  --pg-dsn DSN                         PostgreSQL connection string (default $TENANCY_PG_DSN)\n"
      "  --kube-api-qps N                     client-side request rate limit (default 0: off, as "
      "controller-runtime:\n"
      "                                       the API server's priority and fairness does flow control)\n"
      "  --kube-api-burst N                   client-side burst when --kube-api-qps is set (default 2 x "
      "qps)\n"
      "  --graceful-shutdown-timeout DURATION time in-flight work gets after SIGTERM (default 30s)\n"
      "  --credentials-rotation-period DURATION  rotate tenant database passwords this often (default "
      "720h; 0 = only on demand)\n"
      "  --keys-rotation-period DURATION      rotate per-tenant data keys this often (default 2160h; 0 = "
      "only on "
      "demand)\n"
      "  --webhook-bind-address ADDR          serve the admission webhook here, e.g. :9443 (default \"0\": "
      "off)\n"
      "  --webhook-host NAME                  the name the API server dials for it (default 127.0.0.1)\n"
      "  --webhook-service NS/NAME            in-cluster: register the webhook through this Service\n"
      "  --webhook-cert-secret NS/NAME        serving certificate Secret (created when missing); default: "
      "generated\n"
      "  --webhook-cert-dir DIR               where certificate files are written (default: a temp dir)\n"
      "  --webhook-cert-file PATH             serving certificate PEM (e.g. a mounted cert-manager Secret);\n"
      "                                       reloaded when the file changes; needs --webhook-key-file\n"
      "  --webhook-key-file PATH              its private key PEM\n"
      "  --webhook-manage-configuration[=BOOL] create/update the ValidatingWebhookConfiguration (default\n"
      "                                       true; false when Helm or cert-manager owns it)\n"
      "  --webhook-failure-policy POLICY      the configuration's failurePolicy: Fail (default) or Ignore\n"
      "  --webhook-timeout-seconds N          the configuration's timeoutSeconds, 1 to 30 (default 5)\n"
      "  --keys-namespace NS                  namespace of the key-encryption-key Secret (default: the\n"
      "                                       operator's namespace, \"tenancy-system\" outside a cluster)\n"
      "  --leader-elect-lease-duration DURATION  how long a standby waits before taking an unrenewed lease\n"
      "                                       (default 15s)\n"
      "  --leader-elect-renew-deadline DURATION  the leader stops (and exits) when it could not renew for\n"
      "                                       this long (default 10s)\n"
      "  --leader-elect-retry-period DURATION time between attempts (default 2s)\n"
      "  --region-secret-namespaces NS,...    more namespaces whose Secrets a Region's adminSecretRef and\n"
      "                                       caSecretRef may name (always: the operator's namespace)\n"
      "  --pg-dsn-file PATH                   read the PostgreSQL connection string from a file (a mounted\n"
      "                                       Secret), so no password sits in the command line\n"
      "  --api-bind-address ADDR              serve the read API (HTTPS) here (default \":8443\"; \"0\" "
      "disables)\n"
      "  --api-cert-file PATH                 the read API's serving certificate PEM (default: the\n"
      "                                       webhook's --webhook-cert-file, else --webhook-cert-dir's\n"
      "                                       tls.crt); reloaded when the file changes\n"
      "  --api-key-file PATH                  its private key PEM\n"
      "  --metrics-per-tenant[=BOOL]          also export tenancy_tenant_* series per tenant (default\n"
      "                                       false: counts only, bounded cardinality)\n"
      "  --metrics-secure[=BOOL]              serve /metrics over HTTPS to callers authenticated by a\n"
      "                                       TokenReview and allowed `get` on the nonResourceURL /metrics\n"
      "                                       by a SubjectAccessReview (default false: plain HTTP)\n"
      "  --metrics-cert-file PATH             its serving certificate PEM (default: self-signed at start)\n"
      "  --metrics-key-file PATH              its private key PEM (with --metrics-cert-file)\n"
      "  --api-workers N                      the read API's service threads, 1 to 8 (default: the\n"
      "                                       CPUs this process may run on, at most 8)\n"
      "  --cluster-name NAME                  this cluster in the lifecycle events' source,\n"
      "                                       tenancy.dev/NAME (a DNS label; default \"local\")\n"
      "  --help                               show this help\n"
      "  --version                            print the version\n",
      prog);
}

void tn_options_cleanup(struct tn_options *o) {
  if (!o)
    return;
  free(o->kubeconfig);
  free(o->cluster_name);
  free(o->metrics_cert_file);
  free(o->metrics_key_file);
  free(o->metrics_addr);
  free(o->probe_addr);
  free(o->leader_namespace);
  free(o->leader_id);
  free(o->webhook_addr);
  free(o->webhook_host);
  free(o->webhook_service);
  free(o->webhook_cert_secret);
  free(o->webhook_cert_dir);
  free(o->webhook_cert_file);
  free(o->webhook_failure_policy);
  free(o->webhook_key_file);
  free(o->keys_namespace);
  free(o->region_secret_namespaces);
  free(o->pg_dsn_file);
  free(o->api_addr);
  free(o->api_cert_file);
  free(o->api_key_file);
  tn_wipe_free_str(o->pg_dsn);
  memset(o, 0, sizeof *o);
}

/* A flag's value was refused: the message names the flag and what it accepts, never the value
 * (values may be secrets, and a message lands in logs). */
static int bad_value(struct tn_error *err, const char *flag, const char *expected) {
  return tn_error_set(err, TN_ECONFIG, "--%s: invalid value (not shown); expected %s", flag, expected);
}

/* The length of a command-line word's flag part: up to '=' (the value is not echoed). */
static int flag_len(const char *arg) { return (int)strcspn(arg, "="); }

int tn_read_secret_file(const char *flag, const char *path, size_t max, char **out, struct tn_error *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return tn_error_set(err, TN_ECONFIG, "--%s: cannot open %s: %s", flag, path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return tn_error_set(err, TN_ECONFIG, "--%s: %s is not a regular file", flag, path);
  }
  char *text = malloc(max + 2);
  if (!text) {
    close(fd);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  size_t len = 0;
  int rc = 0;
  for (;;) {
    ssize_t n = read(fd, text + len, max + 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = tn_error_set(err, TN_ECONFIG, "--%s: cannot read %s: %s", flag, path, strerror(errno));
      goto out;
    }
    if (n == 0)
      break;
    len += (size_t)n;
    if (len > max) {
      rc = tn_error_set(err, TN_ECONFIG, "--%s: %s is larger than %zu bytes", flag, path, max);
      goto out;
    }
  }
  text[len] = '\0';
  /* The line ends of `echo ... > file` or an editor; nothing else is trimmed. */
  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
    text[--len] = '\0';
  if (len == 0) {
    rc = tn_error_set(err, TN_ECONFIG, "--%s: %s is empty", flag, path);
    goto out;
  }
  if (memchr(text, '\0', len) || memchr(text, '\n', len)) {
    rc = tn_error_set(err, TN_ECONFIG,
                      "--%s: %s must hold one line of text (it has a NUL byte or several lines)", flag, path);
    goto out;
  }
  *out = text;
  text = NULL;
out:
  close(fd);
  if (text) {
    tn_wipe(text, max + 2);
    free(text);
  }
  return rc;
}

static int parse_positive_int(const char *v, long max, long *out) {
  char *end = NULL;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < 0 || n > max)
    return -EINVAL;
  *out = n;
  return 0;
}

int tn_options_parse(int argc, char **argv, char *(*env)(const char *), struct tn_options *o,
                     struct tn_error *err) {
  memset(o, 0, sizeof *o);
  o->workers = 16;
  o->sync_period_s = 10 * 3600;
  o->log_level = TN_LOG_INFO;
  o->kube_qps = 0;
  o->kube_burst = 0;
  o->shutdown_timeout_s = 30;
  o->rotation_period_s = 720 * 3600;
  o->keys_rotation_period_s = 2160 * 3600;
  o->webhook_manage_configuration = true;
  o->webhook_timeout_seconds = 5;
  int rc = 0;
  if (set_str(&o->metrics_addr, ":8080") || set_str(&o->probe_addr, ":8081") ||
      set_str(&o->webhook_addr, "0") || set_str(&o->leader_id, "tenancy-operator-leader") ||
      set_str(&o->api_addr, ":8443") || set_str(&o->cluster_name, TN_CE_DEFAULT_CLUSTER))
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *dsn = env ? env("TENANCY_PG_DSN") : NULL;
  if (dsn && *dsn && set_str(&o->pg_dsn, dsn))
    return tn_error_set(err, -ENOMEM, "out of memory");

  optind = 0; /* glibc: full re-initialisation, so parsing twice (tests) works */
  opterr = 0;
  int c, idx = 0;
  bool have_pg_dsn_flag = false;
  while ((c = getopt_long(argc, argv, ":", long_opts, &idx)) != -1) {
    const char *v = optarg;
    long n = 0;
    double d = 0;
    switch (c) {
    case OPT_KUBECONFIG:
      rc = set_str(&o->kubeconfig, v);
      break;
    case OPT_METRICS:
    case OPT_PROBE:
      if (!valid_bind_address(v)) {
        rc = bad_value(err, c == OPT_METRICS ? "metrics-bind-address" : "health-probe-bind-address",
                       "HOST:PORT, :PORT or 0 (disabled)");
        goto out;
      }
      rc = set_str(c == OPT_METRICS ? &o->metrics_addr : &o->probe_addr, v);
      break;
    case OPT_LEADER_ELECT:
      if (parse_bool(v, &o->leader_elect)) {
        rc = bad_value(err, "leader-elect", "true or false");
        goto out;
      }
      break;
    case OPT_LEADER_NS:
      rc = set_str(&o->leader_namespace, v);
      break;
    case OPT_METRICS_PER_TENANT:
    case OPT_METRICS_SECURE:
      if (parse_bool(v, c == OPT_METRICS_SECURE ? &o->metrics_secure : &o->metrics_per_tenant)) {
        rc = bad_value(err, c == OPT_METRICS_SECURE ? "metrics-secure" : "metrics-per-tenant",
                       "true or false");
        goto out;
      }
      break;
    case OPT_METRICS_CERT_FILE:
    case OPT_METRICS_KEY_FILE:
      if (!*v) {
        rc = bad_value(err, c == OPT_METRICS_CERT_FILE ? "metrics-cert-file" : "metrics-key-file",
                       "a file path");
        goto out;
      }
      rc = set_str(c == OPT_METRICS_CERT_FILE ? &o->metrics_cert_file : &o->metrics_key_file, v);
      break;
    case OPT_WEBHOOK_ADDR:
      if (!valid_bind_address(v)) {
        rc = bad_value(err, "webhook-bind-address", "HOST:PORT, :PORT or 0 (disabled)");
        goto out;
      }
      rc = set_str(&o->webhook_addr, v);
      break;
    case OPT_API_ADDR:
      if (!valid_bind_address(v)) {
        rc = bad_value(err, "api-bind-address", "HOST:PORT, :PORT or 0 (disabled)");
        goto out;
      }
      o->api_addr_set = true;
      rc = set_str(&o->api_addr, v);
      break;
    case OPT_API_WORKERS: {
      long nw = 0;
      if (parse_positive_int(v, 8, &nw) || nw < 1) {
        rc = bad_value(err, "api-workers", "an integer from 1 to 8");
        goto out;
      }
      o->api_workers = (int)nw;
      break;
    }
    case OPT_API_CERT_FILE:
    case OPT_API_KEY_FILE:
      if (!*v) {
        rc = tn_error_set(err, TN_ECONFIG, "--%s: expected a file path",
                          c == OPT_API_CERT_FILE ? "api-cert-file" : "api-key-file");
        goto out;
      }
      rc = set_str(c == OPT_API_CERT_FILE ? &o->api_cert_file : &o->api_key_file, v);
      break;
    case OPT_WEBHOOK_HOST:
      rc = set_str(&o->webhook_host, v);
      break;
    case OPT_WEBHOOK_SERVICE:
    case OPT_WEBHOOK_SECRET: {
      /* NAME alone (the Secret) means the operator's namespace */
      const char *slash = strchr(v, '/');
      bool ok = slash ? slash != v && slash[1] && !strchr(slash + 1, '/') : c == OPT_WEBHOOK_SECRET && *v;
      if (!ok) {
        rc = bad_value(err, c == OPT_WEBHOOK_SERVICE ? "webhook-service" : "webhook-cert-secret",
                       c == OPT_WEBHOOK_SERVICE ? "NAMESPACE/NAME" : "NAME or NAMESPACE/NAME");
        goto out;
      }
      rc = set_str(c == OPT_WEBHOOK_SERVICE ? &o->webhook_service : &o->webhook_cert_secret, v);
      break;
    }
    case OPT_WEBHOOK_DIR:
      rc = set_str(&o->webhook_cert_dir, v);
      break;
    case OPT_WEBHOOK_CERT_FILE:
    case OPT_WEBHOOK_KEY_FILE:
      if (!*v) {
        rc = tn_error_set(err, TN_ECONFIG, "--%s: expected a file path",
                          c == OPT_WEBHOOK_CERT_FILE ? "webhook-cert-file" : "webhook-key-file");
        goto out;
      }
      rc = set_str(c == OPT_WEBHOOK_CERT_FILE ? &o->webhook_cert_file : &o->webhook_key_file, v);
      break;
    case OPT_WEBHOOK_MANAGE_CONFIGURATION:
      if (parse_bool(v, &o->webhook_manage_configuration)) {
        rc = tn_error_set(err, TN_ECONFIG, "--webhook-manage-configuration: expected true or false");
        goto out;
      }
      break;
    case OPT_WEBHOOK_FAILURE_POLICY:
      if (strcmp(v, "Fail") != 0 && strcmp(v, "Ignore") != 0) {
        rc = tn_error_set(err, TN_ECONFIG, "--webhook-failure-policy: expected Fail or Ignore");
        goto out;
      }
      rc = set_str(&o->webhook_failure_policy, v);
      break;
    case OPT_WEBHOOK_TIMEOUT_SECONDS: {
      long secs = 0;
      if (parse_positive_int(v, 30, &secs) || secs < 1) {
        rc = tn_error_set(err, TN_ECONFIG, "--webhook-timeout-seconds: expected 1 to 30");
        goto out;
      }
      o->webhook_timeout_seconds = (int)secs;
      break;
    }
    case OPT_CLUSTER_NAME:
      if (!tn_ce_cluster_name_valid(v)) {
        rc = bad_value(
            err, "cluster-name",
            "a DNS label: 1 to 63 lowercase letters, digits and -, starting and ending with a letter "
            "or digit");
        goto out;
      }
      rc = set_str(&o->cluster_name, v);
      break;
    case OPT_KEYS_NAMESPACE:
      if (!*v || strlen(v) > 63) {
        rc =
            tn_error_set(err, TN_ECONFIG, "--keys-namespace: expected a namespace name (1 to 63 characters)");
        goto out;
      }
      rc = set_str(&o->keys_namespace, v);
      break;
    case OPT_LEASE_DURATION:
    case OPT_RENEW_DEADLINE:
    case OPT_RETRY_PERIOD: {
      const char *name = c == OPT_LEASE_DURATION   ? "leader-elect-lease-duration"
                         : c == OPT_RENEW_DEADLINE ? "leader-elect-renew-deadline"
                                                   : "leader-elect-retry-period";
      if (tn_parse_duration(v, &d) || d <= 0) {
        rc = tn_error_set(err, TN_ECONFIG, "--%s: expected a positive duration such as 15s", name);
        goto out;
      }
      if (c == OPT_LEASE_DURATION)
        o->leader_lease_duration_s = d;
      else if (c == OPT_RENEW_DEADLINE)
        o->leader_renew_deadline_s = d;
      else
        o->leader_retry_period_s = d;
      break;
    }
    case OPT_REGION_SECRET_NS:
      if (!valid_namespace_list(v)) {
        rc = tn_error_set(err, TN_ECONFIG,
                          "--region-secret-namespaces: expected namespace names separated by commas "
                          "(lowercase letters, digits and '-', at most 63 each)");
        goto out;
      }
      rc = set_str(&o->region_secret_namespaces, v);
      break;
    case OPT_LEADER_ID:
      rc = set_str(&o->leader_id, v);
      break;
    case OPT_WORKERS:
      if (parse_positive_int(v, 1024, &n) || n < 1) {
        rc = bad_value(err, "workers", "a whole number from 1 to 1024");
        goto out;
      }
      o->workers = (int)n;
      break;
    case OPT_SYNC:
    case OPT_SHUTDOWN:
    case OPT_ROTATION:
    case OPT_KEYS_ROTATION:
      if (tn_parse_duration(v, &d)) {
        rc = bad_value(err,
                       c == OPT_SYNC       ? "sync-period"
                       : c == OPT_SHUTDOWN ? "graceful-shutdown-timeout"
                       : c == OPT_ROTATION ? "credentials-rotation-period"
                                           : "keys-rotation-period",
                       "a duration such as 10h, 5m or 30s");
        goto out;
      }
      if (c == OPT_SYNC)
        o->sync_period_s = d;
      else if (c == OPT_SHUTDOWN)
        o->shutdown_timeout_s = d;
      else if (c == OPT_ROTATION)
        o->rotation_period_s = d;
      else
        o->keys_rotation_period_s = d;
      break;
    case OPT_LOG_LEVEL:
      if (tn_log_parse_level(v, &o->log_level)) {
        rc = bad_value(err, "log-level", "debug, info, warn or error");
        goto out;
      }
      break;
    case OPT_LOG_FORMAT:
      if (tn_log_parse_format(v, &o->log_format)) {
        rc = bad_value(err, "log-format", "json or text");
        goto out;
      }
      break;
    case OPT_PG_DSN:
      have_pg_dsn_flag = true;
      rc = set_str(&o->pg_dsn, v);
      break;
    case OPT_PG_DSN_FILE:
      rc = set_str(&o->pg_dsn_file, v);
      break;
    case OPT_QPS: {
      char *end = NULL;
      d = strtod(v, &end);
      if (end == v || *end || !isfinite(d) || d < 0) {
        rc = bad_value(err, "kube-api-qps", "a number >= 0");
        goto out;
      }
      o->kube_qps = d;
      break;
    }
    case OPT_BURST:
      if (parse_positive_int(v, 1000000, &n)) {
        rc = bad_value(err, "kube-api-burst", "a whole number >= 0");
        goto out;
      }
      o->kube_burst = (int)n;
      break;
    case OPT_HELP:
      o->help = true;
      break;
    case OPT_VERSION:
      o->version = true;
      break;
    case ':':
      rc = tn_error_set(err, TN_ECONFIG, "%.*s needs a value (see --help)", flag_len(argv[optind - 1]),
                        argv[optind - 1]);
      goto out;
    default:
      /* Only the flag's name: a mistyped --pg-dsn=... must not print the DSN. */
      rc = tn_error_set(err, TN_ECONFIG, "unknown flag %.*s (see --help)", flag_len(argv[optind - 1]),
                        argv[optind - 1]);
      goto out;
    }
    if (rc)
      goto out;
  }
  if (!o->webhook_cert_file != !o->webhook_key_file) {
    rc = tn_error_set(err, TN_ECONFIG, "--webhook-cert-file and --webhook-key-file go together: give both");
    goto out;
  }
  if (!o->api_cert_file != !o->api_key_file) {
    rc = tn_error_set(err, TN_ECONFIG, "--api-cert-file and --api-key-file go together: give both");
    goto out;
  }
  if (!o->metrics_cert_file != !o->metrics_key_file) {
    rc = tn_error_set(err, TN_ECONFIG, "--metrics-cert-file and --metrics-key-file go together: give both");
    goto out;
  }
  if (o->metrics_cert_file && !o->metrics_secure) {
    rc = tn_error_set(err, TN_ECONFIG,
                      "--metrics-cert-file needs --metrics-secure (plain HTTP uses no certificate)");
    goto out;
  }
  if (o->pg_dsn_file) {
    if (have_pg_dsn_flag) {
      rc = tn_error_set(err, TN_ECONFIG, "--pg-dsn and --pg-dsn-file are both set; keep one");
      goto out;
    }
    char *dsn_text = NULL;
    if ((rc = tn_read_secret_file("pg-dsn-file", o->pg_dsn_file, TN_PG_DSN_FILE_MAX, &dsn_text, err)))
      goto out;
    tn_wipe_free_str(o->pg_dsn); /* the file wins over $TENANCY_PG_DSN */
    o->pg_dsn = dsn_text;
  }
  if (optind < argc) {
    /* Not echoed: it may be a value meant for a flag (a password after "--pg-dsn= "). */
    rc = tn_error_set(err, TN_ECONFIG,
                      "unexpected argument #%d (not shown: flags start with -- and take their value "
                      "as --flag=value or --flag value; see --help)",
                      optind);
    goto out;
  }
out:
  if (rc == -ENOMEM)
    tn_error_set(err, rc, "out of memory");
  return rc;
}
