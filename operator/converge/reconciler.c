/* reconciler.c - the tenant reconcile (see reconciler.h): cache -> lifecycle -> placement ->
 * desired objects -> diff against the caches -> writes -> status and events.
 *
 * Writes happen only for differences: an unchanged tenant costs zero API writes. Creates use
 * POST, so a name taken by someone else answers AlreadyExists and is then inspected with one
 * GET (the caches only hold our own objects); updates are PUTs with the observed
 * resourceVersion, so they replace exactly what we own and lose no concurrent change silently. */
#include "converge/reconciler.h"

#include "converge/tenant_breakglass.h"
#include "converge/tenant_db.h"
#include "converge/tenant_keys.h"
#include "converge/tenant_suspend.h" /* suspend-archive: Suspended/Archived effects */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/events.h"
#include "runtime/log.h"
#include "tenancy/breakglass.h"
#include "tenancy/derive.h"
#include "tenancy/diff.h"
#include "tenancy/lifecycle.h"
#include "tenancy/placement.h"
#include "tenancy/policy.h"
#include "tenancy/tenant.h"
#include "util/clock.h"

const struct tn_gvr tn_gvr_tenants = {"tenancy.dev", "v1alpha1", "tenants", false};
const struct tn_gvr tn_gvr_plans = {"tenancy.dev", "v1alpha1", "plans", false};
const struct tn_gvr tn_gvr_regions = {"tenancy.dev", "v1alpha1", "regions", false};
const struct tn_gvr tn_gvr_policies = {"tenancy.dev", "v1alpha1", "tenancypolicies", false};

/* ---- the state we last wrote, per tenant ---------------------------------------------------- */

struct tn_written {
  pthread_mutex_t mu; /* protects map */
  json_t *map;        /* tenant name -> {"uid", "generation", "state"} */
};

struct tn_written *tn_written_new(void) {
  struct tn_written *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  pthread_mutex_init(&w->mu, NULL);
  w->map = json_object();
  if (!w->map) {
    free(w);
    return NULL;
  }
  return w;
}

