/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON helpers: request-body parsing (bad JSON with positions, wrong top
 * level, duplicate keys, NUL, invalid UTF-8, deep nesting, huge input),
 * typed getters with their exact messages, serialisation under a cap, and
 * the one error shape.
 */
#include "lib/testutil.h"

#include <string.h>

#include "base/alloc.h"
#include "http/json.h"

static atr_status parse_obj(json_t **out, const char *s, struct atr_err *err)
{
    return atr_json_parse_object(out, atr_span_str(s), err);
}

static void expect_parse_error(const char *s, atr_status want, const char *fragment)
{
    json_t *v = (json_t *)0x1;
    struct atr_err err;
    atr_err_clear(&err);
    atr_status rc = parse_obj(&v, s, &err);
    if (rc != want)
        fail_msg("'%.40s' gave %s (%s)", s, atr_status_name(rc), err.msg);
    assert_null(v);
    assert_int_equal(err.code, want);
    if (fragment != NULL && strstr(err.msg, fragment) == NULL)
        fail_msg("'%.40s': message '%s' lacks '%s'", s, err.msg, fragment);
}

static void test_parse_ok(void **state)
{
    (void)state;
    json_t *v = NULL;
    assert_int_equal(
        parse_obj(&v, " {\"a\": 1, \"b\": [true, null], \"c\": {\"d\": \"x\"}} \n", NULL), ATR_OK);
    assert_true(json_is_object(v));
    json_decref(v);
    assert_int_equal(parse_obj(&v, "{}", NULL), ATR_OK);
    json_decref(v);
    /* any top level with atr_json_parse */
    assert_int_equal(atr_json_parse(&v, atr_span_str("[1,2]"), NULL), ATR_OK);
    assert_true(json_is_array(v));
    json_decref(v);
}

static void test_bad_json(void **state)
{
    (void)state;
    expect_parse_error("", ATR_E_PARSE, "empty");
    expect_parse_error("   ", ATR_E_PARSE, "end of input");
    expect_parse_error("{\"a\":", ATR_E_PARSE, "line 1, column 5");
    expect_parse_error("{\"a\":1,}", ATR_E_PARSE, "invalid syntax");
    expect_parse_error("{\"a\":1}\n{", ATR_E_PARSE, "after the JSON value");
    expect_parse_error("{\"a\":1} x", ATR_E_PARSE, "after the JSON value");
    expect_parse_error("{'a':1}", ATR_E_PARSE, "invalid syntax");
    expect_parse_error("{\"a\":1,\"a\":2}", ATR_E_PARSE, "duplicate object key");
    expect_parse_error("{\"a\":\"x\\u0000y\"}", ATR_E_PARSE, "NUL");
    expect_parse_error("{\"a\":\"\xc3\x28\"}", ATR_E_PARSE, "UTF-8");
    expect_parse_error("{\"a\":\"\xff\"}", ATR_E_PARSE, "UTF-8");
    expect_parse_error("{\"a\":99999999999999999999999}", ATR_E_PARSE, "out of range");
    expect_parse_error("{\"a\":NaN}", ATR_E_PARSE, NULL);
    expect_parse_error("{\n\"a\": tru}", ATR_E_PARSE, "line 2");
    /* the message never quotes the input */
    json_t *v = NULL;
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(parse_obj(&v, "{\"password\": hunter2}", &err), ATR_E_PARSE);
    assert_null(strstr(err.msg, "hunter2"));
    atr_err_clear(&err);
    assert_int_equal(parse_obj(&v, "{\"secretkey\":1,\"secretkey\":2}", &err), ATR_E_PARSE);
    assert_null(strstr(err.msg, "secretkey"));
    /* embedded NUL byte in the raw input */
    assert_int_equal(atr_json_parse_object(&v, atr_span_of("{\"a\":1}\0", 8), NULL), ATR_E_PARSE);
    assert_int_equal(atr_json_parse_object(&v, atr_span_of(NULL, 0), NULL), ATR_E_PARSE);
}

static void test_top_level_must_be_object(void **state)
{
    (void)state;
    expect_parse_error("[1,2]", ATR_E_INVALID, "must be a JSON object, not an array");
    expect_parse_error("\"x\"", ATR_E_INVALID, "not a string");
    expect_parse_error("1", ATR_E_INVALID, "not a number");
    expect_parse_error("true", ATR_E_INVALID, "not a boolean");
    expect_parse_error("null", ATR_E_INVALID, "not null");
}

