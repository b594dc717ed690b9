/* tenantctl.c - the tenancy-operator CLI (also installed as the kubectl plugin `kubectl-tenant`):
 * the command table and main, the global kubectl-style flags, and the audit commands
 * (`tenantctl audit verify|list|init|prune` on the audit trail in PostgreSQL, docs/audit.md).
 * The Kubernetes commands live in tenantctl_*.c; docs/cli.md documents all of them.
 *
 * Exit codes: TCTL_EXIT_* in tenantctl.h, the same for every command. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "runtime/options.h"
#include "tenantctl.h"
#include "util/error.h"
#include "util/wipe.h"

#include "tenantctl_history.h" /* history, diff, rollback */

#define EXIT_BROKEN TCTL_EXIT_ERROR /* audit verify: the chain is broken */
#define EXIT_USAGE TCTL_EXIT_USAGE

#define prog tctl_prog

static void usage_audit(FILE *f) {
  fprintf(f,
          "Usage: %s audit verify|list|init|prune [flags]\n"
          "\n"
          "The audit trail: an append-only, hash-chained table in the operator's PostgreSQL.\n"
          "\n"
          "Commands:\n"
          "  verify   check every row's hash and link; exit 1 naming the first bad row\n"
          "  list     show a tenant's audit rows, oldest first\n"
          "  init     create the table, triggers and functions (the operator also does this)\n"
          "  prune    remove rows older than a retention period, keeping the chain verifiable\n"
          "\n"
          "Run `%s audit COMMAND --help` for its flags.\n"
          "\n" TCTL_EXIT_CODES_HELP,
          prog, prog);
}

#define COMMON_FLAGS                                                                                         \
  "  --pg-dsn DSN        PostgreSQL connection string or URI (default $TENANCY_PG_DSN)\n"                    \
  "  --pg-ca-file FILE   the server's CA when the DSN names no sslrootcert (default $TENANCY_PG_CA_FILE);\n" \
  "                      TLS is sslmode=verify-full unless the DSN states a (weaker) sslmode itself\n"       \
  "  --pg-dsn-file PATH  read it from a file instead (no password in the command line)\n"                    \
  "  --schema NAME       schema of the audit table (default \"tenancy\")\n"                                  \
  "  -h, --help          show this help\n"

static void usage_verify(FILE *f) {
  fprintf(
      f,
      "Usage: %s audit verify [flags]\n"
      "\n"
      "Reads the whole audit table in one snapshot and checks that every row's hash matches its\n"
      "content and that every row names the previous row's hash (the first remaining row must follow\n"
      "the genesis value or the latest retention checkpoint). Prints \"N rows verified\" and exits 0,\n"
      "or names the first bad row and exits 1, e.g.\n"
      "  row 42: hash mismatch (stored ..., computed ...)\n"
      "  row 43: prev_hash does not match row 41 (...)\n"
      "\n"
      "Flags:\n" COMMON_FLAGS
      "  --expect ID:HASH    also require row ID to exist with this hash (an anchor recorded elsewhere,\n"
      "                      e.g. the head printed by an earlier verify: detects rows removed at the end)\n"
      "  -o, --output FORMAT text (default) or json\n",
      prog);
}

static void usage_list(FILE *f) {
  fprintf(f,
          "Usage: %s audit list --tenant ID [flags]\n"
          "\n"
          "Shows the newest audit rows of a tenant (target tenant/ID), oldest first.\n"
          "\n"
          "Flags:\n" COMMON_FLAGS
          "  --tenant ID         the tenant id (metadata.name); required unless --all\n"
          "  --all               every row, whatever its target\n"
          "  --limit N           at most the newest N rows (default 50; 0 for all)\n"
          "  -o, --output FORMAT table (default) or json\n",
          prog);
}

