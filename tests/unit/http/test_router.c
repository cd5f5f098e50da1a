/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Router: pattern matching with parameters, 404/405 with Allow, HEAD on GET
 * routes, table order, malformed paths (escapes, NUL, controls, dot
 * segments, empty segments, invalid UTF-8, limits), query parsing, and the
 * start-up check of route tables.
 */
#include "lib/testutil.h"

#include <stdio.h>
#include <string.h>

#include "http/router.h"

static atr_status h_dummy(struct atr_http_req *req, struct atr_http_resp *resp, void *ctx)
{
    (void)req;
    (void)resp;
    (void)ctx;
    return ATR_OK;
}

static const struct atr_route routes[] = {
    {"GET", "/healthz", h_dummy, 0, 0, NULL},
    {"POST", "/v1/tenants/{t}/records", h_dummy, ATR_ROUTE_AUTH, 4096, "writer"},
    {"GET", "/v1/tenants/{t}/records", h_dummy, ATR_ROUTE_AUTH, 0, "reader"},
    {"GET", "/v1/tenants/{t}/encryption", h_dummy, 0, 0, NULL},
    {"PUT", "/v1/tenants/{t}/encryption", h_dummy, 0, 0, NULL},
    {"DELETE", "/v1/tenants/{t}/encryption", h_dummy, 0, 0, NULL},
    {"GET", "/keys/deleted", h_dummy, 0, 0, NULL},
    {"GET", "/keys/{name}/{version}", h_dummy, 0, 0, NULL},
    {"GET", "/keys/{name}", h_dummy, 0, 0, NULL},
    {"POST", "/keys/{name}/{version}/wrapkey", h_dummy, 0, 0, NULL},
    {"GET", "/console/", h_dummy, 0, 0, NULL},
    {"GET", "/", h_dummy, 0, 0, NULL},
    {"POST", "/keys/{name}/{version?}/unwrapkey", h_dummy, 0, 0, NULL},
};
#define NROUTES ATR_ARRAY_LEN(routes)

static atr_status match(struct atr_router_match *m, const char *method, const char *path,
                        struct atr_err *err)
{
    return atr_router_match(m, routes, NROUTES, method, path, strlen(path), err);
}

static void test_table_is_valid(void **state)
{
    (void)state;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_router_check(routes, NROUTES, &err), ATR_OK);
}

