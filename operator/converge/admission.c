/* admission.c - the validating admission webhook for Tenants (see admission.h): the review of
 * one AdmissionReview, the serving certificate, the HTTPS server and the webhook registration. */
#include "converge/admission.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "converge/migration_logical.h"
#include "kube/client.h"
#include "runtime/httpserver.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "tenancy/lifecycle.h"
#include "tenancy/migration.h"
#include "tenancy/placement.h"
#include "tenancy/policy.h"
#include "tenancy/tenant.h"
#include "util/buf.h"
#include "util/clock.h"

/* The largest AdmissionReview of a Tenant: an UPDATE carries the object and the old object. The
 * CRD schema bounds a Tenant's spec to about 57 KiB (every string and list has maxLength/maxItems);
 * the API server bounds annotations to 256 KiB; the status is written only by the operator and
 * stays in the kilobytes. 2 MiB leaves room for two such objects with managedFields, several
 * times over; anything larger is not a Tenant review and is refused (413) from its headers. */
#define MAX_REVIEW_BODY ((size_t)2 << 20)
/* Reviews up to this size (every real one) are always admitted; larger ones share a budget of
 * REVIEW_BUDGET bytes in flight (8 at the cap), past which they are answered 503 at once. */
#define SMALL_REVIEW ((size_t)64 << 10)
#define REVIEW_BUDGET ((size_t)16 << 20)
/* The API server waits timeoutSeconds (at most 30) for an answer: a connection stalled longer
 * serves nobody. */
#define REVIEW_CONN_TIMEOUT_S 15
#define LEAF_DAYS 365
#define CA_DAYS 3650
#define RENEW_BEFORE_DAYS 30

static const struct tn_gvr gvr_secrets = {"", "v1", "secrets", true};
static const struct tn_gvr gvr_webhooks = {"admissionregistration.k8s.io", "v1",
                                           "validatingwebhookconfigurations", false};

static int nomem(struct tn_error *err) { return tn_error_set(err, -ENOMEM, "out of memory"); }

