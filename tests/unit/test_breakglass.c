/* test_breakglass.c - break-glass decisions, pure: time and duration parsing, TenancyPolicy
 * spec.breakGlass, Active/Pending/Expired/Denied at various times, the policy rules (a deny wins,
 * roles, maxDuration from first sight), the desired RoleBindings, the writes against observed
 * bindings (none when unchanged), the next expiry, the status and the audit details. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/breakglass.h"

/* 2030-01-01T00:00:00Z */
#define T0 1893456000.0
#define H 3600.0

/* ---- fixtures ------------------------------------------------------------------------------ */

static json_t *load(const char *text) {
  json_error_t je;
  json_t *v = json_loads(text, 0, &je);
  cr_assert_not_null(v, "bad JSON in the test: %s: %s", je.text, text);
  return v;
}

static void policy(struct tn_breakglass_policy *p, const char *name, const char *spec_json) {
  char buf[4096];
  snprintf(buf, sizeof buf, "{\"metadata\":{\"name\":\"%s\"},\"spec\":%s}", name, spec_json);
  json_t *obj = load(buf);
  cr_assert_eq(tn_breakglass_policy_parse(obj, p), 0);
  json_decref(obj);
}

/* A tenant acme (uid u-acme, environments prod and staging) with spec.breakGlass = requests and
 * status.breakGlass = status (either may be NULL). */
static json_t *tenant(const char *requests, const char *status) {
  char buf[8192];
  snprintf(buf, sizeof buf,
           "{\"metadata\":{\"name\":\"acme\",\"uid\":\"u-acme\"},"
           "\"spec\":{\"environments\":[\"prod\",\"staging\"]%s%s},"
           "\"status\":{%s%s}}",
           requests ? ",\"breakGlass\":" : "", requests ? requests : "", status ? "\"breakGlass\":" : "",
           status ? status : "");
  return load(buf);
}

static const char *const both_envs[] = {"prod", "staging"};

/* One request: id, user, role, expiresAt. */
static char *req(const char *id, const char *user, const char *role, const char *expires) {
  static char buf[4][512];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, 512,
           "{\"id\":\"%s\",\"user\":\"%s\",\"role\":\"%s\",\"reason\":\"INC-42 database down\","
           "\"expiresAt\":\"%s\"}",
           id, user, role, expires);
  return b;
}

struct fx {
  json_t *tenant, *observed;
  struct tn_breakglass_policy pols[4];
  size_t n_pols;
  struct tn_breakglass_plan plan;
};

static void run(struct fx *f, double now, const char *const *envs, size_t n_envs) {
  struct tn_breakglass_input in = {.tenant = f->tenant,
                                   .environments = envs,
                                   .n_environments = n_envs,
                                   .policies = f->pols,
                                   .n_policies = f->n_pols,
                                   .observed = f->observed,
                                   .now = now};
  struct tn_error err = {0};
  tn_breakglass_plan_cleanup(&f->plan);
  cr_assert_eq(tn_breakglass_plan(&in, &f->plan, &err), 0, "%s", err.message);
}

static void fx_cleanup(struct fx *f) {
  tn_breakglass_plan_cleanup(&f->plan);
  for (size_t i = 0; i < f->n_pols; i++)
    tn_breakglass_policy_cleanup(&f->pols[i]);
  json_decref(f->tenant);
  json_decref(f->observed);
}

/* The observed bindings become exactly the plan's created bodies (as if the API server stored them,
 * with uid and resourceVersion). */
static void observe_creates(struct fx *f) {
  json_decref(f->observed);
  f->observed = json_array();
  for (size_t i = 0; i < f->plan.n_changes; i++) {
    const struct tn_breakglass_change *c = &f->plan.changes[i];
    if (c->op == TN_BREAKGLASS_DELETE)
      continue;
    json_t *o = json_deep_copy(c->body);
    json_t *m = json_object_get(o, "metadata");
    char uid[64];
    snprintf(uid, sizeof uid, "rb-%zu", i);
    json_object_set_new(m, "uid", json_string(uid));
    json_object_set_new(m, "resourceVersion", json_string("7"));
    json_array_append_new(f->observed, o);
  }
}

static const struct tn_breakglass_decision *decision(struct fx *f, const char *id) {
  for (size_t i = 0; i < f->plan.n_requests; i++)
    if (strcmp(f->plan.decisions[i].req->id, id) == 0)
      return &f->plan.decisions[i];
  cr_assert_fail("no decision for %s", id);
  return NULL;
}

static size_t count_op(struct fx *f, enum tn_breakglass_op op) {
  size_t n = 0;
  for (size_t i = 0; i < f->plan.n_changes; i++)
    n += f->plan.changes[i].op == op;
  return n;
}

static void allow_all(struct fx *f) {
  policy(&f->pols[f->n_pols++], "break-glass", "{\"breakGlass\":{\"allowed\":true,\"maxDuration\":\"4h\"}}");
}

/* ---- parsers ------------------------------------------------------------------------------- */

