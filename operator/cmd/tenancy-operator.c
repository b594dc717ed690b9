/* tenancy-operator.c - the operator program: wiring only (flags, client, probes and metrics,
 * leader election, the manager's caches and controllers, graceful shutdown on SIGTERM). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/readapi.h"
#include "audit/audit.h"
#include "audit/head.h"
#include "converge/admission.h"
#include "converge/admission_audit.h"
#include "converge/manager.h"
#include "converge/reconciler.h"
#include "kube/client.h"
#include "runtime/events.h"
#include "runtime/httpserver.h"
#include "runtime/leader.h"
#include "runtime/log.h"
#include "runtime/memtrim.h"
#include "runtime/metrics.h"
#include "runtime/metrics_auth.h"
#include "runtime/options.h"
#include "runtime/process_metrics.h"
#include "runtime/readiness.h"
#include "util/clock.h"
#include "util/fence.h"
#include "util/wipe.h"

struct app {
  struct tn_options opts;
  char *namespace;        /* the operator's own namespace (tn_operator_namespace) */
  struct tn_fence *fence; /* the leader's permission to write; open forever without election */
  struct tn_kube *kube;   /* unfenced: the Lease, the webhook's Secret and configuration, reads */
  struct tn_kube *writer; /* fenced: everything the controllers and the recorder write */
  struct tn_metrics *metrics;
  struct tn_httpserver *metrics_srv, *probe_srv;
  struct tn_metrics_auth *metrics_auth; /* --metrics-secure: TokenReview + SubjectAccessReview */
  char *metrics_cert_dir;               /* --metrics-secure without --metrics-cert-file: self-signed */
  struct tn_recorder *recorder;
  struct tn_audit *audit;
  struct tn_audit_head_exporter *audit_head;
  struct tn_leader *leader;
  struct tn_manager *mgr;
  struct tn_admission *webhook;
  struct tn_readapi *readapi;
  /* refused rows of denied requests (issue 13) */
  struct tn_admission_audit *admission_audit;
  atomic_bool start_controllers; /* set by the elector's thread, acted on by main */
  atomic_bool lost_lease;
  atomic_bool controllers_started;
  atomic_bool shutting_down; /* /readyz answers 503 from here on */
  double t_start;            /* monotonic: the start-up's timeline is logged from here */
};

static void on_started_leading(void *ud) {
  struct app *a = ud;
  tn_log_info("became the leader");
  atomic_store(&a->start_controllers, true);
}

static void on_stopped_leading(void *ud) {
  struct app *a = ud;
  /* Lost, not handed back on shutdown: the elector closed the write fence already; exit so that
   * a fresh process competes again (client-go's OnStoppedLeading). */
  if (a->leader && tn_leader_lost(a->leader)) {
    tn_log_error("leadership lost: writes are fenced from now on");
    atomic_store(&a->lost_lease, true);
  }
}

static void on_new_leader(void *ud, const char *identity) {
  tn_log_info("the leader is now %s", identity && *identity ? identity : "(nobody)");
}

/* /readyz: caches synced and, once this replica leads, the first reconcile pass done
 * (runtime/readiness.h decides). */
static bool ready(void *ud, char *why, size_t n) {
  struct app *a = ud;
  /* The probe server is stopped before the manager is freed (shutdown_all), so a->mgr is valid
   * for as long as this can run. The flags are read before the manager: main sets the manager's
   * "started" before controllers_started, so seeing controllers_started here means the manager
   * checks the first pass (read after, a start in between answered ready with nothing checked). */
  struct tn_readiness r = {.shutting_down = atomic_load(&a->shutting_down),
                           .should_run_workers = atomic_load(&a->start_controllers),
                           .workers_started = atomic_load(&a->controllers_started)};
  char mwhy[256] = "";
  if (!r.shutting_down)
    r.manager_ready = tn_manager_ready(a->mgr, mwhy, sizeof mwhy);
  r.manager_why = mwhy;
  return tn_readiness_decide(&r, why, n);
}

