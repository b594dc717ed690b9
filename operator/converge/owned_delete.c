/* owned_delete.c - see owned_delete.h. */
#include "converge/owned_delete.h"

#include <string.h>

#include "tenancy/desired.h"
#include "tenancy/tenant.h"

static const char *meta_str(const json_t *obj, const char *key) {
  return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

static const char *label(const json_t *obj, const char *key) {
  return json_string_value(json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), key));
}

bool tn_owned_delete_still_ours(const json_t *obj, const char *tenant, const char *tenant_uid) {
  const char *t = label(obj, TN_LABEL_TENANT), *by = label(obj, TN_LABEL_MANAGED_BY);
  const char *uid = meta_str(obj, "uid");
  return tenant && t && strcmp(t, tenant) == 0 && by && strcmp(by, TN_MANAGED_BY) == 0 && uid && *uid &&
         tn_owned_by_tenant(obj, tenant_uid) &&
         !json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp");
}

int tn_owned_delete(struct tn_kube *k, const struct tn_gvr *gvr, const json_t *observed, const char *ns,
                    const char *name, const char *tenant, const char *tenant_uid, bool *sent,
                    struct tn_error *err) {
  *sent = false;
  const char *uid = meta_str(observed, "uid");
  json_t *cur = NULL;
  if (!uid || !*uid) {
    /* The cache keeps no uid for this kind: the object as it is now, and only if still ours. */
    int rc = tn_kube_get(k, gvr, ns, name, &cur, err);
    if (rc == TN_ENOTFOUND) {
      *err = (struct tn_error){0};
      return 0;
    }
    if (rc)
      return rc;
    if (!tn_owned_delete_still_ours(cur, tenant, tenant_uid)) {
      json_decref(cur); /* replaced by someone else's, or already going: nothing of ours to delete */
      return 0;
    }
    uid = meta_str(cur, "uid");
  }
  struct tn_delete_opts opts = {.precondition_uid = uid, .propagation_policy = "Background"};
  *sent = true;
  int rc = tn_kube_delete(k, gvr, ns, name, &opts, err);
  json_decref(cur);
  if (rc == TN_ENOTFOUND) {
    *err = (struct tn_error){0};
    rc = 0;
  }
  return rc;
}
