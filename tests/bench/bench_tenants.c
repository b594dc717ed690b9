/* bench_tenants.c - the scale benchmark of the Tenant reconcile: the objects of 1,000 tenants x 2
 * environments created by a plain parallel client (the "physical limit"), every write of the end
 * state (Tenants, finalizer, status, Events included) made by that client (the "floor"), then the
 * operator taking 1,000 Tenants from applied to Ready, with its API requests, RSS and writes while idle.
 *
 *   bench_tenants [--tenants N] [--threads N]
 *                 [--phase all|baseline|floor|operator|floor-operator|scale|restart]
 *                 [--idle-seconds S] [--sync-period DURATION] [--timeout S] [--keep]
 *                 [--teardown] [--allow-remote] [--floor-variants LIST]
 *
 * --phase restart: the scale phase's restart and leader failover alone, against the tenants there
 * (those a `--phase scale --keep` run left).
 * --phase floor-operator: the floor and the operator without the baseline (their ratio is the
 * issue 18 target). --floor-variants finalizer-at-create,one-event,small-status,one-netpol,floor:
 * after the floor, the floor again with one candidate write removal each (or unchanged: "floor"),
 * each printed against the floor of the run; floor-watch: the floor with the watches the
 * operator's informers keep open, drained by the client (what serving them costs the API server);
 * floor-audit: the floor plus the operator's PostgreSQL rows per tenant (audit trail, history,
 * outbox: the other writes an operator with an audit trail must cause), written through the
 * operator's own functions; floor-all: both (watches and PostgreSQL rows);
 * $TENANCY_BENCH_RUN_TAG tags the floor's tenant names.
 *
 * Prints figures; asserts nothing. The cluster is the one $KUBECONFIG names, which must be on
 * this machine unless --allow-remote; without KUBECONFIG a private stack is started with
 * hack/cluster-up.sh in .local/bench and stopped at the end.
 * The operator is $TENANCY_OPERATOR_BIN, else build/bin/tenancy-operator, else
 * build/release/bin/tenancy-operator; $TENANCY_BENCH_OPERATOR_ARGS adds flags (split on
 * spaces). Method and figures: docs/benchmarks.md. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/history.h"
#include "audit/outbox.h"
#include "converge/tenant_changes.h"
#include "kube/client.h"
#include "kube/watchstream.h"
#include "runtime/events.h"
#include "runtime/metrics.h"
#include "tenancy/cloudevents.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/uuid.h"

/* ---- settings ------------------------------------------------------------------------------ */

enum phase {
  PHASE_ALL,
  PHASE_BASELINE,
  PHASE_FLOOR,
  PHASE_OPERATOR,
  PHASE_SCALE,
  PHASE_FLOOR_OPERATOR,
  PHASE_RESTART
};

static struct {
  size_t tenants;
  int threads;
  enum phase phase;
  int idle_s;
  const char *sync_period;
  int timeout_s;
  bool keep;                  /* delete nothing at the end */
  bool teardown;              /* on a private stack too: delete everything, timed */
  bool allow_remote;          /* KUBECONFIG may name a server that is not on this machine */
  const char *floor_variants; /* comma-separated floor variants run after the floor, or NULL */
} opt = {1000, 16, PHASE_ALL, 20, "10s", 900, false, false, false, NULL};

static const char *const envs[] = {"prod", "staging"};
static int name_width = 4; /* digits of bench-<i>: 5 in the scale phase (up to 99,999 tenants) */
#define N_ENVS 2
#define BASE_PREFIX "base-"
#define OP_PREFIX "bench-"
#define FLOOR_PREFIX floor_prefix
/* The floor's tenants are floor-<i>; a variant's (--floor-variants) fv<n>-<i>. */
static char floor_prefix[16] = "floor-";
/* A variant of the end-state floor (--floor-variants): the floor with one candidate write removal
 * of issue 18, so that its saving is measured in the same run as the floor itself. */
static struct floor_variant {
  const char *name;
  bool finalizer_at_create; /* no metadata PUT: the Tenant is created with it (a mutating webhook) */
  bool one_event;           /* 1 Event per tenant instead of 2 */
  bool small_status;        /* the status only state, observedGeneration and the Ready condition */
  bool one_netpol;          /* 1 NetworkPolicy per namespace instead of 2 (11 -> 10 objects) */
  bool watches;             /* floor-watch: every write of the floor, plus the operator's watches kept open */
  bool audit;               /* floor-audit: every write of the floor, plus the operator's PostgreSQL rows */
} fvar = {"floor", false, false, false, false, false, false};
#define MANAGED_BY "app.kubernetes.io/managed-by=tenancy-operator"
/* The baseline's objects say managed-by=tenancy-baseline (as long as "tenancy-operator"): an
 * operator never caches, adopts or removes them, and they need not be deleted before it runs. */
#define BASELINE_MANAGER "tenancy-baseline"
#define MANAGED_BY_BASELINE "app.kubernetes.io/managed-by=" BASELINE_MANAGER

static char root[PATH_MAX]; /* the repository: hack/, crds/, manifests/ */
static bool private_stack;  /* the cluster is ours and is removed at the end */

static const struct tn_gvr gvr_ns = {"", "v1", "namespaces", false};
static const struct tn_gvr gvr_quota = {"", "v1", "resourcequotas", true};
static const struct tn_gvr gvr_limits = {"", "v1", "limitranges", true};
static const struct tn_gvr gvr_netpol = {"networking.k8s.io", "v1", "networkpolicies", true};
static const struct tn_gvr gvr_rb = {"rbac.authorization.k8s.io", "v1", "rolebindings", true};
static const struct tn_gvr gvr_tenant = {"tenancy.dev", "v1alpha1", "tenants", false};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

static const char *str_or(const char *s, const char *dflt) { return s ? s : dflt; }

static bool has_prefix(const char *s, const char *prefix) {
  return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The q-quantile of v[0..n) (sorted in place); 0 for an empty set. */
static double quantile(double *v, size_t n, double q) {
  if (n == 0)
    return 0;
  qsort(v, n, sizeof *v, cmp_double);
  size_t i = (size_t)(q * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

/* The 1-minute load average (-1 when unknown): printed beside each phase's figures, since the
 * machine is shared. */
static double load_average(void) {
  double l[1];
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}

/* ---- the objects (the shapes the operator writes) ------------------------------------------ */

/* As operator/tenancy/desired.c builds them for an Active tenant on the sample plan "standard",
 * placed in eu-west-1, shared, with one group binding: per environment a Namespace, 2
 * NetworkPolicies (default-deny, allow-same-tenant with the DNS rule), a ResourceQuota, a
 * LimitRange and a RoleBinding: 12,000 objects for 1,000 tenants, the count issue 5 gives. The
 * owner reference is left out (there is no Tenant to own them: the garbage collector would
 * delete objects owned by a missing uid) and managed-by says BASELINE_MANAGER. */
enum env_kind { K_NAMESPACE, K_DENY, K_TENANT_AND_DNS, K_QUOTA, K_LIMITS, K_BINDING };
static const enum env_kind env_kinds[] = {K_NAMESPACE, K_DENY,   K_TENANT_AND_DNS,
                                          K_QUOTA,     K_LIMITS, K_BINDING};
static const size_t per_env = sizeof env_kinds / sizeof *env_kinds;

#define SPEC_HASH "0123456789abcdef0123456789abcdef" /* the operator annotates a 32-digit hash */

static json_t *labels(const char *tenant, const char *env, bool is_namespace) {
  json_t *l = json_pack("{s:s, s:s, s:s}", "tenancy.dev/tenant", tenant, "tenancy.dev/environment", env,
                        "app.kubernetes.io/managed-by", BASELINE_MANAGER);
  if (l && is_namespace) {
    json_object_set_new(l, "tenancy.dev/plan", json_string("standard"));
    json_object_set_new(l, "tenancy.dev/region", json_string("eu-west-1"));
    json_object_set_new(l, "tenancy.dev/isolation", json_string("shared"));
  }
  return l;
}

static json_t *object(const char *api_version, const char *kind, const char *name, const char *ns,
                      const char *tenant, const char *env) {
  json_t *md = json_pack("{s:s, s:o, s:{s:s}}", "name", name, "labels", labels(tenant, env, ns == NULL),
                         "annotations", "tenancy.dev/spec-hash", SPEC_HASH);
  if (md && ns)
    json_object_set_new(md, "namespace", json_string(ns));
  return json_pack("{s:s, s:s, s:o}", "apiVersion", api_version, "kind", kind, "metadata", md);
}

/* body[key] = value (taken); NULL when either is NULL. */
static json_t *with(json_t *body, const char *key, json_t *value) {
  if (!body || !value || json_object_set_new(body, key, value)) {
    json_decref(body);
    return NULL;
  }
  return body;
}

static json_t *netpol(const char *name, const char *ns, const char *tenant, const char *env, json_t *spec) {
  return with(object("networking.k8s.io/v1", "NetworkPolicy", name, ns, tenant, env), "spec", spec);
}

/* The object of kind k in environment env (namespace ns) of tenant, and its resource. */
static json_t *env_object(enum env_kind k, const char *tenant, const char *env, const char *ns,
                          const struct tn_gvr **gvr) {
  *gvr = &gvr_netpol;
  switch (k) {
  case K_NAMESPACE:
    *gvr = &gvr_ns;
    return object("v1", "Namespace", ns, NULL, tenant, env);
  case K_DENY:
    return netpol("default-deny", ns, tenant, env,
                  json_pack("{s:{}, s:[s,s]}", "podSelector", "policyTypes", "Ingress", "Egress"));
  case K_TENANT_AND_DNS:
    return netpol("allow-same-tenant", ns, tenant, env,
                  json_pack("{s:{}, s:[s,s], s:[{s:[{s:{s:{s:s}}}]}], s:[{s:[{s:{s:{s:s}}}]}, "
                            "{s:[{s:{s:{s:s}}, s:{s:{s:s}}}], s:[{s:s, s:i}, {s:s, s:i}]}]}",
                            "podSelector", "policyTypes", "Ingress", "Egress", "ingress", "from",
                            "namespaceSelector", "matchLabels", "tenancy.dev/tenant", tenant, "egress", "to",
                            "namespaceSelector", "matchLabels", "tenancy.dev/tenant", tenant, "to",
                            "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name", "kube-system",
                            "podSelector", "matchLabels", "k8s-app", "kube-dns", "ports", "protocol", "UDP",
                            "port", 53, "protocol", "TCP", "port", 53));
  case K_QUOTA:
    *gvr = &gvr_quota;
    return with(object("v1", "ResourceQuota", "tenant-quota", ns, tenant, env), "spec",
                json_pack("{s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}}", "hard", "limits.cpu", "4",
                          "limits.memory", "8Gi", "pods", "50", "requests.cpu", "4", "requests.memory", "8Gi",
                          "requests.storage", "50Gi", "services", "10"));
  case K_LIMITS:
    *gvr = &gvr_limits;
    return with(object("v1", "LimitRange", "tenant-limits", ns, tenant, env), "spec",
                json_pack("{s:[{s:s, s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s, s:s}}, {s:s, s:{s:s}}]}", "limits",
                          "type", "Container", "default", "cpu", "160m", "memory", "326Mi", "defaultRequest",
                          "cpu", "80m", "memory", "163Mi", "max", "cpu", "4", "memory", "8Gi", "type",
                          "PersistentVolumeClaim", "max", "storage", "50Gi"));
  case K_BINDING:
  default: {
    *gvr = &gvr_rb;
    char group[96];
    snprintf(group, sizeof group, "%s-admins", tenant);
    json_t *rb =
        object("rbac.authorization.k8s.io/v1", "RoleBinding", "tenant-admin-0123456789", ns, tenant, env);
    rb = with(rb, "roleRef",
              json_pack("{s:s, s:s, s:s}", "apiGroup", "rbac.authorization.k8s.io", "kind", "ClusterRole",
                        "name", "tenancy-tenant-admin"));
    return with(rb, "subjects",
                json_pack("[{s:s, s:s, s:s}]", "apiGroup", "rbac.authorization.k8s.io", "kind", "Group",
                          "name", group));
  }
  }
}

/* A Tenant as a user writes it: Active, 2 environments, one group binding, in region (NULL:
 * eu-west-1). New reference. */
static json_t *tenant_object_in(const char *name, const char *region) {
  char group[96], domain[96];
  snprintf(group, sizeof group, "%s-admins", name);
  snprintf(domain, sizeof domain, "%s.example", name);
  return json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:s, s:s, s:s, s:s, s:{s:[s], s:s}, s:[s, s], "
                   "s:[{s:s, s:s, s:s}], s:{s:s, s:[{s:s, s:s}]}}}",
                   "apiVersion", "tenancy.dev/v1alpha1", "kind", "Tenant", "metadata", "name", name, "spec",
                   "displayName", name, "state", "Active", "stateReason", "benchmark", "plan", "standard",
                   "isolation", "shared", "residency", "allowedRegions", region ? region : "eu-west-1",
                   "preferredRegion", region ? region : "eu-west-1", "environments", envs[0], envs[1],
                   "contacts", "role", "technical", "name", "Bench", "email", "bench@example.com", "identity",
                   "domain", domain, "groupBindings", "group", group, "role", "tenant-admin");
}

static json_t *tenant_object(const char *name) { return tenant_object_in(name, NULL); }

/* ---- a pool of client threads over n items --------------------------------------------------- */

struct pool {
  struct tn_kube *k;
  size_t n;
  atomic_size_t next;
  /* item i: returns the number of failed requests; fills err with the last failure */
  int (*item)(struct pool *p, size_t i, struct tn_error *err);
  void *ud;
  atomic_size_t failed;
  pthread_mutex_t mu; /* protects first_error */
  char first_error[512];
};

static void pool_fail(struct pool *p, const char *what, const struct tn_error *err) {
  atomic_fetch_add(&p->failed, 1);
  pthread_mutex_lock(&p->mu);
  if (!p->first_error[0])
    if (snprintf(p->first_error, sizeof p->first_error, "%s: %s", what, err->message) < 0)
      p->first_error[0] = '?';
  pthread_mutex_unlock(&p->mu);
}

static void *pool_worker(void *arg) {
  struct pool *p = arg;
  struct tn_error err;
  for (;;) {
    size_t i = atomic_fetch_add(&p->next, 1);
    if (i >= p->n)
      break;
    tn_error_clear(&err);
    p->item(p, i, &err);
  }
  return NULL;
}

/* Runs items 0..n over `threads` threads; returns the wall-clock seconds it took. */
static double pool_run(struct pool *p, int threads) {
  pthread_t tids[256];
  if (threads > 256)
    threads = 256;
  atomic_store(&p->next, 0);
  atomic_store(&p->failed, 0);
  p->first_error[0] = 0;
  double t0 = now();
  int started = 0;
  for (; started < threads; started++)
    if (pthread_create(&tids[started], NULL, pool_worker, p) != 0)
      break;
  if (started == 0)
    pool_worker(p);
  for (int i = 0; i < started; i++)
    pthread_join(tids[i], NULL);
  return now() - t0;
}

/* ---- Prometheus text: the request counters ------------------------------------------------- */

enum { M_GET, M_POST, M_PUT, M_PATCH, M_DELETE, M_OTHER, M_COUNT };
static const char *const method_names[M_COUNT] = {"GET", "POST", "PUT", "PATCH", "DELETE", "other"};

struct requests {
  double by_method[M_COUNT];
  double total, writes, throttled /* 429 */, server_errors /* 5xx */, transport /* no answer */;
  double reconciles; /* controller_runtime_reconcile_total (the operator's scrapes only) */
};

/* The value of label `key` inside a {k="v",...} label set, copied into out. */
static void label_value(const char *labels, const char *key, char *out, size_t cap) {
  char pat[64];
  snprintf(pat, sizeof pat, "%s=\"", key);
  out[0] = 0;
  const char *p = labels;
  while ((p = strstr(p, pat)) != NULL) {
    if (p == labels || p[-1] == '{' || p[-1] == ',')
      break;
    p++;
  }
  if (!p)
    return;
  p += strlen(pat);
  size_t i = 0;
  while (*p && *p != '"' && i + 1 < cap)
    out[i++] = *p++;
  out[i] = 0;
}

/* Sums the rest_client_requests_total{code,method} samples of an exposition. */
static void parse_requests(const char *text, struct requests *r) {
  static const char fam[] = "rest_client_requests_total{";
  memset(r, 0, sizeof *r);
  for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
    if (strncmp(line, fam, sizeof fam - 1) != 0)
      continue;
    const char *end = strchr(line, '}');
    const char *eol = strchr(line, '\n');
    if (!end || (eol && end > eol))
      continue;
    char labels[256], code[32], method[32];
    size_t len = (size_t)(end - line) + 1;
    snprintf(labels, sizeof labels, "%.*s", (int)(len < sizeof labels ? len : sizeof labels - 1),
             line + sizeof fam - 2);
    label_value(labels, "code", code, sizeof code);
    label_value(labels, "method", method, sizeof method);
    double v = strtod(end + 1, NULL);
    int m = M_OTHER;
    for (int i = 0; i < M_OTHER; i++)
      if (strcmp(method, method_names[i]) == 0)
        m = i;
    r->by_method[m] += v;
    r->total += v;
    if (m != M_GET)
      r->writes += v;
    if (strcmp(code, "429") == 0)
      r->throttled += v;
    else if (code[0] == '5')
      r->server_errors += v;
    else if (code[0] == '<')
      r->transport += v;
  }
}

static struct requests requests_delta(const struct requests *a, const struct requests *b) {
  struct requests d;
  for (int i = 0; i < M_COUNT; i++)
    d.by_method[i] = b->by_method[i] - a->by_method[i];
  d.total = b->total - a->total;
  d.writes = b->writes - a->writes;
  d.throttled = b->throttled - a->throttled;
  d.server_errors = b->server_errors - a->server_errors;
  d.transport = b->transport - a->transport;
  d.reconciles = b->reconciles - a->reconciles;
  return d;
}

/* "12000 (POST 12000, GET 3)": the non-zero methods; "0" when there were none. */
static void format_requests(const struct requests *r, char *out, size_t cap) {
  size_t off = (size_t)snprintf(out, cap, "%.0f", r->total);
  bool first = true;
  for (int i = 0; i < M_COUNT && off < cap; i++) {
    if (r->by_method[i] == 0)
      continue;
    off += (size_t)snprintf(out + off, cap - off, "%s%s %.0f", first ? " (" : ", ", method_names[i],
                            r->by_method[i]);
    first = false;
  }
  if (!first && off < cap)
    snprintf(out + off, cap - off, ")");
}

/* Sum of the samples of family `name` whose label `key` equals `value` (every sample when key is
 * NULL; with value NULL, every sample that has the label). */
static double metric_sum(const char *text, const char *name, const char *key, const char *value) {
  double sum = 0;
  size_t nl = strlen(name);
  for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
    if (strncmp(line, name, nl) != 0 || (line[nl] != '{' && line[nl] != ' '))
      continue;
    const char *end = line[nl] == '{' ? strchr(line, '}') : line + nl;
    if (!end)
      continue;
    if (key) {
      char labels[512], v[128];
      size_t len = (size_t)(end - line - (long)nl) + 1;
      snprintf(labels, sizeof labels, "%.*s", (int)(len < sizeof labels ? len : sizeof labels - 1),
               line + nl);
      label_value(labels, key, v, sizeof v);
      if (value ? strcmp(v, value) != 0 : !v[0])
        continue;
    }
    sum += strtod(end + 1, NULL);
  }
  return sum;
}

