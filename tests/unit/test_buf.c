/* test_buf.c - the capped growable buffer. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

Test(buf, appends_and_terminates) {
  struct tn_buf b;
  tn_buf_init(&b, 1024);
  cr_assert_str_eq(tn_buf_str(&b), "");
  cr_assert_eq(tn_buf_appends(&b, "hello"), 0);
  cr_assert_eq(tn_buf_printf(&b, " %s %d", "world", 42), 0);
  cr_assert_str_eq(tn_buf_str(&b), "hello world 42");
  cr_assert_eq(b.len, 14);
  tn_buf_cleanup(&b);
}

Test(buf, refuses_to_pass_its_cap_and_keeps_content) {
  struct tn_buf b;
  tn_buf_init(&b, 8);
  cr_assert_eq(tn_buf_appends(&b, "12345678"), 0);
  cr_assert_eq(tn_buf_append(&b, "9", 1), TN_ERR_TOOBIG);
  cr_assert_eq(tn_buf_printf(&b, "%d", 1), TN_ERR_TOOBIG);
  cr_assert_str_eq(tn_buf_str(&b), "12345678");
  tn_buf_cleanup(&b);
  tn_buf_init(&b, 8);
  cr_assert_eq(tn_buf_append(&b, "x", (size_t)-1), TN_ERR_TOOBIG, "a huge length must not wrap around");
  tn_buf_cleanup(&b);
}

Test(buf, grows_past_the_first_allocation) {
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  for (int i = 0; i < 10000; i++)
    cr_assert_eq(tn_buf_append(&b, "ab", 2), 0);
  cr_assert_eq(b.len, 20000);
  cr_assert_eq(b.data[19999], 'b');
  cr_assert_eq(b.data[20000], '\0');
  tn_buf_cleanup(&b);
}

Test(buf, consume_keeps_the_tail) {
  struct tn_buf b;
  tn_buf_init(&b, 64);
  tn_buf_appends(&b, "line1\nline2");
  tn_buf_consume(&b, 6);
  cr_assert_str_eq(tn_buf_str(&b), "line2");
  tn_buf_consume(&b, 100);
  cr_assert_eq(b.len, 0);
  cr_assert_str_eq(tn_buf_str(&b), "");
  tn_buf_cleanup(&b);
}

Test(buf, take_transfers_ownership) {
  struct tn_buf b;
  tn_buf_init(&b, 64);
  char *empty = tn_buf_take(&b);
  cr_assert_str_eq(empty, "");
  free(empty);
  tn_buf_appends(&b, "abc");
  char *s = tn_buf_take(&b);
  cr_assert_str_eq(s, "abc");
  cr_assert_null(b.data);
  free(s);
  tn_buf_cleanup(&b);
  tn_buf_cleanup(NULL);
}
