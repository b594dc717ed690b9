/* test_read_api.c - the read API's pure parts: continue tokens, filters, group bindings, the
 * OpenAPI document. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/readapi.h"

Test(read_api_token, round_trip_and_refusals) {
  char *t = tn_readapi_token_encode("acme-0042", "0123456789abcdef");
  cr_assert_not_null(t);
  for (const char *p = t; *p; p++)
    cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p),
              "not base64url: %s", t);
  char *after = NULL;
  struct tn_error err;
  tn_error_clear(&err);
  cr_assert_eq(tn_readapi_token_decode(t, "0123456789abcdef", &after, &err), 0, "%s", err.message);
  cr_assert_str_eq(after, "acme-0042");
  free(after);
  /* another filter's token */
  cr_assert_eq(tn_readapi_token_decode(t, "fedcba9876543210", &after, &err), TN_EINVALID);
  cr_assert_null(after);
  cr_assert(strstr(err.message, "other filters"), "%s", err.message);
  free(t);
  /* junk, and a token of another version */
  cr_assert_eq(tn_readapi_token_decode("!!!", "x", &after, &err), TN_EINVALID);
  cr_assert_eq(tn_readapi_token_decode("", "x", &after, &err), TN_EINVALID);
  cr_assert_eq(tn_readapi_token_decode("e30", "x", &after, &err), TN_EINVALID); /* "{}" */
  /* {"v":2,"after":"a","f":"x"} */
  cr_assert_eq(tn_readapi_token_decode("eyJ2IjoyLCJhZnRlciI6ImEiLCJmIjoieCJ9", "x", &after, &err),
               TN_EINVALID);
  cr_assert(strstr(err.message, "version 2"), "%s", err.message);
  /* names with any byte survive */
  t = tn_readapi_token_encode("z\"\\/~", "x");
  cr_assert_eq(tn_readapi_token_decode(t, "x", &after, &err), 0);
  cr_assert_str_eq(after, "z\"\\/~");
  free(after);
  free(t);
}

static json_t *tenant(const char *json) {
  json_t *t = json_loads(json, 0, NULL);
  cr_assert_not_null(t, "%s", json);
  return t;
}

Test(read_api_filter, fields_and_q) {
  json_t *t =
      tenant("{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"plan\":\"standard\",\"state\":\"Active\","
             "\"isolation\":\"shared\",\"displayName\":\"Acme Corporation\",\"externalIds\":{\"billing\":"
             "\"cus_8TzQ\"}},\"status\":{\"state\":\"Suspended\",\"placement\":{\"region\":\"eu-west-1\","
             "\"isolation\":\"dedicated\"}}}");
  struct tn_readapi_filter f = {0};
  cr_assert(tn_readapi_matches(t, &f));
  f = (struct tn_readapi_filter){.plan = "standard"};
  cr_assert(tn_readapi_matches(t, &f));
  f = (struct tn_readapi_filter){.plan = "starter"};
  cr_assert_not(tn_readapi_matches(t, &f));
  /* state and isolation: the status wins over the spec */
  f = (struct tn_readapi_filter){.state = "Suspended", .isolation = "dedicated", .region = "eu-west-1"};
  cr_assert(tn_readapi_matches(t, &f));
  f = (struct tn_readapi_filter){.state = "Active"};
  cr_assert_not(tn_readapi_matches(t, &f));
  f = (struct tn_readapi_filter){.region = "eu-west"}; /* exact, not a prefix */
  cr_assert_not(tn_readapi_matches(t, &f));
  /* q: case-insensitive substring of the id, the display name, an external id value */
  const char *yes[] = {"ACM", "corpORATION", "8tzq", "cus_", "", NULL};
  for (int i = 0; yes[i]; i++) {
    f = (struct tn_readapi_filter){.q = yes[i]};
    cr_assert(tn_readapi_matches(t, &f), "q=%s", yes[i]);
  }
  const char *no[] = {"billing", "standard", "acmex", NULL};
  for (int i = 0; no[i]; i++) {
    f = (struct tn_readapi_filter){.q = no[i]};
    cr_assert_not(tn_readapi_matches(t, &f), "q=%s", no[i]);
  }
  json_decref(t);
  /* without a status, the spec's state and isolation */
  t = tenant("{\"metadata\":{\"name\":\"b\"},\"spec\":{\"state\":\"Draft\",\"isolation\":\"hybrid\"}}");
  f = (struct tn_readapi_filter){.state = "Draft", .isolation = "hybrid"};
  cr_assert(tn_readapi_matches(t, &f));
  json_decref(t);
}

