/* tenant_breakglass.c - the break-glass step of the tenant reconcile (see tenant_breakglass.h).
 *
 * Reads come first and cost nothing when nothing changes: the plan is made from the cache the
 * caller passes; only when it asks for writes are the tenant's break-glass RoleBindings listed
 * from the API server (by label) and the plan made again from that, so every write is decided on
 * the truth. Revocations are written before grants. */
#include "converge/tenant_breakglass.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "converge/owned_apply.h"
#include "tenancy/desired.h"
#include "tenancy/tenant.h"

static const struct tn_gvr gvr_rolebindings = {"rbac.authorization.k8s.io", "v1", "rolebindings", true};

void tn_breakglass_result_cleanup(struct tn_breakglass_result *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->n_granted; i++)
    tn_breakglass_report_cleanup(&r->granted[i]);
  for (size_t i = 0; i < r->n_revoked; i++)
    tn_breakglass_report_cleanup(&r->revoked[i]);
  for (size_t i = 0; i < r->n_denied; i++)
    tn_breakglass_report_cleanup(&r->denied[i]);
  free(r->granted);
  free(r->revoked);
  free(r->denied);
  json_decref(r->status);
  memset(r, 0, sizeof *r);
}

static void problem(struct tn_breakglass_result *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void problem(struct tn_breakglass_result *out, const char *fmt, ...) {
  if (out->problem[0])
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->problem, sizeof out->problem, fmt, ap);
  va_end(ap);
}

static char *dup(const char *s) { return strdup(s ? s : ""); }

/* Moves *r to the end of the list (r is zeroed). Returns 0 or -ENOMEM (r untouched). */
static int push(struct tn_breakglass_report **list, size_t *n, struct tn_breakglass_report *r) {
  struct tn_breakglass_report *v = realloc(*list, (*n + 1) * sizeof *v);
  if (!v)
    return -ENOMEM;
  *list = v;
  v[(*n)++] = *r;
  memset(r, 0, sizeof *r);
  return 0;
}

static int add_namespace(struct tn_breakglass_report *r, const char *ns) {
  char **v = realloc(r->namespaces, (r->n_namespaces + 1) * sizeof *v);
  if (!v)
    return -ENOMEM;
  r->namespaces = v;
  if (!(v[r->n_namespaces] = strdup(ns)))
    return -ENOMEM;
  r->n_namespaces++;
  return 0;
}

static char *correlation_id(const char *id, double first_seen) {
  char buf[128];
  if (first_seen > 0)
    snprintf(buf, sizeof buf, "bg-%s-%lld", id, (long long)first_seen);
  else
    snprintf(buf, sizeof buf, "bg-%s", id);
  return strdup(buf);
}

static int report_of_decision(const struct tn_breakglass_decision *d, struct tn_breakglass_report *r) {
  const struct tn_breakglass_request *q = d->req;
  memset(r, 0, sizeof *r);
  if (!(r->id = dup(q->id)) || !(r->subject_kind = dup(q->group ? "Group" : "User")) ||
      !(r->subject = dup(q->subject)) || !(r->role = dup(q->role)) || !(r->expires_at = dup(q->expires_at)) ||
      !(r->reason = dup(q->reason)) || !(r->correlation_id = correlation_id(q->id, d->first_seen)))
    return -ENOMEM;
  return 0;
}

static int report_of_delete(const struct tn_breakglass_change *c, const struct tn_breakglass_plan *p,
                            struct tn_breakglass_report *r) {
  memset(r, 0, sizeof *r);
  const struct tn_breakglass_decision *d = c->decision != (size_t)-1 ? &p->decisions[c->decision] : NULL;
  if (!(r->id = dup(c->id)) || !(r->subject_kind = dup(c->subject_kind)) || !(r->subject = dup(c->subject)) ||
      !(r->role = dup(c->role)) || !(r->expires_at = dup(c->expires_at)) ||
      !(r->why = dup(tn_breakglass_why_name(c->why))) || (d && !(r->reason = dup(d->req->reason))) ||
      !(r->correlation_id = correlation_id(c->id, c->first_seen)))
    return -ENOMEM;
  return 0;
}

static int audit(const struct tn_breakglass_step *in, const char *action, const char *outcome,
                 const struct tn_breakglass_report *r, const char *error, struct tn_error *err) {
  if (!in->audit)
    return 0;
  struct tn_breakglass_event ev = {.action = action, .outcome = outcome, .report = r, .error = error};
  return in->audit(in->audit_ud, &ev, err);
}

