#define _GNU_SOURCE /* strptime, timegm */
/* migration.c - the TenantMigration controller (see migration.h and docs/migration.md).
 *
 * Ordering that makes every step safe to run twice (a SIGKILL anywhere): the step's work (which
 * is idempotent: IF NOT EXISTS, TRUNCATE + COPY in one transaction, a role NOLOGIN again), then
 * its audit row, then the status write that records the next phase, then the Event. The object
 * is read from the API server at the start of each pass (never a possibly stale cache), so a
 * step that was recorded done is never run again. The two steps that switch the tenant (Cutover,
 * RollingBack) first check whether the Tenant already points where they would point it. */
#include "converge/migration.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/outbox.h"
#include "converge/migration_logical.h"
#include "converge/migration_pg.h"
#include "converge/tenant_db.h"
#include "runtime/events.h"
#include "runtime/log.h"
#include "tenancy/capacity.h"
#include "tenancy/cloudevents.h"
#include "tenancy/dbplan.h"
#include "tenancy/migration.h"
#include "tenancy/policy.h"
#include "util/b64.h"
#include "util/clock.h"

const struct tn_gvr tn_gvr_tenantmigrations = {TN_API_GROUP, "v1alpha1", "tenantmigrations", false};
static const struct tn_gvr gvr_secrets = {"", "v1", "secrets", true};

struct tn_migrations {
  struct tn_reconciler *rec;
  struct tn_informer *inf;
  struct tn_controller *ctl;
};

/* ---- informer handlers ------------------------------------------------------------------------ */

static void on_change(void *ud, json_t *obj) {
  tn_controller_enqueue_object(((struct tn_migrations *)ud)->ctl, obj);
}
static void on_update(void *ud, json_t *old, json_t *cur) {
  (void)old;
  on_change(ud, cur);
}

int tn_migrations_new(struct tn_reconciler *rec, struct tn_informer *migrations, struct tn_metrics *metrics,
                      struct tn_migrations **out, struct tn_error *err) {
  struct tn_migrations *m = calloc(1, sizeof *m);
  if (!m)
    return tn_error_set(err, -ENOMEM, "out of memory");
  m->rec = rec;
  m->inf = migrations;
  m->ctl = tn_controller_new(&(struct tn_controller_config){.name = "tenantmigration",
                                                            .workers = 1,
                                                            .reconcile = tn_migration_reconcile,
                                                            .ud = m,
                                                            .metrics = metrics});
  if (!m->ctl) {
    free(m);
    return tn_error_set(err, -ENOMEM, "cannot create the migration controller");
  }
  struct tn_informer_handlers h = {on_change, on_update, NULL, m};
  int rc = tn_informer_add_handlers(migrations, &h, err);
  if (rc) {
    tn_controller_free(m->ctl);
    free(m);
    return rc;
  }
  *out = m;
  return 0;
}

int tn_migrations_start(struct tn_migrations *m) { return m ? tn_controller_start(m->ctl) : 0; }
void tn_migrations_stop(struct tn_migrations *m, double deadline_s) {
  if (m)
    tn_controller_stop(m->ctl, deadline_s);
}
void tn_migrations_abandon(struct tn_migrations *m) {
  if (m)
    tn_controller_abandon(m->ctl);
}
void tn_migrations_free(struct tn_migrations *m) {
  if (!m)
    return;
  tn_controller_free(m->ctl);
  free(m);
}

/* ---- small helpers ------------------------------------------------------------------------------ */

static const char *str_at(json_t *obj, const char *a, const char *b) {
  json_t *v = json_object_get(obj, a);
  return json_string_value(b ? json_object_get(v, b) : v);
}

static const char *status_str(json_t *obj, const char *a, const char *b) {
  return str_at(json_object_get(obj, "status"), a, b);
}

bool tn_migration_holds(struct tn_informer *migrations, json_t *tenant_obj, char *why, size_t n) {
  if (!migrations || !tenant_obj)
    return false;
  const char *tenant = str_at(tenant_obj, "metadata", "name");
  const char *server = status_str(tenant_obj, "database", "server");
  const char *piso = status_str(tenant_obj, "placement", "isolation");
  json_t *all = tn_informer_list(migrations);
  bool held = false;
  size_t i;
  json_t *m;
  json_array_foreach(all, i, m) {
    const char *t = str_at(m, "spec", "tenant");
    enum tn_mig_phase p;
    if (!t || !tenant || strcmp(t, tenant) != 0 || tn_mig_phase_parse(status_str(m, "phase", NULL), &p))
      continue;
    const char *name = str_at(m, "metadata", "name");
    if ((p == TN_MIG_CUTOVER && status_str(m, "cutoverStartedAt", NULL)) || p == TN_MIG_ROLLING_BACK) {
      snprintf(why, n, "TenantMigration %s: write freeze of the %s", name ? name : "?",
               p == TN_MIG_CUTOVER ? "cutover" : "rollback");
      held = true;
    } else if (p == TN_MIG_ROLLED_BACK) {
      /* rolled back a moment ago: a copy of the Tenant still on the target is stale */
      const char *target = status_str(m, "target", "server"), *fin = status_str(m, "finishedAt", NULL);
      const char *tiso = status_str(m, "target", "isolation");
      struct tm tm = {0};
      /* ISOLATION: on the same server, the isolation tells the source from the target */
      if (target && server && strcmp(server, target) == 0 && (!tiso || !piso || strcmp(piso, tiso) == 0) &&
          fin && strptime(fin, "%Y-%m-%dT%H:%M:%SZ", &tm) && tn_wall_now() - (double)timegm(&tm) < 120) {
        snprintf(why, n, "TenantMigration %s rolled the tenant back; waiting for the cache to show it",
                 name ? name : "?");
        held = true;
      }
    } else if (p == TN_MIG_ROLLBACK_WINDOW || p == TN_MIG_CLEANUP) {
      /* the migration moved the tenant: a copy of the Tenant that does not show it yet is stale */
      const char *target = status_str(m, "target", "server"), *tiso = status_str(m, "target", "isolation");
      if (target && (!server || strcmp(server, target) != 0 || (tiso && piso && strcmp(piso, tiso) != 0))) {
        snprintf(why, n, "TenantMigration %s moved the tenant to server %s; waiting for the cache to show it",
                 name ? name : "?", target);
        held = true;
      }
    }
    if (held)
      break;
  }
  json_decref(all);
  return held;
}

/* ---- one pass ----------------------------------------------------------------------------------- */

struct side {
  char region[64], server[64];
  enum tn_isolation iso; /* the tenant's isolation on this side (status.source/target.isolation) */
  json_t *region_obj;
  struct tn_db_server_conf conf;
  struct tn_db_names names;
  PGconn *pg; /* admin, to the tenant's database */
};

struct mrun {
  struct tn_migrations *m;
  struct tn_reconciler *r;
  const char *key;
  json_t *obj;    /* the TenantMigration, fresh from the API server */
  json_t *st;     /* the status being built */
  json_t *tenant; /* the Tenant, fresh */
  struct tn_tenant *t;
  struct tn_mig_spec spec;
  enum tn_mig_phase phase;
  long long generation;
  struct tn_log_fields lf;
  struct side src, dst;
  bool pending;          /* the step is under way (logical Copy: tables still in their initial copy) */
  char pending_msg[512]; /* its condition message */
};

static void side_close(struct side *s) {
  if (s->pg)
    PQfinish(s->pg);
  tn_db_server_conf_cleanup(&s->conf);
  json_decref(s->region_obj);
  memset(s, 0, sizeof *s);
}

