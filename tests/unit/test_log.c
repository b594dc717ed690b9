/* test_log.c - structured logs: one JSON object per line with context fields, levels, text format. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/log.h"

static int pipefd[2];

static void capture(void) {
  cr_assert_eq(pipe(pipefd), 0);
  tn_log_set_fd(pipefd[1]);
}

static char *drain(void) {
  tn_log_set_fd(-1);
  close(pipefd[1]);
  static char buf[65536];
  ssize_t n = read(pipefd[0], buf, sizeof buf - 1);
  close(pipefd[0]);
  buf[n < 0 ? 0 : n] = '\0';
  return buf;
}

Test(log, json_line_with_context_fields_and_escaping) {
  tn_log_set_level(TN_LOG_INFO);
  tn_log_set_format(TN_LOG_JSON);
  capture();
  struct tn_log_fields f = {.controller = "tenant",
                            .tenant = "acme",
                            .environment = "prod",
                            .request_id = "r1",
                            .correlation_id = "c1",
                            .resource_version = "42",
                            .generation = 3};
  tn_log(TN_LOG_WARN, &f, "quote \" backslash \\ newline \n tab \t done %d", 7);
  char *out = drain();
  cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "exactly one line: %s", out);
  json_error_t je;
  json_t *o = json_loads(out, 0, &je);
  cr_assert_not_null(o, "not JSON: %s (%s)", out, je.text);
  cr_assert_str_eq(json_string_value(json_object_get(o, "level")), "warn");
  cr_assert_str_eq(json_string_value(json_object_get(o, "msg")),
                   "quote \" backslash \\ newline \n tab \t done 7");
  cr_assert_str_eq(json_string_value(json_object_get(o, "controller")), "tenant");
  cr_assert_str_eq(json_string_value(json_object_get(o, "tenant")), "acme");
  cr_assert_str_eq(json_string_value(json_object_get(o, "environment")), "prod");
  cr_assert_str_eq(json_string_value(json_object_get(o, "requestId")), "r1");
  cr_assert_str_eq(json_string_value(json_object_get(o, "correlationId")), "c1");
  cr_assert_str_eq(json_string_value(json_object_get(o, "resourceVersion")), "42");
  cr_assert_eq(json_integer_value(json_object_get(o, "generation")), 3);
  const char *ts = json_string_value(json_object_get(o, "ts"));
  cr_assert(ts && strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z', "RFC 3339 UTC with ms: %s", ts);
  json_decref(o);
}

Test(log, level_filters_and_invalid_utf8_is_kept) {
  tn_log_set_level(TN_LOG_WARN);
  tn_log_set_format(TN_LOG_JSON);
  capture();
  tn_log_info("dropped");
  tn_log_debug("dropped too");
  tn_log_error("bad byte \xff here");
  char *out = drain();
  cr_assert(strstr(out, "dropped") == NULL, "%s", out);
  cr_assert(strstr(out, "bad byte ? here") != NULL, "%s", out);
  tn_log_set_level(TN_LOG_INFO);
}

Test(log, text_format_for_people) {
  tn_log_set_level(TN_LOG_DEBUG);
  tn_log_set_format(TN_LOG_TEXT);
  capture();
  struct tn_log_fields f = TN_LOG_FIELDS_INIT;
  f.tenant = "acme";
  tn_log(TN_LOG_INFO, &f, "converged");
  char *out = drain();
  tn_log_set_format(TN_LOG_JSON);
  tn_log_set_level(TN_LOG_INFO);
  cr_assert(strstr(out, " INFO  converged tenant=acme\n") != NULL, "%s", out);
  cr_assert_eq(out[2], ':', "starts with the time of day: %s", out);
}

Test(log, parse_level_and_format) {
  enum tn_log_level l;
  cr_assert_eq(tn_log_parse_level("DEBUG", &l), 0);
  cr_assert_eq(l, TN_LOG_DEBUG);
  cr_assert_eq(tn_log_parse_level("warning", &l), 0);
  cr_assert_eq(l, TN_LOG_WARN);
  cr_assert_neq(tn_log_parse_level("loud", &l), 0);
  enum tn_log_format f;
  cr_assert_eq(tn_log_parse_format("text", &f), 0);
  cr_assert_eq(f, TN_LOG_TEXT);
  cr_assert_neq(tn_log_parse_format("xml", &f), 0);
}
