/* test_leader.c - the leader election decision core, driven with a fake clock and Lease
 * records (no network), the Lease object mapping, identities and configuration checks. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <string.h>
#include <unistd.h>

#include "runtime/leader.h"
#include "runtime/metrics.h"
#include "util/buf.h"

/* 2026-01-02T03:04:05.678901Z */
#define WALL 1767323045.678901

static struct tn_lease_record held_by(const char *holder, int duration, const char *renew, int transitions) {
  struct tn_lease_record r;
  memset(&r, 0, sizeof r);
  snprintf(r.holder, sizeof r.holder, "%s", holder);
  r.lease_duration_s = duration;
  snprintf(r.acquire_time, sizeof r.acquire_time, "2026-01-01T00:00:00.000000Z");
  snprintf(r.renew_time, sizeof r.renew_time, "%s", renew);
  r.transitions = transitions;
  return r;
}

Test(leader_core, creates_the_lease_when_absent) {
  struct tn_leader_core c;
  struct tn_lease_record want;
  tn_leader_core_init(&c, "me", 15);
  cr_assert_not(tn_leader_core_is_leader(&c));
  cr_assert_eq(tn_leader_core_decide(&c, NULL, 100, WALL, &want), TN_LEASE_CREATE);
  cr_assert_str_eq(want.holder, "me");
  cr_assert_eq(want.lease_duration_s, 15);
  cr_assert_eq(want.transitions, 0);
  cr_assert_str_eq(want.renew_time, "2026-01-02T03:04:05.678901Z");
  cr_assert_str_eq(want.acquire_time, want.renew_time);
  cr_assert_not(tn_leader_core_is_leader(&c), "nothing is ours before the write succeeds");
  tn_leader_core_written(&c, &want, 100.2);
  cr_assert(tn_leader_core_is_leader(&c));
  cr_assert(tn_leader_core_lease_valid(&c, 115.1));
  cr_assert_not(tn_leader_core_lease_valid(&c, 115.2));
}

Test(leader_core, does_not_take_a_held_fresh_lease) {
  struct tn_leader_core c;
  struct tn_lease_record want, r = held_by("other", 15, "2026-01-01T00:00:01.000000Z", 4);
  tn_leader_core_init(&c, "me", 15);
  cr_assert_eq(tn_leader_core_decide(&c, &r, 100, WALL, &want), TN_LEASE_WAIT);
  cr_assert_eq(tn_leader_core_decide(&c, &r, 105, WALL, &want), TN_LEASE_WAIT);
  cr_assert_eq(tn_leader_core_decide(&c, &r, 114.99, WALL, &want), TN_LEASE_WAIT);
  cr_assert_not(tn_leader_core_is_leader(&c));
}

Test(leader_core, takes_an_expired_lease_and_counts_the_transition) {
  struct tn_leader_core c;
  struct tn_lease_record want, r = held_by("other", 15, "2026-01-01T00:00:01.000000Z", 4);
  tn_leader_core_init(&c, "me", 10);
  cr_assert_eq(tn_leader_core_decide(&c, &r, 100, WALL, &want), TN_LEASE_WAIT);
  /* The same record 15 s (its leaseDurationSeconds, not ours) after we first saw it. */
  cr_assert_eq(tn_leader_core_decide(&c, &r, 115, WALL, &want), TN_LEASE_UPDATE);
  cr_assert_str_eq(want.holder, "me");
  cr_assert_eq(want.lease_duration_s, 10);
  cr_assert_eq(want.transitions, 5);
  cr_assert_str_eq(want.acquire_time, "2026-01-02T03:04:05.678901Z", "a new holder gets a new acquireTime");
  cr_assert_str_eq(want.renew_time, want.acquire_time);
}

Test(leader_core, a_renewal_restarts_the_expiry_clock) {
  struct tn_leader_core c;
  struct tn_lease_record want;
  struct tn_lease_record r1 = held_by("other", 15, "2026-01-01T00:00:01.000000Z", 1);
  struct tn_lease_record r2 = held_by("other", 15, "2026-01-01T00:00:11.000000Z", 1);
  tn_leader_core_init(&c, "me", 15);
  cr_assert_eq(tn_leader_core_decide(&c, &r1, 100, WALL, &want), TN_LEASE_WAIT);
  cr_assert_eq(tn_leader_core_decide(&c, &r2, 110, WALL, &want), TN_LEASE_WAIT);
  cr_assert_eq(tn_leader_core_decide(&c, &r2, 124.9, WALL, &want), TN_LEASE_WAIT,
               "observed at 110, so valid until 125");
  cr_assert_eq(tn_leader_core_decide(&c, &r2, 125, WALL, &want), TN_LEASE_UPDATE);
}

