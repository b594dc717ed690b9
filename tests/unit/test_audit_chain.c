/* test_audit_chain.c - the audit hash chain: the canonical encoding is injective (separators,
 * quotes, newlines, NULs, NULL vs empty vs integers cannot collide), known-answer hashes from an
 * independent implementation, and verification of in-memory chains against tampering of every
 * column, deleted and reordered rows, and retention anchors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/chain.h"
#include "util/error.h"

/* ---- canonical encoding ------------------------------------------------------------------- */

#define F_NULL                                                                                               \
  { .kind = TN_AUDIT_FIELD_NULL }
#define F_INT(v)                                                                                             \
  { .kind = TN_AUDIT_FIELD_INT, .i = (v) }
#define F_STR(s)                                                                                             \
  { .kind = TN_AUDIT_FIELD_BYTES, .p = (s), .n = sizeof(s) - 1 }

/* Atoms chosen to break naive encodings: separators, quotes, escapes, newlines, NULs, lengths
 * that look like other fields, the empty string, NULL and integers whose bytes spell strings. */
static const struct tn_audit_field atoms[] = {
    F_NULL,
    F_STR(""),
    F_STR("a"),
    F_STR("\0"),
    F_STR("a\0"),
    F_STR("\0a"),
    F_STR("|"),
    F_STR("a|b"),
    F_STR("\""),
    F_STR("\"a\",\"b\""),
    F_STR("\n"),
    F_STR("a\nb"),
    F_STR("\\"),
    F_STR("\x02"),
    F_STR("\x01\x00\x00\x00\x00\x00\x00\x00\x00"),
    F_STR("\x00\x00\x00\x00\x00\x00\x00\x01"),
    F_INT(0),
    F_INT(1),
    F_INT(-1),
    F_INT(0x0200000000000000LL),
    F_INT(INT64_MAX),
    F_INT(INT64_MIN),
};
#define N_ATOMS (sizeof atoms / sizeof atoms[0])

struct enc {
  char *data;
  size_t len;
  int list[3];
  int n;
};

static int enc_cmp(const void *x, const void *y) {
  const struct enc *a = x, *b = y;
  if (a->len != b->len)
    return a->len < b->len ? -1 : 1;
  return memcmp(a->data, b->data, a->len);
}

static uint64_t get_be64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/* An independent decoder: the encoding must parse back into exactly the fields encoded. */
static size_t decode(const unsigned char *p, size_t len, struct tn_audit_field *out, size_t max) {
  cr_assert_geq(len, 8);
  cr_assert_eq(memcmp(p, "TNAUDIT1", 8), 0);
  size_t i = 8, n = 0;
  while (i < len) {
    cr_assert_lt(n, max);
    struct tn_audit_field *f = &out[n++];
    memset(f, 0, sizeof *f);
    f->kind = (enum tn_audit_field_kind)p[i++];
    if (f->kind == TN_AUDIT_FIELD_NULL)
      continue;
    cr_assert_leq(i + 8, len);
    uint64_t v = get_be64(p + i);
    i += 8;
    if (f->kind == TN_AUDIT_FIELD_INT) {
      f->i = (long long)v;
    } else {
      cr_assert_eq(f->kind, TN_AUDIT_FIELD_BYTES);
      cr_assert_leq(i + v, len);
      f->p = p + i;
      f->n = v;
      i += v;
    }
  }
  return n;
}

static bool field_eq(const struct tn_audit_field *a, const struct tn_audit_field *b) {
  if (a->kind != b->kind)
    return false;
  if (a->kind == TN_AUDIT_FIELD_INT)
    return a->i == b->i;
  if (a->kind == TN_AUDIT_FIELD_BYTES)
    return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
  return true;
}

