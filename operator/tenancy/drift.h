/* drift.h - whether an update of an owned object repairs drift (someone else changed it) or
 * carries a change of the desired state (a Plan edit propagating). Pure. */
#ifndef TN_TENANCY_DRIFT_H
#define TN_TENANCY_DRIFT_H

#include <stdbool.h>

#include "tenancy/diff.h"

/* The operator records what it applied in each owned object's spec-hash annotation
 * (TN_ANNOTATION_SPEC_HASH). For an update (c->op TN_CHANGE_UPDATE): when the observed object's
 * annotation still names the desired state wanted now, the difference came from someone else
 * (drift); when the annotation is missing, someone removed it (drift); when it names another
 * desired state, ours changed (propagation, not drift). An object edited by hand while the
 * Plan also changed counts as propagation: it is rewritten all the same. False for every other
 * kind of change. */
bool tn_change_is_drift(const struct tn_change *c);

#endif
