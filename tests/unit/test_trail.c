/* test_trail.c - the pure parts of the read API's history and audit endpoints (trail.c): the
 * history page with each version's diff from the one before (same uid only), its continue token,
 * and the scrubbing of secret-looking members of audit details. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "api/trail.h"

static json_t *row(const char *uid, int gen, const char *at, const char *spec) {
  char g[16];
  snprintf(g, sizeof g, "%d", gen);
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:n}", "tenant", "acme", "uid", uid, "generation", g,
                   "at", at, "at_cursor", at, "actor", "alice", "spec", spec, "correlation_id");
}

Test(trail, a_page_diffs_each_version_from_the_one_before_it) {
  json_t *rows = json_array();
  json_array_append_new(rows, row("u2", 1, "2026-12-07T10:00:03.000001Z", "{\"plan\":\"premium\"}"));
  json_array_append_new(rows, row("u1", 3, "2026-12-07T10:00:02.000000Z", "{\"plan\":\"premium\",\"x\":1}"));
  json_array_append_new(rows, row("u1", 2, "2026-12-07T10:00:01.000000Z", "{\"plan\":\"starter\",\"x\":1}"));
  json_array_append_new(rows, row("u1", 1, "2026-12-07T10:00:00.000000Z", "{\"plan\":\"starter\"}"));
  /* limit 2 with 4 rows: two items, the third row is the second's predecessor, and more to come */
  json_t *p = tn_trail_history_page(rows, "acme", 2);
  cr_assert_not_null(p);
  cr_assert_str_eq(json_string_value(json_object_get(p, "kind")), "TenantHistory");
  json_t *items = json_object_get(p, "items");
  cr_assert_eq(json_array_size(items), 2);
  json_t *a = json_array_get(items, 0), *b = json_array_get(items, 1);
  /* u2 is another life of the name: no predecessor, everything added */
  cr_assert(json_is_null(json_object_get(a, "previousGeneration")));
  cr_assert_str_eq(json_string_value(json_array_get(json_object_get(a, "changes"), 0)),
                   "+ spec.plan: \"premium\"");
  cr_assert_eq(json_integer_value(json_object_get(b, "generation")), 3);
  cr_assert_eq(json_integer_value(json_object_get(b, "previousGeneration")), 2);
  json_t *ch = json_object_get(b, "changes");
  cr_assert_eq(json_array_size(ch), 1, "%s", json_dumps(ch, 0));
  cr_assert_str_eq(json_string_value(json_array_get(ch, 0)), "~ spec.plan: \"starter\" -> \"premium\"");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(b, "spec"), "plan")), "premium");
  const char *cont = json_string_value(json_object_get(json_object_get(p, "metadata"), "continue"));
  cr_assert_str_eq(cont, "2026-12-07T10:00:02.000000Z_3_u1");
  char at[40], gen[24], uid[72];
  cr_assert_eq(tn_trail_history_cursor(cont, at, gen, uid), -EINVAL, "u1 is not a uid of hex digits");
  json_decref(p);
  /* the last page: no continue */
  p = tn_trail_history_page(rows, "acme", 4);
  cr_assert_eq(json_array_size(json_object_get(p, "items")), 4);
  cr_assert_null(json_object_get(json_object_get(p, "metadata"), "continue"));
  json_t *first = json_array_get(json_object_get(p, "items"), 3);
  cr_assert(json_is_null(json_object_get(first, "previousGeneration")));
  json_decref(p);
  json_decref(rows);
}

Test(trail, continue_tokens_are_checked) {
  char at[40], gen[24], uid[72];
  cr_assert_eq(tn_trail_history_cursor("2026-12-07T10:00:02.000000Z_3_0f3c2a1e-1b2c-4d5e-8f90-123456789abc",
                                       at, gen, uid),
               0);
  cr_assert_str_eq(at, "2026-12-07T10:00:02.000000Z");
  cr_assert_str_eq(gen, "3");
  cr_assert_str_eq(uid, "0f3c2a1e-1b2c-4d5e-8f90-123456789abc");
  const char *bad[] = {"",
                       "x",
                       "2026-12-07T10:00:02Z_3",
                       "2026-12-07T10:00:02.000000Z_a_ab",
                       "2026-12-07T10:00:02.000000Z_3_ab'; drop table x; --",
                       "2026'12-07T10:00:02.000000Z_3_ab",
                       "2026-12-07T10:00:02.000000Z__ab"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(tn_trail_history_cursor(bad[i], at, gen, uid), -EINVAL, "%s", bad[i]);
}

Test(trail, secret_looking_members_are_removed_from_details) {
  json_t *d = json_loads("{\"reason\":\"x\",\"Password\":\"p\",\"nested\":{\"clientSecret\":\"s\",\"keep\":1,"
                         "\"list\":[{\"pgDsn\":\"postgres://u:p@h/db\",\"apiToken\":\"t\",\"ok\":true}]},"
                         "\"credentialsVersion\":2,\"privateKeyPem\":\"k\"}",
                         0, NULL);
  tn_trail_scrub(d);
  char *s = json_dumps(d, JSON_SORT_KEYS | JSON_COMPACT);
  cr_assert_str_eq(s, "{\"nested\":{\"keep\":1,\"list\":[{\"ok\":true}]},\"reason\":\"x\"}");
  free(s);
  json_decref(d);
}
