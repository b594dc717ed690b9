/* lifecycle.c - the tenant lifecycle state machine (see lifecycle.h). */
#include "tenancy/lifecycle.h"

#include <stdio.h>
#include <string.h>

#include "util/uuid.h"

static const char *const action_names[TN_ACTION_COUNT] = {"none",   "create",  "activate", "suspend",
                                                          "resume", "archive", "delete",   "restore"};
static const char *const action_reasons[TN_ACTION_COUNT] = {NULL,      "Created",  "Activated", "Suspended",
                                                            "Resumed", "Archived", "Deleted",   "Restored"};

const char *tn_action_name(enum tn_action a) { return (unsigned)a < TN_ACTION_COUNT ? action_names[a] : "?"; }

const char *tn_action_event_reason(enum tn_action a) {
  return (unsigned)a < TN_ACTION_COUNT ? action_reasons[a] : NULL;
}

/* The transition table: the action for from -> to, TN_ACTION_NONE when not allowed (the
 * diagonal is handled before the table is read). Moves to Deleted also need the confirmation. */
static enum tn_action table(enum tn_state from, enum tn_state to) {
  switch (from) {
  case TN_STATE_NONE:
    return to == TN_STATE_DRAFT ? TN_ACTION_CREATE : TN_ACTION_NONE;
  case TN_STATE_DRAFT:
    return to == TN_STATE_ACTIVE    ? TN_ACTION_ACTIVATE
           : to == TN_STATE_DELETED ? TN_ACTION_DELETE
                                    : TN_ACTION_NONE;
  case TN_STATE_ACTIVE:
    return to == TN_STATE_SUSPENDED  ? TN_ACTION_SUSPEND
           : to == TN_STATE_ARCHIVED ? TN_ACTION_ARCHIVE
                                     : TN_ACTION_NONE;
  case TN_STATE_SUSPENDED:
    return to == TN_STATE_ACTIVE     ? TN_ACTION_RESUME
           : to == TN_STATE_ARCHIVED ? TN_ACTION_ARCHIVE
                                     : TN_ACTION_NONE;
  case TN_STATE_ARCHIVED: /* -> Active is a restore (refused after the purge: retention.h) */
    return to == TN_STATE_ACTIVE    ? TN_ACTION_RESTORE
           : to == TN_STATE_DELETED ? TN_ACTION_DELETE
                                    : TN_ACTION_NONE;
  case TN_STATE_DELETED:
  default:
    return TN_ACTION_NONE;
  }
}

/* The order states are listed in messages: the lifecycle's natural order. */
static const enum tn_state listing_order[] = {TN_STATE_DRAFT, TN_STATE_ACTIVE, TN_STATE_SUSPENDED,
                                              TN_STATE_ARCHIVED, TN_STATE_DELETED};

const char *tn_lifecycle_allowed_next(enum tn_state from, char *out, size_t n) {
  size_t len = 0;
  if (n == 0)
    return out;
  out[0] = '\0';
  for (size_t i = 0; i < sizeof listing_order / sizeof listing_order[0]; i++) {
    enum tn_state to = listing_order[i];
    if (to == from || table(from, to) == TN_ACTION_NONE)
      continue;
    int w = snprintf(out + len, n - len, "%s%s", len ? ", " : "", tn_state_name(to));
    if (w < 0 || (size_t)w >= n - len)
      break;
    len += (size_t)w;
  }
  if (len == 0)
    snprintf(out, n, "none");
  return out;
}

static const char *display(enum tn_state s) { return s == TN_STATE_NONE ? "(none)" : tn_state_name(s); }

static int refuse(struct tn_error *err, enum tn_state from, enum tn_state to) {
  char allowed[96];
  tn_lifecycle_allowed_next(from, allowed, sizeof allowed);
  tn_error_set(err, TN_EINVALID, "transition %s -> %s is not allowed; from %s the allowed states are: %s",
               display(from), display(to), display(from), allowed);
  if (err)
    snprintf(err->reason, sizeof err->reason, "%s", TN_REASON_TRANSITION_REFUSED);
  return TN_EINVALID;
}

int tn_lifecycle_check(enum tn_state from, enum tn_state to, const char *tenant_id, const char *confirmation,
                       enum tn_action *action, struct tn_error *err) {
  *action = TN_ACTION_NONE;
  if ((unsigned)from >= TN_STATE_COUNT || (unsigned)to >= TN_STATE_COUNT)
    return tn_error_set(err, TN_EINVALID, "unknown lifecycle state");
  if (from == to)
    return 0;
  enum tn_action a = table(from, to);
  if (a == TN_ACTION_NONE)
    return refuse(err, from, to);
  if (to == TN_STATE_DELETED) {
    bool empty = !confirmation || !*confirmation;
    if (empty || !tenant_id || strcmp(confirmation, tenant_id) != 0) {
      tn_error_set(
          err, TN_EINVALID,
          "transition %s -> Deleted requires spec.deletionConfirmation to equal the tenant id \"%s\" "
          "(it is %s); set it to confirm that everything the tenant owns may be removed",
          display(from), tenant_id ? tenant_id : "", empty ? "empty" : "different");
      if (err)
        snprintf(err->reason, sizeof err->reason, "%s", TN_REASON_TRANSITION_REFUSED);
      return TN_EINVALID;
    }
  }
  *action = a;
  return 0;
}

