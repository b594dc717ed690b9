/* bench_cache.c - bytes of RSS per cached object for a projected cache of Namespaces, fed through
 * the informer's own path (watch stream parser -> transform -> store), against the alternatives.
 *
 *   bench_cache [objects]        (default 100000)
 *
 * Each variant runs in its own child process so one cannot inherit the other's heap. Prints
 * figures; asserts nothing. Build without sanitizers (build/release) for meaningful numbers. */
#include <jansson.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kube/store.h"
#include "kube/watchstream.h"
#include "runtime/metrics.h"
#include "util/buf.h"

enum variant { V_STORE, V_STORE_FULL, V_TREES, V_FULL_TREES };
static const char *variant_names[] = {
    "store, projected (the informer's path)",
    "store, whole objects (no transform)",
    "jansson trees, projected",
    "jansson trees, whole objects",
};

/* The fields the operator reads from a Namespace. */
static const char *const projection[] = {"metadata.name",
                                         "metadata.namespace",
                                         "metadata.uid",
                                         "metadata.resourceVersion",
                                         "metadata.generation",
                                         "metadata.labels",
                                         "metadata.ownerReferences",
                                         "metadata.deletionTimestamp",
                                         "status.phase",
                                         NULL};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)rng;
}

/* One watch event line as the API server writes it for a Namespace our operator applied. */
static void namespace_event(struct tn_buf *b, size_t i) {
  static const char *envs[] = {"prod", "staging", "dev"};
  char tenant[32], name[48];
  snprintf(tenant, sizeof tenant, "tenant-%05zu", i / 3);
  snprintf(name, sizeof name, "%s-%s", tenant, envs[i % 3]);
  tn_buf_printf(
      b,
      "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Namespace\",\"apiVersion\":\"v1\",\"metadata\":{"
      "\"name\":\"%s\",\"uid\":\"%08x-%04x-%04x-%04x-%08x%04x\",\"resourceVersion\":\"%zu\","
      "\"creationTimestamp\":\"2026-11-27T05:29:53Z\",\"labels\":{"
      "\"app.kubernetes.io/managed-by\":\"tenancy-operator\",\"kubernetes.io/metadata.name\":\"%s\","
      "\"tenancy.dev/environment\":\"%s\",\"tenancy.dev/tenant\":\"%s\"},"
      "\"managedFields\":[{\"manager\":\"tenancy-operator\",\"operation\":\"Apply\",\"apiVersion\":\"v1\","
      "\"time\":\"2026-11-27T05:29:53Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metadata\":{"
      "\"f:labels\":{\"f:app.kubernetes.io/managed-by\":{},\"f:tenancy.dev/environment\":{},"
      "\"f:tenancy.dev/tenant\":{}}}}},{\"manager\":\"kube-apiserver\",\"operation\":\"Update\","
      "\"apiVersion\":\"v1\",\"time\":\"2026-11-27T05:29:53Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{"
      "\"f:metadata\":{\"f:labels\":{\"f:kubernetes.io/metadata.name\":{}}}}}]},"
      "\"spec\":{\"finalizers\":[\"kubernetes\"]},\"status\":{\"phase\":\"Active\"}}}\n",
      name, next_rand(), next_rand() & 0xffff, next_rand() & 0xffff, next_rand() & 0xffff, next_rand(),
      next_rand() & 0xffff, 1000000 + i, name, envs[i % 3], tenant);
}

static int by_tenant(const json_t *obj, void *ud, struct tn_index_values *out) {
  const char *t = json_string_value(
      json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), "tenancy.dev/tenant"));
  return t ? tn_index_values_add(out, t) : 0;
}

struct sink {
  enum variant v;
  struct tn_store *store;
  json_t **trees;
  size_t n;
};

static int on_event(void *ud, enum tn_watch_type type, json_t *obj, struct tn_error *err) {
  struct sink *s = ud;
  bool project = s->v == V_STORE || s->v == V_TREES;
  json_t *t = project ? tn_store_project(obj, projection) : json_incref(obj);
  if (!t)
    return tn_error_set(err, -12, "out of memory");
  int rc = 0;
  if (s->store)
    rc = tn_store_upsert(s->store, t, err);
  else
    s->trees[s->n] = json_incref(t);
  s->n++;
  json_decref(t);
  return rc;
}

