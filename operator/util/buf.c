/* buf.c - a growable byte buffer with a hard size cap (see buf.h). */
#include "util/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/wipe.h"

void tn_buf_init(struct tn_buf *b, size_t cap) {
  b->data = NULL;
  b->len = 0;
  b->alloc = 0;
  b->cap = cap;
}

void tn_buf_cleanup(struct tn_buf *b) {
  if (!b)
    return;
  tn_wipe(b->data, b->alloc); /* it may have held a Secret, a token or a password */
  free(b->data);
  b->data = NULL;
  b->len = b->alloc = 0;
}

static int buf_reserve(struct tn_buf *b, size_t extra) {
  if (extra > b->cap || b->len > b->cap - extra)
    return TN_ERR_TOOBIG;
  size_t need = b->len + extra + 1;
  if (need <= b->alloc)
    return 0;
  size_t n = b->alloc ? b->alloc : 256;
  while (n < need)
    n = n > SIZE_MAX / 2 ? need : n * 2;
  /* Not realloc: the old block is wiped before it is freed. */
  char *p = malloc(n);
  if (!p)
    return -ENOMEM;
  if (b->data) {
    memcpy(p, b->data, b->len + 1);
    tn_wipe(b->data, b->alloc);
    free(b->data);
  }
  b->data = p;
  b->alloc = n;
  return 0;
}

int tn_buf_append(struct tn_buf *b, const void *p, size_t n) {
  int rc = buf_reserve(b, n);
  if (rc)
    return rc;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int tn_buf_appends(struct tn_buf *b, const char *s) { return tn_buf_append(b, s, strlen(s)); }

int tn_buf_vprintf(struct tn_buf *b, const char *fmt, va_list ap) {
  va_list cp;
  va_copy(cp, ap);
  int n = vsnprintf(NULL, 0, fmt, cp);
  va_end(cp);
  if (n < 0)
    return -EINVAL;
  int rc = buf_reserve(b, (size_t)n);
  if (rc)
    return rc;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int tn_buf_printf(struct tn_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = tn_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

void tn_buf_consume(struct tn_buf *b, size_t n) {
  if (n >= b->len) {
    tn_buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  tn_wipe(b->data + b->len - n, n); /* the vacated tail */
  b->len -= n;
  b->data[b->len] = '\0';
}

void tn_buf_reset(struct tn_buf *b) {
  tn_wipe(b->data, b->len);
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

char *tn_buf_take(struct tn_buf *b) {
  char *p = b->data ? b->data : strdup("");
  b->data = NULL;
  b->len = b->alloc = 0;
  return p;
}

const char *tn_buf_str(const struct tn_buf *b) { return b->data ? b->data : ""; }
