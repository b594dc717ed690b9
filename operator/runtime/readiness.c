/* readiness.c - the /readyz decision (see readiness.h). */
#include "runtime/readiness.h"

#include <stdio.h>

bool tn_readiness_decide(const struct tn_readiness *r, char *why, size_t n) {
  if (r->shutting_down) {
    snprintf(why, n, "shutting down");
    return false;
  }
  if (!r->manager_ready) {
    snprintf(why, n, "%s", r->manager_why && *r->manager_why ? r->manager_why : "caches not ready");
    return false;
  }
  /* The manager's own check of the first pass applies once its workers run; before main starts
   * them it has nothing to wait for, and would say ready. */
  if (r->should_run_workers && !r->workers_started) {
    snprintf(why, n, "first reconcile pass not started");
    return false;
  }
  return true;
}
