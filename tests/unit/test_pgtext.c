/* test_pgtext.c - the shared PostgreSQL text helpers (util/pgtext.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/pgtext.h"

Test(pgtext, one_line_joins_libpq_messages) {
  char out[128];
  tn_pg_one_line("ERROR:  relation \"t\" does not exist\nLINE 1: select\t* from t\n", out, sizeof out);
  cr_assert_str_eq(out, "ERROR: relation \"t\" does not exist LINE 1: select * from t");
  tn_pg_one_line("  \n\n ", out, sizeof out);
  cr_assert_str_eq(out, "");
  tn_pg_one_line(NULL, out, sizeof out);
  cr_assert_str_eq(out, "");
}

Test(pgtext, one_line_truncates_within_the_buffer) {
  char out[8];
  tn_pg_one_line("abcdefghijkl", out, sizeof out);
  cr_assert_str_eq(out, "abcdefg");
  char one[1];
  tn_pg_one_line("abc", one, sizeof one);
  cr_assert_str_eq(one, "");
}

Test(pgtext, ca_file_is_private_and_holds_the_pem) {
  const char *pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  char path[512];
  cr_assert_eq(tn_pg_write_ca_file(pem, path, sizeof path), 0);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
  char buf[256] = "";
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  cr_assert_str_eq(buf, pem);
  unlink(path);
}

Test(pgtext, ca_file_error_leaves_nothing) {
  setenv("TMPDIR", "/nonexistent-tenancy-dir", 1);
  char path[512];
  cr_assert_lt(tn_pg_write_ca_file("x", path, sizeof path), 0);
  unsetenv("TMPDIR");
}
