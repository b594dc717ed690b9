/* breakglass.h - break-glass access, pure: a Tenant's spec.breakGlass requests and the
 * TenancyPolicies in, at a given time, which grants are Active, Pending, Expired or Denied (and
 * why), the RoleBindings they need, the writes that bring the observed RoleBindings there, the
 * next expiry, and the status to report. No network, no clock (now is an input), no globals.
 * See docs/break-glass.md for the rules. */
#ifndef TN_TENANCY_BREAKGLASS_H
#define TN_TENANCY_BREAKGLASS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "tenancy/tenant.h"
#include "util/error.h"

/* On every break-glass RoleBinding (besides tenancy.dev/tenant, tenancy.dev/environment and
 * app.kubernetes.io/managed-by): the request's id. Its presence marks a break-glass binding. */
#define TN_LABEL_BREAK_GLASS "tenancy.dev/break-glass"
/* Annotations on every break-glass RoleBinding. */
#define TN_ANNOTATION_BREAK_GLASS_REASON "tenancy.dev/break-glass-reason"
#define TN_ANNOTATION_BREAK_GLASS_EXPIRES_AT "tenancy.dev/break-glass-expires-at" /* as requested */
#define TN_ANNOTATION_BREAK_GLASS_FIRST_SEEN_AT "tenancy.dev/break-glass-first-seen-at"
/* The RoleBinding of request <id> is break-glass-<id> in each namespace it covers. */
#define TN_BREAKGLASS_NAME_PREFIX "break-glass-"
/* spec.breakGlass maxItems. */
#define TN_BREAKGLASS_MAX_REQUESTS 16
/* TenancyPolicy spec.breakGlass.maxDuration when absent (the CRD default), in seconds. */
#define TN_BREAKGLASS_DEFAULT_MAX_DURATION_S (4.0 * 3600)
/* The audit actions of grants (and refusals: outcome "refused") and revocations. */
#define TN_BREAKGLASS_ACTION_GRANT "break-glass.grant"
#define TN_BREAKGLASS_ACTION_REVOKE "break-glass.revoke"

/* A request's state (status.breakGlass[].state). */
enum tn_breakglass_state {
  TN_BREAKGLASS_PENDING = 0, /* allowed, not bound yet: no namespace yet, a write or the audit failed */
  TN_BREAKGLASS_ACTIVE,      /* allowed and bound in every namespace it covers */
  TN_BREAKGLASS_EXPIRED,     /* expiresAt has passed: nothing is bound */
  TN_BREAKGLASS_DENIED,      /* invalid, or no policy allows it: nothing is bound */
};
const char *tn_breakglass_state_name(enum tn_breakglass_state s); /* "Pending", ...; static */

/* Why a binding is removed. */
enum tn_breakglass_why {
  TN_BREAKGLASS_WHY_EXPIRED = 0,  /* "expired": expiresAt passed */
  TN_BREAKGLASS_WHY_REMOVED,      /* "removed": the request left spec.breakGlass */
  TN_BREAKGLASS_WHY_DENIED,       /* "denied": policy no longer allows it */
  TN_BREAKGLASS_WHY_CHANGED,      /* "changed": the role changed (roleRef is immutable: re-created) */
  TN_BREAKGLASS_WHY_OUT_OF_SCOPE, /* "out-of-scope": the namespace is no longer covered (environments
                                   * changed, or the tenant's namespaces are not live) */
};
const char *tn_breakglass_why_name(enum tn_breakglass_why w); /* static */

/* ---- small parsers (exported for tests and the step) ------------------------------------------ */

/* An RFC 3339 date-time ("2025-06-01T12:00:00Z", fractions and +hh:mm offsets accepted) to
 * seconds since the epoch. Returns 0 or TN_EINVALID. */
int tn_breakglass_parse_time(const char *s, double *out);
/* A duration of hours, minutes and seconds in this order, each optional but not all ("4h",
 * "90m", "1h30m", "45s") to seconds (> 0). Returns 0 or TN_EINVALID. */
int tn_breakglass_parse_duration(const char *s, double *out);
/* Seconds as the shortest such duration ("4h", "1h30m", "5s", "0s") into dst[n]. */
void tn_breakglass_format_duration(double s, char *dst, size_t n);
/* Whether obj (a RoleBinding; borrowed) carries the label tenancy.dev/break-glass: the main
 * desired-state diff must leave such bindings to the break-glass step. */