static int add_text_len(void *ud, struct tn_store_obj *o) {
  size_t len;
  tn_store_obj_json(o, &len);
  *(size_t *)ud += len;
  return 0;
}

static void run(enum variant v, size_t n) {
  struct sink s = {.v = v};
  struct tn_error err;
  if (v == V_STORE || v == V_STORE_FULL) {
    s.store = tn_store_new();
    tn_store_add_index(s.store, "tenant", by_tenant, NULL, &err);
  } else {
    s.trees = malloc(n * sizeof *s.trees); /* part of what holding trees costs */
  }
  struct tn_watchstream *ws = tn_watchstream_new(0, on_event, &s);
  struct tn_buf chunk;
  tn_buf_init(&chunk, (size_t)1 << 20);
  namespace_event(&chunk, 0); /* warm jansson and stdio */
  tn_buf_reset(&chunk);
  malloc_trim(0);
  double rss0 = tn_process_rss_bytes(NULL);
  double t0 = now();
  size_t in_bytes = 0;
  /* Events are written into 64 KiB network-like chunks: most events straddle a boundary. */
  for (size_t i = 0; i < n; i++) {
    namespace_event(&chunk, i);
    if (chunk.len >= 65536 || i + 1 == n) {
      size_t cut = chunk.len < 65536 ? chunk.len : 65536;
      if (tn_watchstream_feed(ws, chunk.data, cut, &err) != 0) {
        fprintf(stderr, "feed: %s\n", err.message);
        exit(1);
      }
      in_bytes += cut;
      tn_buf_consume(&chunk, cut);
    }
  }
  if (tn_watchstream_feed(ws, chunk.data, chunk.len, &err) != 0 || tn_watchstream_finish(ws, &err) != 0) {
    fprintf(stderr, "feed: %s\n", err.message);
    exit(1);
  }
  in_bytes += chunk.len;
  double t1 = now();
  tn_buf_cleanup(&chunk);
  tn_watchstream_free(ws);
  malloc_trim(0);
  double rss1 = tn_process_rss_bytes(NULL);
  printf("%-40s %8.0f bytes/object  (%zu objects, RSS +%.1f MiB, %.2f us/event, input %.0f bytes/event)\n",
         variant_names[v], (rss1 - rss0) / (double)n, s.n, (rss1 - rss0) / 1048576.0,
         (t1 - t0) * 1e6 / (double)n, (double)in_bytes / (double)n);
  if (s.store) {
    size_t text = 0;
    tn_store_foreach(s.store, add_text_len, &text);
    printf("%-40s %8.0f bytes of JSON text/object on average\n", "", (double)text / (double)n);
    /* Read costs: get (decode one) and list by index (three per tenant). */
    char key[48];
    size_t reads = n < 100000 ? n : 100000;
    double r0 = now();
    for (size_t i = 0; i < reads; i++) {
      snprintf(key, sizeof key, "tenant-%05zu-%s", (i * 7919) % n / 3, "prod");
      json_decref(tn_store_get(s.store, key));
    }
    double r1 = now();
    for (size_t i = 0; i < reads / 3; i++) {
      snprintf(key, sizeof key, "tenant-%05zu", (i * 7919) % (n / 3 ? n / 3 : 1));
      json_decref(tn_store_by_index(s.store, "tenant", key, NULL));
    }
    double r2 = now();
    printf("%-40s %8.2f us/get, %.2f us/list-by-index (3 objects)\n", "", (r1 - r0) * 1e6 / (double)reads,
           (r2 - r1) * 1e6 / (double)(reads / 3 ? reads / 3 : 1));
    tn_store_free(s.store);
  } else {
    for (size_t i = 0; i < s.n; i++)
      json_decref(s.trees[i]);
    free(s.trees);
  }
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
  if (n == 0)
    n = 1;
  printf(
      "bench_cache: %zu Namespaces through watchstream -> transform -> cache (target < 500 bytes/object)\n",
      n);
  for (enum variant v = V_STORE; v <= V_FULL_TREES; v++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      run(v, n);
      fflush(stdout);
      _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      printf("%-40s failed\n", variant_names[v]);
  }
  return 0;
}
