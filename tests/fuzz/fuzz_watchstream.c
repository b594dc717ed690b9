/* fuzz_watchstream.c - libFuzzer harness of the watch-stream parser (kube/watchstream.c): the
 * input is fed in chunks whose sizes come from its first byte, then finished; every event's
 * Status goes through tn_watch_status_error. */
#include <stddef.h>
#include <stdint.h>

#include "kube/watchstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_event(void *ud, enum tn_watch_type type, json_t *object, struct tn_error *err) {
  size_t *n = ud;
  (*n)++;
  (void)tn_watch_type_name(type);
  if (type == TN_WATCH_ERROR) {
    struct tn_error e = {0};
    (void)tn_watch_status_error(object, &e);
  }
  /* Stop the stream on the 1000th event: the callback's error path. */
  return *n >= 1000 ? tn_error_set(err, TN_EINVALID, "enough") : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t chunk = (size_t)(data[0] % 64) + 1; /* 1..64 bytes per feed */
  data++, size--;
  size_t events = 0;
  struct tn_error err = {0};
  /* A small event cap so the too-big path is reachable. */
  struct tn_watchstream *ws = tn_watchstream_new(4096, on_event, &events);
  if (!ws)
    return 0;
  int rc = 0;
  for (size_t off = 0; off < size && rc == 0; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    rc = tn_watchstream_feed(ws, (const char *)data + off, n, &err);
  }
  (void)tn_watchstream_finish(ws, &err);
  /* A reset stream must parse the same body again from scratch. */
  tn_watchstream_reset(ws);
  events = 0;
  (void)tn_watchstream_feed(ws, (const char *)data, size, &err);
  (void)tn_watchstream_finish(ws, &err);
  tn_watchstream_free(ws);
  return 0;
}