bool tn_breakglass_is_binding(const json_t *obj);

/* ---- TenancyPolicy spec.breakGlass ------------------------------------------------------------ */

/* What one policy says about break-glass. Caller-owned: fill with tn_breakglass_policy_parse,
 * release with tn_breakglass_policy_cleanup. */
struct tn_breakglass_policy {
  char *name;            /* metadata.name */
  bool present;          /* spec.breakGlass is set */
  bool allowed;          /* spec.breakGlass.allowed */
  double max_duration_s; /* spec.breakGlass.maxDuration; TN_BREAKGLASS_DEFAULT_MAX_DURATION_S when absent */
  unsigned roles;        /* spec.breakGlass.roles as bits 1u << enum tn_role; absent = all three */
  char *invalid;         /* NULL, or why spec.breakGlass cannot be read: such a policy refuses every
                          * request (fail closed) until fixed */
};

/* Reads spec.breakGlass of a TenancyPolicy (obj borrowed). Never fails on content (a bad field
 * sets ->invalid); returns 0, or -ENOMEM (then *out is cleaned up). */
int tn_breakglass_policy_parse(const json_t *obj, struct tn_breakglass_policy *out);
void tn_breakglass_policy_cleanup(struct tn_breakglass_policy *p); /* accepts NULL; leaves it zeroed */

/* ---- Tenant spec.breakGlass ----------------------------------------------------------------------- */

/* One request, everything owned by its plan. */
struct tn_breakglass_request {
  char *id;             /* a DNS label: names the RoleBinding break-glass-<id> */
  bool group;           /* the subject is a Group (spec `group`), else a User (spec `user`) */
  char *subject;        /* the user or group name ("" when missing: then invalid is set) */
  char *role;           /* as written */
  enum tn_role role_id; /* valid when invalid is NULL */
  char *reason;
  char *expires_at;    /* as written ("" when missing) */
  double expires;      /* seconds since the epoch */
  char **environments; /* as requested; n 0 = every environment of the tenant */
  size_t n_environments;
  char *invalid; /* NULL, or what is wrong with the entry and how to fix it: it is Denied */
};

/* ---- the plan ------------------------------------------------------------------------------------- */

/* Everything the planner reads; all borrowed. */
struct tn_breakglass_input {
  /* The Tenant: metadata.name and uid, spec.breakGlass, spec.environments, and status.breakGlass
   * (firstSeenAt and the previous state of each id). */
  const json_t *tenant;
  /* The environments whose namespaces exist and are the tenant's now: grants are bound there
   * (n 0: nowhere; every existing break-glass binding is then removed as out-of-scope). */
  const char *const *environments;
  size_t n_environments;
  const struct tn_breakglass_policy *policies; /* every TenancyPolicy, any order; n may be 0 */
  size_t n_policies;
  /* RoleBindings observed (a JSON array, e.g. a cache's list of the tenant's objects, or a live
   * list); only those labelled tenancy.dev/tenant=<tenant> and tenancy.dev/break-glass are read,
   * and only those owned by the tenant (ownerReference uid) are ever changed. May be NULL. */
  const json_t *observed;
  double now; /* wall-clock seconds since the epoch */
};

/* The decision on one request. */
struct tn_breakglass_decision {
  const struct tn_breakglass_request *req; /* borrowed from the plan */
  enum tn_breakglass_state state;
  double first_seen; /* when the operator first saw this id (status, binding or now) */
  char message[768]; /* for people: what was decided and, when not Active, how to fix it */
  char policy[64];   /* the TenancyPolicy that allows it ("" when none does) */
  bool newly_denied; /* Denied now and status.breakGlass did not say so with this message */
  char **namespaces; /* Active/Pending: the namespaces it covers (owned) */
  size_t n_namespaces;
};

enum tn_breakglass_op {
  TN_BREAKGLASS_DELETE = 0, /* deletes come first: access is taken away before any is given */
  TN_BREAKGLASS_CREATE,
  TN_BREAKGLASS_UPDATE, /* labels, annotations, subjects or owner reference differ */
};

