/* placement.c - region selection for a tenant (see placement.h). */
#include "tenancy/placement.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

static const struct tn_region *find_region(const struct tn_region *const *regions, size_t n,
                                           const char *name) {
  for (size_t i = 0; name && i < n; i++)
    if (regions[i] && regions[i]->name && strcmp(regions[i]->name, name) == 0)
      return regions[i];
  return NULL;
}

static bool is_allowed(const struct tn_residency *res, const char *name) {
  if (!res || res->n_allowed_regions == 0)
    return true;
  for (size_t i = 0; i < res->n_allowed_regions; i++)
    if (strcmp(res->allowed_regions[i], name) == 0)
      return true;
  return false;
}

static bool hosts(const struct tn_region *r, enum tn_isolation iso) {
  return (r->isolation_modes >> iso) & 1u;
}

static bool fits(const struct tn_region *r, enum tn_isolation iso) {
  return r && r->available && hosts(r, iso);
}

static int choose(struct tn_placement *out, const char *name, enum tn_isolation iso, bool kept,
                  struct tn_error *err) {
  if (strlen(name) >= sizeof out->region) /* parse allows only DNS labels: cannot happen */
    return tn_error_set(err, TN_EINVALID, "region name \"%.64s...\" is too long", name);
  memset(out, 0, sizeof *out);
  snprintf(out->region, sizeof out->region, "%s", name);
  out->isolation = iso;
  out->kept = kept;
  return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* What a refusal found, to tailor the advice. */
struct why {
  int unavailable, cannot_host, missing, not_allowed;
};

/* Appends "name: reason" for one rejected region. */
static void describe(struct tn_buf *b, const struct tn_residency *res, const struct tn_region *const *regions,
                     size_t n, const char *name, bool preferred, enum tn_isolation iso, struct why *why) {
  const struct tn_region *r = find_region(regions, n, name);
  tn_buf_printf(b, "%s%s%s: ", b->len ? "; " : "", name, preferred ? " (preferred)" : "");
  if (!is_allowed(res, name)) {
    why->not_allowed++;
    tn_buf_appends(b, "not in spec.residency.allowedRegions");
    return;
  }
  if (!r) {
    why->missing++;
    tn_buf_printf(b, "no Region named %s exists", name);
    return;
  }
  bool sep = false;
  if (!r->available) {
    why->unavailable++;
    tn_buf_appends(b, "not available");
    sep = true;
  }
  if (!hosts(r, iso)) {
    why->cannot_host++;
    tn_buf_printf(b, "%scannot host isolation %s (hosts ", sep ? ", " : "", tn_isolation_name(iso));
    int k = 0;
    for (int m = 0; m < TN_ISOLATION_COUNT; m++)
      if (hosts(r, (enum tn_isolation)m))
        tn_buf_printf(b, "%s%s", k++ ? ", " : "", tn_isolation_name((enum tn_isolation)m));
    tn_buf_appends(b, k ? ")" : "none)");
  }
}

int tn_placement_resolve(const struct tn_residency *residency, enum tn_isolation isolation,
                         const char *current_region, const struct tn_region *const *regions, size_t n,
                         struct tn_placement *out, struct tn_error *err) {
  const char **cand = NULL;
  size_t n_cand = 0;
  struct tn_buf reasons, msg;
  int rc;
  tn_buf_init(&reasons, 4096);
  tn_buf_init(&msg, 8192);
  if ((unsigned)isolation >= TN_ISOLATION_COUNT) {
    rc = tn_error_set(err, TN_EINVALID, "unknown isolation mode %d", (int)isolation);
    goto out;
  }

  /* 1. keep the current region */
  if (current_region && *current_region && is_allowed(residency, current_region)) {
    const struct tn_region *r = find_region(regions, n, current_region);
    if (r && hosts(r, isolation)) {
      rc = choose(out, r->name, isolation, true, err);
      goto out;
    }
  }
  /* 2. the preferred region */
  const char *pref = residency ? residency->preferred_region : NULL;
  if (pref && is_allowed(residency, pref) && fits(find_region(regions, n, pref), isolation)) {
    rc = choose(out, pref, isolation, false, err);
    goto out;
  }
  /* 3./4. the candidates in name order */
  bool all = !residency || residency->n_allowed_regions == 0;
  size_t cap = all ? n : residency->n_allowed_regions;
  if (cap && !(cand = calloc(cap, sizeof *cand))) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < cap; i++) {
    const char *name = all ? (regions[i] ? regions[i]->name : NULL) : residency->allowed_regions[i];
    if (name)
      cand[n_cand++] = name;
  }
  if (n_cand > 1)
    qsort(cand, n_cand, sizeof *cand, cmp_str);
  for (size_t i = 0; i < n_cand; i++)
    if (fits(find_region(regions, n, cand[i]), isolation)) {
      rc = choose(out, cand[i], isolation, false, err);
      goto out;
    }

  /* Refused: every region considered, and why. */
  struct why why = {0};
  size_t listed = 0;
  if (pref) {
    describe(&reasons, residency, regions, n, pref, true, isolation, &why);
    listed++;
  }
  for (size_t i = 0; i < n_cand; i++) {
    if (pref && strcmp(cand[i], pref) == 0)
      continue;
    if (reasons.len > 560) {
      tn_buf_printf(&reasons, "; and %zu more", n_cand - i);
      break;
    }
    describe(&reasons, residency, regions, n, cand[i], false, isolation, &why);
    listed++;
  }
  tn_buf_printf(&msg, "no %sregion can host isolation %s", all ? "" : "allowed ",
                tn_isolation_name(isolation));
  if (listed == 0)
    tn_buf_appends(&msg,
                   ": no Region objects exist. To fix: create a Region (kind Region, spec.available: true, "
                   "spec.isolationModes listing the mode)");
  else {
    tn_buf_printf(&msg, ": %s. To fix:", tn_buf_str(&reasons));
    const char *sep = " ";
    if (why.unavailable) {
      tn_buf_printf(&msg, "%sset spec.available: true on one of these Regions", sep);
      sep = "; or ";
    }
    if (why.cannot_host) {
      tn_buf_printf(&msg,
                    "%sadd \"%s\" to a Region's spec.isolationModes, or change the tenant's spec.isolation",
                    sep, tn_isolation_name(isolation));
      sep = "; or ";
    }
    if (why.missing) {
      tn_buf_printf(&msg, "%screate the missing Region", sep);
      sep = "; or ";
    }
    if (!all)
      tn_buf_printf(&msg, "%sadd a region that fits to spec.residency.allowedRegions", sep);
  }
  rc = tn_error_set(err, TN_EINVALID, "%s", tn_buf_str(&msg));
  if (err)
    snprintf(err->reason, sizeof err->reason, "%s", TN_REASON_PLACEMENT_FAILED);
out:
  free(cand);
  tn_buf_cleanup(&reasons);
  tn_buf_cleanup(&msg);
  return rc;
}

