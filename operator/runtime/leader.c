/* leader.c - leader election on a coordination.k8s.io/v1 Lease (see leader.h and
 * docs/internals/leader-election.md). */
#include "runtime/leader.h"

#include <errno.h>
#include <math.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kube/client.h"
#include "kube/informer.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "util/clock.h"
#include "util/fence.h"

/* client-go's wait.JitterUntil factor for the acquire loop; renew_deadline must exceed
 * retry_period times this. */
#define JITTER_FACTOR 1.2

static const struct tn_gvr lease_gvr = {"coordination.k8s.io", "v1", "leases", true};

/* ---- clocks and formatting --------------------------------------------------------------- */

static void copy_str(char *dst, size_t n, const char *src) { snprintf(dst, n, "%s", src ? src : ""); }

/* ---- the decision core ------------------------------------------------------------------- */

void tn_leader_core_init(struct tn_leader_core *c, const char *identity, int lease_duration_s) {
  memset(c, 0, sizeof *c);
  copy_str(c->identity, sizeof c->identity, identity);
  c->lease_duration_s = lease_duration_s;
}

bool tn_leader_core_is_leader(const struct tn_leader_core *c) {
  return c->observed_any && c->identity[0] && strcmp(c->observed.holder, c->identity) == 0;
}

bool tn_leader_core_lease_valid(const struct tn_leader_core *c, double now) {
  return c->observed_any && c->observed_time + (double)c->observed.lease_duration_s > now;
}

static bool record_equal(const struct tn_lease_record *a, const struct tn_lease_record *b) {
  return strcmp(a->holder, b->holder) == 0 && a->lease_duration_s == b->lease_duration_s &&
         strcmp(a->acquire_time, b->acquire_time) == 0 && strcmp(a->renew_time, b->renew_time) == 0 &&
         a->transitions == b->transitions;
}

/* The record we write when we take or renew: us, our duration, both times now. */
static void fresh_record(const struct tn_leader_core *c, double wall_now, struct tn_lease_record *r) {
  memset(r, 0, sizeof *r);
  copy_str(r->holder, sizeof r->holder, c->identity);
  r->lease_duration_s = c->lease_duration_s;
  tn_time_micro(wall_now, r->renew_time, sizeof r->renew_time);
  memcpy(r->acquire_time, r->renew_time, sizeof r->acquire_time);
}

double tn_leader_core_next_attempt(const struct tn_leader_core *c, double now, double wait) {
  if (!c->observed_any || !c->observed.holder[0] || tn_leader_core_is_leader(c))
    return wait;
  double until = c->observed_time + (double)c->observed.lease_duration_s - now + 0.01;
  /* Already expired when we last tried (the attempt failed: an API error, a lost race): the
   * ordinary retry period, never a tight loop against an API server in trouble. */
  if (until <= 0.01)
    return wait;
  return until < wait ? until : wait;
}

bool tn_leader_core_fast_renew(const struct tn_leader_core *c, double now, double wall_now,
                               struct tn_lease_record *want) {
  if (!tn_leader_core_is_leader(c) || !tn_leader_core_lease_valid(c, now))
    return false;
  fresh_record(c, wall_now, want);
  memcpy(want->acquire_time, c->observed.acquire_time, sizeof want->acquire_time);
  want->transitions = c->observed.transitions;
  return true;
}

enum tn_lease_action tn_leader_core_decide(struct tn_leader_core *c, const struct tn_lease_record *rec,
                                           double now, double wall_now, struct tn_lease_record *want) {
  fresh_record(c, wall_now, want);
  if (!rec)
    return TN_LEASE_CREATE;
  /* The expiry clock restarts only when the record changes: a live holder renews, which moves
   * renewTime; a dead one leaves it as it was. */
  if (!c->observed_any || !record_equal(&c->observed, rec)) {
    c->observed = *rec;
    c->observed_time = now;
    c->observed_any = true;
  }
  if (rec->holder[0] && tn_leader_core_lease_valid(c, now) && !tn_leader_core_is_leader(c))
    return TN_LEASE_WAIT;
  if (tn_leader_core_is_leader(c)) {
    memcpy(want->acquire_time, rec->acquire_time, sizeof want->acquire_time);
    want->transitions = rec->transitions;
  } else {
    want->transitions = rec->transitions + 1;
  }
  return TN_LEASE_UPDATE;
}

