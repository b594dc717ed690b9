/* test_wipe.c - secrets leave no copy in freed memory (wipe.c, buf.c) and the process hardening. */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <jansson.h>
#include <malloc.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "util/buf.h"
#include "util/wipe.h"

static bool all_zero(const void *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (((const unsigned char *)p)[i])
      return false;
  return true;
}

Test(wipe, harden_makes_the_process_non_dumpable_without_core_files) {
  struct rlimit before;
  cr_assert_eq(getrlimit(RLIMIT_CORE, &before), 0);
  cr_assert_eq(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), 0); /* whatever the runner left */
  struct tn_error err = {0};
  cr_assert_eq(tn_harden_process(&err), 0, "%s", err.message);
  cr_assert_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
  struct rlimit after;
  cr_assert_eq(getrlimit(RLIMIT_CORE, &after), 0);
  cr_assert_eq(after.rlim_cur, 0);
  cr_assert_eq(after.rlim_max, 0); /* hard limit too: it cannot be raised again */
  struct rlimit up = {1 << 20, 1 << 20};
  cr_assert_neq(setrlimit(RLIMIT_CORE, &up), 0);
}

Test(wipe, json_values_are_wiped_when_freed) {
  json_malloc_t m0 = NULL;
  json_free_t f0 = NULL;
  json_get_alloc_funcs(&m0, &f0);
  cr_assert_not(tn_wipe_json_installed());
  cr_assert(tn_wipe_json_install());
  json_malloc_t m = NULL;
  json_free_t f = NULL;
  json_get_alloc_funcs(&m, &f);
  cr_assert_eq((void *)f, (void *)tn_wipe_free);
  /* JSON still works through it (a Secret's shape). */
  json_t *sec = json_pack("{s:s,s:{s:s}}", "kind", "Secret", "data", "password", "aHVudGVyMg==");
  cr_assert_not_null(sec);
  char *text = json_dumps(sec, JSON_COMPACT);
  cr_assert_str_eq(text, "{\"kind\":\"Secret\",\"data\":{\"password\":\"aHVudGVyMg==\"}}");
  free(text);
  json_decref(sec);
}

/* What tn_wipe_free does to the block before free: observed through a hook-free route (the
 * wipe itself), since reading freed memory is what ASan forbids. */
Test(wipe, wipe_covers_the_whole_block) {
  char *p = malloc(40);
  cr_assert_not_null(p);
  memset(p, 'S', 40);
  size_t n = malloc_usable_size(p);
  cr_assert_geq(n, 40);
  tn_wipe(p, n);
  cr_assert(all_zero(p, n));
  free(p);
  tn_wipe_free(NULL);
  tn_wipe_free_str(NULL);
  tn_wipe_free_str(strdup("hunter2"));
}

/* tn_buf wipes what it no longer holds: the vacated tail after consume, the content on reset. */
Test(wipe, buf_wipes_consumed_and_reset_bytes) {
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(tn_buf_appends(&b, "password=hunter2;rest"), 0);
  size_t len = b.len;
  tn_buf_consume(&b, strlen("password=hunter2;"));
  cr_assert_str_eq(tn_buf_str(&b), "rest");
  /* Bytes past the NUL up to the old length were the secret's: now zeros. */
  cr_assert(all_zero(b.data + b.len, len - b.len), "consumed bytes left behind");
  cr_assert_null(memmem(b.data, b.alloc, "hunter2", 7));
  cr_assert_eq(tn_buf_appends(&b, ";token=abc"), 0);
  len = b.len;
  tn_buf_reset(&b);
  cr_assert(all_zero(b.data, len + 1), "reset left the content behind");
  /* Growing moves the content; the old block is wiped before it is freed (not observable without
   * reading freed memory; the content survives the move). */
  for (int i = 0; i < 100; i++)
    cr_assert_eq(tn_buf_appends(&b, "0123456789"), 0);
  cr_assert_eq(b.len, 1000);
  cr_assert_eq(memcmp(b.data + 990, "0123456789", 10), 0);
  tn_buf_cleanup(&b);
}
