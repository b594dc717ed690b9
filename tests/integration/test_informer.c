/* test_informer.c - the informer against the local API server: handlers see create, update and
 * delete in order from the informer's own thread; the cache fills by streaming list and by the
 * paged fallback; a watch resumed from a compacted resourceVersion relists and converges; the
 * watch reconnects when the server ends it; resync; transforms and indexes; stop is prompt. */
#define _GNU_SOURCE /* asprintf */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "kube/client.h"
#include "kube/informer.h"
#include "runtime/log.h"
#include "tn_kube_test.h"
#include "tn_test.h"

static const struct tn_gvr configmaps = {"", "v1", "configmaps", true};
static const struct tn_gvr events = {"", "v1", "events", true};
static const struct tn_gvr namespaces = {"", "v1", "namespaces", false};

/* ---- helpers ------------------------------------------------------------------------------------ */

static struct tn_kube *client(void) {
  if (getenv("TN_TEST_DEBUG"))
    tn_log_set_level(TN_LOG_DEBUG);
  struct tn_kube_config cfg;
  struct tn_error err;
  cr_assert_eq(tn_kube_config_load(tn_test_env("KUBECONFIG"), NULL, &cfg, &err), 0, "%s", err.message);
  struct tn_kube *k = NULL;
  cr_assert_eq(tn_kube_new(&cfg, NULL, &k, &err), 0, "%s", err.message);
  tn_kube_config_cleanup(&cfg);
  return k;
}

/* A ConfigMap labelled test=informer (the informers below select on it, so the namespace's
 * kube-root-ca.crt never shows up) with data {v: value}. */
static void cm_create(struct tn_kube *k, const char *ns, const char *name, const char *value) {
  json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}}, s:{s:s}}", "apiVersion", "v1", "kind",
                          "ConfigMap", "metadata", "name", name, "labels", "test", "informer", "group",
                          name[0] == 'a' ? "a" : "b", "data", "v", value);
  struct tn_error err;
  cr_assert_eq(tn_kube_create(k, &configmaps, ns, obj, NULL, &err), 0, "create %s: %s", name, err.message);
  json_decref(obj);
}

static void cm_set(struct tn_kube *k, const char *ns, const char *name, const char *value) {
  json_t *patch = json_pack("{s:{s:s}}", "data", "v", value);
  struct tn_error err;
  cr_assert_eq(tn_kube_merge_patch(k, &configmaps, ns, name, patch, NULL, NULL, &err), 0, "patch %s: %s",
               name, err.message);
  json_decref(patch);
}

static void obj_delete(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name) {
  struct tn_error err;
  cr_assert_eq(tn_kube_delete(k, gvr, ns, name, NULL, &err), 0, "delete %s: %s", name, err.message);
}

static const char *name_of(const json_t *o) {
  return json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
}
static const char *rv_of(const json_t *o) {
  return json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"));
}
static const char *data_v(const json_t *o) {
  return json_string_value(json_object_get(json_object_get(o, "data"), "v"));
}

/* Records handler calls as ["add"|"update"|"resync"|"delete", obj, old] and checks that they
 * come from the informer's dispatch thread, one at a time. */
struct rec {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  json_t *log;
  atomic_int in_flight;
  atomic_int concurrent;
  atomic_int wrong_thread;
  const char *thread; /* expected thread name */
};

static void rec_init(struct rec *r, const char *thread) {
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cond, NULL);
  r->log = json_array();
  atomic_init(&r->in_flight, 0);
  atomic_init(&r->concurrent, 0);
  atomic_init(&r->wrong_thread, 0);
  r->thread = thread;
}

static void rec_cleanup(struct rec *r) {
  json_decref(r->log);
  pthread_cond_destroy(&r->cond);
  pthread_mutex_destroy(&r->mu);
}

