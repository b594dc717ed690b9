/* readapi.c - the read API (see readapi.h and docs/read-api.md).
 *
 * Threads. Requests run on the HTTP server's service threads (`workers`, one libwebsockets
 * context each, all on one port). Each worker has caches of its own (authentication,
 * authorization, the per-tenant views), touched only by its thread, so the hot path takes no lock
 * of ours; the price is that a token is reviewed once per worker that sees it. The sorted list
 * snapshot is shared under snap_mu (a list holds it while it builds its page). The rate limiter,
 * the metrics and the informers' stores are thread-safe. A TokenReview or SubjectAccessReview
 * that is not cached is a blocking call to the API server on that worker's thread: the caches
 * keep that to once per token (and per verb and tenant) every ttl. The certificate reloader is a
 * thread of its own that only calls tn_httpserver_set_certificate. */
#define _GNU_SOURCE /* strcasestr */
#include "api/readapi.h"
#include "api/console.h"
#include "api/trail.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "api/limiter.h"
#include "converge/admission.h"
#include "kube/client.h"
#include "kube/informer.h"
#include "kube/review.h"
#include "kube/store.h"
#include "runtime/httpserver.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "util/clock.h"
#include "util/wipe.h"

#define API_PREFIX "/api/v1/tenants"
#define GROUP "tenancy.dev"
#define VERSION "v1alpha1"
#define TOKEN_VERSION 1
#define EVENTS_INDEX "tenant"

/* ---- caches of authentication and authorization answers --------------------------------------- */

/* Direct-mapped: a key's slot is fixed by its hash, a newer key in the same slot replaces the
 * older one. Bounded memory, O(1), no eviction bookkeeping. Keys are SHA-256 digests: of the
 * token (never the token itself), or of the token digest with the verb and the tenant. */
struct user_slot {
  unsigned char key[32];
  bool used;
  double expires;
  bool authenticated;
  json_t *user; /* TokenReview status.user when authenticated */
};
struct sar_slot {
  unsigned char key[32];
  bool used;
  double expires;
  bool allowed;
};

/* ---- the list snapshot --------------------------------------------------------------------- */

/* One Tenant as the list needs it: the cached object (a reference) and its filter fields. */
struct entry {
  struct tn_store_obj *obj;
  char *name, *plan, *region, *state, *isolation;
  char *search; /* lower-case name, displayName and external id values, '\n' between */
  char *groups; /* '\n' + each bound group + '\n' */
};

/* What a GET of one tenant needs of it besides its JSON text, kept per cached object (a slot is
 * recomputed when the tenant changed, i.e. its cached object is another one): VIEW_WAYS-way set
 * associative by the name, auth_cache_size sets (4096 * 8 slots: 10,000 tenants read at random
 * all stay cached; direct-mapped with 4096 slots, most lookups decoded their tenant again). */
#define VIEW_WAYS 8
struct view_slot {
  struct tn_store_obj *obj; /* a reference */
  char *groups;             /* as struct entry's */
  bool limited;
  struct tn_limit_rule rule; /* the "get" endpoint's */
};

struct snapshot {
  struct entry *v;
  size_t n;
  char *rv; /* the informer's resourceVersion it was built at */
};

/* One worker's caches (see Threads above). */
struct wcache {
  /* SHA-256 of the hot path on an algorithm fetched once and a context reused: EVP_Digest with
   * EVP_sha256() fetches the algorithm from the provider store and allocates a context on every
   * call (OpenSSL 3), a few µs per digest and a lock the workers would share. */
  EVP_MD_CTX *md_ctx;
  /* The metric series last used (series never move nor go away): tn_metric_with takes the
   * registry's one lock, shared by every thread of the operator. */
  struct mslot {
    char endpoint[16];
    int code;
    struct tn_series *requests, *latency;
  } mcache[16];
  struct user_slot *users;
  struct sar_slot *sars;
  struct view_slot *views; /* n_slots * VIEW_WAYS */
  unsigned victim;
};

struct tn_readapi {
  struct tn_httpserver *srv;
  EVP_MD *sha256_md; /* fetched once */
  int n_workers;
  struct wcache wc[TN_HTTP_MAX_WORKERS];
  pthread_mutex_t snap_mu; /* snap */
  struct tn_kube *kube;
  struct tn_informer *tenants;
  struct tn_informer *events; /* owned; NULL: no events cache */
  struct tn_trail *trail;     /* owned; NULL: no --pg-dsn (history and audit answer 501) */
  struct tn_limiter *limiter;
  struct tn_limit_rule review_rule; /* TokenReviews of tokens not cached, all callers together */
  double ttl;
  size_t n_slots;
  struct snapshot snap;
  char *cert_file, *key_file;
  double reload_s;
  pthread_t reloader;
  bool reloader_started;
  pthread_mutex_t mu; /* stop flag of the reloader */
  pthread_cond_t cv;
  bool stopping;
  struct tn_metric *m_requests, *m_latency;
};

/* ---- small helpers ------------------------------------------------------------------------- */

static const char *str_at(const json_t *obj, const char *a, const char *b, const char *c) {
  const json_t *v = json_object_get(obj, a);
  if (b)
    v = json_object_get(v, b);
  if (c)
    v = json_object_get(v, c);
  return json_string_value(v);
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

static void sha256(const void *data, size_t n, unsigned char out[32]) {
  unsigned int len = 32;
  EVP_Digest(data, n, out, &len, EVP_sha256(), NULL);
}

/* FNV-1a: a slot index, where a collision only costs a recomputation. */
static size_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return (size_t)h;
}

static bool dns_label(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0 && i + 1 < n);
    if (!ok)
      return false;
  }
  return true;
}

/* ---- problem details (RFC 9457) ------------------------------------------------------------ */

/* Answers a problem (tn_http_problem): type https://tenancy.dev/problems/<slug>, the status's
 * title, the detail, the request's path as the instance. */
#define problem(req, resp, ...) tn_http_problem((resp), (req)->path, __VA_ARGS__)

static int send_json(struct tn_http_response *resp, json_t *obj) {
  if (!obj)
    return -ENOMEM;
  char *s = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  if (!s)
    return -ENOMEM;
  snprintf(resp->content_type, sizeof resp->content_type, "application/json");
  int rc = tn_buf_appends(&resp->body, s);
  free(s);
  return rc;
}

/* The Tenant as served: apiVersion, kind, metadata without managedFields, spec, status. */
static json_t *shape_tenant(const json_t *t) {
  json_t *meta = json_deep_copy(json_object_get(t, "metadata"));
  if (meta)
    json_object_del(meta, "managedFields");
  json_t *o = json_object();
  if (!o) {
    json_decref(meta);
    return NULL;
  }
  json_object_set_new(o, "apiVersion", json_string(GROUP "/" VERSION));
  json_object_set_new(o, "kind", json_string("Tenant"));
  json_object_set_new(o, "metadata", meta ? meta : json_object());
  json_t *spec = json_object_get(t, "spec"), *status = json_object_get(t, "status");
  json_object_set_new(o, "spec", spec ? json_deep_copy(spec) : json_object());
  if (status)
    json_object_set_new(o, "status", json_deep_copy(status));
  return o;
}

/* ---- continue tokens ---------------------------------------------------------------------- */

