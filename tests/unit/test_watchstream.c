/* test_watchstream.c - the incremental watch stream parser: any chunking gives the same events as
 * parsing the recorded stream whole; truncation, oversize events, bad JSON and ERROR events. */
#include <criterion/criterion.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/watchstream.h"

/* A recorded streaming list of ConfigMaps from the local API server (v1.37.2): three ADDED, the
 * initial-events-end BOOKMARK, then ADDED, MODIFIED, DELETED and two plain BOOKMARKs. */
#define RECORDED "configmaps-streaming-list.ndjson"
#define RECORDED_EVENTS 9

static char *slurp_fixture(const char *name, size_t *len) {
  char src[1024], path[1200];
  snprintf(src, sizeof src, "%s", __FILE__);
  snprintf(path, sizeof path, "%s/fixtures/watch/%s", dirname(src), name);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *p = malloc((size_t)n + 1);
  cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
  p[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return p;
}

/* Collects [type, object] pairs; optionally fails at event number fail_at (1-based). */
struct collector {
  json_t *events;
  size_t fail_at;
};

static int collect(void *ud, enum tn_watch_type type, json_t *obj, struct tn_error *err) {
  struct collector *c = ud;
  if (c->fail_at && json_array_size(c->events) + 1 == c->fail_at)
    return tn_error_set(err, TN_ECANCELED, "handler refused event %zu", c->fail_at);
  json_array_append_new(c->events, json_pack("[sO]", tn_watch_type_name(type), obj));
  return 0;
}

static void collector_init(struct collector *c) {
  c->events = json_array();
  c->fail_at = 0;
}

/* The reference: each line parsed on its own with jansson. */
static json_t *reference_events(const char *text) {
  json_t *out = json_array();
  const char *p = text;
  while (*p) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    json_t *ev = json_loadb(p, n, 0, NULL);
    cr_assert_not_null(ev);
    json_array_append_new(out, json_pack("[OO]", json_object_get(ev, "type"), json_object_get(ev, "object")));
    json_decref(ev);
    p += n + (nl ? 1 : 0);
  }
  return out;
}

/* Feeds text cut at the given offsets (ascending, within len) and finishes. */
static int feed_split(struct tn_watchstream *ws, const char *text, size_t len, const size_t *cuts,
                      size_t n_cuts, struct tn_error *err) {
  size_t at = 0;
  for (size_t i = 0; i <= n_cuts; i++) {
    size_t end = i < n_cuts ? cuts[i] : len;
    int rc = tn_watchstream_feed(ws, text + at, end - at, err);
    if (rc)
      return rc;
    at = end;
  }
  return tn_watchstream_finish(ws, err);
}

Test(watchstream, parses_the_recorded_stream_whole) {
  size_t len;
  char *text = slurp_fixture(RECORDED, &len);
  struct collector c;
  collector_init(&c);
  struct tn_watchstream *ws = tn_watchstream_new(0, collect, &c);
  struct tn_error err;
  cr_assert_eq(tn_watchstream_feed(ws, text, len, &err), 0, "%s", err.message);
  cr_assert_eq(tn_watchstream_finish(ws, &err), 0, "%s", err.message);
  cr_assert_eq(json_array_size(c.events), RECORDED_EVENTS);
  cr_assert_eq(tn_watchstream_events(ws), RECORDED_EVENTS);
  cr_assert_eq(tn_watchstream_bytes(ws), len);

  static const char *types[] = {"ADDED",    "ADDED",   "ADDED",    "BOOKMARK", "ADDED",
                                "MODIFIED", "DELETED", "BOOKMARK", "BOOKMARK"};
  for (size_t i = 0; i < RECORDED_EVENTS; i++)
    cr_assert_str_eq(json_string_value(json_array_get(json_array_get(c.events, i), 0)), types[i], "event %zu",
                     i);
  json_t *bm = json_array_get(json_array_get(c.events, 3), 1);
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(json_object_get(bm, "metadata"), "annotations"),
                                        "k8s.io/initial-events-end")),
      "true");
  json_t *pre_b = json_array_get(json_array_get(c.events, 2), 1);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(pre_b, "data"), "multi")),
                   "line1\nline2 \"quoted\" \xc3\xbcn\xc3\xaf\x63\xc3\xb6\x64\xc3\xa9",
                   "escaped newline, quotes and UTF-8 survive");
  json_t *ref = reference_events(text);
  cr_assert(json_equal(ref, c.events));
  json_decref(ref);
  tn_watchstream_free(ws);
  json_decref(c.events);
  free(text);
}

