/* kubeconfig.c - loading the client configuration: kubeconfig files (YAML read with libyaml into
 * a jansson tree, several merged as kubectl merges the KUBECONFIG list, then validated field by
 * field), exec credential plugins (client.authentication.k8s.io/v1), or the in-cluster service
 * account. */
#include "kube/client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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
  char **strs[] = {&c->server,           &c->ca_file,           &c->ca_data,    &c->cert_file,
                   &c->cert_data,        &c->key_file,          &c->key_data,   &c->token,
                   &c->token_file,       &c->tls_server_name,   &c->user_agent, &c->namespace,
                   &c->impersonate_user, &c->impersonate_groups};
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

/* What we are reading: for error messages and relative paths. With several files merged, file
 * and dir follow the entry being read (each entry's relative paths resolve against its own
 * file, as kubectl does). */
struct kc_ctx {
  const char *file;
  const char *dir; /* absolute directory of the file */
  struct tn_error *err;
  const struct tn_kube_config_source *srcs;
  size_t nsrcs;
  json_t *origin; /* {"clusters": {name: index of the source}, "contexts": ..., "users": ...} */
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
 * member (cluster, context, user) is returned in *body. c->file and c->dir become the entry's. */
static int kc_find(struct kc_ctx *c, json_t *root, const char *section, const char *inner, const char *name,
                   const char *referrer, json_t **body) {
  json_t *list = json_object_get(root, section);
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) {
    json_t *n = json_object_get(e, "name");
    if (strcmp(json_string_value(n), name) != 0)
      continue;
    json_t *idx = json_object_get(json_object_get(c->origin, section), name);
    if (json_is_integer(idx) && (size_t)json_integer_value(idx) < c->nsrcs) {
      c->file = c->srcs[json_integer_value(idx)].name;
      c->dir = c->srcs[json_integer_value(idx)].dir;
    }
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

/* ---- exec credential plugins: configuration --------------------------------------------------- */

#define EXEC_V1 "client.authentication.k8s.io/v1"
#define EXEC_V1BETA1 "client.authentication.k8s.io/v1beta1"

void tn_kube_exec_cleanup(struct tn_kube_exec *e) {
  if (!e)
    return;
  for (size_t i = 0; i < e->nargs; i++)
    free(e->args[i]);
  for (size_t i = 0; i < e->nenv; i++) {
    if (e->env[i])
      OPENSSL_cleanse(e->env[i], strlen(e->env[i]));
    free(e->env[i]);
  }
  free(e->args);
  free(e->env);
  free(e->api_version);
  free(e->command);
  free(e->interactive_mode);
  free(e->install_hint);
  memset(e, 0, sizeof *e);
}

/* users[NAME].user.exec, validated as kubectl validates it. */
static int kc_exec(struct kc_ctx *c, json_t *x, const char *user_where, struct tn_kube_exec *out) {
  char where[340];
  snprintf(where, sizeof where, "%s.exec", user_where);
  if (!json_is_object(x))
    return kc_fail(c, "%s: must be a mapping", where);
  int rc;
  if ((rc = kc_string(c, x, where, "apiVersion", &out->api_version)))
    return rc;
  if (!out->api_version)
    return kc_fail(c, "%s.apiVersion: missing (use %s)", where, EXEC_V1);
  bool v1 = strcmp(out->api_version, EXEC_V1) == 0;
  if (!v1 && strcmp(out->api_version, EXEC_V1BETA1) != 0)
    return kc_fail(c, "%s.apiVersion: \"%s\" is not supported (use %s)", where, out->api_version, EXEC_V1);
  char *cmd = NULL;
  if ((rc = kc_string(c, x, where, "command", &cmd)))
    return rc;
  if (!cmd)
    return kc_fail(c, "%s.command: missing (the credential plugin to run)", where);
  /* A relative path with a slash is relative to the kubeconfig; a bare name is looked up in PATH. */
  out->command = strchr(cmd, '/') ? resolve_path(c->dir, cmd) : strdup(cmd);
  free(cmd);
  if (!out->command)
    return tn_error_set(c->err, -ENOMEM, "out of memory");
  json_t *args = json_object_get(x, "args");
  if (args && !json_is_null(args)) {
    if (!json_is_array(args))
      return kc_fail(c, "%s.args: must be a list of strings", where);
    out->args = calloc(json_array_size(args) + 1, sizeof *out->args);
    if (!out->args)
      return tn_error_set(c->err, -ENOMEM, "out of memory");
    size_t i;
    json_t *a;
    json_array_foreach(args, i, a) {
      if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a))
        return kc_fail(c, "%s.args[%zu]: must be a string", where, i);
      if (!(out->args[out->nargs++] = strdup(json_string_value(a))))
        return tn_error_set(c->err, -ENOMEM, "out of memory");
    }
  }
  json_t *env = json_object_get(x, "env");
  if (env && !json_is_null(env)) {
    if (!json_is_array(env))
      return kc_fail(c, "%s.env: must be a list of {name, value}", where);
    out->env = calloc(json_array_size(env) + 1, sizeof *out->env);
    if (!out->env)
      return tn_error_set(c->err, -ENOMEM, "out of memory");
    size_t i;
    json_t *e;
    json_array_foreach(env, i, e) {
      json_t *n = json_object_get(e, "name"), *v = json_object_get(e, "value");
      if (!json_is_string(n) || json_string_length(n) == 0 || strchr(json_string_value(n), '=') ||
          strlen(json_string_value(n)) != json_string_length(n))
        return kc_fail(c, "%s.env[%zu].name: missing or not a valid variable name", where, i);
      if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return kc_fail(c, "%s.env[%zu].value: missing or not a string", where, i);
      struct tn_buf b;
      tn_buf_init(&b, 1u << 20);
      if (tn_buf_printf(&b, "%s=%s", json_string_value(n), json_string_value(v))) {
        tn_buf_cleanup(&b);
        return kc_fail(c, "%s.env[%zu]: too long", where, i);
      }
      out->env[out->nenv++] = tn_buf_take(&b);
    }
  }
  if ((rc = kc_string(c, x, where, "interactiveMode", &out->interactive_mode)))
    return rc;
  if (!out->interactive_mode) {
    if (v1)
      return kc_fail(c, "%s.interactiveMode: missing (Never or IfAvailable)", where);
    out->interactive_mode = strdup("IfAvailable");
    if (!out->interactive_mode)
      return tn_error_set(c->err, -ENOMEM, "out of memory");
  }
  if (strcmp(out->interactive_mode, "Always") == 0)
    return kc_fail(c,
                   "%s.interactiveMode: Always is not supported (plugins run without a terminal); use Never "
                   "or IfAvailable",
                   where);
  if (strcmp(out->interactive_mode, "Never") && strcmp(out->interactive_mode, "IfAvailable"))
    return kc_fail(c, "%s.interactiveMode: \"%s\" is not one of Never, IfAvailable, Always", where,
                   out->interactive_mode);
  if ((rc = kc_bool(c, x, where, "provideClusterInfo", &out->provide_cluster_info)))
    return rc;
  return kc_string(c, x, where, "installHint", &out->install_hint);
}

