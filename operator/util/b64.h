/* b64.h - base64 of Secret values (Kubernetes `data` fields). */
#ifndef TN_UTIL_B64_H
#define TN_UTIL_B64_H

/* Decodes s (standard base64 with padding, as in a Secret's `data`) into a new NUL-terminated
 * string; NULL when s is NULL, empty, not a multiple of 4 long, not base64, or out of memory.
 * The result may hold a credential: free it with tn_wipe_free. A value with a NUL byte inside
 * reads as the text before it. */
char *tn_b64_decode_text(const char *s);

#endif
