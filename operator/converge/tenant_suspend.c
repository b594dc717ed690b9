/* tenant_suspend.c - workloads held at zero while Suspended/Archived, the purge's audit row
 * (see tenant_suspend.h). */
#include "converge/tenant_suspend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "kube/client.h"
#include "runtime/log.h"
#include "tenancy/desired.h"
#include "util/clock.h"
#include "util/uuid.h"

static const struct tn_gvr gvr_deployments = {"apps", "v1", "deployments", true};
static const struct tn_gvr gvr_statefulsets = {"apps", "v1", "statefulsets", true};

bool tn_tenant_workloads_needed(const json_t *tenant_obj, enum tn_state next,
                                const struct tn_lifecycle_rules *rules,
                                const struct tn_archive_schedule *archive, bool *scale_to_zero) {
  *scale_to_zero = (next == TN_STATE_SUSPENDED && rules->workloads == TN_SUSPEND_WORKLOADS_SCALE_TO_ZERO) ||
                   (next == TN_STATE_ARCHIVED && archive->archived && !archive->due);
  json_int_t held =
      json_integer_value(json_object_get(json_object_get(tenant_obj, "status"), TN_STATUS_SCALED_WORKLOADS));
  /* Archived and purged: the namespaces (and the workloads) are gone, nothing to give back. */
  if (next == TN_STATE_ARCHIVED && archive->due)
    return false;
  return *scale_to_zero || held > 0;
}

/* The replicas recorded in the annotation: >= 0, or -1 when absent or not a number. */
static long long held_replicas(json_t *obj) {
  const char *v = json_string_value(json_object_get(
      json_object_get(json_object_get(obj, "metadata"), "annotations"), TN_ANNOTATION_SUSPENDED_REPLICAS));
  if (!v || !*v || strlen(v) > 9)
    return -1;
  long long n = 0;
  for (const char *p = v; *p; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    n = n * 10 + (*p - '0');
  }
  return n;
}

static void note(struct tn_workloads_result *out, const char *what, const char *ns, const char *name,
                 const char *msg) {
  if (!out->problem[0])
    snprintf(out->problem, sizeof out->problem, "%s %s/%s: %s", what, ns, name, msg);
}

static void one(struct tn_kube *kube, const struct tn_gvr *gvr, const char *kind, const char *ns, json_t *obj,
                bool scale_to_zero, struct tn_workloads_result *out) {
  json_t *meta = json_object_get(obj, "metadata");
  const char *name = json_string_value(json_object_get(meta, "name"));
  const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
  json_t *rep = json_object_get(json_object_get(obj, "spec"), "replicas");
  long long replicas = json_is_integer(rep) ? (long long)json_integer_value(rep) : 1; /* the API default */
  long long held = held_replicas(obj);
  json_t *patch = NULL;
  if (!name || !rv)
    return;
  if (scale_to_zero) {
    if (held >= 0) {
      out->held++;
      if (replicas == 0)
        return; /* already held */
      /* Held, but scaled up since (by a cluster administrator: the tenant's groups cannot
       * write while Suspended or Archived): back to zero, the recorded count is given back. */
      patch = json_pack("{s:{s:s}, s:{s:i}}", "metadata", "resourceVersion", rv, "spec", "replicas", 0);
    } else {
      if (replicas == 0)
        return; /* nothing running: nothing to hold or give back */
      char n[24];
      snprintf(n, sizeof n, "%lld", replicas);
      patch = json_pack("{s:{s:s, s:{s:s}}, s:{s:i}}", "metadata", "resourceVersion", rv, "annotations",
                        TN_ANNOTATION_SUSPENDED_REPLICAS, n, "spec", "replicas", 0);
      out->held++;
    }
  } else {
    if (held < 0)
      return;
    /* Scaled by someone else while held: theirs stands; only the annotation goes. */
    patch = replicas == 0
                ? json_pack("{s:{s:s, s:{s:n}}, s:{s:I}}", "metadata", "resourceVersion", rv, "annotations",
                            TN_ANNOTATION_SUSPENDED_REPLICAS, "spec", "replicas", (json_int_t)held)
                : json_pack("{s:{s:s, s:{s:n}}}", "metadata", "resourceVersion", rv, "annotations",
                            TN_ANNOTATION_SUSPENDED_REPLICAS);
  }
  if (!patch) {
    out->retry = true;
    return;
  }
  struct tn_error err = {0};
  int rc = tn_kube_merge_patch(kube, gvr, ns, name, patch, NULL, NULL, &err);
  json_decref(patch);
  out->writes++;
  if (rc) {
    out->retry = true;
    if (!scale_to_zero)
      out->held++; /* still held: the status keeps saying so until it is given back */
    note(out, kind, ns, name, err.message);
    return;
  }
  if (scale_to_zero)
    out->scaled++;
  else
    out->resumed++;
}

void tn_tenant_workloads_reconcile(struct tn_kube *kube, const struct tn_tenant *t, bool scale_to_zero,
                                   struct tn_workloads_result *out) {
  memset(out, 0, sizeof *out);
  const struct {
    const struct tn_gvr *gvr;
    const char *kind;
  } kinds[] = {{&gvr_deployments, "Deployment"}, {&gvr_statefulsets, "StatefulSet"}};
  for (size_t i = 0; i < t->n_environments; i++) {
    char ns[TN_NAMESPACE_NAME_MAX + 1];
    struct tn_error err = {0};
    if (tn_namespace_name(t->name, t->environments[i], ns, sizeof ns, &err))
      continue;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
      json_t *list = NULL;
      int rc = tn_kube_list(kube, kinds[k].gvr, ns, NULL, &list, &err);
      if (rc == TN_ENOTFOUND) {
        json_decref(list);
        continue; /* the namespace is gone */
      }
      if (rc) {
        out->retry = true;
        note(out, "listing", ns, kinds[k].gvr->resource, err.message);
        json_decref(list);
        continue;
      }
      size_t j;
      json_t *obj;
      json_array_foreach(json_object_get(list, "items"), j, obj)
          one(kube, kinds[k].gvr, kinds[k].kind, ns, obj, scale_to_zero, out);
      json_decref(list);
    }
  }
}

int tn_archive_purge_audit(struct tn_reconciler *r, const json_t *tenant_obj, const char *request_id,
                           const struct tn_archive_schedule *s, struct tn_error *err) {
  if (!r->audit)
    return 0;
  const json_t *meta = json_object_get(tenant_obj, "metadata");
  const char *name = json_string_value(json_object_get(meta, "name"));
  const char *uid = json_string_value(json_object_get(meta, "uid"));
  long long gen = (long long)json_integer_value(json_object_get(meta, "generation"));
  char target[128], after[32], details[256], cid[37];
  snprintf(target, sizeof target, "tenant/%s", name ? name : "");
  tn_time_rfc3339(s->purge_after, after, sizeof after);
  snprintf(details, sizeof details, "{\"retentionDays\":%d,\"purgeAfter\":\"%s\"}", s->retention_days, after);
  const char *parts[] = {"tenancy.dev/purge", uid ? uid : "", after};
  tn_uuid_from_parts(parts, 3, cid);
  struct tn_audit_event ev = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                              .action = "purge",
                              .target = target,
                              .request_id = request_id,
                              .correlation_id = cid,
                              .outcome = TN_AUDIT_SUCCEEDED,
                              .generation_before = gen,
                              .generation_after = gen,
                              .details = details};
  return tn_audit_append(r->audit, &ev, NULL, err);
}
