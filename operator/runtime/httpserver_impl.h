/* httpserver_impl.h - the server object shared by the two backends of httpserver.c:
 * libwebsockets (httpserver.c) and the lean epoll backend (httpfast.c). Private to them. */
#ifndef TN_RUNTIME_HTTPSERVER_IMPL_H
#define TN_RUNTIME_HTTPSERVER_IMPL_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "runtime/httpserver.h"

struct lws_context;
struct lws_vhost;
struct tn_fast; /* httpfast.c's state */

enum srv_state { SRV_NEW, SRV_STARTING, SRV_RUNNING, SRV_FAILED, SRV_STOPPED };

struct route {
  struct route *next;
  char *method;
  char *path;
  bool prefix; /* path is a prefix */
  tn_http_handler handler;
  void *ud;
  void (*free_ud)(void *); /* for ud the server owns (ready-made routes) */
};

/* One service thread and its libwebsockets context (the context's user pointer). */
struct worker {
  struct tn_httpserver *srv;
  int index;
  pthread_t thread;
  bool thread_created;
  enum srv_state state; /* srv->mu */
  struct lws_context *ctx;
  struct lws_vhost *vh; /* its thread only */
  int port;
  struct tn_error err;
  pthread_mutex_t q_mu; /* connections accepted for this worker, not adopted yet */
  int q[64];
  int q_n;
};

struct tn_httpserver {
  char address[300]; /* as given, for messages */
  char host[256];    /* "" for every interface */
  int want_port;
  char *cert_file, *key_file; /* NULL without TLS */
  /* The serving identity set by tn_httpserver_set_certificate, handed to every new handshake by
   * cert_cb (OpenSSL may call it from the service thread only, but the setter runs anywhere):
   * id_mu protects the three; it nests inside nothing. NULL cert: the files' identity. */
  pthread_mutex_t id_mu;
  X509 *id_cert;
  EVP_PKEY *id_key;
  STACK_OF(X509) * id_chain;
  size_t max_body;
  /* tn_httpserver_set_limits; `reserved` (body bytes admitted and not yet released) is under
   * body_mu (the workers share the budget; only strict servers take it). */
  pthread_mutex_t body_mu;
  bool strict;
  size_t small_body, body_budget, reserved;
  char *body_type; /* required media type of request bodies, NULL: any */
  bool json_object_body;
  int timeout_s;
  int max_connections;
  struct route *routes;
  bool started; /* tn_httpserver_start was called; the routes are fixed */
  int n_workers;
  struct worker workers[TN_HTTP_MAX_WORKERS];
  int listen_fd; /* several workers: the listener the acceptor serves; else -1 */
  pthread_t acceptor;
  bool acceptor_created;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* signalled when a worker's state leaves SRV_STARTING */
  enum srv_state state;
  atomic_bool stopping; /* written under mu; the service loops read it without */
  int port;
  int job_threads;     /* tn_httpserver_set_job_threads (0: default) */
  bool fast;           /* served by httpfast.c (tn_httpserver_set_backend) */
  struct tn_fast *fst; /* its state while started */
};

/* ---- shared by both backends (httpserver.c) ---- */

/* The route for method + path: an exact route, else the longest prefix route. NULL when none
 * takes the method; then *path_known says whether the path has routes (405, with their
 * methods in allow) or not (404). */
const struct route *tn_http__route_find(const struct tn_httpserver *srv, const char *method, const char *path,
                                        bool *path_known, char *allow, size_t allow_size);
/* The body the server sends with a status it answers itself. */
const char *tn_http__status_text(int status);
/* The OpenSSL certificate callback serving tn_httpserver_set_certificate's identity. */
int tn_http__cert_cb(SSL *ssl, void *arg);
/* Media type check for Content-Type (parameters ignored, case-insensitive). */
bool tn_http__media_type_is(const char *header, const char *want);

/* Binds the listener for several workers or the epoll backend (srv->listen_fd, srv->port).
 * 0, 1 when the host is not an IP literal (an interface name), or an error in err. */
int tn_http__bind_listener(struct tn_httpserver *srv, struct tn_error *err);

/* ---- httpfast.c ---- */
int tn_fast_start(struct tn_httpserver *srv, struct tn_error *err);
void tn_fast_stop(struct tn_httpserver *srv);
/* tn_http_defer for a request of the epoll backend (req->impl set). */
int tn_fast_defer(const struct tn_http_request *req, struct tn_http_response *resp, tn_http_handler fn,
                  void *arg, void (*free_arg)(void *));

#endif
