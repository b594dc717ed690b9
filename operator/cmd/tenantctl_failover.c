/* tenantctl_failover.c - `tenantctl failover REGION` (start a region failover) and `tenantctl
 * failover-drill REGION --synthetic N` (a failover exercise with synthetic tenants that measures
 * RTO and RPO). docs/failover.md. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/rand.h>

#include "audit/audit.h"
#include "failover/plan.h"
#include "tenantctl.h"
#include "util/b64.h"
#include "util/clock.h"
#include "util/pgtext.h"

static const struct tn_gvr gvr_regions = {"tenancy.dev", "v1alpha1", "regions", false};
static const struct tn_gvr gvr_secrets = {"", "v1", "secrets", true};
static const struct tn_gvr gvr_events = {"events.k8s.io", "v1", "events", true};

#define INITIAL_ROWS 50
#define WRITE_INTERVAL_US 50000 /* the writer's round: one row per tenant */

static void sleep_s(double s) {
  struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* ---- tenantctl failover REGION ------------------------------------------------------------------- */

static void usage_failover(FILE *f) {
  fprintf(f,
          "Usage: %s failover REGION [--wait] [--timeout SECONDS]\n"
          "\n"
          "Starts the failover of REGION to its standby (spec.failover.standbyRegion): sets the\n"
          "Region's spec.available to false and spec.failover.active to true. The operator then moves\n"
          "every tenant placed there whose residency allows the standby (warm: the replica is\n"
          "promoted; cold: the latest snapshot is used) and reports the others (status.failover,\n"
          "Events, audit rows). With --wait, waits for the result and prints it (default timeout 600).\n",
          tctl_prog);
}

int tctl_cmd_failover(int argc, char **argv) {
  bool wait = false;
  double timeout = 600;
  static const struct option opts[] = {{"wait", no_argument, NULL, 'w'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'w')
      wait = true;
    else if (c == 't')
      timeout = atof(optarg);
    else if (c == 'h') {
      usage_failover(stdout);
      return TCTL_EXIT_OK;
    } else
      return tctl_usage_error(argv[0], "unknown flag");
  }
  if (optind + 1 != argc)
    return tctl_usage_error(argv[0], "expected exactly one REGION");
  const char *region = argv[optind];
  struct tn_kube *k = NULL;
  int rc = tctl_connect(&k);
  if (rc)
    return rc;
  struct tn_error err = {0};
  json_t *obj = NULL;
  if (tctl_get_object(k, &gvr_regions, NULL, region, &obj, &err)) {
    rc = tctl_fail(&err, "reading the Region");
    goto out;
  }
  if (!tctl_str(obj, "spec.failover.standbyRegion")) {
    fprintf(
        stderr,
        "%s: Region %s has no spec.failover.standbyRegion: configure a standby first (docs/failover.md)\n",
        tctl_prog, region);
    rc = TCTL_EXIT_REFUSED;
    goto out;
  }
  char started[40];
  tn_time_rfc3339(tn_wall_now() - 1, started, sizeof started);
  json_t *patch = json_pack("{s:{s:b,s:{s:b}}}", "spec", "available", 0, "failover", "active", 1);
  rc = tctl_merge_patch(k, &gvr_regions, NULL, region, patch, &err);
  json_decref(patch);
  if (rc) {
    rc = tctl_fail(&err, "patching the Region");
    goto out;
  }
  printf("region %s: failover to %s started (spec.available=false, spec.failover.active=true)\n", region,
         tctl_str(obj, "spec.failover.standbyRegion"));
  rc = TCTL_EXIT_OK;
  if (!wait)
    goto out;
  double until = tn_mono_now() + timeout;
  while (tn_mono_now() < until) {
    json_decref(obj);
    obj = NULL;
    if (tctl_get_object(k, &gvr_regions, NULL, region, &obj, &err) == 0) {
      const char *done = tctl_str(obj, "status.failover.lastFailover.completedAt");
      const char *phase = tctl_str(obj, "status.failover.phase");
      if (done && strcmp(done, started) >= 0 && phase && strcmp(phase, TN_FAILOVER_PHASE_FAILED_OVER) == 0) {
        printf("%s\n", tctl_str(obj, "status.failover.lastFailover.message") ?: "");
        json_int_t failed = json_integer_value(tctl_get(obj, "status.failover.lastFailover.tenantsFailed"));
        rc = failed ? TCTL_EXIT_ERROR : TCTL_EXIT_OK;
        goto out;
      }
    }
    tn_error_clear(&err);
    sleep_s(0.5);
  }
  fprintf(stderr, "%s: the failover of region %s did not complete within %.0f s\n", tctl_prog, region,
          timeout);
  rc = TCTL_EXIT_ERROR;
out:
  json_decref(obj);
  tn_kube_free(k);
  return rc;
}

/* ---- tenantctl failover-drill REGION --synthetic N ----------------------------------------------- */

static void usage_drill(FILE *f) {
  fprintf(f,
          "Usage: %s failover-drill REGION --synthetic N [--plan PLAN] [--timeout SECONDS] [--keep]\n"
          "       [--pg-dsn DSN] [--pg-ca-file FILE]\n"
          "\n"
          "A failover exercise that touches no real tenant: creates N synthetic tenants (label\n"
          "%s=<drill id>, allowed in REGION and its standby) in REGION, writes rows into\n"
          "each (a table drill_writes) and keeps writing, waits for their copies in the standby, then\n"
          "asks the operator to fail over only them (annotation %s on the Region).\n"
          "It measures RTO (from that request to every tenant Ready in the standby with its Secret\n"
          "switched) and RPO (seconds of committed writes missing on the promoted copy), checks that\n"
          "each tenant can write in the standby, deletes the synthetic tenants (unless --keep) and\n"
          "writes a report: stdout, an Event on the Region (reason %s) and an audit row (action\n"
          "%s, needs --pg-dsn or $TENANCY_PG_DSN). Exit 0 when every tenant failed over and no\n"
          "committed row was lost, 1 otherwise.\n",
          tctl_prog, TN_LABEL_FAILOVER_DRILL, TN_ANNOTATION_FAILOVER_DRILL, TN_REASON_FAILOVER_DRILL,
          TN_AUDIT_ACTION_FAILOVER_DRILL);
}

struct dtenant {
  char name[64], ns[80];
  char orig_host[256], orig_port[16];
  PGconn *pg; /* the writer's connection to the primary */
  /* written by the writer thread, read after it stopped */
  long long committed;      /* rows committed (initial ones included) */
  double first_at, last_at; /* epoch of the first and the last committed row */
  long long last_id;
  bool write_failed;
  /* measured */
  double ready_at; /* wall time it was Ready in the standby; 0 not yet */
  long long kept_rows;
  double kept_last_at;
  double rpo;
  bool write_after_ok;
  char error[256];
};

struct drill {
  struct dtenant *t;
  int n;
  volatile int stop;
};

/* The tenant's database Secret: uri (malloc'd), CA written to a temp file (path), host, port. */
static int read_secret(struct tn_kube *k, const char *ns, char **uri, char *ca_path, size_t ca_n, char *host,
                       size_t hn, char *port, size_t pn) {
  json_t *s = NULL;
  struct tn_error err = {0};
  if (tctl_get_object(k, &gvr_secrets, ns, "tenant-database", &s, &err))
    return -1;
  json_t *data = json_object_get(s, "data");
  char *h = tn_b64_decode_text(json_string_value(json_object_get(data, "host")));
  char *p = tn_b64_decode_text(json_string_value(json_object_get(data, "port")));
  char *ca = tn_b64_decode_text(json_string_value(json_object_get(data, "ca.crt")));
  if (uri)
    *uri = tn_b64_decode_text(json_string_value(json_object_get(data, "uri")));
  json_decref(s);
  snprintf(host, hn, "%s", h ? h : "");
  snprintf(port, pn, "%s", p ? p : "");
  free(h);
  free(p);
  if (ca_path) {
    ca_path[0] = '\0';
    /* the operator's own helper: a 0600 file, fully written or not left behind */
    if (ca && tn_pg_write_ca_file(ca, ca_path, ca_n))
      ca_path[0] = '\0';
  }
  free(ca);
  return uri && !*uri ? -1 : 0;
}

static PGconn *tenant_connect(struct tn_kube *k, struct dtenant *t, char *host, size_t hn, char *port,
                              size_t pn) {
  char *uri = NULL, ca[256] = "";
  if (read_secret(k, t->ns, &uri, ca, sizeof ca, host, hn, port, pn)) {
    free(uri);
    return NULL;
  }
  const char *keys[] = {"dbname", "sslrootcert", "connect_timeout", "application_name", NULL};
  const char *vals[] = {uri, ca[0] ? ca : NULL, "5", "tenantctl-failover-drill", NULL};
  if (!ca[0])
    keys[1] = "connect_timeout", vals[1] = "5";
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (ca[0])
    unlink(ca);
  explicit_bzero(uri, strlen(uri));
  free(uri);
  if (PQstatus(c) != CONNECTION_OK) {
    snprintf(t->error, sizeof t->error, "%s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  return c;
}

static bool insert_row(PGconn *c, struct dtenant *t) {
  PGresult *r =
      PQexec(c, "INSERT INTO drill_writes(note) VALUES ('drill') RETURNING id, extract(epoch FROM at)");
  bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
  if (ok) {
    t->last_id = atoll(PQgetvalue(r, 0, 0));
    t->last_at = atof(PQgetvalue(r, 0, 1));
    if (t->first_at <= 0)
      t->first_at = t->last_at;
    t->committed++;
  }
  PQclear(r);
  return ok;
}

static void *writer(void *arg) {
  struct drill *d = arg;
  while (!d->stop) {
    for (int i = 0; i < d->n && !d->stop; i++) {
      struct dtenant *t = &d->t[i];
      if (t->write_failed || !t->pg)
        continue;
      if (!insert_row(t->pg, t))
        t->write_failed = true; /* fenced: the primary refuses from now on */
    }
    usleep(WRITE_INTERVAL_US);
  }
  return NULL;
}

static const char *cond_field(json_t *obj, const char *type, const char *field) {
  size_t i;
  json_t *c;
  json_array_foreach(tctl_get(obj, "status.conditions"), i, c) {
    const char *ty = json_string_value(json_object_get(c, "type"));
    if (ty && strcmp(ty, type) == 0)
      return json_string_value(json_object_get(c, field));
  }
  return NULL;
}

static int create_event(struct tn_kube *k, json_t *region, const char *type, const char *note) {
  char now[64];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%S", &tm);
  size_t l = strlen(now);
  snprintf(now + l, sizeof now - l, ".%06ldZ", ts.tv_nsec / 1000);
  char host[64] = "tenantctl";
  gethostname(host, sizeof host - 1);
  const char *ns = tctl_g.namespace ? tctl_g.namespace : "default";
  char gen[96];
  snprintf(gen, sizeof gen, "%s-drill-", tctl_str(region, "metadata.name"));
  char trimmed[1024];
  snprintf(trimmed, sizeof trimmed, "%s", note);
  json_t *ev =
      json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s}}", "apiVersion",
                "events.k8s.io/v1", "kind", "Event", "metadata", "generateName", gen, "namespace", ns,
                "eventTime", now, "reportingController", "tenancy.dev/tenantctl", "reportingInstance", host,
                "action", "FailoverDrill", "reason", TN_REASON_FAILOVER_DRILL, "type", type, "note", trimmed,
                "regarding", "apiVersion", TN_API_VERSION, "kind", "Region", "name",
                tctl_str(region, "metadata.name"), "uid", tctl_str(region, "metadata.uid") ?: "");
  struct tn_error err = {0};
  int rc = tn_kube_create(k, &gvr_events, ns, ev, NULL, &err);
  json_decref(ev);
  if (rc)
    fprintf(stderr, "%s: warning: the drill's Event could not be written: %s\n", tctl_prog, err.message);
  return rc;
}

