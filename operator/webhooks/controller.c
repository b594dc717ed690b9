/* controller.c - WebhookSubscriptions to the delivery engine (see controller.h). */
#include "webhooks/controller.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "kube/client.h"
#include "kube/informer.h"
#include "runtime/log.h"
#include "util/clock.h"
#include "util/wipe.h"
#include "webhooks/delivery.h"

const struct tn_gvr tn_gvr_webhook_subscriptions = {"tenancy.dev", "v1alpha1", "webhooksubscriptions", false};
static const struct tn_gvr gvr_secrets = {"", "v1", "secrets", true};

struct tn_wh_controller {
  struct tn_kube *kube;
  struct tn_informer *inf;
  struct tn_delivery *engine;
  char *namespace;
  pthread_mutex_t mu;
  json_t *problems; /* name -> why it cannot deliver ("" when fine) */
  json_t *patched;  /* name -> {fp, at}: the last status written */
};

/* ---- status --------------------------------------------------------------------------------- */

static json_t *condition(const json_t *old_conds, const char *type, bool status, const char *reason,
                         const char *msg, long long gen) {
  const char *st = status ? "True" : "False";
  char now[40];
  tn_time_rfc3339(tn_wall_now(), now, sizeof now);
  const char *ltt = now;
  size_t i;
  json_t *c;
  json_array_foreach(old_conds, i, c) {
    const char *t = json_string_value(json_object_get(c, "type"));
    const char *s = json_string_value(json_object_get(c, "status"));
    const char *l = json_string_value(json_object_get(c, "lastTransitionTime"));
    if (t && s && l && strcmp(t, type) == 0 && strcmp(s, st) == 0)
      ltt = l;
  }
  return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "type", type, "status", st, "reason", reason, "message", msg,
                   "lastTransitionTime", ltt, "observedGeneration", (json_int_t)gen);
}

