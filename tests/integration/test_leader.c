/* test_leader.c - leader election against the real API server: two electors in one process
 * (one leads; takeover after expiry without release, at once with release; a leader whose lease
 * is taken steps down), and two separate processes where the leader is SIGKILLed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kube/client.h"
#include "runtime/leader.h"
#include "runtime/metrics.h"
#include "tn_test.h"
#include "util/buf.h"

#define NS "default"

/* Short durations so the suite runs in seconds: lease 2 s, renew deadline 1.5 s, retry 0.3 s. */
#define LEASE_S 2.0
#define RENEW_S 1.5
#define RETRY_S 0.3

static struct tn_kube *connect_kube(void) {
  struct tn_kube_config cfg = {0};
  struct tn_error err;
  struct tn_kube *k = NULL;
  cr_assert_eq(tn_kube_config_load(tn_test_env("KUBECONFIG"), NULL, &cfg, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_new(&cfg, NULL, &k, &err), 0, "%s", err.message);
  tn_kube_config_cleanup(&cfg);
  return k;
}

/* What the callbacks saw. */
struct probe {
  atomic_int started, stopped, new_leader;
  char last_leader[256];
  pthread_mutex_t mu;
};

static void on_started(void *ud) { atomic_fetch_add(&((struct probe *)ud)->started, 1); }
static void on_stopped(void *ud) { atomic_fetch_add(&((struct probe *)ud)->stopped, 1); }
static void on_new(void *ud, const char *id) {
  struct probe *p = ud;
  pthread_mutex_lock(&p->mu);
  snprintf(p->last_leader, sizeof p->last_leader, "%s", id);
  pthread_mutex_unlock(&p->mu);
  atomic_fetch_add(&p->new_leader, 1);
}

static void probe_init(struct probe *p) {
  memset(p, 0, sizeof *p);
  pthread_mutex_init(&p->mu, NULL);
}

static struct tn_leader *elector(struct tn_kube *k, const char *lease, const char *identity, bool release,
                                 double lease_s, struct probe *p, struct tn_metrics *m) {
  struct tn_leader_config cfg = {
      .namespace = NS,
      .name = lease,
      .identity = identity,
      .lease_duration_s = lease_s,
      .renew_deadline_s = RENEW_S,
      .retry_period_s = RETRY_S,
      .release_on_cancel = release,
      .on_started_leading = on_started,
      .on_stopped_leading = on_stopped,
      .on_new_leader = on_new,
      .ud = p,
      .metrics = m,
  };
  struct tn_leader *le = NULL;
  struct tn_error err;
  cr_assert_eq(tn_leader_new(k, &cfg, &le, &err), 0, "%s", err.message);
  return le;
}

/* Polls until exactly one of a, b leads; returns it, or NULL after timeout_s. */
static struct tn_leader *wait_one_leader(struct tn_leader *a, struct tn_leader *b, double timeout_s) {
  double end = tn_test_now() + timeout_s;
  while (tn_test_now() < end) {
    bool la = tn_leader_is_leader(a), lb = b && tn_leader_is_leader(b);
    cr_assert_not(la && lb, "two leaders at once");
    if (la != lb)
      return la ? a : b;
    usleep(20 * 1000);
  }
  return NULL;
}

static char *lease_field(const char *lease, const char *jsonpath) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl -n %s get lease %s -o jsonpath='{%s}'", NS, lease, jsonpath);
  cr_assert_eq(rc, 0, "kubectl get lease %s: %s", lease, out);
  return out;
}

static void delete_lease(const char *lease) {
  char *out = NULL;
  (void)tn_test_sh(&out, "kubectl -n %s delete lease %s --ignore-not-found", NS, lease);
  free(out);
}

static double metric_value(struct tn_metrics *m, const char *lease) {
  struct tn_buf b;
  char needle[256];
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(tn_metrics_write(m, &b), 0);
  snprintf(needle, sizeof needle, "leader_election_master_status{name=\"%s\"} ", lease);
  const char *p = strstr(tn_buf_str(&b), needle);
  cr_assert_not_null(p, "no %s in:\n%s", needle, tn_buf_str(&b));
  double v = strtod(p + strlen(needle), NULL);
  tn_buf_cleanup(&b);
  return v;
}