Test(leader_core, never_compares_our_clock_with_the_servers_renew_time) {
  struct tn_leader_core c;
  struct tn_lease_record want;
  /* A renewTime long in the past: still fresh, since we just saw it. */
  struct tn_lease_record old = held_by("other", 15, "2001-01-01T00:00:00.000000Z", 0);
  tn_leader_core_init(&c, "me", 15);
  cr_assert_eq(tn_leader_core_decide(&c, &old, 100, WALL, &want), TN_LEASE_WAIT);
  /* A renewTime far in the future does not prolong a lease that stopped changing. */
  struct tn_lease_record future = held_by("other", 15, "2100-01-01T00:00:00.000000Z", 0);
  tn_leader_core_init(&c, "me", 15);
  cr_assert_eq(tn_leader_core_decide(&c, &future, 100, WALL, &want), TN_LEASE_WAIT);
  cr_assert_eq(tn_leader_core_decide(&c, &future, 115, WALL, &want), TN_LEASE_UPDATE);
}

Test(leader_core, takes_a_released_lease_at_once) {
  struct tn_leader_core c;
  struct tn_lease_record want, r = held_by("", 1, "2026-01-01T00:00:01.000000Z", 7);
  tn_leader_core_init(&c, "me", 15);
  cr_assert_eq(tn_leader_core_decide(&c, &r, 100, WALL, &want), TN_LEASE_UPDATE);
  cr_assert_str_eq(want.holder, "me");
  cr_assert_eq(want.transitions, 8);
}

Test(leader_core, the_leader_renews_keeping_acquire_time_and_transitions) {
  struct tn_leader_core c;
  struct tn_lease_record want, r = held_by("other", 15, "2026-01-01T00:00:01.000000Z", 2);
  tn_leader_core_init(&c, "me", 15);
  (void)tn_leader_core_decide(&c, &r, 100, WALL, &want);
  cr_assert_eq(tn_leader_core_decide(&c, &r, 116, WALL, &want), TN_LEASE_UPDATE);
  tn_leader_core_written(&c, &want, 116.1);
  char acquired[40];
  snprintf(acquired, sizeof acquired, "%s", want.acquire_time);

  /* Fast path: no read, renewTime moves, the rest stays. */
  struct tn_lease_record renew;
  cr_assert(tn_leader_core_fast_renew(&c, 118, WALL + 2, &renew));
  cr_assert_str_eq(renew.holder, "me");
  cr_assert_str_eq(renew.acquire_time, acquired);
  cr_assert_str_eq(renew.renew_time, "2026-01-02T03:04:07.678901Z");
  cr_assert_eq(renew.transitions, 3);
  tn_leader_core_written(&c, &renew, 118.1);

  /* Slow path (after a read of our own record): still a renewal, not a transition. */
  struct tn_lease_record ours = renew;
  cr_assert_eq(tn_leader_core_decide(&c, &ours, 120, WALL + 4, &want), TN_LEASE_UPDATE);
  cr_assert_str_eq(want.acquire_time, acquired);
  cr_assert_eq(want.transitions, 3);
  cr_assert_str_eq(want.renew_time, "2026-01-02T03:04:09.678901Z");
}

Test(leader_core, the_fast_path_needs_a_valid_lease) {
  struct tn_leader_core c;
  struct tn_lease_record want, renew;
  tn_leader_core_init(&c, "me", 15);
  cr_assert_not(tn_leader_core_fast_renew(&c, 0, WALL, &renew), "no fast path before we hold it");
  (void)tn_leader_core_decide(&c, NULL, 0, WALL, &want);
  tn_leader_core_written(&c, &want, 0);
  cr_assert(tn_leader_core_fast_renew(&c, 14.9, WALL, &renew));
  cr_assert_not(tn_leader_core_fast_renew(&c, 15, WALL, &renew), "expired by our own clock: read first");
}

Test(leader_core, a_leader_that_sees_another_holder_is_not_leader) {
  struct tn_leader_core c;
  struct tn_lease_record want;
  tn_leader_core_init(&c, "me", 15);
  (void)tn_leader_core_decide(&c, NULL, 0, WALL, &want);
  tn_leader_core_written(&c, &want, 0);
  cr_assert(tn_leader_core_is_leader(&c));
  struct tn_lease_record theirs = held_by("other", 15, "2026-01-02T03:05:00.000000Z", 1);
  cr_assert_eq(tn_leader_core_decide(&c, &theirs, 30, WALL, &want), TN_LEASE_WAIT);
  cr_assert_not(tn_leader_core_is_leader(&c));
}

