/* admission.h - the validating admission webhook for tenancy.dev Tenants: AdmissionReview v1 in,
 * the policy evaluator's decision out (plus external-id uniqueness and the delete guard), served
 * over TLS with a certificate from a Secret, from files, or generated with a private CA, and
 * registered as the ValidatingWebhookConfiguration. See docs/internals/admission.md. */
#ifndef TN_CONVERGE_ADMISSION_H
#define TN_CONVERGE_ADMISSION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "kube/store.h"
#include "util/error.h"

struct tn_kube;
struct tn_metrics;
struct tn_metric;

#define TN_ADMISSION_PATH "/validate-tenancy-dev-v1alpha1" /* the webhook's URL path */
#define TN_ADMISSION_CONFIGURATION "tenancy-operator"      /* the ValidatingWebhookConfiguration */
#define TN_ADMISSION_WEBHOOK "tenants.tenancy.dev"         /* its webhook's name (in kubectl's messages) */
#define TN_ADMISSION_DEFAULT_ADDRESS ":9443"

/* The tenants informer index the external-id lookup wants: values "<system>=<id>" (system is a
 * DNS label, so the first '=' splits them). */
#define TN_INDEX_EXTERNAL_ID "externalId"

/* The index function of TN_INDEX_EXTERNAL_ID (a tn_store_index_fn; ud unused): one value
 * "<system>=<id>" per spec.externalIds entry. The cached tenant must keep spec.externalIds,
 * spec.state and metadata.name. */
int tn_admission_external_id_index(const json_t *obj, void *ud, struct tn_index_values *out);

/* Where the webhook reads Plans, Regions, policies and other tenants. Every function runs on the
 * HTTP service thread for every review, so in the operator it reads informer caches (tests may
 * call the API server). On success it returns 0 and *out is a new reference (json_decref it).
 * A failure (e.g. caches not synced) denies the request (fail closed) with code 503 and its
 * message. A NULL function reads as an empty list. */
struct tn_admission_lookups {
  /* every TenancyPolicy object (a JSON array) */
  int (*list_policies)(void *ud, json_t **out, struct tn_error *err);
  /* every Region object, spec.databaseServers included (a JSON array) */
  int (*list_regions)(void *ud, json_t **out, struct tn_error *err);
  /* the Tenant objects whose spec.externalIds[system] is id (a JSON array, maybe empty), e.g.
   * tn_informer_list_by_index(tenants, TN_INDEX_EXTERNAL_ID, "<system>=<id>") */
  int (*tenants_by_external_id)(void *ud, const char *system, const char *id, json_t **out,
                                struct tn_error *err);
  void *ud; /* borrowed */
  /* MIGRATION (issue 16): every TenantMigration object (a JSON array), to refuse a second one of
   * a tenant while one runs. NULL: not checked. */
  int (*list_migrations)(void *ud, json_t **out, struct tn_error *err);
};

/* One reviewed Tenant request, as the hooks hear of it. Everything borrowed for the call. */
struct tn_admission_record {
  const char *request_uid;  /* request.uid: the API server's id of this request */
  const char *actor;        /* request.userInfo.username ("" when absent) */
  const char *operation;    /* "CREATE", "UPDATE" or "DELETE" */
  const char *name;         /* the tenant id */
  const json_t *object;     /* the tenant as it would be stored (CREATE, UPDATE); NULL on DELETE */
  const json_t *old_object; /* the stored tenant (UPDATE, DELETE); NULL on CREATE */
  bool allowed;
  const char *message; /* the denial message; "" when allowed */
  bool dry_run;        /* request.dryRun: nothing will be stored */
};

/* Called on the HTTP service thread before the answer is sent: copy what you need and return
 * (enqueue; never block, never call the API server). */
