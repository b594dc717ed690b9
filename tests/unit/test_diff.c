/* test_diff.c - desired vs observed: create-all, no-op, label/spec/hash drift, foreign
 * objects (conflicts, never touched), orphans, terminating objects, and the order of changes. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/diff.h"

static json_t *load(const char *text) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  cr_assert_not_null(j, "fixture does not parse: %s", je.text);
  return j;
}

static const char tenant_json[] =
    "{\"metadata\":{\"name\":\"acme\",\"uid\":\"uid-acme\"},"
    "\"spec\":{\"plan\":\"standard\",\"environments\":[\"prod\",\"staging\"],"
    "\"identity\":{\"groupBindings\":[{\"group\":\"acme-admins\",\"role\":\"tenant-admin\"}]}}}";

static const char plan_json[] = "{\"metadata\":{\"name\":\"standard\"},\"spec\":{\"quotas\":{\"cpu\":\"4\","
                                "\"memory\":\"8Gi\",\"storage\":"
                                "\"50Gi\",\"pods\":50,\"services\":10}}}";

/* A tenant, its plan, the desired objects for a state, and an observed set the test edits. */
struct world {
  json_t *tj, *pj;
  struct tn_tenant *t;
  struct tn_plan *p;
  struct tn_placement placement;
  struct tn_object_list desired;
  json_t *observed_objs; /* array, owned */
  struct tn_observed observed[128];
  size_t n_observed;
  struct tn_diff diff;
};

static void world_init(struct world *w) {
  memset(w, 0, sizeof *w);
  w->tj = load(tenant_json);
  w->pj = load(plan_json);
  cr_assert_eq(tn_tenant_parse(w->tj, &w->t, NULL), 0);
  cr_assert_eq(tn_plan_parse(w->pj, &w->p, NULL), 0);
  w->placement = (struct tn_placement){.region = "eu-west-1", .isolation = TN_ISOLATION_SHARED};
  w->observed_objs = json_array();
}

static void world_desire(struct world *w, enum tn_state state) {
  tn_object_list_cleanup(&w->desired);
  struct tn_error err = {0};
  struct tn_desired_input in = {.tenant = w->t, .state = state, .plan = w->p, .placement = &w->placement};
  cr_assert_eq(tn_desired_build(&in, &w->desired, &err), 0, "%s", err.message);
}

static void world_cleanup(struct world *w) {
  tn_diff_cleanup(&w->diff);
  tn_object_list_cleanup(&w->desired);
  json_decref(w->observed_objs);
  tn_tenant_free(w->t);
  tn_plan_free(w->p);
  json_decref(w->tj);
  json_decref(w->pj);
}

/* Adds an observed object (taken). */
static json_t *observe(struct world *w, enum tn_kind kind, json_t *obj) {
  cr_assert_lt(w->n_observed, 128);
  json_array_append_new(w->observed_objs, obj);
  w->observed[w->n_observed++] = (struct tn_observed){.kind = kind, .obj = obj};
  return obj;
}

/* What the API server would return for a desired object: the same, plus server fields, and
 * what a cache would hold. */
static json_t *as_stored(const struct tn_object *o, int rv) {
  json_t *j = json_deep_copy(o->body);
  json_t *meta = json_object_get(j, "metadata");
  char buf[32];
  snprintf(buf, sizeof buf, "%d", rv);
  json_object_set_new(meta, "resourceVersion", json_string(buf));
  json_object_set_new(meta, "uid", json_string("obj-uid"));
  json_object_set_new(meta, "creationTimestamp", json_string("2025-01-01T00:00:00Z"));
  if (o->kind == TN_KIND_NAMESPACE) {
    json_object_set_new(json_object_get(meta, "labels"), "kubernetes.io/metadata.name", json_string(o->name));
    json_object_set_new(j, "spec", json_pack("{s:[s]}", "finalizers", "kubernetes"));
    json_object_set_new(j, "status", json_pack("{s:s}", "phase", "Active"));
  }
  if (o->kind == TN_KIND_RESOURCE_QUOTA)
    json_object_set_new(j, "status", json_pack("{s:{s:s}}", "used", "pods", "3"));
  return j;
}