Test(breakglass_parse, rfc3339_times) {
  double t;
  cr_assert_eq(tn_breakglass_parse_time("2030-01-01T00:00:00Z", &t), 0);
  cr_assert_eq(t, T0);
  cr_assert_eq(tn_breakglass_parse_time("2030-01-01T02:30:00+02:30", &t), 0);
  cr_assert_eq(t, T0, "an offset is subtracted: %f", t - T0);
  cr_assert_eq(tn_breakglass_parse_time("2029-12-31T23:00:00-01:00", &t), 0);
  cr_assert_eq(t, T0);
  cr_assert_eq(tn_breakglass_parse_time("2030-01-01t00:00:01.5z", &t), 0);
  cr_assert_eq(t, T0 + 1.5);
  const char *bad[] = {"",
                       "2030-01-01",
                       "2030-01-01T00:00:00",
                       "2030-01-01 00:00:00Z",
                       "2030-13-01T00:00:00Z",
                       "2030-01-01T25:00:00Z",
                       "2030-01-01T00:00:00+0200",
                       "2030-01-01T00:00:00Zjunk",
                       "2030-01-01T00:00:00.Z",
                       "tomorrow",
                       NULL};
  for (size_t i = 0; bad[i]; i++)
    cr_assert_eq(tn_breakglass_parse_time(bad[i], &t), TN_EINVALID, "%s was accepted", bad[i]);
  cr_assert_eq(tn_breakglass_parse_time(NULL, &t), TN_EINVALID);
}

Test(breakglass_parse, durations) {
  struct {
    const char *s;
    double v;
  } ok[] = {{"4h", 4 * H}, {"90m", 5400}, {"1h30m", 5400}, {"45s", 45}, {"1h0m5s", 3605}, {"2h5s", 7205}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    double v = 0;
    cr_assert_eq(tn_breakglass_parse_duration(ok[i].s, &v), 0, "%s", ok[i].s);
    cr_assert_eq(v, ok[i].v, "%s = %f", ok[i].s, v);
  }
  const char *bad[] = {"", "h", "4", "4x", "30m1h", "0h", "0m0s", "4h ", "-1h", "1.5h", "4hh", NULL};
  for (size_t i = 0; bad[i]; i++) {
    double v;
    cr_assert_eq(tn_breakglass_parse_duration(bad[i], &v), TN_EINVALID, "%s was accepted", bad[i]);
  }
  char buf[32];
  tn_breakglass_format_duration(4 * H, buf, sizeof buf);
  cr_assert_str_eq(buf, "4h");
  tn_breakglass_format_duration(5400, buf, sizeof buf);
  cr_assert_str_eq(buf, "1h30m");
  tn_breakglass_format_duration(3605, buf, sizeof buf);
  cr_assert_str_eq(buf, "1h5s");
  tn_breakglass_format_duration(0, buf, sizeof buf);
  cr_assert_str_eq(buf, "0s");
}

Test(breakglass_parse, is_binding) {
  json_t *yes = load("{\"metadata\":{\"labels\":{\"tenancy.dev/break-glass\":\"x\"}}}");
  json_t *no = load("{\"metadata\":{\"labels\":{\"tenancy.dev/tenant\":\"acme\"}}}");
  cr_assert(tn_breakglass_is_binding(yes));
  cr_assert_not(tn_breakglass_is_binding(no));
  cr_assert_not(tn_breakglass_is_binding(NULL));
  json_decref(yes);
  json_decref(no);
}

/* ---- TenancyPolicy spec.breakGlass -------------------------------------------------------------- */

Test(breakglass_policy, fields_and_defaults) {
  struct tn_breakglass_policy p;
  policy(&p, "none", "{\"residency\":[]}");
  cr_assert_not(p.present);
  cr_assert_str_eq(p.name, "none");
  tn_breakglass_policy_cleanup(&p);

  policy(&p, "defaults", "{\"breakGlass\":{\"allowed\":true}}");
  cr_assert(p.present && p.allowed);
  cr_assert_eq(p.max_duration_s, TN_BREAKGLASS_DEFAULT_MAX_DURATION_S);
  cr_assert_eq(p.roles, 7u, "roles absent = all three");
  cr_assert_null(p.invalid);
  tn_breakglass_policy_cleanup(&p);

  policy(&p, "narrow",
         "{\"breakGlass\":{\"allowed\":true,\"maxDuration\":\"1h30m\",\"roles\":[\"tenant-viewer\","
         "\"tenant-developer\"]}}");
  cr_assert_eq(p.max_duration_s, 5400);
  cr_assert_eq(p.roles, (1u << TN_ROLE_VIEWER) | (1u << TN_ROLE_DEVELOPER));
  tn_breakglass_policy_cleanup(&p);

  policy(&p, "empty-roles", "{\"breakGlass\":{\"allowed\":true,\"roles\":[]}}");
  cr_assert_eq(p.roles, 0u, "an empty list allows no role");
  tn_breakglass_policy_cleanup(&p);

  policy(&p, "off", "{\"breakGlass\":{}}");
  cr_assert(p.present);
  cr_assert_not(p.allowed, "allowed absent = false");
  tn_breakglass_policy_cleanup(&p);
}

