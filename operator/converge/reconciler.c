/* reconciler.c - the tenant reconcile (see reconciler.h): cache -> lifecycle -> placement ->
 * desired objects -> diff against the caches -> writes -> status and events.
 *
 * Writes happen only for differences: an unchanged tenant costs zero API writes. Creates use
 * POST, so a name taken by someone else answers AlreadyExists and is then inspected with one
 * GET (the caches only hold our own objects); updates are PUTs with the observed
 * resourceVersion, so they replace exactly what we own and lose no concurrent change silently. */
#include "converge/reconciler.h"
#include "converge/owned_apply.h"  /* server-side apply of owned objects */
#include "converge/owned_delete.h" /* the uid-conditional delete of owned objects */

#include "converge/migration.h"
#include "converge/tenant_breakglass.h"
#include "converge/tenant_changes.h" /* OUTBOX (issue 14) */
#include "converge/tenant_db.h"
#include "converge/tenant_keys.h"
#include "converge/tenant_suspend.h" /* Suspended/Archived effects */

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/history.h" /* HISTORY (issue 13) */
#include "audit/outbox.h"  /* OUTBOX (issue 14) */
#include "runtime/events.h"
#include "runtime/log.h"
#include "tenancy/breakglass.h"
#include "tenancy/capacity.h"
#include "tenancy/cloudevents.h"
#include "tenancy/derive.h"
#include "tenancy/diff.h"
#include "tenancy/drift.h"
#include "tenancy/lifecycle.h"
#include "tenancy/placement.h"
#include "tenancy/policy.h"
#include "tenancy/tenant.h"
#include "util/clock.h"
#include "util/uuid.h"

const struct tn_gvr tn_gvr_tenants = {"tenancy.dev", "v1alpha1", "tenants", false};
const struct tn_gvr tn_gvr_plans = {"tenancy.dev", "v1alpha1", "plans", false};
const struct tn_gvr tn_gvr_regions = {"tenancy.dev", "v1alpha1", "regions", false};
const struct tn_gvr tn_gvr_policies = {"tenancy.dev", "v1alpha1", "tenancypolicies", false};

/* ---- the versions our last status write replaced, per tenant ----------------------------- */

/* One entry per tenant: ~90 bytes (a jansson object per tenant was ~500: 5 MB at 10,000).
 *
 * A pass that wrote a tenant's status replaced, in order: the version it started from (the
 * cache's), the one its finalizer write answered if it made one, and the one the status write was
 * sent with; it ends at the version the status write answered. A cache that still shows one of
 * the replaced versions is behind our own writes: a pass planned from it would do (and audit) a
 * transition, or a failed attempt of it, a second time. Only equality is compared
 * (resourceVersions are opaque): each write succeeded with the version it was sent with, so no
 * one else wrote in between, and the cache shows either one of ours or a later one.
 *
 * Comparing status.state instead (sessions 19-25) missed a write that changed only a condition,
 * and took a state someone else wrote (`kubectl patch --subresource=status`) for a cache behind. */
struct written_entry {
  char *name;                     /* NULL: empty slot */
  unsigned long long replaced[2]; /* 0: not a decimal resourceVersion, or a no-op write: never matches */
  char uid[40];                   /* "": forgotten (a uid too long to keep) */
};

struct tn_written {
  pthread_mutex_t mu; /* protects everything below */
  struct written_entry *slots;
  size_t cap, n; /* cap: 0 or a power of two, n < cap * 3 / 4 */
};

struct tn_written *tn_written_new(void) {
  struct tn_written *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  pthread_mutex_init(&w->mu, NULL);
  return w;
}

void tn_written_free(struct tn_written *w) {
  if (!w)
    return;
  for (size_t i = 0; i < w->cap; i++)
    free(w->slots[i].name);
  free(w->slots);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

static const char *field(json_t *obj, const char *section, const char *name) {
  return json_string_value(json_object_get(json_object_get(obj, section), name));
}

static size_t written_hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return (size_t)h;
}

/* The slot of name, or the empty slot where it would go. cap > 0. Under mu. */
static struct written_entry *written_slot(struct written_entry *slots, size_t cap, const char *name) {
  for (size_t i = written_hash(name) & (cap - 1);; i = (i + 1) & (cap - 1))
    if (!slots[i].name || strcmp(slots[i].name, name) == 0)
      return &slots[i];
}

/* Rehashes into cap slots (a power of two, > n * 4 / 3). Under mu. */
static bool written_rehash(struct tn_written *w, size_t cap) {
  struct written_entry *slots = calloc(cap, sizeof *slots);
  if (!slots)
    return false;
  for (size_t i = 0; i < w->cap; i++)
    if (w->slots[i].name)
      *written_slot(slots, cap, w->slots[i].name) = w->slots[i];
  free(w->slots);
  w->slots = slots;
  w->cap = cap;
  return true;
}

static bool written_grow(struct tn_written *w) { return written_rehash(w, w->cap ? w->cap * 2 : 64); }

/* Drops e. Under mu. Entries live from a status write until the cache shows it, so the table is
 * small at rest: it shrinks when an eighth full (grows at three quarters). */
static void written_remove(struct tn_written *w, struct written_entry *e) {
  size_t mask = w->cap - 1, i = (size_t)(e - w->slots);
  free(e->name);
  memset(e, 0, sizeof *e);
  w->n--;
  /* Backward-shift deletion: the entries after the hole that may move into it do, so every
   * entry stays reachable from its home slot without tombstones. */
  for (size_t j = (i + 1) & mask; w->slots[j].name; j = (j + 1) & mask) {
    size_t home = written_hash(w->slots[j].name) & mask;
    bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      w->slots[i] = w->slots[j];
      memset(&w->slots[j], 0, sizeof w->slots[j]);
      i = j;
    }
  }
  if (w->cap > 64 && w->n * 8 < w->cap)
    (void)written_rehash(w, w->cap / 2); /* out of memory: stays as large, still correct */
}

/* A resourceVersion as a number, or 0 when it is not a decimal one (it is opaque to clients:
 * only equality is compared, never order). */
static unsigned long long rv_number(const char *rv) {
  if (!rv || !*rv || strlen(rv) > 19)
    return 0;
  unsigned long long v = 0;
  for (const char *p = rv; *p; p++) {
    if (*p < '0' || *p > '9')
      return 0;
    v = v * 10 + (unsigned long long)(*p - '0');
  }
  return v;
}

void tn_written_note(struct tn_written *w, json_t *tenant, const char *rv_start, const char *rv_sent) {
  const char *name = field(tenant, "metadata", "name");
  const char *uid = field(tenant, "metadata", "uid") ?: "";
  if (!w || !name)
    return;
  unsigned long long answer = rv_number(field(tenant, "metadata", "resourceVersion"));
  unsigned long long replaced[2] = {rv_number(rv_start), rv_number(rv_sent)};
  for (int i = 0; i < 2; i++)
    if (replaced[i] == answer) /* a no-op write: the server kept the version; nothing to wait for */
      replaced[i] = 0;
  bool fits = strlen(uid) < sizeof((struct written_entry *)0)->uid;
  pthread_mutex_lock(&w->mu);
  struct written_entry *e = w->cap ? written_slot(w->slots, w->cap, name) : NULL;
  if (!fits) {
    if (e && e->name)
      e->uid[0] = '\0'; /* forget the last one: an empty uid never matches a tenant */
  } else {
    if ((!e || !e->name) && (w->n + 1) * 4 > w->cap * 3)
      e = written_grow(w) ? written_slot(w->slots, w->cap, name) : NULL;
    if (e && !e->name && (e->name = strdup(name)) != NULL)
      w->n++;
    if (e && e->name) {
      snprintf(e->uid, sizeof e->uid, "%s", uid);
      e->replaced[0] = replaced[0];
      e->replaced[1] = replaced[1];
    }
  }
  pthread_mutex_unlock(&w->mu);
}

void tn_written_forget(struct tn_written *w, const char *name) {
  if (!w || !name)
    return;
  pthread_mutex_lock(&w->mu);
  struct written_entry *e = w->cap ? written_slot(w->slots, w->cap, name) : NULL;
  if (e && e->name)
    written_remove(w, e);
  pthread_mutex_unlock(&w->mu);
}

bool tn_written_is_stale(struct tn_written *w, json_t *tenant) {
  const char *name = field(tenant, "metadata", "name");
  if (!w || !name)
    return false;
  unsigned long long cached = rv_number(field(tenant, "metadata", "resourceVersion"));
  bool stale = false;
  pthread_mutex_lock(&w->mu);
  struct written_entry *e = w->cap ? written_slot(w->slots, w->cap, name) : NULL;
  if (e && e->name) {
    if (cached && e->uid[0] && strcmp(e->uid, field(tenant, "metadata", "uid") ?: "") == 0)
      stale = cached == e->replaced[0] || cached == e->replaced[1];
    /* Not behind: the cache shows our write or what came after it (or another tenant of that
     * name), and a cache never goes back, so the entry has served. */
    if (!stale)
      written_remove(w, e);
  }
  pthread_mutex_unlock(&w->mu);
  return stale;
}

size_t tn_written_count(struct tn_written *w) {
  if (!w)
    return 0;
  pthread_mutex_lock(&w->mu);
  size_t n = w->n;
  pthread_mutex_unlock(&w->mu);
  return n;
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
  COND_PROGRESSING, /* only while a transition's effects are not in place; not part of Ready's sum */
  COND_COUNT
};
static const char *const cond_types[COND_COUNT] = {
    "Ready",        "PolicyCompliant", "Placed",        "NamespacesReady", "NetworkIsolated",
    "QuotaApplied", "AccessBound",     "DatabaseReady", "KeysReady",       "Progressing"};
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

