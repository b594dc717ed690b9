/* httpserver.c - HTTP(S) server on libwebsockets: one context and one service thread per
 * listener, fixed routes to quick handlers (see httpserver.h and
 * docs/internals/http-and-metrics.md). */
#define _GNU_SOURCE /* pthread_setname_np */
#include "runtime/httpserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/httpserver_impl.h"
#include "runtime/log.h"
#include "util/wipe.h"

/* Threads and locks. The libwebsockets build has LWS_MAX_SMP 1: a context may only be touched
 * from the one thread that services it, except lws_cancel_service(). So each service thread
 * (a "worker"; tn_httpserver_set_workers, 1 by default) owns its context for its whole life: it
 * creates it, services it, and destroys it. With one worker its context binds the listener.
 * With several, lws 4.1 cannot share a port between contexts (it sets SO_REUSEPORT only when a
 * context has several threads, which LWS_MAX_SMP 1 forbids), so the server binds the listener
 * itself and an acceptor thread hands each accepted connection, round robin, to a worker: it
 * queues the descriptor on the worker (w->q_mu) and wakes it with lws_cancel_service(); the
 * worker adopts it into its context (lws_adopt_socket_vhost, TLS and all) on its own thread in
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED. A connection stays on its worker. Other threads only set
 * `stopping` and call lws_cancel_service(), both under srv->mu, which a service thread also holds
 * while it destroys its context; so a context is never woken after it is gone. srv->mu protects
 * state, the workers' state/ctx/port/err and port; body_mu protects `reserved`; q_mu a worker's
 * queue; id_mu the serving identity; none nests in another (q_mu is taken inside srv->mu).
 * Routes and settings are written before the threads start and only read afterwards. Handlers
 * run on the service threads: with several workers, concurrently (req->worker says which). */

/* One HTTP transaction: libwebsockets' per-session data for the protocol, zeroed by it when
 * a transaction starts and freed after it (we release what we allocated in exch_release).
 *
 * A request with a body is answered only after its body was read to the end (kept, or
 * discarded when it passes the cap or no handler wants it): answering earlier makes lws
 * discard the rest itself (LRS_DISCARD_BODY), and with 4.1.6 the next request on that
 * keep-alive connection can then spin in BODY_COMPLETION forever. Where reading on makes no
 * sense (no or a bad Content-Length on HTTP/1.1, a body far past the cap) the answer goes out
 * with "connection: close" and the connection is closed. */
struct exchange {
  char method[16];
  char *path;
  char *content_type;
  char *authorization; /* a credential: wiped when released */
  const struct route *route;
  bool inited;
  bool reading_body; /* waiting for HTTP_BODY / HTTP_BODY_COMPLETION */
  bool discard;      /* ...not keeping it; answer pending_status at completion */
  bool responding;   /* the response is ready; writeable callbacks send it */
  bool headers_sent;
  bool close_after; /* close the connection after the response */
  bool first_seen;  /* a body byte other than white space was seen */
  struct tn_httpserver *srv;
  size_t reserved; /* this exchange's share of srv->reserved */
  int pending_status;
  struct tn_buf req_body;
  int status;
  char resp_type[128];
  char allow[128]; /* for 405 */
  struct tn_buf resp_body;
  size_t sent;
  char **query;
  size_t n_query;
  struct tn_http_header headers[TN_HTTP_MAX_HEADERS];
  int n_headers;
  int worker; /* the index of the service thread */
};

/* ---- libwebsockets logging ---- */

static _Thread_local char lws_last_error[256]; /* the first lws error since it was cleared */

static void lws_emit(int level, const char *line) {
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    n--;
  /* lws prefixes lines with "[date] E: "; keep only the message */
  const char *msg = line;
  const char *tag = strstr(line, ": ");
  if (line[0] == '[' && tag && tag < line + n) {
    msg = tag + 2;
    n -= (size_t)(msg - line);
  }
  if ((level & LLL_ERR) && !lws_last_error[0]) /* the first error says most */
    snprintf(lws_last_error, sizeof lws_last_error, "%.*s", (int)n, msg);
  tn_log(level & LLL_ERR ? TN_LOG_ERROR : TN_LOG_WARN, NULL, "libwebsockets: %.*s", (int)n, msg);
}

static void lws_logging_init(void) { lws_set_log_level(LLL_ERR | LLL_WARN, lws_emit); }

/* ---- addresses ---- */

int tn_http_parse_address(const char *address, char *host, size_t host_size, int *port,
                          struct tn_error *err) {
  if (!address)
    return tn_error_set(err, TN_ECONFIG, "missing bind address");
  if (strcmp(address, "0") == 0)
    return 1;
  const char *colon = strrchr(address, ':');
  if (!colon)
    return tn_error_set(err, TN_ECONFIG, "bind address \"%s\" is not host:port, :port or 0", address);
  const char *h = address;
  size_t hl = (size_t)(colon - address);
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  } else if (memchr(h, ':', hl)) {
    return tn_error_set(err, TN_ECONFIG, "bind address \"%s\": write an IPv6 host in brackets, [::1]:8080",
                        address);
  }
  if (hl >= host_size)
    return tn_error_set(err, TN_ECONFIG, "bind address \"%s\": host too long", address);
  const char *ps = colon + 1;
  long v = 0;
  if (!*ps || strlen(ps) > 5)
    return tn_error_set(err, TN_ECONFIG, "bind address \"%s\": port must be 0..65535", address);
  for (const char *p = ps; *p; p++) {
    if (*p < '0' || *p > '9')
      return tn_error_set(err, TN_ECONFIG, "bind address \"%s\": port must be 0..65535", address);
    v = v * 10 + (*p - '0');
  }
  if (v > 65535)
    return tn_error_set(err, TN_ECONFIG, "bind address \"%s\": port must be 0..65535", address);
  memcpy(host, h, hl);
  host[hl] = '\0';
  *port = (int)v;
  return 0;
}

/* Why binding host:port fails, as strerror, or NULL when a plain bind works (then the failure
 * was something else) or the host is not an IP literal. Only for error messages. */
static const char *bind_failure(const char *host, int port, char *buf, size_t n) {
  struct addrinfo hints, *res = NULL;
  char ps[16];
  memset(&hints, 0, sizeof hints);
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(ps, sizeof ps, "%d", port);
  if (getaddrinfo(host[0] ? host : NULL, ps, &hints, &res) != 0)
    return NULL;
  const char *why = NULL;
  int fd = socket(res->ai_family, res->ai_socktype, 0);
  if (fd >= 0) {
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
      snprintf(buf, n, "%s", strerror(errno));
      why = buf;
    }
    close(fd);
  }
  freeaddrinfo(res);
  return why;
}

