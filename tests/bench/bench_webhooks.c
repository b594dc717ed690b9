/* bench_webhooks.c - webhook delivery (operator/webhooks/delivery.c) to a local HTTPS receiver:
 *
 *   1. throughput: a backlog of --events (default 20,000) events over --tenants (default 256)
 *      tenants is delivered; deliveries per second from the engine's start to the last 2xx;
 *   2. latency: events committed at --rate per second (default 1,000) for --seconds (default 10)
 *      while the receiver is healthy; p50/p99/max from the outbox commit to the receiver's answer;
 *   3. outage: the receiver is down while --outage-events (default 100,000) events are committed;
 *      the process' RSS (the engine runs in it) is sampled while it retries: it must stay flat
 *      (the backlog waits in PostgreSQL); then the receiver comes back and the drain rate is printed.
 *
 *   bench_webhooks [--events N] [--tenants N] [--rate N] [--seconds S] [--outage-events N]
 *
 * PostgreSQL: $TENANCY_PG_DSN (this machine's stack: `source .local/cluster.env`); without it a
 * private stack is started with hack/cluster-up.sh in .local/bench-webhooks and stopped at the end.
 * Works in a schema of its own (dropped at the end). Prints figures; asserts nothing. The receiver
 * is a minimal HTTP/1.1-over-TLS server in this process (a thread per connection, keep-alive, 204):
 * on a 2-core machine it, PostgreSQL and the engine share the CPUs. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/metrics.h"
#include "webhooks/delivery.h"

#define MAX_LAT 400000
static double lat[MAX_LAT];
static atomic_long n_lat;
static atomic_long received;
static atomic_bool recording;
static char schema[64], tmpdir[256];

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return system(cmd);
}

/* The receiver: a minimal HTTP/1.1 server over TLS (OpenSSL), one thread per connection, keep-alive,
 * answering 204 to every POST. Small on purpose, so that it measures the sender. */
struct rcv {
  SSL_CTX *ctx;
  int fd;
  atomic_bool stop;
  pthread_t th;
};

/* The open connections, so that a stop cuts them too (a consumer that is down answers nothing). */
#define MAX_CONNS 1024
static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static int conns[MAX_CONNS];
static atomic_bool refusing;

static bool conn_track(int fd, bool add) {
  bool ok = !add;
  pthread_mutex_lock(&conns_mu);
  for (int i = 0; i < MAX_CONNS; i++)
    if (add && conns[i] == 0 && !atomic_load(&refusing)) {
      conns[i] = fd + 1;
      ok = true;
      break;
    } else if (!add && conns[i] == fd + 1) {
      conns[i] = 0;
      break;
    }
  pthread_mutex_unlock(&conns_mu);
  return ok;
}

static void conns_cut(void) {
  pthread_mutex_lock(&conns_mu);
  for (int i = 0; i < MAX_CONNS; i++)
    if (conns[i])
      shutdown(conns[i] - 1, SHUT_RDWR);
  pthread_mutex_unlock(&conns_mu);
}

static void record(const char *body) {
  const char *t = strstr(body, "\"t\": ");
  if (t && atomic_load(&recording)) {
    long i = atomic_fetch_add(&n_lat, 1);
    if (i < MAX_LAT)
      lat[i] = wall() - atof(t + 5);
  }
  atomic_fetch_add(&received, 1);
}

static void *conn_main(void *arg) {
  SSL *ssl = arg;
  char buf[65536];
  size_t have = 0;
  if (!conn_track(SSL_get_fd(ssl), true))
    goto out;
  if (SSL_accept(ssl) == 1) {
    for (;;) {
      char *end = NULL;
      while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
        if (have == sizeof buf)
          goto out;
        int n = SSL_read(ssl, buf + have, (int)(sizeof buf - have));
        if (n <= 0)
          goto out;
        have += (size_t)n;
      }
      size_t hlen = (size_t)(end - buf) + 4, clen = 0;
      const char *cl = strcasestr(buf, "content-length:");
      if (cl && cl < end)
        clen = strtoul(cl + 15, NULL, 10);
      if (hlen + clen >= sizeof buf)
        goto out;
      while (have < hlen + clen) {
        int n = SSL_read(ssl, buf + have, (int)(sizeof buf - have));
        if (n <= 0)
          goto out;
        have += (size_t)n;
      }
      char c = buf[hlen + clen];
      buf[hlen + clen] = '\0';
      if (atomic_load(&refusing))
        goto out; /* down: no answer */
      record(buf + hlen);
      buf[hlen + clen] = c;
      static const char ok[] = "HTTP/1.1 204 No Content\r\n\r\n";
      if (SSL_write(ssl, ok, sizeof ok - 1) <= 0)
        goto out;
      memmove(buf, buf + hlen + clen, have - hlen - clen);
      have -= hlen + clen;
    }
  }
