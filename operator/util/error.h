/* error.h - error values that carry words: a code, and for people a message saying what was
 * wrong and how to fix it (plus, for API errors, the HTTP status, reason and causes). */
#ifndef TN_UTIL_ERROR_H
#define TN_UTIL_ERROR_H

#include <stdbool.h>

/* Project error codes (negative; system errors are -errno). */
enum {
  TN_EAPI = -1000,        /* the API server answered an error not listed below */
  TN_ENOTFOUND = -1001,   /* 404 NotFound */
  TN_ECONFLICT = -1002,   /* 409 Conflict (resourceVersion precondition failed) */
  TN_EEXISTS = -1003,     /* 409 AlreadyExists */
  TN_EGONE = -1004,       /* 410 Gone / Expired: resourceVersion too old */
  TN_EFORBIDDEN = -1005,  /* 401/403 */
  TN_EINVALID = -1006,    /* 422 Invalid, 400 BadRequest */
  TN_ETIMEOUT = -1007,    /* a deadline passed */
  TN_ECANCELED = -1008,   /* the caller asked to stop */
  TN_ETOOBIG = -1009,     /* a response passed its size cap */
  TN_ECONFIG = -1010,     /* bad configuration (kubeconfig, flags) */
  TN_ETRANSPORT = -1011,  /* connection, TLS or protocol failure */
  TN_ETHROTTLED = -1012,  /* 429 after every retry */
  TN_EUNAVAILABLE = -1013 /* 5xx after every retry */
};

#define TN_ERROR_MAX_CAUSES 8

struct tn_error_cause {
  char field[128];
  char reason[48];
  char message[256];
};

/* Caller-owned, usually on the stack; functions that take a `struct tn_error *` fill it on
 * failure and leave it alone on success. NULL is accepted wherever an error is taken. */
struct tn_error {
  int code;        /* as returned */
  int http_status; /* 0 when no HTTP response was involved */
  char reason[48]; /* Kubernetes Status reason, e.g. "Conflict"; "" when none */
  char message[1024];
  int n_causes;
  struct tn_error_cause causes[TN_ERROR_MAX_CAUSES];
  double retry_after_s; /* from Retry-After or details.retryAfterSeconds; 0 when none */
};

void tn_error_clear(struct tn_error *e);
/* Sets code and a formatted message (truncated to fit); returns code so callers can
 * `return tn_error_set(err, TN_ECONFIG, "...")`. */
int tn_error_set(struct tn_error *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefixes the existing message with context: "context: old message". */
void tn_error_prefix(struct tn_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A short fixed description of a code ("not found", "conflict", strerror for -errno). */
const char *tn_strerror(int code);
/* Whether retrying the same call later may succeed (throttled, unavailable, transport,
 * timeout, conflict). */
bool tn_error_is_transient(int code);

#endif