static int kc_user(struct kc_ctx *c, json_t *u, const char *name, struct tn_kube_config *out,
                   struct tn_kube_exec *exec) {
  char where[300];
  snprintf(where, sizeof where, "users[%s].user", name);
  static const char *const unsupported[] = {"auth-provider", "username", "password",      "as",
                                            "as-groups",     "as-uid",   "as-user-extra", NULL};
  for (const char *const *f = unsupported; *f; f++)
    if (json_object_get(u, *f) && !json_is_null(json_object_get(u, *f)))
      return kc_fail(c, "%s.%s: not supported (use a client certificate, a bearer token or an exec plugin)",
                     where, *f);
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
  json_t *x = json_object_get(u, "exec");
  if (x && !json_is_null(x)) {
    struct tn_kube_exec local = {0};
    rc = kc_exec(c, x, where, exec ? exec : &local);
    tn_kube_exec_cleanup(&local);
    if (rc)
      return rc;
  }
  return 0;
}

/* ---- merging several files ------------------------------------------------------------------ */

static const char *const kc_sections[] = {"clusters", "contexts", "users", NULL};

/* Merges the parsed files into one tree as kubectl does: the first file that defines a named
 * cluster, context or user wins; current-context comes from the first file that sets it.
 * Entries are borrowed from roots (the merged lists hold new references). */