static char *nested(int depth, char open, char close, const char *middle)
{
    size_t n = (size_t)depth * 2 + strlen(middle) + 1;
    char *s = atr_malloc(n);
    assert_non_null(s);
    memset(s, open, (size_t)depth);
    memcpy(s + depth, middle, strlen(middle));
    memset(s + depth + strlen(middle), close, (size_t)depth);
    s[n - 1] = '\0';
    return s;
}

static void test_deep_nesting(void **state)
{
    (void)state;
    json_t *v = NULL;
    /* ATR_JSON_MAX_DEPTH levels are fine */
    char *ok = nested(ATR_JSON_MAX_DEPTH, '[', ']', "");
    assert_int_equal(atr_json_parse(&v, atr_span_str(ok), NULL), ATR_OK);
    json_decref(v);
    atr_free(ok);
    char *deep = nested(ATR_JSON_MAX_DEPTH + 1, '[', ']', "");
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_json_parse(&v, atr_span_str(deep), &err), ATR_E_PARSE);
    assert_non_null(strstr(err.msg, "nesting"));
    atr_free(deep);
    /* 100 000 levels: rejected by the pre-scan, no recursion in jansson */
    char *very = nested(100000, '[', ']', "");
    assert_int_equal(atr_json_parse(&v, atr_span_str(very), NULL), ATR_E_PARSE);
    atr_free(very);
    /* unbalanced opening brackets only */
    char *open = nested(50000, '{', ' ', "");
    assert_int_equal(atr_json_parse(&v, atr_span_str(open), NULL), ATR_E_PARSE);
    atr_free(open);
    /* brackets inside strings do not count, escaped quotes do not end strings */
    const char *s = "{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[[[[[[[[[[[[[[[[[[[[[["
                    "[[[[[[[[[[\"}";
    assert_int_equal(parse_obj(&v, s, NULL), ATR_OK);
    json_decref(v);
}

