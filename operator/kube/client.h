/* client.h - the Kubernetes API client: configuration, one shared HTTP/2 connection driven by
 * a transport thread, rate limiting, retries, and generic verbs by group/version/resource. */
#ifndef TN_KUBE_CLIENT_H
#define TN_KUBE_CLIENT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "util/buf.h"
#include "util/error.h"

struct tn_metrics;

/* ---- configuration ----------------------------------------------------------------------- */

/* Where to reach the API server and how to authenticate. Every string is owned (malloc'd) and
 * released by tn_kube_config_cleanup(); any may be NULL. *_data fields hold decoded PEM. */
struct tn_kube_config {
  char *server; /* https://host:port, no trailing slash */
  char *ca_file;
  char *ca_data;
  char *cert_file;
  char *cert_data;
  char *key_file;
  char *key_data;
  char *token;      /* bearer token */
  char *token_file; /* re-read when it changes (projected service-account tokens rotate) */
  char *tls_server_name;
  bool insecure_skip_tls_verify; /* refused by tn_kube_new unless allow_insecure is set */
  bool allow_insecure;
  double qps;                /* client-side rate limit for non-watch requests; <= 0 disables */
  int burst;                 /* bucket size; defaults to max(1, 2*qps) when 0 */
  char *user_agent;          /* default "tenancy-operator/<version>" */
  size_t max_response_bytes; /* hard cap on one response body; default 64 MiB */
  char *namespace;           /* the context's namespace (in-cluster: the pod's); informational, may be NULL */
  char *impersonate_user;    /* Impersonate-User on every request (kubectl --as); NULL: none */
  char *impersonate_groups;  /* Impersonate-Group values separated by '\n' (--as-group); needs the user */
};

/* Loads a kubeconfig: path (one file) when set, else every file of $KUBECONFIG (a ':' list;
 * missing files skipped) merged as kubectl merges them (the first file that defines a named
 * cluster, context or user wins; current-context comes from the first file that sets it), else
 * ~/.kube/config. context NULL means current-context. Relative file paths resolve against the
 * directory of the file that defines the entry. A user with an `exec` credential plugin has it
 * run now (tn_kube_exec_apply): the credential it prints becomes token or cert/key data. A
 * malformed file gets TN_ECONFIG with a message naming the field (e.g.
 * "users[admin].user.client-certificate-data: not valid base64"). */
int tn_kube_config_load(const char *path, const char *context, struct tn_kube_config *out,
                        struct tn_error *err);
/* Parses a kubeconfig held in memory (text[len], YAML; need not be NUL-terminated), as
 * tn_kube_config_load does with a file's contents: name is what messages call it (NULL:
 * "(memory)"), relative file paths resolve against dir (NULL: as given). YAML aliases may expand
 * the document by at most 65536 nodes (a "billion laughs" file fails fast with TN_ECONFIG). On
 * failure out is cleaned up. */
int tn_kube_config_parse(const char *text, size_t len, const char *name, const char *dir, const char *context,
                         struct tn_kube_config *out, struct tn_error *err);
/* One kubeconfig document in memory (text need not be NUL-terminated). */
struct tn_kube_config_source {
  const char *text;
  size_t len;
  const char *name; /* for messages */
  const char *dir;  /* relative paths resolve against it (NULL: as given) */
};

/* An exec credential plugin (users[].user.exec), validated: apiVersion
 * client.authentication.k8s.io/v1 (or v1beta1), command, args, env, interactiveMode (Never or
 * IfAvailable: plugins never get a terminal; Always is refused), provideClusterInfo. */
struct tn_kube_exec {
  char *api_version;
  char *command; /* a relative path with a '/' resolved against the kubeconfig's directory */
  char **args;
  size_t nargs;
  char **env; /* "NAME=value" */
  size_t nenv;
  char *interactive_mode;
  bool provide_cluster_info;
  char *install_hint;
};
void tn_kube_exec_cleanup(struct tn_kube_exec *e);

/* Merges and parses n documents (see tn_kube_config_load for the rules). When the chosen user
 * has an exec plugin, it is validated and, when exec is non-NULL, returned there (exec->command
 * set) without being run. */
int tn_kube_config_parse_sources(const struct tn_kube_config_source *srcs, size_t n, const char *context,
                                 struct tn_kube_config *out, struct tn_kube_exec *exec, struct tn_error *err);

/* What a plugin answered (ExecCredential status): a token, or PEM certificate and key. */
struct tn_kube_exec_credential {
  char *token;
  char *cert_data;
  char *key_data;
  time_t expires; /* status.expirationTimestamp; 0 when it does not expire */
};
void tn_kube_exec_credential_cleanup(struct tn_kube_exec_credential *c);
/* Parses a plugin's stdout: kind ExecCredential of api_version, status.token or
 * status.clientCertificateData + clientKeyData (PEM), optional status.expirationTimestamp. Pure. */
