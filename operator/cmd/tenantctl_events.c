/* tenantctl_events.c - `tenantctl events list|show`: the lifecycle events of the outbox in
 * PostgreSQL (issue 14, docs/events/README.md). `tenantctl events TENANT` stays the tenant's
 * Kubernetes Events (tenantctl_tenant.c). */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/outbox.h"
#include "tenantctl.h"

static void usage_events_outbox(FILE *f) {
  fprintf(
      f,
      "Usage: %s events list [--tenant ID] [--type TYPE] [--after-sequence N] [--limit N] [-o table|json]\n"
      "       %s events show EVENT-ID [-o json|table]\n"
      "       %s events TENANT [-o table|json|yaml]   (the tenant's Kubernetes Events)\n"
      "\n"
      "The lifecycle events the operator wrote to the outbox (CloudEvents, docs/events/README.md), by\n"
      "global sequence. --type takes a full type (dev.tenancy.tenant.activated.v1) or its event name\n"
      "(activated); --after-sequence N shows the events after global sequence N (paging: pass the\n"
      "last SEQ shown); --limit (default 100) caps the rows.\n"
      "\n"
      "Flags:\n"
      "  --pg-dsn DSN        PostgreSQL connection string or URI (default $TENANCY_PG_DSN)\n"
      "  --pg-dsn-file PATH  read it from a file instead (no password in the command line)\n"
      "  --pg-ca-file FILE   the server's CA when the DSN names no sslrootcert (default "
      "$TENANCY_PG_CA_FILE)\n"
      "  --schema NAME       schema of the audit table and outbox (default \"tenancy\")\n"
      "  -h, --help          show this help\n"
      "\n" TCTL_EXIT_CODES_HELP,
      tctl_prog, tctl_prog, tctl_prog);
}

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...) {
  fprintf(stderr, "%s: ", tctl_prog);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n\n");
  usage_events_outbox(stderr);
  return TCTL_EXIT_USAGE;
}

static bool parse_count(const char *s, long long *out) {
  char *end = NULL;
  long long v = s && *s ? strtoll(s, &end, 10) : -1;
  if (!end || *end || v < 0)
    return false;
  *out = v;
  return true;
}

enum { OPT_DSN = 256, OPT_DSN_FILE, OPT_CA, OPT_SCHEMA, OPT_TENANT, OPT_TYPE, OPT_AFTER, OPT_LIMIT };

static const char *str(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* SEQ TENANT TSEQ TYPE TIME ACTOR ID */
static void print_rows(json_t *rows) {
  size_t n = json_array_size(rows);
  const size_t ncols = 7;
  const char **cells = calloc((n + 1) * ncols, sizeof *cells);
  char(*nums)[2][24] = calloc(n ? n : 1, sizeof *nums);
  if (!cells || !nums) {
    free(cells);
    free(nums);
    fprintf(stderr, "%s: out of memory\n", tctl_prog);
    return;
  }
  static const char *const head[] = {"SEQ", "TENANT", "TENANT-SEQ", "TYPE", "TIME", "ACTOR", "ID"};
  memcpy(cells, head, sizeof head);
  for (size_t i = 0; i < n; i++) {
    json_t *r = json_array_get(rows, i), *ev = json_object_get(r, "event");
    snprintf(nums[i][0], sizeof nums[i][0], "%lld", (long long)json_integer_value(json_object_get(r, "seq")));
    snprintf(nums[i][1], sizeof nums[i][1], "%lld",
             (long long)json_integer_value(json_object_get(r, "tenantSeq")));
    const char **row = cells + (i + 1) * ncols;
    row[0] = nums[i][0];
    row[1] = str(r, "tenant");
    row[2] = nums[i][1];
    row[3] = str(r, "type");
    row[4] = str(ev, "time");
    row[5] = str(ev, "actor");
    row[6] = str(r, "id");
  }
  tctl_print_table(stdout, "", cells, n + 1, ncols);
  free(cells);
  free(nums);
}

static int run(int argc, char **argv, bool show) {
  static const struct option opts[] = {{"pg-dsn", required_argument, NULL, OPT_DSN},
                                       {"pg-dsn-file", required_argument, NULL, OPT_DSN_FILE},
                                       {"pg-ca-file", required_argument, NULL, OPT_CA},
                                       {"schema", required_argument, NULL, OPT_SCHEMA},
                                       {"tenant", required_argument, NULL, OPT_TENANT},
                                       {"type", required_argument, NULL, OPT_TYPE},
                                       {"after-sequence", required_argument, NULL, OPT_AFTER},
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"output", required_argument, NULL, 'o'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  struct tctl_db_flags d = {0};
  const char *output = show ? "json" : "table";
  struct tn_outbox_filter f = {0};
  int opt;
  optind = 0;
  opterr = 0;
  while ((opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
    switch (opt) {
    case OPT_DSN:
      d.dsn = optarg;
      break;
    case OPT_DSN_FILE:
      d.dsn_file = optarg;
      break;
    case OPT_CA:
      d.ca_file = optarg;
      break;
    case OPT_SCHEMA:
      d.schema = optarg;
      break;
    case OPT_TENANT:
    case OPT_TYPE:
      if (show)
        return usage("events show takes an event id and no --tenant or --type");
      *(opt == OPT_TENANT ? &f.tenant : &f.type) = optarg;
      break;
    case OPT_AFTER:
    case OPT_LIMIT:
      if (show || !parse_count(optarg, opt == OPT_AFTER ? &f.after_seq : &f.limit))
        return usage("--after-sequence and --limit take a whole number >= 0 (got \"%s\")", optarg);
      break;
    case 'o':
      output = optarg;
      break;
    case 'h':
      usage_events_outbox(stdout);
      return TCTL_EXIT_OK;
    case ':':
      return usage("%s needs a value", argv[optind - 1]);
    default:
      return usage("unknown flag %s", argv[optind - 1]);
    }
  }
  if (strcmp(output, "table") && strcmp(output, "json"))
    return usage("-o must be table or json, not \"%s\"", output);
  if (show ? optind + 1 != argc : optind != argc)
    return usage("%s", show ? "events show takes one event id" : "events list takes no arguments");
  struct tn_audit *a = NULL;
  int rc = tctl_open_db(&d, false, &a);
  if (rc)
    return rc;
  struct tn_error err = {0};
  json_t *rows = NULL, *one = NULL;
  if (show ? tn_outbox_show(a, argv[optind], &one, &err) : tn_outbox_list(a, &f, &rows, &err)) {
    if (err.code == TN_ENOTFOUND) { /* events show: no event with that id */
      fprintf(stderr, "%s: %s\n", tctl_prog, err.message);
      rc = TCTL_EXIT_NOTFOUND;
    } else {
      rc = tctl_db_error(&err);
    }
    goto out;
  }
  if (show && !strcmp(output, "table")) {
    json_t *arr = json_pack("[O]", one);
    print_rows(arr);
    json_decref(arr);
  } else if (!strcmp(output, "table")) {
    print_rows(rows);
  } else {
    tctl_print_json(stdout, show ? one : rows);
  }
out:
  json_decref(rows);
  json_decref(one);
  tn_audit_close(a);
  return rc;
}

int tctl_cmd_events_dispatch(int argc, char **argv) {
  if (argc >= 2 && (!strcmp(argv[1], "list") || !strcmp(argv[1], "show")))
    return run(argc - 1, argv + 1, !strcmp(argv[1], "show"));
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage_events_outbox(stdout);
    return TCTL_EXIT_OK;
  }
  return tctl_cmd_events(argc, argv);
}