void tn_written_free(struct tn_written *w) {
  if (!w)
    return;
  json_decref(w->map);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

static const char *field(json_t *obj, const char *section, const char *name) {
  return json_string_value(json_object_get(json_object_get(obj, section), name));
}

void tn_written_note(struct tn_written *w, json_t *tenant) {
  const char *name = field(tenant, "metadata", "name");
  if (!w || !name)
    return;
  json_t *rec =
      json_pack("{s:s,s:I,s:s}", "uid", field(tenant, "metadata", "uid") ?: "", "generation",
                json_integer_value(json_object_get(json_object_get(tenant, "metadata"), "generation")),
                "state", field(tenant, "status", "state") ?: "");
  pthread_mutex_lock(&w->mu);
  if (rec)
    json_object_set_new(w->map, name, rec);
  pthread_mutex_unlock(&w->mu);
}

bool tn_written_is_stale(struct tn_written *w, json_t *tenant) {
  const char *name = field(tenant, "metadata", "name");
  if (!w || !name)
    return false;
  bool stale = false;
  pthread_mutex_lock(&w->mu);
  json_t *rec = json_object_get(w->map, name);
  if (rec) {
    const char *uid = json_string_value(json_object_get(rec, "uid"));
    const char *state = json_string_value(json_object_get(rec, "state"));
    json_int_t gen = json_integer_value(json_object_get(rec, "generation"));
    const char *cached = field(tenant, "status", "state") ?: "";
    stale = uid && strcmp(uid, field(tenant, "metadata", "uid") ?: "") == 0 &&
            gen == json_integer_value(json_object_get(json_object_get(tenant, "metadata"), "generation")) &&
            state && strcmp(state, cached) != 0;
  }
  pthread_mutex_unlock(&w->mu);
  return stale;
}

/* ---- requesters ------------------------------------------------------------------------------ */

bool tn_tenant_requester(const json_t *tenant, char *actor, size_t na) {
  const json_t *ann = json_object_get(json_object_get(tenant, "metadata"), "annotations");
  const char *by = json_string_value(json_object_get(ann, TN_ANNOTATION_REQUESTED_BY));
  if (!by || !*by)
    return false;
  snprintf(actor, na, "%s", by);
  return true;
}

static const struct tn_gvr kind_gvrs[TN_KIND_COUNT] = {
    [TN_KIND_NAMESPACE] = {"", "v1", "namespaces", false},
    [TN_KIND_NETWORK_POLICY] = {"networking.k8s.io", "v1", "networkpolicies", true},
    [TN_KIND_RESOURCE_QUOTA] = {"", "v1", "resourcequotas", true},
    [TN_KIND_LIMIT_RANGE] = {"", "v1", "limitranges", true},
    [TN_KIND_ROLE_BINDING] = {"rbac.authorization.k8s.io", "v1", "rolebindings", true},
};

const struct tn_gvr *tn_kind_gvr(enum tn_kind k) { return &kind_gvrs[k]; }

/* The condition each owned kind feeds. */
enum cond {
  COND_READY = 0,
  COND_POLICY,
  COND_PLACED,
  COND_NAMESPACES,
  COND_NETWORK,
  COND_QUOTA,
  COND_ACCESS,
  COND_DATABASE,
  COND_KEYS,
  COND_COUNT
};
static const char *const cond_types[COND_COUNT] = {"Ready",           "PolicyCompliant", "Placed",
                                                   "NamespacesReady", "NetworkIsolated", "QuotaApplied",
                                                   "AccessBound",     "DatabaseReady",   "KeysReady"};
static const enum cond kind_cond[TN_KIND_COUNT] = {
    [TN_KIND_NAMESPACE] = COND_NAMESPACES, [TN_KIND_NETWORK_POLICY] = COND_NETWORK,
    [TN_KIND_RESOURCE_QUOTA] = COND_QUOTA, [TN_KIND_LIMIT_RANGE] = COND_QUOTA,
    [TN_KIND_ROLE_BINDING] = COND_ACCESS,
};

/* What a condition about owned objects covers, for its messages (QuotaApplied covers two kinds). */
static const char *const cond_objects[COND_COUNT] = {[COND_NAMESPACES] = "Namespace",
                                                     [COND_NETWORK] = "NetworkPolicy",
                                                     [COND_QUOTA] = "ResourceQuota and LimitRange",
                                                     [COND_ACCESS] = "RoleBinding"};

struct condition {
  bool set;
  const char *status; /* "True", "False", "Unknown" */
  char reason[64];
  char message[768];
};

/* One reconcile's working state. */
struct run {
  struct tn_reconciler *r;
  const char *key;
  json_t *obj;             /* the tenant as last read or written (own reference) */
  struct tn_tenant *t;     /* parsed; NULL when the spec is invalid */
  struct tn_log_fields lf; /* tenant, correlation id */
  char rv[64];             /* lf.resource_version: a copy, x.obj is replaced by writes */
  char cid[40];            /* lf.correlation_id: a copy that lives as long as the run */
  struct condition conds[COND_COUNT];
  char now[32];
  int writes;
  int drift_repaired;
  char drift_what[600];
};

static void cond_set(struct run *x, enum cond c, const char *status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void cond_set(struct run *x, enum cond c, const char *status, const char *reason, const char *fmt,
                     ...) {
  struct condition *k = &x->conds[c];
  k->set = true;
  k->status = status;
  snprintf(k->reason, sizeof k->reason, "%s", reason);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(k->message, sizeof k->message, fmt, ap);
  va_end(ap);
}

static void event(struct run *x, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void event(struct run *x, const char *type, const char *reason, const char *fmt, ...) {
  if (!x->r->recorder)
    return;
  json_t *meta = json_object_get(x->obj, "metadata");
  struct tn_object_ref ref = {
      .api_version = TN_API_VERSION,
      .kind = "Tenant",
      .name = x->key,
      .uid = json_string_value(json_object_get(meta, "uid")),
      .resource_version = json_string_value(json_object_get(meta, "resourceVersion")),
  };
  char note[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(note, sizeof note, fmt, ap);
  va_end(ap);
  tn_recorder_eventf(x->r->recorder, &ref, type, reason, "Reconcile", "%s", note);
}

/* Appends one audit row per lifecycle step with this outcome. The "started" rows are written
 * before anything of the transition is done: when that fails, nothing is done and the reconcile
 * is retried (failure to audit is a failed operation). */
static int audit_steps(struct run *x, const struct tn_lifecycle_plan *lp, const char *outcome,
                       long long gen_before, long long gen_after, struct tn_error *err) {
  if (!x->r->audit)
    return 0;
  char target[128], actor[256] = TN_AUDIT_OPERATOR_ACTOR, request_id[64];
  snprintf(target, sizeof target, "tenant/%s", x->key);
  snprintf(request_id, sizeof request_id, "%s", x->rv);
  /* The person who asked for this generation, as the API server recorded it on the tenant we
   * read (the annotation always describes the object's own generation, see reconciler.h). */
  const json_t *gen = json_object_get(json_object_get(x->obj, "metadata"), "generation");
  if (json_integer_value(gen) == gen_after)
    tn_tenant_requester(x->obj, actor, sizeof actor);
  for (int i = 0; i < lp->n_steps; i++) {
    const struct tn_transition *st = &lp->steps[i];
    char details[256];
    snprintf(details, sizeof details, "{\"from\":\"%s\",\"to\":\"%s\",\"reason\":\"%s\"}",
             st->from == TN_STATE_NONE ? "" : tn_state_name(st->from), tn_state_name(st->to),
             st->event_reason);
    struct tn_audit_event ev = {.actor = actor,
                                .action = tn_action_name(st->action),
                                .target = target,
                                .request_id = request_id,
                                .correlation_id = st->correlation_id,
                                .outcome = outcome,
                                .generation_before = gen_before,
                                .generation_after = gen_after,
                                .details = details};
    int rc = tn_audit_append(x->r->audit, &ev, NULL, err);
    if (rc)
      return rc;
  }
  return 0;
}

/* The data key step's audit hook: its changes go to the same trail, before they are made. */
static int keys_audit(void *ud, const struct tn_tenant_keys_action *a, const char *outcome,
                      struct tn_error *err) {
  struct run *x = ud;
  if (!x->r->audit)
    return 0;
  char target[128];
  snprintf(target, sizeof target, "tenant/%s", a->tenant);
  struct tn_audit_event ev = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                              .action = a->action,
                              .target = target,
                              .request_id = x->rv,
                              .correlation_id = a->correlation_id,
                              .outcome = outcome,
                              .generation_before = x->lf.generation,
                              .generation_after = x->lf.generation,
                              .details = a->details};
  return tn_audit_append(x->r->audit, &ev, NULL, err);
}

/* The break-glass step's audit hook: grants before they are made, revocations when possible. */
static int breakglass_audit(void *ud, const struct tn_breakglass_event *ev, struct tn_error *err) {
  struct run *x = ud;
  if (!x->r->audit)
    return 0;
  char target[128];
  snprintf(target, sizeof target, "tenant/%s", x->key);
  char *details = tn_breakglass_report_details(ev->report);
  if (!details)
    return tn_error_set(err, -ENOMEM, "out of memory");
  struct tn_audit_event ae = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                              .action = ev->action,
                              .target = target,
                              .request_id = x->rv,
                              .correlation_id = ev->report->correlation_id,
                              .outcome = ev->outcome,
                              .generation_before = x->lf.generation,
                              .generation_after = x->lf.generation,
                              .details = details};
  int rc = tn_audit_append(x->r->audit, &ae, NULL, err);
  free(details);
  return rc;
}

static bool has_finalizer(json_t *obj) {
  json_t *fins = json_object_get(json_object_get(obj, "metadata"), "finalizers");
  size_t i;
  json_t *f;
  json_array_foreach(fins, i, f) {
    if (json_is_string(f) && strcmp(json_string_value(f), TN_FINALIZER) == 0)
      return true;
  }
  return false;
}

/* PUTs the tenant with its finalizer added (add=true) or removed; x->obj becomes the answer. */
static int set_finalizer(struct run *x, bool add, struct tn_error *err) {
  json_t *copy = json_deep_copy(x->obj);
  if (!copy)
    return tn_error_set(err, -ENOMEM, "out of memory");
  json_t *meta = json_object_get(copy, "metadata");
  json_t *fins = json_object_get(meta, "finalizers");
  json_t *next = json_array();
  size_t i;
  json_t *f;
  json_array_foreach(fins, i, f) {
    if (!(json_is_string(f) && strcmp(json_string_value(f), TN_FINALIZER) == 0))
      json_array_append(next, f);
  }
  if (add)
    json_array_append_new(next, json_string(TN_FINALIZER));
  json_object_set_new(meta, "finalizers", next);
  json_t *out = NULL;
  int rc = tn_kube_update(x->r->kube, &tn_gvr_tenants, NULL, copy, NULL, &out, err);
  json_decref(copy);
  x->writes++;
  if (rc == 0) {
    json_decref(x->obj);
    x->obj = out;
  }
  return rc;
}

/* ---- observed objects --------------------------------------------------------------------- */

struct observed_set {
  json_t *lists[TN_KIND_COUNT]; /* arrays from the caches (own references) */
  struct tn_observed *items;
  size_t n;
};

static void observed_cleanup(struct observed_set *o) {
  for (int k = 0; k < TN_KIND_COUNT; k++)
    json_decref(o->lists[k]);
  free(o->items);
  memset(o, 0, sizeof *o);
}

static int observe(struct run *x, struct observed_set *o, struct tn_error *err) {
  size_t total = 0;
  for (int k = 0; k < TN_KIND_COUNT; k++) {
    o->lists[k] = tn_informer_list_by_index(x->r->owned[k], TN_INDEX_TENANT, x->key, err);
    if (!o->lists[k])
      return err->code ? err->code : -ENOMEM;
    total += json_array_size(o->lists[k]);
  }
  o->items = calloc(total ? total : 1, sizeof *o->items);
  if (!o->items)
    return tn_error_set(err, -ENOMEM, "out of memory");
  for (int k = 0; k < TN_KIND_COUNT; k++) {
    size_t i;
    json_t *it;
    json_array_foreach(o->lists[k], i, it) {
      if (k == TN_KIND_ROLE_BINDING && tn_breakglass_is_binding(it))
        continue; /* the break-glass step's, not the desired state's */
      o->items[o->n].kind = (enum tn_kind)k;
      o->items[o->n].obj = it;
      o->n++;
    }
  }
  return 0;
}

/* ---- applying changes --------------------------------------------------------------------- */

struct kind_state {
  int conflicts, failed, pending;
  char first_problem[512];
};

static void note_problem(struct kind_state *ks, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_problem(struct kind_state *ks, const char *fmt, ...) {
  if (ks->first_problem[0])
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ks->first_problem, sizeof ks->first_problem, fmt, ap);
  va_end(ap);
}

static void describe(const struct tn_change *c, char *out, size_t n) {
  if (c->namespace)
    snprintf(out, n, "%s %s/%s", tn_kind_name(c->kind), c->namespace, c->name);
  else
    snprintf(out, n, "%s %s", tn_kind_name(c->kind), c->name);
}

/* Applies one change. Returns 0, or a negative code for an error worth retrying. */
static int apply_change(struct run *x, const struct tn_change *c, const char *uid, struct kind_state *ks) {
  const struct tn_gvr *gvr = &kind_gvrs[c->kind];
  struct tn_error err = {0};
  char what[300];
  describe(c, what, sizeof what);
  int rc = 0;
  switch (c->op) {
  case TN_CHANGE_CONFLICT:
    ks->conflicts++;
    note_problem(ks,
                 "%s already exists and is not owned by tenant %s; the operator never adopts or changes it. "
                 "Delete or rename it, or change spec.environments",
                 what, x->key);
    return 0;
  case TN_CHANGE_CREATE:
    rc = tn_kube_create(x->r->kube, gvr, c->namespace, c->desired->body, NULL, &err);
    x->writes++;
    if (rc == TN_EEXISTS) {
      /* Someone else's, or ours and the cache does not show it: one GET tells. */
      json_t *got = NULL;
      struct tn_error gerr = {0};
      char why[160];
      if (tn_kube_get(x->r->kube, gvr, c->namespace, c->name, &got, &gerr) == 0 &&
          tn_owned_by_tenant(got, uid)) {
        if (!tn_diff_differs(c->desired, got, why, sizeof why)) {
          json_decref(got);
          ks->pending++;
          return 0; /* ours and as desired: the cache is behind and will catch up */
        }
        /* Ours (its owner reference says so) but changed by hand so that the label-filtered
         * caches cannot see it (a managed label removed or changed): restore it. */
        json_t *body = json_deep_copy(c->desired->body);
        const char *grv =
            json_string_value(json_object_get(json_object_get(got, "metadata"), "resourceVersion"));
        if (!body) {
          json_decref(got);
          return -ENOMEM;
        }
        json_object_set_new(json_object_get(body, "metadata"), "resourceVersion",
                            json_string(grv ? grv : ""));
        rc = tn_kube_update(x->r->kube, gvr, c->namespace, body, NULL, NULL, &err);
        json_decref(body);
        json_decref(got);
        x->writes++;
        if (rc == 0) {
          x->drift_repaired++;
          if (!x->drift_what[0])
            snprintf(x->drift_what, sizeof x->drift_what, "%s (%s)", what, why);
        }
        break;
      }
      json_decref(got);
      ks->conflicts++;
      note_problem(
          ks,
          "%s already exists and is not owned by tenant %s; the operator never adopts or changes it. "
          "Delete or rename it, or change spec.environments",
          what, x->key);
      return 0;
    }
    break;
  case TN_CHANGE_UPDATE: {
    json_t *body = json_deep_copy(c->desired->body);
    if (!body)
      return -ENOMEM;
    json_object_set_new(json_object_get(body, "metadata"), "resourceVersion",
                        json_string(c->resource_version ? c->resource_version : ""));
    rc = tn_kube_update(x->r->kube, gvr, c->namespace, body, NULL, NULL, &err);
    json_decref(body);
    x->writes++;
    if (rc == 0) {
      x->drift_repaired++;
      if (!x->drift_what[0])
        snprintf(x->drift_what, sizeof x->drift_what, "%s (%s)", what, c->reason);
    }
    break;
  }
  case TN_CHANGE_DELETE: {
    const char *ouid = json_string_value(json_object_get(json_object_get(c->observed, "metadata"), "uid"));
    struct tn_delete_opts opts = {.precondition_uid = ouid, .propagation_policy = "Background"};
    rc = tn_kube_delete(x->r->kube, gvr, c->namespace, c->name, &opts, &err);
    x->writes++;
    if (rc == TN_ENOTFOUND)
      rc = 0;
    if (rc == 0)
      ks->pending += c->kind == TN_KIND_NAMESPACE; /* namespaces take a while to go */
    break;
  }
  }
  if (rc) {
    ks->failed++;
    note_problem(ks, "%s %s failed: %s", tn_change_op_name(c->op), what,
                 err.message[0] ? err.message : tn_strerror(rc));
    tn_log(TN_LOG_WARN, &x->lf, "%s %s: %s", tn_change_op_name(c->op), what, err.message);
    return rc;
  }
  tn_log(TN_LOG_DEBUG, &x->lf, "%s %s (%s)", tn_change_op_name(c->op), what, c->reason);
  return 0;
}

/* ---- status ----------------------------------------------------------------------------- */

static json_t *old_condition(json_t *old_status, const char *type) {
  json_t *conds = json_object_get(old_status, "conditions");
  size_t i;
  json_t *c;
  json_array_foreach(conds, i, c) {
    const char *t = json_string_value(json_object_get(c, "type"));
    if (t && strcmp(t, type) == 0)
      return c;
  }
  return NULL;
}

static json_t *build_conditions(struct run *x, json_t *old_status, long long generation) {
  json_t *arr = json_array();
  for (int i = 0; i < COND_COUNT; i++) {
    struct condition *k = &x->conds[i];
    if (!k->set)
      continue;
    json_t *old = old_condition(old_status, cond_types[i]);
    const char *old_status_s = json_string_value(json_object_get(old, "status"));
    const char *ltt = old && old_status_s && strcmp(old_status_s, k->status) == 0
                          ? json_string_value(json_object_get(old, "lastTransitionTime"))
                          : NULL;
    json_array_append_new(arr,
                          json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "type", cond_types[i], "status", k->status,
                                    "reason", k->reason, "message", k->message, "lastTransitionTime",
                                    ltt ? ltt : x->now, "observedGeneration", (json_int_t)generation));
  }
  return arr;
}

static void set_or_keep_time(json_t *status, const char *field, bool now_if_missing_or_step,
                             const char *now) {
  if (now_if_missing_or_step)
    json_object_set_new(status, field, json_string(now));
}

/* ---- the reconcile ------------------------------------------------------------------------- */

/* Removes everything the tenant owns, then the finalizer: kubectl delete tenant. */
static struct tn_result teardown(struct run *x) {
  const char *uid = json_string_value(json_object_get(json_object_get(x->obj, "metadata"), "uid"));
  struct tn_error err = {0};
  struct observed_set o = {0};
  struct tn_diff d = {0};
  struct tn_object_list none = {0};
  struct tn_result res = TN_RESULT_OK;
  if (!has_finalizer(x->obj))
    return res;
  if (observe(x, &o, &err) || tn_diff_compute(&none, o.items, o.n, x->key, uid, &d, &err)) {
    tn_log(TN_LOG_ERROR, &x->lf, "teardown: %s", err.message);
    res = TN_RESULT_ERR;
    goto out;
  }
  /* `kubectl delete tenant`: audited like a transition to Deleted, before the first delete. */
  json_t *meta = json_object_get(x->obj, "metadata");
  long long gen = json_integer_value(json_object_get(meta, "generation"));
  enum tn_state from = TN_STATE_NONE;
  tn_state_parse(json_string_value(json_object_get(json_object_get(x->obj, "status"), "state")), &from);
  struct tn_lifecycle_plan lp = {.next = TN_STATE_DELETED, .n_steps = 1};
  lp.steps[0] = (struct tn_transition){
      .from = from, .to = TN_STATE_DELETED, .action = TN_ACTION_DELETE, .event_reason = "Deleted"};
  tn_correlation_id(uid, gen, from, TN_STATE_DELETED, lp.steps[0].correlation_id);
  snprintf(x->cid, sizeof x->cid, "%s", lp.steps[0].correlation_id);
  x->lf.correlation_id = x->cid;
  if (d.len > 0 && audit_steps(x, &lp, TN_AUDIT_STARTED, gen, gen, &err)) {
    tn_log(TN_LOG_WARN, &x->lf, "audit trail unavailable, deletion postponed: %s", err.message);
    res = TN_RESULT_ERR;
    goto out;
  }
  struct kind_state ks[TN_KIND_COUNT] = {0};
  for (size_t i = 0; i < d.len; i++)
    if (apply_change(x, &d.changes[i], uid, &ks[d.changes[i].kind]))
      res = TN_RESULT_ERR;
  if (res.kind == TN_RESULT_ERROR)
    goto out;
  if (o.n > 0) {
    /* Deletes are issued; wait until the caches see every owned object gone (namespaces take a
     * few seconds to empty). */
    res = TN_RESULT_AFTER(2);
    goto out;
  }
  struct tn_tenant_db_result dbr;
  int dbrc = tn_tenant_db_teardown(x->r, x->obj, &dbr);
  if (dbrc) {
    tn_log(TN_LOG_WARN, &x->lf, "dropping the tenant's database: %s", dbr.message);
    tn_tenant_db_result_cleanup(&dbr);
    res = TN_RESULT_ERR;
    goto out;
  }
  tn_tenant_db_result_cleanup(&dbr);
  if (x->r->kms) {
    struct tn_tenant_keys_config kc = {
        .kms = x->r->kms, .namespace = x->r->operator_namespace, .audit = keys_audit, .audit_ud = x};
    struct tn_tenant_keys_result kr;
    int krc = tn_tenant_keys_teardown(x->r->kube, &kc, x->obj, &kr, &err);
    tn_tenant_keys_result_cleanup(&kr);
    if (krc) {
      tn_log(TN_LOG_WARN, &x->lf, "destroying the tenant's data keys: %s", err.message);
      res = TN_RESULT_ERR;
      goto out;
    }
  }
  if (set_finalizer(x, false, &err)) {
    tn_log(TN_LOG_WARN, &x->lf, "removing the finalizer: %s", err.message);
    res = TN_RESULT_ERR;
    goto out;
  }
  if (audit_steps(x, &lp, TN_AUDIT_SUCCEEDED, gen, gen, &err))
    tn_log(TN_LOG_WARN, &x->lf, "recording the deletion's outcome in the audit trail: %s", err.message);
  tn_log(TN_LOG_INFO, &x->lf, "everything the tenant owned is gone; finalizer removed");
  event(x, TN_EVENT_NORMAL, "Deleted", "tenant %s deleted: every object it owned was removed", x->key);
out:
  tn_diff_cleanup(&d);
  observed_cleanup(&o);
  return res;
}

/* The tenant's spec.quotaOverrides that a TenancyPolicy permits replace the plan's values (the
 * plan struct is changed in place: it is this reconcile's copy). Returns how many applied. */
static int apply_quota_overrides(struct tn_plan *plan, json_t *tenant_obj, unsigned permitted) {
  json_t *ov = json_object_get(json_object_get(tenant_obj, "spec"), "quotaOverrides");
  const char *k;
  json_t *v;
  int n = 0;
  json_object_foreach(ov, k, v) {
    enum tn_quota_key key;
    if (tn_quota_key_parse(k, &key) || !(permitted & (1u << key)))
      continue;
    char text[64];
    if (json_is_string(v))
      snprintf(text, sizeof text, "%s", json_string_value(v));
    else if (json_is_integer(v))
      snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
    else
      continue;
    int64_t milli = 0;
    if (tn_quantity_parse(text, &milli))
      continue;
    char **str = NULL;
    int64_t *num = NULL;
    switch (key) {
    case TN_QUOTA_CPU:
      str = &plan->quotas.cpu, num = &plan->quotas.cpu_milli;
      break;
    case TN_QUOTA_MEMORY:
      str = &plan->quotas.memory, num = &plan->quotas.memory_milli;
      break;
    case TN_QUOTA_STORAGE:
      str = &plan->quotas.storage, num = &plan->quotas.storage_milli;
      break;
    case TN_QUOTA_PODS:
      plan->quotas.pods = milli / 1000;
      break;
    case TN_QUOTA_SERVICES:
      plan->quotas.services = milli / 1000;
      break;
    case TN_QUOTA_CONNECTIONS:
      plan->quotas.connections = milli / 1000;
      break;
    case TN_QUOTA_EVENTS_PER_DAY:
      plan->quotas.events_per_day = milli / 1000;
      break;
    }
    if (str) {
      char *copy = strdup(text);
      if (!copy)
        continue;
      free(*str);
      *str = copy;
      *num = milli;
    }
    n++;
  }
  return n;
}

/* The TenancyPolicies and Regions one reconcile reads, decoded from the caches once and shared
 * by the policy evaluation, placement and the break-glass step. */
struct inventory {
  json_t *policy_objs, *region_objs; /* the cached objects (own references) */
  struct tn_policy **policies;       /* the ones that parse */
  size_t n_policies;
  struct tn_policy_region **regions; /* likewise, with their database servers */
  const struct tn_region **plain;    /* regions[i]->region, for placement */
  size_t n_regions;
};

static int inventory_load(struct tn_reconciler *r, struct inventory *inv) {
  inv->policy_objs = tn_informer_list(r->policies);
  inv->region_objs = tn_informer_list(r->regions);
  size_t np = json_array_size(inv->policy_objs), nr = json_array_size(inv->region_objs);
  inv->policies = calloc(np ? np : 1, sizeof *inv->policies);
  inv->regions = calloc(nr ? nr : 1, sizeof *inv->regions);
  inv->plain = calloc(nr ? nr : 1, sizeof *inv->plain);
  if (!inv->policy_objs || !inv->region_objs || !inv->policies || !inv->regions || !inv->plain)
    return -ENOMEM;
  size_t i;
  json_t *o;
  json_array_foreach(inv->policy_objs, i, o) {
    struct tn_error e = {0};
    if (tn_policy_parse(o, &inv->policies[inv->n_policies], &e) == 0)
      inv->n_policies++;
  }
  json_array_foreach(inv->region_objs, i, o) {
    struct tn_error e = {0};
    if (tn_policy_region_parse(o, &inv->regions[inv->n_regions], &e) == 0) {
      inv->plain[inv->n_regions] = inv->regions[inv->n_regions]->region;
      inv->n_regions++;
    }
  }
  return 0;
}

static void inventory_cleanup(struct inventory *inv) {
  for (size_t k = 0; k < inv->n_policies; k++)
    tn_policy_free(inv->policies[k]);
  for (size_t k = 0; k < inv->n_regions; k++)
    tn_policy_region_free(inv->regions[k]);
  free(inv->policies);
  free(inv->regions);
  free(inv->plain);
  json_decref(inv->policy_objs);
  json_decref(inv->region_objs);
  memset(inv, 0, sizeof *inv);
}

/* Policy before action: every TenancyPolicy against the tenant and the steps about to be taken.
 * Fills *pr (residency narrowed for placement). Returns 0 (allowed), TN_EINVALID (denied, err
 * says every violated rule), or another code. */
static int evaluate_policy(struct run *x, const struct inventory *inv, const struct tn_lifecycle_plan *lp,
                           struct tn_policy_result *pr, struct tn_error *err) {
  unsigned overrides = 0;
  const char *db_server = NULL;
  tn_policy_tenant_fields(x->obj, &overrides, &db_server);
  struct tn_policy_input in = {.tenant = x->t,
                               .quota_overrides = overrides,
                               .database_server = db_server,
                               .regions = (const struct tn_policy_region *const *)inv->regions,
                               .n_regions = inv->n_regions,
                               .policies = (const struct tn_policy *const *)inv->policies,
                               .n_policies = inv->n_policies,
                               .steps = lp->steps,
                               .n_steps = (size_t)lp->n_steps};
  double t0 = tn_mono_now();
  int rc = tn_policy_evaluate(&in, pr, err);
  tn_series_observe(x->r->policy_latency, tn_mono_now() - t0);
  return rc;
}

struct tn_result tn_tenant_reconcile(void *ud, const char *key) {
  struct run x = {.r = ud, .key = key};
  x.lf = (struct tn_log_fields)TN_LOG_FIELDS_INIT;
  x.lf.controller = "tenant";
  x.lf.tenant = key;
  tn_time_rfc3339(tn_wall_now(), x.now, sizeof x.now);
  struct tn_result res = TN_RESULT_OK;
  struct tn_error err = {0};
  json_t *plan_obj = NULL, *derived = NULL, *new_status = NULL, *db_status = NULL, *keys_status = NULL,
         *bg_status = NULL;
  struct tn_plan *plan = NULL;
  struct inventory inv = {0};
  struct tn_object_list desired = {0};
  struct observed_set observed = {0};
  struct tn_diff diff = {0};
  struct tn_lifecycle_plan lp = {0};
  struct tn_placement placement = {0};
  bool placed = false, have_plan = false, provisioned = false, policy_ok = false;
  struct tn_policy_result policy;
  tn_policy_result_init(&policy);
  long long gen_before = 0;
  /* suspend-archive: what Suspended/Archived mean for this tenant, and what was done. */
  struct tn_lifecycle_rules lrules = {0};
  struct tn_archive_schedule archive = {0};
  bool purge_complete = false;                  /* the data of an Archived tenant is gone */
  struct tn_workloads_result wr = {.held = -1}; /* -1: the workload step did not run */

  x.obj = tn_informer_get(x.r->tenants, key);
  if (!x.obj)
    return res; /* gone: the garbage collector removes what it owned */
  json_t *meta = json_object_get(x.obj, "metadata");
  x.lf.generation = json_integer_value(json_object_get(meta, "generation"));
  snprintf(x.rv, sizeof x.rv, "%s", json_string_value(json_object_get(meta, "resourceVersion")) ?: "");
  x.lf.resource_version = x.rv;

  if (json_object_get(meta, "deletionTimestamp")) {
    res = teardown(&x);
    goto out;
  }
  if (!has_finalizer(x.obj)) {
    int frc = set_finalizer(&x, true, &err);
    if (frc) {
      tn_log(frc == TN_ECONFLICT ? TN_LOG_DEBUG : TN_LOG_WARN, &x.lf, "adding the finalizer: %s",
             err.message);
      res = TN_RESULT_ERR;
      goto out;
    }
    meta = json_object_get(x.obj, "metadata");
  }
  json_t *old_status = json_object_get(x.obj, "status");
  long long generation = json_integer_value(json_object_get(meta, "generation"));

  if (tn_tenant_parse(x.obj, &x.t, &err)) {
    cond_set(&x, COND_READY, "False", "InvalidSpec", "%s", err.message);
    event(&x, TN_EVENT_WARNING, "InvalidSpec", "%s", err.message);
    goto status; /* nothing already converged is touched */
  }
  if (tn_desired_check_names(x.t, &err)) {
    cond_set(&x, COND_READY, "False", "InvalidSpec", "%s", err.message);
    event(&x, TN_EVENT_WARNING, "InvalidSpec", "%s", err.message);
    goto status;
  }

  /* Lifecycle: which state this reconcile reaches, and through which steps. */
  struct tn_error lerr = {0};
  int lrc = tn_lifecycle_plan(x.t, &lp, &lerr);
  if (lrc && !lp.refused) {
    res = TN_RESULT_ERR;
    goto out;
  }
  /* suspend-archive: a restore (Archived -> Active) is refused once the data was purged. */
  if (!lrc)
    lrc = tn_archive_check_restore(x.obj, &lp, &lerr);
  if (lp.n_steps > 0) {
    snprintf(x.cid, sizeof x.cid, "%s", lp.steps[lp.n_steps - 1].correlation_id);
    x.lf.correlation_id = x.cid;
  }
  /* Policy before action: a denied step does not happen (the tenant stays where it is). */
  struct tn_error polerr = {0};
  int prc = inventory_load(x.r, &inv);
  if (prc == 0)
    prc = evaluate_policy(&x, &inv, &lp, &policy, &polerr);
  /* suspend-archive: what Suspended/Archived mean now (policy rules, archive schedule). */
  tn_lifecycle_rules_from(inv.policy_objs, &lrules);
  if (prc == TN_EINVALID) {
    cond_set(&x, COND_POLICY, "False", "PolicyDenied", "%s", polerr.message);
    event(&x, TN_EVENT_WARNING, "PolicyDenied", "%s", polerr.message);
    if (lp.n_steps > 0) {
      lp.n_steps = 0;
      lp.next = x.t->status_state;
      x.lf.correlation_id = NULL;
    }
  } else if (prc) {
    res = TN_RESULT_ERR;
    goto out;
  } else {
    /* One message whatever the steps: a message that changed on the next pass would cost a second
     * status write for every transition. */
    cond_set(&x, COND_POLICY, "True", "Compliant", "every TenancyPolicy allows the tenant");
    policy_ok = true;
  }

  /* A refused transition changes nothing of the tenant's objects, database or keys: they stay
   * as they are. The current state comes from the status, and a status rewritten by hand (say
   * Archived under a spec that says Active) must not tear a live tenant down on its word alone.
   * Break-glass still runs: expired access is revoked whatever the lifecycle says. */
  if (lp.refused) {
    provisioned = lp.next == TN_STATE_ACTIVE || lp.next == TN_STATE_SUSPENDED;
    goto breakglass;
  }

  /* A transition is planned from the cache. Right after our own status write the cache can
   * still hold the tenant from before it, which would plan (and audit) the same transition
   * twice. We remember the state we last wrote for each tenant's uid and generation: a cache
   * that shows another state for them is behind our own write, and the watch event that brings
   * it up to date is on its way. No API call is needed for that. */
  if (lp.n_steps > 0 && tn_written_is_stale(x.r->written, x.obj)) {
    tn_log(TN_LOG_DEBUG, &x.lf,
           "cache behind our own last status write; reconciling again when it catches up");
    res = TN_RESULT_AFTER(0.5);
    goto out;
  }

  gen_before = x.t->observed_generation;
  if (lp.n_steps > 0) {
    struct tn_error aerr = {0};
    if (audit_steps(&x, &lp, TN_AUDIT_STARTED, gen_before, generation, &aerr)) {
      tn_log(TN_LOG_WARN, &x.lf, "audit trail unavailable, transition postponed: %s", aerr.message);
      event(&x, TN_EVENT_WARNING, "AuditUnavailable",
            "transition to %s postponed until it can be audited: %s", tn_state_name(lp.next), aerr.message);
      res = TN_RESULT_ERR;
      goto out;
    }
  }

  /* Plan and placement matter while provisioned (Active, Suspended, and Archived while its data
   * is retained: suspend-archive). */
  bool archiving_now = false;
  for (int i = 0; i < lp.n_steps; i++)
    archiving_now |= lp.steps[i].action == TN_ACTION_ARCHIVE;
  tn_archive_schedule_for(x.obj, lp.next, archiving_now, &lrules, tn_wall_now(), &archive);
  provisioned = lp.next == TN_STATE_ACTIVE || lp.next == TN_STATE_SUSPENDED ||
                (lp.next == TN_STATE_ARCHIVED && !archive.due);
  if (provisioned) {
    plan_obj = tn_informer_get(x.r->plans, x.t->plan);
    if (!plan_obj) {
      tn_derive_status(x.t->plan, NULL, &derived, &err);
      cond_set(&x, COND_QUOTA, "False", "PlanNotFound", "%s", err.message);
    } else if (tn_plan_parse(plan_obj, &plan, &err)) {
      cond_set(&x, COND_QUOTA, "False", "InvalidPlan", "plan %s: %s", x.t->plan, err.message);
    } else {
      if (policy_ok) /* overrides a policy permits replace the plan's values */
        apply_quota_overrides(plan, x.obj, policy.quota_overrides_permitted);
      if (tn_derive_status(x.t->plan, plan, &derived, &err))
        cond_set(&x, COND_QUOTA, "False", "InvalidPlan", "%s", err.message);
      else
        have_plan = true;
    }
    struct tn_error perr = {0};
    if (tn_placement_resolve(policy_ok ? &policy.residency : &x.t->residency, x.t->isolation,
                             x.t->status_region, inv.plain, inv.n_regions, &placement, &perr)) {
      cond_set(&x, COND_PLACED, "False", TN_REASON_PLACEMENT_FAILED, "%s", perr.message);
      event(&x, TN_EVENT_WARNING, "PlacementFailed", "%s", perr.message);
    } else {
      placed = true;
      cond_set(&x, COND_PLACED, "True", "Placed", "placed in region %s with isolation %s", placement.region,
               tn_isolation_name(placement.isolation));
    }
    if (!have_plan || !placed) {
      /* Without a plan or a region nothing is provisioned, and nothing already provisioned is
       * touched: the Plan and Region watches bring us back. */
      for (int c = COND_NAMESPACES; c <= COND_ACCESS; c++)
        if (!x.conds[c].set)
          cond_set(&x, (enum cond)c, "Unknown", "Waiting", "waiting for %s",
                   !have_plan ? "the plan" : "placement");
      goto status;
    }
  } else {
    cond_set(&x, COND_PLACED, "True", "NotRequired", "%s tenants are not placed", tn_state_name(lp.next));
  }

  /* Desired objects against what the caches observe. The allow policy lets pods reach the
   * tenant's database server: the server it is on, or the one it would be placed on. */
  json_t *db_server = provisioned && placed ? tn_tenant_db_server(x.r, x.obj, x.t, placement.region,
                                                                  policy.require_database_tls_policy)
                                            : NULL;
  json_t *db_cidrs = json_object_get(db_server, "egressCIDRs");
  const char *cidrs[16];
  struct tn_desired_database dbaddr = {.host = json_string_value(json_object_get(db_server, "host")),
                                       .port = (int)json_integer_value(json_object_get(db_server, "port")),
                                       .cidrs = cidrs};
  for (size_t i = 0; i < json_array_size(db_cidrs) && dbaddr.n_cidrs < 16; i++)
    if (json_string_value(json_array_get(db_cidrs, i)))
      cidrs[dbaddr.n_cidrs++] = json_string_value(json_array_get(db_cidrs, i));
  struct tn_desired_input in = {.tenant = x.t,
                                .state = lp.next,
                                .plan = plan,
                                .placement = &placement,
                                .pod_security_minimum = policy.pod_security_minimum,
                                .refused_groups = (const char *const *)policy.refused_groups,
                                .n_refused_groups = policy.n_refused_groups,
                                .database = db_server ? &dbaddr : NULL,
                                /* suspend-archive */
                                .suspension_access = lrules.access,
                                .archive_retained = !archive.due};
  int drc = tn_desired_build(&in, &desired, &err);
  json_decref(db_server);
  if (drc) {
    cond_set(&x, COND_READY, "False", "InvalidSpec", "%s", err.message);
    goto status;
  }
  if (observe(&x, &observed, &err) ||
      tn_diff_compute(&desired, observed.items, observed.n, x.t->name, x.t->uid, &diff, &err)) {
    tn_log(TN_LOG_ERROR, &x.lf, "diff: %s", err.message);
    res = TN_RESULT_ERR;
    goto out;
  }
  struct kind_state ks[TN_KIND_COUNT] = {0};
  bool retry = false;
  const char *foreign[64]; /* namespaces found to be someone else's: nothing is written into them */
  size_t n_foreign = 0;
  for (size_t i = 0; i < diff.len; i++) {
    const struct tn_change *c = &diff.changes[i];
    bool skip = false;
    for (size_t f = 0; c->namespace && f < n_foreign; f++)
      skip |= strcmp(foreign[f], c->namespace) == 0;
    if (skip)
      continue;
    int before = ks[c->kind].conflicts;
    if (apply_change(&x, c, x.t->uid, &ks[c->kind]))
      retry = true;
    if (c->kind == TN_KIND_NAMESPACE && ks[c->kind].conflicts > before && n_foreign < 64)
      foreign[n_foreign++] = c->name;
  }

  /* What remains of each kind tells its condition. */
  size_t remaining[TN_KIND_COUNT] = {0};
  for (size_t i = 0; i < observed.n; i++)
    remaining[observed.items[i].kind]++;
  for (int k = 0; k < TN_KIND_COUNT; k++) {
    enum cond c = kind_cond[k];
    if (x.conds[c].set && strcmp(x.conds[c].status, "True") != 0)
      continue; /* an earlier kind of the same condition already failed */
    if (ks[k].conflicts)
      cond_set(&x, c, "False", "Conflict", "%s", ks[k].first_problem);
    else if (ks[k].failed)
      cond_set(&x, c, "False", "ApplyFailed", "%s", ks[k].first_problem);
    else if (!provisioned && remaining[k] > 0)
      cond_set(&x, c, "False", "Terminating", "%zu %s object(s) of the tenant are being removed",
               remaining[k], tn_kind_name((enum tn_kind)k));
    else if (!provisioned)
      cond_set(&x, c, "True", "NotRequired", "%s tenants have no %s objects", tn_state_name(lp.next),
               cond_objects[c]);
    else if (diff.n_waiting && k == TN_KIND_NAMESPACE)
      cond_set(&x, c, "False", "Terminating", "a namespace of the tenant is still being deleted");
    else
      cond_set(&x, c, "True", "Converged", "every %s of the tenant is as desired", cond_objects[c]);
  }
  /* Groups never bound (reserved to Kubernetes, or refused by a policy's allowedGroupPatterns),
   * whatever admission let through: AccessBound says so, and an Event when it starts. */
  if (provisioned && policy.n_refused_groups &&
      (!x.conds[COND_ACCESS].set || strcmp(x.conds[COND_ACCESS].status, "True") == 0)) {
    char why[1024] = "";
    (void)tn_policy_group_allowed(x.t, policy.refused_groups[0],
                                  (const struct tn_policy *const *)inv.policies, inv.n_policies, why,
                                  sizeof why);
    cond_set(&x, COND_ACCESS, "False", "GroupRefused",
             "%zu group(s) of spec.identity.groupBindings not bound: %s", policy.n_refused_groups, why);
    const char *old_reason =
        json_string_value(json_object_get(old_condition(old_status, "AccessBound"), "reason"));
    if (!old_reason || strcmp(old_reason, "GroupRefused") != 0)
      event(&x, TN_EVENT_WARNING, "GroupRefused", "%zu group(s) of spec.identity.groupBindings not bound: %s",
            policy.n_refused_groups, why);
  }
  if (retry)
    res = TN_RESULT_ERR;
  else if (diff.n_waiting || (!provisioned && observed.n > 0))
    res = TN_RESULT_AFTER(2);

  /* The database, once the namespaces that hold its Secrets are ours and in place. */
  if ((provisioned && x.conds[COND_NAMESPACES].set && strcmp(x.conds[COND_NAMESPACES].status, "True") == 0) ||
      (lp.next == TN_STATE_ARCHIVED && !archive.due)) {
    struct tn_tenant_db_result dbr;
    tn_tenant_db_reconcile(x.r, x.obj, x.t, lp.next, placed ? placement.region : x.t->status_region, plan,
                           policy.require_database_tls_policy, &dbr);
    if (dbr.configured) {
      cond_set(&x, COND_DATABASE, dbr.status, dbr.reason, "%s", dbr.message);
      if (dbr.database)
        db_status = json_incref(dbr.database);
    }
    x.writes += dbr.writes;
    if (dbr.retry)
      res = TN_RESULT_ERR;
    else if (res.kind == TN_RESULT_SUCCESS && dbr.requeue_after_s > 0)
      res = TN_RESULT_AFTER(dbr.requeue_after_s);
    tn_tenant_db_result_cleanup(&dbr);
  } else if (lp.next == TN_STATE_DELETED || (archive.due && !archive.purged)) {
    struct tn_tenant_db_result dbr;
    if (tn_tenant_db_teardown(x.r, x.obj, &dbr)) {
      cond_set(&x, COND_DATABASE, dbr.status, dbr.reason, "%s", dbr.message);
      if (dbr.retry)
        res = TN_RESULT_ERR;
    } else {
      if (json_object_get(json_object_get(x.obj, "status"), "database"))
        cond_set(&x, COND_DATABASE, "True", lp.next == TN_STATE_DELETED ? "Deleted" : "Purged",
                 "the tenant's role, schema and database were dropped");
      /* suspend-archive: purged once the database and every owned object are gone (audited). */
      if (lp.next == TN_STATE_ARCHIVED && observed.n == 0 && !retry) {
        struct tn_error perr = {0};
        if (tn_archive_purge_audit(x.r, x.obj, x.rv, &archive, &perr) == 0)
          purge_complete = true;
        else
          res = TN_RESULT_ERR;
      }
    }
    tn_tenant_db_result_cleanup(&dbr);
  }
  /* suspend-archive: workloads scaled to zero (ScaleToZero, Archived) or given back. */
  bool scale_to_zero = false;
  if (x.conds[COND_NAMESPACES].set && strcmp(x.conds[COND_NAMESPACES].status, "True") == 0 &&
      tn_tenant_workloads_needed(x.obj, lp.next, &lrules, &archive, &scale_to_zero)) {
    tn_tenant_workloads_reconcile(x.r->kube, x.t, scale_to_zero, &wr);
    x.writes += wr.writes;
    if (wr.retry) {
      tn_log(TN_LOG_WARN, &x.lf, "workloads: %s", wr.problem);
      res = TN_RESULT_ERR;
    }
  }
  /* suspend-archive: come back when the retention of the archived data ends. */
  if (archive.archived && !archive.due && res.kind == TN_RESULT_SUCCESS)
    res = TN_RESULT_AFTER(archive.purge_after - tn_wall_now() + 1);

  /* Per-tenant data keys, where a policy requires them (and for as long as a tenant has them). */
  bool has_keys = json_integer_value(json_object_get(
                      json_object_get(json_object_get(x.obj, "status"), "keys"), "version")) > 0;
  if (x.r->kms && (policy.require_tenant_keys || has_keys) && (provisioned || lp.next == TN_STATE_ARCHIVED)) {
    struct tn_tenant_keys_config kc = {.kms = x.r->kms,
                                       .namespace = x.r->operator_namespace,
                                       .rotation_period_s = provisioned ? x.r->keys_rotation_period_s : 0,
                                       .audit = keys_audit,
                                       .audit_ud = &x};
    struct tn_tenant_keys_result kr;
    struct tn_error kerr = {0};
    tn_tenant_keys_reconcile(x.r->kube, &kc, x.obj, &kr, &kerr);
    if (kr.status)
      cond_set(&x, COND_KEYS, kr.status, kr.reason, "%s", kr.message);
    if (kr.keys)
      keys_status = json_incref(kr.keys);
    x.writes += kr.writes;
    if (kr.rotated)
      event(&x, TN_EVENT_NORMAL, "KeysRotated", "data key version %lld (correlationId=%s)", kr.version,
            kr.correlation_id);
    if (kr.retry)
      res = TN_RESULT_ERR;
    else if (res.kind == TN_RESULT_SUCCESS && kr.requeue_after_s > 0)
      res = TN_RESULT_AFTER(kr.requeue_after_s);
    tn_tenant_keys_result_cleanup(&kr);
  } else if (x.r->kms && has_keys && lp.next == TN_STATE_DELETED) {
    struct tn_tenant_keys_config kc = {.kms = x.r->kms, .audit = keys_audit, .audit_ud = &x};
    struct tn_tenant_keys_result kr;
    struct tn_error kerr = {0};
    if (tn_tenant_keys_teardown(x.r->kube, &kc, x.obj, &kr, &kerr)) {
      cond_set(&x, COND_KEYS, "False", kr.reason[0] ? kr.reason : "KeysTeardownFailed", "%s", kerr.message);
      res = TN_RESULT_ERR;
    }
    if (kr.keys)
      keys_status = json_incref(kr.keys);
    tn_tenant_keys_result_cleanup(&kr);
  }

  /* Break-glass: time-bound elevated RoleBindings, only while the tenant's namespaces are ours
   * (with a refused transition they were not looked at: as they are). */
breakglass:;
  {
    bool bg_live = provisioned && lp.next != TN_STATE_ARCHIVED /* suspend-archive */ &&
                   (lp.refused ||
                    (x.conds[COND_NAMESPACES].set && strcmp(x.conds[COND_NAMESPACES].status, "True") == 0));
    struct tn_error bgerr = {0};
    json_t *bg_rbs =
        tn_informer_list_by_index(x.r->owned[TN_KIND_ROLE_BINDING], TN_INDEX_TENANT, key, &bgerr);
    struct tn_breakglass_step bs = {.kube = x.r->kube,
                                    .tenant = x.obj,
                                    .environments = bg_live ? (const char *const *)x.t->environments : NULL,
                                    .n_environments = bg_live ? x.t->n_environments : 0,
                                    .policies = inv.policy_objs,
                                    .observed = bg_rbs,
                                    .now = tn_wall_now(),
                                    .audit = breakglass_audit,
                                    .audit_ud = &x};
    struct tn_breakglass_result bgr;
    if (tn_tenant_breakglass_reconcile(&bs, &bgr, &bgerr) && bgr.retry)
      res = TN_RESULT_ERR;
    else if (bgr.requeue_after_s > 0 &&
             (res.kind == TN_RESULT_SUCCESS ||
              (res.kind == TN_RESULT_REQUEUE_AFTER && bgr.requeue_after_s < res.after_s)))
      res = TN_RESULT_AFTER(bgr.requeue_after_s);
    x.writes += bgr.writes;
    for (size_t i = 0; i < bgr.n_granted; i++)
      event(&x, TN_EVENT_WARNING, "BreakGlassGranted", "break-glass %s granted until %s (correlationId=%s)",
            bgr.granted[i].id, bgr.granted[i].expires_at, bgr.granted[i].correlation_id);
    for (size_t i = 0; i < bgr.n_revoked; i++)
      event(&x, TN_EVENT_NORMAL, "BreakGlassRevoked", "break-glass %s revoked: %s (correlationId=%s)",
            bgr.revoked[i].id, bgr.revoked[i].why, bgr.revoked[i].correlation_id);
    for (size_t i = 0; i < bgr.n_denied; i++)
      event(&x, TN_EVENT_WARNING, "BreakGlassDenied", "break-glass %s denied: %s", bgr.denied[i].id,
            bgr.denied[i].why);
    if (bgr.problem[0])
      tn_log(TN_LOG_WARN, &x.lf, "break-glass: %s", bgr.problem);
    if (bgr.status)
      bg_status = json_incref(bgr.status);
    tn_breakglass_result_cleanup(&bgr);
    json_decref(bg_rbs);
  }

  if (x.drift_repaired && lp.n_steps == 0)
    event(&x, TN_EVENT_NORMAL, "DriftRepaired", "restored %d object(s), first %s", x.drift_repaired,
          x.drift_what);

status:;
  /* Ready adds everything up. */
  if (!x.conds[COND_READY].set) {
    if (lp.refused) {
      cond_set(&x, COND_READY, "False", TN_REASON_TRANSITION_REFUSED, "%s", lerr.message);
    } else {
      const char *bad = NULL;
      for (int c = COND_POLICY; c < COND_COUNT; c++)
        if (x.conds[c].set && strcmp(x.conds[c].status, "True") != 0) {
          bad = cond_types[c];
          break;
        }
      if (bad)
        cond_set(&x, COND_READY, "False", "NotConverged", "%s is not True", bad);
      else
        cond_set(&x, COND_READY, "True", "Converged", "tenant is %s and converged",
                 tn_state_name(x.t ? lp.next : TN_STATE_NONE));
    }
  }
  if (lp.refused)
    event(&x, TN_EVENT_WARNING, TN_REASON_TRANSITION_REFUSED, "%s", lerr.message);
  if (!x.conds[COND_POLICY].set)
    cond_set(&x, COND_POLICY, "Unknown", "NotEvaluated", "the spec could not be read");

  new_status = old_status ? json_deep_copy(old_status) : json_object();
  if (x.t) {
    json_object_set_new(new_status, "state", json_string(tn_state_name(lp.next)));
    for (int i = 0; i < lp.n_steps; i++) {
      const struct tn_transition *s = &lp.steps[i];
      switch (s->action) {
      case TN_ACTION_CREATE:
        set_or_keep_time(new_status, "createdAt", !json_object_get(new_status, "createdAt"), x.now);
        break;
      case TN_ACTION_ACTIVATE:
      case TN_ACTION_RESUME:
      case TN_ACTION_RESTORE: /* suspend-archive */
        set_or_keep_time(new_status, "activatedAt", true, x.now);
        break;
      case TN_ACTION_SUSPEND:
        set_or_keep_time(new_status, "suspendedAt", true, x.now);
        break;
      case TN_ACTION_ARCHIVE:
        set_or_keep_time(new_status, "archivedAt", true, x.now);
        break;
      case TN_ACTION_DELETE:
        set_or_keep_time(new_status, "deletedAt", true, x.now);
        break;
      default:
        break;
      }
      json_object_set_new(new_status, "lastCorrelationId", json_string(s->correlation_id));
    }
    if (placed)
      json_object_set_new(new_status, "placement",
                          json_pack("{s:s,s:s}", "region", placement.region, "isolation",
                                    tn_isolation_name(placement.isolation)));
    if (derived)
      json_object_set(new_status, "derived", derived);
    if (db_status)
      json_object_set(new_status, "database", db_status);
    if (keys_status)
      json_object_set(new_status, "keys", keys_status);
    /* suspend-archive: status.archive and status.scaledWorkloads. */
    if (!lp.refused)
      tn_archive_status_set(new_status, &archive, purge_complete, x.now);
    if (wr.held > 0)
      json_object_set_new(new_status, TN_STATUS_SCALED_WORKLOADS, json_integer(wr.held));
    else if (wr.held == 0)
      json_object_del(new_status, TN_STATUS_SCALED_WORKLOADS);
    if (bg_status && json_array_size(bg_status) == 0)
      json_object_del(new_status, "breakGlass");
    else if (bg_status)
      json_object_set(new_status, "breakGlass", bg_status);
    json_t *nss = json_array();
    for (size_t i = 0; i < desired.len; i++)
      if (desired.items[i].kind == TN_KIND_NAMESPACE)
        json_array_append_new(nss, json_string(desired.items[i].name));
    if (provisioned && !(have_plan && placed))
      json_decref(nss); /* unknown this time: keep what was there */
    else
      json_object_set_new(new_status, "namespaces", nss);
  }
  json_object_set_new(new_status, "observedGeneration", json_integer(generation));
  json_object_set_new(new_status, "conditions", build_conditions(&x, old_status, generation));

  if (!old_status || !json_equal(old_status, new_status)) {
    json_t *body = json_deep_copy(x.obj);
    json_object_set(body, "status", new_status);
    json_t *out_obj = NULL;
    int rc = tn_kube_update(x.r->kube, &tn_gvr_tenants, NULL, body, "status", &out_obj, &err);
    json_decref(body);
    x.writes++;
    if (rc) {
      /* A conflict means our cache is behind our own last write: expected, retried at once. */
      tn_log(rc == TN_ECONFLICT ? TN_LOG_DEBUG : TN_LOG_WARN, &x.lf, "writing status: %s", err.message);
      res = TN_RESULT_ERR;
      goto out;
    }
    json_decref(x.obj);
    x.obj = out_obj;
    tn_written_note(x.r->written, x.obj);
  }
  if (lp.n_steps > 0) {
    struct tn_error aerr = {0};
    if (audit_steps(&x, &lp, TN_AUDIT_SUCCEEDED, gen_before, generation, &aerr))
      tn_log(TN_LOG_WARN, &x.lf,
             "recording the transition's outcome in the audit trail: %s (the started row stands)",
             aerr.message);
  }
  /* Lifecycle events after the status that records them is durable. */
  for (int i = 0; i < lp.n_steps; i++) {
    const struct tn_transition *s = &lp.steps[i];
    event(&x, TN_EVENT_NORMAL, s->event_reason, "tenant %s: %s -> %s%s%s (correlationId=%s)", key,
          s->from == TN_STATE_NONE ? "(new)" : tn_state_name(s->from), tn_state_name(s->to),
          x.t->state_reason ? ": " : "", x.t->state_reason ? x.t->state_reason : "", s->correlation_id);
    tn_log(TN_LOG_INFO,
           &(struct tn_log_fields){.controller = "tenant",
                                   .tenant = key,
                                   .correlation_id = s->correlation_id,
                                   .generation = generation},
           "%s: %s -> %s", s->event_reason, s->from == TN_STATE_NONE ? "(new)" : tn_state_name(s->from),
           tn_state_name(s->to));
  }

out:
  if (x.writes)
    tn_log(TN_LOG_DEBUG, &x.lf, "reconciled with %d write(s)", x.writes);
  tn_diff_cleanup(&diff);
  observed_cleanup(&observed);
  tn_object_list_cleanup(&desired);
  inventory_cleanup(&inv);
  json_decref(plan_obj);
  json_decref(derived);
  json_decref(new_status);
  json_decref(db_status);
  json_decref(keys_status);
  json_decref(bg_status);
  tn_policy_result_cleanup(&policy);
  tn_plan_free(plan);
  tn_tenant_free(x.t);
  json_decref(x.obj);
  return res;
}
