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

/* ---- prerequisites and effects of a plan's steps -------------------------------------------- */

/* True for a move into Active from Draft or Archived (activate, restore): such a step needs its
 * prerequisites (the Plan exists and parses, placement succeeds, the policy allows it, the
 * quotas fit the Region's capacity) before it is started. */
bool tn_transition_is_activation(const struct tn_transition *s);

/* True when a step has effects in the cluster or the database to wait for before it counts as
 * done (every action but create, whose only effect is the status). */
bool tn_transition_has_effects(const struct tn_transition *s);

/* The index of the first step of lp that is an activation (resp. has effects), or -1. */
int tn_lifecycle_first_activation(const struct tn_lifecycle_plan *lp);
int tn_lifecycle_first_effect(const struct tn_lifecycle_plan *lp);

/* Keeps lp's first k steps (0 <= k < lp->n_steps; otherwise nothing changes) and moves the
 * others to *rest (when not NULL; rest->next is the old lp->next). lp->next becomes the state
 * the kept steps reach: steps[k].from. */
void tn_lifecycle_split(struct tn_lifecycle_plan *lp, int k, struct tn_lifecycle_plan *rest);

/* One effect a transition waits for, as its condition reports it (all borrowed). */
struct tn_effect {
  const char *name;    /* the condition type, e.g. "NamespacesReady" */
  const char *status;  /* "True", "False", "Unknown" */
  const char *reason;  /* may be NULL */
  const char *message; /* may be NULL */
  bool failed;         /* an attempt failed (apply error, server unreachable), not just pending */
};

enum tn_progress { TN_PROGRESS_DONE = 0, TN_PROGRESS_WAITING, TN_PROGRESS_FAILED };

/* Whether every effect is in place: status "True", or False with reason "GroupRefused" (groups
 * a policy never lets bind are a lasting outcome, not a missing effect). FAILED when any effect
 * failed (the first failed one is described), else WAITING when any is not in place (the first
 * one is described), else DONE. why (n > 0) gets "NAME: message" or "" when DONE. */
enum tn_progress tn_effects_progress(const struct tn_effect *e, size_t n, char *why, size_t nwhy);

#endif