static const char *str_at(const json_t *obj, const char *key) {
  const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static const json_t *obj_at(const json_t *obj, const char *key) {
  const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
  return json_is_object(v) ? v : NULL;
}

/* ---- the external-id index ------------------------------------------------------------------ */

int tn_admission_external_id_index(const json_t *obj, void *ud, struct tn_index_values *out) {
  const json_t *ids = obj_at(obj_at(obj, "spec"), "externalIds");
  const char *system;
  const json_t *id;
  char value[1024];
  if (!ids)
    return 0;
  json_object_foreach((json_t *)ids, system, id) {
    if (!json_is_string(id))
      continue;
    snprintf(value, sizeof value, "%s=%s", system, json_string_value(id));
    int rc = tn_index_values_add(out, value);
    if (rc)
      return rc;
  }
  return 0;
}

/* ---- one review ------------------------------------------------------------------------------- */

/* What a review decides. */
struct decision {
  bool allowed;
  int code;           /* when denied */
  const char *reason; /* when denied: Forbidden, Invalid, ServiceUnavailable */
  char *message;      /* when denied; malloc'd */
  json_t *warnings;   /* array of strings */
};

__attribute__((format(printf, 4, 5))) static int deny(struct decision *d, int code, const char *reason,
                                                      const char *fmt, ...) {
  struct tn_buf b;
  tn_buf_init(&b, (size_t)1 << 20);
  va_list ap;
  va_start(ap, fmt);
  tn_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  free(d->message);
  d->message = tn_buf_take(&b);
  tn_buf_cleanup(&b);
  d->allowed = false;
  d->code = code;
  d->reason = reason;
  return d->message ? 0 : -ENOMEM;
}

static int warn(struct decision *d, const char *text) {
  return json_array_append_new(d->warnings, json_string(text));
}

/* The policies and inventory of one review, parsed. */
struct context {
  const struct tn_admission_lookups *lk;
  struct tn_series *eval_seconds; /* may be NULL: then the clock is never read */
  struct tn_policy **policies;
  size_t n_policies;
  struct tn_policy_region **regions;
  size_t n_regions;
};

static void context_cleanup(struct context *c) {
  for (size_t i = 0; i < c->n_policies; i++)
    tn_policy_free(c->policies[i]);
  free(c->policies);
  for (size_t i = 0; i < c->n_regions; i++)
    tn_policy_region_free(c->regions[i]);
  free(c->regions);
}

/* Runs a list lookup (NULL function: empty) and checks it is an array. */
static int lookup_list(int (*fn)(void *, json_t **, struct tn_error *), void *ud, const char *what,
                       json_t **out, struct tn_error *err) {
  *out = NULL;
  if (!fn)
    return (*out = json_array()) ? 0 : nomem(err);
  int rc = fn(ud, out, err);
  if (rc == 0 && !json_is_array(*out)) {
    json_decref(*out);
    *out = NULL;
    rc = tn_error_set(err, TN_EAPI, "the %s lookup did not return a list", what);
  }
  if (rc)
    tn_error_prefix(err, "reading %s", what);
  return rc;
}

static int load_policies(struct context *c, struct tn_error *err) {
  json_t *arr = NULL;
  int rc = lookup_list(c->lk ? c->lk->list_policies : NULL, c->lk ? c->lk->ud : NULL, "TenancyPolicies", &arr,
                       err);
  if (rc)
    return rc;
  size_t n = json_array_size(arr);
  if (n && !(c->policies = calloc(n, sizeof *c->policies))) {
    rc = nomem(err);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if ((rc = tn_policy_parse(json_array_get(arr, i), &c->policies[c->n_policies], err)))
      goto out;
    c->n_policies++;
  }
out:
  json_decref(arr);
  return rc;
}

static int load_regions(struct context *c, struct tn_error *err) {
  json_t *arr = NULL;
  int rc = lookup_list(c->lk ? c->lk->list_regions : NULL, c->lk ? c->lk->ud : NULL, "Regions", &arr, err);
  if (rc)
    return rc;
  size_t n = json_array_size(arr);
  if (n && !(c->regions = calloc(n, sizeof *c->regions))) {
    rc = nomem(err);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if ((rc = tn_policy_region_parse(json_array_get(arr, i), &c->regions[c->n_regions], err)))
      goto out;
    c->n_regions++;
  }
out:
  json_decref(arr);
  return rc;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the evaluator on t (obj is its JSON, for the fields struct tn_tenant lacks). */
static int run_evaluator(const struct context *c, const struct tn_tenant *t, const json_t *obj,
                         const struct tn_transition *steps, size_t n_steps, unsigned rules,
                         struct tn_policy_result *res) {
  struct tn_policy_input in = {.tenant = t,
                               .regions = (const struct tn_policy_region *const *)c->regions,
                               .n_regions = c->n_regions,
                               .policies = (const struct tn_policy *const *)c->policies,
                               .n_policies = c->n_policies,
                               .steps = steps,
                               .n_steps = n_steps,
                               .rules = rules};
  tn_policy_tenant_fields(obj, &in.quota_overrides, &in.database_server);
  double t0 = c->eval_seconds ? now_s() : 0;
  int rc = tn_policy_evaluate(&in, res, NULL);
  if (c->eval_seconds)
    tn_series_observe(c->eval_seconds, now_s() - t0);
  return rc == -ENOMEM ? rc : 0;
}

/* Adds the violations of the external ids of t that other tenants hold. */
static int check_external_ids(const struct context *c, const struct tn_tenant *t, const struct tn_tenant *old,
                              struct tn_policy_result *res, struct tn_error *err) {
  json_t *found = json_array(); /* keeps the claims' strings alive */
  struct tn_external_id_claim *claims = NULL;
  size_t n = 0;
  int rc = 0;
  if (!found)
    return nomem(err);
  for (size_t i = 0; c->lk && c->lk->tenants_by_external_id && i < t->n_external_ids; i++) {
    const struct tn_external_id *e = &t->external_ids[i];
    json_t *arr = NULL;
    if ((rc = c->lk->tenants_by_external_id(c->lk->ud, e->system, e->id, &arr, err))) {
      tn_error_prefix(err, "looking up the tenants with external id %s=%s", e->system, e->id);
      goto out;
    }
    if (!json_is_array(arr) || json_array_append_new(found, arr)) {
      json_decref(arr);
      rc = tn_error_set(err, TN_EAPI, "the external-id lookup did not return a list");
      goto out;
    }
    size_t k;
    json_t *other;
    json_array_foreach(arr, k, other) {
      const json_t *spec = obj_at(other, "spec");
      const char *name = str_at(obj_at(other, "metadata"), "name");
      const char *held = str_at(obj_at(spec, "externalIds"), e->system);
      enum tn_state st = TN_STATE_DRAFT;
      if (!name || !held || strcmp(held, e->id))
        continue; /* a stale or loose index: only exact holders count */
      if (str_at(spec, "state") && tn_state_parse(str_at(spec, "state"), &st))
        st = TN_STATE_DRAFT;
      struct tn_external_id_claim *nc = realloc(claims, (n + 1) * sizeof *nc);
      if (!nc) {
        rc = nomem(err);
        goto out;
      }
      claims = nc;
      claims[n++] = (struct tn_external_id_claim){name, st, e->system, e->id};
    }
  }
  if (tn_policy_check_external_ids(t, old, claims, n, res) < 0)
    rc = nomem(err);
out:
  free(claims);
  json_decref(found);
  return rc;
}

/* Turns a policy result into the decision: denied with every violation, warnings either way. */
static int decide_from(struct decision *d, const struct tn_policy_result *res) {
  for (size_t i = 0; i < res->n_warnings; i++)
    if (warn(d, res->warnings[i]))
      return -ENOMEM;
  if (!res->n_violations)
    return 0;
  char *msg = tn_policy_result_message(res);
  if (!msg)
    return -ENOMEM;
  int rc = deny(d, 403, "Forbidden", "%s", msg);
  free(msg);
  return rc;
}

/* A denial because a lookup failed: fail closed, say it is temporary. */
static int deny_unavailable(struct decision *d, const struct tn_error *e) {
  return deny(d, 503, "ServiceUnavailable",
              "the tenancy operator cannot check this tenant against its policies right now (%s); retry in a "
              "moment",
              e->message);
}

/* MIGRATION (issue 16): a TenantMigration is refused while another of the same tenant runs. */
static int decide_migration(const struct tn_admission_lookups *lk, const json_t *obj, struct decision *d) {
  if (!lk || !lk->list_migrations)
    return 0;
  json_t *all = NULL;
  struct tn_error e = {0};
  if (lk->list_migrations(lk->ud, &all, &e))
    return deny(d, 503, "ServiceUnavailable",
                "the tenancy operator cannot check the running migrations right now (%s); retry in a moment",
                e.message);
  char msg[512];
  int rc = tn_mig_admit(obj, all, msg, sizeof msg) ? 0 : deny(d, 409, "Conflict", "%s", msg);
  json_decref(all);
  return rc;
}

/* Break-glass subjects reserved to Kubernetes (users and groups starting with system:) are
 * refused, unless the stored tenant already held the same request with the same subject (an
 * unrelated change is not blocked; the controller never grants it anyway). The CRD refuses them
 * first; this is for API servers whose CRD is older. */
static int check_breakglass_subjects(const json_t *obj, const json_t *old_obj, struct decision *d) {
  const json_t *reqs = json_object_get(obj_at(obj, "spec"), "breakGlass");
  const json_t *olds = json_object_get(obj_at(old_obj, "spec"), "breakGlass");
  size_t i, j;
  const json_t *e, *o;
  json_array_foreach(reqs, i, e) {
    const char *user = str_at(e, "user"), *group = str_at(e, "group");
    const char *subject = tn_subject_is_reserved(user) ? user : tn_subject_is_reserved(group) ? group : NULL;
    if (!subject)
      continue;
    bool held = false;
    json_array_foreach(olds, j, o) {
      const char *id = str_at(o, "id"), *ou = str_at(o, "user"), *og = str_at(o, "group");
      held |= id && str_at(e, "id") && strcmp(id, str_at(e, "id")) == 0 &&
              ((ou && user && strcmp(ou, user) == 0) || (og && group && strcmp(og, group) == 0));
    }
    if (!held)
      return deny(
          d, 422, "Invalid",
          "spec.breakGlass[%zu].%s: %s is reserved to Kubernetes (the prefix " TN_RESERVED_SUBJECT_PREFIX
          " names built-in identities, service accounts and cluster components) and never gets "
          "break-glass access: name a person or a group of the tenant's identity provider",
          i, subject == user ? "user" : "group", subject);
  }
  return 0;
}

static int parse_tenant(const json_t *obj, const char *which, struct tn_tenant **t, struct decision *d) {
  struct tn_error e = {0};
  int rc = tn_tenant_parse(obj, t, &e);
  if (rc == -ENOMEM)
    return rc;
  if (rc)
    return deny(d, 422, "Invalid", "the %s tenant cannot be read: %s", which, e.message);
  return 0;
}

static int decide_create(struct context *c, const json_t *obj, struct decision *d) {
  struct tn_tenant *t = NULL;
  struct tn_policy_result res;
  struct tn_error e = {0};
  struct tn_lifecycle_plan lp;
  int rc;
  tn_policy_result_init(&res);
  if ((rc = parse_tenant(obj, "new", &t, d)) || !d->allowed ||
      (rc = check_breakglass_subjects(obj, NULL, d)) || !d->allowed)
    goto out;
  if ((rc = load_policies(c, &e)) || (rc = load_regions(c, &e))) {
    rc = rc == -ENOMEM ? rc : deny_unavailable(d, &e);
    goto out;
  }
  /* a new tenant walks Created, then the shortest path to spec.state: check every step */
  t->status_state = TN_STATE_NONE;
  memset(&lp, 0, sizeof lp);
  (void)tn_lifecycle_plan(t, &lp, NULL); /* a refused path keeps its first steps; CEL refuses the rest */
  if ((rc = run_evaluator(c, t, obj, lp.steps, (size_t)lp.n_steps, 0, &res)))
    goto out;
  if ((rc = check_external_ids(c, t, NULL, &res, &e))) {
    rc = rc == -ENOMEM ? rc : deny_unavailable(d, &e);
    goto out;
  }
  rc = decide_from(d, &res);
out:
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  return rc;
}

static int decide_update(struct context *c, const json_t *obj, const json_t *old_obj, struct decision *d) {
  struct tn_tenant *t = NULL, *old = NULL;
  struct tn_policy_result res, before;
  struct tn_error e = {0};
  int rc;
  tn_policy_result_init(&res);
  tn_policy_result_init(&before);
  /* a tenant being finalized, or a change outside spec (labels, annotations, finalizers): the
   * operator must always be able to make these, and they change nothing policy reads */
  if (str_at(obj_at(obj, "metadata"), "deletionTimestamp") ||
      json_equal(json_object_get(obj, "spec"), json_object_get(old_obj, "spec")))
    return 0;
  if ((rc = parse_tenant(obj, "new", &t, d)) || !d->allowed ||
      (rc = check_breakglass_subjects(obj, old_obj, d)) || !d->allowed)
    goto out;
  if (tn_tenant_parse(old_obj, &old, NULL) == -ENOMEM) {
    rc = -ENOMEM;
    goto out;
  }
  /* a placed tenant's data moves only by a migration: its residency may not drop the region it is
   * in (ratcheted: a tenant that was already outside its allowedRegions is not blocked) */
  if (old && old->status_region &&
      (old->status_state == TN_STATE_ACTIVE || old->status_state == TN_STATE_SUSPENDED ||
       old->status_state == TN_STATE_ARCHIVED) &&
      tn_placement_allows(&old->residency, old->status_region) &&
      !tn_placement_allows(&t->residency, old->status_region)) {
    rc = deny(d, 422, "Invalid",
              "spec.residency.allowedRegions: tenant %s is placed in region %s (status.placement.region) and "
              "its data is there; a placed tenant moves only by a migration, never by a residency edit. "
              "To fix: keep %s in spec.residency.allowedRegions (adding regions or changing preferredRegion "
              "is fine)",
              t->name, old->status_region, old->status_region);
    goto out;
  }
  if ((rc = load_policies(c, &e)) || (rc = load_regions(c, &e))) {
    rc = rc == -ENOMEM ? rc : deny_unavailable(d, &e);
    goto out;
  }
  struct tn_transition step = {0};
  size_t n_steps = 0;
  if (old && old->state != t->state &&
      tn_lifecycle_check(old->state, t->state, t->name, t->deletion_confirmation, &step.action, NULL) == 0 &&
      step.action != TN_ACTION_NONE) {
    step.from = old->state;
    step.to = t->state;
    n_steps = 1;
  }
  if ((rc = run_evaluator(c, t, obj, &step, n_steps, 0, &res)))
    goto out;
  /* ratchet: what the stored tenant already violated does not block an unrelated change */
  if (old &&
      ((rc = run_evaluator(c, old, old_obj, NULL, 0, 0, &before)) || (rc = tn_policy_ratchet(&res, &before))))
    goto out;
  if ((rc = check_external_ids(c, t, old, &res, &e))) {
    rc = rc == -ENOMEM ? rc : deny_unavailable(d, &e);
    goto out;
  }
  rc = decide_from(d, &res);
out:
  tn_policy_result_cleanup(&res);
  tn_policy_result_cleanup(&before);
  tn_tenant_free(t);
  tn_tenant_free(old);
  return rc;
}

static int decide_delete(struct context *c, const json_t *old_obj, struct decision *d) {
  struct tn_tenant *t = NULL;
  struct tn_policy_result res;
  struct tn_error e = {0};
  int rc = 0;
  tn_policy_result_init(&res);
  if (!json_is_object(old_obj) || str_at(obj_at(old_obj, "metadata"), "deletionTimestamp"))
    goto out; /* nothing to guard, or already being deleted */
  if ((rc = tn_tenant_parse(old_obj, &t, NULL))) {
    /* never trap a record nobody can read */
    rc = rc == -ENOMEM ? rc : warn(d, "the stored tenant cannot be read, so its deletion was not checked");
    goto out;
  }
  if (t->state != TN_STATE_DRAFT && t->state != TN_STATE_ARCHIVED && t->state != TN_STATE_DELETED) {
    rc = deny(
        d, 403, "Forbidden",
        "tenant %s is %s: kubectl delete of a tenant is refused unless it is Draft, Archived or Deleted, "
        "so that a live tenant's data is never removed by accident; archive it first (kubectl patch "
        "tenant %s --type=merge -p '{\"spec\":{\"state\":\"Archived\"}}'), then delete it",
        t->name, tn_state_name(t->state), t->name);
    goto out;
  }
  if (t->state == TN_STATE_DELETED)
    goto out; /* removing a tombstone's record */
  /* removing a Draft or Archived tenant is its delete action: allowedActions applies */
  if ((rc = load_policies(c, &e))) {
    rc = rc == -ENOMEM ? rc : deny_unavailable(d, &e);
    goto out;
  }
  struct tn_transition step = {.from = t->state, .to = TN_STATE_DELETED, .action = TN_ACTION_DELETE};
  if ((rc = run_evaluator(c, t, old_obj, &step, 1, TN_POLICY_RULE_ACTIONS, &res)))
    goto out;
  rc = decide_from(d, &res);
out:
  tn_policy_result_cleanup(&res);
  tn_tenant_free(t);
  return rc;
}

/* How a review ended, for metrics. */
struct review_outcome {
  const char *operation; /* "CREATE", "UPDATE", "DELETE" or "other" */
  const char *result;    /* "allowed", "denied", "error" */
};

static int review(const char *body, size_t len, const struct tn_admission_lookups *lk,
                  const struct tn_admission_hooks *hooks, struct tn_series *eval_seconds, json_t **response,
                  struct review_outcome *outcome, struct tn_error *err) {
  json_t *doc = NULL, *resp = NULL;
  struct decision d = {.allowed = true, .warnings = json_array()};
  struct context c = {.lk = lk, .eval_seconds = eval_seconds};
  json_error_t je;
  int rc = 0;
  *response = NULL;
  outcome->operation = "other";
  outcome->result = "error";
  if (!d.warnings)
    return nomem(err);

  if (!(doc = json_loadb(body, len, 0, &je))) {
    rc = tn_error_set(err, TN_EINVALID, "the body is not JSON: %s (line %d)", je.text, je.line);
    goto out;
  }
  const char *api = str_at(doc, "apiVersion"), *kind = str_at(doc, "kind");
  const json_t *req = obj_at(doc, "request");
  const char *uid = str_at(req, "uid");
  if (!api || strcmp(api, "admission.k8s.io/v1") || !kind || strcmp(kind, "AdmissionReview") || !uid ||
      !*uid) {
    rc =
        tn_error_set(err, TN_EINVALID,
                     "the body is not an admission.k8s.io/v1 AdmissionReview with a request uid (the webhook "
                     "configuration must list admissionReviewVersions [v1])");
    goto out;
  }
  const json_t *res = obj_at(req, "resource");
  const char *group = str_at(res, "group"), *resource = str_at(res, "resource");
  const char *sub = str_at(req, "subResource"), *op = str_at(req, "operation");
  const json_t *obj = json_object_get(req, "object"), *old = json_object_get(req, "oldObject");
  const char *actor = str_at(obj_at(req, "userInfo"), "username");
  const json_t *dry = json_object_get(req, "dryRun");
  bool ours = group && strcmp(group, TN_API_GROUP) == 0 && resource && strcmp(resource, "tenants") == 0 &&
              (!sub || !*sub) && op;
  bool migration = group && strcmp(group, TN_API_GROUP) == 0 && resource &&
                   strcmp(resource, "tenantmigrations") == 0 && (!sub || !*sub) && op &&
                   strcmp(op, "CREATE") == 0;

  if (ours && strcmp(op, "CREATE") == 0) {
    outcome->operation = "CREATE";
    rc = decide_create(&c, obj, &d);
  } else if (ours && strcmp(op, "UPDATE") == 0) {
    outcome->operation = "UPDATE";
    rc = decide_update(&c, obj, old, &d);
  } else if (ours && strcmp(op, "DELETE") == 0) {
    outcome->operation = "DELETE";
    rc = decide_delete(&c, old, &d);
  } else if (group && strcmp(group, TN_API_GROUP) == 0 && resource &&
             strcmp(resource, "tenantmigrations") == 0 && (!sub || !*sub) && op &&
             strcmp(op, "DELETE") == 0) {
    /* MIGRATION (issue 16): not while its logical replication runs (the slot would stay) */
    outcome->operation = "DELETE";
    char msg[768];
    if (!tn_mig_logical_delete_allowed(old, msg, sizeof msg))
      rc = deny(&d, 409, "Conflict", "%s", msg);
  } else if (migration) { /* MIGRATION (issue 16): one running migration per tenant */
    ours = false;         /* no tenant hooks */
    outcome->operation = "CREATE";
    rc = decide_migration(lk, obj, &d);
  } else {
    ours = false; /* not ours to judge (another kind, a subresource, CONNECT): allowed untouched */
  }
  if (rc) {
    rc = nomem(err);
    goto out;
  }

  resp = json_pack("{s:s, s:s, s:{s:s, s:b}}", "apiVersion", "admission.k8s.io/v1", "kind", "AdmissionReview",
                   "response", "uid", uid, "allowed", d.allowed);
  json_t *r = resp ? json_object_get(resp, "response") : NULL;
  if (!r ||
      (!d.allowed &&
       json_object_set_new(r, "status",
                           json_pack("{s:s, s:i, s:s, s:s, s:{}}", "status", "Failure", "code", d.code,
                                     "reason", d.reason, "message", d.message, "metadata"))) ||
      (json_array_size(d.warnings) && json_object_set(r, "warnings", d.warnings))) {
    rc = nomem(err);
    goto out;
  }
  outcome->result = d.allowed ? "allowed" : "denied";

  if (ours && hooks) {
    const json_t *o = json_is_object(obj) ? obj : NULL, *oo = json_is_object(old) ? old : NULL;
    struct tn_admission_record rec = {.request_uid = uid,
                                      .actor = actor ? actor : "",
                                      .operation = op,
                                      .name = str_at(obj_at(o ? o : oo, "metadata"), "name"),
                                      .object = o,
                                      .old_object = oo,
                                      .allowed = d.allowed,
                                      .message = d.allowed ? "" : d.message,
                                      .dry_run = json_is_true(dry)};
    if (!rec.name)
      rec.name = str_at(req, "name") ? str_at(req, "name") : "";
    if (d.allowed && !rec.dry_run && hooks->on_admitted)
      hooks->on_admitted(hooks->ud, &rec);
    else if (!d.allowed && hooks->on_denied)
      hooks->on_denied(hooks->ud, &rec);
  }
  *response = resp;
  resp = NULL;
out:
  json_decref(resp);
  json_decref(doc);
  json_decref(d.warnings);
  free(d.message);
  context_cleanup(&c);
  return rc;
}

int tn_admission_review(const char *request_json, size_t len, const struct tn_admission_lookups *lookups,
                        const struct tn_admission_hooks *hooks, json_t **response, struct tn_error *err) {
  struct review_outcome o;
  return review(request_json, len, lookups, hooks, NULL, response, &o, err);
}

/* ---- certificates ------------------------------------------------------------------------------ */

/* PEM texts of a serving identity. */
struct material {
  char *cert_pem;   /* the serving certificate */
  char *key_pem;    /* its key */
  char *ca_pem;     /* the caBundle */
  char *ca_key_pem; /* the CA's key when we manage the CA; NULL otherwise */
};

static void material_cleanup(struct material *m) {
  free(m->cert_pem);
  if (m->key_pem)
    OPENSSL_cleanse(m->key_pem, strlen(m->key_pem));
  free(m->key_pem);
  free(m->ca_pem);
  if (m->ca_key_pem)
    OPENSSL_cleanse(m->ca_key_pem, strlen(m->ca_key_pem));
  free(m->ca_key_pem);
  memset(m, 0, sizeof *m);
}

/* Fails with the OpenSSL error queue's first error in the message. */
static int ossl_error(struct tn_error *err, const char *what) {
  char buf[256] = "";
  unsigned long e = ERR_get_error();
  if (e)
    ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return tn_error_set(err, TN_ETRANSPORT, "%s failed%s%s", what, *buf ? ": " : "", buf);
}

static char *bio_text(BIO *b) {
  BUF_MEM *m = NULL;
  BIO_get_mem_ptr(b, &m);
  return m ? strndup(m->data, m->length) : NULL;
}

static char *cert_pem(X509 *x) {
  BIO *b = BIO_new(BIO_s_mem());
  char *s = b && PEM_write_bio_X509(b, x) ? bio_text(b) : NULL;
  BIO_free(b);
  return s;
}

static char *key_pem(EVP_PKEY *k) {
  BIO *b = BIO_new(BIO_s_mem());
  char *s = b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) ? bio_text(b) : NULL;
  BIO_free(b);
  return s;
}

static X509 *read_cert(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  return x;
}

static EVP_PKEY *read_key(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  return k;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value) {
  X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
  int ok = ex && X509_add_ext(x, ex, -1);
  X509_EXTENSION_free(ex);
  return ok ? 0 : -1;
}

/* A certificate for key: the CA (self-signed) when san is NULL, else a serving certificate for
 * the SAN list ("IP:127.0.0.1,DNS:x") signed by issuer. NULL on failure (OpenSSL's queue says). */
static X509 *new_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, const char *san,
                      long days) {
  X509 *x = X509_new();
  BIGNUM *bn = BN_new();
  X509_NAME *name;
  X509V3_CTX ctx;
  bool ok = false;
  if (!x || !bn || !X509_set_version(x, X509_VERSION_3) ||
      !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) || /* positive, at most 16 bytes */
      !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L) || !X509_set_pubkey(x, key) ||
      !(name = X509_get_subject_name(x)) ||
      !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"tenancy-operator", -1, -1,
                                  0) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
      !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name))
    goto out;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
  if (!san) {
    if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        add_ext(x, &ctx, NID_subject_key_identifier, "hash"))
      goto out;
  } else if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
             add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") ||
             add_ext(x, &ctx, NID_ext_key_usage, "serverAuth") ||
             add_ext(x, &ctx, NID_subject_alt_name, san) ||
             add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
             add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always")) {
    goto out;
  }
  ok = X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
