/* wipe.c - wipe-then-free for secrets and process hardening (see wipe.h). */
#include "util/wipe.h"

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

void tn_wipe(void *p, size_t n) {
  if (p && n)
    OPENSSL_cleanse(p, n);
}

void tn_wipe_free_str(char *s) {
  if (!s)
    return;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}

void tn_wipe_free(void *p) {
  if (!p)
    return;
  OPENSSL_cleanse(p, malloc_usable_size(p));
  free(p);
}

static void *json_malloc(size_t n) { return malloc(n); }

int tn_wipe_json_installed(void) {
  json_malloc_t m = NULL;
  json_free_t f = NULL;
  json_get_alloc_funcs(&m, &f);
  return m == json_malloc && f == tn_wipe_free;
}

int tn_wipe_json_install(void) {
  json_set_alloc_funcs(json_malloc, tn_wipe_free);
  return tn_wipe_json_installed();
}

int tn_harden_process(struct tn_error *err) {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return tn_error_set(err, TN_ECONFIG, "prctl(PR_SET_DUMPABLE, 0): %s", strerror(errno));
  struct rlimit none = {0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0)
    return tn_error_set(err, TN_ECONFIG, "setrlimit(RLIMIT_CORE, 0): %s", strerror(errno));
  return 0;
}