/* ---- server object ---- */

int tn_httpserver_new(const char *bind_address, const struct tn_http_tls *tls, struct tn_httpserver **out,
                      struct tn_error *err) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  struct tn_httpserver *srv = NULL;
  char host[256];
  int port, rc;
  *out = NULL;
  rc = tn_http_parse_address(bind_address, host, sizeof host, &port, err);
  if (rc == 1)
    return 0; /* disabled */
  if (rc < 0)
    return rc;
  if (tls && (!tls->cert_file || !tls->key_file || !*tls->cert_file || !*tls->key_file))
    return tn_error_set(err, TN_ECONFIG, "TLS for %s needs both a certificate and a key file", bind_address);
  pthread_once(&once, lws_logging_init);
  srv = calloc(1, sizeof *srv);
  if (!srv)
    return tn_error_set(err, -ENOMEM, "out of memory");
  snprintf(srv->address, sizeof srv->address, "%s", bind_address);
  /* libwebsockets takes an IP literal or an interface name; "localhost" is neither */
  snprintf(srv->host, sizeof srv->host, "%s", strcmp(host, "localhost") == 0 ? "127.0.0.1" : host);
  srv->want_port = port;
  srv->max_body = TN_HTTP_DEFAULT_MAX_BODY;
  srv->n_workers = 1;
  srv->listen_fd = -1;
  for (int i = 0; i < TN_HTTP_MAX_WORKERS; i++)
    pthread_mutex_init(&srv->workers[i].q_mu, NULL);
  pthread_mutex_init(&srv->mu, NULL);
  pthread_mutex_init(&srv->body_mu, NULL);
  pthread_mutex_init(&srv->id_mu, NULL);
  pthread_cond_init(&srv->cv, NULL);
  if (tls) {
    srv->cert_file = strdup(tls->cert_file);
    srv->key_file = strdup(tls->key_file);
    if (!srv->cert_file || !srv->key_file) {
      tn_httpserver_free(srv);
      return tn_error_set(err, -ENOMEM, "out of memory");
    }
  }
  *out = srv;
  return 0;
}

int tn_httpserver_set_workers(struct tn_httpserver *srv, int n) {
  if (!srv)
    return 0;
  if (srv->started)
    return -EBUSY;
  if (n < 1 || n > TN_HTTP_MAX_WORKERS)
    return -EINVAL;
  srv->n_workers = n;
  return 0;
}

int tn_httpserver_set_job_threads(struct tn_httpserver *srv, int n) {
  if (!srv)
    return 0;
  if (srv->started)
    return -EBUSY;
  if (n < 1 || n > TN_HTTP_MAX_JOB_THREADS)
    return -EINVAL;
  srv->job_threads = n;
  return 0;
}

int tn_http_defer(const struct tn_http_request *req, struct tn_http_response *resp, tn_http_handler fn,
                  void *arg, void (*free_arg)(void *)) {
  if (req->impl)
    return tn_fast_defer(req, resp, fn, arg, free_arg);
  /* libwebsockets: no job threads; run it here, as before */
  int rc = fn(req, resp, arg);
  if (free_arg)
    free_arg(arg);
  return rc;
}

const char *tn_http_reason(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 409:
    return "Conflict";
  case 413:
    return "Payload Too Large";
  case 422:
    return "Unprocessable Entity";
  case 429:
    return "Too Many Requests";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return "Error";
  }
}

int tn_http_problem(struct tn_http_response *resp, const char *instance, int status, const char *slug,
                    const char *fmt, ...) {
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  char type[128];
  snprintf(type, sizeof type, "https://tenancy.dev/problems/%s", slug);
  json_t *p = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", tn_http_reason(status), "status",
                        status, "detail", detail, "instance", instance ? instance : "");
  if (!p)
    return -ENOMEM;
  char *s = json_dumps(p, JSON_COMPACT);
  json_decref(p);
  if (!s)
    return -ENOMEM;
  resp->status = status;
  snprintf(resp->content_type, sizeof resp->content_type, "application/problem+json");
  tn_buf_reset(&resp->body);
  int rc = tn_buf_appends(&resp->body, s);
  free(s);
  return rc;
}

int tn_httpserver_set_backend(struct tn_httpserver *srv, enum tn_http_backend b) {
  if (!srv)
    return 0;
  if (srv->started)
    return -EBUSY;
  if (b != TN_HTTP_BACKEND_LWS && b != TN_HTTP_BACKEND_EPOLL)
    return -EINVAL;
  srv->fast = b == TN_HTTP_BACKEND_EPOLL;
  return 0;
}

void tn_httpserver_set_max_body(struct tn_httpserver *srv, size_t max_body) {
  if (srv && !srv->started)
    srv->max_body = max_body;
}

int tn_httpserver_set_limits(struct tn_httpserver *srv, const struct tn_http_limits *l) {
  if (!srv)
    return 0;
  if (srv->started)
    return -EBUSY;
  char *type = l->body_type ? strdup(l->body_type) : NULL;
  if (l->body_type && !type)
    return -ENOMEM;
  free(srv->body_type);
  srv->body_type = type;
  srv->strict = true;
  if (l->max_body)
    srv->max_body = l->max_body;
  srv->small_body = l->small_body;
  srv->body_budget = l->body_budget;
  srv->json_object_body = l->json_object_body;
  srv->timeout_s = l->timeout_s;
  srv->max_connections = l->max_connections;
  return 0;
}

static bool token_ok(const char *s) {
  if (!s || !*s)
    return false;
  for (; *s; s++)
    if (*s <= ' ' || *s >= 127)
      return false;
  return true;
}

static void route_free(struct route *r) {
  if (!r)
    return;
  if (r->free_ud)
    r->free_ud(r->ud);
  free(r->method);
  free(r->path);
  free(r);
}