bool tn_leader_core_seen(struct tn_leader_core *c, const struct tn_lease_record *rec, double now) {
  if (tn_leader_core_is_leader(c) || (c->identity[0] && strcmp(rec->holder, c->identity) == 0))
    return false;
  if (c->observed_any && record_equal(&c->observed, rec))
    return false;
  c->observed = *rec;
  c->observed_time = now;
  c->observed_any = true;
  return true;
}

void tn_leader_core_written(struct tn_leader_core *c, const struct tn_lease_record *rec, double now) {
  c->observed = *rec;
  c->observed_time = now;
  c->observed_any = true;
}

bool tn_leader_core_release(const struct tn_leader_core *c, double wall_now, struct tn_lease_record *want) {
  if (!tn_leader_core_is_leader(c))
    return false;
  memset(want, 0, sizeof *want);
  want->lease_duration_s = 1;
  tn_time_micro(wall_now, want->renew_time, sizeof want->renew_time);
  memcpy(want->acquire_time, want->renew_time, sizeof want->acquire_time);
  want->transitions = c->observed.transitions;
  return true;
}

bool tn_leader_core_take_transition(struct tn_leader_core *c, const char **identity) {
  if (strcmp(c->observed.holder, c->reported_leader) == 0)
    return false;
  memcpy(c->reported_leader, c->observed.holder, sizeof c->reported_leader);
  *identity = c->reported_leader;
  return true;
}

/* ---- Lease objects ----------------------------------------------------------------------- */

static void get_str(const json_t *o, const char *key, char *dst, size_t n) {
  const char *s = json_string_value(json_object_get(o, key));
  copy_str(dst, n, s);
}

static int get_int(const json_t *o, const char *key) {
  json_int_t v = json_integer_value(json_object_get(o, key));
  return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int)v;
}

int tn_lease_record_from_lease(const json_t *lease, struct tn_lease_record *out) {
  memset(out, 0, sizeof *out);
  if (!json_is_object(lease))
    return TN_EINVALID;
  const json_t *spec = json_object_get(lease, "spec");
  if (!json_is_object(spec))
    return 0;
  get_str(spec, "holderIdentity", out->holder, sizeof out->holder);
  out->lease_duration_s = get_int(spec, "leaseDurationSeconds");
  get_str(spec, "acquireTime", out->acquire_time, sizeof out->acquire_time);
  get_str(spec, "renewTime", out->renew_time, sizeof out->renew_time);
  out->transitions = get_int(spec, "leaseTransitions");
  return 0;
}

static int set_or_del_time(json_t *spec, const char *key, const char *v) {
  if (!v[0]) {
    json_object_del(spec, key);
    return 0;
  }
  return json_object_set_new(spec, key, json_string(v)) ? -ENOMEM : 0;
}

int tn_lease_record_to_lease(const struct tn_lease_record *rec, json_t *lease) {
  json_t *spec = json_object_get(lease, "spec");
  if (!json_is_object(spec)) {
    spec = json_object();
    if (!spec || json_object_set_new(lease, "spec", spec))
      return -ENOMEM;
  }
  if (json_object_set_new(spec, "holderIdentity", json_string(rec->holder)) ||
      json_object_set_new(spec, "leaseDurationSeconds", json_integer(rec->lease_duration_s)) ||
      json_object_set_new(spec, "leaseTransitions", json_integer(rec->transitions)))
    return -ENOMEM;
  if (set_or_del_time(spec, "acquireTime", rec->acquire_time) ||
      set_or_del_time(spec, "renewTime", rec->renew_time))
    return -ENOMEM;
  return 0;
}