static void test_literal_and_params(void **state)
{
    (void)state;
    struct atr_router_match m;
    assert_int_equal(match(&m, "GET", "/healthz", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[0]);
    assert_int_equal(m.nparams, 0);

    assert_int_equal(match(&m, "POST", "/v1/tenants/contoso/records", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[1]);
    assert_string_equal(atr_router_param(&m, "t"), "contoso");
    assert_null(atr_router_param(&m, "x"));
    assert_int_equal(atr_route_body_limit(m.route), 4096);

    assert_int_equal(match(&m, "GET", "/keys/k1/v2", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[7]);
    assert_string_equal(atr_router_param(&m, "name"), "k1");
    assert_string_equal(atr_router_param(&m, "version"), "v2");
    assert_int_equal(atr_route_body_limit(m.route), ATR_ROUTE_BODY_LIMIT_DEFAULT);

    assert_int_equal(match(&m, "POST", "/keys/k1/v2/wrapkey", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[9]);

    assert_int_equal(match(&m, "GET", "/", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[11]);
    assert_int_equal(match(&m, "GET", "/console/", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[10]);
}

static void test_params_decoded_once(void **state)
{
    (void)state;
    struct atr_router_match m;
    /* %2541 decodes once to "%41", not to "A" */
    assert_int_equal(match(&m, "GET", "/keys/a%20b/%2541", NULL), ATR_OK);
    assert_string_equal(atr_router_param(&m, "name"), "a b");
    assert_string_equal(atr_router_param(&m, "version"), "%41");
    /* '+' is literal in paths; UTF-8 is fine */
    assert_int_equal(match(&m, "GET", "/keys/a+b/%C3%A9t%C3%A9", NULL), ATR_OK);
    assert_string_equal(atr_router_param(&m, "name"), "a+b");
    assert_string_equal(atr_router_param(&m, "version"), "\xc3\xa9t\xc3\xa9");
    /* a literal segment matches its decoded form */
    assert_int_equal(match(&m, "GET", "/%68ealthz", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[0]);
}

static void test_table_order(void **state)
{
    (void)state;
    struct atr_router_match m;
    /* the literal route comes first and wins over /keys/{name} */
    assert_int_equal(match(&m, "GET", "/keys/deleted", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[6]);
    assert_int_equal(match(&m, "GET", "/keys/other", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[8]);
}

static void test_optional_param(void **state)
{
    (void)state;
    struct atr_router_match m;
    assert_int_equal(match(&m, "POST", "/keys/k1//unwrapkey", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[12]);
    assert_string_equal(atr_router_param(&m, "name"), "k1");
    assert_string_equal(atr_router_param(&m, "version"), "");
    assert_null(atr_router_param(&m, "version?"));
    assert_int_equal(match(&m, "POST", "/keys/k1/abc/unwrapkey", NULL), ATR_OK);
    assert_string_equal(atr_router_param(&m, "version"), "abc");
    /* the name is not optional */
    assert_int_equal(match(&m, "POST", "/keys///unwrapkey", NULL), ATR_E_NOT_FOUND);
    /* a plain parameter still needs a value */
    assert_int_equal(match(&m, "POST", "/keys/k1//wrapkey", NULL), ATR_E_NOT_FOUND);
}

static void test_not_found(void **state)
{
    (void)state;
    struct atr_router_match m;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(match(&m, "GET", "/nope", &err), ATR_E_NOT_FOUND);
    assert_int_equal(err.code, ATR_E_NOT_FOUND);
    assert_null(m.route);
    assert_int_equal(match(&m, "GET", "/healthz/", NULL), ATR_E_NOT_FOUND);
    assert_int_equal(match(&m, "GET", "/healthz/x", NULL), ATR_E_NOT_FOUND);
    assert_int_equal(match(&m, "GET", "/v1/tenants/t", NULL), ATR_E_NOT_FOUND);
    assert_int_equal(match(&m, "GET", "/v1/tenants/t/records/x", NULL), ATR_E_NOT_FOUND);
    /* a parameter never matches an empty (trailing) segment */
    assert_int_equal(match(&m, "GET", "/keys/", NULL), ATR_E_NOT_FOUND);
    /* an empty segment matches no literal and no plain parameter */
    assert_int_equal(match(&m, "GET", "//healthz", NULL), ATR_E_NOT_FOUND);
    assert_int_equal(match(&m, "GET", "/keys//v", NULL), ATR_E_NOT_FOUND);
    assert_int_equal(match(&m, "GET", "/v1/tenants//records", NULL), ATR_E_NOT_FOUND);
    assert_int_equal(match(&m, "GET", "/console", NULL), ATR_E_NOT_FOUND);
    /* case-sensitive literals */
    assert_int_equal(match(&m, "GET", "/HEALTHZ", NULL), ATR_E_NOT_FOUND);
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    struct atr_router_match m;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(match(&m, "POST", "/v1/tenants/a/encryption", &err), ATR_E_METHOD);
    assert_null(m.route);
    assert_string_equal(m.allow, "GET, HEAD, PUT, DELETE");
    assert_non_null(strstr(err.msg, "POST"));
    assert_int_equal(match(&m, "DELETE", "/healthz", NULL), ATR_E_METHOD);
    assert_string_equal(m.allow, "GET, HEAD");
    assert_int_equal(match(&m, "GET", "/keys/a/b/wrapkey", NULL), ATR_E_METHOD);
    assert_string_equal(m.allow, "POST");
    /* a method that is not a token is not echoed */
    assert_int_equal(match(&m, "get", "/keys/a/b/wrapkey", &err), ATR_E_METHOD);
    assert_null(strstr(err.msg, "get"));
}

static void test_head_uses_get(void **state)
{
    (void)state;
    struct atr_router_match m;
    assert_int_equal(match(&m, "HEAD", "/keys/x", NULL), ATR_OK);
    assert_ptr_equal(m.route, &routes[8]);
    assert_string_equal(atr_router_param(&m, "name"), "x");
    assert_int_equal(match(&m, "HEAD", "/keys/a/b/wrapkey", NULL), ATR_E_METHOD);
}

static void test_malformed_paths(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "healthz",            /* no leading slash */
        "/keys/%zz",          /* bad escape */
        "/keys/%4",           /* truncated escape */
        "/keys/%",            /* truncated escape */
        "/keys/a%00b",        /* NUL */
        "/keys/a%0Ab",        /* control character */
        "/keys/a%7Fb",        /* DEL */
        "/keys/a%2Fb",        /* encoded slash */
        "/keys/..",           /* dot segment */
        "/keys/.",            /* dot segment */
        "/keys/%2E%2E",       /* encoded dot segment */
        "/keys/a b",          /* raw space */
        "/keys/a\"b",         /* raw quote */
        "/keys/a<b",          /* raw angle bracket */
        "/keys/{x}",          /* raw brace */
        "/keys/a\\b",         /* raw backslash */
        "/keys/\xc3\xa9",     /* raw non-ASCII */
        "/keys/%C3%28",       /* invalid UTF-8 */
        "/keys/%C0%AF",       /* overlong UTF-8 */
        "/keys/%ED%A0%80",    /* UTF-16 surrogate */
        "/keys/%F4%90%80%80", /* above U+10FFFF */
        "/keys/%E2%82",       /* truncated UTF-8 */
        "/keys/a#b",          /* fragment */
        "/keys/a?b",          /* the query is never part of the path */
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        struct atr_router_match m;
        struct atr_err err;
        atr_err_clear(&err);
        atr_status rc = match(&m, "GET", bad[i], &err);
        if (rc != ATR_E_INVALID)
            fail_msg("path %zu (%s) gave %s", i, bad[i], atr_status_name(rc));
        assert_int_equal(err.code, ATR_E_INVALID);
        assert_true(strlen(err.msg) > 0);
        assert_null(m.route);
    }
    struct atr_router_match m;
    assert_int_equal(atr_router_match(&m, routes, NROUTES, "GET", "", 0, NULL), ATR_E_INVALID);
    assert_int_equal(atr_router_match(&m, routes, NROUTES, "GET", NULL, 0, NULL), ATR_E_INVALID);
    assert_int_equal(atr_router_match(&m, routes, NROUTES, "", "/healthz", 8, NULL), ATR_E_INVALID);
    /* an embedded NUL byte in the raw path */
    assert_int_equal(atr_router_match(&m, routes, NROUTES, "GET", "/healthz\0x", 10, NULL),
                     ATR_E_INVALID);
}

static void test_limits(void **state)
{
    (void)state;
    struct atr_router_match m;
    char path[ATR_ROUTER_PATH_MAX + 16];
    /* exactly the limit: fine (no such route) */
    path[0] = '/';
    memset(path + 1, 'a', ATR_ROUTER_PATH_MAX - 1);
    path[ATR_ROUTER_PATH_MAX] = '\0';
    assert_int_equal(match(&m, "GET", path, NULL), ATR_E_NOT_FOUND);
    /* one byte more: rejected */
    path[ATR_ROUTER_PATH_MAX] = 'a';
    path[ATR_ROUTER_PATH_MAX + 1] = '\0';
    assert_int_equal(match(&m, "GET", path, NULL), ATR_E_INVALID);
    /* too many segments */
    size_t o = 0;
    for (int i = 0; i < ATR_ROUTER_MAX_SEGMENTS + 1; i++) {
        path[o++] = '/';
        path[o++] = 'a';
    }
    path[o] = '\0';
    assert_int_equal(match(&m, "GET", path, NULL), ATR_E_INVALID);
    /* the maximum number of segments is fine */
    path[o - 2] = '\0';
    assert_int_equal(match(&m, "GET", path, NULL), ATR_E_NOT_FOUND);
    /* a path made of escapes at the limit decodes within the storage */
    o = 0;
    while (o + 3 <= ATR_ROUTER_PATH_MAX - 6) {
        memcpy(path + o, "/%41", 4);
        o += 4;
    }
    path[o] = '\0';
    assert_int_equal(match(&m, "GET", path, NULL), ATR_E_INVALID); /* > 32 segments */
    memcpy(path, "/keys/", 6);
    o = 6;
    while (o + 3 <= ATR_ROUTER_PATH_MAX) {
        memcpy(path + o, "%41", 3);
        o += 3;
    }
    path[o] = '\0';
    assert_int_equal(match(&m, "GET", path, NULL), ATR_OK);
    assert_int_equal(strlen(atr_router_param(&m, "name")), (o - 6) / 3);
}

static void test_query(void **state)
{
    (void)state;
    struct atr_router_query q;
    const char *s = "a=1&b=x+y&c=%41%2B&d&&e=&api-version=7.4&a=2";
    assert_int_equal(atr_router_parse_query(&q, s, strlen(s), NULL), ATR_OK);
    assert_int_equal(q.count, 7);
    assert_string_equal(atr_router_query_get(&q, "a"), "1"); /* the first one */
    assert_string_equal(atr_router_query_get(&q, "b"), "x y");
    assert_string_equal(atr_router_query_get(&q, "c"), "A+");
    assert_string_equal(atr_router_query_get(&q, "d"), "");
    assert_string_equal(atr_router_query_get(&q, "e"), "");
    assert_string_equal(atr_router_query_get(&q, "api-version"), "7.4");
    assert_null(atr_router_query_get(&q, "zz"));
    assert_int_equal(atr_router_parse_query(&q, "", 0, NULL), ATR_OK);
    assert_int_equal(q.count, 0);
    assert_int_equal(atr_router_parse_query(&q, "&&&", 3, NULL), ATR_OK);
    assert_int_equal(q.count, 0);
    /* '=' inside a value is kept */
    assert_int_equal(atr_router_parse_query(&q, "x=a=b", 5, NULL), ATR_OK);
    assert_string_equal(atr_router_query_get(&q, "x"), "a=b");

    static const char *const bad[] = {
        "=x",       "a=%zz", "a=%4",  "%00=1",  "a=%00",      "a=%0D%0A",
        "a=%C3%28", "a=b c", "a=b#c", "a=\x01", "a=\xc3\xa9", "%=1",
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(bad); i++) {
        struct atr_err err;
        atr_err_clear(&err);
        atr_status rc = atr_router_parse_query(&q, bad[i], strlen(bad[i]), &err);
        if (rc != ATR_E_INVALID)
            fail_msg("query %zu (%s) gave %s", i, bad[i], atr_status_name(rc));
        assert_true(strlen(err.msg) > 0);
    }
    char big[ATR_ROUTER_QUERY_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(atr_router_parse_query(&q, big, strlen(big), NULL), ATR_E_INVALID);
    assert_int_equal(atr_router_parse_query(&q, big, ATR_ROUTER_QUERY_MAX, NULL), ATR_OK);
    char many[ATR_ROUTER_MAX_QUERY * 4 + 8];
    size_t o = 0;
    for (int i = 0; i < ATR_ROUTER_MAX_QUERY + 1; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "a=%d&", i % 10);
    assert_int_equal(atr_router_parse_query(&q, many, o, NULL), ATR_E_INVALID);
    assert_int_equal(atr_router_parse_query(&q, many, o - 4, NULL), ATR_OK);
    assert_int_equal(q.count, ATR_ROUTER_MAX_QUERY);
}

static void test_check_rejects_bad_tables(void **state)
{
    (void)state;
    struct bad_case {
        struct atr_route r[2];
        size_t n;
    };
    static const struct bad_case cases[] = {
        {{{"get", "/a", h_dummy, 0, 0, NULL}}, 1},
        {{{"", "/a", h_dummy, 0, 0, NULL}}, 1},
        {{{NULL, "/a", h_dummy, 0, 0, NULL}}, 1},
        {{{"GET", "a", h_dummy, 0, 0, NULL}}, 1},
        {{{"GET", NULL, h_dummy, 0, 0, NULL}}, 1},
        {{{"GET", "/a//b", h_dummy, 0, 0, NULL}}, 1},
        {{{"GET", "/a/{}", h_dummy, 0, 0, NULL}}, 1},
        {{{"GET", "/a/{b-c}", h_dummy, 0, 0, NULL}}, 1},
        {{{"GET", "/a/x{b}", h_dummy, 0, 0, NULL}}, 1},
        {{{"GET", "/a/{b}/{b}", h_dummy, 0, 0, NULL}}, 1},
        {{{"GET", "/a/..", h_dummy, 0, 0, NULL}}, 1},
        {{{"GET", "/a b", h_dummy, 0, 0, NULL}}, 1},
        {{{"GET", "/a", NULL, 0, 0, NULL}}, 1},
        {{{"GET", "/a", h_dummy, 0, 0, NULL}, {"GET", "/a", h_dummy, 0, 0, NULL}}, 2},
        {{{"GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", h_dummy, 0, 0, NULL}}, 1},
    };
    for (size_t i = 0; i < ATR_ARRAY_LEN(cases); i++) {
        struct atr_err err;
        atr_err_clear(&err);
        atr_status rc = atr_router_check(cases[i].r, cases[i].n, &err);
        if (rc != ATR_E_CONFIG)
            fail_msg("table %zu gave %s", i, atr_status_name(rc));
        assert_true(strlen(err.msg) > 0);
    }
    assert_int_equal(atr_router_check(NULL, 0, NULL), ATR_E_CONFIG);
    assert_int_equal(atr_router_check(routes, 0, NULL), ATR_E_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_is_valid),
        cmocka_unit_test(test_literal_and_params),
        cmocka_unit_test(test_params_decoded_once),
        cmocka_unit_test(test_table_order),
        cmocka_unit_test(test_optional_param),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_head_uses_get),
        cmocka_unit_test(test_malformed_paths),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_check_rejects_bad_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
