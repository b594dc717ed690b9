/* desired.h - the desired-state builder: for a tenant in a lifecycle state, on a plan, at a
 * placement, the JSON of every object the operator owns (namespaces, network policies, quota,
 * limit range, role bindings), each with its managed labels, owner reference and spec hash.
 * Pure: the output depends only on the input, so equal inputs give byte-identical objects. */
#ifndef TN_TENANCY_DESIRED_H
#define TN_TENANCY_DESIRED_H

#include <jansson.h>
#include <stddef.h>

#include "tenancy/placement.h"
#include "tenancy/retention.h"
#include "tenancy/tenant.h"
#include "util/error.h"

/* Labels and annotation of docs/api.md (and the extra namespace labels). */
#define TN_LABEL_TENANT "tenancy.dev/tenant"
#define TN_LABEL_ENVIRONMENT "tenancy.dev/environment"
#define TN_LABEL_PLAN "tenancy.dev/plan"
#define TN_LABEL_REGION "tenancy.dev/region"
#define TN_LABEL_ISOLATION "tenancy.dev/isolation"
#define TN_LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define TN_MANAGED_BY "tenancy-operator"
#define TN_ANNOTATION_SPEC_HASH "tenancy.dev/spec-hash"

/* Pod Security admission labels on every tenant namespace (enforce, warn and audit at one level,
 * each with version "latest"). */
#define TN_LABEL_PSA_PREFIX "pod-security.kubernetes.io/"

/* Names of the per-environment objects. */
#define TN_NETPOL_DEFAULT_DENY "default-deny"
#define TN_NETPOL_ALLOW_SAME_TENANT "allow-same-tenant"
#define TN_NETPOL_SUSPENDED "suspended-deny-all"
#define TN_QUOTA_NAME "tenant-quota"
#define TN_LIMITRANGE_NAME "tenant-limits"
#define TN_CLUSTERROLE_PREFIX "tenancy-" /* + "tenant-admin" etc. */

/* Kubernetes limits a namespace name (a DNS label) to 63 characters. */
#define TN_NAMESPACE_NAME_MAX 63

/* The kinds the operator owns, in the order they are created (namespaces first; role bindings,
 * which give people access, last: by then isolation and quota are in place). */
enum tn_kind {
  TN_KIND_NAMESPACE = 0,
  TN_KIND_NETWORK_POLICY,
  TN_KIND_RESOURCE_QUOTA,
  TN_KIND_LIMIT_RANGE,
  TN_KIND_ROLE_BINDING,
};
#define TN_KIND_COUNT 5

const char *tn_kind_name(enum tn_kind k);        /* "Namespace", ...; static */
const char *tn_kind_api_version(enum tn_kind k); /* "v1", "networking.k8s.io/v1", ...; static */
const char *tn_kind_resource(enum tn_kind k);    /* "namespaces", "networkpolicies", ...; static */
/* The kind of apiVersion/kind, or -1 when the operator does not own it. */
int tn_kind_parse(const char *api_version, const char *kind);

/* Hex SHA-256 prefix (128 bits) of an object's content. */
#define TN_SPEC_HASH_LEN 32

/* One desired object. Everything is owned by the object (freed with its list). */
struct tn_object {
  enum tn_kind kind;
  char *namespace; /* NULL for a Namespace (cluster-scoped) */
  char *name;
  char *environment; /* the environment it belongs to */
  char spec_hash[TN_SPEC_HASH_LEN + 1];
  json_t *body; /* the complete object (apiVersion, kind, metadata, spec...), hash annotation included */
};

/* A caller-owned list: zero it (or let a function fill it), free it with tn_object_list_cleanup. */
struct tn_object_list {
  struct tn_object *items;
  size_t len;
};
void tn_object_list_cleanup(struct tn_object_list *l); /* accepts NULL; leaves the list empty */

/* The spec hash of body (borrowed): SHA-256 of its compact, key-sorted JSON without the
 * tenancy.dev/spec-hash annotation itself, as TN_SPEC_HASH_LEN lowercase hex digits. Returns 0
 * or -ENOMEM. */
int tn_spec_hash(const json_t *body, char out[TN_SPEC_HASH_LEN + 1]);

