/* test_lifecycle.c - the lifecycle state machine over every pair of states and every kind of
 * deletion confirmation, its messages, the reconcile plan and correlation ids. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <string.h>

#include "tenancy/lifecycle.h"

#define D TN_STATE_DRAFT
#define A TN_STATE_ACTIVE
#define S TN_STATE_SUSPENDED
#define R TN_STATE_ARCHIVED
#define X TN_STATE_DELETED

static const enum tn_state states[] = {D, A, S, R, X};

enum conf { CONF_RIGHT, CONF_WRONG, CONF_ABSENT, CONF_EMPTY };
static const char *conf_value(enum conf c) {
  return c == CONF_RIGHT ? "acme" : c == CONF_WRONG ? "acme2" : c == CONF_EMPTY ? "" : NULL;
}

/* The expected matrix (row = from, column = to): the action, or -1 when refused; moves to
 * Deleted are listed with their action and need the confirmation on top. */
static int expected(enum tn_state from, enum tn_state to) {
  static const int m[6][6] = {
      /*              NONE  D                   A                   S                  R                  X */
      [TN_STATE_NONE] = {0, TN_ACTION_CREATE, -1, -1, -1, -1},
      [D] = {-1, 0, TN_ACTION_ACTIVATE, -1, -1, TN_ACTION_DELETE},
      [A] = {-1, -1, 0, TN_ACTION_SUSPEND, TN_ACTION_ARCHIVE, -1},
      [S] = {-1, -1, TN_ACTION_RESUME, 0, TN_ACTION_ARCHIVE, -1},
      [R] = {-1, -1, TN_ACTION_RESTORE, -1, 0, TN_ACTION_DELETE},
      [X] = {-1, -1, -1, -1, -1, 0},
  };
  return m[from][to];
}

Test(lifecycle, every_pair_of_states_with_every_confirmation) {
  int allowed = 0, refused = 0;
  for (int f = 0; f < TN_STATE_COUNT; f++)
    for (int t = 0; t < TN_STATE_COUNT; t++)
      for (int c = CONF_RIGHT; c <= CONF_EMPTY; c++) {
        enum tn_state from = (enum tn_state)f, to = (enum tn_state)t;
        enum tn_action action = (enum tn_action)99;
        struct tn_error err = {0};
        int rc = tn_lifecycle_check(from, to, "acme", conf_value((enum conf)c), &action, &err);
        int want = expected(from, to);
        bool needs_conf = to == X && from != X;
        bool ok = want >= 0 && (!needs_conf || c == CONF_RIGHT);
        if (ok) {
          allowed++;
          cr_assert_eq(rc, 0, "%s -> %s (conf %d) refused: %s", tn_state_name(from), tn_state_name(to), c,
                       err.message);
          cr_assert_eq(action, want, "%s -> %s: action %s", tn_state_name(from), tn_state_name(to),
                       tn_action_name(action));
          cr_assert_eq(err.code, 0, "success leaves the error alone");
        } else {
          refused++;
          cr_assert_eq(rc, TN_EINVALID, "%s -> %s (conf %d) allowed", tn_state_name(from), tn_state_name(to),
                       c);
          cr_assert_eq(action, TN_ACTION_NONE);
          cr_assert_str_eq(err.reason, "TransitionRefused");
          cr_assert_gt(strlen(err.message), 20);
        }
      }
  /* 6 no-ops x 4 confirmations + 7 moves not to Deleted x 4 + 2 moves to Deleted x 1 */
  cr_assert_eq(allowed, 6 * 4 + 7 * 4 + 2);
  cr_assert_eq(allowed + refused, 6 * 6 * 4);
}

