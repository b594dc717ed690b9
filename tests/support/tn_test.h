/* tn_test.h - helpers shared by the Criterion suites: environment of the local cluster and
 * running commands (kubectl, psql) with their output captured. */
#ifndef TN_TEST_H
#define TN_TEST_H

#include <stddef.h>

/* The value of an environment variable that hack/test.sh exports from .local/cluster.env.
 * Fails the current test (it never skips) when it is missing. */
const char *tn_test_env(const char *name);

/* Runs `sh -c CMD` (printf-formatted; pass only trusted strings), capturing stdout and
 * stderr together into *out (malloc'd, NUL-terminated; free() it; may be NULL to discard).
 * Returns the exit status, or -1 when the command could not run. */
int tn_test_sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The output of `sh -c CMD` (printf-formatted, as tn_test_sh) with trailing newlines removed;
 * malloc'd, free() it. Fails the current test when the command cannot run. */
char *tn_test_output(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Like tn_test_sh, retrying every 200 ms until the command exits 0 or timeout_s passes.
 * Returns the last exit status. */
int tn_test_sh_until(double timeout_s, char **out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A name unique to this test process, for objects a test creates: PREFIX-<pid>-<counter>. */
void tn_test_unique_name(char *dst, size_t n, const char *prefix);

/* Stops or starts the local PostgreSQL of the stack ("stop" or "start"), as the postgres user
 * when running as root. Returns pg_ctl's exit code (its output is logged on failure). */
int tn_test_pg_ctl(const char *action);

/* Monotonic seconds. */
double tn_test_now(void);

#endif