struct observed_set {
  json_t *lists[TN_KIND_COUNT]; /* arrays from the caches (own references) */
  struct tn_observed *items;
  size_t n;
};

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
  int drift_repaired; /* owned objects someone else changed, restored */
  int propagated;     /* owned objects updated because the desired state changed (a Plan edit) */
  char drift_what[600];
  bool cond_failed[COND_COUNT]; /* an attempt of this condition's effect failed (not just pending) */

  /* What the steps of tn_tenant_reconcile hand on to each other, in the order they fill it. */
  struct tn_result res;              /* what the controller does next; steps only make it sooner */
  json_t *old_status;                /* the status as read (borrowed from obj before any status write) */
  long long generation;              /* metadata.generation as read */
  long long gen_before;              /* status.observedGeneration as read */
  struct tn_lifecycle_plan lp;       /* step_plan_lifecycle */
  struct tn_lifecycle_plan denied;   /* step_evaluate_policy: the steps a TenancyPolicy denied */
  struct tn_lifecycle_plan inflight; /* step_settle_transition: started, effects not yet in place */
  /* Reported by step_audit_outcome once the status that records them is written: */
  bool report_refusal;                 /* step_check_activation: an activation refused for a new cause */
  struct tn_transition refused;        /* ... the activation refused */
  enum cond refused_cause;             /* ... the condition that says why */
  bool report_failure;                 /* step_settle_transition: a new series of failed attempts */
  char failure[600], failure_what[96]; /* ... what failed; the transition */
  struct tn_error lerr;                /* why the lifecycle refused (lp.refused) */
  struct inventory inv;                /* step_evaluate_policy: TenancyPolicies and Regions */
  struct tn_policy_result policy;      /* step_evaluate_policy */
  bool policy_ok;                      /* every TenancyPolicy allows the tenant */
  bool provisioned;                    /* lp.next has objects: provisioned_state() */
  json_t *plan_obj, *derived;          /* step_resolve_plan_and_placement */
  struct tn_plan *plan;                /* the Plan with permitted overrides; NULL when missing/invalid */
  bool have_plan;
  struct tn_placement placement;
  bool placed;
  struct tn_object_list desired; /* step_apply_objects */
  struct observed_set observed;
  struct tn_diff diff;
  json_t *db_status, *keys_status, *bg_status; /* step_database, step_keys, step_breakglass */
  /* What Suspended/Archived mean for this tenant, and what was done (tenancy/retention.h). */
  struct tn_lifecycle_rules lrules;   /* step_evaluate_policy: from the TenancyPolicies */
  struct tn_archive_schedule archive; /* where an Archived tenant is in its retention */
  bool purge_complete;                /* step_database: the data of an Archived tenant is gone */
  struct tn_workloads_result wr;      /* step_workloads; held = -1: it did not run */
};

/* Whether lp.next has objects: Active, Suspended, and Archived while its data is retained. */
static bool provisioned_state(const struct run *x) {
  return x->lp.next == TN_STATE_ACTIVE || x->lp.next == TN_STATE_SUSPENDED ||
         (x->lp.next == TN_STATE_ARCHIVED && !x->archive.due);
}

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
  struct tn_object_ref ref = tn_object_ref_from(x->obj, "Tenant");
  char note[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(note, sizeof note, fmt, ap);
  va_end(ap);
  if (!strstr(note, "correlationId=")) {
    /* Outside a transition: an id of this tenant, generation and reason (a repeat of the same
     * complaint at the same generation carries the same id); DriftRepaired, a repair at a time,
     * adds the time. */
    char gen[32], cid[37];
    snprintf(gen, sizeof gen, "%lld", x->lf.generation);
    const char *parts[] = {"tenancy.dev/event", ref.uid ? ref.uid : "", gen, reason,
                           strcmp(reason, "DriftRepaired") == 0 ? x->now : ""};
    if (x->cid[0])
      snprintf(cid, sizeof cid, "%s", x->cid);
    else
      tn_uuid_from_parts(parts, sizeof parts / sizeof parts[0], cid);
    size_t len = strlen(note);
    snprintf(note + len, sizeof note - len, " (correlationId=%s)", cid);
  }
  tn_recorder_eventf(x->r->recorder, &ref, type, reason, "Reconcile", "%s", note);
}

/* OUTBOX (issue 14): the CloudEvent a transition's "succeeded" row carries (created, activated,
 * ...; none for the teardown of a tenant already Deleted, announced then). ob stays empty when
 * there is none. */
static int transition_event(struct run *x, const struct tn_transition *st, const char *outcome,
                            const char *actor, long long generation, struct tn_outbox_event *ob,
                            struct tn_error *err) {
  const char *name = tn_ce_event_for_action(tn_action_name(st->action));
  if (!name || strcmp(outcome, TN_AUDIT_SUCCEEDED) != 0 || st->from == TN_STATE_DELETED)
    return 0;
  json_t *spec = json_object_get(x->obj, "spec");
  json_t *data =
      tn_ce_transition_data(st->from == TN_STATE_NONE ? NULL : tn_state_name(st->from), tn_state_name(st->to),
                            generation, json_string_value(json_object_get(spec, "stateReason")),
                            json_string_value(json_object_get(spec, "plan")),
                            field(json_object_get(x->obj, "status"), "placement", "region"));
  int rc =
      data ? tn_outbox_event_init(ob, x->r->cluster_name, x->obj, name, st->correlation_id, actor, data, err)
           : tn_error_set(err, -ENOMEM, "out of memory");
  json_decref(data);
  return rc;
}

/* Appends one audit row per lifecycle step with this outcome, all in one call and one transaction
 * (tn_audit_append_many). The "started" rows are written before anything of the transition is
 * done: when that fails, nothing is done and the reconcile is retried (failure to audit is a
 * failed operation). */
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
  char details[TN_LIFECYCLE_MAX_STEPS][256];
  struct tn_outbox_event ob[TN_LIFECYCLE_MAX_STEPS] = {0};
  struct tn_audit_event ev[TN_LIFECYCLE_MAX_STEPS];
  int rc = 0, n = lp->n_steps < TN_LIFECYCLE_MAX_STEPS ? lp->n_steps : TN_LIFECYCLE_MAX_STEPS;
  for (int i = 0; i < n && rc == 0; i++) {
    const struct tn_transition *st = &lp->steps[i];
    snprintf(details[i], sizeof details[i], "{\"from\":\"%s\",\"to\":\"%s\",\"reason\":\"%s\"}",
             st->from == TN_STATE_NONE ? "" : tn_state_name(st->from), tn_state_name(st->to),
             st->event_reason);
    rc = transition_event(x, st, outcome, actor, gen_after, &ob[i], err);
    ev[i] = (struct tn_audit_event){.actor = actor,
                                    .action = tn_action_name(st->action),
                                    .target = target,
                                    .request_id = request_id,
                                    .correlation_id = st->correlation_id,
                                    .outcome = outcome,
                                    .generation_before = gen_before,
                                    .generation_after = gen_after,
                                    .details = details[i],
                                    .outbox = ob[i].event ? &ob[i] : NULL};
  }
  if (rc == 0)
    rc = tn_audit_append_many(x->r->audit, ev, (size_t)n, NULL, err);
  for (int i = 0; i < n; i++)
    tn_outbox_event_cleanup(&ob[i]);
  return rc;
}

/* The correlation id of something the operator does outside a transition (a drift repair, a
 * credential rotation): from the tenant's uid, generation, what and when. */
static void operator_action_id(struct run *x, const char *what, char out[37]) {
  char gen[32];
  snprintf(gen, sizeof gen, "%lld", x->lf.generation);
  const char *uid = json_string_value(json_object_get(json_object_get(x->obj, "metadata"), "uid"));
  const char *parts[] = {"tenancy.dev/event", uid ? uid : "", gen, what, x->now};
  tn_uuid_from_parts(parts, sizeof parts / sizeof parts[0], out);
}

/* One audit row, outcome succeeded, for an action the operator took on its own (actor
 * tenancy-operator): drift repairs, credential rotations. A failure to append is logged: the
 * action is done already and is not undone for it. */
static void audit_operator_action(struct run *x, const char *action, const char *cid, json_t *details,
                                  const char *ce_event) {
  if (!x->r->audit)
    return;
  char target[128];
  snprintf(target, sizeof target, "tenant/%s", x->key);
  struct tn_error err = {0};
  struct tn_outbox_event ob = {0}; /* OUTBOX (issue 14): ce_event, with details as its data */
  if (ce_event && tn_outbox_event_init(&ob, x->r->cluster_name, x->obj, ce_event, cid,
                                       TN_AUDIT_OPERATOR_ACTOR, details, &err))
    tn_log(TN_LOG_WARN, &x->lf, "the %s event of %s: %s", ce_event, action, err.message);
  char *d = details ? json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  struct tn_audit_event ev = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                              .action = action,
                              .target = target,
                              .request_id = x->rv,
                              .correlation_id = cid,
                              .outcome = TN_AUDIT_SUCCEEDED,
                              .generation_before = x->lf.generation,
                              .generation_after = x->lf.generation,
                              .details = d ? d : "{}",
                              .outbox = ob.event ? &ob : NULL};
  if (tn_audit_append(x->r->audit, &ev, NULL, &err))
    tn_log(TN_LOG_WARN, &x->lf, "recording %s in the audit trail: %s", action, err.message);
  tn_outbox_event_cleanup(&ob);
  free(d);
}