static void rec_push(struct rec *r, const char *what, json_t *obj, json_t *old) {
  if (atomic_fetch_add(&r->in_flight, 1) != 0)
    atomic_store(&r->concurrent, 1);
  char name[16] = "";
  prctl(PR_GET_NAME, name, 0, 0, 0);
  if (strcmp(name, r->thread) != 0)
    atomic_store(&r->wrong_thread, 1);
  pthread_mutex_lock(&r->mu);
  json_array_append_new(r->log, json_pack("[s O* O*]", what, obj, old));
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->mu);
  usleep(1000); /* widen the window in which a second concurrent call would be caught */
  atomic_fetch_sub(&r->in_flight, 1);
}

/* Handlers keep deep copies: the objects are only borrowed for the call. */
static void on_add(void *ud, json_t *obj) {
  json_t *c = json_deep_copy(obj);
  rec_push(ud, "add", c, NULL);
  json_decref(c);
}
static void on_update(void *ud, json_t *old, json_t *cur) {
  json_t *c = json_deep_copy(cur), *o = json_deep_copy(old);
  rec_push(ud, old == cur ? "resync" : "update", c, o);
  json_decref(c);
  json_decref(o);
}
static void on_delete(void *ud, json_t *obj) {
  json_t *c = json_deep_copy(obj);
  rec_push(ud, "delete", c, NULL);
  json_decref(c);
}

static const struct tn_informer_handlers rec_handlers = {on_add, on_update, on_delete, NULL};

static void rec_attach(struct tn_informer *inf, struct rec *r) {
  struct tn_informer_handlers h = rec_handlers;
  h.ud = r;
  struct tn_error err;
  cr_assert_eq(tn_informer_add_handlers(inf, &h, &err), 0, "%s", err.message);
}

/* Waits until the log holds at least n entries; returns whether it did within timeout_s. */
static bool rec_wait(struct rec *r, size_t n, double timeout_s) {
  double end = tn_test_now() + timeout_s;
  pthread_mutex_lock(&r->mu);
  while (json_array_size(r->log) < n && tn_test_now() < end) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->cond, &r->mu, &ts);
  }
  bool ok = json_array_size(r->log) >= n;
  pthread_mutex_unlock(&r->mu);
  return ok;
}

static size_t rec_len(struct rec *r) {
  pthread_mutex_lock(&r->mu);
  size_t n = json_array_size(r->log);
  pthread_mutex_unlock(&r->mu);
  return n;
}

/* The i-th entry: what, obj, old (borrowed from the log, which only grows). */
static const char *rec_at(struct rec *r, size_t i, json_t **obj, json_t **old) {
  pthread_mutex_lock(&r->mu);
  json_t *e = json_array_get(r->log, i);
  pthread_mutex_unlock(&r->mu);
  cr_assert_not_null(e, "no handler call #%zu", i);
  if (obj)
    *obj = json_array_get(e, 1);
  if (old)
    *old = json_array_get(e, 2);
  return json_string_value(json_array_get(e, 0));
}

/* Index of the first entry with this kind and object name at or after `from`, or -1. */
static long rec_find(struct rec *r, size_t from, const char *what, const char *name) {
  for (size_t i = from; i < rec_len(r); i++) {
    json_t *obj;
    if (strcmp(rec_at(r, i, &obj, NULL), what) == 0 && strcmp(name_of(obj), name) == 0)
      return (long)i;
  }
  return -1;
}

static struct tn_informer *informer_new(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns,
                                        struct tn_informer_opts *extra) {
  struct tn_informer_opts o = extra ? *extra : (struct tn_informer_opts){0};
  o.gvr = *gvr;
  o.namespace = ns;
  if (!o.label_selector)
    o.label_selector = "test=informer";
  struct tn_informer *inf = NULL;
  struct tn_error err;
  cr_assert_eq(tn_informer_new(k, &o, NULL, &inf, &err), 0, "%s", err.message);
  return inf;
}

