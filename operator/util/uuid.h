/* uuid.h - deterministic ids: a UUID (version 8, RFC 9562) from SHA-256 over NUL-separated
 * fields, so the same inputs always give the same id (retries of one change share it). */
#ifndef TN_UTIL_UUID_H
#define TN_UTIL_UUID_H

#include <stddef.h>

/* out = the first 128 bits of SHA-256(parts[0] NUL parts[1] NUL ... parts[n-1] NUL) as a
 * lowercase 8-4-4-4-12 UUID with version 8 and the RFC 9562 variant. NULL parts count as "".
 * If OpenSSL cannot allocate, a fixed id (zeros with the version and variant bits) is written
 * rather than garbage. */
void tn_uuid_from_parts(const char *const *parts, size_t n, char out[37]);

#endif