/* Observes every desired object as stored. */
static void observe_all(struct world *w) {
  for (size_t i = 0; i < w->desired.len; i++)
    observe(w, w->desired.items[i].kind, as_stored(&w->desired.items[i], 100 + (int)i));
}

static json_t *observed_named(struct world *w, enum tn_kind kind, const char *ns, const char *name) {
  for (size_t i = 0; i < w->n_observed; i++) {
    json_t *m = json_object_get((json_t *)w->observed[i].obj, "metadata");
    const char *ons = json_string_value(json_object_get(m, "namespace"));
    if (w->observed[i].kind == kind && strcmp(json_string_value(json_object_get(m, "name")), name) == 0 &&
        ((!ns && !ons) || (ns && ons && strcmp(ns, ons) == 0)))
      return (json_t *)w->observed[i].obj;
  }
  cr_assert_fail("no observed %s %s", tn_kind_name(kind), name);
  return NULL;
}

static void run_diff(struct world *w) {
  struct tn_error err = {0};
  tn_diff_cleanup(&w->diff);
  cr_assert_eq(tn_diff_compute(&w->desired, w->observed, w->n_observed, "acme", "uid-acme", &w->diff, &err),
               0, "%s", err.message);
}

static json_t *labels_of(json_t *obj) { return json_object_get(json_object_get(obj, "metadata"), "labels"); }

Test(diff, creates_everything_when_nothing_is_observed_namespaces_first) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  run_diff(&w);
  cr_assert_eq(w.diff.len, w.desired.len);
  cr_assert_eq(w.diff.n_waiting, 0);
  for (size_t i = 0; i < w.diff.len; i++) {
    const struct tn_change *c = &w.diff.changes[i];
    cr_assert_eq(c->op, TN_CHANGE_CREATE);
    cr_assert_not_null(c->desired);
    cr_assert_null(c->observed);
    cr_assert_str_eq(c->reason, "not observed");
    if (i)
      cr_assert_leq(w.diff.changes[i - 1].kind, c->kind);
  }
  cr_assert_eq(w.diff.changes[0].kind, TN_KIND_NAMESPACE);
  cr_assert_str_eq(w.diff.changes[0].name, "acme-prod");
  cr_assert_eq(w.diff.changes[1].kind, TN_KIND_NAMESPACE);
  cr_assert_eq(w.diff.changes[2].kind, TN_KIND_NETWORK_POLICY);
  cr_assert_str_eq(w.diff.changes[2].namespace, "acme-prod");
  cr_assert_str_eq(w.diff.changes[2].name, "allow-same-tenant", "by name within a kind and namespace");
  cr_assert_str_eq(w.diff.changes[3].name, "default-deny");
  cr_assert_eq(w.diff.changes[w.diff.len - 1].kind, TN_KIND_ROLE_BINDING, "access last");
  world_cleanup(&w);
}

Test(diff, unchanged_tenant_gives_zero_changes) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe_all(&w);
  run_diff(&w);
  cr_assert_eq(w.diff.len, 0, "first change: %s %s (%s)", w.diff.len ? w.diff.changes[0].name : "",
               w.diff.len ? tn_change_op_name(w.diff.changes[0].op) : "",
               w.diff.len ? w.diff.changes[0].reason : "");
  /* and again, from a freshly built desired set */
  world_desire(&w, TN_STATE_ACTIVE);
  run_diff(&w);
  cr_assert_eq(w.diff.len, 0);
  world_cleanup(&w);
}

Test(diff, canonical_quantities_from_the_server_are_not_drift) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe_all(&w);
  json_t *q = observed_named(&w, TN_KIND_RESOURCE_QUOTA, "acme-prod", "tenant-quota");
  json_t *hard = json_object_get(json_object_get(q, "spec"), "hard");
  json_object_set_new(hard, "requests.memory", json_string("8192Mi"));
  json_object_set_new(hard, "limits.cpu", json_string("4000m"));
  run_diff(&w);
  cr_assert_eq(w.diff.len, 0, "%s", w.diff.len ? w.diff.changes[0].reason : "");
  world_cleanup(&w);
}