static int drill_audit(const char *dsn, const char *ca_file, const char *region, const char *drill_id,
                       bool ok, json_t *details) {
  if (!dsn || !*dsn) {
    fprintf(stderr, "%s: warning: no audit row: pass --pg-dsn or set TENANCY_PG_DSN\n", tctl_prog);
    return -1;
  }
  struct tn_audit *a = NULL;
  struct tn_error err = {0};
  struct tn_audit_options o = {.no_create = true, .application_name = "tenantctl", .ca_file = ca_file};
  if (tn_audit_open(dsn, &o, &a, &err)) {
    fprintf(stderr, "%s: warning: no audit row: %s\n", tctl_prog, err.message);
    return -1;
  }
  char target[128], *d = json_dumps(details, JSON_COMPACT);
  snprintf(target, sizeof target, "region/%s", region);
  const char *actor = getenv("USER") ? getenv("USER") : "tenantctl";
  struct tn_audit_event ev = {.actor = actor,
                              .action = TN_AUDIT_ACTION_FAILOVER_DRILL,
                              .target = target,
                              .correlation_id = drill_id,
                              .outcome = ok ? TN_AUDIT_SUCCEEDED : TN_AUDIT_FAILED,
                              .details = d};
  int rc = tn_audit_append(a, &ev, NULL, &err);
  if (rc)
    fprintf(stderr, "%s: warning: the drill's audit row could not be written: %s\n", tctl_prog, err.message);
  free(d);
  tn_audit_close(a);
  return rc;
}