Test(audit_canon, every_list_of_up_to_three_tricky_fields_encodes_differently_and_decodes_back) {
  size_t total = N_ATOMS + N_ATOMS * N_ATOMS + N_ATOMS * N_ATOMS * N_ATOMS;
  struct enc *encs = calloc(total, sizeof *encs);
  cr_assert_not_null(encs);
  size_t k = 0;
  for (int n = 1; n <= 3; n++) {
    size_t combos = n == 1 ? N_ATOMS : n == 2 ? N_ATOMS * N_ATOMS : N_ATOMS * N_ATOMS * N_ATOMS;
    for (size_t c = 0; c < combos; c++) {
      struct tn_audit_field fs[3];
      size_t rest = c;
      struct enc *e = &encs[k++];
      e->n = n;
      for (int j = 0; j < n; j++) {
        e->list[j] = (int)(rest % N_ATOMS);
        fs[j] = atoms[rest % N_ATOMS];
        rest /= N_ATOMS;
      }
      struct tn_buf b;
      tn_buf_init(&b, 1 << 16);
      cr_assert_eq(tn_audit_canon_fields(fs, (size_t)n, &b), 0);
      struct tn_audit_field back[4];
      size_t m = decode((const unsigned char *)b.data, b.len, back, 4);
      cr_assert_eq(m, (size_t)n, "list %zu decoded into %zu fields", c, m);
      for (int j = 0; j < n; j++)
        cr_assert(field_eq(&fs[j], &back[j]), "field %d of list %zu does not decode back", j, c);
      e->len = b.len;
      e->data = tn_buf_take(&b);
      tn_buf_cleanup(&b);
    }
  }
  cr_assert_eq(k, total);
  qsort(encs, total, sizeof *encs, enc_cmp);
  for (size_t i = 1; i < total; i++)
    cr_assert_neq(enc_cmp(&encs[i - 1], &encs[i]), 0, "two different field lists encode the same");
  for (size_t i = 0; i < total; i++)
    free(encs[i].data);
  free(encs);
}

Test(audit_canon, unknown_kind_and_missing_bytes_are_refused) {
  struct tn_buf b;
  tn_buf_init(&b, 1024);
  struct tn_audit_field bad = {.kind = (enum tn_audit_field_kind)7};
  cr_assert_eq(tn_audit_canon_fields(&bad, 1, &b), -EINVAL);
  struct tn_audit_field nop = {.kind = TN_AUDIT_FIELD_BYTES, .p = NULL, .n = 3};
  cr_assert_eq(tn_audit_canon_fields(&nop, 1, &b), -EINVAL);
  tn_buf_cleanup(&b);
}

/* ---- row hashes ----------------------------------------------------------------------------- */

/* Two rows whose hashes were computed by an independent implementation of the encoding
 * (Python: b"TNAUDIT1" + per field 0x00 | 0x01+int64 BE | 0x02+uint64 BE length+UTF-8). */
static struct tn_audit_row kat_row(void) {
  return (struct tn_audit_row){
      .id = 42,
      .at = "2025-01-02T03:04:05.123456Z",
      .actor = "Zo\xc3\xab <zoe@acme.example>",
      .action = "activate",
      .target = "tenant/acme",
      .request_id = NULL,
      .correlation_id = "8c5e8f1e-0f4a-8b2c-9d3e-1a2b3c4d5e6f",
      .outcome = "started",
      .generation_before = 3,
      .generation_after = -1,
      .details = "{\"from\":\"Draft\",\"to\":\"Active\"}",
      .prev_hash = TN_AUDIT_GENESIS_HASH,
  };
}

Test(audit_hash, known_answers) {
  struct tn_audit_row r = kat_row();
  char h[TN_AUDIT_HASH_LEN];
  cr_assert_eq(tn_audit_row_hash(&r, h), 0);
  cr_assert_str_eq(h, "bae397a3be4d33997a4a575fc10a44211f2123510258bca74eb443971c15a54a");
  struct tn_audit_row r2 = {
      .id = 43,
      .at = "2025-01-02T03:04:05.223456Z",
      .actor = "tenancy-operator",
      .action = "activate",
      .target = "tenant/acme",
      .request_id = "req-1",
      .correlation_id = "8c5e8f1e-0f4a-8b2c-9d3e-1a2b3c4d5e6f",
      .outcome = "succeeded",
      .generation_before = 3,
      .generation_after = 4,
      .details = NULL,
      .prev_hash = h,
  };
  char h2[TN_AUDIT_HASH_LEN];
  cr_assert_eq(tn_audit_row_hash(&r2, h2), 0);
  cr_assert_str_eq(h2, "894a8843578320faaebafba3334679e44e145b7b5059fe9de621d5b5a193503e");
  cr_assert(tn_audit_hash_valid(h2));
}