Test(diff, drift_on_a_label_is_an_update) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe_all(&w);
  json_t *np = observed_named(&w, TN_KIND_NETWORK_POLICY, "acme-staging", "default-deny");
  json_object_del(labels_of(np), "app.kubernetes.io/managed-by");
  json_t *ns = observed_named(&w, TN_KIND_NAMESPACE, NULL, "acme-prod");
  json_object_set_new(labels_of(ns), "tenancy.dev/plan", json_string("gold"));
  json_object_set_new(labels_of(ns), "team", json_string("extra labels are not ours to judge"));
  run_diff(&w);
  cr_assert_eq(w.diff.len, 2);
  const struct tn_change *c = &w.diff.changes[0];
  cr_assert_eq(c->op, TN_CHANGE_UPDATE);
  cr_assert_eq(c->kind, TN_KIND_NAMESPACE);
  cr_assert_str_eq(c->name, "acme-prod");
  cr_assert_str_eq(c->reason, "label tenancy.dev/plan is \"gold\", want \"standard\"");
  cr_assert_eq(c->observed, ns);
  cr_assert_not_null(c->desired);
  cr_assert_str_eq(c->resource_version,
                   json_string_value(json_object_get(json_object_get(ns, "metadata"), "resourceVersion")));
  c = &w.diff.changes[1];
  cr_assert_eq(c->op, TN_CHANGE_UPDATE);
  cr_assert_eq(c->kind, TN_KIND_NETWORK_POLICY);
  cr_assert_str_eq(c->namespace, "acme-staging");
  cr_assert_str_eq(c->name, "default-deny");
  cr_assert_str_eq(c->reason, "label app.kubernetes.io/managed-by is missing");
  world_cleanup(&w);
}

Test(diff, drift_on_the_spec_hash_is_an_update) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe_all(&w);
  json_t *lr = observed_named(&w, TN_KIND_LIMIT_RANGE, "acme-prod", "tenant-limits");
  json_object_set_new(json_object_get(json_object_get(lr, "metadata"), "annotations"),
                      "tenancy.dev/spec-hash", json_string("0000"));
  json_t *rb = NULL;
  for (size_t i = 0; i < w.n_observed; i++)
    if (w.observed[i].kind == TN_KIND_ROLE_BINDING)
      rb = (json_t *)w.observed[i].obj;
  json_object_del(json_object_get(rb, "metadata"), "annotations");
  run_diff(&w);
  cr_assert_eq(w.diff.len, 2);
  cr_assert_eq(w.diff.changes[0].kind, TN_KIND_LIMIT_RANGE);
  cr_assert_str_eq(w.diff.changes[0].reason, "tenancy.dev/spec-hash annotation differs");
  cr_assert_eq(w.diff.changes[1].kind, TN_KIND_ROLE_BINDING);
  cr_assert_str_eq(w.diff.changes[1].reason, "tenancy.dev/spec-hash annotation is missing");
  world_cleanup(&w);
}

Test(diff, hand_edits_behind_an_intact_hash_are_an_update) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe_all(&w);
  json_t *q = observed_named(&w, TN_KIND_RESOURCE_QUOTA, "acme-prod", "tenant-quota");
  json_object_set_new(json_object_get(json_object_get(q, "spec"), "hard"), "pods", json_string("1000"));
  json_t *np = observed_named(&w, TN_KIND_NETWORK_POLICY, "acme-prod", "allow-same-tenant");
  json_array_append_new(json_object_get(json_object_get(np, "spec"), "ingress"),
                        json_object()); /* allow all */
  json_t *q2 = observed_named(&w, TN_KIND_RESOURCE_QUOTA, "acme-staging", "tenant-quota");
  json_object_set_new(json_object_get(json_object_get(q2, "spec"), "hard"), "secrets", json_string("5"));
  run_diff(&w);
  cr_assert_eq(w.diff.len, 3);
  cr_assert_eq(w.diff.changes[0].kind, TN_KIND_NETWORK_POLICY);
  cr_assert_str_eq(w.diff.changes[0].reason, "spec differs from the desired state");
  cr_assert_eq(w.diff.changes[1].kind, TN_KIND_RESOURCE_QUOTA);
  cr_assert_str_eq(w.diff.changes[1].namespace, "acme-prod");
  cr_assert_str_eq(w.diff.changes[2].namespace, "acme-staging", "an added key is drift too");
  for (size_t i = 0; i < 3; i++)
    cr_assert_eq(w.diff.changes[i].op, TN_CHANGE_UPDATE);
  world_cleanup(&w);
}

