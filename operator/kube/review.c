/* review.c - TokenReview and SubjectAccessReview (see review.h). */
#include "kube/review.h"

#include <errno.h>
#include <string.h>

#include "util/wipe.h"

/* POSTs a review object to path, one attempt of at most TN_REVIEW_TIMEOUT_MS; *out gets the
 * answer. The body sent and the body received are wiped: a TokenReview's hold the token. */
static int post_review(struct tn_kube *kube, const char *path, json_t *obj, json_t **out,
                       struct tn_error *err) {
  char *body = json_dumps(obj, JSON_COMPACT);
  if (!body)
    return tn_error_set(err, -ENOMEM, "out of memory");
  struct tn_kube_request req = {.method = "POST",
                                .path = path,
                                .body = body,
                                .body_len = strlen(body),
                                .timeout_ms = TN_REVIEW_TIMEOUT_MS,
                                .no_retry = true};
  struct tn_kube_response resp;
  tn_kube_response_init(&resp);
  int rc = tn_kube_do(kube, &req, &resp, err);
  tn_wipe_free_str(body);
  if (rc == 0) {
    json_error_t jerr;
    *out = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &jerr);
    if (!*out)
      rc = tn_error_set(err, TN_EAPI, "%s: the answer is not JSON", path);
  }
  if (resp.body.data)
    tn_wipe(resp.body.data, resp.body.len);
  tn_kube_response_cleanup(&resp);
  return rc;
}

int tn_token_review(struct tn_kube *kube, const char *token, size_t token_len, json_t **user,
                    struct tn_error *err) {
  *user = NULL;
  /* jansson frees through OPENSSL_cleanse (tn_wipe_json_install): the token's copies are wiped */
  json_t *tr = json_pack("{s:s,s:s,s:{s:s%}}", "apiVersion", "authentication.k8s.io/v1", "kind",
                         "TokenReview", "spec", "token", token, token_len);
  if (!tr)
    return tn_error_set(err, -ENOMEM, "out of memory");
  json_t *out = NULL;
  int rc = post_review(kube, "/apis/authentication.k8s.io/v1/tokenreviews", tr, &out, err);
  json_decref(tr);
  if (rc)
    return rc;
  json_t *st = json_object_get(out, "status");
  json_t *u = json_object_get(st, "user");
  if (json_is_true(json_object_get(st, "authenticated")) && json_string_value(json_object_get(u, "username")))
    *user = json_incref(u);
  json_decref(out);
  return 0;
}

int tn_access_review(struct tn_kube *kube, const json_t *user, const char *attrs_key, json_t *attrs,
                     bool *allowed, struct tn_error *err) {
  *allowed = false;
  const char *name = json_string_value(json_object_get(user, "username"));
  json_t *spec = json_pack("{s:o,s:s}", attrs_key, attrs, "user", name ? name : "");
  json_t *sar = spec ? json_pack("{s:s,s:s,s:o}", "apiVersion", "authorization.k8s.io/v1", "kind",
                                 "SubjectAccessReview", "spec", spec)
                     : NULL;
  if (!sar)
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *uid = json_string_value(json_object_get(user, "uid"));
  if (uid && *uid)
    json_object_set_new(spec, "uid", json_string(uid));
  if (json_is_array(json_object_get(user, "groups")))
    json_object_set(spec, "groups", json_object_get(user, "groups"));
  if (json_is_object(json_object_get(user, "extra")))
    json_object_set(spec, "extra", json_object_get(user, "extra"));
  json_t *out = NULL;
  int rc = post_review(kube, "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar, &out, err);
  json_decref(sar);
  if (rc)
    return rc;
  *allowed = json_is_true(json_object_get(json_object_get(out, "status"), "allowed"));
  json_decref(out);
  return 0;
}