out:
  conn_track(SSL_get_fd(ssl), false);
  close(SSL_get_fd(ssl));
  SSL_free(ssl);
  return NULL;
}

static void *accept_main(void *arg) {
  struct rcv *r = arg;
  while (!atomic_load(&r->stop)) {
    int c = accept(r->fd, NULL, NULL);
    if (c < 0)
      continue;
    if (atomic_load(&r->stop)) {
      close(c);
      break;
    }
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *ssl = SSL_new(r->ctx);
    SSL_set_fd(ssl, c);
    pthread_t t;
    if (pthread_create(&t, NULL, conn_main, ssl) == 0)
      pthread_detach(t);
  }
  return NULL;
}

static struct rcv *receiver(int port) {
  struct rcv *r = calloc(1, sizeof *r);
  char cert[300], key[300];
  snprintf(cert, sizeof cert, "%s/cert.pem", tmpdir);
  snprintf(key, sizeof key, "%s/key.pem", tmpdir);
  r->ctx = SSL_CTX_new(TLS_server_method());
  if (!r->ctx || SSL_CTX_use_certificate_chain_file(r->ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(r->ctx, key, SSL_FILETYPE_PEM) != 1) {
    fprintf(stderr, "bench_webhooks: receiver TLS setup failed\n");
    exit(1);
  }
  r->fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(r->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(r->fd, (struct sockaddr *)&a, sizeof a) || listen(r->fd, 512)) {
    perror("bench_webhooks: receiver bind");
    exit(1);
  }
  atomic_store(&refusing, false);
  pthread_create(&r->th, NULL, accept_main, r);
  return r;
}

/* Stops accepting and refuses new connections (open ones are shut down). */
static void receiver_stop(struct rcv *r) {
  atomic_store(&refusing, true);
  conns_cut();
  atomic_store(&r->stop, true);
  shutdown(r->fd, SHUT_RDWR);
  close(r->fd);
  pthread_join(r->th, NULL);
  SSL_CTX_free(r->ctx);
  free(r);
}

static void q(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
    fprintf(stderr, "bench_webhooks: %s: %s\n", sql, PQresultErrorMessage(r));
    exit(1);
  }
  PQclear(r);
}

/* Commits n events spread round-robin over the tenants, in one transaction; data.t = commit-ish time. */
static void emit(PGconn *c, int n, int tenants) {
  char sql[2048];
  snprintf(sql, sizeof sql,
           "WITH r AS (SELECT 't' || (g %% %d) AS tenant, gen_random_uuid()::text AS u, g FROM "
           "generate_series(1, %d) g), "
           "s AS (SELECT r.*, COALESCE((SELECT max(tenant_seq) FROM \"%s\".outbox o WHERE o.tenant = "
           "r.tenant), 0) + "
           "row_number() OVER (PARTITION BY r.tenant ORDER BY g) AS ts FROM r) "
           "INSERT INTO \"%s\".outbox (tenant, tenant_seq, id, type, event) SELECT tenant, ts, u, "
           "'dev.tenancy.tenant.updated.v1', jsonb_build_object('specversion', '1.0', 'id', u, 'source', "
           "'tenancy.dev/bench', 'type', 'dev.tenancy.tenant.updated.v1', 'subject', 'tenant/' || tenant, "
           "'datacontenttype', 'application/json', 'tenancysequence', ts, 'data', jsonb_build_object('t', "
           "extract(epoch FROM clock_timestamp())::float8)) FROM s ORDER BY g",
           tenants, n, schema, schema);
  q(c, sql);
}