/* Every break-glass RoleBinding of the tenant, from the API server (all namespaces, by label). */
static int list_live(struct tn_kube *kube, const char *tenant, json_t **out, struct tn_error *err) {
  char sel[160], *cont = NULL;
  snprintf(sel, sizeof sel, "%s=%s,%s", TN_LABEL_TENANT, tenant, TN_LABEL_BREAK_GLASS);
  json_t *items = json_array();
  int rc = 0;
  if (!items)
    return tn_error_set(err, -ENOMEM, "out of memory");
  do {
    struct tn_list_opts o = {.label_selector = sel, .limit = 500, .continue_token = cont};
    json_t *page = NULL;
    if ((rc = tn_kube_list(kube, &gvr_rolebindings, NULL, &o, &page, err))) {
      tn_error_prefix(err, "listing the break-glass RoleBindings of tenant %s", tenant);
      break;
    }
    json_array_extend(items, json_object_get(page, "items"));
    const char *next = json_string_value(json_object_get(json_object_get(page, "metadata"), "continue"));
    free(cont);
    cont = next && *next ? strdup(next) : NULL;
    json_decref(page);
  } while (cont);
  free(cont);
  if (rc) {
    json_decref(items);
    return rc;
  }
  *out = items;
  return 0;
}

/* Creates (or updates) one binding, with server-side apply as field manager tenancy-operator for
 * the update (converge/owned_apply.h: labels and annotations other tools added are kept). Returns
 * 0, TN_EEXISTS when the name is someone else's, or another error; *writes counts requests that
 * may have written. */
static int write_binding(struct tn_kube *kube, const struct tn_breakglass_plan *p,
                         const struct tn_breakglass_change *c, int *writes, struct tn_error *err) {
  (*writes)++;
  if (c->op == TN_BREAKGLASS_UPDATE)
    return tn_owned_apply(kube, &gvr_rolebindings, c->namespace, c->body, c->resource_version, err);
  int rc = tn_owned_create(kube, &gvr_rolebindings, c->namespace, c->body, err);
  if (rc != TN_EEXISTS)
    return rc;
  /* Taken: ours (a list that raced with another writer) is brought to the desired state, anyone
   * else's is left. */
  json_t *have = NULL;
  if ((rc = tn_kube_get(kube, &gvr_rolebindings, c->namespace, c->name, &have, err)))
    return rc;
  if (!tn_owned_by_tenant(have, p->tenant_uid)) {
    json_decref(have);
    return tn_error_set(
        err, TN_EEXISTS,
        "RoleBinding %s/%s exists and is not the operator's: delete or rename it so break-glass "
        "request %s can be bound",
        c->namespace, c->name, c->id);
  }
  (*writes)++;
  rc = tn_owned_apply(
      kube, &gvr_rolebindings, c->namespace, c->body,
      json_string_value(json_object_get(json_object_get(have, "metadata"), "resourceVersion")), err);
  json_decref(have);
  return rc;
}

/* Parses every policy object of arr. */
static int parse_policies(const json_t *arr, struct tn_breakglass_policy **out, size_t *n) {
  size_t len = json_array_size(arr);
  *n = 0;
  *out = calloc(len ? len : 1, sizeof **out);
  if (!*out)
    return -ENOMEM;
  for (size_t i = 0; i < len; i++) {
    if (tn_breakglass_policy_parse(json_array_get(arr, i), &(*out)[*n]))
      return -ENOMEM;
    (*n)++;
  }
  return 0;
}

/* The revocations: one group per (request id, why), access removed before anything is granted. */
static int revoke(const struct tn_breakglass_step *in, struct tn_breakglass_plan *p,
                  struct tn_breakglass_result *out, struct tn_error *err) {
  int first_rc = 0;
  bool *done = calloc(p->n_changes ? p->n_changes : 1, sizeof *done);
  if (!done)
    return tn_error_set(err, -ENOMEM, "out of memory");
  for (size_t i = 0; i < p->n_changes; i++) {
    const struct tn_breakglass_change *c = &p->changes[i];
    if (c->op != TN_BREAKGLASS_DELETE || done[i])
      continue;
    struct tn_breakglass_report r;
    if (report_of_delete(c, p, &r)) {
      tn_breakglass_report_cleanup(&r);
      goto nomem;
    }
    for (size_t k = i; k < p->n_changes; k++) {
      const struct tn_breakglass_change *o = &p->changes[k];
      if (o->op == TN_BREAKGLASS_DELETE && !done[k] && o->why == c->why && strcmp(o->id, c->id) == 0 &&
          add_namespace(&r, o->namespace)) {
        tn_breakglass_report_cleanup(&r);
        goto nomem;
      }
    }
    struct tn_error aerr = {0};
    if (audit(in, TN_BREAKGLASS_ACTION_REVOKE, TN_AUDIT_STARTED, &r, NULL, &aerr))
      problem(out, "break-glass %s: revoked without an audit row first: %s", c->id, aerr.message);
    struct tn_error derr = {0};
    int group_rc = 0;
    for (size_t k = i; k < p->n_changes; k++) {
      const struct tn_breakglass_change *o = &p->changes[k];
      if (o->op != TN_BREAKGLASS_DELETE || done[k] || o->why != c->why || strcmp(o->id, c->id) != 0)
        continue;
      done[k] = true;
      struct tn_delete_opts dopts = {.precondition_uid = o->uid};
      struct tn_error e = {0};
      out->writes++;
      int rc = tn_kube_delete(in->kube, &gvr_rolebindings, o->namespace, o->name, &dopts, &e);
      if (rc && rc != TN_ENOTFOUND && !group_rc) {
        group_rc = rc;
        derr = e;
        tn_error_prefix(&derr, "deleting RoleBinding %s/%s", o->namespace, o->name);
      }
    }
    if (group_rc) {
      audit(in, TN_BREAKGLASS_ACTION_REVOKE, TN_AUDIT_FAILED, &r, derr.message, &aerr);
      problem(out, "break-glass %s: %s", c->id, derr.message);
      out->retry = true;
      if (!first_rc) {
        first_rc = group_rc;
        if (err)
          *err = derr;
      }
      tn_breakglass_report_cleanup(&r);
      continue;
    }
    audit(in, TN_BREAKGLASS_ACTION_REVOKE, TN_AUDIT_SUCCEEDED, &r, NULL, &aerr);
    if (push(&out->revoked, &out->n_revoked, &r)) {
      tn_breakglass_report_cleanup(&r);
      goto nomem;
    }
  }
  free(done);
  return first_rc;
nomem:
  free(done);
  return tn_error_set(err, -ENOMEM, "out of memory");
}