struct tn_admission_hooks {
  /* Every allowed review of a Tenant that is not a dry run. The review's userInfo is only what
   * the client of the webhook port claims (anyone who reaches the port can POST a review): never
   * record it as who asked; the audit trail takes the actor from the tenant's annotations, which
   * the API server writes (converge/reconciler.h). Admitted is not yet stored: a later admission step or the
   * storage can still fail the request, so match it to the stored object (name + metadata.generation). */
  void (*on_admitted)(void *ud, const struct tn_admission_record *rec);
  /* Every denied review of a Tenant, dry runs included (rec->dry_run says). */
  void (*on_denied)(void *ud, const struct tn_admission_record *rec);
  void *ud; /* borrowed */
};

/* Reviews one AdmissionReview (admission.k8s.io/v1) request body: Tenants (CREATE, UPDATE,
 * DELETE) are decided as docs/policy.md says; any other resource or a subresource is allowed
 * untouched. lookups and hooks are borrowed and may be NULL. Returns 0 with *response a new
 * AdmissionReview (json_decref it) echoing request.uid with allowed, and when denied
 * status {code 403 (policy, delete guard, external ids), 422 (a tenant that cannot be read) or
 * 503 (a lookup failed), reason, message}, plus warnings when there are any. Returns TN_EINVALID
 * (err says why; *response NULL) when the body is not an AdmissionReview v1 with a request uid:
 * answer HTTP 400. -ENOMEM when out of memory. No I/O besides the lookups; no clock. */
int tn_admission_review(const char *request_json, size_t len, const struct tn_admission_lookups *lookups,
                        const struct tn_admission_hooks *hooks, json_t **response, struct tn_error *err);

/* ---- the server ------------------------------------------------------------------------------- */

struct tn_admission_config {
  const char *bind_address; /* NULL: ":9443"; "127.0.0.1:0" picks a free port */
  /* The name the API server dials: the SAN of a generated certificate and the host of the local
   * URL. NULL: "<service>.<namespace>.svc" with service_name, else "127.0.0.1". An IP literal
   * becomes an IP SAN, anything else a DNS SAN. */
  const char *host;

  /* The serving certificate, the first of these that is set:
   * 1. cert_file + key_file: PEM files (e.g. a mounted kubernetes.io/tls Secret); the caBundle is
   *    ca_file when set, else cert_file itself.
   * 2. secret_namespace + secret_name: a kubernetes.io/tls Secret read through kube (tls.crt,
   *    tls.key, and ca.crt for the caBundle, else tls.crt). When it does not exist it is created
   *    with a generated CA and certificate, so every replica serves the same CA (a replica that
   *    loses the creation race reads the winner's).
   * 3. otherwise a private CA and a serving certificate (1 year, ECDSA P-256) are generated.
   * Files of 2 and 3 are written into cert_dir (NULL: a new private directory under $TMPDIR,
   * removed by tn_admission_free); the key file has mode 0600. */
  const char *cert_file, *key_file, *ca_file;
  const char *secret_namespace, *secret_name;
  const char *cert_dir;
  struct tn_kube *kube; /* borrowed; must outlive the webhook (reloads of 2, re-registration) */
  /* Reload while running: 1. the files are looked at (stat) every reload_interval_s (0: 10 s) and
   * served again when either changed; 2. the Secret is read every reload_interval_s (0: 60 s),
   * served again when it changed, and its serving certificate renewed (same CA) when it is ours and
   * expires within 30 days. New TLS handshakes get the new identity; when the CA changed and
   * manage_configuration is set, the configuration is registered again with the new caBundle.
   * < 0: no reload. 3. (generated) is not reloaded. */
  double reload_interval_s;
  bool manage_configuration;

  /* Registration (tn_admission_register). */
  const char *configuration_name; /* NULL: TN_ADMISSION_CONFIGURATION */
  const char *url; /* clientConfig.url; NULL: https://HOST:PORT/PATH unless service_name is set */
  const char *service_namespace, *service_name; /* in-cluster: clientConfig.service */
  int service_port;                             /* 0: 443 */
  const char *failure_policy;                   /* NULL: "Fail" (see docs/policy.md); or "Ignore" */
  int timeout_seconds;                          /* 0: 5 (1..30) */
  const json_t *object_selector; /* copied; NULL: every Tenant (tests scope the webhook to a label) */

