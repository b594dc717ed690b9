/* tenancy-operator.c - the operator program: wiring only (flags, client, probes and metrics,
 * leader election, the manager's caches and controllers, graceful shutdown on SIGTERM). */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "converge/admission.h"
#include "converge/manager.h"
#include "kube/client.h"
#include "runtime/events.h"
#include "runtime/httpserver.h"
#include "runtime/leader.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "runtime/options.h"
#include "util/wipe.h"

#define IN_CLUSTER_NS_FILE "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

struct app {
  struct tn_options opts;
  struct tn_kube *kube;
  struct tn_metrics *metrics;
  struct tn_httpserver *metrics_srv, *probe_srv;
  struct tn_recorder *recorder;
  struct tn_audit *audit;
  struct tn_leader *leader;
  struct tn_manager *mgr;
  struct tn_admission *webhook;
  atomic_bool start_controllers; /* set by the elector's thread, acted on by main */
  atomic_bool lost_lease;
  atomic_bool controllers_started;
};

static void on_started_leading(void *ud) {
  struct app *a = ud;
  tn_log_info("became the leader");
  atomic_store(&a->start_controllers, true);
}

static void on_stopped_leading(void *ud) {
  struct app *a = ud;
  /* Lost, not handed back on shutdown: exit so that a fresh process competes again. */
  if (a->leader && tn_leader_lost(a->leader))
    atomic_store(&a->lost_lease, true);
}

static void on_new_leader(void *ud, const char *identity) {
  tn_log_info("the leader is now %s", identity && *identity ? identity : "(nobody)");
}

/* /readyz: caches synced and, once this replica leads, the first reconcile pass done. */
static bool ready(void *ud, char *why, size_t n) {
  struct app *a = ud;
  return tn_manager_ready(a->mgr, why, n);
}

static char *leader_namespace(const struct tn_options *o) {
  if (o->leader_namespace)
    return strdup(o->leader_namespace);
  FILE *f = fopen(IN_CLUSTER_NS_FILE, "r");
  if (f) {
    char ns[254] = {0};
    char *ok = fgets(ns, sizeof ns, f);
    fclose(f);
    ns[strcspn(ns, "\r\n")] = '\0';
    if (ok && *ns)
      return strdup(ns);
  }
  return strdup("default");
}

static int start_http(struct app *a, struct tn_error *err) {
  if (strcmp(a->opts.metrics_addr, "0") != 0) {
    if (tn_httpserver_new(a->opts.metrics_addr, NULL, &a->metrics_srv, err) ||
        tn_httpserver_serve_metrics(a->metrics_srv, a->metrics) || tn_httpserver_start(a->metrics_srv, err)) {
      tn_error_prefix(err, "--metrics-bind-address=%s", a->opts.metrics_addr);
      return err->code ? err->code : TN_ECONFIG;
    }
    tn_log_info("serving /metrics on port %d", tn_httpserver_port(a->metrics_srv));
  }
  if (strcmp(a->opts.probe_addr, "0") != 0) {
    if (tn_httpserver_new(a->opts.probe_addr, NULL, &a->probe_srv, err) ||
        tn_httpserver_serve_probes(a->probe_srv, ready, a) || tn_httpserver_start(a->probe_srv, err)) {
      tn_error_prefix(err, "--health-probe-bind-address=%s", a->opts.probe_addr);
      return err->code ? err->code : TN_ECONFIG;
    }
    tn_log_info("serving /healthz and /readyz on port %d", tn_httpserver_port(a->probe_srv));
  }
  return 0;
}

/* The admission webhook: policy before the manifest is stored. Registered by every replica
 * (server-side apply of the same configuration), served by each. */
