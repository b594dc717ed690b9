/* desired.c - the desired objects of a tenant (see desired.h). */
#include "tenancy/desired.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/derive.h"

static const struct {
  const char *kind, *api_version, *resource;
} kinds[TN_KIND_COUNT] = {
    [TN_KIND_NAMESPACE] = {"Namespace", "v1", "namespaces"},
    [TN_KIND_NETWORK_POLICY] = {"NetworkPolicy", "networking.k8s.io/v1", "networkpolicies"},
    [TN_KIND_RESOURCE_QUOTA] = {"ResourceQuota", "v1", "resourcequotas"},
    [TN_KIND_LIMIT_RANGE] = {"LimitRange", "v1", "limitranges"},
    [TN_KIND_ROLE_BINDING] = {"RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings"},
};

const char *tn_kind_name(enum tn_kind k) { return (unsigned)k < TN_KIND_COUNT ? kinds[k].kind : "?"; }
const char *tn_kind_api_version(enum tn_kind k) {
  return (unsigned)k < TN_KIND_COUNT ? kinds[k].api_version : "?";
}
const char *tn_kind_resource(enum tn_kind k) { return (unsigned)k < TN_KIND_COUNT ? kinds[k].resource : "?"; }

int tn_kind_parse(const char *api_version, const char *kind) {
  for (int i = 0; api_version && kind && i < TN_KIND_COUNT; i++)
    if (strcmp(kinds[i].kind, kind) == 0 && strcmp(kinds[i].api_version, api_version) == 0)
      return i;
  return -1;
}

void tn_object_list_cleanup(struct tn_object_list *l) {
  if (!l)
    return;
  for (size_t i = 0; l->items && i < l->len; i++) {
    free(l->items[i].namespace);
    free(l->items[i].name);
    free(l->items[i].environment);
    json_decref(l->items[i].body);
  }
  free(l->items);
  l->items = NULL;
  l->len = 0;
}

/* ---- hashing ------------------------------------------------------------------------------------ */

static int sha256_hex(const void *data, size_t len, char *out, size_t hex_digits) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen * 2 < hex_digits)
    return -ENOMEM;
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < hex_digits; i++)
    out[i] = hex[(md[i / 2] >> (i % 2 ? 0 : 4)) & 15];
  out[hex_digits] = '\0';
  return 0;
}

/* The hash of a body that does not carry the annotation. */
static int hash_plain(const json_t *body, char out[TN_SPEC_HASH_LEN + 1]) {
  char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  if (!text)
    return -ENOMEM;
  int rc = sha256_hex(text, strlen(text), out, TN_SPEC_HASH_LEN);
  free(text);
  return rc;
}

int tn_spec_hash(const json_t *body, char out[TN_SPEC_HASH_LEN + 1]) {
  json_t *copy = json_deep_copy(body);
  if (!copy)
    return -ENOMEM;
  json_t *ann = json_object_get(json_object_get(copy, "metadata"), "annotations");
  if (json_is_object(ann)) {
    json_object_del(ann, TN_ANNOTATION_SPEC_HASH);
    if (json_object_size(ann) == 0)
      json_object_del(json_object_get(copy, "metadata"), "annotations");
  }
  int rc = hash_plain(copy, out);
  json_decref(copy);
  return rc;
}

/* ---- names -------------------------------------------------------------------------------------- */

int tn_namespace_name(const char *tenant, const char *env, char *dst, size_t n, struct tn_error *err) {
  size_t len = strlen(tenant) + 1 + strlen(env);
  if (len > TN_NAMESPACE_NAME_MAX) {
    size_t room = strlen(tenant) + 1 < TN_NAMESPACE_NAME_MAX ? TN_NAMESPACE_NAME_MAX - strlen(tenant) - 1 : 0;
    return tn_error_set(
        err, TN_EINVALID,
        "environment \"%.63s\": namespace name \"%.63s-%.63s\" would be %zu characters, over the "
        "Kubernetes limit of %d; with tenant id \"%.63s\" an environment name may have at most %zu "
        "characters",
        env, tenant, env, len, TN_NAMESPACE_NAME_MAX, tenant, room);
  }
  if (len + 1 > n)
    return tn_error_set(err, TN_EINVALID, "namespace name buffer too small");
  snprintf(dst, n, "%s-%s", tenant, env);
  return 0;
}

