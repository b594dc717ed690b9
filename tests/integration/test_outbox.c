/* test_outbox.c - the transactional outbox of lifecycle events (issue 14) against the real API
 * server and PostgreSQL:
 * - a tenant's life Draft -> Active -> (updated) -> Suspended -> Active -> Archived -> Active
 *   (restored) -> Archived -> Deleted gives exactly the expected CloudEvent types in order, with
 *   tenant_seq 1..n and no gap, each row's audit_id the succeeded audit row of the same transaction;
 * - two tenants changed in turn keep their own sequences while the global seq interleaves;
 * - every stored event validates against its JSON Schema in docs/events/ (checked by python3's
 *   jsonschema, not by our code) and holds no secret;
 * - with PostgreSQL stopped a transition is postponed and leaves no event; once it is back the
 *   event is written once, in sequence;
 * - (library level, a private schema) an append whose event is refused leaves neither the audit
 *   row nor the event; an append while PostgreSQL is down leaves neither; hostile names, labels
 *   and data are stored verbatim through bound parameters; the same event appended twice is
 *   stored once;
 * - placement and quota events once per change, none after an annotation or a restart; and an
 *   idle resync of every tenant reads nothing from the outbox (the last recorded values are
 *   cached: tenancy_outbox_change_reads_total, checked against the tenant reconciles). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/outbox.h"
#include "tenancy/cloudevents.h"
#include "tn_operator.h"
#include "tn_pg_test.h"
#include "tn_test.h"

#define CLUSTER "itest-east"

static struct tn_test_operator op;

/* The suite's operator, with one extra flag (NULL: none). */
static void start_with(const char *extra) {
  tn_test_install_api();
  tn_test_operator_start_ready(
      &op, (const char *const[]){"--leader-elect=false", "--cluster-name=" CLUSTER, extra, NULL});
}

static void start(void) { start_with(NULL); }

static void stop(void) { tn_test_operator_stop(&op, SIGTERM, 40); }

TestSuite(outbox, .init = start, .fini = stop, .timeout = 420);
TestSuite(outbox_db, .timeout = 180);

/* ---- helpers --------------------------------------------------------------------------------- */

/* Copies S (malloc'd) into one of a few static buffers and frees it, so an assertion that fails
 * (Criterion leaves by longjmp) leaks nothing. */
static const char *keep(char *s) {
  static char ring[8][16384];
  static int next;
  char *b = ring[next++ % 8];
  snprintf(b, sizeof ring[0], "%s", s ? s : "");
  free(s);
  return b;
}

static void sh_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh_ok(const char *fmt, ...) {
  char *cmd = NULL, *out = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&cmd, fmt, ap);
  va_end(ap);
  cr_assert_geq(n, 0);
  int rc = tn_test_sh(&out, "%s", cmd);
  const char *o = keep(out);
  if (rc) {
    tn_test_operator_dump_log(&op);
    const char *c = keep(cmd);
    cr_assert_fail("failed (exit %d): %s: %s", rc, c, o);
  }
  free(cmd);
}

/* One value from the stack's PostgreSQL (sql must not contain a double quote). */
static const char *psql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *psql(const char *fmt, ...) {
  char *q = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&q, fmt, ap);
  va_end(ap);
  cr_assert_geq(n, 0);
  const char *out = keep(tn_test_output("PGCONNECT_TIMEOUT=5 psql \"$TENANCY_PG_DSN\" -qtAc \"%s\" 2>&1", q));
  free(q);
  return out;
}

static void apply_tenant(const char *t, const char *state, const char *extra) {
  char *out = NULL;
  int rc =
      tn_test_sh(&out,
                 "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":"
                 "{\"name\":\"%s\",\"labels\":{\"tier\":\"gold\",\"example.com/team\":\"a.b-c_d\"}},"
                 "\"spec\":{\"state\":\"%s\",\"plan\":\"starter\",\"isolation\":\"shared\","
                 "\"environments\":[\"prod\"],\"residency\":{\"allowedRegions\":[\"eu-west-1\"]}%s}}' "
                 "| kubectl apply -f -",
                 t, state, extra);
  const char *o = keep(out);
  cr_assert_eq(rc, 0, "kubectl apply %s: %s", t, o);
}

static void patch_spec(const char *t, const char *json) {
  sh_ok("kubectl patch tenant %s --type=merge -p '{\"spec\":%s}' >/dev/null", t, json);
}

static void wait_state(const char *t, const char *want, double timeout) {
  char *out = NULL;
  int rc = tn_test_sh_until(timeout, &out,
                            "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = %s", t, want);
  free(out);
  if (rc) {
    const char *st = keep(tn_test_output("kubectl get tenant %s -o jsonpath='{.status}' 2>&1", t));
    tn_test_operator_dump_log(&op);
    cr_assert_fail("tenant %s never reached %s: %s", t, want, st);
  }
}

/* The placement and quota events, checked by their own test (6), are left out of event_names. */
#define NOT_PLACEMENT_OR_QUOTA                                                                               \
  " AND type NOT IN ('dev.tenancy.tenant.placement.decided.v1', 'dev.tenancy.tenant.quota.changed.v1')"

/* The tenant's lifecycle, metadata and key event names in tenant_seq order, space-separated
 * ("created activated ..."). */
