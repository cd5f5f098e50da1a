/* SPDX-License-Identifier: Apache-2.0 */
#include "http/router.h"

#include <stdint.h>
#include <string.h>

/* A decoded view of the request path: segments in the match's storage. */
struct path_segs {
    size_t n;
    const char *seg[ATR_ROUTER_MAX_SEGMENTS];
    size_t len[ATR_ROUTER_MAX_SEGMENTS];
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 pchar without pct-encoded: unreserved, sub-delims, ':' and '@'. */
static int is_pchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return strchr("-._~!$&'()*+,;=:@", c) != NULL && c != '\0';
}

/* Raw query characters: printable ASCII except space and '#'. */
static int is_qchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '#';
}

/*
 * Checks that @p s (@p n bytes) is well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF) without C0 controls or DEL. 1 = ok.
 */
static int text_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return 0;
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            cp = c & 0x07u;
        } else {
            return 0;
        }
        if (n - i <= extra)
            return 0;
        for (size_t k = 1; k <= extra; k++) {
            unsigned char cc = s[i + k];
            if ((cc & 0xc0u) != 0x80u)
                return 0;
            cp = (cp << 6) | (cc & 0x3fu);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        if (cp >= 0xd800 && cp <= 0xdfff)
            return 0;
        i += extra + 1;
    }
    return 1;
}

/*
 * Percent-decodes @p n raw bytes into @p dst (room for n + 1 bytes), with
 * '+' meaning space when @p plus_space. Writes a NUL terminator.
 * @return the decoded length, or (size_t)-1 on a bad escape or bad text.
 */
static size_t decode(char *dst, const char *src, size_t n, int plus_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '%') {
            if (n - i < 3)
                return (size_t)-1;
            int hi = hexval(src[i + 1]);
            int lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0)
                return (size_t)-1;
            dst[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_space) {
            dst[o++] = ' ';
        } else {
            dst[o++] = c;
        }
    }
    dst[o] = '\0';
    if (!text_ok((const unsigned char *)dst, o))
        return (size_t)-1;
    return o;
}

static atr_status split_path(struct path_segs *out, char *storage, size_t storage_len,
                             const char *path, size_t path_len, struct atr_err *err)
{
    out->n = 0;
    if (path == NULL || path_len == 0 || path[0] != '/')
        return atr_err_set(err, ATR_E_INVALID, "the request path must start with '/'");
    if (path_len > ATR_ROUTER_PATH_MAX)
        return atr_err_set(err, ATR_E_INVALID, "the request path is longer than %d bytes",
                           ATR_ROUTER_PATH_MAX);
    for (size_t i = 0; i < path_len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c != '/' && c != '%' && !is_pchar(c))
            return atr_err_set(err, ATR_E_INVALID,
                               "the request path contains a character that must be "
                               "percent-encoded (offset %zu)",
                               i);
    }
    size_t used = 0;
    size_t pos = 1; /* after the leading '/' */
    for (;;) {
        const char *seg = path + pos;
        const char *slash = memchr(seg, '/', path_len - pos);
        size_t seg_len = slash != NULL ? (size_t)(slash - seg) : path_len - pos;
        int last = slash == NULL;
        if (out->n == ATR_ROUTER_MAX_SEGMENTS)
            return atr_err_set(err, ATR_E_INVALID, "the request path has more than %d segments",
                               ATR_ROUTER_MAX_SEGMENTS);
        if (storage_len - used < seg_len + 1)
            return atr_err_set(err, ATR_E_INVALID, "the request path is too long");
        char *dst = storage + used;
        size_t dlen = decode(dst, seg, seg_len, 0);
        if (dlen == (size_t)-1)
            return atr_err_set(err, ATR_E_INVALID,
                               "the request path has a malformed percent-encoding or a "
                               "forbidden character in segment %zu",
                               out->n + 1);
        if ((dlen == 1 && dst[0] == '.') || (dlen == 2 && dst[0] == '.' && dst[1] == '.'))
            return atr_err_set(err, ATR_E_INVALID,
                               "the request path must not contain '.' or '..' segments");
        /* "%2F" would let a parameter smuggle a path into URLs built from it */
        if (memchr(dst, '/', dlen) != NULL)
            return atr_err_set(err, ATR_E_INVALID,
                               "the request path must not contain an encoded '/' (segment %zu)",
                               out->n + 1);
        out->seg[out->n] = dst;
        out->len[out->n] = dlen;
        out->n++;
        used += dlen + 1;
        if (last)
            break;
        pos += seg_len + 1;
    }
    return ATR_OK;
}

