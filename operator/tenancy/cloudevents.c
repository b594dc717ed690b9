/* cloudevents.c - the CloudEvents payload of the lifecycle events (see cloudevents.h and
 * docs/events/README.md). */
#define _GNU_SOURCE /* strcasestr */
#include "tenancy/cloudevents.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *const tn_ce_events[] = {TN_CE_CREATED,
                                    TN_CE_ACTIVATED,
                                    TN_CE_SUSPENDED,
                                    TN_CE_RESUMED,
                                    TN_CE_ARCHIVED,
                                    TN_CE_RESTORED,
                                    TN_CE_DELETED,
                                    TN_CE_UPDATED,
                                    TN_CE_CREDENTIALS_ROTATED,
                                    TN_CE_KEY_ROTATED,
                                    TN_CE_PLACEMENT_DECIDED,
                                    TN_CE_QUOTA_CHANGED,
                                    NULL};

bool tn_ce_event_known(const char *name) {
  for (int i = 0; name && tn_ce_events[i]; i++)
    if (strcmp(name, tn_ce_events[i]) == 0)
      return true;
  return false;
}

const char *tn_ce_event_for_action(const char *action) {
  static const struct {
    const char *action, *event;
  } map[] = {{"create", TN_CE_CREATED}, {"activate", TN_CE_ACTIVATED}, {"suspend", TN_CE_SUSPENDED},
             {"resume", TN_CE_RESUMED}, {"archive", TN_CE_ARCHIVED},   {"restore", TN_CE_RESTORED},
             {"delete", TN_CE_DELETED}};
  for (size_t i = 0; action && i < sizeof map / sizeof map[0]; i++)
    if (strcmp(action, map[i].action) == 0)
      return map[i].event;
  return NULL;
}

int tn_ce_type(const char *event, char *out, size_t n) {
  if (!tn_ce_event_known(event))
    return TN_EINVALID;
  int w = snprintf(out, n, TN_CE_TYPE_PREFIX "%s" TN_CE_TYPE_SUFFIX, event);
  return w < 0 || (size_t)w >= n ? TN_EINVALID : 0;
}

bool tn_ce_cluster_name_valid(const char *name) {
  size_t len = name ? strlen(name) : 0;
  if (len < 1 || len > 63 || name[0] == '-' || name[len - 1] == '-')
    return false;
  for (size_t i = 0; i < len; i++)
    if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
      return false;
  return true;
}

/* Whether a key names a secret. */
static bool secret_key(const char *k) {
  static const char *const words[] = {"password",    "passwd", "secret",    "token",  "privatekey",
                                      "private_key", "dsn",    "plaintext", "apikey", "api_key"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strcasestr(k, words[i]))
      return true;
  /* "credentials" / "credential" as a value holder; "credentialsVersion" is a number. */
  return strcasestr(k, "credential") && !strcasestr(k, "version");
}

/* Whether a string value carries a secret. */
static bool secret_value(const char *s) {
  if (strstr(s, "whsec_") || strstr(s, "-----BEGIN"))
    return true;
  const char *scheme = strcasestr(s, "postgres");
  if (scheme) {
    const char *sep = strstr(scheme, "://");
    const char *at = sep ? strchr(sep + 3, '@') : NULL;
    const char *colon = sep ? strchr(sep + 3, ':') : NULL;
    if (at && colon && colon < at)
      return true; /* user:password@ */
  }
  return strcasestr(s, "password=") != NULL;
}

static bool safe_at(const json_t *v, char *path, size_t cap, char *why, size_t n) {
  size_t len = strlen(path);
  if (json_is_object(v)) {
    const char *k;
    const json_t *m;
    json_object_foreach((json_t *)v, k, m) {
      if (secret_key(k)) {
        snprintf(why, n, "%s.%s: a key that names a secret", path, k);
        return false;
      }
      snprintf(path + len, cap - len, ".%s", k);
      bool ok = safe_at(m, path, cap, why, n);
      path[len] = '\0';
      if (!ok)
        return false;
    }
  } else if (json_is_array(v)) {
    size_t i;
    const json_t *m;
    json_array_foreach((json_t *)v, i, m) {
      snprintf(path + len, cap - len, "[%zu]", i);
      bool ok = safe_at(m, path, cap, why, n);
      path[len] = '\0';
      if (!ok)
        return false;
    }
  } else if (json_is_string(v) && secret_value(json_string_value(v))) {
    snprintf(why, n, "%s: a value that carries a secret", path);
    return false;
  }
  return true;
}

