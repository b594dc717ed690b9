/* httpserver.h - a small HTTP(S) server on libwebsockets with its own service thread: fixed
 * routes (method + exact path) to handlers that take a request and fill a response; ready-made
 * routes for /healthz, /readyz and /metrics. See docs/internals/http-and-metrics.md. */
#ifndef TN_RUNTIME_HTTPSERVER_H
#define TN_RUNTIME_HTTPSERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/metrics.h"
#include "util/buf.h"
#include "util/error.h"

struct tn_httpserver; /* one listener: one libwebsockets context, one service thread */

/* TLS for a server: PEM files, read when the server starts. HTTP/1.1 only (see the .c). */
struct tn_http_tls {
  const char *cert_file; /* certificate chain */
  const char *key_file;  /* its private key */
};

#define TN_HTTP_DEFAULT_MAX_BODY (1u << 20)      /* request bodies above this get 413 */
#define TN_HTTP_MAX_RESPONSE ((size_t)64u << 20) /* a handler's response body cap */

/* What a handler sees; every pointer is borrowed for the duration of the call. */
struct tn_http_request {
  const char *method;       /* "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD" */
  const char *path;         /* URL-decoded path without the query, e.g. "/validate" */
  const char *content_type; /* request Content-Type, "" when none */
  const char *body;         /* body_len bytes, NUL-terminated after them ("" for no body) */
  size_t body_len;
  const char *authorization; /* the Authorization header, "" when none (never log it) */
  const char *const *query;  /* the query's URL-decoded "name=value" pieces, in order */
  size_t n_query;
  int worker; /* which service thread runs the handler: 0 .. workers-1 (tn_httpserver_set_workers);
                TN_HTTP_DEFERRED_WORKER in a deferred job (tn_http_defer) */
  bool head;  /* a HEAD request (the server drops the body it answers) */
  void *impl; /* the server's: what tn_http_defer needs (NULL outside the epoll backend) */
};

/* The value of query parameter `name` (the first), NULL when absent ("" for "name" or "name="). */
const char *tn_http_query(const struct tn_http_request *req, const char *name);

#define TN_HTTP_MAX_HEADERS 8
struct tn_http_header {
  char name[48];
  char value[208];
};

/* What a handler fills. The server sets status 200, content_type "text/plain; charset=utf-8"
 * and an empty body (capped at TN_HTTP_MAX_RESPONSE) before the call. */
struct tn_http_response {
  int status;
  char content_type[128];
  struct tn_buf body; /* owned by the server; append to it */
  /* Extra response headers (tn_http_response_header adds them). */
  struct tn_http_header headers[TN_HTTP_MAX_HEADERS];
  int n_headers;
};

/* Adds a response header (name without the colon; a token; the value one line of printable
 * ASCII). Returns 0, -EINVAL, or -ENOSPC (too many or too long). */
int tn_http_response_header(struct tn_http_response *resp, const char *name, const char *value);

/* Runs on the server's service thread and holds up every other request of that server while
 * it runs: it must be quick (no API calls, no database, no sleeping) and thread-safe with
 * respect to whatever it reads. Returns 0, or a negative code to answer 500 (the body, if any,
 * is sent as the explanation). A status outside 100..599 also answers 500. */
typedef int (*tn_http_handler)(const struct tn_http_request *req, struct tn_http_response *resp, void *ud);

/* Answers an RFC 9457 problem: status, Content-Type application/problem+json, and the body
 * {"type":"https://tenancy.dev/problems/<slug>","title":<the status's reason>,"status":...,
 * "detail":<fmt...>,"instance":<instance>} (the body so far is replaced; the detail is cut at
 * 512 bytes). Shared by the read API and the console. Returns 0 or -ENOMEM. */
