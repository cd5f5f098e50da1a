/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: atr_router_match, atr_router_param, atr_router_parse_query,
 * atr_router_query_get, atr_router_check (src/http/router.c): the request
 * target handling in front of every handler, without a server.
 *
 * Input: "METHOD TARGET" where TARGET is "path[?query]" (bytes before the
 * first space are the method; without a space the method is GET). Raw bytes
 * are passed as they would arrive from libmicrohttpd, NULs included.
 *
 * Properties (any violation aborts):
 *  - the matcher and the query parser never crash and return only their
 *    documented codes, with a message on failure;
 *  - on a match, every parameter of the route's pattern has a value that is
 *    non-empty, free of '/' and of control characters;
 *  - on 405 the Allow list is non-empty and on 404/400 it names no route;
 *  - every parsed query pair has a non-empty name and is found again by
 *    atr_router_query_get().
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "http/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static atr_status h_none(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)req;
    (void)resp;
    (void)ctx;
    return ATR_OK;
}

/* Shaped like the service's and the vault's tables. */
static const struct atr_route routes[] = {
    {"GET", "/healthz", h_none, 0, 0, NULL},
    {"GET", "/metrics", h_none, 0, 0, NULL},
    {"POST", "/v1/tenants/{t}/records", h_none, ATR_ROUTE_AUTH, 0, "writer"},
    {"GET", "/v1/tenants/{t}/records", h_none, ATR_ROUTE_AUTH, 0, "reader"},
    {"GET", "/v1/tenants/{t}/encryption", h_none, ATR_ROUTE_AUTH, 0, "admin"},
    {"PUT", "/v1/tenants/{t}/encryption", h_none, ATR_ROUTE_AUTH, 0, "admin"},
    {"DELETE", "/v1/tenants/{t}/encryption", h_none, ATR_ROUTE_AUTH, 0, "admin"},
    {"GET", "/v1/tenants/{t}/audit", h_none, ATR_ROUTE_AUTH, 0, "admin"},
    {"GET", "/keys", h_none, 0, 0, NULL},
    {"POST", "/keys/{name}/create", h_none, 0, 0, NULL},
    {"GET", "/keys/{name}/versions", h_none, 0, 0, NULL},
    {"GET", "/keys/{name}/{version}", h_none, 0, 0, NULL},
    {"GET", "/keys/{name}", h_none, 0, 0, NULL},
    {"POST", "/keys/{name}/{version}/wrapkey", h_none, 0, 0, NULL},
    {"POST", "/keys/{name}/{version}/unwrapkey", h_none, 0, 0, NULL},
    {"GET", "/console/", h_none, 0, 0, NULL},
    {"GET", "/", h_none, 0, 0, NULL},
};

static void check_param(const char *v)
{
    if (v == NULL || v[0] == '\0' || strchr(v, '/') != NULL)
        abort();
    for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f)
            abort();
    }
}

static void check_match(const struct atr_router_match *m)
{
    const char *p = m->route->pattern;
    size_t seen = 0;
    while ((p = strchr(p, '{')) != NULL) {
        const char *end = strchr(p, '}');
        if (end == NULL || (size_t)(end - p - 1) > ATR_ROUTER_PARAM_NAME_MAX)
            abort();
        char name[ATR_ROUTER_PARAM_NAME_MAX + 1];
        size_t len = (size_t)(end - p - 1);
        memcpy(name, p + 1, len);
        name[len] = '\0';
        check_param(atr_router_param(m, name));
        seen++;
        p = end + 1;
    }
    if (seen != m->nparams)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int checked;
    if (!checked) {
        if (atr_router_check(routes, ATR_ARRAY_LEN(routes), NULL) != ATR_OK)
            abort();
        checked = 1;
    }
    if (size > 16384)
        return 0;
    const char *in = (const char *)data;
    char method[17] = "GET";
    const char *target = in;
    size_t target_len = size;
    const char *sp = memchr(in, ' ', size);
    if (sp != NULL) {
        size_t mlen = (size_t)(sp - in);
        if (mlen > 16)
            return 0;
        memcpy(method, in, mlen);
        method[mlen] = '\0';
        target = sp + 1;
        target_len = size - mlen - 1;
    }
    const char *q = memchr(target, '?', target_len);
    size_t path_len = q != NULL ? (size_t)(q - target) : target_len;

    struct atr_router_match m;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc =
        atr_router_match(&m, routes, ATR_ARRAY_LEN(routes), method, target, path_len, &err);
    switch (rc) {
    case ATR_OK:
        if (m.route == NULL)
            abort();
        check_match(&m);
        break;
    case ATR_E_METHOD:
        if (m.route != NULL || m.allow[0] == '\0' || err.code != rc)
            abort();
        break;
    case ATR_E_NOT_FOUND:
    case ATR_E_INVALID:
        if (m.route != NULL || err.code != rc || err.msg[0] == '\0')
            abort();
        break;
    default:
        abort();
    }

    if (q != NULL) {
        struct atr_router_query query;
        atr_err_clear(&err);
        const char *qs = q + 1;
        size_t qlen = target_len - path_len - 1;
        rc = atr_router_parse_query(&query, qs, qlen, &err);
        if (rc == ATR_OK) {
            for (size_t i = 0; i < query.count; i++) {
                const char *name = query.params[i].name;
                if (name == NULL || name[0] == '\0' || query.params[i].value == NULL)
                    abort();
                if (atr_router_query_get(&query, name) == NULL)
                    abort();
            }
        } else if (rc != ATR_E_INVALID || err.code != rc || err.msg[0] == '\0') {
            abort();
        }
    }
    return 0;
}
