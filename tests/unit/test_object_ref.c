/* test_object_ref.c - tn_object_ref_from (runtime/events.h): an Event's regarding built from an
 * object's apiVersion and metadata, as the reconciler and the database step use it. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "runtime/events.h"

Test(object_ref, takes_api_version_and_metadata_and_the_given_kind) {
  json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}}", "apiVersion", "tenancy.dev/v1alpha1", "kind",
                        "Tenant", "metadata", "name", "acme", "uid", "u-1", "resourceVersion", "42");
  struct tn_object_ref r = tn_object_ref_from(o, "Tenant");
  cr_assert_str_eq(r.api_version, "tenancy.dev/v1alpha1");
  cr_assert_str_eq(r.kind, "Tenant");
  cr_assert_str_eq(r.name, "acme");
  cr_assert_str_eq(r.uid, "u-1");
  cr_assert_str_eq(r.resource_version, "42");
  cr_assert_null(r.namespace, "a cluster-scoped object has no namespace");
  /* the strings are the object's own (borrowed, no copy) */
  cr_assert_eq(r.name, json_string_value(json_object_get(json_object_get(o, "metadata"), "name")));
  json_decref(o);
}

Test(object_ref, namespaced_object_and_kind_from_the_object) {
  json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion", "v1", "kind", "Secret", "metadata", "name",
                        "tenant-database", "namespace", "acme-prod");
  struct tn_object_ref r = tn_object_ref_from(o, NULL);
  cr_assert_str_eq(r.kind, "Secret");
  cr_assert_str_eq(r.namespace, "acme-prod");
  cr_assert_null(r.uid);
  cr_assert_null(r.resource_version);
  json_decref(o);
}

Test(object_ref, nothing_for_null_or_a_bare_object) {
  struct tn_object_ref r = tn_object_ref_from(NULL, "Tenant");
  cr_assert_str_eq(r.kind, "Tenant");
  cr_assert_null(r.name);
  cr_assert_null(r.api_version);
  json_t *o = json_object();
  r = tn_object_ref_from(o, NULL);
  cr_assert_null(r.kind);
  cr_assert_null(r.name);
  json_decref(o);
}
