/* tenantctl_history.c - `tenantctl history`, `diff` and `rollback` (docs/history.md): the
 * versions of a Tenant kept in the operator's PostgreSQL (audit/history.h), and a rollback that
 * writes an old version's spec back through the API server with the user's own kubeconfig, so
 * admission, policy and audit apply exactly as for any edit.
 *
 * Exit codes: tenantctl's (TCTL_EXIT_*, also printed by --help): 3 no such tenant or version; 4
 * refused (the lifecycle does not allow the state change, or the API server / admission refused
 * the update: the reason is printed); 1 the API server could not be used; 5 the database. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/history.h"
#include "converge/reconciler.h"
#include "kube/client.h"
#include "runtime/options.h"
#include "tenancy/lifecycle.h"
#include "tenancy/tenant.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/wipe.h"

#include "tenantctl.h"
#include "tenantctl_history.h"

#define prog tctl_prog

#define DB_FLAGS                                                                                             \
  "  --pg-dsn DSN        PostgreSQL connection string or URI (default $TENANCY_PG_DSN)\n"                    \
  "  --pg-dsn-file PATH  read it from a file instead\n"                                                      \
  "  --pg-ca-file FILE   the server's CA (default $TENANCY_PG_CA_FILE); TLS is verify-full by default\n"     \
  "  --schema NAME       schema of the audit tables (default \"tenancy\")\n"                                 \
  "  -h, --help          show this help\n"

static void usage_history(FILE *f) {
  fprintf(f,
          "Usage: %s history TENANT [flags]\n"
          "\n"
          "Lists the recorded versions of a Tenant's spec, oldest first: generation, time, actor\n"
          "(who asked, as the API server recorded it) and the top-level spec fields that changed\n"
          "from the version before. Versions of the tenant's current uid only, unless --all-uids.\n"
          "\n"
          "Flags:\n" DB_FLAGS "  -o, --output FMT    table (default) or json\n"
          "  --all-uids          also versions of earlier tenants of the same name\n"
          "\n" TCTL_EXIT_CODES_HELP,
          prog);
}

static void usage_diff(FILE *f) {
  fprintf(f,
          "Usage: %s diff TENANT --from N --to M [flags]\n"
          "\n"
          "Field-level difference between the specs of generations N and M, one line per field, in\n"
          "a stable order (keys sorted, lists index by index):\n"
          "  ~ spec.plan: \"standard\" -> \"premium\"\n"
          "  + spec.externalIds.crm: \"0015g\"\n"
          "  - spec.contacts[1]: {...}\n"
          "\n"
          "Flags:\n" DB_FLAGS "\n" TCTL_EXIT_CODES_HELP,
          prog);
}

static void usage_rollback(FILE *f) {
  fprintf(f,
          "Usage: %s rollback TENANT --to N [flags]\n"
          "\n"
          "Writes generation N's spec back to the Tenant through the API server, as an update made\n"
          "with your kubeconfig: RBAC, admission (the webhook, the policies) and the audit trail apply\n"
          "exactly as for any edit, and the new generation is recorded as a version with you as actor.\n"
          "spec.state, spec.deletionConfirmation and spec.breakGlass are kept as they are now (a\n"
          "rollback never changes the lifecycle state or grants emergency access by itself); --state\n"
          "asks for a state change too, checked against the lifecycle first. spec.stateReason is\n"
          "--reason when given, else \"rollback to generation N\".\n"
          "\n"
          "Flags:\n" DB_FLAGS "  --to N              the generation to restore (required)\n"
          "  --state STATE       also move to STATE (refused unless the lifecycle allows it)\n"
          "  --reason TEXT       spec.stateReason of the update\n"
          "  --kubeconfig PATH   default $KUBECONFIG, then ~/.kube/config\n"
          "  --context NAME      kubeconfig context (default: current-context)\n"
          "  --dry-run           print the difference and write nothing\n"
          "\n" TCTL_EXIT_CODES_HELP,
          prog);
}

static int usage_error(void (*usage)(FILE *), const char *msg, const char *arg) {
  fprintf(stderr, "%s: %s%s%s%s\n\n", prog, msg, arg ? " \"" : "", arg ? arg : "", arg ? "\"" : "");
  usage(stderr);
  return TCTL_EXIT_USAGE;
}

enum {
  OPT_DSN = 300,
  OPT_DSN_FILE,
  OPT_CA,
  OPT_SCHEMA,
  OPT_FROM,
  OPT_TO,
  OPT_STATE,
  OPT_REASON,
  OPT_KUBECONFIG,
  OPT_CONTEXT,
  OPT_DRY_RUN,
  OPT_ALL_UIDS
};

#define DB_OPTS                                                                                              \
  {"pg-dsn", required_argument, NULL, OPT_DSN}, {"pg-dsn-file", required_argument, NULL, OPT_DSN_FILE},      \
      {"pg-ca-file", required_argument, NULL, OPT_CA}, {"schema", required_argument, NULL, OPT_SCHEMA}, {    \
    "help", no_argument, NULL, 'h'                                                                           \
  }

static int db_flag(int opt, struct tctl_db_flags *d) {
  switch (opt) {
  case OPT_DSN:
    d->dsn = optarg;
    return 1;
  case OPT_DSN_FILE:
    d->dsn_file = optarg;
    return 1;
  case OPT_CA:
    d->ca_file = optarg;
    return 1;
  case OPT_SCHEMA:
    d->schema = optarg;
    return 1;
  default:
    return 0;
  }
}

static int parse_gen(const char *s, long long *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || !*s || *end || v <= 0)
    return -1;
  *out = v;
  return 0;
}

/* The versions of the tenant's newest uid (all uids with all_uids). */
static int load_versions(struct tn_audit *a, const char *tenant, bool all_uids, json_t **versions) {
  struct tn_error err = {0};
  char uid[64];
  *versions = NULL;
  if (!all_uids && tn_history_latest_uid(a, tenant, uid, &err)) {
    if (err.code == TN_ENOTFOUND) {
      fprintf(stderr, "%s: tenant %s has no recorded versions\n", prog, tenant);
      return TCTL_EXIT_NOTFOUND;
    }
    return tctl_db_error(&err);
  }
  if (tn_history_list(a, tenant, all_uids ? NULL : uid, versions, &err))
    return tctl_db_error(&err);
  if (json_array_size(*versions) == 0) {
    json_decref(*versions);
    *versions = NULL;
    fprintf(stderr, "%s: tenant %s has no recorded versions\n", prog, tenant);
    return TCTL_EXIT_NOTFOUND;
  }
  return 0;
}