int tn_desired_check_names(const struct tn_tenant *t, struct tn_error *err) {
  char ns[TN_NAMESPACE_NAME_MAX + 1];
  for (size_t i = 0; i < t->n_environments; i++) {
    int rc = tn_namespace_name(t->name, t->environments[i], ns, sizeof ns, err);
    if (rc) {
      tn_error_prefix(err, "spec.environments[%zu]", i);
      if (err) {
        err->n_causes = 1;
        snprintf(err->causes[0].field, sizeof err->causes[0].field, "spec.environments[%zu]", i);
        snprintf(err->causes[0].reason, sizeof err->causes[0].reason, "FieldValueTooLong");
        snprintf(err->reason, sizeof err->reason, "Invalid");
      }
      return rc;
    }
  }
  return 0;
}

/* ---- building blocks ---------------------------------------------------------------------------- */

struct builder {
  const struct tn_desired_input *in;
  struct tn_object_list *out;
  size_t cap;
  struct tn_container_defaults defaults;
};

/* The Pod Security level of the tenant's namespaces: the stricter of the plan's and the
 * policies' minimum. */
static const char *pod_security_level(const struct tn_desired_input *in) {
  enum tn_pod_security l = in->plan->pod_security;
  if (in->pod_security_minimum > l)
    l = in->pod_security_minimum;
  return tn_pod_security_name(l);
}

static json_t *labels_for(const struct builder *b, const char *env, bool is_namespace) {
  const struct tn_tenant *t = b->in->tenant;
  json_t *l = json_pack("{s:s, s:s, s:s}", TN_LABEL_TENANT, t->name, TN_LABEL_ENVIRONMENT, env,
                        TN_LABEL_MANAGED_BY, TN_MANAGED_BY);
  const char *level = is_namespace ? pod_security_level(b->in) : NULL;
  if (l && is_namespace &&
      (json_object_set_new(l, TN_LABEL_PSA_PREFIX "enforce", json_string(level)) ||
       json_object_set_new(l, TN_LABEL_PSA_PREFIX "enforce-version", json_string("latest")) ||
       json_object_set_new(l, TN_LABEL_PSA_PREFIX "warn", json_string(level)) ||
       json_object_set_new(l, TN_LABEL_PSA_PREFIX "warn-version", json_string("latest")) ||
       json_object_set_new(l, TN_LABEL_PSA_PREFIX "audit", json_string(level)) ||
       json_object_set_new(l, TN_LABEL_PSA_PREFIX "audit-version", json_string("latest")) ||
       json_object_set_new(l, TN_LABEL_PLAN, json_string(b->in->plan->name)) ||
       json_object_set_new(l, TN_LABEL_REGION, json_string(b->in->placement->region)) ||
       json_object_set_new(l, TN_LABEL_ISOLATION,
                           json_string(tn_isolation_name(b->in->placement->isolation))))) {
    json_decref(l);
    return NULL;
  }
  return l;
}

static json_t *metadata(const struct builder *b, const char *name, const char *ns, const char *env,
                        bool is_namespace) {
  const struct tn_tenant *t = b->in->tenant;
  json_t *m =
      json_pack("{s:s, s:o, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}", "name", name, "labels",
                labels_for(b, env, is_namespace), "ownerReferences", "apiVersion", TN_API_VERSION, "kind",
                "Tenant", "name", t->name, "uid", t->uid, "controller", 1, "blockOwnerDeletion", 1);
  if (m && ns && json_object_set_new(m, "namespace", json_string(ns))) {
    json_decref(m);
    return NULL;
  }
  return m;
}