/* Iterates over the segments of a pattern (which starts with '/'). */
static const char *pattern_next(const char *p, size_t *len)
{
    const char *end = strchr(p, '/');
    *len = end != NULL ? (size_t)(end - p) : strlen(p);
    return end != NULL ? end + 1 : NULL;
}

static int is_param(const char *seg, size_t len)
{
    return len >= 3 && seg[0] == '{' && seg[len - 1] == '}';
}

/* "{name?}": a parameter that also matches an empty segment. */
static int is_optional(const char *seg, size_t len)
{
    return len >= 4 && seg[len - 2] == '?';
}

/*
 * Matches @p pattern against the decoded segments. On a match with @p m not
 * NULL, records the parameters (values point into the segments).
 */
static int pattern_matches(const char *pattern, const struct path_segs *ps,
                           struct atr_router_match *m)
{
    const char *p = pattern + 1;
    size_t i = 0;
    size_t np = 0;
    while (p != NULL) {
        size_t len;
        const char *seg = p;
        p = pattern_next(p, &len);
        if (i == ps->n)
            return 0;
        if (is_param(seg, len)) {
            int opt = is_optional(seg, len);
            if (ps->len[i] == 0 && !opt)
                return 0;
            if (m != NULL && np < ATR_ROUTER_MAX_PARAMS) {
                m->params[np].name = seg + 1;
                m->params[np].name_len = len - 2 - (size_t)opt;
                m->params[np].value = ps->seg[i];
            }
            np++;
        } else if (len != ps->len[i] || memcmp(seg, ps->seg[i], len) != 0) {
            return 0;
        }
        i++;
    }
    if (i != ps->n)
        return 0;
    if (m != NULL)
        m->nparams = np;
    return 1;
}

static int method_ok(const char *m)
{
    if (m == NULL || m[0] == '\0' || strlen(m) > 16)
        return 0;
    for (const char *p = m; *p != '\0'; p++) {
        if (*p < 'A' || *p > 'Z')
            return 0;
    }
    return 1;
}

static void allow_add(char *allow, const char *method)
{
    size_t mlen = strlen(method);
    /* already listed? */
    const char *p = allow;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == mlen && memcmp(p, method, mlen) == 0)
            return;
        p = end != NULL ? end + 2 : p + len;
    }
    size_t used = strlen(allow);
    size_t need = (used > 0 ? 2 : 0) + mlen + 1;
    if (ATR_ROUTER_ALLOW_MAX - used < need)
        return;
    if (used > 0) {
        memcpy(allow + used, ", ", 2);
        used += 2;
    }
    memcpy(allow + used, method, mlen + 1);
}

