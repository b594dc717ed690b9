/* error.c - error values that carry words (see error.h). */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void tn_error_clear(struct tn_error *e) {
  if (e)
    memset(e, 0, sizeof *e);
}

int tn_error_set(struct tn_error *e, int code, const char *fmt, ...) {
  if (!e)
    return code;
  tn_error_clear(e);
  e->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
  return code;
}

void tn_error_prefix(struct tn_error *e, const char *fmt, ...) {
  if (!e)
    return;
  char pre[512], old[sizeof e->message];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, e->message, sizeof old);
  size_t n = strlen(pre);
  if (n > sizeof e->message - 3)
    n = sizeof e->message - 3;
  memcpy(e->message, pre, n);
  memcpy(e->message + n, ": ", 2);
  size_t room = sizeof e->message - n - 3, olen = strnlen(old, sizeof old);
  if (olen > room)
    olen = room;
  memcpy(e->message + n + 2, old, olen);
  e->message[n + 2 + olen] = '\0';
}

const char *tn_strerror(int code) {
  switch (code) {
  case 0:
    return "success";
  case TN_EAPI:
    return "API error";
  case TN_ENOTFOUND:
    return "not found";
  case TN_ECONFLICT:
    return "conflict";
  case TN_EEXISTS:
    return "already exists";
  case TN_EGONE:
    return "resource version too old";
  case TN_EFORBIDDEN:
    return "forbidden";
  case TN_EINVALID:
    return "invalid";
  case TN_ETIMEOUT:
    return "timed out";
  case TN_ECANCELED:
    return "canceled";
  case TN_ETOOBIG:
    return "response too large";
  case TN_ECONFIG:
    return "bad configuration";
  case TN_ETRANSPORT:
    return "transport error";
  case TN_ETHROTTLED:
    return "throttled";
  case TN_EUNAVAILABLE:
    return "service unavailable";
  default:
    return code < 0 && code > -1000 ? strerror(-code) : "unknown error";
  }
}

bool tn_error_is_transient(int code) {
  switch (code) {
  case TN_ETHROTTLED:
  case TN_EUNAVAILABLE:
  case TN_ETRANSPORT:
  case TN_ETIMEOUT:
  case TN_ECONFLICT:
    return true;
  default:
    return false;
  }
}