Test(audit_hash, null_empty_and_zero_hash_differently) {
  struct tn_audit_row a = kat_row(), b = kat_row();
  char ha[TN_AUDIT_HASH_LEN], hb[TN_AUDIT_HASH_LEN];
  a.request_id = NULL;
  b.request_id = "";
  tn_audit_row_hash(&a, ha);
  tn_audit_row_hash(&b, hb);
  cr_assert_str_neq(ha, hb, "NULL and empty request_id must differ");
  a = kat_row();
  b = kat_row();
  a.generation_after = -1;
  b.generation_after = 0;
  tn_audit_row_hash(&a, ha);
  tn_audit_row_hash(&b, hb);
  cr_assert_str_neq(ha, hb, "no generation and generation 0 must differ");
  /* A value moved from one column into its neighbour. */
  a = kat_row();
  b = kat_row();
  a.action = "activate";
  a.target = "tenant/acme";
  b.action = "activatetenant/";
  b.target = "acme";
  tn_audit_row_hash(&a, ha);
  tn_audit_row_hash(&b, hb);
  cr_assert_str_neq(ha, hb);
}

Test(audit_hash, hash_syntax) {
  cr_assert(tn_audit_hash_valid(TN_AUDIT_GENESIS_HASH));
  cr_assert_not(tn_audit_hash_valid(NULL));
  cr_assert_not(tn_audit_hash_valid(""));
  cr_assert_not(tn_audit_hash_valid("BAE397A3BE4D33997A4A575FC10A44211F2123510258BCA74EB443971C15A54A"));
  cr_assert_not(tn_audit_hash_valid("bae397a3be4d33997a4a575fc10a44211f2123510258bca74eb443971c15a54"));
  cr_assert_not(tn_audit_hash_valid("bae397a3be4d33997a4a575fc10a44211f2123510258bca74eb443971c15a54aa"));
  cr_assert_not(tn_audit_hash_valid("gae397a3be4d33997a4a575fc10a44211f2123510258bca74eb443971c15a54a"));
}

/* ---- in-memory chains --------------------------------------------------------------------- */

#define N_ROWS 10

/* A chain of N_ROWS rows with ids first_id.., each with its own storage. */
struct mem_chain {
  struct tn_audit_row rows[N_ROWS];
  char at[N_ROWS][32], actor[N_ROWS][32], details[N_ROWS][64], corr[N_ROWS][40], req[N_ROWS][16];
  char prev[N_ROWS][TN_AUDIT_HASH_LEN], hash[N_ROWS][TN_AUDIT_HASH_LEN];
  char head_prev[TN_AUDIT_HASH_LEN];
};

static void rehash(struct mem_chain *m, int i) {
  cr_assert_eq(tn_audit_row_hash(&m->rows[i], m->hash[i]), 0);
  m->rows[i].hash = m->hash[i];
}

static void build(struct mem_chain *m, long long first_id, const char *head_prev) {
  memset(m, 0, sizeof *m);
  snprintf(m->head_prev, sizeof m->head_prev, "%s", head_prev ? head_prev : TN_AUDIT_GENESIS_HASH);
  for (int i = 0; i < N_ROWS; i++) {
    snprintf(m->at[i], sizeof m->at[i], "2025-01-02T03:04:%02d.%06dZ", i, i * 1111);
    snprintf(m->actor[i], sizeof m->actor[i], "user-%d", i);
    snprintf(m->details[i], sizeof m->details[i], "{\"step\":%d}", i);
    snprintf(m->corr[i], sizeof m->corr[i], "corr-%d", i / 2);
    snprintf(m->req[i], sizeof m->req[i], "req-%d", i);
    snprintf(m->prev[i], sizeof m->prev[i], "%s", i == 0 ? m->head_prev : m->hash[i - 1]);
    m->rows[i] = (struct tn_audit_row){
        .id = first_id + i,
        .at = m->at[i],
        .actor = m->actor[i],
        .action = i % 2 ? "suspend" : "activate",
        .target = "tenant/acme",
        .request_id = i % 3 ? m->req[i] : NULL,
        .correlation_id = m->corr[i],
        .outcome = i % 2 ? TN_AUDIT_SUCCEEDED : TN_AUDIT_STARTED,
        .generation_before = i,
        .generation_after = i % 4 ? i + 1 : -1,
        .details = i % 2 ? m->details[i] : NULL,
        .prev_hash = m->prev[i],
    };
    rehash(m, i);
  }
}