Test(diff, foreign_object_with_our_name_is_a_conflict_and_never_touched) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  /* someone else's namespace acme-prod, with a workload's policy inside */
  json_t *foreign = observe(&w, TN_KIND_NAMESPACE,
                            load("{\"metadata\":{\"name\":\"acme-prod\",\"resourceVersion\":\"7\",\"labels\":"
                                 "{\"tenancy.dev/tenant\":\"other\"}}}"));
  observe(
      &w, TN_KIND_NETWORK_POLICY,
      load("{\"metadata\":{\"name\":\"default-deny\",\"namespace\":\"acme-prod\",\"labels\":{\"tenancy.dev/"
           "tenant\":\"acme\"},\"ownerReferences\":[{\"apiVersion\":\"tenancy.dev/"
           "v1alpha1\",\"kind\":\"Tenant\","
           "\"name\":\"acme\",\"uid\":\"uid-acme\"}]},\"spec\":{}}"));
  /* and a RoleBinding in staging with our name, owned by a previous tenant of the same id */
  const struct tn_object *rb = &w.desired.items[w.desired.len - 1];
  cr_assert_eq(rb->kind, TN_KIND_ROLE_BINDING);
  cr_assert_str_eq(rb->namespace, "acme-staging");
  json_t *old = as_stored(rb, 5);
  json_object_set_new(json_array_get(json_object_get(json_object_get(old, "metadata"), "ownerReferences"), 0),
                      "uid", json_string("uid-of-an-older-acme"));
  observe(&w, TN_KIND_ROLE_BINDING, old);
  run_diff(&w);

  size_t n_conflict = 0, n_in_prod = 0, n_create = 0;
  for (size_t i = 0; i < w.diff.len; i++) {
    const struct tn_change *c = &w.diff.changes[i];
    if (c->op == TN_CHANGE_CONFLICT) {
      n_conflict++;
      cr_assert_eq(i, n_conflict - 1, "conflicts come first");
    }
    if (c->namespace && strcmp(c->namespace, "acme-prod") == 0)
      n_in_prod++;
    cr_assert_neq(c->op, TN_CHANGE_DELETE, "nothing in a foreign namespace is deleted");
    n_create += c->op == TN_CHANGE_CREATE;
  }
  cr_assert_eq(n_conflict, 2);
  cr_assert_eq(n_in_prod, 0, "nothing is written into a namespace that is not ours");
  const struct tn_change *c = &w.diff.changes[0];
  cr_assert_eq(c->kind, TN_KIND_NAMESPACE);
  cr_assert_str_eq(c->name, "acme-prod");
  cr_assert_eq(c->observed, foreign);
  cr_assert_str_eq(c->reason,
                   "conflict: not ours: Namespace acme-prod exists and is not owned by tenant acme (it is "
                   "labelled for tenant \"other\"); it is left untouched");
  c = &w.diff.changes[1];
  cr_assert_eq(c->kind, TN_KIND_ROLE_BINDING);
  cr_assert_eq(strncmp(c->reason, "conflict: not ours: RoleBinding acme-staging/tenant-admin-", 58), 0, "%s",
               c->reason);
  /* staging: namespace, 2 policies, quota, limits (its binding is the conflict) */
  cr_assert_eq(n_create, 5);
  world_cleanup(&w);
}

