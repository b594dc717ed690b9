/* policy.h - TenancyPolicy resources as plain C structs, and the pure policy evaluator: a tenant,
 * the Region inventory and every policy in, "allowed" or a denial naming every violated rule and
 * how to fix it out; plus the uniqueness of external ids across tenants. Pure: no network, no
 * clock, no globals. See docs/policy.md for the rules and docs/internals/admission.md. */
#ifndef TN_TENANCY_POLICY_H
#define TN_TENANCY_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "tenancy/lifecycle.h"
#include "tenancy/tenant.h"
#include "util/error.h"

/* The Event reason and condition reason of a policy denial. */
#define TN_REASON_POLICY_DENIED "PolicyDenied"

/* Quota keys (Plan spec.quotas, Tenant spec.quotaOverrides, TenancyPolicy spec.quotaOverrides). */
enum tn_quota_key {
  TN_QUOTA_CPU = 0,
  TN_QUOTA_MEMORY,
  TN_QUOTA_STORAGE,
  TN_QUOTA_PODS,
  TN_QUOTA_SERVICES,
  TN_QUOTA_CONNECTIONS,
  TN_QUOTA_EVENTS_PER_DAY,
};
#define TN_QUOTA_KEY_COUNT 7

/* "cpu", "memory", "storage", "pods", "services", "connections", "eventsPerDay"; "?" out of
 * range. Static. */
const char *tn_quota_key_name(enum tn_quota_key k);
/* The exact key name to its value; 0 or TN_EINVALID. */
int tn_quota_key_parse(const char *s, enum tn_quota_key *out);

/* ---- TenancyPolicy ---------------------------------------------------------------------------- */

/* spec.residency[]: tenants whose spec.residency.flags holds `flag` may only be placed in
 * allowed_regions. */
struct tn_policy_residency_rule {
  char *flag;             /* a DNS label */
  char **allowed_regions; /* DNS labels, as written; n >= 1 */
  size_t n_allowed_regions;
};

/* spec.allowedActions[]. */
struct tn_policy_allowed_action {
  enum tn_action action; /* activate, suspend, resume, archive or delete */
  char **plans;          /* plan names; n 0 = every plan */
  size_t n_plans;
  unsigned from_states; /* bits 1u << enum tn_state; 0 = every state the action starts from */
};

/* A parsed TenancyPolicy; every string owned; freed with tn_policy_free. */
struct tn_policy {
  char *name; /* metadata.name */
  long long generation;
  struct tn_policy_residency_rule *residency; /* spec.residency, order kept */
  size_t n_residency;
  bool require_database_tls; /* spec.encryption.requireDatabaseTLS */
  bool require_tenant_keys;  /* spec.encryption.requireTenantKeys */
  int archived_data_days;    /* spec.retention.archivedData in days; -1 when absent */
  int audit_records_days;    /* spec.retention.auditRecords in days; -1 when absent */
  bool has_allowed_actions;  /* spec.allowedActions is present; an empty list allows no action */
  struct tn_policy_allowed_action *allowed_actions;
  size_t n_allowed_actions;
  unsigned quota_overrides; /* spec.quotaOverrides as bits 1u << enum tn_quota_key; 0 when absent */
  /* spec.rateLimitOverrides: the rate-limit buckets ("default" and endpoint names) a tenant may
   * override, as bits 1u << TN_RATE_LIMIT_KEY_* (tenancy/ratelimits.h); 0 when absent. */
  unsigned rate_limit_overrides;
  /* spec.identity.allowedGroupPatterns: shell globs (fnmatch(3), no flags) a group of
   * spec.identity.groupBindings must match (one of them); "{tenant}" and "{domain}" stand for
   * the tenant id and its spec.identity.domain (a tenant without a domain matches no pattern
   * that uses it). Absent (has_ false): any group not reserved to Kubernetes. */
  bool has_allowed_group_patterns;
  char **allowed_group_patterns;
  size_t n_allowed_group_patterns;
  bool has_pod_security_minimum;             /* spec.podSecurity.minimum is set */
  enum tn_pod_security pod_security_minimum; /* spec.podSecurity.minimum */
};

/* Parses and validates a TenancyPolicy (obj borrowed) with the contract of tn_tenant_parse: on
 * success *out is new (tn_policy_free it); on failure TN_EINVALID (or -ENOMEM), *out NULL, and
 * err names the field, e.g. "spec.residency[0].allowedRegions[1]: \"EU\" is not a DNS label ...".
 * It re-checks what the CRD schema enforces, since a policy is trusted with every tenant. */
int tn_policy_parse(const json_t *obj, struct tn_policy **out, struct tn_error *err);
void tn_policy_free(struct tn_policy *p); /* accepts NULL */

/* ---- the Region inventory as the evaluator sees it ---------------------------------------------- */

