/* memtrim.c - see memtrim.h. */
#include "runtime/memtrim.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "runtime/log.h"
#include "util/clock.h"

int tn_memtrim_arena_limit(char *(*getenv_fn)(const char *)) {
  const char *env = getenv_fn ? getenv_fn("MALLOC_ARENA_MAX") : NULL;
  return env && *env ? 0 : TN_MEMTRIM_ARENAS;
}

int tn_memtrim_limit_arenas(char *(*getenv_fn)(const char *)) {
  const char *mmap_env = getenv_fn ? getenv_fn("MALLOC_MMAP_THRESHOLD_") : NULL;
  if (!(mmap_env && *mmap_env))
    mallopt(M_MMAP_THRESHOLD, (int)TN_MEMTRIM_MMAP_THRESHOLD); /* refused under a sanitizer: fine */
  int n = tn_memtrim_arena_limit(getenv_fn);
  if (n == 0)
    return 0;
  return mallopt(M_ARENA_MAX, n) == 1 ? n : -1;
}

bool tn_memtrim_due(size_t free_bytes, size_t left_after_last, size_t threshold) {
  return free_bytes > threshold && free_bytes - threshold > left_after_last;
}

struct tn_memtrim {
  double interval_s;
  size_t threshold;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop; /* under mu */
  atomic_ulong trims;
  pthread_t thread;
};

static size_t arena_free_bytes(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.fordblks;
}

static void *run(void *p) {
  struct tn_memtrim *m = p;
  size_t left = 0;
  for (;;) {
    struct timespec until = tn_mono_timespec(tn_mono_now() + m->interval_s);
    pthread_mutex_lock(&m->mu);
    while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &until) != ETIMEDOUT)
      ;
    bool stop = m->stop;
    pthread_mutex_unlock(&m->mu);
    if (stop)
      return NULL;
    size_t before = arena_free_bytes();
    if (!tn_memtrim_due(before, left, m->threshold)) {
      if (before < left)
        left = before; /* work reused what the last trim left: measure from here */
      continue;
    }
    double t0 = tn_mono_now();
    malloc_trim(0);
    left = arena_free_bytes();
    atomic_fetch_add(&m->trims, 1);
    tn_log_debug("memory: returned the free pages of %.1f MiB free in the heap (%.1f ms)",
                 (double)before / 1048576.0, (tn_mono_now() - t0) * 1000.0);
  }
}

int tn_memtrim_start(double interval_s, size_t threshold, struct tn_memtrim **out) {
  *out = NULL;
  if (!(interval_s > 0))
    return -EINVAL;
  struct tn_memtrim *m = calloc(1, sizeof *m);
  if (!m)
    return -ENOMEM;
  m->interval_s = interval_s;
  m->threshold = threshold;
  pthread_mutex_init(&m->mu, NULL);
  int rc = tn_cond_init_monotonic(&m->cv);
  if (rc) {
    pthread_mutex_destroy(&m->mu);
    free(m);
    return rc;
  }
  rc = pthread_create(&m->thread, NULL, run, m);
  if (rc) {
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
    return -rc;
  }
  *out = m;
  return 0;
}

unsigned long tn_memtrim_count(const struct tn_memtrim *m) { return m ? atomic_load(&m->trims) : 0; }

void tn_memtrim_stop(struct tn_memtrim *m) {
  if (!m)
    return;
  pthread_mutex_lock(&m->mu);
  m->stop = true;
  pthread_cond_signal(&m->cv);
  pthread_mutex_unlock(&m->mu);
  pthread_join(m->thread, NULL);
  pthread_cond_destroy(&m->cv);
  pthread_mutex_destroy(&m->mu);
  free(m);
}