static void start_and_sync(struct tn_informer *inf) {
  struct tn_error err;
  cr_assert_eq(tn_informer_start(inf, &err), 0, "%s", err.message);
  cr_assert_eq(tn_informer_wait_for_sync(inf, 60), 0, "the informer did not sync");
  cr_assert(tn_informer_has_synced(inf));
}

/* The sorted keys of the cache, joined by ','. */
static char *cache_keys(struct tn_informer *inf) {
  json_t *keys = tn_store_keys(tn_informer_store(inf));
  size_t n = json_array_size(keys);
  const char **v = calloc(n + 1, sizeof *v);
  for (size_t i = 0; i < n; i++)
    v[i] = json_string_value(json_array_get(keys, i));
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
      const char *t = v[j];
      v[j] = v[j - 1];
      v[j - 1] = t;
    }
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  for (size_t i = 0; i < n; i++)
    tn_buf_printf(&b, "%s%s", i ? "," : "", v[i]);
  free(v);
  json_decref(keys);
  return tn_buf_take(&b);
}

/* Polls until the cache's keys equal want. */
static bool cache_keys_become(struct tn_informer *inf, const char *want, double timeout_s) {
  double end = tn_test_now() + timeout_s;
  for (;;) {
    char *got = cache_keys(inf);
    bool ok = strcmp(got, want) == 0;
    free(got);
    if (ok || tn_test_now() > end)
      return ok;
    usleep(50 * 1000);
  }
}

/* ---- tests -------------------------------------------------------------------------------------- */

Test(informer, handlers_see_create_update_delete_in_order, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "informer");
  struct tn_informer *inf = informer_new(k, &configmaps, ns, NULL);
  struct rec r1, r2;
  rec_init(&r1, "inf/configmaps");
  rec_init(&r2, "inf/configmaps");
  rec_attach(inf, &r1);
  rec_attach(inf, &r2); /* a second handler set sees the same calls */
  start_and_sync(inf);
  cr_assert_eq(rec_len(&r1), 0, "the namespace starts empty (kube-root-ca.crt is not selected)");

  cm_create(k, ns, "a", "v1");
  cm_set(k, ns, "a", "v2");
  cm_create(k, ns, "b", "x");
  obj_delete(k, &configmaps, ns, "a");
  cr_assert(rec_wait(&r1, 4, 30), "got %zu handler calls", rec_len(&r1));
  cr_assert(rec_wait(&r2, 4, 30));

  json_t *obj, *old, *created;
  cr_assert_str_eq(rec_at(&r1, 0, &created, NULL), "add");
  cr_assert_str_eq(name_of(created), "a");
  cr_assert_str_eq(data_v(created), "v1");
  cr_assert_str_eq(json_string_value(json_object_get(created, "kind")), "ConfigMap");

  cr_assert_str_eq(rec_at(&r1, 1, &obj, &old), "update");
  cr_assert_str_eq(name_of(obj), "a");
  cr_assert_str_eq(data_v(old), "v1", "on_update gets the previous state");
  cr_assert_str_eq(data_v(obj), "v2");
  cr_assert_str_eq(rv_of(old), rv_of(created));
  cr_assert_gt(atoll(rv_of(obj)), atoll(rv_of(old)));

  cr_assert_str_eq(rec_at(&r1, 2, &obj, NULL), "add");
  cr_assert_str_eq(name_of(obj), "b");

  cr_assert_str_eq(rec_at(&r1, 3, &obj, NULL), "delete");
  cr_assert_str_eq(name_of(obj), "a");
  cr_assert_str_eq(data_v(obj), "v2", "on_delete gets the last known state");

  cr_assert(json_equal(r1.log, r2.log), "both handler sets saw the same calls");
  cr_assert_eq(atomic_load(&r1.concurrent), 0, "handlers were called concurrently");
  cr_assert_eq(atomic_load(&r1.wrong_thread), 0, "handlers ran on another thread than the dispatcher");

  /* The cache agrees. */
  char key[128];
  snprintf(key, sizeof key, "%s/a", ns);
  cr_assert_null(tn_informer_get(inf, key));
  snprintf(key, sizeof key, "%s/b", ns);
  json_t *b = tn_informer_get(inf, key);
  cr_assert_not_null(b);
  cr_assert_str_eq(data_v(b), "x");
  json_decref(b);
  json_t *all = tn_informer_list(inf);
  cr_assert_eq(json_array_size(all), 1);
  json_decref(all);

  struct tn_informer_stats st;
  tn_informer_get_stats(inf, &st);
  cr_assert_eq(st.streaming_lists, 1);
  cr_assert_eq(st.relists, 0);
  tn_informer_free(inf);
  rec_cleanup(&r1);
  rec_cleanup(&r2);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