static void usage_init(FILE *f) {
  fprintf(f,
          "Usage: %s audit init [flags]\n"
          "\n"
          "Creates the schema, the table tenancy.audit_events, its indexes, the triggers that refuse\n"
          "UPDATE, DELETE and TRUNCATE, and the functions audit_append() and audit_prune(). Idempotent.\n"
          "Run it as the role that should own them.\n"
          "\n"
          "Flags:\n" COMMON_FLAGS
          "  --writer-role ROLE  grant ROLE what the operator needs and nothing more: USAGE on the schema,\n"
          "                      SELECT on the table, EXECUTE on audit_append() and audit_prune(); ROLE can\n"
          "                      never update, delete or truncate (connect the operator as ROLE)\n"
          "  --min-retention Nd  raise the minimum retention (default 90d): audit_prune() refuses to remove\n"
          "                      younger rows, whoever calls it; it can be raised, never lowered\n",
          prog);
}

static void usage_prune(FILE *f) {
  fprintf(
      f,
      "Usage: %s audit prune --older-than Nd [flags]\n"
      "\n"
      "Removes the oldest rows older than the retention (never the newest row) and appends a checkpoint\n"
      "row (action audit.prune) so the chain still verifies from the first remaining row.\n"
      "\n"
      "Flags:\n" COMMON_FLAGS
      "  --older-than Nd     retention in days, as TenancyPolicy spec.retention.auditRecords (\"2555d\")\n"
      "  --before TIME       an explicit cutoff instead (RFC 3339, e.g. 2025-01-02T00:00:00Z)\n"
      "  --actor NAME        actor of the checkpoint row (default \"tenantctl\")\n",
      prog);
}

/* ---- shared ------------------------------------------------------------------------------- */

struct common {
  const char *dsn;
  const char *ca_file;
  const char *dsn_file; /* --pg-dsn-file */
  const char *schema;
  const char *output;
};