Test(leader_core, release_empties_the_holder_and_shortens_the_lease) {
  struct tn_leader_core c;
  struct tn_lease_record want, rel;
  tn_leader_core_init(&c, "me", 15);
  cr_assert_not(tn_leader_core_release(&c, WALL, &rel), "nothing to release before leading");
  struct tn_lease_record r = held_by("", 1, "2026-01-01T00:00:01.000000Z", 6);
  cr_assert_eq(tn_leader_core_decide(&c, &r, 0, WALL, &want), TN_LEASE_UPDATE);
  tn_leader_core_written(&c, &want, 0);
  cr_assert(tn_leader_core_release(&c, WALL + 1, &rel));
  cr_assert_str_eq(rel.holder, "");
  cr_assert_eq(rel.lease_duration_s, 1);
  cr_assert_eq(rel.transitions, 7);
  cr_assert_str_eq(rel.renew_time, "2026-01-02T03:04:06.678901Z");
  tn_leader_core_written(&c, &rel, 1);
  cr_assert_not(tn_leader_core_is_leader(&c));

  /* A standby that saw us hold it takes the released record without waiting. */
  struct tn_leader_core s;
  struct tn_lease_record ours = want;
  tn_leader_core_init(&s, "standby", 15);
  cr_assert_eq(tn_leader_core_decide(&s, &ours, 0, WALL, &want), TN_LEASE_WAIT);
  cr_assert_eq(tn_leader_core_decide(&s, &rel, 1.5, WALL, &want), TN_LEASE_UPDATE);
  cr_assert_str_eq(want.holder, "standby");
  cr_assert_eq(want.transitions, 8);
}

Test(leader_core, reports_each_new_holder_once) {
  struct tn_leader_core c;
  struct tn_lease_record want;
  const char *who = NULL;
  tn_leader_core_init(&c, "me", 15);
  cr_assert_not(tn_leader_core_take_transition(&c, &who), "nothing observed yet");
  struct tn_lease_record r = held_by("other", 15, "2026-01-01T00:00:01.000000Z", 0);
  (void)tn_leader_core_decide(&c, &r, 0, WALL, &want);
  cr_assert(tn_leader_core_take_transition(&c, &who));
  cr_assert_str_eq(who, "other");
  cr_assert_not(tn_leader_core_take_transition(&c, &who));
  (void)tn_leader_core_decide(&c, &r, 20, WALL, &want);
  tn_leader_core_written(&c, &want, 20);
  cr_assert(tn_leader_core_take_transition(&c, &who));
  cr_assert_str_eq(who, "me");
}

Test(lease_object, reads_and_writes_the_spec) {
  json_error_t e;
  json_t *lease = json_loads("{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
                             "\"metadata\":{\"name\":\"l\",\"namespace\":\"ns\",\"resourceVersion\":\"42\"},"
                             "\"spec\":{\"holderIdentity\":\"h1\",\"leaseDurationSeconds\":15,"
                             "\"acquireTime\":\"2026-01-01T00:00:00.000000Z\","
                             "\"renewTime\":\"2026-01-01T00:00:09.500000Z\",\"leaseTransitions\":3,"
                             "\"strategy\":\"OldestEmulationVersion\"}}",
                             0, &e);
  cr_assert_not_null(lease, "%s", e.text);
  struct tn_lease_record r;
  cr_assert_eq(tn_lease_record_from_lease(lease, &r), 0);
  cr_assert_str_eq(r.holder, "h1");
  cr_assert_eq(r.lease_duration_s, 15);
  cr_assert_str_eq(r.acquire_time, "2026-01-01T00:00:00.000000Z");
  cr_assert_str_eq(r.renew_time, "2026-01-01T00:00:09.500000Z");
  cr_assert_eq(r.transitions, 3);

  r.holder[0] = '\0';
  r.lease_duration_s = 1;
  r.transitions = 4;
  cr_assert_eq(tn_lease_record_to_lease(&r, lease), 0);
  json_t *spec = json_object_get(lease, "spec");
  cr_assert_str_eq(json_string_value(json_object_get(spec, "holderIdentity")), "",
                   "a released lease says \"\", as client-go writes it");
  cr_assert_eq(json_integer_value(json_object_get(spec, "leaseDurationSeconds")), 1);
  cr_assert_eq(json_integer_value(json_object_get(spec, "leaseTransitions")), 4);
  cr_assert_str_eq(json_string_value(json_object_get(spec, "strategy")), "OldestEmulationVersion",
                   "fields we do not own are kept");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(lease, "metadata"), "resourceVersion")),
                   "42", "the resourceVersion stays: it is the PUT's precondition");
  json_decref(lease);
}

