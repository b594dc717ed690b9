/* watchstream.c - an incremental parser of the Kubernetes watch event stream (see watchstream.h).
 *
 * The API server writes one JSON object per event followed by '\n' and never a raw newline
 * inside one (JSON strings escape it), so framing is a scan for '\n' over the new bytes only:
 * O(n) whatever the chunking. A line that is complete inside the chunk being fed is parsed in
 * place; only the head of an event split across chunks is copied into `partial`, whose cap is
 * the per-event limit. jansson does the parsing. */
#define _GNU_SOURCE /* memmem */
#include "kube/watchstream.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

struct tn_watchstream {
  tn_watch_event_fn fn;
  void *ud;
  size_t max_event;
  struct tn_buf partial; /* the head of an event whose newline has not arrived yet */
  size_t events;
  size_t bytes;
  int failed;            /* sticky error code, 0 while healthy */
  struct tn_error error; /* its words, handed out again on later calls */
  bool drop_mf;          /* cut metadata.managedFields from the text before parsing */
  struct tn_buf trimmed; /* the event without it */
};

const char *tn_watch_type_name(enum tn_watch_type type) {
  switch (type) {
  case TN_WATCH_ADDED:
    return "ADDED";
  case TN_WATCH_MODIFIED:
    return "MODIFIED";
  case TN_WATCH_DELETED:
    return "DELETED";
  case TN_WATCH_BOOKMARK:
    return "BOOKMARK";
  case TN_WATCH_ERROR:
    return "ERROR";
  }
  return "?";
}

static int type_from_name(const char *s, enum tn_watch_type *out) {
  static const enum tn_watch_type all[] = {TN_WATCH_ADDED, TN_WATCH_MODIFIED, TN_WATCH_DELETED,
                                           TN_WATCH_BOOKMARK, TN_WATCH_ERROR};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (strcmp(s, tn_watch_type_name(all[i])) == 0) {
      *out = all[i];
      return 0;
    }
  }
  return -1;
}

struct tn_watchstream *tn_watchstream_new(size_t max_event_bytes, tn_watch_event_fn fn, void *ud) {
  struct tn_watchstream *ws = calloc(1, sizeof *ws);
  if (!ws)
    return NULL;
  ws->fn = fn;
  ws->ud = ud;
  ws->max_event = max_event_bytes ? max_event_bytes : TN_WATCH_MAX_EVENT_BYTES;
  tn_buf_init(&ws->partial, ws->max_event);
  tn_buf_init(&ws->trimmed, ws->max_event);
  return ws;
}

void tn_watchstream_drop_managed_fields(struct tn_watchstream *ws, bool drop) {
  if (ws)
    ws->drop_mf = drop;
}

/* The end (one past the closing bracket) of the JSON array or object that starts at p[0], or
 * NULL when it does not end before end. Strings are skipped with their escapes. */
static const char *json_value_end(const char *p, const char *end) {
  int depth = 0;
  bool in_str = false;
  for (; p < end; p++) {
    char c = *p;
    if (in_str) {
      if (c == '\\')
        p++;
      else if (c == '"')
        in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '[' || c == '{') {
      depth++;
    } else if (c == ']' || c == '}') {
      if (--depth == 0)
        return p + 1;
    }
  }
  return NULL;
}

/* The span [*from, *to) of the event's first `"managedFields":[...]` member with the comma
 * that separates it from its neighbour; false when there is none (or it does not end). The
 * API server writes metadata before spec and status (built-in kinds in their struct order,
 * custom resources with sorted keys), so the first such member is metadata's. An escaped quote
 * inside a string reads \" and never matches the pattern's bare quotes. */
static bool managed_fields_span(const char *line, size_t len, size_t *from, size_t *to) {
  static const char pat[] = "\"managedFields\":[";
  const char *end = line + len;
  const char *m = memmem(line, len, pat, sizeof pat - 1);
  if (!m)
    return false;
  const char *v = json_value_end(m + sizeof pat - 2, end);
  if (!v)
    return false;
  const char *a = m, *b = v;
  const char *q = a;
  while (q > line && (q[-1] == ' ' || q[-1] == '\n' || q[-1] == '\t' || q[-1] == '\r'))
    q--;
  if (q > line && q[-1] == ',') {
    a = q - 1; /* ,"managedFields":[...] */
  } else {
    const char *r = b;
    while (r < end && (*r == ' ' || *r == '\n' || *r == '\t' || *r == '\r'))
      r++;
    if (r < end && *r == ',')
      b = r + 1; /* "managedFields":[...], */
  }
  *from = (size_t)(a - line);
  *to = (size_t)(b - line);
  return true;
}

