/* kubeconfig.c - loading the client configuration: a kubeconfig file (YAML read with libyaml
 * into a jansson tree, then validated field by field) or the in-cluster service account. */
#include "kube/client.h"

#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define KUBECONFIG_MAX_BYTES (16u << 20) /* a kubeconfig larger than this is refused */
#define YAML_MAX_DEPTH 64                /* nesting (and alias) depth accepted in a document */
/* Aliases may make the tree larger than the document (each use of an anchor copies its node):
 * a "billion laughs" file of a few hundred bytes expands to 10^9 nodes. The converted tree may
 * hold at most this many nodes more than the document itself has. */
#define YAML_MAX_ALIAS_EXPANSION 4096
#define DEFAULT_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* ---- YAML -> jansson ---------------------------------------------------------------------- */

static bool scalar_is(const char *s, const char *const *words) {
  for (; *words; words++)
    if (strcmp(s, *words) == 0)
      return true;
  return false;
}

/* A scalar as YAML 1.1 resolves it (what sigs.k8s.io/yaml, kubectl's parser, does): quoted
 * scalars are strings; plain ones may be null, a boolean, an integer or a float. */
static json_t *yaml_scalar_to_json(const yaml_node_t *n) {
  const char *s = (const char *)n->data.scalar.value;
  size_t len = n->data.scalar.length;
  if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return json_stringn(s, len);
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
  static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL};
  static const char *const falses[] = {"false", "False", "FALSE", "no",  "No",
                                       "NO",    "off",   "Off",   "OFF", NULL};
  if (scalar_is(s, nulls))
    return json_null();
  if (scalar_is(s, trues))
    return json_true();
  if (scalar_is(s, falses))
    return json_false();
  if (len > 0 && strlen(s) == len) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == 0 && end && *end == '\0' && (s[0] == '-' || s[0] == '+' || (s[0] >= '0' && s[0] <= '9')))
      return json_integer(v);
    errno = 0;
    double d = strtod(s, &end);
    if (errno == 0 && end && *end == '\0' && strpbrk(s, "0123456789") && !strpbrk(s, "xXnN"))
      return json_real(d);
  }
  return json_stringn(s, len);
}

/* The conversion of one document: how many more nodes it may still produce. */
struct yaml_conv {
  yaml_document_t *doc;
  size_t budget;
  char *why;
  size_t why_n;
};

static json_t *yaml_node_to_json(struct yaml_conv *cv, yaml_node_t *n, int depth) {
  yaml_document_t *doc = cv->doc;
  char *why = cv->why;
  size_t why_n = cv->why_n;
  if (!n) {
    snprintf(why, why_n, "dangling node");
    return NULL;
  }
  if (depth > YAML_MAX_DEPTH) {
    snprintf(why, why_n, "nested deeper than %d levels (or a recursive alias)", YAML_MAX_DEPTH);
    return NULL;
  }
  if (cv->budget == 0) {
    snprintf(why, why_n,
             "aliases expand to more than %d nodes beyond the document's own (an alias bomb?); "
             "write the repeated parts out instead of using anchors",
             YAML_MAX_ALIAS_EXPANSION);
    return NULL;
  }
  cv->budget--;
  switch (n->type) {
  case YAML_SCALAR_NODE:
    return yaml_scalar_to_json(n);
  case YAML_SEQUENCE_NODE: {
    json_t *a = json_array();
    for (yaml_node_item_t *it = n->data.sequence.items.start; a && it < n->data.sequence.items.top; it++) {
      json_t *v = yaml_node_to_json(cv, yaml_document_get_node(doc, *it), depth + 1);
      if (!v || json_array_append_new(a, v)) {
        json_decref(a);
        return NULL;
      }
    }
    return a;
  }
  case YAML_MAPPING_NODE: {
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; o && p < n->data.mapping.pairs.top; p++) {
      yaml_node_t *kn = yaml_document_get_node(doc, p->key);
      if (!kn || kn->type != YAML_SCALAR_NODE) {
        snprintf(why, why_n, "line %zu: mapping keys must be scalars", kn ? kn->start_mark.line + 1 : 0);
        json_decref(o);
        return NULL;
      }
      json_t *v = yaml_node_to_json(cv, yaml_document_get_node(doc, p->value), depth + 1);
      if (!v || json_object_setn_new(o, (const char *)kn->data.scalar.value, kn->data.scalar.length, v)) {
        json_decref(o);
        return NULL;
      }
    }
    return o;
  }
  default:
    snprintf(why, why_n, "empty node");
    return NULL;
  }
}