/* The data key step's audit hook: its changes go to the same trail, before they are made. */
static int keys_audit(void *ud, const struct tn_tenant_keys_action *a, const char *outcome,
                      struct tn_error *err) {
  struct run *x = ud;
  if (!x->r->audit)
    return 0;
  char target[128];
  snprintf(target, sizeof target, "tenant/%s", a->tenant);
  struct tn_outbox_event ob = {0}; /* OUTBOX (issue 14): a rotation's succeeded row */
  int rc = 0;
  if (strcmp(a->action, TN_KEYS_ACTION_ROTATE) == 0 && strcmp(outcome, TN_AUDIT_SUCCEEDED) == 0) {
    json_t *details = a->details ? json_loads(a->details, 0, NULL) : NULL;
    json_t *data = json_pack("{s:I, s:I, s:s}", "versionBefore", (json_int_t)a->version_before,
                             "versionAfter", (json_int_t)a->version_after, "trigger",
                             json_string_value(json_object_get(details, "trigger")) ?: "");
    rc = data ? tn_outbox_event_init(&ob, x->r->cluster_name, x->obj, TN_CE_KEY_ROTATED, a->correlation_id,
                                     TN_AUDIT_OPERATOR_ACTOR, data, err)
              : tn_error_set(err, -ENOMEM, "out of memory");
    json_decref(data);
    json_decref(details);
  }
  struct tn_audit_event ev = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                              .action = a->action,
                              .target = target,
                              .request_id = x->rv,
                              .correlation_id = a->correlation_id,
                              .outcome = outcome,
                              .generation_before = x->lf.generation,
                              .generation_after = x->lf.generation,
                              .details = a->details,
                              .outbox = ob.event ? &ob : NULL};
  if (rc == 0)
    rc = tn_audit_append(x->r->audit, &ev, NULL, err);
  tn_outbox_event_cleanup(&ob);
  return rc;
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
  tn_self_writes_writing(x->r->self, "Tenant", NULL, x->key); /* its MODIFIED event tells this run nothing */
  int rc = tn_kube_update(x->r->kube, &tn_gvr_tenants, NULL, copy, NULL, &out, err);
  tn_self_writes_write_done(x->r->self, "Tenant", NULL, x->key, rc == 0 ? out : NULL);
  json_decref(copy);
  x->writes++;
  if (rc == 0) {
    json_decref(x->obj);
    x->obj = out;
  }
  return rc;
}

/* ---- observed objects --------------------------------------------------------------------- */

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
    tn_self_writes_created(x->r->self, tn_kind_name(c->kind), c->namespace, c->name); /* its ADDED: ours */
    rc = tn_owned_create(x->r->kube, gvr, c->namespace, c->desired->body, &err);      /* SSA owner */
    if (rc)
      tn_self_writes_forget(x->r->self, tn_kind_name(c->kind), c->namespace, c->name);
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
        const char *grv =
            json_string_value(json_object_get(json_object_get(got, "metadata"), "resourceVersion"));
        rc = tn_owned_apply(x->r->kube, gvr, c->namespace, c->desired->body, grv ? grv : "", &err);
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
    /* Server-side apply: other managers' labels and annotations stay (owned_apply.h). */
    rc = tn_owned_apply(x->r->kube, gvr, c->namespace, c->desired->body,
                        c->resource_version ? c->resource_version : "", &err);
    x->writes++;
    if (rc == 0 && tn_change_is_drift(c)) {
      x->drift_repaired++;
      if (!x->drift_what[0])
        snprintf(x->drift_what, sizeof x->drift_what, "%s (%s)", what, c->reason);
    } else if (rc == 0) {
      x->propagated++;
    }
    break;
  }
  case TN_CHANGE_DELETE: {
    /* Conditional on the object's uid, read with a GET when the cache keeps none (owned_delete.h). */
    bool sent = false;
    rc = tn_owned_delete(x->r->kube, gvr, c->observed, c->namespace, c->name, x->key, uid, &sent, &err);
    x->writes += sent;
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

/* A deletion that cannot go on: the condition c (False, reason, message) written into the
 * tenant's status, when it changed, and a Warning Event, so `kubectl describe tenant` says why
 * the finalizer is still there. Failures to write are logged; the teardown is retried anyway. */
static void teardown_report(struct run *x, enum cond c, const char *reason, const char *message) {
  event(x, TN_EVENT_WARNING, reason, "%s", message ? message : "");
  json_t *status = json_object_get(x->obj, "status");
  json_t *old = old_condition(status, cond_types[c]);
  const char *old_reason = json_string_value(json_object_get(old, "reason"));
  const char *old_msg = json_string_value(json_object_get(old, "message"));
  if (old_reason && old_msg && strcmp(old_reason, reason) == 0 &&
      strcmp(old_msg, message ? message : "") == 0)
    return;
  json_t *body = json_deep_copy(x->obj);
  json_t *st = json_object_get(body, "status");
  if (!json_is_object(st)) {
    st = json_object();
    json_object_set_new(body, "status", st);
  }
  json_t *conds = json_object_get(st, "conditions");
  if (!json_is_array(conds)) {
    conds = json_array();
    json_object_set_new(st, "conditions", conds);
  }
  long long gen = json_integer_value(json_object_get(json_object_get(x->obj, "metadata"), "generation"));
  json_t *nc = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "type", cond_types[c], "status", "False", "reason",
                         reason, "message", message ? message : "", "lastTransitionTime", x->now,
                         "observedGeneration", (json_int_t)gen);
  size_t i;
  json_t *e;
  bool replaced = false;
  json_array_foreach(conds, i, e) {
    const char *t = json_string_value(json_object_get(e, "type"));
    if (t && strcmp(t, cond_types[c]) == 0) {
      json_array_set(conds, i, nc);
      replaced = true;
      break;
    }
  }
  if (!replaced)
    json_array_append(conds, nc);
  json_decref(nc);
  struct tn_error err = {0};
  json_t *out_obj = NULL;
  if (tn_kube_update(x->r->kube, &tn_gvr_tenants, NULL, body, "status", &out_obj, &err))
    tn_log(TN_LOG_DEBUG, &x->lf, "writing the teardown's status: %s", err.message);
  else
    x->writes++;
  json_decref(out_obj);
  json_decref(body);
}

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
    teardown_report(x, COND_DATABASE, dbr.reason[0] ? dbr.reason : "DatabaseTeardownFailed", dbr.message);
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

/* ---- the tenant reconcile, step by step ------------------------------------------------------
 *
 * tn_tenant_reconcile runs these in order; each reads what the earlier ones left in struct run
 * and says how the reconcile goes on. A new concern is a new step. */

enum flow {
  FLOW_NEXT,       /* go on with the next step */
  FLOW_BREAKGLASS, /* skip to the break-glass step (a refused transition touches nothing else) */
  FLOW_STATUS,     /* skip to the status step (nothing is provisioned this time) */
  FLOW_STOP,       /* done: x->res says when to come back */
};

/* observe: the tenant from the cache; deletion goes to teardown; the finalizer is ensured; the
 * spec is parsed and its names checked. */
static enum flow step_observe(struct run *x) {
  struct tn_error err = {0};
  x->obj = tn_informer_get(x->r->tenants, x->key);
  if (!x->obj) {
    tn_tenant_changes_forget(x->r->changes, x->key);
    tn_written_forget(x->r->written, x->key);
    return FLOW_STOP; /* gone: the garbage collector removes what it owned */
  }
  json_t *meta = json_object_get(x->obj, "metadata");
  x->lf.generation = json_integer_value(json_object_get(meta, "generation"));
  snprintf(x->rv, sizeof x->rv, "%s", json_string_value(json_object_get(meta, "resourceVersion")) ?: "");
  x->lf.resource_version = x->rv;

  /* Every pass is planned from the cache. Right after our own status write the cache can still
   * hold the tenant from before it: a pass planned from that would audit a transition, or a
   * failed attempt of it, a second time (a retry comes 5 ms after a failure, and the write's
   * own watch event no longer enqueues the tenant: self_writes.h). The watch event that brings
   * the cache up to date is on its way; no API call is needed to know that (tn_written: the
   * cache still shows a version our last write replaced). */
  if (tn_written_is_stale(x->r->written, x->obj)) {
    tn_log(TN_LOG_DEBUG, &x->lf,
           "cache behind our own last status write; reconciling again when it catches up");
    x->res = TN_RESULT_AFTER(0.5);
    return FLOW_STOP;
  }

  if (json_object_get(meta, "deletionTimestamp")) {
    tn_tenant_changes_forget(x->r->changes, x->key);
    x->res = teardown(x);
    return FLOW_STOP;
  }
  if (!has_finalizer(x->obj)) {
    int frc = set_finalizer(x, true, &err);
    if (frc) {
      tn_log(frc == TN_ECONFLICT ? TN_LOG_DEBUG : TN_LOG_WARN, &x->lf, "adding the finalizer: %s",
             err.message);
      x->res = TN_RESULT_ERR;
      return FLOW_STOP;
    }
    meta = json_object_get(x->obj, "metadata");
  }
  /* HISTORY (issue 13, audit/history.h): a generation not yet observed is recorded as a version
   * (with one audit row per changed area of the spec) before anything acts on it. While that
   * cannot be written (PostgreSQL down), nothing of the new generation is done: retried. */
  if (x->r->audit && tn_history_needs_record(x->obj)) {
    struct tn_error herr = {0};
    if (tn_history_record_event(x->r->audit, x->obj, x->r->cluster_name, NULL, &herr)) {
      tn_log(TN_LOG_WARN, &x->lf, "history: recording this generation failed, retrying: %s", herr.message);
      x->res = TN_RESULT_ERR;
      return FLOW_STOP;
    }
  }
  x->old_status = json_object_get(x->obj, "status");
  x->generation = json_integer_value(json_object_get(meta, "generation"));

