/* review.h - the API server decides who a bearer token is (TokenReview) and what that user may do
 * (SubjectAccessReview). One implementation for every listener that authenticates callers the
 * Kubernetes way (the read API, --metrics-secure); each keeps its own cache in front of it. */
#ifndef TN_KUBE_REVIEW_H
#define TN_KUBE_REVIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "kube/client.h"
#include "util/error.h"

/* One attempt of at most this long: a slow API server holds up the listener's thread only that
 * long (the caller answers "retry"). */
#define TN_REVIEW_TIMEOUT_MS 5000

/* TokenReview of the token's first token_len bytes. 0 with *user the reviewed status.user (new
 * reference) when the API server authenticated it, or with *user NULL when it did not; an error
 * code (err set) when the review itself failed. The request and the answer (which echoes the
 * token) are wiped from memory. */
int tn_token_review(struct tn_kube *kube, const char *token, size_t token_len, json_t **user,
                    struct tn_error *err);

/* SubjectAccessReview for user (a TokenReview's status.user, borrowed: username, uid, groups and
 * extra are passed on) on attrs (stolen), which go in spec.<attrs_key>: "resourceAttributes" or
 * "nonResourceAttributes". 0 with *allowed set, or an error code (err set). */
int tn_access_review(struct tn_kube *kube, const json_t *user, const char *attrs_key, json_t *attrs,
                     bool *allowed, struct tn_error *err);

#endif