json_t *tn_lease_new_object(const char *ns, const char *name, const struct tn_lease_record *rec) {
  json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{}}", "apiVersion", "coordination.k8s.io/v1", "kind",
                        "Lease", "metadata", "name", name, "namespace", ns, "spec");
  if (o && tn_lease_record_to_lease(rec, o) != 0) {
    json_decref(o);
    o = NULL;
  }
  return o;
}

int tn_leader_default_identity(char *dst, size_t n) {
  char host[256];
  if (gethostname(host, sizeof host) != 0 || !host[0])
    copy_str(host, sizeof host, "unknown");
  host[sizeof host - 1] = '\0';
  unsigned char rnd[16];
  if (RAND_bytes(rnd, sizeof rnd) != 1)
    return -EIO;
  char hex[2 * sizeof rnd + 1];
  for (size_t i = 0; i < sizeof rnd; i++)
    snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
  snprintf(dst, n, "%s_%s", host, hex);
  return 0;
}

/* ---- the elector ------------------------------------------------------------------------- */

struct tn_leader {
  struct tn_kube *kube; /* borrowed */
  char *ns, *name;
  char identity[256];
  double lease_s, renew_s, retry_s;
  bool release_on_cancel;
  void (*on_started_leading)(void *ud);
  void (*on_stopped_leading)(void *ud);
  void (*on_new_leader)(void *ud, const char *identity);
  void *ud;
  struct tn_series *status; /* leader_election_master_status{name}; NULL without metrics */
  struct tn_fence *fence;   /* borrowed; NULL: none */
  double held_sent;         /* when the last successful acquire/renew was sent (the thread's alone) */

  /* mu protects core, started, stopping, joined and wake. The elector's thread and the Lease's
   * watch (its informer's dispatch thread: tn_leader_core_seen) write core, each holding mu only
   * for the pure steps, never during I/O. stop_mu serializes tn_leader_stop()
   * callers (taken before mu). */
  pthread_mutex_t mu;
  pthread_mutex_t stop_mu;
  pthread_cond_t cond; /* signalled when stopping is set; uses CLOCK_MONOTONIC */
  struct tn_leader_core core;
  bool started, stopping, joined;
  bool wake; /* the watch saw the Lease released: the candidate's wait ends early */
  pthread_t thread;

  atomic_int cancel; /* set by tn_leader_stop: ends the loop's requests in flight */
  atomic_bool leading;
  atomic_bool lost; /* leadership ended because renewing failed */
  atomic_bool done;
  json_t *lease;             /* the Lease as last returned by the server; the thread's alone */
  struct tn_informer *watch; /* the Lease's changes as they happen (NULL: polling alone) */
  bool watch_lease;
};

static bool is_stopping(struct tn_leader *le) {
  pthread_mutex_lock(&le->mu);
  bool s = le->stopping;
  pthread_mutex_unlock(&le->mu);
  return s;
}

/* Sleeps up to `seconds` by the monotonic clock; returns true as soon as a stop is requested. */
static bool wait_or_stop(struct tn_leader *le, double seconds) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double end = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + (seconds > 0 ? seconds : 0);
  ts.tv_sec = (time_t)end;
  ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L)
    ts.tv_nsec = 999999999L;
  pthread_mutex_lock(&le->mu);
  while (!le->stopping && !le->wake && pthread_cond_timedwait(&le->cond, &le->mu, &ts) != ETIMEDOUT)
    ;
  le->wake = false;
  bool s = le->stopping;
  pthread_mutex_unlock(&le->mu);
  return s;
}

/* retry * [1, 1 + JITTER_FACTOR), as wait.JitterUntil does. */
static double jittered(double base) {
  uint32_t r = 0;
  if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
    r = (uint32_t)rand();
  return base * (1.0 + JITTER_FACTOR * ((double)r / 4294967296.0));
}

/* One request on the Lease. name NULL addresses the collection (create). body is borrowed;
 * *out receives the decoded answer (json_decref it). cancellable: stop ends it. */
