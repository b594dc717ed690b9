/* test_events.c - the event recorder against the real API server: an events.k8s.io/v1 Event
 * with the right fields, cluster-scoped objects' Events in "default", repeats folded into one
 * Event's series, and a recorder that never blocks its callers when the server is away. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kube/client.h"
#include "runtime/events.h"
#include "tn_test.h"

static struct tn_kube *connect_kube(void) {
  struct tn_kube_config cfg = {0};
  struct tn_error err;
  struct tn_kube *k = NULL;
  cr_assert_eq(tn_kube_config_load(tn_test_env("KUBECONFIG"), NULL, &cfg, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_new(&cfg, NULL, &k, &err), 0, "%s", err.message);
  tn_kube_config_cleanup(&cfg);
  return k;
}

/* `kubectl get -o jsonpath` of one field of an object; malloc'd. */
static char *kget(const char *what, const char *jsonpath) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl get %s -o jsonpath='{%s}'", what, jsonpath);
  cr_assert_eq(rc, 0, "kubectl get %s: %s", what, out);
  return out;
}

/* Every events.k8s.io/v1 Event in the cluster about the object with this uid, as kubectl sees
 * them (a new array reference). */
static json_t *events_about(const char *uid) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "kubectl get events.events.k8s.io -A -o json 2>/dev/null");
  cr_assert_eq(rc, 0, "kubectl get events.events.k8s.io -A: %s", out);
  json_error_t e;
  json_t *list = json_loads(out, 0, &e);
  cr_assert_not_null(list, "not JSON (%s): %s", e.text, out);
  free(out);
  json_t *found = json_array(), *item;
  size_t i;
  json_array_foreach(json_object_get(list, "items"), i, item) {
    const char *u = json_string_value(json_object_get(json_object_get(item, "regarding"), "uid"));
    if (u && strcmp(u, uid) == 0)
      json_array_append(found, item);
  }
  json_decref(list);
  return found;
}

static const char *field(const json_t *o, const char *a, const char *b) {
  const json_t *v = json_object_get(o, a);
  if (b)
    v = json_object_get(v, b);
  return json_string_value(v);
}

Test(events, an_event_about_a_namespaced_object, .timeout = 60) {
  char cm[64], instance[64], *out = NULL;
  tn_test_unique_name(cm, sizeof cm, "events-cm");
  tn_test_unique_name(instance, sizeof instance, "test-instance");
  cr_assert_eq(tn_test_sh(&out, "kubectl -n default create configmap %s", cm), 0, "%s", out);
  free(out);
  char what[128];
  snprintf(what, sizeof what, "-n default configmap %s", cm);
  char *uid = kget(what, ".metadata.uid"), *rv = kget(what, ".metadata.resourceVersion");

  struct tn_kube *k = connect_kube();
  struct tn_recorder *rec = NULL;
  cr_assert_eq(tn_recorder_new(k, TN_REPORTING_CONTROLLER, instance, &rec), 0);
  struct tn_object_ref ref = {.api_version = "v1",
                              .kind = "ConfigMap",
                              .name = cm,
                              .namespace = "default",
                              .uid = uid,
                              .resource_version = rv};
  cr_assert_eq(tn_recorder_eventf(rec, &ref, TN_EVENT_NORMAL, "Created", "Reconcile",
                                  "configmap %s created (correlation %s)", cm, "c-0001"),
               0);
  cr_assert_eq(tn_recorder_flush(rec, 30), 0);

  json_t *evs = events_about(uid);
  cr_assert_eq(json_array_size(evs), 1, "expected one Event about %s", cm);
  json_t *ev = json_array_get(evs, 0);
  char prefix[80];
  snprintf(prefix, sizeof prefix, "%s.", cm);
  const char *name = field(ev, "metadata", "name");
  cr_assert_eq(strncmp(name, prefix, strlen(prefix)), 0, "name %s", name);
  cr_assert_eq(strlen(name), strlen(prefix) + 16, "name %s: <regarding>.<16 hex>", name);
  cr_assert_str_eq(field(ev, "metadata", "namespace"), "default");
  cr_assert_str_eq(field(ev, "reportingController", NULL), "tenancy.dev/tenancy-operator");
  cr_assert_str_eq(field(ev, "reportingInstance", NULL), instance);
  cr_assert_str_eq(field(ev, "type", NULL), "Normal");
  cr_assert_str_eq(field(ev, "reason", NULL), "Created");
  cr_assert_str_eq(field(ev, "action", NULL), "Reconcile");
  char note[160];
  snprintf(note, sizeof note, "configmap %s created (correlation c-0001)", cm);
  cr_assert_str_eq(field(ev, "note", NULL), note);
  cr_assert_not_null(field(ev, "eventTime", NULL));
  cr_assert_str_eq(field(ev, "regarding", "kind"), "ConfigMap");
  cr_assert_str_eq(field(ev, "regarding", "name"), cm);
  cr_assert_str_eq(field(ev, "regarding", "namespace"), "default");
  cr_assert_str_eq(field(ev, "regarding", "apiVersion"), "v1");
  cr_assert_str_eq(field(ev, "regarding", "resourceVersion"), rv);
  cr_assert_null(json_object_get(ev, "series"));
  json_decref(evs);

  tn_recorder_free(rec);
  tn_kube_free(k);
  (void)tn_test_sh(&out, "kubectl -n default delete configmap %s", cm);
  free(out);
  free(uid);
  free(rv);
}