Test(breakglass_policy, invalid_fields_are_reported) {
  struct tn_breakglass_policy p;
  policy(&p, "bad-duration", "{\"breakGlass\":{\"allowed\":true,\"maxDuration\":\"4 hours\"}}");
  cr_assert_not_null(p.invalid);
  cr_assert(strstr(p.invalid, "spec.breakGlass.maxDuration \"4 hours\""), "%s", p.invalid);
  tn_breakglass_policy_cleanup(&p);
  policy(&p, "bad-role", "{\"breakGlass\":{\"allowed\":true,\"roles\":[\"cluster-admin\"]}}");
  cr_assert(p.invalid && strstr(p.invalid, "spec.breakGlass.roles[0] \"cluster-admin\""), "%s", p.invalid);
  tn_breakglass_policy_cleanup(&p);
  policy(&p, "bad-allowed", "{\"breakGlass\":{\"allowed\":\"yes\"}}");
  cr_assert(p.invalid && strstr(p.invalid, "allowed"), "%s", p.invalid);
  tn_breakglass_policy_cleanup(&p);
}

/* ---- decisions ------------------------------------------------------------------------------- */

Test(breakglass_decide, no_policy_denies_and_binds_nothing) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s]", req("inc-42", "alice", "tenant-admin", "2030-01-01T02:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  policy(&f.pols[f.n_pols++], "eu-residency", "{\"residency\":[]}");
  run(&f, T0, both_envs, 2);
  const struct tn_breakglass_decision *d = decision(&f, "inc-42");
  cr_assert_eq(d->state, TN_BREAKGLASS_DENIED);
  cr_assert(strstr(d->message, "no TenancyPolicy allows break-glass"), "%s", d->message);
  cr_assert(strstr(d->message, "spec.breakGlass.allowed: true"), "the fix is named: %s", d->message);
  cr_assert(d->newly_denied);
  cr_assert_eq(f.plan.n_changes, 0);
  cr_assert_eq(f.plan.next_expiry, 0);

  /* The status already says so: not new (audited once). */
  json_t *st = tn_breakglass_status(&f.plan);
  char *sts = json_dumps(st, JSON_COMPACT);
  json_decref(f.tenant);
  f.tenant = tenant(reqs, sts);
  free(sts);
  json_decref(st);
  run(&f, T0 + 60, both_envs, 2);
  cr_assert_eq(decision(&f, "inc-42")->state, TN_BREAKGLASS_DENIED);
  cr_assert_not(decision(&f, "inc-42")->newly_denied);
  fx_cleanup(&f);
}

Test(breakglass_decide, granted_until_expiry_then_revoked) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s]", req("inc-42", "alice", "tenant-admin", "2030-01-01T02:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);

  run(&f, T0, both_envs, 2);
  const struct tn_breakglass_decision *d = decision(&f, "inc-42");
  cr_assert_eq(d->state, TN_BREAKGLASS_ACTIVE, "%s", d->message);
  cr_assert_str_eq(d->policy, "break-glass");
  cr_assert_eq(d->first_seen, T0);
  cr_assert_eq(f.plan.n_changes, 2);
  cr_assert_eq(count_op(&f, TN_BREAKGLASS_CREATE), 2);
  cr_assert_str_eq(f.plan.changes[0].namespace, "acme-prod");
  cr_assert_str_eq(f.plan.changes[1].namespace, "acme-staging");
  cr_assert_eq(f.plan.next_expiry, T0 + 2 * H);
  cr_assert(strstr(d->message,
                   "User alice has ClusterRole tenancy-tenant-admin in acme-prod, acme-staging until "
                   "2030-01-01T02:00:00Z"),
            "%s", d->message);

  /* The RoleBinding. */
  json_t *b = f.plan.changes[0].body;
  char *s = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
  cr_assert_str_eq(
      s,
      "{\"apiVersion\":\"rbac.authorization.k8s.io/"
      "v1\",\"kind\":\"RoleBinding\",\"metadata\":{\"annotations\":{"
      "\"tenancy.dev/break-glass-expires-at\":\"2030-01-01T02:00:00Z\",\"tenancy.dev/"
      "break-glass-first-seen-at\":"
      "\"2030-01-01T00:00:00Z\",\"tenancy.dev/break-glass-reason\":\"INC-42 database "
      "down\"},\"labels\":{\"app."
      "kubernetes.io/managed-by\":\"tenancy-operator\",\"tenancy.dev/break-glass\":\"inc-42\",\"tenancy.dev/"
      "environment\":\"prod\",\"tenancy.dev/tenant\":\"acme\"},\"name\":\"break-glass-inc-42\",\"namespace\":"
      "\"acme-prod\",\"ownerReferences\":[{\"apiVersion\":\"tenancy.dev/"
      "v1alpha1\",\"blockOwnerDeletion\":true,"
      "\"controller\":true,\"kind\":\"Tenant\",\"name\":\"acme\",\"uid\":\"u-acme\"}]},\"roleRef\":{"
      "\"apiGroup\":"
      "\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\",\"name\":\"tenancy-tenant-admin\"},"
      "\"subjects\":[{"
      "\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"User\",\"name\":\"alice\"}]}");
  free(s);

  /* Once bound and observed, nothing to write, however often it runs before expiry. */
  observe_creates(&f);
  for (double now = T0 + 1; now < T0 + 2 * H; now += 1799) {
    run(&f, now, both_envs, 2);
    cr_assert_eq(f.plan.n_changes, 0, "at +%.0fs: %zu changes", now - T0, f.plan.n_changes);
    cr_assert_eq(decision(&f, "inc-42")->state, TN_BREAKGLASS_ACTIVE);
    cr_assert_eq(decision(&f, "inc-42")->first_seen, T0, "first sight comes from the bindings");
    cr_assert_eq(f.plan.next_expiry, T0 + 2 * H);
  }

  /* At expiry: Expired, both bindings deleted as expired, nothing to come back for. */
  run(&f, T0 + 2 * H, both_envs, 2);
  d = decision(&f, "inc-42");
  cr_assert_eq(d->state, TN_BREAKGLASS_EXPIRED);
  cr_assert(strstr(d->message, "expired at 2030-01-01T02:00:00Z"), "%s", d->message);
  cr_assert_eq(f.plan.n_changes, 2);
  for (size_t i = 0; i < 2; i++) {
    const struct tn_breakglass_change *c = &f.plan.changes[i];
    cr_assert_eq(c->op, TN_BREAKGLASS_DELETE);
    cr_assert_eq(c->why, TN_BREAKGLASS_WHY_EXPIRED);
    cr_assert_str_eq(c->id, "inc-42");
    cr_assert_str_eq(c->subject_kind, "User");
    cr_assert_str_eq(c->subject, "alice");
    cr_assert_str_eq(c->role, "tenant-admin");
    cr_assert_eq(c->first_seen, T0);
    cr_assert_not_null(c->uid);
  }
  cr_assert_eq(f.plan.next_expiry, 0);
  cr_assert_not(d->newly_denied);
  fx_cleanup(&f);
}

