/* httpfast.c - the lean HTTP/1.1 backend of httpserver.c (tn_httpserver_set_backend): one
 * listening socket, N worker threads each with its own epoll, non-blocking sockets and OpenSSL
 * directly. Keep-alive and pipelining: a worker reads what a connection has, answers every
 * complete request in it, and sends the responses in one write (one SSL_write). The request is
 * parsed in place in a preallocated per-connection buffer (no allocation per request but the
 * handler's own), nothing is logged per byte.
 *
 * Threads: each worker owns its connections for their whole life. The listener is in every
 * worker's epoll (EPOLLEXCLUSIVE); the worker that accepts hands the connection round robin to
 * a worker (itself, or through that worker's queue and eventfd), so connections spread evenly.
 * Other threads only set `stopping` and write the eventfds.
 *
 * Deferred work (tn_http_defer): a handler may hand the blocking part of a request to the
 * server's job threads. The job holds a copy of the request; the connection records it (c->job)
 * and answers nothing more until it is done (pipelined requests keep their order). A job thread
 * runs it and puts it on its worker's done list (w->done_mu) and writes that worker's eventfd;
 * the worker writes the response and runs the connection on. job->c is only touched by the
 * worker's thread: a connection freed while its job runs sets it to NULL, and the worker then
 * just frees the finished job. The job queue (f->jmu) is bounded (TN_HTTP_JOB_QUEUE: 503). Routes and
 * settings are read-only once started; the serving identity is behind srv->id_mu (tn_http__cert_cb); the body
 * budget behind srv->body_mu.
 *
 * Limits as with libwebsockets: the header block is at most FAST_RBUF bytes (else 431 and
 * close), a request must arrive whole within timeout_s (30 s default) of its first byte however
 * slowly it trickles in (slowloris), an idle keep-alive connection is closed after timeout_s
 * (60 s default), a response that does not drain within timeout_s closes the connection, a TLS
 * handshake must finish within timeout_s, bodies are judged from the headers (413, 415, 503,
 * 411 without Content-Length, chunked refused), and open connections are capped
 * (max_connections). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "runtime/httpserver_impl.h"
#include "runtime/log.h"
#include "util/wipe.h"

#define FAST_RBUF 16384         /* request header block cap, and the read buffer */
#define FAST_MAX_QUERY 64       /* query pieces passed to the handler */
#define FAST_MAX_HEADERS 100    /* header lines in one request */
#define FAST_WBUF_HIGH 65536    /* stop answering pipelined requests past this much unsent */
#define FAST_DEFAULT_CONNS 1024 /* per worker */
#define FAST_DRAIN_S 2          /* after the last response of a closing connection */

enum conn_state { C_HANDSHAKE, C_HEADERS, C_BODY, C_CLOSING, C_DRAINING };

/* A parsed request: offsets from the request's first byte in rbuf (-1: absent). */
struct preq {
  char method[16];
  int path, ctype, auth;
  int q[FAST_MAX_QUERY];
  int nq;
  int hdr_len; /* bytes of request line + headers + the blank line */
  const struct route *route;
  int pending_status; /* body read to be discarded, then this answered */
  bool discard, first_seen, head, expect;
  char allow[128];
  size_t body_left;
  size_t reserved; /* share of srv->reserved */
};

struct fworker;
struct conn;

/* A request handed to the job threads (tn_http_defer). */
struct fjob {
  struct fjob *next;
  struct fworker *w;
  struct conn *c; /* the waiting connection; NULL once it is gone (w's thread only) */
  tn_http_handler fn;
  void *arg;
  void (*free_arg)(void *);
  char *strs; /* method, path, content type, authorization, query pieces: one block */
  size_t strs_len;
  const char *method, *path, *ctype, *auth;
  const char **query;
  size_t nq;
  char *body;
  size_t body_len;
  bool head;
  int rc;
  struct tn_http_response resp;
};

struct conn {
  struct conn *prev, *next; /* the worker's list */
  struct fworker *w;
  int fd;
  SSL *ssl;
  enum conn_state state;
  bool can_read, can_write, peer_eof, close_after, keep_alive;
  bool more;       /* conn_run stopped with work left (fairness): run it again */
  double deadline; /* monotonic seconds: the current phase must end by then */
  size_t rpos, rlen;
  struct preq rq;
  struct fjob *job; /* a deferred request in progress: nothing more is answered until it is done */
  struct tn_buf body;
  struct tn_buf wbuf;
  size_t wpos;
  char rbuf[FAST_RBUF + 1];
};

struct fworker {
  struct tn_httpserver *srv;
  int index;
  pthread_t thread;
  bool created;
  int ep, evfd;
  struct conn *conns;
  int n_conns;
  pthread_mutex_t q_mu; /* connections handed over by another worker */
  int q[256];
  int q_n;
  struct tn_buf resp; /* the handler's response body, reused */
  pthread_mutex_t done_mu;
  struct fjob *done; /* finished jobs of this worker's connections (newest first) */
};