static int kc_merge(struct kc_ctx *c, json_t *const *roots, size_t n, json_t **merged) {
  json_t *m = json_object();
  c->origin = json_object();
  if (!m || !c->origin)
    goto oom;
  for (const char *const *s = kc_sections; *s; s++)
    if (json_object_set_new(m, *s, json_array()) || json_object_set_new(c->origin, *s, json_object()))
      goto oom;
  for (size_t i = 0; i < n; i++) {
    json_t *root = roots[i];
    c->file = c->srcs[i].name;
    c->dir = c->srcs[i].dir;
    if (!json_is_object(root)) {
      json_decref(m);
      return kc_fail(c, "the document is not a mapping");
    }
    json_t *kind = json_object_get(root, "kind");
    if (kind && !(json_is_string(kind) && strcmp(json_string_value(kind), "Config") == 0)) {
      json_decref(m);
      return kc_fail(c, "kind: must be Config");
    }
    for (const char *const *s = kc_sections; *s; s++) {
      json_t *list = json_object_get(root, *s), *seen = json_object_get(c->origin, *s);
      if (list && !json_is_array(list) && !json_is_null(list)) {
        json_decref(m);
        return kc_fail(c, "%s: must be a list", *s);
      }
      size_t j;
      json_t *e;
      json_array_foreach(list, j, e) {
        json_t *nm = json_object_get(e, "name");
        if (!json_is_string(nm) || strlen(json_string_value(nm)) != json_string_length(nm)) {
          json_decref(m);
          return kc_fail(c, "%s[%zu].name: missing or not a string", *s, j);
        }
        if (json_object_get(seen, json_string_value(nm)))
          continue; /* an earlier file defined it: the first wins */
        if (json_object_set_new(seen, json_string_value(nm), json_integer((json_int_t)i)) ||
            json_array_append(json_object_get(m, *s), e))
          goto oom;
      }
    }
    json_t *cur = json_object_get(root, "current-context");
    if (!json_object_get(m, "current-context") && json_is_string(cur) && json_string_length(cur) > 0 &&
        json_object_set(m, "current-context", cur))
      goto oom;
  }
  *merged = m;
  return 0;
oom:
  json_decref(m);
  return tn_error_set(c->err, -ENOMEM, "out of memory");
}

static int kc_parse(struct kc_ctx *c, json_t *root, const char *context, struct tn_kube_config *out,
                    struct tn_kube_exec *exec) {
  const char *ctx_name = context;
  const char *ctx_ref = "the requested context";
  const char *all = c->file; /* messages about the merged whole name every file */
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
  if ((rc = kc_string(c, ctx, where, "namespace", &out->namespace)))
    return rc;
  const char *ctx_file = c->file, *ctx_dir = c->dir;
  char ref[340];
  snprintf(ref, sizeof ref, "%s.cluster", where);
  if ((rc = kc_find(c, root, "clusters", "cluster", json_string_value(cl_name), ref, &cl)))
    return rc;
  if ((rc = kc_cluster(c, cl, json_string_value(cl_name), out)))
    return rc;
  c->file = ctx_file;
  c->dir = ctx_dir;
  /* A context without a user is anonymous, as in kubectl. */
  if (user_name && !json_is_null(user_name)) {
    if (!json_is_string(user_name))
      return kc_fail(c, "%s.user: must be a string", where);
    if (json_string_length(user_name) > 0) {
      snprintf(ref, sizeof ref, "%s.user", where);
      if ((rc = kc_find(c, root, "users", "user", json_string_value(user_name), ref, &user)))
        return rc;
      if ((rc = kc_user(c, user, json_string_value(user_name), out, exec)))
        return rc;
    }
  }
  c->file = all;
  return 0;
}

int tn_kube_config_parse_sources(const struct tn_kube_config_source *srcs, size_t n, const char *context,
                                 struct tn_kube_config *out, struct tn_kube_exec *exec,
                                 struct tn_error *err) {
  json_t **roots = calloc(n ? n : 1, sizeof *roots);
  json_t *merged = NULL;
  char why[512] = "";
  char all[1024] = "";
  int rc = 0;
  memset(out, 0, sizeof *out);
  if (exec)
    memset(exec, 0, sizeof *exec);
  struct kc_ctx c = {.err = err, .srcs = srcs, .nsrcs = n};
  if (!roots)
    return tn_error_set(err, -ENOMEM, "out of memory");
  if (n == 0) {
    rc = tn_error_set(err, TN_ECONFIG, "no kubeconfig");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    const char *name = srcs[i].name ? srcs[i].name : "(memory)";
    size_t used = strlen(all);
    snprintf(all + used, sizeof all - used, "%s%s", i ? ":" : "", name);
    if (srcs[i].len > KUBECONFIG_MAX_BYTES) {
      rc = tn_error_set(err, TN_ECONFIG, "kubeconfig %s: larger than 16 MiB", name);
      goto out;
    }
    if (yaml_to_json(srcs[i].text ? srcs[i].text : "", srcs[i].len, &roots[i], why, sizeof why)) {
      rc = tn_error_set(err, TN_ECONFIG, "kubeconfig %s: %s", name, why);
      goto out;
    }
  }
  if ((rc = kc_merge(&c, roots, n, &merged)))
    goto out;
  c.file = all;
  c.dir = n == 1 ? srcs[0].dir : NULL;
  rc = kc_parse(&c, merged, context, out, exec);
out:
  if (rc) {
    tn_kube_config_cleanup(out);
    tn_kube_exec_cleanup(exec);
  }
  for (size_t i = 0; i < n; i++)
    json_decref(roots[i]);
  free(roots);
  json_decref(merged);
  json_decref(c.origin);
  return rc;
}

