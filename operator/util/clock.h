/* clock.h - the clocks and time formats every layer uses: monotonic seconds for deadlines and
 * intervals, wall-clock seconds only for timestamps written into objects. */
#ifndef TN_UTIL_CLOCK_H
#define TN_UTIL_CLOCK_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC (never jumps; for deadlines, timeouts and intervals). */
double tn_mono_now(void);
/* Seconds since the epoch on CLOCK_REALTIME (for timestamps people and the API server read). */
double tn_wall_now(void);
/* A monotonic instant as a timespec for pthread_cond_timedwait on a condition variable made
 * with tn_cond_init_monotonic. */
struct timespec tn_mono_timespec(double t);
/* pthread_cond_init with CLOCK_MONOTONIC. Returns 0 or -errno. */
int tn_cond_init_monotonic(pthread_cond_t *c);

/* Kubernetes MicroTime "2006-01-02T15:04:05.000000Z" of wall seconds into dst[n]. */
void tn_time_micro(double wall_s, char *dst, size_t n);
/* Kubernetes Time (RFC 3339, seconds) "2006-01-02T15:04:05Z" of wall seconds into dst[n]. */
void tn_time_rfc3339(double wall_s, char *dst, size_t n);

#endif
