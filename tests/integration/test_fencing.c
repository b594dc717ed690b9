/* test_fencing.c - leadership fencing with two real operator processes against the real API
 * server and PostgreSQL: a leader paused (SIGSTOP) past its lease is replaced by the standby and,
 * when it wakes (SIGCONT), writes nothing more (no Tenant status, no namespace, no audit row) and
 * exits non-zero; a fresh replica then converges what the fenced ones left; SIGTERM releases. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

/* Short timings so the suite runs in seconds (the flags exist for this). */
#define LEASE_FLAGS                                                                                          \
  "--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s", "--leader-elect-retry-period=500ms"

static void start_replica(struct tn_test_operator *op, const char *lease_arg) {
  tn_test_operator_start(op, (const char *const[]){"--leader-elect", "--leader-election-namespace=default",
                                                   lease_arg, LEASE_FLAGS, "--sync-period=2s", "--workers=2",
                                                   "--graceful-shutdown-timeout=10s", NULL});
}

static bool wait_leading(struct tn_test_operator *op, double timeout_s) {
  double end = tn_test_now() + timeout_s;
  while (tn_test_now() < end) {
    if (tn_test_metric_sum(op->metrics_port, "leader_election_master_status") == 1)
      return true;
    usleep(100 * 1000);
  }
  return false;
}

static char *holder(const char *lease) {
  return tn_test_output("kubectl -n default get lease %s -o jsonpath='{.spec.holderIdentity}'", lease);
}

/* Everything a leader would write for tenant t, as one string: the Tenant's resourceVersion
 * (status writes move it), its namespace's, and the audit rows about it. */
static char *footprint(const char *t) {
  return tn_test_output(
      "echo tenant=$(kubectl get tenant %s -o jsonpath='{.metadata.resourceVersion}/{.status.state}')"
      " ns=$(kubectl get namespace %s-prod -o jsonpath='{.metadata.resourceVersion}')"
      " audit=$(psql \"$TENANCY_PG_DSN\" -Atc \"SELECT count(*) FROM tenancy.audit_events WHERE target LIKE "
      "'%%%s%%'\" 2>/dev/null || echo none)",
      t, t, t);
}

static void dump(struct tn_test_operator *a, struct tn_test_operator *b) {
  tn_test_operator_dump_log(a);
  tn_test_operator_dump_log(b);
}