Test(watchstream, every_two_way_split_gives_identical_events) {
  size_t len;
  char *text = slurp_fixture(RECORDED, &len);
  json_t *ref = reference_events(text);
  struct collector c;
  collector_init(&c);
  struct tn_watchstream *ws = tn_watchstream_new(0, collect, &c);
  for (size_t i = 0; i <= len; i++) {
    json_array_clear(c.events);
    tn_watchstream_reset(ws);
    struct tn_error err;
    int rc = feed_split(ws, text, len, &i, 1, &err);
    cr_assert_eq(rc, 0, "split at %zu: %s", i, err.message);
    cr_assert(json_equal(ref, c.events), "split at %zu gave different events", i);
  }
  tn_watchstream_free(ws);
  json_decref(c.events);
  json_decref(ref);
  free(text);
}

Test(watchstream, one_byte_chunks_give_identical_events) {
  size_t len;
  char *text = slurp_fixture(RECORDED, &len);
  json_t *ref = reference_events(text);
  struct collector c;
  collector_init(&c);
  struct tn_watchstream *ws = tn_watchstream_new(0, collect, &c);
  struct tn_error err;
  for (size_t i = 0; i < len; i++)
    cr_assert_eq(tn_watchstream_feed(ws, text + i, 1, &err), 0, "byte %zu: %s", i, err.message);
  cr_assert_eq(tn_watchstream_finish(ws, &err), 0);
  cr_assert(json_equal(ref, c.events));
  /* And three-way splits around every event boundary (the newline and its neighbours). */
  for (size_t i = 0; i < len; i++) {
    if (text[i] != '\n')
      continue;
    for (size_t a = i > 0 ? i - 1 : 0; a <= i + 1 && a <= len; a++) {
      size_t cuts[2] = {a, a + 3 <= len ? a + 3 : len};
      json_array_clear(c.events);
      tn_watchstream_reset(ws);
      cr_assert_eq(feed_split(ws, text, len, cuts, 2, &err), 0);
      cr_assert(json_equal(ref, c.events), "cuts %zu,%zu", cuts[0], cuts[1]);
    }
  }
  tn_watchstream_free(ws);
  json_decref(c.events);
  json_decref(ref);
  free(text);
}

Test(watchstream, several_events_share_one_chunk) {
  const char *part1 = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
                      "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a\"},\"x\":1}}\n"
                      "\r\n" /* blank lines are ignored */
                      "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\r\n"
                      "{\"type\":\"ADDED\",\"obj";
  const char *part2 =
      "ect\":{\"metadata\":{\"name\":\"b\"}}}\n{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":"
      "{\"resourceVersion\":\"9\"}}}\n";
  struct collector c;
  collector_init(&c);
  struct tn_watchstream *ws = tn_watchstream_new(0, collect, &c);
  cr_assert_eq(tn_watchstream_feed(ws, part1, strlen(part1), NULL), 0);
  cr_assert_eq(json_array_size(c.events), 3, "the three complete events are out before the rest arrives");
  cr_assert_eq(tn_watchstream_feed(ws, part2, strlen(part2), NULL), 0);
  cr_assert_eq(tn_watchstream_finish(ws, NULL), 0);
  json_t *want = json_loads("[[\"ADDED\",{\"metadata\":{\"name\":\"a\"}}],"
                            "[\"MODIFIED\",{\"metadata\":{\"name\":\"a\"},\"x\":1}],"
                            "[\"DELETED\",{\"metadata\":{\"name\":\"a\"}}],"
                            "[\"ADDED\",{\"metadata\":{\"name\":\"b\"}}],"
                            "[\"BOOKMARK\",{\"metadata\":{\"resourceVersion\":\"9\"}}]]",
                            0, NULL);
  cr_assert(json_equal(want, c.events));
  json_decref(want);
  tn_watchstream_free(ws);
  json_decref(c.events);
}

