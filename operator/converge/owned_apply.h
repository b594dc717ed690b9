/* owned_apply.h - how the operator writes the objects it owns: server-side apply with field
 * manager `tenancy-operator` (TN_FIELD_MANAGER), so that fields other managers set on them
 * (labels and annotations added by kubectl, Argo CD, Flux, policy engines) are kept when the
 * desired state changes, and a field the operator stops wanting is removed.
 *
 * A create stays a POST (it fails with AlreadyExists on an object someone else made: the operator
 * never adopts); the managedFields entry that POST leaves (manager tenancy-operator, operation
 * Update) is folded into the manager's Apply entry by the object's first apply (lazily: an object
 * that never changes costs no write for it), so that applies may remove what the create set. The
 * same fold repairs objects written by PUT by earlier versions. */
#ifndef TN_CONVERGE_OWNED_APPLY_H
#define TN_CONVERGE_OWNED_APPLY_H

#include <jansson.h>

#include "kube/client.h"
#include "util/error.h"

/* POST of body (never adopting: TN_EEXISTS when the object exists). Its Update entry stays
 * until the object's first tn_owned_apply folds it. */
int tn_owned_create(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const json_t *body,
                    struct tn_error *err);

/* Server-side apply of body (force: the operator's fields win) with resource_version as
 * precondition (TN_ECONFLICT when the object changed or went meanwhile). When the answer shows
 * a tenancy-operator Update entry, it is folded into the Apply entry and body applied once more,
 * so that fields only that entry kept are removed too. */
int tn_owned_apply(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const json_t *body,
                   const char *resource_version, struct tn_error *err);

/* The merge patch that folds obj's tenancy-operator Update entry (not of a subresource) into its
 * Apply entry (or makes it the Apply entry), with obj's resourceVersion as precondition; NULL
 * when there is none to fold (or out of memory). Exposed for the unit test. */
json_t *tn_owned_fold_patch(const json_t *obj);

#endif