Test(diff, differs_tells_an_object_read_by_get_from_its_desired_form) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  const struct tn_object *quota = NULL;
  for (size_t i = 0; i < w.desired.len; i++)
    if (w.desired.items[i].kind == TN_KIND_RESOURCE_QUOTA)
      quota = &w.desired.items[i];
  cr_assert_not_null(quota);
  char why[160];
  json_t *got = as_stored(quota, 9);
  cr_assert_not(tn_diff_differs(quota, got, why, sizeof why), "as stored: the same (%s)", why);
  /* the managed-by label removed by hand: the label-filtered caches cannot see it any more */
  json_object_del(json_object_get(json_object_get(got, "metadata"), "labels"),
                  "app.kubernetes.io/managed-by");
  cr_assert(tn_diff_differs(quota, got, why, sizeof why));
  cr_assert_str_eq(why, "label app.kubernetes.io/managed-by is missing");
  json_decref(got);
  /* relabelled for another tenant */
  got = as_stored(quota, 9);
  json_object_set_new(json_object_get(json_object_get(got, "metadata"), "labels"), "tenancy.dev/tenant",
                      json_string("acme-other"));
  cr_assert(tn_diff_differs(quota, got, why, sizeof why));
  cr_assert_str_eq(why, "label tenancy.dev/tenant is \"acme-other\", want \"acme\"");
  json_decref(got);
  world_cleanup(&w);
}

Test(diff, orphans_of_ours_are_deleted_foreign_ones_left_alone) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe_all(&w);
  static const char owner[] =
      "\"ownerReferences\":[{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\","
      "\"name\":\"acme\",\"uid\":\"uid-acme\"}]";
  char buf[1024];
  /* ours and no longer desired: a binding for a group removed from the spec */
  snprintf(
      buf, sizeof buf,
      "{\"metadata\":{\"name\":\"tenant-viewer-0123456789\",\"namespace\":\"acme-prod\",\"resourceVersion\":"
      "\"9\",\"labels\":{\"tenancy.dev/tenant\":\"acme\"},%s},\"roleRef\":{},\"subjects\":[]}",
      owner);
  json_t *orphan = observe(&w, TN_KIND_ROLE_BINDING, load(buf));
  /* labelled ours but owned by nobody: not provably ours */
  observe(
      &w, TN_KIND_ROLE_BINDING,
      load(
          "{\"metadata\":{\"name\":\"copied\",\"namespace\":\"acme-prod\",\"labels\":{\"tenancy.dev/tenant\":"
          "\"acme\"}}}"));
  /* owned by our uid but labelled for another tenant: not deleted either */
  snprintf(buf, sizeof buf,
           "{\"metadata\":{\"name\":\"odd\",\"namespace\":\"acme-prod\",\"labels\":{\"tenancy.dev/tenant\":"
           "\"other\"},%s}}",
           owner);
  observe(&w, TN_KIND_NETWORK_POLICY, load(buf));
  /* another tenant's object */
  observe(&w, TN_KIND_NAMESPACE,
          load("{\"metadata\":{\"name\":\"other-prod\",\"labels\":{\"tenancy.dev/tenant\":\"other\"},"
               "\"ownerReferences\":[{\"apiVersion\":\"tenancy.dev/"
               "v1alpha1\",\"kind\":\"Tenant\",\"name\":\"other\","
               "\"uid\":\"uid-other\"}]}}"));
  run_diff(&w);
  cr_assert_eq(w.diff.len, 1);
  const struct tn_change *c = &w.diff.changes[0];
  cr_assert_eq(c->op, TN_CHANGE_DELETE);
  cr_assert_eq(c->kind, TN_KIND_ROLE_BINDING);
  cr_assert_str_eq(c->namespace, "acme-prod");
  cr_assert_str_eq(c->name, "tenant-viewer-0123456789");
  cr_assert_eq(c->observed, orphan);
  cr_assert_null(c->desired);
  cr_assert_str_eq(c->resource_version, "9");
  world_cleanup(&w);
}