static char *b64url_encode(const unsigned char *in, size_t n) {
  size_t cap = 4 * ((n + 2) / 3) + 1;
  char *out = malloc(cap);
  if (!out)
    return NULL;
  int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
  while (len > 0 && out[len - 1] == '=')
    len--;
  out[len] = '\0';
  for (char *p = out; *p; p++)
    *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
  return out;
}

static unsigned char *b64url_decode(const char *in, size_t *out_len) {
  size_t n = strlen(in);
  if (n > 4096)
    return NULL;
  char *s = malloc(n + 4);
  if (!s)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      free(s);
      return NULL;
    }
    s[i] = c;
  }
  size_t pad = (4 - n % 4) % 4;
  if (pad == 3) {
    free(s);
    return NULL;
  }
  for (size_t i = 0; i < pad; i++)
    s[n + i] = '=';
  s[n + pad] = '\0';
  unsigned char *out = malloc(n + 4);
  if (!out) {
    free(s);
    return NULL;
  }
  int len = EVP_DecodeBlock(out, (unsigned char *)s, (int)(n + pad));
  free(s);
  if (len < 0) {
    free(out);
    return NULL;
  }
  *out_len = (size_t)len - pad; /* DecodeBlock counts the padding as zero bytes */
  out[*out_len] = '\0';
  return out;
}

char *tn_readapi_token_encode(const char *after, const char *fp) {
  json_t *t = json_pack("{s:i, s:s, s:s}", "v", TOKEN_VERSION, "after", after, "f", fp);
  if (!t)
    return NULL;
  char *s = json_dumps(t, JSON_COMPACT);
  json_decref(t);
  if (!s)
    return NULL;
  char *out = b64url_encode((const unsigned char *)s, strlen(s));
  free(s);
  return out;
}

int tn_readapi_token_decode(const char *token, const char *fp, char **after, struct tn_error *err) {
  *after = NULL;
  size_t n = 0;
  unsigned char *raw = b64url_decode(token, &n);
  if (!raw)
    return tn_error_set(err, TN_EINVALID, "the continue token is not one this API issued");
  json_t *t = json_loadb((const char *)raw, n, 0, NULL);
  free(raw);
  const char *a = json_string_value(json_object_get(t, "after"));
  const char *f = json_string_value(json_object_get(t, "f"));
  json_int_t v = json_integer_value(json_object_get(t, "v"));
  int rc = 0;
  if (!t || !a || !f)
    rc = tn_error_set(err, TN_EINVALID, "the continue token is not one this API issued");
  else if (v != TOKEN_VERSION)
    rc = tn_error_set(err, TN_EINVALID, "the continue token has version %lld; this API issues version %d",
                      (long long)v, TOKEN_VERSION);
  else if (strcmp(f, fp) != 0)
    rc =
        tn_error_set(err, TN_EINVALID,
                     "the continue token was issued for other filters: repeat the first page's plan, region, "
                     "state, isolation and q with it");
  else if (!(*after = strdup(a)))
    rc = tn_error_set(err, -ENOMEM, "out of memory");
  json_decref(t);
  return rc;
}

/* The filters' fingerprint: 16 hex digits of SHA-256 over them. */
static void filter_fp(const struct tn_readapi_filter *f, char out[17]) {
  char buf[2048];
  int n = snprintf(buf, sizeof buf, "%s\x1f%s\x1f%s\x1f%s\x1f%s", f->plan ? f->plan : "",
                   f->region ? f->region : "", f->state ? f->state : "", f->isolation ? f->isolation : "",
                   f->q ? f->q : "");
  unsigned char d[32];
  sha256(buf, n < 0 ? 0 : (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, d);
  for (int i = 0; i < 8; i++)
    snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- entries and filters ------------------------------------------------------------------- */

static void lower(char *s) {
  for (; *s; s++)
    if (*s >= 'A' && *s <= 'Z')
      *s = (char)(*s - 'A' + 'a');
}

static void entry_clear(struct entry *e) {
  tn_store_obj_unref(e->obj);
  free(e->name);
  free(e->plan);
  free(e->region);
  free(e->state);
  free(e->isolation);
  free(e->search);
  free(e->groups);
  memset(e, 0, sizeof *e);
}

static int entry_fill(struct entry *e, const json_t *t) {
  const char *state = str_at(t, "status", "state", NULL);
  if (!state || !*state)
    state = str_at(t, "spec", "state", NULL);
  const char *iso = str_at(t, "status", "placement", "isolation");
  if (!iso || !*iso)
    iso = str_at(t, "spec", "isolation", NULL);
  e->name = dup_or_empty(str_at(t, "metadata", "name", NULL));
  e->plan = dup_or_empty(str_at(t, "spec", "plan", NULL));
  e->region = dup_or_empty(str_at(t, "status", "placement", "region"));
  e->state = dup_or_empty(state);
  e->isolation = dup_or_empty(iso);
  struct tn_buf b;
  tn_buf_init(&b, 1u << 20);
  int rc = tn_buf_printf(&b, "%s\n%s", e->name ? e->name : "", str_at(t, "spec", "displayName", NULL) ?: "");
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(json_object_get(t, "spec"), "externalIds"), k, v) {
    if (json_is_string(v))
      rc = rc ? rc : tn_buf_printf(&b, "\n%s", json_string_value(v));
  }
  e->search = rc ? NULL : strndup(b.data ? b.data : "", b.len);
  tn_buf_reset(&b);
  rc = tn_buf_appends(&b, "\n");
  size_t i;
  json_array_foreach(
      json_object_get(json_object_get(json_object_get(t, "spec"), "identity"), "groupBindings"), i, v) {
    const char *g = json_string_value(json_object_get(v, "group"));
    if (g && *g && !strchr(g, '\n'))
      rc = rc ? rc : tn_buf_printf(&b, "%s\n", g);
  }
  e->groups = rc ? NULL : strndup(b.data ? b.data : "", b.len);
  tn_buf_cleanup(&b);
  if (!e->name || !e->plan || !e->region || !e->state || !e->isolation || !e->search || !e->groups)
    return -ENOMEM;
  lower(e->search);
  return 0;
}

static bool eq_filter(const char *want, const char *have) {
  return !want || !*want || strcmp(want, have) == 0;
}

/* q_lower: the lower-cased q. */
static bool entry_matches(const struct entry *e, const struct tn_readapi_filter *f, const char *q_lower) {
  return eq_filter(f->plan, e->plan) && eq_filter(f->region, e->region) && eq_filter(f->state, e->state) &&
         eq_filter(f->isolation, e->isolation) && (!q_lower || !*q_lower || strstr(e->search, q_lower));
}

static bool groups_bound(const char *bound, const json_t *groups) {
  size_t i;
  json_t *g;
  json_array_foreach(groups, i, g) {
    const char *s = json_string_value(g);
    if (!s || !*s || strchr(s, '\n'))
      continue;
    size_t n = strlen(s);
    for (const char *p = bound; (p = strstr(p, s)) != NULL; p++)
      if (p > bound && p[-1] == '\n' && p[n] == '\n')
        return true;
  }
  return false;
}

bool tn_readapi_matches(const json_t *tenant, const struct tn_readapi_filter *f) {
  struct entry e = {0};
  bool ok = false;
  if (entry_fill(&e, tenant) == 0) {
    char *q = f->q ? strdup(f->q) : NULL;
    if (!f->q || q) {
      if (q)
        lower(q);
      ok = entry_matches(&e, f, q);
    }
    free(q);
  }
  entry_clear(&e);
  return ok;
}

bool tn_readapi_group_bound(const json_t *tenant, const json_t *groups) {
  struct entry e = {0};
  bool ok = entry_fill(&e, tenant) == 0 && groups_bound(e.groups, groups);
  entry_clear(&e);
  return ok;
}

/* ---- the snapshot -------------------------------------------------------------------------- */

struct collect {
  struct tn_store_obj **v;
  size_t n, cap;
  bool oom;
};

static int collect_obj(void *ud, struct tn_store_obj *o) {
  struct collect *c = ud;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 1024;
    struct tn_store_obj **v = realloc(c->v, cap * sizeof *v);
    if (!v) {
      c->oom = true;
      return 1;
    }
    c->v = v;
    c->cap = cap;
  }
  c->v[c->n++] = tn_store_obj_ref(o);
  return 0;
}

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* The index of the first entry whose name is > after (>= when inclusive). */
static size_t snap_upper(const struct snapshot *s, const char *after, bool inclusive) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(s->v[mid].name, after);
    if (c < 0 || (c == 0 && !inclusive))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void snap_free(struct snapshot *s) {
  for (size_t i = 0; i < s->n; i++)
    entry_clear(&s->v[i]);
  free(s->v);
  free(s->rv);
  memset(s, 0, sizeof *s);
}

