/* leader.h - leader election on a coordination.k8s.io/v1 Lease, with the semantics of
 * client-go's tools/leaderelection and a LeaseLock (see docs/internals/leader-election.md). */
#ifndef TN_RUNTIME_LEADER_H
#define TN_RUNTIME_LEADER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

struct tn_kube;
struct tn_metrics;
struct tn_fence;

/* ---- the elector ------------------------------------------------------------------------- */

/* Defaults, as client-go and controller-runtime use them. */
#define TN_LEADER_LEASE_DURATION_S 15.0
#define TN_LEADER_RENEW_DEADLINE_S 10.0
#define TN_LEADER_RETRY_PERIOD_S 2.0

/* Every string is borrowed for the duration of tn_leader_new() (it copies them). */
struct tn_leader_config {
  const char *namespace; /* of the Lease (--leader-election-namespace) */
  const char *name;      /* of the Lease, e.g. "tenancy-operator-leader" */
  const char *identity;  /* NULL: tn_leader_default_identity() */
  /* 0 means the default. A standby takes the lease over lease_duration_s after it last saw the
   * record change (whole seconds, >= 1, written to spec.leaseDurationSeconds); the leader gives
   * up when it could not renew for renew_deadline_s; every attempt is retry_period_s apart.
   * Required: lease_duration_s > renew_deadline_s > 1.2 * retry_period_s. */
  double lease_duration_s;
  double renew_deadline_s;
  double retry_period_s;
  /* On tn_leader_stop() while leading, write holderIdentity "" and leaseDurationSeconds 1 so a
   * standby takes over at once instead of waiting for the lease to expire. */
  bool release_on_cancel;
  /* Callbacks, each optional, all run on the elector's thread, one at a time; they must return
   * quickly (the renew loop waits for them) and must not call tn_leader_stop/free.
   * on_started_leading: this process now holds the lease.
   * on_stopped_leading: it no longer does, because renewing failed for renew_deadline_s (the
   *   caller should then exit, as controller-runtime does) or because tn_leader_stop() was
   *   called (tn_leader_lost() tells which); only ever called after on_started_leading, and
   *   before tn_leader_stop() returns.
   * on_new_leader: the observed holder changed (including to ourselves, and to "" after a
   *   release); identity is borrowed for the call. */
  void (*on_started_leading)(void *ud);
  void (*on_stopped_leading)(void *ud);
  void (*on_new_leader)(void *ud, const char *identity);
  void *ud;
  /* NULL, or a registry in which leader_election_master_status{name} (1 leading, 0 not) is
   * kept; borrowed, must outlive the elector. */
  struct tn_metrics *metrics;
  /* NULL, or the write fence (borrowed, must outlive the elector): opened until (send time of the
   * last successful acquire/renew + renew_deadline_s) after each one, closed for good when
   * leadership ends, before on_stopped_leading and before the lease is released. */
  struct tn_fence *fence;
  /* false (the default): while it runs, the elector also watches the Lease (list and watch on
   * leases, which the shipped Role grants), so a standby observes each renewal when it happens
   * and takes a dead leader's lease over lease_duration_s after its last renewal, not up to a
   * jittered retry period later; true: it only reads the Lease every retry period, as client-go. */
  bool no_watch;
};

struct tn_leader; /* opaque; every function may be called from any thread */

/* Validates cfg and prepares an elector (no I/O, no thread yet). kube is borrowed and must
 * outlive the elector. Returns 0, or TN_ECONFIG with a message naming the bad setting, or
 * -ENOMEM. The caller frees *out with tn_leader_free(). */
int tn_leader_new(struct tn_kube *kube, const struct tn_leader_config *cfg, struct tn_leader **out,
                  struct tn_error *err);
/* Starts the elector's thread: it tries to acquire the lease every retry period (jittered) and,
 * once it holds it, renews it until it fails or is stopped. An elector runs once: after it lost
 * the lease it stays stopped. Returns 0, -EALREADY, or -errno when the thread cannot start. */
int tn_leader_start(struct tn_leader *le);
/* Stops the thread and waits for it: cancels requests in flight, releases the lease when
 * release_on_cancel and leading (bounded by renew_deadline_s), calls on_stopped_leading when it
 * was leading. Idempotent; fine without tn_leader_start(). */
void tn_leader_stop(struct tn_leader *le);
/* tn_leader_stop(), then frees. Accepts NULL. */
void tn_leader_free(struct tn_leader *le);

/* Whether this elector holds the lease now (between on_started_leading and on_stopped_leading). */
bool tn_leader_is_leader(struct tn_leader *le);
/* Whether the elector thread has finished (stopped, or lost the lease). */
bool tn_leader_done(struct tn_leader *le);
/* Whether leadership ended because renewing failed (not because of tn_leader_stop()): what an
 * on_stopped_leading callback checks before exiting the process. */
bool tn_leader_lost(struct tn_leader *le);
/* This elector's identity; owned by the elector. */
const char *tn_leader_identity(const struct tn_leader *le);
/* Copies the last observed holder ("" when none or not yet observed) into dst (truncated). */
void tn_leader_observed_holder(struct tn_leader *le, char *dst, size_t n);

