/* fence.h - a write fence: the leader's permission to write, as a monotonic deadline that only
 * renewing the lease moves forward, checked before every write (API, audit, database). */
#ifndef TN_UTIL_FENCE_H
#define TN_UTIL_FENCE_H

#include <stdbool.h>

#include "util/error.h"

/* Opaque; every function may be called from any thread (the state is two atomics). */
struct tn_fence;

/* A new fence, open forever when open_forever (no leader election), else closed until
 * tn_fence_extend(). Returns NULL when out of memory; free it with tn_fence_free(). */
struct tn_fence *tn_fence_new(bool open_forever);
/* Accepts NULL. */
void tn_fence_free(struct tn_fence *f);

/* Writes are allowed until the monotonic time `until` (never moves backwards; a closed fence
 * stays closed). The elector calls it after each successful acquire or renew with the time the
 * request was SENT plus the renew deadline: a standby starts its expiry clock no earlier than the
 * write reached the API server, so a write begun before `until` lands while we still lead, with
 * (lease duration - renew deadline) to spare for its flight. */
void tn_fence_extend(struct tn_fence *f, double until);
/* Closes the fence for good (leadership lost or handed back). */
void tn_fence_close(struct tn_fence *f);

/* Pure core: whether a fence in this state allows a write at monotonic time now. */
bool tn_fence_allows_at(bool closed, bool open_forever, double until, double now);
/* Whether a write may start now. A NULL fence always allows. */
bool tn_fence_allows(const struct tn_fence *f);
/* 0 when a write may start now; else TN_ECANCELED with "<what>: refused: this process is no
 * longer the leader (fenced)" in err (err may be NULL). */
int tn_fence_check(const struct tn_fence *f, const char *what, struct tn_error *err);

#endif
