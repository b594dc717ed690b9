/* memtrim.h - gives the C library's free heap memory back to the kernel.
 *
 * The operator's memory is mostly long-lived (its caches: ~3 KB per tenant) interleaved with
 * short-lived work (a watch event's JSON tree, a reconcile's desired objects). glibc's malloc keeps
 * what such work frees inside its arenas, one per thread that allocated, and only gives back the
 * top of each heap: after converging 10,000 tenants the process held ~17 MiB more than a fresh
 * one with the same caches (docs/benchmarks.md, "Memory at 10,000 tenants (session 24)"). Two
 * measures, both before any thread starts or from one thread of their own:
 *   - at most TN_MEMTRIM_ARENAS arenas (M_ARENA_MAX) unless MALLOC_ARENA_MAX is set, and a fixed
 *     mmap threshold (TN_MEMTRIM_MMAP_THRESHOLD, M_MMAP_THRESHOLD) unless MALLOC_MMAP_THRESHOLD_
 *     is set: glibc's own threshold rises to the size of every mmapped block freed (a store's key
 *     table, a list's buffer: up to 1 MiB), after which such blocks come from the arenas, where
 *     they fragment what the trim can return;
 *   - a thread that every interval reads how much free memory the arenas hold (mallinfo2) and,
 *     above a threshold, calls malloc_trim(0), which returns the free pages of every arena. */
#ifndef TN_MEMTRIM_H
#define TN_MEMTRIM_H

#include <stdbool.h>
#include <stddef.h>

#define TN_MEMTRIM_ARENAS 2
#define TN_MEMTRIM_MMAP_THRESHOLD (128u << 10) /* blocks from this size on: their own mapping */
#define TN_MEMTRIM_DEFAULT_INTERVAL_S 5.0
#define TN_MEMTRIM_DEFAULT_THRESHOLD (1u << 20) /* free bytes in the arenas before a trim */

/* The arena limit to set: TN_MEMTRIM_ARENAS, or 0 when MALLOC_ARENA_MAX (looked up with
 * getenv_fn) decides. */
int tn_memtrim_arena_limit(char *(*getenv_fn)(const char *));
/* Sets it, and the fixed mmap threshold (call first thing in main, before any thread). Returns
 * the arena limit set, 0 when the environment decides, -1 when the allocator refused (a
 * sanitizer's). */
int tn_memtrim_limit_arenas(char *(*getenv_fn)(const char *));

/* Whether a trim is worth it: free bytes held in the arenas above the threshold, and more than
 * the last trim left behind by at least the threshold (pages a trim cannot return, in the middle
 * of chunks in use, are not worth a walk every interval). */
bool tn_memtrim_due(size_t free_bytes, size_t left_after_last, size_t threshold);

struct tn_memtrim; /* opaque */

/* Starts the thread. interval_s > 0. Returns 0, -EINVAL, -ENOMEM or -errno (pthread_create). */
int tn_memtrim_start(double interval_s, size_t threshold, struct tn_memtrim **out);
/* Trims counted so far (for tests and the log). */
unsigned long tn_memtrim_count(const struct tn_memtrim *m);
/* Stops the thread and frees. Accepts NULL. */
void tn_memtrim_stop(struct tn_memtrim *m);

#endif
