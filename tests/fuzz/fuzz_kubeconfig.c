/* fuzz_kubeconfig.c - libFuzzer harness of kubeconfig parsing (kube/kubeconfig.c): YAML with
 * anchors and aliases, YAML-to-JSON conversion, field validation, base64 and PEM decoding. */
#include <stddef.h>
#include <stdint.h>

#include "kube/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct tn_kube_config cfg;
  struct tn_error err = {0};
  /* dir "/nonexistent": relative file references resolve somewhere that is never readable. */
  if (tn_kube_config_parse((const char *)data, size, "fuzz", "/nonexistent", NULL, &cfg, &err) == 0)
    tn_kube_config_cleanup(&cfg);
  return 0;
}