  if (tn_tenant_parse(x->obj, &x->t, &err) || tn_desired_check_names(x->t, &err)) {
    cond_set(x, COND_READY, "False", "InvalidSpec", "%s", err.message);
    event(x, TN_EVENT_WARNING, "InvalidSpec", "%s", err.message);
    return FLOW_STATUS; /* nothing already converged is touched */
  }
  return FLOW_NEXT;
}

/* plan the lifecycle: which state this reconcile reaches, and through which steps. */
static enum flow step_plan_lifecycle(struct run *x) {
  int lrc = tn_lifecycle_plan(x->t, &x->lp, &x->lerr);
  /* A restore (Archived -> Active) is refused once the data was purged. */
  if (!lrc)
    lrc = tn_archive_check_restore(x->obj, &x->lp, &x->lerr);
  if (lrc && !x->lp.refused) {
    x->res = TN_RESULT_ERR;
    return FLOW_STOP;
  }
  if (x->lp.n_steps > 0) {
    snprintf(x->cid, sizeof x->cid, "%s", x->lp.steps[x->lp.n_steps - 1].correlation_id);
    x->lf.correlation_id = x->cid;
  }
  return FLOW_NEXT;
}

/* evaluate policy: policy before action, a denied step does not happen (the tenant stays where
 * it is). A refused transition changes nothing of the tenant's objects, database or keys: they
 * stay as they are. The current state comes from the status, and a status rewritten by hand
 * (say Archived under a spec that says Active) must not tear a live tenant down on its word
 * alone. Break-glass still runs: expired access is revoked whatever the lifecycle says. */
static enum flow step_evaluate_policy(struct run *x) {
  struct tn_error polerr = {0};
  int prc = inventory_load(x->r, &x->inv);
  if (prc == 0)
    prc = evaluate_policy(x, &x->inv, &x->lp, &x->policy, &polerr);
  tn_lifecycle_rules_from(x->inv.policy_objs, &x->lrules); /* what Suspended/Archived mean now */
  if (prc == TN_EINVALID) {
    cond_set(x, COND_POLICY, "False", "PolicyDenied", "%s", polerr.message);
    event(x, TN_EVENT_WARNING, "PolicyDenied", "%s", polerr.message);
    if (x->lp.n_steps > 0) {
      x->denied = x->lp;
      if (x->lp.steps[0].action == TN_ACTION_CREATE) {
        /* a new tenant exists all the same: it is Draft (Created); what the policy denies is
         * what comes after (a status.state of "" would be refused by the API server) */
        x->lp.n_steps = 1;
        x->lp.next = x->lp.steps[0].to;
      } else {
        x->lp.n_steps = 0;
        x->lp.next = x->t->status_state;
        x->lf.correlation_id = NULL;
      }
    }
  } else if (prc) {
    x->res = TN_RESULT_ERR;
    return FLOW_STOP;
  } else {
    /* One message whatever the steps: a message that changed on the next pass would cost a second
     * status write for every transition. */
    cond_set(x, COND_POLICY, "True", "Compliant", "every TenancyPolicy allows the tenant");
    x->policy_ok = true;
  }
  bool archiving_now = false;
  for (int i = 0; i < x->lp.n_steps; i++)
    archiving_now |= x->lp.steps[i].action == TN_ACTION_ARCHIVE;
  tn_archive_schedule_for(x->obj, x->lp.next, archiving_now, &x->lrules, tn_wall_now(), &x->archive);
  if (x->lp.refused) {
    x->provisioned = provisioned_state(x);
    return FLOW_BREAKGLASS;
  }
  return FLOW_NEXT;
}

/* audit: the "started" rows of the planned steps, before anything of them is done (the cache
 * is not behind our own last write: step_observe). */
static enum flow step_audit_started(struct run *x) {
  x->gen_before = x->t->observed_generation;
  /* A transition whose effects were not in place last time is still in flight (Progressing
   * names its correlation id): its "started" rows are written already. */
  const char *inflight =
      json_string_value(json_object_get(old_condition(x->old_status, "Progressing"), "message"));
  int first = tn_lifecycle_first_effect(&x->lp);
  if (x->lp.n_steps > 0 && !(inflight && first >= 0 && strstr(inflight, x->lp.steps[first].correlation_id))) {
    struct tn_error aerr = {0};
    if (audit_steps(x, &x->lp, TN_AUDIT_STARTED, x->gen_before, x->generation, &aerr)) {
      tn_log(TN_LOG_WARN, &x->lf, "audit trail unavailable, transition postponed: %s", aerr.message);
      event(x, TN_EVENT_WARNING, "AuditUnavailable",
            "transition to %s postponed until it can be audited: %s (correlationId=%s)",
            tn_state_name(x->lp.next), aerr.message, x->cid);
      x->res = TN_RESULT_ERR;
      return FLOW_STOP;
    }
  }
  return FLOW_NEXT;
}

/* Plan and placement: they matter while provisioned (Active, Suspended, Archived while its data is
 * retained). */
static enum flow step_resolve_plan_and_placement(struct run *x) {
  struct tn_error err = {0};
  x->provisioned = provisioned_state(x);
  if (!x->provisioned) {
    cond_set(x, COND_PLACED, "True", "NotRequired", "%s tenants are not placed", tn_state_name(x->lp.next));
    return FLOW_NEXT;
  }
  x->plan_obj = tn_informer_get(x->r->plans, x->t->plan);
  if (!x->plan_obj) {
    tn_derive_status(x->t->plan, NULL, &x->derived, &err);
    cond_set(x, COND_QUOTA, "False", "PlanNotFound", "%s", err.message);
  } else if (tn_plan_parse(x->plan_obj, &x->plan, &err)) {
    cond_set(x, COND_QUOTA, "False", "InvalidPlan", "plan %s: %s", x->t->plan, err.message);
  } else {
    if (x->policy_ok) /* overrides a policy permits replace the plan's values */
      apply_quota_overrides(x->plan, x->obj, x->policy.quota_overrides_permitted);
    if (x->policy_ok) /* and so do its rate-limit overrides (tenancy/ratelimits.c) */
      tn_rate_limits_apply_overrides(&x->plan->rate_limits, x->obj, x->policy.rate_limit_overrides_permitted);
    if (tn_derive_status(x->t->plan, x->plan, &x->derived, &err))
      cond_set(x, COND_QUOTA, "False", "InvalidPlan", "%s", err.message);
    else
      x->have_plan = true;
  }
  struct tn_error perr = {0};
  const struct tn_residency *residency = x->policy_ok ? &x->policy.residency : &x->t->residency;
  /* A tenant whose data is placed stays where it is: a residency edit, a policy, a Region
   * removed or narrowed never moves it (that is a migration); what no longer fits is reported. */
  enum tn_state was = x->t->status_state;
  if (x->t->status_region &&
      (was == TN_STATE_ACTIVE || was == TN_STATE_SUSPENDED || was == TN_STATE_ARCHIVED)) {
    int krc = tn_placement_keep(residency, x->t->isolation, x->t->status_region, x->inv.plain,
                                x->inv.n_regions, &x->placement, &perr);
    x->placed = krc == 0 || krc == TN_ECONFLICT;
    if (krc == 0 && x->t->isolation != x->t->spec_isolation) /* MIGRATION (issue 16) */
      cond_set(
          x, COND_PLACED, "True", TN_REASON_ISOLATION_DRIFT,
          "placed in region %s with isolation %s (status.placement.isolation, set by a TenantMigration); "
          "the tenant is served by it; spec.isolation says %s: set spec.isolation to %s",
          x->placement.region, tn_isolation_name(x->placement.isolation),
          tn_isolation_name(x->t->spec_isolation), tn_isolation_name(x->placement.isolation));
    else if (krc == 0)
      cond_set(x, COND_PLACED, "True", "Placed", "placed in region %s with isolation %s", x->placement.region,
               tn_isolation_name(x->placement.isolation));
    else {
      cond_set(x, COND_PLACED, "False", TN_REASON_MIGRATION_REQUIRED, "%s", perr.message);
      event(x, TN_EVENT_WARNING, TN_REASON_MIGRATION_REQUIRED, "%s", perr.message);
    }
    return FLOW_NEXT;
  }
  if (tn_placement_resolve(residency, x->t->isolation, x->t->status_region, x->inv.plain, x->inv.n_regions,
                           &x->placement, &perr)) {
    cond_set(x, COND_PLACED, "False", TN_REASON_PLACEMENT_FAILED, "%s", perr.message);
    event(x, TN_EVENT_WARNING, "PlacementFailed", "%s", perr.message);
  } else {
    x->placed = true;
    cond_set(x, COND_PLACED, "True", "Placed", "placed in region %s with isolation %s", x->placement.region,
             tn_isolation_name(x->placement.isolation));
  }
  return FLOW_NEXT;
}

/* The audit row of a transition step that did not happen as planned: outcome "refused" (an
 * activation refused) or "failed" (an attempt whose effects failed), with the cause's reason and
 * message in the details. A failure to append is logged: the outcome stands either way. */
static void audit_step_outcome(struct run *x, const struct tn_transition *s, const char *outcome,
                               const char *reason, const char *message) {
  if (!x->r->audit)
    return;
  char target[128], actor[256] = TN_AUDIT_OPERATOR_ACTOR;
  snprintf(target, sizeof target, "tenant/%s", x->key);
  tn_tenant_requester(x->obj, actor, sizeof actor);
  json_t *d = json_pack("{s:s,s:s,s:s,s:s}", "from", s->from == TN_STATE_NONE ? "" : tn_state_name(s->from),
                        "to", tn_state_name(s->to), "reason", reason, "message", message);
  char *details = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(d);
  struct tn_audit_event ev = {.actor = actor,
                              .action = tn_action_name(s->action),
                              .target = target,
                              .request_id = x->rv,
                              .correlation_id = s->correlation_id,
                              .outcome = outcome,
                              .generation_before = x->t->observed_generation,
                              .generation_after = x->generation,
                              .details = details ? details : "{}"};
  struct tn_error err = {0};
  if (tn_audit_append(x->r->audit, &ev, NULL, &err))
    tn_log(TN_LOG_WARN, &x->lf, "recording the %s %s in the audit trail: %s", outcome,
           tn_action_name(s->action), err.message);
  free(details);
}