/* One of a Region's spec.databaseServers[]: what encryption rules read. */
struct tn_policy_db_server {
  char *name;      /* a DNS label */
  char *ssl_mode;  /* the libpq sslmode as written; "verify-full" when absent (the CRD default) */
  unsigned serves; /* bits 1u << enum tn_isolation */
};

/* A Region and its database servers (struct tn_region does not read spec.databaseServers). */
struct tn_policy_region {
  struct tn_region *region;            /* owned; never NULL */
  struct tn_policy_db_server *servers; /* owned; n 0 when the Region lists none */
  size_t n_servers;
};

/* Parses a Region object (obj borrowed) with its database servers, same contract as
 * tn_region_parse. Free with tn_policy_region_free. */
int tn_policy_region_parse(const json_t *obj, struct tn_policy_region **out, struct tn_error *err);
void tn_policy_region_free(struct tn_policy_region *r); /* accepts NULL */

/* What the evaluator reads of a Tenant that struct tn_tenant does not carry (obj borrowed):
 * *quota_overrides gets the keys of spec.quotaOverrides as bits 1u << enum tn_quota_key (0 when
 * none); *database_server status.placement.databaseServer, else status.database.server (borrowed from
 * obj; NULL when neither is set).
 * Either out pointer may be NULL. Unknown keys in spec.quotaOverrides are ignored (the schema
 * prunes them). */
void tn_policy_tenant_fields(const json_t *obj, unsigned *quota_overrides, const char **database_server);

/* ---- evaluation --------------------------------------------------------------------------------- */

/* The rule families, to evaluate only some (struct tn_policy_input.rules). */
enum {
  TN_POLICY_RULE_RESIDENCY = 1u << 0,            /* spec.residency[] */
  TN_POLICY_RULE_ENCRYPTION = 1u << 1,           /* spec.encryption.requireDatabaseTLS */
  TN_POLICY_RULE_ACTIONS = 1u << 2,              /* spec.allowedActions[] */
  TN_POLICY_RULE_QUOTA_OVERRIDES = 1u << 3,      /* spec.quotaOverrides */
  TN_POLICY_RULE_GROUPS = 1u << 4,               /* reserved groups, spec.identity.allowedGroupPatterns */
  TN_POLICY_RULE_RATE_LIMIT_OVERRIDES = 1u << 5, /* spec.rateLimitOverrides (the tenant's, in tenant) */
  TN_POLICY_RULE_ALL = 0x3fu,
};

/* Everything the evaluator reads; all borrowed. */
struct tn_policy_input {
  const struct tn_tenant *tenant; /* the tenant as it is or would be; required */
  unsigned quota_overrides;       /* the tenant's spec.quotaOverrides keys (tn_policy_tenant_fields) */
  const char *database_server;    /* the tenant's database server (tn_policy_tenant_fields); NULL: none yet */
  const struct tn_policy_region *const *regions; /* the Region inventory, any order; n may be 0 */
  size_t n_regions;
  const struct tn_policy *const *policies; /* every TenancyPolicy, any order; n may be 0 */
  size_t n_policies;
  /* The lifecycle steps about to be taken (from, to, action; other fields unread), e.g. the
   * steps of tn_lifecycle_plan, or the one step of an update. n 0 checks no action. Steps whose
   * action is none or create are never restricted. */
  const struct tn_transition *steps;
  size_t n_steps;
  unsigned rules; /* TN_POLICY_RULE_* to evaluate; 0 means all */
};

/* One violated rule. Every string owned by the result. */
struct tn_policy_violation {
  char *policy;  /* the TenancyPolicy's name; NULL for a rule no single policy owns */
  char *rule;    /* "residency", "encryption", "allowedActions", "quotaOverrides", "rateLimitOverrides",
                  * "groups", "externalIds" */
  char *field;   /* the field at fault, e.g. "spec.residency.allowedRegions" */
  char *subject; /* what exactly (a flag and regions, an action, a key): identifies it with the above */
  char *message; /* one sentence for people: what is wrong and how to fix it, e.g.
                  * "TenancyPolicy eu-residency: residency flag eu-only allows regions [eu-west-1,
                  * eu-central-1]; spec.residency.allowedRegions has us-east-1: remove it or drop
                  * the flag" */
};

/* What the policies decide and require for one tenant. Caller-owned: tn_policy_result_init it
 * (tn_policy_evaluate does), tn_policy_result_cleanup it in every case. */
struct tn_policy_result {
  struct tn_policy_violation *violations; /* empty when allowed */
  size_t n_violations;
  char **warnings; /* advice that does not deny (e.g. a flag no policy defines); n may be 0 */
  size_t n_warnings;

  /* Residency to place the tenant with (give it to tn_placement_resolve): the tenant's own
   * spec.residency narrowed by every residency rule of its flags. allowed_regions empty = any
   * region (no rule applied and the tenant lists none); flags always empty. Owned. */
  struct tn_residency residency;
  bool residency_restricted; /* some policy's residency rule matched one of the tenant's flags */

