/* tenantctl_history.h - `tenantctl history|diff|rollback` (tenantctl_history.c). */
#ifndef TN_CMD_TENANTCTL_HISTORY_H
#define TN_CMD_TENANTCTL_HISTORY_H

/* Runs `tenantctl history|diff|rollback ...` (argv[1] is the command) and returns its exit code,
 * or -1 when argv[1] is none of them. */
int tenantctl_history_dispatch(int argc, char **argv);

/* For tenantctl's usage text. */
#define TENANTCTL_HISTORY_USAGE                                                                              \
  "  history TENANT  the recorded versions of a tenant's spec (generation, time, actor, changes)\n"          \
  "  diff TENANT     field-level diff of two versions (--from N --to M)\n"                                   \
  "  rollback TENANT write version N's spec back through the API server (--to N)\n"

#endif
