/* buf.h - a growable byte buffer with a hard size cap, for anything read from the network. */
#ifndef TN_UTIL_BUF_H
#define TN_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

#define TN_ERR_TOOBIG (-27) /* same value as -EFBIG: the buffer would pass its cap */

/* Bytes it no longer holds are wiped (OPENSSL_cleanse) when it grows, consumes, resets or is
 * cleaned up: network bodies carry Secrets and tokens. tn_buf_take hands over the block as is.
 * A caller-owned buffer: tn_buf_init() it, tn_buf_cleanup() it. The content is always
 * NUL-terminated (the terminator is not counted in len and not in the cap). */
struct tn_buf {
  char *data; /* NULL until the first append */
  size_t len;
  size_t alloc;
  size_t cap; /* the most bytes it may ever hold */
};

void tn_buf_init(struct tn_buf *b, size_t cap);
/* Frees the content; the buffer may be reused after tn_buf_init(). Accepts NULL. */
void tn_buf_cleanup(struct tn_buf *b);
/* Appends n bytes. Returns 0, TN_ERR_TOOBIG (nothing appended) or -ENOMEM. */
int tn_buf_append(struct tn_buf *b, const void *p, size_t n);
int tn_buf_appends(struct tn_buf *b, const char *s);
int tn_buf_printf(struct tn_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tn_buf_vprintf(struct tn_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drops the first n bytes (n <= len), keeping the rest. */
void tn_buf_consume(struct tn_buf *b, size_t n);
void tn_buf_reset(struct tn_buf *b);
/* Hands the content to the caller (free() it); the buffer is left empty. Never NULL unless
 * allocation fails. */
char *tn_buf_take(struct tn_buf *b);
/* The content as a C string ("" when empty); owned by the buffer. */
const char *tn_buf_str(const struct tn_buf *b);

#endif
