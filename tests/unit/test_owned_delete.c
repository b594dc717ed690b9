/* test_owned_delete.c - unit tests of the check a delete makes on the object a GET returned when
 * the cache keeps no uid (converge/owned_delete.c): only the tenant's own object, as labelled and
 * owned when the diff decided, is deleted. No network. */
#include <criterion/criterion.h>
#include <jansson.h>

#include "converge/owned_delete.h"

#define TENANT_UID "0f6a3a52-3c1e-4f55-9d43-1b8b3bdf6a10"

static json_t *object(const char *labels, const char *owner_uid, const char *extra_meta) {
  char text[2048];
  snprintf(text, sizeof text,
           "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"acme-dev\","
           "\"uid\":\"6c1d1b7e-8a55-4b0e-9a43-7f2b1e0c9d11\",\"labels\":{%s},"
           "\"ownerReferences\":[{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\","
           "\"name\":\"acme\",\"uid\":\"%s\",\"controller\":true}]%s}}",
           labels, owner_uid, extra_meta ? extra_meta : "");
  json_error_t e;
  json_t *v = json_loads(text, 0, &e);
  cr_assert_not_null(v, "%s: %s", e.text, text);
  return v;
}

#define OURS "\"tenancy.dev/tenant\":\"acme\",\"app.kubernetes.io/managed-by\":\"tenancy-operator\""

Test(owned_delete, the_tenants_own_object_is_deleted) {
  json_t *o = object(OURS, TENANT_UID, NULL);
  cr_expect(tn_owned_delete_still_ours(o, "acme", TENANT_UID));
  json_decref(o);
}

Test(owned_delete, an_object_of_another_tenant_or_owner_is_not) {
  json_t *o = object(OURS, "11111111-2222-3333-4444-555555555555", NULL);
  cr_expect_not(tn_owned_delete_still_ours(o, "acme", TENANT_UID),
                "owned by another Tenant (same name, new uid)");
  json_decref(o);
  o = object("\"tenancy.dev/tenant\":\"other\",\"app.kubernetes.io/managed-by\":\"tenancy-operator\"",
             TENANT_UID, NULL);
  cr_expect_not(tn_owned_delete_still_ours(o, "acme", TENANT_UID), "labelled for another tenant");
  json_decref(o);
  o = object("\"tenancy.dev/tenant\":\"acme\"", TENANT_UID, NULL);
  cr_expect_not(tn_owned_delete_still_ours(o, "acme", TENANT_UID), "not managed by the operator");
  json_decref(o);
  o = object(OURS, TENANT_UID, NULL);
  cr_expect_not(tn_owned_delete_still_ours(o, "acme", NULL), "no tenant uid: nothing is ours");
  cr_expect_not(tn_owned_delete_still_ours(o, NULL, TENANT_UID), "no tenant: nothing is ours");
  json_decref(o);
}

Test(owned_delete, an_object_being_deleted_or_without_uid_is_not) {
  json_t *o = object(OURS, TENANT_UID, ",\"deletionTimestamp\":\"2026-12-07T19:00:00Z\"");
  cr_expect_not(tn_owned_delete_still_ours(o, "acme", TENANT_UID), "already going");
  json_decref(o);
  o = object(OURS, TENANT_UID, NULL);
  json_object_del(json_object_get(o, "metadata"), "uid");
  cr_expect_not(tn_owned_delete_still_ours(o, "acme", TENANT_UID),
                "no uid to make the delete conditional on");
  json_decref(o);
}