Test(lease_object, missing_fields_read_as_empty) {
  json_t *lease = json_pack("{s:{s:s}}", "metadata", "name", "l");
  struct tn_lease_record r;
  cr_assert_eq(tn_lease_record_from_lease(lease, &r), 0);
  cr_assert_str_eq(r.holder, "");
  cr_assert_eq(r.lease_duration_s, 0);
  cr_assert_eq(r.transitions, 0);
  json_decref(lease);
  cr_assert_neq(tn_lease_record_from_lease(NULL, &r), 0);

  /* A lease without a holder or duration is free to take. */
  struct tn_leader_core c;
  struct tn_lease_record want;
  tn_leader_core_init(&c, "me", 15);
  cr_assert_eq(tn_leader_core_decide(&c, &r, 0, WALL, &want), TN_LEASE_UPDATE);
}

Test(lease_object, new_object_shape) {
  struct tn_lease_record r = held_by("me", 15, "2026-01-02T03:04:05.678901Z", 0);
  json_t *o = tn_lease_new_object("tenancy-system", "tenancy-operator-leader", &r);
  cr_assert_not_null(o);
  char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  cr_assert_str_eq(s,
                   "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":"
                   "\"tenancy-operator-leader\",\"namespace\":\"tenancy-system\"},\"spec\":{\"acquireTime\":"
                   "\"2026-01-01T00:00:00.000000Z\",\"holderIdentity\":\"me\",\"leaseDurationSeconds\":15,"
                   "\"leaseTransitions\":0,\"renewTime\":\"2026-01-02T03:04:05.678901Z\"}}");
  free(s);
  json_decref(o);
}

Test(leader, default_identity_is_hostname_and_random_hex) {
  char a[300], b[300], host[256];
  cr_assert_eq(tn_leader_default_identity(a, sizeof a), 0);
  cr_assert_eq(tn_leader_default_identity(b, sizeof b), 0);
  cr_assert_str_neq(a, b);
  cr_assert_eq(gethostname(host, sizeof host), 0);
  size_t hl = strlen(host);
  cr_assert_eq(strncmp(a, host, hl), 0, "%s should start with %s", a, host);
  cr_assert_eq(a[hl], '_');
  cr_assert_eq(strlen(a + hl + 1), 32);
  for (const char *p = a + hl + 1; *p; p++)
    cr_assert(isxdigit((unsigned char)*p) && !isupper((unsigned char)*p), "%s", a);
}

static int dummy_kube;

Test(leader, refuses_inconsistent_durations) {
  struct tn_leader *le = NULL;
  struct tn_error err;
  struct tn_leader_config cfg = {.namespace = "ns", .name = "l"};
  cfg.lease_duration_s = 10;
  cfg.renew_deadline_s = 10;
  cr_assert_eq(tn_leader_new((struct tn_kube *)&dummy_kube, &cfg, &le, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "renew deadline") != NULL, "%s", err.message);
  cfg.renew_deadline_s = 2;
  cfg.retry_period_s = 2;
  cr_assert_eq(tn_leader_new((struct tn_kube *)&dummy_kube, &cfg, &le, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "retry period") != NULL, "%s", err.message);
  cfg.lease_duration_s = 0.5;
  cfg.renew_deadline_s = 0.4;
  cfg.retry_period_s = 0.1;
  cr_assert_eq(tn_leader_new((struct tn_kube *)&dummy_kube, &cfg, &le, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "at least 1s") != NULL, "%s", err.message);
  struct tn_leader_config no_ns = {.name = "l"};
  cr_assert_eq(tn_leader_new((struct tn_kube *)&dummy_kube, &no_ns, &le, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "--leader-election-namespace") != NULL, "%s", err.message);
  cr_assert_null(le);
}