struct tn_fast {
  SSL_CTX *ctx;
  int n;
  int max_conns; /* per worker */
  atomic_uint rr;
  atomic_bool stopping;
  struct fworker w[TN_HTTP_MAX_WORKERS];
  /* job threads (tn_http_defer) */
  pthread_mutex_t jmu;
  pthread_cond_t jcv;
  struct fjob *jhead, *jtail;
  int jn;
  bool jstop;
  int n_jt;
  pthread_t jt[TN_HTTP_MAX_JOB_THREADS];
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double req_timeout(const struct tn_httpserver *srv) {
  return srv->timeout_s > 0 ? srv->timeout_s : 30;
}
static double idle_timeout(const struct tn_httpserver *srv) {
  return srv->timeout_s > 0 ? srv->timeout_s : 60;
}

/* ---- connections ---- */

static void conn_free(struct conn *c) {
  struct fworker *w = c->w;
  if (c->job)
    c->job->c = NULL; /* its job finishes on its own; the worker frees it then */
  if (c->rq.reserved) {
    pthread_mutex_lock(&w->srv->body_mu);
    w->srv->reserved -= c->rq.reserved;
    pthread_mutex_unlock(&w->srv->body_mu);
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    w->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  w->n_conns--;
  SSL_free(c->ssl);
  close(c->fd);              /* also leaves the epoll */
  tn_wipe(c->rbuf, c->rlen); /* bearer tokens */
  tn_buf_cleanup(&c->body);
  tn_buf_cleanup(&c->wbuf);
  free(c);
}

static void conn_adopt(struct fworker *w, int fd) {
  struct tn_fast *f = w->srv->fst;
  if (w->n_conns >= f->max_conns) {
    close(fd); /* over the cap: shed it */
    return;
  }
  struct conn *c = malloc(sizeof *c);
  if (!c) {
    close(fd);
    return;
  }
  memset(c, 0, offsetof(struct conn, rbuf));
  c->rbuf[0] = '\0';
  c->w = w;
  c->fd = fd;
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  tn_buf_init(&c->wbuf, TN_HTTP_MAX_RESPONSE + 65536);
  tn_buf_init(&c->body, w->srv->max_body);
  c->state = C_HEADERS;
  c->deadline = now_s() + idle_timeout(w->srv);
  if (f->ctx) {
    c->ssl = SSL_new(f->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
      SSL_free(c->ssl);
      tn_buf_cleanup(&c->wbuf);
      tn_buf_cleanup(&c->body);
      free(c);
      close(fd);
      ERR_clear_error();
      return;
    }
    SSL_set_accept_state(c->ssl);
    c->state = C_HANDSHAKE;
    c->deadline = now_s() + req_timeout(w->srv);
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
  if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    SSL_free(c->ssl);
    tn_buf_cleanup(&c->wbuf);
    tn_buf_cleanup(&c->body);
    free(c);
    close(fd);
    return;
  }
  c->next = w->conns;
  if (w->conns)
    w->conns->prev = c;
  w->conns = c;
  w->n_conns++;
  c->can_read = c->can_write = true;
}

/* ---- response ---- */

static const char *reason(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 301:
    return "Moved Permanently";
  case 302:
    return "Found";
  case 304:
    return "Not Modified";
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
  case 410:
    return "Gone";
  case 411:
    return "Length Required";
  case 413:
    return "Payload Too Large";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Entity";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 503:
    return "Service Unavailable";
  case 505:
    return "HTTP Version Not Supported";
  default:
    return "Status";
  }
}

/* Appends a whole response to the connection's write buffer. */
static int put_response(struct conn *c, int status, const char *type, const char *body, size_t body_len,
                        const struct tn_http_header *hdrs, int n_hdrs, const char *allow, bool head) {
  struct tn_buf *b = &c->wbuf;
  int rc = tn_buf_printf(
      b, "HTTP/1.1 %d %s\r\nserver: tenancy-operator\r\ncontent-type: %s\r\ncontent-length: %zu\r\n", status,
      reason(status), type, body_len);
  if (rc == 0 && allow && allow[0])
    rc = tn_buf_printf(b, "allow: %s\r\n", allow);
  for (int i = 0; rc == 0 && i < n_hdrs; i++)
    rc = tn_buf_printf(b, "%s: %s\r\n", hdrs[i].name, hdrs[i].value);
  if (rc == 0 && c->close_after)
    rc = tn_buf_appends(b, "connection: close\r\n");
  if (rc == 0)
    rc = tn_buf_append(b, "\r\n", 2);
  if (rc == 0 && body_len && !head)
    rc = tn_buf_append(b, body, body_len);
  return rc;
}

static int put_status(struct conn *c, int status, bool close_after) {
  if (close_after)
    c->close_after = true;
  const char *t = tn_http__status_text(status);
  if (status == 431)
    t = "request header fields too large\n";
  else if (status == 505)
    t = "HTTP version not supported\n";
  return put_response(c, status, "text/plain; charset=utf-8", t, strlen(t), NULL, 0,
                      status == 405 ? c->rq.allow : NULL, c->rq.head);
}

static void release_reservation(struct conn *c) {
  if (c->rq.reserved) {
    pthread_mutex_lock(&c->w->srv->body_mu);
    c->w->srv->reserved -= c->rq.reserved;
    pthread_mutex_unlock(&c->w->srv->body_mu);
    c->rq.reserved = 0;
  }
}

/* Runs the route's handler on the request at rbuf + rpos and appends its response. */
static int run_handler(struct conn *c) {
  static const char empty[] = "";
  struct preq *q = &c->rq;
  char *base = c->rbuf + c->rpos;
  const char *query[FAST_MAX_QUERY];
  for (int i = 0; i < q->nq; i++)
    query[i] = base + q->q[i];
  struct tn_http_request req = {
      .method = q->method,
      .path = base + q->path,
      .content_type = q->ctype >= 0 ? base + q->ctype : empty,
      .body = c->body.data ? c->body.data : empty,
      .body_len = c->body.len,
      .authorization = q->auth >= 0 ? base + q->auth : empty,
      .query = query,
      .n_query = (size_t)q->nq,
      .worker = c->w->index,
      .head = q->head,
      .impl = c,
  };
  struct tn_http_response resp = {.status = 200};
  memcpy(resp.content_type, "text/plain; charset=utf-8", sizeof "text/plain; charset=utf-8");
  resp.body = c->w->resp;
  tn_buf_reset(&resp.body);
  int rc = q->route->handler(&req, &resp, q->route->ud);
  if (c->job && rc >= 0) { /* deferred: the job answers */
    c->w->resp = resp.body;
    tn_buf_reset(&c->w->resp);
    return 0;
  }
  if (rc < 0 || resp.status < 100 || resp.status > 599) {
    tn_log(TN_LOG_ERROR, NULL, "http handler for %s %s failed (%s, status %d)", req.method, req.path,
           rc < 0 ? tn_strerror(rc) : "ok", resp.status);
    if (resp.body.len == 0)
      (void)tn_buf_appends(&resp.body, "internal error\n");
    resp.status = 500;
    resp.n_headers = 0;
    snprintf(resp.content_type, sizeof resp.content_type, "text/plain; charset=utf-8");
  }
  resp.content_type[sizeof resp.content_type - 1] = '\0';
  rc = put_response(c, resp.status, resp.content_type[0] ? resp.content_type : "text/plain", resp.body.data,
                    resp.body.len, resp.headers, resp.n_headers, NULL, q->head);
  c->w->resp = resp.body; /* the buffer may have grown */
  tn_buf_reset(&c->w->resp);
  return rc;
}

/* ---- request parsing ---- */

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* URL-decodes s in place ('+' as a space when plus); false on a bad escape or a NUL. */
static bool url_decode(char *s, bool plus) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (*p == '%') {
      int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
        return false;
      *o++ = (char)(hi * 16 + lo);
      p += 2;
    } else if (plus && *p == '+') {
      *o++ = ' ';
    } else {
      *o++ = *p;
    }
  }
  *o = '\0';
  return true;
}