static void write_status(struct tn_wh_controller *c, const char *name, const struct tn_wh_status *st,
                         const char *problem) {
  json_t *obj = tn_informer_get(c->inf, name);
  if (!obj)
    return;
  long long gen = json_integer_value(json_object_get(json_object_get(obj, "metadata"), "generation"));
  bool paused = json_is_true(json_object_get(json_object_get(obj, "spec"), "paused"));
  const json_t *old = json_object_get(json_object_get(obj, "status"), "conditions");
  char msg[512];
  json_t *conds = json_array();
  if (problem && *problem)
    json_array_append_new(conds, condition(old, "Ready", false, "InvalidConfiguration", problem, gen));
  else if (st && !st->db_ok)
    json_array_append_new(conds, condition(old, "Ready", false, "OutboxUnavailable",
                                           "the outbox in PostgreSQL cannot be read; see lastError", gen));
  else
    json_array_append_new(conds, condition(old, "Ready", st != NULL, st ? "Accepted" : "NotLeading",
                                           st ? "the subscription is accepted and its outbox readable"
                                              : "waiting for the leading operator replica",
                                           gen));
  if (paused)
    json_array_append_new(conds, condition(old, "Delivering", false, "Paused", "spec.paused is true", gen));
  else if (st && st->backlog > 0) {
    snprintf(msg, sizeof msg, "%lld events to deliver", st->backlog);
    json_array_append_new(conds, condition(old, "Delivering", true, "Backlog", msg, gen));
  } else
    json_array_append_new(conds,
                          condition(old, "Delivering", false, "UpToDate", "every event is delivered", gen));
  if (st && st->dead_letters > 0) {
    snprintf(msg, sizeof msg,
             "%lld events are in the dead-letter table%s; see `tenantctl events dlq list --subscription %s`",
             st->dead_letters,
             json_string_value(json_object_get(json_object_get(obj, "spec"), "ordering")) &&
                     strcmp(json_string_value(json_object_get(json_object_get(obj, "spec"), "ordering")),
                            "BestEffort") == 0
                 ? ""
                 : " and hold back their tenants' later events",
             name);
    json_array_append_new(conds, condition(old, "DeadLettered", true, "DeadLetters", msg, gen));
  } else
    json_array_append_new(conds, condition(old, "DeadLettered", false, "None", "no dead letters", gen));
  json_t *status = json_pack("{s:I,s:o}", "observedGeneration", (json_int_t)gen, "conditions", conds);
  if (st) {
    json_object_set_new(status, "backlog", json_integer(st->backlog));
    json_object_set_new(status, "lastDeliveredSequence", json_integer(st->last_delivered_seq));
    json_object_set_new(status, "lastError", json_string(st->last_error));
  }
  /* Write when a condition or lastError changed, or the counters moved and 5 s passed. */
  json_t *fp_obj = json_deep_copy(status);
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(fp_obj, "conditions"), i, x) json_object_del(x, "lastTransitionTime");
  char *full = json_dumps(fp_obj, JSON_COMPACT | JSON_SORT_KEYS);
  json_object_del(fp_obj, "backlog");
  json_object_del(fp_obj, "lastDeliveredSequence");
  char *fp = json_dumps(fp_obj, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(fp_obj);
  double now = tn_mono_now();
  pthread_mutex_lock(&c->mu);
  json_t *last = json_object_get(c->patched, name);
  const char *lfp = json_string_value(json_object_get(last, "fp"));
  const char *lfull = json_string_value(json_object_get(last, "full"));
  bool same = lfp && fp && strcmp(lfp, fp) == 0;
  bool moved = !lfull || !full || strcmp(lfull, full) != 0;
  bool due = !same || (moved && now - json_real_value(json_object_get(last, "at")) >= 5);
  if (due)
    json_object_set_new(c->patched, name,
                        json_pack("{s:s,s:s,s:f}", "fp", fp ? fp : "", "full", full ? full : "", "at", now));
  pthread_mutex_unlock(&c->mu);
  free(full);
  free(fp);
  if (due) {
    json_t *patch = json_pack("{s:o}", "status", status);
    struct tn_error err = {0};
    if (tn_kube_merge_patch(c->kube, &tn_gvr_webhook_subscriptions, NULL, name, patch, "status", NULL, &err))
      tn_log_warn("webhook subscription %s: cannot write its status: %s", name, err.message);
    json_decref(patch);
  } else
    json_decref(status);
  json_decref(obj);
}

static void on_status(void *ud, const char *name, const struct tn_wh_status *st) {
  write_status(ud, name, st, NULL);
}

/* ---- informer handlers ---------------------------------------------------------------------- */

/* Standard base64 (a Secret's data value) to bytes; the length, or -1. */
static int b64dec(unsigned char *out, const char *in, size_t n) {
  if (n % 4 != 0)
    return -1;
  int got = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
  if (got < 0)
    return -1;
  return got - (n >= 1 && in[n - 1] == '=') - (n >= 2 && in[n - 2] == '=');
}

static void set_problem(struct tn_wh_controller *c, const char *name, const char *why) {
  pthread_mutex_lock(&c->mu);
  json_object_set_new(c->problems, name, json_string(why));
  pthread_mutex_unlock(&c->mu);
}

