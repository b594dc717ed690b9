/* test_dbplan.c - the pure PostgreSQL data-plane planner: names from tenant ids (63-byte limit,
 * hyphens, hostile ids), desired state per lifecycle state, the operations planned for every
 * isolation mode x lifecycle state from scratch, when converged and after drift, teardown plans,
 * SCRAM-SHA-256 verifiers produced by PostgreSQL 15, and URIs with hostile characters. */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/dbplan.h"

/* ---- names ---------------------------------------------------------------------------------- */

Test(dbplan_names, short_id_and_hyphens) {
  char id[64];
  struct tn_error err = {0};
  cr_assert_eq(tn_db_identifier("acme", id, &err), 0);
  cr_assert_str_eq(id, "tn_acme");
  cr_assert_eq(tn_db_identifier("acme-corp-2", id, &err), 0);
  cr_assert_str_eq(id, "tn_acme_corp_2");
  cr_assert_eq(tn_db_identifier("0", id, &err), 0);
  cr_assert_str_eq(id, "tn_0");
}

Test(dbplan_names, fifty_nine_characters_is_the_longest_direct_name) {
  char id[64], name[64];
  memset(id, 'b', 59);
  id[59] = '\0';
  cr_assert_eq(tn_db_identifier(id, name, NULL), 0);
  cr_assert_eq(strlen(name), 62, "direct names stay below 63 bytes");
  cr_assert_eq(strncmp(name, "tn_", 3), 0);
  cr_assert_eq(strcmp(name + 3, id), 0);
}

Test(dbplan_names, long_ids_are_hashed_to_exactly_63_bytes) {
  char name[64];
  cr_assert_eq(tn_db_identifier("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", name, NULL),
               0);
  cr_assert_str_eq(name, "tn_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_11ee391211c");
  cr_assert_eq(strlen(name), TN_DB_NAME_MAX);
  /* Two 63-character ids that share their first 48 characters (and more). */
  char a[64], b[64];
  cr_assert_eq(tn_db_identifier("very-long-tenant-name-for-a-customer-with-a-name-of-63-chars-x1", a, NULL),
               0);
  cr_assert_eq(tn_db_identifier("very-long-tenant-name-for-a-customer-with-a-name-of-63-chars-x2", b, NULL),
               0);
  cr_assert_str_eq(a, "tn_very_long_tenant_name_for_a_customer_with_a_name_f3ab4f0a3a1");
  cr_assert_str_eq(b, "tn_very_long_tenant_name_for_a_customer_with_a_name_da0c35650a2");
  cr_assert_eq(strlen(a), 63);
  cr_assert_str_neq(a, b);
}

Test(dbplan_names, a_direct_name_never_equals_a_hashed_one) {
  /* A 60-character id whose direct form would look like a hashed name is hashed too. */
  char name[64];
  const char *id = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-0123456789a";
  cr_assert_eq(strlen(id), 60);
  cr_assert_eq(tn_db_identifier(id, name, NULL), 0);
  cr_assert_eq(strlen(name), 63);
  cr_assert_str_neq(name, "tn_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_0123456789a");
}

Test(dbplan_names, non_dns_label_ids_are_refused_with_words) {
  const char *bad[] = {"a\";drop role x;--",
                       "Acme",
                       "",
                       "-acme",
                       "acme-",
                       "acme_corp",
                       "acme.corp",
                       "a b",
                       "\xc3\xa9t\xc3\xa9",
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char name[64] = "x";
    struct tn_error err = {0};
    cr_assert_eq(tn_db_identifier(bad[i], name, &err), TN_EINVALID, "%s", bad[i]);
    cr_assert_str_eq(name, "");
    cr_assert(strstr(err.message, "is not a DNS label"), "%s", err.message);
  }
  struct tn_error err = {0};
  char name[64];
  cr_assert_eq(tn_db_identifier(NULL, name, &err), TN_EINVALID);
  struct tn_db_desired d;
  cr_assert_eq(
      tn_db_desired_for("a\";drop role x;--", TN_ISOLATION_SHARED, TN_STATE_ACTIVE, -1, NULL, &d, &err),
      TN_EINVALID);
  cr_assert(strstr(err.message, "a\";drop role x;--"), "the message quotes the id: %s", err.message);
}

