/* test_desired.c - the desired objects of a tenant in each lifecycle state: names, labels,
 * owner references, quota and limit values, network policies, role bindings, the spec hash,
 * determinism, and escaping of hostile input. Also derive (status.derived). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/derive.h"
#include "tenancy/desired.h"

static json_t *load(const char *text) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  cr_assert_not_null(j, "fixture does not parse: %s", je.text);
  return j;
}

static const char tenant_json[] =
    "{\"metadata\":{\"name\":\"acme\",\"uid\":\"uid-acme-1\",\"generation\":3},"
    "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"isolation\":\"shared\","
    "\"environments\":[\"prod\",\"staging\"],"
    "\"identity\":{\"groupBindings\":[{\"group\":\"acme-admins\",\"role\":\"tenant-admin\"},"
    "{\"group\":\"acme-devs\",\"role\":\"tenant-developer\"},"
    "{\"group\":\"acme-admins\",\"role\":\"tenant-admin\"}]}}}";

static const char plan_json[] =
    "{\"metadata\":{\"name\":\"standard\"},\"spec\":{\"features\":{\"sso\":true,\"auditExport\":false},"
    "\"quotas\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"50Gi\",\"pods\":50,\"services\":10,"
    "\"connections\":20,\"eventsPerDay\":100000},\"rateLimits\":{\"requestsPerSecond\":50,\"burst\":100}}}";

struct fixture {
  json_t *tj, *pj;
  struct tn_tenant *t;
  struct tn_plan *p;
  struct tn_placement placement;
};

static void setup(struct fixture *f, const char *tenant_text, const char *plan_text) {
  struct tn_error err = {0};
  f->tj = load(tenant_text);
  f->pj = load(plan_text);
  cr_assert_eq(tn_tenant_parse(f->tj, &f->t, &err), 0, "%s", err.message);
  cr_assert_eq(tn_plan_parse(f->pj, &f->p, &err), 0, "%s", err.message);
  f->placement = (struct tn_placement){.region = "eu-west-1", .isolation = TN_ISOLATION_SHARED};
}

static void teardown_fixture(struct fixture *f) {
  tn_tenant_free(f->t);
  tn_plan_free(f->p);
  json_decref(f->tj);
  json_decref(f->pj);
}

static void build(struct fixture *f, enum tn_state state, struct tn_object_list *out) {
  struct tn_error err = {0};
  struct tn_desired_input in = {.tenant = f->t, .state = state, .plan = f->p, .placement = &f->placement};
  cr_assert_eq(tn_desired_build(&in, out, &err), 0, "%s", err.message);
}

static const struct tn_object *find(const struct tn_object_list *l, enum tn_kind kind, const char *ns,
                                    const char *name) {
  for (size_t i = 0; i < l->len; i++)
    if (l->items[i].kind == kind && strcmp(l->items[i].name, name) == 0 &&
        ((!ns && !l->items[i].namespace) ||
         (ns && l->items[i].namespace && strcmp(ns, l->items[i].namespace) == 0)))
      return &l->items[i];
  return NULL;
}

static const char *str_at(const json_t *j, const char *path) {
  /* a tiny dotted-path reader for assertions: "metadata.labels.x" (keys may not contain '.') */
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  const json_t *cur = j;
  for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
    cur = json_object_get(cur, tok);
  return json_string_value(cur);
}

static const char *label(const struct tn_object *o, const char *key) {
  return json_string_value(
      json_object_get(json_object_get(json_object_get(o->body, "metadata"), "labels"), key));
}

static char *dump(const json_t *j) { return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS); }

static const char *const active_netpols[] = {"default-deny", "allow-same-tenant"};

Test(desired, active_tenant_objects_names_and_order) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  struct tn_object_list l = {0};
  build(&f, TN_STATE_ACTIVE, &l);
  /* per environment: namespace, 2 policies, quota, limit range, 2 distinct bindings */
  cr_assert_eq(l.len, 2 * 7);
  const char *envs[] = {"prod", "staging"};
  for (int e = 0; e < 2; e++) {
    char ns[64];
    snprintf(ns, sizeof ns, "acme-%s", envs[e]);
    const struct tn_object *o = find(&l, TN_KIND_NAMESPACE, NULL, ns);
    cr_assert_not_null(o, "%s", ns);
    cr_assert_str_eq(o->environment, envs[e]);
    for (int i = 0; i < 2; i++)
      cr_assert_not_null(find(&l, TN_KIND_NETWORK_POLICY, ns, active_netpols[i]), "%s/%s", ns,
                         active_netpols[i]);
    cr_assert_null(find(&l, TN_KIND_NETWORK_POLICY, ns, "allow-dns"), "DNS is in allow-same-tenant");
    cr_assert_null(find(&l, TN_KIND_NETWORK_POLICY, ns, "suspended-deny-all"));
    cr_assert_not_null(find(&l, TN_KIND_RESOURCE_QUOTA, ns, "tenant-quota"));
    cr_assert_not_null(find(&l, TN_KIND_LIMIT_RANGE, ns, "tenant-limits"));
  }
  /* kind-major creation order: namespaces first, role bindings last */
  for (size_t i = 1; i < l.len; i++)
    cr_assert_leq(l.items[i - 1].kind, l.items[i].kind, "item %zu", i);
  cr_assert_eq(l.items[0].kind, TN_KIND_NAMESPACE);
  cr_assert_str_eq(l.items[0].name, "acme-prod");
  cr_assert_str_eq(l.items[1].name, "acme-staging");
  /* the in-namespace objects point at their namespace */
  for (size_t i = 0; i < l.len; i++) {
    const char *ns = str_at(l.items[i].body, "metadata.namespace");
    if (l.items[i].kind == TN_KIND_NAMESPACE) {
      cr_assert_null(ns);
      cr_assert_null(l.items[i].namespace);
    } else {
      cr_assert_str_eq(ns, l.items[i].namespace);
    }
    cr_assert_str_eq(str_at(l.items[i].body, "metadata.name"), l.items[i].name);
    cr_assert_str_eq(str_at(l.items[i].body, "kind"), tn_kind_name(l.items[i].kind));
    cr_assert_str_eq(str_at(l.items[i].body, "apiVersion"), tn_kind_api_version(l.items[i].kind));
  }
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
}

