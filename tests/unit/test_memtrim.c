/* test_memtrim.c - when the heap trimmer trims, and that it starts and stops cleanly. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/memtrim.h"

#define MiB (1u << 20)

Test(memtrim, trims_only_above_the_threshold) {
  cr_expect_not(tn_memtrim_due(0, 0, 4 * MiB));
  cr_expect_not(tn_memtrim_due(4 * MiB, 0, 4 * MiB), "at the threshold: not yet");
  cr_expect(tn_memtrim_due(4 * MiB + 1, 0, 4 * MiB));
  cr_expect(tn_memtrim_due(64 * MiB, 0, 4 * MiB));
}

Test(memtrim, does_not_walk_again_for_what_a_trim_could_not_return) {
  /* The last trim left 10 MiB free (in chunks between live ones): nothing new to return. */
  cr_expect_not(tn_memtrim_due(10 * MiB, 10 * MiB, 4 * MiB));
  cr_expect_not(tn_memtrim_due(14 * MiB, 10 * MiB, 4 * MiB), "only the threshold more: not yet");
  cr_expect(tn_memtrim_due(14 * MiB + 1, 10 * MiB, 4 * MiB), "more than the threshold freed since");
}

static char *env_with_arena_max(const char *name) { return strcmp(name, "MALLOC_ARENA_MAX") ? NULL : "4"; }
static char *env_empty(const char *name) {
  (void)name;
  return NULL;
}

Test(memtrim, arena_limit_leaves_malloc_arena_max_to_the_environment) {
  cr_expect_eq(tn_memtrim_arena_limit(env_with_arena_max), 0, "MALLOC_ARENA_MAX set: glibc's, not ours");
  cr_expect_eq(tn_memtrim_arena_limit(env_empty), TN_MEMTRIM_ARENAS);
  cr_expect_eq(tn_memtrim_arena_limit(NULL), TN_MEMTRIM_ARENAS);
  cr_expect_eq(tn_memtrim_limit_arenas(env_with_arena_max), 0, "nothing set when the environment decides");
}

Test(memtrim, starts_runs_and_stops) {
  struct tn_memtrim *m = NULL;
  cr_assert_eq(tn_memtrim_start(0, 4 * MiB, &m), -22, "interval 0 refused (-EINVAL)");
  cr_assert_null(m);
  cr_assert_eq(tn_memtrim_start(0.01, 0, &m), 0);
  cr_assert_not_null(m);
  /* Free memory in the heap with threshold 0: the thread trims within a few intervals. (Under
   * AddressSanitizer mallinfo2 reports its own allocator's figures, possibly 0: then no trim is
   * due, which this test accepts only as 0 trims, never as a crash or a hang.) */
  void *keep[256];
  for (int i = 0; i < 256; i++)
    keep[i] = malloc(16384);
  for (int i = 0; i < 256; i += 2)
    free(keep[i]);
  usleep(100 * 1000);
  unsigned long n = tn_memtrim_count(m);
  tn_memtrim_stop(m);
  for (int i = 1; i < 256; i += 2)
    free(keep[i]);
  cr_expect_eq(tn_memtrim_count(NULL), 0);
  cr_log_info("trims in 100 ms: %lu", n);
}