static int lease_request(struct tn_leader *le, const char *method, const char *name, const json_t *body,
                         double timeout_s, bool cancellable, json_t **out, struct tn_error *err) {
  char *path = NULL, *text = NULL;
  struct tn_kube_response resp;
  tn_kube_response_init(&resp);
  int rc;
  path = tn_kube_path(&lease_gvr, le->ns, name, NULL);
  if (!path) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  if (body && !(text = json_dumps(body, JSON_COMPACT))) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  long timeout_ms = (long)(timeout_s * 1000.0);
  struct tn_kube_request req = {
      .method = method,
      .path = path,
      .body = text,
      .body_len = text ? strlen(text) : 0,
      .cancel = cancellable ? &le->cancel : NULL,
      .timeout_ms = timeout_ms > 1 ? timeout_ms : 1,
  };
  rc = tn_kube_do(le->kube, &req, &resp, err);
  if (rc != 0)
    goto out;
  json_error_t jerr;
  json_t *obj = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &jerr);
  if (!json_is_object(obj)) {
    json_decref(obj);
    rc = tn_error_set(err, TN_EAPI, "%s %s: the answer is not a JSON object: %s", method, path, jerr.text);
    goto out;
  }
  *out = obj;
out:
  tn_kube_response_cleanup(&resp);
  free(text);
  free(path);
  return rc;
}

/* PUT *want onto the Lease we last read (its resourceVersion is the precondition). */
static int put_record(struct tn_leader *le, const struct tn_lease_record *want, double timeout_s,
                      bool cancellable, struct tn_error *err) {
  json_t *obj = json_deep_copy(le->lease), *got = NULL;
  int rc;
  if (!obj || tn_lease_record_to_lease(want, obj) != 0) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  rc = lease_request(le, "PUT", le->name, obj, timeout_s, cancellable, &got, err);
  if (rc != 0)
    goto out;
  json_decref(le->lease);
  le->lease = got;
  pthread_mutex_lock(&le->mu);
  tn_leader_core_written(&le->core, want, tn_mono_now());
  pthread_mutex_unlock(&le->mu);
out:
  json_decref(obj);
  return rc;
}

/* A write that holds the lease succeeded; it was sent at `sent` (monotonic). The fence opens
 * until sent + renew deadline (see util/fence.h for why the send time). */
static void held(struct tn_leader *le, double sent) {
  le->held_sent = sent;
  tn_fence_extend(le->fence, sent + le->renew_s);
}

/* client-go's tryAcquireOrRenew: true when we hold the lease after this call. Requests end by
 * `deadline` (monotonic). */
