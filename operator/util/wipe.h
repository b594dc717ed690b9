/* wipe.h - secrets do not linger in freed memory: wipe-then-free for strings and JSON values
 * (Secret data, passwords, DSNs, keys), and process hardening (not dumpable, no core files). */
#ifndef TN_UTIL_WIPE_H
#define TN_UTIL_WIPE_H

#include <stddef.h>

#include "util/error.h"

/* Overwrites n bytes at p with zeros in a way the compiler cannot drop (OPENSSL_cleanse).
 * Accepts NULL. */
void tn_wipe(void *p, size_t n);

/* Wipes the NUL-terminated string s and frees it. Accepts NULL. */
void tn_wipe_free_str(char *s);

/* Wipes the whole heap block p (malloc_usable_size bytes: what malloc handed out, not just
 * what was used) and frees it. Accepts NULL. p must come from malloc/calloc/realloc. */
void tn_wipe_free(void *p);

/* Makes jansson wipe every block it frees (json_set_alloc_funcs with malloc and
 * tn_wipe_free), so a Secret's data, once its last reference is dropped (an informer store
 * replacing or deleting it, a GET's result released), leaves no copy in freed memory. Call
 * once, first thing in main, before any JSON value exists and before threads start.
 * Returns nonzero when it is in place (also when it already was). */
int tn_wipe_json_install(void);
/* Whether tn_wipe_json_install is in effect. */
int tn_wipe_json_installed(void);

/* Hardens the calling process, first thing in main: prctl(PR_SET_DUMPABLE, 0) (no core dump,
 * and processes of the same user without CAP_SYS_PTRACE can neither ptrace it nor read its
 * /proc/<pid>/mem, environ or maps; /proc/<pid>/ files become root's) and RLIMIT_CORE 0 (hard
 * and soft). Returns 0, or TN_ECONFIG with the failing call in err. */
int tn_harden_process(struct tn_error *err);

#endif