/* ---- plain HTTP (the operator's /metrics and /readyz) --------------------------------------- */

static size_t http_sink(char *data, size_t size, size_t nmemb, void *ud) {
  return tn_buf_append(ud, data, size * nmemb) == 0 ? size * nmemb : 0;
}

/* GET url into out; returns the HTTP status, or -1 when there was no answer. */
static long http_get(const char *url, struct tn_buf *out) {
  CURL *c = curl_easy_init();
  if (!c)
    return -1;
  tn_buf_reset(out);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_sink);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  long status = -1;
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  return status;
}

static int scrape_requests(const char *url, struct requests *r) {
  struct tn_buf b;
  tn_buf_init(&b, (size_t)64 << 20);
  long st = http_get(url, &b);
  if (st == 200) {
    parse_requests(tn_buf_str(&b), r);
    r->reconciles = metric_sum(tn_buf_str(&b), "controller_runtime_reconcile_total", NULL, NULL);
  }
  tn_buf_cleanup(&b);
  return st == 200 ? 0 : -1;
}

/* The API server's own /metrics: what flow control (APF) did, and the writes by resource (by
 * every client: the controller-manager's too). */
static char *apiserver_metrics(struct tn_kube *k) {
  struct tn_kube_request req = {.method = "GET", .path = "/metrics", .timeout_ms = 30000};
  struct tn_kube_response resp;
  struct tn_error err;
  tn_kube_response_init(&resp);
  char *text = tn_kube_do(k, &req, &resp, &err) == 0 ? tn_buf_take(&resp.body) : NULL;
  tn_kube_response_cleanup(&resp);
  return text;
}

struct tally_entry {
  char key[96];
  double v;
};

struct tally {
  struct tally_entry e[64];
  size_t n;
};

static void tally_add(struct tally *t, const char *key, double v) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->e[i].key, key) == 0) {
      t->e[i].v += v;
      return;
    }
  if (t->n < sizeof t->e / sizeof *t->e) {
    snprintf(t->e[t->n].key, sizeof t->e[t->n].key, "%s", key);
    t->e[t->n++].v = v;
  }
}

/* Adds sign * every sample of family (e.g. "apiserver_request_total") keyed "VERB
 * resource[/subresource]", leaving out the verbs in skip (a space-separated list). */
static void tally_requests(struct tally *t, const char *text, const char *family, const char *skip,
                           double sign) {
  size_t fl = strlen(family);
  for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
    if (strncmp(line, family, fl) != 0 || line[fl] != '{')
      continue;
    const char *end = strchr(line, '}');
    if (!end)
      continue;
    char labels[512], verb[16], resource[48], sub[24], key[96], word[24];
    size_t len = (size_t)(end - line) - fl + 1;
    snprintf(labels, sizeof labels, "%.*s", (int)(len < sizeof labels ? len : sizeof labels - 1), line + fl);
    label_value(labels, "verb", verb, sizeof verb);
    snprintf(word, sizeof word, " %s ", verb);
    if (strstr(skip, word))
      continue;
    label_value(labels, "resource", resource, sizeof resource);
    label_value(labels, "subresource", sub, sizeof sub);
    snprintf(key, sizeof key, "%s %s%s%s", verb, resource, sub[0] ? "/" : "", sub);
    tally_add(t, key, sign * strtod(end + 1, NULL));
  }
}

/* Prints the entries of b - a of a tally, largest first, those of at least min. */
static void tally_print(const char *title, const char *family, const char *skip, const char *a, const char *b,
                        double min, const char *fmt_unit) {
  struct tally t = {.n = 0};
  tally_requests(&t, b, family, skip, 1);
  tally_requests(&t, a, family, skip, -1);
  for (size_t i = 1; i < t.n; i++)
    for (size_t j = i; j > 0 && t.e[j].v > t.e[j - 1].v; j--) {
      struct tally_entry tmp = t.e[j];
      t.e[j] = t.e[j - 1];
      t.e[j - 1] = tmp;
    }
  printf("  %s:", title);
  size_t shown = 0;
  for (size_t i = 0; i < t.n && shown < 14; i++)
    if (t.e[i].v >= min) {
      printf("%s %s %.*f%s", shown ? "," : "", t.e[i].key, min < 0.5 ? 1 : 0, t.e[i].v, fmt_unit);
      shown++;
    }
  printf("%s\n", shown ? "" : " none");
}

/* Prints what happened between two scrapes a and b (either may be NULL: not readable). */
static void server_print(const char *a, const char *b, bool details) {
  if (!a || !b) {
    printf("  apiserver /metrics not readable\n");
    return;
  }
  static const char disp[] = "apiserver_flowcontrol_dispatched_requests_total";
  static const char rej[] = "apiserver_flowcontrol_rejected_requests_total";
  printf("  apiserver APF (every client): %.0f requests dispatched (%.0f in the exempt priority level), %.0f "
         "rejected (429)\n",
         metric_sum(b, disp, NULL, NULL) - metric_sum(a, disp, NULL, NULL),
         metric_sum(b, disp, "priority_level", "exempt") - metric_sum(a, disp, "priority_level", "exempt"),
         metric_sum(b, rej, NULL, NULL) - metric_sum(a, rej, NULL, NULL));
  if (!details)
    return;
  tally_print("apiserver writes by resource (every client)", "apiserver_request_total", " GET LIST WATCH ", a,
              b, 0.5, "");
  tally_print("apiserver time serving them, sum of latencies (every client; watches left out)",
              "apiserver_request_duration_seconds_sum", " WATCH CONNECT ", a, b, 0.05, " s");
}

/* Waits until the API server serves fewer than 20 requests a second (from every client: e.g. the
 * controller-manager creating each new namespace's ServiceAccount and ConfigMap) for 3 s in a
 * row, at most timeout_s. Returns the seconds waited. */
static double wait_quiet(struct tn_kube *k, int timeout_s) {
  double t0 = now(), last = -1;
  int calm = 0;
  while (calm < 3 && now() - t0 < timeout_s) {
    char *text = apiserver_metrics(k);
    double total = text ? metric_sum(text, "apiserver_request_total", NULL, NULL) : -1;
    free(text);
    calm = last >= 0 && total >= 0 && total - last < 20 ? calm + 1 : 0;
    last = total;
    sleep_s(1);
  }
  return now() - t0;
}

/* ---- CPU time of the processes involved (what a shared machine's load does not distort) ------ */

enum { P_APISERVER, P_ETCD, P_CONTROLLER_MANAGER, P_OPERATOR, P_SELF, P_POSTGRES, P_COUNT };
static const char *const proc_names[P_COUNT] = {
    "kube-apiserver", "etcd",        "kube-controller-manager",
    "operator",       "this client", "postgres (all its processes)"};
static pid_t stack_pids[P_COUNT]; /* 0 when unknown; the stack's from $TENANCY_STATE_DIR/pids */

/* user + system CPU seconds of pid (its threads included); -1 when unknown. */
static double proc_cpu_seconds(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = pid > 0 ? fopen(path, "r") : NULL;
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  /* fields after "(comm)": state is field 3; utime and stime are fields 14 and 15 */
  const char *p = strrchr(buf, ')');
  unsigned long long ut = 0, st = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds of PostgreSQL: the postmaster of $TENANCY_PG_DATA, its live children (backends,
 * writers) and the children that exited (cutime, cstime); -1 when unknown. */
static double postgres_cpu_seconds(pid_t postmaster) {
  char path[64], buf[1024];
  if (postmaster <= 0)
    return -1;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)postmaster);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')');
  unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &ut, &st, &cut,
                   &cst) != 4)
    return -1;
  double ticks = (double)(ut + st + cut + cst);
  DIR *d = opendir("/proc");
  struct dirent *de;
  while (d && (de = readdir(d)) != NULL) {
    char *end = NULL;
    long pid = strtol(de->d_name, &end, 10);
    if (!end || *end || pid <= 0 || pid == postmaster)
      continue;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "r")))
      continue;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    int ppid = 0;
    if ((p = strrchr(buf, ')')) &&
        sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ppid, &ut, &st) == 3 &&
        ppid == postmaster)
      ticks += (double)(ut + st);
  }
  if (d)
    closedir(d);
  return ticks / (double)sysconf(_SC_CLK_TCK);
}

/* Finds the stack's processes when it was started by hack/cluster-up.sh (its state directory is
 * in $TENANCY_STATE_DIR, which cluster.env exports). */
static void find_stack_pids(void) {
  static const char *const files[] = {"kube-apiserver.pid", "etcd.pid", "kube-controller-manager.pid"};
  const char *state = getenv("TENANCY_STATE_DIR");
  stack_pids[P_SELF] = getpid();
  for (int i = 0; state && i < 3; i++) {
    char path[PATH_MAX];
    long pid = 0;
    int n = snprintf(path, sizeof path, "%s/pids/%s", state, files[i]);
    FILE *f = n > 0 && (size_t)n < sizeof path ? fopen(path, "r") : NULL;
    if (f && fscanf(f, "%ld", &pid) == 1 && pid > 0)
      stack_pids[i] = (pid_t)pid;
    if (f)
      fclose(f);
  }
  const char *pgdata = getenv("TENANCY_PG_DATA"); /* the audit trail's server (postmaster.pid) */
  char path[PATH_MAX];
  long pid = 0;
  int n = pgdata ? snprintf(path, sizeof path, "%s/postmaster.pid", pgdata) : -1;
  FILE *f = n > 0 && (size_t)n < sizeof path ? fopen(path, "r") : NULL;
  if (f && fscanf(f, "%ld", &pid) == 1 && pid > 0)
    stack_pids[P_POSTGRES] = (pid_t)pid;
  if (f)
    fclose(f);
}

struct cpu {
  double s[P_COUNT];
};

static struct cpu cpu_sample(void) {
  struct cpu c;
  for (int i = 0; i < P_COUNT; i++)
    c.s[i] = i == P_POSTGRES ? postgres_cpu_seconds(stack_pids[i]) : proc_cpu_seconds(stack_pids[i]);
  return c;
}

static void cpu_print(const struct cpu *a, const struct cpu *b, double wall) {
  printf("  CPU seconds in those %.1f s:", wall);
  int shown = 0;
  for (int i = 0; i < P_COUNT; i++)
    if (a->s[i] >= 0 && b->s[i] >= 0)
      printf("%s %s %.1f", shown++ ? "," : "", proc_names[i], b->s[i] - a->s[i]);
  printf("%s\n", shown ? "" : " unknown");
}

/* ---- listing ----------------------------------------------------------------------------------- */

/* Calls fn for every item of a list, 500 per page. *rv_out (may be NULL) gets the list's
 * resourceVersion (malloc'd). */
static int list_all(struct tn_kube *k, const struct tn_gvr *gvr, const char *selector,
                    void (*fn)(void *ud, json_t *item), void *ud, char **rv_out, struct tn_error *err) {
  char *cont = NULL;
  int rc = 0;
  do {
    struct tn_list_opts lo = {.label_selector = selector, .limit = 500, .continue_token = cont};
    json_t *page = NULL;
    rc = tn_kube_list(k, gvr, NULL, &lo, &page, err);
    free(cont);
    cont = NULL;
    if (rc != 0)
      break;
    json_t *items = json_object_get(page, "items"), *it;
    size_t i;
    json_array_foreach(items, i, it) fn(ud, it);
    json_t *md = json_object_get(page, "metadata");
    const char *c = json_string_value(json_object_get(md, "continue"));
    if (c && *c)
      cont = strdup(c);
    else if (rv_out)
      *rv_out = strdup(str_or(json_string_value(json_object_get(md, "resourceVersion")), ""));
    json_decref(page);
  } while (cont);
  return rc;
}

struct name_list {
  const char *prefix; /* of the name, or with by_namespace of metadata.namespace */
  bool by_namespace;
  char **names;
  size_t n, cap;
};

static void collect_name(void *ud, json_t *item) {
  struct name_list *l = ud;
  json_t *md = json_object_get(item, "metadata");
  const char *name = json_string_value(json_object_get(md, "name"));
  if (!has_prefix(l->by_namespace ? json_string_value(json_object_get(md, "namespace")) : name, l->prefix))
    return;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 256;
    char **n = realloc(l->names, cap * sizeof *n);
    if (!n)
      return;
    l->names = n;
    l->cap = cap;
  }
  l->names[l->n++] = strdup(name);
}

static void name_list_cleanup(struct name_list *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->names[i]);
  free(l->names);
  l->names = NULL;
  l->n = l->cap = 0;
}

/* How many objects of gvr (selected, named with prefix) exist; -1 when the list failed. */
static long count_named(struct tn_kube *k, const struct tn_gvr *gvr, const char *selector,
                        const char *prefix) {
  struct name_list l = {.prefix = prefix};
  struct tn_error err;
  int rc = list_all(k, gvr, selector, collect_name, &l, NULL, &err);
  long n = rc == 0 ? (long)l.n : -1;
  name_list_cleanup(&l);
  return n;
}

/* Waits until no such object is left; returns the seconds it took, or -1 on timeout or when
 * listing keeps failing (the cluster is gone). */
static double wait_gone(struct tn_kube *k, const struct tn_gvr *gvr, const char *selector, const char *prefix,
                        int timeout_s) {
  double t0 = now();
  int failures = 0;
  for (;;) {
    long n = count_named(k, gvr, selector, prefix);
    if (n == 0)
      return now() - t0;
    failures = n < 0 ? failures + 1 : 0;
    if (now() - t0 > timeout_s || failures >= 5)
      return -1;
    sleep_s(1);
  }
}