static const char *event_names(const char *t) {
  return psql("SELECT coalesce(string_agg(substring(type from 'dev[.]tenancy[.]tenant[.](.*)[.]v1'), ' ' "
              "ORDER BY tenant_seq), '') FROM tenancy.outbox WHERE tenant = '%s'" NOT_PLACEMENT_OR_QUOTA,
              t);
}

/* All of the tenant's event names, placement and quota events included. */
static const char *all_event_names(const char *t) {
  return psql("SELECT coalesce(string_agg(substring(type from 'dev[.]tenancy[.]tenant[.](.*)[.]v1'), ' ' "
              "ORDER BY tenant_seq), '') FROM tenancy.outbox WHERE tenant = '%s'",
              t);
}

/* Waits until the tenant has `want` events (as event_names counts them), then returns their names. */
static const char *wait_events(const char *t, int want, double timeout) {
  double end = tn_test_now() + timeout;
  int n = -1;
  while (tn_test_now() < end) {
    n = atoi(psql("SELECT count(*) FROM tenancy.outbox WHERE tenant = '%s'" NOT_PLACEMENT_OR_QUOTA, t));
    if (n >= want)
      break;
    usleep(300 * 1000);
  }
  const char *names = event_names(t);
  if (n != want)
    cr_assert_fail("tenant %s: %d event(s), want %d: %s", t, n, want, names);
  return names;
}

/* The checks every tenant's events pass: tenant_seq 1..n without gaps and in seq order; the
 * envelope's tenancysequence, subject and source; each audit_id the audit row of the event
 * (target, outcome succeeded, correlation id, time). */
static void check_sequence_and_audit(const char *t) {
  const char *gaps = psql("SELECT count(*) FROM (SELECT tenant_seq, row_number() OVER (ORDER BY seq) AS n "
                          "FROM tenancy.outbox WHERE tenant = '%s') s WHERE tenant_seq <> n",
                          t);
  cr_assert_str_eq(gaps, "0", "tenant %s: tenant_seq is not 1..n in seq order", t);
  const char *bad_env = psql(
      "SELECT count(*) FROM tenancy.outbox WHERE tenant = '%s' AND ((event->>'tenancysequence')::bigint "
      "<> tenant_seq OR event->>'subject' <> 'tenant/' || tenant OR event->>'source' <> 'tenancy.dev/" CLUSTER
      "' OR event->>'id' <> id OR event->>'type' <> type OR labels <> '{\\\"tier\\\":\\\"gold\\\","
      "\\\"example.com/team\\\":\\\"a.b-c_d\\\"}'::jsonb)",
      t);
  cr_assert_str_eq(bad_env, "0", "tenant %s: envelopes that disagree with their row", t);
  const char *bad_audit = psql(
      "SELECT count(*) FROM tenancy.outbox o LEFT JOIN tenancy.audit_events a ON a.id = o.audit_id "
      "WHERE o.tenant = '%s' AND (a.id IS NULL OR a.target <> 'tenant/' || o.tenant OR a.outcome <> "
      "'succeeded' OR a.correlation_id IS DISTINCT FROM o.event->>'correlationid' OR "
      "to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\\\"T\\\"HH24:MI:SS.US\\\"Z\\\"') <> o.event->>'time' "
      "OR a.actor <> o.event->>'actor' OR NOT (a.action = CASE substring(o.type from "
      "'dev[.]tenancy[.]tenant[.](.*)[.]v1') WHEN 'created' THEN 'create' WHEN 'activated' THEN "
      "'activate' WHEN 'suspended' THEN 'suspend' WHEN 'resumed' THEN 'resume' WHEN 'archived' THEN "
      "'archive' WHEN 'restored' THEN 'restore' WHEN 'deleted' THEN 'delete' ELSE a.action END) "
      "OR (o.type LIKE '%%.updated.v1' AND a.action NOT LIKE 'spec.%%'))",
      t);
  cr_assert_str_eq(
      bad_audit, "0", "tenant %s: outbox rows whose audit_id is not their audit row: %s", t,
      psql("SELECT string_agg(o.tenant_seq || ':' || o.type || '->' || coalesce(a.action || '/' || "
           "a.outcome, 'none'), ' ') FROM tenancy.outbox o LEFT JOIN tenancy.audit_events a ON "
           "a.id = o.audit_id WHERE o.tenant = '%s'",
           t));
}

/* Validates every event this suite's operator stored (source tenancy.dev/CLUSTER: other suites on
 * a reused stack write test rows of their own) against docs/events/<type>.json with python3's
 * jsonschema (the Debian package python3-jsonschema), and checks no event holds a secret. Returns
 * how many. */
static int validate_all_events(void) {
  const char *root = tn_test_env("TENANCY_ROOT");
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "PY=python3; [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import jsonschema' 2>/dev/null && "
      "PY=/usr/bin/python3; PGCONNECT_TIMEOUT=5 psql \"$TENANCY_PG_DSN\" -qtAc \"SELECT event::text FROM "
      "tenancy.outbox WHERE event->>'source' = 'tenancy.dev/" CLUSTER "' ORDER BY seq\" | $PY -c '\n"
      "import json, sys, re, os, urllib.parse\n"
      "from jsonschema import Draft202012Validator, FormatChecker\n"
      "root = sys.argv[1]\n"
      "dsn = os.environ.get(\"TENANCY_PG_DSN\", \"\")\n"
      "pw = urllib.parse.urlsplit(dsn).password or \"no-password\"\n"
      "n = 0\n"
      "for line in sys.stdin:\n"
      "    line = line.strip()\n"
      "    if not line: continue\n"
      "    ev = json.loads(line)\n"
      "    path = os.path.join(root, \"docs\", \"events\", ev[\"type\"] + \".json\")\n"
      "    schema = json.load(open(path))\n"
      "    errs = list(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(ev))\n"
      "    if errs: sys.exit(\"%%s: %%s\" %% (line, errs[0].message))\n"
      "    if pw in line or re.search(r\"password|secret|whsec_|BEGIN \", line, re.I): sys.exit(\"secret in "
      "\" + line)\n"
      "    n += 1\n"
      "print(n)\n"
      "' '%s'",
      root);
  const char *o = keep(out);
  cr_assert_eq(rc, 0, "an event does not validate against its JSON Schema: %s", o);
  return atoi(o);
}