Test(watchstream, a_truncated_final_event_is_an_error) {
  size_t len;
  char *text = slurp_fixture(RECORDED, &len);
  struct collector c;
  collector_init(&c);
  struct tn_watchstream *ws = tn_watchstream_new(0, collect, &c);
  struct tn_error err;
  cr_assert_eq(tn_watchstream_feed(ws, text, len - 20, &err), 0);
  cr_assert_eq(json_array_size(c.events), RECORDED_EVENTS - 1);
  cr_assert_eq(tn_watchstream_finish(ws, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "ended inside an event") != NULL, "%s", err.message);
  cr_assert_eq(json_array_size(c.events), RECORDED_EVENTS - 1, "nothing of the partial event is delivered");
  tn_watchstream_free(ws);
  json_decref(c.events);
  free(text);
}

Test(watchstream, a_complete_final_event_without_newline_is_delivered) {
  size_t len;
  char *text = slurp_fixture(RECORDED, &len);
  struct collector c;
  collector_init(&c);
  struct tn_watchstream *ws = tn_watchstream_new(0, collect, &c);
  cr_assert_eq(tn_watchstream_feed(ws, text, len - 1, NULL), 0); /* without the last '\n' */
  cr_assert_eq(json_array_size(c.events), RECORDED_EVENTS - 1);
  cr_assert_eq(tn_watchstream_finish(ws, NULL), 0);
  cr_assert_eq(json_array_size(c.events), RECORDED_EVENTS);
  tn_watchstream_free(ws);
  json_decref(c.events);
  free(text);
}

/* An ADDED event of exactly n bytes (without its newline). */
static char *event_of_size(size_t n) {
  const char *head = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"big\"},\"data\":{\"k\":\"";
  const char *tail = "\"}}}";
  size_t h = strlen(head), t = strlen(tail);
  cr_assert(n > h + t);
  char *p = malloc(n + 2);
  memcpy(p, head, h);
  memset(p + h, 'x', n - h - t);
  memcpy(p + n - t, tail, t);
  p[n] = '\n';
  p[n + 1] = '\0';
  return p;
}

Test(watchstream, an_event_over_the_cap_is_refused_however_it_arrives) {
  struct collector c;
  collector_init(&c);
  struct tn_error err;
  char *ok = event_of_size(1024), *big = event_of_size(1025);

  /* Exactly at the cap: accepted, whole or in pieces. */
  struct tn_watchstream *ws = tn_watchstream_new(1024, collect, &c);
  cr_assert_eq(tn_watchstream_feed(ws, ok, 1025, &err), 0, "%s", err.message);
  cr_assert_eq(tn_watchstream_feed(ws, ok, 500, &err), 0);
  cr_assert_eq(tn_watchstream_feed(ws, ok + 500, 525, &err), 0, "%s", err.message);
  cr_assert_eq(json_array_size(c.events), 2);

  /* One byte over, in one chunk (parsed in place) ... */
  cr_assert_eq(tn_watchstream_feed(ws, big, 1026, &err), TN_ETOOBIG);
  cr_assert(strstr(err.message, "1024 byte limit") != NULL, "%s", err.message);
  cr_assert_eq(tn_watchstream_feed(ws, ok, 1025, &err), TN_ETOOBIG, "the error is sticky");
  cr_assert_eq(tn_watchstream_finish(ws, &err), TN_ETOOBIG);
  cr_assert_eq(json_array_size(c.events), 2);

  /* ... or in small pieces without a newline yet: refused as soon as it passes the cap. */
  tn_watchstream_reset(ws);
  int rc = 0;
  size_t at = 0;
  while (rc == 0 && at < 1025) {
    rc = tn_watchstream_feed(ws, big + at, 100 < 1025 - at ? 100 : 1025 - at, &err);
    at += 100;
  }
  cr_assert_eq(rc, TN_ETOOBIG);
  cr_assert_eq(json_array_size(c.events), 2);
  tn_watchstream_free(ws);

  /* The default cap is 16 MiB. */
  char *huge = event_of_size(TN_WATCH_MAX_EVENT_BYTES + 1);
  ws = tn_watchstream_new(0, collect, &c);
  rc = 0;
  for (size_t off = 0; rc == 0 && off < TN_WATCH_MAX_EVENT_BYTES + 2; off += 1 << 20) {
    size_t n =
        TN_WATCH_MAX_EVENT_BYTES + 2 - off < (1 << 20) ? TN_WATCH_MAX_EVENT_BYTES + 2 - off : (1 << 20);
    rc = tn_watchstream_feed(ws, huge + off, n, &err);
  }
  cr_assert_eq(rc, TN_ETOOBIG);
  tn_watchstream_free(ws);
  free(huge);
  free(ok);
  free(big);
  json_decref(c.events);
}

