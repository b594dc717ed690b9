/* tenantctl_tenant.c - the Tenant commands of tenantctl / kubectl tenant: get|list, describe,
 * create, activate|suspend|resume|archive, delete, rotate, events. Every request goes to the API
 * server with the caller's kubeconfig credentials, so RBAC and admission apply as for kubectl. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tenantctl.h"

#define TENANT_RESOURCE "tenant.tenancy.dev"
#define LIST_PAGE 500

enum {
  OPT_STATE = 300,
  OPT_PLAN,
  OPT_REGION,
  OPT_NO_HEADERS,
  OPT_ISOLATION,
  OPT_ALLOWED_REGION,
  OPT_ENV,
  OPT_DISPLAY,
  OPT_CONTACT,
  OPT_EXTERNAL,
  OPT_DRY_RUN,
  OPT_REASON,
  OPT_CONFIRM,
  OPT_RESIDENCY_FLAG,
  OPT_LABEL,
  OPT_VALUE,
  OPT_AUDIT_ROWS,
};

/* ---- shared ------------------------------------------------------------------------------- */

static const char *ready_status(json_t *t) {
  size_t i;
  json_t *c;
  json_array_foreach(tctl_get(t, "status.conditions"), i, c) {
    if (json_is_string(json_object_get(c, "type")) && !strcmp(tctl_str(c, "type"), "Ready"))
      return tctl_str(c, "status") ? tctl_str(c, "status") : "Unknown";
  }
  return "";
}

static const char *or_empty(const char *s) { return s ? s : ""; }

/* Gets one tenant; on failure prints the error as kubectl does and returns the exit code. */
static int get_tenant(struct tn_kube *k, const char *name, json_t **out) {
  struct tn_error err = {0};
  if (tctl_get_object(k, &tctl_tenants_gvr, NULL, name, out, &err)) {
    if (err.code == TN_ENOTFOUND && !strstr(err.message, name))
      snprintf(err.message, sizeof err.message, "tenants.tenancy.dev \"%s\" not found", name);
    return tctl_fail(&err, NULL);
  }
  return 0;
}

/* A tenant id as the CRD requires it (a DNS label); caught before any request. */
static bool valid_id(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
      return false;
  return true;
}

static int check_id(const char *cmd, const char *id) {
  if (!valid_id(id))
    return tctl_usage_error(cmd,
                            "\"%s\" is not a tenant id (a DNS label: at most 63 lowercase letters, digits "
                            "or '-', starting and ending with a letter or digit)",
                            id);
  return 0;
}

/* ---- get / list ------------------------------------------------------------------------------ */

static void usage_get(FILE *f) {
  fprintf(f,
          "Usage: %s get|list [TENANT...] [flags]\n"
          "\n"
          "Lists tenants (all, or those named), as `kubectl get tenants` does.\n"
          "\n"
          "Flags:\n"
          "  -o, --output FORMAT   table (default), wide, json, yaml or name\n"
          "  -l, --selector SEL    label selector, e.g. tier=gold,region!=us (sent to the API server)\n"
          "  --state STATE         only tenants in this state (status.state; spec.state until reported)\n"
          "  --plan PLAN           only tenants on this Plan (spec.plan)\n"
          "  --region REGION       only tenants placed in this Region (status.placement.region;\n"
          "                        spec.residency.preferredRegion until placed)\n"
          "  --no-headers          tables without the header line\n",
          tctl_prog);
}

struct filters {
  const char *state, *plan, *region;
};

static bool matches(json_t *t, const struct filters *fl) {
  const char *state = tctl_str(t, "status.state") ? tctl_str(t, "status.state") : tctl_str(t, "spec.state");
  const char *region = tctl_str(t, "status.placement.region") ? tctl_str(t, "status.placement.region")
                                                              : tctl_str(t, "spec.residency.preferredRegion");
  if (fl->state && (!state || strcasecmp(state, fl->state) != 0))
    return false;
  if (fl->plan && strcmp(or_empty(tctl_str(t, "spec.plan")), fl->plan) != 0)
    return false;
  if (fl->region && strcmp(or_empty(region), fl->region) != 0)
    return false;
  return true;
}

static void print_tenants(json_t *items, const char *output, bool headers) {
  if (!strcmp(output, "name")) {
    size_t i;
    json_t *t;
    json_array_foreach(items, i, t) printf(TENANT_RESOURCE "/%s\n", or_empty(tctl_str(t, "metadata.name")));
    return;
  }
  bool wide = !strcmp(output, "wide");
  size_t ncols = wide ? 9 : 6, n = json_array_size(items);
  if (n == 0) {
    fprintf(stderr, "No resources found\n");
    return;
  }
  const char **cells = calloc((n + 1) * ncols, sizeof *cells);
  char(*ages)[32] = calloc(n ? n : 1, sizeof *ages);
  if (!cells || !ages) {
    free(cells);
    free(ages);
    return;
  }
  static const char *const heads[] = {"NAME", "STATE",   "PLAN",      "REGION",      "READY",
                                      "AGE",  "DESIRED", "ISOLATION", "DISPLAY NAME"};
  for (size_t c = 0; c < ncols; c++)
    cells[c] = heads[c];
  for (size_t i = 0; i < n; i++) {
    json_t *t = json_array_get(items, i);
    const char **row = cells + (i + 1) * ncols;
    tctl_age(tctl_str(t, "metadata.creationTimestamp"), ages[i], sizeof ages[i]);
    row[0] = tctl_str(t, "metadata.name");
    row[1] = tctl_str(t, "status.state");
    row[2] = tctl_str(t, "spec.plan");
    row[3] = tctl_str(t, "status.placement.region");
    row[4] = ready_status(t);
    row[5] = ages[i];
    if (wide) {
      row[6] = tctl_str(t, "spec.state");
      row[7] = tctl_str(t, "spec.isolation");
      row[8] = tctl_str(t, "spec.displayName");
    }
  }
  tctl_print_table(stdout, "", headers ? cells : cells + ncols, headers ? n + 1 : n, ncols);
  free(cells);
  free(ages);
}

