/* test_cloudevents.c - the lifecycle events' CloudEvents payloads (tenancy/cloudevents.h): the
 * envelope's attributes, the types, the cluster name, and that data never carries a secret. */
#include <criterion/criterion.h>
#include <string.h>

#include "tenancy/cloudevents.h"

static const char *str(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

Test(cloudevents, a_complete_event_has_every_attribute) {
  json_t *data = tn_ce_transition_data("Draft", "Active", 3, "contract signed", "standard", "eu-west-1");
  struct tn_ce c = {.id = "6f1c1e9a-0d0b-8c3e-9e61-0d1f2a3b4c5d",
                    .cluster = "prod-eu",
                    .event = TN_CE_ACTIVATED,
                    .tenant = "acme",
                    .time = "2026-12-07T10:00:00.123456Z",
                    .sequence = 7,
                    .correlation_id = "cid-1",
                    .actor = "alice",
                    .data = data};
  struct tn_error err = {0};
  json_t *ev = tn_ce_build(&c, &err);
  cr_assert_not_null(ev, "%s", err.message);
  cr_assert_str_eq(str(ev, "specversion"), "1.0");
  cr_assert_str_eq(str(ev, "id"), c.id);
  cr_assert_str_eq(str(ev, "source"), "tenancy.dev/prod-eu");
  cr_assert_str_eq(str(ev, "type"), "dev.tenancy.tenant.activated.v1");
  cr_assert_str_eq(str(ev, "subject"), "tenant/acme");
  cr_assert_str_eq(str(ev, "time"), c.time);
  cr_assert_str_eq(str(ev, "datacontenttype"), "application/json");
  cr_assert_eq(json_integer_value(json_object_get(ev, "tenancysequence")), 7);
  cr_assert_str_eq(str(ev, "correlationid"), "cid-1");
  cr_assert_str_eq(str(ev, "actor"), "alice");
  json_t *d = json_object_get(ev, "data");
  cr_assert_str_eq(str(d, "from"), "Draft");
  cr_assert_str_eq(str(d, "to"), "Active");
  cr_assert_eq(json_integer_value(json_object_get(d, "generation")), 3);
  cr_assert_str_eq(str(d, "stateReason"), "contract signed");
  cr_assert_str_eq(str(d, "plan"), "standard");
  cr_assert_str_eq(str(d, "region"), "eu-west-1");
  cr_assert_eq(json_object_size(ev), 11);
  json_decref(ev);
  json_decref(data);
}

Test(cloudevents, the_outbox_leaves_time_and_sequence_to_the_database) {
  struct tn_ce c = {.id = "i", .event = TN_CE_CREATED, .tenant = "acme", .correlation_id = "c", .actor = "a"};
  json_t *ev = tn_ce_build(&c, NULL);
  cr_assert_not_null(ev);
  cr_assert_null(json_object_get(ev, "time"));
  cr_assert_null(json_object_get(ev, "tenancysequence"));
  cr_assert_str_eq(str(ev, "source"), "tenancy.dev/local", "the default cluster name");
  cr_assert(json_is_object(json_object_get(ev, "data")) &&
            json_object_size(json_object_get(ev, "data")) == 0);
  json_decref(ev);
  json_t *d = tn_ce_transition_data(NULL, "Draft", 1, NULL, "", NULL);
  cr_assert(json_is_null(json_object_get(d, "from")), "a new tenant comes from null");
  cr_assert_null(json_object_get(d, "plan"), "an empty value is left out");
  json_decref(d);
}

Test(cloudevents, types_and_actions) {
  char t[96];
  for (int i = 0; tn_ce_events[i]; i++) {
    cr_assert_eq(tn_ce_type(tn_ce_events[i], t, sizeof t), 0);
    cr_assert(strncmp(t, "dev.tenancy.tenant.", 19) == 0 && strstr(t, ".v1"), "%s", t);
  }
  cr_assert_eq(tn_ce_type("exploded", t, sizeof t), TN_EINVALID);
  cr_assert_eq(tn_ce_type(TN_CE_CREDENTIALS_ROTATED, t, 10), TN_EINVALID, "a too small buffer");
  cr_assert_eq(tn_ce_type(TN_CE_KEY_ROTATED, t, sizeof t), 0);
  cr_assert_str_eq(t, "dev.tenancy.tenant.key.rotated.v1");
  static const char *const pairs[][2] = {
      {"create", "created"},   {"activate", "activated"}, {"suspend", "suspended"}, {"resume", "resumed"},
      {"archive", "archived"}, {"restore", "restored"},   {"delete", "deleted"}};
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
    cr_assert_str_eq(tn_ce_event_for_action(pairs[i][0]), pairs[i][1]);
  cr_assert_null(tn_ce_event_for_action("none"));
  cr_assert_null(tn_ce_event_for_action("repair-drift"));
  cr_assert_null(tn_ce_event_for_action(NULL));
}

Test(cloudevents, cluster_names_are_dns_labels) {
  static const char *const good[] = {"local", "a", "prod-eu-1", "0abc"};
  static const char *const bad[] = {
      "",     "-a",   "a-",
      "Prod", "a.b",  "a/b",
      "a b",  "x\"y", "0123456789012345678901234567890123456789012345678901234567890123"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    cr_assert(tn_ce_cluster_name_valid(good[i]), "%s", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_not(tn_ce_cluster_name_valid(bad[i]), "%s", bad[i]);
  cr_assert_not(tn_ce_cluster_name_valid(NULL));
  struct tn_ce c = {.id = "i",
                    .cluster = "Bad Name",
                    .event = TN_CE_CREATED,
                    .tenant = "t",
                    .correlation_id = "c",
                    .actor = "a"};
  struct tn_error err = {0};
  cr_assert_null(tn_ce_build(&c, &err));
  cr_assert(strstr(err.message, "DNS label"), "%s", err.message);
}

Test(cloudevents, data_never_holds_a_secret) {
  static const char *const refused[] = {
      "{\"password\":\"x\"}",
      "{\"nested\":{\"dbPassword\":\"x\"}}",
      "{\"list\":[{\"clientSecret\":\"x\"}]}",
      "{\"token\":\"x\"}",
      "{\"privateKey\":\"x\"}",
      "{\"dsn\":\"host=x\"}",
      "{\"credentials\":{\"user\":\"u\"}}",
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    json_t *d = json_loads(refused[i], 0, NULL);
    char why[256];
    cr_assert_not(tn_ce_data_safe(d, why, sizeof why), "accepted %s", refused[i]);
    cr_assert(strncmp(why, "data", 4) == 0, "why: %s", why);
    struct tn_ce c = {
        .id = "i", .event = TN_CE_UPDATED, .tenant = "t", .correlation_id = "c", .actor = "a", .data = d};
    struct tn_error err = {0};
    cr_assert_null(tn_ce_build(&c, &err), "built an event with %s", refused[i]);
    cr_assert_eq(err.code, TN_EINVALID);
    json_decref(d);
  }
  /* Values that carry one (user text: a stateReason): the event is sent with them redacted. */
  static const char *const redacted[] = {
      "{\"uri\":\"postgresql://app:hunter2@db:5432/x\"}",
      "{\"note\":\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}",
      "{\"pem\":[\"-----BEGIN PRIVATE KEY-----\"]}",
      "{\"stateReason\":\"host=db password=hunter2\"}",
  };
  for (size_t i = 0; i < sizeof redacted / sizeof redacted[0]; i++) {
    json_t *d = json_loads(redacted[i], 0, NULL);
    char why[256];
    cr_assert_not(tn_ce_data_safe(d, why, sizeof why), "accepted %s", redacted[i]);
    struct tn_ce c = {
        .id = "i", .event = TN_CE_UPDATED, .tenant = "t", .correlation_id = "c", .actor = "a", .data = d};
    struct tn_error err = {0};
    json_t *ev = tn_ce_build(&c, &err);
    cr_assert_not_null(ev, "%s", err.message);
    char *text = json_dumps(ev, JSON_COMPACT);
    bool clean = !strstr(text, "hunter2") && !strstr(text, "whsec_") && !strstr(text, "BEGIN") &&
                 strstr(text, TN_CE_REDACTED);
    free(text);
    json_decref(ev);
    json_decref(d);
    cr_assert(clean, "not redacted: %s", redacted[i]);
  }
  static const char *const accepted[] = {
      "{\"credentialsVersion\":3,\"why\":\"schedule\"}",
      "{\"versionBefore\":1,\"versionAfter\":2,\"trigger\":\"on-demand\"}",
      "{\"uri\":\"postgresql://db:5432/x\"}",
      "{\"contacts\":[{\"role\":\"billing\",\"name\":\"Bob\",\"email\":\"b@acme.example\"}]}",
  };
  for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
    json_t *d = json_loads(accepted[i], 0, NULL);
    char why[256];
    cr_assert(tn_ce_data_safe(d, why, sizeof why), "refused %s: %s", accepted[i], why);
    json_decref(d);
  }
}

Test(cloudevents, required_fields) {
  struct tn_ce base = {.id = "i", .event = TN_CE_CREATED, .tenant = "t", .correlation_id = "c", .actor = "a"};
  struct tn_ce c = base;
  struct tn_error err = {0};
  c.id = NULL;
  cr_assert_null(tn_ce_build(&c, &err));
  c = base;
  c.tenant = "";
  cr_assert_null(tn_ce_build(&c, &err));
  c = base;
  c.actor = NULL;
  cr_assert_null(tn_ce_build(&c, &err));
  c = base;
  c.event = "nope";
  cr_assert_null(tn_ce_build(&c, &err));
  json_t *arr = json_array();
  c = base;
  c.data = arr;
  cr_assert_null(tn_ce_build(&c, &err), "data must be an object");
  json_decref(arr);
}
