/* test_events.c - the event recorder's pure core: Event objects, dedup keys, and series
 * bookkeeping (when to create, when to patch, when a series ends) with a fake clock. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/events.h"

/* 2026-01-02T03:04:05.678901Z */
#define WALL 1767323045.678901

static const struct tn_object_ref tenant = {.api_version = "tenancy.dev/v1alpha1",
                                            .kind = "Tenant",
                                            .name = "acme",
                                            .uid = "7d5c0a4e-0000-4000-8000-000000000001",
                                            .resource_version = "123"};

static const char *str(const json_t *o, const char *path1, const char *path2) {
  const json_t *v = json_object_get(o, path1);
  if (path2)
    v = json_object_get(v, path2);
  return json_string_value(v);
}

static json_t *build(const struct tn_object_ref *ref, const char *type, const char *reason, const char *note,
                     const char *suffix) {
  json_t *ev = tn_event_build(TN_REPORTING_CONTROLLER, "tenancy-operator-host1", ref, type, reason,
                              "Reconcile", note, suffix, WALL);
  cr_assert_not_null(ev);
  return ev;
}

Test(event_object, shape_for_a_cluster_scoped_object) {
  json_t *ev =
      build(&tenant, TN_EVENT_NORMAL, "Activated", "tenant activated (correlation c-1)", "0123456789abcdef");
  cr_assert_str_eq(str(ev, "apiVersion", NULL), "events.k8s.io/v1");
  cr_assert_str_eq(str(ev, "kind", NULL), "Event");
  cr_assert_str_eq(str(ev, "metadata", "name"), "acme.0123456789abcdef");
  cr_assert_str_eq(str(ev, "metadata", "namespace"), "default",
                   "cluster-scoped objects' Events go to default");
  cr_assert_str_eq(str(ev, "eventTime", NULL), "2026-01-02T03:04:05.678901Z");
  cr_assert_str_eq(str(ev, "reportingController", NULL), "tenancy.dev/tenancy-operator");
  cr_assert_str_eq(str(ev, "reportingInstance", NULL), "tenancy-operator-host1");
  cr_assert_str_eq(str(ev, "action", NULL), "Reconcile");
  cr_assert_str_eq(str(ev, "reason", NULL), "Activated");
  cr_assert_str_eq(str(ev, "type", NULL), "Normal");
  cr_assert_str_eq(str(ev, "note", NULL), "tenant activated (correlation c-1)");
  cr_assert_null(json_object_get(ev, "series"), "a first occurrence has no series");
  json_t *reg = json_object_get(ev, "regarding");
  char *s = json_dumps(reg, JSON_COMPACT | JSON_SORT_KEYS);
  cr_assert_str_eq(s, "{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"name\":\"acme\","
                      "\"resourceVersion\":\"123\",\"uid\":\"7d5c0a4e-0000-4000-8000-000000000001\"}");
  free(s);
  json_decref(ev);
}

Test(event_object, a_namespaced_object_keeps_its_namespace) {
  struct tn_object_ref ns_obj = {
      .api_version = "v1", .kind = "ResourceQuota", .name = "tenant-quota", .namespace = "acme-prod"};
  json_t *ev = build(&ns_obj, TN_EVENT_WARNING, "DriftRepaired", "x", "00000000000000ff");
  cr_assert_str_eq(str(ev, "metadata", "namespace"), "acme-prod");
  cr_assert_str_eq(str(ev, "regarding", "namespace"), "acme-prod");
  cr_assert_str_eq(str(ev, "type", NULL), "Warning");
  json_decref(ev);
}

Test(event_object, a_long_name_is_cut_to_a_valid_name) {
  char longname[254];
  memset(longname, 'a', 253);
  longname[253] = '\0';
  longname[235] = '-'; /* the cut lands right after a dash: it must not end the name part */
  struct tn_object_ref ref = {.kind = "Tenant", .name = longname};
  json_t *ev = build(&ref, TN_EVENT_NORMAL, "Created", "x", "0123456789abcdef");
  const char *name = str(ev, "metadata", "name");
  cr_assert_leq(strlen(name), 253);
  const char *dot = strrchr(name, '.');
  cr_assert_str_eq(dot, ".0123456789abcdef");
  cr_assert_neq(dot[-1], '-', "%s", name);
  json_decref(ev);
}