int tn_http_problem(struct tn_http_response *resp, const char *instance, int status, const char *slug,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The reason phrase of an HTTP status ("Not Found"), "Error" for one it does not know. */
const char *tn_http_reason(int status);

/* ---- work that blocks: deferred to the server's job threads ------------------------------------
 *
 * A handler that must call out (the API server, PostgreSQL) must not do it on the service thread.
 * It does the quick part (routing, checks) and then returns tn_http_defer(req, resp, fn, arg,
 * free_arg): the server copies the request (method, path, query, body, Authorization) and runs
 * fn(copy, resp2, arg) on one of its job threads (a bounded pool: tn_httpserver_set_job_threads,
 * default 4, with a bounded queue); the connection waits (later pipelined requests are answered
 * after it, in order) while its service thread serves the other connections; when fn returns its
 * response is sent as if the handler had made it. fn may block (bounded by its own timeouts).
 * req->worker is TN_HTTP_DEFERRED_WORKER in fn. free_arg(arg) (may be NULL) runs after fn, or
 * when the job is dropped (queue full: 503 with Retry-After; the server stopping).
 * With the libwebsockets backend (or a request without req->impl) fn runs at once on the calling
 * thread: the old blocking behaviour. Returns what the handler must return (0, or < 0). */
#define TN_HTTP_DEFERRED_WORKER (-1)
#define TN_HTTP_MAX_JOB_THREADS 32
#define TN_HTTP_JOB_QUEUE 256 /* jobs waiting for a thread, per server; past it: 503 */
int tn_http_defer(const struct tn_http_request *req, struct tn_http_response *resp, tn_http_handler fn,
                  void *arg, void (*free_arg)(void *));
/* Job threads (1 .. TN_HTTP_MAX_JOB_THREADS; default 4), started with the server only when it is
 * served by the epoll backend. Only before tn_httpserver_start. Returns 0, -EBUSY or -EINVAL. */
int tn_httpserver_set_job_threads(struct tn_httpserver *srv, int n);

/* Parses a controller-runtime style bind address: "host:port", ":port" (every interface) or
 * "[v6]:port". host receives the host ("" for every interface); *port 0..65535 (0: pick a
 * free port). Returns 0, 1 when the address is "0" (the listener is disabled), or TN_ECONFIG
 * with a message in err. */
int tn_http_parse_address(const char *address, char *host, size_t host_size, int *port, struct tn_error *err);

/* Creates a server for bind_address (see tn_http_parse_address; a host is an IP literal, an
 * interface name, "localhost", or "" for every interface) with TLS when tls is not NULL (its
 * strings are copied). Nothing is bound until tn_httpserver_start. When the address is "0" the
 * listener is disabled: *out is set to NULL and 0 returned; every function below accepts that
 * NULL server and does nothing (returning 0). Returns 0, or TN_ECONFIG/-ENOMEM with a message
 * in err. Free with tn_httpserver_free. */
int tn_httpserver_new(const char *bind_address, const struct tn_http_tls *tls, struct tn_httpserver **out,
                      struct tn_error *err);

/* Caps request bodies (default TN_HTTP_DEFAULT_MAX_BODY); larger ones are answered 413
 * without calling the handler. Only before tn_httpserver_start. */
void tn_httpserver_set_max_body(struct tn_httpserver *srv, size_t max_body);

/* Service threads (default 1, at most TN_HTTP_MAX_WORKERS): n libwebsockets contexts listening on
 * the same port with SO_REUSEPORT, the kernel spreading new connections over them. With n > 1
 * handlers run concurrently (req->worker tells which thread). Only before tn_httpserver_start.
 * Returns 0, -EBUSY or -EINVAL. */
#define TN_HTTP_MAX_WORKERS 8
int tn_httpserver_set_workers(struct tn_httpserver *srv, int n);

/* Which implementation serves the listener. TN_HTTP_BACKEND_LWS (the default): libwebsockets,
 * as described above. TN_HTTP_BACKEND_EPOLL: the lean HTTP/1.1 server of httpfast.c (epoll,
 * non-blocking sockets, OpenSSL directly; keep-alive and pipelining, the responses to the
 * requests of one read go out in one write; the same routes, handlers, limits, timeouts and
 * certificate reload). The environment variable TENANCY_HTTP_BACKEND=lws|epoll overrides the
 * choice for every server (a way back, and how the tests run one suite on both). Only before
 * tn_httpserver_start. Returns 0, -EBUSY or -EINVAL. */
enum tn_http_backend { TN_HTTP_BACKEND_LWS, TN_HTTP_BACKEND_EPOLL };
int tn_httpserver_set_backend(struct tn_httpserver *srv, enum tn_http_backend b);

/* Limits for a server that untrusted peers can reach (the admission webhook). With them, a
 * request is judged from its headers before a byte of its body is read, and refused with the
 * connection closed: a body over max_body gets 413; a body whose Content-Type is not body_type
 * 415; a body larger than small_body when the bodies admitted and not yet answered would pass
 * body_budget 503 (so a flood of large junk cannot crowd out small real requests, and memory
 * stays bounded); with json_object_body, a body whose first non-blank byte is not '{' is read
 * on unbuffered and unparsed and answered 400. timeout_s bounds how long a connection may idle
 * or stall mid-request (0: 30 s, keep-alive 60 s). */
struct tn_http_limits {
  size_t max_body;       /* 0: keep the current cap */
  size_t small_body;     /* bodies up to this are always admitted */
  size_t body_budget;    /* 0: no budget */
  const char *body_type; /* e.g. "application/json"; NULL: any (copied) */
  bool json_object_body;
  int timeout_s;
  int max_connections; /* TN_HTTP_BACKEND_EPOLL: open connections at most (0: 1024 per worker);
                          past it new ones are closed at once */
};
/* Only before tn_httpserver_start. Returns 0, -EBUSY or -ENOMEM. */
int tn_httpserver_set_limits(struct tn_httpserver *srv, const struct tn_http_limits *limits);

/* Adds a route: method ("GET", "POST", ...) and exact path (no query). ud is borrowed and must
 * outlive the server. Routes are fixed once the server starts. A path with routes, but none
 * for the method, answers 405 with Allow; any other path 404. Returns 0, -EEXIST (same method
 * and path), -EBUSY (already started), -EINVAL or -ENOMEM. */
int tn_httpserver_route(struct tn_httpserver *srv, const char *method, const char *path,
                        tn_http_handler handler, void *ud);

/* Like tn_httpserver_route, for every path that starts with prefix (e.g. "/api/v1/tenants/").
 * An exact route wins; among prefix routes the longest prefix. */
int tn_httpserver_route_prefix(struct tn_httpserver *srv, const char *method, const char *prefix,
                               tn_http_handler handler, void *ud);
/* The same, with ud owned by the route: free_ud(ud) when the server is freed (also when adding
 * fails). */
int tn_httpserver_route_owned(struct tn_httpserver *srv, const char *method, const char *path,
                              tn_http_handler handler, void *ud, void (*free_ud)(void *));

/* Binds the listener and starts the service thread ("tn-http:PORT"). Returns 0 once the
 * server accepts connections, or a code (TN_ETRANSPORT when it cannot bind or load the TLS
 * files, -EBUSY when already started) with a message in err. Call once. */
int tn_httpserver_start(struct tn_httpserver *srv, struct tn_error *err);

/* Replaces the TLS identity for every later handshake (connections already open keep theirs):
 * cert_pem is the serving certificate followed by any intermediates, key_pem its private key.
 * Any thread, before or after start; only for a server created with TLS. Returns 0, or
 * TN_ECONFIG (not PEM, or the key does not match) with the old identity still served. */
int tn_httpserver_set_certificate(struct tn_httpserver *srv, const char *cert_pem, const char *key_pem,
                                  struct tn_error *err);

/* The bound port (useful after binding port 0); 0 before start or for a NULL server. */
int tn_httpserver_port(const struct tn_httpserver *srv);

/* Stops the service thread (closing open connections), and frees the server and its routes.
 * Call from any thread but a handler. Accepts NULL. */
void tn_httpserver_free(struct tn_httpserver *srv);

/* Readiness: returns true when ready; otherwise writes why into reason (NUL-terminated, at
 * most reason_size bytes). Runs on the service thread: read atomics or take a short lock. */
typedef bool (*tn_http_ready_fn)(void *ud, char *reason, size_t reason_size);

/* GET /healthz: 200 "ok" while the service thread answers.
 * GET /readyz: 200 "ok" when ready(ud) says so (always, when ready is NULL), else 503 with the
 * reason as the body. ud is borrowed and must outlive the server. */
int tn_httpserver_serve_probes(struct tn_httpserver *srv, tn_http_ready_fn ready, void *ud);

/* GET /metrics: the registry m (borrowed; it must outlive the server) in the text format,
 * Content-Type "text/plain; version=0.0.4; charset=utf-8". */
int tn_httpserver_serve_metrics(struct tn_httpserver *srv, struct tn_metrics *m);

#endif