out:
  BN_free(bn);
  if (!ok) {
    X509_free(x);
    x = NULL;
  }
  return x;
}

/* "IP:a" for an IP literal, else "DNS:a". */
static void san_entry(struct tn_buf *b, const char *host) {
  unsigned char addr[16];
  bool ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
  tn_buf_printf(b, "%s%s:%s", b->len ? "," : "", ip ? "IP" : "DNS", host);
}

/* A serving certificate for the hosts, signed by the CA (ca_pem, ca_key_pem), into m->cert_pem
 * and m->key_pem. */
static int issue_leaf(const char *const *hosts, size_t n_hosts, const char *ca_pem, const char *ca_key_pem,
                      struct material *m, struct tn_error *err) {
  X509 *ca = read_cert(ca_pem), *leaf = NULL;
  EVP_PKEY *ca_key = read_key(ca_key_pem), *key = NULL;
  struct tn_buf san;
  int rc = 0;
  tn_buf_init(&san, 8192);
  for (size_t i = 0; i < n_hosts; i++)
    san_entry(&san, hosts[i]);
  if (!ca || !ca_key) {
    rc = ossl_error(err, "reading the webhook CA");
    goto out;
  }
  if (!(key = EVP_EC_gen("P-256")) ||
      !(leaf = new_cert(key, "tenancy-operator-webhook", ca, ca_key, tn_buf_str(&san), LEAF_DAYS))) {
    rc = ossl_error(err, "generating the webhook's serving certificate");
    goto out;
  }
  free(m->cert_pem);
  free(m->key_pem);
  m->cert_pem = cert_pem(leaf);
  m->key_pem = key_pem(key);
  if (!m->cert_pem || !m->key_pem)
    rc = nomem(err);
out:
  X509_free(ca);
  X509_free(leaf);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(key);
  tn_buf_cleanup(&san);
  return rc;
}