/* ---- 1. a tenant's whole life ------------------------------------------------------------------ */

Test(outbox, a_tenants_life_gives_the_events_in_order_without_gaps) {
  char t[64];
  tn_test_unique_name(t, sizeof t, "ob-life");
  apply_tenant(t, "Draft", "");
  wait_state(t, "Draft", 60);
  cr_assert_str_eq(wait_events(t, 1, 20), "created");

  patch_spec(t, "{\"state\":\"Active\",\"stateReason\":\"contract signed\"}");
  wait_state(t, "Active", 90);
  cr_assert_str_eq(wait_events(t, 2, 20), "created activated");

  /* Metadata: externalIds and the plan in one change -> one updated event with both. */
  patch_spec(t, "{\"externalIds\":{\"crm\":\"0015g\"},\"plan\":\"standard\"}");
  cr_assert_str_eq(wait_events(t, 3, 30), "created activated updated");
  const char *data = psql("SELECT event->'data' FROM tenancy.outbox WHERE tenant = '%s' AND type = "
                          "'dev.tenancy.tenant.updated.v1'",
                          t);
  json_t *d = json_loads(data, 0, NULL);
  cr_assert_not_null(d, "data: %s", data);
  json_t *changed = json_object_get(d, "changed");
  bool ok =
      json_array_size(changed) == 2 && !strcmp(json_string_value(json_array_get(changed, 0)), "plan") &&
      !strcmp(json_string_value(json_array_get(changed, 1)), "externalIds") &&
      !strcmp(json_string_value(json_object_get(d, "plan")) ?: "", "standard") &&
      !strcmp(json_string_value(json_object_get(json_object_get(d, "externalIds"), "crm")) ?: "", "0015g") &&
      !json_object_get(d, "residency");
  json_decref(d);
  cr_assert(ok, "updated data: %s", data);

  patch_spec(t, "{\"state\":\"Suspended\"}");
  wait_state(t, "Suspended", 60);
  patch_spec(t, "{\"state\":\"Active\"}");
  wait_state(t, "Active", 60);
  patch_spec(t, "{\"state\":\"Archived\"}");
  wait_state(t, "Archived", 60);
  patch_spec(t, "{\"state\":\"Active\"}");
  wait_state(t, "Active", 90);
  patch_spec(t, "{\"state\":\"Archived\"}");
  wait_state(t, "Archived", 60);
  char conf[160];
  snprintf(conf, sizeof conf, "{\"state\":\"Deleted\",\"deletionConfirmation\":\"%s\"}", t);
  patch_spec(t, conf);
  wait_state(t, "Deleted", 90);
  const char *names = wait_events(t, 9, 30);
  cr_assert_str_eq(names, "created activated updated suspended resumed archived restored archived deleted",
                   "events: %s", names);
  /* kubectl delete of a Deleted tenant announces nothing more. */
  sh_ok("kubectl delete tenant %s --wait=true --timeout=90s >/dev/null", t);
  sleep(2);
  cr_assert_str_eq(event_names(t), names, "kubectl delete of a Deleted tenant added events");
  check_sequence_and_audit(t);
  /* The transition data. */
  cr_assert_str_eq(psql("SELECT event->'data'->>'from' || '>' || (event->'data'->>'to') || ':' || "
                        "coalesce(event->'data'->>'stateReason', '') FROM tenancy.outbox WHERE tenant = '%s' "
                        "AND type = 'dev.tenancy.tenant.activated.v1'",
                        t),
                   "Draft>Active:contract signed");
  cr_assert_str_eq(psql("SELECT coalesce(event->'data'->>'from', 'null') FROM tenancy.outbox WHERE tenant = "
                        "'%s' AND tenant_seq = 1",
                        t),
                   "null");
  cr_assert_gt(validate_all_events(), 9);

  /* tenantctl events list|show read the same rows. */
  const char *ctl = tn_test_env("TENANCY_TENANTCTL_BIN");
  const char *listed =
      keep(tn_test_output("%s events list --tenant %s --type archived -o json | python3 -c 'import json,sys; "
                          "print(\" \".join(str(r[\"tenantSeq\"]) + r[\"event\"][\"type\"][-12:] for r in "
                          "json.load(sys.stdin)))'",
                          ctl, t));
  const char *want_listed =
      psql("SELECT string_agg(tenant_seq || '.archived.v1', ' ' ORDER BY seq) FROM tenancy.outbox WHERE "
           "tenant = '%s' AND type = 'dev.tenancy.tenant.archived.v1'",
           t);
  cr_assert_str_eq(listed, want_listed, "events list --type archived: %s", listed);
  const char *after = keep(tn_test_output(
      "%s events list --tenant %s --after-sequence %s --limit 2 | awk 'NR>1{print $3}' "
      "| tr '\\n' ' '",
      ctl, t, psql("SELECT seq FROM tenancy.outbox WHERE tenant = '%s' AND tenant_seq = 7", t)));
  cr_assert_str_eq(after, "8 9 ", "events list --after-sequence: %s", after);
  const char *id = psql("SELECT id FROM tenancy.outbox WHERE tenant = '%s' AND tenant_seq = 2", t);
  const char *shown = keep(
      tn_test_output("%s events show %s | python3 -c 'import json,sys; e=json.load(sys.stdin)[\"event\"]; "
                     "print(e[\"id\"], e[\"type\"], e[\"tenancysequence\"], e[\"source\"])'",
                     ctl, id));
  char want[256];
  snprintf(want, sizeof want, "%s dev.tenancy.tenant.activated.v1 2 tenancy.dev/" CLUSTER, id);
  cr_assert_str_eq(shown, want);
  cr_assert_eq(tn_test_sh(NULL, "%s events show 00000000-0000-0000-0000-000000000000 >/dev/null 2>&1", ctl),
               3, "events show of an unknown id exits 3");
  cr_assert_eq(tn_test_sh(NULL, "%s events list --limit x >/dev/null 2>&1", ctl), 2,
               "a bad --limit is a usage error");
}

