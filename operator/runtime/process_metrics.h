/* process_metrics.h - the standard process collector: the process_* metrics that every Prometheus
 * client library exports (client_golang's collectors.NewProcessCollector), with the same names,
 * types and meaning, read from /proc at scrape time:
 *   process_cpu_seconds_total       counter  user + system CPU time (/proc/self/stat utime+stime)
 *   process_start_time_seconds      gauge    start time, seconds since the epoch (btime + starttime)
 *   process_open_fds                gauge    open file descriptors (entries of /proc/self/fd)
 *   process_max_fds                 gauge    the soft limit of open files (/proc/self/limits)
 *   process_virtual_memory_bytes    gauge    virtual memory size (vsize)
 *   process_resident_memory_bytes   gauge    resident set size (rss pages * page size) */
#ifndef TN_RUNTIME_PROCESS_METRICS_H
#define TN_RUNTIME_PROCESS_METRICS_H

#include <stdbool.h>

#include "runtime/metrics.h"

struct tn_process_stats {
  double cpu_seconds; /* utime + stime */
  double start_time;  /* seconds since the epoch */
  double open_fds;    /* -1 when unknown */
  double max_fds;     /* -1 when unknown; +Inf when unlimited */
  double virtual_bytes;
  double resident_bytes;
};

/* Parses the text of /proc/<pid>/stat (the process name may hold spaces and parentheses: fields
 * are counted after the last ')'). ticks: clock ticks per second (sysconf(_SC_CLK_TCK)); page:
 * the page size; boot_time: btime of /proc/stat. Sets cpu_seconds, start_time, virtual_bytes,
 * resident_bytes. Returns 0 or -EINVAL. */
int tn_process_parse_stat(const char *stat, double ticks, double page, double boot_time,
                          struct tn_process_stats *out);
/* The soft "Max open files" of /proc/<pid>/limits text: a number, +Inf for "unlimited", or -1. */
double tn_process_parse_max_fds(const char *limits);
/* The "btime" line of /proc/stat text, or -1. */
double tn_process_parse_boot_time(const char *proc_stat);

/* Reads this process' figures from proc_root (NULL: "/proc"). Returns 0 or a negative errno. */
int tn_process_stats_read(const char *proc_root, struct tn_process_stats *out);

/* Registers the collector of this process on m (a scrape reads /proc). Returns 0 or an error of
 * tn_metrics_register_collector. */
int tn_process_metrics_register(struct tn_metrics *m);

#endif
