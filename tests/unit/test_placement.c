/* test_placement.c - region selection from residency, isolation mode and the Region inventory,
 * and the refusal messages. */
#include <criterion/criterion.h>
#include <string.h>

#include "tenancy/placement.h"

#define SHARED (1u << TN_ISOLATION_SHARED)
#define DEDICATED (1u << TN_ISOLATION_DEDICATED)
#define HYBRID (1u << TN_ISOLATION_HYBRID)
#define ALL (SHARED | DEDICATED | HYBRID)

static struct tn_region region(const char *name, bool available, unsigned modes) {
  return (struct tn_region){.name = (char *)name, .available = available, .isolation_modes = modes};
}

/* A residency over string literals (never freed). */
static struct tn_residency residency(const char *preferred, const char **allowed, size_t n) {
  return (struct tn_residency){
      .allowed_regions = (char **)allowed, .n_allowed_regions = n, .preferred_region = (char *)preferred};
}

static int resolve(const struct tn_residency *res, enum tn_isolation iso, const char *current,
                   const struct tn_region *regions, size_t n, struct tn_placement *out,
                   struct tn_error *err) {
  const struct tn_region *ptrs[16];
  cr_assert_leq(n, 16);
  for (size_t i = 0; i < n; i++)
    ptrs[i] = &regions[i];
  return tn_placement_resolve(res, iso, current, ptrs, n, out, err);
}

Test(placement, preferred_region_when_it_fits) {
  const char *allowed[] = {"eu-west-1", "eu-central-1"};
  struct tn_residency res = residency("eu-west-1", allowed, 2);
  struct tn_region regions[] = {region("eu-central-1", true, ALL), region("eu-west-1", true, ALL)};
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, NULL, regions, 2, &p, &err), 0, "%s", err.message);
  cr_assert_str_eq(p.region, "eu-west-1", "preferred wins over name order");
  cr_assert_eq(p.isolation, TN_ISOLATION_SHARED);
  cr_assert_not(p.kept);
}

Test(placement, preferred_unavailable_falls_back_to_first_allowed_by_name) {
  const char *allowed[] = {"eu-west-1", "eu-south-1", "eu-central-1"};
  struct tn_residency res = residency("eu-west-1", allowed, 3);
  struct tn_region regions[] = {region("eu-west-1", false, ALL), region("eu-south-1", true, ALL),
                                region("eu-central-1", true, ALL)};
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, NULL, regions, 3, &p, &err), 0, "%s", err.message);
  cr_assert_str_eq(p.region, "eu-central-1", "name order, not the order written");
}

Test(placement, preferred_that_cannot_host_the_mode_falls_back) {
  const char *allowed[] = {"eu-west-1", "eu-central-1"};
  struct tn_residency res = residency("eu-west-1", allowed, 2);
  struct tn_region regions[] = {region("eu-west-1", true, SHARED), region("eu-central-1", true, DEDICATED)};
  struct tn_placement p;
  cr_assert_eq(resolve(&res, TN_ISOLATION_DEDICATED, NULL, regions, 2, &p, NULL), 0);
  cr_assert_str_eq(p.region, "eu-central-1");
  cr_assert_eq(p.isolation, TN_ISOLATION_DEDICATED);
}

Test(placement, preferred_outside_allowed_regions_is_ignored) {
  const char *allowed[] = {"eu-central-1"};
  struct tn_residency res = residency("us-east-1", allowed, 1);
  struct tn_region regions[] = {region("us-east-1", true, ALL), region("eu-central-1", true, ALL)};
  struct tn_placement p;
  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, NULL, regions, 2, &p, NULL), 0);
  cr_assert_str_eq(p.region, "eu-central-1", "residency beats preference");
}

Test(placement, empty_allowed_regions_means_any_region_in_name_order) {
  struct tn_residency res = residency(NULL, NULL, 0);
  struct tn_region regions[] = {region("us-west-2", true, ALL), region("ap-south-1", false, ALL),
                                region("eu-west-1", true, SHARED), region("ca-central-1", true, ALL)};
  struct tn_placement p;
  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, NULL, regions, 4, &p, NULL), 0);
  cr_assert_str_eq(p.region, "ca-central-1", "ap-south-1 is not available");
  cr_assert_eq(resolve(&res, TN_ISOLATION_HYBRID, NULL, regions, 4, &p, NULL), 0);
  cr_assert_str_eq(p.region, "ca-central-1");
  cr_assert_eq(resolve(NULL, TN_ISOLATION_SHARED, NULL, regions, 4, &p, NULL), 0, "no residency at all");
  cr_assert_str_eq(p.region, "ca-central-1");
  res = residency("us-west-2", NULL, 0);
  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, NULL, regions, 4, &p, NULL), 0);
  cr_assert_str_eq(p.region, "us-west-2", "a preferred region applies without an allow list");
}