static int print_objects(json_t *items, bool single, const char *output, bool headers) {
  if (!strcmp(output, "json") || !strcmp(output, "yaml")) {
    /* As kubectl: managedFields are noise for a reader. */
    size_t i;
    json_t *t;
    json_array_foreach(items, i, t) json_object_del(json_object_get(t, "metadata"), "managedFields");
    json_t *doc = single ? json_incref(json_array_get(items, 0))
                         : json_pack("{s:s,s:s,s:O,s:{s:s}}", "apiVersion", "v1", "kind", "List", "items",
                                     items, "metadata", "resourceVersion", "");
    if (!strcmp(output, "json"))
      tctl_print_json(stdout, doc);
    else
      tctl_print_yaml(stdout, doc);
    json_decref(doc);
    return 0;
  }
  print_tenants(items, output, headers);
  return 0;
}

static bool output_ok(const char *o, bool table) {
  return !strcmp(o, "json") || !strcmp(o, "yaml") || !strcmp(o, "name") ||
         (table && (!strcmp(o, "table") || !strcmp(o, "wide")));
}

int tctl_cmd_get(int argc, char **argv) {
  static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                       {"selector", required_argument, NULL, 'l'},
                                       {"state", required_argument, NULL, OPT_STATE},
                                       {"plan", required_argument, NULL, OPT_PLAN},
                                       {"region", required_argument, NULL, OPT_REGION},
                                       {"no-headers", no_argument, NULL, OPT_NO_HEADERS},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *output = "table", *selector = NULL;
  struct filters fl = {0};
  bool headers = true;
  int opt;
  while ((opt = getopt_long(argc, argv, "ho:l:", opts, NULL)) != -1) {
    switch (opt) {
    case 'h':
      usage_get(stdout);
      return 0;
    case 'o':
      output = optarg;
      break;
    case 'l':
      selector = optarg;
      break;
    case OPT_STATE:
      fl.state = optarg;
      break;
    case OPT_PLAN:
      fl.plan = optarg;
      break;
    case OPT_REGION:
      fl.region = optarg;
      break;
    case OPT_NO_HEADERS:
      headers = false;
      break;
    default:
      return tctl_usage_error(argv[0], "unknown flag");
    }
  }
  if (!output_ok(output, true))
    return tctl_usage_error(argv[0], "--output must be table, wide, json, yaml or name, not \"%s\"", output);
  for (int i = optind; i < argc; i++) {
    /* kubectl habits: `get tenants`, `get tenant acme`, `get tenant/acme`. */
    if (i == optind && (!strcmp(argv[i], "tenants") || !strcmp(argv[i], "tenant") || !strcmp(argv[i], "tn")))
      continue;
    const char *id = strncmp(argv[i], "tenant/", 7) == 0 ? argv[i] + 7 : argv[i];
    if (check_id(argv[0], id))
      return TCTL_EXIT_USAGE;
  }
  struct tn_kube *k = NULL;
  int rc = tctl_connect(&k);
  if (rc)
    return rc;
  json_t *items = json_array();
  struct tn_error err = {0};
  int named = 0;
  for (int i = optind; i < argc; i++) {
    if (i == optind && (!strcmp(argv[i], "tenants") || !strcmp(argv[i], "tenant") || !strcmp(argv[i], "tn")))
      continue;
    const char *id = strncmp(argv[i], "tenant/", 7) == 0 ? argv[i] + 7 : argv[i];
    named++;
    json_t *t = NULL;
    int r = get_tenant(k, id, &t);
    if (r) {
      rc = rc ? rc : r;
      continue;
    }
    if (matches(t, &fl))
      json_array_append(items, t);
    json_decref(t);
  }
  if (named == 0) {
    char *cont = NULL;
    do {
      json_t *page = NULL;
      if (tctl_list_page(k, &tctl_tenants_gvr, NULL, selector, NULL, LIST_PAGE, cont, &page, &err)) {
        rc = tctl_fail(&err, NULL);
        break;
      }
      size_t i;
      json_t *t;
      json_array_foreach(json_object_get(page, "items"), i, t) {
        if (matches(t, &fl)) {
          /* List items carry no apiVersion/kind; the object printed alone does. */
          json_object_set_new(t, "apiVersion", json_string("tenancy.dev/v1alpha1"));
          json_object_set_new(t, "kind", json_string("Tenant"));
          json_array_append(items, t);
        }
      }
      free(cont);
      cont = tctl_str(page, "metadata.continue") && *tctl_str(page, "metadata.continue")
                 ? strdup(tctl_str(page, "metadata.continue"))
                 : NULL;
      json_decref(page);
    } while (cont);
    free(cont);
  } else if (selector) {
    fprintf(stderr, "%s: --selector is ignored when tenants are named\n", tctl_prog);
  }
  if (!rc || json_array_size(items) > 0)
    print_objects(items, named == 1 && json_array_size(items) == 1, output, headers);
  json_decref(items);
  tn_kube_free(k);
  return rc;
}

/* ---- events ------------------------------------------------------------------------------------ */