Test(events, a_cluster_scoped_objects_events_go_to_default, .timeout = 60) {
  char ns[64], *out = NULL;
  tn_test_unique_name(ns, sizeof ns, "events-ns");
  cr_assert_eq(tn_test_sh(&out, "kubectl create namespace %s", ns), 0, "%s", out);
  free(out);
  char what[128];
  snprintf(what, sizeof what, "namespace %s", ns);
  char *uid = kget(what, ".metadata.uid");

  struct tn_kube *k = connect_kube();
  struct tn_recorder *rec = NULL;
  cr_assert_eq(tn_recorder_new(k, TN_REPORTING_CONTROLLER, NULL, &rec), 0);
  struct tn_object_ref ref = {.api_version = "v1", .kind = "Namespace", .name = ns, .uid = uid};
  cr_assert_eq(tn_recorder_eventf(rec, &ref, TN_EVENT_WARNING, "PolicyDenied", "Reconcile", "denied"), 0);
  tn_recorder_free(rec); /* flushes */

  json_t *evs = events_about(uid);
  cr_assert_eq(json_array_size(evs), 1);
  json_t *ev = json_array_get(evs, 0);
  cr_assert_str_eq(field(ev, "metadata", "namespace"), "default");
  cr_assert_null(json_object_get(json_object_get(ev, "regarding"), "namespace"));
  cr_assert_str_eq(field(ev, "type", NULL), "Warning");
  char host[256], instance[300];
  gethostname(host, sizeof host);
  snprintf(instance, sizeof instance, "tenancy.dev/tenancy-operator-%s", host);
  instance[128] = '\0';
  cr_assert_str_eq(field(ev, "reportingInstance", NULL), instance,
                   "the default instance is <controller>-<host>");
  json_decref(evs);

  tn_kube_free(k);
  (void)tn_test_sh(&out, "kubectl delete namespace %s --wait=false", ns);
  free(out);
  free(uid);
}