static bool path_has_dot_segment(const char *p) {
  for (const char *s = p; (s = strstr(s, "/.")) != NULL; s++) {
    if (s[2] == '/' || s[2] == '\0' || (s[2] == '.' && (s[3] == '/' || s[3] == '\0')))
      return true;
  }
  return false;
}

static bool method_has_body(const char *m) {
  return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

static bool has_token(const char *v, const char *tok) {
  size_t n = strlen(tok);
  for (const char *p = v; *p;) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    const char *e = p;
    while (*e && *e != ',')
      e++;
    const char *t = e;
    while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
      t--;
    if ((size_t)(t - p) == n && strncasecmp(p, tok, n) == 0)
      return true;
    p = e;
  }
  return false;
}

/* The server's body cap past which a body is not even read to keep the connection. */
static size_t discard_limit(const struct tn_httpserver *srv) {
  size_t lim = srv->max_body * 4;
  return lim < (16u << 20) ? (16u << 20) : lim;
}

/* Parses the header block at rbuf[rpos, rpos + hlen) (hlen includes the blank line) in place
 * and decides what to do. Returns 0 (c->state is C_BODY, or the response is queued), or -1 to
 * drop the connection. */
static int parse_request(struct conn *c, size_t hlen) {
  static const char *const methods[] = {"GET",   "POST",   "OPTIONS", "PUT",
                                        "PATCH", "DELETE", "CONNECT", "HEAD"};
  struct tn_httpserver *srv = c->w->srv;
  struct preq *q = &c->rq;
  char *base = c->rbuf + c->rpos;
  memset(q, 0, sizeof *q);
  q->path = q->ctype = q->auth = -1;
  q->hdr_len = (int)hlen;
  base[hlen - 2] = '\0'; /* the blank line's CRLF */
  /* request line */
  char *line = base, *eol = strstr(line, "\r\n");
  if (!eol)
    return put_status(c, 400, true);
  *eol = '\0';
  char *sp1 = strchr(line, ' ');
  char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp1 || !sp2 || strchr(sp2 + 1, ' '))
    return put_status(c, 400, true);
  *sp1 = *sp2 = '\0';
  const char *version = sp2 + 1;
  bool http11 = strcmp(version, "HTTP/1.1") == 0;
  if (!http11 && strcmp(version, "HTTP/1.0") != 0)
    return put_status(c, strncmp(version, "HTTP/", 5) == 0 ? 505 : 400, true);
  int m = -1;
  for (int i = 0; i < (int)(sizeof methods / sizeof methods[0]); i++)
    if (strcmp(line, methods[i]) == 0)
      m = i;
  snprintf(q->method, sizeof q->method, "%s", m >= 0 ? methods[m] : "");
  q->head = m == 7;
  char *target = sp1 + 1;
  if (target[0] != '/')
    return put_status(c, 400, true);
  char *qs = strchr(target, '?');
  if (qs)
    *qs++ = '\0';
  /* headers */
  bool has_cl = false, has_te = false, upgrade = false, conn_close = false, conn_keep = false;
  unsigned long long body_len = 0;
  int nh = 0;
  for (char *h = eol + 2; *h;) {
    char *e = strstr(h, "\r\n");
    if (e)
      *e = '\0';
    if (++nh > FAST_MAX_HEADERS)
      return put_status(c, 431, true);
    if (*h == ' ' || *h == '\t') /* obsolete line folding */
      return put_status(c, 400, true);
    char *colon = strchr(h, ':');
    if (!colon || colon == h)
      return put_status(c, 400, true);
    for (char *p = h; p < colon; p++)
      if (*p <= ' ' || *p >= 127)
        return put_status(c, 400, true);
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
      v++;
    char *ve = v + strlen(v);
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
      *--ve = '\0';
    for (char *p = v; *p; p++)
      if ((unsigned char)*p < ' ' && *p != '\t')
        return put_status(c, 400, true);
    if (strcasecmp(h, "content-length") == 0) {
      char *end;
      errno = 0;
      unsigned long long n = strtoull(v, &end, 10);
      if (errno || *end || end == v || v[0] == '-' || v[0] == '+' || (has_cl && n != body_len))
        return put_status(c, 400, true);
      has_cl = true;
      body_len = n;
    } else if (strcasecmp(h, "transfer-encoding") == 0) {
      has_te = true;
    } else if (strcasecmp(h, "content-type") == 0) {
      q->ctype = (int)(v - base);
    } else if (strcasecmp(h, "authorization") == 0) {
      q->auth = (int)(v - base);
    } else if (strcasecmp(h, "connection") == 0) {
      conn_close = conn_close || has_token(v, "close");
      conn_keep = conn_keep || has_token(v, "keep-alive");
      upgrade = upgrade || has_token(v, "upgrade");
    } else if (strcasecmp(h, "upgrade") == 0) {
      upgrade = true;
    } else if (strcasecmp(h, "expect") == 0) {
      if (strcasecmp(v, "100-continue") != 0)
        return put_status(c, 400, true); /* 417 would do; nobody sends other expectations */
      q->expect = true;
    }
    if (!e)
      break;
    h = e + 2;
  }
  c->keep_alive = http11 ? !conn_close : conn_keep && !conn_close;
  if (!c->keep_alive)
    c->close_after = true;
  if (!url_decode(target, false) || path_has_dot_segment(target))
    return put_status(c, 400, true);
  q->path = (int)(target - base);
  if (qs) {
    for (char *p = qs; *p && q->nq < FAST_MAX_QUERY;) {
      char *amp = strchr(p, '&');
      if (amp)
        *amp = '\0';
      if (*p) {
        if (!url_decode(p, true))
          return put_status(c, 400, true);
        q->q[q->nq++] = (int)(p - base);
      }
      if (!amp)
        break;
      p = amp + 1;
    }
  }
  if (has_te) /* chunked bodies are not decoded (as with libwebsockets): refuse, never guess */
    return put_status(c, has_cl ? 400 : 411, true);
  bool body_coming = has_cl ? body_len > 0 : m >= 0 && method_has_body(q->method);
  if (upgrade) { /* WebSocket and h2c upgrades are refused */
    if (body_coming)
      return -1;
    return put_response(c, 400, "text/plain; charset=utf-8", "protocol upgrades are not supported",
                        strlen("protocol upgrades are not supported"), NULL, 0, NULL, q->head);
  }
  if (body_coming && !has_cl)
    return put_status(c, 411, true);
  if (body_coming && body_len > (srv->strict ? srv->max_body : discard_limit(srv)))
    return put_status(c, 413, true);
  if (body_coming && srv->strict) {
    size_t n = (size_t)body_len;
    int refuse = 0;
    if (srv->body_type && !tn_http__media_type_is(q->ctype >= 0 ? base + q->ctype : NULL, srv->body_type))
      refuse = 415;
    else {
      pthread_mutex_lock(&srv->body_mu);
      if (n > srv->small_body && srv->body_budget && srv->reserved + n > srv->body_budget)
        refuse = 503;
      else
        srv->reserved += n;
      pthread_mutex_unlock(&srv->body_mu);
      if (!refuse)
        q->reserved = n;
    }
    if (refuse)
      return put_status(c, refuse, true);
  }
  int status = 0;
  if (m < 0) {
    status = 400;
  } else {
    bool known = false;
    q->route = tn_http__route_find(srv, q->method, base + q->path, &known, q->allow, sizeof q->allow);
    if (!q->route)
      status = known ? 405 : 404;
    else if (body_len > srv->max_body)
      status = 413;
  }
  if (body_coming) {
    c->state = C_BODY;
    q->body_left = (size_t)body_len;
    q->discard = status != 0;
    q->pending_status = status;
    tn_buf_reset(&c->body);
    if (q->expect && tn_buf_appends(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n"))
      return -1;
    return 0;
  }
  if (status)
    return put_status(c, status, m < 0);
  tn_buf_reset(&c->body);
  return run_handler(c);
}

/* Takes body bytes from rbuf[rpos + hdr_len, rlen) into the body (or drops them). */
static int take_body(struct conn *c) {
  struct preq *q = &c->rq;
  size_t start = c->rpos + (size_t)q->hdr_len;
  size_t have = c->rlen - start;
  size_t n = have < q->body_left ? have : q->body_left;
  if (n == 0)
    return 0;
  const char *p = c->rbuf + start;
  if (!q->discard && c->w->srv->json_object_body && !q->first_seen) {
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
      i++;
    if (i < n) {
      q->first_seen = true;
      if (p[i] != '{') { /* junk: read on unbuffered, answer 400, close */
        q->discard = true;
        q->pending_status = 400;
        c->close_after = true;
        tn_buf_reset(&c->body);
      }
    }
  }
  if (!q->discard) {
    int rc = tn_buf_append(&c->body, p, n);
    if (rc == TN_ERR_TOOBIG) {
      q->discard = true;
      q->pending_status = 413;
      tn_buf_reset(&c->body);
    } else if (rc) {
      return -1;
    }
  }
  memmove(c->rbuf + start, c->rbuf + start + n, have - n);
  c->rlen -= n;
  q->body_left -= n;
  return 0;
}

/* Answers every complete request in rbuf while the unsent responses stay under the mark.
 * Returns 0 (needs more input), 1 (stopped at the mark: send, then call again), or -1. */
static int process(struct conn *c) {
  while (c->state == C_HEADERS || c->state == C_BODY) {
    if (c->job)
      return 0; /* a deferred request first */
    if (c->wbuf.len - c->wpos > FAST_WBUF_HIGH)
      return 1;
    if (c->state == C_HEADERS) {
      while (c->rpos < c->rlen && (c->rbuf[c->rpos] == '\r' || c->rbuf[c->rpos] == '\n'))
        c->rpos++; /* blank lines between requests */
      if (c->rpos == c->rlen)
        return 0;
      c->rbuf[c->rlen] = '\0';
      char *end = memmem(c->rbuf + c->rpos, c->rlen - c->rpos, "\r\n\r\n", 4);
      if (!end) {
        if (c->rpos == 0 && c->rlen >= FAST_RBUF) {
          memset(&c->rq, 0, sizeof c->rq);
          if (put_status(c, 431, true))
            return -1;
          c->state = C_CLOSING;
        }
        return 0;
      }
      if (memchr(c->rbuf + c->rpos, '\0', (size_t)(end - (c->rbuf + c->rpos))))
        return put_status(c, 400, true) ? -1 : (c->state = C_CLOSING, 0);
      size_t hlen = (size_t)(end + 4 - (c->rbuf + c->rpos));
      if (parse_request(c, hlen))
        return -1;
      if (c->state != C_BODY) {
        tn_wipe(c->rbuf + c->rpos, hlen);
        c->rpos += hlen;
        c->deadline = now_s() + idle_timeout(c->w->srv);
        if (c->close_after) {
          c->state = C_CLOSING;
          return 0;
        }
        continue;
      }
    }
    /* C_BODY */
    if (take_body(c))
      return -1;
    if (c->rq.body_left)
      return 0;
    int rc = c->rq.discard ? put_status(c, c->rq.pending_status, false) : run_handler(c);
    release_reservation(c);
    tn_buf_reset(&c->body);
    if (rc)
      return -1;
    tn_wipe(c->rbuf + c->rpos, (size_t)c->rq.hdr_len);
    c->rpos += (size_t)c->rq.hdr_len;
    c->state = C_HEADERS;
    c->deadline = now_s() + idle_timeout(c->w->srv);
    if (c->close_after) {
      c->state = C_CLOSING;
      return 0;
    }
  }
  return 0;
}

/* ---- I/O ---- */

/* Reads what is there into rbuf. 1 read something, 0 nothing (would block, or full), -1 gone. */
static int do_read(struct conn *c) {
  if (c->rpos > 0) { /* compact: the answered requests' bytes were wiped */
    memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
    c->rlen -= c->rpos;
    c->rpos = 0;
  }
  bool got = false;
  while (c->can_read && c->rlen < FAST_RBUF) {
    size_t room = FAST_RBUF - c->rlen;
    if (c->ssl) {
      int n = SSL_read(c->ssl, c->rbuf + c->rlen, (int)room);
      if (n > 0) {
        c->rlen += (size_t)n;
        got = true;
        continue;
      }
      int e = SSL_get_error(c->ssl, n);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->can_read = false;
        break;
      }
      ERR_clear_error();
      c->peer_eof = true;
      return got ? 1 : -1;
    }
    ssize_t n = read(c->fd, c->rbuf + c->rlen, room);
    if (n > 0) {
      c->rlen += (size_t)n;
      got = true;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (errno == EAGAIN)
        c->can_read = false;
      continue;
    }
    c->peer_eof = true;
    return got ? 1 : -1;
  }
  return got ? 1 : 0;
}

