/* tenant_keys.h - the keys step of the tenant reconcile: each tenant's data keys, wrapped by a
 * pluggable KMS and kept in the Secret <namespace>/tenant-keys-<tenant> (every version, so data
 * written before a rotation still unwraps); rotation on demand and on schedule, rewrap after a
 * KEK rotation, destruction when the tenant is deleted (crypto-shredding); and the local KMS
 * whose KEKs live in a Secret. See docs/keys.md. */
#ifndef TN_CONVERGE_TENANT_KEYS_H
#define TN_CONVERGE_TENANT_KEYS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "kube/client.h"
#include "tenancy/kms.h"
#include "util/error.h"

#define TN_KEYS_NAMESPACE "tenancy-system"   /* where key Secrets live unless configured */
#define TN_KEYS_SECRET_PREFIX "tenant-keys-" /* + tenant id */
#define TN_KEK_SECRET "tenancy-kek"          /* the local KMS's KEKs */
#define TN_SECRET_TYPE_TENANT_KEYS "tenancy.dev/tenant-keys"
#define TN_SECRET_TYPE_KEK "tenancy.dev/kek"

/* On the Tenant: set a new value to rotate its data key now. */
#define TN_ANNOTATION_ROTATE_KEYS "tenancy.dev/rotate-keys"
/* On the tenant-keys Secret: the current version, the rotate-keys value handled, and when the
 * current version was made (RFC 3339). */
#define TN_ANNOTATION_KEYS_VERSION "tenancy.dev/keys-version"
#define TN_ANNOTATION_KEYS_ROTATED_FOR "tenancy.dev/keys-rotated-for"
#define TN_ANNOTATION_KEYS_ROTATED_AT "tenancy.dev/keys-rotated-at"

/* The condition type this step reports, and the audit actions of its changes. */
#define TN_KEYS_CONDITION "KeysReady"
#define TN_KEYS_ACTION_CREATE "key.create"   /* the first data key of a tenant */
#define TN_KEYS_ACTION_ROTATE "key.rotate"   /* a new version (on demand or on schedule) */
#define TN_KEYS_ACTION_REWRAP "key.rewrap"   /* existing versions rewrapped with the current KEK */
#define TN_KEYS_ACTION_DESTROY "key.destroy" /* every version deleted: crypto-shredding */

/* One change the step is about to make (or made), for the audit trail. Borrowed for the call. */
struct tn_tenant_keys_action {
  const char *action;         /* TN_KEYS_ACTION_* */
  const char *tenant;         /* the tenant id: target "tenant/<id>" */
  const char *correlation_id; /* the same for every action of one write, and for its retries */
  long long version_before;   /* current data key version before (0: none) */
  long long version_after;    /* after (0: none left) */
  const char *details;        /* JSON object text, e.g. {"trigger":"on-demand","kek":"kek-2",...} */
};

/* Records a key change in the audit trail. Called with outcome TN_AUDIT_STARTED before the
 * change: a non-zero return stops it (nothing is written; the step answers retry). Called again
 * with TN_AUDIT_SUCCEEDED or TN_AUDIT_FAILED once the write's result is known (return ignored). */
typedef int (*tn_tenant_keys_audit_fn)(void *ud, const struct tn_tenant_keys_action *a, const char *outcome,
                                       struct tn_error *err);

/* Configuration of the step; everything borrowed; build one per call if it must vary. */
struct tn_tenant_keys_config {
  const char *namespace;             /* NULL: TN_KEYS_NAMESPACE */
  const struct tn_kms_provider *kms; /* required: wraps and unwraps data keys */
  double rotation_period_s;          /* > 0: a new version when the current one is this old */
  double now;                        /* wall-clock seconds; 0: now (tests pass a later instant) */
  tn_tenant_keys_audit_fn audit;     /* NULL: changes are not audited */
  void *audit_ud;
};

struct tn_tenant_keys_result {
  const char *status;      /* KeysReady: "True" or "False" (static); NULL: nothing to report */
  char reason[64];         /* Ready, KeysLost, KeysInvalid, KMSUnavailable, Conflict, ... */
  char message[768];       /* for people; never key material */
  long long version;       /* the current data key version: status.keys.version (0: none) */
  char kek[TN_KMS_ID_MAX]; /* the KEK that wraps the current version */
  char rotated_at[32];     /* when the current version was made (RFC 3339) */
  bool created;            /* the first key was made in this call */
  bool rotated;            /* a new version was added in this call */
  int rewrapped;           /* versions rewrapped with the current KEK in this call */
  bool destroyed;          /* teardown deleted the Secret */
  char correlation_id[37]; /* of this call's change ("" when nothing changed) */
  json_t *keys;            /* status.keys to write (new reference; json_decref), NULL: keep */
  bool retry;              /* transient failure: retry with backoff */
  double requeue_after_s;  /* > 0: come back then (the next scheduled rotation) */
  int writes;              /* Kubernetes writes made by the step (not by the KMS) */
};