/* ---- 2. two tenants interleaved -------------------------------------------------------------- */

Test(outbox, interleaved_tenants_keep_their_own_sequences) {
  char a[64], b[64];
  tn_test_unique_name(a, sizeof a, "ob-il-a");
  tn_test_unique_name(b, sizeof b, "ob-il-b");
  apply_tenant(a, "Active", "");
  apply_tenant(b, "Active", "");
  wait_state(a, "Active", 90);
  wait_state(b, "Active", 90);
  patch_spec(a, "{\"state\":\"Suspended\"}");
  wait_state(a, "Suspended", 60);
  patch_spec(b, "{\"state\":\"Suspended\"}");
  wait_state(b, "Suspended", 60);
  patch_spec(b, "{\"state\":\"Active\"}");
  wait_state(b, "Active", 60);
  patch_spec(a, "{\"state\":\"Active\"}");
  wait_state(a, "Active", 60);
  cr_assert_str_eq(wait_events(a, 4, 30), "created activated suspended resumed");
  cr_assert_str_eq(wait_events(b, 4, 30), "created activated suspended resumed");
  check_sequence_and_audit(a);
  check_sequence_and_audit(b);
  /* The global sequence interleaves them: b's suspension is between a's activation and a's
   * resumption. */
  const char *order = psql(
      "SELECT string_agg(CASE tenant WHEN '%s' THEN 'a' ELSE 'b' END || ':' || substring(type from "
      "'dev[.]tenancy[.]tenant[.](.*)[.]v1'), ' ' ORDER BY seq) FROM tenancy.outbox WHERE tenant IN ('%s', "
      "'%s') AND type IN ('dev.tenancy.tenant.suspended.v1', 'dev.tenancy.tenant.resumed.v1')",
      a, a, b);
  cr_assert_str_eq(order, "a:suspended b:suspended b:resumed a:resumed", "global order: %s", order);
  validate_all_events();
  sh_ok("kubectl delete tenant %s %s --wait=true --timeout=90s >/dev/null", a, b);
}

/* ---- 3. PostgreSQL down during a transition ------------------------------------------------- */

Test(outbox, postgres_down_postpones_the_transition_and_its_event) {
  char t[64];
  tn_test_unique_name(t, sizeof t, "ob-pgdown");
  apply_tenant(t, "Active", "");
  wait_state(t, "Active", 90);
  cr_assert_str_eq(wait_events(t, 2, 20), "created activated");
  cr_assert_eq(tn_test_pg_ctl("stop"), 0, "pg_ctl stop");
  patch_spec(t, "{\"state\":\"Suspended\"}");
  sleep(4);
  char *st = tn_test_output("kubectl get tenant %s -o jsonpath='{.status.state}'", t);
  int pg = tn_test_pg_ctl("start");
  const char *state = keep(st);
  cr_assert_eq(pg, 0, "pg_ctl start");
  cr_assert_str_eq(state, "Active", "the suspension happened without its audit rows");
  wait_state(t, "Suspended", 90);
  cr_assert_str_eq(wait_events(t, 3, 30), "created activated suspended");
  check_sequence_and_audit(t);
  sh_ok("kubectl delete tenant %s --wait=true --timeout=90s >/dev/null", t);
  /* kubectl delete from Suspended is a deletion: announced once. */
  cr_assert_str_eq(wait_events(t, 4, 30), "created activated suspended deleted");
  check_sequence_and_audit(t);
  validate_all_events();
}

/* ---- 3b. a data key rotation ------------------------------------------------------------------ */