static int usage_error(void (*usage)(FILE *), const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(void (*usage)(FILE *), const char *fmt, ...) {
  fprintf(stderr, "%s: ", prog);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n\n");
  usage(stderr);
  return EXIT_USAGE;
}

static int open_audit(const struct common *c, bool create, struct tn_audit **a) {
  struct tctl_db_flags d = {
      .dsn = c->dsn, .dsn_file = c->dsn_file, .ca_file = c->ca_file, .schema = c->schema};
  return tctl_open_db(&d, create, a);
}

enum {
  OPT_DSN = 256,
  OPT_CA,
  OPT_MIN_RETENTION,
  OPT_DSN_FILE,
  OPT_SCHEMA,
  OPT_EXPECT,
  OPT_TENANT,
  OPT_ALL,
  OPT_LIMIT,
  OPT_WRITER,
  OPT_OLDER,
  OPT_BEFORE,
  OPT_ACTOR
};

/* Handles a flag every audit command takes; returns 1 if it was one. */
static int common_flag(int opt, struct common *c) {
  switch (opt) {
  case OPT_DSN:
    c->dsn = optarg;
    return 1;
  case OPT_CA:
    c->ca_file = optarg;
    return 1;
  case OPT_DSN_FILE:
    c->dsn_file = optarg;
    return 1;
  case OPT_SCHEMA:
    c->schema = optarg;
    return 1;
  case 'o':
    c->output = optarg;
    return 1;
  default:
    return 0;
  }
}

#define COMMON_OPTS                                                                                          \
  {"pg-dsn", required_argument, NULL, OPT_DSN}, {"pg-ca-file", required_argument, NULL, OPT_CA},             \
      {"pg-dsn-file", required_argument, NULL, OPT_DSN_FILE},                                                \
      {"schema", required_argument, NULL, OPT_SCHEMA}, {                                                     \
    "help", no_argument, NULL, 'h'                                                                           \
  }

/* ---- verify ------------------------------------------------------------------------------- */

static int cmd_verify(int argc, char **argv) {
  static const struct option opts[] = {COMMON_OPTS,
                                       {"expect", required_argument, NULL, OPT_EXPECT},
                                       {"output", required_argument, NULL, 'o'},
                                       {NULL, 0, NULL, 0}};
  struct common c = {.output = "text"};
  const char *expect = NULL;
  int opt;
  while ((opt = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
    if (common_flag(opt, &c))
      continue;
    if (opt == 'h') {
      usage_verify(stdout);
      return 0;
    }
    if (opt == OPT_EXPECT) {
      expect = optarg;
      continue;
    }
    usage_verify(stderr);
    return EXIT_USAGE;
  }
  if (optind < argc)
    return usage_error(usage_verify, "unexpected argument \"%s\"", argv[optind]);
  if (strcmp(c.output, "text") && strcmp(c.output, "json"))
    return usage_error(usage_verify, "--output must be text or json, not \"%s\"", c.output);
  struct tn_audit_verify_opts vo = {0};
  char expect_hash[TN_AUDIT_HASH_LEN] = "";
  if (expect) {
    const char *colon = strchr(expect, ':');
    char *end = NULL;
    long long id = colon ? strtoll(expect, &end, 10) : 0;
    if (!colon || end != colon || id <= 0 || !tn_audit_hash_valid(colon + 1))
      return usage_error(usage_verify,
                         "--expect must be ID:HASH (a row id and 64 lowercase hex digits), not \"%s\"",
                         expect);
    snprintf(expect_hash, sizeof expect_hash, "%s", colon + 1);
    vo.expect_id = id;
    vo.expect_hash = expect_hash;
  }
  struct tn_audit *a = NULL;
  int rc = open_audit(&c, false, &a);
  if (rc)
    return rc;
  struct tn_error err = {0};
  struct tn_audit_verify_result r;
  if (tn_audit_verify(a, &vo, &r, &err)) {
    rc = tctl_db_error(&err);
    goto out;
  }
  if (!strcmp(c.output, "json")) {
    json_t *j =
        json_pack("{s:b,s:I,s:I,s:I,s:s,s:I,s:I,s:I,s:s}", "ok", r.ok, "rows", (json_int_t)r.rows, "firstId",
                  (json_int_t)r.first_id, "lastId", (json_int_t)r.last_id, "lastHash", r.last_hash,
                  "checkpointId", (json_int_t)r.checkpoint_id, "prunedThroughId",
                  (json_int_t)r.pruned_through_id, "badId", (json_int_t)r.bad_id, "problem", r.problem);
    if (j)
      json_dumpf(j, stdout, JSON_INDENT(2));
    printf("\n");
    json_decref(j);
  } else if (r.ok) {
    printf("%lld rows verified", r.rows);
    if (r.rows > 0)
      printf(" (ids %lld..%lld)", r.first_id, r.last_id);
    printf("\n");
    if (r.rows > 0)
      printf("head: row %lld hash %s (keep it to check later with --expect %lld:%s)\n", r.last_id,
             r.last_hash, r.last_id, r.last_hash);
    if (r.pruned_through_id > 0)
      printf("rows up to %lld were removed by retention (checkpoint in row %lld)\n", r.pruned_through_id,
             r.checkpoint_id);
  } else {
    printf("%s\n", r.problem);
    printf("audit chain BROKEN: %lld rows verified before row %lld\n", r.rows, r.bad_id);
  }
  rc = r.ok ? 0 : EXIT_BROKEN;
out:
  tn_audit_close(a);
  return rc;
}

/* ---- list --------------------------------------------------------------------------------- */

static const char *str_or_dash(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s && *s ? s : "-";
}

static void print_table(json_t *rows, bool with_target, const char *indent) {
  enum { C_ID, C_AT, C_ACTOR, C_ACTION, C_TARGET, C_OUTCOME, C_GEN, C_CORR, C_REQ, NC };
  static const char *const heads[NC] = {"ID",      "AT",         "ACTOR",       "ACTION", "TARGET",
                                        "OUTCOME", "GENERATION", "CORRELATION", "REQUEST"};
  size_t n = json_array_size(rows);
  char(*cells)[NC][128] = calloc(n ? n : 1, sizeof *cells);
  if (!cells)
    return;
  size_t w[NC];
  for (int c = 0; c < NC; c++)
    w[c] = strlen(heads[c]);
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_array_get(rows, i);
    snprintf(cells[i][C_ID], 128, "%lld", (long long)json_integer_value(json_object_get(o, "id")));
    /* "2025-01-02T03:04:05.123456Z" -> "2025-01-02 03:04:05" */
    snprintf(cells[i][C_AT], 128, "%.19s", str_or_dash(o, "at"));
    if (strlen(cells[i][C_AT]) > 10 && cells[i][C_AT][10] == 'T')
      cells[i][C_AT][10] = ' ';
    snprintf(cells[i][C_ACTOR], 128, "%s", str_or_dash(o, "actor"));
    snprintf(cells[i][C_ACTION], 128, "%s", str_or_dash(o, "action"));
    snprintf(cells[i][C_TARGET], 128, "%s", str_or_dash(o, "target"));
    snprintf(cells[i][C_OUTCOME], 128, "%s", str_or_dash(o, "outcome"));
    json_t *gb = json_object_get(o, "generation_before"), *ga = json_object_get(o, "generation_after");
    /* "3->4"; "?" for an unknown side; "-" when neither is known */
    char b[24] = "?", af[24] = "?";
    if (json_is_integer(gb))
      snprintf(b, sizeof b, "%lld", (long long)json_integer_value(gb));
    if (json_is_integer(ga))
      snprintf(af, sizeof af, "%lld", (long long)json_integer_value(ga));
    if (json_is_integer(gb) || json_is_integer(ga))
      snprintf(cells[i][C_GEN], 128, "%s->%s", b, af);
    else
      snprintf(cells[i][C_GEN], 128, "-");
    snprintf(cells[i][C_CORR], 128, "%s", str_or_dash(o, "correlation_id"));
    snprintf(cells[i][C_REQ], 128, "%s", str_or_dash(o, "request_id"));
    for (int c = 0; c < NC; c++)
      if (strlen(cells[i][c]) > w[c])
        w[c] = strlen(cells[i][c]);
  }
  for (size_t i = 0; i <= n; i++) {
    printf("%s", indent);
    for (int c = 0; c < NC; c++) {
      if (c == C_TARGET && !with_target)
        continue;
      const char *s = i == 0 ? heads[c] : cells[i - 1][c];
      if (c == NC - 1)
        printf("%s", s);
      else
        printf("%-*s  ", (int)w[c], s);
    }
    printf("\n");
  }
  free(cells);
}

static int cmd_list(int argc, char **argv) {
  static const struct option opts[] = {COMMON_OPTS,
                                       {"tenant", required_argument, NULL, OPT_TENANT},
                                       {"all", no_argument, NULL, OPT_ALL},
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"output", required_argument, NULL, 'o'},
                                       {NULL, 0, NULL, 0}};
  struct common c = {.output = "table"};
  const char *tenant = NULL;
  bool all = false;
  long long limit = 50;
  int opt;
  while ((opt = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
    if (common_flag(opt, &c))
      continue;
    switch (opt) {
    case 'h':
      usage_list(stdout);
      return 0;
    case OPT_TENANT:
      tenant = optarg;
      break;
    case OPT_ALL:
      all = true;
      break;
    case OPT_LIMIT: {
      char *end = NULL;
      errno = 0;
      limit = strtoll(optarg, &end, 10);
      if (errno || !*optarg || *end || limit < 0)
        return usage_error(usage_list, "--limit must be a whole number (0 for all), not \"%s\"", optarg);
      break;
    }
    default:
      usage_list(stderr);
      return EXIT_USAGE;
    }
  }
  if (optind < argc)
    return usage_error(usage_list, "unexpected argument \"%s\"", argv[optind]);
  if (!tenant && !all)
    return usage_error(usage_list, "which tenant? pass --tenant ID (or --all)");
  if (tenant && all)
    return usage_error(usage_list, "--tenant and --all exclude each other");
  if (tenant && !*tenant)
    return usage_error(usage_list, "--tenant needs a tenant id");
  if (strcmp(c.output, "table") && strcmp(c.output, "json"))
    return usage_error(usage_list, "--output must be table or json, not \"%s\"", c.output);
  struct tn_audit *a = NULL;
  int rc = open_audit(&c, false, &a);
  if (rc)
    return rc;
  struct tn_error err = {0};
  json_t *rows = NULL;
  if (tn_audit_list(a, tenant, limit, &rows, &err)) {
    rc = tctl_db_error(&err);
    goto out;
  }
  if (!strcmp(c.output, "json")) {
    json_dumpf(rows, stdout, JSON_INDENT(2));
    printf("\n");
  } else if (json_array_size(rows) == 0) {
    if (tenant)
      fprintf(stderr, "no audit rows for tenant %s\n", tenant);
    else
      fprintf(stderr, "no audit rows\n");
  } else {
    print_table(rows, all, "");
  }
  json_decref(rows);
out:
  tn_audit_close(a);
  return rc;
}

/* ---- init, prune -------------------------------------------------------------------------- */

static int cmd_init(int argc, char **argv) {
  static const struct option opts[] = {COMMON_OPTS,
                                       {"writer-role", required_argument, NULL, OPT_WRITER},
                                       {"min-retention", required_argument, NULL, OPT_MIN_RETENTION},
                                       {NULL, 0, NULL, 0}};
  struct common c = {0};
  const char *writer = NULL, *min_retention = NULL;
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (common_flag(opt, &c))
      continue;
    if (opt == 'h') {
      usage_init(stdout);
      return 0;
    }
    if (opt == OPT_WRITER) {
      writer = optarg;
      continue;
    }
    if (opt == OPT_MIN_RETENTION) {
      min_retention = optarg;
      continue;
    }
    usage_init(stderr);
    return EXIT_USAGE;
  }
  if (optind < argc)
    return usage_error(usage_init, "unexpected argument \"%s\"", argv[optind]);
  int min_days = 0;
  if (min_retention && tn_audit_parse_retention(min_retention, &min_days))
    return usage_error(usage_init, "--min-retention must be a number of days like \"365d\", not \"%s\"",
                       min_retention);
  struct tn_audit *a = NULL;
  int rc = open_audit(&c, false, &a);
  if (rc)
    return rc;
  struct tn_error err = {0};
  int now_days = 0;
  if (tn_audit_init(a, writer, &err) || tn_audit_raise_min_retention(a, min_days, &now_days, &err)) {
    rc = tctl_db_error(&err);
  } else {
    printf("audit table %s.audit_events is ready", c.schema ? c.schema : TN_AUDIT_SCHEMA);
    if (writer)
      printf("; role %s may append, read and prune rows older than the minimum retention", writer);
    printf("\nminimum retention: %d days", now_days);
    if (min_days && now_days > min_days)
      printf(" (it can only be raised: %d days was not applied)", min_days);
    printf("\n");
  }
  tn_audit_close(a);
  return rc;
}

