/* log.c - structured JSON logs on stderr (see log.h). */
#include "runtime/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = TN_LOG_INFO;
static atomic_int log_fd = -1;
static atomic_int log_format = TN_LOG_JSON;

void tn_log_set_format(enum tn_log_format format) { atomic_store(&log_format, (int)format); }

int tn_log_parse_format(const char *s, enum tn_log_format *out) {
  if (s && strcmp(s, "json") == 0)
    *out = TN_LOG_JSON;
  else if (s && strcmp(s, "text") == 0)
    *out = TN_LOG_TEXT;
  else
    return -EINVAL;
  return 0;
}

void tn_log_set_level(enum tn_log_level level) { atomic_store(&log_level, (int)level); }
enum tn_log_level tn_log_get_level(void) { return (enum tn_log_level)atomic_load(&log_level); }
bool tn_log_enabled(enum tn_log_level level) { return (int)level >= atomic_load(&log_level); }
void tn_log_set_fd(int fd) { atomic_store(&log_fd, fd); }

int tn_log_parse_level(const char *s, enum tn_log_level *out) {
  static const struct {
    const char *name;
    enum tn_log_level level;
  } names[] = {{"debug", TN_LOG_DEBUG},
               {"info", TN_LOG_INFO},
               {"warn", TN_LOG_WARN},
               {"warning", TN_LOG_WARN},
               {"error", TN_LOG_ERROR}};
  for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
    if (strcasecmp(s, names[i].name) == 0) {
      *out = names[i].level;
      return 0;
    }
  return -EINVAL;
}

static const char *level_name(enum tn_log_level l) {
  switch (l) {
  case TN_LOG_DEBUG:
    return "debug";
  case TN_LOG_INFO:
    return "info";
  case TN_LOG_WARN:
    return "warn";
  default:
    return "error";
  }
}

static void set_str(json_t *o, const char *k, const char *v) {
  if (v && *v)
    json_object_set_new(o, k, json_string(v));
}

/* "15:04:05.000 INFO  message key=value ...": the time of day, the level, the message, then
 * every context field. Values are printed as they are (a person reads this, not a parser). */
static char *render_text(json_t *o) {
  const char *ts = json_string_value(json_object_get(o, "ts"));
  const char *lvl = json_string_value(json_object_get(o, "level"));
  char upper[8] = {0};
  for (size_t i = 0; lvl && lvl[i] && i < sizeof upper - 1; i++)
    upper[i] = (char)(lvl[i] - 32 * (lvl[i] >= 'a' && lvl[i] <= 'z'));
  char *out = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&out, &n);
  if (!f)
    return NULL;
  fprintf(f, "%.12s %-5s %s", ts && strlen(ts) > 11 ? ts + 11 : "", upper,
          json_string_value(json_object_get(o, "msg")));
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    if (!strcmp(k, "ts") || !strcmp(k, "level") || !strcmp(k, "msg"))
      continue;
    if (json_is_string(v))
      fprintf(f, " %s=%s", k, json_string_value(v));
    else if (json_is_integer(v))
      fprintf(f, " %s=%lld", k, (long long)json_integer_value(v));
  }
  fclose(f);
  return out;
}

void tn_log(enum tn_log_level level, const struct tn_log_fields *f, const char *fmt, ...) {
  if (!tn_log_enabled(level))
    return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);

  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[80];
  snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

  json_t *o = json_object();
  if (!o)
    return;
  json_object_set_new(o, "ts", json_string(when));
  json_object_set_new(o, "level", json_string(level_name(level)));
  /* Invalid UTF-8 in a message must not drop the line: fall back to a lossless-ish copy. */
  json_t *m = json_string(msg);
  if (!m) {
    for (char *p = msg; *p; p++)
      if ((unsigned char)*p >= 0x80)
        *p = '?';
    m = json_string(msg);
  }
  json_object_set_new(o, "msg", m);
  if (f) {
    set_str(o, "controller", f->controller);
    set_str(o, "tenant", f->tenant);
    set_str(o, "environment", f->environment);
    set_str(o, "requestId", f->request_id);
    set_str(o, "correlationId", f->correlation_id);
    set_str(o, "resourceVersion", f->resource_version);
    if (f->generation >= 0)
      json_object_set_new(o, "generation", json_integer(f->generation));
  }
  char *line = atomic_load(&log_format) == TN_LOG_TEXT ? render_text(o)
                                                       : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!line)
    return;
  size_t n = strlen(line);
  char *out = realloc(line, n + 2);
  if (!out) {
    free(line);
    return;
  }
  out[n] = '\n';
  out[n + 1] = '\0';
  int fd = atomic_load(&log_fd);
  if (fd < 0)
    fd = STDERR_FILENO;
  size_t off = 0;
  while (off < n + 1) {
    ssize_t w = write(fd, out + off, n + 1 - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break;
    off += (size_t)w;
  }
  free(out);
}