/* Adds a route; on failure, ud is freed with free_ud (when given). */
static int route_add2(struct tn_httpserver *srv, const char *method, const char *path, bool prefix,
                      tn_http_handler handler, void *ud, void (*free_ud)(void *)) {
  int rc = 0;
  struct route *r = NULL;
  if (!token_ok(method) || !token_ok(path) || path[0] != '/' || !handler) {
    rc = -EINVAL;
    goto out;
  }
  if (srv->started) {
    rc = -EBUSY;
    goto out;
  }
  struct route **tail = &srv->routes;
  for (; *tail; tail = &(*tail)->next) {
    if (strcmp((*tail)->method, method) == 0 && strcmp((*tail)->path, path) == 0 &&
        (*tail)->prefix == prefix) {
      rc = -EEXIST;
      goto out;
    }
  }
  r = calloc(1, sizeof *r);
  if (!r) {
    rc = -ENOMEM;
    goto out;
  }
  r->handler = handler;
  r->prefix = prefix;
  r->ud = ud;
  r->free_ud = free_ud;
  ud = NULL;
  r->method = strdup(method);
  r->path = strdup(path);
  if (!r->method || !r->path) {
    rc = -ENOMEM;
    goto out;
  }
  *tail = r;
  r = NULL;
out:
  route_free(r);
  if (ud && free_ud)
    free_ud(ud);
  return rc;
}

static int route_add(struct tn_httpserver *srv, const char *method, const char *path, tn_http_handler handler,
                     void *ud, void (*free_ud)(void *)) {
  return route_add2(srv, method, path, false, handler, ud, free_ud);
}

int tn_httpserver_route(struct tn_httpserver *srv, const char *method, const char *path,
                        tn_http_handler handler, void *ud) {
  if (!srv)
    return 0;
  return route_add(srv, method, path, handler, ud, NULL);
}

int tn_httpserver_route_prefix(struct tn_httpserver *srv, const char *method, const char *prefix,
                               tn_http_handler handler, void *ud) {
  if (!srv)
    return 0;
  return route_add2(srv, method, prefix, true, handler, ud, NULL);
}

const char *tn_http_query(const struct tn_http_request *req, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < req->n_query; i++) {
    const char *q = req->query[i];
    if (strncmp(q, name, n) == 0 && (q[n] == '=' || q[n] == '\0'))
      return q[n] == '=' ? q + n + 1 : q + n;
  }
  return NULL;
}

int tn_http_response_header(struct tn_http_response *resp, const char *name, const char *value) {
  if (!token_ok(name) || !value)
    return -EINVAL;
  for (const char *p = value; *p; p++)
    if ((unsigned char)*p < ' ' || (unsigned char)*p >= 127)
      return -EINVAL;
  if (resp->n_headers >= TN_HTTP_MAX_HEADERS || strlen(name) >= sizeof resp->headers[0].name ||
      strlen(value) >= sizeof resp->headers[0].value)
    return -ENOSPC;
  struct tn_http_header *h = &resp->headers[resp->n_headers++];
  snprintf(h->name, sizeof h->name, "%s", name);
  snprintf(h->value, sizeof h->value, "%s", value);
  return 0;
}

int tn_httpserver_route_owned(struct tn_httpserver *srv, const char *method, const char *path,
                              tn_http_handler handler, void *ud, void (*free_ud)(void *)) {
  if (!srv) {
    if (ud && free_ud)
      free_ud(ud);
    return 0;
  }
  return route_add(srv, method, path, handler, ud, free_ud);
}

int tn_httpserver_port(const struct tn_httpserver *srv) {
  if (!srv)
    return 0;
  pthread_mutex_t *mu = (pthread_mutex_t *)&srv->mu;
  pthread_mutex_lock(mu);
  int port = srv->state == SRV_RUNNING ? srv->port : 0;
  pthread_mutex_unlock(mu);
  return port;
}

const struct route *tn_http__route_find(const struct tn_httpserver *srv, const char *method, const char *path,
                                        bool *path_known, char *allow, size_t allow_size) {
  size_t allow_len = 0;
  *path_known = false;
  if (allow_size)
    allow[0] = '\0';
  /* an exact route, else the longest prefix route */
  const struct route *best = NULL;
  for (const struct route *r = srv->routes; r; r = r->next)
    if (!r->prefix && strcmp(r->path, path) == 0)
      best = r;
  if (!best)
    for (const struct route *r = srv->routes; r; r = r->next)
      if (r->prefix && strncmp(r->path, path, strlen(r->path)) == 0 &&
          (!best || strlen(r->path) > strlen(best->path)))
        best = r;
  for (const struct route *r = srv->routes; r; r = r->next) {
    if (!best || r->prefix != best->prefix || strcmp(r->path, best->path) != 0)
      continue;
    *path_known = true;
    if (strcmp(r->method, method) == 0)
      return r;
    int wn = snprintf(allow + allow_len, allow_size - allow_len, "%s%s", allow_len ? ", " : "", r->method);
    if (wn > 0 && (size_t)wn < allow_size - allow_len)
      allow_len += (size_t)wn;
  }
  return NULL;
}

/* ---- one transaction ---- */

static void exch_release(struct exchange *ex) {
  if (!ex || !ex->inited)
    return;
  free(ex->path);
  free(ex->content_type);
  tn_wipe_free_str(ex->authorization); /* a bearer token: not left in freed memory */
  for (size_t i = 0; i < ex->n_query; i++)
    free(ex->query[i]);
  free(ex->query);
  if (ex->srv && ex->reserved) {
    pthread_mutex_lock(&ex->srv->body_mu);
    ex->srv->reserved -= ex->reserved;
    pthread_mutex_unlock(&ex->srv->body_mu);
  }
  tn_buf_cleanup(&ex->req_body);
  tn_buf_cleanup(&ex->resp_body);
  memset(ex, 0, sizeof *ex);
}

const char *tn_http__status_text(int status) {
  switch (status) {
  case 400:
    return "bad request\n";
  case 404:
    return "404 page not found\n";
  case 405:
    return "method not allowed\n";
  case 411:
    return "Content-Length required\n";
  case 413:
    return "request body too large\n";
  case 415:
    return "unsupported media type\n";
  case 503:
    return "too many large requests at once; retry\n";
  default:
    return "error\n";
  }
}

/* Prepares a response the server writes itself (errors). */
static void exch_respond_status(struct exchange *ex, int status) {
  ex->status = status;
  snprintf(ex->resp_type, sizeof ex->resp_type, "text/plain; charset=utf-8");
  tn_buf_reset(&ex->resp_body);
  (void)tn_buf_appends(&ex->resp_body, tn_http__status_text(status));
  ex->responding = true;
  ex->reading_body = false;
}