static const char *event_time(json_t *e) {
  const char *t = tctl_str(e, "series.lastObservedTime");
  if (!t)
    t = tctl_str(e, "eventTime");
  if (!t)
    t = tctl_str(e, "deprecatedLastTimestamp");
  if (!t)
    t = tctl_str(e, "metadata.creationTimestamp");
  return t ? t : "";
}

static int cmp_events(const void *a, const void *b) {
  return strcmp(event_time(*(json_t *const *)a), event_time(*(json_t *const *)b));
}

/* The events.k8s.io/v1 Events about tenant `name`, oldest first (a new array). Events of a
 * cluster-scoped object are recorded in the namespace "default" (or -n). */
static int tenant_events(struct tn_kube *k, const char *name, json_t **out, struct tn_error *err) {
  static const struct tn_gvr events = {"events.k8s.io", "v1", "events", true};
  const char *ns = tctl_g.namespace ? tctl_g.namespace : "default";
  char fs[400];
  snprintf(fs, sizeof fs, "regarding.kind=Tenant,regarding.name=%s", name);
  json_t *all = json_array();
  char *cont = NULL;
  int rc = 0;
  do {
    json_t *page = NULL;
    if ((rc = tctl_list_page(k, &events, ns, NULL, fs, LIST_PAGE, cont, &page, err)))
      break;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(page, "items"), i, e) {
      /* The selector is the server's; checked again here all the same. */
      if (!strcmp(or_empty(tctl_str(e, "regarding.name")), name) &&
          !strcmp(or_empty(tctl_str(e, "regarding.kind")), "Tenant"))
        json_array_append(all, e);
    }
    free(cont);
    cont = tctl_str(page, "metadata.continue") && *tctl_str(page, "metadata.continue")
               ? strdup(tctl_str(page, "metadata.continue"))
               : NULL;
    json_decref(page);
  } while (cont);
  free(cont);
  if (rc) {
    json_decref(all);
    return rc;
  }
  size_t n = json_array_size(all);
  json_t **v = calloc(n ? n : 1, sizeof *v);
  for (size_t i = 0; v && i < n; i++)
    v[i] = json_array_get(all, i);
  if (v)
    qsort(v, n, sizeof *v, cmp_events);
  json_t *sorted = json_array();
  for (size_t i = 0; v && i < n; i++)
    json_array_append(sorted, v[i]);
  free(v);
  json_decref(all);
  *out = sorted;
  return 0;
}

static void print_events_table(FILE *f, json_t *evs, const char *indent) {
  size_t n = json_array_size(evs);
  if (n == 0) {
    fprintf(f, "%s<none>\n", indent);
    return;
  }
  const size_t nc = 5;
  const char **cells = calloc((n + 1) * nc, sizeof *cells);
  char(*ages)[32] = calloc(n, sizeof *ages);
  char(*counts)[24] = calloc(n, sizeof *counts);
  if (!cells || !ages || !counts)
    goto out;
  static const char *const heads[] = {"LAST SEEN", "TYPE", "REASON", "COUNT", "NOTE"};
  for (size_t c = 0; c < nc; c++)
    cells[c] = heads[c];
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(evs, i);
    const char **row = cells + (i + 1) * nc;
    tctl_age(event_time(e), ages[i], sizeof ages[i]);
    json_t *cnt = tctl_get(e, "series.count");
    snprintf(counts[i], sizeof counts[i], "%lld",
             json_is_integer(cnt) ? (long long)json_integer_value(cnt) : 1LL);
    row[0] = ages[i];
    row[1] = tctl_str(e, "type");
    row[2] = tctl_str(e, "reason");
    row[3] = counts[i];
    row[4] = tctl_str(e, "note");
  }
  tctl_print_table(f, indent, cells, n + 1, nc);
out:
  free(cells);
  free(ages);
  free(counts);
}

static void usage_events(FILE *f) {
  fprintf(f,
          "Usage: %s events TENANT [flags]\n"
          "\n"
          "Shows the Kubernetes Events (events.k8s.io/v1) about a tenant, oldest first: Created,\n"
          "Activated, Suspended, TransitionRefused, ... (their note carries the correlation id).\n"
          "They live in the namespace \"default\" (events of cluster-scoped objects); -n changes it.\n"
          "\n"
          "Flags:\n"
          "  -o, --output FORMAT   table (default), json or yaml\n",
          tctl_prog);
}