static bool try_acquire_or_renew(struct tn_leader *le, double deadline) {
  struct tn_lease_record want, rec;
  struct tn_error err;
  json_t *got = NULL, *obj = NULL;
  bool ok = false;
  double sent = 0;
  int rc;

  /* 1. The leader's fast path: renew on top of what we wrote last, without reading. */
  pthread_mutex_lock(&le->mu);
  bool fast = le->lease && tn_leader_core_fast_renew(&le->core, tn_mono_now(), tn_wall_now(), &want);
  pthread_mutex_unlock(&le->mu);
  if (fast) {
    tn_error_clear(&err);
    sent = tn_mono_now();
    rc = put_record(le, &want, deadline - tn_mono_now(), true, &err);
    if (rc == 0) {
      held(le, sent);
      return true;
    }
    if (rc == TN_ECANCELED)
      return false;
    tn_log_warn("leader election: failed to renew lease %s/%s optimistically, falling back to a read: %s",
                le->ns, le->name, err.message);
  }
  if (deadline - tn_mono_now() <= 0)
    return false;

  /* 2. Read the record, or create the Lease. */
  tn_error_clear(&err);
  rc = lease_request(le, "GET", le->name, NULL, deadline - tn_mono_now(), true, &got, &err);
  if (rc == TN_ENOTFOUND) {
    pthread_mutex_lock(&le->mu);
    (void)tn_leader_core_decide(&le->core, NULL, tn_mono_now(), tn_wall_now(), &want);
    pthread_mutex_unlock(&le->mu);
    obj = tn_lease_new_object(le->ns, le->name, &want);
    if (!obj)
      goto out;
    tn_error_clear(&err);
    sent = tn_mono_now();
    rc = lease_request(le, "POST", NULL, obj, deadline - tn_mono_now(), true, &got, &err);
    if (rc != 0) {
      if (rc != TN_ECANCELED && rc != TN_EEXISTS)
        tn_log_error("leader election: cannot create lease %s/%s: %s", le->ns, le->name, err.message);
      goto out;
    }
    json_decref(le->lease);
    le->lease = got;
    got = NULL;
    pthread_mutex_lock(&le->mu);
    tn_leader_core_written(&le->core, &want, tn_mono_now());
    pthread_mutex_unlock(&le->mu);
    ok = true;
    goto out;
  }
  if (rc != 0) {
    if (rc != TN_ECANCELED)
      tn_log_error("leader election: cannot read lease %s/%s: %s", le->ns, le->name, err.message);
    goto out;
  }
  json_decref(le->lease);
  le->lease = got;
  got = NULL;
  (void)tn_lease_record_from_lease(le->lease, &rec);

  /* 3. Decide from the record and our observation of it. */
  pthread_mutex_lock(&le->mu);
  enum tn_lease_action act = tn_leader_core_decide(&le->core, &rec, tn_mono_now(), tn_wall_now(), &want);
  pthread_mutex_unlock(&le->mu);
  if (act == TN_LEASE_WAIT) {
    tn_log_debug("leader election: lease %s/%s is held by %s and has not expired", le->ns, le->name,
                 rec.holder);
    goto out;
  }

  /* 4. Take it or renew it; a conflict means someone else wrote first. */
  tn_error_clear(&err);
  sent = tn_mono_now();
  rc = put_record(le, &want, deadline - tn_mono_now(), true, &err);
  if (rc != 0) {
    if (rc == TN_ECONFLICT)
      tn_log_info("leader election: lease %s/%s changed under us (someone else wrote first)", le->ns,
                  le->name);
    else if (rc != TN_ECANCELED)
      tn_log_error("leader election: cannot update lease %s/%s: %s", le->ns, le->name, err.message);
    goto out;
  }
  ok = true;
out:
  if (ok)
    held(le, sent);
  json_decref(got);
  json_decref(obj);
  return ok;
}

static void report_transition(struct tn_leader *le) {
  char who[256];
  const char *id = NULL;
  pthread_mutex_lock(&le->mu);
  bool changed = tn_leader_core_take_transition(&le->core, &id);
  if (changed)
    copy_str(who, sizeof who, id);
  pthread_mutex_unlock(&le->mu);
  if (!changed)
    return;
  tn_log_info("leader election: lease %s/%s is now held by \"%s\"", le->ns, le->name, who);
  if (le->on_new_leader)
    le->on_new_leader(le->ud, who);
}

/* ReleaseOnCancel: hand the lease back so a standby need not wait for it to expire. A renewal
 * cancelled by the stop may still have reached the server, leaving our resourceVersion stale:
 * on a conflict the Lease is read again and, when it is still ours, released on top of that. */
static void release(struct tn_leader *le) {
  struct tn_lease_record want, rec;
  struct tn_error err;
  /* Bounded by the renew deadline and 5 s: it runs inside the Pod's termination grace period. */
  double deadline = tn_mono_now() + (le->renew_s < 5.0 ? le->renew_s : 5.0);
  pthread_mutex_lock(&le->mu);
  bool have = le->lease && tn_leader_core_release(&le->core, tn_wall_now(), &want);
  pthread_mutex_unlock(&le->mu);
  if (!have)
    return;
  for (int attempt = 1;; attempt++) {
    tn_error_clear(&err);
    int rc = put_record(le, &want, deadline - tn_mono_now(), false, &err);
    if (rc == 0) {
      tn_log_info("leader election: released lease %s/%s", le->ns, le->name);
      return;
    }
    if (rc != TN_ECONFLICT || attempt == 2)
      break;
    json_t *got = NULL;
    tn_error_clear(&err);
    if (lease_request(le, "GET", le->name, NULL, deadline - tn_mono_now(), false, &got, &err) != 0)
      break;
    json_decref(le->lease);
    le->lease = got;
    (void)tn_lease_record_from_lease(got, &rec);
    if (strcmp(rec.holder, le->identity) != 0) {
      tn_log_info("leader election: lease %s/%s is held by \"%s\" now; nothing to release", le->ns, le->name,
                  rec.holder);
      return;
    }
    want.transitions = rec.transitions;
  }
  tn_log_error("leader election: cannot release lease %s/%s: %s", le->ns, le->name, err.message);
}

