/* placement.h - the isolation strategy layer: choosing a tenant's region from its residency,
 * its isolation mode and the Region inventory, or saying precisely why none fits. Pure. */
#ifndef TN_TENANCY_PLACEMENT_H
#define TN_TENANCY_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>

#include "tenancy/tenant.h"
#include "util/error.h"

/* The Event reason and condition reason when no region fits. */
#define TN_REASON_PLACEMENT_FAILED "PlacementFailed"
/* The condition and Event reason when a placed tenant's region no longer fits its residency, its
 * Region is gone or no longer hosts its isolation mode: the data stays where it is (moving it is a
 * migration, never a reconcile). */
#define TN_REASON_MIGRATION_REQUIRED "MigrationRequired"

/* A placement decision (status.placement). */
struct tn_placement {
  char region[64]; /* a DNS label */
  enum tn_isolation isolation;
  bool kept; /* the tenant's current region was kept (see below) */
};

/* Resolves where a tenant lives. All inputs are borrowed; regions is an array of n parsed
 * Regions (any order; n may be 0). The rules, in order:
 *  1. current_region (status.placement.region, NULL for a new tenant) is kept when it is still
 *     allowed, its Region exists and it hosts the isolation mode, even while the Region is not
 *     available: "available" gates new placements, it never moves a placed tenant (moving is a
 *     migration, not a reconcile).
 *  2. the preferred region, when it is allowed, available and hosts the isolation mode;
 *  3. else the first allowed region, in name order, that is available and hosts the mode;
 *  4. an empty allowedRegions means every Region is allowed (rules 2 and 3 then run over the
 *     whole inventory in name order). Residency flags are not read here: policy evaluation turns
 *     them into allowed regions before placement.
 * Returns 0 with *out filled, or TN_EINVALID with err->reason "PlacementFailed" and a message
 * listing each region considered and why it was rejected, then how to fix it, e.g.
 *   "no allowed region can host isolation dedicated: eu-west-1 (preferred): not available;
 *    eu-central-1: cannot host isolation dedicated (hosts shared). To fix: ..." */
int tn_placement_resolve(const struct tn_residency *residency, enum tn_isolation isolation,
                         const char *current_region, const struct tn_region *const *regions, size_t n,
                         struct tn_placement *out, struct tn_error *err);

/* Whether residency allows region (an empty allowedRegions allows every region). */
bool tn_placement_allows(const struct tn_residency *residency, const char *region);

/* Keeps a tenant whose data is already in placed_region (status.placement.region of an Active,
 * Suspended or Archived tenant) where it is: it never chooses another region. Returns
 *   0             *out = placed_region: still allowed, the Region exists and hosts the mode;
 *   TN_ECONFLICT  *out = placed_region all the same (the tenant keeps converging where its data
 *                 is), but the region is no longer allowed by the residency given, or the Region
 *                 no longer lists the isolation mode: err->reason "MigrationRequired" and a
 *                 message naming the region, what changed and how to fix it;
 *   TN_ENOTFOUND  no Region of that name exists any more: *out is cleared, same reason.
 * Availability is not read ("available" gates new placements only). */
int tn_placement_keep(const struct tn_residency *residency, enum tn_isolation isolation,
                      const char *placed_region, const struct tn_region *const *regions, size_t n,
                      struct tn_placement *out, struct tn_error *err);

#endif
