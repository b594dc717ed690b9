/* admission_audit.c - refused rows for denied Tenant requests (see admission_audit.h). */
#include "converge/admission_audit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/log.h"
#include "util/clock.h"

struct denial {
  char *actor, *action, *target, *request_id, *details;
  long long generation;
  double queued_at;
};

struct tn_admission_audit {
  struct tn_audit *audit; /* owned */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* monotonic */
  struct denial q[TN_ADMISSION_AUDIT_QUEUE];
  size_t head, len;
  bool stopping, busy;
  double tokens, refilled_at;
  long long written, dropped, dropped_logged;
};

static void denial_free(struct denial *d) {
  free(d->actor);
  free(d->action);
  free(d->target);
  free(d->request_id);
  free(d->details);
  memset(d, 0, sizeof *d);
}

static void *run(void *arg) {
  struct tn_admission_audit *aa = arg;
  double backoff = 0.5;
  pthread_mutex_lock(&aa->mu);
  for (;;) {
    while (!aa->stopping && aa->len == 0)
      pthread_cond_wait(&aa->cv, &aa->mu);
    if (aa->len == 0)
      break;
    struct denial d = aa->q[aa->head]; /* stays queued until written */
    aa->busy = true;
    pthread_mutex_unlock(&aa->mu);
    struct tn_audit_event ev = {.actor = d.actor,
                                .action = d.action,
                                .target = d.target,
                                .request_id = d.request_id,
                                .correlation_id = d.request_id,
                                .outcome = TN_AUDIT_REFUSED,
                                .generation_before = d.generation,
                                .details = d.details};
    struct tn_error err = {0};
    int rc = tn_audit_append(aa->audit, &ev, NULL, &err);
    bool transient = rc == TN_EUNAVAILABLE || rc == TN_ETIMEOUT || rc == TN_ECONFLICT;
    bool too_old = tn_mono_now() - d.queued_at > TN_ADMISSION_AUDIT_MAX_AGE_S;
    if (rc && (!transient || too_old))
      tn_log_warn("audit trail: the refused row of a denied %s could not be written and is dropped: %s",
                  d.target, err.message);
    pthread_mutex_lock(&aa->mu);
    aa->busy = false;
    if (rc == 0 || !transient || too_old) {
      denial_free(&aa->q[aa->head]);
      aa->head = (aa->head + 1) % TN_ADMISSION_AUDIT_QUEUE;
      aa->len--;
      if (rc == 0)
        aa->written++;
      else
        aa->dropped++;
      backoff = 0.5;
      pthread_cond_broadcast(&aa->cv);
      continue;
    }
    /* PostgreSQL away: wait and retry the same row (order kept). */
    if (aa->stopping)
      break;
    struct timespec ts = tn_mono_timespec(tn_mono_now() + backoff);
    pthread_cond_timedwait(&aa->cv, &aa->mu, &ts);
    backoff = backoff * 2 > 30 ? 30 : backoff * 2;
  }
  pthread_mutex_unlock(&aa->mu);
  return NULL;
}

int tn_admission_audit_new(struct tn_audit *audit, struct tn_admission_audit **out, struct tn_error *err) {
  *out = NULL;
  struct tn_admission_audit *aa = calloc(1, sizeof *aa);
  if (!aa)
    return tn_error_set(err, -ENOMEM, "out of memory");
  aa->audit = audit;
  aa->tokens = TN_ADMISSION_AUDIT_BURST;
  aa->refilled_at = tn_mono_now();
  pthread_mutex_init(&aa->mu, NULL);
  tn_cond_init_monotonic(&aa->cv);
  int rc = pthread_create(&aa->thread, NULL, run, aa);
  if (rc) {
    pthread_cond_destroy(&aa->cv);
    pthread_mutex_destroy(&aa->mu);
    free(aa);
    return tn_error_set(err, -rc, "admission audit: cannot start its thread: %s", strerror(rc));
  }
  *out = aa;
  return 0;
}

/* A copy of s cut to at most max bytes, at a UTF-8 character boundary: what the review carries
 * is the word of whoever POSTed it, so no field may make a row larger than a few kilobytes. */
static char *dup_cut(const char *s, size_t max) {
  size_t n = strnlen(s ? s : "", max + 1);
  if (n > max) {
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
      n--;
  }
  return strndup(s ? s : "", n);
}

static char *lower_dup(const char *s) {
  char *d = strdup(s ? s : "");
  for (char *p = d; p && *p; p++)
    if (*p >= 'A' && *p <= 'Z')
      *p = (char)(*p - 'A' + 'a');
  return d;
}