Test(desired, every_object_has_labels_owner_and_hash) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  struct tn_object_list l = {0};
  build(&f, TN_STATE_ACTIVE, &l);
  for (size_t i = 0; i < l.len; i++) {
    const struct tn_object *o = &l.items[i];
    cr_assert_str_eq(label(o, "tenancy.dev/tenant"), "acme");
    cr_assert_str_eq(label(o, "tenancy.dev/environment"), o->environment);
    cr_assert_str_eq(label(o, "app.kubernetes.io/managed-by"), "tenancy-operator");
    json_t *refs = json_object_get(json_object_get(o->body, "metadata"), "ownerReferences");
    cr_assert_eq(json_array_size(refs), 1);
    json_t *want =
        json_pack("{s:s,s:s,s:s,s:s,s:b,s:b}", "apiVersion", "tenancy.dev/v1alpha1", "kind", "Tenant", "name",
                  "acme", "uid", "uid-acme-1", "controller", 1, "blockOwnerDeletion", 1);
    cr_assert(json_equal(json_array_get(refs, 0), want), "%s %s", tn_kind_name(o->kind), o->name);
    json_decref(want);
    const char *ann = json_string_value(json_object_get(
        json_object_get(json_object_get(o->body, "metadata"), "annotations"), "tenancy.dev/spec-hash"));
    cr_assert_not_null(ann);
    cr_assert_eq(strlen(ann), TN_SPEC_HASH_LEN);
    cr_assert_str_eq(ann, o->spec_hash);
    char again[TN_SPEC_HASH_LEN + 1];
    cr_assert_eq(tn_spec_hash(o->body, again), 0);
    cr_assert_str_eq(again, o->spec_hash, "the hash covers the object without its own annotation");
  }
  const struct tn_object *ns = find(&l, TN_KIND_NAMESPACE, NULL, "acme-prod");
  cr_assert_str_eq(label(ns, "tenancy.dev/plan"), "standard");
  cr_assert_str_eq(label(ns, "tenancy.dev/region"), "eu-west-1");
  cr_assert_str_eq(label(ns, "tenancy.dev/isolation"), "shared");
  cr_assert_eq(json_object_size(json_object_get(json_object_get(ns->body, "metadata"), "labels")), 12,
               "6 tenancy labels and 6 Pod Security labels");
  const struct tn_object *q = find(&l, TN_KIND_RESOURCE_QUOTA, "acme-prod", "tenant-quota");
  cr_assert_eq(json_object_size(json_object_get(json_object_get(q->body, "metadata"), "labels")), 3);
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
}

Test(desired, quota_and_limit_range_from_the_plan) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  struct tn_object_list l = {0};
  build(&f, TN_STATE_ACTIVE, &l);
  const struct tn_object *q = find(&l, TN_KIND_RESOURCE_QUOTA, "acme-staging", "tenant-quota");
  json_t *want =
      load("{\"hard\":{\"requests.cpu\":\"4\",\"limits.cpu\":\"4\",\"requests.memory\":\"8Gi\","
           "\"limits.memory\":\"8Gi\",\"requests.storage\":\"50Gi\",\"pods\":\"50\",\"services\":\"10\"}}");
  cr_assert(json_equal(json_object_get(q->body, "spec"), want));
  json_decref(want);
  const struct tn_object *lr = find(&l, TN_KIND_LIMIT_RANGE, "acme-staging", "tenant-limits");
  /* 4 CPU / 50 pods = 80m request, 160m limit; 8Gi / 50 = 163Mi request, 326Mi limit */
  want = load(
      "{\"limits\":[{\"type\":\"Container\",\"default\":{\"cpu\":\"160m\",\"memory\":\"326Mi\"},"
      "\"defaultRequest\":{\"cpu\":\"80m\",\"memory\":\"163Mi\"},\"max\":{\"cpu\":\"4\",\"memory\":\"8Gi\"}},"
      "{\"type\":\"PersistentVolumeClaim\",\"max\":{\"storage\":\"50Gi\"}}]}");
  cr_assert(json_equal(json_object_get(lr->body, "spec"), want), "%s",
            dump(json_object_get(lr->body, "spec")));
  json_decref(want);
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
}

Test(desired, network_policies_isolate_the_tenant) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  struct tn_object_list l = {0};
  build(&f, TN_STATE_ACTIVE, &l);
  const struct tn_object *o = find(&l, TN_KIND_NETWORK_POLICY, "acme-prod", "default-deny");
  json_t *want = load("{\"podSelector\":{},\"policyTypes\":[\"Ingress\",\"Egress\"]}");
  cr_assert(json_equal(json_object_get(o->body, "spec"), want));
  json_decref(want);
  o = find(&l, TN_KIND_NETWORK_POLICY, "acme-prod", "allow-same-tenant");
  /* the tenant's own namespaces both ways, and DNS to kube-dns only */
  want = load(
      "{\"podSelector\":{},\"policyTypes\":[\"Ingress\",\"Egress\"],"
      "\"ingress\":[{\"from\":[{\"namespaceSelector\":{\"matchLabels\":{\"tenancy.dev/"
      "tenant\":\"acme\"}}}]}],"
      "\"egress\":[{\"to\":[{\"namespaceSelector\":{\"matchLabels\":{\"tenancy.dev/tenant\":\"acme\"}}}]},"
      "{\"to\":[{\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/metadata.name\":\"kube-system\"}},"
      "\"podSelector\":{\"matchLabels\":{\"k8s-app\":\"kube-dns\"}}}],\"ports\":[{\"protocol\":\"UDP\","
      "\"port\":53},{\"protocol\":\"TCP\",\"port\":53}]}]}");
  cr_assert(json_equal(json_object_get(o->body, "spec"), want));
  json_decref(want);
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
}

