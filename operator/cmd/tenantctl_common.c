/* tenantctl_common.c - what the commands of tenantctl share: the connection from the kubeconfig
 * (with --context, --as and --as-group), errors printed as kubectl prints them, exit codes, the
 * audit trail's PostgreSQL connection, and output (tables, JSON, YAML, ages). */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include "audit/audit.h"
#include "runtime/options.h" /* TN_PG_DSN_FILE_MAX, tn_read_secret_file */
#include "tenantctl.h"
#include "util/wipe.h"

const struct tn_gvr tctl_tenants_gvr = {"tenancy.dev", "v1alpha1", "tenants", false};

int tctl_exit_code(int code) {
  switch (code) {
  case 0:
    return TCTL_EXIT_OK;
  case TN_ENOTFOUND:
    return TCTL_EXIT_NOTFOUND;
  case TN_EFORBIDDEN:
  case TN_EINVALID:
  case TN_ECONFLICT:
  case TN_EEXISTS:
    return TCTL_EXIT_REFUSED;
  case TN_ECONFIG:
    return TCTL_EXIT_USAGE;
  default:
    return TCTL_EXIT_ERROR;
  }
}

int tctl_fail(const struct tn_error *err, const char *what) {
  const char *msg = err->message[0] ? err->message : tn_strerror(err->code);
  if (err->http_status > 0)
    fprintf(stderr, "Error from server (%s): %s\n", err->reason[0] ? err->reason : tn_strerror(err->code),
            msg);
  else if (what)
    fprintf(stderr, "%s: %s: %s\n", tctl_prog, what, msg);
  else
    fprintf(stderr, "%s: %s\n", tctl_prog, msg);
  return tctl_exit_code(err->code);
}

int tctl_usage_error(const char *cmd, const char *fmt, ...) {
  fprintf(stderr, "%s: ", tctl_prog);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nRun `%s %s --help` for usage.\n", tctl_prog, cmd ? cmd : "");
  return TCTL_EXIT_USAGE;
}

int tctl_connect(struct tn_kube **k) {
  struct tn_kube_config cfg;
  struct tn_error err = {0};
  int rc;
  *k = NULL;
  if (tctl_g.kubeconfig || tctl_g.context || getenv("KUBECONFIG"))
    rc = tn_kube_config_load(tctl_g.kubeconfig, tctl_g.context, &cfg, &err);
  else
    rc = tn_kube_config_auto(NULL, &cfg, &err);
  if (rc) {
    fprintf(stderr, "%s: %s\n", tctl_prog, err.message);
    return TCTL_EXIT_USAGE;
  }
  cfg.user_agent = strdup("tenantctl/" TN_VERSION);
  if (tctl_g.as) {
    cfg.impersonate_user = strdup(tctl_g.as);
    size_t len = 1;
    for (int i = 0; i < tctl_g.n_as_groups; i++)
      len += strlen(tctl_g.as_groups[i]) + 1;
    cfg.impersonate_groups = calloc(1, len);
    for (int i = 0; cfg.impersonate_groups && i < tctl_g.n_as_groups; i++) {
      if (i)
        strcat(cfg.impersonate_groups, "\n");
      strcat(cfg.impersonate_groups, tctl_g.as_groups[i]);
    }
  }
  rc = tn_kube_new(&cfg, NULL, k, &err);
  tn_kube_config_cleanup(&cfg);
  if (rc) {
    fprintf(stderr, "%s: %s\n", tctl_prog, err.message);
    return err.code == TN_ECONFIG ? TCTL_EXIT_USAGE : TCTL_EXIT_ERROR;
  }
  return 0;
}

/* ---- JSON paths ------------------------------------------------------------------------------ */

json_t *tctl_get(json_t *obj, const char *path) {
  char key[128];
  while (obj && *path) {
    size_t n = strcspn(path, ".");
    if (n >= sizeof key)
      return NULL;
    memcpy(key, path, n);
    key[n] = '\0';
    obj = json_object_get(obj, key);
    path += n + (path[n] == '.');
  }
  return obj;
}

const char *tctl_str(json_t *obj, const char *path) { return json_string_value(tctl_get(obj, path)); }

/* ---- output ---------------------------------------------------------------------------------- */

void tctl_print_json(FILE *f, json_t *v) {
  json_dumpf(v, f, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
  fputc('\n', f);
}

/* Whether a plain scalar s would be read back as something else than a string (YAML 1.1 as
 * kubectl reads it): then it is written double-quoted. */
static bool needs_quotes(const char *s) {
  static const char *const words[] = {"",      "~",     "null",  "Null", "NULL", "true", "True",
                                      "TRUE",  "yes",   "Yes",   "YES",  "on",   "On",   "ON",
                                      "false", "False", "FALSE", "no",   "No",   "NO",   "off",
                                      "Off",   "OFF",   "y",     "Y",    "n",    "N",    NULL};
  for (const char *const *w = words; *w; w++)
    if (strcmp(s, *w) == 0)
      return true;
  char *end = NULL;
  errno = 0;
  (void)strtod(s, &end);
  if (end && *end == '\0')
    return true;
  if (strchr("0123456789+-.", s[0]))
    return true; /* numbers in other notations (0x1F, 1_000, 1:20, dates) */
  return false;
}

static int emit_scalar(yaml_emitter_t *em, const char *s, size_t len, yaml_scalar_style_t style,
                       bool plain_ok) {
  yaml_event_t ev;
  if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, plain_ok, 1, style))
    return -1;
  return yaml_emitter_emit(em, &ev) ? 0 : -1;
}