static void event(struct mrun *x, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void event(struct mrun *x, const char *type, const char *reason, const char *fmt, ...) {
  char note[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(note, sizeof note, fmt, ap);
  va_end(ap);
  json_t *meta = json_object_get(x->obj, "metadata");
  struct tn_object_ref ref = {.api_version = TN_API_VERSION,
                              .kind = "TenantMigration",
                              .name = json_string_value(json_object_get(meta, "name")),
                              .uid = json_string_value(json_object_get(meta, "uid")),
                              .resource_version =
                                  json_string_value(json_object_get(meta, "resourceVersion"))};
  tn_recorder_eventf(x->r->recorder, &ref, type, reason, "Migrate", "%s", note);
}

static void tenant_event(struct mrun *x, const char *type, const char *reason, const char *note) {
  if (!x->tenant)
    return;
  json_t *meta = json_object_get(x->tenant, "metadata");
  struct tn_object_ref ref = {.api_version = TN_API_VERSION,
                              .kind = "Tenant",
                              .name = json_string_value(json_object_get(meta, "name")),
                              .uid = json_string_value(json_object_get(meta, "uid")),
                              .resource_version =
                                  json_string_value(json_object_get(meta, "resourceVersion"))};
  tn_recorder_eventf(x->r->recorder, &ref, type, reason, "Migrate", "%s", note);
}

/* The step's condition in x->st (lastTransitionTime moves only when the status changes). */
static void cond_set(struct mrun *x, const char *type, const char *status, const char *reason,
                     const char *message) {
  if (!type)
    return;
  json_t *conds = json_object_get(x->st, "conditions");
  if (!json_is_array(conds)) {
    conds = json_array();
    json_object_set_new(x->st, "conditions", conds);
  }
  json_t *c = NULL;
  size_t i;
  json_t *v;
  json_array_foreach(conds, i, v) {
    const char *t = json_string_value(json_object_get(v, "type"));
    if (t && strcmp(t, type) == 0)
      c = v;
  }
  char now[32];
  tn_time_rfc3339(tn_wall_now(), now, sizeof now);
  if (!c) {
    c = json_object();
    json_object_set_new(c, "type", json_string(type));
    json_array_append_new(conds, c);
  }
  const char *old = json_string_value(json_object_get(c, "status"));
  if (!old || strcmp(old, status) != 0 || !json_object_get(c, "lastTransitionTime"))
    json_object_set_new(c, "lastTransitionTime", json_string(now));
  json_object_set_new(c, "status", json_string(status));
  json_object_set_new(c, "reason", json_string(reason));
  json_object_set_new(c, "message", json_string(message));
  json_object_set_new(c, "observedGeneration", json_integer(x->generation));
}

/* PUT of the status subresource with x->st and phase; x->obj becomes the answer. */
static void stamp(struct mrun *x, const char *field);
static int write_status(struct mrun *x, enum tn_mig_phase phase, struct tn_error *err) {
  if (tn_mig_phase_terminal(phase) && !json_object_get(x->st, "finishedAt"))
    stamp(x, "finishedAt");
  json_object_set_new(x->st, "phase", json_string(tn_mig_phase_name(phase)));
  json_object_set_new(x->st, "observedGeneration", json_integer(x->generation));
  json_t *body = json_deep_copy(x->obj);
  if (!body)
    return tn_error_set(err, -ENOMEM, "out of memory");
  json_object_set(body, "status", x->st);
  json_t *out = NULL;
  int rc = tn_kube_update(x->r->kube, &tn_gvr_tenantmigrations, NULL, body, "status", &out, err);
  json_decref(body);
  if (rc)
    return rc;
  json_decref(x->obj);
  x->obj = out;
  x->phase = phase;
  return 0;
}

/* One audit row for step (outcome succeeded, failed or refused). 0 or the audit error (the step
 * is then not recorded done: it runs again, so nothing unaudited is reported done). */
static int audit(struct mrun *x, enum tn_mig_phase step, const char *outcome, const char *message,
                 struct tn_error *err) {
  if (!x->r->audit)
    return 0;
  char target[128];
  snprintf(target, sizeof target, "tenant/%s", x->spec.tenant);
  json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:s}", "migration", x->key, "step", tn_mig_phase_name(step),
                        "message", message ? message : "", "targetRegion", x->spec.target_region,
                        "sourceRegion", str_at(json_object_get(x->st, "source"), "region", NULL) ?: "");
  char *details = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(d);
  char cid[128];
  snprintf(cid, sizeof cid, "%s%s", str_at(x->obj, "metadata", "uid") ?: x->key,
           step == TN_MIG_ROLLING_BACK ? "-rollback" : "");
  /* OUTBOX (issue 14): the switch of a tenant is a placement change, evented with its audit row */
  struct tn_outbox_event ob = {0};
  if ((step == TN_MIG_CUTOVER || step == TN_MIG_ROLLING_BACK) && strcmp(outcome, TN_AUDIT_SUCCEEDED) == 0 &&
      x->tenant) {
    const struct side *to = step == TN_MIG_CUTOVER ? &x->dst : &x->src,
                      *from = step == TN_MIG_CUTOVER ? &x->src : &x->dst;
    json_t *data =
        json_pack("{s:s,s:s,s:s,s:s}", "region", to->region, "isolation", tn_isolation_name(to->iso),
                  "previousRegion", from->region, "previousIsolation", tn_isolation_name(from->iso));
    struct tn_error oerr = {0};
    if (tn_outbox_event_init(&ob, x->r->cluster_name, x->tenant, TN_CE_PLACEMENT_DECIDED, cid,
                             TN_AUDIT_OPERATOR_ACTOR, data, &oerr))
      tn_log(TN_LOG_WARN, &x->lf, "the placement event of migration %s: %s", x->key, oerr.message);
    json_decref(data);
  }
  struct tn_audit_event ev = {.actor = TN_AUDIT_OPERATOR_ACTOR,
                              .action = tn_mig_audit_action(step),
                              .target = target,
                              .request_id = str_at(x->obj, "metadata", "resourceVersion"),
                              .correlation_id = cid,
                              .outcome = outcome,
                              .generation_before = x->generation,
                              .generation_after = x->generation,
                              .details = details ? details : "{}",
                              .outbox = ob.event ? &ob : NULL};
  int rc = tn_audit_append(x->r->audit, &ev, NULL, err);
  tn_outbox_event_cleanup(&ob);
  free(details);
  return rc;
}

/* Test hook: TENANCY_TEST_MIGRATION_CRASH_AFTER=<phase> kills this process (SIGKILL) right after
 * that step's work, before it is recorded: what a crash at the worst moment does. */
static void crash_point(struct mrun *x, enum tn_mig_phase step) {
  const char *want = getenv("TENANCY_TEST_MIGRATION_CRASH_AFTER");
  if (want && strcmp(want, tn_mig_phase_name(step)) == 0) {
    tn_log(TN_LOG_WARN, &x->lf, "test hook: SIGKILL after the work of step %s", tn_mig_phase_name(step));
    raise(SIGKILL);
  }
}

static json_t *find_server(json_t *region_obj, const char *name) {
  json_t *servers = json_object_get(json_object_get(region_obj, "spec"), "databaseServers");
  size_t i;
  json_t *s;
  json_array_foreach(servers, i, s) {
    const char *n = json_string_value(json_object_get(s, "name"));
    if (n && name && strcmp(n, name) == 0)
      return s;
  }
  return NULL;
}

/* Loads one side (region, server), connects to the tenant's database there when connect. */
static int load_side(struct mrun *x, const char *region, const char *server, const char *iso, struct side *s,
                     bool connect, struct tn_error *err) {
  if (!region || !server)
    return tn_error_set(err, TN_EINVALID, "status names no region or server for this side (run Validate)");
  snprintf(s->region, sizeof s->region, "%s", region);
  snprintf(s->server, sizeof s->server, "%s", server);
  s->iso = x->t->isolation; /* a migration recorded before isolation changes: the tenant's */
  if (iso && tn_isolation_parse(iso, &s->iso))
    return tn_error_set(err, TN_EINVALID, "status names an unknown isolation %s", iso);
  s->region_obj = tn_informer_get(x->r->regions, region);
  if (!s->region_obj)
    return tn_error_set(err, TN_ENOTFOUND, "Region %s does not exist", region);
  json_t *sv = find_server(s->region_obj, server);
  if (!sv)
    return tn_error_set(err, TN_ENOTFOUND, "Region %s lists no database server %s", region, server);
  int rc = tn_tenant_db_load_server(x->r, sv, &s->conf, err);
  if (rc)
    return rc;
  if ((rc = tn_db_names_for(x->t->name, s->iso, s->conf.s.shared_database, &s->names, err)))
    return rc;
  if (connect && (rc = tn_mig_pg_connect(&s->conf.s, s->names.database, &s->pg, err)))
    return rc;
  return 0;
}

static int load_sides(struct mrun *x, bool connect, struct tn_error *err) {
  json_t *so = json_object_get(x->st, "source"), *ta = json_object_get(x->st, "target");
  int rc = load_side(x, str_at(so, "region", NULL), str_at(so, "server", NULL), str_at(so, "isolation", NULL),
                     &x->src, connect, err);
  if (rc) {
    tn_error_prefix(err, "source");
    return rc;
  }
  if ((rc = load_side(x, str_at(ta, "region", NULL), str_at(ta, "server", NULL),
                      str_at(ta, "isolation", NULL), &x->dst, connect, err)))
    tn_error_prefix(err, "target");
  return rc;
}

