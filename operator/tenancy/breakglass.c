#define _GNU_SOURCE /* strptime */
/* breakglass.c - break-glass access, pure (see breakglass.h): requests and policies in,
 * decisions, desired RoleBindings, the writes to reach them, the next expiry and the status out. */
#include "tenancy/breakglass.h"
#include "tenancy/tenant.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tenancy/desired.h"
#include "util/clock.h"

#define RBAC_GROUP "rbac.authorization.k8s.io"

const char *tn_breakglass_state_name(enum tn_breakglass_state s) {
  switch (s) {
  case TN_BREAKGLASS_PENDING:
    return "Pending";
  case TN_BREAKGLASS_ACTIVE:
    return "Active";
  case TN_BREAKGLASS_EXPIRED:
    return "Expired";
  case TN_BREAKGLASS_DENIED:
    return "Denied";
  }
  return "?";
}

const char *tn_breakglass_why_name(enum tn_breakglass_why w) {
  switch (w) {
  case TN_BREAKGLASS_WHY_EXPIRED:
    return "expired";
  case TN_BREAKGLASS_WHY_REMOVED:
    return "removed";
  case TN_BREAKGLASS_WHY_DENIED:
    return "denied";
  case TN_BREAKGLASS_WHY_CHANGED:
    return "changed";
  case TN_BREAKGLASS_WHY_OUT_OF_SCOPE:
    return "out-of-scope";
  }
  return "?";
}

/* ---- small helpers ------------------------------------------------------------------------------ */

static char *dup(const char *s) { return strdup(s ? s : ""); }

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  char *s = malloc((size_t)n + 1);
  if (!s)
    return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

static const char *str_at(const json_t *obj, const char *a, const char *b) {
  const json_t *v = json_object_get(obj, a);
  if (b)
    v = json_object_get(v, b);
  return json_string_value(v);
}

static const char *label(const json_t *obj, const char *key) {
  return json_string_value(json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), key));
}

static const char *annotation(const json_t *obj, const char *key) {
  return json_string_value(
      json_object_get(json_object_get(json_object_get(obj, "metadata"), "annotations"), key));
}

static void free_strv(char **v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void rfc3339(double t, char *dst, size_t n) { tn_time_rfc3339(t, dst, n); }

/* "tenant-admin, tenant-viewer" of role bits into dst[n]; "none" when 0. */
static void roles_text(unsigned bits, char *dst, size_t n) {
  size_t used = 0;
  dst[0] = '\0';
  for (int r = 0; r < TN_ROLE_COUNT; r++)
    if (bits & (1u << r))
      used += (size_t)snprintf(dst + used, used < n ? n - used : 0, "%s%s", used ? ", " : "",
                               tn_role_name((enum tn_role)r));
  if (!dst[0])
    snprintf(dst, n, "none");
}

/* ---- parsers ------------------------------------------------------------------------------------ */

int tn_breakglass_parse_time(const char *s, double *out) {
  struct tm tm = {0};
  if (!s || !isdigit((unsigned char)s[0]))
    return TN_EINVALID;
  const char *p = strptime(s, "%Y-%m-%d", &tm);
  if (!p || (*p != 'T' && *p != 't') || !isdigit((unsigned char)p[1]))
    return TN_EINVALID;
  p = strptime(p + 1, "%H:%M:%S", &tm);
  if (!p)
    return TN_EINVALID;
  double frac = 0, scale = 0.1;
  if (*p == '.') {
    p++;
    if (!isdigit((unsigned char)*p))
      return TN_EINVALID;
    for (; isdigit((unsigned char)*p); p++, scale /= 10)
      frac += (*p - '0') * scale;
  }
  long offset = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p == '-' ? -1 : 1;
    if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) || p[3] != ':' ||
        !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]))
      return TN_EINVALID;
    int hh = (p[1] - '0') * 10 + (p[2] - '0'), mm = (p[4] - '0') * 10 + (p[5] - '0');
    if (hh > 23 || mm > 59)
      return TN_EINVALID;
    offset = sign * (hh * 3600L + mm * 60L);
    p += 6;
  } else {
    return TN_EINVALID;
  }
  if (*p)
    return TN_EINVALID;
  time_t t = timegm(&tm);
  if (t == (time_t)-1)
    return TN_EINVALID;
  *out = (double)t + frac - (double)offset;
  return 0;
}

int tn_breakglass_parse_duration(const char *s, double *out) {
  static const struct {
    char unit;
    double seconds;
  } units[] = {{'h', 3600}, {'m', 60}, {'s', 1}};
  if (!s || !*s)
    return TN_EINVALID;
  const char *p = s;
  double total = 0;
  for (size_t u = 0; u < 3 && *p; u++) {
    const char *q = p;
    long long v = 0;
    int digits = 0;
    while (isdigit((unsigned char)*q) && digits < 10) {
      v = v * 10 + (*q - '0');
      q++;
      digits++;
    }
    if (!digits)
      return TN_EINVALID;
    /* the unit must be this one or a later one */
    size_t k = u;
    while (k < 3 && units[k].unit != *q)
      k++;
    if (k == 3)
      return TN_EINVALID;
    total += (double)v * units[k].seconds;
    u = k;
    p = q + 1;
  }
  if (*p || total <= 0)
    return TN_EINVALID;
  *out = total;
  return 0;
}

