/* test_audit_operator.c - the operator writes the audit trail: a row before and after every
 * lifecycle transition with its actor and correlation id, a chain that verifies, and no
 * transition at all while the audit database is down (it happens after recovery). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

static struct tn_test_operator op;

static void start(void) {
  tn_test_install_api();
  tn_test_env("TENANCY_PG_DSN");                         /* the operator takes it from the environment */
  setenv("TENANCY_AUDIT_HEAD_INTERVAL_SECONDS", "1", 1); /* export the head every second */
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  if (!tn_test_operator_wait_ready(&op, 60)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator never became ready");
  }
}

static void stop(void) { tn_test_operator_stop(&op, SIGTERM, 40); }

TestSuite(audit_operator, .init = start, .fini = stop, .timeout = 240);

static const char *tenantctl(void) { return tn_test_env("TENANCY_TENANTCTL_BIN"); }

static void apply_tenant(const char *t, const char *state) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "printf '%%s' "
      "'{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{\"name\":\"%s\"},"
      "\"spec\":{\"state\":\"%s\",\"plan\":\"standard\",\"environments\":[\"prod\"]}}' | kubectl apply -f -",
      t, state);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

static void wait_state(const char *t, const char *state, double timeout) {
  char *out = NULL;
  int rc = tn_test_sh_until(timeout, &out,
                            "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = %s", t, state);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "tenant %s did not reach %s", t, state);
  free(out);
}

Test(audit_operator, every_transition_is_audited_and_the_chain_verifies) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-audit");
  apply_tenant(t, "Active");
  wait_state(t, "Active", 60);
  char *cid = NULL;
  tn_test_sh(&cid, "kubectl get tenant %s -o jsonpath='{.status.lastCorrelationId}'", t);
  cr_assert_eq(strlen(cid), 36, "%s", cid);

  /* A tenant applied as Active walks create and activate in one reconcile: both are recorded as
   * started before anything is written, then both as succeeded; newest last. Their actor is the
   * kubectl user who applied it, as the API server recorded it on the tenant (no webhook runs
   * here: the record does not depend on one). The placement and quota rows that follow (issue 14's
   * events) are checked in test_outbox. */
  char *who = tn_test_output("kubectl auth whoami -o jsonpath='{.status.userInfo.username}'");
  int rc =
      tn_test_sh(&out,
                 "'%s' audit list --tenant %s -o json | python3 -c 'import json,sys; rows=[r for r in "
                 "json.load(sys.stdin) "
                 "if r[\"action\"] not in (\"placement.decide\", \"quota.change\")]; "
                 "print(\" \".join(r[\"action\"]+\":\"+r[\"outcome\"]+\":\"+r[\"actor\"] for r in rows)); "
                 "print(rows[-1][\"correlation_id\"]); print(rows[-1][\"target\"])'",
                 tenantctl(), t);
  cr_assert_eq(rc, 0, "%s", out);
  char want[1024];
  snprintf(want, sizeof want,
           "create:started:%s activate:started:%s create:succeeded:%s activate:succeeded:%s\n%s\ntenant/%s\n",
           who, who, who, who, cid, t);
  cr_assert_str_eq(out, want);
  free(out);
  free(who);
  free(cid);
  rc = tn_test_sh(&out, "'%s' audit verify", tenantctl());
  cr_assert_eq(rc, 0, "the chain does not verify: %s", out);
  free(out);
}

Test(audit_operator, no_transition_while_the_audit_database_is_down) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-auditdown");
  apply_tenant(t, "Active");
  wait_state(t, "Active", 60);

  cr_assert_eq(tn_test_pg_ctl("stop"), 0);
  apply_tenant(t, "Suspended");
  sleep(6);
  char *state = NULL, *pods = NULL;
  tn_test_sh(&state, "kubectl get tenant %s -o jsonpath='{.status.state}'", t);
  tn_test_sh(&pods, "kubectl -n %s-prod get resourcequota tenant-quota -o jsonpath='{.spec.hard.pods}'", t);
  int restarted = tn_test_pg_ctl("start");
  cr_assert_str_eq(state, "Active", "the transition happened without an audit record");
  cr_assert_str_eq(pods, "50", "workloads were suspended without an audit record");
  free(state);
  free(pods);
  cr_assert_eq(restarted, 0, "PostgreSQL did not restart");

  /* After recovery the transition happens (retried with backoff), and is audited. */
  wait_state(t, "Suspended", 120);
  int rc = tn_test_sh(&out,
                      "'%s' audit list --tenant %s -o json | python3 -c 'import json,sys; "
                      "print(sum(1 for r in json.load(sys.stdin) if r[\"action\"]==\"suspend\" and "
                      "r[\"outcome\"]==\"succeeded\"))'",
                      tenantctl(), t);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, "1\n");
  free(out);
  rc = tn_test_sh(&out, "'%s' audit verify", tenantctl());
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
}