/* The tenant's password from its canonical Secret (malloc'd), or NULL with err set. */
static char *canonical_password(struct mrun *x, struct tn_error *err) {
  const char *opns = x->r->operator_namespace ? x->r->operator_namespace : TN_CREDENTIALS_NAMESPACE;
  char cname[128];
  snprintf(cname, sizeof cname, "%s%s", TN_SECRET_DATABASE_CANONICAL_PREFIX, x->t->name);
  json_t *sec = NULL;
  if (tn_kube_get(x->r->kube, &gvr_secrets, opns, cname, &sec, err)) {
    tn_error_prefix(err, "reading the tenant's credentials (Secret %s/%s)", opns, cname);
    return NULL;
  }
  const char *type = json_string_value(json_object_get(sec, "type"));
  const char *b = str_at(sec, "data", "password");
  char *out = NULL;
  if (type && strcmp(type, TN_SECRET_TYPE_DATABASE) == 0 && tn_owned_by_tenant(sec, x->t->uid) && b &&
      strlen(b) % 4 == 0 && strlen(b) > 0) {
    out = tn_b64_decode_text(b);
  }
  json_decref(sec);
  if (!out)
    tn_error_set(err, TN_EINVALID, "Secret %s/%s holds no password of this tenant", opns, cname);
  return out;
}

/* Converges the tenant's role and database on side s (state: Active lets it log in, Suspended
 * does not), with the stored password. */
static int converge_side(struct mrun *x, struct side *s, enum tn_state state, struct tn_error *err) {
  char *pw = canonical_password(x, err);
  if (!pw)
    return err->code ? err->code : TN_EINVALID;
  struct tn_db_tenant dt = {
      .id = x->t->name,
      .mode = s->iso,
      .state = state,
      .connections = -1,
      .password = pw,
      .credentials_version = (long long)json_integer_value(json_object_get(
          json_object_get(json_object_get(x->tenant, "status"), "database"), "credentialsVersion"))};
  struct tn_db_outcome oc = {0};
  int rc = tn_db_converge(x->r->db, &s->conf.s, &dt, &oc, err);
  tn_db_outcome_cleanup(&oc);
  explicit_bzero(pw, strlen(pw));
  free(pw);
  return rc;
}

static enum tn_state live_state(struct mrun *x) {
  return x->t->status_state == TN_STATE_SUSPENDED ? TN_STATE_SUSPENDED : TN_STATE_ACTIVE;
}

static json_t *sums_json(const struct tn_mig_table_sum *s, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(a, json_pack("{s:s,s:I,s:s}", "name", s[i].name, "rows", (json_int_t)s[i].rows,
                                       "checksum", s[i].md5));
  return a;
}

/* ---- isolation changes (ISOLATION, issue 16) ------------------------------------------------------ */

/* Where the tables of `from` go on `to` (their schemas change with the isolation). */
static int map_tables(struct mrun *x, const struct side *from, const struct side *to, struct tn_mig_tables *t,
                      struct tn_error *err) {
  (void)x;
  return tn_mig_tables_map(t, from->iso, to->iso, from->names.role, err);
}

/* Whether both sides are one PostgreSQL (then they share the tenant's role: only the isolation
 * differs, and the role's login is the live tenant's). */
static bool same_postgres(const struct side *a, const struct side *b) {
  if (strcmp(a->server, b->server) == 0)
    return true;
  const char *ah = a->conf.s.host, *bh = b->conf.s.host;
  return ah && bh && strcmp(ah, bh) == 0 && a->conf.s.port == b->conf.s.port;
}

/* The checksums recorded by Copy (named as on the source) renamed as the tables are on the
 * target, to compare with what the target lists. */
static int map_sum_names(const struct side *from, const struct side *to, struct tn_mig_table_sum *v, size_t n,
                         struct tn_error *err) {
  for (size_t i = 0; i < n; i++) {
    char schema[64], mapped[64];
    const char *dot = strchr(v[i].name, '.');
    if (!dot || (size_t)(dot - v[i].name) >= sizeof schema)
      return tn_error_set(err, TN_EINVALID, "status.tables names %s, not schema.table", v[i].name);
    snprintf(schema, sizeof schema, "%.*s", (int)(dot - v[i].name), v[i].name);
    int rc = tn_mig_map_schema(from->iso, to->iso, from->names.role, schema, mapped, err);
    if (rc)
      return rc;
    char name[512];
    int w = snprintf(name, sizeof name, "%s.%s", mapped, dot + 1);
    if (w < 0 || (size_t)w >= sizeof v[i].name)
      return tn_error_set(err, TN_EINVALID, "table name %s.%s is too long", mapped, dot + 1);
    memcpy(v[i].name, name, (size_t)w + 1);
  }
  return 0;
}

/* On one PostgreSQL the target's login is the source's too: the source's database is closed to the
 * role before the role may log in again (converge_side of the source grants it back on a rollback). */
static int freeze_form(struct mrun *x, const struct side *from, const struct side *to, struct tn_error *err) {
  (void)x;
  if (!same_postgres(from, to))
    return 0;
  return tn_mig_pg_close_database(from->pg, from->names.database, from->names.role, err);
}

/* Copies from `from` to `to` (tables created first) and checks the result: the checksums of the
 * source's snapshot against the target's after the commit. When exact is false the source may
 * move on after its snapshot, so only the copy itself is compared (what Copy + Verify report). */
static int copy_and_check(struct mrun *x, struct side *from, struct side *to, bool recheck, long long *bytes,
                          struct tn_error *err) {
  struct tn_mig_tables tables = {0};
  int rc = tn_mig_pg_list_tables(from->pg, from->names.schema, &tables, err);
  if (rc)
    return rc;
  struct tn_mig_table_sum *a = calloc(tables.n ? tables.n : 1, sizeof *a);
  struct tn_mig_table_sum *b = calloc(tables.n ? tables.n : 1, sizeof *b);
  if (!a || !b)
    rc = tn_error_set(err, -ENOMEM, "out of memory");
  if (!rc)
    rc = map_tables(x, from, to, &tables, err); /* ISOLATION: the target's schemas */
  if (!rc)
    rc = tn_mig_pg_create_tables(from->pg, to->pg, &tables, to->names.role, err);
  if (!rc)
    rc = tn_mig_pg_copy(from->pg, to->pg, &tables, a, bytes, err);
  if (!rc && recheck && !(rc = tn_mig_pg_sums_target(to->pg, &tables, b, err)))
    rc = tn_mig_compare_sums(a, tables.n, b, tables.n, err);
  if (!rc) {
    json_object_set_new(x->st, "tables", sums_json(a, tables.n));
    long long rows = 0;
    for (size_t i = 0; i < tables.n; i++)
      rows += a[i].rows;
    json_object_set_new(x->st, "rowsCopied", json_integer(rows));
  }
  free(a);
  free(b);
  tn_mig_tables_free(&tables);
  return rc;
}

/* Whether the Tenant's status points at side s (region and server). */
static bool tenant_on(struct mrun *x, const struct side *s) {
  const char *region = status_str(x->tenant, "placement", "region");
  const char *server = status_str(x->tenant, "database", "server");
  const char *iso = status_str(x->tenant, "placement", "isolation"); /* ISOLATION: same server, other form */
  return region && server && strcmp(region, s->region) == 0 && strcmp(server, s->server) == 0 &&
         (!iso || strcmp(iso, tn_isolation_name(s->iso)) == 0);
}

/* Points the Tenant's status at side s: placement.region and database.server (merge patch of
 * the status subresource; the tenant reconcile then writes the Secrets for that server). */
static int switch_tenant(struct mrun *x, const struct side *s, struct tn_error *err) {
  json_t *patch =
      json_pack("{s:{s:{s:s,s:s},s:{s:s,s:s,s:o}}}", "status", "placement", "region", s->region, "isolation",
                tn_isolation_name(s->iso), "database", "server", s->server, "database", s->names.database,
                "schema", s->names.schema[0] ? json_string(s->names.schema) : json_null());
  json_t *out = NULL;
  int rc = tn_kube_merge_patch(x->r->kube, &tn_gvr_tenants, NULL, x->t->name, patch, "status", &out, err);
  json_decref(patch);
  if (!rc) {
    json_decref(x->tenant);
    x->tenant = out;
  } else
    json_decref(out);
  return rc;
}

static void stamp(struct mrun *x, const char *field) {
  char now[32];
  tn_time_rfc3339(tn_wall_now(), now, sizeof now);
  json_object_set_new(x->st, field, json_string(now));
}

/* ---- the steps ------------------------------------------------------------------------------------ */

/* ISOLATION (issue 16): every TenancyPolicy's residency rules allow region (0, or TN_EFORBIDDEN). */
static int validate_policies(struct mrun *x, const char *region, struct tn_error *err) {
  json_t *objs = tn_informer_list(x->r->policies);
  size_t n = json_array_size(objs), k = 0, i;
  struct tn_policy **ps = calloc(n ? n : 1, sizeof *ps);
  int rc = 0;
  json_t *o;
  if (!ps)
    rc = tn_error_set(err, -ENOMEM, "out of memory");
  else {
    json_array_foreach(objs, i, o) {
      struct tn_error e = {0};
      if (tn_policy_parse(o, &ps[k], &e) == 0)
        k++;
    }
    rc = tn_mig_check_policies(x->t, (const struct tn_policy *const *)ps, k, region, err);
  }
  for (i = 0; i < k; i++)
    tn_policy_free(ps[i]);
  free(ps);
  json_decref(objs);
  return rc;
}

