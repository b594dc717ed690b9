/* console.h - the admin console on the read API's HTTPS listener: its static page (HTML, JS,
 * CSS embedded at build time) under /console/, and a narrow forwarder /console/kube/... that
 * passes the caller's own bearer token to the API server for the tenancy.dev resources (never
 * the operator's credentials, never impersonation). See docs/console.md. */
#ifndef TN_API_CONSOLE_H
#define TN_API_CONSOLE_H

#include <stddef.h>

#include "util/error.h"

struct tn_httpserver;
struct tn_kube;

#define TN_CONSOLE_PREFIX "/console/"
#define TN_CONSOLE_KUBE_PREFIX "/console/kube/"
#define TN_CONSOLE_MAX_BODY ((size_t)256u << 10) /* a forwarded request body */

/* Adds the console's routes to srv (before it starts) and lets request bodies through (JSON
 * objects up to TN_CONSOLE_MAX_BODY: the server's limits are replaced). kube is borrowed and
 * only its endpoint (URL, CA) is used. Returns 0 or an error with a message in err. */
int tn_console_register(struct tn_httpserver *srv, struct tn_kube *kube, struct tn_error *err);

/* ---- pure parts (unit-tested) ------------------------------------------------------------- */

/* Decides whether a forwarded request is allowed and builds what goes upstream. path is the
 * request's path (URL-decoded) starting with TN_CONSOLE_KUBE_PREFIX; query its decoded
 * "name=value" pieces. Allowed: /console/kube/apis/tenancy.dev/v1alpha1/RESOURCE[/NAME] with
 * RESOURCE one of tenants, plans, regions, tenancypolicies and NAME a DNS label; GET (one or
 * the collection), POST (the collection), PATCH (one; sent as a JSON merge patch); query
 * parameters dryRun=All, limit (1..1000), continue (re-escaped). Writes the upstream path
 * into up_path and the query (escaped, "" for none) into up_query. Returns 0, or the HTTP
 * status to answer (404 for any other path, 405 for another method, 400 for another query)
 * with the reason in why. */
int tn_console_kube_route(const char *method, const char *path, const char *const *query, size_t n_query,
                          char *up_path, size_t up_path_size, char *up_query, size_t up_query_size, char *why,
                          size_t why_size);

/* Whether authorization is "Bearer <token>" with a token of visible ASCII (no spaces). */
int tn_console_bearer_ok(const char *authorization);

#endif