/* Brings the snapshot up to the informer's cache when its resourceVersion moved. Unchanged objects
 * (the same cached object) keep their entry; the others are decoded. */
static int snap_refresh(struct tn_readapi *api) {
  char *rv = tn_informer_resource_version(api->tenants);
  if (rv && api->snap.rv && strcmp(rv, api->snap.rv) == 0 && api->snap.v) {
    free(rv);
    return 0;
  }
  struct collect c = {0};
  (void)tn_store_foreach(tn_informer_store(api->tenants), collect_obj, &c);
  struct snapshot ns = {.v = calloc(c.n ? c.n : 1, sizeof(struct entry)), .rv = rv};
  int rc = c.oom || !ns.v ? -ENOMEM : 0;
  for (size_t i = 0; i < c.n; i++) {
    struct tn_store_obj *o = c.v[i];
    c.v[i] = NULL;
    if (rc) {
      tn_store_obj_unref(o);
      continue;
    }
    const char *key = tn_store_obj_key(o);
    size_t j = snap_upper(&api->snap, key, true);
    struct entry *e = &ns.v[ns.n++];
    if (j < api->snap.n && api->snap.v[j].obj == o && strcmp(api->snap.v[j].name, key) == 0) {
      *e = api->snap.v[j]; /* unchanged: move the entry over */
      memset(&api->snap.v[j], 0, sizeof api->snap.v[j]);
      api->snap.v[j].name = strdup(key); /* keeps the old array sorted for later searches */
      tn_store_obj_unref(o);
      if (!api->snap.v[j].name)
        rc = -ENOMEM;
      continue;
    }
    e->obj = o;
    json_t *t = tn_store_obj_decode(o);
    rc = t ? entry_fill(e, t) : -ENOMEM;
    json_decref(t);
  }
  free(c.v);
  if (rc) {
    snap_free(&ns);
    return rc;
  }
  qsort(ns.v, ns.n, sizeof *ns.v, entry_cmp);
  snap_free(&api->snap);
  api->snap = ns;
  return 0;
}

/* ---- authentication and authorization ------------------------------------------------------ */

/* sha256() on the worker's reused context (same digest). */
static void wsha256(const struct tn_readapi *api, struct wcache *wc, const void *data, size_t n,
                    unsigned char out[32]) {
  unsigned int len = 32;
  if (!wc->md_ctx || EVP_DigestInit_ex2(wc->md_ctx, api->sha256_md, NULL) != 1 ||
      EVP_DigestUpdate(wc->md_ctx, data, n) != 1 || EVP_DigestFinal_ex(wc->md_ctx, out, &len) != 1)
    sha256(data, n, out);
}

/* Who asks: 0 with *user (borrowed from the cache) set, or an HTTP status (401, 503) to answer. */
static int authenticate(struct tn_readapi *api, struct wcache *wc, const char *authorization,
                        unsigned char tok_hash[32], const json_t **user, char *why, size_t why_n) {
  *user = NULL;
  const char *p = authorization;
  if (strncasecmp(p, "Bearer ", 7) != 0) {
    snprintf(why, why_n, "send a bearer token: Authorization: Bearer <token> (a Kubernetes token)");
    return 401;
  }
  p += 7;
  while (*p == ' ')
    p++;
  size_t n = strlen(p);
  while (n && p[n - 1] == ' ')
    n--;
  if (n == 0 || n > 16384) {
    snprintf(why, why_n, "the bearer token is empty or too long");
    return 401;
  }
  wsha256(api, wc, p, n, tok_hash);
  double now = tn_mono_now();
  struct user_slot *s =
      &wc->users[(((size_t)tok_hash[0] << 8) | tok_hash[1] | ((size_t)tok_hash[2] << 16)) % api->n_slots];
  if (!(s->used && s->expires > now && memcmp(s->key, tok_hash, 32) == 0)) {
    /* A token not seen lately costs a TokenReview on this thread: bound how many a second, so
     * a flood of made-up tokens cannot keep the thread waiting on the API server. */
    struct tn_limit_decision d;
    tn_limiter_take(api->limiter, "tokenreview", &api->review_rule, now, &d);
    if (!d.allowed) {
      snprintf(why, why_n, "too many new tokens at once; retry in %.0f s", ceil(d.retry_after_s));
      return 429;
    }
    json_t *reviewed = NULL;
    struct tn_error err;
    tn_error_clear(&err);
    if (tn_token_review(api->kube, p, n, &reviewed, &err)) {
      tn_log(TN_LOG_WARN, NULL, "read API: TokenReview failed: %s", err.message);
      snprintf(why, why_n, "the token could not be checked (TokenReview failed); retry");
      return 503;
    }
    json_decref(s->user);
    memcpy(s->key, tok_hash, 32);
    s->used = true;
    s->expires = now + api->ttl;
    s->user = reviewed; /* NULL: not authenticated */
    s->authenticated = reviewed != NULL;
  }
  if (!s->authenticated) {
    snprintf(why, why_n, "the bearer token is not valid (TokenReview did not authenticate it)");
    return 401;
  }
  *user = s->user;
  return 0;
}

/* Whether the SubjectAccessReview allows user to verb tenants (name "" = every tenant). 0 = no,
 * 1 = yes, or an HTTP status (503) when the review failed. */