/* Takes body (even on failure); hashes it, annotates it, appends it. */
static int add_object(struct builder *b, enum tn_kind kind, const char *ns, const char *name, const char *env,
                      json_t *body) {
  struct tn_object o = {.kind = kind};
  if (!body)
    return -ENOMEM;
  if (hash_plain(body, o.spec_hash) ||
      json_object_set_new(json_object_get(body, "metadata"), "annotations",
                          json_pack("{s:s}", TN_ANNOTATION_SPEC_HASH, o.spec_hash)))
    goto nomem;
  if (b->out->len == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    struct tn_object *items = realloc(b->out->items, cap * sizeof *items);
    if (!items)
      goto nomem;
    b->out->items = items;
    b->cap = cap;
  }
  o.name = strdup(name);
  o.environment = strdup(env);
  o.namespace = ns ? strdup(ns) : NULL;
  if (!o.name || !o.environment || (ns && !o.namespace)) {
    free(o.name);
    free(o.environment);
    free(o.namespace);
    goto nomem;
  }
  o.body = body;
  b->out->items[b->out->len++] = o;
  return 0;
nomem:
  json_decref(body);
  return -ENOMEM;
}

static json_t *object(const struct builder *b, enum tn_kind kind, const char *name, const char *ns,
                      const char *env) {
  return json_pack("{s:s, s:s, s:o}", "apiVersion", tn_kind_api_version(kind), "kind", tn_kind_name(kind),
                   "metadata", metadata(b, name, ns, env, kind == TN_KIND_NAMESPACE));
}

/* body[key] = value; both taken, NULL when either is NULL or on failure. */
static json_t *with(json_t *body, const char *key, json_t *value) {
  if (!body || !value) {
    json_decref(body);
    json_decref(value);
    return NULL;
  }
  if (json_object_set_new(body, key, value)) {
    json_decref(body);
    return NULL;
  }
  return body;
}

/* ---- the objects ----------------------------------------------------------------------------------- */

static int add_namespace(struct builder *b, const char *ns, const char *env) {
  return add_object(b, TN_KIND_NAMESPACE, NULL, ns, env, object(b, TN_KIND_NAMESPACE, ns, NULL, env));
}

static int add_netpol(struct builder *b, const char *ns, const char *env, const char *name, json_t *spec) {
  return add_object(b, TN_KIND_NETWORK_POLICY, ns, name, env,
                    with(object(b, TN_KIND_NETWORK_POLICY, name, ns, env), "spec", spec));
}

/* The peers of the tenant's own namespaces: every environment, or only env with crossEnvironment
 * Deny. Only the operator sets these labels on namespaces (tenants are granted namespaced roles
 * only). */
static json_t *own_namespaces(const struct builder *b, const char *env) {
  const char *id = b->in->tenant->name;
  if (b->in->plan->cross_environment == TN_CROSS_ENV_DENY)
    return json_pack("{s:{s:{s:s, s:s}}}", "namespaceSelector", "matchLabels", TN_LABEL_TENANT, id,
                     TN_LABEL_ENVIRONMENT, env);
  return json_pack("{s:{s:{s:s}}}", "namespaceSelector", "matchLabels", TN_LABEL_TENANT, id);
}

/* An ipBlock CIDR for host when it is an IP literal ("10.0.0.5/32", "fd00::5/128"), else "". */
static void host_cidr(const char *host, char *dst, size_t n) {
  unsigned char buf[sizeof(struct in6_addr)];
  dst[0] = '\0';
  if (!host)
    return;
  if (inet_pton(AF_INET, host, buf) == 1)
    snprintf(dst, n, "%s/32", host);
  else if (inet_pton(AF_INET6, host, buf) == 1)
    snprintf(dst, n, "%s/128", host);
}

/* The egress rule to the database server, or NULL (no rule) when no address is known. */
static json_t *database_egress(const struct tn_desired_database *db) {
  if (!db)
    return NULL;
  char cidr[INET6_ADDRSTRLEN + 8];
  host_cidr(db->host, cidr, sizeof cidr);
  json_t *to = json_array();
  if (to && cidr[0])
    json_array_append_new(to, json_pack("{s:{s:s}}", "ipBlock", "cidr", cidr));
  for (size_t i = 0; to && i < db->n_cidrs; i++)
    if (db->cidrs[i] && strcmp(db->cidrs[i], cidr) != 0)
      json_array_append_new(to, json_pack("{s:{s:s}}", "ipBlock", "cidr", db->cidrs[i]));
  if (!to || json_array_size(to) == 0) {
    json_decref(to);
    return NULL;
  }
  return json_pack("{s:o, s:[{s:s, s:i}]}", "to", to, "ports", "protocol", "TCP", "port",
                   db->port > 0 ? db->port : 5432);
}