static char *leader_namespace(const struct tn_options *o) {
  if (o->leader_namespace)
    return strdup(o->leader_namespace);
  char *ns = tn_service_account_namespace(NULL);
  return ns ? ns : strdup("default");
}

/* "NS/NAME" or "NAME" (the operator's namespace) into ns and name. */
static void split_ref(const char *ref, const char *default_ns, char *ns, size_t ns_n, char *name,
                      size_t name_n) {
  const char *slash = strchr(ref, '/');
  if (slash) {
    snprintf(ns, ns_n, "%.*s", (int)(slash - ref), ref);
    snprintf(name, name_n, "%s", slash + 1);
  } else {
    snprintf(ns, ns_n, "%s", default_ns);
    snprintf(name, name_n, "%s", ref);
  }
}

/* The namespaces Region Secret references may name: the operator's, then --region-secret-namespaces. */
static char *region_secret_namespaces(const struct tn_options *o, const char *own) {
  if (!o->region_secret_namespaces)
    return strdup(own);
  size_t n = strlen(own) + strlen(o->region_secret_namespaces) + 2;
  char *list = malloc(n);
  if (list)
    snprintf(list, n, "%s,%s", own, o->region_secret_namespaces);
  return list;
}

/* The metrics and probe listeners are served by the epoll server (runtime/httpfast.c), as the read
 * API is: libwebsockets 4.1.6 leaves a vhost's CA store allocated at exit when a process has two of
 * its TLS listeners (the webhook and --metrics-secure). TENANCY_HTTP_BACKEND=lws puts them back. */
static int epoll_backend(struct tn_httpserver *srv) {
  return tn_httpserver_set_backend(srv, TN_HTTP_BACKEND_EPOLL);
}

/* --metrics-secure: HTTPS (the given certificate, else a self-signed one), and only for callers the
 * API server authenticates and allows `get` on /metrics (runtime/metrics_auth.h). */
static int start_metrics_secure(struct app *a, struct tn_error *err) {
  char cert[600], key[600];
  if (a->opts.metrics_cert_file) {
    snprintf(cert, sizeof cert, "%s", a->opts.metrics_cert_file);
    snprintf(key, sizeof key, "%s", a->opts.metrics_key_file);
  } else {
    int rc = tn_metrics_self_signed(&a->metrics_cert_dir, err);
    if (rc)
      return rc;
    snprintf(cert, sizeof cert, "%s/tls.crt", a->metrics_cert_dir);
    snprintf(key, sizeof key, "%s/tls.key", a->metrics_cert_dir);
  }
  struct tn_http_tls tls = {.cert_file = cert, .key_file = key};
  if (tn_metrics_auth_new(a->kube, &a->metrics_auth))
    return tn_error_set(err, -ENOMEM, "out of memory");
  if (tn_httpserver_new(a->opts.metrics_addr, &tls, &a->metrics_srv, err) || epoll_backend(a->metrics_srv) ||
      tn_httpserver_serve_metrics_secure(a->metrics_srv, a->metrics, a->metrics_auth) ||
      tn_httpserver_start(a->metrics_srv, err))
    return err->code ? err->code : TN_ECONFIG;
  tn_log_info("serving /metrics over HTTPS on port %d (%s certificate) to callers allowed get on /metrics "
              "(TokenReview + SubjectAccessReview)",
              tn_httpserver_port(a->metrics_srv), a->opts.metrics_cert_file ? "the given" : "a self-signed");
  return 0;
}