static void *run(void *arg) {
  struct tn_leader *le = arg;
  bool acquired = false;

  tn_log_info("leader election: %s is attempting to acquire lease %s/%s", le->identity, le->ns, le->name);
  while (!is_stopping(le)) {
    acquired = try_acquire_or_renew(le, tn_mono_now() + le->renew_s);
    report_transition(le);
    if (acquired)
      break;
    /* Under mu: the Lease's watch writes the observation from its own thread. */
    double jitter = jittered(le->retry_s);
    pthread_mutex_lock(&le->mu);
    double wait = tn_leader_core_next_attempt(&le->core, tn_mono_now(), jitter);
    pthread_mutex_unlock(&le->mu);
    if (wait_or_stop(le, wait))
      break;
  }
  if (!acquired)
    goto out;

  atomic_store(&le->leading, true);
  tn_series_set(le->status, 1);
  tn_log_info("leader election: %s acquired lease %s/%s", le->identity, le->ns, le->name);
  if (le->on_started_leading)
    le->on_started_leading(le->ud);

  /* Renew every retry period; give up when no renewal succeeds within renew_deadline. */
  for (;;) {
    /* The renew deadline runs from when the last renewal that succeeded was sent, as the fence
     * does: a process that was paused (SIGSTOP, a stalled VM) past it has lost the lease whatever
     * it finds when it wakes, and gives up at once instead of retrying for another deadline. */
    double deadline = le->held_sent + le->renew_s;
    bool ok = false;
    while (!is_stopping(le)) {
      ok = try_acquire_or_renew(le, deadline);
      double left = deadline - tn_mono_now();
      if (ok || left <= 0)
        break;
      if (wait_or_stop(le, left < le->retry_s ? left : le->retry_s) || tn_mono_now() >= deadline)
        break;
    }
    report_transition(le);
    if (!ok) {
      if (!is_stopping(le)) {
        atomic_store(&le->lost, true);
        tn_log_error("leader election: %s could not renew lease %s/%s within %.1fs; leadership lost",
                     le->identity, le->ns, le->name, le->renew_s);
      }
      break;
    }
    if (wait_or_stop(le, le->retry_s))
      break;
  }

  /* Fence first: from here on nothing this process does may write as the leader. */
  tn_fence_close(le->fence);
  atomic_store(&le->leading, false);
  tn_series_set(le->status, 0);
  if (le->release_on_cancel)
    release(le);
  if (le->on_stopped_leading)
    le->on_stopped_leading(le->ud);
out:
  atomic_store(&le->done, true);
  return NULL;
}