atr_status atr_router_match(struct atr_router_match *out, const struct atr_route *routes,
                            size_t nroutes, const char *method, const char *path, size_t path_len,
                            struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    ATR_ASSERT_ARG(routes != NULL || nroutes == 0);
    out->route = NULL;
    out->nparams = 0;
    out->allow[0] = '\0';
    if (method == NULL || method[0] == '\0')
        return atr_err_set(err, ATR_E_INVALID, "the request has no method");

    struct path_segs ps;
    ATR_TRY(split_path(&ps, out->storage, sizeof(out->storage), path, path_len, err));

    const struct atr_route *get_route = NULL;
    int any = 0;
    for (size_t r = 0; r < nroutes; r++) {
        const struct atr_route *rt = &routes[r];
        if (!pattern_matches(rt->pattern, &ps, NULL))
            continue;
        any = 1;
        allow_add(out->allow, rt->method);
        if (strcmp(rt->method, "GET") == 0)
            allow_add(out->allow, "HEAD");
        if (out->route == NULL && strcmp(rt->method, method) == 0)
            out->route = rt;
        if (get_route == NULL && strcmp(rt->method, "GET") == 0)
            get_route = rt;
    }
    if (out->route == NULL && get_route != NULL && strcmp(method, "HEAD") == 0)
        out->route = get_route;
    if (out->route != NULL) {
        /* record the parameters of the winning route */
        if (!pattern_matches(out->route->pattern, &ps, out) || out->nparams > ATR_ROUTER_MAX_PARAMS)
            return atr_err_set(err, ATR_E_INTERNAL, "route table inconsistent");
        return ATR_OK;
    }
    if (any)
        return atr_err_set(err, ATR_E_METHOD, "the method %s is not allowed on this resource",
                           method_ok(method) ? method : "given");
    return atr_err_set(err, ATR_E_NOT_FOUND, "no resource at this path");
}

const char *atr_router_param(const struct atr_router_match *m, const char *name)
{
    if (m == NULL || name == NULL)
        return NULL;
    size_t len = strlen(name);
    for (size_t i = 0; i < m->nparams; i++) {
        if (m->params[i].name_len == len && memcmp(m->params[i].name, name, len) == 0)
            return m->params[i].value;
    }
    return NULL;
}

atr_status atr_router_parse_query(struct atr_router_query *out, const char *query, size_t len,
                                  struct atr_err *err)
{
    ATR_ASSERT_ARG(out != NULL);
    out->count = 0;
    if (len == 0)
        return ATR_OK;
    ATR_ASSERT_ARG(query != NULL);
    if (len > ATR_ROUTER_QUERY_MAX)
        return atr_err_set(err, ATR_E_INVALID, "the query string is longer than %d bytes",
                           ATR_ROUTER_QUERY_MAX);
    for (size_t i = 0; i < len; i++) {
        if (!is_qchar((unsigned char)query[i]))
            return atr_err_set(err, ATR_E_INVALID,
                               "the query string contains a character that must be "
                               "percent-encoded (offset %zu)",
                               i);
    }
    size_t used = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *pair = query + pos;
        const char *amp = memchr(pair, '&', len - pos);
        size_t pair_len = amp != NULL ? (size_t)(amp - pair) : len - pos;
        pos += pair_len + 1;
        if (pair_len == 0)
            continue;
        if (out->count == ATR_ROUTER_MAX_QUERY)
            return atr_err_set(err, ATR_E_INVALID, "the query string has more than %d parameters",
                               ATR_ROUTER_MAX_QUERY);
        const char *eq = memchr(pair, '=', pair_len);
        size_t name_len = eq != NULL ? (size_t)(eq - pair) : pair_len;
        size_t value_len = eq != NULL ? pair_len - name_len - 1 : 0;
        if (name_len == 0)
            return atr_err_set(err, ATR_E_INVALID,
                               "the query string has a parameter without "
                               "a name");
        char *name = out->storage + used;
        size_t n = decode(name, pair, name_len, 1);
        if (n == (size_t)-1 || n == 0)
            return atr_err_set(err, ATR_E_INVALID,
                               "query parameter %zu has a malformed name (bad escape or "
                               "forbidden character)",
                               out->count + 1);
        used += n + 1;
        char *value = out->storage + used;
        size_t v = decode(value, eq != NULL ? eq + 1 : "", value_len, 1);
        if (v == (size_t)-1)
            return atr_err_set(err, ATR_E_INVALID,
                               "query parameter '%.*s' has a malformed value (bad escape or "
                               "forbidden character)",
                               (int)(n > 64 ? 64 : n), name);
        used += v + 1;
        out->params[out->count].name = name;
        out->params[out->count].value = value;
        out->count++;
    }
    return ATR_OK;
}