/* Sends the unsent responses. 0 (all sent or would block), -1 gone. */
static int do_write(struct conn *c) {
  while (c->wpos < c->wbuf.len && c->can_write) {
    size_t left = c->wbuf.len - c->wpos;
    if (c->ssl) {
      int n = SSL_write(c->ssl, c->wbuf.data + c->wpos, left > (1u << 30) ? (1 << 30) : (int)left);
      if (n > 0) {
        c->wpos += (size_t)n;
        continue;
      }
      int e = SSL_get_error(c->ssl, n);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        c->can_write = false;
        c->deadline = now_s() + req_timeout(c->w->srv); /* a stalled reader gets this long */
        return 0;
      }
      ERR_clear_error();
      return -1;
    }
    ssize_t n = send(c->fd, c->wbuf.data + c->wpos, left, MSG_NOSIGNAL);
    if (n > 0) {
      c->wpos += (size_t)n;
    } else if (n < 0 && errno == EAGAIN) {
      c->can_write = false;
      c->deadline = now_s() + req_timeout(c->w->srv); /* a stalled reader gets this long */
      return 0;
    } else if (!(n < 0 && errno == EINTR)) {
      return -1;
    }
  }
  if (c->wpos == c->wbuf.len && c->wpos) {
    tn_buf_reset(&c->wbuf);
    c->wpos = 0;
    if (c->state == C_HEADERS && c->rpos == c->rlen)
      c->deadline = now_s() + idle_timeout(c->w->srv);
  }
  return 0;
}