/* A new private CA and a serving certificate for the hosts. */
static int generate(const char *const *hosts, size_t n_hosts, struct material *m, struct tn_error *err) {
  EVP_PKEY *ca_key = EVP_EC_gen("P-256");
  X509 *ca = ca_key ? new_cert(ca_key, "tenancy-operator-webhook-ca", NULL, NULL, NULL, CA_DAYS) : NULL;
  int rc = 0;
  if (!ca) {
    rc = ossl_error(err, "generating the webhook CA");
    goto out;
  }
  if (!(m->ca_pem = cert_pem(ca)) || !(m->ca_key_pem = key_pem(ca_key))) {
    rc = nomem(err);
    goto out;
  }
  rc = issue_leaf(hosts, n_hosts, m->ca_pem, m->ca_key_pem, m, err);
out:
  X509_free(ca);
  EVP_PKEY_free(ca_key);
  return rc;
}

int tn_webhook_cert_not_after(const char *pem, double *not_after) {
  X509 *x = pem ? read_cert(pem) : NULL;
  struct tm tm;
  int rc = TN_EINVALID;
  if (x && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
    *not_after = (double)timegm(&tm);
    rc = 0;
  }
  X509_free(x);
  ERR_clear_error();
  return rc;
}

bool tn_webhook_cert_needs_renewal(double not_after, double now, double renew_before_s) {
  return now + renew_before_s >= not_after;
}