Test(event_object, the_note_is_cut_to_1024_bytes_on_a_utf8_boundary) {
  char note[2100];
  memset(note, 'x', sizeof note - 1);
  note[sizeof note - 1] = '\0';
  json_t *ev = build(&tenant, TN_EVENT_NORMAL, "Created", note, "0123456789abcdef");
  const char *n = str(ev, "note", NULL);
  cr_assert_eq(strlen(n), TN_EVENT_NOTE_MAX);
  cr_assert_str_eq(n + TN_EVENT_NOTE_MAX - 3, "...");
  json_decref(ev);

  /* "é" is two bytes; place one across the cut. */
  memset(note, 'x', sizeof note - 1);
  for (size_t i = 1000; i + 1 < sizeof note - 1; i += 2)
    memcpy(note + i, "\xc3\xa9", 2);
  ev = build(&tenant, TN_EVENT_NORMAL, "Created", note, "0123456789abcdef");
  cr_assert_not_null(json_object_get(ev, "note"));
  n = str(ev, "note", NULL);
  cr_assert_leq(strlen(n), TN_EVENT_NOTE_MAX);
  cr_assert_str_eq(n + strlen(n) - 3, "...");
  json_decref(ev);

  /* A note that is not UTF-8 is still sent, with the bad bytes replaced. */
  ev = build(&tenant, TN_EVENT_NORMAL, "Created", "bad \xff byte", "0123456789abcdef");
  cr_assert_str_eq(str(ev, "note", NULL), "bad ? byte");
  json_decref(ev);
}

Test(event_key, same_occurrence_same_key) {
  json_t *a = build(&tenant, TN_EVENT_NORMAL, "Activated", "n", "0000000000000001");
  json_t *b = tn_event_build(TN_REPORTING_CONTROLLER, "tenancy-operator-host1", &tenant, TN_EVENT_NORMAL,
                             "Activated", "Reconcile", "n", "0000000000000002", WALL + 100);
  char *ka = tn_event_key(a), *kb = tn_event_key(b);
  cr_assert_str_eq(ka, kb, "name and time are not part of the key");
  free(kb);
  json_decref(b);

  struct tn_object_ref other_uid = tenant;
  other_uid.uid = "7d5c0a4e-0000-4000-8000-000000000002";
  json_t *variants[] = {
      build(&tenant, TN_EVENT_WARNING, "Activated", "n", "0000000000000003"),
      build(&tenant, TN_EVENT_NORMAL, "Suspended", "n", "0000000000000004"),
      build(&tenant, TN_EVENT_NORMAL, "Activated", "other note", "0000000000000005"),
      build(&other_uid, TN_EVENT_NORMAL, "Activated", "n", "0000000000000006"),
      tn_event_build(TN_REPORTING_CONTROLLER, "tenancy-operator-host1", &tenant, TN_EVENT_NORMAL, "Activated",
                     "Delete", "n", "0000000000000007", WALL),
      tn_event_build(TN_REPORTING_CONTROLLER, "tenancy-operator-host2", &tenant, TN_EVENT_NORMAL, "Activated",
                     "Reconcile", "n", "0000000000000008", WALL),
  };
  for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
    char *k = tn_event_key(variants[i]);
    cr_assert_str_neq(ka, k, "variant %zu must have its own key", i);
    free(k);
    json_decref(variants[i]);
  }
  free(ka);
  json_decref(a);
}

/* An occurrence at monotonic time t. */
static struct tn_event_series *occur(struct tn_event_cache *c, json_t *ev, double t, bool *is_new) {
  char *k = tn_event_key(ev);
  struct tn_event_series *s = tn_event_cache_observe(c, ev, k, t, WALL + t, is_new);
  free(k);
  cr_assert_not_null(s);
  return s;
}

