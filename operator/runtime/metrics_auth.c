/* metrics_auth.c - TokenReview + SubjectAccessReview protection of /metrics (see metrics_auth.h). */
#include "runtime/metrics_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kube/client.h"
#include "kube/review.h"
#include "runtime/log.h"
#include "util/clock.h"
#include "util/wipe.h"

struct entry {
  unsigned char hash[32];
  int decision;   /* 200, 401, 403 */
  double expires; /* monotonic */
};

struct tn_metrics_auth {
  pthread_mutex_t mu; /* protects cache, n, tokens, last */
  struct entry cache[TN_METRICS_AUTH_CACHE_MAX];
  size_t n;
  double tokens, last; /* review rate limiter (token bucket) */
  tn_metrics_review_fn review;
  void *ud;
  struct tn_kube *kube;
};

struct secure_route {
  struct tn_metrics *metrics;
  struct tn_metrics_auth *auth;
};

/* The API server decides (kube/review.h): TokenReview, then SubjectAccessReview for get /metrics. */
static int kube_review(void *ud, const char *token, char *who, size_t who_len) {
  struct tn_kube *kube = ud;
  struct tn_error err = {0};
  json_t *user = NULL;
  int rc = tn_token_review(kube, token, strlen(token), &user, &err);
  if (rc) {
    tn_log_warn("metrics: TokenReview failed: %s", err.message);
    return rc;
  }
  if (!user)
    return 401;
  if (who)
    snprintf(who, who_len, "%s", json_string_value(json_object_get(user, "username")));
  bool allowed = false;
  json_t *attrs = json_pack("{s:s,s:s}", "path", "/metrics", "verb", "get");
  if (!attrs)
    rc = -ENOMEM;
  else if ((rc = tn_access_review(kube, user, "nonResourceAttributes", attrs, &allowed, &err)))
    tn_log_warn("metrics: SubjectAccessReview failed: %s", err.message);
  json_decref(user);
  return rc ? rc : allowed ? 200 : 403;
}

int tn_metrics_auth_new_with(tn_metrics_review_fn review, void *ud, struct tn_metrics_auth **out) {
  struct tn_metrics_auth *a = calloc(1, sizeof *a);
  if (!a || !review || pthread_mutex_init(&a->mu, NULL) != 0) {
    free(a);
    return review ? -ENOMEM : -EINVAL;
  }
  a->review = review;
  a->ud = ud;
  a->tokens = TN_METRICS_AUTH_REVIEWS_PER_S;
  a->last = tn_mono_now();
  *out = a;
  return 0;
}

int tn_metrics_auth_new(struct tn_kube *kube, struct tn_metrics_auth **out) {
  int rc = tn_metrics_auth_new_with(kube_review, kube, out);
  if (rc == 0)
    (*out)->kube = kube;
  return rc;
}

void tn_metrics_auth_free(struct tn_metrics_auth *a) {
  if (!a)
    return;
  pthread_mutex_destroy(&a->mu);
  tn_wipe(a, sizeof *a);
  free(a);
}

/* Called with mu held: the cached decision for hash, or 0. */
static int cached(struct tn_metrics_auth *a, const unsigned char *hash, double now) {
  for (size_t i = 0; i < a->n; i++)
    if (memcmp(a->cache[i].hash, hash, 32) == 0)
      return a->cache[i].expires > now ? a->cache[i].decision : 0;
  return 0;
}

/* Called with mu held: stores a decision, replacing the entry for hash, an expired one, or the one
 * closest to expiry. */