/* Whether the serving certificate covers every host and is valid for RENEW_BEFORE_DAYS more. */
static bool leaf_fits(const char *pem, const char *const *hosts, size_t n_hosts) {
  X509 *x = read_cert(pem);
  double not_after = 0;
  bool ok = x != NULL && tn_webhook_cert_not_after(pem, &not_after) == 0 &&
            !tn_webhook_cert_needs_renewal(not_after, (double)time(NULL), RENEW_BEFORE_DAYS * 86400.0);
  for (size_t i = 0; ok && i < n_hosts; i++) {
    unsigned char addr[16];
    bool ip = inet_pton(AF_INET, hosts[i], addr) == 1 || inet_pton(AF_INET6, hosts[i], addr) == 1;
    ok = ip ? X509_check_ip_asc(x, hosts[i], 0) == 1 : X509_check_host(x, hosts[i], 0, 0, NULL) == 1;
  }
  X509_free(x);
  ERR_clear_error();
  return ok;
}

static char *b64_encode(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (out)
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
  return out;
}

/* Standard base64 (as Secret data holds it) to a NUL-terminated string; NULL when invalid. */
static char *b64_decode(const char *s) {
  size_t n = strlen(s);
  if (n % 4)
    return NULL;
  unsigned char *out = malloc(n / 4 * 3 + 1);
  int len = out ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : -1;
  if (len < 0) {
    free(out);
    return NULL;
  }
  if (n && s[n - 1] == '=')
    len--;
  if (n > 1 && s[n - 2] == '=')
    len--;
  out[len] = '\0';
  if (strlen((char *)out) != (size_t)len) { /* an embedded NUL: not PEM */
    free(out);
    return NULL;
  }
  return (char *)out;
}

static char *secret_value(const json_t *secret, const char *key) {
  const char *v = str_at(obj_at(secret, "data"), key);
  return v ? b64_decode(v) : NULL;
}

/* Fills the Secret's data from m. */
static int secret_fill(json_t *secret, const struct material *m) {
  json_t *data = json_object();
  const char *keys[] = {"tls.crt", "tls.key", "ca.crt", "ca.key"};
  const char *vals[] = {m->cert_pem, m->key_pem, m->ca_pem, m->ca_key_pem};
  int rc = data ? 0 : -ENOMEM;
  for (int i = 0; !rc && i < 4; i++) {
    char *b = vals[i] ? b64_encode(vals[i]) : NULL;
    if (vals[i] && (!b || json_object_set_new(data, keys[i], json_string(b))))
      rc = -ENOMEM;
    free(b);
  }
  if (!rc && json_object_set_new(secret, "data", data))
    return -ENOMEM;
  if (rc)
    json_decref(data);
  return rc;
}

/* The serving identity from a kubernetes.io/tls Secret, creating it (or renewing its serving
 * certificate, when we manage its CA) as needed. */
static int from_secret(struct tn_kube *kube, const char *ns, const char *name, const char *const *hosts,
                       size_t n_hosts, struct material *m, struct tn_error *err) {
  json_t *secret = NULL, *created = NULL;
  int rc;
  if (!kube)
    return tn_error_set(err, TN_ECONFIG, "reading the webhook Secret %s/%s needs a Kubernetes client", ns,
                        name);
  for (int attempt = 0; attempt < 3; attempt++) {
    material_cleanup(m);
    json_decref(secret);
    secret = NULL;
    rc = tn_kube_get(kube, &gvr_secrets, ns, name, &secret, err);
    if (rc == TN_ENOTFOUND) {
      if ((rc = generate(hosts, n_hosts, m, err)))
        goto out;
      json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}}, s:s}", "apiVersion", "v1", "kind",
                              "Secret", "metadata", "name", name, "namespace", ns, "labels",
                              "app.kubernetes.io/name", "tenancy-operator", "app.kubernetes.io/managed-by",
                              "tenancy-operator", "type", "kubernetes.io/tls");
      if (!obj || secret_fill(obj, m)) {
        json_decref(obj);
        rc = nomem(err);
        goto out;
      }
      rc = tn_kube_create(kube, &gvr_secrets, ns, obj, &created, err);
      json_decref(obj);
      json_decref(created);
      created = NULL;
      if (rc == TN_EEXISTS)
        continue; /* another replica won: use its CA */
      if (rc)
        tn_error_prefix(err, "creating the webhook Secret %s/%s", ns, name);
      goto out;
    }
    if (rc) {
      tn_error_prefix(err, "reading the webhook Secret %s/%s", ns, name);
      goto out;
    }
    m->cert_pem = secret_value(secret, "tls.crt");
    m->key_pem = secret_value(secret, "tls.key");
    m->ca_pem = secret_value(secret, "ca.crt");
    m->ca_key_pem = secret_value(secret, "ca.key");
    if (!m->cert_pem || !m->key_pem) {
      rc =
          tn_error_set(err, TN_ECONFIG, "the webhook Secret %s/%s needs tls.crt and tls.key (PEM)", ns, name);
      goto out;
    }
    if (!m->ca_pem && !(m->ca_pem = strdup(m->cert_pem))) {
      rc = nomem(err);
      goto out;
    }
    if (!m->ca_key_pem || leaf_fits(m->cert_pem, hosts, n_hosts))
      goto out; /* managed by someone else (e.g. cert-manager), or still good */
    /* ours and expiring (or for other hosts): a new serving certificate from the same CA, so
     * replicas still serving the old one stay trusted */
    if ((rc = issue_leaf(hosts, n_hosts, m->ca_pem, m->ca_key_pem, m, err)) || (rc = secret_fill(secret, m)))
      goto out;
    rc = tn_kube_update(kube, &gvr_secrets, ns, secret, NULL, &created, err);
    json_decref(created);
    created = NULL;
    if (rc == TN_ECONFLICT)
      continue; /* another replica renewed it: read theirs */
    if (rc)
      tn_error_prefix(err, "renewing the webhook Secret %s/%s", ns, name);
    goto out;
  }
  rc = tn_error_set(err, TN_ECONFLICT, "the webhook Secret %s/%s kept changing while it was read", ns, name);
out:
  json_decref(secret);
  return rc;
}

static char *read_text_file(const char *path, struct tn_error *err) {
  FILE *f = fopen(path, "re");
  struct tn_buf b;
  char chunk[4096];
  size_t n;
  if (!f) {
    tn_error_set(err, TN_ECONFIG, "cannot read %s: %s", path, strerror(errno));
    return NULL;
  }
  tn_buf_init(&b, (size_t)1 << 20);
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    if (tn_buf_append(&b, chunk, n)) {
      tn_error_set(err, TN_ECONFIG, "%s is larger than 1 MiB", path);
      fclose(f);
      tn_buf_cleanup(&b);
      return NULL;
    }
  fclose(f);
  char *s = tn_buf_take(&b);
  tn_buf_cleanup(&b);
  if (!s)
    nomem(err);
  return s;
}

static int write_file(const char *path, const char *text, mode_t mode, struct tn_error *err) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  size_t n = strlen(text), done = 0;
  if (fd < 0 || fchmod(fd, mode))
    goto fail;
  while (done < n) {
    ssize_t w = write(fd, text + done, n - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      goto fail;
    done += (size_t)w;
  }
  if (close(fd)) {
    fd = -1;
    goto fail;
  }
  return 0;
fail:;
  int e = errno;
  if (fd >= 0)
    close(fd);
  return tn_error_set(err, TN_ETRANSPORT, "cannot write %s: %s", path, strerror(e));
}

/* ---- the server ------------------------------------------------------------------------------- */