/* Everything the connection can do now. Returns -1 when it is to be freed. */
static int conn_run(struct conn *c) {
  if (c->state == C_HANDSHAKE) {
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      ERR_clear_error();
      if (e == SSL_ERROR_WANT_READ) {
        c->can_read = false;
        return 0;
      }
      if (e == SSL_ERROR_WANT_WRITE) {
        c->can_write = false;
        return 0;
      }
      return -1; /* a failed handshake: the client was told by an alert */
    }
    c->state = C_HEADERS;
    c->deadline = now_s() + idle_timeout(c->w->srv);
  }
  if (c->state == C_DRAINING) { /* closing: read and drop until EOF or the deadline */
    c->rpos = c->rlen = 0;
    int r;
    while ((r = do_read(c)) > 0)
      c->rpos = c->rlen = 0;
    return r < 0 || c->peer_eof ? -1 : 0;
  }
  c->more = false;
  for (int rounds = 0; rounds < 64; rounds++) {
    if (do_write(c))
      return -1;
    if (c->job)
      return 0; /* waiting for a deferred response (take_done runs it on) */
    if (c->state == C_CLOSING) {
      if (c->wpos < c->wbuf.len)
        return 0;
      if (c->ssl)
        (void)SSL_shutdown(c->ssl); /* close_notify; no wait for the peer's */
      ERR_clear_error();
      (void)shutdown(c->fd, SHUT_WR);
      c->state = C_DRAINING;
      c->deadline = now_s() + FAST_DRAIN_S;
      return conn_run(c);
    }
    if (c->wbuf.len - c->wpos > FAST_WBUF_HIGH)
      return 0; /* wait for EPOLLOUT before answering more */
    bool was_empty = c->rlen == c->rpos;
    int r = do_read(c);
    if (r < 0 && c->rlen == c->rpos && c->wpos == c->wbuf.len)
      return -1; /* the peer left and nothing is owed */
    if (was_empty && r > 0 && c->state == C_HEADERS)
      c->deadline = now_s() + req_timeout(c->w->srv); /* a request began: it must end in time */
    int pr = process(c);
    if (pr < 0)
      return -1;
    if (pr == 1)
      continue; /* send what is queued; on EAGAIN the mark above waits for EPOLLOUT */
    if (c->peer_eof && c->state != C_CLOSING) {
      /* the peer is done sending: answer what was complete, then close */
      c->state = C_CLOSING;
      continue;
    }
    if (r == 0 && c->rlen < FAST_RBUF) {
      if (do_write(c))
        return -1;
      if (c->state == C_CLOSING)
        continue;
      return 0; /* nothing more to read now */
    }
  }
  c->more = true; /* fairness: let the other connections run; the worker comes back to it */
  return 0;
}

