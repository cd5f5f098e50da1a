/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ATR_HTTP_ROUTER_H
#define ATR_HTTP_ROUTER_H

/*
 * Route tables and request-target parsing.
 *
 * Every server declares its routes as one `static const struct atr_route[]`
 * (method, path pattern, handler, flags, body limit, role), the way Redis
 * declares its command table (style anchors 3.5). A pattern is a path of
 * literal segments and whole-segment parameters: "/v1/tenants/{t}/records".
 *
 * Matching works on the raw (still percent-encoded) path:
 *  - the path must start with '/', be at most ATR_ROUTER_PATH_MAX bytes and
 *    contain only RFC 3986 path characters (pchar and '/');
 *  - each segment is percent-decoded exactly once; a decoded segment must be
 *    valid UTF-8 without NUL or other control characters and must not be "."
 *    or "..";
 *  - literal segments compare byte for byte with the decoded segment, a
 *    parameter "{name}" matches any non-empty segment, an optional parameter
 *    "{name?}" also matches an empty one (value ""), as Azure SDKs send
 *    "/keys/k//wrapkey" for the latest version; an empty segment matches
 *    nothing else (so "//x" is a 404, not an alias of "/x");
 *  - the first route in table order whose pattern and method match wins, so
 *    tables list literal routes before parameter routes that overlap them.
 * HEAD matches a GET route when the table has no HEAD route for the path.
 *
 * Query strings are parsed into decoded name/value pairs ('+' is a space),
 * with the same character rules for the decoded text.
 *
 * All results live in caller-provided fixed-size structs: nothing here
 * allocates, so the matcher can run on hostile input without limits other
 * than the documented maxima.
 *
 * Thread-safety: all functions are reentrant; route tables are read-only.
 */

#include <stddef.h>

#include "base/error.h"

struct atr_http_req;
struct atr_http_resp;

/*
 * The one handler signature of every route. The handler fills @p resp (see
 * http/server.h) and returns ATR_OK, or returns an error status, which the
 * server turns into the JSON error shape (design section 5). @p ctx is the
 * application context given to atr_http_server_new().
 */
typedef atr_status (*atr_http_handler)(struct atr_http_req *req, struct atr_http_resp *resp,
                                       void *ctx);

/* Route flags. */
#define ATR_ROUTE_AUTH 0x1u /* run the server's auth hook before the handler */

/* Limits of the matcher and the query parser. */
#define ATR_ROUTER_PATH_MAX       2048 /* raw path bytes */
#define ATR_ROUTER_MAX_SEGMENTS   32
#define ATR_ROUTER_MAX_PARAMS     8
#define ATR_ROUTER_QUERY_MAX      4096 /* raw query bytes */
#define ATR_ROUTER_MAX_QUERY      32   /* query parameters */
#define ATR_ROUTER_ALLOW_MAX      96   /* bytes of an Allow header value */
#define ATR_ROUTER_PARAM_NAME_MAX 32

/* Body limit used when a route leaves body_limit at 0: 1 MiB. */
#define ATR_ROUTE_BODY_LIMIT_DEFAULT ((size_t)1 << 20)

struct atr_route {
    const char *method;  /* "GET", "POST", ... (upper case) */
    const char *pattern; /* "/v1/tenants/{t}/records" */
    atr_http_handler handler;
    unsigned flags;    /* ATR_ROUTE_* */
    size_t body_limit; /* request body bytes; 0 = ATR_ROUTE_BODY_LIMIT_DEFAULT */
    const char *role;  /* handed to the auth hook; NULL = none */
};

struct atr_router_param {
    const char *name; /* points into the route's pattern; not NUL-terminated */
    size_t name_len;
    const char *value; /* decoded, NUL-terminated, in the match's storage */
};

struct atr_router_match {
    const struct atr_route *route; /* the matched route, or NULL */
    size_t nparams;
    struct atr_router_param params[ATR_ROUTER_MAX_PARAMS];
    char allow[ATR_ROUTER_ALLOW_MAX]; /* methods on the path, for 405 */
    char storage[ATR_ROUTER_PATH_MAX + ATR_ROUTER_MAX_SEGMENTS];
};

struct atr_router_query_param {
    const char *name;  /* decoded, NUL-terminated */
    const char *value; /* decoded, NUL-terminated ("" when absent) */
};

struct atr_router_query {
    size_t count;
    struct atr_router_query_param params[ATR_ROUTER_MAX_QUERY];
    char storage[ATR_ROUTER_QUERY_MAX + 2 * ATR_ROUTER_MAX_QUERY];
};

/**
 * Checks a route table once at start-up: methods are upper-case tokens,
 * patterns start with '/', parameters are whole segments named
 * [A-Za-z0-9_] and unique within a pattern, handlers are set, no two routes
 * share method and pattern.
 * @return ATR_E_CONFIG naming the first bad route.
 */
ATR_MUST_CHECK atr_status atr_router_check(const struct atr_route *routes, size_t nroutes,
                                           struct atr_err *err);

/**
 * Matches @p method and the raw path (@p path, @p path_len bytes, without
 * the query) against the table.
 * @param[out] out the route and its decoded parameters; on ATR_E_METHOD,
 *             out->allow lists the methods the path supports ("GET, PUT").
 *             Parameter values are borrowed from @p out.
 * @return ATR_OK, ATR_E_NOT_FOUND (no pattern matches the path),
 *         ATR_E_METHOD (patterns match, methods do not),
 *         ATR_E_INVALID (malformed path: bad character or escape, NUL or
 *         control character, invalid UTF-8, "." or "..", empty segment,
 *         too long or too many segments).
 */
ATR_MUST_CHECK atr_status atr_router_match(struct atr_router_match *out,
                                           const struct atr_route *routes, size_t nroutes,
                                           const char *method, const char *path, size_t path_len,
                                           struct atr_err *err);

/** The decoded value of parameter @p name of a match, or NULL; borrowed from @p m. */
const char *atr_router_param(const struct atr_router_match *m, const char *name);

/**
 * Parses a raw query string (@p len bytes after the '?', may be 0).
 * Empty pairs ("a=1&&b=2") are skipped; a name without '=' has value "".
 * @param[out] out decoded pairs in order; strings borrowed from @p out.
 * @return ATR_E_INVALID (bad escape, NUL, control character, invalid UTF-8,
 *         empty name, too long, too many parameters).
 */
ATR_MUST_CHECK atr_status atr_router_parse_query(struct atr_router_query *out, const char *query,
                                                 size_t len, struct atr_err *err);

/** The first value of query parameter @p name, or NULL; borrowed from @p q. */
const char *atr_router_query_get(const struct atr_router_query *q, const char *name);

/** The body limit of @p route (its own or the default). */
size_t atr_route_body_limit(const struct atr_route *route);

#endif /* ATR_HTTP_ROUTER_H */
