/* tn_kube_test.h - test helpers over our own Kubernetes client: throw-away namespaces. */
#ifndef TN_KUBE_TEST_H
#define TN_KUBE_TEST_H

#include <stddef.h>

struct tn_kube;

/* Creates a namespace named PREFIX-<pid>-<n> (written to ns[n]); fails the test on error. */
void tn_test_ns_create(struct tn_kube *k, char *ns, size_t n, const char *prefix);
/* Deletes it (NotFound is fine); fails the test on any other error. */
void tn_test_ns_delete(struct tn_kube *k, const char *ns);

#endif