/* ISOLATION (issue 16): a move to another region fits its spec.capacity with what the tenants placed
 * there are given (the tenant brings what it is given now). */
static int validate_capacity(struct mrun *x, json_t *treg, const char *region, const char *src_region,
                             struct tn_error *err) {
  struct tn_capacity cap, used = {0}, demand = {0};
  int rc = tn_capacity_parse(treg, &cap, err);
  if (rc)
    return rc;
  bool any = false;
  for (int k = 0; k < TN_CAP_COUNT; k++)
    any |= cap.set[k];
  if (!any || strcmp(region, src_region) == 0)
    return 0;
  json_t *tenants = tn_informer_list(x->r->tenants);
  size_t i;
  json_t *o;
  json_array_foreach(tenants, i, o) {
    const char *name = str_at(o, "metadata", "name");
    if (name && strcmp(name, x->t->name) != 0)
      tn_capacity_add_tenant(&used, o, region);
  }
  json_decref(tenants);
  tn_capacity_add_tenant(&demand, x->tenant, src_region);
  return tn_capacity_check(region, &cap, &used, &demand, err);
}

/* Returns 0 (done), or an error: *permanent says the migration fails (Validate only). */
static int step_validate(struct mrun *x, bool *permanent, struct tn_error *err) {
  *permanent = true;
  enum tn_state st = x->t->status_state;
  if (st != TN_STATE_ACTIVE && st != TN_STATE_SUSPENDED)
    return tn_error_set(err, TN_EINVALID, "tenant %s is %s: only an Active or Suspended tenant is migrated",
                        x->t->name, st == TN_STATE_NONE ? "not provisioned" : tn_state_name(st));
  const char *src_region = status_str(x->tenant, "placement", "region");
  const char *src_server = status_str(x->tenant, "database", "server");
  enum tn_isolation src_iso = x->t->isolation; /* in effect: status.placement.isolation */
  int rc = tn_mig_check_target(&x->spec, src_region, src_iso, &x->t->residency, err);
  if (rc)
    return rc;
  const char *region = tn_mig_target_region(&x->spec, src_region);
  enum tn_isolation iso = tn_mig_target_isolation(&x->spec, src_iso);
  if (!src_server)
    return tn_error_set(err, TN_EINVALID,
                        "tenant %s has no database (status.database.server): nothing to copy", x->t->name);
  if (strcmp(region, src_region) != 0 && (rc = validate_policies(x, region, err)))
    return rc;
  json_t *treg = tn_informer_get(x->r->regions, region);
  if (!treg)
    return tn_error_set(err, TN_ENOTFOUND, "Region %s does not exist", region);
  json_t *avail = json_object_get(json_object_get(treg, "spec"), "available");
  json_t *server = NULL;
  /* the same region: the source's server when it serves the target isolation (one PostgreSQL can
   * hold the shared schema and a database of the tenant) */
  const char *keep = NULL;
  if (strcmp(region, src_region) == 0) {
    json_t *cur = find_server(treg, src_server);
    json_t *serves = json_object_get(cur, "serves");
    size_t i;
    json_t *m;
    json_array_foreach(serves, i, m) {
      if (json_string_value(m) && strcmp(json_string_value(m), tn_isolation_name(iso)) == 0)
        keep = src_server;
    }
  }
  if (json_is_false(avail))
    rc = tn_error_set(err, TN_EINVALID, "Region %s is not available (spec.available false)", region);
  else if (!(rc = validate_capacity(x, treg, region, src_region, err)))
    rc = tn_tenant_db_pick_server(treg, region, iso, keep, &server, err);
  if (rc) {
    json_decref(treg);
    if (rc == TN_ENOTFOUND)
      tn_error_set(err, TN_EINVALID,
                   "Region %s has no database server that serves isolation %s: add %s to a server's serves "
                   "(and to the Region's isolationModes), or choose another region",
                   region, tn_isolation_name(iso), tn_isolation_name(iso));
    return rc;
  }
  const char *tserver = json_string_value(json_object_get(server, "name"));
  json_object_set_new(x->st, "source",
                      json_pack("{s:s,s:s,s:s}", "region", src_region, "server", src_server, "isolation",
                                tn_isolation_name(src_iso)));
  json_object_set_new(x->st, "target",
                      json_pack("{s:s,s:s,s:s}", "region", region, "server", tserver ? tserver : "",
                                "isolation", tn_isolation_name(iso)));
  json_decref(treg);
  /* the sides as recorded, loaded and reached (TLS verified; the admin's own database, as the
   * tenant's may not exist on the target yet) now: transient failures retry */
  rc = load_sides(x, false, err);
  if (!rc && (rc = tn_mig_pg_connect(&x->src.conf.s, "", &x->src.pg, err)))
    tn_error_prefix(err, "source");
  if (!rc && (rc = tn_mig_pg_connect(&x->dst.conf.s, "", &x->dst.pg, err)))
    tn_error_prefix(err, "target");
  if (rc) {
    *permanent = !tn_error_is_transient(rc) && rc != TN_ETRANSPORT;
    return rc;
  }
  if (src_iso == iso && same_postgres(&x->src, &x->dst))
    return tn_error_set(
        err, TN_EINVALID,
        "source server %s and target server %s are the same PostgreSQL (%s:%d) and the isolation stays %s: "
        "nothing to move",
        x->src.server, x->dst.server, x->src.conf.s.host ? x->src.conf.s.host : "?", x->src.conf.s.port,
        tn_isolation_name(iso));
  if (src_iso != iso) {
    /* every table of the source has a place on the target (a shared tenant has one schema) */
    PGconn *c = NULL;
    struct tn_mig_tables tables = {0};
    if ((rc = tn_mig_pg_connect(&x->src.conf.s, x->src.names.database, &c, err))) {
      *permanent = !tn_error_is_transient(rc) && rc != TN_ETRANSPORT;
      tn_error_prefix(err, "source");
      return rc;
    }
    if ((rc = tn_mig_pg_list_tables(c, x->src.names.schema, &tables, err)))
      *permanent = false;
    else
      rc = map_tables(x, &x->src, &x->dst, &tables, err);
    tn_mig_tables_free(&tables);
    PQfinish(c);
    if (rc)
      return rc;
  }
  *permanent = false;
  return 0;
}

static int step_provision(struct mrun *x, struct tn_error *err) {
  int rc = load_sides(x, false, err);
  /* no login on the target before the cutover; on the same PostgreSQL the role is the live
   * tenant's own (ISOLATION: only its new database or schema is made) */
  if (!rc)
    rc = converge_side(x, &x->dst, same_postgres(&x->src, &x->dst) ? live_state(x) : TN_STATE_SUSPENDED, err);
  if (!rc && !(rc = tn_mig_pg_connect(&x->src.conf.s, x->src.names.database, &x->src.pg, err)) &&
      !(rc = tn_mig_pg_connect(&x->dst.conf.s, x->dst.names.database, &x->dst.pg, err))) {
    struct tn_mig_tables tables = {0};
    if (!(rc = tn_mig_pg_list_tables(x->src.pg, x->src.names.schema, &tables, err)) &&
        !(rc = map_tables(x, &x->src, &x->dst, &tables, err)))
      rc = tn_mig_pg_create_tables(x->src.pg, x->dst.pg, &tables, x->dst.names.role, err);
    json_object_set_new(x->st, "tablesCount", json_integer((json_int_t)tables.n));
    tn_mig_tables_free(&tables);
  }
  return rc;
}

/* status.copyMethod is "logical" (set by Copy). */
static bool is_logical(struct mrun *x) {
  const char *m = str_at(x->st, "copyMethod", NULL);
  return m && strcmp(m, "logical") == 0;
}

/* The publication, subscription and slot name of this migration. */
static int repl_name(struct mrun *x, char *out, size_t n, struct tn_error *err) {
  if (tn_mig_logical_name(str_at(x->obj, "metadata", "uid"), out, n))
    return tn_error_set(err, TN_EINVALID, "TenantMigration %s has no usable uid", x->key);
  return 0;
}

static void set_replication(struct mrun *x, const char *name, const struct tn_mig_repl *r) {
  json_object_set_new(x->st, "replication",
                      json_pack("{s:s,s:s,s:i,s:i,s:I}", "name", name, "subscriptionOid", r->sub_oid,
                                "tablesReady", r->tables_ready, "tablesTotal", r->tables_total, "lagBytes",
                                (json_int_t)r->lag_bytes));
}