static void test_huge_input(void **state)
{
    (void)state;
    json_t *v = NULL;
    /* over the parser's cap: rejected before parsing */
    size_t n = ATR_JSON_MAX_BYTES + 1;
    char *big = atr_malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    struct atr_err err;
    atr_err_clear(&err);
    assert_int_equal(atr_json_parse_object(&v, atr_span_of(big, n), &err), ATR_E_TOO_LARGE);
    /* a 4 MiB string value is fine */
    size_t m = (size_t)4 << 20;
    memcpy(big, "{\"a\":\"", 6);
    memset(big + 6, 'x', m);
    memcpy(big + 6 + m, "\"}", 2);
    assert_int_equal(atr_json_parse_object(&v, atr_span_of(big, m + 8), NULL), ATR_OK);
    const char *a = NULL;
    assert_int_equal(atr_json_get_string(&a, v, "a", NULL), ATR_OK);
    assert_int_equal(strlen(a), m);
    json_decref(v);
    /* many keys */
    struct atr_buf b;
    atr_buf_init(&b, ATR_JSON_MAX_BYTES);
    assert_int_equal(atr_buf_append_str(&b, "{"), ATR_OK);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(atr_buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", i, i), ATR_OK);
    assert_int_equal(atr_buf_append_str(&b, "}"), ATR_OK);
    assert_int_equal(atr_json_parse_object(&v, atr_buf_span(&b), NULL), ATR_OK);
    assert_int_equal(json_object_size(v), 100000);
    json_decref(v);
    atr_buf_cleanup(&b);
    atr_free(big);
}

static void test_getters(void **state)
{
    (void)state;
    json_t *o = NULL;
    const char *body = "{\"keyUri\":\"https://v/keys/k\",\"n\":5,\"big\":9007199254740993,"
                       "\"neg\":-3,\"real\":1.0,\"flag\":true,\"off\":false,\"nul\":null,"
                       "\"obj\":{\"x\":1},\"arr\":[1],\"str\":\"s\"}";
    assert_int_equal(parse_obj(&o, body, NULL), ATR_OK);
    struct atr_err err;
    const char *s = NULL;
    int64_t i = 0;
    int b = -1;
    json_t *sub = NULL;

    assert_int_equal(atr_json_get_string(&s, o, "keyUri", NULL), ATR_OK);
    assert_string_equal(s, "https://v/keys/k");
    atr_err_clear(&err);
    assert_int_equal(atr_json_get_string(&s, o, "n", &err), ATR_E_INVALID);
    assert_string_equal(err.msg, "field 'n' must be a string");
    atr_err_clear(&err);
    assert_int_equal(atr_json_get_string(&s, o, "missing", &err), ATR_E_INVALID);
    assert_string_equal(err.msg, "field 'missing' is required");
    atr_err_clear(&err);
    assert_int_equal(atr_json_get_string(&s, o, "nul", &err), ATR_E_INVALID);
    assert_string_equal(err.msg, "field 'nul' is required");
    assert_int_equal(atr_json_get_string_opt(&s, o, "missing", "dflt", NULL), ATR_OK);
    assert_string_equal(s, "dflt");
    assert_int_equal(atr_json_get_string_opt(&s, o, "nul", NULL, NULL), ATR_OK);
    assert_null(s);
    assert_int_equal(atr_json_get_string_opt(&s, o, "str", "dflt", NULL), ATR_OK);
    assert_string_equal(s, "s");
    assert_int_equal(atr_json_get_string_opt(&s, o, "flag", "dflt", NULL), ATR_E_INVALID);

    assert_int_equal(atr_json_get_int(&i, o, "n", 1, 10, NULL), ATR_OK);
    assert_int_equal(i, 5);
    assert_int_equal(atr_json_get_int(&i, o, "big", INT64_MIN, INT64_MAX, NULL), ATR_OK);
    assert_true(i == 9007199254740993LL);
    atr_err_clear(&err);
    assert_int_equal(atr_json_get_int(&i, o, "n", 6, 10, &err), ATR_E_INVALID);
    assert_string_equal(err.msg, "field 'n' must be an integer between 6 and 10");
    assert_int_equal(atr_json_get_int(&i, o, "neg", 0, 10, NULL), ATR_E_INVALID);
    atr_err_clear(&err);
    assert_int_equal(atr_json_get_int(&i, o, "real", 0, 10, &err), ATR_E_INVALID);
    assert_string_equal(err.msg, "field 'real' must be an integer");
    assert_int_equal(atr_json_get_int(&i, o, "str", 0, 10, NULL), ATR_E_INVALID);
    assert_int_equal(atr_json_get_int_opt(&i, o, "missing", 42, 0, 100, NULL), ATR_OK);
    assert_int_equal(i, 42);
    assert_int_equal(atr_json_get_int_opt(&i, o, "n", 42, 0, 100, NULL), ATR_OK);
    assert_int_equal(i, 5);

    assert_int_equal(atr_json_get_bool(&b, o, "flag", NULL), ATR_OK);
    assert_int_equal(b, 1);
    assert_int_equal(atr_json_get_bool(&b, o, "off", NULL), ATR_OK);
    assert_int_equal(b, 0);
    atr_err_clear(&err);
    assert_int_equal(atr_json_get_bool(&b, o, "n", &err), ATR_E_INVALID);
    assert_string_equal(err.msg, "field 'n' must be a boolean");
    assert_int_equal(atr_json_get_bool_opt(&b, o, "missing", 1, NULL), ATR_OK);
    assert_int_equal(b, 1);

    assert_int_equal(atr_json_get_object(&sub, o, "obj", NULL), ATR_OK);
    assert_true(json_is_object(sub));
    atr_err_clear(&err);
    assert_int_equal(atr_json_get_object(&sub, o, "arr", &err), ATR_E_INVALID);
    assert_string_equal(err.msg, "field 'arr' must be an object");
    assert_int_equal(atr_json_get_array(&sub, o, "arr", NULL), ATR_OK);
    assert_true(json_is_array(sub));
    atr_err_clear(&err);
    assert_int_equal(atr_json_get_array(&sub, o, "obj", &err), ATR_E_INVALID);
    assert_string_equal(err.msg, "field 'obj' must be an array");
    sub = (json_t *)0x1;
    assert_int_equal(atr_json_get_object_opt(&sub, o, "missing", NULL), ATR_OK);
    assert_null(sub);
    sub = (json_t *)0x1;
    assert_int_equal(atr_json_get_array_opt(&sub, o, "missing", NULL), ATR_OK);
    assert_null(sub);

    /* reading from something that is not an object */
    json_t *arr = json_array();
    assert_int_equal(atr_json_get_string(&s, arr, "a", NULL), ATR_E_INVALID);
    assert_int_equal(atr_json_get_string(&s, NULL, "a", NULL), ATR_E_INVALID);
    json_decref(arr);

    /* a string with NUL built in code (not parsed) is refused */
    json_object_set_new(o, "withnul", json_stringn_nocheck("a\0b", 3));
    assert_int_equal(atr_json_get_string(&s, o, "withnul", NULL), ATR_E_INVALID);
    json_decref(o);
}

static void test_dump(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:s,s:i,s:[b]}", "a", "x\"y", "n", 3, "l", 1);
    struct atr_buf b;
    atr_buf_init(&b, 1024);
    assert_int_equal(atr_json_dump(&b, v), ATR_OK);
    assert_string_equal(atr_buf_cstr(&b), "{\"a\":\"x\\\"y\",\"n\":3,\"l\":[true]}");
    atr_buf_cleanup(&b);
    atr_buf_init(&b, 10);
    assert_int_equal(atr_json_dump(&b, v), ATR_E_TOO_LARGE);
    atr_buf_cleanup(&b);
    assert_int_equal(atr_json_dump(&b, NULL), ATR_E_INVALID);
    json_decref(v);
}

