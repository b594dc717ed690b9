/* client.c - the Kubernetes API client: one transport thread drives a curl multi handle so that
 * every request and watch shares one HTTP/2 connection; callers block on a per-request
 * condition variable; rate limiting, retries, metrics, and the typed verbs on top.
 *
 * Threads and locks (see docs/internals/client.md):
 * - the transport thread ("kube-transport") owns the multi handle and, while a request is
 *   handed to it, that request's easy handle; write callbacks (and so on_data) run on it;
 * - k->mu protects k->pending, k->stopping, k->callers, the limiter's bucket, and every
 *   request's `done` flag; each request has its own condition variable signalled under k->mu
 *   when it is done; k->wake is broadcast when the client stops (sleepers wake up);
 * - k->token_mu protects the cached bearer token read from token_file. It is never held
 *   together with k->mu. */
#include "kube/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>

#include "runtime/log.h"
#include "runtime/metrics.h"
#include "util/clock.h"
#include "util/fence.h"
#include "util/wipe.h"

#define DEFAULT_MAX_RESPONSE ((size_t)64 << 20)
#define DEFAULT_TIMEOUT_MS 60000L
#define CONNECT_TIMEOUT_MS 10000L
#define LOOP_TICK_MS 100           /* the transport loop checks cancel flags at least this often */
#define MAX_RETRY_AFTER_S 60.0     /* a server asking for longer waits this long */
#define TOKEN_FILE_MAX (64u << 10) /* a bearer token file larger than this is refused */

/* One request handed to the transport thread (lives on the caller's stack). */
struct kreq {
  struct tn_kube *k;
  CURL *easy;
  const struct tn_kube_request *req;
  struct tn_kube_response *resp;
  char errbuf[CURL_ERROR_SIZE];
  /* written by the transport thread during the transfer, read by the caller once done */
  long status;
  int abort_code; /* why a callback stopped the transfer: TN_ETOOBIG, on_data's code, TN_ECANCELED */
  CURLcode result;
  /* under k->mu */
  bool done;
  pthread_cond_t cond;
  struct kreq *next; /* in k->pending, then in the transport thread's own active list */
};

struct tn_kube {
  struct tn_kube_config cfg;     /* a private copy; immutable after tn_kube_new */
  char *base_url;                /* scheme://host:port/prefix used in URLs (host = tls_server_name if set) */
  struct curl_slist *connect_to; /* maps tls_server_name to the real host, or NULL */
  size_t max_response;
  long burst;

  CURLM *multi; /* owned by the transport thread; only curl_multi_wakeup is called elsewhere */
  pthread_t thread;
  bool thread_started;

  pthread_mutex_t mu;
  pthread_cond_t wake; /* broadcast when stopping */
  pthread_cond_t idle; /* signalled when callers drops to 0 */
  struct kreq *pending, *pending_tail;
  bool stopping;
  int callers;              /* threads inside tn_kube_do */
  double tokens, tokens_at; /* the limiter's bucket (may go negative: reservations) */

  pthread_mutex_t token_mu;
  char *token;        /* current bearer token (from token_file or cfg.token) */
  struct stat tok_st; /* of token_file when last read */
  bool tok_read;

  _Atomic long connects;
  struct tn_metric *m_requests, *m_duration;
  const struct tn_fence *_Atomic fence; /* borrowed; NULL: writes are never fenced */
};

/* ---- small helpers -------------------------------------------------------------------------- */

static bool canceled(const struct tn_kube_request *req) {
  return req->cancel && atomic_load(req->cancel) != 0;
}

static int dup_str(char **dst, const char *src) {
  *dst = NULL;
  if (!src)
    return 0;
  *dst = strdup(src);
  return *dst ? 0 : -ENOMEM;
}

static bool method_is(const struct tn_kube_request *req, const char *m) {
  return strcmp(req->method, m) == 0;
}

static bool is_apply(const struct tn_kube_request *req) {
  return method_is(req, "PATCH") && req->content_type &&
         strncmp(req->content_type, "application/apply-patch+yaml", 28) == 0;
}

/* ---- paths and queries ------------------------------------------------------------------------ */

static int append_segment(struct tn_buf *b, const char *seg) {
  if (!seg || !*seg || strcmp(seg, ".") == 0 || strcmp(seg, "..") == 0)
    return -EINVAL;
  char *e = curl_easy_escape(NULL, seg, 0);
  if (!e)
    return -ENOMEM;
  int rc = tn_buf_printf(b, "/%s", e);
  curl_free(e);
  return rc;
}

char *tn_kube_path(const struct tn_gvr *gvr, const char *ns, const char *name, const char *subresource) {
  struct tn_buf b;
  tn_buf_init(&b, 4096);
  int rc = 0;
  if (!gvr || !gvr->version || !gvr->resource)
    goto fail;
  if (gvr->group && *gvr->group) {
    rc = tn_buf_appends(&b, "/apis");
    if (!rc)
      rc = append_segment(&b, gvr->group);
  } else {
    rc = tn_buf_appends(&b, "/api");
  }
  if (!rc)
    rc = append_segment(&b, gvr->version);
  if (!rc && gvr->namespaced && ns) {
    rc = tn_buf_appends(&b, "/namespaces");
    if (!rc)
      rc = append_segment(&b, ns);
  }
  if (!rc)
    rc = append_segment(&b, gvr->resource);
  if (!rc && name)
    rc = append_segment(&b, name);
  if (!rc && subresource) {
    if (!name)
      goto fail;
    rc = append_segment(&b, subresource);
  }
  if (rc)
    goto fail;
  return tn_buf_take(&b);
fail:
  tn_buf_cleanup(&b);
  return NULL;
}

int tn_kube_query_add(struct tn_buf *q, const char *key, const char *value) {
  if (!key || !*key || !value)
    return -EINVAL;
  char *ek = curl_easy_escape(NULL, key, 0), *ev = curl_easy_escape(NULL, value, 0);
  int rc = -ENOMEM;
  if (ek && ev)
    rc = tn_buf_printf(q, "%s%s=%s", q->len ? "&" : "", ek, ev);
  curl_free(ek);
  curl_free(ev);
  return rc;
}