  bool require_database_tls; /* some policy requires it: place only on verify-ca/verify-full servers */
  bool require_tenant_keys;  /* some policy requires a per-tenant key (provisioned by the keys work) */
  unsigned quota_overrides_permitted;      /* keys some policy lets tenants override (union), bits */
  unsigned rate_limit_overrides_permitted; /* rate-limit keys some policy lets tenants override (union) */
  int archived_data_days; /* the shortest spec.retention.archivedData of any policy; -1 when none sets it */
  int audit_records_days; /* the longest spec.retention.auditRecords of any policy; -1 when none sets it */
  /* The policy that requires database TLS (the first in name order); NULL when none. Owned. */
  char *require_database_tls_policy;
  /* The strictest spec.podSecurity.minimum of any policy; baseline (no constraint) when none. */
  enum tn_pod_security pod_security_minimum;
  /* The groups of spec.identity.groupBindings that must not be bound: reserved to Kubernetes
   * ("system:") or matching no pattern of a policy with allowedGroupPatterns. Always computed
   * (whatever in->rules says), so the desired state never binds them even when the violation is
   * ratcheted or a transition is refused. Owned; n may be 0. */
  char **refused_groups;
  size_t n_refused_groups;
};

void tn_policy_result_init(struct tn_policy_result *r);
void tn_policy_result_cleanup(struct tn_policy_result *r); /* accepts NULL; leaves r initialised */

/* Whether group may be bound for tenant t by policies (n may be 0): not reserved to Kubernetes
 * (tn_subject_is_reserved) and matched by one pattern of every policy that sets
 * spec.identity.allowedGroupPatterns. When not, and why is given, why[n_why] says why (naming
 * the first policy that refuses it, or the reserved prefix). */
bool tn_policy_group_allowed(const struct tn_tenant *t, const char *group,
                             const struct tn_policy *const *policies, size_t n, char *why, size_t n_why);

/* Evaluates every policy against in->tenant. Initialises *out (clean it up in every case).
 * Returns 0 when no rule is violated; TN_EINVALID when some are, with every violation in
 * out->violations (in the order: residency, encryption, allowedActions, quotaOverrides,
 * rateLimitOverrides, groups) and err
 * set: reason "PolicyDenied", message the text of tn_policy_result_message (cut to fit),
 * causes the first TN_ERROR_MAX_CAUSES violations (field, reason "PolicyDenied", message).
 * -ENOMEM when out of memory. Deterministic: the same input gives the same output. */
int tn_policy_evaluate(const struct tn_policy_input *in, struct tn_policy_result *out, struct tn_error *err);

/* The one message for people: "" when there is no violation; the violation's message when
 * there is one; else "N policy violations: (1) ...; (2) ...". Returns a malloc'd string (free
 * it), NULL when out of memory. */
char *tn_policy_result_message(const struct tn_policy_result *r);

/* Fills err from r as tn_policy_evaluate does and returns TN_EINVALID; returns 0 (err untouched)
 * when r has no violation. For callers that add violations after evaluating (external ids). */
int tn_policy_result_error(const struct tn_policy_result *r, struct tn_error *err);

/* Ratcheting, for updates: every violation of cur that `before` also has (same policy, rule,
 * field and subject) is moved into cur's warnings as "already violated before this change: ...",
 * so a change that does not make a tenant less compliant is not refused because a policy
 * tightened after the tenant was written. Returns 0 or -ENOMEM. */
int tn_policy_ratchet(struct tn_policy_result *cur, const struct tn_policy_result *before);

/* ---- external ids --------------------------------------------------------------------------------- */

/* One external id held by a tenant. Borrowed strings. */
struct tn_external_id_claim {
  const char *tenant;  /* the tenant holding it (metadata.name) */
  enum tn_state state; /* that tenant's spec.state: a Deleted tenant's ids are released */
  const char *system;
  const char *id;
};

/* External ids are unique per system across tenants. Adds to out one violation (rule
 * "externalIds", field "spec.externalIds.<system>") for every external id of t that another
 * tenant in claims holds, naming that tenant, e.g. "spec.externalIds.billing: cus_8TzQ is already
 * the billing id of tenant acme; external ids are unique per system across tenants: correct it
 * here, or remove it from tenant acme first". Claims of t itself (same name) and of Deleted
 * tenants are ignored. only_changed (may be NULL) is the tenant before an update: ids it already
 * held unchanged are not checked again. Returns the number of violations added, or -ENOMEM. */
int tn_policy_check_external_ids(const struct tn_tenant *t, const struct tn_tenant *only_changed,
                                 const struct tn_external_id_claim *claims, size_t n,
                                 struct tn_policy_result *out);

#endif