/* The namespace of environment env of tenant tenant: "<tenant>-<env>" into dst[n]. Returns 0,
 * or TN_EINVALID when it would pass TN_NAMESPACE_NAME_MAX (the message names the environment,
 * the length and the limit) or does not fit in n. */
int tn_namespace_name(const char *tenant, const char *env, char *dst, size_t n, struct tn_error *err);

/* Checks every environment's namespace name of t (borrowed) against the 63-character limit, so
 * that a tenant can be refused at apply time: the error names spec.environments[i]. */
int tn_desired_check_names(const struct tn_tenant *t, struct tn_error *err);

/* Where the tenant's database server listens, for the egress rule of allow-same-tenant. */
struct tn_desired_database {
  const char *host;         /* an IPv4 or IPv6 literal gets a /32 or /128 ipBlock; a hostname gets none */
  int port;                 /* TCP port; 0 means 5432 */
  const char *const *cidrs; /* the Region's databaseServers[].egressCIDRs, added as they are */
  size_t n_cidrs;
};

/* What the builder needs; all borrowed. */
struct tn_desired_input {
  const struct tn_tenant *tenant;       /* name, uid, environments, group bindings */
  enum tn_state state;                  /* the state reached: tn_lifecycle_plan()'s `next` */
  const struct tn_plan *plan;           /* needed in Active and Suspended */
  const struct tn_placement *placement; /* needed in Active and Suspended */
  /* The strictest TenancyPolicy spec.podSecurity.minimum (baseline, the zero value, when none):
   * namespaces get the stricter of it and the plan's spec.podSecurity. */
  enum tn_pod_security pod_security_minimum;
  /* Groups a policy refuses (tn_policy_result.refused_groups): never bound. Groups reserved to
   * Kubernetes (tn_subject_is_reserved) are never bound whatever this says. */
  const char *const *refused_groups;
  size_t n_refused_groups;
  const struct tn_desired_database *database; /* NULL: no database egress rule */
  /* TenancyPolicy spec.suspension.access: the role the groups keep while Suspended (the zero
   * value is Viewer). */
  enum tn_suspension_access suspension_access;
  /* Archived and its data still retained (tn_archive_schedule: not due): the namespaces are
   * kept, closed as while Suspended and with no access at all. False: Archived builds nothing. */
  bool archive_retained;
};

/* Builds the desired objects into *out (which must be empty: zeroed or cleaned up).
 *  - Active: per environment, in this order: Namespace <tenant>-<env> (labelled with the Pod
 *    Security level); NetworkPolicies default-deny, allow-same-tenant (ingress from the tenant's
 *    own namespaces, or only its own environment's with plan crossEnvironment Deny, and from the
 *    plan's ingressNamespaces; egress to the same namespaces, DNS to kube-dns and TCP to the
 *    database server);
 *    ResourceQuota tenant-quota (the plan's quotas, or with Plan quotaScope Tenant the
 *    environment's share of them, see tn_quota_share); LimitRange
 *    tenant-limits; RoleBindings tenant-<role>-<hash of group> (one per distinct
 *    identity.groupBindings entry whose group is neither reserved nor refused, sorted by name).
 *  - Suspended: the same, except ResourceQuota pods "0", and the network policies are
 *    default-deny and suspended-deny-all only (NetworkPolicies add up: a deny-all policy beside
 *    allow policies blocks nothing, so the allow policies are removed while suspended).
 *    The RoleBindings bind tenancy-tenant-viewer instead of each group's role (one
 *    tenant-viewer-<hash> per group) with suspension_access Viewer, and are absent with None.
 *    Resuming builds the Active objects again, byte for byte.
 *  - Archived with archive_retained: as Suspended with access None (namespaces, default-deny and
 *    suspended-deny-all, quota pods "0", limit range; no RoleBinding).
 *  - Draft, Archived once purged, Deleted (and TN_STATE_NONE): nothing (an empty list, returns 0).
 * Returns 0, or TN_EINVALID (a namespace name over 63 characters, a tenant without uid, a
 * missing plan or placement: the message says which), or -ENOMEM; *out is empty on failure. */
int tn_desired_build(const struct tn_desired_input *in, struct tn_object_list *out, struct tn_error *err);

#endif