Test(desired, role_bindings_from_group_bindings) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  struct tn_object_list l = {0};
  build(&f, TN_STATE_ACTIVE, &l);
  int n = 0;
  for (size_t i = 0; i < l.len; i++) {
    const struct tn_object *o = &l.items[i];
    if (o->kind != TN_KIND_ROLE_BINDING)
      continue;
    n++;
    const char *group = str_at(json_array_get(json_object_get(o->body, "subjects"), 0), "name");
    const char *role = strcmp(group, "acme-admins") == 0 ? "tenant-admin" : "tenant-developer";
    cr_assert_eq(strncmp(o->name, role, strlen(role)), 0, "%s", o->name);
    cr_assert_eq(strlen(o->name), strlen(role) + 1 + 10, "tenant-<role>-<10 hex of the group hash>: %s",
                 o->name);
    char want_role[64];
    snprintf(want_role, sizeof want_role, "tenancy-%s", role);
    json_t *want = json_pack("{s:s,s:s,s:s}", "apiGroup", "rbac.authorization.k8s.io", "kind", "ClusterRole",
                             "name", want_role);
    cr_assert(json_equal(json_object_get(o->body, "roleRef"), want));
    json_decref(want);
    want =
        json_pack("[{s:s,s:s,s:s}]", "apiGroup", "rbac.authorization.k8s.io", "kind", "Group", "name", group);
    cr_assert(json_equal(json_object_get(o->body, "subjects"), want));
    json_decref(want);
  }
  cr_assert_eq(n, 4, "2 distinct bindings (the duplicate is merged) x 2 environments");
  /* the same group in both namespaces gets the same name */
  const struct tn_object *rb = NULL;
  for (size_t i = 0; i < l.len && !rb; i++)
    if (l.items[i].kind == TN_KIND_ROLE_BINDING)
      rb = &l.items[i];
  cr_assert_not_null(find(&l, TN_KIND_ROLE_BINDING, "acme-staging", rb->name));
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
}

Test(desired, suspended_blocks_workloads) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  struct tn_object_list act = {0}, sus = {0};
  build(&f, TN_STATE_ACTIVE, &act);
  build(&f, TN_STATE_SUSPENDED, &sus);
  const struct tn_object *q = find(&sus, TN_KIND_RESOURCE_QUOTA, "acme-prod", "tenant-quota");
  json_t *hard = json_object_get(json_object_get(q->body, "spec"), "hard");
  cr_assert_str_eq(json_string_value(json_object_get(hard, "pods")), "0");
  cr_assert_str_eq(json_string_value(json_object_get(hard, "services")), "10", "services unchanged");
  cr_assert_str_eq(json_string_value(json_object_get(hard, "requests.cpu")), "4");
  const struct tn_object *deny = find(&sus, TN_KIND_NETWORK_POLICY, "acme-prod", "suspended-deny-all");
  cr_assert_not_null(deny);
  json_t *want = load("{\"podSelector\":{},\"policyTypes\":[\"Ingress\",\"Egress\"]}");
  cr_assert(json_equal(json_object_get(deny->body, "spec"), want));
  json_decref(want);
  cr_assert_not_null(find(&sus, TN_KIND_NETWORK_POLICY, "acme-prod", "default-deny"));
  cr_assert_null(find(&sus, TN_KIND_NETWORK_POLICY, "acme-prod", "allow-same-tenant"),
                 "policies add up: an allow policy would defeat the deny-all");
  cr_assert_eq(sus.len, act.len /* per env: -1 allow +1 deny */);
  /* everything else is byte-identical to Active */
  for (size_t i = 0; i < sus.len; i++) {
    const struct tn_object *s = &sus.items[i];
    const struct tn_object *a = find(&act, s->kind, s->namespace, s->name);
    if (s->kind == TN_KIND_RESOURCE_QUOTA || s->kind == TN_KIND_ROLE_BINDING /* viewer: below */ ||
        (s->kind == TN_KIND_NETWORK_POLICY && strcmp(s->name, "default-deny"))) {
      if (a)
        cr_assert_str_neq(a->spec_hash, s->spec_hash);
      continue;
    }
    cr_assert_not_null(a, "%s %s", tn_kind_name(s->kind), s->name);
    char *da = dump(a->body), *ds = dump(s->body);
    cr_assert_str_eq(da, ds);
    free(da);
    free(ds);
  }
  tn_object_list_cleanup(&act);
  tn_object_list_cleanup(&sus);
  teardown_fixture(&f);
}

static size_t count_kind(const struct tn_object_list *l, enum tn_kind k) {
  size_t n = 0;
  for (size_t i = 0; i < l->len; i++)
    n += l->items[i].kind == k;
  return n;
}

