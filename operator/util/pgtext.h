/* pgtext.h - small helpers every PostgreSQL caller needs: one-line error messages, silenced
 * notices and a private file for a server's CA certificate (libpq reads sslrootcert from a file). */
#ifndef TN_UTIL_PGTEXT_H
#define TN_UTIL_PGTEXT_H

#include <stddef.h>

/* Copies in to out (n bytes, NUL-terminated) on one line: newlines, tabs and runs of spaces become
 * one space, and no space is left at either end. libpq's messages end in a newline and may hold
 * tabs; a condition or a log line reads better without them. in may be NULL. */
void tn_pg_one_line(const char *in, char *out, size_t n);

/* A libpq notice processor that drops notices (PQsetNoticeProcessor(conn, tn_pg_quiet_notices,
 * NULL)): NOTICEs go to stderr otherwise, outside the structured log. */
void tn_pg_quiet_notices(void *arg, const char *message);

/* Writes pem to a new file only we can read (0600, mkstemp in $TMPDIR or /tmp) and returns its
 * path in path (n bytes). 0 or -errno; on error no file is left. The caller unlinks it. */
int tn_pg_write_ca_file(const char *pem, char *path, size_t n);

#endif
