/* lifecycle.h - the tenant lifecycle state machine: which state changes are allowed, what
 * status.state a reconcile reaches, the event reason of each step, and deterministic
 * correlation ids. Pure: no network, no clock, no globals. */
#ifndef TN_TENANCY_LIFECYCLE_H
#define TN_TENANCY_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>

#include "tenancy/tenant.h"
#include "util/error.h"

/* What a transition does. TN_ACTION_NONE is the no-op X -> X. */
enum tn_action {
  TN_ACTION_NONE = 0,
  TN_ACTION_CREATE,   /* (none) -> Draft: the operator saw the tenant for the first time */
  TN_ACTION_ACTIVATE, /* Draft -> Active */
  TN_ACTION_SUSPEND,  /* Active -> Suspended */
  TN_ACTION_RESUME,   /* Suspended -> Active */
  TN_ACTION_ARCHIVE,  /* Active | Suspended -> Archived */
  TN_ACTION_DELETE,   /* Archived | Draft -> Deleted, with the deletion confirmation */
  TN_ACTION_RESTORE,  /* Archived -> Active, while the archived data is retained */
};
#define TN_ACTION_COUNT 8

/* "none", "create", "activate", "suspend", "resume", "archive", "delete", "restore". Static. */
const char *tn_action_name(enum tn_action a);
/* The Event reason of docs/api.md: "Created", "Activated", "Suspended", "Resumed", "Archived",
 * "Deleted", "Restored"; NULL for TN_ACTION_NONE (a no-op records no event). Static. */
const char *tn_action_event_reason(enum tn_action a);

/* The Event reason and condition reason of a refused transition. */
#define TN_REASON_TRANSITION_REFUSED "TransitionRefused"

/* Decides one state change `from` -> `to` of tenant `tenant_id` (both borrowed, may be NULL
 * where noted). confirmation is spec.deletionConfirmation (NULL or "" when absent); it matters
 * only for moves to Deleted, which need it to equal tenant_id.
 * Returns 0 when allowed, with *action set (TN_ACTION_NONE for X -> X, always allowed).
 * Returns TN_EINVALID when refused, with *action TN_ACTION_NONE, err->reason
 * "TransitionRefused" and a message for people, e.g.
 *   "transition Active -> Draft is not allowed; from Active the allowed states are: Suspended, Archived"
 *   "transition Archived -> Deleted requires spec.deletionConfirmation to equal the tenant id
 *    \"acme\" (it is empty)".
 * from TN_STATE_NONE (a tenant never reconciled) allows only -> Draft (create); to
 * TN_STATE_NONE is never allowed except as the no-op NONE -> NONE. */
int tn_lifecycle_check(enum tn_state from, enum tn_state to, const char *tenant_id, const char *confirmation,
                       enum tn_action *action, struct tn_error *err);

/* Writes to out the states reachable from `from` in one allowed step (not counting the no-op),
 * as "Suspended, Archived", or "none" for Deleted. Returns out. */
const char *tn_lifecycle_allowed_next(enum tn_state from, char *out, size_t n);

/* A deterministic correlation id for the transition from -> to of the tenant with this uid
 * (borrowed, NULL = "") at this metadata.generation: SHA-256 of the four values, formatted as a
 * UUID (version 8, RFC 9562 variant) in lowercase, 36 characters + NUL written to out. A retry
 * of the same transition at the same generation gets the same id. */
void tn_correlation_id(const char *uid, long long generation, enum tn_state from, enum tn_state to,
                       char out[37]);

/* One step a reconcile takes. */
struct tn_transition {
  enum tn_state from, to;
  enum tn_action action;    /* never TN_ACTION_NONE in a plan's steps */
  const char *event_reason; /* tn_action_event_reason(action); static */
  char correlation_id[37];
};

#define TN_LIFECYCLE_MAX_STEPS 3

/* What a reconcile does to status.state. */
struct tn_lifecycle_plan {
  enum tn_state next; /* status.state after this reconcile */
  int n_steps;        /* 0 when nothing changes */
  struct tn_transition steps[TN_LIFECYCLE_MAX_STEPS];
  bool refused; /* the requested spec.state is not reachable now; see the error */
};

/* Decides, from t->status_state (what was reached) and t->state (what is asked), what
 * status.state a reconcile should reach, and through which steps (each with its Event reason
 * and correlation id from t->uid and t->generation). t is borrowed.
 *
 * - An existing tenant (status.state set) moves by at most one allowed transition; a requested
 *   state that is not one allowed step away is refused and status.state stays.
 * - A new tenant (status.state empty) is first Created (-> Draft), then walks the shortest
 *   allowed path to spec.state: Active = Created, Activated; Suspended = Created, Activated,
 *   Suspended; Archived = Created, Activated, Archived; Deleted = Created, Deleted (needs the
 *   confirmation; without it the tenant stays Draft, refused). The desired objects are built
 *   from `next` alone, so intermediate states are never provisioned.
 *
 * Returns 0 when status.state reaches t->state; TN_EINVALID when refused, with out->refused
 * set, out->next the state reached (the steps taken before the refusal kept, e.g. Created),
 * err as tn_lifecycle_check leaves it. */
int tn_lifecycle_plan(const struct tn_tenant *t, struct tn_lifecycle_plan *out, struct tn_error *err);

#endif