Test(desired, suspended_groups_keep_viewer_or_nothing) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  struct tn_error err = {0};
  struct tn_object_list viewer = {0}, none = {0};
  struct tn_desired_input in = {
      .tenant = f.t, .state = TN_STATE_SUSPENDED, .plan = f.p, .placement = &f.placement};
  cr_assert_eq(tn_desired_build(&in, &viewer, &err), 0, "%s", err.message);
  in.suspension_access = TN_SUSPEND_ACCESS_NONE;
  cr_assert_eq(tn_desired_build(&in, &none, &err), 0, "%s", err.message);
  /* Viewer (the default): each group once, bound to tenancy-tenant-viewer whatever its role. */
  cr_assert_eq(count_kind(&viewer, TN_KIND_ROLE_BINDING), 2 * f.t->n_environments);
  for (size_t i = 0; i < viewer.len; i++) {
    if (viewer.items[i].kind != TN_KIND_ROLE_BINDING)
      continue;
    cr_assert_str_eq(str_at(viewer.items[i].body, "roleRef.name"), "tenancy-tenant-viewer");
    cr_assert(strncmp(viewer.items[i].name, "tenant-viewer-", 14) == 0, "%s", viewer.items[i].name);
  }
  /* None: no binding at all; everything else as with Viewer. */
  cr_assert_eq(count_kind(&none, TN_KIND_ROLE_BINDING), 0);
  cr_assert_eq(none.len, viewer.len - count_kind(&viewer, TN_KIND_ROLE_BINDING));
  tn_object_list_cleanup(&viewer);
  tn_object_list_cleanup(&none);
  teardown_fixture(&f);
}

Test(desired, archived_and_retained_keeps_closed_namespaces) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  struct tn_error err = {0};
  struct tn_object_list arc = {0}, sus = {0};
  struct tn_desired_input in = {.tenant = f.t,
                                .state = TN_STATE_SUSPENDED,
                                .plan = f.p,
                                .placement = &f.placement,
                                .suspension_access = TN_SUSPEND_ACCESS_NONE};
  cr_assert_eq(tn_desired_build(&in, &sus, &err), 0, "%s", err.message);
  in.state = TN_STATE_ARCHIVED;
  in.suspension_access = TN_SUSPEND_ACCESS_VIEWER; /* no say while Archived: no access at all */
  in.archive_retained = true;
  cr_assert_eq(tn_desired_build(&in, &arc, &err), 0, "%s", err.message);
  cr_assert_eq(count_kind(&arc, TN_KIND_NAMESPACE), f.t->n_environments);
  cr_assert_eq(count_kind(&arc, TN_KIND_ROLE_BINDING), 0);
  cr_assert_not_null(find(&arc, TN_KIND_NETWORK_POLICY, "acme-prod", "suspended-deny-all"));
  cr_assert_null(find(&arc, TN_KIND_NETWORK_POLICY, "acme-prod", "allow-same-tenant"));
  const struct tn_object *q = find(&arc, TN_KIND_RESOURCE_QUOTA, "acme-prod", "tenant-quota");
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(json_object_get(q->body, "spec"), "hard"), "pods")),
      "0");
  /* Byte for byte what Suspended with access None has. */
  cr_assert_eq(arc.len, sus.len);
  for (size_t i = 0; i < arc.len; i++)
    cr_assert_str_eq(arc.items[i].spec_hash, sus.items[i].spec_hash, "%s", arc.items[i].name);
  /* Once purged (not retained): nothing. */
  struct tn_object_list purged = {0};
  in.archive_retained = false;
  cr_assert_eq(tn_desired_build(&in, &purged, &err), 0, "%s", err.message);
  cr_assert_eq(purged.len, 0);
  tn_object_list_cleanup(&arc);
  tn_object_list_cleanup(&sus);
  teardown_fixture(&f);
}

Test(desired, resume_restores_the_active_objects_exactly) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  struct tn_object_list before = {0}, sus = {0}, after = {0};
  build(&f, TN_STATE_ACTIVE, &before);
  build(&f, TN_STATE_SUSPENDED, &sus);
  build(&f, TN_STATE_ACTIVE, &after);
  cr_assert_eq(before.len, after.len);
  for (size_t i = 0; i < before.len; i++) {
    cr_assert_eq(before.items[i].kind, after.items[i].kind);
    cr_assert_str_eq(before.items[i].name, after.items[i].name);
    cr_assert_str_eq(before.items[i].spec_hash, after.items[i].spec_hash);
    char *a = dump(before.items[i].body), *b = dump(after.items[i].body);
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
  }
  tn_object_list_cleanup(&before);
  tn_object_list_cleanup(&sus);
  tn_object_list_cleanup(&after);
  teardown_fixture(&f);
}

Test(desired, draft_archived_deleted_have_nothing) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  enum tn_state empty[] = {TN_STATE_NONE, TN_STATE_DRAFT, TN_STATE_ARCHIVED, TN_STATE_DELETED};
  for (size_t i = 0; i < 4; i++) {
    struct tn_object_list l = {0};
    struct tn_error err = {0};
    /* no plan and no placement are needed when nothing is provisioned */
    struct tn_desired_input in = {.tenant = f.t, .state = empty[i]};
    cr_assert_eq(tn_desired_build(&in, &l, &err), 0, "%s", err.message);
    cr_assert_eq(l.len, 0, "%s", tn_state_name(empty[i]));
    cr_assert_null(l.items);
    tn_object_list_cleanup(&l);
  }
  teardown_fixture(&f);
}