int tn_kube_config_parse(const char *text, size_t len, const char *name, const char *dir, const char *context,
                         struct tn_kube_config *out, struct tn_error *err) {
  struct tn_kube_config_source src = {.text = text, .len = len, .name = name ? name : "(memory)", .dir = dir};
  return tn_kube_config_parse_sources(&src, 1, context, out, NULL, err);
}

/* ---- exec credential plugins: running them -------------------------------------------------- */

#define EXEC_OUTPUT_MAX (1u << 20) /* an ExecCredential larger than this is refused */
#define EXEC_TIMEOUT_MS 60000      /* a plugin that has not answered by then is killed */

extern char **environ;

void tn_kube_exec_credential_cleanup(struct tn_kube_exec_credential *c) {
  if (!c)
    return;
  char **s[] = {&c->token, &c->cert_data, &c->key_data};
  for (size_t i = 0; i < 3; i++) {
    if (*s[i])
      OPENSSL_cleanse(*s[i], strlen(*s[i]));
    free(*s[i]);
  }
  memset(c, 0, sizeof *c);
}

/* RFC 3339 ("2025-01-02T03:04:05Z", fractions and offsets accepted) to seconds since the epoch. */
static int parse_rfc3339(const char *s, time_t *out) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  int used = 0;
  if (sscanf(s, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
             &tm.tm_min, &tm.tm_sec, &used) != 6 ||
      used != 19 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const char *p = s + used;
  if (*p == '.')
    for (p++; *p >= '0' && *p <= '9'; p++)
      ;
  long off = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
    int h = (p[1] - '0') * 10 + (p[2] - '0'), m = (p[4] - '0') * 10 + (p[5] - '0');
    off = (*p == '-' ? -1 : 1) * (h * 3600L + m * 60L);
    p += 6;
  } else {
    return -1;
  }
  if (*p)
    return -1;
  time_t t = timegm(&tm);
  if (t == (time_t)-1)
    return -1;
  *out = t - off;
  return 0;
}

