/* test_self_writes.c - the watch events that only bring back the operator's own writes
 * (converge/self_writes.h, issue 18): each is recognised once, anything else is not. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>

#include "converge/self_writes.h"
#include "util/clock.h"

static json_t *obj(const char *kind, const char *ns, const char *name, const char *rv) {
  json_t *o = json_pack("{s:s,s:{s:s,s:s}}", "kind", kind, "metadata", "name", name, "resourceVersion", rv);
  if (ns)
    json_object_set_new(json_object_get(o, "metadata"), "namespace", json_string(ns));
  return o;
}

Test(self_writes, a_created_object_s_added_event_is_ours_once) {
  struct tn_self_writes *s = tn_self_writes_new();
  cr_assert_not_null(s);
  tn_self_writes_created(s, "NetworkPolicy", "acme-prod", "allow-same-tenant");
  tn_self_writes_created(s, "Namespace", NULL, "acme-prod");
  cr_assert_eq(tn_self_writes_len(s), 2);
  json_t *np = obj("NetworkPolicy", "acme-prod", "allow-same-tenant", "101");
  json_t *ns = obj("Namespace", NULL, "acme-prod", "100");
  json_t *other = obj("NetworkPolicy", "acme-staging", "allow-same-tenant", "102");
  cr_assert(tn_self_writes_take_added(s, np), "the ADDED of the object we created");
  cr_assert_not(tn_self_writes_take_added(s, np), "only once: a second ADDED is someone else's");
  cr_assert_not(tn_self_writes_take_added(s, other), "another namespace, another object");
  cr_assert_not(tn_self_writes_take_modified(s, ns), "a create's note is not a MODIFIED");
  cr_assert(tn_self_writes_take_added(s, ns));
  cr_assert_eq(tn_self_writes_len(s), 0);
  json_decref(np);
  json_decref(ns);
  json_decref(other);
  tn_self_writes_free(s);
  tn_self_writes_free(NULL);
}

Test(self_writes, a_failed_create_is_forgotten) {
  struct tn_self_writes *s = tn_self_writes_new();
  tn_self_writes_created(s, "RoleBinding", "acme-prod", "tenant-admins");
  tn_self_writes_forget(s, "RoleBinding", "acme-prod", "tenant-admins");
  json_t *rb = obj("RoleBinding", "acme-prod", "tenant-admins", "7");
  cr_assert_not(tn_self_writes_take_added(s, rb), "someone else's object of that name is not ours");
  cr_assert_eq(tn_self_writes_len(s), 0);
  json_decref(rb);
  tn_self_writes_free(s);
}

Test(self_writes, a_tenant_write_is_ours_only_at_the_version_it_answered) {
  struct tn_self_writes *s = tn_self_writes_new();
  json_t *finalizer = obj("Tenant", NULL, "acme", "200"), *status = obj("Tenant", NULL, "acme", "205");
  json_t *user = obj("Tenant", NULL, "acme", "203");
  tn_self_writes_wrote(s, finalizer);
  cr_assert(tn_self_writes_take_modified(s, finalizer));
  tn_self_writes_wrote(s, status);
  cr_assert_not(tn_self_writes_take_modified(s, user), "a user's edit in between is not ours");
  cr_assert_not(tn_self_writes_take_added(s, status), "a write's note is not an ADDED");
  cr_assert(tn_self_writes_take_modified(s, status));
  cr_assert_not(tn_self_writes_take_modified(s, status), "only once: a resync or relist is not ours");
  json_decref(finalizer);
  json_decref(status);
  json_decref(user);
  tn_self_writes_free(s);
}

Test(self_writes, notes_whose_event_never_came_expire) {
  struct tn_self_writes *s = tn_self_writes_new();
  json_t *t = obj("Tenant", NULL, "acme", "300");
  tn_self_writes_wrote(s, t);
  tn_self_writes_created(s, "LimitRange", "acme-prod", "limits");
  cr_assert_eq(tn_self_writes_len(s), 2);
  tn_self_writes_expire(s, tn_mono_now() + 1.0);
  cr_assert_eq(tn_self_writes_len(s), 2, "young notes stay");
  tn_self_writes_expire(s, tn_mono_now() + TN_SELF_WRITES_TTL_S + 1.0);
  cr_assert_eq(tn_self_writes_len(s), 0);
  cr_assert_not(tn_self_writes_take_modified(s, t));
  json_decref(t);
  tn_self_writes_free(s);
}

Test(self_writes, many_notes_grow_the_table) {
  struct tn_self_writes *s = tn_self_writes_new();
  char name[32];
  for (int i = 0; i < 2000; i++) {
    snprintf(name, sizeof name, "t-%d", i);
    tn_self_writes_created(s, "Namespace", NULL, name);
  }
  cr_assert_eq(tn_self_writes_len(s), 2000);
  for (int i = 0; i < 2000; i++) {
    snprintf(name, sizeof name, "t-%d", i);
    json_t *o = obj("Namespace", NULL, name, "1");
    cr_assert(tn_self_writes_take_added(s, o), "%s", name);
    json_decref(o);
  }
  cr_assert_eq(tn_self_writes_len(s), 0);
  tn_self_writes_free(s);
}

/* The watch event of a tenant write can be dispatched before the write's answer reaches the
 * reconcile: while a write is in flight, the tenant's MODIFIED events are held; done drops the
 * write's own and hands the others (someone else's changes) to the release callback. */
