/* status.c - turning a non-2xx answer of the API server (a metav1.Status, or whatever a proxy
 * sent) into a struct tn_error. Pure: no I/O, no clock, no globals. */
#include "kube/client.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void copy_str(char *dst, size_t n, const char *src) {
  if (!src)
    src = "";
  snprintf(dst, n, "%s", src);
}

/* The code for an HTTP status and Status.reason (client-go's errors.IsConflict & co). */
static int code_for(long status, const char *reason) {
  if (reason && *reason) {
    if (strcmp(reason, "AlreadyExists") == 0)
      return TN_EEXISTS;
    if (strcmp(reason, "Conflict") == 0)
      return TN_ECONFLICT;
    if (strcmp(reason, "NotFound") == 0)
      return TN_ENOTFOUND;
    if (strcmp(reason, "Expired") == 0 || strcmp(reason, "Gone") == 0)
      return TN_EGONE;
  }
  switch (status) {
  case 400:
  case 422:
    return TN_EINVALID;
  case 401:
  case 403:
    return TN_EFORBIDDEN;
  case 404:
    return TN_ENOTFOUND;
  case 409:
    return TN_ECONFLICT;
  case 410:
    return TN_EGONE;
  case 429:
    return TN_ETHROTTLED;
  default:
    return status >= 500 && status <= 599 ? TN_EUNAVAILABLE : TN_EAPI;
  }
}

/* What client-go says when the body is not a Status (errors.NewGenericServerResponse). */
static const char *generic_message(long status) {
  switch (status) {
  case 400:
    return "the server rejected our request for an unknown reason";
  case 401:
    return "the server has asked for the client to provide credentials";
  case 403:
    return "the server does not allow access to the requested resource";
  case 404:
    return "the server could not find the requested resource";
  case 405:
    return "the server does not allow this method on the requested resource";
  case 409:
    return "the server reported a conflict";
  case 410:
    return "the requested resource version is gone";
  case 422:
    return "the server rejected our request due to an error in our request";
  case 429:
    return "the server has received too many requests and has asked us to try again later";
  case 500:
    return "an error on the server has prevented the request from succeeding";
  case 503:
    return "the server is currently unable to handle the request";
  case 504:
    return "the server was unable to return a response in the time allotted";
  default:
    return status >= 500 ? "the server returned an error" : "the server returned an unexpected response";
  }
}

/* A printable excerpt of a body that is not a Status: control bytes become '.', and it is
 * cut short so a large HTML error page does not flood the message. */
static void excerpt(char *dst, size_t n, const char *body, size_t len) {
  size_t max = n - 1 < 200 ? n - 1 : 200, j = 0;
  while (len > 0 && isspace((unsigned char)body[len - 1]))
    len--;
  for (size_t i = 0; i < len && j < max; i++) {
    unsigned char ch = (unsigned char)body[i];
    dst[j++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
  }
  dst[j] = '\0';
  if (len > max && j >= 3)
    memcpy(dst + j - 3, "...", 3);
}

int tn_kube_status_error(long http_status, const char *body, size_t len, struct tn_error *err) {
  json_t *root = NULL;
  const char *reason = NULL, *message = NULL;
  json_t *details = NULL;
  if (body && len > 0)
    root = json_loadb(body, len, 0, NULL);
  json_t *kind = json_object_get(root, "kind");
  bool is_status = json_is_string(kind) && strcmp(json_string_value(kind), "Status") == 0;
  if (is_status) {
    json_t *c = json_object_get(root, "code");
    if (http_status <= 0 && json_is_integer(c))
      http_status = (long)json_integer_value(c);
    reason = json_string_value(json_object_get(root, "reason"));
    message = json_string_value(json_object_get(root, "message"));
    details = json_object_get(root, "details");
  }
  int code = code_for(http_status, reason);
  if (!err)
    goto out;
  tn_error_clear(err);
  err->code = code;
  err->http_status = (int)http_status;
  copy_str(err->reason, sizeof err->reason, reason);
  if (message && *message) {
    copy_str(err->message, sizeof err->message, message);
  } else if (body && len > 0 && !is_status) {
    char ex[256];
    excerpt(ex, sizeof ex, body, len);
    snprintf(err->message, sizeof err->message, "%s (HTTP %ld: %s)", generic_message(http_status),
             http_status, ex);
  } else {
    snprintf(err->message, sizeof err->message, "%s (HTTP %ld%s)", generic_message(http_status), http_status,
             reason && *reason ? ", no message" : ", empty body");
  }
  json_t *causes = json_object_get(details, "causes"), *cause;
  size_t i;
  json_array_foreach(causes, i, cause) {
    if (err->n_causes >= TN_ERROR_MAX_CAUSES)
      break;
    struct tn_error_cause *ec = &err->causes[err->n_causes++];
    copy_str(ec->field, sizeof ec->field, json_string_value(json_object_get(cause, "field")));
    copy_str(ec->reason, sizeof ec->reason, json_string_value(json_object_get(cause, "reason")));
    copy_str(ec->message, sizeof ec->message, json_string_value(json_object_get(cause, "message")));
  }
  json_t *ra = json_object_get(details, "retryAfterSeconds");
  if (json_is_number(ra) && json_number_value(ra) > 0 && isfinite(json_number_value(ra)))
    err->retry_after_s = json_number_value(ra);
out:
  json_decref(root);
  return code;
}