Test(desired, deterministic_and_sensitive_to_what_matters) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  struct tn_object_list a = {0}, b = {0};
  build(&f, TN_STATE_ACTIVE, &a);
  build(&f, TN_STATE_ACTIVE, &b);
  for (size_t i = 0; i < a.len; i++)
    cr_assert_str_eq(a.items[i].spec_hash, b.items[i].spec_hash);
  tn_object_list_cleanup(&b);
  /* a new CPU quota changes the quota and the limit range, not the namespace or the policies */
  free(f.p->quotas.cpu);
  f.p->quotas.cpu = strdup("8");
  f.p->quotas.cpu_milli = 8000;
  build(&f, TN_STATE_ACTIVE, &b);
  for (size_t i = 0; i < a.len; i++) {
    bool changes = a.items[i].kind == TN_KIND_RESOURCE_QUOTA || a.items[i].kind == TN_KIND_LIMIT_RANGE;
    cr_assert_eq(strcmp(a.items[i].spec_hash, b.items[i].spec_hash) != 0, changes, "%s %s",
                 tn_kind_name(a.items[i].kind), a.items[i].name);
  }
  tn_object_list_cleanup(&b);
  /* a new region changes the namespace labels only */
  snprintf(f.placement.region, sizeof f.placement.region, "eu-central-1");
  build(&f, TN_STATE_ACTIVE, &b);
  for (size_t i = 0; i < a.len; i++)
    if (a.items[i].kind == TN_KIND_NAMESPACE)
      cr_assert_str_neq(a.items[i].spec_hash, b.items[i].spec_hash);
    else if (a.items[i].kind != TN_KIND_RESOURCE_QUOTA && a.items[i].kind != TN_KIND_LIMIT_RANGE)
      cr_assert_str_eq(a.items[i].spec_hash, b.items[i].spec_hash);
  tn_object_list_cleanup(&a);
  tn_object_list_cleanup(&b);
  teardown_fixture(&f);
}

Test(desired, namespace_name_too_long_names_the_environment_and_limit) {
  struct fixture f;
  /* 40-character tenant id + "-" + 23-character environment = 64 > 63 */
  setup(&f,
        "{\"metadata\":{\"name\":\"acme-0123456789-0123456789-0123456789-xy\",\"uid\":\"u\"},\"spec\":{"
        "\"plan\":"
        "\"standard\",\"environments\":[\"prod\",\"staging-0123456789-abcd\"]}}",
        plan_json);
  cr_assert_eq(strlen(f.t->name), 40);
  struct tn_object_list l = {0};
  struct tn_error err = {0};
  struct tn_desired_input in = {
      .tenant = f.t, .state = TN_STATE_ACTIVE, .plan = f.p, .placement = &f.placement};
  cr_assert_eq(tn_desired_build(&in, &l, &err), TN_EINVALID);
  cr_assert_eq(l.len, 0);
  cr_assert_null(l.items);
  cr_assert_not_null(strstr(err.message, "spec.environments[1]"), "%s", err.message);
  cr_assert_not_null(strstr(err.message, "environment \"staging-0123456789-abcd\""), "%s", err.message);
  cr_assert_not_null(strstr(err.message, "would be 64 characters"), "%s", err.message);
  cr_assert_not_null(strstr(err.message, "limit of 63"), "%s", err.message);
  cr_assert_not_null(strstr(err.message, "at most 22 characters"), "%s", err.message);
  cr_assert_str_eq(err.causes[0].field, "spec.environments[1]");
  cr_assert_eq(tn_desired_check_names(f.t, &err), TN_EINVALID, "the same check at apply time");
  teardown_fixture(&f);

  /* exactly 63 is fine */
  setup(&f,
        "{\"metadata\":{\"name\":\"acme-0123456789-0123456789-0123456789-xy\",\"uid\":\"u\"},\"spec\":{"
        "\"plan\":"
        "\"standard\",\"environments\":[\"staging-0123456789-abc\"]}}",
        plan_json);
  in.tenant = f.t;
  in.plan = f.p;
  cr_assert_eq(tn_desired_build(&in, &l, &err), 0, "%s", err.message);
  cr_assert_eq(strlen(l.items[0].name), 63);
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
}

Test(desired, refuses_without_uid_plan_or_placement) {
  struct fixture f;
  setup(&f, "{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"standard\",\"environments\":[\"prod\"]}}",
        plan_json);
  struct tn_object_list l = {0};
  struct tn_error err = {0};
  struct tn_desired_input in = {
      .tenant = f.t, .state = TN_STATE_ACTIVE, .plan = f.p, .placement = &f.placement};
  cr_assert_eq(tn_desired_build(&in, &l, &err), TN_EINVALID);
  cr_assert_not_null(strstr(err.message, "metadata.uid"), "%s", err.message);
  f.t->uid = strdup("u");
  in.plan = NULL;
  cr_assert_eq(tn_desired_build(&in, &l, &err), TN_EINVALID);
  cr_assert_not_null(strstr(err.message, "no plan"), "%s", err.message);
  in.plan = f.p;
  in.placement = NULL;
  cr_assert_eq(tn_desired_build(&in, &l, &err), TN_EINVALID);
  cr_assert_not_null(strstr(err.message, "no placement"), "%s", err.message);
  cr_assert_eq(l.len, 0);
  teardown_fixture(&f);
}

Test(desired, hostile_group_names_are_escaped_by_jansson) {
  static const char hostile[] = "x\"}],\"kind\":\"User\",\"name\":\"system:masters'; DROP TABLE t;--\x01";
  json_t *tj = json_pack("{s:{s:s,s:s},s:{s:s,s:[s],s:{s:[{s:s,s:s}]}}}", "metadata", "name", "acme", "uid",
                         "u", "spec", "plan", "standard", "environments", "prod", "identity", "groupBindings",
                         "group", hostile, "role", "tenant-viewer");
  cr_assert_not_null(tj);
  char *text = json_dumps(tj, 0);
  json_decref(tj);
  struct fixture f;
  setup(&f, text, plan_json);
  struct tn_object_list l = {0};
  build(&f, TN_STATE_ACTIVE, &l);
  const struct tn_object *rb = &l.items[l.len - 1];
  cr_assert_eq(rb->kind, TN_KIND_ROLE_BINDING);
  cr_assert_eq(strncmp(rb->name, "tenant-viewer-", 14), 0, "the group never reaches the name: %s", rb->name);
  /* what goes on the wire parses back to exactly one Group subject holding the whole string */
  char *wire = dump(rb->body);
  json_t *back = load(wire);
  json_t *subjects = json_object_get(back, "subjects");
  cr_assert_eq(json_array_size(subjects), 1);
  cr_assert_str_eq(str_at(json_array_get(subjects, 0), "kind"), "Group");
  cr_assert_str_eq(json_string_value(json_object_get(json_array_get(subjects, 0), "name")),
                   f.t->group_bindings[0].group);
  cr_assert_str_eq(str_at(back, "roleRef.name"), "tenancy-tenant-viewer");
  cr_assert_str_eq(f.t->group_bindings[0].group, hostile);
  json_decref(back);
  free(wire);
  free(text);
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
}