Test(leader, exactly_one_of_two_leads, .timeout = 60) {
  char lease[64];
  tn_test_unique_name(lease, sizeof lease, "leader-one");
  struct tn_kube *k = connect_kube();
  struct tn_metrics *m = tn_metrics_new();
  struct probe pa, pb;
  probe_init(&pa);
  probe_init(&pb);
  struct tn_leader *a = elector(k, lease, "elector-a", false, LEASE_S, &pa, m);
  struct tn_leader *b = elector(k, lease, "elector-b", false, LEASE_S, &pb, NULL);
  cr_assert_eq(tn_leader_start(a), 0);
  cr_assert_eq(tn_leader_start(b), 0);
  cr_assert_eq(tn_leader_start(a), -EALREADY);

  struct tn_leader *l = wait_one_leader(a, b, 15);
  cr_assert_not_null(l, "nobody acquired the lease");
  /* For three lease durations, never two leaders and never a change of leader. */
  double end = tn_test_now() + 3 * LEASE_S;
  while (tn_test_now() < end) {
    cr_assert_eq(wait_one_leader(a, b, 1), l, "leadership moved while the leader was healthy");
    usleep(50 * 1000);
  }
  struct tn_leader *s = l == a ? b : a;
  struct probe *pl = l == a ? &pa : &pb, *ps = l == a ? &pb : &pa;
  cr_assert_eq(atomic_load(&pl->started), 1);
  cr_assert_eq(atomic_load(&ps->started), 0);
  char *holder = lease_field(lease, ".spec.holderIdentity");
  cr_assert_str_eq(holder, tn_leader_identity(l), "the Lease names the leader");
  free(holder);
  char *dur = lease_field(lease, ".spec.leaseDurationSeconds");
  cr_assert_str_eq(dur, "2");
  free(dur);
  char *renew = lease_field(lease, ".spec.renewTime");
  cr_assert_eq(strlen(renew), 27, "MicroTime 2006-01-02T15:04:05.000000Z, got %s", renew);
  cr_assert_eq(renew[26], 'Z');
  free(renew);
  /* Both were told who leads. */
  char seen[256];
  tn_leader_observed_holder(s, seen, sizeof seen);
  cr_assert_str_eq(seen, tn_leader_identity(l));
  pthread_mutex_lock(&ps->mu);
  cr_assert_str_eq(ps->last_leader, tn_leader_identity(l));
  pthread_mutex_unlock(&ps->mu);
  if (l == a)
    cr_assert_eq(metric_value(m, lease), 1);
  else
    cr_assert_eq(metric_value(m, lease), 0);

  tn_leader_stop(a);
  tn_leader_stop(b);
  cr_assert_eq(atomic_load(&pl->stopped), 1, "on_stopped_leading when the leader stops");
  cr_assert_not(tn_leader_lost(l), "a stop is not a loss");
  cr_assert(tn_leader_done(l));
  tn_leader_free(a);
  tn_leader_free(b);
  cr_assert_eq(atomic_load(&ps->stopped), 0, "a standby never started, so it never stops leading");
  cr_assert_eq(metric_value(m, lease), 0);
  tn_metrics_free(m);
  tn_kube_free(k);
  delete_lease(lease);
}