Test(event_series, repeats_fold_into_one_series_with_rate_limited_patches) {
  struct tn_event_cache c;
  tn_event_cache_init(&c, 16);
  json_t *ev =
      build(&tenant, TN_EVENT_WARNING, "PolicyDenied", "region us-east-1 not allowed", "00000000000000aa");
  bool is_new;

  struct tn_event_series *s = occur(&c, ev, 0, &is_new);
  cr_assert(is_new);
  cr_assert_eq(s->count, 1);
  cr_assert(tn_event_series_due(s, 0, false), "the first occurrence is created at once");
  tn_event_series_after_write(s, TN_EVENT_WRITTEN, 0);
  cr_assert_not(tn_event_series_due(s, 0, false));

  cr_assert_eq(occur(&c, ev, 1, &is_new), s);
  cr_assert_not(is_new);
  cr_assert_eq(s->count, 2);
  cr_assert(tn_event_series_due(s, 1, false), "becoming a series is written at once, like client-go");
  tn_event_series_after_write(s, TN_EVENT_WRITTEN, 1);
  cr_assert_eq(s->sent_count, 2);

  for (int i = 0; i < 3; i++)
    (void)occur(&c, ev, 2 + i, &is_new);
  cr_assert_eq(s->count, 5);
  cr_assert_eq(c.n, 1, "five occurrences, one Event");
  cr_assert_not(tn_event_series_due(s, 5, false), "aggregated: at most one patch per 30 s");
  cr_assert_not(tn_event_series_due(s, 30.9, false));
  cr_assert(tn_event_series_due(s, 31, false));
  cr_assert(tn_event_series_due(s, 5, true), "a flush writes it at once");

  json_t *patch = tn_event_series_patch(s);
  char *p = json_dumps(patch, JSON_COMPACT | JSON_SORT_KEYS);
  cr_assert_str_eq(p, "{\"series\":{\"count\":5,\"lastObservedTime\":\"2026-01-02T03:04:09.678901Z\"}}");
  free(p);
  json_decref(patch);
  tn_event_series_after_write(s, TN_EVENT_WRITTEN, 31);
  cr_assert_not(tn_event_series_due(s, 100, true), "nothing pending: even a flush writes nothing");

  json_decref(ev);
  tn_event_cache_cleanup(&c);
}

Test(event_series, a_repeat_after_six_minutes_starts_a_new_event) {
  struct tn_event_cache c;
  tn_event_cache_init(&c, 16);
  json_t *ev = build(&tenant, TN_EVENT_NORMAL, "DriftRepaired", "quota restored", "00000000000000bb");
  bool is_new;
  struct tn_event_series *s = occur(&c, ev, 0, &is_new);
  tn_event_series_after_write(s, TN_EVENT_WRITTEN, 0);
  cr_assert_eq(occur(&c, ev, 359, &is_new), s, "within 6 minutes of the last occurrence");
  cr_assert_eq(s->count, 2);
  tn_event_series_after_write(s, TN_EVENT_WRITTEN, 359);
  cr_assert_eq(occur(&c, ev, 700, &is_new), s, "the window runs from the last occurrence");
  cr_assert_eq(s->count, 3);
  cr_assert_not(tn_event_series_finished(s, 1059.9));
  cr_assert(tn_event_series_finished(s, 1060));
  cr_assert(tn_event_series_due(s, 1060, false), "a finished series writes its final count at once");

  struct tn_event_series *t = occur(&c, ev, 1060, &is_new);
  cr_assert(is_new);
  cr_assert_neq(t, s);
  cr_assert_eq(t->count, 1);
  cr_assert_eq(c.n, 2);
  cr_assert_eq(tn_event_cache_expire(&c, 1061), 0, "the old series still has a count to write");
  tn_event_series_after_write(s, TN_EVENT_WRITTEN, 1061);
  tn_event_series_after_write(t, TN_EVENT_WRITTEN, 1061);
  cr_assert_eq(tn_event_cache_expire(&c, 1062), 1);
  cr_assert_eq(c.n, 1);
  cr_assert_eq(c.items[0], t);
  cr_assert_eq(tn_event_cache_expire(&c, 1060 + 360), 1, "a singleton is forgotten after 6 minutes too");
  cr_assert_eq(c.n, 0);
  json_decref(ev);
  tn_event_cache_cleanup(&c);
}

Test(event_series, transient_failures_back_off_then_give_up) {
  struct tn_event_cache c;
  tn_event_cache_init(&c, 16);
  json_t *ev = build(&tenant, TN_EVENT_NORMAL, "Created", "n", "00000000000000cc");
  bool is_new;
  struct tn_event_series *s = occur(&c, ev, 0, &is_new);
  tn_event_series_after_write(s, TN_EVENT_RETRY, 0);
  cr_assert_eq(s->sent_count, 0);
  cr_assert_not(tn_event_series_due(s, 9.9, false));
  cr_assert(tn_event_series_due(s, 10, false));
  for (int i = 1; i < TN_EVENT_MAX_TRIES - 1; i++)
    tn_event_series_after_write(s, TN_EVENT_RETRY, 10.0 * i);
  cr_assert_eq(s->sent_count, 0);
  tn_event_series_after_write(s, TN_EVENT_RETRY, 200);
  cr_assert_eq(s->sent_count, 1, "given up after %d tries", TN_EVENT_MAX_TRIES);
  cr_assert_not(tn_event_series_due(s, 1000, true));

  /* A rejection (e.g. 422) is not retried. */
  json_t *ev2 = build(&tenant, TN_EVENT_NORMAL, "Deleted", "n", "00000000000000dd");
  struct tn_event_series *r = occur(&c, ev2, 0, &is_new);
  tn_event_series_after_write(r, TN_EVENT_REJECTED, 0);
  cr_assert_not(tn_event_series_due(r, 1000, true));
  json_decref(ev);
  json_decref(ev2);
  tn_event_cache_cleanup(&c);
}

