/* test_lifecycle_truth.c - status.state and the audit trail say what is true, through kubectl
 * against the real API server and the audit rows in PostgreSQL:
 * - activation has prerequisites: a missing Plan or a Region without the capacity keeps the
 *   tenant Draft, with the failing condition, an ActivationRefused Event and one `refused` row,
 *   nothing provisioned; once the cause is gone the tenant becomes Active with a `succeeded` row;
 * - an effect that failed is not a transition that succeeded: the tenant's database server down
 *   during an activation and a suspend keeps the state, writes one `failed` row and no
 *   `succeeded` row; with the server back the transition completes with its `succeeded` row;
 * - DriftRepaired only for real drift (an owned object edited by hand), not for a Plan change
 *   propagating; every Event note carries a correlation id.
 *
 * The database server "down" is a TCP forwarder to the stack's PostgreSQL that the test starts
 * and kills (every connection through it dies with it): the Region's database server is that
 * port, while the audit trail keeps using the stack's PostgreSQL directly. The forwarder is a
 * small python3 asyncio program written to build/test-logs. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;

static void start(void) {
  tn_test_install_api();
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void stop(void) { tn_test_operator_stop(&op, SIGTERM, 40); }

TestSuite(lifecycle_truth, .init = start, .fini = stop, .timeout = 420);

/* ---- helpers --------------------------------------------------------------------------------- */

static void sh_ok(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sh_ok(const char *what, const char *fmt, ...) {
  char *cmd = NULL, *out = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&cmd, fmt, ap);
  va_end(ap);
  cr_assert_geq(n, 0);
  int rc = tn_test_sh(&out, "%s", cmd);
  if (rc) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("%s failed (exit %d): %s: %s", what, rc, cmd, out ? out : "");
  }
  free(cmd);
  free(out);
}

static void apply_json(const char *doc) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "printf '%%s' '%s' | kubectl apply -f -", doc);
  cr_assert_eq(rc, 0, "kubectl apply %s: %s", doc, out);
  free(out);
}

static void apply_plan(const char *plan, const char *cpu) {
  char doc[1024];
  snprintf(doc, sizeof doc,
           "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Plan\",\"metadata\":{\"name\":\"%s\"},"
           "\"spec\":{\"quotas\":{\"cpu\":\"%s\",\"memory\":\"1Gi\",\"storage\":\"1Gi\",\"pods\":10,"
           "\"services\":5}}}",
           plan, cpu);
  apply_json(doc);
}

/* A Region of this test; capacity and database_server are JSON members or "". */
static void apply_region(const char *region, const char *capacity, const char *database_server) {
  char doc[2048];
  snprintf(doc, sizeof doc,
           "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Region\",\"metadata\":{\"name\":\"%s\"},"
           "\"spec\":{\"available\":true,\"isolationModes\":[\"shared\",\"dedicated\",\"hybrid\"]%s%s%s%s}}",
           region, *capacity ? "," : "", capacity, *database_server ? "," : "", database_server);
  apply_json(doc);
}

static void apply_tenant(const char *t, const char *state, const char *plan, const char *region) {
  char doc[1024];
  snprintf(doc, sizeof doc,
           "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
           "\"spec\":{\"state\":\"%s\",\"plan\":\"%s\",\"isolation\":\"shared\",\"environments\":[\"prod\"],"
           "\"residency\":{\"allowedRegions\":[\"%s\"]}}}",
           t, state, plan, region);
  apply_json(doc);
}

/* Copies S (malloc'd) into one of a few static buffers and frees it: what a test asserts on
 * is then never leaked when the assertion fails (Criterion leaves the test by longjmp). */
static const char *keep(char *s) {
  static char ring[8][8192];
  static int next;
  char *b = ring[next++ % 8];
  snprintf(b, sizeof ring[0], "%s", s ? s : "");
  free(s);
  return b;
}

static const char *jsonpath(const char *what, const char *path) {
  return keep(tn_test_output("kubectl get %s -o jsonpath='%s' 2>&1", what, path));
}