const char *atr_router_query_get(const struct atr_router_query *q, const char *name)
{
    if (q == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < q->count; i++) {
        if (strcmp(q->params[i].name, name) == 0)
            return q->params[i].value;
    }
    return NULL;
}

size_t atr_route_body_limit(const struct atr_route *route)
{
    if (route == NULL || route->body_limit == 0)
        return ATR_ROUTE_BODY_LIMIT_DEFAULT;
    return route->body_limit;
}

static int param_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > ATR_ROUTER_PARAM_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

static atr_status pattern_check(const char *pattern, size_t idx, struct atr_err *err)
{
    if (pattern == NULL || pattern[0] != '/' || strlen(pattern) > ATR_ROUTER_PATH_MAX)
        return atr_err_set(err, ATR_E_CONFIG, "route %zu: the pattern must start with '/'", idx);
    const char *names[ATR_ROUTER_MAX_PARAMS];
    size_t name_lens[ATR_ROUTER_MAX_PARAMS];
    size_t np = 0;
    size_t nseg = 0;
    const char *p = pattern + 1;
    while (p != NULL) {
        size_t len;
        const char *seg = p;
        p = pattern_next(p, &len);
        if (++nseg > ATR_ROUTER_MAX_SEGMENTS)
            return atr_err_set(err, ATR_E_CONFIG, "route %zu (%s): too many segments", idx,
                               pattern);
        if (len == 0 && p != NULL)
            return atr_err_set(err, ATR_E_CONFIG, "route %zu (%s): empty segment", idx, pattern);
        if (is_param(seg, len)) {
            /* "{name?}": the name without the '?' */
            len -= (size_t)is_optional(seg, len);
            if (!param_name_ok(seg + 1, len - 2))
                return atr_err_set(err, ATR_E_CONFIG, "route %zu (%s): bad parameter name", idx,
                                   pattern);
            if (np == ATR_ROUTER_MAX_PARAMS)
                return atr_err_set(err, ATR_E_CONFIG, "route %zu (%s): too many parameters", idx,
                                   pattern);
            for (size_t k = 0; k < np; k++) {
                if (name_lens[k] == len - 2 && memcmp(names[k], seg + 1, len - 2) == 0)
                    return atr_err_set(err, ATR_E_CONFIG,
                                       "route %zu (%s): duplicate parameter name", idx, pattern);
            }
            names[np] = seg + 1;
            name_lens[np] = len - 2;
            np++;
            continue;
        }
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)seg[i];
            if (!is_pchar(c) || c == '{' || c == '}')
                return atr_err_set(err, ATR_E_CONFIG,
                                   "route %zu (%s): literal segments must be plain path "
                                   "characters",
                                   idx, pattern);
        }
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return atr_err_set(err, ATR_E_CONFIG, "route %zu (%s): dot segment", idx, pattern);
    }
    return ATR_OK;
}

atr_status atr_router_check(const struct atr_route *routes, size_t nroutes, struct atr_err *err)
{
    if (routes == NULL || nroutes == 0)
        return atr_err_set(err, ATR_E_CONFIG, "the route table is empty");
    for (size_t i = 0; i < nroutes; i++) {
        const struct atr_route *rt = &routes[i];
        if (!method_ok(rt->method))
            return atr_err_set(err, ATR_E_CONFIG,
                               "route %zu: the method must be an upper-case "
                               "token",
                               i);
        ATR_TRY(pattern_check(rt->pattern, i, err));
        if (rt->handler == NULL)
            return atr_err_set(err, ATR_E_CONFIG, "route %zu (%s %s): no handler", i, rt->method,
                               rt->pattern);
        for (size_t k = 0; k < i; k++) {
            if (strcmp(routes[k].method, rt->method) == 0 &&
                strcmp(routes[k].pattern, rt->pattern) == 0)
                return atr_err_set(err, ATR_E_CONFIG, "route %zu (%s %s): duplicate route", i,
                                   rt->method, rt->pattern);
        }
    }
    return ATR_OK;
}