static int cmd_prune(int argc, char **argv) {
  static const struct option opts[] = {COMMON_OPTS,
                                       {"older-than", required_argument, NULL, OPT_OLDER},
                                       {"before", required_argument, NULL, OPT_BEFORE},
                                       {"actor", required_argument, NULL, OPT_ACTOR},
                                       {NULL, 0, NULL, 0}};
  struct common c = {0};
  const char *older = NULL, *before = NULL, *actor = "tenantctl";
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (common_flag(opt, &c))
      continue;
    switch (opt) {
    case 'h':
      usage_prune(stdout);
      return 0;
    case OPT_OLDER:
      older = optarg;
      break;
    case OPT_BEFORE:
      before = optarg;
      break;
    case OPT_ACTOR:
      actor = optarg;
      break;
    default:
      usage_prune(stderr);
      return EXIT_USAGE;
    }
  }
  if (optind < argc)
    return usage_error(usage_prune, "unexpected argument \"%s\"", argv[optind]);
  if (!older == !before)
    return usage_error(usage_prune, "pass exactly one of --older-than Nd and --before TIME");
  int days = 0;
  if (older && tn_audit_parse_retention(older, &days))
    return usage_error(usage_prune, "--older-than must be a number of days like \"2555d\", not \"%s\"",
                       older);
  struct tn_audit *a = NULL;
  int rc = open_audit(&c, false, &a);
  if (rc)
    return rc;
  struct tn_error err = {0};
  long long pruned = 0;
  int prc = older ? tn_audit_prune(a, days, actor, &pruned, &err)
                  : tn_audit_prune_before(a, before, actor, &pruned, &err);
  if (prc)
    rc = tctl_db_error(&err);
  else if (pruned)
    printf("pruned %lld rows; a checkpoint row records where the chain now starts\n", pruned);
  else
    printf("nothing to prune\n");
  tn_audit_close(a);
  return rc;
}