void tn_tenant_keys_result_cleanup(struct tn_tenant_keys_result *r); /* accepts NULL */

/* Ensures the tenant (tenant_obj: the Tenant as read, borrowed; metadata.name, metadata.uid,
 * metadata.annotations and status.keys are read) has a current data key: creates the first one,
 * adds a version when TN_ANNOTATION_ROTATE_KEYS has a value not handled yet or the current
 * version is older than cfg->rotation_period_s, and rewraps versions wrapped with a KEK other
 * than the KMS's current one. Every change is one write of the Secret, audited before it is
 * made. An unchanged tenant costs one GET and no write. Initialises *out (clean it up in every
 * case). Returns 0 (KeysReady True) or a negative code with err and out (KeysReady False,
 * retry for transient failures) filled. Secret missing while status.keys.version > 0 is
 * TN_ENOTFOUND "KeysLost": keys are never silently regenerated. */
int tn_tenant_keys_reconcile(struct tn_kube *kube, const struct tn_tenant_keys_config *cfg,
                             json_t *tenant_obj, struct tn_tenant_keys_result *out, struct tn_error *err);

/* Deletes the tenant's key Secret (audited as TN_KEYS_ACTION_DESTROY before): call it when the
 * tenant reaches Deleted and when a Tenant is deleted (finalizer). Afterwards no data encrypted
 * with its keys can be read again. A missing Secret, or one that is not of type
 * TN_SECRET_TYPE_TENANT_KEYS (not ours: left alone), is success with out->status NULL.
 * Returns 0 or a negative code (out->retry when transient). */
int tn_tenant_keys_teardown(struct tn_kube *kube, const struct tn_tenant_keys_config *cfg, json_t *tenant_obj,
                            struct tn_tenant_keys_result *out, struct tn_error *err);

/* Unwraps the data key `version` (0: the current one) of tenant into key[TN_KMS_KEY_LEN];
 * *version_out (may be NULL) is the version unwrapped. Wipe key (OPENSSL_cleanse) after use.
 * Errors: TN_ENOTFOUND (no Secret or no such version), TN_EINVALID (altered, swapped from
 * another tenant or version, wrong KEK), the KMS's errors. */
int tn_tenant_keys_unwrap(struct tn_kube *kube, const struct tn_tenant_keys_config *cfg, const char *tenant,
                          long long version, unsigned char key[TN_KMS_KEY_LEN], long long *version_out,
                          struct tn_error *err);

/* The context every data key is wrapped under: "tenancy.dev/tenant-key\ntenant=<id>\nversion=<v>"
 * into aad[n]. An envelope moved to another tenant or version no longer unwraps. */
void tn_tenant_keys_aad(const char *tenant, long long version, char *aad, size_t n);

/* ---- the local KMS: KEKs in a Secret ------------------------------------------------------------- */

/* The Secret <namespace>/<name> (type TN_SECRET_TYPE_KEK) holds data keys kek-<n> (32 random
 * bytes each) and current (the decimal n new wraps use). It is created with kek-1 on first use
 * when missing, and never rewritten except by tn_kek_secret_rotate; a Secret that exists but
 * cannot be read (a KEK missing or not 32 bytes) is an error, never replaced (that would lose
 * every data key). Thread-safe: one mutex protects the cached keyring and the reload time. */
struct tn_kek_secret;

struct tn_kek_secret_options {
  const char *namespace; /* NULL: TN_KEYS_NAMESPACE */
  const char *name;      /* NULL: TN_KEK_SECRET */
  double refresh_s;      /* reread the Secret when the cache is this old; 0: 60 s, < 0: never */
};

/* Makes the provider (nothing is read yet: the first call reads or creates the Secret). kube
 * is borrowed and must outlive *out; opts may be NULL and is copied. tn_kek_secret_free it. */
int tn_kek_secret_new(struct tn_kube *kube, const struct tn_kek_secret_options *opts,
                      struct tn_kek_secret **out, struct tn_error *err);
void tn_kek_secret_free(struct tn_kek_secret *s); /* wipes the keys; accepts NULL */
/* Its KMS interface (name "local"), valid while s lives. */
const struct tn_kms_provider *tn_kek_secret_provider(struct tn_kek_secret *s);
/* Adds kek-<n+1> (fresh random bytes) and makes it current in one write (conflicts with a
 * concurrent writer: TN_ECONFLICT, try again). Old KEKs stay: envelopes made with them still
 * open, and the reconcile rewraps each tenant's versions with the new one. new_id may be NULL. */
int tn_kek_secret_rotate(struct tn_kek_secret *s, char *new_id, size_t n, struct tn_error *err);
/* Writes made to the KEK Secret so far (creation and rotations). */
long tn_kek_secret_writes(struct tn_kek_secret *s);

#endif