Test(diff, suspend_then_resume_changes_in_order) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe_all(&w);
  world_desire(&w, TN_STATE_SUSPENDED);
  run_diff(&w);
  /* per env: create suspended-deny-all and the group's viewer binding, update the quota, delete
   * the group's own binding and the allow policy (role binding names end in a hash: prefixes) */
  static const struct {
    enum tn_change_op op;
    enum tn_kind kind;
    const char *ns, *name;
  } want[] = {
      {TN_CHANGE_CREATE, TN_KIND_NETWORK_POLICY, "acme-prod", "suspended-deny-all"},
      {TN_CHANGE_CREATE, TN_KIND_NETWORK_POLICY, "acme-staging", "suspended-deny-all"},
      {TN_CHANGE_CREATE, TN_KIND_ROLE_BINDING, "acme-prod", "tenant-viewer-"},
      {TN_CHANGE_CREATE, TN_KIND_ROLE_BINDING, "acme-staging", "tenant-viewer-"},
      {TN_CHANGE_UPDATE, TN_KIND_RESOURCE_QUOTA, "acme-prod", "tenant-quota"},
      {TN_CHANGE_UPDATE, TN_KIND_RESOURCE_QUOTA, "acme-staging", "tenant-quota"},
      {TN_CHANGE_DELETE, TN_KIND_ROLE_BINDING, "acme-prod", "tenant-admin-"},
      {TN_CHANGE_DELETE, TN_KIND_ROLE_BINDING, "acme-staging", "tenant-admin-"},
      {TN_CHANGE_DELETE, TN_KIND_NETWORK_POLICY, "acme-prod", "allow-same-tenant"},
      {TN_CHANGE_DELETE, TN_KIND_NETWORK_POLICY, "acme-staging", "allow-same-tenant"},
  };
  cr_assert_eq(w.diff.len, 10);
  for (size_t i = 0; i < 10; i++) {
    const struct tn_change *c = &w.diff.changes[i];
    cr_assert_eq(c->op, want[i].op, "change %zu: %s", i, tn_change_op_name(c->op));
    cr_assert_eq(c->kind, want[i].kind, "change %zu", i);
    cr_assert_str_eq(c->namespace, want[i].ns, "change %zu", i);
    if (c->kind == TN_KIND_ROLE_BINDING)
      cr_assert(strncmp(c->name, want[i].name, strlen(want[i].name)) == 0, "change %zu: %s", i, c->name);
    else
      cr_assert_str_eq(c->name, want[i].name, "change %zu", i);
  }
  /* resume against the stored Active objects: nothing to do */
  world_desire(&w, TN_STATE_ACTIVE);
  run_diff(&w);
  cr_assert_eq(w.diff.len, 0);
  world_cleanup(&w);
}

Test(diff, archive_deletes_namespaces_and_leaves_their_content_to_them) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe_all(&w);
  world_desire(&w, TN_STATE_ARCHIVED);
  cr_assert_eq(w.desired.len, 0);
  run_diff(&w);
  cr_assert_eq(w.diff.len, 2, "one DELETE per namespace; its content goes with it");
  cr_assert_eq(w.diff.changes[0].op, TN_CHANGE_DELETE);
  cr_assert_eq(w.diff.changes[0].kind, TN_KIND_NAMESPACE);
  cr_assert_str_eq(w.diff.changes[0].name, "acme-prod");
  cr_assert_str_eq(w.diff.changes[1].name, "acme-staging");
  /* with no desired list at all (a teardown) the same */
  tn_diff_cleanup(&w.diff);
  cr_assert_eq(tn_diff_compute(NULL, w.observed, w.n_observed, "acme", "uid-acme", &w.diff, NULL), 0);
  cr_assert_eq(w.diff.len, 2);
  world_cleanup(&w);
}