static void exch_run_handler(struct exchange *ex) {
  static const char empty[] = "";
  struct tn_http_request req = {
      .method = ex->method,
      .path = ex->path,
      .content_type = ex->content_type ? ex->content_type : "",
      .body = ex->req_body.data ? ex->req_body.data : empty,
      .body_len = ex->req_body.len,
      .authorization = ex->authorization ? ex->authorization : empty,
      .query = (const char *const *)ex->query,
      .n_query = ex->n_query,
      .worker = ex->worker,
  };
  struct tn_http_response resp = {.status = 200};
  snprintf(resp.content_type, sizeof resp.content_type, "text/plain; charset=utf-8");
  tn_buf_init(&resp.body, TN_HTTP_MAX_RESPONSE);
  int rc = ex->route->handler(&req, &resp, ex->route->ud);
  if (rc < 0 || resp.status < 100 || resp.status > 599) {
    tn_log(TN_LOG_ERROR, NULL, "http handler for %s %s failed (%s, status %d)", ex->method, ex->path,
           rc < 0 ? tn_strerror(rc) : "ok", resp.status);
    if (resp.body.len == 0)
      (void)tn_buf_appends(&resp.body, "internal error\n");
    resp.status = 500;
    snprintf(resp.content_type, sizeof resp.content_type, "text/plain; charset=utf-8");
  }
  tn_buf_cleanup(&ex->resp_body);
  ex->resp_body = resp.body;
  ex->status = resp.status;
  ex->n_headers = resp.n_headers;
  memcpy(ex->headers, resp.headers, sizeof ex->headers);
  snprintf(ex->resp_type, sizeof ex->resp_type, "%s",
           resp.content_type[0] ? resp.content_type : "text/plain");
  ex->responding = true;
  ex->reading_body = false;
}