static int by_group(const json_t *obj, void *ud, struct tn_index_values *out) {
  const char *g = json_string_value(
      json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), "group"));
  return g ? tn_index_values_add(out, g) : 0;
}

/* Fills the cache from 25 existing ConfigMaps (a00..a11 in group a, b12..b24 in group b). */
static void fill_from_existing(bool paged) {
  struct tn_kube *k = client();
  char ns[64], name[16];
  tn_test_ns_create(k, ns, sizeof ns, "informer");
  for (int i = 0; i < 25; i++) {
    snprintf(name, sizeof name, "%c%02d", i < 12 ? 'a' : 'b', i);
    cm_create(k, ns, name, "initial");
  }
  struct tn_informer_opts o = {.force_paged_list = paged, .page_size = 7};
  struct tn_informer *inf = informer_new(k, &configmaps, ns, &o);
  struct tn_error err;
  cr_assert_eq(tn_informer_add_index(inf, "group", by_group, NULL, &err), 0);
  struct rec r;
  rec_init(&r, "inf/configmaps");
  rec_attach(inf, &r);
  start_and_sync(inf);

  /* Synced means every initial object was handed to the handlers already. */
  cr_assert_eq(rec_len(&r), 25);
  for (size_t i = 0; i < 25; i++) {
    json_t *obj;
    cr_assert_str_eq(rec_at(&r, i, &obj, NULL), "add");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "kind")), "ConfigMap",
                     "list items get their kind");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "apiVersion")), "v1");
  }
  json_t *all = tn_informer_list(inf);
  cr_assert_eq(json_array_size(all), 25);
  json_decref(all);
  json_t *ga = tn_informer_list_by_index(inf, "group", "a", &err);
  cr_assert_eq(json_array_size(ga), 12);
  json_decref(ga);

  struct tn_informer_stats st;
  tn_informer_get_stats(inf, &st);
  if (paged) {
    cr_assert_eq(st.paged_lists, 1);
    cr_assert_eq(st.streaming_lists, 0, "the paged fallback was forced");
    cr_assert_eq(st.pages, 4, "25 objects at 7 a page");
  } else {
    cr_assert_eq(st.streaming_lists, 1, "the cache was filled by a streaming list");
    cr_assert_eq(st.paged_lists, 0);
    cr_assert_eq(st.pages, 0, "no LIST was made");
    cr_assert(!st.streaming_unsupported);
  }

  /* And the watch that follows keeps it current. */
  cm_set(k, ns, "a03", "changed");
  cm_create(k, ns, "b99", "late");
  cr_assert(rec_wait(&r, 27, 30));
  json_t *obj;
  cr_assert_eq(rec_find(&r, 25, "update", "a03"), 25);
  cr_assert_eq(rec_find(&r, 26, "add", "b99"), 26);
  rec_at(&r, 25, &obj, NULL);
  cr_assert_str_eq(data_v(obj), "changed");
  ga = tn_informer_list_by_index(inf, "group", "b", &err);
  cr_assert_eq(json_array_size(ga), 14);
  json_decref(ga);
  tn_informer_get_stats(inf, &st);
  cr_assert_eq(st.relists, 0);
  tn_informer_free(inf);
  rec_cleanup(&r);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(informer, fills_the_cache_by_streaming_list, .timeout = 120) { fill_from_existing(false); }