size_t tn_watchstream_trim_managed_fields(const char *line, size_t len, char *out) {
  size_t from, to;
  if (!managed_fields_span(line, len, &from, &to)) {
    memcpy(out, line, len);
    return len;
  }
  memcpy(out, line, from);
  memcpy(out + from, line + to, len - to);
  return len - (to - from);
}

void tn_watchstream_free(struct tn_watchstream *ws) {
  if (!ws)
    return;
  tn_buf_cleanup(&ws->trimmed);
  tn_buf_cleanup(&ws->partial);
  free(ws);
}

void tn_watchstream_reset(struct tn_watchstream *ws) {
  tn_buf_cleanup(&ws->partial);
  tn_buf_init(&ws->partial, ws->max_event);
  ws->events = ws->bytes = 0;
  ws->failed = 0;
  tn_error_clear(&ws->error);
}

size_t tn_watchstream_events(const struct tn_watchstream *ws) { return ws->events; }
size_t tn_watchstream_bytes(const struct tn_watchstream *ws) { return ws->bytes; }

/* Records the first error and copies it out; returns its code. */
static int fail(struct tn_watchstream *ws, int code, struct tn_error *err) {
  if (ws->error.code != code)
    tn_error_set(&ws->error, code, "watch stream: %s", tn_strerror(code));
  ws->failed = code;
  if (err)
    *err = ws->error;
  return code;
}

static int sticky(struct tn_watchstream *ws, struct tn_error *err) {
  if (err)
    *err = ws->error;
  return ws->failed;
}

static bool all_space(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
      return false;
  }
  return true;
}

static int too_big(struct tn_watchstream *ws, size_t have, struct tn_error *err) {
  tn_error_set(&ws->error, TN_ETOOBIG, "watch stream: an event passed the %zu byte limit (%zu bytes so far)",
               ws->max_event, have);
  return fail(ws, TN_ETOOBIG, err);
}

/* Parses one complete line (without its newline) and hands the event to the callback. */
static int handle_line(struct tn_watchstream *ws, const char *line, size_t len, struct tn_error *err) {
  json_t *ev = NULL;
  int rc = 0;
  if (all_space(line, len))
    return 0;
  if (len > ws->max_event)
    return too_big(ws, len, err);
  json_error_t jerr;
  size_t from, to;
  if (ws->drop_mf && managed_fields_span(line, len, &from, &to)) {
    /* managedFields is often half of an object's text and nobody here reads it: not parsed */
    tn_buf_reset(&ws->trimmed);
    if (tn_buf_append(&ws->trimmed, line, from) == 0 &&
        tn_buf_append(&ws->trimmed, line + to, len - to) == 0) {
      line = ws->trimmed.data;
      len = ws->trimmed.len;
    }
  }
  ev = json_loadb(line, len, 0, &jerr);
  if (!ev) {
    tn_error_set(&ws->error, TN_EINVALID, "watch stream: event %zu is not valid JSON: %s (at byte %d)",
                 ws->events + 1, jerr.text, jerr.position);
    rc = fail(ws, TN_EINVALID, err);
    goto out;
  }
  const char *type = json_string_value(json_object_get(ev, "type"));
  json_t *obj = json_object_get(ev, "object");
  enum tn_watch_type t;
  if (!json_is_object(ev) || !type || !json_is_object(obj)) {
    tn_error_set(&ws->error, TN_EINVALID,
                 "watch stream: event %zu is not {\"type\": string, \"object\": {...}}", ws->events + 1);
    rc = fail(ws, TN_EINVALID, err);
    goto out;
  }
  if (type_from_name(type, &t) != 0) {
    tn_error_set(&ws->error, TN_EINVALID, "watch stream: event %zu has unknown type \"%.64s\"",
                 ws->events + 1, type);
    rc = fail(ws, TN_EINVALID, err);
    goto out;
  }
  ws->events++;
  struct tn_error cb_err;
  tn_error_clear(&cb_err);
  rc = ws->fn(ws->ud, t, obj, &cb_err);
  if (rc < 0) {
    if (cb_err.code == 0)
      tn_error_set(&cb_err, rc, "watch stream: event handler: %s", tn_strerror(rc));
    ws->error = cb_err;
    rc = fail(ws, rc, err);
  } else {
    rc = 0;
  }
out:
  json_decref(ev);
  return rc;
}