static void test_error_shape(void **state)
{
    (void)state;
    json_t *e = NULL;
    struct atr_buf b;

    assert_int_equal(atr_json_error_new(&e, ATR_E_INVALID, "field 'keyUri' must be a string", NULL),
                     ATR_OK);
    atr_buf_init(&b, 4096);
    assert_int_equal(atr_json_dump(&b, e), ATR_OK);
    assert_string_equal(atr_buf_cstr(&b), "{\"error\":{\"code\":\"BadParameter\",\"message\":"
                                          "\"field 'keyUri' must be a string\"}}");
    atr_buf_cleanup(&b);
    json_decref(e);
    assert_int_equal(atr_json_error_http(ATR_E_INVALID), 400);

    /* public message by default; extra fields inside "error"; code cannot be overridden */
    json_t *extra = json_pack("{s:{s:s},s:s,s:s}", "innererror", "code", "KeyDisabled", "reason",
                              "disabled by the owner", "code", "Hacked");
    assert_int_equal(atr_json_error_new(&e, ATR_E_FORBIDDEN, NULL, extra), ATR_OK);
    json_t *inner = json_object_get(e, "error");
    assert_string_equal(json_string_value(json_object_get(inner, "code")), "Forbidden");
    assert_string_equal(json_string_value(json_object_get(inner, "message")),
                        atr_status_str(ATR_E_FORBIDDEN));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(inner, "innererror"), "code")),
        "KeyDisabled");
    assert_string_equal(json_string_value(json_object_get(inner, "reason")),
                        "disabled by the owner");
    assert_int_equal(json_object_size(e), 1);
    json_decref(e);

    /* ATR_OK is reported as an internal error, not as success */
    assert_int_equal(atr_json_error_new(&e, ATR_OK, NULL, NULL), ATR_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "error"), "code")),
                        "InternalError");
    json_decref(e);
    assert_int_equal(atr_json_error_http(ATR_OK), 500);
    assert_int_equal(atr_json_error_http(ATR_E_TOO_LARGE), 413);

    /* invalid UTF-8 in a message falls back to the public message */
    assert_int_equal(atr_json_error_new(&e, ATR_E_NOT_FOUND, "bad \xff text", NULL), ATR_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "error"), "message")),
                        atr_status_str(ATR_E_NOT_FOUND));
    json_decref(e);

    /* extra must be an object; its reference is consumed either way */
    e = (json_t *)0x1;
    assert_int_equal(atr_json_error_new(&e, ATR_E_INVALID, NULL, json_array()), ATR_E_INVALID);
    assert_null(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_top_level_must_be_object),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_huge_input),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_error_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