static bool method_has_body(const char *m) {
  return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

static char *hdr_dup(struct lws *wsi, enum lws_token_indexes t) {
  int n = lws_hdr_total_length(wsi, t);
  if (n <= 0)
    return NULL;
  char *s = malloc((size_t)n + 1);
  if (s && lws_hdr_copy(wsi, s, n + 1, t) < 0) {
    free(s);
    s = NULL;
  }
  return s;
}

/* Whether a Content-Type header names the media type `want` (parameters such as charset
 * ignored, case-insensitive). */
bool tn_http__media_type_is(const char *header, const char *want) {
  if (!header)
    return false;
  size_t n = strlen(want);
  if (strncasecmp(header, want, n) != 0)
    return false;
  char c = header[n];
  return c == '\0' || c == ';' || c == ' ' || c == '\t';
}

/* Bodies up to this many bytes past the cap are read and dropped so that keep-alive holds;
 * larger ones get 413 and the connection is closed. */
static size_t discard_limit(const struct tn_httpserver *srv) {
  size_t lim = srv->max_body * 4;
  return lim < (16u << 20) ? (16u << 20) : lim;
}

/* LWS_CALLBACK_HTTP: the headers are in. Returns nonzero to close the connection. */
static int on_request(struct lws *wsi, const struct worker *w, struct exchange *ex, const char *in,
                      size_t len) {
  static const char *const methods[] = {"GET",   "POST",   "OPTIONS", "PUT",
                                        "PATCH", "DELETE", "CONNECT", "HEAD"};
  struct tn_httpserver *srv = w->srv;
  exch_release(ex);
  ex->inited = true;
  ex->worker = w->index;
  /* A response goes out as two writes (headers, then the body): without TCP_NODELAY the body
   * waits for the ACK of the headers, which a client's delayed ACK holds up to 40 ms. */
  int fd = lws_get_socket_fd(lws_get_network_wsi(wsi));
  if (fd >= 0) {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  tn_buf_init(&ex->req_body, srv->max_body);
  tn_buf_init(&ex->resp_body, TN_HTTP_MAX_RESPONSE);
  char *uri;
  int uri_len;
  int m = lws_http_get_uri_and_method(wsi, &uri, &uri_len);
  if (m >= 0 && m < (int)(sizeof methods / sizeof methods[0])) {
    snprintf(ex->method, sizeof ex->method, "%s", methods[m]);
  } else if (m == LWSHUMETH_COLON_PATH) { /* HTTP/2 with a method lws has no token for */
    if (lws_hdr_copy(wsi, ex->method, sizeof ex->method, WSI_TOKEN_HTTP_COLON_METHOD) <= 0)
      m = -1;
  }
  ex->path = strndup(in ? in : "", len);
  ex->content_type = hdr_dup(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE);
  ex->authorization = hdr_dup(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
  if (!ex->path)
    return 1;
  for (int i = 0; i < 64; i++) { /* the query's pieces (lws splits at '&' and decodes them) */
    int flen = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
    if (flen <= 0)
      break;
    char **q = realloc(ex->query, (ex->n_query + 1) * sizeof *q);
    if (!q)
      return 1;
    ex->query = q;
    char *f = malloc((size_t)flen + 1);
    if (!f)
      return 1;
    if (lws_hdr_copy_fragment(wsi, f, flen + 1, WSI_TOKEN_HTTP_URI_ARGS, i) < 0) {
      free(f);
      break;
    }
    ex->query[ex->n_query++] = f;
  }
  bool is_h2 = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_COLON_PATH) > 0;

  /* Is a body coming? lws reads one for any request with a Content-Length, and for POST,
   * PUT and PATCH also without one (until END_STREAM on HTTP/2). */
  char cl[32];
  bool has_cl = lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
  unsigned long long body_len = 0;
  if (has_cl) {
    char *end;
    errno = 0;
    body_len = strtoull(cl, &end, 10);
    if (errno || *end || end == cl || cl[0] == '-') {
      ex->close_after = true;
      exch_respond_status(ex, 400);
      goto respond;
    }
  }
  bool body_coming = has_cl ? body_len > 0 : m >= 0 && method_has_body(ex->method);
  if (body_coming && !has_cl && !is_h2) {
    /* HTTP/1.1 without Content-Length: lws does not decode chunked request bodies */
    ex->close_after = true;
    exch_respond_status(ex, 411);
    goto respond;
  }
  if (body_coming && body_len > (srv->strict ? srv->max_body : discard_limit(srv)) && !is_h2) {
    ex->close_after = true;
    exch_respond_status(ex, 413);
    goto respond;
  }
  if (body_coming && srv->strict) {
    /* Refused from the headers alone, before a byte of the body is read, and the connection is
     * closed (nothing is discarded for keep-alive: that would read the body all the same). */
    size_t n = (size_t)body_len;
    int refuse = 0;
    if (srv->body_type && !tn_http__media_type_is(ex->content_type, srv->body_type))
      refuse = 415;
    else {
      pthread_mutex_lock(&srv->body_mu);
      if (n > srv->small_body && srv->body_budget && srv->reserved + n > srv->body_budget)
        refuse = 503;
      else
        srv->reserved += n;
      pthread_mutex_unlock(&srv->body_mu);
      if (!refuse) {
        ex->srv = srv;
        ex->reserved = n;
      }
    }
    if (refuse) {
      ex->close_after = true;
      exch_respond_status(ex, refuse);
      goto respond;
    }
  }

  int status = 0;
  if (m < 0) {
    status = 400;
  } else {
    bool path_known = false;
    ex->route = tn_http__route_find(srv, ex->method, ex->path, &path_known, ex->allow, sizeof ex->allow);
    if (!ex->route)
      status = path_known ? 405 : 404;
    else if (body_len > srv->max_body)
      status = 413;
  }

  if (body_coming) {
    /* answer at HTTP_BODY_COMPLETION (with Content-Length: 0, lws calls it right away) */
    ex->reading_body = true;
    ex->discard = status != 0;
    ex->pending_status = status;
    return 0;
  }
  if (status)
    exch_respond_status(ex, status);
  else
    exch_run_handler(ex);

respond:
  lws_callback_on_writable(wsi);
  return 0;
}

static int on_body(struct lws *wsi, struct exchange *ex, const void *in, size_t len) {
  if (!ex->inited || !ex->reading_body || ex->discard)
    return 0;
  if (ex->srv && ex->srv->json_object_body && !ex->first_seen) {
    /* Junk is known by its first byte: drop the rest unparsed and unbuffered, answer 400. */
    const char *p = in;
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
      i++;
    if (i < len) {
      ex->first_seen = true;
      if (p[i] != '{') {
        ex->discard = true;
        ex->pending_status = 400;
        ex->close_after = true;
        tn_buf_cleanup(&ex->req_body);
        return 0;
      }
    }
  }
  int rc = tn_buf_append(&ex->req_body, in, len);
  if (rc == TN_ERR_TOOBIG) { /* no Content-Length (HTTP/2): found out while reading */
    ex->discard = true;
    ex->pending_status = 413;
    tn_buf_cleanup(&ex->req_body);
  } else if (rc) {
    return 1;
  }
  return 0;
}

static int on_body_complete(struct lws *wsi, struct exchange *ex) {
  if (!ex->inited || !ex->reading_body)
    return 0;
  if (ex->discard)
    exch_respond_status(ex, ex->pending_status);
  else
    exch_run_handler(ex);
  lws_callback_on_writable(wsi);
  return 0;
}

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: WebSocket and h2c upgrades are refused (lws 4.1.6
 * loses HTTP/2 request bodies, see create_context). Without a body we answer 400 and keep the
 * connection; with one, answering before it is read would trip the discard bug described at
 * struct exchange, so we hang up. Returns what lws expects: 1 answered, -1 close. */
static int on_upgrade(struct lws *wsi) {
  char cl[32];
  bool body = lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0
                  ? strcmp(cl, "0") != 0
                  : lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0 ||
                        lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0 ||
                        lws_hdr_total_length(wsi, WSI_TOKEN_PATCH_URI) > 0;
  if (body)
    return -1;
  return lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "protocol upgrades are not supported") ? -1 : 1;
}

#define CHUNK 16384

/* HTTP_WRITEABLE: one write per callback (headers, then body chunks). Nonzero closes. */
static int on_writeable(struct lws *wsi, struct exchange *ex) {
  if (!ex->inited || !ex->responding)
    return 0;
  if (!ex->headers_sent) {
    unsigned char hbuf[LWS_PRE + 4096];
    unsigned char *start = hbuf + LWS_PRE, *p = start, *end = hbuf + sizeof hbuf - 1;
    /* without a content length lws answers "connection: close" on HTTP/1.1 */
    lws_filepos_t clen = ex->close_after ? LWS_ILLEGAL_HTTP_CONTENT_LEN : ex->resp_body.len;
    if (lws_add_http_common_headers(wsi, (unsigned)ex->status, ex->resp_type, clen, &p, end))
      return 1;
    if (ex->allow[0] && ex->status == 405 &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:", (const unsigned char *)ex->allow,
                                    (int)strlen(ex->allow), &p, end))
      return 1;
    for (int i = 0; i < ex->n_headers; i++) {
      char name[64];
      snprintf(name, sizeof name, "%s:", ex->headers[i].name);
      for (char *c = name; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
          *c = (char)(*c - 'A' + 'a'); /* lws wants lower case names */
      if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                      (const unsigned char *)ex->headers[i].value,
                                      (int)strlen(ex->headers[i].value), &p, end))
        return 1;
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end))
      return 1;
    ex->headers_sent = true;
    lws_callback_on_writable(wsi);
    return 0;
  }
  unsigned char buf[LWS_PRE + CHUNK];
  size_t left = ex->resp_body.len - ex->sent;
  size_t n = left < CHUNK ? left : CHUNK;
  bool final = n == left;
  if (n)
    memcpy(buf + LWS_PRE, ex->resp_body.data + ex->sent, n);
  if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
    return 1;
  ex->sent += n;
  if (!final) {
    lws_callback_on_writable(wsi);
    return 0;
  }
  bool close_now = ex->close_after;
  exch_release(ex);
  if (close_now)
    return -1;
  /* HTTP/1.1 keep-alive: wait for the next request; HTTP/2: the stream ends. Nonzero means
   * close. */
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* The server whose vhost is being created on this thread (create_context), for the one callback
 * that comes before any connection: LOAD_EXTRA_SERVER_VERIFY_CERTS. */
static _Thread_local struct tn_httpserver *creating;

/* Every TLS handshake: serve the identity last given to tn_httpserver_set_certificate. */
int tn_http__cert_cb(SSL *ssl, void *arg) {
  struct tn_httpserver *srv = arg;
  int ok = 1;
  pthread_mutex_lock(&srv->id_mu);
  if (srv->id_cert)
    ok = SSL_use_certificate(ssl, srv->id_cert) == 1 && SSL_use_PrivateKey(ssl, srv->id_key) == 1 &&
         SSL_set1_chain(ssl, srv->id_chain) == 1;
  pthread_mutex_unlock(&srv->id_mu);
  return ok ? 1 : 0;
}

