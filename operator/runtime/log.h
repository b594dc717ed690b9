/* log.h - structured JSON logs on stderr, one object per line. */
#ifndef TN_RUNTIME_LOG_H
#define TN_RUNTIME_LOG_H

#include <stdbool.h>

enum tn_log_level { TN_LOG_DEBUG = 0, TN_LOG_INFO = 1, TN_LOG_WARN = 2, TN_LOG_ERROR = 3 };

/* Context fields; any may be NULL (generation: < 0 for none). Borrowed for the call only. */
struct tn_log_fields {
  const char *controller;
  const char *tenant;
  const char *environment;
  const char *request_id;
  const char *correlation_id;
  const char *resource_version;
  long long generation;
};

#define TN_LOG_FIELDS_INIT                                                                                   \
  { .generation = -1 }

void tn_log_set_level(enum tn_log_level level);
enum tn_log_level tn_log_get_level(void);
/* "debug", "info", "warn"/"warning", "error" -> level; returns 0 or -EINVAL. */
int tn_log_parse_level(const char *s, enum tn_log_level *out);
bool tn_log_enabled(enum tn_log_level level);
/* JSON (default: one object per line, for log pipelines) or text (for people at a terminal:
 * "15:04:05.000 INFO  message key=value ..."). */
enum tn_log_format { TN_LOG_JSON = 0, TN_LOG_TEXT = 1 };
void tn_log_set_format(enum tn_log_format format);
/* "json" or "text" -> format; returns 0 or -EINVAL. */
int tn_log_parse_format(const char *s, enum tn_log_format *out);
/* Redirect output (tests); fd < 0 restores stderr. */
void tn_log_set_fd(int fd);

/* Writes {"ts":"RFC3339 UTC with ms","level":..,"msg":..,<fields>} as one line with one
 * write(2), so lines from threads never interleave. Strings are JSON-escaped. */
void tn_log(enum tn_log_level level, const struct tn_log_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tn_log_debug(...) tn_log(TN_LOG_DEBUG, NULL, __VA_ARGS__)
#define tn_log_info(...) tn_log(TN_LOG_INFO, NULL, __VA_ARGS__)
#define tn_log_warn(...) tn_log(TN_LOG_WARN, NULL, __VA_ARGS__)
#define tn_log_error(...) tn_log(TN_LOG_ERROR, NULL, __VA_ARGS__)

#endif