Test(audit_operator, the_head_is_exported_as_a_log_line_an_event_and_a_metric) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-audithead");
  apply_tenant(t, "Active");
  wait_state(t, "Active", 60);
  /* The newest exported head (log line), once it covers this tenant's rows. */
  char *last = NULL;
  int rc = tn_test_sh_until(
      20, &out,
      "'%s' audit list --tenant %s --limit 1 -o json | python3 -c 'import json,sys; "
      "print(json.load(sys.stdin)[0][\"id\"])' > /tmp/tn-audithead-%d.id && "
      "grep -o 'audit trail head: row [0-9]* hash [0-9a-f]*' '%s' | tail -n 1 | "
      "awk -v min=$(cat /tmp/tn-audithead-%d.id) '$5 >= min {print $5\":\"$7; ok=1} END {exit !ok}'",
      tenantctl(), t, (int)getpid(), op.log_path, (int)getpid());
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "no head export covering the tenant's rows: %s", out);
  last = out;
  last[strcspn(last, "\n")] = '\0';
  long long id = strtoll(last, NULL, 10);
  cr_assert_gt(id, 0, "%s", last);
  /* It is an anchor tenantctl checks the trail against. */
  rc = tn_test_sh(&out, "'%s' audit verify --expect %s", tenantctl(), last);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* The gauge follows the head. */
  cr_assert_geq(tn_test_metric_sum(op.metrics_port, "tenancy_audit_chain_head_id"), (double)id);
  /* And an Event about the leader Lease records it too. */
  rc = tn_test_sh_until(
      20, &out,
      "kubectl get events -n default --field-selector reason=AuditChainHead "
      "-o jsonpath='{range .items[*]}{.involvedObject.kind}/{.involvedObject.name} "
      "{.message}{\"\\n\"}{end}' | grep 'Lease/tenancy-operator-leader audit trail head: row '");
  cr_assert_eq(rc, 0, "no AuditChainHead Event: %s", out);
  free(out);
  /* The local stack connects as the superuser: the operator says it could cut the trail. */
  rc = tn_test_sh(&out, "grep -c 'could remove audit rows' '%s'", op.log_path);
  cr_assert_eq(rc, 0, "no warning about the superuser role: %s", out);
  free(out);
  free(last);
}

/* A restart with the trail unchanged exports the head to the log and the metric, but does not
 * write a second Event with the same note (issue 18: a restart writes nothing). */
Test(audit_operator, a_restart_does_not_write_the_same_head_event_again) {
  char t[64], *out = NULL;
  tn_test_unique_name(t, sizeof t, "tn-auditrestart");
  apply_tenant(t, "Active");
  wait_state(t, "Active", 60);
  /* The head this operator exported last, once it is stable (the last three exports, one a
   * second, name the same row) and an Event holds it. */
  int rc = tn_test_sh_until(
      30, &out,
      "last=$(grep -o 'audit trail head: row [0-9]* hash [0-9a-f]*' '%s' | tail -n 3) && "
      "[ $(printf '%%s\\n' \"$last\" | sort -u | wc -l) = 1 ] && [ $(printf '%%s\\n' \"$last\" | wc -l) = 3 "
      "] && "
      "note=$(printf '%%s\\n' \"$last\" | tail -n 1) && "
      "kubectl get events -n default --field-selector reason=AuditChainHead "
      "-o jsonpath='{range .items[*]}{.message}{\"\\n\"}{end}' | grep -qxF \"$note\" && echo \"$note\"",
      op.log_path);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "no AuditChainHead Event for the last exported head: %s", out);
  char note[200];
  snprintf(note, sizeof note, "%s", out);
  note[strcspn(note, "\n")] = '\0';
  free(out);

  stop();
  start();
  /* The new process exports at its start: to the log always; as an Event only when the head moved. */
  rc = tn_test_sh_until(30, &out,
                        "grep -o 'audit trail head: row [0-9]* hash [0-9a-f]*' '%s' | tail -n 1 | grep .",
                        op.log_path);
  cr_assert_eq(rc, 0, "the restarted operator exported no head: %s", out);
  char now_note[200];
  snprintf(now_note, sizeof now_note, "%s", out);
  now_note[strcspn(now_note, "\n")] = '\0';
  free(out);
  sleep(3); /* the recorder writes within a second */
  rc = tn_test_sh(&out,
                  "kubectl get events -n default --field-selector reason=AuditChainHead "
                  "-o jsonpath='{range .items[*]}{.message}{\"\\n\"}{end}' | grep -cxF '%s'",
                  now_note);
  cr_assert_eq(atoi(out ? out : "0"), 1, "Events carrying \"%s\": %s (exactly one expected)", now_note, out);
  cr_log_info("head before the restart: %s; after: %s", note, now_note);
  free(out);
  if (strcmp(note, now_note) == 0) {
    rc = tn_test_sh(&out, "grep -c 'already exported as an Event' '%s'", op.log_path);
    cr_assert_eq(rc, 0, "the unchanged head was not recognised as exported: %s", out);
    free(out);
  }
}