/* On worker w's thread: adopts the connections the acceptor queued for it. */
static void adopt_queued(struct worker *w) {
  int fds[64], n;
  pthread_mutex_lock(&w->q_mu);
  n = w->q_n;
  memcpy(fds, w->q, (size_t)n * sizeof fds[0]);
  w->q_n = 0;
  pthread_mutex_unlock(&w->q_mu);
  for (int i = 0; i < n; i++)
    if (!w->vh || !lws_adopt_socket_vhost(w->vh, fds[i])) /* on failure lws closed it */
      tn_log(TN_LOG_WARN, NULL, "http server %s: thread %d could not take a connection", w->srv->address,
             w->index);
}

static int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len) {
  if (reason == LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS) {
    /* user is the vhost's SSL_CTX */
    if (creating && user)
      SSL_CTX_set_cert_cb((SSL_CTX *)user, tn_http__cert_cb, creating);
    return 0;
  }
  struct exchange *ex = user;
  struct worker *w = lws_context_user(lws_get_context(wsi));
  switch (reason) {
  case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    adopt_queued(w);
    return 0;
  case LWS_CALLBACK_HTTP:
    return on_request(wsi, w, ex, in, len);
  case LWS_CALLBACK_HTTP_BODY:
    return on_body(wsi, ex, in, len);
  case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    return on_body_complete(wsi, ex);
  case LWS_CALLBACK_HTTP_WRITEABLE:
    return on_writeable(wsi, ex);
  case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    return on_upgrade(wsi);
  case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
  case LWS_CALLBACK_CLOSED_HTTP:
    exch_release(ex);
    return 0;
  default:
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
}

static const struct lws_protocols protocols[] = {
    {"tn-http", http_callback, sizeof(struct exchange), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- the service thread ---- */

/* Creates worker w's context and listening vhost (on port `port`). Runs on its service thread. */
static int create_context(struct worker *w, int port, struct tn_error *err) {
  struct tn_httpserver *srv = w->srv;
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.options =
      LWS_SERVER_OPTION_EXPLICIT_VHOSTS | (srv->cert_file ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0);
  info.user = w;
  info.count_threads = 1;
  info.fd_limit_per_thread = 1024; /* else lws sizes tables by RLIMIT_NOFILE */
  info.server_string = "tenancy-operator";
  lws_last_error[0] = '\0';
  struct lws_context *ctx = lws_create_context(&info);
  if (!ctx)
    return tn_error_set(err, TN_ETRANSPORT, "http server %s: cannot create the libwebsockets context: %s",
                        srv->address, lws_last_error[0] ? lws_last_error : "unknown error");

  memset(&info, 0, sizeof info);
  info.vhost_name = "tn";
  info.protocols = protocols;
  info.port = srv->listen_fd >= 0 ? CONTEXT_PORT_NO_LISTEN_SERVER : port; /* the acceptor's */
  info.iface = srv->host[0] ? srv->host : NULL;
  info.server_string = "tenancy-operator";
  info.keepalive_timeout = srv->timeout_s > 0 ? srv->timeout_s : 60;
  info.timeout_secs = srv->timeout_s > 0 ? (unsigned)srv->timeout_s : 30;
  if (srv->host[0] && strchr(srv->host, ':') == NULL)
    info.options |= LWS_SERVER_OPTION_DISABLE_IPV6; /* an IPv4 literal or interface: plain IPv4 */
  if (srv->cert_file) {
    info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; /* lws reads it per vhost too */
    info.ssl_cert_filepath = srv->cert_file;
    info.ssl_private_key_filepath = srv->key_file;
    /* HTTP/1.1 only: lws 4.1.6 loses HTTP/2 request bodies that span several reads (no
     * BODY_COMPLETION; warmcat/libwebsockets#2599, fixed in 4.3) and stalls HTTP/2 responses
     * past 256 KiB (#2395). Go clients, kube-apiserver's webhook client included, then speak
     * HTTP/1.1. */
    info.alpn = "http/1.1";
  }
  lws_last_error[0] = '\0';
  creating = srv;
  struct lws_vhost *vh = lws_create_vhost(ctx, &info);
  creating = NULL;
  if (!vh) {
    char buf[128];
    const char *why = bind_failure(srv->host, port, buf, sizeof buf);
    lws_context_destroy(ctx);
    return tn_error_set(err, TN_ETRANSPORT, "http server %s: cannot listen%s: %s%s(libwebsockets: %s)",
                        srv->address, srv->cert_file ? " with TLS" : "", why ? why : "", why ? " " : "",
                        lws_last_error[0] ? lws_last_error : "unknown error");
  }
  pthread_mutex_lock(&srv->mu);
  w->ctx = ctx;
  w->vh = vh;
  w->port = srv->listen_fd >= 0 ? port : lws_get_vhost_listen_port(vh);
  pthread_mutex_unlock(&srv->mu);
  return 0;
}

/* Several workers: binds the listener the acceptor serves. 0, 1 when the host is not an IP
 * literal (an interface name: one worker then), or an error in err. */
int tn_http__bind_listener(struct tn_httpserver *srv, struct tn_error *err) {
  struct addrinfo hints, *res = NULL;
  char ps[16];
  memset(&hints, 0, sizeof hints);
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(ps, sizeof ps, "%d", srv->want_port);
  int fd = -1;
  if (!srv->host[0]) { /* every interface: IPv6 and IPv4 on one socket, as libwebsockets does */
    fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int zero = 0, one = 1;
    struct sockaddr_in6 a6 = {
        .sin6_family = AF_INET6, .sin6_addr = in6addr_any, .sin6_port = htons((uint16_t)srv->want_port)};
    if (fd >= 0 && (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0 ||
                    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
                    bind(fd, (struct sockaddr *)&a6, sizeof a6) != 0)) {
      int e = errno;
      close(fd);
      fd = -1;
      if (e != EAFNOSUPPORT && e != EADDRNOTAVAIL)
        return tn_error_set(err, TN_ETRANSPORT, "http server %s: cannot listen%s: %s", srv->address,
                            srv->cert_file ? " with TLS" : "", strerror(e));
    }
    if (fd < 0)
      hints.ai_family = AF_INET; /* no IPv6 here: IPv4 only */
  }
  if (fd < 0) {
    if (getaddrinfo(srv->host[0] ? srv->host : NULL, ps, &hints, &res) != 0)
      return 1; /* an interface name: libwebsockets binds it, with one worker */
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
      int e = errno;
      if (fd >= 0)
        close(fd);
      freeaddrinfo(res);
      return tn_error_set(err, TN_ETRANSPORT, "http server %s: cannot listen%s: %s", srv->address,
                          srv->cert_file ? " with TLS" : "", strerror(e));
    }
    freeaddrinfo(res);
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (listen(fd, SOMAXCONN) != 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
    int e = errno;
    close(fd);
    return tn_error_set(err, TN_ETRANSPORT, "http server %s: cannot listen: %s", srv->address, strerror(e));
  }
  srv->listen_fd = fd;
  pthread_mutex_lock(&srv->mu);
  srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
  pthread_mutex_unlock(&srv->mu);
  return 0;
}

/* The acceptor: every new connection to the next worker, round robin. */
static void *acceptor_main(void *arg) {
  struct tn_httpserver *srv = arg;
  unsigned next = 0;
  for (;;) {
    int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (atomic_load_explicit(&srv->stopping, memory_order_acquire)) {
      if (fd >= 0)
        close(fd);
      break;
    }
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        usleep(10 * 1000); /* out of descriptors: let connections close */
      continue;
    }
    int one = 1; /* see on_request: responses go out as two writes */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bool queued = false;
    pthread_mutex_lock(&srv->mu);
    for (int tries = 0; tries < srv->n_workers && !queued; tries++) {
      struct worker *w = &srv->workers[next++ % (unsigned)srv->n_workers];
      if (!w->ctx)
        continue;
      pthread_mutex_lock(&w->q_mu);
      if (w->q_n < (int)(sizeof w->q / sizeof w->q[0])) {
        w->q[w->q_n++] = fd;
        queued = true;
      }
      pthread_mutex_unlock(&w->q_mu);
      if (queued)
        lws_cancel_service(w->ctx);
    }
    pthread_mutex_unlock(&srv->mu);
    if (!queued)
      close(fd); /* every worker is behind by a full queue: shed the connection */
  }
  return NULL;
}

static void *service_main(void *arg) {
  struct worker *w = arg;
  struct tn_httpserver *srv = w->srv;
  struct tn_error err;
  tn_error_clear(&err);
  /* worker 0 binds the configured port (maybe 0: any); the others the port it got */
  pthread_mutex_lock(&srv->mu);
  int port = w->index == 0 ? srv->want_port : srv->workers[0].port;
  pthread_mutex_unlock(&srv->mu);
  int rc = create_context(w, port, &err);
  pthread_mutex_lock(&srv->mu);
  if (rc) {
    w->err = err;
    w->state = SRV_FAILED;
  } else {
    w->state = SRV_RUNNING;
    char name[16];
    if (srv->n_workers > 1)
      snprintf(name, sizeof name, "tn-http:%d/%d", w->port, w->index);
    else
      snprintf(name, sizeof name, "tn-http:%d", w->port);
    pthread_setname_np(pthread_self(), name);
  }
  pthread_cond_broadcast(&srv->cv);
  pthread_mutex_unlock(&srv->mu);
  if (rc)
    return NULL;

  while (!atomic_load_explicit(&srv->stopping, memory_order_acquire)) {
    if (lws_service(w->ctx, 0) < 0) {
      tn_log(TN_LOG_ERROR, NULL, "http server %s: the service loop of thread %d failed; it stops serving",
             srv->address, w->index);
      break;
    }
  }
  /* destroy under the lock: tn_httpserver_free may be calling lws_cancel_service() */
  pthread_mutex_lock(&srv->mu);
  lws_context_destroy(w->ctx);
  w->ctx = NULL;
  w->state = SRV_STOPPED;
  pthread_mutex_unlock(&srv->mu);
  return NULL;
}

/* Starts worker i and waits until it listens or failed. 0 or an error in err. */
static int start_worker(struct tn_httpserver *srv, int i, struct tn_error *err) {
  struct worker *w = &srv->workers[i];
  w->srv = srv;
  w->index = i;
  pthread_mutex_lock(&srv->mu);
  w->state = SRV_STARTING;
  pthread_mutex_unlock(&srv->mu);

  /* The thread blocks every signal so that they reach the program's own handling. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&w->thread, NULL, service_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    pthread_mutex_lock(&srv->mu);
    w->state = SRV_FAILED;
    pthread_mutex_unlock(&srv->mu);
    return tn_error_set(err, -rc, "http server %s: cannot start its thread: %s", srv->address, strerror(rc));
  }
  w->thread_created = true;

  pthread_mutex_lock(&srv->mu);
  while (w->state == SRV_STARTING)
    pthread_cond_wait(&srv->cv, &srv->mu);
  rc = 0;
  if (w->state == SRV_FAILED) {
    rc = w->err.code;
    if (err)
      *err = w->err;
  }
  pthread_mutex_unlock(&srv->mu);
  return rc;
}

int tn_httpserver_start(struct tn_httpserver *srv, struct tn_error *err) {
  if (!srv)
    return 0;
  if (srv->started)
    return tn_error_set(err, -EBUSY, "http server %s was already started", srv->address);
  srv->started = true;
  pthread_mutex_lock(&srv->mu);
  srv->state = SRV_STARTING;
  pthread_mutex_unlock(&srv->mu);
  int rc = 0;
  const char *env = getenv("TENANCY_HTTP_BACKEND");
  if (env && strcmp(env, "epoll") == 0)
    srv->fast = true;
  else if (env && strcmp(env, "lws") == 0)
    srv->fast = false;
  if (srv->fast) {
    rc = tn_fast_start(srv, err); /* sets srv->port; 1: an interface name, libwebsockets binds it */
    if (rc == 1) {
      tn_log(TN_LOG_WARN, NULL,
             "http server %s: served by libwebsockets (the epoll server needs an IP address)", srv->address);
      srv->fast = false;
      rc = 0;
    }
  }
  if (srv->fast) {
    pthread_mutex_lock(&srv->mu);
    srv->state = rc ? SRV_FAILED : SRV_RUNNING;
    pthread_mutex_unlock(&srv->mu);
    return rc;
  }
  if (srv->n_workers > 1) {
    rc = tn_http__bind_listener(srv, err);
    if (rc == 1) {
      tn_log(TN_LOG_WARN, NULL,
             "http server %s: one service thread (several need an IP address, not an interface)",
             srv->address);
      srv->n_workers = 1;
      rc = 0;
    }
  }
  for (int i = 0; i < srv->n_workers && rc == 0; i++)
    rc = start_worker(srv, i, err);
  if (rc == 0 && srv->listen_fd >= 0) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&srv->acceptor, NULL, acceptor_main, srv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e)
      rc = tn_error_set(err, -e, "http server %s: cannot start its acceptor: %s", srv->address, strerror(e));
    else
      srv->acceptor_created = true;
  }
  pthread_mutex_lock(&srv->mu);
  srv->state = rc ? SRV_FAILED : SRV_RUNNING;
  if (srv->listen_fd < 0)
    srv->port = rc ? 0 : srv->workers[0].port;
  pthread_mutex_unlock(&srv->mu);
  return rc;
}

