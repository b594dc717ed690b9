/* watchstream.h - an incremental parser of the Kubernetes watch event stream: bytes go in as
 * chunks of any size, complete events (type + object) come out through a callback. */
#ifndef TN_KUBE_WATCHSTREAM_H
#define TN_KUBE_WATCHSTREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

/* The most bytes one event may take unless the caller asks otherwise. */
#define TN_WATCH_MAX_EVENT_BYTES ((size_t)16 << 20)

enum tn_watch_type {
  TN_WATCH_ADDED = 1,
  TN_WATCH_MODIFIED,
  TN_WATCH_DELETED,
  TN_WATCH_BOOKMARK,
  TN_WATCH_ERROR /* the object is a Status; see tn_watch_status_error */
};

/* "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR" (or "?"). Static strings. */
const char *tn_watch_type_name(enum tn_watch_type type);

/* Called once per complete event, in stream order, on the thread that called feed/finish.
 * object is borrowed for the call (json_incref it to keep it). Return 0 to go on; a negative
 * code stops the stream: feed returns it (and every later feed does too) and err, which the
 * callback may fill, is handed back to feed's caller. */
typedef int (*tn_watch_event_fn)(void *ud, enum tn_watch_type type, json_t *object, struct tn_error *err);

struct tn_watchstream; /* opaque; not thread-safe: one feeding thread at a time */

/* max_event_bytes 0 means TN_WATCH_MAX_EVENT_BYTES. fn is required; ud is borrowed.
 * Returns NULL only when out of memory. Free with tn_watchstream_free. */
struct tn_watchstream *tn_watchstream_new(size_t max_event_bytes, tn_watch_event_fn fn, void *ud);
void tn_watchstream_free(struct tn_watchstream *ws); /* accepts NULL */

/* With drop true, each event's metadata.managedFields (the first `"managedFields":[...]` member
 * of its text, which is metadata's: the API server writes metadata before spec and status) is
 * cut from the text before it is parsed, so the callback's object has none. For consumers that
 * drop managedFields anyway (informers whose transform removes it): it is often half of an
 * object's bytes, and parsing it was most of the cost of a watch event. */
void tn_watchstream_drop_managed_fields(struct tn_watchstream *ws, bool drop);

/* The same cut on one event's text (len bytes at line) into out (at least len bytes); returns
 * the new length (len when there is no such member). Pure; for tests. */
size_t tn_watchstream_trim_managed_fields(const char *line, size_t len, char *out);

/* Feeds the next len bytes of the body. Events are newline-delimited JSON objects
 * {"type":..., "object":{...}}; an event may be split across any number of feeds and one feed
 * may complete several events. Returns 0, or the first error, which is sticky:
 *   TN_ETOOBIG  an event passed max_event_bytes (nothing of it is parsed),
 *   TN_EINVALID an event that is not JSON, not an object, or lacks "type"/"object", or an
 *               unknown type,
 *   -ENOMEM, or whatever the callback returned. */
int tn_watchstream_feed(struct tn_watchstream *ws, const char *data, size_t len, struct tn_error *err);

/* The body ended. A complete final event that merely lacks its newline is delivered; any
 * other trailing bytes (a truncated event) give TN_EINVALID. Returns 0 or an error (sticky
 * errors from feed are returned again). */
int tn_watchstream_finish(struct tn_watchstream *ws, struct tn_error *err);

/* Back to the initial state (new body): drops any partial event and a sticky error; counters
 * start again from zero. */
void tn_watchstream_reset(struct tn_watchstream *ws);

/* Events delivered and body bytes consumed since creation or the last reset. */
size_t tn_watchstream_events(const struct tn_watchstream *ws);
size_t tn_watchstream_bytes(const struct tn_watchstream *ws);

/* Turns the Status carried by an ERROR event (or any Status object) into an error value and
 * returns its code: 410 or reason Expired/Gone -> TN_EGONE (the resourceVersion was compacted:
 * relist), 429 -> TN_ETHROTTLED, 5xx -> TN_EUNAVAILABLE, 401/403 -> TN_EFORBIDDEN, 404 ->
 * TN_ENOTFOUND, 400/422 -> TN_EINVALID, else TN_EAPI. Fills err's http_status, reason, message
 * and causes. Pure. */
int tn_watch_status_error(const json_t *status, struct tn_error *err);

#endif