  struct tn_admission_lookups lookups; /* copied; the functions' ud must outlive the webhook */
  struct tn_admission_hooks hooks;     /* copied; likewise */
  /* Borrowed, may be NULL; must outlive the webhook. Registers tn_admission_reviews_total
   * {operation,result} (result allowed, denied or error) and, through tn_policy_evaluation_metric,
   * tn_policy_evaluation_seconds{caller="admission"}. */
  struct tn_metrics *metrics;
};

struct tn_admission; /* opaque */

/* Prepares the serving certificate (see the config) and the server; nothing is bound yet.
 * Strings of cfg are copied. Returns 0, or TN_ECONFIG (bad config), a kube error (the Secret),
 * TN_ETRANSPORT (OpenSSL, files) with a message in err. Free with tn_admission_free. */
int tn_admission_new(const struct tn_admission_config *cfg, struct tn_admission **out, struct tn_error *err);

/* Binds and starts serving POST TN_ADMISSION_PATH on the HTTP server's own thread. Once. */
int tn_admission_start(struct tn_admission *adm, struct tn_error *err);

/* The bound port (after start), else 0. */
int tn_admission_port(const struct tn_admission *adm);

/* The CA bundle (PEM) clients verify the serving certificate with; owned by adm, valid until the
 * next reload that changes it (tests read it before anything reloads). */
const char *tn_admission_ca_pem(const struct tn_admission *adm);

/* The ValidatingWebhookConfiguration as registered (after start when it carries a local URL):
 * one webhook TN_ADMISSION_WEBHOOK on tenancy.dev/v1alpha1 tenants, CREATE/UPDATE/DELETE,
 * scope Cluster, matchPolicy Equivalent, sideEffects None, admissionReviewVersions [v1],
 * timeoutSeconds, failurePolicy, clientConfig with the caBundle. A new object (json_decref it),
 * NULL when out of memory. */
json_t *tn_admission_configuration(const struct tn_admission *adm);

/* Creates or updates (server-side apply, field manager tenancy-operator) the configuration on
 * the cluster. Needs RBAC: admissionregistration.k8s.io validatingwebhookconfigurations get,
 * create, patch. Returns 0 or the API error. */
int tn_admission_register(struct tn_admission *adm, struct tn_kube *kube, struct tn_error *err);

/* Deletes the configuration (NotFound is success): a local operator stopping for good, tests. */
int tn_admission_unregister(struct tn_admission *adm, struct tn_kube *kube, struct tn_error *err);

/* Stops the server (any thread but a handler), removes generated files it owns, frees. Accepts
 * NULL. It does not unregister: with failurePolicy Fail, Tenant writes are refused until it
 * serves again (nothing outside tenancy.dev/tenants is affected). */
void tn_admission_free(struct tn_admission *adm);

/* ---- certificate lifetimes (pure) ------------------------------------------------------------- */

/* The notAfter of the first certificate in pem, as seconds since the epoch. Returns 0, or
 * TN_EINVALID when pem holds no certificate. tenancy_webhook_certificate_expiry_timestamp_seconds
 * exports it for the certificate being served. */
int tn_webhook_cert_not_after(const char *pem, double *not_after);
/* Whether a certificate valid until not_after must be renewed at `now` (seconds since the epoch):
 * once fewer than renew_before_s seconds are left (the operator renews its own 30 days ahead). */
bool tn_webhook_cert_needs_renewal(double not_after, double now, double renew_before_s);

/* The policy evaluation latency histogram tn_policy_evaluation_seconds{caller} (buckets from
 * 10 µs to 50 ms), registered once in m; the controller registers it through this too so the
 * buckets agree. NULL when m is NULL. */
struct tn_metric *tn_policy_evaluation_metric(struct tn_metrics *m);

#endif
