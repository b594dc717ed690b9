/* tenant.h - the Tenant, Plan and Region resources as plain C structs, parsed and validated
 * from their JSON (jansson), with validation errors that name the offending field. Pure: no
 * network, no clock, no globals. */
#ifndef TN_TENANCY_TENANT_H
#define TN_TENANCY_TENANT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tenancy/ratelimits.h"
#include "util/error.h"

/* The API group, version and kinds of docs/api.md. */
#define TN_API_GROUP "tenancy.dev"
#define TN_API_VERSION "tenancy.dev/v1alpha1"

/* Lifecycle states (spec.state, status.state). TN_STATE_NONE is an empty status.state: a
 * tenant the operator has not reconciled yet. The numeric order is not meaningful. */
enum tn_state {
  TN_STATE_NONE = 0,
  TN_STATE_DRAFT,
  TN_STATE_ACTIVE,
  TN_STATE_SUSPENDED,
  TN_STATE_ARCHIVED,
  TN_STATE_DELETED,
};
#define TN_STATE_COUNT 6

/* "Draft", "Active", ...; "" for TN_STATE_NONE; "?" for a value out of range. Static. */
const char *tn_state_name(enum tn_state s);
/* The exact (case-sensitive) name to a state; "" and NULL give TN_STATE_NONE. Returns 0 or
 * TN_EINVALID. */
int tn_state_parse(const char *s, enum tn_state *out);

/* spec.isolation. */
enum tn_isolation {
  TN_ISOLATION_SHARED = 0,
  TN_ISOLATION_DEDICATED,
  TN_ISOLATION_HYBRID,
};
#define TN_ISOLATION_COUNT 3

/* The Placed condition's reason while spec.isolation differs from status.placement.isolation (after
 * a TenantMigration changed the isolation): the tenant is served by the status (docs/migration.md). */
#define TN_REASON_ISOLATION_DRIFT "IsolationDrift"
const char *tn_isolation_name(enum tn_isolation i);            /* "shared", ...; "?" out of range. Static. */
int tn_isolation_parse(const char *s, enum tn_isolation *out); /* 0 or TN_EINVALID */

/* spec.identity.groupBindings[].role: the tenant roles shipped in manifests/, bound to the
 * ClusterRoles tenancy-<role name>. */
enum tn_role {
  TN_ROLE_ADMIN = 0, /* "tenant-admin" */
  TN_ROLE_DEVELOPER, /* "tenant-developer" */
  TN_ROLE_VIEWER,    /* "tenant-viewer" */
};
#define TN_ROLE_COUNT 3

const char *tn_role_name(enum tn_role r);            /* "tenant-admin", ...; "?" out of range. Static. */
int tn_role_parse(const char *s, enum tn_role *out); /* 0 or TN_EINVALID */

/* Whether name (a group or user name) is reserved to Kubernetes itself: it starts with
 * "system:" (system:authenticated, system:serviceaccounts, system:masters, system:nodes,
 * system:serviceaccount:<ns>:<name>, ...). Such a subject is never bound by the operator: one
 * binding would open a tenant's namespaces to every identity in the cluster, or name a
 * component's own identity. NULL is not reserved. */
#define TN_RESERVED_SUBJECT_PREFIX "system:"
bool tn_subject_is_reserved(const char *name);

/* True when s is an RFC 1123 DNS label: 1 to 63 characters of [a-z0-9-], starting and ending
 * with a letter or digit. NULL is not. */
bool tn_is_dns_label(const char *s);

/* A Kubernetes quantity ("4", "500m", "8Gi", "1.5", "2e3") in thousandths of its unit
 * (millicores for CPU, millibytes for memory), rounded up as Kubernetes' MilliValue does.
 * Returns 0, or TN_EINVALID for text that is not a quantity, is negative, or does not fit in
 * int64 thousandths (about 9.2 PB). */
int tn_quantity_parse(const char *s, int64_t *milli);

/* ---- Tenant ---------------------------------------------------------------------------------- */