struct tn_admission {
  /* Read-only once started (the handler reads it on the service thread). */
  char *bind_address, *host, *configuration_name, *url, *service_namespace, *service_name, *failure_policy;
  int service_port, timeout_seconds;
  json_t *object_selector;
  struct tn_admission_lookups lookups;
  struct tn_admission_hooks hooks;
  char *ca_pem;
  char *cert_file, *key_file; /* what the server loads */
  char *owned_dir;            /* a directory we created (removed by free), else NULL */
  bool wrote_files;           /* cert_file and key_file are ours (in cert_dir) */
  struct tn_httpserver *srv;
  /* Certificate reload (see reload_main). Mode, sources and hosts are fixed at new; cert_mu
   * protects ca_pem and cur_cert_pem, which the reload thread replaces. */
  enum { CERT_GENERATED, CERT_FILES, CERT_SECRET } cert_mode;
  char *src_cert_file, *src_key_file, *src_ca_file; /* CERT_FILES */
  char *secret_namespace, *secret_name;             /* CERT_SECRET */
  char *svc_host;                                   /* the second SAN, or NULL */
  struct tn_kube *kube;                             /* borrowed: reloads and re-registration */
  bool manage_configuration;
  double reload_interval_s;
  pthread_mutex_t cert_mu;
  char *cur_cert_pem;
  struct stat cert_st, key_st; /* CERT_FILES: what was last loaded */
  pthread_t reloader;
  bool reloader_started;
  pthread_mutex_t stop_mu;
  pthread_cond_t stop_cv; /* CLOCK_MONOTONIC */
  bool stopping;
  struct tn_series *expiry; /* tenancy_webhook_certificate_expiry_timestamp_seconds */
  /* metrics (series pointers are stable; updates are lock-free) */
  struct tn_series *eval_seconds, *review_seconds;
  struct tn_metric *reviews;
};

static char *dup_opt(const char *s) { return s ? strdup(s) : NULL; }

/* "dir/name", malloc'd; NULL when out of memory. */
static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s/%s", dir, name);
  return p;
}

void tn_admission_free(struct tn_admission *adm) {
  if (!adm)
    return;
  if (adm->reloader_started) {
    pthread_mutex_lock(&adm->stop_mu);
    adm->stopping = true;
    pthread_cond_broadcast(&adm->stop_cv);
    pthread_mutex_unlock(&adm->stop_mu);
    pthread_join(adm->reloader, NULL);
  }
  tn_httpserver_free(adm->srv);
  if (adm->wrote_files) {
    unlink(adm->cert_file);
    unlink(adm->key_file);
    if (adm->owned_dir) {
      char ca[4096];
      snprintf(ca, sizeof ca, "%s/ca.crt", adm->owned_dir);
      unlink(ca);
      rmdir(adm->owned_dir);
    }
  }
  free(adm->owned_dir);
  free(adm->bind_address);
  free(adm->host);
  free(adm->configuration_name);
  free(adm->url);
  free(adm->service_namespace);
  free(adm->service_name);
  free(adm->failure_policy);
  json_decref(adm->object_selector);
  free(adm->ca_pem);
  free(adm->cert_file);
  free(adm->key_file);
  free(adm->src_cert_file);
  free(adm->src_key_file);
  free(adm->src_ca_file);
  free(adm->secret_namespace);
  free(adm->secret_name);
  free(adm->svc_host);
  free(adm->cur_cert_pem);
  pthread_mutex_destroy(&adm->cert_mu);
  pthread_mutex_destroy(&adm->stop_mu);
  pthread_cond_destroy(&adm->stop_cv);
  free(adm);
}

/* Writes the identity into dir (ca.crt, tls.crt, tls.key 0600) and points adm at it. */
static int install_material(struct tn_admission *adm, const char *dir, const struct material *m,
                            struct tn_error *err) {
  char ca[4096];
  int rc;
  if (!(adm->cert_file = path_join(dir, "tls.crt")) || !(adm->key_file = path_join(dir, "tls.key")))
    return nomem(err);
  snprintf(ca, sizeof ca, "%s/ca.crt", dir);
  adm->wrote_files = true;
  if ((rc = write_file(adm->key_file, m->key_pem, 0600, err)) ||
      (rc = write_file(adm->cert_file, m->cert_pem, 0644, err)) ||
      (rc = write_file(ca, m->ca_pem, 0644, err)))
    return rc;
  return (adm->ca_pem = strdup(m->ca_pem)) ? 0 : nomem(err);
}