/* Moves the synthetic tenants to Deleted and removes them (Archived, then Deleted with the
 * confirmation, then DELETE: the path the admission webhook allows). */
static void cleanup(struct tn_kube *k, struct dtenant *t, int n, double timeout) {
  struct tn_error err = {0};
  const char *steps[] = {"Archived", "Deleted"};
  for (int s = 0; s < 2; s++) {
    for (int i = 0; i < n; i++) {
      json_t *patch =
          s == 0 ? json_pack("{s:{s:s}}", "spec", "state", steps[s])
                 : json_pack("{s:{s:s,s:s}}", "spec", "state", steps[s], "deletionConfirmation", t[i].name);
      tctl_merge_patch(k, &tctl_tenants_gvr, NULL, t[i].name, patch, &err);
      tn_error_clear(&err);
      json_decref(patch);
    }
    double until = tn_mono_now() + timeout;
    for (int i = 0; i < n && tn_mono_now() < until;) {
      json_t *o = NULL;
      if (tctl_get_object(k, &tctl_tenants_gvr, NULL, t[i].name, &o, &err) == 0) {
        const char *st = tctl_str(o, "status.state");
        bool there = st && strcmp(st, steps[s]) == 0;
        json_decref(o);
        if (!there) {
          sleep_s(0.3);
          continue;
        }
      }
      tn_error_clear(&err);
      i++;
    }
  }
  for (int i = 0; i < n; i++) {
    tn_kube_delete(k, &tctl_tenants_gvr, NULL, t[i].name, NULL, &err);
    tn_error_clear(&err);
  }
}