Test(outbox, a_key_rotation_is_announced_without_key_material) {
  char t[64];
  tn_test_unique_name(t, sizeof t, "ob-keys");
  /* Data keys for every tenant while this test runs. */
  sh_ok(
      "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"TenancyPolicy\",\"metadata\":"
      "{\"name\":\"ob-keys\"},\"spec\":{\"encryption\":{\"requireTenantKeys\":true}}}' | kubectl apply -f - "
      ">/dev/null");
  apply_tenant(t, "Active", "");
  wait_state(t, "Active", 90);
  cr_assert_str_eq(wait_events(t, 2, 20), "created activated");
  sh_ok("%s rotate keys %s >/dev/null", tn_test_env("TENANCY_TENANTCTL_BIN"), t);
  cr_assert_str_eq(wait_events(t, 3, 60), "created activated key.rotated");
  check_sequence_and_audit(t);
  const char *d = psql("SELECT (event->'data')::text FROM tenancy.outbox WHERE tenant = '%s' AND type = "
                       "'dev.tenancy.tenant.key.rotated.v1'",
                       t);
  cr_assert_str_eq(d, "{\"trigger\": \"on-demand\", \"versionAfter\": 2, \"versionBefore\": 1}");
  cr_assert_str_eq(
      psql("SELECT a.action || ':' || a.outcome || ':' || (o.event->>'actor') FROM tenancy.outbox o "
           "JOIN tenancy.audit_events a ON a.id = o.audit_id WHERE o.tenant = '%s' AND o.type = "
           "'dev.tenancy.tenant.key.rotated.v1'",
           t),
      "key.rotate:succeeded:tenancy-operator");
  validate_all_events();
  sh_ok("kubectl delete tenancypolicy ob-keys --ignore-not-found >/dev/null");
  sh_ok("kubectl delete tenant %s --wait=true --timeout=90s >/dev/null", t);
}

/* ---- 3c. placement and quota changes ------------------------------------------------------------ */

/* Waits until the tenant has `want` events of every type, then returns all their names. */
static const char *wait_all_events(const char *t, int want, double timeout) {
  double end = tn_test_now() + timeout;
  int n = -1;
  while (tn_test_now() < end) {
    n = atoi(psql("SELECT count(*) FROM tenancy.outbox WHERE tenant = '%s'", t));
    if (n >= want)
      break;
    usleep(300 * 1000);
  }
  const char *names = all_event_names(t);
  if (n != want)
    cr_assert_fail("tenant %s: %d event(s), want %d: %s", t, n, want, names);
  return names;
}

/* The data of the tenant's newest event of a type, parsed (json_decref it). */
static json_t *newest_data(const char *t, const char *event) {
  const char *d = psql("SELECT event->'data' FROM tenancy.outbox WHERE tenant = '%s' AND type = "
                       "'dev.tenancy.tenant.%s.v1' ORDER BY tenant_seq DESC LIMIT 1",
                       t, event);
  json_t *j = json_loads(d, 0, NULL);
  cr_assert_not_null(j, "%s data: %s", event, d);
  return j;
}

static json_t *derived_quotas(const char *t) {
  const char *q = keep(tn_test_output("kubectl get tenant %s -o jsonpath='{.status.derived.quotas}'", t));
  json_t *j = json_loads(q, 0, NULL);
  cr_assert_not_null(j, "status.derived.quotas: %s", q);
  return j;
}

Test(outbox, placement_and_quota_changes_are_announced_once_each) {
  char t[64];
  tn_test_unique_name(t, sizeof t, "ob-pq");
  apply_tenant(t, "Active", "");
  wait_state(t, "Active", 90);
  const char *names = wait_all_events(t, 4, 30);
  cr_assert_str_eq(names, "created activated placement.decided quota.changed", "events: %s", names);
  json_t *p = newest_data(t, "placement.decided");
  bool placed = !strcmp(json_string_value(json_object_get(p, "region")) ?: "", "eu-west-1") &&
                !strcmp(json_string_value(json_object_get(p, "isolation")) ?: "", "shared") &&
                json_is_null(json_object_get(p, "previousRegion"));
  char *pd = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(p);
  const char *pshown = keep(pd);
  cr_assert(placed, "placement.decided data: %s", pshown);
  json_t *q1 = derived_quotas(t), *d = newest_data(t, "quota.changed");
  bool same = json_equal(json_object_get(d, "quotas"), q1) && json_is_null(json_object_get(d, "previous"));
  json_decref(d);
  cr_assert(same, "quota.changed data is not status.derived.quotas with previous null");

  /* Reconciles that change neither (an annotation, then an operator restart) announce nothing. */
  sh_ok("kubectl annotate tenant %s example.com/poke=1 >/dev/null", t);
  sleep(3);
  stop();
  start();
  sleep(6);
  cr_assert_str_eq(all_event_names(t), names, "a resync or a restart announced again");

  /* Another plan: one quota.changed, the previous quotas in it; the placement stays. */
  patch_spec(t, "{\"plan\":\"standard\"}");
  names = wait_all_events(t, 6, 60);
  cr_assert_str_eq(names, "created activated placement.decided quota.changed updated quota.changed",
                   "events: %s", names);
  json_t *q2 = NULL;
  for (int i = 0; i < 40; i++) { /* the status is written after the event */
    json_decref(q2);
    q2 = derived_quotas(t);
    if (!json_equal(q2, q1))
      break;
    usleep(250 * 1000);
  }
  d = newest_data(t, "quota.changed");
  same = json_equal(json_object_get(d, "quotas"), q2) && json_equal(json_object_get(d, "previous"), q1) &&
         !json_equal(q1, q2) && !strcmp(json_string_value(json_object_get(q2, "cpu")) ?: "", "4");
  json_decref(d);
  json_decref(q1);
  json_decref(q2);
  cr_assert(same, "the second quota.changed does not carry the new quotas and the previous ones");
  sleep(3);
  cr_assert_str_eq(all_event_names(t), names, "the plan change was announced more than once");
  check_sequence_and_audit(t);
  cr_assert_str_eq(psql("SELECT string_agg(a.action, ' ' ORDER BY o.seq) FROM tenancy.outbox o JOIN "
                        "tenancy.audit_events a ON a.id = o.audit_id WHERE o.tenant = '%s' AND o.type LIKE "
                        "'%%.placement.decided.v1' OR o.tenant = '%s' AND o.type LIKE '%%.quota.changed.v1'",
                        t, t),
                   "placement.decide quota.change quota.change");
  cr_assert_geq(validate_all_events(), 6); /* these three among them, against their JSON Schemas */
  sh_ok("kubectl delete tenant %s --wait=true --timeout=90s >/dev/null", t);
}