Test(breakglass_decide, removed_request_is_revoked) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s]", req("inc-42", "alice", "tenant-viewer", "2030-01-01T01:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);
  run(&f, T0, both_envs, 2);
  observe_creates(&f);
  json_decref(f.tenant);
  f.tenant = tenant("[]", NULL);
  run(&f, T0 + 60, both_envs, 2);
  cr_assert_eq(f.plan.n_requests, 0);
  cr_assert_eq(f.plan.n_changes, 2);
  cr_assert_eq(f.plan.changes[0].op, TN_BREAKGLASS_DELETE);
  cr_assert_eq(f.plan.changes[0].why, TN_BREAKGLASS_WHY_REMOVED);
  cr_assert_eq(f.plan.changes[0].decision, (size_t)-1);
  json_t *st = tn_breakglass_status(&f.plan);
  cr_assert_eq(json_array_size(st), 0, "no request: the status entry goes");
  json_decref(st);
  fx_cleanup(&f);
}

Test(breakglass_decide, expired_before_first_sight_binds_nothing) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s]", req("old", "alice", "tenant-admin", "2029-12-31T23:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);
  run(&f, T0, both_envs, 2);
  cr_assert_eq(decision(&f, "old")->state, TN_BREAKGLASS_EXPIRED);
  cr_assert_eq(f.plan.n_changes, 0);
  cr_assert_eq(f.plan.next_expiry, 0);
  fx_cleanup(&f);
}

Test(breakglass_decide, max_duration_counts_from_first_sight) {
  struct fx f = {0};
  char reqs[1024];
  /* 5h from now: more than the 4h allowed. */
  snprintf(reqs, sizeof reqs, "[%s]", req("long", "alice", "tenant-admin", "2030-01-01T05:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);
  run(&f, T0, both_envs, 2);
  const struct tn_breakglass_decision *d = decision(&f, "long");
  cr_assert_eq(d->state, TN_BREAKGLASS_DENIED);
  cr_assert(strstr(d->message, "is 5h after the operator first saw request long (2030-01-01T00:00:00Z)"),
            "%s", d->message);
  cr_assert(strstr(d->message, "the 4h TenancyPolicy break-glass allows for role tenant-admin"), "%s",
            d->message);
  cr_assert(strstr(d->message, "set expiresAt to 2030-01-01T04:00:00Z or earlier"), "%s", d->message);
  cr_assert_eq(f.plan.n_changes, 0);

  /* Two hours later it would fit from now, but not from first sight: still Denied. */
  json_t *st = tn_breakglass_status(&f.plan);
  char *sts = json_dumps(st, JSON_COMPACT);
  json_decref(f.tenant);
  f.tenant = tenant(reqs, sts);
  run(&f, T0 + 2 * H, both_envs, 2);
  cr_assert_eq(decision(&f, "long")->state, TN_BREAKGLASS_DENIED);
  cr_assert_eq(decision(&f, "long")->first_seen, T0);
  cr_assert_not(decision(&f, "long")->newly_denied, "same message: not refused again");

  /* Shortened to fit from first sight: granted. */
  snprintf(reqs, sizeof reqs, "[%s]", req("long", "alice", "tenant-admin", "2030-01-01T04:00:00Z"));
  json_decref(f.tenant);
  f.tenant = tenant(reqs, sts);
  run(&f, T0 + 2 * H, both_envs, 2);
  cr_assert_eq(decision(&f, "long")->state, TN_BREAKGLASS_ACTIVE, "%s", decision(&f, "long")->message);
  cr_assert_eq(f.plan.next_expiry, T0 + 4 * H);
  free(sts);
  json_decref(st);
  fx_cleanup(&f);
}

Test(breakglass_decide, a_deny_wins_and_unreadable_policies_deny) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s]", req("inc", "alice", "tenant-viewer", "2030-01-01T01:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);
  policy(&f.pols[f.n_pols++], "lockdown", "{\"breakGlass\":{\"allowed\":false}}");
  run(&f, T0, both_envs, 2);
  const struct tn_breakglass_decision *d = decision(&f, "inc");
  cr_assert_eq(d->state, TN_BREAKGLASS_DENIED);
  cr_assert(strstr(d->message, "TenancyPolicy lockdown forbids break-glass"), "%s", d->message);
  cr_assert_eq(f.plan.n_changes, 0);

  tn_breakglass_policy_cleanup(&f.pols[1]);
  policy(&f.pols[1], "broken", "{\"breakGlass\":{\"allowed\":true,\"maxDuration\":\"forever\"}}");
  run(&f, T0, both_envs, 2);
  d = decision(&f, "inc");
  cr_assert_eq(d->state, TN_BREAKGLASS_DENIED);
  cr_assert(strstr(d->message, "TenancyPolicy broken: spec.breakGlass.maxDuration \"forever\""), "%s",
            d->message);
  fx_cleanup(&f);
}