Test(leader, standby_takes_over_after_the_lease_expires_without_release, .timeout = 60) {
  char lease[64];
  tn_test_unique_name(lease, sizeof lease, "leader-expire");
  struct tn_kube *k = connect_kube();
  struct probe pa, pb;
  probe_init(&pa);
  probe_init(&pb);
  struct tn_leader *a = elector(k, lease, "elector-a", false, LEASE_S, &pa, NULL);
  cr_assert_eq(tn_leader_start(a), 0);
  cr_assert_eq(wait_one_leader(a, NULL, 15), a);
  struct tn_leader *b = elector(k, lease, "elector-b", false, LEASE_S, &pb, NULL);
  cr_assert_eq(tn_leader_start(b), 0);
  /* b has seen a's renewals before a goes away. */
  double end = tn_test_now() + 10;
  char seen[256] = "";
  while (tn_test_now() < end && strcmp(seen, "elector-a") != 0) {
    tn_leader_observed_holder(b, seen, sizeof seen);
    usleep(20 * 1000);
  }
  cr_assert_str_eq(seen, "elector-a");
  char *before = lease_field(lease, ".spec.leaseTransitions");

  double t0 = tn_test_now();
  tn_leader_stop(a); /* no release: to the standby this looks like a crash */
  cr_assert_eq(atomic_load(&pa.stopped), 1);
  cr_assert_eq(wait_one_leader(a, b, 10 * LEASE_S), b, "the standby never took over");
  double took = tn_test_now() - t0;
  printf("leader: takeover without release took %.2f s (lease %.0f s, retry %.1f s)\n", took, LEASE_S,
         RETRY_S);
  /* Safety: the standby waited for the lease it last saw renewed to run out. */
  cr_assert_gt(took, LEASE_S - 2.2 * RETRY_S - 0.3, "took over after %.2f s: before the lease expired", took);
  cr_assert_lt(took, 3 * LEASE_S, "took %.2f s", took);
  char *after = lease_field(lease, ".spec.leaseTransitions");
  cr_assert_eq(atol(after), atol(before) + 1, "leaseTransitions %s -> %s", before, after);
  char *holder = lease_field(lease, ".spec.holderIdentity");
  cr_assert_str_eq(holder, "elector-b");
  free(holder);
  free(before);
  free(after);
  tn_leader_free(a);
  tn_leader_free(b);
  tn_kube_free(k);
  delete_lease(lease);
}

Test(leader, release_hands_the_lease_over_at_once, .timeout = 60) {
  char lease[64];
  tn_test_unique_name(lease, sizeof lease, "leader-release");
  struct tn_kube *k = connect_kube();
  struct probe pa, pb;
  probe_init(&pa);
  probe_init(&pb);
  /* A long lease: without the release the standby would wait 60 s. */
  struct tn_leader *a = elector(k, lease, "elector-a", true, 60, &pa, NULL);
  cr_assert_eq(tn_leader_start(a), 0);
  cr_assert_eq(wait_one_leader(a, NULL, 15), a);
  struct tn_leader *b = elector(k, lease, "elector-b", true, 60, &pb, NULL);
  cr_assert_eq(tn_leader_start(b), 0);
  double end = tn_test_now() + 10;
  char seen[256] = "";
  while (tn_test_now() < end && strcmp(seen, "elector-a") != 0) {
    tn_leader_observed_holder(b, seen, sizeof seen);
    usleep(20 * 1000);
  }
  cr_assert_str_eq(seen, "elector-a");

  double t0 = tn_test_now();
  tn_leader_stop(a);
  cr_assert_eq(atomic_load(&pa.stopped), 1);
  cr_assert_not(tn_leader_is_leader(a));
  cr_assert_eq(wait_one_leader(a, b, 20), b, "the standby did not take the released lease");
  double took = tn_test_now() - t0;
  printf("leader: takeover after release took %.2f s (lease 60 s, retry %.1f s)\n", took, RETRY_S);
  tn_leader_stop(b);
  /* b released too: the record says nobody holds it, for one second. */
  char *holder = lease_field(lease, ".spec.holderIdentity");
  cr_assert_str_eq(holder, "");
  free(holder);
  char *dur = lease_field(lease, ".spec.leaseDurationSeconds");
  cr_assert_str_eq(dur, "1");
  free(dur);
  tn_leader_free(a);
  tn_leader_free(b);
  tn_kube_free(k);
  delete_lease(lease);
}

