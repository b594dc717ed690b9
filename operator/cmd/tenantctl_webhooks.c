/* tenantctl_webhooks.c - `tenantctl events dlq list|requeue|purge` and `tenantctl events replay`:
 * the webhook delivery's dead letters and replay (operator/webhooks/admin.h), straight in the
 * operator's PostgreSQL. Every change is recorded in the audit trail (tn_audit_append: started,
 * then succeeded or failed, one correlation id) before and after it is made. */
#include <getopt.h>
#include <libpq-fe.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "cmd/tenantctl.h"
#include "runtime/options.h"
#include "util/wipe.h"
#include "webhooks/admin.h"

enum { W_DSN = 300, W_DSN_FILE, W_CA, W_SCHEMA, W_SUB, W_SEQ, W_ALL, W_FROM, W_ACTOR };

struct wopts {
  const char *dsn, *dsn_file, *ca, *schema, *sub, *actor, *output;
  long long seq, from;
  bool all;
};

static const struct option wflags[] = {{"pg-dsn", required_argument, NULL, W_DSN},
                                       {"pg-dsn-file", required_argument, NULL, W_DSN_FILE},
                                       {"pg-ca-file", required_argument, NULL, W_CA},
                                       {"schema", required_argument, NULL, W_SCHEMA},
                                       {"subscription", required_argument, NULL, W_SUB},
                                       {"seq", required_argument, NULL, W_SEQ},
                                       {"all", no_argument, NULL, W_ALL},
                                       {"from-sequence", required_argument, NULL, W_FROM},
                                       {"actor", required_argument, NULL, W_ACTOR},
                                       {"output", required_argument, NULL, 'o'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};

static void usage(FILE *f) {
  fprintf(
      f,
      "Usage:\n"
      "  %s events dlq list [--subscription S] [-o table|json]\n"
      "  %s events dlq requeue --subscription S (--seq N | --all)\n"
      "  %s events dlq purge --subscription S (--seq N | --all)\n"
      "  %s events replay --subscription S --from-sequence N\n"
      "\n"
      "Dead letters are events a WebhookSubscription gave up on (maxAttempts, or a 4xx answer). requeue\n"
      "delivers them again (and, with ordering BestEffort, the tenant's later events too: consumers dedupe\n"
      "by webhook-id); purge drops them for good so the tenant's later events flow; replay sends every\n"
      "event with outbox sequence >= N again. requeue, purge and replay are recorded in the audit trail.\n"
      "\n"
      "Flags:\n"
      "  --pg-dsn DSN / --pg-dsn-file FILE  the operator's PostgreSQL (default $TENANCY_PG_DSN)\n"
      "  --pg-ca-file FILE   its CA (default $TENANCY_PG_CA_FILE; TLS verify-full unless the DSN says)\n"
      "  --schema NAME       the audit schema (default tenancy)\n"
      "  --actor NAME        who to record in the audit trail (default tenantctl:$USER)\n",
      tctl_prog, tctl_prog, tctl_prog, tctl_prog);
}

static int parse(int argc, char **argv, struct wopts *o) {
  int opt;
  while ((opt = getopt_long(argc, argv, "ho:", wflags, NULL)) != -1) {
    char *end = NULL;
    switch (opt) {
    case W_DSN:
      o->dsn = optarg;
      break;
    case W_DSN_FILE:
      o->dsn_file = optarg;
      break;
    case W_CA:
      o->ca = optarg;
      break;
    case W_SCHEMA:
      o->schema = optarg;
      break;
    case W_SUB:
      o->sub = optarg;
      break;
    case W_ACTOR:
      o->actor = optarg;
      break;
    case W_ALL:
      o->all = true;
      break;
    case 'o':
      o->output = optarg;
      break;
    case W_SEQ:
    case W_FROM: {
      long long v = strtoll(optarg, &end, 10);
      if (!*optarg || *end || v < 1)
        return tctl_usage_error("events", "--%s must be a positive outbox sequence, not \"%s\"",
                                opt == W_SEQ ? "seq" : "from-sequence", optarg);
      *(opt == W_SEQ ? &o->seq : &o->from) = v;
      break;
    }
    case 'h':
      usage(stdout);
      return -1;
    default:
      usage(stderr);
      return TCTL_EXIT_USAGE;
    }
  }
  if (optind < argc)
    return tctl_usage_error("events", "unexpected argument \"%s\"", argv[optind]);
  return 0;
}

static int dsn_of(const struct wopts *o, char **dsn) {
  struct tn_error err = {0};
  if (o->dsn && o->dsn_file)
    return tctl_usage_error("events", "--pg-dsn and --pg-dsn-file are both set; keep one");
  if (o->dsn_file) {
    if (tn_read_secret_file("pg-dsn-file", o->dsn_file, TN_PG_DSN_FILE_MAX, dsn, &err)) {
      fprintf(stderr, "%s: %s\n", tctl_prog, err.message);
      return TCTL_EXIT_USAGE;
    }
    return 0;
  }
  const char *d = o->dsn ? o->dsn : getenv("TENANCY_PG_DSN");
  if (!d || !*d)
    return tctl_usage_error("events",
                            "no PostgreSQL DSN: pass --pg-dsn-file, --pg-dsn or set TENANCY_PG_DSN");
  *dsn = strdup(d);
  return *dsn ? 0 : TCTL_EXIT_ERROR;
}

static PGconn *connect_db(const char *dsn, const struct wopts *o) {
  const char *ca = o->ca ? o->ca : getenv("TENANCY_PG_CA_FILE");
  const char *keys[6] = {"connect_timeout", "application_name", "sslmode"};
  const char *vals[6] = {"10", "tenantctl", "verify-full"};
  int n = 3;
  if (ca) {
    keys[n] = "sslrootcert";
    vals[n++] = ca;
  }
  keys[n] = "dbname";
  vals[n++] = dsn;
  keys[n] = vals[n] = NULL;
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "%s: cannot connect to PostgreSQL: %s", tctl_prog, PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  PQclear(PQexec(c, "SET client_min_messages = warning"));
  return c;
}

static void new_uuid(char out[37]) {
  unsigned char b[16];
  RAND_bytes(b, sizeof b);
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
           b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* One audited change: the started row first; fn's database function appends the succeeded row in
 * the transaction of the change itself; a failure gets its failed row here. */
static int audited(const struct wopts *o, const char *dsn, const char *action, json_t *details,
                   int (*fn)(PGconn *, const struct wopts *, const char *, const char *, long long *,
                             struct tn_error *),
                   long long *n) {
  struct tn_audit *a = NULL;
  struct tn_error err = {0};
  struct tn_audit_options ao = {.schema = o->schema,
                                .application_name = "tenantctl",
                                .ca_file = o->ca ? o->ca : getenv("TENANCY_PG_CA_FILE")};
  if (tn_audit_open(dsn, &ao, &a, &err))
    return tctl_db_error(&err);
  char actor[128], target[300], corr[37];
  if (o->actor)
    snprintf(actor, sizeof actor, "%s", o->actor);
  else
    snprintf(actor, sizeof actor, "tenantctl:%s", getenv("USER") ? getenv("USER") : "unknown");
  snprintf(target, sizeof target, "webhooksubscription/%s", o->sub);
  new_uuid(corr);
  char *det = json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS);
  struct tn_audit_event ev = {.actor = actor,
                              .action = action,
                              .target = target,
                              .correlation_id = corr,
                              .outcome = TN_AUDIT_STARTED,
                              .details = det};
  int rc = TCTL_EXIT_OK;
  if (tn_audit_append(a, &ev, NULL, &err)) {
    fprintf(stderr, "%s: not done: cannot record it in the audit trail: %s\n", tctl_prog, err.message);
    rc = TCTL_EXIT_DB;
    goto out;
  }
  PGconn *c = connect_db(dsn, o);
  struct tn_error ferr = {0};
  int frc = c ? fn(c, o, actor, corr, n, &ferr) : TN_EUNAVAILABLE;
  if (!c)
    snprintf(ferr.message, sizeof ferr.message, "cannot connect to PostgreSQL");
  PQfinish(c);
  if (frc) {
    json_object_set_new(details, "count", json_integer(0));
    json_object_set_new(details, "error", json_string(ferr.message));
    free(det);
    det = json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS);
    ev.outcome = TN_AUDIT_FAILED;
    ev.details = det;
    if (tn_audit_append(a, &ev, NULL, &err))
      fprintf(stderr, "%s: warning: its failure could not be recorded in the audit trail: %s\n", tctl_prog,
              err.message);
    fprintf(stderr, "%s: %s\n", tctl_prog, ferr.message);
    rc = TCTL_EXIT_DB;
  }
out:
  free(det);
  tn_audit_close(a);
  return rc;
}