static int authorize(struct tn_readapi *api, struct wcache *wc, const unsigned char tok_hash[32],
                     const json_t *user, const char *verb, const char *name) {
  unsigned char key[32];
  char buf[32 + 16 + 256];
  size_t vn = strlen(verb), nn = strlen(name);
  if (vn > 15 || nn > 253)
    return 0;
  memcpy(buf, tok_hash, 32);
  memcpy(buf + 32, verb, vn + 1);
  memcpy(buf + 32 + vn + 1, name, nn);
  wsha256(api, wc, buf, 32 + vn + 1 + nn, key);
  double now = tn_mono_now();
  struct sar_slot *s = &wc->sars[(((size_t)key[0] << 8) | key[1] | ((size_t)key[2] << 16)) % api->n_slots];
  if (s->used && s->expires > now && memcmp(s->key, key, 32) == 0)
    return s->allowed;
  json_t *attrs = json_pack("{s:s, s:s, s:s, s:s}", "group", GROUP, "version", VERSION, "resource", "tenants",
                            "verb", verb);
  if (attrs && *name)
    json_object_set_new(attrs, "name", json_string(name));
  if (!attrs)
    return 503;
  bool allowed = false;
  struct tn_error err;
  tn_error_clear(&err);
  if (tn_access_review(api->kube, user, "resourceAttributes", attrs, &allowed, &err)) {
    tn_log(TN_LOG_WARN, NULL, "read API: SubjectAccessReview failed: %s", err.message);
    return 503;
  }
  memcpy(s->key, key, 32);
  s->used = true;
  s->expires = now + api->ttl;
  s->allowed = allowed;
  return allowed;
}

/* ---- rate limits --------------------------------------------------------------------------- */

/* Takes a token from the tenant's bucket for endpoint. 0: go on (headers set when limited);
 * 429: answered. */
static int rate_limit_rule(struct tn_readapi *api, const struct tn_http_request *req,
                           struct tn_http_response *resp, const struct tn_limit_rule *rulep, const char *id,
                           const char *endpoint) {
  if (!rulep)
    return 0; /* unlimited */
  struct tn_limit_rule rule = *rulep;
  char key[384];
  snprintf(key, sizeof key, "tenant/%s/%s", id, endpoint);
  struct tn_limit_decision d;
  tn_limiter_take(api->limiter, key, &rule, tn_mono_now(), &d);
  char rl[160], pol[160];
  if (tn_limit_headers(&rule, &d, "tenant", rl, sizeof rl, pol, sizeof pol) == 0) {
    (void)tn_http_response_header(resp, "RateLimit-Policy", pol);
    (void)tn_http_response_header(resp, "RateLimit", rl);
  }
  if (d.allowed)
    return 0;
  char ra[32];
  double secs = ceil(d.retry_after_s);
  snprintf(ra, sizeof ra, "%.0f", secs < 1 ? 1.0 : secs);
  (void)tn_http_response_header(resp, "Retry-After", ra);
  int hdrs = resp->n_headers;
  (void)problem(req, resp, 429, "rate-limited",
                "tenant %s is over its %s rate limit (%.3g requests/s, burst %.0f); retry after %s s", id,
                endpoint, rule.rate_per_s, rule.burst, ra);
  resp->n_headers = hdrs;
  return 429;
}

static int rate_limit(struct tn_readapi *api, const struct tn_http_request *req,
                      struct tn_http_response *resp, const json_t *tenant, const char *id,
                      const char *endpoint) {
  struct tn_limit_rule rule;
  if (tn_limit_rule_for_tenant(tenant, endpoint, &rule) != 0)
    return 0; /* unlimited */
  return rate_limit_rule(api, req, resp, &rule, id, endpoint);
}

/* The view of cached object o (named id), recomputed when o is not the one the slot holds. NULL
 * when out of memory. */
static const struct view_slot *view_of(struct tn_readapi *api, struct wcache *wc, const char *id,
                                       struct tn_store_obj *o) {
  struct view_slot *set = &wc->views[(fnv1a(id) % api->n_slots) * VIEW_WAYS], *v = NULL;
  for (int i = 0; i < VIEW_WAYS; i++)
    if (set[i].obj == o)
      return &set[i];
  for (int i = 0; i < VIEW_WAYS && !v; i++)
    if (!set[i].obj)
      v = &set[i];
  if (!v) /* a full set: replace one way, in turn */
    v = &set[wc->victim++ % VIEW_WAYS];
  json_t *t = tn_store_obj_decode(o);
  struct entry e = {0};
  if (!t || entry_fill(&e, t) != 0) {
    json_decref(t);
    entry_clear(&e);
    return NULL;
  }
  tn_store_obj_unref(v->obj);
  free(v->groups);
  v->obj = tn_store_obj_ref(o);
  v->groups = e.groups;
  e.groups = NULL;
  v->limited = tn_limit_rule_for_tenant(t, "get", &v->rule) == 0;
  entry_clear(&e);
  json_decref(t);
  return v;
}

/* ---- handlers ------------------------------------------------------------------------------ */

struct call {
  struct tn_readapi *api;
  struct wcache *wc; /* the worker's */
  const struct tn_http_request *req;
  struct tn_http_response *resp;
  unsigned char tok[32];
  const json_t *user;
};

/* Whether the caller may read tenant t (named id): the SAR for get on it, else one of the
 * caller's groups bound in the tenant. 1 yes, 0 no, or 503. */
static int may_get(struct call *c, const char *id, const json_t *t) {
  /* get on every tenant (no resourceName) implies get on this one: one cached answer covers all
   * tenants for a caller with a broad grant; the named review is for grants by resourceNames */
  int a = authorize(c->api, c->wc, c->tok, c->user, "get", "");
  if (a == 0)
    a = authorize(c->api, c->wc, c->tok, c->user, "get", id);
  if (a != 0)
    return a;
  return t && tn_readapi_group_bound(t, json_object_get(c->user, "groups")) ? 1 : 0;
}

static int forbidden(struct call *c, const char *what) {
  return problem(c->req, c->resp, 403, "forbidden", "%s may not %s",
                 str_at(c->user, "username", NULL, NULL) ?: "", what);
}

/* GET /api/v1/tenants/{id}: the cached object is the Tenant as served (metadata.managedFields are
 * dropped when it is cached), so its JSON text goes out as it is. */
static int serve_get(struct call *c, const char *id, const char *what) {
  struct tn_store_obj *o = tn_store_get_obj(tn_informer_store(c->api->tenants), id);
  const struct view_slot *v = o ? view_of(c->api, c->wc, id, o) : NULL;
  int rc;
  if (o && !v) {
    tn_store_obj_unref(o);
    return -ENOMEM;
  }
  int a = authorize(c->api, c->wc, c->tok, c->user, "get", "");
  if (a == 0)
    a = authorize(c->api, c->wc, c->tok, c->user, "get", id);
  if (a == 0 && v && groups_bound(v->groups, json_object_get(c->user, "groups")))
    a = 1;
  if (a == 503)
    rc = problem(c->req, c->resp, 503, "authorization-unavailable", "the access check failed; retry");
  else if (a == 0)
    rc = forbidden(c, what);
  else if (!o)
    rc = problem(c->req, c->resp, 404, "not-found", "no tenant %s", id);
  else if (rate_limit_rule(c->api, c->req, c->resp, v->limited ? &v->rule : NULL, id, "get") == 429)
    rc = 0;
  else {
    size_t len = 0;
    const char *text = tn_store_obj_json(o, &len);
    snprintf(c->resp->content_type, sizeof c->resp->content_type, "application/json");
    rc = text ? tn_buf_append(&c->resp->body, text, len) : -ENOMEM;
  }
  tn_store_obj_unref(o);
  return rc;
}