static int start_http(struct app *a, struct tn_error *err) {
  if (strcmp(a->opts.metrics_addr, "0") != 0 && a->opts.metrics_secure) {
    if (start_metrics_secure(a, err)) {
      tn_error_prefix(err, "--metrics-bind-address=%s", a->opts.metrics_addr);
      return err->code ? err->code : TN_ECONFIG;
    }
  } else if (strcmp(a->opts.metrics_addr, "0") != 0) {
    if (tn_httpserver_new(a->opts.metrics_addr, NULL, &a->metrics_srv, err) ||
        epoll_backend(a->metrics_srv) || tn_httpserver_serve_metrics(a->metrics_srv, a->metrics) ||
        tn_httpserver_start(a->metrics_srv, err)) {
      tn_error_prefix(err, "--metrics-bind-address=%s", a->opts.metrics_addr);
      return err->code ? err->code : TN_ECONFIG;
    }
    tn_log_info("serving /metrics on port %d", tn_httpserver_port(a->metrics_srv));
  }
  if (strcmp(a->opts.probe_addr, "0") != 0) {
    if (tn_httpserver_new(a->opts.probe_addr, NULL, &a->probe_srv, err) || epoll_backend(a->probe_srv) ||
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
    split_ref(a->opts.webhook_cert_secret, a->namespace, cns, sizeof cns, cname, sizeof cname);
  struct tn_admission_config cfg = {.bind_address = a->opts.webhook_addr,
                                    .host = a->opts.webhook_host,
                                    .cert_file = a->opts.webhook_cert_file,
                                    .key_file = a->opts.webhook_key_file,
                                    .secret_namespace = cns[0] ? cns : NULL,
                                    .secret_name = cname[0] ? cname : NULL,
                                    .cert_dir = a->opts.webhook_cert_dir,
                                    .manage_configuration = a->opts.webhook_manage_configuration,
                                    .failure_policy = a->opts.webhook_failure_policy,
                                    .timeout_seconds = a->opts.webhook_timeout_seconds,
                                    .kube = a->kube,
                                    .service_namespace = sns[0] ? sns : NULL,
                                    .service_name = sname[0] ? sname : NULL,
                                    .lookups = tn_manager_admission_lookups(a->mgr),
                                    .hooks = a->admission_audit ? tn_admission_audit_hooks(a->admission_audit)
                                                                : tn_manager_admission_hooks(a->mgr),
                                    .metrics = a->metrics};
  int rc = tn_admission_new(&cfg, &a->webhook, err);
  if (rc == 0)
    rc = tn_admission_start(a->webhook, err);
  if (rc == 0 && a->opts.webhook_manage_configuration)
    rc = tn_admission_register(a->webhook, a->kube, err);
  if (rc == 0)
    tn_log_info("admission webhook serving on port %d%s", tn_admission_port(a->webhook),
                a->opts.webhook_manage_configuration
                    ? " and registered"
                    : "; --webhook-manage-configuration=false: the ValidatingWebhookConfiguration is "
                      "managed elsewhere");
  else
    tn_error_prefix(err, "admission webhook");
  return rc;
}

/* The read API (docs/read-api.md): every replica serves it from its caches. */
static int start_read_api(struct app *a, struct tn_error *err) {
  const struct tn_options *o = &a->opts;
  if (strcmp(o->api_addr, "0") == 0)
    return 0;
  char cert[4096] = "", key[4096] = "";
  if (o->api_cert_file) {
    snprintf(cert, sizeof cert, "%s", o->api_cert_file);
    snprintf(key, sizeof key, "%s", o->api_key_file);
  } else if (strcmp(o->webhook_addr, "0") != 0 && o->webhook_cert_file) {
    snprintf(cert, sizeof cert, "%s", o->webhook_cert_file);
    snprintf(key, sizeof key, "%s", o->webhook_key_file);
  } else if (strcmp(o->webhook_addr, "0") != 0 && o->webhook_cert_dir) {
    snprintf(cert, sizeof cert, "%s/tls.crt", o->webhook_cert_dir);
    snprintf(key, sizeof key, "%s/tls.key", o->webhook_cert_dir);
  }
  if (!cert[0]) {
    if (o->api_addr_set)
      return tn_error_set(err, TN_ECONFIG,
                          "--api-bind-address=%s needs a certificate: --api-cert-file and --api-key-file, or "
                          "the webhook's (--webhook-cert-file, --webhook-cert-dir)",
                          o->api_addr);
    tn_log_warn("read API not served: no certificate (give --api-cert-file and --api-key-file, or run the "
                "webhook with --webhook-cert-dir; --api-bind-address=0 silences this)");
    return 0;
  }
  struct tn_readapi_config cfg = {.bind_address = o->api_addr,
                                  .cert_file = cert,
                                  .key_file = key,
                                  .kube = a->kube,
                                  .tenants = tn_manager_tenants_informer(a->mgr),
                                  .metrics = a->metrics,
                                  .pg_dsn = o->pg_dsn,
                                  .pg_ca_file = getenv("TENANCY_PG_CA_FILE"),
                                  .workers = o->api_workers ? o->api_workers : tn_readapi_default_workers()};
  int rc = tn_readapi_new(&cfg, &a->readapi, err);
  if (rc == 0)
    rc = tn_readapi_start(a->readapi, err);
  if (rc)
    tn_error_prefix(err, "read API (--api-bind-address=%s)", o->api_addr);
  else
    tn_log_info("read API serving on port %d with %d threads", tn_readapi_port(a->readapi), cfg.workers);
  return rc;
}

static int start_leader_election(struct app *a, struct tn_error *err) {
  char *ns = leader_namespace(&a->opts);
  if (!ns)
    return tn_error_set(err, -ENOMEM, "out of memory");
  struct tn_leader_config cfg = {
      .namespace = ns,
      .name = a->opts.leader_id,
      .lease_duration_s = a->opts.leader_lease_duration_s,
      .renew_deadline_s = a->opts.leader_renew_deadline_s,
      .retry_period_s = a->opts.leader_retry_period_s,
      .release_on_cancel = true,
      .fence = a->fence,
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

/* The audit trail (docs/audit.md): TLS verify-full unless the DSN asks otherwise (warned), the
 * schema created or upgraded at start when this role owns it, and a warning when this role could
 * remove rows (it should be the writer role of `tenantctl audit init --writer-role`). */
static int open_audit(struct app *a, struct tn_error *err) {
  struct tn_audit_options ao = {.ca_file = getenv("TENANCY_PG_CA_FILE")};
  if (tn_audit_open(a->opts.pg_dsn, &ao, &a->audit, err))
    return err->code ? err->code : TN_ECONFIG;
  tn_log_info("audit trail: table tenancy.audit_events in the --pg-dsn database");
  const char *warning = tn_audit_tls_warning(a->audit);
  if (warning)
    tn_log_warn("%s", warning);
  struct tn_error perr = {0};
  bool can_cut = false;
  char who[96];
  if (tn_audit_ping(a->audit, &perr) || tn_audit_role_can_cut(a->audit, &can_cut, who, sizeof who, &perr))
    tn_log_warn("audit trail: not usable yet (transitions wait for it): %s", perr.message);
  else if (can_cut)
    tn_log_warn("audit trail: the operator's PostgreSQL role %s, so it could remove audit rows by bypassing "
                "the triggers: create the objects as another role with `tenantctl audit init --writer-role "
                "ROLE` and connect the operator as ROLE (docs/audit.md)",
                who);
  /* Denied Tenant requests get a refused row, written by a thread of its own on a connection of
   * its own (no leader fence: every replica serves the webhook), never delaying a review. */
  struct tn_audit *da = NULL;
  struct tn_audit_options dao = {.ca_file = ao.ca_file, .application_name = "tenancy-operator-admission"};
  if (tn_audit_open(a->opts.pg_dsn, &dao, &da, &perr) ||
      tn_admission_audit_new(da, &a->admission_audit, &perr)) {
    tn_audit_close(da);
    tn_log_warn("audit trail: denied requests will not be recorded: %s", perr.message);
  }
  return 0;
}

/* Events the recorder dropped: under load its queue fills (client-go's broadcaster drops the same
 * way), and only a log line said so (issue 18, session 25: 54 of 2,000 at load 20). */
static void collect_recorder(void *ud, struct tn_collect *c) {
  tn_collect_family(c, TN_COUNTER, "tenancy_events_dropped_total",
                    "Kubernetes Events dropped because the recorder's queue was full.", NULL);
  tn_collect_sample(c, NULL, (double)tn_recorder_dropped(ud));
}

/* Exports the audit head (log line, Event about the leader Lease, metric) while this replica leads. */
static void start_audit_head(struct app *a) {
  if (!a->audit || a->audit_head)
    return;
  double interval = TN_AUDIT_HEAD_DEFAULT_INTERVAL_S;
  const char *env = getenv("TENANCY_AUDIT_HEAD_INTERVAL_SECONDS");
  if (env && *env) {
    char *end = NULL;
    double v = strtod(env, &end);
    if (end && !*end && v >= 1 && v <= 86400)
      interval = v;
    else
      tn_log_warn("TENANCY_AUDIT_HEAD_INTERVAL_SECONDS must be 1 to 86400: using %.0f", interval);
  }
  char *ns = leader_namespace(&a->opts);
  struct tn_object_ref lease = {
      .api_version = "coordination.k8s.io/v1", .kind = "Lease", .name = a->opts.leader_id, .namespace = ns};
  if (tn_audit_head_exporter_start(a->audit, a->metrics, a->recorder, a->kube, ns ? &lease : NULL, interval,
                                   &a->audit_head))
    tn_log_warn("audit trail: cannot start exporting its head");
  free(ns);
}

/* Waits for SIGTERM/SIGINT (blocked in every thread, taken here synchronously) while acting on
 * the elector's news. Returns the exit code. */
static int run(struct app *a) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  /* The start-up's timeline (issue 18: a restart or a failover at 10,000 tenants within 30 s),
   * seconds since the process started, as main sees it (within its 50 ms turn). */
  double t_synced = -1, t_leading = -1, t_workers = -1, t_pass = -1;
  for (;;) {
    if (t_synced < 0 && tn_manager_synced(a->mgr)) {
      t_synced = tn_mono_now() - a->t_start;
      tn_log_info("start-up: caches synced %.2fs after the start", t_synced);
    }
    if (t_leading < 0 && atomic_load(&a->start_controllers))
      t_leading = tn_mono_now() - a->t_start;
    /* As controller-runtime: workers start once this replica may lead and the caches synced. */
    if (atomic_load(&a->start_controllers) && !atomic_load(&a->controllers_started) &&
        tn_manager_synced(a->mgr)) {
      struct tn_error err = {0};
      if (tn_manager_start_controllers(a->mgr, &err)) {
        tn_log_error("cannot start the controllers: %s", err.message);
        return 1;
      }
      atomic_store(&a->controllers_started, true);
      t_workers = tn_mono_now() - a->t_start;
      start_audit_head(a);
    }
    char why[160];
    if (t_pass < 0 && t_workers >= 0 && tn_manager_ready(a->mgr, why, sizeof why)) {
      t_pass = tn_mono_now() - a->t_start;
      tn_log_info(
          "start-up: first reconcile pass done %.2fs after the start (caches synced at %.2fs, leading "
          "at %.2fs, workers started at %.2fs: the pass took %.2fs)",
          t_pass, t_synced, t_leading, t_workers, t_pass - t_workers);
    }
    if (atomic_load(&a->lost_lease)) {
      tn_log_error("lost the leader lease: exiting so that a fresh process competes again");
      return 1;
    }
    struct timespec tick = {0, 50 * 1000 * 1000};
    int sig = sigtimedwait(&set, NULL, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      tn_log_info("received %s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      return 0;
    }
  }
}

/* The last resort of a shutdown: a thread that ends the process when the orderly shutdown runs
 * past its budget (a worker stuck in a call that the fence cannot interrupt), so the Pod never
 * reaches its grace period's SIGKILL with the lease still held. */
static void *watchdog_main(void *arg) {
  double budget = *(double *)arg;
  struct timespec ts = {(time_t)budget, (long)((budget - (double)(time_t)budget) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
  tn_log_error("shutdown did not finish within %.0fs: exiting now", budget);
  _exit(1);
  return NULL;
}

static void start_watchdog(double budget_s) {
  static double budget;
  budget = budget_s;
  pthread_t t;
  if (pthread_create(&t, NULL, watchdog_main, &budget) == 0)
    pthread_detach(t);
}

/* lost: leadership was lost (no drain: queued work is dropped, in-flight work fails at the fence). */
static void shutdown_all(struct app *a, bool lost) {
  atomic_store(&a->shutting_down, true);
  if (a->mgr) {
    /* Drain within --graceful-shutdown-timeout, then release (bounded by 5s), then tear down:
     * the watchdog allows all of that plus a margin; keep terminationGracePeriodSeconds above it. */
    start_watchdog((lost ? 0 : a->opts.shutdown_timeout_s) + 8.0);
    if (lost)
      tn_manager_abandon_controllers(a->mgr);
    else if (!tn_manager_stop_controllers(a->mgr, a->opts.shutdown_timeout_s))
      tn_log_warn("in-flight work did not finish within %.0fs", a->opts.shutdown_timeout_s);
  }
  if (!lost) {
    /* While the fence is still open: the head this process leaves is exported (when it appended
     * rows since its last export: one query and one Event, milliseconds), and the recorder writes
     * what it holds, that Event included, so the next start finds the head exported and writes
     * nothing (issue 18). Both come out of the watchdog's 8 s margin with the release (at most
     * 5 s); a database that hangs right now makes the watchdog end the process before the
     * release, and the standby waits out the lease, as after a crash. */
    tn_audit_head_exporter_stop(a->audit_head, true);
    a->audit_head = NULL;
    if (a->recorder && tn_recorder_flush(a->recorder, 1.0) != 0)
      tn_log_warn("events: not all written within 1s of the shutdown");
  }
  /* Closes the fence, then gives the Lease away so a standby takes over at once. */
  tn_leader_free(a->leader);
  a->leader = NULL;
  tn_fence_close(a->fence);
  /* The HTTP servers stop before what their handlers read is freed: /readyz reads the manager,
   * the webhook's lookups read its caches. */
  tn_httpserver_free(a->probe_srv);
  tn_httpserver_free(a->metrics_srv);
  a->probe_srv = a->metrics_srv = NULL;
  tn_metrics_auth_free(a->metrics_auth); /* after the server whose route reads it */
  a->metrics_auth = NULL;
  tn_metrics_self_signed_remove(a->metrics_cert_dir);
  a->metrics_cert_dir = NULL;
  tn_admission_free(a->webhook);
  a->webhook = NULL;
  tn_readapi_free(a->readapi);
  a->readapi = NULL;
  tn_admission_audit_free(a->admission_audit, 2); /* after the webhook: its hooks queue rows */
  a->admission_audit = NULL;
  tn_manager_free(a->mgr);
  a->mgr = NULL;
  tn_audit_head_exporter_stop(a->audit_head, false); /* before the recorder and the trail it uses */
  a->audit_head = NULL;
  if (a->metrics && a->recorder)
    (void)tn_metrics_unregister_collector(a->metrics, collect_recorder, a->recorder);
  tn_recorder_free(a->recorder);
  a->recorder = NULL;
  tn_audit_close(a->audit);
  a->audit = NULL;
  tn_kube_free(a->writer);
  a->writer = NULL;
  tn_kube_free(a->kube);
  a->kube = NULL;
  tn_metrics_free(a->metrics);
  a->metrics = NULL;
  tn_fence_free(a->fence);
  a->fence = NULL;
  free(a->namespace);
  a->namespace = NULL;
}

int main(int argc, char **argv) {
  struct app a = {.t_start = tn_mono_now()};
  struct tn_error err = {0};
  struct tn_kube_config cfg = {0};
  int code = 1;
  struct tn_memtrim *memtrim = NULL;
  /* Before any thread: at most two malloc arenas (runtime/memtrim.h). */
  int arenas = tn_memtrim_limit_arenas(getenv);

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
  if (tn_memtrim_start(TN_MEMTRIM_DEFAULT_INTERVAL_S, TN_MEMTRIM_DEFAULT_THRESHOLD, &memtrim))
    tn_log_warn("cannot start returning free heap memory: the process may hold more than it uses");
  tn_log_debug("malloc arenas: %s", arenas > 0    ? "at most 2"
                                    : arenas == 0 ? "as MALLOC_ARENA_MAX says"
                                                  : "the allocator's own");

  /* The audit trail lives in the operator's PostgreSQL: with --pg-dsn every lifecycle
   * transition is recorded before it happens (and does not happen while it cannot be). */
  if (a.opts.pg_dsn && *a.opts.pg_dsn) {
    if (open_audit(&a, &err)) {
      tn_log_error("--pg-dsn: %s", err.message);
      goto out;
    }
  } else {
    tn_log_warn("no --pg-dsn (or TENANCY_PG_DSN): lifecycle transitions are not written to an audit trail");
  }
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
  tn_process_metrics_register(a.metrics); /* process_cpu_seconds_total, process_open_fds, ... */
  a.namespace = tn_operator_namespace(getenv, NULL);
  a.fence = tn_fence_new(!a.opts.leader_elect);
  if (!a.namespace || !a.fence) {
    tn_log_error("out of memory");
    goto out;
  }
  if (tn_kube_new(&cfg, a.metrics, &a.kube, &err) || tn_kube_new(&cfg, a.metrics, &a.writer, &err)) {
    tn_log_error("cannot create the Kubernetes client: %s", err.message);
    goto out;
  }
  tn_kube_set_fence(a.writer, a.fence);
  char instance[300];
  if (tn_leader_default_identity(instance, sizeof instance))
    snprintf(instance, sizeof instance, "tenancy-operator-%ld", (long)getpid());
  if (tn_recorder_new(a.writer, "tenancy.dev/tenancy-operator", instance, &a.recorder)) {
    tn_log_error("cannot create the event recorder: out of memory");
    goto out;
  }
  if (a.metrics)
    (void)tn_metrics_register_collector(a.metrics, collect_recorder, a.recorder);
  if (a.audit)
    tn_audit_set_fence(a.audit, a.fence);
  char *region_ns = region_secret_namespaces(&a.opts, a.namespace);
  if (!region_ns) {
    tn_log_error("out of memory");
    goto out;
  }
  tn_log_info("Region adminSecretRef/caSecretRef may name Secrets in: %s", region_ns);
  struct tn_manager_config mcfg = {.kube = a.writer,
                                   .metrics = a.metrics,
                                   .recorder = a.recorder,
                                   .workers = a.opts.workers,
                                   .sync_period_s = a.opts.sync_period_s,
                                   .rotation_period_s = a.opts.rotation_period_s,
                                   .keys_rotation_period_s = a.opts.keys_rotation_period_s,
                                   .cluster_name = a.opts.cluster_name,
                                   .audit = a.audit,
                                   .keys_namespace =
                                       a.opts.keys_namespace ? a.opts.keys_namespace : a.namespace,
                                   .fence = a.fence,
                                   .region_secret_namespaces = region_ns,
                                   .metrics_per_tenant = a.opts.metrics_per_tenant,
                                   .webhooks_dsn = a.audit ? a.opts.pg_dsn : NULL,
                                   .webhooks_pg_ca_file = getenv("TENANCY_PG_CA_FILE")};
  int mrc = tn_manager_new(&mcfg, &a.mgr, &err);
  free(region_ns);
  if (mrc) {
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
  if (start_read_api(&a, &err)) {
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
  shutdown_all(&a, atomic_load(&a.lost_lease));
  tn_memtrim_stop(memtrim);
  tn_kube_config_cleanup(&cfg);
  tn_options_cleanup(&a.opts);
  tn_log_info("exiting with code %d", code);
  return code;
}