/* ---- audit dispatch ------------------------------------------------------------------------ */

int tctl_cmd_audit(int argc, char **argv) {
  if (argc < 2) {
    usage_audit(stderr);
    return EXIT_USAGE;
  }
  const char *sub = argv[1];
  if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
    usage_audit(stdout);
    return 0;
  }
  /* getopt sees "SUB flags...": argv[0] of the slice is the subcommand. */
  int sargc = argc - 1;
  char **sargv = argv + 1;
  optind = 0;
  opterr = 1;
  if (!strcmp(sub, "verify"))
    return cmd_verify(sargc, sargv);
  if (!strcmp(sub, "list"))
    return cmd_list(sargc, sargv);
  if (!strcmp(sub, "init"))
    return cmd_init(sargc, sargv);
  if (!strcmp(sub, "prune"))
    return cmd_prune(sargc, sargv);
  fprintf(stderr, "%s: unknown audit command \"%s\"\n\n", prog, sub);
  usage_audit(stderr);
  return EXIT_USAGE;
}

/* The audit tail of `describe`: quiet unless a DSN is configured. */
void tctl_audit_tail(FILE *f, const char *tenant, int rows) {
  const char *dsn = getenv("TENANCY_PG_DSN");
  const char *dsn_file = getenv("TENANCY_PG_DSN_FILE");
  if ((!dsn || !*dsn) && (!dsn_file || !*dsn_file)) {
    fprintf(f, "  (no audit trail: set TENANCY_PG_DSN to show it)\n");
    return;
  }
  struct common c = {.dsn_file = dsn && *dsn ? NULL : dsn_file};
  struct tn_audit *a = NULL;
  struct tn_error err = {0};
  char *from_file = NULL;
  if (c.dsn_file &&
      tn_read_secret_file("TENANCY_PG_DSN_FILE", c.dsn_file, TN_PG_DSN_FILE_MAX, &from_file, &err)) {
    fprintf(f, "  (audit trail unavailable: %s)\n", err.message);
    return;
  }
  struct tn_audit_options o = {
      .no_create = true, .application_name = "tenantctl", .ca_file = getenv("TENANCY_PG_CA_FILE")};
  if (tn_audit_open(from_file ? from_file : dsn, &o, &a, &err)) {
    fprintf(f, "  (audit trail unavailable: %s)\n", err.message);
    tn_wipe_free_str(from_file);
    return;
  }
  tn_wipe_free_str(from_file);
  json_t *list = NULL;
  if (tn_audit_list(a, tenant, rows, &list, &err)) {
    fprintf(f, "  (audit trail unavailable: %s)\n", err.message);
  } else if (json_array_size(list) == 0) {
    fprintf(f, "  <none>\n");
  } else {
    fflush(f);
    print_table(list, false, "  ");
    fflush(stdout);
  }
  json_decref(list);
  tn_audit_close(a);
}