struct tn_contact {
  char *role; /* "technical", "billing" or "incident" */
  char *name; /* may be NULL */
  char *email;
};

struct tn_external_id {
  char *system; /* e.g. "billing" */
  char *id;
};

struct tn_group_binding {
  char *group; /* any non-empty string: it is only ever written through jansson */
  enum tn_role role;
};

struct tn_residency {
  char **allowed_regions; /* DNS labels, as written (order kept); n may be 0 */
  size_t n_allowed_regions;
  char *preferred_region; /* NULL when not set */
  char **flags;           /* e.g. "eu-only"; evaluated by policy, not by placement */
  size_t n_flags;
};

/* A parsed Tenant. Every string is owned by the struct; optional strings are NULL when absent
 * or empty. Filled by tn_tenant_parse, freed with tn_tenant_free. */
struct tn_tenant {
  char *name;                  /* metadata.name, the tenant id: a DNS label; never NULL */
  char *uid;                   /* metadata.uid; NULL when absent (e.g. a manifest not yet applied) */
  long long generation;        /* metadata.generation; 0 when absent */
  char *display_name;          /* spec.displayName */
  enum tn_state state;         /* spec.state; TN_STATE_DRAFT when absent, never TN_STATE_NONE */
  char *state_reason;          /* spec.stateReason */
  char *deletion_confirmation; /* spec.deletionConfirmation */
  char *plan;                  /* spec.plan: a DNS label (it is also a label value); never NULL */
  /* The effective isolation mode: status.placement.isolation once the tenant is placed (status.state
   * Active, Suspended or Archived with a status.placement.region), spec.isolation before. A
   * TenantMigration's cutover changes it; spec.isolation may then catch up (docs/migration.md). */
  enum tn_isolation isolation;
  enum tn_isolation spec_isolation; /* spec.isolation; shared when absent */
  struct tn_residency residency;
  char **environments; /* spec.environments: distinct DNS labels, order kept; n may be 0 */
  size_t n_environments;
  struct tn_contact *contacts;
  size_t n_contacts;
  struct tn_external_id *external_ids; /* sorted by system */
  size_t n_external_ids;
  char *identity_domain; /* spec.identity.domain */
  struct tn_group_binding *group_bindings;
  size_t n_group_bindings;
  /* spec.rateLimitOverrides: the buckets it sets, as bits 1u << TN_RATE_LIMIT_KEY_* (0 when
   * absent); the values are read by tn_rate_limits_apply_overrides. */
  unsigned rate_limit_overrides;

  /* What the operator wrote back last time (status). */
  enum tn_state status_state;         /* status.state; TN_STATE_NONE when absent or "" */
  char *status_region;                /* status.placement.region */
  bool status_isolation_set;          /* status.placement.isolation holds a known mode */
  enum tn_isolation status_isolation; /* status.placement.isolation when set */
  char *last_correlation_id;          /* status.lastCorrelationId */
  long long observed_generation;      /* status.observedGeneration; 0 when absent */
};

/* Parses and validates a Tenant object (obj borrowed). On success *out is a new tenant the
 * caller frees with tn_tenant_free. On failure returns TN_EINVALID (or -ENOMEM), *out is NULL,
 * and err names the field: message "spec.environments[1]: \"Prod\" is not a DNS label ...",
 * causes[0].field "spec.environments[1]". Unknown fields are ignored (the CRD's structural
 * schema prunes them). */
int tn_tenant_parse(const json_t *obj, struct tn_tenant **out, struct tn_error *err);

/* Whether obj's metadata.ownerReferences hold one to the Tenant with this uid (kind Tenant,
 * apiVersion in group tenancy.dev): what makes an object the operator's to change or delete. */
bool tn_owned_by_tenant(const json_t *obj, const char *tenant_uid);
void tn_tenant_free(struct tn_tenant *t); /* accepts NULL */

/* ---- Plan ------------------------------------------------------------------------------------ */

