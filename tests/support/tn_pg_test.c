/* tn_pg_test.c - libpq helpers of the suites (see tn_pg_test.h). */
#define _GNU_SOURCE
#include "tn_pg_test.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tn_test.h"

PGconn *tn_test_pg_connect(const char *dsn) {
  PGconn *c = PQconnectdb(dsn ? dsn : tn_test_env("TENANCY_PG_DSN"));
  cr_assert_eq(PQstatus(c), CONNECTION_OK, "cannot connect: %s", PQerrorMessage(c));
  PQclear(PQexec(c, "SET client_min_messages = warning"));
  return c;
}

static char *vfmt(const char *fmt, va_list ap) {
  char *q = NULL;
  cr_assert_geq(vasprintf(&q, fmt, ap), 0, "out of memory");
  return q;
}

PGresult *tn_test_pg_exec(PGconn *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *q = vfmt(fmt, ap);
  va_end(ap);
  PGresult *r = PQexec(c, q);
  free(q);
  return r;
}

char *tn_test_pg_value(PGconn *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *q = vfmt(fmt, ap);
  va_end(ap);
  PGresult *r = PQexec(c, q);
  ExecStatusType st = PQresultStatus(r);
  cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", q, PQresultErrorMessage(r));
  char *v = strdup(st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
  PQclear(r);
  free(q);
  return v;
}

char *tn_test_pg_error(PGconn *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *q = vfmt(fmt, ap);
  va_end(ap);
  PGresult *r = PQexec(c, q);
  cr_assert_eq(PQresultStatus(r), PGRES_FATAL_ERROR, "accepted: %s", q);
  char *m = strdup(PQresultErrorMessage(r));
  PQclear(r);
  if (PQtransactionStatus(c) != PQTRANS_IDLE)
    PQclear(PQexec(c, "ROLLBACK"));
  free(q);
  return m;
}

static bool dropped(const char *keyword, const char *const *drop) {
  for (; drop && *drop; drop++)
    if (!strcmp(keyword, *drop))
      return true;
  return false;
}

char *tn_test_pg_dsn(const char *user, const char *password, const char *const *drop, const char *extra) {
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(tn_test_env("TENANCY_PG_DSN"), &perr);
  cr_assert_not_null(opts, "%s", perr);
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  cr_assert_not_null(f);
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val || dropped(o->keyword, drop))
      continue;
    if (user && (!strcmp(o->keyword, "user") || !strcmp(o->keyword, "password")))
      continue;
    fprintf(f, "%s='", o->keyword);
    for (const char *p = o->val; *p; p++)
      fprintf(f, *p == '\'' || *p == '\\' ? "\\%c" : "%c", *p);
    fprintf(f, "' ");
  }
  if (user)
    fprintf(f, "user='%s' password='%s' ", user, password ? password : "");
  fprintf(f, "%s", extra ? extra : "");
  fclose(f);
  PQconninfoFree(opts);
  return out;
}

void tn_test_pg_role_create(PGconn *c, const char *role, const char *password) {
  free(tn_test_pg_value(c, "CREATE ROLE %s LOGIN PASSWORD '%s'", role, password));
}

void tn_test_pg_role_drop(PGconn *c, const char *role) {
  PQclear(tn_test_pg_exec(c, "DROP OWNED BY %s", role));
  PQclear(tn_test_pg_exec(c, "DROP ROLE IF EXISTS %s", role));
}

char *tn_test_pg_subst_schema(const char *tmpl, const char *schema) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  cr_assert_not_null(f, "open_memstream failed");
  for (const char *p = tmpl; *p;) {
    if (!strncmp(p, "@S@", 3)) {
      fputs(schema, f);
      p += 3;
    } else {
      fputc(*p++, f);
    }
  }
  fclose(f);
  return out;
}