/* ---- deferred jobs (tn_http_defer) ---- */

static void job_free(struct fjob *j) {
  if (!j)
    return;
  if (j->strs) {
    tn_wipe(j->strs, j->strs_len); /* a bearer token */
    free(j->strs);
  }
  free(j->query);
  if (j->body) {
    tn_wipe(j->body, j->body_len);
    free(j->body);
  }
  tn_buf_cleanup(&j->resp.body);
  free(j);
}

int tn_fast_defer(const struct tn_http_request *req, struct tn_http_response *resp, tn_http_handler fn,
                  void *arg, void (*free_arg)(void *)) {
  struct conn *c = req->impl;
  struct tn_fast *f = c->w->srv->fst;
  struct fjob *j = calloc(1, sizeof *j);
  size_t n =
      strlen(req->method) + strlen(req->path) + strlen(req->content_type) + strlen(req->authorization) + 4;
  for (size_t i = 0; i < req->n_query; i++)
    n += strlen(req->query[i]) + 1;
  if (j) {
    j->strs = malloc(n);
    j->strs_len = n;
    j->query = calloc(req->n_query + 1, sizeof *j->query);
    j->body = malloc(req->body_len + 1);
  }
  if (!j || !j->strs || !j->query || !j->body) {
    job_free(j);
    if (free_arg)
      free_arg(arg);
    return -ENOMEM;
  }
  char *p = j->strs;
#define TAKE(dst, src)                                                                                       \
  do {                                                                                                       \
    size_t l_ = strlen(src) + 1;                                                                             \
    memcpy(p, (src), l_);                                                                                    \
    (dst) = p;                                                                                               \
    p += l_;                                                                                                 \
  } while (0)
  TAKE(j->method, req->method);
  TAKE(j->path, req->path);
  TAKE(j->ctype, req->content_type);
  TAKE(j->auth, req->authorization);
  for (size_t i = 0; i < req->n_query; i++)
    TAKE(j->query[i], req->query[i]);
#undef TAKE
  j->nq = req->n_query;
  memcpy(j->body, req->body, req->body_len);
  j->body[req->body_len] = '\0';
  j->body_len = req->body_len;
  j->head = req->head;
  j->fn = fn;
  j->arg = arg;
  j->free_arg = free_arg;
  j->w = c->w;
  j->c = c;
  j->resp.status = 200;
  snprintf(j->resp.content_type, sizeof j->resp.content_type, "text/plain; charset=utf-8");
  tn_buf_init(&j->resp.body, TN_HTTP_MAX_RESPONSE);
  bool queued = false;
  pthread_mutex_lock(&f->jmu);
  if (!f->jstop && f->n_jt > 0 && f->jn < TN_HTTP_JOB_QUEUE) {
    if (f->jtail)
      f->jtail->next = j;
    else
      f->jhead = j;
    f->jtail = j;
    f->jn++;
    queued = true;
    c->job = j; /* before the job can finish: the worker reads it only on its own thread */
    pthread_cond_signal(&f->jcv);
  }
  pthread_mutex_unlock(&f->jmu);
  if (queued)
    return 0;
  j->free_arg = NULL;
  job_free(j);
  if (free_arg)
    free_arg(arg);
  (void)tn_http_response_header(resp, "Retry-After", "1");
  return tn_http_problem(resp, req->path, 503, "busy", "the server is busy with other requests; retry");
}

static void *job_main(void *arg) {
  struct tn_fast *f = arg;
  char name[16];
  snprintf(name, sizeof name, "tn-http-job");
  pthread_setname_np(pthread_self(), name);
  for (;;) {
    pthread_mutex_lock(&f->jmu);
    while (!f->jstop && !f->jhead)
      pthread_cond_wait(&f->jcv, &f->jmu);
    if (f->jstop) {
      pthread_mutex_unlock(&f->jmu);
      return NULL;
    }
    struct fjob *j = f->jhead;
    f->jhead = j->next;
    if (!f->jhead)
      f->jtail = NULL;
    f->jn--;
    j->next = NULL;
    pthread_mutex_unlock(&f->jmu);
    struct tn_http_request req = {.method = j->method,
                                  .path = j->path,
                                  .content_type = j->ctype,
                                  .body = j->body,
                                  .body_len = j->body_len,
                                  .authorization = j->auth,
                                  .query = j->query,
                                  .n_query = j->nq,
                                  .worker = TN_HTTP_DEFERRED_WORKER,
                                  .head = j->head};
    j->rc = j->fn(&req, &j->resp, j->arg);
    if (j->free_arg)
      j->free_arg(j->arg);
    j->free_arg = NULL;
    struct fworker *w = j->w;
    pthread_mutex_lock(&w->done_mu);
    j->next = w->done;
    w->done = j;
    pthread_mutex_unlock(&w->done_mu);
    uint64_t one = 1;
    (void)!write(w->evfd, &one, sizeof one);
  }
}

