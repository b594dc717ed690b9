/* diff.h - desired objects against observed ones: the list of changes to apply (create,
 * update, delete), and the conflicts the operator must not touch. Pure. */
#ifndef TN_TENANCY_DIFF_H
#define TN_TENANCY_DIFF_H

#include <jansson.h>
#include <stddef.h>

#include "tenancy/desired.h"
#include "util/error.h"

/* An object as the caches hold it (borrowed): metadata with labels, annotations,
 * ownerReferences, resourceVersion and deletionTimestamp, plus the content fields the operator
 * writes (spec; roleRef and subjects for RoleBindings). The caches must keep those fields: a
 * content field that is missing counts as drift. */
struct tn_observed {
  enum tn_kind kind;
  const json_t *obj;
};

/* Operations, in the order they appear in a diff. */
enum tn_change_op {
  TN_CHANGE_CONFLICT = 0, /* the name is taken by an object that is not ours: never write it */
  TN_CHANGE_CREATE,       /* desired, not observed */
  TN_CHANGE_UPDATE,       /* desired, observed and ours, but different: replace it with desired */
  TN_CHANGE_DELETE,       /* observed and ours (label and owner uid), not desired */
};
const char *tn_change_op_name(enum tn_change_op op); /* "conflict", "create", ...; static */

struct tn_change {
  enum tn_change_op op;
  enum tn_kind kind;
  const char *namespace;           /* NULL for a Namespace; borrowed (see tn_diff_compute) */
  const char *name;                /* borrowed */
  const struct tn_object *desired; /* conflict, create, update; NULL for delete */
  const json_t *observed;          /* conflict, update, delete; NULL for create */
  const char *resource_version;    /* observed metadata.resourceVersion (update, delete), or NULL */
  char reason[256];                /* for logs and events: "not observed", "spec-hash differs", ... */
};

/* A caller-owned result; free with tn_diff_cleanup. */
struct tn_diff {
  struct tn_change *changes; /* malloc'd array */
  size_t len;
  /* Desired objects left alone this time because the observed copy (or its namespace) is being
   * deleted: the caller should reconcile again later. */
  size_t n_waiting;
};
void tn_diff_cleanup(struct tn_diff *d); /* accepts NULL; leaves it empty */

/* Compares desired (borrowed) with the n observed objects (borrowed) of tenant tenant_id whose
 * metadata.uid is tenant_uid. The changes borrow strings and pointers from both inputs: keep
 * them alive while using *out.
 *
 * Identity is (kind, namespace, name). An observed object is ours when one of its
 * ownerReferences has kind Tenant and uid tenant_uid.
 *  - desired, not observed: create ("not observed");
 *  - desired, observed, not ours: conflict ("conflict: not ours ..."); nothing inside a
 *    conflicting namespace is created or updated either;
 *  - desired, observed, ours: update when the spec-hash annotation differs, a managed label is
 *    missing or different, or a content field (spec, roleRef, subjects) differs from desired
 *    (quantities compare by value: "1024Mi" equals "1Gi"); otherwise nothing;
 *  - observed, not desired: delete only when ours AND labelled tenancy.dev/tenant=tenant_id;
 *    anything else is never touched. A delete inside a namespace that is itself deleted is
 *    left out: the namespace's deletion removes it.
 *  - an observed object being deleted (deletionTimestamp) is neither updated nor deleted
 *    again; when it is desired it counts in n_waiting.
 * Order: conflicts, creates, updates, deletes; creates and updates by kind in creation order
 * (namespaces first), deletes in the reverse kind order (namespaces last); then by namespace
 * and name. An unchanged tenant gives zero changes.
 * Returns 0, TN_EINVALID (an observed object without metadata.name, no tenant uid) or -ENOMEM;
 * *out is empty on failure. */
int tn_diff_compute(const struct tn_object_list *desired, const struct tn_observed *observed,
                    size_t n_observed, const char *tenant_id, const char *tenant_uid, struct tn_diff *out,
                    struct tn_error *err);

/* Whether an object of ours (observed, e.g. read with a GET because the caches do not show it)
 * differs from its desired form, by the rules above (spec-hash annotation, managed labels,
 * content fields); why[n] says how. */
bool tn_diff_differs(const struct tn_object *desired, const json_t *observed, char *why, size_t n);

#endif
