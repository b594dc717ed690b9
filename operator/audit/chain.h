/* chain.h - the audit trail's hash chain: the canonical encoding of a row, its SHA-256, and a
 * streaming verifier that names the first bad row. Pure: no database, no clock, no globals. */
#ifndef TN_AUDIT_CHAIN_H
#define TN_AUDIT_CHAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/* A hash as text: 64 lowercase hex digits + NUL. */
#define TN_AUDIT_HASH_LEN 65
/* prev_hash of the first row ever written. */
#define TN_AUDIT_GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* One field of a canonical encoding. */
enum tn_audit_field_kind {
  TN_AUDIT_FIELD_NULL = 0, /* SQL NULL */
  TN_AUDIT_FIELD_INT = 1,  /* a 64-bit signed integer (i) */
  TN_AUDIT_FIELD_BYTES = 2 /* n bytes at p, any values including NUL */
};

struct tn_audit_field {
  enum tn_audit_field_kind kind;
  long long i;
  const void *p;
  size_t n;
};

/* Appends the canonical encoding of fields to out:
 *   "TNAUDIT1" then, per field, one tag byte (0 NULL, 1 INT, 2 BYTES) followed for INT by 8
 *   bytes big-endian two's complement, for BYTES by an 8-byte big-endian length and the bytes.
 * Every field is self-delimiting, so two different field lists never encode the same (no
 * separator, quote, newline or NUL inside a value can shift a boundary). Returns 0, -EINVAL
 * (unknown kind) or the tn_buf error (TN_ERR_TOOBIG, -ENOMEM). */
int tn_audit_canon_fields(const struct tn_audit_field *f, size_t n, struct tn_buf *out);

/* An audit row as stored in tenancy.audit_events. Strings are borrowed; NULL means SQL NULL. */
struct tn_audit_row {
  long long id;
  const char *at; /* RFC 3339 UTC with microseconds, "2025-01-02T03:04:05.123456Z" */
  const char *actor;
  const char *action;
  const char *target; /* "tenant/<id>" */
  const char *request_id;
  const char *correlation_id;
  const char *outcome;
  long long generation_before; /* < 0: NULL */
  long long generation_after;  /* < 0: NULL */
  const char *details;         /* JSON text exactly as stored, or NULL */
  const char *prev_hash;       /* 64 lowercase hex digits */
  const char *hash;            /* the stored hash (read by the verifier only) */
};

/* The number of fields hashed per row: every column except hash, in this order: id, at, actor,
 * action, target, request_id, correlation_id, outcome, generation_before, generation_after,
 * details, prev_hash. */
#define TN_AUDIT_ROW_FIELDS 12

/* The canonical encoding of the row's hashed fields (see above), appended to out. */
int tn_audit_canon_row(const struct tn_audit_row *r, struct tn_buf *out);

/* out = lowercase hex SHA-256 of tn_audit_canon_row(r). r->hash is ignored. Returns 0, -ENOMEM
 * or -EIO (OpenSSL failed). */
int tn_audit_row_hash(const struct tn_audit_row *r, char out[TN_AUDIT_HASH_LEN]);

/* Whether s is exactly 64 lowercase hex digits. */
bool tn_audit_hash_valid(const char *s);

/* A streaming verifier: feed rows in ascending id order. Caller-owned; no heap. */
struct tn_audit_chain {
  char expect_prev[TN_AUDIT_HASH_LEN]; /* what the next row's prev_hash must be */
  char anchor[160];                    /* what expect_prev came from, for messages */
  long long prev_id;                   /* id of the last row fed; 0 before the first */
  long long rows;                      /* rows fed and found good */
  bool broken;
  long long bad_id;  /* the first bad row */
  char problem[512]; /* "row 42: hash mismatch (stored ..., computed ...)" */
};

/* Starts a verification. head_prev is what the first row's prev_hash must be: NULL for the
 * genesis value (nothing was ever pruned), or the hash of the last pruned row recorded by a
 * prune checkpoint; anchor says where it came from (e.g. "the prune checkpoint in row 900"),
 * NULL for the genesis. Both are copied. */
void tn_audit_chain_init(struct tn_audit_chain *c, const char *head_prev, const char *anchor);

/* Checks one row: ids strictly ascending, its stored hash well formed and equal to the hash of
 * its content, its prev_hash equal to the previous row's hash (or the head expectation). Returns
 * 0 when good; TN_EINVALID when not, with c->broken, c->bad_id and c->problem set to one of
 *   "row 42: hash mismatch (stored <hex>, computed <hex>)"
 *   "row 43: prev_hash does not match row 42 (prev_hash <hex>, row 42 hash <hex>)"
 *   "row 1: prev_hash is not the genesis value and no prune checkpoint explains it (...)"
 *   "row 7: prev_hash does not match <anchor> (...)"
 *   "row 5: id is not above the previous row 9"
 * Once broken, further rows are ignored and TN_EINVALID is returned again (the first problem
 * is kept). -ENOMEM/-EIO when hashing failed. */
int tn_audit_chain_feed(struct tn_audit_chain *c, const struct tn_audit_row *r);

#endif