static int add_network_policies(struct builder *b, const char *ns, const char *env, bool suspended) {
  const struct tn_plan *plan = b->in->plan;
  int rc;
  /* Every pod of the namespace is isolated in both directions; what is allowed comes below. */
  if ((rc = add_netpol(b, ns, env, TN_NETPOL_DEFAULT_DENY,
                       json_pack("{s:{}, s:[s,s]}", "podSelector", "policyTypes", "Ingress", "Egress"))))
    return rc;
  /* Suspended: nothing in, nothing out, not even DNS (the allow policy is removed). */
  if (suspended)
    return add_netpol(b, ns, env, TN_NETPOL_SUSPENDED,
                      json_pack("{s:{}, s:[s,s]}", "podSelector", "policyTypes", "Ingress", "Egress"));
  /* Ingress: the tenant's own namespaces, and the plan's ingress-controller namespaces. */
  json_t *from = json_array();
  if (from && json_array_append_new(from, own_namespaces(b, env))) {
    json_decref(from);
    from = NULL;
  }
  if (from && plan->n_ingress_namespaces) {
    json_t *values = json_array();
    for (size_t i = 0; values && i < plan->n_ingress_namespaces; i++)
      json_array_append_new(values, json_string(plan->ingress_namespaces[i]));
    if (!values ||
        json_array_append_new(from, json_pack("{s:{s:[{s:s, s:s, s:o}]}}", "namespaceSelector",
                                              "matchExpressions", "key", "kubernetes.io/metadata.name",
                                              "operator", "In", "values", values))) {
      json_decref(from);
      from = NULL;
    }
  }
  /* Egress: the same namespaces; DNS only to the cluster DNS pods (k8s-app=kube-dns: kube-dns and
   * CoreDNS alike) in kube-system, never port 53 of another tenant's pods; the database server. */
  json_t *egress =
      json_pack("[{s:[o]}, {s:[{s:{s:{s:s}}, s:{s:{s:s}}}], s:[{s:s, s:i}, {s:s, s:i}]}]", "to",
                own_namespaces(b, env), "to", "namespaceSelector", "matchLabels",
                "kubernetes.io/metadata.name", "kube-system", "podSelector", "matchLabels", "k8s-app",
                "kube-dns", "ports", "protocol", "UDP", "port", 53, "protocol", "TCP", "port", 53);
  json_t *db = database_egress(b->in->database);
  if (egress && db && json_array_append_new(egress, db)) {
    json_decref(egress);
    egress = NULL;
  } else if (!egress) {
    json_decref(db);
  }
  /* One policy for both directions (rules add up): one object fewer per namespace to write,
   * watch and cache. */
  json_t *spec = NULL;
  if (from && egress)
    spec = json_pack("{s:{}, s:[s,s], s:[{s:o}], s:o}", "podSelector", "policyTypes", "Ingress", "Egress",
                     "ingress", "from", from, "egress", egress);
  else {
    json_decref(from);
    json_decref(egress);
  }
  return add_netpol(b, ns, env, TN_NETPOL_ALLOW_SAME_TENANT, spec);
}

/* Environment i's ResourceQuota and LimitRange: the plan's quotas, or with quotaScope Tenant its
 * share of them (tn_quota_share), so that the namespaces together never exceed the plan. */
static int add_quota(struct builder *b, const char *ns, const char *env, size_t i, bool suspended) {
  struct tn_quota_share q;
  tn_quota_share(&b->in->plan->quotas, b->in->plan->quota_scope, b->in->tenant->n_environments, i, &q);
  char pods[24], services[24];
  snprintf(pods, sizeof pods, "%" PRId64, suspended ? (int64_t)0 : q.pods);
  snprintf(services, sizeof services, "%" PRId64, q.services);
  json_t *spec = json_pack("{s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}}", "hard", "limits.cpu", q.cpu,
                           "limits.memory", q.memory, "pods", pods, "requests.cpu", q.cpu, "requests.memory",
                           q.memory, "requests.storage", q.storage, "services", services);
  return add_object(b, TN_KIND_RESOURCE_QUOTA, ns, TN_QUOTA_NAME, env,
                    with(object(b, TN_KIND_RESOURCE_QUOTA, TN_QUOTA_NAME, ns, env), "spec", spec));
}