static int do_requeue(PGconn *c, const struct wopts *o, const char *actor, const char *corr, long long *n,
                      struct tn_error *err) {
  return tn_wh_dlq_requeue(c, o->schema ? o->schema : "tenancy", o->sub, o->all ? 0 : o->seq, actor, corr, n,
                           err);
}
static int do_purge(PGconn *c, const struct wopts *o, const char *actor, const char *corr, long long *n,
                    struct tn_error *err) {
  return tn_wh_dlq_purge(c, o->schema ? o->schema : "tenancy", o->sub, o->all ? 0 : o->seq, actor, corr, n,
                         err);
}
static int do_replay(PGconn *c, const struct wopts *o, const char *actor, const char *corr, long long *n,
                     struct tn_error *err) {
  return tn_wh_replay(c, o->schema ? o->schema : "tenancy", o->sub, o->from, actor, corr, n, err);
}

static int dlq_list(const struct wopts *o, const char *dsn) {
  const char *out = o->output ? o->output : "table";
  if (strcmp(out, "table") && strcmp(out, "json"))
    return tctl_usage_error("events", "--output must be table or json, not \"%s\"", out);
  PGconn *c = connect_db(dsn, o);
  if (!c)
    return TCTL_EXIT_DB;
  json_t *l = NULL;
  struct tn_error err = {0};
  int rc = tn_wh_dlq_list(c, o->schema ? o->schema : "tenancy", o->sub, &l, &err);
  PQfinish(c);
  if (rc) {
    fprintf(stderr, "%s: %s\n", tctl_prog, err.message);
    return TCTL_EXIT_DB;
  }
  if (!strcmp(out, "json")) {
    tctl_print_json(stdout, l);
  } else if (json_array_size(l) == 0) {
    printf("no dead letters\n");
  } else {
    enum { NC = 8 };
    size_t nrows = json_array_size(l) + 1;
    const char **cells = calloc(nrows * NC, sizeof *cells);
    char(*num)[3][24] = calloc(nrows, sizeof *num);
    static const char *const heads[NC] = {"SUBSCRIPTION", "SEQ",      "TENANT",     "TENANT SEQ",
                                          "TYPE",         "ATTEMPTS", "DEAD SINCE", "LAST ERROR"};
    if (cells && num) {
      for (int i = 0; i < NC; i++)
        cells[i] = heads[i];
      size_t i;
      json_t *d;
      json_array_foreach(l, i, d) {
        const char **r = cells + (i + 1) * NC;
        snprintf(num[i][0], 24, "%lld", (long long)json_integer_value(json_object_get(d, "seq")));
        snprintf(num[i][1], 24, "%lld", (long long)json_integer_value(json_object_get(d, "tenantSequence")));
        snprintf(num[i][2], 24, "%lld", (long long)json_integer_value(json_object_get(d, "attempts")));
        r[0] = json_string_value(json_object_get(d, "subscription"));
        r[1] = num[i][0];
        r[2] = json_string_value(json_object_get(d, "tenant"));
        r[3] = num[i][1];
        r[4] = json_string_value(json_object_get(d, "type"));
        r[5] = num[i][2];
        r[6] = json_string_value(json_object_get(d, "deadAt"));
        r[7] = json_string_value(json_object_get(d, "lastError"));
      }
      tctl_print_table(stdout, "", cells, nrows, NC);
    }
    free(cells);
    free(num);
  }
  json_decref(l);
  return TCTL_EXIT_OK;
}

