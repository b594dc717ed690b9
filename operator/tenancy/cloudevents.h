/* cloudevents.h - the lifecycle events' payload contract (docs/events/README.md): CloudEvents 1.0
 * in structured JSON mode, type dev.tenancy.tenant.<event>.v1, source tenancy.dev/<cluster>,
 * subject tenant/<id>, extensions tenancysequence, correlationid and actor. Pure: no network, no
 * clock, no globals. */
#ifndef TN_TENANCY_CLOUDEVENTS_H
#define TN_TENANCY_CLOUDEVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

#define TN_CE_SPECVERSION "1.0"
#define TN_CE_TYPE_PREFIX "dev.tenancy.tenant."
#define TN_CE_TYPE_SUFFIX ".v1"
#define TN_CE_SOURCE_PREFIX "tenancy.dev/"
#define TN_CE_DEFAULT_CLUSTER "local"

/* The event names (the <event> of the type), in the order docs/events/ lists them. */
#define TN_CE_CREATED "created"
#define TN_CE_ACTIVATED "activated"
#define TN_CE_SUSPENDED "suspended"
#define TN_CE_RESUMED "resumed"
#define TN_CE_ARCHIVED "archived"
#define TN_CE_RESTORED "restored"
#define TN_CE_DELETED "deleted"
#define TN_CE_UPDATED "updated"
#define TN_CE_CREDENTIALS_ROTATED "credentials.rotated"
#define TN_CE_KEY_ROTATED "key.rotated"
#define TN_CE_PLACEMENT_DECIDED "placement.decided"
#define TN_CE_QUOTA_CHANGED "quota.changed"

/* Every event name, NULL-terminated. Static. */
extern const char *const tn_ce_events[];

/* Whether name is one of tn_ce_events. */
bool tn_ce_event_known(const char *name);

/* The event a lifecycle action's "succeeded" audit row announces: "create" -> "created",
 * "activate" -> "activated", ... "restore" -> "restored"; NULL for anything else. Static. */
const char *tn_ce_event_for_action(const char *action);

/* "dev.tenancy.tenant.<event>.v1" into out[n]. Returns 0, or TN_EINVALID for an unknown event
 * or a too small buffer. */
int tn_ce_type(const char *event, char *out, size_t n);

/* Whether a --cluster-name is usable in a source: a DNS-1123 label (1 to 63 of [a-z0-9-],
 * starting and ending with a letter or digit). */
bool tn_ce_cluster_name_valid(const char *name);

/* Whether data (borrowed; any JSON) is fit to send: no object key that names a secret
 * (password, secret, token, privateKey, dsn, credential..., case-insensitive; "credentialsVersion"
 * is a version number and allowed) and no string value that carries one (a postgres:// URI with
 * a password, a whsec_ or "-----BEGIN" text). On failure why[n] names the path. */
bool tn_ce_data_safe(const json_t *data, char *why, size_t n);

/* The data of a lifecycle event (created ... deleted): {from (null for a new tenant), to,
 * generation, and when known stateReason, plan, region}. Strings borrowed, NULL: omitted. A new
 * object (json_decref it), NULL when out of memory. */
json_t *tn_ce_transition_data(const char *from, const char *to, long long generation,
                              const char *state_reason, const char *plan, const char *region);

/* The parts of one event. Strings are borrowed. */
struct tn_ce {
  const char *id;             /* required: a UUID */
  const char *cluster;        /* NULL: TN_CE_DEFAULT_CLUSTER; must pass tn_ce_cluster_name_valid */
  const char *event;          /* required: one of tn_ce_events */
  const char *tenant;         /* required: the Tenant's metadata.name */
  const char *time;           /* RFC 3339 UTC; NULL: omitted (the outbox sets it at commit) */
  long long sequence;         /* tenancysequence; <= 0: omitted (the outbox assigns it) */
  const char *correlation_id; /* required */
  const char *actor;          /* required: who asked, or "tenancy-operator" */
  const json_t *data;         /* borrowed; NULL: {}; must be an object passing tn_ce_data_safe */
};

/* What replaces a string value of data that carries a secret. */
#define TN_CE_REDACTED "[redacted]"

/* Builds the CloudEvent object: specversion, id, source, type, subject, time (when given),
 * datacontenttype "application/json", tenancysequence (when > 0), correlationid, actor, data
 * (a deep copy in which every string value that carries a secret, see tn_ce_data_safe, is
 * replaced by TN_CE_REDACTED; a key that names a secret is refused). Returns a new object (json_decref it),
 * or NULL with err set (TN_EINVALID: a missing or bad field, named in the message; -ENOMEM). */
json_t *tn_ce_build(const struct tn_ce *c, struct tn_error *err);

#endif