/* Answers the finished jobs of this worker's connections, oldest first. */
static void take_done(struct fworker *w) {
  pthread_mutex_lock(&w->done_mu);
  struct fjob *list = w->done, *rev = NULL;
  w->done = NULL;
  pthread_mutex_unlock(&w->done_mu);
  while (list) { /* newest first -> oldest first */
    struct fjob *n = list->next;
    list->next = rev;
    rev = list;
    list = n;
  }
  while (rev) {
    struct fjob *j = rev;
    rev = j->next;
    struct conn *c = j->c;
    if (c) {
      c->job = NULL;
      struct tn_http_response *r = &j->resp;
      if (j->rc < 0 || r->status < 100 || r->status > 599) {
        tn_log(TN_LOG_ERROR, NULL, "http job for %s %s failed (%s, status %d)", j->method, j->path,
               j->rc < 0 ? tn_strerror(j->rc) : "ok", r->status);
        tn_buf_reset(&r->body);
        (void)tn_buf_appends(&r->body, "internal error\n");
        r->status = 500;
        r->n_headers = 0;
        snprintf(r->content_type, sizeof r->content_type, "text/plain; charset=utf-8");
      }
      r->content_type[sizeof r->content_type - 1] = '\0';
      int rc = put_response(c, r->status, r->content_type[0] ? r->content_type : "text/plain", r->body.data,
                            r->body.len, r->headers, r->n_headers, NULL, j->head);
      c->can_read = c->can_write = true; /* edge-triggered: look again */
      if (rc || conn_run(c))
        conn_free(c);
    }
    job_free(j);
  }
}

/* ---- workers ---- */

static void take_queued(struct fworker *w) {
  int fds[256], n;
  pthread_mutex_lock(&w->q_mu);
  n = w->q_n;
  memcpy(fds, w->q, (size_t)n * sizeof fds[0]);
  w->q_n = 0;
  pthread_mutex_unlock(&w->q_mu);
  for (int i = 0; i < n; i++) {
    conn_adopt(w, fds[i]);
  }
}

static void accept_some(struct fworker *w) {
  struct tn_httpserver *srv = w->srv;
  struct tn_fast *f = srv->fst;
  for (int i = 0; i < 32; i++) {
    int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
      return; /* EAGAIN, or out of descriptors: try again on the next wake-up */
    struct fworker *t = &f->w[atomic_fetch_add(&f->rr, 1) % (unsigned)f->n];
    if (t == w) {
      conn_adopt(w, fd);
      continue;
    }
    bool queued = false;
    pthread_mutex_lock(&t->q_mu);
    if (t->q_n < (int)(sizeof t->q / sizeof t->q[0])) {
      t->q[t->q_n++] = fd;
      queued = true;
    }
    pthread_mutex_unlock(&t->q_mu);
    if (queued) {
      uint64_t one = 1;
      (void)!write(t->evfd, &one, sizeof one);
    } else {
      conn_adopt(w, fd);
    }
  }
}

static void sweep(struct fworker *w, double now) {
  for (struct conn *c = w->conns, *next; c; c = next) {
    next = c->next;
    if (now >= c->deadline && !c->job) /* a job is bounded by its own timeouts */
      conn_free(c);
  }
}

/* Reruns connections that stopped for fairness (still readable with data pending). */
static bool busy(const struct conn *c) {
  return !c->job && (c->state == C_HEADERS || c->state == C_BODY) && c->can_read &&
         c->wbuf.len - c->wpos <= FAST_WBUF_HIGH && c->rlen < FAST_RBUF;
}

static void *fworker_main(void *arg) {
  struct fworker *w = arg;
  struct tn_fast *f = w->srv->fst;
  char name[16];
  snprintf(name, sizeof name, "tn-http:%d/%d", w->srv->port, w->index);
  pthread_setname_np(pthread_self(), name);
  struct epoll_event evs[128];
  double last_sweep = now_s();
  bool pending = false; /* connections with work left: do not sleep */
  while (!atomic_load_explicit(&f->stopping, memory_order_acquire)) {
    int n = epoll_wait(w->ep, evs, 128, pending ? 0 : 1000);
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == &w->srv->listen_fd) {
        accept_some(w);
        continue;
      }
      if (p == &w->evfd) {
        uint64_t v;
        (void)!read(w->evfd, &v, sizeof v);
        take_queued(w);
        take_done(w);
        continue;
      }
      struct conn *c = p;
      if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->can_read = true;
      if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->can_write = true;
      if (conn_run(c))
        conn_free(c);
    }
    for (int pass = 0; pass < 4; pass++) { /* connections cut short for fairness */
      bool any = false;
      for (struct conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state != C_HANDSHAKE && busy(c)) {
          any = true;
          if (conn_run(c))
            conn_free(c);
        }
      }
      if (!any)
        break;
    }
    pending = false;
    for (struct conn *c = w->conns; c && !pending; c = c->next)
      pending = c->state != C_HANDSHAKE && busy(c);
    double now = now_s();
    if (now - last_sweep >= 1.0) {
      sweep(w, now);
      last_sweep = now;
    }
  }
  while (w->conns)
    conn_free(w->conns);
  return NULL;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  static const unsigned char h11[] = "\x08http/1.1";
  if (SSL_select_next_proto((unsigned char **)out, outlen, h11, sizeof h11 - 1, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_OK;
  return SSL_TLSEXT_ERR_NOACK; /* no HTTP/2: the client speaks HTTP/1.1 or goes */
}

static int tls_context(struct tn_httpserver *srv, SSL_CTX **out, struct tn_error *err) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  char why[256] = "out of memory";
  if (!ctx)
    goto fail;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, srv->cert_file) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, srv->key_file, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    unsigned long e = ERR_peek_last_error();
    ERR_error_string_n(e, why, sizeof why);
    goto fail;
  }
  SSL_CTX_set_cert_cb(ctx, tn_http__cert_cb, srv);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  ERR_clear_error();
  *out = ctx;
  return 0;
