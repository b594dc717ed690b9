/* test_identity.c - who asked for a tenant's spec (the annotations the API server's admission
 * policy writes) and where Region Secret references may point. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "converge/reconciler.h"
#include "converge/tenant_db.h"
#include "runtime/options.h"

static json_t *tenant_with(const char *annotations_json) {
  json_error_t je;
  json_t *ann = json_loads(annotations_json, 0, &je);
  cr_assert_not_null(ann, "%s", je.text);
  return json_pack("{s:{s:s, s:I, s:o}}", "metadata", "name", "acme", "generation", (json_int_t)3,
                   "annotations", ann);
}

Test(identity, requester_comes_from_the_annotations) {
  json_t *t = tenant_with("{\"tenancy.dev/last-requested-by\": \"alice\", \"other\": \"x\"}");
  char actor[64] = "unchanged";
  cr_assert(tn_tenant_requester(t, actor, sizeof actor));
  cr_assert_str_eq(actor, "alice");
  json_decref(t);

  t = tenant_with("{\"tenancy.dev/last-requested-by\": \"system:serviceaccount:ci:deployer\"}");
  cr_assert(tn_tenant_requester(t, actor, sizeof actor));
  cr_assert_str_eq(actor, "system:serviceaccount:ci:deployer");
  json_decref(t);
}

Test(identity, no_record_means_unknown) {
  const char *cases[] = {"{}", "{\"tenancy.dev/last-requested-by\": \"\"}",
                         "{\"tenancy.dev/last-requested-by\": 7}", "{\"tenancy.dev/requested-by\": \"u\"}"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *t = tenant_with(cases[i]);
    char actor[16] = "keep";
    cr_assert_not(tn_tenant_requester(t, actor, sizeof actor), "%s", cases[i]);
    cr_assert_str_eq(actor, "keep", "the buffer is left as it was");
    json_decref(t);
  }
  char actor[16] = "keep";
  cr_assert_not(tn_tenant_requester(NULL, actor, sizeof actor));
  json_t *bare = json_pack("{s:{}}", "metadata");
  cr_assert_not(tn_tenant_requester(bare, actor, sizeof actor));
  json_decref(bare);
}

Test(identity, a_long_actor_is_truncated_not_overflowed) {
  char name[600];
  memset(name, 'a', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  json_t *t = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", "tenancy.dev/last-requested-by", name);
  char actor[256];
  cr_assert(tn_tenant_requester(t, actor, sizeof actor));
  cr_assert_eq(strlen(actor), 255);
  json_decref(t);
}

Test(identity, region_secrets_only_in_allowed_namespaces) {
  cr_assert(tn_region_secret_namespace_allowed(NULL, "tenancy-system"));
  cr_assert_not(tn_region_secret_namespace_allowed(NULL, "kube-system"));
  cr_assert_not(tn_region_secret_namespace_allowed(NULL, ""));
  cr_assert_not(tn_region_secret_namespace_allowed(NULL, "tenancy"), "a prefix is not a match");
  cr_assert_not(tn_region_secret_namespace_allowed(NULL, "tenancy-system2"));
  const char *list = "ops,tenancy-system,db-admin";
  cr_assert(tn_region_secret_namespace_allowed(list, "ops"));
  cr_assert(tn_region_secret_namespace_allowed(list, "tenancy-system"));
  cr_assert(tn_region_secret_namespace_allowed(list, "db-admin"));
  cr_assert_not(tn_region_secret_namespace_allowed(list, "db"));
  cr_assert_not(tn_region_secret_namespace_allowed(list, "ops,tenancy-system"));
  cr_assert_not(tn_region_secret_namespace_allowed(list, "default"));
}

#define PARSE(o, err, ...)                                                                                   \
  ({                                                                                                         \
    char *argv_[] = {"tenancy-operator", __VA_ARGS__, NULL};                                                 \
    tn_options_parse((int)(sizeof argv_ / sizeof argv_[0]) - 1, argv_, no_env, o, err);                      \
  })

static char *no_env(const char *name) {
  (void)name;
  return NULL;
}

Test(identity, region_secret_namespaces_flag) {
  struct tn_options o;
  struct tn_error err = {0};
  cr_assert_eq(PARSE(&o, &err, "--metrics-bind-address=0"), 0, "%s", err.message);
  cr_assert_null(o.region_secret_namespaces, "none besides the operator's own by default");
  tn_options_cleanup(&o);
  cr_assert_eq(PARSE(&o, &err, "--region-secret-namespaces=db-admin,ops"), 0, "%s", err.message);
  cr_assert_str_eq(o.region_secret_namespaces, "db-admin,ops");
  tn_options_cleanup(&o);
  const char *bad[] = {"--region-secret-namespaces=",
                       "--region-secret-namespaces=a,,b",
                       "--region-secret-namespaces=Kube-System",
                       "--region-secret-namespaces=-a",
                       "--region-secret-namespaces=a-",
                       "--region-secret-namespaces=a/b"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(&err, 0, sizeof err);
    cr_assert_eq(PARSE(&o, &err, (char *)bad[i]), TN_ECONFIG, "%s was accepted", bad[i]);
    cr_assert(strstr(err.message, "--region-secret-namespaces: expected namespace names"), "%s", err.message);
    tn_options_cleanup(&o);
  }
}