Test(informer, fills_the_cache_by_paged_list_when_forced, .timeout = 120) { fill_from_existing(true); }

/* ---- compaction --------------------------------------------------------------------------------- */

static long long etcd_revision(void) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "curl -sS --max-time 10 -X POST '%s/v3/kv/range' -d '{\"key\":\"eA==\"}'",
                      tn_test_env("TENANCY_ETCD_ENDPOINT"));
  cr_assert_eq(rc, 0, "etcd range: %s", out);
  json_t *j = json_loads(out, 0, NULL);
  cr_assert_not_null(j, "etcd range answered: %s", out);
  const char *rev = json_string_value(json_object_get(json_object_get(j, "header"), "revision"));
  cr_assert_not_null(rev, "etcd range answered: %s", out);
  long long r = atoll(rev);
  json_decref(j);
  free(out);
  return r;
}

static void etcd_compact(long long revision) {
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "curl -sS --fail-with-body --max-time 30 -X POST '%s/v3/kv/compaction' "
                      "-d '{\"revision\":\"%lld\",\"physical\":true}'",
                      tn_test_env("TENANCY_ETCD_ENDPOINT"), revision);
  cr_assert_eq(rc, 0, "etcd compaction: %s", out);
  free(out);
}

static void event_create(struct tn_kube *k, const char *ns, const char *name, const char *message) {
  json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:{s:s}}, s:{s:s, s:s, s:s}, s:s, s:s, s:s}", "apiVersion",
                          "v1", "kind", "Event", "metadata", "name", name, "labels", "test", "informer",
                          "involvedObject", "kind", "ConfigMap", "name", "x", "namespace", ns, "reason",
                          "Test", "message", message, "type", "Normal");
  struct tn_error err;
  cr_assert_eq(tn_kube_create(k, &events, ns, obj, NULL, &err), 0, "create event %s: %s", name, err.message);
  json_decref(obj);
}

static const char *message_of(const json_t *o) { return json_string_value(json_object_get(o, "message")); }

/* Events are the API server's one resource without a watch cache, so a watch from a compacted
 * revision really reaches etcd and is answered 410 Expired (with the watch cache, the server
 * would replay the old revision from memory). */