Test(breakglass_decide, roles_and_the_longest_allowing_policy) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s,%s]", req("adm", "alice", "tenant-admin", "2030-01-01T03:00:00Z"),
           req("dev", "bob", "tenant-developer", "2030-01-01T03:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  policy(&f.pols[f.n_pols++], "short",
         "{\"breakGlass\":{\"allowed\":true,\"maxDuration\":\"1h\",\"roles\":[\"tenant-developer\"]}}");
  policy(&f.pols[f.n_pols++], "viewers",
         "{\"breakGlass\":{\"allowed\":true,\"maxDuration\":\"8h\",\"roles\":[\"tenant-viewer\"]}}");
  policy(&f.pols[f.n_pols++], "long-dev",
         "{\"breakGlass\":{\"allowed\":true,\"maxDuration\":\"3h\",\"roles\":[\"tenant-developer\"]}}");
  run(&f, T0, both_envs, 2);
  const struct tn_breakglass_decision *adm = decision(&f, "adm"), *dev = decision(&f, "dev");
  cr_assert_eq(adm->state, TN_BREAKGLASS_DENIED);
  cr_assert(strstr(adm->message, "no TenancyPolicy allows break-glass with role tenant-admin (allowed: "
                                 "tenant-developer, tenant-viewer)"),
            "%s", adm->message);
  cr_assert_eq(dev->state, TN_BREAKGLASS_ACTIVE, "%s", dev->message);
  cr_assert_str_eq(dev->policy, "long-dev", "the policy allowing the longest wins");
  cr_assert_eq(f.plan.n_changes, 2);
  cr_assert_str_eq(f.plan.changes[0].id, "dev");
  fx_cleanup(&f);
}

Test(breakglass_decide, invalid_requests_are_denied_with_the_fix) {
  struct fx f = {0};
  f.tenant = tenant(
      "["
      "{\"id\":\"both\",\"user\":\"a\",\"group\":\"g\",\"role\":\"tenant-admin\",\"reason\":\"r\","
      "\"expiresAt\":\"2030-01-01T01:00:00Z\"},"
      "{\"id\":\"noone\",\"role\":\"tenant-admin\",\"reason\":\"r\",\"expiresAt\":\"2030-01-01T01:00:00Z\"},"
      "{\"id\":\"role\",\"user\":\"a\",\"role\":\"cluster-admin\",\"reason\":\"r\","
      "\"expiresAt\":\"2030-01-01T01:00:00Z\"},"
      "{\"id\":\"why\",\"user\":\"a\",\"role\":\"tenant-admin\",\"reason\":\"  \","
      "\"expiresAt\":\"2030-01-01T01:00:00Z\"},"
      "{\"id\":\"when\",\"user\":\"a\",\"role\":\"tenant-admin\",\"reason\":\"r\",\"expiresAt\":\"soon\"},"
      "{\"id\":\"where\",\"user\":\"a\",\"role\":\"tenant-admin\",\"reason\":\"r\","
      "\"expiresAt\":\"2030-01-01T01:00:00Z\",\"environments\":[\"qa\"]},"
      "{\"id\":\"Bad_Id\",\"user\":\"a\",\"role\":\"tenant-admin\",\"reason\":\"r\","
      "\"expiresAt\":\"2030-01-01T01:00:00Z\"},"
      "{\"id\":\"both\",\"user\":\"dup\",\"role\":\"tenant-admin\",\"reason\":\"r\","
      "\"expiresAt\":\"2030-01-01T01:00:00Z\"}"
      "]",
      NULL);
  allow_all(&f);
  run(&f, T0, both_envs, 2);
  cr_assert_eq(f.plan.n_requests, 6, "an id that is not a DNS label, or repeated, is skipped");
  struct {
    const char *id, *needle;
  } want[] = {{"both", "set exactly one of user and group"},
              {"noone", "set exactly one of user and group"},
              {"role", "role \"cluster-admin\" is not tenant-admin, tenant-developer or tenant-viewer"},
              {"why", "reason is empty"},
              {"when", "expiresAt \"soon\" is not an RFC 3339 date-time"},
              {"where", "none of the requested environments is one of the tenant's"}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const struct tn_breakglass_decision *d = decision(&f, want[i].id);
    cr_assert_eq(d->state, TN_BREAKGLASS_DENIED, "%s", want[i].id);
    cr_assert(strstr(d->message, want[i].needle), "%s: %s", want[i].id, d->message);
    cr_assert(strstr(d->message, "spec.breakGlass["), "%s names the entry: %s", want[i].id, d->message);
    cr_assert(d->newly_denied);
  }
  cr_assert_eq(f.plan.n_changes, 0);
  json_t *st = tn_breakglass_status(&f.plan);
  cr_assert_null(json_object_get(json_array_get(st, 4), "expiresAt"), "no expiresAt when it cannot be read");
  json_decref(st);
  fx_cleanup(&f);
}

