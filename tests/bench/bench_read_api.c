/* bench_read_api.c - the read API's throughput and latency: lookups by id and filtered pages per
 * second with p50/p99, from keep-alive HTTPS clients, with N tenants (default 10,000) cached by a
 * standby operator; the baseline is the same lookups through the API server (a direct GET with the
 * same token on keep-alive connections, and a few `kubectl get -o json`).
 *
 *   bench_read_api [--tenants N] [--clients N] [--seconds S] [--api-workers N] [--api-only] [--keep]
 *                  [--depth N] [--conns N] [--directory-only]
 *
 * The directory phase measures what the admin console's directory asks for (docs/console.md):
 * a page of 50 with the counts by state (GET /api/v1/tenants?limit=50&counts=state), unfiltered,
 * searched, and the tenth page (continue token), one request at a time on one keep-alive
 * connection, against the console's target of 300 ms with 10,000 tenants; and, for comparison,
 * what the directory asked before (the page and five lists of up to 1,000 a state for the
 * counts). --directory-only measures only that.
 *
 * The read API is measured first with a raw pipelined client (OpenSSL, --conns keep-alive
 * connections per client thread, --depth requests in flight on each, default 2 x 16), then with
 * libcurl (one request at a time per connection) as before.
 *
 * Prints figures; asserts nothing. The cluster is the one $KUBECONFIG names (this machine's);
 * without KUBECONFIG a private stack is started with hack/cluster-up.sh in .local/bench-readapi and
 * stopped at the end. The operator is $TENANCY_OPERATOR_BIN, else build/bin/tenancy-operator (the
 * release build), with --api-workers service threads (default: its own default, the CPUs it may use).
 * --api-only skips the baselines. --keep keeps the tenants for the next run.
 * Every line gives the operator's CPU per request and the bench's own (the HTTPS clients, the
 * same machine): on a shared 2-core machine the clients' CPU is CPU the server does not get.
 * Method and figures: docs/read-api.md. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kube/client.h"
#include "util/buf.h"
#include "util/error.h"

#define LABEL "bench.tenancy.dev/read-api"

static struct {
  int tenants;
  int clients;
  double seconds;
  bool keep;
  int api_workers; /* 0: the operator's default */
  bool api_only;
  int depth; /* pipelined requests in flight per connection (the raw client) */
  int conns; /* connections per client thread (the raw client) */
  bool directory_only;
} opt = {10000, 2, 10, false, 0, false, 16, 2, false};

static char root[PATH_MAX];
static char dir[PATH_MAX]; /* certificate */
static char token[4096];
static int api_port;
static pid_t op_pid;
static const struct tn_gvr gvr_tenants = {"tenancy.dev", "v1alpha1", "tenants", false};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
}