/* ---- the command table and main ------------------------------------------------------------- */

const char *tctl_prog = "tenantctl";
struct tctl_globals tctl_g;

/* history, diff and rollback (tenantctl_history.c) read argv[1] as the command. The global
 * --kubeconfig and --context were taken out of argv by take_globals: rollback gets them back. */
static int tctl_cmd_history(int argc, char **argv) {
  char **v = calloc((size_t)argc + 6, sizeof *v);
  if (!v) {
    fprintf(stderr, "%s: out of memory\n", prog);
    return 1;
  }
  int n = 0;
  v[n++] = (char *)prog;
  for (int i = 0; i < argc; i++)
    v[n++] = argv[i];
  if (!strcmp(argv[0], "rollback")) {
    if (tctl_g.kubeconfig)
      v[n++] = "--kubeconfig", v[n++] = (char *)tctl_g.kubeconfig;
    if (tctl_g.context)
      v[n++] = "--context", v[n++] = (char *)tctl_g.context;
  }
  v[n] = NULL;
  int rc = tenantctl_history_dispatch(n, v);
  free(v);
  return rc < 0 ? 2 : rc;
}

/* Every command, one row each. */
const struct tctl_command tctl_commands[] = {
    {"get", tctl_cmd_get,
     "list tenants or show some (-o table|wide|json|yaml|name, -l, --state/--plan/--region)"},
    {"list", tctl_cmd_get, "the same as get"},
    {"describe", tctl_cmd_describe,
     "a tenant in detail: conditions, placement, database, events, audit tail"},
    {"create", tctl_cmd_create, "create a tenant from flags (--plan, --isolation, --region, --env, ...)"},
    {"activate", tctl_cmd_lifecycle, "move a tenant to Active (from Draft)"},
    {"suspend", tctl_cmd_lifecycle, "move a tenant to Suspended (from Active)"},
    {"resume", tctl_cmd_lifecycle, "move a suspended tenant back to Active"},
    {"archive", tctl_cmd_lifecycle, "move a tenant to Archived (from Active or Suspended)"},
    {"delete", tctl_cmd_delete, "move a tenant to Deleted, after confirming its id"},
    {"rotate", tctl_cmd_rotate, "rotate a tenant's database credentials or encryption keys now"},
    {"events", tctl_cmd_events_dispatch,
     "a tenant's Kubernetes events; `events list|show`: the lifecycle events of the outbox"},
    {"audit", tctl_cmd_audit, "the audit trail in PostgreSQL: verify, list, init, prune"},
    {"events dlq", tctl_cmd_events_dlq, "webhook dead letters: list, requeue, purge"},
    {"events replay", tctl_cmd_events_replay, "send a subscription's events again from an outbox sequence"},
    {"history", tctl_cmd_history,
     "the recorded versions of a tenant's spec (generation, time, actor, changes)"},
    {"diff", tctl_cmd_history, "field-level diff of two versions of a tenant's spec (--from N --to M)"},
    {"rollback", tctl_cmd_history, "write version N's spec back through the API server (--to N)"},
    {"failover", tctl_cmd_failover,
     "fail a region over to its standby (spec.failover); --wait for the result"},
    {"failover-drill", tctl_cmd_failover_drill,
     "exercise a failover with N synthetic tenants (--synthetic N): measures RTO and RPO, cleans up"},
    {"completion", tctl_cmd_completion, "a shell completion script: bash, zsh or fish"},
    {NULL, NULL, NULL},
};