static json_t *find_version(json_t *versions, long long gen) {
  size_t i;
  json_t *v;
  json_array_foreach(versions, i,
                     v) if (json_integer_value(json_object_get(v, "generation")) == gen) return v;
  return NULL;
}

/* ---- history ------------------------------------------------------------------------------- */

static int cmd_history(int argc, char **argv) {
  static const struct option opts[] = {DB_OPTS,
                                       {"output", required_argument, NULL, 'o'},
                                       {"all-uids", no_argument, NULL, OPT_ALL_UIDS},
                                       {NULL, 0, NULL, 0}};
  struct tctl_db_flags d = {0};
  const char *output = "table";
  bool all_uids = false;
  int opt;
  while ((opt = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
    if (db_flag(opt, &d))
      continue;
    if (opt == 'h') {
      usage_history(stdout);
      return 0;
    } else if (opt == 'o') {
      output = optarg;
    } else if (opt == OPT_ALL_UIDS) {
      all_uids = true;
    } else {
      usage_history(stderr);
      return TCTL_EXIT_USAGE;
    }
  }
  if (optind + 1 != argc)
    return usage_error(usage_history, optind < argc ? "one tenant id, please" : "which tenant? pass its id",
                       NULL);
  if (strcmp(output, "table") && strcmp(output, "json"))
    return usage_error(usage_history, "--output must be table or json, not", output);
  const char *tenant = argv[optind];
  struct tn_audit *a = NULL;
  int rc = tctl_open_db(&d, false, &a);
  if (rc)
    return rc;
  json_t *versions = NULL;
  if ((rc = load_versions(a, tenant, all_uids, &versions)))
    goto out;
  if (!strcmp(output, "json")) {
    json_dumpf(versions, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    printf("\n");
    goto out;
  }
  printf("%-10s  %-20s  %-32s  %s\n", "GENERATION", "TIME", "ACTOR", "CHANGED");
  size_t i;
  json_t *v;
  const json_t *prev = NULL;
  const char *prev_uid = NULL;
  json_array_foreach(versions, i, v) {
    const char *uid = json_string_value(json_object_get(v, "uid"));
    char changed[512];
    if (!prev || !prev_uid || !uid || strcmp(prev_uid, uid))
      snprintf(changed, sizeof changed, "(first recorded version%s%s)", all_uids ? " of uid " : "",
               all_uids && uid ? uid : "");
    else
      tn_history_changed_fields(json_object_get(prev, "spec"), json_object_get(v, "spec"), changed,
                                sizeof changed);
    printf("%-10lld  %-20s  %-32s  %s\n", (long long)json_integer_value(json_object_get(v, "generation")),
           json_string_value(json_object_get(v, "at")), json_string_value(json_object_get(v, "actor")),
           changed[0] ? changed : "(no spec change)");
    prev = v;
    prev_uid = uid;
  }
out:
  json_decref(versions);
  tn_audit_close(a);
  return rc;
}

/* ---- diff ---------------------------------------------------------------------------------- */

static int cmd_diff(int argc, char **argv) {
  static const struct option opts[] = {DB_OPTS,
                                       {"from", required_argument, NULL, OPT_FROM},
                                       {"to", required_argument, NULL, OPT_TO},
                                       {NULL, 0, NULL, 0}};
  struct tctl_db_flags d = {0};
  long long from = 0, to = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (db_flag(opt, &d))
      continue;
    if (opt == 'h') {
      usage_diff(stdout);
      return 0;
    } else if (opt == OPT_FROM) {
      if (parse_gen(optarg, &from))
        return usage_error(usage_diff, "--from must be a generation (a positive whole number), not", optarg);
    } else if (opt == OPT_TO) {
      if (parse_gen(optarg, &to))
        return usage_error(usage_diff, "--to must be a generation (a positive whole number), not", optarg);
    } else {
      usage_diff(stderr);
      return TCTL_EXIT_USAGE;
    }
  }
  if (optind + 1 != argc)
    return usage_error(usage_diff, optind < argc ? "one tenant id, please" : "which tenant? pass its id",
                       NULL);
  if (!from || !to)
    return usage_error(usage_diff, "pass both --from N and --to M", NULL);
  const char *tenant = argv[optind];
  struct tn_audit *a = NULL;
  int rc = tctl_open_db(&d, false, &a);
  if (rc)
    return rc;
  json_t *versions = NULL;
  struct tn_buf out;
  tn_buf_init(&out, 1u << 24);
  if ((rc = load_versions(a, tenant, false, &versions)))
    goto done;
  json_t *vf = find_version(versions, from), *vt = find_version(versions, to);
  if (!vf || !vt) {
    fprintf(stderr, "%s: tenant %s has no recorded generation %lld (see `%s history %s`)\n", prog, tenant,
            vf ? to : from, prog, tenant);
    rc = TCTL_EXIT_NOTFOUND;
    goto done;
  }
  int n = 0;
  if (tn_history_diff(json_object_get(vf, "spec"), json_object_get(vt, "spec"), "spec", &out, &n)) {
    fprintf(stderr, "%s: out of memory\n", prog);
    rc = TCTL_EXIT_USAGE;
    goto done;
  }
  if (n == 0)
    printf("no difference between generations %lld and %lld\n", from, to);
  else
    fputs(tn_buf_str(&out), stdout);
done:
  tn_buf_cleanup(&out);
  json_decref(versions);
  tn_audit_close(a);
  return rc;
}

/* ---- rollback ------------------------------------------------------------------------------ */

/* Copies key of `from` into `to` (or removes it from `to` when `from` lacks it). */
static int keep_field(json_t *to, const json_t *from, const char *key) {
  const json_t *v = json_object_get(from, key);
  if (v)
    return json_object_set(to, key, (json_t *)v);
  json_object_del(to, key);
  return 0;
}

static int cmd_rollback(int argc, char **argv) {
  static const struct option opts[] = {DB_OPTS,
                                       {"to", required_argument, NULL, OPT_TO},
                                       {"state", required_argument, NULL, OPT_STATE},
                                       {"reason", required_argument, NULL, OPT_REASON},
                                       {"kubeconfig", required_argument, NULL, OPT_KUBECONFIG},
                                       {"context", required_argument, NULL, OPT_CONTEXT},
                                       {"dry-run", no_argument, NULL, OPT_DRY_RUN},
                                       {NULL, 0, NULL, 0}};
  struct tctl_db_flags d = {0};
  long long to = 0;
  const char *state = NULL, *reason = NULL, *kubeconfig = NULL, *context = NULL;
  bool dry_run = false;
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (db_flag(opt, &d))
      continue;
    switch (opt) {
    case 'h':
      usage_rollback(stdout);
      return 0;
    case OPT_TO:
      if (parse_gen(optarg, &to))
        return usage_error(usage_rollback, "--to must be a generation (a positive whole number), not",
                           optarg);
      break;
    case OPT_STATE:
      state = optarg;
      break;
    case OPT_REASON:
      reason = optarg;
      break;
    case OPT_KUBECONFIG:
      kubeconfig = optarg;
      break;
    case OPT_CONTEXT:
      context = optarg;
      break;
    case OPT_DRY_RUN:
      dry_run = true;
      break;
    default:
      usage_rollback(stderr);
      return TCTL_EXIT_USAGE;
    }
  }
  if (optind + 1 != argc)
    return usage_error(usage_rollback, optind < argc ? "one tenant id, please" : "which tenant? pass its id",
                       NULL);
  if (!to)
    return usage_error(usage_rollback, "which generation? pass --to N (see `tenantctl history TENANT`)",
                       NULL);
  enum tn_state want = TN_STATE_NONE;
  if (state && tn_state_parse(state, &want))
    return usage_error(usage_rollback, "--state must be Draft, Active, Suspended, Archived or Deleted, not",
                       state);
  const char *tenant = argv[optind];

  struct tn_audit *a = NULL;
  struct tn_kube_config cfg = {0};
  struct tn_kube *kube = NULL;
  json_t *versions = NULL, *cur = NULL, *updated = NULL;
  struct tn_buf diff;
  tn_buf_init(&diff, 1u << 24);
  struct tn_error err = {0};
  int rc = tctl_open_db(&d, false, &a);
  if (rc)
    goto out;
  if ((rc = load_versions(a, tenant, false, &versions)))
    goto out;
  json_t *v = find_version(versions, to);
  if (!v) {
    fprintf(stderr, "%s: tenant %s has no recorded generation %lld (see `%s history %s`)\n", prog, tenant, to,
            prog, tenant);
    rc = TCTL_EXIT_NOTFOUND;
    goto out;
  }
  if (tn_kube_config_load(kubeconfig, context, &cfg, &err)) {
    fprintf(stderr, "%s: kubeconfig: %s\n", prog, err.message);
    rc = TCTL_EXIT_USAGE;
    goto out;
  }
  if (tn_kube_new(&cfg, NULL, &kube, &err)) {
    fprintf(stderr, "%s: %s\n", prog, err.message);
    rc = TCTL_EXIT_ERROR;
    goto out;
  }
  if (tn_kube_get(kube, &tn_gvr_tenants, NULL, tenant, &cur, &err)) {
    fprintf(stderr, "%s: reading tenant %s: %s\n", prog, tenant, err.message);
    rc = err.code == TN_ENOTFOUND    ? TCTL_EXIT_NOTFOUND
         : err.code == TN_EFORBIDDEN ? TCTL_EXIT_REFUSED
                                     : TCTL_EXIT_ERROR;
    goto out;
  }
  const json_t *meta = json_object_get(cur, "metadata");
  const char *uid = json_string_value(json_object_get(meta, "uid"));
  const char *vuid = json_string_value(json_object_get(v, "uid"));
  if (!uid || !vuid || strcmp(uid, vuid)) {
    fprintf(
        stderr,
        "%s: refused: generation %lld belongs to an earlier tenant named %s (uid %s), not to the one that "
        "exists now (uid %s)\n",
        prog, to, tenant, vuid ? vuid : "?", uid ? uid : "?");
    rc = TCTL_EXIT_REFUSED;
    goto out;
  }
  json_t *cur_spec = json_object_get(cur, "spec");
  json_t *spec = json_deep_copy(json_object_get(v, "spec"));
  if (!spec || !json_is_object(cur_spec)) {
    fprintf(stderr, "%s: tenant %s: no spec to roll back\n", prog, tenant);
    json_decref(spec);
    rc = TCTL_EXIT_NOTFOUND;
    goto out;
  }
  /* What a rollback never restores: the lifecycle state (unless --state), the deletion
   * confirmation and emergency access. */
  if (keep_field(spec, cur_spec, "state") || keep_field(spec, cur_spec, "deletionConfirmation") ||
      keep_field(spec, cur_spec, "breakGlass") || keep_field(spec, cur_spec, "stateReason")) {
    json_decref(spec);
    fprintf(stderr, "%s: out of memory\n", prog);
    rc = TCTL_EXIT_USAGE;
    goto out;
  }
  if (state) {
    enum tn_state from = TN_STATE_NONE;
    const char *reached = json_string_value(json_object_get(json_object_get(cur, "status"), "state"));
    const char *asked = json_string_value(json_object_get(cur_spec, "state"));
    if (!(reached && *reached && tn_state_parse(reached, &from) == 0) &&
        tn_state_parse(asked && *asked ? asked : "Draft", &from))
      from = TN_STATE_DRAFT;
    struct tn_error lerr = {0};
    enum tn_action action;
    if (tn_lifecycle_check(from, want, tenant,
                           json_string_value(json_object_get(cur_spec, "deletionConfirmation")), &action,
                           &lerr)) {
      fprintf(stderr, "%s: refused: %s\n", prog, lerr.message);
      json_decref(spec);
      rc = TCTL_EXIT_REFUSED;
      goto out;
    }
    json_object_set_new(spec, "state", json_string(tn_state_name(want)));
  }
  char dflt[96];
  snprintf(dflt, sizeof dflt, "rollback to generation %lld", to);
  json_object_set_new(spec, "stateReason", json_string(reason ? reason : dflt));
  int n = 0;
  if (tn_history_diff(cur_spec, spec, "spec", &diff, &n)) {
    json_decref(spec);
    fprintf(stderr, "%s: out of memory\n", prog);
    rc = TCTL_EXIT_USAGE;
    goto out;
  }
  /* Only a stateReason of our own making: nothing to write. */
  json_t *probe = json_deep_copy(spec);
  if (probe)
    keep_field(probe, cur_spec, "stateReason");
  bool same = probe && json_equal(probe, cur_spec);
  json_decref(probe);
  if (same) {
    printf("tenant %s already has the spec of generation %lld: nothing to roll back\n", tenant, to);
    json_decref(spec);
    goto out;
  }
  fputs(tn_buf_str(&diff), stdout);
  if (dry_run) {
    printf("dry run: tenant %s not changed\n", tenant);
    json_decref(spec);
    goto out;
  }
  json_object_set_new(cur, "spec", spec);
  if (tn_kube_update(kube, &tn_gvr_tenants, NULL, cur, NULL, &updated, &err)) {
    bool refused = err.code == TN_EFORBIDDEN || err.code == TN_EINVALID;
    fprintf(stderr, "%s: %s: the API server refused the update of tenant %s: %s\n", prog,
            refused ? "refused" : "error", tenant, err.message);
    rc = refused ? TCTL_EXIT_REFUSED : TCTL_EXIT_ERROR;
    goto out;
  }
  printf("tenant %s rolled back to the spec of generation %lld (now generation %lld)\n", tenant, to,
         (long long)json_integer_value(json_object_get(json_object_get(updated, "metadata"), "generation")));
out:
  tn_buf_cleanup(&diff);
  json_decref(updated);
  json_decref(cur);
  json_decref(versions);
  tn_kube_free(kube);
  tn_kube_config_cleanup(&cfg);
  tn_audit_close(a);
  return rc;
}

int tenantctl_history_dispatch(int argc, char **argv) {
  if (argc < 2)
    return -1;
  const char *cmd = argv[1];
  int (*fn)(int, char **) = !strcmp(cmd, "history")    ? cmd_history
                            : !strcmp(cmd, "diff")     ? cmd_diff
                            : !strcmp(cmd, "rollback") ? cmd_rollback
                                                       : NULL;
  if (!fn)
    return -1;
  optind = 0;
  opterr = 1;
  return fn(argc - 1, argv + 1);
}
