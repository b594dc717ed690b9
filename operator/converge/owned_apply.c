/* owned_apply.c - server-side apply of the objects the operator owns (see owned_apply.h). */
#include "converge/owned_apply.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static const char *str(const json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

static bool is_entry(const json_t *e, const char *operation) {
  const char *m = str(e, "manager"), *op = str(e, "operation"), *sub = str(e, "subresource");
  return m && op && strcmp(m, TN_FIELD_MANAGER) == 0 && strcmp(op, operation) == 0 && (!sub || !*sub);
}

/* dst |= src over fieldsV1 trees (objects of "f:", "k:", "v:", "i:" and "." keys). */
static int fields_union(json_t *dst, const json_t *src) {
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)src, k, v) {
    json_t *d = json_object_get(dst, k);
    if (d && json_is_object(d) && json_is_object(v)) {
      if (fields_union(d, v))
        return -ENOMEM;
    } else if (!d && json_object_set_new(dst, k, json_deep_copy(v))) {
      return -ENOMEM;
    }
  }
  return 0;
}

json_t *tn_owned_fold_patch(const json_t *obj) {
  const json_t *meta = json_object_get(obj, "metadata");
  const json_t *mf = json_object_get(meta, "managedFields");
  const char *rv = str(meta, "resourceVersion");
  if (!json_is_array(mf) || !rv)
    return NULL;
  ssize_t upd = -1, app = -1;
  size_t i;
  json_t *e;
  json_array_foreach(mf, i, e) {
    if (upd < 0 && is_entry(e, "Update"))
      upd = (ssize_t)i;
    else if (app < 0 && is_entry(e, "Apply"))
      app = (ssize_t)i;
  }
  if (upd < 0)
    return NULL;
  json_t *list = json_deep_copy(mf);
  if (!list)
    return NULL;
  json_t *u = json_array_get(list, (size_t)upd);
  int rc = 0;
  if (app < 0) {
    rc = json_object_set_new(u, "operation", json_string("Apply"));
  } else {
    json_t *a = json_array_get(list, (size_t)app);
    const char *uv = str(u, "apiVersion"), *av = str(a, "apiVersion");
    json_t *af = json_object_get(a, "fieldsV1"), *uf = json_object_get(u, "fieldsV1");
    /* Entries of another apiVersion are not merged; dropping that Update entry leaves its
     * fields unowned, which an apply never removes but no longer keeps either. */
    if (uv && av && strcmp(uv, av) == 0 && json_is_object(uf)) {
      if (!json_is_object(af))
        rc = json_object_set_new(a, "fieldsV1", json_deep_copy(uf));
      else
        rc = fields_union(af, uf);
    }
    if (!rc)
      rc = json_array_remove(list, (size_t)upd);
  }
  json_t *patch =
      rc ? NULL : json_pack("{s:{s:s, s:O}}", "metadata", "resourceVersion", rv, "managedFields", list);
  json_decref(list);
  return patch;
}

/* Folds obj's Update entry; returns 1 when folded (*rv_out: the new resourceVersion, malloc'd),
 * 0 when there was nothing to fold, or an error. The patch has obj's resourceVersion as
 * precondition: when another writer came between (the quota controller writes a new
 * ResourceQuota's status at once), the object is read again and the fold computed again. */
static int fold(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const json_t *obj, char **rv_out,
                struct tn_error *err) {
  const char *name = str(json_object_get(obj, "metadata"), "name");
  json_t *cur = json_incref((json_t *)obj);
  int rc = 0;
  for (int attempt = 0; attempt < 5 && rc == 0; attempt++) {
    json_t *patch = tn_owned_fold_patch(cur);
    if (!patch)
      break;
    json_t *out = NULL;
    rc = tn_kube_merge_patch(k, gvr, ns, name ? name : "", patch, NULL, &out, err);
    json_decref(patch);
    if (rc == 0) {
      const char *rv = str(json_object_get(out, "metadata"), "resourceVersion");
      *rv_out = rv ? strdup(rv) : NULL;
      rc = *rv_out ? 1 : tn_error_set(err, -ENOMEM, "out of memory");
    }
    json_decref(out);
    if (rc != TN_ECONFLICT)
      break;
    json_decref(cur);
    cur = NULL;
    rc = tn_kube_get(k, gvr, ns, name ? name : "", &cur, err);
  }
  json_decref(cur);
  return rc;
}

int tn_owned_create(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const json_t *body,
                    struct tn_error *err) {
  /* No fold here: the create's Update entry is folded by the object's next apply, which happens
   * only when the desired state changes or the object drifted. Folding at once cost a PATCH per
   * object created (12 per tenant, 2.4x the end-state floor: docs/benchmarks.md). */
  return tn_kube_create(k, gvr, ns, (json_t *)body, NULL, err);
}

static int apply_at(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const json_t *body,
                    const char *rv, json_t **out, struct tn_error *err) {
  json_t *b = json_deep_copy(body);
  if (!b)
    return tn_error_set(err, -ENOMEM, "out of memory");
  json_t *meta = json_object_get(b, "metadata");
  int rc = json_is_object(meta) && rv ? json_object_set_new(meta, "resourceVersion", json_string(rv)) : 0;
  if (!json_is_object(meta) || rc)
    rc = tn_error_set(err, TN_EINVALID, "apply %s: the object has no metadata", gvr->resource);
  else
    rc = tn_kube_apply(k, gvr, ns, b, TN_FIELD_MANAGER, true, NULL, out, err);
  json_decref(b);
  return rc;
}

int tn_owned_apply(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const json_t *body,
                   const char *resource_version, struct tn_error *err) {
  json_t *out = NULL;
  int rc = apply_at(k, gvr, ns, body, resource_version, &out, err);
  if (rc == 0) {
    char *rv = NULL;
    struct tn_error ferr = {0};
    /* A failed fold is not an error: a field only the Update entry keeps still differs from the
     * desired state, so the next reconcile applies, and folds, again. */
    if (fold(k, gvr, ns, out, &rv, &ferr) == 1) { /* what only the Update entry kept goes now */
      rc = apply_at(k, gvr, ns, body, rv, NULL, err);
      if (rc == TN_ECONFLICT)
        rc = 0; /* the desired state is in place; the next reconcile removes the rest */
    }
    free(rv);
  }
  json_decref(out);
  return rc;
}