Test(dbplan_names, per_mode) {
  struct tn_db_names n;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_names_for("acme-1", TN_ISOLATION_SHARED, NULL, &n, &err), 0);
  cr_assert_str_eq(n.role, "tn_acme_1");
  cr_assert_str_eq(n.database, "tenants");
  cr_assert_str_eq(n.schema, "tn_acme_1");
  cr_assert_str_eq(n.tenant_database, "tn_acme_1");
  cr_assert_str_eq(n.shared_database, "tenants");
  cr_assert_str_eq(n.marker, "tenancy-operator tenant acme-1");
  for (int m = TN_ISOLATION_DEDICATED; m <= TN_ISOLATION_HYBRID; m++) {
    cr_assert_eq(tn_db_names_for("acme-1", (enum tn_isolation)m, "shared_db", &n, &err), 0);
    cr_assert_str_eq(n.database, "tn_acme_1");
    cr_assert_str_eq(n.schema, "");
    cr_assert_str_eq(n.shared_database, "shared_db");
  }
  const char *bad_shared[] = {
      "",          "tn_acme",     "template1",
      "tab\there", "caf\xc3\xa9", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
  for (size_t i = 0; i < sizeof bad_shared / sizeof bad_shared[0]; i++) {
    cr_assert_eq(tn_db_names_for("acme", TN_ISOLATION_SHARED, bad_shared[i], &n, &err), TN_EINVALID, "%s",
                 bad_shared[i]);
    cr_assert(strstr(err.message, "shared database name"), "%s", err.message);
  }
  /* The administrator's name is quoted, not restricted to what a tenant id may hold. */
  cr_assert_eq(tn_db_names_for("acme", TN_ISOLATION_SHARED, "Shared \"DB\"; --", &n, &err), 0);
  cr_assert_str_eq(n.database, "Shared \"DB\"; --");
}

/* ---- server ---------------------------------------------------------------------------------- */

#define SERVES(m) (1u << TN_ISOLATION_##m)

Test(dbplan_server, first_by_name_that_serves_the_mode) {
  struct tn_db_server_choice s[] = {{"pg-z", SERVES(SHARED) | SERVES(HYBRID), NULL},
                                    {"pg-b", SERVES(DEDICATED), NULL},
                                    {"pg-a", SERVES(SHARED), NULL},
                                    {"pg-c", SERVES(DEDICATED), NULL}};
  size_t i = 99;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_pick_server(s, 4, TN_ISOLATION_SHARED, NULL, "eu-west-1", &i, &err), 0);
  cr_assert_str_eq(s[i].name, "pg-a");
  cr_assert_eq(tn_db_pick_server(s, 4, TN_ISOLATION_DEDICATED, NULL, "eu-west-1", &i, &err), 0);
  cr_assert_str_eq(s[i].name, "pg-b");
  cr_assert_eq(tn_db_pick_server(s, 4, TN_ISOLATION_HYBRID, "", "eu-west-1", &i, &err), 0);
  cr_assert_str_eq(s[i].name, "pg-z");
}

Test(dbplan_server, a_placed_tenant_never_moves) {
  struct tn_db_server_choice s[] = {{"pg-a", SERVES(SHARED), NULL}, {"pg-b", SERVES(DEDICATED), NULL}};
  size_t i = 99;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_pick_server(s, 2, TN_ISOLATION_SHARED, "pg-b", "eu-west-1", &i, &err), 0);
  cr_assert_str_eq(s[i].name, "pg-b", "kept even though it no longer serves the mode");
  cr_assert_eq(tn_db_pick_server(s, 2, TN_ISOLATION_SHARED, "pg-gone", "eu-west-1", &i, &err), TN_ENOTFOUND);
  cr_assert(strstr(err.message, "pg-gone is no longer listed"), "%s", err.message);
  cr_assert(strstr(err.message, "does not move"), "%s", err.message);
}

Test(dbplan_server, require_tls_picks_only_a_verifying_server) {
  /* pg-a sorts first but only encrypts (require); pg-b verifies the server's certificate. */
  struct tn_db_server_choice s[] = {{"pg-a", SERVES(SHARED), "require"},
                                    {"pg-c", SERVES(SHARED), "verify-ca"},
                                    {"pg-b", SERVES(SHARED), NULL /* CRD default verify-full */},
                                    {"pg-d", SERVES(DEDICATED), "disable"}};
  size_t i = 99;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_pick_server_policy(s, 4, TN_ISOLATION_SHARED, NULL, "eu-west-1", NULL, &i, &err), 0);
  cr_assert_str_eq(s[i].name, "pg-a", "without a policy: the first by name, as before");
  cr_assert_eq(tn_db_pick_server_policy(s, 4, TN_ISOLATION_SHARED, NULL, "eu-west-1", "tls", &i, &err), 0);
  cr_assert_str_eq(s[i].name, "pg-b", "with requireDatabaseTLS: the first verifying server");
  s[2].ssl_mode = "prefer";
  cr_assert_eq(tn_db_pick_server_policy(s, 4, TN_ISOLATION_SHARED, NULL, "eu-west-1", "tls", &i, &err), 0);
  cr_assert_str_eq(s[i].name, "pg-c", "verify-ca also verifies");
}

