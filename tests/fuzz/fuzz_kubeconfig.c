/* fuzz_kubeconfig.c - libFuzzer harness of kubeconfig parsing (kube/kubeconfig.c): YAML with
 * anchors and aliases, YAML-to-JSON conversion, field validation, base64 and PEM decoding, the
 * merge of several files (the input split at its first form feed), exec plugin configuration
 * (validated, never run) and ExecCredential output parsing. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kube/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct tn_kube_config cfg;
  struct tn_error err = {0};
  /* dir "/nonexistent": relative file references resolve somewhere that is never readable. */
  if (tn_kube_config_parse((const char *)data, size, "fuzz", "/nonexistent", NULL, &cfg, &err) == 0)
    tn_kube_config_cleanup(&cfg);
  const char *ff = memchr(data, '\f', size);
  if (ff) {
    size_t first = (size_t)(ff - (const char *)data);
    struct tn_kube_config_source srcs[2] = {{(const char *)data, first, "a", "/nonexistent"},
                                            {ff + 1, size - first - 1, "b", "/nonexistent"}};
    struct tn_kube_exec exec;
    if (tn_kube_config_parse_sources(srcs, 2, NULL, &cfg, &exec, &err) == 0) {
      tn_kube_config_cleanup(&cfg);
      tn_kube_exec_cleanup(&exec);
    }
  }
  struct tn_kube_exec_credential cred;
  if (tn_kube_exec_credential_parse("client.authentication.k8s.io/v1", (const char *)data, size, &cred,
                                    &err) == 0)
    tn_kube_exec_credential_cleanup(&cred);
  return 0;
}