void tn_admission_audit_denied(void *ud, const struct tn_admission_record *rec) {
  struct tn_admission_audit *aa = ud;
  if (!aa || !rec)
    return;
  long long gen =
      json_integer_value(json_object_get(json_object_get(rec->old_object, "metadata"), "generation"));
  struct denial d = {.generation = gen, .queued_at = tn_mono_now()};
  const char *operation =
      rec->operation && (!strcmp(rec->operation, "CREATE") || !strcmp(rec->operation, "UPDATE") ||
                         !strcmp(rec->operation, "DELETE"))
          ? rec->operation
          : "OTHER";
  char *op = lower_dup(operation);
  char action[64], target[320];
  snprintf(action, sizeof action, "admission.%s", op ? op : "");
  snprintf(target, sizeof target, "tenant/%s", rec->name ? rec->name : "");
  free(op);
  /* The actor is what the review's userInfo says: the API server's word when it called us, but
   * only a claim if someone else POSTed to the webhook port. The details say so. */
  char *message = dup_cut(rec->message, 1024);
  json_t *details = message ? json_pack("{s:s, s:s, s:b, s:s}", "operation", operation, "message", message,
                                        "dryRun", rec->dry_run, "actorSource", "admission review userInfo")
                            : NULL;
  free(message);
  d.actor = dup_cut(rec->actor && *rec->actor ? rec->actor : "unknown", 256);
  d.action = strdup(action);
  d.target = dup_cut(target, 300);
  d.request_id = rec->request_uid ? dup_cut(rec->request_uid, 64) : NULL;
  d.details = details ? json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(details);
  if (!d.actor || !d.action || !d.target || !d.details || (rec->request_uid && !d.request_id)) {
    denial_free(&d);
    return;
  }
  pthread_mutex_lock(&aa->mu);
  double now = tn_mono_now();
  aa->tokens += (now - aa->refilled_at) * TN_ADMISSION_AUDIT_RATE;
  if (aa->tokens > TN_ADMISSION_AUDIT_BURST)
    aa->tokens = TN_ADMISSION_AUDIT_BURST;
  aa->refilled_at = now;
  bool take = !aa->stopping && aa->len < TN_ADMISSION_AUDIT_QUEUE && aa->tokens >= 1;
  if (take) {
    aa->tokens -= 1;
    aa->q[(aa->head + aa->len) % TN_ADMISSION_AUDIT_QUEUE] = d;
    aa->len++;
    pthread_cond_broadcast(&aa->cv);
  } else {
    aa->dropped++;
  }
  long long dropped = aa->dropped;
  bool log_drop = !take && dropped >= aa->dropped_logged * 2 + 1; /* 1, 3, 7, 15, ...: bounded log */
  if (log_drop)
    aa->dropped_logged = dropped;
  pthread_mutex_unlock(&aa->mu);
  if (!take) {
    denial_free(&d);
    if (log_drop)
      tn_log_warn(
          "audit trail: %lld refused rows of denied requests dropped so far (queue full or over %.0f/s)",
          dropped, TN_ADMISSION_AUDIT_RATE);
  }
}

struct tn_admission_hooks tn_admission_audit_hooks(struct tn_admission_audit *aa) {
  return (struct tn_admission_hooks){.on_denied = tn_admission_audit_denied, .ud = aa};
}

void tn_admission_audit_counts(struct tn_admission_audit *aa, long long *written, long long *dropped) {
  pthread_mutex_lock(&aa->mu);
  if (written)
    *written = aa->written;
  if (dropped)
    *dropped = aa->dropped;
  pthread_mutex_unlock(&aa->mu);
}

void tn_admission_audit_free(struct tn_admission_audit *aa, double timeout_s) {
  if (!aa)
    return;
  pthread_mutex_lock(&aa->mu);
  double deadline = tn_mono_now() + timeout_s;
  while ((aa->len > 0 || aa->busy) && tn_mono_now() < deadline) {
    struct timespec ts = tn_mono_timespec(deadline);
    pthread_cond_timedwait(&aa->cv, &aa->mu, &ts);
  }
  aa->stopping = true;
  pthread_cond_broadcast(&aa->cv);
  pthread_mutex_unlock(&aa->mu);
  pthread_join(aa->thread, NULL);
  if (aa->len)
    tn_log_warn("audit trail: %zu refused rows of denied requests not written at shutdown", aa->len);
  for (size_t i = 0; i < aa->len; i++)
    denial_free(&aa->q[(aa->head + i) % TN_ADMISSION_AUDIT_QUEUE]);
  tn_audit_close(aa->audit);
  pthread_cond_destroy(&aa->cv);
  pthread_mutex_destroy(&aa->mu);
  free(aa);
}