Test(dbplan_server, require_tls_without_a_compliant_server_refuses) {
  struct tn_db_server_choice s[] = {{"pg-a", SERVES(SHARED), "require"},
                                    {"pg-b", SERVES(SHARED), "prefer"},
                                    {"pg-v", SERVES(DEDICATED), "verify-full"}};
  size_t i = 99;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_pick_server_policy(s, 3, TN_ISOLATION_SHARED, NULL, "eu-west-1", "eu-tls", &i, &err),
               TN_EFORBIDDEN);
  cr_assert_eq(i, 99, "no server chosen");
  cr_assert(strstr(err.message, "TenancyPolicy eu-tls: encryption.requireDatabaseTLS"), "%s", err.message);
  cr_assert(strstr(err.message, "pg-a (sslMode require), pg-b (sslMode prefer)"), "%s", err.message);
  cr_assert(strstr(err.message, "nothing was provisioned"), "%s", err.message);
  /* no server serves the mode at all: the usual NotFound words, not the policy's */
  cr_assert_eq(tn_db_pick_server_policy(s, 3, TN_ISOLATION_HYBRID, NULL, "eu-west-1", "eu-tls", &i, &err),
               TN_ENOTFOUND);
  /* a placed tenant keeps its server (moving data is a migration; policy reports it) */
  cr_assert_eq(tn_db_pick_server_policy(s, 3, TN_ISOLATION_SHARED, "pg-a", "eu-west-1", "eu-tls", &i, &err),
               0);
  cr_assert_str_eq(s[i].name, "pg-a");
  cr_assert(tn_db_ssl_mode_verified(NULL) && tn_db_ssl_mode_verified("verify-full") &&
            tn_db_ssl_mode_verified("verify-ca") && !tn_db_ssl_mode_verified("require") &&
            !tn_db_ssl_mode_verified("allow"));
}

Test(dbplan_server, none_serves_the_mode) {
  struct tn_db_server_choice s[] = {{"pg-a", SERVES(SHARED), NULL}};
  size_t i = 99;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_pick_server(s, 1, TN_ISOLATION_DEDICATED, NULL, "eu-west-1", &i, &err), TN_ENOTFOUND);
  cr_assert_str_eq(err.message,
                   "region eu-west-1 has no database server that serves isolation dedicated: add one "
                   "to its spec.databaseServers (with dedicated in serves), or change the tenant's "
                   "isolation");
  cr_assert_eq(tn_db_pick_server(NULL, 0, TN_ISOLATION_SHARED, NULL, "eu-west-1", &i, &err), TN_ENOTFOUND);
  cr_assert_eq(i, 99);
}

/* ---- desired state ---------------------------------------------------------------------------- */

Test(dbplan_desired, per_state) {
  struct tn_db_desired d;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_desired_for("acme", TN_ISOLATION_SHARED, TN_STATE_ACTIVE, 20, NULL, &d, &err), 0);
  cr_assert(d.create && d.login && d.password && d.connect);
  cr_assert_eq(d.connection_limit, 20);
  cr_assert_eq(tn_db_desired_for("acme", TN_ISOLATION_DEDICATED, TN_STATE_SUSPENDED, -1, NULL, &d, &err), 0);
  cr_assert(d.create && !d.login && d.password && d.connect);
  cr_assert_eq(d.connection_limit, -1);
  cr_assert_eq(tn_db_desired_for("acme", TN_ISOLATION_HYBRID, TN_STATE_ARCHIVED, 0, NULL, &d, &err), 0);
  cr_assert(!d.create && !d.login && !d.password && !d.connect);
  cr_assert_eq(d.connection_limit, 0, "zero connections means zero");
  cr_assert_eq(tn_db_desired_for("acme", TN_ISOLATION_SHARED, TN_STATE_ACTIVE, 1LL << 40, NULL, &d, &err), 0);
  cr_assert_eq(d.connection_limit, 2147483647LL, "clamped to PostgreSQL's int4");
  enum tn_state none[] = {TN_STATE_NONE, TN_STATE_DRAFT, TN_STATE_DELETED};
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(tn_db_desired_for("acme", TN_ISOLATION_SHARED, none[i], -1, NULL, &d, &err), TN_EINVALID);
    cr_assert(strstr(err.message, "has no database to converge"), "%s", err.message);
  }
}

/* ---- plans ------------------------------------------------------------------------------------- */

static struct tn_db_desired desired(enum tn_isolation m, enum tn_state s, long long connections) {
  struct tn_db_desired d;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_desired_for("acme", m, s, connections, NULL, &d, &err), 0, "%s", err.message);
  return d;
}

/* What the catalogs show once d is reached (admin superuser). */
static struct tn_db_observed converged(const struct tn_db_desired *d) {
  struct tn_db_observed o = {0};
  o.admin_superuser = true;
  o.role_exists = o.role_managed = true;
  o.role_login = d->login;
  o.role_connection_limit = d->connection_limit;
  o.password = d->password ? TN_DB_PASSWORD_MATCHES : TN_DB_PASSWORD_NONE;
  o.shared_db.exists = true;
  if (d->mode == TN_ISOLATION_SHARED) {
    o.shared_db.role_connect = d->connect;
    o.schema_exists = o.schema_owned = true;
  } else {
    o.tenant_db = (struct tn_db_observed_database){.exists = true, .owned = true, .role_connect = d->connect};
  }
  return o;
}

#define OP(k) TN_DB_OP_##k

static void assert_plan(const struct tn_db_plan *p, const enum tn_db_op_kind *want, int n, const char *what) {
  char got[1024] = "";
  for (int i = 0; i < p->n; i++) {
    strncat(got, tn_db_op_name(p->ops[i].kind), sizeof got - strlen(got) - 1);
    strncat(got, "; ", sizeof got - strlen(got) - 1);
  }
  cr_assert_eq(p->n, n, "%s: %d operation(s), want %d: %s", what, p->n, n, got);
  for (int i = 0; i < n; i++)
    cr_assert_eq(p->ops[i].kind, want[i], "%s: op %d is %s, want %s (plan: %s)", what, i,
                 tn_db_op_name(p->ops[i].kind), tn_db_op_name(want[i]), got);
}