/* Parses the first YAML document of text into a jansson value (new reference). */
static int yaml_to_json(const char *text, size_t len, json_t **out, char *why, size_t why_n) {
  yaml_parser_t parser;
  yaml_document_t doc;
  bool have_doc = false;
  int rc = -EINVAL;
  *out = NULL;
  if (!yaml_parser_initialize(&parser)) {
    snprintf(why, why_n, "cannot initialise the YAML parser");
    return -ENOMEM;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    snprintf(why, why_n, "invalid YAML at line %zu column %zu: %s%s%s", parser.problem_mark.line + 1,
             parser.problem_mark.column + 1, parser.problem ? parser.problem : "syntax error",
             parser.context ? " " : "", parser.context ? parser.context : "");
    goto out;
  }
  have_doc = true;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root) {
    snprintf(why, why_n, "the file is empty");
    goto out;
  }
  struct yaml_conv cv = {.doc = &doc,
                         .budget = (size_t)(doc.nodes.top - doc.nodes.start) + YAML_MAX_ALIAS_EXPANSION,
                         .why = why,
                         .why_n = why_n};
  *out = yaml_node_to_json(&cv, root, 0);
  if (*out)
    rc = 0;
out:
  if (have_doc)
    yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return rc;
}

/* ---- helpers ------------------------------------------------------------------------------ */

void tn_kube_config_cleanup(struct tn_kube_config *c) {
  if (!c)
    return;
  char **strs[] = {&c->server,     &c->ca_file,         &c->ca_data,    &c->cert_file,
                   &c->cert_data,  &c->key_file,        &c->key_data,   &c->token,
                   &c->token_file, &c->tls_server_name, &c->user_agent, &c->namespace};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
    if (*strs[i] && (strs[i] == &c->token || strs[i] == &c->key_data))
      OPENSSL_cleanse(*strs[i], strlen(*strs[i])); /* secrets do not linger in freed memory */
    free(*strs[i]);
  }
  memset(c, 0, sizeof *c);
}

static int read_file(const char *path, size_t cap, struct tn_buf *out) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -errno;
  int rc = 0;
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    if ((rc = tn_buf_append(out, chunk, n)) != 0)
      break;
  if (!rc && ferror(f))
    rc = -EIO;
  fclose(f);
  return rc;
}

/* Decodes standard base64 (padding required, whitespace ignored) into a NUL-terminated string.
 * Returns NULL when s is not valid base64. */
static char *base64_decode(const char *s) {
  size_t len = strlen(s);
  unsigned char *out = malloc(len / 4 * 3 + 4);
  if (!out)
    return NULL;
  EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
  int n = 0, m = 0;
  bool ok = ctx != NULL && len <= INT_MAX;
  if (ok) {
    EVP_DecodeInit(ctx);
    ok = EVP_DecodeUpdate(ctx, out, &n, (const unsigned char *)s, (int)len) >= 0 &&
         EVP_DecodeFinal(ctx, out + n, &m) >= 0;
  }
  EVP_ENCODE_CTX_free(ctx);
  if (!ok || memchr(out, '\0', (size_t)(n + m))) {
    free(out);
    return NULL;
  }
  out[n + m] = '\0';
  return (char *)out;
}

enum pem_kind { PEM_CERTS, PEM_KEY };

/* Whether pem holds at least one certificate (PEM_CERTS) or a private key (PEM_KEY). */
static bool pem_is(const char *pem, enum pem_kind kind) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  bool ok = false;
  if (b) {
    if (kind == PEM_CERTS) {
      X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
      ok = x != NULL;
      X509_free(x);
    } else {
      EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
      ok = k != NULL;
      EVP_PKEY_free(k);
    }
    BIO_free(b);
  }
  ERR_clear_error();
  return ok;
}

/* path made absolute against dir (when relative); malloc'd. */
static char *resolve_path(const char *dir, const char *path) {
  if (path[0] == '/' || !dir || !*dir)
    return strdup(path);
  struct tn_buf b;
  tn_buf_init(&b, 2 * PATH_MAX);
  if (tn_buf_printf(&b, "%s/%s", dir, path)) {
    tn_buf_cleanup(&b);
    return NULL;
  }
  return tn_buf_take(&b);
}