Test(breakglass_decide, reserved_subjects_are_denied_even_when_allowed) {
  struct fx f = {0};
  f.tenant = tenant(
      "["
      "{\"id\":\"sa\",\"user\":\"system:serviceaccount:kube-system:default\",\"role\":\"tenant-admin\","
      "\"reason\":\"r\",\"expiresAt\":\"2030-01-01T01:00:00Z\"},"
      "{\"id\":\"all\",\"group\":\"system:authenticated\",\"role\":\"tenant-viewer\","
      "\"reason\":\"r\",\"expiresAt\":\"2030-01-01T01:00:00Z\"},"
      "{\"id\":\"ok\",\"user\":\"ada@acme.example\",\"role\":\"tenant-viewer\","
      "\"reason\":\"r\",\"expiresAt\":\"2030-01-01T01:00:00Z\"}"
      "]",
      NULL);
  allow_all(&f);
  run(&f, T0, both_envs, 2);
  const struct tn_breakglass_decision *d = decision(&f, "sa");
  cr_assert_eq(d->state, TN_BREAKGLASS_DENIED);
  cr_assert(
      strstr(d->message, "user \"system:serviceaccount:kube-system:default\" is reserved to Kubernetes"),
      "%s", d->message);
  d = decision(&f, "all");
  cr_assert_eq(d->state, TN_BREAKGLASS_DENIED);
  cr_assert(strstr(d->message, "group \"system:authenticated\" is reserved"), "%s", d->message);
  cr_assert_eq(decision(&f, "ok")->state, TN_BREAKGLASS_ACTIVE);
  cr_assert_eq(f.plan.n_changes, 2, "only ok's bindings, one per environment");
  for (size_t i = 0; i < f.plan.n_changes; i++) {
    char *body = json_dumps(f.plan.changes[i].body, 0);
    cr_assert_null(strstr(body, "system:"), "%s", body);
    free(body);
  }
  fx_cleanup(&f);
}

Test(breakglass_decide, environments_subset_and_pending_without_namespaces) {
  struct fx f = {0};
  f.tenant =
      tenant("[{\"id\":\"p\",\"group\":\"oncall\",\"role\":\"tenant-developer\",\"reason\":\"deploy fix\","
             "\"expiresAt\":\"2030-01-01T01:00:00Z\",\"environments\":[\"prod\",\"qa\"]}]",
             NULL);
  allow_all(&f);
  run(&f, T0, both_envs, 2);
  const struct tn_breakglass_decision *d = decision(&f, "p");
  cr_assert_eq(d->state, TN_BREAKGLASS_ACTIVE, "%s", d->message);
  cr_assert_eq(d->n_namespaces, 1);
  cr_assert_str_eq(d->namespaces[0], "acme-prod");
  cr_assert(strstr(d->message, "Group oncall"), "%s", d->message);
  cr_assert(strstr(d->message, "ignored: qa"), "%s", d->message);
  cr_assert_eq(f.plan.n_changes, 1);
  cr_assert_str_eq(json_string_value(json_object_get(
                       json_array_get(json_object_get(f.plan.changes[0].body, "subjects"), 0), "kind")),
                   "Group");

  /* Only staging's namespace exists: nothing to bind yet, but the expiry still matters. */
  const char *const staging[] = {"staging"};
  run(&f, T0, staging, 1);
  d = decision(&f, "p");
  cr_assert_eq(d->state, TN_BREAKGLASS_PENDING);
  cr_assert(strstr(d->message, "none of the namespaces it covers exists yet"), "%s", d->message);
  cr_assert_eq(f.plan.n_changes, 0);
  cr_assert_eq(f.plan.next_expiry, T0 + H);
  fx_cleanup(&f);
}

Test(breakglass_decide, no_live_namespaces_revokes_out_of_scope) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s]", req("inc", "alice", "tenant-admin", "2030-01-01T01:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);
  run(&f, T0, both_envs, 2);
  observe_creates(&f);
  run(&f, T0 + 1, NULL, 0); /* e.g. the tenant was archived */
  cr_assert_eq(decision(&f, "inc")->state, TN_BREAKGLASS_PENDING);
  cr_assert_eq(f.plan.n_changes, 2);
  for (size_t i = 0; i < 2; i++) {
    cr_assert_eq(f.plan.changes[i].op, TN_BREAKGLASS_DELETE);
    cr_assert_eq(f.plan.changes[i].why, TN_BREAKGLASS_WHY_OUT_OF_SCOPE);
  }
  fx_cleanup(&f);
}

Test(breakglass_decide, policy_withdrawn_revokes_as_denied) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s]", req("inc", "alice", "tenant-admin", "2030-01-01T01:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);
  run(&f, T0, both_envs, 2);
  observe_creates(&f);
  tn_breakglass_policy_cleanup(&f.pols[0]);
  f.n_pols = 0;
  run(&f, T0 + 1, both_envs, 2);
  cr_assert_eq(decision(&f, "inc")->state, TN_BREAKGLASS_DENIED);
  cr_assert_eq(f.plan.n_changes, 2);
  cr_assert_eq(f.plan.changes[0].why, TN_BREAKGLASS_WHY_DENIED);
  fx_cleanup(&f);
}