int tn_kube_exec_credential_parse(const char *api_version, const char *text, size_t len,
                                  struct tn_kube_exec_credential *out, struct tn_error *err);
/* The plugin's credential: from this process's cache while it has not expired, else by running
 * the command (environment plus exec.env plus KUBERNETES_EXEC_INFO, stdin /dev/null, stderr
 * inherited, stdout at most 1 MiB within 60 s). cfg gives the cluster for provideClusterInfo. */
int tn_kube_exec_get_credential(const struct tn_kube_exec *e, const struct tn_kube_config *cfg,
                                struct tn_kube_exec_credential *out, struct tn_error *err);
/* tn_kube_exec_get_credential, then its token or certificate replaces cfg's. */
int tn_kube_exec_apply(const struct tn_kube_exec *e, struct tn_kube_config *cfg, struct tn_error *err);

/* In-cluster: KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/kubernetes.io/serviceaccount/
 * {token,ca.crt} (the directory may be overridden for tests with sa_dir, NULL for default). */
int tn_kube_config_in_cluster(const char *sa_dir, struct tn_kube_config *out, struct tn_error *err);
/* Explicit path, else $KUBECONFIG / ~/.kube/config when present, else in-cluster. */
int tn_kube_config_auto(const char *path, struct tn_kube_config *out, struct tn_error *err);
void tn_kube_config_cleanup(struct tn_kube_config *c);

/* ---- the client -------------------------------------------------------------------------- */

struct tn_kube; /* opaque; thread-safe: every function may be called from any thread */

/* Starts the transport thread. metrics may be NULL (else rest_client_requests_total{code,method}
 * and rest_client_request_duration_seconds{verb} are registered in it). The config is copied. */
int tn_kube_new(const struct tn_kube_config *cfg, struct tn_metrics *metrics, struct tn_kube **out,
                struct tn_error *err);
/* Cancels every request in flight (they return TN_ECANCELED), stops the thread, frees.
 * Accepts NULL. */
void tn_kube_free(struct tn_kube *k);
/* Every later request that writes (any method but GET and HEAD) is first checked against
 * fence (borrowed; it must outlive the client; NULL removes it) and refused with TN_ECANCELED
 * when the fence is closed: a replica that lost its leadership writes nothing more. Clients that
 * must write whatever the leadership (the Lease itself, the webhook's Secret and configuration)
 * use a client without a fence. */
struct tn_fence;
void tn_kube_set_fence(struct tn_kube *k, const struct tn_fence *fence);
/* How many connections the client has opened to the API server since tn_kube_new (the sum of
 * CURLINFO_NUM_CONNECTS over every attempt): 1 while the shared HTTP/2 connection lives. */
long tn_kube_connections_opened(struct tn_kube *k);

/* Where the client reaches the API server and how it verifies it, WITHOUT any of the client's
 * credentials: for a forwarder that must present a user's own token (the console) on a
 * connection of its own. Strings are borrowed from k (valid until tn_kube_free). */
struct tn_kube_endpoint {
  const char *base_url;   /* scheme://host:port[/prefix] used in URLs */
  const char *connect_to; /* a CURLOPT_CONNECT_TO entry (tls_server_name), or NULL */
  const char *ca_file;    /* or NULL */
  const char *ca_data;    /* PEM, or NULL */
  bool insecure;          /* insecure-skip-tls-verify was allowed and set */
};
void tn_kube_endpoint(const struct tn_kube *k, struct tn_kube_endpoint *out);

/* A resource type. namespaced=false for cluster-scoped kinds. Strings are borrowed. */
struct tn_gvr {
  const char *group; /* "" for the core group */
  const char *version;
  const char *resource; /* plural, lower case */
  bool namespaced;
};

/* The request path for a resource (collection when name is NULL), each segment escaped:
 * /api/v1/namespaces/NS/RESOURCE/NAME/SUB or /apis/GROUP/VERSION/.... Returns malloc'd. */
char *tn_kube_path(const struct tn_gvr *gvr, const char *ns, const char *name, const char *subresource);

/* ---- raw requests ------------------------------------------------------------------------ */

/* Called on the transport thread with each chunk of a 2xx response body as it arrives (any
 * split). Return 0 to continue, non-zero to abort the request (tn_kube_do returns that code
 * unless it is positive, in which case TN_ECANCELED). Must be quick: it delays other streams. */
typedef int (*tn_kube_data_fn)(void *ud, const char *data, size_t len);

struct tn_kube_request {
  const char *method;       /* GET, POST, PUT, PATCH, DELETE */
  const char *path;         /* from tn_kube_path or a literal, already escaped */
  const char *query;        /* without '?', already escaped (build it with tn_kube_query_add), or NULL */
  const char *content_type; /* of body; NULL means application/json */
  const char *body;
  size_t body_len;
  tn_kube_data_fn on_data; /* streaming (watches): 2xx body goes here, not into the response */
  void *ud;
  atomic_int *cancel; /* when non-NULL and set non-zero, the request ends with TN_ECANCELED */
  long timeout_ms;    /* whole-request deadline; 0 = 60 s for normal requests, none for streams */
  bool no_retry;      /* watches: no retries, no rate limit */
};

