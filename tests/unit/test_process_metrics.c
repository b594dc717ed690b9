/* test_process_metrics.c - the process_* collector: /proc parsing (names with spaces and
 * parentheses, unlimited limits) and the live figures of this process. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "runtime/process_metrics.h"

Test(process_metrics, stat_fields_are_counted_after_the_last_parenthesis) {
  /* comm "a) b (c" holds spaces and parentheses; utime 250, stime 150 ticks, starttime 1000,
   * vsize 123456789, rss 300 pages. */
  const char *stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 1000 "
                     "123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  struct tn_process_stats s = {0};
  cr_assert_eq(tn_process_parse_stat(stat, 100, 4096, 1700000000, &s), 0);
  cr_assert_float_eq(s.cpu_seconds, 4.0, 1e-9);
  cr_assert_float_eq(s.start_time, 1700000010.0, 1e-6);
  cr_assert_float_eq(s.virtual_bytes, 123456789.0, 0.5);
  cr_assert_float_eq(s.resident_bytes, 300.0 * 4096, 0.5);
  cr_assert_neq(tn_process_parse_stat("4242 (x) S 1 2", 100, 4096, 0, &s), 0, "truncated stat");
  cr_assert_neq(tn_process_parse_stat("no parenthesis", 100, 4096, 0, &s), 0);
}

Test(process_metrics, limits_and_boot_time) {
  const char *limits = "Limit                     Soft Limit           Hard Limit           Units     \n"
                       "Max cpu time              unlimited            unlimited            seconds   \n"
                       "Max open files            1024                 1048576              files     \n";
  cr_assert_float_eq(tn_process_parse_max_fds(limits), 1024.0, 1e-9);
  cr_assert(
      isinf(tn_process_parse_max_fds("Max open files            unlimited            unlimited  files\n")));
  cr_assert_float_eq(tn_process_parse_max_fds("nothing"), -1.0, 1e-9);
  cr_assert_float_eq(tn_process_parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1765000000\nprocesses 9\n"),
                     1765000000.0, 1e-9);
  cr_assert_float_eq(tn_process_parse_boot_time("cpu 1\n"), -1.0, 1e-9);
}

Test(process_metrics, live_figures_of_this_process) {
  struct tn_process_stats a, b;
  cr_assert_eq(tn_process_stats_read(NULL, &a), 0);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  cr_assert_float_eq(a.max_fds, rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur, 0.5);
  /* open_fds follows open(): three more descriptors, three more counted */
  int fds[3];
  for (int i = 0; i < 3; i++)
    fds[i] = open("/dev/null", O_RDONLY);
  cr_assert_eq(tn_process_stats_read(NULL, &b), 0);
  cr_assert_float_eq(b.open_fds - a.open_fds, 3.0, 1e-9);
  for (int i = 0; i < 3; i++)
    close(fds[i]);
  /* started within the last hour, before now */
  double now = (double)time(NULL);
  cr_assert(a.start_time <= now + 1 && a.start_time > now - 3600, "start %f now %f", a.start_time, now);
  cr_assert(a.resident_bytes > 1024 * 1024 && a.virtual_bytes >= a.resident_bytes);
  /* CPU time grows when we burn CPU */
  volatile double x = 0;
  for (long i = 0; i < 60000000; i++)
    x += (double)i * 1e-9;
  cr_assert_eq(tn_process_stats_read(NULL, &b), 0);
  cr_assert(b.cpu_seconds > a.cpu_seconds, "cpu %f -> %f", a.cpu_seconds, b.cpu_seconds);
}

Test(process_metrics, collector_exposes_the_client_library_names) {
  struct tn_metrics *m = tn_metrics_new();
  cr_assert_eq(tn_process_metrics_register(m), 0);
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(tn_metrics_write(m, &b), 0);
  char *t = tn_buf_take(&b);
  const char *want[] = {"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ",
                        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds ",
                        "# TYPE process_open_fds gauge\nprocess_open_fds ",
                        "# TYPE process_max_fds gauge\nprocess_max_fds ",
                        "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes ",
                        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes "};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_assert_not_null(strstr(t, want[i]), "missing %s in\n%s", want[i], t);
  free(t);
  tn_metrics_free(m);
}