/* ---- Pod Security ---- */

static const char plan_baseline_json[] =
    "{\"metadata\":{\"name\":\"standard\"},\"spec\":{\"podSecurity\":\"baseline\","
    "\"quotas\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"50Gi\",\"pods\":50,\"services\":10}}}";

static void assert_psa(const struct tn_object_list *l, const char *level) {
  int n = 0;
  for (size_t i = 0; i < l->len; i++) {
    const struct tn_object *o = &l->items[i];
    if (o->kind != TN_KIND_NAMESPACE)
      continue;
    n++;
    cr_assert_str_eq(label(o, "pod-security.kubernetes.io/enforce"), level, "%s", o->name);
    cr_assert_str_eq(label(o, "pod-security.kubernetes.io/warn"), level);
    cr_assert_str_eq(label(o, "pod-security.kubernetes.io/audit"), level);
    cr_assert_str_eq(label(o, "pod-security.kubernetes.io/enforce-version"), "latest");
    cr_assert_str_eq(label(o, "pod-security.kubernetes.io/warn-version"), "latest");
    cr_assert_str_eq(label(o, "pod-security.kubernetes.io/audit-version"), "latest");
  }
  cr_assert_eq(n, 2);
}

Test(desired, pod_security_restricted_by_default) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  cr_assert_eq(f.p->pod_security, TN_POD_SECURITY_RESTRICTED);
  struct tn_object_list l = {0}, s = {0};
  build(&f, TN_STATE_ACTIVE, &l);
  assert_psa(&l, "restricted");
  build(&f, TN_STATE_SUSPENDED, &s);
  assert_psa(&s, "restricted");
  tn_object_list_cleanup(&l);
  tn_object_list_cleanup(&s);
  teardown_fixture(&f);
}

Test(desired, pod_security_plan_baseline_and_policy_minimum_stricter_wins) {
  struct fixture f;
  setup(&f, tenant_json, plan_baseline_json);
  struct tn_error err = {0};
  struct tn_object_list l = {0};
  build(&f, TN_STATE_ACTIVE, &l);
  assert_psa(&l, "baseline");
  tn_object_list_cleanup(&l);
  struct tn_desired_input in = {.tenant = f.t,
                                .state = TN_STATE_ACTIVE,
                                .plan = f.p,
                                .placement = &f.placement,
                                .pod_security_minimum = TN_POD_SECURITY_RESTRICTED};
  cr_assert_eq(tn_desired_build(&in, &l, &err), 0);
  assert_psa(&l, "restricted");
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
  /* a restricted plan stays restricted under a baseline minimum */
  setup(&f, tenant_json, plan_json);
  in = (struct tn_desired_input){.tenant = f.t,
                                 .state = TN_STATE_ACTIVE,
                                 .plan = f.p,
                                 .placement = &f.placement,
                                 .pod_security_minimum = TN_POD_SECURITY_BASELINE};
  cr_assert_eq(tn_desired_build(&in, &l, &err), 0);
  assert_psa(&l, "restricted");
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
}

Test(desired, plan_refuses_privileged_pod_security) {
  json_t *pj =
      load("{\"metadata\":{\"name\":\"p\"},\"spec\":{\"podSecurity\":\"privileged\","
           "\"quotas\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"1Gi\",\"pods\":5,\"services\":1}}}");
  struct tn_plan *p = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_plan_parse(pj, &p, &err), TN_EINVALID);
  cr_assert_null(p);
  cr_assert(strstr(err.message, "spec.podSecurity: \"privileged\" is not supported"), "%s", err.message);
  cr_assert_str_eq(err.causes[0].field, "spec.podSecurity");
  json_decref(pj);
}

/* ---- groups ---- */

static const char tenant_system_groups_json[] =
    "{\"metadata\":{\"name\":\"acme\",\"uid\":\"uid-acme-1\"},"
    "\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"environments\":[\"prod\"],"
    "\"identity\":{\"groupBindings\":[{\"group\":\"system:authenticated\",\"role\":\"tenant-admin\"},"
    "{\"group\":\"system:masters\",\"role\":\"tenant-viewer\"},"
    "{\"group\":\"system:serviceaccounts\",\"role\":\"tenant-developer\"},"
    "{\"group\":\"other-team\",\"role\":\"tenant-viewer\"},"
    "{\"group\":\"acme-devs\",\"role\":\"tenant-developer\"}]}}}";

static size_t count_bindings(const struct tn_object_list *l, const char *group) {
  size_t n = 0;
  for (size_t i = 0; i < l->len; i++)
    if (l->items[i].kind == TN_KIND_ROLE_BINDING) {
      const char *g = str_at(json_array_get(json_object_get(l->items[i].body, "subjects"), 0), "name");
      n += !group || strcmp(g, group) == 0;
    }
  return n;
}