/* The objects the operator owns for the tenants named prefix*: their Namespaces and what is in
 * them (NetworkPolicies, ResourceQuotas, LimitRanges, RoleBindings). -1 when a list failed. */
static long count_owned(struct tn_kube *k, const char *prefix) {
  static const struct tn_gvr *const kinds[] = {&gvr_netpol, &gvr_quota, &gvr_limits, &gvr_rb};
  long total = count_named(k, &gvr_ns, MANAGED_BY, prefix);
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds && total >= 0; i++) {
    struct name_list l = {.prefix = prefix, .by_namespace = true};
    struct tn_error err;
    if (list_all(k, kinds[i], MANAGED_BY, collect_name, &l, NULL, &err) != 0)
      total = -1;
    else
      total += (long)l.n;
    name_list_cleanup(&l);
  }
  return total;
}

/* ---- deleting ---------------------------------------------------------------------------------- */

struct delete_job {
  const struct tn_gvr *gvr;
  struct name_list *names;
};

static int delete_item(struct pool *p, size_t i, struct tn_error *err) {
  struct delete_job *j = p->ud;
  int rc = tn_kube_delete(p->k, j->gvr, NULL, j->names->names[i], NULL, err);
  if (rc != 0 && rc != TN_ENOTFOUND) {
    pool_fail(p, j->names->names[i], err);
    return 1;
  }
  return 0;
}

/* Deletes every object of gvr with the selector whose name has the prefix; returns how many. */
static long delete_named(struct tn_kube *k, const struct tn_gvr *gvr, const char *selector,
                         const char *prefix) {
  struct name_list l = {.prefix = prefix};
  struct tn_error err;
  if (list_all(k, gvr, selector, collect_name, &l, NULL, &err) != 0) {
    fprintf(stderr, "bench_tenants: listing %s: %s\n", gvr->resource, err.message);
    return -1;
  }
  struct delete_job j = {gvr, &l};
  struct pool p = {.k = k, .n = l.n, .item = delete_item, .ud = &j, .mu = PTHREAD_MUTEX_INITIALIZER};
  pool_run(&p, opt.threads);
  if (atomic_load(&p.failed))
    fprintf(stderr, "bench_tenants: %zu deletes of %s failed, first: %s\n", atomic_load(&p.failed),
            gvr->resource, p.first_error);
  long n = (long)l.n;
  name_list_cleanup(&l);
  return n;
}

/* Tenants left by an earlier run may hold a finalizer no operator will release: drop it. */
static void tenant_drop_finalizer(void *ud, json_t *item) {
  struct tn_kube *k = ud;
  json_t *md = json_object_get(item, "metadata");
  const char *name = json_string_value(json_object_get(md, "name"));
  if (!has_prefix(name, OP_PREFIX) || json_array_size(json_object_get(md, "finalizers")) == 0)
    return;
  json_t *patch = json_pack("{s:{s:n}}", "metadata", "finalizers");
  struct tn_error err;
  if (tn_kube_merge_patch(k, &gvr_tenant, NULL, name, patch, NULL, NULL, &err) != 0 &&
      err.code != TN_ENOTFOUND)
    fprintf(stderr, "bench_tenants: dropping the finalizer of tenant %s: %s\n", name, err.message);
  json_decref(patch);
}

/* Removes the operator phase's tenants and namespaces without the operator's help. */
static void force_clean_operator_objects(struct tn_kube *k) {
  struct tn_error err;
  if (list_all(k, &gvr_tenant, NULL, tenant_drop_finalizer, k, NULL, &err) == 0)
    delete_named(k, &gvr_tenant, NULL, OP_PREFIX);
  delete_named(k, &gvr_ns, MANAGED_BY, OP_PREFIX);
  if (wait_gone(k, &gvr_ns, MANAGED_BY, OP_PREFIX, 900) < 0 ||
      wait_gone(k, &gvr_tenant, NULL, OP_PREFIX, 60) < 0)
    fprintf(stderr, "bench_tenants: objects of an earlier run are still there\n");
}

/* ---- what a client phase measures around its pool of threads ------------------------------ */

struct client_phase {
  struct tn_kube *k;
  struct tn_metrics *reg; /* the benchmark client's own request counters */
  struct requests r0, d;  /* d: the client's requests in the phase */
  char *a0, *a1;          /* the API server's /metrics before and after */
  struct cpu c0, c1;
};

static void client_requests(struct client_phase *m, struct requests *out) {
  struct tn_buf text;
  tn_buf_init(&text, (size_t)16 << 20);
  tn_metrics_write(m->reg, &text);
  parse_requests(tn_buf_str(&text), out);
  tn_buf_cleanup(&text);
}

static void client_phase_begin(struct client_phase *m, struct tn_kube *k, struct tn_metrics *reg) {
  *m = (struct client_phase){.k = k, .reg = reg};
  m->a0 = apiserver_metrics(k); /* before r0: its own GET is not the phase's */
  client_requests(m, &m->r0);
  m->c0 = cpu_sample();
}

static void client_phase_end(struct client_phase *m) {
  m->c1 = cpu_sample();
  struct requests r1;
  client_requests(m, &r1);
  m->a1 = apiserver_metrics(m->k);
  m->d = requests_delta(&m->r0, &r1);
}

/* CPU seconds over wall seconds and the API server's deltas; frees what begin/end kept. */
static void client_phase_print(struct client_phase *m, double wall) {
  cpu_print(&m->c0, &m->c1, wall);
  server_print(m->a0, m->a1, true);
  free(m->a0);
  free(m->a1);
  m->a0 = m->a1 = NULL;
}

/* ---- phase 1: the baseline ------------------------------------------------------------------- */

struct baseline {
  double *latency; /* [unit * per_env + k], seconds */
};

/* One environment: its Namespace first, then the five objects in it. */
static int baseline_item(struct pool *p, size_t unit, struct tn_error *err) {
  struct baseline *b = p->ud;
  char tenant[32], ns[64];
  snprintf(tenant, sizeof tenant, BASE_PREFIX "%04zu", unit / N_ENVS + 1);
  snprintf(ns, sizeof ns, "%s-%s", tenant, envs[unit % N_ENVS]);
  int failed = 0;
  for (size_t k = 0; k < per_env; k++) {
    const struct tn_gvr *gvr = NULL;
    json_t *obj = env_object(env_kinds[k], tenant, envs[unit % N_ENVS], ns, &gvr);
    double t0 = now();
    int rc =
        obj ? tn_kube_create(p->k, gvr, ns, obj, NULL, err) : tn_error_set(err, -ENOMEM, "json_pack failed");
    b->latency[unit * per_env + k] = now() - t0;
    json_decref(obj);
    if (rc != 0) {
      pool_fail(p, ns, err);
      failed++;
      if (k == 0)
        break; /* no namespace, nothing to put in it */
    }
  }
  return failed;
}

static double run_baseline(struct tn_kube *k, struct tn_metrics *reg) {
  size_t units = opt.tenants * N_ENVS, objects = units * per_env;
  long left = count_named(k, &gvr_ns, MANAGED_BY_BASELINE, BASE_PREFIX);
  if (left != 0) {
    fprintf(stderr, "bench_tenants: removing %ld baseline namespaces of an earlier run\n", left);
    delete_named(k, &gvr_ns, MANAGED_BY_BASELINE, BASE_PREFIX);
    if (wait_gone(k, &gvr_ns, MANAGED_BY_BASELINE, BASE_PREFIX, 900) < 0) {
      printf("baseline: not run: namespaces " BASE_PREFIX "* of an earlier run are still terminating\n");
      return -1;
    }
  }
  struct baseline b = {.latency = calloc(objects, sizeof(double))};
  if (!b.latency)
    return -1;
  struct client_phase m;
  struct pool p = {.k = k, .n = units, .item = baseline_item, .ud = &b, .mu = PTHREAD_MUTEX_INITIALIZER};
  client_phase_begin(&m, k, reg);
  double secs = pool_run(&p, opt.threads);
  client_phase_end(&m);
  const struct requests d = m.d;
  size_t failed = atomic_load(&p.failed);
  char reqs[256];
  format_requests(&d, reqs, sizeof reqs);
  printf("baseline (plain parallel client, %d threads, no client-side rate limit, one HTTP/2 connection):\n",
         opt.threads);
  printf("  %zu objects in %.2f s = %.0f objects/s; %zu failed\n", objects - failed, secs,
         (double)(objects - failed) / secs, failed);
  printf("  requests %s; %.0f answered 429, %.0f answered 5xx, %.0f without an answer\n", reqs, d.throttled,
         d.server_errors, d.transport);
  double p50 = quantile(b.latency, objects, 0.50), p99 = quantile(b.latency, objects, 0.99);
  printf("  create latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", p50 * 1e3, p99 * 1e3,
         b.latency[objects - 1] * 1e3);
  client_phase_print(&m, secs);
  if (failed)
    printf("  first failure: %s\n", p.first_error);
  fflush(stdout);
  free(b.latency);

  if (private_stack && !opt.teardown) {
    /* Deleting 2,000 namespaces keeps the namespace controller busy for minutes; on a stack that
     * goes away anyway the objects stay, and the operator does not watch them. */
    double quiet = wait_quiet(k, 120);
    printf(
        "  cleanup: none (private stack; --teardown deletes them); the stack was quiet again after %.1f s\n",
        quiet);
  } else if (!opt.keep) {
    double t0 = now();
    long n = delete_named(k, &gvr_ns, MANAGED_BY_BASELINE, BASE_PREFIX);
    double del = now() - t0;
    double gone = wait_gone(k, &gvr_ns, MANAGED_BY_BASELINE, BASE_PREFIX, 900);
    if (gone < 0)
      printf("  cleanup: %ld namespaces deleted in %.1f s; still terminating after 900 s more\n", n, del);
    else
      printf("  cleanup: %ld namespaces deleted in %.1f s, gone (namespace controller) %.1f s later\n", n,
             del, gone);
  }
  return failed ? -1 : secs;
}

/* ---- phase 2: the operator -------------------------------------------------------------------- */

/* Watches the Tenants and records when each first shows Ready=True. The stream is parsed on the
 * client's transport thread; the fields below are written there and read by the main thread. */
struct watcher {
  struct tn_kube *k; /* a client of its own, so the creates do not share its connection */
  size_t n;
  double *ready_at;    /* [i] for bench-<i+1>; 0 until Ready; written by the stream only */
  atomic_size_t ready; /* how many are Ready */
  atomic_int stop;     /* set by the main thread; cancels the watch */
  atomic_int listed;   /* the first list is done: creates may start */
  pthread_mutex_t mu;  /* protects last_ready and rv */
  double last_ready;
  char rv[64];
  size_t events;
};

static bool is_ready(json_t *obj) {
  json_t *conds = json_object_get(json_object_get(obj, "status"), "conditions"), *c;
  size_t i;
  json_array_foreach(conds, i, c) {
    if (strcmp(str_or(json_string_value(json_object_get(c, "type")), ""), "Ready") == 0)
      return strcmp(str_or(json_string_value(json_object_get(c, "status")), ""), "True") == 0;
  }
  return false;
}

static void watcher_see(struct watcher *w, json_t *obj) {
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  if (!has_prefix(name, OP_PREFIX) || !is_ready(obj))
    return;
  char *end = NULL;
  unsigned long idx = strtoul(name + strlen(OP_PREFIX), &end, 10);
  if (!end || *end || idx == 0 || idx > w->n || w->ready_at[idx - 1] != 0)
    return;
  double t = now();
  w->ready_at[idx - 1] = t;
  pthread_mutex_lock(&w->mu);
  w->last_ready = t;
  pthread_mutex_unlock(&w->mu);
  atomic_fetch_add(&w->ready, 1);
}

static void watcher_list_item(void *ud, json_t *item) { watcher_see(ud, item); }

static int watcher_event(void *ud, enum tn_watch_type type, json_t *obj, struct tn_error *err) {
  struct watcher *w = ud;
  w->events++;
  if (type == TN_WATCH_ERROR)
    return tn_watch_status_error(obj, err);
  const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
  if (rv) {
    pthread_mutex_lock(&w->mu);
    snprintf(w->rv, sizeof w->rv, "%s", rv);
    pthread_mutex_unlock(&w->mu);
  }
  if (type == TN_WATCH_ADDED || type == TN_WATCH_MODIFIED)
    watcher_see(w, obj);
  return 0;
}

#define TN_DRAINS_MAX 16

struct stream_ctx {
  struct tn_watchstream *ws;
  struct tn_error err;
  int rc;
};

static int watcher_data(void *ud, const char *data, size_t len) {
  struct stream_ctx *s = ud;
  s->rc = tn_watchstream_feed(s->ws, data, len, &s->err);
  return s->rc;
}

static void *watcher_main(void *arg) {
  struct watcher *w = arg;
  bool need_list = true;
  while (!atomic_load(&w->stop)) {
    struct tn_error err;
    if (need_list) {
      char *rv = NULL;
      if (list_all(w->k, &gvr_tenant, NULL, watcher_list_item, w, &rv, &err) != 0) {
        fprintf(stderr, "bench_tenants: listing tenants: %s\n", err.message);
        free(rv);
        sleep_s(0.25);
        continue;
      }
      pthread_mutex_lock(&w->mu);
      snprintf(w->rv, sizeof w->rv, "%s", rv ? rv : "");
      pthread_mutex_unlock(&w->mu);
      free(rv);
      need_list = false;
      atomic_store(&w->listed, 1);
    }
    struct tn_buf q;
    tn_buf_init(&q, 4096);
    pthread_mutex_lock(&w->mu);
    tn_kube_query_add(&q, "watch", "1");
    tn_kube_query_add(&q, "allowWatchBookmarks", "true");
    tn_kube_query_add(&q, "resourceVersion", w->rv);
    tn_kube_query_add(&q, "timeoutSeconds", "300");
    pthread_mutex_unlock(&w->mu);
    char *path = tn_kube_path(&gvr_tenant, NULL, NULL, NULL);
    struct stream_ctx s = {.ws = tn_watchstream_new(0, watcher_event, w)};
    struct tn_kube_request req = {.method = "GET",
                                  .path = path,
                                  .query = tn_buf_str(&q),
                                  .on_data = watcher_data,
                                  .ud = &s,
                                  .cancel = &w->stop,
                                  .no_retry = true};
    struct tn_kube_response resp;
    tn_kube_response_init(&resp);
    int rc = s.ws ? tn_kube_do(w->k, &req, &resp, &err) : -ENOMEM;
    if (rc == 0 && s.ws)
      rc = tn_watchstream_finish(s.ws, &s.err);
    if (s.rc != 0)
      rc = s.rc;
    tn_kube_response_cleanup(&resp);
    tn_watchstream_free(s.ws);
    free(path);
    tn_buf_cleanup(&q);
    if (atomic_load(&w->stop))
      break;
    if (rc != 0) {
      need_list = true; /* 410 Gone or a broken stream: start from a fresh list */
      sleep_s(0.25);
    }
  }
  return NULL;
}

struct op_create {
  double *created_at;    /* [i]: when the create of bench-<i+1> returned */
  size_t offset;         /* item i creates bench-<offset+i+1> */
  const char *region;    /* the tenants' region; NULL: eu-west-1 */
  atomic_size_t skipped; /* items not created (scale phase stopped by SIGUSR1) */
};

/* SIGUSR1 during the scale phase: create no more tenants, measure with those there are. */
static volatile sig_atomic_t scale_stop;
static void scale_stop_handler(int sig) { scale_stop = 1; }

static int tenant_create_item(struct pool *p, size_t i, struct tn_error *err) {
  struct op_create *c = p->ud;
  if (scale_stop && name_width == 5) {
    atomic_fetch_add(&c->skipped, 1);
    return 0;
  }
  char name[32];
  i += c->offset;
  snprintf(name, sizeof name, OP_PREFIX "%0*zu", name_width, i + 1);
  json_t *obj = tenant_object_in(name, c->region);
  int rc =
      obj ? tn_kube_create(p->k, &gvr_tenant, NULL, obj, NULL, err) : tn_error_set(err, -ENOMEM, "json_pack");
  c->created_at[i] = now();
  json_decref(obj);
  if (rc != 0) {
    pool_fail(p, name, err);
    return 1;
  }
  return 0;
}