int tn_kube_exec_credential_parse(const char *api_version, const char *text, size_t len,
                                  struct tn_kube_exec_credential *out, struct tn_error *err) {
  memset(out, 0, sizeof *out);
  json_error_t je;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  int rc = 0;
  if (!json_is_object(root)) {
    rc = tn_error_set(err, TN_ECONFIG, "the plugin's output is not a JSON ExecCredential object%s%s",
                      root ? "" : ": ", root ? "" : je.text);
    goto out;
  }
  json_t *kind = json_object_get(root, "kind"), *av = json_object_get(root, "apiVersion");
  if (!json_is_string(kind) || strcmp(json_string_value(kind), "ExecCredential") != 0) {
    rc = tn_error_set(err, TN_ECONFIG, "the plugin's output: kind must be ExecCredential");
    goto out;
  }
  if (!json_is_string(av) || strcmp(json_string_value(av), api_version) != 0) {
    rc = tn_error_set(err, TN_ECONFIG, "the plugin's output: apiVersion \"%s\" is not the configured %s",
                      json_is_string(av) ? json_string_value(av) : "", api_version);
    goto out;
  }
  json_t *st = json_object_get(root, "status");
  if (!json_is_object(st)) {
    rc = tn_error_set(err, TN_ECONFIG, "the plugin's output: status is missing (no credential)");
    goto out;
  }
  const char *fields[] = {"token", "clientCertificateData", "clientKeyData"};
  char **dst[] = {&out->token, &out->cert_data, &out->key_data};
  for (size_t i = 0; i < 3; i++) {
    json_t *v = json_object_get(st, fields[i]);
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0))
      continue;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
      rc = tn_error_set(err, TN_ECONFIG, "the plugin's output: status.%s must be a string", fields[i]);
      goto out;
    }
    if (!(*dst[i] = strdup(json_string_value(v)))) {
      rc = tn_error_set(err, -ENOMEM, "out of memory");
      goto out;
    }
  }
  if (!out->cert_data != !out->key_data) {
    rc = tn_error_set(err, TN_ECONFIG, "the plugin's output: status.%s is set without status.%s",
                      out->cert_data ? "clientCertificateData" : "clientKeyData",
                      out->cert_data ? "clientKeyData" : "clientCertificateData");
    goto out;
  }
  if (!out->token && !out->cert_data) {
    rc =
        tn_error_set(err, TN_ECONFIG,
                     "the plugin's output: status has neither token nor clientCertificateData/clientKeyData");
    goto out;
  }
  if (out->cert_data && (!pem_is(out->cert_data, PEM_CERTS) || !pem_is(out->key_data, PEM_KEY))) {
    rc = tn_error_set(err, TN_ECONFIG,
                      "the plugin's output: status.clientCertificateData/clientKeyData are not a PEM "
                      "certificate and private key");
    goto out;
  }
  json_t *exp = json_object_get(st, "expirationTimestamp");
  if (exp && !json_is_null(exp)) {
    if (!json_is_string(exp) || parse_rfc3339(json_string_value(exp), &out->expires)) {
      rc = tn_error_set(err, TN_ECONFIG,
                        "the plugin's output: status.expirationTimestamp is not an RFC 3339 time");
      goto out;
    }
  }
out:
  if (rc)
    tn_kube_exec_credential_cleanup(out);
  json_decref(root);
  return rc;
}

/* Base64 (no line breaks) of len bytes; malloc'd. */
static char *base64_encode(const unsigned char *data, size_t len) {
  if (len > (size_t)INT_MAX / 2)
    return NULL;
  char *out = malloc(4 * ((len + 2) / 3) + 1);
  if (out)
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
  return out;
}

/* KUBERNETES_EXEC_INFO: the ExecCredential the plugin is given (spec.cluster when asked for). */
static char *exec_info(const struct tn_kube_exec *e, const struct tn_kube_config *cfg) {
  json_t *spec = json_pack("{s:b}", "interactive", 0);
  json_t *root =
      json_pack("{s:s,s:s,s:o}", "apiVersion", e->api_version, "kind", "ExecCredential", "spec", spec);
  char *s = NULL;
  if (root && e->provide_cluster_info) {
    json_t *cl = json_pack("{s:s}", "server", cfg->server ? cfg->server : "");
    if (cl && cfg->tls_server_name)
      json_object_set_new(cl, "tls-server-name", json_string(cfg->tls_server_name));
    if (cl && cfg->insecure_skip_tls_verify)
      json_object_set_new(cl, "insecure-skip-tls-verify", json_true());
    struct tn_buf ca;
    tn_buf_init(&ca, 4u << 20);
    const char *pem = cfg->ca_data;
    if (!pem && cfg->ca_file && read_file(cfg->ca_file, 4u << 20, &ca) == 0)
      pem = tn_buf_str(&ca);
    if (cl && pem) {
      char *b64 = base64_encode((const unsigned char *)pem, strlen(pem));
      if (b64)
        json_object_set_new(cl, "certificate-authority-data", json_string(b64));
      free(b64);
    }
    tn_buf_cleanup(&ca);
    if (cl)
      json_object_set_new(spec, "cluster", cl);
  }
  if (root)
    s = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return s;
}

/* Runs the plugin: stdin /dev/null (never interactive), stderr inherited (its messages reach the
 * user, as with kubectl), stdout captured up to EXEC_OUTPUT_MAX within EXEC_TIMEOUT_MS. */