Test(events, repeats_become_one_event_with_a_series, .timeout = 60) {
  char cm[64], *out = NULL;
  tn_test_unique_name(cm, sizeof cm, "events-series");
  cr_assert_eq(tn_test_sh(&out, "kubectl -n default create configmap %s", cm), 0, "%s", out);
  free(out);
  char what[128];
  snprintf(what, sizeof what, "-n default configmap %s", cm);
  char *uid = kget(what, ".metadata.uid");

  struct tn_kube *k = connect_kube();
  struct tn_recorder *rec = NULL;
  cr_assert_eq(tn_recorder_new(k, TN_REPORTING_CONTROLLER, "series-test", &rec), 0);
  struct tn_object_ref ref = {
      .api_version = "v1", .kind = "ConfigMap", .name = cm, .namespace = "default", .uid = uid};
  for (int i = 0; i < 5; i++)
    cr_assert_eq(tn_recorder_eventf(rec, &ref, TN_EVENT_WARNING, "DriftRepaired", "Reconcile",
                                    "quota %s was changed by hand and restored", "tenant-quota"),
                 0);
  /* A different note is a different occurrence. */
  cr_assert_eq(tn_recorder_eventf(rec, &ref, TN_EVENT_WARNING, "DriftRepaired", "Reconcile",
                                  "quota %s was changed by hand and restored", "other-quota"),
               0);
  cr_assert_eq(tn_recorder_flush(rec, 30), 0);

  json_t *evs = events_about(uid), *ev;
  size_t i;
  cr_assert_eq(json_array_size(evs), 2, "five repeats and one other note: two Events, got %zu",
               json_array_size(evs));
  bool seen_series = false, seen_single = false;
  json_array_foreach(evs, i, ev) {
    const char *note = field(ev, "note", NULL);
    json_t *series = json_object_get(ev, "series");
    if (strstr(note, "tenant-quota")) {
      cr_assert_not_null(series, "the repeated Event has no series: %s", json_dumps(ev, 0));
      cr_assert_eq(json_integer_value(json_object_get(series, "count")), 5,
                   "the flush writes the whole count");
      cr_assert_not_null(field(series, "lastObservedTime", NULL));
      seen_series = true;
    } else {
      cr_assert_null(series);
      seen_single = true;
    }
  }
  cr_assert(seen_series && seen_single);
  json_decref(evs);

  /* A later repeat within the window patches the same Event. */
  cr_assert_eq(tn_recorder_eventf(rec, &ref, TN_EVENT_WARNING, "DriftRepaired", "Reconcile",
                                  "quota %s was changed by hand and restored", "tenant-quota"),
               0);
  tn_recorder_free(rec);
  evs = events_about(uid);
  cr_assert_eq(json_array_size(evs), 2);
  json_array_foreach(evs, i, ev) {
    if (strstr(field(ev, "note", NULL), "tenant-quota"))
      cr_assert_eq(json_integer_value(json_object_get(json_object_get(ev, "series"), "count")), 6);
  }
  json_decref(evs);

  tn_kube_free(k);
  (void)tn_test_sh(&out, "kubectl -n default delete configmap %s", cm);
  free(out);
  free(uid);
}

/* A loopback port nobody listens on. */
static int closed_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
  close(s);
  return ntohs(a.sin_port);
}

Test(events, callers_never_wait_for_an_unreachable_server, .timeout = 120) {
  char server[64];
  snprintf(server, sizeof server, "https://127.0.0.1:%d", closed_port());
  struct tn_kube_config cfg = {.server = server};
  struct tn_kube *k = NULL;
  struct tn_error err;
  cr_assert_eq(tn_kube_new(&cfg, NULL, &k, &err), 0, "%s", err.message);
  struct tn_recorder *rec = NULL;
  cr_assert_eq(tn_recorder_new(k, TN_REPORTING_CONTROLLER, "unreachable", &rec), 0);
  struct tn_object_ref ref = {.api_version = "v1", .kind = "ConfigMap", .name = "x", .namespace = "default"};

  int n = TN_RECORDER_QUEUE_MAX + 500, queued = 0, dropped = 0;
  double worst = 0, t0 = tn_test_now();
  for (int i = 0; i < n; i++) {
    double t = tn_test_now();
    int rc = tn_recorder_eventf(rec, &ref, TN_EVENT_NORMAL, "Created", "Reconcile", "occurrence %d", i);
    t = tn_test_now() - t;
    if (t > worst)
      worst = t;
    if (rc == 0)
      queued++;
    else if (rc == -ENOSPC)
      dropped++;
    else
      cr_assert_fail("tn_recorder_eventf returned %d", rc);
  }
  double all = tn_test_now() - t0;
  printf("events: %d calls with the server unreachable took %.3f s in all, the slowest %.3f ms; %d queued, "
         "%d dropped\n",
         n, all, worst * 1000, queued, dropped);
  cr_assert_gt(dropped, 0, "a full queue must drop, not block");
  cr_assert_eq((int)tn_recorder_dropped(rec), dropped);
  cr_assert_geq(queued, TN_RECORDER_QUEUE_MAX);
  t0 = tn_test_now();
  tn_recorder_free(rec); /* gives up on the unreachable server */
  printf("events: freeing the recorder with %d occurrences pending took %.2f s\n", queued,
         tn_test_now() - t0);
  tn_kube_free(k);
}