/* kB of a /proc/<pid>/status field (VmRSS, VmHWM); -1 when unknown. */
static long proc_status_kib(pid_t pid, const char *field) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long v = -1;
  size_t fl = strlen(field);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
      v = strtol(line + fl + 1, NULL, 10);
      break;
    }
  fclose(f);
  return v;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

struct operator_proc {
  pid_t pid;
  const char *tag;   /* log file suffix (NULL: none); the scale phase runs two at once */
  bool leader_elect; /* --leader-elect=true instead of false */
  int metrics_port, health_port;
  char bin[PATH_MAX], log_path[PATH_MAX], metrics_url[128], readyz_url[128], flags[1024];
};

static bool operator_bin(char *out, size_t cap) {
  const char *env = getenv("TENANCY_OPERATOR_BIN");
  if (env && *env) {
    snprintf(out, cap, "%s", env);
    return access(out, X_OK) == 0;
  }
  static const char *const candidates[] = {"build/bin/tenancy-operator",
                                           "build/release/bin/tenancy-operator"};
  for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
    int n = snprintf(out, cap, "%s/%s", root, candidates[i]);
    if (n > 0 && (size_t)n < cap && access(out, X_OK) == 0)
      return true;
  }
  return false;
}

static void print_log_tail(const char *path, int lines) {
  char cmd[PATH_MAX + 64];
  snprintf(cmd, sizeof cmd, "tail -n %d '%s' >&2", lines, path);
  if (system(cmd) != 0)
    fprintf(stderr, "(no log at %s)\n", path);
}

/* Starts the operator with its log in o->log_path and waits until /readyz answers 200. */
static int operator_start(struct operator_proc *o) {
  o->metrics_port = free_port();
  o->health_port = free_port();
  snprintf(o->metrics_url, sizeof o->metrics_url, "http://127.0.0.1:%d/metrics", o->metrics_port);
  snprintf(o->readyz_url, sizeof o->readyz_url, "http://127.0.0.1:%d/readyz", o->health_port);
  const char *tmp = str_or(getenv("TMPDIR"), "/tmp");
  snprintf(o->log_path, sizeof o->log_path, "%s/bench_tenants-operator.%d%s%s.log", tmp, (int)getpid(),
           o->tag ? "." : "", o->tag ? o->tag : "");
  const char *le = o->leader_elect ? "--leader-elect=true" : "--leader-elect=false";
  char a_metrics[64], a_health[64], a_sync[64], a_kube[PATH_MAX + 16];
  snprintf(a_metrics, sizeof a_metrics, "--metrics-bind-address=127.0.0.1:%d", o->metrics_port);
  snprintf(a_health, sizeof a_health, "--health-probe-bind-address=127.0.0.1:%d", o->health_port);
  snprintf(a_sync, sizeof a_sync, "--sync-period=%s", opt.sync_period);
  snprintf(a_kube, sizeof a_kube, "--kubeconfig=%s", getenv("KUBECONFIG"));
  char *argv[64] = {o->bin, a_kube, a_metrics, a_health, a_sync, (char *)le, NULL};
  int argc = 6;
  char *extra = strdup(str_or(getenv("TENANCY_BENCH_OPERATOR_ARGS"), ""));
  size_t off = (size_t)snprintf(o->flags, sizeof o->flags, "%s %s", a_sync, le);
  for (char *save = NULL, *t = strtok_r(extra, " \t", &save); t && argc < 63;
       t = strtok_r(NULL, " \t", &save)) {
    argv[argc++] = t;
    if (off < sizeof o->flags)
      off += (size_t)snprintf(o->flags + off, sizeof o->flags - off, " %s", t);
  }
  argv[argc] = NULL;
  fflush(NULL);
  pid_t parent = getpid();
  o->pid = fork();
  if (o->pid < 0) {
    free(extra);
    return -1;
  }
  if (o->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the benchmark */
    if (getppid() != parent)
      _exit(1);
    int fd = open(o->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv(o->bin, argv);
    fprintf(stderr, "exec %s: %s\n", o->bin, strerror(errno));
    _exit(127);
  }
  free(extra);
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  double t0 = now();
  int rc = -1;
  while (now() - t0 < 120) {
    int st;
    if (waitpid(o->pid, &st, WNOHANG) == o->pid) {
      o->pid = 0;
      fprintf(stderr, "bench_tenants: the operator exited at start; its log (%s) ends:\n", o->log_path);
      print_log_tail(o->log_path, 20);
      break;
    }
    if (http_get(o->readyz_url, &b) == 200 && http_get(o->metrics_url, &b) == 200) {
      rc = 0;
      break;
    }
    sleep_s(0.1);
  }
  tn_buf_cleanup(&b);
  if (rc != 0 && o->pid > 0)
    fprintf(stderr, "bench_tenants: the operator did not become ready in 120 s (log %s)\n", o->log_path);
  return rc;
}

static bool operator_alive(struct operator_proc *o) {
  int st;
  if (o->pid <= 0)
    return false;
  if (waitpid(o->pid, &st, WNOHANG) == o->pid) {
    o->pid = 0;
    return false;
  }
  return true;
}

static void operator_stop(struct operator_proc *o) {
  if (o->pid <= 0)
    return;
  kill(o->pid, SIGTERM);
  for (int i = 0; i < 400; i++) { /* its graceful shutdown may take up to 30 s */
    int st;
    if (waitpid(o->pid, &st, WNOHANG) == o->pid) {
      o->pid = 0;
      return;
    }
    sleep_s(0.1);
  }
  kill(o->pid, SIGKILL);
  waitpid(o->pid, NULL, 0);
  o->pid = 0;
}

/* CRDs, the sample Plans and Regions, the tenant ClusterRoles: the operator's prerequisites. */
static int install_prerequisites(void) {
  char cmd[PATH_MAX * 2];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && bash -c 'set -e; . hack/lib.sh; export PATH=\"$CP_BIN:$PATH\"; hack/crds.sh apply; "
           "kubectl apply --server-side --force-conflicts --field-manager=bench-tenants "
           "-f manifests/deploy/00-namespace.yaml -f manifests/deploy/20-tenant-roles.yaml "
           "-f manifests/samples/00-plans.yaml -f manifests/samples/01-regions.yaml' >/dev/null 2>&1",
           root);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- phase 1b: the end-state floor --------------------------------------------------------- */

/* The baseline creates the objects only. Every write the operator phase's end state needs is
 * more: the user's Tenant, the finalizer, the status, the Events. The floor is those writes made
 * by the same plain client, with the one Tenant watch the operator phase also has (its observer
 * of Ready), so the operator's own overhead (its watches, its reads, its waiting) is what
 * separates it from the floor. Per tenant, one after the other as a reconcile must: POST the
 * Tenant, PUT its metadata (an annotation where the operator adds its finalizer: the same kind
 * of write, but no finalizer is left behind with no operator to release it), the 12 objects, PUT
 * the status the operator writes, POST 2 Events. The Tenants
 * are deleted afterwards (the operator must not find them); their objects stay, as the
 * baseline's. */
static const struct tn_gvr gvr_events = {"events.k8s.io", "v1", "events", true};
static int install_prerequisites(void);

static json_t *floor_condition(const char *type, const char *reason, const char *message, const char *when) {
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "type", type, "status", "True", "reason", reason,
                   "message", message, "lastTransitionTime", when, "observedGeneration", 1);
}

/* The status the operator writes for an Active tenant on plan standard (see a converged
 * bench-* Tenant). New reference. */
static json_t *floor_status(const char *tenant, const char *when) {
  char ns0[64], ns1[64], corr[40];
  snprintf(ns0, sizeof ns0, "%s-%s", tenant, envs[0]);
  snprintf(ns1, sizeof ns1, "%s-%s", tenant, envs[1]);
  snprintf(corr, sizeof corr, "93918ebd-df13-8831-804e-%012x", (unsigned)(uintptr_t)tenant & 0xffffffu);
  json_t *conds = json_pack(
      "[o, o, o, o, o, o, o]", floor_condition("Ready", "Converged", "tenant is Active and converged", when),
      floor_condition("PolicyCompliant", "Compliant", "every TenancyPolicy allows the tenant", when),
      floor_condition("Placed", "Placed", "placed in region eu-west-1 with isolation shared", when),
      floor_condition("NamespacesReady", "Converged", "every Namespace of the tenant is as desired", when),
      floor_condition("NetworkIsolated", "Converged", "every NetworkPolicy of the tenant is as desired",
                      when),
      floor_condition("QuotaApplied", "Converged",
                      "every ResourceQuota and LimitRange of the tenant is as desired", when),
      floor_condition("AccessBound", "Converged", "every RoleBinding of the tenant is as desired", when));
  return json_pack("{s:s, s:s, s:s, s:o, s:{s:{s:b, s:b}, s:{s:i, s:s, s:i, s:s, s:i, s:i, s:s}, "
                   "s:{s:i, s:i}}, s:s, s:[s, s], s:i, s:{s:s, s:s}}",
                   "state", "Active", "createdAt", when, "activatedAt", when, "conditions", conds, "derived",
                   "features", "auditExport", 0, "sso", 1, "quotas", "connections", 20, "cpu", "4",
                   "eventsPerDay", 100000, "memory", "8Gi", "pods", 50, "services", 10, "storage", "50Gi",
                   "rateLimits", "burst", 100, "requestsPerSecond", 50, "lastCorrelationId", corr,
                   "namespaces", ns0, ns1, "observedGeneration", 1, "placement", "isolation", "shared",
                   "region", "eu-west-1");
}

static int floor_event(struct tn_kube *k, json_t *tenant, const char *reason, const char *note,
                       struct tn_error *err) {
  json_t *md = json_object_get(tenant, "metadata");
  struct tn_object_ref ref = {.api_version = "tenancy.dev/v1alpha1",
                              .kind = "Tenant",
                              .name = json_string_value(json_object_get(md, "name")),
                              .uid = json_string_value(json_object_get(md, "uid")),
                              .resource_version = json_string_value(json_object_get(md, "resourceVersion"))};
  char suffix[32];
  snprintf(suffix, sizeof suffix, "%08lx%08lx", (unsigned long)random(), (unsigned long)random());
  json_t *ev = tn_event_build("tenancy.dev/tenancy-operator", "bench-floor", &ref, "Normal", reason, reason,
                              note, suffix, (double)time(NULL));
  int rc =
      ev ? tn_kube_create(k, &gvr_events, "default", ev, NULL, err) : tn_error_set(err, -ENOMEM, "no memory");
  json_decref(ev);
  return rc;
}

/* Per tenant, the latency of each step of the floor. */
enum { F_CREATE, F_META, F_OBJECTS, F_STATUS, F_EVENTS, F_STEPS };
static const char *const floor_step_names[F_STEPS] = {"Tenant create", "metadata PUT", "12 object creates",
                                                      "status PUT", "2 Events"};
struct floor {
  double last_ready;        /* when the last status PUT was answered; under the pool's mu */
  double *latency[F_STEPS]; /* [step][tenant], seconds */
};

/* floor-audit: the audit trail the floor writes to (TENANCY_PG_DSN), shared by its threads as the
 * operator's workers share theirs (one connection behind a mutex). NULL: the variant is not run. */
static struct tn_audit *floor_audit;

/* floor-audit: the PostgreSQL rows the operator writes for a new Active tenant (its reconcile's
 * calls, operator/converge/reconciler.c and tenant_changes.c): before the objects, the "started"
 * rows of create and activate; after the status, the tenant's history version, the "succeeded"
 * rows with the created and activated outbox events, and the placement.decided and
 * quota.changed rows with theirs. Same functions, same shapes: what the trail costs is the same. */
static int floor_audit_transitions(const json_t *tenant, const char *outcome, struct tn_error *err) {
  const json_t *md = json_object_get(tenant, "metadata");
  const char *name = json_string_value(json_object_get(md, "name"));
  const char *uid = json_string_value(json_object_get(md, "uid"));
  const char *rv = json_string_value(json_object_get(md, "resourceVersion"));
  char target[128];
  snprintf(target, sizeof target, "tenant/%s", name ? name : "");
  static const struct {
    const char *action, *from, *to, *event;
  } steps[] = {{"create", "", "Draft", TN_CE_CREATED}, {"activate", "Draft", "Active", TN_CE_ACTIVATED}};
  enum { N = sizeof steps / sizeof *steps };
  char details[N][160], cid[N][37];
  struct tn_outbox_event ob[N] = {0};
  struct tn_audit_event ev[N];
  int rc = 0;
  for (size_t i = 0; i < N && rc == 0; i++) {
    snprintf(details[i], sizeof details[i], "{\"from\":\"%s\",\"to\":\"%s\",\"reason\":\"%s\"}",
             steps[i].from, steps[i].to, steps[i].action);
    const char *parts[] = {"bench-floor", uid ? uid : "", steps[i].action};
    tn_uuid_from_parts(parts, 3, cid[i]);
    if (strcmp(outcome, TN_AUDIT_SUCCEEDED) == 0) {
      json_t *data = tn_ce_transition_data(steps[i].from[0] ? steps[i].from : NULL, steps[i].to, 1,
                                           "benchmark", "standard", "eu-west-1");
      rc = data ? tn_outbox_event_init(&ob[i], NULL, tenant, steps[i].event, cid[i], TN_AUDIT_OPERATOR_ACTOR,
                                       data, err)
                : tn_error_set(err, -ENOMEM, "out of memory");
      json_decref(data);
    }
    ev[i] = (struct tn_audit_event){.actor = TN_AUDIT_OPERATOR_ACTOR,
                                    .action = steps[i].action,
                                    .target = target,
                                    .request_id = rv,
                                    .correlation_id = cid[i],
                                    .outcome = outcome,
                                    .generation_before = 1,
                                    .generation_after = 1,
                                    .details = details[i],
                                    .outbox = ob[i].event ? &ob[i] : NULL};
  }
  /* one call for the transition's rows, as the reconcile's audit_steps makes */
  if (rc == 0)
    rc = tn_audit_append_many(floor_audit, ev, N, NULL, err);
  for (size_t i = 0; i < N; i++)
    tn_outbox_event_cleanup(&ob[i]);
  return rc;
}

static int floor_audit_after(const json_t *tenant, struct tn_error *err) {
  if (tn_history_record_event(floor_audit, tenant, NULL, NULL, err) ||
      floor_audit_transitions(tenant, TN_AUDIT_SUCCEEDED, err))
    return -1;
  char when[32];
  time_t t = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
  json_t *quotas = json_pack("{s:s, s:s, s:s}", "cpu", "8", "memory", "16Gi", "storage", "100Gi");
  struct tn_tenant_changes c = {.audit = floor_audit,
                                .tenant = tenant,
                                .actor = TN_AUDIT_OPERATOR_ACTOR,
                                .request_id = json_string_value(
                                    json_object_get(json_object_get(tenant, "metadata"), "resourceVersion")),
                                .now = when,
                                .region = "eu-west-1",
                                .isolation = "shared",
                                .quotas = quotas};
  int rc = quotas ? tn_tenant_record_changes(&c, NULL, err) : tn_error_set(err, -ENOMEM, "out of memory");
  json_decref(quotas);
  return rc;
}

