/* tn_http_test.h - helpers of the suites that call the operator's HTTPS read API as a client
 * would: a self-signed serving certificate, GET with a bearer token over one kept-alive
 * connection, RFC 9457 problem checks, the tokens of ServiceAccounts and of the stack's static
 * users, and Tenants created and deleted through our own Kubernetes client. Failures fail the
 * current test. The GET helpers keep one connection per process: call them from one thread. */
#ifndef TN_HTTP_TEST_H
#define TN_HTTP_TEST_H

#include <jansson.h>

#include "util/buf.h"

struct tn_kube;

/* The stack's Kubernetes client (KUBECONFIG, no client-side rate limit), made on first use and
 * kept for the process. Make it before starting threads that use it. */
struct tn_kube *tn_test_kube(void);

/* Writes dir/tls.crt and dir/tls.key: a self-signed P-256 certificate for IP 127.0.0.1 (dir is
 * created). */
void tn_test_https_self_signed(const char *dir);

/* Where tn_test_https_get goes: https://127.0.0.1:port, trusting only the certificate in cafile. */
void tn_test_https_target(int port, const char *cafile);

struct tn_test_resp {
  long status;
  struct tn_buf body; /* NUL-terminated */
  struct tn_buf headers;
  json_t *json; /* the body parsed, NULL when it is not JSON */
};

/* GET path (already escaped) with token (NULL: no Authorization). tn_test_resp_free the answer. */
struct tn_test_resp tn_test_https_get(const char *path, const char *token);
void tn_test_resp_free(struct tn_test_resp *r);
/* The value of header name in r (a static buffer), or NULL. */
const char *tn_test_resp_header(const struct tn_test_resp *r, const char *name);
/* Polls GET path with token until it answers want (30 s at most). */
void tn_test_https_wait_status(const char *path, const char *token, long want);
/* Asserts r is an application/problem+json answer with this status, title, type and detail. */
void tn_test_expect_problem(const struct tn_test_resp *r, long status, const char *what);

/* A token of ServiceAccount sa in namespace ns (created when missing; TokenRequest, 1 h). malloc'd. */
char *tn_test_sa_token(const char *ns, const char *sa);
/* The stack's static token of user readapi-<who> (group readapi-team-<who>,
 * $TENANCY_TEST_TOKENS_FILE). malloc'd. */
char *tn_test_user_token(const char *who);

/* Creates a Draft Tenant (plan starter, shared, eu-west-1 or us-east-1, environment prod) with
 * label label=value, and extra_spec (may be NULL: members appended to spec, e.g.
 * "\"displayName\":\"x\""). */
void tn_test_create_labelled_tenant(const char *name, const char *label, const char *value,
                                    const char *extra_spec);
/* Deletes every Tenant with label label=value (one collection DELETE; errors ignored). */
void tn_test_delete_labelled_tenants(const char *label, const char *value);

#endif