void tn_breakglass_format_duration(double s, char *dst, size_t n) {
  long long t = s > 0 ? (long long)llround(s) : 0;
  long long h = t / 3600, m = t % 3600 / 60, sec = t % 60;
  size_t used = 0;
  dst[0] = '\0';
  if (h)
    used += (size_t)snprintf(dst + used, used < n ? n - used : 0, "%lldh", h);
  if (m)
    used += (size_t)snprintf(dst + used, used < n ? n - used : 0, "%lldm", m);
  if (sec || !t)
    snprintf(dst + used, used < n ? n - used : 0, "%llds", sec);
}

bool tn_breakglass_is_binding(const json_t *obj) { return label(obj, TN_LABEL_BREAK_GLASS) != NULL; }

/* ---- policies ------------------------------------------------------------------------------------- */

void tn_breakglass_policy_cleanup(struct tn_breakglass_policy *p) {
  if (!p)
    return;
  free(p->name);
  free(p->invalid);
  memset(p, 0, sizeof *p);
}

int tn_breakglass_policy_parse(const json_t *obj, struct tn_breakglass_policy *out) {
  memset(out, 0, sizeof *out);
  out->max_duration_s = TN_BREAKGLASS_DEFAULT_MAX_DURATION_S;
  out->roles = (1u << TN_ROLE_COUNT) - 1;
  if (!(out->name = dup(str_at(obj, "metadata", "name"))))
    goto nomem;
  const json_t *bg = json_object_get(json_object_get(obj, "spec"), "breakGlass");
  if (!bg)
    return 0;
  out->present = true;
  if (!json_is_object(bg)) {
    out->invalid = strf("spec.breakGlass must be an object");
    goto check;
  }
  const json_t *allowed = json_object_get(bg, "allowed");
  if (allowed && !json_is_boolean(allowed)) {
    out->invalid = strf("spec.breakGlass.allowed must be true or false");
    goto check;
  }
  out->allowed = json_is_true(allowed);
  const json_t *md = json_object_get(bg, "maxDuration");
  if (md &&
      (!json_is_string(md) || tn_breakglass_parse_duration(json_string_value(md), &out->max_duration_s))) {
    out->invalid = strf("spec.breakGlass.maxDuration \"%s\" is not a duration such as 4h, 90m or 1h30m",
                        json_is_string(md) ? json_string_value(md) : "");
    goto check;
  }
  const json_t *roles = json_object_get(bg, "roles");
  if (roles) {
    if (!json_is_array(roles)) {
      out->invalid = strf("spec.breakGlass.roles must be a list of tenant roles");
      goto check;
    }
    out->roles = 0;
    size_t i;
    const json_t *r;
    json_array_foreach(roles, i, r) {
      enum tn_role role;
      if (tn_role_parse(json_string_value(r), &role)) {
        out->invalid = strf("spec.breakGlass.roles[%zu] \"%s\" is not tenant-admin, tenant-developer or "
                            "tenant-viewer",
                            i, json_string_value(r) ? json_string_value(r) : "");
        goto check;
      }
      out->roles |= 1u << role;
    }
  }
  return 0;
check:
  if (out->invalid)
    return 0;
nomem:
  tn_breakglass_policy_cleanup(out);
  return -ENOMEM;
}

/* ---- requests ------------------------------------------------------------------------------------- */

static void request_cleanup(struct tn_breakglass_request *r) {
  free(r->id);
  free(r->subject);
  free(r->role);
  free(r->reason);
  free(r->expires_at);
  free_strv(r->environments, r->n_environments);
  free(r->invalid);
  memset(r, 0, sizeof *r);
}

static bool blank(const char *s) {
  for (; s && *s; s++)
    if (!isspace((unsigned char)*s))
      return false;
  return true;
}

static bool in_list(const json_t *arr, const char *s) {
  size_t i;
  const json_t *v;
  json_array_foreach(arr, i, v) {
    if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
      return true;
  }
  return false;
}