/* The grants: per request with creates or updates, audited before the first write. */
static int grant(const struct tn_breakglass_step *in, struct tn_breakglass_plan *p,
                 struct tn_breakglass_result *out, struct tn_error *err) {
  int first_rc = 0;
  for (size_t di = 0; di < p->n_requests; di++) {
    struct tn_breakglass_decision *d = &p->decisions[di];
    size_t n_writes = 0;
    for (size_t i = 0; i < p->n_changes; i++)
      n_writes += p->changes[i].op != TN_BREAKGLASS_DELETE && p->changes[i].decision == di;
    if (!n_writes)
      continue;
    struct tn_breakglass_report r;
    if (report_of_decision(d, &r)) {
      tn_breakglass_report_cleanup(&r);
      goto nomem;
    }
    for (size_t i = 0; i < p->n_changes; i++)
      if (p->changes[i].op != TN_BREAKGLASS_DELETE && p->changes[i].decision == di &&
          add_namespace(&r, p->changes[i].namespace)) {
        tn_breakglass_report_cleanup(&r);
        goto nomem;
      }
    struct tn_error aerr = {0};
    int rc = audit(in, TN_BREAKGLASS_ACTION_GRANT, TN_AUDIT_STARTED, &r, NULL, &aerr);
    if (rc) {
      d->state = TN_BREAKGLASS_PENDING;
      snprintf(d->message, sizeof d->message,
               "allowed by TenancyPolicy %s, not bound yet: the grant is recorded in the audit trail first, "
               "which failed: %s",
               d->policy, aerr.message);
      problem(out, "break-glass %s: not granted until it can be audited: %s", d->req->id, aerr.message);
      out->retry = true;
      if (!first_rc) {
        first_rc = rc;
        if (err)
          *err = aerr;
      }
      tn_breakglass_report_cleanup(&r);
      continue;
    }
    struct tn_error werr = {0};
    int wrc = 0;
    for (size_t i = 0; i < p->n_changes; i++) {
      const struct tn_breakglass_change *c = &p->changes[i];
      if (c->op == TN_BREAKGLASS_DELETE || c->decision != di)
        continue;
      struct tn_error e = {0};
      int one = write_binding(in->kube, p, c, &out->writes, &e);
      if (one && !wrc) {
        wrc = one;
        werr = e;
        if (one != TN_EEXISTS)
          tn_error_prefix(&werr, "%s RoleBinding %s/%s",
                          c->op == TN_BREAKGLASS_CREATE ? "creating" : "updating", c->namespace, c->name);
      }
    }
    if (wrc) {
      audit(in, TN_BREAKGLASS_ACTION_GRANT, TN_AUDIT_FAILED, &r, werr.message, &aerr);
      d->state = TN_BREAKGLASS_PENDING;
      snprintf(d->message, sizeof d->message, "allowed by TenancyPolicy %s, not bound yet: %s", d->policy,
               werr.message);
      problem(out, "break-glass %s: %s", d->req->id, werr.message);
      if (wrc != TN_EEXISTS)
        out->retry = true;
      if (!first_rc) {
        first_rc = wrc;
        if (err)
          *err = werr;
      }
      tn_breakglass_report_cleanup(&r);
      continue;
    }
    audit(in, TN_BREAKGLASS_ACTION_GRANT, TN_AUDIT_SUCCEEDED, &r, NULL, &aerr);
    if (push(&out->granted, &out->n_granted, &r)) {
      tn_breakglass_report_cleanup(&r);
      goto nomem;
    }
  }
  return first_rc;
nomem:
  return tn_error_set(err, -ENOMEM, "out of memory");
}