void tn_correlation_id(const char *uid, long long generation, enum tn_state from, enum tn_state to,
                       char out[37]) {
  char gen[32];
  snprintf(gen, sizeof gen, "%lld", generation);
  const char *parts[] = {"tenancy.dev/transition", uid, gen, tn_state_name(from), tn_state_name(to)};
  tn_uuid_from_parts(parts, sizeof parts / sizeof parts[0], out);
}

static void add_step(const struct tn_tenant *t, struct tn_lifecycle_plan *out, enum tn_state from,
                     enum tn_state to, enum tn_action a) {
  struct tn_transition *s = &out->steps[out->n_steps++];
  s->from = from;
  s->to = to;
  s->action = a;
  s->event_reason = tn_action_event_reason(a);
  tn_correlation_id(t->uid, t->generation, from, to, s->correlation_id);
  out->next = to;
}

int tn_lifecycle_plan(const struct tn_tenant *t, struct tn_lifecycle_plan *out, struct tn_error *err) {
  enum tn_action a;
  int rc;
  memset(out, 0, sizeof *out);
  out->next = t->status_state;
  if (t->state == TN_STATE_NONE || (unsigned)t->state >= TN_STATE_COUNT)
    return tn_error_set(err, TN_EINVALID, "spec.state is required");
  if (t->status_state != TN_STATE_NONE) {
    rc = tn_lifecycle_check(t->status_state, t->state, t->name, t->deletion_confirmation, &a, err);
    if (rc) {
      out->refused = true;
      return rc;
    }
    if (a != TN_ACTION_NONE)
      add_step(t, out, t->status_state, t->state, a);
    return 0;
  }

  /* A new tenant: created as Draft, then the shortest allowed path to spec.state. */
  add_step(t, out, TN_STATE_NONE, TN_STATE_DRAFT, TN_ACTION_CREATE);
  static const enum tn_state path_active[] = {TN_STATE_ACTIVE};
  static const enum tn_state path_suspended[] = {TN_STATE_ACTIVE, TN_STATE_SUSPENDED};
  static const enum tn_state path_archived[] = {TN_STATE_ACTIVE, TN_STATE_ARCHIVED};
  static const enum tn_state path_deleted[] = {TN_STATE_DELETED};
  const enum tn_state *path = NULL;
  size_t n = 0;
  switch (t->state) {
  case TN_STATE_ACTIVE:
    path = path_active, n = 1;
    break;
  case TN_STATE_SUSPENDED:
    path = path_suspended, n = 2;
    break;
  case TN_STATE_ARCHIVED:
    path = path_archived, n = 2;
    break;
  case TN_STATE_DELETED:
    path = path_deleted, n = 1;
    break;
  default:
    break;
  }
  for (size_t i = 0; i < n; i++) {
    rc = tn_lifecycle_check(out->next, path[i], t->name, t->deletion_confirmation, &a, err);
    if (rc) {
      out->refused = true;
      return rc;
    }
    add_step(t, out, out->next, path[i], a);
  }
  return 0;
}

/* ---- prerequisites and effects ------------------------------------------------------------ */

bool tn_transition_is_activation(const struct tn_transition *s) {
  return s->to == TN_STATE_ACTIVE && (s->from == TN_STATE_DRAFT || s->from == TN_STATE_ARCHIVED);
}

bool tn_transition_has_effects(const struct tn_transition *s) { return s->action != TN_ACTION_CREATE; }

int tn_lifecycle_first_activation(const struct tn_lifecycle_plan *lp) {
  for (int i = 0; i < lp->n_steps; i++)
    if (tn_transition_is_activation(&lp->steps[i]))
      return i;
  return -1;
}

int tn_lifecycle_first_effect(const struct tn_lifecycle_plan *lp) {
  for (int i = 0; i < lp->n_steps; i++)
    if (tn_transition_has_effects(&lp->steps[i]))
      return i;
  return -1;
}

void tn_lifecycle_split(struct tn_lifecycle_plan *lp, int k, struct tn_lifecycle_plan *rest) {
  if (k < 0 || k >= lp->n_steps)
    return;
  if (rest) {
    memset(rest, 0, sizeof *rest);
    rest->next = lp->next;
    for (int i = k; i < lp->n_steps; i++)
      rest->steps[rest->n_steps++] = lp->steps[i];
  }
  lp->next = lp->steps[k].from;
  lp->n_steps = k;
}

static bool effect_in_place(const struct tn_effect *e) {
  if (e->status && strcmp(e->status, "True") == 0)
    return true;
  return e->reason && strcmp(e->reason, "GroupRefused") == 0;
}

enum tn_progress tn_effects_progress(const struct tn_effect *e, size_t n, char *why, size_t nwhy) {
  const struct tn_effect *failed = NULL, *waiting = NULL;
  for (size_t i = 0; i < n; i++) {
    if (e[i].failed && !failed)
      failed = &e[i];
    else if (!effect_in_place(&e[i]) && !waiting)
      waiting = &e[i];
  }
  const struct tn_effect *shown = failed ? failed : waiting;
  if (nwhy)
    why[0] = '\0';
  if (shown && nwhy)
    snprintf(why, nwhy, "%s: %s", shown->name ? shown->name : "?",
             shown->message && *shown->message ? shown->message
                                               : (shown->reason ? shown->reason : "not ready"));
  return failed ? TN_PROGRESS_FAILED : waiting ? TN_PROGRESS_WAITING : TN_PROGRESS_DONE;
}