static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(s, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(s, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(s);
  return port;
}

static struct tn_kube *kube(void) {
  static struct tn_kube *k;
  if (k)
    return k;
  struct tn_kube_config cfg = {0};
  struct tn_error err;
  tn_error_clear(&err);
  if (tn_kube_config_auto(NULL, &cfg, &err) || tn_kube_new(&cfg, NULL, &k, &err)) {
    fprintf(stderr, "bench_read_api: %s\n", err.message);
    exit(1);
  }
  tn_kube_config_cleanup(&cfg);
  return k;
}

static const char *const plans[] = {"starter", "standard", "enterprise"};

/* ---- creating the tenants ---------------------------------------------------------------- */

struct range {
  int from, to;
  atomic_int *failed;
};

static void *create_range(void *arg) {
  struct range *r = arg;
  for (int i = r->from; i < r->to; i++) {
    char body[1024];
    snprintf(
        body, sizeof body,
        "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"bench-%05d\","
        "\"labels\":{\"" LABEL "\":\"1\"}},\"spec\":{\"state\":\"Draft\",\"plan\":\"%s\",\"isolation\":"
        "\"shared\",\"displayName\":\"Bench Tenant %d\",\"externalIds\":{\"billing\":\"cus_%05d\"},"
        "\"residency\":{\"allowedRegions\":[\"eu-west-1\"]},\"environments\":[\"prod\"]}}",
        i, plans[i % 3], i, i);
    json_t *obj = json_loads(body, 0, NULL);
    struct tn_error err;
    tn_error_clear(&err);
    int rc = obj ? tn_kube_create(kube(), &gvr_tenants, NULL, obj, NULL, &err) : -ENOMEM;
    if (rc && rc != TN_EEXISTS)
      atomic_fetch_add(r->failed, 1);
    json_decref(obj);
  }
  return NULL;
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

static size_t sink(char *p, size_t sz, size_t n, void *ud) {
  struct tn_buf *b = ud;
  if (b)
    (void)tn_buf_append(b, p, sz * n);
  return sz * n;
}

enum target { T_API, T_KUBE };

static CURL *client(enum target t) {
  CURL *c = curl_easy_init();
  char cafile[PATH_MAX + 16];
  snprintf(cafile, sizeof cafile, "%s/tls.crt", dir);
  curl_easy_setopt(c, CURLOPT_CAINFO, t == T_API ? cafile : getenv("TENANCY_CA_FILE"));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  return c;
}

/* GET url with the token; the status, body into b (may be NULL). */
static long get(CURL *c, struct curl_slist *h, const char *url, struct tn_buf *b) {
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  if (curl_easy_perform(c) != CURLE_OK)
    return 0;
  long st = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
  return st;
}

struct worker {
  enum target t;
  bool pages;
  double until;
  unsigned seed;
  double *lat;
  size_t n, cap;
  long errors;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  CURL *c = client(w->t);
  char auth[4200];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  struct curl_slist *h = curl_slist_append(NULL, auth);
  const char *server = getenv("TENANCY_KUBE_SERVER");
  while (now() < w->until) {
    int i = (int)(rand_r(&w->seed) % (unsigned)opt.tenants);
    char url[1024];
    if (w->t == T_API && w->pages)
      snprintf(url, sizeof url, "https://127.0.0.1:%d/api/v1/tenants?plan=%s&q=tenant%%20%d&limit=100",
               api_port, plans[i % 3], i % 100);
    else if (w->t == T_API)
      snprintf(url, sizeof url, "https://127.0.0.1:%d/api/v1/tenants/bench-%05d", api_port, i);
    else
      snprintf(url, sizeof url, "%s/apis/tenancy.dev/v1alpha1/tenants/bench-%05d", server, i);
    double t0 = now();
    long st = get(c, h, url, NULL);
    double dt = now() - t0;
    if (st != 200) {
      w->errors++;
      continue;
    }
    if (w->n == w->cap) {
      w->cap = w->cap ? w->cap * 2 : 65536;
      w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
    }
    w->lat[w->n++] = dt;
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return NULL;
}

/* ---- the raw pipelined client ------------------------------------------------------------ */

/* libcurl costs about as much CPU per request as the server; on a shared 2-core machine that is
 * CPU the server does not get. This client is plain OpenSSL on keep-alive connections: each
 * thread drives opt.conns connections, each with opt.depth requests in flight (HTTP/1.1
 * pipelining), sent as one write; a request's latency is from its write to its response's end. */
struct rconn {
  int fd;
  SSL *ssl;
  int inflight;
  double sent_at[256];
  int want[256]; /* the tenant asked for (by id): its response must name it */
  int head;      /* the oldest request in flight */
  size_t in_len;
  char *in; /* RAW_IN bytes */
};
#define RAW_IN (16u << 20)

static int rconn_open(struct rconn *r, SSL_CTX *ctx) {
  memset(r, 0, sizeof *r);
  r->in = malloc(RAW_IN);
  r->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)api_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(r->fd, (struct sockaddr *)&a, sizeof a) != 0)
    return -1;
  r->ssl = SSL_new(ctx);
  SSL_set_fd(r->ssl, r->fd);
  SSL_set_tlsext_host_name(r->ssl, "127.0.0.1");
  SSL_set1_host(r->ssl, "127.0.0.1");
  if (SSL_connect(r->ssl) != 1)
    return -1;
  return 0;
}

static void rconn_close(struct rconn *r) {
  if (r->ssl) {
    SSL_shutdown(r->ssl);
    SSL_free(r->ssl);
  }
  if (r->fd > 0)
    close(r->fd);
  free(r->in);
  r->in = NULL;
  r->ssl = NULL;
  r->fd = -1;
}

/* Sends n requests in one write. */
static int rconn_send(struct rconn *r, struct worker *w, int n) {
  char buf[256 * 1536];
  size_t len = 0;
  double t = now();
  for (int k = 0; k < n; k++) {
    int i = (int)(rand_r(&w->seed) % (unsigned)opt.tenants);
    int m = w->pages ? snprintf(buf + len, sizeof buf - len,
                                "GET /api/v1/tenants?plan=%s&q=tenant%%20%d&limit=100 HTTP/1.1\r\nHost: "
                                "127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n",
                                plans[i % 3], i % 100, token)
                     : snprintf(buf + len, sizeof buf - len,
                                "GET /api/v1/tenants/bench-%05d HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Authorization: Bearer %s\r\n\r\n",
                                i, token);
    len += (size_t)m;
    r->want[(r->head + r->inflight) % 256] = i;
    r->sent_at[(r->head + r->inflight) % 256] = t;
    r->inflight++;
  }
  return SSL_write(r->ssl, buf, (int)len) == (int)len ? 0 : -1;
}

/* Reads what is there and takes every complete response. -1 on a broken connection. */
static int rconn_recv(struct rconn *r, struct worker *w) {
  if (r->in_len >= RAW_IN - 1)
    return -1;
  int n = SSL_read(r->ssl, r->in + r->in_len, (int)(RAW_IN - r->in_len - 1));
  if (n <= 0)
    return -1;
  r->in_len += (size_t)n;
  double t = now();
  size_t pos = 0;
  for (;;) {
    r->in[r->in_len] = 0;
    char *hend = memmem(r->in + pos, r->in_len - pos, "\r\n\r\n", 4);
    if (!hend)
      break;
    char *cl = strcasestr(r->in + pos, "content-length:");
    if (!cl || cl > hend)
      return -1;
    size_t blen = strtoul(cl + 15, NULL, 10);
    size_t total = (size_t)(hend + 4 - (r->in + pos)) + blen;
    if (r->in_len - pos < total)
      break;
    int st = atoi(r->in + pos + 9);
    char name[40];
    snprintf(name, sizeof name, "\"name\":\"bench-%05d\"", r->want[r->head]);
    if (st == 200 && !w->pages && !memmem(hend + 4, blen, name, strlen(name)))
      st = 0; /* not the tenant asked for */
    if (st != 200) {
      w->errors++;
    } else {
      if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 65536;
        w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
      }
      w->lat[w->n++] = t - r->sent_at[r->head];
    }
    r->head = (r->head + 1) % 256;
    r->inflight--;
    pos += total;
  }
  memmove(r->in, r->in + pos, r->in_len - pos);
  r->in_len -= pos;
  return 0;
}