static int floor_item(struct pool *p, size_t i, struct tn_error *err) {
  struct floor *f = p->ud;
  char tenant[32], ns[64], when[32];
  snprintf(tenant, sizeof tenant, "%s%04zu", floor_prefix, i + 1);
  time_t t = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
  json_t *obj = tenant_object(tenant), *cur = NULL, *next = NULL;
  int failed = 0;
  if (obj && fvar.finalizer_at_create) /* what a mutating webhook would store with the create */
    json_object_set_new(json_object_get(obj, "metadata"), "annotations",
                        json_pack("{s:s}", "tenancy.dev/bench-floor", "finalizer"));
  double t0 = now();
  if (!obj || tn_kube_create(p->k, &gvr_tenant, NULL, obj, &cur, err) != 0) {
    pool_fail(p, tenant, err);
    json_decref(obj);
    return 1;
  }
  json_decref(obj);
  double t1 = now();
  f->latency[F_CREATE][i] = t1 - t0;
  /* the finalizer's write */
  json_t *md = json_object_get(cur, "metadata");
  if (!fvar.finalizer_at_create) {
    /* added to the annotations there are (the API server's tenancy.dev/last-requested-by among
     * them where the actor policy of manifests/deploy/45-actor-policy.yaml is installed) */
    json_t *ann = json_object_get(md, "annotations");
    if (!json_is_object(ann))
      json_object_set_new(md, "annotations", ann = json_object());
    json_object_set_new(ann, "tenancy.dev/bench-floor", json_string("finalizer"));
    if (tn_kube_update(p->k, &gvr_tenant, NULL, cur, NULL, &next, err) != 0) {
      pool_fail(p, tenant, err);
      json_decref(cur);
      return 1;
    }
    json_decref(cur);
    cur = next;
    next = NULL;
  }
  if (fvar.audit && floor_audit_transitions(cur, TN_AUDIT_STARTED, err) != 0) {
    pool_fail(p, "audit trail", err);
    failed++;
  }
  t0 = now();
  f->latency[F_META][i] = t0 - t1;
  for (size_t e = 0; e < N_ENVS; e++) {
    snprintf(ns, sizeof ns, "%s-%s", tenant, envs[e]);
    for (size_t k = 0; k < per_env; k++) {
      const struct tn_gvr *gvr = NULL;
      if (fvar.one_netpol && env_kinds[k] == K_DENY)
        continue; /* allow-same-tenant selects every pod for both directions: it isolates alone */
      json_t *o = env_object(env_kinds[k], tenant, envs[e], ns, &gvr);
      int rc =
          o ? tn_kube_create(p->k, gvr, ns, o, NULL, err) : tn_error_set(err, -ENOMEM, "json_pack failed");
      json_decref(o);
      if (rc != 0) {
        pool_fail(p, ns, err);
        failed++;
      }
    }
  }
  t1 = now();
  f->latency[F_OBJECTS][i] = t1 - t0;
  json_t *status = floor_status(tenant, when);
  if (status && fvar.small_status) { /* the least a status could say: state, generation, Ready */
    json_t *small =
        json_pack("{s:O, s:i, s:[O]}", "state", json_object_get(status, "state"), "observedGeneration", 1,
                  "conditions", json_array_get(json_object_get(status, "conditions"), 0));
    json_decref(status);
    status = small;
  }
  json_object_set_new(cur, "status", status);
  if (tn_kube_update(p->k, &gvr_tenant, NULL, cur, "status", &next, err) != 0) {
    pool_fail(p, tenant, err);
    failed++;
  } else {
    if (fvar.audit && floor_audit_after(next, err) != 0) {
      pool_fail(p, "audit trail", err);
      failed++;
    }
    double t_ready = now();
    f->latency[F_STATUS][i] = t_ready - t1;
    pthread_mutex_lock(&p->mu);
    if (t_ready > f->last_ready)
      f->last_ready = t_ready;
    pthread_mutex_unlock(&p->mu);
  }
  t0 = now();
  if ((!fvar.one_event && floor_event(p->k, next ? next : cur, "Created", "tenant created", err) != 0) ||
      floor_event(p->k, next ? next : cur, "Activated", "tenant activated", err) != 0) {
    pool_fail(p, tenant, err);
    failed++;
  }
  f->latency[F_EVENTS][i] = now() - t0;
  json_decref(cur);
  json_decref(next);
  return failed;
}

/* The first Tenant writes after the CRDs are (re)applied wait ~2 s for the API server to serve
 * the new schema: one probe Tenant, created and deleted before a timed window. */
static void warm_tenant_crd(struct tn_kube *k) {
  json_t *probe = tenant_object("warmup-tenant-crd");
  struct tn_error err;
  double until = now() + 60;
  int rc;
  while ((rc = tn_kube_create(k, &gvr_tenant, NULL, probe, NULL, &err)) != 0 && rc != TN_EEXISTS &&
         now() < until)
    sleep_s(0.2);
  json_decref(probe);
  if (tn_kube_delete(k, &gvr_tenant, NULL, "warmup-tenant-crd", NULL, &err) != 0 && err.code != TN_ENOTFOUND)
    fprintf(stderr, "bench_tenants: deleting the warm-up Tenant: %s\n", err.message);
}

/* floor-watch: the watches the operator's informers keep open (operator/converge/manager.c,
 * webhooks/controller.c), each opened by the floor client at the current resourceVersion and
 * drained (every event parsed, as an informer does; nothing cached). The owned kinds' selector is
 * the floor's label (managed-by=tenancy-baseline, as long as the operator's), so the API server
 * sends this client what it sends the operator for its own objects. */
static const struct tn_gvr gvr_plans = {"tenancy.dev", "v1alpha1", "plans", false};
static const struct tn_gvr gvr_policies = {"tenancy.dev", "v1alpha1", "tenancypolicies", false};
static const struct tn_gvr gvr_regions = {"tenancy.dev", "v1alpha1", "regions", false};
static const struct tn_gvr gvr_migrations = {"tenancy.dev", "v1alpha1", "tenantmigrations", false};
static const struct tn_gvr gvr_whsubs = {"tenancy.dev", "v1alpha1", "webhooksubscriptions", false};
static const struct tn_gvr gvr_secrets = {"", "v1", "secrets", true};

struct drain {
  const struct tn_gvr *gvr;
  const char *selector;
  struct tn_kube *k; /* shared by every drain: one HTTP/2 connection, as the operator's informers */
  atomic_int *stop;
  atomic_size_t events;
  atomic_int started; /* 1: watching; -1: could not start */
  pthread_t thread;
  char rv[64];
};

static int drain_event(void *ud, enum tn_watch_type type, json_t *obj, struct tn_error *err) {
  struct drain *d = ud;
  if (type == TN_WATCH_ERROR)
    return tn_watch_status_error(obj, err);
  const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
  if (rv)
    snprintf(d->rv, sizeof d->rv, "%s", rv);
  if (type != TN_WATCH_BOOKMARK)
    atomic_fetch_add(&d->events, 1);
  return 0;
}

static void *drain_main(void *arg) {
  struct drain *d = arg;
  struct tn_error err;
  /* The current resourceVersion: a list of one item (no initial events to drain). */
  struct tn_list_opts lo = {.label_selector = d->selector, .limit = 1};
  json_t *page = NULL;
  if (tn_kube_list(d->k, d->gvr, NULL, &lo, &page, &err) != 0) {
    fprintf(stderr, "bench_tenants: floor-watch: listing %s: %s\n", d->gvr->resource, err.message);
    atomic_store(&d->started, -1);
    return NULL;
  }
  snprintf(
      d->rv, sizeof d->rv, "%s",
      str_or(json_string_value(json_object_get(json_object_get(page, "metadata"), "resourceVersion")), ""));
  json_decref(page);
  atomic_store(&d->started, 1);
  while (!atomic_load(d->stop)) {
    struct tn_buf q;
    tn_buf_init(&q, 4096);
    tn_kube_query_add(&q, "watch", "1");
    tn_kube_query_add(&q, "allowWatchBookmarks", "true");
    tn_kube_query_add(&q, "resourceVersion", d->rv);
    tn_kube_query_add(&q, "timeoutSeconds", "600");
    if (d->selector)
      tn_kube_query_add(&q, "labelSelector", d->selector);
    char *path = tn_kube_path(d->gvr, NULL, NULL, NULL);
    struct stream_ctx sc = {.ws = tn_watchstream_new(0, drain_event, d)};
    struct tn_kube_request req = {.method = "GET",
                                  .path = path,
                                  .query = tn_buf_str(&q),
                                  .on_data = watcher_data,
                                  .ud = &sc,
                                  .cancel = d->stop,
                                  .no_retry = true};
    struct tn_kube_response resp;
    tn_kube_response_init(&resp);
    int rc = sc.ws ? tn_kube_do(d->k, &req, &resp, &err) : -ENOMEM;
    tn_kube_response_cleanup(&resp);
    tn_watchstream_free(sc.ws);
    free(path);
    tn_buf_cleanup(&q);
    if (rc != 0 && !atomic_load(d->stop))
      sleep_s(0.25);
  }
  return NULL;
}

struct drains {
  struct drain d[TN_DRAINS_MAX];
  size_t n;
  atomic_int stop;
  struct tn_kube *k;
  struct tn_kube_config cfg;
};

static void drains_start(struct drains *ds) {
  static const struct {
    const struct tn_gvr *gvr;
    const char *selector;
  } w[] = {
      {&gvr_plans, NULL},
      {&gvr_policies, NULL},
      {&gvr_regions, NULL},
      {&gvr_ns, MANAGED_BY_BASELINE},
      {&gvr_netpol, MANAGED_BY_BASELINE},
      {&gvr_quota, MANAGED_BY_BASELINE},
      {&gvr_limits, MANAGED_BY_BASELINE},
      {&gvr_rb, MANAGED_BY_BASELINE},
      {&gvr_secrets, MANAGED_BY_BASELINE ",tenancy.dev/tenant"},
      {&gvr_migrations, NULL},
      {&gvr_whsubs, NULL},
      {&gvr_tenant, NULL}, /* the operator's own Tenant watch, beside the observer both phases have */
  };
  struct tn_error err;
  memset(ds, 0, sizeof *ds);
  if (tn_kube_config_auto(NULL, &ds->cfg, &err) != 0 ||
      (ds->cfg.qps = 0, tn_kube_new(&ds->cfg, NULL, &ds->k, &err)) != 0) {
    printf("floor-watch: no client for the watches: %s\n", err.message);
    return;
  }
  for (size_t i = 0; i < sizeof w / sizeof *w && ds->n < TN_DRAINS_MAX; i++) {
    struct drain *d = &ds->d[ds->n];
    *d = (struct drain){.gvr = w[i].gvr, .selector = w[i].selector, .k = ds->k, .stop = &ds->stop};
    if (pthread_create(&d->thread, NULL, drain_main, d) == 0)
      ds->n++;
  }
  for (double t0 = now(); now() - t0 < 60; sleep_s(0.01)) {
    size_t up = 0;
    for (size_t i = 0; i < ds->n; i++)
      up += atomic_load(&ds->d[i].started) != 0;
    if (up == ds->n)
      break;
  }
  size_t ok = 0;
  for (size_t i = 0; i < ds->n; i++)
    ok += atomic_load(&ds->d[i].started) == 1;
  printf(
      "  floor-watch: %zu of %zu watches open (the operator's informers': tenants, plans, tenancypolicies, "
      "regions, the 5 owned kinds and secrets with the floor's managed-by selector, tenantmigrations, "
      "webhooksubscriptions)\n",
      ok, ds->n);
}

static void drains_stop(struct drains *ds) {
  atomic_store(&ds->stop, 1);
  size_t total = 0;
  char per[512] = "";
  size_t off = 0;
  for (size_t i = 0; i < ds->n; i++) {
    pthread_join(ds->d[i].thread, NULL);
    size_t e = atomic_load(&ds->d[i].events);
    total += e;
    if (off < sizeof per)
      off +=
          (size_t)snprintf(per + off, sizeof per - off, "%s%s %zu", i ? ", " : "", ds->d[i].gvr->resource, e);
  }
  if (ds->n)
    printf("  floor-watch: %zu watch events drained (%s) = %.1f per tenant\n", total, per,
           (double)total / (double)opt.tenants);
  tn_kube_free(ds->k);
  tn_kube_config_cleanup(&ds->cfg);
  ds->k = NULL;
  ds->n = 0;
}

static double run_floor(struct tn_kube *k, struct tn_metrics *reg, double baseline_s) {
  if (install_prerequisites() != 0) {
    printf("floor: not run: installing the CRDs (hack/crds.sh) and the samples failed\n");
    return -1;
  }
  if (count_named(k, &gvr_tenant, NULL, FLOOR_PREFIX) != 0 ||
      count_named(k, &gvr_ns, MANAGED_BY_BASELINE, FLOOR_PREFIX) != 0) {
    fprintf(stderr, "bench_tenants: removing the floor's tenants and namespaces of an earlier run\n");
    delete_named(k, &gvr_tenant, NULL, FLOOR_PREFIX);
    delete_named(k, &gvr_ns, MANAGED_BY_BASELINE, FLOOR_PREFIX);
    if (wait_gone(k, &gvr_ns, MANAGED_BY_BASELINE, FLOOR_PREFIX, 900) < 0 ||
        wait_gone(k, &gvr_tenant, NULL, FLOOR_PREFIX, 60) < 0) {
      printf("floor: not run: objects %s* of an earlier run are still there\n", floor_prefix);
      return -1;
    }
  }
  warm_tenant_crd(k);
  double load0 = load_average();
  struct floor f = {0};
  for (int st = 0; st < F_STEPS; st++)
    if (!(f.latency[st] = calloc(opt.tenants, sizeof(double)))) {
      for (int j = 0; j < st; j++)
        free(f.latency[j]);
      return -1;
    }
  /* One observer watches the Tenants, as in the operator phase (where it tells Ready): the API
   * server serves it the same events in both. */
  struct tn_kube_config wcfg = {0};
  struct tn_error werr;
  struct watcher w = {.n = 0, .mu = PTHREAD_MUTEX_INITIALIZER};
  pthread_t wt;
  bool watching = false;
  if (tn_kube_config_auto(NULL, &wcfg, &werr) == 0 &&
      (wcfg.qps = 0, tn_kube_new(&wcfg, NULL, &w.k, &werr)) == 0 &&
      pthread_create(&wt, NULL, watcher_main, &w) == 0) {
    watching = true;
    for (double t0 = now(); !atomic_load(&w.listed) && now() - t0 < 60;)
      sleep_s(0.01);
  } else {
    printf("floor: the Tenant watch did not start; measuring without it\n");
  }
  static struct drains ds; /* floor-watch only */
  if (fvar.watches)
    drains_start(&ds);
  struct client_phase m;
  struct pool p = {.k = k, .n = opt.tenants, .item = floor_item, .ud = &f, .mu = PTHREAD_MUTEX_INITIALIZER};
  client_phase_begin(&m, k, reg);
  double t0 = now();
  double all = pool_run(&p, opt.threads);
  client_phase_end(&m);
  if (fvar.watches)
    drains_stop(&ds);
  if (watching) {
    atomic_store(&w.stop, 1);
    pthread_join(wt, NULL);
  }
  tn_kube_free(w.k);
  tn_kube_config_cleanup(&wcfg);
  /* As for the operator: from the first create to the last status that says Ready (Events may
   * follow). */
  double secs = f.last_ready > t0 ? f.last_ready - t0 : all;
  const struct requests d = m.d;
  size_t failed = atomic_load(&p.failed);
  char reqs[256];
  format_requests(&d, reqs, sizeof reqs);
  if (fvar.finalizer_at_create || fvar.one_event || fvar.small_status || fvar.one_netpol || fvar.watches ||
      fvar.audit)
    printf(
        "floor variant %s (%s%s%s%s%s%s%s), tenants %s*:\n", fvar.name,
        fvar.watches || fvar.audit ? " every write of the floor, plus" : "",
        fvar.watches ? " the operator's watches kept open and drained" : "",
        !fvar.audit ? ""
        : fvar.watches
            ? " and the operator's audit trail, history and outbox rows in PostgreSQL (6 audit "
              "rows, 4 outbox events, 1 history version per tenant)"
            : " the operator's audit trail, history and outbox rows in PostgreSQL (6 audit rows, 4 "
              "outbox events, 1 history version per tenant)",
        fvar.finalizer_at_create ? " no metadata PUT: the finalizer's annotation sent with the create" : "",
        fvar.one_event ? " 1 Event (Activated) instead of 2" : "",
        fvar.small_status ? " a status of state, observedGeneration and the Ready condition only" : "",
        fvar.one_netpol ? " 1 NetworkPolicy per namespace instead of 2 (no default-deny)" : "", floor_prefix);
  printf("end-state floor (the same client makes every write of the operator phase's end state, one "
         "Tenant watch open as in the operator phase: per tenant the Tenant's create, a metadata PUT as the "
         "finalizer's, the %zu objects, the "
         "status PUT, 2 Events; %d threads, one tenant after the other per thread):\n",
         N_ENVS * per_env, opt.threads);
  printf(
      "  %zu tenants Ready in %.2f s (first create to the last status PUT) = %.0f tenants/s, the last Events "
      "%.2f s later; %zu failed requests\n",
      opt.tenants, secs, (double)opt.tenants / secs, all - secs, failed);
  printf("  load average %.2f at the start of the phase, %.2f at its end\n", load0, load_average());
  printf("  requests %s = %.1f per tenant; %.0f answered 429, %.0f answered 5xx\n", reqs,
         d.total / (double)opt.tenants, d.throttled, d.server_errors);
  printf("  latency per tenant, p50 / p99 / max:");
  for (int st = 0; st < F_STEPS; st++) {
    double p50 = quantile(f.latency[st], opt.tenants, 0.50), p99 = quantile(f.latency[st], opt.tenants, 0.99);
    printf("%s %s %.1f / %.1f / %.1f ms", st ? ";" : "", floor_step_names[st], p50 * 1e3, p99 * 1e3,
           f.latency[st][opt.tenants - 1] * 1e3);
    free(f.latency[st]);
  }
  printf("\n");
  if (baseline_s > 0)
    printf("  ratio floor/baseline: %.2fx (baseline %.2f s): what the writes beyond the objects cost\n",
           secs / baseline_s, baseline_s);
  client_phase_print(&m, all);
  if (failed)
    printf("  first failure: %s\n", p.first_error);
  fflush(stdout);

  /* The operator must not find these Tenants (no finalizer holds them). */
  delete_named(k, &gvr_tenant, NULL, FLOOR_PREFIX);
  if (wait_gone(k, &gvr_tenant, NULL, FLOOR_PREFIX, 120) < 0)
    printf("  cleanup: the floor's Tenants are still there after 120 s\n");
  if (private_stack && !opt.teardown) {
    double quiet = wait_quiet(k, 120);
    printf("  cleanup: the Tenants deleted, their objects kept (private stack); quiet again after %.1f s\n",
           quiet);
  } else if (!opt.keep) {
    long n = delete_named(k, &gvr_ns, MANAGED_BY_BASELINE, FLOOR_PREFIX);
    double gone = wait_gone(k, &gvr_ns, MANAGED_BY_BASELINE, FLOOR_PREFIX, 900);
    printf("  cleanup: the Tenants and %ld namespaces deleted%s\n", n,
           gone < 0 ? "; namespaces still terminating after 900 s" : "");
  }
  fflush(stdout);
  return failed ? -1 : secs;
}