/* ---- 3d. an idle resync reads nothing from the outbox ------------------------------------------ */

#define READS "tenancy_outbox_change_reads_total"
#define TENANT_RECONCILES "controller_runtime_reconcile_total{controller=\"tenant\""

Test(outbox, an_idle_resync_reads_the_outbox_for_no_tenant) {
  enum { N = 4 };
  char t[N][64];
  for (int i = 0; i < N; i++) {
    tn_test_unique_name(t[i], sizeof t[i], "ob-idle");
    apply_tenant(t[i], "Active", "");
  }
  const char *names[N];
  for (int i = 0; i < N; i++) {
    wait_state(t[i], "Active", 120);
    names[i] = wait_all_events(t[i], 4, 60);
  }
  /* A new process resyncing every 2 s: its first reconcile of each tenant reads the outbox once (our
   * N among the stack's tenants); then a whole pass more, so that every tenant is past its first. */
  stop();
  start_with("--sync-period=2s");
  int all = atoi(keep(tn_test_output("kubectl get tenants --no-headers 2>/dev/null | wc -l")));
  double end = tn_test_now() + 60;
  double reads0 = 0;
  while (tn_test_now() < end && (reads0 = tn_test_metric_sum(op.metrics_port, READS)) < N)
    usleep(300 * 1000);
  cr_assert_geq(reads0, N, "the new process read the outbox %.0f time(s), want one per tenant (>= %d)",
                reads0, N);
  double rec0 = tn_test_metric_sum(op.metrics_port, TENANT_RECONCILES), rec = rec0;
  while (tn_test_now() < end && rec < rec0 + all) {
    usleep(300 * 1000);
    rec = tn_test_metric_sum(op.metrics_port, TENANT_RECONCILES);
  }
  reads0 = tn_test_metric_sum(op.metrics_port, READS);
  rec0 = tn_test_metric_sum(op.metrics_port, TENANT_RECONCILES);
  /* At least three resync passes over the N tenants (and 7 s): reconciles that change nothing. */
  end = tn_test_now() + 90;
  double min_end = tn_test_now() + 7;
  rec = rec0;
  while (tn_test_now() < end && (rec < rec0 + 3 * N || tn_test_now() < min_end)) {
    usleep(500 * 1000);
    rec = tn_test_metric_sum(op.metrics_port, TENANT_RECONCILES);
  }
  double reads = tn_test_metric_sum(op.metrics_port, READS);
  cr_assert_geq(rec, rec0 + 3 * N, "only %.0f tenant reconciles in 90 s of resyncs", rec - rec0);
  cr_assert_eq(reads, reads0, "%.0f idle tenant reconciles read the outbox %.0f time(s), want 0", rec - rec0,
               reads - reads0);
  fprintf(stderr,
          "idle resync: %d tenants on the stack, %.0f outbox reads at start, then %.0f reconciles and %.0f "
          "reads\n",
          all, reads0, rec - rec0, reads - reads0);
  for (int i = 0; i < N; i++)
    cr_assert_str_eq(all_event_names(t[i]), names[i], "tenant %s: a resync recorded again", t[i]);

  /* A change still reads (once) and records once; the resyncs after it read nothing again. */
  patch_spec(t[0], "{\"plan\":\"standard\"}");
  const char *changed = wait_all_events(t[0], 6, 60);
  cr_assert_str_eq(changed, "created activated placement.decided quota.changed updated quota.changed");
  sleep(5);
  reads0 = tn_test_metric_sum(op.metrics_port, READS);
  rec0 = tn_test_metric_sum(op.metrics_port, TENANT_RECONCILES);
  end = tn_test_now() + 90;
  min_end = tn_test_now() + 5;
  rec = rec0;
  while (tn_test_now() < end && (rec < rec0 + 2 * N || tn_test_now() < min_end)) {
    usleep(500 * 1000);
    rec = tn_test_metric_sum(op.metrics_port, TENANT_RECONCILES);
  }
  reads = tn_test_metric_sum(op.metrics_port, READS);
  cr_assert_geq(rec, rec0 + 2 * N, "only %.0f tenant reconciles in 90 s of resyncs", rec - rec0);
  cr_assert_eq(reads, reads0, "after the change, %.0f idle reconciles read the outbox %.0f time(s)",
               rec - rec0, reads - reads0);
  cr_assert_str_eq(all_event_names(t[0]), changed, "the plan change was announced more than once");
  for (int i = 0; i < N; i++)
    sh_ok("kubectl delete tenant %s --wait=true --timeout=90s >/dev/null", t[i]);
}

/* ---- 4. the library on a private schema -------------------------------------------------------- */