Test(diff, deletes_run_in_reverse_kind_order_namespaces_last) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe_all(&w);
  /* drop staging from the spec: its namespace goes; prod loses its role binding */
  free(w.t->environments[1]);
  w.t->n_environments = 1;
  w.t->group_bindings[0].role = TN_ROLE_VIEWER; /* the admin binding is replaced by a viewer one */
  world_desire(&w, TN_STATE_ACTIVE);
  /* and something of ours in a namespace that stays, in another kind */
  static const char stale[] = "{\"metadata\":{\"name\":\"stale\",\"namespace\":\"acme-prod\",\"labels\":{"
                              "\"tenancy.dev/tenant\":\"acme\"},"
                              "\"ownerReferences\":[{\"apiVersion\":\"tenancy.dev/"
                              "v1alpha1\",\"kind\":\"Tenant\",\"name\":\"acme\",\"uid\":"
                              "\"uid-acme\"}]},\"spec\":{}}";
  observe(&w, TN_KIND_NETWORK_POLICY, load(stale));
  run_diff(&w);
  cr_assert_eq(w.diff.len, 4);
  cr_assert_eq(w.diff.changes[0].op, TN_CHANGE_CREATE);
  cr_assert_eq(w.diff.changes[0].kind, TN_KIND_ROLE_BINDING);
  cr_assert_eq(strncmp(w.diff.changes[0].name, "tenant-viewer-", 14), 0);
  cr_assert_eq(w.diff.changes[1].op, TN_CHANGE_DELETE);
  cr_assert_eq(w.diff.changes[1].kind, TN_KIND_ROLE_BINDING, "access is revoked first");
  cr_assert_str_eq(w.diff.changes[1].namespace, "acme-prod");
  cr_assert_eq(w.diff.changes[2].kind, TN_KIND_NETWORK_POLICY);
  cr_assert_str_eq(w.diff.changes[2].name, "stale");
  cr_assert_eq(w.diff.changes[3].kind, TN_KIND_NAMESPACE, "namespaces last");
  cr_assert_str_eq(w.diff.changes[3].name, "acme-staging");
  cr_assert_null(w.diff.changes[3].namespace);
  world_cleanup(&w);
}

Test(diff, terminating_objects_wait) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe_all(&w);
  /* acme-staging was deleted by hand and is terminating; its content is still observed */
  json_t *ns = observed_named(&w, TN_KIND_NAMESPACE, NULL, "acme-staging");
  json_object_set_new(json_object_get(ns, "metadata"), "deletionTimestamp",
                      json_string("2025-01-01T00:00:00Z"));
  /* and one policy inside it is already gone from the cache: removing it from the array */
  json_t *np = observed_named(&w, TN_KIND_NETWORK_POLICY, "acme-staging", "allow-same-tenant");
  for (size_t i = 0; i < w.n_observed; i++)
    if (w.observed[i].obj == np) {
      memmove(&w.observed[i], &w.observed[i + 1], (w.n_observed - i - 1) * sizeof w.observed[0]);
      w.n_observed--;
      break;
    }
  run_diff(&w);
  cr_assert_eq(w.diff.len, 0, "nothing can be written until the namespace is gone: %s",
               w.diff.len ? w.diff.changes[0].name : "");
  cr_assert_eq(w.diff.n_waiting, 2, "the namespace and the policy to recreate");
  world_cleanup(&w);
}

Test(diff, refuses_bad_input) {
  struct world w;
  world_init(&w);
  world_desire(&w, TN_STATE_ACTIVE);
  observe(&w, TN_KIND_NAMESPACE, load("{\"metadata\":{}}"));
  struct tn_error err = {0};
  cr_assert_eq(tn_diff_compute(&w.desired, w.observed, w.n_observed, "acme", "uid-acme", &w.diff, &err),
               TN_EINVALID);
  cr_assert_str_eq(err.message, "diff: an observed Namespace has no metadata.name");
  cr_assert_eq(w.diff.len, 0);
  cr_assert_eq(tn_diff_compute(&w.desired, NULL, 0, "acme", NULL, &w.diff, &err), TN_EINVALID);
  cr_assert_eq(tn_diff_compute(&w.desired, NULL, 0, "acme", "", &w.diff, &err), TN_EINVALID);
  world_cleanup(&w);
}

Test(diff, op_names) {
  cr_assert_str_eq(tn_change_op_name(TN_CHANGE_CONFLICT), "conflict");
  cr_assert_str_eq(tn_change_op_name(TN_CHANGE_CREATE), "create");
  cr_assert_str_eq(tn_change_op_name(TN_CHANGE_UPDATE), "update");
  cr_assert_str_eq(tn_change_op_name(TN_CHANGE_DELETE), "delete");
}