static int start_webhook(struct app *a, struct tn_error *err) {
  if (strcmp(a->opts.webhook_addr, "0") == 0)
    return 0;
  char sns[256] = "", sname[256] = "", cns[256] = "", cname[256] = "";
  if (a->opts.webhook_service)
    sscanf(a->opts.webhook_service, "%255[^/]/%255s", sns, sname);
  if (a->opts.webhook_cert_secret)
    sscanf(a->opts.webhook_cert_secret, "%255[^/]/%255s", cns, cname);
  struct tn_admission_config cfg = {.bind_address = a->opts.webhook_addr,
                                    .host = a->opts.webhook_host,
                                    .secret_namespace = cns[0] ? cns : NULL,
                                    .secret_name = cname[0] ? cname : NULL,
                                    .cert_dir = a->opts.webhook_cert_dir,
                                    .kube = a->kube,
                                    .service_namespace = sns[0] ? sns : NULL,
                                    .service_name = sname[0] ? sname : NULL,
                                    .lookups = tn_manager_admission_lookups(a->mgr),
                                    .hooks = tn_manager_admission_hooks(a->mgr),
                                    .metrics = a->metrics};
  int rc = tn_admission_new(&cfg, &a->webhook, err);
  if (rc == 0)
    rc = tn_admission_start(a->webhook, err);
  if (rc == 0)
    rc = tn_admission_register(a->webhook, a->kube, err);
  if (rc == 0)
    tn_log_info("admission webhook serving on port %d and registered", tn_admission_port(a->webhook));
  else
    tn_error_prefix(err, "admission webhook");
  return rc;
}

static int start_leader_election(struct app *a, struct tn_error *err) {
  char *ns = leader_namespace(&a->opts);
  if (!ns)
    return tn_error_set(err, -ENOMEM, "out of memory");
  struct tn_leader_config cfg = {
      .namespace = ns,
      .name = a->opts.leader_id,
      .release_on_cancel = true,
      .on_started_leading = on_started_leading,
      .on_stopped_leading = on_stopped_leading,
      .on_new_leader = on_new_leader,
      .ud = a,
      .metrics = a->metrics,
  };
  int rc = tn_leader_new(a->kube, &cfg, &a->leader, err);
  if (rc == 0)
    rc = tn_leader_start(a->leader);
  if (rc == 0)
    tn_log_info("leader election on Lease %s/%s as %s", ns, a->opts.leader_id, tn_leader_identity(a->leader));
  else if (!err->code)
    tn_error_set(err, rc, "cannot start leader election: %s", tn_strerror(rc));
  free(ns);
  return rc;
}

/* Waits for SIGTERM/SIGINT (blocked in every thread, taken here synchronously) while acting on
 * the elector's news. Returns the exit code. */
static int run(struct app *a) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  for (;;) {
    /* As controller-runtime: workers start once this replica may lead and the caches synced. */
    if (atomic_load(&a->start_controllers) && !atomic_load(&a->controllers_started) &&
        tn_manager_synced(a->mgr)) {
      struct tn_error err = {0};
      if (tn_manager_start_controllers(a->mgr, &err)) {
        tn_log_error("cannot start the controllers: %s", err.message);
        return 1;
      }
      atomic_store(&a->controllers_started, true);
    }
    if (atomic_load(&a->lost_lease)) {
      tn_log_error("lost the leader lease: exiting so that a fresh process competes again");
      return 1;
    }
    struct timespec tick = {0, 200 * 1000 * 1000};
    int sig = sigtimedwait(&set, NULL, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      tn_log_info("received %s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      return 0;
    }
  }
}

static void shutdown_all(struct app *a) {
  /* Stop taking work and let in-flight reconciles finish within the deadline, then give the
   * Lease away so a standby takes over at once, then stop the caches and the servers. */
  if (a->mgr && !tn_manager_stop_controllers(a->mgr, a->opts.shutdown_timeout_s))
    tn_log_warn("in-flight work did not finish within %.0fs", a->opts.shutdown_timeout_s);
  tn_leader_free(a->leader);
  a->leader = NULL;
  tn_admission_free(a->webhook); /* before the manager: its lookups read the caches */
  a->webhook = NULL;
  tn_manager_free(a->mgr);
  a->mgr = NULL;
  tn_recorder_free(a->recorder);
  a->recorder = NULL;
  tn_audit_close(a->audit);
  a->audit = NULL;
  tn_httpserver_free(a->probe_srv);
  tn_httpserver_free(a->metrics_srv);
  a->probe_srv = a->metrics_srv = NULL;
  tn_kube_free(a->kube);
  a->kube = NULL;
  tn_metrics_free(a->metrics);
  a->metrics = NULL;
}

