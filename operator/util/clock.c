/* clock.c - clocks and time formats (see clock.h). */
#include "util/clock.h"

#include <math.h>
#include <stdio.h>

double tn_mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double tn_wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct timespec tn_mono_timespec(double t) {
  struct timespec ts;
  if (t < 0)
    t = 0;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

int tn_cond_init_monotonic(pthread_cond_t *c) {
  pthread_condattr_t a;
  int rc = pthread_condattr_init(&a);
  if (rc)
    return -rc;
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  rc = pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
  return -rc;
}

void tn_time_micro(double wall_s, char *dst, size_t n) {
  long long us = llround(wall_s * 1e6);
  if (us < 0)
    us = 0;
  time_t secs = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char base[24];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(dst, n, "%s.%06lldZ", base, us % 1000000);
}

void tn_time_rfc3339(double wall_s, char *dst, size_t n) {
  time_t secs = (time_t)(wall_s < 0 ? 0 : wall_s);
  struct tm tm;
  gmtime_r(&secs, &tm);
  strftime(dst, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
