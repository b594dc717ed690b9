/* tenant_changes.c - placement.decided and quota.changed (see tenant_changes.h). */
#include "converge/tenant_changes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/outbox.h"
#include "tenancy/cloudevents.h"
#include "util/uuid.h"

/* The data of the tenant's last placement.decided and quota.changed events since its latest
 * created event (a tenant deleted and created again under the same name starts afresh). */
static int last_recorded(const struct tn_tenant_changes *c, const char *name, json_t **placement,
                         json_t **quotas, struct tn_error *err) {
  char tp[96], tq[96], tc[96];
  tn_ce_type(TN_CE_PLACEMENT_DECIDED, tp, sizeof tp);
  tn_ce_type(TN_CE_QUOTA_CHANGED, tq, sizeof tq);
  tn_ce_type(TN_CE_CREATED, tc, sizeof tc);
  const char *params[] = {name, tp, tq, tc};
  json_t *rows = NULL;
  int rc = tn_audit_query(
      c->audit,
      "SELECT t.type, (SELECT o.event->'data' FROM @S@.outbox o WHERE o.tenant = $1 AND o.type = t.type "
      "AND o.seq > b.s ORDER BY o.tenant_seq DESC LIMIT 1)::text AS data "
      "FROM (VALUES ($2::text), ($3::text)) AS t(type), "
      "(SELECT coalesce(max(seq), 0) AS s FROM @S@.outbox WHERE tenant = $1 AND type = $4) AS b",
      4, params, &rows, err);
  if (rc)
    return rc;
  size_t i;
  json_t *r;
  json_array_foreach(rows, i, r) {
    const char *type = json_string_value(json_object_get(r, "type"));
    const char *data = json_string_value(json_object_get(r, "data"));
    json_t *d = data ? json_loads(data, 0, NULL) : NULL;
    if (type && strcmp(type, tp) == 0 && !*placement)
      *placement = d;
    else if (type && strcmp(type, tq) == 0 && !*quotas)
      *quotas = d;
    else
      json_decref(d);
  }
  json_decref(rows);
  return 0;
}

static int append(const struct tn_tenant_changes *c, const char *name, const char *event, const char *action,
                  json_t *data, struct tn_error *err) {
  char target[300], cid[37];
  snprintf(target, sizeof target, "tenant/%s", name);
  const json_t *md = json_object_get(c->tenant, "metadata");
  const char *uid = json_string_value(json_object_get(md, "uid"));
  /* One correlation id per change: the tenant, what, the new value and when. */
  char *value = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
  if (!value)
    return tn_error_set(err, -ENOMEM, "out of memory");
  const char *parts[] = {"tenancy.dev/change", uid ? uid : name, event, value, c->now ? c->now : ""};
  tn_uuid_from_parts(parts, sizeof parts / sizeof parts[0], cid);
  struct tn_outbox_event ob = {0};
  int rc = tn_outbox_event_init(&ob, c->cluster, c->tenant, event, cid, c->actor, data, err);
  if (rc == 0) {
    long long gen = json_integer_value(json_object_get(md, "generation"));
    struct tn_audit_event ev = {.actor = c->actor,
                                .action = action,
                                .target = target,
                                .request_id = c->request_id,
                                .correlation_id = cid,
                                .outcome = TN_AUDIT_SUCCEEDED,
                                .generation_before = gen,
                                .generation_after = gen,
                                .details = value,
                                .outbox = &ob};
    rc = tn_audit_append(c->audit, &ev, NULL, err);
  }
  tn_outbox_event_cleanup(&ob);
  free(value);
  return rc;
}

int tn_tenant_record_changes(const struct tn_tenant_changes *c, int *appended, struct tn_error *err) {
  if (appended)
    *appended = 0;
  const char *name = json_string_value(json_object_get(json_object_get(c->tenant, "metadata"), "name"));
  if (!c->audit || !name || (!c->region && !json_is_object(c->quotas)))
    return 0;
  json_t *lp = NULL, *lq = NULL;
  int rc = last_recorded(c, name, &lp, &lq, err);
  if (rc)
    return rc;
  if (c->region && c->isolation) {
    const char *was = json_string_value(json_object_get(lp, "region"));
    const char *was_iso = json_string_value(json_object_get(lp, "isolation"));
    if (!was || strcmp(was, c->region) != 0 || !was_iso || strcmp(was_iso, c->isolation) != 0) {
      json_t *data = json_pack("{s:s, s:s, s:o}", "region", c->region, "isolation", c->isolation,
                               "previousRegion", was ? json_string(was) : json_null());
      rc = data ? append(c, name, TN_CE_PLACEMENT_DECIDED, TN_AUDIT_ACTION_PLACEMENT_DECIDE, data, err)
                : tn_error_set(err, -ENOMEM, "out of memory");
      json_decref(data);
      if (rc == 0 && appended)
        (*appended)++;
    }
  }
  if (rc == 0 && json_is_object(c->quotas)) {
    json_t *was = json_object_get(lq, "quotas");
    if (!was || !json_equal(was, (json_t *)c->quotas)) {
      json_t *data =
          json_pack("{s:O, s:O}", "quotas", (json_t *)c->quotas, "previous", was ? was : json_null());
      rc = data ? append(c, name, TN_CE_QUOTA_CHANGED, TN_AUDIT_ACTION_QUOTA_CHANGE, data, err)
                : tn_error_set(err, -ENOMEM, "out of memory");
      json_decref(data);
      if (rc == 0 && appended)
        (*appended)++;
    }
  }
  json_decref(lp);
  json_decref(lq);
  return rc;
}