/* Fills r from entry i of spec.breakGlass. Returns 0 or -ENOMEM. */
static int request_parse(const json_t *e, size_t i, const json_t *tenant_envs,
                         struct tn_breakglass_request *r) {
  const char *user = json_string_value(json_object_get(e, "user"));
  const char *group = json_string_value(json_object_get(e, "group"));
  r->group = group && *group && !(user && *user);
  if (!(r->id = dup(json_string_value(json_object_get(e, "id")))) ||
      !(r->subject = dup(r->group ? group : user)) ||
      !(r->role = dup(json_string_value(json_object_get(e, "role")))) ||
      !(r->reason = dup(json_string_value(json_object_get(e, "reason")))) ||
      !(r->expires_at = dup(json_string_value(json_object_get(e, "expiresAt")))))
    return -ENOMEM;
  const json_t *envs = json_object_get(e, "environments");
  size_t n = json_array_size(envs);
  if (n) {
    if (!(r->environments = calloc(n, sizeof *r->environments)))
      return -ENOMEM;
    for (size_t k = 0; k < n; k++) {
      if (!(r->environments[k] = dup(json_string_value(json_array_get(envs, k)))))
        return -ENOMEM;
      r->n_environments++;
    }
  }
  const char *what = NULL;
  char buf[512];
  if ((user && *user) == (group && *group)) {
    what = "set exactly one of user and group: the person or the group of people who get the access";
  } else if (tn_subject_is_reserved(r->subject)) {
    snprintf(buf, sizeof buf,
             "%s \"%.200s\" is reserved to Kubernetes (the prefix " TN_RESERVED_SUBJECT_PREFIX
             " names built-in identities, service accounts and cluster components): it is never granted "
             "break-glass access; name a person or a group of the tenant's identity provider",
             r->group ? "group" : "user", r->subject);
    what = buf;
  } else if (tn_role_parse(r->role, &r->role_id)) {
    snprintf(buf, sizeof buf, "role \"%s\" is not tenant-admin, tenant-developer or tenant-viewer", r->role);
    what = buf;
  } else if (blank(r->reason)) {
    what = "reason is empty: say why the access is needed (it is recorded in the audit trail)";
  } else if (tn_breakglass_parse_time(r->expires_at, &r->expires)) {
    snprintf(buf, sizeof buf,
             "expiresAt \"%s\" is not an RFC 3339 date-time such as 2025-06-01T18:00:00Z: say when the "
             "access ends",
             r->expires_at);
    what = buf;
  } else if (n) {
    size_t known = 0;
    for (size_t k = 0; k < r->n_environments; k++)
      known += in_list(tenant_envs, r->environments[k]);
    if (!known) {
      snprintf(buf, sizeof buf,
               "none of the requested environments is one of the tenant's (spec.environments): name at "
               "least one of them, or leave environments out for all");
      what = buf;
    }
  }
  if (what && !(r->invalid = strf("spec.breakGlass[%zu] (id %s): %s", i, r->id, what)))
    return -ENOMEM;
  return 0;
}

/* ---- planning ------------------------------------------------------------------------------------- */

void tn_breakglass_plan_cleanup(struct tn_breakglass_plan *p) {
  if (!p)
    return;
  for (size_t i = 0; i < p->n_requests; i++) {
    request_cleanup(&p->requests[i]);
    if (p->decisions)
      free_strv(p->decisions[i].namespaces, p->decisions[i].n_namespaces);
  }
  free(p->requests);
  free(p->decisions);
  for (size_t i = 0; i < p->n_changes; i++) {
    struct tn_breakglass_change *c = &p->changes[i];
    free(c->id);
    free(c->namespace);
    free(c->name);
    free(c->environment);
    json_decref(c->body);
    free(c->uid);
    free(c->resource_version);
    free(c->subject_kind);
    free(c->subject);
    free(c->role);
    free(c->expires_at);
  }
  free(p->changes);
  free(p->tenant);
  free(p->tenant_uid);
  memset(p, 0, sizeof *p);
}

/* A break-glass binding of this tenant (the tenant label and the break-glass label). */
static bool ours_labelled(const json_t *obj, const char *tenant) {
  const char *t = label(obj, TN_LABEL_TENANT);
  return t && strcmp(t, tenant) == 0 && label(obj, TN_LABEL_BREAK_GLASS);
}

static const json_t *prev_status(const json_t *tenant, const char *id) {
  const json_t *arr = json_object_get(json_object_get(tenant, "status"), "breakGlass");
  size_t i;
  const json_t *e;
  json_array_foreach(arr, i, e) {
    const char *eid = json_string_value(json_object_get(e, "id"));
    if (eid && strcmp(eid, id) == 0)
      return e;
  }
  return NULL;
}

struct planner {
  const struct tn_breakglass_input *in;
  struct tn_breakglass_plan *out;
  const struct tn_breakglass_policy **pols; /* sorted by name */
  size_t n_pols;
  const json_t *tenant_envs; /* spec.environments */
  size_t cap_changes;
  bool *matched; /* per observed element: a desired binding claimed it */
};

static int cmp_policy(const void *a, const void *b) {
  const struct tn_breakglass_policy *x = *(const struct tn_breakglass_policy *const *)a;
  const struct tn_breakglass_policy *y = *(const struct tn_breakglass_policy *const *)b;
  return strcmp(x->name ? x->name : "", y->name ? y->name : "");
}

/* Applies the policy rules to an otherwise valid, unexpired request. Sets d->state to Denied
 * (with the message) or leaves it Pending with d->policy set. */