static int exec_spawn(const struct tn_kube_exec *e, const struct tn_kube_config *cfg, struct tn_buf *out,
                      struct tn_error *err) {
  size_t nenv = 0;
  while (environ && environ[nenv])
    nenv++;
  char **envp = calloc(nenv + e->nenv + 2, sizeof *envp);
  char **argv = calloc(e->nargs + 2, sizeof *argv);
  char *info = exec_info(e, cfg);
  struct tn_buf infoenv;
  tn_buf_init(&infoenv, 8u << 20);
  int rc = 0, pipefd[2] = {-1, -1};
  pid_t pid = -1;
  posix_spawn_file_actions_t fa;
  bool fa_init = false;
  if (!envp || !argv || !info || tn_buf_printf(&infoenv, "KUBERNETES_EXEC_INFO=%s", info)) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++)
    if (strncmp(environ[i], "KUBERNETES_EXEC_INFO=", 21) != 0)
      envp[k++] = environ[i];
  for (size_t i = 0; i < e->nenv; i++)
    envp[k++] = e->env[i];
  envp[k++] = (char *)tn_buf_str(&infoenv);
  argv[0] = e->command;
  for (size_t i = 0; i < e->nargs; i++)
    argv[i + 1] = e->args[i];
  if (pipe(pipefd) != 0 || fcntl(pipefd[0], F_SETFD, FD_CLOEXEC) != 0 ||
      fcntl(pipefd[1], F_SETFD, FD_CLOEXEC) != 0 || posix_spawn_file_actions_init(&fa) != 0) {
    rc = tn_error_set(err, TN_ECONFIG, "exec plugin %s: %s", e->command, strerror(errno));
    goto out;
  }
  fa_init = true;
  if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) ||
      posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1)) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  int sp = posix_spawnp(&pid, e->command, &fa, NULL, argv, envp);
  close(pipefd[1]);
  pipefd[1] = -1;
  if (sp != 0) {
    pid = -1;
    rc = tn_error_set(err, TN_ECONFIG, "exec plugin %s: cannot run it: %s%s%s", e->command, strerror(sp),
                      e->install_hint ? "\n" : "", e->install_hint ? e->install_hint : "");
    goto out;
  }
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    long left = EXEC_TIMEOUT_MS - ((t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L);
    if (left <= 0) {
      rc = tn_error_set(err, TN_ETIMEOUT, "exec plugin %s: no answer within %d s; it was stopped", e->command,
                        EXEC_TIMEOUT_MS / 1000);
      break;
    }
    struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
    int pr = poll(&pfd, 1, (int)left);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0)
      continue;
    char chunk[4096];
    ssize_t n = read(pipefd[0], chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    if (tn_buf_append(out, chunk, (size_t)n)) {
      rc = tn_error_set(err, TN_ECONFIG, "exec plugin %s: its output is larger than %u bytes", e->command,
                        EXEC_OUTPUT_MAX);
      break;
    }
  }
  if (rc)
    kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  pid = -1;
  if (!rc && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    rc = tn_error_set(err, TN_ECONFIG, "exec plugin %s: exited with status %d%s%s", e->command, code,
                      code == 127 && e->install_hint ? "\n" : "",
                      code == 127 && e->install_hint ? e->install_hint : "");
  }
out:
  if (fa_init)
    posix_spawn_file_actions_destroy(&fa);
  if (pipefd[0] >= 0)
    close(pipefd[0]);
  if (pipefd[1] >= 0)
    close(pipefd[1]);
  free(envp);
  free(argv);
  free(info);
  tn_buf_cleanup(&infoenv);
  return rc;
}

/* The credentials obtained in this process, reused until they expire (a plugin without an
 * expirationTimestamp is run once per process, as kubectl does). */
struct exec_cache_entry {
  char *key;
  struct tn_kube_exec_credential cred;
  struct exec_cache_entry *next;
};
static struct exec_cache_entry *exec_cache;
static pthread_mutex_t exec_cache_mu = PTHREAD_MUTEX_INITIALIZER;

