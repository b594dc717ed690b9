/* tn_operator.h - test helpers to run the real tenancy-operator binary against the local
 * cluster: start it with flags on free ports, scrape its endpoints, stop it with a signal. */
#ifndef TN_OPERATOR_TEST_H
#define TN_OPERATOR_TEST_H

#include <stdbool.h>
#include <sys/types.h>

struct tn_test_operator {
  pid_t pid;
  int metrics_port;
  int probe_port;
  char log_path[256];
};

/* A TCP port free on 127.0.0.1 right now. */
int tn_test_free_port(void);

/* Starts $TENANCY_OPERATOR_BIN with --metrics-bind-address/--health-probe-bind-address on free
 * ports, --log-level=debug, and the extra flags (NULL-terminated). Output goes to a log file
 * under build/test-logs. Fails the test when it cannot start. */
void tn_test_operator_start(struct tn_test_operator *op, const char *const *extra_args);
/* The same, run as uid/gid (no supplementary groups) when uid is not (uid_t)-1: the log file is
 * opened before the identity is dropped. */
void tn_test_operator_start_as(struct tn_test_operator *op, uid_t uid, gid_t gid,
                               const char *const *extra_args);
/* tn_test_operator_start, then waits up to 60 s for /readyz; fails the test with the operator's log
 * when it never becomes ready. */
void tn_test_operator_start_ready(struct tn_test_operator *op, const char *const *extra_args);
/* Sends sig and waits up to timeout_s for the exit; returns the exit status (as from a shell:
 * 128+signal when killed), or -1 on timeout (then it is SIGKILLed). */
int tn_test_operator_stop(struct tn_test_operator *op, int sig, double timeout_s);
/* GET http://127.0.0.1:port/path; returns the HTTP status (0 when unreachable); *body malloc'd. */
int tn_test_http_get(int port, const char *path, char **body);
/* The value of one sample line of /metrics whose text starts with `prefix` (e.g.
 * `rest_client_requests_total{code="201",method="POST"}`), summed over every line starting so;
 * 0 when absent. */
double tn_test_metric_sum(int port, const char *prefix);
/* Waits until /readyz answers 200. */
bool tn_test_operator_wait_ready(struct tn_test_operator *op, double timeout_s);
/* Prints the operator's log tail (for failed assertions). */
void tn_test_operator_dump_log(struct tn_test_operator *op);

/* Installs the CRDs, the tenant ClusterRoles, the actor admission policies (who changed a
 * Tenant's spec, for the audit trail), and the sample Plans and Regions (idempotent). */
void tn_test_install_api(void);

#endif