Test(desired, reserved_and_refused_groups_are_never_bound) {
  struct fixture f;
  setup(&f, tenant_system_groups_json, plan_json);
  cr_assert(tn_subject_is_reserved("system:authenticated") && tn_subject_is_reserved("system:") &&
            !tn_subject_is_reserved("System:masters") && !tn_subject_is_reserved("acme-system:x") &&
            !tn_subject_is_reserved(NULL));
  struct tn_object_list l = {0};
  build(&f, TN_STATE_ACTIVE, &l);
  cr_assert_eq(count_bindings(&l, "system:authenticated"), 0);
  cr_assert_eq(count_bindings(&l, "system:masters"), 0);
  cr_assert_eq(count_bindings(&l, "system:serviceaccounts"), 0);
  cr_assert_eq(count_bindings(&l, NULL), 2, "other-team and acme-devs");
  tn_object_list_cleanup(&l);
  const char *refused[] = {"other-team"};
  struct tn_error err = {0};
  struct tn_desired_input in = {.tenant = f.t,
                                .state = TN_STATE_ACTIVE,
                                .plan = f.p,
                                .placement = &f.placement,
                                .refused_groups = refused,
                                .n_refused_groups = 1};
  cr_assert_eq(tn_desired_build(&in, &l, &err), 0);
  cr_assert_eq(count_bindings(&l, NULL), 1);
  cr_assert_eq(count_bindings(&l, "acme-devs"), 1);
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
}

/* ---- network policies for real tenants ---- */

static json_t *allow_spec(const struct tn_object_list *l, const char *ns) {
  const struct tn_object *o = find(l, TN_KIND_NETWORK_POLICY, ns, "allow-same-tenant");
  cr_assert_not_null(o);
  return json_object_get(o->body, "spec");
}

static const char plan_network_json[] =
    "{\"metadata\":{\"name\":\"standard\"},\"spec\":{\"network\":{\"ingressNamespaces\":[\"ingress-nginx\","
    "\"traefik\"],\"crossEnvironment\":\"Deny\"},"
    "\"quotas\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"50Gi\",\"pods\":50,\"services\":10}}}";

Test(desired, network_database_egress_ingress_namespaces_and_cross_environment) {
  struct fixture f;
  setup(&f, tenant_json, plan_network_json);
  const char *cidrs[] = {"10.20.0.0/16"};
  struct tn_desired_database db = {.host = "192.0.2.10", .port = 6432, .cidrs = cidrs, .n_cidrs = 1};
  struct tn_desired_input in = {
      .tenant = f.t, .state = TN_STATE_ACTIVE, .plan = f.p, .placement = &f.placement, .database = &db};
  struct tn_object_list l = {0};
  struct tn_error err = {0};
  cr_assert_eq(tn_desired_build(&in, &l, &err), 0, "%s", err.message);
  json_t *want = load(
      "{\"podSelector\":{},\"policyTypes\":[\"Ingress\",\"Egress\"],"
      "\"ingress\":[{\"from\":[{\"namespaceSelector\":{\"matchLabels\":{\"tenancy.dev/tenant\":\"acme\","
      "\"tenancy.dev/environment\":\"staging\"}}},"
      "{\"namespaceSelector\":{\"matchExpressions\":[{\"key\":\"kubernetes.io/"
      "metadata.name\",\"operator\":\"In\","
      "\"values\":[\"ingress-nginx\",\"traefik\"]}]}}]}],"
      "\"egress\":[{\"to\":[{\"namespaceSelector\":{\"matchLabels\":{\"tenancy.dev/tenant\":\"acme\","
      "\"tenancy.dev/environment\":\"staging\"}}}]},"
      "{\"to\":[{\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/metadata.name\":\"kube-system\"}},"
      "\"podSelector\":{\"matchLabels\":{\"k8s-app\":\"kube-dns\"}}}],\"ports\":[{\"protocol\":\"UDP\","
      "\"port\":53},{\"protocol\":\"TCP\",\"port\":53}]},"
      "{\"to\":[{\"ipBlock\":{\"cidr\":\"192.0.2.10/32\"}},{\"ipBlock\":{\"cidr\":\"10.20.0.0/16\"}}],"
      "\"ports\":[{\"protocol\":\"TCP\",\"port\":6432}]}]}");
  char *got = dump(allow_spec(&l, "acme-staging"));
  cr_assert(json_equal(allow_spec(&l, "acme-staging"), want), "%s", got);
  free(got);
  json_decref(want);
  tn_object_list_cleanup(&l);

  /* IPv6 literal: /128; hostname without egressCIDRs: no database rule (never resolved) */
  db = (struct tn_desired_database){.host = "fd00::5"};
  cr_assert_eq(tn_desired_build(&in, &l, &err), 0);
  json_t *e = json_object_get(allow_spec(&l, "acme-prod"), "egress");
  cr_assert_eq(json_array_size(e), 3);
  cr_assert_str_eq(str_at(json_array_get(json_object_get(json_array_get(e, 2), "to"), 0), "ipBlock.cidr"),
                   "fd00::5/128");
  cr_assert_eq(json_integer_value(json_object_get(
                   json_array_get(json_object_get(json_array_get(e, 2), "ports"), 0), "port")),
               5432);
  tn_object_list_cleanup(&l);
  db = (struct tn_desired_database){.host = "db1.eu.internal", .port = 5432};
  cr_assert_eq(tn_desired_build(&in, &l, &err), 0);
  cr_assert_eq(json_array_size(json_object_get(allow_spec(&l, "acme-prod"), "egress")), 2);
  tn_object_list_cleanup(&l);

  /* Suspended: deny-all, no allow policy, whatever the plan's network says */
  in.state = TN_STATE_SUSPENDED;
  cr_assert_eq(tn_desired_build(&in, &l, &err), 0);
  cr_assert_null(find(&l, TN_KIND_NETWORK_POLICY, "acme-prod", "allow-same-tenant"));
  cr_assert_not_null(find(&l, TN_KIND_NETWORK_POLICY, "acme-prod", "suspended-deny-all"));
  tn_object_list_cleanup(&l);
  teardown_fixture(&f);
}

