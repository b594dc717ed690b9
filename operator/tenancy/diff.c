/* diff.c - desired vs observed objects -> ordered changes (see diff.h). */
#include "tenancy/diff.h"
#include "tenancy/tenant.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {"conflict", "create", "update", "delete"};

const char *tn_change_op_name(enum tn_change_op op) {
  return (unsigned)op < sizeof op_names / sizeof op_names[0] ? op_names[op] : "?";
}

void tn_diff_cleanup(struct tn_diff *d) {
  if (!d)
    return;
  free(d->changes);
  d->changes = NULL;
  d->len = 0;
  d->n_waiting = 0;
}

/* ---- reading observed objects --------------------------------------------------------------- */

static const char *meta_str(const json_t *obj, const char *key) {
  const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
  return s && *s ? s : NULL;
}

static const char *label(const json_t *obj, const char *key) {
  return json_string_value(json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), key));
}

static bool terminating(const json_t *obj) {
  const json_t *ts = json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp");
  return ts && !json_is_null(ts);
}

static bool same_ns(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

/* ---- comparing content ----------------------------------------------------------------------- */

/* Equal JSON, where (with quantities) two strings that are the same Kubernetes quantity are
 * equal: the API server stores quantities in canonical form ("1024Mi" comes back "1Gi"). */
static bool same_value(const json_t *want, const json_t *have, bool quantities) {
  if (!want || !have)
    return want == have;
  if (quantities && json_is_string(want) && json_is_string(have)) {
    int64_t a, b;
    if (strcmp(json_string_value(want), json_string_value(have)) == 0)
      return true;
    return tn_quantity_parse(json_string_value(want), &a) == 0 &&
           tn_quantity_parse(json_string_value(have), &b) == 0 && a == b;
  }
  if (json_typeof(want) != json_typeof(have))
    return false;
  if (json_is_object(want)) {
    if (json_object_size(want) != json_object_size(have))
      return false;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)want, k, v) {
      if (!same_value(v, json_object_get(have, k), quantities))
        return false;
    }
    return true;
  }
  if (json_is_array(want)) {
    if (json_array_size(want) != json_array_size(have))
      return false;
    for (size_t i = 0; i < json_array_size(want); i++)
      if (!same_value(json_array_get(want, i), json_array_get(have, i), quantities))
        return false;
    return true;
  }
  return json_equal((json_t *)want, (json_t *)have);
}

/* Why an owned observed object differs from the desired one, into why[n]; false when it does not. */
static bool differs(const struct tn_object *d, const json_t *obs, char *why, size_t n) {
  const char *hash = json_string_value(json_object_get(
      json_object_get(json_object_get(obs, "metadata"), "annotations"), TN_ANNOTATION_SPEC_HASH));
  if (!hash || strcmp(hash, d->spec_hash) != 0) {
    snprintf(why, n, "%s annotation %s", TN_ANNOTATION_SPEC_HASH, hash ? "differs" : "is missing");
    return true;
  }
  const json_t *want = json_object_get(json_object_get(d->body, "metadata"), "labels");
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)want, k, v) {
    const char *have = label(obs, k);
    if (!have) {
      snprintf(why, n, "label %.100s is missing", k);
      return true;
    }
    if (strcmp(have, json_string_value(v)) != 0) {
      snprintf(why, n, "label %.100s is \"%.40s\", want \"%.40s\"", k, have, json_string_value(v));
      return true;
    }
  }
  bool quantities = d->kind == TN_KIND_RESOURCE_QUOTA || d->kind == TN_KIND_LIMIT_RANGE;
  json_object_foreach(d->body, k, v) {
    if (strcmp(k, "apiVersion") == 0 || strcmp(k, "kind") == 0 || strcmp(k, "metadata") == 0)
      continue;
    if (!same_value(v, json_object_get(obs, k), quantities)) {
      snprintf(why, n, "%.60s differs from the desired state", k);
      return true;
    }
  }
  return false;
}

bool tn_diff_differs(const struct tn_object *desired, const json_t *observed, char *why, size_t n) {
  return differs(desired, observed, why, n);
}

/* ---- building the list -------------------------------------------------------------------------- */

struct acc {
  struct tn_diff *out;
  size_t cap;
};

static struct tn_change *push(struct acc *a) {
  if (a->out->len == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 16;
    struct tn_change *c = realloc(a->out->changes, cap * sizeof *c);
    if (!c)
      return NULL;
    a->out->changes = c;
    a->cap = cap;
  }
  struct tn_change *c = &a->out->changes[a->out->len++];
  memset(c, 0, sizeof *c);
  return c;
}

static int cmp_change(const void *pa, const void *pb) {
  const struct tn_change *a = pa, *b = pb;
  if (a->op != b->op)
    return (int)a->op - (int)b->op;
  if (a->kind != b->kind)
    return a->op == TN_CHANGE_DELETE ? (int)b->kind - (int)a->kind : (int)a->kind - (int)b->kind;
  int c = strcmp(a->namespace ? a->namespace : "", b->namespace ? b->namespace : "");
  return c ? c : strcmp(a->name, b->name);
}

/* Whether a namespace name is in a list of changes of one op on Namespaces. */
static bool ns_listed(const struct tn_diff *d, enum tn_change_op op, const char *ns) {
  for (size_t i = 0; ns && i < d->len; i++)
    if (d->changes[i].op == op && d->changes[i].kind == TN_KIND_NAMESPACE &&
        strcmp(d->changes[i].name, ns) == 0)
      return true;
  return false;
}

