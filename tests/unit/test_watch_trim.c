/* test_watch_trim.c - cutting metadata.managedFields out of a watch event's text before it is
 * parsed (kube/watchstream.h, issue 18): the object is the same minus that member, wherever it
 * sits among its neighbours, with strings holding brackets and escaped quotes left alone. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kube/watchstream.h"

/* The event parsed after trimming, and the same event parsed whole with managedFields deleted,
 * must be equal JSON. */
static void check(const char *line) {
  size_t len = strlen(line);
  char *out = malloc(len + 1);
  size_t n = tn_watchstream_trim_managed_fields(line, len, out);
  out[n] = 0;
  json_error_t e;
  json_t *got = json_loads(out, 0, &e);
  cr_assert_not_null(got, "trimmed text is not JSON: %s in %s", e.text, out);
  json_t *want = json_loads(line, 0, &e);
  cr_assert_not_null(want);
  json_object_del(json_object_get(json_object_get(want, "object"), "metadata"), "managedFields");
  cr_assert(json_equal(got, want), "got %s", out);
  json_decref(got);
  json_decref(want);
  free(out);
}

Test(watch_trim, managed_fields_is_cut_wherever_it_sits) {
  check("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\","
        "\"managedFields\":["
        "{\"manager\":\"m\",\"fieldsV1\":{\"f:metadata\":{\"f:labels\":{\".\":{},\"f:x\":{}}}}}]},\"spec\":{}"
        "}}");
  check("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"managedFields\":[{\"a\":[1,[2,{\"b\":[]}]]}],"
        "\"name\":\"first\"}}}");
  check("{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"managedFields\":[]}}}");
  check("{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"n\" , \"managedFields\":[]}}}");
  /* not the API server's compact form: left whole, for the parser (and the transform) */
  const char *spaced = "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"managedFields\" :[]}}}";
  char out[128];
  cr_assert_eq(tn_watchstream_trim_managed_fields(spaced, strlen(spaced), out), strlen(spaced));
}

Test(watch_trim, strings_with_brackets_and_quotes_do_not_confuse_it) {
  check("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\",\"annotations\":{\"a\":\"]}\\\"[\"},"
        "\"managedFields\":[{\"manager\":\"wei]rd\\\"[{\",\"x\":\"\\\\\"}]},\"spec\":{\"k\":\"]\"}}}");
  /* an annotation whose value spells the member: an escaped quote never matches */
  check("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\",\"annotations\":{\"a\":"
        "\"\\\"managedFields\\\":[1]\"}}}}");
}

Test(watch_trim, without_the_member_the_text_is_unchanged) {
  const char *line = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"}}}";
  char out[128];
  size_t n = tn_watchstream_trim_managed_fields(line, strlen(line), out);
  cr_assert_eq(n, strlen(line));
  cr_assert_eq(memcmp(out, line, n), 0);
  /* an unterminated array: left for the parser to refuse */
  const char *bad = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"managedFields\":[{\"a\":1}";
  n = tn_watchstream_trim_managed_fields(bad, strlen(bad), out);
  cr_assert_eq(n, strlen(bad));
}

struct seen {
  int n;
  json_t *last;
};

static int on_event(void *ud, enum tn_watch_type type, json_t *obj, struct tn_error *err) {
  struct seen *s = ud;
  s->n++;
  json_decref(s->last);
  s->last = json_incref(obj);
  return 0;
}

Test(watch_trim, a_stream_that_drops_it_hands_out_objects_without_it) {
  struct seen s = {0};
  struct tn_watchstream *ws = tn_watchstream_new(0, on_event, &s);
  tn_watchstream_drop_managed_fields(ws, true);
  const char *ev =
      "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\",\"managedFields\":[{\"m\":1}]}}}\n";
  struct tn_error err;
  /* split across feeds, as the transport hands it over */
  cr_assert_eq(tn_watchstream_feed(ws, ev, 20, &err), 0);
  cr_assert_eq(tn_watchstream_feed(ws, ev + 20, strlen(ev) - 20, &err), 0);
  cr_assert_eq(s.n, 1);
  cr_assert_null(json_object_get(json_object_get(s.last, "metadata"), "managedFields"));
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(s.last, "metadata"), "name")), "x");
  /* and one that does not keeps it */
  tn_watchstream_drop_managed_fields(ws, false);
  cr_assert_eq(tn_watchstream_feed(ws, ev, strlen(ev), &err), 0);
  cr_assert_not_null(json_object_get(json_object_get(s.last, "metadata"), "managedFields"));
  json_decref(s.last);
  tn_watchstream_free(ws);
}