int tn_admission_new(const struct tn_admission_config *cfg, struct tn_admission **out, struct tn_error *err) {
  struct tn_admission *adm = calloc(1, sizeof *adm);
  struct material m = {0};
  char svc_host[512];
  const char *hosts[3];
  size_t n_hosts = 0;
  int rc = 0;
  *out = NULL;
  if (!adm)
    return nomem(err);
  pthread_mutex_init(&adm->cert_mu, NULL);
  pthread_mutex_init(&adm->stop_mu, NULL);
  tn_cond_init_monotonic(&adm->stop_cv);
  adm->kube = cfg->kube;
  adm->manage_configuration = cfg->manage_configuration;
  adm->reload_interval_s = cfg->reload_interval_s;
  const char *fp = cfg->failure_policy ? cfg->failure_policy : "Fail";
  if (strcmp(fp, "Fail") && strcmp(fp, "Ignore")) {
    rc = tn_error_set(err, TN_ECONFIG, "the webhook failurePolicy must be Fail or Ignore, not %s", fp);
    goto out;
  }
  if (cfg->timeout_seconds < 0 || cfg->timeout_seconds > 30) {
    rc = tn_error_set(err, TN_ECONFIG, "the webhook timeout must be 1 to 30 seconds, not %d",
                      cfg->timeout_seconds);
    goto out;
  }
  if (cfg->service_name && !cfg->service_namespace) {
    rc = tn_error_set(err, TN_ECONFIG, "the webhook service %s needs its namespace", cfg->service_name);
    goto out;
  }
  if (cfg->service_name)
    snprintf(svc_host, sizeof svc_host, "%s.%s.svc", cfg->service_name, cfg->service_namespace);
  const char *host = cfg->host ? cfg->host : cfg->service_name ? svc_host : "127.0.0.1";
  hosts[n_hosts++] = host;
  if (cfg->service_name && strcmp(host, svc_host)) {
    hosts[n_hosts++] = svc_host;
    if (!(adm->svc_host = strdup(svc_host))) {
      rc = nomem(err);
      goto out;
    }
  }
  adm->bind_address = strdup(cfg->bind_address ? cfg->bind_address : TN_ADMISSION_DEFAULT_ADDRESS);
  adm->host = strdup(host);
  adm->configuration_name =
      strdup(cfg->configuration_name ? cfg->configuration_name : TN_ADMISSION_CONFIGURATION);
  adm->url = dup_opt(cfg->url);
  adm->service_namespace = dup_opt(cfg->service_namespace);
  adm->service_name = dup_opt(cfg->service_name);
  adm->failure_policy = strdup(fp);
  adm->service_port = cfg->service_port ? cfg->service_port : 443;
  adm->timeout_seconds = cfg->timeout_seconds ? cfg->timeout_seconds : 5;
  adm->object_selector = cfg->object_selector ? json_deep_copy(cfg->object_selector) : NULL;
  adm->lookups = cfg->lookups;
  adm->hooks = cfg->hooks;
  if (!adm->bind_address || !adm->host || !adm->configuration_name || (cfg->url && !adm->url) ||
      (cfg->service_name && (!adm->service_name || !adm->service_namespace)) || !adm->failure_policy ||
      (cfg->object_selector && !adm->object_selector)) {
    rc = nomem(err);
    goto out;
  }

  /* the serving certificate */
  if (cfg->cert_file || cfg->key_file) {
    if (!cfg->cert_file || !cfg->key_file) {
      rc = tn_error_set(err, TN_ECONFIG, "the webhook needs both a certificate and a key file");
      goto out;
    }
    adm->cert_mode = CERT_FILES;
    if (!(adm->cert_file = strdup(cfg->cert_file)) || !(adm->key_file = strdup(cfg->key_file)) ||
        !(adm->src_cert_file = strdup(cfg->cert_file)) || !(adm->src_key_file = strdup(cfg->key_file)) ||
        (cfg->ca_file && !(adm->src_ca_file = strdup(cfg->ca_file)))) {
      rc = nomem(err);
      goto out;
    }
    (void)stat(cfg->cert_file, &adm->cert_st);
    (void)stat(cfg->key_file, &adm->key_st);
    if (!(adm->cur_cert_pem = read_text_file(cfg->cert_file, err))) {
      rc = err && err->code ? err->code : TN_ECONFIG;
      goto out;
    }
    if (!(adm->ca_pem = read_text_file(cfg->ca_file ? cfg->ca_file : cfg->cert_file, err))) {
      rc = err ? err->code : TN_ECONFIG;
      goto out;
    }
  } else {
    if (cfg->secret_name) {
      adm->cert_mode = CERT_SECRET;
      if (!(adm->secret_namespace =
                strdup(cfg->secret_namespace ? cfg->secret_namespace : "tenancy-system")) ||
          !(adm->secret_name = strdup(cfg->secret_name))) {
        rc = nomem(err);
        goto out;
      }
      rc = from_secret(cfg->kube, adm->secret_namespace, cfg->secret_name, hosts, n_hosts, &m, err);
    } else {
      rc = generate(hosts, n_hosts, &m, err);
    }
    if (rc)
      goto out;
    if (!(adm->cur_cert_pem = strdup(m.cert_pem))) {
      rc = nomem(err);
      goto out;
    }
    const char *dir = cfg->cert_dir;
    if (!dir) {
      const char *tmp = getenv("TMPDIR");
      if (!(adm->owned_dir = path_join(tmp && *tmp ? tmp : "/tmp", "tenancy-webhook-XXXXXX"))) {
        rc = nomem(err);
        goto out;
      }
      if (!mkdtemp(adm->owned_dir)) {
        rc = tn_error_set(err, TN_ETRANSPORT, "cannot create a directory for the webhook certificate: %s",
                          strerror(errno));
        free(adm->owned_dir);
        adm->owned_dir = NULL;
        goto out;
      }
      dir = adm->owned_dir;
    }
    if ((rc = install_material(adm, dir, &m, err)))
      goto out;
  }

  struct tn_http_tls tls = {.cert_file = adm->cert_file, .key_file = adm->key_file};
  if ((rc = tn_httpserver_new(adm->bind_address, &tls, &adm->srv, err)))
    goto out;
  if (!adm->srv) {
    rc =
        tn_error_set(err, TN_ECONFIG, "the webhook cannot be disabled with address 0: leave it unconfigured");
    goto out;
  }
  struct tn_http_limits limits = {.max_body = MAX_REVIEW_BODY,
                                  .small_body = SMALL_REVIEW,
                                  .body_budget = REVIEW_BUDGET,
                                  .body_type = "application/json",
                                  .json_object_body = true,
                                  .timeout_s = REVIEW_CONN_TIMEOUT_S};
  if ((rc = tn_httpserver_set_limits(adm->srv, &limits))) {
    rc = nomem(err);
    goto out;
  }

  if (cfg->metrics) {
    static const char *const review_labels[] = {"operation", "result", NULL};
    static const char *const caller[] = {"admission", NULL};
    adm->eval_seconds = tn_metric_with(tn_policy_evaluation_metric(cfg->metrics), caller);
    adm->reviews = tn_metrics_register(cfg->metrics, TN_COUNTER, "tn_admission_reviews_total",
                                       "Admission reviews of Tenants answered, by operation and result.",
                                       review_labels, NULL, 0);
    adm->review_seconds = tn_metric_with(
        tn_metrics_register(cfg->metrics, TN_HISTOGRAM, "tn_admission_review_seconds",
                            "Time to answer one admission review, lookups included.", NULL, NULL, 0),
        NULL);
    adm->expiry = tn_metric_with(
        tn_metrics_register(cfg->metrics, TN_GAUGE, "tenancy_webhook_certificate_expiry_timestamp_seconds",
                            "When the webhook's serving certificate expires (seconds since the epoch).", NULL,
                            NULL, 0),
        NULL);
    double not_after;
    if (tn_webhook_cert_not_after(adm->cur_cert_pem, &not_after) == 0)
      tn_series_set(adm->expiry, not_after);
  }
  *out = adm;
  adm = NULL;
out:
  material_cleanup(&m);
  tn_admission_free(adm);
  return rc;
}

static int handle_review(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  struct tn_admission *adm = ud;
  struct review_outcome o;
  struct tn_error err = {0};
  json_t *out = NULL;
  double t0 = adm->review_seconds ? now_s() : 0;
  int rc = review(req->body, req->body_len, &adm->lookups, &adm->hooks, adm->eval_seconds, &out, &o, &err);
  if (rc == 0) {
    char *text = json_dumps(out, JSON_COMPACT);
    rc = text ? tn_buf_appends(&resp->body, text) : -ENOMEM;
    free(text);
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
  } else if (rc == TN_EINVALID) {
    resp->status = 400;
    rc = tn_buf_appends(&resp->body, err.message);
  }
  json_decref(out);
  if (adm->reviews) {
    const char *labels[] = {o.operation, o.result, NULL};
    tn_series_inc(tn_metric_with(adm->reviews, labels));
  }
  if (adm->review_seconds)
    tn_series_observe(adm->review_seconds, now_s() - t0);
  if (strcmp(o.result, "denied") == 0)
    tn_log_debug("admission: %s denied", o.operation);
  return rc;
}

/* ---- certificate reload ------------------------------------------------------------------------- */

/* Serves a new identity, records it (caBundle, metric) and, when the CA changed and we manage
 * the configuration, registers the new caBundle. Reload thread only. */
static void install_reloaded(struct tn_admission *adm, const char *cert_pem, const char *key_pem,
                             const char *ca_pem, const char *source) {
  struct tn_error err = {0};
  if (tn_httpserver_set_certificate(adm->srv, cert_pem, key_pem, &err)) {
    tn_log_warn("webhook certificate from %s not reloaded (the previous one is still served): %s", source,
                err.message);
    return;
  }
  char *cert = strdup(cert_pem), *ca = strdup(ca_pem);
  if (!cert || !ca) {
    free(cert);
    free(ca);
    return;
  }
  pthread_mutex_lock(&adm->cert_mu);
  bool ca_changed = strcmp(adm->ca_pem, ca) != 0;
  free(adm->cur_cert_pem);
  adm->cur_cert_pem = cert;
  if (ca_changed) { /* an unchanged bundle keeps its pointer (tn_admission_ca_pem) */
    free(adm->ca_pem);
    adm->ca_pem = ca;
    ca = NULL;
  }
  pthread_mutex_unlock(&adm->cert_mu);
  free(ca);
  double not_after = 0;
  char when[40] = "?";
  if (tn_webhook_cert_not_after(cert_pem, &not_after) == 0) {
    tn_series_set(adm->expiry, not_after);
    tn_time_rfc3339(not_after, when, sizeof when);
  }
  tn_log_info("webhook certificate reloaded from %s; it expires at %s", source, when);
  if (ca_changed && adm->manage_configuration && adm->kube) {
    tn_error_clear(&err);
    if (tn_admission_register(adm, adm->kube, &err))
      tn_log_error("the webhook CA changed but the configuration could not be updated: %s", err.message);
    else
      tn_log_info("the webhook CA changed: caBundle of %s updated", adm->configuration_name);
  }
}