static struct tn_db_plan plan(const struct tn_db_desired *d, const struct tn_db_observed *o) {
  struct tn_db_plan p;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_plan_converge(d, o, &p, &err), 0, "%s", err.message);
  return p;
}

Test(dbplan_plan, converged_costs_nothing_in_every_mode_and_state) {
  enum tn_state states[] = {TN_STATE_ACTIVE, TN_STATE_SUSPENDED, TN_STATE_ARCHIVED};
  for (int m = 0; m < TN_ISOLATION_COUNT; m++)
    for (int s = 0; s < 3; s++) {
      struct tn_db_desired d = desired((enum tn_isolation)m, states[s], 20);
      struct tn_db_observed o = converged(&d);
      struct tn_db_plan p = plan(&d, &o);
      cr_assert_eq(p.n, 0, "%s %s: %d op(s), first %s", tn_isolation_name((enum tn_isolation)m),
                   tn_state_name(states[s]), p.n, p.n ? tn_db_op_name(p.ops[0].kind) : "");
    }
}

Test(dbplan_plan, shared_active_from_nothing) {
  struct tn_db_desired d = desired(TN_ISOLATION_SHARED, TN_STATE_ACTIVE, 20);
  struct tn_db_observed o = {.admin_superuser = true};
  struct tn_db_plan p = plan(&d, &o);
  enum tn_db_op_kind want[] = {OP(CREATE_DATABASE),
                               OP(REVOKE_DATABASE_PUBLIC),
                               OP(REVOKE_PUBLIC_SCHEMA),
                               OP(CREATE_ROLE),
                               OP(SET_PASSWORD),
                               OP(CREATE_SCHEMA),
                               OP(GRANT_CONNECT),
                               OP(TERMINATE_FOREIGN_SESSIONS),
                               OP(SET_LOGIN)};
  assert_plan(&p, want, 9, "shared active, empty server");
  cr_assert_str_eq(p.ops[0].database, "tenants");
  cr_assert_not(p.ops[0].with_owner, "the shared database belongs to the admin");
  cr_assert_eq(p.ops[3].value, 20, "CREATE ROLE carries the connection limit");
  cr_assert_str_eq(p.ops[5].database, "tenants");
  cr_assert_str_eq(p.ops[6].database, "tenants");
}

Test(dbplan_plan, shared_second_tenant_on_a_prepared_server) {
  struct tn_db_desired d = desired(TN_ISOLATION_SHARED, TN_STATE_ACTIVE, -1);
  struct tn_db_observed o = {.admin_superuser = true, .shared_db = {.exists = true}};
  struct tn_db_plan p = plan(&d, &o);
  enum tn_db_op_kind want[] = {OP(CREATE_ROLE), OP(SET_PASSWORD), OP(CREATE_SCHEMA), OP(GRANT_CONNECT),
                               OP(SET_LOGIN)};
  assert_plan(&p, want, 5, "shared active, shared database ready");
  cr_assert_eq(p.ops[0].value, -1);
}

Test(dbplan_plan, shared_suspended_and_archived_from_nothing) {
  struct tn_db_desired d = desired(TN_ISOLATION_SHARED, TN_STATE_SUSPENDED, 5);
  struct tn_db_observed o = {.admin_superuser = true, .shared_db = {.exists = true}};
  struct tn_db_plan p = plan(&d, &o);
  enum tn_db_op_kind want[] = {OP(CREATE_ROLE), OP(SET_PASSWORD), OP(CREATE_SCHEMA), OP(GRANT_CONNECT)};
  assert_plan(&p, want, 4, "shared suspended: everything but LOGIN");

  d = desired(TN_ISOLATION_SHARED, TN_STATE_ARCHIVED, 5);
  p = plan(&d, &o);
  assert_plan(&p, NULL, 0, "archived before it had a role: nothing is created");
}

Test(dbplan_plan, dedicated_and_hybrid_active_from_nothing) {
  for (int m = TN_ISOLATION_DEDICATED; m <= TN_ISOLATION_HYBRID; m++) {
    struct tn_db_desired d = desired((enum tn_isolation)m, TN_STATE_ACTIVE, 3);
    struct tn_db_observed o = {.admin_superuser = true, .shared_db = {.exists = true}};
    struct tn_db_plan p = plan(&d, &o);
    enum tn_db_op_kind want[] = {OP(CREATE_ROLE),
                                 OP(SET_PASSWORD),
                                 OP(CREATE_DATABASE),
                                 OP(REVOKE_DATABASE_PUBLIC),
                                 OP(TERMINATE_FOREIGN_SESSIONS),
                                 OP(SET_LOGIN)};
    assert_plan(&p, want, 6, tn_isolation_name((enum tn_isolation)m));
    cr_assert_str_eq(p.ops[2].database, "tn_acme");
    cr_assert(p.ops[2].with_owner, "the tenant's database is owned by its role");
    cr_assert_not(tn_db_op_is_transactional(p.ops[2].kind));
  }
}