/* `events dlq ...`: argv[0] is "dlq". */
int tctl_cmd_events_dlq(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? TCTL_EXIT_USAGE : TCTL_EXIT_OK;
  }
  const char *verb = argv[1];
  struct wopts o = {0};
  int rc = parse(argc - 1, argv + 1, &o);
  if (rc)
    return rc < 0 ? TCTL_EXIT_OK : rc;
  bool list = !strcmp(verb, "list"), requeue = !strcmp(verb, "requeue"), purge = !strcmp(verb, "purge");
  if (!list && !requeue && !purge)
    return tctl_usage_error("events", "events dlq takes list, requeue or purge, not \"%s\"", verb);
  if (!list && !o.sub)
    return tctl_usage_error("events", "events dlq %s needs --subscription", verb);
  if (!list && !o.all == !o.seq)
    return tctl_usage_error("events", "events dlq %s needs either --seq N or --all", verb);
  char *dsn = NULL;
  if ((rc = dsn_of(&o, &dsn)))
    return rc;
  if (list) {
    rc = dlq_list(&o, dsn);
  } else {
    long long n = 0;
    json_t *det = json_pack("{s:s}", "subscription", o.sub);
    if (o.seq)
      json_object_set_new(det, "seq", json_integer(o.seq));
    rc = audited(&o, dsn, requeue ? "webhook.dlq.requeue" : "webhook.dlq.purge", det,
                 requeue ? do_requeue : do_purge, &n);
    json_decref(det);
    if (!rc)
      printf("%lld dead letter(s) of %s %s\n", n, o.sub, requeue ? "requeued" : "purged");
  }
  tn_wipe_free_str(dsn);
  return rc;
}

/* `events replay ...`: argv[0] is "replay". */
int tctl_cmd_events_replay(int argc, char **argv) {
  struct wopts o = {0};
  int rc = parse(argc, argv, &o);
  if (rc)
    return rc < 0 ? TCTL_EXIT_OK : rc;
  if (!o.sub || !o.from)
    return tctl_usage_error("events", "events replay needs --subscription S and --from-sequence N");
  char *dsn = NULL;
  if ((rc = dsn_of(&o, &dsn)))
    return rc;
  long long n = 0;
  json_t *det = json_pack("{s:s,s:I}", "subscription", o.sub, "fromSequence", (json_int_t)o.from);
  rc = audited(&o, dsn, "webhook.replay", det, do_replay, &n);
  json_decref(det);
  if (!rc)
    printf("%s: events from outbox sequence %lld are sent again (%lld tenant cursor(s) moved back)\n", o.sub,
           o.from, n);
  tn_wipe_free_str(dsn);
  return rc;
}
