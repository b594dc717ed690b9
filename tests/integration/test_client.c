/* test_client.c - integration tests of the Kubernetes client against the local API server
 * (KUBECONFIG from the environment): the verbs on ConfigMaps, paging, conflicts, server-side
 * apply, subresources, preconditions, RBAC errors, one shared HTTP/2 connection, concurrency,
 * the response cap, watches and cancellation; and, against a scripted TLS server, retries,
 * Retry-After and bearer-token rotation. */
#define _GNU_SOURCE /* strcasestr in the scripted server */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kube/client.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "tn_kube_test.h"
#include "tn_test.h"

static const struct tn_gvr configmaps = {"", "v1", "configmaps", true};
static const struct tn_gvr namespaces = {"", "v1", "namespaces", false};
static const struct tn_gvr secrets = {"", "v1", "secrets", true};

/* ---- helpers ------------------------------------------------------------------------------------ */

static struct tn_kube *client_from(const char *kubeconfig, size_t max_bytes, struct tn_metrics *m) {
  struct tn_kube_config cfg;
  struct tn_error err;
  cr_assert_eq(tn_kube_config_load(kubeconfig, NULL, &cfg, &err), 0, "%s", err.message);
  cfg.max_response_bytes = max_bytes;
  struct tn_kube *k = NULL;
  cr_assert_eq(tn_kube_new(&cfg, m, &k, &err), 0, "%s", err.message);
  tn_kube_config_cleanup(&cfg);
  return k;
}

static struct tn_kube *client(void) { return client_from(tn_test_env("KUBECONFIG"), 0, NULL); }

static json_t *cm(const char *name, const char *key, const char *value) {
  return json_pack("{s:s, s:s, s:{s:s, s:{s:s}}, s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap",
                   "metadata", "name", name, "labels", "test", "client", "data", key, value);
}

static const char *str_at(json_t *obj, const char *a, const char *b) {
  json_t *v = json_object_get(obj, a);
  return json_string_value(b ? json_object_get(v, b) : v);
}

/* Sockets of this process in state ESTABLISHED whose remote port is `port` (from /proc: the
 * system tables filtered by the inodes of our own descriptors). */