struct tn_quotas {
  char *cpu;              /* as written, a valid quantity > 0 (e.g. "4"); never NULL */
  char *memory;           /* > 0, e.g. "8Gi"; never NULL */
  char *storage;          /* >= 0, e.g. "50Gi"; never NULL */
  int64_t cpu_milli;      /* cpu in millicores */
  int64_t memory_milli;   /* memory in thousandths of a byte */
  int64_t storage_milli;  /* storage in thousandths of a byte */
  int64_t pods;           /* >= 0 */
  int64_t services;       /* >= 0 */
  int64_t connections;    /* >= 0, or -1 when the plan does not set it */
  int64_t events_per_day; /* >= 0, or -1 when the plan does not set it */
};

/* Plan spec.podSecurity: the Pod Security Standards level enforced on tenant namespaces, in
 * increasing strictness (privileged is never allowed). */
enum tn_pod_security {
  TN_POD_SECURITY_BASELINE = 0,
  TN_POD_SECURITY_RESTRICTED,
};
const char *tn_pod_security_name(enum tn_pod_security l);            /* "baseline", "restricted"; static */
int tn_pod_security_parse(const char *s, enum tn_pod_security *out); /* 0 or TN_EINVALID */

/* Plan spec.network.crossEnvironment: whether a tenant's environments reach each other. */
enum tn_cross_env {
  TN_CROSS_ENV_ALLOW = 0, /* every namespace of the tenant reaches every other (the default) */
  TN_CROSS_ENV_DENY,      /* each environment's namespace reaches only itself */
};

/* Plan spec.quotaScope: what the plan's cpu, memory, storage, pods and services limit. */
enum tn_quota_scope {
  TN_QUOTA_SCOPE_ENVIRONMENT = 0, /* each environment gets the whole plan (the default) */
  TN_QUOTA_SCOPE_TENANT,          /* the plan is split across the environments (tn_quota_share) */
};
const char *tn_quota_scope_name(enum tn_quota_scope s); /* "Environment", "Tenant"; static */

struct tn_feature {
  char *name;
  bool enabled;
};

/* A parsed Plan; strings owned by the struct; freed with tn_plan_free. */
struct tn_plan {
  char *name;                  /* metadata.name */
  struct tn_quotas quotas;     /* spec.quotas: cpu, memory, storage, pods, services required */
  struct tn_feature *features; /* spec.features (name -> bool), sorted by name */
  size_t n_features;
  bool has_rate_limits;              /* spec.rateLimits present */
  int64_t requests_per_second;       /* spec.rateLimits.requestsPerSecond, >= 0 */
  int64_t burst;                     /* spec.rateLimits.burst, >= 0 */
  struct tn_rate_limits rate_limits; /* spec.rateLimits with its endpoints (tenancy/ratelimits.h) */
  enum tn_pod_security pod_security; /* spec.podSecurity; restricted when absent */
  char **ingress_namespaces;         /* spec.network.ingressNamespaces: DNS labels, distinct; n may be 0 */
  size_t n_ingress_namespaces;
  enum tn_cross_env cross_environment; /* spec.network.crossEnvironment; Allow when absent */
  enum tn_quota_scope quota_scope;     /* spec.quotaScope; Environment when absent */
};

/* Parses and validates a Plan (obj borrowed); same contract as tn_tenant_parse. Quantities may
 * be written as strings or as JSON integers (cpu: 4). */
int tn_plan_parse(const json_t *obj, struct tn_plan **out, struct tn_error *err);
void tn_plan_free(struct tn_plan *p); /* accepts NULL */

/* ---- Region ---------------------------------------------------------------------------------- */

/* A parsed Region; freed with tn_region_free. spec.databaseServers is not read here. */
struct tn_region {
  char *name;               /* metadata.name, a DNS label */
  bool available;           /* spec.available; false when absent */
  unsigned isolation_modes; /* spec.isolationModes as bits 1u << enum tn_isolation */
};

int tn_region_parse(const json_t *obj, struct tn_region **out, struct tn_error *err);
void tn_region_free(struct tn_region *r); /* accepts NULL */

#endif