struct released {
  int ours, n, tags[8];
  char names[8][32];
};

static void on_release(void *ud, const char *name, int tag) {
  struct released *r = ud;
  if (tag == TN_SELF_WRITES_OURS) {
    r->ours++;
    return;
  }
  if (r->n < 8) {
    r->tags[r->n] = tag;
    snprintf(r->names[r->n], sizeof r->names[r->n], "%s", name);
    r->n++;
  }
}

Test(self_writes, events_during_a_write_in_flight_are_held_then_settled) {
  struct tn_self_writes *s = tn_self_writes_new();
  struct released r = {0};
  tn_self_writes_set_release(s, on_release, &r);
  json_t *ours = obj("Tenant", NULL, "acme", "500"), *theirs = obj("Tenant", NULL, "acme", "501");
  json_t *other = obj("Tenant", NULL, "globex", "502");

  /* Our write's event first, then its answer: held, then dropped as ours. */
  tn_self_writes_writing(s, "Tenant", NULL, "acme");
  cr_assert_eq(tn_self_writes_take_modified_tag(s, ours, 7), TN_SELF_WRITES_HELD);
  cr_assert_eq(tn_self_writes_take_modified_tag(s, other, 7), TN_SELF_WRITES_NOT_OURS,
               "another tenant's event is not held");
  tn_self_writes_write_done(s, "Tenant", NULL, "acme", ours);
  cr_assert_eq(r.ours, 1);
  cr_assert_eq(r.n, 0, "our own event is not released as a change");
  cr_assert_eq(tn_self_writes_len(s), 0, "nothing left to wait for");

  /* Someone else's change and ours both arrive during the write: only theirs is released. */
  tn_self_writes_writing(s, "Tenant", NULL, "acme");
  cr_assert_eq(tn_self_writes_take_modified_tag(s, theirs, 3), TN_SELF_WRITES_HELD);
  cr_assert_eq(tn_self_writes_take_modified_tag(s, ours, 4), TN_SELF_WRITES_HELD);
  tn_self_writes_write_done(s, "Tenant", NULL, "acme", ours);
  cr_assert_eq(r.ours, 2);
  cr_assert_eq(r.n, 1);
  cr_assert_eq(r.tags[0], 3);
  cr_assert_str_eq(r.names[0], "acme");

  /* The answer first: the event that comes later is recognised by its version, as before. */
  tn_self_writes_writing(s, "Tenant", NULL, "acme");
  tn_self_writes_write_done(s, "Tenant", NULL, "acme", ours);
  cr_assert_eq(tn_self_writes_take_modified_tag(s, ours, 1), TN_SELF_WRITES_TAKEN);
  cr_assert_eq(tn_self_writes_take_modified_tag(s, ours, 1), TN_SELF_WRITES_NOT_OURS, "only once");

  /* A failed write releases everything held: nothing is lost. */
  tn_self_writes_writing(s, "Tenant", NULL, "acme");
  cr_assert_eq(tn_self_writes_take_modified_tag(s, theirs, 5), TN_SELF_WRITES_HELD);
  tn_self_writes_write_done(s, "Tenant", NULL, "acme", NULL);
  cr_assert_eq(r.n, 2);
  cr_assert_eq(r.tags[1], 5);
  cr_assert_eq(tn_self_writes_len(s), 0);

  /* A write in flight never expires (its held events must be released), and two writes of one
   * object (finalizer, then status) are both recognised. */
  tn_self_writes_writing(s, "Tenant", NULL, "acme");
  tn_self_writes_expire(s, tn_mono_now() + TN_SELF_WRITES_TTL_S + 10);
  cr_assert_eq(tn_self_writes_len(s), 1);
  tn_self_writes_write_done(s, "Tenant", NULL, "acme", ours);
  tn_self_writes_writing(s, "Tenant", NULL, "acme");
  tn_self_writes_write_done(s, "Tenant", NULL, "acme", theirs);
  cr_assert(tn_self_writes_take_modified(s, ours), "the first write's event");
  cr_assert(tn_self_writes_take_modified(s, theirs), "the second write's event");
  cr_assert_eq(tn_self_writes_len(s), 0);
  json_decref(ours);
  json_decref(theirs);
  json_decref(other);
  tn_self_writes_free(s);
}