/* Feeds rows[order[0..n)] and returns the verifier's result. */
static int feed(struct tn_audit_chain *c, struct mem_chain *m, const int *order, int n) {
  int rc = 0;
  for (int k = 0; k < n; k++) {
    int r = tn_audit_chain_feed(c, &m->rows[order ? order[k] : k]);
    if (r && !rc)
      rc = r;
  }
  return rc;
}

Test(audit_chain, an_intact_chain_verifies) {
  struct mem_chain m;
  build(&m, 1, NULL);
  struct tn_audit_chain c;
  tn_audit_chain_init(&c, NULL, NULL);
  cr_assert_eq(feed(&c, &m, NULL, N_ROWS), 0, "%s", c.problem);
  cr_assert_not(c.broken);
  cr_assert_eq(c.rows, N_ROWS);
  cr_assert_eq(c.prev_id, N_ROWS);
  cr_assert_str_eq(c.expect_prev, m.hash[N_ROWS - 1]);
}

Test(audit_chain, an_empty_chain_verifies) {
  struct tn_audit_chain c;
  tn_audit_chain_init(&c, NULL, NULL);
  cr_assert_not(c.broken);
  cr_assert_eq(c.rows, 0);
}

/* Every hashed column of a middle row, changed in place (as an UPDATE would): that row fails
 * with a hash mismatch naming it, and verification stops there. */
Test(audit_chain, tampering_any_column_is_detected_at_that_row) {
  for (int col = 0; col < TN_AUDIT_ROW_FIELDS + 1; col++) {
    struct mem_chain m;
    build(&m, 1, NULL);
    struct tn_audit_row *r = &m.rows[4]; /* id 5 */
    char other[TN_AUDIT_HASH_LEN];
    snprintf(other, sizeof other, "%s", m.hash[1]);
    switch (col) {
    case 0:
      r->id = 55;
      break;
    case 1:
      r->at = "2025-01-02T03:04:04.004445Z";
      break; /* one microsecond off */
    case 2:
      r->actor = "user-4 ";
      break;
    case 3:
      r->action = "archive";
      break;
    case 4:
      r->target = "tenant/acme2";
      break;
    case 5:
      r->request_id = r->request_id ? NULL : "req-4";
      break;
    case 6:
      r->correlation_id = "corr-3";
      break;
    case 7:
      r->outcome = TN_AUDIT_FAILED;
      break;
    case 8:
      r->generation_before = -1;
      break;
    case 9:
      r->generation_after = 6;
      break;
    case 10:
      r->details = "{\"step\":4}";
      break;
    case 11:
      r->prev_hash = other;
      break;
    case 12:
      r->hash = other;
      break; /* the stored hash itself */
    }
    struct tn_audit_chain c;
    tn_audit_chain_init(&c, NULL, NULL);
    cr_assert_eq(feed(&c, &m, NULL, N_ROWS), TN_EINVALID, "column %d: tampering not detected", col);
    cr_assert(c.broken);
    long long want_id = col == 0 ? 55 : 5;
    cr_assert_eq(c.bad_id, want_id, "column %d: bad row %lld", col, c.bad_id);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "row %lld: hash mismatch (stored ", want_id);
    cr_assert(strncmp(c.problem, prefix, strlen(prefix)) == 0, "column %d: %s", col, c.problem);
    cr_assert(strstr(c.problem, ", computed "), "%s", c.problem);
    cr_assert_eq(c.rows, 4, "rows before the bad one are counted");
  }
}