static int add_limit_range(struct builder *b, const char *ns, const char *env, size_t i) {
  const struct tn_plan *plan = b->in->plan;
  struct tn_container_defaults dd;
  const struct tn_container_defaults *d = &b->defaults;
  struct tn_quota_share q;
  tn_quota_share(&plan->quotas, plan->quota_scope, b->in->tenant->n_environments, i, &q);
  if (plan->quota_scope == TN_QUOTA_SCOPE_TENANT) {
    struct tn_plan share = *plan; /* shallow: only the numbers below are read */
    share.quotas.cpu_milli = q.cpu_milli;
    share.quotas.memory_milli = q.memory_bytes * 1000;
    share.quotas.pods = q.pods;
    tn_derive_container_defaults(&share, &dd);
    d = &dd;
  }
  json_t *spec =
      json_pack("{s:[{s:s, s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s, s:s}}, {s:s, s:{s:s}}]}", "limits", "type",
                "Container", "default", "cpu", d->limit_cpu, "memory", d->limit_memory, "defaultRequest",
                "cpu", d->request_cpu, "memory", d->request_memory, "max", "cpu", d->max_cpu, "memory",
                d->max_memory, "type", "PersistentVolumeClaim", "max", "storage", q.storage);
  return add_object(b, TN_KIND_LIMIT_RANGE, ns, TN_LIMITRANGE_NAME, env,
                    with(object(b, TN_KIND_LIMIT_RANGE, TN_LIMITRANGE_NAME, ns, env), "spec", spec));
}

struct binding {
  char name[64];
  const struct tn_group_binding *gb;
  enum tn_role role; /* gb->role, or viewer while Suspended */
};

/* What the groups of spec.identity.groupBindings get. */
enum access_mode {
  ACCESS_AS_BOUND, /* Active: each its role */
  ACCESS_VIEWER,   /* Suspended with access Viewer: tenancy-tenant-viewer */
  ACCESS_NONE,     /* Suspended with access None, Archived: nothing */
};

static int cmp_binding(const void *a, const void *b) {
  return strcmp(((const struct binding *)a)->name, ((const struct binding *)b)->name);
}

/* The bindings, one per distinct (group, role), named tenant-<role>-<first 10 hex digits of
 * SHA-256(group)>, sorted by name. *out is malloc'd. */
static bool group_refused(const struct tn_desired_input *in, const char *group) {
  if (tn_subject_is_reserved(group))
    return true;
  for (size_t i = 0; i < in->n_refused_groups; i++)
    if (in->refused_groups[i] && strcmp(in->refused_groups[i], group) == 0)
      return true;
  return false;
}

static int binding_names(const struct tn_desired_input *in, enum access_mode access, struct binding **out,
                         size_t *n_out) {
  const struct tn_tenant *t = in->tenant;
  *out = NULL;
  *n_out = 0;
  if (!t->n_group_bindings || access == ACCESS_NONE)
    return 0;
  struct binding *v = calloc(t->n_group_bindings, sizeof *v);
  size_t n = 0;
  if (!v)
    return -ENOMEM;
  for (size_t i = 0; i < t->n_group_bindings; i++) {
    const struct tn_group_binding *gb = &t->group_bindings[i];
    char h[11];
    if (!gb->group || group_refused(in, gb->group))
      continue; /* never bound: the reconciler reports it (AccessBound) */
    if (sha256_hex(gb->group, strlen(gb->group), h, 10)) {
      free(v);
      return -ENOMEM;
    }
    /* "tenant-admin" -> "tenant-admin-<hash>" */
    v[n].role = access == ACCESS_VIEWER ? TN_ROLE_VIEWER : gb->role;
    snprintf(v[n].name, sizeof v[n].name, "%s-%s", tn_role_name(v[n].role), h);
    v[n].gb = gb;
    bool dup = false;
    for (size_t j = 0; j < n; j++)
      dup = dup || (strcmp(v[j].name, v[n].name) == 0 && strcmp(v[j].gb->group, gb->group) == 0);
    if (!dup)
      n++;
  }
  qsort(v, n, sizeof *v, cmp_binding);
  *out = v;
  *n_out = n;
  return 0;
}