static char schema[64];
static const char *dsn(void) { return tn_test_env("TENANCY_PG_DSN"); }

static struct tn_audit *open_private(void) {
  static int seq;
  snprintf(schema, sizeof schema, "tn_outbox_t%ld_%d", (long)getpid(), ++seq);
  struct tn_audit *a = NULL;
  struct tn_error err = {0};
  struct tn_audit_options o = {.schema = schema};
  cr_assert_eq(tn_audit_open(dsn(), &o, &a, &err), 0, "%s", err.message);
  cr_assert_eq(tn_audit_init(a, NULL, &err), 0, "%s", err.message);
  return a;
}

static void drop_private(struct tn_audit *a) {
  tn_audit_close(a);
  psql("DROP SCHEMA IF EXISTS %s CASCADE", schema);
}

static int count(const char *table) { return atoi(psql("SELECT count(*) FROM %s.%s", schema, table)); }

/* An append of action `action` for tenant (JSON) with event `name` and data (may be NULL). */
static int append(struct tn_audit *a, json_t *tenant, const char *name, const char *cid, json_t *data,
                  struct tn_outbox_event *tamper, struct tn_error *err) {
  struct tn_outbox_event ob = {0};
  int rc = tn_outbox_event_init(&ob, "lib", tenant, name, cid, "alice", data, err);
  if (rc)
    return rc;
  if (tamper && tamper->event) {
    free(ob.event);
    ob.event = strdup(tamper->event);
  }
  char target[512];
  snprintf(target, sizeof target, "tenant/%s",
           json_string_value(json_object_get(json_object_get(tenant, "metadata"), "name")));
  struct tn_audit_event ev = {.actor = "alice",
                              .action = "activate",
                              .target = target,
                              .correlation_id = cid,
                              .outcome = TN_AUDIT_SUCCEEDED,
                              .details = "{}",
                              .outbox = &ob};
  rc = tn_audit_append(a, &ev, NULL, err);
  tn_outbox_event_cleanup(&ob);
  return rc;
}

Test(outbox_db, a_refused_event_or_a_stopped_database_leaves_neither_row) {
  struct tn_audit *a = open_private();
  struct tn_error err = {0};
  json_t *tenant = json_pack("{s:{s:s,s:s}}", "metadata", "name", "acme", "uid", "u-1");
  json_t *data = tn_ce_transition_data("Draft", "Active", 2, NULL, NULL, NULL);
  cr_assert_eq(append(a, tenant, TN_CE_ACTIVATED, "c-1", data, NULL, &err), 0, "%s", err.message);
  cr_assert_eq(count("audit_events"), 1);
  cr_assert_eq(count("outbox"), 1);
  /* An event the outbox refuses (its subject names another tenant): the audit row, inserted first
   * in the same statement, is rolled back with it. */
  struct tn_outbox_event bad = {
      .event =
          "{\"id\":\"0b3a6f5e-0000-8000-8000-000000000001\",\"type\":\"dev.tenancy.tenant.suspended.v1\","
          "\"subject\":\"tenant/other\",\"data\":{}}"};
  int rc = append(a, tenant, TN_CE_SUSPENDED, "c-2", data, &bad, &err);
  cr_assert_eq(rc, TN_EINVALID, "rc %d: %s", rc, err.message);
  cr_assert_eq(count("audit_events"), 1, "the audit row of a refused event was kept");
  cr_assert_eq(count("outbox"), 1);
  /* PostgreSQL stopped: the append fails, nothing is written. */
  cr_assert_eq(tn_test_pg_ctl("stop"), 0);
  rc = append(a, tenant, TN_CE_SUSPENDED, "c-3", data, NULL, &err);
  int pg = tn_test_pg_ctl("start");
  cr_assert_eq(pg, 0);
  cr_assert_eq(rc, TN_EUNAVAILABLE, "rc %d: %s", rc, err.message);
  cr_assert_eq(count("audit_events"), 1);
  cr_assert_eq(count("outbox"), 1);
  /* Back: the next event takes tenant_seq 2, no gap. */
  cr_assert_eq(append(a, tenant, TN_CE_SUSPENDED, "c-3", data, NULL, &err), 0, "%s", err.message);
  cr_assert_str_eq(psql("SELECT string_agg(tenant_seq::text, ',' ORDER BY seq) FROM %s.outbox", schema),
                   "1,2");
  /* The same event again (a retried audit row): a second audit row, the event stored once. */
  cr_assert_eq(append(a, tenant, TN_CE_SUSPENDED, "c-3", data, NULL, &err), 0, "%s", err.message);
  cr_assert_eq(count("audit_events"), 3);
  cr_assert_eq(count("outbox"), 2);
  json_decref(data);
  json_decref(tenant);
  drop_private(a);
}