static void wait_jsonpath(const char *what, const char *path, const char *want, double timeout) {
  char *out = NULL;
  int rc =
      tn_test_sh_until(timeout, &out, "test \"$(kubectl get %s -o jsonpath='%s')\" = '%s'", what, path, want);
  free(out);
  if (rc) {
    const char *got = jsonpath(what, path);
    const char *st = jsonpath(what, "{.status}");
    tn_test_operator_dump_log(&op);
    cr_assert_fail("%s %s: want '%s', got '%s' after %.0f s; status: %s", what, path, want, got, timeout, st);
  }
}

/* The tenant's audit rows (of this action; NULL: all but the placement and quota rows, which are
 * test_outbox.c's), oldest first, as "action:outcome ...". */
static const char *audit_rows(const char *t, const char *action) {
  return keep(
      tn_test_output("PGCONNECT_TIMEOUT=5 psql \"$TENANCY_PG_DSN\" -qtAc \"SELECT coalesce(string_agg(action "
                     "|| ':' || outcome, ' ' ORDER BY id), '') FROM tenancy.audit_events WHERE target = "
                     "'tenant/%s' AND (action = '%s' OR '%s' = '' AND action NOT IN ('placement.decide', "
                     "'quota.change'))\"",
                     t, action ? action : "", action ? action : ""));
}

static int count_rows(const char *t, const char *action, const char *outcome) {
  char *out =
      tn_test_output("PGCONNECT_TIMEOUT=5 psql \"$TENANCY_PG_DSN\" -qtAc \"SELECT count(*) FROM "
                     "tenancy.audit_events WHERE target = 'tenant/%s' AND action = '%s' AND outcome = '%s'\"",
                     t, action, outcome);
  int n = atoi(out);
  free(out);
  return n;
}

static void wait_rows(const char *t, const char *action, const char *outcome, int want, double timeout) {
  double end = tn_test_now() + timeout;
  int n;
  while ((n = count_rows(t, action, outcome)) != want && tn_test_now() < end)
    usleep(300 * 1000);
  if (n != want) {
    const char *rows = audit_rows(t, NULL);
    tn_test_operator_dump_log(&op);
    cr_assert_fail("tenant %s: %d %s:%s row(s), want %d; rows: %s", t, n, action, outcome, want, rows);
  }
}

/* The notes of the tenant's Events of this reason, one a line. */
static const char *event_notes(const char *t, const char *reason) {
  return keep(tn_test_output(
      "kubectl get events.events.k8s.io -n default --field-selector regarding.name=%s,reason=%s "
      "-o jsonpath='{range .items[*]}{.note}{\"\\n\"}{end}'",
      t, reason));
}

static void wait_event(const char *t, const char *reason, double timeout) {
  char *out = NULL;
  int rc = tn_test_sh_until(
      timeout, &out,
      "kubectl get events.events.k8s.io -n default --field-selector regarding.name=%s,reason=%s "
      "-o jsonpath='{.items[*].note}' | grep -q .",
      t, reason);
  free(out);
  if (rc) {
    const char *all =
        keep(tn_test_output("kubectl get events.events.k8s.io -n default --field-selector regarding.name=%s "
                            "-o jsonpath='{range .items[*]}{.reason}: {.note}{\"\\n\"}{end}'",
                            t));
    cr_assert_fail("tenant %s: no %s Event within %.0f s; events:\n%s", t, reason, timeout, all);
  }
}

static bool namespace_exists(const char *ns) {
  return tn_test_sh(NULL, "kubectl get namespace %s >/dev/null 2>&1", ns) == 0;
}

/* Lets the operator reconcile the tenant a few more times (an annotation changes no generation). */
static void nudge(const char *t, int times) {
  for (int i = 0; i < times; i++) {
    char v[32];
    snprintf(v, sizeof v, "n%d", i);
    tn_test_sh(NULL, "kubectl annotate tenant %s test.tenancy.dev/nudge=%s --overwrite >/dev/null", t, v);
    usleep(700 * 1000);
  }
}

/* ---- 1. a missing Plan at activation ------------------------------------------------------------ */