static void decide_policy(struct planner *pl, struct tn_breakglass_decision *d) {
  const struct tn_breakglass_request *r = d->req;
  char first[32], expires[32];
  rfc3339(d->first_seen, first, sizeof first);
  rfc3339(r->expires, expires, sizeof expires);
  /* A deny wins: allowed false, or a policy that cannot be read. */
  for (size_t i = 0; i < pl->n_pols; i++) {
    const struct tn_breakglass_policy *p = pl->pols[i];
    if (p->present && p->invalid) {
      d->state = TN_BREAKGLASS_DENIED;
      snprintf(
          d->message, sizeof d->message,
          "TenancyPolicy %s: %s; break-glass is refused while a policy's spec.breakGlass cannot be read: "
          "fix that policy",
          p->name, p->invalid);
      return;
    }
    if (p->present && !p->allowed) {
      d->state = TN_BREAKGLASS_DENIED;
      snprintf(
          d->message, sizeof d->message,
          "TenancyPolicy %s forbids break-glass (spec.breakGlass.allowed is false), and a deny wins over "
          "any policy that allows it: nothing is bound; ask the platform team to allow it there, or "
          "remove the request",
          p->name);
      return;
    }
  }
  unsigned allowed_roles = 0;
  size_t n_allowing = 0;
  const struct tn_breakglass_policy *best = NULL;
  for (size_t i = 0; i < pl->n_pols; i++) {
    const struct tn_breakglass_policy *p = pl->pols[i];
    if (!p->present || !p->allowed)
      continue;
    n_allowing++;
    allowed_roles |= p->roles;
    if ((p->roles & (1u << r->role_id)) && (!best || p->max_duration_s > best->max_duration_s))
      best = p;
  }
  if (!n_allowing) {
    d->state = TN_BREAKGLASS_DENIED;
    snprintf(d->message, sizeof d->message,
             "no TenancyPolicy allows break-glass: nothing is bound; a platform administrator must set "
             "spec.breakGlass.allowed: true (with maxDuration and roles) in a TenancyPolicy, and the request "
             "is then granted if it fits");
    return;
  }
  if (!best) {
    char roles[96];
    roles_text(allowed_roles, roles, sizeof roles);
    d->state = TN_BREAKGLASS_DENIED;
    snprintf(
        d->message, sizeof d->message,
        "no TenancyPolicy allows break-glass with role %s (allowed: %s): nothing is bound; request one of "
        "the allowed roles, or have a policy list %s in spec.breakGlass.roles",
        r->role, roles, r->role);
    return;
  }
  double window = r->expires - d->first_seen;
  if (window > best->max_duration_s) {
    char w[32], m[32], latest[32];
    tn_breakglass_format_duration(window, w, sizeof w);
    tn_breakglass_format_duration(best->max_duration_s, m, sizeof m);
    rfc3339(d->first_seen + best->max_duration_s, latest, sizeof latest);
    d->state = TN_BREAKGLASS_DENIED;
    snprintf(
        d->message, sizeof d->message,
        "expiresAt %s is %s after the operator first saw request %s (%s), longer than the %s TenancyPolicy "
        "%s allows for role %s: nothing is bound; set expiresAt to %s or earlier, or ask for a new "
        "request (new id) when more time is needed",
        expires, w, r->id, first, m, best->name, r->role, latest);
    return;
  }
  snprintf(d->policy, sizeof d->policy, "%s", best->name);
}

static int add_change(struct planner *pl, struct tn_breakglass_change **out) {
  struct tn_breakglass_plan *p = pl->out;
  if (p->n_changes == pl->cap_changes) {
    size_t cap = pl->cap_changes ? pl->cap_changes * 2 : 8;
    struct tn_breakglass_change *c = realloc(p->changes, cap * sizeof *c);
    if (!c)
      return -ENOMEM;
    p->changes = c;
    pl->cap_changes = cap;
  }
  *out = &p->changes[p->n_changes++];
  memset(*out, 0, sizeof **out);
  (*out)->decision = (size_t)-1;
  return 0;
}

static json_t *binding_body(const struct tn_breakglass_plan *p, const struct tn_breakglass_decision *d,
                            const char *ns, const char *env) {
  const struct tn_breakglass_request *r = d->req;
  char name[128], role[64], first[32];
  snprintf(name, sizeof name, "%s%s", TN_BREAKGLASS_NAME_PREFIX, r->id);
  snprintf(role, sizeof role, "%s%s", TN_CLUSTERROLE_PREFIX, r->role);
  rfc3339(d->first_seen, first, sizeof first);
  return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:{s:s, s:s, s:s}, s:[{s:s, s:s, s:s, "
                   "s:s, s:b, s:b}]},"
                   " s:{s:s, s:s, s:s}, s:[{s:s, s:s, s:s}]}",
                   "apiVersion", RBAC_GROUP "/v1", "kind", "RoleBinding", "metadata", "name", name,
                   "namespace", ns, "labels", TN_LABEL_TENANT, p->tenant, TN_LABEL_ENVIRONMENT, env,
                   TN_LABEL_MANAGED_BY, TN_MANAGED_BY, TN_LABEL_BREAK_GLASS, r->id, "annotations",
                   TN_ANNOTATION_BREAK_GLASS_REASON, r->reason, TN_ANNOTATION_BREAK_GLASS_EXPIRES_AT,
                   r->expires_at, TN_ANNOTATION_BREAK_GLASS_FIRST_SEEN_AT, first, "ownerReferences",
                   "apiVersion", TN_API_VERSION, "kind", "Tenant", "name", p->tenant, "uid", p->tenant_uid,
                   "controller", 1, "blockOwnerDeletion", 1, "roleRef", "apiGroup", RBAC_GROUP, "kind",
                   "ClusterRole", "name", role, "subjects", "apiGroup", RBAC_GROUP, "kind",
                   r->group ? "Group" : "User", "name", r->subject);
}

/* Whether every key of want (an object of strings) has the same value in have. */
static bool subset(const json_t *want, const json_t *have) {
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)want, k, v) {
    if (!json_equal(v, json_object_get(have, k)))
      return false;
  }
  return true;
}