/* Whether the quotas of the tenants placed in the region plus this tenant's fit the Region's
 * spec.capacity. 0, or TN_EINVALID with err saying what does not fit. */
static int check_capacity(struct run *x, struct tn_error *err) {
  const json_t *region = NULL;
  size_t i;
  json_t *o;
  json_array_foreach(x->inv.region_objs, i, o) {
    const char *name = field(o, "metadata", "name");
    if (name && strcmp(name, x->placement.region) == 0)
      region = o;
  }
  struct tn_capacity cap, used = {0}, demand = {0};
  if (tn_capacity_parse(region, &cap, err))
    return err->code;
  bool any = false;
  for (int k = 0; k < TN_CAP_COUNT; k++)
    any |= cap.set[k];
  if (!any)
    return 0; /* unlimited: no need to look at the other tenants */
  json_t *tenants = tn_informer_list(x->r->tenants);
  json_array_foreach(tenants, i, o) {
    const char *name = field(o, "metadata", "name");
    if (name && strcmp(name, x->key) != 0)
      tn_capacity_add_tenant(&used, o, x->placement.region);
  }
  json_decref(tenants);
  tn_capacity_add_quotas(&demand, &x->plan->quotas,
                         x->plan->quota_scope == TN_QUOTA_SCOPE_TENANT ? 1 : x->t->n_environments);
  return tn_capacity_check(x->placement.region, &cap, &used, &demand, err);
}

/* Activation prerequisites: a move into Active from Draft or Archived happens only when the
 * Plan exists and parses, placement succeeds, the policy allows it and the quotas fit what the
 * Region offers. Otherwise the tenant stays where it is (steps before the activation, such as
 * Created, still happen), nothing is provisioned, the failing condition says why, and Ready
 * (reason ActivationRefused), a Warning Event and an audit row of outcome "refused" say so:
 * the Event and the row once per cause (not on every resync). */
static enum flow step_check_activation(struct run *x) {
  struct tn_transition step;
  enum cond cause;
  int k = tn_lifecycle_first_activation(&x->denied);
  if (k >= 0 && (x->denied.next == TN_STATE_ACTIVE || x->denied.next == TN_STATE_SUSPENDED)) {
    step = x->denied.steps[k];
    cause = COND_POLICY;
  } else {
    /* A tenant restored straight into Archived passes Active only on paper: never provisioned,
     * it needs none of it. */
    k = tn_lifecycle_first_activation(&x->lp);
    if (k < 0 || !x->provisioned)
      return FLOW_NEXT;
    step = x->lp.steps[k];
    struct tn_error cerr = {0};
    if (!x->have_plan)
      cause = COND_QUOTA;
    else if (!x->placed)
      cause = COND_PLACED;
    else if (check_capacity(x, &cerr)) {
      cause = COND_PLACED;
      x->placed = false;
      cond_set(x, COND_PLACED, "False", cerr.reason[0] ? cerr.reason : TN_REASON_CAPACITY_EXCEEDED, "%s",
               cerr.message);
      /* A Region edit brings us back at once; capacity freed by another tenant, within a minute. */
      if (x->res.kind == TN_RESULT_SUCCESS)
        x->res = TN_RESULT_AFTER(60);
    } else
      return FLOW_NEXT;
    tn_lifecycle_split(&x->lp, k, NULL);
    if (x->lp.n_steps > 0)
      snprintf(x->cid, sizeof x->cid, "%s", x->lp.steps[x->lp.n_steps - 1].correlation_id);
    else
      x->cid[0] = '\0', x->lf.correlation_id = NULL;
  }
  /* Nothing is provisioned and the tenant is not placed. */
  x->provisioned = provisioned_state(x);
  if (x->placed)
    cond_set(x, COND_PLACED, "True", "Placeable",
             "can be placed in region %s with isolation %s once activated", x->placement.region,
             tn_isolation_name(x->placement.isolation));
  x->placed = false;
  const struct condition *why = &x->conds[cause];
  cond_set(x, COND_READY, "False", "ActivationRefused", "activation (%s -> Active) refused: %s: %s",
           tn_state_name(step.from), cond_types[cause], why->message);
  const char *old_ready = json_string_value(json_object_get(old_condition(x->old_status, "Ready"), "reason"));
  const char *old_cause =
      json_string_value(json_object_get(old_condition(x->old_status, cond_types[cause]), "reason"));
  if (old_ready && strcmp(old_ready, "ActivationRefused") == 0 && old_cause &&
      strcmp(old_cause, why->reason) == 0)
    return FLOW_NEXT; /* this cause was reported already */
  x->report_refusal = true;
  x->refused = step;
  x->refused_cause = cause;
  return FLOW_NEXT;
}

/* Without a plan or a region an already provisioned tenant is left as it is: nothing is
 * provisioned, and nothing already provisioned is touched; the Plan and Region watches bring us
 * back. */
static enum flow step_hold_without_plan_or_placement(struct run *x) {
  if (!x->provisioned || (x->have_plan && x->placed))
    return FLOW_NEXT;
  for (int c = COND_NAMESPACES; c <= COND_ACCESS; c++)
    if (!x->conds[c].set)
      cond_set(x, (enum cond)c, "Unknown", "Waiting", "waiting for %s",
               !x->have_plan ? "the plan" : "placement");
  return FLOW_STATUS;
}

/* The Region object named name among those step_evaluate_policy read (borrowed), or NULL. */
static json_t *inventory_region(const struct run *x, const char *name) {
  size_t i;
  json_t *o;
  json_array_foreach(x->inv.region_objs, i, o) {
    const char *n = field(o, "metadata", "name");
    if (name && n && strcmp(n, name) == 0)
      return o;
  }
  return NULL;
}

static bool cond_true(const struct run *x, enum cond c) {
  return x->conds[c].set && strcmp(x->conds[c].status, "True") == 0;
}

/* apply objects: the desired objects against what the caches observe, the differences written,
 * and each owned kind's condition from what remains. The allow policy lets pods reach the
 * tenant's database server: the server it is on, or the one it would be placed on. */
static enum flow step_apply_objects(struct run *x) {
  struct tn_error err = {0};
  json_t *db_server = x->provisioned && x->placed
                          ? tn_tenant_db_server_in(x->r, x->obj, x->t, x->placement.region,
                                                   inventory_region(x, x->placement.region),
                                                   x->policy.require_database_tls_policy)
                          : NULL;
  json_t *db_cidrs = json_object_get(db_server, "egressCIDRs");
  const char *cidrs[16];
  struct tn_desired_database dbaddr = {.host = json_string_value(json_object_get(db_server, "host")),
                                       .port = (int)json_integer_value(json_object_get(db_server, "port")),
                                       .cidrs = cidrs};
  for (size_t i = 0; i < json_array_size(db_cidrs) && dbaddr.n_cidrs < 16; i++)
    if (json_string_value(json_array_get(db_cidrs, i)))
      cidrs[dbaddr.n_cidrs++] = json_string_value(json_array_get(db_cidrs, i));
  struct tn_desired_input in = {.tenant = x->t,
                                .state = x->lp.next,
                                .plan = x->plan,
                                .placement = &x->placement,
                                .pod_security_minimum = x->policy.pod_security_minimum,
                                .refused_groups = (const char *const *)x->policy.refused_groups,
                                .n_refused_groups = x->policy.n_refused_groups,
                                .database = db_server ? &dbaddr : NULL,
                                .suspension_access = x->lrules.access,
                                .archive_retained = !x->archive.due};
  int drc = tn_desired_build(&in, &x->desired, &err);
  json_decref(db_server);
  if (drc) {
    cond_set(x, COND_READY, "False", "InvalidSpec", "%s", err.message);
    return FLOW_STATUS;
  }
  if (observe(x, &x->observed, &err) ||
      tn_diff_compute(&x->desired, x->observed.items, x->observed.n, x->t->name, x->t->uid, &x->diff, &err)) {
    tn_log(TN_LOG_ERROR, &x->lf, "diff: %s", err.message);
    x->res = TN_RESULT_ERR;
    return FLOW_STOP;
  }
  struct kind_state ks[TN_KIND_COUNT] = {0};
  bool retry = false;
  const char *foreign[64]; /* namespaces found to be someone else's: nothing is written into them */
  size_t n_foreign = 0;
  for (size_t i = 0; i < x->diff.len; i++) {
    const struct tn_change *c = &x->diff.changes[i];
    bool skip = false;
    for (size_t f = 0; c->namespace && f < n_foreign; f++)
      skip |= strcmp(foreign[f], c->namespace) == 0;
    if (skip)
      continue;
    int before = ks[c->kind].conflicts;
    if (apply_change(x, c, x->t->uid, &ks[c->kind]))
      retry = true;
    if (c->kind == TN_KIND_NAMESPACE && ks[c->kind].conflicts > before && n_foreign < 64)
      foreign[n_foreign++] = c->name;
  }