/* $TENANCY_BENCH_RUN_TAG (up to 4 lowercase letters or digits, default none): a tag in the floor's
 * tenant names (floor<tag>-<i>, fv<tag><n>-<i>), so that a run on a kept cluster need not wait for
 * an earlier run's floor namespaces to go. */
static const char *run_tag(void) {
  static char tag[5];
  const char *t = getenv("TENANCY_BENCH_RUN_TAG");
  size_t n = 0;
  for (; t && t[n] && n < 4 && ((t[n] >= 'a' && t[n] <= 'z') || (t[n] >= '0' && t[n] <= '9')); n++)
    tag[n] = t[n];
  tag[n] = 0;
  return tag;
}

/* The floor again for each variant of --floor-variants (one candidate write removal each, or
 * "floor" for the floor unchanged, to see the load drift), with tenants fv<n>-<i>; each
 * variant's time is printed against the floor's of this run. */
static void run_floor_variants(struct tn_kube *k, struct tn_metrics *reg, double baseline_s, double floor_s) {
  static const struct floor_variant known[] = {
      {"finalizer-at-create", true, false, false, false, false, false},
      {"one-event", false, true, false, false, false, false},
      {"small-status", false, false, true, false, false, false},
      {"one-netpol", false, false, false, true, false, false},
      {"floor", false, false, false, false, false, false},
      {"floor-watch", false, false, false, false, true, false},
      {"floor-audit", false, false, false, false, false, true},
      {"floor-all", false, false, false, false, true, true},
  };
  char *list = strdup(opt.floor_variants), *save = NULL;
  int n = 0;
  for (char *tok = list ? strtok_r(list, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
    const struct floor_variant *v = NULL;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
      if (strcmp(known[i].name, tok) == 0)
        v = &known[i];
    if (!v) {
      printf("floor variant %s: unknown (finalizer-at-create, one-event, small-status, one-netpol, floor, "
             "floor-watch, floor-audit, floor-all)\n",
             tok);
      continue;
    }
    if (v->audit && !floor_audit) {
      const char *dsn = getenv("TENANCY_PG_DSN");
      struct tn_audit_options ao = {.ca_file = getenv("TENANCY_PG_CA_FILE"),
                                    .application_name = "bench-floor"};
      struct tn_error aerr = {0};
      if (!dsn || !*dsn || tn_audit_open(dsn, &ao, &floor_audit, &aerr) != 0) {
        printf("floor variant %s: not run: no audit trail (TENANCY_PG_DSN: %s)\n", v->name,
               dsn && *dsn ? aerr.message : "not set");
        continue;
      }
    }
    fvar = *v;
    snprintf(floor_prefix, sizeof floor_prefix, "fv%s%d-", run_tag(), ++n);
    printf("load average %.2f before floor variant %s\n", load_average(), v->name);
    double secs = run_floor(k, reg, baseline_s);
    if (secs > 0 && floor_s > 0)
      printf("  floor variant %s: %.2f s = %.3fx the floor of this run (%.2f s)\n", v->name, secs,
             secs / floor_s, floor_s);
    fflush(stdout);
  }
  free(list);
  tn_audit_close(floor_audit);
  floor_audit = NULL;
  fvar = (struct floor_variant){"floor", false, false, false, false, false, false};
  snprintf(floor_prefix, sizeof floor_prefix, "floor%s-", run_tag());
}

static double run_operator(struct tn_kube *k, double baseline_s, double floor_s) {
  struct operator_proc o = {0};
  if (!operator_bin(o.bin, sizeof o.bin)) {
    printf("operator: not run: no operator binary (%s; build it with make build, or set "
           "TENANCY_OPERATOR_BIN)\n",
           o.bin);
    return -1;
  }
  if (access(o.bin, X_OK) != 0 || install_prerequisites() != 0) {
    printf("operator: not run: installing the CRDs (hack/crds.sh) and the samples failed\n");
    return -1;
  }
  if (count_named(k, &gvr_tenant, NULL, OP_PREFIX) != 0 ||
      count_named(k, &gvr_ns, MANAGED_BY, OP_PREFIX) != 0) {
    fprintf(stderr, "bench_tenants: removing the tenants and namespaces of an earlier run\n");
    force_clean_operator_objects(k);
  }
  warm_tenant_crd(k); /* before the operator starts: nobody adds a finalizer to the probe */

  struct tn_kube_config cfg = {0};
  struct tn_error err;
  struct watcher w = {.n = opt.tenants, .mu = PTHREAD_MUTEX_INITIALIZER};
  struct op_create c = {0};
  char *srv0 = NULL, *srv1 = NULL, *srv2 = NULL, *srv3 = NULL; /* the API server's /metrics */
  pthread_t wt;
  bool watching = false;
  double result = -1;
  if (tn_kube_config_auto(NULL, &cfg, &err) != 0 || (cfg.qps = 0, tn_kube_new(&cfg, NULL, &w.k, &err)) != 0) {
    printf("operator: not run: %s\n", err.message);
    goto out;
  }
  w.ready_at = calloc(opt.tenants, sizeof(double));
  c.created_at = calloc(opt.tenants, sizeof(double));
  if (!w.ready_at || !c.created_at)
    goto out;
  if (operator_start(&o) != 0) {
    printf("operator: not run: it did not start (log %s)\n", o.log_path);
    goto out;
  }
  long rss_start = proc_status_kib(o.pid, "VmRSS");
  double load0 = load_average();
  if (pthread_create(&wt, NULL, watcher_main, &w) != 0)
    goto out;
  watching = true;
  for (double t0 = now(); !atomic_load(&w.listed); sleep_s(0.01))
    if (now() - t0 > 60) {
      printf("operator: not run: Tenants could not be listed for 60 s (is the CRD served?)\n");
      goto out;
    }

  struct requests m0, m1, m2, m3;
  if (scrape_requests(o.metrics_url, &m0) != 0) {
    printf("operator: not run: its /metrics did not answer\n");
    goto out;
  }
  srv0 = apiserver_metrics(k);

  /* Apply every Tenant as fast as the client goes; the clock starts at the first create. */
  struct pool p = {
      .k = k, .n = opt.tenants, .item = tenant_create_item, .ud = &c, .mu = PTHREAD_MUTEX_INITIALIZER};
  stack_pids[P_OPERATOR] = o.pid;
  struct cpu c0 = cpu_sample(), c1 = c0;
  double t_first = now(), t_c1 = t_first;
  double apply_s = pool_run(&p, opt.threads);
  size_t failed = atomic_load(&p.failed);

  double next_progress = now() + 10;
  bool died = false, timed_out = false;
  while (atomic_load(&w.ready) < opt.tenants - failed) {
    if (!operator_alive(&o)) {
      died = true;
      break;
    }
    if (now() - t_first > opt.timeout_s) {
      timed_out = true;
      break;
    }
    if (now() >= next_progress) {
      fprintf(stderr, "bench_tenants: %zu/%zu tenants Ready after %.0f s, operator RSS %ld KiB\n",
              atomic_load(&w.ready), opt.tenants, now() - t_first, proc_status_kib(o.pid, "VmRSS"));
      next_progress += 10;
    }
    sleep_s(0.05);
  }
  c1 = cpu_sample();
  t_c1 = now();
  pthread_mutex_lock(&w.mu);
  double t_ready = w.last_ready;
  pthread_mutex_unlock(&w.mu);
  size_t ready = atomic_load(&w.ready);
  long rss = proc_status_kib(o.pid, "VmRSS"), hwm = proc_status_kib(o.pid, "VmHWM");
  int scraped1 = died ? -1 : scrape_requests(o.metrics_url, &m1);
  srv1 = apiserver_metrics(k);

  printf("operator (%s %s, %zu Tenants applied by %d client threads in %.2f s, %zu failed):\n", o.bin,
         o.flags, opt.tenants, opt.threads, apply_s, failed);
  const char *dsn = getenv("TENANCY_PG_DSN");
  printf("  audit trail (PostgreSQL, --pg-dsn from TENANCY_PG_DSN): %s\n", dsn && *dsn ? "on" : "off");
  if (failed)
    printf("  first failed create: %s\n", p.first_error);
  if (died) {
    printf("  the operator exited after %.1f s with %zu/%zu tenants Ready; its log (%s) ends:\n",
           now() - t_first, ready, opt.tenants, o.log_path);
    fflush(stdout);
    print_log_tail(o.log_path, 30);
    goto out;
  }
  if (timed_out) {
    printf("  not converged: %zu/%zu tenants Ready after %d s (log %s)\n", ready, opt.tenants, opt.timeout_s,
           o.log_path);
    for (size_t i = 0; i < opt.tenants; i++)
      if (w.ready_at[i] == 0) {
        char name[32];
        snprintf(name, sizeof name, OP_PREFIX "%04zu", i + 1);
        json_t *t = NULL;
        if (tn_kube_get(k, &gvr_tenant, NULL, name, &t, &err) == 0) {
          char *s = json_dumps(json_object_get(t, "status"), JSON_COMPACT);
          printf("  e.g. %s status: %.600s\n", name, s ? s : "(none)");
          free(s);
        }
        json_decref(t);
        break;
      }
  } else {
    result = t_ready - t_first;
    long owned = count_owned(k, OP_PREFIX);
    printf("  %zu tenants Ready in %.2f s (first create to last Ready=True) = %.0f tenants/s; %ld objects "
           "owned = %.0f objects/s\n",
           ready, result, (double)ready / result, owned, (double)owned / result);
    double *lat = malloc(opt.tenants * sizeof *lat);
    size_t nl = 0;
    for (size_t i = 0; lat && i < opt.tenants; i++)
      if (w.ready_at[i] > 0 && c.created_at[i] > 0)
        lat[nl++] = w.ready_at[i] - c.created_at[i];
    if (nl) {
      double p50 = quantile(lat, nl, 0.5), p99 = quantile(lat, nl, 0.99), max = lat[nl - 1];
      printf("  per tenant, create to Ready: p50 %.2f s, p99 %.2f s, max %.2f s\n", p50, p99, max);
    }
    free(lat);
    if (baseline_s > 0)
      printf("  ratio operator/baseline: %.2fx (target <= 1.3x; baseline %.2f s)\n", result / baseline_s,
             baseline_s);
    printf("  load average %.2f at the start of the phase, %.2f at the last Ready\n", load0, load_average());
    if (floor_s > 0)
      printf("  ratio operator/floor: %.2fx (the end-state floor %.2f s: the operator's own overhead)\n",
             result / floor_s, floor_s);
  }
  if (scraped1 == 0) {
    struct requests d = requests_delta(&m0, &m1);
    char reqs[256], start[256];
    format_requests(&d, reqs, sizeof reqs);
    format_requests(&m0, start, sizeof start);
    printf("  API requests by the operator while converging: %s = %.1f per tenant; %.0f writes = %.1f per "
           "tenant; %.0f answered 429, %.0f 5xx\n",
           reqs, d.total / (double)opt.tenants, d.writes, d.writes / (double)opt.tenants, d.throttled,
           d.server_errors);
    printf("  API requests at start, before the first Tenant: %s (a watch or streaming list counts when it "
           "ends)\n",
           start);
    printf("  reconciles while converging: %.0f = %.1f per tenant\n", d.reconciles,
           d.reconciles / (double)opt.tenants);
  }
  if (!died && !timed_out)
    cpu_print(&c0, &c1, t_c1 - t_first);
  server_print(srv0, srv1, true);
  printf("  operator RSS: %.1f MiB at start, %.1f MiB when Ready, peak (VmHWM) %.1f MiB (target < 64 MiB)\n",
         (double)rss_start / 1024.0, (double)rss / 1024.0, (double)hwm / 1024.0);
  fflush(stdout);

  /* Work the operator finishes after the last Ready=True (e.g. Events still queued): wait until
   * 3 s pass without a request (at most 120 s). */
  if (!timed_out && scraped1 == 0) {
    double t0 = now(), quiet_since = now();
    m2 = m1;
    while (now() - quiet_since < 3 && now() - t0 < 120 && operator_alive(&o)) {
      sleep_s(0.5);
      struct requests m;
      if (scrape_requests(o.metrics_url, &m) != 0)
        break;
      if (m.total != m2.total)
        quiet_since = now();
      m2 = m;
    }
    struct requests d = requests_delta(&m1, &m2), all = requests_delta(&m0, &m2);
    char reqs[256];
    format_requests(&d, reqs, sizeof reqs);
    printf("  after the last Ready: %s more requests (the last %.1f s after it); in all %.1f requests and "
           "%.1f writes "
           "per tenant\n",
           reqs, quiet_since - t0, all.total / (double)opt.tenants, all.writes / (double)opt.tenants);
  }

  /* Idle: nothing changes; each --sync-period resync must cost no write. */
  if (!timed_out && scraped1 == 0 && opt.idle_s > 0) {
    srv2 = apiserver_metrics(k);
    sleep_s(opt.idle_s);
    if (operator_alive(&o) && scrape_requests(o.metrics_url, &m3) == 0) {
      srv3 = apiserver_metrics(k);
      struct requests d = requests_delta(&m2, &m3);
      char reqs[256];
      format_requests(&d, reqs, sizeof reqs);
      printf(
          "  idle %d s (--sync-period=%s): %.0f reconciles, %.0f writes (expected 0), all requests %s; RSS "
          "%.1f MiB\n",
          opt.idle_s, opt.sync_period, d.reconciles, d.writes, reqs,
          (double)proc_status_kib(o.pid, "VmRSS") / 1024.0);
      if (d.writes > 0)
        server_print(srv2, srv3, true);
    } else {
      printf("  idle window: the operator stopped answering /metrics\n");
    }
  }
  fflush(stdout);

  if (private_stack && !opt.teardown) {
    printf("  teardown: not measured (the private stack is removed; --teardown measures it)\n");
  } else if (!opt.keep && operator_alive(&o)) {
    /* Teardown through the finalizer, timed for information. */
    double t0 = now();
    long n = delete_named(k, &gvr_tenant, NULL, OP_PREFIX);
    if (wait_gone(k, &gvr_tenant, NULL, OP_PREFIX, 600) < 0) {
      printf("  teardown: %ld Tenants deleted; not all released by the finalizer after 600 s\n", n);
    } else {
      double released = now() - t0;
      double ns = wait_gone(k, &gvr_ns, MANAGED_BY, OP_PREFIX, 900);
      printf("  teardown: %ld Tenants deleted and released by the finalizer in %.1f s; their namespaces ", n,
             released);
      if (ns < 0)
        printf("still terminating after 900 s more\n");
      else
        printf("gone after %.1f s\n", now() - t0);
    }
  }

out:
  if (watching) {
    atomic_store(&w.stop, 1);
    pthread_join(wt, NULL);
  }
  operator_stop(&o);
  if (!opt.keep && !(private_stack && !opt.teardown) &&
      (count_named(k, &gvr_tenant, NULL, OP_PREFIX) != 0 ||
       count_named(k, &gvr_ns, MANAGED_BY, OP_PREFIX) != 0))
    force_clean_operator_objects(k);
  tn_kube_free(w.k);
  tn_kube_config_cleanup(&cfg);
  free(w.ready_at);
  free(c.created_at);
  free(srv0);
  free(srv1);
  free(srv2);
  free(srv3);
  fflush(stdout);
  return result;
}

/* ---- phase 4: scale (10,000 tenants; $TENANCY_BENCH_SCALE) ----------------------------------------- */

/* The operator's memory, CPU and caches, and the stack's, at one point of the scale phase. */
static void scale_print_costs(const char *when, struct operator_proc *o, size_t tenants, double cpu0) {
  struct tn_buf b;
  tn_buf_init(&b, (size_t)64 << 20);
  long st = -1;
  for (int i = 0; i < 5 && st != 200; i++) /* 5 s each: a loaded machine can miss one */
    st = http_get(o->metrics_url, &b);
  double cpu = proc_cpu_seconds(o->pid) - cpu0;
  long rss = proc_status_kib(o->pid, "VmRSS"), hwm = proc_status_kib(o->pid, "VmHWM");
  double per_k = tenants ? 1000.0 / (double)tenants : 0;
  printf(
      "  %s, %zu tenants: operator RSS %.1f MiB (peak %.1f MiB) = %.2f MiB per 1,000 tenants; CPU %.1f s = "
      "%.2f s per 1,000 tenants\n",
      when, tenants, (double)rss / 1024.0, (double)hwm / 1024.0, (double)rss / 1024.0 * per_k, cpu,
      cpu * per_k);
  if (st == 200) {
    static const char *const informers[] = {
        "tenants",      "namespaces", "networkpolicies", "resourcequotas", "limitranges",
        "rolebindings", "secrets",    "plans",           "regions",        "tenancypolicies"};
    double total = 0;
    printf("    caches (tn_informer_cache_bytes, objects):");
    for (size_t i = 0; i < sizeof informers / sizeof *informers; i++) {
      double by = metric_sum(tn_buf_str(&b), "tn_informer_cache_bytes", "informer", informers[i]);
      double n = metric_sum(tn_buf_str(&b), "tn_informer_cache_objects", "informer", informers[i]);
      total += by;
      if (n > 0)
        printf(" %s %.1f MiB (%.0f, %.0f B each)", informers[i], by / 1048576.0, n, by / n);
    }
    printf("; in all %.1f MiB = %.0f B per tenant\n", total / 1048576.0,
           tenants ? total / (double)tenants : 0);
  }
  tn_buf_cleanup(&b);
  printf("    beside it: kube-apiserver RSS %.0f MiB, CPU %.1f s; etcd RSS %.0f MiB, CPU %.1f s (since the "
         "stack "
         "started)\n",
         (double)proc_status_kib(stack_pids[P_APISERVER], "VmRSS") / 1024.0,
         proc_cpu_seconds(stack_pids[P_APISERVER]),
         (double)proc_status_kib(stack_pids[P_ETCD], "VmRSS") / 1024.0, proc_cpu_seconds(stack_pids[P_ETCD]));
  fflush(stdout);
}

/* Waits until the watcher has seen bench-<1..n> Ready (failed creates aside); false on timeout/exit. */
static bool scale_wait_ready(struct watcher *w, struct operator_proc *o, size_t n, double t0) {
  double next = now() + 30;
  while (atomic_load(&w->ready) < n) {
    if (!operator_alive(o) || now() - t0 > opt.timeout_s)
      return false;
    if (now() >= next) {
      fprintf(stderr, "bench_tenants: scale: %zu/%zu Ready after %.0f s, operator RSS %ld KiB\n",
              atomic_load(&w->ready), n, now() - t0, proc_status_kib(o->pid, "VmRSS"));
      next += 30;
    }
    sleep_s(0.02);
  }
  return true;
}

/* Waits until the operator made no request for 3 s (at most 300 s). */
static void scale_wait_quiet(struct operator_proc *o) {
  struct requests a = {0}, b;
  double t0 = now(), quiet = now();
  scrape_requests(o->metrics_url, &a);
  while (now() - quiet < 3 && now() - t0 < 300 && operator_alive(o)) {
    sleep_s(0.5);
    if (scrape_requests(o->metrics_url, &b) != 0)
      break;
    if (b.total != a.total)
      quiet = now();
    a = b;
  }
}

/* Latency at rest: one tenant applied at a time to an idle operator, create to Ready. */
static void scale_latency(struct watcher *w, struct tn_kube *k, struct op_create *c, size_t first,
                          size_t count, size_t others, bool database) {
  double *lat = calloc(count, sizeof *lat);
  size_t nl = 0;
  struct pool p = {.k = k, .n = 1, .item = tenant_create_item, .ud = c, .mu = PTHREAD_MUTEX_INITIALIZER};
  for (size_t i = 0; lat && i < count; i++) {
    c->offset = first + i;
    double t0 = now();
    pool_run(&p, 1);
    if (atomic_load(&p.failed))
      continue;
    while (w->ready_at[first + i] == 0 && now() - t0 < 30)
      sleep_s(0.001);
    if (w->ready_at[first + i] > 0)
      lat[nl++] = w->ready_at[first + i] - t0;
  }
  double max = 0;
  for (size_t i = 0; i < nl; i++)
    max = lat[i] > max ? lat[i] : max;
  if (nl)
    printf("  latency at rest (%zu tenants applied one at a time to the idle operator with %zu others, %s): "
           "create to Ready p50 %.0f ms, p99 %.0f ms, max %.0f ms (target p50 <= %d ms)\n",
           nl, others, database ? "each with a PostgreSQL database" : "no database",
           quantile(lat, nl, 0.5) * 1000, quantile(lat, nl, 0.99) * 1000, max * 1000, database ? 250 : 100);
  else
    printf("  latency at rest (%s): no tenant became Ready within 30 s\n",
           database ? "with a database" : "no database");
  free(lat);
  fflush(stdout);
}

/* Restart: a fresh operator against n converged tenants; /readyz answers once every cache synced
 * and the first pass checked every tenant (tn_manager_ready). */
/* The API server's writes between two scrapes, by verb and resource (every client: the
 * controller-manager's too), so a "write" of the operator's counters can be told apart (a Lease
 * renewal, an Event) from a write to a tenant's objects. */
static void scale_print_writes(const char *a, const char *b) {
  if (a && b)
    tally_print("    apiserver writes in it by resource (every client)", "apiserver_request_total",
                " GET LIST WATCH ", a, b, 0.5, "");
}

static void scale_restart(struct tn_kube *k, struct operator_proc *o, size_t n) {
  operator_stop(o);
  char *ma = apiserver_metrics(k);
  struct cpu c0 = cpu_sample();
  double t0 = now();
  if (operator_start(o) != 0) {
    printf("  restart: the operator did not become ready (log %s)\n", o->log_path);
    free(ma);
    return;
  }
  double ready_s = now() - t0;
  stack_pids[P_OPERATOR] = o->pid;
  struct requests m = {0};
  scrape_requests(o->metrics_url, &m);
  struct cpu c1 = cpu_sample();
  printf("  restart with %zu converged tenants: /readyz (caches synced, every tenant checked) after %.1f s; "
         "%.0f reconciles, %.0f writes (target <= 30 s, 0 writes); RSS %.1f MiB, peak %.1f MiB; operator CPU "
         "%.1f s\n",
         n, ready_s, m.reconciles, m.writes, (double)proc_status_kib(o->pid, "VmRSS") / 1024.0,
         (double)proc_status_kib(o->pid, "VmHWM") / 1024.0, proc_cpu_seconds(o->pid));
  cpu_print(&c0, &c1, now() - t0);
  char *mb = apiserver_metrics(k);
  scale_print_writes(ma, mb);
  free(ma);
  free(mb);
  fflush(stdout);
}

/* Leader failover: two replicas with --leader-elect; SIGKILL the leader; the standby takes over. */
static void scale_failover(struct tn_kube *k, struct operator_proc *o, size_t n) {
  char *ta = NULL, *tb = NULL; /* the API server's metrics before and after */
  operator_stop(o);
  struct operator_proc a = {.tag = "a", .leader_elect = true}, b = {.tag = "b", .leader_elect = true};
  snprintf(a.bin, sizeof a.bin, "%s", o->bin);
  snprintf(b.bin, sizeof b.bin, "%s", o->bin);
  if (operator_start(&a) != 0 || operator_start(&b) != 0) {
    printf("  failover: the replicas did not start (logs %s, %s)\n", a.log_path, b.log_path);
    goto out;
  }
  /* The leader is the one that reconciles. */
  struct operator_proc *leader = NULL, *standby = NULL;
  for (double t0 = now(); !leader && now() - t0 < 120; sleep_s(0.2)) {
    struct requests ma = {0}, mb = {0};
    scrape_requests(a.metrics_url, &ma);
    scrape_requests(b.metrics_url, &mb);
    if (ma.reconciles >= (double)n)
      leader = &a, standby = &b;
    else if (mb.reconciles >= (double)n)
      leader = &b, standby = &a;
  }
  if (!leader) {
    printf("  failover: no replica reconciled every tenant in 120 s\n");
    goto out;
  }
  scale_wait_quiet(leader);
  struct requests s0 = {0};
  scrape_requests(standby->metrics_url, &s0);
  double standby_cpu0 = proc_cpu_seconds(standby->pid);
  struct cpu c0 = cpu_sample();
  ta = apiserver_metrics(k);
  double t0 = now();
  kill(leader->pid, SIGKILL);
  waitpid(leader->pid, NULL, 0);
  leader->pid = 0;
  struct requests s1 = s0;
  double took = -1;
  while (now() - t0 < 180 && operator_alive(standby)) {
    if (scrape_requests(standby->metrics_url, &s1) == 0 && s1.reconciles - s0.reconciles >= (double)n) {
      took = now() - t0;
      break;
    }
    sleep_s(0.05);
  }
  stack_pids[P_OPERATOR] = standby->pid;
  struct cpu c1 = cpu_sample();
  if (took < 0) {
    printf("  failover: the standby did not check every tenant within 180 s (log %s)\n", standby->log_path);
    goto out;
  }
  printf(
      "  leader failover (SIGKILL the leader, default lease): the standby checked all %zu tenants %.1f s "
      "after the kill, %.0f writes (target <= 30 s, 0 writes); its RSS %.1f MiB, peak %.1f MiB, CPU %.1f s "
      "in it\n",
      n, took, s1.writes - s0.writes, (double)proc_status_kib(standby->pid, "VmRSS") / 1024.0,
      (double)proc_status_kib(standby->pid, "VmHWM") / 1024.0, proc_cpu_seconds(standby->pid) - standby_cpu0);
  cpu_print(&c0, &c1, took);
  tb = apiserver_metrics(k);
  scale_print_writes(ta, tb);
out:
  free(ta);
  free(tb);
  fflush(stdout);
  operator_stop(&a);
  operator_stop(&b);
}

/* --phase restart: the scale phase's restart and leader failover alone, against the tenants a
 * `--phase scale --keep` run left converged (creating 10,000 takes 30-50 min; this, 2-3 min). */
static void run_restart(struct tn_kube *k) {
  struct operator_proc o = {0};
  if (!operator_bin(o.bin, sizeof o.bin)) {
    printf("restart: not run: no operator binary\n");
    return;
  }
  long n = count_named(k, &gvr_tenant, NULL, "");
  printf("restart and failover against the %ld tenants there (load average %.2f):\n", n, load_average());
  if (n <= 0)
    return;
  scale_restart(k, &o, (size_t)n);
  printf("  load average %.2f after the restart\n", load_average());
  scale_failover(k, &o, (size_t)n);
  printf("  load average %.2f after the failover\n", load_average());
  operator_stop(&o);
}

/* A Region whose database server is the stack's PostgreSQL (its superuser DSN as the admin
 * Secret, its CA), as tests/integration/test_tenant_database.c makes: the latency at rest with a
 * database. 0, or -1 when the stack has no PostgreSQL ($TENANCY_PG_DSN, $TENANCY_PG_PORT,
 * $TENANCY_CA_FILE). */
#define BENCH_DB_REGION "bench-db"
static int create_or_keep(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, json_t *obj) {
  struct tn_error err;
  int rc = obj ? tn_kube_create(k, gvr, ns, obj, NULL, &err) : -ENOMEM;
  json_decref(obj);
  return rc == 0 || rc == TN_EEXISTS ? 0 : -1;
}

static int install_db_region(struct tn_kube *k) {
  static const struct tn_gvr gvr_secret = {"", "v1", "secrets", true};
  static const struct tn_gvr gvr_region = {"tenancy.dev", "v1alpha1", "regions", false};
  const char *dsn = getenv("TENANCY_PG_DSN"), *port = getenv("TENANCY_PG_PORT"),
             *ca = getenv("TENANCY_CA_FILE");
  if (!dsn || !port || !ca)
    return -1;
  FILE *f = fopen(ca, "r");
  char pem[16384];
  size_t n = f ? fread(pem, 1, sizeof pem - 1, f) : 0;
  if (f)
    fclose(f);
  if (n == 0)
    return -1;
  pem[n] = 0;
  const char *sys = "tenancy-system";
  if (create_or_keep(k, &gvr_ns, NULL,
                     json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace", "metadata",
                               "name", sys)) != 0 ||
      create_or_keep(k, &gvr_secret, sys,
                     json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", "v1", "kind", "Secret",
                               "metadata", "name", "pg-admin-" BENCH_DB_REGION, "namespace", sys,
                               "stringData", "uri", dsn)) != 0 ||
      create_or_keep(k, &gvr_secret, sys,
                     json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", "v1", "kind", "Secret",
                               "metadata", "name", "pg-ca-" BENCH_DB_REGION, "namespace", sys, "stringData",
                               "ca.crt", pem)) != 0)
    return -1;
  json_t *server = json_pack("{s:s, s:s, s:i, s:s, s:{s:s, s:s}, s:[s], s:{s:s, s:s}}", "name", "pg-local",
                             "host", "127.0.0.1", "port", atoi(port), "sslMode", "verify-full", "caSecretRef",
                             "namespace", sys, "name", "pg-ca-" BENCH_DB_REGION, "serves", "shared",
                             "adminSecretRef", "namespace", sys, "name", "pg-admin-" BENCH_DB_REGION);
  return create_or_keep(k, &gvr_region, NULL,
                        json_pack("{s:s, s:s, s:{s:s}, s:{s:b, s:[s], s:[o]}}", "apiVersion",
                                  "tenancy.dev/v1alpha1", "kind", "Region", "metadata", "name",
                                  BENCH_DB_REGION, "spec", "available", 1, "isolationModes", "shared",
                                  "databaseServers", server));
}