/* The subject kind and name, role and expiry of an observed binding, for the audit trail. */
static int describe_observed(struct tn_breakglass_change *c, const json_t *obj) {
  const json_t *s = json_array_get(json_object_get(obj, "subjects"), 0);
  const char *role = str_at(obj, "roleRef", "name");
  size_t plen = strlen(TN_CLUSTERROLE_PREFIX);
  if (role && strncmp(role, TN_CLUSTERROLE_PREFIX, plen) == 0)
    role += plen;
  const char *first = annotation(obj, TN_ANNOTATION_BREAK_GLASS_FIRST_SEEN_AT);
  if (!first || tn_breakglass_parse_time(first, &c->first_seen))
    c->first_seen = 0;
  if (!(c->subject_kind = dup(json_string_value(json_object_get(s, "kind")))) ||
      !(c->subject = dup(json_string_value(json_object_get(s, "name")))) || !(c->role = dup(role)) ||
      !(c->expires_at = dup(annotation(obj, TN_ANNOTATION_BREAK_GLASS_EXPIRES_AT))))
    return -ENOMEM;
  return 0;
}

static int add_delete(struct planner *pl, const json_t *obj, enum tn_breakglass_why why, size_t decision) {
  struct tn_breakglass_change *c;
  const json_t *meta = json_object_get(obj, "metadata");
  if (add_change(pl, &c))
    return -ENOMEM;
  c->op = TN_BREAKGLASS_DELETE;
  c->why = why;
  c->decision = decision;
  if (!(c->id = dup(label(obj, TN_LABEL_BREAK_GLASS))) ||
      !(c->namespace = dup(json_string_value(json_object_get(meta, "namespace")))) ||
      !(c->name = dup(json_string_value(json_object_get(meta, "name")))) ||
      !(c->environment = dup(label(obj, TN_LABEL_ENVIRONMENT))) ||
      !(c->uid = dup(json_string_value(json_object_get(meta, "uid")))) ||
      !(c->resource_version = dup(json_string_value(json_object_get(meta, "resourceVersion")))))
    return -ENOMEM;
  return describe_observed(c, obj);
}

/* The desired binding of decision di in (ns, env) against what is observed: a create, an update, a
 * delete and create (the role changed: roleRef is immutable), or nothing. */
static int want_binding(struct planner *pl, size_t di, const char *ns, const char *env) {
  struct tn_breakglass_plan *p = pl->out;
  struct tn_breakglass_decision *d = &p->decisions[di];
  char name[128];
  snprintf(name, sizeof name, "%s%s", TN_BREAKGLASS_NAME_PREFIX, d->req->id);
  json_t *body = binding_body(p, d, ns, env);
  if (!body)
    return -ENOMEM;
  const json_t *have = NULL;
  size_t i;
  const json_t *o;
  json_array_foreach(pl->in->observed, i, o) {
    const json_t *meta = json_object_get(o, "metadata");
    const char *ons = json_string_value(json_object_get(meta, "namespace"));
    const char *oname = json_string_value(json_object_get(meta, "name"));
    if (ons && oname && strcmp(ons, ns) == 0 && strcmp(oname, name) == 0 && ours_labelled(o, p->tenant)) {
      have = o;
      pl->matched[i] = true;
      break;
    }
  }
  enum tn_breakglass_op op = TN_BREAKGLASS_CREATE;
  if (have) {
    const json_t *hmeta = json_object_get(have, "metadata"), *dmeta = json_object_get(body, "metadata");
    if (!tn_owned_by_tenant(have, p->tenant_uid)) {
      /* Someone else's object with our labels: never touched. */
      d->state = TN_BREAKGLASS_PENDING;
      snprintf(d->message, sizeof d->message,
               "RoleBinding %s/%s exists and is not the operator's: delete or rename it so break-glass "
               "request %s can be bound",
               ns, name, d->req->id);
      json_decref(body);
      return 0;
    }
    if (json_object_get(hmeta, "deletionTimestamp")) {
      /* Being deleted: its deletion brings us back (the watch), then it is created again. */
      d->state = TN_BREAKGLASS_PENDING;
      snprintf(d->message, sizeof d->message, "RoleBinding %s/%s is being deleted; it is created again next",
               ns, name);
      json_decref(body);
      return 0;
    }
    if (!json_equal(json_object_get(have, "roleRef"), json_object_get(body, "roleRef"))) {
      if (add_delete(pl, have, TN_BREAKGLASS_WHY_CHANGED, di)) {
        json_decref(body);
        return -ENOMEM;
      }
    } else if (json_equal(json_object_get(have, "subjects"), json_object_get(body, "subjects")) &&
               subset(json_object_get(dmeta, "labels"), json_object_get(hmeta, "labels")) &&
               subset(json_object_get(dmeta, "annotations"), json_object_get(hmeta, "annotations"))) {
      json_decref(body);
      return 0; /* as desired */
    } else {
      op = TN_BREAKGLASS_UPDATE;
    }
  }
  struct tn_breakglass_change *c;
  if (add_change(pl, &c)) {
    json_decref(body);
    return -ENOMEM;
  }
  c->op = op;
  c->decision = di;
  c->body = body;
  if (!(c->id = dup(d->req->id)) || !(c->namespace = dup(ns)) || !(c->name = dup(name)) ||
      !(c->environment = dup(env)))
    return -ENOMEM;
  if (op == TN_BREAKGLASS_UPDATE) {
    const json_t *hmeta = json_object_get(have, "metadata");
    if (!(c->uid = dup(json_string_value(json_object_get(hmeta, "uid")))) ||
        !(c->resource_version = dup(json_string_value(json_object_get(hmeta, "resourceVersion")))) ||
        json_object_set_new(json_object_get(body, "metadata"), "resourceVersion",
                            json_string(c->resource_version)))
      return -ENOMEM;
  }
  return 0;
}