Test(audit_chain, a_rewritten_row_with_a_recomputed_hash_breaks_the_next_link) {
  struct mem_chain m;
  build(&m, 1, NULL);
  m.rows[4].outcome = TN_AUDIT_FAILED;
  rehash(&m, 4); /* the forger recomputed row 5's hash, but row 6 still names the old one */
  struct tn_audit_chain c;
  tn_audit_chain_init(&c, NULL, NULL);
  cr_assert_eq(feed(&c, &m, NULL, N_ROWS), TN_EINVALID);
  cr_assert_eq(c.bad_id, 6);
  cr_assert(strncmp(c.problem, "row 6: prev_hash does not match row 5", 37) == 0, "%s", c.problem);
}

Test(audit_chain, a_deleted_middle_row_is_detected) {
  struct mem_chain m;
  build(&m, 1, NULL);
  int order[] = {0, 1, 2, 3, 5, 6, 7, 8, 9}; /* id 5 removed */
  struct tn_audit_chain c;
  tn_audit_chain_init(&c, NULL, NULL);
  cr_assert_eq(feed(&c, &m, order, 9), TN_EINVALID);
  cr_assert_eq(c.bad_id, 6);
  cr_assert(strncmp(c.problem, "row 6: prev_hash does not match row 4", 37) == 0, "%s", c.problem);
}

Test(audit_chain, reordered_rows_are_detected) {
  struct mem_chain m;
  build(&m, 1, NULL);
  /* Fed out of order (ids 1 2 3 4 6 5 ...). */
  int order[] = {0, 1, 2, 3, 5, 4, 6, 7, 8, 9};
  struct tn_audit_chain c;
  tn_audit_chain_init(&c, NULL, NULL);
  cr_assert_eq(feed(&c, &m, order, N_ROWS), TN_EINVALID);
  cr_assert_eq(c.bad_id, 6);
  cr_assert(strstr(c.problem, "prev_hash does not match row 4"), "%s", c.problem);

  /* Swapped contents under the original ids (what an ORDER BY id would then return). */
  build(&m, 1, NULL);
  struct tn_audit_row t = m.rows[4];
  m.rows[4] = m.rows[5];
  m.rows[5] = t;
  m.rows[4].id = 5;
  m.rows[5].id = 6;
  tn_audit_chain_init(&c, NULL, NULL);
  cr_assert_eq(feed(&c, &m, NULL, N_ROWS), TN_EINVALID);
  cr_assert_eq(c.bad_id, 5);
  cr_assert(strncmp(c.problem, "row 5: hash mismatch", 20) == 0, "%s", c.problem);

  /* A row repeated: ids must strictly ascend. */
  build(&m, 1, NULL);
  int dup[] = {0, 1, 1};
  tn_audit_chain_init(&c, NULL, NULL);
  cr_assert_eq(feed(&c, &m, dup, 3), TN_EINVALID);
  cr_assert_str_eq(c.problem, "row 2: id is not above the previous row 2");
}