Test(event_series, create_body_carries_the_series_when_repeated) {
  struct tn_event_cache c;
  tn_event_cache_init(&c, 16);
  json_t *ev = build(&tenant, TN_EVENT_NORMAL, "Created", "n", "00000000000000ee");
  bool is_new;
  struct tn_event_series *s = occur(&c, ev, 0, &is_new);
  json_t *body = tn_event_series_create_body(s);
  cr_assert_null(json_object_get(body, "series"));
  cr_assert_str_eq(str(body, "metadata", "name"), "acme.00000000000000ee");
  json_decref(body);
  (void)occur(&c, ev, 3, &is_new);
  body = tn_event_series_create_body(s);
  cr_assert_eq(json_integer_value(json_object_get(json_object_get(body, "series"), "count")), 2);
  cr_assert_str_eq(str(body, "series", "lastObservedTime"), "2026-01-02T03:04:08.678901Z");
  cr_assert_null(strstr(s->event, "\"series\""), "the cached Event is not modified");
  json_decref(body);
  json_decref(ev);
  tn_event_cache_cleanup(&c);
}

Test(event_series, the_cache_is_bounded) {
  struct tn_event_cache c;
  tn_event_cache_init(&c, 2);
  bool is_new;
  json_t *a = build(&tenant, TN_EVENT_NORMAL, "Created", "a", "0000000000000001");
  json_t *b = build(&tenant, TN_EVENT_NORMAL, "Created", "b", "0000000000000002");
  json_t *d = build(&tenant, TN_EVENT_NORMAL, "Created", "d", "0000000000000003");
  (void)occur(&c, a, 0, &is_new);
  (void)occur(&c, b, 1, &is_new);
  (void)occur(&c, a, 2, &is_new);
  (void)occur(&c, d, 3, &is_new);
  cr_assert_eq(c.n, 2);
  char *kb = tn_event_key(b);
  for (size_t i = 0; i < c.n; i++)
    cr_assert_str_neq(c.items[i]->key, kb, "the least recently seen series is forgotten");
  free(kb);
  json_decref(a);
  json_decref(b);
  json_decref(d);
  tn_event_cache_cleanup(&c);
}

static int dummy_kube;

Test(recorder, refuses_malformed_events_without_queueing) {
  struct tn_recorder *rec = NULL;
  cr_assert_eq(tn_recorder_new(NULL, TN_REPORTING_CONTROLLER, NULL, &rec), -EINVAL);
  /* No event is queued below, so the recorder never talks to the (absent) server. */
  cr_assert_eq(tn_recorder_new((struct tn_kube *)&dummy_kube, TN_REPORTING_CONTROLLER, NULL, &rec), 0);
  cr_assert_eq(tn_recorder_eventf(rec, &tenant, "Info", "Created", "Reconcile", "x"), -EINVAL);
  cr_assert_eq(tn_recorder_eventf(rec, &tenant, TN_EVENT_NORMAL, "", "Reconcile", "x"), -EINVAL);
  cr_assert_eq(tn_recorder_eventf(rec, &tenant, TN_EVENT_NORMAL, "Created", NULL, "x"), -EINVAL);
  struct tn_object_ref nameless = {.kind = "Tenant"};
  cr_assert_eq(tn_recorder_eventf(rec, &nameless, TN_EVENT_NORMAL, "Created", "Reconcile", "x"), -EINVAL);
  cr_assert_eq(tn_recorder_flush(rec, 5), 0);
  cr_assert_eq(tn_recorder_dropped(rec), 0);
  tn_recorder_free(rec);
  cr_assert_eq(tn_recorder_eventf(NULL, &tenant, TN_EVENT_NORMAL, "Created", "Reconcile", "x"), 0,
               "no recorder: nothing to do");
}