/* Chooses the copy method once (recorded in status.copyMethod): logical replication when the
 * tenant's tables take at least tn_mig_logical_min_bytes() on the source and its wal_level is
 * logical; else the snapshot copy. */
static int choose_method(struct mrun *x, struct tn_error *err) {
  if (str_at(x->st, "copyMethod", NULL))
    return 0;
  struct tn_mig_tables tables = {0};
  long long bytes = 0, min = tn_mig_logical_min_bytes();
  bool wal_logical = false;
  int rc = tn_mig_pg_list_tables(x->src.pg, x->src.names.schema, &tables, err);
  if (!rc)
    rc = tn_mig_pg_size_and_wal(x->src.pg, &tables, &bytes, &wal_logical, err);
  tn_mig_tables_free(&tables);
  if (rc)
    return rc;
  /* An isolation change moves tables between schemas (tn_<id> <-> public), which a subscription
   * cannot rename; it may also stay on one server, where a subscription to itself would wait on
   * its own slot. */
  bool same_form = x->src.iso == x->dst.iso;
  bool logical = min >= 0 && bytes >= min && wal_logical && same_form;
  char why[256];
  if (!same_form)
    snprintf(why, sizeof why,
             "snapshot: the isolation changes (%s to %s), and logical replication cannot "
             "move tables between schemas",
             tn_isolation_name(x->src.iso), tn_isolation_name(x->dst.iso));
  else if (logical)
    snprintf(why, sizeof why, "logical replication: the tenant's tables take %lld bytes (threshold %lld)",
             bytes, min);
  else if (min < 0)
    snprintf(why, sizeof why,
             "snapshot: logical replication is off (TENANCY_MIGRATION_LOGICAL_MIN_BYTES < 0)");
  else if (bytes >= min)
    snprintf(why, sizeof why, "snapshot: %lld bytes, but the source's wal_level is not logical", bytes);
  else
    snprintf(why, sizeof why, "snapshot: the tenant's tables take %lld bytes (logical from %lld)", bytes,
             min);
  json_object_set_new(x->st, "copyMethod", json_string(logical ? "logical" : "snapshot"));
  json_object_set_new(x->st, "copyMethodReason", json_string(why));
  json_object_set_new(x->st, "sourceBytes", json_integer(bytes));
  return 0;
}

/* Logical Copy: publication, subscription, then ready when every table finished its initial copy
 * (x->pending until then). */
static int copy_logical(struct mrun *x, struct tn_error *err) {
  char name[80];
  int rc = repl_name(x, name, sizeof name, err);
  if (rc)
    return rc;
  struct tn_mig_tables tables = {0};
  struct tn_mig_repl st = {0};
  if (!(rc = tn_mig_pg_list_tables(x->src.pg, x->src.names.schema, &tables, err)))
    rc = tn_mig_logical_ensure(x->src.pg, x->dst.pg, &x->src.conf.s, x->src.names.database, name, &tables,
                               x->dst.names.role, true, &st, err);
  if (!rc) {
    set_replication(x, name, &st);
    if (st.tables_ready < st.tables_total || st.tables_total < (int)tables.n) {
      x->pending = true;
      snprintf(x->pending_msg, sizeof x->pending_msg,
               "%d of %d table(s) replicating, lag %lld bytes (initial copy by subscription %s)",
               st.tables_ready, (int)tables.n, st.lag_bytes < 0 ? 0 : st.lag_bytes, name);
    } else {
      /* row counts now (the source moves on: Verify compares loosely, Cutover exactly) */
      long long *rows = calloc(tables.n ? tables.n : 1, sizeof *rows);
      if (!rows)
        rc = tn_error_set(err, -ENOMEM, "out of memory");
      else if (!(rc = tn_mig_pg_counts(x->src.pg, &tables, rows, err))) {
        json_t *a = json_array();
        long long total = 0;
        for (size_t i = 0; i < tables.n; i++) {
          json_array_append_new(
              a, json_pack("{s:s,s:I}", "name", tables.v[i].name, "rows", (json_int_t)rows[i]));
          total += rows[i];
        }
        json_object_set_new(x->st, "tables", a);
        json_object_set_new(x->st, "rowsCopied", json_integer(total));
      }
      free(rows);
    }
  }
  tn_mig_tables_free(&tables);
  return rc;
}

static int drop_logical(struct mrun *x, struct tn_error *err);

static int step_copy(struct mrun *x, struct tn_error *err) {
  long long bytes = 0;
  int rc = load_sides(x, true, err);
  if (!rc)
    rc = choose_method(x, err);
  if (!rc && is_logical(x))
    return copy_logical(x, err);
  if (!rc) /* a subscription made before a crash, the method then unrecorded: no apply beside the copy */
    rc = drop_logical(x, err);
  if (!rc)
    rc = copy_and_check(x, &x->src, &x->dst, false, &bytes, err);
  if (!rc)
    json_object_set_new(x->st, "bytesCopied", json_integer(bytes));
  return rc;
}

/* Logical Verify, on a live source: the subscription is there with every table ready, and each
 * table's row count on the target is near the source's (within 10% or 1,000 rows: the replication
 * lag). The exact check is the Cutover's, after the freeze. A missing subscription sends the
 * migration back to Copy (TN_ECONFLICT); counts apart are retried. */
static int verify_logical(struct mrun *x, struct tn_error *err) {
  char name[80];
  int rc = repl_name(x, name, sizeof name, err);
  if (rc)
    return rc;
  struct tn_mig_repl st = {0};
  if ((rc = tn_mig_logical_state(x->src.pg, x->dst.pg, name, &st, err)))
    return rc;
  set_replication(x, name, &st);
  if (!st.subscription)
    return tn_error_set(err, TN_ECONFLICT, "subscription %s is gone from the target", name);
  if (st.tables_ready < st.tables_total) {
    x->pending = true;
    snprintf(x->pending_msg, sizeof x->pending_msg, "%d of %d table(s) replicating, lag %lld bytes",
             st.tables_ready, st.tables_total, st.lag_bytes < 0 ? 0 : st.lag_bytes);
    return 0;
  }
  struct tn_mig_tables tables = {0};
  long long *a = NULL, *b = NULL;
  if ((rc = tn_mig_pg_list_tables(x->src.pg, x->src.names.schema, &tables, err)))
    return rc;
  a = calloc(tables.n ? tables.n : 1, sizeof *a);
  b = calloc(tables.n ? tables.n : 1, sizeof *b);
  if (!a || !b)
    rc = tn_error_set(err, -ENOMEM, "out of memory");
  if (!rc)
    rc = tn_mig_pg_counts(x->src.pg, &tables, a, err);
  if (!rc)
    rc = tn_mig_pg_counts(x->dst.pg, &tables, b, err);
  long long total = 0;
  for (size_t i = 0; !rc && i < tables.n; i++) {
    long long d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
    total += a[i];
    if (d > 1000 && d > a[i] / 10)
      rc = tn_error_set(err, TN_EUNAVAILABLE,
                        "table %s: %lld row(s) on the source, %lld on the target: the replication is behind",
                        tables.v[i].name, a[i], b[i]);
  }
  if (!rc)
    json_object_set_new(x->st, "rowsCopied", json_integer(total));
  free(a);
  free(b);
  tn_mig_tables_free(&tables);
  return rc;
}

/* The target against the checksums of the source snapshot recorded by Copy. */
static int step_verify(struct mrun *x, struct tn_error *err) {
  int rc = load_sides(x, true, err);
  if (rc)
    return rc;
  if (is_logical(x))
    return verify_logical(x, err);
  json_t *rec = json_object_get(json_object_get(x->obj, "status"), "tables");
  size_t n = json_array_size(rec);
  struct tn_mig_tables tables = {0};
  struct tn_mig_table_sum *want = calloc(n ? n : 1, sizeof *want), *got = NULL;
  if (!want)
    return tn_error_set(err, -ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_t *t = json_array_get(rec, i);
    snprintf(want[i].name, sizeof want[i].name, "%s", json_string_value(json_object_get(t, "name")) ?: "");
    want[i].rows = (long long)json_integer_value(json_object_get(t, "rows"));
    snprintf(want[i].md5, sizeof want[i].md5, "%s", json_string_value(json_object_get(t, "checksum")) ?: "");
  }
  if ((rc = map_sum_names(&x->src, &x->dst, want, n, err))) { /* ISOLATION: named as on the target */
    free(want);
    return rc;
  }
  if (!(rc = tn_mig_pg_list_tables(x->dst.pg, x->dst.names.schema, &tables, err))) {
    got = calloc(tables.n ? tables.n : 1, sizeof *got);
    if (!got)
      rc = tn_error_set(err, -ENOMEM, "out of memory");
    else if (!(rc = tn_mig_pg_sums(x->dst.pg, &tables, got, err)))
      rc = tn_mig_compare_sums(want, n, got, tables.n, err);
  }
  free(want);
  free(got);
  tn_mig_tables_free(&tables);
  return rc;
}