/* The tenant id's endpoints: "" (the tenant), "placement", "events". */
static int serve_one(struct call *c, const char *id, const char *sub) {
  char what[400];
  snprintf(what, sizeof what, "get tenant %s", id);
  if (!dns_label(id))
    return problem(c->req, c->resp, 404, "not-found", "no tenant \"%s\" (a tenant id is a DNS label)", id);
  if (!*sub) /* the hot path: the cached JSON text as it is, decoded only when it changed */
    return serve_get(c, id, what);
  json_t *t = tn_informer_get(c->api->tenants, id);
  int a = may_get(c, id, t);
  int rc;
  if (a == 503)
    rc = problem(c->req, c->resp, 503, "authorization-unavailable", "the access check failed; retry");
  else if (a == 0)
    rc = forbidden(c, what);
  else if (!t)
    rc = problem(c->req, c->resp, 404, "not-found", "no tenant %s", id);
  else {
    const char *endpoint = !*sub ? "get" : sub;
    if (rate_limit(c->api, c->req, c->resp, t, id, endpoint) == 429) {
      json_decref(t);
      return 0;
    }
    if (!*sub) {
      rc = send_json(c->resp, shape_tenant(t));
    } else if (strcmp(sub, "history") == 0 || strcmp(sub, "audit") == 0) { /* PostgreSQL: trail.c */
      rc = tn_trail_serve(c->api->trail, c->req, c->resp, id, str_at(t, "metadata", "uid", NULL), sub);
    } else if (strcmp(sub, "placement") == 0) {
      json_t *st = json_object_get(t, "status");
      json_t *placed = NULL;
      size_t i;
      json_t *cond;
      json_array_foreach(json_object_get(st, "conditions"), i, cond) {
        if (json_is_string(json_object_get(cond, "type")) &&
            strcmp(json_string_value(json_object_get(cond, "type")), "Placed") == 0)
          placed = cond;
      }
      json_t *pl = json_object_get(st, "placement");
      json_t *ns = json_object_get(st, "namespaces");
      json_t *res =
          json_pack("{s:s, s:s, s:s, s:O, s:O, s:o, s:O}", "apiVersion", GROUP "/" VERSION, "kind",
                    "TenantPlacement", "tenant", id, "placement", pl ? pl : json_null(), "residency",
                    json_object_get(json_object_get(t, "spec"), "residency") ?: json_null(), "namespaces",
                    ns ? json_deep_copy(ns) : json_array(), "condition", placed ? placed : json_null());
      rc = send_json(c->resp, res);
    } else { /* events */
      if (!c->api->events) {
        rc = problem(c->req, c->resp, 501, "events-not-cached",
                     "this operator keeps no cache of Events (--api-events-namespace=-)");
      } else {
        struct tn_error err;
        tn_error_clear(&err);
        json_t *evs = tn_informer_list_by_index(c->api->events, EVENTS_INDEX, id, &err);
        json_t *res = evs ? json_pack("{s:s, s:s, s:{}, s:o}", "apiVersion", "v1", "kind", "EventList",
                                      "metadata", "items", evs)
                          : NULL;
        rc = send_json(c->resp, res);
      }
    }
  }
  json_decref(t);
  return rc;
}

static int serve_by_external_id(struct call *c, const char *system, const char *xid) {
  char key[1024];
  snprintf(key, sizeof key, "%s=%s", system, xid);
  struct tn_error err;
  tn_error_clear(&err);
  json_t *ts = tn_informer_list_by_index(c->api->tenants, TN_INDEX_EXTERNAL_ID, key, &err);
  if (!ts)
    return problem(c->req, c->resp, 503, "cache-unavailable", "the external id index is not available");
  json_t *t = json_array_size(ts) ? json_incref(json_array_get(ts, 0)) : NULL;
  json_decref(ts);
  int rc;
  if (!t) {
    int a = authorize(c->api, c->wc, c->tok, c->user, "list", "");
    rc = a == 503
             ? problem(c->req, c->resp, 503, "authorization-unavailable", "the access check failed; retry")
         : a == 1 ? problem(c->req, c->resp, 404, "not-found", "no tenant has external id %s=%s", system, xid)
                  : forbidden(c, "look tenants up by external id");
    return rc;
  }
  const char *id = str_at(t, "metadata", "name", NULL) ?: "";
  char idc[256];
  snprintf(idc, sizeof idc, "%s", id);
  int a = may_get(c, idc, t);
  if (a == 503)
    rc = problem(c->req, c->resp, 503, "authorization-unavailable", "the access check failed; retry");
  else if (a == 0)
    rc = forbidden(c, "look tenants up by external id");
  else if (rate_limit(c->api, c->req, c->resp, t, idc, "byExternalId") == 429)
    rc = 0;
  else
    rc = send_json(c->resp, shape_tenant(t));
  json_decref(t);
  return rc;
}