/* The directory of path as an absolute path; malloc'd. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  char cwd[PATH_MAX];
  struct tn_buf b;
  tn_buf_init(&b, 2 * PATH_MAX);
  int rc = 0;
  if (path[0] != '/') {
    if (!getcwd(cwd, sizeof cwd))
      goto fail;
    rc = tn_buf_appends(&b, cwd);
    if (!rc && slash)
      rc = tn_buf_printf(&b, "/%.*s", (int)(slash - path), path);
  } else {
    rc = tn_buf_append(&b, path, slash == path ? 1 : (size_t)(slash - path));
  }
  if (rc)
    goto fail;
  return tn_buf_take(&b);
fail:
  tn_buf_cleanup(&b);
  return NULL;
}

/* ---- kubeconfig --------------------------------------------------------------------------- */

/* What we are reading: for error messages. */
struct kc_ctx {
  const char *file;
  const char *dir; /* absolute directory of the file */
  struct tn_error *err;
};

static int kc_fail(struct kc_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int kc_fail(struct kc_ctx *c, const char *fmt, ...) {
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return tn_error_set(c->err, TN_ECONFIG, "kubeconfig %s: %s", c->file, msg);
}

/* The entry of list `section` (clusters, contexts, users) whose name is `name`; its `inner`
 * member (cluster, context, user) is returned in *body. */
static int kc_find(struct kc_ctx *c, json_t *root, const char *section, const char *inner, const char *name,
                   const char *referrer, json_t **body) {
  json_t *list = json_object_get(root, section);
  if (list && !json_is_array(list) && !json_is_null(list))
    return kc_fail(c, "%s: must be a list", section);
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) {
    json_t *n = json_object_get(e, "name");
    if (!json_is_string(n))
      return kc_fail(c, "%s[%zu].name: missing or not a string", section, i);
    if (strcmp(json_string_value(n), name) != 0)
      continue;
    *body = json_object_get(e, inner);
    if (!json_is_object(*body))
      return kc_fail(c, "%s[%s].%s: missing or not a mapping", section, name, inner);
    return 0;
  }
  return kc_fail(c, "%s: no entry named \"%s\" in %s", referrer, name, section);
}

/* Reads an optional string field into *out (malloc'd; NULL when absent or empty). */
static int kc_string(struct kc_ctx *c, json_t *obj, const char *where, const char *field, char **out) {
  *out = NULL;
  json_t *v = json_object_get(obj, field);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return kc_fail(c, "%s.%s: must be a string", where, field);
  if (json_string_length(v) == 0)
    return 0;
  if (strlen(json_string_value(v)) != json_string_length(v))
    return kc_fail(c, "%s.%s: contains a NUL byte", where, field);
  *out = strdup(json_string_value(v));
  return *out ? 0 : tn_error_set(c->err, -ENOMEM, "out of memory");
}

/* A file-or-data pair: `file_field` (a path, resolved against the kubeconfig's directory and
 * checked readable) or `data_field` (base64 of PEM of the given kind). Both is an error. */
static int kc_file_or_data(struct kc_ctx *c, json_t *obj, const char *where, const char *file_field,
                           const char *data_field, enum pem_kind kind, char **file_out, char **data_out) {
  char *file = NULL, *b64 = NULL;
  int rc = kc_string(c, obj, where, file_field, &file);
  if (!rc)
    rc = kc_string(c, obj, where, data_field, &b64);
  if (rc)
    goto out;
  if (file && b64) {
    rc = kc_fail(c, "%s: both %s and %s are set; keep one", where, file_field, data_field);
    goto out;
  }
  if (file) {
    *file_out = resolve_path(c->dir, file);
    if (!*file_out) {
      rc = tn_error_set(c->err, -ENOMEM, "out of memory");
      goto out;
    }
    if (access(*file_out, R_OK) != 0) {
      rc = kc_fail(c, "%s.%s: cannot read %s: %s", where, file_field, *file_out, strerror(errno));
      goto out;
    }
  }
  if (b64) {
    *data_out = base64_decode(b64);
    if (!*data_out) {
      rc = kc_fail(c, "%s.%s: not valid base64", where, data_field);
      goto out;
    }
    if (!pem_is(*data_out, kind)) {
      rc = kc_fail(c, "%s.%s: the decoded data is not a PEM %s", where, data_field,
                   kind == PEM_CERTS ? "certificate" : "private key");
      goto out;
    }
  }
out:
  free(file);
  if (b64)
    OPENSSL_cleanse(b64, strlen(b64));
  free(b64);
  return rc;
}