static void usage_main(FILE *f) {
  fprintf(f,
          "Usage: %s COMMAND [flags]\n"
          "\n"
          "The tenancy-operator command line (also `kubectl tenant` as a kubectl plugin).\n"
          "\n"
          "Commands:\n",
          prog);
  for (const struct tctl_command *c = tctl_commands; c->name; c++)
    fprintf(f, "  %-11s %s\n", c->name, c->summary);
  fprintf(f,
          "\n"
          "Global flags (anywhere on the line, as with kubectl):\n"
          "  --kubeconfig FILE   the kubeconfig (default $KUBECONFIG, several files merged, else "
          "~/.kube/config)\n"
          "  --context NAME      a context of the kubeconfig instead of current-context\n"
          "  -n, --namespace NS  the namespace of the events of tenants (default \"default\")\n"
          "  --as USER           impersonate USER (the API server checks you may)\n"
          "  --as-group GROUP    impersonate GROUP too (repeatable; needs --as)\n"
          "  --request-timeout S give up on one request after S seconds (default 60)\n"
          "  -h, --help          show help (also after any command)\n"
          "  --version           print the version\n"
          "\n"
          "\n" TCTL_EXIT_CODES_HELP "Run `%s COMMAND --help` for a command's flags.\n",
          prog);
}

/* Whether arg is the global flag name (--name or --name=value); *value gets the value or NULL. */
static bool flag_is(const char *arg, const char *name, const char **value) {
  size_t n = strlen(name);
  if (strncmp(arg, name, n) != 0)
    return false;
  if (arg[n] == '\0') {
    *value = NULL;
    return true;
  }
  if (arg[n] == '=') {
    *value = arg + n + 1;
    return true;
  }
  return false;
}

static bool clean_value(const char *v) {
  for (; *v; v++)
    if ((unsigned char)*v < 0x20 || *v == 0x7f)
      return false;
  return true;
}

/* Takes the global flags out of argv (wherever they are, up to "--"); returns argc, or -1 after
 * printing a usage error. */
