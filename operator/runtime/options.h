/* options.h - the tenancy-operator command line: controller-runtime style flags (names fixed in
 * docs/api.md), Go-style durations, and the usage text. */
#ifndef TN_RUNTIME_OPTIONS_H
#define TN_RUNTIME_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

#include "runtime/log.h"
#include "util/error.h"

struct tn_options {
  char *kubeconfig;              /* NULL: $KUBECONFIG, ~/.kube/config, then in-cluster */
  char *metrics_addr;            /* "host:port", ":port", or "0" to disable; default ":8080" */
  char *probe_addr;              /* default ":8081" */
  bool leader_elect;             /* default false */
  char *leader_namespace;        /* default: the pod's namespace when in-cluster, else "default" */
  char *leader_id;               /* Lease name, default "tenancy-operator-leader" */
  int workers;                   /* concurrent reconciles, default 16 */
  double sync_period_s;          /* full resync, default 10h */
  enum tn_log_level log_level;   /* default info */
  enum tn_log_format log_format; /* default json */
  char *pg_dsn;                  /* default $TENANCY_PG_DSN; never logged; wiped on cleanup */
  char *pg_dsn_file;             /* --pg-dsn-file: pg_dsn was read from this file (then set) */
  double kube_qps;               /* client-side limit; default 0 = off (APF does flow control) */
  int kube_burst;                /* default 0 = 2 x qps */
  double shutdown_timeout_s;     /* graceful shutdown deadline for in-flight work, default 30s */
  double rotation_period_s;      /* scheduled tenant database credential rotation, default 720h; 0 = off */
  double keys_rotation_period_s; /* scheduled per-tenant data key rotation, default 2160h; 0 = off */
  char *webhook_addr;            /* admission webhook listener; "0" (default) = no webhook */
  char *webhook_host;            /* the name the API server dials (SAN, URL host); NULL = 127.0.0.1 */
  char *webhook_service;         /* "namespace/name" of the webhook Service in-cluster; NULL = URL */
  char *webhook_cert_secret;     /* "namespace/name" of the serving certificate Secret; NULL = generated */
  char *webhook_cert_dir;        /* where certificate files are written; NULL = a private temp dir */
  char *webhook_cert_file;       /* serving certificate PEM (e.g. a mounted Secret); reloaded on change */
  char *webhook_key_file;        /* its key; both or neither */
  bool webhook_manage_configuration; /* register the ValidatingWebhookConfiguration; default true */
  char *webhook_failure_policy;      /* its failurePolicy, Fail (default) or Ignore */
  int webhook_timeout_seconds;       /* its timeoutSeconds, 1 to 30; default 5 */
  char *keys_namespace;              /* KEK Secret namespace; NULL = the operator's namespace */
  double leader_lease_duration_s;    /* 0 = default 15s */
  double leader_renew_deadline_s;    /* 0 = default 10s */
  double leader_retry_period_s;      /* 0 = default 2s */
  char *region_secret_namespaces;    /* comma-separated namespaces besides the operator's own whose
                                        Secrets Regions may reference; NULL = none */
  char *api_addr;                    /* read API listener; default ":8443"; "0" = off */
  bool api_addr_set;                 /* --api-bind-address was given (else the default) */
  char *api_cert_file,
      *api_key_file;       /* its serving certificate; NULL: the webhook's (see docs/read-api.md) */
  bool metrics_per_tenant; /* --metrics-per-tenant: tenancy_tenant_* series per tenant */
  bool metrics_secure;     /* --metrics-secure: /metrics over HTTPS, TokenReview + SAR */
  char *metrics_cert_file; /* --metrics-cert-file/--metrics-key-file; NULL: self-signed */
  char *metrics_key_file;
  char *cluster_name; /* --cluster-name: lifecycle events' source tenancy.dev/<name>; default "local" */
  int api_workers;    /* --api-workers: the read API's service threads; 0: the CPUs we may use, at most 8 */
  bool help;
  bool version;
};

/* The longest --pg-dsn-file accepted. */
#define TN_PG_DSN_FILE_MAX 8192

/* Parses argv (getopt_long; `--flag value` and `--flag=value`; booleans as `--flag` or
 * `--flag=true|false`). env supplies defaults from the environment (TENANCY_PG_DSN); pass
 * getenv or a test double. --pg-dsn-file PATH reads pg_dsn from a file (see
 * tn_read_secret_file; it wins over TENANCY_PG_DSN; with --pg-dsn too it is an error). On error
 * returns TN_ECONFIG with a message naming the flag and what it accepts, never the value given
 * (values may be secrets). The caller owns *o: tn_options_cleanup() it. */
int tn_options_parse(int argc, char **argv, char *(*env)(const char *), struct tn_options *o,
                     struct tn_error *err);
void tn_options_cleanup(struct tn_options *o);
void tn_options_usage(FILE *f, const char *prog);

#define TN_SA_NAMESPACE_FILE "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

/* The namespace of the Pod's service account (sa_ns_file; NULL: TN_SA_NAMESPACE_FILE), malloc'd,
 * or NULL outside a cluster (no such file, empty) or when out of memory. */
char *tn_service_account_namespace(const char *sa_ns_file);

/* The operator's own namespace: $POD_NAMESPACE, else the service account's namespace file
 * (sa_ns_file; NULL: /var/run/secrets/kubernetes.io/serviceaccount/namespace), else
 * "tenancy-system" (outside a cluster). env as for tn_options_parse. Returns malloc'd, NULL when out
 * of memory. */
char *tn_operator_namespace(char *(*env)(const char *), const char *sa_ns_file);
/* Reads a secret (a DSN, a token) from the file at path, for flag (its name in messages, without
 * "--"): one line of text, a trailing "\n" or "\r\n" removed, at most max bytes. Returns 0 with
 * *out malloc'd (wipe it: tn_wipe_free_str), or TN_ECONFIG naming the flag and the path and why
 * (cannot open: permission denied / no such file, not a regular file, empty, too large, several
 * lines or a NUL byte); the content never appears in a message. */
int tn_read_secret_file(const char *flag, const char *path, size_t max, char **out, struct tn_error *err);

/* Go's time.ParseDuration subset: a sequence of decimal numbers with units ns, us, ms, s, m,
 * h ("10h", "1m30s", "0.5s", "250ms"); a bare "0" is zero. Returns 0 or -EINVAL. */
int tn_parse_duration(const char *s, double *out_s);

#endif