static size_t scale_size(void) {
  const char *v = getenv("TENANCY_BENCH_SCALE");
  return v && *v ? strtoul(v, NULL, 10) : 0;
}

static void run_scale(struct tn_kube *k, size_t n) {
  enum { LAT_N = 50 };
  struct operator_proc o = {0};
  struct tn_kube_config cfg = {0};
  struct tn_error err;
  size_t total = n + 2 * LAT_N; /* the latency tenants: LAT_N without, LAT_N with a database */
  struct watcher w = {.n = total, .mu = PTHREAD_MUTEX_INITIALIZER};
  struct op_create c = {0};
  pthread_t wt;
  bool watching = false;
  name_width = 5;
  printf("scale (%zu tenants x %d environments, steps 1,000 / 5,000 / %zu; $TENANCY_BENCH_SCALE):\n", n,
         N_ENVS, n);
  if (!operator_bin(o.bin, sizeof o.bin) || install_prerequisites() != 0) {
    printf("  not run: no operator binary, or installing the prerequisites failed\n");
    return;
  }
  if (count_named(k, &gvr_tenant, NULL, OP_PREFIX) != 0 ||
      count_named(k, &gvr_ns, MANAGED_BY, OP_PREFIX) != 0)
    force_clean_operator_objects(k);
  warm_tenant_crd(k);
  if (tn_kube_config_auto(NULL, &cfg, &err) != 0 || (cfg.qps = 0, tn_kube_new(&cfg, NULL, &w.k, &err)) != 0) {
    printf("  not run: %s\n", err.message);
    goto out;
  }
  w.ready_at = calloc(total, sizeof(double));
  c.created_at = calloc(total, sizeof(double));
  if (!w.ready_at || !c.created_at || operator_start(&o) != 0) {
    printf("  not run: the operator did not start (log %s)\n", o.log_path);
    goto out;
  }
  stack_pids[P_OPERATOR] = o.pid;
  double cpu0 = proc_cpu_seconds(o.pid);
  if (pthread_create(&wt, NULL, watcher_main, &w) != 0)
    goto out;
  watching = true;
  while (!atomic_load(&w.listed))
    sleep_s(0.01);
  scale_print_costs("at start", &o, 0, cpu0);
  size_t done = 0, expected = 0; /* tenants numbered so far; of them (and the latency ones) to be Ready */
  size_t lat_done = LAT_N;       /* latency tenants created (the database ones only with a PostgreSQL) */
  signal(SIGUSR1, scale_stop_handler);
  size_t steps[] = {1000, 5000, n};
  for (size_t si = 0; si < 3; si++) {
    size_t target = steps[si] < n ? steps[si] : n;
    if (target <= done && si < 2)
      continue;
    struct pool p = {
        .k = k, .n = target - done, .item = tenant_create_item, .ud = &c, .mu = PTHREAD_MUTEX_INITIALIZER};
    c.offset = done;
    struct cpu c0 = cpu_sample();
    double t0 = now();
    atomic_store(&c.skipped, 0);
    pool_run(&p, opt.threads);
    size_t failed = atomic_load(&p.failed), skipped = atomic_load(&c.skipped);
    expected += target - done - failed - skipped;
    bool ok = scale_wait_ready(&w, &o, expected, t0);
    struct cpu c1 = cpu_sample();
    if (skipped) { /* stopped: the tenants created are those numbered before the first skipped */
      printf("  stopped (SIGUSR1): %zu of this step's tenants not created\n", skipped);
      target -= skipped;
    }
    printf("  step to %zu: %zu created (%zu failed), %s in %.1f s\n", target, target - done, failed,
           ok ? "all Ready" : "NOT all Ready", now() - t0);
    if (failed)
      printf("    first failed create: %s\n", p.first_error);
    cpu_print(&c0, &c1, now() - t0);
    done = target;
    scale_wait_quiet(&o);
    scale_print_costs("converged", &o, done, cpu0);
    if (!ok)
      goto out;
    if (target == 1000 || (si == 0 && n < 1000)) {
      /* The latency tenants are numbered after the last one (n+1 ...), created now; then as many
       * with a database (n+LAT_N+1 ...), in a Region served by the stack's PostgreSQL. */
      scale_latency(&w, k, &c, n, LAT_N, done, false);
      expected += LAT_N; /* (one that failed would show as NOT all Ready later) */
      scale_wait_quiet(&o);
      if (install_db_region(k) == 0) {
        sleep_s(2); /* the Region reaches the operator's cache and its first probe */
        c.region = BENCH_DB_REGION;
        scale_latency(&w, k, &c, n + LAT_N, LAT_N, done + LAT_N, true);
        c.region = NULL;
        expected += LAT_N;
        lat_done += LAT_N;
        scale_wait_quiet(&o);
      } else {
        printf("  latency at rest with a database: not run (no PostgreSQL: $TENANCY_PG_DSN, "
               "$TENANCY_PG_PORT, $TENANCY_CA_FILE)\n");
      }
    }
    if (target == n || scale_stop)
      break;
  }
  /* Idle: resyncs of every tenant must cost no write. The window starts once the operator is
   * quiet: the Events that follow each tenant's Ready (one per tenant, written by the recorder
   * after the status) trail the last Ready by seconds and are not the resyncs' writes. */
  scale_wait_quiet(&o);
  struct requests m0 = {0}, m1 = {0};
  int s0 = scrape_requests(o.metrics_url, &m0);
  char *ma = apiserver_metrics(k);
  struct cpu c0 = cpu_sample();
  sleep_s(opt.idle_s);
  int s1 = scrape_requests(o.metrics_url, &m1);
  char *mb = apiserver_metrics(k);
  struct cpu c1 = cpu_sample();
  struct requests d = requests_delta(&m0, &m1);
  if (s0 != 0 || s1 != 0)
    printf("  idle %d s (--sync-period=%s): the operator's /metrics did not answer at the %s of the window: "
           "its reconciles and writes not measured (the API server's writes below)\n",
           opt.idle_s, opt.sync_period, s0 != 0 ? "start" : "end");
  else
    printf("  idle %d s (--sync-period=%s): %.0f reconciles, %.0f writes (expected 0)\n", opt.idle_s,
           opt.sync_period, d.reconciles, d.writes);
  cpu_print(&c0, &c1, opt.idle_s);
  scale_print_writes(ma, mb);
  free(ma);
  free(mb);
  scale_print_costs("idle", &o, done, cpu0);
  scale_restart(k, &o, done + lat_done);
  scale_failover(k, &o, done + lat_done);
out:
  if (watching) {
    atomic_store(&w.stop, 1);
    pthread_join(wt, NULL);
  }
  operator_stop(&o);
  tn_kube_free(w.k);
  tn_kube_config_cleanup(&cfg);
  free(w.ready_at);
  free(c.created_at);
  name_width = 4;
  printf("  cleanup: %s\n",
         opt.keep || private_stack ? "none (--keep or a private stack)" : "the tenants are deleted");
  if (!opt.keep && !private_stack)
    force_clean_operator_objects(k);
  fflush(stdout);
}