Test(lifecycle_truth, a_missing_plan_refuses_activation_until_it_exists) {
  char t[64], plan[64], region[64], what[128], ns[128];
  tn_test_unique_name(t, sizeof t, "tn-lt-noplan");
  tn_test_unique_name(plan, sizeof plan, "lt-later");
  tn_test_unique_name(region, sizeof region, "lt-r");
  snprintf(what, sizeof what, "tenant %s", t);
  snprintf(ns, sizeof ns, "%s-prod", t);
  apply_region(region, "", "");
  apply_tenant(t, "Active", plan, region);

  /* Draft, not Active; the failing condition names the Plan and what to do; Ready says why. */
  wait_jsonpath(what, "{.status.conditions[?(@.type==\"Ready\")].reason}", "ActivationRefused", 60);
  wait_jsonpath(what, "{.status.state}", "Draft", 5);
  wait_jsonpath(what, "{.status.conditions[?(@.type==\"QuotaApplied\")].reason}", "PlanNotFound", 5);
  const char *msg = jsonpath(what, "{.status.conditions[?(@.type==\"QuotaApplied\")].message}");
  cr_assert(strstr(msg, plan) && strstr(msg, "create a Plan"), "QuotaApplied message: %s", msg);
  /* A Warning Event with the correlation id, a refused row, no succeeded activation. */
  wait_event(t, "ActivationRefused", 30);
  const char *notes = event_notes(t, "ActivationRefused");
  cr_assert(strstr(notes, "correlationId=") && strstr(notes, plan), "note: %s", notes);
  wait_rows(t, "activate", "refused", 1, 20);
  /* Nothing is provisioned, and later passes do not repeat the refusal. */
  nudge(t, 4);
  cr_assert_not(namespace_exists(ns), "namespace %s was provisioned for a refused activation", ns);
  cr_assert_eq(count_rows(t, "activate", "refused"), 1, "the refusal was audited more than once");
  cr_assert_eq(count_rows(t, "activate", "succeeded"), 0);
  cr_assert_eq(count_rows(t, "activate", "started"), 0, "a refused activation was started");
  const char *rows = audit_rows(t, NULL);
  cr_assert_str_eq(rows, "create:started create:succeeded activate:refused");
  const char *ev = keep(tn_test_output("kubectl get events.events.k8s.io -n default --field-selector "
                                       "regarding.name=%s,reason=Activated -o name | wc -l",
                                       t));
  cr_assert_str_eq(ev, "0", "an Activated event for a tenant that is not active");

  /* The Plan appears: Active, with the started and succeeded rows, and its namespace. */
  apply_plan(plan, "1");
  wait_jsonpath(what, "{.status.state}", "Active", 60);
  wait_jsonpath(what, "{.status.conditions[?(@.type==\"Ready\")].status}", "True", 30);
  wait_rows(t, "activate", "succeeded", 1, 20);
  rows = audit_rows(t, NULL);
  cr_assert_str_eq(rows,
                   "create:started create:succeeded activate:refused activate:started activate:succeeded");
  cr_assert(namespace_exists(ns));
  wait_event(t, "Activated", 30);

  sh_ok("cleanup",
        "kubectl delete tenant %s --wait=false >/dev/null; kubectl delete plan/%s region/%s --wait=false", t,
        plan, region);
}

/* ---- 2. Region capacity ------------------------------------------------------------------------- */