  /* What remains of each kind tells its condition. */
  size_t remaining[TN_KIND_COUNT] = {0};
  for (size_t i = 0; i < x->observed.n; i++)
    remaining[x->observed.items[i].kind]++;
  for (int k = 0; k < TN_KIND_COUNT; k++) {
    enum cond c = kind_cond[k];
    if (x->conds[c].set && strcmp(x->conds[c].status, "True") != 0)
      continue; /* an earlier kind of the same condition already failed */
    if (ks[k].conflicts) {
      cond_set(x, c, "False", "Conflict", "%s", ks[k].first_problem);
      x->cond_failed[c] = true; /* needs someone to act: a failed attempt, not a pending one */
    } else if (ks[k].failed) {
      cond_set(x, c, "False", "ApplyFailed", "%s", ks[k].first_problem);
      x->cond_failed[c] = true;
    } else if (!x->provisioned && remaining[k] > 0)
      cond_set(x, c, "False", "Terminating", "%zu %s object(s) of the tenant are being removed", remaining[k],
               tn_kind_name((enum tn_kind)k));
    else if (!x->provisioned)
      cond_set(x, c, "True", "NotRequired", "%s tenants have no %s objects", tn_state_name(x->lp.next),
               cond_objects[c]);
    else if (x->diff.n_waiting && k == TN_KIND_NAMESPACE)
      cond_set(x, c, "False", "Terminating", "a namespace of the tenant is still being deleted");
    else
      cond_set(x, c, "True", "Converged", "every %s of the tenant is as desired", cond_objects[c]);
  }
  /* Groups never bound (reserved to Kubernetes, or refused by a policy's allowedGroupPatterns),
   * whatever admission let through: AccessBound says so, and an Event when it starts. */
  if (x->provisioned && x->policy.n_refused_groups &&
      (!x->conds[COND_ACCESS].set || cond_true(x, COND_ACCESS))) {
    char why[1024] = "";
    (void)tn_policy_group_allowed(x->t, x->policy.refused_groups[0],
                                  (const struct tn_policy *const *)x->inv.policies, x->inv.n_policies, why,
                                  sizeof why);
    cond_set(x, COND_ACCESS, "False", "GroupRefused",
             "%zu group(s) of spec.identity.groupBindings not bound: %s", x->policy.n_refused_groups, why);
    const char *old_reason =
        json_string_value(json_object_get(old_condition(x->old_status, "AccessBound"), "reason"));
    if (!old_reason || strcmp(old_reason, "GroupRefused") != 0)
      event(x, TN_EVENT_WARNING, "GroupRefused", "%zu group(s) of spec.identity.groupBindings not bound: %s",
            x->policy.n_refused_groups, why);
  }
  if (retry)
    x->res = TN_RESULT_ERR;
  else if (x->diff.n_waiting || (!x->provisioned && x->observed.n > 0))
    x->res = TN_RESULT_AFTER(2);
  return FLOW_NEXT;
}

/* database: the tenant's database, once the namespaces that hold its Secrets are ours and in
 * place; dropped when the tenant is Deleted. */
static void step_database(struct run *x) {
  struct tn_tenant_db_result dbr;
  char held[256];
  if (tn_migration_holds(x->r->migrations, x->obj, held, sizeof held)) {
    /* MIGRATION (issue 16): a TenantMigration owns the database now (write freeze, or a move this
     * cache does not show yet): its roles and Secrets are left alone; come back soon. */
    cond_set(x, COND_DATABASE, "False", "MigrationInProgress", "%s", held);
    if (x->res.kind == TN_RESULT_SUCCESS)
      x->res = TN_RESULT_AFTER(1);
    return;
  }
  if ((x->provisioned && cond_true(x, COND_NAMESPACES)) ||
      (x->lp.next == TN_STATE_ARCHIVED && !x->archive.due)) {
    const char *region = x->placed ? x->placement.region : x->t->status_region;
    tn_tenant_db_reconcile_in(x->r, x->obj, x->t, x->lp.next, region, inventory_region(x, region), x->plan,
                              x->policy.require_database_tls_policy, &dbr);
    if (dbr.configured) {
      cond_set(x, COND_DATABASE, dbr.status, dbr.reason, "%s", dbr.message);
      /* The database step finishes in one pass: anything but True is a failed attempt. */
      x->cond_failed[COND_DATABASE] = strcmp(dbr.status, "True") != 0;
      if (dbr.database)
        x->db_status = json_incref(dbr.database);
    }
    if (dbr.rotated && strcmp(dbr.status ? dbr.status : "", "True") == 0) {
      char cid[37];
      operator_action_id(x, "CredentialsRotated", cid);
      json_t *d = json_pack("{s:I,s:s}", "credentialsVersion", (json_int_t)dbr.rotated_version, "why",
                            dbr.rotated_why);
      audit_operator_action(x, "rotate-credentials", cid, d, TN_CE_CREDENTIALS_ROTATED);
      json_decref(d);
      event(x, TN_EVENT_NORMAL, "CredentialsRotated",
            "database credentials version %lld, %s (correlationId=%s)", dbr.rotated_version, dbr.rotated_why,
            cid);
    }
    x->writes += dbr.writes;
    if (dbr.retry)
      x->res = TN_RESULT_ERR;
    else if (x->res.kind == TN_RESULT_SUCCESS && dbr.requeue_after_s > 0)
      x->res = TN_RESULT_AFTER(dbr.requeue_after_s);
    tn_tenant_db_result_cleanup(&dbr);
  } else if (x->lp.next == TN_STATE_DELETED || (x->archive.due && !x->archive.purged)) {
    if (tn_tenant_db_teardown(x->r, x->obj, &dbr)) {
      cond_set(x, COND_DATABASE, dbr.status, dbr.reason, "%s", dbr.message);
      event(x, TN_EVENT_WARNING, dbr.reason, "%s", dbr.message);
      if (dbr.retry)
        x->res = TN_RESULT_ERR;
    } else {
      if (json_object_get(json_object_get(x->obj, "status"), "database"))
        cond_set(x, COND_DATABASE, "True", x->lp.next == TN_STATE_DELETED ? "Deleted" : "Purged",
                 "the tenant's role, schema and database were dropped");
      /* An Archived tenant is purged once the database and every owned object are gone (audited). */
      if (x->lp.next == TN_STATE_ARCHIVED && x->observed.n == 0 && x->res.kind != TN_RESULT_ERROR) {
        struct tn_error perr = {0};
        if (tn_archive_purge_audit(x->r, x->obj, x->rv, &x->archive, &perr) == 0)
          x->purge_complete = true;
        else
          x->res = TN_RESULT_ERR;
      }
    }
    tn_tenant_db_result_cleanup(&dbr);
  }
}

/* workloads: Deployments and StatefulSets scaled to zero (ScaleToZero, Archived) or given their
 * replicas back; and a requeue for when the retention of archived data ends. */
static void step_workloads(struct run *x) {
  bool scale_to_zero = false;
  if (cond_true(x, COND_NAMESPACES) &&
      tn_tenant_workloads_needed(x->obj, x->lp.next, &x->lrules, &x->archive, &scale_to_zero)) {
    tn_tenant_workloads_reconcile(x->r->kube, x->t, scale_to_zero, &x->wr);
    x->writes += x->wr.writes;
    if (x->wr.retry) {
      tn_log(TN_LOG_WARN, &x->lf, "workloads: %s", x->wr.problem);
      x->res = TN_RESULT_ERR;
    }
  }
  if (x->archive.archived && !x->archive.due && x->res.kind == TN_RESULT_SUCCESS)
    x->res = TN_RESULT_AFTER(x->archive.purge_after - tn_wall_now() + 1);
}

/* OUTBOX (issue 14): placement.decided and quota.changed, once per change (tenant_changes.h), once
 * the objects are applied (the ResourceQuotas hold the new values). A failure to record is retried
 * soon: the comparison with the outbox makes a retry exact. */
static void step_record_changes(struct run *x) {
  if (!x->r->audit || !x->provisioned || !x->placed || !x->have_plan || !x->derived)
    return;
  char actor[256] = TN_AUDIT_OPERATOR_ACTOR;
  tn_tenant_requester(x->obj, actor, sizeof actor);
  struct tn_tenant_changes c = {.audit = x->r->audit,
                                .cache = x->r->changes,
                                .cluster = x->r->cluster_name,
                                .tenant = x->obj,
                                .actor = actor,
                                .request_id = x->rv,
                                .now = x->now,
                                .region = x->placement.region,
                                .isolation = tn_isolation_name(x->placement.isolation),
                                .quotas = json_object_get(x->derived, "quotas")};
  struct tn_error err = {0};
  if (tn_tenant_record_changes(&c, NULL, &err)) {
    tn_log(TN_LOG_WARN, &x->lf, "recording the placement and quota events: %s", err.message);
    if (x->res.kind == TN_RESULT_SUCCESS)
      x->res = TN_RESULT_AFTER(5);
  }
}

/* keys: per-tenant data keys, where a policy requires them (and for as long as a tenant has
 * them). */