/* Decides request i; fills decisions[i]. */
static int decide(struct planner *pl, size_t i) {
  const struct tn_breakglass_input *in = pl->in;
  struct tn_breakglass_plan *p = pl->out;
  struct tn_breakglass_decision *d = &p->decisions[i];
  const struct tn_breakglass_request *r = &p->requests[i];
  d->req = r;
  d->state = TN_BREAKGLASS_PENDING;

  /* First sight: the status, the bindings' annotation, else now (whole seconds). */
  d->first_seen = floor(in->now);
  const json_t *prev = prev_status(in->tenant, r->id);
  double t;
  if (prev && tn_breakglass_parse_time(json_string_value(json_object_get(prev, "firstSeenAt")), &t) == 0 &&
      t < d->first_seen)
    d->first_seen = t;
  size_t k;
  const json_t *o;
  json_array_foreach(in->observed, k, o) {
    const char *id = label(o, TN_LABEL_BREAK_GLASS);
    if (id && strcmp(id, r->id) == 0 && ours_labelled(o, p->tenant) && tn_owned_by_tenant(o, p->tenant_uid) &&
        tn_breakglass_parse_time(annotation(o, TN_ANNOTATION_BREAK_GLASS_FIRST_SEEN_AT), &t) == 0 &&
        t < d->first_seen)
      d->first_seen = t;
  }

  char expires[32];
  rfc3339(r->expires, expires, sizeof expires);
  if (r->invalid) {
    d->state = TN_BREAKGLASS_DENIED;
    snprintf(d->message, sizeof d->message, "%s", r->invalid);
  } else if (r->expires <= in->now) {
    d->state = TN_BREAKGLASS_EXPIRED;
    snprintf(d->message, sizeof d->message,
             "expired at %s: nothing is bound any more; remove the request from spec.breakGlass", expires);
  } else {
    decide_policy(pl, d);
  }
  if (d->state == TN_BREAKGLASS_DENIED) {
    const char *pstate = json_string_value(json_object_get(prev, "state"));
    const char *pmsg = json_string_value(json_object_get(prev, "message"));
    d->newly_denied = !(pstate && pmsg && strcmp(pstate, "Denied") == 0 && strcmp(pmsg, d->message) == 0);
    return 0;
  }
  if (d->state != TN_BREAKGLASS_PENDING)
    return 0;

  /* Allowed: the namespaces it covers. */
  const json_t *tenant_envs = pl->tenant_envs;
  char unknown[256] = "";
  size_t nu = 0;
  for (size_t e = 0; e < r->n_environments; e++)
    if (!in_list(tenant_envs, r->environments[e]))
      nu += (size_t)snprintf(unknown + nu, nu < sizeof unknown ? sizeof unknown - nu : 0, "%s%s",
                             nu ? ", " : "", r->environments[e]);
  d->namespaces = calloc(in->n_environments ? in->n_environments : 1, sizeof *d->namespaces);
  if (!d->namespaces)
    return -ENOMEM;
  for (size_t e = 0; e < in->n_environments; e++) {
    const char *env = in->environments[e];
    bool wanted = r->n_environments == 0 ? in_list(tenant_envs, env) : false;
    for (size_t q = 0; q < r->n_environments && !wanted; q++)
      wanted = strcmp(r->environments[q], env) == 0 && in_list(tenant_envs, env);
    if (!wanted)
      continue;
    char ns[TN_NAMESPACE_NAME_MAX + 1];
    if (tn_namespace_name(p->tenant, env, ns, sizeof ns, NULL))
      continue; /* cannot exist */
    bool seen = false;
    for (size_t q = 0; q < d->n_namespaces; q++)
      seen |= strcmp(d->namespaces[q], ns) == 0;
    if (seen)
      continue;
    if (!(d->namespaces[d->n_namespaces] = strdup(ns)))
      return -ENOMEM;
    d->n_namespaces++;
  }
  qsort(d->namespaces, d->n_namespaces, sizeof *d->namespaces, cmp_str);
  char note[320] = "";
  if (nu)
    snprintf(note, sizeof note, " (environments not among the tenant's, ignored: %s)", unknown);
  if (d->n_namespaces == 0) {
    snprintf(d->message, sizeof d->message,
             "allowed by TenancyPolicy %s until %s, not bound yet: none of the namespaces it covers exists "
             "yet%s",
             d->policy, expires, note);
    return 0;
  }
  d->state = TN_BREAKGLASS_ACTIVE;
  char nss[400] = "";
  size_t used = 0;
  for (size_t q = 0; q < d->n_namespaces; q++)
    used += (size_t)snprintf(nss + used, used < sizeof nss ? sizeof nss - used : 0, "%s%s", q ? ", " : "",
                             d->namespaces[q]);
  snprintf(d->message, sizeof d->message,
           "granted by TenancyPolicy %s: %s %s has ClusterRole %s%s in %s until %s%s", d->policy,
           r->group ? "Group" : "User", r->subject, TN_CLUSTERROLE_PREFIX, r->role, nss, expires, note);
  return 0;
}