static int kc_bool(struct kc_ctx *c, json_t *obj, const char *where, const char *field, bool *out) {
  json_t *v = json_object_get(obj, field);
  *out = false;
  if (!v || json_is_null(v))
    return 0;
  if (json_is_boolean(v)) {
    *out = json_is_true(v);
    return 0;
  }
  if (json_is_string(v) &&
      (strcasecmp(json_string_value(v), "true") == 0 || strcasecmp(json_string_value(v), "false") == 0)) {
    *out = strcasecmp(json_string_value(v), "true") == 0;
    return 0;
  }
  return kc_fail(c, "%s.%s: must be true or false", where, field);
}

static int kc_cluster(struct kc_ctx *c, json_t *cl, const char *name, struct tn_kube_config *out) {
  char where[300];
  snprintf(where, sizeof where, "clusters[%s].cluster", name);
  int rc = kc_string(c, cl, where, "server", &out->server);
  if (rc)
    return rc;
  if (!out->server)
    return kc_fail(c, "%s.server: missing (the API server's https:// URL)", where);
  if (strncasecmp(out->server, "https://", 8) != 0)
    return kc_fail(c, "%s.server: \"%s\" is not an https:// URL (TLS is required)", where, out->server);
  size_t n = strlen(out->server);
  while (n > 8 && out->server[n - 1] == '/')
    out->server[--n] = '\0';
  if ((rc = kc_file_or_data(c, cl, where, "certificate-authority", "certificate-authority-data", PEM_CERTS,
                            &out->ca_file, &out->ca_data)))
    return rc;
  if ((rc = kc_bool(c, cl, where, "insecure-skip-tls-verify", &out->insecure_skip_tls_verify)))
    return rc;
  if (out->insecure_skip_tls_verify && (out->ca_file || out->ca_data))
    return kc_fail(c, "%s: insecure-skip-tls-verify is set together with a certificate authority; keep one",
                   where);
  if ((rc = kc_string(c, cl, where, "tls-server-name", &out->tls_server_name)))
    return rc;
  if (json_object_get(cl, "proxy-url"))
    return kc_fail(c, "%s.proxy-url: proxies are not supported", where);
  return 0;
}

static int kc_user(struct kc_ctx *c, json_t *u, const char *name, struct tn_kube_config *out) {
  char where[300];
  snprintf(where, sizeof where, "users[%s].user", name);
  static const char *const unsupported[] = {"exec",      "auth-provider", "username",      "password", "as",
                                            "as-groups", "as-uid",        "as-user-extra", NULL};
  for (const char *const *f = unsupported; *f; f++)
    if (json_object_get(u, *f) && !json_is_null(json_object_get(u, *f)))
      return kc_fail(c, "%s.%s: not supported (use a client certificate or a bearer token)", where, *f);
  int rc;
  if ((rc = kc_file_or_data(c, u, where, "client-certificate", "client-certificate-data", PEM_CERTS,
                            &out->cert_file, &out->cert_data)))
    return rc;
  if ((rc = kc_file_or_data(c, u, where, "client-key", "client-key-data", PEM_KEY, &out->key_file,
                            &out->key_data)))
    return rc;
  bool have_cert = out->cert_file || out->cert_data, have_key = out->key_file || out->key_data;
  if (have_cert != have_key)
    return kc_fail(c, "%s: %s is set without %s", where, have_cert ? "client-certificate" : "client-key",
                   have_cert ? "client-key" : "client-certificate");
  if ((rc = kc_string(c, u, where, "token", &out->token)))
    return rc;
  char *tf = NULL;
  if ((rc = kc_string(c, u, where, "tokenFile", &tf)))
    return rc;
  if (tf) {
    out->token_file = resolve_path(c->dir, tf);
    free(tf);
    if (!out->token_file)
      return tn_error_set(c->err, -ENOMEM, "out of memory");
    if (access(out->token_file, R_OK) != 0)
      return kc_fail(c, "%s.tokenFile: cannot read %s: %s", where, out->token_file, strerror(errno));
  }
  return 0;
}