/* The head a process leaves is exported when it stops (it appended rows since its last export),
 * so the next start, which exports at once, finds that Event and writes nothing (issue 18: a
 * restart with 10,100 tenants wrote one Event, the head having moved since the last periodic
 * export). Exports here are only at start and at stop (an hour apart otherwise). */
Test(audit_operator, the_head_left_at_shutdown_is_exported_and_not_again_at_the_next_start) {
  char t[64], *out = NULL;
  stop();
  setenv("TENANCY_AUDIT_HEAD_INTERVAL_SECONDS", "3600", 1);
  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  cr_assert(tn_test_operator_wait_ready(&op, 60), "the operator never became ready");
  tn_test_unique_name(t, sizeof t, "tn-auditstop");
  apply_tenant(t, "Active");
  wait_state(t, "Active", 60);
  char *last_id =
      tn_test_output("'%s' audit list --tenant %s --limit 1 -o json | python3 -c 'import json,sys; "
                     "print(json.load(sys.stdin)[0][\"id\"])'",
                     tenantctl(), t);
  long long tenant_row = strtoll(last_id, NULL, 10);
  free(last_id);
  cr_assert_gt(tenant_row, 0);
  sleep(2); /* the tenant's last rows (placement, quota) follow its status */
  stop();
  /* The last line the stopped process logged names the head after the tenant's rows. */
  int rc = tn_test_sh(&out, "grep -o 'audit trail head: row [0-9]* hash [0-9a-f]*' '%s' | tail -n 1 | grep .",
                      op.log_path);
  cr_assert_eq(rc, 0, "no head exported: %s", out);
  char note[200];
  snprintf(note, sizeof note, "%s", out);
  note[strcspn(note, "\n")] = '\0';
  free(out);
  long long row = strtoll(note + strlen("audit trail head: row "), NULL, 10);
  cr_assert_geq(row, tenant_row, "the head exported at shutdown (%s) is older than the tenant's row %lld",
                note, tenant_row);
  rc = tn_test_sh(&out,
                  "kubectl get events -n default --field-selector reason=AuditChainHead "
                  "-o jsonpath='{range .items[*]}{.message}{\"\\n\"}{end}' | grep -cxF '%s'",
                  note);
  cr_assert_eq(atoi(out ? out : "0"), 1, "Events carrying \"%s\" after the stop: %s (one expected)", note,
               out);
  free(out);

  tn_test_operator_start(&op, (const char *const[]){"--leader-elect=false", NULL});
  cr_assert(tn_test_operator_wait_ready(&op, 60), "the operator never became ready");
  rc = tn_test_sh_until(20, &out, "grep -c 'already exported as an Event' '%s'", op.log_path);
  if (rc)
    tn_test_operator_dump_log(&op);
  cr_assert_eq(rc, 0, "the head exported at shutdown was not recognised at the start: %s", out);
  free(out);
  sleep(2);
  rc = tn_test_sh(&out,
                  "kubectl get events -n default --field-selector reason=AuditChainHead "
                  "-o jsonpath='{range .items[*]}{.message}{\"\\n\"}{end}' | grep -cxF '%s'",
                  note);
  cr_assert_eq(atoi(out ? out : "0"), 1, "Events carrying \"%s\" after the restart: %s (still one)", note,
               out);
  free(out);
  setenv("TENANCY_AUDIT_HEAD_INTERVAL_SECONDS", "1", 1);
}