static int cmp_delete(const void *a, const void *b) {
  const struct tn_breakglass_change *x = a, *y = b;
  int c = strcmp(x->namespace, y->namespace);
  return c ? c : strcmp(x->name, y->name);
}

/* Deletes first (by namespace and name), then creates and updates in the order they were planned
 * (requests in spec order, namespaces sorted). */
static int order_changes(struct tn_breakglass_plan *p) {
  if (p->n_changes < 2)
    return 0;
  struct tn_breakglass_change *v = malloc(p->n_changes * sizeof *v);
  if (!v)
    return -ENOMEM;
  size_t n = 0;
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < p->n_changes; i++)
      if ((p->changes[i].op == TN_BREAKGLASS_DELETE) == (pass == 0))
        v[n++] = p->changes[i];
  size_t n_del = 0;
  while (n_del < n && v[n_del].op == TN_BREAKGLASS_DELETE)
    n_del++;
  qsort(v, n_del, sizeof *v, cmp_delete);
  memcpy(p->changes, v, n * sizeof *v);
  free(v);
  return 0;
}

int tn_breakglass_plan(const struct tn_breakglass_input *in, struct tn_breakglass_plan *out,
                       struct tn_error *err) {
  struct planner pl = {.in = in, .out = out};
  int rc = -ENOMEM;
  memset(out, 0, sizeof *out);
  const json_t *meta = json_object_get(in->tenant, "metadata");
  const char *name = json_string_value(json_object_get(meta, "name"));
  const char *uid = json_string_value(json_object_get(meta, "uid"));
  if (!name || !*name || !uid || !*uid)
    return tn_error_set(err, TN_EINVALID, "break-glass: the tenant has no metadata.name or metadata.uid");
  if (!(out->tenant = strdup(name)) || !(out->tenant_uid = strdup(uid)))
    goto nomem;
  const json_t *spec = json_object_get(in->tenant, "spec");
  pl.tenant_envs = json_object_get(spec, "environments");

  pl.n_pols = in->n_policies;
  pl.pols = calloc(pl.n_pols ? pl.n_pols : 1, sizeof *pl.pols);
  size_t n_obs = json_array_size(in->observed);
  pl.matched = calloc(n_obs ? n_obs : 1, sizeof *pl.matched);
  if (!pl.pols || !pl.matched)
    goto nomem;
  for (size_t i = 0; i < pl.n_pols; i++)
    pl.pols[i] = &in->policies[i];
  qsort(pl.pols, pl.n_pols, sizeof *pl.pols, cmp_policy);

  /* The requests: entries without a usable id cannot name a binding nor a status entry. */
  const json_t *reqs = json_object_get(spec, "breakGlass");
  size_t n = json_array_size(reqs);
  out->requests = calloc(n ? n : 1, sizeof *out->requests);
  out->decisions = calloc(n ? n : 1, sizeof *out->decisions);
  if (!out->requests || !out->decisions)
    goto nomem;
  for (size_t i = 0; i < n; i++) {
    const json_t *e = json_array_get(reqs, i);
    const char *id = json_string_value(json_object_get(e, "id"));
    bool dup_id = false;
    for (size_t k = 0; id && k < out->n_requests; k++)
      dup_id |= strcmp(out->requests[k].id, id) == 0;
    if (!tn_is_dns_label(id) || dup_id)
      continue;
    struct tn_breakglass_request *r = &out->requests[out->n_requests++];
    if (request_parse(e, i, pl.tenant_envs, r))
      goto nomem;
  }

  for (size_t i = 0; i < out->n_requests; i++) {
    if (decide(&pl, i))
      goto nomem;
    struct tn_breakglass_decision *d = &out->decisions[i];
    if (d->state == TN_BREAKGLASS_ACTIVE)
      for (size_t q = 0; q < d->n_namespaces; q++)
        if (want_binding(&pl, i, d->namespaces[q], d->namespaces[q] + strlen(out->tenant) + 1))
          goto nomem;
    if ((d->state == TN_BREAKGLASS_ACTIVE || d->state == TN_BREAKGLASS_PENDING) &&
        (out->next_expiry == 0 || d->req->expires < out->next_expiry))
      out->next_expiry = d->req->expires;
  }

  /* Observed bindings of the tenant that no request wants any more. */
  size_t i;
  const json_t *o;
  json_array_foreach(in->observed, i, o) {
    if (pl.matched[i] || !ours_labelled(o, out->tenant) || !tn_owned_by_tenant(o, out->tenant_uid) ||
        json_object_get(json_object_get(o, "metadata"), "deletionTimestamp"))
      continue;
    const char *id = label(o, TN_LABEL_BREAK_GLASS);
    size_t di = (size_t)-1;
    for (size_t k = 0; k < out->n_requests && di == (size_t)-1; k++)
      if (strcmp(out->requests[k].id, id) == 0)
        di = k;
    enum tn_breakglass_why why = TN_BREAKGLASS_WHY_REMOVED;
    if (di != (size_t)-1) {
      switch (out->decisions[di].state) {
      case TN_BREAKGLASS_EXPIRED:
        why = TN_BREAKGLASS_WHY_EXPIRED;
        break;
      case TN_BREAKGLASS_DENIED:
        why = TN_BREAKGLASS_WHY_DENIED;
        break;
      default:
        why = TN_BREAKGLASS_WHY_OUT_OF_SCOPE;
      }
    }
    if (add_delete(&pl, o, why, di))
      goto nomem;
  }
  if (order_changes(out))
    goto nomem;
  rc = 0;
  goto out;
nomem:
  tn_breakglass_plan_cleanup(out);
  tn_error_set(err, -ENOMEM, "out of memory");
out:
  free(pl.pols);
  free(pl.matched);
  return rc;
}