fail:
  ERR_clear_error();
  SSL_CTX_free(ctx);
  return tn_error_set(err, TN_ETRANSPORT, "http server %s: cannot listen with TLS: cannot load %s / %s: %s",
                      srv->address, srv->cert_file, srv->key_file, why);
}

void tn_fast_stop(struct tn_httpserver *srv) {
  struct tn_fast *f = srv->fst;
  if (!f)
    return;
  atomic_store_explicit(&f->stopping, true, memory_order_release);
  for (int i = 0; i < f->n; i++) {
    uint64_t one = 1;
    if (f->w[i].evfd >= 0)
      (void)!write(f->w[i].evfd, &one, sizeof one);
  }
  for (int i = 0; i < f->n; i++) {
    struct fworker *w = &f->w[i];
    if (w->created)
      pthread_join(w->thread, NULL);
  }
  /* the job threads after the workers (their connections are gone: job->c is NULL), before the
   * eventfds close: a running job finishes (bounded by its own timeouts) and is freed here */
  pthread_mutex_lock(&f->jmu);
  f->jstop = true;
  pthread_cond_broadcast(&f->jcv);
  pthread_mutex_unlock(&f->jmu);
  for (int i = 0; i < f->n_jt; i++)
    pthread_join(f->jt[i], NULL);
  for (struct fjob *j = f->jhead, *n; j; j = n) {
    n = j->next;
    if (j->free_arg)
      j->free_arg(j->arg);
    job_free(j);
  }
  pthread_mutex_destroy(&f->jmu);
  pthread_cond_destroy(&f->jcv);
  for (int i = 0; i < f->n; i++) {
    struct fworker *w = &f->w[i];
    for (struct fjob *j = w->done, *n; j; j = n) {
      n = j->next;
      job_free(j);
    }
    pthread_mutex_destroy(&w->done_mu);
    for (int k = 0; k < w->q_n; k++)
      close(w->q[k]);
    if (w->ep >= 0)
      close(w->ep);
    if (w->evfd >= 0)
      close(w->evfd);
    tn_buf_cleanup(&w->resp);
    pthread_mutex_destroy(&w->q_mu);
  }
  SSL_CTX_free(f->ctx);
  if (srv->listen_fd >= 0) {
    close(srv->listen_fd);
    srv->listen_fd = -1;
  }
  free(f);
  srv->fst = NULL;
}

int tn_fast_start(struct tn_httpserver *srv, struct tn_error *err) {
  SSL_CTX *ctx = NULL;
  if (srv->cert_file && tls_context(srv, &ctx, err))
    return err ? err->code : TN_ETRANSPORT;
  int rc = tn_http__bind_listener(srv, err);
  if (rc) {
    SSL_CTX_free(ctx);
    return rc; /* 1: an interface name */
  }
  int fl = fcntl(srv->listen_fd, F_GETFL);
  (void)fcntl(srv->listen_fd, F_SETFL, fl | O_NONBLOCK);
  struct tn_fast *f = calloc(1, sizeof *f);
  if (!f) {
    SSL_CTX_free(ctx);
    close(srv->listen_fd);
    srv->listen_fd = -1;
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  srv->fst = f;
  f->ctx = ctx;
  pthread_mutex_init(&f->jmu, NULL);
  pthread_cond_init(&f->jcv, NULL);
  for (int i = 0; i < TN_HTTP_MAX_WORKERS; i++) {
    f->w[i].ep = f->w[i].evfd = -1;
    pthread_mutex_init(&f->w[i].done_mu, NULL);
  }
  f->n = srv->n_workers;
  f->max_conns = srv->max_connections > 0 ? (srv->max_connections + f->n - 1) / f->n : FAST_DEFAULT_CONNS;
  for (int i = 0; i < f->n; i++) {
    struct fworker *w = &f->w[i];
    w->srv = srv;
    w->index = i;
    pthread_mutex_init(&w->q_mu, NULL);
    tn_buf_init(&w->resp, TN_HTTP_MAX_RESPONSE);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event le = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &srv->listen_fd};
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &w->evfd};
    if (w->ep < 0 || w->evfd < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, srv->listen_fd, &le) != 0 ||
        epoll_ctl(w->ep, EPOLL_CTL_ADD, w->evfd, &ee) != 0) {
      int e = errno;
      f->n = i + 1;
      tn_fast_stop(srv);
      return tn_error_set(err, TN_ETRANSPORT, "http server %s: cannot set up its event loop: %s",
                          srv->address, strerror(e));
    }
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* signals reach the program's own handling */
  for (int i = 0; i < f->n; i++) {
    int e = pthread_create(&f->w[i].thread, NULL, fworker_main, &f->w[i]);
    if (e) {
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      tn_fast_stop(srv);
      return tn_error_set(err, -e, "http server %s: cannot start its thread: %s", srv->address, strerror(e));
    }
    f->w[i].created = true;
  }
  int want_jt = srv->job_threads > 0 ? srv->job_threads : 4;
  for (int i = 0; i < want_jt; i++) {
    int e = pthread_create(&f->jt[i], NULL, job_main, f);
    if (e) {
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      tn_fast_stop(srv);
      return tn_error_set(err, -e, "http server %s: cannot start its job threads: %s", srv->address,
                          strerror(e));
    }
    f->n_jt = i + 1;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return 0;
}