static double rss_mb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
      res = 0;
    fclose(f);
  }
  return (double)res * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void wait_received(long want, double timeout_s) {
  double end = wall() + timeout_s;
  while (atomic_load(&received) < want && wall() < end)
    usleep(20000);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN); /* the receiver writes to connections its stop cut */
  int events = 20000, tenants = 256, rate = 1000, seconds = 10, outage = 100000;
  static const struct option opts[] = {
      {"events", required_argument, NULL, 'e'},        {"tenants", required_argument, NULL, 't'},
      {"rate", required_argument, NULL, 'r'},          {"seconds", required_argument, NULL, 's'},
      {"outage-events", required_argument, NULL, 'o'}, {NULL, 0, NULL, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (opt) {
    case 'e':
      events = atoi(optarg);
      break;
    case 't':
      tenants = atoi(optarg);
      break;
    case 'r':
      rate = atoi(optarg);
      break;
    case 's':
      seconds = atoi(optarg);
      break;
    case 'o':
      outage = atoi(optarg);
      break;
    default:
      fprintf(
          stderr,
          "usage: bench_webhooks [--events N] [--tenants N] [--rate N] [--seconds S] [--outage-events N]\n");
      return 2;
    }
  }
  char root[512] = ".", state[600] = "";
  if (!getcwd(root, sizeof root))
    strcpy(root, ".");
  const char *dsn = getenv("TENANCY_PG_DSN");
  static char dsn_buf[1024];
  if (!dsn || !*dsn) {
    snprintf(state, sizeof state, "%s/.local/bench-webhooks", root);
    fprintf(stderr, "bench_webhooks: TENANCY_PG_DSN is not set: starting a private stack in %s\n", state);
    if (sh("TENANCY_STATE_DIR='%s' '%s/hack/cluster-up.sh' >/dev/null", state, root) != 0) {
      fprintf(stderr, "bench_webhooks: cannot start the stack\n");
      return 1;
    }
    char cmd[800];
    snprintf(cmd, sizeof cmd, "bash -c '. \"%s/cluster.env\" && printf %%s \"$TENANCY_PG_DSN\"'", state);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(dsn_buf, sizeof dsn_buf, p)) {
      fprintf(stderr, "bench_webhooks: no DSN in the stack's cluster.env\n");
      return 1;
    }
    pclose(p);
    dsn = dsn_buf;
  }
  snprintf(schema, sizeof schema, "bench_webhooks_%ld", (long)getpid());
  snprintf(tmpdir, sizeof tmpdir, "/tmp/bench-webhooks-%ld", (long)getpid());
  mkdir(tmpdir, 0700);
  if (sh("cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -keyout "
         "key.pem "
         "-out cert.pem -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null",
         tmpdir)) {
    fprintf(stderr, "bench_webhooks: openssl failed\n");
    return 1;
  }
  PGconn *c = PQconnectdb(dsn);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "bench_webhooks: cannot connect to PostgreSQL: %s", PQerrorMessage(c));
    return 1;
  }
  char sql[1024];
  snprintf(
      sql, sizeof sql,
      "SET client_min_messages = warning; CREATE SCHEMA \"%s\"; CREATE TABLE \"%s\".outbox (seq bigserial "
      "PRIMARY KEY, tenant text NOT NULL, tenant_seq bigint NOT NULL, id text NOT NULL UNIQUE, type text NOT "
      "NULL, audit_id bigint, labels jsonb NOT NULL DEFAULT '{}'::jsonb, event jsonb NOT NULL, created_at "
      "timestamptz NOT NULL DEFAULT clock_timestamp(), CONSTRAINT outbox_tenant_seq_key UNIQUE (tenant, "
      "tenant_seq))",
      schema, schema);
  q(c, sql);

  /* A free port: bind 0, read it, close. */
  int port = 0;
  {
    char cmd[] = "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); "
                 "print(s.getsockname()[1])'";
    FILE *p = popen(cmd, "r");
    if (!p || fscanf(p, "%d", &port) != 1)
      return 1;
    pclose(p);
  }
  struct rcv *rcv = receiver(port);
  fprintf(stderr, "bench_webhooks: receiver on https://127.0.0.1:%d/hooks\n", port);
  char url[128], *ca = NULL;
  snprintf(url, sizeof url, "https://127.0.0.1:%d/hooks", port);
  {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "base64 -w0 '%s/cert.pem'", tmpdir);
    FILE *p = popen(cmd, "r");
    static char b[8192];
    size_t n = p ? fread(b, 1, sizeof b - 1, p) : 0;
    b[n] = '\0';
    if (p)
      pclose(p);
    ca = b;
  }
  json_t *obj = json_pack("{s:{s:s},s:{s:s,s:s,s:i}}", "metadata", "name", "bench", "spec", "url", url,
                          "caBundle", ca, "maxAttempts", 100); /* the outage must not dead-letter */
  struct tn_wh_subscription *sub = NULL;
  struct tn_error err = {0};
  const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  if (tn_wh_subscription_parse(obj, secret, strlen(secret), &sub, &err)) {
    fprintf(stderr, "bench_webhooks: %s\n", err.message);
    return 1;
  }
  json_decref(obj);
  struct tn_metrics *metrics = tn_metrics_new();
  struct tn_delivery_config dc = {.dsn = dsn, .schema = schema, .metrics = metrics, .backoff_max_s = 2};
  struct tn_delivery *d = NULL;
  if (tn_delivery_new(&dc, &d, &err)) {
    fprintf(stderr, "bench_webhooks: %s\n", err.message);
    return 1;
  }
  tn_delivery_put(d, sub);

  /* 1. throughput from a backlog */
  for (int left = events; left > 0; left -= 5000)
    emit(c, left < 5000 ? left : 5000, tenants);
  double t0 = wall();
  tn_delivery_start(d, &err);
  wait_received(events, 300);
  double dt = wall() - t0;
  long got = atomic_load(&received);
  printf("webhook throughput: %ld events over %d tenants delivered in %.2f s: %.0f deliveries/s\n", got,
         tenants, dt, (double)got / dt);

  /* 2. latency at a steady rate while the receiver is healthy */
  atomic_store(&n_lat, 0);
  atomic_store(&recording, true);
  long base = atomic_load(&received);
  int per_tick = rate / 20 > 0 ? rate / 20 : 1;
  double start = wall();
  long sent = 0;
  for (int tick = 0; tick < seconds * 20; tick++) {
    emit(c, per_tick, tenants);
    sent += per_tick;
    double next = start + (tick + 1) * 0.05;
    double now = wall();
    if (next > now)
      usleep((useconds_t)((next - now) * 1e6));
  }
  wait_received(base + sent, 60);
  atomic_store(&recording, false);
  long n = atomic_load(&n_lat);
  if (n > MAX_LAT)
    n = MAX_LAT;
  qsort(lat, (size_t)n, sizeof *lat, cmp);
  if (n > 0)
    printf("webhook latency at %d events/s for %d s (%ld delivered): commit->delivered p50 %.1f ms, p99 %.1f "
           "ms, "
           "max %.1f ms\n",
           rate, seconds, n, lat[n / 2] * 1000, lat[(long)(n * 0.99)] * 1000, lat[n - 1] * 1000);

  /* 3. the receiver down while 100,000 events are committed: RSS must stay flat */
  receiver_stop(rcv);
  double rss0 = rss_mb(), rss_max = rss0;
  base = atomic_load(&received);
  for (int left = outage; left > 0; left -= 5000) {
    emit(c, left < 5000 ? left : 5000, tenants);
    double r = rss_mb();
    if (r > rss_max)
      rss_max = r;
  }
  for (int i = 0; i < 20; i++) {
    sleep(1);
    double r = rss_mb();
    if (r > rss_max)
      rss_max = r;
  }
  struct tn_wh_status st;
  tn_delivery_status(d, "bench", &st);
  printf("webhook outage: %d events committed with the receiver down, backlog %lld; RSS %.1f MB before, %.1f "
         "MB max "
         "over 20 s of retries (+%.1f MB)\n",
         outage, st.backlog, rss0, rss_max, rss_max - rss0);
  rcv = receiver(port);
  t0 = wall();
  wait_received(base + outage, 600);
  dt = wall() - t0;
  printf("webhook drain after the outage: %ld events in %.1f s: %.0f deliveries/s; RSS %.1f MB\n",
         atomic_load(&received) - base, dt, (double)(atomic_load(&received) - base) / dt, rss_mb());

  tn_delivery_free(d);
  receiver_stop(rcv);
  tn_metrics_free(metrics);
  snprintf(sql, sizeof sql, "DROP SCHEMA \"%s\" CASCADE", schema);
  q(c, sql);
  PQfinish(c);
  sh("rm -rf '%s'", tmpdir);
  if (state[0])
    sh("TENANCY_STATE_DIR='%s' '%s/hack/cluster-down.sh' >/dev/null 2>&1", state, root);
  return 0;
}