Test(placement, none_available_lists_every_region_and_reason) {
  const char *allowed[] = {"eu-west-1", "eu-central-1", "eu-north-1"};
  struct tn_residency res = residency("eu-west-1", allowed, 3);
  struct tn_region regions[] = {region("eu-west-1", false, ALL), region("eu-central-1", true, SHARED),
                                region("us-east-1", true, ALL)};
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(resolve(&res, TN_ISOLATION_DEDICATED, NULL, regions, 3, &p, &err), TN_EINVALID);
  cr_assert_str_eq(err.reason, "PlacementFailed");
  cr_assert_str_eq(
      err.message,
      "no allowed region can host isolation dedicated: eu-west-1 (preferred): not available; "
      "eu-central-1: cannot host isolation dedicated (hosts shared); eu-north-1: no Region named "
      "eu-north-1 exists. To fix: set spec.available: true on one of these Regions; or add "
      "\"dedicated\" to a Region's spec.isolationModes, or change the tenant's spec.isolation; or "
      "create the missing Region; or add a region that fits to spec.residency.allowedRegions");
  cr_assert_null(strstr(err.message, "us-east-1"), "a region that is not allowed is not a candidate");
}

Test(placement, a_region_both_unavailable_and_unfit_says_both) {
  const char *allowed[] = {"eu-west-1"};
  struct tn_residency res = residency(NULL, allowed, 1);
  struct tn_region regions[] = {region("eu-west-1", false, 0)};
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(resolve(&res, TN_ISOLATION_HYBRID, NULL, regions, 1, &p, &err), TN_EINVALID);
  cr_assert_not_null(
      strstr(err.message, "eu-west-1: not available, cannot host isolation hybrid (hosts none)"), "%s",
      err.message);
}

Test(placement, mode_not_hostable_anywhere) {
  struct tn_residency res = residency(NULL, NULL, 0);
  struct tn_region regions[] = {region("eu-west-1", true, SHARED),
                                region("eu-central-1", true, SHARED | HYBRID)};
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(resolve(&res, TN_ISOLATION_DEDICATED, NULL, regions, 2, &p, &err), TN_EINVALID);
  cr_assert_str_eq(err.message,
                   "no region can host isolation dedicated: eu-central-1: cannot host isolation "
                   "dedicated (hosts shared, hybrid); eu-west-1: cannot host isolation dedicated "
                   "(hosts shared). To fix: add \"dedicated\" to a Region's spec.isolationModes, or "
                   "change the tenant's spec.isolation");
}

Test(placement, no_regions_at_all) {
  struct tn_residency res = residency(NULL, NULL, 0);
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(tn_placement_resolve(&res, TN_ISOLATION_SHARED, NULL, NULL, 0, &p, &err), TN_EINVALID);
  cr_assert_not_null(strstr(err.message, "no Region objects exist"), "%s", err.message);
}

Test(placement, preferred_outside_allowed_is_named_in_the_refusal) {
  const char *allowed[] = {"eu-central-1"};
  struct tn_residency res = residency("us-east-1", allowed, 1);
  struct tn_region regions[] = {region("us-east-1", true, ALL), region("eu-central-1", false, ALL)};
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, NULL, regions, 2, &p, &err), TN_EINVALID);
  cr_assert_not_null(strstr(err.message, "us-east-1 (preferred): not in spec.residency.allowedRegions; "
                                         "eu-central-1: not available"),
                     "%s", err.message);
}

Test(placement, a_placed_tenant_keeps_its_region) {
  const char *allowed[] = {"eu-west-1", "eu-central-1"};
  struct tn_residency res = residency("eu-central-1", allowed, 2);
  struct tn_region regions[] = {region("eu-west-1", false, ALL), region("eu-central-1", true, ALL)};
  struct tn_placement p;
  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, "eu-west-1", regions, 2, &p, NULL), 0);
  cr_assert_str_eq(p.region, "eu-west-1", "unavailable gates new placements only");
  cr_assert(p.kept);
}

Test(placement, a_placed_tenant_moves_when_its_region_no_longer_fits) {
  const char *allowed[] = {"eu-central-1"};
  struct tn_residency res = residency(NULL, allowed, 1);
  struct tn_region regions[] = {region("eu-west-1", true, ALL), region("eu-central-1", true, ALL)};
  struct tn_placement p;
  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, "eu-west-1", regions, 2, &p, NULL), 0);
  cr_assert_str_eq(p.region, "eu-central-1", "no longer allowed");
  cr_assert_not(p.kept);

  const char *allowed2[] = {"eu-west-1", "eu-central-1"};
  res = residency(NULL, allowed2, 2);
  regions[0] = region("eu-west-1", true, SHARED);
  cr_assert_eq(resolve(&res, TN_ISOLATION_DEDICATED, "eu-west-1", regions, 2, &p, NULL), 0);
  cr_assert_str_eq(p.region, "eu-central-1", "cannot host the new isolation mode");

  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, "gone-1", regions, 2, &p, NULL), 0);
  cr_assert_str_eq(p.region, "eu-central-1", "its Region was removed");
}