static int serve_list(struct call *c) {
  const struct tn_http_request *req = c->req;
  struct tn_readapi_filter f = {.plan = tn_http_query(req, "plan"),
                                .region = tn_http_query(req, "region"),
                                .state = tn_http_query(req, "state"),
                                .isolation = tn_http_query(req, "isolation"),
                                .q = tn_http_query(req, "q")};
  const char *ls = tn_http_query(req, "limit");
  long limit = TN_READAPI_DEFAULT_LIMIT;
  if (ls && *ls) {
    char *end;
    errno = 0;
    limit = strtol(ls, &end, 10);
    if (errno || *end || limit < 1 || limit > TN_READAPI_MAX_LIMIT)
      return problem(req, c->resp, 400, "invalid-parameter", "limit must be an integer from 1 to %d",
                     TN_READAPI_MAX_LIMIT);
  }
  if (f.q && strlen(f.q) > 256)
    return problem(req, c->resp, 400, "invalid-parameter", "q is longer than 256 characters");
  const char *counts = tn_http_query(req, "counts"); /* ?counts=state: the directory's counts */
  if (counts && strcmp(counts, "state") != 0)
    return problem(req, c->resp, 400, "invalid-parameter", "counts takes one value: state");
  char fp[17];
  filter_fp(&f, fp);
  char *after = NULL;
  const char *cont = tn_http_query(req, "continue");
  if (cont && *cont) {
    struct tn_error err;
    tn_error_clear(&err);
    if (tn_readapi_token_decode(cont, fp, &after, &err))
      return problem(req, c->resp, 400, "invalid-continue", "%s", err.message);
  }
  int a = authorize(c->api, c->wc, c->tok, c->user, "list", "");
  if (a == 503) {
    free(after);
    return problem(req, c->resp, 503, "authorization-unavailable", "the access check failed; retry");
  }
  bool restricted = a == 0; /* only the tenants one of the caller's groups is bound in */
  json_t *groups = json_object_get(c->user, "groups");
  /* the snapshot is shared by the workers: held until the page and its metadata are built */
  pthread_mutex_lock(&c->api->snap_mu);
  if (snap_refresh(c->api)) {
    pthread_mutex_unlock(&c->api->snap_mu);
    free(after);
    return -ENOMEM;
  }
  const struct snapshot *s = &c->api->snap;
  if (restricted) {
    bool any = false;
    for (size_t i = 0; i < s->n && !any; i++)
      any = groups_bound(s->v[i].groups, groups);
    if (!any) {
      pthread_mutex_unlock(&c->api->snap_mu);
      free(after);
      return forbidden(c, "list tenants");
    }
  }
  char *q = f.q ? strdup(f.q) : NULL;
  if (q)
    lower(q);
  size_t i = after ? snap_upper(s, after, false) : 0;
  free(after);
  /* The items are the cached JSON texts as they are (each is the Tenant as served: see
   * serve_get); only the list's own metadata is built. */
  struct tn_buf *b = &c->resp->body;
  const struct entry *last = NULL;
  bool more = false;
  long count = 0;
  int rc = tn_buf_appends(b, "[");
  for (; i < s->n && rc == 0; i++) {
    const struct entry *e = &s->v[i];
    if (!entry_matches(e, &f, q) || (restricted && !groups_bound(e->groups, groups)))
      continue;
    if (count == limit) {
      more = true;
      break;
    }
    size_t len = 0;
    const char *text = tn_store_obj_json(e->obj, &len);
    if (!text) {
      rc = -ENOMEM;
      break;
    }
    if (count && (rc = tn_buf_appends(b, ",")))
      break;
    rc = tn_buf_append(b, text, len);
    count++;
    last = e;
  }
  json_t *by_state = NULL;
  if (rc == 0 && counts) { /* every match of the other filters, by state, in the same snapshot */
    struct tn_readapi_filter f2 = f;
    f2.state = NULL;
    by_state = json_object();
    for (size_t k = 0; by_state && k < s->n; k++) {
      const struct entry *e = &s->v[k];
      if (!entry_matches(e, &f2, q) || (restricted && !groups_bound(e->groups, groups)))
        continue;
      json_t *n = json_object_get(by_state, e->state ? e->state : "");
      if (n)
        json_integer_set(n, json_integer_value(n) + 1);
      else if (json_object_set_new(by_state, e->state ? e->state : "", json_integer(1)))
        rc = -ENOMEM;
    }
    if (!by_state)
      rc = -ENOMEM;
  }
  free(q);
  if (rc == 0)
    rc = tn_buf_appends(b, "]");
  json_t *meta = rc ? NULL : json_pack("{s:s}", "resourceVersion", s->rv ? s->rv : "");
  if (meta && by_state && json_object_set(meta, "countsByState", by_state)) {
    json_decref(meta);
    meta = NULL;
  }
  json_decref(by_state);
  if (meta && more && last) {
    char *tok = tn_readapi_token_encode(last->name, fp);
    if (!tok || json_object_set_new(meta, "continue", json_string(tok))) {
      json_decref(meta);
      meta = NULL;
    }
    free(tok);
  }
  pthread_mutex_unlock(&c->api->snap_mu);
  if (rc)
    return rc;
  char *ms = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
  json_decref(meta);
  if (!ms)
    return -ENOMEM;
  /* {"apiVersion":...,"kind":"TenantList","metadata":{...},"items":[...]} around the items */
  struct tn_buf out;
  tn_buf_init(&out, TN_HTTP_MAX_RESPONSE);
  rc = tn_buf_printf(
      &out,
      "{\"apiVersion\":\"" GROUP "/" VERSION "\",\"kind\":\"TenantList\",\"metadata\":%s,\"items\":", ms);
  free(ms);
  if (rc == 0)
    rc = tn_buf_append(&out, b->data, b->len);
  if (rc == 0)
    rc = tn_buf_appends(&out, "}");
  if (rc) {
    tn_buf_cleanup(&out);
    return rc;
  }
  tn_buf_cleanup(b);
  *b = out;
  snprintf(c->resp->content_type, sizeof c->resp->content_type, "application/json");
  return 0;
}

static int handle(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  struct tn_readapi *api = ud;
  double t0 = tn_mono_now();
  int wk = req->worker >= 0 && req->worker < api->n_workers ? req->worker : 0;
  struct call c = {.api = api, .wc = &api->wc[wk], .req = req, .resp = resp};
  const char *path = req->path;
  const char *endpoint = "unknown";
  char why[256];
  int rc = 0;
  (void)tn_http_response_header(resp, "Cache-Control", "no-store"); /* answers hold tenants' data */
  /* route first (a 404 needs no token), then authenticate */
  char id[256] = "", sub[64] = "", system[128] = "", xid[512] = "";
  enum { R_NONE, R_LIST, R_ONE, R_XID } r = R_NONE;
  if (strcmp(path, API_PREFIX) == 0 || strcmp(path, API_PREFIX "/") == 0) {
    r = R_LIST;
    endpoint = "list";
  } else if (strncmp(path, API_PREFIX "/by-external-id/", strlen(API_PREFIX "/by-external-id/")) == 0) {
    const char *p = path + strlen(API_PREFIX "/by-external-id/");
    const char *slash = strchr(p, '/');
    if (slash && slash > p && (size_t)(slash - p) < sizeof system && slash[1] &&
        strlen(slash + 1) < sizeof xid) {
      snprintf(system, sizeof system, "%.*s", (int)(slash - p), p);
      snprintf(xid, sizeof xid, "%s", slash + 1);
      r = R_XID;
      endpoint = "byExternalId";
    }
  } else if (strncmp(path, API_PREFIX "/", strlen(API_PREFIX "/")) == 0) {
    const char *p = path + strlen(API_PREFIX "/");
    const char *slash = strchr(p, '/');
    size_t idn = slash ? (size_t)(slash - p) : strlen(p);
    if (idn > 0 && idn < sizeof id) {
      snprintf(id, sizeof id, "%.*s", (int)idn, p);
      const char *rest = slash ? slash + 1 : "";
      if (!*rest || strcmp(rest, "placement") == 0 || strcmp(rest, "events") == 0 ||
          strcmp(rest, "history") == 0 || strcmp(rest, "audit") == 0) {
        snprintf(sub, sizeof sub, "%s", rest);
        r = R_ONE;
        endpoint = *rest ? rest : "get";
      }
    }
  }
  if (r == R_NONE) {
    rc = problem(req, resp, 404, "not-found", "no such endpoint; see /openapi.json");
    goto out;
  }
  int st = authenticate(api, c.wc, req->authorization, c.tok, &c.user, why, sizeof why);
  if (st) {
    if (st == 401)
      (void)tn_http_response_header(resp, "WWW-Authenticate", "Bearer realm=\"tenancy-operator\"");
    if (st == 429)
      (void)tn_http_response_header(resp, "Retry-After", "1");
    rc = problem(req, resp, st,
                 st == 401   ? "unauthenticated"
                 : st == 429 ? "too-many-token-reviews"
                             : "authentication-unavailable",
                 "%s", why);
    goto out;
  }
  if (!tn_informer_has_synced(api->tenants)) {
    /* right after a start: an empty cache would answer 404 for tenants that exist */
    (void)tn_http_response_header(resp, "Retry-After", "1");
    rc = problem(req, resp, 503, "cache-unavailable", "the tenant cache is still loading; retry");
    goto out;
  }
  if (r == R_LIST)
    rc = serve_list(&c);
  else if (r == R_XID)
    rc = serve_by_external_id(&c, system, xid);
  else
    rc = serve_one(&c, id, sub);
out:
  if (api->m_requests) {
    int status = rc < 0 ? 500 : resp->status;
    struct mslot *m = NULL;
    for (size_t i = 0; i < sizeof c.wc->mcache / sizeof c.wc->mcache[0] && !m; i++) {
      struct mslot *x = &c.wc->mcache[i];
      if (!x->requests || (x->code == status && strcmp(x->endpoint, endpoint) == 0))
        m = x;
    }
    if (m && !m->requests && strlen(endpoint) < sizeof m->endpoint) {
      char code[8];
      snprintf(code, sizeof code, "%d", status);
      const char *lv[] = {endpoint, code, NULL};
      const char *lv2[] = {endpoint, NULL};
      m->latency = tn_metric_with(api->m_latency, lv2);
      m->requests = m->latency ? tn_metric_with(api->m_requests, lv) : NULL;
      snprintf(m->endpoint, sizeof m->endpoint, "%s", endpoint);
      m->code = status;
    }
    if (m && m->requests) {
      tn_series_inc(m->requests);
      tn_series_observe(m->latency, tn_mono_now() - t0);
    } else { /* the cache is full (or out of memory): the registry */
      char code[8];
      snprintf(code, sizeof code, "%d", status);
      const char *lv[] = {endpoint, code, NULL};
      tn_series_inc(tn_metric_with(api->m_requests, lv));
      const char *lv2[] = {endpoint, NULL};
      tn_series_observe(tn_metric_with(api->m_latency, lv2), tn_mono_now() - t0);
    }
  }
  return rc;
}