/* Replaces every string value that carries a secret with "[redacted]" (user text such as a
 * stateReason must not block the audit row its event rides on). */
static void redact(json_t *v) {
  if (json_is_object(v)) {
    const char *k;
    json_t *m;
    json_object_foreach(v, k, m) {
      if (json_is_string(m) && secret_value(json_string_value(m)))
        json_object_set_new(v, k, json_string(TN_CE_REDACTED));
      else
        redact(m);
    }
  } else if (json_is_array(v)) {
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
      if (json_is_string(m) && secret_value(json_string_value(m)))
        json_array_set_new(v, i, json_string(TN_CE_REDACTED));
      else
        redact(m);
    }
  }
}

/* Whether any object key names a secret (our own data never has one: a bug, refused). */
static bool secret_keys(const json_t *v, char *why, size_t n) {
  char path[512] = "data";
  json_t *copy = json_deep_copy(v);
  redact(copy);
  bool bad = !safe_at(copy, path, sizeof path, why, n);
  json_decref(copy);
  return bad;
}

bool tn_ce_data_safe(const json_t *data, char *why, size_t n) {
  char path[512] = "data";
  if (n)
    why[0] = '\0';
  return safe_at(data, path, sizeof path, why, n);
}

json_t *tn_ce_transition_data(const char *from, const char *to, long long generation,
                              const char *state_reason, const char *plan, const char *region) {
  json_t *d = json_pack("{s:o, s:s, s:I}", "from", from && *from ? json_string(from) : json_null(), "to",
                        to ? to : "", "generation", (json_int_t)generation);
  const char *keys[] = {"stateReason", "plan", "region"};
  const char *vals[] = {state_reason, plan, region};
  for (int i = 0; d && i < 3; i++)
    if (vals[i] && *vals[i] && json_object_set_new(d, keys[i], json_string(vals[i]))) {
      json_decref(d);
      d = NULL;
    }
  return d;
}

json_t *tn_ce_build(const struct tn_ce *c, struct tn_error *err) {
  const char *cluster = c->cluster ? c->cluster : TN_CE_DEFAULT_CLUSTER;
  static const char *const names[] = {"id", "tenant", "correlation id", "actor"};
  const char *vals[] = {c->id, c->tenant, c->correlation_id, c->actor};
  for (int i = 0; i < 4; i++)
    if (!vals[i] || !*vals[i]) {
      tn_error_set(err, TN_EINVALID, "cloudevent: an event needs a %s", names[i]);
      return NULL;
    }
  char type[96], source[96], why[600];
  if (tn_ce_type(c->event, type, sizeof type)) {
    tn_error_set(err, TN_EINVALID, "cloudevent: unknown event \"%.64s\"", c->event ? c->event : "");
    return NULL;
  }
  if (!tn_ce_cluster_name_valid(cluster)) {
    tn_error_set(err, TN_EINVALID,
                 "cloudevent: cluster name \"%.80s\" is not a DNS label (1-63 of a-z, 0-9 and -, starting "
                 "and ending with a letter or digit)",
                 cluster);
    return NULL;
  }
  if (c->data && !json_is_object(c->data)) {
    tn_error_set(err, TN_EINVALID, "cloudevent: data must be a JSON object");
    return NULL;
  }
  if (c->data && secret_keys(c->data, why, sizeof why)) {
    tn_error_set(err, TN_EINVALID, "cloudevent: refusing to send %s", why);
    return NULL;
  }
  snprintf(source, sizeof source, TN_CE_SOURCE_PREFIX "%s", cluster);
  json_t *subject = json_sprintf("tenant/%s", c->tenant);
  json_t *data = c->data ? json_deep_copy(c->data) : json_object();
  redact(data);
  json_t *ev =
      json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:o}", "specversion", TN_CE_SPECVERSION, "id",
                c->id, "source", source, "type", type, "subject", subject, "datacontenttype",
                "application/json", "correlationid", c->correlation_id, "actor", c->actor, "data", data);
  if (ev && c->time && json_object_set_new(ev, "time", json_string(c->time))) {
    json_decref(ev);
    ev = NULL;
  }
  if (ev && c->sequence > 0 && json_object_set_new(ev, "tenancysequence", json_integer(c->sequence))) {
    json_decref(ev);
    ev = NULL;
  }
  if (!ev)
    tn_error_set(err, -ENOMEM, "out of memory (or a string that is not UTF-8)");
  return ev;
}