static int feed_one(const char *line, struct tn_error *err) {
  struct collector c;
  collector_init(&c);
  struct tn_watchstream *ws = tn_watchstream_new(0, collect, &c);
  int rc = tn_watchstream_feed(ws, line, strlen(line), err);
  if (rc == 0)
    rc = tn_watchstream_finish(ws, err);
  size_t delivered = json_array_size(c.events);
  tn_watchstream_free(ws);
  json_decref(c.events);
  cr_assert(rc == 0 || delivered == 0, "nothing is delivered from a bad event");
  return rc;
}

Test(watchstream, invalid_events_are_errors_with_words) {
  struct tn_error err;
  cr_assert_eq(feed_one("{\"type\":\"ADDED\",\"object\":{\"a\":}}\n", &err), TN_EINVALID);
  cr_assert(strstr(err.message, "not valid JSON") != NULL, "%s", err.message);
  cr_assert_eq(feed_one("[1,2]\n", &err), TN_EINVALID);
  cr_assert(strstr(err.message, "\"type\"") != NULL, "%s", err.message);
  cr_assert_eq(feed_one("{\"type\":\"ADDED\"}\n", &err), TN_EINVALID);
  cr_assert_eq(feed_one("{\"type\":\"ADDED\",\"object\":\"x\"}\n", &err), TN_EINVALID);
  cr_assert_eq(feed_one("{\"type\":\"RENAMED\",\"object\":{}}\n", &err), TN_EINVALID);
  cr_assert(strstr(err.message, "RENAMED") != NULL, "%s", err.message);
  cr_assert_eq(feed_one("{\"type\":\"ADDED\",\"object\":{}} trailing\n", &err), TN_EINVALID);
  cr_assert_eq(feed_one("garbage without newline", &err), TN_EINVALID);
  cr_assert_eq(feed_one("\n\n  \n", &err), 0, "whitespace only is an empty stream");

  /* After an error the stream stays failed until reset. */
  struct collector c;
  collector_init(&c);
  struct tn_watchstream *ws = tn_watchstream_new(0, collect, &c);
  const char *bad = "{oops}\n", *good = "{\"type\":\"ADDED\",\"object\":{}}\n";
  cr_assert_eq(tn_watchstream_feed(ws, bad, strlen(bad), &err), TN_EINVALID);
  cr_assert_eq(tn_watchstream_feed(ws, good, strlen(good), &err), TN_EINVALID);
  cr_assert_eq(json_array_size(c.events), 0);
  tn_watchstream_reset(ws);
  cr_assert_eq(tn_watchstream_feed(ws, good, strlen(good), &err), 0);
  cr_assert_eq(json_array_size(c.events), 1);
  tn_watchstream_free(ws);
  json_decref(c.events);
}