static int serve_openapi(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  (void)req;
  (void)ud;
  return send_json(resp, tn_readapi_openapi());
}

/* ---- the events cache ---------------------------------------------------------------------- */

static json_t *project_event(json_t *obj, void *ud) {
  (void)ud;
  static const char *const paths[] = {"metadata.name",
                                      "metadata.namespace",
                                      "metadata.creationTimestamp",
                                      "involvedObject.kind",
                                      "involvedObject.name",
                                      "involvedObject.apiVersion",
                                      "reason",
                                      "message",
                                      "type",
                                      "action",
                                      "count",
                                      "eventTime",
                                      "firstTimestamp",
                                      "lastTimestamp",
                                      "series",
                                      "reportingComponent",
                                      "reportingInstance",
                                      NULL};
  json_t *p = tn_store_project(obj, paths);
  json_decref(obj);
  return p;
}

static int index_event(const json_t *obj, void *ud, struct tn_index_values *out) {
  (void)ud;
  const char *n = str_at(obj, "involvedObject", "name", NULL);
  return n && *n ? tn_index_values_add(out, n) : 0;
}

/* ---- certificate reload -------------------------------------------------------------------- */

static char *read_file(const char *path) {
  FILE *f = fopen(path, "re");
  if (!f)
    return NULL;
  struct tn_buf b;
  tn_buf_init(&b, 1u << 20);
  char chunk[4096];
  size_t n;
  int rc = 0;
  while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
    rc = tn_buf_append(&b, chunk, n);
  fclose(f);
  char *s = rc ? NULL : strndup(b.data ? b.data : "", b.len);
  tn_wipe(b.data, b.len);
  tn_buf_cleanup(&b);
  return s;
}

static bool file_stamp(const char *path, struct timespec *ts, off_t *size) {
  struct stat st;
  if (stat(path, &st) != 0)
    return false;
  *ts = st.st_mtim;
  *size = st.st_size;
  return true;
}

static void *reloader_main(void *arg) {
  struct tn_readapi *api = arg;
  struct timespec c0 = {0}, k0 = {0};
  off_t cs0 = 0, ks0 = 0;
  (void)file_stamp(api->cert_file, &c0, &cs0);
  (void)file_stamp(api->key_file, &k0, &ks0);
  pthread_mutex_lock(&api->mu);
  while (!api->stopping) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    double secs = api->reload_s;
    deadline.tv_sec += (time_t)secs;
    deadline.tv_nsec += (long)((secs - floor(secs)) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&api->cv, &api->mu, &deadline);
    if (api->stopping)
      break;
    pthread_mutex_unlock(&api->mu);
    struct timespec c1, k1;
    off_t cs1, ks1;
    if (file_stamp(api->cert_file, &c1, &cs1) && file_stamp(api->key_file, &k1, &ks1) &&
        (c1.tv_sec != c0.tv_sec || c1.tv_nsec != c0.tv_nsec || cs1 != cs0 || k1.tv_sec != k0.tv_sec ||
         k1.tv_nsec != k0.tv_nsec || ks1 != ks0)) {
      char *cert = read_file(api->cert_file), *key = read_file(api->key_file);
      struct tn_error err;
      tn_error_clear(&err);
      if (cert && key && tn_httpserver_set_certificate(api->srv, cert, key, &err) == 0) {
        tn_log(TN_LOG_INFO, NULL, "read API: serving the certificate of %s again (it changed)",
               api->cert_file);
        c0 = c1, k0 = k1, cs0 = cs1, ks0 = ks1;
      } else {
        tn_log(TN_LOG_WARN, NULL, "read API: the changed certificate %s is not served yet: %s",
               api->cert_file, cert && key ? err.message : "cannot read it");
      }
      free(cert);
      if (key) {
        tn_wipe(key, strlen(key));
        free(key);
      }
    }
    pthread_mutex_lock(&api->mu);
  }
  pthread_mutex_unlock(&api->mu);
  return NULL;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

