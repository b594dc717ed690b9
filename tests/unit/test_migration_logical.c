/* test_migration_logical.c - the pure parts of a migration's logical replication
 * (converge/migration_logical.c): the replication name from the migration's uid, and the size
 * threshold from the environment. The PostgreSQL parts are in
 * tests/integration/test_migration_logical.c. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "converge/migration_logical.h"

Test(migration_logical, name_from_uid) {
  char out[80];
  cr_assert_eq(tn_mig_logical_name("0f8e2c1a-4b6d-4e2f-9a1b-3c5d7e9f0a1b", out, sizeof out), 0);
  cr_assert_str_eq(out, "tnmig_0f8e2c1a_4b6d_4e2f_9a1b_3c5d7e9f0a1b");
  cr_assert_leq(strlen(out), 63, "longer than a PostgreSQL identifier");
  /* upper case is folded (slot names are lower case only) */
  cr_assert_eq(tn_mig_logical_name("ABCDEF01-0000-0000-0000-000000000000", out, sizeof out), 0);
  cr_assert_str_eq(out, "tnmig_abcdef01_0000_0000_0000_000000000000");
}

Test(migration_logical, name_refuses_what_is_not_a_uid) {
  char out[80];
  cr_assert_eq(tn_mig_logical_name(NULL, out, sizeof out), TN_EINVALID);
  cr_assert_eq(tn_mig_logical_name("", out, sizeof out), TN_EINVALID);
  cr_assert_eq(tn_mig_logical_name("abc\"; DROP", out, sizeof out), TN_EINVALID);
  cr_assert_eq(tn_mig_logical_name("abc xyz", out, sizeof out), TN_EINVALID);
  cr_assert_eq(
      tn_mig_logical_name("0123456789abcdef0123456789abcdef0123456789abcdef0123456789", out, sizeof out),
      TN_EINVALID, "too long for a slot name");
  char small[8];
  cr_assert_eq(tn_mig_logical_name("0f8e2c1a-4b6d", small, sizeof small), TN_EINVALID);
}

Test(migration_logical, threshold_from_environment) {
  unsetenv("TENANCY_MIGRATION_LOGICAL_MIN_BYTES");
  cr_assert_eq(tn_mig_logical_min_bytes(), 64LL * 1024 * 1024);
  setenv("TENANCY_MIGRATION_LOGICAL_MIN_BYTES", "0", 1);
  cr_assert_eq(tn_mig_logical_min_bytes(), 0);
  setenv("TENANCY_MIGRATION_LOGICAL_MIN_BYTES", "-1", 1);
  cr_assert_eq(tn_mig_logical_min_bytes(), -1);
  setenv("TENANCY_MIGRATION_LOGICAL_MIN_BYTES", "1048576", 1);
  cr_assert_eq(tn_mig_logical_min_bytes(), 1048576);
  /* not a number: the default, not 0 (which would make every migration logical) */
  setenv("TENANCY_MIGRATION_LOGICAL_MIN_BYTES", "64Mi", 1);
  cr_assert_eq(tn_mig_logical_min_bytes(), 64LL * 1024 * 1024);
  unsetenv("TENANCY_MIGRATION_LOGICAL_MIN_BYTES");
}

static bool delete_allowed(const char *json, char *msg, size_t n) {
  json_error_t je;
  json_t *j = json_loads(json, 0, &je);
  cr_assert(j, "bad test JSON: %s", je.text);
  bool ok = tn_mig_logical_delete_allowed(j, msg, n);
  json_decref(j);
  return ok;
}

Test(migration_logical, delete_refused_while_replicating) {
  char msg[768] = "";
  const char *phases[] = {"Copy", "Verify", "Cutover", "Aborting"};
  for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
    char json[512];
    snprintf(json, sizeof json,
             "{\"metadata\":{\"name\":\"m1\"},\"spec\":{\"tenant\":\"acme\"},\"status\":{\"phase\":\"%s\","
             "\"copyMethod\":\"logical\",\"replication\":{\"name\":\"tnmig_abc\"}}}",
             phases[i]);
    msg[0] = '\0';
    cr_assert_not(delete_allowed(json, msg, sizeof msg), "phase %s", phases[i]);
    cr_assert(strstr(msg, "m1") && strstr(msg, "tnmig_abc") && strstr(msg, "spec.abort"), "%s", msg);
  }
}

Test(migration_logical, delete_allowed_otherwise) {
  char msg[768];
  /* a snapshot copy, no status yet, after the cutover, terminal, or abort already asked */
  cr_assert(delete_allowed("{\"status\":{\"phase\":\"Copy\",\"copyMethod\":\"snapshot\"}}", msg, sizeof msg));
  cr_assert(delete_allowed("{\"metadata\":{\"name\":\"m\"}}", msg, sizeof msg));
  cr_assert(delete_allowed("{\"status\":{\"phase\":\"RollbackWindow\",\"copyMethod\":\"logical\"}}", msg,
                           sizeof msg));
  cr_assert(
      delete_allowed("{\"status\":{\"phase\":\"Aborted\",\"copyMethod\":\"logical\"}}", msg, sizeof msg));
  cr_assert(delete_allowed(
      "{\"spec\":{\"abort\":true},\"status\":{\"phase\":\"Aborting\",\"copyMethod\":\"logical\"}}", msg,
      sizeof msg));
}