/* One write. Strings and body owned by the plan. */
struct tn_breakglass_change {
  enum tn_breakglass_op op;
  char *id; /* the request id (from the label for a delete) */
  char *namespace;
  char *name;
  char *environment;
  json_t *body;               /* create, update: the whole RoleBinding (update: with resourceVersion) */
  char *uid;                  /* update, delete: the observed metadata.uid (delete precondition) */
  char *resource_version;     /* update, delete: the observed metadata.resourceVersion */
  enum tn_breakglass_why why; /* delete */
  /* The request (index into decisions) the change serves; for a delete of a binding whose
   * request is gone, (size_t)-1. */
  size_t decision;
  /* delete: the binding's subject, role, expiry and first sight, for the audit trail */
  char *subject_kind, *subject, *role, *expires_at;
  double first_seen;
};

/* Caller-owned: zero it, or let tn_breakglass_plan fill it; tn_breakglass_plan_cleanup it. */
struct tn_breakglass_plan {
  char *tenant, *tenant_uid;
  struct tn_breakglass_request *requests; /* spec order; entries without a valid id are skipped */
  size_t n_requests;
  struct tn_breakglass_decision *decisions; /* decisions[i] is about requests[i] */
  struct tn_breakglass_change *changes;     /* deletes, then creates and updates; by id, namespace */
  size_t n_changes;
  /* The earliest expiresAt after now of a Pending or Active request (reconcile again then to
   * revoke it); 0 when none. */
  double next_expiry;
};

/* Decides every request of in->tenant at in->now (rules in docs/break-glass.md):
 *  1. an invalid entry (no subject, both user and group, unknown role, blank reason, expiresAt
 *     not RFC 3339, none of its environments is the tenant's) is Denied;
 *  2. expiresAt <= now: Expired;
 *  3. a policy with spec.breakGlass.allowed false, or one that cannot be read, denies (a deny
 *     wins); else some policy with allowed true must list the role in roles (absent: all) and
 *     allow expiresAt - firstSeen within its maxDuration; otherwise Denied, the message naming
 *     the rule and the fix;
 *  4. allowed: Active, bound in the requested environments (all when none) whose namespaces
 *     exist; Pending when there are none yet.
 * firstSeen is the earliest of status.breakGlass[id].firstSeenAt and the bindings'
 * first-seen annotation, else now: a request's access lasts at most maxDuration from when the
 * operator first saw its id, whatever expiresAt says later.
 * Then lists the writes that make the observed break-glass bindings equal the desired ones.
 * An unchanged tenant gives zero changes. Returns 0, TN_EINVALID (the tenant has no name or uid)
 * or -ENOMEM; *out is filled (or empty on failure). Deterministic. */
int tn_breakglass_plan(const struct tn_breakglass_input *in, struct tn_breakglass_plan *out,
                       struct tn_error *err);
void tn_breakglass_plan_cleanup(struct tn_breakglass_plan *p); /* accepts NULL; leaves it zeroed */

/* status.breakGlass for the plan's decisions, in spec order: [{id, state, message, expiresAt,
 * firstSeenAt, namespaces (Active and Pending)}]. A new reference (an empty array when there is
 * no request: remove the field then), NULL when out of memory. */
json_t *tn_breakglass_status(const struct tn_breakglass_plan *p);

/* ---- reporting and auditing ---------------------------------------------------------------------- */

/* One grant, revocation or refusal, for the audit trail and events. Owned strings. */
struct tn_breakglass_report {
  char *id;
  char *subject_kind; /* "User" or "Group" */
  char *subject;
  char *role;           /* "tenant-admin", ... */
  char *expires_at;     /* as requested */
  char *reason;         /* the request's reason (may be NULL for a revocation of a removed request) */
  char *why;            /* revoke: "expired", "removed", ...; refusal: the denial message; grant: NULL */
  char *correlation_id; /* "bg-<id>-<first sight, epoch seconds>": ties a grant to its revocation */
  char **namespaces;
  size_t n_namespaces;
};
void tn_breakglass_report_cleanup(struct tn_breakglass_report *r); /* accepts NULL */

/* The JSON text of an audit row's details: {"id", "user" or "group", "role", "expiresAt",
 * "reason", "namespaces", "why"} (absent fields left out). malloc'd (free it); NULL when out of
 * memory. */
char *tn_breakglass_report_details(const struct tn_breakglass_report *r);

#endif
