/* fuzz_scram.c - libFuzzer harness of the SCRAM-SHA-256 verifier check (tenancy/dbplan.c
 * tn_scram_verifier_matches): input "<verifier>\n<password>", the verifier as pg_authid stores it.
 * Iteration counts above 16 are lowered to 16 before the call: the parser and the comparison are
 * what is fuzzed (the count takes no other path), and a PBKDF2 of PostgreSQL's 4096 rounds, or the
 * accepted maximum of 10^6, per input would make ten million runs take days. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tenancy/dbplan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char prefix[] = "SCRAM-SHA-256$";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096)
    return 0;
  char *s = malloc(size + 1);
  if (!s)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  char *password = strchr(s, '\n');
  if (password)
    *password++ = '\0';
  else
    password = s + size;
  if (strncmp(s, prefix, sizeof prefix - 1) == 0) {
    char *it = s + sizeof prefix - 1, *end = it;
    while (*end >= '0' && *end <= '9')
      end++;
    if (end - it > 2 || (end - it == 2 && strtoul(it, NULL, 10) > 16)) {
      /* rewrite as "16" followed by the rest */
      char *t = malloc(strlen(s) + 8);
      if (!t)
        goto out;
      sprintf(t, "%.*s16%s", (int)(sizeof prefix - 1), s, end);
      (void)tn_scram_verifier_matches(t, password);
      free(t);
      goto out;
    }
  }
  (void)tn_scram_verifier_matches(s, password);
out:
  free(s);
  return 0;
}