Test(outbox_db, hostile_names_labels_and_data_are_stored_verbatim) {
  struct tn_audit *a = open_private();
  struct tn_error err = {0};
  static const char *const hostile = "x'); DROP TABLE outbox; -- \"$$ @S@ \\ \xc3\xa9\xe2\x80\xae";
  json_t *tenant = json_pack("{s:{s:s,s:s,s:{s:s,s:s}}}", "metadata", "name", hostile, "uid", "u-2", "labels",
                             "a'b", hostile, "tier", "$1");
  json_t *data = tn_ce_transition_data(NULL, "Draft", 1, hostile, hostile, NULL);
  cr_assert_eq(append(a, tenant, TN_CE_CREATED, hostile, data, NULL, &err), 0, "%s", err.message);
  json_t *rows = NULL;
  struct tn_outbox_filter f = {.tenant = hostile};
  cr_assert_eq(tn_outbox_list(a, &f, &rows, &err), 0, "%s", err.message);
  cr_assert_eq(json_array_size(rows), 1, "rows of the hostile tenant: %zu", json_array_size(rows));
  json_t *row = json_array_get(rows, 0);
  json_t *ev = json_object_get(row, "event");
  char subject[256];
  snprintf(subject, sizeof subject, "tenant/%s", hostile);
  bool ok =
      !strcmp(json_string_value(json_object_get(row, "tenant")) ?: "", hostile) &&
      !strcmp(json_string_value(json_object_get(ev, "subject")) ?: "", subject) &&
      !strcmp(json_string_value(json_object_get(ev, "correlationid")) ?: "", hostile) &&
      !strcmp(json_string_value(json_object_get(json_object_get(ev, "data"), "stateReason")) ?: "",
              hostile) &&
      !strcmp(json_string_value(json_object_get(json_object_get(row, "labels"), "a'b")) ?: "", hostile) &&
      !strcmp(json_string_value(json_object_get(json_object_get(row, "labels"), "tier")) ?: "", "$1");
  char *dump = json_dumps(row, JSON_COMPACT);
  const char *shown = keep(dump);
  json_decref(rows);
  cr_assert(ok, "stored: %s", shown);
  cr_assert_eq(count("outbox"), 1, "the outbox table is intact");
  /* show by id */
  const char *id = psql("SELECT id FROM %s.outbox", schema);
  json_t *one = NULL;
  cr_assert_eq(tn_outbox_show(a, id, &one, &err), 0, "%s", err.message);
  json_decref(one);
  cr_assert_eq(tn_outbox_show(a, "no-such-id", &one, &err), TN_ENOTFOUND);
  /* data with a secret never reaches the database */
  json_t *secret = json_pack("{s:s}", "password", "hunter2");
  int rc = append(a, tenant, TN_CE_UPDATED, "c-s", secret, NULL, &err);
  json_decref(secret);
  cr_assert_eq(rc, TN_EINVALID, "an event with a password was accepted");
  cr_assert_eq(count("outbox"), 1);
  json_decref(data);
  json_decref(tenant);
  drop_private(a);
}

/* The writer role of `tenantctl audit init --writer-role` appends rows with their events through
 * audit_append_event(), reads the outbox, and can neither change nor remove an event nor move a
 * tenant's counter. */
static char *writer_dsn(const char *user, const char *password) {
  return tn_test_pg_dsn(user, password, NULL, NULL);
}

Test(outbox_db, the_writer_role_appends_events_and_cannot_change_them) {
  struct tn_audit *owner = open_private();
  char role[96];
  snprintf(role, sizeof role, "%s_w", schema);
  psql("CREATE ROLE %s LOGIN PASSWORD 'outbox-writer-pw-1'", role);
  struct tn_error err = {0};
  cr_assert_eq(tn_audit_init(owner, role, &err), 0, "%s", err.message);
  char *wdsn = writer_dsn(role, "outbox-writer-pw-1");
  struct tn_audit *w = NULL;
  struct tn_audit_options o = {.schema = schema};
  int rc = tn_audit_open(wdsn, &o, &w, &err);
  free(wdsn);
  cr_assert_eq(rc, 0, "%s", err.message);
  json_t *tenant = json_pack("{s:{s:s,s:s}}", "metadata", "name", "acme", "uid", "u-3");
  rc = append(w, tenant, TN_CE_CREATED, "c-w1", NULL, NULL, &err);
  cr_assert_eq(rc, 0, "the writer could not append with an event: %s", err.message);
  cr_assert_eq(append(w, tenant, TN_CE_ACTIVATED, "c-w2", NULL, NULL, &err), 0, "%s", err.message);
  json_t *rows = NULL;
  struct tn_outbox_filter f = {.tenant = "acme", .type = "activated"};
  rc = tn_outbox_list(w, &f, &rows, &err);
  size_t n = json_array_size(rows);
  long long tseq = json_integer_value(json_object_get(json_array_get(rows, 0), "tenantSeq"));
  json_decref(rows);
  cr_assert_eq(rc, 0, "%s", err.message);
  cr_assert_eq(n, 1);
  cr_assert_eq(tseq, 2);
  /* What the writer may not do, as the writer. */
  static const char *const refused[] = {
      "UPDATE @S@.outbox SET event = '{}'",
      "DELETE FROM @S@.outbox",
      "TRUNCATE @S@.outbox",
      "UPDATE @S@.outbox_tenants SET last_seq = 1",
      "INSERT INTO @S@.outbox_tenants VALUES ('x', 5)",
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    json_t *r = NULL;
    rc = tn_audit_query(w, refused[i], 0, NULL, &r, &err);
    json_decref(r);
    cr_assert_eq(rc, TN_EFORBIDDEN, "the writer ran %s (rc %d: %s)", refused[i], rc, err.message);
  }
  cr_assert_str_eq(psql("SELECT string_agg(tenant_seq::text, ',' ORDER BY seq) FROM %s.outbox", schema),
                   "1,2");
  json_decref(tenant);
  tn_audit_close(w);
  drop_private(owner);
  psql("DROP OWNED BY %s; DROP ROLE %s", role, role);
}