Test(placement, deterministic_whatever_the_inventory_order) {
  struct tn_residency res = residency(NULL, NULL, 0);
  struct tn_region a[] = {region("b-1", true, ALL), region("a-1", true, ALL), region("c-1", true, ALL)};
  struct tn_region b[] = {region("c-1", true, ALL), region("b-1", true, ALL), region("a-1", true, ALL)};
  struct tn_placement p1, p2;
  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, NULL, a, 3, &p1, NULL), 0);
  cr_assert_eq(resolve(&res, TN_ISOLATION_SHARED, NULL, b, 3, &p2, NULL), 0);
  cr_assert_str_eq(p1.region, "a-1");
  cr_assert_str_eq(p2.region, "a-1");
}

/* --- a placed tenant stays where its data is (tn_placement_keep) ------------------------------------ */

static int keep(const struct tn_residency *res, enum tn_isolation iso, const char *placed,
                const struct tn_region *regions, size_t n, struct tn_placement *out, struct tn_error *err) {
  const struct tn_region *ptrs[16];
  cr_assert_leq(n, 16);
  for (size_t i = 0; i < n; i++)
    ptrs[i] = &regions[i];
  return tn_placement_keep(res, iso, placed, ptrs, n, out, err);
}

Test(placement_keep, keeps_an_allowed_region_even_when_unavailable) {
  const char *allowed[] = {"eu-west-1", "eu-central-1"};
  struct tn_residency res = residency("eu-central-1", allowed, 2);
  struct tn_region regions[] = {region("eu-central-1", true, ALL), region("eu-west-1", false, ALL)};
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(keep(&res, TN_ISOLATION_SHARED, "eu-west-1", regions, 2, &p, &err), 0, "%s", err.message);
  cr_assert_str_eq(p.region, "eu-west-1", "the preferred region does not pull a placed tenant away");
  cr_assert(p.kept);
}

Test(placement_keep, a_residency_that_drops_the_region_keeps_it_and_says_migration) {
  const char *allowed[] = {"eu-central-1"};
  struct tn_residency res = residency(NULL, allowed, 1);
  struct tn_region regions[] = {region("eu-central-1", true, ALL), region("eu-west-1", true, ALL)};
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(keep(&res, TN_ISOLATION_SHARED, "eu-west-1", regions, 2, &p, &err), TN_ECONFLICT);
  cr_assert_str_eq(p.region, "eu-west-1", "never re-placed into eu-central-1");
  cr_assert_str_eq(err.reason, TN_REASON_MIGRATION_REQUIRED);
  cr_assert(strstr(err.message, "eu-west-1") && strstr(err.message, "allowed: eu-central-1") &&
                strstr(err.message, "migration") && strstr(err.message, "To fix"),
            "%s", err.message);
}

Test(placement_keep, a_region_that_no_longer_hosts_the_mode_keeps_it_and_says_so) {
  struct tn_region regions[] = {region("eu-west-1", true, SHARED), region("eu-central-1", true, ALL)};
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(keep(NULL, TN_ISOLATION_DEDICATED, "eu-west-1", regions, 2, &p, &err), TN_ECONFLICT);
  cr_assert_str_eq(p.region, "eu-west-1");
  cr_assert_str_eq(err.reason, TN_REASON_MIGRATION_REQUIRED);
  cr_assert(strstr(err.message, "isolationModes") && strstr(err.message, "dedicated"), "%s", err.message);
}

Test(placement_keep, a_deleted_region_is_not_found_and_nothing_is_chosen) {
  struct tn_region regions[] = {region("eu-central-1", true, ALL)};
  struct tn_placement p;
  struct tn_error err = {0};
  cr_assert_eq(keep(NULL, TN_ISOLATION_SHARED, "eu-west-1", regions, 1, &p, &err), TN_ENOTFOUND);
  cr_assert_str_eq(p.region, "", "no other region is chosen");
  cr_assert_str_eq(err.reason, TN_REASON_MIGRATION_REQUIRED);
  cr_assert(strstr(err.message, "recreate the Region eu-west-1"), "%s", err.message);
}

Test(placement_keep, allows_reads_an_empty_list_as_every_region) {
  const char *allowed[] = {"eu-central-1"};
  struct tn_residency narrow = residency(NULL, allowed, 1), open = residency(NULL, NULL, 0);
  cr_assert(tn_placement_allows(&open, "anywhere"));
  cr_assert(tn_placement_allows(NULL, "anywhere"));
  cr_assert(tn_placement_allows(&narrow, "eu-central-1"));
  cr_assert_not(tn_placement_allows(&narrow, "eu-west-1"));
  cr_assert_not(tn_placement_allows(&narrow, NULL));
}
