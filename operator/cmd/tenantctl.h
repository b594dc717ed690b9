/* tenantctl.h - what the tenantctl commands share: the command table, the global (kubectl-style)
 * flags, the connection to the API server, exit codes and output helpers.
 *
 * A command is a function `int fn(int argc, char **argv)` where argv[0] is the command's name
 * and the global flags (--kubeconfig, --context, -n, --as, --as-group) have already been taken
 * out of argv into tctl_globals; it returns an exit code (TCTL_EXIT_*). Commands are listed in
 * tctl_commands[] (tenantctl.c); another file adds one by declaring its function here and adding
 * a row there. */
#ifndef TN_TENANTCTL_H
#define TN_TENANTCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "kube/client.h"
#include "util/error.h"

/* Exit codes of every command (docs/cli.md, `tenantctl --help`). */
#define TCTL_EXIT_OK 0
#define TCTL_EXIT_ERROR                                                                                      \
  1 /* the API server could not be reached or failed; anything unexpected; `audit verify`: the chain         \
       is broken */
#define TCTL_EXIT_USAGE 2    /* bad flags or arguments, a kubeconfig or DSN that cannot be used */
#define TCTL_EXIT_NOTFOUND 3 /* the tenant (or another named object, version or event) does not exist */
#define TCTL_EXIT_REFUSED                                                                                    \
  4 /* refused: RBAC (403/401), admission or validation (422/400), conflict or                               \
       already exists (409), the lifecycle, or a deletion the user did not confirm */
#define TCTL_EXIT_DB                                                                                         \
  5 /* PostgreSQL could not be used: unreachable, TLS refused, tables missing, permission denied */

/* The exit codes as the help texts print them. */
#define TCTL_EXIT_CODES_HELP                                                                                 \
  "Exit codes: 0 success, 1 error (API server unreachable or failing; `audit verify`: chain broken),\n"      \
  "2 usage, 3 not found, 4 refused (RBAC, admission, validation, conflict, lifecycle, unconfirmed\n"         \
  "deletion), 5 database error (PostgreSQL unreachable, TLS, tables missing, permission denied).\n"

struct tctl_command {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary; /* one line for the help */
};
extern const struct tctl_command tctl_commands[];

/* Flags every Kubernetes command understands, wherever they appear on the command line. */
struct tctl_globals {
  const char *kubeconfig;
  const char *context;
  const char *namespace; /* -n: where events of cluster-scoped objects are looked up ("default") */
  const char *as;
  const char *as_groups[16];
  int n_as_groups;
  long request_timeout_ms;
};
extern struct tctl_globals tctl_g;
extern const char *tctl_prog; /* "tenantctl" or "kubectl tenant" (for messages and help) */

/* Connects with the kubeconfig (flags, KUBECONFIG, ~/.kube/config, in-cluster) as kubectl would.
 * On failure prints the error and returns the exit code (non-zero). */
int tctl_connect(struct tn_kube **k);

/* Prints an error to stderr as kubectl does ("Error from server (Forbidden): <Status message>")
 * and returns the exit code for it. what (may be NULL) prefixes errors that are not from the
 * server. */
int tctl_fail(const struct tn_error *err, const char *what);
/* "prog: message" on stderr, exit TCTL_EXIT_USAGE, with a pointer to --help. */
int tctl_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The exit code for an error code. */
int tctl_exit_code(int code);

/* The PostgreSQL flags of the commands that read the audit trail, the history or the outbox. */
struct tctl_db_flags {
  const char *dsn;      /* --pg-dsn (default $TENANCY_PG_DSN) */
  const char *dsn_file; /* --pg-dsn-file */
  const char *ca_file;  /* --pg-ca-file (default $TENANCY_PG_CA_FILE) */
  const char *schema;   /* --schema (NULL: "tenancy") */
};
struct tn_audit;
/* Opens the audit trail with d (create: make the tables when missing, as `audit init`), printing
 * any TLS warning. On failure prints why and returns the exit code (TCTL_EXIT_USAGE for flags or a
 * DSN that cannot be used, else tctl_db_error's). */