void tn_httpserver_free(struct tn_httpserver *srv) {
  if (!srv)
    return;
  if (srv->fst)
    tn_fast_stop(srv); /* joins its threads: no handler runs after this */
  pthread_mutex_lock(&srv->mu);
  atomic_store_explicit(&srv->stopping, true, memory_order_release);
  for (int i = 0; i < srv->n_workers; i++)
    if (srv->workers[i].ctx)
      lws_cancel_service(srv->workers[i].ctx);
  pthread_mutex_unlock(&srv->mu);
  if (srv->acceptor_created) {
    (void)shutdown(srv->listen_fd, SHUT_RDWR); /* accept() returns */
    pthread_join(srv->acceptor, NULL);
  }
  if (srv->listen_fd >= 0)
    close(srv->listen_fd);
  for (int i = 0; i < srv->n_workers; i++)
    if (srv->workers[i].thread_created)
      pthread_join(srv->workers[i].thread, NULL);
  for (int i = 0; i < TN_HTTP_MAX_WORKERS; i++) {
    struct worker *w = &srv->workers[i];
    for (int k = 0; k < w->q_n; k++) /* accepted, never adopted */
      close(w->q[k]);
    pthread_mutex_destroy(&w->q_mu);
  }
  struct route *r = srv->routes;
  while (r) {
    struct route *next = r->next;
    route_free(r);
    r = next;
  }
  free(srv->cert_file);
  free(srv->key_file);
  free(srv->body_type);
  X509_free(srv->id_cert);
  EVP_PKEY_free(srv->id_key);
  sk_X509_pop_free(srv->id_chain, X509_free);
  pthread_mutex_destroy(&srv->id_mu);
  pthread_cond_destroy(&srv->cv);
  pthread_mutex_destroy(&srv->body_mu);
  pthread_mutex_destroy(&srv->mu);
  free(srv);
}