Test(lifecycle_truth, region_capacity_refuses_an_activation_that_does_not_fit) {
  char a[64], b[64], plan[64], region[64], wa[128], wb[128], nsb[128];
  tn_test_unique_name(a, sizeof a, "tn-lt-cap");
  tn_test_unique_name(b, sizeof b, "tn-lt-cap");
  tn_test_unique_name(plan, sizeof plan, "lt-two-cpu");
  tn_test_unique_name(region, sizeof region, "lt-cap");
  snprintf(wa, sizeof wa, "tenant %s", a);
  snprintf(wb, sizeof wb, "tenant %s", b);
  snprintf(nsb, sizeof nsb, "%s-prod", b);
  apply_plan(plan, "2");
  apply_region(region, "\"capacity\":{\"cpu\":\"3\",\"pods\":100}", "");

  /* The first tenant fits (2 of 3 cpu). */
  apply_tenant(a, "Active", plan, region);
  wait_jsonpath(wa, "{.status.state}", "Active", 60);
  wait_jsonpath(wa, "{.status.conditions[?(@.type==\"Ready\")].status}", "True", 30);

  /* The second does not (2 more, 1 free): Draft, Placed says so, refused once, nothing made. */
  apply_tenant(b, "Active", plan, region);
  wait_jsonpath(wb, "{.status.conditions[?(@.type==\"Placed\")].reason}", "CapacityExceeded", 60);
  wait_jsonpath(wb, "{.status.state}", "Draft", 5);
  wait_jsonpath(wb, "{.status.conditions[?(@.type==\"Ready\")].reason}", "ActivationRefused", 5);
  const char *msg = jsonpath(wb, "{.status.conditions[?(@.type==\"Placed\")].message}");
  cr_assert(strstr(msg, region) && strstr(msg, "cpu needs 2 but 1 of 3 are free") &&
                strstr(msg, "raise the Region's spec.capacity"),
            "Placed message: %s", msg);
  wait_event(b, "ActivationRefused", 30);
  wait_rows(b, "activate", "refused", 1, 20);
  nudge(b, 3);
  cr_assert_eq(count_rows(b, "activate", "refused"), 1, "refused more than once");
  cr_assert_eq(count_rows(b, "activate", "succeeded"), 0);
  cr_assert_not(namespace_exists(nsb), "a tenant over capacity was provisioned");
  const char *placement = jsonpath(wb, "{.status.placement}");
  cr_assert_str_eq(placement, "", "a refused tenant is not placed");

  /* The region grows: the tenant is activated without any edit of its own. */
  apply_region(region, "\"capacity\":{\"cpu\":\"4\",\"pods\":100}", "");
  wait_jsonpath(wb, "{.status.state}", "Active", 60);
  wait_rows(b, "activate", "succeeded", 1, 20);
  cr_assert(namespace_exists(nsb));

  sh_ok("cleanup", "kubectl delete tenant %s %s --wait=false >/dev/null", a, b);
  sh_ok("cleanup", "kubectl delete plan %s; kubectl delete region %s --wait=false", plan, region);
}

/* ---- 3. the tenant's database server down during a transition ---------------------------------- */

static const char proxy_py[] =
    "import asyncio, sys\n"
    "lp, tp = int(sys.argv[1]), int(sys.argv[2])\n"
    "async def pipe(r, w):\n"
    "    try:\n"
    "        while True:\n"
    "            d = await r.read(65536)\n"
    "            if not d:\n"
    "                break\n"
    "            w.write(d)\n"
    "            await w.drain()\n"
    "    except Exception:\n"
    "        pass\n"
    "    finally:\n"
    "        w.close()\n"
    "async def handle(r, w):\n"
    "    try:\n"
    "        ur, uw = await asyncio.open_connection('127.0.0.1', tp)\n"
    "    except Exception:\n"
    "        w.close()\n"
    "        return\n"
    "    await asyncio.gather(pipe(r, uw), pipe(ur, w))\n"
    "async def main():\n"
    "    s = await asyncio.start_server(handle, '127.0.0.1', lp, reuse_address=True)\n"
    "    async with s:\n"
    "        await s.serve_forever()\n"
    "asyncio.run(main())\n";

static int proxy_port;
static int proxy_pid;

static void proxy_up(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/lt-proxy.py", tn_test_env("TENANCY_TEST_LOG_DIR"));
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot write %s", path);
  fputs(proxy_py, f);
  fclose(f);
  char *pid = tn_test_output("python3 '%s' %d %s >/dev/null 2>&1 & echo $!", path, proxy_port,
                             tn_test_env("TENANCY_PG_PORT"));
  proxy_pid = atoi(pid);
  free(pid);
  cr_assert_gt(proxy_pid, 0);
  char *out = NULL;
  int rc = tn_test_sh_until(
      20, &out, "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", %d), 1).close()'",
      proxy_port);
  free(out);
  cr_assert_eq(rc, 0, "the forwarder on port %d never listened", proxy_port);
}

static void proxy_down(void) {
  if (proxy_pid <= 0)
    return;
  kill(proxy_pid, SIGKILL);
  char *out = NULL;
  tn_test_sh_until(10, &out, "! kill -0 %d 2>/dev/null", proxy_pid);
  free(out);
  proxy_pid = 0;
}