int tctl_open_db(const struct tctl_db_flags *d, bool create, struct tn_audit **a);
/* Prints a database error (with a hint when PostgreSQL is unreachable) and returns its exit code:
 * TCTL_EXIT_USAGE for a configuration error, else TCTL_EXIT_DB. */
int tctl_db_error(const struct tn_error *err);

/* Requests that honour --request-timeout (the whole request, retries included; 0: 60 s).
 * Errors as tn_kube_do's. Out parameters get a new reference. */
int tctl_get_object(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name,
                    json_t **out, struct tn_error *err);
int tctl_list_page(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *label_selector,
                   const char *field_selector, long limit, const char *cont, json_t **out,
                   struct tn_error *err);
/* A JSON merge patch (fieldManager=tenantctl). */
int tctl_merge_patch(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name,
                     json_t *patch, struct tn_error *err);
/* POST (dry_run: dryRun=All); out may be NULL. */
int tctl_create(struct tn_kube *k, const struct tn_gvr *gvr, json_t *obj, bool dry_run, json_t **out,
                struct tn_error *err);

/* The Tenant resource. */
extern const struct tn_gvr tctl_tenants_gvr;

/* Output: a JSON value as YAML (block style, strings quoted where YAML 1.1 would read them as
 * something else). */
int tctl_print_yaml(FILE *f, json_t *v);
void tctl_print_json(FILE *f, json_t *v);
/* "5s", "3m", "7h", "12d", "2y" since an RFC 3339 timestamp; "<unknown>" when unparsable. */
void tctl_age(const char *rfc3339, char *dst, size_t n);
/* A simple aligned table: rows of ncols cells each (cells borrowed, NULL prints as empty), header
 * first, each line after indent; control characters print as '?'. */
void tctl_print_table(FILE *f, const char *indent, const char *const *cells, size_t nrows, size_t ncols);
/* Strings from a JSON path like "status.placement.region" (NULL when absent). */
const char *tctl_str(json_t *obj, const char *path);
json_t *tctl_get(json_t *obj, const char *path);

/* The commands. */
int tctl_cmd_get(int argc, char **argv);
int tctl_cmd_describe(int argc, char **argv);
int tctl_cmd_create(int argc, char **argv);
int tctl_cmd_lifecycle(int argc, char **argv); /* activate, suspend, resume, archive */
int tctl_cmd_delete(int argc, char **argv);
int tctl_cmd_rotate(int argc, char **argv);
int tctl_cmd_events(int argc, char **argv);
/* `events list|show` (the outbox, tenantctl_events.c), else tctl_cmd_events. */
int tctl_cmd_events_dispatch(int argc, char **argv);
int tctl_cmd_completion(int argc, char **argv);
int tctl_cmd_audit(int argc, char **argv);
/* tenantctl_webhooks.c: `events dlq ...` and `events replay ...` (two-word table entries). */
int tctl_cmd_events_dlq(int argc, char **argv);
int tctl_cmd_events_replay(int argc, char **argv);
/* tenantctl_failover.c (issue 16): `failover REGION` and `failover-drill REGION --synthetic N`. */
int tctl_cmd_failover(int argc, char **argv);
int tctl_cmd_failover_drill(int argc, char **argv);
/* The program run as kubectl_complete-tenant: kubectl's plugin completion (cobra's protocol:
 * candidates one per line, then ":<directive>"). argv[1..] are the words after `kubectl tenant`. */
int tctl_plugin_complete(int argc, char **argv);

/* The audit tail of describe: the newest rows of tenant/ID when a DSN is configured
 * ($TENANCY_PG_DSN); prints a note and returns quietly otherwise. */
void tctl_audit_tail(FILE *f, const char *tenant, int rows);

#endif