/* Connects s->pg to the tenant's database on s, or leaves it NULL when that database does not exist
 * there (never made, or dropped by an earlier pass). */
static int connect_if_exists(struct side *s, struct tn_error *err) {
  if (s->pg)
    return 0;
  int rc = tn_mig_pg_connect(&s->conf.s, s->names.database, &s->pg, err);
  if (!rc)
    return 0;
  PGconn *admin = NULL;
  struct tn_error e2 = {0};
  if (tn_mig_pg_connect(&s->conf.s, "", &admin, &e2))
    return rc;
  const char *p[1] = {s->names.database};
  PGresult *r = PQexecParams(admin, "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", 1, NULL, p,
                             NULL, NULL, 0);
  bool absent = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 0;
  PQclear(r);
  PQfinish(admin);
  if (!absent)
    return rc;
  memset(err, 0, sizeof *err);
  return 0;
}

/* Drops what a logical Copy made (subscription on the target, publication and slots on the
 * source), whatever status.copyMethod says (a crash may have come before it was recorded): a
 * forgotten slot keeps the source's WAL forever. Idempotent. */
static int drop_logical(struct mrun *x, struct tn_error *err) {
  char name[80];
  int rc = repl_name(x, name, sizeof name, err);
  if (!rc && !(rc = connect_if_exists(&x->src, err)) && !(rc = connect_if_exists(&x->dst, err)))
    rc = tn_mig_logical_drop(x->src.pg, x->dst.pg, name,
                             str_at(json_object_get(x->st, "replication"), "subscriptionOid", NULL), err);
  if (rc)
    tn_error_prefix(err, "dropping the replication");
  return rc;
}

/* Checksums of one side, in a thread: both sides at once halve that part of the freeze. */
struct sums_job {
  PGconn *conn;
  const struct tn_mig_tables *tables;
  struct tn_mig_table_sum *sums;
  struct tn_error err;
  int rc;
};
static void *sums_thread(void *ud) {
  struct sums_job *j = ud;
  j->rc = tn_mig_pg_sums(j->conn, j->tables, j->sums, &j->err);
  return NULL;
}

/* Logical cutover, the source frozen: tables made since Copy published and copied, every table
 * ready, the subscription caught up to the source's WAL position, every table's row count and
 * checksum equal on both sides; then the subscription, publication and slots dropped and the
 * sequences moved. When the subscription is gone (a crash after its drop), does not catch up in
 * 30 s, or a checksum differs, the final copy is the snapshot copy instead (exact too: the source
 * is still), noted in status.copyFallback. */
