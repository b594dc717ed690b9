/* readiness.h - what /readyz answers, as a pure decision over what the process knows (no I/O, no
 * locks), so that every order of the start-up's steps can be checked by a unit test. */
#ifndef TN_RUNTIME_READINESS_H
#define TN_RUNTIME_READINESS_H

#include <stdbool.h>
#include <stddef.h>

/* A snapshot of the start-up's state, read by the probe's thread. */
struct tn_readiness {
  bool shutting_down;      /* SIGTERM received or leadership lost: always 503 from here on */
  bool manager_ready;      /* the manager's answer: every cache synced and, once its workers are
                            * started, their first pass over every cached tenant done */
  const char *manager_why; /* why not, when !manager_ready (borrowed; NULL: a generic reason) */
  bool should_run_workers; /* this replica leads, or runs without leader election */
  bool workers_started;    /* main started the workers (every cached tenant queued before) */
};

/* Whether /readyz answers 200; when not, a reason into why (n bytes). A standby (should_run_workers
 * false) is ready once its caches synced: it serves the webhook and the read API. A replica that
 * should run the workers is ready only once they started and their first pass is done: between the
 * caches syncing and main starting the workers (its next turn, longer under load) the manager alone
 * said ready, although nothing had been checked (session 24's restart with 10,100 tenants answered
 * ready after 559 reconciles). */
bool tn_readiness_decide(const struct tn_readiness *r, char *why, size_t n);

#endif