static bool same_file(const struct stat *a, const struct stat *b) {
  return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
         a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* --webhook-cert-file/--webhook-key-file: reload when either changed (a mounted Secret is
 * swapped atomically through its ..data symlink, which stat follows). */
static void reload_files(struct tn_admission *adm) {
  struct stat cs, ks;
  struct tn_error err = {0};
  char *cert = NULL, *key = NULL, *ca = NULL;
  if (stat(adm->src_cert_file, &cs) || stat(adm->src_key_file, &ks))
    return; /* mid-update or gone: keep serving, look again */
  if (same_file(&cs, &adm->cert_st) && same_file(&ks, &adm->key_st))
    return;
  if (!(cert = read_text_file(adm->src_cert_file, &err)) ||
      !(key = read_text_file(adm->src_key_file, &err)) ||
      !(ca = read_text_file(adm->src_ca_file ? adm->src_ca_file : adm->src_cert_file, &err))) {
    tn_log_warn("webhook certificate files changed but cannot be read yet: %s", err.message);
    goto out;
  }
  pthread_mutex_lock(&adm->cert_mu);
  bool same = strcmp(cert, adm->cur_cert_pem) == 0;
  pthread_mutex_unlock(&adm->cert_mu);
  if (!same)
    install_reloaded(adm, cert, key, ca, adm->src_cert_file);
  adm->cert_st = cs;
  adm->key_st = ks;
out:
  free(cert);
  if (key)
    OPENSSL_cleanse(key, strlen(key));
  free(key);
  free(ca);
}

/* The Secret: read it again (renewing the serving certificate when it is ours and expiring, as
 * at start) and serve what it holds when that changed. */
static void reload_secret(struct tn_admission *adm) {
  const char *hosts[2] = {adm->host, adm->svc_host};
  struct material m = {0};
  struct tn_error err = {0};
  if (from_secret(adm->kube, adm->secret_namespace, adm->secret_name, hosts, adm->svc_host ? 2 : 1, &m,
                  &err)) {
    tn_log_warn("webhook Secret %s/%s not reloaded (the current certificate is still served): %s",
                adm->secret_namespace, adm->secret_name, err.message);
    goto out;
  }
  pthread_mutex_lock(&adm->cert_mu);
  bool same = strcmp(m.cert_pem, adm->cur_cert_pem) == 0;
  pthread_mutex_unlock(&adm->cert_mu);
  if (!same) {
    char source[600];
    snprintf(source, sizeof source, "Secret %s/%s", adm->secret_namespace, adm->secret_name);
    install_reloaded(adm, m.cert_pem, m.key_pem, m.ca_pem, source);
  }
out:
  material_cleanup(&m);
}

static void *reload_main(void *arg) {
  struct tn_admission *adm = arg;
  pthread_mutex_lock(&adm->stop_mu);
  while (!adm->stopping) {
    struct timespec until = tn_mono_timespec(tn_mono_now() + adm->reload_interval_s);
    pthread_cond_timedwait(&adm->stop_cv, &adm->stop_mu, &until);
    if (adm->stopping)
      break;
    pthread_mutex_unlock(&adm->stop_mu);
    if (adm->cert_mode == CERT_FILES)
      reload_files(adm);
    else
      reload_secret(adm);
    pthread_mutex_lock(&adm->stop_mu);
  }
  pthread_mutex_unlock(&adm->stop_mu);
  return NULL;
}

int tn_admission_start(struct tn_admission *adm, struct tn_error *err) {
  int rc = tn_httpserver_route(adm->srv, "POST", TN_ADMISSION_PATH, handle_review, adm);
  if (rc)
    return tn_error_set(err, rc, "cannot route %s: %s", TN_ADMISSION_PATH, tn_strerror(rc));
  if ((rc = tn_httpserver_start(adm->srv, err)))
    return rc;
  tn_log_info("admission webhook serving https://%s:%d%s", adm->host, tn_httpserver_port(adm->srv),
              TN_ADMISSION_PATH);
  if (adm->cert_mode != CERT_GENERATED && adm->reload_interval_s >= 0) {
    if (adm->reload_interval_s == 0)
      adm->reload_interval_s = adm->cert_mode == CERT_FILES ? 10 : 60;
    if ((rc = pthread_create(&adm->reloader, NULL, reload_main, adm)))
      return tn_error_set(err, -rc, "cannot start the webhook certificate reloader: %s", strerror(rc));
    adm->reloader_started = true;
  }
  return 0;
}

int tn_admission_port(const struct tn_admission *adm) { return adm ? tn_httpserver_port(adm->srv) : 0; }

const char *tn_admission_ca_pem(const struct tn_admission *adm) { return adm->ca_pem; }

json_t *tn_admission_configuration(const struct tn_admission *adm) {
  struct tn_admission *mut = (struct tn_admission *)adm; /* the lock only */
  pthread_mutex_lock(&mut->cert_mu);
  char *bundle = b64_encode(adm->ca_pem);
  pthread_mutex_unlock(&mut->cert_mu);
  json_t *client = NULL, *cfg = NULL, *hook;
  if (!bundle)
    return NULL;
  if (adm->service_name && !adm->url) {
    client = json_pack("{s:{s:s, s:s, s:s, s:i}, s:s}", "service", "namespace", adm->service_namespace,
                       "name", adm->service_name, "path", TN_ADMISSION_PATH, "port", adm->service_port,
                       "caBundle", bundle);
  } else {
    char url[1024];
    const bool v6 = strchr(adm->host, ':') != NULL;
    if (adm->url)
      snprintf(url, sizeof url, "%s", adm->url);
    else
      snprintf(url, sizeof url, "https://%s%s%s:%d%s", v6 ? "[" : "", adm->host, v6 ? "]" : "",
               tn_admission_port(adm), TN_ADMISSION_PATH);
    client = json_pack("{s:s, s:s}", "url", url, "caBundle", bundle);
  }
  free(bundle);
  if (!client)
    return NULL;
  cfg = json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}}, s:[{s:s, s:[s], s:s, s:i, s:s, s:s, s:[{s:[s], s:[s], "
                  "s:[s, s, s], s:[s, s], s:s}], s:o}]}",
                  "apiVersion", "admissionregistration.k8s.io/v1", "kind", "ValidatingWebhookConfiguration",
                  "metadata", "name", adm->configuration_name, "labels", "app.kubernetes.io/name",
                  "tenancy-operator", "app.kubernetes.io/managed-by", "tenancy-operator", "webhooks", "name",
                  TN_ADMISSION_WEBHOOK, "admissionReviewVersions", "v1", "sideEffects", "None",
                  "timeoutSeconds", adm->timeout_seconds, "failurePolicy", adm->failure_policy, "matchPolicy",
                  "Equivalent", "rules", "apiGroups", TN_API_GROUP, "apiVersions", "v1alpha1", "operations",
                  "CREATE", "UPDATE", "DELETE", "resources", "tenants", "tenantmigrations", "scope",
                  "Cluster", "clientConfig", client);
  hook = cfg ? json_array_get(json_object_get(cfg, "webhooks"), 0) : NULL;
  if (hook && adm->object_selector && json_object_set(hook, "objectSelector", adm->object_selector)) {
    json_decref(cfg);
    return NULL;
  }
  return cfg;
}

int tn_admission_register(struct tn_admission *adm, struct tn_kube *kube, struct tn_error *err) {
  json_t *cfg = tn_admission_configuration(adm);
  if (!cfg)
    return nomem(err);
  int rc = tn_kube_apply(kube, &gvr_webhooks, NULL, cfg, TN_FIELD_MANAGER, true, NULL, NULL, err);
  json_decref(cfg);
  if (rc)
    tn_error_prefix(err, "registering the ValidatingWebhookConfiguration %s", adm->configuration_name);
  return rc;
}

int tn_admission_unregister(struct tn_admission *adm, struct tn_kube *kube, struct tn_error *err) {
  int rc = tn_kube_delete(kube, &gvr_webhooks, NULL, adm->configuration_name, NULL, err);
  if (rc == TN_ENOTFOUND)
    return 0;
  if (rc)
    tn_error_prefix(err, "deleting the ValidatingWebhookConfiguration %s", adm->configuration_name);
  return rc;
}

struct tn_metric *tn_policy_evaluation_metric(struct tn_metrics *m) {
  static const double buckets[] = {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05};
  static const char *const labels[] = {"caller", NULL};
  if (!m)
    return NULL;
  return tn_metrics_register(
      m, TN_HISTOGRAM, "tn_policy_evaluation_seconds",
      "Time to evaluate every TenancyPolicy for one tenant, by caller (admission, controller).", labels,
      buckets, sizeof buckets / sizeof buckets[0]);
}