static void relist_after_compaction(bool paged) {
  struct tn_kube *k = client();
  char ns[64], key[128];
  tn_test_ns_create(k, ns, sizeof ns, "informer");
  event_create(k, ns, "e1", "one");
  event_create(k, ns, "e2", "two");
  event_create(k, ns, "e3", "three");
  struct tn_informer_opts o = {.force_paged_list = paged};
  struct tn_informer *inf = informer_new(k, &events, ns, &o);
  struct rec r;
  rec_init(&r, "inf/events");
  rec_attach(inf, &r);
  start_and_sync(inf);
  cr_assert_geq(rec_find(&r, 0, "add", "e1"), 0);
  cr_assert_geq(rec_find(&r, 0, "add", "e2"), 0);
  cr_assert_geq(rec_find(&r, 0, "add", "e3"), 0);
  char *want = NULL;
  cr_assert(asprintf(&want, "%s/e1,%s/e2,%s/e3", ns, ns, ns) > 0);
  cr_assert(cache_keys_become(inf, want, 1));
  free(want);

  /* Disconnect, change things the informer cannot see, compact past its resourceVersion. */
  tn_informer_test_pause(inf);
  char *rv0 = tn_informer_resource_version(inf);
  cr_assert_gt(atoll(rv0), 0);
  json_t *patch = json_pack("{s:s}", "message", "two, changed");
  struct tn_error err;
  cr_assert_eq(tn_kube_merge_patch(k, &events, ns, "e2", patch, NULL, NULL, &err), 0, "%s", err.message);
  json_decref(patch);
  obj_delete(k, &events, ns, "e3");
  event_create(k, ns, "e4", "four");
  size_t before = rec_len(&r);
  long long rev = etcd_revision();
  cr_assert_gt(rev, atoll(rv0) + 2);
  etcd_compact(rev);
  usleep(300 * 1000);
  cr_assert_eq(rec_len(&r), before, "nothing was delivered while paused");

  /* Resume from the compacted resourceVersion: 410, relist, converge. */
  tn_informer_test_resume(inf, rv0);
  cr_assert(asprintf(&want, "%s/e1,%s/e2,%s/e4", ns, ns, ns) > 0);
  cr_assert(cache_keys_become(inf, want, 60), "the cache did not converge to %s", want);
  free(want);
  cr_assert(rec_wait(&r, before + 4, 30), "got %zu handler calls after the relist", rec_len(&r) - before);
  snprintf(key, sizeof key, "%s/e2", ns);
  json_t *e2 = tn_informer_get(inf, key);
  cr_assert_str_eq(message_of(e2), "two, changed");
  json_decref(e2);

  json_t *obj, *old;
  long i = rec_find(&r, before, "update", "e2");
  cr_assert_geq(i, 0, "no update for e2");
  rec_at(&r, (size_t)i, &obj, &old);
  cr_assert_str_eq(message_of(old), "two");
  cr_assert_str_eq(message_of(obj), "two, changed");
  i = rec_find(&r, before, "update", "e1");
  cr_assert_geq(i, 0, "a relist delivers an update even for an unchanged object, as client-go does");
  rec_at(&r, (size_t)i, &obj, &old);
  cr_assert_str_eq(rv_of(obj), rv_of(old));
  cr_assert_geq(rec_find(&r, before, "add", "e4"), 0, "no add for e4");
  i = rec_find(&r, before, "delete", "e3");
  cr_assert_geq(i, 0, "the event deleted while disconnected produced no on_delete");
  rec_at(&r, (size_t)i, &obj, NULL);
  cr_assert_str_eq(message_of(obj), "three", "on_delete gets the last state the cache knew");

  struct tn_informer_stats st;
  tn_informer_get_stats(inf, &st);
  cr_assert_geq(st.expired, 1, "the server did not answer 410");
  cr_assert_geq(st.relists, 1);
  char *rv1 = tn_informer_resource_version(inf);
  cr_assert_geq(atoll(rv1), rev, "the informer watches from after the compaction");
  free(rv1);
  free(rv0);

  /* And it keeps watching. */
  size_t n = rec_len(&r);
  event_create(k, ns, "e5", "five");
  cr_assert(rec_wait(&r, n + 1, 30));
  cr_assert_geq(rec_find(&r, n, "add", "e5"), 0);
  cr_assert_eq(atomic_load(&r.concurrent), 0);
  cr_assert_eq(atomic_load(&r.wrong_thread), 0);
  if (paged) {
    tn_informer_get_stats(inf, &st);
    cr_assert_eq(st.streaming_lists, 0);
    cr_assert_geq(st.paged_lists, 2);
  }
  tn_informer_free(inf);
  rec_cleanup(&r);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(informer, a_watch_from_a_compacted_revision_relists_and_converges, .timeout = 180) {
  relist_after_compaction(false);
}

Test(informer, a_watch_from_a_compacted_revision_relists_by_paged_list_and_converges, .timeout = 180) {
  relist_after_compaction(true);
}

/* ---- reconnects, resync, transform, stop -------------------------------------------------------- */

Test(informer, reconnects_when_the_server_ends_the_watch, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "informer");
  cm_create(k, ns, "a", "1");
  struct tn_informer_opts o = {.watch_timeout_s = 2};
  struct tn_informer *inf = informer_new(k, &configmaps, ns, &o);
  struct rec r;
  rec_init(&r, "inf/configmaps");
  rec_attach(inf, &r);
  start_and_sync(inf);
  struct tn_informer_stats st;
  double end = tn_test_now() + 30;
  do {
    usleep(100 * 1000);
    tn_informer_get_stats(inf, &st);
  } while (st.watches < 3 && tn_test_now() < end);
  cr_assert_geq(st.watches, 3, "the watch was not re-established after the server ended it");
  cm_set(k, ns, "a", "2");
  cm_create(k, ns, "b", "1");
  cr_assert(rec_wait(&r, 3, 30));
  json_t *obj;
  cr_assert_str_eq(rec_at(&r, 1, &obj, NULL), "update");
  cr_assert_str_eq(data_v(obj), "2");
  cr_assert_str_eq(rec_at(&r, 2, &obj, NULL), "add");
  tn_informer_get_stats(inf, &st);
  cr_assert_eq(st.streaming_lists, 1);
  cr_assert_eq(st.relists, 0, "it resumed from its resourceVersion instead of relisting");
  cr_assert_eq(st.expired, 0);
  cr_assert_eq(rec_len(&r), 3, "nothing was delivered twice");
  tn_informer_free(inf);
  rec_cleanup(&r);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(informer, resync_redelivers_every_object, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "informer");
  cm_create(k, ns, "a", "1");
  cm_create(k, ns, "b", "1");
  struct tn_informer_opts o = {.resync_period_s = 1};
  struct tn_informer *inf = informer_new(k, &configmaps, ns, &o);
  struct rec r;
  rec_init(&r, "inf/configmaps");
  rec_attach(inf, &r);
  start_and_sync(inf);
  cr_assert(rec_wait(&r, 2 + 4, 30), "two resyncs of two objects did not come");
  long a1 = rec_find(&r, 2, "resync", "a"), b1 = rec_find(&r, 2, "resync", "b");
  cr_assert_geq(a1, 0);
  cr_assert_geq(b1, 0);
  cr_assert_geq(rec_find(&r, (size_t)(a1 > b1 ? a1 : b1) + 1, "resync", "a"), 0, "a second resync");
  json_t *obj, *old;
  rec_at(&r, (size_t)a1, &obj, &old);
  cr_assert(json_equal(obj, old), "resync passes the cached object as old and new");
  tn_informer_free(inf);
  rec_cleanup(&r);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

static json_t *keep_little(json_t *obj, void *ud) {
  static const char *const paths[] = {"metadata.name", "metadata.namespace", "metadata.resourceVersion",
                                      "metadata.labels", NULL};
  json_t *p = tn_store_project(obj, paths);
  json_decref(obj);
  (*(atomic_int *)ud)++;
  return p;
}

Test(informer, a_transform_decides_what_is_cached, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64], key[128];
  tn_test_ns_create(k, ns, sizeof ns, "informer");
  cm_create(k, ns, "a", "1");
  atomic_int calls = 0;
  struct tn_informer_opts o = {.transform = keep_little, .transform_ud = &calls};
  struct tn_informer *inf = informer_new(k, &configmaps, ns, &o);
  struct rec r;
  rec_init(&r, "inf/configmaps");
  rec_attach(inf, &r);
  start_and_sync(inf);
  snprintf(key, sizeof key, "%s/a", ns);
  json_t *a = tn_informer_get(inf, key);
  cr_assert_not_null(a);
  cr_assert_null(json_object_get(a, "data"));
  cr_assert_null(json_object_get(json_object_get(a, "metadata"), "managedFields"));
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(json_object_get(a, "metadata"), "labels"), "test")),
      "informer");
  json_decref(a);
  json_t *obj;
  rec_at(&r, 0, &obj, NULL);
  cr_assert_null(json_object_get(obj, "data"), "handlers get the transformed object");
  cr_assert_eq(atomic_load(&calls), 1);
  tn_informer_free(inf);
  rec_cleanup(&r);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(informer, cluster_scoped_objects_are_keyed_by_name, .timeout = 120) {
  struct tn_kube *k = client();
  char sel[96], name[64];
  tn_test_unique_name(name, sizeof name, "informer-cs");
  snprintf(sel, sizeof sel, "informer-test=%s", name);
  struct tn_informer_opts o = {.label_selector = sel};
  struct tn_informer *inf = informer_new(k, &namespaces, NULL, &o);
  struct rec r;
  rec_init(&r, "inf/namespaces");
  rec_attach(inf, &r);
  start_and_sync(inf);
  json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:{s:s}}}", "apiVersion", "v1", "kind", "Namespace", "metadata",
                          "name", name, "labels", "informer-test", name);
  struct tn_error err;
  cr_assert_eq(tn_kube_create(k, &namespaces, NULL, obj, NULL, &err), 0, "%s", err.message);
  json_decref(obj);
  cr_assert(rec_wait(&r, 1, 30));
  cr_assert(cache_keys_become(inf, name, 5), "namespaces are keyed by name alone");
  tn_test_ns_delete(k, name);
  tn_informer_free(inf);
  rec_cleanup(&r);
  tn_kube_free(k);
}

