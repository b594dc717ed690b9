/* pgtext.c - see pgtext.h. */
#include "util/pgtext.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tn_pg_one_line(const char *in, char *out, size_t n) {
  if (n == 0)
    return;
  size_t j = 0;
  for (size_t i = 0; in && in[i] && j + 1 < n; i++) {
    char ch = in[i] == '\n' || in[i] == '\t' || in[i] == '\r' ? ' ' : in[i];
    if (ch == ' ' && (j == 0 || out[j - 1] == ' '))
      continue;
    out[j++] = ch;
  }
  while (j > 0 && out[j - 1] == ' ')
    j--;
  out[j] = '\0';
}

void tn_pg_quiet_notices(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

int tn_pg_write_ca_file(const char *pem, char *path, size_t n) {
  const char *dir = getenv("TMPDIR");
  snprintf(path, n, "%s/tenancy-pgca.XXXXXX", dir && *dir ? dir : "/tmp");
  int fd = mkstemp(path);
  if (fd < 0)
    return -errno;
  size_t len = strlen(pem), off = 0;
  while (off < len) {
    ssize_t w = write(fd, pem + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      int e = errno ? -errno : -EIO;
      close(fd);
      unlink(path);
      return e;
    }
    off += (size_t)w;
  }
  if (close(fd) != 0) {
    int e = -errno;
    unlink(path);
    return e;
  }
  return 0;
}