static int cutover_logical(struct mrun *x, long long *bytes, struct tn_error *err) {
  char name[80];
  int rc = repl_name(x, name, sizeof name, err);
  if (rc)
    return rc;
  struct tn_mig_tables tables = {0};
  struct tn_mig_repl st = {0};
  char why[700] = "";
  if ((rc = tn_mig_pg_list_tables(x->src.pg, x->src.names.schema, &tables, err)))
    return rc;
  struct tn_mig_table_sum *a = calloc(tables.n ? tables.n : 1, sizeof *a);
  struct tn_mig_table_sum *b = calloc(tables.n ? tables.n : 1, sizeof *b);
  if (!a || !b) {
    rc = tn_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  struct tn_error e = {0};
  int lrc = tn_mig_logical_state(x->src.pg, x->dst.pg, name, &st, &e);
  if (!lrc && !st.subscription)
    lrc = tn_error_set(&e, TN_ENOTFOUND, "subscription %s is gone from the target", name);
  if (!lrc)
    lrc = tn_mig_logical_ensure(x->src.pg, x->dst.pg, &x->src.conf.s, x->src.names.database, name, &tables,
                                x->dst.names.role, false, &st, &e);
  double t0 = tn_mono_now(), until = t0 + 30, t_ready = 0, t_caught = 0, t_sums = 0, t_drop = 0;
  while (!lrc && st.tables_ready < st.tables_total) {
    if (tn_mono_now() > until) {
      lrc = tn_error_set(&e, TN_ETIMEOUT, "%d of %d table(s) ready after 30 s", st.tables_ready,
                         st.tables_total);
      break;
    }
    usleep(200 * 1000);
    lrc = tn_mig_logical_state(x->src.pg, x->dst.pg, name, &st, &e);
  }
  t_ready = tn_mono_now();
  if (!lrc)
    lrc = tn_mig_logical_catch_up(x->src.pg, name, 30, &e);
  t_caught = tn_mono_now();
  if (!lrc) {
    struct sums_job j = {.conn = x->dst.pg, .tables = &tables, .sums = b};
    pthread_t th;
    bool threaded = pthread_create(&th, NULL, sums_thread, &j) == 0;
    if (!threaded)
      sums_thread(&j);
    lrc = tn_mig_pg_sums(x->src.pg, &tables, a, &e);
    if (threaded)
      pthread_join(th, NULL);
    if (!lrc && j.rc) {
      e = j.err;
      lrc = j.rc;
    }
    if (!lrc)
      lrc = tn_mig_compare_sums(a, tables.n, b, tables.n, &e);
  }
  t_sums = tn_mono_now();
  if (lrc)
    snprintf(why, sizeof why, "%s", e.message);
  /* no apply may run any more: dropped before the switch (and before a fallback copy) */
  if ((rc = tn_mig_logical_drop(x->src.pg, x->dst.pg, name,
                                st.sub_oid[0]
                                    ? st.sub_oid
                                    : str_at(json_object_get(x->st, "replication"), "subscriptionOid", NULL),
                                err)))
    goto out;
  if (lrc) {
    tn_log(TN_LOG_WARN, &x->lf,
           "migration %s: logical catch-up not confirmed (%s): final snapshot copy instead", x->key, why);
    json_object_set_new(x->st, "copyFallback", json_string(why));
    rc = copy_and_check(x, &x->src, &x->dst, true, bytes, err);
    goto out;
  }
  t_drop = tn_mono_now();
  if ((rc = tn_mig_pg_sync_sequences(x->src.pg, x->dst.pg, &tables, err)))
    goto out;
  tn_log(TN_LOG_INFO, &x->lf,
         "migration %s: logical cutover: tables ready %.3f s, catch-up %.3f s, checksums %.3f s, replication "
         "dropped %.3f s, sequences %.3f s",
         x->key, t_ready - t0, t_caught - t_ready, t_sums - t_caught, t_drop - t_sums,
         tn_mono_now() - t_drop);
  json_object_set_new(x->st, "tables", sums_json(a, tables.n));
  long long rows = 0;
  for (size_t i = 0; i < tables.n; i++)
    rows += a[i].rows;
  json_object_set_new(x->st, "rowsCopied", json_integer(rows));
out:
  free(a);
  free(b);
  tn_mig_tables_free(&tables);
  return rc;
}

/* from -> to under a write freeze of from, then the tenant switched to `to`. */
static int switch_over(struct mrun *x, struct side *from, struct side *to, const char *started_field,
                       struct tn_error *err) {
  int rc = 0, ended = 0;
  long long bytes = 0;
  double froze = 0;
  bool logical = is_logical(x) && from == &x->src;
  if (!tenant_on(x, to)) {
    froze = tn_wall_now();
    if ((rc = tn_mig_pg_freeze(from->pg, from->names.role, 30, &ended, err)))
      return rc;
    if ((rc = freeze_form(x, from, to, err))) /* ISOLATION: one role for both forms */
      return rc;
    if ((rc = logical ? cutover_logical(x, &bytes, err) : copy_and_check(x, from, to, true, &bytes, err)))
      return rc;
    bool login = true;
    if ((rc = tn_mig_pg_role_login(from->pg, from->names.role, &login, err)))
      return rc;
    if (login) /* someone let it log in again during the copy: do it all again */
      return tn_error_set(err, TN_ECONFLICT, "role %s on server %s may log in again: the freeze was undone",
                          from->names.role, from->server);
    if ((rc = converge_side(x, to, live_state(x), err)))
      return rc;
    if ((rc = switch_tenant(x, to, err)))
      return rc;
  } else {
    if (logical && (rc = drop_logical(x, err)))
      return rc;
    if ((rc = converge_side(x, to, live_state(x), err)))
      return rc;
  }
  const char *started = str_at(x->st, started_field, NULL);
  double t0 = froze;
  if (t0 <= 0 && started) { /* resumed after the switch: from the recorded start */
    struct tm tm = {0};
    if (strptime(started, "%Y-%m-%dT%H:%M:%SZ", &tm))
      t0 = (double)timegm(&tm);
  }
  json_object_set_new(x->st, "freezeSeconds", json_real(t0 > 0 ? tn_wall_now() - t0 : 0));
  json_object_set_new(x->st, "sessionsEnded", json_integer(ended));
  return 0;
}

static int teardown_side(struct mrun *x, struct side *s, const struct side *other, struct tn_error *err) {
  if (tenant_on(x, s)) /* never drop where the tenant lives */
    return tn_error_set(err, TN_ECONFLICT, "the tenant lives on server %s: not dropped", s->server);
  if (!same_postgres(s, other))
    return tn_db_teardown(x->r->db, &s->conf.s, x->t->name, NULL, err);
  /* ISOLATION: one PostgreSQL holds both forms and the role is the tenant's live one: only this
   * side's schema (shared) or database (dedicated, hybrid) goes */
  PGconn *c = NULL;
  bool shared = s->iso == TN_ISOLATION_SHARED;
  int rc = tn_mig_pg_connect(&s->conf.s, shared ? s->names.database : "", &c, err);
  if (!rc)
    rc = shared ? tn_mig_pg_drop_schema_form(c, s->names.database, s->names.schema, s->names.role, err)
                : tn_mig_pg_drop_database_form(c, s->names.database, err);
  if (c)
    PQfinish(c);
  return rc;
}

/* Runs step x->phase; 0 when done. */
static int run_step(struct mrun *x, bool *permanent, struct tn_error *err) {
  *permanent = false;
  int rc;
  switch (x->phase) {
  case TN_MIG_VALIDATE:
    return step_validate(x, permanent, err);
  case TN_MIG_PROVISION_TARGET:
    return step_provision(x, err);
  case TN_MIG_COPY:
    return step_copy(x, err);
  case TN_MIG_VERIFY:
    return step_verify(x, err);
  case TN_MIG_CUTOVER:
    if ((rc = load_sides(x, true, err)))
      return rc;
    return switch_over(x, &x->src, &x->dst, "cutoverStartedAt", err);
  case TN_MIG_ROLLING_BACK:
    if ((rc = load_sides(x, true, err)) || (rc = drop_logical(x, err)))
      return rc;
    if ((rc = switch_over(x, &x->dst, &x->src, "rollbackStartedAt", err)))
      return rc;
    return teardown_side(x, &x->dst, &x->src, err);
  case TN_MIG_CLEANUP:
    if ((rc = load_sides(x, false, err)) || (rc = drop_logical(x, err)))
      return rc;
    return teardown_side(x, &x->src, &x->dst, err);
  case TN_MIG_ABORTING:
    if (!str_at(json_object_get(x->st, "target"), "server", NULL))
      return 0; /* nothing was provisioned */
    if ((rc = load_sides(x, false, err)) || (rc = drop_logical(x, err)))
      return rc;
    return teardown_side(x, &x->dst, &x->src, err);
  default:
    return 0;
  }
}

static const char *done_message(struct mrun *x, char *buf, size_t n) {
  switch (x->phase) {
  case TN_MIG_VALIDATE:
    snprintf(buf, n, "target region %s, server %s, isolation %s; source region %s, server %s, isolation %s",
             str_at(json_object_get(x->st, "target"), "region", NULL) ?: "?",
             str_at(json_object_get(x->st, "target"), "server", NULL) ?: "?",
             str_at(json_object_get(x->st, "target"), "isolation", NULL) ?: "?",
             str_at(json_object_get(x->st, "source"), "region", NULL) ?: "?",
             str_at(json_object_get(x->st, "source"), "server", NULL) ?: "?",
             str_at(json_object_get(x->st, "source"), "isolation", NULL) ?: "?");
    break;
  case TN_MIG_PROVISION_TARGET:
    snprintf(buf, n, "role and %lld table(s) created on server %s (login disabled until the cutover)",
             (long long)json_integer_value(json_object_get(x->st, "tablesCount")), x->dst.server);
    break;
  case TN_MIG_COPY:
    if (is_logical(x)) {
      json_t *r = json_object_get(x->st, "replication");
      snprintf(buf, n,
               "%lld of %lld table(s) replicating by logical replication (subscription %s on server %s), lag "
               "%lld bytes; %lld row(s) on the source",
               (long long)json_integer_value(json_object_get(r, "tablesReady")),
               (long long)json_integer_value(json_object_get(r, "tablesTotal")),
               json_string_value(json_object_get(r, "name")) ?: "?", x->dst.server,
               (long long)json_integer_value(json_object_get(r, "lagBytes")),
               (long long)json_integer_value(json_object_get(x->st, "rowsCopied")));
      break;
    }
    snprintf(buf, n, "%lld row(s) in %zu table(s) copied from a consistent snapshot (%lld bytes)",
             (long long)json_integer_value(json_object_get(x->st, "rowsCopied")),
             json_array_size(json_object_get(x->st, "tables")),
             (long long)json_integer_value(json_object_get(x->st, "bytesCopied")));
    break;
  case TN_MIG_VERIFY:
    if (is_logical(x)) {
      snprintf(
          buf, n,
          "every table replicating; row counts of %zu table(s) within the replication lag (%lld row(s) on "
          "the source); exact checksums after the freeze",
          json_array_size(json_object_get(x->st, "tables")),
          (long long)json_integer_value(json_object_get(x->st, "rowsCopied")));
      break;
    }
    snprintf(buf, n, "row counts and checksums of %zu table(s) equal on the target",
             json_array_size(json_object_get(x->st, "tables")));
    break;
  case TN_MIG_CUTOVER:
    if (is_logical(x)) {
      const char *fb = str_at(x->st, "copyFallback", NULL);
      snprintf(
          buf, n,
          "write freeze of %.3f s: source login disabled, %s; checksums of %zu table(s) (%lld row(s)) equal; "
          "replication dropped; tenant switched to region %s, server %s; source kept for the rollback period",
          json_number_value(json_object_get(x->st, "freezeSeconds")),
          fb ? "logical catch-up not confirmed, final snapshot copy" : "subscription caught up",
          json_array_size(json_object_get(x->st, "tables")),
          (long long)json_integer_value(json_object_get(x->st, "rowsCopied")), x->dst.region, x->dst.server);
      break;
    }
    snprintf(buf, n,
             "write freeze of %.3f s: source login disabled, final copy of %lld row(s) verified, tenant "
             "switched to region %s, server %s, isolation %s; source kept for the rollback period",
             json_number_value(json_object_get(x->st, "freezeSeconds")),
             (long long)json_integer_value(json_object_get(x->st, "rowsCopied")), x->dst.region,
             x->dst.server, tn_isolation_name(x->dst.iso));
    break;
  case TN_MIG_ROLLING_BACK:
    snprintf(
        buf, n, "rolled back: %lld row(s) copied back and verified, tenant on region %s, server %s again",
        (long long)json_integer_value(json_object_get(x->st, "rowsCopied")), x->src.region, x->src.server);
    break;
  case TN_MIG_CLEANUP:
    snprintf(buf, n, "the source %s on server %s was dropped",
             x->src.iso == TN_ISOLATION_SHARED ? "schema" : "database", x->src.server);
    break;
  case TN_MIG_ABORTING:
    snprintf(buf, n, "aborted before the cutover: the target's copy was dropped; the tenant never moved");
    break;
  default:
    snprintf(buf, n, "done");
  }
  return buf;
}

struct tn_result tn_migration_reconcile(void *ud, const char *key) {
  struct tn_migrations *m = ud;
  struct mrun x = {.m = m, .r = m->rec, .key = key};
  struct tn_error err = {0};
  struct tn_result res = TN_RESULT_OK;
  x.lf = (struct tn_log_fields){.controller = "tenantmigration", .generation = -1};
  int rc = tn_kube_get(x.r->kube, &tn_gvr_tenantmigrations, NULL, key, &x.obj, &err);
  if (rc == TN_ENOTFOUND)
    return TN_RESULT_OK;
  if (rc) {
    tn_log(TN_LOG_WARN, &x.lf, "reading TenantMigration %s: %s", key, err.message);
    return TN_RESULT_ERR;
  }
  x.generation =
      (long long)json_integer_value(json_object_get(json_object_get(x.obj, "metadata"), "generation"));
  json_t *old = json_object_get(x.obj, "status");
  x.st = json_is_object(old) ? json_deep_copy(old) : json_object();
  if (tn_mig_phase_parse(status_str(x.obj, "phase", NULL), &x.phase)) {
    x.phase = TN_MIG_FAILED;
    goto out;
  }
  if (tn_mig_phase_terminal(x.phase))
    goto out;
  if (tn_mig_spec_parse(json_object_get(x.obj, "spec"), &x.spec, &err)) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", err.message);
    cond_set(&x, "Validated", "False", "InvalidSpec", msg);
    if (write_status(&x, TN_MIG_FAILED, &err) == 0)
      event(&x, TN_EVENT_WARNING, "InvalidSpec", "%s", msg);
    goto out;
  }
  x.lf.tenant = x.spec.tenant;
  struct tn_error terr = {0};
  rc = tn_kube_get(x.r->kube, &tn_gvr_tenants, NULL, x.spec.tenant, &x.tenant, &terr);
  if (rc == 0)
    rc = tn_tenant_parse(x.tenant, &x.t, &terr);
  if (rc) {
    if (rc == TN_ENOTFOUND && x.phase <= TN_MIG_VALIDATE) {
      cond_set(&x, "Validated", "False", "TenantNotFound", terr.message);
      write_status(&x, TN_MIG_FAILED, &err);
      goto out;
    }
    tn_log(TN_LOG_WARN, &x.lf, "reading Tenant %s: %s", x.spec.tenant, terr.message);
    res = TN_RESULT_ERR;
    goto out;
  }
  if (tn_mig_phase_active(x.phase) && x.phase == TN_MIG_PENDING) {
    /* one migration per tenant at a time (the webhook refuses a second one; this is the backstop) */
    json_t *all = tn_informer_list(m->inf);
    size_t i;
    json_t *o;
    const char *other = NULL;
    json_array_foreach(all, i, o) {
      enum tn_mig_phase p;
      const char *n = str_at(o, "metadata", "name"), *t = str_at(o, "spec", "tenant");
      if (n && t && strcmp(n, key) != 0 && strcmp(t, x.spec.tenant) == 0 &&
          tn_mig_phase_parse(status_str(o, "phase", NULL), &p) == 0 && p != TN_MIG_PENDING &&
          tn_mig_phase_active(p))
        other = n;
    }
    if (other) {
      char msg[256];
      snprintf(msg, sizeof msg, "TenantMigration %s of tenant %s is running: one at a time", other,
               x.spec.tenant);
      cond_set(&x, "Validated", "False", "MigrationInProgress", msg);
      if (write_status(&x, TN_MIG_FAILED, &err) == 0)
        event(&x, TN_EVENT_WARNING, "MigrationInProgress", "%s", msg);
      json_decref(all);
      goto out;
    }
    json_decref(all);
  }

  bool started = x.phase == TN_MIG_CUTOVER && status_str(x.obj, "cutoverStartedAt", NULL);
  double cutover_at = 0;
  const char *cat = status_str(x.obj, "cutoverAt", NULL);
  if (cat) {
    struct tm tm = {0};
    if (strptime(cat, "%Y-%m-%dT%H:%M:%SZ", &tm))
      cutover_at = (double)timegm(&tm);
  }
  struct tn_mig_action a = tn_mig_next(x.phase, &x.spec, tn_wall_now(), cutover_at, started);
  switch (a.kind) {
  case TN_MIG_ACT_NONE:
    goto out;
  case TN_MIG_ACT_WAIT:
    json_object_set_new(x.st, "message", json_string(a.why));
    if (!json_equal(x.st, json_object_get(x.obj, "status")))
      write_status(&x, x.phase, &err);
    res = TN_RESULT_AFTER(a.wait_s > 300 ? 300 : a.wait_s + 0.5);
    goto out;
  case TN_MIG_ACT_GOTO:
    json_object_set_new(x.st, "message", json_string(a.why));
    if (write_status(&x, a.phase, &err)) {
      tn_log(TN_LOG_WARN, &x.lf, "migration %s: writing status: %s", key, err.message);
      res = TN_RESULT_ERR;
      goto out;
    }
    event(&x, TN_EVENT_NORMAL, "Phase", "%s (%s)", tn_mig_phase_name(a.phase), a.why);
    res = TN_RESULT_AFTER(0.05);
    goto out;
  case TN_MIG_ACT_RUN:
    break;
  }

  /* Cutover and RollingBack: record the start of the freeze before it begins (the tenant
   * reconcile then leaves the roles alone, and an abort is no longer accepted). */
  const char *sfield = x.phase == TN_MIG_CUTOVER        ? "cutoverStartedAt"
                       : x.phase == TN_MIG_ROLLING_BACK ? "rollbackStartedAt"
                                                        : NULL;
  if (sfield && !str_at(x.st, sfield, NULL)) {
    stamp(&x, sfield);
    if (write_status(&x, x.phase, &err)) {
      res = TN_RESULT_ERR;
      goto out;
    }
    event(&x, TN_EVENT_NORMAL, "WriteFreeze", "write freeze of tenant %s begins (%s)", x.spec.tenant,
          x.phase == TN_MIG_CUTOVER ? "cutover" : "rollback");
  }

  bool permanent = false;
  enum tn_mig_phase step = x.phase;
  const char *ctype = tn_mig_condition_type(step);
  rc = run_step(&x, &permanent, &err);
  if (rc) {
    char msg[1100];
    snprintf(msg, sizeof msg, "%s", err.message);
    tn_log(TN_LOG_WARN, &x.lf, "migration %s: step %s: %s", key, tn_mig_phase_name(step), msg);
    struct tn_error e2 = {0};
    if (permanent) {
      audit(&x, step, TN_AUDIT_REFUSED, msg, &e2);
      cond_set(&x, ctype, "False", "ValidationFailed", msg);
      if (write_status(&x, TN_MIG_FAILED, &e2) == 0)
        event(&x, TN_EVENT_WARNING, "ValidationFailed", "%s", msg);
      goto out;
    }
    if (step == TN_MIG_VERIFY && rc == TN_ECONFLICT) {
      audit(&x, step, TN_AUDIT_FAILED, msg, &e2);
      cond_set(&x, ctype, "False", "ChecksumMismatch", msg);
      if (write_status(&x, TN_MIG_COPY, &e2) == 0)
        event(&x, TN_EVENT_WARNING, "ChecksumMismatch", "%s: copying again", msg);
      res = TN_RESULT_AFTER(1);
      goto out;
    }
    cond_set(&x, ctype, "False", "Retrying", msg);
    if (!json_equal(x.st, json_object_get(x.obj, "status")) && write_status(&x, x.phase, &e2) == 0)
      event(&x, TN_EVENT_WARNING, "StepFailed", "%s: %s (retrying)", tn_mig_phase_name(step), msg);
    res = TN_RESULT_ERR;
    goto out;
  }
  if (x.pending) { /* under way (a logical copy): reported, not recorded done */
    cond_set(&x, ctype, "False", "Replicating", x.pending_msg);
    json_object_set_new(x.st, "message", json_string(x.pending_msg));
    if (!json_equal(x.st, json_object_get(x.obj, "status")) && write_status(&x, x.phase, &err))
      tn_log(TN_LOG_WARN, &x.lf, "migration %s: writing status: %s", key, err.message);
    res = TN_RESULT_AFTER(1);
    goto out;
  }
  crash_point(&x, step);
  char msg[1024];
  done_message(&x, msg, sizeof msg);
  if (audit(&x, step, TN_AUDIT_SUCCEEDED, msg, &err)) {
    tn_log(TN_LOG_WARN, &x.lf, "migration %s: audit trail unavailable, step %s not recorded: %s", key,
           tn_mig_phase_name(step), err.message);
    res = TN_RESULT_ERR;
    goto out;
  }
  cond_set(&x, ctype, "True", "Done", msg);
  if (step == TN_MIG_CUTOVER)
    stamp(&x, "cutoverAt");
  json_object_set_new(x.st, "message", json_string(msg));
  if (write_status(&x, tn_mig_after(step), &err)) {
    tn_log(TN_LOG_WARN, &x.lf, "migration %s: writing status: %s", key, err.message);
    res = TN_RESULT_ERR;
    goto out;
  }
  tn_log(TN_LOG_INFO, &x.lf, "migration %s: %s done: %s", key, tn_mig_phase_name(step), msg);
  event(&x, TN_EVENT_NORMAL, tn_mig_phase_name(step), "%s", msg);
  if (step == TN_MIG_CUTOVER || step == TN_MIG_ROLLING_BACK)
    tenant_event(&x, TN_EVENT_NORMAL, step == TN_MIG_CUTOVER ? "Migrated" : "MigrationRolledBack", msg);
  res = TN_RESULT_AFTER(0.05);
out:
  side_close(&x.src);
  side_close(&x.dst);
  tn_tenant_free(x.t);
  json_decref(x.tenant);
  json_decref(x.st);
  json_decref(x.obj);
  return res;
}
