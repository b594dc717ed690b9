/* metrics_auth.h - --metrics-secure: /metrics over HTTPS for callers that the API server
 * authenticates (TokenReview of the bearer token) and authorizes (SubjectAccessReview: verb get on
 * the nonResourceURL /metrics), as controller-runtime's WithAuthenticationAndAuthorization filter
 * that kubebuilder scaffolds. Grant it with the ClusterRole tenancy-operator-metrics-reader
 * (charts/tenancy-operator, metrics.secure). Decisions are cached per token (by its SHA-256): an
 * allowed one for TN_METRICS_AUTH_ALLOW_TTL_S, a refused one for TN_METRICS_AUTH_DENY_TTL_S; the
 * reviews a scrape may cause are rate limited (TN_METRICS_AUTH_REVIEWS_PER_S, then 429), so junk
 * tokens cannot flood the API server. The token is never logged nor kept (only its hash). A review
 * runs on the metrics listener's thread (one attempt of at most 5 s per review). */
#ifndef TN_RUNTIME_METRICS_AUTH_H
#define TN_RUNTIME_METRICS_AUTH_H

#include "runtime/httpserver.h"
#include "runtime/metrics.h"
#include "util/error.h"

#define TN_METRICS_AUTH_ALLOW_TTL_S 60.0
#define TN_METRICS_AUTH_DENY_TTL_S 10.0
#define TN_METRICS_AUTH_REVIEWS_PER_S 10.0
#define TN_METRICS_AUTH_CACHE_MAX 512

struct tn_kube;
struct tn_metrics_auth; /* opaque; thread-safe */

/* What decides: normally the API server (tn_metrics_auth_new). Tests may pass their own. Returns
 * 200 (allowed), 401 (not authenticated), 403 (authenticated, not allowed), or a negative code
 * when the reviews could not be made (answered 500, not cached). who (may be NULL) gets the user. */
typedef int (*tn_metrics_review_fn)(void *ud, const char *token, char *who, size_t who_len);

/* Reviews through kube (borrowed; must outlive the auth). Returns 0 or -ENOMEM. */
int tn_metrics_auth_new(struct tn_kube *kube, struct tn_metrics_auth **out);
/* With a custom review function (tests). */
int tn_metrics_auth_new_with(tn_metrics_review_fn review, void *ud, struct tn_metrics_auth **out);
void tn_metrics_auth_free(struct tn_metrics_auth *a);

/* GET /metrics on srv (a TLS server) for authorized callers only; m and auth borrowed, must outlive
 * the server. 401 without a bearer token or with one the API server does not authenticate, 403
 * when the SubjectAccessReview denies, 429 over the review rate, 500 when a review failed. */
int tn_httpserver_serve_metrics_secure(struct tn_httpserver *srv, struct tn_metrics *m,
                                       struct tn_metrics_auth *auth);

/* The decision for an Authorization header value (for tests; what the route calls). */
int tn_metrics_auth_check(struct tn_metrics_auth *a, const char *authorization);

/* A self-signed serving certificate (ECDSA P-256, 1 year; SANs localhost, 127.0.0.1, ::1 and the
 * host name) written as dir/tls.crt and dir/tls.key (0600) into a new private directory under
 * $TMPDIR; *dir_out (malloc'd) names it: remove it with tn_metrics_self_signed_remove. Returns 0 or
 * an error with a message. */
int tn_metrics_self_signed(char **dir_out, struct tn_error *err);
void tn_metrics_self_signed_remove(char *dir); /* removes the files and the directory, frees dir */

#endif