struct tn_kube_response {
  long status;        /* HTTP status */
  struct tn_buf body; /* the body when not streamed (always the body of a non-2xx answer) */
  double retry_after_s;
};

void tn_kube_response_init(struct tn_kube_response *r);
void tn_kube_response_cleanup(struct tn_kube_response *r);

/* Performs a request synchronously (the calling thread sleeps; the transport thread does the
 * I/O on the shared connection). Applies the QPS/burst limiter (unless no_retry), retries 429
 * (honouring Retry-After) and, for idempotent verbs, 5xx and connection failures with
 * exponential backoff (5 attempts). Returns 0 for a 2xx answer; otherwise the error decoded
 * from the Status body (see tn_kube_status_error) with resp still holding the answer. */
int tn_kube_do(struct tn_kube *k, const struct tn_kube_request *req, struct tn_kube_response *resp,
               struct tn_error *err);

/* Appends key=value (both URL-escaped) to a query string buffer, with '&' as needed. */
int tn_kube_query_add(struct tn_buf *q, const char *key, const char *value);

/* The retry policy of tn_kube_do, pure (exported for its tests). attempt is 1-based; status is
 * the HTTP status, or 0 when the connection failed, in which case sent says whether any byte
 * of the request had been written. Returns whether to try again, and after *delay_s seconds
 * (retry_after_s from the server when > 0, else exponential backoff 0.25 s * 2^(attempt-1),
 * at most 4 s). Retried: 429 for every verb; 5xx and connection failures for GET, HEAD, PUT,
 * DELETE and apply PATCH; connection failures before any byte was sent for every verb; never
 * no_retry requests, never past TN_KUBE_MAX_ATTEMPTS. */
#define TN_KUBE_MAX_ATTEMPTS 5
bool tn_kube_should_retry(const struct tn_kube_request *req, int attempt, long status, bool sent,
                          double retry_after_s, double *delay_s);

/* Turns a non-2xx answer into an error: code by HTTP status and Status.reason (404 ->
 * TN_ENOTFOUND, 409 Conflict -> TN_ECONFLICT, 409 AlreadyExists -> TN_EEXISTS, 410 -> TN_EGONE,
 * 401/403 -> TN_EFORBIDDEN, 400/422 -> TN_EINVALID, 429 -> TN_ETHROTTLED, 5xx ->
 * TN_EUNAVAILABLE, else TN_EAPI), with message, reason, details.causes and
 * details.retryAfterSeconds. A body that is not a Status still yields a useful message.
 * Pure. Returns the code. */
int tn_kube_status_error(long http_status, const char *body, size_t len, struct tn_error *err);
/* (http_status <= 0 takes the code from the Status itself: watch ERROR events carry one.) */

/* ---- typed verbs (all synchronous, objects as jansson values) ------------------------------ */

/* Out parameters receive a new reference (json_decref it); may be NULL to discard. Input
 * objects are borrowed. ns is ignored for cluster-scoped resources. */
int tn_kube_get(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name, json_t **out,
                struct tn_error *err);

struct tn_list_opts {
  const char *label_selector;
  const char *field_selector;
  long limit;                 /* 0 = no paging */
  const char *continue_token; /* from the previous page's metadata.continue */
  const char *resource_version;
};
/* One page of a list (a *List object). */
int tn_kube_list(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const struct tn_list_opts *opts,
                 json_t **out, struct tn_error *err);
int tn_kube_create(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, json_t *obj, json_t **out,
                   struct tn_error *err);
/* PUT with the object's metadata.resourceVersion as precondition: TN_ECONFLICT when stale.
 * subresource NULL or "status". */
int tn_kube_update(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, json_t *obj,
                   const char *subresource, json_t **out, struct tn_error *err);
/* JSON merge patch (application/merge-patch+json). */
int tn_kube_merge_patch(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name,
                        json_t *patch, const char *subresource, json_t **out, struct tn_error *err);
/* Server-side apply (application/apply-patch+yaml; JSON is YAML) with fieldManager=field_manager
 * and force=true when force. obj must carry apiVersion, kind and metadata.name. */
int tn_kube_apply(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, json_t *obj,
                  const char *field_manager, bool force, const char *subresource, json_t **out,
                  struct tn_error *err);

struct tn_delete_opts {
  const char *precondition_uid;
  const char *precondition_resource_version;
  const char *propagation_policy; /* "Foreground", "Background", "Orphan" or NULL */
};
int tn_kube_delete(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name,
                   const struct tn_delete_opts *opts, struct tn_error *err);

/* The field manager the operator uses for every write. */
#define TN_FIELD_MANAGER "tenancy-operator"

#endif