Test(lifecycle_truth, database_server_down_during_activation_and_suspend, .fini = proxy_down) {
  char t[64], plan[64], region[64], what[128], server[1024];
  tn_test_unique_name(t, sizeof t, "tn-lt-db");
  tn_test_unique_name(plan, sizeof plan, "lt-db");
  tn_test_unique_name(region, sizeof region, "lt-db");
  snprintf(what, sizeof what, "tenant %s", t);
  proxy_port = tn_test_free_port();
  /* The admin Secret's URI names the forwarder's port: every connection of the database step
   * goes through it (the audit trail uses the stack's PostgreSQL directly). */
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "kubectl create namespace tenancy-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "uri=$(printf '%%s' \"$TENANCY_PG_DSN\" | sed -E 's/:'\"$TENANCY_PG_PORT\"'([/?])/:%d\\1/; "
      "s/port='\"$TENANCY_PG_PORT\"'/port=%d/') && "
      "case \"$uri\" in *%d*) ;; *) echo \"cannot point $uri at the forwarder\"; exit 1;; esac && "
      "kubectl -n tenancy-system create secret generic pg-admin-%s --from-literal=uri=\"$uri\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
      "kubectl -n tenancy-system create secret generic pg-ca-%s --from-file=ca.crt=\"$TENANCY_CA_FILE\" "
      "--dry-run=client -o yaml | kubectl apply -f - >/dev/null",
      proxy_port, proxy_port, proxy_port, region, region);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  snprintf(server, sizeof server,
           "\"databaseServers\":[{\"name\":\"pg-fwd\",\"host\":\"127.0.0.1\",\"port\":%d,\"sslMode\":"
           "\"verify-full\","
           "\"caSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-ca-%s\"},"
           "\"serves\":[\"shared\",\"dedicated\",\"hybrid\"],"
           "\"adminSecretRef\":{\"namespace\":\"tenancy-system\",\"name\":\"pg-admin-%s\"}}]",
           proxy_port, region, region);
  apply_plan(plan, "1");
  apply_region(region, "", server);

  /* Activation with the server down: Draft, Progressing says the database failed, one failed
   * row, no succeeded activation. */
  apply_tenant(t, "Active", plan, region);
  wait_jsonpath(what, "{.status.conditions[?(@.type==\"Progressing\")].reason}", "TransitionFailed", 90);
  wait_jsonpath(what, "{.status.state}", "Draft", 5);
  const char *msg = jsonpath(what, "{.status.conditions[?(@.type==\"Progressing\")].message}");
  cr_assert(strstr(msg, "activate") && strstr(msg, "DatabaseReady") && strstr(msg, "correlationId="),
            "Progressing message: %s", msg);
  wait_rows(t, "activate", "failed", 1, 20);
  nudge(t, 3);
  cr_assert_eq(count_rows(t, "activate", "failed"), 1, "the failure was audited on every retry");
  cr_assert_eq(count_rows(t, "activate", "started"), 1, "the attempt series was started more than once");
  cr_assert_eq(count_rows(t, "activate", "succeeded"), 0, "an activation without its database succeeded");
  wait_jsonpath(what, "{.status.state}", "Draft", 1);

  /* The server is back: Active, DatabaseReady, the succeeded row after the failed one. */
  proxy_up();
  wait_jsonpath(what, "{.status.state}", "Active", 90);
  wait_jsonpath(what, "{.status.conditions[?(@.type==\"DatabaseReady\")].status}", "True", 10);
  wait_rows(t, "activate", "succeeded", 1, 20);
  const char *rows = audit_rows(t, "activate");
  cr_assert_str_eq(rows, "activate:started activate:failed activate:succeeded");
  const char *progressing = jsonpath(what, "{.status.conditions[?(@.type==\"Progressing\")].reason}");
  cr_assert_str_eq(progressing, "", "Progressing stays after the transition completed");

  /* A credential rotation on demand is audited (actor tenancy-operator) and evented. */
  sh_ok("rotate", "kubectl annotate tenant %s tenancy.dev/rotate-credentials=lt-1 --overwrite", t);
  wait_rows(t, "rotate-credentials", "succeeded", 1, 60);
  wait_event(t, "CredentialsRotated", 30);
  nudge(t, 2);
  cr_assert_eq(count_rows(t, "rotate-credentials", "succeeded"), 1, "one rotation audited more than once");

  /* Suspend with the server down: still Active, one failed row, no succeeded suspend. */
  proxy_down();
  sh_ok("suspend", "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Suspended\"}}'", t);
  wait_jsonpath(what, "{.status.conditions[?(@.type==\"Progressing\")].reason}", "TransitionFailed", 90);
  wait_rows(t, "suspend", "failed", 1, 20);
  nudge(t, 3);
  wait_jsonpath(what, "{.status.state}", "Active", 1);
  cr_assert_eq(count_rows(t, "suspend", "succeeded"), 0, "a suspend without its database succeeded");
  cr_assert_eq(count_rows(t, "suspend", "failed"), 1);

  /* Back: Suspended, with the succeeded row. */
  proxy_up();
  wait_jsonpath(what, "{.status.state}", "Suspended", 90);
  wait_rows(t, "suspend", "succeeded", 1, 20);
  rows = audit_rows(t, "suspend");
  cr_assert_str_eq(rows, "suspend:started suspend:failed suspend:succeeded");

  /* The tenant goes first, while its database server is reachable (the finalizer drops its
   * database through the Region's server), then the Region. */
  sh_ok("cleanup", "kubectl delete tenant %s --wait --timeout=90s >/dev/null", t);
  sh_ok("cleanup", "kubectl delete plan %s; kubectl delete region %s --wait=false", plan, region);
}