Test(lifecycle, exactly_the_documented_transitions_exist) {
  /* Independent of the matrix above: the list of docs/api.md, written out. */
  static const struct {
    enum tn_state from, to;
    enum tn_action action;
    const char *reason;
  } doc[] = {
      {D, A, TN_ACTION_ACTIVATE, "Activated"}, {A, S, TN_ACTION_SUSPEND, "Suspended"},
      {S, A, TN_ACTION_RESUME, "Resumed"},     {A, R, TN_ACTION_ARCHIVE, "Archived"},
      {S, R, TN_ACTION_ARCHIVE, "Archived"},   {R, X, TN_ACTION_DELETE, "Deleted"},
      {D, X, TN_ACTION_DELETE, "Deleted"},     {R, A, TN_ACTION_RESTORE, "Restored"},
  };
  int n_allowed = 0;
  for (size_t i = 0; i < 5; i++)
    for (size_t j = 0; j < 5; j++) {
      if (i == j)
        continue;
      enum tn_action a;
      bool ok = tn_lifecycle_check(states[i], states[j], "acme", "acme", &a, NULL) == 0;
      bool documented = false;
      for (size_t k = 0; k < sizeof doc / sizeof doc[0]; k++)
        if (doc[k].from == states[i] && doc[k].to == states[j]) {
          documented = true;
          cr_assert_eq(a, doc[k].action);
          cr_assert_str_eq(tn_action_event_reason(a), doc[k].reason);
        }
      cr_assert_eq(ok, documented, "%s -> %s", tn_state_name(states[i]), tn_state_name(states[j]));
      n_allowed += ok;
    }
  cr_assert_eq(n_allowed, 8);
}

Test(lifecycle, refusal_messages_name_the_allowed_states) {
  static const struct {
    enum tn_state from, to;
    const char *msg;
  } cases[] = {
      {A, D,
       "transition Active -> Draft is not allowed; from Active the allowed states are: Suspended, Archived"},
      {D, S,
       "transition Draft -> Suspended is not allowed; from Draft the allowed states are: Active, Deleted"},
      {S, D,
       "transition Suspended -> Draft is not allowed; from Suspended the allowed states are: Active, "
       "Archived"},
      {R, S,
       "transition Archived -> Suspended is not allowed; from Archived the allowed states are: Active, "
       "Deleted"},
      {X, A, "transition Deleted -> Active is not allowed; from Deleted the allowed states are: none"},
      {A, X,
       "transition Active -> Deleted is not allowed; from Active the allowed states are: Suspended, "
       "Archived"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    enum tn_action a;
    struct tn_error err = {0};
    cr_assert_eq(tn_lifecycle_check(cases[i].from, cases[i].to, "acme", "acme", &a, &err), TN_EINVALID);
    cr_assert_str_eq(err.message, cases[i].msg);
  }
  char buf[64];
  cr_assert_str_eq(tn_lifecycle_allowed_next(A, buf, sizeof buf), "Suspended, Archived");
  cr_assert_str_eq(tn_lifecycle_allowed_next(TN_STATE_NONE, buf, sizeof buf), "Draft");
}

Test(lifecycle, deletion_needs_the_confirmation) {
  enum tn_action a;
  struct tn_error err = {0};
  cr_assert_eq(tn_lifecycle_check(R, X, "acme", NULL, &a, &err), TN_EINVALID);
  cr_assert_str_eq(err.message,
                   "transition Archived -> Deleted requires spec.deletionConfirmation to equal the "
                   "tenant id \"acme\" (it is empty); set it to confirm that everything the tenant "
                   "owns may be removed");
  cr_assert_eq(tn_lifecycle_check(D, X, "acme", "ACME", &a, &err), TN_EINVALID);
  cr_assert_not_null(strstr(err.message, "(it is different)"), "%s", err.message);
  cr_assert_null(strstr(err.message, "ACME"), "the wrong value is not echoed");
  cr_assert_eq(tn_lifecycle_check(D, X, "acme", "acme ", &a, &err), TN_EINVALID, "no trimming");
  cr_assert_eq(tn_lifecycle_check(R, X, NULL, "acme", &a, &err), TN_EINVALID, "no tenant id: refuse");
  cr_assert_eq(tn_lifecycle_check(R, X, "acme", "acme", &a, &err), 0);
  cr_assert_eq(a, TN_ACTION_DELETE);
  cr_assert_eq(tn_lifecycle_check(X, X, "acme", NULL, &a, &err), 0, "staying Deleted is a no-op");
  cr_assert_eq(a, TN_ACTION_NONE);
}

Test(lifecycle, action_names_and_reasons) {
  static const char *names[] = {"none",   "create",  "activate", "suspend",
                                "resume", "archive", "delete",   "restore"};
  static const char *reasons[] = {NULL,      "Created",  "Activated", "Suspended",
                                  "Resumed", "Archived", "Deleted",   "Restored"};
  for (int i = 0; i < TN_ACTION_COUNT; i++) {
    cr_assert_str_eq(tn_action_name((enum tn_action)i), names[i]);
    if (reasons[i])
      cr_assert_str_eq(tn_action_event_reason((enum tn_action)i), reasons[i]);
    else
      cr_assert_null(tn_action_event_reason((enum tn_action)i));
  }
}

/* ---- correlation ids ----------------------------------------------------------------------------- */

static void assert_uuid_v8(const char *id) {
  cr_assert_eq(strlen(id), 36, "%s", id);
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23)
      cr_assert_eq(id[i], '-', "%s", id);
    else
      cr_assert(isxdigit((unsigned char)id[i]) && !isupper((unsigned char)id[i]), "%s", id);
  }
  cr_assert_eq(id[14], '8', "version 8: %s", id);
  cr_assert(strchr("89ab", id[19]), "RFC 9562 variant: %s", id);
}