static void remember(struct tn_metrics_auth *a, const unsigned char *hash, int decision, double now) {
  double ttl = decision == 200 ? TN_METRICS_AUTH_ALLOW_TTL_S : TN_METRICS_AUTH_DENY_TTL_S;
  size_t slot = a->n, soonest = 0;
  for (size_t i = 0; i < a->n && slot == a->n; i++)
    if (memcmp(a->cache[i].hash, hash, 32) == 0 || a->cache[i].expires <= now)
      slot = i;
  if (slot == a->n && a->n == TN_METRICS_AUTH_CACHE_MAX) {
    for (size_t i = 1; i < a->n; i++)
      if (a->cache[i].expires < a->cache[soonest].expires)
        soonest = i;
    slot = soonest;
  }
  if (slot == a->n)
    a->n++;
  memcpy(a->cache[slot].hash, hash, 32);
  a->cache[slot].decision = decision;
  a->cache[slot].expires = now + ttl;
}

int tn_metrics_auth_check(struct tn_metrics_auth *a, const char *authorization) {
  if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
    return 401;
  const char *token = authorization + 7;
  while (*token == ' ')
    token++;
  size_t len = strlen(token);
  while (len && token[len - 1] == ' ')
    len--;
  if (len == 0 || len > 16384)
    return 401;
  char *tok = strndup(token, len);
  if (!tok)
    return -ENOMEM;
  unsigned char hash[32];
  unsigned int hlen = 0;
  if (!EVP_Digest(tok, len, hash, &hlen, EVP_sha256(), NULL) || hlen != 32) {
    tn_wipe_free_str(tok);
    return -EIO;
  }
  double now = tn_mono_now();
  pthread_mutex_lock(&a->mu);
  int decision = cached(a, hash, now);
  bool may_review = false;
  if (!decision) {
    a->tokens += (now - a->last) * TN_METRICS_AUTH_REVIEWS_PER_S;
    if (a->tokens > TN_METRICS_AUTH_REVIEWS_PER_S)
      a->tokens = TN_METRICS_AUTH_REVIEWS_PER_S;
    a->last = now;
    if (a->tokens >= 1) {
      a->tokens -= 1;
      may_review = true;
    }
  }
  pthread_mutex_unlock(&a->mu);
  if (!decision && !may_review) {
    tn_wipe_free_str(tok);
    return 429;
  }
  if (!decision) {
    char who[256] = "";
    decision = a->review(a->ud, tok, who, sizeof who);
    if (decision == 200 || decision == 401 || decision == 403) {
      pthread_mutex_lock(&a->mu);
      remember(a, hash, decision, tn_mono_now());
      pthread_mutex_unlock(&a->mu);
      if (decision == 403)
        tn_log_info("metrics: %s may not get /metrics (SubjectAccessReview denied)", who);
    }
  }
  tn_wipe_free_str(tok);
  return decision;
}

static int secure_metrics(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  struct secure_route *r = ud;
  int decision = tn_metrics_auth_check(r->auth, req->authorization);
  if (decision == 200) {
    snprintf(resp->content_type, sizeof resp->content_type, "text/plain; version=0.0.4; charset=utf-8");
    return tn_metrics_write(r->metrics, &resp->body);
  }
  resp->status = decision < 0 ? 500 : decision;
  return tn_buf_appends(
      &resp->body, decision == 401 ? "Unauthorized: a bearer token the API server authenticates is required\n"
                   : decision == 403 ? "Forbidden: get on the nonResourceURL /metrics is not allowed\n"
                   : decision == 429 ? "Too many token reviews; retry\n"
                                     : "The token could not be reviewed\n");
}

int tn_httpserver_serve_metrics_secure(struct tn_httpserver *srv, struct tn_metrics *m,
                                       struct tn_metrics_auth *auth) {
  if (!srv)
    return 0;
  if (!m || !auth)
    return -EINVAL;
  struct secure_route *r = calloc(1, sizeof *r);
  if (!r)
    return -ENOMEM;
  r->metrics = m;
  r->auth = auth;
  return tn_httpserver_route_owned(srv, "GET", "/metrics", secure_metrics, r, free); /* frees r on failure */
}

/* ---- a self-signed serving certificate ---- */