int tn_leader_new(struct tn_kube *kube, const struct tn_leader_config *cfg, struct tn_leader **out,
                  struct tn_error *err) {
  struct tn_leader *le = NULL;
  int rc = 0;
  double lease_s = cfg->lease_duration_s > 0 ? cfg->lease_duration_s : TN_LEADER_LEASE_DURATION_S;
  double renew_s = cfg->renew_deadline_s > 0 ? cfg->renew_deadline_s : TN_LEADER_RENEW_DEADLINE_S;
  double retry_s = cfg->retry_period_s > 0 ? cfg->retry_period_s : TN_LEADER_RETRY_PERIOD_S;

  *out = NULL;
  if (!kube)
    return tn_error_set(err, TN_ECONFIG, "leader election: no Kubernetes client");
  if (!cfg->namespace || !cfg->namespace[0])
    return tn_error_set(err, TN_ECONFIG,
                        "leader election: the Lease namespace is empty; "
                        "set --leader-election-namespace");
  if (!cfg->name || !cfg->name[0])
    return tn_error_set(err, TN_ECONFIG,
                        "leader election: the Lease name is empty; "
                        "set --leader-election-id");
  if (cfg->identity && (!cfg->identity[0] || strlen(cfg->identity) >= sizeof le->identity))
    return tn_error_set(err, TN_ECONFIG, "leader election: the identity must be 1 to %zu characters",
                        sizeof le->identity - 1);
  if (lease_s < 1 || lease_s > INT32_MAX)
    return tn_error_set(err, TN_ECONFIG,
                        "leader election: lease duration %gs must be at least 1s (the Lease holds "
                        "whole seconds)",
                        lease_s);
  if (lease_s <= renew_s)
    return tn_error_set(err, TN_ECONFIG,
                        "leader election: lease duration (%gs) must be greater than the renew deadline "
                        "(%gs)",
                        lease_s, renew_s);
  if (renew_s <= JITTER_FACTOR * retry_s)
    return tn_error_set(err, TN_ECONFIG,
                        "leader election: renew deadline (%gs) must be greater than %.1f x the retry "
                        "period (%gs)",
                        renew_s, JITTER_FACTOR, retry_s);

  le = calloc(1, sizeof *le);
  if (!le)
    return tn_error_set(err, -ENOMEM, "out of memory");
  le->kube = kube;
  le->lease_s = lease_s;
  le->renew_s = renew_s;
  le->retry_s = retry_s;
  le->release_on_cancel = cfg->release_on_cancel;
  le->on_started_leading = cfg->on_started_leading;
  le->on_stopped_leading = cfg->on_stopped_leading;
  le->on_new_leader = cfg->on_new_leader;
  le->ud = cfg->ud;
  le->fence = cfg->fence;
  le->watch_lease = !cfg->no_watch;
  atomic_init(&le->cancel, 0);
  atomic_init(&le->leading, false);
  atomic_init(&le->lost, false);
  atomic_init(&le->done, false);
  pthread_mutex_init(&le->mu, NULL);
  pthread_mutex_init(&le->stop_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&le->cond, &ca);
  pthread_condattr_destroy(&ca);

  le->ns = strdup(cfg->namespace);
  le->name = strdup(cfg->name);
  if (!le->ns || !le->name) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  if (cfg->identity)
    copy_str(le->identity, sizeof le->identity, cfg->identity);
  else if ((rc = tn_leader_default_identity(le->identity, sizeof le->identity)) != 0) {
    tn_error_set(err, rc, "leader election: no randomness for the identity (RAND_bytes failed)");
    goto out;
  }
  tn_leader_core_init(&le->core, le->identity, (int)lease_s);

  if (cfg->metrics) {
    static const char *const labels[] = {"name", NULL};
    struct tn_metric *f = tn_metrics_register(cfg->metrics, TN_GAUGE, "leader_election_master_status",
                                              "Whether this process holds the leader Lease (1) or is a "
                                              "standby (0); name is the Lease name.",
                                              labels, NULL, 0);
    const char *values[] = {le->name, NULL};
    if (!f || !(le->status = tn_metric_with(f, values))) {
      rc = tn_error_set(err, TN_ECONFIG, "leader election: cannot register leader_election_master_status");
      goto out;
    }
    tn_series_set(le->status, 0);
  }
  *out = le;
  le = NULL;
out:
  tn_leader_free(le);
  return rc;
}

/* The Lease's watch: each record a standby sees is observed when it arrives, not at the next
 * poll. The loop still reads the Lease before it writes (the resourceVersion precondition) and
 * wakes at least every retry period, so a watch that fails only costs the lag it removes. */