Test(desired, plan_network_fields_are_validated) {
  struct tn_plan *p = NULL;
  struct tn_error err = {0};
  json_t *pj =
      load("{\"metadata\":{\"name\":\"p\"},\"spec\":{\"network\":{\"crossEnvironment\":\"Maybe\"},"
           "\"quotas\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"1Gi\",\"pods\":5,\"services\":1}}}");
  cr_assert_eq(tn_plan_parse(pj, &p, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "spec.network.crossEnvironment"), "%s", err.message);
  json_decref(pj);
  pj = load("{\"metadata\":{\"name\":\"p\"},\"spec\":{\"network\":{\"ingressNamespaces\":[\"Bad_NS\"]},"
            "\"quotas\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"1Gi\",\"pods\":5,\"services\":1}}}");
  cr_assert_eq(tn_plan_parse(pj, &p, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "spec.network.ingressNamespaces[0]"), "%s", err.message);
  json_decref(pj);
}

Test(desired, kinds) {
  cr_assert_str_eq(tn_kind_resource(TN_KIND_NETWORK_POLICY), "networkpolicies");
  cr_assert_eq(tn_kind_parse("rbac.authorization.k8s.io/v1", "RoleBinding"), TN_KIND_ROLE_BINDING);
  cr_assert_eq(tn_kind_parse("v1", "Namespace"), TN_KIND_NAMESPACE);
  cr_assert_eq(tn_kind_parse("v1", "Secret"), -1);
  cr_assert_eq(tn_kind_parse("networking.k8s.io/v1beta1", "NetworkPolicy"), -1);
}

/* ---- derive ------------------------------------------------------------------------------------ */

Test(derive, status_derived_from_the_plan) {
  struct fixture f;
  setup(&f, tenant_json, plan_json);
  json_t *d = NULL;
  struct tn_error err = {0};
  cr_assert_eq(tn_derive_status("standard", f.p, &d, &err), 0, "%s", err.message);
  json_t *want = load("{\"quotas\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"storage\":\"50Gi\",\"pods\":50,"
                      "\"services\":10,\"connections\":20,\"eventsPerDay\":100000},"
                      "\"rateLimits\":{\"requestsPerSecond\":50,\"burst\":100},"
                      "\"features\":{\"auditExport\":false,\"sso\":true}}");
  cr_assert(json_equal(d, want), "%s", dump(d));
  json_decref(want);
  json_decref(d);
  teardown_fixture(&f);
}

Test(derive, optional_parts_are_left_out) {
  struct fixture f;
  setup(&f, tenant_json,
        "{\"metadata\":{\"name\":\"free\"},\"spec\":{\"quotas\":{\"cpu\":\"500m\",\"memory\":\"256Mi\","
        "\"storage\":"
        "\"1Gi\",\"pods\":5,\"services\":1}}}");
  json_t *d = NULL;
  cr_assert_eq(tn_derive_status("free", f.p, &d, NULL), 0);
  json_t *want = load("{\"quotas\":{\"cpu\":\"500m\",\"memory\":\"256Mi\",\"storage\":\"1Gi\",\"pods\":5,"
                      "\"services\":1},\"features\":{}}");
  cr_assert(json_equal(d, want), "%s", dump(d));
  json_decref(want);
  json_decref(d);
  teardown_fixture(&f);
}

Test(derive, missing_plan_is_named) {
  json_t *d = (json_t *)1;
  struct tn_error err = {0};
  cr_assert_eq(tn_derive_status("gold", NULL, &d, &err), TN_ENOTFOUND);
  cr_assert_null(d);
  cr_assert_str_eq(err.message,
                   "plan \"gold\" not found: create a Plan named \"gold\", or set spec.plan to an "
                   "existing Plan (kubectl get plans)");
}

Test(derive, container_defaults) {
  static const struct {
    const char *cpu, *mem;
    int pods;
    const char *req_cpu, *lim_cpu, *req_mem, *lim_mem, *max_mem;
  } cases[] = {
      {"4", "8Gi", 50, "80m", "160m", "163Mi", "326Mi", "8Gi"},
      {"2", "4Gi", 4, "500m", "1", "1Gi", "2Gi", "4Gi"},
      {"1", "1Gi", 1, "1", "1", "1Gi", "1Gi", "1Gi"},
      {"1", "1Gi", 0, "1", "1", "1Gi", "1Gi", "1Gi"},               /* pods 0: one pod's share */
      {"100m", "64Mi", 1000, "10m", "20m", "16Mi", "32Mi", "64Mi"}, /* floors */
      {"5m", "8Mi", 10, "5m", "5m", "8Mi", "8Mi", "8Mi"},           /* floors capped by the quota */
      {"3", "1000M", 7, "428m", "856m", "136Mi", "272Mi", "1000000000"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tn_plan p = {0};
    cr_assert_eq(tn_quantity_parse(cases[i].cpu, &p.quotas.cpu_milli), 0);
    cr_assert_eq(tn_quantity_parse(cases[i].mem, &p.quotas.memory_milli), 0);
    p.quotas.pods = cases[i].pods;
    struct tn_container_defaults d;
    tn_derive_container_defaults(&p, &d);
    cr_assert_str_eq(d.request_cpu, cases[i].req_cpu, "case %zu", i);
    cr_assert_str_eq(d.limit_cpu, cases[i].lim_cpu, "case %zu", i);
    cr_assert_str_eq(d.max_cpu, cases[i].cpu, "case %zu", i);
    cr_assert_str_eq(d.request_memory, cases[i].req_mem, "case %zu", i);
    cr_assert_str_eq(d.limit_memory, cases[i].lim_mem, "case %zu", i);
    cr_assert_str_eq(d.max_memory, cases[i].max_mem, "case %zu", i);
  }
}