Test(dbplan_plan, dedicated_suspended_from_nothing_and_non_superuser_admin) {
  struct tn_db_desired d = desired(TN_ISOLATION_DEDICATED, TN_STATE_SUSPENDED, 3);
  struct tn_db_observed o = {.admin_superuser = false};
  struct tn_db_plan p = plan(&d, &o);
  enum tn_db_op_kind want[] = {
      OP(CREATE_ROLE),     OP(GRANT_ROLE_TO_ADMIN),    OP(SET_PASSWORD),
      OP(CREATE_DATABASE), OP(REVOKE_DATABASE_PUBLIC), OP(TERMINATE_FOREIGN_SESSIONS)};
  assert_plan(&p, want, 6,
              "dedicated suspended, admin not superuser: membership before CREATE DATABASE OWNER");
}

Test(dbplan_plan, suspend_resume_archive) {
  for (int m = 0; m < TN_ISOLATION_COUNT; m++) {
    const char *mode = tn_isolation_name((enum tn_isolation)m);
    const char *db = m == TN_ISOLATION_SHARED ? "tenants" : "tn_acme";
    /* Active and converged, two sessions open -> Suspended. */
    struct tn_db_desired active = desired((enum tn_isolation)m, TN_STATE_ACTIVE, 10);
    struct tn_db_observed o = converged(&active);
    o.role_sessions = 2;
    struct tn_db_desired susp = desired((enum tn_isolation)m, TN_STATE_SUSPENDED, 10);
    struct tn_db_plan p = plan(&susp, &o);
    enum tn_db_op_kind want_susp[] = {OP(SET_NOLOGIN), OP(TERMINATE_ROLE_SESSIONS)};
    assert_plan(&p, want_susp, 2, mode);
    /* Suspended with a session that slipped in: terminate again, nothing else. */
    o = converged(&susp);
    o.role_sessions = 1;
    p = plan(&susp, &o);
    enum tn_db_op_kind want_again[] = {OP(TERMINATE_ROLE_SESSIONS)};
    assert_plan(&p, want_again, 1, mode);
    /* Resume. */
    o = converged(&susp);
    p = plan(&active, &o);
    enum tn_db_op_kind want_resume[] = {OP(SET_LOGIN)};
    assert_plan(&p, want_resume, 1, mode);
    /* Archive from Active with a session. */
    o = converged(&active);
    o.role_sessions = 1;
    struct tn_db_desired arch = desired((enum tn_isolation)m, TN_STATE_ARCHIVED, 10);
    p = plan(&arch, &o);
    enum tn_db_op_kind want_arch[] = {OP(CLEAR_PASSWORD), OP(REVOKE_CONNECT), OP(TERMINATE_FOREIGN_SESSIONS),
                                      OP(SET_NOLOGIN), OP(TERMINATE_ROLE_SESSIONS)};
    assert_plan(&p, want_arch, 5, mode);
    cr_assert_str_eq(p.ops[1].database, db);
  }
}

Test(dbplan_plan, drift_is_repaired_one_operation_each) {
  struct tn_db_desired d = desired(TN_ISOLATION_SHARED, TN_STATE_ACTIVE, 20);
  struct tn_db_observed o = converged(&d);
  o.password = TN_DB_PASSWORD_DIFFERS;
  struct tn_db_plan p = plan(&d, &o);
  enum tn_db_op_kind pw[] = {OP(SET_PASSWORD)};
  assert_plan(&p, pw, 1, "password differs (rotation, or a crash before the role was altered)");

  o = converged(&d);
  o.password = TN_DB_PASSWORD_UNKNOWN;
  p = plan(&d, &o);
  assert_plan(&p, pw, 1, "password unknown: set again");

  o = converged(&d);
  o.role_connection_limit = 5;
  p = plan(&d, &o);
  enum tn_db_op_kind lim[] = {OP(SET_CONNECTION_LIMIT)};
  assert_plan(&p, lim, 1, "plan quota changed");
  cr_assert_eq(p.ops[0].value, 20);

  o = converged(&d);
  o.role_privileged = true;
  p = plan(&d, &o);
  enum tn_db_op_kind priv[] = {OP(RESET_ROLE_ATTRIBUTES)};
  assert_plan(&p, priv, 1, "someone made the role a superuser");

  o = converged(&d);
  o.public_schema_open = true;
  o.shared_db.public_access = true;
  p = plan(&d, &o);
  enum tn_db_op_kind pub[] = {OP(REVOKE_DATABASE_PUBLIC), OP(REVOKE_PUBLIC_SCHEMA),
                              OP(TERMINATE_FOREIGN_SESSIONS)};
  assert_plan(&p, pub, 3, "PUBLIC granted back by hand");

  o = converged(&d);
  o.shared_db.foreign_sessions = 1;
  p = plan(&d, &o);
  enum tn_db_op_kind foreign[] = {OP(TERMINATE_FOREIGN_SESSIONS)};
  assert_plan(&p, foreign, 1, "a session without CONNECT");

  o = converged(&d);
  o.schema_exists = false;
  p = plan(&d, &o);
  enum tn_db_op_kind schema[] = {OP(CREATE_SCHEMA)};
  assert_plan(&p, schema, 1, "schema dropped by hand");

  struct tn_db_desired dd = desired(TN_ISOLATION_DEDICATED, TN_STATE_ACTIVE, 20);
  o = converged(&dd);
  o.tenant_db.role_connect = false;
  p = plan(&dd, &o);
  enum tn_db_op_kind grant[] = {OP(GRANT_CONNECT)};
  assert_plan(&p, grant, 1, "owner's CONNECT revoked by hand");
}

