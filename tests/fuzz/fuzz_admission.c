/* fuzz_admission.c - libFuzzer harness of AdmissionReview decoding and review
 * (converge/admission.c tn_admission_review) with empty lookups: the body any client that reaches
 * the webhook port can send. */
#include <stddef.h>
#include <stdint.h>

#include "converge/admission.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int n_admitted, n_denied;
static void on_admitted(void *ud, const struct tn_admission_record *rec) { n_admitted += rec->name != NULL; }
static void on_denied(void *ud, const struct tn_admission_record *rec) { n_denied += rec->message != NULL; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct tn_admission_hooks hooks = {.on_admitted = on_admitted, .on_denied = on_denied};
  struct tn_error err = {0};
  json_t *response = NULL;
  int rc = tn_admission_review((const char *)data, size, NULL, &hooks, &response, &err);
  if (rc == 0 && !response)
    __builtin_trap(); /* the contract: 0 means a response */
  json_decref(response);
  return 0;
}
