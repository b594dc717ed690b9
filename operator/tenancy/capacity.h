/* capacity.h - what a Region offers tenants (Region spec.capacity) against what the tenants
 * placed there are given (their derived quotas times their environments): the activation
 * prerequisite "the quotas fit what the Region offers". Pure: no network, no clock. */
#ifndef TN_TENANCY_CAPACITY_H
#define TN_TENANCY_CAPACITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tenancy/tenant.h"
#include "util/error.h"

enum tn_capacity_key { TN_CAP_CPU = 0, TN_CAP_MEMORY, TN_CAP_STORAGE, TN_CAP_PODS, TN_CAP_COUNT };

/* Amounts in thousandths of their unit (millicores, millibytes, millipods), as
 * tn_quantity_parse gives them. set[k] false: no limit (capacity) or nothing (usage). */
struct tn_capacity {
  bool set[TN_CAP_COUNT];
  int64_t milli[TN_CAP_COUNT];
};

/* "cpu", "memory", "storage", "pods". Static. */
const char *tn_capacity_key_name(enum tn_capacity_key k);

/* Reads REGION (a Region object, borrowed) spec.capacity into *out (zeroed first: no
 * capacity = nothing set = unlimited). Returns 0, or TN_EINVALID naming the field that is not a
 * quantity (the CRD schema refuses those; a hand-made object could still hold one). */
int tn_capacity_parse(const json_t *region, struct tn_capacity *out, struct tn_error *err);

/* Adds n_env times the per-environment quotas q to *use (saturating at INT64_MAX). */
void tn_capacity_add_quotas(struct tn_capacity *use, const struct tn_quotas *q, size_t n_env);

/* Adds what TENANT (a Tenant object, borrowed) is given in region REGION to *use: when its
 * status.placement.region is REGION and its status.state is Active or Suspended (or Archived
 * while it still has namespaces), its status.derived.quotas times the number of its
 * status.namespaces. Values that do not parse count as nothing. Returns true when it counted. */
bool tn_capacity_add_tenant(struct tn_capacity *use, const json_t *tenant, const char *region);

/* Checks that used + demand fits cap for every key cap sets. Returns 0, or TN_EINVALID with err->reason
 * "CapacityExceeded" and a message naming the region, every key that does not fit with its three figures, and
 * what to do, e.g. "region eu-west-1 cannot take the tenant's quotas: cpu needs 8 more but 2 of 64 are free;
 *    raise the Region's spec.capacity, choose a smaller Plan, or place the tenant elsewhere". */
int tn_capacity_check(const char *region, const struct tn_capacity *cap, const struct tn_capacity *used,
                      const struct tn_capacity *demand, struct tn_error *err);

#define TN_REASON_CAPACITY_EXCEEDED "CapacityExceeded"

#endif