Test(breakglass_decide, changes_to_an_active_grant) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s]", req("inc", "alice", "tenant-viewer", "2030-01-01T01:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);
  const char *const prod[] = {"prod"};
  run(&f, T0, prod, 1);
  observe_creates(&f);

  /* Longer, within the limit: the binding is updated in place (expiry annotation). */
  snprintf(reqs, sizeof reqs, "[%s]", req("inc", "alice", "tenant-viewer", "2030-01-01T03:00:00Z"));
  json_decref(f.tenant);
  f.tenant = tenant(reqs, NULL);
  run(&f, T0 + 60, prod, 1);
  cr_assert_eq(f.plan.n_changes, 1);
  cr_assert_eq(f.plan.changes[0].op, TN_BREAKGLASS_UPDATE);
  cr_assert_str_eq(f.plan.changes[0].resource_version, "7");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(f.plan.changes[0].body, "metadata"),
                                                     "resourceVersion")),
                   "7");
  cr_assert_eq(decision(&f, "inc")->first_seen, T0, "still counted from the first sight");

  /* Another user: updated (subjects are mutable). */
  snprintf(reqs, sizeof reqs, "[%s]", req("inc", "carol", "tenant-viewer", "2030-01-01T01:00:00Z"));
  json_decref(f.tenant);
  f.tenant = tenant(reqs, NULL);
  run(&f, T0 + 60, prod, 1);
  cr_assert_eq(f.plan.n_changes, 1);
  cr_assert_eq(f.plan.changes[0].op, TN_BREAKGLASS_UPDATE);

  /* Another role: roleRef is immutable, so deleted (changed) then created. */
  snprintf(reqs, sizeof reqs, "[%s]", req("inc", "alice", "tenant-admin", "2030-01-01T01:00:00Z"));
  json_decref(f.tenant);
  f.tenant = tenant(reqs, NULL);
  run(&f, T0 + 60, prod, 1);
  cr_assert_eq(f.plan.n_changes, 2);
  cr_assert_eq(f.plan.changes[0].op, TN_BREAKGLASS_DELETE);
  cr_assert_eq(f.plan.changes[0].why, TN_BREAKGLASS_WHY_CHANGED);
  cr_assert_str_eq(f.plan.changes[0].role, "tenant-viewer", "the revocation names the old role");
  cr_assert_eq(f.plan.changes[1].op, TN_BREAKGLASS_CREATE);
  fx_cleanup(&f);
}

Test(breakglass_decide, bindings_not_owned_are_never_touched) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s]", req("inc", "alice", "tenant-admin", "2030-01-01T01:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);
  const char *const prod[] = {"prod"};
  run(&f, T0, prod, 1);
  observe_creates(&f);
  /* Someone else's copy with our labels (another owner uid) in the same place, and a stray one. */
  json_t *o = json_array_get(f.observed, 0);
  json_object_set_new(json_array_get(json_object_get(json_object_get(o, "metadata"), "ownerReferences"), 0),
                      "uid", json_string("someone-else"));
  json_t *stray = json_deep_copy(o);
  json_object_set_new(json_object_get(stray, "metadata"), "name", json_string("break-glass-old"));
  json_array_append_new(f.observed, stray);
  run(&f, T0 + 1, prod, 1);
  cr_assert_eq(f.plan.n_changes, 0, "neither updated, created nor deleted");
  const struct tn_breakglass_decision *d = decision(&f, "inc");
  cr_assert_eq(d->state, TN_BREAKGLASS_PENDING);
  cr_assert(strstr(d->message, "RoleBinding acme-prod/break-glass-inc exists and is not the operator's"),
            "%s", d->message);
  fx_cleanup(&f);
}

Test(breakglass_decide, other_tenants_and_plain_bindings_are_ignored) {
  struct fx f = {0};
  f.tenant = tenant("[]", NULL);
  f.observed =
      load("[{\"metadata\":{\"name\":\"tenant-admin-1\",\"namespace\":\"acme-prod\",\"uid\":\"x\","
           "\"labels\":{\"tenancy.dev/tenant\":\"acme\"},\"ownerReferences\":[{\"kind\":\"Tenant\",\"uid\":"
           "\"u-acme\"}]}},"
           "{\"metadata\":{\"name\":\"break-glass-x\",\"namespace\":\"globex-prod\",\"uid\":\"y\","
           "\"labels\":{\"tenancy.dev/tenant\":\"globex\",\"tenancy.dev/break-glass\":\"x\"},"
           "\"ownerReferences\":[{\"kind\":\"Tenant\",\"uid\":\"u-acme\"}]}}]");
  run(&f, T0, both_envs, 2);
  cr_assert_eq(f.plan.n_changes, 0);
  fx_cleanup(&f);
}