Test(dbplan_plan, names_taken_by_others_are_conflicts_before_any_change) {
  struct tn_db_desired d = desired(TN_ISOLATION_SHARED, TN_STATE_ACTIVE, 20);
  struct tn_db_observed o = {.admin_superuser = true, .role_exists = true, .role_managed = false};
  struct tn_db_plan p;
  struct tn_error err = {0};
  cr_assert_eq(tn_db_plan_converge(&d, &o, &p, &err), TN_EEXISTS);
  cr_assert_eq(p.n, 0);
  cr_assert(strstr(err.message, "role tn_acme already exists and is not managed by tenancy-operator"), "%s",
            err.message);

  o = converged(&d);
  o.schema_owned = false;
  cr_assert_eq(tn_db_plan_converge(&d, &o, &p, &err), TN_EEXISTS);
  cr_assert(strstr(err.message, "schema tn_acme already exists in database tenants"), "%s", err.message);

  struct tn_db_desired dd = desired(TN_ISOLATION_HYBRID, TN_STATE_ACTIVE, 20);
  o = (struct tn_db_observed){.admin_superuser = true, .tenant_db = {.exists = true, .owned = false}};
  cr_assert_eq(tn_db_plan_converge(&dd, &o, &p, &err), TN_EEXISTS);
  cr_assert(strstr(err.message, "database tn_acme already exists and is not owned by role tn_acme"), "%s",
            err.message);
  cr_assert_eq(p.n, 0, "nothing is created when a name is taken");
}

Test(dbplan_teardown, everything_in_order_and_idempotent) {
  struct tn_db_names n;
  cr_assert_eq(tn_db_names_for("acme", TN_ISOLATION_DEDICATED, NULL, &n, NULL), 0);
  struct tn_db_observed o = {.admin_superuser = true,
                             .role_exists = true,
                             .role_managed = true,
                             .role_login = true,
                             .tenant_db = {.exists = true, .owned = true},
                             .shared_db = {.exists = true},
                             .schema_exists = true,
                             .schema_owned = true,
                             .n_owning_databases = 3};
  strcpy(o.owning_databases[0], "");
  strcpy(o.owning_databases[1], "tenants");
  strcpy(o.owning_databases[2], "tn_acme");
  struct tn_db_plan p;
  bool foreign = true;
  tn_db_plan_teardown(&n, &o, &p, &foreign);
  enum tn_db_op_kind want[] = {OP(SET_NOLOGIN),   OP(TERMINATE_ROLE_SESSIONS),
                               OP(DROP_DATABASE), OP(DROP_SCHEMA),
                               OP(DROP_OWNED),    OP(DROP_OWNED),
                               OP(DROP_ROLE)};
  assert_plan(&p, want, 7, "teardown of a tenant that had both forms");
  cr_assert_not(foreign);
  cr_assert_str_eq(p.ops[2].database, "tn_acme");
  cr_assert_str_eq(p.ops[3].database, "tenants");
  cr_assert_str_eq(p.ops[4].database, "", "shared-object privileges: DROP OWNED in the admin's database");
  cr_assert_str_eq(p.ops[5].database, "tenants");

  struct tn_db_observed gone = {.admin_superuser = true, .shared_db = {.exists = true}};
  tn_db_plan_teardown(&n, &gone, &p, &foreign);
  assert_plan(&p, NULL, 0, "already gone");
  cr_assert_not(foreign);
}

Test(dbplan_teardown, leaves_what_is_not_ours) {
  struct tn_db_names n;
  cr_assert_eq(tn_db_names_for("acme", TN_ISOLATION_SHARED, NULL, &n, NULL), 0);
  struct tn_db_observed o = {.admin_superuser = true,
                             .role_exists = true,
                             .role_managed = false,
                             .tenant_db = {.exists = true, .owned = true},
                             .shared_db = {.exists = true},
                             .schema_exists = true,
                             .schema_owned = true};
  struct tn_db_plan p;
  bool foreign = false;
  tn_db_plan_teardown(&n, &o, &p, &foreign);
  assert_plan(&p, NULL, 0, "a role without our marker and what it owns are left alone");
  cr_assert(foreign);

  o.role_managed = true;
  o.admin_superuser = false;
  o.tenant_db.owned = false; /* a database with the tenant's name that someone else owns */
  tn_db_plan_teardown(&n, &o, &p, &foreign);
  enum tn_db_op_kind want[] = {OP(GRANT_ROLE_TO_ADMIN), OP(DROP_SCHEMA), OP(DROP_ROLE)};
  assert_plan(&p, want, 3, "not superuser: membership first; someone else's database kept");
  cr_assert(foreign);
}