static int kc_parse(struct kc_ctx *c, json_t *root, const char *context, struct tn_kube_config *out) {
  if (!json_is_object(root))
    return kc_fail(c, "the document is not a mapping");
  json_t *kind = json_object_get(root, "kind");
  if (kind && !(json_is_string(kind) && strcmp(json_string_value(kind), "Config") == 0))
    return kc_fail(c, "kind: must be Config");
  const char *ctx_name = context;
  const char *ctx_ref = "the requested context";
  if (!ctx_name) {
    json_t *cur = json_object_get(root, "current-context");
    if (!json_is_string(cur) || json_string_length(cur) == 0)
      return kc_fail(c, "current-context: not set (name a context explicitly or set current-context)");
    ctx_name = json_string_value(cur);
    ctx_ref = "current-context";
  }
  json_t *ctx = NULL, *cl = NULL, *user = NULL;
  int rc = kc_find(c, root, "contexts", "context", ctx_name, ctx_ref, &ctx);
  if (rc)
    return rc;
  char where[300];
  snprintf(where, sizeof where, "contexts[%s].context", ctx_name);
  json_t *cl_name = json_object_get(ctx, "cluster"), *user_name = json_object_get(ctx, "user");
  if (!json_is_string(cl_name) || json_string_length(cl_name) == 0)
    return kc_fail(c, "%s.cluster: missing", where);
  char ref[340];
  snprintf(ref, sizeof ref, "%s.cluster", where);
  if ((rc = kc_find(c, root, "clusters", "cluster", json_string_value(cl_name), ref, &cl)))
    return rc;
  if ((rc = kc_cluster(c, cl, json_string_value(cl_name), out)))
    return rc;
  /* A context without a user is anonymous, as in kubectl. */
  if (user_name && !json_is_null(user_name)) {
    if (!json_is_string(user_name))
      return kc_fail(c, "%s.user: must be a string", where);
    if (json_string_length(user_name) > 0) {
      snprintf(ref, sizeof ref, "%s.user", where);
      if ((rc = kc_find(c, root, "users", "user", json_string_value(user_name), ref, &user)))
        return rc;
      if ((rc = kc_user(c, user, json_string_value(user_name), out)))
        return rc;
    }
  }
  return kc_string(c, ctx, where, "namespace", &out->namespace);
}

int tn_kube_config_parse(const char *text, size_t len, const char *name, const char *dir, const char *context,
                         struct tn_kube_config *out, struct tn_error *err) {
  json_t *root = NULL;
  int rc;
  char why[512] = "";
  memset(out, 0, sizeof *out);
  if (!name)
    name = "(memory)";
  if (len > KUBECONFIG_MAX_BYTES) {
    rc = tn_error_set(err, TN_ECONFIG, "kubeconfig %s: larger than 16 MiB", name);
    goto out;
  }
  if (yaml_to_json(text, len, &root, why, sizeof why)) {
    rc = tn_error_set(err, TN_ECONFIG, "kubeconfig %s: %s", name, why);
    goto out;
  }
  struct kc_ctx c = {.file = name, .dir = dir, .err = err};
  rc = kc_parse(&c, root, context, out);
out:
  if (rc)
    tn_kube_config_cleanup(out);
  json_decref(root);
  return rc;
}