int tn_watchstream_feed(struct tn_watchstream *ws, const char *data, size_t len, struct tn_error *err) {
  if (ws->failed)
    return sticky(ws, err);
  while (len > 0) {
    const char *nl = memchr(data, '\n', len);
    if (!nl) {
      int rc = tn_buf_append(&ws->partial, data, len);
      if (rc == TN_ERR_TOOBIG)
        return too_big(ws, ws->partial.len + len, err);
      if (rc)
        return fail(ws, rc, err);
      ws->bytes += len;
      return 0;
    }
    size_t seg = (size_t)(nl - data);
    int rc;
    if (ws->partial.len == 0) {
      rc = handle_line(ws, data, seg, err); /* the whole event is in this chunk: no copy */
    } else {
      rc = tn_buf_append(&ws->partial, data, seg);
      if (rc == TN_ERR_TOOBIG)
        return too_big(ws, ws->partial.len + seg, err);
      if (rc)
        return fail(ws, rc, err);
      rc = handle_line(ws, ws->partial.data, ws->partial.len, err);
      tn_buf_reset(&ws->partial);
    }
    ws->bytes += seg + 1;
    if (rc)
      return rc;
    data = nl + 1;
    len -= seg + 1;
  }
  return 0;
}

int tn_watchstream_finish(struct tn_watchstream *ws, struct tn_error *err) {
  if (ws->failed)
    return sticky(ws, err);
  if (ws->partial.len == 0 || all_space(ws->partial.data, ws->partial.len))
    return 0;
  json_t *probe = json_loadb(ws->partial.data, ws->partial.len, 0, NULL);
  if (!probe) {
    tn_error_set(&ws->error, TN_EINVALID,
                 "watch stream: the body ended inside an event (%zu bytes of it arrived)", ws->partial.len);
    return fail(ws, TN_EINVALID, err);
  }
  json_decref(probe);
  int rc = handle_line(ws, ws->partial.data, ws->partial.len, err);
  tn_buf_reset(&ws->partial);
  return rc;
}

static int code_for_status(long http, const char *reason) {
  if (http == 410 || strcmp(reason, "Expired") == 0 || strcmp(reason, "Gone") == 0)
    return TN_EGONE;
  if (http == 429 || strcmp(reason, "TooManyRequests") == 0)
    return TN_ETHROTTLED;
  if (http >= 500)
    return TN_EUNAVAILABLE;
  if (http == 401 || http == 403)
    return TN_EFORBIDDEN;
  if (http == 404)
    return TN_ENOTFOUND;
  if (http == 400 || http == 422)
    return TN_EINVALID;
  return TN_EAPI;
}

int tn_watch_status_error(const json_t *status, struct tn_error *err) {
  long http = (long)json_integer_value(json_object_get(status, "code"));
  const char *reason = json_string_value(json_object_get(status, "reason"));
  const char *message = json_string_value(json_object_get(status, "message"));
  int code = code_for_status(http, reason ? reason : "");
  if (!err)
    return code;
  tn_error_set(err, code, "watch error %ld %s: %s", http, reason ? reason : "",
               message ? message : "(no message)");
  err->http_status = (int)http;
  snprintf(err->reason, sizeof err->reason, "%s", reason ? reason : "");
  json_t *causes = json_object_get(json_object_get(status, "details"), "causes");
  size_t i;
  json_t *c;
  json_array_foreach(causes, i, c) {
    if (err->n_causes >= TN_ERROR_MAX_CAUSES)
      break;
    struct tn_error_cause *dst = &err->causes[err->n_causes++];
    const char *f = json_string_value(json_object_get(c, "field"));
    const char *r = json_string_value(json_object_get(c, "reason"));
    const char *m = json_string_value(json_object_get(c, "message"));
    snprintf(dst->field, sizeof dst->field, "%s", f ? f : "");
    snprintf(dst->reason, sizeof dst->reason, "%s", r ? r : "");
    snprintf(dst->message, sizeof dst->message, "%s", m ? m : "");
  }
  return code;
}