Test(lifecycle, correlation_ids_are_stable_and_distinct) {
  char a[37], b[37];
  tn_correlation_id("uid-1", 3, A, S, a);
  tn_correlation_id("uid-1", 3, A, S, b);
  assert_uuid_v8(a);
  cr_assert_str_eq(a, b, "a retry of the same transition keeps its id");

  /* Distinct over uids, generations and every pair of states. */
  enum { N = 2 * 3 * TN_STATE_COUNT * TN_STATE_COUNT };
  static char ids[N][37];
  int n = 0;
  const char *uids[] = {"uid-1", "uid-2"};
  for (int u = 0; u < 2; u++)
    for (long long g = 1; g <= 3; g++)
      for (int f = 0; f < TN_STATE_COUNT; f++)
        for (int t = 0; t < TN_STATE_COUNT; t++) {
          tn_correlation_id(uids[u], g, (enum tn_state)f, (enum tn_state)t, ids[n]);
          assert_uuid_v8(ids[n]);
          for (int k = 0; k < n; k++)
            cr_assert_str_neq(ids[k], ids[n]);
          n++;
        }
  /* Field boundaries matter: ("ab", 1) and ("a", 11)-like collisions are impossible. */
  tn_correlation_id("uid-1", 11, A, S, a);
  tn_correlation_id("uid-11", 1, A, S, b);
  cr_assert_str_neq(a, b);
  tn_correlation_id(NULL, 1, A, S, a);
  tn_correlation_id("", 1, A, S, b);
  cr_assert_str_eq(a, b, "a NULL uid is the empty uid");
}

/* ---- the reconcile plan -------------------------------------------------------------------------- */

static struct tn_tenant tenant(enum tn_state status, enum tn_state spec, const char *conf) {
  static char name[] = "acme", uid[] = "uid-acme";
  struct tn_tenant t = {0};
  t.name = name;
  t.uid = uid;
  t.generation = 4;
  t.status_state = status;
  t.state = spec;
  t.deletion_confirmation = (char *)conf;
  return t;
}

static void assert_step(const struct tn_lifecycle_plan *p, int i, enum tn_state from, enum tn_state to,
                        const char *reason) {
  cr_assert_gt(p->n_steps, i);
  const struct tn_transition *s = &p->steps[i];
  cr_assert_eq(s->from, from, "step %d from %s", i, tn_state_name(s->from));
  cr_assert_eq(s->to, to, "step %d to %s", i, tn_state_name(s->to));
  cr_assert_str_eq(s->event_reason, reason);
  char id[37];
  tn_correlation_id("uid-acme", 4, from, to, id);
  cr_assert_str_eq(s->correlation_id, id);
}