Test(leader, registers_the_status_gauge_at_zero) {
  struct tn_metrics *m = tn_metrics_new();
  struct tn_leader *le = NULL;
  struct tn_error err;
  struct tn_leader_config cfg = {.namespace = "ns", .name = "my-lease", .identity = "me", .metrics = m};
  cr_assert_eq(tn_leader_new((struct tn_kube *)&dummy_kube, &cfg, &le, &err), 0, "%s", err.message);
  cr_assert_str_eq(tn_leader_identity(le), "me");
  cr_assert_not(tn_leader_is_leader(le));
  struct tn_buf out;
  tn_buf_init(&out, 1 << 20);
  cr_assert_eq(tn_metrics_write(m, &out), 0);
  cr_assert(strstr(tn_buf_str(&out), "leader_election_master_status{name=\"my-lease\"} 0") != NULL, "%s",
            tn_buf_str(&out));
  tn_buf_cleanup(&out);
  tn_leader_free(le); /* never started: no thread, no I/O */
  tn_metrics_free(m);
}

/* A standby wakes just past the observed lease's expiry instead of up to a jittered retry period
 * later; never sooner than the retry period while the lease is far from expiry, and at the
 * ordinary pace once it expired (a failed attempt must not turn into a tight loop). */
Test(leader_core, a_standby_wakes_at_the_observed_expiry) {
  struct tn_leader_core c;
  struct tn_lease_record want, held = {.lease_duration_s = 15};
  snprintf(held.holder, sizeof held.holder, "%s", "other");
  tn_leader_core_init(&c, "me", 15);
  cr_assert_float_eq(tn_leader_core_next_attempt(&c, 100, 3.1), 3.1, 1e-9,
                     "nothing observed: the retry period");
  cr_assert_eq(tn_leader_core_decide(&c, &held, 100, WALL, &want), TN_LEASE_WAIT);
  cr_assert_float_eq(tn_leader_core_next_attempt(&c, 101, 3.1), 3.1, 1e-9, "far from expiry");
  cr_assert_float_eq(tn_leader_core_next_attempt(&c, 113.5, 3.1), 1.51, 1e-6, "just past the expiry at 115");
  cr_assert_float_eq(tn_leader_core_next_attempt(&c, 115.5, 3.1), 3.1, 1e-9,
                     "expired already: ordinary pace");
}

/* A standby that watches the Lease observes a renewal when the event comes: the expiry runs from
 * then, and a poll that reads the same record later does not move it (issue 18: polling saw
 * renewals up to a jittered retry period late, so the takeover came that much later). */
Test(leader_core, a_watched_renewal_starts_the_expiry_when_it_is_seen) {
  struct tn_leader_core c;
  struct tn_lease_record want;
  struct tn_lease_record r1 = held_by("other", 15, "2026-01-01T00:00:01.000000Z", 1);
  struct tn_lease_record r2 = held_by("other", 15, "2026-01-01T00:00:03.000000Z", 1);
  tn_leader_core_init(&c, "me", 15);
  cr_assert_eq(tn_leader_core_decide(&c, &r1, 100, WALL, &want), TN_LEASE_WAIT);
  cr_assert(tn_leader_core_seen(&c, &r2, 102.05), "a new record from the watch");
  cr_assert_not(tn_leader_core_seen(&c, &r2, 102.3), "the same record again (a relist)");
  /* The next poll, 2.4 s after the last one, reads r2: observed at 102.05, not at 102.4. */
  cr_assert_eq(tn_leader_core_decide(&c, &r2, 102.4, WALL, &want), TN_LEASE_WAIT);
  cr_assert_float_eq(tn_leader_core_next_attempt(&c, 116, 3.1), 1.06, 1e-6, "expiry at 117.05");
  cr_assert_eq(tn_leader_core_decide(&c, &r2, 117.06, WALL, &want), TN_LEASE_UPDATE);
}

/* Our own records come from our writes: a late watch event of an older renewal of ours, or any
 * event while we are the observed holder, changes nothing. */
Test(leader_core, watch_events_never_replace_what_the_leader_wrote) {
  struct tn_leader_core c;
  struct tn_lease_record want;
  tn_leader_core_init(&c, "me", 15);
  cr_assert_eq(tn_leader_core_decide(&c, NULL, 100, WALL, &want), TN_LEASE_CREATE);
  tn_leader_core_written(&c, &want, 100.1);
  struct tn_lease_record old_ours = held_by("me", 15, "2026-01-01T00:00:00.500000Z", 0);
  struct tn_lease_record other = held_by("other", 15, "2026-01-01T00:00:09.000000Z", 1);
  cr_assert_not(tn_leader_core_seen(&c, &old_ours, 101));
  cr_assert_not(tn_leader_core_seen(&c, &other, 101), "while we hold it, the reads decide");
  cr_assert(tn_leader_core_is_leader(&c));
  cr_assert_float_eq(c.observed_time, 100.1, 1e-9);
}