/* ---- the run ------------------------------------------------------------------------------------ */

static void print_machine(struct tn_kube *k) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024 * 1024);
  double load[3] = {0};
  if (getloadavg(load, 3) < 0)
    load[0] = -1;
  json_t *v = NULL;
  struct tn_error err;
  struct tn_kube_request req = {.method = "GET", .path = "/version"};
  struct tn_kube_response resp;
  tn_kube_response_init(&resp);
  const char *ver = "?";
  if (tn_kube_do(k, &req, &resp, &err) == 0 && (v = json_loads(tn_buf_str(&resp.body), 0, NULL)) != NULL)
    ver = str_or(json_string_value(json_object_get(v, "gitVersion")), "?");
  printf("machine: %ld cores, %.1f GiB; load average %.2f at start; kube-apiserver %s\n", cores, mem, load[0],
         ver);
  json_decref(v);
  tn_kube_response_cleanup(&resp);
}

/* Whether the API server URL names this machine (127.0.0.0/8, ::1, localhost). */
static bool is_loopback(const char *server) {
  CURLU *u = curl_url();
  char *host = NULL;
  bool yes = false;
  if (u && server && curl_url_set(u, CURLUPART_URL, server, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
    yes = strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0 || strcmp(host, "localhost") == 0;
  curl_free(host);
  curl_url_cleanup(u);
  return yes;
}

static int run_bench(void) {
  struct tn_kube_config cfg = {0};
  struct tn_metrics *reg = tn_metrics_new();
  struct tn_kube *k = NULL;
  struct tn_error err;
  int rc = 1;
  if (!reg || tn_kube_config_auto(NULL, &cfg, &err) != 0) {
    fprintf(stderr, "bench_tenants: %s\n", reg ? err.message : "out of memory");
    goto out;
  }
  if (!opt.allow_remote && !is_loopback(cfg.server)) {
    fprintf(stderr,
            "bench_tenants: KUBECONFIG points at %s, not a local stack; the benchmark writes thousands of "
            "objects: unset KUBECONFIG (a private stack is started) or pass --allow-remote\n",
            cfg.server ? cfg.server : "(no server)");
    goto out;
  }
  cfg.qps = 0; /* the baseline is the client without its client-side limit */
  if (tn_kube_new(&cfg, reg, &k, &err) != 0) {
    fprintf(stderr, "bench_tenants: %s\n", err.message);
    goto out;
  }
  printf("bench_tenants: %zu tenants x %d environments; baseline %zu objects (per environment a Namespace, 2 "
         "NetworkPolicies, a ResourceQuota, a LimitRange, a RoleBinding)\n",
         opt.tenants, N_ENVS, opt.tenants * N_ENVS * per_env);
  print_machine(k);
  find_stack_pids();
  fflush(stdout);
  double base = -1, floor = -1;
  snprintf(floor_prefix, sizeof floor_prefix, "floor%s-", run_tag());
  if (opt.phase == PHASE_ALL || opt.phase == PHASE_BASELINE)
    base = run_baseline(k, reg);
  if (opt.phase == PHASE_ALL || opt.phase == PHASE_FLOOR || opt.phase == PHASE_FLOOR_OPERATOR)
    floor = run_floor(k, reg, base);
  if (opt.floor_variants &&
      (opt.phase == PHASE_ALL || opt.phase == PHASE_FLOOR || opt.phase == PHASE_FLOOR_OPERATOR))
    run_floor_variants(k, reg, base, floor);
  if (opt.phase == PHASE_ALL || opt.phase == PHASE_OPERATOR || opt.phase == PHASE_FLOOR_OPERATOR)
    run_operator(k, base, floor);
  /* 10,000 tenants take ~10 minutes: only with $TENANCY_BENCH_SCALE (CI leaves it unset). */
  if (opt.phase == PHASE_SCALE || (opt.phase == PHASE_ALL && scale_size() > 0))
    run_scale(k, scale_size() ? scale_size() : opt.tenants);
  if (opt.phase == PHASE_RESTART)
    run_restart(k);
  rc = 0;
out:
  tn_kube_free(k);
  tn_kube_config_cleanup(&cfg);
  tn_metrics_free(reg);
  return rc;
}

/* ---- a private stack when there is no cluster ------------------------------------------------- */

static pid_t bench_child;

static void forward_signal(int sig) {
  if (bench_child > 0)
    kill(bench_child, sig);
}

/* Reads KUBECONFIG, PATH, TENANCY_PG_DSN and TENANCY_STATE_DIR from a cluster.env into this
 * process. */
static int load_cluster_env(const char *file) {
  char cmd[PATH_MAX + 256];
  snprintf(
      cmd, sizeof cmd,
      "bash -c '. \"$0\" && printf \"%%s\\n%%s\\n%%s\\n%%s\\n%%s\\n%%s\\n%%s\\n\" \"$KUBECONFIG\" \"$PATH\" "
      "\"$TENANCY_PG_DSN\" \"$TENANCY_STATE_DIR\" \"$TENANCY_PG_PORT\" \"$TENANCY_CA_FILE\" "
      "\"$TENANCY_PG_DATA\"' '%s'",
      file);
  FILE *f = popen(cmd, "r");
  if (!f)
    return -1;
  static const char *const names[] = {
      "KUBECONFIG",      "PATH",           "TENANCY_PG_DSN", "TENANCY_STATE_DIR", "TENANCY_PG_PORT",
      "TENANCY_CA_FILE", "TENANCY_PG_DATA"};
  char *line = NULL;
  size_t cap = 0;
  int got = 0;
  for (int i = 0; i < 7 && getline(&line, &cap, f) > 0; i++) {
    line[strcspn(line, "\n")] = 0;
    if (*line) {
      setenv(names[i], line, 1);
      got++;
    }
  }
  free(line);
  return pclose(f) == 0 && got >= 2 ? 0 : -1;
}

static int run_with_private_stack(void) {
  char state[PATH_MAX + 16], cmd[PATH_MAX * 2 + 64], envfile[PATH_MAX + 32];
  snprintf(state, sizeof state, "%s/.local/bench", root);
  snprintf(envfile, sizeof envfile, "%s/cluster.env", state);
  fprintf(stderr, "bench_tenants: KUBECONFIG is not set: starting a private stack in %s\n", state);
  snprintf(cmd, sizeof cmd, "TENANCY_STATE_DIR='%s' '%s/hack/cluster-up.sh'", state, root);
  int rc = 1;
  if (system(cmd) != 0 || load_cluster_env(envfile) != 0) {
    fprintf(stderr, "bench_tenants: the private stack did not start; nothing measured\n");
    goto down;
  }
  fflush(NULL);
  private_stack = true;
  bench_child = fork();
  if (bench_child == 0)
    _exit(run_bench());
  if (bench_child > 0) {
    signal(SIGINT, SIG_IGN); /* the child gets the terminal's SIGINT; we stay to clean up */
    signal(SIGTERM, forward_signal);
    signal(SIGHUP, forward_signal);
    int st = 0;
    while (waitpid(bench_child, &st, 0) < 0 && errno == EINTR)
      ;
    rc = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
  }
down:
  int n = snprintf(cmd, sizeof cmd, "TENANCY_STATE_DIR='%s' '%s/hack/cluster-down.sh' >/dev/null 2>&1", state,
                   root);
  if (n < 0 || (size_t)n >= sizeof cmd || system(cmd) != 0)
    fprintf(stderr, "bench_tenants: hack/cluster-down.sh failed for %s\n", state);
  return rc;
}

/* The repository: the working directory when it holds hack/cluster-up.sh (hack/bench.sh runs
 * there), else three levels above this program (build/release/bench/). */
static int find_root(void) {
  struct stat st;
  if (getcwd(root, sizeof root) && stat("hack/cluster-up.sh", &st) == 0)
    return 0;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return -1;
  exe[n] = 0;
  for (int up = 0; up < 4; up++) {
    char *slash = strrchr(exe, '/');
    if (!slash)
      return -1;
    *slash = 0;
  }
  snprintf(root, sizeof root, "%s", exe);
  char probe[PATH_MAX + 32];
  snprintf(probe, sizeof probe, "%s/hack/cluster-up.sh", root);
  return stat(probe, &st) == 0 ? 0 : -1;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_tenants [--tenants N] [--threads N]\n"
          "                     [--phase all|baseline|floor|operator|floor-operator|scale]\n"
          "                     [--idle-seconds S] [--sync-period DURATION] [--timeout S] [--keep]\n"
          "                     [--teardown] [--allow-remote]\n"
          "                     [--floor-variants "
          "finalizer-at-create,one-event,small-status,one-netpol,floor,floor-watch,floor-audit,floor-all]\n");
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {{"tenants", required_argument, NULL, 'n'},
                                           {"threads", required_argument, NULL, 't'},
                                           {"phase", required_argument, NULL, 'p'},
                                           {"idle-seconds", required_argument, NULL, 'i'},
                                           {"sync-period", required_argument, NULL, 's'},
                                           {"timeout", required_argument, NULL, 'T'},
                                           {"keep", no_argument, NULL, 'k'},
                                           {"allow-remote", no_argument, NULL, 'R'},
                                           {"teardown", no_argument, NULL, 'D'},
                                           {"floor-variants", required_argument, NULL, 'V'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'n':
      opt.tenants = strtoul(optarg, NULL, 10);
      break;
    case 't':
      opt.threads = atoi(optarg);
      break;
    case 'p':
      opt.phase = strcmp(optarg, "baseline") == 0         ? PHASE_BASELINE
                  : strcmp(optarg, "floor") == 0          ? PHASE_FLOOR
                  : strcmp(optarg, "operator") == 0       ? PHASE_OPERATOR
                  : strcmp(optarg, "scale") == 0          ? PHASE_SCALE
                  : strcmp(optarg, "restart") == 0        ? PHASE_RESTART
                  : strcmp(optarg, "floor-operator") == 0 ? PHASE_FLOOR_OPERATOR
                                                          : PHASE_ALL;
      break;
    case 'i':
      opt.idle_s = atoi(optarg);
      break;
    case 's':
      opt.sync_period = optarg;
      break;
    case 'T':
      opt.timeout_s = atoi(optarg);
      break;
    case 'k':
      opt.keep = true;
      break;
    case 'D':
      opt.teardown = true;
      break;
    case 'R':
      opt.allow_remote = true;
      break;
    case 'V':
      opt.floor_variants = optarg;
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (opt.tenants == 0 || opt.tenants > 9999 || opt.threads < 1 || opt.threads > 256 || opt.timeout_s < 1) {
    usage(stderr);
    return 2;
  }
  if (find_root() != 0) {
    fprintf(stderr, "bench_tenants: cannot find the repository (run it from the repository root)\n");
    return 1;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc = getenv("KUBECONFIG") && *getenv("KUBECONFIG") ? run_bench() : run_with_private_stack();
  curl_global_cleanup();
  return rc;
}