Test(fencing, a_paused_leader_writes_nothing_after_losing_the_lease_and_exits_nonzero, .timeout = 240) {
  struct tn_test_operator a = {0}, b = {0}, c = {0};
  char lease[64], lease_arg[128], t[64], *out = NULL;
  tn_test_install_api();
  tn_test_unique_name(lease, sizeof lease, "fence");
  snprintf(lease_arg, sizeof lease_arg, "--leader-election-id=%s", lease);
  tn_test_unique_name(t, sizeof t, "tn-fence");

  /* 1. A leads; B stands by. */
  start_replica(&a, lease_arg);
  if (!wait_leading(&a, 60)) {
    tn_test_operator_dump_log(&a);
    cr_assert_fail("the first replica never led");
  }
  char *id_a = holder(lease);
  start_replica(&b, lease_arg);
  cr_assert(tn_test_operator_wait_ready(&b, 60), "the standby never became ready");

  /* 2. A converges a tenant. */
  cr_assert_eq(
      tn_test_sh(
          &out,
          "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":"
          "\"%s\"},\"spec\":{\"displayName\":\"Fence\",\"state\":\"Active\",\"plan\":\"standard\","
          "\"isolation\":\"shared\",\"residency\":{\"allowedRegions\":[\"eu-west-1\"],\"preferredRegion\":"
          "\"eu-west-1\"},\"environments\":[\"prod\"],\"identity\":{\"domain\":\"x.example\","
          "\"groupBindings\":[{\"group\":\"%s-admins\",\"role\":\"tenant-admin\"}]}}}' | kubectl apply -f -",
          t, t),
      0, "%s", out);
  free(out);
  if (tn_test_sh_until(
          60, &out,
          "kubectl get tenant %s -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' "
          "| grep -qx True",
          t)) {
    dump(&a, &b);
    cr_assert_fail("tenant %s never became Ready", t);
  }
  free(out);

  /* 3. Pause A past its lease: B takes over and leads. */
  cr_assert_eq(kill(a.pid, SIGSTOP), 0);
  if (!wait_leading(&b, 30)) {
    dump(&a, &b);
    cr_assert_fail("the standby did not take the lease of a paused leader");
  }
  char *id_b = holder(lease);
  cr_assert_str_neq(id_a, id_b, "the lease changed hands");

  /* 4. Pause B too (it still holds the lease), then give a leader something to write: a suspend
   * (status, namespace labels, an audit row). Nobody may act on it while the fenced ones wake. */
  cr_assert_eq(kill(b.pid, SIGSTOP), 0);
  cr_assert_eq(
      tn_test_sh(&out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Suspended\"}}'", t),
      0, "%s", out);
  free(out);
  char *before = footprint(t);
  cr_assert(strstr(before, "/Active "), "the tenant was not Active before: %s", before);

  /* 5. Wake A: its lease is gone; it must exit non-zero without writing. */
  cr_assert_eq(kill(a.pid, SIGCONT), 0);
  int code_a = tn_test_operator_stop(&a, 0, 20);
  if (code_a != 1)
    tn_test_operator_dump_log(&a);
  cr_assert_eq(code_a, 1, "the old leader must exit 1 after losing the lease (got %d)", code_a);
  sleep(2); /* anything it sent would have landed by now */
  char *after_a = footprint(t);
  cr_assert_str_eq(after_a, before, "the old leader wrote after losing the lease");
  char *h = holder(lease);
  cr_assert_str_eq(h, id_b, "the old leader took the lease back");
  free(h);

  /* 6. Wake B: paused past its own lease too, it must behave the same. */
  cr_assert_eq(kill(b.pid, SIGCONT), 0);
  int code_b = tn_test_operator_stop(&b, 0, 20);
  if (code_b != 1)
    tn_test_operator_dump_log(&b);
  cr_assert_eq(code_b, 1, "the second leader must exit 1 after losing the lease (got %d)", code_b);
  sleep(2);
  char *after_b = footprint(t);
  cr_assert_str_eq(after_b, before, "the second leader wrote after losing the lease");

  /* 7. Control: a fresh replica leads and does the writes the fenced ones did not. */
  start_replica(&c, lease_arg);
  if (!wait_leading(&c, 30)) {
    tn_test_operator_dump_log(&c);
    cr_assert_fail("a fresh replica never led");
  }
  if (tn_test_sh_until(60, &out,
                       "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = Suspended", t)) {
    tn_test_operator_dump_log(&c);
    cr_assert_fail("the fresh leader did not suspend %s: the test's write was never wanted", t);
  }
  free(out);

  /* 8. Clean up through the leader, then SIGTERM: exit 0 and the lease handed back. */
  tn_test_sh(&out, "kubectl delete tenant %s --wait=true --timeout=60s", t);
  free(out);
  int code_c = tn_test_operator_stop(&c, SIGTERM, 40);
  if (code_c != 0)
    tn_test_operator_dump_log(&c);
  cr_assert_eq(code_c, 0);
  h = holder(lease);
  cr_assert_str_eq(h, "", "SIGTERM releases the lease");
  free(h);
  tn_test_sh(&out, "kubectl -n default delete lease %s", lease);
  free(out);
  free(before);
  free(after_a);
  free(after_b);
  free(id_a);
  free(id_b);
}

/* ---- /readyz while shutting down -------------------------------------------------------------- */

struct hammer {
  int port;
  atomic_bool *stop;
  atomic_int *shutting_down_seen, *answers;
};

static void *hammer_main(void *arg) {
  struct hammer *h = arg;
  while (!atomic_load(h->stop)) {
    char *body = NULL;
    int status = tn_test_http_get(h->port, "/readyz", &body);
    if (status)
      atomic_fetch_add(h->answers, 1);
    if (status == 503 && body && strstr(body, "shutting down"))
      atomic_fetch_add(h->shutting_down_seen, 1);
    free(body);
  }
  return NULL;
}

/* The probe server used to outlive the manager it reads: a /readyz during the teardown read freed
 * memory (AddressSanitizer makes the process exit non-zero). Now it answers 503 "shutting down"
 * and stops before anything it reads is freed. */
Test(fencing, readyz_during_shutdown_answers_503_and_reads_nothing_freed, .timeout = 120) {
  struct tn_test_operator op = {0};
  tn_test_install_api();
  tn_test_operator_start(
      &op, (const char *const[]){"--leader-elect=false", "--graceful-shutdown-timeout=5s", NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
  enum { N = 4 };
  atomic_bool stop = false;
  atomic_int seen = 0, answers = 0;
  struct hammer h[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    h[i] = (struct hammer){
        .port = op.probe_port, .stop = &stop, .shutting_down_seen = &seen, .answers = &answers};
    cr_assert_eq(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
  }
  usleep(300 * 1000);
  int code = tn_test_operator_stop(&op, SIGTERM, 40);
  atomic_store(&stop, true);
  for (int i = 0; i < N; i++)
    pthread_join(th[i], NULL);
  if (code != 0)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(code, 0, "the operator must exit cleanly (a sanitizer report exits non-zero)");
  cr_assert_gt(atomic_load(&answers), 10, "the probes were hammered");
  cr_assert_gt(atomic_load(&seen), 0, "/readyz said 503 shutting down during the teardown");
}
