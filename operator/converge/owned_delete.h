/* owned_delete.h - the reconcile's delete of an owned object it no longer wants.
 *
 * The delete is conditional on the object's uid (a delete precondition), so that an object
 * someone made under the same name after the diff looked is never deleted. The caches of the
 * owned Namespaces, NetworkPolicies, ResourceQuotas and LimitRanges keep no metadata.uid
 * (operator/converge/manager.c: ~20 bytes of incompressible text per object, ~2 MiB at 10,000
 * tenants): for those the uid is read with a GET just before the delete, and the object it
 * returns must still be the tenant's (its tenant and managed-by labels, an owner reference to
 * the Tenant's uid, not being deleted), or nothing is deleted. */
#ifndef TN_CONVERGE_OWNED_DELETE_H
#define TN_CONVERGE_OWNED_DELETE_H

#include <jansson.h>
#include <stdbool.h>

#include "kube/client.h"
#include "util/error.h"

/* Whether obj (as the API server returned it) is still tenant's to delete: labels
 * tenancy.dev/tenant=tenant and app.kubernetes.io/managed-by=tenancy-operator, an owner
 * reference to the Tenant with tenant_uid, no deletionTimestamp. */
bool tn_owned_delete_still_ours(const json_t *obj, const char *tenant, const char *tenant_uid);

/* Deletes ns/name of gvr (propagation Background) with the uid of `observed` as precondition;
 * when `observed` has none, with the uid of a fresh GET, only if tn_owned_delete_still_ours.
 * *sent tells whether a DELETE was sent. Returns 0 (deleted, already gone, or no longer ours:
 * nothing to do), or the error of the GET or DELETE (TN_ECONFLICT: replaced meanwhile). */
int tn_owned_delete(struct tn_kube *k, const struct tn_gvr *gvr, const json_t *observed, const char *ns,
                    const char *name, const char *tenant, const char *tenant_uid, bool *sent,
                    struct tn_error *err);

#endif