static bool ns_terminating(const struct tn_observed *observed, size_t n, const char *ns) {
  for (size_t i = 0; ns && i < n; i++)
    if (observed[i].kind == TN_KIND_NAMESPACE && same_ns(meta_str(observed[i].obj, "name"), ns) &&
        terminating(observed[i].obj))
      return true;
  return false;
}

int tn_diff_compute(const struct tn_object_list *desired, const struct tn_observed *observed,
                    size_t n_observed, const char *tenant_id, const char *tenant_uid, struct tn_diff *out,
                    struct tn_error *err) {
  struct acc a = {.out = out};
  bool *matched = NULL;
  int rc = 0;
  memset(out, 0, sizeof *out);
  if (!tenant_id || !tenant_uid || !*tenant_uid)
    return tn_error_set(err, TN_EINVALID, "diff: the tenant id and uid are required");
  for (size_t j = 0; j < n_observed; j++)
    if (!meta_str(observed[j].obj, "name"))
      return tn_error_set(err, TN_EINVALID, "diff: an observed %s has no metadata.name",
                          tn_kind_name(observed[j].kind));
  if (n_observed && !(matched = calloc(n_observed, sizeof *matched)))
    goto nomem;

  /* Pass 1: namespaces, so that what lives in a conflicting or terminating one is known. */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; desired && i < desired->len; i++) {
      const struct tn_object *d = &desired->items[i];
      if ((d->kind == TN_KIND_NAMESPACE) != (pass == 0))
        continue;
      if (pass == 1 && (ns_listed(out, TN_CHANGE_CONFLICT, d->namespace))) /* never write into it */
        continue;
      const json_t *obs = NULL;
      for (size_t j = 0; j < n_observed && !obs; j++)
        if (observed[j].kind == d->kind && !matched[j] &&
            same_ns(meta_str(observed[j].obj, "namespace"), d->namespace) &&
            strcmp(meta_str(observed[j].obj, "name"), d->name) == 0) {
          obs = observed[j].obj;
          matched[j] = true;
        }
      if (!obs && pass == 1 && ns_terminating(observed, n_observed, d->namespace)) {
        out->n_waiting++;
        continue;
      }
      if (!obs) {
        struct tn_change *c = push(&a);
        if (!c)
          goto nomem;
        *c = (struct tn_change){.op = TN_CHANGE_CREATE,
                                .kind = d->kind,
                                .namespace = d->namespace,
                                .name = d->name,
                                .desired = d};
        snprintf(c->reason, sizeof c->reason, "not observed");
        continue;
      }
      if (!tn_owned_by_tenant(obs, tenant_uid)) {
        struct tn_change *c = push(&a);
        if (!c)
          goto nomem;
        *c = (struct tn_change){.op = TN_CHANGE_CONFLICT,
                                .kind = d->kind,
                                .namespace = d->namespace,
                                .name = d->name,
                                .desired = d,
                                .observed = obs,
                                .resource_version = meta_str(obs, "resourceVersion")};
        const char *owner = label(obs, TN_LABEL_TENANT);
        snprintf(c->reason, sizeof c->reason,
                 "conflict: not ours: %s %s%s%s exists and is not owned by tenant %s%s%.63s%s; it is left "
                 "untouched",
                 tn_kind_name(d->kind), d->namespace ? d->namespace : "", d->namespace ? "/" : "", d->name,
                 tenant_id, owner ? " (it is labelled for tenant \"" : "", owner ? owner : "",
                 owner ? "\")" : "");
        continue;
      }
      if (terminating(obs)) {
        out->n_waiting++;
        continue;
      }
      char why[200];
      if (differs(d, obs, why, sizeof why)) {
        struct tn_change *c = push(&a);
        if (!c)
          goto nomem;
        *c = (struct tn_change){.op = TN_CHANGE_UPDATE,
                                .kind = d->kind,
                                .namespace = d->namespace,
                                .name = d->name,
                                .desired = d,
                                .observed = obs,
                                .resource_version = meta_str(obs, "resourceVersion")};
        snprintf(c->reason, sizeof c->reason, "%s", why);
      }
    }
  }

  /* Observed and not desired: ours -> delete, namespaces first so their content can be elided. */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t j = 0; j < n_observed; j++) {
      const json_t *obs = observed[j].obj;
      if (matched[j] || (observed[j].kind == TN_KIND_NAMESPACE) != (pass == 0))
        continue;
      const char *tl = label(obs, TN_LABEL_TENANT);
      if (!tl || strcmp(tl, tenant_id) != 0 || !tn_owned_by_tenant(obs, tenant_uid) || terminating(obs))
        continue; /* not ours, or already going */
      const char *ns = meta_str(obs, "namespace");
      if (pass == 1 && ns_listed(out, TN_CHANGE_CONFLICT, ns))
        continue; /* never write into a namespace that is not ours */
      if (pass == 1 && (ns_listed(out, TN_CHANGE_DELETE, ns) || ns_terminating(observed, n_observed, ns)))
        continue; /* removed with its namespace */
      struct tn_change *c = push(&a);
      if (!c)
        goto nomem;
      *c = (struct tn_change){.op = TN_CHANGE_DELETE,
                              .kind = observed[j].kind,
                              .namespace = ns,
                              .name = meta_str(obs, "name"),
                              .observed = obs,
                              .resource_version = meta_str(obs, "resourceVersion")};
      snprintf(c->reason, sizeof c->reason, "owned by tenant %s and no longer desired", tenant_id);
    }
  }
  if (out->len > 1)
    qsort(out->changes, out->len, sizeof *out->changes, cmp_change);
  free(matched);
  return 0;
nomem:
  rc = tn_error_set(err, -ENOMEM, "out of memory");
  free(matched);
  tn_diff_cleanup(out);
  return rc;
}