int tctl_cmd_failover_drill(int argc, char **argv) {
  long n = 0;
  const char *plan = "standard", *dsn = NULL, *ca_file = NULL;
  double timeout = 600;
  bool keep = false;
  static const struct option opts[] = {{"synthetic", required_argument, NULL, 's'},
                                       {"plan", required_argument, NULL, 'p'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"keep", no_argument, NULL, 'k'},
                                       {"pg-dsn", required_argument, NULL, 'd'},
                                       {"pg-ca-file", required_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 's':
      n = strtol(optarg, NULL, 10);
      break;
    case 'p':
      plan = optarg;
      break;
    case 't':
      timeout = atof(optarg);
      break;
    case 'k':
      keep = true;
      break;
    case 'd':
      dsn = optarg;
      break;
    case 'c':
      ca_file = optarg;
      break;
    case 'h':
      usage_drill(stdout);
      return TCTL_EXIT_OK;
    default:
      return tctl_usage_error(argv[0], "unknown flag");
    }
  }
  if (optind + 1 != argc)
    return tctl_usage_error(argv[0], "expected exactly one REGION");
  if (n < 1 || n > 500)
    return tctl_usage_error(argv[0], "--synthetic N: N must be 1 to 500");
  if (!dsn)
    dsn = getenv("TENANCY_PG_DSN");
  if (!ca_file)
    ca_file = getenv("TENANCY_PG_CA_FILE");
  const char *region = argv[optind];
  struct tn_kube *k = NULL;
  int rc = tctl_connect(&k);
  if (rc)
    return rc;
  struct tn_error err = {0};
  json_t *robj = NULL;
  struct drill d = {0};
  pthread_t wt;
  bool writer_running = false, annotated = false;
  if (tctl_get_object(k, &gvr_regions, NULL, region, &robj, &err)) {
    rc = tctl_fail(&err, "reading the Region");
    goto out;
  }
  const char *standby = tctl_str(robj, "spec.failover.standbyRegion");
  const char *mode = tctl_str(robj, "spec.failover.mode") ?: "warm";
  if (!standby) {
    fprintf(stderr, "%s: Region %s has no spec.failover.standbyRegion: nothing to drill\n", tctl_prog,
            region);
    rc = TCTL_EXIT_REFUSED;
    goto out;
  }
  if (!json_is_true(tctl_get(robj, "spec.available"))) {
    fprintf(stderr,
            "%s: Region %s is not available (spec.available false): synthetic tenants cannot be placed\n",
            tctl_prog, region);
    rc = TCTL_EXIT_REFUSED;
    goto out;
  }
  char standby_s[64];
  snprintf(standby_s, sizeof standby_s, "%s", standby);
  unsigned char rnd[4];
  RAND_bytes(rnd, sizeof rnd);
  char id[32];
  snprintf(id, sizeof id, "fd-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
  d.n = (int)n;
  d.t = calloc((size_t)n, sizeof *d.t);
  if (!d.t) {
    rc = TCTL_EXIT_ERROR;
    goto out;
  }
  printf("drill %s: region %s -> %s (%s), %ld synthetic tenant(s)\n", id, region, standby_s, mode, n);
  fflush(stdout);
  double t_start = tn_mono_now(), until = t_start + timeout;
  /* 1. The synthetic tenants. */
  for (int i = 0; i < d.n; i++) {
    struct dtenant *t = &d.t[i];
    snprintf(t->name, sizeof t->name, "%s-%03d", id, i);
    snprintf(t->ns, sizeof t->ns, "%s-drill", t->name);
    json_t *obj =
        json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:{s:s,s:s,s:s,s:s,s:[s],s:{s:[s,s],s:s}}}", "apiVersion",
                  TN_API_VERSION, "kind", "Tenant", "metadata", "name", t->name, "labels",
                  TN_LABEL_FAILOVER_DRILL, id, "spec", "displayName", "failover drill synthetic tenant",
                  "state", "Active", "plan", plan, "isolation", "shared", "environments", "drill",
                  "residency", "allowedRegions", region, standby_s, "preferredRegion", region);
    rc = tctl_create(k, &tctl_tenants_gvr, obj, false, NULL, &err);
    json_decref(obj);
    if (rc) {
      d.n = i;
      rc = tctl_fail(&err, "creating a synthetic tenant");
      goto out;
    }
  }
  /* 2. Ready in the region, with their Secrets. */
  for (int i = 0; i < d.n; i++) {
    struct dtenant *t = &d.t[i];
    for (;;) {
      json_t *o = NULL;
      bool ok = false;
      if (tctl_get_object(k, &tctl_tenants_gvr, NULL, t->name, &o, &err) == 0) {
        const char *ready = cond_field(o, "Ready", "status"), *reg = tctl_str(o, "status.placement.region");
        ok = ready && strcmp(ready, "True") == 0 && reg && strcmp(reg, region) == 0;
      }
      tn_error_clear(&err);
      json_decref(o);
      if (ok &&
          read_secret(k, t->ns, NULL, NULL, 0, t->orig_host, sizeof t->orig_host, t->orig_port,
                      sizeof t->orig_port) == 0 &&
          t->orig_host[0])
        break;
      if (tn_mono_now() > until) {
        fprintf(stderr, "%s: tenant %s did not become Ready in region %s\n", tctl_prog, t->name, region);
        rc = TCTL_EXIT_ERROR;
        goto out;
      }
      sleep_s(0.3);
    }
  }
  printf("  %d tenant(s) Ready in %s after %.1f s; writing data\n", d.n, region, tn_mono_now() - t_start);
  fflush(stdout);
  /* 3. Data: a table, rows, and a steady writer. */
  for (int i = 0; i < d.n; i++) {
    struct dtenant *t = &d.t[i];
    char h[256], p[16];
    double retry_until = tn_mono_now() + 30;
    while (!(t->pg = tenant_connect(k, t, h, sizeof h, p, sizeof p)) && tn_mono_now() < retry_until)
      sleep_s(0.5);
    if (!t->pg) {
      fprintf(stderr, "%s: cannot connect as tenant %s: %s\n", tctl_prog, t->name, t->error);
      rc = TCTL_EXIT_ERROR;
      goto out;
    }
    PGresult *r = PQexec(t->pg, "CREATE TABLE drill_writes(id bigserial PRIMARY KEY, at timestamptz NOT NULL "
                                "DEFAULT clock_timestamp(), note text)");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
      fprintf(stderr, "%s: tenant %s: %s", tctl_prog, t->name, PQresultErrorMessage(r));
    PQclear(r);
    for (int j = 0; ok && j < INITIAL_ROWS; j++)
      ok = insert_row(t->pg, t);
    if (!ok) {
      rc = TCTL_EXIT_ERROR;
      goto out;
    }
  }
  if (pthread_create(&wt, NULL, writer, &d) == 0)
    writer_running = true;
  /* 4. Copies complete in the standby. */
  char data_at[40];
  tn_time_rfc3339(tn_wall_now(), data_at, sizeof data_at);
  for (;;) {
    json_t *o = NULL;
    bool ok = false;
    if (tctl_get_object(k, &gvr_regions, NULL, region, &o, &err) == 0) {
      json_int_t total = json_integer_value(tctl_get(o, "status.failover.replicasTotal"));
      json_int_t ready = json_integer_value(tctl_get(o, "status.failover.replicasReady"));
      const char *snap = tctl_str(o, "status.failover.lastSnapshotTime");
      ok = total >= d.n && ready == total &&
           (strcmp(mode, "cold") != 0 || (snap && strcmp(snap, data_at) > 0));
    }
    tn_error_clear(&err);
    json_decref(o);
    if (ok)
      break;
    if (tn_mono_now() > until) {
      fprintf(stderr, "%s: the copies in %s were not complete in time (status.failover of Region %s)\n",
              tctl_prog, standby_s, region);
      rc = TCTL_EXIT_ERROR;
      goto out;
    }
    sleep_s(0.5);
  }
  printf("  copies in %s complete after %.1f s; failing over\n", standby_s, tn_mono_now() - t_start);
  fflush(stdout);
  sleep_s(1.0); /* a second of steady writes before the failover */
  /* 5. Fail over (only this drill's tenants). */
  double t0 = tn_wall_now();
  json_t *patch = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", TN_ANNOTATION_FAILOVER_DRILL, id);
  rc = tctl_merge_patch(k, &gvr_regions, NULL, region, patch, &err);
  json_decref(patch);
  if (rc) {
    rc = tctl_fail(&err, "annotating the Region");
    goto out;
  }
  annotated = true;
  int done = 0;
  while (done < d.n && tn_mono_now() < until) {
    for (int i = 0; i < d.n; i++) {
      struct dtenant *t = &d.t[i];
      if (t->ready_at > 0)
        continue;
      json_t *o = NULL;
      if (tctl_get_object(k, &tctl_tenants_gvr, NULL, t->name, &o, &err) == 0) {
        const char *reg = tctl_str(o, "status.placement.region"), *ready = cond_field(o, "Ready", "status");
        char h[256], p[16];
        if (reg && strcmp(reg, standby_s) == 0 && ready && strcmp(ready, "True") == 0 &&
            read_secret(k, t->ns, NULL, NULL, 0, h, sizeof h, p, sizeof p) == 0 &&
            (strcmp(h, t->orig_host) != 0 || strcmp(p, t->orig_port) != 0)) {
          t->ready_at = tn_wall_now();
          done++;
        }
      }
      tn_error_clear(&err);
      json_decref(o);
    }
    if (done < d.n)
      sleep_s(0.2);
  }
  double t1 = tn_wall_now();
  d.stop = 1;
  if (writer_running)
    pthread_join(wt, NULL);
  writer_running = false;
  /* 6. What the standby kept, and whether it takes writes. */
  double *rtos = calloc((size_t)d.n, sizeof *rtos), *rpos = calloc((size_t)d.n, sizeof *rpos);
  long long committed = 0, lost = 0;
  int moved = 0, writable = 0;
  for (int i = 0; i < d.n; i++) {
    struct dtenant *t = &d.t[i];
    committed += t->committed;
    if (t->ready_at <= 0)
      continue;
    rtos[moved] = t->ready_at - t0;
    char h[256], p[16];
    PGconn *c2 = tenant_connect(k, t, h, sizeof h, p, sizeof p);
    if (c2) {
      PGresult *r = PQexec(c2, "SELECT count(*), coalesce(extract(epoch FROM max(at)), 0) FROM drill_writes");
      if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        t->kept_rows = atoll(PQgetvalue(r, 0, 0));
        t->kept_last_at = atof(PQgetvalue(r, 0, 1));
      }
      PQclear(r);
      long long before = t->last_id;
      struct dtenant probe = *t;
      t->write_after_ok = insert_row(c2, &probe) && probe.last_id > before;
      writable += t->write_after_ok;
      PQfinish(c2);
    }
    t->rpo = tn_failover_rpo_seconds(t->first_at, t->last_at, t->kept_last_at);
    rpos[moved] = t->rpo;
    lost += t->committed > t->kept_rows ? t->committed - t->kept_rows : 0;
    moved++;
  }
  struct tn_failover_stats rto, rpo;
  tn_failover_stats_of(rtos, (size_t)moved, &rto);
  tn_failover_stats_of(rpos, (size_t)moved, &rpo);
  free(rtos);
  free(rpos);
  bool cold = strcmp(mode, "cold") == 0;
  double rto_target = cold ? 600 : 60, rpo_target = cold ? -1 : 5;
  bool ok = moved == d.n && writable == d.n && lost == 0;
  char report[1024];
  snprintf(
      report, sizeof report,
      "failover drill %s of region %s -> %s (%s): %d/%d synthetic tenants failed over; RTO %.1f s (p50 %.1f, "
      "p95 %.1f; target < %.0f s: %s); RPO %.2f s (max over tenants; %lld of %lld committed rows lost%s%s); "
      "%d/%d tenants write in %s",
      id, region, standby_s, mode, moved, d.n, moved ? rto.max : t1 - t0, rto.p50, rto.p95, rto_target,
      moved == d.n && rto.max < rto_target ? "met" : "MISSED", rpo.max, lost, committed,
      rpo_target > 0 ? (rpo.max < rpo_target ? "; target < 5 s: met" : "; target < 5 s: MISSED") : "",
      cold ? "; cold: bounded by the snapshot interval" : "", writable, d.n, standby_s);
  printf("%s\n", report);
  printf("RTO: %.2f s\nRPO: %.2f s\nrows committed: %lld\nrows lost: %lld\ntenants moved: %d/%d\n",
         moved ? rto.max : t1 - t0, rpo.max, committed, lost, moved, d.n);
  fflush(stdout);
  create_event(k, robj, ok ? "Normal" : "Warning", report);
  json_t *details = json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:f,s:f,s:f,s:f,s:I,s:I,s:i}", "drill", id, "region",
                              region, "standby", standby_s, "mode", mode, "tenants", d.n, "moved", moved,
                              "rtoSeconds", moved ? rto.max : t1 - t0, "rtoP50Seconds", rto.p50,
                              "rtoP95Seconds", rto.p95, "rpoSeconds", rpo.max, "rowsCommitted",
                              (json_int_t)committed, "rowsLost", (json_int_t)lost, "writableAfter", writable);
  drill_audit(dsn, ca_file, region, id, ok, details);
  json_decref(details);
  rc = ok ? TCTL_EXIT_OK : TCTL_EXIT_ERROR;
out:
  d.stop = 1;
  if (writer_running)
    pthread_join(wt, NULL);
  for (int i = 0; d.t && i < d.n; i++)
    PQfinish(d.t[i].pg);
  if (annotated) {
    json_t *un = json_pack("{s:{s:{s:n}}}", "metadata", "annotations", TN_ANNOTATION_FAILOVER_DRILL);
    tctl_merge_patch(k, &gvr_regions, NULL, region, un, &err);
    tn_error_clear(&err);
    json_decref(un);
  }
  if (d.t && !keep && d.n > 0) {
    cleanup(k, d.t, d.n, 120);
    printf("  synthetic tenants removed\n");
  }
  free(d.t);
  json_decref(robj);
  tn_kube_free(k);
  return rc;
}