Test(read_api_groups, bound_exactly) {
  json_t *t =
      tenant("{\"metadata\":{\"name\":\"acme\"},\"spec\":{\"identity\":{\"groupBindings\":["
             "{\"group\":\"acme-admins\",\"role\":\"tenant-admin\"},{\"group\":\"acme-devs\",\"role\":"
             "\"tenant-developer\"}]}}}");
  json_t *g = json_pack("[s,s]", "system:authenticated", "acme-devs");
  cr_assert(tn_readapi_group_bound(t, g));
  json_decref(g);
  /* substrings and prefixes of a bound group are not that group */
  const char *no[] = {"acme", "acme-dev", "cme-admins", "acme-admins2", "", "acme-admins\nacme-devs", NULL};
  for (int i = 0; no[i]; i++) {
    g = json_pack("[s]", no[i]);
    cr_assert_not(tn_readapi_group_bound(t, g), "group %s", no[i]);
    json_decref(g);
  }
  cr_assert_not(tn_readapi_group_bound(t, NULL));
  json_decref(t);
}

Test(read_api_openapi, describes_every_endpoint) {
  json_t *d = tn_readapi_openapi();
  cr_assert_not_null(d, "the OpenAPI document does not parse");
  cr_assert_str_eq(json_string_value(json_object_get(d, "openapi")), "3.0.3");
  const char *paths[] = {"/api/v1/tenants", "/api/v1/tenants/{id}", "/api/v1/tenants/{id}/placement",
                         "/api/v1/tenants/{id}/events",
                         "/api/v1/tenants/by-external-id/{system}/{externalId}"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    cr_assert_not_null(json_object_get(json_object_get(json_object_get(d, "paths"), paths[i]), "get"), "%s",
                       paths[i]);
  json_decref(d);
}

/* ---- the flags ---- */

#include "runtime/options.h"

static char *no_env(const char *name) {
  (void)name;
  return NULL;
}

Test(read_api_flags, defaults_and_values) {
  struct tn_options o;
  struct tn_error err;
  tn_error_clear(&err);
  char *a0[] = {"tenancy-operator", NULL};
  cr_assert_eq(tn_options_parse(1, a0, no_env, &o, &err), 0, "%s", err.message);
  cr_assert_str_eq(o.api_addr, ":8443");
  cr_assert_not(o.api_addr_set);
  cr_assert_null(o.api_cert_file);
  tn_options_cleanup(&o);
  char *a1[] = {"tenancy-operator",      "--api-bind-address=127.0.0.1:9999",
                "--api-cert-file",       "/c.pem",
                "--api-key-file=/k.pem", NULL};
  cr_assert_eq(tn_options_parse(5, a1, no_env, &o, &err), 0, "%s", err.message);
  cr_assert_str_eq(o.api_addr, "127.0.0.1:9999");
  cr_assert(o.api_addr_set);
  cr_assert_str_eq(o.api_cert_file, "/c.pem");
  cr_assert_str_eq(o.api_key_file, "/k.pem");
  tn_options_cleanup(&o);
  char *a2[] = {"tenancy-operator", "--api-bind-address=0", NULL};
  cr_assert_eq(tn_options_parse(2, a2, no_env, &o, &err), 0, "%s", err.message);
  cr_assert_str_eq(o.api_addr, "0");
  tn_options_cleanup(&o);
  /* refused: a bad address (the value not echoed), a certificate without its key */
  char *b1[] = {"tenancy-operator", "--api-bind-address=8443", NULL};
  cr_assert_eq(tn_options_parse(2, b1, no_env, &o, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "--api-bind-address") && !strstr(err.message, "8443"), "%s", err.message);
  tn_options_cleanup(&o);
  char *b2[] = {"tenancy-operator", "--api-cert-file=/c.pem", NULL};
  cr_assert_eq(tn_options_parse(2, b2, no_env, &o, &err), TN_ECONFIG);
  cr_assert(strstr(err.message, "--api-key-file"), "%s", err.message);
  tn_options_cleanup(&o);
}
