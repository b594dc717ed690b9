/* test_b64.c - decoding Secret values (util/b64.h). */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "util/b64.h"
#include "util/wipe.h"

static void expect(const char *in, const char *want) {
  char *got = tn_b64_decode_text(in);
  if (!want) {
    cr_assert_null(got, "%s decoded", in ? in : "(null)");
    return;
  }
  cr_assert_not_null(got, "%s not decoded", in);
  cr_assert_str_eq(got, want);
  tn_wipe_free(got);
}

Test(b64, decodes_with_and_without_padding) {
  expect("cG9zdGdyZXM=", "postgres");
  expect("YWJj", "abc");
  expect("YQ==", "a");
  expect("NTQzMg==", "5432");
}

Test(b64, refuses_what_is_not_base64) {
  expect(NULL, NULL);
  expect("", NULL);
  expect("abc", NULL);  /* not a multiple of 4 */
  expect("a*c=", NULL); /* not in the alphabet */
}