Test(leader, release_survives_a_stale_resource_version, .timeout = 60) {
  char lease[64];
  tn_test_unique_name(lease, sizeof lease, "leader-stale");
  struct tn_kube *k = connect_kube();
  struct probe pa;
  probe_init(&pa);
  /* Renewals 10 s apart, so nothing of ours is written between the edit below and the stop. */
  struct tn_leader_config cfg = {.namespace = NS,
                                 .name = lease,
                                 .identity = "elector-a",
                                 .lease_duration_s = 60,
                                 .renew_deadline_s = 40,
                                 .retry_period_s = 10,
                                 .release_on_cancel = true,
                                 .on_stopped_leading = on_stopped,
                                 .ud = &pa};
  struct tn_leader *a = NULL;
  struct tn_error err;
  cr_assert_eq(tn_leader_new(k, &cfg, &a, &err), 0, "%s", err.message);
  cr_assert_eq(tn_leader_start(a), 0);
  cr_assert_eq(wait_one_leader(a, NULL, 15), a);
  sleep(1); /* the renewal that follows the acquisition is done */
  /* Another writer touches the Lease (not its spec): our resourceVersion is now stale, as when a
   * renewal cancelled by the stop did reach the server. */
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl -n %s annotate lease %s touched=yes", NS, lease);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  tn_leader_stop(a);
  char *holder = lease_field(lease, ".spec.holderIdentity");
  cr_assert_str_eq(holder, "", "the release must read the Lease again and still release it");
  free(holder);
  char *dur = lease_field(lease, ".spec.leaseDurationSeconds");
  cr_assert_str_eq(dur, "1");
  free(dur);
  tn_leader_free(a);
  tn_kube_free(k);
  delete_lease(lease);
}

Test(leader, a_leader_that_cannot_renew_steps_down, .timeout = 60) {
  char lease[64];
  tn_test_unique_name(lease, sizeof lease, "leader-stolen");
  struct tn_kube *k = connect_kube();
  struct probe pa;
  probe_init(&pa);
  struct tn_leader *a = elector(k, lease, "elector-a", true, LEASE_S, &pa, NULL);
  cr_assert_eq(tn_leader_start(a), 0);
  cr_assert_eq(wait_one_leader(a, NULL, 15), a);
  /* Someone else writes the Lease with a long, fresh term: a's renewals now conflict, its reads
   * show a valid foreign holder, and after the renew deadline it must give up. */
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "kubectl -n %s patch lease %s --type=merge -p "
                      "'{\"spec\":{\"holderIdentity\":\"intruder\",\"leaseDurationSeconds\":3600}}'",
                      NS, lease);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  double end = tn_test_now() + 10 * LEASE_S;
  while (tn_test_now() < end && !tn_leader_done(a))
    usleep(20 * 1000);
  cr_assert(tn_leader_done(a), "the elector kept running after losing the lease");
  cr_assert_not(tn_leader_is_leader(a));
  cr_assert_eq(atomic_load(&pa.stopped), 1, "on_stopped_leading when the lease is lost");
  cr_assert(tn_leader_lost(a), "the loss is told apart from a stop");
  char seen[256];
  tn_leader_observed_holder(a, seen, sizeof seen);
  cr_assert_str_eq(seen, "intruder");
  /* It did not release (or overwrite) the intruder's lease. */
  char *holder = lease_field(lease, ".spec.holderIdentity");
  cr_assert_str_eq(holder, "intruder");
  free(holder);
  tn_leader_free(a);
  tn_kube_free(k);
  delete_lease(lease);
}

/* ---- two processes ----------------------------------------------------------------------- */

struct child {
  pid_t pid;
  int fd; /* read end: the child writes "L\n" when it starts leading, "E <msg>\n" on failure */
  char id[64];
};

static void child_started(void *ud) {
  ssize_t n = write(*(int *)ud, "L\n", 2);
  (void)n;
}