static int established_to(int port) {
  long inodes[4096];
  int n_inodes = 0, count = 0;
  DIR *d = opendir("/proc/self/fd");
  cr_assert_not_null(d);
  struct dirent *e;
  while ((e = readdir(d)) && n_inodes < 4096) {
    char p[300], target[128];
    snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
    ssize_t len = readlink(p, target, sizeof target - 1);
    if (len <= 0)
      continue;
    target[len] = '\0';
    long ino;
    if (sscanf(target, "socket:[%ld]", &ino) == 1)
      inodes[n_inodes++] = ino;
  }
  closedir(d);
  const char *tables[] = {"/proc/self/net/tcp", "/proc/self/net/tcp6"};
  for (int t = 0; t < 2; t++) {
    FILE *f = fopen(tables[t], "r");
    if (!f)
      continue;
    char line[512];
    while (fgets(line, sizeof line, f)) {
      char local[64], remote[64];
      unsigned st;
      long ino;
      if (sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %*s %*s %ld", local, remote, &st, &ino) != 4)
        continue;
      const char *colon = strrchr(remote, ':');
      if (st != 1 || !colon || strtol(colon + 1, NULL, 16) != port)
        continue;
      for (int i = 0; i < n_inodes; i++)
        if (inodes[i] == ino)
          count++;
    }
    fclose(f);
  }
  return count;
}

static int server_port(void) {
  const char *s = tn_test_env("TENANCY_KUBE_SERVER");
  const char *colon = strrchr(s, ':');
  cr_assert_not_null(colon);
  return atoi(colon + 1);
}

/* The resourceVersion of the namespace's ConfigMap collection now (malloc'd): a watch from it sees
 * every later change, however long it takes to start. */
static char *list_rv(struct tn_kube *k, const char *ns) {
  json_t *list = NULL;
  struct tn_error err;
  cr_assert_eq(tn_kube_list(k, &configmaps, ns, NULL, &list, &err), 0, "%s", err.message);
  char *rv = strdup(str_at(list, "metadata", "resourceVersion"));
  json_decref(list);
  return rv;
}

/* ---- a watch running on its own thread ---------------------------------------------------------- */

struct watch {
  struct tn_kube *k;
  char path[256];
  char query[256];
  atomic_int cancel;
  pthread_mutex_t mu;
  struct tn_buf seen; /* under mu */
  int rc;
  struct tn_error err;
  pthread_t thread;
};

static int watch_data(void *ud, const char *data, size_t len) {
  struct watch *w = ud;
  pthread_mutex_lock(&w->mu);
  int rc = tn_buf_append(&w->seen, data, len);
  pthread_mutex_unlock(&w->mu);
  return rc;
}

static void *watch_main(void *p) {
  struct watch *w = p;
  struct tn_kube_request req = {.method = "GET",
                                .path = w->path,
                                .query = w->query,
                                .on_data = watch_data,
                                .ud = w,
                                .cancel = &w->cancel,
                                .no_retry = true};
  struct tn_kube_response resp;
  tn_kube_response_init(&resp);
  w->rc = tn_kube_do(w->k, &req, &resp, &w->err);
  tn_kube_response_cleanup(&resp);
  return NULL;
}

static void watch_start(struct watch *w, struct tn_kube *k, const char *ns, const char *rv) {
  memset(w, 0, sizeof *w);
  w->k = k;
  char *p = tn_kube_path(&configmaps, ns, NULL, NULL);
  snprintf(w->path, sizeof w->path, "%s", p);
  free(p);
  struct tn_buf q;
  tn_buf_init(&q, sizeof w->query - 1);
  cr_assert_eq(tn_kube_query_add(&q, "watch", "1"), 0);
  if (rv)
    cr_assert_eq(tn_kube_query_add(&q, "resourceVersion", rv), 0);
  snprintf(w->query, sizeof w->query, "%s", tn_buf_str(&q));
  tn_buf_cleanup(&q);
  pthread_mutex_init(&w->mu, NULL);
  tn_buf_init(&w->seen, 1 << 20);
  w->rc = 1;
  cr_assert_eq(pthread_create(&w->thread, NULL, watch_main, w), 0);
}

/* Waits until every needle is in what the watch received. */
static bool watch_wait_for(struct watch *w, const char *n1, const char *n2, double timeout_s) {
  double end = tn_test_now() + timeout_s;
  for (;;) {
    pthread_mutex_lock(&w->mu);
    bool found = strstr(tn_buf_str(&w->seen), n1) && (!n2 || strstr(tn_buf_str(&w->seen), n2));
    pthread_mutex_unlock(&w->mu);
    if (found)
      return true;
    if (tn_test_now() > end)
      return false;
    usleep(20 * 1000);
  }
}

static void watch_stop(struct watch *w) {
  atomic_store(&w->cancel, 1);
  pthread_join(w->thread, NULL);
  pthread_mutex_destroy(&w->mu);
  tn_buf_cleanup(&w->seen);
}

/* ---- verbs ---------------------------------------------------------------------------------------- */

Test(client, get_list_create_update_patch_apply_delete, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "client");
  struct tn_error err;
  json_t *out = NULL, *obj = cm("c1", "a", "1");

  cr_assert_eq(tn_kube_create(k, &configmaps, ns, obj, &out, &err), 0, "%s", err.message);
  cr_assert_str_eq(str_at(json_object_get(out, "metadata"), "name", NULL), "c1");
  cr_assert_str_eq(str_at(json_object_get(out, "metadata"), "namespace", NULL), ns);
  cr_assert_not_null(str_at(json_object_get(out, "metadata"), "uid", NULL));
  json_decref(out);
  cr_assert_eq(tn_kube_create(k, &configmaps, ns, obj, NULL, &err), TN_EEXISTS, "%s", err.message);
  cr_assert_str_eq(err.reason, "AlreadyExists");
  json_decref(obj);

  cr_assert_eq(tn_kube_get(k, &configmaps, ns, "c1", &out, &err), 0, "%s", err.message);
  cr_assert_str_eq(str_at(out, "data", "a"), "1");
  /* update: change the data, with the object's resourceVersion as precondition */
  const char *rv1 = str_at(out, "metadata", "resourceVersion");
  cr_assert_not_null(rv1);
  char rv1c[64];
  snprintf(rv1c, sizeof rv1c, "%s", rv1);
  json_object_set_new(json_object_get(out, "data"), "a", json_string("2"));
  json_t *upd = NULL;
  cr_assert_eq(tn_kube_update(k, &configmaps, ns, out, NULL, &upd, &err), 0, "%s", err.message);
  cr_assert_str_eq(str_at(upd, "data", "a"), "2");
  cr_assert_str_neq(str_at(upd, "metadata", "resourceVersion"), rv1c);
  json_decref(out);
  json_decref(upd);

  /* merge patch: add a key, delete another with null */
  json_t *patch = json_pack("{s:{s:s, s:n}}", "data", "b", "x", "a");
  cr_assert_eq(tn_kube_merge_patch(k, &configmaps, ns, "c1", patch, NULL, &out, &err), 0, "%s", err.message);
  cr_assert_str_eq(str_at(out, "data", "b"), "x");
  cr_assert_null(str_at(out, "data", "a"));
  json_decref(out);
  json_decref(patch);

  /* apply creates too */
  obj = cm("c2", "k", "v");
  cr_assert_eq(tn_kube_apply(k, &configmaps, ns, obj, TN_FIELD_MANAGER, false, NULL, &out, &err), 0, "%s",
               err.message);
  json_t *mf = json_array_get(json_object_get(json_object_get(out, "metadata"), "managedFields"), 0);
  cr_assert_str_eq(str_at(mf, "manager", NULL), TN_FIELD_MANAGER);
  cr_assert_str_eq(str_at(mf, "operation", NULL), "Apply");
  json_decref(out);
  json_decref(obj);

  /* list sees both; a label selector filters */
  struct tn_list_opts lo = {.label_selector = "test=client"};
  cr_assert_eq(tn_kube_list(k, &configmaps, ns, &lo, &out, &err), 0, "%s", err.message);
  cr_assert_str_eq(str_at(out, "kind", NULL), "ConfigMapList");
  cr_assert_eq(json_array_size(json_object_get(out, "items")), 2);
  json_decref(out);
  lo.label_selector = "test=other";
  cr_assert_eq(tn_kube_list(k, &configmaps, ns, &lo, &out, &err), 0, "%s", err.message);
  cr_assert_eq(json_array_size(json_object_get(out, "items")), 0);
  json_decref(out);
  struct tn_list_opts fo = {.field_selector = "metadata.name=c2"};
  cr_assert_eq(tn_kube_list(k, &configmaps, ns, &fo, &out, &err), 0, "%s", err.message);
  cr_assert_eq(json_array_size(json_object_get(out, "items")), 1);
  json_decref(out);

  cr_assert_eq(tn_kube_delete(k, &configmaps, ns, "c1", NULL, &err), 0, "%s", err.message);
  struct tn_delete_opts bg = {.propagation_policy = "Background"};
  cr_assert_eq(tn_kube_delete(k, &configmaps, ns, "c2", &bg, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_get(k, &configmaps, ns, "c1", &out, &err), TN_ENOTFOUND);
  cr_assert_null(out);
  cr_assert_eq(err.http_status, 404);
  cr_assert_str_eq(err.message, "configmaps \"c1\" not found");
  cr_assert_eq(tn_kube_delete(k, &configmaps, ns, "c1", NULL, &err), TN_ENOTFOUND);

  /* Names that would break out of the path are escaped, so they are just names that do not exist. */
  cr_assert_eq(tn_kube_get(k, &configmaps, ns, "../../secrets", &out, &err), TN_ENOTFOUND, "%s", err.message);
  cr_assert_eq(tn_kube_get(k, &configmaps, ns, "..", &out, &err), TN_EINVALID, "%s", err.message);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(client, list_paging_reaches_every_object, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "client");
  struct tn_error err;
  for (int i = 0; i < 5; i++) {
    char name[16];
    snprintf(name, sizeof name, "p%d", i);
    json_t *obj = cm(name, "i", name);
    cr_assert_eq(tn_kube_create(k, &configmaps, ns, obj, NULL, &err), 0, "%s", err.message);
    json_decref(obj);
  }
  char *cont = NULL;
  int pages = 0, seen = 0, mask = 0;
  do {
    struct tn_list_opts o = {.label_selector = "test=client", .limit = 2, .continue_token = cont};
    json_t *page = NULL;
    cr_assert_eq(tn_kube_list(k, &configmaps, ns, &o, &page, &err), 0, "%s", err.message);
    pages++;
    json_t *items = json_object_get(page, "items"), *it;
    size_t i;
    cr_assert_leq(json_array_size(items), 2);
    json_array_foreach(items, i, it) {
      const char *name = str_at(it, "metadata", "name");
      mask |= 1 << (name[1] - '0');
      seen++;
    }
    free(cont);
    const char *c = str_at(page, "metadata", "continue");
    cont = c && *c ? strdup(c) : NULL;
    json_decref(page);
  } while (cont && pages < 10);
  cr_assert_eq(pages, 3);
  cr_assert_eq(seen, 5);
  cr_assert_eq(mask, 0x1f, "every object exactly once");
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(client, stale_update_conflicts_and_a_retry_loop_succeeds, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "client");
  struct tn_error err;
  json_t *obj = cm("c", "n", "0"), *stale = NULL, *fresh = NULL;
  cr_assert_eq(tn_kube_create(k, &configmaps, ns, obj, &stale, &err), 0, "%s", err.message);
  json_decref(obj);
  /* Someone else writes it. */
  json_t *patch = json_pack("{s:{s:s}}", "data", "other", "writer");
  cr_assert_eq(tn_kube_merge_patch(k, &configmaps, ns, "c", patch, NULL, NULL, &err), 0, "%s", err.message);
  json_decref(patch);
  /* An update from the stale copy is refused with the server's words. */
  json_object_set_new(json_object_get(stale, "data"), "n", json_string("1"));
  cr_assert_eq(tn_kube_update(k, &configmaps, ns, stale, NULL, NULL, &err), TN_ECONFLICT);
  cr_assert_eq(err.http_status, 409);
  cr_assert_str_eq(err.reason, "Conflict");
  cr_assert(
      strstr(err.message, "the object has been modified; please apply your changes to the latest version"),
      "%s", err.message);
  json_decref(stale);

  /* get-modify-update, retried on conflict (client-go's RetryOnConflict), first from a stale copy */
  int tries = 0, rc;
  json_t *cur = NULL;
  cr_assert_eq(tn_kube_get(k, &configmaps, ns, "c", &cur, &err), 0);
  patch = json_pack("{s:{s:s}}", "data", "again", "x");
  cr_assert_eq(tn_kube_merge_patch(k, &configmaps, ns, "c", patch, NULL, NULL, &err),
               0); /* makes cur stale */
  json_decref(patch);
  do {
    tries++;
    if (tries > 1) {
      json_decref(cur);
      cr_assert_eq(tn_kube_get(k, &configmaps, ns, "c", &cur, &err), 0, "%s", err.message);
    }
    json_object_set_new(json_object_get(cur, "data"), "n", json_string("1"));
    rc = tn_kube_update(k, &configmaps, ns, cur, NULL, &fresh, &err);
  } while (rc == TN_ECONFLICT && tries < 5);
  cr_assert_eq(rc, 0, "%s", err.message);
  cr_assert_eq(tries, 2);
  cr_assert_str_eq(str_at(fresh, "data", "n"), "1");
  cr_assert_str_eq(str_at(fresh, "data", "other"), "writer", "the other writer's change is kept");
  json_decref(cur);
  json_decref(fresh);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(client, server_side_apply_twice_is_a_no_op, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "client");
  struct tn_error err;
  json_t *obj = cm("applied", "k", "v"), *a = NULL, *b = NULL;
  json_object_set_new(json_object_get(obj, "metadata"), "namespace", json_string(ns));
  cr_assert_eq(tn_kube_apply(k, &configmaps, NULL, obj, TN_FIELD_MANAGER, true, NULL, &a, &err), 0, "%s",
               err.message);
  cr_assert_eq(tn_kube_apply(k, &configmaps, NULL, obj, TN_FIELD_MANAGER, true, NULL, &b, &err), 0, "%s",
               err.message);
  cr_assert_str_eq(str_at(a, "metadata", "resourceVersion"), str_at(b, "metadata", "resourceVersion"));
  json_decref(a);
  json_decref(b);

  /* Another manager claiming the same field conflicts unless it forces. */
  json_t *other = cm("applied", "k", "theirs");
  cr_assert_eq(tn_kube_apply(k, &configmaps, ns, other, "someone-else", false, NULL, NULL, &err),
               TN_ECONFLICT);
  cr_assert(strstr(err.message, "conflict") && strstr(err.message, TN_FIELD_MANAGER), "%s", err.message);
  cr_assert_eq(tn_kube_apply(k, &configmaps, ns, other, "someone-else", true, NULL, &a, &err), 0, "%s",
               err.message);
  cr_assert_str_eq(str_at(a, "data", "k"), "theirs");
  json_decref(a);
  json_decref(other);

  json_object_del(obj, "kind");
  cr_assert_eq(tn_kube_apply(k, &configmaps, ns, obj, TN_FIELD_MANAGER, true, NULL, NULL, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "apiVersion, kind and metadata.name"), "%s", err.message);
  json_decref(obj);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

static bool has_condition(json_t *ns_obj, const char *type) {
  json_t *c;
  size_t i;
  json_array_foreach(json_object_get(json_object_get(ns_obj, "status"), "conditions"), i, c) {
    if (strcmp(str_at(c, "type", NULL), type) == 0)
      return true;
  }
  return false;
}

Test(client, status_subresource_on_a_namespace, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "client");
  struct tn_error err;
  json_t *out = NULL;
  json_t *cond = json_pack("{s:{s:[{s:s, s:s, s:s, s:s}]}}", "status", "conditions", "type", "TenancyTest",
                           "status", "True", "reason", "Testing", "message", "set through /status");
  /* Through the main resource, status is ignored ... */
  cr_assert_eq(tn_kube_merge_patch(k, &namespaces, NULL, ns, cond, NULL, &out, &err), 0, "%s", err.message);
  cr_assert(!has_condition(out, "TenancyTest"));
  json_decref(out);
  /* ... through the status subresource it is written. */
  cr_assert_eq(tn_kube_merge_patch(k, &namespaces, NULL, ns, cond, "status", &out, &err), 0, "%s",
               err.message);
  cr_assert(has_condition(out, "TenancyTest"));
  json_decref(cond);

  /* update of /status: replace the conditions */
  json_object_set_new(
      json_object_get(out, "status"), "conditions",
      json_pack("[{s:s, s:s, s:s}]", "type", "TenancyUpdated", "status", "False", "reason", "Put"));
  json_t *upd = NULL;
  cr_assert_eq(tn_kube_update(k, &namespaces, NULL, out, "status", &upd, &err), 0, "%s", err.message);
  cr_assert(has_condition(upd, "TenancyUpdated"));
  cr_assert(!has_condition(upd, "TenancyTest"));
  json_decref(out);
  json_decref(upd);

  /* apply to /status */
  json_t *ap = json_pack("{s:s, s:s, s:{s:s}, s:{s:[{s:s, s:s, s:s}]}}", "apiVersion", "v1", "kind",
                         "Namespace", "metadata", "name", ns, "status", "conditions", "type",
                         "TenancyApplied", "status", "True", "reason", "Apply");
  cr_assert_eq(tn_kube_apply(k, &namespaces, NULL, ap, TN_FIELD_MANAGER, true, "status", &out, &err), 0, "%s",
               err.message);
  cr_assert(has_condition(out, "TenancyApplied"));
  json_decref(out);
  json_decref(ap);
  cr_assert_eq(tn_kube_get(k, &namespaces, NULL, ns, &out, &err), 0);
  cr_assert(has_condition(out, "TenancyApplied"));
  json_decref(out);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(client, delete_preconditions, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "client");
  struct tn_error err;
  json_t *obj = cm("d", "a", "b"), *out = NULL;
  cr_assert_eq(tn_kube_create(k, &configmaps, ns, obj, &out, &err), 0, "%s", err.message);
  json_decref(obj);
  struct tn_delete_opts wrong = {.precondition_uid = "00000000-0000-0000-0000-000000000000",
                                 .propagation_policy = "Foreground"};
  cr_assert_eq(tn_kube_delete(k, &configmaps, ns, "d", &wrong, &err), TN_ECONFLICT);
  cr_assert(strstr(err.message,
                   "the UID in the precondition (00000000-0000-0000-0000-000000000000) does not match"),
            "%s", err.message);
  struct tn_delete_opts stale_rv = {.precondition_resource_version = "1"};
  cr_assert_eq(tn_kube_delete(k, &configmaps, ns, "d", &stale_rv, &err), TN_ECONFLICT);
  cr_assert(strstr(err.message, "the ResourceVersion in the precondition (1) does not match"), "%s",
            err.message);
  struct tn_delete_opts right = {.precondition_uid = str_at(out, "metadata", "uid"),
                                 .precondition_resource_version = str_at(out, "metadata", "resourceVersion"),
                                 .propagation_policy = "Background"};
  cr_assert_eq(tn_kube_delete(k, &configmaps, ns, "d", &right, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_get(k, &configmaps, ns, "d", NULL, &err), TN_ENOTFOUND);
  json_decref(out);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(client, forbidden_for_the_unprivileged_user) {
  struct tn_kube *k = client_from(tn_test_env("TENANCY_UNPRIVILEGED_KUBECONFIG"), 0, NULL);
  struct tn_error err;
  json_t *out = NULL;
  cr_assert_eq(tn_kube_list(k, &secrets, "default", NULL, &out, &err), TN_EFORBIDDEN);
  cr_assert_null(out);
  cr_assert_eq(err.http_status, 403);
  cr_assert_str_eq(err.reason, "Forbidden");
  cr_assert_str_eq(err.message,
                   "secrets is forbidden: User \"jane\" cannot list resource \"secrets\" in API group "
                   "\"\" in the namespace \"default\"");
  tn_kube_free(k);
}

/* ---- the transport -------------------------------------------------------------------------------- */

static double metric_value(struct tn_metrics *m, const char *series) {
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(tn_metrics_write(m, &b), 0);
  const char *p = strstr(tn_buf_str(&b), series);
  double v = p ? strtod(p + strlen(series), NULL) : -1;
  tn_buf_cleanup(&b);
  return v;
}

Test(client, one_shared_connection_for_requests_and_a_watch, .timeout = 120) {
  struct tn_metrics *m = tn_metrics_new();
  struct tn_kube *k = client_from(tn_test_env("KUBECONFIG"), 0, m);
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "client");
  struct watch w;
  char *rv = list_rv(k, ns);
  watch_start(&w, k, ns, rv);
  free(rv);
  struct tn_error err;
  for (int i = 0; i < 20; i++) {
    char name[16];
    snprintf(name, sizeof name, "s%d", i);
    json_t *obj = cm(name, "a", "b");
    cr_assert_eq(tn_kube_create(k, &configmaps, ns, obj, NULL, &err), 0, "%s", err.message);
    cr_assert_eq(tn_kube_get(k, &configmaps, ns, name, NULL, &err), 0, "%s", err.message);
    json_decref(obj);
  }
  cr_assert(watch_wait_for(&w, "\"ADDED\"", "\"s19\"", 30), "the watch saw the objects");
  /* Everything, watch included, is on one connection. */
  cr_assert_eq(established_to(server_port()), 1);
  cr_assert_eq(tn_kube_connections_opened(k), 1);
  watch_stop(&w);
  cr_assert_eq(w.rc, TN_ECANCELED, "%s", w.err.message);
  /* Metrics counted every request (namespace create + 20 creates + 20 gets). */
  cr_assert_eq(metric_value(m, "rest_client_requests_total{code=\"201\",method=\"POST\"} "), 21);
  cr_assert_geq(metric_value(m, "rest_client_requests_total{code=\"200\",method=\"GET\"} "), 20);
  cr_assert_geq(metric_value(m, "rest_client_request_duration_seconds_count{verb=\"GET\"} "), 20);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
  tn_metrics_free(m);
}

struct worker {
  struct tn_kube *k;
  const char *ns;
  int id, failures;
  char first_error[1200];
};

static void *worker_main(void *p) {
  struct worker *wk = p;
  for (int i = 0; i < 10; i++) {
    char name[32];
    snprintf(name, sizeof name, "w%d-%d", wk->id, i);
    json_t *obj = cm(name, "i", name), *out = NULL;
    struct tn_error err;
    int rc = tn_kube_create(wk->k, &configmaps, wk->ns, obj, NULL, &err);
    if (!rc)
      rc = tn_kube_get(wk->k, &configmaps, wk->ns, name, &out, &err);
    if (!rc && strcmp(str_at(out, "data", "i"), name) != 0)
      rc = -1;
    if (!rc)
      rc = tn_kube_delete(wk->k, &configmaps, wk->ns, name, NULL, &err);
    if (rc && wk->failures++ == 0)
      snprintf(wk->first_error, sizeof wk->first_error, "%s: %s", name, err.message);
    json_decref(obj);
    json_decref(out);
  }
  return NULL;
}

Test(client, eight_threads_at_once, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "client");
  /* A fresh client: the eight first requests race to open its connection, and must share it. */
  struct tn_kube *fresh = client();
  pthread_t t[8];
  struct worker wk[8];
  for (int i = 0; i < 8; i++) {
    wk[i] = (struct worker){.k = fresh, .ns = ns, .id = i};
    cr_assert_eq(pthread_create(&t[i], NULL, worker_main, &wk[i]), 0);
  }
  for (int i = 0; i < 8; i++) {
    pthread_join(t[i], NULL);
    cr_expect_eq(wk[i].failures, 0, "worker %d: %s", i, wk[i].first_error);
  }
  cr_assert_eq(tn_kube_connections_opened(fresh), 1);
  cr_assert_eq(established_to(server_port()), 2, "one for each client");
  tn_kube_free(fresh);
  cr_assert_eq(established_to(server_port()), 1, "freeing a client closes its connection");
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(client, response_cap, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "client");
  struct tn_error err;
  char value[300];
  memset(value, 'v', sizeof value - 1);
  value[sizeof value - 1] = '\0';
  for (int i = 0; i < 8; i++) {
    char name[16];
    snprintf(name, sizeof name, "big%d", i);
    json_t *obj = cm(name, "v", value);
    cr_assert_eq(tn_kube_create(k, &configmaps, ns, obj, NULL, &err), 0, "%s", err.message);
    json_decref(obj);
  }
  struct tn_kube *small = client_from(tn_test_env("KUBECONFIG"), 1024, NULL);
  json_t *out = NULL;
  cr_assert_eq(tn_kube_list(small, &configmaps, ns, NULL, &out, &err), TN_ETOOBIG, "%s", err.message);
  cr_assert_null(out);
  cr_assert(strstr(err.message, "1024 bytes"), "%s", err.message);
  /* The aborted stream did not poison the connection: a small answer still comes through. */
  cr_assert_eq(tn_kube_get(small, &namespaces, NULL, "default", &out, &err), 0, "%s", err.message);
  json_decref(out);
  /* And the default cap takes the whole list. */
  struct tn_list_opts mine = {.label_selector = "test=client"};
  cr_assert_eq(tn_kube_list(k, &configmaps, ns, &mine, &out, &err), 0, "%s", err.message);
  cr_assert_eq(json_array_size(json_object_get(out, "items")), 8);
  json_decref(out);
  tn_kube_free(small);
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
}

Test(client, watch_receives_added_and_cancel_ends_it, .timeout = 120) {
  struct tn_kube *k = client();
  char ns[64];
  tn_test_ns_create(k, ns, sizeof ns, "client");
  struct tn_error err;
  struct watch w;
  char *rv = list_rv(k, ns);
  watch_start(&w, k, ns, rv);
  free(rv);
  json_t *obj = cm("watched", "a", "b");
  cr_assert_eq(tn_kube_create(k, &configmaps, ns, obj, NULL, &err), 0, "%s", err.message);
  json_decref(obj);
  cr_assert(watch_wait_for(&w, "{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\"",
                           "\"name\":\"watched\"", 30),
            "no ADDED event for the new object");
  double t0 = tn_test_now();
  watch_stop(&w);
  cr_assert_eq(w.rc, TN_ECANCELED, "%s", w.err.message);
  printf("watch canceled in %.0f ms\n", (tn_test_now() - t0) * 1000);
  /* The client keeps working after the cancel. */
  cr_assert_eq(tn_kube_get(k, &configmaps, ns, "watched", NULL, &err), 0, "%s", err.message);

  /* A watch still open when the client is freed ends with TN_ECANCELED. (It is in flight once it
   * has seen an event.) */
  rv = list_rv(k, ns);
  watch_start(&w, k, ns, rv);
  free(rv);
  obj = cm("watched2", "a", "b");
  cr_assert_eq(tn_kube_create(k, &configmaps, ns, obj, NULL, &err), 0, "%s", err.message);
  json_decref(obj);
  cr_assert(watch_wait_for(&w, "\"name\":\"watched2\"", NULL, 30));
  tn_test_ns_delete(k, ns);
  tn_kube_free(k);
  pthread_join(w.thread, NULL);
  cr_assert_eq(w.rc, TN_ECANCELED, "%s", w.err.message);
  pthread_mutex_destroy(&w.mu);
  tn_buf_cleanup(&w.seen);
}

Test(client, debug_log_names_each_request_and_never_the_credentials) {
  char path[] = "/tmp/tn-client-log-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  tn_log_set_fd(fd);
  tn_log_set_level(TN_LOG_DEBUG);
  struct tn_kube_config c;
  struct tn_error err;
  cr_assert_eq(tn_kube_config_load(tn_test_env("KUBECONFIG"), NULL, &c, &err), 0, "%s", err.message);
  c.token = strdup("do-not-log-this-token"); /* sent along with the certificate; must not be logged */
  struct tn_kube *k = NULL;
  cr_assert_eq(tn_kube_new(&c, NULL, &k, &err), 0, "%s", err.message);
  json_t *secret = json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "apiVersion", "v1", "kind", "Secret", "metadata",
                             "generateName", "client-log-", "stringData", "password", "hunter2-secret-value");
  json_t *out = NULL;
  cr_assert_eq(tn_kube_create(k, &secrets, "default", secret, &out, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_get(k, &namespaces, NULL, "no-such-namespace-here", NULL, &err), TN_ENOTFOUND);
  cr_assert_eq(tn_kube_delete(k, &secrets, "default", str_at(out, "metadata", "name"), NULL, &err), 0, "%s",
               err.message);
  tn_kube_free(k);
  tn_log_set_fd(-1);
  tn_log_set_level(TN_LOG_INFO);
  close(fd);
  char *log = NULL;
  cr_assert_eq(tn_test_sh(&log, "cat %s", path), 0);
  unlink(path);
  cr_assert(strstr(log, "kube POST /api/v1/namespaces/default/secrets: 201 in "), "%s", log);
  cr_assert(strstr(log, "kube GET /api/v1/namespaces/no-such-namespace-here: 404 in "), "%s", log);
  cr_assert(strstr(log, "attempt 1, HTTP/2)"), "the API server is spoken to over HTTP/2: %s", log);
  cr_assert(strstr(log, "\"level\":\"debug\""), "%s", log);
  cr_assert(!strstr(log, "do-not-log-this-token"), "the token leaked into the log: %s", log);
  cr_assert(!strstr(log, "hunter2"), "a Secret's body leaked into the log: %s", log);
  cr_assert(!strstr(log, "PRIVATE KEY"), "%s", log);
  free(log);
  json_decref(secret);
  json_decref(out);
  tn_kube_config_cleanup(&c);
}

Test(client, a_canceled_request_does_not_start) {
  struct tn_kube *k = client();
  atomic_int cancel = 1;
  struct tn_kube_request req = {.method = "GET", .path = "/api/v1/namespaces", .cancel = &cancel};
  struct tn_error err;
  cr_assert_eq(tn_kube_do(k, &req, NULL, &err), TN_ECANCELED);
  cr_assert_eq(tn_kube_connections_opened(k), 0);
  tn_kube_free(k);
}

/* ---- TLS ------------------------------------------------------------------------------------------- */

static char *pki_path(const char *file) {
  char ca[PATH_MAX], *out = malloc(PATH_MAX + 64);
  snprintf(ca, sizeof ca, "%s", tn_test_env("TENANCY_CA_FILE"));
  snprintf(out, PATH_MAX + 64, "%s/%s", dirname(ca), file);
  return out;
}

/* A config from files (not embedded data): the admin's certificate and key. */
static void file_config(struct tn_kube_config *c) {
  memset(c, 0, sizeof *c);
  c->server = strdup(tn_test_env("TENANCY_KUBE_SERVER"));
  c->ca_file = strdup(tn_test_env("TENANCY_CA_FILE"));
  c->cert_file = pki_path("admin.crt");
  c->key_file = pki_path("admin.key");
}

Test(client, files_tls_server_name_and_verification) {
  struct tn_kube_config c;
  struct tn_kube *k = NULL;
  struct tn_error err;
  file_config(&c);
  cr_assert_eq(tn_kube_new(&c, NULL, &k, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_get(k, &namespaces, NULL, "default", NULL, &err), 0, "%s", err.message);
  tn_kube_free(k);

  /* The server's certificate names kubernetes.default.svc: connecting to 127.0.0.1 under that
   * name works, under another name it must not. */
  c.tls_server_name = strdup("kubernetes.default.svc");
  cr_assert_eq(tn_kube_new(&c, NULL, &k, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_get(k, &namespaces, NULL, "default", NULL, &err), 0, "%s", err.message);
  tn_kube_free(k);
  free(c.tls_server_name);
  c.tls_server_name = strdup("wrong.example.test");
  cr_assert_eq(tn_kube_new(&c, NULL, &k, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_get(k, &namespaces, NULL, "default", NULL, &err), TN_ETRANSPORT);
  cr_assert(strstr(err.message, "wrong.example.test"), "%s", err.message);
  cr_assert(strstr(err.message, "after 1 attempt"), "verification failures are not retried: %s", err.message);
  tn_kube_free(k);

  /* A CA that did not sign the server's certificate is refused. */
  free(c.tls_server_name);
  c.tls_server_name = NULL;
  free(c.ca_file);
  c.ca_file = strdup("/etc/ssl/certs/ca-certificates.crt");
  cr_assert_eq(tn_kube_new(&c, NULL, &k, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_get(k, &namespaces, NULL, "default", NULL, &err), TN_ETRANSPORT);
  cr_assert(strstr(err.message, "certificate"), "%s", err.message);
  tn_kube_free(k);
  tn_kube_config_cleanup(&c);
}

/* ---- a scripted TLS server, for answers the API server will not give on demand ---------------------- */

struct scripted {
  long status; /* 0: close the connection without answering; -1: hold it, silent, until stopped */
  const char *headers;
  const char *body;
};

struct fake {
  SSL_CTX *ctx;
  int lfd, port;
  pthread_t thread;
  const struct scripted *script;
  int n_script;
  pthread_mutex_t mu;
  int n_requests;      /* under mu */
  char log[8192];      /* under mu: "METHOD PATH\n" per request */
  char last_auth[256]; /* under mu: the last Authorization header */
  atomic_int stop;
};

/* Reads one HTTP/1.1 request (headers and a Content-Length body). Minimal on purpose: it only
 * has to understand what libcurl sends. */
static int read_request(SSL *s, char *buf, size_t n) {
  size_t len = 0;
  char *end = NULL;
  while (!(end = strstr(buf, "\r\n\r\n"))) {
    if (len + 1 >= n)
      return -1;
    int r = SSL_read(s, buf + len, (int)(n - 1 - len));
    if (r <= 0)
      return -1;
    len += (size_t)r;
    buf[len] = '\0';
  }
  const char *cl = strcasestr(buf, "\r\nContent-Length:");
  size_t want = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 17, NULL, 10) : 0);
  while (len < want && len + 1 < n) {
    int r = SSL_read(s, buf + len, (int)(n - 1 - len));
    if (r <= 0)
      return -1;
    len += (size_t)r;
    buf[len] = '\0';
  }
  return 0;
}

static void *fake_main(void *p) {
  struct fake *f = p;
  while (!atomic_load(&f->stop)) {
    int c = accept(f->lfd, NULL, NULL);
    if (c < 0)
      continue;
    SSL *s = SSL_new(f->ctx);
    SSL_set_fd(s, c);
    char req[16384] = "";
    if (SSL_accept(s) == 1 && read_request(s, req, sizeof req) == 0 && !atomic_load(&f->stop)) {
      pthread_mutex_lock(&f->mu);
      int i = f->n_requests++;
      char *sp = strchr(req, ' '), *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
      if (sp2)
        snprintf(f->log + strlen(f->log), sizeof f->log - strlen(f->log), "%.*s\n", (int)(sp2 - req), req);
      const char *auth = strcasestr(req, "\r\nAuthorization: ");
      if (auth)
        snprintf(f->last_auth, sizeof f->last_auth, "%.*s", (int)strcspn(auth + 2, "\r"), auth + 2);
      pthread_mutex_unlock(&f->mu);
      struct scripted a = i < f->n_script ? f->script[i] : (struct scripted){200, NULL, "{}"};
      while (a.status < 0 && !atomic_load(&f->stop))
        usleep(20 * 1000);
      if (a.status > 0) {
        char out[4096];
        const char *body = a.body ? a.body : "";
        snprintf(out, sizeof out,
                 "HTTP/1.1 %ld Scripted\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n%s\r\n%s",
                 a.status, strlen(body), a.headers ? a.headers : "", body);
        SSL_write(s, out, (int)strlen(out));
        SSL_shutdown(s);
      }
    }
    SSL_free(s);
    close(c);
  }
  return NULL;
}

static void fake_start(struct fake *f, const struct scripted *script, int n) {
  memset(f, 0, sizeof *f);
  f->script = script;
  f->n_script = n;
  pthread_mutex_init(&f->mu, NULL);
  f->ctx = SSL_CTX_new(TLS_server_method());
  char *crt = pki_path("apiserver.crt"), *key = pki_path("apiserver.key");
  cr_assert_eq(SSL_CTX_use_certificate_chain_file(f->ctx, crt), 1);
  cr_assert_eq(SSL_CTX_use_PrivateKey_file(f->ctx, key, SSL_FILETYPE_PEM), 1);
  free(crt);
  free(key);
  f->lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t al = sizeof a;
  getsockname(f->lfd, (struct sockaddr *)&a, &al);
  f->port = ntohs(a.sin_port);
  cr_assert_eq(listen(f->lfd, 16), 0);
  cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f) {
  atomic_store(&f->stop, 1);
  int c = socket(AF_INET, SOCK_STREAM, 0); /* unblock accept */
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  connect(c, (struct sockaddr *)&a, sizeof a);
  close(c);
  pthread_join(f->thread, NULL);
  close(f->lfd);
  SSL_CTX_free(f->ctx);
  pthread_mutex_destroy(&f->mu);
}

static struct tn_kube *fake_client(struct fake *f, const char *token_file) {
  struct tn_kube_config c;
  memset(&c, 0, sizeof c);
  char server[64];
  snprintf(server, sizeof server, "https://127.0.0.1:%d", f->port);
  c.server = strdup(server);
  c.ca_file = strdup(tn_test_env("TENANCY_CA_FILE"));
  c.token = strdup("static-token");
  c.token_file = token_file ? strdup(token_file) : NULL;
  c.user_agent = strdup("client-test/1");
  struct tn_kube *k = NULL;
  struct tn_error err;
  cr_assert_eq(tn_kube_new(&c, NULL, &k, &err), 0, "%s", err.message);
  tn_kube_config_cleanup(&c);
  return k;
}

static int fake_requests(struct fake *f) {
  pthread_mutex_lock(&f->mu);
  int n = f->n_requests;
  pthread_mutex_unlock(&f->mu);
  return n;
}

static const char status_429[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"Too many requests, "
    "please try "
    "again later.\",\"reason\":\"TooManyRequests\",\"details\":{\"retryAfterSeconds\":1},\"code\":429}";
static const char status_503[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":"
    "\"the server is shutting down\",\"reason\":\"ServiceUnavailable\",\"code\":503}";

Test(retries, throttled_get_honours_retry_after, .timeout = 60) {
  static const struct scripted s[] = {{429, "Retry-After: 1\r\n", status_429},
                                      {200, NULL, "{\"kind\":\"x\"}"}};
  struct fake f;
  fake_start(&f, s, 2);
  struct tn_kube *k = fake_client(&f, NULL);
  struct tn_kube_response resp;
  tn_kube_response_init(&resp);
  struct tn_kube_request req = {.method = "GET", .path = "/api/v1/namespaces"};
  struct tn_error err;
  double t0 = tn_test_now();
  cr_assert_eq(tn_kube_do(k, &req, &resp, &err), 0, "%s", err.message);
  cr_assert_geq(tn_test_now() - t0, 0.95, "the client waited as the server asked");
  cr_assert_eq(resp.status, 200);
  cr_assert_str_eq(tn_buf_str(&resp.body), "{\"kind\":\"x\"}");
  cr_assert_eq(fake_requests(&f), 2);
  pthread_mutex_lock(&f.mu);
  cr_assert_str_eq(f.last_auth, "Authorization: Bearer static-token");
  pthread_mutex_unlock(&f.mu);
  tn_kube_response_cleanup(&resp);
  tn_kube_free(k);
  fake_stop(&f);
}

Test(retries, throttled_post_is_retried_from_details, .timeout = 60) {
  /* No Retry-After header: details.retryAfterSeconds says 1 s. */
  static const struct scripted s[] = {{429, NULL, status_429}, {201, NULL, "{\"kind\":\"ConfigMap\"}"}};
  struct fake f;
  fake_start(&f, s, 2);
  struct tn_kube *k = fake_client(&f, NULL);
  struct tn_error err;
  json_t *obj = cm("x", "a", "b"), *out = NULL;
  double t0 = tn_test_now();
  cr_assert_eq(tn_kube_create(k, &configmaps, "ns", obj, &out, &err), 0, "%s", err.message);
  cr_assert_geq(tn_test_now() - t0, 0.95);
  cr_assert_str_eq(str_at(out, "kind", NULL), "ConfigMap");
  cr_assert_eq(fake_requests(&f), 2);
  pthread_mutex_lock(&f.mu);
  cr_assert_str_eq(f.log, "POST /api/v1/namespaces/ns/configmaps\nPOST /api/v1/namespaces/ns/configmaps\n");
  pthread_mutex_unlock(&f.mu);
  json_decref(obj);
  json_decref(out);
  tn_kube_free(k);
  fake_stop(&f);
}

Test(retries, unavailable_get_gives_up_after_five_attempts, .timeout = 60) {
  static const struct scripted s[] = {{503, NULL, status_503}, {503, NULL, status_503},
                                      {503, NULL, status_503}, {503, NULL, status_503},
                                      {503, NULL, status_503}, {503, NULL, status_503}};
  struct fake f;
  fake_start(&f, s, 6);
  struct tn_kube *k = fake_client(&f, NULL);
  struct tn_error err;
  cr_assert_eq(tn_kube_get(k, &configmaps, "ns", "c", NULL, &err), TN_EUNAVAILABLE);
  cr_assert_eq(fake_requests(&f), TN_KUBE_MAX_ATTEMPTS);
  cr_assert_eq(err.http_status, 503);
  cr_assert(strstr(err.message, "after 5 attempts") && strstr(err.message, "the server is shutting down"),
            "%s", err.message);
  tn_kube_free(k);
  fake_stop(&f);
}

Test(retries, non_idempotent_requests_are_not_retried_after_sending, .timeout = 60) {
  static const struct scripted s[] = {
      {503, NULL, status_503}, {0, NULL, NULL}, {500, NULL, status_503}, {0, NULL, NULL}};
  struct fake f;
  fake_start(&f, s, 4);
  struct tn_kube *k = fake_client(&f, NULL);
  struct tn_error err;
  json_t *obj = cm("x", "a", "b");
  /* 503 to a POST: final. */
  cr_assert_eq(tn_kube_create(k, &configmaps, "ns", obj, NULL, &err), TN_EUNAVAILABLE, "%s", err.message);
  cr_assert_eq(fake_requests(&f), 1);
  /* The connection dropped after a POST was sent: final (it may have been applied). */
  cr_assert_eq(tn_kube_create(k, &configmaps, "ns", obj, NULL, &err), TN_ETRANSPORT, "%s", err.message);
  cr_assert_eq(fake_requests(&f), 2);
  /* A merge patch is not retried either ... */
  cr_assert_eq(tn_kube_merge_patch(k, &configmaps, "ns", "x", obj, NULL, NULL, &err), TN_EUNAVAILABLE);
  cr_assert_eq(fake_requests(&f), 3);
  /* ... but a GET whose connection dropped is, and succeeds. */
  cr_assert_eq(tn_kube_get(k, &configmaps, "ns", "x", NULL, &err), 0, "%s", err.message);
  cr_assert_eq(fake_requests(&f), 5);
  json_decref(obj);
  tn_kube_free(k);
  fake_stop(&f);
}

Test(retries, apply_is_retried_and_watches_never, .timeout = 60) {
  static const struct scripted s[] = {{500, NULL, status_503}, {200, NULL, "{}"}, {503, NULL, status_503}};
  struct fake f;
  fake_start(&f, s, 3);
  struct tn_kube *k = fake_client(&f, NULL);
  struct tn_error err;
  json_t *obj = cm("x", "a", "b");
  cr_assert_eq(tn_kube_apply(k, &configmaps, "ns", obj, TN_FIELD_MANAGER, true, NULL, NULL, &err), 0, "%s",
               err.message);
  cr_assert_eq(fake_requests(&f), 2);
  cr_assert(
      strstr(f.log, "PATCH /api/v1/namespaces/ns/configmaps/x?fieldManager=tenancy-operator&force=true"),
      "%s", f.log);
  struct tn_kube_request watch = {
      .method = "GET", .path = "/api/v1/configmaps", .query = "watch=1", .no_retry = true};
  cr_assert_eq(tn_kube_do(k, &watch, NULL, &err), TN_EUNAVAILABLE);
  cr_assert_eq(fake_requests(&f), 3);
  json_decref(obj);
  tn_kube_free(k);
  fake_stop(&f);
}

Test(retries, token_file_is_reread_when_it_changes, .timeout = 60) {
  struct fake f;
  fake_start(&f, NULL, 0);
  char path[] = "/tmp/tn-token-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, "first-token\n", 12), 12);
  close(fd);
  struct tn_kube *k = fake_client(&f, path);
  struct tn_error err;
  struct tn_kube_request req = {.method = "GET", .path = "/version"};
  cr_assert_eq(tn_kube_do(k, &req, NULL, &err), 0, "%s", err.message);
  pthread_mutex_lock(&f.mu);
  cr_assert_str_eq(f.last_auth, "Authorization: Bearer first-token");
  pthread_mutex_unlock(&f.mu);
  /* Rotated as kubelet does: a new file renamed over the old one. */
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%s.new", path);
  FILE *nf = fopen(tmp, "w");
  fputs("second-token", nf);
  fclose(nf);
  cr_assert_eq(rename(tmp, path), 0);
  cr_assert_eq(tn_kube_do(k, &req, NULL, &err), 0, "%s", err.message);
  pthread_mutex_lock(&f.mu);
  cr_assert_str_eq(f.last_auth, "Authorization: Bearer second-token");
  pthread_mutex_unlock(&f.mu);
  /* A file that disappears keeps the last good token. */
  unlink(path);
  cr_assert_eq(tn_kube_do(k, &req, NULL, &err), 0, "%s", err.message);
  pthread_mutex_lock(&f.mu);
  cr_assert_str_eq(f.last_auth, "Authorization: Bearer second-token");
  pthread_mutex_unlock(&f.mu);
  tn_kube_free(k);
  fake_stop(&f);
}

Test(retries, limiter_spaces_requests_and_can_be_canceled, .timeout = 60) {
  struct fake f;
  fake_start(&f, NULL, 0);
  struct tn_kube_config c;
  memset(&c, 0, sizeof c);
  char server[64];
  snprintf(server, sizeof server, "https://127.0.0.1:%d", f.port);
  c.server = strdup(server);
  c.ca_file = strdup(tn_test_env("TENANCY_CA_FILE"));
  c.qps = 4;
  c.burst = 2;
  struct tn_kube *k = NULL;
  struct tn_error err;
  cr_assert_eq(tn_kube_new(&c, NULL, &k, &err), 0, "%s", err.message);
  struct tn_kube_request req = {.method = "GET", .path = "/version"};
  /* 2 from the bucket, then 4 more at 4 per second: at least 1 s. */
  double t0 = tn_test_now();
  for (int i = 0; i < 6; i++)
    cr_assert_eq(tn_kube_do(k, &req, NULL, &err), 0, "%s", err.message);
  double took = tn_test_now() - t0;
  cr_assert_geq(took, 0.95, "6 requests at qps 4 burst 2 took %.3f s", took);
  printf("6 requests at qps=4 burst=2: %.2f s\n", took);
  /* A request waiting for the limiter honours its cancel flag, and its deadline. */
  atomic_int cancel = 1;
  struct tn_kube_request canceled = {.method = "GET", .path = "/version", .cancel = &cancel};
  for (int i = 0; i < 4; i++) /* drain the bucket (and reserve ahead) */
    cr_assert_eq(tn_kube_do(k, &req, NULL, &err), 0, "%s", err.message);
  cr_assert_eq(tn_kube_do(k, &canceled, NULL, &err), TN_ECANCELED);
  struct tn_kube_request hurried = {.method = "GET", .path = "/version", .timeout_ms = 10};
  cr_assert_eq(tn_kube_do(k, &hurried, NULL, &err), TN_ETIMEOUT, "%s", err.message);
  cr_assert(strstr(err.message, "rate limit"), "%s", err.message);
  /* Watches are not rate limited. */
  struct tn_kube_request watch = {
      .method = "GET", .path = "/api/v1/pods", .query = "watch=1", .no_retry = true, .timeout_ms = 10000};
  cr_assert_eq(tn_kube_do(k, &watch, NULL, &err), 0, "%s", err.message);
  tn_kube_free(k);
  tn_kube_config_cleanup(&c);
  fake_stop(&f);
}

struct hung_call {
  struct tn_kube *k;
  atomic_int cancel;
  int rc;
};

static void *hung_call_main(void *p) {
  struct hung_call *h = p;
  struct tn_kube_request req = {
      .method = "GET", .path = "/api/v1/namespaces", .cancel = &h->cancel, .timeout_ms = 300000};
  struct tn_error err;
  h->rc = tn_kube_do(h->k, &req, NULL, &err);
  return NULL;
}

Test(retries, deadline_and_cancel_of_a_silent_server, .timeout = 60) {
  static const struct scripted s[] = {{-1, NULL, NULL}};
  struct fake f;
  fake_start(&f, s, 1);
  struct tn_kube *k = fake_client(&f, NULL);
  struct tn_error err;
  struct tn_kube_request req = {.method = "GET", .path = "/api/v1/namespaces", .timeout_ms = 500};
  cr_assert_eq(tn_kube_do(k, &req, NULL, &err), TN_ETIMEOUT, "%s", err.message);
  cr_assert(strstr(err.message, "500 ms"), "%s", err.message);
  tn_kube_free(k);
  fake_stop(&f);

  /* A request stuck in flight ends when its cancel flag is set. */
  fake_start(&f, s, 1);
  struct hung_call h = {.k = fake_client(&f, NULL)};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, hung_call_main, &h), 0);
  while (fake_requests(&f) == 0) /* until the server holds it */
    usleep(10 * 1000);
  atomic_store(&h.cancel, 1);
  pthread_join(t, NULL);
  cr_assert_eq(h.rc, TN_ECANCELED);
  tn_kube_free(h.k);
  fake_stop(&f);
}