int tn_httpserver_set_certificate(struct tn_httpserver *srv, const char *cert_pem, const char *key_pem,
                                  struct tn_error *err) {
  if (!srv)
    return 0;
  if (!srv->cert_file)
    return tn_error_set(err, TN_ECONFIG, "http server %s does not serve TLS", srv->address);
  X509 *leaf = NULL;
  EVP_PKEY *key = NULL;
  STACK_OF(X509) *chain = sk_X509_new_null();
  BIO *b = BIO_new_mem_buf(cert_pem, -1);
  int rc = 0;
  if (!chain || !b || !(leaf = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
    rc = tn_error_set(err, TN_ECONFIG, "the certificate is not PEM");
    goto out;
  }
  for (X509 *x; (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL;)
    if (!sk_X509_push(chain, x)) {
      X509_free(x);
      rc = tn_error_set(err, -ENOMEM, "out of memory");
      goto out;
    }
  BIO_free(b);
  b = BIO_new_mem_buf(key_pem, -1);
  if (!b || !(key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL))) {
    rc = tn_error_set(err, TN_ECONFIG, "the private key is not PEM");
    goto out;
  }
  if (X509_check_private_key(leaf, key) != 1) {
    rc = tn_error_set(err, TN_ECONFIG, "the private key does not match the certificate");
    goto out;
  }
  pthread_mutex_lock(&srv->id_mu);
  X509 *old_cert = srv->id_cert;
  EVP_PKEY *old_key = srv->id_key;
  STACK_OF(X509) *old_chain = srv->id_chain;
  srv->id_cert = leaf;
  srv->id_key = key;
  srv->id_chain = chain;
  pthread_mutex_unlock(&srv->id_mu);
  leaf = old_cert;
  key = old_key;
  chain = old_chain;
out:
  ERR_clear_error();
  BIO_free(b);
  X509_free(leaf);
  EVP_PKEY_free(key);
  sk_X509_pop_free(chain, X509_free);
  return rc;
}

/* ---- ready-made routes ---- */

static int healthz(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  return tn_buf_appends(&resp->body, "ok");
}

struct probe {
  tn_http_ready_fn ready;
  void *ud;
};

static int readyz(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  const struct probe *p = ud;
  char reason[512] = "";
  if (!p->ready || p->ready(p->ud, reason, sizeof reason))
    return tn_buf_appends(&resp->body, "ok");
  reason[sizeof reason - 1] = '\0';
  resp->status = 503;
  return tn_buf_appends(&resp->body, reason[0] ? reason : "not ready");
}

static int metrics_handler(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  snprintf(resp->content_type, sizeof resp->content_type, "text/plain; version=0.0.4; charset=utf-8");
  return tn_metrics_write(ud, &resp->body);
}

int tn_httpserver_serve_probes(struct tn_httpserver *srv, tn_http_ready_fn ready, void *ud) {
  if (!srv)
    return 0;
  struct probe *p = calloc(1, sizeof *p); /* owned by the /readyz route */
  if (!p)
    return -ENOMEM;
  p->ready = ready;
  p->ud = ud;
  int rc = route_add(srv, "GET", "/readyz", readyz, p, free);
  if (rc == 0)
    rc = route_add(srv, "GET", "/healthz", healthz, NULL, NULL);
  return rc;
}

int tn_httpserver_serve_metrics(struct tn_httpserver *srv, struct tn_metrics *m) {
  if (!srv)
    return 0;
  if (!m)
    return -EINVAL;
  return tn_httpserver_route(srv, "GET", "/metrics", metrics_handler, m);
}