static void step_keys(struct run *x) {
  bool has_keys = json_integer_value(json_object_get(
                      json_object_get(json_object_get(x->obj, "status"), "keys"), "version")) > 0;
  if (x->r->kms && (x->policy.require_tenant_keys || has_keys) &&
      (x->provisioned || x->lp.next == TN_STATE_ARCHIVED)) {
    struct tn_tenant_keys_config kc = {.kms = x->r->kms,
                                       .namespace = x->r->operator_namespace,
                                       .rotation_period_s = x->provisioned ? x->r->keys_rotation_period_s : 0,
                                       .audit = keys_audit,
                                       .audit_ud = x};
    struct tn_tenant_keys_result kr;
    struct tn_error kerr = {0};
    tn_tenant_keys_reconcile(x->r->kube, &kc, x->obj, &kr, &kerr);
    if (kr.status)
      cond_set(x, COND_KEYS, kr.status, kr.reason, "%s", kr.message);
    if (kr.keys)
      x->keys_status = json_incref(kr.keys);
    x->writes += kr.writes;
    if (kr.rotated)
      event(x, TN_EVENT_NORMAL, "KeysRotated", "data key version %lld (correlationId=%s)", kr.version,
            kr.correlation_id);
    if (kr.retry)
      x->res = TN_RESULT_ERR;
    else if (x->res.kind == TN_RESULT_SUCCESS && kr.requeue_after_s > 0)
      x->res = TN_RESULT_AFTER(kr.requeue_after_s);
    tn_tenant_keys_result_cleanup(&kr);
  } else if (x->r->kms && has_keys && x->lp.next == TN_STATE_DELETED) {
    struct tn_tenant_keys_config kc = {.kms = x->r->kms, .audit = keys_audit, .audit_ud = x};
    struct tn_tenant_keys_result kr;
    struct tn_error kerr = {0};
    if (tn_tenant_keys_teardown(x->r->kube, &kc, x->obj, &kr, &kerr)) {
      cond_set(x, COND_KEYS, "False", kr.reason[0] ? kr.reason : "KeysTeardownFailed", "%s", kerr.message);
      x->res = TN_RESULT_ERR;
    }
    if (kr.keys)
      x->keys_status = json_incref(kr.keys);
    tn_tenant_keys_result_cleanup(&kr);
  }
}

/* break-glass: time-bound elevated RoleBindings, only while the tenant's namespaces are ours
 * (with a refused transition they were not looked at: as they are). */
static void step_breakglass(struct run *x) {
  bool bg_live =
      x->provisioned && x->lp.next != TN_STATE_ARCHIVED && (x->lp.refused || cond_true(x, COND_NAMESPACES));
  struct tn_error bgerr = {0};
  /* The RoleBindings step_apply_objects observed, when it changed nothing (the no-change pass:
   * two cache decodes fewer); after a write, the cache again. */
  json_t *bg_rbs =
      x->observed.lists[TN_KIND_ROLE_BINDING] && x->diff.len == 0
          ? json_incref(x->observed.lists[TN_KIND_ROLE_BINDING])
          : tn_informer_list_by_index(x->r->owned[TN_KIND_ROLE_BINDING], TN_INDEX_TENANT, x->key, &bgerr);
  struct tn_breakglass_step bs = {.kube = x->r->kube,
                                  .tenant = x->obj,
                                  .environments = bg_live ? (const char *const *)x->t->environments : NULL,
                                  .n_environments = bg_live ? x->t->n_environments : 0,
                                  .policies = x->inv.policy_objs,
                                  .observed = bg_rbs,
                                  .now = tn_wall_now(),
                                  .audit = breakglass_audit,
                                  .audit_ud = x};
  struct tn_breakglass_result bgr;
  if (tn_tenant_breakglass_reconcile(&bs, &bgr, &bgerr) && bgr.retry)
    x->res = TN_RESULT_ERR;
  else if (bgr.requeue_after_s > 0 &&
           (x->res.kind == TN_RESULT_SUCCESS ||
            (x->res.kind == TN_RESULT_REQUEUE_AFTER && bgr.requeue_after_s < x->res.after_s)))
    x->res = TN_RESULT_AFTER(bgr.requeue_after_s);
  x->writes += bgr.writes;
  for (size_t i = 0; i < bgr.n_granted; i++)
    event(x, TN_EVENT_WARNING, "BreakGlassGranted", "break-glass %s granted until %s (correlationId=%s)",
          bgr.granted[i].id, bgr.granted[i].expires_at, bgr.granted[i].correlation_id);
  for (size_t i = 0; i < bgr.n_revoked; i++)
    event(x, TN_EVENT_NORMAL, "BreakGlassRevoked", "break-glass %s revoked: %s (correlationId=%s)",
          bgr.revoked[i].id, bgr.revoked[i].why, bgr.revoked[i].correlation_id);
  for (size_t i = 0; i < bgr.n_denied; i++)
    event(x, TN_EVENT_WARNING, "BreakGlassDenied", "break-glass %s denied: %s", bgr.denied[i].id,
          bgr.denied[i].why);
  if (bgr.problem[0])
    tn_log(TN_LOG_WARN, &x->lf, "break-glass: %s", bgr.problem);
  if (bgr.status)
    x->bg_status = json_incref(bgr.status);
  tn_breakglass_result_cleanup(&bgr);
  json_decref(bg_rbs);
}

/* drift: an Event when owned objects were restored outside a transition. */
static void step_report_drift(struct run *x) {
  if (x->drift_repaired && x->lp.n_steps == 0) {
    char cid[37];
    operator_action_id(x, "DriftRepaired", cid);
    json_t *d = json_pack("{s:i,s:s}", "objects", x->drift_repaired, "first", x->drift_what);
    audit_operator_action(x, "repair-drift", cid, d, NULL);
    json_decref(d);
    event(x, TN_EVENT_NORMAL, "DriftRepaired", "restored %d object(s), first %s (correlationId=%s)",
          x->drift_repaired, x->drift_what, cid);
  }
}

/* settle the transition: a step is done only when its effects are in place (namespaces,
 * network policies, quotas, access, the database when configured). Until then status.state is
 * not advanced (the steps before it, such as Created, still are), Progressing says what is
 * missing, and a failure (an apply error, the database server unreachable) is audited as
 * "failed" once per attempt series; the "succeeded" row follows when a later pass completes it. */
static void step_settle_transition(struct run *x) {
  int k = x->t ? tn_lifecycle_first_effect(&x->lp) : -1;
  if (k < 0)
    return;
  static const enum cond effect_conds[] = {COND_NAMESPACES, COND_NETWORK, COND_QUOTA, COND_ACCESS,
                                           COND_DATABASE};
  struct tn_effect e[5];
  size_t n = 0;
  for (size_t i = 0; i < sizeof effect_conds / sizeof effect_conds[0]; i++) {
    const struct condition *c = &x->conds[effect_conds[i]];
    if (!c->set)
      continue;
    e[n++] = (struct tn_effect){.name = cond_types[effect_conds[i]],
                                .status = c->status,
                                .reason = c->reason,
                                .message = c->message,
                                .failed = x->cond_failed[effect_conds[i]]};
  }
  char why[600];
  enum tn_progress p = tn_effects_progress(e, n, why, sizeof why);
  if (n == 0) { /* nothing was applied this time (an invalid desired state, ...) */
    p = TN_PROGRESS_WAITING;
    snprintf(why, sizeof why, "the tenant's objects: %s",
             x->conds[COND_READY].set ? x->conds[COND_READY].message : "not applied");
  }
  if (p == TN_PROGRESS_DONE)
    return;
  tn_lifecycle_split(&x->lp, k, &x->inflight);
  const struct tn_transition *s = &x->inflight.steps[0];
  const struct tn_transition *last = &x->inflight.steps[x->inflight.n_steps - 1];
  char what[96];
  snprintf(what, sizeof what, "%s (%s -> %s)", tn_action_name(last->action),
           s->from == TN_STATE_NONE ? "(new)" : tn_state_name(s->from), tn_state_name(last->to));
  if (p == TN_PROGRESS_WAITING) {
    cond_set(x, COND_PROGRESSING, "True", "TransitionInProgress",
             "%s in progress: waiting for %s (correlationId=%s)", what, why, s->correlation_id);
    if (x->res.kind == TN_RESULT_SUCCESS)
      x->res = TN_RESULT_AFTER(5);
  } else {
    cond_set(x, COND_PROGRESSING, "False", "TransitionFailed", "%s failed, retrying: %s (correlationId=%s)",
             what, why, s->correlation_id);
    const json_t *old = old_condition(x->old_status, "Progressing");
    const char *old_reason = json_string_value(json_object_get(old, "reason"));
    const char *old_msg = json_string_value(json_object_get(old, "message"));
    bool reported = old_reason && strcmp(old_reason, "TransitionFailed") == 0 && old_msg &&
                    strstr(old_msg, s->correlation_id);
    if (!reported) {
      x->report_failure = true;
      snprintf(x->failure, sizeof x->failure, "%s", why);
      snprintf(x->failure_what, sizeof x->failure_what, "%s", what);
    }
    /* Retried as the failing step decided (with backoff for a transient error); a lasting one
     * (a Conflict) waits for the watches. */
  }
  if (!x->conds[COND_READY].set)
    cond_set(x, COND_READY, "False", x->conds[COND_PROGRESSING].reason, "%s",
             x->conds[COND_PROGRESSING].message);
  if (x->lp.n_steps > 0)
    snprintf(x->cid, sizeof x->cid, "%s", x->lp.steps[x->lp.n_steps - 1].correlation_id);
}

/* The new status: state, timestamps of the steps taken, placement, derived values, the
 * database, keys and break-glass sections, namespaces, conditions. */