/* ---- SCRAM ------------------------------------------------------------------------------------ */

/* Produced by PostgreSQL 15.18 (ALTER ROLE ... PASSWORD '<password>'; SELECT rolpassword ...). */
static const struct {
  const char *password, *verifier;
} PG_VERIFIERS[] = {
    {"hello-world",
     "SCRAM-SHA-256$4096:hHbWlaur3hh7ujKyerkTIA==$kz00s7YkB0GmMyzhcjWwe+5nj9Wiv5M3+rnCp5e6IW8=:"
     "APEPuHHGZDDrK2asDSgUsRFQhJK7SIKmSK3hIXBCuqI="},
    {"p@ss:w/rd?#%&=+ \"quoted\" 'single'",
     "SCRAM-SHA-256$4096:9QwCklf7XlxDnZK9DqdeXw==$bpMXwLAg196sgn37+cg/wJJ4cZqKm/bNvAln2y8byNQ=:"
     "Zs6nid+S3hB+e6YbT2EDai2rkONw7WmpE0jEXbdT+jU="},
    {"Zm9vYmFyYmF6cXV4LXF1dXotY29ycmVjdC1ob3JzZS0",
     "SCRAM-SHA-256$4096:x3LWlIOyRu29o7V8LKKdlQ==$Jp9xFN9iq4IJVF+/ICVraV01sZXCvf2wJvGX1VeLR5I=:"
     "F1CPpeDewZ7h+1jcoXbnmyjie/+VFjNdhON1XxhoXqQ="},
};

Test(dbplan_scram, verifiers_made_by_postgresql_match_their_password_only) {
  size_t n = sizeof PG_VERIFIERS / sizeof PG_VERIFIERS[0];
  for (size_t i = 0; i < n; i++) {
    cr_assert(tn_scram_verifier_matches(PG_VERIFIERS[i].verifier, PG_VERIFIERS[i].password), "%zu", i);
    for (size_t j = 0; j < n; j++)
      if (j != i)
        cr_assert_not(tn_scram_verifier_matches(PG_VERIFIERS[i].verifier, PG_VERIFIERS[j].password),
                      "%zu/%zu", i, j);
  }
  cr_assert_not(tn_scram_verifier_matches(PG_VERIFIERS[0].verifier, "hello-worlD"));
  cr_assert_not(tn_scram_verifier_matches(PG_VERIFIERS[0].verifier, "hello-world "));
}