/* ---- retry policy ------------------------------------------------------------------------------ */

bool tn_kube_should_retry(const struct tn_kube_request *req, int attempt, long status, bool sent,
                          double retry_after_s, double *delay_s) {
  *delay_s = 0;
  if (req->no_retry || attempt >= TN_KUBE_MAX_ATTEMPTS)
    return false;
  bool idempotent = method_is(req, "GET") || method_is(req, "HEAD") || method_is(req, "PUT") ||
                    method_is(req, "DELETE") || is_apply(req);
  bool retry;
  if (status == 429)
    retry = true;
  else if (status >= 500 && status <= 599)
    retry = idempotent;
  else if (status == 0)
    retry = idempotent || !sent;
  else
    retry = false;
  if (!retry)
    return false;
  if (retry_after_s > 0)
    *delay_s = retry_after_s < MAX_RETRY_AFTER_S ? retry_after_s : MAX_RETRY_AFTER_S;
  else
    *delay_s = fmin(0.25 * ldexp(1.0, attempt - 1), 4.0);
  return true;
}

/* curl results that mean the connection failed (worth another attempt); the rest (TLS
 * verification, bad options, callbacks aborting) are final. */
static bool curl_retryable(CURLcode c) {
  switch (c) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_PARTIAL_FILE:
  case CURLE_OPERATION_TIMEDOUT: /* the connect timeout; the request deadline is checked first */
    return true;
  default:
    return false;
  }
}

/* Whether the failure happened before any byte of the request could have been written. */
static bool curl_before_send(CURLcode c) {
  return c == CURLE_COULDNT_RESOLVE_HOST || c == CURLE_COULDNT_CONNECT || c == CURLE_SSL_CONNECT_ERROR;
}

/* ---- the transport thread ----------------------------------------------------------------------- */

/* Marks r done and wakes its caller. The transport thread must not touch r afterwards. */
static void kreq_finish(struct tn_kube *k, struct kreq *r) {
  pthread_mutex_lock(&k->mu);
  r->done = true;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&k->mu);
}

static void *transport_main(void *arg) {
  struct tn_kube *k = arg;
  struct kreq *active = NULL; /* requests added to the multi handle; only this thread sees it */
  prctl(PR_SET_NAME, "kube-transport", 0, 0, 0);
  for (;;) {
    pthread_mutex_lock(&k->mu);
    bool stop = k->stopping;
    struct kreq *in = k->pending;
    k->pending = k->pending_tail = NULL;
    pthread_mutex_unlock(&k->mu);

    while (in) {
      struct kreq *r = in;
      in = in->next;
      if (curl_multi_add_handle(k->multi, r->easy) != CURLM_OK) {
        r->result = CURLE_OUT_OF_MEMORY;
        kreq_finish(k, r);
        continue;
      }
      r->next = active;
      active = r;
    }
    /* Cancel what was asked to stop (everything when the client stops). */
    for (struct kreq **pp = &active; *pp;) {
      struct kreq *r = *pp;
      if (stop || canceled(r->req)) {
        *pp = r->next;
        curl_multi_remove_handle(k->multi, r->easy);
        r->abort_code = TN_ECANCELED;
        kreq_finish(k, r);
      } else {
        pp = &r->next;
      }
    }
    if (stop)
      break;

    int running = 0;
    curl_multi_perform(k->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(k->multi, &left))) {
      if (m->msg != CURLMSG_DONE)
        continue;
      CURL *e = m->easy_handle;
      CURLcode result = m->data.result;
      struct kreq *r = NULL;
      for (struct kreq **pp = &active; *pp; pp = &(*pp)->next) {
        if ((*pp)->easy == e) {
          r = *pp;
          *pp = r->next;
          break;
        }
      }
      curl_multi_remove_handle(k->multi, e);
      if (r) {
        r->result = result;
        kreq_finish(k, r);
      }
    }
    curl_multi_poll(k->multi, NULL, 0, LOOP_TICK_MS, NULL);
  }
  return NULL;
}

/* Hands r to the transport thread and sleeps until it is done. */
static int kreq_run(struct tn_kube *k, struct kreq *r) {
  pthread_mutex_lock(&k->mu);
  if (k->stopping) {
    pthread_mutex_unlock(&k->mu);
    return TN_ECANCELED;
  }
  r->done = false;
  r->next = NULL;
  if (k->pending_tail)
    k->pending_tail->next = r;
  else
    k->pending = r;
  k->pending_tail = r;
  pthread_mutex_unlock(&k->mu);
  curl_multi_wakeup(k->multi);
  pthread_mutex_lock(&k->mu);
  while (!r->done)
    pthread_cond_wait(&r->cond, &k->mu);
  pthread_mutex_unlock(&k->mu);
  return 0;
}

/* Sleeps up to `seconds`, waking every LOOP_TICK_MS to check the cancel flag. Returns 0, or
 * TN_ECANCELED when the request was canceled or the client stopped. */
static int sleep_cancelable(struct tn_kube *k, const struct tn_kube_request *req, double seconds) {
  double until = tn_mono_now() + seconds;
  int rc = 0;
  pthread_mutex_lock(&k->mu);
  for (;;) {
    if (k->stopping || canceled(req)) {
      rc = TN_ECANCELED;
      break;
    }
    double now = tn_mono_now();
    if (now >= until)
      break;
    struct timespec ts = tn_mono_timespec(fmin(until, now + LOOP_TICK_MS / 1000.0));
    pthread_cond_timedwait(&k->wake, &k->mu, &ts);
  }
  pthread_mutex_unlock(&k->mu);
  return rc;
}

/* ---- rate limiter (token bucket with reservations, like golang.org/x/time/rate.Wait) ------------ */

