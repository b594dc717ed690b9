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

#endif