/* The child process: its own client and elector, until it is killed. Never returns. */
static void child_main(const char *kubeconfig, const char *lease, const char *id, int fd) {
  struct tn_kube_config cfg = {0};
  struct tn_error err = {0};
  struct tn_kube *k = NULL;
  struct tn_leader *le = NULL;
  /* Die with the test, even when an assertion ends it early. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (tn_kube_config_load(kubeconfig, NULL, &cfg, &err) != 0 || tn_kube_new(&cfg, NULL, &k, &err) != 0)
    goto fail;
  struct tn_leader_config lc = {.namespace = NS,
                                .name = lease,
                                .identity = id,
                                .lease_duration_s = LEASE_S,
                                .renew_deadline_s = RENEW_S,
                                .retry_period_s = RETRY_S,
                                .on_started_leading = child_started,
                                .ud = &fd};
  if (tn_leader_new(k, &lc, &le, &err) != 0 || tn_leader_start(le) != 0)
    goto fail;
  for (;;)
    pause();
fail:
  dprintf(fd, "E %s\n", err.message);
  _exit(1);
}

static void spawn(struct child *c, const char *lease, const char *id) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  const char *kc = tn_test_env("KUBECONFIG");
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
  if (pid == 0) {
    close(p[0]);
    child_main(kc, lease, id, p[1]);
  }
  close(p[1]);
  c->pid = pid;
  c->fd = p[0];
  snprintf(c->id, sizeof c->id, "%s", id);
}

/* Waits up to timeout_s for a line from c; returns its first character, 0 on timeout. */
static char child_line(struct child *c, double timeout_s) {
  struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
  int rc = poll(&pfd, 1, (int)(timeout_s * 1000));
  if (rc <= 0)
    return 0;
  char buf[1100];
  ssize_t n = read(c->fd, buf, sizeof buf - 1);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  cr_assert_neq(buf[0], 'E', "child %s failed: %s", c->id, buf + 2);
  return buf[0];
}

static void reap(struct child *c) {
  if (c->pid > 0) {
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    c->pid = 0;
  }
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
}

Test(leader, two_processes_elect_one_and_survive_a_sigkill, .timeout = 90) {
  char lease[48], ida[64], idb[64];
  tn_test_unique_name(lease, sizeof lease, "leader-procs");
  snprintf(ida, sizeof ida, "%s-a", lease);
  snprintf(idb, sizeof idb, "%s-b", lease);
  struct child a = {.fd = -1}, b = {.fd = -1};
  spawn(&a, lease, ida);
  cr_assert_eq(child_line(&a, 20), 'L', "the first process never led");
  spawn(&b, lease, idb);
  /* The second process stays a standby while the first is alive. */
  cr_assert_eq(child_line(&b, 3 * LEASE_S), 0, "a second leader while the first was alive");
  char *holder = lease_field(lease, ".spec.holderIdentity");
  cr_assert_str_eq(holder, ida);
  free(holder);

  double t0 = tn_test_now();
  cr_assert_eq(kill(a.pid, SIGKILL), 0);
  waitpid(a.pid, NULL, 0);
  a.pid = 0;
  char got = child_line(&b, 10 * LEASE_S);
  double took = tn_test_now() - t0;
  cr_assert_eq(got, 'L', "the standby process did not take over after the leader was killed");
  printf("leader: two processes, takeover after SIGKILL of the leader took %.2f s (lease %.0f s, retry "
         "%.1f s)\n",
         took, LEASE_S, RETRY_S);
  cr_assert_gt(took, LEASE_S - 2.2 * RETRY_S - 0.3, "took over after %.2f s: before the lease expired", took);
  cr_assert_lt(took, 3 * LEASE_S, "took %.2f s", took);
  holder = lease_field(lease, ".spec.holderIdentity");
  cr_assert_str_eq(holder, idb);
  free(holder);
  reap(&a);
  reap(&b);
  delete_lease(lease);
}

/* ---- a standby that watches the Lease (issue 18) ---------------------------------------------- */

/* A Lease held by a holder that is not an elector: the test renews it by hand. */
static void ghost_lease(const char *lease, const char *renew) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":\"%s\","
      "\"namespace\":\"%s\"},\"spec\":{\"holderIdentity\":\"ghost\",\"leaseDurationSeconds\":8,"
      "\"acquireTime\":\"2026-01-01T00:00:00.000000Z\",\"renewTime\":\"%s\",\"leaseTransitions\":0}}' | "
      "kubectl apply -f - >/dev/null",
      lease, NS, renew);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

/* A standby ("standby": retry period 5 s, lease 8 s) started against a fresh Lease of the ghost's,
 * renewed at 00:00:01. */
