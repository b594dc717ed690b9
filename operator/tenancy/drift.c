/* drift.c - drift or propagation (see drift.h). */
#include "tenancy/drift.h"

#include <string.h>

#include "tenancy/desired.h"

bool tn_change_is_drift(const struct tn_change *c) {
  if (!c || c->op != TN_CHANGE_UPDATE || !c->desired)
    return false;
  const char *applied = json_string_value(json_object_get(
      json_object_get(json_object_get(c->observed, "metadata"), "annotations"), TN_ANNOTATION_SPEC_HASH));
  return !applied || strcmp(applied, c->desired->spec_hash) == 0;
}
