/* test_owned_apply.c - unit tests of the managedFields fold (converge/owned_apply.c): the
 * tenancy-operator Update entry a POST or an earlier PUT left becomes (part of) the manager's
 * Apply entry, so later server-side applies may remove what it set. No network. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>

#include "converge/owned_apply.h"

static json_t *parse(const char *text) {
  json_error_t e;
  json_t *v = json_loads(text, 0, &e);
  cr_assert_not_null(v, "%s: %s", e.text, text);
  return v;
}

static json_t *entries(const json_t *patch) {
  return json_object_get(json_object_get(patch, "metadata"), "managedFields");
}

Test(owned_apply, nothing_to_fold_without_an_update_entry) {
  json_t *obj = parse("{\"metadata\":{\"resourceVersion\":\"7\",\"managedFields\":["
                      "{\"manager\":\"tenancy-operator\",\"operation\":\"Apply\",\"apiVersion\":\"v1\","
                      "\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metadata\":{}}},"
                      "{\"manager\":\"other\",\"operation\":\"Update\",\"apiVersion\":\"v1\"}]}}");
  cr_expect_null(tn_owned_fold_patch(obj));
  json_decref(obj);
  obj = parse("{\"metadata\":{\"resourceVersion\":\"7\"}}");
  cr_expect_null(tn_owned_fold_patch(obj));
  json_decref(obj);
}

Test(owned_apply, a_lone_update_entry_becomes_the_apply_entry) {
  json_t *obj = parse("{\"metadata\":{\"resourceVersion\":\"7\",\"managedFields\":["
                      "{\"manager\":\"tenancy-operator\",\"operation\":\"Update\",\"apiVersion\":\"v1\","
                      "\"time\":\"2026-01-01T00:00:00Z\",\"fieldsType\":\"FieldsV1\","
                      "\"fieldsV1\":{\"f:metadata\":{\"f:labels\":{\"f:a\":{}}}}},"
                      "{\"manager\":\"other\",\"operation\":\"Update\",\"apiVersion\":\"v1\"}]}}");
  json_t *p = tn_owned_fold_patch(obj);
  cr_assert_not_null(p);
  cr_expect_str_eq(json_string_value(json_object_get(json_object_get(p, "metadata"), "resourceVersion")),
                   "7");
  json_t *mf = entries(p);
  cr_assert_eq(json_array_size(mf), 2);
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(mf, 0), "operation")), "Apply");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(mf, 0), "manager")), "tenancy-operator");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(mf, 1), "manager")), "other");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(mf, 1), "operation")), "Update");
  json_decref(p);
  json_decref(obj);
}

Test(owned_apply, an_update_entry_is_merged_into_the_apply_entry) {
  json_t *obj =
      parse("{\"metadata\":{\"resourceVersion\":\"9\",\"managedFields\":["
            "{\"manager\":\"tenancy-operator\",\"operation\":\"Apply\",\"apiVersion\":\"v1\","
            "\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metadata\":{\"f:labels\":{\"f:a\":{}}},"
            "\"f:spec\":{\"f:hard\":{\"f:cpu\":{}}}}},"
            "{\"manager\":\"kube-controller-manager\",\"operation\":\"Update\",\"apiVersion\":\"v1\","
            "\"subresource\":\"status\"},"
            "{\"manager\":\"tenancy-operator\",\"operation\":\"Update\",\"apiVersion\":\"v1\","
            "\"subresource\":\"status\",\"fieldsV1\":{\"f:status\":{}}},"
            "{\"manager\":\"tenancy-operator\",\"operation\":\"Update\",\"apiVersion\":\"v1\","
            "\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metadata\":{\"f:labels\":{\"f:b\":{}}},"
            "\"f:spec\":{\"f:hard\":{\"f:services\":{}}}}}]}}");
  json_t *p = tn_owned_fold_patch(obj);
  cr_assert_not_null(p);
  json_t *mf = entries(p);
  cr_assert_eq(json_array_size(mf), 3, "the main Update entry is gone, the subresource ones stay");
  json_t *want = parse("{\"f:metadata\":{\"f:labels\":{\"f:a\":{},\"f:b\":{}}},"
                       "\"f:spec\":{\"f:hard\":{\"f:cpu\":{},\"f:services\":{}}}}");
  cr_expect(json_equal(json_object_get(json_array_get(mf, 0), "fieldsV1"), want), "union: %s",
            json_dumps(json_object_get(json_array_get(mf, 0), "fieldsV1"), JSON_COMPACT));
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(mf, 2), "subresource")), "status");
  json_decref(want);
  json_decref(p);
  json_decref(obj);
}