static void *raw_worker_main(void *arg) {
  struct worker *w = arg;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  char cafile[PATH_MAX + 16];
  snprintf(cafile, sizeof cafile, "%s/tls.crt", dir);
  SSL_CTX_load_verify_locations(ctx, cafile, NULL);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  int nc = opt.conns, depth = opt.depth;
  struct rconn *rc = calloc((size_t)nc, sizeof *rc);
  struct pollfd *pf = calloc((size_t)nc, sizeof *pf);
  for (int i = 0; i < nc; i++)
    if (rconn_open(&rc[i], ctx) || rconn_send(&rc[i], w, depth)) {
      w->errors++;
      goto out;
    }
  while (now() < w->until) {
    for (int i = 0; i < nc; i++)
      pf[i] = (struct pollfd){.fd = rc[i].fd, .events = POLLIN};
    if (poll(pf, (nfds_t)nc, 1000) < 0)
      break;
    for (int i = 0; i < nc; i++) {
      if (!(pf[i].revents & POLLIN) && !SSL_pending(rc[i].ssl))
        continue;
      if (rconn_recv(&rc[i], w)) {
        w->errors++;
        goto out;
      }
      /* refill once half the window came back: one write for many requests */
      if (rc[i].inflight <= depth / 2 && now() < w->until && rconn_send(&rc[i], w, depth - rc[i].inflight)) {
        w->errors++;
        goto out;
      }
    }
  }
out:
  for (int i = 0; i < nc; i++)
    rconn_close(&rc[i]);
  free(rc);
  free(pf);
  SSL_CTX_free(ctx);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* CPU seconds (user + system) process pid used so far; -1 when unknown. */
static double cpu_of(pid_t pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* the command may hold spaces */
  unsigned long ut = 0, st = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The kube-apiserver's pid from the stack's pid file, else 0. */
static pid_t apiserver_pid(void) {
  const char *state = getenv("TENANCY_STATE_DIR");
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/pids/kube-apiserver.pid", state ? state : "");
  FILE *f = fopen(path, "r");
  long pid = 0;
  if (f) {
    if (fscanf(f, "%ld", &pid) != 1)
      pid = 0;
    fclose(f);
  }
  return (pid_t)pid;
}

static void measure2(const char *what, enum target t, bool pages, int clients, double seconds, bool raw);
static void measure(const char *what, enum target t, bool pages, int clients, double seconds) {
  measure2(what, t, pages, clients, seconds, false);
}
static void measure2(const char *what, enum target t, bool pages, int clients, double seconds, bool raw) {
  pid_t server = t == T_API ? op_pid : apiserver_pid();
  double cpu0 = server > 0 ? cpu_of(server) : -1;
  double self0 = cpu_of(getpid());
  struct worker *w = calloc((size_t)clients, sizeof *w);
  pthread_t *th = calloc((size_t)clients, sizeof *th);
  double t0 = now();
  for (int i = 0; i < clients; i++) {
    w[i] = (struct worker){.t = t, .pages = pages, .until = t0 + seconds, .seed = (unsigned)(i * 7919 + 17)};
    pthread_create(&th[i], NULL, raw ? raw_worker_main : worker_main, &w[i]);
  }
  size_t total = 0;
  long errors = 0;
  for (int i = 0; i < clients; i++) {
    pthread_join(th[i], NULL);
    total += w[i].n;
    errors += w[i].errors;
  }
  double elapsed = now() - t0;
  double cpu1 = server > 0 ? cpu_of(server) : -1;
  double self1 = cpu_of(getpid());
  double *all = malloc((total ? total : 1) * sizeof *all);
  size_t k = 0;
  for (int i = 0; i < clients; i++) {
    memcpy(all + k, w[i].lat, w[i].n * sizeof *all);
    k += w[i].n;
    free(w[i].lat);
  }
  qsort(all, total, sizeof *all, cmp_double);
  double p50 = total ? all[total / 2] : 0, p99 = total ? all[(size_t)((double)total * 0.99)] : 0;
  double us = cpu0 >= 0 && cpu1 >= 0 && total ? (cpu1 - cpu0) / (double)total * 1e6 : 0;
  double cl = self0 >= 0 && self1 >= 0 && total ? (self1 - self0) / (double)total * 1e6 : 0;
  printf("  %-44s %8.0f req/s  p50 %7.3f ms  p99 %7.3f ms  server CPU %6.1f us/req (%6.0f req/s per core)  "
         "clients' CPU %6.1f us/req  (%zu ok, %ld errors, %d clients, %.0f s, server %.0f%% of a core)\n",
         what, (double)total / elapsed, p50 * 1e3, p99 * 1e3, us, us > 0 ? 1e6 / us : 0.0, cl, total, errors,
         clients, elapsed, cpu0 >= 0 && cpu1 >= 0 ? (cpu1 - cpu0) / elapsed * 100 : 0.0);
  fflush(stdout);
  free(all);
  free(w);
  free(th);
}

/* ---- the console's directory ---------------------------------------------------------------- */

/* n sequential rounds of the given requests (one round = what one directory view asks for) on one
 * keep-alive connection; prints the round's p50, p99 and max. */
static void directory_round(const char *what, const char *const *paths, int n_paths, int rounds) {
  CURL *c = client(T_API);
  char auth[4200];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  struct curl_slist *h = curl_slist_append(NULL, auth);
  double *lat = calloc((size_t)rounds, sizeof *lat);
  long errors = 0;
  size_t bytes = 0;
  struct tn_buf b;
  tn_buf_init(&b, 256u << 20);
  for (int r = 0; r < rounds; r++) {
    double t0 = now();
    for (int i = 0; i < n_paths; i++) {
      char url[2048];
      snprintf(url, sizeof url, "https://127.0.0.1:%d%s", api_port, paths[i]);
      tn_buf_reset(&b);
      if (get(c, h, url, &b) != 200)
        errors++;
      bytes += b.len;
    }
    lat[r] = now() - t0;
  }
  qsort(lat, (size_t)rounds, sizeof *lat, cmp_double);
  printf(
      "  %-58s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms  (%d rounds of %d request(s), %.0f KiB a round, %ld "
      "errors)  target < 300 ms: %s\n",
      what, lat[rounds / 2] * 1e3, lat[(size_t)((double)rounds * 0.99)] * 1e3, lat[rounds - 1] * 1e3, rounds,
      n_paths, (double)bytes / rounds / 1024, errors,
      lat[(size_t)((double)rounds * 0.99)] < 0.3 ? "met" : "MISSED");
  fflush(stdout);
  tn_buf_cleanup(&b);
  free(lat);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
}

static void measure_directory(void) {
  printf("bench_read_api: the console's directory with %d tenants cached (one client, sequential)\n",
         opt.tenants);
  /* the continue token of the tenth page */
  char tenth[1024] = "/api/v1/tenants?limit=50&counts=state";
  CURL *c = client(T_API);
  char auth[4200];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  struct curl_slist *h = curl_slist_append(NULL, auth);
  struct tn_buf b;
  tn_buf_init(&b, 64u << 20);
  char cont[600] = "";
  for (int p = 0; p < 9; p++) {
    char url[1400];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/api/v1/tenants?limit=50%s%s", api_port,
             cont[0] ? "&continue=" : "", cont);
    tn_buf_reset(&b);
    if (get(c, h, url, &b) != 200)
      break;
    json_t *j = json_loads(tn_buf_str(&b), 0, NULL);
    const char *t = json_string_value(json_object_get(json_object_get(j, "metadata"), "continue"));
    snprintf(cont, sizeof cont, "%s", t ? t : "");
    json_decref(j);
  }
  if (cont[0])
    snprintf(tenth, sizeof tenth, "/api/v1/tenants?limit=50&counts=state&continue=%s", cont);
  tn_buf_cleanup(&b);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  const char *first[] = {"/api/v1/tenants?limit=50&counts=state"};
  const char *search[] = {"/api/v1/tenants?q=tenant%2042&plan=standard&limit=50&counts=state"};
  const char *page10[] = {tenth};
  const char *before[] = {"/api/v1/tenants?limit=50",
                          "/api/v1/tenants?state=Draft&limit=1000",
                          "/api/v1/tenants?state=Active&limit=1000",
                          "/api/v1/tenants?state=Suspended&limit=1000",
                          "/api/v1/tenants?state=Archived&limit=1000",
                          "/api/v1/tenants?state=Deleted&limit=1000"};
  directory_round("directory: first page of 50 + counts by state", first, 1, 100);
  directory_round("directory: search (q + plan) + counts by state", search, 1, 100);
  directory_round("directory: tenth page (continue) + counts by state", page10, 1, 100);
  directory_round("directory as before: page + 5 lists of <= 1000 for the counts", before, 6, 10);
}

/* ---- the operator -------------------------------------------------------------------------- */

static void stop_operator(void) {
  if (op_pid > 0) {
    kill(op_pid, SIGTERM);
    for (int i = 0; i < 200 && waitpid(op_pid, NULL, WNOHANG) == 0; i++)
      usleep(100000);
    kill(op_pid, SIGKILL);
    waitpid(op_pid, NULL, 0);
    op_pid = 0;
  }
}

static int start_operator(void) {
  char bin[PATH_MAX + 64];
  const char *env = getenv("TENANCY_OPERATOR_BIN");
  if (env && *env)
    snprintf(bin, sizeof bin, "%s", env);
  else {
    struct stat st;
    snprintf(bin, sizeof bin, "%s/build/bin/tenancy-operator", root);
    if (stat(bin, &st) != 0)
      snprintf(bin, sizeof bin, "%s/build/release/bin/tenancy-operator", root);
  }
  api_port = free_port();
  char a_addr[64], a_cert[PATH_MAX + 32], a_key[PATH_MAX + 32], a_m[64], a_p[64], logf[PATH_MAX + 32];
  char a_w[64] = "--log-level=warn"; /* a harmless repeat when --api-workers is not given */
  if (opt.api_workers > 0)
    snprintf(a_w, sizeof a_w, "--api-workers=%d", opt.api_workers);
  snprintf(a_addr, sizeof a_addr, "--api-bind-address=127.0.0.1:%d", api_port);
  snprintf(a_cert, sizeof a_cert, "--api-cert-file=%s/tls.crt", dir);
  snprintf(a_key, sizeof a_key, "--api-key-file=%s/tls.key", dir);
  snprintf(a_m, sizeof a_m, "--metrics-bind-address=127.0.0.1:%d", free_port());
  snprintf(a_p, sizeof a_p, "--health-probe-bind-address=127.0.0.1:%d", free_port());
  snprintf(logf, sizeof logf, "%s/operator.log", dir);
  op_pid = fork();
  if (op_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    FILE *f = freopen(logf, "w", stdout);
    (void)f;
    dup2(1, 2);
    execl(bin, bin, a_addr, a_cert, a_key, a_m, a_p, "--leader-elect=true",
          "--leader-election-namespace=default", "--leader-election-id=bench-read-api", "--log-level=warn",
          a_w, (char *)NULL);
    _exit(127);
  }
  return op_pid > 0 ? 0 : -1;
}

/* How many tenants the API lists (all pages). */
static long count_listed(void) {
  CURL *c = client(T_API);
  char auth[4200];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  struct curl_slist *h = curl_slist_append(NULL, auth);
  long n = 0;
  char cont[1024] = "";
  for (;;) {
    char url[2048];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/api/v1/tenants?q=bench-&limit=1000%s%s", api_port,
             cont[0] ? "&continue=" : "", cont);
    struct tn_buf b;
    tn_buf_init(&b, 256u << 20);
    long st = get(c, h, url, &b);
    json_t *j = st == 200 ? json_loadb(b.data, b.len, 0, NULL) : NULL;
    tn_buf_cleanup(&b);
    if (!j) {
      n = -1;
      break;
    }
    n += (long)json_array_size(json_object_get(j, "items"));
    const char *ct = json_string_value(json_object_get(json_object_get(j, "metadata"), "continue"));
    snprintf(cont, sizeof cont, "%s", ct ? ct : "");
    json_decref(j);
    if (!cont[0])
      break;
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return n;
}

/* ---- the run ------------------------------------------------------------------------------- */

static int run_bench(void) {
  snprintf(dir, sizeof dir, "/tmp/bench-read-api-%ld", (long)getpid());
  if (sh("mkdir -p '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
         "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '%s/tls.key' -out '%s/tls.crt' "
         ">/dev/null 2>&1",
         dir, dir, dir) ||
      sh("kubectl apply --server-side --force-conflicts -f '%s/crds/' >/dev/null && kubectl wait "
         "--for=condition=Established --timeout=60s -f '%s/crds/' >/dev/null && kubectl apply -f "
         "'%s/manifests/samples/00-plans.yaml' -f '%s/manifests/samples/01-regions.yaml' >/dev/null",
         root, root, root, root)) {
    fprintf(stderr, "bench_read_api: cannot install the API\n");
    return 1;
  }
  /* a reader: a ServiceAccount allowed to get and list tenants */
  sh("kubectl -n default create serviceaccount bench-read-api >/dev/null 2>&1; "
     "printf '%%s' "
     "'{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRole\",\"metadata\":{\"name\":"
     "\"bench-read-api\"},\"rules\":[{\"apiGroups\":[\"tenancy.dev\"],\"resources\":[\"tenants\"],\"verbs\":"
     "[\"get\",\"list\"]}]}' | kubectl apply -f - >/dev/null; kubectl create clusterrolebinding "
     "bench-read-api "
     "--clusterrole=bench-read-api --serviceaccount=default:bench-read-api >/dev/null 2>&1");
  FILE *f = popen("kubectl -n default create token bench-read-api --duration=2h", "r");
  if (!f || !fgets(token, sizeof token, f)) {
    fprintf(stderr, "bench_read_api: no token\n");
    return 1;
  }
  pclose(f);
  token[strcspn(token, "\r\n")] = 0;
  /* the operator stays a standby: someone else holds its Lease for an hour */
  sh("printf '%%s' '{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":"
     "\"bench-read-api\",\"namespace\":\"default\"},\"spec\":{\"holderIdentity\":\"someone-else\","
     "\"leaseDurationSeconds\":3600}}' | kubectl apply -f - >/dev/null");

  double t0 = now();
  atomic_int failed = 0;
  /* a run with --keep left them: create only when some are missing */
  FILE *cf = popen("kubectl get tenants -l " LABEL "=1 --no-headers 2>/dev/null | wc -l", "r");
  long have = 0;
  if (cf) {
    if (fscanf(cf, "%ld", &have) != 1)
      have = 0;
    pclose(cf);
  }
  int from = have >= opt.tenants ? opt.tenants : 0;
  enum { NT = 8 };
  pthread_t th[NT];
  struct range rg[NT];
  for (int t = 0; t < NT; t++) {
    rg[t] = (struct range){from + t * (opt.tenants - from) / NT, from + (t + 1) * (opt.tenants - from) / NT,
                           &failed};
    pthread_create(&th[t], NULL, create_range, &rg[t]);
  }
  for (int t = 0; t < NT; t++)
    pthread_join(th[t], NULL);
  printf("bench_read_api: %d tenants in place in %.1f s (%d creates failed)\n", opt.tenants, now() - t0,
         atomic_load(&failed));
  if (start_operator()) {
    fprintf(stderr, "bench_read_api: cannot start the operator\n");
    return 1;
  }
  t0 = now();
  long listed = -1;
  while (now() - t0 < 180 && (listed = count_listed()) < opt.tenants) {
    if (waitpid(op_pid, NULL, WNOHANG) == op_pid) {
      fprintf(stderr, "bench_read_api: the operator exited (log: %s/operator.log)\n", dir);
      op_pid = 0;
      return 1;
    }
    usleep(500000);
  }
  if (listed < opt.tenants) {
    fprintf(stderr,
            "bench_read_api: the read API lists %ld of %d tenants after 180 s (log: %s/operator.log)\n",
            listed, opt.tenants, dir);
    stop_operator();
    return 1;
  }
  printf("bench_read_api: the operator's cache serves all %ld tenants (%.1f s after start)\n", listed,
         now() - t0);
  double load[3] = {0};
  (void)getloadavg(load, 3);
  printf(
      "bench_read_api: %d tenants, %ld online CPUs (load average %.1f: other work shares them), keep-alive "
      "HTTPS, %d client thread(s) in this process, operator API service threads: %s\n",
      opt.tenants, sysconf(_SC_NPROCESSORS_ONLN), load[0], opt.clients,
      opt.api_workers ? (char[8]){(char)('0' + opt.api_workers), 0} : "its default (CPUs, max 8)");
  measure_directory();
  if (opt.directory_only) {
    stop_operator();
    goto cleanup;
  }
  measure2("warm-up (read API, by id, pipelined)", T_API, false, opt.clients, 2, true);
  char what[128];
  snprintf(what, sizeof what, "read API: by id, pipelined (%d conns x depth %d)", opt.clients * opt.conns,
           opt.depth);
  measure2(what, T_API, false, opt.clients, opt.seconds, true);
  snprintf(what, sizeof what, "read API: page, pipelined (%d conns x depth %d)", opt.clients * opt.conns,
           opt.depth);
  measure2(what, T_API, true, opt.clients, opt.seconds, true);
  measure("read API: GET /api/v1/tenants/{id}", T_API, false, opt.clients, opt.seconds);
  measure("read API: GET /api/v1/tenants/{id} (1 client)", T_API, false, 1, opt.seconds);
  measure("read API: filtered page (plan+q, limit 100)", T_API, true, opt.clients, opt.seconds);
  if (opt.api_only) {
    stop_operator();
    goto cleanup;
  }
  measure("API server: GET .../tenants/{id} (baseline)", T_KUBE, false, opt.clients, opt.seconds);
  /* kubectl get -o json: a process per lookup */
  int n = 20;
  double *lat = calloc((size_t)n, sizeof *lat);
  t0 = now();
  for (int i = 0; i < n; i++) {
    double s = now();
    sh("kubectl get tenant bench-%05d -o json >/dev/null", (i * 397) % opt.tenants);
    lat[i] = now() - s;
  }
  double el = now() - t0;
  qsort(lat, (size_t)n, sizeof *lat, cmp_double);
  printf("  %-44s %9.1f req/s  p50 %7.3f ms  p99 %7.3f ms  (%d sequential)\n", "kubectl get tenant X -o json",
         n / el, lat[n / 2] * 1e3, lat[n - 1] * 1e3, n);
  free(lat);
  stop_operator();
cleanup:
  if (!opt.keep) {
    sh("kubectl delete --raw "
       "'/apis/tenancy.dev/v1alpha1/tenants?labelSelector=bench.tenancy.dev%%2Fread-api%%3D1' "
       ">/dev/null 2>&1; kubectl -n default delete lease "
       "bench-read-api >/dev/null 2>&1; kubectl delete clusterrolebinding bench-read-api >/dev/null 2>&1; "
       "kubectl "
       "delete clusterrole bench-read-api >/dev/null 2>&1; kubectl -n default delete serviceaccount "
       "bench-read-api "
       ">/dev/null 2>&1");
  }
  sh("rm -rf '%s'", dir);
  return 0;
}

static int find_root(void) {
  struct stat st;
  if (getcwd(root, sizeof root) && stat("hack/cluster-up.sh", &st) == 0)
    return 0;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return -1;
  exe[n] = 0;
  for (int up = 0; up < 4; up++) {
    char *slash = strrchr(exe, '/');
    if (!slash)
      return -1;
    *slash = 0;
  }
  snprintf(root, sizeof root, "%s", exe);
  char probe[PATH_MAX + 32];
  snprintf(probe, sizeof probe, "%s/hack/cluster-up.sh", root);
  return stat(probe, &st) == 0 ? 0 : -1;
}

/* Reads a cluster.env into this process. */
static int load_env(const char *file) {
  char cmd[PATH_MAX + 256];
  snprintf(cmd, sizeof cmd,
           "bash -c '. \"$0\" && printf \"%%s\\n%%s\\n%%s\\n%%s\\n\" \"$KUBECONFIG\" \"$PATH\" "
           "\"$TENANCY_KUBE_SERVER\" \"$TENANCY_CA_FILE\"' '%s'",
           file);
  FILE *f = popen(cmd, "r");
  if (!f)
    return -1;
  static const char *const names[] = {"KUBECONFIG", "PATH", "TENANCY_KUBE_SERVER", "TENANCY_CA_FILE"};
  char *line = NULL;
  size_t cap = 0;
  int got = 0;
  for (int i = 0; i < 4 && getline(&line, &cap, f) > 0; i++) {
    line[strcspn(line, "\n")] = 0;
    if (*line) {
      setenv(names[i], line, 1);
      got++;
    }
  }
  free(line);
  return pclose(f) == 0 && got == 4 ? 0 : -1;
}

int main(int argc, char **argv) {
  static const struct option lo[] = {
      {"tenants", required_argument, NULL, 't'},     {"clients", required_argument, NULL, 'c'},
      {"seconds", required_argument, NULL, 's'},     {"keep", no_argument, NULL, 'k'},
      {"api-workers", required_argument, NULL, 'w'}, {"api-only", no_argument, NULL, 'a'},
      {"depth", required_argument, NULL, 'd'},       {"conns", required_argument, NULL, 'n'},
      {"directory-only", no_argument, NULL, 'D'},    {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    if (c == 't')
      opt.tenants = atoi(optarg);
    else if (c == 'c')
      opt.clients = atoi(optarg);
    else if (c == 's')
      opt.seconds = atof(optarg);
    else if (c == 'k')
      opt.keep = true;
    else if (c == 'w')
      opt.api_workers = atoi(optarg);
    else if (c == 'a')
      opt.api_only = true;
    else if (c == 'd')
      opt.depth = atoi(optarg);
    else if (c == 'n')
      opt.conns = atoi(optarg);
    else if (c == 'D')
      opt.directory_only = true;
    else {
      fprintf(stderr, "usage: bench_read_api [--tenants N] [--clients N] [--seconds S] [--api-workers N] "
                      "[--api-only] [--keep] [--depth N] [--conns N] [--directory-only]\n");
      return 2;
    }
  }
  if (opt.tenants < 1 || opt.clients < 1 || opt.seconds <= 0 || opt.api_workers < 0 || opt.api_workers > 8 ||
      opt.depth < 1 || opt.depth > 128 || opt.conns < 1 || opt.conns > 64) {
    fprintf(stderr, "bench_read_api: --tenants, --clients and --seconds must be positive\n");
    return 2;
  }
  if (find_root()) {
    fprintf(stderr, "bench_read_api: cannot find the repository\n");
    return 1;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const char *kc = getenv("KUBECONFIG");
  if (kc && *kc) {
    if (!getenv("TENANCY_KUBE_SERVER") || !getenv("TENANCY_CA_FILE")) {
      fprintf(stderr,
              "bench_read_api: source the stack's cluster.env (TENANCY_KUBE_SERVER, TENANCY_CA_FILE)\n");
      return 1;
    }
    return run_bench();
  }
  char state[PATH_MAX + 32], envfile[PATH_MAX + 64];
  snprintf(state, sizeof state, "%s/.local/bench-readapi", root);
  snprintf(envfile, sizeof envfile, "%s/cluster.env", state);
  fprintf(stderr, "bench_read_api: KUBECONFIG is not set: starting a private stack in %s\n", state);
  int rc = 1;
  if (sh("TENANCY_STATE_DIR='%s' '%s/hack/cluster-up.sh' >/dev/null", state, root) == 0 &&
      load_env(envfile) == 0)
    rc = run_bench();
  else
    fprintf(stderr, "bench_read_api: the private stack did not start; nothing measured\n");
  if (sh("TENANCY_STATE_DIR='%s' '%s/hack/cluster-down.sh' >/dev/null 2>&1", state, root))
    fprintf(stderr, "bench_read_api: hack/cluster-down.sh failed for %s\n", state);
  return rc;
}