static int add_role_bindings(struct builder *b, const char *ns, const char *env, const struct binding *v,
                             size_t n) {
  for (size_t i = 0; i < n; i++) {
    char role[64];
    snprintf(role, sizeof role, "%s%s", TN_CLUSTERROLE_PREFIX, tn_role_name(v[i].role));
    json_t *body = object(b, TN_KIND_ROLE_BINDING, v[i].name, ns, env);
    body = with(body, "roleRef",
                json_pack("{s:s, s:s, s:s}", "apiGroup", "rbac.authorization.k8s.io", "kind", "ClusterRole",
                          "name", role));
    body = with(body, "subjects",
                json_pack("[{s:s, s:s, s:s}]", "apiGroup", "rbac.authorization.k8s.io", "kind", "Group",
                          "name", v[i].gb->group));
    int rc = add_object(b, TN_KIND_ROLE_BINDING, ns, v[i].name, env, body);
    if (rc)
      return rc;
  }
  return 0;
}

int tn_desired_build(const struct tn_desired_input *in, struct tn_object_list *out, struct tn_error *err) {
  struct builder b = {.in = in, .out = out};
  struct binding *bindings = NULL;
  size_t n_bindings = 0;
  char(*names)[TN_NAMESPACE_NAME_MAX + 1] = NULL;
  int rc = 0;
  out->items = NULL;
  out->len = 0;
  const struct tn_tenant *t = in->tenant;
  if (!t)
    return tn_error_set(err, TN_EINVALID, "no tenant given");
  bool archived_kept = in->state == TN_STATE_ARCHIVED && in->archive_retained;
  if (in->state != TN_STATE_ACTIVE && in->state != TN_STATE_SUSPENDED && !archived_kept)
    return 0; /* Draft: nothing yet; Archived once purged, Deleted: everything removed */
  /* Archived and retained: closed as while Suspended, with no access left. */
  bool suspended = in->state == TN_STATE_SUSPENDED || archived_kept;
  enum access_mode access =
      archived_kept ? ACCESS_NONE
      : in->state == TN_STATE_SUSPENDED
          ? (in->suspension_access == TN_SUSPEND_ACCESS_NONE ? ACCESS_NONE : ACCESS_VIEWER)
          : ACCESS_AS_BOUND;
  if (!t->uid)
    return tn_error_set(err, TN_EINVALID,
                        "tenant %s has no metadata.uid: its objects need an owner reference", t->name);
  if (!in->plan)
    return tn_error_set(err, TN_EINVALID, "tenant %s: no plan given for state %s", t->name,
                        tn_state_name(in->state));
  if (!in->placement || !in->placement->region[0])
    return tn_error_set(err, TN_EINVALID, "tenant %s: no placement given for state %s", t->name,
                        tn_state_name(in->state));
  if ((rc = tn_desired_check_names(t, err)))
    return rc;
  if (t->n_environments == 0)
    return 0;
  tn_derive_container_defaults(in->plan, &b.defaults);
  if (!(names = calloc(t->n_environments, sizeof *names)) ||
      binding_names(in, access, &bindings, &n_bindings)) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < t->n_environments; i++)
    if ((rc = tn_namespace_name(t->name, t->environments[i], names[i], sizeof names[i], err)))
      goto out;

  /* Kind-major: every namespace first, then each kind in creation order. */
  for (size_t i = 0; i < t->n_environments && !rc; i++)
    rc = add_namespace(&b, names[i], t->environments[i]);
  for (size_t i = 0; i < t->n_environments && !rc; i++)
    rc = add_network_policies(&b, names[i], t->environments[i], suspended);
  for (size_t i = 0; i < t->n_environments && !rc; i++)
    rc = add_quota(&b, names[i], t->environments[i], i, suspended);
  for (size_t i = 0; i < t->n_environments && !rc; i++)
    rc = add_limit_range(&b, names[i], t->environments[i], i);
  for (size_t i = 0; i < t->n_environments && !rc; i++)
    rc = add_role_bindings(&b, names[i], t->environments[i], bindings, n_bindings);
  if (rc)
    rc = tn_error_set(err, rc, "building the objects of tenant %s: out of memory", t->name);
out:
  if (rc)
    tn_object_list_cleanup(out);
  free(bindings);
  free(names);
  return rc;
}