int tn_kube_config_load(const char *path, const char *context, struct tn_kube_config *out,
                        struct tn_error *err) {
  struct tn_buf text, chosen;
  tn_buf_init(&text, KUBECONFIG_MAX_BYTES);
  tn_buf_init(&chosen, 2 * PATH_MAX);
  char *dir = NULL;
  int rc = 0;
  memset(out, 0, sizeof *out);
  if (!path || !*path) {
    const char *env = getenv("KUBECONFIG");
    const char *home = getenv("HOME");
    if (env && *env) {
      size_t n = strcspn(env, ":");
      rc = tn_buf_append(&chosen, env, n);
    } else if (home && *home) {
      rc = tn_buf_printf(&chosen, "%s/.kube/config", home);
    } else {
      rc = tn_error_set(err, TN_ECONFIG, "no kubeconfig: KUBECONFIG and HOME are not set");
      goto out;
    }
    if (rc) {
      rc = tn_error_set(err, TN_ECONFIG, "KUBECONFIG: path too long");
      goto out;
    }
    path = tn_buf_str(&chosen);
  }
  rc = read_file(path, KUBECONFIG_MAX_BYTES, &text);
  if (rc) {
    rc = tn_error_set(err, TN_ECONFIG, "kubeconfig %s: cannot read: %s", path,
                      rc == TN_ERR_TOOBIG ? "larger than 16 MiB" : strerror(-rc));
    goto out;
  }
  dir = dir_of(path);
  if (!dir) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  rc = tn_kube_config_parse(text.data ? text.data : "", text.len, path, dir, context, out, err);
out:
  if (rc)
    tn_kube_config_cleanup(out);
  free(dir);
  if (text.data)
    OPENSSL_cleanse(text.data, text.len); /* it may hold keys and tokens */
  tn_buf_cleanup(&text);
  tn_buf_cleanup(&chosen);
  return rc;
}

/* ---- in-cluster ----------------------------------------------------------------------------- */

int tn_kube_config_in_cluster(const char *sa_dir, struct tn_kube_config *out, struct tn_error *err) {
  struct tn_buf b, ns;
  tn_buf_init(&b, 2 * PATH_MAX);
  tn_buf_init(&ns, 1024);
  int rc = 0;
  memset(out, 0, sizeof *out);
  const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port) {
    rc = tn_error_set(err, TN_ECONFIG,
                      "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set "
                      "(not running in a pod? pass --kubeconfig)");
    goto out;
  }
  if (!sa_dir)
    sa_dir = DEFAULT_SA_DIR;
  /* An IPv6 address goes in brackets in a URL. */
  bool v6 = strchr(host, ':') != NULL;
  if ((rc = tn_buf_printf(&b, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port)))
    goto oom;
  out->server = tn_buf_take(&b);
  tn_buf_init(&b, 2 * PATH_MAX);
  if ((rc = tn_buf_printf(&b, "%s/token", sa_dir)))
    goto oom;
  out->token_file = tn_buf_take(&b);
  tn_buf_init(&b, 2 * PATH_MAX);
  if ((rc = tn_buf_printf(&b, "%s/ca.crt", sa_dir)))
    goto oom;
  out->ca_file = tn_buf_take(&b);
  if (!out->server || !out->token_file || !out->ca_file)
    goto oom;
  if (access(out->token_file, R_OK) != 0) {
    rc = tn_error_set(err, TN_ECONFIG, "in-cluster: service-account token %s: %s", out->token_file,
                      strerror(errno));
    goto out;
  }
  if (access(out->ca_file, R_OK) != 0) {
    rc =
        tn_error_set(err, TN_ECONFIG, "in-cluster: service-account CA %s: %s", out->ca_file, strerror(errno));
    goto out;
  }
  tn_buf_init(&b, 2 * PATH_MAX);
  if ((rc = tn_buf_printf(&b, "%s/namespace", sa_dir)))
    goto oom;
  if (read_file(tn_buf_str(&b), 1023, &ns) == 0 && ns.len > 0) {
    while (ns.len > 0 && strchr(" \t\r\n", ns.data[ns.len - 1]))
      ns.data[--ns.len] = '\0';
    if (ns.len > 0 && !(out->namespace = tn_buf_take(&ns)))
      goto oom;
  }
  goto out;
oom:
  rc = tn_error_set(err, -ENOMEM, "out of memory");
out:
  if (rc)
    tn_kube_config_cleanup(out);
  tn_buf_cleanup(&b);
  tn_buf_cleanup(&ns);
  return rc;
}

int tn_kube_config_auto(const char *path, struct tn_kube_config *out, struct tn_error *err) {
  if (path && *path)
    return tn_kube_config_load(path, NULL, out, err);
  const char *env = getenv("KUBECONFIG");
  if (env && *env)
    return tn_kube_config_load(NULL, NULL, out, err);
  const char *home = getenv("HOME");
  if (home && *home) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/.kube/config", home);
    if (access(p, F_OK) == 0)
      return tn_kube_config_load(p, NULL, out, err);
  }
  return tn_kube_config_in_cluster(NULL, out, err);
}