static void sync_one(struct tn_wh_controller *c, json_t *obj) {
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  const json_t *ref = json_object_get(json_object_get(obj, "spec"), "secretRef");
  const char *sname = json_string_value(json_object_get(ref, "name"));
  const char *skey = json_string_value(json_object_get(ref, "key"));
  if (!name)
    return;
  char why[600] = "";
  struct tn_error err = {0};
  json_t *secret = NULL;
  if (!sname || !skey)
    snprintf(why, sizeof why, "spec.secretRef needs name and key");
  else if (tn_kube_get(c->kube, &gvr_secrets, c->namespace, sname, &secret, &err))
    snprintf(why, sizeof why, "cannot read Secret %s/%s: %s", c->namespace, sname, err.message);
  struct tn_wh_subscription *s = NULL;
  if (!why[0]) {
    const char *b64 = json_string_value(json_object_get(json_object_get(secret, "data"), skey));
    size_t n = b64 ? strlen(b64) : 0;
    unsigned char *raw = n ? calloc(1, n + 4) : NULL;
    int got = raw && n % 4 == 0 ? b64dec(raw, b64, n) : -1;
    if (got < 0)
      snprintf(why, sizeof why, "Secret %s/%s has no key %s (base64 data)", c->namespace, sname, skey);
    else if (tn_wh_subscription_parse(obj, (const char *)raw, (size_t)got, &s, &err))
      snprintf(why, sizeof why, "%s", err.message);
    if (raw) {
      tn_wipe(raw, n + 4);
      free(raw);
    }
  }
  json_decref(secret);
  set_problem(c, name, why);
  if (why[0]) {
    tn_log_warn("webhook subscription %s: not delivering: %s", name, why);
    tn_delivery_remove(c->engine, name);
    write_status(c, name, NULL, why);
    return;
  }
  tn_delivery_put(c->engine, s);
}

static void on_add(void *ud, json_t *obj) { sync_one(ud, obj); }
static void on_update(void *ud, json_t *old, json_t *cur) { sync_one(ud, cur); }
static void on_delete(void *ud, json_t *obj) {
  struct tn_wh_controller *c = ud;
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  if (name)
    tn_delivery_remove(c->engine, name);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int tn_wh_controller_new(const struct tn_wh_controller_config *cfg, struct tn_wh_controller **out,
                         struct tn_error *err) {
  struct tn_wh_controller *c = calloc(1, sizeof *c);
  if (!c)
    return tn_error_set(err, -ENOMEM, "out of memory");
  pthread_mutex_init(&c->mu, NULL);
  c->kube = cfg->kube;
  c->namespace = strdup(cfg->namespace ? cfg->namespace : "tenancy-system");
  c->problems = json_object();
  c->patched = json_object();
  int rc = 0;
  if (!c->namespace || !c->problems || !c->patched) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  struct tn_delivery_config dc = {
      .dsn = cfg->dsn, .ca_file = cfg->pg_ca_file, .metrics = cfg->metrics, .on_status = on_status, .ud = c};
  if ((rc = tn_delivery_new(&dc, &c->engine, err)))
    goto fail;
  struct tn_informer_opts o = {.gvr = tn_gvr_webhook_subscriptions,
                               .resync_period_s = cfg->resync_period_s > 0 ? cfg->resync_period_s : 30,
                               .name = "webhooksubscriptions"};
  struct tn_informer_handlers h = {on_add, on_update, on_delete, c};
  if ((rc = tn_informer_new(cfg->kube, &o, cfg->metrics, &c->inf, err)) ||
      (rc = tn_informer_add_handlers(c->inf, &h, err)))
    goto fail;
  *out = c;
  return 0;
fail:
  tn_wh_controller_free(c);
  return rc;
}

int tn_wh_controller_start_cache(struct tn_wh_controller *c, struct tn_error *err) {
  return tn_informer_start(c->inf, err);
}

int tn_wh_controller_start(struct tn_wh_controller *c, struct tn_error *err) {
  int rc = tn_delivery_start(c->engine, err);
  if (!rc)
    tn_log_info("webhook delivery started (leader)");
  return rc;
}

void tn_wh_controller_stop(struct tn_wh_controller *c) {
  if (c)
    tn_delivery_stop(c->engine);
}

void tn_wh_controller_free(struct tn_wh_controller *c) {
  if (!c)
    return;
  tn_delivery_stop(c->engine);
  tn_informer_stop(c->inf);
  tn_informer_free(c->inf);
  tn_delivery_free(c->engine);
  json_decref(c->problems);
  json_decref(c->patched);
  free(c->namespace);
  pthread_mutex_destroy(&c->mu);
  free(c);
}
