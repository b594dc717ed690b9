/* chain.c - canonical encoding, SHA-256 and verification of the audit hash chain (see chain.h). */
#include "audit/chain.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/error.h"

#define CANON_MAGIC "TNAUDIT1"
/* A row is a few kilobytes at most; details are the only open-ended part. */
#define CANON_CAP (4u << 20)

static void be64(unsigned char out[8], uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    out[i] = (unsigned char)(v & 0xff);
    v >>= 8;
  }
}

int tn_audit_canon_fields(const struct tn_audit_field *f, size_t n, struct tn_buf *out) {
  int rc = tn_buf_append(out, CANON_MAGIC, sizeof CANON_MAGIC - 1);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    unsigned char head[9];
    head[0] = (unsigned char)f[i].kind;
    switch (f[i].kind) {
    case TN_AUDIT_FIELD_NULL:
      rc = tn_buf_append(out, head, 1);
      break;
    case TN_AUDIT_FIELD_INT:
      be64(head + 1, (uint64_t)f[i].i);
      rc = tn_buf_append(out, head, 9);
      break;
    case TN_AUDIT_FIELD_BYTES:
      if (f[i].n && !f[i].p)
        return -EINVAL;
      be64(head + 1, (uint64_t)f[i].n);
      rc = tn_buf_append(out, head, 9);
      if (rc == 0 && f[i].n)
        rc = tn_buf_append(out, f[i].p, f[i].n);
      break;
    default:
      return -EINVAL;
    }
  }
  return rc;
}

static struct tn_audit_field str_field(const char *s) {
  if (!s)
    return (struct tn_audit_field){.kind = TN_AUDIT_FIELD_NULL};
  return (struct tn_audit_field){.kind = TN_AUDIT_FIELD_BYTES, .p = s, .n = strlen(s)};
}

static struct tn_audit_field gen_field(long long g) {
  if (g < 0)
    return (struct tn_audit_field){.kind = TN_AUDIT_FIELD_NULL};
  return (struct tn_audit_field){.kind = TN_AUDIT_FIELD_INT, .i = g};
}

int tn_audit_canon_row(const struct tn_audit_row *r, struct tn_buf *out) {
  const struct tn_audit_field f[TN_AUDIT_ROW_FIELDS] = {
      {.kind = TN_AUDIT_FIELD_INT, .i = r->id},
      str_field(r->at),
      str_field(r->actor),
      str_field(r->action),
      str_field(r->target),
      str_field(r->request_id),
      str_field(r->correlation_id),
      str_field(r->outcome),
      gen_field(r->generation_before),
      gen_field(r->generation_after),
      str_field(r->details),
      str_field(r->prev_hash),
  };
  return tn_audit_canon_fields(f, TN_AUDIT_ROW_FIELDS, out);
}

int tn_audit_row_hash(const struct tn_audit_row *r, char out[TN_AUDIT_HASH_LEN]) {
  struct tn_buf b;
  tn_buf_init(&b, CANON_CAP);
  int rc = tn_audit_canon_row(r, &b);
  if (rc)
    goto out;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (EVP_Digest(b.data, b.len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
    rc = -EIO;
    goto out;
  }
  static const char hex[] = "0123456789abcdef";
  for (unsigned i = 0; i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
out:
  tn_buf_cleanup(&b);
  return rc;
}

bool tn_audit_hash_valid(const char *s) {
  if (!s)
    return false;
  size_t i = 0;
  for (; s[i]; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return i == 64;
}

void tn_audit_chain_init(struct tn_audit_chain *c, const char *head_prev, const char *anchor) {
  memset(c, 0, sizeof *c);
  snprintf(c->expect_prev, sizeof c->expect_prev, "%s", head_prev ? head_prev : TN_AUDIT_GENESIS_HASH);
  if (head_prev && anchor)
    snprintf(c->anchor, sizeof c->anchor, "%s", anchor);
}

static int broken(struct tn_audit_chain *c, long long id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int broken(struct tn_audit_chain *c, long long id, const char *fmt, ...) {
  c->broken = true;
  c->bad_id = id;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->problem, sizeof c->problem, fmt, ap);
  va_end(ap);
  return TN_EINVALID;
}

int tn_audit_chain_feed(struct tn_audit_chain *c, const struct tn_audit_row *r) {
  if (c->broken)
    return TN_EINVALID;
  if (c->rows > 0 && r->id <= c->prev_id)
    return broken(c, r->id, "row %lld: id is not above the previous row %lld", r->id, c->prev_id);
  if (!tn_audit_hash_valid(r->hash))
    return broken(c, r->id, "row %lld: stored hash is not 64 lowercase hex digits (\"%.70s\")", r->id,
                  r->hash ? r->hash : "NULL");
  char computed[TN_AUDIT_HASH_LEN];
  int rc = tn_audit_row_hash(r, computed);
  if (rc)
    return rc;
  if (strcmp(computed, r->hash) != 0)
    return broken(c, r->id, "row %lld: hash mismatch (stored %s, computed %s)", r->id, r->hash, computed);
  if (!r->prev_hash || strcmp(r->prev_hash, c->expect_prev) != 0) {
    const char *got = r->prev_hash ? r->prev_hash : "NULL";
    if (c->rows > 0)
      return broken(c, r->id, "row %lld: prev_hash does not match row %lld (prev_hash %s, row %lld hash %s)",
                    r->id, c->prev_id, got, c->prev_id, c->expect_prev);
    if (!c->anchor[0])
      return broken(c, r->id,
                    "row %lld: prev_hash is not the genesis value and no prune checkpoint explains the rows "
                    "before it (prev_hash %s)",
                    r->id, got);
    return broken(c, r->id, "row %lld: prev_hash does not match %s (prev_hash %s, expected %s)", r->id,
                  c->anchor, got, c->expect_prev);
  }
  memcpy(c->expect_prev, r->hash, TN_AUDIT_HASH_LEN);
  c->prev_id = r->id;
  c->rows++;
  return 0;
}