static char *exec_cache_key(const struct tn_kube_exec *e, const struct tn_kube_config *cfg) {
  struct tn_buf b;
  tn_buf_init(&b, 16u << 20);
  int rc =
      tn_buf_printf(&b, "%s%c%s%c%s%c", e->api_version, 0, e->command, 0, cfg->server ? cfg->server : "", 0);
  for (size_t i = 0; !rc && i < e->nargs; i++)
    rc = tn_buf_printf(&b, "a%s%c", e->args[i], 0);
  for (size_t i = 0; !rc && i < e->nenv; i++)
    rc = tn_buf_printf(&b, "e%s%c", e->env[i], 0);
  if (rc) {
    tn_buf_cleanup(&b);
    return NULL;
  }
  /* The key is compared as bytes: hex of the buffer keeps it a C string. */
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_Digest(b.data, b.len, md, &mdlen, EVP_sha256(), NULL);
  tn_buf_cleanup(&b);
  char *hex = malloc(2 * mdlen + 1);
  for (unsigned i = 0; hex && i < mdlen; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
  return hex;
}

static int cred_copy(struct tn_kube_exec_credential *dst, const struct tn_kube_exec_credential *src) {
  memset(dst, 0, sizeof *dst);
  dst->expires = src->expires;
  if ((src->token && !(dst->token = strdup(src->token))) ||
      (src->cert_data && !(dst->cert_data = strdup(src->cert_data))) ||
      (src->key_data && !(dst->key_data = strdup(src->key_data)))) {
    tn_kube_exec_credential_cleanup(dst);
    return -ENOMEM;
  }
  return 0;
}

int tn_kube_exec_get_credential(const struct tn_kube_exec *e, const struct tn_kube_config *cfg,
                                struct tn_kube_exec_credential *out, struct tn_error *err) {
  memset(out, 0, sizeof *out);
  char *key = exec_cache_key(e, cfg);
  if (!key)
    return tn_error_set(err, -ENOMEM, "out of memory");
  int rc = 0;
  pthread_mutex_lock(&exec_cache_mu);
  time_t now = time(NULL);
  for (struct exec_cache_entry *c = exec_cache; c; c = c->next)
    if (strcmp(c->key, key) == 0 && (c->cred.expires == 0 || now < c->cred.expires)) {
      rc = cred_copy(out, &c->cred) ? tn_error_set(err, -ENOMEM, "out of memory") : 1;
      break;
    }
  pthread_mutex_unlock(&exec_cache_mu);
  if (rc) {
    free(key);
    return rc < 0 ? rc : 0;
  }
  struct tn_buf buf;
  tn_buf_init(&buf, EXEC_OUTPUT_MAX);
  if (!(rc = exec_spawn(e, cfg, &buf, err))) {
    rc = tn_kube_exec_credential_parse(e->api_version, buf.data ? buf.data : "", buf.len, out, err);
    if (rc) {
      char msg[sizeof err->message];
      snprintf(msg, sizeof msg, "%s", err->message);
      rc = tn_error_set(err, TN_ECONFIG, "exec plugin %s: %s", e->command, msg);
    }
  }
  if (buf.data)
    OPENSSL_cleanse(buf.data, buf.len);
  tn_buf_cleanup(&buf);
  if (rc) {
    free(key);
    return rc;
  }
  if (out->expires != 0 && out->expires <= time(NULL)) {
    free(key);
    tn_kube_exec_credential_cleanup(out);
    return tn_error_set(err, TN_ECONFIG, "exec plugin %s: the credential it returned has already expired",
                        e->command);
  }
  struct exec_cache_entry *n = calloc(1, sizeof *n);
  if (n && cred_copy(&n->cred, out) == 0) {
    n->key = key;
    key = NULL;
    pthread_mutex_lock(&exec_cache_mu);
    /* Replace an expired entry of the same key. */
    for (struct exec_cache_entry **pp = &exec_cache; *pp; pp = &(*pp)->next)
      if (strcmp((*pp)->key, n->key) == 0) {
        struct exec_cache_entry *old = *pp;
        *pp = old->next;
        tn_kube_exec_credential_cleanup(&old->cred);
        free(old->key);
        free(old);
        break;
      }
    n->next = exec_cache;
    exec_cache = n;
    pthread_mutex_unlock(&exec_cache_mu);
  } else {
    free(n);
  }
  free(key);
  return 0;
}

int tn_kube_exec_apply(const struct tn_kube_exec *e, struct tn_kube_config *cfg, struct tn_error *err) {
  struct tn_kube_exec_credential cred;
  int rc = tn_kube_exec_get_credential(e, cfg, &cred, err);
  if (rc)
    return rc;
  if (cred.token) {
    if (cfg->token)
      OPENSSL_cleanse(cfg->token, strlen(cfg->token));
    free(cfg->token);
    free(cfg->token_file);
    cfg->token_file = NULL;
    cfg->token = cred.token;
    cred.token = NULL;
  }
  if (cred.cert_data) {
    free(cfg->cert_file);
    free(cfg->key_file);
    free(cfg->cert_data);
    if (cfg->key_data)
      OPENSSL_cleanse(cfg->key_data, strlen(cfg->key_data));
    free(cfg->key_data);
    cfg->cert_file = cfg->key_file = NULL;
    cfg->cert_data = cred.cert_data;
    cfg->key_data = cred.key_data;
    cred.cert_data = cred.key_data = NULL;
  }
  tn_kube_exec_credential_cleanup(&cred);
  return 0;
}

/* ---- loading files -------------------------------------------------------------------------- */

#define KUBECONFIG_MAX_FILES 32

int tn_kube_config_load(const char *path, const char *context, struct tn_kube_config *out,
                        struct tn_error *err) {
  char *paths[KUBECONFIG_MAX_FILES] = {0};
  struct tn_buf texts[KUBECONFIG_MAX_FILES];
  struct tn_kube_config_source srcs[KUBECONFIG_MAX_FILES];
  char *dirs[KUBECONFIG_MAX_FILES] = {0};
  size_t n = 0;
  int rc = 0;
  struct tn_kube_exec exec = {0};
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < KUBECONFIG_MAX_FILES; i++)
    tn_buf_init(&texts[i], KUBECONFIG_MAX_BYTES);
  if (path && *path) {
    if (!(paths[n++] = strdup(path)))
      goto oom;
  } else {
    const char *env = getenv("KUBECONFIG");
    const char *home = getenv("HOME");
    if (env && *env) {
      /* Every file of the list, in order; missing ones are skipped, as kubectl does. */
      for (const char *p = env; *p;) {
        size_t len = strcspn(p, ":");
        if (len > 0) {
          if (len >= PATH_MAX) {
            rc = tn_error_set(err, TN_ECONFIG, "KUBECONFIG: path too long");
            goto out;
          }
          char *one = strndup(p, len);
          if (!one)
            goto oom;
          bool dup = false;
          for (size_t i = 0; i < n; i++)
            dup = dup || strcmp(paths[i], one) == 0;
          if (dup || access(one, F_OK) != 0) {
            free(one);
          } else if (n == KUBECONFIG_MAX_FILES) {
            free(one);
            rc = tn_error_set(err, TN_ECONFIG, "KUBECONFIG: more than %d files", KUBECONFIG_MAX_FILES);
            goto out;
          } else {
            paths[n++] = one;
          }
        }
        p += len;
        if (*p == ':')
          p++;
      }
      if (n == 0) {
        rc = tn_error_set(err, TN_ECONFIG, "KUBECONFIG=%s: none of these files exists", env);
        goto out;
      }
    } else if (home && *home) {
      struct tn_buf b;
      tn_buf_init(&b, 2 * PATH_MAX);
      if (tn_buf_printf(&b, "%s/.kube/config", home)) {
        tn_buf_cleanup(&b);
        rc = tn_error_set(err, TN_ECONFIG, "HOME: path too long");
        goto out;
      }
      paths[n++] = tn_buf_take(&b);
      if (!paths[0])
        goto oom;
    } else {
      rc = tn_error_set(err, TN_ECONFIG, "no kubeconfig: KUBECONFIG and HOME are not set");
      goto out;
    }
  }
  for (size_t i = 0; i < n; i++) {
    rc = read_file(paths[i], KUBECONFIG_MAX_BYTES, &texts[i]);
    if (rc) {
      rc = tn_error_set(err, TN_ECONFIG, "kubeconfig %s: cannot read: %s", paths[i],
                        rc == TN_ERR_TOOBIG ? "larger than 16 MiB" : strerror(-rc));
      goto out;
    }
    if (!(dirs[i] = dir_of(paths[i])))
      goto oom;
    srcs[i] = (struct tn_kube_config_source){
        .text = texts[i].data ? texts[i].data : "", .len = texts[i].len, .name = paths[i], .dir = dirs[i]};
  }
  if ((rc = tn_kube_config_parse_sources(srcs, n, context, out, &exec, err)))
    goto out;
  if (exec.command)
    rc = tn_kube_exec_apply(&exec, out, err);
  goto out;
oom:
  rc = tn_error_set(err, -ENOMEM, "out of memory");
out:
  if (rc)
    tn_kube_config_cleanup(out);
  tn_kube_exec_cleanup(&exec);
  for (size_t i = 0; i < KUBECONFIG_MAX_FILES; i++) {
    if (texts[i].data)
      OPENSSL_cleanse(texts[i].data, texts[i].len); /* it may hold keys and tokens */
    tn_buf_cleanup(&texts[i]);
    free(paths[i]);
    free(dirs[i]);
  }
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