int tn_readapi_new(const struct tn_readapi_config *cfg, struct tn_readapi **out, struct tn_error *err) {
  *out = NULL;
  const char *addr = cfg->bind_address ? cfg->bind_address : TN_READAPI_DEFAULT_ADDRESS;
  if (strcmp(addr, "0") == 0)
    return 0;
  if (!cfg->cert_file || !*cfg->cert_file || !cfg->key_file || !*cfg->key_file)
    return tn_error_set(err, TN_ECONFIG,
                        "the read API on %s needs a serving certificate: --api-cert-file and --api-key-file "
                        "(or --api-bind-address=0)",
                        addr);
  if (!cfg->kube || !cfg->tenants)
    return tn_error_set(err, TN_ECONFIG, "the read API needs the API client and the Tenant cache");
  struct tn_readapi *api = calloc(1, sizeof *api);
  if (!api)
    return tn_error_set(err, -ENOMEM, "out of memory");
  pthread_mutex_init(&api->mu, NULL);
  pthread_mutex_init(&api->snap_mu, NULL);
  pthread_cond_init(&api->cv, NULL);
  api->kube = cfg->kube;
  api->tenants = cfg->tenants;
  api->ttl = cfg->auth_cache_ttl_s > 0 ? cfg->auth_cache_ttl_s : 10.0;
  api->review_rule =
      (struct tn_limit_rule){.rate_per_s = cfg->token_reviews_per_s > 0 ? cfg->token_reviews_per_s : 100,
                             .burst = cfg->token_reviews_per_s > 0 ? 2 * cfg->token_reviews_per_s : 200};
  api->n_slots = cfg->auth_cache_size ? cfg->auth_cache_size : 4096;
  api->reload_s = cfg->cert_reload_interval_s == 0 ? 10.0 : cfg->cert_reload_interval_s;
  api->n_workers = cfg->workers > 0 ? cfg->workers : 1;
  if (api->n_workers > TN_HTTP_MAX_WORKERS) {
    tn_readapi_free(api);
    return tn_error_set(err, TN_ECONFIG, "the read API serves with 1 to %d threads, not %d",
                        TN_HTTP_MAX_WORKERS, cfg->workers);
  }
  api->sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
  bool wc_ok = api->sha256_md != NULL;
  for (int i = 0; i < api->n_workers; i++) {
    struct wcache *wc = &api->wc[i];
    wc->users = calloc(api->n_slots, sizeof *wc->users);
    wc->sars = calloc(api->n_slots, sizeof *wc->sars);
    wc->views = calloc(api->n_slots * VIEW_WAYS, sizeof *wc->views);
    wc->md_ctx = EVP_MD_CTX_new();
    wc_ok = wc_ok && wc->users && wc->sars && wc->views && wc->md_ctx;
  }
  api->limiter = tn_limiter_new(cfg->limiter_keys ? cfg->limiter_keys : 65536);
  api->cert_file = strdup(cfg->cert_file);
  api->key_file = strdup(cfg->key_file);
  if (!wc_ok || !api->limiter || !api->cert_file || !api->key_file) {
    tn_readapi_free(api);
    return tn_error_set(err, -ENOMEM, "out of memory");
  }
  struct tn_http_tls tls = {.cert_file = cfg->cert_file, .key_file = cfg->key_file};
  int rc = tn_httpserver_new(addr, &tls, &api->srv, err);
  if (rc == 0) {
    /* GETs have no body: refuse bodies from the headers (bounded memory for any caller) */
    struct tn_http_limits lim = {.max_body = 1, .small_body = 0, .body_budget = 1, .timeout_s = 30};
    rc = tn_httpserver_set_limits(api->srv, &lim);
  }
  if (rc == 0)
    rc = tn_httpserver_set_workers(api->srv, api->n_workers);
  if (rc == 0) /* the lean epoll server: pipelining, one write per batch (docs/read-api.md) */
    rc = tn_httpserver_set_backend(api->srv, TN_HTTP_BACKEND_EPOLL);
  if (rc == 0)
    rc = tn_httpserver_route(api->srv, "GET", API_PREFIX, handle, api);
  if (rc == 0)
    rc = tn_httpserver_route_prefix(api->srv, "GET", API_PREFIX "/", handle, api);
  if (rc == 0) /* any other path under /api/ gets a problem detail */
    rc = tn_httpserver_route_prefix(api->srv, "GET", "/api/", handle, api);
  if (rc == 0)
    rc = tn_httpserver_route(api->srv, "GET", "/openapi.json", serve_openapi, api);
  if (rc == 0) /* the admin console (/console/): its page and its forwarder (replaces the body limits) */
    rc = tn_console_register(api->srv, cfg->kube, err);
  if (rc == 0) { /* history and audit timeline: a bounded pool of connections to the audit database */
    struct tn_trail_config tc = {
        .dsn = cfg->pg_dsn, .ca_file = cfg->pg_ca_file, .connections = cfg->pg_connections};
    rc = tn_trail_new(&tc, &api->trail, err);
  }
  const char *ens = cfg->events_namespace ? cfg->events_namespace : "default";
  if (rc == 0 && strcmp(ens, "-") != 0) {
    struct tn_informer_opts o = {
        .gvr = {"", "v1", "events", true},
        .namespace = ens,
        .field_selector = "involvedObject.kind=Tenant,involvedObject.apiVersion=" GROUP "/" VERSION,
        .transform = project_event,
        .name = "read-api-tenant-events",
    };
    rc = tn_informer_new(cfg->kube, &o, cfg->metrics, &api->events, err);
    if (rc == 0)
      rc = tn_informer_add_index(api->events, EVENTS_INDEX, index_event, NULL, err);
  }
  if (rc == 0 && cfg->metrics) {
    static const char *const l1[] = {"endpoint", "code", NULL};
    static const char *const l2[] = {"endpoint", NULL};
    api->m_requests = tn_metrics_register(cfg->metrics, TN_COUNTER, "tenancy_read_api_requests_total",
                                          "Read API requests by endpoint and HTTP status code.", l1, NULL, 0);
    static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1};
    api->m_latency = tn_metrics_register(cfg->metrics, TN_HISTOGRAM, "tenancy_read_api_request_seconds",
                                         "Read API request handling time (the handler, not the network).", l2,
                                         buckets, sizeof buckets / sizeof buckets[0]);
  }
  if (rc) {
    if (rc == -ENOMEM || rc == -EINVAL || rc == -EEXIST || rc == -EBUSY)
      tn_error_set(err, rc, "cannot set up the read API routes: %s", tn_strerror(rc));
    tn_readapi_free(api);
    return rc;
  }
  *out = api;
  return 0;
}

int tn_readapi_start(struct tn_readapi *api, struct tn_error *err) {
  if (!api)
    return 0;
  if (api->events) {
    int rc = tn_informer_start(api->events, err);
    if (rc)
      return rc;
  }
  int rc = tn_httpserver_start(api->srv, err);
  if (rc)
    return rc;
  if (api->reload_s > 0 && pthread_create(&api->reloader, NULL, reloader_main, api) == 0)
    api->reloader_started = true;
  return 0;
}

int tn_readapi_port(const struct tn_readapi *api) { return api ? tn_httpserver_port(api->srv) : 0; }

int tn_readapi_default_workers(void) {
  cpu_set_t set;
  int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  return n < 1 ? 1 : n > TN_HTTP_MAX_WORKERS ? TN_HTTP_MAX_WORKERS : n;
}

void tn_readapi_free(struct tn_readapi *api) {
  if (!api)
    return;
  if (api->reloader_started) {
    pthread_mutex_lock(&api->mu);
    api->stopping = true;
    pthread_cond_broadcast(&api->cv);
    pthread_mutex_unlock(&api->mu);
    pthread_join(api->reloader, NULL);
  }
  tn_httpserver_free(api->srv); /* no handler runs after this */
  tn_trail_free(api->trail);
  tn_informer_free(api->events);
  for (int w = 0; w < TN_HTTP_MAX_WORKERS; w++) {
    struct wcache *wc = &api->wc[w];
    for (size_t i = 0; wc->users && i < api->n_slots; i++)
      json_decref(wc->users[i].user);
    free(wc->users);
    free(wc->sars);
    for (size_t i = 0; wc->views && i < api->n_slots * VIEW_WAYS; i++) {
      tn_store_obj_unref(wc->views[i].obj);
      free(wc->views[i].groups);
    }
    free(wc->views);
    EVP_MD_CTX_free(wc->md_ctx);
  }
  EVP_MD_free(api->sha256_md);
  tn_limiter_free(api->limiter);
  snap_free(&api->snap);
  free(api->cert_file);
  free(api->key_file);
  pthread_cond_destroy(&api->cv);
  pthread_mutex_destroy(&api->snap_mu);
  pthread_mutex_destroy(&api->mu);
  free(api);
}