Test(breakglass_decide, first_sight_is_the_earliest_known) {
  struct fx f = {0};
  char reqs[1024];
  snprintf(reqs, sizeof reqs, "[%s]", req("inc", "alice", "tenant-admin", "2030-01-01T03:00:00Z"));
  /* The status saw it at T0 - 2h: 5h window > 4h. */
  f.tenant = tenant(reqs, "[{\"id\":\"inc\",\"state\":\"Active\",\"message\":\"m\",\"firstSeenAt\":"
                          "\"2029-12-31T22:00:00Z\"}]");
  allow_all(&f);
  run(&f, T0, both_envs, 2);
  cr_assert_eq(decision(&f, "inc")->first_seen, T0 - 2 * H);
  cr_assert_eq(decision(&f, "inc")->state, TN_BREAKGLASS_DENIED);
  cr_assert(decision(&f, "inc")->newly_denied, "the status said Active");
  fx_cleanup(&f);
}

Test(breakglass_decide, deletes_come_first_and_next_expiry_is_the_earliest) {
  struct fx f = {0};
  char reqs[2048];
  snprintf(reqs, sizeof reqs, "[%s,%s]", req("a", "alice", "tenant-admin", "2030-01-01T03:00:00Z"),
           req("b", "bob", "tenant-viewer", "2030-01-01T00:30:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);
  const char *const prod[] = {"prod"};
  run(&f, T0, prod, 1);
  cr_assert_eq(f.plan.next_expiry, T0 + 1800);
  observe_creates(&f);
  /* b expires, c arrives. */
  snprintf(reqs, sizeof reqs, "[%s,%s,%s]", req("a", "alice", "tenant-admin", "2030-01-01T03:00:00Z"),
           req("b", "bob", "tenant-viewer", "2030-01-01T00:30:00Z"),
           req("c", "carol", "tenant-viewer", "2030-01-01T02:00:00Z"));
  json_decref(f.tenant);
  f.tenant = tenant(reqs, NULL);
  run(&f, T0 + 1800, prod, 1);
  cr_assert_eq(f.plan.n_changes, 2);
  cr_assert_eq(f.plan.changes[0].op, TN_BREAKGLASS_DELETE);
  cr_assert_str_eq(f.plan.changes[0].id, "b");
  cr_assert_eq(f.plan.changes[1].op, TN_BREAKGLASS_CREATE);
  cr_assert_str_eq(f.plan.changes[1].id, "c");
  cr_assert_eq(f.plan.next_expiry, T0 + 2 * H);
  fx_cleanup(&f);
}

/* ---- status and reports ------------------------------------------------------------------------ */

Test(breakglass_status, entries) {
  struct fx f = {0};
  char reqs[2048];
  snprintf(reqs, sizeof reqs, "[%s,%s]", req("a", "alice", "tenant-admin", "2030-01-01T02:00:00+01:00"),
           req("old", "bob", "tenant-viewer", "2029-01-01T00:00:00Z"));
  f.tenant = tenant(reqs, NULL);
  allow_all(&f);
  run(&f, T0, both_envs, 2);
  json_t *st = tn_breakglass_status(&f.plan);
  cr_assert_eq(json_array_size(st), 2);
  json_t *a = json_array_get(st, 0), *old = json_array_get(st, 1);
  cr_assert_str_eq(json_string_value(json_object_get(a, "id")), "a");
  cr_assert_str_eq(json_string_value(json_object_get(a, "state")), "Active");
  cr_assert_str_eq(json_string_value(json_object_get(a, "expiresAt")), "2030-01-01T01:00:00Z",
                   "normalised to UTC");
  cr_assert_str_eq(json_string_value(json_object_get(a, "firstSeenAt")), "2030-01-01T00:00:00Z");
  cr_assert_eq(json_array_size(json_object_get(a, "namespaces")), 2);
  cr_assert_str_eq(json_string_value(json_object_get(old, "state")), "Expired");
  cr_assert_null(json_object_get(old, "namespaces"));
  cr_assert_not_null(json_object_get(old, "message"));
  json_decref(st);
  fx_cleanup(&f);
}

Test(breakglass_status, report_details) {
  char *ns[] = {strdup("acme-prod")};
  struct tn_breakglass_report r = {.id = strdup("inc"),
                                   .subject_kind = strdup("Group"),
                                   .subject = strdup("oncall"),
                                   .role = strdup("tenant-admin"),
                                   .expires_at = strdup("2030-01-01T01:00:00Z"),
                                   .reason = strdup("INC \"42\""),
                                   .why = strdup("expired"),
                                   .correlation_id = strdup("bg-inc-1"),
                                   .namespaces = malloc(sizeof(char *)),
                                   .n_namespaces = 1};
  r.namespaces[0] = ns[0];
  char *d = tn_breakglass_report_details(&r);
  cr_assert_str_eq(
      d, "{\"expiresAt\":\"2030-01-01T01:00:00Z\",\"group\":\"oncall\",\"id\":\"inc\",\"namespaces\":["
         "\"acme-prod\"],\"reason\":\"INC \\\"42\\\"\",\"role\":\"tenant-admin\",\"why\":\"expired\"}");
  free(d);
  tn_breakglass_report_cleanup(&r);
  tn_breakglass_report_cleanup(NULL);
}

Test(breakglass_status, tenant_without_uid_is_refused) {
  json_t *t = load("{\"metadata\":{\"name\":\"acme\"},\"spec\":{}}");
  struct tn_breakglass_input in = {.tenant = t, .now = T0};
  struct tn_breakglass_plan p = {0};
  struct tn_error err = {0};
  cr_assert_eq(tn_breakglass_plan(&in, &p, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "uid"), "%s", err.message);
  tn_breakglass_plan_cleanup(&p);
  json_decref(t);
}