static void lease_event(struct tn_leader *le, json_t *obj) {
  struct tn_lease_record rec;
  if (tn_lease_record_from_lease(obj, &rec) != 0)
    return;
  pthread_mutex_lock(&le->mu);
  bool changed = tn_leader_core_seen(&le->core, &rec, tn_mono_now());
  if (changed && !rec.holder[0]) { /* released: try at once instead of at the next poll */
    le->wake = true;
    pthread_cond_broadcast(&le->cond);
  }
  pthread_mutex_unlock(&le->mu);
  if (changed)
    tn_log_debug("leader election: lease %s/%s renewed by \"%s\" (watch)", le->ns, le->name, rec.holder);
}

static void lease_added(void *ud, json_t *obj) { lease_event(ud, obj); }
static void lease_updated(void *ud, json_t *old, json_t *cur) {
  (void)old;
  lease_event(ud, cur);
}

static void start_watch(struct tn_leader *le) {
  char sel[300];
  struct tn_error err = {0};
  snprintf(sel, sizeof sel, "metadata.name=%s", le->name);
  struct tn_informer_opts o = {
      .gvr = lease_gvr, .namespace = le->ns, .field_selector = sel, .name = "leader-lease"};
  struct tn_informer_handlers h = {.on_add = lease_added, .on_update = lease_updated, .ud = le};
  if (tn_informer_new(le->kube, &o, NULL, &le->watch, &err) != 0 ||
      tn_informer_add_handlers(le->watch, &h, &err) != 0 || tn_informer_start(le->watch, &err) != 0) {
    tn_log_warn("leader election: cannot watch lease %s/%s (%s): polling it every retry period", le->ns,
                le->name, err.message);
    tn_informer_free(le->watch);
    le->watch = NULL;
  }
}

int tn_leader_start(struct tn_leader *le) {
  int rc = 0;
  pthread_mutex_lock(&le->mu);
  if (le->started || le->stopping) {
    rc = -EALREADY;
    goto out;
  }
  rc = -pthread_create(&le->thread, NULL, run, le);
  if (rc == 0)
    le->started = true;
  if (rc == 0 && le->watch_lease)
    start_watch(le);
out:
  pthread_mutex_unlock(&le->mu);
  return rc;
}

void tn_leader_stop(struct tn_leader *le) {
  if (!le)
    return;
  pthread_mutex_lock(&le->stop_mu);
  pthread_mutex_lock(&le->mu);
  le->stopping = true;
  pthread_cond_broadcast(&le->cond);
  bool join = le->started && !le->joined;
  pthread_mutex_unlock(&le->mu);
  atomic_store(&le->cancel, 1);
  tn_informer_stop(le->watch); /* NULL-safe; its handlers take mu: not held here */
  if (join) {
    pthread_join(le->thread, NULL);
    pthread_mutex_lock(&le->mu);
    le->joined = true;
    pthread_mutex_unlock(&le->mu);
  }
  pthread_mutex_unlock(&le->stop_mu);
}

void tn_leader_free(struct tn_leader *le) {
  if (!le)
    return;
  tn_leader_stop(le);
  pthread_cond_destroy(&le->cond);
  pthread_mutex_destroy(&le->stop_mu);
  pthread_mutex_destroy(&le->mu);
  tn_informer_free(le->watch);
  json_decref(le->lease);
  free(le->ns);
  free(le->name);
  free(le);
}

bool tn_leader_is_leader(struct tn_leader *le) { return le && atomic_load(&le->leading); }

bool tn_leader_done(struct tn_leader *le) { return le && atomic_load(&le->done); }

bool tn_leader_lost(struct tn_leader *le) { return le && atomic_load(&le->lost); }

const char *tn_leader_identity(const struct tn_leader *le) { return le->identity; }

void tn_leader_observed_holder(struct tn_leader *le, char *dst, size_t n) {
  pthread_mutex_lock(&le->mu);
  copy_str(dst, n, le->core.observed.holder);
  pthread_mutex_unlock(&le->mu);
}