static int emit_value(yaml_emitter_t *em, json_t *v) {
  yaml_event_t ev;
  char num[64];
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
        !yaml_emitter_emit(em, &ev))
      return -1;
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
      if (emit_scalar(em, key, strlen(key),
                      needs_quotes(key) ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE,
                      !needs_quotes(key)) ||
          emit_value(em, val))
        return -1;
    }
    return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev) ? 0 : -1;
  }
  case JSON_ARRAY: {
    if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
        !yaml_emitter_emit(em, &ev))
      return -1;
    size_t i;
    json_t *val;
    json_array_foreach(v, i, val) {
      if (emit_value(em, val))
        return -1;
    }
    return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev) ? 0 : -1;
  }
  case JSON_STRING: {
    const char *s = json_string_value(v);
    bool q = needs_quotes(s);
    return emit_scalar(em, s, json_string_length(v),
                       q ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE, !q);
  }
  case JSON_INTEGER:
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return emit_scalar(em, num, strlen(num), YAML_PLAIN_SCALAR_STYLE, true);
  case JSON_REAL:
    snprintf(num, sizeof num, "%.17g", json_real_value(v));
    return emit_scalar(em, num, strlen(num), YAML_PLAIN_SCALAR_STYLE, true);
  case JSON_TRUE:
    return emit_scalar(em, "true", 4, YAML_PLAIN_SCALAR_STYLE, true);
  case JSON_FALSE:
    return emit_scalar(em, "false", 5, YAML_PLAIN_SCALAR_STYLE, true);
  default:
    return emit_scalar(em, "null", 4, YAML_PLAIN_SCALAR_STYLE, true);
  }
}

static int yaml_out(void *data, unsigned char *buf, size_t size) {
  return fwrite(buf, 1, size, (FILE *)data) == size;
}

int tctl_print_yaml(FILE *f, json_t *v) {
  yaml_emitter_t em;
  yaml_event_t ev;
  int rc = -1;
  if (!yaml_emitter_initialize(&em))
    return -1;
  yaml_emitter_set_output(&em, yaml_out, f);
  yaml_emitter_set_unicode(&em, 1);
  yaml_emitter_set_width(&em, -1);
  if (yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&em, &ev) &&
      yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && yaml_emitter_emit(&em, &ev) &&
      emit_value(&em, v) == 0 && yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&em, &ev) &&
      yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev))
    rc = 0;
  yaml_emitter_delete(&em);
  return rc;
}

void tctl_age(const char *ts, char *dst, size_t n) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  int used = 0;
  if (!ts || sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                    &tm.tm_min, &tm.tm_sec, &used) != 6) {
    snprintf(dst, n, "<unknown>");
    return;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t t = timegm(&tm);
  long long d = (long long)difftime(time(NULL), t);
  if (d < 0)
    d = 0;
  if (d < 120)
    snprintf(dst, n, "%llds", d);
  else if (d < 3600)
    snprintf(dst, n, "%lldm", d / 60);
  else if (d < 48 * 3600)
    snprintf(dst, n, "%lldh", d / 3600);
  else if (d < 730LL * 86400)
    snprintf(dst, n, "%lldd", d / 86400);
  else
    snprintf(dst, n, "%lldy", d / (365LL * 86400));
}

void tctl_print_table(FILE *f, const char *indent, const char *const *cells, size_t nrows, size_t ncols) {
  size_t *w = calloc(ncols ? ncols : 1, sizeof *w);
  if (!w)
    return;
  for (size_t r = 0; r < nrows; r++)
    for (size_t c = 0; c < ncols; c++) {
      size_t l = strlen(cells[r * ncols + c] ? cells[r * ncols + c] : "");
      if (l > w[c])
        w[c] = l;
    }
  for (size_t r = 0; r < nrows; r++) {
    fputs(indent, f);
    for (size_t c = 0; c < ncols; c++) {
      const char *s = cells[r * ncols + c] ? cells[r * ncols + c] : "";
      /* Control characters from the server (an event's note) never reach the terminal. */
      for (const char *p = s; *p; p++)
        fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, f);
      if (c + 1 < ncols)
        fprintf(f, "%*s", (int)(w[c] - strlen(s) + 3), "");
    }
    fputc('\n', f);
  }
  free(w);
}

/* ---- requests with --request-timeout ----------------------------------------------------------- */