int main(int argc, char **argv) {
  struct app a = {0};
  struct tn_error err = {0};
  struct tn_kube_config cfg = {0};
  int code = 1;

  /* Signals are taken synchronously by run(); every thread started below inherits the mask. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  /* Before anything secret is in memory: not dumpable (no core file, no ptrace or /proc/<pid>/mem
   * by other processes of this user), and JSON values (Secrets) wiped when freed. */
  if (tn_harden_process(&err)) {
    fprintf(stderr, "tenancy-operator: %s\n", err.message);
    return 1;
  }
  tn_wipe_json_install();

  if (tn_options_parse(argc, argv, getenv, &a.opts, &err)) {
    fprintf(stderr, "tenancy-operator: %s\n", err.message);
    tn_options_cleanup(&a.opts);
    return 2;
  }
  if (a.opts.help) {
    tn_options_usage(stdout, "tenancy-operator");
    tn_options_cleanup(&a.opts);
    return 0;
  }
  if (a.opts.version) {
    printf("tenancy-operator %s\n", TN_VERSION);
    tn_options_cleanup(&a.opts);
    return 0;
  }
  tn_log_set_level(a.opts.log_level);
  tn_log_set_format(a.opts.log_format);
  tn_log_info("tenancy-operator %s starting: workers=%d sync-period=%.0fs leader-elect=%s", TN_VERSION,
              a.opts.workers, a.opts.sync_period_s, a.opts.leader_elect ? "true" : "false");

  if (tn_kube_config_auto(a.opts.kubeconfig, &cfg, &err)) {
    tn_log_error("cannot load the Kubernetes configuration: %s", err.message);
    goto out;
  }
  cfg.qps = a.opts.kube_qps;
  cfg.burst = a.opts.kube_burst;
  a.metrics = tn_metrics_new();
  if (!a.metrics) {
    tn_log_error("out of memory");
    goto out;
  }
  tn_metrics_register_gauge_func(a.metrics, "process_resident_memory_bytes", "Resident memory size in bytes.",
                                 tn_process_rss_bytes, NULL);
  if (tn_kube_new(&cfg, a.metrics, &a.kube, &err)) {
    tn_log_error("cannot create the Kubernetes client: %s", err.message);
    goto out;
  }
  char instance[300];
  if (tn_leader_default_identity(instance, sizeof instance))
    snprintf(instance, sizeof instance, "tenancy-operator-%ld", (long)getpid());
  if (tn_recorder_new(a.kube, "tenancy.dev/tenancy-operator", instance, &a.recorder)) {
    tn_log_error("cannot create the event recorder: out of memory");
    goto out;
  }
  /* The audit trail lives in the operator's PostgreSQL: with --pg-dsn every lifecycle
   * transition is recorded before it happens (and does not happen while it cannot be). */
  if (a.opts.pg_dsn && *a.opts.pg_dsn) {
    if (tn_audit_open(a.opts.pg_dsn, NULL, &a.audit, &err)) {
      tn_log_error("--pg-dsn: %s", err.message);
      goto out;
    }
    tn_log_info("audit trail: table tenancy.audit_events in the --pg-dsn database");
  } else {
    tn_log_warn("no --pg-dsn (or TENANCY_PG_DSN): lifecycle transitions are not written to an audit trail");
  }
  struct tn_manager_config mcfg = {.kube = a.kube,
                                   .metrics = a.metrics,
                                   .recorder = a.recorder,
                                   .workers = a.opts.workers,
                                   .sync_period_s = a.opts.sync_period_s,
                                   .rotation_period_s = a.opts.rotation_period_s,
                                   .keys_rotation_period_s = a.opts.keys_rotation_period_s,
                                   .audit = a.audit};
  if (tn_manager_new(&mcfg, &a.mgr, &err)) {
    tn_log_error("cannot set up the controllers: %s", err.message);
    goto out;
  }
  if (start_http(&a, &err)) {
    tn_log_error("cannot serve HTTP: %s", err.message);
    goto out;
  }
  if (start_webhook(&a, &err)) {
    tn_log_error("%s", err.message);
    goto out;
  }
  if (tn_manager_start_caches(a.mgr, &err)) {
    tn_log_error("cannot start the caches: %s", err.message);
    goto out;
  }
  if (a.opts.leader_elect) {
    if (start_leader_election(&a, &err)) {
      tn_log_error("%s", err.message);
      goto out;
    }
  } else {
    atomic_store(&a.start_controllers, true);
  }
  code = run(&a);

out:
  shutdown_all(&a);
  tn_kube_config_cleanup(&cfg);
  tn_options_cleanup(&a.opts);
  tn_log_info("exiting with code %d", code);
  return code;
}
