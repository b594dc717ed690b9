/* tn_pg_test.h - helpers of the suites that talk to the stack's PostgreSQL through libpq: a
 * superuser connection, SQL that must succeed or must fail, the stack's DSN as another role, and
 * the throw-away login roles (the audit trail's writer) of the least-privilege tests. Every
 * failure fails the current test with the statement and the server's message. */
#ifndef TN_PG_TEST_H
#define TN_PG_TEST_H

#include <libpq-fe.h>

/* Connects to dsn (NULL: $TENANCY_PG_DSN, the stack's superuser) with client_min_messages =
 * warning; fails the test when it cannot. PQfinish it. */
PGconn *tn_test_pg_connect(const char *dsn);

/* Runs SQL (printf-formatted); returns the result, whatever it is (PQclear it). */
PGresult *tn_test_pg_exec(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Runs SQL that must succeed; returns the first cell (malloc'd, "" when there is none). */
char *tn_test_pg_value(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Runs SQL that must fail; returns the error message (malloc'd). A transaction the failure
 * aborted is rolled back, so c is usable again. */
char *tn_test_pg_error(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The stack's DSN ($TENANCY_PG_DSN) as libpq keyword/value pairs, every value quoted: without the
 * keywords in drop (NULL-terminated; may be NULL); as user/password instead of the stack's when
 * user is not NULL; then extra appended (may be NULL). malloc'd. */
char *tn_test_pg_dsn(const char *user, const char *password, const char *const *drop, const char *extra);

/* tmpl with every @S@ replaced by schema (the test's own, trusted), as the audit trail's SQL
 * templates are written (malloc'd). */
char *tn_test_pg_subst_schema(const char *tmpl, const char *schema);

/* CREATE ROLE role LOGIN PASSWORD 'password' (role and password: the test's own, trusted). */
void tn_test_pg_role_create(PGconn *c, const char *role, const char *password);
/* DROP OWNED BY role, then DROP ROLE IF EXISTS role; failures ignored (clean-up). */
void tn_test_pg_role_drop(PGconn *c, const char *role);

#endif