static int take_globals(int argc, char **argv) {
  int out = 1;
  bool done = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    if (done || strcmp(a, "--") == 0) {
      done = true;
      argv[out++] = argv[i];
      continue;
    }
    const char **dst = NULL;
    const char *name = NULL;
    static const char *const names[] = {"--kubeconfig", "--context",  "--namespace",
                                        "--as",         "--as-group", "--request-timeout"};
    int which = -1;
    for (int j = 0; j < 6 && which < 0; j++)
      if (flag_is(a, names[j], &v))
        which = j;
    if (which < 0 && strcmp(a, "-n") == 0) {
      which = 2;
      v = NULL;
    } else if (which < 0 && strncmp(a, "-n", 2) == 0 && a[2] && a[1] != '-') {
      which = 2;
      v = a + 2 + (a[2] == '=');
    }
    if (which < 0) {
      argv[out++] = argv[i];
      continue;
    }
    name = which == 2 && a[1] != '-' ? "-n" : names[which];
    if (!v) {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s: flag %s needs a value\n", prog, name);
        return -1;
      }
      v = argv[++i];
    }
    if (!clean_value(v)) {
      fprintf(stderr, "%s: flag %s: control characters are not allowed\n", prog, name);
      return -1;
    }
    switch (which) {
    case 0:
      dst = &tctl_g.kubeconfig;
      break;
    case 1:
      dst = &tctl_g.context;
      break;
    case 2:
      dst = &tctl_g.namespace;
      break;
    case 3:
      dst = &tctl_g.as;
      break;
    case 4:
      if (tctl_g.n_as_groups == (int)(sizeof tctl_g.as_groups / sizeof tctl_g.as_groups[0])) {
        fprintf(stderr, "%s: too many --as-group flags\n", prog);
        return -1;
      }
      tctl_g.as_groups[tctl_g.n_as_groups++] = v;
      continue;
    default: {
      char *end = NULL;
      double s = strtod(v, &end);
      if (end && *end == 's')
        end++;
      if (!*v || !end || *end || s < 0 || s > 86400) {
        fprintf(stderr, "%s: --request-timeout must be a number of seconds (e.g. 30 or 30s), not \"%s\"\n",
                prog, v);
        return -1;
      }
      tctl_g.request_timeout_ms = (long)(s * 1000);
      continue;
    }
    }
    *dst = v;
  }
  argv[out] = NULL;
  if (tctl_g.n_as_groups > 0 && !tctl_g.as) {
    fprintf(stderr, "%s: --as-group needs --as (the user to impersonate)\n", prog);
    return -1;
  }
  return out;
}

int main(int argc, char **argv) {
  /* It handles the audit database's DSN and credentials: no core dump, no same-user ptrace. */
  struct tn_error herr = {0};
  if (tn_harden_process(&herr)) {
    fprintf(stderr, "%s: %s\n", prog, herr.message);
    return EXIT_USAGE;
  }
  tn_wipe_json_install();
  const char *base = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
  base = base ? base + 1 : argc > 0 && argv[0] ? argv[0] : "tenantctl";
  if (strcmp(base, "kubectl-tenant") == 0)
    tctl_prog = "kubectl tenant";
  if (strcmp(base, "kubectl_complete-tenant") == 0)
    return tctl_plugin_complete(argc, argv);
  argc = take_globals(argc, argv);
  if (argc < 0)
    return EXIT_USAGE;
  if (argc < 2) {
    usage_main(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage_main(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("tenantctl %s\n", TN_VERSION);
    return 0;
  }
  /* Two-word commands ("events dlq") have table entries of their own; they win over the first word. */
  if (argc >= 3) {
    char two[96];
    snprintf(two, sizeof two, "%s %s", cmd, argv[2]);
    for (const struct tctl_command *c = tctl_commands; c->name; c++)
      if (!strcmp(two, c->name)) {
        optind = 0;
        opterr = 1;
        return c->fn(argc - 2, argv + 2);
      }
  }
  for (const struct tctl_command *c = tctl_commands; c->name; c++)
    if (!strcmp(cmd, c->name)) {
      optind = 0;
      opterr = 1;
      return c->fn(argc - 1, argv + 1);
    }
  fprintf(stderr, "%s: unknown command \"%s\"\n\n", prog, cmd);
  usage_main(stderr);
  return EXIT_USAGE;
}