Test(dbplan_scram, malformed_or_other_mechanisms_never_match) {
  const char *pw = "hello-world";
  const char *good = PG_VERIFIERS[0].verifier;
  cr_assert_not(tn_scram_verifier_matches(NULL, pw));
  cr_assert_not(tn_scram_verifier_matches(good, NULL));
  cr_assert_not(tn_scram_verifier_matches("", pw));
  cr_assert_not(tn_scram_verifier_matches("md5a3556571e93b0d20722ba62be61e8c2d", pw), "md5 verifiers differ");
  /* One character of the StoredKey, then of the ServerKey, changed. */
  char *t = strdup(good);
  char *stored = strchr(strchr(t, '$') + 1, '$') + 1;
  stored[0] = stored[0] == 'A' ? 'B' : 'A';
  cr_assert_not(tn_scram_verifier_matches(t, pw), "StoredKey tampered");
  strcpy(t, good);
  char *server = strrchr(t, ':') + 1;
  server[0] = server[0] == 'A' ? 'B' : 'A';
  cr_assert_not(tn_scram_verifier_matches(t, pw), "ServerKey tampered");
  free(t);
  const char *bad[] = {
      "SCRAM-SHA-256$4096:hHbWlaur3hh7ujKyerkTIA==",
      "SCRAM-SHA-256$4096:hHbWlaur3hh7ujKyerkTIA==$kz00s7YkB0GmMyzhcjWwe+5nj9Wiv5M3+rnCp5e6IW8=",
      "SCRAM-SHA-256$0:hHbWlaur3hh7ujKyerkTIA==$kz00s7YkB0GmMyzhcjWwe+5nj9Wiv5M3+rnCp5e6IW8=:"
      "APEPuHHGZDDrK2asDSgUsRFQhJK7SIKmSK3hIXBCuqI=",
      "SCRAM-SHA-256$99999999:hHbWlaur3hh7ujKyerkTIA==$kz00s7YkB0GmMyzhcjWwe+5nj9Wiv5M3+rnCp5e6IW8=:"
      "APEPuHHGZDDrK2asDSgUsRFQhJK7SIKmSK3hIXBCuqI=",
      "SCRAM-SHA-256$-1:hHbWlaur3hh7ujKyerkTIA==$kz00s7YkB0GmMyzhcjWwe+5nj9Wiv5M3+rnCp5e6IW8=:"
      "APEPuHHGZDDrK2asDSgUsRFQhJK7SIKmSK3hIXBCuqI=",
      "SCRAM-SHA-256$4096:$kz00s7YkB0GmMyzhcjWwe+5nj9Wiv5M3+rnCp5e6IW8=:"
      "APEPuHHGZDDrK2asDSgUsRFQhJK7SIKmSK3hIXBCuqI=",
      "SCRAM-SHA-256$4096:hHbWlaur3hh7ujKyerkTIA==$kz00s7Yk:APEPuHHGZDDrK2asDSgUsRFQhJK7SIKmSK3hIXBCuqI=",
      "SCRAM-SHA-256$4096:hHbWlaur3hh7ujKyerkTIA==$kz00s7YkB0GmMyzhcjWwe+5nj9Wiv5M3+rnCp5e6IW8=:!!!!",
      "SCRAM-SHA-1$4096:hHbWlaur3hh7ujKyerkTIA==$kz00s7YkB0GmMyzhcjWwe+5nj9Wiv5M3+rnCp5e6IW8=:"
      "APEPuHHGZDDrK2asDSgUsRFQhJK7SIKmSK3hIXBCuqI=",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_not(tn_scram_verifier_matches(bad[i], pw), "%s", bad[i]);
}

Test(dbplan_scram, passwords_outside_printable_ascii_are_refused) {
  cr_assert(tn_db_password_valid("abc"));
  cr_assert(tn_db_password_valid("p@ss:w/rd?#%&=+ \"quoted\" 'single'"));
  cr_assert_not(tn_db_password_valid(""));
  cr_assert_not(tn_db_password_valid(NULL));
  cr_assert_not(tn_db_password_valid("tab\there"));
  cr_assert_not(tn_db_password_valid("new\nline"));
  cr_assert_not(tn_db_password_valid("caf\xc3\xa9"));
  char longpw[TN_DB_PASSWORD_MAX + 2];
  memset(longpw, 'x', sizeof longpw - 1);
  longpw[sizeof longpw - 1] = '\0';
  cr_assert_not(tn_db_password_valid(longpw));
  longpw[TN_DB_PASSWORD_MAX] = '\0';
  cr_assert(tn_db_password_valid(longpw));
  cr_assert_not(tn_scram_verifier_matches(PG_VERIFIERS[0].verifier, "caf\xc3\xa9"));
}

/* ---- URI -------------------------------------------------------------------------------------- */

static const char *opt(PQconninfoOption *opts, const char *key) {
  for (PQconninfoOption *o = opts; o->keyword; o++)
    if (strcmp(o->keyword, key) == 0)
      return o->val;
  return NULL;
}

Test(dbplan_uri, hostile_characters_round_trip_through_libpq) {
  const char *pw = "p@ss:w/rd?#%&=+ \"quoted\" 'single' \\ ~;";
  char *uri = tn_db_uri("tn_acme", pw, "db1.eu.internal", 5432, "tenants", "verify-full");
  cr_assert_not_null(uri);
  cr_assert_str_eq(uri,
                   "postgresql://tn_acme:p%40ss%3Aw%2Frd%3F%23%25%26%3D%2B%20%22quoted%22%20%27single%27%20"
                   "%5C%20~%3B@db1.eu.internal:5432/tenants?sslmode=verify-full");
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(uri, &perr);
  cr_assert_not_null(opts, "%s", perr ? perr : "");
  cr_assert_str_eq(opt(opts, "user"), "tn_acme");
  cr_assert_str_eq(opt(opts, "password"), pw);
  cr_assert_str_eq(opt(opts, "host"), "db1.eu.internal");
  cr_assert_str_eq(opt(opts, "port"), "5432");
  cr_assert_str_eq(opt(opts, "dbname"), "tenants");
  cr_assert_str_eq(opt(opts, "sslmode"), "verify-full");
  PQconninfoFree(opts);
  free(uri);
}

Test(dbplan_uri, ipv6_in_brackets_and_bad_input) {
  char *uri = tn_db_uri("tn_a", "x", "::1", 6543, "tn_a", "require");
  cr_assert_str_eq(uri, "postgresql://tn_a:x@[::1]:6543/tn_a?sslmode=require");
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(uri, &perr);
  cr_assert_not_null(opts);
  cr_assert_str_eq(opt(opts, "host"), "::1");
  PQconninfoFree(opts);
  free(uri);
  cr_assert_null(tn_db_uri("tn_a", "x", "::1]/evil", 5432, "tn_a", "require"));
  cr_assert_null(tn_db_uri("tn_a", "x", "", 5432, "tn_a", "require"));
  cr_assert_null(tn_db_uri("tn_a", "x", "h", 0, "tn_a", "require"));
  cr_assert_null(tn_db_uri(NULL, "x", "h", 5432, "tn_a", "require"));
  /* A host with URI delimiters is encoded, so it cannot move the password or the database. */
  uri = tn_db_uri("tn_a", "x", "evil@host/db?x", 5432, "tn_a", "require");
  cr_assert_str_eq(uri, "postgresql://tn_a:x@evil%40host%2Fdb%3Fx:5432/tn_a?sslmode=require");
  free(uri);
}