Test(lifecycle, new_tenant_walks_the_shortest_allowed_path) {
  struct tn_lifecycle_plan p;
  struct tn_error err = {0};
  struct tn_tenant t = tenant(TN_STATE_NONE, D, NULL);
  cr_assert_eq(tn_lifecycle_plan(&t, &p, &err), 0);
  cr_assert_eq(p.next, D);
  cr_assert_eq(p.n_steps, 1);
  assert_step(&p, 0, TN_STATE_NONE, D, "Created");

  t = tenant(TN_STATE_NONE, A, NULL);
  cr_assert_eq(tn_lifecycle_plan(&t, &p, &err), 0);
  cr_assert_eq(p.next, A);
  cr_assert_eq(p.n_steps, 2);
  assert_step(&p, 0, TN_STATE_NONE, D, "Created");
  assert_step(&p, 1, D, A, "Activated");

  t = tenant(TN_STATE_NONE, S, NULL);
  cr_assert_eq(tn_lifecycle_plan(&t, &p, &err), 0);
  cr_assert_eq(p.next, S);
  cr_assert_eq(p.n_steps, 3);
  assert_step(&p, 1, D, A, "Activated");
  assert_step(&p, 2, A, S, "Suspended");

  t = tenant(TN_STATE_NONE, R, NULL);
  cr_assert_eq(tn_lifecycle_plan(&t, &p, &err), 0);
  cr_assert_eq(p.next, R);
  cr_assert_eq(p.n_steps, 3);
  assert_step(&p, 2, A, R, "Archived");

  t = tenant(TN_STATE_NONE, X, "acme");
  cr_assert_eq(tn_lifecycle_plan(&t, &p, &err), 0);
  cr_assert_eq(p.next, X);
  cr_assert_eq(p.n_steps, 2);
  assert_step(&p, 1, D, X, "Deleted");
  cr_assert_not(p.refused);

  /* Without the confirmation a new tenant asking for Deleted is created, then refused. */
  t = tenant(TN_STATE_NONE, X, NULL);
  cr_assert_eq(tn_lifecycle_plan(&t, &p, &err), TN_EINVALID);
  cr_assert(p.refused);
  cr_assert_eq(p.next, D);
  cr_assert_eq(p.n_steps, 1);
  assert_step(&p, 0, TN_STATE_NONE, D, "Created");
  cr_assert_not_null(strstr(err.message, "deletionConfirmation"));
}

Test(lifecycle, existing_tenant_moves_one_allowed_step_or_is_refused) {
  for (size_t i = 0; i < 5; i++)
    for (size_t j = 0; j < 5; j++)
      for (int c = CONF_RIGHT; c <= CONF_ABSENT; c++) {
        struct tn_lifecycle_plan p;
        struct tn_error err = {0};
        struct tn_tenant t = tenant(states[i], states[j], conf_value((enum conf)c));
        int rc = tn_lifecycle_plan(&t, &p, &err);
        enum tn_action a;
        int want = tn_lifecycle_check(states[i], states[j], "acme", conf_value((enum conf)c), &a, NULL);
        cr_assert_eq(rc, want);
        if (rc == 0) {
          cr_assert_eq(p.next, states[j]);
          cr_assert_not(p.refused);
          if (i == j) {
            cr_assert_eq(p.n_steps, 0, "a no-op takes no step and records no event");
          } else {
            cr_assert_eq(p.n_steps, 1);
            assert_step(&p, 0, states[i], states[j], tn_action_event_reason(a));
          }
        } else {
          cr_assert(p.refused);
          cr_assert_eq(p.next, states[i], "refused: status.state stays");
          cr_assert_eq(p.n_steps, 0);
          cr_assert_str_eq(err.reason, "TransitionRefused");
        }
      }
}

Test(lifecycle, plan_is_idempotent) {
  struct tn_lifecycle_plan p1, p2;
  struct tn_tenant t = tenant(A, S, NULL);
  cr_assert_eq(tn_lifecycle_plan(&t, &p1, NULL), 0);
  cr_assert_eq(tn_lifecycle_plan(&t, &p2, NULL), 0);
  cr_assert_str_eq(p1.steps[0].correlation_id, p2.steps[0].correlation_id);
  /* once reached, the same spec is a no-op */
  t = tenant(S, S, NULL);
  cr_assert_eq(tn_lifecycle_plan(&t, &p2, NULL), 0);
  cr_assert_eq(p2.n_steps, 0);
  cr_assert_eq(p2.next, S);
}