/* Stopping cancels a watch that would otherwise last minutes; the test's timeout is the check. */
Test(informer, stop_is_prompt_and_final, .timeout = 30) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "informer");
  struct tn_informer *inf = informer_new(k, &configmaps, ns, NULL); /* watch timeout 5-10 min */
  struct rec r;
  rec_init(&r, "inf/configmaps");
  rec_attach(inf, &r);
  start_and_sync(inf);
  cm_create(k, ns, "a", "1");
  cr_assert(rec_wait(&r, 1, 20));
  double t0 = tn_test_now();
  tn_informer_stop(inf);
  double took = tn_test_now() - t0;
  cm_create(k, ns, "b", "1");
  usleep(500 * 1000);
  cr_assert_eq(rec_len(&r), 1, "a handler was called after stop");
  tn_informer_stop(inf); /* idempotent */
  cr_assert_eq(tn_informer_wait_for_sync(inf, 1), 0, "still synced");
  cr_log_info("stop took %.3f s", took);
  tn_informer_free(inf);

  /* Stopping before it ever synced (a resource the server does not have: 404s with backoff). */
  static const struct tn_gvr missing = {"tenancy.dev", "v1alpha1", "doesnotexists", false};
  inf = informer_new(k, &missing, NULL, NULL);
  struct tn_error err;
  cr_assert_eq(tn_informer_start(inf, &err), 0, "%s", err.message);
  cr_assert_eq(tn_informer_wait_for_sync(inf, 1.5), TN_ETIMEOUT);
  struct tn_informer_stats st;
  tn_informer_get_stats(inf, &st);
  cr_assert_geq(st.errors, 1, "the failure was retried after a backoff");
  tn_informer_stop(inf);
  cr_assert_eq(tn_informer_wait_for_sync(inf, 10), TN_ECANCELED);
  cr_assert(!tn_informer_has_synced(inf));
  tn_informer_free(inf);
  rec_cleanup(&r);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(informer, handlers_cannot_be_added_after_start, .timeout = 60) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "informer");
  struct tn_informer *inf = informer_new(k, &configmaps, ns, NULL);
  start_and_sync(inf);
  struct rec r;
  rec_init(&r, "inf/configmaps");
  struct tn_informer_handlers h = rec_handlers;
  h.ud = &r;
  struct tn_error err;
  cr_assert_eq(tn_informer_add_handlers(inf, &h, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "before start") != NULL, "%s", err.message);
  cr_assert_eq(tn_informer_start(inf, &err), TN_EINVALID);
  tn_informer_free(inf);
  rec_cleanup(&r);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}