static struct tn_leader *ghost_and_standby(struct tn_kube *k, const char *lease, bool no_watch,
                                           struct probe *p) {
  delete_lease(lease);
  ghost_lease(lease, "2026-01-01T00:00:01.000000Z");
  probe_init(p);
  struct tn_leader_config cfg = {.namespace = NS,
                                 .name = lease,
                                 .identity = "standby",
                                 .lease_duration_s = 8,
                                 .renew_deadline_s = 6.5,
                                 .retry_period_s = 5,
                                 .on_started_leading = on_started,
                                 .ud = p,
                                 .no_watch = no_watch};
  struct tn_leader *b = NULL;
  struct tn_error err;
  cr_assert_eq(tn_leader_new(k, &cfg, &b, &err), 0, "%s", err.message);
  cr_assert_eq(tn_leader_start(b), 0);
  return b;
}

/* A standby with a retry period of 5 s and a lease of 8 s watches a ghost's Lease, renewed once 1 s
 * after the standby first read it, then never again. Watching, it observes the renewal when it
 * happens and takes over about 8 s after it (9 s after the start); polling (no_watch), it sees
 * the renewal at its next read, 5-6 s after the start, and takes over 13-14 s after the start.
 * Returns the takeover's time after the start. */
static double takeover_after_one_renewal(bool no_watch) {
  char lease[64];
  tn_test_unique_name(lease, sizeof lease, no_watch ? "lease-poll" : "lease-watch");
  struct tn_kube *k = connect_kube();
  struct probe p;
  double t0 = tn_test_now();
  struct tn_leader *b = ghost_and_standby(k, lease, no_watch, &p);
  usleep(1000 * 1000);
  double renewed = tn_test_now();
  ghost_lease(lease, "2026-01-01T00:00:02.000000Z");
  while (!tn_leader_is_leader(b) && tn_test_now() - t0 < 25)
    usleep(20 * 1000);
  double took = tn_test_now();
  cr_assert(tn_leader_is_leader(b), "the standby never took the ghost's lease over");
  cr_assert_geq(took - renewed, 8.0 - 0.05, "taken %.2f s after the last renewal: before it expired",
                took - renewed);
  tn_leader_free(b);
  delete_lease(lease);
  tn_kube_free(k);
  return took - t0;
}

Test(leader, a_watching_standby_takes_over_a_lease_duration_after_the_last_renewal, .timeout = 60) {
  double watching = takeover_after_one_renewal(false);
  cr_assert_lt(watching, 10.5, "watching: taken over %.2f s after the start (about 9 expected)", watching);
  double polling = takeover_after_one_renewal(true);
  cr_assert_geq(polling, 12.5, "polling: taken over %.2f s after the start (13-14 expected)", polling);
  cr_log_info("takeover after the start: watching %.2f s, polling %.2f s", watching, polling);
}

/* A release seen through the watch ends the standby's wait: it takes the Lease within a moment,
 * not at its next poll (5-11 s here). */
Test(leader, a_watching_standby_takes_a_released_lease_at_once, .timeout = 60) {
  char lease[64];
  tn_test_unique_name(lease, sizeof lease, "lease-release");
  struct tn_kube *k = connect_kube();
  struct probe p;
  struct tn_leader *b = ghost_and_standby(k, lease, false, &p);
  usleep(1000 * 1000);
  char *out = NULL;
  double released = tn_test_now();
  int rc = tn_test_sh(&out,
                      "kubectl -n %s patch lease %s --type=merge -p "
                      "'{\"spec\":{\"holderIdentity\":\"\",\"leaseDurationSeconds\":1}}' >/dev/null",
                      NS, lease);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  while (!tn_leader_is_leader(b) && tn_test_now() - released < 20)
    usleep(20 * 1000);
  double took = tn_test_now() - released;
  cr_assert(tn_leader_is_leader(b), "the standby never took the released lease");
  cr_assert_lt(took, 2.5, "taken %.2f s after the release (its next poll was 4-10 s away)", took);
  cr_log_info("released lease taken %.2f s after the release", took);
  tn_leader_free(b);
  delete_lease(lease);
  tn_kube_free(k);
}
