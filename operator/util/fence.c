/* fence.c - the write fence (see fence.h). */
#include "util/fence.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

struct tn_fence {
  bool open_forever;        /* immutable */
  atomic_bool closed;       /* once true, stays true */
  _Atomic int64_t until_ns; /* monotonic nanoseconds; 0 = closed until extended */
};

struct tn_fence *tn_fence_new(bool open_forever) {
  struct tn_fence *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->open_forever = open_forever;
  atomic_init(&f->closed, false);
  atomic_init(&f->until_ns, 0);
  return f;
}

void tn_fence_free(struct tn_fence *f) { free(f); }

void tn_fence_extend(struct tn_fence *f, double until) {
  if (!f || !isfinite(until) || until <= 0)
    return;
  int64_t want = (int64_t)(until * 1e9);
  int64_t cur = atomic_load(&f->until_ns);
  while (cur < want && !atomic_compare_exchange_weak(&f->until_ns, &cur, want))
    ;
}

void tn_fence_close(struct tn_fence *f) {
  if (f)
    atomic_store(&f->closed, true);
}

bool tn_fence_allows_at(bool closed, bool open_forever, double until, double now) {
  if (closed)
    return false;
  return open_forever || now < until;
}

bool tn_fence_allows(const struct tn_fence *f) {
  if (!f)
    return true;
  struct tn_fence *m = (struct tn_fence *)f; /* atomics are read-only here */
  return tn_fence_allows_at(atomic_load(&m->closed), f->open_forever, (double)atomic_load(&m->until_ns) / 1e9,
                            tn_mono_now());
}

int tn_fence_check(const struct tn_fence *f, const char *what, struct tn_error *err) {
  if (tn_fence_allows(f))
    return 0;
  return tn_error_set(err, TN_ECANCELED, "%s: refused: this process is no longer the leader (fenced)",
                      what ? what : "write");
}