/* ---- 4. drift against plan propagation ---------------------------------------------------------- */

Test(lifecycle_truth, drift_repaired_only_for_edits_by_someone_else) {
  char t[64], plan[64], region[64], what[128], rq[192];
  tn_test_unique_name(t, sizeof t, "tn-lt-drift");
  tn_test_unique_name(plan, sizeof plan, "lt-drift");
  tn_test_unique_name(region, sizeof region, "lt-drift");
  snprintf(what, sizeof what, "tenant %s", t);
  snprintf(rq, sizeof rq, "-n %s-prod resourcequota tenant-quota", t);
  apply_plan(plan, "1");
  apply_region(region, "", "");
  apply_tenant(t, "Active", plan, region);
  wait_jsonpath(what, "{.status.conditions[?(@.type==\"Ready\")].status}", "True", 60);
  wait_jsonpath(rq, "{.spec.hard.limits\\.cpu}", "1", 10);

  /* A Plan change propagates: the quota follows, and that is no drift. */
  apply_plan(plan, "3");
  wait_jsonpath(rq, "{.spec.hard.limits\\.cpu}", "3", 30);
  nudge(t, 2);
  const char *notes = event_notes(t, "DriftRepaired");
  cr_assert_str_eq(notes, "", "a Plan change was reported as drift: %s", notes);
  cr_assert_eq(count_rows(t, "repair-drift", "succeeded"), 0, "a Plan change was audited as drift");

  /* Someone edits the quota by hand: restored, and reported as drift with a correlation id. */
  sh_ok("edit quota",
        "kubectl -n %s-prod patch resourcequota tenant-quota --type=merge -p "
        "'{\"spec\":{\"hard\":{\"limits.cpu\":\"99\"}}}'",
        t);
  wait_jsonpath(rq, "{.spec.hard.limits\\.cpu}", "3", 30);
  wait_event(t, "DriftRepaired", 30);
  notes = event_notes(t, "DriftRepaired");
  cr_assert(strstr(notes, "ResourceQuota") && strstr(notes, "correlationId="), "note: %s", notes);
  /* ... and audited, with the Event's correlation id. */
  wait_rows(t, "repair-drift", "succeeded", 1, 20);
  const char *cid =
      keep(tn_test_output("PGCONNECT_TIMEOUT=5 psql \"$TENANCY_PG_DSN\" -qtAc \"SELECT correlation_id "
                          "FROM tenancy.audit_events WHERE target = 'tenant/%s' AND action = "
                          "'repair-drift'\"",
                          t));
  cr_assert(cid[0] && strstr(notes, cid), "the drift row's correlation id %s is not in the note: %s", cid,
            notes);

  /* Every Event of the tenant carries a correlation id, whatever its reason. */
  const char *all = keep(tn_test_output(
      "kubectl get events.events.k8s.io -n default --field-selector regarding.name=%s "
      "-o jsonpath='{range .items[*]}{.reason}: {.note}{\"\\n\"}{end}' | grep -v correlationId=",
      t));
  cr_assert_str_eq(all, "", "Events without a correlation id:\n%s", all);

  sh_ok("cleanup",
        "kubectl delete tenant %s --wait=false >/dev/null; kubectl delete plan/%s region/%s --wait=false", t,
        plan, region);
}
