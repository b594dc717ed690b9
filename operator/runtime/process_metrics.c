/* process_metrics.c - the process_* metrics of Prometheus client libraries, from /proc at scrape
 * time (see process_metrics.h). */
#include "runtime/process_metrics.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tn_process_parse_stat(const char *stat, double ticks, double page, double boot_time,
                          struct tn_process_stats *out) {
  if (!stat || !out || !(ticks > 0) || !(page > 0))
    return -EINVAL;
  const char *p = strrchr(stat, ')'); /* the name (field 2) is in parentheses and may hold anything */
  if (!p)
    return -EINVAL;
  p++;
  /* Fields after the name, counted from 3: state(3) ... utime(14) stime(15) ... starttime(22)
   * vsize(23) rss(24). */
  unsigned long long v[25] = {0};
  int field = 3;
  while (*p && field <= 24) {
    while (*p == ' ')
      p++;
    if (!*p)
      break;
    if (field == 3) {
      while (*p && *p != ' ')
        p++;
    } else {
      char *end = NULL;
      errno = 0;
      long long x = strtoll(p, &end, 10);
      if (end == p || errno)
        return -EINVAL;
      v[field] = x < 0 ? 0 : (unsigned long long)x;
      p = end;
    }
    field++;
  }
  if (field <= 24)
    return -EINVAL;
  out->cpu_seconds = (double)(v[14] + v[15]) / ticks;
  out->start_time = boot_time + (double)v[22] / ticks;
  out->virtual_bytes = (double)v[23];
  out->resident_bytes = (double)v[24] * page;
  return 0;
}

double tn_process_parse_max_fds(const char *limits) {
  const char *p = limits ? strstr(limits, "Max open files") : NULL;
  if (!p)
    return -1;
  p += strlen("Max open files");
  while (*p == ' ')
    p++;
  if (strncmp(p, "unlimited", 9) == 0)
    return INFINITY;
  char *end = NULL;
  double soft = strtod(p, &end);
  return end == p ? -1 : soft;
}

double tn_process_parse_boot_time(const char *proc_stat) {
  for (const char *p = proc_stat; p && *p;) {
    if (strncmp(p, "btime ", 6) == 0)
      return strtod(p + 6, NULL);
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  return -1;
}

/* Reads a whole small /proc file into buf (NUL-terminated). Returns 0 or -errno. */
static int slurp(const char *path, char *buf, size_t n) {
  FILE *fp = fopen(path, "re");
  if (!fp)
    return -errno;
  size_t got = fread(buf, 1, n - 1, fp);
  int bad = ferror(fp);
  fclose(fp);
  buf[got] = '\0';
  return bad ? -EIO : 0;
}

int tn_process_stats_read(const char *proc_root, struct tn_process_stats *out) {
  char path[256], buf[8192];
  const char *root = proc_root ? proc_root : "/proc";
  *out = (struct tn_process_stats){.open_fds = -1, .max_fds = -1};
  long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  snprintf(path, sizeof path, "%s/stat", root);
  double boot = slurp(path, buf, sizeof buf) == 0 ? tn_process_parse_boot_time(buf) : -1;
  snprintf(path, sizeof path, "%s/self/stat", root);
  int rc = slurp(path, buf, sizeof buf);
  if (rc == 0)
    rc = tn_process_parse_stat(buf, (double)ticks, (double)page, boot < 0 ? 0 : boot, out);
  snprintf(path, sizeof path, "%s/self/limits", root);
  if (slurp(path, buf, sizeof buf) == 0)
    out->max_fds = tn_process_parse_max_fds(buf);
  snprintf(path, sizeof path, "%s/self/fd", root);
  DIR *d = opendir(path);
  if (d) {
    double n = 0;
    for (struct dirent *e; (e = readdir(d));)
      if (e->d_name[0] != '.')
        n++;
    closedir(d);
    out->open_fds = n; /* with the directory stream's own, as client_golang (procfs) counts */
  }
  return rc;
}

static void collect(void *ud, struct tn_collect *c) {
  (void)ud;
  struct tn_process_stats s;
  if (tn_process_stats_read(NULL, &s) != 0)
    return;
  tn_collect_family(c, TN_COUNTER, "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.", NULL);
  tn_collect_sample(c, NULL, s.cpu_seconds);
  if (s.open_fds >= 0) {
    tn_collect_family(c, TN_GAUGE, "process_open_fds", "Number of open file descriptors.", NULL);
    tn_collect_sample(c, NULL, s.open_fds);
  }
  if (s.max_fds >= 0) {
    tn_collect_family(c, TN_GAUGE, "process_max_fds", "Maximum number of open file descriptors.", NULL);
    tn_collect_sample(c, NULL, s.max_fds);
  }
  tn_collect_family(c, TN_GAUGE, "process_virtual_memory_bytes", "Virtual memory size in bytes.", NULL);
  tn_collect_sample(c, NULL, s.virtual_bytes);
  tn_collect_family(c, TN_GAUGE, "process_resident_memory_bytes", "Resident memory size in bytes.", NULL);
  tn_collect_sample(c, NULL, s.resident_bytes);
  tn_collect_family(c, TN_GAUGE, "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.", NULL);
  tn_collect_sample(c, NULL, s.start_time);
}

int tn_process_metrics_register(struct tn_metrics *m) {
  return tn_metrics_register_collector(m, collect, NULL);
}