json_t *tn_breakglass_status(const struct tn_breakglass_plan *p) {
  json_t *arr = json_array();
  if (!arr)
    return NULL;
  for (size_t i = 0; i < p->n_requests; i++) {
    const struct tn_breakglass_decision *d = &p->decisions[i];
    char first[32], expires[32];
    rfc3339(d->first_seen, first, sizeof first);
    json_t *e = json_pack("{s:s, s:s, s:s, s:s}", "id", d->req->id, "state",
                          tn_breakglass_state_name(d->state), "message", d->message, "firstSeenAt", first);
    if (!e || json_array_append_new(arr, e))
      goto nomem;
    if (!d->req->invalid) {
      rfc3339(d->req->expires, expires, sizeof expires);
      if (json_object_set_new(e, "expiresAt", json_string(expires)))
        goto nomem;
    }
    if (d->n_namespaces && (d->state == TN_BREAKGLASS_ACTIVE || d->state == TN_BREAKGLASS_PENDING)) {
      json_t *nss = json_array();
      if (!nss || json_object_set_new(e, "namespaces", nss))
        goto nomem;
      for (size_t q = 0; q < d->n_namespaces; q++)
        if (json_array_append_new(nss, json_string(d->namespaces[q])))
          goto nomem;
    }
  }
  return arr;
nomem:
  json_decref(arr);
  return NULL;
}

/* ---- reports -------------------------------------------------------------------------------------- */

void tn_breakglass_report_cleanup(struct tn_breakglass_report *r) {
  if (!r)
    return;
  free(r->id);
  free(r->subject_kind);
  free(r->subject);
  free(r->role);
  free(r->expires_at);
  free(r->reason);
  free(r->why);
  free(r->correlation_id);
  free_strv(r->namespaces, r->n_namespaces);
  memset(r, 0, sizeof *r);
}

char *tn_breakglass_report_details(const struct tn_breakglass_report *r) {
  json_t *o = json_object(), *nss = json_array();
  char *s = NULL;
  if (!o || !nss)
    goto out;
  bool group = r->subject_kind && strcmp(r->subject_kind, "Group") == 0;
  if ((r->id && json_object_set_new(o, "id", json_string(r->id))) ||
      (r->subject && json_object_set_new(o, group ? "group" : "user", json_string(r->subject))) ||
      (r->role && json_object_set_new(o, "role", json_string(r->role))) ||
      (r->expires_at && json_object_set_new(o, "expiresAt", json_string(r->expires_at))) ||
      (r->reason && json_object_set_new(o, "reason", json_string(r->reason))) ||
      (r->why && json_object_set_new(o, "why", json_string(r->why))))
    goto out;
  for (size_t i = 0; i < r->n_namespaces; i++)
    if (json_array_append_new(nss, json_string(r->namespaces[i])))
      goto out;
  if (json_object_set(o, "namespaces", nss))
    goto out;
  s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
out:
  json_decref(nss);
  json_decref(o);
  return s;
}