static int do_json(struct tn_kube *k, const char *method, const char *path, const char *query,
                   const char *content_type, json_t *body, json_t **out, struct tn_error *err) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  struct tn_kube_request req = {.method = method,
                                .path = path,
                                .query = query,
                                .content_type = content_type,
                                .body = text,
                                .body_len = text ? strlen(text) : 0,
                                .timeout_ms = tctl_g.request_timeout_ms};
  struct tn_kube_response resp;
  tn_kube_response_init(&resp);
  int rc;
  if (!path || (body && !text)) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
  } else if (!(rc = tn_kube_do(k, &req, &resp, err)) && out) {
    json_error_t je;
    *out = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &je);
    if (!*out)
      rc = tn_error_set(err, TN_EAPI, "the API server's answer is not JSON: %s", je.text);
  }
  tn_kube_response_cleanup(&resp);
  free(text);
  return rc;
}

int tctl_get_object(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name,
                    json_t **out, struct tn_error *err) {
  char *path = tn_kube_path(gvr, ns, name, NULL);
  int rc = do_json(k, "GET", path, NULL, NULL, NULL, out, err);
  free(path);
  return rc;
}

int tctl_list_page(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *label_selector,
                   const char *field_selector, long limit, const char *cont, json_t **out,
                   struct tn_error *err) {
  char *path = tn_kube_path(gvr, ns, NULL, NULL);
  struct tn_buf q;
  tn_buf_init(&q, 64 * 1024);
  char lim[32];
  snprintf(lim, sizeof lim, "%ld", limit);
  int rc = 0;
  if ((label_selector && (rc = tn_kube_query_add(&q, "labelSelector", label_selector))) ||
      (field_selector && (rc = tn_kube_query_add(&q, "fieldSelector", field_selector))) ||
      (limit > 0 && (rc = tn_kube_query_add(&q, "limit", lim))) ||
      (cont && (rc = tn_kube_query_add(&q, "continue", cont))))
    rc = tn_error_set(err, TN_ECONFIG, "the selector is too long");
  else
    rc = do_json(k, "GET", path, q.len ? tn_buf_str(&q) : NULL, NULL, NULL, out, err);
  tn_buf_cleanup(&q);
  free(path);
  return rc;
}

int tctl_merge_patch(struct tn_kube *k, const struct tn_gvr *gvr, const char *ns, const char *name,
                     json_t *patch, struct tn_error *err) {
  char *path = tn_kube_path(gvr, ns, name, NULL);
  int rc =
      do_json(k, "PATCH", path, "fieldManager=tenantctl", "application/merge-patch+json", patch, NULL, err);
  free(path);
  return rc;
}

int tctl_create(struct tn_kube *k, const struct tn_gvr *gvr, json_t *obj, bool dry_run, json_t **out,
                struct tn_error *err) {
  char *path = tn_kube_path(gvr, NULL, NULL, NULL);
  int rc = do_json(k, "POST", path, dry_run ? "dryRun=All&fieldManager=tenantctl" : "fieldManager=tenantctl",
                   NULL, obj, out, err);
  free(path);
  return rc;
}

/* ---- PostgreSQL (audit, history, events) ------------------------------------------------------ */

int tctl_db_error(const struct tn_error *err) {
  fprintf(stderr, "%s: %s\n", tctl_prog, err->message[0] ? err->message : tn_strerror(err->code));
  if (err->code == TN_EUNAVAILABLE)
    fprintf(stderr,
            "%s: is PostgreSQL running and reachable? (the DSN comes from --pg-dsn, --pg-dsn-file or "
            "TENANCY_PG_DSN)\n",
            tctl_prog);
  return err->code == TN_ECONFIG ? TCTL_EXIT_USAGE : TCTL_EXIT_DB;
}

int tctl_open_db(const struct tctl_db_flags *d, bool create, struct tn_audit **a) {
  struct tn_error err = {0};
  char *from_file = NULL;
  if (d->dsn && d->dsn_file) {
    fprintf(stderr, "%s: --pg-dsn and --pg-dsn-file are both set; keep one\n", tctl_prog);
    return TCTL_EXIT_USAGE;
  }
  if (d->dsn_file && tn_read_secret_file("pg-dsn-file", d->dsn_file, TN_PG_DSN_FILE_MAX, &from_file, &err)) {
    fprintf(stderr, "%s: %s\n", tctl_prog, err.message);
    return TCTL_EXIT_USAGE;
  }
  const char *dsn = from_file ? from_file : d->dsn ? d->dsn : getenv("TENANCY_PG_DSN");
  if (!dsn || !*dsn) {
    fprintf(stderr, "%s: no PostgreSQL DSN: pass --pg-dsn-file, --pg-dsn or set TENANCY_PG_DSN\n", tctl_prog);
    return TCTL_EXIT_USAGE;
  }
  struct tn_audit_options o = {.schema = d->schema,
                               .no_create = !create,
                               .application_name = "tenantctl",
                               .ca_file = d->ca_file ? d->ca_file : getenv("TENANCY_PG_CA_FILE")};
  int rc = tn_audit_open(dsn, &o, a, &err) ? tctl_db_error(&err) : 0;
  tn_wipe_free_str(from_file);
  if (rc == 0 && tn_audit_tls_warning(*a))
    fprintf(stderr, "%s: warning: %s\n", tctl_prog, tn_audit_tls_warning(*a));
  return rc;
}