static int limiter_wait(struct tn_kube *k, const struct tn_kube_request *req, double deadline,
                        struct tn_error *err) {
  if (k->cfg.qps <= 0)
    return 0;
  pthread_mutex_lock(&k->mu);
  double now = tn_mono_now();
  k->tokens = fmin((double)k->burst, k->tokens + (now - k->tokens_at) * k->cfg.qps);
  k->tokens_at = now;
  k->tokens -= 1;
  double wait = k->tokens >= 0 ? 0 : -k->tokens / k->cfg.qps;
  pthread_mutex_unlock(&k->mu);
  if (wait <= 0)
    return 0;
  int rc = 0;
  if (now + wait > deadline)
    rc = tn_error_set(err, TN_ETIMEOUT, "%s %s: the client rate limit (%.1f qps) would pass the deadline",
                      req->method, req->path, k->cfg.qps);
  else if (sleep_cancelable(k, req, wait))
    rc = tn_error_set(err, TN_ECANCELED, "%s %s: canceled", req->method, req->path);
  if (rc) { /* give the reservation back */
    pthread_mutex_lock(&k->mu);
    k->tokens = fmin((double)k->burst, k->tokens + 1);
    pthread_mutex_unlock(&k->mu);
  }
  return rc;
}

/* ---- bearer token ------------------------------------------------------------------------------- */

/* The "Authorization: Bearer ..." header line (malloc'd), or NULL when there is no token.
 * token_file is re-read whenever its inode, size or mtime changes; when it cannot be read the
 * last good token is kept. */
static char *auth_header(struct tn_kube *k) {
  char *hdr = NULL;
  pthread_mutex_lock(&k->token_mu);
  struct stat st;
  if (k->cfg.token_file && stat(k->cfg.token_file, &st) == 0 &&
      (!k->tok_read || st.st_ino != k->tok_st.st_ino || st.st_size != k->tok_st.st_size ||
       st.st_mtim.tv_sec != k->tok_st.st_mtim.tv_sec || st.st_mtim.tv_nsec != k->tok_st.st_mtim.tv_nsec)) {
    struct tn_buf b;
    tn_buf_init(&b, TOKEN_FILE_MAX);
    FILE *f = fopen(k->cfg.token_file, "rb");
    char chunk[4096];
    size_t n;
    int rc = f ? 0 : -errno;
    while (f && !rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
      rc = tn_buf_append(&b, chunk, n);
    if (f)
      fclose(f);
    while (!rc && b.len > 0 && strchr(" \t\r\n", b.data[b.len - 1]))
      b.data[--b.len] = '\0';
    if (!rc && b.len > 0 && !memchr(b.data, '\n', b.len)) {
      tn_wipe_free_str(k->token);
      k->token = tn_buf_take(&b);
      k->tok_st = st;
      k->tok_read = true;
    } else {
      tn_log_warn("cannot read the bearer token file %s: %s; keeping the previous token", k->cfg.token_file,
                  rc ? tn_strerror(rc) : "empty or malformed");
    }
    if (b.data)
      memset(b.data, 0, b.len);
    tn_buf_cleanup(&b);
  }
  if (k->token) {
    size_t n = strlen(k->token) + sizeof "Authorization: Bearer ";
    hdr = malloc(n);
    if (hdr)
      snprintf(hdr, n, "Authorization: Bearer %s", k->token);
  }
  pthread_mutex_unlock(&k->token_mu);
  return hdr;
}

/* ---- one request ----------------------------------------------------------------------------------- */

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
  struct kreq *r = ud;
  size_t len = size * nmemb;
  if (r->status == 0)
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
  if (r->req->on_data && r->status >= 200 && r->status <= 299) {
    int rc = r->req->on_data(r->req->ud, p, len);
    if (rc) {
      r->abort_code = rc > 0 ? TN_ECANCELED : rc;
      return len == 0 ? 1 : 0; /* anything but len aborts */
    }
    return len;
  }
  int rc = tn_buf_append(&r->resp->body, p, len);
  if (rc) {
    r->abort_code = rc == TN_ERR_TOOBIG ? TN_ETOOBIG : rc;
    return len == 0 ? 1 : 0;
  }
  return len;
}

static int blob_opt(CURL *e, CURLoption opt, const char *data) {
  struct curl_blob b = {.data = (void *)data, .len = strlen(data), .flags = CURL_BLOB_COPY};
  return curl_easy_setopt(e, opt, &b) == CURLE_OK ? 0 : -ENOMEM;
}