int tctl_cmd_events(int argc, char **argv) {
  static const struct option opts[] = {
      {"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  const char *output = "table";
  int opt;
  while ((opt = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
    if (opt == 'h') {
      usage_events(stdout);
      return 0;
    }
    if (opt == 'o') {
      output = optarg;
      continue;
    }
    return tctl_usage_error(argv[0], "unknown flag");
  }
  if (optind + 1 != argc)
    return tctl_usage_error(argv[0], "events takes one tenant id");
  if (strcmp(output, "table") && strcmp(output, "json") && strcmp(output, "yaml"))
    return tctl_usage_error(argv[0], "--output must be table, json or yaml, not \"%s\"", output);
  const char *id = argv[optind];
  if (check_id(argv[0], id))
    return TCTL_EXIT_USAGE;
  struct tn_kube *k = NULL;
  int rc = tctl_connect(&k);
  if (rc)
    return rc;
  json_t *t = NULL, *evs = NULL;
  struct tn_error err = {0};
  if ((rc = get_tenant(k, id, &t)))
    goto out;
  if (tenant_events(k, id, &evs, &err)) {
    rc = tctl_fail(&err, "events");
    goto out;
  }
  if (!strcmp(output, "table")) {
    print_events_table(stdout, evs, "");
  } else {
    json_t *doc = json_pack("{s:s,s:s,s:O}", "apiVersion", "v1", "kind", "List", "items", evs);
    if (!strcmp(output, "json"))
      tctl_print_json(stdout, doc);
    else
      tctl_print_yaml(stdout, doc);
    json_decref(doc);
  }
out:
  json_decref(t);
  json_decref(evs);
  tn_kube_free(k);
  return rc;
}

/* ---- describe ------------------------------------------------------------------------------------ */

static void usage_describe(FILE *f) {
  fprintf(f,
          "Usage: %s describe TENANT [flags]\n"
          "\n"
          "Shows a tenant in detail: spec, state, placement, namespaces, database, keys, conditions,\n"
          "its Kubernetes events and, when $TENANCY_PG_DSN (or $TENANCY_PG_DSN_FILE) names the audit\n"
          "database, the newest rows of its audit trail.\n"
          "\n"
          "Flags:\n"
          "  --audit-rows N   how many audit rows (default 10; 0 hides the audit trail)\n",
          tctl_prog);
}

static void kv(const char *k, const char *v) {
  if (v && *v)
    printf("%-22s%s\n", k, v);
}

/* Strings of an array joined with ", " into dst. */
static const char *join(json_t *a, char *dst, size_t n) {
  dst[0] = '\0';
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) {
    size_t used = strlen(dst);
    snprintf(dst + used, n - used, "%s%s", i ? ", " : "", or_empty(json_string_value(v)));
  }
  return dst;
}

int tctl_cmd_describe(int argc, char **argv) {
  static const struct option opts[] = {{"audit-rows", required_argument, NULL, OPT_AUDIT_ROWS},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int audit_rows = 10, opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (opt == 'h') {
      usage_describe(stdout);
      return 0;
    }
    if (opt == OPT_AUDIT_ROWS) {
      char *end = NULL;
      long v = strtol(optarg, &end, 10);
      if (!*optarg || *end || v < 0 || v > 1000)
        return tctl_usage_error(argv[0], "--audit-rows must be 0..1000, not \"%s\"", optarg);
      audit_rows = (int)v;
      continue;
    }
    return tctl_usage_error(argv[0], "unknown flag");
  }
  int first = optind;
  if (first < argc && (!strcmp(argv[first], "tenant") || !strcmp(argv[first], "tenants")))
    first++;
  if (first + 1 != argc)
    return tctl_usage_error(argv[0], "describe takes one tenant id");
  const char *id = strncmp(argv[first], "tenant/", 7) == 0 ? argv[first] + 7 : argv[first];
  if (check_id(argv[0], id))
    return TCTL_EXIT_USAGE;
  struct tn_kube *k = NULL;
  int rc = tctl_connect(&k);
  if (rc)
    return rc;
  json_t *t = NULL, *evs = NULL;
  struct tn_error err = {0};
  if ((rc = get_tenant(k, id, &t)))
    goto out;
  char buf[2048], age[32];
  kv("Name:", id);
  kv("Display Name:", tctl_str(t, "spec.displayName"));
  const char *st = tctl_str(t, "status.state"), *want = tctl_str(t, "spec.state");
  snprintf(buf, sizeof buf, "%s%s%s%s", st ? st : "(not reported yet)",
           want && (!st || strcmp(st, want)) ? " (desired " : "",
           want && (!st || strcmp(st, want)) ? want : "", want && (!st || strcmp(st, want)) ? ")" : "");
  kv("State:", buf);
  kv("State Reason:", tctl_str(t, "spec.stateReason"));
  kv("Plan:", tctl_str(t, "spec.plan"));
  kv("Isolation:", tctl_str(t, "spec.isolation"));
  kv("Allowed Regions:", join(tctl_get(t, "spec.residency.allowedRegions"), buf, sizeof buf));
  kv("Preferred Region:", tctl_str(t, "spec.residency.preferredRegion"));
  kv("Residency Flags:", join(tctl_get(t, "spec.residency.flags"), buf, sizeof buf));
  kv("Environments:", join(tctl_get(t, "spec.environments"), buf, sizeof buf));
  {
    buf[0] = '\0';
    const char *key;
    json_t *v;
    json_object_foreach(tctl_get(t, "spec.externalIds"), key, v) {
      size_t used = strlen(buf);
      snprintf(buf + used, sizeof buf - used, "%s%s=%s", used ? ", " : "", key,
               or_empty(json_string_value(v)));
    }
    kv("External IDs:", buf);
  }
  size_t i;
  json_t *c;
  json_array_foreach(tctl_get(t, "spec.contacts"), i, c) {
    snprintf(buf, sizeof buf, "%s: %s <%s>", or_empty(tctl_str(c, "role")), or_empty(tctl_str(c, "name")),
             or_empty(tctl_str(c, "email")));
    kv(i == 0 ? "Contacts:" : "", buf);
  }
  tctl_age(tctl_str(t, "metadata.creationTimestamp"), age, sizeof age);
  snprintf(buf, sizeof buf, "%s (%s ago)", or_empty(tctl_str(t, "metadata.creationTimestamp")), age);
  kv("Created:", buf);
  kv("Correlation ID:", tctl_str(t, "status.lastCorrelationId"));
  json_t *gen = tctl_get(t, "metadata.generation"), *og = tctl_get(t, "status.observedGeneration");
  snprintf(buf, sizeof buf, "%lld (observed %lld)", (long long)json_integer_value(gen),
           (long long)json_integer_value(og));
  kv("Generation:", buf);
  printf("Placement:\n");
  if (tctl_get(t, "status.placement")) {
    kv("  Region:", tctl_str(t, "status.placement.region"));
    kv("  Isolation:", tctl_str(t, "status.placement.isolation"));
  } else {
    printf("  <not placed>\n");
  }
  kv("Namespaces:", join(tctl_get(t, "status.namespaces"), buf, sizeof buf));
  printf("Database:\n");
  json_t *db = tctl_get(t, "status.database");
  if (json_is_object(db)) {
    kv("  Server:", tctl_str(db, "server"));
    kv("  Database:", tctl_str(db, "database"));
    kv("  Schema:", tctl_str(db, "schema"));
    kv("  Role:", tctl_str(db, "role"));
    json_t *cv = json_object_get(db, "credentialsVersion");
    if (json_is_integer(cv)) {
      snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(cv));
      kv("  Credentials Version:", buf);
    } else {
      kv("  Credentials Version:", json_string_value(cv));
    }
  } else {
    printf("  <none>\n");
  }
  json_t *keys = tctl_get(t, "status.keys");
  if (json_is_object(keys)) {
    printf("Keys:\n");
    const char *key;
    json_t *v;
    json_object_foreach(keys, key, v) {
      if (json_is_string(v) || json_is_integer(v)) {
        char label[64];
        snprintf(label, sizeof label, "  %s:", key);
        if (json_is_integer(v))
          snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        else
          snprintf(buf, sizeof buf, "%s", json_string_value(v));
        kv(label, buf);
      }
    }
  }
  json_t *conds = tctl_get(t, "status.conditions");
  printf("Conditions:\n");
  size_t nc = json_array_size(conds);
  if (nc == 0) {
    printf("  <none>\n");
  } else {
    const char **cells = calloc((nc + 1) * 5, sizeof *cells);
    char(*ages)[32] = calloc(nc, sizeof *ages);
    if (cells && ages) {
      static const char *const heads[] = {"TYPE", "STATUS", "REASON", "AGE", "MESSAGE"};
      for (int h = 0; h < 5; h++)
        cells[h] = heads[h];
      json_array_foreach(conds, i, c) {
        const char **row = cells + (i + 1) * 5;
        tctl_age(tctl_str(c, "lastTransitionTime"), ages[i], sizeof ages[i]);
        row[0] = tctl_str(c, "type");
        row[1] = tctl_str(c, "status");
        row[2] = tctl_str(c, "reason");
        row[3] = ages[i];
        row[4] = tctl_str(c, "message");
      }
      tctl_print_table(stdout, "  ", cells, nc + 1, 5);
    }
    free(cells);
    free(ages);
  }
  printf("Events:\n");
  if (tenant_events(k, id, &evs, &err))
    printf("  (cannot list events: %s)\n", err.message);
  else
    print_events_table(stdout, evs, "  ");
  if (audit_rows > 0) {
    printf("Audit (newest %d):\n", audit_rows);
    fflush(stdout);
    tctl_audit_tail(stdout, id, audit_rows);
  }
out:
  json_decref(t);
  json_decref(evs);
  tn_kube_free(k);
  return rc;
}

/* ---- create ------------------------------------------------------------------------------------ */

static void usage_create(FILE *f) {
  fprintf(
      f,
      "Usage: %s create TENANT --plan PLAN [flags]\n"
      "\n"
      "Creates a Tenant from flags. The API server validates it (schema, CEL rules, the admission\n"
      "webhook) and its message is printed when it refuses.\n"
      "\n"
      "Flags:\n"
      "  --plan PLAN               the Plan (spec.plan; required by the CRD)\n"
      "  --isolation MODE          shared (default), dedicated or hybrid\n"
      "  --region REGION           the preferred Region (spec.residency.preferredRegion)\n"
      "  --allowed-region REGION   a Region the tenant may be placed in (repeatable, or comma-separated)\n"
      "  --residency-flag FLAG     a residency flag such as eu-only (repeatable)\n"
      "  --env ENV                 an environment, i.e. namespace TENANT-ENV (repeatable, or "
      "comma-separated)\n"
      "  --display-name TEXT       spec.displayName\n"
      "  --contact SPEC            role=technical|billing|incident,name=NAME,email=EMAIL (repeatable)\n"
      "  --external-id SYSTEM=ID   an id in another system, e.g. billing=cus_8TzQ (repeatable)\n"
      "  --state STATE             Draft (default) or Active\n"
      "  --reason TEXT             spec.stateReason\n"
      "  --label KEY=VALUE         a label on the Tenant (repeatable)\n"
      "  --dry-run MODE            none (default), server (validated and admitted, not stored) or client\n"
      "                            (print the object, send nothing)\n"
      "  -o, --output FORMAT       json, yaml or name: print the created object instead of a message\n",
      tctl_prog);
}

/* Appends the comma-separated values of s to array a (no duplicates). */
static void add_list(json_t *a, const char *s) {
  while (*s) {
    size_t n = strcspn(s, ",");
    if (n > 0) {
      json_t *v = json_stringn(s, n);
      bool dup = false;
      size_t i;
      json_t *e;
      json_array_foreach(a, i, e) dup = dup || json_equal(e, v);
      if (dup)
        json_decref(v);
      else
        json_array_append_new(a, v);
    }
    s += n + (s[n] == ',');
  }
}

int tctl_cmd_create(int argc, char **argv) {
  static const struct option opts[] = {{"plan", required_argument, NULL, OPT_PLAN},
                                       {"isolation", required_argument, NULL, OPT_ISOLATION},
                                       {"region", required_argument, NULL, OPT_REGION},
                                       {"allowed-region", required_argument, NULL, OPT_ALLOWED_REGION},
                                       {"residency-flag", required_argument, NULL, OPT_RESIDENCY_FLAG},
                                       {"env", required_argument, NULL, OPT_ENV},
                                       {"display-name", required_argument, NULL, OPT_DISPLAY},
                                       {"contact", required_argument, NULL, OPT_CONTACT},
                                       {"external-id", required_argument, NULL, OPT_EXTERNAL},
                                       {"state", required_argument, NULL, OPT_STATE},
                                       {"reason", required_argument, NULL, OPT_REASON},
                                       {"label", required_argument, NULL, OPT_LABEL},
                                       {"dry-run", required_argument, NULL, OPT_DRY_RUN},
                                       {"output", required_argument, NULL, 'o'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  json_t *spec = json_object(), *residency = json_object(), *allowed = json_array(), *flags = json_array(),
         *envs = json_array(), *contacts = json_array(), *ext = json_object(), *labels = json_object();
  const char *dry = "none", *output = NULL;
  int rc = 0, opt;
  json_t *obj = NULL;
  while (!rc && (opt = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
    switch (opt) {
    case 'h':
      usage_create(stdout);
      goto out;
    case OPT_PLAN:
      json_object_set_new(spec, "plan", json_string(optarg));
      break;
    case OPT_ISOLATION:
      json_object_set_new(spec, "isolation", json_string(optarg));
      break;
    case OPT_REGION:
      json_object_set_new(residency, "preferredRegion", json_string(optarg));
      break;
    case OPT_ALLOWED_REGION:
      add_list(allowed, optarg);
      break;
    case OPT_RESIDENCY_FLAG:
      add_list(flags, optarg);
      break;
    case OPT_ENV:
      add_list(envs, optarg);
      break;
    case OPT_DISPLAY:
      json_object_set_new(spec, "displayName", json_string(optarg));
      break;
    case OPT_STATE:
      json_object_set_new(spec, "state", json_string(optarg));
      break;
    case OPT_REASON:
      json_object_set_new(spec, "stateReason", json_string(optarg));
      break;
    case OPT_CONTACT: {
      json_t *c = json_object();
      char *copy = strdup(optarg), *save = NULL;
      for (char *kvp = strtok_r(copy, ",", &save); kvp && !rc; kvp = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kvp, '=');
        if (!eq || (strncmp(kvp, "role=", 5) && strncmp(kvp, "name=", 5) && strncmp(kvp, "email=", 6))) {
          rc = tctl_usage_error(argv[0], "--contact takes role=ROLE,name=NAME,email=EMAIL, not \"%s\"",
                                optarg);
          break;
        }
        *eq = '\0';
        json_object_set_new(c, kvp, json_string(eq + 1));
      }
      free(copy);
      json_array_append_new(contacts, c);
      break;
    }
    case OPT_EXTERNAL:
    case OPT_LABEL: {
      const char *eq = strchr(optarg, '=');
      if (!eq || eq == optarg) {
        rc = tctl_usage_error(argv[0], "--%s takes KEY=VALUE, not \"%s\"",
                              opt == OPT_LABEL ? "label" : "external-id", optarg);
        break;
      }
      char key[256];
      snprintf(key, sizeof key, "%.*s", (int)(eq - optarg), optarg);
      json_object_set_new(opt == OPT_LABEL ? labels : ext, key, json_string(eq + 1));
      break;
    }
    case OPT_DRY_RUN:
      dry = optarg;
      break;
    case 'o':
      output = optarg;
      break;
    default:
      rc = tctl_usage_error(argv[0], "unknown flag");
    }
  }
  if (rc)
    goto out;
  if (optind + 1 != argc) {
    rc = tctl_usage_error(argv[0], "create takes one tenant id");
    goto out;
  }
  const char *id = argv[optind];
  if ((rc = check_id(argv[0], id)))
    goto out;
  if (strcmp(dry, "none") && strcmp(dry, "server") && strcmp(dry, "client")) {
    rc = tctl_usage_error(argv[0], "--dry-run must be none, server or client, not \"%s\"", dry);
    goto out;
  }
  if (output && !output_ok(output, false)) {
    rc = tctl_usage_error(argv[0], "--output must be json, yaml or name, not \"%s\"", output);
    goto out;
  }
  if (json_array_size(allowed))
    json_object_set(residency, "allowedRegions", allowed);
  if (json_array_size(flags))
    json_object_set(residency, "flags", flags);
  if (json_object_size(residency))
    json_object_set(spec, "residency", residency);
  if (json_array_size(envs))
    json_object_set(spec, "environments", envs);
  if (json_array_size(contacts))
    json_object_set(spec, "contacts", contacts);
  if (json_object_size(ext))
    json_object_set(spec, "externalIds", ext);
  obj = json_pack("{s:s,s:s,s:{s:s},s:O}", "apiVersion", "tenancy.dev/v1alpha1", "kind", "Tenant", "metadata",
                  "name", id, "spec", spec);
  if (json_object_size(labels))
    json_object_set(json_object_get(obj, "metadata"), "labels", labels);
  if (!strcmp(dry, "client")) {
    if (output && !strcmp(output, "json"))
      tctl_print_json(stdout, obj);
    else if (output && !strcmp(output, "name"))
      printf(TENANT_RESOURCE "/%s\n", id);
    else
      tctl_print_yaml(stdout, obj);
    goto out;
  }
  struct tn_kube *k = NULL;
  if ((rc = tctl_connect(&k)))
    goto out;
  struct tn_error err = {0};
  json_t *created = NULL;
  if (tctl_create(k, &tctl_tenants_gvr, obj, !strcmp(dry, "server"), &created, &err)) {
    rc = tctl_fail(&err, NULL);
  } else {
    json_object_del(json_object_get(created, "metadata"), "managedFields"); /* as get does */
    if (output && !strcmp(output, "json"))
      tctl_print_json(stdout, created);
    else if (output && !strcmp(output, "yaml"))
      tctl_print_yaml(stdout, created);
    else if (output)
      printf(TENANT_RESOURCE "/%s\n", id);
    else
      printf(TENANT_RESOURCE "/%s created%s\n", id, !strcmp(dry, "server") ? " (server dry run)" : "");
  }
  json_decref(created);
  tn_kube_free(k);
out:
  json_decref(obj);
  json_decref(spec);
  json_decref(residency);
  json_decref(allowed);
  json_decref(flags);
  json_decref(envs);
  json_decref(contacts);
  json_decref(ext);
  json_decref(labels);
  return rc;
}

/* ---- lifecycle, delete ------------------------------------------------------------------------- */

/* Sets spec.state (and stateReason, deletionConfirmation) with a merge patch that carries the
 * resourceVersion read, so a concurrent change makes it fail (409) instead of being overwritten. */
static int patch_state(struct tn_kube *k, json_t *t, const char *state, const char *reason,
                       const char *confirm) {
  json_t *spec =
      json_pack("{s:s,s:o}", "state", state, "stateReason", reason ? json_string(reason) : json_null());
  if (confirm)
    json_object_set_new(spec, "deletionConfirmation", json_string(confirm));
  json_t *patch = json_pack("{s:{s:s},s:o}", "metadata", "resourceVersion",
                            or_empty(tctl_str(t, "metadata.resourceVersion")), "spec", spec);
  struct tn_error err = {0};
  int rc = 0;
  if (tctl_merge_patch(k, &tctl_tenants_gvr, NULL, tctl_str(t, "metadata.name"), patch, &err))
    rc = tctl_fail(&err, NULL);
  json_decref(patch);
  return rc;
}

static void usage_lifecycle(FILE *f, const char *verb) {
  fprintf(f,
          "Usage: %s %s TENANT [--reason TEXT]\n"
          "\n"
          "activate  Draft -> Active\n"
          "suspend   Active -> Suspended\n"
          "resume    Suspended -> Active (refused unless the tenant is Suspended)\n"
          "archive   Active or Suspended -> Archived\n"
          "\n"
          "Sets spec.state (and spec.stateReason); the API server refuses a transition the lifecycle\n"
          "does not allow, with its message. The operator then converges the tenant.\n"
          "\n"
          "Flags:\n"
          "  --reason TEXT   recorded as spec.stateReason (and in the audit trail)\n",
          tctl_prog, verb);
}

int tctl_cmd_lifecycle(int argc, char **argv) {
  static const struct option opts[] = {
      {"reason", required_argument, NULL, OPT_REASON}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  const char *verb = argv[0], *reason = NULL;
  const char *target = !strcmp(verb, "suspend")   ? "Suspended"
                       : !strcmp(verb, "archive") ? "Archived"
                                                  : "Active";
  const char *done = !strcmp(verb, "activate")  ? "activated"
                     : !strcmp(verb, "suspend") ? "suspended"
                     : !strcmp(verb, "resume")  ? "resumed"
                                                : "archived";
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (opt == 'h') {
      usage_lifecycle(stdout, verb);
      return 0;
    }
    if (opt == OPT_REASON) {
      reason = optarg;
      continue;
    }
    return tctl_usage_error(verb, "unknown flag");
  }
  if (optind + 1 != argc)
    return tctl_usage_error(verb, "%s takes one tenant id", verb);
  const char *id = argv[optind];
  if (check_id(verb, id))
    return TCTL_EXIT_USAGE;
  struct tn_kube *k = NULL;
  int rc = tctl_connect(&k);
  if (rc)
    return rc;
  json_t *t = NULL;
  if ((rc = get_tenant(k, id, &t)))
    goto out;
  const char *cur = or_empty(tctl_str(t, "spec.state"));
  if (!strcmp(verb, "resume") && strcmp(cur, "Suspended") != 0) {
    fprintf(stderr, "%s: tenant %s is %s, not Suspended: only a suspended tenant can be resumed\n", tctl_prog,
            id, *cur ? cur : "Draft");
    rc = TCTL_EXIT_REFUSED;
    goto out;
  }
  if (!strcmp(cur, target)) {
    printf(TENANT_RESOURCE "/%s unchanged (already %s)\n", id, target);
    goto out;
  }
  if (!(rc = patch_state(k, t, target, reason, NULL)))
    printf(TENANT_RESOURCE "/%s %s\n", id, done);
out:
  json_decref(t);
  tn_kube_free(k);
  return rc;
}

static void usage_delete(FILE *f) {
  fprintf(f,
          "Usage: %s delete TENANT [--confirm=TENANT] [--reason TEXT]\n"
          "\n"
          "Moves a tenant to Deleted (allowed from Draft and Archived): the operator removes what the\n"
          "tenant owns; the Tenant stays as a tombstone so its id is never reused (`kubectl delete\n"
          "tenant TENANT` then removes the record). Sets spec.deletionConfirmation to the id, which\n"
          "you confirm by typing it at the prompt, or with --confirm. Without a terminal and without\n"
          "--confirm it refuses (exit 4).\n"
          "\n"
          "Flags:\n"
          "  --confirm ID    the tenant id again, instead of the prompt (scripts)\n"
          "  --reason TEXT   recorded as spec.stateReason\n",
          tctl_prog);
}

int tctl_cmd_delete(int argc, char **argv) {
  static const struct option opts[] = {{"confirm", required_argument, NULL, OPT_CONFIRM},
                                       {"reason", required_argument, NULL, OPT_REASON},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *confirm = NULL, *reason = NULL;
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (opt == 'h') {
      usage_delete(stdout);
      return 0;
    }
    if (opt == OPT_CONFIRM)
      confirm = optarg;
    else if (opt == OPT_REASON)
      reason = optarg;
    else
      return tctl_usage_error(argv[0], "unknown flag");
  }
  if (optind + 1 != argc)
    return tctl_usage_error(argv[0], "delete takes one tenant id");
  const char *id = argv[optind];
  if (check_id(argv[0], id))
    return TCTL_EXIT_USAGE;
  if (!confirm && !isatty(STDIN_FILENO)) {
    fprintf(
        stderr,
        "%s: refusing to delete tenant %s without confirmation: no terminal to ask on; pass --confirm=%s\n",
        tctl_prog, id, id);
    return TCTL_EXIT_REFUSED;
  }
  struct tn_kube *k = NULL;
  int rc = tctl_connect(&k);
  if (rc)
    return rc;
  json_t *t = NULL;
  char line[256] = "";
  if ((rc = get_tenant(k, id, &t)))
    goto out;
  const char *cur = or_empty(tctl_str(t, "spec.state"));
  if (!strcmp(cur, "Deleted")) {
    printf(TENANT_RESOURCE "/%s unchanged (already Deleted)\n", id);
    goto out;
  }
  if (!confirm) {
    fprintf(stderr,
            "Tenant %s (%s) will move to Deleted: the operator removes its namespaces, database and keys.\n"
            "Type the tenant id to confirm: ",
            id, *cur ? cur : "Draft");
    fflush(stderr);
    if (!fgets(line, sizeof line, stdin))
      line[0] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    confirm = line;
  }
  if (strcmp(confirm, id) != 0) {
    fprintf(stderr, "%s: the confirmation \"%s\" is not the tenant id %s: nothing was changed\n", tctl_prog,
            confirm, id);
    rc = TCTL_EXIT_REFUSED;
    goto out;
  }
  if (!(rc = patch_state(k, t, "Deleted", reason, id)))
    printf(TENANT_RESOURCE
           "/%s deleted (a tombstone remains; `kubectl delete tenant %s` removes the record)\n",
           id, id);
out:
  json_decref(t);
  tn_kube_free(k);
  return rc;
}

/* ---- rotate ------------------------------------------------------------------------------------- */

static void usage_rotate(FILE *f) {
  fprintf(f,
          "Usage: %s rotate credentials|keys TENANT [--value V]\n"
          "\n"
          "credentials  a new database password now: sets the annotation tenancy.dev/rotate-credentials\n"
          "             (the Secret tenant-database of each namespace is rewritten; docs/api.md)\n"
          "keys         a new tenant key version now: sets the annotation tenancy.dev/rotate-keys\n"
          "             (docs/keys.md)\n"
          "\n"
          "The operator acts when the value changes; by default it is the current time.\n"
          "\n"
          "Flags:\n"
          "  --value V   the annotation's value (default: the current UTC time, RFC 3339 with nanoseconds)\n",
          tctl_prog);
}

int tctl_cmd_rotate(int argc, char **argv) {
  static const struct option opts[] = {
      {"value", required_argument, NULL, OPT_VALUE}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  const char *value = NULL;
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (opt == 'h') {
      usage_rotate(stdout);
      return 0;
    }
    if (opt == OPT_VALUE) {
      value = optarg;
      continue;
    }
    return tctl_usage_error(argv[0], "unknown flag");
  }
  if (optind + 2 != argc)
    return tctl_usage_error(argv[0], "rotate takes what (credentials or keys) and one tenant id");
  const char *what = argv[optind], *id = argv[optind + 1];
  const char *annotation = !strcmp(what, "credentials") ? "tenancy.dev/rotate-credentials"
                           : !strcmp(what, "keys")      ? "tenancy.dev/rotate-keys"
                                                        : NULL;
  if (!annotation)
    return tctl_usage_error(argv[0], "rotate credentials or rotate keys, not \"%s\"", what);
  if (check_id(argv[0], id))
    return TCTL_EXIT_USAGE;
  if (value && (!*value || strlen(value) > 256))
    return tctl_usage_error(argv[0], "--value must be 1..256 characters");
  char now[64];
  if (!value) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(now, sizeof now, "%s.%09ldZ", base, ts.tv_nsec);
    value = now;
  }
  struct tn_kube *k = NULL;
  int rc = tctl_connect(&k);
  if (rc)
    return rc;
  json_t *t = NULL;
  if ((rc = get_tenant(k, id, &t)))
    goto out;
  json_t *patch = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", annotation, value);
  struct tn_error err = {0};
  if (tctl_merge_patch(k, &tctl_tenants_gvr, NULL, id, patch, &err))
    rc = tctl_fail(&err, NULL);
  else
    printf(TENANT_RESOURCE "/%s: %s rotation requested (%s=%s)\n", id,
           !strcmp(what, "keys") ? "key" : "database credentials", annotation, value);
  json_decref(patch);
out:
  json_decref(t);
  tn_kube_free(k);
  return rc;
}