/* The refusals, once per denial message. */
static int refuse(const struct tn_breakglass_step *in, struct tn_breakglass_plan *p,
                  struct tn_breakglass_result *out, struct tn_error *err) {
  int first_rc = 0;
  for (size_t di = 0; di < p->n_requests; di++) {
    struct tn_breakglass_decision *d = &p->decisions[di];
    if (!d->newly_denied)
      continue;
    struct tn_breakglass_report r;
    if (report_of_decision(d, &r) || !(r.why = strdup(d->message))) {
      tn_breakglass_report_cleanup(&r);
      return tn_error_set(err, -ENOMEM, "out of memory");
    }
    struct tn_error aerr = {0};
    int rc = audit(in, TN_BREAKGLASS_ACTION_GRANT, TN_AUDIT_REFUSED, &r, NULL, &aerr);
    if (rc) {
      /* Not Denied in the status yet, so that the refusal is recorded on the next attempt. */
      char msg[sizeof d->message];
      snprintf(msg, sizeof msg, "%s", d->message);
      d->state = TN_BREAKGLASS_PENDING;
      snprintf(d->message, sizeof d->message,
               "refused (recording the refusal in the audit trail failed: %s): %s", aerr.message, msg);
      out->retry = true;
      problem(out, "break-glass %s: recording the refusal: %s", d->req->id, aerr.message);
      if (!first_rc) {
        first_rc = rc;
        if (err)
          *err = aerr;
      }
      tn_breakglass_report_cleanup(&r);
      continue;
    }
    if (push(&out->denied, &out->n_denied, &r)) {
      tn_breakglass_report_cleanup(&r);
      return tn_error_set(err, -ENOMEM, "out of memory");
    }
  }
  return first_rc;
}

int tn_tenant_breakglass_reconcile(const struct tn_breakglass_step *in, struct tn_breakglass_result *out,
                                   struct tn_error *err) {
  struct tn_breakglass_policy *pols = NULL;
  size_t n_pols = 0;
  struct tn_breakglass_plan plan = {0};
  json_t *live = NULL;
  int rc = 0;
  memset(out, 0, sizeof *out);
  if ((rc = parse_policies(in->policies, &pols, &n_pols))) {
    tn_error_set(err, rc, "out of memory");
    goto out;
  }
  const char *tenant = json_string_value(json_object_get(json_object_get(in->tenant, "metadata"), "name"));
  struct tn_breakglass_input pin = {.tenant = in->tenant,
                                    .environments = in->environments,
                                    .n_environments = in->n_environments,
                                    .policies = pols,
                                    .n_policies = n_pols,
                                    .observed = in->observed,
                                    .now = in->now};
  if (!in->observed) {
    if ((rc = list_live(in->kube, tenant ? tenant : "", &live, err)))
      goto failed;
    pin.observed = live;
  }
  if ((rc = tn_breakglass_plan(&pin, &plan, err)))
    goto failed;
  if (plan.n_changes > 0 && !live) {
    /* The cache asks for writes: decide them on what the API server holds. */
    if ((rc = list_live(in->kube, plan.tenant, &live, err)))
      goto failed;
    pin.observed = live;
    tn_breakglass_plan_cleanup(&plan);
    if ((rc = tn_breakglass_plan(&pin, &plan, err)))
      goto failed;
  }

  struct tn_error e1 = {0}, e2 = {0}, e3 = {0};
  int r1 = revoke(in, &plan, out, &e1);
  int r2 = grant(in, &plan, out, &e2);
  int r3 = refuse(in, &plan, out, &e3);
  rc = r1 ? r1 : r2 ? r2 : r3;
  if (rc && err)
    *err = r1 ? e1 : r2 ? e2 : e3;
  if (rc == -ENOMEM)
    goto failed;
  if (!(out->status = tn_breakglass_status(&plan))) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto failed;
  }
  if (plan.next_expiry > 0) {
    double after = plan.next_expiry - in->now;
    out->requeue_after_s = after > 0.1 ? after : 0.1;
  }
  goto out;
failed:
  out->retry =
      out->retry || rc == -ENOMEM || tn_error_is_transient(rc) || rc == TN_EFORBIDDEN || rc == TN_EAPI;
  problem(out, "%s", err && err->message[0] ? err->message : tn_strerror(rc));
out:
  for (size_t i = 0; i < n_pols; i++)
    tn_breakglass_policy_cleanup(&pols[i]);
  free(pols);
  tn_breakglass_plan_cleanup(&plan);
  json_decref(live);
  return rc;
}
