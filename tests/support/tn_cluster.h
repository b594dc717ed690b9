/* tn_cluster.h - helpers the integration suites share for driving the local stack through
 * kubectl and psql: a command that must succeed, polling a shell condition, waiting for a
 * Tenant condition, a Region on the stack's PostgreSQL, psql as a tenant or as the server's
 * administrator. Every failure fails the current test with the command's output, the tenant's
 * status and the operator's log where they are given. */
#ifndef TN_CLUSTER_TEST_H
#define TN_CLUSTER_TEST_H

#include "tn_operator.h"

/* Runs `sh -c CMD` (printf-formatted; trusted strings only); fails the test with its output (and
 * op's log when op is not NULL) when it exits non-zero. */
void tn_test_sh_ok(struct tn_test_operator *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Polls `sh -c CMD` every 200 ms until it exits 0. When it does not within timeout_s, fails the
 * test naming what, with tenant's status (when tenant is not NULL), the command's last output
 * and op's log (when op is not NULL). */
void tn_test_wait_for(struct tn_test_operator *op, const char *tenant, double timeout_s, const char *what,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Waits until Tenant t's condition `type` has status `status` ("True", "False", "Unknown"). */
void tn_test_wait_condition(struct tn_test_operator *op, const char *t, const char *type, const char *status,
                            double timeout_s);

/* Waits until `kubectl get WHAT -o jsonpath=JSONPATH` prints want (what: e.g. "tenant acme" or
 * "plan gold"); fails the test with the last value, the object's status and op's log. */
void tn_test_wait_jsonpath(struct tn_test_operator *op, const char *what, const char *jsonpath,
                           const char *want, double timeout_s);

/* kubectl apply of a JSON document (printf-formatted; it must hold no single quote); fails the
 * test with kubectl's output (and op's log) when refused. */
void tn_test_apply_json(struct tn_test_operator *op, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Creates (idempotently) namespace tenancy-system with Secrets pg-admin-<name> (uri: the stack's
 * superuser DSN) and pg-ca-<name> (ca.crt: the stack's CA), and applies Region <name>: available,
 * every isolation mode, one database server called `server` on the stack's PostgreSQL with
 * sslMode verify-full that serves every mode. */
void tn_test_apply_region(const char *name, const char *server);

/* psql as tenant t, with the uri of the Secret tenant-database in <t>-prod (plus the stack's CA
 * file, as an application mounting ca.crt would), ON_ERROR_STOP, quiet, tuples only, unaligned.
 * Returns psql's exit code; *out (may be NULL) gets its output, stderr included. */
int tn_test_psql_as(const char *t, const char *sql, char **out);

/* The same as the server's administrator ($TENANCY_PG_DSN), in database db (NULL: the DSN's). */
int tn_test_psql_admin(const char *db, const char *sql, char **out);

#endif