/* "<hostname>_<32 hex digits from RAND_bytes>" into dst (truncated to n-1). Returns 0 or a
 * negative code when no randomness is available. */
int tn_leader_default_identity(char *dst, size_t n);

/* ---- the decision core: pure, no I/O and no clock (exposed for unit tests) ---------------- */

/* The election fields of a Lease's spec. An absent holderIdentity is "". Times are MicroTime
 * strings ("2006-01-02T15:04:05.000000Z") and are only ever carried, never compared: expiry is
 * judged with the local monotonic clock, from when this process saw the record change. */
struct tn_lease_record {
  char holder[256];
  int lease_duration_s;
  char acquire_time[40];
  char renew_time[40];
  int transitions;
};

/* What one elector knows; caller-owned plain data (tn_leader_core_init it). `now` arguments
 * are monotonic seconds from the caller's clock; `wall_now` arguments are wall-clock seconds
 * since the epoch, only ever written into acquireTime/renewTime as MicroTime. */
struct tn_leader_core {
  char identity[256];
  int lease_duration_s; /* what we write when we hold the lease */
  bool observed_any;    /* a record has been observed (or written) */
  struct tn_lease_record observed;
  double observed_time;      /* when `observed` last changed, by our clock */
  char reported_leader[256]; /* the holder last announced through on_new_leader */
};

enum tn_lease_action {
  TN_LEASE_WAIT,   /* held by someone else and not expired: nothing to write */
  TN_LEASE_CREATE, /* no Lease exists: create it */
  TN_LEASE_UPDATE  /* PUT this record (with the resourceVersion we read) */
};

void tn_leader_core_init(struct tn_leader_core *c, const char *identity, int lease_duration_s);
/* The last observed holder is us. */
bool tn_leader_core_is_leader(const struct tn_leader_core *c);
/* observed_time + observed.lease_duration_s is still in the future. */
bool tn_leader_core_lease_valid(const struct tn_leader_core *c, double now);
/* How long a candidate that does not hold the lease should wait before its next attempt: wait (its
 * jittered retry period), cut short to just past the moment the lease it observed expires, so a
 * standby takes over a dead leader's lease as soon as it may instead of up to a jittered retry
 * period later. wait itself when the holder is us, nothing is observed, or the observed lease had
 * expired already (the last attempt failed: retry at the ordinary pace). */
double tn_leader_core_next_attempt(const struct tn_leader_core *c, double now, double wait);
/* The fast path of a leader: when we hold a valid lease, fills *want with a renewal (renewTime
 * now, acquireTime and transitions kept) to PUT without reading first, and returns true. */
bool tn_leader_core_fast_renew(const struct tn_leader_core *c, double now, double wall_now,
                               struct tn_lease_record *want);
/* A read of the Lease: rec is its record, or NULL when the Lease does not exist. Records the
 * observation (observed_time moves only when the record differs from the one we knew) and
 * decides what to write; *want is filled for CREATE and UPDATE. */
enum tn_lease_action tn_leader_core_decide(struct tn_leader_core *c, const struct tn_lease_record *rec,
                                           double now, double wall_now, struct tn_lease_record *want);
/* A watch event brought rec at `now` (issue 18: a standby that only polled saw each renewal up
 * to a jittered retry period late, and took a dead leader's lease over that much later). Like a
 * read, it moves observed_time only when the record differs from the one we knew. Ignored while
 * we are the observed holder, and for a record naming us: our own writes are recorded by
 * tn_leader_core_written, and a late event of an older one must not replace them. Returns true
 * when the observation changed. */
bool tn_leader_core_seen(struct tn_leader_core *c, const struct tn_lease_record *rec, double now);
/* A write of *rec succeeded at `now`: it is the observed record from now on. */
void tn_leader_core_written(struct tn_leader_core *c, const struct tn_lease_record *rec, double now);
/* The release record (holder "", leaseDurationSeconds 1, transitions kept) when we are the
 * leader; false when there is nothing to release. */
bool tn_leader_core_release(const struct tn_leader_core *c, double wall_now, struct tn_lease_record *want);
/* When the observed holder differs from the last one reported, remembers it, points *identity
 * at it (owned by c) and returns true: the caller then calls on_new_leader. */
bool tn_leader_core_take_transition(struct tn_leader_core *c, const char **identity);

/* Reads the record from a Lease object (borrowed). Missing fields read as ""/0. Returns 0, or
 * TN_EINVAL when lease is not an object. */
int tn_lease_record_from_lease(const json_t *lease, struct tn_lease_record *out);
/* Sets the record's fields in lease.spec (creating spec), leaving every other field alone.
 * Times that are "" are removed. Returns 0 or -ENOMEM. */
int tn_lease_record_to_lease(const struct tn_lease_record *rec, json_t *lease);
/* A new Lease object (apiVersion, kind, metadata.name/namespace, spec from rec). Returns a new
 * reference (json_decref it), NULL on allocation failure. */
json_t *tn_lease_new_object(const char *ns, const char *name, const struct tn_lease_record *rec);

#endif
