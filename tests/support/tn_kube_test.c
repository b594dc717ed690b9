/* tn_kube_test.c - throw-away namespaces for the client-level suites (see tn_kube_test.h). */
#include "tn_kube_test.h"

#include <criterion/criterion.h>
#include <jansson.h>

#include "kube/client.h"
#include "tn_test.h"

static const struct tn_gvr namespaces = {"", "v1", "namespaces", false};

void tn_test_ns_create(struct tn_kube *k, char *ns, size_t n, const char *prefix) {
  tn_test_unique_name(ns, n, prefix);
  json_t *obj =
      json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace", "metadata", "name", ns);
  struct tn_error err;
  cr_assert_eq(tn_kube_create(k, &namespaces, NULL, obj, NULL, &err), 0, "create namespace: %s", err.message);
  json_decref(obj);
}

void tn_test_ns_delete(struct tn_kube *k, const char *ns) {
  struct tn_error err;
  int rc = tn_kube_delete(k, &namespaces, NULL, ns, NULL, &err);
  cr_assert(rc == 0 || rc == TN_ENOTFOUND, "delete namespace %s: %s", ns, err.message);
}