Test(audit_chain, first_row_must_follow_the_genesis_or_the_prune_checkpoint) {
  struct mem_chain m;
  char pruned_hash[TN_AUDIT_HASH_LEN];
  /* A chain whose rows 1..100 were pruned: row 101 chains to row 100's hash. */
  snprintf(pruned_hash, sizeof pruned_hash, "%s",
           "5d41402abc4b2a76b9719d911017c592aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  build(&m, 101, pruned_hash);
  struct tn_audit_chain c;

  tn_audit_chain_init(&c, pruned_hash, "the prune checkpoint in row 120");
  cr_assert_eq(feed(&c, &m, NULL, N_ROWS), 0, "%s", c.problem);

  tn_audit_chain_init(&c, NULL, NULL);
  cr_assert_eq(feed(&c, &m, NULL, N_ROWS), TN_EINVALID);
  cr_assert_eq(c.bad_id, 101);
  cr_assert(strstr(c.problem, "row 101: prev_hash is not the genesis value and no prune checkpoint"), "%s",
            c.problem);

  /* More rows removed than the checkpoint says (the head of the table cut further). */
  int order[] = {3, 4, 5, 6, 7, 8, 9};
  tn_audit_chain_init(&c, pruned_hash, "the prune checkpoint in row 120");
  cr_assert_eq(feed(&c, &m, order, 7), TN_EINVALID);
  cr_assert_eq(c.bad_id, 104);
  cr_assert(strstr(c.problem, "row 104: prev_hash does not match the prune checkpoint in row 120"), "%s",
            c.problem);
}

Test(audit_chain, the_first_problem_is_kept) {
  struct mem_chain m;
  build(&m, 1, NULL);
  m.rows[2].actor = "mallory";
  m.rows[7].actor = "mallory";
  struct tn_audit_chain c;
  tn_audit_chain_init(&c, NULL, NULL);
  cr_assert_eq(feed(&c, &m, NULL, N_ROWS), TN_EINVALID);
  cr_assert_eq(c.bad_id, 3);
  cr_assert_eq(tn_audit_chain_feed(&c, &m.rows[0]), TN_EINVALID);
  cr_assert_eq(c.bad_id, 3);
  cr_assert(strncmp(c.problem, "row 3: hash mismatch", 20) == 0, "%s", c.problem);
}

Test(audit_chain, a_malformed_stored_hash_is_named) {
  struct mem_chain m;
  build(&m, 1, NULL);
  m.rows[0].hash = NULL;
  struct tn_audit_chain c;
  tn_audit_chain_init(&c, NULL, NULL);
  cr_assert_eq(feed(&c, &m, NULL, 1), TN_EINVALID);
  cr_assert(strstr(c.problem, "row 1: stored hash is not 64 lowercase hex digits"), "%s", c.problem);
}

/* ---- retention ---------------------------------------------------------------------------- */

Test(audit_retention, parses_days) {
  int d = 0;
  cr_assert_eq(tn_audit_parse_retention("2555d", &d), 0);
  cr_assert_eq(d, 2555);
  cr_assert_eq(tn_audit_parse_retention("1d", &d), 0);
  cr_assert_eq(d, 1);
  const char *bad[] = {"",         "d",    "0d",     "10",     "10h",
                       "-1d",      "1.5d", "2555d ", " 2555d", "99999999999999999999d",
                       "3650001d", "2555D"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(tn_audit_parse_retention(bad[i], &d), -EINVAL, "\"%s\" accepted", bad[i]);
  cr_assert_eq(tn_audit_parse_retention(NULL, &d), -EINVAL);
}

/* ---- TLS of the audit connection (tn_audit_open parses, never connects) ------------------- */

static const char *tls_warning_of(const char *dsn, struct tn_audit **a) {
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_open(dsn, NULL, a, &err), 0, "%s", err.message);
  return tn_audit_tls_warning(*a);
}

Test(audit_tls, verify_full_or_no_sslmode_is_not_warned) {
  const char *quiet[] = {"host=db.example user=op password=pw-secret-1 dbname=t",
                         "postgresql://op:pw-secret-1@db.example/t",
                         "postgresql://op:pw-secret-1@db.example/t?sslmode=verify-full&sslrootcert=/ca.crt",
                         "host=db.example sslmode=verify-full"};
  for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++) {
    struct tn_audit *a = NULL;
    cr_assert_null(tls_warning_of(quiet[i], &a), "%s", quiet[i]);
    tn_audit_close(a);
  }
}

Test(audit_tls, every_weaker_sslmode_stated_in_the_dsn_is_warned_without_the_password) {
  const char *modes[] = {"verify-ca", "require", "prefer", "allow", "disable"};
  const char *means[] = {"not its host name", "not authenticated", "fall back to plaintext",
                         "plaintext unless", "plaintext"};
  for (size_t i = 0; i < 5; i++) {
    char dsn[256], want[64];
    snprintf(dsn, sizeof dsn, "postgresql://op:pw-secret-1@db.example/t?sslmode=%s", modes[i]);
    snprintf(want, sizeof want, "asks explicitly for sslmode=%s:", modes[i]);
    struct tn_audit *a = NULL;
    const char *w = tls_warning_of(dsn, &a);
    cr_assert_not_null(w, "%s", dsn);
    cr_assert(strstr(w, want), "%s", w);
    cr_assert(strstr(w, means[i]), "%s", w);
    cr_assert_null(strstr(w, "pw-secret-1"), "%s", w);
    cr_assert_null(strstr(w, "db.example"), "%s", w);
    tn_audit_close(a);
  }
}