/* Options that stay the same over every attempt of a request. */
static int easy_setup(struct tn_kube *k, struct kreq *r, const char *url) {
  const struct tn_kube_request *req = r->req;
  const struct tn_kube_config *c = &k->cfg;
  CURL *e = r->easy;
  CURLcode x = CURLE_OK;
#define SET(opt, val)                                                                                        \
  do {                                                                                                       \
    if (x == CURLE_OK)                                                                                       \
      x = curl_easy_setopt(e, opt, val);                                                                     \
  } while (0)
  SET(CURLOPT_URL, url);
  SET(CURLOPT_PROTOCOLS_STR, "https");
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  SET(CURLOPT_PIPEWAIT, 1L); /* wait for the shared connection rather than open another */
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
  SET(CURLOPT_USERAGENT, c->user_agent);
  /* No Accept-Encoding: with gzip, Debian's libcurl 7.88 failed every watch stream sharing the
   * HTTP/2 connection with "Failed writing received data" as soon as other requests ran on it
   * (seen with the operator's 8 informers; gone without gzip). Loopback and in-cluster traffic
   * gains little from compression anyway. */
  SET(CURLOPT_ERRORBUFFER, r->errbuf);
  SET(CURLOPT_WRITEFUNCTION, on_write);
  SET(CURLOPT_WRITEDATA, r);
  SET(CURLOPT_PRIVATE, r);
  if (k->connect_to)
    SET(CURLOPT_CONNECT_TO, k->connect_to);
  if (c->insecure_skip_tls_verify && c->allow_insecure) {
    SET(CURLOPT_SSL_VERIFYPEER, 0L);
    SET(CURLOPT_SSL_VERIFYHOST, 0L);
  } else {
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
  }
  if (c->ca_file)
    SET(CURLOPT_CAINFO, c->ca_file);
  if (c->cert_file)
    SET(CURLOPT_SSLCERT, c->cert_file);
  if (c->key_file)
    SET(CURLOPT_SSLKEY, c->key_file);
#undef SET
  if (x != CURLE_OK)
    return -ENOMEM;
  if ((c->ca_data && blob_opt(e, CURLOPT_CAINFO_BLOB, c->ca_data)) ||
      (c->cert_data && blob_opt(e, CURLOPT_SSLCERT_BLOB, c->cert_data)) ||
      (c->key_data && blob_opt(e, CURLOPT_SSLKEY_BLOB, c->key_data)))
    return -ENOMEM;
  if (method_is(req, "GET")) {
    x = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (method_is(req, "HEAD")) {
    x = curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    /* POST, PUT, PATCH, DELETE: the body (maybe empty) is sent from the caller's memory. */
    if (req->body) {
      x = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
      if (x == CURLE_OK)
        x = curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    } else if (!method_is(req, "DELETE")) {
      x = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
      if (x == CURLE_OK)
        x = curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    }
    if (x == CURLE_OK && !method_is(req, "POST"))
      x = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
  }
  return x == CURLE_OK ? 0 : -ENOMEM;
}

/* The headers of one attempt (the token may have changed since the last). */
static int headers_build(struct tn_kube *k, const struct tn_kube_request *req, struct curl_slist **out) {
  struct curl_slist *h = NULL, *t;
  char ct[256];
  char *auth = auth_header(k);
  int rc = -ENOMEM;
#define ADD(s)                                                                                               \
  do {                                                                                                       \
    if (!(t = curl_slist_append(h, s)))                                                                      \
      goto out;                                                                                              \
    h = t;                                                                                                   \
  } while (0)
  ADD("Accept: application/json");
  ADD("Expect:");
  if (req->body) {
    snprintf(ct, sizeof ct, "Content-Type: %s", req->content_type ? req->content_type : "application/json");
    ADD(ct);
  }
  if (auth)
    ADD(auth);
  /* Impersonation (kubectl --as/--as-group): the API server checks the caller may impersonate. */
  if (k->cfg.impersonate_user) {
    char line[1024];
    snprintf(line, sizeof line, "Impersonate-User: %s", k->cfg.impersonate_user);
    ADD(line);
    for (const char *g = k->cfg.impersonate_groups; g && *g;) {
      size_t glen = strcspn(g, "\n");
      snprintf(line, sizeof line, "Impersonate-Group: %.*s", (int)glen, g);
      ADD(line);
      g += glen + (g[glen] == '\n');
    }
  }
#undef ADD
  rc = 0;
out:
  if (auth) {
    memset(auth, 0, strlen(auth));
    free(auth);
  }
  if (rc)
    curl_slist_free_all(h);
  else
    *out = h;
  return rc;
}

static double header_retry_after(CURL *e) {
  struct curl_header *h = NULL;
  if (curl_easy_header(e, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h || !h->value)
    return 0;
  char *end = NULL;
  long v = strtol(h->value, &end, 10);
  return end != h->value && v > 0 ? (double)v : 0; /* an HTTP-date is ignored, as client-go does */
}

static void count_request(struct tn_kube *k, const char *method, long status) {
  if (!k->m_requests)
    return;
  char code[24];
  if (status > 0)
    snprintf(code, sizeof code, "%ld", status);
  else
    snprintf(code, sizeof code, "<error>");
  tn_series_inc(tn_metric_with(k->m_requests, (const char *const[]){code, method, NULL}));
}

static bool caller_enter(struct tn_kube *k) {
  pthread_mutex_lock(&k->mu);
  bool ok = !k->stopping;
  if (ok)
    k->callers++;
  pthread_mutex_unlock(&k->mu);
  return ok;
}

static void caller_leave(struct tn_kube *k) {
  pthread_mutex_lock(&k->mu);
  if (--k->callers == 0)
    pthread_cond_broadcast(&k->idle);
  pthread_mutex_unlock(&k->mu);
}

void tn_kube_response_init(struct tn_kube_response *r) {
  r->status = 0;
  r->retry_after_s = 0;
  tn_buf_init(&r->body, DEFAULT_MAX_RESPONSE);
}

void tn_kube_response_cleanup(struct tn_kube_response *r) {
  if (r)
    tn_buf_cleanup(&r->body);
}

int tn_kube_do(struct tn_kube *k, const struct tn_kube_request *req, struct tn_kube_response *resp,
               struct tn_error *err) {
  struct tn_kube_response local;
  struct kreq r;
  struct tn_buf url;
  struct curl_slist *hdrs = NULL;
  bool entered = false, cond_ok = false;
  int rc = 0, attempt = 0;
  double t0 = tn_mono_now();
  memset(&r, 0, sizeof r);
  tn_buf_init(&url, 64 << 10);
  tn_kube_response_init(&local);
  if (!resp)
    resp = &local;

  if (!req || !req->method || !req->path || req->path[0] != '/') {
    rc = tn_error_set(err, -EINVAL, "tn_kube_do: a method and an absolute path are required");
    goto out;
  }
  if (!(entered = caller_enter(k))) {
    rc = tn_error_set(err, TN_ECANCELED, "%s %s: the client is shutting down", req->method, req->path);
    goto out;
  }
  if (k->thread_started && pthread_equal(pthread_self(), k->thread)) {
    rc = tn_error_set(err, -EDEADLK, "%s %s: called from the transport thread (inside on_data)", req->method,
                      req->path);
    goto out;
  }
  bool stream = req->on_data != NULL;
  long timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : (stream ? 0 : DEFAULT_TIMEOUT_MS);
  double deadline = timeout_ms > 0 ? t0 + (double)timeout_ms / 1000.0 : INFINITY;

  tn_buf_cleanup(&resp->body);
  tn_buf_init(&resp->body, k->max_response);
  resp->status = 0;
  resp->retry_after_s = 0;
  if (tn_buf_printf(&url, "%s%s%s%s", k->base_url, req->path, req->query && *req->query ? "?" : "",
                    req->query ? req->query : "")) {
    rc = tn_error_set(err, -EINVAL, "%s %s: the URL is too long", req->method, req->path);
    goto out;
  }
  r.k = k;
  r.req = req;
  r.resp = resp;
  if (tn_cond_init_monotonic(&r.cond)) {
    rc = tn_error_set(err, -ENOMEM, "out of resources");
    goto out;
  }
  cond_ok = true;
  if (!(r.easy = curl_easy_init()) || easy_setup(k, &r, tn_buf_str(&url))) {
    rc = tn_error_set(err, -ENOMEM, "%s %s: cannot set up the transfer", req->method, req->path);
    goto out;
  }

  for (attempt = 1;; attempt++) {
    if (canceled(req)) {
      rc = tn_error_set(err, TN_ECANCELED, "%s %s: canceled", req->method, req->path);
      goto out;
    }
    if (!req->no_retry && (rc = limiter_wait(k, req, deadline, err)))
      goto out;
    curl_slist_free_all(hdrs);
    hdrs = NULL;
    if (headers_build(k, req, &hdrs) || curl_easy_setopt(r.easy, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK) {
      rc = tn_error_set(err, -ENOMEM, "out of memory");
      goto out;
    }
    long left_ms = 0;
    if (isfinite(deadline)) {
      left_ms = (long)((deadline - tn_mono_now()) * 1000.0);
      if (left_ms <= 0) {
        rc = tn_error_set(err, TN_ETIMEOUT, "%s %s: no answer within %ld ms", req->method, req->path,
                          timeout_ms);
        goto out;
      }
    }
    curl_easy_setopt(r.easy, CURLOPT_TIMEOUT_MS, left_ms);
    tn_buf_reset(&resp->body);
    r.status = 0;
    r.abort_code = 0;
    r.result = CURLE_OK;
    r.errbuf[0] = '\0';
    /* Checked last, right before the request goes out (the limiter may have slept). */
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0 &&
        (rc = tn_fence_check(atomic_load(&k->fence), req->method, err)) != 0) {
      tn_error_prefix(err, "%s", req->path);
      goto out;
    }
    double ta = tn_mono_now();
    if (kreq_run(k, &r)) {
      rc = tn_error_set(err, TN_ECANCELED, "%s %s: the client is shutting down", req->method, req->path);
      goto out;
    }
    long status = 0, req_size = 0, nconn = 0;
    curl_easy_getinfo(r.easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r.easy, CURLINFO_REQUEST_SIZE, &req_size);
    curl_easy_getinfo(r.easy, CURLINFO_NUM_CONNECTS, &nconn);
    k->connects += nconn;
    bool complete = r.result == CURLE_OK && r.abort_code == 0;
    count_request(k, req->method, complete || r.abort_code == TN_ETOOBIG ? status : 0);
    if (tn_log_enabled(TN_LOG_DEBUG)) {
      long hv = 0;
      curl_easy_getinfo(r.easy, CURLINFO_HTTP_VERSION, &hv);
      tn_log_debug("kube %s %s%s%s: %ld%s%s in %.1f ms (attempt %d, %s)", req->method, req->path,
                   req->query && *req->query ? "?" : "", req->query ? req->query : "", status,
                   complete ? "" : " ",
                   complete ? "" : (r.abort_code ? tn_strerror(r.abort_code) : curl_easy_strerror(r.result)),
                   (tn_mono_now() - ta) * 1000.0, attempt,
                   hv == CURL_HTTP_VERSION_2_0   ? "HTTP/2"
                   : hv == CURL_HTTP_VERSION_1_1 ? "HTTP/1.1"
                                                 : "no answer");
    }

    if (r.abort_code) {
      resp->status = status;
      if (r.abort_code == TN_ECANCELED)
        rc = tn_error_set(err, TN_ECANCELED, "%s %s: canceled", req->method, req->path);
      else if (r.abort_code == TN_ETOOBIG)
        rc = tn_error_set(err, TN_ETOOBIG,
                          "%s %s: the response is larger than the client's limit of %zu bytes", req->method,
                          req->path, k->max_response);
      else
        rc = tn_error_set(err, r.abort_code, "%s %s: stopped by the stream consumer: %s", req->method,
                          req->path, tn_strerror(r.abort_code));
      goto out;
    }
    double delay = 0;
    if (r.result != CURLE_OK) {
      if (r.result == CURLE_OPERATION_TIMEDOUT && isfinite(deadline) && tn_mono_now() >= deadline - 0.005) {
        rc = tn_error_set(err, TN_ETIMEOUT, "%s %s: no answer within %ld ms", req->method, req->path,
                          timeout_ms);
        goto out;
      }
      bool sent = req_size > 0 || !curl_before_send(r.result);
      if (curl_retryable(r.result) && tn_kube_should_retry(req, attempt, 0, sent, 0, &delay) &&
          tn_mono_now() + delay < deadline) {
        if ((rc = sleep_cancelable(k, req, delay))) {
          rc = tn_error_set(err, TN_ECANCELED, "%s %s: canceled", req->method, req->path);
          goto out;
        }
        continue;
      }
      rc = tn_error_set(err, TN_ETRANSPORT, "%s %s%s: %s (after %d attempt%s)", req->method, k->base_url,
                        req->path, r.errbuf[0] ? r.errbuf : curl_easy_strerror(r.result), attempt,
                        attempt == 1 ? "" : "s");
      goto out;
    }
    resp->status = status;
    resp->retry_after_s = header_retry_after(r.easy);
    if (status >= 200 && status <= 299) {
      rc = 0;
      goto out;
    }
    struct tn_error e;
    rc = tn_kube_status_error(status, resp->body.data, resp->body.len, &e);
    if (e.retry_after_s > resp->retry_after_s)
      resp->retry_after_s = e.retry_after_s;
    e.retry_after_s = resp->retry_after_s;
    if (tn_kube_should_retry(req, attempt, status, true, resp->retry_after_s, &delay) &&
        tn_mono_now() + delay < deadline) {
      if (sleep_cancelable(k, req, delay)) {
        rc = tn_error_set(err, TN_ECANCELED, "%s %s: canceled", req->method, req->path);
        goto out;
      }
      continue;
    }
    if (attempt > 1)
      tn_error_prefix(&e, "after %d attempts", attempt);
    if (err)
      *err = e;
    goto out;
  }

out:
  if (k && k->m_duration && entered && !(req && req->on_data) && attempt > 0)
    tn_series_observe(tn_metric_with(k->m_duration, (const char *const[]){req->method, NULL}),
                      tn_mono_now() - t0);
  if (r.easy)
    curl_easy_cleanup(r.easy);
  curl_slist_free_all(hdrs);
  if (cond_ok)
    pthread_cond_destroy(&r.cond);
  tn_buf_cleanup(&url);
  tn_kube_response_cleanup(&local);
  if (entered)
    caller_leave(k);
  return rc;
}

/* ---- client life ------------------------------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static int config_copy(struct tn_kube_config *dst, const struct tn_kube_config *src) {
  *dst = *src;
  char **d[] = {&dst->server,           &dst->ca_file,           &dst->ca_data,    &dst->cert_file,
                &dst->cert_data,        &dst->key_file,          &dst->key_data,   &dst->token,
                &dst->token_file,       &dst->tls_server_name,   &dst->user_agent, &dst->namespace,
                &dst->impersonate_user, &dst->impersonate_groups};
  const char *s[] = {src->server,           src->ca_file,           src->ca_data,    src->cert_file,
                     src->cert_data,        src->key_file,          src->key_data,   src->token,
                     src->token_file,       src->tls_server_name,   src->user_agent, src->namespace,
                     src->impersonate_user, src->impersonate_groups};
  int rc = 0;
  for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
    *d[i] = NULL;
  for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
    if (!rc)
      rc = dup_str(d[i], s[i]);
  return rc;
}

/* base_url and connect_to from cfg.server (parsed with curl's URL API). */
static int server_setup(struct tn_kube *k, struct tn_error *err) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL, *query = NULL;
  struct tn_buf b;
  tn_buf_init(&b, 8192);
  int rc = 0;
  if (!u) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  if (curl_url_set(u, CURLUPART_URL, k->cfg.server, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
    rc = tn_error_set(err, TN_ECONFIG, "server \"%s\": not a valid URL", k->cfg.server);
    goto out;
  }
  if (strcasecmp(scheme, "https") != 0) {
    rc = tn_error_set(err, TN_ECONFIG, "server \"%s\": must be an https:// URL", k->cfg.server);
    goto out;
  }
  if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
      curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
    rc = tn_error_set(err, TN_ECONFIG, "server \"%s\": must not carry credentials or a query", k->cfg.server);
    goto out;
  }
  size_t plen = strlen(path);
  while (plen > 0 && path[plen - 1] == '/')
    plen--;
  const char *name = k->cfg.tls_server_name ? k->cfg.tls_server_name : host;
  bool v6 = strchr(name, ':') != NULL && name[0] != '[';
  if (tn_buf_printf(&b, "https://%s%s%s:%s%.*s", v6 ? "[" : "", name, v6 ? "]" : "", port, (int)plen, path)) {
    rc = tn_error_set(err, TN_ECONFIG, "server \"%s\": too long", k->cfg.server);
    goto out;
  }
  k->base_url = tn_buf_take(&b);
  if (k->cfg.tls_server_name) {
    /* Connect to the configured host while TLS (SNI and verification) uses tls_server_name. */
    tn_buf_init(&b, 8192);
    if (tn_buf_printf(&b, "%s%s%s:%s:%s:%s", v6 ? "[" : "", name, v6 ? "]" : "", port, host, port) ||
        !(k->connect_to = curl_slist_append(NULL, tn_buf_str(&b)))) {
      rc = tn_error_set(err, -ENOMEM, "out of memory");
      goto out;
    }
  }
  if (!k->base_url)
    rc = tn_error_set(err, -ENOMEM, "out of memory");
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_free(user);
  curl_free(query);
  curl_url_cleanup(u);
  tn_buf_cleanup(&b);
  return rc;
}

static const double duration_buckets[] = {0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60};

void tn_kube_set_fence(struct tn_kube *k, const struct tn_fence *fence) {
  if (k)
    atomic_store(&k->fence, fence);
}

int tn_kube_new(const struct tn_kube_config *cfg, struct tn_metrics *metrics, struct tn_kube **out,
                struct tn_error *err) {
  struct tn_kube *k = NULL;
  int rc = 0;
  bool mu_ok = false, tmu_ok = false, wake_ok = false, idle_ok = false;
  *out = NULL;
  pthread_once(&curl_once, curl_init);
  if (curl_init_rc != CURLE_OK)
    return tn_error_set(err, TN_ETRANSPORT, "curl_global_init: %s", curl_easy_strerror(curl_init_rc));
  if (!cfg || !cfg->server || !*cfg->server)
    return tn_error_set(err, TN_ECONFIG, "server: not set");
  if (cfg->insecure_skip_tls_verify && !cfg->allow_insecure)
    return tn_error_set(err, TN_ECONFIG,
                        "insecure-skip-tls-verify: refused (the API server's certificate must be verified; "
                        "configure certificate-authority)");
  if ((cfg->cert_file || cfg->cert_data) != (cfg->key_file || cfg->key_data))
    return tn_error_set(err, TN_ECONFIG, "client certificate and key must be given together");
  if ((cfg->ca_file && cfg->ca_data) || (cfg->cert_file && cfg->cert_data) ||
      (cfg->key_file && cfg->key_data))
    return tn_error_set(err, TN_ECONFIG,
                        "give each of the CA, certificate and key as a file or as data, not both");
  if (!(k = calloc(1, sizeof *k)))
    return tn_error_set(err, -ENOMEM, "out of memory");
  if (config_copy(&k->cfg, cfg)) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  if (!k->cfg.user_agent && !(k->cfg.user_agent = strdup("tenancy-operator/" TN_VERSION))) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  if (!k->cfg.token_file && k->cfg.token && !(k->token = strdup(k->cfg.token))) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  if (k->cfg.token_file && k->cfg.token && !(k->token = strdup(k->cfg.token))) { /* until the file is read */
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  k->max_response = cfg->max_response_bytes ? cfg->max_response_bytes : DEFAULT_MAX_RESPONSE;
  k->burst = cfg->burst > 0 ? cfg->burst : (long)fmax(1.0, 2.0 * cfg->qps);
  k->tokens = (double)k->burst;
  k->tokens_at = tn_mono_now();
  if ((rc = server_setup(k, err)))
    goto fail;
  if (pthread_mutex_init(&k->mu, NULL) == 0)
    mu_ok = true;
  if (pthread_mutex_init(&k->token_mu, NULL) == 0)
    tmu_ok = true;
  wake_ok = tn_cond_init_monotonic(&k->wake) == 0;
  idle_ok = pthread_cond_init(&k->idle, NULL) == 0;
  if (!mu_ok || !tmu_ok || !wake_ok || !idle_ok) {
    rc = tn_error_set(err, -ENOMEM, "out of resources");
    goto fail;
  }
  if (!(k->multi = curl_multi_init()) ||
      curl_multi_setopt(k->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX) != CURLM_OK) {
    rc = tn_error_set(err, -ENOMEM, "cannot create the curl multi handle");
    goto fail;
  }
  if (metrics) {
    k->m_requests =
        tn_metrics_register(metrics, TN_COUNTER, "rest_client_requests_total",
                            "Number of HTTP requests to the API server, by status code and method.",
                            (const char *const[]){"code", "method", NULL}, NULL, 0);
    k->m_duration = tn_metrics_register(
        metrics, TN_HISTOGRAM, "rest_client_request_duration_seconds",
        "Time of a request to the API server including retries, by verb (watches excluded).",
        (const char *const[]){"verb", NULL}, duration_buckets,
        sizeof duration_buckets / sizeof duration_buckets[0]);
    if (!k->m_requests || !k->m_duration) {
      rc = tn_error_set(err, -EINVAL, "cannot register the rest_client metrics (a clashing family exists?)");
      goto fail;
    }
  }
  int prc = pthread_create(&k->thread, NULL, transport_main, k);
  if (prc) {
    rc = tn_error_set(err, -prc, "cannot start the transport thread: %s", strerror(prc));
    goto fail;
  }
  k->thread_started = true;
  *out = k;
  return 0;
fail:
  if (k->multi)
    curl_multi_cleanup(k->multi);
  if (mu_ok)
    pthread_mutex_destroy(&k->mu);
  if (tmu_ok)
    pthread_mutex_destroy(&k->token_mu);
  if (wake_ok)
    pthread_cond_destroy(&k->wake);
  if (idle_ok)
    pthread_cond_destroy(&k->idle);
  free(k->base_url);
  curl_slist_free_all(k->connect_to);
  tn_wipe_free_str(k->token);
  tn_kube_config_cleanup(&k->cfg);
  free(k);
  return rc;
}

void tn_kube_free(struct tn_kube *k) {
  if (!k)
    return;
  pthread_mutex_lock(&k->mu);
  k->stopping = true;
  pthread_cond_broadcast(&k->wake);
  pthread_mutex_unlock(&k->mu);
  curl_multi_wakeup(k->multi);
  pthread_join(k->thread, NULL); /* it finishes every request in flight with TN_ECANCELED */
  pthread_mutex_lock(&k->mu);
  while (k->callers > 0)
    pthread_cond_wait(&k->idle, &k->mu);
  pthread_mutex_unlock(&k->mu);
  curl_multi_cleanup(k->multi);
  pthread_mutex_destroy(&k->mu);
  pthread_mutex_destroy(&k->token_mu);
  pthread_cond_destroy(&k->wake);
  pthread_cond_destroy(&k->idle);
  free(k->base_url);
  curl_slist_free_all(k->connect_to);
  tn_wipe_free_str(k->token);
  tn_kube_config_cleanup(&k->cfg);
  free(k);
}

long tn_kube_connections_opened(struct tn_kube *k) { return k ? k->connects : 0; }

void tn_kube_endpoint(const struct tn_kube *k, struct tn_kube_endpoint *out) {
  *out = (struct tn_kube_endpoint){0};
  if (!k)
    return;
  out->base_url = k->base_url;
  out->connect_to = k->connect_to ? k->connect_to->data : NULL;
  out->ca_file = k->cfg.ca_file;
  out->ca_data = k->cfg.ca_data;
  out->insecure = k->cfg.insecure_skip_tls_verify && k->cfg.allow_insecure;
}

/* ---- typed verbs -------------------------------------------------------------------------------------- */

/* Sends body (may be NULL) and decodes the answer into *out (may be NULL to discard). */
static int do_json(struct tn_kube *k, const char *method, const char *path, const char *query,
                   const char *content_type, json_t *body, json_t **out, struct tn_error *err) {
  struct tn_kube_response resp;
  char *text = NULL;
  int rc = 0;
  tn_kube_response_init(&resp);
  if (out)
    *out = NULL;
  if (body && !(text = json_dumps(body, JSON_COMPACT))) {
    rc = tn_error_set(err, -ENOMEM, "cannot encode the request body");
    goto out;
  }
  struct tn_kube_request req = {.method = method,
                                .path = path,
                                .query = query,
                                .content_type = content_type,
                                .body = text,
                                .body_len = text ? strlen(text) : 0};
  if ((rc = tn_kube_do(k, &req, &resp, err)))
    goto out;
  if (out) {
    json_error_t je;
    *out = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &je);
    if (!*out)
      rc = tn_error_set(err, TN_EAPI, "%s %s: the answer is not JSON: %s", method, path, je.text);
  }
out:
  free(text);
  tn_kube_response_cleanup(&resp);
  return rc;
}

static const char *meta_str(json_t *obj, const char *field) {
  return json_string_value(json_object_get(json_object_get(obj, "metadata"), field));
}

/* The path of (gvr, ns, name, sub) or an error naming what is wrong. */
static char *path_for(const struct tn_gvr *gvr, const char *ns, const char *name, const char *sub,
                      bool need_ns, struct tn_error *err) {
  if (!gvr || !gvr->version || !gvr->resource) {
    tn_error_set(err, -EINVAL, "no resource type given");
    return NULL;
  }
  if (gvr->namespaced && need_ns && (!ns || !*ns)) {
    tn_error_set(err, TN_EINVALID, "%s %s: a namespace is required", gvr->resource, name ? name : "");
    return NULL;
  }
  char *p = tn_kube_path(gvr, ns, name, sub);
  if (!p)
    tn_error_set(err, TN_EINVALID, "%s: invalid name \"%s\", namespace \"%s\" or subresource \"%s\"",
                 gvr->resource, name ? name : "", ns ? ns : "", sub ? sub : "");
  return p;
}

int tn_kube_get(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name, json_t **out,
                struct tn_error *err) {
  char *p = path_for(gvr, ns, name ? name : "", NULL, true, err);
  if (!p)
    return err ? err->code : TN_EINVALID;
  int rc = do_json(k, "GET", p, NULL, NULL, NULL, out, err);
  free(p);
  return rc;
}

int tn_kube_list(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const struct tn_list_opts *opts,
                 json_t **out, struct tn_error *err) {
  struct tn_buf q;
  tn_buf_init(&q, 64 << 10);
  int rc = 0;
  char *p = path_for(gvr, ns, NULL, NULL, false, err);
  if (!p)
    return err ? err->code : TN_EINVALID;
  if (opts) {
    char lim[32];
    snprintf(lim, sizeof lim, "%ld", opts->limit);
    if ((opts->label_selector && *opts->label_selector &&
         (rc = tn_kube_query_add(&q, "labelSelector", opts->label_selector))) ||
        (opts->field_selector && *opts->field_selector &&
         (rc = tn_kube_query_add(&q, "fieldSelector", opts->field_selector))) ||
        (opts->limit > 0 && (rc = tn_kube_query_add(&q, "limit", lim))) ||
        (opts->continue_token && *opts->continue_token &&
         (rc = tn_kube_query_add(&q, "continue", opts->continue_token))) ||
        (opts->resource_version && (rc = tn_kube_query_add(&q, "resourceVersion", opts->resource_version)))) {
      rc = tn_error_set(err, TN_EINVALID, "list %s: the query is too long", gvr->resource);
      goto out;
    }
  }
  rc = do_json(k, "GET", p, q.len ? tn_buf_str(&q) : NULL, NULL, NULL, out, err);
out:
  free(p);
  tn_buf_cleanup(&q);
  return rc;
}

int tn_kube_create(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, json_t *obj, json_t **out,
                   struct tn_error *err) {
  if (!ns)
    ns = meta_str(obj, "namespace");
  char *p = path_for(gvr, ns, NULL, NULL, true, err);
  if (!p)
    return err ? err->code : TN_EINVALID;
  int rc = do_json(k, "POST", p, NULL, NULL, obj, out, err);
  free(p);
  return rc;
}

int tn_kube_update(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, json_t *obj,
                   const char *subresource, json_t **out, struct tn_error *err) {
  const char *name = meta_str(obj, "name");
  if (!name || !*name)
    return tn_error_set(err, TN_EINVALID, "update %s: the object has no metadata.name",
                        gvr && gvr->resource ? gvr->resource : "");
  if (!ns)
    ns = meta_str(obj, "namespace");
  char *p = path_for(gvr, ns, name, subresource, true, err);
  if (!p)
    return err ? err->code : TN_EINVALID;
  int rc = do_json(k, "PUT", p, NULL, NULL, obj, out, err);
  free(p);
  return rc;
}

int tn_kube_merge_patch(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name,
                        json_t *patch, const char *subresource, json_t **out, struct tn_error *err) {
  char *p = path_for(gvr, ns, name ? name : "", subresource, true, err);
  if (!p)
    return err ? err->code : TN_EINVALID;
  int rc = do_json(k, "PATCH", p, NULL, "application/merge-patch+json", patch, out, err);
  free(p);
  return rc;
}

int tn_kube_apply(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, json_t *obj,
                  const char *field_manager, bool force, const char *subresource, json_t **out,
                  struct tn_error *err) {
  const char *name = meta_str(obj, "name");
  if (!json_is_string(json_object_get(obj, "apiVersion")) || !json_is_string(json_object_get(obj, "kind")) ||
      !name || !*name)
    return tn_error_set(err, TN_EINVALID,
                        "apply %s: the object must carry apiVersion, kind and metadata.name",
                        gvr && gvr->resource ? gvr->resource : "");
  if (!ns)
    ns = meta_str(obj, "namespace");
  struct tn_buf q;
  tn_buf_init(&q, 4096);
  int rc = 0;
  char *p = path_for(gvr, ns, name, subresource, true, err);
  if (!p)
    return err ? err->code : TN_EINVALID;
  if (tn_kube_query_add(&q, "fieldManager", field_manager ? field_manager : TN_FIELD_MANAGER) ||
      (force && tn_kube_query_add(&q, "force", "true"))) {
    rc = tn_error_set(err, TN_EINVALID, "apply %s: invalid field manager", gvr->resource);
    goto out;
  }
  rc = do_json(k, "PATCH", p, tn_buf_str(&q), "application/apply-patch+yaml", obj, out, err);
out:
  free(p);
  tn_buf_cleanup(&q);
  return rc;
}

int tn_kube_delete(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name,
                   const struct tn_delete_opts *opts, struct tn_error *err) {
  json_t *body = NULL;
  int rc = 0;
  char *p = path_for(gvr, ns, name ? name : "", NULL, true, err);
  if (!p)
    return err ? err->code : TN_EINVALID;
  if (opts && (opts->precondition_uid || opts->precondition_resource_version || opts->propagation_policy)) {
    json_t *pre = json_object();
    body = json_pack("{s:s, s:s}", "apiVersion", "v1", "kind", "DeleteOptions");
    if (!pre || !body) {
      json_decref(pre);
      rc = tn_error_set(err, -ENOMEM, "out of memory");
      goto out;
    }
    if (opts->precondition_uid)
      json_object_set_new(pre, "uid", json_string(opts->precondition_uid));
    if (opts->precondition_resource_version)
      json_object_set_new(pre, "resourceVersion", json_string(opts->precondition_resource_version));
    if (json_object_size(pre))
      json_object_set_new(body, "preconditions", pre);
    else
      json_decref(pre);
    if (opts->propagation_policy)
      json_object_set_new(body, "propagationPolicy", json_string(opts->propagation_policy));
  }
  rc = do_json(k, "DELETE", p, NULL, NULL, body, NULL, err);
out:
  json_decref(body);
  free(p);
  return rc;
}