int tn_placement_keep(const struct tn_residency *residency, enum tn_isolation isolation,
                      const char *placed_region, const struct tn_region *const *regions, size_t n,
                      struct tn_placement *out, struct tn_error *err) {
  memset(out, 0, sizeof *out);
  if ((unsigned)isolation >= TN_ISOLATION_COUNT)
    return tn_error_set(err, TN_EINVALID, "unknown isolation mode %d", (int)isolation);
  if (!placed_region || !*placed_region)
    return tn_error_set(err, TN_EINVALID, "the tenant has no region to keep");
  const struct tn_region *r = find_region(regions, n, placed_region);
  int rc = 0;
  if (!r) {
    rc = tn_error_set(err, TN_ENOTFOUND,
                      "the tenant's data is in region %s and no Region named %s exists any more; a placed "
                      "tenant moves only by a migration, never by a reconcile. To fix: recreate the Region "
                      "%s (with its database servers)",
                      placed_region, placed_region, placed_region);
  } else {
    int crc = choose(out, placed_region, isolation, true, err);
    if (crc)
      return crc;
    if (!is_allowed(residency, placed_region)) {
      struct tn_buf b;
      tn_buf_init(&b, 512);
      for (size_t i = 0; i < residency->n_allowed_regions && b.len < 400; i++)
        tn_buf_printf(&b, "%s%s", i ? ", " : "", residency->allowed_regions[i]);
      rc = tn_error_set(err, TN_ECONFLICT,
                        "the tenant's data is in region %s, which its residency no longer allows "
                        "(allowed: %s); a placed tenant moves only by a migration, never by a residency "
                        "edit, so it stays in %s. To fix: add %s back to spec.residency.allowedRegions (or "
                        "to the TenancyPolicy residency rule that narrowed it)",
                        placed_region, tn_buf_str(&b), placed_region, placed_region);
      tn_buf_cleanup(&b);
    } else if (!hosts(r, isolation)) {
      rc = tn_error_set(err, TN_ECONFLICT,
                        "the tenant's data is in region %s, whose spec.isolationModes no longer lists %s; "
                        "it stays in %s (a placed tenant moves only by a migration). To fix: add \"%s\" back "
                        "to Region %s spec.isolationModes",
                        placed_region, tn_isolation_name(isolation), placed_region,
                        tn_isolation_name(isolation), placed_region);
    }
  }
  if (rc && err)
    snprintf(err->reason, sizeof err->reason, "%s", TN_REASON_MIGRATION_REQUIRED);
  return rc;
}

bool tn_placement_allows(const struct tn_residency *residency, const char *region) {
  return region && is_allowed(residency, region);
}