Test(watchstream, a_handler_error_stops_the_stream) {
  size_t len;
  char *text = slurp_fixture(RECORDED, &len);
  struct collector c;
  collector_init(&c);
  c.fail_at = 4;
  struct tn_watchstream *ws = tn_watchstream_new(0, collect, &c);
  struct tn_error err;
  cr_assert_eq(tn_watchstream_feed(ws, text, len, &err), TN_ECANCELED);
  cr_assert_str_eq(err.message, "handler refused event 4");
  cr_assert_eq(json_array_size(c.events), 3);
  cr_assert_eq(tn_watchstream_finish(ws, &err), TN_ECANCELED);
  tn_watchstream_free(ws);
  json_decref(c.events);
  free(text);
}

Test(watchstream, an_error_event_with_410_means_relist) {
  size_t len;
  char *text = slurp_fixture("events-expired.ndjson", &len); /* recorded after an etcd compaction */
  struct collector c;
  collector_init(&c);
  struct tn_watchstream *ws = tn_watchstream_new(0, collect, &c);
  cr_assert_eq(tn_watchstream_feed(ws, text, len, NULL), 0);
  cr_assert_eq(tn_watchstream_finish(ws, NULL), 0);
  cr_assert_eq(json_array_size(c.events), 1);
  json_t *ev = json_array_get(c.events, 0);
  cr_assert_str_eq(json_string_value(json_array_get(ev, 0)), "ERROR");
  struct tn_error err;
  cr_assert_eq(tn_watch_status_error(json_array_get(ev, 1), &err), TN_EGONE);
  cr_assert_eq(err.code, TN_EGONE);
  cr_assert_eq(err.http_status, 410);
  cr_assert_str_eq(err.reason, "Expired");
  cr_assert(strstr(err.message, "too old") != NULL, "%s", err.message);
  tn_watchstream_free(ws);
  json_decref(c.events);
  free(text);
}

Test(watchstream, status_codes_map_to_error_values) {
  struct {
    const char *status;
    int code;
  } cases[] = {
      {"{\"code\":410,\"reason\":\"Gone\"}", TN_EGONE},
      {"{\"reason\":\"Expired\"}", TN_EGONE},
      {"{\"code\":429,\"reason\":\"TooManyRequests\"}", TN_ETHROTTLED},
      {"{\"code\":500,\"reason\":\"InternalError\",\"message\":\"etcd event received with PrevKv=nil\"}",
       TN_EUNAVAILABLE},
      {"{\"code\":403,\"reason\":\"Forbidden\"}", TN_EFORBIDDEN},
      {"{\"code\":404,\"reason\":\"NotFound\"}", TN_ENOTFOUND},
      {"{\"code\":422,\"reason\":\"Invalid\"}", TN_EINVALID},
      {"{\"code\":409,\"reason\":\"Conflict\"}", TN_EAPI},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *st = json_loads(cases[i].status, 0, NULL);
    struct tn_error err;
    cr_assert_eq(tn_watch_status_error(st, &err), cases[i].code, "%s", cases[i].status);
    cr_assert_eq(err.code, cases[i].code);
    json_decref(st);
  }
  json_t *st =
      json_loads("{\"code\":504,\"reason\":\"Timeout\",\"message\":\"Too large resource version\","
                 "\"details\":{\"causes\":[{\"reason\":\"ResourceVersionTooLarge\",\"message\":\"Too large "
                 "resource version\"}]}}",
                 0, NULL);
  struct tn_error err;
  cr_assert_eq(tn_watch_status_error(st, &err), TN_EUNAVAILABLE);
  cr_assert_eq(err.n_causes, 1);
  cr_assert_str_eq(err.causes[0].reason, "ResourceVersionTooLarge");
  cr_assert_eq(tn_watch_status_error(st, NULL), TN_EUNAVAILABLE, "err may be NULL");
  json_decref(st);
}
