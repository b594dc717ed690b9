/* head.c - periodic export of the audit trail's head (see head.h). */
#include "audit/head.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/client.h"
#include "runtime/log.h"
#include "util/clock.h"

struct tn_audit_head_exporter {
  struct tn_audit *audit;
  struct tn_recorder *rec;
  struct tn_kube *kube; /* NULL: export without looking for an earlier Event */
  struct tn_series *head_id, *failures;
  bool has_regarding;
  char api_version[64], kind[64], name[254], ns[254];
  double interval_s;
  unsigned long long appends_at_export; /* tn_audit_stats.appends when export_once last ran */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop;         /* under mu */
  bool final_export; /* under mu: export once more on the way out (see stop) */
  pthread_t thread;
};

static const struct tn_gvr core_events = {"", "v1", "events", true};

/* Whether the API server still holds an AuditChainHead Event about the regarding object whose
 * note (a core Event's message) is note: then exporting the same head again would only write
 * (a new Event after a restart, a series PATCH while this process runs) what is already kept.
 * A failed read (an older Role without list on Events) answers false: the Event is written. */
static bool already_exported(struct tn_audit_head_exporter *x, const char *note) {
  if (!x->kube)
    return false;
  char sel[sizeof x->name + 64];
  snprintf(sel, sizeof sel, "involvedObject.name=%s,reason=%s", x->name, TN_AUDIT_HEAD_REASON);
  struct tn_list_opts opts = {.field_selector = sel, .limit = 50};
  json_t *list = NULL;
  struct tn_error err = {0};
  bool found = false;
  if (tn_kube_list(x->kube, &core_events, x->ns[0] ? x->ns : "default", &opts, &list, &err)) {
    tn_log_debug("audit trail head: cannot look for an earlier export (%s): exporting", err.message);
  } else {
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(list, "items"), i, ev) {
      const char *msg = json_string_value(json_object_get(ev, "message"));
      if (msg && strcmp(msg, note) == 0) {
        found = true;
        break;
      }
    }
  }
  json_decref(list);
  return found;
}

/* look_first false: the Event is written without looking for an earlier one (at shutdown, when
 * this process appended rows since its last export: no Event can name the moved head, and the
 * list would be one more request inside the shutdown's budget). */
static void export_head(struct tn_audit_head_exporter *x, bool look_first) {
  long long id = 0;
  char hash[TN_AUDIT_HASH_LEN];
  struct tn_error err = {0};
  struct tn_audit_stats st;
  tn_audit_get_stats(x->audit, &st);
  x->appends_at_export = st.appends;
  if (tn_audit_head(x->audit, &id, hash, &err)) {
    tn_series_inc(x->failures);
    tn_log_warn("audit trail head: cannot read it: %s", err.message);
    return;
  }
  tn_series_set(x->head_id, (double)id);
  if (id == 0) {
    tn_log_info("audit trail head: the trail is empty");
    return;
  }
  tn_log_info("audit trail head: row %lld hash %s (check later with tenantctl audit verify --expect %lld:%s)",
              id, hash, id, hash);
  if (x->rec && x->has_regarding) {
    char note[128 + TN_AUDIT_HASH_LEN];
    snprintf(note, sizeof note, "audit trail head: row %lld hash %s", id, hash);
    if (look_first && already_exported(x, note)) {
      tn_log_debug("audit trail head: row %lld already exported as an Event", id);
      return;
    }
    struct tn_object_ref ref = {.api_version = x->api_version,
                                .kind = x->kind,
                                .name = x->name,
                                .namespace = x->ns[0] ? x->ns : NULL};
    tn_recorder_eventf(x->rec, &ref, TN_EVENT_NORMAL, TN_AUDIT_HEAD_REASON, "Export", "%s", note);
  }
}

static void *run(void *p) {
  struct tn_audit_head_exporter *x = p;
  for (;;) {
    export_head(x, true);
    struct timespec until = tn_mono_timespec(tn_mono_now() + x->interval_s);
    pthread_mutex_lock(&x->mu);
    while (!x->stop && pthread_cond_timedwait(&x->cv, &x->mu, &until) != ETIMEDOUT)
      ;
    bool stop = x->stop, final_export = x->final_export;
    pthread_mutex_unlock(&x->mu);
    if (stop) {
      /* A last export at shutdown when this process appended rows since its last one, so that
       * the head it leaves is anchored and the next start (which exports at once) finds it
       * already exported: a restart writes nothing (issue 18). Not while the trail is down (the
       * last round trip failed): shutdown must not wait on an unreachable database. */
      struct tn_audit_stats st;
      tn_audit_get_stats(x->audit, &st);
      if (final_export && st.appends != x->appends_at_export && st.up == 1)
        export_head(x, false);
      return NULL;
    }
  }
}

int tn_audit_head_exporter_start(struct tn_audit *audit, struct tn_metrics *metrics, struct tn_recorder *rec,
                                 struct tn_kube *kube, const struct tn_object_ref *regarding,
                                 double interval_s, struct tn_audit_head_exporter **out) {
  *out = NULL;
  if (!audit || !(interval_s > 0))
    return -EINVAL;
  struct tn_audit_head_exporter *x = calloc(1, sizeof *x);
  if (!x)
    return -ENOMEM;
  x->audit = audit;
  x->rec = rec;
  x->kube = kube;
  x->interval_s = interval_s;
  if (metrics) {
    x->head_id = tn_metric_with(tn_metrics_register(metrics, TN_GAUGE, TN_AUDIT_HEAD_METRIC,
                                                    "Id of the newest row of the audit trail, as last read "
                                                    "(a decrease means rows were removed at the end).",
                                                    NULL, NULL, 0),
                                NULL);
    x->failures =
        tn_metric_with(tn_metrics_register(metrics, TN_COUNTER, TN_AUDIT_HEAD_FAILURES_METRIC,
                                           "Reads of the audit trail's head that failed.", NULL, NULL, 0),
                       NULL);
  }
  if (regarding && regarding->kind && regarding->name) {
    x->has_regarding = true;
    snprintf(x->api_version, sizeof x->api_version, "%s",
             regarding->api_version ? regarding->api_version : "");
    snprintf(x->kind, sizeof x->kind, "%s", regarding->kind);
    snprintf(x->name, sizeof x->name, "%s", regarding->name);
    snprintf(x->ns, sizeof x->ns, "%s", regarding->namespace ? regarding->namespace : "");
  }
  pthread_mutex_init(&x->mu, NULL);
  int rc = tn_cond_init_monotonic(&x->cv);
  if (rc) {
    pthread_mutex_destroy(&x->mu);
    free(x);
    return rc;
  }
  rc = pthread_create(&x->thread, NULL, run, x);
  if (rc) {
    pthread_cond_destroy(&x->cv);
    pthread_mutex_destroy(&x->mu);
    free(x);
    return -rc;
  }
  *out = x;
  return 0;
}

void tn_audit_head_exporter_stop(struct tn_audit_head_exporter *x, bool final_export) {
  if (!x)
    return;
  pthread_mutex_lock(&x->mu);
  x->stop = true;
  x->final_export = final_export;
  pthread_cond_signal(&x->cv);
  pthread_mutex_unlock(&x->mu);
  pthread_join(x->thread, NULL);
  pthread_cond_destroy(&x->cv);
  pthread_mutex_destroy(&x->mu);
  free(x);
}