static int write_file(const char *path, const char *data, size_t len) {
  FILE *f = NULL;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || !(f = fdopen(fd, "w"))) {
    if (fd >= 0)
      close(fd);
    return -errno;
  }
  size_t w = fwrite(data, 1, len, f);
  return fclose(f) == 0 && w == len ? 0 : -EIO;
}

static char *pem_of(int (*write)(BIO *, void *), void *obj) {
  BIO *b = BIO_new(BIO_s_mem());
  char *out = NULL, *p;
  long n;
  if (b && write(b, obj) && (n = BIO_get_mem_data(b, &p)) > 0 && (out = malloc((size_t)n + 1))) {
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
  }
  BIO_free(b);
  return out;
}
static int write_cert(BIO *b, void *x) { return PEM_write_bio_X509(b, x); }
static int write_key(BIO *b, void *k) { return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL); }

int tn_metrics_self_signed(char **dir_out, struct tn_error *err) {
  const char *tmp = getenv("TMPDIR");
  char tmpl[512], san[600], host[256] = "", path[600];
  snprintf(tmpl, sizeof tmpl, "%s/tenancy-metrics-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (gethostname(host, sizeof host - 1) != 0 || !host[0] || strpbrk(host, ", "))
    snprintf(host, sizeof host, "localhost");
  snprintf(san, sizeof san, "DNS:localhost,IP:127.0.0.1,IP:::1,DNS:%s", host);
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  BIGNUM *bn = BN_new();
  X509_NAME *name;
  X509V3_CTX ctx;
  X509_EXTENSION *ext = NULL;
  char *cert = NULL, *kpem = NULL, *dir = NULL;
  int rc = TN_ECONFIG;
  if (!key || !x || !bn || !X509_set_version(x, X509_VERSION_3) ||
      !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
      !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(x), 365 * 86400L) || !X509_set_pubkey(x, key) ||
      !(name = X509_get_subject_name(x)) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"tenancy-operator-metrics",
                                  -1, -1, 0) ||
      !X509_set_issuer_name(x, name))
    goto ossl;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
  if (!(ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san)) || !X509_add_ext(x, ext, -1) ||
      X509_sign(x, key, EVP_sha256()) <= 0)
    goto ossl;
  if (!(cert = pem_of(write_cert, x)) || !(kpem = pem_of(write_key, key))) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  if (!mkdtemp(tmpl)) {
    rc = tn_error_set(err, TN_ECONFIG,
                      "--metrics-secure: cannot create a directory under %s for the certificate: %s",
                      tmp && *tmp ? tmp : "/tmp", strerror(errno));
    goto out;
  }
  if (!(dir = strdup(tmpl))) {
    rmdir(tmpl);
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  snprintf(path, sizeof path, "%s/tls.crt", dir);
  int wrc = write_file(path, cert, strlen(cert));
  snprintf(path, sizeof path, "%s/tls.key", dir);
  if (wrc == 0)
    wrc = write_file(path, kpem, strlen(kpem));
  if (wrc) {
    tn_metrics_self_signed_remove(dir);
    dir = NULL;
    rc = tn_error_set(err, TN_ECONFIG, "--metrics-secure: cannot write the certificate: %s", strerror(-wrc));
    goto out;
  }
  *dir_out = dir;
  rc = 0;
  goto out;
ossl:
  rc = tn_error_set(err, TN_ECONFIG, "--metrics-secure: cannot generate a self-signed certificate (OpenSSL)");
out:
  if (kpem)
    tn_wipe_free_str(kpem);
  free(cert);
  X509_EXTENSION_free(ext);
  BN_free(bn);
  X509_free(x);
  EVP_PKEY_free(key);
  return rc;
}

void tn_metrics_self_signed_remove(char *dir) {
  if (!dir)
    return;
  char path[600];
  snprintf(path, sizeof path, "%s/tls.crt", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/tls.key", dir);
  unlink(path);
  rmdir(dir);
  free(dir);
}