static json_t *build_status(struct run *x) {
  json_t *st = x->old_status ? json_deep_copy(x->old_status) : json_object();
  if (x->t) {
    json_object_set_new(st, "state", json_string(tn_state_name(x->lp.next)));
    for (int i = 0; i < x->lp.n_steps; i++) {
      const struct tn_transition *s = &x->lp.steps[i];
      switch (s->action) {
      case TN_ACTION_CREATE:
        set_or_keep_time(st, "createdAt", !json_object_get(st, "createdAt"), x->now);
        break;
      case TN_ACTION_ACTIVATE:
      case TN_ACTION_RESUME:
      case TN_ACTION_RESTORE:
        set_or_keep_time(st, "activatedAt", true, x->now);
        break;
      case TN_ACTION_SUSPEND:
        set_or_keep_time(st, "suspendedAt", true, x->now);
        break;
      case TN_ACTION_ARCHIVE:
        set_or_keep_time(st, "archivedAt", true, x->now);
        break;
      case TN_ACTION_DELETE:
        set_or_keep_time(st, "deletedAt", true, x->now);
        break;
      default:
        break;
      }
      json_object_set_new(st, "lastCorrelationId", json_string(s->correlation_id));
    }
    if (x->placed)
      json_object_set_new(st, "placement",
                          json_pack("{s:s,s:s}", "region", x->placement.region, "isolation",
                                    tn_isolation_name(x->placement.isolation)));
    if (x->derived)
      json_object_set(st, "derived", x->derived);
    if (x->db_status)
      json_object_set(st, "database", x->db_status);
    if (x->keys_status)
      json_object_set(st, "keys", x->keys_status);
    if (!x->lp.refused) /* status.archive and status.scaledWorkloads */
      tn_archive_status_set(st, &x->archive, x->purge_complete, x->now);
    if (x->wr.held > 0)
      json_object_set_new(st, TN_STATUS_SCALED_WORKLOADS, json_integer(x->wr.held));
    else if (x->wr.held == 0)
      json_object_del(st, TN_STATUS_SCALED_WORKLOADS);
    if (x->bg_status && json_array_size(x->bg_status) == 0)
      json_object_del(st, "breakGlass");
    else if (x->bg_status)
      json_object_set(st, "breakGlass", x->bg_status);
    json_t *nss = json_array();
    for (size_t i = 0; i < x->desired.len; i++)
      if (x->desired.items[i].kind == TN_KIND_NAMESPACE)
        json_array_append_new(nss, json_string(x->desired.items[i].name));
    if (x->provisioned && !(x->have_plan && x->placed))
      json_decref(nss); /* unknown this time: keep what was there */
    else
      json_object_set_new(st, "namespaces", nss);
  }
  json_object_set_new(st, "observedGeneration", json_integer(x->generation));
  json_object_set_new(st, "conditions", build_conditions(x, x->old_status, x->generation));
  return st;
}

/* status: Ready adds everything up; the status is written when it changed. */
static enum flow step_status(struct run *x) {
  struct tn_error err = {0};
  if (!x->conds[COND_READY].set) {
    if (x->lp.refused) {
      cond_set(x, COND_READY, "False", TN_REASON_TRANSITION_REFUSED, "%s", x->lerr.message);
    } else {
      const char *bad = NULL;
      for (int c = COND_POLICY; c < COND_PROGRESSING; c++)
        if (x->conds[c].set && strcmp(x->conds[c].status, "True") != 0) {
          bad = cond_types[c];
          break;
        }
      if (bad)
        cond_set(x, COND_READY, "False", "NotConverged", "%s is not True", bad);
      else
        cond_set(x, COND_READY, "True", "Converged", "tenant is %s and converged",
                 tn_state_name(x->t ? x->lp.next : TN_STATE_NONE));
    }
  }
  if (x->lp.refused)
    event(x, TN_EVENT_WARNING, TN_REASON_TRANSITION_REFUSED, "%s", x->lerr.message);
  if (!x->conds[COND_POLICY].set)
    cond_set(x, COND_POLICY, "Unknown", "NotEvaluated", "the spec could not be read");

  json_t *new_status = build_status(x);
  if (!x->old_status || !json_equal(x->old_status, new_status)) {
    json_t *body = json_deep_copy(x->obj);
    json_object_set(body, "status", new_status);
    json_t *out_obj = NULL;
    char rv_sent[32];
    snprintf(rv_sent, sizeof rv_sent, "%s", field(x->obj, "metadata", "resourceVersion") ?: "");
    tn_self_writes_writing(x->r->self, "Tenant", NULL,
                           x->key); /* its MODIFIED event tells this run nothing */
    int rc = tn_kube_update(x->r->kube, &tn_gvr_tenants, NULL, body, "status", &out_obj, &err);
    tn_self_writes_write_done(x->r->self, "Tenant", NULL, x->key, rc == 0 ? out_obj : NULL);
    json_decref(body);
    x->writes++;
    if (rc) {
      /* A conflict means our cache is behind our own last write: expected, retried at once. */
      tn_log(rc == TN_ECONFLICT ? TN_LOG_DEBUG : TN_LOG_WARN, &x->lf, "writing status: %s", err.message);
      json_decref(new_status);
      x->res = TN_RESULT_ERR;
      return FLOW_STOP;
    }
    x->old_status = NULL; /* it belonged to the object replaced here */
    json_decref(x->obj);
    x->obj = out_obj;
    tn_written_note(x->r->written, x->obj, x->rv, rv_sent);
  }
  json_decref(new_status);
  return FLOW_NEXT;
}

/* audit the outcome: the steps' "succeeded" rows, and their Events, once the status that
 * records them is durable. */
static void step_audit_outcome(struct run *x) {
  struct tn_error aerr = {0};
  if (x->lp.n_steps > 0 && audit_steps(x, &x->lp, TN_AUDIT_SUCCEEDED, x->gen_before, x->generation, &aerr))
    tn_log(TN_LOG_WARN, &x->lf,
           "recording the transition's outcome in the audit trail: %s (the started row stands)",
           aerr.message);
  for (int i = 0; i < x->lp.n_steps; i++) {
    const struct tn_transition *s = &x->lp.steps[i];
    event(x, TN_EVENT_NORMAL, s->event_reason, "tenant %s: %s -> %s%s%s (correlationId=%s)", x->key,
          s->from == TN_STATE_NONE ? "(new)" : tn_state_name(s->from), tn_state_name(s->to),
          x->t->state_reason ? ": " : "", x->t->state_reason ? x->t->state_reason : "", s->correlation_id);
    tn_log(TN_LOG_INFO,
           &(struct tn_log_fields){.controller = "tenant",
                                   .tenant = x->key,
                                   .correlation_id = s->correlation_id,
                                   .generation = x->generation},
           "%s: %s -> %s", s->event_reason, s->from == TN_STATE_NONE ? "(new)" : tn_state_name(s->from),
           tn_state_name(s->to));
  }
  /* What did not happen, after what did (a new tenant's Created before its refused activation). */
  if (x->report_refusal) {
    const struct condition *why = &x->conds[x->refused_cause];
    audit_step_outcome(x, &x->refused, TN_AUDIT_REFUSED, why->reason, why->message);
    event(x, TN_EVENT_WARNING, "ActivationRefused",
          "activation (%s -> Active) refused: %s (correlationId=%s)", tn_state_name(x->refused.from),
          why->message, x->refused.correlation_id);
  }
  if (x->report_failure && x->inflight.n_steps > 0) {
    for (int i = 0; i < x->inflight.n_steps; i++)
      audit_step_outcome(x, &x->inflight.steps[i], TN_AUDIT_FAILED, "TransitionFailed", x->failure);
    event(x, TN_EVENT_WARNING, "TransitionFailed", "%s failed, retrying: %s (correlationId=%s)",
          x->failure_what, x->failure, x->inflight.steps[0].correlation_id);
  }
}

static void run_cleanup(struct run *x) {
  if (x->writes)
    tn_log(TN_LOG_DEBUG, &x->lf, "reconciled with %d write(s)", x->writes);
  tn_diff_cleanup(&x->diff);
  observed_cleanup(&x->observed);
  tn_object_list_cleanup(&x->desired);
  inventory_cleanup(&x->inv);
  json_decref(x->plan_obj);
  json_decref(x->derived);
  json_decref(x->db_status);
  json_decref(x->keys_status);
  json_decref(x->bg_status);
  tn_policy_result_cleanup(&x->policy);
  tn_plan_free(x->plan);
  tn_tenant_free(x->t);
  json_decref(x->obj);
}

/* The tenant reconcile: its steps, in order. */
struct tn_result tn_tenant_reconcile(void *ud, const char *key) {
  struct run x = {.r = ud, .key = key, .res = TN_RESULT_OK, .wr = {.held = -1}};
  x.lf = (struct tn_log_fields)TN_LOG_FIELDS_INIT;
  x.lf.controller = "tenant";
  x.lf.tenant = key;
  tn_time_rfc3339(tn_wall_now(), x.now, sizeof x.now);
  tn_policy_result_init(&x.policy);

  bool applied = false;
  enum flow f = step_observe(&x);
  if (f == FLOW_NEXT)
    f = step_plan_lifecycle(&x);
  if (f == FLOW_NEXT)
    f = step_evaluate_policy(&x);
  if (f == FLOW_NEXT)
    f = step_resolve_plan_and_placement(&x);
  if (f == FLOW_NEXT)
    f = step_check_activation(&x);
  if (f == FLOW_NEXT)
    f = step_audit_started(&x);
  if (f == FLOW_NEXT)
    f = step_hold_without_plan_or_placement(&x);
  if (f == FLOW_NEXT)
    f = step_apply_objects(&x);
  if (f == FLOW_NEXT) {
    step_database(&x);
    step_workloads(&x);
    step_keys(&x);
    applied = true;
  }
  if (f == FLOW_NEXT || f == FLOW_BREAKGLASS) {
    step_breakglass(&x);
    step_report_drift(&x);
    f = FLOW_NEXT;
  }
  if (f == FLOW_NEXT || f == FLOW_STATUS) {
    step_settle_transition(&x);
    f = step_status(&x);
  }
  if (f == FLOW_NEXT)
    step_audit_outcome(&x);
  if (f == FLOW_NEXT && applied) /* after the transitions' events: created, activated, then these */
    step_record_changes(&x);

  struct tn_result res = x.res;
  run_cleanup(&x);
  return res;
}
